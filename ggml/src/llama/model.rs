//! [`Model`]: a loaded llama.cpp model, its metadata and chat template, and
//! its LoRA adapters ([`Lora`]).

use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use ggml_sys as sys;

use super::error::Error;
use super::error::Result;
use super::raw::{self, RawModel};
use super::vocab::Vocab;
use crate::gguf::Gguf;

/// How a model is loaded ([`Model::load_with`]).
#[derive(Debug, Clone)]
pub struct ModelParams {
    gpu_layers: i32,
    mmap: bool,
    mlock: bool,
    vocab_only: bool,
    check_tensors: bool,
    skip_checks: bool,
    devices: Vec<crate::backend::Device>,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            gpu_layers: -1,
            mmap: false,
            mlock: false,
            vocab_only: false,
            check_tensors: false,
            skip_checks: false,
            devices: Vec::new(),
        }
    }
}

impl ModelParams {
    /// Default parameters: every layer on the GPU when a GPU backend is
    /// present (none otherwise), the file read into memory (no map).
    pub fn new() -> Self {
        Self::default()
    }

    /// Layers to offload to the GPU (`None`: all of them; `Some(0)`: none).
    /// No effect without a GPU backend.
    pub fn gpu_layers(mut self, n: Option<u32>) -> Self {
        self.gpu_layers = n.map_or(-1, |n| n.min(i32::MAX as u32) as i32);
        self
    }

    /// Memory-maps the file instead of reading it (llama.cpp's default; less
    /// memory, faster loads).
    ///
    /// # Safety
    /// The file must not be modified or truncated while the model is loaded:
    /// its weights are read in place (a change is a data race, a truncation
    /// a `SIGBUS`), the contract of every memory map.
    pub unsafe fn mmap(mut self, on: bool) -> Self {
        self.mmap = on;
        self
    }

    /// Locks the weights in RAM (`mlock`), so they are never swapped out.
    pub fn mlock(mut self, on: bool) -> Self {
        self.mlock = on;
        self
    }

    /// Loads the vocabulary only (tokenize and detokenize; no contexts).
    pub fn vocab_only(mut self, on: bool) -> Self {
        self.vocab_only = on;
        self
    }

    /// Skips this crate's checks of the file's values (hyperparameters,
    /// tensor types, vocabulary: see [`ARCHITECTURES`](super::ARCHITECTURES)
    /// and the [model checks](super#model-files)), for files it does not validate:
    /// architectures and tokenizers outside the validated set. The GGUF
    /// structure is still checked.
    ///
    /// # Safety
    /// The file must be one llama.cpp loads and runs correctly: its
    /// hyperparameters in range, its vocabulary consistent, every tensor of
    /// a type the backends' kernels implement for its role. A file that is
    /// not may abort the process or cause undefined behaviour (reads out of
    /// bounds) in llama.cpp, at load or in any later call.
    pub unsafe fn skip_model_checks(mut self, on: bool) -> Self {
        self.skip_checks = on;
        self
    }

    /// The devices the model's offloaded layers go to, in order (llama.cpp
    /// splits the layers between them by their free memory); default: every
    /// GPU of the registry. With the `rpc` feature, RPC workers' devices
    /// (`Device::rpc`) place layers on other
    /// machines:
    ///
    /// ```no_run
    /// # #[cfg(feature = "rpc")]
    /// # fn main() -> Result<(), ggml::llama::Error> {
    /// use ggml::backend::Device;
    /// use ggml::llama::{Model, ModelParams};
    /// let params = ModelParams::new()
    ///     .devices([Device::rpc("10.0.0.2:50052")?, Device::rpc("10.0.0.3:50052")?]);
    /// let model = Model::load_with("model.gguf", &params, |_| true)?;
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "rpc"))]
    /// # fn main() {}
    /// ```
    pub fn devices(mut self, devices: impl IntoIterator<Item = crate::backend::Device>) -> Self {
        self.devices = devices.into_iter().collect();
        self
    }

    /// Validates the tensor data while loading (slower).
    pub fn check_tensors(mut self, on: bool) -> Self {
        self.check_tensors = on;
        self
    }

    /// The raw parameters; `devices` holds the NULL-terminated device list
    /// they point to, and must outlive their use.
    fn raw(&self, devices: &mut Vec<sys::ggml_backend_dev_t>) -> sys::llama_model_params {
        let mut p = raw::model_default_params();
        if !self.devices.is_empty() {
            devices.clear();
            devices.extend(self.devices.iter().map(|d| d.raw().as_ptr()));
            devices.push(std::ptr::null_mut());
            p.devices = devices.as_mut_ptr();
        }
        p.n_gpu_layers = self.gpu_layers;
        p.load_mode = match (self.mmap, self.mlock) {
            (true, true) => sys::LLAMA_LOAD_MODE_MMAP_MLOCK,
            (true, false) => sys::LLAMA_LOAD_MODE_MMAP,
            (false, true) => sys::LLAMA_LOAD_MODE_MLOCK,
            (false, false) => sys::LLAMA_LOAD_MODE_NONE,
        };
        p.vocab_only = self.vocab_only;
        p.check_tensors = self.check_tensors;
        p
    }
}

/// The progress callback's state, shared with the trampoline.
struct Progress<'f> {
    f: &'f mut dyn FnMut(f32) -> bool,
    cancelled: bool,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

unsafe extern "C" fn progress_trampoline(p: f32, user: *mut c_void) -> bool {
    // SAFETY: `user` is the `Progress` of the load call running on this
    // thread, alive for the whole call.
    let state = unsafe { &mut *user.cast::<Progress<'_>>() };
    if state.panic.is_some() || state.cancelled {
        return false;
    }
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (state.f)(p))) {
        Ok(true) => true,
        Ok(false) => {
            state.cancelled = true;
            false
        }
        Err(payload) => {
            state.panic = Some(payload);
            false
        }
    }
}

/// A model loaded by llama.cpp: weights, vocabulary, metadata. Contexts
/// ([`Context`](super::Context)) borrow it; it is shared read-only between
/// threads (`Send + Sync`: after loading, llama.cpp only reads a model,
/// except to add or remove LoRA adapters, which take `&mut self` here, and
/// for context parameters this crate does not expose).
pub struct Model {
    raw: NonNull<sys::llama_model>,
    vocab_only: bool,
    path: PathBuf,
    loras: Vec<NonNull<sys::llama_adapter_lora>>,
    /// Weights no LoRA adapter may target (see `check`).
    no_lora: Vec<String>,
}

// SAFETY: the model is only mutated through `&mut self` (LoRA adapters) and
// freed by Drop; llama.cpp's other entry points read it (tokenization is
// documented thread-safe; contexts keep a const reference). The YaRN context
// parameters that write `hparams` are not exposed.
unsafe impl Send for Model {}
// SAFETY: as above.
unsafe impl Sync for Model {}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: no context borrows the model any more (lifetimes); the
        // adapters still registered are freed by llama.cpp with it.
        unsafe { raw::free_model(self.raw) };
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("description", &self.description())
            .field("n_params", &self.n_params())
            .finish()
    }
}

impl Model {
    /// Loads the model at `path` with default [`ModelParams`].
    ///
    /// # Errors
    /// As [`Model::load_with`].
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Self::load_with(path, &ModelParams::default(), |_| true)
    }

    /// Loads the model at `path` (the first shard of a split model), calling
    /// `progress` with the fraction loaded (0 to 1); returning `false`
    /// cancels the load. A panic in `progress` stops the load and is resumed
    /// once llama.cpp has returned.
    ///
    /// The file is first validated by this crate's GGUF reader
    /// ([`Gguf::check_file`]): llama.cpp's own reader aborts the process on
    /// some malformed files, and is never given one ours refuses.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io), [`Error::Gguf`](crate::Error::Gguf)
    /// for a file that is not valid GGUF; [`Error::Cancelled`];
    /// [`Error::ModelLoad`] when llama.cpp refuses it (not a model it
    /// knows, missing tensors, out of memory).
    pub fn load_with(
        path: impl AsRef<Path>,
        params: &ModelParams,
        mut progress: impl FnMut(f32) -> bool,
    ) -> Result<Model> {
        super::init()?;
        let path = path.as_ref();
        let c_path = super::path_c_string(path)?;
        let file = Gguf::read_index(path)?;
        let checked = if params.skip_checks {
            super::check::Checked::default()
        } else {
            super::check::model(path, &file, params.vocab_only, params.mmap)?
        };
        drop(file);
        let mut state = Progress {
            f: &mut progress,
            cancelled: false,
            panic: None,
        };
        let mut device_list = Vec::new();
        let mut raw = params.raw(&mut device_list);
        raw.progress_callback = Some(progress_trampoline);
        raw.progress_callback_user_data = (&mut state as *mut Progress<'_>).cast();
        let _ = super::log::take_last_error();
        crate::error::rpc::clear();
        // SAFETY: the callback's state outlives the call and is used only
        // on this thread during it.
        let loaded = unsafe { raw::load_model(&c_path, raw) };
        let fault = crate::error::rpc::take();
        if let Some(payload) = state.panic.take() {
            if let Ok(Some(m)) = loaded {
                // SAFETY: a model just returned to us, not shared.
                unsafe { raw::free_model(m) };
            }
            std::panic::resume_unwind(payload);
        }
        if let Some(fault) = fault {
            // A worker failed during the load (the `rpc` feature): its
            // weights may be missing or wrong.
            if let Ok(Some(m)) = loaded {
                // SAFETY: a model just returned to us, not shared.
                unsafe { raw::free_model(m) };
            }
            return Err(fault.into());
        }
        match loaded? {
            Some(raw) if !state.cancelled => Ok(Model {
                raw,
                vocab_only: params.vocab_only,
                path: path.to_path_buf(),
                loras: Vec::new(),
                no_lora: checked.no_lora,
            }),
            Some(raw) => {
                // SAFETY: as above.
                unsafe { raw::free_model(raw) };
                Err(Error::Cancelled)
            }
            None if state.cancelled => Err(Error::Cancelled),
            None => Err(Error::ModelLoad {
                path: path.to_path_buf(),
                reason: match super::log::take_last_error() {
                    e if e.is_empty() => "see llama.cpp's log (target \"llama\")".into(),
                    e => e,
                },
            }),
        }
    }

    /// The key and value head dimensions (`{arch}.attention.key_length` and
    /// `value_length`, by default `n_embd / n_head`).
    pub(crate) fn head_dims(&self) -> (usize, usize) {
        let default = self.n_embd() / self.n_head().max(1);
        let arch = self.architecture().unwrap_or_default();
        let key = |k: &str| {
            self.meta(&format!("{arch}.attention.{k}"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        (key("key_length"), key("value_length"))
    }

    /// Whether LoRA adapters must not target the weight `name` (without
    /// `.weight`).
    pub(crate) fn lora_refused(&self, name: &str) -> bool {
        self.no_lora.iter().any(|n| n == name)
    }

    /// The raw handle, for this layer's calls.
    pub(crate) fn raw(&self) -> RawModel<'_> {
        // SAFETY: the model lives as long as the borrow.
        unsafe { RawModel::new(self.raw) }
    }

    /// Whether only the vocabulary was loaded.
    pub fn is_vocab_only(&self) -> bool {
        self.vocab_only
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vocabulary.
    pub fn vocab(&self) -> Vocab<'_> {
        Vocab::new(self.raw().vocab())
    }

    /// Context length the model was trained with.
    pub fn n_ctx_train(&self) -> u32 {
        self.raw().n_ctx_train().max(0) as u32
    }

    /// Embedding size.
    pub fn n_embd(&self) -> usize {
        self.raw().n_embd().max(0) as usize
    }

    /// Size of the embeddings a context outputs (`n_embd` for most models).
    pub fn n_embd_out(&self) -> usize {
        self.raw().n_embd_out().max(0) as usize
    }

    /// Number of layers.
    pub fn n_layer(&self) -> usize {
        self.raw().n_layer().max(0) as usize
    }

    /// Number of attention heads.
    pub fn n_head(&self) -> usize {
        self.raw().n_head().max(0) as usize
    }

    /// Number of parameters.
    pub fn n_params(&self) -> u64 {
        self.raw().n_params()
    }

    /// Bytes of all its tensors.
    pub fn size(&self) -> u64 {
        self.raw().size()
    }

    /// Whether the model has an encoder (encoder-decoder models).
    pub fn has_encoder(&self) -> bool {
        self.raw().has_encoder()
    }

    /// Whether the model has a decoder.
    pub fn has_decoder(&self) -> bool {
        self.raw().has_decoder()
    }

    pub(crate) fn rope_type(&self) -> sys::llama_rope_type {
        self.raw().rope_type()
    }

    /// llama.cpp's one-line description (`llama 135M Q4_1`).
    pub fn description(&self) -> String {
        self.raw().description()
    }

    /// A metadata value as a string (arrays are not available this way: see
    /// [`Gguf`] for those).
    pub fn meta(&self, key: &str) -> Option<String> {
        let key = CString::new(key).ok()?;
        self.raw().meta(&key)
    }

    /// Every scalar and string metadata key with its value as a string,
    /// sorted by key.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let raw = self.raw();
        let mut out: Vec<(String, String)> = (0..raw.meta_count())
            .filter_map(|i| raw.meta_entry(i))
            .collect();
        out.sort();
        out
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<String> {
        self.meta("general.architecture")
    }

    /// `general.name`.
    pub fn name(&self) -> Option<String> {
        self.meta("general.name")
    }

    /// The chat template (`tokenizer.chat_template`, or the named one
    /// `tokenizer.chat_template.{name}`).
    pub fn chat_template(&self, name: Option<&str>) -> Option<String> {
        let name = name.map(CString::new).transpose().ok()?;
        self.raw().chat_template(name.as_deref())
    }

    /// Loads a LoRA adapter for this model (a GGUF adapter file) and keeps
    /// it with the model; returns its index for [`Model::lora`].
    /// `&mut self`: llama.cpp registers adapters in the model, which no
    /// context may be reading meanwhile.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io), [`Error::Gguf`](crate::Error::Gguf)
    /// for a malformed file, [`Error::Adapter`] when llama.cpp refuses
    /// it (another architecture, shapes that do not match).
    pub fn load_lora(&mut self, path: impl AsRef<Path>) -> Result<usize> {
        let path = path.as_ref();
        let c_path = super::path_c_string(path)?;
        let file = Gguf::read_index(path)?;
        super::check::lora(path, &file, self)?;
        drop(file);
        let _ = super::log::take_last_error();
        // SAFETY: the model is not shared now (&mut self).
        let raw = unsafe { self.raw().load_lora(&c_path) }?.ok_or_else(|| {
            Error::Adapter(format!(
                "llama.cpp refused {}: {}",
                path.display(),
                super::log::take_last_error()
            ))
        })?;
        self.loras.push(raw);
        Ok(self.loras.len() - 1)
    }

    /// The LoRA adapter at `index` (see [`Model::load_lora`]).
    pub fn lora(&self, index: usize) -> Option<Lora<'_>> {
        self.loras.get(index).map(|&raw| Lora {
            raw,
            model: self.raw,
            _model: PhantomData,
        })
    }

    /// Number of LoRA adapters loaded.
    pub fn lora_count(&self) -> usize {
        self.loras.len()
    }

    /// Frees the LoRA adapter at `index` (later ones move down by one).
    ///
    /// # Errors
    /// [`Error::Adapter`] for an index out of range.
    pub fn remove_lora(&mut self, index: usize) -> Result<()> {
        if index >= self.loras.len() {
            return Err(Error::Adapter(format!(
                "no adapter {index} ({} loaded)",
                self.loras.len()
            )));
        }
        let raw = self.loras.remove(index);
        // SAFETY: an adapter of this model, not used by any context (no
        // context borrows the model while it is borrowed mutably).
        unsafe { raw::free_lora(raw) };
        Ok(())
    }

    /// Applies the model's own chat template to `messages`
    /// ([`apply_chat_template`](super::apply_chat_template)).
    ///
    /// # Errors
    /// [`Error::NoTemplate`], and as `apply_chat_template`.
    pub fn apply_chat_template(
        &self,
        messages: &[super::ChatMessage],
        add_assistant: bool,
    ) -> Result<String> {
        let template = self.chat_template(None).ok_or(Error::NoTemplate)?;
        super::apply_chat_template(&template, messages, add_assistant)
    }
}

/// A LoRA adapter of a [`Model`], borrowing it: it cannot outlive the model,
/// and the model cannot drop it while a context may use it. Apply it with
/// [`Context::set_loras`](super::Context::set_loras).
#[derive(Clone, Copy)]
pub struct Lora<'m> {
    pub(crate) raw: NonNull<sys::llama_adapter_lora>,
    pub(crate) model: NonNull<sys::llama_model>,
    _model: PhantomData<&'m Model>,
}

impl std::fmt::Debug for Lora<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lora").field("raw", &self.raw).finish()
    }
}

// SAFETY: a handle to an adapter only read while the model is shared.
unsafe impl Send for Lora<'_> {}
// SAFETY: as above.
unsafe impl Sync for Lora<'_> {}
