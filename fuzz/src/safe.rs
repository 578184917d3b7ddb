//! Runs a [`Program`] through the safe API, recording each call's outcome.
//!
//! Contexts are leaked (`Box::leak`) so that tensors of any of them can sit in
//! one pool; a program is short and runs in a child process that exits after.

use ggml::backend::{Backend, BufferType, GraphAllocator, Scheduler};
use ggml::half::{bf16, f16};
use ggml::ndarray::{ArrayD, Axis, IxDyn, ShapeBuilder, Slice};
use ggml::{convert, Compute, Context, Element, Error, Tensor, TensorData};

use crate::program::{ArrayLayout, BinOp, Call, CtxKind, Elem, Fill, Program};

/// What a call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// The safe API refused it with this error variant.
    Err(String),
    /// Nothing to call it on (no context or tensor yet, or data too large to
    /// generate).
    Skip,
}

/// The contexts and tensors a program has made.
#[derive(Default)]
pub struct State {
    /// Every context made (leaked boxes, freed when the state is dropped).
    contexts: Vec<&'static Context>,
    /// Every tensor made, of any context.
    pub tensors: Vec<Tensor<'static>>,
    /// Graph allocators (two slots), made on first use.
    allocators: [Option<GraphAllocator>; 2],
    /// A CPU backend, made on first use.
    backend: Option<Backend>,
    /// A scheduler over two CPU backends, made on first use.
    scheduler: Option<Scheduler>,
}

impl State {
    /// The CPU backend, made on first use.
    fn cpu_backend(&mut self) -> Option<&mut Backend> {
        if self.backend.is_none() {
            self.backend = Backend::cpu().ok();
        }
        self.backend.as_mut()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // The tensors borrowing the contexts go first.
        self.tensors.clear();
        for ctx in self.contexts.drain(..) {
            // SAFETY: each context was leaked from a box by `call` and is only
            // referenced by this state's tensors (cleared above) and by
            // references that did not outlive the call that made them.
            drop(unsafe { Box::from_raw(ctx as *const Context as *mut Context) });
        }
    }
}

impl State {
    /// Context number `i` (modulo their count).
    pub fn context(&self, i: u8) -> Option<&'static Context> {
        (!self.contexts.is_empty()).then(|| self.contexts[usize::from(i) % self.contexts.len()])
    }

    /// Tensor number `i` (modulo their count).
    pub fn tensor(&self, i: u8) -> Option<Tensor<'static>> {
        (!self.tensors.is_empty()).then(|| self.tensors[usize::from(i) % self.tensors.len()])
    }

    /// Whether the tensors of `ctx` are too large to give memory to: a
    /// no_alloc context may describe terabytes, which backend memory, a
    /// graph allocator or a scheduler would then try to allocate and zero
    /// (a matter of the machine's memory, not of soundness, and a child that
    /// takes minutes). Allocation above [`MAX_ALLOCATION`] is skipped.
    fn too_large_to_allocate(&self, ctx: &Context) -> bool {
        let total = self
            .tensors
            .iter()
            .filter(|t| std::ptr::eq(t.context(), ctx))
            .try_fold(0usize, |acc, t| acc.checked_add(t.nbytes()));
        total.is_none_or(|b| b > MAX_ALLOCATION)
    }
}

/// Most bytes the fuzzer lets backend memory, graph allocators and
/// schedulers allocate for one context's tensors.
const MAX_ALLOCATION: usize = 256 << 20;

/// Options of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Map the i-quants with slow grid set-up to Q4_K (for valgrind).
    pub no_slow: bool,
}

/// The name of an error's variant (`"TooLarge"`, ...).
pub fn variant(err: &Error) -> String {
    if let Error::Op(op) = err {
        // The rule, its values masked, so that refusals group by rule.
        let rule: String = op
            .rule
            .chars()
            .take(60)
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        return format!("Op[{rule}]");
    }
    let debug = format!("{err:?}");
    debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or("?")
        .to_string()
}

fn outcome<T>(result: ggml::Result<T>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(err) => Outcome::Err(variant(&err)),
    }
}

/// An f32 array of `shape` laid out as `layout` (same logical values).
fn array(shape: &[usize], fill: Fill, layout: ArrayLayout) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let values = fill.values(n);
    match layout {
        ArrayLayout::Standard => ArrayD::from_shape_vec(IxDyn(shape), values).expect("length"),
        ArrayLayout::Reversed => ArrayD::from_shape_vec(IxDyn(shape).f(), values).expect("length"),
        ArrayLayout::Strided => {
            let mut wide_shape = shape.to_vec();
            if let Some(last) = wide_shape.last_mut() {
                *last *= 2;
            }
            let wide: Vec<f32> = fill.values(n * 2);
            let wide = ArrayD::from_shape_vec(IxDyn(&wide_shape), wide).expect("length");
            if shape.is_empty() {
                return wide;
            }
            let axis = Axis(shape.len() - 1);
            wide.slice_axis(axis, Slice::new(0, None, 2)).to_owned()
        }
    }
}

fn read_view<E: Element + std::fmt::Debug>(
    data: &TensorData<'static>,
    t: Tensor<'static>,
) -> ggml::Result<()> {
    let view = data.view::<E>(t)?;
    std::hint::black_box(view.iter().fold(0usize, |n, _| n + 1));
    std::hint::black_box(format!("{:?}", view.iter().next()));
    Ok(())
}

fn write_view<E: Element>(data: &mut TensorData<'static>, t: Tensor<'static>) -> ggml::Result<()> {
    let mut view = data.view_mut::<E>(t)?;
    if let Some(first) = view.iter_mut().next() {
        *first = E::default();
    }
    Ok(())
}

fn to_array<E: Element>(
    data: &TensorData<'static>,
    t: Tensor<'static>,
    into: bool,
) -> ggml::Result<()> {
    if into {
        let mut out = ArrayD::<E>::from_elem(IxDyn(&t.shape()), E::default());
        data.copy_to_array(t, &mut out)
    } else {
        data.to_array::<E>(t).map(|a| {
            std::hint::black_box(a.len());
        })
    }
}

/// One to three tensors of one context, for a graph's outputs.
fn outputs(state: &State, first: u8, more: &[u8]) -> Option<Vec<Tensor<'static>>> {
    std::iter::once(&first)
        .chain(more.iter().take(2))
        .map(|&i| state.tensor(i))
        .collect()
}

/// Runs call `call` on `state` through the safe API.
pub fn call(state: &mut State, call: &Call, options: Options) -> Outcome {
    let no_slow = options.no_slow;
    macro_rules! tensor {
        ($i:expr) => {
            match state.tensor($i) {
                Some(t) => t,
                None => return Outcome::Skip,
            }
        };
    }
    macro_rules! made {
        ($result:expr) => {
            match $result {
                Ok(t) => {
                    state.tensors.push(t);
                    Outcome::Ok
                }
                Err(err) => Outcome::Err(variant(&err)),
            }
        };
    }
    match call {
        Call::NewContext(size, kind) => {
            if state.contexts.len() >= 4 {
                return Outcome::Skip;
            }
            let size = size.value();
            let result = match *kind {
                CtxKind::Alloc => Context::new(size),
                CtxKind::NoAlloc => Context::new_no_alloc(size),
                CtxKind::Buffer { skip, no_alloc } => {
                    if size > 64 << 20 {
                        return Outcome::Skip;
                    }
                    let mut buffer = vec![0u8; size + usize::from(skip % 16)];
                    buffer.drain(..usize::from(skip % 16));
                    Context::with_buffer(buffer, no_alloc)
                }
            };
            match result {
                Ok(ctx) => {
                    state.contexts.push(Box::leak(Box::new(ctx)));
                    Outcome::Ok
                }
                Err(err) => Outcome::Err(variant(&err)),
            }
        }
        Call::NewTensor(c, ty, shape) => {
            let Some(ctx) = state.context(*c) else {
                return Outcome::Skip;
            };
            made!(ctx.new_tensor(ty.get(no_slow), &shape.dims()))
        }
        Call::FromArray(c, ty, shape, fill) => {
            let Some(ctx) = state.context(*c) else {
                return Outcome::Skip;
            };
            let Some(dims) = shape.fillable() else {
                return Outcome::Skip;
            };
            let values = array(&dims, *fill, ArrayLayout::Standard);
            if ctx.is_no_alloc() {
                if state.too_large_to_allocate(ctx) {
                    return Outcome::Skip;
                }
                // A tensor in a backend buffer the context owns.
                return made!((|| {
                    let t = ctx.new_tensor(ty.get(no_slow), &dims)?;
                    ctx.allocate(BufferType::cpu()?)?;
                    ctx.data()?.copy_from_array(t, &values)?;
                    Ok(t)
                })());
            }
            made!(ctx.tensor_from_array_as(ty.get(no_slow), &values))
        }
        Call::View(t, shape, strides, offset) => {
            let t = tensor!(*t);
            let strides: Vec<usize> = strides.iter().map(|s| s.value()).collect();
            made!(t
                .context()
                .view(t, &shape.dims(), &strides, usize::from(*offset)))
        }
        Call::Reshape(t, shape) => {
            let t = tensor!(*t);
            made!(t.context().reshape(t, &shape.dims()))
        }
        Call::Permute(t, n, raw) => {
            let t = tensor!(*t);
            made!(t.context().permute(t, crate::program::axes(*n, *raw)))
        }
        Call::Transpose(t) => {
            let t = tensor!(*t);
            made!(t.context().transpose(t))
        }
        Call::Cont(t) => {
            let t = tensor!(*t);
            made!(t.context().cont(t))
        }
        Call::Cpy(a, b) => {
            let (a, b) = (tensor!(*a), tensor!(*b));
            made!(a.context().cpy(a, b))
        }
        Call::Binary(op, a, b) => {
            let (a, b) = (tensor!(*a), tensor!(*b));
            let ctx = a.context();
            made!(match op {
                BinOp::Add => ctx.add(a, b),
                BinOp::Sub => ctx.sub(a, b),
                BinOp::Mul => ctx.mul(a, b),
                BinOp::Div => ctx.div(a, b),
            })
        }
        Call::Scale(t, s) => {
            let t = tensor!(*t);
            made!(t.context().scale(t, f32::from(*s) / 8.0))
        }
        Call::MulMat(a, b) => {
            let (a, b) = (tensor!(*a), tensor!(*b));
            made!(a.context().mul_mat(a, b))
        }
        Call::Op(n, operands, params) => {
            let decl = crate::op_decl(*n);
            let operands: Vec<_> = operands[..decl.arity()]
                .iter()
                .map(|&i| state.tensor(i))
                .collect();
            let Some(operands) = operands.into_iter().collect::<Option<Vec<_>>>() else {
                return Outcome::Skip;
            };
            made!(decl.build(&operands, &params.get()))
        }
        Call::Compute(first, more, threads) => {
            let picks = std::iter::once(first).chain(more.iter().take(2));
            let outputs: Vec<Tensor<'static>> = match picks.map(|&i| state.tensor(i)).collect() {
                Some(o) => o,
                None => return Outcome::Skip,
            };
            let Some(first) = outputs.first() else {
                return Outcome::Skip;
            };
            let ctx = first.context();
            outcome((|| {
                let graph = ctx.build_graph(&outputs)?;
                let mut data = ctx.data()?;
                let options = match threads.value() {
                    Some(n) => Compute::new().threads(n),
                    None => Compute::new(),
                };
                graph.compute_with(&mut data, options)
            })())
        }
        Call::ComputeAbort(t, after) => {
            let t = tensor!(*t);
            let ctx = t.context();
            let mut calls = 0u8;
            let mut stop = move || {
                calls = calls.saturating_add(1);
                calls > *after % 4
            };
            outcome((|| {
                let graph = ctx.build_graph(&[t])?;
                let mut data = ctx.data()?;
                graph.compute_with(
                    &mut data,
                    Compute::new().threads(2).abort_callback(&mut stop),
                )
            })())
        }
        Call::Sizes(ty, shape, nodes) => {
            let size = Context::tensor_size(ty.get(no_slow), &shape.dims());
            let graph = Context::graph_size(*nodes as usize);
            std::hint::black_box(graph);
            outcome(size)
        }
        Call::Name(t, name) => {
            let t = tensor!(*t);
            let named = t.set_name(name);
            let found = t.context().tensor_by_name(&named.name());
            std::hint::black_box(found.map(|f| f.shape()));
            Outcome::Ok
        }
        Call::SetMaxThreads(threads) => {
            ggml::set_max_threads(threads.value().unwrap_or(0));
            Outcome::Ok
        }
        Call::CopyFromArray(t, fill, layout, imatrix) => {
            let t = tensor!(*t);
            let shape = t.shape();
            if !crate::program::fillable(&shape) {
                return Outcome::Skip;
            }
            let values = array(&shape, *fill, *layout);
            outcome((|| {
                let mut data = t.context().data()?;
                match imatrix {
                    Some(m) => {
                        let weights: Vec<f32> = m
                            .values(t.ne()[0].max(0) as usize)
                            .iter()
                            .map(|w| w.abs())
                            .collect();
                        data.quantize_from_array_with_imatrix(t, &values, &weights)
                    }
                    None => data.copy_from_array(t, &values),
                }
            })())
        }
        Call::ToArray(t, elem, into) => {
            let t = tensor!(*t);
            if !crate::program::fillable(&t.shape()) {
                return Outcome::Skip;
            }
            outcome((|| {
                let data = t.context().data()?;
                match elem {
                    Elem::F32 => to_array::<f32>(&data, t, *into),
                    Elem::F16 => to_array::<f16>(&data, t, *into),
                    Elem::Bf16 => to_array::<bf16>(&data, t, *into),
                    Elem::F64 => to_array::<f64>(&data, t, *into),
                    Elem::I32 => to_array::<i32>(&data, t, *into),
                    Elem::I8 => to_array::<i8>(&data, t, *into),
                }
            })())
        }
        Call::View2(t, elem, mutable) => {
            let t = tensor!(*t);
            outcome((|| {
                let mut data = t.context().data()?;
                if *mutable {
                    match elem {
                        Elem::F32 => write_view::<f32>(&mut data, t),
                        Elem::F16 => write_view::<f16>(&mut data, t),
                        Elem::Bf16 => write_view::<bf16>(&mut data, t),
                        Elem::F64 => write_view::<f64>(&mut data, t),
                        Elem::I32 => write_view::<i32>(&mut data, t),
                        Elem::I8 => write_view::<i8>(&mut data, t),
                    }
                } else {
                    match elem {
                        Elem::F32 => read_view::<f32>(&data, t),
                        Elem::F16 => read_view::<f16>(&data, t),
                        Elem::Bf16 => read_view::<bf16>(&data, t),
                        Elem::F64 => read_view::<f64>(&data, t),
                        Elem::I32 => read_view::<i32>(&data, t),
                        Elem::I8 => read_view::<i8>(&data, t),
                    }
                }
            })())
        }
        Call::Bytes(t, mutable) => {
            let t = tensor!(*t);
            outcome((|| {
                let mut data = t.context().data()?;
                if *mutable {
                    // Garbage blocks: every dequantizer must cope with any byte.
                    let bytes = data.bytes_mut(t)?;
                    for (i, b) in bytes.iter_mut().enumerate() {
                        *b = (i as u8).wrapping_mul(37) ^ 0xA5;
                    }
                } else {
                    let sum = data.bytes(t)?.iter().fold(0u8, |a, &b| a.wrapping_add(b));
                    std::hint::black_box(sum);
                }
                Ok(())
            })())
        }
        Call::CopyTensor(a, b, requantize) => {
            let (a, b) = (tensor!(*a), tensor!(*b));
            outcome((|| {
                let mut data = a.context().data()?;
                data.copy_tensor(a, b, *requantize)
            })())
        }
        Call::Allocate(c) => {
            let Some(ctx) = state.context(*c) else {
                return Outcome::Skip;
            };
            if state.too_large_to_allocate(ctx) {
                return Outcome::Skip;
            }
            outcome(BufferType::cpu().and_then(|b| ctx.allocate(b)))
        }
        Call::GraphAllocate(n, first, more) => {
            let Some(outputs) = outputs(state, *first, more) else {
                return Outcome::Skip;
            };
            if state.too_large_to_allocate(outputs[0].context()) {
                return Outcome::Skip;
            }
            let slot = &mut state.allocators[usize::from(*n % 2)];
            if slot.is_none() {
                match BufferType::cpu().and_then(GraphAllocator::new) {
                    Ok(a) => *slot = Some(a),
                    Err(err) => return Outcome::Err(variant(&err)),
                }
            }
            let allocator = slot.as_mut().expect("made above");
            let ctx = outputs[0].context();
            outcome(
                ctx.build_graph(&outputs)
                    .and_then(|g| allocator.allocate(&g)),
            )
        }
        Call::DropAllocator(n) => {
            state.allocators[usize::from(*n % 2)] = None;
            Outcome::Ok
        }
        Call::BackendCompute(first, more, threads, asynchronous) => {
            let Some(outputs) = outputs(state, *first, more) else {
                return Outcome::Skip;
            };
            if state.backend.is_none() {
                match Backend::cpu() {
                    Ok(b) => state.backend = Some(b),
                    Err(err) => return Outcome::Err(variant(&err)),
                }
            }
            let backend = state.backend.as_mut().expect("made above");
            let ctx = outputs[0].context();
            outcome((|| {
                let graph = ctx.build_graph(&outputs)?;
                let mut data = ctx.data()?;
                if *asynchronous {
                    return backend.compute_async(&graph, &mut data)?.wait();
                }
                let options = match threads.value() {
                    Some(n) => Compute::new().threads(n),
                    None => Compute::new(),
                };
                backend.compute_with(&graph, &mut data, options)
            })())
        }
        Call::Schedule(first, more, placements, size) => {
            let Some(outputs) = outputs(state, *first, more) else {
                return Outcome::Skip;
            };
            let placement: Vec<(Tensor<'static>, usize)> = match placements
                .iter()
                .take(4)
                .map(|&(t, b)| state.tensor(t).map(|t| (t, usize::from(b % 3))))
                .collect()
            {
                Some(p) => p,
                None => return Outcome::Skip,
            };
            if state.too_large_to_allocate(outputs[0].context()) {
                return Outcome::Skip;
            }
            if state.scheduler.is_none() {
                let made = Backend::cpu()
                    .and_then(|a| Ok(vec![a, Backend::cpu()?]))
                    .and_then(|b| Scheduler::new(b, usize::from(*size % 512)));
                match made {
                    Ok(s) => state.scheduler = Some(s),
                    Err(err) => return Outcome::Err(variant(&err)),
                }
            }
            let sched = state.scheduler.as_mut().expect("made above");
            let ctx = outputs[0].context();
            outcome((|| {
                let graph = ctx.build_graph(&outputs)?;
                sched.allocate_with(&graph, &placement)?;
                let mut data = ctx.data()?;
                sched.compute(&graph, &mut data)
            })())
        }
        Call::ForgetPending(first, more) => {
            let Some(outputs) = outputs(state, *first, more) else {
                return Outcome::Skip;
            };
            let Some(backend) = state.cpu_backend() else {
                return Outcome::Skip;
            };
            let ctx = outputs[0].context();
            outcome((|| {
                let graph = ctx.build_graph(&outputs)?;
                let mut data = ctx.data()?;
                std::mem::forget(backend.compute_async(&graph, &mut data)?);
                Ok(())
            })())
        }
        Call::Synchronize => {
            if let Some(b) = state.backend.as_mut() {
                b.synchronize();
            }
            Outcome::Ok
        }
        Call::ComputeDroppingAllocator(first, more, n, after) => {
            let Some(outputs) = outputs(state, *first, more) else {
                return Outcome::Skip;
            };
            let mut allocator = state.allocators[usize::from(*n % 2)].take();
            let Some(backend) = state.cpu_backend() else {
                return Outcome::Skip;
            };
            let ctx = outputs[0].context();
            let mut left = *after;
            let mut drop_it = move || {
                if left == 0 {
                    drop(allocator.take());
                } else {
                    left -= 1;
                }
                false
            };
            outcome((|| {
                let graph = ctx.build_graph(&outputs)?;
                let mut data = ctx.data()?;
                backend.compute_with(
                    &graph,
                    &mut data,
                    Compute::new().abort_callback(&mut drop_it),
                )
            })())
        }
        Call::ForgetData(c) => {
            let Some(ctx) = state.context(*c) else {
                return Outcome::Skip;
            };
            match ctx.data() {
                Ok(data) => {
                    std::mem::forget(data);
                    Outcome::Ok
                }
                Err(err) => Outcome::Err(variant(&err)),
            }
        }
        Call::DropScheduler => {
            state.scheduler = None;
            Outcome::Ok
        }
        Call::ByteCopy(t, write) => {
            let t = tensor!(*t);
            if t.nbytes() > 1 << 20 {
                return Outcome::Skip;
            }
            outcome((|| {
                let mut data = t.context().data()?;
                let mut bytes = data.read_bytes(t)?;
                if *write {
                    for (i, b) in bytes.iter_mut().enumerate() {
                        *b ^= (i as u8).wrapping_mul(31);
                    }
                    data.write_bytes(t, &bytes)?;
                }
                Ok(())
            })())
        }
        Call::Convert(ty, len, row_len, fill, imatrix) => {
            let ty = ty.get(no_slow);
            let (len, row_len) = (usize::from(*len % 2048), usize::from(*row_len % 600));
            let src = fill.values(len);
            let rows = len.checked_div(row_len).unwrap_or(0);
            let bytes = ty.row_size(row_len).map_or(len, |r| r * rows);
            let mut dst = vec![0u8; bytes];
            let weights = imatrix.map(|m| m.values(row_len));
            let first = outcome(convert::from_f32(
                ty,
                &src,
                &mut dst,
                row_len,
                weights.as_deref(),
            ));
            let mut back = vec![0f32; rows * row_len];
            match (first, convert::to_f32(ty, &dst, &mut back)) {
                (Outcome::Ok, Ok(())) => Outcome::Ok,
                (Outcome::Ok, Err(err)) => Outcome::Err(variant(&err)),
                (other, _) => other,
            }
        }
    }
}

/// Runs `program` through the safe API, calling `report` after each call.
/// With `stop_before = Some(k)`, returns the state just before call `k`.
pub fn run(
    program: &Program,
    options: Options,
    stop_before: Option<usize>,
    mut report: impl FnMut(usize, &Outcome),
) -> State {
    let mut state = State::default();
    for (i, c) in program.calls.iter().enumerate() {
        if stop_before == Some(i) {
            break;
        }
        let outcome = call(&mut state, c, options);
        report(i, &outcome);
    }
    ggml::set_max_threads(0);
    state
}
