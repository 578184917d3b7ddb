//! Masks, fills, padding and ramps against ndarray: `diag_mask_inf`/`zero`,
//! `tri`, `fill`, `arange`, `pad`/`pad_ext` (zeros and wrap-around),
//! `scale_bias`; their refusals.

use anyhow::Result;
use ggml::ndarray::{ArrayD, IxDyn};
use ggml::ops::Triangle;
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

const EXACT: Tol = Tol { abs: 0.0, rel: 0.0 };

#[test]
fn causal_masks_and_triangles() -> Result<()> {
    let x = eval::input(&[2, 5, 6], 81, 1.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let sq = ctx.tensor_from_array(&eval::input(&[2, 4, 4], 82, 1.0))?;
    let outs = [
        t.diag_mask_inf(1)?,
        t.diag_mask_zero(0)?,
        sq.tri(Triangle::Lower)?,
        sq.tri(Triangle::UpperDiag)?,
    ];
    let got = eval::compute(&ctx, &outs)?;
    let masked = |n_past: usize, v: f32| {
        ArrayD::from_shape_fn(IxDyn(&[2, 5, 6]), |d| {
            if d[2] > n_past + d[1] {
                v
            } else {
                x[[d[0], d[1], d[2]]]
            }
        })
    };
    assert_close(
        &got[0],
        &masked(1, f32::NEG_INFINITY),
        EXACT,
        "diag_mask_inf",
    )?;
    assert_close(&got[1], &masked(0, 0.0), EXACT, "diag_mask_zero")?;
    let s = ctx.data()?.to_array::<f32>(sq)?;
    let tri = |keep: &dyn Fn(usize, usize) -> bool| {
        ArrayD::from_shape_fn(IxDyn(&[2, 4, 4]), |d| {
            if keep(d[1], d[2]) {
                s[[d[0], d[1], d[2]]]
            } else {
                0.0
            }
        })
    };
    assert_close(&got[2], &tri(&|r, c| c < r), EXACT, "lower")?;
    assert_close(
        &got[3],
        &tri(&|r, c| c >= r),
        EXACT,
        "upper with the diagonal",
    )?;
    assert!(matches!(t.diag_mask_inf(-1), Err(Error::Op(_))));
    assert!(
        matches!(t.tri(Triangle::Lower), Err(Error::Op(_))),
        "not square"
    );
    Ok(())
}

#[test]
fn fills_ramps_and_scale_bias() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let h = ctx.new_tensor(Type::F16, &[3, 5])?;
    let a = ctx.arange(-1.0, 2.0, 0.5)?;
    let x = eval::input(&[3, 8], 83, 2.0);
    let tx = ctx.tensor_from_array(&x)?;
    let got = eval::compute(&ctx, &[h.fill(2.5)?, a, tx.scale_bias(-2.0, 0.25)?])?;
    assert_close(
        &got[0],
        &ArrayD::from_elem(IxDyn(&[3, 5]), 2.5),
        EXACT,
        "fill f16",
    )?;
    let ramp = ArrayD::from_shape_vec(IxDyn(&[6]), vec![-1.0, -0.5, 0.0, 0.5, 1.0, 1.5])?;
    assert_close(&got[1], &ramp, EXACT, "arange")?;
    assert_close(
        &got[2],
        &x.mapv(|v| v * -2.0 + 0.25),
        Tol {
            abs: 1e-6,
            rel: 1e-6,
        },
        "scale_bias",
    )?;
    for (start, stop, step) in [
        (1.0, 1.0, 1.0),
        (0.0, 1.0, 0.0),
        (0.0, 1.0, -1.0),
        (0.0, f32::NAN, 1.0),
        (0.0, 1e30, 1e-6),
    ] {
        assert!(
            matches!(ctx.arange(start, stop, step), Err(Error::Op(_))),
            "arange({start}, {stop}, {step})"
        );
    }
    assert!(matches!(
        ctx.new_tensor(Type::Q8_0, &[32])?.fill(1.0),
        Err(Error::Op(_))
    ));
    Ok(())
}

#[test]
fn padding_with_zeros_and_wrapping_around() -> Result<()> {
    let x = eval::input(&[3, 4], 84, 1.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    // ggml dimension 0 (ndarray axis 1): 1 before, 2 after; dimension 1: 2 after.
    let pads = [(1, 2), (0, 2), (0, 0), (0, 0)];
    let got = eval::compute(
        &ctx,
        &[
            t.pad_ext(pads, false)?,
            t.pad_ext(pads, true)?,
            t.pad([1, 1, 0, 0])?,
        ],
    )?;
    let zeros = ArrayD::from_shape_fn(IxDyn(&[5, 7]), |d| {
        let (r, c) = (d[0], d[1] as i64 - 1);
        if r < 3 && (0..4).contains(&c) {
            x[[r, c as usize]]
        } else {
            0.0
        }
    });
    let wrap = ArrayD::from_shape_fn(IxDyn(&[5, 7]), |d| x[[d[0] % 3, (d[1] + 4 - 1) % 4]]);
    let after = ArrayD::from_shape_fn(IxDyn(&[4, 5]), |d| {
        if d[0] < 3 && d[1] < 4 {
            x[[d[0], d[1]]]
        } else {
            0.0
        }
    });
    assert_close(&got[0], &zeros, EXACT, "zero pads")?;
    assert_close(&got[1], &wrap, EXACT, "wrap-around pads")?;
    assert_close(&got[2], &after, EXACT, "pad")?;
    // Negative pads crop (ggml's kernel reads inside the operand): 1 off
    // the front of dimension 0 and 2 zeros after it, 1 off the end of
    // dimension 1.
    let cropped = t.pad_ext([(-1, 2), (0, -1), (0, 0), (0, 0)], false)?;
    let got = &eval::compute(&ctx, &[cropped])?[0];
    let want = ArrayD::from_shape_fn(IxDyn(&[2, 5]), |d| {
        if d[1] < 3 {
            x[[d[0], d[1] + 1]]
        } else {
            0.0
        }
    });
    assert_close(got, &want, EXACT, "negative pads")?;
    for pads in [
        [(-5, 0), (0, 0), (0, 0), (0, 0)],
        [(i64::from(i32::MIN) - 1, 0), (0, 0), (0, 0), (0, 0)],
    ] {
        assert!(
            matches!(t.pad_ext(pads, false), Err(Error::Op(_))),
            "{pads:?}: a negative size or a pad outside i32"
        );
    }
    assert!(
        matches!(
            t.pad_ext([(-1, 0), (0, 0), (0, 0), (0, 0)], true),
            Err(Error::Op(_))
        ),
        "a negative wrap-around pad"
    );
    assert!(
        matches!(
            t.pad_ext([(5, 0), (0, 0), (0, 0), (0, 0)], true),
            Err(Error::Op(_))
        ),
        "wrapping wider than the tensor"
    );
    Ok(())
}
