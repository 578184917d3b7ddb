//! Row conversions between f32 and every tensor type, always through ggml's own
//! routines: `ggml_quantize_chunk` to quantize, the type traits' `to_float` to
//! dequantize, and for f16/bf16 the CPU backend's SIMD row conversions
//! (`ggml_cpu_fp32_to_fp16` & co.), or ggml-base's row routines when the CPU
//! backend is loaded at run time. Large conversions are split across all cores
//! (or [`crate::max_threads`] threads).

use std::sync::Mutex;

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::types::Type;

/// Below this many elements per thread, splitting costs more than it saves.
const MIN_PER_THREAD: usize = 1 << 16;

/// Values scanned for non-finite numbers just before they are quantized, so
/// the scan reads from cache what the quantizer then reads again.
const SCAN_BLOCK: usize = 1 << 14;

/// Threads to use for `n` elements.
fn threads_for(n: usize) -> usize {
    let most = n / MIN_PER_THREAD;
    if most <= 1 {
        return 1;
    }
    most.min(crate::max_threads())
}

/// Runs `f` over matching chunks of `src` and `dst`, split at multiples of
/// `src_unit` / `dst_unit` (the same number of units on both sides), in
/// parallel. `f` also gets the index of its chunk's first unit. Returns the
/// error of the lowest-placed chunk that failed. A thread that cannot be
/// started leaves its chunk to the calling thread.
fn par_chunks<S: Sync, D: Send>(
    src: &[S],
    dst: &mut [D],
    src_unit: usize,
    dst_unit: usize,
    elements_per_unit: usize,
    f: impl Fn(&[S], &mut [D], usize) -> Result<()> + Sync,
) -> Result<()> {
    let units = src.len() / src_unit;
    debug_assert_eq!(units, dst.len() / dst_unit);
    let threads = threads_for(units.saturating_mul(elements_per_unit)).min(units.max(1));
    if threads <= 1 {
        return f(src, dst, 0);
    }
    let per = units.div_ceil(threads);
    type Job<'a, S, D> = Mutex<Option<(&'a [S], &'a mut [D])>>;
    let jobs: Vec<Job<'_, S, D>> = src
        .chunks(per * src_unit)
        .zip(dst.chunks_mut(per * dst_unit))
        .map(|job| Mutex::new(Some(job)))
        .collect();
    let results: Vec<Mutex<Result<()>>> = jobs.iter().map(|_| Mutex::new(Ok(()))).collect();
    let run = |k: usize| {
        let job = jobs[k].lock().map(|mut j| j.take()).unwrap_or(None);
        if let Some((s, d)) = job {
            let result = f(s, d, k * per);
            if let Ok(mut slot) = results[k].lock() {
                *slot = result;
            }
        }
    };
    std::thread::scope(|scope| {
        for k in 0..jobs.len() {
            let run = &run;
            if std::thread::Builder::new()
                .spawn_scoped(scope, move || run(k))
                .is_err()
            {
                run(k); // no thread to be had: do it here
            }
        }
    });
    results
        .into_iter()
        .try_for_each(|r| r.into_inner().unwrap_or(Ok(())))
}

macro_rules! row_conversion {
    ($(#[$doc:meta])* $name:ident, $src:ty => $dst:ty, $simd:ident, $base:ident) => {
        $(#[$doc])*
        ///
        /// # Panics
        /// When the slices differ in length.
        pub fn $name(src: &[$src], dst: &mut [$dst]) {
            assert_eq!(src.len(), dst.len());
            let done = par_chunks(src, dst, 1, 1, 1, |s, d, _| {
                // SAFETY: equal lengths; f16 and bf16 have the layouts of
                // ggml_fp16_t and ggml_bf16_t (a u16).
                unsafe {
                    #[cfg(ggml_cpu_backend)]
                    ggml_sys::$simd(s.as_ptr().cast(), d.as_mut_ptr().cast(), s.len() as i64);
                    #[cfg(not(ggml_cpu_backend))]
                    ggml_sys::$base(s.as_ptr().cast(), d.as_mut_ptr().cast(), s.len() as i64);
                }
                Ok(())
            });
            debug_assert!(done.is_ok(), "row conversions cannot fail");
        }
    };
}

row_conversion!(
    /// f32 → f16 on all cores (the CPU backend's SIMD routine).
    f32_to_f16, f32 => f16, ggml_cpu_fp32_to_fp16, ggml_fp32_to_fp16_row
);
row_conversion!(
    /// f16 → f32 on all cores (the CPU backend's SIMD routine).
    f16_to_f32, f16 => f32, ggml_cpu_fp16_to_fp32, ggml_fp16_to_fp32_row
);
row_conversion!(
    /// f32 → bf16 on all cores (the CPU backend's SIMD routine).
    f32_to_bf16, f32 => bf16, ggml_cpu_fp32_to_bf16, ggml_fp32_to_bf16_row
);
row_conversion!(
    /// bf16 → f32 on all cores (the CPU backend's SIMD routine).
    bf16_to_f32, bf16 => f32, ggml_cpu_bf16_to_fp32, ggml_bf16_to_fp32_row
);

/// Reinterprets bytes as `T`s, if aligned and of a whole number of them.
fn cast_slice<T>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if bytes.as_ptr() as usize % std::mem::align_of::<T>() != 0 || bytes.len() % size != 0 {
        return None;
    }
    // SAFETY: aligned, in bounds; only used for plain-old-data T (f32, f16, bf16).
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / size) })
}

fn cast_slice_mut<T>(bytes: &mut [u8]) -> Option<&mut [T]> {
    let size = std::mem::size_of::<T>();
    if bytes.as_ptr() as usize % std::mem::align_of::<T>() != 0 || bytes.len() % size != 0 {
        return None;
    }
    // SAFETY: aligned, in bounds, exclusive; plain-old-data T only.
    Some(unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast(), bytes.len() / size) })
}

/// The error for data that `cast_slice` cannot reinterpret as `T`s.
fn misaligned<T>(address: *const u8) -> impl FnOnce() -> Error {
    move || Error::Misaligned {
        address: address as usize,
        align: std::mem::align_of::<T>(),
    }
}

/// Checks that `ty` can be produced from f32 rows of `row_len` values (with
/// this importance matrix, if any).
///
/// # Errors
/// [`Error::NotQuantizable`], [`Error::BlockSize`], [`Error::RequiresImatrix`],
/// [`Error::ImatrixLength`], [`Error::InvalidImatrix`].
pub fn check_quantizable(ty: Type, row_len: usize, imatrix: Option<&[f32]>) -> Result<()> {
    if !ty.can_quantize() {
        return Err(Error::NotQuantizable { ty });
    }
    ty.check_row_len(row_len)?;
    match imatrix {
        Some(m) if m.len() != row_len => Err(Error::ImatrixLength {
            len: m.len(),
            row_len,
        }),
        Some(m) => match m.iter().position(|w| !(*w >= 0.0 && *w <= value_limit(ty))) {
            Some(index) => Err(Error::InvalidImatrix {
                index,
                value: m[index],
            }),
            None => Ok(()),
        },
        None if ty.requires_imatrix() => Err(Error::RequiresImatrix { ty }),
        None => Ok(()),
    }
}

/// The largest magnitude `ty`'s quantizer takes, in values and importance
/// weights. The grid searches of the i-quants sum weighted squared errors
/// that overflow, and then abort, for values from about 1e13; 2^30 keeps
/// them several orders of magnitude clear. Other types take any finite value.
fn value_limit(ty: Type) -> f32 {
    match ty {
        Type::IQ2_XXS
        | Type::IQ2_XS
        | Type::IQ2_S
        | Type::IQ3_XXS
        | Type::IQ3_S
        | Type::IQ1_S
        | Type::IQ1_M => (1u32 << 30) as f32,
        _ => f32::MAX,
    }
}

/// Whether a value's magnitude, as the bits of a non-negative float, exceeds
/// `limit`'s (NaN's bits exceed every finite value's and infinity's).
fn beyond(v: f32, limit: i32) -> bool {
    (v.to_bits() & 0x7fff_ffff) as i32 > limit
}

/// Whether any value of `chunk` is [`beyond`] `limit`: a branch-free pass
/// the compiler vectorises.
fn any_beyond(chunk: &[f32], limit: i32) -> bool {
    chunk
        .iter()
        .fold(0u32, |acc, &v| acc | u32::from(beyond(v, limit)))
        != 0
}

/// [`any_beyond`] compiled for AVX2 (three times the SSE2 speed; the scan
/// sits in front of every quantization).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn any_beyond_avx2(chunk: &[f32], limit: i32) -> bool {
    any_beyond(chunk, limit)
}

/// Position of the first value of `values` that is NaN or beyond ±`limit`.
fn first_out_of_range(values: &[f32], limit: f32) -> Option<usize> {
    const LANES: usize = 1024;
    let limit = limit.to_bits() as i32;
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    values.chunks(LANES).enumerate().find_map(|(c, chunk)| {
        #[cfg(target_arch = "x86_64")]
        let hit = if avx2 {
            // SAFETY: AVX2 was detected.
            unsafe { any_beyond_avx2(chunk, limit) }
        } else {
            any_beyond(chunk, limit)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let hit = any_beyond(chunk, limit);
        if hit {
            chunk
                .iter()
                .position(|&v| beyond(v, limit))
                .map(|i| c * LANES + i)
        } else {
            None
        }
    })
}

/// Checks `values` (whose first value is at `base` in the whole input) can
/// be quantized to `ty`: finite, and within the i-quants' range.
///
/// # Errors
/// [`Error::NonFinite`], [`Error::OutOfRange`] naming the first bad value.
pub(crate) fn check_values(ty: Type, values: &[f32], base: usize) -> Result<()> {
    let limit = value_limit(ty);
    match first_out_of_range(values, limit) {
        Some(i) if !values[i].is_finite() => Err(Error::NonFinite {
            index: base + i,
            value: values[i],
            ty,
        }),
        Some(i) => Err(Error::OutOfRange {
            index: base + i,
            value: values[i],
            ty,
            limit,
        }),
        None => Ok(()),
    }
}

/// Converts f32 rows of `row_len` values into `ty` rows in `dst`
/// (`dst.len() == rows * ty.row_size(row_len)`), on all cores.
///
/// Quantized types refuse NaN and infinite values (ggml's quantizers abort
/// on some and compute garbage on others), and the i-quants of 1 to 3 bits
/// values beyond ±2^30 (their grid searches overflow and abort): the first
/// is named in [`Error::NonFinite`] or [`Error::OutOfRange`]. f16 and bf16
/// keep them. Importance weights must be finite and non-negative (and at
/// most 2^30 for those i-quants).
///
/// # Errors
/// [`Error::NotQuantizable`], [`Error::BlockSize`], [`Error::RequiresImatrix`],
/// [`Error::ImatrixLength`], [`Error::InvalidImatrix`], [`Error::NonFinite`],
/// [`Error::OutOfRange`], [`Error::LengthMismatch`] when `src` is not whole rows or `dst` has the
/// wrong size.
pub fn from_f32(
    ty: Type,
    src: &[f32],
    dst: &mut [u8],
    row_len: usize,
    imatrix: Option<&[f32]>,
) -> Result<()> {
    check_quantizable(ty, row_len, imatrix)?;
    let rows = match (src.len().checked_div(row_len), src.len()) {
        (Some(rows), n) if rows * row_len == n => rows,
        (None, 0) => 0,
        _ => {
            return Err(Error::LengthMismatch {
                what: "from_f32 source (whole rows)",
                expected: src.len().checked_div(row_len).unwrap_or(0) * row_len,
                actual: src.len(),
            })
        }
    };
    let row_size = crate::size::row_bytes(ty, row_len).unwrap_or(usize::MAX);
    let expected = rows.saturating_mul(row_size);
    if dst.len() != expected {
        return Err(Error::LengthMismatch {
            what: "from_f32 destination bytes",
            expected,
            actual: dst.len(),
        });
    }
    if rows == 0 {
        return Ok(());
    }
    let dst_address = dst.as_ptr();
    match ty {
        Type::F32 => dst.copy_from_slice(cast_bytes(src)),
        Type::F16 => f32_to_f16(
            src,
            cast_slice_mut(dst).ok_or_else(misaligned::<f16>(dst_address))?,
        ),
        Type::BF16 => f32_to_bf16(
            src,
            cast_slice_mut(dst).ok_or_else(misaligned::<bf16>(dst_address))?,
        ),
        _ => {
            let imatrix_ptr = imatrix.map_or(std::ptr::null(), <[f32]>::as_ptr);
            let imatrix_addr = imatrix_ptr as usize;
            let rows_per_scan = (SCAN_BLOCK / row_len).max(1);
            par_chunks(src, dst, row_len, row_size, row_len, |s, d, first_row| {
                let scans = s.chunks(rows_per_scan * row_len);
                for (k, (s, d)) in scans
                    .zip(d.chunks_mut(rows_per_scan * row_size))
                    .enumerate()
                {
                    check_values(ty, s, (first_row + k * rows_per_scan) * row_len)?;
                    let n_rows = (s.len() / row_len) as i64;
                    // SAFETY: `s` holds n_rows rows of finite f32, `d` exactly
                    // n_rows rows of `ty`; block size, imatrix presence, length
                    // and values were checked.
                    let written = unsafe {
                        crate::raw::quantize_rows(
                            ty.as_raw(),
                            s,
                            d,
                            n_rows,
                            row_len as i64,
                            imatrix_addr as *const f32,
                        )
                    };
                    debug_assert_eq!(written, d.len());
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

fn cast_bytes(src: &[f32]) -> &[u8] {
    // SAFETY: any f32 slice is a valid byte slice of 4× the length.
    unsafe { std::slice::from_raw_parts(src.as_ptr().cast(), std::mem::size_of_val(src)) }
}

/// Converts `ty` data (whole blocks) in `src` to f32 in `dst`, on all cores.
///
/// # Errors
/// [`Error::NotDequantizable`] when ggml has no `to_float` for `ty`,
/// [`Error::LengthMismatch`] when `src` is not whole blocks or `dst` does not
/// have one value per value of `src`.
pub fn to_f32(ty: Type, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let block_size = ty.block_size();
    let type_size = ty.type_size();
    let blocks = src.len() / type_size;
    let expected = blocks.saturating_mul(block_size);
    if blocks * type_size != src.len() || dst.len() != expected {
        return Err(Error::LengthMismatch {
            what: "to_f32 destination (one value per source value, whole blocks)",
            expected,
            actual: dst.len(),
        });
    }
    match ty {
        Type::F32 => {
            dst.copy_from_slice(cast_slice(src).ok_or_else(misaligned::<f32>(src.as_ptr()))?)
        }
        Type::F16 => f16_to_f32(
            cast_slice(src).ok_or_else(misaligned::<f16>(src.as_ptr()))?,
            dst,
        ),
        Type::BF16 => bf16_to_f32(
            cast_slice(src).ok_or_else(misaligned::<bf16>(src.as_ptr()))?,
            dst,
        ),
        _ => {
            let to_float = ty.to_float().ok_or(Error::NotDequantizable { ty })?;
            par_chunks(src, dst, type_size, block_size, block_size, |s, d, _| {
                // SAFETY: `s` holds whole blocks of `ty`, `d` their values.
                unsafe { to_float(s.as_ptr().cast(), d.as_mut_ptr(), d.len() as i64) };
                Ok(())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_found_where_they_are() {
        let mut v = vec![1.0f32; 1000];
        assert_eq!(first_out_of_range(&v, f32::MAX), None);
        v[777] = f32::NAN;
        v[900] = f32::INFINITY;
        assert_eq!(first_out_of_range(&v, f32::MAX), Some(777));
        v[3] = f32::NEG_INFINITY;
        assert_eq!(first_out_of_range(&v, f32::MAX), Some(3));
        let edge = [f32::MAX, -f32::MAX, f32::MIN_POSITIVE, 1e-45];
        assert_eq!(first_out_of_range(&edge, f32::MAX), None);
        assert_eq!(first_out_of_range(&edge, 1e9), Some(0));
        let err = check_values(Type::IQ3_S, &[0.0, -2e9], 10).unwrap_err();
        assert!(matches!(err, Error::OutOfRange { index: 11, .. }), "{err}");
        let err = check_values(Type::Q4_0, &[0.0, f32::NAN], 0).unwrap_err();
        assert!(matches!(err, Error::NonFinite { index: 1, .. }), "{err}");
        assert!(check_values(Type::Q4_0, &[-2e9, 3e38], 0).is_ok());
    }
}
