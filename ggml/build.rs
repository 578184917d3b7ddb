//! Reads what `ggml-sys` found (its `links = "llama"` metadata) and turns it into
//! cfgs: `ggml_cpu_backend` when the CPU backend (`ggml-cpu`) is linked directly.
//! Without it (a `GGML_BACKEND_DL` install) graphs are computed through the
//! backend registry and conversions fall back to ggml-base's routines.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(ggml_cpu_backend)");
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_CPU_BACKEND");
    if std::env::var("DEP_LLAMA_CPU_BACKEND").map_or(true, |v| v == "linked") {
        println!("cargo:rustc-cfg=ggml_cpu_backend");
    }
}
