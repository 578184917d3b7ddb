//! Ops computed in graphs, against ndarray and known values: products,
//! broadcasting, thread counts, large graphs, the abort callback.

#[path = "../common/mod.rs"]
mod common;

mod graphs;
