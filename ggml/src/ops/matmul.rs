//! Matrix products.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::types::Type;

impl Context {
    /// ggml's matrix product: for `a` with `ne = [k, m, ..]` and `b` with
    /// `ne = [k, n, ..]`, an f32 result with `ne = [m, n, ..]` where
    /// `result[j][i] = Σ_k a[i][k] · b[j][k]` (ndarray indexing: rows of the
    /// result are rows of `b`). In ndarray terms, for 2-D `a: [m, k]` and
    /// `b: [n, k]`, the result is `b · aᵀ`, shape `[n, m]`. Batches (the
    /// 3rd and 4th ggml dimensions) of `b` must be multiples of `a`'s and are
    /// broadcast.
    ///
    /// `a` may be f32, f16, bf16 or quantized; `b` is f32 (or the same float
    /// type as `a`). Both need dense rows, and `a` must not be transposed.
    ///
    /// # Errors
    /// [`Error::MatMulShape`], [`Error::UnsupportedTypes`],
    /// [`Error::NotContiguous`], [`Error::OutOfMemory`].
    pub fn mul_mat<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns_all(&[&a, &b])?;
        let (ta, tb) = (a.ty(), b.ty());
        let a_ok = (ta.is_float() || ta.is_quantized()) && crate::ops::cpu_has_vec_dot(ta);
        let b_ok = tb == Type::F32 || (tb == ta && ta.is_float());
        if !a_ok || !b_ok {
            return Err(Error::UnsupportedTypes {
                op: "mul_mat",
                types: vec![ta, tb],
            });
        }
        let (na, nb) = (a.ne(), b.ne());
        if na[0] != nb[0] || nb[2] % na[2] != 0 || nb[3] % na[3] != 0 {
            return Err(Error::MatMulShape { a: na, b: nb });
        }
        if a.is_transposed() || !a.rows_are_dense() {
            return Err(a.not_contiguous("mul_mat"));
        }
        if !b.rows_are_dense() {
            return Err(b.not_contiguous("mul_mat"));
        }
        let ne = [na[1], nb[1], nb[2], nb[3]];
        self.reserve_result("mul_mat", Type::F32, &ne)?;
        // SAFETY: operands of this context, checked as ggml_can_mul_mat and the
        // CPU kernel require; room reserved.
        self.wrap(unsafe { ggml_sys::ggml_mul_mat(self.as_ptr(), a.as_ptr(), b.as_ptr()) })
    }
}
