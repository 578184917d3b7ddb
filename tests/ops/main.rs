//! Ops computed in graphs, against references written in the tests
//! (ndarray computations, `std`'s math, known values): each family of
//! `ggml::ops`, products, broadcasting, thread counts, large graphs, the
//! abort callback.

#[path = "../common/mod.rs"]
mod common;

mod attention;
mod backward;
mod conv;
mod conv_direct;
mod coverage;
mod custom;
mod deepseek;
mod eval;
mod experts;
mod fill;
mod glu;
mod graphs;
mod hostile;
mod misc;
mod movement;
mod norm;
mod reduce;
mod rows;
mod sequence;
mod set;
mod unary;
