//! `rustc-link-*` lines: the ggml/llama libraries in dependency order, then what
//! they need from the system (C++ runtime, OpenMP, GPU runtimes).

use std::path::{Path, PathBuf};

use crate::env::Config;

/// The ggml/llama libraries present in `dir`, ordered so that every library comes
/// before the libraries it depends on (static linking with GNU ld needs this):
/// `llama`, `ggml`, the backends (`ggml-cpu`, `ggml-cuda`, ...), `ggml-base`.
pub fn libraries_in(dir: &Path, shared: bool) -> Vec<String> {
    let mut backends: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|file| library_name(&file, shared))
                .filter(|name| name.starts_with("ggml-") && name != "ggml-base")
                .collect()
        })
        .unwrap_or_default();
    backends.sort();
    backends.dedup();
    let mut names = vec!["llama".to_owned(), "ggml".to_owned()];
    names.extend(backends);
    names.push("ggml-base".to_owned());
    names
}

/// `libfoo.a` -> `foo` (static) or `libfoo.so` / `libfoo.dylib` -> `foo` (shared).
fn library_name(file: &str, shared: bool) -> Option<String> {
    let stem = file.strip_prefix("lib")?;
    let stem = if shared {
        stem.strip_suffix(".so")
            .or_else(|| stem.strip_suffix(".dylib"))?
    } else {
        stem.strip_suffix(".a")?
    };
    Some(stem.to_owned())
}

/// Emits the link lines for the ggml/llama libraries found in `dir`.
pub fn emit_libraries(dir: &Path, names: &[String], shared: bool) {
    println!("cargo:rustc-link-search=native={}", dir.display());
    let kind = if shared { "dylib" } else { "static" };
    for name in names {
        println!("cargo:rustc-link-lib={kind}={name}");
    }
}

/// Emits what static ggml/llama libraries need from the system.
pub fn emit_system_dependencies(config: &Config, cuda_lib_dirs: &[PathBuf]) {
    let f = config.features;
    if config.is_apple() {
        println!("cargo:rustc-link-lib=dylib=c++");
        println!("cargo:rustc-link-lib=framework=Foundation");
        println!("cargo:rustc-link-lib=framework=Accelerate");
        if f.metal {
            println!("cargo:rustc-link-lib=framework=Metal");
            println!("cargo:rustc-link-lib=framework=MetalKit");
        }
    } else if config.target_env != "msvc" {
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
    if f.openmp && !config.is_apple() && config.target_env != "msvc" {
        println!("cargo:rustc-link-lib=dylib=gomp");
    }
    if f.cuda {
        for dir in cuda_lib_dirs {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
        for lib in ["cudart", "cublas", "cublasLt", "cuda"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
    if f.vulkan {
        println!("cargo:rustc-link-lib=dylib=vulkan");
    }
}
