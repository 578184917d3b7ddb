//! What the benches share: the C program's input generator, so Rust and C
//! quantize the very same values, and the quantized types W2/W3 measure.

use ggml::Type;

/// The types of the quantize/dequantize workloads (W2, W3).
pub const QUANT_TYPES: [Type; 4] = [Type::Q4_0, Type::Q8_0, Type::Q4_K, Type::Q6_K];

/// The C program's generator (`scripts/bench-c/bench.c`): xorshift32, values in [-1, 1).
pub fn random(n: usize) -> Vec<f32> {
    let mut s: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 * (1.0 / 8_388_608.0) - 1.0
        })
        .collect()
}
