//! Element-wise arithmetic: `add`, `sub`, `mul`, `div` (with broadcasting of the
//! right operand) and `scale`.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::full_shape;
use crate::tensor::Tensor;
use crate::types::Type;

type BinaryFn = unsafe extern "C" fn(
    *mut ggml_sys::ggml_context,
    *mut ggml_sys::ggml_tensor,
    *mut ggml_sys::ggml_tensor,
) -> *mut ggml_sys::ggml_tensor;

/// Whether `b` can be repeated to `a`'s shape (`ggml_can_repeat(b, a)`).
pub(crate) fn can_broadcast(b: &[i64; 4], a: &[i64; 4]) -> bool {
    if a == b {
        return true; // the common case, without four divisions
    }
    let empty = |ne: &[i64; 4]| ne.contains(&0);
    if empty(b) {
        return empty(a);
    }
    a.iter().zip(b).all(|(&x, &y)| x % y == 0)
}

/// Type pairs the CPU's element-wise kernels implement (result has `a`'s type).
fn binary_types_supported(a: Type, b: Type) -> bool {
    matches!(
        (a, b),
        (Type::F32, Type::F32)
            | (Type::F16, Type::F16)
            | (Type::F16, Type::F32)
            | (Type::BF16, Type::BF16)
            | (Type::BF16, Type::F32)
    )
}

impl Context {
    fn binary<'a>(
        &'a self,
        op: &'static str,
        f: BinaryFn,
        a: Tensor<'a>,
        b: Tensor<'a>,
        allow_quantized: bool,
    ) -> Result<Tensor<'a>> {
        self.owns_all(&[&a, &b])?;
        let (ta, tb) = (a.ty(), b.ty());
        let (na, nb) = (a.ne(), b.ne());
        if allow_quantized && ta.is_quantized() {
            // The quantized kernel: a quantized + b f32 of the same shape, dense rows.
            if tb != Type::F32 || !ta.can_dequantize() || !crate::ops::cpu_can_quantize_to(ta) {
                return Err(Error::UnsupportedTypes {
                    op,
                    types: vec![ta, tb],
                });
            }
            if na != nb {
                return Err(Error::ShapeMismatch {
                    op,
                    lhs: full_shape(&na),
                    rhs: full_shape(&nb),
                });
            }
            if !a.rows_are_dense() || a.nb().windows(2).any(|w| w[0] > w[1]) {
                return Err(a.not_contiguous(op));
            }
            if !b.rows_are_dense() {
                return Err(b.not_contiguous(op));
            }
        } else {
            if !binary_types_supported(ta, tb) {
                return Err(Error::UnsupportedTypes {
                    op,
                    types: vec![ta, tb],
                });
            }
            if !can_broadcast(&nb, &na) {
                return Err(Error::NotBroadcastable {
                    op,
                    lhs: full_shape(&na),
                    rhs: full_shape(&nb),
                });
            }
            if !a.rows_are_dense() {
                return Err(a.not_contiguous(op));
            }
        }
        self.reserve_result(op, ta, &na)?;
        // SAFETY: both tensors belong to this live context; shapes and types
        // checked above as ggml and its CPU kernels require; room reserved.
        self.wrap(unsafe { f(self.as_ptr(), a.as_ptr(), b.as_ptr()) })
    }

    /// `a + b`, with `b` broadcast (repeated) to `a`'s shape. The result has
    /// `a`'s type.
    ///
    /// Types: f32+f32, f16+f16, f16+f32, bf16+bf16, bf16+f32, and a quantized
    /// `a` plus an f32 `b` of the same shape (the result is re-quantized).
    ///
    /// # Errors
    /// [`Error::NotBroadcastable`], [`Error::ShapeMismatch`],
    /// [`Error::UnsupportedTypes`], [`Error::NotContiguous`], [`Error::OutOfMemory`].
    pub fn add<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.binary("add", ggml_sys::ggml_add, a, b, true)
    }

    /// `a - b`, with `b` broadcast to `a`'s shape (float types as [`Context::add`],
    /// no quantized operands).
    ///
    /// # Errors
    /// As [`Context::add`].
    pub fn sub<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.binary("sub", ggml_sys::ggml_sub, a, b, false)
    }

    /// `a * b` element-wise, with `b` broadcast to `a`'s shape.
    ///
    /// # Errors
    /// As [`Context::sub`].
    pub fn mul<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.binary("mul", ggml_sys::ggml_mul, a, b, false)
    }

    /// `a / b` element-wise, with `b` broadcast to `a`'s shape.
    ///
    /// # Errors
    /// As [`Context::sub`].
    pub fn div<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.binary("div", ggml_sys::ggml_div, a, b, false)
    }

    /// `a * s` for a contiguous f32 or bf16 tensor.
    ///
    /// # Errors
    /// [`Error::UnsupportedTypes`], [`Error::NotContiguous`], [`Error::OutOfMemory`].
    pub fn scale<'a>(&'a self, a: Tensor<'a>, s: f32) -> Result<Tensor<'a>> {
        self.owns(&a, "an operand")?;
        if !matches!(a.ty(), Type::F32 | Type::BF16) {
            return Err(Error::UnsupportedTypes {
                op: "scale",
                types: vec![a.ty()],
            });
        }
        if !a.is_contiguous() {
            return Err(a.not_contiguous("scale"));
        }
        self.reserve_result("scale", a.ty(), &a.ne())?;
        // SAFETY: a contiguous f32/bf16 tensor of this context; room reserved.
        self.wrap(unsafe { ggml_sys::ggml_scale(self.as_ptr(), a.as_ptr(), s) })
    }
}

#[cfg(test)]
mod tests {
    use super::can_broadcast;

    #[test]
    fn broadcast_rule_is_divisibility() {
        assert!(can_broadcast(&[4, 1, 1, 1], &[4, 3, 1, 1]));
        assert!(can_broadcast(&[2, 1, 1, 1], &[4, 3, 1, 1]));
        assert!(!can_broadcast(&[3, 1, 1, 1], &[4, 3, 1, 1]));
        assert!(!can_broadcast(&[4, 3, 1, 1], &[4, 1, 1, 1]));
    }
}
