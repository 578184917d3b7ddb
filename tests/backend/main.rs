//! The backend API: devices, backends, backend memory, the graph allocator
//! and the scheduler, against ndarray and the CPU. `GGML_TEST_DEVICE` (e.g.
//! `CUDA0`) runs the device tests on a GPU.

#[path = "../common/mod.rs"]
mod common;

mod api;
