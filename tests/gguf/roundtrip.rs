//! Writing: files we write are read back by ggml's own reader and by ours
//! (bit-exact for plain types), are byte-identical to what ggml's writer and
//! gguf-py write for the same content, and stream tensor data.

use std::ffi::CString;

use anyhow::Result;
use ggml::gguf::{ArrayValue, Gguf, Problem, Value, Writer};
use ggml::ndarray::{s, Array, Array1, Array2, Array3, ShapeBuilder};
use ggml::{sys, Context, Error, Type};

use crate::{fixture, oracle};

fn sample() -> Array2<f32> {
    Array::from_shape_fn((8, 64), |(i, j)| ((i * 64 + j) as f32 * 0.11).cos() * 2.0)
}

#[test]
fn our_files_read_back_in_ggml_and_in_ours() -> Result<()> {
    let w2 = sample();
    let ints = Array3::from_shape_fn((2, 3, 4), |(a, b, c)| (a * 100 + b * 10 + c) as i32 - 50);
    let transposed = w2.t(); // not standard layout: written in logical order
    let halfs = w2.mapv(half::f16::from_f32);
    let doubles = Array1::from_vec(vec![1.5f64, -2.25, 1e300]);
    let k_values = Array2::from_shape_fn((2, 256), |(i, j)| (i + j) as f32 / 100.0);
    let mut w = Writer::new();
    w.set("general.architecture", "test")?;
    w.set("general.alignment", 64u32)?;
    for (k, v) in [
        ("v.u8", Value::U8(7)),
        ("v.i8", Value::I8(-7)),
        ("v.u16", Value::U16(65535)),
        ("v.i16", Value::I16(-32768)),
        ("v.u32", Value::U32(u32::MAX)),
        ("v.i32", Value::I32(i32::MIN)),
        ("v.f32", Value::F32(-0.5)),
        ("v.bool", Value::Bool(false)),
        ("v.u64", Value::U64(u64::MAX)),
        ("v.i64", Value::I64(i64::MIN)),
        ("v.f64", Value::F64(1e-300)),
        ("v.str", "ünïcode ✓".into()),
        ("v.empty", "".into()),
        ("v.arr_f32", vec![1.0f32, 2.0].into()),
        ("v.arr_bool", vec![true, false].into()),
        ("v.arr_empty", Vec::<u64>::new().into()),
        ("v.arr_str", ArrayValue::strings(["x", "", "yz"]).into()),
    ] {
        w.set(k, v)?;
    }
    w.set("v.u8", 8u8)?; // replaced in place
    w.add_array("w.f32", &w2)?;
    w.add_array("w.t", &transposed)?;
    w.add_array("w.i32", &ints)?;
    w.add_array("w.f16", &halfs)?;
    w.add_array("w.f64", &doubles)?;
    w.add_quantized("w.q8", Type::Q8_0, &w2, None)?;
    w.add_quantized("w.q4k", Type::Q4_K, &k_values, None)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ours.gguf");
    let written = w.write_to_file(&path)?;
    let bytes = std::fs::read(&path)?;
    assert_eq!(written, bytes.len() as u64);

    let g = Gguf::read(&path)?;
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.get::<u8>("v.u8")?, 8);
    assert_eq!(g.metadata().nth(2).unwrap().0, "v.u8");
    assert_eq!(g.get::<Vec<bool>>("v.arr_bool")?, vec![true, false]);
    assert!(g.get::<ArrayValue>("v.arr_empty")?.is_empty());
    assert_eq!(g.get::<Vec<&str>>("v.arr_str")?, ["x", "", "yz"]);
    assert_eq!(g.get::<&str>("v.str")?, "ünïcode ✓");
    assert_eq!(g.get::<f64>("v.f64")?, 1e-300);
    // Plain types: bit-exact.
    assert_eq!(g.tensor("w.f32")?.view::<f32>()?, w2.view().into_dyn());
    assert_eq!(g.tensor("w.t")?.view::<f32>()?, transposed.into_dyn());
    assert_eq!(g.tensor("w.i32")?.view::<i32>()?, ints.view().into_dyn());
    assert_eq!(
        g.tensor("w.f16")?.view::<half::f16>()?,
        halfs.view().into_dyn()
    );
    assert_eq!(g.tensor("w.f64")?.view::<f64>()?, doubles.view().into_dyn());
    for t in g.tensors() {
        assert_eq!(t.offset() % 64, 0, "{} aligned", t.name());
    }
    // Quantized: close to the source.
    let q8 = g.tensor("w.q8")?.to_array::<f32>()?;
    assert!(q8.iter().zip(w2.iter()).all(|(a, b)| (a - b).abs() < 0.02));
    assert_eq!(g.tensor("w.q4k")?.shape(), [2, 256]);
    assert_eq!(g.ggml_incompatibility(), None);

    // ggml's reader sees the same keys, values, tensors and offsets.
    let theirs = oracle::ggml(&bytes).expect("ggml reads our file");
    assert_eq!(oracle::ours(&g), theirs);

    // And, trusting the file (it is ours), ggml loads the data: same bytes.
    let path_c = CString::new(path.to_str().unwrap())?;
    // SAFETY: a file we wrote and validated; the context ggml creates is
    // freed after the reads.
    unsafe {
        let mut ctx: *mut sys::ggml_context = std::ptr::null_mut();
        let gg = sys::gguf_init_from_file(
            path_c.as_ptr(),
            sys::gguf_init_params {
                no_alloc: false,
                ctx: &mut ctx,
            },
        );
        assert!(!gg.is_null() && !ctx.is_null());
        for t in g.tensors() {
            let name = CString::new(t.name())?;
            let raw = sys::ggml_get_tensor(ctx, name.as_ptr());
            let data = std::slice::from_raw_parts((*raw).data.cast::<u8>(), sys::ggml_nbytes(raw));
            assert_eq!(data, t.bytes(), "{}", t.name());
        }
        sys::gguf_free(gg);
        sys::ggml_free(ctx);
    }
    Ok(())
}

#[test]
fn ggml_written_files_read_in_ours() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ggml.gguf");
    let path_c = CString::new(path.to_str().unwrap())?;
    let values: Vec<f32> = (0..96).map(|i| i as f32 * 0.25 - 7.0).collect();
    // SAFETY: pointers from the calls before, checked; the tensor's data
    // lives in `ctx` until written; both freed once.
    unsafe {
        let ctx = sys::ggml_init(sys::ggml_init_params {
            mem_size: 1 << 20,
            mem_buffer: std::ptr::null_mut(),
            no_alloc: false,
        });
        let t = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, 32, 3);
        sys::ggml_set_name(t, c"m".as_ptr());
        std::ptr::copy_nonoverlapping(values.as_ptr(), (*t).data.cast(), 96);
        let gg = sys::gguf_init_empty();
        sys::gguf_set_val_str(gg, c"general.architecture".as_ptr(), c"x".as_ptr());
        sys::gguf_set_val_i16(gg, c"a.i16".as_ptr(), -2);
        let strs = [c"p".as_ptr(), c"qq".as_ptr()];
        sys::gguf_set_arr_str(gg, c"a.strs".as_ptr(), strs.as_ptr() as *mut _, 2);
        sys::gguf_add_tensor(gg, t);
        assert!(sys::gguf_write_to_file(gg, path_c.as_ptr(), false));
        sys::gguf_free(gg);
        sys::ggml_free(ctx);
    }
    let bytes = std::fs::read(&path)?;
    let g = Gguf::from_bytes(&bytes)?;
    assert_eq!(oracle::ours(&g), oracle::ggml(&bytes).unwrap());
    assert_eq!(g.get::<i16>("a.i16")?, -2);
    assert_eq!(g.get::<Vec<&str>>("a.strs")?, ["p", "qq"]);
    assert_eq!(
        g.tensor("m")?.view::<f32>()?.as_slice().unwrap(),
        &values[..]
    );
    assert_eq!(g.tensor("m")?.shape(), [3, 32]);

    // Our writer, given the same content, writes the same bytes.
    let m = Array::from_shape_vec((3, 32), values)?;
    let mut w = Writer::new();
    w.set("general.architecture", "x")?;
    w.set("a.i16", -2i16)?;
    w.set("a.strs", ArrayValue::strings(["p", "qq"]))?;
    w.add_array("m", &m)?;
    let mut ours = Vec::new();
    w.write_to(&mut ours)?;
    assert_eq!(ours, bytes, "byte-identical to gguf_write_to_file");
    Ok(())
}

#[test]
fn rewriting_a_python_file_gives_its_bytes_back() -> Result<()> {
    let bytes = std::fs::read(fixture("python-all-types.gguf"))?;
    let g = Gguf::from_bytes(&bytes)?;
    let mut w = Writer::new();
    w.copy_metadata(&g)?;
    for t in g.tensors() {
        w.add_raw(t.name(), t.ty(), &t.shape(), t.bytes())?;
    }
    let mut out = Vec::new();
    w.write_to(&mut out)?;
    assert_eq!(out, bytes, "our writer reproduces gguf-py's file");
    Ok(())
}

#[test]
fn streamed_sources_rows_readers_and_context_tensors() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let src = sample();
    let t = ctx.tensor_from_array(&src)?.set_name("from_ctx");
    let data = ctx.data()?;
    let raw: Vec<u8> = (0..=255u8).cycle().take(34 * 4).collect(); // 4 Q8_0 blocks
    let mut w = Writer::new();
    w.add_tensor(None, &data, t)?;
    w.add_rows("rows", Type::F32, &[3000, 512], None, |first, out| {
        for (i, v) in out.iter_mut().enumerate() {
            *v = (first * 512 + i) as f32;
        }
        Ok(())
    })?;
    w.add_reader("reader", Type::Q8_0, &[128], &raw[..])?;
    let mut bytes = Vec::new();
    w.write_to(&mut bytes)?;
    let g = Gguf::from_bytes(&bytes)?;
    assert_eq!(g.tensor("from_ctx")?.view::<f32>()?, src.view().into_dyn());
    let rows = g.tensor("rows")?.view::<f32>()?;
    assert_eq!(rows[[2999, 511]], (3000 * 512 - 1) as f32);
    assert_eq!(g.tensor("reader")?.bytes(), &raw[..]);
    Ok(())
}

#[test]
fn sources_that_lie_about_their_size_fail_and_leave_no_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("short.gguf");
    let mut w = Writer::new();
    w.add_reader("short", Type::F32, &[16], &[0u8; 10][..])?;
    crate::assert_err!(w.write_to_file(&path), Error::Gguf(e) if matches!(&e.problem, Problem::Write(m) if m.contains("gave 10 of its 64")));
    assert!(!path.exists());
    let mut w = Writer::new();
    w.add_reader("long", Type::F32, &[1], &[0u8; 10][..])?;
    crate::assert_err!(w.write_to(Vec::new()), Error::Gguf(_));
    let mut w = Writer::new();
    w.add_rows("fails", Type::Q4_0, &[4, 32], None, |_, _| {
        Err(Error::Aborted)
    })?;
    crate::assert_err!(w.write_to(Vec::new()), Error::Aborted);
    let nan = Array2::from_elem((1, 32), f32::NAN);
    let mut w = Writer::new();
    w.add_quantized("nan", Type::Q4_0, &nan, None)?;
    crate::assert_err!(w.write_to(Vec::new()), Error::NonFinite { .. });
    Ok(())
}

#[test]
fn the_writer_refuses_what_readers_cannot_read() -> Result<()> {
    let a = sample();
    let zeros = Array2::zeros((1, 256));
    let mut w = Writer::new();
    crate::assert_err!(w.set("", 1u8), Error::Gguf(e) if e.problem == Problem::EmptyKey);
    crate::assert_err!(w.set("a\0b", 1u8), Error::Gguf(e) if matches!(e.problem, Problem::Nul { .. }));
    crate::assert_err!(w.set("general.alignment", 64u64), Error::Gguf(e) if matches!(e.problem, Problem::Alignment(_)));
    crate::assert_err!(w.set("general.alignment", 48u32), Error::Gguf(e) if matches!(e.problem, Problem::Alignment(_)));
    w.add_array("x", &a)?;
    crate::assert_err!(w.add_array("x", &a), Error::Gguf(e) if matches!(e.problem, Problem::TensorName { .. }));
    crate::assert_err!(w.add_array(&"n".repeat(64), &a), Error::Gguf(_));
    crate::assert_err!(w.add_array("", &a), Error::Gguf(_));
    crate::assert_err!(
        w.add_raw("r", Type::F32, &[4], &[0u8; 15]),
        Error::LengthMismatch {
            expected: 16,
            actual: 15,
            ..
        }
    );
    crate::assert_err!(
        w.add_raw("b", Type::Q4_0, &[31], &[]),
        Error::BlockSize { .. }
    );
    crate::assert_err!(
        w.add_quantized("iq", Type::IQ2_XXS, &zeros, None),
        Error::RequiresImatrix { .. }
    );
    let mut deep = ArrayValue::new(&[1u8]);
    for _ in 0..20 {
        deep = ArrayValue::arrays([deep]);
    }
    crate::assert_err!(w.set("deep", deep), Error::Gguf(e) if matches!(e.problem, Problem::Nesting { .. }));
    let _ = s![..];
    let _ = Array2::<f32>::zeros((1, 1).f());
    Ok(())
}

#[test]
fn split_models_are_written_and_read_as_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let arrays: Vec<Array2<f32>> = (0..5)
        .map(|i| Array2::from_elem((4, 32), i as f32))
        .collect();
    let mut w = Writer::new();
    w.set("general.architecture", "llama")?;
    w.set("general.alignment", 64u32)?;
    for (i, a) in arrays.iter().enumerate() {
        w.add_array(&format!("t{i}"), a)?;
    }
    let files = w.write_split(dir.path().join("m.gguf"), 2, usize::MAX)?;
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "m-00001-of-00003.gguf",
            "m-00002-of-00003.gguf",
            "m-00003-of-00003.gguf"
        ]
    );
    let g = Gguf::read(&files[0])?;
    assert_eq!((g.shards(), g.tensor_count()), (3, 5));
    for (i, a) in arrays.iter().enumerate() {
        assert_eq!(
            g.tensor(&format!("t{i}"))?.view::<f32>()?,
            a.view().into_dyn()
        );
    }
    // Each shard is a file ggml reads, with the split keys llama.cpp reads.
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f)?;
        let s = oracle::ggml(&bytes).expect("ggml reads each shard");
        assert_eq!(s.alignment, 64);
        assert!(s.kvs.contains(&("split.no".into(), format!("u16:{i}"))));
        assert!(s
            .kvs
            .contains(&("split.tensors.count".into(), "i32:5".into())));
    }
    // A byte limit splits too.
    let mut w = Writer::new();
    for (i, a) in arrays.iter().enumerate() {
        w.add_array(&format!("t{i}"), a)?;
    }
    assert_eq!(
        w.write_split(dir.path().join("b.gguf"), usize::MAX, 1024)?
            .len(),
        3
    );
    Ok(())
}
