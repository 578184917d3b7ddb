//! The exception barrier (`shim/barrier.cpp`, declared in `shim/barrier.h`):
//! compiled with the headers of the very library that is linked, and linked
//! before it (static archives resolve left to right).

use std::path::PathBuf;

use crate::env::Config;

/// Compiles the barrier into a static library and emits its link lines.
/// Call before the llama/ggml libraries' link lines.
pub fn compile(config: &Config, include_dirs: &[PathBuf]) {
    let shim = config.manifest_dir.join("shim");
    println!("cargo:rerun-if-changed={}", shim.display());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file(shim.join("barrier.cpp"))
        .include(&shim)
        // Optimised like the library, even in a debug cargo build.
        .opt_level(2)
        .warnings(true);
    for dir in include_dirs {
        build.include(dir);
    }
    build.compile("ggml_sys_barrier");
}
