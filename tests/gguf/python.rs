//! Files written by llama.cpp's reference Python writer (`gguf` 0.19.0 on
//! PyPI): every value type, every tensor type it knows, nested arrays, a
//! split model, a big-endian file.

use anyhow::Result;
use ggml::gguf::{ArrayValue, Gguf, Problem, Value, ValueType};
use ggml::ndarray::{Array, ArrayD, IxDyn};
use ggml::{Error, Type};

use crate::{fixture, oracle};

fn all_types() -> Result<Gguf> {
    Ok(Gguf::read(fixture("python-all-types.gguf"))?)
}

#[test]
fn every_value_type_reads_as_written() -> Result<()> {
    let g = all_types()?;
    assert_eq!(g.version(), 3);
    assert_eq!(g.architecture()?, Some("llama"));
    assert_eq!(g.name()?, Some("fixture"));
    assert_eq!(g.file_type()?, Some(1));
    assert_eq!(g.quantization_version()?, Some(2));
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.get::<u8>("t.u8")?, 200);
    assert_eq!(g.get::<i8>("t.i8")?, -5);
    assert_eq!(g.get::<u16>("t.u16")?, 60000);
    assert_eq!(g.get::<i16>("t.i16")?, -300);
    assert_eq!(g.get::<u32>("t.u32")?, 4_000_000_000);
    assert_eq!(g.get::<i32>("t.i32")?, -7);
    assert_eq!(g.get::<f32>("t.f32")?, 1.5);
    assert_eq!(g.get::<u64>("t.u64")?, (1 << 63) + 1);
    assert_eq!(g.get::<i64>("t.i64")?, -(1 << 40));
    assert_eq!(g.get::<f64>("t.f64")?, 2.25);
    assert!(g.get::<bool>("t.bool")?);
    assert_eq!(g.get::<&str>("t.str")?, "héllo wörld ✓ 🦀");
    assert_eq!(g.get::<&str>("t.empty_str")?, "");
    assert_eq!(g.get::<Vec<i32>>("t.arr_i32")?, vec![1, -2, 3]);
    assert_eq!(g.get::<Vec<f32>>("t.arr_f32")?, vec![0.5, -1.25]);
    assert_eq!(g.get::<Vec<&str>>("t.arr_str")?, vec!["a", "bc", "", "ü"]);
    assert_eq!(g.get::<Vec<u8>>("t.arr_u8")?, vec![0, 255]);
    assert_eq!(g.get::<Vec<i8>>("t.arr_i8")?, vec![-128, 127]);
    assert_eq!(g.get::<Vec<u16>>("t.arr_u16")?, vec![65535]);
    assert_eq!(g.get::<Vec<i16>>("t.arr_i16")?, vec![-32768]);
    assert_eq!(g.get::<Vec<u32>>("t.arr_u32")?, vec![u32::MAX, 1]);
    assert_eq!(g.get::<Vec<u64>>("t.arr_u64")?, vec![u64::MAX]);
    assert_eq!(g.get::<Vec<i64>>("t.arr_i64")?, vec![i64::MIN]);
    assert_eq!(g.get::<Vec<f64>>("t.arr_f64")?, vec![3.5, -0.0]);
    assert_eq!(g.get::<Vec<bool>>("t.arr_bool")?, vec![true, false, true]);
    let tokens = g.get::<ArrayValue>("tokenizer.ggml.tokens")?;
    assert_eq!(tokens.len(), 1000);
    assert_eq!(tokens.iter_str()?.nth(999), Some("tok999"));
    // File order, as written.
    let keys: Vec<&str> = g.metadata().map(|(k, _)| k).take(4).collect();
    assert_eq!(
        keys,
        ["general.architecture", "general.name", "t.u8", "t.i8"]
    );
    // Long arrays display shortened.
    let shown = g.value("tokenizer.ggml.tokens").unwrap().to_string();
    assert!(shown.ends_with("… (1000 string elements)]"), "{shown}");
    Ok(())
}

#[test]
fn wrong_types_and_missing_keys_are_errors_naming_them() -> Result<()> {
    let g = all_types()?;
    crate::assert_err!(g.get::<i64>("t.u32"), Error::ValueType { key, wanted, actual }
        if key == "t.u32" && wanted == "i64" && actual == "u32");
    crate::assert_err!(g.get::<&str>("t.arr_str"), Error::ValueType { actual, .. }
        if actual == "array of string");
    crate::assert_err!(g.get::<Vec<u8>>("t.arr_i32"), Error::ValueType { .. });
    crate::assert_err!(g.get::<u32>("no.such.key"), Error::MissingKey { key } if key == "no.such.key");
    assert_eq!(g.get_opt::<u32>("no.such.key")?, None);
    crate::assert_err!(g.tensor("nope"), Error::MissingTensor { .. });
    crate::assert_err!(g.arch_get::<u32>("context_length"), Error::MissingKey { key }
        if key == "llama.context_length");
    Ok(())
}

fn expected_shapes() -> Vec<(&'static str, Type, Vec<usize>)> {
    vec![
        ("plain.f32", Type::F32, vec![2, 256]),
        ("plain.f16", Type::F16, vec![2, 256]),
        ("plain.f64", Type::F64, vec![2, 8]),
        ("plain.i8", Type::I8, vec![4, 4]),
        ("plain.i16", Type::I16, vec![12]),
        ("plain.i32", Type::I32, vec![2, 3, 4]),
        ("plain.i64", Type::I64, vec![3]),
        ("plain.4d", Type::F32, vec![2, 3, 4, 5]),
    ]
}

#[test]
fn plain_tensors_are_zero_copy_views_of_the_file() -> Result<()> {
    let g = all_types()?;
    for (name, ty, shape) in expected_shapes() {
        let t = g.tensor(name)?;
        assert_eq!((t.ty(), t.shape()), (ty, shape.clone()), "{name}");
    }
    let values = Array::from_shape_fn((2, 256), |(i, j)| ((i * 256 + j) as f32 * 0.37).sin() * 3.0);
    let f32v = g.tensor("plain.f32")?.view::<f32>()?;
    // The view points into the file's bytes.
    assert_eq!(
        f32v.as_ptr().cast::<u8>(),
        g.tensor("plain.f32")?.bytes().as_ptr()
    );
    assert!(f32v
        .iter()
        .zip(values.iter())
        .all(|(a, b)| (a - b).abs() < 1e-6));
    let f16v = g.tensor("plain.f16")?.view::<half::f16>()?;
    assert!(f16v
        .iter()
        .zip(values.iter())
        .all(|(a, b)| (a.to_f32() - b).abs() < 2e-3));
    let i8v = g.tensor("plain.i8")?.view::<i8>()?;
    assert_eq!(
        i8v.iter().copied().collect::<Vec<_>>(),
        (-8..8).collect::<Vec<i8>>()
    );
    let i32v = g.tensor("plain.i32")?.view::<i32>()?;
    assert_eq!(i32v[[1, 2, 3]], 23 - 12);
    assert_eq!(
        g.tensor("plain.i64")?
            .view::<i64>()?
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![-(1 << 40), 1 << 40, 7]
    );
    assert_eq!(g.tensor("plain.i16")?.view::<i16>()?[[11]], 250);
    assert_eq!(
        g.tensor("plain.f64")?.view::<f64>()?[[1, 7]],
        ((263.0f32 * 0.37).sin() * 3.0) as f64
    );
    let d4 = g.tensor("plain.4d")?.view::<f32>()?;
    assert_eq!(d4[[1, 2, 3, 4]], 119.0);
    // A view of another type, of a quantized tensor: errors.
    crate::assert_err!(
        g.tensor("plain.f32")?.view::<half::f16>(),
        Error::ElementType { .. }
    );
    crate::assert_err!(g.tensor("q.Q8_0")?.view::<f32>(), Error::ElementType { .. });
    Ok(())
}

#[test]
fn quantized_tensors_dequantize_as_gguf_py_does() -> Result<()> {
    let g = all_types()?;
    let mut checked = Vec::new();
    for t in g.tensors().filter(|t| t.name().starts_with("q.")) {
        let expect: ArrayD<f32> = g
            .tensor(&t.name().replace("q.", "expect."))?
            .view::<f32>()?
            .to_owned();
        let ours = t.to_array::<f32>()?;
        assert_eq!(ours.shape(), expect.shape(), "{}", t.name());
        for (i, (a, b)) in ours.iter().zip(expect.iter()).enumerate() {
            let close = (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-5 * b.abs().max(1.0);
            assert!(close, "{} element {i}: ours {a}, gguf-py {b}", t.name());
        }
        checked.push(t.ty());
    }
    // Every quantized type gguf-py knows, and BF16.
    assert_eq!(checked.len(), 24, "{checked:?}");
    // Conversions to other float element types go through f32.
    let q8 = g.tensor("q.Q8_0")?;
    let as_f16 = q8.to_array::<half::f16>()?;
    let as_f32 = q8.to_array::<f32>()?;
    assert!(as_f16
        .iter()
        .zip(as_f32.iter())
        .all(|(h, f)| (h.to_f32() - f).abs() < 5e-3));
    // Integers only to themselves.
    crate::assert_err!(
        g.tensor("plain.i32")?.to_array::<f32>(),
        Error::UnsupportedConversion { .. }
    );
    assert_eq!(
        g.tensor("plain.i32")?.to_array::<i32>()?,
        g.tensor("plain.i32")?.view::<i32>()?
    );
    let _ = IxDyn(&[1]);
    Ok(())
}

#[test]
fn ggml_reads_the_python_file_as_we_do() -> Result<()> {
    let bytes = std::fs::read(fixture("python-all-types.gguf"))?;
    let g = Gguf::from_bytes(&bytes)?;
    assert_eq!(g.ggml_incompatibility(), None);
    let theirs = oracle::ggml(&bytes).expect("ggml reads the file");
    assert_eq!(oracle::ours(&g), theirs);
    Ok(())
}

#[test]
fn nested_arrays_are_read_and_flagged_as_unreadable_by_ggml() -> Result<()> {
    let bytes = std::fs::read(fixture("python-nested.gguf"))?;
    let g = Gguf::from_bytes(&bytes)?;
    let nested = g.get::<ArrayValue>("t.nested")?;
    assert_eq!((nested.elem_type(), nested.len()), (ValueType::Array, 3));
    let inner: Vec<Value> = nested.iter().collect();
    assert_eq!(inner[0], Value::Array(ArrayValue::new(&[1i32, 2])));
    assert_eq!(inner[1], Value::Array(ArrayValue::new(&[3.0f32])));
    assert_eq!(inner[2], Value::Array(ArrayValue::strings(["x", "yz"])));
    assert!(g.ggml_incompatibility().unwrap().contains("t.nested"));
    assert!(oracle::ggml(&bytes).is_none(), "ggml refuses nested arrays");
    Ok(())
}

#[test]
fn a_split_model_reads_as_one() -> Result<()> {
    let g = Gguf::read(fixture("python-split-00001-of-00003.gguf"))?;
    assert_eq!(g.shards(), 3);
    assert_eq!(g.tensor_count(), 5);
    assert_eq!(g.get::<u32>("llama.block_count")?, 5);
    for i in 0..5 {
        let t = g.tensor(&format!("blk.{i}.w"))?;
        assert_eq!(t.shard(), i / 2);
        assert!(t.view::<f32>()?.iter().all(|&v| v == i as f32));
    }
    let names: Vec<&str> = g.tensors().map(|t| t.name()).collect();
    assert_eq!(
        names,
        ["blk.0.w", "blk.1.w", "blk.2.w", "blk.3.w", "blk.4.w"]
    );
    // Opening a later shard says which to open.
    crate::assert_err!(Gguf::read(fixture("python-split-00002-of-00003.gguf")),
        Error::Gguf(e) if matches!(e.problem, Problem::Split(_)));
    // A missing shard is an I/O error naming it.
    let dir = tempfile::tempdir()?;
    for n in [1, 2] {
        let name = format!("python-split-0000{n}-of-00003.gguf");
        std::fs::copy(fixture(&name), dir.path().join(&name))?;
    }
    crate::assert_err!(Gguf::read(dir.path().join("python-split-00001-of-00003.gguf")),
        Error::Io { path, .. } if path.ends_with("python-split-00003-of-00003.gguf"));
    Ok(())
}

#[test]
fn big_endian_files_are_refused_at_the_version() -> Result<()> {
    crate::assert_err!(Gguf::read(fixture("python-big-endian.gguf")),
        Error::Gguf(e) if e.problem == Problem::BigEndian && e.offset == 4);
    Ok(())
}
