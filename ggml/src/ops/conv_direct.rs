//! Direct convolution kernels, transposed convolutions and the gradients of
//! im2col and pooling: `conv_transpose_1d`, `conv_transpose_2d_p0`,
//! `conv_2d_direct`, `conv_2d_dw_direct`, `conv_3d_direct`, `im2col_3d` and
//! `conv_3d` (built from it), `col2im_1d`, `im2col_back`, `pool_2d_back`.
//!
//! Every convolution here computes its definition for any parameters its
//! builder accepts, `out[x] = Σ_k in[x·s + k·d − p] · w[k]` (zero outside the
//! input), so strides, paddings and dilations are taken as given: a stride
//! of 0 (ggml divides by it), paddings of 2^30 or more (ggml doubles them in
//! `int`) and output sizes below 0 are refused.
//!
//! Rules checked here beyond ggml's builders, which their CPU kernels assume
//! without checking:
//! - types: the direct kernels read the data and write the result as f32
//!   whatever their types (the data must be f32); kernels f16 or f32, and
//!   `col2im_1d` f32, f16 or bf16, as the kernels implement;
//! - layouts: the kernels of `conv_2d_direct` and `conv_3d_direct` contiguous
//!   (their kernels assert it); the transposed convolutions' kernels with
//!   dense (2-D: packed) rows, their data with dense rows; the depthwise
//!   kernel's data WHCN-contiguous with a contiguous kernel, or CWHN-packed
//!   (a permuted contiguous tensor) with a kernel packed the same way (its
//!   kernel reads both densely); the gradients contiguous f32;
//! - work buffers: a patch of `conv_2d_direct` and `conv_3d_direct` (kernel
//!   elements and one f32 per output channel) fits the kernels' 16 MiB
//!   work buffer (they assert it);
//! - transposed convolutions: strides of at least 0 (a negative one writes
//!   before the result);
//! - `im2col_back`: strides not 0 (it takes them modulo), the gradient of
//!   the shape the result's im2col makes (it reads it densely), in 1-D a
//!   result of 3 dimensions (a 4th would stay unwritten);
//! - `pool_2d_back`: the gradient contiguous f32 with the input's planes,
//!   for the maximum the input contiguous f32 (read with the result's
//!   strides);
//! - `int`: every dimension, count and index the kernels hold in C `int`
//!   fits it.

use crate::error::Result;
use crate::ops::conv::{Conv, Pool};
use crate::ops::{sources, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// What a check found wrong (the rule, in words).
type Check<T> = std::result::Result<T, &'static str>;

/// ggml's `GGML_IM2COL_WORK_SIZE`: the CPU's work buffer for `CONV_2D` and
/// `CONV_3D`, which one patch must fit.
const WORK_BYTES: i128 = 16 << 20;

/// The parameters of the 3-D convolutions ([`Tensor::conv_3d`],
/// [`Tensor::conv_3d_direct`], [`Tensor::im2col_3d`]): per spatial
/// dimension (width, height, depth) the stride, zero padding and dilation.
/// Any values but a stride of 0 and paddings of 2^30 or more in magnitude
/// (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3d {
    /// Strides (not 0).
    pub stride: [i32; 3],
    /// Zero padding on each side (a negative padding crops).
    pub padding: [i32; 3],
    /// Dilations.
    pub dilation: [i32; 3],
}

impl Default for Conv3d {
    fn default() -> Self {
        Conv3d {
            stride: [1, 1, 1],
            padding: [0, 0, 0],
            dilation: [1, 1, 1],
        }
    }
}

/// `ggml_calc_conv_output_size`, `(ins + 2p - d(k - 1) - 1) / s + 1`, as
/// ggml computes it (`2p` in `int`, the rest in `i64`, division truncating);
/// `None` where that divides by zero or overflows.
pub(super) fn conv_out(ins: i64, k: i64, s: i32, p: i32, d: i32) -> Option<i64> {
    if s == 0 {
        return None;
    }
    let span = i64::from(d).checked_mul(k.checked_sub(1)?)?;
    ins.checked_add(p.checked_mul(2)?.into())?
        .checked_sub(span)?
        .checked_sub(1)?
        .checked_div(s.into())?
        .checked_add(1)
}

/// Output sizes of a convolution over `ins` with kernel sizes `ks` (at
/// least 0 each; `min` for ggml's builders that assert a positive size).
fn conv_outs<const N: usize>(
    ins: [i64; N],
    ks: [i64; N],
    s: [i32; N],
    p: [i32; N],
    d: [i32; N],
    min: i64,
) -> Check<[i64; N]> {
    let mut out = [0; N];
    for i in 0..N {
        out[i] = conv_out(ins[i], ks[i], s[i], p[i], d[i])
            .ok_or("strides not 0, paddings below 2^30 in magnitude, sizes within i64")?;
        if out[i] < min {
            return Err(if min > 0 {
                "the data is too small for the kernel (no output)"
            } else {
                "the data is too small for the kernel (a negative output size)"
            });
        }
    }
    Ok(out)
}

/// Whether `n` is a C `int` of at least 0.
fn int(n: i128) -> bool {
    (0..=i128::from(i32::MAX)).contains(&n)
}

/// The product of `dims`, exactly.
fn product(dims: &[i64]) -> i128 {
    dims.iter()
        .fold(1i128, |acc, &d| acc.saturating_mul(d.into()))
}

/// Whether `t` (of a type of one element a block) is packed densely with
/// its dimensions in `order`, fastest first (dimensions of 1 do not move).
fn packed_in(t: &Tensor<'_>, order: [usize; 4]) -> bool {
    let (ne, nb) = (t.ne(), t.nb());
    let mut next = t.ty().type_size();
    for i in order {
        if ne[i] != 1 && nb[i] != next {
            return false;
        }
        next = next.saturating_mul(ne[i] as usize);
    }
    true
}

/// ggml's `ggml_is_contiguous_channels` (the CWHN layout its depthwise
/// builder and kernel look for).
fn contiguous_channels(t: &Tensor<'_>) -> bool {
    let nb = t.nb();
    nb[0] > nb[2] && nb[1] > nb[0] && nb[2] == t.ty().type_size()
}

/// The kernel types of the direct and transposed convolutions.
fn f16_or_f32(t: &Tensor<'_>) -> bool {
    matches!(t.ty(), Type::F16 | Type::F32)
}

/// Checks that a node is a dense tensor of `ty` and shape `ne` (the ops here
/// make fresh results), as the kernels write it.
fn dense_result(node: &Tensor<'_>, ne: [i64; 4], ty: Type) -> Check<()> {
    if node.ty() != ty || node.ne() != ne || !node.is_contiguous() {
        return Err("a dense result of the op's type and shape");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The rules of each op: shared by its builder and its kernel contract.

/// `conv_transpose_1d`: the result's shape.
fn conv_transpose_1d_rules(
    a: &Tensor<'_>,
    b: &Tensor<'_>,
    s: i32,
    p: i32,
    d: i32,
) -> Check<[i64; 4]> {
    let (na, nb) = (a.ne(), b.ne());
    if nb[2] != 1 || nb[3] != 1 || na[3] != 1 || na[2] != nb[1] {
        return Err("data a matrix [L, Cin], the kernel [K, Cout, Cin] of the same Cin");
    }
    if p != 0 || d != 1 {
        return Err("padding 0 and dilation 1 (all ggml implements)");
    }
    if s < 0 {
        return Err("a stride of at least 0 (ggml writes a negative one out of bounds)");
    }
    if !f16_or_f32(a) || b.ty() != Type::F32 {
        return Err("an f16 or f32 kernel, f32 data");
    }
    if a.nb()[0] != a.ty().type_size() || b.nb()[0] != 4 {
        return Err("kernel and data with dense rows");
    }
    let ol = (i128::from(nb[0]) - 1) * i128::from(s) + i128::from(na[0]);
    if !int(ol)
        || !na.iter().chain(&nb).all(|&n| int(n.into()))
        || !int(product(&na[..3]))
        || !int(product(&nb[..2]))
    {
        return Err("sizes within int (the output length, K·Cout·Cin, L·Cin; at least 0)");
    }
    Ok([ol as i64, na[1], 1, 1])
}

/// `conv_transpose_2d_p0`: the result's shape.
fn conv_transpose_2d_rules(a: &Tensor<'_>, b: &Tensor<'_>, s: i32) -> Check<[i64; 4]> {
    let (na, nb) = (a.ne(), b.ne());
    if na[3] != nb[2] {
        return Err("the kernel [KW, KH, Cout, Cin] and data [W, H, Cin, N] of the same Cin");
    }
    if s < 0 {
        return Err("a stride of at least 0 (ggml writes a negative one out of bounds)");
    }
    if !f16_or_f32(a) || b.ty() != Type::F32 {
        return Err("an f16 or f32 kernel, f32 data");
    }
    let ts = a.ty().type_size();
    if a.nb()[0] != ts || (na[1] > 1 && a.nb()[1] != ts * na[0] as usize) || b.nb()[0] != 4 {
        return Err("the kernel's rows packed (its planes read densely), the data's rows dense");
    }
    let out = |i: usize| (i128::from(nb[i]) - 1) * i128::from(s) + i128::from(na[i]);
    let (ow, oh) = (out(0), out(1));
    if !int(ow)
        || !int(oh)
        || !na.iter().chain(&nb).all(|&n| int(n.into()))
        || !int(product(&na))
        || !int(product(&nb[..3]))
    {
        return Err("sizes within int (the output plane, KW·KH·Cout·Cin, W·H·Cin; at least 0)");
    }
    Ok([ow as i64, oh as i64, na[2], nb[3]])
}

/// `conv_2d_direct`: the result's shape.
fn conv_2d_direct_rules(a: &Tensor<'_>, b: &Tensor<'_>, c: &Conv) -> Check<[i64; 4]> {
    let (na, nb) = (a.ne(), b.ne());
    if na[2] != nb[2] {
        return Err("the kernel [KW, KH, C, OC] and data [W, H, C, N] of the same C");
    }
    if na[..3].iter().any(|&n| n < 1) {
        return Err("a kernel of at least one element a patch");
    }
    if !f16_or_f32(a) || !a.is_contiguous() || b.ty() != Type::F32 {
        return Err("a contiguous f16 or f32 kernel, f32 data");
    }
    let patch = product(&na[..3]) * a.ty().type_size() as i128 + i128::from(na[3]) * 4;
    if patch > WORK_BYTES {
        return Err("a patch (KW·KH·C kernel values and OC f32) within ggml's 16 MiB work buffer");
    }
    let [ow, oh] = conv_outs(
        [nb[0], nb[1]],
        [na[0], na[1]],
        c.stride,
        c.padding,
        c.dilation,
        0,
    )?;
    Ok([ow, oh, na[3], nb[3]])
}

/// `conv_2d_dw_direct`: the result's shape and whether the data is laid out
/// CWHN (else WHCN).
fn conv_2d_dw_rules(a: &Tensor<'_>, b: &Tensor<'_>, c: &Conv) -> Check<([i64; 4], bool)> {
    let (na, nb) = (a.ne(), b.ne());
    if na[2] != 1 || na[3] != nb[2] {
        return Err("the kernel [KW, KH, 1, C] and data [W, H, C, N] of the same C");
    }
    if !f16_or_f32(a) || b.ty() != Type::F32 {
        return Err("an f16 or f32 kernel, f32 data");
    }
    let [ow, oh] = conv_outs(
        [nb[0], nb[1]],
        [na[0], na[1]],
        c.stride,
        c.padding,
        c.dilation,
        0,
    )?;
    let cwhn = if b.is_contiguous() {
        if !a.is_contiguous() {
            return Err("with WHCN data, a contiguous kernel (read densely)");
        }
        // ggml lays the result out CWHN for such data, then writes it WHCN.
        if contiguous_channels(b) && nb[2] > 1 && i128::from(ow) * i128::from(oh) > 1 {
            return Err(
                "data both contiguous and CWHN by ggml's tests (its result would be permuted)",
            );
        }
        false
    } else if contiguous_channels(b) {
        let nbk = a.nb();
        if !packed_in(b, [2, 0, 1, 3])
            || !packed_in(a, [3, 0, 1, 2])
            || nbk[0] < nbk[2]
            || nbk[1] < nbk[0]
        {
            return Err(
                "with CWHN data, data and kernel packed channels first (both read densely)",
            );
        }
        true
    } else {
        return Err("data contiguous (WHCN) or a permuted contiguous tensor (CWHN)");
    };
    Ok(([ow, oh, nb[2], nb[3]], cwhn))
}

/// `conv_3d_direct`: the result's shape, the batch and output channels.
fn conv_3d_direct_rules(
    a: &Tensor<'_>,
    b: &Tensor<'_>,
    ic: i64,
    c: &Conv3d,
) -> Check<([i64; 4], i64, i64)> {
    let (na, nb) = (a.ne(), b.ne());
    if !int(ic.into()) || ic < 1 || na[3] % ic != 0 || nb[3] % ic != 0 {
        return Err(
            "C from 1 to i32::MAX channels; kernel [KW, KH, KD, OC·C], data [W, H, D, N·C]",
        );
    }
    let (oc, n) = (na[3] / ic, nb[3] / ic);
    if na[..3].iter().any(|&k| k < 1) {
        return Err("a kernel of at least one element a patch");
    }
    if !f16_or_f32(a) || !a.is_contiguous() || b.ty() != Type::F32 {
        return Err("a contiguous f16 or f32 kernel, f32 data");
    }
    let patch =
        product(&[na[0], na[1], na[2], ic]) * a.ty().type_size() as i128 + i128::from(oc) * 4;
    if patch > WORK_BYTES {
        return Err(
            "a patch (KW·KH·KD·C kernel values and OC f32) within ggml's 16 MiB work buffer",
        );
    }
    if !int(oc.into()) || !int(n.into()) {
        return Err("OC and N within int");
    }
    let [ow, oh, od] = conv_outs(
        [nb[0], nb[1], nb[2]],
        [na[0], na[1], na[2]],
        c.stride,
        c.padding,
        c.dilation,
        0,
    )?;
    let ne3 = oc.checked_mul(n).ok_or("OC·N within i64")?;
    Ok(([ow, oh, od, ne3], n, oc))
}

/// `im2col_3d`: the result's shape.
fn im2col_3d_rules(
    a: &Tensor<'_>,
    b: &Tensor<'_>,
    ic: i64,
    c: &Conv3d,
    ty: Type,
) -> Check<[i64; 4]> {
    let (na, nb) = (a.ne(), b.ne());
    if !int(ic.into()) || ic < 1 || nb[3] % ic != 0 {
        return Err("C from 1 to i32::MAX channels; data [W, H, D, N·C]");
    }
    let [ow, oh, od] = conv_outs(
        [nb[0], nb[1], nb[2]],
        [na[0], na[1], na[2]],
        c.stride,
        c.padding,
        c.dilation,
        1,
    )?;
    if !matches!(ty, Type::F16 | Type::F32) {
        return Err("patches are f16 or f32");
    }
    if b.ty() != Type::F32 || b.nb()[0] != 4 {
        return Err("f32 data with dense rows");
    }
    let rows = na[..3]
        .iter()
        .try_fold(ic, |acc, &k| acc.checked_mul(k))
        .ok_or("the patch length within i64")?;
    let ne3 = od.checked_mul(nb[3] / ic).ok_or("OD·N within i64")?;
    Ok([rows, ow, oh, ne3])
}

/// `col2im_1d`: the result's shape.
fn col2im_1d_rules(a: &Tensor<'_>, s: i32, oc: i32, p: i32) -> Check<[i64; 4]> {
    let na = a.ne();
    if na[2] != 1 || na[3] != 1 || !a.is_contiguous() {
        return Err("a contiguous matrix [K·OC, T_in]");
    }
    if !matches!(a.ty(), Type::F32 | Type::F16 | Type::BF16) {
        return Err("f32, f16 or bf16 columns");
    }
    // ggml doubles the padding in int.
    let Some(two_p) = p.checked_mul(2).filter(|_| p >= 0) else {
        return Err("padding from 0 to 2^30 (ggml doubles it in int)");
    };
    if s < 1 || oc < 1 {
        return Err("stride and channels at least 1");
    }
    let k = na[0] / i64::from(oc);
    if k < 1 || na[0] % i64::from(oc) != 0 {
        return Err("rows of K·OC values, K at least 1");
    }
    let stretched = (na[1] - 1)
        .checked_mul(s.into())
        .ok_or("the output length within i64")?;
    let t_out = stretched
        .checked_add(k)
        .and_then(|t| t.checked_sub(two_p.into()))
        .ok_or("the output length within i64")?;
    if t_out < 1 {
        return Err("an output of at least one step ((T_in - 1)·s + K - 2p)");
    }
    Ok([t_out, oc.into(), 1, 1])
}

/// `im2col_back` of the gradient `a` and kernel `b` into a result of shape
/// `ne`.
fn im2col_back_rules(
    a: &Tensor<'_>,
    b: &Tensor<'_>,
    ne: [i64; 4],
    c: &Conv,
    two_d: bool,
) -> Check<()> {
    let (na, nb) = (a.ne(), b.ne());
    if ne.iter().any(|&n| n < 0) || (!two_d && ne[3] != 1) {
        return Err("a result shape of sizes at least 0 (1-D: [W, C, N, 1])");
    }
    if c.stride[0] == 0 || (two_d && c.stride[1] == 0) {
        return Err("strides not 0 (ggml takes positions modulo them)");
    }
    if a.ty() != Type::F32 || !a.is_contiguous() || !matches!(b.ty(), Type::F32 | Type::F16) {
        return Err("a contiguous f32 gradient, an f32 or f16 kernel");
    }
    let shaped = if two_d {
        i128::from(na[0]) == product(&[ne[2], nb[1], nb[0]]) && na[3] == ne[3]
    } else {
        i128::from(na[0]) == product(&[ne[1], nb[0]]) && na[2] == ne[2] && na[3] == 1
    };
    if !shaped {
        return Err("the gradient of the patches: 2-D [C·KH·KW, OW, OH, N], 1-D [C·K, OW, N]");
    }
    // ggml holds the byte strides of channels and items in int.
    let (ofs1, ofs0) = if two_d {
        (
            product(&[ne[0], ne[1], 4]),
            product(&[ne[0], ne[1], ne[2], 4]),
        )
    } else {
        (product(&[ne[0], 4]), product(&[ne[0], ne[1], 4]))
    };
    let (channels, items) = if two_d {
        (ne[2], ne[3])
    } else {
        (ne[1], ne[2])
    };
    if (channels > 1 && !int(ofs1)) || (items > 1 && !int(ofs0)) {
        return Err("the result's channels and items below 2 GiB each");
    }
    Ok(())
}

/// The largest padding `pool_2d_back` takes: ggml passes it as a float.
const MAX_POOL_PAD: i64 = 1 << 24;

/// `pool_2d_back` of the gradient `a` onto the input `af`.
fn pool_2d_back_rules(
    a: &Tensor<'_>,
    af: &Tensor<'_>,
    max: bool,
    k: [i64; 2],
    s: [i64; 2],
    p: [i64; 2],
) -> Check<()> {
    let (na, nf) = (a.ne(), af.ne());
    if k.iter().chain(&s).any(|&v| v < 1 || !int(v.into()))
        || p.iter()
            .any(|&v| v.unsigned_abs() > MAX_POOL_PAD.unsigned_abs())
        || !int(product(&k))
    {
        return Err("windows and strides of 1 to i32::MAX (K0·K1 too), paddings within ±2^24");
    }
    if a.ty() != Type::F32 || !a.is_contiguous() || na[2] != nf[2] || na[3] != nf[3] {
        return Err("a contiguous f32 gradient [OW, OH, C, N] of the input's planes");
    }
    if max && (af.ty() != Type::F32 || !af.is_contiguous()) {
        return Err("for the maximum, a contiguous f32 input (read with the result's strides)");
    }
    // ggml indexes windows in int: -p + o·s + k for every output o.
    for i in 0..2 {
        let last = -i128::from(p[i])
            + (i128::from(na[i]) - 1).max(0) * i128::from(s[i])
            + i128::from(k[i]);
        if !int(na[i].into()) || !int(last) {
            return Err("window positions within int");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Kernel contracts: the same rules, read back from the node.

fn conv_params<const N: usize>(p: &[i32]) -> ([i32; N], [i32; N], [i32; N]) {
    let mut out = ([0; N], [0; N], [0; N]);
    out.0.copy_from_slice(&p[..N]);
    out.1.copy_from_slice(&p[N..2 * N]);
    out.2.copy_from_slice(&p[2 * N..3 * N]);
    out
}

fn cpu_conv_transpose_1d(node: &Tensor<'_>) -> Check<()> {
    let [a, b] = sources::<2>(node)?;
    let p = node.op_params();
    let ne = conv_transpose_1d_rules(&a, &b, p[0], p[1], p[2])?;
    dense_result(node, ne, Type::F32)
}

fn cpu_conv_transpose_2d(node: &Tensor<'_>) -> Check<()> {
    let [a, b] = sources::<2>(node)?;
    let ne = conv_transpose_2d_rules(&a, &b, node.op_params()[0])?;
    dense_result(node, ne, Type::F32)
}

/// The parameters CONV_2D and CONV_2D_DW nodes keep: s0, s1, p0, p1, d0, d1.
fn node_conv(node: &Tensor<'_>) -> Conv {
    let (stride, padding, dilation) = conv_params::<2>(&node.op_params()[..6]);
    Conv {
        stride,
        padding,
        dilation,
    }
}

fn cpu_conv_2d_direct(node: &Tensor<'_>) -> Check<()> {
    let [a, b] = sources::<2>(node)?;
    let ne = conv_2d_direct_rules(&a, &b, &node_conv(node))?;
    dense_result(node, ne, Type::F32)
}

fn cpu_conv_2d_dw(node: &Tensor<'_>) -> Check<()> {
    let [a, b] = sources::<2>(node)?;
    let (ne, cwhn) = conv_2d_dw_rules(&a, &b, &node_conv(node))?;
    if !cwhn {
        return dense_result(node, ne, Type::F32);
    }
    if node.ty() != Type::F32 || node.ne() != ne || !packed_in(node, [2, 0, 1, 3]) {
        return Err("a CWHN-packed f32 result for CWHN data");
    }
    Ok(())
}

fn node_conv3d(p: &[i32; 16]) -> Conv3d {
    let (stride, padding, dilation) = conv_params::<3>(&p[..9]);
    Conv3d {
        stride,
        padding,
        dilation,
    }
}

fn cpu_conv_3d_direct(node: &Tensor<'_>) -> Check<()> {
    let [a, b] = sources::<2>(node)?;
    let p = node.op_params();
    let (ne, n, oc) = conv_3d_direct_rules(&a, &b, p[9].into(), &node_conv3d(&p))?;
    if i64::from(p[10]) != n || i64::from(p[11]) != oc {
        return Err("batch and output channels of the operands' shapes");
    }
    dense_result(node, ne, Type::F32)
}

fn cpu_im2col_3d(node: &Tensor<'_>) -> Check<()> {
    let [a, b] = sources::<2>(node)?;
    let p = node.op_params();
    let ne = im2col_3d_rules(&a, &b, p[9].into(), &node_conv3d(&p), node.ty())?;
    dense_result(node, ne, node.ty())
}

fn cpu_col2im_1d(node: &Tensor<'_>) -> Check<()> {
    let [a] = sources::<1>(node)?;
    let p = node.op_params();
    let ne = col2im_1d_rules(&a, p[0], p[1], p[2])?;
    dense_result(node, ne, a.ty())
}

fn cpu_im2col_back(node: &Tensor<'_>) -> Check<()> {
    let [a, b] = sources::<2>(node)?;
    let p = node.op_params();
    let (stride, padding, dilation) = conv_params::<2>(&p[..6]);
    let conv = Conv {
        stride,
        padding,
        dilation,
    };
    let ne = node.ne();
    im2col_back_rules(&a, &b, ne, &conv, p[6] == 1)?;
    dense_result(node, ne, Type::F32)
}

fn cpu_pool_2d_back(node: &Tensor<'_>) -> Check<()> {
    let [a, af] = sources::<2>(node)?;
    let p = node.op_params();
    let max = match p[0] as u32 {
        ggml_sys::GGML_OP_POOL_MAX => true,
        ggml_sys::GGML_OP_POOL_AVG => false,
        _ => return Err("average or maximum pooling"),
    };
    let v = |i: usize| i64::from(p[i]);
    pool_2d_back_rules(&a, &af, max, [v(1), v(2)], [v(3), v(4)], [v(5), v(6)])?;
    dense_result(node, af.ne(), Type::F32)
}

// ---------------------------------------------------------------------------
// Declarations.

/// `Params::i[k]` as a C `int` (the fuzzer's values, wrapped as C would
/// convert them).
fn pi(p: &crate::ops::Params, k: usize) -> i32 {
    p.i[k] as i32
}

/// The 2-D parameters of the generic builders: strides `i[0..2]`, paddings
/// `i[2..4]`, dilations `f[0..2]`.
fn params_conv(p: &crate::ops::Params) -> Conv {
    Conv {
        stride: [pi(p, 0), pi(p, 1)],
        padding: [pi(p, 2), pi(p, 3)],
        dilation: [p.f[0] as i32, p.f[1] as i32],
    }
}

/// The 3-D parameters of the generic builders: channels `i[0]`, strides
/// `i[1]`, paddings `i[2]`, dilations `i[3]` (the same on every axis).
fn params_conv3d(p: &crate::ops::Params) -> (i64, Conv3d) {
    (
        p.i[0],
        Conv3d {
            stride: [pi(p, 1); 3],
            padding: [pi(p, 2); 3],
            dilation: [pi(p, 3); 3],
        },
    )
}

/// The declarations. Generic builders: the kernel then the data (the
/// gradient then the kernel or input for the gradients); see
/// `params_conv` and `params_conv3d` for the 2-D and 3-D parameters; the
/// transposed convolutions take stride (and padding, dilation) from
/// `Params::i`; bit 2 of the flags asks for f16 patches (`im2col_3d`) or
/// maximum pooling, bit 1 for a 2-D `im2col_back`, whose result shape is
/// `Params::i` and strides, paddings `Params::f`.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "conv_transpose_1d",
        family: Family::Conv,
        builders: &["ggml_conv_transpose_1d"],
        op: ggml_sys::GGML_OP_CONV_TRANSPOSE_1D,
        arity: 2,
        cpu: cpu_conv_transpose_1d,
        build: |_, t, p| t[0].conv_transpose_1d(t[1], pi(p, 0), pi(p, 1), pi(p, 2)),
        raw: |_, ctx, t, p| {
            // SAFETY: none (the fuzzer's raw direction).
            unsafe {
                ggml_sys::ggml_conv_transpose_1d(ctx, t[0], t[1], pi(p, 0), pi(p, 1), pi(p, 2))
            }
        },
        ..BASE
    },
    Decl {
        name: "conv_transpose_2d_p0",
        family: Family::Conv,
        builders: &["ggml_conv_transpose_2d_p0"],
        op: ggml_sys::GGML_OP_CONV_TRANSPOSE_2D,
        arity: 2,
        cpu: cpu_conv_transpose_2d,
        build: |_, t, p| t[0].conv_transpose_2d_p0(t[1], pi(p, 0)),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe {
            ggml_sys::ggml_conv_transpose_2d_p0(ctx, t[0], t[1], pi(p, 0))
        },
        ..BASE
    },
    Decl {
        name: "conv_2d_direct",
        family: Family::Conv,
        builders: &["ggml_conv_2d_direct"],
        op: ggml_sys::GGML_OP_CONV_2D,
        arity: 2,
        cpu: cpu_conv_2d_direct,
        build: |_, t, p| t[0].conv_2d_direct(t[1], &params_conv(p)),
        raw: |_, ctx, t, p| {
            let c = params_conv(p);
            // SAFETY: none (the fuzzer's raw direction).
            unsafe {
                ggml_sys::ggml_conv_2d_direct(
                    ctx,
                    t[0],
                    t[1],
                    c.stride[0],
                    c.stride[1],
                    c.padding[0],
                    c.padding[1],
                    c.dilation[0],
                    c.dilation[1],
                )
            }
        },
        ..BASE
    },
    Decl {
        name: "conv_2d_dw_direct",
        family: Family::Conv,
        builders: &["ggml_conv_2d_dw_direct"],
        op: ggml_sys::GGML_OP_CONV_2D_DW,
        arity: 2,
        cpu: cpu_conv_2d_dw,
        build: |_, t, p| t[0].conv_2d_dw_direct(t[1], &params_conv(p)),
        raw: |_, ctx, t, p| {
            let c = params_conv(p);
            // SAFETY: none (the fuzzer's raw direction).
            unsafe {
                ggml_sys::ggml_conv_2d_dw_direct(
                    ctx,
                    t[0],
                    t[1],
                    c.stride[0],
                    c.stride[1],
                    c.padding[0],
                    c.padding[1],
                    c.dilation[0],
                    c.dilation[1],
                )
            }
        },
        ..BASE
    },
    Decl {
        name: "conv_3d_direct",
        family: Family::Conv,
        builders: &["ggml_conv_3d_direct"],
        op: ggml_sys::GGML_OP_CONV_3D,
        arity: 2,
        cpu: cpu_conv_3d_direct,
        build: |_, t, p| {
            let (ic, c) = params_conv3d(p);
            t[0].conv_3d_direct(t[1], ic, &c)
        },
        raw: |_, ctx, t, p| {
            let (ic, c) = params_conv3d(p);
            let ic = ic as i32;
            // As ggml's own callers: batch and output channels from the shapes.
            // SAFETY: none (the fuzzer's raw direction); the divisions are
            // Rust's (checked), of the operands' live shapes.
            unsafe {
                let (na, nb) = ((*t[0]).ne, (*t[1]).ne);
                let (oc, n) = (
                    na[3].checked_div(ic.into()).unwrap_or(0) as i32,
                    nb[3].checked_div(ic.into()).unwrap_or(0) as i32,
                );
                ggml_sys::ggml_conv_3d_direct(
                    ctx,
                    t[0],
                    t[1],
                    c.stride[0],
                    c.stride[1],
                    c.stride[2],
                    c.padding[0],
                    c.padding[1],
                    c.padding[2],
                    c.dilation[0],
                    c.dilation[1],
                    c.dilation[2],
                    ic,
                    n,
                    oc,
                )
            }
        },
        ..BASE
    },
    Decl {
        name: "im2col_3d",
        family: Family::Conv,
        builders: &["ggml_im2col_3d"],
        op: ggml_sys::GGML_OP_IM2COL_3D,
        arity: 2,
        cpu: cpu_im2col_3d,
        build: |_, t, p| {
            let (ic, c) = params_conv3d(p);
            let ty = if p.flag(2) { Type::F16 } else { Type::F32 };
            t[0].im2col_3d(t[1], ic, &c, ty)
        },
        raw: |_, ctx, t, p| {
            let (ic, c) = params_conv3d(p);
            let ty = if p.flag(2) { Type::F16 } else { Type::F32 };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe {
                ggml_sys::ggml_im2col_3d(
                    ctx,
                    t[0],
                    t[1],
                    ic,
                    c.stride[0],
                    c.stride[1],
                    c.stride[2],
                    c.padding[0],
                    c.padding[1],
                    c.padding[2],
                    c.dilation[0],
                    c.dilation[1],
                    c.dilation[2],
                    ty.as_raw(),
                )
            }
        },
        ..BASE
    },
    // Built from `im2col_3d` and `mul_mat` (declared after `im2col_3d`, whose
    // declaration speaks for the nodes).
    Decl {
        name: "conv_3d",
        family: Family::Conv,
        builders: &["ggml_conv_3d"],
        op: ggml_sys::GGML_OP_IM2COL_3D,
        arity: 2,
        cpu: cpu_im2col_3d,
        build: |_, t, p| {
            let (ic, c) = params_conv3d(p);
            t[0].conv_3d(t[1], ic, &c)
        },
        ..BASE
    },
    Decl {
        name: "col2im_1d",
        family: Family::Conv,
        builders: &["ggml_col2im_1d"],
        op: ggml_sys::GGML_OP_COL2IM_1D,
        arity: 1,
        cpu: cpu_col2im_1d,
        build: |_, t, p| t[0].col2im_1d(pi(p, 0), pi(p, 1), pi(p, 2)),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe {
            ggml_sys::ggml_col2im_1d(ctx, t[0], pi(p, 0), pi(p, 1), pi(p, 2))
        },
        ..BASE
    },
    Decl {
        name: "im2col_back",
        family: Family::Conv,
        builders: &["ggml_im2col_back"],
        op: ggml_sys::GGML_OP_IM2COL_BACK,
        arity: 2,
        cpu: cpu_im2col_back,
        build: |_, t, p| {
            let c = Conv {
                stride: [p.f[0] as i32, p.f[1] as i32],
                padding: [p.f[2] as i32, p.f[3] as i32],
                dilation: [1, 1],
            };
            t[0].im2col_back(t[1], p.i, &c, p.flag(1))
        },
        raw: |_, ctx, t, p| {
            let mut ne = p.i;
            let f = p.f.map(|x| x as i32);
            // SAFETY: none (the fuzzer's raw direction).
            unsafe {
                ggml_sys::ggml_im2col_back(
                    ctx,
                    t[0],
                    t[1],
                    ne.as_mut_ptr(),
                    f[0],
                    f[1],
                    f[2],
                    f[3],
                    1,
                    1,
                    p.flag(1),
                )
            }
        },
        ..BASE
    },
    Decl {
        name: "pool_2d_back",
        family: Family::Conv,
        builders: &["ggml_pool_2d_back"],
        op: ggml_sys::GGML_OP_POOL_2D_BACK,
        arity: 2,
        cpu: cpu_pool_2d_back,
        build: |_, t, p| {
            let op = if p.flag(2) { Pool::Max } else { Pool::Avg };
            t[0].pool_2d_back(
                t[1],
                op,
                [p.i[0], p.i[0]],
                [p.i[1], p.i[1]],
                [p.i[2], p.i[3]],
            )
        },
        raw: |_, ctx, t, p| {
            let op = if p.flag(2) { Pool::Max } else { Pool::Avg };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe {
                ggml_sys::ggml_pool_2d_back(
                    ctx,
                    t[0],
                    t[1],
                    op.as_raw(),
                    pi(p, 0),
                    pi(p, 0),
                    pi(p, 1),
                    pi(p, 1),
                    p.i[2] as f32,
                    p.i[3] as f32,
                )
            }
        },
        ..BASE
    },
];

// ---------------------------------------------------------------------------
// The public builders.

impl<'ctx> Tensor<'ctx> {
    /// The transposed 1-D convolution of `data` (f32 `[L, Cin]`) with this
    /// kernel (f16 or f32 `[K, Cout, Cin]`): f32 `[(L - 1)·stride + K, Cout]`,
    /// `out[o][t] = Σ_{c, l, k: l·stride + k = t} data[c][l] · kernel[c][o][k]`
    /// (with an f16 kernel the data is rounded to f16). ggml implements
    /// `padding` 0 and `dilation` 1 only.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for a negative stride (ggml would
    /// write before the result), other paddings or dilations, other types,
    /// rows not dense, sizes beyond `int`;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn conv_transpose_1d(
        self,
        data: Tensor<'ctx>,
        stride: i32,
        padding: i32,
        dilation: i32,
    ) -> Result<Tensor<'ctx>> {
        let operands = [self, data];
        let rules = Rules::new("conv_transpose_1d", &operands)?;
        let ne = conv_transpose_1d_rules(&self, &data, stride, padding, dilation)
            .map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        // Checked above: ggml_conv_transpose_1d's assertions (data a matrix,
        // matching channels, padding 0, dilation 1) and its kernel's
        // assumptions (types, dense rows, a stride of at least 0, int sizes).
        // SAFETY: live tensors meeting those; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_conv_transpose_1d(
                rules.context().as_ptr(),
                self.as_ptr(),
                data.as_ptr(),
                stride,
                padding,
                dilation,
            )
        })
    }

    /// The transposed 2-D convolution of `data` (f32 `[W, H, Cin, N]`) with
    /// this kernel (f16 or f32 `[KW, KH, Cout, Cin]`, rows packed), without
    /// padding: f32 `[(W - 1)·stride + KW, (H - 1)·stride + KH, Cout, N]`,
    /// each input value times the kernel added at `(x·stride, y·stride)`
    /// (with an f16 kernel the data is rounded to f16).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for a negative stride (ggml would
    /// write out of bounds), other types or layouts, sizes beyond `int`;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn conv_transpose_2d_p0(self, data: Tensor<'ctx>, stride: i32) -> Result<Tensor<'ctx>> {
        let operands = [self, data];
        let rules = Rules::new("conv_transpose_2d_p0", &operands)?;
        let ne =
            conv_transpose_2d_rules(&self, &data, stride).map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        // Checked above: ggml_conv_transpose_2d_p0's assertion (matching
        // channels) and its kernel's assumptions (types, packed kernel rows,
        // a stride of at least 0, sizes within int).
        // SAFETY: live tensors meeting those; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_conv_transpose_2d_p0(
                rules.context().as_ptr(),
                self.as_ptr(),
                data.as_ptr(),
                stride,
            )
        })
    }

    /// A 2-D convolution computed directly (`ggml_conv_2d_direct`, no
    /// im2col tensor): `data` f32 `[W, H, C, N]` (any strides) with this
    /// kernel (contiguous f16 or f32 `[KW, KH, C, OC]`): f32
    /// `[OW, OH, OC, N]`, `out[n][o][y][x] = Σ data[n][c][y·s1 + ky·d1 − p1]
    /// [x·s0 + kx·d0 − p0] · kernel[o][c][ky][kx]` (zero outside the data;
    /// with an f16 kernel the data is rounded to f16). Any stride but 0, any
    /// padding and dilation ([`Conv`]'s bounds are `im2col`'s); an empty
    /// output where the data is too small.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for the rules of the module docs
    /// (types, a patch beyond ggml's 16 MiB work buffer, a negative output
    /// size); [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn conv_2d_direct(self, data: Tensor<'ctx>, conv: &Conv) -> Result<Tensor<'ctx>> {
        let operands = [self, data];
        let rules = Rules::new("conv_2d_direct", &operands)?;
        let ne = conv_2d_direct_rules(&self, &data, conv).map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        let Conv {
            stride: [s0, s1],
            padding: [p0, p1],
            dilation: [d0, d1],
        } = *conv;
        // Checked above: ggml_conv_2d_direct's assertion (matching channels),
        // no zero stride, output sizes of at least 0 (as ggml computes them),
        // its kernel's assumptions (f32 data, a contiguous f16 or f32 kernel,
        // a patch within its work buffer).
        // SAFETY: live tensors meeting those; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_conv_2d_direct(
                rules.context().as_ptr(),
                self.as_ptr(),
                data.as_ptr(),
                s0,
                s1,
                p0,
                p1,
                d0,
                d1,
            )
        })
    }

    /// A depthwise 2-D convolution computed directly
    /// (`ggml_conv_2d_dw_direct`): each channel of `data` (f32 `[W, H, C, N]`)
    /// convolved with its own kernel of this f16 or f32 `[KW, KH, 1, C]`: f32
    /// `[OW, OH, C, N]`. The data is either contiguous (with a contiguous
    /// kernel) or channels-first: `data` a permutation `[2, 0, 1, 3]` of a
    /// contiguous `[C, W, H, N]` with the kernel a permutation `[3, 2, 0, 1]`
    /// of a contiguous `[C, 1, KW, KH]`; the result is laid out as the data.
    /// Parameters as [`Tensor::conv_2d_direct`].
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for other types or layouts, a zero
    /// stride, a negative output size;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn conv_2d_dw_direct(self, data: Tensor<'ctx>, conv: &Conv) -> Result<Tensor<'ctx>> {
        let operands = [self, data];
        let rules = Rules::new("conv_2d_dw_direct", &operands)?;
        let (ne, _) = conv_2d_dw_rules(&self, &data, conv).map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        let Conv {
            stride: [s0, s1],
            padding: [p0, p1],
            dilation: [d0, d1],
        } = *conv;
        // Checked above: ggml_conv_2d_dw_direct's assertions (a kernel of one
        // plane a channel, matching channels; the f32 result's blocks of one
        // element), no zero stride, output sizes of at least 0, its kernel's
        // assumptions (f32 data, an f16 or f32 kernel, layouts read densely).
        // SAFETY: live tensors meeting those; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_conv_2d_dw_direct(
                rules.context().as_ptr(),
                self.as_ptr(),
                data.as_ptr(),
                s0,
                s1,
                p0,
                p1,
                d0,
                d1,
            )
        })
    }

    /// A 3-D convolution computed directly (`ggml_conv_3d_direct`): `data`
    /// f32 `[W, H, D, N·C]` (any strides; item `n`'s channel `c` at `n·C +
    /// c`) with this kernel (contiguous f16 or f32 `[KW, KH, KD, OC·C]`,
    /// output channel `o`'s input channel `c` at `o·C + c`), `in_channels` =
    /// C: f32 `[OW, OH, OD, N·OC]` (item `n`'s channel `o` at `n·OC + o`), as
    /// [`Tensor::conv_2d_direct`] in three dimensions.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for channel counts that do not divide
    /// the shapes, the rules of [`Tensor::conv_2d_direct`];
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn conv_3d_direct(
        self,
        data: Tensor<'ctx>,
        in_channels: i64,
        conv: &Conv3d,
    ) -> Result<Tensor<'ctx>> {
        let operands = [self, data];
        let rules = Rules::new("conv_3d_direct", &operands)?;
        let (ne, n, oc) = conv_3d_direct_rules(&self, &data, in_channels, conv)
            .map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        let Conv3d {
            stride: [s0, s1, s2],
            padding: [p0, p1, p2],
            dilation: [d0, d1, d2],
        } = *conv;
        // Checked above: ggml_conv_3d_direct's assertions (channel counts
        // that multiply to the shapes, all within int), no zero stride,
        // output sizes of at least 0, its kernel's assumptions (f32 data, a
        // contiguous f16 or f32 kernel, a patch within its work buffer).
        // SAFETY: live tensors meeting those; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_conv_3d_direct(
                rules.context().as_ptr(),
                self.as_ptr(),
                data.as_ptr(),
                s0,
                s1,
                s2,
                p0,
                p1,
                p2,
                d0,
                d1,
                d2,
                in_channels as i32,
                n as i32,
                oc as i32,
            )
        })
    }

    /// The patches a 3-D convolution of kernel `self` (`[KW, KH, KD, OC·C]`,
    /// only its shape is read) over `data` (f32 `[W, H, D, N·C]`, dense rows)
    /// multiplies, `in_channels` = C: `[KW·KH·KD·C, OW, OH, OD·N]` of type
    /// `ty` (f16 or f32); patch `(n, z, y, x)` at `[x, y, n·OD + z]` holds
    /// channel `c`'s window at `c·KD·KH·KW + kz·KH·KW + ky·KW + kx`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for a channel count that does not
    /// divide the data's, a zero stride, no output, other types;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn im2col_3d(
        self,
        data: Tensor<'ctx>,
        in_channels: i64,
        conv: &Conv3d,
        ty: Type,
    ) -> Result<Tensor<'ctx>> {
        let operands = [self, data];
        let rules = Rules::new("im2col_3d", &operands)?;
        let ne = im2col_3d_rules(&self, &data, in_channels, conv, ty)
            .map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(ty, &ne, None)?;
        let Conv3d {
            stride: [s0, s1, s2],
            padding: [p0, p1, p2],
            dilation: [d0, d1, d2],
        } = *conv;
        // Preconditions: live tensors meeting ggml_im2col_3d's assertions (positive
        // output sizes), a channel count of at least 1 within int (ggml
        // divides by it), no zero stride, and its kernel's assumptions (f32
        // data with dense rows, f16 or f32 patches); room reserved.
        // SAFETY: every precondition named just above is met.
        rules.wrap(unsafe {
            ggml_sys::ggml_im2col_3d(
                rules.context().as_ptr(),
                self.as_ptr(),
                data.as_ptr(),
                in_channels,
                s0,
                s1,
                s2,
                p0,
                p1,
                p2,
                d0,
                d1,
                d2,
                ty.as_raw(),
            )
        })
    }

    /// A 3-D convolution built as `ggml_conv_3d` builds it: the patches of
    /// [`Tensor::im2col_3d`] (f16; f32 for a bf16 kernel) times this
    /// contiguous kernel ([`Tensor::mul_mat`]), permuted to the layout of
    /// [`Tensor::conv_3d_direct`], which takes the same operands; every step
    /// checked. (With a bf16 kernel the f32 patches multiply a bf16 right
    /// operand, which ggml's CPU computes but this crate's `mul_mat` contract
    /// does not yet accept: such a graph is refused when computed.)
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for channel counts that do not divide
    /// the shapes, a kernel type other than f32, f16 or bf16; those of
    /// `im2col_3d`, `reshape`, `mul_mat`, `permute` and `cont`.
    pub fn conv_3d(
        self,
        data: Tensor<'ctx>,
        in_channels: i64,
        conv: &Conv3d,
    ) -> Result<Tensor<'ctx>> {
        let operands = [self, data];
        let rules = Rules::new("conv_3d", &operands)?;
        let (na, nb) = (self.ne(), data.ne());
        rules.require(
            in_channels >= 1 && na[3] % in_channels == 0 && nb[3] % in_channels == 0,
            || format!("{in_channels} channels must divide the kernel's and the data's ne[3]"),
        )?;
        rules.require(
            matches!(self.ty(), Type::F32 | Type::F16 | Type::BF16),
            || "an f32, f16 or bf16 kernel".into(),
        )?;
        let ty = if self.ty() == Type::BF16 {
            Type::F32
        } else {
            Type::F16
        };
        let cols = self.im2col_3d(data, in_channels, conv, ty)?; // [K, OW, OH, OD·N]
        let cn = cols.ne();
        let (oc, n) = (na[3] / in_channels, nb[3] / in_channels);
        let [s, p, d] = [conv.stride[2], conv.padding[2], conv.dilation[2]];
        // Checked by im2col_3d.
        let od = conv_out(nb[2], na[2], s, p, d).unwrap_or(0);
        let u = |x: i64| x as usize;
        let lhs = cols.reshape(&[u(cn[3] * cn[2] * cn[1]), u(cn[0])])?;
        let rhs = self.reshape(&[u(oc), u(cn[0])])?;
        lhs.mul_mat(rhs)? // [N·OD·OH·OW, OC]
            .reshape(&[u(oc), u(n), u(od), u(cn[2] * cn[1])])?
            .permute([0, 1, 3, 2])?
            .cont()?
            .reshape(&[u(n * oc), u(od), u(cn[2]), u(cn[1])])
    }

    /// The columns of a transposed 1-D convolution's matrix product summed
    /// back into a signal (`ggml_col2im_1d`): this contiguous f32, f16 or
    /// bf16 `[K·OC, T_in]` gives `[T_out, OC]` of its type, `T_out = (T_in −
    /// 1)·stride + K − 2·padding`, `out[o][t] = Σ_{i, k: i·stride + k = t +
    /// padding} cols[i][o·K + k]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for a stride or channel count below
    /// 1, a negative padding, rows that are not whole kernels, no output,
    /// other types or layouts; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn col2im_1d(self, stride: i32, out_channels: i32, padding: i32) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("col2im_1d", &operands)?;
        let ne = col2im_1d_rules(&self, stride, out_channels, padding)
            .map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(self.ty(), &ne, None)?;
        // Preconditions: a live tensor meeting every assertion of ggml_col2im_1d
        // (a contiguous matrix of its types, positive stride and channels,
        // whole kernels, a positive output length computed without
        // overflow); room reserved.
        // SAFETY: every precondition named just above is met.
        rules.wrap(unsafe {
            ggml_sys::ggml_col2im_1d(
                rules.context().as_ptr(),
                self.as_ptr(),
                stride,
                out_channels,
                padding,
            )
        })
    }

    /// The gradient of [`Tensor::im2col`]: this tensor, the gradient of the
    /// patches (contiguous f32, 2-D `[C·KH·KW, OW, OH, N]`, 1-D `[C·K, OW,
    /// N]`), summed back onto the data's positions: f32 of ggml's shape `ne`
    /// (the data's: 2-D `[W, H, C, N]`, 1-D `[W, C, N, 1]`); `kernel` (f32 or
    /// f16) gives the window's shape (`ne[0]`, 2-D also `ne[1]`). Each data
    /// value gets the patch values that read it. Any stride but 0 (the 1-D
    /// form ignores `conv`'s second values).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for a zero stride, a gradient of
    /// another shape, type or layout, negative sizes, channels or items of
    /// 2 GiB or more; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn im2col_back(
        self,
        kernel: Tensor<'ctx>,
        ne: [i64; 4],
        conv: &Conv,
        two_d: bool,
    ) -> Result<Tensor<'ctx>> {
        let operands = [self, kernel];
        let rules = Rules::new("im2col_back", &operands)?;
        im2col_back_rules(&self, &kernel, ne, conv, two_d).map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        let Conv {
            stride: [s0, s1],
            padding: [p0, p1],
            dilation: [d0, d1],
        } = *conv;
        let mut shape = ne;
        // Preconditions: live tensors (ggml_im2col_back asserts nothing but its
        // result's shape, checked), meeting its kernel's assumptions: no
        // zero stride, an f32 gradient laid out as it reads it, an f32 or
        // f16 kernel, byte strides within int; `shape` outlives the call
        // (ggml copies it); room reserved.
        // SAFETY: every precondition named just above is met.
        rules.wrap(unsafe {
            ggml_sys::ggml_im2col_back(
                rules.context().as_ptr(),
                self.as_ptr(),
                kernel.as_ptr(),
                shape.as_mut_ptr(),
                s0,
                s1,
                p0,
                p1,
                d0,
                d1,
                two_d,
            )
        })
    }

    /// The gradient of [`Tensor::pool_2d`]: this tensor, the gradient of the
    /// pooled planes (contiguous f32 `[OW, OH, C, N]`), spread back onto
    /// `input` (the pooling's input, `[W, H, C, N]`): f32 of the input's
    /// shape. The average gives each window value its share (`1/(k0·k1)`,
    /// padding counted); the maximum gives it to the window's first largest
    /// value (then `input` must be contiguous f32). Windows `k`, strides `s`
    /// and paddings `p` as for `pool_2d`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for windows or strides below 1,
    /// paddings beyond ±2^24, a gradient of other planes, types or layouts
    /// other than the above, positions beyond `int`;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn pool_2d_back(
        self,
        input: Tensor<'ctx>,
        op: Pool,
        k: [i64; 2],
        s: [i64; 2],
        p: [i64; 2],
    ) -> Result<Tensor<'ctx>> {
        let operands = [self, input];
        let rules = Rules::new("pool_2d_back", &operands)?;
        pool_2d_back_rules(&self, &input, op == Pool::Max, k, s, p)
            .map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &input.ne(), None)?;
        // Preconditions: live tensors (ggml_pool_2d_back asserts nothing) meeting
        // its kernel's assumptions: a known pooling, a contiguous f32
        // gradient of the input's planes, for the maximum a contiguous f32
        // input; windows, strides and paddings (exact in f32) whose
        // positions fit int; room reserved.
        // SAFETY: every precondition named just above is met.
        rules.wrap(unsafe {
            ggml_sys::ggml_pool_2d_back(
                rules.context().as_ptr(),
                self.as_ptr(),
                input.as_ptr(),
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
