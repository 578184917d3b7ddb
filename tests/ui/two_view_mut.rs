//! Two mutable views of one tensor at once: each borrows the context's one
//! `TensorData` token exclusively.

use ggml::{Context, Type};

fn main() {
    let ctx = Context::new(1 << 20).unwrap();
    let t = ctx.new_tensor(Type::F32, &[4]).unwrap();
    let mut data = ctx.data().unwrap();
    let mut a = data.view_mut::<f32>(t).unwrap();
    let mut b = data.view_mut::<f32>(t).unwrap();
    a[[0]] = 1.0;
    b[[0]] = 2.0;
}
