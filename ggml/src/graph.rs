//! Computation graphs: built from output tensors, sized exactly from the
//! tensors they reach. Computing them is the backends' job
//! ([`crate::backend`]; [`Graph::compute`] is the CPU convenience there).

use std::cell::Cell;
use std::collections::HashSet;
use std::ptr::NonNull;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::raw::RawGraph;
use crate::size;
use crate::tensor::Tensor;
use crate::TensorData;

/// A forward computation graph in a [`Context`].
pub struct Graph<'ctx> {
    raw: NonNull<ggml_sys::ggml_cgraph>,
    ctx: &'ctx Context,
    capacity: usize,
    /// Every tensor of the graph, sources before their users.
    tensors: Vec<*mut ggml_sys::ggml_tensor>,
    /// The computer (0: the direct CPU path, else a device) and context
    /// memory generation for which every check passed: node kernels and
    /// layouts cannot change once made, tensors' memory changes only with
    /// the generation.
    checked: Cell<Option<(usize, u64)>>,
    /// Unique per graph of the process (the scheduler's bookkeeping).
    id: u64,
    /// Nodes whose operands' contents are checked before each computation.
    index_checks: Vec<crate::ops::contents::ContentCheck>,
}

/// Hashes tensor addresses with one multiply (SipHash's DoS resistance buys
/// nothing for pointers).
#[derive(Default)]
struct PointerHasher(u64);

impl std::hash::Hasher for PointerHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 ^ (n as u64 >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PointerSet = HashSet<*mut ggml_sys::ggml_tensor, std::hash::BuildHasherDefault<PointerHasher>>;

/// log2 of the bitmap's granule: the largest power of two not above the size
/// of a tensor, so two distinct tensors (which never overlap) fall in distinct
/// granules.
const GRANULE_SHIFT: u32 =
    usize::BITS - 1 - std::mem::size_of::<ggml_sys::ggml_tensor>().leading_zeros();

/// Above this many bytes of bitmap (a context using 32 GiB), a hash set.
const MAX_BITMAP_BYTES: usize = 16 << 20;

/// The tensors a graph walk has visited.
///
/// The tensors of a context lie in its arena, so a bitmap over the arena's
/// used bytes, one bit per granule, marks them with a shift and an OR (W1 graph
/// building, BENCHMARKS.md: 1.8x the C program with a hash set, 1.3x with this).
/// The bitmap is allocated zeroed (`calloc`), so a large arena costs only the
/// pages a walk touches. Addresses outside the arena (none, unless raw code
/// rewired a source) and huge arenas go to a hash set.
struct Visited {
    base: usize,
    bits: Vec<u64>,
    others: PointerSet,
}

impl Visited {
    fn new(ctx: &Context) -> Self {
        Self::with_bitmap_limit(ctx, MAX_BITMAP_BYTES)
    }

    fn with_bitmap_limit(ctx: &Context, max_bitmap_bytes: usize) -> Self {
        // A live context's buffer is fixed for its lifetime.
        let base = ctx.raw().mem_buffer() as usize;
        let granules = (ctx.used_mem() >> GRANULE_SHIFT) + 1;
        let words = granules.div_ceil(64);
        let words = if words * 8 <= max_bitmap_bytes {
            words
        } else {
            0
        };
        Visited {
            base,
            bits: vec![0; words],
            others: PointerSet::default(),
        }
    }

    /// The bitmap word and bit of `node`, if the bitmap covers it.
    fn slot(&self, node: *mut ggml_sys::ggml_tensor) -> Option<(usize, u64)> {
        let granule = (node as usize).checked_sub(self.base)? >> GRANULE_SHIFT;
        (granule / 64 < self.bits.len()).then_some((granule / 64, 1 << (granule % 64)))
    }

    /// Marks `node`; false if it was marked already.
    fn insert(&mut self, node: *mut ggml_sys::ggml_tensor) -> bool {
        match self.slot(node) {
            Some((word, bit)) => {
                let fresh = self.bits[word] & bit == 0;
                self.bits[word] |= bit;
                fresh
            }
            None => self.others.insert(node),
        }
    }

    fn contains(&self, node: *mut ggml_sys::ggml_tensor) -> bool {
        match self.slot(node) {
            Some((word, bit)) => self.bits[word] & bit != 0,
            None => self.others.contains(&node),
        }
    }
}

/// Every tensor reachable from `outputs` through sources, parents first
/// (iterative: graphs of 100,000 nodes must not overflow the stack).
fn post_order(ctx: &Context, outputs: &[Tensor<'_>]) -> Vec<*mut ggml_sys::ggml_tensor> {
    post_order_with(Visited::new(ctx), outputs)
}

fn post_order_with(
    mut visited: Visited,
    outputs: &[Tensor<'_>],
) -> Vec<*mut ggml_sys::ggml_tensor> {
    let mut order = Vec::new();
    let mut stack: Vec<(*mut ggml_sys::ggml_tensor, bool)> =
        outputs.iter().rev().map(|t| (t.as_ptr(), false)).collect();
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            order.push(node);
            continue;
        }
        if !visited.insert(node) {
            continue;
        }
        stack.push((node, true));
        // SAFETY: `node` is a live tensor of the context (sources of tensors of
        // a context live in the same context).
        let srcs = unsafe { (*node).src };
        for &src in srcs.iter().rev() {
            if !src.is_null() && !visited.contains(src) {
                stack.push((src, false));
            }
        }
    }
    order
}

impl Context {
    /// A graph that computes `outputs` and everything they depend on.
    ///
    /// The graph is sized from the tensors it reaches, so it holds any number
    /// of nodes the context has memory for (ggml's default of 2048 does not apply).
    ///
    /// # Errors
    /// [`Error::WrongContext`] for an output of another context,
    /// [`Error::OutOfMemory`] when the context has no room for the graph.
    pub fn build_graph<'a>(&'a self, outputs: &[Tensor<'a>]) -> Result<Graph<'a>> {
        for t in outputs {
            self.owns(t, "a graph output")?;
        }
        for t in outputs {
            // SAFETY: a live tensor of this context. Flagged, an output keeps
            // its value when an allocator reuses intermediates' memory.
            unsafe { t.raw().set_output() };
        }
        let order = post_order(self, outputs);
        let capacity = order.len().max(1);
        self.reserve(size::graph_bytes(capacity), || {
            format!("a graph of {capacity} nodes")
        })?;
        // SAFETY: live context with room for the graph (checked exactly as
        // ggml_new_object does, so ggml does not fail to allocate it).
        let raw = unsafe { self.raw().new_graph(capacity) }.ok_or(Error::OutOfMemory {
            what: format!("a graph of {capacity} nodes"),
            needed: size::graph_bytes(capacity).unwrap_or(usize::MAX),
            available: self.free_mem(),
            mem_size: self.mem_size(),
        })?;
        // SAFETY: a graph of this context, which `self` keeps alive.
        let handle = unsafe { RawGraph::new(raw) };
        let mut ruled = false;
        for &node in &order {
            // SAFETY: a live tensor of the context; a field read, here where
            // the node is in cache anyway (a second pass over a large graph
            // is not free).
            ruled |= crate::ops::contents::has_rule(unsafe { (*node).op });
            // SAFETY: parents come first, so each call visits one new node
            // (shallow recursion in ggml); the graph has room for all of them.
            unsafe { handle.expand(node) };
        }
        let index_checks = if ruled {
            crate::ops::contents::plan(self, &order)
        } else {
            Vec::new()
        };
        Ok(Graph {
            raw,
            ctx: self,
            capacity,
            index_checks,
            tensors: order,
            checked: Cell::new(None),
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        })
    }
}

impl<'ctx> Graph<'ctx> {
    /// Checks the contents that nodes of the graph need checked (the
    /// indices of `get_rows`, ...; see `ops::contents`): before every
    /// computation, with the memory pinned and the data token held by the
    /// caller.
    pub(crate) fn check_indices(&self) -> Result<()> {
        if self.index_checks.is_empty() {
            return Ok(());
        }
        crate::ops::contents::check(self.ctx, &self.index_checks)
    }

    /// The raw graph, for calls into `ggml-sys`.
    pub fn as_ptr(&self) -> *mut ggml_sys::ggml_cgraph {
        self.raw.as_ptr()
    }

    /// Number of nodes (computed tensors).
    pub fn n_nodes(&self) -> usize {
        // SAFETY: a graph of a context `'ctx` keeps alive.
        unsafe { RawGraph::new(self.raw) }.n_nodes()
    }

    /// Nodes and leaves the graph was sized for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The context the graph is in.
    pub(crate) fn context(&self) -> &'ctx Context {
        self.ctx
    }

    /// Every tensor of the graph, sources before their users.
    pub(crate) fn tensors(&self) -> impl Iterator<Item = Tensor<'ctx>> + '_ {
        self.tensors
            .iter()
            .filter_map(|&raw| NonNull::new(raw))
            // Every tensor of the graph was made by this crate in this context.
            .map(|raw| Tensor::from_made(self.ctx, raw))
    }

    /// Unique per graph of the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn checked_for(&self) -> Option<(usize, u64)> {
        self.checked.get()
    }

    pub(crate) fn set_checked_for(&self, key: (usize, u64)) {
        self.checked.set(Some(key));
    }

    /// Checks that `data` is the token of the graph's context.
    pub(crate) fn check_token(&self, data: &TensorData<'_>) -> Result<()> {
        if std::ptr::eq(data.context(), self.ctx) {
            Ok(())
        } else {
            Err(Error::WrongContext {
                what: "the tensor data token",
            })
        }
    }
}

impl std::fmt::Debug for Graph<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("n_nodes", &self.n_nodes())
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Type;

    /// A DAG with shared nodes: `x[i+1] = x[i] + x[i]`, plus a side branch.
    fn dag(ctx: &Context) -> Result<Vec<Tensor<'_>>> {
        let mut x = ctx.new_tensor(Type::F32, &[4])?;
        let side = ctx.mul(x, x)?;
        for _ in 0..40 {
            x = ctx.add(x, x)?;
        }
        Ok(vec![x, ctx.sub(side, side)?])
    }

    #[test]
    fn bitmap_and_hash_set_walks_agree() -> Result<()> {
        let ctx = Context::new(1 << 20)?;
        let outputs = dag(&ctx)?;
        let with_bitmap = post_order(&ctx, &outputs);
        let with_set = post_order_with(Visited::with_bitmap_limit(&ctx, 0), &outputs);
        assert_eq!(with_bitmap, with_set);
        // 1 leaf, 40 adds, mul, sub: each once, sources before their users.
        assert_eq!(with_bitmap.len(), 43);
        for (i, &node) in with_bitmap.iter().enumerate() {
            // SAFETY: live tensors of `ctx`.
            let srcs = unsafe { (*node).src };
            for src in srcs.iter().filter(|s| !s.is_null()) {
                assert!(with_bitmap[..i].contains(src), "source after its user");
            }
        }
        Ok(())
    }

    #[test]
    fn addresses_outside_the_arena_go_to_the_set() -> Result<()> {
        let ctx = Context::new(1 << 16)?;
        let t = ctx.new_tensor(Type::F32, &[4])?;
        let mut visited = Visited::new(&ctx);
        assert!(!visited.bits.is_empty());
        let below = (visited.base - 4096) as *mut ggml_sys::ggml_tensor;
        let above = (visited.base + (1 << 30)) as *mut ggml_sys::ggml_tensor;
        for p in [t.as_ptr(), below, above] {
            assert!(!visited.contains(p));
            assert!(visited.insert(p));
            assert!(!visited.insert(p));
            assert!(visited.contains(p));
        }
        assert_eq!(visited.others.len(), 2);
        Ok(())
    }

    #[test]
    fn distinct_tensors_get_distinct_bits() -> Result<()> {
        let ctx = Context::new_no_alloc(1 << 20)?;
        let tensors = (0..200)
            .map(|_| ctx.new_tensor(Type::F32, &[1]))
            .collect::<Result<Vec<_>>>()?;
        let mut visited = Visited::new(&ctx);
        for t in &tensors {
            assert!(visited.insert(t.as_ptr()));
        }
        assert!(visited.others.is_empty());
        let marked: u32 = visited.bits.iter().map(|w| w.count_ones()).sum();
        assert_eq!(marked, 200);
        Ok(())
    }
}
