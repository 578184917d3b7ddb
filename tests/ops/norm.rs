//! Normalisations against references computed with ndarray: `norm`,
//! `rms_norm` (alone and fused with a following `mul`), `l2_norm`,
//! `group_norm`; in place; refusals.

use anyhow::Result;
use ggml::ndarray::{ArrayD, Axis};
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

const TOL: Tol = Tol {
    abs: 1e-5,
    rel: 1e-4,
};

/// `f` applied to each row (the last axis).
fn rows(x: &ArrayD<f32>, f: impl Fn(&[f32]) -> Vec<f32>) -> ArrayD<f32> {
    let mut out = x.clone();
    for mut row in out.lanes_mut(Axis(x.ndim() - 1)) {
        let v: Vec<f32> = row.iter().copied().collect();
        for (o, n) in row.iter_mut().zip(f(&v)) {
            *o = n;
        }
    }
    out
}

fn norm_ref(v: &[f32], eps: f32) -> Vec<f32> {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    let scale = 1.0 / (var + f64::from(eps)).sqrt();
    v.iter()
        .map(|&x| ((f64::from(x) - mean) * scale) as f32)
        .collect()
}

fn rms_ref(v: &[f32], eps: f32) -> Vec<f32> {
    let ms = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / v.len() as f64;
    let scale = 1.0 / (ms + f64::from(eps)).sqrt();
    v.iter().map(|&x| (f64::from(x) * scale) as f32).collect()
}

fn l2_ref(v: &[f32], eps: f32) -> Vec<f32> {
    let len = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let scale = 1.0 / len.max(f64::from(eps));
    v.iter().map(|&x| (f64::from(x) * scale) as f32).collect()
}

#[test]
fn row_norms_match_their_definitions() -> Result<()> {
    let x = eval::input(&[3, 4, 64], 21, 3.0);
    let eps = 1e-5;
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let got = eval::compute(&ctx, &[t.norm(eps)?, t.rms_norm(eps)?, t.l2_norm(eps)?])?;
    assert_close(&got[0], &rows(&x, |v| norm_ref(v, eps)), TOL, "norm")?;
    assert_close(&got[1], &rows(&x, |v| rms_ref(v, eps)), TOL, "rms_norm")?;
    assert_close(&got[2], &rows(&x, |v| l2_ref(v, eps)), TOL, "l2_norm")?;
    Ok(())
}

#[test]
fn rms_norm_times_weights_as_in_a_llama_layer() -> Result<()> {
    // rms_norm then mul by a row of weights: the CPU fuses the two.
    let x = eval::input(&[5, 48], 22, 2.0);
    let w = eval::input(&[48], 23, 1.5);
    let eps = 1e-6;
    let ctx = Context::new(1 << 20)?;
    let (tx, tw) = (ctx.tensor_from_array(&x)?, ctx.tensor_from_array(&w)?);
    let y = tx.rms_norm(eps)?.mul(tw)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    let want = rows(&x, |v| rms_ref(v, eps)) * &w;
    assert_close(got, &want, TOL, "rms_norm · w")?;
    Ok(())
}

#[test]
fn group_norm_over_channels() -> Result<()> {
    // ndarray shape [n, channels, h, w] is ggml's ne = [w, h, channels, n].
    let (n, c, h, w) = (2, 6, 3, 4);
    let x = eval::input(&[n, c, h, w], 24, 2.0);
    let (groups, eps) = (3i64, 1e-6f32);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let got = &eval::compute(&ctx, &[t.group_norm(groups, eps)?])?[0];
    let per = c / groups as usize;
    let mut want = x.clone();
    for i in 0..n {
        for g in 0..groups as usize {
            let block: Vec<f32> = (g * per..(g + 1) * per)
                .flat_map(|ch| {
                    x.slice(ggml::ndarray::s![i, ch, .., ..])
                        .iter()
                        .copied()
                        .collect::<Vec<_>>()
                })
                .collect();
            let normed = norm_ref(&block, eps);
            let mut k = 0;
            for ch in g * per..(g + 1) * per {
                for v in want.slice_mut(ggml::ndarray::s![i, ch, .., ..]).iter_mut() {
                    *v = normed[k];
                    k += 1;
                }
            }
        }
    }
    assert_close(got, &want, TOL, "group_norm")?;
    Ok(())
}

#[test]
fn in_place_and_refusals() -> Result<()> {
    let x = eval::input(&[4, 32], 25, 2.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let y = t.rms_norm_inplace(1e-6)?;
    let got = eval::compute(&ctx, &[y, t])?;
    let want = rows(&x, |v| rms_ref(v, 1e-6));
    assert_close(&got[0], &want, TOL, "in place")?;
    assert_close(&got[1], &want, TOL, "in place, the operand")?;

    for eps in [-1.0, f32::NAN] {
        match t.norm(eps) {
            Err(Error::Op(e)) => assert!(e.rule.contains("eps"), "{}", e.rule),
            other => panic!("eps {eps}: expected Error::Op, got {other:?}"),
        }
    }
    assert!(matches!(t.group_norm(0, 1e-6), Err(Error::Op(_))));
    assert!(matches!(t.group_norm(-3, 1e-6), Err(Error::Op(_))));
    let h = ctx.new_tensor(Type::F16, &[2, 8])?;
    let y = h.rms_norm(1e-6)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::UnsupportedNode { op: "rms_norm", .. })
    ));
    Ok(())
}

#[test]
fn more_groups_than_channels_are_refused() -> Result<()> {
    // ggml computes (channels + groups - 1) / groups in int: i32::MAX groups
    // overflowed it and the kernel wrote out of bounds (found by the fuzzer,
    // seed 22000030).
    let ctx = Context::new(1 << 20)?;
    let t = ctx.new_tensor(Type::F32, &[2, 4, 3, 8])?; // ne = [8, 3, 4, 2]: 4 channels
    t.group_norm(4, 1e-6)?;
    for groups in [5, i64::from(i32::MAX)] {
        assert!(
            matches!(t.group_norm(groups, 1e-6), Err(Error::Op(_))),
            "{groups} groups"
        );
    }
    Ok(())
}
