//! A safe layer over llama.cpp (`llama.h`): load a [`Model`], tokenize with
//! its [`Vocab`], decode [`Batch`]es in a [`Context`], read logits and
//! embeddings as `ndarray` views, sample with a [`Sampler`] chain, format
//! chats with the model's template.
//!
//! ```no_run
//! use ggml::llama::{Batch, Context, ContextParams, Model, Sampler};
//!
//! # fn main() -> ggml::llama::Result<()> {
//! let model = Model::load("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let mut ctx = Context::new(&model, &ContextParams::new().n_ctx(2048))?;
//! let vocab = model.vocab();
//! let prompt = vocab.tokenize("The capital of France is", true, false)?;
//! let mut sampler = Sampler::greedy(&model);
//! let mut batch = Batch::from_prompt(&prompt)?;
//! let mut pos = prompt.len() as i32;
//! let mut text = vocab.text_stream(false);
//! for _ in 0..16 {
//!     ctx.decode(&batch)?;
//!     let token = sampler.sample(&ctx, batch.len() - 1)?;
//!     if vocab.is_eog(token) {
//!         break;
//!     }
//!     print!("{}", text.push(token)?);
//!     batch.clear();
//!     batch.add(token, pos, &[0], true)?;
//!     pos += 1;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What is checked
//!
//! llama.cpp ends the process on a token id outside the vocabulary, a batch
//! larger than the context takes, a sequence id out of range, logits asked
//! of a token that did not request them, a sampler chain that selects
//! nothing, a token a grammar forbids. Each is an [`Error`] of this layer
//! here, checked before the call (its own type, holding the core crate's
//! [`crate::Error`] as [`Error::Ggml`]). A
//! C++ exception thrown inside llama.cpp is caught at the boundary (a small
//! C++ barrier compiled with it) and is [`Error::Exception`].
//!
//! # Model files
//!
//! Model files come from the internet. Before llama.cpp reads one, this
//! crate's GGUF reader validates its structure, and then its values are
//! checked against what llama.cpp assumes of them without checking:
//! hyperparameters it asserts on or indexes with, every tensor's type
//! against the CPU kernels its role reaches (the CPU is every model's
//! fallback), and the vocabulary's consistency. A file that breaks an
//! assumption is [`Error::InvalidModel`], naming the key or tensor.
//! The architectures validated are [`ARCHITECTURES`]; others load only
//! through the `unsafe` [`ModelParams::skip_model_checks`]. The full list
//! of checks, with the llama.cpp asserts each one pre-empts, is in
//! `docs/model-checks.md` of the repository.
//!
//! # Lifetimes and threads
//!
//! A [`Context`], [`Vocab`], [`Sampler`] and [`Lora`] borrow their
//! [`Model`]; logits and embeddings views borrow their context, so the next
//! decode (which takes `&mut`) ends them. A `Model` is `Send + Sync`: after
//! loading llama.cpp only reads it (LoRA adapters are added and removed
//! through `&mut Model`); contexts and samplers are `Send`.
//!
//! # Logging
//!
//! llama.cpp's and ggml's log lines go to the [`log`](::log) crate (target
//! `llama`), not to stderr: install a logger (`env_logger`, ...) to see them.

mod batch;
mod chat;
mod check;
mod context;
mod error;
mod log;
mod model;
mod raw;
mod sampler;
mod vocab;

pub use batch::Batch;
pub use chat::{apply_chat_template, builtin_templates, ChatMessage};
pub use check::{
    ARCHITECTURES, MAX_GRAMMAR_ELEMENTS, MAX_GRAMMAR_NESTING, MAX_GRAMMAR_RULES, MAX_TOKEN_BYTES,
    MAX_VOCAB,
};
pub use context::{Context, ContextParams, FlashAttention, Perf, Pooling};
#[allow(deprecated)]
pub use error::LlamaError;
pub use error::{Error, Result};
pub use model::{Lora, Model, ModelParams};
pub use sampler::{Sampler, SamplerBuilder, MAX_PENALTY_WINDOW};
pub use vocab::{TextStream, Token, TokenAttrs, Vocab, MAX_TOKENIZE_BYTES};

use std::sync::OnceLock;

/// Initialises llama.cpp once: the ggml checks, the log callback, then
/// `llama_backend_init`.
pub(crate) fn init() -> Result<()> {
    crate::init::ensure()?;
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| raw::init(log::callback));
    Ok(())
}

/// A path as llama.cpp takes it (a C string).
fn path_c_string(path: &std::path::Path) -> Result<std::ffi::CString> {
    let nul = |_| Error::InteriorNul { what: "a path" };
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(nul)
    }
    #[cfg(not(unix))]
    {
        let s = path.to_str().ok_or(Error::InvalidParams(format!(
            "the path {} is not UTF-8",
            path.display()
        )))?;
        std::ffi::CString::new(s).map_err(|e| nul(e).into())
    }
}
