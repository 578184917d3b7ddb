//! Rotary position embeddings: `rope`, `rope_ext` (YaRN scaling, frequency
//! factors) in the normal (GPT-J, adjacent pairs) and NeoX (halves)
//! layouts, `rope_multi` (M-RoPE, interleaved M-RoPE and vision RoPE of
//! multimodal models, four positions per token), their `_back` forms (the
//! inverse rotation) and a rotation offset into the row (`Rope::offset`,
//! `ggml_rope_set_offset`).
//!
//! The rules: positions are an i32 vector with one entry per item of ggml's
//! dimension 2 (the tokens of `[head_dim, heads, tokens]`), four per token
//! for `rope_multi`; frequency factors f32 with a value per pair of the row
//! (ggml asserts `n_dims / 2`, but its CPU kernel reads `ne[0] / 2`).
//! ggml's kernel needs `n_dims` even, positive and with the offset at most
//! the row length, the row length even (it copies the unrotated rest in
//! pairs), M-RoPE sections not negative, one of the first three positive
//! (it asserts so) and adding up to at most the row length (it asserts so,
//! and takes positions modulo the sum), vision RoPE with `n_dims` half the row and
//! no offset; it reads positions and factors as dense arrays. The CPU
//! rotates f32 and f16 rows of dense values (rows counted in `int`). In
//! place, positions and factors must not share memory with the operand.

use crate::error::Result;
use crate::ops::{fits_int, overlaps, Decl, Family, Params, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// Which dimensions RoPE rotates together, and by which positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RopeMode {
    /// Adjacent pairs `(x[2i], x[2i+1])` (GPT-J; llama's GGUF models).
    #[default]
    Normal,
    /// The two halves `(x[i], x[i + n_dims/2])` (GPT-NeoX).
    Neox,
    /// M-RoPE (Qwen2-VL): NeoX pairs whose positions come, section by
    /// section, from the time, height, width and extra position of each
    /// token ([`Tensor::rope_multi`] only).
    Multi,
    /// Interleaved M-RoPE (Qwen3-VL) ([`Tensor::rope_multi`] only).
    MultiInterleaved,
    /// Vision RoPE: the row's two halves rotated by the height and width
    /// positions, `n_dims` half the row ([`Tensor::rope_multi`] only).
    Vision,
}

impl RopeMode {
    /// ggml's mode value.
    pub fn as_raw(self) -> i32 {
        (match self {
            RopeMode::Normal => ggml_sys::GGML_ROPE_TYPE_NORMAL,
            RopeMode::Neox => ggml_sys::GGML_ROPE_TYPE_NEOX,
            RopeMode::Multi => ggml_sys::GGML_ROPE_TYPE_MROPE,
            RopeMode::MultiInterleaved => ggml_sys::GGML_ROPE_TYPE_IMROPE,
            RopeMode::Vision => ggml_sys::GGML_ROPE_TYPE_VISION,
        }) as i32
    }

    fn is_multi(self) -> bool {
        matches!(
            self,
            RopeMode::Multi | RopeMode::MultiInterleaved | RopeMode::Vision
        )
    }
}

/// The parameters of [`Tensor::rope_ext`] and [`Tensor::rope_multi`].
/// [`Rope::new`] gives ggml's defaults (base 10000, no scaling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// How many dimensions of each row are rotated (even, > 0).
    pub n_dims: i32,
    /// The layout of rotated pairs.
    pub mode: RopeMode,
    /// The first rotated dimension (even; 0 for vision RoPE).
    pub offset: i32,
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
            offset: 0,
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
/// mode, `Params::i[1]` the offset; `Params::f`
/// base, scale, extrapolation and attention factor; in place with bit 0.
/// `rope_multi` takes its sections from `Params::i[2]` and the mode from
/// bits 2 and 3.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "rope_ext",
        family: Family::Rope,
        builders: &[
            "ggml_rope",
            "ggml_rope_inplace",
            "ggml_rope_ext",
            "ggml_rope_ext_inplace",
            "ggml_rope_set_offset",
        ],
        op: ggml_sys::GGML_OP_ROPE,
        arity: 3,
        cpu: cpu_rope,
        backward: true,
        build: |_, t, p| {
            let kind = if p.inplace() {
                Kind::Inplace
            } else {
                Kind::Forward
            };
            rope(
                t[0],
                fuzz_positions(t[0], t[1], 1)?,
                p.flag(1).then_some(t[2]),
                &fuzz_params(p, false),
                None,
                kind,
            )
        },
        raw: |_, ctx, t, p| {
            let r = fuzz_params(p, false);
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
    },
    Decl {
        name: "rope_back",
        family: Family::Rope,
        builders: &["ggml_rope_ext_back", "ggml_rope_multi_back"],
        op: ggml_sys::GGML_OP_ROPE_BACK,
        arity: 3,
        cpu: cpu_rope,
        build: |_, t, p| {
            rope(
                t[0],
                fuzz_positions(t[0], t[1], 1)?,
                p.flag(1).then_some(t[2]),
                &fuzz_params(p, false),
                None,
                Kind::Back,
            )
        },
        ..BASE
    },
    Decl {
        name: "rope_multi",
        family: Family::Rope,
        builders: &["ggml_rope_multi", "ggml_rope_multi_inplace"],
        op: ggml_sys::GGML_OP_ROPE,
        arity: 3,
        cpu: cpu_rope,
        build: |_, t, p| {
            let kind = if p.inplace() {
                Kind::Inplace
            } else {
                Kind::Forward
            };
            let s = p.i[2].unsigned_abs() as i32 % 64;
            rope(
                t[0],
                fuzz_positions(t[0], t[1], 4)?,
                p.flag(1).then_some(t[2]),
                &fuzz_params(p, true),
                Some([s, s / 2, s / 2, 0]),
                kind,
            )
        },
        ..BASE
    },
];

/// The generic builders' positions: `pos` if it is an i32 vector, else
/// zeros (a new i32 vector, `per_token` per item of `a`'s dimension 2) so
/// that the fuzzer reaches the kernel too.
fn fuzz_positions<'a>(a: Tensor<'a>, pos: Tensor<'a>, per_token: i64) -> Result<Tensor<'a>> {
    if pos.ty() == Type::I32 && pos.n_dims() == 1 {
        return Ok(pos);
    }
    let n = a.ne()[2].saturating_mul(per_token).clamp(0, 1 << 16) as usize;
    a.context().new_tensor(Type::I32, &[n])
}

/// The RoPE parameters of the generic builder.
fn fuzz_params(p: &Params, multi: bool) -> Rope {
    let mode = match (multi, p.flag(2), p.flag(3)) {
        (false, false, _) => RopeMode::Normal,
        (false, true, _) => RopeMode::Neox,
        (true, false, false) => RopeMode::Multi,
        (true, true, false) => RopeMode::MultiInterleaved,
        (true, _, true) => RopeMode::Vision,
    };
    Rope {
        n_dims: p.i[0].clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
        mode,
        offset: p.i[1].clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
        freq_base: p.f[0],
        freq_scale: p.f[1],
        ext_factor: p.f[2],
        attn_factor: p.f[3],
        ..Rope::new(0)
    }
}

/// Which builder: the rotation, in place, or its inverse (`_back`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Forward,
    Inplace,
    Back,
}

/// The signature of `ggml_rope_ext` and its in-place and backward forms.
type RopeExtFn = unsafe extern "C" fn(
    *mut ggml_sys::ggml_context,
    *mut ggml_sys::ggml_tensor,
    *mut ggml_sys::ggml_tensor,
    *mut ggml_sys::ggml_tensor,
    i32,
    i32,
    i32,
    f32,
    f32,
    f32,
    f32,
    f32,
    f32,
) -> *mut ggml_sys::ggml_tensor;

/// The signature of `ggml_rope_multi` and its in-place and backward forms.
type RopeMultiFn = unsafe extern "C" fn(
    *mut ggml_sys::ggml_context,
    *mut ggml_sys::ggml_tensor,
    *mut ggml_sys::ggml_tensor,
    *mut ggml_sys::ggml_tensor,
    i32,
    *mut i32,
    i32,
    i32,
    f32,
    f32,
    f32,
    f32,
    f32,
    f32,
) -> *mut ggml_sys::ggml_tensor;

/// Builds `rope_ext` (no sections) or `rope_multi`, plain, in place or
/// backward, then sets the offset.
fn rope<'a>(
    a: Tensor<'a>,
    pos: Tensor<'a>,
    factors: Option<Tensor<'a>>,
    r: &Rope,
    sections: Option<[i32; 4]>,
    kind: Kind,
) -> Result<Tensor<'a>> {
    let operands: Vec<Tensor<'a>> = [Some(a), Some(pos), factors]
        .into_iter()
        .flatten()
        .collect();
    let name = if sections.is_some() {
        "rope_multi"
    } else {
        "rope_ext"
    };
    let rules = Rules::new(name, &operands)?;
    let na = a.ne();
    let np = pos.ne();
    let per_token = if sections.is_some() { 4 } else { 1 };
    rules.require(r.mode.is_multi() == sections.is_some(), || {
        "the multi-section modes go with rope_multi, the normal and NeoX modes with rope_ext".into()
    })?;
    rules.require(
        pos.ty() == Type::I32
            && np[1] == 1
            && np[2] == 1
            && np[3] == 1
            && Some(np[0]) == na[2].checked_mul(per_token),
        || format!("positions must be an i32 vector with {per_token} entries per item of ne[2]"),
    )?;
    rules.require(pos.rows_are_dense(), || {
        "positions must be dense (ggml reads them as an array)".into()
    })?;
    let (n_dims, offset) = (i64::from(r.n_dims), i64::from(r.offset));
    rules.require(n_dims > 0 && n_dims % 2 == 0 && offset >= 0 && offset % 2 == 0 && n_dims + offset <= na[0], || {
        format!("n_dims {} and offset {} must be even, n_dims positive, together at most the row length {}", r.n_dims, r.offset, na[0])
    })?;
    rules.require(na[0] % 2 == 0, || {
        "ggml's kernel copies rows in pairs: the row length must be even".into()
    })?;
    if let Some(s) = sections {
        // ggml's kernel asserts one of the first three is positive and the
        // sum (taken in int) at most the row length.
        rules.require(
            s.iter().all(|&x| x >= 0)
                && s[..3].iter().any(|&x| x > 0)
                && s.iter().map(|&x| i64::from(x)).sum::<i64>() <= na[0],
            || {
                format!(
                    "sections {s:?} must not be negative, one of the first three positive, \
                     adding up to at most the row length {}",
                    na[0]
                )
            },
        )?;
        if r.mode == RopeMode::Vision {
            rules.require(n_dims * 2 == na[0] && offset == 0, || {
                "vision RoPE rotates half the row (n_dims = ne[0] / 2), no offset".into()
            })?;
        }
    }
    if let Some(c) = factors {
        rules.require(
            c.ty() == Type::F32 && c.ne()[0] >= na[0] / 2 && c.rows_are_dense(),
            || {
                "frequency factors must be dense f32 with a value per pair of the row (ne[0] / 2)"
                    .into()
            },
        )?;
    }
    let inplace = kind == Kind::Inplace;
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
    let (x, p) = (a.as_ptr(), pos.as_ptr());
    let m = r.mode.as_raw();
    let raw = match sections {
        None => {
            let build: RopeExtFn = match kind {
                Kind::Forward => ggml_sys::ggml_rope_ext,
                Kind::Inplace => ggml_sys::ggml_rope_ext_inplace,
                Kind::Back => ggml_sys::ggml_rope_ext_back,
            };
            // SAFETY: live tensors meeting ggml_rope_impl's assertions (a
            // mode of the builder's kind, i32 positions per item of ne[2],
            // f32 factors) and the kernel's; room for the result reserved.
            unsafe {
                build(
                    ctx,
                    x,
                    p,
                    c,
                    r.n_dims,
                    m,
                    r.n_ctx_orig,
                    r.freq_base,
                    r.freq_scale,
                    r.ext_factor,
                    r.attn_factor,
                    r.beta_fast,
                    r.beta_slow,
                )
            }
        }
        Some(mut s) => {
            let build: RopeMultiFn = match kind {
                Kind::Forward => ggml_sys::ggml_rope_multi,
                Kind::Inplace => ggml_sys::ggml_rope_multi_inplace,
                Kind::Back => ggml_sys::ggml_rope_multi_back,
            };
            // SAFETY: as above, and four sections, which ggml copies.
            unsafe {
                build(
                    ctx,
                    x,
                    p,
                    c,
                    r.n_dims,
                    s.as_mut_ptr(),
                    m,
                    r.n_ctx_orig,
                    r.freq_base,
                    r.freq_scale,
                    r.ext_factor,
                    r.attn_factor,
                    r.beta_fast,
                    r.beta_slow,
                )
            }
        }
    };
    let node = rules.wrap(raw)?;
    if r.offset != 0 {
        // SAFETY: a RoPE node just built, not vision, an even offset ≥ 0
        // with n_dims within the row (its assertions and the kernel's).
        unsafe { ggml_sys::ggml_rope_set_offset(node.as_ptr(), r.offset) };
    }
    Ok(node)
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
        rope(self, pos, None, &r, None, Kind::Forward)
    }

    /// RoPE with every parameter ([`Rope`]; the normal or NeoX mode) and
    /// optional per-pair frequency factors (f32, one per pair of the row:
    /// `ne[0] / 2` values dividing the frequencies): for a row `x` of the
    /// item at position `p`, pairs `(x0, x1)` from `offset` on become
    /// `(x0·cos θ - x1·sin θ, x0·sin θ + x1·cos θ)` with
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
        rope(self, pos, factors, params, None, Kind::Forward)
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
        rope(self, pos, factors, params, None, Kind::Inplace)
    }

    /// The inverse rotation of [`Tensor::rope_ext`] (its gradient).
    ///
    /// # Errors
    /// As [`Tensor::rope_ext`].
    pub fn rope_ext_back(
        self,
        pos: Tensor<'ctx>,
        factors: Option<Tensor<'ctx>>,
        params: &Rope,
    ) -> Result<Tensor<'ctx>> {
        rope(self, pos, factors, params, None, Kind::Back)
    }

    /// Multi-section RoPE ([`RopeMode::Multi`], `MultiInterleaved`,
    /// `Vision`): `pos` holds four i32 positions per token (all the time
    /// positions, then the heights, widths and extras), `sections` how many
    /// rotated pairs take each.
    ///
    /// # Errors
    /// As [`Tensor::rope_ext`].
    pub fn rope_multi(
        self,
        pos: Tensor<'ctx>,
        factors: Option<Tensor<'ctx>>,
        sections: [i32; 4],
        params: &Rope,
    ) -> Result<Tensor<'ctx>> {
        rope(self, pos, factors, params, Some(sections), Kind::Forward)
    }

    /// [`Tensor::rope_multi`] in place.
    ///
    /// # Errors
    /// As [`Tensor::rope_ext_inplace`].
    pub fn rope_multi_inplace(
        self,
        pos: Tensor<'ctx>,
        factors: Option<Tensor<'ctx>>,
        sections: [i32; 4],
        params: &Rope,
    ) -> Result<Tensor<'ctx>> {
        rope(self, pos, factors, params, Some(sections), Kind::Inplace)
    }

    /// The inverse rotation of [`Tensor::rope_multi`].
    ///
    /// # Errors
    /// As [`Tensor::rope_ext`].
    pub fn rope_multi_back(
        self,
        pos: Tensor<'ctx>,
        factors: Option<Tensor<'ctx>>,
        sections: [i32; 4],
        params: &Rope,
    ) -> Result<Tensor<'ctx>> {
        rope(self, pos, factors, params, Some(sections), Kind::Back)
    }
}

/// The CPU's RoPE kernel (forward and back): f32 or f16 rows of dense
/// values and a result of the same type and shape; i32 positions (four per
/// token in the multi-section modes) and f32 factors as the builder checks;
/// the parameters within what its assertions and loops allow; rows counted
/// in `int`.
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
    let (n_dims, mode, n_offs) = (i64::from(p[1]), p[2] as u32, i64::from(p[15]));
    let ne0 = a.ne()[0];
    let multi = matches!(
        mode,
        ggml_sys::GGML_ROPE_TYPE_MROPE
            | ggml_sys::GGML_ROPE_TYPE_IMROPE
            | ggml_sys::GGML_ROPE_TYPE_VISION
    );
    if !multi
        && !matches!(
            mode,
            ggml_sys::GGML_ROPE_TYPE_NORMAL | ggml_sys::GGML_ROPE_TYPE_NEOX
        )
    {
        return Err("an unknown RoPE mode");
    }
    if n_dims <= 0
        || n_dims % 2 != 0
        || n_offs < 0
        || n_offs % 2 != 0
        || n_dims + n_offs > ne0
        || ne0 % 2 != 0
    {
        return Err("n_dims and the offset must be even, n_dims positive, within an even row");
    }
    if multi {
        let sections = &p[11..15];
        if sections.iter().any(|&s| s < 0)
            || sections[..3].iter().all(|&s| s <= 0)
            || sections.iter().map(|&s| i64::from(s)).sum::<i64>() > ne0
        {
            return Err(
                "sections must not be negative, one of the first three positive, adding up to at \
                 most the row length",
            );
        }
        if mode == ggml_sys::GGML_ROPE_TYPE_VISION && (n_dims * 2 != ne0 || n_offs != 0) {
            return Err("vision RoPE rotates half the row, no offset");
        }
    }
    let per_token = if multi { 4 } else { 1 };
    if pos.ty() != Type::I32 || !pos.rows_are_dense() || pos.len() as i64 != a.ne()[2] * per_token {
        return Err("positions must be dense i32, one (four) per item of ne[2]");
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
