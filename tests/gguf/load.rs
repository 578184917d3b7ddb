//! Loading a file's tensors into a host context and into a backend buffer.

use anyhow::Result;
use ggml::backend::BufferType;
use ggml::gguf::{Gguf, Writer};
use ggml::ndarray::Array2;
use ggml::{Context, Error, Type};

fn file() -> Result<Vec<u8>> {
    let a = Array2::from_shape_fn((4, 64), |(i, j)| (i * 64 + j) as f32 / 10.0);
    let ints = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as i32);
    let mut w = Writer::new();
    w.add_array("a", &a)?;
    w.add_array("ints", &ints)?;
    w.add_quantized("q", Type::Q4_0, &a, None)?;
    let mut out = Vec::new();
    w.write_to(&mut out)?;
    Ok(out)
}

#[test]
fn into_a_host_context() -> Result<()> {
    let g = Gguf::from_bytes(&file()?)?;
    let ctx = Context::new(g.context_size()?)?;
    let tensors = g.load(&ctx)?;
    assert_eq!(tensors.len(), 3);
    let data = ctx.data()?;
    for (t, info) in tensors.iter().zip(g.tensors()) {
        assert_eq!(t.name(), info.name());
        assert_eq!((t.ty(), t.shape()), (info.ty(), info.shape()));
        assert_eq!(data.read_bytes(*t)?, info.bytes());
    }
    let q = ctx.tensor_by_name("q").unwrap();
    assert_eq!(data.to_array::<f32>(q)?, g.tensor("q")?.to_array::<f32>()?);
    drop(data);
    // Too small a context, or a no_alloc one: errors.
    let small = Context::new(g.context_size()? / 2)?;
    crate::assert_err!(g.load(&small), Error::OutOfMemory { .. });
    let na = Context::new_no_alloc(g.metadata_context_size())?;
    crate::assert_err!(g.load(&na), Error::NoAllocContext { .. });
    Ok(())
}

#[test]
fn into_a_backend_buffer() -> Result<()> {
    let g = Gguf::from_bytes(&file()?)?;
    let ctx = Context::new_no_alloc(g.metadata_context_size())?;
    let tensors = g.load_to(&ctx, BufferType::cpu()?)?;
    let data = ctx.data()?;
    for (t, info) in tensors.iter().zip(g.tensors()) {
        assert_eq!(data.read_bytes(*t)?, info.bytes(), "{}", info.name());
    }
    drop(data);
    let alloc = Context::new(1 << 20)?;
    crate::assert_err!(
        g.load_to(&alloc, BufferType::cpu()?),
        Error::NotNoAlloc { .. }
    );
    Ok(())
}
