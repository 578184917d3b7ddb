//! The raw bindings (`ggml-sys`) against the library actually linked: the
//! ABI guard and build metadata, compute, quantization, GGUF and llama.cpp
//! entry points over the raw FFI.

mod abi;
mod compute;
mod gguf;
mod llama;
mod quant;
