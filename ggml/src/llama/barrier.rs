//! Calls into llama.cpp go through ggml-sys's exception barrier
//! (`ggml_sys_try_*`, a small C++ shim compiled with llama.cpp): a C++
//! exception that reached Rust would abort the process; caught there, it is
//! a [`Error::Exception`] here.

use super::error::Error;
use super::error::Result;

/// The result of a `ggml_sys_try_*` call: `status` is 0 when `call`
/// returned, 1 when it threw.
pub(crate) fn check(call: &'static str, status: std::ffi::c_int) -> Result<()> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: a NUL-terminated thread-local string, valid until the next
    // exception caught on this thread; copied out at once.
    let message = unsafe { std::ffi::CStr::from_ptr(ggml_sys::ggml_sys_exception_message()) };
    Err(Error::Exception {
        call,
        message: message.to_string_lossy().into_owned(),
    })
}
