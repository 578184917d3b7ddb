//! GGUF files: typed metadata, tensor views and dequantized copies, the
//! writer, round trips with ggml's own reader and writer and with files
//! written by llama.cpp's Python package, split models, loading into ggml,
//! and malformed files.

#[path = "../common/mod.rs"]
mod common;

mod hostile;
mod load;
mod oracle;
mod python;
mod raw;
mod roundtrip;

use std::path::PathBuf;

/// A committed fixture (tests/fixtures/gguf, made by scripts/make-gguf-fixtures).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}
