//! The pieces of attention against references written here: `soft_max`
//! and `soft_max_ext` (scale, f32 and f16 masks broadcast over heads, ALiBi,
//! sinks), and `rope` / `rope_ext` (normal and NeoX layouts, frequency
//! factors, partial rotation), in f32 and f16.

use anyhow::Result;
use ggml::ndarray::{ArrayD, Axis, IxDyn};
use ggml::ops::{Rope, RopeMode, SoftMax};
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

const TOL: Tol = Tol {
    abs: 1e-6,
    rel: 1e-5,
};

/// Soft max of `row`, with an optional sink logit.
fn softmax_ref(row: &[f32], sink: Option<f32>) -> Vec<f32> {
    let max = row
        .iter()
        .copied()
        .chain(sink)
        .fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = row.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = e.iter().sum::<f64>() + sink.map_or(0.0, |s| f64::from(s - max).exp());
    e.iter().map(|&v| (v / sum) as f32).collect()
}

/// ggml's ALiBi slope of head `h` of `heads`.
fn alibi_slope(h: usize, heads: usize, max_bias: f32) -> f32 {
    let n_log2 = 1usize << (heads as f64).log2().floor() as u32;
    let m0 = 2f32.powf(-max_bias / n_log2 as f32);
    let m1 = 2f32.powf(-(max_bias / 2.0) / n_log2 as f32);
    if h < n_log2 {
        m0.powi(h as i32 + 1)
    } else {
        m1.powi(2 * (h - n_log2) as i32 + 1)
    }
}

#[test]
fn soft_max_of_rows() -> Result<()> {
    let x = eval::input(&[3, 5, 17], 41, 6.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let got = &eval::compute(&ctx, &[t.soft_max()?])?[0];
    let mut want = x.clone();
    for mut row in want.lanes_mut(Axis(2)) {
        let r: Vec<f32> = row.iter().copied().collect();
        row.iter_mut()
            .zip(softmax_ref(&r, None))
            .for_each(|(o, v)| *o = v);
    }
    assert_close(got, &want, TOL, "soft_max")
}

#[test]
fn soft_max_ext_with_masks_alibi_and_sinks() -> Result<()> {
    // Scores [heads, queries, keys]; the mask [queries + 2, keys] (more rows
    // than queries, as ggml allows), causal, shared by every head.
    let (heads, q, k) = (4, 3, 6);
    let x = eval::input(&[heads, q, k], 42, 4.0);
    let mask = ArrayD::from_shape_fn(IxDyn(&[q + 2, k]), |d| {
        if d[1] > d[0] + 3 {
            f32::NEG_INFINITY
        } else {
            0.1 * d[1] as f32
        }
    });
    let sinks = ggml::ndarray::arr1(&[0.5f32, -1.0, 2.0, 0.0]);
    let scale = 0.35f32;
    for mask_ty in [Type::F32, Type::F16] {
        for (max_bias, with_sinks) in [(0.0f32, false), (8.0, false), (0.0, true), (8.0, true)] {
            let ctx = Context::new(1 << 20)?;
            let t = ctx.tensor_from_array(&x)?;
            let m = ctx.tensor_from_array_as(mask_ty, &mask)?;
            let s = ctx.tensor_from_array(&sinks)?;
            let params = SoftMax {
                mask: Some(m),
                scale,
                max_bias,
                sinks: with_sinks.then_some(s),
            };
            let got = &eval::compute(&ctx, &[t.soft_max_ext(&params)?])?[0];
            let mask_r = eval::rounded(&mask, mask_ty);
            let mut want = x.clone();
            for h in 0..heads {
                let slope = if max_bias > 0.0 {
                    alibi_slope(h, heads, max_bias)
                } else {
                    1.0
                };
                for i in 0..q {
                    let row: Vec<f32> = (0..k)
                        .map(|j| x[[h, i, j]] * scale + slope * mask_r[[i, j]])
                        .collect();
                    let sm = softmax_ref(&row, with_sinks.then(|| sinks[h]));
                    for j in 0..k {
                        want[[h, i, j]] = sm[j];
                    }
                }
            }
            assert_close(
                got,
                &want,
                TOL,
                &format!("mask {mask_ty}, max_bias {max_bias}, sinks {with_sinks}"),
            )?;
        }
    }
    Ok(())
}

#[test]
fn soft_max_rules() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let t = ctx.new_tensor(Type::F32, &[2, 3, 8])?;
    let short = ctx.new_tensor(Type::F32, &[2, 8])?;
    let p = SoftMax {
        mask: Some(short),
        ..SoftMax::default()
    };
    assert!(
        matches!(t.soft_max_ext(&p), Err(Error::Op(_))),
        "a mask with fewer rows"
    );
    let p = SoftMax {
        max_bias: 1.0,
        ..SoftMax::default()
    };
    assert!(
        matches!(t.soft_max_ext(&p), Err(Error::Op(_))),
        "ALiBi without a mask"
    );
    assert!(
        matches!(t.transpose()?.soft_max(), Err(Error::Op(_))),
        "not contiguous"
    );
    let q = ctx.new_tensor(Type::Q8_0, &[3, 32])?;
    let p = SoftMax {
        mask: Some(q),
        ..SoftMax::default()
    };
    let u = ctx.new_tensor(Type::F32, &[3, 32])?;
    assert!(
        matches!(u.soft_max_ext(&p), Err(Error::Op(_))),
        "a quantized mask"
    );
    let wrong_sinks = ctx.new_tensor(Type::F32, &[3])?;
    let p = SoftMax {
        sinks: Some(wrong_sinks),
        ..SoftMax::default()
    };
    assert!(
        matches!(t.soft_max_ext(&p), Err(Error::Op(_))),
        "sinks not one per head"
    );
    Ok(())
}

/// RoPE of `x` (ndarray `[tokens, heads, dim]`) by `pos`, as defined.
fn rope_ref(x: &ArrayD<f32>, pos: &[i32], r: &Rope, factors: Option<&[f32]>) -> ArrayD<f32> {
    let dim = x.shape()[2];
    let n = r.n_dims as usize;
    let mut out = x.clone();
    for (t, &p) in pos.iter().enumerate() {
        for h in 0..x.shape()[1] {
            for i in 0..n / 2 {
                let ff = factors.map_or(1.0, |f| f64::from(f[i]));
                let theta = f64::from(p) * f64::from(r.freq_base).powf(-2.0 * i as f64 / n as f64)
                    / ff
                    * f64::from(r.freq_scale);
                let (c, s) = (
                    theta.cos() * f64::from(r.attn_factor),
                    theta.sin() * f64::from(r.attn_factor),
                );
                let (a, b) = match r.mode {
                    RopeMode::Neox => (i, i + n / 2),
                    _ => (2 * i, 2 * i + 1),
                };
                let (x0, x1) = (f64::from(x[[t, h, a]]), f64::from(x[[t, h, b]]));
                out[[t, h, a]] = (x0 * c - x1 * s) as f32;
                out[[t, h, b]] = (x0 * s + x1 * c) as f32;
            }
        }
    }
    let _ = dim;
    out
}

#[test]
fn rope_in_both_layouts_with_factors_and_partial_rotation() -> Result<()> {
    let (tokens, heads, dim) = (5, 3, 16);
    let x = eval::input(&[tokens, heads, dim], 43, 2.0);
    let pos = [0i32, 1, 7, 100, -3];
    let factors: Vec<f32> = (0..dim / 2).map(|i| 1.0 + 0.25 * i as f32).collect();
    for ty in [Type::F32, Type::F16] {
        for mode in [RopeMode::Normal, RopeMode::Neox] {
            for n_dims in [16, 8] {
                for use_factors in [false, true] {
                    let r = Rope {
                        mode,
                        freq_base: 500.0,
                        freq_scale: 0.5,
                        attn_factor: 1.25,
                        ..Rope::new(n_dims)
                    };
                    let ctx = Context::new(1 << 20)?;
                    let t = ctx.tensor_from_array_as(ty, &x)?;
                    let p = ctx.tensor_from_array(&ggml::ndarray::arr1(&pos))?;
                    let f = ctx.tensor_from_array(&ggml::ndarray::arr1(&factors))?;
                    let y = t.rope_ext(p, use_factors.then_some(f), &r)?;
                    let got = &eval::compute(&ctx, &[y])?[0];
                    let want = rope_ref(
                        &eval::rounded(&x, ty),
                        &pos,
                        &r,
                        use_factors.then_some(&factors[..]),
                    );
                    // |x| ≤ 2 scaled by 1.25: absolute error of the type's rounding.
                    let tol = Tol::of(
                        ty,
                        Tol {
                            abs: 2e-5,
                            rel: 1e-4,
                        },
                    );
                    let tol = Tol {
                        abs: tol.abs * 3.0,
                        ..tol
                    };
                    assert_close(
                        got,
                        &want,
                        tol,
                        &format!("{ty} {mode:?} n_dims {n_dims} factors {use_factors}"),
                    )?;
                }
            }
        }
    }
    Ok(())
}

#[test]
fn rope_plain_matches_rope_ext_defaults_and_rules() -> Result<()> {
    let x = eval::input(&[4, 2, 8], 44, 1.0);
    let pos = [3i32, 1, 4, 1];
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let p = ctx.tensor_from_array(&ggml::ndarray::arr1(&pos))?;
    let got = &eval::compute(&ctx, &[t.rope(p, 8, RopeMode::Neox)?])?[0];
    let r = Rope {
        mode: RopeMode::Neox,
        ..Rope::new(8)
    };
    assert_close(
        got,
        &rope_ref(&x, &pos, &r, None),
        Tol {
            abs: 1e-5,
            rel: 1e-4,
        },
        "rope",
    )?;

    for bad in [0, 3, 10, -2] {
        assert!(
            matches!(t.rope(p, bad, RopeMode::Normal), Err(Error::Op(_))),
            "n_dims {bad}"
        );
    }
    let short = ctx.tensor_from_array(&ggml::ndarray::arr1(&[1i32, 2]))?;
    assert!(
        matches!(t.rope(short, 8, RopeMode::Normal), Err(Error::Op(_))),
        "too few positions"
    );
    let odd = ctx.new_tensor(Type::F32, &[4, 2, 7])?;
    assert!(
        matches!(odd.rope(p, 6, RopeMode::Normal), Err(Error::Op(_))),
        "an odd row length"
    );
    // Factors for n_dims / 2 pairs only: ggml's kernel would read past them.
    let few = ctx.tensor_from_array(&ggml::ndarray::arr1(&[1.0f32, 1.0]))?;
    let r = Rope::new(4);
    assert!(
        matches!(t.rope_ext(p, Some(few), &r), Err(Error::Op(_))),
        "too few factors"
    );
    Ok(())
}
