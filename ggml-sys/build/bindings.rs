//! bindgen over `wrapper.h`, with the headers of the library actually built or linked.

use crate::env::Config;
use crate::fail::fail;
use crate::library::Library;

/// The options every bindgen run shares.
fn base_builder(config: &Config, library: &Library) -> bindgen::Builder {
    let mut builder = bindgen::Builder::default()
        .header(config.manifest_dir.join("wrapper.h").display().to_string())
        .rust_target(bindgen::RustTarget::stable(82, 0).unwrap_or_default())
        // Keep the headers' comments as doc comments, not only `///`-style ones.
        .clang_arg("-fparse-all-comments")
        .generate_comments(true)
        // A C enum as a Rust `enum` would make an unknown value undefined
        // behaviour: keep them as integer constants; the safe crate converts.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .size_t_is_usize(true);
    for dir in &library.include_dirs {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    // The exception barrier's declarations (`ggml_sys_try_*`).
    builder = builder.clang_arg(format!("-I{}", config.manifest_dir.join("shim").display()));
    if library.cpu_backend_linked {
        builder = builder.clang_arg("-DGGML_SYS_CPU_BACKEND");
    }
    builder
}

/// Generates `$OUT_DIR/bindings.rs` (ggml, ggml-alloc, ggml-backend, ggml-cpu,
/// ggml-opt, gguf, llama) and one `bindings_<backend>.rs` per backend feature.
pub fn generate(config: &Config, library: &Library) {
    let core = base_builder(config, library)
        .allowlist_function("(ggml|gguf|llama)_.*")
        .allowlist_type("(ggml|gguf|llama)_.*")
        .allowlist_var("(GGML|GGUF|LLAMA)_.*");
    write(config, library, core, "bindings.rs");
    // The modules of every backend (each gated by its feature), for lib.rs.
    let modules: String = crate::backends::BACKENDS
        .iter()
        .map(|b| {
            format!(
                "backend_bindings!({0:?}, {0}, \"bindings_{0}.rs\", {1:?});\n",
                b.feature, b.header
            )
        })
        .collect();
    std::fs::write(config.out_dir.join("backend_modules.rs"), modules)
        .expect("write backend_modules.rs");
    // ggml's internal backend interface, for the `rpc` feature's client
    // (a backend the safe crate implements): its own module, since its
    // complete structs would clash with the opaque ones of the public headers.
    if config.features.rpc {
        let Some(internal) = &library.internal_include else {
            fail(
                "the `rpc` feature needs ggml's internal header ggml-backend-impl.h of the linked ggml version, and none is at hand",
                "In the system link mode the header comes from the llama.cpp tree bundled with ggml-sys,\n\
                 which must be the install's ggml version (scripts/fetch-llama-cpp fetches the pinned one);\n\
                 or build llama.cpp from source (unset GGML_SYS_USE_PKG_CONFIG).",
            )
        };
        let builder = base_builder(config, library)
            .clang_arg(format!("-I{}", internal.display()))
            .clang_arg("-DGGML_SYS_BACKEND_IMPL")
            .allowlist_file(".*[/\\\\]ggml-backend-impl\\.h")
            .allowlist_recursively(false);
        write(config, library, builder, "bindings_backend_impl.rs");
    }
    // One file per backend feature, included as a feature-gated module
    // (`ggml_sys::cuda`, ...) so that the documentation can badge it.
    for backend in crate::backends::enabled(&config.features) {
        // Only the backend header's own items; the types it uses (ggml_backend_t,
        // ...) come from the core bindings through `use super::*`.
        let header = backend.header.replace('.', "\\.");
        let builder = base_builder(config, library)
            .clang_arg(format!("-D{}", backend.define))
            .allowlist_file(format!(".*[/\\\\]{header}"))
            .allowlist_recursively(false);
        write(
            config,
            library,
            builder,
            &format!("bindings_{}.rs", backend.feature),
        );
    }
}

fn write(config: &Config, library: &Library, builder: bindgen::Builder, file: &str) {
    let out = config.out_dir.join(file);
    match run_bindgen(builder) {
        Ok(bindings) => bindings.write_to_file(&out).expect("write the bindings"),
        Err(Failure::NoLibclang(reason)) => fail(
            &format!("libclang was not found; bindgen loads it to read the C headers ({reason})"),
            config.advice(
                "Install it with:  scripts/setup   (or: sudo apt-get install libclang-dev)\n\
                 or point to it:   LIBCLANG_PATH=/usr/lib/llvm-14/lib cargo build",
                "Install it with:  sudo apt-get install libclang-dev   (Fedora: sudo dnf install clang-devel)\n\
                 or point to it:   LIBCLANG_PATH=/usr/lib/llvm-14/lib cargo build",
            ),
        ),
        Err(Failure::Clang(reason)) if is_missing_builtin_header(&reason) => fail(
            &format!(
                "libclang was found but not its built-in C headers (stddef.h, stdbool.h): {reason}"
            ),
            config.advice(
                "Install the complete libclang with:  scripts/setup   (or: sudo apt-get install libclang-dev)\n\
                 or point to a complete LLVM:        LIBCLANG_PATH=/usr/lib/llvm-14/lib cargo build",
                "Install the complete libclang with:  sudo apt-get install libclang-dev\n\
                 or point to a complete LLVM:        LIBCLANG_PATH=/usr/lib/llvm-14/lib cargo build",
            ),
        ),
        Err(Failure::Clang(reason)) => fail(
            &format!(
                "bindgen could not parse the llama.cpp headers in {:?}: {reason}",
                library.include_dirs
            ),
            "Check that these headers belong to a complete llama.cpp install or source tree\n\
             (LLAMA_CPP_DIR, or PKG_CONFIG_PATH in the system link mode).",
        ),
    }
}

/// Why bindgen failed.
enum Failure {
    /// libclang could not be loaded (clang-sys panics).
    NoLibclang(String),
    /// clang ran and reported an error.
    Clang(String),
}

/// A standard header clang ships itself is missing: libclang without its
/// resource directory (e.g. `libclang1` without `libclang-common-*-dev`).
fn is_missing_builtin_header(reason: &str) -> bool {
    [
        "'stddef.h' file not found",
        "'stdbool.h' file not found",
        "'stdint.h' file not found",
    ]
    .iter()
    .any(|h| reason.contains(h))
}

/// Runs bindgen, turning its panics (libclang not found) into an error.
fn run_bindgen(builder: bindgen::Builder) -> Result<bindgen::Bindings, Failure> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    std::panic::set_hook(previous_hook);
    match result {
        Ok(Ok(bindings)) => Ok(bindings),
        Ok(Err(err)) => Err(Failure::Clang(err.to_string())),
        Err(panic) => Err(Failure::NoLibclang(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "bindgen panicked".to_owned()),
        )),
    }
}
