//! llama.cpp's own entry points over the raw FFI.

use std::ffi::CStr;

use ggml_sys as sys;

#[test]
fn backend_init_and_system_info() {
    // SAFETY: initialisation and a query returning a static NUL-terminated
    // string; llama_backend_free is paired with the init.
    let info = unsafe {
        sys::llama_backend_init();
        let info = CStr::from_ptr(sys::llama_print_system_info())
            .to_string_lossy()
            .into_owned();
        sys::llama_backend_free();
        info
    };
    assert!(!info.trim().is_empty());
    // The CPU backend reports itself (and its SIMD features) once registered.
    assert!(info.contains("CPU"), "{info}");
}

#[test]
fn max_devices_and_capabilities() {
    // SAFETY: pure queries.
    unsafe {
        assert!(sys::llama_max_devices() >= 1);
        // mmap is supported on every platform the tests run on.
        assert!(sys::llama_supports_mmap());
    }
}
