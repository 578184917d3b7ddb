//! Row conversions between f32 and every tensor type, always through ggml's own
//! routines: `ggml_quantize_chunk` to quantize, the type traits' `to_float` to
//! dequantize, and for f16/bf16 the CPU backend's SIMD row conversions
//! (`ggml_cpu_fp32_to_fp16` & co.), or ggml-base's row routines when the CPU
//! backend is loaded at run time. Large conversions are split across all cores
//! (or [`crate::max_threads`] threads).

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::types::Type;

/// Below this many elements per thread, splitting costs more than it saves.
const MIN_PER_THREAD: usize = 1 << 16;

/// Threads to use for `n` elements.
fn threads_for(n: usize) -> usize {
    let most = n / MIN_PER_THREAD;
    if most <= 1 {
        return 1;
    }
    most.min(crate::max_threads())
}

/// Runs `f` over matching chunks of `src` and `dst`, split at multiples of
/// `src_unit` / `dst_unit` (the same number of units on both sides), in parallel.
fn par_chunks<S: Sync, D: Send>(
    src: &[S],
    dst: &mut [D],
    src_unit: usize,
    dst_unit: usize,
    elements_per_unit: usize,
    f: impl Fn(&[S], &mut [D]) + Sync,
) {
    let units = src.len() / src_unit;
    debug_assert_eq!(units, dst.len() / dst_unit);
    let threads = threads_for(units * elements_per_unit).min(units.max(1));
    if threads <= 1 {
        f(src, dst);
        return;
    }
    let per = units.div_ceil(threads);
    std::thread::scope(|scope| {
        for (s, d) in src
            .chunks(per * src_unit)
            .zip(dst.chunks_mut(per * dst_unit))
        {
            let f = &f;
            scope.spawn(move || f(s, d));
        }
    });
}

macro_rules! row_conversion {
    ($(#[$doc:meta])* $name:ident, $src:ty => $dst:ty, $simd:ident, $base:ident) => {
        $(#[$doc])*
        ///
        /// # Panics
        /// When the slices differ in length.
        pub fn $name(src: &[$src], dst: &mut [$dst]) {
            assert_eq!(src.len(), dst.len());
            par_chunks(src, dst, 1, 1, 1, |s, d| {
                // SAFETY: equal lengths; f16 and bf16 have the layouts of
                // ggml_fp16_t and ggml_bf16_t (a u16).
                unsafe {
                    #[cfg(ggml_cpu_backend)]
                    ggml_sys::$simd(s.as_ptr().cast(), d.as_mut_ptr().cast(), s.len() as i64);
                    #[cfg(not(ggml_cpu_backend))]
                    ggml_sys::$base(s.as_ptr().cast(), d.as_mut_ptr().cast(), s.len() as i64);
                }
            });
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

/// Checks that `ty` can be produced from f32 rows of `row_len` values.
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
        None if ty.requires_imatrix() => Err(Error::RequiresImatrix { ty }),
        _ => Ok(()),
    }
}

/// Converts f32 rows of `row_len` values into `ty` rows in `dst`
/// (`dst.len() == rows * ty.row_size(row_len)`), on all cores.
///
/// # Errors
/// [`Error::NotQuantizable`], [`Error::BlockSize`], [`Error::RequiresImatrix`],
/// [`Error::ImatrixLength`].
pub fn from_f32(
    ty: Type,
    src: &[f32],
    dst: &mut [u8],
    row_len: usize,
    imatrix: Option<&[f32]>,
) -> Result<()> {
    check_quantizable(ty, row_len, imatrix)?;
    if row_len == 0 || src.is_empty() {
        return Ok(());
    }
    let rows = src.len() / row_len;
    assert_eq!(rows * row_len, src.len());
    assert_eq!(dst.len(), rows * ty.row_size(row_len));
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
            let row_size = ty.row_size(row_len);
            let imatrix_ptr = imatrix.map_or(std::ptr::null(), <[f32]>::as_ptr);
            let imatrix_addr = imatrix_ptr as usize;
            par_chunks(src, dst, row_len, row_size, row_len, |s, d| {
                let n_rows = (s.len() / row_len) as i64;
                // SAFETY: `s` holds n_rows rows of f32, `d` exactly n_rows rows
                // of `ty`; block size, imatrix presence and length were checked.
                let written = unsafe {
                    ggml_sys::ggml_quantize_chunk(
                        ty.as_raw(),
                        s.as_ptr(),
                        d.as_mut_ptr().cast(),
                        0,
                        n_rows,
                        row_len as i64,
                        imatrix_addr as *const f32,
                    )
                };
                debug_assert_eq!(written, d.len());
            });
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
/// [`Error::NotDequantizable`] when ggml has no `to_float` for `ty`.
pub fn to_f32(ty: Type, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let block_size = ty.block_size();
    let type_size = ty.type_size();
    assert_eq!(src.len() / type_size * block_size, dst.len());
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
            par_chunks(src, dst, type_size, block_size, block_size, |s, d| {
                // SAFETY: `s` holds whole blocks of `ty`, `d` their values.
                unsafe { to_float(s.as_ptr().cast(), d.as_mut_ptr(), d.len() as i64) };
            });
        }
    }
    Ok(())
}
