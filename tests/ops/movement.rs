//! Data movement against ndarray: `cont_4d` of a transposed tensor, `dup`,
//! `cast` between types, `repeat` (tiling), `concat` along every dimension.

use anyhow::Result;
use ggml::ndarray::{concatenate, Array, ArrayD, Axis, IxDyn};
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

const EXACT: Tol = Tol { abs: 0.0, rel: 0.0 };

#[test]
fn cont_4d_and_dup_copy_in_order() -> Result<()> {
    let x = eval::input(&[6, 4], 61, 3.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    // The transpose made contiguous, then seen as [2, 12] (ndarray order).
    let y = t.transpose()?.cont_4d([12, 2, 1, 1])?;
    let d = t.dup()?;
    let got = eval::compute(&ctx, &[y, d])?;
    let want = x.t().to_owned().into_shape_clone(IxDyn(&[2, 12]))?;
    assert_close(&got[0], &want, EXACT, "cont_4d of a transpose")?;
    assert_close(&got[1], &x, EXACT, "dup")?;
    assert!(
        matches!(t.cont_4d([5, 5, 1, 1]), Err(Error::Op(_))),
        "25 elements of 24"
    );
    Ok(())
}

#[test]
fn cast_between_types() -> Result<()> {
    let x = eval::input(&[3, 64], 62, 2.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let h = t.cast(Type::F16)?;
    let back = h.cast(Type::F32)?;
    let q = t.cast(Type::Q8_0)?;
    let qback = q.cast(Type::F32)?;
    let i = t.cast(Type::I32)?;
    let got = eval::compute(&ctx, &[back, qback, i])?;
    assert_close(
        &got[0],
        &eval::rounded(&x, Type::F16),
        EXACT,
        "f32 -> f16 -> f32",
    )?;
    // The reference quantization: the crate's own row quantizer (ggml's
    // from_float), read back through its dequantizer.
    let reference = ctx.tensor_from_array_as(Type::Q8_0, &x)?;
    let data = ctx.data()?;
    assert_close(
        &got[1],
        &data.to_array::<f32>(reference)?,
        EXACT,
        "f32 -> q8_0 -> f32",
    )?;
    assert_eq!(got[2], x.mapv(|v| v.trunc()), "f32 -> i32 truncates");
    Ok(())
}

#[test]
fn repeat_tiles_like_ndarray() -> Result<()> {
    let x = eval::input(&[2, 3], 63, 1.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let like = ctx.new_tensor(Type::F32, &[2, 4, 6])?;
    let y = t.repeat(like)?;
    let z = t.repeat_4d([9, 2, 1, 1])?;
    let got = eval::compute(&ctx, &[y, z])?;
    let want_y = ArrayD::from_shape_fn(IxDyn(&[2, 4, 6]), |d| x[[d[1] % 2, d[2] % 3]]);
    let want_z = ArrayD::from_shape_fn(IxDyn(&[2, 9]), |d| x[[d[0] % 2, d[1] % 3]]);
    assert_close(&got[0], &want_y, EXACT, "repeat")?;
    assert_close(&got[1], &want_z, EXACT, "repeat_4d")?;
    assert!(
        matches!(t.repeat_4d([4, 2, 1, 1]), Err(Error::Op(_))),
        "3 does not divide 4"
    );
    let empty = ctx.new_tensor(Type::F32, &[0, 3])?;
    assert!(
        matches!(empty.repeat_4d([3, 2, 1, 1]), Err(Error::Op(_))),
        "an empty tensor to a non-empty shape"
    );
    Ok(())
}

#[test]
fn concat_along_each_dimension() -> Result<()> {
    let a = eval::input(&[2, 3, 4], 64, 1.0);
    for dim in 0..3 {
        // ggml's dimension `dim` is ndarray axis 2 - dim.
        let axis = 2 - dim;
        let mut shape_b = vec![2, 3, 4];
        shape_b[axis] = 5;
        let b = eval::input(&shape_b, 65, 1.0);
        for ty in [Type::F32, Type::F16] {
            let ctx = Context::new(1 << 20)?;
            let (ta, tb) = (
                ctx.tensor_from_array_as(ty, &a)?,
                ctx.tensor_from_array_as(ty, &b)?,
            );
            let y = ta.concat(tb, dim)?;
            let got = &eval::compute(&ctx, &[y])?[0];
            let want = concatenate(
                Axis(axis),
                &[eval::rounded(&a, ty).view(), eval::rounded(&b, ty).view()],
            )?;
            assert_close(got, &want, EXACT, &format!("concat dim {dim} {ty}"))?;
        }
    }
    let ctx = Context::new(1 << 20)?;
    let ta = ctx.tensor_from_array(&a)?;
    let other = ctx.tensor_from_array(&Array::<f32, _>::zeros((2, 5, 4)))?;
    assert!(
        matches!(ta.concat(other, 0), Err(Error::Op(_))),
        "unequal in another dimension"
    );
    assert!(matches!(ta.concat(ta, 4), Err(Error::Op(_))), "dim 4");
    let h = ctx.new_tensor(Type::F16, &[2, 3, 4])?;
    assert!(matches!(ta.concat(h, 0), Err(Error::Op(_))), "two types");
    Ok(())
}
