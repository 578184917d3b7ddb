//! Direct and transposed convolutions, im2col and pooling gradients, against
//! loops over their definitions written here.
//!
//! ndarray order throughout: a ggml `ne = [a, b, c, d]` is the array shape
//! `[d, c, b, a]`.

use anyhow::{ensure, Result};
use ggml::ndarray::{ArrayD, IxDyn};
use ggml::ops::{Conv, Conv3d, Pool};
use ggml::{Context, Error, Tensor, Type};

use crate::eval::{self, assert_close, Tol};

/// f32 results summed in another order.
const F32: Tol = Tol {
    abs: 1e-5,
    rel: 1e-5,
};

/// Results of f16-rounded operands, summed in f32 (f16 products are exact
/// in f32; the sums of a few dozen terms round a little).
const F16_SUMS: Tol = Tol {
    abs: 1e-4,
    rel: 1e-4,
};

/// `got` (ggml drops trailing axes of 1) compared in the shape of `want`.
fn close(got: &ArrayD<f32>, want: &ArrayD<f32>, tol: Tol, what: &str) -> Result<()> {
    ensure!(
        got.len() == want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    let got = got.clone().into_shape_with_order(want.raw_dim())?;
    assert_close(&got, want, tol, what)
}

/// Whether `r` is an [`Error::Op`].
fn refused<T>(r: ggml::Result<T>) -> bool {
    matches!(r, Err(Error::Op(_)))
}

/// `(o·s + k·d − p)` when inside `0..n`.
fn at(o: usize, k: usize, s: i64, p: i64, d: i64, n: usize) -> Option<usize> {
    let i = o as i64 * s + k as i64 * d - p;
    (0..n as i64).contains(&i).then_some(i as usize)
}

// ---------------------------------------------------------------------------
// Transposed convolutions.

/// Transposed 1-D convolution: data `[cin, l]`, kernel `[cin, cout, k]`,
/// `out[o][l·s + k] += data[c][l] · kernel[c][o][k]`.
fn conv_transpose_1d_ref(data: &ArrayD<f32>, kernel: &ArrayD<f32>, s: usize) -> ArrayD<f32> {
    let (cin, l) = (data.shape()[0], data.shape()[1]);
    let (cout, k) = (kernel.shape()[1], kernel.shape()[2]);
    let mut out = ArrayD::zeros(IxDyn(&[cout, (l - 1) * s + k]));
    for c in 0..cin {
        for o in 0..cout {
            for i in 0..l {
                for j in 0..k {
                    out[[o, i * s + j]] += data[[c, i]] * kernel[[c, o, j]];
                }
            }
        }
    }
    out
}

#[test]
fn conv_transpose_1d_scatters_each_input() -> Result<()> {
    let data = eval::input(&[4, 5], 201, 1.0); // [Cin, L]
    let kernel = eval::input(&[4, 2, 3], 202, 1.0); // [Cin, Cout, K]
    let ctx = Context::new(1 << 20)?;
    let td = ctx.tensor_from_array(&data)?;
    let k32 = ctx.tensor_from_array(&kernel)?;
    let k16 = ctx.tensor_from_array_as(Type::F16, &kernel)?;
    // A kernel with dense rows that is not contiguous: [Cout, Cin, K] with
    // ggml's axes 1 and 2 swapped.
    let swapped = kernel.clone().permuted_axes(IxDyn(&[1, 0, 2]));
    let kperm = ctx
        .tensor_from_array(&swapped.as_standard_layout().to_owned())?
        .permute([0, 2, 1, 3])?;
    assert!(!kperm.is_contiguous());
    let got = eval::compute(
        &ctx,
        &[
            k32.conv_transpose_1d(td, 2, 0, 1)?,
            k16.conv_transpose_1d(td, 3, 0, 1)?,
            kperm.conv_transpose_1d(td, 1, 0, 1)?,
            k32.conv_transpose_1d(td, 0, 0, 1)?,
        ],
    )?;
    close(
        &got[0],
        &conv_transpose_1d_ref(&data, &kernel, 2),
        F32,
        "f32 kernel, stride 2",
    )?;
    // The f16 kernel rounds the data to f16 too.
    let (d16, kr16) = (
        eval::rounded(&data, Type::F16),
        eval::rounded(&kernel, Type::F16),
    );
    close(
        &got[1],
        &conv_transpose_1d_ref(&d16, &kr16, 3),
        F16_SUMS,
        "f16 kernel, stride 3",
    )?;
    close(
        &got[2],
        &conv_transpose_1d_ref(&data, &kernel, 1),
        F32,
        "strided kernel",
    )?;
    // Stride 0: every input position lands on the same K outputs.
    let want0 = ArrayD::from_shape_fn(IxDyn(&[2, 3]), |d| {
        (0..4)
            .flat_map(|c| (0..5).map(move |i| (c, i)))
            .map(|(c, i)| data[[c, i]] * kernel[[c, d[0], d[1]]])
            .sum()
    });
    close(&got[3], &want0, F32, "stride 0")?;

    assert!(
        refused(k32.conv_transpose_1d(td, -1, 0, 1)),
        "negative stride"
    );
    assert!(refused(k32.conv_transpose_1d(td, 1, 1, 1)), "padding");
    assert!(refused(k32.conv_transpose_1d(td, 1, 0, 2)), "dilation");
    let kb16 = ctx.tensor_from_array_as(Type::BF16, &kernel)?;
    assert!(refused(kb16.conv_transpose_1d(td, 1, 0, 1)), "bf16 kernel");
    let d16t = ctx.tensor_from_array_as(Type::F16, &data)?;
    assert!(refused(k32.conv_transpose_1d(d16t, 1, 0, 1)), "f16 data");
    let wrong = ctx.new_tensor(Type::F32, &[3, 5])?;
    assert!(refused(k32.conv_transpose_1d(wrong, 1, 0, 1)), "channels");
    Ok(())
}

/// Transposed 2-D convolution without padding: data `[n, cin, h, w]`,
/// kernel `[cin, cout, kh, kw]`.
fn conv_transpose_2d_ref(data: &ArrayD<f32>, kernel: &ArrayD<f32>, s: usize) -> ArrayD<f32> {
    let sh = data.shape();
    let (n, cin, h, w) = (sh[0], sh[1], sh[2], sh[3]);
    let (cout, kh, kw) = (kernel.shape()[1], kernel.shape()[2], kernel.shape()[3]);
    let mut out = ArrayD::zeros(IxDyn(&[n, cout, (h - 1) * s + kh, (w - 1) * s + kw]));
    for b in 0..n {
        for c in 0..cin {
            for o in 0..cout {
                for y in 0..h {
                    for x in 0..w {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                out[[b, o, y * s + ky, x * s + kx]] +=
                                    data[[b, c, y, x]] * kernel[[c, o, ky, kx]];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn conv_transpose_2d_scatters_each_input() -> Result<()> {
    let data = eval::input(&[2, 3, 3, 4], 203, 1.0); // [N, Cin, H, W]
    let kernel = eval::input(&[3, 2, 2, 3], 204, 1.0); // [Cin, Cout, KH, KW]
    let ctx = Context::new(1 << 20)?;
    let td = ctx.tensor_from_array(&data)?;
    // The data as a permuted view (ggml's axes 2 and 3 swapped).
    let swapped = data.clone().permuted_axes(IxDyn(&[1, 0, 2, 3]));
    let dperm = ctx
        .tensor_from_array(&swapped.as_standard_layout().to_owned())?
        .permute([0, 1, 3, 2])?;
    let k32 = ctx.tensor_from_array(&kernel)?;
    let k16 = ctx.tensor_from_array_as(Type::F16, &kernel)?;
    let got = eval::compute(
        &ctx,
        &[
            k32.conv_transpose_2d_p0(td, 2)?,
            k16.conv_transpose_2d_p0(td, 1)?,
            k32.conv_transpose_2d_p0(dperm, 3)?,
        ],
    )?;
    close(
        &got[0],
        &conv_transpose_2d_ref(&data, &kernel, 2),
        F32,
        "f32, stride 2",
    )?;
    let (d16, kr16) = (
        eval::rounded(&data, Type::F16),
        eval::rounded(&kernel, Type::F16),
    );
    close(
        &got[1],
        &conv_transpose_2d_ref(&d16, &kr16, 1),
        F16_SUMS,
        "f16 kernel",
    )?;
    close(
        &got[2],
        &conv_transpose_2d_ref(&data, &kernel, 3),
        F32,
        "permuted data",
    )?;

    assert!(refused(k32.conv_transpose_2d_p0(td, -2)), "negative stride");
    // Kernel rows not packed (ggml reads its planes densely).
    let ktr = k32.permute([1, 0, 2, 3])?;
    assert!(
        refused(ktr.conv_transpose_2d_p0(td, 1)),
        "transposed kernel"
    );
    let d16t = ctx.tensor_from_array_as(Type::F16, &data)?;
    assert!(refused(k32.conv_transpose_2d_p0(d16t, 1)), "f16 data");
    assert!(refused(k32.conv_transpose_2d_p0(k32, 1)), "channels");
    Ok(())
}

// ---------------------------------------------------------------------------
// Direct convolutions.

/// 2-D convolution: data `[n, c, h, w]`, kernel `[oc, c, kh, kw]`; per axis
/// (x, y) stride, padding, dilation.
fn conv_2d_ref(data: &ArrayD<f32>, kernel: &ArrayD<f32>, c: &Conv) -> ArrayD<f32> {
    let sh = data.shape();
    let (n, ch, h, w) = (sh[0], sh[1], sh[2], sh[3]);
    let (oc, kh, kw) = (kernel.shape()[0], kernel.shape()[2], kernel.shape()[3]);
    let [s0, s1] = c.stride.map(i64::from);
    let [p0, p1] = c.padding.map(i64::from);
    let [d0, d1] = c.dilation.map(i64::from);
    let out = |i: usize, k: usize, s: i64, p: i64, d: i64| {
        ((i as i64 + 2 * p - d * (k as i64 - 1) - 1) / s + 1) as usize
    };
    let (oh, ow) = (out(h, kh, s1, p1, d1), out(w, kw, s0, p0, d0));
    ArrayD::from_shape_fn(IxDyn(&[n, oc, oh, ow]), |o| {
        let mut sum = 0.0f64;
        for ci in 0..ch {
            for ky in 0..kh {
                for kx in 0..kw {
                    if let (Some(iy), Some(ix)) =
                        (at(o[2], ky, s1, p1, d1, h), at(o[3], kx, s0, p0, d0, w))
                    {
                        sum += f64::from(data[[o[0], ci, iy, ix]])
                            * f64::from(kernel[[o[1], ci, ky, kx]]);
                    }
                }
            }
        }
        sum as f32
    })
}

#[test]
fn conv_2d_direct_matches_its_definition() -> Result<()> {
    let data = eval::input(&[2, 3, 6, 7], 205, 1.0); // [N, C, H, W]
    let kernel = eval::input(&[4, 3, 3, 2], 206, 1.0); // [OC, C, KH, KW]
    let ctx = Context::new(4 << 20)?;
    let td = ctx.tensor_from_array(&data)?;
    let k32 = ctx.tensor_from_array(&kernel)?;
    let k16 = ctx.tensor_from_array_as(Type::F16, &kernel)?;
    // The data as a view with ggml's axes 2 and 3 swapped (any strides).
    let swapped = data.clone().permuted_axes(IxDyn(&[1, 0, 2, 3]));
    let dperm = ctx
        .tensor_from_array(&swapped.as_standard_layout().to_owned())?
        .permute([0, 1, 3, 2])?;
    let plain = Conv::default();
    let strided = Conv {
        stride: [2, 1],
        padding: [1, 2],
        dilation: [1, 2],
    };
    // A negative padding crops.
    let cropped = Conv {
        stride: [1, 2],
        padding: [-1, 0],
        dilation: [2, 1],
    };
    let got = eval::compute(
        &ctx,
        &[
            k32.conv_2d_direct(td, &plain)?,
            k32.conv_2d_direct(td, &strided)?,
            k16.conv_2d_direct(td, &strided)?,
            k32.conv_2d_direct(dperm, &cropped)?,
        ],
    )?;
    close(&got[0], &conv_2d_ref(&data, &kernel, &plain), F32, "plain")?;
    close(
        &got[1],
        &conv_2d_ref(&data, &kernel, &strided),
        F32,
        "strided, padded, dilated",
    )?;
    let (d16, kr16) = (
        eval::rounded(&data, Type::F16),
        eval::rounded(&kernel, Type::F16),
    );
    close(
        &got[2],
        &conv_2d_ref(&d16, &kr16, &strided),
        F16_SUMS,
        "f16 kernel",
    )?;
    close(
        &got[3],
        &conv_2d_ref(&data, &kernel, &cropped),
        F32,
        "permuted data, cropped",
    )?;

    // Data smaller than the kernel: an empty result, not an error.
    let small = ctx.new_tensor(Type::F32, &[1, 3, 3, 1])?; // W 1, H 3
    assert_eq!(k32.conv_2d_direct(small, &plain)?.ne(), [0, 1, 4, 1]);

    let zero = Conv {
        stride: [0, 1],
        ..plain
    };
    assert!(refused(k32.conv_2d_direct(td, &zero)), "stride 0");
    let d16t = ctx.tensor_from_array_as(Type::F16, &data)?;
    assert!(
        refused(k32.conv_2d_direct(d16t, &plain)),
        "f16 data (read as f32)"
    );
    assert!(
        refused(k32.permute([1, 0, 2, 3])?.conv_2d_direct(td, &plain)),
        "a non-contiguous kernel"
    );
    let kb16 = ctx.tensor_from_array_as(Type::BF16, &kernel)?;
    assert!(refused(kb16.conv_2d_direct(td, &plain)), "bf16 kernel");
    let far = Conv {
        padding: [-100, 0],
        ..plain
    };
    assert!(
        refused(k32.conv_2d_direct(td, &far)),
        "a negative output size"
    );
    let huge = Conv {
        padding: [1 << 30, 0],
        ..plain
    };
    assert!(
        refused(k32.conv_2d_direct(td, &huge)),
        "2·padding overflows int"
    );
    Ok(())
}

#[test]
fn conv_2d_direct_patches_fit_the_work_buffer() -> Result<()> {
    // A patch of 1024·1024·4 f32 kernel values is 16 MiB, plus one f32 per
    // output channel: more than ggml's work buffer (its kernel asserts).
    let ctx = Context::new_no_alloc(1 << 20)?;
    let kernel = ctx.new_tensor(Type::F32, &[1, 4, 1024, 1024])?;
    let data = ctx.new_tensor(Type::F32, &[1, 4, 1024, 1024])?;
    assert!(refused(kernel.conv_2d_direct(data, &Conv::default())));
    // In f16 it fits.
    let k16 = ctx.new_tensor(Type::F16, &[1, 4, 1024, 1024])?;
    assert_eq!(
        k16.conv_2d_direct(data, &Conv::default())?.ne(),
        [1, 1, 1, 1]
    );
    // conv_3d_direct counts the same way.
    let k3 = ctx.new_tensor(Type::F32, &[4, 1, 1024, 1024])?;
    let d3 = ctx.new_tensor(Type::F32, &[4, 1, 1024, 1024])?;
    assert!(refused(k3.conv_3d_direct(d3, 4, &Conv3d::default())));
    Ok(())
}

/// Depthwise 2-D convolution: data `[n, c, h, w]`, kernel `[c, 1, kh, kw]`.
fn conv_2d_dw_ref(data: &ArrayD<f32>, kernel: &ArrayD<f32>, c: &Conv) -> ArrayD<f32> {
    let sh = data.shape();
    let (n, ch) = (sh[0], sh[1]);
    let mut out = Vec::new();
    for i in 0..ch {
        let d = data
            .slice(ggml::ndarray::s![.., i..=i, .., ..])
            .to_owned()
            .into_dyn();
        let k = kernel
            .slice(ggml::ndarray::s![i..=i, .., .., ..])
            .to_owned()
            .into_dyn();
        out.push(conv_2d_ref(&d, &k, c));
    }
    let (oh, ow) = (out[0].shape()[2], out[0].shape()[3]);
    ArrayD::from_shape_fn(IxDyn(&[n, ch, oh, ow]), |o| {
        out[o[1]][[o[0], 0, o[2], o[3]]]
    })
}

#[test]
fn conv_2d_dw_direct_in_both_layouts() -> Result<()> {
    let data = eval::input(&[2, 5, 6, 7], 207, 1.0); // [N, C, H, W]
    let kernel = eval::input(&[5, 1, 3, 3], 208, 1.0); // [C, 1, KH, KW]
    let ctx = Context::new(4 << 20)?;
    let td = ctx.tensor_from_array(&data)?;
    let k32 = ctx.tensor_from_array(&kernel)?;
    let k16 = ctx.tensor_from_array_as(Type::F16, &kernel)?;
    // CWHN: the data a permutation (2, 0, 1, 3) of a contiguous [C, W, H, N]
    // (array [N, H, W, C]); the kernel a permutation (3, 2, 0, 1) of a
    // contiguous [C, 1, KW, KH] (array [KH, KW, 1, C]).
    let nhwc = data.clone().permuted_axes(IxDyn(&[0, 2, 3, 1]));
    let dc = ctx
        .tensor_from_array(&nhwc.as_standard_layout().to_owned())?
        .permute([2, 0, 1, 3])?;
    let khw1c = kernel.clone().permuted_axes(IxDyn(&[2, 3, 1, 0]));
    let kc = ctx
        .tensor_from_array(&khw1c.as_standard_layout().to_owned())?
        .permute([3, 2, 0, 1])?;
    assert_eq!(dc.ne(), td.ne());
    assert_eq!(kc.ne(), k32.ne());
    let padded = Conv {
        stride: [1, 2],
        padding: [1, 1],
        dilation: [2, 1],
    };
    let got = eval::compute(
        &ctx,
        &[
            k32.conv_2d_dw_direct(td, &padded)?,
            k16.conv_2d_dw_direct(td, &Conv::default())?,
            kc.conv_2d_dw_direct(dc, &padded)?,
        ],
    )?;
    close(
        &got[0],
        &conv_2d_dw_ref(&data, &kernel, &padded),
        F32,
        "WHCN",
    )?;
    let kr16 = eval::rounded(&kernel, Type::F16);
    // The f16 kernel is widened; the data stays f32.
    close(
        &got[1],
        &conv_2d_dw_ref(&data, &kr16, &Conv::default()),
        F32,
        "WHCN, f16 kernel",
    )?;
    close(
        &got[2],
        &conv_2d_dw_ref(&data, &kernel, &padded),
        F32,
        "CWHN",
    )?;

    let zero = Conv {
        stride: [1, 0],
        ..padded
    };
    assert!(refused(k32.conv_2d_dw_direct(td, &zero)), "stride 0");
    let d16 = ctx.tensor_from_array_as(Type::F16, &data)?;
    assert!(
        refused(k32.conv_2d_dw_direct(d16, &padded)),
        "f16 data (written as f32)"
    );
    // Neither layout: ggml aborts.
    assert!(
        refused(k32.conv_2d_dw_direct(td.permute([1, 0, 2, 3])?, &padded)),
        "transposed data"
    );
    // CWHN data with a plainly contiguous kernel: read with the wrong strides.
    assert!(
        refused(k32.conv_2d_dw_direct(dc, &padded)),
        "CWHN data, WHCN kernel"
    );
    assert!(
        refused(kc.conv_2d_dw_direct(td, &padded)),
        "WHCN data, CWHN kernel"
    );
    let wrong = ctx.new_tensor(Type::F32, &[4, 1, 3, 3])?;
    assert!(refused(wrong.conv_2d_dw_direct(td, &padded)), "channels");
    Ok(())
}

/// 3-D convolution: data `[n·c, d, h, w]`, kernel `[oc·c, kd, kh, kw]`,
/// result `[n·oc, od, oh, ow]`.
fn conv_3d_ref(data: &ArrayD<f32>, kernel: &ArrayD<f32>, ch: usize, c: &Conv3d) -> ArrayD<f32> {
    let sh = data.shape();
    let (n, di, hi, wi) = (sh[0] / ch, sh[1], sh[2], sh[3]);
    let ks = kernel.shape();
    let (oc, kd, kh, kw) = (ks[0] / ch, ks[1], ks[2], ks[3]);
    let s = c.stride.map(i64::from);
    let p = c.padding.map(i64::from);
    let d = c.dilation.map(i64::from);
    let out = |i: usize, k: usize, a: usize| {
        ((i as i64 + 2 * p[a] - d[a] * (k as i64 - 1) - 1) / s[a] + 1) as usize
    };
    let (od, oh, ow) = (out(di, kd, 2), out(hi, kh, 1), out(wi, kw, 0));
    ArrayD::from_shape_fn(IxDyn(&[n * oc, od, oh, ow]), |o| {
        let (b, f) = (o[0] / oc, o[0] % oc);
        let mut sum = 0.0f64;
        for ci in 0..ch {
            for z in 0..kd {
                for y in 0..kh {
                    for x in 0..kw {
                        if let (Some(iz), Some(iy), Some(ix)) = (
                            at(o[1], z, s[2], p[2], d[2], di),
                            at(o[2], y, s[1], p[1], d[1], hi),
                            at(o[3], x, s[0], p[0], d[0], wi),
                        ) {
                            sum += f64::from(data[[b * ch + ci, iz, iy, ix]])
                                * f64::from(kernel[[f * ch + ci, z, y, x]]);
                        }
                    }
                }
            }
        }
        sum as f32
    })
}

#[test]
fn conv_3d_direct_and_through_im2col() -> Result<()> {
    let (n, ch, oc) = (2, 2, 3);
    let data = eval::input(&[n * ch, 3, 4, 5], 209, 1.0); // [N·C, D, H, W]
    let kernel = eval::input(&[oc * ch, 2, 2, 2], 210, 1.0); // [OC·C, KD, KH, KW]
    let ctx = Context::new(8 << 20)?;
    let td = ctx.tensor_from_array(&data)?;
    let k32 = ctx.tensor_from_array(&kernel)?;
    let k16 = ctx.tensor_from_array_as(Type::F16, &kernel)?;
    // The data with ggml's axes 1 and 2 swapped (any strides).
    let swapped = data.clone().permuted_axes(IxDyn(&[0, 2, 1, 3]));
    let dperm = ctx
        .tensor_from_array(&swapped.as_standard_layout().to_owned())?
        .permute([0, 2, 1, 3])?;
    let conv = Conv3d {
        stride: [2, 1, 1],
        padding: [1, 0, 1],
        dilation: [1, 2, 1],
    };
    let got = eval::compute(
        &ctx,
        &[
            k32.conv_3d_direct(td, ch as i64, &conv)?,
            k16.conv_3d_direct(td, ch as i64, &Conv3d::default())?,
            k32.conv_3d_direct(dperm, ch as i64, &conv)?,
            k32.conv_3d(td, ch as i64, &conv)?,
            k16.conv_3d(td, ch as i64, &Conv3d::default())?,
        ],
    )?;
    close(
        &got[0],
        &conv_3d_ref(&data, &kernel, ch, &conv),
        F32,
        "direct",
    )?;
    let (d16, kr16) = (
        eval::rounded(&data, Type::F16),
        eval::rounded(&kernel, Type::F16),
    );
    let plain16 = conv_3d_ref(&d16, &kr16, ch, &Conv3d::default());
    close(&got[1], &plain16, F16_SUMS, "direct, f16 kernel")?;
    close(
        &got[2],
        &conv_3d_ref(&data, &kernel, ch, &conv),
        F32,
        "direct, permuted data",
    )?;
    // Through f16 patches: data and kernel rounded to f16.
    close(
        &got[3],
        &conv_3d_ref(&d16, &kr16, ch, &conv),
        F16_SUMS,
        "im2col_3d, f32 kernel",
    )?;
    close(&got[4], &plain16, F16_SUMS, "im2col_3d, f16 kernel")?;

    let zero = Conv3d {
        stride: [1, 1, 0],
        ..conv
    };
    assert!(refused(k32.conv_3d_direct(td, 2, &zero)), "stride 0");
    assert!(
        refused(k32.conv_3d(td, 2, &zero)),
        "stride 0, through im2col"
    );
    assert!(
        refused(k32.conv_3d_direct(td, 4, &conv)),
        "4 channels do not divide 6"
    );
    assert!(refused(k32.conv_3d_direct(td, 0, &conv)), "no channels");
    assert!(
        refused(k32.conv_3d(td, 0, &conv)),
        "no channels, through im2col"
    );
    assert!(
        refused(k32.conv_3d(td, 4, &conv)),
        "4 channels, through im2col"
    );
    let d16t = ctx.tensor_from_array_as(Type::F16, &data)?;
    assert!(refused(k32.conv_3d_direct(d16t, 2, &conv)), "f16 data");
    assert!(
        refused(k32.conv_3d(d16t, 2, &conv)),
        "f16 data, through im2col"
    );
    Ok(())
}

/// The patches of a 3-D convolution: data `[n·c, d, h, w]`, kernel sizes
/// `(kd, kh, kw)`; `[n·od, oh, ow, c·kd·kh·kw]`.
fn im2col_3d_ref(data: &ArrayD<f32>, ch: usize, k: [usize; 3], c: &Conv3d) -> ArrayD<f32> {
    let sh = data.shape();
    let (n, di, hi, wi) = (sh[0] / ch, sh[1], sh[2], sh[3]);
    let [kd, kh, kw] = k;
    let s = c.stride.map(i64::from);
    let p = c.padding.map(i64::from);
    let d = c.dilation.map(i64::from);
    let out = |i: usize, k: usize, a: usize| {
        ((i as i64 + 2 * p[a] - d[a] * (k as i64 - 1) - 1) / s[a] + 1) as usize
    };
    let (od, oh, ow) = (out(di, kd, 2), out(hi, kh, 1), out(wi, kw, 0));
    ArrayD::from_shape_fn(IxDyn(&[n * od, oh, ow, ch * kd * kh * kw]), |o| {
        let (b, z0) = (o[0] / od, o[0] % od);
        let (ci, r) = (o[3] / (kd * kh * kw), o[3] % (kd * kh * kw));
        let (z, y, x) = (r / (kh * kw), (r / kw) % kh, r % kw);
        match (
            at(z0, z, s[2], p[2], d[2], di),
            at(o[1], y, s[1], p[1], d[1], hi),
            at(o[2], x, s[0], p[0], d[0], wi),
        ) {
            (Some(iz), Some(iy), Some(ix)) => data[[b * ch + ci, iz, iy, ix]],
            _ => 0.0,
        }
    })
}

#[test]
fn im2col_3d_gathers_patches() -> Result<()> {
    let ch = 2;
    let data = eval::input(&[2 * ch, 3, 4, 5], 211, 1.0);
    let ctx = Context::new(4 << 20)?;
    let td = ctx.tensor_from_array(&data)?;
    // Only the kernel's shape is read: [KW=2, KH=3, KD=2, OC·C=2].
    let kernel = ctx.new_tensor(Type::F16, &[2, 2, 3, 2])?;
    let swapped = data.clone().permuted_axes(IxDyn(&[0, 2, 1, 3]));
    let dperm = ctx
        .tensor_from_array(&swapped.as_standard_layout().to_owned())?
        .permute([0, 2, 1, 3])?;
    let conv = Conv3d {
        stride: [2, 1, 1],
        padding: [1, 1, 0],
        dilation: [1, 1, 2],
    };
    let got = eval::compute(
        &ctx,
        &[
            kernel.im2col_3d(td, ch as i64, &conv, Type::F32)?,
            kernel.im2col_3d(dperm, ch as i64, &conv, Type::F16)?,
        ],
    )?;
    let k = [2, 3, 2]; // KD, KH, KW
    let exact = Tol { abs: 0.0, rel: 0.0 };
    close(
        &got[0],
        &im2col_3d_ref(&data, ch, k, &conv),
        exact,
        "f32 patches",
    )?;
    let want16 = im2col_3d_ref(&eval::rounded(&data, Type::F16), ch, k, &conv);
    close(&got[1], &want16, exact, "f16 patches of permuted data")?;

    let zero = Conv3d {
        stride: [0, 1, 1],
        ..conv
    };
    assert!(
        refused(kernel.im2col_3d(td, 2, &zero, Type::F32)),
        "stride 0"
    );
    assert!(
        refused(kernel.im2col_3d(td, 0, &conv, Type::F32)),
        "no channels"
    );
    assert!(
        refused(kernel.im2col_3d(td, 3, &conv, Type::F32)),
        "3 does not divide 4"
    );
    assert!(
        refused(kernel.im2col_3d(td, 2, &conv, Type::BF16)),
        "bf16 patches"
    );
    let tiny = ctx.new_tensor(Type::F32, &[4, 1, 1, 1])?;
    assert!(
        refused(kernel.im2col_3d(tiny, 2, &Conv3d::default(), Type::F32)),
        "no output"
    );
    let d16 = ctx.tensor_from_array_as(Type::F16, &data)?;
    assert!(
        refused(kernel.im2col_3d(d16, 2, &conv, Type::F16)),
        "f16 data"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Gradients and col2im.

/// col2im: columns `[t_in, oc·k]` summed into `[oc, t_out]`.
fn col2im_ref(cols: &ArrayD<f32>, oc: usize, s: usize, p: usize) -> ArrayD<f32> {
    let (t_in, k) = (cols.shape()[0], cols.shape()[1] / oc);
    let t_out = (t_in - 1) * s + k - 2 * p;
    let mut out = ArrayD::zeros(IxDyn(&[oc, t_out]));
    for i in 0..t_in {
        for o in 0..oc {
            for j in 0..k {
                let t = (i * s + j) as i64 - p as i64;
                if (0..t_out as i64).contains(&t) {
                    out[[o, t as usize]] += cols[[i, o * k + j]];
                }
            }
        }
    }
    out
}

#[test]
fn col2im_1d_sums_overlapping_columns() -> Result<()> {
    let (oc, k, t_in) = (3, 4, 6);
    let cols = eval::input(&[t_in, oc * k], 212, 1.0);
    let ctx = Context::new(1 << 20)?;
    let c32 = ctx.tensor_from_array(&cols)?;
    let c16 = ctx.tensor_from_array_as(Type::F16, &cols)?;
    let cb16 = ctx.tensor_from_array_as(Type::BF16, &cols)?;
    let outs = [
        c32.col2im_1d(2, oc as i32, 1)?,
        c16.col2im_1d(3, oc as i32, 0)?,
        cb16.col2im_1d(1, oc as i32, 2)?,
    ];
    assert_eq!(outs[1].ty(), Type::F16);
    assert_eq!(outs[2].ty(), Type::BF16);
    let got = eval::compute(&ctx, &outs)?;
    close(&got[0], &col2im_ref(&cols, oc, 2, 1), F32, "f32")?;
    let r16 = eval::rounded(&cols, Type::F16);
    close(
        &got[1],
        &col2im_ref(&r16, oc, 3, 0),
        Tol::of(Type::F16, F32),
        "f16",
    )?;
    let rb16 = eval::rounded(&cols, Type::BF16);
    close(
        &got[2],
        &col2im_ref(&rb16, oc, 1, 2),
        Tol::of(Type::BF16, F32),
        "bf16",
    )?;

    assert!(refused(c32.col2im_1d(0, 3, 0)), "stride 0");
    assert!(
        refused(c32.col2im_1d(1, 5, 0)),
        "5 channels do not divide 12"
    );
    assert!(refused(c32.col2im_1d(1, 0, 0)), "no channels");
    assert!(refused(c32.col2im_1d(1, 3, -1)), "negative padding");
    assert!(refused(c32.col2im_1d(1, 3, 100)), "no output");
    assert!(
        refused(c32.col2im_1d(i32::MAX, 3, 1 << 30)),
        "2·padding overflows int"
    );
    assert!(
        refused(c32.transpose()?.col2im_1d(1, 2, 0)),
        "not contiguous"
    );
    Ok(())
}

/// im2col's adjoint: the gradient of patches `[n, oh, ow, c·kh·kw]` summed
/// onto data `[n, c, h, w]`.
fn im2col_back_ref(grad: &ArrayD<f32>, dims: [usize; 4], k: [usize; 2], c: &Conv) -> ArrayD<f32> {
    let [n, ch, h, w] = dims;
    let [kh, kw] = k;
    let (oh, ow) = (grad.shape()[1], grad.shape()[2]);
    let [s0, s1] = c.stride.map(i64::from);
    let [p0, p1] = c.padding.map(i64::from);
    let [d0, d1] = c.dilation.map(i64::from);
    let mut out = ArrayD::zeros(IxDyn(&[n, ch, h, w]));
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ci in 0..ch {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            if let (Some(iy), Some(ix)) =
                                (at(oy, ky, s1, p1, d1, h), at(ox, kx, s0, p0, d0, w))
                            {
                                out[[b, ci, iy, ix]] +=
                                    grad[[b, oy, ox, ci * kh * kw + ky * kw + kx]];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn im2col_back_is_im2cols_adjoint() -> Result<()> {
    let ctx = Context::new(4 << 20)?;
    // 2-D: data [N=2, C=3, H=5, W=6], kernel 2x3, stride 2, padding 1.
    let conv = Conv {
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let (oh, ow) = ((5 + 2 - 2) / 2 + 1, (6 + 2 - 3) / 2 + 1);
    let grad = eval::input(&[2, oh, ow, 3 * 2 * 3], 213, 1.0);
    let kernel = ctx.new_tensor(Type::F16, &[4, 3, 2, 3])?; // [OC, C, KH, KW]
    let tg = ctx.tensor_from_array(&grad)?;
    // 1-D: data [N=2, C=3, W=9], kernel 3, stride 1, padding 2, dilation 2.
    let conv1 = Conv {
        stride: [1, 7],
        padding: [2, 5],
        dilation: [2, 3],
    };
    let ow1 = 9 + 4 - 2 * 2;
    let grad1 = eval::input(&[2, ow1, 3 * 3], 214, 1.0);
    let kernel1 = ctx.new_tensor(Type::F32, &[4, 3, 3])?; // [OC, C, K]
    let tg1 = ctx.tensor_from_array(&grad1)?;
    let got = eval::compute(
        &ctx,
        &[
            tg.im2col_back(kernel, [6, 5, 3, 2], &conv, true)?,
            tg1.im2col_back(kernel1, [9, 3, 2, 1], &conv1, false)?,
        ],
    )?;
    close(
        &got[0],
        &im2col_back_ref(&grad, [2, 3, 5, 6], [2, 3], &conv),
        F32,
        "2-D",
    )?;
    // 1-D as 2-D with one row (height 1, kernel height 1, no vertical step).
    let grad1_2d = grad1
        .clone()
        .into_shape_with_order(IxDyn(&[2, 1, ow1, 9]))?;
    let conv1_2d = Conv {
        stride: [1, 1],
        padding: [2, 0],
        dilation: [2, 1],
    };
    let want1 = im2col_back_ref(&grad1_2d, [2, 3, 1, 9], [1, 3], &conv1_2d);
    close(&got[1], &want1, F32, "1-D")?;

    let zero = Conv {
        stride: [2, 0],
        ..conv
    };
    assert!(
        refused(tg.im2col_back(kernel, [6, 5, 3, 2], &zero, true)),
        "stride 0"
    );
    assert!(
        refused(tg.im2col_back(kernel, [6, 5, 4, 2], &conv, true)),
        "4 channels, patches of 3"
    );
    assert!(
        refused(tg.im2col_back(kernel, [6, 5, 3, 3], &conv, true)),
        "3 items, gradient of 2"
    );
    assert!(
        refused(tg.im2col_back(kernel, [i64::MAX, i64::MAX, 3, 2], &conv, true)),
        "channels beyond int's byte offsets"
    );
    assert!(
        refused(tg.im2col_back(kernel, [6, -5, 3, 2], &conv, true)),
        "negative size"
    );
    assert!(
        refused(tg1.im2col_back(kernel1, [9, 3, 2, 2], &conv1, false)),
        "1-D, 4 dimensions"
    );
    let g16 = ctx.tensor_from_array_as(Type::F16, &grad)?;
    assert!(
        refused(g16.im2col_back(kernel, [6, 5, 3, 2], &conv, true)),
        "f16 gradient"
    );
    let kb16 = ctx.new_tensor(Type::BF16, &[4, 3, 2, 3])?;
    assert!(
        refused(tg.im2col_back(kb16, [6, 5, 3, 2], &conv, true)),
        "bf16 kernel"
    );
    Ok(())
}

/// pool_2d's gradient: `grad [planes, oh, ow]` onto the input `x
/// [planes, h, w]`.
fn pool_2d_back_ref(
    grad: &ArrayD<f32>,
    x: &ArrayD<f32>,
    max: bool,
    k: [usize; 2],
    s: [usize; 2],
    p: [i64; 2],
) -> ArrayD<f32> {
    let (planes, oh, ow) = (grad.shape()[0], grad.shape()[1], grad.shape()[2]);
    let (h, w) = (x.shape()[1], x.shape()[2]);
    let mut out = ArrayD::zeros(x.raw_dim());
    for c in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = grad[[c, oy, ox]];
                let inside = (0..k[1])
                    .flat_map(|ky| (0..k[0]).map(move |kx| (ky, kx)))
                    .filter_map(|(ky, kx)| {
                        let iy = (oy * s[1] + ky) as i64 - p[1];
                        let ix = (ox * s[0] + kx) as i64 - p[0];
                        ((0..h as i64).contains(&iy) && (0..w as i64).contains(&ix))
                            .then_some((iy as usize, ix as usize))
                    });
                if max {
                    // The first largest value, scanning rows then columns.
                    let mut best: Option<(usize, usize)> = None;
                    for (iy, ix) in inside {
                        if best.is_none_or(|(by, bx)| x[[c, iy, ix]] > x[[c, by, bx]]) {
                            best = Some((iy, ix));
                        }
                    }
                    if let Some((iy, ix)) = best {
                        out[[c, iy, ix]] += g;
                    }
                } else {
                    for (iy, ix) in inside {
                        out[[c, iy, ix]] += g / (k[0] * k[1]) as f32;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn pool_2d_back_spreads_the_gradient() -> Result<()> {
    let x = eval::input(&[2, 3, 7, 6], 215, 2.0); // [N, C, H, W]
    let ctx = Context::new(1 << 20)?;
    let tx = ctx.tensor_from_array(&x)?;
    let (k, s, p) = ([3usize, 2], [2usize, 2], [1i64, 0]);
    // pool_2d's output size: (n + 2p - k) / s + 1.
    let (ow, oh) = ((6 + 2 - 3) / 2 + 1, (7 - 2) / 2 + 1);
    let grad = eval::input(&[2, 3, oh, ow], 216, 1.0);
    let tg = ctx.tensor_from_array(&grad)?;
    let ki = k.map(|v| v as i64);
    let si = s.map(|v| v as i64);
    // The forward pooling gives the same output shape.
    assert_eq!(tx.pool_2d(Pool::Max, ki, si, p)?.ne(), tg.ne());
    let got = eval::compute(
        &ctx,
        &[
            tg.pool_2d_back(tx, Pool::Avg, ki, si, p)?,
            tg.pool_2d_back(tx, Pool::Max, ki, si, p)?,
        ],
    )?;
    let planes = |a: &ArrayD<f32>| -> Result<ArrayD<f32>> {
        let sh = a.shape();
        Ok(a.clone()
            .into_shape_with_order(IxDyn(&[sh[0] * sh[1], sh[2], sh[3]]))?)
    };
    let (g3, x3) = (planes(&grad)?, planes(&x)?);
    close(
        &got[0],
        &pool_2d_back_ref(&g3, &x3, false, k, s, p),
        F32,
        "average",
    )?;
    close(
        &got[1],
        &pool_2d_back_ref(&g3, &x3, true, k, s, p),
        F32,
        "maximum",
    )?;

    assert!(
        refused(tg.pool_2d_back(tx, Pool::Avg, ki, [0, 2], p)),
        "stride 0"
    );
    assert!(
        refused(tg.pool_2d_back(tx, Pool::Avg, [0, 2], si, p)),
        "empty window"
    );
    let x16 = ctx.tensor_from_array_as(Type::F16, &x)?;
    assert!(
        refused(tg.pool_2d_back(x16, Pool::Max, ki, si, p)),
        "f16 input for the maximum"
    );
    // The average reads only the input's shape.
    assert!(
        tg.pool_2d_back(x16, Pool::Avg, ki, si, p).is_ok(),
        "f16 input for the average"
    );
    let g16 = ctx.tensor_from_array_as(Type::F16, &grad)?;
    assert!(
        refused(g16.pool_2d_back(tx, Pool::Avg, ki, si, p)),
        "f16 gradient"
    );
    assert!(
        refused(
            tg.permute([1, 0, 2, 3])?
                .pool_2d_back(tx, Pool::Avg, ki, si, p)
        ),
        "transposed gradient"
    );
    let fewer = ctx.new_tensor(Type::F32, &[2, 2, oh, ow])?;
    assert!(
        refused(fewer.pool_2d_back(tx, Pool::Avg, ki, si, p)),
        "fewer planes"
    );
    assert!(
        refused(tg.pool_2d_back(tx.permute([1, 0, 2, 3])?, Pool::Max, ki, si, p)),
        "transposed input"
    );
    assert!(
        refused(tg.pool_2d_back(tx, Pool::Avg, ki, si, [1 << 25, 0])),
        "padding beyond f32's integers"
    );
    Ok(())
}

/// The operands' context must be one: a tensor of another context is refused.
#[test]
fn operands_of_one_context() -> Result<()> {
    let (a, b) = (Context::new(1 << 16)?, Context::new(1 << 16)?);
    let k: Tensor<'_> = a.new_tensor(Type::F32, &[1, 1, 2, 2])?;
    let d = b.new_tensor(Type::F32, &[1, 1, 4, 4])?;
    assert!(k.conv_2d_direct(d, &Conv::default()).is_err());
    Ok(())
}

/// Every op of this file through its generic builder with hostile
/// parameters and operands: refused, or built and computed (or refused when
/// computed), never a crash.
#[test]
fn hostile_parameters_are_refused_or_computed() -> Result<()> {
    use ggml::ops::Params;
    const OPS: &[&str] = &[
        "conv_transpose_1d",
        "conv_transpose_2d_p0",
        "conv_2d_direct",
        "conv_2d_dw_direct",
        "conv_3d_direct",
        "im2col_3d",
        "conv_3d",
        "col2im_1d",
        "im2col_back",
        "pool_2d_back",
    ];
    // Mostly small values (so that some calls fit), and the extremes.
    let ints = [
        i64::MIN,
        -(1 << 31),
        -1,
        0,
        1,
        1,
        1,
        2,
        2,
        3,
        4,
        1 << 30,
        i64::MAX,
    ];
    let floats = [f32::NAN, -1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1e10];
    let ctx = Context::new(64 << 20)?;
    // Kernels, data and gradients of shapes that fit one another.
    let shapes: [&[usize]; 11] = [
        &[1, 3, 5, 5],
        &[2, 3, 2, 2],
        &[3, 1, 2, 2],
        &[2, 3, 4, 4],
        &[3, 2, 2],
        &[3, 5],
        &[4, 2, 2, 2],
        &[4, 3, 4, 4],
        &[5, 6],
        &[1, 3, 2, 2],
        &[1, 3, 3, 3],
    ];
    let mut pool = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let x = eval::input(shape, 300 + i as u32, 1.0);
        for ty in [Type::F32, Type::F16, Type::BF16] {
            pool.push(ctx.tensor_from_array_as(ty, &x)?);
        }
        pool.push(ctx.tensor_from_array(&x)?.transpose()?);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut built, mut computed) = (0, 0);
    for decl in ggml::ops::catalog().filter(|d| OPS.contains(&d.name())) {
        for _ in 0..3000 {
            let operands: Vec<Tensor<'_>> =
                (0..decl.arity()).map(|_| pool[next(pool.len())]).collect();
            let params = Params {
                flags: next(8) as u32,
                f: [0; 4].map(|_| floats[next(floats.len())]),
                i: [0; 4].map(|_| ints[next(ints.len())]),
            };
            let Ok(t) = decl.build(&operands, &params) else {
                continue;
            };
            built += 1;
            if t.len() > 1 << 20 {
                continue;
            }
            if eval::compute(&ctx, &[t]).is_ok() {
                computed += 1;
            }
        }
    }
    ensure!(
        built > 0 && computed > 0,
        "{built} built, {computed} computed"
    );
    Ok(())
}
