//! A view and the data token used after their context is dropped: both borrow it.

use ggml::{Context, Type};

fn main() {
    let ctx = Context::new(1 << 20).unwrap();
    let t = ctx.new_tensor(Type::F32, &[4]).unwrap();
    let data = ctx.data().unwrap();
    let view = data.view::<f32>(t).unwrap();
    drop(ctx);
    println!("{}", view[[0]]);
    drop(data);
}
