//! The backward ops against their derivatives written here: `silu_back`,
//! `rms_norm_back`, `soft_max_ext_back`, `get_rows_back`, `repeat_back`.

use anyhow::Result;
use ggml::ndarray::{arr1, ArrayD, Axis, IxDyn};
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

const TOL: Tol = Tol {
    abs: 1e-5,
    rel: 1e-4,
};

#[test]
fn gradients_of_silu_rms_norm_and_soft_max() -> Result<()> {
    let x = eval::input(&[3, 16], 121, 2.0);
    let dy = eval::input(&[3, 16], 122, 1.0);
    let eps = 1e-5f32;
    let ctx = Context::new(1 << 20)?;
    let (tx, tdy) = (ctx.tensor_from_array(&x)?, ctx.tensor_from_array(&dy)?);
    let y = tx.soft_max()?;
    let got = eval::compute(
        &ctx,
        &[
            tdy.silu_back(tx)?,
            tdy.rms_norm_back(tx, eps)?,
            tdy.soft_max_ext_back(y, 0.5)?,
            y,
        ],
    )?;

    let s = x.mapv(|v| 1.0 / (1.0 + (-v).exp()));
    let want_silu = &dy * &s * &(x.mapv(|_| 1.0) + &x * &s.mapv(|v| 1.0 - v));
    assert_close(&got[0], &want_silu, TOL, "silu_back")?;

    let mut want_rms = x.clone();
    for ((mut out, xr), dr) in want_rms
        .outer_iter_mut()
        .zip(x.outer_iter())
        .zip(dy.outer_iter())
    {
        let n = xr.len() as f64;
        let r = 1.0
            / (xr.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n + f64::from(eps)).sqrt();
        let dot: f64 = xr
            .iter()
            .zip(dr.iter())
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        for ((o, &xv), &dv) in out.iter_mut().zip(xr.iter()).zip(dr.iter()) {
            *o = (r * f64::from(dv) - r.powi(3) / n * f64::from(xv) * dot) as f32;
        }
    }
    assert_close(&got[1], &want_rms, TOL, "rms_norm_back")?;

    let yv = &got[3];
    let mut want_sm = yv.clone();
    for ((mut out, yr), dr) in want_sm
        .outer_iter_mut()
        .zip(yv.outer_iter())
        .zip(dy.outer_iter())
    {
        let dot: f32 = yr.iter().zip(dr.iter()).map(|(a, b)| a * b).sum();
        for ((o, &yv), &dv) in out.iter_mut().zip(yr.iter()).zip(dr.iter()) {
            *o = 0.5 * yv * (dv - dot);
        }
    }
    assert_close(&got[2], &want_sm, TOL, "soft_max_ext_back")?;
    let other = ctx.new_tensor(Type::F32, &[3, 15])?;
    assert!(
        matches!(tdy.silu_back(other), Err(Error::Op(_))),
        "shapes differ"
    );
    Ok(())
}

#[test]
fn scatter_and_tile_gradients() -> Result<()> {
    let grad = eval::input(&[4, 5], 123, 1.0);
    let ids = arr1(&[2i32, 0, 2, 5]);
    let ctx = Context::new(1 << 20)?;
    let (tg, ti) = (ctx.tensor_from_array(&grad)?, ctx.tensor_from_array(&ids)?);
    let like = ctx.new_tensor(Type::F32, &[6, 5])?;
    let tiled = eval::input(&[2, 6], 124, 1.0);
    let tt = ctx.tensor_from_array(&tiled)?;
    let small = ctx.new_tensor(Type::F32, &[1, 3])?;
    let got = eval::compute(&ctx, &[tg.get_rows_back(ti, like)?, tt.repeat_back(small)?])?;
    let mut want = ArrayD::<f32>::zeros(IxDyn(&[6, 5]));
    for (k, &r) in ids.iter().enumerate() {
        let mut row = want.index_axis_mut(Axis(0), r as usize);
        row += &grad.index_axis(Axis(0), k);
    }
    assert_close(&got[0], &want, TOL, "get_rows_back")?;
    let want = ArrayD::from_shape_fn(IxDyn(&[3]), |d| {
        (0..2)
            .flat_map(|i| [0, 3].map(move |o| (i, o)))
            .map(|(i, o)| tiled[[i, d[0] + o]])
            .sum()
    });
    assert_close(&got[1], &want, TOL, "repeat_back")?;
    // An index past `like`'s rows is refused before computing.
    let bad = ctx.tensor_from_array(&arr1(&[6i32, 0, 0, 0]))?;
    let y = tg.get_rows_back(bad, like)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::Op(_))
    ));
    Ok(())
}

#[test]
fn cross_entropy_loss_and_its_gradient() -> Result<()> {
    let logits = eval::input(&[4, 7], 125, 3.0);
    // Target distributions: a soft max of other values.
    let raw = eval::input(&[4, 7], 126, 2.0);
    let mut labels = raw.mapv(f32::exp);
    for mut row in labels.outer_iter_mut() {
        let s: f32 = row.sum();
        row /= s;
    }
    let ctx = Context::new(1 << 20)?;
    let (tl, tt) = (
        ctx.tensor_from_array(&logits)?,
        ctx.tensor_from_array(&labels)?,
    );
    let g = ctx.tensor_from_array(&arr1(&[2.0f32]))?;
    let got = eval::compute(
        &ctx,
        &[
            tl.cross_entropy_loss(tt)?,
            g.cross_entropy_loss_back(tl, tt)?,
        ],
    )?;
    let rows = 4.0f64;
    let mut loss = 0.0f64;
    let mut grad = logits.clone();
    for ((lr, tr), mut gr) in logits
        .outer_iter()
        .zip(labels.outer_iter())
        .zip(grad.outer_iter_mut())
    {
        let max = lr.iter().copied().fold(f32::MIN, f32::max);
        let z: f64 = lr.iter().map(|&v| f64::from(v - max).exp()).sum();
        for ((&l, &t), o) in lr.iter().zip(tr.iter()).zip(gr.iter_mut()) {
            let log_p = f64::from(l - max) - z.ln();
            loss -= f64::from(t) * log_p;
            *o = ((log_p.exp() - f64::from(t)) * 2.0 / rows) as f32;
        }
    }
    assert_close(
        &got[0],
        &ArrayD::from_elem(IxDyn(&[1]), (loss / rows) as f32),
        TOL,
        "cross_entropy_loss",
    )?;
    assert_close(&got[1], &grad, TOL, "cross_entropy_loss_back")
}
