//! Convolution building blocks, pooling and resampling: `im2col` (the
//! patches a convolution multiplies, 1-D or 2-D), the convolutions built
//! from it, `pool_1d` and `pool_2d` (average or maximum over windows),
//! `interpolate` and `upscale`.
//!
//! Rules checked here that ggml leaves to division by zero or to its
//! kernels: strides and dilations of at least 1, paddings not negative,
//! kernels of at least one element, outputs of at least one element;
//! `im2col`'s data f32 and contiguous (its kernel reads planes densely),
//! the result f16 or f32; pooling of f32 or f16 (the kernels' debug-only
//! assertion), rows reached at one stride, the 2-D form contiguous.

use crate::error::Result;
use crate::ops::conv_direct::conv_out;
use crate::ops::{fits_int, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The parameters of [`Tensor::im2col`]: per spatial dimension (width,
/// height) the stride, padding and dilation. (The bounds below are
/// `im2col`'s and its convolutions'; the direct convolutions of
/// [`conv_direct`](crate::ops::conv_direct) take any values but a zero stride.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    /// Strides (at least 1).
    pub stride: [i32; 2],
    /// Zero padding on each side (at least 0).
    pub padding: [i32; 2],
    /// Dilations (at least 1).
    pub dilation: [i32; 2],
}

impl Default for Conv {
    fn default() -> Self {
        Conv {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        }
    }
}

/// The pooling function of [`Tensor::pool_1d`] and [`Tensor::pool_2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The mean of the window's values inside the input.
    Avg,
    /// Their maximum.
    Max,
}

impl Pool {
    pub(crate) fn as_raw(self) -> ggml_sys::ggml_op_pool {
        match self {
            Pool::Avg => ggml_sys::GGML_OP_POOL_AVG,
            Pool::Max => ggml_sys::GGML_OP_POOL_MAX,
        }
    }
}

/// The declarations. Generic builders: strides, paddings and kernel sizes
/// from `Params::i`; bit 1 2-D; bit 2 f16 patches (`im2col`) or maximum
/// pooling.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "im2col",
        family: Family::Conv,
        builders: &["ggml_im2col"],
        op: ggml_sys::GGML_OP_IM2COL,
        arity: 2,
        cpu: cpu_im2col,
        backward: true,
        build: |_, t, p| {
            let c = Conv {
                stride: [p.i[0] as i32, p.i[1] as i32],
                padding: [p.i[2] as i32, p.i[3] as i32],
                dilation: [1, 1],
            };
            t[0].im2col(
                t[1],
                &c,
                p.flag(1),
                if p.flag(2) { Type::F16 } else { Type::F32 },
            )
        },
        raw: |_, ctx, t, p| {
            let ty = if p.flag(2) { Type::F16 } else { Type::F32 };
            let v = p.i.map(|x| x as i32);
            // SAFETY: none (the fuzzer's raw direction).
            unsafe {
                ggml_sys::ggml_im2col(
                    ctx,
                    t[0],
                    t[1],
                    v[0],
                    v[1],
                    v[2],
                    v[3],
                    1,
                    1,
                    p.flag(1),
                    ty.as_raw(),
                )
            }
        },
        ..BASE
    },
    Decl {
        name: "pool_1d",
        family: Family::Conv,
        builders: &["ggml_pool_1d"],
        op: ggml_sys::GGML_OP_POOL_1D,
        arity: 1,
        cpu: cpu_pool,
        build: |_, t, p| {
            t[0].pool_1d(
                if p.flag(2) { Pool::Max } else { Pool::Avg },
                p.i[0],
                p.i[1],
                p.i[2],
            )
        },
        ..BASE
    },
    Decl {
        name: "pool_2d",
        family: Family::Conv,
        builders: &["ggml_pool_2d"],
        op: ggml_sys::GGML_OP_POOL_2D,
        arity: 1,
        cpu: cpu_pool,
        build: |_, t, p| {
            let op = if p.flag(2) { Pool::Max } else { Pool::Avg };
            t[0].pool_2d(op, [p.i[0], p.i[0]], [p.i[1], p.i[1]], [p.i[2], p.i[3]])
        },
        ..BASE
    },
];

/// The convolutions ggml builds from `im2col` and `mul_mat`: declared
/// here, computed by the nodes they are made of (the generic builder makes
/// `conv_2d`).
pub(crate) const COMPOSED: &[Decl] = &[Decl {
    name: "conv",
    family: Family::Conv,
    builders: &[
        "ggml_conv_1d",
        "ggml_conv_1d_dw",
        "ggml_conv_1d_dw_ph",
        "ggml_conv_2d",
        "ggml_conv_2d_dw",
        "ggml_conv_2d_s1_ph",
        "ggml_conv_2d_sk_p0",
    ],
    op: ggml_sys::GGML_OP_IM2COL,
    arity: 2,
    cpu: cpu_im2col,
    build: |_, t, p| {
        let c = Conv {
            stride: [p.i[0] as i32, p.i[1] as i32],
            padding: [p.i[2] as i32, p.i[3] as i32],
            dilation: [1, 1],
        };
        t[0].conv_2d(t[1], &c)
    },
    ..BASE
}];

/// ggml's pooled size, `(ins + 2p - k) / s + 1`, computed as it computes
/// it: in f32 (its padding is a float), truncated to an integer at the end
/// (so a window longer than the padded row gives 0, not 1).
fn pool_output_size(ins: i64, k: i64, s: i64, p: i64) -> i64 {
    ((ins as f32 + 2.0 * p as f32 - k as f32) / s as f32 + 1.0) as i64
}

impl<'ctx> Tensor<'ctx> {
    /// The patches a convolution of kernel `self` over `data` multiplies:
    /// 2-D (`self` `[KW, KH, C, OC]`, `data` f32 `[W, H, C, N]`) gives
    /// `[KW·KH·C, OW, OH, N]`; 1-D (`self` `[KW, C, OC]`, `data` `[W, C, N]`)
    /// gives `[KW·C, OW, N]`, of type `ty` (f16 or f32). Only the kernel's
    /// shape is read.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for the rules of the module docs or
    /// shapes that do not fit; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn im2col(
        self,
        data: Tensor<'ctx>,
        conv: &Conv,
        two_d: bool,
        ty: Type,
    ) -> Result<Tensor<'ctx>> {
        let operands = [self, data];
        let rules = Rules::new("im2col", &operands)?;
        let (na, nb) = (self.ne(), data.ne());
        let Conv {
            stride,
            padding,
            dilation,
        } = *conv;
        let dims = if two_d { 2 } else { 1 };
        rules.require((0..dims).all(|i| stride[i] >= 1 && dilation[i] >= 1 && padding[i] >= 0), || {
            format!("strides {stride:?} and dilations {dilation:?} at least 1, paddings {padding:?} at least 0")
        })?;
        rules.require(na[0] >= 1 && (!two_d || na[1] >= 1), || {
            "a kernel of at least one element".into()
        })?;
        if two_d {
            rules.require(na[2] == nb[2], || {
                "the kernel's channels (ne[2]) must be the data's".into()
            })?;
        } else {
            rules.require(nb[1] == na[1] && nb[3] == 1, || {
                "the kernel's channels (ne[1]) must be the data's; data 3-D".into()
            })?;
        }
        // As ggml computes them (2p in int): no output (0, refused) where
        // that overflows, as a padding of 2^30 or more does.
        let size = |i: usize| {
            conv_out(nb[i], na[i], stride[i], padding[i], dilation[i]).map_or(0, i128::from)
        };
        let ow = size(0);
        let oh = if two_d { size(1) } else { 1 };
        rules.require(
            ow > 0 && oh > 0 && ow <= i128::from(i32::MAX) && oh <= i128::from(i32::MAX),
            || {
                "the data is too small for the kernel (no output), or the sizes overflow \
                 ggml's arithmetic (paddings of 2^30 or more)"
                    .into()
            },
        )?;
        rules.require(data.ty() == Type::F32 && data.is_contiguous(), || {
            "the data must be contiguous f32".into()
        })?;
        rules.require(matches!(ty, Type::F16 | Type::F32), || {
            "patches are f16 or f32".into()
        })?;
        let rows = if two_d {
            na[2].checked_mul(na[1]).and_then(|x| x.checked_mul(na[0]))
        } else {
            na[1].checked_mul(na[0])
        };
        let Some(rows) = rows.filter(|&r| fits_int(r)) else {
            return Err(rules.broken("the patch length overflows".into()));
        };
        let ne = if two_d {
            [rows, ow as i64, oh as i64, nb[3]]
        } else {
            [rows, ow as i64, nb[2], 1]
        };
        rules.reserve_result(ty, &ne, None)?;
        let [s0, s1] = stride;
        let [p0, p1] = padding;
        let [d0, d1] = dilation;
        // SAFETY: live tensors meeting ggml_im2col's assertions (matching
        // channels, positive output sizes) with no zero divisor; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_im2col(
                rules.context().as_ptr(),
                self.as_ptr(),
                data.as_ptr(),
                s0,
                s1,
                p0,
                p1,
                d0,
                d1,
                two_d,
                ty.as_raw(),
            )
        })
    }

    /// A 1-D convolution of `data` (`[L, IC, N]`, contiguous f32) with this
    /// kernel (`[K, IC, OC]`, contiguous f16 or f32): f32 `[OL, OC, N]`.
    /// Built as ggml's `ggml_conv_1d` builds it: f16 patches
    /// ([`Tensor::im2col`]) times the kernel ([`Tensor::mul_mat`]); every
    /// step checked. As with ggml's builder, for `N > 1` the values are laid
    /// out `[OL, N, OC]` under the `[OL, OC, N]` shape (its final reshape
    /// does not transpose).
    ///
    /// # Errors
    /// Those of `im2col`, `reshape` and `mul_mat` for these operands.
    pub fn conv_1d(
        self,
        data: Tensor<'ctx>,
        stride: i32,
        padding: i32,
        dilation: i32,
    ) -> Result<Tensor<'ctx>> {
        let conv = Conv {
            stride: [stride, 1],
            padding: [padding, 0],
            dilation: [dilation, 1],
        };
        let ty = if self.ty() == Type::BF16 {
            Type::F32
        } else {
            Type::F16
        };
        let cols = self.im2col(data, &conv, false, ty)?; // [IC·K, OL, N]
        let cn = cols.ne();
        let na = self.ne();
        let lhs = cols.reshape(&[shape(cn[2] * cn[1]), shape(cn[0])])?;
        let rhs = self.reshape(&[shape(na[2]), shape(na[0] * na[1])])?;
        lhs.mul_mat(rhs)?
            .reshape(&[shape(cn[2]), shape(na[2]), shape(cn[1])])
    }

    /// [`Tensor::conv_1d`] of each channel with its own kernel (depthwise,
    /// `ggml_conv_1d_dw`): this kernel `[K, 1, C]`, `data` `[L, C]`.
    ///
    /// # Errors
    /// As [`Tensor::conv_1d`].
    pub fn conv_1d_dw(
        self,
        data: Tensor<'ctx>,
        stride: i32,
        padding: i32,
        dilation: i32,
    ) -> Result<Tensor<'ctx>> {
        let nb = data.ne();
        let new_b = data.reshape(&[shape(nb[2]), shape(nb[1]), 1, shape(nb[0])])?;
        let conv = Conv {
            stride: [stride, 1],
            padding: [padding, 0],
            dilation: [dilation, 1],
        };
        let ty = if self.ty() == Type::BF16 {
            Type::F32
        } else {
            Type::F16
        };
        let cols = self.im2col(new_b, &conv, false, ty)?;
        let r = cols.mul_mat(self)?;
        let rn = r.ne();
        r.reshape(&[shape(rn[2]), shape(rn[0])])
    }

    /// [`Tensor::conv_1d_dw`] with half the kernel as padding
    /// (`ggml_conv_1d_dw_ph`).
    ///
    /// # Errors
    /// As [`Tensor::conv_1d`].
    pub fn conv_1d_dw_ph(
        self,
        data: Tensor<'ctx>,
        stride: i32,
        dilation: i32,
    ) -> Result<Tensor<'ctx>> {
        let half = (self.ne()[0] / 2).min(i64::from(i32::MAX)) as i32;
        self.conv_1d_dw(data, stride, half, dilation)
    }

    /// A 2-D convolution of `data` (`[W, H, IC, N]`, contiguous f32) with
    /// this kernel (`[KW, KH, IC, OC]`, contiguous f16 or f32): f32
    /// `[OW, OH, OC, N]`, built as `ggml_conv_2d` builds it (f16 patches
    /// times the kernel, then a permutation); every step checked.
    ///
    /// # Errors
    /// Those of `im2col`, `reshape`, `mul_mat`, `permute` and `cont`.
    pub fn conv_2d(self, data: Tensor<'ctx>, conv: &Conv) -> Result<Tensor<'ctx>> {
        let ty = if self.ty() == Type::BF16 {
            Type::F32
        } else {
            Type::F16
        };
        let cols = self.im2col(data, conv, true, ty)?; // [IC·KH·KW, OW, OH, N]
        let cn = cols.ne();
        let na = self.ne();
        let lhs = cols.reshape(&[shape(cn[3] * cn[2] * cn[1]), shape(cn[0])])?;
        let rhs = self.reshape(&[shape(na[3]), shape(na[0] * na[1] * na[2])])?;
        let r =
            lhs.mul_mat(rhs)?
                .reshape(&[shape(na[3]), shape(cn[3]), shape(cn[2]), shape(cn[1])])?;
        r.permute([0, 1, 3, 2])?.cont()
    }

    /// [`Tensor::conv_2d`] with stride 1 and half the kernel as padding
    /// (`ggml_conv_2d_s1_ph`).
    ///
    /// # Errors
    /// As [`Tensor::conv_2d`].
    pub fn conv_2d_s1_ph(self, data: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let na = self.ne();
        let half = |n: i64| (n / 2).min(i64::from(i32::MAX)) as i32;
        self.conv_2d(
            data,
            &Conv {
                stride: [1, 1],
                padding: [half(na[0]), half(na[1])],
                dilation: [1, 1],
            },
        )
    }

    /// [`Tensor::conv_2d`] with the kernel as stride and no padding
    /// (`ggml_conv_2d_sk_p0`: patches side by side).
    ///
    /// # Errors
    /// As [`Tensor::conv_2d`].
    pub fn conv_2d_sk_p0(self, data: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let na = self.ne();
        let k = |n: i64| n.clamp(0, i64::from(i32::MAX)) as i32;
        self.conv_2d(
            data,
            &Conv {
                stride: [k(na[0]), k(na[1])],
                padding: [0, 0],
                dilation: [1, 1],
            },
        )
    }

    /// A depthwise 2-D convolution (`ggml_conv_2d_dw`): this kernel
    /// `[KW, KH, 1, C]` applied to each channel of `data` `[W, H, C, N]`.
    ///
    /// # Errors
    /// As [`Tensor::conv_2d`].
    pub fn conv_2d_dw(self, data: Tensor<'ctx>, conv: &Conv) -> Result<Tensor<'ctx>> {
        let (na, nb) = (self.ne(), data.ne());
        let new_a = self.reshape(&[shape(na[2] * na[3]), 1, shape(na[1]), shape(na[0])])?;
        let new_data = data.reshape(&[shape(nb[2] * nb[3]), 1, shape(nb[1]), shape(nb[0])])?;
        let ty = if self.ty() == Type::BF16 {
            Type::F32
        } else {
            Type::F16
        };
        let cols = new_a.im2col(new_data, conv, true, ty)?; // [KH·KW, OW, OH, N·C]
        let cn = cols.ne();
        let new_b = cols.reshape(&[
            shape(nb[3]),
            shape(nb[2]),
            shape(cn[2] * cn[1]),
            shape(cn[0]),
        ])?;
        let nn = new_a.ne();
        let new_a = new_a.reshape(&[1, shape(nn[3]), shape(nn[2]), shape(nn[0] * nn[1])])?;
        new_a
            .mul_mat(new_b)?
            .reshape(&[shape(nb[3]), shape(nb[2]), shape(cn[2]), shape(cn[1])])
    }

    /// Pooling of each row over windows of `k` values every `s`, with `p`
    /// values of padding each side: f32 `[(ne0 + 2p - k) / s + 1, ne1, ...]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for the rules of the module docs;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn pool_1d(self, op: Pool, k: i64, s: i64, p: i64) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("pool_1d", &operands)?;
        let ne = self.ne();
        let int = |x: i64| (0..=i64::from(i32::MAX)).contains(&x);
        rules.require(
            k >= 1 && s >= 1 && p >= 0 && int(k) && int(s) && int(p) && p <= k,
            || format!("k {k} and s {s} at least 1, p {p} from 0 to k"),
        )?;
        let out = i128::from(pool_output_size(ne[0], k, s, p));
        rules.require(out > 0 && out <= i128::from(i32::MAX), || {
            "the rows are too short for the window (no output)".into()
        })?;
        rules.reserve_result(Type::F32, &[out as i64, ne[1], ne[2], ne[3]], None)?;
        // SAFETY: a live tensor, positive window, stride and output size
        // (the builder's assertion, no zero divisor); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_pool_1d(
                rules.context().as_ptr(),
                self.as_ptr(),
                op.as_raw(),
                k as i32,
                s as i32,
                p as i32,
            )
        })
    }

    /// Pooling of each plane (ggml's dimensions 0 and 1) over windows of
    /// `k` every `s`, with `p` padding each side: f32.
    ///
    /// # Errors
    /// As [`Tensor::pool_1d`].
    pub fn pool_2d(self, op: Pool, k: [i64; 2], s: [i64; 2], p: [i64; 2]) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("pool_2d", &operands)?;
        let ne = self.ne();
        let int = |x: i64| (0..=i64::from(i32::MAX)).contains(&x);
        let mut out = [0i64; 2];
        for i in 0..2 {
            rules.require(
                k[i] >= 1
                    && s[i] >= 1
                    && p[i] >= 0
                    && int(k[i])
                    && int(s[i])
                    && int(p[i])
                    && p[i] <= k[i],
                || format!("k {k:?} and s {s:?} at least 1, p {p:?} from 0 to k"),
            )?;
            let o = i128::from(pool_output_size(ne[i], k[i], s[i], p[i]));
            rules.require(o > 0 && o <= i128::from(i32::MAX), || {
                "the planes are too small for the window (no output)".into()
            })?;
            out[i] = o as i64;
        }
        rules.reserve_result(Type::F32, &[out[0], out[1], ne[2], ne[3]], None)?;
        // SAFETY: a live tensor, positive windows, strides and output sizes
        // (the builder's assertions, no zero divisor); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_pool_2d(
                rules.context().as_ptr(),
                self.as_ptr(),
                op.as_raw(),
                k[0] as i32,
                k[1] as i32,
                s[0] as i32,
                s[1] as i32,
                p[0] as f32,
                p[1] as f32,
            )
        })
    }
}

/// An ndarray dimension of a ggml one (shapes made from tensors' own
/// dimensions, never negative).
fn shape(n: i64) -> usize {
    n.max(0) as usize
}

/// The CPU's `im2col`: contiguous f32 data, an f16 or f32 contiguous result.
fn cpu_im2col(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [_, data] = crate::ops::sources::<2>(node)?;
    if data.ty() != Type::F32
        || !data.is_contiguous()
        || !matches!(node.ty(), Type::F16 | Type::F32)
        || !node.is_contiguous()
    {
        return Err("the CPU takes contiguous f32 data into contiguous f16 or f32 patches");
    }
    let p = node.op_params();
    if p[0] < 1 || p[4] < 1 || (p[6] == 1 && (p[1] < 1 || p[5] < 1)) {
        return Err("strides and dilations at least 1");
    }
    Ok(())
}

/// The CPU's pooling: f32 or f16 input (rows at one stride; 2-D contiguous),
/// an f32 result, average or maximum, positive window and stride.
fn cpu_pool(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if !matches!(a.ty(), Type::F32 | Type::F16) || node.ty() != Type::F32 || !node.is_contiguous() {
        return Err("the CPU pools f32 and f16 into f32");
    }
    let two_d = node.op() == ggml_sys::GGML_OP_POOL_2D;
    if !a.rows_are_dense()
        || !crate::ops::glu::rows_at_one_stride(&a)
        || (two_d && !a.is_contiguous())
    {
        return Err("rows at one stride (2-D: contiguous)");
    }
    let p = node.op_params();
    let known = matches!(
        p[0] as u32,
        ggml_sys::GGML_OP_POOL_AVG | ggml_sys::GGML_OP_POOL_MAX
    );
    let (k, s) = if two_d {
        (&p[1..3], &p[3..5])
    } else {
        (&p[1..2], &p[2..3])
    };
    if !known || k.iter().chain(s).any(|&v| v < 1) {
        return Err("average or maximum over positive windows and strides");
    }
    Ok(())
}

/// How [`Tensor::interpolate`] samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interpolation {
    /// The nearest value.
    Nearest,
    /// Bilinear; `antialias` filters when shrinking (as PyTorch's).
    Bilinear {
        /// Filter when shrinking.
        antialias: bool,
    },
    /// Bicubic.
    Bicubic,
}

/// The declarations of resampling.
pub(crate) const RESAMPLE: &[Decl] = &[Decl {
    name: "interpolate",
    family: Family::Conv,
    builders: &["ggml_interpolate", "ggml_upscale"],
    op: ggml_sys::GGML_OP_UPSCALE,
    arity: 1,
    cpu: cpu_interpolate,
    build: |_, t, p| {
        let mode = match p.i[3].rem_euclid(3) {
            0 => Interpolation::Nearest,
            1 => Interpolation::Bilinear {
                antialias: p.flag(2),
            },
            _ => Interpolation::Bicubic,
        };
        let ne = t[0].ne();
        t[0].interpolate([p.i[0], p.i[1], ne[2], ne[3]], mode, p.flag(1))
    },
    ..BASE
}];

impl<'ctx> Tensor<'ctx> {
    /// This f32 tensor resampled to ggml's shape `ne` (`align_corners`:
    /// corner values map onto corners).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for another type, dimensions of 2^23
    /// or more (ggml computes source indices in f32: larger ones may round
    /// past the end), an empty tensor resampled to a non-empty shape;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn interpolate(
        self,
        ne: [i64; 4],
        mode: Interpolation,
        align_corners: bool,
    ) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("interpolate", &operands)?;
        let na = self.ne();
        rules.require(self.ty() == Type::F32, || "ggml resamples f32".into())?;
        let exact = 1i64 << 23;
        rules.require(
            ne.iter().chain(&na).all(|&n| (0..exact).contains(&n)),
            || format!("dimensions 0 to 2^23 (ggml's source indices are f32): {ne:?} from {na:?}"),
        )?;
        rules.require(!self.is_empty() || ne.contains(&0), || {
            "an empty tensor resamples only to an empty shape".into()
        })?;
        let mut raw = match mode {
            Interpolation::Nearest => ggml_sys::GGML_SCALE_MODE_NEAREST,
            Interpolation::Bilinear { antialias } => {
                ggml_sys::GGML_SCALE_MODE_BILINEAR
                    | if antialias {
                        ggml_sys::GGML_SCALE_FLAG_ANTIALIAS
                    } else {
                        0
                    }
            }
            Interpolation::Bicubic => ggml_sys::GGML_SCALE_MODE_BICUBIC,
        };
        if align_corners {
            raw |= ggml_sys::GGML_SCALE_FLAG_ALIGN_CORNERS;
        }
        rules.reserve_result(Type::F32, &ne, None)?;
        // SAFETY: a live f32 tensor, a mode ggml knows (antialias only with
        // bilinear), sizes whose f32 index arithmetic stays in bounds; room
        // reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_interpolate(
                rules.context().as_ptr(),
                self.as_ptr(),
                ne[0],
                ne[1],
                ne[2],
                ne[3],
                raw,
            )
        })
    }

    /// This f32 tensor's first two dimensions scaled up by an integer
    /// `factor` (at least 2), nearest or bilinear (`ggml_upscale`).
    ///
    /// # Errors
    /// As [`Tensor::interpolate`]; [`Error::Op`](crate::Error::Op) for a
    /// factor below 2.
    pub fn upscale(self, factor: i64, mode: Interpolation) -> Result<Tensor<'ctx>> {
        let ne = self.ne();
        let scaled = |n: i64| n.checked_mul(factor);
        match (factor >= 2, scaled(ne[0]), scaled(ne[1])) {
            (true, Some(a), Some(b)) => self.interpolate([a, b, ne[2], ne[3]], mode, false),
            _ => {
                let operands = [self];
                Err(Rules::new("upscale", &operands)?
                    .broken(format!("factor {factor} must be at least 2")))
            }
        }
    }
}

/// The CPU's resampling: f32 in and out, a known mode, dimensions below
/// 2^23, a non-empty source for a non-empty result.
fn cpu_interpolate(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if a.ty() != Type::F32 || node.ty() != Type::F32 {
        return Err("the CPU resamples f32");
    }
    let mode = node.op_params()[0] as u32;
    let base = mode & 0xFF;
    let antialias = mode & ggml_sys::GGML_SCALE_FLAG_ANTIALIAS != 0;
    if base >= ggml_sys::GGML_SCALE_MODE_COUNT
        || (antialias && base != ggml_sys::GGML_SCALE_MODE_BILINEAR)
    {
        return Err("an unknown resampling mode");
    }
    let exact = 1i64 << 23;
    if a.ne().iter().chain(&node.ne()).any(|&n| n >= exact) || (a.is_empty() && !node.is_empty()) {
        return Err("dimensions below 2^23, a non-empty source");
    }
    Ok(())
}
