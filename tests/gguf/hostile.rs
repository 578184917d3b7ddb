//! Malformed files: each is an `Err` naming the problem and its byte
//! offset, never a crash, an abort or an unbounded allocation; every
//! truncation and many byte changes of a valid file are read or refused
//! cleanly, and agree with ggml's reader wherever ggml can be trusted.

use anyhow::Result;
use ggml::gguf::{Gguf, Problem, Writer};
use ggml::ndarray::Array2;
use ggml::{Error, Type};

use crate::oracle;
use crate::raw::Raw;

/// The problem and offset of a refused file.
fn refused(bytes: &[u8]) -> (u64, Problem) {
    match Gguf::from_bytes(bytes) {
        Err(Error::Gguf(e)) => {
            assert!(e.to_string().contains(&format!("at byte {}", e.offset)));
            (e.offset, e.problem)
        }
        Err(e) => panic!("not a GGUF error: {e}"),
        Ok(g) => panic!("accepted: {g:?}"),
    }
}

macro_rules! refuses {
    ($bytes:expr, $offset:expr, $pat:pat $(if $guard:expr)?) => {{
        let (offset, problem) = refused(&$bytes[..]);
        assert!(matches!(&problem, $pat $(if $guard)?), "unexpected problem {problem:?}");
        assert_eq!(offset, $offset, "offset of {problem:?}");
    }};
}

const KEYS_AT: u64 = 24;

#[test]
fn headers() {
    refuses!(Vec::<u8>::new(), 0, Problem::Truncated { .. });
    refuses!(b"GGU", 0, Problem::Truncated { .. });
    refuses!(b"GGML\x03\0\0\0", 0, Problem::Magic(m) if m == b"GGML");
    refuses!(b"GGUF\0\0\0\x03", 4, Problem::BigEndian);
    for v in [0u32, 1, 4, 0x0001_0003] {
        refuses!(Raw::header(v, 0, 0).0, 4, Problem::Version(x) if *x == v);
    }
    refuses!(b"GGUF\x03\0\0\0\0\0", 8, Problem::Truncated { .. });
    refuses!(Raw::header(3, u64::MAX, 0).0, 8, Problem::TooMany { .. });
    refuses!(Raw::header(3, 1 << 40, 0).0, 8, Problem::Truncated { .. });
    refuses!(Raw::header(3, 0, 1 << 62).0, 16, Problem::Truncated { .. });
    // Counts larger than the entries present.
    let mut r = Raw::header(3, 0, 2);
    r.str(b"a").i32(8).str(&[b'x'; 20]);
    refuses!(r.0, 65, Problem::Truncated { .. });
    // Version 2 reads like 3; no tensors, no padding needed.
    let g = Gguf::from_bytes(&Raw::header(2, 0, 0).0).unwrap();
    assert_eq!((g.version(), g.tensor_count(), g.metadata_len()), (2, 0, 0));
}

#[test]
fn keys_and_values() {
    let kv = |f: &dyn Fn(&mut Raw)| {
        let mut r = Raw::header(3, 0, 1);
        f(&mut r);
        // Enough bytes for the count check (one pair is at least 14 bytes).
        while r.0.len() < 24 + 14 {
            r.u8(0);
        }
        r.0
    };
    refuses!(
        kv(&|r| {
            r.u64(u64::MAX);
        }),
        KEYS_AT,
        Problem::TooMany { .. }
    );
    refuses!(
        kv(&|r| {
            r.u64((1 << 30) + 1);
        }),
        KEYS_AT,
        Problem::TooMany { .. }
    );
    refuses!(
        kv(&|r| {
            r.u64(100).bytes(b"abc");
        }),
        32,
        Problem::Truncated { .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"").i32(0).u8(1);
        }),
        KEYS_AT,
        Problem::EmptyKey
    );
    refuses!(
        kv(&|r| {
            r.str(b"a\0b").i32(0).u8(1);
        }),
        KEYS_AT,
        Problem::Nul { .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"a\xffb").i32(0).u8(1);
        }),
        32,
        Problem::InvalidUtf8 { .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(13).u8(1);
        }),
        33,
        Problem::ValueType { raw: 13, .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(-1).u8(1);
        }),
        33,
        Problem::ValueType { raw: -1, .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(4).u8(1);
        }),
        37,
        Problem::Truncated { .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(8).u64(5).bytes(b"\xc3");
        }),
        45,
        Problem::Truncated { .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(8).u64(1).bytes(b"\xc3");
        }),
        45,
        Problem::InvalidUtf8 { .. }
    );
    // Arrays: element type, counts over ggml's limit or over the file.
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(9).i32(13).u64(0);
        }),
        37,
        Problem::ValueType { raw: 13, .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(9).i32(0).u64((1 << 30) + 1);
        }),
        41,
        Problem::TooMany { .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(9).i32(10).u64(1 << 61);
        }),
        41,
        Problem::TooMany { .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(9).i32(0).u64(1 << 30).zeros(10);
        }),
        41,
        Problem::Truncated { .. }
    );
    refuses!(
        kv(&|r| {
            r.str(b"k").i32(9).i32(8).u64(3).str(b"a").zeros(9);
        }),
        41,
        Problem::Truncated { .. }
    );
    // A key twice: the second is named.
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32(b"dup", 1);
    let second = r.at();
    r.kv_u32(b"dup", 2);
    refuses!(r.0, second, Problem::DuplicateKey(k) if k == "dup");
    // Nesting 100,000 deep: an error, not a stack overflow.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"deep").i32(9);
    for _ in 0..100_000 {
        r.i32(9).u64(1);
    }
    r.i32(0).u64(0);
    let (_, p) = refused(&r.0);
    assert!(matches!(p, Problem::Nesting { .. }), "{p:?}");
}

#[test]
fn alignment() {
    let with = |f: &dyn Fn(&mut Raw)| {
        let mut r = Raw::header(3, 1, 1);
        f(&mut r);
        r.tensor(b"t", &[4], 0, 0);
        r.0
    };
    let value_at = KEYS_AT + 8 + 17 + 4;
    refuses!(
        with(&|r| {
            r.str(b"general.alignment").i32(10).u64(64);
        }),
        value_at,
        Problem::Alignment(_)
    );
    refuses!(
        with(&|r| {
            r.str(b"general.alignment").i32(9).i32(4).u64(1).u32(64);
        }),
        value_at,
        Problem::Alignment(_)
    );
    for bad in [0u32, 3, 48] {
        refuses!(
            with(&|r| {
                r.kv_u32(b"general.alignment", bad);
            }),
            value_at,
            Problem::Alignment(_)
        );
    }
    // 2^31: the data section would start past the end.
    let (_, p) = refused(&with(&|r| {
        r.kv_u32(b"general.alignment", 1 << 31);
    }));
    assert!(matches!(p, Problem::DataStart { .. }), "{p:?}");
    // Alignment 1: an f32 tensor at an odd address. Views refuse, copies work.
    let mut r = Raw::header(3, 2, 1);
    r.kv_u32(b"general.alignment", 1)
        .tensor(b"a", &[1], 24, 0)
        .tensor(b"b", &[2], 0, 1);
    r.u8(7)
        .bytes(&1.5f32.to_le_bytes())
        .bytes(&(-2.0f32).to_le_bytes());
    let g = Gguf::from_bytes(&r.0).unwrap();
    assert_eq!(g.alignment(), 1);
    let b = g.tensor("b").unwrap();
    if b.bytes().as_ptr() as usize % 4 != 0 {
        crate::assert_err!(b.view::<f32>(), Error::Misaligned { .. });
    }
    assert_eq!(
        b.to_array::<f32>().unwrap().as_slice().unwrap(),
        &[1.5, -2.0]
    );
    assert_eq!(oracle::ours(&g), oracle::ggml(&r.0).unwrap());
}

/// A file with one tensor info, `ty` and `ne`, and `data` bytes of data.
fn one_tensor(name: &[u8], ne: &[i64], ty: i32, offset: u64, data: usize) -> Vec<u8> {
    let mut r = Raw::header(3, 1, 0);
    r.tensor(name, ne, ty, offset).pad(32).zeros(data);
    r.0
}

#[test]
fn tensor_infos() {
    let at = KEYS_AT;
    refuses!(
        one_tensor(&[b'n'; 64], &[4], 0, 0, 16),
        at,
        Problem::TensorName { .. }
    );
    refuses!(one_tensor(b"a\0b", &[4], 0, 0, 16), at, Problem::Nul { .. });
    refuses!(
        one_tensor(b"\xff", &[4], 0, 0, 16),
        at + 8,
        Problem::InvalidUtf8 { .. }
    );
    let dims_at = at + 9;
    refuses!(
        one_tensor(b"t", &[1, 1, 1, 1, 1], 0, 0, 16),
        dims_at,
        Problem::Dims { n_dims: 5, .. }
    );
    let ne_at = dims_at + 4;
    refuses!(
        one_tensor(b"t", &[-1], 0, 0, 16),
        ne_at,
        Problem::Shape { .. }
    );
    refuses!(
        one_tensor(b"t", &[i64::MIN], 0, 0, 16),
        ne_at,
        Problem::Shape { .. }
    );
    // ggml's abort vectors (ggml_new_tensor asserts on them) and its
    // ggml_nbytes wrap (a 2.9e18-byte tensor it sizes at 2 bytes).
    refuses!(
        one_tensor(b"t", &[(1 << 62) - 1, 2], 24, 0, 16),
        ne_at,
        Problem::Shape { .. }
    );
    refuses!(
        one_tensor(b"t", &[1 << 62, 0, 2], 24, 0, 16),
        ne_at,
        Problem::Shape { .. }
    );
    let wrap = one_tensor(b"t", &[0x471c_71c7_1c71_c720], 2, 0, 32);
    refuses!(wrap, ne_at, Problem::Shape { .. });
    let ggml_view = oracle::ggml(&wrap).expect("ggml accepts the wrapping size");
    assert_eq!(ggml_view.tensors[0].4, 2, "ggml_nbytes wrapped");
    refuses!(
        one_tensor(b"t", &[31], 2, 0, 32),
        ne_at,
        Problem::Shape { .. }
    );
    refuses!(
        one_tensor(b"t", &[i64::MAX, i64::MAX], 0, 0, 16),
        ne_at,
        Problem::Shape { .. }
    );
    for ty in [-1, 4, 5, 31, 36, 43, i32::MAX] {
        refuses!(one_tensor(b"t", &[4], ty, 0, 16), ne_at + 8, Problem::TensorType { raw, .. } if *raw == ty);
    }
    let off_at = ne_at + 12;
    refuses!(
        one_tensor(b"t", &[4], 0, 4, 16),
        off_at,
        Problem::Misaligned { offset: 4, .. }
    );
    refuses!(
        one_tensor(b"t", &[4], 0, u64::MAX - 31, 16),
        off_at,
        Problem::OutOfFile { .. }
    );
    // Data one byte short of the file's end; ggml does not look.
    let short = one_tensor(b"t", &[4], 0, 0, 15);
    refuses!(short, off_at, Problem::OutOfFile { end, file_len, .. } if *end == *file_len + 1);
    assert!(
        oracle::ggml(&short).is_some(),
        "ggml accepts data past the end"
    );
    // Exactly at the end, unpadded: fine (llama.cpp accepts it too).
    let g = Gguf::from_bytes(&one_tensor(b"t", &[4], 0, 0, 16)).unwrap();
    assert_eq!(g.tensor("t").unwrap().view::<f32>().unwrap().len(), 4);
    // n_dims 0 is a scalar; empty names are allowed (ggml allows them).
    let g = Gguf::from_bytes(&one_tensor(b"", &[], 0, 0, 4)).unwrap();
    assert_eq!(g.tensor("").unwrap().shape(), Vec::<usize>::new());
    // Empty tensors: empty views, wherever they sit.
    let g = Gguf::from_bytes(&one_tensor(b"e", &[0, 3], 0, 0, 0)).unwrap();
    let e = g.tensor("e").unwrap();
    assert_eq!(
        (e.view::<f32>().unwrap().shape(), e.len()),
        (&[3, 0][..], 0)
    );
    assert_eq!(e.to_array::<f32>().unwrap().shape(), &[3, 0]);
    // Data section past the end.
    let mut r = Raw::header(3, 1, 0);
    r.tensor(b"t", &[0], 0, 0);
    refuses!(r.0, r.at(), Problem::DataStart { .. });
}

#[test]
fn layouts() {
    let two = |a: u64, b: u64, data: usize| {
        let mut r = Raw::header(3, 2, 0);
        r.tensor(b"a", &[16], 0, a)
            .tensor(b"b", &[16], 0, b)
            .pad(32)
            .zeros(data);
        r.0
    };
    let second_info = KEYS_AT + 8 + 1 + 4 + 8 + 4 + 8;
    let off = second_info + 9 + 4 + 8 + 4;
    refuses!(two(0, 0, 128), off, Problem::Overlap { .. });
    refuses!(two(0, 32, 128), off, Problem::Overlap { .. });
    // Disjoint but out of order: read, and flagged (ggml refuses it).
    let ok = two(64, 0, 128);
    let g = Gguf::from_bytes(&ok).unwrap();
    assert!(g.ggml_incompatibility().unwrap().contains("'a'"));
    assert!(oracle::ggml(&ok).is_none());
    // Duplicate names: the later is named.
    let mut r = Raw::header(3, 2, 0);
    r.tensor(b"a", &[8], 0, 0);
    let later = r.at();
    r.tensor(b"a", &[8], 0, 32).pad(32).zeros(64);
    refuses!(r.0, later, Problem::TensorName { .. });
}

/// A small valid file of several value and tensor types.
fn valid_file() -> Vec<u8> {
    let a = Array2::from_shape_fn((2, 32), |(i, j)| (i * 32 + j) as f32);
    let mut w = Writer::new();
    w.set("general.architecture", "x").unwrap();
    w.set("k.arr", vec![1u16, 2, 3]).unwrap();
    w.set("k.strs", ggml::gguf::ArrayValue::strings(["ab", "c"]))
        .unwrap();
    w.set("k.f", 0.5f64).unwrap();
    w.add_array("a", &a).unwrap();
    w.add_quantized("q", Type::Q8_0, &a, None).unwrap();
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
}

/// Our verdict against ggml's (see [`oracle::check`]); panics on a
/// disagreement.
fn agree(bytes: &[u8]) {
    if let Err(e) = oracle::check(bytes) {
        panic!("{e}");
    }
}

#[test]
fn every_truncation_of_a_valid_file() {
    let bytes = valid_file();
    for len in 0..bytes.len() {
        agree(&bytes[..len]);
    }
}

#[test]
fn byte_changes_everywhere_agree_with_ggml() {
    let bytes = valid_file();
    let mut changed = 0;
    for i in 0..bytes.len() {
        for v in [
            0u8,
            1,
            0x7f,
            0xff,
            bytes[i] ^ 0x80,
            bytes[i].wrapping_add(1),
        ] {
            if v == bytes[i] {
                continue;
            }
            let mut b = bytes.clone();
            b[i] = v;
            agree(&b);
            changed += 1;
        }
    }
    assert!(changed > 1000);
}

#[test]
fn ggml_incompatible_layouts_are_still_checked_against_the_file() -> Result<()> {
    // Our own shards are separate: each stands alone.
    let bytes = valid_file();
    let g = Gguf::from_bytes(&bytes)?;
    assert_eq!(g.ggml_incompatibility(), None);
    Ok(())
}

#[test]
fn checking_a_file_by_its_metadata_agrees_with_reading_it_whole() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("f.gguf");
    let bytes = valid_file();
    for len in (0..bytes.len()).step_by(7).chain([bytes.len()]) {
        std::fs::write(&path, &bytes[..len])?;
        let whole = Gguf::from_bytes(&bytes[..len]).map(|_| ());
        let checked = Gguf::check_file(&path);
        match (whole, checked) {
            (Ok(()), Ok(())) => {}
            (Err(Error::Gguf(a)), Err(Error::Gguf(b))) => {
                assert_eq!(
                    (a.offset, &a.problem),
                    (b.offset, &b.problem),
                    "length {len}"
                )
            }
            (a, b) => panic!("length {len}: whole {a:?}, checked {b:?}"),
        }
    }
    Gguf::check_file(crate::fixture("python-all-types.gguf"))?;
    Gguf::check_file(crate::fixture("python-split-00001-of-00003.gguf"))?;
    Ok(())
}
