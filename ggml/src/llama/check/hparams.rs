//! Hyperparameters: the ranges and relations llama.cpp's loader, context
//! and graph code assert (and abort on) or silently rely on, for the
//! architectures this crate validates.
//!
//! A key of the wrong type, an array of the wrong length, a missing
//! required key and tensor shapes that disagree with the keys are refused
//! by llama.cpp itself (a clean error); these checks leave them to it and
//! only look at values that would get past it.

use super::Finding;
use crate::gguf::{Gguf, Value, ValueType};

/// Architectures whose files this crate validates: `llama` and its
/// embedding-only twin, which llama.cpp loads with the same code.
pub(crate) const ARCHITECTURES: &[&str] = &["llama", "llama-embed"];

/// llama.cpp's `LLAMA_MAX_LAYERS`.
const MAX_LAYERS: u64 = 512;
/// llama.cpp's `LLAMA_MAX_EXPERTS`.
const MAX_EXPERTS: u64 = 1024;
/// Bounds that keep llama.cpp's `uint32_t` products of head counts and
/// lengths (and its graph's element counts) far from wrapping; real models
/// are well inside them.
const MAX_EMBD: u64 = 1 << 20;
const MAX_HEADS: u64 = 1 << 16;
const MAX_HEAD_DIM: u64 = 1 << 12;
/// Longest training context accepted (it sizes a context of `n_ctx` 0).
const MAX_CONTEXT: u64 = 1 << 24;
/// `rope.scaling.type` values llama.cpp knows (it aborts on others).
const ROPE_SCALING: &[&str] = &["none", "linear", "yarn", "longrope"];

/// The metadata of one file, read as llama.cpp reads it for `arch`.
struct Keys<'a> {
    file: &'a Gguf,
    arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    /// A `u32` key (`None` when absent or of another type, which llama.cpp
    /// refuses itself).
    fn u32(&self, suffix: &str) -> Option<u64> {
        match self.file.value(&self.key(suffix))? {
            Value::U32(v) => Some(v as u64),
            _ => None,
        }
    }

    fn f32(&self, suffix: &str) -> Option<f32> {
        match self.file.value(&self.key(suffix))? {
            Value::F32(v) => Some(v),
            _ => None,
        }
    }

    /// A per-layer `u32` key as llama.cpp's `get_key_or_arr` reads it: a
    /// scalar for every layer, or an array of `n_layer` u32, i32 (taken as
    /// u32) or bool values. `None` when absent or refused by llama.cpp.
    fn per_layer(&self, suffix: &str, n_layer: usize) -> Option<Vec<u64>> {
        match self.file.value(&self.key(suffix))? {
            Value::U32(v) => Some(vec![v as u64; n_layer]),
            Value::Array(a) if a.len() == n_layer => match a.elem_type() {
                ValueType::U32 => a
                    .to_vec::<u32>()
                    .ok()
                    .map(|v| v.into_iter().map(u64::from).collect()),
                ValueType::I32 => a
                    .to_vec::<i32>()
                    .ok()
                    .map(|v| v.into_iter().map(|x| x as u32 as u64).collect()),
                ValueType::Bool => a
                    .iter()
                    .map(|v| match v {
                        Value::Bool(b) => Some(b as u64),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            },
            _ => None,
        }
    }
}

fn bad(key: String, reason: impl Into<String>) -> Finding {
    Finding::new(key, reason)
}

/// Checks the hyperparameters of a file of architecture `arch`.
pub(crate) fn check(file: &Gguf, arch: &str) -> Result<(), Finding> {
    if !ARCHITECTURES.contains(&arch) {
        return Err(Finding::new(
            "general.architecture",
            format!(
                "architecture '{arch}' is not one this crate validates ({}); \
                 ModelParams::skip_model_checks loads it unchecked",
                ARCHITECTURES.join(", ")
            ),
        ));
    }
    let k = Keys { file, arch };

    // Layers first: llama.cpp asserts on them before reading the arrays.
    let Some(n_layer) = k.u32("block_count") else {
        return Ok(()); // missing or mistyped: llama.cpp refuses the file
    };
    if !(1..=MAX_LAYERS).contains(&n_layer) {
        return Err(bad(
            k.key("block_count"),
            format!("{n_layer} layers (1 to {MAX_LAYERS})"),
        ));
    }
    let n_layer = n_layer as usize;
    if let Some(n) = k.u32("nextn_predict_layers").filter(|&n| n != 0) {
        // The llama graph has no next-token-prediction layers; llama.cpp
        // asserts n <= n_layer and fails at decode when they are all.
        return Err(bad(
            k.key("nextn_predict_layers"),
            format!("{n} (the llama architecture has none)"),
        ));
    }
    if let Some(n) = k.u32("context_length").filter(|&n| n > MAX_CONTEXT) {
        return Err(bad(
            k.key("context_length"),
            format!("{n} (at most {MAX_CONTEXT})"),
        ));
    }

    check_experts(&k, n_layer)?;

    if let Some(Value::String(s)) = file.value(&k.key("rope.scaling.type")) {
        let s = s.split('\0').next().unwrap_or("");
        if !ROPE_SCALING.contains(&s) {
            return Err(bad(
                k.key("rope.scaling.type"),
                format!("'{s}' (llama.cpp knows {})", ROPE_SCALING.join(", ")),
            ));
        }
    }

    let n_embd = k.u32("embedding_length");
    if let Some(e) = n_embd {
        if !(1..=MAX_EMBD).contains(&e) {
            return Err(bad(
                k.key("embedding_length"),
                format!("{e} (1 to {MAX_EMBD})"),
            ));
        }
    }
    if let (Some(out), Some(e)) = (k.u32("embedding_length_out"), n_embd) {
        if out != 0 && out != e {
            // Embeddings are read n_embd_out wide from an n_embd-wide output.
            return Err(bad(
                k.key("embedding_length_out"),
                format!("{out}, not 0 or embedding_length ({e})"),
            ));
        }
    }

    let heads = k.per_layer("attention.head_count", n_layer);
    let heads_kv = k
        .per_layer("attention.head_count_kv", n_layer)
        .or_else(|| heads.clone());
    let ff = k.per_layer("feed_forward_length", n_layer);
    for (suffix, values) in [
        ("attention.head_count", &heads),
        ("attention.head_count_kv", &heads_kv),
        ("feed_forward_length", &ff),
    ] {
        let Some(values) = values else { continue };
        // llama.cpp builds every layer with layer 0's sizes (and sizes the
        // KV cache per layer): layers must agree.
        if values.iter().any(|&v| v != values[0]) {
            return Err(bad(
                k.key(suffix),
                format!("differs between layers: {values:?}"),
            ));
        }
        if values[0] == 0 {
            return Err(bad(k.key(suffix), "0"));
        }
    }
    if let (Some(h), Some(hkv)) = (&heads, &heads_kv) {
        let (h, hkv) = (h[0], hkv[0]);
        if h > MAX_HEADS || h % hkv != 0 {
            return Err(bad(
                k.key("attention.head_count_kv"),
                format!(
                    "{hkv} KV heads for {h} heads (a divisor is needed; at most {MAX_HEADS} heads)"
                ),
            ));
        }
        if let Some(e) = n_embd {
            let default = e / h;
            let dk = k.u32("attention.key_length").unwrap_or(default);
            let dv = k.u32("attention.value_length").unwrap_or(default);
            if dk != dv {
                return Err(bad(
                    k.key("attention.key_length"),
                    format!("{dk}, value_length {dv} (the llama graph asserts they are equal)"),
                ));
            }
            if dk == 0 || dk % 2 != 0 || dk > MAX_HEAD_DIM {
                return Err(bad(
                    k.key("attention.key_length"),
                    format!(
                        "a head dimension of {dk} (even, 2 to {MAX_HEAD_DIM}: RoPE rotates pairs)"
                    ),
                ));
            }
        }
    }

    if let Some(eps) = k.f32("attention.layer_norm_rms_epsilon") {
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(bad(
                k.key("attention.layer_norm_rms_epsilon"),
                format!("{eps} (finite and not negative)"),
            ));
        }
    }
    for suffix in [
        "rope.freq_base",
        "rope.scaling.factor",
        "rope.scale_linear",
        "rope.scaling.attn_factor",
    ] {
        if let Some(v) = k.f32(suffix) {
            // Not a crash in llama.cpp, but NaN logits, which its samplers
            // sort (undefined behaviour with NaN).
            if !v.is_finite() || v < 0.0 {
                return Err(bad(k.key(suffix), format!("{v} (finite and not negative)")));
            }
        }
    }

    if let Some(p) = k.u32("pooling_type") {
        // 4 (rank) needs a classifier head, which llama models lack.
        if p > 3 && p != u32::MAX as u64 {
            return Err(bad(k.key("pooling_type"), format!("{p} (0 to 3, or -1)")));
        }
    }
    if let (Some(Value::Array(labels)), Some(e)) =
        (file.value(&k.key("classifier.output_labels")), n_embd)
    {
        if labels.len() as u64 > e {
            // Scores are read n_labels wide from an n_embd-wide output.
            return Err(bad(
                k.key("classifier.output_labels"),
                format!("{} labels for an embedding of {e}", labels.len()),
            ));
        }
    }
    Ok(())
}

/// Experts (mixture of experts): llama.cpp asserts their counts at load,
/// and its graph takes layer 0's count of used experts for every layer.
fn check_experts(k: &Keys<'_>, n_layer: usize) -> Result<(), Finding> {
    let n_expert = k.u32("expert_count").unwrap_or(0);
    if n_expert > MAX_EXPERTS {
        return Err(bad(
            k.key("expert_count"),
            format!("{n_expert} (at most {MAX_EXPERTS})"),
        ));
    }
    let used = k
        .per_layer("expert_used_count", n_layer)
        .unwrap_or_else(|| vec![0; n_layer]);
    let groups = k.u32("expert_group_count").unwrap_or(0);
    let groups_used = k.u32("expert_group_used_count").unwrap_or(0);
    if n_expert == 0 {
        if used.iter().any(|&u| u != 0) {
            return Err(bad(
                k.key("expert_used_count"),
                format!("{used:?} without experts"),
            ));
        }
        if groups != 0 {
            return Err(bad(
                k.key("expert_group_count"),
                format!("{groups} without experts"),
            ));
        }
        return Ok(());
    }
    let u = used[0];
    if used.iter().any(|&x| x != u) || !(1..=n_expert).contains(&u) {
        return Err(bad(
            k.key("expert_used_count"),
            format!("{used:?} (the same for every layer, 1 to expert_count = {n_expert})"),
        ));
    }
    // The graph's nodes per layer grow with the experts used; the context
    // sizes its graph from the tensor count (`max(1024, 8 n_tensors)`).
    let budget = (8 * k.file.tensor_count() as u64).max(1024);
    if 30 + n_layer as u64 * (50 + 2 * u) > budget {
        return Err(bad(
            k.key("expert_used_count"),
            format!("{u} experts used in each of {n_layer} layers: more graph nodes than llama.cpp makes room for"),
        ));
    }
    if groups >= n_expert
        || (groups > 1 && (n_expert % groups != 0 || groups_used == 0 || groups_used >= groups))
    {
        return Err(bad(
            k.key("expert_group_count"),
            format!("{groups} groups ({groups_used} used) of {n_expert} experts"),
        ));
    }
    Ok(())
}
