//! [`Context`]: decoding batches with a model, its outputs (logits and
//! embeddings as `ndarray` views), its KV cache per sequence, its state,
//! adapters, and performance counters.
//!
//! Every precondition llama.cpp asserts on is checked first: batch sizes
//! against `n_batch`/`n_ubatch`, token ids against the vocabulary, sequence
//! ids against `n_seq_max`, output rows against what the last batch asked
//! for, sequence operations against the cache's layout.

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::ptr::NonNull;

use ndarray::{ArrayView1, ArrayView2};

use ggml_sys as sys;

use super::batch::Batch;
use super::error::Error;
use super::error::Result;
use super::model::{Lora, Model};
use super::raw::{self, RawContext, RawMemory};
use super::vocab::Token;
use crate::threads::MAX_THREADS;
use crate::types::Type;

/// How a context pools per-token embeddings into one per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The model's own choice.
    Model,
    /// No pooling: embeddings per token.
    None,
    /// Mean over the sequence.
    Mean,
    /// The first token's.
    Cls,
    /// The last token's.
    Last,
    /// Ranking (rerankers): one score per class.
    Rank,
}

impl Pooling {
    fn raw(self) -> sys::llama_pooling_type {
        match self {
            Pooling::Model => sys::LLAMA_POOLING_TYPE_UNSPECIFIED,
            Pooling::None => sys::LLAMA_POOLING_TYPE_NONE,
            Pooling::Mean => sys::LLAMA_POOLING_TYPE_MEAN,
            Pooling::Cls => sys::LLAMA_POOLING_TYPE_CLS,
            Pooling::Last => sys::LLAMA_POOLING_TYPE_LAST,
            Pooling::Rank => sys::LLAMA_POOLING_TYPE_RANK,
        }
    }

    fn from_raw(raw: sys::llama_pooling_type) -> Pooling {
        match raw {
            sys::LLAMA_POOLING_TYPE_NONE => Pooling::None,
            sys::LLAMA_POOLING_TYPE_MEAN => Pooling::Mean,
            sys::LLAMA_POOLING_TYPE_CLS => Pooling::Cls,
            sys::LLAMA_POOLING_TYPE_LAST => Pooling::Last,
            sys::LLAMA_POOLING_TYPE_RANK => Pooling::Rank,
            _ => Pooling::Model,
        }
    }
}

/// Flash attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashAttention {
    /// llama.cpp decides.
    Auto,
    /// On.
    Enabled,
    /// Off.
    Disabled,
}

/// Parameters of a [`Context`].
#[derive(Debug, Clone)]
pub struct ContextParams {
    n_ctx: u32,
    n_batch: u32,
    n_ubatch: u32,
    n_seq_max: u32,
    threads: usize,
    threads_batch: usize,
    embeddings: bool,
    pooling: Pooling,
    flash_attn: FlashAttention,
    type_k: Type,
    type_v: Type,
    offload_kqv: bool,
    kv_unified: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        let cores = crate::threads::available_cores();
        ContextParams {
            n_ctx: 0,
            n_batch: 2048,
            n_ubatch: 512,
            n_seq_max: 1,
            threads: cores,
            threads_batch: cores,
            embeddings: false,
            pooling: Pooling::Model,
            flash_attn: FlashAttention::Auto,
            type_k: Type::F16,
            type_v: Type::F16,
            offload_kqv: true,
            kv_unified: false,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, v: $ty) -> Self {
            self.$name = v;
            self
        }
    };
}

impl ContextParams {
    /// Defaults: the model's context length, batches of 2048 (micro-batches
    /// of 512), one sequence, every core, f16 KV cache.
    pub fn new() -> Self {
        Self::default()
    }

    setter!(
        /// Context length in tokens (0: the model's training length).
        n_ctx: u32
    );
    setter!(
        /// Most tokens one `decode` takes.
        n_batch: u32
    );
    setter!(
        /// Tokens computed at once inside a decode.
        n_ubatch: u32
    );
    setter!(
        /// Number of sequences (1 to 256).
        n_seq_max: u32
    );
    setter!(
        /// Threads for generation (one token at a time).
        threads: usize
    );
    setter!(
        /// Threads for prompts (batches).
        threads_batch: usize
    );
    setter!(
        /// Output embeddings instead of logits.
        embeddings: bool
    );
    setter!(
        /// How embeddings are pooled.
        pooling: Pooling
    );
    setter!(
        /// Flash attention.
        flash_attn: FlashAttention
    );
    setter!(
        /// Type of the K cache (f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1).
        type_k: Type
    );
    setter!(
        /// Type of the V cache (quantized types need flash attention).
        type_v: Type
    );
    setter!(
        /// Keep the KV cache on the GPU.
        offload_kqv: bool
    );
    setter!(
        /// One KV buffer shared by all sequences.
        kv_unified: bool
    );
}

/// The positions of a range of a sequence, as llama.cpp takes them
/// (`p0` included, `p1` excluded, negative: unbounded).
fn positions(range: impl RangeBounds<i32>) -> (i32, i32) {
    let p0 = match range.start_bound() {
        Bound::Included(&p) => p,
        Bound::Excluded(&p) => p.saturating_add(1),
        Bound::Unbounded => -1,
    };
    let p1 = match range.end_bound() {
        Bound::Included(&p) => p.saturating_add(1),
        Bound::Excluded(&p) => p,
        Bound::Unbounded => -1,
    };
    (p0, p1)
}

/// llama.cpp's performance counters of a context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perf {
    /// Milliseconds loading the model.
    pub load_ms: f64,
    /// Milliseconds decoding prompt tokens (batches of more than one).
    pub prompt_ms: f64,
    /// Prompt tokens decoded.
    pub prompt_tokens: u64,
    /// Milliseconds decoding one token at a time.
    pub generation_ms: f64,
    /// Tokens decoded one at a time.
    pub generation_tokens: u64,
}

impl Perf {
    /// Prompt tokens per second.
    pub fn prompt_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / (self.prompt_ms / 1e3)
    }
    /// Generated tokens per second.
    pub fn generation_tokens_per_second(&self) -> f64 {
        self.generation_tokens as f64 / (self.generation_ms / 1e3)
    }
}

/// What the last successful decode output: for each output row its batch
/// index, and for each batch index its row.
#[derive(Debug, Default)]
struct Outputs {
    row_of: Vec<i32>,
    n_rows: usize,
    seqs: Vec<i32>,
}

/// A llama.cpp context: a KV cache and the buffers to decode batches with a
/// [`Model`], which it borrows. Several contexts of one model can exist
/// (and run on different threads). `Send`, not `Sync`.
pub struct Context<'m> {
    raw: NonNull<sys::llama_context>,
    model: &'m Model,
    n_ctx: u32,
    n_batch: u32,
    n_ubatch: u32,
    n_seq_max: u32,
    kv_unified: bool,
    embeddings: bool,
    pooling: Pooling,
    type_k: Type,
    outputs: Option<Outputs>,
    encoded: bool,
    seq_ptrs: Vec<*mut i32>,
    /// Set when llama.cpp threw inside a call that changes the context
    /// (the call and the message): its state is then unknown, and every
    /// later such call is refused.
    broken: Option<(&'static str, String)>,
}

// SAFETY: a context has no thread-affine state; it borrows a `Sync` model.
// Not `Sync`: llama.cpp's getters mutate (synchronize, reorder outputs).
unsafe impl Send for Context<'_> {}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: a live context, freed once, before its model (borrow).
        unsafe { raw::free_context(self.raw) };
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("n_ctx", &self.n_ctx)
            .field("n_batch", &self.n_batch)
            .field("n_ubatch", &self.n_ubatch)
            .field("n_seq_max", &self.n_seq_max)
            .finish()
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParams(msg.into())
}

impl<'m> Context<'m> {
    /// Creates a context of `model`.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for a vocabulary-only model, batch
    /// sizes of 0, more than 256 sequences or more sequences than the batch
    /// size, a context longer than the model's training length, thread
    /// counts of 0 or above [`MAX_THREADS`], a KV cache type llama.cpp does
    /// not offer; [`Error::ContextInit`] when llama.cpp fails (out of
    /// memory, a quantized V cache without flash attention).
    pub fn new(model: &'m Model, params: &ContextParams) -> Result<Context<'m>> {
        if model.is_vocab_only() {
            return Err(invalid("the model was loaded with its vocabulary only"));
        }
        let p = params;
        let train = model.n_ctx_train();
        let n_ctx = if p.n_ctx == 0 { train } else { p.n_ctx };
        if n_ctx > train {
            return Err(invalid(format!(
                "a context of {n_ctx} tokens is longer than the model's {train}"
            )));
        }
        if p.n_batch == 0 || p.n_ubatch == 0 {
            return Err(invalid("n_batch and n_ubatch must be at least 1"));
        }
        // llama.cpp caps n_batch at n_ctx; its output buffer holds n_batch
        // rows and must fit one per sequence.
        if !(1..=256).contains(&p.n_seq_max) || p.n_seq_max > p.n_batch.min(n_ctx) {
            return Err(invalid(format!(
                "n_seq_max {} must be 1 to 256 and at most n_batch ({}) and n_ctx ({n_ctx})",
                p.n_seq_max, p.n_batch
            )));
        }
        for (name, t) in [("threads", p.threads), ("threads_batch", p.threads_batch)] {
            if !(1..=MAX_THREADS).contains(&t) {
                return Err(invalid(format!("{name} {t} must be 1 to {MAX_THREADS}")));
            }
        }
        let kv_types = [
            Type::F32,
            Type::F16,
            Type::BF16,
            Type::Q8_0,
            Type::Q4_0,
            Type::Q4_1,
            Type::IQ4_NL,
            Type::Q5_0,
            Type::Q5_1,
        ];
        for t in [p.type_k, p.type_v] {
            if !kv_types.contains(&t) {
                return Err(invalid(format!("{t} is not a KV cache type")));
            }
        }
        // llama.cpp checks this only with flash attention, and asserts
        // making the cache without it.
        let (head_k, head_v) = model.head_dims();
        for (what, t, dim) in [("K", p.type_k, head_k), ("V", p.type_v, head_v)] {
            if dim % t.block_size() != 0 {
                return Err(invalid(format!(
                    "a {what} cache of {t} (blocks of {}) for heads of {dim}",
                    t.block_size()
                )));
            }
        }
        let mut raw = raw::context_default_params();
        raw.n_ctx = n_ctx;
        raw.n_batch = p.n_batch;
        raw.n_ubatch = p.n_ubatch;
        raw.n_seq_max = p.n_seq_max;
        raw.n_threads = p.threads as i32;
        raw.n_threads_batch = p.threads_batch as i32;
        raw.embeddings = p.embeddings;
        raw.pooling_type = p.pooling.raw();
        raw.flash_attn_type = match p.flash_attn {
            FlashAttention::Auto => sys::LLAMA_FLASH_ATTN_TYPE_AUTO,
            FlashAttention::Enabled => sys::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Disabled => sys::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        raw.type_k = p.type_k.as_raw();
        raw.type_v = p.type_v.as_raw();
        raw.offload_kqv = p.offload_kqv;
        raw.kv_unified = p.kv_unified;
        raw.no_perf = false;
        let _ = super::log::take_last_error();
        crate::error::rpc::clear();
        // SAFETY: parameters checked above; llama.cpp keeps a const
        // reference to the model (it writes it only for YaRN overrides,
        // which are left at their defaults), which outlives the context.
        let raw_ctx = unsafe { raw::init_context(model.raw(), raw) }?;
        let fault = crate::error::rpc::take();
        let raw_ctx = raw_ctx.ok_or_else(|| match &fault {
            Some(fault) => fault.clone().into(),
            None => Error::ContextInit(match super::log::take_last_error() {
                e if e.is_empty() => "see llama.cpp's log (target \"llama\")".into(),
                e => e,
            }),
        })?;
        if let Some(fault) = fault {
            // A worker failed while the context's memory was set up.
            // SAFETY: the context just made, used by nothing else.
            unsafe { raw::free_context(raw_ctx) };
            return Err(fault.into());
        }
        // SAFETY: the context just made, alive for this block.
        let c = unsafe { RawContext::new(raw_ctx) };
        let (n_ctx, n_batch, n_ubatch, n_seq_max, pooling) = (
            c.n_ctx(),
            c.n_batch(),
            c.n_ubatch(),
            c.n_seq_max(),
            c.pooling_type(),
        );
        Ok(Context {
            raw: raw_ctx,
            model,
            n_ctx,
            n_batch,
            n_ubatch,
            n_seq_max,
            kv_unified: p.kv_unified,
            type_k: p.type_k,
            embeddings: p.embeddings,
            pooling: Pooling::from_raw(pooling),
            outputs: None,
            encoded: false,
            seq_ptrs: Vec::new(),
            broken: None,
        })
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Context length (as llama.cpp set it: padded).
    pub fn n_ctx(&self) -> u32 {
        self.n_ctx
    }
    /// Most tokens one decode takes.
    pub fn n_batch(&self) -> u32 {
        self.n_batch
    }
    /// Micro-batch size.
    pub fn n_ubatch(&self) -> u32 {
        self.n_ubatch
    }
    /// Number of sequences.
    pub fn n_seq_max(&self) -> u32 {
        self.n_seq_max
    }
    /// The pooling in effect.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Sets the threads for generation and for batches.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for 0 or more than [`MAX_THREADS`].
    pub fn set_threads(&mut self, threads: usize, threads_batch: usize) -> Result<()> {
        for t in [threads, threads_batch] {
            if !(1..=MAX_THREADS).contains(&t) {
                return Err(invalid(format!("{t} threads: must be 1 to {MAX_THREADS}")));
            }
        }
        self.raw().set_threads(threads as i32, threads_batch as i32);
        Ok(())
    }

    fn check_seq(&self, seq: i32) -> Result<()> {
        if (0..self.n_seq_max as i32).contains(&seq) {
            Ok(())
        } else {
            Err(Error::SeqOutOfRange {
                seq,
                n_seq_max: self.n_seq_max,
            })
        }
    }

    /// Refuses calls that change the context once llama.cpp has thrown in
    /// one: what it left behind is unknown.
    fn usable(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some((call, message)) => Err(Error::Broken {
                call,
                message: message.clone(),
            }),
        }
    }

    /// The outcome of a call that changes the context: an exception leaves
    /// it broken (see [`Context::usable`]).
    fn caught<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(Error::Exception { call, message }) = &result {
            self.broken = Some((call, message.clone()));
            self.outputs = None;
        }
        result
    }

    /// The raw handle, for this layer's calls.
    fn raw(&self) -> RawContext<'_> {
        // SAFETY: the context lives as long as the borrow; `Context` is not
        // `Sync`, and calls that change it take `&mut self`.
        unsafe { RawContext::new(self.raw) }
    }

    fn check_batch(&self, batch: &Batch, encode: bool) -> Result<()> {
        self.usable()?;
        let n = batch.len();
        if n == 0 {
            return Err(Error::EmptyBatch);
        }
        if n > self.n_batch as usize {
            return Err(Error::BatchTooLarge {
                n_tokens: n,
                limit: self.n_batch,
                what: "n_batch",
            });
        }
        let causal = self.raw().causal_attn();
        if (encode || !causal) && n > self.n_ubatch as usize {
            return Err(Error::BatchTooLarge {
                n_tokens: n,
                limit: self.n_ubatch,
                what: "n_ubatch (non-causal attention and encoders take one micro-batch)",
            });
        }
        let vocab = self.model.vocab();
        for (i, &t) in batch.tokens().iter().enumerate() {
            vocab.check(t)?;
            for &s in batch.seqs(i) {
                self.check_seq(s)?;
            }
        }
        Ok(())
    }

    /// Decodes `batch`: its tokens enter the KV cache, and the outputs of
    /// the tokens that asked for them (all tokens in embeddings mode)
    /// replace the previous ones.
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::BatchTooLarge`],
    /// [`Error::TokenOutOfRange`], [`Error::SeqOutOfRange`]
    /// (checked first); from llama.cpp: [`Error::NoKvSlot`]
    /// (recoverable), [`Error::InvalidBatch`] (positions that do not
    /// continue a sequence), [`Error::Aborted`], [`Error::Failed`].
    /// After an error there are no outputs.
    pub fn decode(&mut self, batch: &Batch) -> Result<()> {
        self.check_batch(batch, false)?;
        if self.model.has_encoder() && !self.encoded {
            return Err(Error::InvalidBatch(
                "encoder-decoder model: encode first".into(),
            ));
        }
        self.outputs = None;
        let raw = batch.raw(&mut self.seq_ptrs);
        crate::error::rpc::clear();
        // SAFETY: the batch's arrays (and seq_ptrs) live through the call
        // and are only read; every precondition llama.cpp asserts on was
        // checked above.
        let status = unsafe { self.raw().decode(raw, false) };
        let status = self.caught(status)?;
        if let Some(fault) = crate::error::rpc::take() {
            // A worker failed (the `rpc` feature): the outputs are not there.
            return Err(fault.into());
        }
        self.finish(batch, status, "llama_decode")
    }

    /// Encodes `batch` (encoder-decoder and embedding models): the whole
    /// batch in one micro-batch.
    ///
    /// # Errors
    /// As [`Context::decode`], and batches over `n_ubatch`;
    /// [`Error::NotSupported`] for a model without an encoder (a
    /// decoder-only model: use [`Context::decode`]).
    pub fn encode(&mut self, batch: &Batch) -> Result<()> {
        // A context without memory (embedding models) encodes on decode
        // too; one with memory and no encoder graph would crash.
        if !self.model.has_encoder() && self.raw().memory().exists() {
            return Err(Error::NotSupported {
                call: "encode",
                reason: "the model has no encoder (decode its tokens instead)".into(),
            });
        }
        self.check_batch(batch, true)?;
        self.outputs = None;
        let raw = batch.raw(&mut self.seq_ptrs);
        crate::error::rpc::clear();
        // SAFETY: as in decode; the batch fits one micro-batch (checked).
        let status = unsafe { self.raw().decode(raw, true) };
        let status = self.caught(status)?;
        if let Some(fault) = crate::error::rpc::take() {
            return Err(fault.into());
        }
        let r = self.finish(batch, status, "llama_encode");
        self.encoded |= r.is_ok();
        r
    }

    fn finish(&mut self, batch: &Batch, status: i32, call: &'static str) -> Result<()> {
        match status {
            0 => {
                let mut row_of = Vec::with_capacity(batch.len());
                let mut n_rows = 0;
                let mut seqs: Vec<i32> = Vec::new();
                for i in 0..batch.len() {
                    if self.embeddings || batch.wants_logits(i) {
                        row_of.push(n_rows as i32);
                        n_rows += 1;
                    } else {
                        row_of.push(-1);
                    }
                    for &s in batch.seqs(i) {
                        if !seqs.contains(&s) {
                            seqs.push(s);
                        }
                    }
                }
                self.outputs = Some(Outputs {
                    row_of,
                    n_rows,
                    seqs,
                });
                // Have llama.cpp wait for the computation and put its output
                // rows in batch order now (it does so in place, once, on the
                // first getter call), so that later getters only read.
                let raw = self.raw();
                raw.synchronize();
                raw.logits();
                Ok(())
            }
            1 => Err(Error::NoKvSlot),
            2 => Err(Error::Aborted),
            -1 => Err(Error::InvalidBatch(
                "llama.cpp refused it: each sequence's positions must continue where it ends"
                    .into(),
            )),
            status => Err(Error::Failed { call, status }),
        }
    }

    fn outputs(&self, what: &'static str, index: i64) -> Result<&Outputs> {
        self.outputs.as_ref().ok_or_else(|| Error::NoOutput {
            what,
            index,
            reason: "no successful decode since the context was created or changed".into(),
        })
    }

    fn row(&self, what: &'static str, index: usize) -> Result<usize> {
        let out = self.outputs(what, index as i64)?;
        match out.row_of.get(index) {
            Some(&r) if r >= 0 => Ok(r as usize),
            Some(_) => Err(Error::NoOutput {
                what,
                index: index as i64,
                reason: "that token did not ask for its logits".into(),
            }),
            None => Err(Error::NoOutput {
                what,
                index: index as i64,
                reason: format!("the last batch had {} tokens", out.row_of.len()),
            }),
        }
    }

    fn logits_ptr(&self) -> Result<*const f32> {
        let p = self.raw().logits();
        if p.is_null() {
            return Err(Error::NoOutput {
                what: "logits",
                index: -1,
                reason: "this context computes no logits (embeddings mode)".into(),
            });
        }
        Ok(p)
    }

    /// The logits of every output of the last decode, one row per token
    /// that asked for them (in batch order), `n_vocab` columns. A view
    /// into the context: the next decode (`&mut self`) ends it.
    ///
    /// # Errors
    /// [`Error::NoOutput`] before a successful decode or in embeddings
    /// mode.
    pub fn logits(&self) -> Result<ArrayView2<'_, f32>> {
        let rows = self.outputs("logits", -1)?.n_rows;
        if self.embeddings {
            return Err(Error::NoOutput {
                what: "logits",
                index: -1,
                reason: "the context outputs embeddings".into(),
            });
        }
        let n_vocab = self.model.vocab().n_tokens() as usize;
        let p = self.logits_ptr()?;
        // SAFETY: llama.cpp's logits buffer holds `rows` rows of n_vocab
        // floats after this decode; it is not written until the next decode
        // or state load, which take `&mut self` and so end this borrow.
        Ok(unsafe { ArrayView2::from_shape_ptr((rows, n_vocab), p) })
    }

    /// The logits of token `index` of the last batch.
    ///
    /// # Errors
    /// [`Error::NoOutput`] when that token did not ask for them, for an
    /// index beyond the batch, before a successful decode.
    pub fn logits_ith(&self, index: usize) -> Result<ArrayView1<'_, f32>> {
        let row = self.row("logits", index)?;
        let all = self.logits()?;
        Ok(all.index_axis_move(ndarray::Axis(0), row))
    }

    fn embeddings_row_len(&self) -> usize {
        self.model.n_embd_out()
    }

    /// The embeddings of token `index` of the last batch (contexts with
    /// embeddings and no pooling).
    ///
    /// # Errors
    /// [`Error::Embeddings`] for a context without embeddings or with
    /// pooling; [`Error::NoOutput`] as for logits.
    pub fn embeddings_ith(&self, index: usize) -> Result<ArrayView1<'_, f32>> {
        if !self.embeddings || self.pooling != Pooling::None {
            return Err(Error::Embeddings(
                "per-token embeddings need embeddings(true) and Pooling::None".into(),
            ));
        }
        let row = self.row("embeddings", index)?;
        let rows = self.outputs("embeddings", index as i64)?.n_rows;
        let n = self.embeddings_row_len();
        let p = self.raw().embeddings();
        if p.is_null() {
            return Err(Error::Embeddings("llama.cpp returned none".into()));
        }
        // SAFETY: `rows` rows of `n` floats, not written until the next
        // `&mut self` call.
        let all = unsafe { ArrayView2::from_shape_ptr((rows, n), p.cast_const()) };
        Ok(all.index_axis_move(ndarray::Axis(0), row))
    }

    /// The pooled embedding of sequence `seq` from the last batch (contexts
    /// with embeddings and pooling); for rank pooling, one score per class.
    ///
    /// # Errors
    /// [`Error::Embeddings`] for a context without pooled embeddings;
    /// [`Error::NoOutput`] when `seq` was not in the last batch.
    pub fn seq_embeddings(&self, seq: i32) -> Result<ArrayView1<'_, f32>> {
        if !self.embeddings || self.pooling == Pooling::None {
            return Err(Error::Embeddings(
                "sequence embeddings need embeddings(true) and pooling".into(),
            ));
        }
        let out = self.outputs("embeddings", seq as i64)?;
        if !out.seqs.contains(&seq) {
            return Err(Error::NoOutput {
                what: "embeddings",
                index: seq as i64,
                reason: "that sequence was not in the last batch".into(),
            });
        }
        let n = if self.pooling == Pooling::Rank {
            self.model.raw().n_cls_out() as usize
        } else {
            self.embeddings_row_len()
        };
        let p = self.raw().seq_embeddings(seq);
        if p.is_null() {
            return Err(Error::Embeddings("llama.cpp returned none".into()));
        }
        // SAFETY: `n` floats, not written until the next `&mut self` call.
        Ok(unsafe { ArrayView1::from_shape_ptr(n, p.cast_const()) })
    }

    // ----- memory (KV cache) -----

    fn memory(&self) -> RawMemory<'_> {
        self.raw().memory()
    }

    /// Empties the KV cache (and its data when `data`).
    pub fn clear_memory(&mut self, data: bool) {
        self.memory().clear(data);
        self.outputs = None;
    }

    /// Removes the positions `range` of sequence `seq` (of every sequence
    /// when `None`). Returns whether llama.cpp could (a partial range of a
    /// recurrent model's sequence cannot be removed).
    ///
    /// # Errors
    /// [`Error::SeqOutOfRange`].
    pub fn remove_tokens(
        &mut self,
        seq: Option<i32>,
        range: impl RangeBounds<i32>,
    ) -> Result<bool> {
        if let Some(s) = seq {
            self.check_seq(s)?;
        }
        let (p0, p1) = positions(range);
        self.usable()?;
        // SAFETY: a checked sequence id (or -1: all).
        let removed = unsafe { self.memory().remove(seq.unwrap_or(-1), p0, p1) };
        self.caught(removed)
    }

    /// Copies the positions `range` of sequence `src` to `dst` (shared
    /// cells, no copy of data).
    ///
    /// # Errors
    /// [`Error::SeqOutOfRange`]; [`Error::InvalidParams`] for a
    /// partial range between sequences of separate KV buffers (contexts of
    /// several sequences without `kv_unified`).
    pub fn copy_seq(&mut self, src: i32, dst: i32, range: impl RangeBounds<i32>) -> Result<()> {
        self.check_seq(src)?;
        self.check_seq(dst)?;
        let (p0, p1) = positions(range);
        if src != dst && !self.kv_unified && self.n_seq_max > 1 && (p0 > 0 || p1 >= 0) {
            return Err(invalid(
                "copying part of a sequence between separate KV buffers: copy all of it, or use kv_unified",
            ));
        }
        self.usable()?;
        // SAFETY: checked ids and range.
        let copied = unsafe { self.memory().copy(src, dst, p0, p1) };
        self.caught(copied)
    }

    /// Removes every sequence but `seq`.
    ///
    /// # Errors
    /// [`Error::SeqOutOfRange`].
    pub fn keep_seq(&mut self, seq: i32) -> Result<()> {
        self.check_seq(seq)?;
        self.usable()?;
        // SAFETY: a checked id.
        let kept = unsafe { self.memory().keep(seq) };
        self.caught(kept)
    }

    /// Adds `delta` to the positions `range` of sequence `seq` (a context
    /// shift).
    ///
    /// # Errors
    /// [`Error::SeqOutOfRange`]; [`Error::InvalidParams`] when
    /// the model's positions cannot be shifted (multi-dimensional RoPE, a
    /// cache that cannot shift) or a position would overflow.
    pub fn shift_seq(&mut self, seq: i32, range: impl RangeBounds<i32>, delta: i32) -> Result<()> {
        self.check_shiftable(seq)?;
        let max = self.seq_positions(seq)?.map_or(0, |(_, max)| max);
        if max.checked_add(delta).is_none() || delta == i32::MIN {
            return Err(invalid(format!("position {max} + {delta} overflows")));
        }
        let (p0, p1) = positions(range);
        self.usable()?;
        // SAFETY: checked id, shiftable cache, no overflow.
        let shifted = unsafe { self.memory().shift(seq, p0, p1, delta) };
        self.caught(shifted)
    }

    /// Divides the positions `range` of sequence `seq` by `d` (≥ 1).
    ///
    /// # Errors
    /// As [`Context::shift_seq`]; `d` of 0.
    pub fn divide_seq(&mut self, seq: i32, range: impl RangeBounds<i32>, d: i32) -> Result<()> {
        self.check_shiftable(seq)?;
        if d < 1 {
            return Err(invalid(format!("dividing positions by {d}")));
        }
        let (p0, p1) = positions(range);
        self.usable()?;
        // SAFETY: checked id, shiftable cache, d ≥ 1.
        let divided = unsafe { self.memory().divide(seq, p0, p1, d) };
        self.caught(divided)
    }

    fn check_shiftable(&self, seq: i32) -> Result<()> {
        self.check_seq(seq)?;
        let rope = self.model.rope_type();
        let can = self.memory().can_shift();
        if rope == sys::LLAMA_ROPE_TYPE_MROPE || rope == sys::LLAMA_ROPE_TYPE_IMROPE || !can {
            return Err(invalid("this model's positions cannot be shifted"));
        }
        // The next decode rotates the cached keys: the CPU's RoPE has no
        // BF16 kernel (it aborts), and a quantized cache is rotated through
        // a Hadamard matrix llama.cpp only makes for head dimensions that
        // are multiples of 64 (it dereferences NULL otherwise).
        let (head_k, _) = self.model.head_dims();
        if self.type_k == Type::BF16 || (self.type_k.is_quantized() && head_k % 64 != 0) {
            return Err(Error::NotSupported {
                call: "shift_seq",
                reason: format!(
                    "shifting positions of a {} key cache with heads of {head_k} (f32, f16, \
                     or a quantized cache with heads of a multiple of 64)",
                    self.type_k
                ),
            });
        }
        Ok(())
    }

    /// The smallest and largest position of sequence `seq` in the cache
    /// (`None` when it is empty).
    ///
    /// # Errors
    /// [`Error::SeqOutOfRange`].
    pub fn seq_positions(&self, seq: i32) -> Result<Option<(i32, i32)>> {
        self.check_seq(seq)?;
        // SAFETY: a checked id.
        let (lo, hi) = unsafe { self.memory().seq_positions(seq) };
        Ok((lo >= 0 && hi >= 0).then_some((lo, hi)))
    }

    // ----- state -----

    /// The whole state (KV cache, outputs, RNG) as bytes.
    ///
    /// # Errors
    /// [`Error::State`] when llama.cpp fails to write it.
    pub fn state_bytes(&mut self) -> Result<Vec<u8>> {
        self.usable()?;
        let size = self.raw().state_size()?;
        let mut buf = vec![0u8; size];
        let n = self.raw().state_get(&mut buf)?;
        if n == 0 || n > size {
            return Err(Error::State(format!("llama.cpp wrote {n} of {size} bytes")));
        }
        buf.truncate(n);
        Ok(buf)
    }

    /// Restores a state from [`Context::state_bytes`]. The outputs of the
    /// last decode are gone; decode again to have logits.
    ///
    /// # Errors
    /// [`Error::State`] for bytes llama.cpp refuses (another model,
    /// truncated): the cache is then empty.
    pub fn set_state_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.outputs = None;
        self.usable()?;
        let n = self.raw().state_set(bytes);
        if self.caught(n)? == 0 {
            self.memory().clear(true);
            return Err(Error::State("llama.cpp refused the state".into()));
        }
        Ok(())
    }

    /// Saves the state and `tokens` (the session's tokens) to a file.
    ///
    /// # Errors
    /// [`Error::InteriorNul`] in the path, [`Error::State`].
    pub fn save_state_file(&mut self, path: impl AsRef<Path>, tokens: &[Token]) -> Result<()> {
        let p = super::path_c_string(path.as_ref())?;
        self.usable()?;
        if self.raw().state_save(&p, tokens)? {
            Ok(())
        } else {
            Err(Error::State(format!(
                "could not save {}",
                path.as_ref().display()
            )))
        }
    }

    /// Loads a state saved by [`Context::save_state_file`]; returns its
    /// tokens. The outputs of the last decode are gone.
    ///
    /// # Errors
    /// [`Error::State`] for a file llama.cpp refuses: the cache is
    /// then empty.
    pub fn load_state_file(&mut self, path: impl AsRef<Path>) -> Result<Vec<Token>> {
        self.outputs = None;
        let p = super::path_c_string(path.as_ref())?;
        let mut tokens = vec![0; self.n_ctx as usize];
        self.usable()?;
        let loaded = self.raw().state_load(&p, &mut tokens);
        let (ok, n) = self.caught(loaded)?;
        if !ok || n > tokens.len() {
            self.memory().clear(true);
            return Err(Error::State(format!(
                "could not load {}",
                path.as_ref().display()
            )));
        }
        tokens.truncate(n);
        Ok(tokens)
    }

    // ----- adapters -----

    /// Applies these LoRA adapters (of this context's model) with their
    /// scales, replacing the ones applied before (an empty list removes
    /// them).
    ///
    /// # Errors
    /// [`Error::Adapter`] for an adapter of another model, or when
    /// llama.cpp refuses.
    pub fn set_loras(&mut self, loras: &[(Lora<'m>, f32)]) -> Result<()> {
        if loras
            .iter()
            .any(|(l, _)| l.model.as_ptr() != self.model.raw().as_ptr())
        {
            return Err(Error::Adapter("an adapter of another model".into()));
        }
        let mut ptrs: Vec<*mut sys::llama_adapter_lora> =
            loras.iter().map(|(l, _)| l.raw.as_ptr()).collect();
        let mut scales: Vec<f32> = loras.iter().map(|(_, s)| *s).collect();
        self.usable()?;
        // SAFETY: adapters of this context's model, which outlives the
        // context and cannot free them while they are borrowed.
        let r = unsafe { self.raw().set_loras(&mut ptrs, &mut scales) };
        let r = self.caught(r)?;
        if r != 0 {
            return Err(Error::Adapter(format!(
                "llama.cpp refused the adapters ({r})"
            )));
        }
        Ok(())
    }

    /// Applies a control vector: `data` holds `n_embd` values for each layer
    /// from 1 to `n_layer` (layer 0 has none), applied to layers
    /// `first..=last`.
    ///
    /// # Errors
    /// [`Error::Adapter`] when `data` is not `n_embd × n_layer`
    /// values, or the layers are outside `1..=n_layer`.
    pub fn set_control_vector(&mut self, data: &[f32], first: usize, last: usize) -> Result<()> {
        let (n_embd, n_layer) = (self.model.n_embd(), self.model.n_layer());
        let want = n_embd.saturating_mul(n_layer);
        if data.len() != want {
            return Err(Error::Adapter(format!(
                "a control vector has n_embd × n_layer = {want} values, not {}",
                data.len()
            )));
        }
        if first < 1 || first > last || last > n_layer {
            return Err(Error::Adapter(format!(
                "layers {first}..={last} outside 1..={n_layer}"
            )));
        }
        self.usable()?;
        let r = self
            .raw()
            .set_control_vector(Some(data), n_embd as i32, first as i32, last as i32);
        let r = self.caught(r)?;
        if r != 0 {
            return Err(Error::Adapter(format!(
                "llama.cpp refused the control vector ({r})"
            )));
        }
        Ok(())
    }

    /// Removes the control vector.
    pub fn clear_control_vector(&mut self) {
        // Clearing allocates nothing; an exception would still leave the
        // context refusing changes.
        let r = self
            .raw()
            .set_control_vector(None, self.model.n_embd() as i32, 0, 0);
        let _ = self.caught(r);
    }

    // ----- performance -----

    /// llama.cpp's counters: prompt and generation tokens and times.
    pub fn perf(&self) -> Perf {
        let d = self.raw().perf();
        Perf {
            load_ms: d.t_load_ms,
            prompt_ms: d.t_p_eval_ms,
            prompt_tokens: d.n_p_eval.max(0) as u64,
            generation_ms: d.t_eval_ms,
            generation_tokens: d.n_eval.max(0) as u64,
        }
    }

    /// Resets the counters.
    pub fn reset_perf(&mut self) {
        self.raw().reset_perf();
    }
}
