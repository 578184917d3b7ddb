//! Building llama.cpp from source with its own CMake (the default link mode).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::Config;
use crate::fail::fail;
use crate::library::{Library, LinkMode};
use crate::link;

/// Finds the llama.cpp tree: `LLAMA_CPP_DIR`/`LLAMA_DIR`, else the pinned copy
/// in `ggml-sys/llama.cpp` (fetched by `scripts/fetch-llama-cpp`, and shipped
/// inside the crates.io package).
pub fn locate(config: &Config) -> PathBuf {
    let (dir, from_env) = match &config.source_override {
        Some(dir) => (dir.clone(), true),
        None => (config.manifest_dir.join("llama.cpp"), false),
    };
    let required = ["CMakeLists.txt", "ggml/include/ggml.h", "include/llama.h"];
    if let Some(missing) = required.iter().find(|f| !dir.join(f).is_file()) {
        let what = if from_env && !dir.exists() {
            format!("LLAMA_CPP_DIR={} does not exist", dir.display())
        } else if from_env {
            format!(
                "LLAMA_CPP_DIR={} is not a llama.cpp source tree ({missing} is missing)",
                dir.display()
            )
        } else {
            format!(
                "the llama.cpp source is missing ({} does not exist)",
                dir.join(missing).display()
            )
        };
        fail(
            &what,
            config.advice(
                "Get the pinned source with:        scripts/fetch-llama-cpp\n\
                 or use your own checkout:          LLAMA_CPP_DIR=/path/to/llama.cpp cargo build\n\
                 or link an installed libllama:     GGML_SYS_USE_PKG_CONFIG=1 cargo build",
                "Unset LLAMA_CPP_DIR to build the llama.cpp shipped in this package,\n\
                 or point it at a complete checkout:  LLAMA_CPP_DIR=/path/to/llama.cpp cargo build\n\
                 or link an installed libllama:       GGML_SYS_USE_PKG_CONFIG=1 PKG_CONFIG_PATH=/prefix/lib/pkgconfig cargo build",
            ),
        );
    }
    let dir = dir.canonicalize().unwrap_or(dir);
    // Only what the libraries are built from; cargo scans these directories.
    for tracked in [
        "CMakeLists.txt",
        "cmake",
        "ggml/CMakeLists.txt",
        "ggml/cmake",
        "ggml/include",
        "ggml/src",
        "include",
        "src",
    ] {
        println!("cargo:rerun-if-changed={}", dir.join(tracked).display());
    }
    dir
}

/// docs.rs: the headers of the pinned source, nothing built or linked.
pub fn headers_only(config: &Config) -> Library {
    let dir = locate(config);
    Library {
        mode: LinkMode::DocsOnly,
        include_dirs: vec![dir.join("ggml/include"), dir.join("include")],
        export_include: None,
        lib_dir: None,
        shared: false,
        cpu_backend_linked: true,
        ggml_version: cmake_version(&dir.join("ggml/CMakeLists.txt"), "GGML"),
        llama_version: cmake_version(&dir.join("CMakeLists.txt"), "LLAMA"),
        internal_include: Some(dir.join("ggml/src")),
    }
}

/// Builds the ggml and llama libraries with CMake and emits the link lines.
pub fn build(config: &Config) -> Library {
    let dir = locate(config);
    check_cmake(config);
    check_build_tools(config);
    let cuda = if config.features.cuda {
        Some(find_cuda())
    } else {
        None
    };
    check_other_toolkits(config);

    let f = config.features;
    let mut cmake = cmake::Config::new(&dir);
    // Release optimisation for the C/C++ even in a debug cargo build.
    cmake.profile("Release");
    // The pinned tree has no `.git`; without a ceiling, llama.cpp's CMake would
    // ask git about the enclosing repository (the crate's own, or a user's
    // project vendoring it) and bake that commit into `ggml_commit()`.
    if let Some(parent) = dir.parent() {
        cmake.env("GIT_CEILING_DIRECTORIES", parent);
    }
    let on_off = |b: bool| if b { "ON" } else { "OFF" };
    let mut defines: Vec<(&str, &str)> = vec![
        ("CMAKE_INSTALL_LIBDIR", "lib"),
        ("BUILD_SHARED_LIBS", on_off(f.dynamic)),
        ("LLAMA_BUILD_COMMON", "OFF"),
        ("LLAMA_BUILD_TESTS", "OFF"),
        ("LLAMA_BUILD_TOOLS", "OFF"),
        ("LLAMA_BUILD_EXAMPLES", "OFF"),
        ("LLAMA_BUILD_SERVER", "OFF"),
        ("LLAMA_BUILD_APP", "OFF"),
        ("LLAMA_OPENSSL", "OFF"),
        ("LLAMA_ALL_WARNINGS", "OFF"),
        ("GGML_ALL_WARNINGS", "OFF"),
        ("GGML_CCACHE", "OFF"),
        ("GGML_NATIVE", on_off(config.native)),
        ("GGML_OPENMP", on_off(f.openmp)),
        ("GGML_METAL_EMBED_LIBRARY", on_off(f.metal)),
        ("GGML_BLAS", "OFF"),
    ];
    for backend in &crate::backends::BACKENDS {
        defines.push((backend.cmake_option, on_off(backend.is_on(&f))));
    }
    if !config.native && config.target.starts_with("x86_64") {
        // Baseline x86-64: the binary runs on any x86-64 CPU.
        for isa in [
            "GGML_SSE42",
            "GGML_AVX",
            "GGML_AVX2",
            "GGML_BMI2",
            "GGML_FMA",
            "GGML_F16C",
        ] {
            defines.push((isa, "OFF"));
        }
    }
    if f.dynamic && config.target_os != "windows" {
        // libllama finds libggml* next to itself: a binary's RUNPATH only serves
        // its direct dependencies, and the linker may drop -lggml as unneeded.
        let origin = if config.is_apple() {
            "@loader_path"
        } else {
            "$ORIGIN"
        };
        defines.push(("CMAKE_INSTALL_RPATH", origin));
    }
    for (key, value) in &defines {
        cmake.define(key, value);
    }
    if let Some(cuda) = &cuda {
        cmake.define("CMAKE_CUDA_COMPILER", &cuda.nvcc);
    }
    for arg in &config.extra_cmake_args {
        cmake.configure_arg(arg);
    }
    let build_dir = shared_build_dir(config, &dir, &defines, cuda.as_ref());
    cmake.out_dir(&build_dir);
    println!(
        "ggml-sys: building llama.cpp from {} into {} ({}, {})",
        dir.display(),
        build_dir.display(),
        if f.dynamic { "shared" } else { "static" },
        if config.native {
            "native CPU"
        } else {
            "portable CPU"
        }
    );
    let prefix = cmake.build();

    let lib_dir = prefix.join("lib");
    let names = link::libraries_in(&lib_dir, f.dynamic);
    let include_dirs = vec![dir.join("ggml/include"), dir.join("include")];
    crate::barrier::compile(config, &include_dirs);
    link::emit_libraries(&lib_dir, &names, f.dynamic);
    if !f.dynamic {
        let cuda_dirs = cuda.map(|c| c.lib_dirs).unwrap_or_default();
        link::emit_system_dependencies(config, &cuda_dirs);
    }
    Library {
        mode: LinkMode::Source,
        // Bindings come from the source tree, whose files cargo tracks; the
        // installed copies are exported to dependents.
        include_dirs,
        export_include: Some(prefix.join("include")),
        lib_dir: Some(lib_dir),
        shared: f.dynamic,
        cpu_backend_linked: true,
        ggml_version: cmake_version(&dir.join("ggml/CMakeLists.txt"), "GGML"),
        llama_version: cmake_version(&dir.join("CMakeLists.txt"), "LLAMA"),
        internal_include: Some(dir.join("ggml/src")),
    }
}

/// Reads `set(<PREFIX>_VERSION_MAJOR 0)` & co. from a CMakeLists.txt.
pub fn cmake_version(file: &Path, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let part = |name: &str| {
        let key = format!("set({prefix}_VERSION_{name} ");
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&key))
            .map(|rest| rest.trim_end_matches(')').trim().to_owned())
    };
    Some(format!(
        "{}.{}.{}",
        part("MAJOR")?,
        part("MINOR")?,
        part("PATCH")?
    ))
}

fn check_cmake(config: &Config) {
    let cmake = std::env::var("CMAKE").unwrap_or_else(|_| "cmake".to_owned());
    if !runs(&cmake) {
        fail(
            &format!("`{cmake}` was not found; it is needed to build llama.cpp from source"),
            &format!(
                "{}\n\
                 or point to one:               CMAKE=/path/to/cmake cargo build\n\
                 or link an installed libllama: GGML_SYS_USE_PKG_CONFIG=1 cargo build",
                config.advice(
                    "Install it with:               scripts/setup   (or: sudo apt-get install cmake make g++)",
                    "Install it with:               sudo apt-get install cmake make g++   (Fedora: sudo dnf install cmake make gcc-c++; macOS: brew install cmake)",
                )
            ),
        );
    }
}

/// Whether `program --version` runs and succeeds.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The build program of CMake's generator (`make` for the default "Unix
/// Makefiles", `ninja` for Ninja) and, for native builds, a C++ compiler:
/// without them CMake stops with a message that does not say what to install.
fn check_build_tools(config: &Config) {
    let install = |package: &str| {
        if config.in_repository {
            format!("Install it with:  scripts/setup   (or: sudo apt-get install {package})")
        } else {
            format!("Install it with:  sudo apt-get install {package}")
        }
    };
    let generator = crate::env::var("CMAKE_GENERATOR").unwrap_or_default();
    if generator.contains("Ninja") {
        if !runs("ninja") && !runs("ninja-build") {
            fail(
                &format!("CMAKE_GENERATOR={generator}, but `ninja` was not found"),
                &format!(
                    "{}\nor unset CMAKE_GENERATOR to use make",
                    install("ninja-build")
                ),
            );
        }
    } else if generator.is_empty() && !cfg!(windows) && !runs("make") && !runs("gmake") {
        fail(
            "`make` was not found; CMake's default generator (Unix Makefiles) needs it to build llama.cpp",
            &format!(
                "{}\nor use Ninja:     CMAKE_GENERATOR=Ninja cargo build   (with ninja installed)",
                install("make")
            ),
        );
    }
    let cross = std::env::var("HOST").ok().as_deref() != Some(config.target.as_str());
    if !cross && !cfg!(windows) {
        let cxx = crate::env::var("CXX").unwrap_or_else(|| "c++".to_owned());
        if !runs(&cxx) {
            fail(
                &format!("the C++ compiler `{cxx}` was not found; llama.cpp is C and C++"),
                &format!(
                    "{}\nor point to one:  CXX=/path/to/clang++ cargo build",
                    install("g++")
                ),
            );
        }
    }
}

/// Where CMake builds and installs: one directory per configuration, shared
/// by every build of this crate in the target directory.
///
/// Cargo gives each build-script run its own `OUT_DIR`, hashed from, among
/// other things, the features of the build script's own dependencies (bindgen,
/// syn, ...), which differ between, say, `cargo build -p ggml-sys-2` and an
/// example of a workspace that also has proc-macros. Building in `OUT_DIR`
/// would compile llama.cpp once per such variant; keyed by what reaches CMake,
/// a second variant only re-runs CMake's configure step and finds everything
/// up to date. Cargo holds the target directory's lock while it builds, so two
/// builds never share a directory at once.
fn shared_build_dir(
    config: &Config,
    source: &Path,
    defines: &[(&str, &str)],
    cuda: Option<&Cuda>,
) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut h);
    std::fs::read_to_string(source.join(".ggml-sys-source"))
        .unwrap_or_default()
        .hash(&mut h);
    defines.hash(&mut h);
    config.extra_cmake_args.hash(&mut h);
    config.target.hash(&mut h);
    cuda.map(|c| &c.nvcc).hash(&mut h);
    // What the cmake and cc crates turn into compiler flags.
    for var in [
        "OPT_LEVEL",
        "DEBUG",
        "PROFILE",
        "CC",
        "CXX",
        "CFLAGS",
        "CXXFLAGS",
        "CMAKE_GENERATOR",
        "CMAKE_TOOLCHAIN_FILE",
    ] {
        std::env::var(var).ok().hash(&mut h);
    }
    let key = format!("ggml-sys-llama-cpp-{:016x}", h.finish());
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    match config.out_dir.parent().and_then(Path::parent) {
        Some(build) if build.file_name().is_some_and(|n| n == "build") => build.join(key),
        _ => config.out_dir.join("cmake"),
    }
}

/// The CUDA toolkit the `cuda` feature builds with.
struct Cuda {
    nvcc: PathBuf,
    lib_dirs: Vec<PathBuf>,
}

fn find_cuda() -> Cuda {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(cxx) = crate::env::var("CUDACXX") {
        candidates.push(cxx.into());
    }
    if let Ok(root) = std::env::var("CUDA_PATH") {
        candidates.push(Path::new(&root).join("bin/nvcc"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nvcc")));
    }
    candidates.push("/usr/local/cuda/bin/nvcc".into());
    let Some(nvcc) = candidates.into_iter().find(|p| p.is_file()) else {
        fail(
            "the `cuda` feature needs the CUDA toolkit, but `nvcc` was not found (looked at $CUDACXX, $CUDA_PATH/bin, $PATH and /usr/local/cuda/bin)",
            "Install the CUDA toolkit (e.g. sudo apt-get install nvidia-cuda-toolkit),\n\
             or point to it:   CUDA_PATH=/usr/local/cuda cargo build --features cuda\n\
             or build without the `cuda` feature.",
        );
    };
    let root = nvcc
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let lib_dirs = ["lib64", "lib", "targets/x86_64-linux/lib", "lib64/stubs"]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.is_dir())
        .collect();
    Cuda { nvcc, lib_dirs }
}

fn check_other_toolkits(config: &Config) {
    let f = config.features;
    if f.metal && !config.is_apple() {
        fail(
            &format!(
                "the `metal` feature needs an Apple target, but the target is {}",
                config.target
            ),
            "Build without the `metal` feature (try `vulkan` or `cuda` on this platform).",
        );
    }
    if f.vulkan {
        check_vulkan();
    }
}

/// The oldest Vulkan headers the pinned ggml-vulkan compiles with: it uses
/// `VK_EXT_layer_settings` (`vk::LayerSettingEXT`), in the public headers
/// since 1.3.272. Debian 12 ships 1.3.239.
const MIN_VULKAN_HEADER: u32 = 272;

/// Every tool and header the `vulkan` feature needs, checked before CMake
/// runs (which would stop at the first missing tool, or the compiler deep
/// inside ggml-vulkan.cpp with headers that are too old).
fn check_vulkan() {
    let mut missing = Vec::new();
    if !runs("glslc") {
        missing.push(("the glslc shader compiler", "glslc"));
    }
    // CMake's FindVulkan (3.25, Debian 12's) looks for it too.
    if !runs("glslangValidator") {
        missing.push(("glslangValidator", "glslang-tools"));
    }
    let loader = pkg_config::Config::new()
        .cargo_metadata(false)
        .probe("vulkan")
        .ok();
    if loader.is_none() {
        missing.push(("the Vulkan loader and headers (vulkan.pc)", "libvulkan-dev"));
    }
    if !missing.is_empty() {
        let what: Vec<&str> = missing.iter().map(|m| m.0).collect();
        let packages: Vec<&str> = missing.iter().map(|m| m.1).collect();
        fail(
            &format!("the `vulkan` feature needs {}, which were not found", what.join(", ")),
            &format!(
                "On Debian/Ubuntu:  sudo apt-get install {}\n\
                 (and Vulkan headers 1.3.{MIN_VULKAN_HEADER} or later), or build without the `vulkan` feature.",
                packages.join(" ")
            ),
        );
    }
    let mut dirs = loader.map(|l| l.include_paths).unwrap_or_default();
    dirs.push(PathBuf::from("/usr/include"));
    let header = dirs
        .iter()
        .map(|d| d.join("vulkan/vulkan_core.h"))
        .find(|h| h.is_file());
    let version = header.as_ref().and_then(|h| {
        std::fs::read_to_string(h).ok()?.lines().find_map(|l| {
            l.strip_prefix("#define VK_HEADER_VERSION ")?
                .trim()
                .parse::<u32>()
                .ok()
        })
    });
    if let (Some(h), Some(v)) = (&header, version) {
        if v < MIN_VULKAN_HEADER {
            fail(
                &format!(
                    "the Vulkan headers in {} are version 1.3.{v}; the pinned ggml-vulkan needs \
                     1.3.{MIN_VULKAN_HEADER} or later (it uses VK_EXT_layer_settings)",
                    h.display()
                ),
                "Install newer Vulkan headers (Debian 12 and Ubuntu 22.04 ship older ones: the\n\
                 LunarG Vulkan SDK, or a newer distribution's libvulkan-dev), make their\n\
                 vulkan.pc visible through PKG_CONFIG_PATH, or build without the `vulkan` feature.",
            );
        }
    }
}
