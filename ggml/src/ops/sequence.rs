//! Sequence-model ops: `ssm_conv` (Mamba's causal depthwise convolution
//! over a sliding window of tokens), `ssm_scan` (Mamba's selective scan),
//! the linear-attention recurrences `rwkv_wkv6`, `gated_linear_attn`,
//! `rwkv_wkv7` and `gated_delta_net`.
//!
//! The recurrences return one f32 tensor packing the per-token outputs
//! followed by the new state (and, for `ssm_scan` and `gated_delta_net`,
//! `K` snapshots of it); each method documents the layout.
//!
//! Rules checked here beyond ggml's builders, which their kernels assume:
//! - f32 operands (the kernels dispatch on one operand's type and read the
//!   others as f32), the layouts the kernels index (dense rows, contiguous
//!   tensors), dimensions within `int` where the kernels count in `int`;
//! - every operand at least as large as the kernel reads it (shapes ggml's
//!   builders leave unchecked: `ssm_scan`'s group count, `rwkv_wkv6`'s
//!   `time_first`, `rwkv_wkv7`'s `r`, `gated_delta_net`'s `q`, `k`, `g` and
//!   `beta`), no division or remainder by zero (`ssm_scan`'s `n_head %
//!   n_group`, the RWKV/GLA kernels' `n_tokens / n_seqs`,
//!   `gated_delta_net`'s head and sequence broadcasts);
//! - a fully written result: the RWKV/GLA kernels write the new state only
//!   while reading tokens (so at least one token per sequence), and the
//!   snapshot slots `ssm_scan` and `gated_delta_net` write are those of the
//!   last `n_tokens` tokens (so at most `n_tokens` slots);
//! - `ssm_scan`'s `ids` index states (tensor contents, checked before each
//!   computation: see [`contents`](crate::ops::contents));
//! - the head size of `rwkv_wkv7` a multiple of its SIMD loops' step
//!   (`GGML_F32_STEP` floats, with no remainder): 64 on x86 (AVX-512; AVX
//!   and SSE3 step 32, and which a CPU backend was built with, or loads at
//!   run time, is not known here), 16 on ARM (NEON; SVE builds run a scalar
//!   loop) and WASM, 32 on POWER9, LoongArch and s390x, any on RISC-V
//!   (scalar), 64 elsewhere;
//! - on aarch64 CPUs with SVE, Mamba-1's `ssm_scan` (per-state decays) with
//!   a state size that is a multiple of 64: its SVE loop loads whole vectors
//!   (up to 64 floats) over the state.

use crate::error::Result;
use crate::ops::{fits_int, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// A kernel rule: `Ok`, or the rule broken.
type Check = std::result::Result<(), &'static str>;

/// `Ok` when `ok`, else `rule`.
fn ensure(ok: bool, rule: &'static str) -> Check {
    if ok {
        Ok(())
    } else {
        Err(rule)
    }
}

/// The product of `factors`, `None` when it overflows `int64_t`.
fn product(factors: &[i64]) -> Option<i64> {
    factors.iter().try_fold(1i64, |acc, &f| acc.checked_mul(f))
}

/// Whether every tensor is f32.
fn all_f32(ts: &[Tensor<'_>]) -> bool {
    ts.iter().all(|t| t.ty() == Type::F32)
}

/// ggml's `ggml_is_contiguous_rows`: a row of one block, or dense rows.
fn contiguous_rows(t: &Tensor<'_>) -> bool {
    t.ne()[0] == 1 || t.rows_are_dense()
}

/// Whether ggml's CPU backend may run its SVE kernels here (an aarch64 CPU
/// with SVE): the vector length is then a run-time value of up to 2048 bits.
fn sve_possible() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sve")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// The most floats one vector of SVE holds (2048 bits): Mamba-1's SVE scan
/// loads whole vectors over the state.
const SVE_MAX_F32: i64 = 64;

/// The most floats one step of `rwkv_wkv7`'s SIMD loops covers on any CPU
/// backend built for this architecture (its `GGML_F32_STEP`, with no
/// remainder loop): 64 for x86 (AVX-512; AVX and SSE3 take 32), 16 for
/// ARM (NEON; SVE builds take the scalar path) and WASM, 32 for POWER9,
/// LoongArch and s390x, none for RISC-V (its builds take the scalar path);
/// 64 elsewhere.
const WKV7_STEP: i64 = if cfg!(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "wasm32"
)) {
    16
} else if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
    1
} else if cfg!(any(
    target_arch = "powerpc64",
    target_arch = "loongarch64",
    target_arch = "s390x"
)) {
    32
} else {
    64
};

/// The declarations.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "ssm_conv",
        family: Family::Sequence,
        builders: &["ggml_ssm_conv"],
        op: ggml_sys::GGML_OP_SSM_CONV,
        arity: 2,
        cpu: cpu_ssm_conv,
        build: |_, t, _| t[0].ssm_conv(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_ssm_conv(ctx, t[0], t[1]) },
        ..BASE
    },
    // Operands s, x, dt, A, B, C, ids; `Params::i[0]` is K.
    Decl {
        name: "ssm_scan",
        family: Family::Sequence,
        builders: &["ggml_ssm_scan"],
        op: ggml_sys::GGML_OP_SSM_SCAN,
        arity: 7,
        cpu: cpu_ssm_scan,
        build: |_, t, p| {
            t[0].ssm_scan(&SsmScan {
                x: t[1],
                dt: t[2],
                a: t[3],
                b: t[4],
                c: t[5],
                ids: t[6],
                snapshots: p.i[0],
            })
        },
        raw: |_, ctx, t, p| {
            // SAFETY: none (the fuzzer's raw direction).
            unsafe {
                ggml_sys::ggml_ssm_scan(ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6], p.i[0])
            }
        },
        ..BASE
    },
    // Operands k, v, r, tf, td, state (ggml's order).
    Decl {
        name: "rwkv_wkv6",
        family: Family::Sequence,
        builders: &["ggml_rwkv_wkv6"],
        op: ggml_sys::GGML_OP_RWKV_WKV6,
        arity: 6,
        cpu: cpu_rwkv_wkv6,
        build: |_, t, _| {
            t[5].rwkv_wkv6(&RwkvWkv6 {
                k: t[0],
                v: t[1],
                r: t[2],
                time_first: t[3],
                time_decay: t[4],
            })
        },
        raw: |_, ctx, t, _| {
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { ggml_sys::ggml_rwkv_wkv6(ctx, t[0], t[1], t[2], t[3], t[4], t[5]) }
        },
        ..BASE
    },
    // Operands k, v, q, g, state (ggml's order); `Params::f[0]` is the scale.
    Decl {
        name: "gated_linear_attn",
        family: Family::Sequence,
        builders: &["ggml_gated_linear_attn"],
        op: ggml_sys::GGML_OP_GATED_LINEAR_ATTN,
        arity: 5,
        cpu: cpu_gated_linear_attn,
        build: |_, t, p| {
            t[4].gated_linear_attn(&GatedLinearAttn {
                k: t[0],
                v: t[1],
                q: t[2],
                g: t[3],
                scale: p.f[0],
            })
        },
        raw: |_, ctx, t, p| {
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { ggml_sys::ggml_gated_linear_attn(ctx, t[0], t[1], t[2], t[3], t[4], p.f[0]) }
        },
        ..BASE
    },
    // Operands r, w, k, v, a, b, state (ggml's order).
    Decl {
        name: "rwkv_wkv7",
        family: Family::Sequence,
        builders: &["ggml_rwkv_wkv7"],
        op: ggml_sys::GGML_OP_RWKV_WKV7,
        arity: 7,
        cpu: cpu_rwkv_wkv7,
        build: |_, t, _| {
            t[6].rwkv_wkv7(&RwkvWkv7 {
                r: t[0],
                w: t[1],
                k: t[2],
                v: t[3],
                a: t[4],
                b: t[5],
            })
        },
        raw: |_, ctx, t, _| {
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { ggml_sys::ggml_rwkv_wkv7(ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6]) }
        },
        ..BASE
    },
    // Operands q, k, v, g, beta, state (ggml's order); `Params::i[0]` is K.
    Decl {
        name: "gated_delta_net",
        family: Family::Sequence,
        builders: &["ggml_gated_delta_net"],
        op: ggml_sys::GGML_OP_GATED_DELTA_NET,
        arity: 6,
        cpu: cpu_gated_delta_net,
        build: |_, t, p| {
            t[5].gated_delta_net(&GatedDeltaNet {
                q: t[0],
                k: t[1],
                v: t[2],
                g: t[3],
                beta: t[4],
                snapshots: p.i[0],
            })
        },
        raw: |_, ctx, t, p| {
            // SAFETY: none (the fuzzer's raw direction).
            unsafe {
                ggml_sys::ggml_gated_delta_net(ctx, t[0], t[1], t[2], t[3], t[4], t[5], p.i[0])
            }
        },
        ..BASE
    },
];

/// The operands of [`Tensor::ssm_scan`] besides the states (all f32 but
/// `ids`; shapes in ggml's order).
#[derive(Debug, Clone, Copy)]
pub struct SsmScan<'ctx> {
    /// The input `[head_dim, n_head, n_seq_tokens, n_seqs]` (dense rows,
    /// `ne[1]` packed after `ne[0]`; `ne[2]`, `ne[3]` may be strided).
    pub x: Tensor<'ctx>,
    /// The time steps `[n_head, n_seq_tokens, n_seqs]` before the softplus
    /// (contiguous).
    pub dt: Tensor<'ctx>,
    /// The decays: `[1, n_head]` (Mamba-2, one per head) or `[d_state,
    /// n_head]` (Mamba-1, one per state; only with one snapshot). Contiguous.
    pub a: Tensor<'ctx>,
    /// The input projection `B [d_state, n_group, n_seq_tokens, n_seqs]`,
    /// `n_group` dividing `n_head` (head `h` uses group `h / (n_head /
    /// n_group)`). Laid out as `x`.
    pub b: Tensor<'ctx>,
    /// The output projection `C`, shaped and laid out as `b`.
    pub c: Tensor<'ctx>,
    /// i32 `[n_seqs]`: the state (index of the states' `ne[3]`) each
    /// sequence starts from, checked in range before every computation
    /// (so it must be a graph input).
    pub ids: Tensor<'ctx>,
    /// `K`, how many states to return: the final one, then the states 1, 2,
    /// ..., `K - 1` tokens back. At least 1, at most `n_seq_tokens`.
    pub snapshots: i64,
}

impl<'ctx> SsmScan<'ctx> {
    /// The operands, returning the final state only (`K = 1`).
    pub fn new(
        x: Tensor<'ctx>,
        dt: Tensor<'ctx>,
        a: Tensor<'ctx>,
        b: Tensor<'ctx>,
        c: Tensor<'ctx>,
        ids: Tensor<'ctx>,
    ) -> Self {
        SsmScan {
            x,
            dt,
            a,
            b,
            c,
            ids,
            snapshots: 1,
        }
    }
}

/// The operands of [`Tensor::rwkv_wkv6`] besides the state: f32,
/// contiguous, `[S, H, n_tokens]` (head size `S`, `H` heads; the tokens of
/// all sequences one after another).
#[derive(Debug, Clone, Copy)]
pub struct RwkvWkv6<'ctx> {
    /// The keys.
    pub k: Tensor<'ctx>,
    /// The values.
    pub v: Tensor<'ctx>,
    /// The receptances.
    pub r: Tensor<'ctx>,
    /// The bonus `u` of the current token, per head: at least `S·H` values
    /// (read as `[S, H]`).
    pub time_first: Tensor<'ctx>,
    /// The decays `w` (the factors themselves, `exp(-exp(·))` applied),
    /// per token.
    pub time_decay: Tensor<'ctx>,
}

impl<'ctx> RwkvWkv6<'ctx> {
    /// The operands.
    pub fn new(
        k: Tensor<'ctx>,
        v: Tensor<'ctx>,
        r: Tensor<'ctx>,
        time_first: Tensor<'ctx>,
        time_decay: Tensor<'ctx>,
    ) -> Self {
        RwkvWkv6 {
            k,
            v,
            r,
            time_first,
            time_decay,
        }
    }
}

/// The operands of [`Tensor::gated_linear_attn`] besides the state: f32,
/// contiguous, `[S, H, n_tokens]`.
#[derive(Debug, Clone, Copy)]
pub struct GatedLinearAttn<'ctx> {
    /// The keys.
    pub k: Tensor<'ctx>,
    /// The values.
    pub v: Tensor<'ctx>,
    /// The queries.
    pub q: Tensor<'ctx>,
    /// The gates (the decay factors themselves).
    pub g: Tensor<'ctx>,
    /// Multiplies the queries.
    pub scale: f32,
}

impl<'ctx> GatedLinearAttn<'ctx> {
    /// The operands, with `scale`.
    pub fn new(
        k: Tensor<'ctx>,
        v: Tensor<'ctx>,
        q: Tensor<'ctx>,
        g: Tensor<'ctx>,
        scale: f32,
    ) -> Self {
        GatedLinearAttn { k, v, q, g, scale }
    }
}

/// The operands of [`Tensor::rwkv_wkv7`] besides the state: f32,
/// contiguous, `[S, H, n_tokens]` with `S` a multiple of 64 on x86, of 16
/// on ARM (see the [module docs](crate::ops::sequence)).
#[derive(Debug, Clone, Copy)]
pub struct RwkvWkv7<'ctx> {
    /// The receptances (at least `S·H·n_tokens` values, read as `[S, H,
    /// n_tokens]`).
    pub r: Tensor<'ctx>,
    /// The decays (the factors themselves).
    pub w: Tensor<'ctx>,
    /// The keys.
    pub k: Tensor<'ctx>,
    /// The values.
    pub v: Tensor<'ctx>,
    /// The in-context learning rate's left vector `a` (RWKV-7 passes `-κ̂`).
    pub a: Tensor<'ctx>,
    /// Its right vector `b` (RWKV-7 passes `κ̂·a`).
    pub b: Tensor<'ctx>,
}

impl<'ctx> RwkvWkv7<'ctx> {
    /// The operands.
    pub fn new(
        r: Tensor<'ctx>,
        w: Tensor<'ctx>,
        k: Tensor<'ctx>,
        v: Tensor<'ctx>,
        a: Tensor<'ctx>,
        b: Tensor<'ctx>,
    ) -> Self {
        RwkvWkv7 { r, w, k, v, a, b }
    }
}

/// The operands of [`Tensor::gated_delta_net`] besides the state (f32).
#[derive(Debug, Clone, Copy)]
pub struct GatedDeltaNet<'ctx> {
    /// The queries `[S, H_k, n_tokens, n_seqs_k]` (dense rows), `H_k`
    /// dividing `H` (head `h` reads query head `h % H_k`) and `n_seqs_k`
    /// dividing `n_seqs` (sequence `s` reads `s / (n_seqs / n_seqs_k)`).
    pub q: Tensor<'ctx>,
    /// The keys, as `q` (their own `H_k` and `n_seqs_k`).
    pub k: Tensor<'ctx>,
    /// The values `[S, H, n_tokens, n_seqs]` (dense rows).
    pub v: Tensor<'ctx>,
    /// The log-decays: `[1, H, n_tokens, n_seqs]` (one per head) or `[S,
    /// H, n_tokens, n_seqs]` (one per key dimension, Kimi's KDA).
    /// Contiguous.
    pub g: Tensor<'ctx>,
    /// The learning rates `[1, H, n_tokens, n_seqs]`, contiguous.
    pub beta: Tensor<'ctx>,
    /// `K`, how many states to return: the final one, then the states 1,
    /// 2, ..., `K - 1` tokens back. At least 1; above 1, at most `n_tokens`.
    pub snapshots: i64,
}

impl<'ctx> GatedDeltaNet<'ctx> {
    /// The operands, returning the final state only (`K = 1`).
    pub fn new(
        q: Tensor<'ctx>,
        k: Tensor<'ctx>,
        v: Tensor<'ctx>,
        g: Tensor<'ctx>,
        beta: Tensor<'ctx>,
    ) -> Self {
        GatedDeltaNet {
            q,
            k,
            v,
            g,
            beta,
            snapshots: 1,
        }
    }
}

impl<'ctx> Tensor<'ctx> {
    /// Mamba's convolution: this tensor `sx` (f32 `[d_conv - 1 + n_t,
    /// d_inner, n_seqs]`, each channel's last states then tokens) convolved
    /// with the weights `c` (f32 `[d_conv, d_inner]`): f32
    /// `[d_inner, n_t, n_seqs]`, `out[s][t][i] = Σ_k sx[s][i][t + k] · c[i][k]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for shapes, types or layouts that do
    /// not fit; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn ssm_conv(self, c: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, c];
        let rules = Rules::new("ssm_conv", &operands)?;
        let (ns, nc) = (self.ne(), c.ne());
        rules.require(ns[3] == 1 && nc[2] == 1 && nc[3] == 1, || {
            "sx three-dimensional, c a matrix".into()
        })?;
        let n_t = ns[0] - nc[0] + 1;
        rules.require(nc[0] >= 1 && n_t >= 0 && ns[1] == nc[1], || {
            "sx [d_conv - 1 + n_t, d_inner, n_seqs], c [d_conv, d_inner]".into()
        })?;
        rules.require(self.ty() == Type::F32 && c.ty() == Type::F32, || {
            "f32 operands".into()
        })?;
        rules.require(
            self.rows_are_dense() && self.nb()[1] == ns[0] as usize * 4 && c.is_contiguous(),
            || "sx with packed dense rows, c contiguous".into(),
        )?;
        rules.require(ns.iter().chain(&nc).all(|&n| fits_int(n)), || {
            "dimensions within int".into()
        })?;
        rules.reserve_result(Type::F32, &[nc[1], n_t, ns[2], 1], None)?;
        // SAFETY: live f32 tensors meeting the builder's assertions and the
        // kernel's layout; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_ssm_conv(rules.context().as_ptr(), self.as_ptr(), c.as_ptr())
        })
    }

    /// Mamba's selective scan from the states `self` (f32 `[d_state,
    /// head_dim, n_head, n_rs]`, contiguous; sequence `i` starts from state
    /// `ids[i]`) over the tokens of `p` (see [`SsmScan`]). Per sequence,
    /// head `h`, channel `d` and state `n`, token by token, with
    /// `Δ = softplus(dt[h])` and `g` the head's group:
    /// `s[d][n] ← s[d][n]·exp(Δ·A[h][n]) + Δ·x[d]·B[g][n]` (`A[h]` one value
    /// for Mamba-2), `y[d] = Σ_n s[d][n]·C[g][n]`.
    ///
    /// The result is f32 `[len]`, packing `y` (`[head_dim, n_head,
    /// n_seq_tokens, n_seqs]`, dense) followed by `K` states `[d_state,
    /// head_dim, n_head, n_seqs]`: slot 0 the final state, slot `k` the
    /// state `k` tokens before it.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for shapes, types, layouts or a `K`
    /// that do not fit (the module docs list the rules);
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). Indices out of
    /// range are [`Error::Op`](crate::Error::Op) when computed, indices the
    /// graph computes [`Error::UnsupportedNode`](crate::Error::UnsupportedNode).
    pub fn ssm_scan(self, p: &SsmScan<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, p.x, p.dt, p.a, p.b, p.c, p.ids];
        let rules = Rules::new("ssm_scan", &operands)?;
        let len = ssm_scan_rules(&operands, p.snapshots).map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &[len, 1, 1, 1], None)?;
        let t = operands.map(|t| t.as_ptr());
        // SAFETY: live tensors meeting ggml_ssm_scan's assertions and its
        // kernel's needs (checked above); room for the result reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_ssm_scan(
                rules.context().as_ptr(),
                t[0],
                t[1],
                t[2],
                t[3],
                t[4],
                t[5],
                t[6],
                p.snapshots,
            )
        })
    }

    /// RWKV-6's time mixing (its WKV) from the states `self` (f32,
    /// contiguous, `S·S·H·n_seqs` values with `n_seqs = ne[1]`, each head's
    /// `S × S` matrix indexed `[key][value]`, value fastest) over the
    /// tokens of `p` (see [`RwkvWkv6`]), which split into `n_seqs` equal
    /// runs. Per sequence and head, token by token:
    /// `y[j] = Σ_i r[i]·(u[i]·k[i]·v[j] + s[i][j])`, then
    /// `s[i][j] ← s[i][j]·w[i] + k[i]·v[j]`.
    ///
    /// The result is f32 `[S·H, n_tokens + S·n_seqs]`: the rows of `y`, then
    /// the new states in the layout of `self`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for shapes, types or layouts that do
    /// not fit (the module docs list the rules);
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn rwkv_wkv6(self, p: &RwkvWkv6<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [p.k, p.v, p.r, p.time_first, p.time_decay, self];
        let rules = Rules::new("rwkv_wkv6", &operands)?;
        let ne = rwkv_wkv6_rules(&operands).map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        let t = operands.map(|t| t.as_ptr());
        // SAFETY: live tensors meeting ggml_rwkv_wkv6's assertions and its
        // kernel's needs (checked above); room for the result reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_rwkv_wkv6(rules.context().as_ptr(), t[0], t[1], t[2], t[3], t[4], t[5])
        })
    }

    /// Gated linear attention from the states `self` (as for
    /// [`rwkv_wkv6`](Tensor::rwkv_wkv6)) over the tokens of `p` (see
    /// [`GatedLinearAttn`]). Per sequence and head, token by token:
    /// `s[i][j] ← s[i][j]·g[i] + k[i]·v[j]`, then
    /// `y[j] = scale · Σ_i q[i]·s[i][j]`.
    ///
    /// The result is f32 `[S·H, n_tokens + S·n_seqs]`: the rows of `y`, then
    /// the new states.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for shapes, types or layouts that do
    /// not fit (the module docs list the rules);
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn gated_linear_attn(self, p: &GatedLinearAttn<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [p.k, p.v, p.q, p.g, self];
        let rules = Rules::new("gated_linear_attn", &operands)?;
        let ne = gated_linear_attn_rules(&operands).map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        let t = operands.map(|t| t.as_ptr());
        // SAFETY: live tensors meeting ggml_gated_linear_attn's assertions
        // and its kernel's needs (checked above); room for the result
        // reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_gated_linear_attn(
                rules.context().as_ptr(),
                t[0],
                t[1],
                t[2],
                t[3],
                t[4],
                p.scale,
            )
        })
    }

    /// RWKV-7's time mixing (its WKV, a generalized delta rule) from the
    /// states `self` (f32, contiguous, `S·S·H·n_seqs` values with `n_seqs =
    /// ne[1]`, each head's `S × S` matrix indexed `[value][key]`, key
    /// fastest) over the tokens of `p` (see [`RwkvWkv7`]), which split into
    /// `n_seqs` equal runs. Per sequence and head, token by token:
    /// `s[i][j] ← s[i][j]·w[j] + v[i]·k[j] + (Σ_l a[l]·s[i][l])·b[j]`, then
    /// `y[i] = Σ_j s[i][j]·r[j]`.
    ///
    /// The result is f32 `[S·H, n_tokens + S·n_seqs]`: the rows of `y`, then
    /// the new states in the layout of `self`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for shapes, types or layouts that do
    /// not fit, or a head size `S` that is not a multiple of the kernels'
    /// SIMD step (64 on x86; the module docs list the rules); [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn rwkv_wkv7(self, p: &RwkvWkv7<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [p.r, p.w, p.k, p.v, p.a, p.b, self];
        let rules = Rules::new("rwkv_wkv7", &operands)?;
        let ne = rwkv_wkv7_rules(&operands).map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        let t = operands.map(|t| t.as_ptr());
        // SAFETY: live tensors meeting ggml_rwkv_wkv7's assertions and its
        // kernel's needs (checked above); room for the result reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_rwkv_wkv7(
                rules.context().as_ptr(),
                t[0],
                t[1],
                t[2],
                t[3],
                t[4],
                t[5],
                t[6],
            )
        })
    }

    /// The gated delta rule (Gated DeltaNet; Kimi's KDA with a per-key
    /// gate) from the states `self` (f32 `[S, S, H, n_seqs]`, contiguous,
    /// each head's matrix `s[i][j]` indexed `[value j][key i]`, key
    /// fastest) over the tokens of `p` (see [`GatedDeltaNet`]). Per
    /// sequence and head, token by token:
    /// `s[i][j] ← s[i][j]·exp(g[i])` (or `exp(g)`), then
    /// `s[i][j] ← s[i][j] + k[i]·β·(v[j] - Σ_l s[l][j]·k[l])`, then
    /// `y[j] = Σ_i s[i][j]·q[i] / √S`.
    ///
    /// The result is f32 `[S·H, n_tokens·n_seqs + K·S·n_seqs]`: `y`
    /// (`[S, H, n_tokens, n_seqs]`), then `K` states in the layout of
    /// `self`: slot 0 the final state, slot `k` the state `k` tokens
    /// before it.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for shapes, types, layouts or a `K`
    /// that do not fit (the module docs list the rules);
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn gated_delta_net(self, p: &GatedDeltaNet<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [p.q, p.k, p.v, p.g, p.beta, self];
        let rules = Rules::new("gated_delta_net", &operands)?;
        let ne =
            gated_delta_net_rules(&operands, p.snapshots).map_err(|r| rules.broken(r.into()))?;
        rules.reserve_result(Type::F32, &ne, None)?;
        let t = operands.map(|t| t.as_ptr());
        // SAFETY: live tensors meeting ggml_gated_delta_net's assertions and
        // its kernel's needs (checked above); room for the result reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_gated_delta_net(
                rules.context().as_ptr(),
                t[0],
                t[1],
                t[2],
                t[3],
                t[4],
                t[5],
                p.snapshots,
            )
        })
    }
}

/// The CPU's `ssm_conv`: f32, `sx`'s rows dense and packed, `c`
/// contiguous, a contiguous f32 result.
fn cpu_ssm_conv(node: &Tensor<'_>) -> Check {
    let [sx, c] = crate::ops::sources::<2>(node)?;
    if sx.ty() != Type::F32 || c.ty() != Type::F32 || node.ty() != Type::F32 {
        return Err("the CPU convolves f32");
    }
    if !sx.rows_are_dense()
        || sx.nb()[1] != sx.ne()[0] as usize * 4
        || !c.is_contiguous()
        || !node.is_contiguous()
    {
        return Err("packed rows, contiguous weights and result");
    }
    if node.ne()[0] != sx.ne()[1] || c.ne()[1] != sx.ne()[1] {
        return Err("shapes of the op");
    }
    Ok(())
}

/// `ssm_scan`'s rules on `[s, x, dt, A, B, C, ids]` and `k` snapshots (the
/// builder's assertions, then what the kernel assumes); the result's length.
fn ssm_scan_rules(t: &[Tensor<'_>; 7], k: i64) -> std::result::Result<i64, &'static str> {
    let [s, x, dt, a, b, c, ids] = t;
    ensure(
        (1..=i64::from(i32::MAX)).contains(&k),
        "the snapshot count K must be in 1..=i32::MAX",
    )?;
    ensure(
        all_f32(&[*s, *x, *dt, *a, *b, *c]) && ids.ty() == Type::I32,
        "s, x, dt, A, B and C must be f32, ids i32",
    )?;
    ensure(
        s.is_contiguous() && dt.is_contiguous() && a.is_contiguous(),
        "s, dt and A must be contiguous",
    )?;
    ensure(
        [x, b, c].iter().all(|t: &&Tensor<'_>| {
            t.rows_are_dense() && t.nb()[1] == Tensor::ne(t)[0] as usize * 4
        }),
        "x, B and C need dense rows with ne[1] packed after ne[0]",
    )?;
    let (ns_, nx, nb_) = (s.ne(), x.ne(), b.ne());
    let [d_state, head_dim, n_head, n_tokens] = [ns_[0], nx[0], nx[1], nx[2]];
    let n_seqs = nx[3];
    ensure(
        dt.ne() == [n_head, n_tokens, n_seqs, 1],
        "dt must be [n_head, n_seq_tokens, n_seqs] (x's ne[1..3])",
    )?;
    ensure(
        ns_[1] == head_dim && ns_[2] == n_head,
        "s must be [d_state, head_dim, n_head, n_rs] (x's ne[0..1])",
    )?;
    ensure(
        b.ne() == c.ne() && nb_[0] == d_state && nb_[2] == n_tokens && nb_[3] == n_seqs,
        "B and C must be [d_state, n_group, n_seq_tokens, n_seqs]",
    )?;
    ensure(
        ids.ne() == [n_seqs, 1, 1, 1] && ids.rows_are_dense(),
        "ids must be a dense vector of n_seqs indices",
    )?;
    let na = a.ne();
    ensure(
        na[1] == n_head && na[2] == 1 && na[3] == 1 && (na[0] == 1 || na[0] == d_state),
        "A must be [1, n_head] or [d_state, n_head]",
    )?;
    ensure(
        na[0] == 1 || k == 1,
        "Mamba-1's scan (A [d_state, n_head]) takes one snapshot (K = 1)",
    )?;
    let state = product(&[d_state, head_dim, n_head, n_seqs]).ok_or("too many states")?;
    let len = product(&[k, state])
        .and_then(|n| n.checked_add(x.len() as i64))
        .ok_or("the result is too large")?;
    if len == 0 {
        return Ok(0);
    }
    let n_group = nb_[1];
    ensure(
        n_group >= 1 && n_head % n_group == 0,
        "the group count (B's ne[1]) must be at least 1 and divide n_head",
    )?;
    ensure(
        state == 0 || n_tokens >= k,
        "K must not exceed n_seq_tokens: the scan writes the states of its tokens only",
    )?;
    ensure(
        product(&[d_state, head_dim, n_head]).is_some_and(fits_int)
            && fits_int(n_tokens)
            && fits_int(n_seqs),
        "d_state·head_dim·n_head, n_seq_tokens and n_seqs must be within int",
    )?;
    ensure(
        na[0] == 1 || !sve_possible() || d_state % SVE_MAX_F32 == 0,
        "on SVE, Mamba-1's d_state must be a multiple of 64 (its kernel loads whole vectors)",
    )?;
    Ok(len)
}

/// The CPU's `ssm_scan`: the builder's rules on the sources and the K it
/// stored, an f32 result of the length it made.
fn cpu_ssm_scan(node: &Tensor<'_>) -> Check {
    let sources = crate::ops::sources::<7>(node)?;
    let len = ssm_scan_rules(&sources, i64::from(node.op_params()[0]))?;
    ensure(
        node.ty() == Type::F32 && node.is_contiguous() && node.len() as i64 == len,
        "a contiguous f32 result of the scan's length",
    )
}

/// The rules the RWKV-6, GLA and RWKV-7 kernels share, on `tokens` (which
/// must be `[S, H, n_tokens]` with `S, H, n_tokens` from `first`), `extra`
/// (f32, contiguous operands of other shapes) and `state`: the result's
/// shape.
fn recurrence_rules(
    first: &Tensor<'_>,
    tokens: &[Tensor<'_>],
    extra: &[Tensor<'_>],
    state: &Tensor<'_>,
) -> std::result::Result<[i64; 4], &'static str> {
    let all = || tokens.iter().chain(extra).chain([state]);
    ensure(
        all().all(|t| t.is_contiguous()),
        "every operand must be contiguous",
    )?;
    ensure(
        all().all(|t| t.ty() == Type::F32),
        "every operand must be f32",
    )?;
    let [s, h, n_tokens, _] = first.ne();
    ensure(
        tokens.iter().all(|t| t.ne()[..3] == [s, h, n_tokens]),
        "the per-token operands must be [S, H, n_tokens]",
    )?;
    let n_seqs = state.ne()[1];
    ensure(
        product(&[s, s, h, n_seqs]) == Some(state.len() as i64),
        "the state must hold S·S·H·n_seqs values (n_seqs its ne[1])",
    )?;
    let ne = product(&[s, n_seqs])
        .and_then(|n| n.checked_add(n_tokens))
        .zip(product(&[s, h]))
        .map(|(rows, row)| [row, rows, 1, 1])
        .ok_or("the result is too large")?;
    if ne[0] == 0 || ne[1] == 0 {
        return Ok(ne);
    }
    ensure(
        tokens.iter().all(|t| t.ne()[3] >= 1),
        "the per-token operands must not be empty",
    )?;
    ensure(
        n_seqs >= 1 && n_tokens >= n_seqs && n_tokens % n_seqs == 0,
        "n_tokens must be a positive multiple of n_seqs (the state's ne[1]): each sequence gets as many tokens, at least one",
    )?;
    ensure(fits_int(h), "the head count must be within int")?;
    Ok(ne)
}

/// `rwkv_wkv6`'s rules on `[k, v, r, tf, td, state]`: the result's shape.
fn rwkv_wkv6_rules(t: &[Tensor<'_>; 6]) -> std::result::Result<[i64; 4], &'static str> {
    let [k, v, r, tf, td, state] = t;
    let ne = recurrence_rules(k, &[*k, *v, *r, *td], &[*tf], state)?;
    let [s, h, ..] = k.ne();
    ensure(
        ne[0] == 0 || ne[1] == 0 || product(&[s, h]).is_some_and(|n| tf.len() as i64 >= n),
        "time_first must hold S·H values",
    )?;
    Ok(ne)
}

/// `gated_linear_attn`'s rules on `[k, v, q, g, state]`: the result's shape.
fn gated_linear_attn_rules(t: &[Tensor<'_>; 5]) -> std::result::Result<[i64; 4], &'static str> {
    let [k, v, q, g, state] = t;
    recurrence_rules(k, &[*k, *v, *q, *g], &[], state)
}

/// `rwkv_wkv7`'s rules on `[r, w, k, v, a, b, state]`: the result's shape.
fn rwkv_wkv7_rules(t: &[Tensor<'_>; 7]) -> std::result::Result<[i64; 4], &'static str> {
    let [r, w, k, v, a, b, state] = t;
    let ne = recurrence_rules(k, &[*w, *k, *v, *a, *b], &[*r], state)?;
    let [s, h, n_tokens, _] = k.ne();
    if ne[0] == 0 || ne[1] == 0 {
        return Ok(ne);
    }
    ensure(
        product(&[s, h, n_tokens]).is_some_and(|n| r.len() as i64 >= n),
        "r must hold S·H·n_tokens values",
    )?;
    ensure(
        s % WKV7_STEP == 0,
        "the head size S must be a multiple of the SIMD step of the CPU kernels (64 on x86, 16 on ARM: they step over it with no remainder)",
    )?;
    Ok(ne)
}

/// `gated_delta_net`'s rules on `[q, k, v, g, beta, state]` and `k`
/// snapshots: the result's shape.
fn gated_delta_net_rules(
    t: &[Tensor<'_>; 6],
    snapshots: i64,
) -> std::result::Result<[i64; 4], &'static str> {
    let [q, k, v, g, beta, state] = t;
    ensure(
        contiguous_rows(q) && contiguous_rows(k) && contiguous_rows(v),
        "q, k and v need dense rows",
    )?;
    ensure(
        g.is_contiguous() && beta.is_contiguous() && state.is_contiguous(),
        "g, beta and the state must be contiguous",
    )?;
    ensure(all_f32(&t[..]), "every operand must be f32")?;
    let [s, h, n_tokens, n_seqs] = v.ne();
    let (ng, nbeta) = (g.ne(), beta.ne());
    ensure(
        (ng[0] == 1 || ng[0] == s) && nbeta[0] == 1,
        "g's rows must hold 1 or S values, beta's 1",
    )?;
    ensure(
        state.ne() == [s, s, h, n_seqs],
        "the state must be [S, S, H, n_seqs]",
    )?;
    ensure(
        (1..=i64::from(i32::MAX)).contains(&snapshots),
        "the snapshot count K must be in 1..=i32::MAX",
    )?;
    let ne = product(&[snapshots, s, n_seqs])
        .zip(product(&[n_tokens, n_seqs]))
        .and_then(|(states, tokens)| states.checked_add(tokens))
        .zip(product(&[s, h]))
        .map(|(rows, row)| [row, rows, 1, 1])
        .ok_or("the result is too large")?;
    if ne[0] == 0 || ne[1] == 0 {
        return Ok(ne);
    }
    for x in [q, k] {
        let nx = x.ne();
        ensure(
            nx[0] == s && nx[2] == n_tokens,
            "q and k must be [S, H_k, n_tokens, n_seqs_k]",
        )?;
        ensure(
            nx[1] >= 1 && h % nx[1] == 0 && nx[3] >= 1 && n_seqs % nx[3] == 0,
            "q's and k's head counts must divide H, their sequence counts n_seqs",
        )?;
    }
    ensure(
        ng[1..] == [h, n_tokens, n_seqs] && nbeta[1..] == [h, n_tokens, n_seqs],
        "g and beta must be [·, H, n_tokens, n_seqs]",
    )?;
    ensure(
        snapshots == 1 || n_tokens >= snapshots,
        "K above 1 must not exceed n_tokens: the kernel writes the states of its tokens only",
    )?;
    Ok(ne)
}

/// The CPU's recurrences: the builder's rules on the sources, an f32 result
/// of the shape it made.
fn result_is(node: &Tensor<'_>, ne: [i64; 4]) -> Check {
    ensure(
        node.ty() == Type::F32 && node.is_contiguous() && node.ne() == ne,
        "a contiguous f32 result of the op's shape",
    )
}

/// The CPU's `rwkv_wkv6` (see [`rwkv_wkv6_rules`]).
fn cpu_rwkv_wkv6(node: &Tensor<'_>) -> Check {
    result_is(node, rwkv_wkv6_rules(&crate::ops::sources::<6>(node)?)?)
}

/// The CPU's `gated_linear_attn` (see [`gated_linear_attn_rules`]).
fn cpu_gated_linear_attn(node: &Tensor<'_>) -> Check {
    result_is(
        node,
        gated_linear_attn_rules(&crate::ops::sources::<5>(node)?)?,
    )
}

/// The CPU's `rwkv_wkv7` (see [`rwkv_wkv7_rules`]).
fn cpu_rwkv_wkv7(node: &Tensor<'_>) -> Check {
    result_is(node, rwkv_wkv7_rules(&crate::ops::sources::<7>(node)?)?)
}

/// The CPU's `gated_delta_net` (see [`gated_delta_net_rules`]), with the K
/// the builder stored.
fn cpu_gated_delta_net(node: &Tensor<'_>) -> Check {
    let sources = crate::ops::sources::<6>(node)?;
    result_is(
        node,
        gated_delta_net_rules(&sources, i64::from(node.op_params()[0]))?,
    )
}
