//! Prints what ggml-sys was built with and the CPU features llama.cpp sees.
fn main() -> anyhow::Result<()> {
    ggml_sys::abi::check()?;
    println!("link mode: {}", ggml_sys::build_info::LINK_MODE);
    // SAFETY: plain initialisation/query calls with no arguments.
    let info = unsafe {
        ggml_sys::llama_backend_init();
        std::ffi::CStr::from_ptr(ggml_sys::llama_print_system_info())
    };
    println!("{}", info.to_string_lossy());
    Ok(())
}
