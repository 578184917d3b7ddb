//! The unary family (every `UnaryOp`, and `sqr`, `sqrt`, `log`, `sin`,
//! `cos`) against functions written here with `std`'s math, in f32, f16
//! and bf16, on padded rows, empty tensors and in place; and the family's
//! refusals.

use anyhow::Result;
use ggml::ops::UnaryOp;
use ggml::{Context, Error, Tensor, Type};

use crate::eval::{self, assert_close, erf, Tol};

/// The reference of each function, in f64 where it matters.
fn reference(op: &str, x: f32) -> f32 {
    let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
    match op {
        "abs" => x.abs(),
        "sgn" => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        "neg" => -x,
        "step" => f32::from(u8::from(x > 0.0)),
        "tanh" => x.tanh(),
        "elu" => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        "relu" => x.max(0.0),
        "sigmoid" => sigmoid(x),
        "gelu" => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let x = f64::from(x);
            (0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())) as f32
        }
        "gelu_quick" => x * sigmoid(1.702 * x),
        "silu" => x * sigmoid(x),
        "hardswish" => x * ((x + 3.0) / 6.0).clamp(0.0, 1.0),
        "hardsigmoid" => ((x + 3.0) / 6.0).clamp(0.0, 1.0),
        "exp" => x.exp(),
        "expm1" => x.exp_m1(),
        "softplus" => {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        "gelu_erf" => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        "round" => x.round(),
        "trunc" => x.trunc(),
        "sqr" => x * x,
        "sqrt" => x.sqrt(),
        "log" => x.ln(),
        "sin" => x.sin(),
        "cos" => x.cos(),
        _ => unreachable!("{op}"),
    }
}

/// Tolerance in f32: ggml evaluates GELUs through an f16 table.
fn f32_tol(op: &str) -> Tol {
    match op {
        "gelu" | "gelu_quick" => Tol {
            abs: 3e-3,
            rel: 3e-3,
        },
        _ => Tol {
            abs: 2e-6,
            rel: 2e-6,
        },
    }
}

/// The math ops with an op of their own, by name.
fn math<'a>(t: Tensor<'a>, name: &str, inplace: bool) -> ggml::Result<Tensor<'a>> {
    match (name, inplace) {
        ("sqr", false) => t.sqr(),
        ("sqr", true) => t.sqr_inplace(),
        ("sqrt", false) => t.sqrt(),
        ("sqrt", true) => t.sqrt_inplace(),
        ("log", false) => t.log(),
        ("log", true) => t.log_inplace(),
        ("sin", false) => t.sin(),
        ("sin", true) => t.sin_inplace(),
        ("cos", false) => t.cos(),
        ("cos", true) => t.cos_inplace(),
        _ => unreachable!(),
    }
}

const MATH: [&str; 5] = ["sqr", "sqrt", "log", "sin", "cos"];

/// Every function of the family by name, applied through its method.
fn apply<'a>(t: Tensor<'a>, name: &str, inplace: bool) -> ggml::Result<Tensor<'a>> {
    match UnaryOp::ALL.iter().find(|op| op.name() == name) {
        Some(&op) if inplace => t.unary_inplace(op),
        Some(&op) => t.unary(op),
        None => math(t, name, inplace),
    }
}

fn names() -> Vec<&'static str> {
    UnaryOp::ALL
        .iter()
        .map(|op| op.name())
        .chain(MATH)
        .collect()
}

#[test]
fn every_function_matches_its_reference_in_f32_f16_and_bf16() -> Result<()> {
    let x = eval::input(&[3, 2, 37], 1, 4.0);
    for ty in [Type::F32, Type::F16, Type::BF16] {
        let xr = eval::rounded(&x, ty);
        for name in names() {
            let ctx = Context::new(1 << 20)?;
            let t = ctx.tensor_from_array_as(ty, &x)?;
            let y = apply(t, name, false)?;
            assert_eq!(y.ty(), ty);
            let got = &eval::compute(&ctx, &[y])?[0];
            let want = xr.mapv(|v| reference(name, v));
            assert_close(
                got,
                &want,
                Tol::of(ty, f32_tol(name)),
                &format!("{name} {ty}"),
            )?;
        }
    }
    Ok(())
}

#[test]
fn the_named_methods_are_the_unary_ops() -> Result<()> {
    let x = eval::input(&[4, 9], 2, 3.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let named = [
        t.relu()?,
        t.silu()?,
        t.gelu()?,
        t.exp()?,
        t.tanh()?,
        t.neg()?,
        t.softplus()?,
        t.gelu_erf()?,
    ];
    let generic = [
        UnaryOp::Relu,
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::Exp,
        UnaryOp::Tanh,
        UnaryOp::Neg,
        UnaryOp::Softplus,
        UnaryOp::GeluErf,
    ];
    let got = eval::compute(&ctx, &named)?;
    for (y, op) in got.iter().zip(generic) {
        let want = x.mapv(|v| reference(op.name(), v));
        assert_close(y, &want, f32_tol(op.name()), op.name())?;
    }
    Ok(())
}

#[test]
fn padded_rows_empty_tensors_and_in_place() -> Result<()> {
    for name in names() {
        let ctx = Context::new(1 << 20)?;
        // Rows of 5 values every 8: a view with gaps between rows.
        let base = eval::input(&[6, 8], 3, 2.0);
        let tb = ctx.tensor_from_array(&base)?;
        let padded = tb.view(&[6, 5], &[32], 0)?;
        let want = base
            .slice(ggml::ndarray::s![.., ..5])
            .mapv(|v| reference(name, v));
        let y = apply(padded, name, false)?;
        let got = &eval::compute(&ctx, &[y])?[0];
        assert_close(
            got,
            &want.into_dyn(),
            f32_tol(name),
            &format!("{name} padded"),
        )?;

        // Empty.
        let e = ctx.new_tensor(Type::F32, &[0, 7])?;
        let y = apply(e, name, false)?;
        assert_eq!(eval::compute(&ctx, &[y])?[0].len(), 0);

        // In place: the result is the operand's memory.
        let x = eval::input(&[3, 11], 4, 2.0);
        let t = ctx.tensor_from_array(&x)?;
        let y = apply(t, name, true)?;
        let got = eval::compute(&ctx, &[y, t])?;
        let want = x.mapv(|v| reference(name, v));
        assert_close(&got[0], &want, f32_tol(name), &format!("{name} in place"))?;
        assert_close(
            &got[1],
            &want,
            f32_tol(name),
            &format!("{name} in place, the operand"),
        )?;
    }
    Ok(())
}

#[test]
fn refusals_name_the_op_and_the_rule() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    // A transposed operand has no dense rows: ggml asserts.
    let t = ctx.new_tensor(Type::F32, &[4, 6])?;
    let tt = t.transpose()?;
    match tt.relu() {
        Err(Error::Op(e)) => {
            assert_eq!(e.op, "relu");
            assert_eq!(e.operands[0].ne, [4, 6, 1, 1]);
            assert!(e.rule.contains("dense rows"), "{}", e.rule);
        }
        other => panic!("expected Error::Op, got {other:?}"),
    }
    // In place into a view whose rows share bytes: threads would race.
    let overlapping = t.view(&[4, 6], &[0], 0)?;
    assert!(matches!(overlapping.exp_inplace(), Err(Error::Op(_))));
    assert!(matches!(overlapping.sqr_inplace(), Err(Error::Op(_))));
    // Types the CPU lacks build, and are refused when computed.
    let q = ctx.new_tensor(Type::Q8_0, &[2, 32])?;
    let y = q.silu()?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    match crate::common::compute(&graph, &mut data) {
        Err(Error::UnsupportedNode { op, .. }) => assert_eq!(op, "silu"),
        other => panic!("expected UnsupportedNode, got {other:?}"),
    }
    let i = ctx.new_tensor(Type::I32, &[5])?;
    let y = i.sqrt()?;
    let graph = ctx.build_graph(&[y])?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::UnsupportedNode { op: "sqrt", .. })
    ));
    Ok(())
}

#[test]
fn adding_to_intermediate_quantized_types_is_refused() -> Result<()> {
    // ggml's add kernel lists the quantized types it re-quantizes into;
    // Q8_1 and Q8_K (which have quantizers) are not among them: it aborts.
    for ty in [Type::Q8_1, Type::Q8_K] {
        let ctx = Context::new(1 << 20)?;
        let q = ctx.new_tensor(ty, &[2, 256])?;
        let f = ctx.new_tensor(Type::F32, &[2, 256])?;
        let y = q.add(f)?;
        let graph = ctx.build_graph(&[y])?;
        let mut data = ctx.data()?;
        assert!(
            matches!(
                crate::common::compute(&graph, &mut data),
                Err(Error::UnsupportedNode { op: "add", .. })
            ),
            "{ty}"
        );
    }
    Ok(())
}
