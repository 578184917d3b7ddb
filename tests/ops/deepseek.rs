//! The lightning indexer and the hyper-connections, against references
//! written here from ggml.h's definitions: `lightning_indexer`,
//! `dsv4_hc_comb`, `dsv4_hc_pre`, `dsv4_hc_pre_gated`, `dsv4_hc_post`.

use anyhow::Result;
use ggml::ndarray::{ArrayD, IxDyn};
use ggml::{Context, Error, Tensor, Type};

use crate::eval::{self, assert_close, Tol};

/// f32 sums of a few dozen products.
const TOL: Tol = Tol {
    abs: 1e-5,
    rel: 1e-4,
};

/// `got` with the full shape `shape` (ggml drops trailing unit axes).
fn full(got: &ArrayD<f32>, shape: &[usize]) -> Result<ArrayD<f32>> {
    Ok(got.clone().into_shape_with_order(IxDyn(shape))?)
}

fn is_op_error<T: std::fmt::Debug>(r: ggml::Result<T>) -> bool {
    matches!(r, Err(Error::Op(_)))
}

/// The indexer's definition: arrays in ndarray order, `q [s, b, h, e]`,
/// `k [s, n_kv, 1, e]`, `w [s, 1, b, h]`, `mask [m, 1, b, n_kv]`; the
/// result `[s, 1, b, n_kv]`.
fn indexer_ref(
    q: &ArrayD<f32>,
    k: &ArrayD<f32>,
    w: &ArrayD<f32>,
    mask: &ArrayD<f32>,
) -> ArrayD<f32> {
    let (s, b, h, e) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let (kv, m) = (k.shape()[1], mask.shape()[0]);
    ArrayD::from_shape_fn(IxDyn(&[s, 1, b, kv]), |d| {
        let (s, t, j) = (d[0], d[2], d[3]);
        let mut score = 0.0f64;
        for hh in 0..h {
            let qk: f64 = (0..e)
                .map(|i| f64::from(q[[s, t, hh, i]]) * f64::from(k[[s, j, 0, i]]))
                .sum();
            score += qk.max(0.0) * f64::from(w[[s, 0, t, hh]]);
        }
        (score + f64::from(mask[[s % m, 0, t, j]])) as f32
    })
}

#[test]
fn lightning_indexer_matches_its_definition() -> Result<()> {
    // Two streams, 3 heads of 32 (one q8_0 block), 4 tokens, 5 keys.
    let (s, h, e, b, kv) = (2, 3, 32, 4, 5);
    let q = eval::input(&[s, b, h, e], 71, 1.0);
    let k = eval::input(&[s, kv, 1, e], 72, 1.0);
    let w = eval::input(&[s, 1, b, h], 73, 1.0);
    for m in [1, 2] {
        // A causal-like f16 mask: token t sees keys up to t + 1.
        let vals = eval::input(&[m, 1, b, kv], 74, 0.5);
        let mask = ArrayD::from_shape_fn(IxDyn(&[m, 1, b, kv]), |d| {
            if d[3] > d[2] + 1 {
                f32::NEG_INFINITY
            } else {
                vals[&d]
            }
        });
        let mask = eval::rounded(&mask, Type::F16);
        for kt in [Type::F32, Type::F16, Type::BF16, Type::Q8_0] {
            for strided_q in [false, true] {
                let ctx = Context::new(4 << 20)?;
                // The strided q: heads and tokens swapped in memory (ggml's
                // permute of a [e, b, h, s] tensor), rows still dense.
                let tq = if strided_q {
                    let swapped = q.view().permuted_axes(IxDyn(&[0, 2, 1, 3])).to_owned();
                    ctx.tensor_from_array(&swapped)?.permute([0, 2, 1, 3])?
                } else {
                    ctx.tensor_from_array(&q)?
                };
                assert_eq!(tq.is_contiguous(), !strided_q);
                let tk = ctx.tensor_from_array_as(kt, &k)?;
                let tw = ctx.tensor_from_array(&w)?;
                let tm = ctx.tensor_from_array_as(Type::F16, &mask)?;
                let y = tq.lightning_indexer(tk, tw, tm)?;
                // The keys as ggml stores them (rounded or quantized).
                let ks = ctx
                    .data()?
                    .to_array::<f32>(tk)?
                    .into_shape_with_order(IxDyn(k.shape()))?;
                let got = full(&eval::compute(&ctx, &[y])?[0], &[s, 1, b, kv])?;
                assert_close(
                    &got,
                    &indexer_ref(&q, &ks, &w, &mask),
                    TOL,
                    &format!("lightning_indexer, k {kt}, mask streams {m}, strided q {strided_q}"),
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn lightning_indexer_rules() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let (s, h, e, b, kv) = (2, 3, 8, 4, 5);
    let q = ctx.new_tensor(Type::F32, &[s, b, h, e])?;
    let k = ctx.new_tensor(Type::F32, &[s, kv, 1, e])?;
    let w = ctx.new_tensor(Type::F32, &[s, 1, b, h])?;
    let mask = ctx.new_tensor(Type::F16, &[1, 1, b, kv])?;
    assert!(q.lightning_indexer(k, w, mask).is_ok());
    // A mask of no streams: ggml's builder takes ne[3] modulo 0 (SIGFPE).
    let no_streams = ctx.new_tensor(Type::F16, &[0, 1, b, kv])?;
    assert!(
        is_op_error(q.lightning_indexer(k, w, no_streams)),
        "mask ne[3] = 0"
    );
    // Mask streams not dividing q's.
    let three = ctx.new_tensor(Type::F16, &[3, 1, b, kv])?;
    assert!(is_op_error(q.lightning_indexer(k, w, three)), "ne[3] % 3");
    // A mask not covering every key: the kernel would read past its rows.
    let short = ctx.new_tensor(Type::F16, &[1, 1, b, kv - 1])?;
    assert!(is_op_error(q.lightning_indexer(k, w, short)), "mask short");
    let f32_mask = ctx.new_tensor(Type::F32, &[1, 1, b, kv])?;
    assert!(is_op_error(q.lightning_indexer(k, w, f32_mask)), "f32 mask");
    // Keys of a type the kernel cannot convert (it aborts).
    let ki = ctx.new_tensor(Type::I32, &[s, kv, 1, e])?;
    assert!(is_op_error(q.lightning_indexer(ki, w, mask)), "i32 keys");
    let q16 = ctx.new_tensor(Type::F16, &[s, b, h, e])?;
    assert!(
        is_op_error(q16.lightning_indexer(k, w, mask)),
        "f16 queries"
    );
    // Rows that are not dense: the kernel asserts nb[0].
    let qt = ctx.new_tensor(Type::F32, &[s, b, e, h])?.transpose()?;
    assert_eq!(qt.ne(), q.ne());
    assert!(
        is_op_error(qt.lightning_indexer(k, w, mask)),
        "transposed q"
    );
    // (k's ne[1] is 1: a transpose would keep its rows dense; a [kv, e, 1,
    // s] tensor permuted to [e, 1, kv, s] has rows kv values apart.)
    let kt = ctx
        .new_tensor(Type::F32, &[s, 1, e, kv])?
        .permute([2, 0, 1, 3])?;
    assert_eq!(kt.ne(), k.ne());
    assert!(
        is_op_error(q.lightning_indexer(kt, w, mask)),
        "transposed k"
    );
    let wt = ctx.new_tensor(Type::F32, &[s, 1, h, b])?.transpose()?;
    assert!(
        is_op_error(q.lightning_indexer(k, wt, mask)),
        "transposed weights"
    );
    let mt = ctx.new_tensor(Type::F16, &[1, 1, kv, b])?.transpose()?;
    assert!(
        is_op_error(q.lightning_indexer(k, w, mt)),
        "transposed mask"
    );
    // Shape relations ggml asserts.
    let k2 = ctx.new_tensor(Type::F32, &[s, kv, 2, e])?;
    assert!(is_op_error(q.lightning_indexer(k2, w, mask)), "k ne[1] = 2");
    let w_heads = ctx.new_tensor(Type::F32, &[s, 1, b, h + 1])?;
    assert!(
        is_op_error(q.lightning_indexer(k, w_heads, mask)),
        "weights heads"
    );
    let k_streams = ctx.new_tensor(Type::F32, &[1, kv, 1, e])?;
    assert!(
        is_op_error(q.lightning_indexer(k_streams, w, mask)),
        "k streams"
    );
    // No keys: an empty result, computed (skipped) without trouble.
    let k0 = ctx.new_tensor(Type::F32, &[s, 0, 1, e])?;
    let m0 = ctx.new_tensor(Type::F16, &[1, 1, b, 0])?;
    let y = q.lightning_indexer(k0, w, m0)?;
    assert!(y.is_empty());
    Ok(())
}

/// `dsv4_hc_comb`'s definition for one token: `mixes` the token's 24
/// values, `scale` ≥ 3 values, `base` 24; the result `[src][dst]`.
fn hc_comb_ref(mixes: &[f32], scale: &[f32], base: &[f32], eps: f32, n_iter: i32) -> [[f32; 4]; 4] {
    const HC: usize = 4;
    let mut c = [[0.0f32; HC]; HC];
    for (src, col) in c.iter_mut().enumerate() {
        let logits: Vec<f32> = (0..HC)
            .map(|dst| {
                let i = 2 * HC + dst + HC * src;
                mixes[i] * scale[2] + base[i]
            })
            .collect();
        // Soft max over dst, plus eps.
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let ex: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
        let sum: f32 = ex.iter().sum();
        for (v, e) in col.iter_mut().zip(&ex) {
            *v = e / sum + eps;
        }
    }
    // Normalise over src (for each dst), then n_iter - 1 rounds of over dst
    // (for each src) followed by over src.
    let over_src = |c: &mut [[f32; HC]; HC]| {
        for dst in 0..HC {
            let sum = eps + c.iter().map(|col| col[dst]).sum::<f32>();
            c.iter_mut().for_each(|col| col[dst] /= sum);
        }
    };
    let over_dst = |c: &mut [[f32; HC]; HC]| {
        for row in c.iter_mut() {
            let sum = eps + row.iter().sum::<f32>();
            row.iter_mut().for_each(|v| *v /= sum);
        }
    };
    over_src(&mut c);
    for _ in 1..n_iter {
        over_dst(&mut c);
        over_src(&mut c);
    }
    c
}

#[test]
fn hc_comb_matches_its_definition() -> Result<()> {
    let n = 3;
    // The mixes stored token-major ([24, n] in ndarray order), read through
    // a transposed view: a strided operand.
    let mixes_t = eval::input(&[24, n], 81, 2.0);
    let base = eval::input(&[24], 82, 1.0);
    let scale = ArrayD::from_shape_vec(IxDyn(&[5]), vec![0.1, 9.0, 1.5, 7.0, -3.0])?;
    for (eps, n_iter) in [(1e-6f32, 1), (1e-6, 3), (0.1, 20)] {
        for strided in [false, true] {
            let ctx = Context::new(1 << 20)?;
            let tm = if strided {
                ctx.tensor_from_array(&mixes_t)?.transpose()?
            } else {
                ctx.tensor_from_array(&mixes_t.t().to_owned())?
            };
            assert_eq!(tm.shape(), vec![n, 24]);
            let ts = ctx.tensor_from_array(&scale)?;
            let tb = ctx.tensor_from_array(&base)?;
            let y = tm.dsv4_hc_comb(ts, tb, eps, n_iter)?;
            let got = full(&eval::compute(&ctx, &[y])?[0], &[n, 4, 4])?;
            let scale = scale.as_slice().expect("dense");
            let base = base.as_slice().expect("dense");
            let want = ArrayD::from_shape_fn(IxDyn(&[n, 4, 4]), |d| {
                let tok: Vec<f32> = (0..24).map(|i| mixes_t[[i, d[0]]]).collect();
                hc_comb_ref(&tok, scale, base, eps, n_iter)[d[1]][d[2]]
            });
            assert_close(
                &got,
                &want,
                Tol {
                    abs: 1e-6,
                    rel: 1e-5,
                },
                &format!("dsv4_hc_comb eps {eps}, n_iter {n_iter}, strided {strided}"),
            )?;
        }
    }
    Ok(())
}

#[test]
fn hc_comb_rules() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let mixes = ctx.new_tensor(Type::F32, &[3, 24])?;
    let scale = ctx.new_tensor(Type::F32, &[3])?;
    let base = ctx.new_tensor(Type::F32, &[24])?;
    assert!(mixes.dsv4_hc_comb(scale, base, 1e-6, 1).is_ok());
    // Iteration counts ggml asserts positive.
    for n_iter in [0, -1, i32::MIN] {
        assert!(
            is_op_error(mixes.dsv4_hc_comb(scale, base, 1e-6, n_iter)),
            "n_iter {n_iter}"
        );
    }
    // 15 = (2 + 3)·3: three streams, solvable but not implemented; 25: no
    // stream count.
    for width in [15, 25, 0] {
        let m = ctx.new_tensor(Type::F32, &[3, width])?;
        let b = ctx.new_tensor(Type::F32, &[width])?;
        assert!(
            is_op_error(m.dsv4_hc_comb(scale, b, 1e-6, 1)),
            "width {width}"
        );
    }
    let short_scale = ctx.new_tensor(Type::F32, &[2])?;
    assert!(
        is_op_error(mixes.dsv4_hc_comb(short_scale, base, 1e-6, 1)),
        "scale of 2"
    );
    let short_base = ctx.new_tensor(Type::F32, &[23])?;
    assert!(
        is_op_error(mixes.dsv4_hc_comb(scale, short_base, 1e-6, 1)),
        "base of 23"
    );
    let m16 = ctx.new_tensor(Type::F16, &[3, 24])?;
    assert!(
        is_op_error(m16.dsv4_hc_comb(scale, base, 1e-6, 1)),
        "f16 mixes"
    );
    let m3 = ctx.new_tensor(Type::F32, &[2, 3, 24])?;
    assert!(
        is_op_error(m3.dsv4_hc_comb(scale, base, 1e-6, 1)),
        "3-d mixes"
    );
    // No tokens: empty, fine.
    let none = ctx.new_tensor(Type::F32, &[0, 24])?;
    assert!(none.dsv4_hc_comb(scale, base, 1e-6, 1)?.is_empty());
    Ok(())
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn hc_pre_and_gated_match_their_definitions() -> Result<()> {
    // x [n, hc, e] in ndarray order.
    let (n, hc, e) = (4, 3, 5);
    let x = eval::input(&[n, hc, e], 91, 2.0);
    // Weights stored [hc, n] (read transposed, strided) and a gate.
    let w_t = eval::input(&[hc, n], 92, 1.0);
    let gate = eval::input(&[n, hc, e], 93, 3.0);
    let ctx = Context::new(1 << 20)?;
    let tx = ctx.tensor_from_array(&x)?;
    let tw = ctx.tensor_from_array(&w_t)?.transpose()?;
    assert!(!tw.is_contiguous());
    let tw_dense = ctx.tensor_from_array(&w_t.t().to_owned())?;
    let tg = ctx.tensor_from_array(&gate)?;
    let scale = 0.7;
    let outs = [
        tx.dsv4_hc_pre(tw)?,
        tx.dsv4_hc_pre(tw_dense)?,
        tx.dsv4_hc_pre_gated(tg, scale)?,
    ];
    let got = eval::compute(&ctx, &outs)?;
    let plain = ArrayD::from_shape_fn(IxDyn(&[n, e]), |d| {
        (0..hc).map(|h| x[[d[0], h, d[1]]] * w_t[[h, d[0]]]).sum()
    });
    let gated = ArrayD::from_shape_fn(IxDyn(&[n, e]), |d| {
        scale
            * (0..hc)
                .map(|h| x[[d[0], h, d[1]]] * sigmoid(gate[[d[0], h, d[1]]]))
                .sum::<f32>()
    });
    assert_close(&got[0], &plain, TOL, "dsv4_hc_pre, strided weights")?;
    assert_close(&got[1], &plain, TOL, "dsv4_hc_pre")?;
    assert_close(&got[2], &gated, TOL, "dsv4_hc_pre_gated")?;

    // A strided x: the streams and embedding swapped in memory.
    let x_swapped = x.view().permuted_axes(IxDyn(&[0, 2, 1])).to_owned();
    let txs = ctx.tensor_from_array(&x_swapped)?.transpose()?;
    assert_eq!(txs.shape(), vec![n, hc, e]);
    let got = eval::compute(
        &ctx,
        &[txs.dsv4_hc_pre(tw)?, txs.dsv4_hc_pre_gated(tg, scale)?],
    )?;
    assert_close(&got[0], &plain, TOL, "dsv4_hc_pre, strided x")?;
    assert_close(&got[1], &gated, TOL, "dsv4_hc_pre_gated, strided x")?;
    Ok(())
}

#[test]
fn hc_pre_rules() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let (n, hc, e) = (4, 3, 5);
    let x = ctx.new_tensor(Type::F32, &[n, hc, e])?;
    let w = ctx.new_tensor(Type::F32, &[n, hc])?;
    let g = ctx.new_tensor(Type::F32, &[n, hc, e])?;
    assert!(x.dsv4_hc_pre(w).is_ok() && x.dsv4_hc_pre_gated(g, 1.0).is_ok());
    // No streams: ggml asserts hc > 0.
    let x0 = ctx.new_tensor(Type::F32, &[n, 0, e])?;
    let w0 = ctx.new_tensor(Type::F32, &[n, 0])?;
    assert!(is_op_error(x0.dsv4_hc_pre(w0)), "hc = 0");
    assert!(is_op_error(x0.dsv4_hc_pre_gated(x0, 1.0)), "gated hc = 0");
    // The forms' operands swapped.
    assert!(is_op_error(x.dsv4_hc_pre(g)), "a gate as weights");
    assert!(
        is_op_error(x.dsv4_hc_pre_gated(w, 1.0)),
        "weights as a gate"
    );
    let w_long = ctx.new_tensor(Type::F32, &[n + 1, hc])?;
    assert!(is_op_error(x.dsv4_hc_pre(w_long)), "weights of more tokens");
    let x4 = ctx.new_tensor(Type::F32, &[2, n, hc, e])?;
    assert!(is_op_error(x4.dsv4_hc_pre(w)), "4-d x");
    let x16 = ctx.new_tensor(Type::F16, &[n, hc, e])?;
    assert!(is_op_error(x16.dsv4_hc_pre(w)), "f16 x");
    let w16 = ctx.new_tensor(Type::F16, &[n, hc])?;
    assert!(is_op_error(x.dsv4_hc_pre(w16)), "f16 weights");
    // No tokens: empty.
    let xe = ctx.new_tensor(Type::F32, &[0, hc, e])?;
    let we = ctx.new_tensor(Type::F32, &[0, hc])?;
    assert!(xe.dsv4_hc_pre(we)?.is_empty());
    Ok(())
}

#[test]
fn hc_post_matches_its_definition() -> Result<()> {
    // ndarray order: x [n, e], residual [n, hc, e], post [n, hc], comb [n, src, dst].
    let (n, hc, e) = (3, 4, 6);
    let x = eval::input(&[n, e], 101, 1.0);
    let residual = eval::input(&[n, hc, e], 102, 2.0);
    let post = eval::input(&[n, hc], 103, 1.0);
    let comb = eval::input(&[n, hc, hc], 104, 1.0);
    let ctx = Context::new(1 << 20)?;
    let tx = ctx.tensor_from_array(&x)?;
    let tr = ctx.tensor_from_array(&residual)?;
    let tp = ctx.tensor_from_array(&post)?;
    let tc = ctx.tensor_from_array(&comb)?;
    // comb read through a transposed view of its transpose: strided.
    let comb_swapped = comb.view().permuted_axes(IxDyn(&[0, 2, 1])).to_owned();
    let tcs = ctx.tensor_from_array(&comb_swapped)?.transpose()?;
    assert!(!tcs.is_contiguous());
    // x read through a transposed view.
    let txs = ctx.tensor_from_array(&x.t().to_owned())?.transpose()?;
    let outs = [
        tx.dsv4_hc_post(tr, tp, Some(tc))?,
        txs.dsv4_hc_post(tr, tp, Some(tcs))?,
        tx.dsv4_hc_post(tr, tp, None)?,
    ];
    let got = eval::compute(&ctx, &outs)?;
    let mixed = ArrayD::from_shape_fn(IxDyn(&[n, hc, e]), |d| {
        let (t, dst, i) = (d[0], d[1], d[2]);
        x[[t, i]] * post[[t, dst]]
            + (0..hc)
                .map(|src| residual[[t, src, i]] * comb[[t, src, dst]])
                .sum::<f32>()
    });
    let identity = ArrayD::from_shape_fn(IxDyn(&[n, hc, e]), |d| {
        let (t, dst, i) = (d[0], d[1], d[2]);
        x[[t, i]] * post[[t, dst]] + residual[[t, dst, i]]
    });
    assert_close(&got[0], &mixed, TOL, "dsv4_hc_post")?;
    assert_close(&got[1], &mixed, TOL, "dsv4_hc_post, strided x and comb")?;
    assert_close(&got[2], &identity, TOL, "dsv4_hc_post, identity comb")?;
    Ok(())
}

#[test]
fn hc_post_rules() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let (n, hc, e) = (3, 4, 6);
    let t = |ty, shape: &[usize]| -> Result<Tensor<'_>> { Ok(ctx.new_tensor(ty, shape)?) };
    let x = t(Type::F32, &[n, e])?;
    let r = t(Type::F32, &[n, hc, e])?;
    let p = t(Type::F32, &[n, hc])?;
    let c = t(Type::F32, &[n, hc, hc])?;
    assert!(x.dsv4_hc_post(r, p, Some(c)).is_ok());
    // No streams: ggml asserts hc > 0.
    let r0 = t(Type::F32, &[n, 0, e])?;
    let p0 = t(Type::F32, &[n, 0])?;
    assert!(is_op_error(x.dsv4_hc_post(r0, p0, None)), "hc = 0");
    let c_wide = t(Type::F32, &[n, hc, hc + 1])?;
    assert!(
        is_op_error(x.dsv4_hc_post(r, p, Some(c_wide))),
        "comb [hc + 1, hc]"
    );
    let c16 = t(Type::F16, &[n, hc, hc])?;
    assert!(is_op_error(x.dsv4_hc_post(r, p, Some(c16))), "f16 comb");
    let p_short = t(Type::F32, &[n - 1, hc])?;
    assert!(
        is_op_error(x.dsv4_hc_post(r, p_short, None)),
        "post of fewer tokens"
    );
    let r_narrow = t(Type::F32, &[n, hc, e - 1])?;
    assert!(
        is_op_error(x.dsv4_hc_post(r_narrow, p, None)),
        "residual rows"
    );
    let x3 = t(Type::F32, &[2, n, e])?;
    assert!(is_op_error(x3.dsv4_hc_post(r, p, None)), "3-d x");
    let x16 = t(Type::F16, &[n, e])?;
    assert!(is_op_error(x16.dsv4_hc_post(r, p, None)), "f16 x");
    Ok(())
}
