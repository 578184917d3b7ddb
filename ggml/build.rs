//! Reads what `ggml-sys` found (its `links = "llama"` metadata) and
//!
//! - turns it into cfgs: `ggml_cpu_backend` when the CPU backend (`ggml-cpu`) is
//!   linked directly. Without it (a `GGML_BACKEND_DL` install) graphs are
//!   computed through the backend registry and conversions fall back to
//!   ggml-base's routines;
//! - passes it on to the build scripts of crates that depend on this one (this
//!   crate's `links = "ggml"`): links metadata reaches direct dependents only, so
//!   a crate depending on `ggml` alone would otherwise not see where shared
//!   libraries live. `DEP_GGML_RPATH` is the directory to put on a binary's
//!   rpath (set only for shared libraries), `DEP_GGML_LIB_DIR`,
//!   `DEP_GGML_LINK_MODE`, `DEP_GGML_SHARED`, `DEP_GGML_INCLUDE` and
//!   `DEP_GGML_CPU_BACKEND` mirror ggml-sys's values.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(ggml_cpu_backend)");
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_CPU_BACKEND");
    // ggml-sys decides, and always says (`linked` or `dynamic`); every build
    // script of the workspace reads it the same way.
    if std::env::var("DEP_LLAMA_CPU_BACKEND").is_ok_and(|v| v == "linked") {
        println!("cargo:rustc-cfg=ggml_cpu_backend");
    }
    for key in [
        "RPATH",
        "LIB_DIR",
        "LINK_MODE",
        "SHARED",
        "INCLUDE",
        "CPU_BACKEND",
    ] {
        println!("cargo:rerun-if-env-changed=DEP_LLAMA_{key}");
        if let Ok(value) = std::env::var(format!("DEP_LLAMA_{key}")) {
            println!("cargo:{}={value}", key.to_lowercase());
        }
    }
}
