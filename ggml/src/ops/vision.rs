//! The vision-transformer ops of SAM-style encoders: `win_part` and
//! `win_unpart` (windows of a feature map and back), `get_rel_pos` and
//! `add_rel_pos` (relative position tables and their addition to scores).
//!
//! Rules checked here that ggml leaves unchecked (its kernels index their
//! operands linearly, so out-of-shape parameters read or write out of
//! bounds): a window size of at least 1, operands contiguous, and
//! `win_unpart`'s operand holding the windows its parameters imply. The CPU
//! computes f32 (`get_rel_pos`: f16).

use crate::error::Result;
use crate::ops::{Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The declarations. Generic builders: window sizes and heights from
/// `Params::i`; bit 0 in place (`add_rel_pos`).
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "win_part",
        family: Family::Vision,
        builders: &["ggml_win_part"],
        op: ggml_sys::GGML_OP_WIN_PART,
        arity: 1,
        cpu: cpu_f32_contiguous,
        build: |_, t, p| t[0].win_part(p.i[0]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe { ggml_sys::ggml_win_part(ctx, t[0], p.i[0] as i32) },
        ..BASE
    },
    Decl {
        name: "win_unpart",
        family: Family::Vision,
        builders: &["ggml_win_unpart"],
        op: ggml_sys::GGML_OP_WIN_UNPART,
        arity: 1,
        cpu: cpu_f32_contiguous,
        build: |_, t, p| t[0].win_unpart(p.i[0], p.i[1], p.i[2]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe {
            ggml_sys::ggml_win_unpart(ctx, t[0], p.i[0] as i32, p.i[1] as i32, p.i[2] as i32)
        },
        ..BASE
    },
    Decl {
        name: "get_rel_pos",
        family: Family::Vision,
        builders: &["ggml_get_rel_pos"],
        op: ggml_sys::GGML_OP_GET_REL_POS,
        arity: 1,
        cpu: cpu_get_rel_pos,
        build: |_, t, p| t[0].get_rel_pos(p.i[0]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe {
            ggml_sys::ggml_get_rel_pos(ctx, t[0], p.i[0] as i32, p.i[0] as i32)
        },
        ..BASE
    },
    Decl {
        name: "add_rel_pos",
        family: Family::Vision,
        builders: &["ggml_add_rel_pos", "ggml_add_rel_pos_inplace"],
        op: ggml_sys::GGML_OP_ADD_REL_POS,
        arity: 3,
        cpu: cpu_f32_contiguous,
        build: |_, t, p| add_rel_pos(t[0], t[1], t[2], p.inplace()),
        raw: |_, ctx, t, p| {
            let f = if p.inplace() {
                ggml_sys::ggml_add_rel_pos_inplace
            } else {
                ggml_sys::ggml_add_rel_pos
            };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { f(ctx, t[0], t[1], t[2]) }
        },
        ..BASE
    },
];

/// Windows per side of a length `n` cut into windows of `w` (padded).
fn windows(n: i64, w: i64) -> i64 {
    (n + (w - n % w) % w) / w
}

/// Builds `add_rel_pos`.
fn add_rel_pos<'a>(
    a: Tensor<'a>,
    pw: Tensor<'a>,
    ph: Tensor<'a>,
    inplace: bool,
) -> Result<Tensor<'a>> {
    let operands = [a, pw, ph];
    let rules = Rules::new("add_rel_pos", &operands)?;
    let (na, nw) = (a.ne(), pw.ne());
    rules.require(
        a.ty() == Type::F32 && pw.ty() == Type::F32 && ph.ty() == Type::F32,
        || "f32 operands".into(),
    )?;
    rules.require(
        a.is_contiguous() && pw.is_contiguous() && ph.is_contiguous(),
        || "contiguous operands".into(),
    )?;
    rules.require(pw.ne() == ph.ne(), || {
        "pw and ph must have one shape".into()
    })?;
    rules.require(
        nw[3] == na[2]
            && nw[0].checked_mul(nw[0]) == Some(na[0])
            && nw[1].checked_mul(nw[2]) == Some(na[1]),
        || "pw [w, h, h', b]: b = a's ne[2], w² = a's ne[0], h·h' = a's ne[1]".into(),
    )?;
    if inplace {
        for t in [pw, ph] {
            rules.require(!crate::ops::overlaps(&t, &a), || {
                "in place, pw and ph must not share memory with a".into()
            })?;
        }
    }
    rules.reserve_result(Type::F32, &na, inplace.then_some(&a))?;
    let f = if inplace {
        ggml_sys::ggml_add_rel_pos_inplace
    } else {
        ggml_sys::ggml_add_rel_pos
    };
    // SAFETY: live f32 contiguous tensors meeting the builder's assertions;
    // room reserved.
    rules.wrap(unsafe {
        f(
            rules.context().as_ptr(),
            a.as_ptr(),
            pw.as_ptr(),
            ph.as_ptr(),
        )
    })
}

impl<'ctx> Tensor<'ctx> {
    /// Cuts a feature map `[c, w0, h0]` (f32, contiguous) into `w`×`w`
    /// windows, zero-padded: `[c, w, w, windows]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for `w` below 1, another type, a 4-D
    /// or non-contiguous tensor; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn win_part(self, w: i64) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("win_part", &operands)?;
        let ne = self.ne();
        rules.require((1..=i64::from(i32::MAX)).contains(&w), || {
            format!("window size {w} must be at least 1")
        })?;
        rules.require(
            self.ty() == Type::F32 && self.is_contiguous() && ne[3] == 1,
            || "a contiguous f32 map of at most 3 dimensions".into(),
        )?;
        let count = windows(ne[1], w).checked_mul(windows(ne[2], w));
        let Some(count) = count else {
            return Err(rules.broken("too many windows".into()));
        };
        rules.reserve_result(Type::F32, &[ne[0], w, w, count], None)?;
        // SAFETY: a live contiguous f32 tensor, w ≥ 1 (no division by zero);
        // room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_win_part(rules.context().as_ptr(), self.as_ptr(), w as i32)
        })
    }

    /// Joins `w`×`w` windows (`[c, w, w, windows]`, as [`Tensor::win_part`]
    /// makes them) back into a `[c, w0, h0]` map, dropping the padding.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless this tensor is contiguous f32
    /// holding the windows of a `w0`×`h0` map; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn win_unpart(self, w0: i64, h0: i64, w: i64) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("win_unpart", &operands)?;
        let ne = self.ne();
        let int = 1..=i64::from(i32::MAX);
        rules.require(
            int.contains(&w)
                && (0..=i64::from(i32::MAX)).contains(&w0)
                && (0..=i64::from(i32::MAX)).contains(&h0),
            || "w at least 1, w0 and h0 at least 0".into(),
        )?;
        rules.require(self.ty() == Type::F32 && self.is_contiguous(), || {
            "a contiguous f32 tensor".into()
        })?;
        let needed = windows(w0, w).checked_mul(windows(h0, w));
        rules.require(
            ne[1] == w && ne[2] == w && needed.is_some_and(|n| ne[3] >= n),
            || format!("[c, {w}, {w}, ≥ windows of {w0}×{h0}] expected"),
        )?;
        rules.reserve_result(Type::F32, &[ne[0], w0, h0, 1], None)?;
        // SAFETY: a live contiguous f32 tensor holding every window the
        // kernel reads; w ≥ 1; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_win_unpart(
                rules.context().as_ptr(),
                self.as_ptr(),
                w0 as i32,
                h0 as i32,
                w as i32,
            )
        })
    }

    /// The relative position table of `size` positions from a table of
    /// `2·size - 1` rows (f16, contiguous): f16 `[c, size, size]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless this tensor is contiguous
    /// f16 with `2·size - 1` rows; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn get_rel_pos(self, size: i64) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("get_rel_pos", &operands)?;
        let ne = self.ne();
        rules.require(
            (1..=i64::from(i32::MAX) / 2).contains(&size) && 2 * size - 1 == ne[1],
            || format!("the table needs 2·{size} - 1 rows, has {}", ne[1]),
        )?;
        rules.require(self.ty() == Type::F16 && self.is_contiguous(), || {
            "a contiguous f16 table".into()
        })?;
        rules.reserve_result(Type::F16, &[ne[0], size, size, 1], None)?;
        // SAFETY: a live contiguous f16 table of 2·size - 1 rows (the
        // builder's assertions); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_get_rel_pos(
                rules.context().as_ptr(),
                self.as_ptr(),
                size as i32,
                size as i32,
            )
        })
    }

    /// Adds decomposed relative positions to attention scores (SAM):
    /// `a` f32 `[w², h·h', b]`, `pw` and `ph` f32 `[w, h, h', b]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for the shapes and types above or
    /// operands that are not contiguous; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn add_rel_pos(self, pw: Tensor<'ctx>, ph: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        add_rel_pos(self, pw, ph, false)
    }

    /// [`Tensor::add_rel_pos`] in place.
    ///
    /// # Errors
    /// As [`Tensor::add_rel_pos`]; [`Error::Op`](crate::Error::Op) when `pw`
    /// or `ph` share memory with this tensor.
    pub fn add_rel_pos_inplace(self, pw: Tensor<'ctx>, ph: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        add_rel_pos(self, pw, ph, true)
    }
}

/// The CPU's window and relative-position kernels: contiguous f32 sources
/// and result.
fn cpu_f32_contiguous(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let srcs = (0..3).map_while(|i| node.src(i));
    for s in srcs {
        if s.ty() != Type::F32 || !s.is_contiguous() {
            return Err("the CPU reads contiguous f32");
        }
    }
    if node.ty() != Type::F32 || !node.is_contiguous() {
        return Err("the CPU writes a contiguous f32 result");
    }
    Ok(())
}

/// The CPU's `get_rel_pos`: a contiguous f16 table (its bf16 path would
/// write bf16 bits into an f16 result), an f16 result.
fn cpu_get_rel_pos(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if a.ty() != Type::F16 || node.ty() != Type::F16 || !a.is_contiguous() || !node.is_contiguous()
    {
        return Err("the CPU copies a contiguous f16 table into f16");
    }
    Ok(())
}
