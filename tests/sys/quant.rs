//! Raw-FFI quantization round trips: `ggml_quantize_chunk` then the type traits'
//! `to_float`, with the error checked against a bound derived from each format.
//!
//! Quantization and dequantization live in `ggml-base`, so these run in every
//! link mode, with or without a linkable CPU backend.

use ggml_sys as sys;

/// Deterministic test data in [-1, 1).
fn data(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The type's traits, with their sizes checked against the format.
fn traits(ty: sys::ggml_type, block: i64, block_bytes: usize) -> &'static sys::ggml_type_traits {
    // SAFETY: ggml returns a pointer into its static table for any valid type.
    let traits = unsafe { &*sys::ggml_get_type_traits(ty) };
    assert_eq!(traits.blck_size, block);
    assert_eq!(traits.type_size, block_bytes);
    assert!(traits.is_quantized);
    traits
}

/// Quantizes `rows` rows of `src` to `ty` and dequantizes them back.
fn round_trip(ty: sys::ggml_type, src: &[f32], rows: usize) -> Vec<f32> {
    let per_row = src.len() / rows;
    // SAFETY: pure size query.
    let row_bytes = unsafe { sys::ggml_row_size(ty, per_row as i64) };
    let mut packed = vec![0u8; row_bytes * rows];
    // SAFETY: `src` holds rows * per_row floats and `packed` rows * row_bytes
    // bytes; no importance matrix, which these types do not require.
    let written = unsafe {
        assert!(!sys::ggml_quantize_requires_imatrix(ty));
        sys::ggml_quantize_chunk(
            ty,
            src.as_ptr(),
            packed.as_mut_ptr().cast(),
            0,
            rows as i64,
            per_row as i64,
            std::ptr::null(),
        )
    };
    assert_eq!(written, packed.len());
    // SAFETY: as above.
    let to_float = unsafe { (*sys::ggml_get_type_traits(ty)).to_float }.expect("to_float");
    let mut out = vec![0.0f32; src.len()];
    // SAFETY: `packed` holds src.len() quantized values, `out` room for them.
    unsafe { to_float(packed.as_ptr().cast(), out.as_mut_ptr(), src.len() as i64) };
    out
}

/// Largest |x| of each block of `block` values.
fn block_amax(src: &[f32], block: usize) -> Vec<f32> {
    src.chunks(block)
        .map(|b| b.iter().fold(0.0f32, |m, x| m.max(x.abs())))
        .collect()
}

/// Checks |x - x'| <= bound(block) for every element, block by block.
fn assert_within(src: &[f32], got: &[f32], block: usize, bound: impl Fn(usize) -> f32) {
    for (i, (x, y)) in src.iter().zip(got).enumerate() {
        let limit = bound(i / block);
        assert!(
            (x - y).abs() <= limit,
            "element {i}: {x} came back as {y}, error {} > bound {limit}",
            (x - y).abs()
        );
    }
}

fn rmse(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    (sum / a.len() as f64).sqrt() as f32
}

/// Q8_0: blocks of 32, scale d = amax/127 stored as f16, q = round(x/d) in
/// [-127, 127]. Rounding costs at most d/2; storing d in f16 (relative error
/// <= 2^-11) moves each value by at most 127 * d * 2^-11 < 0.07 d.
#[test]
fn q8_0_error_within_half_a_step() {
    traits(sys::GGML_TYPE_Q8_0, 32, 34);
    let src = data(10, 4 * 128);
    let got = round_trip(sys::GGML_TYPE_Q8_0, &src, 4);
    let amax = block_amax(&src, 32);
    assert_within(&src, &got, 32, |b| {
        amax[b] / 127.0 * (0.5 + 127.0 / 2048.0) + 1e-7
    });
}

/// Q4_0: blocks of 32, d = m / -8 where m is the value of largest magnitude,
/// q = min(15, trunc(x/d + 8.5)) in [0, 15] standing for q - 8. Rounding costs
/// d/2, except that x/d = +8 (the opposite extreme) is clamped to 7: one whole
/// step |d| = amax/8. The f16 scale adds at most 8 * |d| * 2^-11.
#[test]
fn q4_0_error_within_one_step() {
    traits(sys::GGML_TYPE_Q4_0, 32, 18);
    let src = data(11, 4 * 128);
    let got = round_trip(sys::GGML_TYPE_Q4_0, &src, 4);
    let amax = block_amax(&src, 32);
    assert_within(&src, &got, 32, |b| {
        amax[b] / 8.0 * (1.0 + 8.0 / 2048.0) + 1e-7
    });
    // Most values round to the nearest of 16 levels: RMSE about step/sqrt(12).
    let step = amax.iter().sum::<f32>() / amax.len() as f32 / 8.0;
    assert!(rmse(&src, &got) <= step / 12f32.sqrt() * 1.25);
}

/// Q4_K: super-blocks of 256 in 8 sub-blocks of 32, each x ~ l * d_j - m_j with
/// l in [0, 15], the sub-block scales d_j and mins m_j themselves quantized to
/// 6 bits against the super-block's largest ones. For data spread evenly in
/// [-1, 1) every sub-block spans about 2, so a step is about 2/15: an ideal
/// 4-bit quantizer errs by at most half a step (RMSE step/sqrt(12) = 0.038).
/// The optimiser may clip a sub-block's extremes to lower the error of the
/// rest, and the 6-bit scales and mins add their rounding, so allow one whole
/// step per element and 1.25x the ideal RMSE.
#[test]
fn q4_k_error_within_one_step() {
    traits(sys::GGML_TYPE_Q4_K, 256, 144);
    let src = data(12, 4 * 512);
    let got = round_trip(sys::GGML_TYPE_Q4_K, &src, 4);
    let step = 2.0 / 15.0;
    assert_within(&src, &got, 32, |_| step);
    assert!(rmse(&src, &got) <= step / 12f32.sqrt() * 1.25);
}

#[test]
fn quantized_row_sizes() {
    // SAFETY: pure size queries.
    unsafe {
        assert_eq!(sys::ggml_row_size(sys::GGML_TYPE_Q8_0, 256), 8 * 34);
        assert_eq!(sys::ggml_row_size(sys::GGML_TYPE_Q4_0, 256), 8 * 18);
        assert_eq!(sys::ggml_row_size(sys::GGML_TYPE_Q4_K, 256), 144);
        assert_eq!(sys::ggml_row_size(sys::GGML_TYPE_F32, 256), 1024);
    }
}
