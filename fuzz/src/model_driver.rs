//! `ggml-fuzz model`: the model-file fuzz loop (see `ggml_fuzz::model`).
//!
//! ```text
//! ggml-fuzz model      [--seconds N] [--jobs J] [--batch B] [--seed S] [--timeout T]
//! ggml-fuzz model-exec --seed S [--count C] [--keep I,J,..] [--save PATH]   (a child)
//! ggml-fuzz model-show --seed S                                         (print the case)
//! ```
//!
//! Seed `s` gives a random valid llama model (a few layers, its own SPM or
//! BPE tokenizer, dense or experts), 0 to 3 structure-aware mutations of it
//! (one case in eight has none) and a random use (map, flash attention,
//! embeddings, KV cache types, a LoRA adapter, long texts). The child writes
//! the file and runs load → context → tokenize → decode → sample through
//! the safe API. An error anywhere is fine; a child that dies (panic,
//! abort, signal, hang) is a failure: the batch is rerun seed by seed, the
//! failing case minimised (mutations dropped while it still fails) and its
//! file saved. An unmutated file must load and decode: a refusal there is
//! an over-cautious check, and a failure too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ggml_fuzz::model::{exercise, mutations, Config, Mutation, Reached, Rng, Spec, Use};

use crate::{arg, child, End};

/// The case of seed `seed`: spec, mutations, use.
pub fn case(seed: u64) -> (Spec, Vec<Mutation>, Use) {
    let mut rng = Rng::new(seed);
    let spec = Spec::llama(&Config::random(&mut rng));
    let count = if rng.one_in(8) { 0 } else { 1 + rng.below(3) };
    let muts = mutations(&spec, &mut rng, count);
    let how = Use::random(&mut rng);
    (spec, muts, how)
}

fn keep_list(args: &[String]) -> Option<Vec<usize>> {
    let i = args.iter().position(|a| a == "--keep")?;
    Some(
        args.get(i + 1)?
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect(),
    )
}

/// The child: runs seeds `seed..seed + count`, printing how far each got.
pub fn exec(args: &[String]) -> i32 {
    let first: u64 = arg(args, "--seed").unwrap_or(0);
    let count: u64 = arg(args, "--count").unwrap_or(1);
    let keep = keep_list(args);
    let save: Option<String> = arg(args, "--save");
    ggml_fuzz::model::verbose_logging();
    let dir = tempdir();
    for seed in first..first + count {
        let (mut spec, muts, how) = case(seed);
        let valid = muts.is_empty();
        for (i, m) in muts.iter().enumerate() {
            if keep.as_ref().is_none_or(|k| k.contains(&i)) {
                m.apply(&mut spec);
            }
        }
        let path = dir.join("model.gguf");
        let reached = if let Err(e) = spec.write(&path) {
            if std::env::var_os("GGML_FUZZ_VERBOSE").is_some() {
                eprintln!("write: {e}");
            }
            Reached::NotWritten
        } else {
            if let Some(save) = &save {
                let _ = std::fs::copy(&path, save);
            }
            exercise(&path, &spec, &how, &dir)
        };
        if valid && reached <= Reached::RefusedByLlama {
            println!("FAIL {seed}: a valid model was refused ({reached:?})");
            return 1;
        }
        println!("reached {seed} {} {}", reached as u8, u8::from(valid));
    }
    let _ = std::fs::remove_dir_all(&dir);
    0
}

/// A fresh directory of this process's own.
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ggml-fuzz-model-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Prints the case of `--seed`.
pub fn show(args: &[String]) -> i32 {
    let seed: u64 = arg(args, "--seed").unwrap_or(0);
    let (spec, muts, how) = case(seed);
    println!("{:#?}\n{:#?}", muts, how);
    println!(
        "{} keys, {} tensors",
        spec.metadata.len(),
        spec.tensors.len()
    );
    0
}

const REACHED: [&str; 6] = [
    "not written (the writer refused the mutation)",
    "refused by the crate's model checks",
    "refused by llama.cpp (a clean load error)",
    "loaded, no context (or vocabulary only)",
    "context, decode refused",
    "decoded and sampled",
];

/// The parent loop.
pub fn run(args: &[String]) -> i32 {
    let seconds: u64 = arg(args, "--seconds").unwrap_or(60);
    let jobs: usize = arg(args, "--jobs").unwrap_or_else(ggml::available_cores);
    let batch: u64 = arg(args, "--batch").unwrap_or(20);
    let timeout = Duration::from_secs(arg(args, "--timeout").unwrap_or(120));
    let save: String = arg(args, "--save").unwrap_or_else(|| "target/model-fuzz-failures".into());
    let first: u64 = arg(args, "--seed").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
            << 20
    });
    println!(
        "ggml-fuzz model: {seconds} s on {jobs} workers, batches of {batch}, first seed {first}"
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let next = AtomicU64::new(0);
    // (reached counts for mutated files, for valid ones), failures.
    let totals = Mutex::new(([[0u64; 6]; 2], Vec::<String>::new()));
    let exec_args = |seed: u64, count: u64, keep: Option<&[usize]>, save: Option<&str>| {
        let mut a = vec![
            "model-exec".to_string(),
            "--seed".into(),
            seed.to_string(),
            "--count".into(),
            count.to_string(),
        ];
        if let Some(k) = keep {
            a.push("--keep".into());
            a.push(k.iter().map(usize::to_string).collect::<Vec<_>>().join(","));
        }
        if let Some(s) = save {
            a.push("--save".into());
            a.push(s.into());
        }
        a
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                while Instant::now() < deadline {
                    let start = first + next.fetch_add(1, Ordering::Relaxed) * batch;
                    match child(&exec_args(start, batch, None, None), timeout, &[]) {
                        End::Ok(out) => {
                            let mut t = totals.lock().unwrap();
                            for l in out.lines().filter_map(|l| l.strip_prefix("reached ")) {
                                let v: Vec<usize> = l
                                    .split(' ')
                                    .skip(1)
                                    .filter_map(|x| x.parse().ok())
                                    .collect();
                                if let [r, valid] = v[..] {
                                    t.0[valid.min(1)][r.min(5)] += 1;
                                }
                            }
                        }
                        End::Failed(_) => {
                            for seed in start..start + batch {
                                if let End::Failed(why) =
                                    child(&exec_args(seed, 1, None, None), timeout, &[])
                                {
                                    let report = minimise(seed, &why, timeout, &save, &exec_args);
                                    totals.lock().unwrap().1.push(report);
                                    break;
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    let (counts, failures) = totals.into_inner().unwrap();
    let mutated: u64 = counts[0].iter().sum();
    let valid: u64 = counts[1].iter().sum();
    println!(
        "ggml-fuzz model: {} files ({mutated} mutated, {valid} valid)",
        mutated + valid
    );
    for (i, name) in REACHED.iter().enumerate() {
        println!(
            "  {:>6} mutated, {:>6} valid: {name}",
            counts[0][i], counts[1][i]
        );
    }
    for f in &failures {
        println!("FAILED {f}");
    }
    i32::from(!failures.is_empty())
}

/// The arguments of a child: seed, count, kept mutations, file to save.
type ExecArgs<'a> = dyn Fn(u64, u64, Option<&[usize]>, Option<&str>) -> Vec<String> + 'a;

/// Drops mutations of a failing case while it still fails; saves its file.
fn minimise(
    seed: u64,
    why: &str,
    timeout: Duration,
    save: &str,
    exec_args: &ExecArgs<'_>,
) -> String {
    let (_, muts, how) = case(seed);
    let mut keep: Vec<usize> = (0..muts.len()).collect();
    let mut i = 0;
    while i < keep.len() {
        let mut fewer = keep.clone();
        fewer.remove(i);
        match child(&exec_args(seed, 1, Some(&fewer), None), timeout, &[]) {
            End::Failed(_) => keep = fewer,
            End::Ok(_) => i += 1,
        }
    }
    let _ = std::fs::create_dir_all(save);
    let path = format!("{save}/{seed}.gguf");
    let _ = child(&exec_args(seed, 1, Some(&keep), Some(&path)), timeout, &[]);
    let kept: Vec<&Mutation> = keep.iter().map(|&k| &muts[k]).collect();
    let list = keep
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "seed {seed}: {why}\n  mutations: {kept:?}\n  use: {how:?}\n  file: {path}\n  rerun: ggml-fuzz model-exec --seed {seed} --keep {list}"
    )
}
