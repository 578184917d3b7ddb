//! Sequence-model ops against references written here from the ops'
//! definitions (Mamba's convolution and selective scan, RWKV-6's and
//! RWKV-7's WKV, gated linear attention, the gated delta rule), as plain
//! loops over the inputs: `ssm_conv`, `ssm_scan`, `rwkv_wkv6`,
//! `gated_linear_attn`, `rwkv_wkv7`, `gated_delta_net`.

use anyhow::Result;
use ggml::ndarray::{arr1, ArrayD, IxDyn};
use ggml::ops::{GatedDeltaNet, GatedLinearAttn, RwkvWkv6, RwkvWkv7, SsmScan};
use ggml::{Context, Error, Tensor, Type};

use crate::eval::{self, assert_close, Tol};

/// f32 recurrences summing a few dozen products per step.
const TOL: Tol = Tol {
    abs: 1e-4,
    rel: 1e-4,
};

/// Compares a result with a reference given in ggml's flat order.
fn check_flat(got: &ArrayD<f32>, want: Vec<f32>, what: &str) -> Result<()> {
    let want = ArrayD::from_shape_vec(got.raw_dim(), want)?;
    assert_close(got, &want, TOL, what)
}

/// `values` in standard (ggml flat) order.
fn flat(values: &ArrayD<f32>) -> Vec<f32> {
    values.iter().copied().collect()
}

fn is_op_error<T: std::fmt::Debug>(r: ggml::Result<T>) -> bool {
    matches!(r, Err(Error::Op(_)))
}

#[test]
fn mamba_convolution() -> Result<()> {
    // sx [n_seqs=2, d_inner=3, d_conv - 1 + n_t = 4 + 5 - 1]; c [d_inner, d_conv = 4].
    let (seqs, inner, conv, tokens) = (2, 3, 4, 5);
    let sx = eval::input(&[seqs, inner, conv - 1 + tokens], 131, 1.0);
    let c = eval::input(&[inner, conv], 132, 1.0);
    let ctx = Context::new(1 << 20)?;
    let y = ctx
        .tensor_from_array(&sx)?
        .ssm_conv(ctx.tensor_from_array(&c)?)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    let want = ArrayD::from_shape_fn(IxDyn(&[seqs, tokens, inner]), |d| {
        let (s, t, i) = (d[0], d[1], d[2]);
        (0..conv).map(|k| sx[[s, i, t + k]] * c[[i, k]]).sum()
    });
    assert_close(
        got,
        &want,
        Tol {
            abs: 1e-5,
            rel: 1e-5,
        },
        "ssm_conv",
    )?;
    let short = ctx.new_tensor(Type::F32, &[2, 3, 2])?;
    let wide = ctx.new_tensor(Type::F32, &[3, 4])?;
    assert!(
        matches!(short.ssm_conv(wide), Err(Error::Op(_))),
        "fewer states than the window"
    );
    Ok(())
}

// ---------------------------------------------------------------- ssm_scan

/// Mamba's softplus (ggml's threshold: the identity above 20).
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        (1.0 + x.exp()).ln()
    }
}

/// Sizes of a scan test.
#[derive(Clone, Copy)]
struct Scan {
    d_state: usize,
    head_dim: usize,
    n_head: usize,
    n_group: usize,
    tokens: usize,
    seqs: usize,
    n_rs: usize,
    /// Mamba-1 (a decay per state) rather than Mamba-2 (one per head).
    mamba1: bool,
    snapshots: usize,
}

/// The selective scan from its definition: per sequence (from state
/// `ids[seq]`), token, head `h` (group `h / (n_head / n_group)`), channel
/// `d` and state `n`: `Δ = softplus(dt)`, `s = s·exp(Δ·A) + Δ·x·B`,
/// `y = Σ_n s·C`; then `y` and the `K` last states, newest first.
#[allow(clippy::too_many_arguments)]
fn scan_reference(
    z: Scan,
    s: &ArrayD<f32>,
    x: impl Fn(usize, usize, usize, usize) -> f32,
    dt: &ArrayD<f32>,
    a: &ArrayD<f32>,
    b: impl Fn(usize, usize, usize, usize) -> f32,
    c: impl Fn(usize, usize, usize, usize) -> f32,
    ids: &[i32],
) -> Vec<f32> {
    let (ds, hd, nh) = (z.d_state, z.head_dim, z.n_head);
    let per_group = nh / z.n_group;
    let mut y = vec![0.0; z.seqs * z.tokens * nh * hd];
    let state_len = nh * hd * ds;
    let mut slots = vec![vec![0.0f32; z.seqs * state_len]; z.snapshots];
    for seq in 0..z.seqs {
        let from = ids[seq] as usize;
        // st[h][d][n]
        let mut st: Vec<f32> = (0..state_len)
            .map(|i| s[[from, i / (hd * ds), i / ds % hd, i % ds]])
            .collect();
        for t in 0..z.tokens {
            for h in 0..nh {
                let delta = softplus(dt[[seq, t, h]]);
                let g = h / per_group;
                for d in 0..hd {
                    let mut sum = 0.0;
                    for n in 0..ds {
                        let decay = if z.mamba1 { a[[h, n]] } else { a[[h, 0]] };
                        let at = (h * hd + d) * ds + n;
                        st[at] = st[at] * (delta * decay).exp()
                            + delta * x(seq, t, h, d) * b(seq, t, g, n);
                        sum += st[at] * c(seq, t, g, n);
                    }
                    y[((seq * z.tokens + t) * nh + h) * hd + d] = sum;
                }
            }
            let slot = z.tokens - 1 - t;
            if slot < z.snapshots {
                slots[slot][seq * state_len..(seq + 1) * state_len].copy_from_slice(&st);
            }
        }
    }
    y.into_iter().chain(slots.into_iter().flatten()).collect()
}

/// Builds and checks one scan: `x`, `B` and `C` views of one wide `xBC`
/// tensor (strided tokens and sequences, as Mamba-2 models make them) when
/// `views`.
fn check_scan(z: Scan, views: bool, seed: u32) -> Result<()> {
    let (ds, hd, nh, ng, nt, ns) = (z.d_state, z.head_dim, z.n_head, z.n_group, z.tokens, z.seqs);
    let ctx = Context::new(1 << 22)?;
    let s = eval::input(&[z.n_rs, nh, hd, ds], seed, 1.0);
    let dt = eval::input(&[ns, nt, nh], seed + 1, 2.0);
    let a_cols = if z.mamba1 { ds } else { 1 };
    // Negative decays, as Mamba's A = -exp(A_log).
    let a = eval::input(&[nh, a_cols], seed + 2, 1.0).mapv(|v| -0.2 - v.abs());
    let ids: Vec<i32> = (0..ns).map(|i| ((i * 2 + 1) % z.n_rs) as i32).collect();
    let (tx, tb, tc, x, got_b, got_c): (
        Tensor<'_>,
        Tensor<'_>,
        Tensor<'_>,
        ArrayD<f32>,
        ArrayD<f32>,
        ArrayD<f32>,
    );
    if views {
        // xBC [ns, nt, width]: B at column 1, C after it, then x, then 2
        // spare columns.
        let x_at = 1 + 2 * ng * ds;
        let width = x_at + nh * hd + 2;
        let xbc = eval::input(&[ns, nt, width], seed + 4, 1.0);
        let t = ctx.tensor_from_array(&xbc)?;
        let strides = [nt * width * 4, width * 4, ds * 4];
        tb = t.view(&[ns, nt, ng, ds], &strides, 4)?;
        tc = t.view(&[ns, nt, ng, ds], &strides, (1 + ng * ds) * 4)?;
        tx = t.view(
            &[ns, nt, nh, hd],
            &[nt * width * 4, width * 4, hd * 4],
            x_at * 4,
        )?;
        let pick = |off: usize, n1: usize, n0: usize| {
            ArrayD::from_shape_fn(IxDyn(&[ns, nt, n1, n0]), |i| {
                xbc[[i[0], i[1], off + i[2] * n0 + i[3]]]
            })
        };
        got_b = pick(1, ng, ds);
        got_c = pick(1 + ng * ds, ng, ds);
        x = pick(x_at, nh, hd);
    } else {
        x = eval::input(&[ns, nt, nh, hd], seed + 3, 1.0);
        got_b = eval::input(&[ns, nt, ng, ds], seed + 4, 1.0);
        got_c = eval::input(&[ns, nt, ng, ds], seed + 5, 1.0);
        tx = ctx.tensor_from_array(&x)?;
        tb = ctx.tensor_from_array(&got_b)?;
        tc = ctx.tensor_from_array(&got_c)?;
    }
    let p = SsmScan {
        snapshots: z.snapshots as i64,
        ..SsmScan::new(
            tx,
            ctx.tensor_from_array(&dt)?,
            ctx.tensor_from_array(&a)?,
            tb,
            tc,
            ctx.tensor_from_array(&arr1(&ids))?,
        )
    };
    let y = ctx.tensor_from_array(&s)?.ssm_scan(&p)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    let want = scan_reference(
        z,
        &s,
        |q, t, h, d| x[[q, t, h, d]],
        &dt,
        &a,
        |q, t, g, n| got_b[[q, t, g, n]],
        |q, t, g, n| got_c[[q, t, g, n]],
        &ids,
    );
    check_flat(
        got,
        want,
        &format!(
            "ssm_scan (mamba1 {}, K {}, views {views})",
            z.mamba1, z.snapshots
        ),
    )
}

#[test]
fn mamba2_selective_scan() -> Result<()> {
    let z = Scan {
        // 35 states: a SIMD run of 32 and a scalar tail.
        d_state: 35,
        head_dim: 3,
        n_head: 4,
        n_group: 2,
        tokens: 4,
        seqs: 2,
        n_rs: 3,
        mamba1: false,
        snapshots: 3,
    };
    check_scan(z, false, 200)?;
    check_scan(z, true, 210)?;
    check_scan(
        Scan {
            d_state: 8,
            n_group: 1,
            tokens: 3,
            seqs: 3,
            snapshots: 3,
            ..z
        },
        true,
        220,
    )?;
    check_scan(
        Scan {
            n_group: 4,
            snapshots: 1,
            ..z
        },
        false,
        230,
    )
}

#[test]
fn mamba1_selective_scan() -> Result<()> {
    let z = Scan {
        d_state: 16,
        head_dim: 5,
        n_head: 1,
        n_group: 1,
        tokens: 3,
        seqs: 2,
        n_rs: 2,
        mamba1: true,
        snapshots: 1,
    };
    check_scan(z, false, 240)?;
    check_scan(
        Scan {
            n_head: 2,
            n_group: 2,
            ..z
        },
        true,
        250,
    )
}

/// A scan of small shapes with `ids` and `n_group` and `K` given.
fn scan_of<'c>(ctx: &'c Context, n_group: usize, k: i64, a_cols: usize) -> Result<SsmScan<'c>> {
    let (ds, hd, nh, nt, ns) = (4, 2, 4, 3, 2);
    Ok(SsmScan {
        snapshots: k,
        ..SsmScan::new(
            ctx.new_tensor(Type::F32, &[ns, nt, nh, hd])?,
            ctx.new_tensor(Type::F32, &[ns, nt, nh])?,
            ctx.new_tensor(Type::F32, &[nh, a_cols])?,
            ctx.new_tensor(Type::F32, &[ns, nt, n_group, ds])?,
            ctx.new_tensor(Type::F32, &[ns, nt, n_group, ds])?,
            ctx.tensor_from_array(&arr1(&[0i32, 1]))?,
        )
    })
}

#[test]
fn scan_rules() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let s = ctx.new_tensor(Type::F32, &[2, 4, 2, 4])?;
    s.ssm_scan(&scan_of(&ctx, 2, 3, 1)?)?;
    // No group: ggml's kernel takes n_head % 0.
    assert!(
        is_op_error(s.ssm_scan(&scan_of(&ctx, 0, 1, 1)?)),
        "no group"
    );
    // Three groups do not divide four heads (the kernel asserts).
    assert!(
        is_op_error(s.ssm_scan(&scan_of(&ctx, 3, 1, 1)?)),
        "3 groups"
    );
    // More snapshots than tokens: slots the kernel never writes.
    assert!(is_op_error(s.ssm_scan(&scan_of(&ctx, 2, 4, 1)?)), "K > n_t");
    for k in [0, -1, i64::from(i32::MAX) + 1, i64::MAX] {
        assert!(is_op_error(s.ssm_scan(&scan_of(&ctx, 2, k, 1)?)), "K {k}");
    }
    // Mamba-1 takes one snapshot; A of another width is refused.
    s.ssm_scan(&scan_of(&ctx, 2, 1, 4)?)?;
    assert!(
        is_op_error(s.ssm_scan(&scan_of(&ctx, 2, 2, 4)?)),
        "mamba1 K"
    );
    assert!(is_op_error(s.ssm_scan(&scan_of(&ctx, 2, 1, 3)?)), "A width");
    // f16 inputs: the kernel reads them as f32.
    let p = scan_of(&ctx, 2, 1, 1)?;
    let half = SsmScan {
        x: ctx.new_tensor(Type::F16, &[2, 3, 4, 2])?,
        ..p
    };
    assert!(is_op_error(s.ssm_scan(&half)), "f16 x");
    // ids of another length or type.
    let ids3 = SsmScan {
        ids: ctx.tensor_from_array(&arr1(&[0i32, 1, 1]))?,
        ..p
    };
    assert!(is_op_error(s.ssm_scan(&ids3)), "3 ids");
    // The scan's generic builder refuses the same.
    Ok(())
}

#[test]
fn scan_ids_are_checked_before_computing() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let s = ctx.new_tensor(Type::F32, &[2, 4, 2, 4])?;
    let p = scan_of(&ctx, 2, 1, 1)?;
    let y = s.ssm_scan(&p)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    crate::common::compute(&graph, &mut data)?;
    for bad in [2i32, -1, i32::MAX, i32::MIN] {
        data.copy_from_array(p.ids, &arr1(&[0i32, bad]))?;
        match crate::common::compute(&graph, &mut data) {
            Err(Error::Op(e)) => {
                assert_eq!(e.op, "ssm_scan");
                assert!(e.rule.contains(&format!("index {bad}")), "{}", e.rule);
            }
            other => panic!("id {bad}: expected Error::Op, got {other:?}"),
        }
    }
    data.copy_from_array(p.ids, &arr1(&[1i32, 1]))?;
    crate::common::compute(&graph, &mut data)?;
    drop(data);
    // ids the graph computes cannot be checked first.
    let scores = ctx.new_tensor(Type::F32, &[2, 3])?;
    let computed = SsmScan {
        ids: scores.argmax()?,
        ..p
    };
    let y = s.ssm_scan(&computed)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::UnsupportedNode { op: "ssm_scan", .. })
    ));
    Ok(())
}

// ------------------------------------------------- RWKV-6, GLA and RWKV-7

/// Sizes of a linear-attention test: head size, heads, tokens (all
/// sequences), sequences.
#[derive(Clone, Copy)]
struct Lin {
    s: usize,
    h: usize,
    tokens: usize,
    seqs: usize,
}

impl Lin {
    fn tokens_shape(self) -> [usize; 3] {
        [self.tokens, self.h, self.s]
    }

    fn state_shape(self) -> [usize; 2] {
        [self.seqs, self.s * self.s * self.h]
    }
}

/// A linear recurrence run over `z`'s sequences: `step(token, head, state)`
/// updates one head's `S × S` state (flat, as ggml stores it) and returns
/// its output row. Returns the outputs then the final states, as ggml
/// packs them.
fn run_recurrence(
    z: Lin,
    state: &[f32],
    mut step: impl FnMut(usize, usize, &mut [f32]) -> Vec<f32>,
) -> Vec<f32> {
    let (s, h) = (z.s, z.h);
    let per_seq = z.tokens / z.seqs;
    let mut out = vec![0.0; z.tokens * h * s];
    let mut states = state.to_vec();
    for seq in 0..z.seqs {
        for t in seq * per_seq..(seq + 1) * per_seq {
            for head in 0..h {
                let at = (seq * h + head) * s * s;
                let y = step(t, head, &mut states[at..at + s * s]);
                out[(t * h + head) * s..][..s].copy_from_slice(&y);
            }
        }
    }
    out.into_iter().chain(states).collect()
}

fn check_wkv6(z: Lin, seed: u32) -> Result<()> {
    let (s, h) = (z.s, z.h);
    let ctx = Context::new(1 << 22)?;
    let k = eval::input(&z.tokens_shape(), seed, 1.0);
    let v = eval::input(&z.tokens_shape(), seed + 1, 1.0);
    let r = eval::input(&z.tokens_shape(), seed + 2, 1.0);
    // time_first as one vector of S·H values (read as [S, H]).
    let tf = eval::input(&[h * s], seed + 3, 1.0);
    let td = eval::input(&z.tokens_shape(), seed + 4, 1.0).mapv(|x| 0.5 + 0.45 * x);
    let state = eval::input(&z.state_shape(), seed + 5, 1.0);
    let p = RwkvWkv6::new(
        ctx.tensor_from_array(&k)?,
        ctx.tensor_from_array(&v)?,
        ctx.tensor_from_array(&r)?,
        ctx.tensor_from_array(&tf)?,
        ctx.tensor_from_array(&td)?,
    );
    let y = ctx.tensor_from_array(&state)?.rwkv_wkv6(&p)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    // RWKV-6: y = r·(diag(u)·kᵀv + S), S ← diag(w)·S + kᵀv (S[key][value]).
    let want = run_recurrence(z, &flat(&state), |t, hd, st| {
        let mut y = vec![0.0; s];
        for i in 0..s {
            let (kk, rr, u, w) = (
                k[[t, hd, i]],
                r[[t, hd, i]],
                tf[[hd * s + i]],
                td[[t, hd, i]],
            );
            for (j, yj) in y.iter_mut().enumerate() {
                let kv = kk * v[[t, hd, j]];
                *yj += rr * (u * kv + st[i * s + j]);
                st[i * s + j] = st[i * s + j] * w + kv;
            }
        }
        y
    });
    check_flat(got, want, &format!("rwkv_wkv6 S {s} H {h} seqs {}", z.seqs))
}

#[test]
fn rwkv6_time_mixing() -> Result<()> {
    // S 12: a vector run and a scalar tail on AVX; S 5: the tail alone.
    check_wkv6(
        Lin {
            s: 12,
            h: 3,
            tokens: 6,
            seqs: 2,
        },
        300,
    )?;
    check_wkv6(
        Lin {
            s: 5,
            h: 2,
            tokens: 6,
            seqs: 3,
        },
        310,
    )?;
    check_wkv6(
        Lin {
            s: 16,
            h: 1,
            tokens: 4,
            seqs: 1,
        },
        320,
    )
}

fn check_gla(z: Lin, scale: f32, seed: u32) -> Result<()> {
    let s = z.s;
    let ctx = Context::new(1 << 22)?;
    let k = eval::input(&z.tokens_shape(), seed, 1.0);
    let v = eval::input(&z.tokens_shape(), seed + 1, 1.0);
    let q = eval::input(&z.tokens_shape(), seed + 2, 1.0);
    let g = eval::input(&z.tokens_shape(), seed + 3, 1.0).mapv(|x| 0.5 + 0.45 * x);
    let state = eval::input(&z.state_shape(), seed + 4, 1.0);
    let p = GatedLinearAttn::new(
        ctx.tensor_from_array(&k)?,
        ctx.tensor_from_array(&v)?,
        ctx.tensor_from_array(&q)?,
        ctx.tensor_from_array(&g)?,
        scale,
    );
    let y = ctx.tensor_from_array(&state)?.gated_linear_attn(&p)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    // GLA: S ← diag(g)·S + kᵀv, o = scale·q·S.
    let want = run_recurrence(z, &flat(&state), |t, hd, st| {
        let mut y = vec![0.0; s];
        for i in 0..s {
            for (j, yj) in y.iter_mut().enumerate() {
                st[i * s + j] = st[i * s + j] * g[[t, hd, i]] + k[[t, hd, i]] * v[[t, hd, j]];
                *yj += scale * q[[t, hd, i]] * st[i * s + j];
            }
        }
        y
    });
    check_flat(
        got,
        want,
        &format!("gated_linear_attn S {s} seqs {}", z.seqs),
    )
}

#[test]
fn gated_linear_attention() -> Result<()> {
    check_gla(
        Lin {
            s: 12,
            h: 3,
            tokens: 6,
            seqs: 2,
        },
        0.5,
        400,
    )?;
    check_gla(
        Lin {
            s: 5,
            h: 2,
            tokens: 6,
            seqs: 3,
        },
        1.0,
        410,
    )?;
    check_gla(
        Lin {
            s: 20,
            h: 2,
            tokens: 2,
            seqs: 1,
        },
        0.25,
        420,
    )
}

fn check_wkv7(z: Lin, seed: u32) -> Result<()> {
    let s = z.s;
    let ctx = Context::new(1 << 23)?;
    let small = |seed| eval::input(&z.tokens_shape(), seed, 0.2);
    let r = small(seed);
    let w = eval::input(&z.tokens_shape(), seed + 1, 1.0).mapv(|x| 0.6 + 0.35 * x);
    let k = small(seed + 2);
    let v = eval::input(&z.tokens_shape(), seed + 3, 1.0);
    let a = small(seed + 4);
    let b = small(seed + 5);
    let state = eval::input(&z.state_shape(), seed + 6, 0.5);
    let p = RwkvWkv7::new(
        ctx.tensor_from_array(&r)?,
        ctx.tensor_from_array(&w)?,
        ctx.tensor_from_array(&k)?,
        ctx.tensor_from_array(&v)?,
        ctx.tensor_from_array(&a)?,
        ctx.tensor_from_array(&b)?,
    );
    let y = ctx.tensor_from_array(&state)?.rwkv_wkv7(&p)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    // RWKV-7: S ← S·(diag(w) + aᵀb) + vᵀk (S[value][key]), o = S·r.
    let want = run_recurrence(z, &flat(&state), |t, hd, st| {
        let mut y = vec![0.0; s];
        for (i, yi) in y.iter_mut().enumerate() {
            let sa: f32 = (0..s).map(|j| a[[t, hd, j]] * st[i * s + j]).sum();
            for j in 0..s {
                st[i * s + j] = st[i * s + j] * w[[t, hd, j]]
                    + v[[t, hd, i]] * k[[t, hd, j]]
                    + sa * b[[t, hd, j]];
                *yi += st[i * s + j] * r[[t, hd, j]];
            }
        }
        y
    });
    check_flat(got, want, &format!("rwkv_wkv7 S {s} seqs {}", z.seqs))
}

#[test]
fn rwkv7_time_mixing() -> Result<()> {
    check_wkv7(
        Lin {
            s: 64,
            h: 2,
            tokens: 4,
            seqs: 2,
        },
        500,
    )?;
    check_wkv7(
        Lin {
            s: 128,
            h: 1,
            tokens: 3,
            seqs: 3,
        },
        510,
    )
}

/// Operands of the RWKV/GLA recurrences, zero-filled, `[S, H, tokens]`.
fn tokens<'c>(ctx: &'c Context, z: Lin, n: usize) -> Result<Vec<Tensor<'c>>> {
    (0..n)
        .map(|_| Ok(ctx.new_tensor(Type::F32, &z.tokens_shape())?))
        .collect()
}

#[test]
fn linear_attention_rules() -> Result<()> {
    let ctx = Context::new(1 << 22)?;
    let z = Lin {
        s: 64,
        h: 2,
        tokens: 4,
        seqs: 2,
    };
    let t = tokens(&ctx, z, 6)?;
    let tf = ctx.new_tensor(Type::F32, &[z.h, z.s])?;
    let state = ctx.new_tensor(Type::F32, &z.state_shape())?;
    fn wkv6<'c>(tf: Tensor<'c>, state: Tensor<'c>, t: &[Tensor<'c>]) -> ggml::Result<Tensor<'c>> {
        state.rwkv_wkv6(&RwkvWkv6::new(t[0], t[1], t[2], tf, t[3]))
    }
    fn gla<'c>(state: Tensor<'c>, t: &[Tensor<'c>]) -> ggml::Result<Tensor<'c>> {
        state.gated_linear_attn(&GatedLinearAttn::new(t[0], t[1], t[2], t[3], 1.0))
    }
    fn wkv7<'c>(state: Tensor<'c>, t: &[Tensor<'c>]) -> ggml::Result<Tensor<'c>> {
        state.rwkv_wkv7(&RwkvWkv7::new(t[0], t[1], t[2], t[3], t[4], t[5]))
    }
    wkv6(tf, state, &t)?;
    gla(state, &t)?;
    wkv7(state, &t)?;
    // No sequence (a state of ne[1] = 0): the kernels divide by it.
    let none = ctx.new_tensor(Type::F32, &[0, z.s * z.s * z.h])?;
    assert!(is_op_error(wkv6(tf, none, &t)), "wkv6 n_seqs 0");
    assert!(is_op_error(gla(none, &t)), "gla n_seqs 0");
    assert!(is_op_error(wkv7(none, &t)), "wkv7 n_seqs 0");
    // Three sequences do not split four tokens; three of one token each
    // leave no token for a third of a sequence.
    let three = ctx.new_tensor(Type::F32, &[3, z.s * z.s * z.h])?;
    assert!(is_op_error(wkv6(tf, three, &t)), "wkv6 4 % 3");
    assert!(is_op_error(gla(three, &t)), "gla 4 % 3");
    assert!(is_op_error(wkv7(three, &t)), "wkv7 4 % 3");
    let two = Lin { tokens: 2, ..z };
    let few = tokens(&ctx, two, 6)?;
    let four = ctx.new_tensor(Type::F32, &[4, z.s * z.s * z.h])?;
    assert!(is_op_error(gla(four, &few)), "fewer tokens than sequences");
    // No token: the new state would never be written.
    let empty = tokens(&ctx, Lin { tokens: 0, ..z }, 6)?;
    assert!(is_op_error(gla(state, &empty)), "no token");
    assert!(is_op_error(wkv6(tf, state, &empty)), "wkv6 no token");
    // time_first with fewer than S·H values is read past its end.
    let short_tf = ctx.new_tensor(Type::F32, &[z.s])?;
    assert!(is_op_error(wkv6(short_tf, state, &t)), "short time_first");
    // RWKV-7's r is read for S·H·n_tokens values.
    let short_r = ctx.new_tensor(Type::F32, &[3, z.h, z.s])?;
    let mut r_short = t.clone();
    r_short[0] = short_r;
    assert!(is_op_error(wkv7(state, &r_short)), "short r");
    // A head size the SIMD loops do not cover (32 on AVX-512, 16 on AVX).
    let uncovered: &[usize] = if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        &[16, 32, 48, 65]
    } else if cfg!(target_arch = "aarch64") {
        &[8, 65]
    } else {
        &[]
    };
    for &s in uncovered {
        let z = Lin { s, ..z };
        let t = tokens(&ctx, z, 6)?;
        let state = ctx.new_tensor(Type::F32, &z.state_shape())?;
        assert!(is_op_error(wkv7(state, &t)), "wkv7 head size {s}");
        gla(state, &t)?;
    }
    // Types and layouts.
    let mut half = t.clone();
    half[1] = ctx.new_tensor(Type::F16, &z.tokens_shape())?;
    assert!(is_op_error(gla(state, &half)), "f16 v");
    let mut strided = t.clone();
    strided[2] = ctx.new_tensor(Type::F32, &[z.tokens, z.h, 2 * z.s])?.view(
        &z.tokens_shape(),
        &[z.h * 2 * z.s * 4, 2 * z.s * 4],
        0,
    )?;
    assert!(is_op_error(gla(state, &strided)), "strided q");
    let mut wrong = t.clone();
    wrong[3] = ctx.new_tensor(Type::F32, &[z.tokens, z.h + 1, z.s])?;
    assert!(is_op_error(gla(state, &wrong)), "g of other heads");
    // An empty fourth dimension would be read anyway.
    let mut hollow = t.clone();
    hollow[1] = ctx.new_tensor(Type::F32, &[0, z.tokens, z.h, z.s])?;
    assert!(is_op_error(gla(state, &hollow)), "empty v");
    Ok(())
}

// -------------------------------------------------------- gated_delta_net

/// Sizes of a gated-delta-net test.
#[derive(Clone, Copy)]
struct Delta {
    s: usize,
    h: usize,
    /// Query and key heads (dividing `h`; head `i` reads `i % h_k`).
    h_k: usize,
    tokens: usize,
    seqs: usize,
    /// Query and key sequences (dividing `seqs`).
    seqs_k: usize,
    /// A gate per key dimension (KDA) rather than per head.
    kda: bool,
    snapshots: usize,
    /// q, k and v as views with padded rows.
    views: bool,
}

/// A `[seqs, tokens, heads, s]` operand: an array, and (when `views`) a
/// view of a wider tensor with padded head rows.
fn delta_operand<'c>(
    ctx: &'c Context,
    shape: [usize; 4],
    seed: u32,
    scale: f32,
    views: bool,
) -> Result<(ArrayD<f32>, Tensor<'c>)> {
    let values = eval::input(&shape, seed, scale);
    if !views {
        return Ok((values.clone(), ctx.tensor_from_array(&values)?));
    }
    let [n3, n2, n1, n0] = shape;
    let wide = ArrayD::from_shape_fn(IxDyn(&[n3, n2, n1, n0 + 3]), |i| {
        if i[3] < n0 {
            values[[i[0], i[1], i[2], i[3]]]
        } else {
            f32::NAN
        }
    });
    let row = (n0 + 3) * 4;
    let t = ctx
        .tensor_from_array(&wide)?
        .view(&shape, &[n2 * n1 * row, n1 * row, row], 0)?;
    Ok((values, t))
}

fn check_delta(z: Delta, seed: u32) -> Result<()> {
    let (s, h, nt, ns) = (z.s, z.h, z.tokens, z.seqs);
    let ctx = Context::new(1 << 22)?;
    // Unit-norm-ish keys and queries keep the delta rule stable.
    let (q, tq) = delta_operand(&ctx, [z.seqs_k, nt, z.h_k, s], seed, 0.5, z.views)?;
    let (k, tk) = delta_operand(&ctx, [z.seqs_k, nt, z.h_k, s], seed + 1, 0.5, z.views)?;
    let (v, tv) = delta_operand(&ctx, [ns, nt, h, s], seed + 2, 1.0, z.views)?;
    let g_cols = if z.kda { s } else { 1 };
    let g = eval::input(&[ns, nt, h, g_cols], seed + 3, 1.0).mapv(|x| -0.05 - 0.3 * x.abs());
    let beta = eval::input(&[ns, nt, h, 1], seed + 4, 1.0).mapv(|x| 0.5 + 0.4 * x);
    let state = eval::input(&[ns, h, s, s], seed + 5, 0.5);
    let p = GatedDeltaNet {
        snapshots: z.snapshots as i64,
        ..GatedDeltaNet::new(
            tq,
            tk,
            tv,
            ctx.tensor_from_array(&g)?,
            ctx.tensor_from_array(&beta)?,
        )
    };
    let y = ctx.tensor_from_array(&state)?.gated_delta_net(&p)?;
    let got = &eval::compute(&ctx, &[y])?[0];

    // The gated delta rule (S[key i][value j], stored value-major):
    // S ← α·S, then S ← S + β·kᵀ(v - k·S), o = q·S / √S.
    let per_k = ns / z.seqs_k;
    let mut out = vec![0.0; ns * nt * h * s];
    let state_len = ns * h * s * s;
    let mut slots = vec![vec![0.0f32; state_len]; z.snapshots];
    for seq in 0..ns {
        for head in 0..h {
            let (qs, qh) = (seq / per_k, head % z.h_k);
            // st[j][i]
            let mut st: Vec<f32> = (0..s * s)
                .map(|x| state[[seq, head, x / s, x % s]])
                .collect();
            for t in 0..nt {
                for j in 0..s {
                    for i in 0..s {
                        let gate = if z.kda {
                            g[[seq, t, head, i]]
                        } else {
                            g[[seq, t, head, 0]]
                        };
                        st[j * s + i] *= gate.exp();
                    }
                }
                let b = beta[[seq, t, head, 0]];
                for j in 0..s {
                    let pred: f32 = (0..s).map(|i| st[j * s + i] * k[[qs, t, qh, i]]).sum();
                    let delta = b * (v[[seq, t, head, j]] - pred);
                    for i in 0..s {
                        st[j * s + i] += k[[qs, t, qh, i]] * delta;
                    }
                }
                for j in 0..s {
                    let o: f32 = (0..s).map(|i| st[j * s + i] * q[[qs, t, qh, i]]).sum();
                    out[((seq * nt + t) * h + head) * s + j] = o / (s as f32).sqrt();
                }
                let slot = nt - 1 - t;
                if slot < z.snapshots {
                    let at = (seq * h + head) * s * s;
                    slots[slot][at..at + s * s].copy_from_slice(&st);
                }
            }
        }
    }
    let want = out.into_iter().chain(slots.into_iter().flatten()).collect();
    check_flat(
        got,
        want,
        &format!(
            "gated_delta_net S {s} H {h}/{} seqs {ns}/{} kda {} K {} views {}",
            z.h_k, z.seqs_k, z.kda, z.snapshots, z.views
        ),
    )
}

#[test]
fn gated_delta_rule() -> Result<()> {
    let z = Delta {
        s: 5,
        h: 4,
        h_k: 2,
        tokens: 4,
        seqs: 2,
        seqs_k: 2,
        kda: false,
        snapshots: 1,
        views: false,
    };
    check_delta(z, 600)?;
    check_delta(
        Delta {
            snapshots: 3,
            views: true,
            ..z
        },
        610,
    )?;
    check_delta(
        Delta {
            kda: true,
            snapshots: 4,
            ..z
        },
        620,
    )?;
    check_delta(
        Delta {
            s: 16,
            h: 3,
            h_k: 1,
            seqs: 3,
            seqs_k: 1,
            kda: true,
            views: true,
            snapshots: 2,
            ..z
        },
        630,
    )?;
    // One token, one sequence.
    check_delta(
        Delta {
            tokens: 1,
            seqs: 1,
            seqs_k: 1,
            ..z
        },
        640,
    )
}

#[test]
fn delta_rules() -> Result<()> {
    let ctx = Context::new(1 << 22)?;
    let (s, h, nt, ns) = (4, 4, 3, 2);
    let f32t = |shape: &[usize]| ctx.new_tensor(Type::F32, shape);
    let p = GatedDeltaNet::new(
        f32t(&[ns, nt, 2, s])?,
        f32t(&[ns, nt, 2, s])?,
        f32t(&[ns, nt, h, s])?,
        f32t(&[ns, nt, h, 1])?,
        f32t(&[ns, nt, h, 1])?,
    );
    let state = f32t(&[ns, h, s, s])?;
    state.gated_delta_net(&p)?;
    state.gated_delta_net(&GatedDeltaNet { snapshots: 3, ..p })?;
    // More snapshots than tokens: slots never written.
    assert!(is_op_error(
        state.gated_delta_net(&GatedDeltaNet { snapshots: 4, ..p })
    ));
    for k in [0, -3, i64::from(i32::MAX) + 1] {
        assert!(
            is_op_error(state.gated_delta_net(&GatedDeltaNet { snapshots: k, ..p })),
            "K {k}"
        );
    }
    // Query heads not dividing the value heads, or none (a remainder by zero).
    for heads in [0, 3, 8] {
        let q = f32t(&[ns, nt, heads, s])?;
        assert!(
            is_op_error(state.gated_delta_net(&GatedDeltaNet { q, ..p })),
            "{heads} q heads"
        );
    }
    // Key sequences not dividing the sequences (a division by zero when more).
    for seqs in [0, 3] {
        let k = f32t(&[seqs, nt, 2, s])?;
        assert!(
            is_op_error(state.gated_delta_net(&GatedDeltaNet { k, ..p })),
            "{seqs} k seqs"
        );
    }
    // Short rows or fewer tokens in q: read past their ends.
    let q = f32t(&[ns, nt, 2, s - 1])?;
    assert!(
        is_op_error(state.gated_delta_net(&GatedDeltaNet { q, ..p })),
        "short q rows"
    );
    let k = f32t(&[ns, nt - 1, 2, s])?;
    assert!(
        is_op_error(state.gated_delta_net(&GatedDeltaNet { k, ..p })),
        "fewer k tokens"
    );
    // g and beta of other shapes.
    let g = f32t(&[ns, nt, h, 2])?;
    assert!(
        is_op_error(state.gated_delta_net(&GatedDeltaNet { g, ..p })),
        "g rows"
    );
    let g = f32t(&[ns, nt - 1, h, 1])?;
    assert!(
        is_op_error(state.gated_delta_net(&GatedDeltaNet { g, ..p })),
        "g tokens"
    );
    let beta = f32t(&[1, nt, h, 1])?;
    assert!(
        is_op_error(state.gated_delta_net(&GatedDeltaNet { beta, ..p })),
        "beta seqs"
    );
    // The state's shape and types.
    assert!(
        is_op_error(f32t(&[ns, h, s, s + 1])?.gated_delta_net(&p)),
        "state"
    );
    let v = ctx.new_tensor(Type::F16, &[ns, nt, h, s])?;
    assert!(
        is_op_error(state.gated_delta_net(&GatedDeltaNet { v, ..p })),
        "f16 v"
    );
    Ok(())
}

#[test]
fn generic_builders_refuse_as_the_methods() -> Result<()> {
    let ctx = Context::new(1 << 22)?;
    let decl = |name| {
        ggml::ops::catalog()
            .find(|d| d.name() == name)
            .expect("declared")
    };
    let f32t = |shape: &[usize]| ctx.new_tensor(Type::F32, shape);
    // ssm_scan with K = 0 in Params::i[0].
    let p = scan_of(&ctx, 2, 1, 1)?;
    let s = f32t(&[2, 4, 2, 4])?;
    let scan = [s, p.x, p.dt, p.a, p.b, p.c, p.ids];
    let mut params = ggml::ops::Params::default();
    params.i[0] = 1;
    decl("ssm_scan").build(&scan, &params)?;
    params.i[0] = 0;
    assert!(is_op_error(decl("ssm_scan").build(&scan, &params)));
    // gated_delta_net likewise.
    let (s, h, nt, ns) = (4, 2, 2, 1);
    let delta = [
        f32t(&[ns, nt, h, s])?,
        f32t(&[ns, nt, h, s])?,
        f32t(&[ns, nt, h, s])?,
        f32t(&[ns, nt, h, 1])?,
        f32t(&[ns, nt, h, 1])?,
        f32t(&[ns, h, s, s])?,
    ];
    params.i[0] = 2;
    decl("gated_delta_net").build(&delta, &params)?;
    params.i[0] = 3;
    assert!(is_op_error(decl("gated_delta_net").build(&delta, &params)));
    Ok(())
}

#[test]
fn empty_runs() -> Result<()> {
    let ctx = Context::new(1 << 22)?;
    let f32t = |shape: &[usize]| ctx.new_tensor(Type::F32, shape);
    // The delta rule over no token returns its state (K = 1 copies it).
    let (s, h, ns) = (4, 2, 2);
    let state = eval::input(&[ns, h, s, s], 700, 1.0);
    let p = GatedDeltaNet::new(
        f32t(&[ns, 0, h, s])?,
        f32t(&[ns, 0, h, s])?,
        f32t(&[ns, 0, h, s])?,
        f32t(&[ns, 0, h, 1])?,
        f32t(&[ns, 0, h, 1])?,
    );
    let y = ctx.tensor_from_array(&state)?.gated_delta_net(&p)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    check_flat(got, flat(&state), "gated_delta_net without tokens")?;
    // Results with no element compute nothing and are accepted: no
    // sequence and no token.
    let z = Lin {
        s: 64,
        h: 2,
        tokens: 0,
        seqs: 0,
    };
    let t = tokens(&ctx, z, 6)?;
    let none = f32t(&[0, z.s * z.s * z.h])?;
    let tf = f32t(&[z.h, z.s])?;
    none.rwkv_wkv6(&RwkvWkv6::new(t[0], t[1], t[2], tf, t[3]))?;
    none.gated_linear_attn(&GatedLinearAttn::new(t[0], t[1], t[2], t[3], 1.0))?;
    none.rwkv_wkv7(&RwkvWkv7::new(t[0], t[1], t[2], t[3], t[4], t[5]))?;
    let (ds, hd, nh) = (4, 2, 4);
    let scan = SsmScan::new(
        f32t(&[0, 3, nh, hd])?,
        f32t(&[0, 3, nh])?,
        f32t(&[nh, 1])?,
        f32t(&[0, 3, 0, ds])?,
        f32t(&[0, 3, 0, ds])?,
        ctx.new_tensor(Type::I32, &[0])?,
    );
    let y = f32t(&[1, nh, hd, ds])?.ssm_scan(&scan)?;
    assert!(y.is_empty());
    Ok(())
}
