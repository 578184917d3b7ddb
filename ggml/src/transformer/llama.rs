//! The llama architecture's forward pass, written in the crate's ops: the
//! same graph as llama.cpp's `llama` model, read top to bottom in
//! `Session::forward` (private; read it in the source).

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array2, ArrayView1, Axis};

use super::cache::{CacheShape, KvCache};
use super::hparams::{model_error, Hparams};
use crate::backend::{Backend, GraphAllocator, Scheduler};
use crate::context::Context;
use crate::data::TensorData;
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::graph::Graph;
use crate::llama::Token;
use crate::ops::{FlashAttn, Precision, Rope, RopeMode, SoftMax};
use crate::tensor::Tensor;
use crate::types::Type;

/// How a [`Model`] is run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Positions the key/value cache holds (prompt plus generated tokens).
    pub n_ctx: usize,
    /// Most tokens computed in one graph (longer inputs are split).
    pub n_batch: usize,
    /// The cache's type: f16 (llama.cpp's default) or f32.
    pub cache_type: Type,
    /// Attention through `flash_attn_ext` instead of `mul_mat`,
    /// `soft_max_ext` (with a mask) and `mul_mat`.
    pub flash_attn: bool,
    /// Graphs kept for reuse, one per step shape (tokens per step, padded;
    /// cache positions attended): the context's memory for them is
    /// reserved at load. Once they are built, the widest shapes serve
    /// every step. At least 5.
    pub max_graphs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            n_ctx: 4096,
            n_batch: 512,
            cache_type: Type::F16,
            flash_attn: false,
            max_graphs: 64,
        }
    }
}

/// The widest shapes (one token or a whole batch, over the whole cache,
/// with one or every token's logits), kept room for: they serve every step
/// once the other graphs have filled the context.
const FALLBACK_SHAPES: usize = 4;

/// A llama-architecture model: its hyperparameters, and its weights and
/// key/value cache in one backend buffer each.
pub struct Model {
    ctx: Context,
    hparams: Hparams,
    options: Options,
    buffer_type: crate::backend::BufferType,
}

impl Model {
    /// Reads `path` (a GGUF file of the `llama` architecture) and uploads
    /// its weights into memory of `backend`'s buffer type, with a cache of
    /// `options.n_ctx` positions beside them.
    ///
    /// # Errors
    /// [`Error::Model`] for another architecture, missing tensors, tensors
    /// whose shapes disagree with the metadata, or options out of range;
    /// GGUF errors for unreadable files; [`Error::BufferAlloc`] when the
    /// backend's memory is short.
    pub fn load(path: impl AsRef<Path>, backend: &Backend, options: Options) -> Result<Model> {
        let file = Gguf::read_index(path.as_ref())?;
        let hparams = Hparams::from_gguf(&file)?;
        check_options(&hparams, &options)?;
        check_tensors(&file, &hparams)?;
        let nodes_per_graph = nodes_per_graph(&hparams);
        let graph_bytes = Context::graph_size(nodes_per_graph)
            .and_then(|g| g.checked_add(nodes_per_graph * crate::size::tensor_overhead()))
            .ok_or_else(|| model_error("block_count", "graphs too large to size"))?;
        let cache_bytes = 2 * hparams.n_layer * crate::size::tensor_overhead();
        let mem = graph_bytes
            .checked_mul(options.max_graphs)
            .and_then(|g| g.checked_add(file.metadata_context_size()))
            .and_then(|g| g.checked_add(cache_bytes))
            .ok_or_else(|| model_error("block_count", "graphs too large to size"))?;
        let ctx = Context::new_no_alloc(mem)?;
        let buffer_type = backend.buffer_type();
        Gguf::load_file_to(path.as_ref(), &ctx, buffer_type)?;
        Ok(Model {
            ctx,
            hparams,
            options,
            buffer_type,
        })
    }

    /// Its hyperparameters.
    pub fn hparams(&self) -> &Hparams {
        &self.hparams
    }

    /// The options it was loaded with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// A session: the cache (empty) and the graphs, computed on `backend`
    /// (which must be able to use the memory the model was loaded into),
    /// intermediates placed by a [`GraphAllocator`]. One session at a
    /// time: a second is [`Error::DataBorrowed`] while the first lives.
    ///
    /// # Errors
    /// [`Error::DataBorrowed`], [`Error::Model`] for a backend that cannot
    /// use the model's memory, [`Error::BufferAlloc`].
    pub fn session(&self, backend: Backend) -> Result<Session<'_>> {
        if !backend.supports_buffer_type(self.buffer_type) {
            return Err(Error::Model {
                item: "backend".into(),
                reason: format!(
                    "{} cannot use the model's memory ({})",
                    backend.name(),
                    self.buffer_type.name()
                ),
            });
        }
        let allocator = GraphAllocator::for_backend(&backend)?;
        self.start(Runner::Backend { backend, allocator })
    }

    /// A session whose graphs `scheduler` splits over its backends (a GPU
    /// and the CPU, say), each node where its weights are or where it is
    /// supported; its graph size must be at least
    /// [`Model::graph_size`].
    ///
    /// # Errors
    /// As [`Model::session`]; [`Error::GraphTooLarge`] for a scheduler
    /// sized for smaller graphs.
    pub fn session_scheduled(&self, scheduler: Scheduler) -> Result<Session<'_>> {
        if scheduler.graph_size() < self.graph_size() {
            return Err(Error::GraphTooLarge {
                tensors: self.graph_size(),
                capacity: scheduler.graph_size(),
            });
        }
        self.start(Runner::Scheduler(scheduler))
    }

    /// The most tensors one step's graph holds (for
    /// [`Scheduler::new`]).
    pub fn graph_size(&self) -> usize {
        nodes_per_graph(&self.hparams)
    }

    fn start(&self, runner: Runner) -> Result<Session<'_>> {
        let data = self.ctx.data()?;
        let weights = Weights::find(&self.ctx, &self.hparams)?;
        let h = &self.hparams;
        let cache = KvCache::new(
            &self.ctx,
            self.buffer_type,
            CacheShape {
                n_layer: h.n_layer,
                n_ctx: self.options.n_ctx,
                n_head_kv: h.n_head_kv,
                head_dim: h.head_dim_k,
                ty: self.options.cache_type,
                v_trans: !self.options.flash_attn,
            },
        )?;
        Ok(Session {
            model: self,
            weights,
            cache,
            runner,
            data,
            steps: HashMap::new(),
            n_past: 0,
        })
    }
}

/// Tensors (nodes and leaves) of one step's graph, at most.
fn nodes_per_graph(h: &Hparams) -> usize {
    48 * h.n_layer + 64
}

/// What computes a session's graphs.
enum Runner {
    /// One backend, intermediates placed by a graph allocator.
    Backend {
        backend: Backend,
        allocator: GraphAllocator,
    },
    /// A scheduler over several backends.
    Scheduler(Scheduler),
}

/// The weights of one block.
struct Layer<'ctx> {
    attn_norm: Tensor<'ctx>,
    wq: Tensor<'ctx>,
    wk: Tensor<'ctx>,
    wv: Tensor<'ctx>,
    wo: Tensor<'ctx>,
    bq: Option<Tensor<'ctx>>,
    bk: Option<Tensor<'ctx>>,
    bv: Option<Tensor<'ctx>>,
    bo: Option<Tensor<'ctx>>,
    ffn_norm: Tensor<'ctx>,
    gate: Tensor<'ctx>,
    up: Tensor<'ctx>,
    down: Tensor<'ctx>,
}

/// Every weight, by role.
struct Weights<'ctx> {
    embd: Tensor<'ctx>,
    layers: Vec<Layer<'ctx>>,
    output_norm: Tensor<'ctx>,
    /// `output.weight`, else the embedding (tied).
    output: Tensor<'ctx>,
    rope_freqs: Option<Tensor<'ctx>>,
}

impl<'ctx> Weights<'ctx> {
    fn find(ctx: &'ctx Context, h: &Hparams) -> Result<Weights<'ctx>> {
        let get = |name: &str| {
            ctx.tensor_by_name(name)
                .ok_or_else(|| model_error(name, "missing"))
        };
        let opt = |name: &str| ctx.tensor_by_name(name);
        let mut layers = Vec::with_capacity(h.n_layer);
        for i in 0..h.n_layer {
            let n = |role: &str| format!("blk.{i}.{role}");
            layers.push(Layer {
                attn_norm: get(&n("attn_norm.weight"))?,
                wq: get(&n("attn_q.weight"))?,
                wk: get(&n("attn_k.weight"))?,
                wv: get(&n("attn_v.weight"))?,
                wo: get(&n("attn_output.weight"))?,
                bq: opt(&n("attn_q.bias")),
                bk: opt(&n("attn_k.bias")),
                bv: opt(&n("attn_v.bias")),
                bo: opt(&n("attn_output.bias")),
                ffn_norm: get(&n("ffn_norm.weight"))?,
                gate: get(&n("ffn_gate.weight"))?,
                up: get(&n("ffn_up.weight"))?,
                down: get(&n("ffn_down.weight"))?,
            });
        }
        let embd = get("token_embd.weight")?;
        Ok(Weights {
            embd,
            layers,
            output_norm: get("output_norm.weight")?,
            output: opt("output.weight").unwrap_or(embd),
            rope_freqs: opt("rope_freqs.weight"),
        })
    }
}

/// What distinguishes one step's graph from another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    /// Tokens computed (padded: see [`padded`]).
    n_tokens: usize,
    /// Cache positions attended to (a power of two from 256, or `n_ctx`).
    n_kv: usize,
    /// Logits of every token, else of one (the last real one).
    all_logits: bool,
}

/// A step's inputs, written before each computation.
#[derive(Clone, Copy)]
struct Inputs<'ctx> {
    /// Token ids (i32).
    tokens: Tensor<'ctx>,
    /// Their positions (i32).
    positions: Tensor<'ctx>,
    /// The cache rows their keys and values go to (i64).
    slots: Tensor<'ctx>,
    /// The elements their values go to in a transposed cache (i64).
    v_slots: Tensor<'ctx>,
    /// The causal mask `[n_tokens, n_kv]` (0 or -inf; f16 for flash
    /// attention).
    mask: Tensor<'ctx>,
    /// The one token whose logits are computed (i32; not in the graph of
    /// a step computing every token's).
    out: Tensor<'ctx>,
}

/// One step's graph and its inputs.
struct Step<'ctx> {
    graph: Graph<'ctx>,
    tokens: Tensor<'ctx>,
    positions: Tensor<'ctx>,
    slots: Tensor<'ctx>,
    v_slots: Tensor<'ctx>,
    mask: Tensor<'ctx>,
    /// The token whose logits are computed (without `all_logits`).
    out: Tensor<'ctx>,
    logits: Tensor<'ctx>,
}

/// A model running on a backend: the cache's state and the graphs built
/// so far.
pub struct Session<'m> {
    model: &'m Model,
    weights: Weights<'m>,
    cache: KvCache<'m>,
    runner: Runner,
    data: TensorData<'m>,
    steps: HashMap<Shape, Step<'m>>,
    n_past: usize,
}

impl<'m> Session<'m> {
    /// Positions computed so far (the next token's position).
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Forgets every position (the cache's contents are overwritten as new
    /// tokens come).
    pub fn clear(&mut self) {
        self.n_past = 0;
    }

    /// Computes `tokens` at the next positions and returns their logits:
    /// `[tokens.len(), n_vocab]` when `all_logits`, else `[1, n_vocab]`
    /// (the last token's). Inputs longer than `n_batch` are computed in
    /// batches.
    ///
    /// # Errors
    /// [`Error::Model`] when the tokens do not fit in the cache or are not
    /// in the vocabulary; what building and computing the graph return.
    pub fn decode(&mut self, tokens: &[Token], all_logits: bool) -> Result<Array2<f32>> {
        let h = &self.model.hparams;
        if tokens.is_empty() {
            return Err(model_error("tokens", "no tokens to compute"));
        }
        let end = self.n_past + tokens.len();
        if end > self.cache.n_ctx() {
            return Err(model_error(
                "tokens",
                format!(
                    "{} tokens after {} positions exceed the context of {}",
                    tokens.len(),
                    self.n_past,
                    self.cache.n_ctx()
                ),
            ));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t < 0 || t as usize >= h.n_vocab) {
            return Err(model_error(
                "tokens",
                format!("token {t} is not in the vocabulary of {}", h.n_vocab),
            ));
        }
        let n_batch = self.model.options.n_batch;
        let mut rows = Vec::new();
        for chunk in tokens.chunks(n_batch) {
            let logits = self.step(chunk, all_logits)?;
            rows.push(logits);
        }
        let views: Vec<_> = rows.iter().map(|a| a.view()).collect();
        Ok(ndarray::concatenate(Axis(0), &views).expect("rows of n_vocab logits"))
    }

    /// One graph: `tokens` (at most `n_batch`) at the next positions.
    fn step(&mut self, tokens: &[Token], all_logits: bool) -> Result<Array2<f32>> {
        let n_ctx = self.cache.n_ctx();
        let n = tokens.len();
        let n_batch = self.model.options.n_batch;
        let end = self.n_past + n;
        let mut shape = Shape {
            n_tokens: padded(n, n_batch),
            n_kv: end.next_power_of_two().max(256).min(n_ctx),
            all_logits,
        };
        if !self.steps.contains_key(&shape)
            && self.steps.len() + FALLBACK_SHAPES >= self.model.options.max_graphs
        {
            // The context's room for graphs is spent: the widest shapes
            // serve every step (more padding, never an error).
            shape = Shape {
                n_tokens: if n == 1 { 1 } else { n_batch },
                n_kv: n_ctx,
                all_logits,
            };
        }
        let n_tokens = shape.n_tokens;
        if !self.steps.contains_key(&shape) {
            let step = self.build(shape)?;
            self.steps.insert(shape, step);
        }
        let step = &self.steps[&shape];
        match &mut self.runner {
            Runner::Backend { allocator, .. } => {
                allocator.allocate(&step.graph)?;
            }
            Runner::Scheduler(sched) => sched.allocate(&step.graph)?,
        }

        // Inputs: padding tokens repeat the last one, at the spare slot.
        let spare = self.cache.spare_slot() as i64;
        let mut ids = Vec::with_capacity(n_tokens);
        let mut pos = Vec::with_capacity(n_tokens);
        let mut slots = Vec::with_capacity(n_tokens);
        for i in 0..n_tokens {
            let real = i < n;
            ids.push(tokens[i.min(n - 1)]);
            let p = self.n_past + i.min(n - 1);
            pos.push(p as i32);
            slots.push(if real { p as i64 } else { spare });
        }
        // Causal mask: token i sees cache positions 0..=its position.
        let mask = Array2::from_shape_fn((n_tokens, shape.n_kv), |(i, j)| {
            if j <= pos[i] as usize {
                0.0f32
            } else {
                f32::NEG_INFINITY
            }
        });
        self.data
            .copy_from_array(step.tokens, &ArrayView1::from(&ids))?;
        self.data
            .copy_from_array(step.positions, &ArrayView1::from(&pos))?;
        self.data
            .copy_from_array(step.slots, &ArrayView1::from(&slots))?;
        if self.cache.v_trans() {
            let v_slots = self.cache.value_slots(&slots);
            self.data
                .copy_from_array(step.v_slots, &ArrayView1::from(&v_slots))?;
        }
        self.data.copy_from_array(step.mask, &mask)?;
        if !all_logits {
            let last = [n as i32 - 1];
            self.data
                .copy_from_array(step.out, &ArrayView1::from(&last))?;
        }
        match &mut self.runner {
            Runner::Backend { backend, .. } => backend.compute(&step.graph, &mut self.data)?,
            Runner::Scheduler(sched) => sched.compute(&step.graph, &mut self.data)?,
        }
        let logits = self.data.to_array::<f32>(step.logits)?;
        let rows = step.logits.ne()[1] as usize;
        let logits = logits
            .into_shape_with_order((rows, self.model.hparams.n_vocab))
            .expect("rows of n_vocab logits");
        self.n_past += n;
        Ok(if all_logits {
            logits.slice(ndarray::s![..n, ..]).to_owned()
        } else {
            logits
        })
    }

    /// Builds the graph of one step shape.
    fn build(&self, shape: Shape) -> Result<Step<'m>> {
        let ctx = &self.model.ctx;
        let h = &self.model.hparams;
        let n = shape.n_tokens;
        let tokens = ctx.new_tensor(Type::I32, &[n])?;
        let positions = ctx.new_tensor(Type::I32, &[n])?;
        let slots = ctx.new_tensor(Type::I64, &[n])?;
        let v_slots = ctx.new_tensor(Type::I64, &[n * h.n_head_kv * h.head_dim_v])?;
        let mask_type = if self.model.options.flash_attn {
            Type::F16
        } else {
            Type::F32
        };
        let mask = ctx.new_tensor(mask_type, &[n, shape.n_kv])?;
        let out = ctx.new_tensor(Type::I32, &[1])?;
        let inputs = Inputs {
            tokens,
            positions,
            slots,
            v_slots,
            mask,
            out,
        };
        let logits = self.forward(shape, &inputs)?;
        let graph = ctx.build_graph(&[logits])?;
        Ok(Step {
            graph,
            tokens,
            positions,
            slots,
            v_slots,
            mask,
            out,
            logits,
        })
    }

    /// The forward pass: embeddings, the blocks, the final norm and the
    /// output head, as llama.cpp's `llama` graph computes them.
    fn forward(&self, shape: Shape, inputs: &Inputs<'m>) -> Result<Tensor<'m>> {
        let Inputs {
            tokens,
            positions,
            slots,
            v_slots,
            mask,
            out,
        } = *inputs;
        let h = &self.model.hparams;
        let w = &self.weights;
        let n = shape.n_tokens;
        let (hd, n_head, n_head_kv) = (h.head_dim_k, h.n_head, h.n_head_kv);
        let rope = Rope {
            mode: RopeMode::Normal,
            n_ctx_orig: h.n_ctx_orig as i32,
            freq_base: h.rope_freq_base,
            freq_scale: h.rope_freq_scale,
            ..Rope::new(h.n_rot as i32)
        };
        let linear = |w: Tensor<'m>, b: Option<Tensor<'m>>, x: Tensor<'m>| -> Result<Tensor<'m>> {
            let y = w.mul_mat(x)?;
            match b {
                Some(b) => y.add(b),
                None => Ok(y),
            }
        };

        // [n, n_embd]: one embedding row per token.
        let mut x = w.embd.get_rows(tokens)?;
        for (il, l) in w.layers.iter().enumerate() {
            // Attention: normalise, project, rotate, store in the cache,
            // attend over the cache, project back.
            let xn = x.rms_norm(h.rms_eps)?.mul(l.attn_norm)?;
            let q = linear(l.wq, l.bq, xn)?
                .reshape(&[n, n_head, hd])?
                .rope_ext(positions, w.rope_freqs, &rope)?;
            let k = linear(l.wk, l.bk, xn)?
                .reshape(&[n, n_head_kv, hd])?
                .rope_ext(positions, w.rope_freqs, &rope)?;
            let v = linear(l.wv, l.bv, xn)?;
            let (k_all, v_all) = self.cache.store(
                il,
                k.reshape(&[n, n_head_kv * hd])?,
                v,
                slots,
                v_slots,
                shape.n_kv,
            )?;
            let attn = self.attention(q, k_all, v_all, mask, n)?;
            let mut attn = linear(l.wo, l.bo, attn)?;
            let mut residual = x;
            if il + 1 == h.n_layer && !shape.all_logits {
                // Only the last token goes on (llama.cpp's inp_out_ids).
                attn = attn.get_rows(out)?;
                residual = residual.get_rows(out)?;
            }
            let x1 = attn.add(residual)?;

            // Feed-forward: normalise, SwiGLU, project back.
            let xn = x1.rms_norm(h.rms_eps)?.mul(l.ffn_norm)?;
            let ff = l.gate.mul_mat(xn)?.swiglu_split(l.up.mul_mat(xn)?)?;
            x = l.down.mul_mat(ff)?.add(x1)?;
        }
        let x = x.rms_norm(h.rms_eps)?.mul(w.output_norm)?;
        w.output.mul_mat(x)
    }

    /// Attention of `q` (`[n, n_head, hd]`, ndarray order) over the cache's
    /// keys (`[n_kv, n_head_kv, hd]`) and values (the same with flash
    /// attention, else transposed: `[n_head_kv, hd, n_kv]`) under `mask`:
    /// `[n, n_head · hd]`.
    fn attention(
        &self,
        q: Tensor<'m>,
        k: Tensor<'m>,
        v: Tensor<'m>,
        mask: Tensor<'m>,
        n: usize,
    ) -> Result<Tensor<'m>> {
        let h = &self.model.hparams;
        let width = h.n_head * h.head_dim_v;
        // ggml order: q [hd, n, n_head], k and v [hd, n_kv, n_head_kv].
        let q = q.permute([0, 2, 1, 3])?;
        let k = k.permute([0, 2, 1, 3])?;
        if self.model.options.flash_attn {
            let v = v.permute([0, 2, 1, 3])?;
            let params = FlashAttn {
                mask: Some(mask),
                precision: Precision::F32,
                ..FlashAttn::new(h.attention_scale)
            };
            // [hd, n_head, n] in ggml order.
            return q.flash_attn_ext(k, v, &params)?.reshape(&[n, width]);
        }
        // Scores [n_kv, n, n_head] (ggml order), each query head reading
        // its group's key head.
        let scores = k.mul_mat(q)?.soft_max_ext(&SoftMax {
            mask: Some(mask),
            scale: h.attention_scale,
            ..SoftMax::default()
        })?;
        // Values, transposed in the cache: [n_kv, hd, n_head_kv] (ggml
        // order), rows to weigh.
        v.mul_mat(scores)?
            .permute([0, 2, 1, 3])?
            .cont()?
            .reshape(&[n, width])
    }
}

/// The token count a step of `n` tokens is computed with: powers of two up
/// to 32, then multiples of 32 (at most `n_batch`), so few distinct graphs
/// serve every input length; the padding tokens' results are dropped.
fn padded(n: usize, n_batch: usize) -> usize {
    let p = if n <= 32 {
        n.next_power_of_two()
    } else {
        n.next_multiple_of(32)
    };
    p.min(n_batch)
}

fn check_options(h: &Hparams, o: &Options) -> Result<()> {
    let bad = |item: &str, reason: String| Err(model_error(item, reason));
    if o.n_ctx == 0 || o.n_ctx > (1 << 24) {
        return bad("n_ctx", format!("{}: 1 to 2^24 positions", o.n_ctx));
    }
    if !(FALLBACK_SHAPES + 1..=1 << 12).contains(&o.max_graphs) {
        return bad(
            "max_graphs",
            format!("{}: {} to 4096 graphs", o.max_graphs, FALLBACK_SHAPES + 1),
        );
    }
    if o.n_batch == 0 || o.n_batch > (1 << 16) {
        return bad("n_batch", format!("{}: 1 to 65536 tokens", o.n_batch));
    }
    if h.head_dim_k != h.head_dim_v || h.n_rot != h.head_dim_k {
        return bad(
            "attention.key_length",
            format!(
                "key width {}, value width {}, rotated dimensions {}: the llama graph needs them equal",
                h.head_dim_k, h.head_dim_v, h.n_rot
            ),
        );
    }
    Ok(())
}

/// Checks that every tensor the graph uses is there with the shape the
/// metadata implies (ggml `ne`).
fn check_tensors(file: &Gguf, h: &Hparams) -> Result<()> {
    let q = (h.n_head * h.head_dim_k) as i64;
    let kv = (h.n_head_kv * h.head_dim_k) as i64;
    let (e, f, v) = (h.n_embd as i64, h.n_ff as i64, h.n_vocab as i64);
    let expect = |name: &str, ne: &[i64], required: bool| -> Result<()> {
        let info = match file.tensor(name) {
            Ok(info) => info,
            Err(_) if !required => return Ok(()),
            Err(_) => return Err(model_error(name, "missing")),
        };
        let mut want = [1i64; 4];
        want[..ne.len()].copy_from_slice(ne);
        if info.ne() != want {
            return Err(model_error(
                name,
                format!(
                    "shape (ggml ne) {:?}, the metadata implies {want:?}",
                    info.ne()
                ),
            ));
        }
        Ok(())
    };
    expect("token_embd.weight", &[e, v], true)?;
    expect("output_norm.weight", &[e], true)?;
    expect("output.weight", &[e, v], false)?;
    expect("rope_freqs.weight", &[h.n_rot as i64 / 2], false)?;
    for i in 0..h.n_layer {
        let n = |role: &str| format!("blk.{i}.{role}");
        if file.tensor(&n("attn_qkv.weight")).is_ok() {
            return Err(model_error(
                n("attn_qkv.weight"),
                "fused QKV weights are not implemented here",
            ));
        }
        expect(&n("attn_norm.weight"), &[e], true)?;
        expect(&n("attn_q.weight"), &[e, q], true)?;
        expect(&n("attn_k.weight"), &[e, kv], true)?;
        expect(&n("attn_v.weight"), &[e, kv], true)?;
        expect(&n("attn_output.weight"), &[q, e], true)?;
        expect(&n("attn_q.bias"), &[q], false)?;
        expect(&n("attn_k.bias"), &[kv], false)?;
        expect(&n("attn_v.bias"), &[kv], false)?;
        expect(&n("attn_output.bias"), &[e], false)?;
        expect(&n("ffn_norm.weight"), &[e], true)?;
        expect(&n("ffn_gate.weight"), &[e, f], true)?;
        expect(&n("ffn_up.weight"), &[e, f], true)?;
        expect(&n("ffn_down.weight"), &[f, e], true)?;
    }
    Ok(())
}
