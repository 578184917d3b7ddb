//! A view alive while a graph computes (and may write) the tensor: computing
//! borrows the token exclusively.

use ggml::{Context, Type};

fn main() {
    let ctx = Context::new(1 << 20).unwrap();
    let a = ctx.new_tensor(Type::F32, &[4]).unwrap();
    let sum = ctx.add(a, a).unwrap();
    let graph = ctx.build_graph(&[sum]).unwrap();
    let mut data = ctx.data().unwrap();
    let view = data.view::<f32>(sum).unwrap();
    graph.compute(&mut data).unwrap();
    println!("{}", view[[0]]);
}
