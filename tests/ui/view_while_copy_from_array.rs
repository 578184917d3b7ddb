//! A shared view alive while the tensor is overwritten: writing borrows the
//! token exclusively.

use ggml::ndarray::array;
use ggml::{Context, Type};

fn main() {
    let ctx = Context::new(1 << 20).unwrap();
    let t = ctx.new_tensor(Type::F32, &[2]).unwrap();
    let mut data = ctx.data().unwrap();
    let view = data.view::<f32>(t).unwrap();
    data.copy_from_array(t, &array![1.0f32, 2.0]).unwrap();
    println!("{}", view[[0]]);
}
