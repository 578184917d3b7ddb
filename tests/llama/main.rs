//! The llama layer on a real model (SmolLM2-135M-Instruct Q4_1, from
//! `scripts/fetch-test-model`) and on a tiny model made here: tokenizing
//! and generating as llama.cpp's C API does, logits to 1e-4 of the C
//! program's, every precondition an error, the KV cache, state, samplers,
//! chat templates, embeddings, adapters, threads.

#[path = "../common/mod.rs"]
mod common;

mod adapters;
mod context;
mod generation;
mod hostile;
mod sampling;
mod support;
mod tokens;
mod transformer;
