//! Computing anywhere: devices, backends, backend memory, the graph
//! allocator and the scheduler (ggml's `ggml-backend.h` and `ggml-alloc.h`).
//!
//! ```
//! use ggml::backend::{Backend, Device, GraphAllocator};
//! use ggml::ndarray::{array, Ix2};
//! use ggml::{Context, Type};
//!
//! # fn main() -> ggml::Result<()> {
//! // The CPU here; `Device::gpu()?` (with the `cuda`, `metal` or `vulkan`
//! // feature) runs the same program on a GPU.
//! let mut backend = Backend::new(Device::cpu()?)?;
//!
//! // Weights: a no_alloc context placed in one buffer of the backend's
//! // memory, which the context owns.
//! let ctx = Context::new_no_alloc(1 << 20)?;
//! let w = ctx.new_tensor(Type::F16, &[2, 3])?;
//! let x = ctx.new_tensor(Type::F32, &[1, 3])?;
//! ctx.allocate(backend.buffer_type())?;
//!
//! // The computation: intermediates are placed by the graph allocator.
//! let y = ctx.mul_mat(w, x)?; // [1, 2]
//! let graph = ctx.build_graph(&[y])?;
//! let mut allocator = GraphAllocator::for_backend(&backend)?;
//! allocator.allocate(&graph)?;
//!
//! let mut data = ctx.data()?;
//! data.copy_from_array(w, &array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]])?; // to f16
//! for step in 0..3 {
//!     data.copy_from_array(x, &array![[1.0f32, 0.0, step as f32]])?;
//!     backend.compute(&graph, &mut data)?;
//!     let out = data.to_array_as::<f32, Ix2>(y)?;
//!     assert_eq!(out, array![[1.0 + 3.0 * step as f32, 4.0 + 6.0 * step as f32]]);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Which path when
//!
//! - **An allocating [`Context`](crate::Context) and
//!   [`Graph::compute`](crate::Graph::compute)**: tensors in the context's
//!   arena, computed by ggml's CPU code directly. The least overhead on the
//!   CPU, zero-copy views of every tensor; you size the arena.
//! - **A backend**: the same graphs on any device. Tensors live in backend
//!   memory ([`Context::allocate`](crate::Context::allocate)); a
//!   [`GraphAllocator`] places intermediates. Data moves by copies (with the
//!   usual conversions); tensors in host memory the context owns (the CPU's
//!   buffers) can still be viewed.
//! - **A [`Scheduler`]**: one graph over several backends (a GPU and the
//!   CPU), each node where its weights are or where it is supported, with
//!   the copies between them made for you.
//!
//! # Safety
//!
//! ggml asserts (aborting the process) on many misuses of these APIs and
//! leaves tensors pointing into freed memory when a buffer or allocator
//! goes away. Here: every node is checked against the backend that runs it
//! before anything is computed; tensors' memory is checked to be usable by
//! that backend; buffers a context owns live as long as the context; memory
//! an allocator lends is tracked, pinned while used and forgotten (the
//! tensors read as unallocated) when the allocator moves on; a scheduler
//! restores the graph it rewrites. See the source next to each call for the
//! ggml assertion it prevents.

mod alloc;
mod buffer;
mod compute;
mod device;
mod event;
mod raw;
#[cfg(feature = "rpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "rpc")))]
pub mod rpc;
mod sched;

pub use alloc::GraphAllocator;
pub use buffer::BufferType;
pub(crate) use compute::check_graph_node;
pub use compute::{Backend, Compute, Pending};
pub use device::{devices, Device, DeviceCaps, DeviceMemory, DeviceType};
pub use event::Event;
pub use sched::{Scheduler, MAX_BACKENDS, MAX_GRAPH_SIZE};
