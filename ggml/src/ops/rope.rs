//! Rotary position embeddings: `rope` and `rope_ext` (with YaRN scaling and
//! frequency factors), in the normal (GPT-J, adjacent pairs) and NeoX
//! (halves) layouts.
//!
//! The rules: positions are an i32 vector with one entry per item of ggml's
//! dimension 2 (the tokens of `[head_dim, heads, tokens]`); frequency
//! factors f32 with a value per pair of the row (ggml asserts `n_dims / 2`,
//! but its CPU kernel reads `ne[0] / 2`). ggml's kernel needs
//! `n_dims` even, positive and at most the row length, the row length even
//! (it copies the unrotated rest in pairs), and reads positions and factors
//! as dense arrays. The CPU rotates f32 and f16 rows of dense values (rows
//! counted in `int`). In place, positions and factors must not share memory
//! with the operand.
//!
//! The multi-section forms (`rope_multi`: M-RoPE, vision) are not here yet.

use crate::error::Result;
use crate::ops::{fits_int, overlaps, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// Which dimensions RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RopeMode {
    /// Adjacent pairs `(x[2i], x[2i+1])` (GPT-J; llama's GGUF models).
    #[default]
    Normal,
    /// The two halves `(x[i], x[i + n_dims/2])` (GPT-NeoX).
    Neox,
}

impl RopeMode {
    /// ggml's mode value.
    pub fn as_raw(self) -> i32 {
        match self {
            RopeMode::Normal => ggml_sys::GGML_ROPE_TYPE_NORMAL as i32,
            RopeMode::Neox => ggml_sys::GGML_ROPE_TYPE_NEOX as i32,
        }
    }
}

/// The parameters of [`Tensor::rope_ext`]. [`Rope::new`] gives ggml's
/// defaults (base 10000, no scaling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// How many leading dimensions of each row are rotated (even, > 0).
    pub n_dims: i32,
    /// The layout of rotated pairs.
    pub mode: RopeMode,
    /// The context length the model was trained with (YaRN).
    pub n_ctx_orig: i32,
    /// The frequency base (`rope.freq_base`).
    pub freq_base: f32,
    /// Frequency scaling (1 / linear scaling factor).
    pub freq_scale: f32,
    /// YaRN's extrapolation mix (0: none).
    pub ext_factor: f32,
    /// YaRN's magnitude scaling.
    pub attn_factor: f32,
    /// YaRN's fast correction bound.
    pub beta_fast: f32,
    /// YaRN's slow correction bound.
    pub beta_slow: f32,
}

impl Rope {
    /// Rotation of the first `n_dims` dimensions, ggml's defaults otherwise.
    pub fn new(n_dims: i32) -> Self {
        Rope {
            n_dims,
            mode: RopeMode::Normal,
            n_ctx_orig: 0,
            freq_base: 10_000.0,
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
        }
    }
}

/// The declarations. Generic builder: operands (x, positions, factors when
/// bit 1 of `Params::flags` is set); `Params::i[0]` is `n_dims`, bit 2 NeoX
/// mode, `Params::i[1]` the original context, `Params::f` base, scale,
/// extrapolation and attention factor; in place with bit 0.
pub(crate) const DECLS: &[Decl] = &[Decl {
    name: "rope_ext",
    family: Family::Rope,
    builders: &[
        "ggml_rope",
        "ggml_rope_inplace",
        "ggml_rope_ext",
        "ggml_rope_ext_inplace",
    ],
    op: ggml_sys::GGML_OP_ROPE,
    arity: 3,
    cpu: cpu_rope,
    backward: true,
    build: |_, t, p| {
        rope(
            t[0],
            t[1],
            p.flag(1).then_some(t[2]),
            &fuzz_params(p),
            p.inplace(),
        )
    },
    raw: |_, ctx, t, p| {
        let r = fuzz_params(p);
        let c = if p.flag(1) {
            t[2]
        } else {
            std::ptr::null_mut()
        };
        let f = if p.inplace() {
            ggml_sys::ggml_rope_ext_inplace
        } else {
            ggml_sys::ggml_rope_ext
        };
        // SAFETY: none (the fuzzer's raw direction).
        unsafe {
            f(
                ctx,
                t[0],
                t[1],
                c,
                r.n_dims,
                r.mode.as_raw(),
                r.n_ctx_orig,
                r.freq_base,
                r.freq_scale,
                r.ext_factor,
                r.attn_factor,
                r.beta_fast,
                r.beta_slow,
            )
        }
    },
    ..BASE
}];

/// The RoPE parameters of the generic builder.
fn fuzz_params(p: &crate::ops::Params) -> Rope {
    Rope {
        n_dims: p.i[0].clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
        mode: if p.flag(2) {
            RopeMode::Neox
        } else {
            RopeMode::Normal
        },
        n_ctx_orig: p.i[1].clamp(0, 1 << 20) as i32,
        freq_base: p.f[0],
        freq_scale: p.f[1],
        ext_factor: p.f[2],
        attn_factor: p.f[3],
        ..Rope::new(0)
    }
}

/// Builds `rope_ext`.
fn rope<'a>(
    a: Tensor<'a>,
    pos: Tensor<'a>,
    factors: Option<Tensor<'a>>,
    r: &Rope,
    inplace: bool,
) -> Result<Tensor<'a>> {
    let operands: Vec<Tensor<'a>> = [Some(a), Some(pos), factors]
        .into_iter()
        .flatten()
        .collect();
    let rules = Rules::new("rope_ext", &operands)?;
    let na = a.ne();
    let np = pos.ne();
    rules.require(
        pos.ty() == Type::I32 && np[1] == 1 && np[2] == 1 && np[3] == 1 && np[0] == na[2],
        || "positions must be an i32 vector with one entry per item of ne[2]".into(),
    )?;
    rules.require(pos.rows_are_dense(), || {
        "positions must be dense (ggml reads them as an array)".into()
    })?;
    let n_dims = i64::from(r.n_dims);
    rules.require(n_dims > 0 && n_dims % 2 == 0 && n_dims <= na[0], || {
        format!(
            "n_dims {} must be even, positive and at most the row length {}",
            r.n_dims, na[0]
        )
    })?;
    rules.require(na[0] % 2 == 0, || {
        "ggml's kernel copies rows in pairs: the row length must be even".into()
    })?;
    if let Some(c) = factors {
        // ggml asserts n_dims / 2 values, but its CPU kernel reads one per
        // pair of the whole row.
        rules.require(
            c.ty() == Type::F32 && c.ne()[0] >= na[0] / 2 && c.rows_are_dense(),
            || {
                "frequency factors must be dense f32 with a value per pair of the row (ne[0] / 2)"
                    .into()
            },
        )?;
    }
    if inplace {
        for other in [Some(pos), factors].into_iter().flatten() {
            rules.require(!overlaps(&other, &a), || {
                "in place, positions and factors must not share memory with the operand".into()
            })?;
        }
    }
    rules.reserve_result(a.ty(), &na, inplace.then_some(&a))?;
    let ctx = rules.context().as_ptr();
    let c = factors.map_or(std::ptr::null_mut(), |c| c.as_ptr());
    let f = if inplace {
        ggml_sys::ggml_rope_ext_inplace
    } else {
        ggml_sys::ggml_rope_ext
    };
    // SAFETY: live tensors meeting ggml_rope_impl's assertions (a supported
    // mode, i32 positions per item of ne[2], f32 factors of n_dims / 2);
    // room for the result reserved.
    rules.wrap(unsafe {
        f(
            ctx,
            a.as_ptr(),
            pos.as_ptr(),
            c,
            r.n_dims,
            r.mode.as_raw(),
            r.n_ctx_orig,
            r.freq_base,
            r.freq_scale,
            r.ext_factor,
            r.attn_factor,
            r.beta_fast,
            r.beta_slow,
        )
    })
}

impl<'ctx> Tensor<'ctx> {
    /// RoPE of the first `n_dims` dimensions of each row by the positions
    /// `pos` (i32, one per item of ggml's dimension 2), ggml's defaults
    /// otherwise (`ggml_rope`).
    ///
    /// # Errors
    /// As [`Tensor::rope_ext`].
    pub fn rope(self, pos: Tensor<'ctx>, n_dims: i32, mode: RopeMode) -> Result<Tensor<'ctx>> {
        let r = Rope {
            mode,
            ..Rope::new(n_dims)
        };
        rope(self, pos, None, &r, false)
    }

    /// RoPE with every parameter ([`Rope`]) and optional per-pair
    /// frequency factors (f32, one per pair of the row: `ne[0] / 2` values
    /// dividing the frequencies): for a row `x` of the item at position `p`, pairs
    /// `(x0, x1)` become `(x0·cos θ - x1·sin θ, x0·sin θ + x1·cos θ)` with
    /// `θ = p · freq_scale · freq_base^(-2i/n_dims)` for pair `i` (before
    /// YaRN's corrections when `ext_factor` is not 0).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for the rules of the module docs;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn rope_ext(
        self,
        pos: Tensor<'ctx>,
        factors: Option<Tensor<'ctx>>,
        params: &Rope,
    ) -> Result<Tensor<'ctx>> {
        rope(self, pos, factors, params, false)
    }

    /// [`Tensor::rope_ext`] in place.
    ///
    /// # Errors
    /// As [`Tensor::rope_ext`]; [`Error::Op`](crate::Error::Op) when the
    /// positions or factors share memory with this tensor.
    pub fn rope_ext_inplace(
        self,
        pos: Tensor<'ctx>,
        factors: Option<Tensor<'ctx>>,
        params: &Rope,
    ) -> Result<Tensor<'ctx>> {
        rope(self, pos, factors, params, true)
    }
}

/// The CPU's RoPE kernel: f32 or f16 rows of dense values and a result of
/// the same type and shape; i32 positions and f32 factors as the builder
/// checks; the parameters within what its assertions and loops allow; rows
/// counted in `int`.
fn cpu_rope(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let a = node.src(0).ok_or("a source is missing")?;
    let pos = node.src(1).ok_or("a source is missing")?;
    if !matches!(a.ty(), Type::F32 | Type::F16) || node.ty() != a.ty() || a.ne() != node.ne() {
        return Err("the CPU rotates f32 and f16 rows into a result of the same type and shape");
    }
    if !a.rows_are_dense() || !node.rows_are_dense() || a.nb()[0] != node.nb()[0] {
        return Err("the CPU needs dense rows on both sides");
    }
    let p = node.op_params();
    let (n_dims, mode, n_offs) = (i64::from(p[1]), p[2], p[15]);
    let ne0 = a.ne()[0];
    if !matches!(
        mode as u32,
        ggml_sys::GGML_ROPE_TYPE_NORMAL | ggml_sys::GGML_ROPE_TYPE_NEOX
    ) || n_offs != 0
    {
        return Err("the crate computes the normal and NeoX modes");
    }
    if n_dims <= 0 || n_dims % 2 != 0 || n_dims > ne0 || ne0 % 2 != 0 {
        return Err("n_dims must be even, positive, at most an even row length");
    }
    if pos.ty() != Type::I32 || !pos.rows_are_dense() || pos.len() as i64 != a.ne()[2] {
        return Err("positions must be dense i32, one per item of ne[2]");
    }
    if let Some(c) = node.src(2) {
        if c.ty() != Type::F32 || !c.rows_are_dense() || c.ne()[0] < ne0 / 2 {
            return Err("frequency factors must be dense f32, one per pair of the row");
        }
    }
    let ne = a.ne();
    if !fits_int(ne[1].saturating_mul(ne[2]).saturating_mul(ne[3])) {
        return Err("the CPU counts rows in int: at most i32::MAX");
    }
    Ok(())
}
