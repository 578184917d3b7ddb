//! Checks of a model file's *values*, made before llama.cpp reads it.
//!
//! The GGUF reader ([`Gguf`]) validates a file's structure. llama.cpp then
//! trusts what the structure holds: hyperparameters it indexes arrays with
//! or divides by, vocabularies whose consistency it asserts, tensor types
//! whose kernels it calls without asking whether they exist. A hostile file
//! that is valid GGUF can abort the process, read out of bounds or crash at
//! the first decode. Models come from the internet, so [`Model::load`]
//! checks what llama.cpp assumes first, on the file's metadata and tensor
//! index (no tensor data is read), and refuses a file that breaks an
//! assumption with [`Error::InvalidModel`] naming the key or tensor.
//!
//! What is checked:
//!
//! - **Architectures**: only those whose assumptions are written down here
//!   ([`ARCHITECTURES`]) load; others are refused unless the caller vouches
//!   for the file ([`ModelParams::skip_model_checks`], `unsafe`).
//! - **Hyperparameters** (`hparams.rs`): ranges and consistency of every
//!   key the architecture's loader, context and graph code read: layer,
//!   head, expert and embedding counts, per-layer arrays, RoPE dimensions
//!   and scaling, attention key/value lengths, classifier outputs, pooling.
//! - **Tensors** (`tensors.rs`): every tensor's type against the kernels its
//!   role reaches (matrix products need a CPU dot product: not the integer
//!   types, F64, Q8_1 or Q8_K; vectors added or multiplied in need F32) and
//!   the rows of the embedding and output matrices against the vocabulary.
//! - **Vocabulary** (`vocab.rs`): validated tokenizer models only
//!   ([`vocab::TOKENIZERS`]); token count and lengths bounded; every token
//!   text unique as llama.cpp reads it; SentencePiece byte fallbacks
//!   present; BPE decoding cost bounded.
//! - **LoRA adapters**: tensor types as for the model's matrices.
//!
//! Per call, the layer checks the rest: token ids, batch sizes and sequence
//! ids, `add_special` against the special tokens the vocabulary has,
//! tokenizer outputs, and (where llama.cpp's tokenizers recurse once per
//! character) long texts are tokenized on a thread with room for it.
//!
//! [`Gguf`]: crate::gguf::Gguf
//! [`Model::load`]: super::Model::load
//! [`ModelParams::skip_model_checks`]: super::ModelParams::skip_model_checks
//! [`Error::InvalidModel`]: super::Error::InvalidModel

mod grammar;
mod hparams;
mod tensors;
pub(crate) mod vocab;

use std::path::Path;

use super::error::Error;
use crate::gguf::{Gguf, Value};

/// Architectures (`general.architecture`) whose files this crate validates.
pub const ARCHITECTURES: &[&str] = hparams::ARCHITECTURES;

pub(crate) use grammar::check as check_grammar;
pub use grammar::{MAX_GRAMMAR_ELEMENTS, MAX_GRAMMAR_NESTING, MAX_GRAMMAR_RULES};

/// Most tokens a vocabulary may have (2^24; the largest real ones have a
/// few hundred thousand).
pub const MAX_VOCAB: usize = 1 << 24;

/// Longest token text (bytes). Real tokens are at most a few hundred bytes;
/// llama.cpp's grammar sampler recurses once per character of a token it
/// matches (about 380 bytes of stack each), so this bounds that too.
pub const MAX_TOKEN_BYTES: usize = 2048;

/// A broken assumption: the key or tensor, and what is wrong with it.
#[derive(Debug)]
pub(crate) struct Finding {
    item: String,
    reason: String,
}

impl Finding {
    pub(crate) fn new(item: impl Into<String>, reason: impl Into<String>) -> Self {
        Finding {
            item: item.into(),
            reason: reason.into(),
        }
    }

    fn into_error(self, path: &Path) -> Error {
        Error::InvalidModel {
            path: path.to_path_buf(),
            item: self.item,
            reason: self.reason,
        }
    }
}

/// The architecture a file names, as llama.cpp reads it (cut at NUL).
fn architecture(file: &Gguf) -> Option<String> {
    match file.value("general.architecture") {
        Some(Value::String(s)) => Some(s.split('\0').next().unwrap_or("").to_owned()),
        _ => None,
    }
}

/// What a model's check leaves for later calls to know.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// Weights (names without `.weight`) no LoRA adapter may target.
    pub(crate) no_lora: Vec<String>,
}

/// Checks a model file (read with [`Gguf::read_index`]) before llama.cpp
/// loads it; `vocab_only` loads read the vocabulary only, `mmap` ones
/// compute in the mapped file.
pub(crate) fn model(
    path: &Path,
    file: &Gguf,
    vocab_only: bool,
    mmap: bool,
) -> Result<Checked, Error> {
    let arch = architecture(file);
    let run = || -> Result<Checked, Finding> {
        let mut checked = Checked::default();
        if !vocab_only {
            let Some(arch) = arch.as_deref() else {
                // llama.cpp refuses a file without one.
                return Ok(checked);
            };
            hparams::check(file, arch)?;
            tensors::check(file, arch, mmap)?;
            checked.no_lora = file
                .tensors()
                .filter_map(|t| tensors::nvfp4_ffn_with_scale(file, t.name()).map(str::to_owned))
                .collect();
        }
        vocab::check(file, arch.as_deref())?;
        Ok(checked)
    };
    run().map_err(|f| f.into_error(path))
}

/// Checks a LoRA adapter file for `model` before llama.cpp loads it.
pub(crate) fn lora(path: &Path, file: &Gguf, model: &super::Model) -> Result<(), Error> {
    tensors::check_lora(file, model).map_err(|f| f.into_error(path))
}
