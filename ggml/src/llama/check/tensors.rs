//! Tensor types against the kernels their roles reach.
//!
//! llama.cpp picks a tensor's buffer by asking the backend whether it
//! supports the op the tensor takes part in, but the CPU backend says yes
//! to nearly every type: a weight stored as I32 loads, then the matrix
//! product calls the CPU's missing dot product (a NULL function) at the
//! first decode; an I8 embedding aborts in `get_rows`; an F16 norm weight
//! aborts in the element-wise multiply. The CPU is every model's fallback,
//! so its kernels decide.

use super::Finding;
use crate::gguf::{Gguf, TensorInfo, Value};
use crate::Type;

/// Whether the CPU has a matrix product (and `get_rows`) for weights of
/// `ty`: the float types and the quantized types with a dot product (not
/// Q8_1 and Q8_K, which are only intermediate types of products).
pub(crate) fn is_matrix_type(ty: Type) -> bool {
    ty.is_float() || (ty.is_quantized() && !matches!(ty, Type::Q8_1 | Type::Q8_K))
}

/// Whether `t` is a vector (one dimension in use): a norm weight, a bias, a
/// RoPE frequency table.
fn is_vector(t: &TensorInfo<'_>) -> bool {
    t.ne()[1..].iter().all(|&n| n == 1)
}

fn type_finding(t: &TensorInfo<'_>, role: &str, allowed: &str) -> Finding {
    Finding::new(
        t.name(),
        format!(
            "a {role} of type {} (the CPU kernels take {allowed})",
            t.ty().name()
        ),
    )
}

/// Checks every tensor of a model of architecture `arch` (one of
/// [`super::ARCHITECTURES`], whose tensors are all float or quantized).
///
/// With `mmap`, llama.cpp hands the CPU backend pointers into the mapped
/// file, which it asserts are 32-byte aligned: every tensor's data must be.
pub(crate) fn check(file: &Gguf, _arch: &str, mmap: bool) -> Result<(), Finding> {
    for t in file.tensors() {
        if t.ne().iter().any(|&n| n < 1) {
            // A zero-width weight counts as transposed to ggml's matrix
            // product, which asserts while llama.cpp picks its buffer.
            return Err(Finding::new(
                t.name(),
                format!("an empty tensor (shape {:?})", t.shape()),
            ));
        }
        if mmap && t.offset() % MMAP_ALIGNMENT != 0 {
            return Err(Finding::new(
                t.name(),
                format!(
                    "data at byte {} of the file, not {MMAP_ALIGNMENT}-byte aligned as a memory-mapped load needs \
                     (general.alignment {}); load it without mmap",
                    t.offset(),
                    file.alignment()
                ),
            ));
        }
        if is_vector(&t) {
            // Added or multiplied into f32 activations, or (RoPE
            // frequencies) read by the rope kernel as f32.
            if t.ty() != Type::F32 {
                return Err(type_finding(&t, "vector (norm, bias, frequencies)", "f32"));
            }
        } else if !is_matrix_type(t.ty()) {
            return Err(type_finding(
                &t,
                "matrix (multiplied or looked up by row)",
                "f32, f16, bf16 and the quantized types but q8_1 and q8_K",
            ));
        }
    }
    check_nvfp4(file)
}

/// The CPU backend's alignment of host memory it computes in.
const MMAP_ALIGNMENT: usize = 32;

fn is_type(file: &Gguf, name: &str, ty: Type) -> bool {
    file.tensor(name).is_ok_and(|t| t.ty() == ty)
}

fn has(file: &Gguf, name: &str) -> bool {
    file.tensor(name).is_ok()
}

/// NVFP4 weights carry extra scale tensors, which llama.cpp's loader and
/// graph code assert against in two combinations.
fn check_nvfp4(file: &Gguf) -> Result<(), Finding> {
    if is_type(file, "token_embd.weight", Type::NVFP4)
        && !has(file, "output.weight")
        && (has(file, "output.scale") || has(file, "output.input_scale"))
    {
        return Err(Finding::new(
            "output.scale",
            "scales of an output tied to an NVFP4 token embedding (llama.cpp asserts)",
        ));
    }
    for t in file.tensors() {
        if let Some(base) = nvfp4_ffn_with_scale(file, t.name()) {
            if has(file, &format!("{base}.bias")) {
                return Err(Finding::new(
                    t.name(),
                    "an NVFP4 feed-forward weight with both a bias and a scale (llama.cpp asserts)",
                ));
            }
        }
    }
    Ok(())
}

/// For a dense feed-forward weight stored as NVFP4 with a `.scale`, the
/// name without `.weight`: llama.cpp's graph asserts when such a weight
/// also has a bias, or a LoRA adapter.
pub(crate) fn nvfp4_ffn_with_scale<'a>(file: &Gguf, name: &'a str) -> Option<&'a str> {
    let base = name.strip_suffix(".weight")?;
    let is_ffn = ["ffn_up", "ffn_gate", "ffn_down"]
        .iter()
        .any(|f| base.ends_with(&format!(".{f}")));
    (is_ffn && is_type(file, name, Type::NVFP4) && has(file, &format!("{base}.scale")))
        .then_some(base)
}

/// The string value of `key`, if it has one of another type: llama.cpp's
/// adapter loader reads these with ggml's getters, which abort on a type
/// mismatch.
fn check_type(file: &Gguf, key: &str, want: crate::gguf::ValueType) -> Result<(), Finding> {
    match file.value(key) {
        Some(v) if v.value_type() != want => Err(Finding::new(
            key,
            format!("a {} (llama.cpp reads it as {want})", v.value_type()),
        )),
        _ => Ok(()),
    }
}

/// Checks a LoRA adapter for `model`: the keys llama.cpp reads without
/// checking their type, and its tensors as the model's matrices (the
/// adapter's low-rank factors are multiplied in).
pub(crate) fn check_lora(file: &Gguf, model: &super::super::Model) -> Result<(), Finding> {
    use crate::gguf::ValueType;
    for key in ["general.type", "general.architecture", "adapter.type"] {
        check_type(file, key, ValueType::String)?;
    }
    check_type(file, "adapter.lora.alpha", ValueType::F32)?;
    if let Some(Value::Array(a)) = file.value("adapter.alora.invocation_tokens") {
        if a.elem_type() != ValueType::U32 {
            return Ok(()); // llama.cpp refuses it
        }
    }
    for t in file.tensors() {
        let target = t
            .name()
            .strip_suffix(".lora_a")
            .or_else(|| t.name().strip_suffix(".lora_b"));
        if let Some(target) = target.and_then(|n| n.strip_suffix(".weight")) {
            if model.lora_refused(target) {
                return Err(Finding::new(
                    t.name(),
                    "an adapter of an NVFP4 feed-forward weight with a scale (llama.cpp asserts)",
                ));
            }
        }
        if !is_matrix_type(t.ty()) {
            return Err(type_finding(
                &t,
                "LoRA factor",
                "f32, f16, bf16 and the quantized types but q8_1 and q8_K",
            ));
        }
    }
    Ok(())
}
