//! `im2col` and pooling against patches and windows computed here.

use anyhow::Result;
use ggml::ndarray::{ArrayD, IxDyn};
use ggml::ops::{Conv, Pool};
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

#[test]
fn im2col_gathers_patches() -> Result<()> {
    // Data [N=1, C=2, H=4, W=5]; kernel [OC=1, C=2, KH=2, KW=3]; stride 1,
    // padding 1 on the width, dilation 1.
    let data = eval::input(&[1, 2, 4, 5], 141, 1.0);
    let ctx = Context::new(1 << 20)?;
    let kernel = ctx.new_tensor(Type::F16, &[1, 2, 2, 3])?;
    let conv = Conv {
        stride: [1, 1],
        padding: [1, 0],
        dilation: [1, 1],
    };
    let y = kernel.im2col(ctx.tensor_from_array(&data)?, &conv, true, Type::F32)?;
    let (ow, oh) = (5 + 2 - 3 + 1, 4 - 2 + 1);
    assert_eq!(y.ne(), [2 * 2 * 3, ow, oh, 1]);
    let got = &eval::compute(&ctx, &[y])?[0];
    let want = ArrayD::from_shape_fn(IxDyn(&[oh as usize, ow as usize, 12]), |d| {
        let (y0, x0, k) = (d[0] as i64, d[1] as i64, d[2]);
        let (c, kh, kw) = (k / 6, (k % 6) / 3, k % 3);
        let (iy, ix) = (y0 + kh as i64, x0 + kw as i64 - 1);
        if (0..5).contains(&ix) {
            data[[0, c, iy as usize, ix as usize]]
        } else {
            0.0
        }
    });
    assert_close(got, &want, Tol { abs: 0.0, rel: 0.0 }, "im2col")?;
    let zero = Conv {
        stride: [0, 1],
        ..Conv::default()
    };
    assert!(
        matches!(
            kernel.im2col(ctx.tensor_from_array(&data)?, &zero, true, Type::F32),
            Err(Error::Op(_))
        ),
        "stride 0"
    );
    // ggml doubles the padding in int: 2^30 wraps to a negative size and its
    // builder aborts where the kernel is long enough to leave a positive
    // size in exact arithmetic (found by the fuzzer, seed 9402641). Shapes
    // only: a no_alloc context.
    let shapes = Context::new_no_alloc(1 << 20)?;
    let long = shapes.new_tensor(Type::F16, &[1, 1 << 30])?;
    let row = shapes.new_tensor(Type::F32, &[1, 1, 5])?;
    let padded = |p: i32| Conv {
        padding: [p, 0],
        ..Conv::default()
    };
    long.im2col(row, &padded((1 << 30) - 1), false, Type::F32)?;
    for padding in [1 << 30, i32::MAX] {
        assert!(
            matches!(
                long.im2col(row, &padded(padding), false, Type::F32),
                Err(Error::Op(_))
            ),
            "padding {padding}"
        );
    }
    Ok(())
}

#[test]
fn pooling_windows() -> Result<()> {
    let x = eval::input(&[2, 3, 7], 142, 2.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let got = eval::compute(
        &ctx,
        &[
            t.pool_1d(Pool::Avg, 3, 2, 1)?,
            t.pool_1d(Pool::Max, 2, 2, 0)?,
            t.pool_2d(Pool::Max, [2, 2], [1, 1], [0, 0])?,
        ],
    )?;
    // Average over the window's values inside the row.
    let avg = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |d| {
        let vals: Vec<f32> = (0..3)
            .map(|k| d[2] as i64 * 2 - 1 + k)
            .filter(|&j| (0..7).contains(&j))
            .map(|j| x[[d[0], d[1], j as usize]])
            .collect();
        vals.iter().sum::<f32>() / vals.len() as f32
    });
    let max = ArrayD::from_shape_fn(IxDyn(&[2, 3, 3]), |d| {
        x[[d[0], d[1], 2 * d[2]]].max(x[[d[0], d[1], 2 * d[2] + 1]])
    });
    let max2 = ArrayD::from_shape_fn(IxDyn(&[2, 2, 6]), |d| {
        [(0, 0), (0, 1), (1, 0), (1, 1)]
            .iter()
            .map(|&(a, b)| x[[d[0], d[1] + a, d[2] + b]])
            .fold(f32::MIN, f32::max)
    });
    let tol = Tol {
        abs: 1e-6,
        rel: 1e-6,
    };
    assert_close(&got[0], &avg, tol, "pool_1d avg")?;
    assert_close(&got[1], &max, tol, "pool_1d max")?;
    assert_close(&got[2], &max2, tol, "pool_2d max")?;
    assert!(
        matches!(t.pool_1d(Pool::Avg, 3, 0, 0), Err(Error::Op(_))),
        "stride 0"
    );
    assert!(
        matches!(t.pool_1d(Pool::Avg, 9, 1, 0), Err(Error::Op(_))),
        "a window longer than the row"
    );
    Ok(())
}

/// A direct 2-D convolution: data `[n, c, h, w]`, kernel `[oc, c, kh, kw]`.
fn conv2d_ref(data: &ArrayD<f32>, kernel: &ArrayD<f32>, s: usize, p: usize) -> ArrayD<f32> {
    let (n, c, h, w) = (
        data.shape()[0],
        data.shape()[1],
        data.shape()[2],
        data.shape()[3],
    );
    let (oc, kh, kw) = (kernel.shape()[0], kernel.shape()[2], kernel.shape()[3]);
    let (oh, ow) = ((h + 2 * p - kh) / s + 1, (w + 2 * p - kw) / s + 1);
    ArrayD::from_shape_fn(IxDyn(&[n, oc, oh, ow]), |d| {
        let mut sum = 0.0f64;
        for ci in 0..c {
            for y in 0..kh {
                for x in 0..kw {
                    let (iy, ix) = (
                        (d[2] * s + y) as i64 - p as i64,
                        (d[3] * s + x) as i64 - p as i64,
                    );
                    if (0..h as i64).contains(&iy) && (0..w as i64).contains(&ix) {
                        sum += f64::from(data[[d[0], ci, iy as usize, ix as usize]])
                            * f64::from(kernel[[d[1], ci, y, x]]);
                    }
                }
            }
        }
        sum as f32
    })
}

#[test]
fn convolutions_match_their_definition() -> Result<()> {
    let data = eval::input(&[2, 3, 6, 7], 143, 1.0);
    let kernel = eval::input(&[4, 3, 3, 3], 144, 1.0);
    let ctx = Context::new(8 << 20)?;
    let (td, tk) = (
        ctx.tensor_from_array(&data)?,
        ctx.tensor_from_array_as(Type::F16, &kernel)?,
    );
    let k16 = eval::rounded(&kernel, Type::F16);
    let conv = Conv {
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let got = eval::compute(&ctx, &[tk.conv_2d(td, &conv)?, tk.conv_2d_s1_ph(td)?])?;
    // f16 patches times an f16 kernel, 27 products a value.
    let tol = Tol {
        abs: 2e-2,
        rel: 5e-3,
    };
    assert_close(
        &got[0],
        &conv2d_ref(&eval::rounded(&data, Type::F16), &k16, 2, 1),
        tol,
        "conv_2d",
    )?;
    assert_close(
        &got[1],
        &conv2d_ref(&eval::rounded(&data, Type::F16), &k16, 1, 1),
        tol,
        "conv_2d_s1_ph",
    )?;

    // 1-D: data [n, c, l], kernel [oc, c, k]; one item (ggml's reshape
    // keeps batch and channels apart only for one).
    let d1 = eval::input(&[1, 3, 9], 145, 1.0);
    let k1 = eval::input(&[4, 3, 3], 146, 1.0);
    let (td1, tk1) = (
        ctx.tensor_from_array(&d1)?,
        ctx.tensor_from_array_as(Type::F16, &k1)?,
    );
    let got = &eval::compute(&ctx, &[tk1.conv_1d(td1, 1, 0, 1)?])?[0];
    let (d1r, k1r) = (eval::rounded(&d1, Type::F16), eval::rounded(&k1, Type::F16));
    let want = ArrayD::from_shape_fn(IxDyn(&[4, 7]), |d| {
        (0..3)
            .flat_map(|c| (0..3).map(move |k| (c, k)))
            .map(|(c, k)| d1r[[0, c, d[1] + k]] * k1r[[d[0], c, k]])
            .sum()
    });
    assert_close(got, &want, tol, "conv_1d")?;
    assert!(
        matches!(
            tk.conv_2d(
                td,
                &Conv {
                    stride: [0, 1],
                    ..Conv::default()
                }
            ),
            Err(Error::Op(_))
        ),
        "stride 0"
    );
    Ok(())
}

#[test]
fn depthwise_convolutions() -> Result<()> {
    // data [n=1, c=3, h=5, w=6]; kernel [c=3, 1, kh=3, kw=3].
    let data = eval::input(&[1, 3, 5, 6], 147, 1.0);
    let kernel = eval::input(&[3, 1, 3, 3], 148, 1.0);
    let ctx = Context::new(8 << 20)?;
    let (td, tk) = (
        ctx.tensor_from_array(&data)?,
        ctx.tensor_from_array_as(Type::F16, &kernel)?,
    );
    let conv = Conv {
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let got = &eval::compute(&ctx, &[tk.conv_2d_dw(td, &conv)?])?[0];
    let (dr, kr) = (
        eval::rounded(&data, Type::F16),
        eval::rounded(&kernel, Type::F16),
    );
    let want = ArrayD::from_shape_fn(IxDyn(&[1, 3, 5, 6]), |d| {
        let mut sum = 0.0f32;
        for y in 0..3 {
            for x in 0..3 {
                let (iy, ix) = (d[2] as i64 + y - 1, d[3] as i64 + x - 1);
                if (0..5).contains(&iy) && (0..6).contains(&ix) {
                    sum += dr[[0, d[1], iy as usize, ix as usize]]
                        * kr[[d[1], 0, y as usize, x as usize]];
                }
            }
        }
        sum
    });
    let got = got.clone().into_shape_with_order(IxDyn(&[1, 3, 5, 6]))?;
    assert_close(
        &got,
        &want,
        Tol {
            abs: 1e-2,
            rel: 5e-3,
        },
        "conv_2d_dw",
    )
}

#[test]
fn resampling() -> Result<()> {
    use ggml::ops::Interpolation;
    let x = eval::input(&[2, 3, 4], 149, 1.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let got = eval::compute(
        &ctx,
        &[
            t.upscale(2, Interpolation::Nearest)?,
            t.interpolate(
                [7, 5, 2, 1],
                Interpolation::Bilinear { antialias: false },
                true,
            )?,
        ],
    )?;
    let nearest = ArrayD::from_shape_fn(IxDyn(&[2, 6, 8]), |d| x[[d[0], d[1] / 2, d[2] / 2]]);
    assert_close(
        &got[0],
        &nearest,
        Tol { abs: 0.0, rel: 0.0 },
        "upscale nearest",
    )?;
    // Bilinear with aligned corners: output (i, j) samples the input at
    // (i·(h-1)/(H-1), j·(w-1)/(W-1)).
    let bilinear = ArrayD::from_shape_fn(IxDyn(&[2, 5, 7]), |d| {
        let (y, xx) = (d[1] as f32 * 2.0 / 4.0, d[2] as f32 * 3.0 / 6.0);
        let (y0, x0) = (y.floor() as usize, xx.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(2), (x0 + 1).min(3));
        let (fy, fx) = (y - y0 as f32, xx - x0 as f32);
        let v = |a: usize, b: usize| x[[d[0], a, b]];
        (1.0 - fy) * ((1.0 - fx) * v(y0, x0) + fx * v(y0, x1))
            + fy * ((1.0 - fx) * v(y1, x0) + fx * v(y1, x1))
    });
    assert_close(
        &got[1],
        &bilinear,
        Tol {
            abs: 1e-5,
            rel: 1e-5,
        },
        "bilinear, aligned corners",
    )?;
    assert!(
        matches!(t.upscale(1, Interpolation::Nearest), Err(Error::Op(_))),
        "factor 1"
    );
    assert!(
        matches!(
            t.interpolate([1 << 23, 1, 1, 1], Interpolation::Nearest, false),
            Err(Error::Op(_))
        ),
        "2^23 columns"
    );
    let empty = ctx.new_tensor(Type::F32, &[0, 3])?;
    assert!(
        matches!(
            empty.interpolate([3, 3, 1, 1], Interpolation::Nearest, false),
            Err(Error::Op(_))
        ),
        "from nothing"
    );
    Ok(())
}

#[test]
fn a_window_longer_than_the_padded_row_has_no_output() -> Result<()> {
    // ggml computes the pooled length in f32: (32 + 2 - 62) / 100 + 1 = 0.72,
    // truncated to 0 (and asserts); integer division would say 1. Found by
    // the fuzzer.
    let ctx = Context::new(1 << 20)?;
    let t = ctx.new_tensor(Type::F32, &[8, 32])?;
    assert!(matches!(
        t.pool_1d(Pool::Avg, 62, 100, 1),
        Err(Error::Op(_))
    ));
    assert!(matches!(
        ctx.new_tensor(Type::F32, &[32, 32])?
            .pool_2d(Pool::Max, [62, 2], [100, 1], [1, 0]),
        Err(Error::Op(_))
    ));
    Ok(())
}
