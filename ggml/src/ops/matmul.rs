//! Matrix products.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::{Decl, Family, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// CPU kernel of `mul_mat` (`ggml_compute_forward_mul_mat`): `src0` of a type
/// with a dot product, `src1` f32 (converted to the dot product's type) or of
/// that type itself, dense elements along rows of both, `src0` not transposed.
fn cpu_mul_mat(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    let (ta, tb) = (a.ty(), b.ty());
    if !(ta.is_float() || ta.is_quantized()) || !crate::ops::cpu_has_vec_dot(ta) {
        return Err("the CPU has no dot product for the left operand's type");
    }
    if !(tb == Type::F32 || (tb == ta && ta.is_float())) {
        return Err("the right operand must be f32 (or the left's float type)");
    }
    if node.ty() != Type::F32 || !node.rows_are_dense() {
        return Err("the result must be dense f32");
    }
    if a.is_transposed() || !a.rows_are_dense() {
        return Err("the left operand's rows must be dense and not transposed");
    }
    if !b.rows_are_dense() {
        return Err("the right operand's rows must be dense");
    }
    if !crate::ops::fits_int(a.ne()[0]) {
        return Err("the CPU's dot products count in int: at most i32::MAX values a row");
    }
    Ok(())
}

/// `mul_mat`'s declaration.
pub(crate) const DECLS: &[Decl] = &[Decl {
    name: "mul_mat",
    family: Family::MatMul,
    builders: &["ggml_mul_mat"],
    op: ggml_sys::GGML_OP_MUL_MAT,
    arity: 2,
    cpu: cpu_mul_mat,
    backward: true,
    build: |_, t, _| t[0].mul_mat(t[1]),
    // SAFETY: none (the fuzzer's raw direction).
    raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_mul_mat(ctx, t[0], t[1]) },
    ..BASE
}];

impl<'ctx> Tensor<'ctx> {
    /// ggml's matrix product of this tensor (`a`) and `b`: see
    /// [`Context::mul_mat`] for the shapes (`[k, m] × [k, n] → [m, n]` in
    /// ggml's order).
    ///
    /// # Errors
    /// As [`Context::mul_mat`].
    pub fn mul_mat(self, b: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        self.context().mul_mat(self, b)
    }
}

impl Context {
    /// ggml's matrix product: for `a` with `ne = [k, m, ..]` and `b` with
    /// `ne = [k, n, ..]`, an f32 result with `ne = [m, n, ..]` where
    /// `result[j][i] = Σ_k a[i][k] · b[j][k]` (ndarray indexing: rows of the
    /// result are rows of `b`). In ndarray terms, for 2-D `a: [m, k]` and
    /// `b: [n, k]`, the result is `b · aᵀ`, shape `[n, m]`. Batches (the
    /// 3rd and 4th ggml dimensions) of `b` must be multiples of `a`'s and are
    /// broadcast. An inner dimension `k` of 0 gives zeros (a new tensor, no
    /// computation).
    ///
    /// On the CPU `a` may be f32, f16, bf16 or quantized and `b` f32 (or the
    /// same float type as `a`), both with dense rows; others are refused when
    /// computed ([`Error::UnsupportedNode`]). `a` must not be transposed.
    ///
    /// # Errors
    /// [`Error::MatMulShape`] (also for a batch dimension of 0 in `a`, which
    /// ggml divides by), [`Error::NotContiguous`] for a transposed `a`,
    /// [`Error::TooLarge`], [`Error::OutOfMemory`], [`Error::WrongContext`].
    pub fn mul_mat<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns_all(&[&a, &b])?;
        let (na, nb) = (a.ne(), b.ne());
        // ggml_can_mul_mat: b's batches modulo a's (so a's must not be 0).
        if na[0] != nb[0] || na[2] == 0 || na[3] == 0 || nb[2] % na[2] != 0 || nb[3] % na[3] != 0 {
            return Err(Error::MatMulShape { a: na, b: nb });
        }
        let ne = [na[1], nb[1], nb[2], nb[3]];
        if na[0] == 0 {
            // Sums of nothing: a fresh tensor, which reads as zeros. (ggml
            // cannot build it: an empty `a` has `nb[1] = 0 < nb[0]` and counts
            // as transposed.)
            return self.new_tensor_ne("mul_mat", Type::F32, &ne);
        }
        if a.is_transposed() {
            return Err(a.not_contiguous("mul_mat"));
        }
        self.reserve_tensor("mul_mat", Type::F32, &ne)?;
        // SAFETY: operands of this context, checked as ggml_mul_mat asserts
        // (ggml_can_mul_mat without a division by zero, a not transposed);
        // the result's shape checked and its room reserved.
        self.wrap(unsafe { ggml_sys::ggml_mul_mat(self.as_ptr(), a.as_ptr(), b.as_ptr()) })
    }
}
