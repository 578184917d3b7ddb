//! The other direction: a call the safe API refused, made through raw ggml
//! (`ggml::sys`) on the same state, in a child process of its own. If the
//! child survives (and, for ops, computing the result survives too), raw ggml
//! "accepted" what the safe API refused: an over-cautious refusal, or a call
//! whose damage does not show as a crash. The driver counts both directions.

use std::ffi::c_void;

use ggml::sys;

use crate::program::{BinOp, Call, CtxKind};
use crate::safe::State;

/// Whether a raw equivalent of the call exists.
pub fn applicable(call: &Call) -> bool {
    !matches!(
        call,
        Call::SetMaxThreads(_)
            | Call::ToArray(..)
            | Call::View2(..)
            | Call::Bytes(..)
            | Call::CopyTensor(..)
            | Call::ComputeAbort(..)
            | Call::Sizes(..)
            | Call::Name(..)
            | Call::Allocate(..)
            | Call::GraphAllocate(..)
            | Call::DropAllocator(..)
            | Call::BackendCompute(..)
            | Call::Schedule(..)
            | Call::DropScheduler
            | Call::ByteCopy(..)
            | Call::ForgetPending(..)
            | Call::Synchronize
            | Call::ComputeDroppingAllocator(..)
            | Call::ForgetData(..)
    )
}

/// ggml's `ne` of an ndarray shape, as raw ggml would be given it (values
/// above `i64::MAX` wrap to negative, as a C cast does).
fn ne(dims: &[usize]) -> [i64; 4] {
    let mut ne = [1i64; 4];
    for (i, &d) in dims.iter().rev().take(4).enumerate() {
        ne[i] = d as i64;
    }
    ne
}

/// Computes `nodes` with raw ggml on `threads` threads.
///
/// # Safety
/// `nodes` are live; this is the experiment.
unsafe fn compute(nodes: &[*mut sys::ggml_tensor], threads: i32) {
    // SAFETY: the experiment: raw calls with what the program made. The
    // graph gets a context of its own, so a full arena does not count
    // against raw ggml.
    unsafe {
        let ctx = sys::ggml_init(sys::ggml_init_params {
            mem_size: sys::ggml_graph_overhead_custom(4096, false) + 4096,
            mem_buffer: std::ptr::null_mut(),
            no_alloc: true,
        });
        let graph = sys::ggml_new_graph_custom(ctx, 4096, false);
        for &n in nodes {
            sys::ggml_build_forward_expand(graph, n);
        }
        #[cfg(ggml_cpu_backend)]
        {
            let mut plan = sys::ggml_graph_plan(graph, threads, std::ptr::null_mut());
            let mut work = vec![0u8; plan.work_size];
            plan.work_data = work.as_mut_ptr();
            sys::ggml_graph_compute(graph, &mut plan);
        }
        #[cfg(not(ggml_cpu_backend))]
        {
            let _ = threads;
            let backend =
                sys::ggml_backend_init_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU, std::ptr::null());
            sys::ggml_backend_graph_compute(backend, graph);
            sys::ggml_backend_free(backend);
        }
        sys::ggml_free(ctx);
    }
}

/// How far a replay went without dying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// No node (the op has no raw form, or ggml's builder returned NULL).
    NoNode,
    /// Built, or a call that computes nothing, but not computed (a
    /// `no_alloc` context, say).
    NotComputed,
    /// Built and computed.
    Computed,
}

/// Makes `call` through raw ggml on `state`, then computes the node it made
/// (see [`Replayed`]); returns normally if ggml did.
pub fn replay(state: &State, call: &Call, no_slow: bool) -> Replayed {
    let t = |i: u8| state.tensor(i).map(|t| t.as_ptr());
    let node: *mut sys::ggml_tensor;
    let ctx_of = |i: u8| state.tensor(i).map(|t| t.context().as_ptr());
    // SAFETY: none promised; this is the experiment, in a child process.
    unsafe {
        match call {
            Call::NewContext(size, kind) => {
                let (no_alloc, buffer) = match *kind {
                    CtxKind::Alloc => (false, std::ptr::null_mut()),
                    CtxKind::NoAlloc => (true, std::ptr::null_mut()),
                    CtxKind::Buffer { skip, no_alloc } => {
                        let mut b = vec![0u8; size.value().min(64 << 20) + 16];
                        let p = b.as_mut_ptr().add(usize::from(skip % 16));
                        std::mem::forget(b);
                        (no_alloc, p.cast::<c_void>())
                    }
                };
                sys::ggml_init(sys::ggml_init_params {
                    mem_size: size.value(),
                    mem_buffer: buffer,
                    no_alloc,
                });
                return Replayed::NotComputed;
            }
            Call::NewTensor(c, ty, shape) | Call::FromArray(c, ty, shape, _) => {
                let Some(ctx) = state.context(*c) else {
                    return Replayed::NotComputed;
                };
                let dims = shape.dims();
                let ne = ne(&dims);
                node = sys::ggml_new_tensor(
                    ctx.as_ptr(),
                    ty.get(no_slow).as_raw(),
                    dims.len().clamp(1, 5) as i32,
                    ne.as_ptr(),
                );
                if let Call::FromArray(_, ty, _, fill) = call {
                    let data = (*node).data.cast::<c_void>();
                    let n: i64 = ne.iter().product();
                    if !data.is_null() && n > 0 && n <= 1 << 16 {
                        let values = fill.values(n as usize);
                        sys::ggml_quantize_chunk(
                            ty.get(no_slow).as_raw(),
                            values.as_ptr(),
                            data,
                            0,
                            n / ne[0].max(1),
                            ne[0],
                            std::ptr::null(),
                        );
                    }
                }
                return Replayed::NotComputed;
            }
            Call::View(i, shape, strides, offset) => {
                let (Some(a), Some(ctx)) = (t(*i), ctx_of(*i)) else {
                    return Replayed::NotComputed;
                };
                let ne = ne(&shape.dims());
                let mut nb = [(*a).nb[0]; 4];
                for (k, s) in strides.iter().rev().take(3).enumerate() {
                    nb[k + 1] = s.value();
                }
                node = sys::ggml_view_4d(
                    ctx,
                    a,
                    ne[0],
                    ne[1],
                    ne[2],
                    ne[3],
                    nb[1],
                    nb[2],
                    nb[3],
                    usize::from(*offset),
                );
            }
            Call::Reshape(i, shape) => {
                let (Some(a), Some(ctx)) = (t(*i), ctx_of(*i)) else {
                    return Replayed::NotComputed;
                };
                let ne = ne(&shape.dims());
                node = sys::ggml_reshape_4d(ctx, a, ne[0], ne[1], ne[2], ne[3]);
            }
            Call::Permute(i, n, raw) => {
                let (Some(a), Some(ctx)) = (t(*i), ctx_of(*i)) else {
                    return Replayed::NotComputed;
                };
                let [a0, a1, a2, a3] = crate::program::axes(*n, *raw).map(|x| x as i32);
                node = sys::ggml_permute(ctx, a, a0, a1, a2, a3);
            }
            Call::Transpose(i) => {
                let (Some(a), Some(ctx)) = (t(*i), ctx_of(*i)) else {
                    return Replayed::NotComputed;
                };
                node = sys::ggml_transpose(ctx, a);
            }
            Call::Cont(i) => {
                let (Some(a), Some(ctx)) = (t(*i), ctx_of(*i)) else {
                    return Replayed::NotComputed;
                };
                node = sys::ggml_cont(ctx, a);
            }
            Call::Cpy(i, j) => {
                let (Some(a), Some(b), Some(ctx)) = (t(*i), t(*j), ctx_of(*i)) else {
                    return Replayed::NotComputed;
                };
                node = sys::ggml_cpy(ctx, a, b);
            }
            Call::Binary(op, i, j) => {
                let (Some(a), Some(b), Some(ctx)) = (t(*i), t(*j), ctx_of(*i)) else {
                    return Replayed::NotComputed;
                };
                node = match op {
                    BinOp::Add => sys::ggml_add(ctx, a, b),
                    BinOp::Sub => sys::ggml_sub(ctx, a, b),
                    BinOp::Mul => sys::ggml_mul(ctx, a, b),
                    BinOp::Div => sys::ggml_div(ctx, a, b),
                };
            }
            Call::Scale(i, s) => {
                let (Some(a), Some(ctx)) = (t(*i), ctx_of(*i)) else {
                    return Replayed::NotComputed;
                };
                node = sys::ggml_scale(ctx, a, f32::from(*s) / 8.0);
            }
            Call::MulMat(i, j) => {
                let (Some(a), Some(b), Some(ctx)) = (t(*i), t(*j), ctx_of(*i)) else {
                    return Replayed::NotComputed;
                };
                node = sys::ggml_mul_mat(ctx, a, b);
            }
            Call::Op(n, picks, params) => {
                let decl = crate::op_decl(*n);
                let operands: Option<Vec<_>> =
                    picks[..decl.arity()].iter().map(|&i| t(i)).collect();
                let (Some(operands), Some(ctx)) = (operands, ctx_of(picks[0])) else {
                    return Replayed::NotComputed;
                };
                node = decl.build_raw(ctx, &operands, &params.get());
            }
            Call::Compute(first, more, threads) => {
                let nodes: Option<Vec<_>> = std::iter::once(first)
                    .chain(more.iter().take(2))
                    .map(|&i| t(i))
                    .collect();
                let Some(nodes) = nodes else {
                    return Replayed::NotComputed;
                };
                let threads = threads
                    .value()
                    .map_or(ggml::max_threads() as i32, |n| n as i32);
                compute(&nodes, threads);
                return Replayed::Computed;
            }
            Call::CopyFromArray(i, fill, _, imatrix) => {
                let Some(a) = t(*i) else {
                    return Replayed::NotComputed;
                };
                let ne = (*a).ne;
                let n: i64 = ne.iter().product();
                if n <= 0 || n > 1 << 16 {
                    return Replayed::NotComputed;
                }
                let values = fill.values(n as usize);
                let weights = imatrix.map(|m| m.values(ne[0] as usize));
                let w = weights.as_ref().map_or(std::ptr::null(), |w| w.as_ptr());
                sys::ggml_quantize_chunk(
                    (*a).type_,
                    values.as_ptr(),
                    (*a).data,
                    0,
                    n / ne[0],
                    ne[0],
                    w,
                );
                return Replayed::NotComputed;
            }
            Call::Convert(ty, len, row_len, fill, imatrix) => {
                let ty = ty.get(no_slow);
                let (len, row_len) = (usize::from(*len % 2048), usize::from(*row_len % 600));
                let src = fill.values(len);
                let rows = len.checked_div(row_len).unwrap_or(0);
                let mut dst = vec![0u8; ty.row_size(row_len).map_or(len, |r| r * rows) + 64];
                let weights = imatrix.map(|m| m.values(row_len));
                let w = weights.as_ref().map_or(std::ptr::null(), |w| w.as_ptr());
                sys::ggml_quantize_chunk(
                    ty.as_raw(),
                    src.as_ptr(),
                    dst.as_mut_ptr().cast(),
                    0,
                    rows as i64,
                    row_len as i64,
                    w,
                );
                return Replayed::NotComputed;
            }
            // The calls `applicable` lists as having no raw equivalent.
            _ => return Replayed::NoNode,
        }
        // An op node: compute it, if its context has memory for it.
        if node.is_null() {
            return Replayed::NoNode;
        }
        if (*node).data.is_null() {
            // A node of a `no_alloc` context: computable when it is no view
            // and its operands have host memory; give it memory of its own
            // (the child exits after the replay, so it is never freed).
            let srcs = (*node).src.iter().filter(|s| !s.is_null());
            let hosted = srcs.clone().all(|&s| !(*s).data.is_null());
            let size = sys::ggml_nbytes(node);
            if !(*node).view_src.is_null() || !hosted || size > 1 << 28 {
                return Replayed::NotComputed;
            }
            (*node).data = vec![0u8; size.max(1)].leak().as_mut_ptr().cast();
        }
        compute(&[node], 1);
        Replayed::Computed
    }
}
