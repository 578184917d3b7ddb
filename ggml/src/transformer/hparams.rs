//! The hyperparameters of a llama-architecture file, read from its
//! metadata as llama.cpp reads them (`llama.*` keys, with llama.cpp's
//! defaults where a key is optional).

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

/// The architectures [`super::Model`] runs: llama.cpp's `llama` graph.
pub const ARCHITECTURES: &[&str] = &["llama"];

/// Bounds far above real models that keep every size product of the graph
/// (`n_embd · n_ctx`, heads · head size, ...) far from overflow.
const MAX_DIM: u32 = 1 << 20;
const MAX_LAYERS: u32 = 1 << 12;

/// A llama model's shape and constants.
#[derive(Debug, Clone, PartialEq)]
pub struct Hparams {
    /// Tokens in the vocabulary (rows of `token_embd.weight`).
    pub n_vocab: usize,
    /// The context the model was trained for (`context_length`).
    pub n_ctx_train: usize,
    /// Width of the residual stream (`embedding_length`).
    pub n_embd: usize,
    /// Transformer blocks (`block_count`).
    pub n_layer: usize,
    /// Query heads (`attention.head_count`).
    pub n_head: usize,
    /// Key/value heads (`attention.head_count_kv`, grouped-query attention
    /// when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Width of a key head (`attention.key_length`, else
    /// `n_embd / n_head`).
    pub head_dim_k: usize,
    /// Width of a value head (`attention.value_length`, else
    /// `n_embd / n_head`).
    pub head_dim_v: usize,
    /// Width of the feed-forward layer (`feed_forward_length`).
    pub n_ff: usize,
    /// Dimensions of each head that RoPE rotates (`rope.dimension_count`,
    /// else the key head width).
    pub n_rot: usize,
    /// RMS norm's epsilon (`attention.layer_norm_rms_epsilon`).
    pub rms_eps: f32,
    /// RoPE's base frequency (`rope.freq_base`, else 10000).
    pub rope_freq_base: f32,
    /// RoPE's position scale: 1 / `rope.scaling.factor` under linear
    /// scaling, else 1.
    pub rope_freq_scale: f32,
    /// The position count RoPE was trained with
    /// (`rope.scaling.original_context_length`, else `n_ctx_train`).
    pub n_ctx_orig: usize,
    /// The attention's score scale (`attention.scale`, else
    /// `1 / √head_dim_k`).
    pub attention_scale: f32,
}

impl Hparams {
    /// Reads the hyperparameters of `file`, which must be of the `llama`
    /// architecture.
    ///
    /// # Errors
    /// [`Error::Model`] for another architecture, a missing or mistyped
    /// key, a value out of range, or RoPE scaling or experts this
    /// implementation does not run.
    pub fn from_gguf(file: &Gguf) -> Result<Hparams> {
        let arch = file
            .architecture()
            .map_err(|e| model_error("general.architecture", e.to_string()))?
            .ok_or_else(|| model_error("general.architecture", "missing"))?;
        if !ARCHITECTURES.contains(&arch) {
            return Err(model_error(
                "general.architecture",
                format!(
                    "architecture '{arch}' is not one this transformer runs ({})",
                    ARCHITECTURES.join(", ")
                ),
            ));
        }
        let keys = Keys { file, arch };
        let n_embd = keys.dim("embedding_length")?;
        let n_layer = keys.required("block_count")?;
        if !(1..=MAX_LAYERS).contains(&n_layer) {
            return Err(keys.bad(
                "block_count",
                format!("{n_layer} layers (1 to {MAX_LAYERS})"),
            ));
        }
        let n_head = keys.dim("attention.head_count")?;
        let n_head_kv = match keys.optional("attention.head_count_kv")? {
            Some(n) => keys.in_range("attention.head_count_kv", n)?,
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(keys.bad(
                "attention.head_count_kv",
                format!("{n_head_kv} key/value heads do not divide {n_head} query heads"),
            ));
        }
        let default_head = n_embd / n_head;
        let head_dim_k = match keys.optional("attention.key_length")? {
            Some(n) => keys.in_range("attention.key_length", n)?,
            None => default_head,
        };
        let head_dim_v = match keys.optional("attention.value_length")? {
            Some(n) => keys.in_range("attention.value_length", n)?,
            None => default_head,
        };
        if head_dim_k == 0 || head_dim_v == 0 {
            return Err(keys.bad(
                "attention.head_count",
                format!("{n_head} heads leave no width of a {n_embd}-wide model"),
            ));
        }
        let n_rot = match keys.optional("rope.dimension_count")? {
            Some(n) => n as usize,
            None => head_dim_k,
        };
        if n_rot % 2 != 0 || n_rot > head_dim_k {
            return Err(keys.bad(
                "rope.dimension_count",
                format!("{n_rot} rotated dimensions: even and at most the head width {head_dim_k}"),
            ));
        }
        if let Some(n) = keys.optional("expert_count")? {
            if n > 0 {
                return Err(keys.bad(
                    "expert_count",
                    format!("{n} experts: mixture-of-experts layers are not implemented here"),
                ));
            }
        }
        let rms_eps = keys
            .float("attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-5);
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(keys.bad(
                "attention.layer_norm_rms_epsilon",
                format!("{rms_eps}: a finite value at least 0"),
            ));
        }
        let rope_freq_base = keys.float("rope.freq_base")?.unwrap_or(10_000.0);
        let scaling = keys.string("rope.scaling.type")?.unwrap_or("none");
        let rope_freq_scale = match scaling {
            "none" => 1.0,
            "linear" => match keys.float("rope.scaling.factor")? {
                Some(f) if f.is_finite() && f > 0.0 => 1.0 / f,
                Some(f) => {
                    return Err(keys.bad("rope.scaling.factor", format!("{f}: a positive factor")))
                }
                None => 1.0,
            },
            other => {
                return Err(keys.bad(
                    "rope.scaling.type",
                    format!("RoPE scaling '{other}' is not implemented here (none, linear)"),
                ))
            }
        };
        if !(rope_freq_base.is_finite() && rope_freq_base > 0.0) {
            return Err(keys.bad(
                "rope.freq_base",
                format!("{rope_freq_base}: a positive base"),
            ));
        }
        let n_ctx_train = keys.dim("context_length")?;
        let n_ctx_orig = match keys.optional("rope.scaling.original_context_length")? {
            Some(n) => n as usize,
            None => n_ctx_train,
        };
        let attention_scale = match keys.float("attention.scale")? {
            Some(s) if s != 0.0 => s,
            _ => 1.0 / (head_dim_k as f32).sqrt(),
        };
        let n_vocab = match keys.optional("vocab_size")? {
            Some(n) => n as usize,
            None => {
                let embd = file
                    .tensor("token_embd.weight")
                    .map_err(|_| model_error("token_embd.weight", "missing"))?;
                embd.ne()[1] as usize
            }
        };
        Ok(Hparams {
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer: n_layer as usize,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_ff: keys.dim("feed_forward_length")?,
            n_rot,
            rms_eps,
            rope_freq_base,
            rope_freq_scale,
            n_ctx_orig,
            attention_scale,
        })
    }
}

/// The error for a file the transformer cannot run.
pub(crate) fn model_error(item: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Model {
        item: item.into(),
        reason: reason.into(),
    }
}

/// The `{arch}.*` keys of one file.
struct Keys<'a> {
    file: &'a Gguf,
    arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    fn bad(&self, suffix: &str, reason: impl Into<String>) -> Error {
        model_error(self.key(suffix), reason)
    }

    /// An unsigned integer key (u32, as llama.cpp writes them; other
    /// integer types are accepted when they fit).
    fn optional(&self, suffix: &str) -> Result<Option<u32>> {
        let Some(v) = self.file.value(&self.key(suffix)) else {
            return Ok(None);
        };
        let n = v.as_i64().ok_or_else(|| {
            self.bad(
                suffix,
                format!("{} is not an integer", v.type_description()),
            )
        })?;
        u32::try_from(n)
            .map(Some)
            .map_err(|_| self.bad(suffix, format!("{n} is not a u32")))
    }

    fn required(&self, suffix: &str) -> Result<u32> {
        self.optional(suffix)?
            .ok_or_else(|| self.bad(suffix, "missing"))
    }

    /// A dimension: present, 1 to `MAX_DIM`.
    fn dim(&self, suffix: &str) -> Result<usize> {
        let n = self.required(suffix)?;
        self.in_range(suffix, n)
    }

    fn in_range(&self, suffix: &str, n: u32) -> Result<usize> {
        if (1..=MAX_DIM).contains(&n) {
            Ok(n as usize)
        } else {
            Err(self.bad(suffix, format!("{n} is not in 1..={MAX_DIM}")))
        }
    }

    fn float(&self, suffix: &str) -> Result<Option<f32>> {
        match self.file.value(&self.key(suffix)) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(v)),
            Some(Value::F64(v)) => Ok(Some(v as f32)),
            Some(v) => Err(self.bad(suffix, format!("{} is not a float", v.type_description()))),
        }
    }

    fn string(&self, suffix: &str) -> Result<Option<&str>> {
        match self.file.value(&self.key(suffix)) {
            None => Ok(None),
            Some(v) => match self.file.get::<&str>(&self.key(suffix)) {
                Ok(s) => Ok(Some(s)),
                Err(_) => {
                    Err(self.bad(suffix, format!("{} is not a string", v.type_description())))
                }
            },
        }
    }
}
