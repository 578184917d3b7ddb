//! Safe Rust API for ggml (work in progress).
