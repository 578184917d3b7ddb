//! [`Scheduler`]: ggml's backend scheduler (`ggml_backend_sched`), which
//! splits a graph over several backends (a GPU and the CPU, say), places
//! each node where its memory is and where it is supported, copies tensors
//! between backends, and allocates every intermediate.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use super::buffer::check_placement;
use super::buffer::zero_buffers_of;
use super::raw::{self, RawSched, Sources};
use super::Backend;
use crate::context::{is_unplaced_root, now_placed, Deferred, Epoch, Lease};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::Tensor;
use crate::TensorData;

/// Backends a scheduler takes at most (`GGML_SCHED_MAX_BACKENDS`).
pub const MAX_BACKENDS: usize = 16;

/// The largest `graph_size` a scheduler takes: ggml allocates about 20 KiB
/// of bookkeeping per unit, without checking the allocation.
pub const MAX_GRAPH_SIZE: usize = 1 << 16;

/// The graph allocated now, and the sources ggml rewrote in it.
struct Allocated {
    graph: u64,
    /// The context's memory generation after allocating.
    generation: u64,
    /// Nodes whose sources ggml points at its copies: (node, copies, originals).
    rewrites: Vec<(NonNull<ggml_sys::ggml_tensor>, Sources, Sources)>,
}

/// Computes graphs over several backends, in priority order, the last being
/// the CPU.
///
/// The scheduler owns its backends. Tensors that already have memory (in a
/// buffer a context owns) are used where they are, and nodes that use them
/// run on a backend that can reach them; every other tensor is placed by
/// the scheduler in compute memory of the backend that computes it. As with
/// the [`GraphAllocator`](super::GraphAllocator), that memory is lent until
/// the scheduler allocates another graph (or this one again, after
/// another), and reached by copies.
///
/// A graph is allocated once and can then be computed many times; between
/// computations its inputs can be written (with
/// [`TensorData::copy_from_array`]). Inputs placed by the scheduler are
/// written after [`Scheduler::allocate`]; inputs in buffers of their own at
/// any time.
///
/// ggml's debugging variable `GGML_SCHED_DEBUG_REALLOC`, when set in the
/// environment, makes ggml abort on purpose when a graph needs new compute
/// memory; leave it unset.
pub struct Scheduler {
    raw: NonNull<ggml_sys::ggml_backend_sched>,
    backends: Vec<Backend>,
    graph_size: usize,
    epoch: Arc<Epoch>,
    allocated: Option<Allocated>,
    /// Compute buffer size per backend at the last allocation.
    sizes: Vec<usize>,
}

// SAFETY: the scheduler and its backends have no thread affinity; `&mut
// self` on every call that uses them keeps two threads apart; lent memory
// is guarded by the epoch.
unsafe impl Send for Scheduler {}

fn new_raw(backends: &[Backend], graph_size: usize) -> NonNull<ggml_sys::ggml_backend_sched> {
    // SAFETY: 1..=16 live backends, the last a CPU device (checked by the
    // caller), which the scheduler owns and frees after it; graph_size in
    // 1..=MAX_GRAPH_SIZE.
    unsafe { raw::new_sched(backends.iter().map(Backend::raw), graph_size) }
        .expect("ggml_backend_sched_new does not return NULL")
}

impl Scheduler {
    /// A scheduler over `backends` (highest priority first; the last must
    /// be a CPU backend, where unsupported nodes fall back), for graphs of
    /// up to `graph_size` tensors.
    ///
    /// # Errors
    /// [`Error::SchedulerBackends`] for 0 or more than [`MAX_BACKENDS`]
    /// backends, or a last one that is not the CPU;
    /// [`Error::GraphTooLarge`] for a `graph_size` of 0 or above
    /// [`MAX_GRAPH_SIZE`].
    pub fn new(backends: Vec<Backend>, graph_size: usize) -> Result<Scheduler> {
        crate::init::ensure()?;
        let count = backends.len();
        if count == 0 || count > MAX_BACKENDS {
            return Err(Error::SchedulerBackends {
                count,
                reason: "a scheduler takes 1 to 16 backends",
            });
        }
        if !backends[count - 1].is_cpu() {
            return Err(Error::SchedulerBackends {
                count,
                reason: "the last backend must be a CPU backend",
            });
        }
        if graph_size == 0 || graph_size > MAX_GRAPH_SIZE {
            return Err(Error::GraphTooLarge {
                tensors: graph_size,
                capacity: MAX_GRAPH_SIZE,
            });
        }
        Ok(Scheduler {
            raw: new_raw(&backends, graph_size),
            sizes: vec![0; count],
            backends,
            graph_size,
            epoch: Epoch::new(),
            allocated: None,
        })
    }

    /// The raw layer's handle of the scheduler.
    fn raw(&self) -> RawSched<'_> {
        // SAFETY: live until `self` is dropped (or replaced, which takes
        // `&mut self`), which the borrow outlasts.
        unsafe { RawSched::new(self.raw) }
    }

    /// Its backends, in priority order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Its backends, to change their settings (thread counts).
    pub fn backends_mut(&mut self) -> &mut [Backend] {
        &mut self.backends
    }

    /// Tensors a graph may have.
    pub fn graph_size(&self) -> usize {
        self.graph_size
    }

    /// Parts the last allocated graph was split into (one per change of
    /// backend along the graph).
    pub fn n_splits(&self) -> usize {
        self.raw().n_splits() as usize
    }

    /// Bytes of compute memory on backend `index`.
    pub fn buffer_size(&self, index: usize) -> Option<usize> {
        let backend = self.backends.get(index)?;
        // SAFETY: one of its backends.
        Some(unsafe { self.raw().buffer_size(backend.raw()) })
    }

    /// Splits `graph` over the backends and places every tensor of it that
    /// has no memory yet. Ends the lease of the graph allocated before.
    ///
    /// # Errors
    /// [`Error::GraphTooLarge`], [`Error::UnsupportedNode`] (no backend has
    /// a kernel for a node), [`Error::Unschedulable`] (a tensor in memory no
    /// backend that supports its use can reach, a tensor of an allocating
    /// context, an empty tensor without memory, a graph without nodes), [`Error::BufferAlloc`] (out of memory; the scheduler starts
    /// afresh), [`Error::Busy`].
    pub fn allocate(&mut self, graph: &Graph<'_>) -> Result<()> {
        self.allocate_with(graph, &[])
    }

    /// Like [`Scheduler::allocate`], with some nodes placed by hand: each
    /// `(node, index)` runs `node` on backend `index`.
    ///
    /// # Errors
    /// As [`Scheduler::allocate`], plus [`Error::SchedulerBackends`] for an
    /// index without a backend, [`Error::WrongContext`] for a node of
    /// another graph, and [`Error::UnsupportedNode`] for a node that
    /// backend cannot compute.
    pub fn allocate_with(
        &mut self,
        graph: &Graph<'_>,
        placement: &[(Tensor<'_>, usize)],
    ) -> Result<()> {
        crate::error::rpc::guard(|| self.allocate_with_inner(graph, placement))
    }

    /// The body of the function above.
    fn allocate_with_inner(
        &mut self,
        graph: &Graph<'_>,
        placement: &[(Tensor<'_>, usize)],
    ) -> Result<()> {
        for (node, index) in placement {
            let Some(backend) = self.backends.get(*index) else {
                return Err(Error::SchedulerBackends {
                    count: self.backends.len(),
                    reason: "a node is placed on a backend the scheduler does not have",
                });
            };
            if !graph.tensors().any(|t| t == *node) {
                return Err(Error::WrongContext {
                    what: "a placed node (not in the graph)",
                });
            }
            if node.op() != ggml_sys::GGML_OP_NONE {
                crate::backend::check_graph_node(node, backend)?;
            }
        }
        let epoch = self.epoch.clone();
        let (guard, at) = epoch.advance()?;
        self.allocated = None;
        let ctx = graph.context();
        ctx.sweep();
        self.precheck(graph)?;
        let nodes: Vec<Tensor<'_>> = graph
            .tensors()
            .filter(|t| t.op() != ggml_sys::GGML_OP_NONE)
            .collect();
        let originals: Vec<Sources> = nodes.iter().map(raw::sources).collect();
        let pending: Vec<Tensor<'_>> = graph
            .tensors()
            // SAFETY: live tensors.
            .filter(|t| unsafe { is_unplaced_root(t.as_ptr()) })
            .collect();
        // Leaves a computing node (not a view) reads directly get their
        // backend from it; ggml leaves the others (unused, or used only
        // through views) without one, and then asserts (`buffer_id >= 0`,
        // ggml-alloc.c) placing them: flagged as inputs, they go to the
        // last (CPU) backend.
        let is_view = crate::ops::contents::is_view_op;
        let read_directly: std::collections::HashSet<*mut ggml_sys::ggml_tensor> = nodes
            .iter()
            .filter(|n| !is_view(n.op()))
            .flat_map(|n| (0..ggml_sys::GGML_MAX_SRC as usize).filter_map(move |i| n.src(i)))
            .map(|t| t.as_ptr())
            .collect();
        for t in pending.iter().filter(|t| t.op() == ggml_sys::GGML_OP_NONE) {
            // SAFETY: a live tensor, no reference to whose flags is alive. An
            // input keeps its value (ggml would otherwise let an in-place op
            // overwrite it).
            unsafe {
                t.raw().set_output();
                if !read_directly.contains(&t.as_ptr()) {
                    raw::set_input(t);
                }
            }
        }
        // SAFETY: a live scheduler, reset first (ggml's allocation does not
        // reset, and a stale assignment table can overflow its hash set); a
        // graph that passed every check `precheck` lists; placements of its
        // own nodes (no new hash entries) on backends that support them.
        //
        // The plan is made for this very graph first (`reserve`): ggml's
        // allocator reuses its last plan when node and leaf counts match and
        // the nodes fit, without checking the leaves, and would place a leaf
        // the old plan had as external at `buffers[-1]`. Splitting rewrites
        // the graph's sources to copies in a context the next split frees:
        // they are restored in between.
        let restore = || {
            for (node, original) in nodes.iter().zip(&originals) {
                // SAFETY: a live node; its source array is written back.
                unsafe { raw::set_sources(node.as_ptr(), original) };
            }
        };
        let place = |sched: RawSched<'_>| {
            for (node, index) in placement {
                // SAFETY: one of its backends; a node of the graph (no new
                // hash entry).
                unsafe { sched.set_tensor_backend(node, self.backends[*index].raw()) };
            }
        };
        let sched = self.raw();
        sched.reset();
        place(sched);
        // SAFETY: as above.
        let reserved = unsafe { sched.reserve(graph) };
        restore();
        let ok = reserved && {
            sched.reset();
            place(sched);
            // SAFETY: as above.
            unsafe { sched.alloc_graph(graph) }
        };
        // ggml points sources at its copies (in its own context): keep them
        // for computing, and give the graph back its own.
        let mut rewrites = Vec::new();
        for (node, original) in nodes.iter().zip(&originals) {
            let now = raw::sources(node);
            if now != *original {
                rewrites.push((NonNull::new(node.as_ptr()).expect("live"), now, *original));
                // SAFETY: a live node; its source array is written back.
                unsafe { raw::set_sources(node.as_ptr(), original) };
            }
        }
        let placed = now_placed(&pending);
        if !ok {
            ctx.unplace(placed);
            // ggml's allocator may now hold plans for buffers it lacks.
            // SAFETY: the old scheduler, freed once; no lease of it is left.
            unsafe { raw::free_sched(self.raw) };
            self.raw = new_raw(&self.backends, self.graph_size);
            self.sizes.iter_mut().for_each(|s| *s = 0);
            return Err(Error::BufferAlloc {
                buffer_type: "the scheduler's compute".into(),
                size: 0,
                detail: " for a graph's intermediates".into(),
            });
        }
        for i in 0..self.backends.len() {
            let size = self.buffer_size(i).unwrap_or(0);
            if size != self.sizes[i] {
                self.sizes[i] = size;
                // SAFETY: one of its backends.
                let buft = unsafe { self.raw().buffer_type(self.backends[i].raw()) };
                if let Some(buft) = buft {
                    zero_buffers_of(&placed, Some(buft));
                }
            }
        }
        ctx.add_lease(Lease {
            epoch: self.epoch.clone(),
            at,
            roots: placed,
        });
        self.allocated = Some(Allocated {
            graph: graph.id(),
            generation: ctx.memory_generation(),
            rewrites,
        });
        drop(guard);
        Ok(())
    }

    /// Checks what ggml's scheduler asserts on, before it can.
    fn precheck(&self, graph: &Graph<'_>) -> Result<()> {
        let ctx = graph.context();
        let tensors: Vec<Tensor<'_>> = graph.tensors().collect();
        // ggml's hash set holds the graph's tensors plus a NULL key.
        if tensors.len() + 2 > self.graph_size {
            return Err(Error::GraphTooLarge {
                tensors: tensors.len(),
                capacity: self.graph_size.saturating_sub(2),
            });
        }
        if graph.n_nodes() == 0 {
            return Err(Error::Unschedulable {
                name: String::new(),
                reason: "the graph has no nodes to compute".into(),
            });
        }
        ctx.pinned(|| {
            for t in &tensors {
                let (root, _) = t.memory_root();
                let memory = raw::tensor_memory(&root);
                if memory.has_data && !memory.has_buffer {
                    return Err(Error::Unschedulable {
                        name: t.name(),
                        reason: "it is in an allocating context's arena; the scheduler needs \
                                 tensors in backend memory (a no_alloc context and \
                                 Context::allocate)"
                            .into(),
                    });
                }
                if !memory.has_data && !memory.has_buffer && t.nbytes() == 0 && root == *t {
                    // A backend given only empty tensors gets a buffer of
                    // size 0 at address NULL; ggml then asserts
                    // (`tensor->buffer == NULL`) placing one twice.
                    return Err(Error::Unschedulable {
                        name: t.name(),
                        reason: "an empty tensor without memory (the scheduler cannot place \
                                 empty tensors)"
                            .into(),
                    });
                }
                let is_leaf = t.op() == ggml_sys::GGML_OP_NONE;
                if !is_leaf {
                    self.check_node(t)?;
                }
                // SAFETY: live tensors (swept, pinned), and so their buffers.
                if let Some(buffer) = unsafe { raw::buffer_of(root.as_ptr()) } {
                    let buft = buffer.buffer_type();
                    let reachable = self.backends.iter().any(|b| {
                        buft.is_some_and(|buft| b.raw().supports_buft(buft))
                            && (is_leaf || {
                                // SAFETY: a node whose sources and their
                                // buffers are live (pinned).
                                unsafe { b.raw().supports_op(t) }
                            })
                    });
                    if !reachable {
                        return Err(Error::Unschedulable {
                            name: t.name(),
                            reason: "no backend of the scheduler can both reach its memory and \
                                     compute it"
                                .into(),
                        });
                    }
                }
            }
            // ggml sums sizes unchecked; a backend's buffer may hold every
            // tensor that owns memory plus a copy of each as a split input.
            for b in &self.backends {
                check_placement(
                    b.buffer_type(),
                    tensors
                        .iter()
                        .copied()
                        .filter(|t| !raw::tensor_memory(t).is_view),
                    2,
                )?;
            }
            Ok(())
        })
    }

    /// A node must be supported by some backend; a CPU backend that claims
    /// it must also have the kernels (ggml's CPU `supports_op` is optimistic).
    fn check_node(&self, t: &Tensor<'_>) -> Result<()> {
        let mut supported = false;
        for b in &self.backends {
            // SAFETY: a node with live sources (pinned).
            if unsafe { b.raw().supports_op(t) } {
                if b.is_cpu() {
                    crate::ops::check_node(t, crate::ops::Kernels::Cpu)?;
                }
                supported = true;
            }
        }
        if supported {
            Ok(())
        } else {
            Err(super::compute::no_kernel(
                t,
                "any backend of the scheduler".into(),
            ))
        }
    }

    /// Computes `graph`, allocating it first unless it is the graph
    /// allocated last.
    ///
    /// # Errors
    /// As [`Scheduler::allocate`], plus [`Error::WrongContext`],
    /// [`Error::Compute`], and [`Error::Rpc`] when an RPC worker fails
    /// (feature `rpc`).
    pub fn compute<'ctx>(
        &mut self,
        graph: &Graph<'ctx>,
        data: &mut TensorData<'ctx>,
    ) -> Result<()> {
        graph.check_token(data)?;
        if self
            .allocated
            .as_ref()
            .is_none_or(|a| a.graph != graph.id())
        {
            self.allocate(graph)?;
        }
        let allocated = self.allocated.as_ref().expect("allocated above");
        let ctx = graph.context();
        let status = crate::error::rpc::guard(|| {
            ctx.pinned(|| {
                if ctx.memory_generation() != allocated.generation {
                    // Tensors of the graph placed by another allocator may have
                    // lost their memory since.
                    for t in graph.tensors() {
                        if !t.is_empty() && ctx.place(&t) == crate::context::Place::Nowhere {
                            return Err(Error::NoData { name: t.name() });
                        }
                    }
                }
                // Indices are read from the graph's own tensors, before the
                // scheduler's copies take their place.
                graph.check_indices()?;
                for (node, copies, _) in &allocated.rewrites {
                    // SAFETY: a live node of the graph; the copies live in the
                    // scheduler's context until it allocates again (`&mut self`).
                    unsafe { raw::set_sources(node.as_ptr(), copies) };
                }
                // SAFETY: a live scheduler whose allocated graph is `graph` (the
                // one ggml computes, whatever it is passed), alive and pinned;
                // no view is alive (the token is borrowed mutably).
                let status = unsafe { self.raw().graph_compute(graph) };
                for (node, _, original) in &allocated.rewrites {
                    // SAFETY: as above.
                    unsafe { raw::set_sources(node.as_ptr(), original) };
                }
                Ok(status)
            })
            .and_then(super::compute::status_result)
        });
        status?;
        match ctx.take_custom_panic() {
            Some(panic) => Err(panic),
            None => Ok(()),
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let sched = self.raw;
        let backends = std::mem::take(&mut self.backends);
        // As GraphAllocator's drop; the backends go after the scheduler.
        self.epoch.retire(Deferred(Box::new(move || {
            // SAFETY: a live scheduler, freed once, before its backends, with
            // every lease ended; no graph holds its copies (restored after
            // each computation).
            unsafe {
                RawSched::new(sched).synchronize();
                raw::free_sched(sched);
            }
            drop(backends);
        })));
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("backends", &self.backends)
            .field("graph_size", &self.graph_size)
            .finish()
    }
}
