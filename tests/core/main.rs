//! The tensor core, through the safe API: types against ggml's published
//! formats, contexts and tensors, ndarray views and the copies that convert
//! and (de)quantize, the guard layer (every precondition an error), and
//! property tests of the round trips. (The process-wide thread cap has a
//! binary of its own, `tests/threads.rs`.)

#[path = "../common/mod.rs"]
mod common;

mod data;
mod errors;
mod guards;
mod roundtrip;
mod types;
