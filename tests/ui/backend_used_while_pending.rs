// A backend used again while one of its computations is pending.
use ggml::backend::Backend;
use ggml::{Context, Type};

fn main() -> ggml::Result<()> {
    let mut backend = Backend::cpu()?;
    let ctx = Context::new(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[4])?;
    let graph = ctx.build_graph(&[ctx.scale(a, 2.0)?])?;
    let mut data = ctx.data()?;
    let pending = backend.compute_async(&graph, &mut data)?;
    backend.set_threads(2)?; // the backend is still borrowed
    pending.wait()
}
