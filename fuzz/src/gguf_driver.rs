//! `ggml-fuzz gguf`: the GGUF reader's fuzz loop (see `ggml_fuzz::gguf`).
//!
//! ```text
//! ggml-fuzz gguf      [--seconds N] [--jobs J] [--batch B] [--seed S] [--save DIR]
//! ggml-fuzz gguf-exec --seed S [--count C]                       (a child)
//! ```
//!
//! Children read `--batch` files each; a file whose verdict breaks the
//! property (`oracle::check`), whose reading allocates more than the stated
//! bound, or that kills its child (panic, abort, signal, hang) is a failure:
//! the batch is rerun file by file to name the seed, and the file is saved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ggml::gguf::Gguf;
use ggml_fuzz::gguf::{file_from_seed, oracle};

use crate::{arg, child, End};

#[path = "../../tests/common/counting.rs"]
pub mod counting;

/// The child: checks files `seed..seed + count`, printing a verdict count.
pub fn exec(args: &[String]) -> i32 {
    let first: u64 = arg(args, "--seed").unwrap_or(0);
    let count: u64 = arg(args, "--count").unwrap_or(1);
    let mut verdicts = [0u64; 4];
    for seed in first..first + count {
        let bytes = file_from_seed(seed);
        let (opened, peak) = counting::peak_during(|| Gguf::from_bytes(&bytes));
        drop(opened);
        // The reader's bound (4 bytes per byte + 4 KiB) plus its aligned
        // copy of the file and the error message.
        let bound = 5 * bytes.len() + 16384;
        if peak > bound {
            println!(
                "FAIL {seed} reading {} bytes allocated {peak} (bound {bound})",
                bytes.len()
            );
            return 1;
        }
        match oracle::check(&bytes) {
            Ok(v) => verdicts[v as usize] += 1,
            Err(e) => {
                println!("FAIL {seed} {e}");
                return 1;
            }
        }
    }
    println!(
        "verdicts {} {} {} {}",
        verdicts[0], verdicts[1], verdicts[2], verdicts[3]
    );
    0
}

/// The parent loop.
pub fn run(args: &[String]) -> i32 {
    let seconds: u64 = arg(args, "--seconds").unwrap_or(60);
    let jobs: usize = arg(args, "--jobs").unwrap_or_else(ggml::available_cores);
    let batch: u64 = arg(args, "--batch").unwrap_or(500);
    let save: String = arg(args, "--save").unwrap_or_else(|| "target/gguf-fuzz-failures".into());
    let first: u64 = arg(args, "--seed").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
            << 20
    });
    println!(
        "ggml-fuzz gguf: {seconds} s on {jobs} workers, batches of {batch}, first seed {first}"
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let next = AtomicU64::new(0);
    let totals = Mutex::new(([0u64; 4], Vec::<String>::new()));
    let timeout = Duration::from_secs(120);
    let exec_args = |seed: u64, count: u64| -> Vec<String> {
        vec![
            "gguf-exec".into(),
            "--seed".into(),
            seed.to_string(),
            "--count".into(),
            count.to_string(),
        ]
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                while Instant::now() < deadline {
                    let start = first + next.fetch_add(1, Ordering::Relaxed) * batch;
                    match child(&exec_args(start, batch), timeout, &[]) {
                        End::Ok(out) => {
                            let v: Vec<u64> = out
                                .lines()
                                .find_map(|l| l.strip_prefix("verdicts "))
                                .map(|l| l.split(' ').filter_map(|x| x.parse().ok()).collect())
                                .unwrap_or_default();
                            let mut t = totals.lock().unwrap();
                            for (k, n) in v.iter().enumerate().take(4) {
                                t.0[k] += n;
                            }
                        }
                        End::Failed(why) => {
                            // Name the file: rerun the batch one by one.
                            for seed in start..start + batch {
                                if let End::Failed(w) = child(&exec_args(seed, 1), timeout, &[]) {
                                    let _ = std::fs::create_dir_all(&save);
                                    let path = format!("{save}/{seed}.gguf");
                                    let _ = std::fs::write(&path, file_from_seed(seed));
                                    totals.lock().unwrap().1.push(format!(
                                        "seed {seed} ({path}): {w}\n  rerun: ggml-fuzz gguf-exec --seed {seed}"
                                    ));
                                    break;
                                }
                            }
                            let _ = why;
                        }
                    }
                }
            });
        }
    });
    let (v, failures) = totals.into_inner().unwrap();
    let files: u64 = v.iter().sum();
    println!(
        "ggml-fuzz gguf: {files} files; read by both readers identically {}, by ours only (ggml lacks the layout) {}, \
         refused by ours only (checks ggml lacks) {}, refused by both {}",
        v[0], v[1], v[2], v[3]
    );
    for f in &failures {
        println!("FAILED {f}");
    }
    i32::from(!failures.is_empty())
}
