//! `cfg(ggml_cpu_backend)` when ggml-sys links the CPU backend (its
//! `DEP_LLAMA_CPU_BACKEND=linked`); without it (`GGML_BACKEND_DL` installs) the
//! raw replays compute through the backend registry.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(ggml_cpu_backend)");
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_CPU_BACKEND");
    if std::env::var("DEP_LLAMA_CPU_BACKEND").is_ok_and(|v| v == "linked") {
        println!("cargo:rustc-cfg=ggml_cpu_backend");
    }
    // Binaries find shared libraries of a system prefix without LD_LIBRARY_PATH.
    let shared = std::env::var("DEP_LLAMA_SHARED").is_ok_and(|v| v == "1");
    if let (true, Ok(dir)) = (shared, std::env::var("DEP_LLAMA_LIB_DIR")) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
