//! [`Error`]: what can go wrong in the llama layer. Every precondition
//! llama.cpp would abort on (or terminate the process over) is one of these
//! instead. The layer sits above the core crate and has its own error type,
//! which holds the core's ([`Error::Ggml`]: files, GGUF, the ABI guard) and
//! converts from it; the core's [`crate::Error`] knows nothing of llama.

use std::path::PathBuf;

/// What went wrong in a llama call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the core crate: files, GGUF, the ABI guard, sizes.
    #[error(transparent)]
    Ggml(#[from] crate::Error),

    /// llama.cpp could not load the model (not a model, unknown
    /// architecture, missing tensors, out of memory, ...).
    #[error("llama.cpp could not load the model {path}: {reason}")]
    ModelLoad {
        /// The file.
        path: PathBuf,
        /// What is known of why (llama.cpp's last error log line).
        reason: String,
    },
    /// The progress callback returned `false`.
    #[error("model loading was cancelled by the progress callback")]
    Cancelled,
    /// llama.cpp could not create the context.
    #[error("llama.cpp could not create the context: {0}")]
    ContextInit(String),
    /// Parameters llama.cpp would misuse or abort on.
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// A token id outside the vocabulary.
    #[error("token {token} is outside the vocabulary (0..{n_vocab})")]
    TokenOutOfRange {
        /// The id.
        token: i32,
        /// Vocabulary size.
        n_vocab: i32,
    },
    /// The model has no vocabulary (its tokenizer is `none`).
    #[error("the model has no vocabulary")]
    NoVocab,
    /// Text containing a NUL byte where llama.cpp wants a C string.
    #[error("{what} contains a NUL byte")]
    InteriorNul {
        /// Which text.
        what: &'static str,
    },
    /// Text longer than llama.cpp's `int32_t` lengths.
    #[error("{what} is too long for llama.cpp ({len} bytes)")]
    TooLong {
        /// Which text.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A sequence id outside `0..n_seq_max` of the context.
    #[error("sequence {seq} is outside the context's sequences (0..{n_seq_max})")]
    SeqOutOfRange {
        /// The id.
        seq: i32,
        /// The context's number of sequences.
        n_seq_max: u32,
    },
    /// An empty batch.
    #[error("the batch is empty")]
    EmptyBatch,
    /// A batch with more tokens than the context takes in one decode.
    #[error("the batch has {n_tokens} tokens, the context takes at most {limit} per {what}")]
    BatchTooLarge {
        /// Tokens in the batch.
        n_tokens: usize,
        /// The limit.
        limit: u32,
        /// `n_batch` or `n_ubatch`.
        what: &'static str,
    },
    /// A batch llama.cpp refuses (positions not continuing a sequence,
    /// duplicate sequence ids, ...).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// No room in the KV cache for the batch: recoverable (the cache is as
    /// before the call); free sequences or use a larger context.
    #[error("no room in the KV cache for the batch (recoverable: remove sequences or use a larger context)")]
    NoKvSlot,
    /// The abort callback stopped the computation.
    #[error("decoding was aborted")]
    Aborted,
    /// `llama_decode`/`llama_encode` failed with this status.
    #[error("{call} failed with status {status}")]
    Failed {
        /// The call.
        call: &'static str,
        /// llama.cpp's status.
        status: i32,
    },
    /// Logits or embeddings of a token that did not ask for them, or before
    /// any successful decode.
    #[error("no {what} for batch index {index}: {reason}")]
    NoOutput {
        /// Logits or embeddings.
        what: &'static str,
        /// The batch index asked for.
        index: i64,
        /// Why.
        reason: String,
    },
    /// Embeddings asked of a context created without them, or of the wrong
    /// kind for its pooling.
    #[error("embeddings: {0}")]
    Embeddings(String),
    /// The sampler chain did not select a token (no greedy, dist or
    /// mirostat sampler at its end).
    #[error("the sampler chain selected no token (end it with greedy, dist or mirostat)")]
    NoTokenSelected,
    /// A logit (or a candidate a sampler left) that is not a number or
    /// infinite: llama.cpp's samplers sort by them, which is undefined
    /// behaviour with NaN. A model file with NaN weights, or sampler
    /// parameters at the edge of `f32` (a temperature near 0), make them.
    #[error("{what} of token {token} is {value}")]
    NonFinite {
        /// What held the value.
        what: &'static str,
        /// The token.
        token: i32,
        /// The value.
        value: f32,
    },
    /// A grammar llama.cpp could not parse.
    #[error("the grammar could not be parsed (llama.cpp's log has the details)")]
    GrammarParse,
    /// A grammar beyond the bounds within which llama.cpp's grammar code
    /// is known not to overflow the stack or exhaust memory (see
    /// [`MAX_GRAMMAR_NESTING`](super::MAX_GRAMMAR_NESTING) and the
    /// neighbouring limits).
    #[error("the grammar has {value} {what} (at most {limit})")]
    GrammarLimit {
        /// What was counted.
        what: &'static str,
        /// The grammar's count.
        value: usize,
        /// The limit.
        limit: usize,
    },
    /// A token the grammar does not allow here.
    #[error("the grammar does not allow token {token} here")]
    GrammarRejected {
        /// The token.
        token: i32,
    },
    /// A chat template llama.cpp does not know.
    #[error("llama.cpp does not know this chat template")]
    UnknownTemplate,
    /// The model has no chat template.
    #[error("the model has no chat template")]
    NoTemplate,
    /// Saving or loading state failed.
    #[error("state: {0}")]
    State(String),
    /// A LoRA adapter or control vector that does not fit.
    #[error("adapter: {0}")]
    Adapter(String),
    /// llama.cpp threw a C++ exception, caught at the boundary (it would
    /// otherwise abort the process): the call failed, and what it may have
    /// changed is as llama.cpp left it.
    #[error("{call} threw a C++ exception: {message}")]
    Exception {
        /// The llama.h function.
        call: &'static str,
        /// The exception's message (`what()`).
        message: String,
    },
    /// A context on which llama.cpp threw while changing it: its state is
    /// unknown, so calls that change it are refused (drop it and make
    /// another).
    #[error("the context is unusable: {call} threw a C++ exception ({message})")]
    Broken {
        /// The call that threw.
        call: &'static str,
        /// The exception's message.
        message: String,
    },
    /// A model file (or LoRA adapter) whose values break what llama.cpp
    /// assumes of them (see the crate's model checks): loading it would
    /// abort the process or crash later.
    #[error("{path}: {item}: {reason}")]
    InvalidModel {
        /// The file.
        path: PathBuf,
        /// The metadata key or tensor at fault.
        item: String,
        /// What is wrong.
        reason: String,
    },
    /// A call the model cannot serve (encoding with a decoder-only model,
    /// say), which llama.cpp would crash on.
    #[error("{call}: {reason}")]
    NotSupported {
        /// The call.
        call: &'static str,
        /// Why the model cannot serve it.
        reason: String,
    },
}

/// Result type of the llama layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The llama layer's error type under its former name.
#[deprecated(since = "0.2.0", note = "renamed `ggml::llama::Error`")]
pub type LlamaError = Error;
