//! What the build found or built, and how it is handed on: `links` metadata for
//! dependent build scripts, `cfg`s, and constants the crate reads at run time.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::env::Config;

/// Where the library came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Built here from llama.cpp source with CMake.
    Source,
    /// A prebuilt library found with pkg-config.
    System,
    /// docs.rs: bindings only, nothing linked.
    DocsOnly,
}

impl LinkMode {
    fn as_str(self) -> &'static str {
        match self {
            LinkMode::Source => "source",
            LinkMode::System => "system",
            LinkMode::DocsOnly => "docs-only",
        }
    }
}

/// The library the bindings are generated for and linked against.
#[derive(Debug)]
pub struct Library {
    pub mode: LinkMode,
    /// Directories bindgen reads `ggml.h`, `llama.h`, ... from.
    pub include_dirs: Vec<PathBuf>,
    /// The include directory exported to dependents (`DEP_LLAMA_INCLUDE`).
    pub export_include: Option<PathBuf>,
    /// Directory holding the libraries (absent for docs.rs).
    pub lib_dir: Option<PathBuf>,
    /// Whether the libraries are shared objects.
    pub shared: bool,
    /// Whether `ggml-cpu` (the CPU backend with its public C API) is linked.
    /// False for `GGML_BACKEND_DL` builds, whose backends are loaded at run time.
    pub cpu_backend_linked: bool,
    /// ggml version the headers belong to, when known.
    pub ggml_version: Option<String>,
    /// llama.cpp version, when known.
    pub llama_version: Option<String>,
    /// The directory with ggml's internal `ggml-backend-impl.h` of the same
    /// version as the library (the source tree built, or in the system mode
    /// the bundled tree when its version matches the install's), bound for
    /// the `rpc` feature's backend written in Rust. `None` when no tree of
    /// that version is at hand.
    pub internal_include: Option<PathBuf>,
}

impl Library {
    /// Exports metadata, cfgs and the run-time constants.
    pub fn export(&self, config: &Config) {
        if let Some(include) = self.export_include.as_ref().or(self.include_dirs.first()) {
            println!("cargo:include={}", include.display());
        }
        if let Some(lib_dir) = &self.lib_dir {
            println!("cargo:lib_dir={}", lib_dir.display());
            if let Some(root) = lib_dir.parent() {
                println!("cargo:root={}", root.display());
            }
        }
        // The directory a binary needs on its run-time search path: shared
        // libraries, on targets whose linkers take `-rpath`. Links metadata
        // reaches direct dependents only; the `ggml` crate passes it on as
        // `DEP_GGML_RPATH`.
        if let (true, Some(lib_dir)) = (self.shared, &self.lib_dir) {
            if config.target_os != "windows" {
                println!("cargo:rpath={}", lib_dir.display());
            }
        }
        println!("cargo:link_mode={}", self.mode.as_str());
        println!("cargo:shared={}", u8::from(self.shared));
        let cpu = if self.cpu_backend_linked {
            "linked"
        } else {
            "dynamic"
        };
        println!("cargo:cpu_backend={cpu}");

        println!("cargo:rustc-check-cfg=cfg(ggml_sys_cpu_backend)");
        if self.cpu_backend_linked {
            println!("cargo:rustc-cfg=ggml_sys_cpu_backend");
        }

        std::fs::write(
            config.out_dir.join("build_info.rs"),
            self.build_info(config),
        )
        .expect("write build_info.rs");
    }

    fn build_info(&self, config: &Config) -> String {
        let opt = |v: &Option<String>| match v {
            Some(s) => format!("Some({s:?})"),
            None => "None".to_owned(),
        };
        let f = config.features;
        let mut out = String::new();
        let mut item = |doc: &str, decl: String| {
            writeln!(out, "/// {doc}\n{decl}").unwrap();
        };
        item(
            "How this build found llama.cpp: `\"source\"` (built with CMake), `\"system\"` (pkg-config) or `\"docs-only\"`.",
            format!("pub const LINK_MODE: &str = {:?};", self.mode.as_str()),
        );
        item(
            "Version of ggml whose headers the bindings were generated from, when the build could tell.",
            format!("pub const GGML_VERSION: Option<&str> = {};", opt(&self.ggml_version)),
        );
        item(
            "Version of llama.cpp whose headers the bindings were generated from, when the build could tell.",
            format!("pub const LLAMA_VERSION: Option<&str> = {};", opt(&self.llama_version)),
        );
        item(
            "Whether the libraries are shared objects (`dynamic` feature, or a system install).",
            format!("pub const SHARED: bool = {};", self.shared),
        );
        item(
            "Whether the CPU backend (`ggml-cpu`) is linked, so that `ggml-cpu.h` is bound. False for `GGML_BACKEND_DL` installs, whose backends are loaded at run time through the backend registry.",
            format!("pub const CPU_BACKEND_LINKED: bool = {};", self.cpu_backend_linked),
        );
        item(
            "Directory of the linked libraries, when there is one.",
            format!(
                "pub const LIB_DIR: Option<&str> = {};",
                opt(&self.lib_dir.as_ref().map(|p| p.display().to_string()))
            ),
        );
        let backends = crate::backends::BACKENDS
            .iter()
            .map(|b| (b.feature, b.is_on(&f)));
        for (feature, on) in backends.chain([("openmp", f.openmp)]) {
            item(
                &format!("Whether the `{feature}` feature was on for this build."),
                format!("pub const FEATURE_{}: bool = {on};", feature.to_uppercase()),
            );
        }
        out
    }
}
