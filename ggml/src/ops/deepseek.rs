//! DeepSeek's ops: the lightning indexer of sparse attention (DSA) and V4's
//! hyper-connections (`dsv4_hc_comb`, `dsv4_hc_pre`, `dsv4_hc_pre_gated`,
//! `dsv4_hc_post`), which replace the residual connection by `hc` streams.
//!
//! Rules checked here beyond ggml's builders, which their kernels assume:
//! - `lightning_indexer`: dense rows of every operand (the kernel asserts
//!   `nb[0]` is the element size), keys f32 or of a type with a `to_float`
//!   (the kernel aborts on others), rows of whole blocks, a mask with at
//!   least one `ne[3]` (ggml's builder takes `ne[3]` modulo it: a division by
//!   zero), and dimensions within `int`, the key count with room for the
//!   kernel's `n_kv + nth - 1` (it splits keys among threads in `int`).
//! - `dsv4_hc_comb`: `hc` is 4 (`mixes.ne[0] == 24`: the only size ggml's
//!   builder and kernel implement), `n_iter >= 1`.
//! - `dsv4_hc_pre`, `dsv4_hc_post`: at least one stream; the kernels read any
//!   strides, so nothing beyond ggml's asserts.
//!
//! Every op here computes in f32 and reads its operands through their
//! strides (the indexer needs dense rows only).

use crate::error::Result;
use crate::ops::{fits_int, Decl, Family, Params, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The streams of DeepSeek V4's hyper-connections, the only count ggml's
/// `dsv4_hc_comb` implements.
const HC: i64 = 4;

/// The declarations. Generic builders: `lightning_indexer(q, k, weights,
/// mask)`; `dsv4_hc_comb(mixes, scale, base)` with eps `Params::f[0]` and
/// `n_iter` `Params::i[0] % 1024` (zero and negatives kept, iteration
/// counts that would compute for minutes avoided); `dsv4_hc_pre(x, weights)`;
/// `dsv4_hc_pre_gated(x, gate)` with scale `Params::f[0]`;
/// `dsv4_hc_post(x, residual, post, comb)`, the comb (fourth operand) when
/// bit 1 of `Params::flags` is set.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "lightning_indexer",
        family: Family::Attention,
        builders: &["ggml_lightning_indexer"],
        op: ggml_sys::GGML_OP_LIGHTNING_INDEXER,
        arity: 4,
        cpu: cpu_lightning_indexer,
        build: |_, t, _| t[0].lightning_indexer(t[1], t[2], t[3]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe {
            ggml_sys::ggml_lightning_indexer(ctx, t[0], t[1], t[2], t[3])
        },
        ..BASE
    },
    Decl {
        name: "dsv4_hc_comb",
        family: Family::Hyper,
        builders: &["ggml_dsv4_hc_comb"],
        op: ggml_sys::GGML_OP_DSV4_HC_COMB,
        arity: 3,
        cpu: cpu_hc_comb,
        build: |_, t, p| t[0].dsv4_hc_comb(t[1], t[2], p.f[0], fuzz_iters(p)),
        raw: |_, ctx, t, p| {
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { ggml_sys::ggml_dsv4_hc_comb(ctx, t[0], t[1], t[2], p.f[0], fuzz_iters(p)) }
        },
        ..BASE
    },
    Decl {
        name: "dsv4_hc_pre",
        family: Family::Hyper,
        builders: &["ggml_dsv4_hc_pre"],
        op: ggml_sys::GGML_OP_DSV4_HC_PRE,
        arity: 2,
        cpu: cpu_hc_pre,
        build: |_, t, _| t[0].dsv4_hc_pre(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_dsv4_hc_pre(ctx, t[0], t[1]) },
        ..BASE
    },
    // The same op as `dsv4_hc_pre` (its node says which by `op_params[1]`);
    // the first declaration's contract, `cpu_hc_pre`, speaks for both.
    Decl {
        name: "dsv4_hc_pre_gated",
        family: Family::Hyper,
        builders: &["ggml_dsv4_hc_pre_gated"],
        op: ggml_sys::GGML_OP_DSV4_HC_PRE,
        arity: 2,
        cpu: cpu_hc_pre,
        build: |_, t, p| t[0].dsv4_hc_pre_gated(t[1], p.f[0]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe { ggml_sys::ggml_dsv4_hc_pre_gated(ctx, t[0], t[1], p.f[0]) },
        ..BASE
    },
    Decl {
        name: "dsv4_hc_post",
        family: Family::Hyper,
        builders: &["ggml_dsv4_hc_post"],
        op: ggml_sys::GGML_OP_DSV4_HC_POST,
        arity: 4,
        cpu: cpu_hc_post,
        build: |_, t, p| t[0].dsv4_hc_post(t[1], t[2], p.flag(1).then_some(t[3])),
        raw: |_, ctx, t, p| {
            let comb = if p.flag(1) {
                t[3]
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { ggml_sys::ggml_dsv4_hc_post(ctx, t[0], t[1], t[2], comb) }
        },
        ..BASE
    },
];

/// The fuzzer's `n_iter`: `Params::i[0] % 1024` (see [`DECLS`]).
fn fuzz_iters(p: &Params) -> i32 {
    (p.i[0] % 1024) as i32
}

/// Whether keys of `ty` are readable by the indexer's kernel: f32, or a
/// type ggml converts to f32 (`to_float`).
fn indexer_key_type(ty: Type) -> bool {
    ty == Type::F32 || ty.can_dequantize()
}

/// Whether the indexer's shapes fit: `q [e, h, b, s]`, `k [e, 1, n_kv, s]`,
/// `weights [h, b, 1, s]`, `mask [n_kv, b, 1, m]` with `m` dividing `s`.
fn indexer_shapes(q: [i64; 4], k: [i64; 4], w: [i64; 4], m: [i64; 4]) -> bool {
    q[0] == k[0]
        && k[1] == 1
        && m[0] == k[2]
        && q[1] == w[0]
        && q[2] == w[1]
        && m[1] == q[2]
        && w[2] == 1
        && m[2] == 1
        && q[3] == k[3]
        && k[3] == w[3]
        && m[3] >= 1
        && w[3] % m[3] == 0
}

/// Whether the indexer's dimensions fit the kernel's `int`s, the key count
/// with room for its thread split (`n_kv + nth - 1`, `nth` at most
/// [`crate::MAX_THREADS`]).
fn indexer_ints(q: [i64; 4], k: [i64; 4]) -> bool {
    q.iter().all(|&n| fits_int(n)) && fits_int(k[2] + crate::MAX_THREADS as i64)
}

impl<'ctx> Tensor<'ctx> {
    /// DeepSeek's lightning indexer (sparse attention's key scores): this
    /// tensor the queries `q` (f32 `[n_embd, n_head, n_batch, s]`), `k` the
    /// keys (`[n_embd, 1, n_kv, s]`, f32 or any type ggml converts to f32),
    /// `weights` per head and token (f32 `[n_head, n_batch, 1, s]`, already
    /// scaled) and `mask` (f16 `[n_kv, n_batch, 1, m]`, `m` dividing `s`):
    /// f32 `[n_kv, n_batch, 1, s]`,
    /// `res[j, t, s] = Σ_h max(q[·, h, t, s]·k[·, 0, j, s], 0)·weights[h, t, s]
    /// + mask[j, t, 0, s % m]`.
    ///
    /// Every operand needs dense rows (`nb[0]` its element size); other
    /// strides are free.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for types, shapes or layouts that do
    /// not fit; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn lightning_indexer(
        self,
        k: Tensor<'ctx>,
        weights: Tensor<'ctx>,
        mask: Tensor<'ctx>,
    ) -> Result<Tensor<'ctx>> {
        let q = self;
        let operands = [q, k, weights, mask];
        let rules = Rules::new("lightning_indexer", &operands)?;
        let (nq, nk, nw, nm) = (q.ne(), k.ne(), weights.ne(), mask.ne());
        rules.require(
            q.ty() == Type::F32 && weights.ty() == Type::F32 && mask.ty() == Type::F16,
            || "q and weights f32, the mask f16".into(),
        )?;
        rules.require(indexer_key_type(k.ty()), || {
            "keys f32 or of a type ggml converts to f32".into()
        })?;
        rules.require(
            !k.ty().is_quantized() || nk[0] % k.ty().block_size() as i64 == 0,
            || "quantized keys need rows of whole blocks".into(),
        )?;
        rules.require(indexer_shapes(nq, nk, nw, nm), || {
            "q [n_embd, n_head, n_batch, s], k [n_embd, 1, n_kv, s], weights [n_head, n_batch, 1, s], \
             mask [n_kv, n_batch, 1, m] with m ≥ 1 dividing s"
                .into()
        })?;
        rules.require(operands.iter().all(Tensor::rows_are_dense), || {
            "every operand needs dense rows".into()
        })?;
        rules.require(indexer_ints(nq, nk), || {
            "dimensions within int (the key count with room for the thread split)".into()
        })?;
        rules.reserve_result(Type::F32, &[nk[2], nq[2], 1, nq[3]], None)?;
        // SAFETY: live tensors meeting ggml_lightning_indexer's assertions
        // (the mask's ne[3] at least 1) and its kernel's needs listed above;
        // room for the result reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_lightning_indexer(
                rules.context().as_ptr(),
                q.as_ptr(),
                k.as_ptr(),
                weights.as_ptr(),
                mask.as_ptr(),
            )
        })
    }

    /// DeepSeek V4's stream mixing matrices: this tensor `mixes` (f32
    /// `[24, n_tokens]`, `24 = (2 + hc)·hc` for `hc = 4` streams, the only
    /// count ggml implements), `scale` (f32 `[≥ 3]`) and `base` (f32
    /// `[24]`): f32 `[hc, hc, n_tokens]` (`[dst, src, token]`).
    ///
    /// For each token, `logits[dst, src] = mixes[8 + dst + 4·src]·scale[2] +
    /// base[8 + dst + 4·src]`; a soft max over `dst` plus `eps`; then the
    /// normalisation over `src` (`c / (eps + Σ_src c)`), and `n_iter - 1`
    /// more rounds of normalising over `dst` then over `src` (Sinkhorn).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for types or shapes that do not fit,
    /// or `n_iter < 1`; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn dsv4_hc_comb(
        self,
        scale: Tensor<'ctx>,
        base: Tensor<'ctx>,
        eps: f32,
        n_iter: i32,
    ) -> Result<Tensor<'ctx>> {
        let mixes = self;
        let operands = [mixes, scale, base];
        let rules = Rules::new("dsv4_hc_comb", &operands)?;
        let (nm, ns, nb) = (mixes.ne(), scale.ne(), base.ne());
        rules.require(operands.iter().all(|t| t.ty() == Type::F32), || {
            "f32 operands".into()
        })?;
        rules.require(n_iter >= 1, || "at least one iteration (n_iter ≥ 1)".into())?;
        let mix = (2 + HC) * HC;
        rules.require(nm[0] == mix && nm[2] == 1 && nm[3] == 1, || {
            format!("mixes [{mix}, n_tokens]: ggml implements {HC} streams only")
        })?;
        rules.require(ns[0] >= 3 && ns[1..] == [1, 1, 1], || {
            "scale a vector of at least 3 values".into()
        })?;
        rules.require(nb == [mix, 1, 1, 1], || format!("base a vector of {mix}"))?;
        rules.reserve_result(Type::F32, &[HC, HC, nm[1], 1], None)?;
        // SAFETY: live f32 tensors meeting ggml_dsv4_hc_comb's assertions
        // (hc solved as 4, n_iter > 0); room for the result reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_dsv4_hc_comb(
                rules.context().as_ptr(),
                mixes.as_ptr(),
                scale.as_ptr(),
                base.as_ptr(),
                eps,
                n_iter,
            )
        })
    }

    /// DeepSeek V4's stream reduction: this tensor `x` (f32 `[n_embd, hc,
    /// n_tokens]`, `hc ≥ 1` streams) weighted by `weights` (f32 `[hc,
    /// n_tokens]`): f32 `[n_embd, n_tokens]`, `res[i, t] = Σ_h x[i, h, t]·
    /// weights[h, t]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for types or shapes that do not fit;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn dsv4_hc_pre(self, weights: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        hc_pre("dsv4_hc_pre", self, weights, None)
    }

    /// The gated stream reduction: this tensor `x` (f32 `[n_embd, hc,
    /// n_tokens]`, `hc ≥ 1`) and a gate per element (f32, `x`'s shape): f32
    /// `[n_embd, n_tokens]`, `res[i, t] = scale·Σ_h x[i, h, t]·σ(gate[i, h,
    /// t])` (σ the logistic sigmoid).
    ///
    /// # Errors
    /// As [`Tensor::dsv4_hc_pre`].
    pub fn dsv4_hc_pre_gated(self, gate: Tensor<'ctx>, scale: f32) -> Result<Tensor<'ctx>> {
        hc_pre("dsv4_hc_pre_gated", self, gate, Some(scale))
    }

    /// DeepSeek V4's stream expansion: this tensor `x` (f32 `[n_embd,
    /// n_tokens]`), `residual` (f32 `[n_embd, hc, n_tokens]`, `hc ≥ 1`),
    /// `post` (f32 `[hc, n_tokens]`) and the mixing `comb` (f32 `[hc, hc,
    /// n_tokens]`, `[dst, src, token]`; `None` for the identity): f32
    /// `[n_embd, hc, n_tokens]`, `res[i, d, t] = x[i, t]·post[d, t] +
    /// Σ_s residual[i, s, t]·comb[d, s, t]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for types or shapes that do not fit;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn dsv4_hc_post(
        self,
        residual: Tensor<'ctx>,
        post: Tensor<'ctx>,
        comb: Option<Tensor<'ctx>>,
    ) -> Result<Tensor<'ctx>> {
        let x = self;
        let operands: Vec<Tensor<'ctx>> = [Some(x), Some(residual), Some(post), comb]
            .into_iter()
            .flatten()
            .collect();
        let rules = Rules::new("dsv4_hc_post", &operands)?;
        rules.require(operands.iter().all(|t| t.ty() == Type::F32), || {
            "f32 operands".into()
        })?;
        let (nx, nr, np) = (x.ne(), residual.ne(), post.ne());
        let nc = comb.map(|c| c.ne());
        rules.require(hc_post_shapes(nx, nr, np, nc), || {
            "x [n_embd, n_tokens], residual [n_embd, hc, n_tokens] with hc ≥ 1, post [hc, n_tokens], \
             comb [hc, hc, n_tokens]"
                .into()
        })?;
        rules.reserve_result(Type::F32, &[nx[0], nr[1], nx[1], 1], None)?;
        let comb = comb.map_or(std::ptr::null_mut(), |c| c.as_ptr());
        // SAFETY: live f32 tensors meeting ggml_dsv4_hc_post's assertions;
        // room for the result reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_dsv4_hc_post(
                rules.context().as_ptr(),
                x.as_ptr(),
                residual.as_ptr(),
                post.as_ptr(),
                comb,
            )
        })
    }
}

/// Whether `dsv4_hc_pre`'s shapes fit: `x [e, hc, t]` with `hc ≥ 1`,
/// weights `[hc, t]`, or a gate of `x`'s shape when `gated`.
fn hc_pre_shapes(nx: [i64; 4], nw: [i64; 4], gated: bool) -> bool {
    let w = if gated {
        [nx[0], nx[1], nx[2], 1]
    } else {
        [nx[1], nx[2], 1, 1]
    };
    nx[1] >= 1 && nx[3] == 1 && nw == w
}

/// Whether `dsv4_hc_post`'s shapes fit (see [`Tensor::dsv4_hc_post`]).
fn hc_post_shapes(nx: [i64; 4], nr: [i64; 4], np: [i64; 4], nc: Option<[i64; 4]>) -> bool {
    let (e, t, hc) = (nx[0], nx[1], nr[1]);
    hc >= 1
        && nx[2..] == [1, 1]
        && nr == [e, hc, t, 1]
        && np == [hc, t, 1, 1]
        && nc.is_none_or(|c| c == [hc, hc, t, 1])
}

/// `dsv4_hc_pre` and its gated form (`scale` given).
fn hc_pre<'ctx>(
    op: &'static str,
    x: Tensor<'ctx>,
    w: Tensor<'ctx>,
    scale: Option<f32>,
) -> Result<Tensor<'ctx>> {
    let operands = [x, w];
    let rules = Rules::new(op, &operands)?;
    rules.require(x.ty() == Type::F32 && w.ty() == Type::F32, || {
        "f32 operands".into()
    })?;
    let (nx, nw) = (x.ne(), w.ne());
    rules.require(hc_pre_shapes(nx, nw, scale.is_some()), || {
        if scale.is_some() {
            "x [n_embd, hc, n_tokens] with hc ≥ 1, the gate of x's shape".into()
        } else {
            "x [n_embd, hc, n_tokens] with hc ≥ 1, weights [hc, n_tokens]".into()
        }
    })?;
    rules.reserve_result(Type::F32, &[nx[0], nx[2], 1, 1], None)?;
    let ctx = rules.context().as_ptr();
    // SAFETY: live f32 tensors meeting ggml_dsv4_hc_pre_impl's assertions
    // for the form called; room for the result reserved.
    rules.wrap(unsafe {
        match scale {
            None => ggml_sys::ggml_dsv4_hc_pre(ctx, x.as_ptr(), w.as_ptr()),
            Some(s) => ggml_sys::ggml_dsv4_hc_pre_gated(ctx, x.as_ptr(), w.as_ptr(), s),
        }
    })
}

/// The CPU's lightning indexer: q, weights and result f32, the mask f16,
/// keys f32 or convertible to f32 with rows of whole blocks; the shapes as
/// the builder checks them; dense rows everywhere.
fn cpu_lightning_indexer(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [q, k, w, m] = crate::ops::sources::<4>(node)?;
    if q.ty() != Type::F32 || w.ty() != Type::F32 || m.ty() != Type::F16 || node.ty() != Type::F32 {
        return Err("the CPU takes f32 queries and weights, an f16 mask, into f32");
    }
    if !indexer_key_type(k.ty())
        || (k.ty().is_quantized() && k.ne()[0] % k.ty().block_size() as i64 != 0)
    {
        return Err("the CPU reads keys of f32 or a type with to_float, rows of whole blocks");
    }
    let (nq, nk) = (q.ne(), k.ne());
    if !indexer_shapes(nq, nk, w.ne(), m.ne())
        || node.ne() != [nk[2], nq[2], 1, nq[3]]
        || !indexer_ints(nq, nk)
    {
        return Err("the shapes of the op");
    }
    if ![q, k, w, m, *node].iter().all(Tensor::rows_are_dense) {
        return Err("the CPU needs dense rows");
    }
    Ok(())
}

/// The CPU's `dsv4_hc_comb`: f32, 4 streams, `n_iter ≥ 1` (any strides).
fn cpu_hc_comb(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [mixes, scale, base] = crate::ops::sources::<3>(node)?;
    if ![mixes, scale, base, *node]
        .iter()
        .all(|t| t.ty() == Type::F32)
    {
        return Err("the CPU mixes f32");
    }
    let mix = (2 + HC) * HC;
    let nm = mixes.ne();
    if nm[0] != mix || scale.ne()[0] < 3 || base.ne()[0] != mix || node.ne()[..3] != [HC, HC, nm[1]]
    {
        return Err("the CPU implements 4 streams ([24, n_tokens] mixes)");
    }
    if node.op_params()[1] < 1 {
        return Err("n_iter must be at least 1");
    }
    Ok(())
}

/// The CPU's `dsv4_hc_pre`, plain or gated (`op_params[1]` non-zero): f32,
/// shapes of the form the node says (any strides).
fn cpu_hc_pre(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [x, w] = crate::ops::sources::<2>(node)?;
    if x.ty() != Type::F32 || w.ty() != Type::F32 || node.ty() != Type::F32 {
        return Err("the CPU reduces f32 streams");
    }
    let gated = node.op_params()[1] != 0;
    let nx = x.ne();
    if !hc_pre_shapes(nx, w.ne(), gated) || node.ne()[..2] != [nx[0], nx[2]] {
        return Err("the shapes of the op (weights [hc, n_tokens], or a gate of x's shape)");
    }
    Ok(())
}

/// The CPU's `dsv4_hc_post`: f32, the shapes as the builder checks them
/// (any strides).
fn cpu_hc_post(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [x, r, p] = crate::ops::sources::<3>(node)?;
    let c = node.src(3);
    if ![x, r, p, *node]
        .iter()
        .chain(c.as_ref())
        .all(|t| t.ty() == Type::F32)
    {
        return Err("the CPU expands f32 streams");
    }
    let (nx, nr) = (x.ne(), r.ne());
    if !hc_post_shapes(nx, nr, p.ne(), c.map(|c| c.ne())) || node.ne()[..3] != [nx[0], nr[1], nx[1]]
    {
        return Err("the shapes of the op");
    }
    Ok(())
}
