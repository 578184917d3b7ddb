//! Every precondition ggml would `GGML_ASSERT` on comes back as an `Error`
//! naming the values involved, and the process carries on.

use anyhow::Result;
use ggml::ndarray::{Array, Ix1};
use ggml::{Context, Error, Type};

use crate::common;

/// After each failure, prove the process (and ggml) still work.
fn still_alive() {
    let ctx = Context::new(1 << 20).unwrap();
    let a = ctx.tensor_from_array(&Array::from_elem(4, 2.0f32)).unwrap();
    let s = ctx.add(a, a).unwrap();
    let g = ctx.build_graph(&[s]).unwrap();
    let mut data = ctx.data().unwrap();
    common::compute(&g, &mut data).unwrap();
    assert_eq!(data.view_as::<f32, Ix1>(s).unwrap()[0], 4.0);
}

#[test]
fn context_out_of_memory() -> Result<()> {
    let ctx = Context::new(4096)?;
    let err = ctx.new_tensor(Type::F32, &[1024, 1024]).unwrap_err();
    let Error::OutOfMemory {
        needed,
        available,
        mem_size,
        what,
    } = &err
    else {
        panic!("{err}")
    };
    assert!(needed > available && *mem_size >= 4096, "{err}");
    assert!(what.contains("[1024, 1024]"), "{err}");
    still_alive();
    Ok(())
}

#[test]
fn graph_that_does_not_fit() -> Result<()> {
    let ctx = Context::new(64 * 1024)?;
    let mut x = ctx.new_tensor(Type::F32, &[1])?;
    let mut err = None;
    for _ in 0..10_000 {
        match ctx.add(x, x) {
            Ok(t) => x = t,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert!(matches!(err, Some(Error::OutOfMemory { .. })));
    // The tensors fit; a graph over them no longer does.
    let err = ctx.build_graph(&[x]).unwrap_err();
    assert!(
        matches!(&err, Error::OutOfMemory { what, .. } if what.contains("graph")),
        "{err}"
    );
    still_alive();
    Ok(())
}

#[test]
fn shapes_that_do_not_broadcast_or_multiply() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[3, 4])?;
    let b = ctx.new_tensor(Type::F32, &[3, 3])?;
    let err = ctx.add(a, b).unwrap_err();
    assert_eq!(
        err,
        Error::NotBroadcastable {
            op: "add",
            lhs: vec![3, 4],
            rhs: vec![3, 3]
        }
    );
    assert!(err.to_string().contains("[3, 3]") && err.to_string().contains("[3, 4]"));
    let err = ctx.mul(b, a).unwrap_err();
    assert!(
        matches!(err, Error::NotBroadcastable { op: "mul", .. }),
        "{err}"
    );
    let err = ctx.mul_mat(a, b).unwrap_err();
    assert_eq!(
        err,
        Error::MatMulShape {
            a: [4, 3, 1, 1],
            b: [3, 3, 1, 1]
        }
    );
    let err = ctx.reshape(a, &[5, 2]).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { op: "reshape", .. }),
        "{err}"
    );
    let err = ctx.cpy(a, b).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { op: "cpy", .. }),
        "{err}"
    );
    let err = ctx.new_tensor(Type::F32, &[1, 2, 3, 4, 5]).unwrap_err();
    assert!(matches!(err, Error::InvalidShape { .. }), "{err}");
    still_alive();
    Ok(())
}

#[test]
fn block_size_and_imatrix_requirements() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let err = ctx.new_tensor(Type::Q4_K, &[2, 100]).unwrap_err();
    assert_eq!(
        err,
        Error::BlockSize {
            ty: Type::Q4_K,
            block_size: 256,
            row_len: 100
        }
    );
    assert!(
        err.to_string().contains("256") && err.to_string().contains("100"),
        "{err}"
    );
    let t = ctx.new_tensor(Type::IQ2_XXS, &[256])?;
    let mut data = ctx.data()?;
    let err = data
        .copy_from_array(t, &Array::from_elem(256, 1.0f32))
        .unwrap_err();
    assert_eq!(err, Error::RequiresImatrix { ty: Type::IQ2_XXS });
    let err = data
        .quantize_from_array_with_imatrix(t, &Array::from_elem(256, 1.0f32), &[1.0; 3])
        .unwrap_err();
    assert_eq!(
        err,
        Error::ImatrixLength {
            len: 3,
            row_len: 256
        }
    );
    data.quantize_from_array_with_imatrix(t, &Array::linspace(-1.0f32, 1.0, 256), &[1.0; 256])?;
    let q81 = ctx.new_tensor(Type::Q8_K, &[256])?;
    let err = data
        .copy_from_array(q81, &Array::from_elem(256, 1.0f32))
        .unwrap_err();
    assert_eq!(err, Error::NotQuantizable { ty: Type::Q8_K });
    drop(data);
    still_alive();
    Ok(())
}

#[test]
fn non_contiguous_where_contiguity_is_required() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[4, 8])?;
    let at = ctx.transpose(a)?;
    let err = ctx.reshape(at, &[32]).unwrap_err();
    assert!(
        matches!(&err, Error::NotContiguous { op: "reshape", nb, .. } if nb[0] == 32),
        "{err}"
    );
    let err = ctx.scale(at, 2.0).unwrap_err();
    assert!(
        matches!(err, Error::NotContiguous { op: "scale", .. }),
        "{err}"
    );
    let err = ctx.mul_mat(at, a).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotContiguous { op: "mul_mat", .. } | Error::MatMulShape { .. }
        ),
        "{err}"
    );
    let data = ctx.data()?;
    let err = data.bytes(at).unwrap_err();
    assert!(matches!(err, Error::NotContiguous { .. }), "{err}");
    drop(data);
    still_alive();
    Ok(())
}

/// Builds `node` into a graph and computes it: the CPU kernel contracts are
/// checked then, node by node.
fn compute_err<'a>(ctx: &'a Context, node: ggml::Tensor<'a>) -> Error {
    let graph = ctx.build_graph(&[node]).unwrap();
    let mut data = ctx.data().unwrap();
    common::compute(&graph, &mut data).unwrap_err()
}

#[test]
fn unsupported_type_combinations() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let i = ctx.new_tensor(Type::I32, &[4])?;
    let f = ctx.new_tensor(Type::F32, &[4])?;
    let h = ctx.new_tensor(Type::F16, &[4])?;
    let i16t = ctx.new_tensor(Type::I16, &[4])?;
    let q = ctx.new_tensor(Type::Q4_0, &[32])?;
    let q2 = ctx.new_tensor(Type::Q4_0, &[32])?;
    let iq = ctx.new_tensor(Type::IQ2_XS, &[256])?;
    let iqf = ctx.new_tensor(Type::F32, &[256])?;
    let q81 = ctx.new_tensor(Type::Q8_1, &[32])?;
    let f32x32 = ctx.new_tensor(Type::F32, &[32])?;
    // Each builds (ggml's builders accept them), and computing is refused with
    // the node, its op, the types and what the CPU lacks.
    let cases = [
        (ctx.add(i, i)?, "add", vec![Type::I32, Type::I32, Type::I32]),
        (ctx.add(f, h)?, "add", vec![Type::F32, Type::F16, Type::F32]),
        (
            ctx.add(q, q2)?,
            "add",
            vec![Type::Q4_0, Type::Q4_0, Type::Q4_0],
        ),
        // IQ2_XS has no CPU quantizer: ggml would overflow the heap.
        (
            ctx.add(iq, iqf)?,
            "add",
            vec![Type::IQ2_XS, Type::F32, Type::IQ2_XS],
        ),
        (
            ctx.mul_mat(f, i)?,
            "mul_mat",
            vec![Type::F32, Type::I32, Type::F32],
        ),
        // Q8_1 has no dot product: ggml would call a null function pointer.
        (
            ctx.mul_mat(q81, f32x32)?,
            "mul_mat",
            vec![Type::Q8_1, Type::F32, Type::F32],
        ),
        (
            ctx.cpy(i16t, f)?,
            "cpy",
            vec![Type::I16, Type::F32, Type::F32],
        ),
        // f16 -> i32 writes to a work buffer ggml never sizes.
        (ctx.cpy(h, i)?, "cpy", vec![Type::F16, Type::I32, Type::I32]),
        (ctx.scale(i, 2.0)?, "scale", vec![Type::I32, Type::I32]),
        (ctx.scale(h, 2.0)?, "scale", vec![Type::F16, Type::F16]),
    ];
    for (node, op, types) in cases {
        let err = compute_err(&ctx, node);
        let Error::UnsupportedNode {
            op: got_op,
            types: got_types,
            backend,
            ..
        } = &err
        else {
            panic!("{op}: {err}")
        };
        assert_eq!(
            (*got_op, got_types, backend.as_str()),
            (op, &types, "the CPU backend"),
            "{err}"
        );
    }
    still_alive();
    Ok(())
}

#[test]
fn views_that_cannot_be() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let q = ctx.new_tensor(Type::Q8_0, &[64])?;
    let f = ctx.new_tensor(Type::F32, &[64])?;
    let data = ctx.data()?;
    let err = data.view::<f32>(q).unwrap_err();
    assert!(
        matches!(&err, Error::QuantizedView { ty: Type::Q8_0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("q8_0"), "{err}");
    let err = data.view::<i32>(f).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ElementType {
                expected: Type::I32,
                actual: Type::F32,
                ..
            }
        ),
        "{err}"
    );
    let err = data.view_as::<f32, ggml::ndarray::Ix0>(f).unwrap_err();
    assert!(matches!(err, Error::InvalidShape { .. }), "{err}");
    drop(data);
    let err = ctx.view(f, &[65], &[], 0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ViewOutOfBounds {
                needed: 260,
                available: 256,
                ..
            }
        ),
        "{err}"
    );
    let err = ctx.view(f, &[8], &[], 232).unwrap_err();
    assert!(
        matches!(err, Error::ViewOutOfBounds { offset: 232, .. }),
        "{err}"
    );
    let err = ctx.permute(f, [0, 0, 1, 2]).unwrap_err();
    assert_eq!(err, Error::InvalidAxes { axes: [0, 0, 1, 2] });
    still_alive();
    Ok(())
}

#[test]
fn no_data_wrong_context_and_double_borrow() -> Result<()> {
    let meta = Context::new_no_alloc(1 << 16)?;
    let t = meta.new_tensor(Type::F32, &[16])?;
    let data = meta.data()?;
    assert!(matches!(
        data.view::<f32>(t).unwrap_err(),
        Error::NoData { .. }
    ));
    assert_eq!(meta.data().unwrap_err(), Error::DataBorrowed);
    drop(data);
    assert!(meta.data().is_ok(), "the token is given back when dropped");

    let ctx_a = Context::new(1 << 16)?;
    let ctx_b = Context::new(1 << 16)?;
    let a = ctx_a.new_tensor(Type::F32, &[4])?;
    let b = ctx_b.new_tensor(Type::F32, &[4])?;
    assert!(matches!(
        ctx_a.add(a, b).unwrap_err(),
        Error::WrongContext { .. }
    ));
    let data_b = ctx_b.data()?;
    assert!(matches!(
        data_b.view::<f32>(a).unwrap_err(),
        Error::WrongContext { .. }
    ));
    let graph_a = ctx_a.build_graph(&[a])?;
    let mut data_b = data_b;
    assert!(matches!(
        common::compute(&graph_a, &mut data_b).unwrap_err(),
        Error::WrongContext { .. }
    ));
    still_alive();
    Ok(())
}

#[test]
fn unknown_type_values_and_caller_buffers() -> Result<()> {
    assert_eq!(Type::try_from(4u32).unwrap_err(), Error::UnknownType(4)); // Q4_2, removed
    assert_eq!(
        Type::try_from(10_000u32).unwrap_err(),
        Error::UnknownType(10_000)
    );
    // A caller-given buffer, reused after the context is gone.
    let ctx = Context::with_buffer(vec![0u8; 1 << 16], false)?;
    let t = ctx.tensor_from_array(&Array::from_elem(8, 1.5f32))?;
    assert_eq!(ctx.data()?.view_as::<f32, Ix1>(t)?[7], 1.5);
    assert!(ctx.mem_size() <= 1 << 16 && ctx.mem_size() >= (1 << 16) - 15);
    assert_eq!(ctx.into_buffer().map(|b| b.len()), Some(1 << 16));
    still_alive();
    Ok(())
}
