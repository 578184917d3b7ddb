//! A llama-architecture transformer written in this crate's ops: weights
//! read from a GGUF file into backend memory, a key/value cache, and the
//! forward pass llama.cpp's `llama` graph computes, giving the same logits.
//!
//! ```no_run
//! use ggml::backend::Backend;
//! use ggml::transformer::{Model, Options};
//!
//! # fn main() -> ggml::Result<()> {
//! let backend = Backend::cpu()?;
//! let model = Model::load("model.gguf", &backend, Options::default())?;
//! let mut session = model.session(backend)?;
//! let prompt = [1, 415, 2936]; // token ids (llama's tokenizer: ggml::llama)
//! let logits = session.decode(&prompt, false)?; // [1, n_vocab]
//! let next = logits.row(0).iter().enumerate()
//!     .max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as i32).unwrap();
//! let logits = session.decode(&[next], false)?; // one token per step
//! # let _ = logits;
//! # Ok(())
//! # }
//! ```
//!
//! The forward pass is [`llama`]'s `Session::forward`, top to bottom:
//! embeddings (`get_rows`), then per block RMS norm, the Q/K/V projections,
//! RoPE, the cache write (`set_rows`), grouped-query attention (`mul_mat`,
//! `soft_max_ext` with a causal mask, `mul_mat`; or `flash_attn_ext`), the
//! output projection and residual, RMS norm, SwiGLU feed-forward and
//! residual; then the final norm and the output head (the embedding when
//! the file has no `output.weight`).
//!
//! Graphs are built once per step shape (tokens per step, padded; cache
//! positions attended, a power of two from 256) and reused: a step writes
//! its inputs (tokens, positions, cache rows, mask) and computes.

mod cache;
mod hparams;
pub mod llama;

pub use cache::{CacheShape, KvCache};
pub use hparams::{Hparams, ARCHITECTURES};
pub use llama::{Model, Options, Session};
