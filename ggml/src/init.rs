//! One-time library initialisation, behind a `OnceLock`: the ABI guard, then
//! the CPU backend's tables (or, without a linked CPU backend, loading the
//! run-time backends).

use std::sync::OnceLock;

use crate::error::Result;

/// Checks the ABI and initialises ggml once per process.
///
/// # Errors
/// [`crate::Error::Abi`] when the loaded library is not the one the bindings
/// were generated from; every later call returns the same error.
pub fn ensure() -> Result<()> {
    static INIT: OnceLock<Result<(), ggml_sys::abi::AbiMismatch>> = OnceLock::new();
    INIT.get_or_init(|| {
        ggml_sys::abi::check()?;
        #[cfg(ggml_cpu_backend)]
        crate::raw::cpu_init();
        #[cfg(not(ggml_cpu_backend))]
        crate::raw::load_all_backends();
        Ok(())
    })
    .clone()
    .map_err(Into::into)
}
