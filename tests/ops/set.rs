//! `set`, `set_1d`, `set_2d` and `acc` against ndarray slice assignment;
//! views outside the tensor and overlapping views refused.

use anyhow::Result;
use ggml::ndarray::{s, Array2};
use ggml::ops::ViewAt;
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

#[test]
fn writes_into_views_as_slice_assignment_does() -> Result<()> {
    // a [4, 6]; b [2, 3] written at row 1, column 2 (offset 1·24 + 2·4).
    let a = eval::input(&[4, 6], 111, 1.0);
    let b = eval::input(&[2, 3], 112, 1.0);
    let ctx = Context::new(1 << 20)?;
    let (ta, tb) = (ctx.tensor_from_array(&a)?, ctx.tensor_from_array(&b)?);
    let at = ViewAt {
        nb: [24, 48, 48],
        offset: 24 + 8,
    };
    let row = ctx.tensor_from_array(&eval::input(&[5], 113, 1.0))?;
    let got = eval::compute(
        &ctx,
        &[
            ta.set(tb, at)?,
            ta.acc(tb, at)?,
            ta.set_1d(row, 4)?,
            ta.set_2d(tb, 24, 0)?,
        ],
    )?;
    let mut set = a.clone();
    set.slice_mut(s![1..3, 2..5]).assign(&b);
    let mut acc = a.clone();
    acc.slice_mut(s![1..3, 2..5])
        .zip_mut_with(&b, |x, y| *x += y);
    let flat = a.clone().into_shape_with_order(24)?;
    let mut one = flat.clone();
    one.slice_mut(s![1..6])
        .assign(&ctx.data()?.to_array::<f32>(row)?.into_shape_with_order(5)?);
    let mut two = a.clone();
    two.slice_mut(s![0..2, 0..3]).assign(&b);
    assert_close(&got[0], &set, Tol { abs: 0.0, rel: 0.0 }, "set")?;
    assert_close(
        &got[1],
        &acc,
        Tol {
            abs: 1e-6,
            rel: 1e-6,
        },
        "acc",
    )?;
    assert_close(
        &got[2],
        &one.into_shape_with_order(vec![4, 6])?,
        Tol { abs: 0.0, rel: 0.0 },
        "set_1d",
    )?;
    assert_close(&got[3], &two, Tol { abs: 0.0, rel: 0.0 }, "set_2d")?;
    Ok(())
}

#[test]
fn views_outside_or_overlapping_are_refused() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[4, 6])?;
    let b = ctx.tensor_from_array(&Array2::<f32>::zeros((2, 3)))?;
    // The last element would start inside the tensor but end outside it
    // (ggml's own check lets that through).
    let edge = ViewAt {
        nb: [24, 48, 48],
        offset: 96 - 24 - 12 + 4,
    };
    assert!(
        matches!(a.set(b, edge), Err(Error::Op(_))),
        "past the end by one element"
    );
    let overlapping = ViewAt {
        nb: [4, 48, 48],
        offset: 0,
    };
    assert!(
        matches!(a.acc(b, overlapping), Err(Error::Op(_))),
        "rows sharing bytes"
    );
    let misaligned = ViewAt {
        nb: [24, 48, 48],
        offset: 2,
    };
    assert!(
        matches!(a.set(b, misaligned), Err(Error::Op(_))),
        "half an element in"
    );
    let h = ctx.new_tensor(Type::F16, &[2, 3])?;
    assert!(
        matches!(
            a.set(
                h,
                ViewAt {
                    nb: [24, 48, 48],
                    offset: 0
                }
            ),
            Err(Error::Op(_))
        ),
        "another type"
    );
    let view_of_a = a.view(&[2, 3], &[24], 0)?;
    assert!(
        matches!(
            a.set_inplace(
                view_of_a,
                ViewAt {
                    nb: [24, 48, 48],
                    offset: 4
                }
            ),
            Err(Error::Op(_))
        ),
        "in place from itself"
    );
    Ok(())
}
