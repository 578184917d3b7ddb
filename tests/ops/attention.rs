//! The pieces of attention against references written here: `soft_max`
//! and `soft_max_ext` (scale, f32 and f16 masks broadcast over heads, ALiBi,
//! sinks), and `rope` / `rope_ext` (normal and NeoX layouts, frequency
//! factors, partial rotation), in f32 and f16.

use anyhow::Result;
use ggml::ndarray::{ArrayD, Axis, IxDyn};
use ggml::ops::{FlashAttn as FlashAttnParams, Rope, RopeMode, SoftMax};
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

/// Attention by its definition: q `[b, heads, n, dk]`, k `[b, hkv, kv, dk]`,
/// v `[b, hkv, kv, dv]`, mask `[kv]` rows per query; result
/// `[b, n, heads, dv]` as ggml lays it out.
#[allow(clippy::too_many_arguments)]
fn attention_ref(
    q: &ArrayD<f32>,
    k: &ArrayD<f32>,
    v: &ArrayD<f32>,
    mask: Option<&ArrayD<f32>>,
    scale: f32,
    softcap: f32,
    sinks: Option<&[f32]>,
) -> ArrayD<f32> {
    let (b, heads, n, dk) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let (hkv, kv, dv) = (k.shape()[1], k.shape()[2], v.shape()[3]);
    let mut out = ArrayD::zeros(IxDyn(&[b, n, heads, dv]));
    for bi in 0..b {
        for h in 0..heads {
            let g = h / (heads / hkv);
            for i in 0..n {
                let mut s: Vec<f64> = (0..kv)
                    .map(|j| {
                        let dot: f64 = (0..dk)
                            .map(|d| f64::from(q[[bi, h, i, d]]) * f64::from(k[[bi, g, j, d]]))
                            .sum();
                        let mut x = dot * f64::from(scale);
                        if softcap != 0.0 {
                            x = f64::from(softcap) * (x / f64::from(softcap)).tanh();
                        }
                        x + mask.map_or(0.0, |m| f64::from(m[[i, j]]))
                    })
                    .collect();
                let sink = sinks.map(|s| f64::from(s[h]));
                let max = s
                    .iter()
                    .copied()
                    .chain(sink)
                    .fold(f64::NEG_INFINITY, f64::max);
                s.iter_mut().for_each(|x| *x = (*x - max).exp());
                let sum: f64 = s.iter().sum::<f64>() + sink.map_or(0.0, |x| (x - max).exp());
                for d in 0..dv {
                    let o: f64 = (0..kv).map(|j| s[j] * f64::from(v[[bi, g, j, d]])).sum();
                    out[[bi, i, h, d]] = (o / sum) as f32;
                }
            }
        }
    }
    out
}

#[test]
fn flash_attention_matches_its_definition() -> Result<()> {
    // Grouped-query attention: 4 query heads over 2 key/value heads.
    let (b, heads, hkv, n, kv, dk, dv) = (1, 4, 2, 5, 9, 32, 32);
    let q = eval::input(&[b, heads, n, dk], 51, 1.0);
    let k = eval::input(&[b, hkv, kv, dk], 52, 1.0);
    let v = eval::input(&[b, hkv, kv, dv], 53, 1.0);
    // A causal mask over a cache of kv entries: query i sees keys ≤ i + 4.
    let mask = ArrayD::from_shape_fn(IxDyn(&[n + 3, kv + 7]), |d| {
        if d[1] > d[0] + 4 {
            f32::NEG_INFINITY
        } else {
            0.0
        }
    });
    let sinks = [0.3f32, -0.2, 1.0, 0.0];
    let scale = 1.0 / (dk as f32).sqrt();
    for (kt, vt) in [
        (Type::F32, Type::F32),
        (Type::F16, Type::F16),
        (Type::Q8_0, Type::F16),
        (Type::F16, Type::Q8_0),
    ] {
        for (softcap, with_mask, with_sinks) in
            [(0.0f32, true, false), (0.0, false, true), (5.0, true, true)]
        {
            let ctx = Context::new(8 << 20)?;
            let tq = ctx.tensor_from_array(&q)?;
            let tk = ctx.tensor_from_array_as(kt, &k)?;
            let tv = ctx.tensor_from_array_as(vt, &v)?;
            let tm = ctx.tensor_from_array_as(Type::F16, &mask)?;
            let ts = ctx.tensor_from_array(&ggml::ndarray::arr1(&sinks))?;
            let params = FlashAttnParams {
                mask: with_mask.then_some(tm),
                scale,
                logit_softcap: softcap,
                sinks: with_sinks.then_some(ts),
                ..FlashAttnParams::new(scale)
            };
            let y = tq.flash_attn_ext(tk, tv, &params)?;
            assert_eq!(y.shape(), vec![n, heads, dv], "ggml's [dv, heads, n, 1]");
            let (ks, vs) = {
                let data = ctx.data()?;
                (
                    data.to_array::<f32>(tk)?
                        .into_shape_with_order(IxDyn(k.shape()))?,
                    data.to_array::<f32>(tv)?
                        .into_shape_with_order(IxDyn(v.shape()))?,
                )
            };
            let got = &eval::compute(&ctx, &[y])?[0];
            let want = attention_ref(
                &q,
                &ks,
                &vs,
                with_mask.then_some(&mask),
                scale,
                softcap,
                with_sinks.then_some(&sinks[..]),
            )
            .index_axis_move(Axis(0), 0);
            // q is quantized to the keys' dot-product type (f16, q8_0), and
            // f16 values are accumulated in f16.
            let tol = match (kt, vt) {
                (Type::F32, Type::F32) => Tol {
                    abs: 1e-5,
                    rel: 1e-4,
                },
                _ => Tol {
                    abs: 1e-2,
                    rel: 1e-2,
                },
            };
            assert_close(
                got,
                &want,
                tol,
                &format!("k {kt}, v {vt}, softcap {softcap}, mask {with_mask}, sinks {with_sinks}"),
            )?;
        }
    }
    Ok(())
}

#[test]
fn flash_attention_rules() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let q = ctx.new_tensor(Type::F32, &[1, 4, 5, 32])?;
    let k = ctx.new_tensor(Type::F16, &[1, 2, 9, 32])?;
    let v = ctx.new_tensor(Type::F16, &[1, 2, 9, 16])?;
    let p = FlashAttnParams::new(0.1);
    q.flash_attn_ext(k, v, &p)?;
    let v3 = ctx.new_tensor(Type::F16, &[1, 3, 9, 16])?;
    assert!(
        matches!(q.flash_attn_ext(k, v3, &p), Err(Error::Op(_))),
        "v with more heads: ggml divides by zero"
    );
    let v_short = ctx.new_tensor(Type::F16, &[1, 2, 8, 16])?;
    assert!(
        matches!(q.flash_attn_ext(k, v_short, &p), Err(Error::Op(_))),
        "v with fewer tokens: read out of bounds"
    );
    let small_mask = ctx.new_tensor(Type::F16, &[5, 8])?;
    let pm = FlashAttnParams {
        mask: Some(small_mask),
        ..p
    };
    assert!(
        matches!(q.flash_attn_ext(k, v, &pm), Err(Error::Op(_))),
        "a mask shorter than the keys"
    );
    let q16 = ctx.new_tensor(Type::F16, &[1, 4, 5, 32])?;
    assert!(
        matches!(q16.flash_attn_ext(k, v, &p), Err(Error::Op(_))),
        "f16 queries are read as f32 by ggml"
    );
    // Keys of a type without a CPU dot product build, and are refused.
    let ki = ctx.new_tensor(Type::Q8_K, &[1, 2, 9, 256])?;
    let qi = ctx.new_tensor(Type::F32, &[1, 4, 5, 256])?;
    let y = qi.flash_attn_ext(ki, v, &p)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::UnsupportedNode {
            op: "flash_attn_ext",
            ..
        })
    ));
    Ok(())
}

#[test]
fn rope_back_offsets_and_multi_sections() -> Result<()> {
    let (tokens, heads, dim) = (3, 2, 16);
    let x = eval::input(&[tokens, heads, dim], 45, 1.0);
    let pos = [4i32, 9, 1];
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let p = ctx.tensor_from_array(&ggml::ndarray::arr1(&pos))?;
    // M-RoPE with every section reading the same position is NeoX RoPE.
    let p4 = ctx.tensor_from_array(&ggml::ndarray::arr1(&[pos, pos, pos, pos].concat()))?;
    let neox = Rope {
        mode: RopeMode::Neox,
        freq_base: 100.0,
        ..Rope::new(16)
    };
    let multi = Rope {
        mode: RopeMode::Multi,
        ..neox
    };
    let forward = t.rope_ext(p, None, &neox)?;
    let round_trip = forward.rope_ext_back(p, None, &neox)?;
    let shifted = Rope {
        offset: 4,
        ..Rope::new(8)
    };
    let got = eval::compute(
        &ctx,
        &[
            round_trip,
            t.rope_ext(p, None, &shifted)?,
            t.rope_multi(p4, None, [3, 3, 2, 0], &multi)?,
            forward,
        ],
    )?;
    let tol = Tol {
        abs: 1e-5,
        rel: 1e-4,
    };
    assert_close(&got[0], &x, tol, "rope_ext_back undoes rope_ext")?;
    // An offset of 4: dimensions 4..12 rotated as a row of their own.
    let inner = x
        .slice(ggml::ndarray::s![.., .., 4..12])
        .to_owned()
        .into_dyn();
    let mut want = x.clone();
    want.slice_mut(ggml::ndarray::s![.., .., 4..12])
        .assign(&rope_ref(&inner, &pos, &Rope::new(8), None));
    assert_close(&got[1], &want, tol, "rope with an offset")?;
    assert_close(&got[2], &got[3], tol, "M-RoPE of equal positions")?;

    assert!(
        matches!(
            t.rope_multi(p4, None, [-1, 4, 0, 0], &multi),
            Err(Error::Op(_))
        ),
        "a negative section"
    );
    assert!(
        matches!(
            t.rope_multi(p4, None, [0, 0, 0, 0], &multi),
            Err(Error::Op(_))
        ),
        "sections adding up to 0"
    );
    // ggml's kernel asserts these two (found by tests/ops/hostile.rs).
    assert!(
        matches!(
            t.rope_multi(p4, None, [0, 0, 0, 4], &multi),
            Err(Error::Op(_))
        ),
        "only the fourth section positive"
    );
    assert!(
        matches!(
            t.rope_multi(p4, None, [8, 8, 0, 1], &multi),
            Err(Error::Op(_))
        ),
        "sections adding up to more than the row (16)"
    );
    assert!(
        matches!(
            t.rope_multi(p, None, [4, 4, 0, 0], &multi),
            Err(Error::Op(_))
        ),
        "one position per token"
    );
    let vision = Rope {
        mode: RopeMode::Vision,
        ..Rope::new(4)
    };
    assert!(
        matches!(
            t.rope_multi(p4, None, [2, 2, 0, 0], &vision),
            Err(Error::Op(_))
        ),
        "vision with n_dims not half the row"
    );
    assert!(
        matches!(t.rope_ext(p, None, &multi), Err(Error::Op(_))),
        "a multi mode through rope_ext"
    );
    let odd = Rope {
        offset: 3,
        ..Rope::new(8)
    };
    assert!(
        matches!(t.rope_ext(p, None, &odd), Err(Error::Op(_))),
        "an odd offset"
    );
    Ok(())
}
