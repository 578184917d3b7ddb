//! Row gathers and scatters: `get_rows` (rows of a matrix picked by an index
//! tensor: the embedding lookup of every language model) and `set_rows`
//! (rows written at indices: a KV cache's update).
//!
//! Indices are data: ggml's CPU kernel aborts on one outside the matrix,
//! and no shape rule can see them: they are checked before every
//! computation (see [`super::contents`]).

use crate::error::Result;
use crate::ops::{fits_int, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The declarations.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "get_rows",
        family: Family::Rows,
        builders: &["ggml_get_rows"],
        op: ggml_sys::GGML_OP_GET_ROWS,
        arity: 2,
        cpu: cpu_get_rows,
        backward: true,
        build: |_, t, _| t[0].get_rows(fuzz_indices(t[1], t[0].ne()[2])?),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_get_rows(ctx, t[0], t[1]) },
        ..BASE
    },
    Decl {
        name: "set_rows",
        family: Family::Rows,
        builders: &["ggml_set_rows"],
        op: ggml_sys::GGML_OP_SET_ROWS,
        arity: 3,
        cpu: cpu_set_rows,
        build: |_, t, _| t[0].set_rows(t[1], fuzz_indices(t[2], t[1].ne()[1])?),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_set_rows(ctx, t[0], t[1], t[2]) },
        ..BASE
    },
];

/// The generic builders' indices: `idx` if it is i32, else zeros (a new
/// i32 vector of `n`), so that the fuzzer reaches the content checks and
/// kernels too.
fn fuzz_indices(idx: Tensor<'_>, n: i64) -> Result<Tensor<'_>> {
    if idx.ty() == Type::I32 {
        return Ok(idx);
    }
    idx.context()
        .new_tensor(Type::I32, &[n.clamp(0, 1 << 16) as usize])
}

impl<'ctx> Tensor<'ctx> {
    /// The rows of this tensor that the i32 `indices` pick: for this tensor
    /// with `ne = [n, rows, a2, a3]` and indices with `ne = [k, a2, a3]`,
    /// an f32 result (i32 for an i32 tensor) with `ne = [n, k, a2, a3]`
    /// whose row `(j, i2, i3)` is row `indices[j, i2, i3]` of matrix
    /// `(i2, i3)`. Quantized rows are dequantized.
    ///
    /// The indices are checked before every computation (see the module
    /// docs): they must lie in `0..rows` and be a graph input.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when the shapes do not match or the
    /// indices are not i32; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn get_rows(self, indices: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, indices];
        let rules = Rules::new("get_rows", &operands)?;
        let (na, nb) = (self.ne(), indices.ne());
        rules.require(indices.ty() == Type::I32, || {
            "the indices must be i32".into()
        })?;
        rules.require(na[2] == nb[1] && na[3] == nb[2] && nb[3] == 1, || {
            "the indices' ne[1], ne[2] must be the tensor's ne[2], ne[3] (and their ne[3] 1)".into()
        })?;
        let ty = if self.ty() == Type::I32 {
            Type::I32
        } else {
            Type::F32
        };
        rules.reserve_result(ty, &[na[0], nb[0], nb[1], nb[2]], None)?;
        // SAFETY: live tensors meeting ggml_get_rows' assertions; room for
        // the result reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_get_rows(rules.context().as_ptr(), self.as_ptr(), indices.as_ptr())
        })
    }
}

impl<'ctx> Tensor<'ctx> {
    /// Writes the rows of `rows` into this tensor at `indices` when
    /// computed, and returns this tensor (a view of it) as the node: for
    /// this tensor `ne = [n, r, a2, a3]`, `rows` `ne = [n, k, a2, a3]` (f32
    /// or f16) and i32 or i64 `indices` `ne = [k, i2, i3]` with `i2`, `i3`
    /// dividing `a2`, `a3`, row `j` of matrix `(i2, i3)` of `rows` goes to
    /// row `indices[j, i2 % i2, i3 % i3]`, converted (quantized) to this
    /// tensor's type. Later writes of one index win.
    ///
    /// The indices are checked before every computation as
    /// [`Tensor::get_rows`]' are (in `0..r`, a graph input).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when the shapes or types do not
    /// match, the rows are not dense, or this tensor overlaps itself;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn set_rows(self, rows: Tensor<'ctx>, indices: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, rows, indices];
        let rules = Rules::new("set_rows", &operands)?;
        let (na, nb, nc) = (self.ne(), rows.ne(), indices.ne());
        rules.require(matches!(rows.ty(), Type::F32 | Type::F16), || {
            "the rows must be f32 or f16".into()
        })?;
        rules.require(matches!(indices.ty(), Type::I32 | Type::I64), || {
            "the indices must be i32 or i64".into()
        })?;
        rules.require(
            na[0] == nb[0] && na[2] == nb[2] && na[3] == nb[3] && nb[1] == nc[0] && nc[3] == 1,
            || "rows must match the tensor but in ne[1], one index per row".into(),
        )?;
        rules.require(
            nc[1] >= 1 && nc[2] >= 1 && nb[2] % nc[1] == 0 && nb[3] % nc[2] == 0,
            || "the indices' ne[1], ne[2] must divide the rows' ne[2], ne[3]".into(),
        )?;
        rules.require(
            crate::ops::unary::ggml_rows_dense(&self) && crate::ops::unary::ggml_rows_dense(&rows),
            || "ggml needs dense rows".into(),
        )?;
        rules.reserve_result(self.ty(), &na, Some(&self))?;
        // SAFETY: live tensors meeting ggml_set_rows' assertions; room for
        // the view reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_set_rows(
                rules.context().as_ptr(),
                self.as_ptr(),
                rows.as_ptr(),
                indices.as_ptr(),
            )
        })
    }
}

/// The CPU's `set_rows`: f32 or f16 rows into a tensor of a type the CPU
/// converts f32 to (f32, f16, bf16, the quantized types with a quantizer),
/// dense rows on both sides.
fn cpu_set_rows(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [rows, idx, dst] = crate::ops::sources::<3>(node)?;
    let td = node.ty();
    let converts =
        matches!(td, Type::F32 | Type::F16 | Type::BF16) || crate::ops::cpu_can_quantize_to(td);
    if !matches!(rows.ty(), Type::F32 | Type::F16) || !converts || dst.ty() != td {
        return Err("the CPU writes f32 or f16 rows into f32, f16, bf16 or a type it quantizes to");
    }
    if !matches!(idx.ty(), Type::I32 | Type::I64) {
        return Err("i32 or i64 indices");
    }
    if !rows.rows_are_dense() || !node.rows_are_dense() {
        return Err("the CPU needs dense rows");
    }
    Ok(())
}

/// The CPU's `get_rows` kernels: the row types they have (float types,
/// i32, and the quantized types with a CPU dequantizer), dense rows, an f32
/// (i32) result of the op's shape, at most `i32::MAX` indices.
fn cpu_get_rows(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    let ta = a.ty();
    let kernel = matches!(ta, Type::F32 | Type::I32 | Type::F16 | Type::BF16)
        || (ta.is_quantized() && ta.can_dequantize() && !matches!(ta, Type::Q8_K));
    if !kernel {
        return Err(
            "the CPU gathers rows of f32, f16, bf16, i32 and quantized types with a dequantizer",
        );
    }
    let want = if ta == Type::I32 {
        Type::I32
    } else {
        Type::F32
    };
    let (na, nb) = (a.ne(), b.ne());
    if b.ty() != Type::I32 || node.ty() != want || node.ne() != [na[0], nb[0], nb[1], nb[2]] {
        return Err("i32 indices and an f32 (i32) result of the op's shape");
    }
    if !a.rows_are_dense() || !node.rows_are_dense() {
        return Err("the CPU copies rows of dense values");
    }
    if !fits_int(b.len() as i64) {
        return Err("the CPU counts indices in int: at most i32::MAX");
    }
    Ok(())
}
