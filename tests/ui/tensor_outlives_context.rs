//! A tensor handle kept past its context's scope: `Tensor<'ctx>` borrows it.

use ggml::{Context, Tensor, Type};

fn main() {
    let tensor: Tensor<'_>;
    {
        let ctx = Context::new(1 << 20).unwrap();
        tensor = ctx.new_tensor(Type::F32, &[4]).unwrap();
    }
    println!("{:?}", tensor.shape());
}
