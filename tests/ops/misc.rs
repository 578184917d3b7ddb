//! The remaining element-wise and shape ops against ndarray: `add_id`,
//! `add_cast`, `diag`, `roll`, `pad_reflect_1d`, `timestep_embedding`,
//! `win_part`/`win_unpart`, `get_rel_pos`, `add_rel_pos`.

use anyhow::Result;
use ggml::ndarray::{arr1, Array2, ArrayD, IxDyn};
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

const EXACT: Tol = Tol { abs: 0.0, rel: 0.0 };

#[test]
fn expert_biases_and_casting_adds() -> Result<()> {
    // a [t=2, e=3, n=4] + b row ids[e, t].
    let a = eval::input(&[2, 3, 4], 101, 1.0);
    let b = eval::input(&[5, 4], 102, 1.0);
    let ids = Array2::from_shape_vec((2, 3), vec![4i32, 0, 2, 1, 1, 3])?;
    let ctx = Context::new(1 << 20)?;
    let (ta, tb, ti) = (
        ctx.tensor_from_array(&a)?,
        ctx.tensor_from_array(&b)?,
        ctx.tensor_from_array(&ids)?,
    );
    let h = ctx.tensor_from_array_as(Type::F16, &a)?;
    let got = eval::compute(&ctx, &[ta.add_id(tb, ti)?, h.add_cast(ta, Type::F32)?])?;
    let want = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |d| {
        a[[d[0], d[1], d[2]]] + b[[ids[[d[0], d[1]]] as usize, d[2]]]
    });
    assert_close(
        &got[0],
        &want,
        Tol {
            abs: 1e-6,
            rel: 1e-6,
        },
        "add_id",
    )?;
    let want = eval::rounded(&a, Type::F16) + &a;
    assert_close(
        &got[1],
        &want,
        Tol {
            abs: 1e-6,
            rel: 1e-6,
        },
        "add_cast f16 + f32 -> f32",
    )?;
    assert!(
        matches!(ta.add_cast(ta, Type::F32), Err(Error::Op(_))),
        "an f32 tensor"
    );
    // An id past b's rows is refused before computing.
    let bad = ctx.tensor_from_array(&Array2::from_shape_vec((2, 3), vec![5i32, 0, 0, 0, 0, 0])?)?;
    let y = ta.add_id(tb, bad)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::Op(_))
    ));
    Ok(())
}

#[test]
fn diagonals_rolls_and_reflections() -> Result<()> {
    let v = eval::input(&[2, 1, 5], 103, 1.0);
    let m = eval::input(&[3, 4], 104, 1.0);
    let ctx = Context::new(1 << 20)?;
    let (tv, tm) = (ctx.tensor_from_array(&v)?, ctx.tensor_from_array(&m)?);
    let got = eval::compute(
        &ctx,
        &[
            tv.diag()?,
            tm.roll([1, -1, 0, 0])?,
            tm.pad_reflect_1d(2, 1)?,
        ],
    )?;
    let diag = ArrayD::from_shape_fn(IxDyn(&[2, 5, 5]), |d| {
        if d[1] == d[2] {
            v[[d[0], 0, d[2]]]
        } else {
            0.0
        }
    });
    assert_close(&got[0], &diag, EXACT, "diag")?;
    // ggml dimension 0 (ndarray axis 1) by +1, dimension 1 by -1.
    let rolled = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |d| m[[(d[0] + 1) % 3, (d[1] + 3) % 4]]);
    assert_close(&got[1], &rolled, EXACT, "roll")?;
    let reflect = |i: i64| -> usize {
        (if i < 0 {
            -i
        } else if i >= 4 {
            2 * 3 - i
        } else {
            i
        }) as usize
    };
    let padded = ArrayD::from_shape_fn(IxDyn(&[3, 7]), |d| m[[d[0], reflect(d[1] as i64 - 2)]]);
    assert_close(&got[2], &padded, EXACT, "pad_reflect_1d")?;
    assert!(
        matches!(tm.roll([4, 0, 0, 0]), Err(Error::Op(_))),
        "a shift as long as the row"
    );
    assert!(
        matches!(tm.pad_reflect_1d(4, 0), Err(Error::Op(_))),
        "a reflection past the row"
    );
    Ok(())
}

#[test]
fn timestep_embeddings() -> Result<()> {
    let t = arr1(&[0.0f32, 1.0, 7.5]);
    let (dim, max_period) = (6usize, 10_000i64);
    let ctx = Context::new(1 << 20)?;
    let y = ctx
        .tensor_from_array(&t)?
        .timestep_embedding(dim as i64, max_period)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    let half = dim / 2;
    let want = ArrayD::from_shape_fn(IxDyn(&[3, dim]), |d| {
        let j = d[1] % half;
        let freq = (-(max_period as f64).ln() * j as f64 / half as f64).exp();
        let arg = f64::from(t[d[0]]) * freq;
        (if d[1] < half { arg.cos() } else { arg.sin() }) as f32
    });
    assert_close(
        got,
        &want,
        Tol {
            abs: 1e-5,
            rel: 1e-5,
        },
        "timestep_embedding",
    )
}

#[test]
fn windows_round_trip_and_relative_positions() -> Result<()> {
    // A [h0=5, w0=3, c=2] map in windows of 2: 2×3 windows, padded.
    let x = eval::input(&[5, 3, 2], 105, 1.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let parts = t.win_part(2)?;
    assert_eq!(parts.ne(), [2, 2, 2, 6]);
    let back = parts.win_unpart(3, 5, 2)?;
    let table = ctx.tensor_from_array_as(Type::F16, &eval::input(&[5, 4], 106, 1.0))?;
    let rel = table.get_rel_pos(3)?;
    let got = eval::compute(&ctx, &[back])?;
    assert_close(&got[0], &x, EXACT, "win_part then win_unpart")?;
    let rel_got = &eval::compute(&ctx, &[rel])?[0];
    let tab = ctx.data()?.to_array::<f32>(table)?;
    // Row (q, k) of the result is table row q - k + size - 1 (SAM's rule).
    let want = ArrayD::from_shape_fn(IxDyn(&[3, 3, 4]), |d| tab[[d[0] + 2 - d[1], d[2]]]);
    assert_close(rel_got, &want, EXACT, "get_rel_pos")?;
    assert!(matches!(t.win_part(0), Err(Error::Op(_))), "windows of 0");
    assert!(
        matches!(parts.win_unpart(3, 9, 2), Err(Error::Op(_))),
        "more windows than the tensor holds"
    );
    assert!(
        matches!(table.get_rel_pos(2), Err(Error::Op(_))),
        "a table of another length"
    );
    Ok(())
}

#[test]
fn decomposed_relative_positions_are_added() -> Result<()> {
    // a [b=2, h·h'=6, w²=4]; pw, ph [b=2, h'=3, h=2, w=2].
    let a = eval::input(&[2, 6, 4], 107, 1.0);
    let pw = eval::input(&[2, 3, 2, 2], 108, 1.0);
    let ph = eval::input(&[2, 3, 2, 2], 109, 1.0);
    let ctx = Context::new(1 << 20)?;
    let (ta, tw, th) = (
        ctx.tensor_from_array(&a)?,
        ctx.tensor_from_array(&pw)?,
        ctx.tensor_from_array(&ph)?,
    );
    let y = ta.add_rel_pos(tw, th)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    // ggml: dst[i3][i2 (= jh·h + jw... )][k] = a + pw[i3][i2][k % w] + ph[i3][i2][k / w] in its flattening.
    let want = ArrayD::from_shape_fn(IxDyn(&[2, 6, 4]), |d| {
        let (b, row, k) = (d[0], d[1], d[2]);
        let (r1, r0) = (row / 2, row % 2);
        a[[b, row, k]] + pw[[b, r1, r0, k % 2]] + ph[[b, r1, r0, k / 2]]
    });
    assert_close(
        got,
        &want,
        Tol {
            abs: 1e-6,
            rel: 1e-6,
        },
        "add_rel_pos",
    )
}

#[test]
fn timestep_periods_outside_int_are_errors() -> Result<()> {
    // i64::MIN once made the check itself overflow (found by the fuzzer).
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&arr1(&[1.0f32]))?;
    for period in [i64::MIN, i64::from(i32::MAX) + 1] {
        assert!(
            matches!(t.timestep_embedding(4, period), Err(Error::Op(_))),
            "{period}"
        );
    }
    Ok(())
}
