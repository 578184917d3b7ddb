//! Safe, idiomatic Rust for [ggml](https://github.com/ggml-org/ggml), the tensor
//! library of llama.cpp: contexts, tensors, graphs computed on the CPU or on
//! any backend ([`backend`]: GPUs, the scheduler, other machines' devices
//! with the `rpc` feature), every tensor type,
//! zero-copy `ndarray` views and copies that convert and (de)quantize.
//!
//! The package is `ggml-2` on crates.io (the name `ggml` belongs to another,
//! archived project); the library is `ggml`:
//! `ggml = { package = "ggml-2", version = "0.1" }`. Arrays are those of the
//! ndarray this crate re-exports as [`ggml::ndarray`](ndarray) (0.17), so that
//! versions never clash.
//!
//! ```
//! use ggml::ndarray::{array, Array};
//! use ggml::{Context, Type};
//!
//! # fn main() -> ggml::Result<()> {
//! let ctx = Context::new(16 << 20)?;
//! // A quantized tensor plus an f32 one, as in ggml's Python example.
//! let a = ctx.tensor_from_array_as(Type::Q8_0, &Array::linspace(0.0f32, 31.0, 32))?;
//! let b = ctx.tensor_from_array(&Array::from_elem(32, 100.0f32))?;
//! let sum = ctx.add(a, b)?; // Q8_0 + f32 -> Q8_0
//!
//! let graph = ctx.build_graph(&[sum])?;
//! let mut data = ctx.data()?;
//! graph.compute(&mut data)?;
//!
//! // Quantized tensors have no element view; ask for a dequantized copy.
//! let result = data.to_array::<f32>(sum)?;
//! assert!((result[[5]] - 105.0).abs() < 1.0);
//!
//! // Plain tensors are zero-copy views.
//! let view = data.view::<f32>(b)?;
//! assert_eq!(view[[0]], 100.0);
//! # let _ = array![1.0f32];
//! # Ok(())
//! # }
//! ```
//!
//! # Shapes: ndarray order vs ggml's `ne`
//!
//! ggml numbers dimensions from the fastest-moving one: `ne[0]` is the length
//! of a row, `ne[1]` the number of rows, and so on. ndarray (row-major) numbers
//! them from the slowest. This crate speaks ndarray everywhere (`shape`,
//! `new_tensor`, views) and maps once:
//!
//! ```text
//! ndarray shape [d0, d1, d2]   (d2 varies fastest in memory)
//!        ggml ne [d2, d1, d0, 1]
//! ```
//!
//! So a `[rows, cols]` matrix is a ggml tensor with `ne = [cols, rows]`, and a
//! quantized tensor's block size must divide the **last** ndarray axis.
//! ggml-native values (`ne()`, `nb()`, [`Context::permute`]'s axes,
//! [`Context::mul_mat`]'s contract) are documented as such.
//!
//! # Borrowing
//!
//! A [`Context`] owns its tensors; a [`Tensor`] is a `Copy` handle that cannot
//! outlive it. Data is reached through the context's one [`TensorData`] token:
//! views borrow it (shared or exclusive), computing borrows it exclusively.
//! Hence these do not compile:
//!
//! ```compile_fail
//! # use ggml::{Context, Type};
//! let ctx = Context::new(1 << 20).unwrap();
//! let t = ctx.new_tensor(Type::F32, &[4]).unwrap();
//! let mut data = ctx.data().unwrap();
//! let v1 = data.view_mut::<f32>(t).unwrap();
//! let v2 = data.view_mut::<f32>(t).unwrap(); // second mutable view
//! drop((v1, v2));
//! ```
//!
//! ```compile_fail
//! # use ggml::{Context, Type};
//! let ctx = Context::new(1 << 20).unwrap();
//! let t = ctx.new_tensor(Type::F32, &[4]).unwrap();
//! let g = ctx.build_graph(&[t]).unwrap();
//! let mut data = ctx.data().unwrap();
//! let v = data.view::<f32>(t).unwrap();
//! g.compute(&mut data).unwrap(); // computing while a view is alive
//! drop(v);
//! ```
//!
//! # Errors, never aborts
//!
//! ggml ends the process when a precondition fails (`GGML_ASSERT`), and its
//! CPU kernels abort (or worse) on type combinations and layouts they lack.
//! Every function here checks those preconditions first and returns an
//! [`Error`] naming the shapes and types involved:
//!
//! - sizes are computed with checked arithmetic in one place ([`size`]);
//! - each op's builder checks what ggml's builder asserts, and each op's
//!   kernel contract is checked node by node when a graph is computed,
//!   against the backend computing it ([`Error::UnsupportedNode`]; see
//!   [`ops`]);
//! - computing checks that every tensor has memory; contexts' memory is
//!   zeroed, so nothing the safe API reads is uninitialised;
//! - quantizing refuses NaN, infinities and (for the 1–3-bit i-quants) values
//!   beyond ±2³⁰ ([`Error::NonFinite`], [`Error::OutOfRange`]);
//! - thread counts are clamped to [`MAX_THREADS`].
//!
//! # Layers
//!
//! Modules use the ones beneath them, never one above (the one loop is a
//! [`Tensor`] and its [`Context`]): the vocabulary (types, shapes, checked
//! [`size`]s, errors), then [`convert`], contexts and tensors, the
//! [`TensorData`] token, [`ops`], graphs, [`backend`], [`gguf`] and, on top,
//! [`llama`] with its own error type. C is called from three private raw
//! layers, the op builders and the conversions' row kernels. The map, and
//! what each module may call: `docs/architecture.md` in the repository.
//!
//! # Linking
//!
//! See the `ggml-sys-2` crate ([`sys`]): a pinned llama.cpp built from source
//! (default), or a system `libllama` through pkg-config
//! (`GGML_SYS_USE_PKG_CONFIG=1`). Against shared libraries, a binary finds them
//! without `LD_LIBRARY_PATH` when its `build.rs` puts `DEP_GGML_RPATH` on its
//! rpath (this crate's `links = "ggml"` metadata):
//! `println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}")`. When
//! the CPU backend is only loadable at run time (`GGML_BACKEND_DL` installs),
//! graphs are computed through the backend registry and conversions use
//! ggml-base's routines; the API is the same.

#![warn(missing_docs)]

pub mod backend;
mod context;
pub mod convert;
mod data;
mod error;
pub mod gguf;
mod graph;
mod init;
mod layout;
pub mod llama;
pub mod ops;
mod raw;
pub mod shape;
pub mod size;
mod tensor;
mod threads;
pub mod transformer;
mod types;

pub use backend::Compute;
pub use context::Context;
pub use data::TensorData;
pub use error::{Error, IoError, LayoutError, OpError, Operand, Result};
pub use graph::Graph;
pub use tensor::Tensor;
pub use threads::{available_cores, max_threads, set_max_threads, MAX_THREADS};
pub use types::{Element, Type};

pub use ggml_sys as sys;
pub use half;
pub use ndarray;

/// Checks that the loaded ggml library matches the bindings and initialises
/// it. Creating a [`Context`] does this too; call it to fail early.
///
/// # Errors
/// [`Error::Abi`] naming both sides of any difference.
pub fn init() -> Result<()> {
    init::ensure()
}

/// The workspace README's examples, compiled and run as doctests (the
/// llama one reads its model from `MODEL`, which the workspace's
/// `.cargo/config.toml` points at the test model).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
