//! Graph operations. Each builds a new tensor in the context (no computation
//! happens until the graph is computed) after checking in Rust everything ggml
//! would stop the process for with `GGML_ASSERT`.
//!
//! - [`arith`], element-wise `add`, `sub`, `mul`, `div` with broadcasting, `scale`;
//! - [`matmul`], `mul_mat`;
//! - [`layout`], `view`, `reshape`, `permute`, `transpose`, `cont`, `cpy`.

pub mod arith;
pub mod layout;
pub mod matmul;

use crate::context::Context;
use crate::error::Result;
use crate::shape;
use crate::tensor::Tensor;
use crate::types::Type;

/// The ndarray shape of `ne` with every axis shown (for error messages).
pub(crate) fn full_shape(ne: &[i64; shape::MAX_DIMS]) -> Vec<usize> {
    shape::shape_from_ne(ne, shape::n_dims(ne))
}

/// Whether the CPU kernels can quantize rows to `ty` (its CPU traits have a
/// `from_float`), as `cpy` to a quantized tensor and quantized `add` need.
pub(crate) fn cpu_can_quantize_to(ty: Type) -> bool {
    #[cfg(ggml_cpu_backend)]
    {
        // SAFETY: a valid type; the CPU traits table is static.
        unsafe {
            (*ggml_sys::ggml_get_type_traits_cpu(ty.as_raw()))
                .from_float
                .is_some()
        }
    }
    #[cfg(not(ggml_cpu_backend))]
    {
        // The CPU traits of the pinned ggml (the i-quants but IQ4_* have none).
        ty.is_quantized()
            && !matches!(
                ty,
                Type::Q8_1
                    | Type::Q8_K
                    | Type::IQ2_XXS
                    | Type::IQ2_XS
                    | Type::IQ3_XXS
                    | Type::IQ1_S
                    | Type::IQ3_S
                    | Type::IQ2_S
                    | Type::IQ1_M
            )
    }
}

/// Whether the CPU kernels have a dot product for `ty` (as `mul_mat` needs).
pub(crate) fn cpu_has_vec_dot(ty: Type) -> bool {
    #[cfg(ggml_cpu_backend)]
    {
        // SAFETY: a valid type; the CPU traits table is static.
        unsafe {
            (*ggml_sys::ggml_get_type_traits_cpu(ty.as_raw()))
                .vec_dot
                .is_some()
        }
    }
    #[cfg(not(ggml_cpu_backend))]
    {
        ty.is_float() || (ty.is_quantized() && !matches!(ty, Type::Q8_1 | Type::Q8_K))
    }
}

impl Context {
    /// Checks that every operand belongs to this context.
    pub(crate) fn owns_all(&self, tensors: &[&Tensor<'_>]) -> Result<()> {
        tensors.iter().try_for_each(|t| self.owns(t, "an operand"))
    }

    /// Room for a result tensor of `ty` and `ne` (data too unless no_alloc).
    pub(crate) fn reserve_result(
        &self,
        op: &'static str,
        ty: Type,
        ne: &[i64; shape::MAX_DIMS],
    ) -> Result<()> {
        let overhead = self.tensor_overhead();
        let data = if self.is_no_alloc() {
            0
        } else {
            let rows: i64 = ne[1..].iter().product();
            rows as usize * ty.row_size(ne[0] as usize)
        };
        self.reserve(overhead + data, || {
            format!("the result of {op} ({ty}, ne {ne:?})")
        })
    }

    /// Room for a view (metadata only).
    pub(crate) fn reserve_view(&self, op: &'static str) -> Result<()> {
        let overhead = self.tensor_overhead();
        self.reserve(overhead, || format!("the result of {op}"))
    }

    /// Wraps the tensor an op returned.
    pub(crate) fn wrap(&self, raw: *mut ggml_sys::ggml_tensor) -> Result<Tensor<'_>> {
        Tensor::from_raw(self, raw)
    }
}
