//! The llama layer's raw layer: the handles llama.cpp gives out and every C
//! call made on them, each wrapped once, so that the rest of `ggml::llama`
//! speaks in safe types.
//!
//! A handle (`RawModel<'a>`, `RawVocab<'a>`, `RawContext<'a>`,
//! `RawSampler<'a>`) is a pointer its owner keeps alive for `'a`: the owner
//! ([`Model`](super::Model), [`Context`](super::Context),
//! [`Sampler`](super::Sampler)) makes it from `&self` and frees the object in
//! its `Drop`. One-line getters are declared in tables (`getters!`); calls
//! that can throw go through ggml-sys's exception barrier (`ggml_sys_try_*`)
//! and return [`Error::Exception`]. What a method still requires of its
//! caller beyond a live handle (an id in range, a batch whose arrays live
//! through the call) makes it an `unsafe fn` with a `# Safety` section.

use std::ffi::{c_char, c_int, CStr};
use std::marker::PhantomData;
use std::ptr::NonNull;

use ggml_sys as sys;

use super::error::{Error, Result};

/// The result of a `ggml_sys_try_*` call: `status` is 0 when `call`
/// returned, 1 when it threw (the exception's message is then in the
/// barrier's thread-local slot).
pub(crate) fn caught(call: &'static str, status: c_int) -> Result<()> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: a NUL-terminated thread-local string, valid until the next
    // exception caught on this thread; copied out at once.
    let message = unsafe { CStr::from_ptr(sys::ggml_sys_exception_message()) };
    Err(Error::Exception {
        call,
        message: message.to_string_lossy().into_owned(),
    })
}

/// Runs a barrier call `f` writing its result through the pointer it is
/// given; the result, or the exception as an error.
fn through<T: Copy>(call: &'static str, init: T, f: impl FnOnce(*mut T) -> c_int) -> Result<T> {
    let mut out = init;
    caught(call, f(&mut out))?;
    Ok(out)
}

/// Reads a string llama.cpp writes with snprintf semantics (`call(buf, len)`
/// returns the full length, or -1 when there is none).
fn snprintf_string(mut call: impl FnMut(*mut c_char, usize) -> i32) -> Option<String> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = usize::try_from(call(buf.as_mut_ptr().cast(), buf.len())).ok()?;
        if n < buf.len() {
            buf.truncate(n);
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
        buf.resize(n + 1, 0);
    }
}

/// A NUL-terminated string llama.cpp owns (or NULL), copied.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string live for the call.
unsafe fn owned(p: *const c_char) -> Option<String> {
    // SAFETY: the caller's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// One-line getters of a handle: `fn name(args) -> T = llama_function;`
/// calls `llama_function(handle, args)`, which reads llama.cpp's state and
/// takes plain values.
macro_rules! getters {
    ($handle:ident { $($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $ffi:ident;)* }) => {
        impl $handle<'_> {
            $(
                $(#[$doc])*
                pub(crate) fn $name(self $(, $arg: $ty)*) -> $ret {
                    // SAFETY: a live handle (the type's invariant); the call
                    // reads fields and takes plain values.
                    unsafe { sys::$ffi(self.ptr.as_ptr() $(, $arg)*) }
                }
            )*
        }
    };
}

/// Initialises llama.cpp's backends (once per process: the caller's
/// `OnceLock`) and routes its log lines to `callback`.
pub(crate) fn init(
    callback: unsafe extern "C" fn(sys::ggml_log_level, *const c_char, *mut std::ffi::c_void),
) {
    // SAFETY: a static function that never unwinds, valid for the process;
    // then llama.cpp's own one-time initialisation, after ggml's.
    unsafe {
        sys::llama_log_set(Some(callback), std::ptr::null_mut());
        sys::llama_backend_init();
    }
}

// ----- models -----

/// A live `llama_model` (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct RawModel<'a> {
    ptr: NonNull<sys::llama_model>,
    _owner: PhantomData<&'a ()>,
}

/// llama.cpp's default model parameters.
pub(crate) fn model_default_params() -> sys::llama_model_params {
    // SAFETY: returns a struct of defaults.
    unsafe { sys::llama_model_default_params() }
}

/// Loads a model (llama.cpp catches its own errors: `None` then).
///
/// # Safety
/// `params`' progress callback and its user data are valid for the call.
pub(crate) unsafe fn load_model(
    path: &CStr,
    params: sys::llama_model_params,
) -> Result<Option<NonNull<sys::llama_model>>> {
    through("llama_model_load_from_file", std::ptr::null_mut(), |out| {
        // SAFETY: a NUL-terminated path; the callback as the caller says.
        unsafe { sys::ggml_sys_try_llama_model_load_from_file(path.as_ptr(), params, out) }
    })
    .map(NonNull::new)
}

/// Frees a model.
///
/// # Safety
/// A model llama.cpp gave, freed once, with nothing (context, vocabulary,
/// adapter) using it any more.
pub(crate) unsafe fn free_model(model: NonNull<sys::llama_model>) {
    // SAFETY: the caller's contract.
    unsafe { sys::llama_model_free(model.as_ptr()) }
}

impl<'a> RawModel<'a> {
    /// The handle of a model its owner keeps alive for `'a`.
    ///
    /// # Safety
    /// `ptr` is a live model for `'a`.
    pub(crate) unsafe fn new(ptr: NonNull<sys::llama_model>) -> Self {
        RawModel {
            ptr,
            _owner: PhantomData,
        }
    }

    pub(crate) fn as_ptr(self) -> *mut sys::llama_model {
        self.ptr.as_ptr()
    }

    /// Its vocabulary, owned by the model.
    pub(crate) fn vocab(self) -> RawVocab<'a> {
        // SAFETY: a live model; the vocabulary lives as long.
        let ptr = unsafe { sys::llama_model_get_vocab(self.ptr.as_ptr()) };
        RawVocab {
            ptr: NonNull::new(ptr.cast_mut()).expect("every model has a vocabulary"),
            _owner: PhantomData,
        }
    }

    /// llama.cpp's one-line description.
    pub(crate) fn description(self) -> String {
        snprintf_string(|buf, len| {
            // SAFETY: a live model, a buffer of `len` bytes.
            unsafe { sys::llama_model_desc(self.ptr.as_ptr(), buf, len) }
        })
        .unwrap_or_default()
    }

    /// A metadata value as a string.
    pub(crate) fn meta(self, key: &CStr) -> Option<String> {
        snprintf_string(|buf, len| {
            // SAFETY: a live model, a NUL-terminated key, a buffer of `len` bytes.
            unsafe { sys::llama_model_meta_val_str(self.ptr.as_ptr(), key.as_ptr(), buf, len) }
        })
    }

    /// Metadata entry `i` (below [`RawModel::meta_count`]) as key and value.
    pub(crate) fn meta_entry(self, i: i32) -> Option<(String, String)> {
        let key = snprintf_string(|buf, len| {
            // SAFETY: a live model; llama.cpp checks the index; a buffer of `len` bytes.
            unsafe { sys::llama_model_meta_key_by_index(self.ptr.as_ptr(), i, buf, len) }
        })?;
        let value = snprintf_string(|buf, len| {
            // SAFETY: as above.
            unsafe { sys::llama_model_meta_val_str_by_index(self.ptr.as_ptr(), i, buf, len) }
        })?;
        Some((key, value))
    }

    /// The chat template (the named one when `name` is given).
    pub(crate) fn chat_template(self, name: Option<&CStr>) -> Option<String> {
        let name = name.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: a live model; NULL or a NUL-terminated name; the result is
        // NULL or a string the model owns, copied at once.
        unsafe { owned(sys::llama_model_chat_template(self.ptr.as_ptr(), name)) }
    }

    /// Loads a LoRA adapter into the model (`None`: llama.cpp refused it).
    ///
    /// # Safety
    /// Nothing else uses the model during the call (llama.cpp registers the
    /// adapter in it).
    pub(crate) unsafe fn load_lora(
        self,
        path: &CStr,
    ) -> Result<Option<NonNull<sys::llama_adapter_lora>>> {
        through("llama_adapter_lora_init", std::ptr::null_mut(), |out| {
            // SAFETY: the caller's contract; a NUL-terminated path.
            unsafe {
                sys::ggml_sys_try_llama_adapter_lora_init(self.ptr.as_ptr(), path.as_ptr(), out)
            }
        })
        .map(NonNull::new)
    }
}

getters!(RawModel {
    fn n_ctx_train() -> i32 = llama_model_n_ctx_train;
    fn n_embd() -> i32 = llama_model_n_embd;
    fn n_embd_out() -> i32 = llama_model_n_embd_out;
    fn n_layer() -> i32 = llama_model_n_layer;
    fn n_head() -> i32 = llama_model_n_head;
    fn n_cls_out() -> u32 = llama_model_n_cls_out;
    fn n_params() -> u64 = llama_model_n_params;
    fn size() -> u64 = llama_model_size;
    fn has_encoder() -> bool = llama_model_has_encoder;
    fn has_decoder() -> bool = llama_model_has_decoder;
    fn rope_type() -> sys::llama_rope_type = llama_model_rope_type;
    fn meta_count() -> i32 = llama_model_meta_count;
});

/// Frees a LoRA adapter.
///
/// # Safety
/// An adapter of a live model, freed once, used by no context.
pub(crate) unsafe fn free_lora(lora: NonNull<sys::llama_adapter_lora>) {
    // SAFETY: the caller's contract.
    unsafe { sys::llama_adapter_lora_free(lora.as_ptr()) }
}

// ----- vocabularies -----

/// A live `llama_vocab`, owned by its model (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct RawVocab<'a> {
    ptr: NonNull<sys::llama_vocab>,
    _owner: PhantomData<&'a ()>,
}

// SAFETY: llama.cpp only reads a vocabulary after loading, and documents
// tokenizing as thread-safe; the model it belongs to is `Sync`.
unsafe impl Send for RawVocab<'_> {}
// SAFETY: as above.
unsafe impl Sync for RawVocab<'_> {}

getters!(RawVocab {
    fn n_tokens() -> i32 = llama_vocab_n_tokens;
    fn vocab_type() -> sys::llama_vocab_type = llama_vocab_type;
    fn bos() -> i32 = llama_vocab_bos;
    fn eos() -> i32 = llama_vocab_eos;
    fn eot() -> i32 = llama_vocab_eot;
    fn sep() -> i32 = llama_vocab_sep;
    fn nl() -> i32 = llama_vocab_nl;
    fn pad() -> i32 = llama_vocab_pad;
    fn adds_bos() -> bool = llama_vocab_get_add_bos;
    fn adds_eos() -> bool = llama_vocab_get_add_eos;
    /// Any id (llama.cpp looks it up in a set).
    fn is_eog(token: i32) -> bool = llama_vocab_is_eog;
});

impl<'a> RawVocab<'a> {
    pub(crate) fn as_ptr(self) -> *const sys::llama_vocab {
        self.ptr.as_ptr()
    }

    /// Whether the model has a tokenizer (llama.cpp asserts on every
    /// per-token call without one).
    pub(crate) fn has_tokenizer(self) -> bool {
        self.vocab_type() != sys::LLAMA_VOCAB_TYPE_NONE
    }

    /// Whether `token` is an id of this vocabulary (with a tokenizer).
    fn valid(self, token: i32) -> bool {
        self.has_tokenizer() && (0..self.n_tokens()).contains(&token)
    }

    /// The token's attributes (`None` outside the vocabulary).
    pub(crate) fn attr(self, token: i32) -> Option<sys::llama_token_attr> {
        // SAFETY: a live vocabulary with a tokenizer, an id in range.
        self.valid(token)
            .then(|| unsafe { sys::llama_vocab_get_attr(self.ptr.as_ptr(), token) })
    }

    /// The token's score (`None` outside the vocabulary).
    pub(crate) fn score(self, token: i32) -> Option<f32> {
        // SAFETY: as for `attr`.
        self.valid(token)
            .then(|| unsafe { sys::llama_vocab_get_score(self.ptr.as_ptr(), token) })
    }

    /// The token's text as stored (`None` outside the vocabulary).
    pub(crate) fn text(self, token: i32) -> Option<&'a [u8]> {
        if !self.valid(token) {
            return None;
        }
        // SAFETY: as for `attr`; the string is owned by the model, which
        // outlives 'a, and NUL-terminated.
        Some(
            unsafe { CStr::from_ptr(sys::llama_vocab_get_text(self.ptr.as_ptr(), token)) }
                .to_bytes(),
        )
    }

    /// `llama_tokenize` into `out`: the token count, or minus the count
    /// needed when `out` is too small, or `i32::MIN` on overflow.
    pub(crate) fn tokenize(
        self,
        text: &[u8],
        out: &mut [i32],
        add_special: bool,
        parse_special: bool,
    ) -> Result<i32> {
        if !self.has_tokenizer() {
            return Err(Error::NoVocab);
        }
        let len = i32::try_from(text.len()).map_err(|_| Error::TooLong {
            what: "the text to tokenize",
            len: text.len(),
        })?;
        let cap = i32::try_from(out.len()).unwrap_or(i32::MAX);
        through("llama_tokenize", 0, |n| {
            // SAFETY: a vocabulary with a tokenizer; `text` for `len` bytes;
            // `out` has room for `cap` ids.
            unsafe {
                sys::ggml_sys_try_llama_tokenize(
                    self.ptr.as_ptr(),
                    text.as_ptr().cast(),
                    len,
                    out.as_mut_ptr(),
                    cap,
                    add_special,
                    parse_special,
                    n,
                )
            }
        })
    }

    /// `llama_token_to_piece` into `buf`: the length, or minus the length
    /// needed.
    pub(crate) fn piece(self, token: i32, buf: &mut [u8], special: bool) -> Result<i32> {
        if !self.valid(token) {
            return Err(Error::TokenOutOfRange {
                token,
                n_vocab: self.n_tokens(),
            });
        }
        let len = i32::try_from(buf.len()).unwrap_or(i32::MAX);
        through("llama_token_to_piece", 0, |n| {
            // SAFETY: an id in range; `buf` for `len` bytes.
            unsafe {
                sys::ggml_sys_try_llama_token_to_piece(
                    self.ptr.as_ptr(),
                    token,
                    buf.as_mut_ptr().cast(),
                    len,
                    0,
                    special,
                    n,
                )
            }
        })
    }

    /// `llama_detokenize` into `buf`: the length, minus the length needed,
    /// or `i32::MIN` on overflow. Every id must be in the vocabulary.
    pub(crate) fn detokenize(
        self,
        tokens: &[i32],
        buf: &mut [u8],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<i32> {
        if let Some(&bad) = tokens.iter().find(|&&t| !self.valid(t)) {
            return Err(Error::TokenOutOfRange {
                token: bad,
                n_vocab: self.n_tokens(),
            });
        }
        let n = i32::try_from(tokens.len()).map_err(|_| Error::TooLong {
            what: "the tokens to detokenize",
            len: tokens.len(),
        })?;
        let cap = i32::try_from(buf.len()).unwrap_or(i32::MAX);
        through("llama_detokenize", 0, |got| {
            // SAFETY: every id in range; `n` tokens; `buf` for `cap` bytes.
            unsafe {
                sys::ggml_sys_try_llama_detokenize(
                    self.ptr.as_ptr(),
                    tokens.as_ptr(),
                    n,
                    buf.as_mut_ptr().cast(),
                    cap,
                    remove_special,
                    unparse_special,
                    got,
                )
            }
        })
    }
}

// ----- contexts -----

/// A live `llama_context` (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct RawContext<'a> {
    ptr: NonNull<sys::llama_context>,
    _owner: PhantomData<&'a ()>,
}

/// llama.cpp's default context parameters.
pub(crate) fn context_default_params() -> sys::llama_context_params {
    // SAFETY: returns a struct of defaults.
    unsafe { sys::llama_context_default_params() }
}

/// Makes a context on `model` (`None`: llama.cpp refused; its log says why).
///
/// # Safety
/// `params` are values llama.cpp takes without aborting (checked by the
/// caller); the model outlives the context.
pub(crate) unsafe fn init_context(
    model: RawModel<'_>,
    params: sys::llama_context_params,
) -> Result<Option<NonNull<sys::llama_context>>> {
    through("llama_init_from_model", std::ptr::null_mut(), |out| {
        // SAFETY: a live model (llama.cpp keeps a const reference); the
        // caller's contract for the parameters.
        unsafe { sys::ggml_sys_try_llama_init_from_model(model.as_ptr(), params, out) }
    })
    .map(NonNull::new)
}

/// Frees a context.
///
/// # Safety
/// A context llama.cpp gave, freed once, before its model.
pub(crate) unsafe fn free_context(ctx: NonNull<sys::llama_context>) {
    // SAFETY: the caller's contract.
    unsafe { sys::llama_free(ctx.as_ptr()) }
}

getters!(RawContext {
    fn n_ctx() -> u32 = llama_n_ctx;
    fn n_batch() -> u32 = llama_n_batch;
    fn n_ubatch() -> u32 = llama_n_ubatch;
    fn n_seq_max() -> u32 = llama_n_seq_max;
    fn pooling_type() -> sys::llama_pooling_type = llama_pooling_type;
    fn causal_attn() -> bool = llama_get_causal_attn;
    /// The logits buffer (NULL without logits); puts the rows of the last
    /// decode in batch order in place, once.
    fn logits() -> *mut f32 = llama_get_logits;
    /// The embeddings buffer (NULL without embeddings).
    fn embeddings() -> *mut f32 = llama_get_embeddings;
    /// The pooled embedding of a sequence (NULL when absent).
    fn seq_embeddings(seq: i32) -> *mut f32 = llama_get_embeddings_seq;
    /// llama.cpp's counters.
    fn perf() -> sys::llama_perf_context_data = llama_perf_context;
});

impl<'a> RawContext<'a> {
    /// The handle of a context its owner keeps alive for `'a`.
    ///
    /// # Safety
    /// `ptr` is a live context for `'a`, not used elsewhere meanwhile.
    pub(crate) unsafe fn new(ptr: NonNull<sys::llama_context>) -> Self {
        RawContext {
            ptr,
            _owner: PhantomData,
        }
    }

    /// Waits for the last computation.
    pub(crate) fn synchronize(self) {
        // SAFETY: a live context.
        unsafe { sys::llama_synchronize(self.ptr.as_ptr()) }
    }

    /// Resets the performance counters.
    pub(crate) fn reset_perf(self) {
        // SAFETY: a live context.
        unsafe { sys::llama_perf_context_reset(self.ptr.as_ptr()) }
    }

    /// Sets the thread counts (1 to `MAX_THREADS`: checked by the caller).
    pub(crate) fn set_threads(self, threads: i32, threads_batch: i32) {
        // SAFETY: a live context; the counts are plain values llama.cpp
        // stores (it clamps nothing and asserts nothing on them).
        unsafe { sys::llama_set_n_threads(self.ptr.as_ptr(), threads, threads_batch) }
    }

    /// Its memory (KV cache; possibly none).
    pub(crate) fn memory(self) -> RawMemory<'a> {
        RawMemory {
            // SAFETY: a live context; a field read.
            ptr: unsafe { sys::llama_get_memory(self.ptr.as_ptr()) },
            _owner: PhantomData,
        }
    }

    /// `llama_decode` (or `llama_encode`): its status.
    ///
    /// # Safety
    /// The batch's arrays live through the call and hold what llama.cpp
    /// asserts on (ids, sequences and sizes checked by the caller).
    pub(crate) unsafe fn decode(self, batch: sys::llama_batch, encode: bool) -> Result<i32> {
        if encode {
            through("llama_encode", 0, |status| {
                // SAFETY: the caller's contract.
                unsafe { sys::ggml_sys_try_llama_encode(self.ptr.as_ptr(), batch, status) }
            })
        } else {
            through("llama_decode", 0, |status| {
                // SAFETY: the caller's contract.
                unsafe { sys::ggml_sys_try_llama_decode(self.ptr.as_ptr(), batch, status) }
            })
        }
    }

    /// The state's size in bytes.
    pub(crate) fn state_size(self) -> Result<usize> {
        through("llama_state_get_size", 0, |size| {
            // SAFETY: a live context.
            unsafe { sys::ggml_sys_try_llama_state_get_size(self.ptr.as_ptr(), size) }
        })
    }

    /// Writes the state into `buf`; the bytes written.
    pub(crate) fn state_get(self, buf: &mut [u8]) -> Result<usize> {
        through("llama_state_get_data", 0, |n| {
            // SAFETY: a live context; `buf` for its length.
            unsafe {
                sys::ggml_sys_try_llama_state_get_data(
                    self.ptr.as_ptr(),
                    buf.as_mut_ptr(),
                    buf.len(),
                    n,
                )
            }
        })
    }

    /// Restores the state from `bytes` (llama.cpp checks them); the bytes
    /// read (0 when refused).
    pub(crate) fn state_set(self, bytes: &[u8]) -> Result<usize> {
        through("llama_state_set_data", 0, |n| {
            // SAFETY: a live context; `bytes` for its length.
            unsafe {
                sys::ggml_sys_try_llama_state_set_data(
                    self.ptr.as_ptr(),
                    bytes.as_ptr(),
                    bytes.len(),
                    n,
                )
            }
        })
    }

    /// Saves the state and `tokens` to a file.
    pub(crate) fn state_save(self, path: &CStr, tokens: &[i32]) -> Result<bool> {
        through("llama_state_save_file", false, |ok| {
            // SAFETY: a live context; a NUL-terminated path; `tokens` for its length.
            unsafe {
                sys::ggml_sys_try_llama_state_save_file(
                    self.ptr.as_ptr(),
                    path.as_ptr(),
                    tokens.as_ptr(),
                    tokens.len(),
                    ok,
                )
            }
        })
    }

    /// Loads a state file into the context and its tokens into `tokens`:
    /// whether llama.cpp took it, and the token count.
    pub(crate) fn state_load(self, path: &CStr, tokens: &mut [i32]) -> Result<(bool, usize)> {
        let mut n = 0usize;
        let ok = through("llama_state_load_file", false, |ok| {
            // SAFETY: a live context; a NUL-terminated path; `tokens` for its
            // length and a count to write.
            unsafe {
                sys::ggml_sys_try_llama_state_load_file(
                    self.ptr.as_ptr(),
                    path.as_ptr(),
                    tokens.as_mut_ptr(),
                    tokens.len(),
                    &mut n,
                    ok,
                )
            }
        })?;
        Ok((ok, n))
    }

    /// Applies adapters with their scales (same length): llama.cpp's status.
    ///
    /// # Safety
    /// Every adapter belongs to this context's model, which keeps them
    /// alive while the context may use them.
    pub(crate) unsafe fn set_loras(
        self,
        adapters: &mut [*mut sys::llama_adapter_lora],
        scales: &mut [f32],
    ) -> Result<i32> {
        assert_eq!(adapters.len(), scales.len(), "one scale per adapter");
        through("llama_set_adapters_lora", 0, |r| {
            // SAFETY: the caller's contract; arrays of the same length.
            unsafe {
                sys::ggml_sys_try_llama_set_adapters_lora(
                    self.ptr.as_ptr(),
                    adapters.as_mut_ptr(),
                    adapters.len(),
                    scales.as_mut_ptr(),
                    r,
                )
            }
        })
    }

    /// Applies a control vector (`data` of `n_embd` values per layer from
    /// layer 1; lengths checked by the caller): llama.cpp's status. `None`
    /// clears it.
    pub(crate) fn set_control_vector(
        self,
        data: Option<&[f32]>,
        n_embd: i32,
        first: i32,
        last: i32,
    ) -> Result<i32> {
        let (ptr, len) = data.map_or((std::ptr::null(), 0), |d| (d.as_ptr(), d.len()));
        through("llama_set_adapter_cvec", 0, |r| {
            // SAFETY: a live context; NULL or `len` values.
            unsafe {
                sys::ggml_sys_try_llama_set_adapter_cvec(
                    self.ptr.as_ptr(),
                    ptr,
                    len,
                    n_embd,
                    first,
                    last,
                    r,
                )
            }
        })
    }
}

/// A context's memory (KV cache), possibly none: llama.cpp's memory calls
/// take NULL.
#[derive(Clone, Copy)]
pub(crate) struct RawMemory<'a> {
    ptr: sys::llama_memory_t,
    _owner: PhantomData<&'a ()>,
}

impl RawMemory<'_> {
    /// Whether the context has a memory at all (embedding models may not).
    pub(crate) fn exists(self) -> bool {
        !self.ptr.is_null()
    }

    /// Empties the cache (and its data when `data`).
    pub(crate) fn clear(self, data: bool) {
        // SAFETY: a live (or NULL) memory.
        unsafe { sys::llama_memory_clear(self.ptr, data) }
    }

    /// Whether positions can be shifted.
    pub(crate) fn can_shift(self) -> bool {
        // SAFETY: as above.
        unsafe { sys::llama_memory_can_shift(self.ptr) }
    }

    /// The smallest and largest position of `seq` (negative when empty).
    ///
    /// # Safety
    /// `seq` is below the context's `n_seq_max` (llama.cpp asserts).
    pub(crate) unsafe fn seq_positions(self, seq: i32) -> (i32, i32) {
        // SAFETY: the caller's contract.
        unsafe {
            (
                sys::llama_memory_seq_pos_min(self.ptr, seq),
                sys::llama_memory_seq_pos_max(self.ptr, seq),
            )
        }
    }

    /// Removes positions `p0..p1` of `seq` (-1: every sequence); whether it
    /// could.
    ///
    /// # Safety
    /// `seq` is -1 or below `n_seq_max`.
    pub(crate) unsafe fn remove(self, seq: i32, p0: i32, p1: i32) -> Result<bool> {
        through("llama_memory_seq_rm", false, |out| {
            // SAFETY: the caller's contract.
            unsafe { sys::ggml_sys_try_llama_memory_seq_rm(self.ptr, seq, p0, p1, out) }
        })
    }

    /// Copies positions `p0..p1` of `src` to `dst`.
    ///
    /// # Safety
    /// Both below `n_seq_max`; a layout llama.cpp can copy (checked by the
    /// caller).
    pub(crate) unsafe fn copy(self, src: i32, dst: i32, p0: i32, p1: i32) -> Result<()> {
        // SAFETY: the caller's contract.
        caught("llama_memory_seq_cp", unsafe {
            sys::ggml_sys_try_llama_memory_seq_cp(self.ptr, src, dst, p0, p1)
        })
    }

    /// Removes every sequence but `seq`.
    ///
    /// # Safety
    /// `seq` below `n_seq_max`.
    pub(crate) unsafe fn keep(self, seq: i32) -> Result<()> {
        // SAFETY: the caller's contract.
        caught("llama_memory_seq_keep", unsafe {
            sys::ggml_sys_try_llama_memory_seq_keep(self.ptr, seq)
        })
    }

    /// Adds `delta` to positions `p0..p1` of `seq`.
    ///
    /// # Safety
    /// `seq` below `n_seq_max`; a shiftable cache; no overflow (checked by
    /// the caller).
    pub(crate) unsafe fn shift(self, seq: i32, p0: i32, p1: i32, delta: i32) -> Result<()> {
        // SAFETY: the caller's contract.
        caught("llama_memory_seq_add", unsafe {
            sys::ggml_sys_try_llama_memory_seq_add(self.ptr, seq, p0, p1, delta)
        })
    }

    /// Divides positions `p0..p1` of `seq` by `d`.
    ///
    /// # Safety
    /// As [`RawMemory::shift`], and `d >= 1`.
    pub(crate) unsafe fn divide(self, seq: i32, p0: i32, p1: i32, d: i32) -> Result<()> {
        // SAFETY: the caller's contract.
        caught("llama_memory_seq_div", unsafe {
            sys::ggml_sys_try_llama_memory_seq_div(self.ptr, seq, p0, p1, d)
        })
    }
}

// ----- samplers -----

/// A live `llama_sampler` (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct RawSampler<'a> {
    ptr: NonNull<sys::llama_sampler>,
    _owner: PhantomData<&'a ()>,
}

/// A new sampler from a barrier init call (`None`: llama.cpp refused the
/// parameters or the grammar).
fn made_sampler(
    call: &'static str,
    init: impl FnOnce(*mut *mut sys::llama_sampler) -> c_int,
) -> Result<Option<NonNull<sys::llama_sampler>>> {
    through(call, std::ptr::null_mut(), init).map(NonNull::new)
}

/// Samplers llama.cpp makes from plain values (checked by the caller where
/// it asserts on them).
pub(crate) mod samplers {
    use super::*;

    /// A new, empty chain.
    pub(crate) fn chain(no_perf: bool) -> Result<Option<NonNull<sys::llama_sampler>>> {
        // SAFETY: returns a struct of defaults.
        let mut params = unsafe { sys::llama_sampler_chain_default_params() };
        params.no_perf = no_perf;
        // SAFETY: plain parameters.
        made_sampler("llama_sampler_chain_init", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_chain_init(params, r)
        })
    }

    macro_rules! simple {
        ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) = $ffi:ident;)*) => {
            $(
                $(#[$doc])*
                pub(crate) fn $name($($arg: $ty),*) -> Result<Option<NonNull<sys::llama_sampler>>> {
                    made_sampler(stringify!($ffi), |r| {
                        // SAFETY: plain values (checked by the caller).
                        unsafe { sys::$ffi($($arg,)* r) }
                    })
                }
            )*
        };
    }

    simple! {
        fn greedy() = ggml_sys_try_llama_sampler_init_greedy;
        fn dist(seed: u32) = ggml_sys_try_llama_sampler_init_dist;
        fn temp(t: f32) = ggml_sys_try_llama_sampler_init_temp;
        fn top_k(k: i32) = ggml_sys_try_llama_sampler_init_top_k;
        fn top_p(p: f32, min_keep: usize) = ggml_sys_try_llama_sampler_init_top_p;
        fn min_p(p: f32, min_keep: usize) = ggml_sys_try_llama_sampler_init_min_p;
        fn typical(p: f32, min_keep: usize) = ggml_sys_try_llama_sampler_init_typical;
        fn penalties(n_vocab: i32, last_n: i32, repeat: f32, freq: f32, present: f32) = ggml_sys_try_llama_sampler_init_penalties;
        fn mirostat(n_vocab: i32, seed: u32, tau: f32, eta: f32, m: i32) = ggml_sys_try_llama_sampler_init_mirostat;
        fn mirostat_v2(seed: u32, tau: f32, eta: f32) = ggml_sys_try_llama_sampler_init_mirostat_v2;
    }

    /// DRY penalties over `vocab`'s tokens, with these breakers.
    pub(crate) fn dry(
        vocab: RawVocab<'_>,
        multiplier: f32,
        base: f32,
        allowed_length: i32,
        last_n: i32,
        breakers: &[&CStr],
    ) -> Result<Option<NonNull<sys::llama_sampler>>> {
        let mut ptrs: Vec<*const c_char> = breakers.iter().map(|b| b.as_ptr()).collect();
        made_sampler("llama_sampler_init_dry", |r| {
            // SAFETY: a live vocabulary; breaker strings alive through the
            // call (llama.cpp copies them).
            unsafe {
                sys::ggml_sys_try_llama_sampler_init_dry(
                    vocab.as_ptr(),
                    multiplier,
                    base,
                    allowed_length,
                    last_n,
                    ptrs.as_mut_ptr(),
                    ptrs.len(),
                    r,
                )
            }
        })
    }

    /// A GBNF grammar over `vocab` (`None`: it does not parse).
    pub(crate) fn grammar(
        vocab: RawVocab<'_>,
        gbnf: &CStr,
        root: &CStr,
    ) -> Result<Option<NonNull<sys::llama_sampler>>> {
        made_sampler("llama_sampler_init_grammar", |r| {
            // SAFETY: a live vocabulary; NUL-terminated strings (bounded by
            // the caller's grammar check).
            unsafe {
                sys::ggml_sys_try_llama_sampler_init_grammar(
                    vocab.as_ptr(),
                    gbnf.as_ptr(),
                    root.as_ptr(),
                    r,
                )
            }
        })
    }

    /// Logit biases (ids in range: checked by the caller).
    pub(crate) fn logit_bias(
        n_vocab: i32,
        biases: &[sys::llama_logit_bias],
    ) -> Result<Option<NonNull<sys::llama_sampler>>> {
        let n = i32::try_from(biases.len())
            .map_err(|_| Error::InvalidParams("too many biases".into()))?;
        made_sampler("llama_sampler_init_logit_bias", |r| {
            // SAFETY: `n` entries (llama.cpp copies them).
            unsafe {
                sys::ggml_sys_try_llama_sampler_init_logit_bias(n_vocab, n, biases.as_ptr(), r)
            }
        })
    }
}

/// Frees a sampler (a chain frees its members).
///
/// # Safety
/// A sampler llama.cpp gave, freed once, not in a chain.
pub(crate) unsafe fn free_sampler(s: NonNull<sys::llama_sampler>) {
    // SAFETY: the caller's contract.
    unsafe { sys::llama_sampler_free(s.as_ptr()) }
}

impl<'a> RawSampler<'a> {
    /// The handle of a sampler its owner keeps alive for `'a`.
    ///
    /// # Safety
    /// `ptr` is a live sampler for `'a`, not used elsewhere meanwhile.
    pub(crate) unsafe fn new(ptr: NonNull<sys::llama_sampler>) -> Self {
        RawSampler {
            ptr,
            _owner: PhantomData,
        }
    }

    /// Members of a chain.
    pub(crate) fn chain_len(self) -> i32 {
        // SAFETY: a live chain.
        unsafe { sys::llama_sampler_chain_n(self.ptr.as_ptr()) }
    }

    /// Member `i` of a chain (below [`RawSampler::chain_len`]).
    pub(crate) fn member(self, i: i32) -> RawSampler<'a> {
        assert!((0..self.chain_len()).contains(&i), "a member of the chain");
        // SAFETY: a live chain, an index in range; the member lives as long.
        let ptr = unsafe { sys::llama_sampler_chain_get(self.ptr.as_ptr(), i) };
        RawSampler {
            ptr: NonNull::new(ptr).expect("a member"),
            _owner: PhantomData,
        }
    }

    /// Adds `member` to the chain, which takes it (freed here when that
    /// fails).
    ///
    /// # Safety
    /// `member` is a sampler nobody else holds.
    pub(crate) unsafe fn chain_add(self, member: NonNull<sys::llama_sampler>) -> Result<()> {
        // SAFETY: the caller's contract.
        let status = unsafe {
            sys::ggml_sys_try_llama_sampler_chain_add(self.ptr.as_ptr(), member.as_ptr())
        };
        caught("llama_sampler_chain_add", status).inspect_err(|_| {
            // SAFETY: not added: still the caller's, given to us.
            unsafe { free_sampler(member) }
        })
    }

    /// Applies the sampler to `candidates`.
    ///
    /// # Safety
    /// The candidates' ids are in the vocabulary the sampler was made for;
    /// `array` points into memory live for the call.
    pub(crate) unsafe fn apply(self, array: &mut sys::llama_token_data_array) -> Result<()> {
        // SAFETY: the caller's contract.
        caught("llama_sampler_apply", unsafe {
            sys::ggml_sys_try_llama_sampler_apply(self.ptr.as_ptr(), array)
        })
    }

    /// Records `token` as chosen.
    ///
    /// # Safety
    /// An id in the vocabulary, one every grammar of the chain allows.
    pub(crate) unsafe fn accept(self, token: i32) -> Result<()> {
        // SAFETY: the caller's contract.
        caught("llama_sampler_accept", unsafe {
            sys::ggml_sys_try_llama_sampler_accept(self.ptr.as_ptr(), token)
        })
    }

    /// Resets the samplers' state.
    pub(crate) fn reset(self) -> Result<()> {
        // SAFETY: a live sampler.
        caught("llama_sampler_reset", unsafe {
            sys::ggml_sys_try_llama_sampler_reset(self.ptr.as_ptr())
        })
    }
}

// ----- chat templates -----

/// `llama_chat_apply_template` into `buf`: the formatted length (negative:
/// an unknown template).
///
/// # Safety
/// The messages' role and content pointers are NUL-terminated strings live
/// for the call.
pub(crate) unsafe fn apply_chat_template(
    template: &CStr,
    messages: &[sys::llama_chat_message],
    add_assistant: bool,
    buf: &mut [u8],
) -> Result<i32> {
    let len = i32::try_from(buf.len()).map_err(|_| Error::TooLong {
        what: "the formatted chat",
        len: buf.len(),
    })?;
    through("llama_chat_apply_template", 0, |n| {
        // SAFETY: the caller's contract; a NUL-terminated template; `buf`
        // for `len` bytes.
        unsafe {
            sys::ggml_sys_try_llama_chat_apply_template(
                template.as_ptr(),
                messages.as_ptr(),
                messages.len(),
                add_assistant,
                buf.as_mut_ptr().cast(),
                len,
                n,
            )
        }
    })
}

/// The names of llama.cpp's built-in chat templates.
pub(crate) fn builtin_templates() -> Vec<String> {
    // SAFETY: a size query.
    let n = unsafe { sys::llama_chat_builtin_templates(std::ptr::null_mut(), 0) }.max(0) as usize;
    let mut ptrs: Vec<*const c_char> = vec![std::ptr::null(); n];
    // SAFETY: room for `n` pointers to static strings.
    unsafe { sys::llama_chat_builtin_templates(ptrs.as_mut_ptr(), n) };
    // SAFETY: NULL or static NUL-terminated strings.
    ptrs.iter().filter_map(|&p| unsafe { owned(p) }).collect()
}
