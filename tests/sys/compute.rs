//! Raw-FFI smoke tests of ggml compute on the CPU: `add` and `mul_mat` graphs,
//! checked against the same arithmetic done in Rust.
//!
//! The graphs run through the backend API (`ggml-backend.h` + `ggml-alloc.h`),
//! which works in every link mode, including `GGML_BACKEND_DL` installs whose CPU
//! backend is a module loaded at run time. One test also runs the classic
//! `ggml_graph_compute_with_ctx` path, which needs the CPU backend linked
//! (`ggml-cpu.h` bound, `cfg(ggml_cpu_backend)` set by the root build script).

use std::ptr;
use std::sync::Once;

use ggml_sys as sys;

/// A small deterministic generator of test data in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

/// `out[i + j*m] = sum_k a[k + i*k_len] * b[k + j*k_len]`: ggml's `mul_mat`
/// (both operands have `ne[0] = k`; the result has `ne = [m, n]`).
fn naive_mul_mat(a: &[f32], b: &[f32], k_len: usize, m: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for j in 0..n {
        for i in 0..m {
            out[i + j * m] = (0..k_len)
                .map(|k| f64::from(a[k + i * k_len]) * f64::from(b[k + j * k_len]))
                .sum::<f64>() as f32;
        }
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * (1.0 + w.abs()),
            "element {i}: ggml {g}, Rust {w}"
        );
    }
}

/// The CPU backend, from the backend registry. A `GGML_BACKEND_DL` install
/// registers nothing until its modules are loaded, so load them when the CPU
/// device is not there yet.
struct CpuBackend(sys::ggml_backend_t);

impl CpuBackend {
    fn new() -> Self {
        static LOAD: Once = Once::new();
        LOAD.call_once(|| {
            // SAFETY: registry queries; loading scans the install's backend directory.
            unsafe {
                if sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU).is_null() {
                    sys::ggml_backend_load_all();
                }
            }
        });
        // SAFETY: a null parameter string means the defaults.
        let backend = unsafe {
            sys::ggml_backend_init_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU, ptr::null())
        };
        assert!(!backend.is_null(), "no CPU backend in the registry");
        CpuBackend(backend)
    }
}

impl Drop for CpuBackend {
    fn drop(&mut self) {
        // SAFETY: created by ggml_backend_init_by_type, freed once.
        unsafe { sys::ggml_backend_free(self.0) }
    }
}

/// A metadata-only context (`no_alloc`): tensor data lives in a backend buffer.
fn metadata_context(n_tensors: usize) -> *mut sys::ggml_context {
    // SAFETY: size queries, then a context that allocates its own metadata buffer.
    let ctx = unsafe {
        sys::ggml_init(sys::ggml_init_params {
            mem_size: n_tensors * sys::ggml_tensor_overhead() + sys::ggml_graph_overhead(),
            mem_buffer: ptr::null_mut(),
            no_alloc: true,
        })
    };
    assert!(!ctx.is_null());
    ctx
}

/// Builds `op(a, b)` over f32 tensors of the given shapes, computes it on the
/// CPU backend and returns the result with its `ne`.
fn compute_binary(
    a_ne: [i64; 2],
    a: &[f32],
    b_ne: [i64; 2],
    b: &[f32],
    op: unsafe extern "C" fn(
        *mut sys::ggml_context,
        *mut sys::ggml_tensor,
        *mut sys::ggml_tensor,
    ) -> *mut sys::ggml_tensor,
) -> ([i64; 4], Vec<f32>) {
    let backend = CpuBackend::new();
    let ctx = metadata_context(3);
    // SAFETY: every pointer comes from the calls before it and is checked for
    // null; host slices are exactly the tensors' byte sizes (asserted); the
    // buffer and context are freed once, after the last use of their tensors.
    unsafe {
        let ta = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, a_ne[0], a_ne[1]);
        let tb = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, b_ne[0], b_ne[1]);
        let out = op(ctx, ta, tb);
        assert!(!ta.is_null() && !tb.is_null() && !out.is_null());
        let graph = sys::ggml_new_graph(ctx);
        sys::ggml_build_forward_expand(graph, out);

        let buffer = sys::ggml_backend_alloc_ctx_tensors(ctx, backend.0);
        assert!(!buffer.is_null(), "backend buffer allocation failed");
        assert_eq!(sys::ggml_nbytes(ta), std::mem::size_of_val(a));
        assert_eq!(sys::ggml_nbytes(tb), std::mem::size_of_val(b));
        sys::ggml_backend_tensor_set(ta, a.as_ptr().cast(), 0, std::mem::size_of_val(a));
        sys::ggml_backend_tensor_set(tb, b.as_ptr().cast(), 0, std::mem::size_of_val(b));

        let status = sys::ggml_backend_graph_compute(backend.0, graph);
        assert_eq!(status, sys::GGML_STATUS_SUCCESS);

        let ne = (*out).ne;
        let mut result = vec![0.0f32; sys::ggml_nelements(out) as usize];
        assert_eq!(sys::ggml_nbytes(out), result.len() * 4);
        sys::ggml_backend_tensor_get(out, result.as_mut_ptr().cast(), 0, result.len() * 4);

        sys::ggml_backend_buffer_free(buffer);
        sys::ggml_free(ctx);
        (ne, result)
    }
}

#[test]
fn add_matches_rust() {
    let mut rng = Lcg(1);
    let (a, b) = (rng.vec(8 * 5), rng.vec(8 * 5));
    let (ne, got) = compute_binary([8, 5], &a, [8, 5], &b, sys::ggml_add);
    assert_eq!(ne, [8, 5, 1, 1]);
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    // f32 addition is exact to the last bit whether SIMD or scalar.
    assert_eq!(got, want);
}

#[test]
fn add_broadcasts_a_row() {
    let mut rng = Lcg(2);
    let (a, row) = (rng.vec(6 * 4), rng.vec(6));
    let (ne, got) = compute_binary([6, 4], &a, [6, 1], &row, sys::ggml_add);
    assert_eq!(ne, [6, 4, 1, 1]);
    let want: Vec<f32> = a.iter().enumerate().map(|(i, x)| x + row[i % 6]).collect();
    assert_eq!(got, want);
}

#[test]
fn mul_mat_matches_naive_matmul() {
    let (k, m, n) = (64usize, 7usize, 5usize);
    let mut rng = Lcg(3);
    let (a, b) = (rng.vec(k * m), rng.vec(k * n));
    let (ne, got) = compute_binary(
        [k as i64, m as i64],
        &a,
        [k as i64, n as i64],
        &b,
        sys::ggml_mul_mat,
    );
    assert_eq!(ne, [m as i64, n as i64, 1, 1]);
    // f32 dot products of 64 terms in [-1, 1): summation order differs from
    // the f64 reference, and ggml may round `b` through f16 for its vec_dot
    // (relative error 2^-11 per term), so allow a few 1e-3.
    assert_close(&got, &naive_mul_mat(&a, &b, k, m, n), 5e-3);
}

/// The classic CPU path: tensors in the context's own memory, computed with
/// `ggml_graph_compute_with_ctx` from `ggml-cpu.h`.
#[cfg(ggml_cpu_backend)]
#[test]
fn mul_mat_with_ctx_matches_naive_matmul() {
    let (k, m, n) = (32usize, 4usize, 3usize);
    let mut rng = Lcg(4);
    let (a, b) = (rng.vec(k * m), rng.vec(k * n));
    // SAFETY: the context owns enough memory for three small tensors and a
    // graph; data pointers are written within each tensor's nbytes; the context
    // is freed after the result is copied out.
    let got = unsafe {
        let ctx = sys::ggml_init(sys::ggml_init_params {
            mem_size: 3 * sys::ggml_tensor_overhead() + sys::ggml_graph_overhead() + 64 * 1024,
            mem_buffer: ptr::null_mut(),
            no_alloc: false,
        });
        assert!(!ctx.is_null());
        let ta = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, k as i64, m as i64);
        let tb = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, k as i64, n as i64);
        ptr::copy_nonoverlapping(a.as_ptr(), (*ta).data.cast(), a.len());
        ptr::copy_nonoverlapping(b.as_ptr(), (*tb).data.cast(), b.len());
        let out = sys::ggml_mul_mat(ctx, ta, tb);
        let graph = sys::ggml_new_graph(ctx);
        sys::ggml_build_forward_expand(graph, out);
        let status = sys::ggml_graph_compute_with_ctx(ctx, graph, 2);
        assert_eq!(status, sys::GGML_STATUS_SUCCESS);
        let result = std::slice::from_raw_parts((*out).data as *const f32, m * n).to_vec();
        sys::ggml_free(ctx);
        result
    };
    assert_close(&got, &naive_mul_mat(&a, &b, k, m, n), 5e-3);
}

#[test]
fn the_cpu_backend_is_where_the_build_says() {
    // Independent of the build script's own answer: the linked library
    // either has the CPU backend's symbols in it (the static or shared
    // libggml-cpu in LIB_DIR) or, in a GGML_BACKEND_DL install, none, and
    // the registry then loads it as a module.
    let dir = std::path::Path::new(sys::build_info::LIB_DIR.expect("a library directory"));
    let linkable = ["libggml-cpu.a", "libggml-cpu.so"]
        .iter()
        .any(|f| dir.join(f).exists());
    assert_eq!(cfg!(ggml_cpu_backend), linkable, "in {}", dir.display());
    // Either way the registry has a CPU device.
    // SAFETY: plain registry calls.
    unsafe {
        sys::ggml_backend_load_all();
        assert!(!sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU).is_null());
    }
}
