//! Build script of the examples/tests package.
//!
//! - When ggml-sys links shared libraries from outside the target directory (a
//!   system prefix), give this package's binaries an rpath to them, so examples
//!   and tests run without `LD_LIBRARY_PATH`. Your own binary crate can do the
//!   same (see README).
//! - `cfg(ggml_cpu_backend)` when the CPU backend is linked (ggml-sys's
//!   `DEP_LLAMA_CPU_BACKEND=linked`), i.e. when `ggml-cpu.h` is bound; absent for
//!   `GGML_BACKEND_DL` installs, whose backends are loaded at run time.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_LIB_DIR");
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_SHARED");
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_CPU_BACKEND");
    let shared = std::env::var("DEP_LLAMA_SHARED").is_ok_and(|v| v == "1");
    if let (true, Ok(dir)) = (shared, std::env::var("DEP_LLAMA_LIB_DIR")) {
        if std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os != "windows") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
    // Where ggml.h is: the ops coverage test reads it.
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_INCLUDE");
    if let Ok(dir) = std::env::var("DEP_LLAMA_INCLUDE") {
        println!("cargo:rustc-env=GGML_INCLUDE_DIR={dir}");
    }
    println!("cargo:rustc-check-cfg=cfg(ggml_cpu_backend)");
    if std::env::var("DEP_LLAMA_CPU_BACKEND").is_ok_and(|v| v == "linked") {
        println!("cargo:rustc-cfg=ggml_cpu_backend");
    }
}
