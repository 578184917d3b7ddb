//! `Type` against known facts of ggml's formats (block layouts documented in
//! ggml-common.h), not against ggml's own answers alone.

use ggml::Type;

#[test]
fn block_layouts_match_the_formats() {
    // (type, values per block, bytes per block): e.g. Q4_0 = f16 scale + 32 nibbles.
    let known = [
        (Type::F32, 1, 4),
        (Type::F16, 1, 2),
        (Type::BF16, 1, 2),
        (Type::F64, 1, 8),
        (Type::I8, 1, 1),
        (Type::I16, 1, 2),
        (Type::I32, 1, 4),
        (Type::I64, 1, 8),
        (Type::Q4_0, 32, 2 + 16),
        (Type::Q4_1, 32, 2 + 2 + 16),
        (Type::Q5_0, 32, 2 + 4 + 16),
        (Type::Q5_1, 32, 2 + 2 + 4 + 16),
        (Type::Q8_0, 32, 2 + 32),
        (Type::Q2_K, 256, 16 + 64 + 2 + 2),
        (Type::Q3_K, 256, 32 + 64 + 12 + 2),
        (Type::Q4_K, 256, 2 + 2 + 12 + 128),
        (Type::Q5_K, 256, 2 + 2 + 12 + 32 + 128),
        (Type::Q6_K, 256, 128 + 64 + 16 + 2),
        (Type::Q8_K, 256, 4 + 256 + 32),
        (Type::IQ4_NL, 32, 2 + 16),
        (Type::MXFP4, 32, 1 + 16),
    ];
    for (ty, block, bytes) in known {
        assert_eq!((ty.block_size(), ty.type_size()), (block, bytes), "{ty}");
        assert_eq!(ty.is_quantized(), block > 1, "{ty}");
    }
    // Bits per weight as llama.cpp's quantize tool and gguf-py's
    // GGML_QUANT_SIZES give them.
    let published = [
        (Type::F32, 32.0),
        (Type::F16, 16.0),
        (Type::BF16, 16.0),
        (Type::Q4_0, 4.5),
        (Type::Q4_1, 5.0),
        (Type::Q5_0, 5.5),
        (Type::Q5_1, 6.0),
        (Type::Q8_0, 8.5),
        (Type::Q2_K, 2.625),
        (Type::Q3_K, 3.4375),
        (Type::Q4_K, 4.5),
        (Type::Q5_K, 5.5),
        (Type::Q6_K, 6.5625),
        (Type::IQ2_XXS, 2.0625),
        (Type::IQ2_XS, 2.3125),
        (Type::IQ3_XXS, 3.0625),
        (Type::IQ1_S, 1.5625),
        (Type::IQ4_NL, 4.5),
        (Type::IQ3_S, 3.4375),
        (Type::IQ2_S, 2.5625),
        (Type::IQ4_XS, 4.25),
        (Type::IQ1_M, 1.75),
        (Type::TQ1_0, 1.6875),
        (Type::TQ2_0, 2.0625),
        (Type::MXFP4, 4.25),
    ];
    for (ty, bpw) in published {
        assert_eq!(ty.bits_per_weight(), bpw, "{ty}");
    }
    assert_eq!(Type::Q4_0.row_size(64), Some(36));
    assert_eq!(Type::F32.row_size(usize::MAX / 2), None);
}

#[test]
fn names_and_raw_values_round_trip() {
    assert_eq!(
        Type::ALL.len(),
        35,
        "every ggml_type of this ggml but the removed ones"
    );
    for &ty in Type::ALL {
        assert_eq!(Type::try_from(ty.as_raw()).unwrap(), ty);
        assert!(!ty.name().is_empty() && ty.name() != "DEPRECATED", "{ty:?}");
    }
    assert_eq!(Type::Q4_K.name(), "q4_K");
    assert_eq!(Type::F32.to_string(), "f32");
    assert_eq!(Type::IQ2_XXS.name(), "iq2_xxs");
}

#[test]
fn importance_matrix_and_quantizability() {
    let need: Vec<Type> = Type::ALL
        .iter()
        .copied()
        .filter(|t| t.requires_imatrix())
        .collect();
    assert_eq!(need, vec![Type::IQ2_XXS, Type::IQ2_XS, Type::IQ1_S]);
    assert!(!Type::Q8_K.can_quantize() && !Type::Q8_1.can_quantize() && !Type::I32.can_quantize());
    assert!(Type::quantizable().all(|t| t.is_quantized() && !t.requires_imatrix()));
    assert!(Type::quantizable().any(|t| t == Type::Q4_K));
    assert!(Type::Q4_K.can_dequantize() && !Type::Q8_1.can_dequantize());
}
