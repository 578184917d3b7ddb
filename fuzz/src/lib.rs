//! A differential fuzzer of the safe `ggml` API.
//!
//! - [`program`]: random sequences of safe calls, generated with `arbitrary`;
//! - [`safe`]: runs them through the safe API, recording each outcome;
//! - [`gguf`]: malformed GGUF files, checked against ggml's reader;
//! - [`model`]: hostile llama model files, run through the llama layer;
//! - [`raw`]: replays a refused call through raw ggml, to measure refusals
//!   that raw ggml would have survived.
//!
//! The driver (`src/main.rs`, `scripts/fuzz`) runs programs in child
//! processes; a child that dies by a signal or aborts is a failure, reported
//! with its seed and a minimised call sequence. The same [`program::Program`]
//! is the input of the `cargo fuzz` target in `fuzz/libfuzzer`.

pub mod gguf;
pub mod model;
pub mod program;
pub mod raw;
pub mod safe;

use arbitrary::{Arbitrary, Unstructured};

/// Most calls a program has.
pub const MAX_CALLS: usize = 48;

/// The bytes of seed `seed`: a SplitMix64 stream of 256 to 4 KiB.
pub fn seed_bytes(seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let len = 256 + (next() % 3840) as usize;
    (0..len).map(|_| next() as u8).collect()
}

/// The program `bytes` describe (at most [`MAX_CALLS`] calls).
pub fn program_from_bytes(bytes: &[u8]) -> program::Program {
    let mut u = Unstructured::new(bytes);
    let mut program = program::Program { calls: Vec::new() };
    while !u.is_empty() && program.calls.len() < MAX_CALLS {
        match program::Call::arbitrary(&mut u) {
            Ok(call) => program.calls.push(call),
            Err(_) => break,
        }
    }
    // Every program starts with a context and a few tensors to work on: half
    // of them an allocating context, half a no_alloc one whose tensors are in
    // backend buffers it owns (the backend path).
    use program::{Call, CtxKind, CtxSize, Dim, Fill, Shape, TypeSel};
    let shape = || Shape(vec![Dim::Small(8), Dim::Block(0)]);
    let kind = match bytes.last() {
        Some(b) if b & 1 == 1 => CtxKind::NoAlloc,
        _ => CtxKind::Alloc,
    };
    let prologue = [
        Call::NewContext(CtxSize::Medium(3), kind),
        Call::FromArray(0, TypeSel(0), shape(), Fill::Ramp(3)),
        Call::FromArray(0, TypeSel(0), shape(), Fill::Noise(7, 2)),
        Call::FromArray(0, TypeSel(4), shape(), Fill::Noise(9, 1)),
    ];
    program.calls.splice(0..0, prologue);
    program
}

/// Declaration number `n` of `ggml::ops::catalog()`, modulo their number.
pub fn op_decl(n: u16) -> &'static ggml::ops::Decl {
    static DECLS: std::sync::OnceLock<Vec<&'static ggml::ops::Decl>> = std::sync::OnceLock::new();
    let decls = DECLS.get_or_init(|| ggml::ops::catalog().collect());
    decls[usize::from(n) % decls.len()]
}

/// The program of seed `seed`.
pub fn program_from_seed(seed: u64) -> program::Program {
    program_from_bytes(&seed_bytes(seed))
}
