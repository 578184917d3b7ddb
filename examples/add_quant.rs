//! The old Python example's quantized add: a Q5_K tensor holding 0..n plus an
//! f32 tensor holding n..1, computed by ggml into a Q5_K result.
//!
//! ```text
//! cargo run --release --example add_quant
//! ```
//!
//! Every exact sum is n; what the result shows beyond that is the error of
//! quantizing to Q5_K twice (the input `a`, then the sum).

use anyhow::Result;
use ggml::ndarray::{Array1, ArrayView1};
use ggml::{Context, Type};

const N: usize = 256;

/// `[a, b, c, ..., x, y, z]`: the first and last `edge` values of a long array.
fn compact(values: ArrayView1<'_, f32>, edge: usize) -> String {
    let fmt = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let v = values.to_vec();
    if v.len() <= 2 * edge {
        format!("[{}]", fmt(&v))
    } else {
        format!("[{}, ..., {}]", fmt(&v[..edge]), fmt(&v[v.len() - edge..]))
    }
}

fn main() -> Result<()> {
    let ctx = Context::new(1 << 20)?;

    let a_values = Array1::from_iter((0..N).map(|i| i as f32));
    let b_values = Array1::from_iter((0..N).map(|i| (N - i) as f32));
    let a = ctx
        .tensor_from_array_as(Type::Q5_K, &a_values)?
        .set_name("a");
    let b = ctx.tensor_from_array(&b_values)?.set_name("b");
    let sum = ctx.add(a, b)?.set_name("sum");

    let graph = ctx.build_graph(&[sum])?;
    let mut data = ctx.data()?;
    graph.compute(&mut data)?;

    // Quantized tensors have no element view: read dequantized copies.
    let a_back = data.to_array_as::<f32, ggml::ndarray::Ix1>(a)?;
    let b_back = data.view_as::<f32, ggml::ndarray::Ix1>(b)?;
    let sum_back = data.to_array_as::<f32, ggml::ndarray::Ix1>(sum)?;

    for (name, t, values) in [
        ("a", a, a_back.view()),
        ("b", b, b_back.view()),
        ("sum", sum, sum_back.view()),
    ] {
        println!(
            "{name:>3} ({:>4}, {:?}): {}",
            t.ty(),
            t.shape(),
            compact(values, 4)
        );
    }

    let exact = &a_values + &b_values;
    let linf = (&sum_back - &exact)
        .iter()
        .fold(0f32, |m, e| m.max(e.abs()));
    println!("L∞ error of sum vs exact a + b (= {N} everywhere): {linf:.4}");
    Ok(())
}
