//! The backward ops ggml's automatic differentiation builds, for use in
//! hand-written backward passes and training: `silu_back`,
//! `rms_norm_back`, `soft_max_ext_back`, `get_rows_back`, `repeat_back`,
//! `cross_entropy_loss` and its gradient.
//!
//! Rules checked here beyond ggml's builders, whose kernels assume them
//! (several with debug-only assertions): operands of one shape, f32 (f16
//! for `silu_back` too), contiguous; `soft_max_ext_back` without ALiBi (its
//! kernel asserts `max_bias == 0`); `get_rows_back` with one gradient row
//! per index, indices checked before every computation like
//! [`Tensor::get_rows`]'s.

use crate::error::Result;
use crate::ops::{Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The declarations. Generic builders: `Params::f[0]` is eps or scale;
/// bit 0 in place.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "silu_back",
        family: Family::Backward,
        builders: &["ggml_silu_back"],
        op: ggml_sys::GGML_OP_SILU_BACK,
        arity: 2,
        cpu: cpu_same_shape,
        build: |_, t, _| t[0].silu_back(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_silu_back(ctx, t[0], t[1]) },
        ..BASE
    },
    Decl {
        name: "rms_norm_back",
        family: Family::Backward,
        builders: &["ggml_rms_norm_back"],
        op: ggml_sys::GGML_OP_RMS_NORM_BACK,
        arity: 2,
        cpu: cpu_same_shape,
        build: |_, t, p| t[0].rms_norm_back(t[1], p.f[0]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe { ggml_sys::ggml_rms_norm_back(ctx, t[0], t[1], p.f[0]) },
        ..BASE
    },
    Decl {
        name: "soft_max_ext_back",
        family: Family::Backward,
        builders: &["ggml_soft_max_ext_back", "ggml_soft_max_ext_back_inplace"],
        op: ggml_sys::GGML_OP_SOFT_MAX_BACK,
        arity: 2,
        cpu: cpu_same_shape,
        build: |_, t, p| soft_max_back(t[0], t[1], p.f[0], p.inplace()),
        raw: |_, ctx, t, p| {
            let f = if p.inplace() {
                ggml_sys::ggml_soft_max_ext_back_inplace
            } else {
                ggml_sys::ggml_soft_max_ext_back
            };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { f(ctx, t[0], t[1], p.f[0], 0.0) }
        },
        ..BASE
    },
    Decl {
        name: "get_rows_back",
        family: Family::Backward,
        builders: &["ggml_get_rows_back"],
        op: ggml_sys::GGML_OP_GET_ROWS_BACK,
        arity: 3,
        cpu: cpu_get_rows_back,
        build: |_, t, _| t[0].get_rows_back(t[1], t[2]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_get_rows_back(ctx, t[0], t[1], t[2]) },
        ..BASE
    },
    Decl {
        name: "cross_entropy_loss",
        family: Family::Backward,
        builders: &["ggml_cross_entropy_loss"],
        op: ggml_sys::GGML_OP_CROSS_ENTROPY_LOSS,
        arity: 2,
        cpu: cpu_loss,
        backward: true,
        build: |_, t, _| t[0].cross_entropy_loss(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_cross_entropy_loss(ctx, t[0], t[1]) },
        ..BASE
    },
    Decl {
        name: "cross_entropy_loss_back",
        family: Family::Backward,
        builders: &["ggml_cross_entropy_loss_back"],
        op: ggml_sys::GGML_OP_CROSS_ENTROPY_LOSS_BACK,
        arity: 3,
        cpu: cpu_loss,
        build: |_, t, _| t[0].cross_entropy_loss_back(t[1], t[2]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe {
            ggml_sys::ggml_cross_entropy_loss_back(ctx, t[0], t[1], t[2])
        },
        ..BASE
    },
    Decl {
        name: "repeat_back",
        family: Family::Backward,
        builders: &["ggml_repeat_back"],
        op: ggml_sys::GGML_OP_REPEAT_BACK,
        arity: 2,
        cpu: cpu_repeat_back,
        build: |_, t, _| t[0].repeat_back(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_repeat_back(ctx, t[0], t[1]) },
        ..BASE
    },
];

/// Requires `ops` of one shape and type among `types`, contiguous.
fn same_contiguous(rules: &Rules<'_, '_>, ops: &[Tensor<'_>], types: &[Type]) -> Result<()> {
    let first = ops[0];
    rules.require(
        ops.iter()
            .all(|t| t.ne() == first.ne() && t.ty() == first.ty()),
        || "operands of one shape and type".into(),
    )?;
    rules.require(types.contains(&first.ty()), || format!("types {types:?}"))?;
    rules.require(ops.iter().all(|t| t.is_contiguous()), || {
        "contiguous operands".into()
    })
}

/// Builds `soft_max_ext_back`.
fn soft_max_back<'a>(
    dy: Tensor<'a>,
    y: Tensor<'a>,
    scale: f32,
    inplace: bool,
) -> Result<Tensor<'a>> {
    let operands = [dy, y];
    let rules = Rules::new("soft_max_ext_back", &operands)?;
    same_contiguous(&rules, &operands, &[Type::F32])?;
    if inplace {
        rules.require(!crate::ops::overlaps(&y, &dy), || {
            "in place, y must not share memory with dy".into()
        })?;
    }
    rules.reserve_result(Type::F32, &dy.ne(), inplace.then_some(&dy))?;
    let f = if inplace {
        ggml_sys::ggml_soft_max_ext_back_inplace
    } else {
        ggml_sys::ggml_soft_max_ext_back
    };
    // SAFETY: live contiguous f32 tensors of one shape, no ALiBi (the
    // kernel's assertions); room reserved.
    rules.wrap(unsafe {
        f(
            rules.context().as_ptr(),
            dy.as_ptr(),
            y.as_ptr(),
            scale,
            0.0,
        )
    })
}

impl<'ctx> Tensor<'ctx> {
    /// The cross-entropy loss of these logits (f32, a distribution per row
    /// after soft max) against the target distributions `labels`:
    /// `-Σ labels · log_softmax(logits) / rows`, one f32 value.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless both are contiguous f32 of
    /// one shape; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn cross_entropy_loss(self, labels: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, labels];
        let rules = Rules::new("cross_entropy_loss", &operands)?;
        same_contiguous(&rules, &operands, &[Type::F32])?;
        rules.reserve_result(Type::F32, &[1, 1, 1, 1], None)?;
        // SAFETY: live contiguous f32 tensors of one shape (the builder's
        // assertion and the kernel's); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_cross_entropy_loss(
                rules.context().as_ptr(),
                self.as_ptr(),
                labels.as_ptr(),
            )
        })
    }

    /// The gradient of [`Tensor::cross_entropy_loss`] with respect to the
    /// logits, given this loss gradient (one f32 value) and the forward
    /// pass's logits and labels.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless this is one value and the
    /// others contiguous f32 of one shape; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn cross_entropy_loss_back(
        self,
        logits: Tensor<'ctx>,
        labels: Tensor<'ctx>,
    ) -> Result<Tensor<'ctx>> {
        let operands = [self, logits, labels];
        let rules = Rules::new("cross_entropy_loss_back", &operands)?;
        rules.require(self.len() == 1 && self.ty() == Type::F32, || {
            "the loss gradient must be one f32 value".into()
        })?;
        same_contiguous(&rules, &operands[1..], &[Type::F32])?;
        rules.reserve_result(Type::F32, &logits.ne(), None)?;
        // SAFETY: a scalar gradient and contiguous f32 tensors of one shape
        // (the builder's and kernel's assertions); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_cross_entropy_loss_back(
                rules.context().as_ptr(),
                self.as_ptr(),
                logits.as_ptr(),
                labels.as_ptr(),
            )
        })
    }

    /// The gradient of `silu` at `x` given this output gradient `dy`:
    /// `dy · s · (1 + x · (1 - s))`, `s = sigmoid(x)`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless both are contiguous f32 (or
    /// f16) of one shape; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn silu_back(self, x: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, x];
        let rules = Rules::new("silu_back", &operands)?;
        same_contiguous(&rules, &operands, &[Type::F32, Type::F16])?;
        rules.reserve_result(self.ty(), &self.ne(), None)?;
        // SAFETY: live contiguous tensors of one shape and type (what the
        // kernel's debug assertions state); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_silu_back(rules.context().as_ptr(), self.as_ptr(), x.as_ptr())
        })
    }

    /// The gradient of `rms_norm(x, eps)` given this output gradient.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless both are contiguous f32 of
    /// one shape; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn rms_norm_back(self, x: Tensor<'ctx>, eps: f32) -> Result<Tensor<'ctx>> {
        let operands = [self, x];
        let rules = Rules::new("rms_norm_back", &operands)?;
        same_contiguous(&rules, &operands, &[Type::F32])?;
        rules.reserve_result(Type::F32, &self.ne(), None)?;
        // SAFETY: live contiguous f32 tensors of one shape; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_rms_norm_back(rules.context().as_ptr(), self.as_ptr(), x.as_ptr(), eps)
        })
    }

    /// The gradient of `soft_max_ext` (without mask gradient, no ALiBi)
    /// given this output gradient and the soft max's output `y`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless both are contiguous f32 of
    /// one shape; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn soft_max_ext_back(self, y: Tensor<'ctx>, scale: f32) -> Result<Tensor<'ctx>> {
        soft_max_back(self, y, scale, false)
    }

    /// [`Tensor::soft_max_ext_back`] in place.
    ///
    /// # Errors
    /// As [`Tensor::soft_max_ext_back`]; [`Error::Op`](crate::Error::Op)
    /// when `y` shares memory with this tensor.
    pub fn soft_max_ext_back_inplace(self, y: Tensor<'ctx>, scale: f32) -> Result<Tensor<'ctx>> {
        soft_max_back(self, y, scale, true)
    }

    /// The gradient of `get_rows` with respect to its matrix: this gradient
    /// (f32 `[n, k]`, a row per index) summed into a zero f32 matrix of
    /// `like`'s shape `[n, rows]` at the i32 `indices` (`[k]`, checked
    /// before every computation: in `0..rows`, a graph input).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for shapes or types that do not fit;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn get_rows_back(self, indices: Tensor<'ctx>, like: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, indices, like];
        let rules = Rules::new("get_rows_back", &operands)?;
        let (na, ni, nl) = (self.ne(), indices.ne(), like.ne());
        let matrix = |ne: &[i64; 4]| ne[2] == 1 && ne[3] == 1;
        rules.require(
            indices.ty() == Type::I32 && indices.is_contiguous() && ni[1] == 1 && matrix(&ni),
            || "i32 indices, a contiguous vector".into(),
        )?;
        rules.require(
            matrix(&na) && matrix(&nl) && na[0] == nl[0] && na[1] == ni[0],
            || "the gradient [n, k] with k indices, like [n, rows]".into(),
        )?;
        rules.require(self.ty() == Type::F32 && self.rows_are_dense(), || {
            "an f32 gradient with dense rows".into()
        })?;
        rules.reserve_result(Type::F32, &[nl[0], nl[1], 1, 1], None)?;
        // SAFETY: live tensors meeting ggml_get_rows_back's assertions and
        // the kernel's reads (a gradient row per index); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_get_rows_back(
                rules.context().as_ptr(),
                self.as_ptr(),
                indices.as_ptr(),
                like.as_ptr(),
            )
        })
    }

    /// The gradient of `repeat` with respect to its operand: this gradient
    /// (f32, with dense rows) summed back to `like`'s shape, which must
    /// repeat to this tensor's.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when `like` does not repeat to this
    /// tensor; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn repeat_back(self, like: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, like];
        let rules = Rules::new("repeat_back", &operands)?;
        let (na, nl) = (self.ne(), like.ne());
        let repeats = if nl.contains(&0) {
            na.contains(&0)
        } else {
            na.iter().zip(&nl).all(|(&x, &y)| x % y == 0)
        };
        rules.require(repeats, || "like must repeat to this tensor".into())?;
        rules.reserve_result(self.ty(), &nl, None)?;
        // SAFETY: live tensors, ggml_can_repeat(like, self) (the builder's
        // assertion); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_repeat_back(rules.context().as_ptr(), self.as_ptr(), like.as_ptr())
        })
    }
}

/// The CPU's `silu_back`, `rms_norm_back`, `soft_max_ext_back`: contiguous
/// operands of one shape and type (f32; `silu_back` also f16), a result of
/// that type; no ALiBi.
fn cpu_same_shape(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    let types: &[Type] = if node.op() == ggml_sys::GGML_OP_SILU_BACK {
        &[Type::F32, Type::F16]
    } else {
        &[Type::F32]
    };
    if !types.contains(&a.ty()) || b.ty() != a.ty() || node.ty() != a.ty() {
        return Err("the CPU's kernel lacks these types");
    }
    if a.ne() != b.ne()
        || a.ne() != node.ne()
        || !a.is_contiguous()
        || !b.is_contiguous()
        || !node.is_contiguous()
    {
        return Err("contiguous operands of one shape");
    }
    if node.op() == ggml_sys::GGML_OP_SOFT_MAX_BACK
        && f32::from_bits(node.op_params()[1] as u32) != 0.0
    {
        return Err("no ALiBi in the soft max gradient");
    }
    Ok(())
}

/// The CPU's cross-entropy loss and its gradient: contiguous f32
/// operands of one shape (a scalar gradient), an f32 result.
fn cpu_loss(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let back = node.op() == ggml_sys::GGML_OP_CROSS_ENTROPY_LOSS_BACK;
    let srcs: Vec<Tensor<'_>> = (0..3).map_while(|i| node.src(i)).collect();
    let (pair, rest) = if back {
        (&srcs[1..], &srcs[..1])
    } else {
        (&srcs[..], &srcs[..0])
    };
    if pair.len() != 2 || pair[0].ne() != pair[1].ne() {
        return Err("logits and labels of one shape");
    }
    for t in pair.iter().chain(rest).chain([node]) {
        if t.ty() != Type::F32 || !t.is_contiguous() {
            return Err("contiguous f32");
        }
    }
    if (!back && node.len() != 1) || (back && (rest[0].len() != 1 || node.ne() != pair[0].ne())) {
        return Err("a scalar loss and a gradient of the logits' shape");
    }
    Ok(())
}

/// The CPU's `get_rows_back`: f32 gradient rows, i32 contiguous indices,
/// one gradient row per index, a contiguous f32 result.
fn cpu_get_rows_back(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, idx] = crate::ops::sources::<2>(node)?;
    if a.ty() != Type::F32 || idx.ty() != Type::I32 || node.ty() != Type::F32 {
        return Err("f32 gradient, i32 indices");
    }
    if !a.rows_are_dense()
        || !idx.is_contiguous()
        || !node.is_contiguous()
        || a.ne()[1] < idx.len() as i64
        || a.ne()[0] != node.ne()[0]
    {
        return Err("a gradient row per index, contiguous indices and result");
    }
    Ok(())
}

/// The CPU's `repeat_back`: f32 with dense rows, the result repeating to
/// the gradient.
fn cpu_repeat_back(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if a.ty() != Type::F32
        || node.ty() != Type::F32
        || !a.rows_are_dense()
        || !node.rows_are_dense()
    {
        return Err("the CPU sums f32 with dense rows");
    }
    Ok(())
}
