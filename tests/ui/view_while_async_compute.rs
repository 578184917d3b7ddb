// A view of the graph's data while an asynchronous computation is pending:
// the pending handle keeps the data token borrowed until it is waited for.
use ggml::backend::Backend;
use ggml::{Context, Type};

fn main() -> ggml::Result<()> {
    let mut backend = Backend::cpu()?;
    let ctx = Context::new(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[4])?;
    let b = ctx.scale(a, 2.0)?;
    let graph = ctx.build_graph(&[b])?;
    let mut data = ctx.data()?;
    let pending = backend.compute_async(&graph, &mut data)?;
    let view = data.view::<f32>(b)?; // the data is still borrowed
    pending.wait()?;
    drop(view);
    Ok(())
}
