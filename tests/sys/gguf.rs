//! Raw-FFI GGUF round trip: write a file with key/values of several types and a
//! tensor, read it back, and compare every key, value and data byte.

use std::ffi::{CStr, CString};
use std::ptr;

use ggml_sys as sys;

fn key_id(ctx: *const sys::gguf_context, key: &str) -> i64 {
    let key = CString::new(key).unwrap();
    // SAFETY: a live context and a NUL-terminated key.
    let id = unsafe { sys::gguf_find_key(ctx, key.as_ptr()) };
    assert!(id >= 0, "key {key:?} not found");
    id
}

#[test]
fn write_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smoke.gguf");
    let path_c = CString::new(path.to_str().unwrap()).unwrap();
    let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    let ints: [i32; 3] = [-7, 0, 42];

    // SAFETY: each pointer comes from the call before it and is checked; the
    // tensor's data (inside `ctx`) stays alive until the file is written; both
    // contexts are freed once, after their last use.
    unsafe {
        let ctx = sys::ggml_init(sys::ggml_init_params {
            mem_size: sys::ggml_tensor_overhead() + 4096,
            mem_buffer: ptr::null_mut(),
            no_alloc: false,
        });
        assert!(!ctx.is_null());
        let t = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, 6, 4);
        sys::ggml_set_name(t, c"weights".as_ptr());
        ptr::copy_nonoverlapping(values.as_ptr(), (*t).data.cast(), values.len());

        let gguf = sys::gguf_init_empty();
        assert!(!gguf.is_null());
        sys::gguf_set_val_str(
            gguf,
            c"general.name".as_ptr(),
            c"ggml-sys smoke test".as_ptr(),
        );
        sys::gguf_set_val_u32(gguf, c"test.u32".as_ptr(), 123_456);
        sys::gguf_set_val_i64(gguf, c"test.i64".as_ptr(), -9_000_000_000);
        sys::gguf_set_val_f32(gguf, c"test.f32".as_ptr(), 0.25);
        sys::gguf_set_val_bool(gguf, c"test.bool".as_ptr(), true);
        sys::gguf_set_arr_data(
            gguf,
            c"test.i32_array".as_ptr(),
            sys::GGUF_TYPE_INT32,
            ints.as_ptr().cast(),
            ints.len(),
        );
        sys::gguf_add_tensor(gguf, t);
        assert!(sys::gguf_write_to_file(gguf, path_c.as_ptr(), false));
        sys::gguf_free(gguf);
        sys::ggml_free(ctx);
    }

    // SAFETY: as above; `data_ctx` receives a context created by gguf that owns
    // the tensor data read from the file, freed after the last read.
    unsafe {
        let mut data_ctx: *mut sys::ggml_context = ptr::null_mut();
        let gguf = sys::gguf_init_from_file(
            path_c.as_ptr(),
            sys::gguf_init_params {
                no_alloc: false,
                ctx: &mut data_ctx,
            },
        );
        assert!(!gguf.is_null(), "gguf_init_from_file failed");
        assert!(!data_ctx.is_null());

        assert_eq!(sys::gguf_get_n_kv(gguf), 6);
        let name = CStr::from_ptr(sys::gguf_get_val_str(gguf, key_id(gguf, "general.name")));
        assert_eq!(name.to_str().unwrap(), "ggml-sys smoke test");
        assert_eq!(
            sys::gguf_get_val_u32(gguf, key_id(gguf, "test.u32")),
            123_456
        );
        assert_eq!(
            sys::gguf_get_val_i64(gguf, key_id(gguf, "test.i64")),
            -9_000_000_000
        );
        assert_eq!(sys::gguf_get_val_f32(gguf, key_id(gguf, "test.f32")), 0.25);
        assert!(sys::gguf_get_val_bool(gguf, key_id(gguf, "test.bool")));
        let arr = key_id(gguf, "test.i32_array");
        assert_eq!(sys::gguf_get_kv_type(gguf, arr), sys::GGUF_TYPE_ARRAY);
        assert_eq!(sys::gguf_get_arr_type(gguf, arr), sys::GGUF_TYPE_INT32);
        assert_eq!(sys::gguf_get_arr_n(gguf, arr), 3);
        let read_ints =
            std::slice::from_raw_parts(sys::gguf_get_arr_data(gguf, arr).cast::<i32>(), 3);
        assert_eq!(read_ints, ints);
        assert_eq!(sys::gguf_find_key(gguf, c"test.missing".as_ptr()), -1);

        assert_eq!(sys::gguf_get_n_tensors(gguf), 1);
        let tid = sys::gguf_find_tensor(gguf, c"weights".as_ptr());
        assert_eq!(tid, 0);
        assert_eq!(sys::gguf_get_tensor_type(gguf, tid), sys::GGML_TYPE_F32);
        let ne = std::slice::from_raw_parts(sys::gguf_get_tensor_ne(gguf, tid), 4);
        assert_eq!(ne, [6, 4, 1, 1]);
        assert_eq!(sys::gguf_get_tensor_size(gguf, tid), values.len() * 4);

        let t = sys::ggml_get_tensor(data_ctx, c"weights".as_ptr());
        assert!(!t.is_null());
        let bytes = std::slice::from_raw_parts((*t).data as *const u8, sys::ggml_nbytes(t));
        let want: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(bytes, want.as_slice());

        sys::gguf_free(gguf);
        sys::ggml_free(data_ctx);
    }

    // The data section starts at the aligned offset the header announced.
    let file = std::fs::read(&path).unwrap();
    assert_eq!(&file[..4], b"GGUF");
    assert_eq!(
        &file[file.len() - values.len() * 4..],
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>()
            .as_slice()
    );
}
