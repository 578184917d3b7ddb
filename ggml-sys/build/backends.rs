//! The optional backends, in one table: each cargo feature with its CMake
//! option, header, library and bindings module. Every other build module reads
//! this table instead of listing the backends again.

use crate::env::Features;

/// One optional backend of ggml.
pub struct Backend {
    /// The cargo feature (`cuda`), also the bindings module (`ggml_sys::cuda`)
    /// and the suffix of the bindings file (`bindings_cuda.rs`).
    pub feature: &'static str,
    /// The CMake option that builds it (`GGML_CUDA`).
    pub cmake_option: &'static str,
    /// The header bound when the feature is on (`ggml-cuda.h`).
    pub header: &'static str,
    /// The library an install has it in (`ggml-cuda`, i.e. `libggml-cuda.so`).
    pub library: &'static str,
    /// The `wrapper.h` switch that includes the header (`GGML_SYS_CUDA`).
    pub define: &'static str,
    /// Whether the feature is on.
    enabled: fn(&Features) -> bool,
}

impl Backend {
    /// Whether this backend's feature is on in `features`.
    pub fn is_on(&self, features: &Features) -> bool {
        (self.enabled)(features)
    }
}

/// Every optional backend ggml-sys has a feature for.
pub const BACKENDS: [Backend; 4] = [
    Backend {
        feature: "cuda",
        cmake_option: "GGML_CUDA",
        header: "ggml-cuda.h",
        library: "ggml-cuda",
        define: "GGML_SYS_CUDA",
        enabled: |f| f.cuda,
    },
    Backend {
        feature: "metal",
        cmake_option: "GGML_METAL",
        header: "ggml-metal.h",
        library: "ggml-metal",
        define: "GGML_SYS_METAL",
        enabled: |f| f.metal,
    },
    Backend {
        feature: "vulkan",
        cmake_option: "GGML_VULKAN",
        header: "ggml-vulkan.h",
        library: "ggml-vulkan",
        define: "GGML_SYS_VULKAN",
        enabled: |f| f.vulkan,
    },
    Backend {
        feature: "rpc",
        cmake_option: "GGML_RPC",
        header: "ggml-rpc.h",
        library: "ggml-rpc",
        define: "GGML_SYS_RPC",
        enabled: |f| f.rpc,
    },
];

/// The backends whose features are on.
pub fn enabled(features: &Features) -> impl Iterator<Item = &'static Backend> + '_ {
    BACKENDS.iter().filter(move |b| b.is_on(features))
}
