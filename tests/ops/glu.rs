//! The GLU family against references written here: every unit, on row
//! halves (plain and swapped) and with a separate gate, in f32, f16 and
//! bf16; `swiglu_oai` and `swiglu_clamp` with their parameters; refusals.

use anyhow::Result;
use ggml::ndarray::{s, ArrayD};
use ggml::ops::GluOp;
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, erf, Tol};

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The activation of each unit.
fn act(op: GluOp, x: f32) -> f32 {
    match op {
        GluOp::Reglu => x.max(0.0),
        GluOp::Geglu => {
            let c = (2.0f32 / std::f32::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
        }
        GluOp::Swiglu => x * sigmoid(x),
        GluOp::GegluErf => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
        GluOp::GegluQuick => x * sigmoid(1.702 * x),
        _ => unreachable!(),
    }
}

const UNITS: [GluOp; 5] = [
    GluOp::Reglu,
    GluOp::Geglu,
    GluOp::Swiglu,
    GluOp::GegluErf,
    GluOp::GegluQuick,
];

fn tol(op: GluOp, ty: Type) -> Tol {
    let base = match op {
        // ggml's GELU table is indexed by the f16 of x.
        GluOp::Geglu | GluOp::GegluQuick => Tol {
            abs: 3e-3,
            rel: 3e-3,
        },
        _ => Tol {
            abs: 2e-6,
            rel: 2e-6,
        },
    };
    // x and g each rounded, then the product: two roundings of the type.
    let t = Tol::of(ty, base);
    Tol::of(ty, t)
}

/// `act(x) * g` elementwise.
fn reference(op: GluOp, x: &ArrayD<f32>, g: &ArrayD<f32>) -> ArrayD<f32> {
    let mut out = x.mapv(|v| act(op, v));
    out *= g;
    out
}

#[test]
fn every_unit_on_row_halves_swapped_and_split() -> Result<()> {
    let input = eval::input(&[2, 3, 18], 5, 3.0);
    let gate = eval::input(&[2, 3, 9], 6, 2.0);
    for ty in [Type::F32, Type::F16, Type::BF16] {
        let xr = eval::rounded(&input, ty);
        let gr = eval::rounded(&gate, ty);
        let first = xr.slice(s![.., .., ..9]).to_owned().into_dyn();
        let second = xr.slice(s![.., .., 9..]).to_owned().into_dyn();
        for op in UNITS {
            let ctx = Context::new(1 << 20)?;
            let a = ctx.tensor_from_array_as(ty, &input)?;
            let g = ctx.tensor_from_array_as(ty, &gate)?;
            let x9 = ctx.tensor_from_array_as(ty, &input.slice(s![.., .., ..9]).to_owned())?;
            let plain = a.glu(op, false)?;
            let swapped = a.glu(op, true)?;
            let split = x9.glu_split(g, op)?;
            assert_eq!(plain.shape(), vec![2, 3, 9]);
            let got = eval::compute(&ctx, &[plain, swapped, split])?;
            let what = format!("{} {ty}", op.name());
            assert_close(&got[0], &reference(op, &first, &second), tol(op, ty), &what)?;
            assert_close(
                &got[1],
                &reference(op, &second, &first),
                tol(op, ty),
                &format!("{what} swapped"),
            )?;
            assert_close(
                &got[2],
                &reference(op, &first, &gr),
                tol(op, ty),
                &format!("{what} split"),
            )?;
        }
    }
    Ok(())
}

#[test]
fn named_methods_and_odd_rows() -> Result<()> {
    // An odd row length: the last value is dropped (ggml halves ne[0]
    // rounding down).
    let input = eval::input(&[4, 11], 7, 2.0);
    let ctx = Context::new(1 << 20)?;
    let a = ctx.tensor_from_array(&input)?;
    let outs = [a.swiglu()?, a.reglu_swapped()?, a.geglu_erf()?];
    let got = eval::compute(&ctx, &outs)?;
    let x = input.slice(s![.., ..5]).to_owned().into_dyn();
    let g = input.slice(s![.., 5..10]).to_owned().into_dyn();
    assert_close(
        &got[0],
        &reference(GluOp::Swiglu, &x, &g),
        tol(GluOp::Swiglu, Type::F32),
        "swiglu",
    )?;
    assert_close(
        &got[1],
        &reference(GluOp::Reglu, &g, &x),
        tol(GluOp::Reglu, Type::F32),
        "reglu_swapped",
    )?;
    assert_close(
        &got[2],
        &reference(GluOp::GegluErf, &x, &g),
        tol(GluOp::GegluErf, Type::F32),
        "geglu_erf",
    )?;
    Ok(())
}

#[test]
fn swiglu_oai_and_clamp_use_their_parameters() -> Result<()> {
    let input = eval::input(&[3, 16], 8, 6.0);
    let (alpha, limit) = (1.702f32, 2.5f32);
    let ctx = Context::new(1 << 20)?;
    let a = ctx.tensor_from_array(&input)?;
    let oai = a.swiglu_oai(None, alpha, limit)?;
    let clamp = a.swiglu_clamp(None, limit)?;
    let got = eval::compute(&ctx, &[oai, clamp])?;
    let x = input.slice(s![.., ..8]);
    let g = input.slice(s![.., 8..]);
    let mut want_oai = ArrayD::zeros(vec![3, 8]);
    let mut want_clamp = ArrayD::zeros(vec![3, 8]);
    for ((i, j), &xv) in x.indexed_iter() {
        let gv = g[[i, j]];
        let (xc, gc) = (xv.min(limit), gv.clamp(-limit, limit));
        want_oai[[i, j]] = xc * sigmoid(alpha * xc) * (gc + 1.0);
        want_clamp[[i, j]] = xc * sigmoid(xc) * gc;
    }
    let t = Tol {
        abs: 1e-5,
        rel: 1e-5,
    };
    assert_close(&got[0], &want_oai, t, "swiglu_oai")?;
    assert_close(&got[1], &want_clamp, t, "swiglu_clamp")?;
    Ok(())
}

#[test]
fn refusals() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[3, 8])?;
    let g = ctx.new_tensor(Type::F32, &[3, 7])?;
    match a.swiglu_split(g) {
        Err(Error::Op(e)) => {
            assert_eq!(e.op, "swiglu");
            assert_eq!(e.operands.len(), 2);
            assert!(e.rule.contains("shape"), "{}", e.rule);
        }
        other => panic!("expected Error::Op, got {other:?}"),
    }
    let h = ctx.new_tensor(Type::F16, &[3, 8])?;
    assert!(matches!(a.geglu_split(h), Err(Error::Op(_))));
    // Rows that are not whole: ggml asserts.
    assert!(matches!(a.transpose()?.swiglu(), Err(Error::Op(_))));
    // swiglu_oai has an f32 kernel only: refused when computed.
    let y = h.swiglu_oai(None, 1.0, 7.0)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::UnsupportedNode {
            op: "swiglu_oai",
            ..
        })
    ));
    Ok(())
}

#[test]
fn one_row_a_matrix_with_another_row_stride_is_refused() -> Result<()> {
    // ne = [8, 1, 3] over 96 bytes, matrices 32 bytes apart and a row
    // stride (nb[1]) of 4096: ggml's kernel would read row i at i·nb[1],
    // far past the tensor; ggml's builder (whose contiguity rule counts
    // the next dimension from ne[1]·nb[1]) refuses it, and so does ours.
    let ctx = Context::new(1 << 20)?;
    let base = ctx.new_tensor(Type::F32, &[3, 8])?;
    let v = base.view(&[3, 1, 8], &[32, 4096], 0)?;
    assert!(matches!(v.swiglu(), Err(Error::Op(_))));
    Ok(())
}
