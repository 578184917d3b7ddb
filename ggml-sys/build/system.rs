//! Linking a prebuilt llama.cpp found with pkg-config (`llama.pc`).

use std::path::{Path, PathBuf};

use crate::env::Config;
use crate::fail::fail;
use crate::library::{Library, LinkMode};
use crate::link;

/// The oldest llama.cpp whose API the safe crate is written against.
const MIN_LLAMA_VERSION: &str = "0.6.0";

/// Probes `llama` with pkg-config and emits the link lines.
pub fn probe(config: &Config) -> Library {
    let llama = match pkg_config::Config::new()
        .atleast_version(MIN_LLAMA_VERSION)
        .cargo_metadata(false)
        .probe("llama")
    {
        Ok(lib) => lib,
        Err(err) => probe_failed(config, &err),
    };
    let Some(lib_dir) = llama.link_paths.first().cloned() else {
        fail(
            "pkg-config found `llama` but its Libs have no -L directory",
            "Check the Libs line of llama.pc (pkg-config --libs llama).",
        );
    };
    let include_dirs = llama.include_paths.clone();
    if let Some(missing) = ["ggml.h", "ggml-backend.h", "gguf.h", "llama.h"]
        .iter()
        .find(|h| !include_dirs.iter().any(|d| d.join(h).is_file()))
    {
        fail(
            &format!(
                "pkg-config found `llama` {} but not its header {missing} (searched {:?})",
                llama.version, include_dirs
            ),
            "Install the development headers of that llama.cpp, or point PKG_CONFIG_PATH to a complete install.",
        );
    }
    for dir in &include_dirs {
        for header in [
            "ggml.h",
            "ggml-cpu.h",
            "ggml-backend.h",
            "ggml-alloc.h",
            "ggml-opt.h",
            "gguf.h",
            "llama.h",
        ] {
            let path = dir.join(header);
            if path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }

    // llama.pc lists -lllama -lggml -lggml-base but not ggml-cpu, home of the CPU
    // compute and SIMD conversion entry points: link it when it is there.
    let cpu_backend_linked = has_shared_library(&lib_dir, "ggml-cpu");
    if !cpu_backend_linked {
        println!(
            "cargo:warning=ggml-sys: {} has no linkable libggml-cpu (a GGML_BACKEND_DL install, whose backends are loaded at run time); ggml-cpu.h is not bound and compute goes through the backend registry",
            lib_dir.display()
        );
    }
    let mut names = vec!["llama".to_owned(), "ggml".to_owned()];
    if cpu_backend_linked {
        names.push("ggml-cpu".to_owned());
    }
    names.extend(backend_libraries(config, &lib_dir));
    names.push("ggml-base".to_owned());
    // Adding or replacing a library of the install (a backend built later, an
    // upgrade) reruns this script: cargo scans the directory's files.
    println!("cargo:rerun-if-changed={}", lib_dir.display());

    // Cargo puts link-search directories inside the target directory on the
    // loader path of `cargo run` / `cargo test`, so point it at links there.
    let links_dir = config.out_dir.join("system-libs");
    link_libraries_into(&lib_dir, &links_dir);
    crate::barrier::compile(config, &include_dirs);
    link::emit_libraries(&links_dir, &names, true);
    println!(
        "ggml-sys: linking llama {} from {}",
        llama.version,
        lib_dir.display()
    );

    let ggml_version = ggml_version_of_install(&lib_dir);
    if ggml_version.is_none() {
        println!(
            "cargo:warning=ggml-sys: could not tell the ggml version of the install in {} (no cmake/ggml/ggml-config-version.cmake, no versioned libggml-base); the ABI guard compares layouts only",
            lib_dir.display()
        );
    }
    let internal_include = internal_headers(config, ggml_version.as_deref());
    Library {
        mode: LinkMode::System,
        internal_include,
        export_include: include_dirs.first().cloned(),
        include_dirs,
        ggml_version,
        llama_version: Some(llama.version.clone()),
        lib_dir: Some(lib_dir),
        shared: true,
        cpu_backend_linked,
    }
}

fn probe_failed(config: &Config, err: &pkg_config::Error) -> ! {
    let searched =
        std::env::var("PKG_CONFIG_PATH").unwrap_or_else(|_| "(PKG_CONFIG_PATH is not set)".into());
    let default_dirs = std::process::Command::new("pkg-config")
        .args(["--variable", "pc_path", "pkg-config"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| {
            "(pkg-config itself was not found: sudo apt-get install pkg-config)".into()
        });
    let reason = err.to_string();
    let first_lines: String = reason
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("\n    ");
    let build_one = if config.in_repository {
        "or build and install one from the pinned source:\n\
         \x20   scripts/build-system-llama /path/to/prefix\n"
    } else {
        "or build and install one from a llama.cpp checkout (cmake -DBUILD_SHARED_LIBS=ON ... && cmake --install),\n"
    };
    fail(
        &format!(
            "system link mode (GGML_SYS_USE_PKG_CONFIG=1 or the `system` feature), but pkg-config could not find `llama` >= {MIN_LLAMA_VERSION}\n\
             \n  searched PKG_CONFIG_PATH: {searched}\n  and pkg-config's default directories: {default_dirs}\n\
             \n  pkg-config said:\n    {first_lines}"
        ),
        &format!(
            "Point pkg-config at the install's lib/pkgconfig directory:\n\
             \x20   PKG_CONFIG_PATH=/path/to/prefix/lib/pkgconfig cargo build\n\
             {build_one}\
             or build from source instead: unset GGML_SYS_USE_PKG_CONFIG (and drop the `system` feature)"
        ),
    );
}

fn has_shared_library(dir: &Path, name: &str) -> bool {
    ["so", "dylib"]
        .iter()
        .any(|ext| dir.join(format!("lib{name}.{ext}")).exists())
}

/// Symlinks every `lib{llama,ggml}*.so*` of `from` into `to`.
fn link_libraries_into(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("create system-libs directory");
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        let ours = name_str.starts_with("libllama") || name_str.starts_with("libggml");
        let shared = name_str.contains(".so") || name_str.ends_with(".dylib");
        if ours && shared {
            symlink(&entry.path(), &to.join(&name));
        }
    }
}

#[cfg(unix)]
fn symlink(original: &Path, link: &Path) {
    std::os::unix::fs::symlink(original, link).expect("symlink a system library");
}

#[cfg(not(unix))]
fn symlink(original: &Path, link: &Path) {
    std::fs::copy(original, link).expect("copy a system library");
}

/// The shared libraries of the backends whose features are on. An install
/// built without a backend, or with it as a run-time module only
/// (`GGML_BACKEND_DL`), stops the build: its functions (`ggml_backend_rpc_init`,
/// ...) cannot be linked.
fn backend_libraries(config: &Config, lib_dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for backend in crate::backends::enabled(&config.features) {
        let (feature, library, cmake_option) =
            (backend.feature, backend.library, backend.cmake_option);
        if has_shared_library(lib_dir, library) {
            names.push(library.to_owned());
            continue;
        }
        let module = ["ggml", "../ggml"]
            .iter()
            .map(|d| lib_dir.join(d).join(format!("lib{library}.so")))
            .find(|p| p.is_file());
        let why = match module {
            Some(module) => format!(
                "it has the backend only as a run-time module ({}, a GGML_BACKEND_DL install), which cannot be linked",
                module.display()
            ),
            None => format!("it was built without {cmake_option}=ON"),
        };
        fail(
            &format!(
                "the `{feature}` feature is on, but the install in {} has no lib{library} to link: {why}",
                lib_dir.display()
            ),
            &format!(
                "Install a llama.cpp built with -D{cmake_option}=ON (and without GGML_BACKEND_DL),{}\n\
                 or build without the `{feature}` feature (its backend can still be loaded at run time\n\
                 through ggml's backend registry when the install has the module).",
                if config.in_repository {
                    format!(
                        "\n  e.g. GGML_SYS_CMAKE_ARGS=-D{cmake_option}=ON scripts/build-system-llama /path/to/prefix"
                    )
                } else {
                    String::new()
                }
            ),
        );
    }
    names
}

/// ggml's internal headers for an install, which does not install them: the
/// tree bundled with this package when it is the install's ggml version (the
/// `rpc` feature's backend, written in Rust, fills ggml's internal structs,
/// whose layout is only stable within one version).
fn internal_headers(config: &Config, install_version: Option<&str>) -> Option<PathBuf> {
    let bundled = config.manifest_dir.join("llama.cpp");
    let dir = bundled.join("ggml/src");
    if !dir.join("ggml-backend-impl.h").is_file() {
        return None;
    }
    let version = crate::source::cmake_version(&bundled.join("ggml/CMakeLists.txt"), "GGML");
    (version.is_some() && version.as_deref() == install_version).then_some(dir)
}

/// ggml's version of the install: its CMake package version file
/// (`lib/cmake/ggml/ggml-config-version.cmake`, what `cmake --install` writes),
/// else the version in the file name of `libggml-base.so.X.Y.Z` /
/// `libggml-base.X.Y.Z.dylib`.
fn ggml_version_of_install(lib_dir: &Path) -> Option<String> {
    let from_cmake = ["ggml-config-version.cmake", "ggml-version.cmake"]
        .iter()
        .map(|f| lib_dir.join("cmake/ggml").join(f))
        .find_map(|file: PathBuf| {
            let text = std::fs::read_to_string(file).ok()?;
            text.lines().find_map(|line| {
                let rest = line.trim().strip_prefix("set(PACKAGE_VERSION \"")?;
                Some(rest.split('"').next()?.to_owned())
            })
        });
    from_cmake.or_else(|| {
        std::fs::read_dir(lib_dir)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| {
                let version = name
                    .strip_prefix("libggml-base.so.")
                    .or_else(|| name.strip_prefix("libggml-base.")?.strip_suffix(".dylib"))?;
                let parts = version.split('.').count();
                let numeric = version.split('.').all(|p| p.parse::<u32>().is_ok());
                (parts == 3 && numeric).then(|| version.to_owned())
            })
            .next()
    })
}
