//! Data movement that computes: `cont_4d` (a contiguous copy in a new
//! shape), `dup`, `cast` (a copy converting the type), `repeat` and
//! `repeat_4d` (tiling), `concat`.
//!
//! Rules: results are new contiguous tensors. `cont_4d` keeps the element
//! count; `cast` converts as [`Tensor::cpy`] does (f32/f16/bf16 between each
//! other, f32 ↔ i32, floats to the quantized types the CPU quantizes to,
//! quantized to f32); `repeat` tiles a tensor whose dimensions divide the
//! target's (the CPU tiles 2- and 4-byte types with dense rows); `concat`
//! joins two tensors of one type equal but along `dim`.

use crate::error::Result;
use crate::ops::{layout_cpu_copy, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The declarations. Generic builders: `cont_4d` and `repeat_4d` read ggml's
/// `ne` from `Params::i`; `cast` a type number from `Params::i[0]`;
/// `concat` its dimension from `Params::i[0]`.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "cont_4d",
        family: Family::Layout,
        builders: &[
            "ggml_cont_1d",
            "ggml_cont_2d",
            "ggml_cont_3d",
            "ggml_cont_4d",
        ],
        op: ggml_sys::GGML_OP_CONT,
        arity: 1,
        cpu: layout_cpu_copy,
        backward: true,
        build: |_, t, p| t[0].cont_4d(p.i),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe {
            ggml_sys::ggml_cont_4d(ctx, t[0], p.i[0], p.i[1], p.i[2], p.i[3])
        },
        ..BASE
    },
    Decl {
        name: "dup",
        family: Family::Layout,
        builders: &["ggml_dup"],
        op: ggml_sys::GGML_OP_DUP,
        arity: 1,
        cpu: layout_cpu_copy,
        backward: true,
        build: |_, t, _| t[0].dup(),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_dup(ctx, t[0]) },
        ..BASE
    },
    Decl {
        name: "cast",
        family: Family::Layout,
        builders: &["ggml_cast"],
        op: ggml_sys::GGML_OP_CPY,
        arity: 1,
        cpu: layout_cpu_copy,
        backward: true,
        build: |_, t, p| t[0].cast(Type::ALL[p.i[0].unsigned_abs() as usize % Type::ALL.len()]),
        raw: |_, ctx, t, p| {
            let ty = Type::ALL[p.i[0].unsigned_abs() as usize % Type::ALL.len()];
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { ggml_sys::ggml_cast(ctx, t[0], ty.as_raw()) }
        },
        ..BASE
    },
    Decl {
        name: "repeat",
        family: Family::Layout,
        builders: &["ggml_repeat", "ggml_repeat_4d"],
        op: ggml_sys::GGML_OP_REPEAT,
        arity: 2,
        cpu: cpu_repeat,
        backward: true,
        build: |_, t, _| t[0].repeat(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_repeat(ctx, t[0], t[1]) },
        ..BASE
    },
    Decl {
        name: "concat",
        family: Family::Layout,
        builders: &["ggml_concat"],
        op: ggml_sys::GGML_OP_CONCAT,
        arity: 2,
        cpu: cpu_concat,
        build: |_, t, p| t[0].concat(t[1], p.i[0].clamp(-1, 9) as usize),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe { ggml_sys::ggml_concat(ctx, t[0], t[1], p.i[0] as i32) },
        ..BASE
    },
];

/// Whether `a` tiles to `ne` (`ggml_can_repeat`): an empty `a` only to an
/// empty target, else each dimension divides.
fn can_repeat(a: &[i64; 4], ne: &[i64; 4]) -> bool {
    if a.contains(&0) {
        return ne.contains(&0);
    }
    a.iter().zip(ne).all(|(&x, &y)| y >= 0 && y % x == 0)
}

impl<'ctx> Tensor<'ctx> {
    /// A contiguous copy of this tensor with ggml's shape `ne` (the same
    /// element count), as `ggml_cont_4d` (and `_1d` to `_3d` with trailing
    /// 1s).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when the element counts differ;
    /// [`Error::BlockSize`](crate::Error::BlockSize) for quantized rows of
    /// partial blocks; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn cont_4d(self, ne: [i64; 4]) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("cont_4d", &operands)?;
        let count = ne.iter().try_fold(
            1i64,
            |acc, &n| if n < 0 { None } else { acc.checked_mul(n) },
        );
        rules.require(count == Some(self.len() as i64), || {
            format!("ne {ne:?} must hold the tensor's {} elements", self.len())
        })?;
        rules.reserve_result(self.ty(), &ne, None)?;
        // SAFETY: a live tensor; equal element counts (ggml's assertion),
        // the shape checked for the type; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_cont_4d(
                rules.context().as_ptr(),
                self.as_ptr(),
                ne[0],
                ne[1],
                ne[2],
                ne[3],
            )
        })
    }

    /// A copy of this tensor (`ggml_dup`): a new contiguous tensor of its
    /// type and shape, computed with the graph.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn dup(self) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("dup", &operands)?;
        rules.reserve_result(self.ty(), &self.ne(), None)?;
        // SAFETY: a live tensor; room reserved; the builder asserts nothing.
        rules.wrap(unsafe { ggml_sys::ggml_dup(rules.context().as_ptr(), self.as_ptr()) })
    }

    /// This tensor converted to `ty` (a new tensor; see the module docs for
    /// the conversions the CPU has; f32 to i32 truncates).
    ///
    /// # Errors
    /// [`Error::BlockSize`](crate::Error::BlockSize) when a quantized `ty`
    /// does not divide the row length; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn cast(self, ty: Type) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("cast", &operands)?;
        rules.reserve_result(ty, &self.ne(), None)?;
        // SAFETY: a live tensor; the result's shape checked for `ty`, room
        // reserved; the builder asserts nothing.
        rules.wrap(unsafe {
            ggml_sys::ggml_cast(rules.context().as_ptr(), self.as_ptr(), ty.as_raw())
        })
    }

    /// This tensor tiled to `like`'s shape (each of its dimensions must
    /// divide `like`'s).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when it does not tile;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn repeat(self, like: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, like];
        let rules = Rules::new("repeat", &operands)?;
        rules.require(can_repeat(&self.ne(), &like.ne()), || {
            "each dimension must divide the target's (an empty tensor repeats only to an empty one)".into()
        })?;
        rules.reserve_result(self.ty(), &like.ne(), None)?;
        // SAFETY: live tensors; ggml_can_repeat holds; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_repeat(rules.context().as_ptr(), self.as_ptr(), like.as_ptr())
        })
    }

    /// This tensor tiled to ggml's shape `ne`.
    ///
    /// # Errors
    /// As [`Tensor::repeat`].
    pub fn repeat_4d(self, ne: [i64; 4]) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("repeat", &operands)?;
        // ggml's builder lets an empty tensor through to any shape; its
        // kernel then asserts: the stricter rule here.
        rules.require(can_repeat(&self.ne(), &ne), || {
            format!(
                "each dimension must divide {ne:?} (an empty tensor repeats only to an empty one)"
            )
        })?;
        rules.reserve_result(self.ty(), &ne, None)?;
        // SAFETY: a live tensor; it tiles to `ne`; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_repeat_4d(
                rules.context().as_ptr(),
                self.as_ptr(),
                ne[0],
                ne[1],
                ne[2],
                ne[3],
            )
        })
    }

    /// This tensor and `b` joined along ggml's dimension `dim` (0 to 3):
    /// one type, equal in the other dimensions.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for another `dim`, types or shapes
    /// that differ; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn concat(self, b: Tensor<'ctx>, dim: usize) -> Result<Tensor<'ctx>> {
        let operands = [self, b];
        let rules = Rules::new("concat", &operands)?;
        rules.require(dim < 4, || format!("dim {dim} must be 0 to 3"))?;
        rules.require(self.ty() == b.ty(), || {
            "the operands must have one type".into()
        })?;
        let (na, nb) = (self.ne(), b.ne());
        rules.require((0..4).all(|d| d == dim || na[d] == nb[d]), || {
            format!("the operands must be equal but along dimension {dim}")
        })?;
        let mut ne = na;
        ne[dim] = na[dim]
            .checked_add(nb[dim])
            .ok_or_else(|| rules.broken("the joined dimension overflows".into()))?;
        rules.reserve_result(self.ty(), &ne, None)?;
        // SAFETY: live tensors of one type, equal but along `dim` < 4;
        // room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_concat(
                rules.context().as_ptr(),
                self.as_ptr(),
                b.as_ptr(),
                dim as i32,
            )
        })
    }
}

/// The CPU's `repeat`: 2- and 4-byte plain types (f32, i32, f16, bf16,
/// i16), dense rows, the result tiled from the operand.
fn cpu_repeat(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if !matches!(
        a.ty(),
        Type::F32 | Type::I32 | Type::F16 | Type::BF16 | Type::I16
    ) || node.ty() != a.ty()
    {
        return Err("the CPU repeats f32, i32, f16, bf16 and i16");
    }
    if !a.rows_are_dense() || !node.rows_are_dense() || !can_repeat(&a.ne(), &node.ne()) {
        return Err("dense rows, and the operand tiling the result");
    }
    Ok(())
}

/// The CPU's `concat`: plain types at any strides; other types (quantized,
/// i64, f64) by whole rows: dense rows of whole blocks.
fn cpu_concat(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    let dim = node.op_params()[0];
    if a.ty() != b.ty() || node.ty() != a.ty() || !(0..4).contains(&dim) {
        return Err("one type throughout and a dimension 0 to 3");
    }
    let plain = matches!(
        a.ty(),
        Type::F32 | Type::I32 | Type::F16 | Type::BF16 | Type::I16 | Type::I8
    );
    if !plain {
        let block = a.ty().block_size() as i64;
        let whole = |t: &Tensor<'_>| t.rows_are_dense() && t.ne()[0] % block == 0;
        if !whole(&a) || !whole(&b) || !node.rows_are_dense() {
            return Err("the CPU joins other types by whole rows: dense rows of whole blocks");
        }
    }
    Ok(())
}
