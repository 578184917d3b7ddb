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
