//! The other direction: ggml's own C client (`ggml_backend_rpc_init`, what
//! llama.cpp's programs use) computing on this crate's worker. Through the
//! raw bindings: ggml's client aborts on any failure, so this runs only the
//! healthy path.

use std::ffi::CString;

use anyhow::Result;
use ggml::ndarray::Array2;
use ggml::sys;

use crate::common::{assert_close, values};
use crate::workers::spawn;

#[test]
fn ggml_own_client_computes_on_our_worker() -> Result<()> {
    let w = spawn(1)?;
    ggml::init()?;
    let endpoint = CString::new(w.endpoint.clone())?;
    let (av, bv) = (values((8, 32), 21), values((4, 32), 22));
    let mut out = vec![0f32; 4 * 8];
    // SAFETY: the raw API used as ggml's own examples do: a live worker
    // (ggml's client aborts otherwise), a no_alloc context whose tensors are
    // placed in one buffer of the RPC backend, sizes matching the buffers.
    unsafe {
        let backend = sys::ggml_backend_rpc_init(endpoint.as_ptr(), 0);
        assert!(!backend.is_null());
        let ctx = sys::ggml_init(sys::ggml_init_params {
            mem_size: 16 * sys::ggml_tensor_overhead() + sys::ggml_graph_overhead(),
            mem_buffer: std::ptr::null_mut(),
            no_alloc: true,
        });
        let a = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, 32, 8);
        let b = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, 32, 4);
        let y = sys::ggml_mul_mat(ctx, a, b);
        let graph = sys::ggml_new_graph(ctx);
        sys::ggml_build_forward_expand(graph, y);
        let buffer = sys::ggml_backend_alloc_ctx_tensors(ctx, backend);
        assert!(!buffer.is_null());
        sys::ggml_backend_tensor_set(a, av.as_ptr().cast(), 0, 4 * av.len());
        sys::ggml_backend_tensor_set(b, bv.as_ptr().cast(), 0, 4 * bv.len());
        assert_eq!(
            sys::ggml_backend_graph_compute(backend, graph),
            sys::GGML_STATUS_SUCCESS
        );
        sys::ggml_backend_tensor_get(y, out.as_mut_ptr().cast(), 0, 4 * out.len());
        sys::ggml_backend_buffer_free(buffer);
        sys::ggml_free(ctx);
        sys::ggml_backend_free(backend);
    }
    let got = Array2::from_shape_vec((4, 8), out)?;
    assert_close(&got, &bv.dot(&av.t()), 1e-5);
    Ok(())
}
