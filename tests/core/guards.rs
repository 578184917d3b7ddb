//! Regression tests for the classes of unsoundness an adversarial review found
//! in the safe API (issue "Safe means safe, systematically"). Before the guard
//! layer, each of these aborted the process, crashed it, wrote outside the
//! arena, read uninitialised memory, panicked, or refused a legitimate request.
//! Each now returns `Err` naming the values involved, or does the right thing.

use anyhow::Result;
use ggml::ndarray::{Array, Array1, Array2, ArrayD, IxDyn};
use ggml::{convert, Compute, Context, Error, Type};

use crate::assert_err;
use crate::common;

/// Computes `outputs` and returns the result (`Err` from the guard, not an abort).
fn compute<'a>(ctx: &'a Context, outputs: &[ggml::Tensor<'a>]) -> ggml::Result<()> {
    let graph = ctx.build_graph(outputs)?;
    let mut data = ctx.data()?;
    common::compute(&graph, &mut data)
}

// 1. Size arithmetic wraps.
#[test]
fn sizes_that_do_not_fit_are_errors() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    // 2^62 + 4 f32 values: 16 bytes once wrapped.
    assert_err!(
        ctx.new_tensor(Type::F32, &[(1 << 62) + 4]),
        Error::TooLarge { .. }
    );
    assert_err!(
        Context::tensor_size(Type::F32, &[(1 << 62) + 4]),
        Error::TooLarge { .. }
    );
    assert_err!(
        ctx.new_tensor(Type::I8, &[3, usize::MAX / 2]),
        Error::InvalidShape { .. } | Error::TooLarge { .. }
    );
    let meta = Context::new_no_alloc(1 << 20)?;
    assert_err!(
        meta.new_tensor(Type::F32, &[(1 << 62) - 1, 2]),
        Error::TooLarge { .. }
    );
    let t = meta.new_tensor(Type::F32, &[1 << 30, 8])?;
    assert_err!(
        meta.reshape(t, &[(1 << 62) - 1, 2]),
        Error::TooLarge { .. } | Error::ShapeMismatch { .. }
    );
    // A product of 2^40 x 2^40 rows: 2^80 elements.
    let a = meta.new_tensor(Type::F32, &[1 << 40, 1])?;
    let b = meta.new_tensor(Type::F32, &[1 << 40, 1])?;
    assert_err!(meta.mul_mat(a, b), Error::TooLarge { .. });
    assert!(Context::graph_size(usize::MAX).is_none());
    Ok(())
}

// 2. Contexts.
#[test]
fn contexts_that_cannot_be_made_are_errors() -> Result<()> {
    assert_err!(Context::new(usize::MAX), Error::ContextInit { .. });
    assert_err!(Context::new_no_alloc(usize::MAX), Error::ContextInit { .. });
    assert_err!(
        Context::with_buffer(Vec::new(), false),
        Error::ContextInit { .. }
    );
    assert_err!(
        Context::with_buffer(Vec::new(), true),
        Error::ContextInit { .. }
    );
    // 64 TiB: refused by the allocator here; with overcommit it may succeed,
    // lazily, which is fine too. Either way the process lives.
    match Context::new(1 << 46) {
        Ok(ctx) => assert!(ctx.mem_size() >= 1 << 46),
        Err(err) => assert!(matches!(err, Error::ContextInit { .. }), "{err}"),
    }
    // A caller buffer starting anywhere: ggml gets its aligned part.
    for skip in 0..16 {
        let mut buffer = vec![0u8; 4096 + skip];
        buffer.drain(..skip);
        let ctx = Context::with_buffer(buffer, false)?;
        let t = ctx.tensor_from_array(&Array1::from_elem(8, 3.0f32))?;
        assert_eq!(ctx.data()?.view::<f32>(t)?[[7]], 3.0);
    }
    Ok(())
}

// 3. Graphs over tensors without data.
#[test]
fn computing_tensors_without_memory_is_an_error() -> Result<()> {
    let meta = Context::new_no_alloc(1 << 20)?;
    let a = meta.new_tensor(Type::F32, &[4, 4])?;
    assert_err!(compute(&meta, &[meta.add(a, a)?]), Error::NoData { .. });
    assert_err!(compute(&meta, &[meta.mul_mat(a, a)?]), Error::NoData { .. });
    let caller = Context::with_buffer(vec![0; 1 << 16], true)?;
    let b = caller.new_tensor(Type::F32, &[8])?;
    assert_err!(
        compute(&caller, &[caller.scale(b, 2.0)?]),
        Error::NoData { .. }
    );
    Ok(())
}

// 4. Views reaching outside their tensor.
#[test]
fn views_stay_inside_their_tensor() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&Array1::from_iter((0..16).map(|i| i as f32)))?;
    // Strides whose sum wraps around usize.
    assert_err!(
        ctx.view(t, &[2, 2, 1], &[usize::MAX - 3, 8], 0),
        Error::ViewOutOfBounds { .. }
    );
    assert_err!(
        ctx.view(t, &[3, 1], &[(usize::MAX / 2) & !3], 0),
        Error::ViewOutOfBounds { .. }
    );
    // Overlapping rows whose dense size exceeds the tensor (ggml asserts).
    assert_err!(
        ctx.view(t, &[13, 4], &[4], 0),
        Error::ViewOutOfBounds { .. }
    );
    assert_err!(ctx.view(t, &[5, 4], &[0], 0), Error::ViewOutOfBounds { .. });
    // Misaligned strides and offsets.
    assert_err!(ctx.view(t, &[2, 2], &[6], 0), Error::Layout(_));
    assert_err!(ctx.view(t, &[4], &[], 2), Error::Layout(_));
    // Overlapping rows that fit are a readable view, but never a destination.
    let window = ctx.view(t, &[4, 4], &[4], 0)?;
    let src = ctx.new_tensor(Type::F32, &[4, 4])?;
    assert_err!(ctx.cpy(src, window), Error::Overlap { .. });
    let rows = ctx.cont(window)?;
    compute(&ctx, &[rows])?;
    let expected = Array2::from_shape_fn((4, 4), |(i, j)| (i + j) as f32);
    assert_eq!(ctx.data()?.to_array::<f32>(rows)?, expected.into_dyn());
    // A view of a view: bounds are those of the memory underneath.
    let tail = ctx.view(t, &[8], &[], 32)?;
    assert_err!(ctx.view(tail, &[4], &[], 20), Error::ViewOutOfBounds { .. });
    // Inside the tensor, but its dense size from there is not (ggml asserts).
    assert_err!(
        ctx.view(t, &[4, 4], &[4], 16),
        Error::ViewOutOfBounds { .. }
    );
    // Copies between overlapping views of one tensor race in ggml's threads.
    let (lo, hi) = (ctx.view(t, &[8], &[], 0)?, ctx.view(t, &[8], &[], 16)?);
    assert_err!(ctx.cpy(lo, hi), Error::Overlap { .. });
    // ... and are memmove-like through TensorData::copy_tensor.
    let mut data = ctx.data()?;
    data.copy_tensor(lo, hi, false)?;
    let after: Vec<f32> = data.view::<f32>(t)?.iter().copied().collect();
    let want: Vec<f32> = (0..4).chain(0..8).chain(12..16).map(|i| i as f32).collect();
    assert_eq!(after, want);
    Ok(())
}

// 5. Transposed or permuted quantized tensors.
#[test]
fn quantized_rows_stay_whole_blocks() -> Result<()> {
    let ctx = Context::new(1 << 22)?;
    let q = ctx.tensor_from_array_as(Type::Q8_0, &Array2::from_elem((2, 32), 1.0f32))?;
    assert_err!(ctx.transpose(q), Error::Layout(_));
    assert_err!(ctx.permute(q, [1, 0, 2, 3]), Error::Layout(_));
    let p = ctx.permute(q, [0, 2, 1, 3])?; // rows stay rows
    assert_eq!(p.ne(), [32, 1, 2, 1]);
    // Same element count, different row length: ggml overflows its work buffer.
    let f = ctx.new_tensor(Type::F32, &[1, 4096])?;
    let dst = ctx.new_tensor(Type::Q8_0, &[128, 32])?;
    assert_err!(
        compute(&ctx, &[ctx.cpy(f, dst)?]),
        Error::UnsupportedNode { .. }
    );
    // A transposed f32 source for a quantized destination.
    let ft = ctx.transpose(ctx.new_tensor(Type::F32, &[32, 4])?)?;
    let dst = ctx.new_tensor(Type::Q8_0, &[4, 32])?;
    assert_err!(
        compute(&ctx, &[ctx.cpy(ft, dst)?]),
        Error::UnsupportedNode { .. }
    );
    // Quantized copies between layouts that are neither both contiguous nor
    // row for row (ggml writes block-size times past the destination).
    let wide = ctx.tensor_from_array_as(Type::Q8_0, &Array2::from_elem((4, 64), 2.0f32))?;
    let half = ctx.view(wide, &[4, 32], &[wide.nb()[1]], 0)?;
    let dense = ctx.new_tensor(Type::Q8_0, &[128])?;
    assert_err!(
        compute(&ctx, &[ctx.cpy(half, dense)?]),
        Error::UnsupportedNode { .. }
    );
    // Row for row, it works.
    let same = ctx.new_tensor(Type::Q8_0, &[4, 32])?;
    compute(&ctx, &[ctx.cpy(half, same)?])?;
    let back = ctx.data()?.to_array::<f32>(same)?;
    assert!(back.iter().all(|&v| (v - 2.0).abs() < 0.02), "{back}");
    Ok(())
}

// 6. Non-finite data and importance matrices.
#[test]
fn non_finite_values_are_refused_before_ggml_sees_them() -> Result<()> {
    let ctx = Context::new(1 << 22)?;
    let imatrix = vec![1.0f32; 256];
    for ty in [
        Type::IQ2_XS,
        Type::IQ3_XXS,
        Type::IQ3_S,
        Type::IQ2_S,
        Type::IQ1_M,
        Type::Q4_0,
        Type::Q4_K,
    ] {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut values = Array2::from_elem((2, 256), 0.5f32);
            values[[1, 7]] = bad;
            let t = ctx.new_tensor(ty, &[2, 256])?;
            let mut data = ctx.data()?;
            let result = if ty.requires_imatrix() {
                data.quantize_from_array_with_imatrix(t, &values, &imatrix)
            } else {
                data.copy_from_array(t, &values)
            };
            assert_err!(result, Error::NonFinite { index: 263, .. });
            let mut out = vec![0u8; 2 * ty.row_size(256).unwrap()];
            let flat = values.as_slice().unwrap();
            assert_err!(
                convert::from_f32(ty, flat, &mut out, 256, Some(&imatrix)),
                Error::NonFinite { index: 263, .. }
            );
        }
        // Values so large the i-quants' error sums overflow (and abort).
        let mut values = vec![0.5f32; 256];
        values[9] = 3e20;
        let mut out = vec![0u8; ty.row_size(256).unwrap()];
        let result = convert::from_f32(ty, &values, &mut out, 256, Some(&imatrix));
        if matches!(ty, Type::Q4_0 | Type::Q4_K) {
            result?;
        } else {
            assert_err!(result, Error::OutOfRange { index: 9, .. });
        }
    }
    // Importance weights that are NaN, negative or infinite.
    let values = vec![0.5f32; 256];
    let mut out = vec![0u8; Type::IQ3_S.row_size(256).unwrap()];
    for (index, bad) in [(3, f32::NAN), (4, -1.0), (5, f32::INFINITY)] {
        let mut weights = vec![1.0f32; 256];
        weights[index] = bad;
        assert_err!(
            convert::from_f32(Type::IQ3_S, &values, &mut out, 256, Some(&weights)),
            Error::InvalidImatrix { index: i, .. } if *i == index
        );
    }
    // f16 keeps them.
    let t =
        ctx.tensor_from_array_as(Type::F16, &Array1::from_vec(vec![f32::NAN, f32::INFINITY]))?;
    let back = ctx.data()?.to_array::<f32>(t)?;
    assert!(back[[0]].is_nan() && back[[1]] == f32::INFINITY);
    Ok(())
}

// 7. Thread counts ggml cannot handle are clamped.
#[test]
fn thread_counts_are_clamped() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let a = ctx.tensor_from_array(&Array1::from_elem(64, 1.5f32))?;
    let s = ctx.add(a, a)?;
    let graph = ctx.build_graph(&[s])?;
    let mut data = ctx.data()?;
    for n in [100_000, usize::MAX, ggml::MAX_THREADS + 1] {
        common::compute_with(&graph, &mut data, Compute::new().threads(n))?;
        assert_eq!(data.view::<f32>(s)?[[63]], 3.0);
    }
    ggml::set_max_threads(usize::MAX);
    assert_eq!(ggml::max_threads(), ggml::MAX_THREADS);
    common::compute(&graph, &mut data)?;
    let mut out = vec![0u8; Type::Q8_0.row_size(1 << 20).unwrap()];
    convert::from_f32(Type::Q8_0, &vec![1.0; 1 << 20], &mut out, 1 << 20, None)?;
    ggml::set_max_threads(0);
    Ok(())
}

// 8. Memory the safe API can read is initialised.
#[test]
fn new_tensors_read_as_zeros() -> Result<()> {
    // Dirty a heap chunk of the size the next context will ask for.
    for _ in 0..4 {
        let ctx = Context::new(1 << 16)?;
        let t = ctx.new_tensor(Type::I8, &[60_000])?;
        ctx.data()?.bytes_mut(t)?.fill(0xAB);
    }
    let ctx = Context::new(1 << 16)?;
    let t = ctx.new_tensor(Type::F32, &[15_000])?;
    let data = ctx.data()?;
    assert!(data.bytes(t)?.iter().all(|&b| b == 0));
    assert!(data.view::<f32>(t)?.iter().all(|&v| v == 0.0));
    assert!(data.to_array::<f32>(t)?.iter().all(|&v| v == 0.0));
    Ok(())
}

// 9. Panics where an error is due.
#[test]
fn errors_not_panics() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[0, 2, 32])?;
    let b = ctx.new_tensor(Type::F32, &[1, 3, 32])?;
    assert_err!(ctx.mul_mat(a, b), Error::MatMulShape { .. });
    assert_err!(
        convert::to_f32(Type::Q8_0, &[0u8; 34], &mut [0f32; 31]),
        Error::LengthMismatch { .. }
    );
    assert_err!(
        convert::from_f32(Type::Q8_0, &[0f32; 33], &mut [0u8; 34], 32, None),
        Error::LengthMismatch { .. }
    );
    assert_err!(
        convert::from_f32(Type::Q8_0, &[0f32; 32], &mut [0u8; 34], 0, None),
        Error::LengthMismatch { .. }
    );
    Ok(())
}

// Found by the fuzzer (seeds 1004713, 1006121): a reshape to a shape with a
// dimension of 0 after a non-empty one passed the element-count check
// (ggml's running count skips dimensions of 0) and ggml aborted.
#[test]
fn reshape_to_an_empty_shape_is_a_mismatch() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&Array2::from_elem((8, 32), 1.0f32))?;
    assert_err!(ctx.reshape(t, &[0, 256]), Error::ShapeMismatch { .. });
    assert_err!(ctx.reshape(t, &[256, 0, 1]), Error::ShapeMismatch { .. });
    let e = ctx.new_tensor(Type::F32, &[0, 32])?;
    assert_eq!(ctx.reshape(e, &[32, 0])?.ne(), [0, 32, 1, 1]);
    Ok(())
}

// 10. Empty tensors are ordinary.
#[test]
fn empty_tensors_are_ordinary() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let empty = ctx.tensor_from_array(&Array2::<f32>::zeros((0, 8)))?;
    assert_eq!(empty.shape(), vec![0, 8]);
    let e = ctx.tensor_from_array(&ArrayD::<f32>::zeros(IxDyn(&[3, 0])))?;
    assert_eq!(ctx.data()?.to_array::<f32>(e)?.shape(), &[3, 0]);
    // An inner dimension of 0: a product of zeros.
    let a = ctx.new_tensor(Type::F32, &[3, 0])?;
    let b = ctx.new_tensor(Type::F32, &[2, 0])?;
    let p = ctx.mul_mat(a, b)?;
    compute(&ctx, &[p])?;
    assert_eq!(
        ctx.data()?.to_array::<f32>(p)?,
        Array2::<f32>::zeros((2, 3)).into_dyn()
    );
    // A quantized add of empty tensors.
    let q = ctx.tensor_from_array_as(Type::Q4_0, &Array2::<f32>::zeros((0, 32)))?;
    let f = ctx.new_tensor(Type::F32, &[0, 32])?;
    let s = ctx.add(q, f)?;
    compute(&ctx, &[s])?;
    let mut data = ctx.data()?;
    data.copy_tensor(q, s, false)?;
    assert_eq!(data.to_array::<f32>(s)?.len(), 0);
    let _ = Array::<f32, _>::zeros(0);
    drop(data);
    // Leading empty axes too (they were InvalidShape: ndarray checked the
    // other axes' strides against the empty slice).
    for shape in [&[0, 4][..], &[2, 0, 3], &[0, 1, 5], &[0]] {
        let t = ctx.new_tensor(Type::F32, shape)?;
        let mut data = ctx.data()?;
        assert_eq!(data.to_array::<f32>(t)?.shape(), shape);
        assert_eq!(data.view::<f32>(t)?.shape(), shape);
        assert_eq!(data.view_mut::<f32>(t)?.shape(), shape);
        data.copy_from_array(t, &ArrayD::<f32>::zeros(IxDyn(shape)))?;
    }
    Ok(())
}
