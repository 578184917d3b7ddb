//! Matrix products: `mul_mat`, `mul_mat_id` (mixtures of experts),
//! `out_prod`, and `solve_tri` (triangular solves).

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::{Decl, Family, Rules, BASE};
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

/// The matrix products' declarations.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
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
    },
    Decl {
        name: "mul_mat_id",
        family: Family::MatMul,
        builders: &["ggml_mul_mat_id"],
        op: ggml_sys::GGML_OP_MUL_MAT_ID,
        arity: 3,
        cpu: cpu_mul_mat_id,
        build: |_, t, _| t[0].mul_mat_id(t[1], t[2]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_mul_mat_id(ctx, t[0], t[1], t[2]) },
        ..BASE
    },
    Decl {
        name: "solve_tri",
        family: Family::MatMul,
        builders: &["ggml_solve_tri"],
        op: ggml_sys::GGML_OP_SOLVE_TRI,
        arity: 2,
        cpu: cpu_solve_tri,
        build: |_, t, _| t[0].solve_tri(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_solve_tri(ctx, t[0], t[1], true, true, false) },
        ..BASE
    },
    Decl {
        name: "out_prod",
        family: Family::MatMul,
        builders: &["ggml_out_prod"],
        op: ggml_sys::GGML_OP_OUT_PROD,
        arity: 2,
        cpu: cpu_out_prod,
        build: |_, t, _| t[0].out_prod(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_out_prod(ctx, t[0], t[1]) },
        ..BASE
    },
];

/// The CPU's `mul_mat_id`: experts of a type with a dot product, dense
/// rows, f32 inputs, an f32 result.
fn cpu_mul_mat_id(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b, ids] = crate::ops::sources::<3>(node)?;
    if !(a.ty().is_float() || a.ty().is_quantized()) || !crate::ops::cpu_has_vec_dot(a.ty()) {
        return Err("the CPU has no dot product for the experts' type");
    }
    if b.ty() != Type::F32 || ids.ty() != Type::I32 || node.ty() != Type::F32 {
        return Err("f32 inputs, i32 expert ids, an f32 result");
    }
    if a.is_transposed() || !a.rows_are_dense() || !b.rows_are_dense() || !node.is_contiguous() {
        return Err("dense rows, experts not transposed, a contiguous result");
    }
    if !crate::ops::fits_int(a.ne()[0]) {
        return Err("the CPU's dot products count in int");
    }
    Ok(())
}

/// The CPU's `solve_tri`: contiguous f32 operands and result of the op's
/// shapes.
fn cpu_solve_tri(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    let (na, nb) = (a.ne(), b.ne());
    if a.ty() != Type::F32 || b.ty() != Type::F32 || node.ty() != Type::F32 {
        return Err("the CPU solves f32");
    }
    if !a.is_contiguous() || !b.is_contiguous() || !node.is_contiguous() || node.ne() != nb {
        return Err("contiguous operands and result");
    }
    if na[0] != na[1] || na[1] != nb[1] || na[2] != nb[2] || na[3] != nb[3] {
        return Err("a square [n, n] and b [k, n] of one batch");
    }
    Ok(())
}

/// The CPU's `out_prod`: f32 `a` (with broadcasting), or f16 and quantized
/// `a` of `b`'s batches; f32 `b`; an f32 result; dense rows.
fn cpu_out_prod(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    let ta = a.ty();
    let same_batches = a.ne()[2] == b.ne()[2] && a.ne()[3] == b.ne()[3];
    let kernel = ta == Type::F32
        || ((ta == Type::F16
            || (ta.is_quantized()
                && ta.can_dequantize()
                && !matches!(ta, Type::Q8_1 | Type::Q8_K)))
            && same_batches);
    if !kernel || b.ty() != Type::F32 || node.ty() != Type::F32 {
        return Err(
            "the CPU multiplies f32 (or f16 and quantized of equal batches) by f32 into f32",
        );
    }
    if !a.rows_are_dense() || !node.rows_are_dense() {
        return Err("dense rows");
    }
    Ok(())
}

impl<'ctx> Tensor<'ctx> {
    /// Mixture-of-experts products: this tensor holds the experts'
    /// matrices `[k, m, n_expert]`, `b` the inputs `[k, b1, n_tokens]`,
    /// `ids` (i32 `[n_used, n_tokens]`) which experts each token uses; the
    /// f32 result `[m, n_used, n_tokens]` has, for used expert `e` of token
    /// `t`, expert `ids[e, t]`'s product with input row `e % b1` of token
    /// `t`. The expert ids are checked before every computation (in
    /// `0..n_expert`, a graph input: see [`crate::ops::contents`]).
    ///
    /// # Errors
    /// [`Error::Op`] when the shapes or the ids' type do not fit, or this
    /// tensor is transposed; [`Error::OutOfMemory`].
    pub fn mul_mat_id(self, b: Tensor<'ctx>, ids: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, b, ids];
        let rules = Rules::new("mul_mat_id", &operands)?;
        let (na, nb, ni) = (self.ne(), b.ne(), ids.ne());
        rules.require(!self.is_transposed(), || {
            "the experts must not be transposed".into()
        })?;
        rules.require(ids.ty() == Type::I32, || {
            "the expert ids must be i32".into()
        })?;
        rules.require(
            na[3] == 1
                && nb[3] == 1
                && ni[2] == 1
                && ni[3] == 1
                && ni[1] == nb[2]
                && na[0] == nb[0],
            || "experts [k, m, n], inputs [k, b1, tokens], ids [used, tokens]".into(),
        )?;
        rules.require(nb[1] >= 1 && ni[0] % nb[1] == 0, || {
            "the inputs' ne[1] must divide the used count".into()
        })?;
        rules.reserve_result(Type::F32, &[na[1], ni[0], nb[2], 1], None)?;
        // SAFETY: live tensors meeting ggml_mul_mat_id's assertions; room
        // reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_mul_mat_id(
                rules.context().as_ptr(),
                self.as_ptr(),
                b.as_ptr(),
                ids.as_ptr(),
            )
        })
    }

    /// Solves `A · X = B` for `X`, this tensor being the lower triangular
    /// `A` (f32 `[n, n]`, its diagonal not zero: a zero gives infinities)
    /// and `b` the right-hand sides (f32 `[k, n]`: `k` columns of `n` rows,
    /// in ggml's order), batched over dimensions 2 and 3.
    ///
    /// # Errors
    /// [`Error::Op`] for types, shapes or layouts that do not fit;
    /// [`Error::OutOfMemory`].
    pub fn solve_tri(self, b: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, b];
        let rules = Rules::new("solve_tri", &operands)?;
        let (na, nb) = (self.ne(), b.ne());
        rules.require(self.ty() == Type::F32 && b.ty() == Type::F32, || {
            "f32 operands".into()
        })?;
        rules.require(
            na[0] == na[1] && na[1] == nb[1] && na[2] == nb[2] && na[3] == nb[3],
            || "a square [n, n] and b [k, n] of one batch".into(),
        )?;
        rules.require(self.is_contiguous() && b.is_contiguous(), || {
            "contiguous operands".into()
        })?;
        rules.reserve_result(Type::F32, &nb, None)?;
        // SAFETY: live contiguous f32 tensors meeting ggml_solve_tri's
        // assertions (the lower, left, non-unit variant it supports); room
        // reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_solve_tri(
                rules.context().as_ptr(),
                self.as_ptr(),
                b.as_ptr(),
                true,
                true,
                false,
            )
        })
    }

    /// The outer product of this tensor (`a`, `[m, n]`) and `b` (`[p, n]`):
    /// the f32 `[m, p]` matrix `Σ_i a[i] ⊗ b[i]` over the `n` rows (batches
    /// of `b` multiples of `a`'s).
    ///
    /// # Errors
    /// [`Error::Op`] when the shapes do not fit or `a` is transposed;
    /// [`Error::OutOfMemory`].
    pub fn out_prod(self, b: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, b];
        let rules = Rules::new("out_prod", &operands)?;
        let (na, nb) = (self.ne(), b.ne());
        rules.require(
            na[1] == nb[1] && na[2] >= 1 && na[3] >= 1 && nb[2] % na[2] == 0 && nb[3] % na[3] == 0,
            || "a and b need one row count, b's batches multiples of a's".into(),
        )?;
        rules.require(!self.is_transposed(), || "a must not be transposed".into())?;
        rules.reserve_result(Type::F32, &[na[0], nb[0], nb[2], nb[3]], None)?;
        // SAFETY: live tensors meeting ggml_out_prod's assertions; room
        // reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_out_prod(rules.context().as_ptr(), self.as_ptr(), b.as_ptr())
        })
    }

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
