//! Everything the build reads from its environment, in one place.
//!
//! Every variable goes through [`var`], which declares it with
//! `rerun-if-env-changed` and echoes its value into the build log.

use std::path::PathBuf;

/// Reads one environment variable, declaring it to cargo and logging its value.
pub fn var(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    let value = std::env::var(name).ok();
    match &value {
        Some(v) => println!("ggml-sys: {name}={v}"),
        None => println!("ggml-sys: {name} is not set"),
    }
    value
}

/// A variable cargo always sets for build scripts.
fn cargo_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo did not set {name}"))
}

/// Whether a variable holds a "yes" (`1`, `true`, `yes`, `on`).
fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// The cargo features of this crate that change the native build.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    pub dynamic: bool,
    pub system: bool,
    pub portable: bool,
    pub cuda: bool,
    pub metal: bool,
    pub vulkan: bool,
    pub openmp: bool,
    pub rpc: bool,
}

impl Features {
    fn read() -> Self {
        let on = |name: &str| std::env::var_os(format!("CARGO_FEATURE_{name}")).is_some();
        Features {
            dynamic: on("DYNAMIC"),
            system: on("SYSTEM"),
            portable: on("PORTABLE"),
            cuda: on("CUDA"),
            metal: on("METAL"),
            vulkan: on("VULKAN"),
            openmp: on("OPENMP"),
            rpc: on("RPC"),
        }
    }
}

/// The whole configuration of one build.
#[derive(Debug)]
pub struct Config {
    pub features: Features,
    /// `GGML_SYS_USE_PKG_CONFIG=1` or the `system` feature.
    pub use_system: bool,
    /// `LLAMA_CPP_DIR` (or the older `LLAMA_DIR`): a user's own llama.cpp checkout.
    pub source_override: Option<PathBuf>,
    /// Optimise the C/C++ for the build machine's CPU.
    pub native: bool,
    /// Extra `-D...` arguments for CMake from `GGML_SYS_CMAKE_ARGS`.
    pub extra_cmake_args: Vec<String>,
    /// Building documentation on docs.rs: no native build.
    pub docs_rs: bool,
    pub manifest_dir: PathBuf,
    pub out_dir: PathBuf,
    pub target: String,
    pub target_os: String,
    pub target_env: String,
    /// Building inside the ggml-rs repository, where `scripts/` exists; a
    /// crates.io user has only the package, and messages must not name them.
    pub in_repository: bool,
}

impl Config {
    /// Reads the features, cargo's variables and the user's variables.
    pub fn read() -> Self {
        let features = Features::read();
        let use_system =
            features.system || var("GGML_SYS_USE_PKG_CONFIG").is_some_and(|v| is_truthy(&v));
        let source_override = var("LLAMA_CPP_DIR")
            .or_else(|| var("LLAMA_DIR"))
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let target = cargo_var("TARGET");
        let host = cargo_var("HOST");
        let cross = target != host;
        let native = match var("GGML_SYS_NATIVE") {
            Some(v) => is_truthy(&v),
            None => !features.portable && !cross,
        };
        let extra_cmake_args = var("GGML_SYS_CMAKE_ARGS")
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let docs_rs = var("DOCS_RS").is_some();
        // Read here only so that they are declared and logged with the others.
        for passive in ["PKG_CONFIG_PATH", "LIBCLANG_PATH", "CUDA_PATH", "CMAKE"] {
            var(passive);
        }
        let manifest_dir = PathBuf::from(cargo_var("CARGO_MANIFEST_DIR"));
        let in_repository = manifest_dir.join("../scripts/fetch-llama-cpp").is_file();
        Config {
            features,
            use_system,
            source_override,
            native,
            extra_cmake_args,
            docs_rs,
            manifest_dir,
            out_dir: PathBuf::from(cargo_var("OUT_DIR")),
            target,
            target_os: cargo_var("CARGO_CFG_TARGET_OS"),
            target_env: std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default(),
            in_repository,
        }
    }

    /// The fix to print: `repository` inside the ggml-rs repository (it may name
    /// `scripts/...`), `package` for a user of the published crate.
    pub fn advice<'a>(&self, repository: &'a str, package: &'a str) -> &'a str {
        if self.in_repository {
            repository
        } else {
            package
        }
    }

    /// Whether the target is an Apple platform.
    pub fn is_apple(&self) -> bool {
        matches!(
            self.target_os.as_str(),
            "macos" | "ios" | "tvos" | "visionos"
        )
    }
}
