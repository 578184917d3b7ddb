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
pub(crate) fn check(file: &Gguf, _arch: &str) -> Result<(), Finding> {
    for t in file.tensors() {
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
    Ok(())
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
pub(crate) fn check_lora(file: &Gguf, _model: &super::super::Model) -> Result<(), Finding> {
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
