//! [`GraphAllocator`]: ggml's graph allocator (`ggml_gallocr`), which places
//! the tensors of a graph that have no memory yet in one compute buffer,
//! reusing memory between intermediates whose lifetimes do not overlap.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use super::buffer::{check_placement, zero_buffers_of};
use super::raw::{self, RawGallocr};
use super::{Backend, BufferType};
use crate::context::{now_placed, Deferred, Epoch, Lease};
use crate::error::{Error, Result};
use crate::graph::Graph;

/// Places a graph's intermediate tensors in a compute buffer it owns, sized
/// for the largest graph it has seen, so arenas need not be sized by hand.
///
/// Tensors that already have memory (weights and inputs in a buffer the
/// context owns, say) are used where they are. The memory it lends is
/// valid until it allocates again (any graph), is
/// [reserved](GraphAllocator::reserve) or is dropped; then the tensors it
/// placed read as unallocated, and a later [`allocate`](Self::allocate)
/// places them again. Their data is reached by copies
/// ([`TensorData::to_array`](crate::TensorData::to_array)), not views.
///
/// Non-output intermediates share memory: after a computation only the
/// graph's outputs, leaves and tensors flagged as outputs hold their values.
pub struct GraphAllocator {
    raw: NonNull<ggml_sys::ggml_gallocr>,
    buffer_type: BufferType,
    epoch: Arc<Epoch>,
    size: usize,
}

// SAFETY: a gallocr has no thread affinity; `&mut self` on every call keeps
// two threads from using it at once; the memory it lends is guarded by its
// epoch, which is thread-safe.
unsafe impl Send for GraphAllocator {}

fn new_raw(buffer_type: BufferType) -> Result<NonNull<ggml_sys::ggml_gallocr>> {
    raw::new_gallocr(buffer_type.raw()).ok_or_else(|| Error::BufferAlloc {
        buffer_type: buffer_type.name(),
        size: 0,
        detail: " (graph allocator)".into(),
    })
}

impl GraphAllocator {
    /// An allocator whose compute buffer is of `buffer_type`.
    ///
    /// # Errors
    /// [`Error::BufferAlloc`] when its bookkeeping cannot be allocated.
    pub fn new(buffer_type: BufferType) -> Result<Self> {
        crate::init::ensure()?;
        Ok(GraphAllocator {
            raw: new_raw(buffer_type)?,
            buffer_type,
            epoch: Epoch::new(),
            size: 0,
        })
    }

    /// An allocator for graphs `backend` computes (its default memory).
    ///
    /// # Errors
    /// As [`GraphAllocator::new`].
    pub fn for_backend(backend: &Backend) -> Result<Self> {
        GraphAllocator::new(backend.buffer_type())
    }

    /// The raw layer's handle of the allocator.
    fn raw(&self) -> RawGallocr<'_> {
        // SAFETY: live until `self` is dropped (or replaced, which takes
        // `&mut self`), which the borrow outlasts.
        unsafe { RawGallocr::new(self.raw) }
    }

    /// The compute buffer's memory.
    pub fn buffer_type(&self) -> BufferType {
        self.buffer_type
    }

    /// Bytes of the compute buffer now.
    pub fn buffer_size(&self) -> usize {
        self.raw().buffer_size()
    }

    /// Sizes the compute buffer for `graph` (the largest of a family of
    /// graphs, say) without placing anything, so later allocations of
    /// graphs no larger do not reallocate. Ends the lease of earlier
    /// allocations.
    ///
    /// # Errors
    /// [`Error::BufferAlloc`] (out of memory: the allocator starts afresh),
    /// [`Error::Busy`] (called while this thread uses the allocator's memory).
    pub fn reserve(&mut self, graph: &Graph<'_>) -> Result<()> {
        self.check_size(graph)?;
        let epoch = self.epoch.clone();
        let (guard, _) = epoch.advance()?;
        let ok = self.raw().reserve(graph);
        let result = if ok { Ok(()) } else { Err(self.restart()) };
        self.size = self.buffer_size();
        drop(guard);
        result
    }

    /// Places every tensor of `graph` that has no memory yet in the compute
    /// buffer (growing it if needed), and returns the buffer's size. Ends
    /// the lease of earlier allocations (of this graph too: allocating a
    /// graph again re-places it).
    ///
    /// # Errors
    /// [`Error::BufferAlloc`] (out of memory: the graph stays unallocated
    /// and the allocator starts afresh), [`Error::Busy`] (called while this
    /// thread uses the allocator's memory, from an abort callback, say).
    pub fn allocate(&mut self, graph: &Graph<'_>) -> Result<usize> {
        crate::error::rpc::guard(|| self.allocate_inner(graph))
    }

    /// The body of the function above.
    fn allocate_inner(&mut self, graph: &Graph<'_>) -> Result<usize> {
        self.check_size(graph)?;
        let epoch = self.epoch.clone();
        let (guard, at) = epoch.advance()?;
        let ctx = graph.context();
        ctx.sweep();
        let mut pending = Vec::new();
        for t in graph.tensors() {
            let memory = raw::tensor_memory(&t);
            if memory.is_view {
                continue;
            }
            if !memory.has_data && memory.has_buffer {
                // Another allocator's empty tensor: ggml would assert that it
                // has no buffer.
                return Err(Error::Busy {
                    what: "an empty tensor of the graph holds memory of another allocator",
                });
            }
            if !memory.has_data {
                if t.op() == ggml_sys::GGML_OP_NONE {
                    // SAFETY: a live tensor, no reference to whose flags is
                    // alive. An input keeps its value: ggml would otherwise
                    // let an in-place op overwrite it.
                    unsafe { t.raw().set_output() };
                }
                pending.push(t);
            }
        }
        if !pending.is_empty() && pending.iter().all(|t| t.nbytes() == 0) {
            // Only empty tensors to place: ggml would put them in a buffer
            // of size 0 at address NULL, and then assert (`tensor->buffer ==
            // NULL`, ggml-backend.cpp) when a tensor appears twice in the
            // graph. Empty tensors need no memory.
            drop(guard);
            return Ok(self.buffer_size());
        }
        // Planned for this very graph first: ggml reuses the last plan when
        // the node and leaf counts match and the nodes fit, without checking
        // the leaves, and places a leaf the old plan had as external at
        // `buffers[-1]` (a wild pointer).
        let galloc = self.raw();
        let ok = galloc.reserve(graph) && {
            // SAFETY: planned for this graph just now; a graph of this crate,
            // whose view sources are all in it; its unallocated tensors have
            // neither data nor buffer; its sizes checked (`check_size`).
            unsafe { galloc.alloc_graph(graph) }
        };
        let placed = now_placed(&pending);
        if !ok {
            ctx.unplace(placed);
            return Err(self.restart());
        }
        let size = self.buffer_size();
        if size != self.size {
            zero_buffers_of(&placed, None);
            self.size = size;
        }
        ctx.add_lease(Lease {
            epoch: self.epoch.clone(),
            at,
            roots: placed,
        });
        drop(guard);
        Ok(size)
    }

    /// Refuses graphs whose tensors' sizes add up to more than ggml's
    /// planner can count (it could need them all at once).
    fn check_size(&self, graph: &Graph<'_>) -> Result<()> {
        check_placement(
            self.buffer_type,
            // Every tensor that owns memory: the ones placed by this
            // allocator before are placed again.
            graph.tensors().filter(|t| !raw::tensor_memory(t).is_view),
            1,
        )
    }

    /// After a failed reserve or allocation ggml's allocator may hold plans
    /// for buffers it no longer has: start a fresh one.
    fn restart(&mut self) -> Error {
        let size = self.buffer_size();
        if let Ok(fresh) = new_raw(self.buffer_type) {
            // SAFETY: the old allocator, freed once; its leases ended (the
            // caller holds the advanced epoch).
            unsafe { raw::free_gallocr(self.raw) };
            self.raw = fresh;
        }
        self.size = 0;
        Error::BufferAlloc {
            buffer_type: self.buffer_type.name(),
            size,
            detail: " for a graph's intermediates".into(),
        }
    }
}

impl Drop for GraphAllocator {
    fn drop(&mut self) {
        let galloc = self.raw;
        // Freed once no context uses the memory: now, or (dropped from
        // inside a computation on this thread) when that computation ends.
        self.epoch.retire(Deferred(Box::new(move || {
            // SAFETY: a live allocator, freed once, with every lease ended.
            unsafe { raw::free_gallocr(galloc) }
        })));
    }
}

impl fmt::Debug for GraphAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphAllocator")
            .field("buffer_type", &self.buffer_type)
            .field("buffer_size", &self.buffer_size())
            .finish()
    }
}
