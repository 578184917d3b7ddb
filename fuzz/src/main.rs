//! The fuzzer's driver. See `scripts/fuzz` and the crate docs.
//!
//! ```text
//! ggml-fuzz run  [--seconds N] [--jobs J] [--batch B] [--seed S] [--raw-checks R]
//!                [--valgrind N] [--timeout T] [--no-slow-types]
//! ggml-fuzz exec --seeds S1,S2,.. [--keep I,J,..] [--raw-at K] [--no-slow-types]   (a child)
//! ggml-fuzz show --seed S [--keep I,J,..]                                           (print a program)
//! ggml-fuzz gguf [--seconds N] [--jobs J] ...      (the GGUF reader: see gguf_driver.rs)
//! ggml-fuzz model [--seconds N] [--jobs J] ...     (model files through the llama layer: model_driver.rs)
//! ```
//!
//! `run` generates programs from seeds (`--seed` is the first; later ones
//! follow it), runs them in child processes `--batch` at a time on `--jobs`
//! workers for `--seconds`, and then:
//! - a child that dies by a signal, aborts, panics or hangs past `--timeout`
//!   is a failure: each of its programs is rerun alone, and a failing one is
//!   minimised (calls dropped while it still fails) and printed with its seed;
//! - for up to `--raw-checks` refused calls per batch, the call is replayed
//!   through raw ggml in a child of its own; the summary gives the share of
//!   refusals raw ggml survived, by cause;
//! - `--valgrind N` runs N programs under valgrind memcheck (errors fail;
//!   leaks too, but in programs that leak a pending computation on purpose).
//!
//! Exit status 1 when anything failed.

use std::collections::BTreeMap;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ggml_fuzz::program::{Call, Program};
use ggml_fuzz::safe::{self, Options, Outcome};
use ggml_fuzz::{program_from_seed, raw};

mod gguf_driver;
mod model_driver;

#[global_allocator]
static ALLOCATOR: gguf_driver::counting::Counting = gguf_driver::counting::Counting;

pub(crate) fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn list(args: &[String], name: &str) -> Option<Vec<u64>> {
    let i = args.iter().position(|a| a == name)?;
    Some(
        args.get(i + 1)?
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let no_slow = args.iter().any(|a| a == "--no-slow-types");
    match args.get(1).map(String::as_str) {
        Some("exec") => exec(&args, no_slow),
        Some("show") => {
            let seed = arg(&args, "--seed").unwrap_or(0);
            println!(
                "{:#?}",
                kept(program_from_seed(seed), list(&args, "--keep"))
            );
        }
        Some("run") => std::process::exit(run(&args, no_slow)),
        Some("gguf") => std::process::exit(gguf_driver::run(&args)),
        Some("gguf-exec") => std::process::exit(gguf_driver::exec(&args)),
        Some("model") => std::process::exit(model_driver::run(&args)),
        Some("model-exec") => std::process::exit(model_driver::exec(&args)),
        Some("model-show") => std::process::exit(model_driver::show(&args)),
        _ => {
            eprintln!("usage: ggml-fuzz run|exec|show ... (see the source's docs)");
            std::process::exit(2);
        }
    }
}

/// `program` with only the calls at `keep`, if given.
fn kept(mut program: Program, keep: Option<Vec<u64>>) -> Program {
    if let Some(keep) = keep {
        program.calls = program
            .calls
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(&(*i as u64)))
            .map(|(_, c)| c)
            .collect();
    }
    program
}

/// A short name of a call's kind (`op:FAMILY/NAME` for declared ops).
fn kind(call: &Call) -> String {
    if let Call::Op(n, ..) = call {
        let decl = ggml_fuzz::op_decl(*n);
        return format!("op:{}/{}", decl.family().name(), decl.name());
    }
    let debug = format!("{call:?}");
    debug.split('(').next().unwrap_or("?").to_string()
}

/// The child: runs programs, printing `seed index outcome` lines.
fn exec(args: &[String], no_slow: bool) {
    let options = Options { no_slow };
    let keep = list(args, "--keep");
    let raw_at: Option<usize> = arg(args, "--raw-at");
    for seed in list(args, "--seeds").unwrap_or_default() {
        let program = kept(program_from_seed(seed), keep.clone());
        let state = safe::run(&program, options, raw_at, |i, outcome| {
            let text = match outcome {
                Outcome::Ok => "ok".to_string(),
                Outcome::Err(v) => format!("err {v}"),
                Outcome::Skip => "skip".to_string(),
            };
            println!("{seed} {i} {} {text}", kind(&program.calls[i]));
        });
        if let Some(k) = raw_at {
            if let Some(call) = program.calls.get(k) {
                let how = raw::replay(&state, call, no_slow);
                println!("raw survived {how:?}");
            }
        }
    }
}

/// How a child ended.
#[derive(Debug)]
pub(crate) enum End {
    Ok(String),
    Failed(String),
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(101), _) => "panicked (exit 101)".into(),
        (Some(code), _) => format!("exit status {code}"),
        _ => "unknown end".into(),
    }
}

/// Runs this program as a child with `args`, within `timeout`.
pub(crate) fn child(args: &[String], timeout: Duration, wrapper: &[String]) -> End {
    let exe = std::env::current_exe().expect("own path");
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = match command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        // The harness's fault, not a finding (typically the binary was
        // rebuilt under a running fuzzer): stop rather than count failures.
        Err(e) => {
            eprintln!(
                "ggml-fuzz: cannot start a child ({}): {e}; was the binary rebuilt during the run?",
                exe.display()
            );
            std::process::exit(2);
        }
    };
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(s) if s.success() => End::Ok(out),
        Some(s) => {
            let tail: String = err
                .lines()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            End::Failed(format!("{}\n{tail}", describe(s)))
        }
        None => End::Failed(format!("no answer within {timeout:?} (hang)")),
    }
}

fn exec_args(
    seeds: &[u64],
    keep: Option<&[usize]>,
    raw_at: Option<usize>,
    no_slow: bool,
) -> Vec<String> {
    let mut a = vec![
        "exec".into(),
        "--seeds".into(),
        seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    ];
    if let Some(keep) = keep {
        a.push("--keep".into());
        a.push(
            keep.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if let Some(k) = raw_at {
        a.push("--raw-at".into());
        a.push(k.to_string());
    }
    if no_slow {
        a.push("--no-slow-types".into());
    }
    a
}

/// How long one failure's minimisation may take.
const MINIMISE_BUDGET: Duration = Duration::from_secs(300);

/// Drops calls of a failing program while it keeps failing (for at most
/// [`MINIMISE_BUDGET`]).
fn minimise(seed: u64, timeout: Duration, no_slow: bool) -> Vec<usize> {
    let n = program_from_seed(seed).calls.len();
    let mut keep: Vec<usize> = (0..n).collect();
    let mut i = keep.len();
    // A program that fails by hanging costs a timeout per try: bounded, the
    // minimisation stops early (the calls kept still fail).
    let deadline = Instant::now() + MINIMISE_BUDGET;
    while i > 0 && Instant::now() < deadline {
        i -= 1;
        let mut trial = keep.clone();
        trial.remove(i);
        if let End::Failed(_) = child(
            &exec_args(&[seed], Some(&trial), None, no_slow),
            timeout,
            &[],
        ) {
            keep = trial;
        }
    }
    keep
}

/// Totals of a run.
#[derive(Default)]
struct Totals {
    programs: u64,
    calls: u64,
    outcomes: BTreeMap<String, u64>,
    refusals: Vec<(u64, usize, String, String)>,
    failures: Vec<String>,
    raw_checked: u64,
    raw_survived: BTreeMap<String, u64>,
    raw_crashed: BTreeMap<String, u64>,
    /// Per op family: calls, built, refused, refusals replayed raw, of
    /// which raw ggml survived, of which it computed the node.
    families: BTreeMap<String, [u64; 6]>,
}

/// The op family of a call's kind (`op:FAMILY/NAME`).
fn family(kind: &str) -> Option<&str> {
    kind.strip_prefix("op:")?.split('/').next()
}

fn run(args: &[String], no_slow: bool) -> i32 {
    let seconds: u64 = arg(args, "--seconds").unwrap_or(60);
    let jobs: usize = arg(args, "--jobs").unwrap_or_else(ggml::available_cores);
    let batch: u64 = arg(args, "--batch").unwrap_or(64);
    let first: u64 = arg(args, "--seed").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
            << 20
    });
    let raw_checks: usize = arg(args, "--raw-checks").unwrap_or(2);
    let valgrind: u64 = arg(args, "--valgrind").unwrap_or(0);
    let timeout = Duration::from_secs(arg(args, "--timeout").unwrap_or(120));
    println!(
        "ggml-fuzz: {seconds} s on {jobs} workers, batches of {batch}, first seed {first}{}",
        if no_slow { ", no slow types" } else { "" }
    );

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let next = AtomicU64::new(0);
    let totals = Mutex::new(Totals::default());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                while Instant::now() < deadline {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    let seeds: Vec<u64> = (0..batch).map(|k| first + b * batch + k).collect();
                    batch_run(&seeds, timeout, no_slow, raw_checks, &totals);
                }
            });
        }
    });
    let mut totals = totals.into_inner().expect("no poisoned lock");

    // valgrind over a sample of programs.
    let mut valgrind_errors = 0;
    if valgrind > 0 {
        let wrapper: Vec<String> = [
            "valgrind",
            "--quiet",
            "--error-exitcode=99",
            "--errors-for-leak-kinds=definite",
            "--leak-check=full",
        ]
        .map(String::from)
        .to_vec();
        // A program that leaks a pending computation on purpose leaks its
        // context's memory by design (the guard's promise): only its
        // memory errors count, not its leaks.
        let mut no_leak_check = wrapper.clone();
        no_leak_check.retain(|a| !a.starts_with("--errors-for-leak-kinds"));
        if let Some(a) = no_leak_check
            .iter_mut()
            .find(|a| a.starts_with("--leak-check"))
        {
            *a = "--leak-check=no".into();
        }
        for k in 0..valgrind {
            let seed = first.wrapping_add(1 << 40).wrapping_add(k);
            let leaks = program_from_seed(seed)
                .calls
                .iter()
                .any(|c| matches!(c, Call::ForgetPending(..)));
            match child(
                &exec_args(&[seed], None, None, true),
                timeout * 10,
                if leaks { &no_leak_check } else { &wrapper },
            ) {
                End::Ok(_) => {}
                End::Failed(why) => {
                    valgrind_errors += 1;
                    totals
                        .failures
                        .push(format!("valgrind, seed {seed}: {why}"));
                }
            }
        }
        println!("valgrind: {valgrind} programs (slow types mapped to q4_K), {valgrind_errors} with errors");
    }

    println!("programs: {}, calls: {}", totals.programs, totals.calls);
    let outcomes: Vec<String> = totals
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("outcomes: {}", outcomes.join(", "));
    let survived: u64 = totals.raw_survived.values().sum();
    if totals.raw_checked > 0 {
        println!(
            "raw replays of refused calls: {} checked, {} survived by raw ggml ({:.1} %), {} crashed it",
            totals.raw_checked,
            survived,
            100.0 * survived as f64 / totals.raw_checked as f64,
            totals.raw_checked - survived
        );
        let mut causes: Vec<_> = totals.raw_survived.iter().collect();
        causes.sort_by(|a, b| b.1.cmp(a.1));
        for (cause, n) in causes.iter().take(12) {
            let crashed = totals.raw_crashed.get(*cause).copied().unwrap_or(0);
            println!("  survived {n:>4}, crashed {crashed:>4}: {cause}");
        }
        let mut crashes: Vec<_> = totals
            .raw_crashed
            .iter()
            .filter(|(k, _)| !totals.raw_survived.contains_key(*k))
            .collect();
        crashes.sort_by(|a, b| b.1.cmp(a.1));
        for (cause, n) in crashes.iter().take(8) {
            println!("  survived    0, crashed {n:>4}: {cause}");
        }
    }
    if !totals.families.is_empty() {
        println!(
            "declared ops by family: calls, built, refused; refusals replayed raw, survived by raw \
             ggml, of which it computed the node (the over-cautious share's upper bound: a \
             computed node may still be wrong or read out of bounds)"
        );
        for (f, [calls, ok, err, checked, survived, computed]) in &totals.families {
            let share = if *checked > 0 {
                format!("{:.0} %", 100.0 * *computed as f64 / *checked as f64)
            } else {
                "-".into()
            };
            println!(
                "  {f:<10} {calls:>7} {ok:>7} {err:>7}; {checked:>5} {survived:>5} {computed:>5} ({share})"
            );
        }
    }
    if totals.failures.is_empty() {
        println!("failures: none");
        0
    } else {
        println!("FAILURES: {}", totals.failures.len());
        for f in &totals.failures {
            println!("{f}\n");
        }
        1
    }
}

/// Runs one batch of seeds in a child; on failure, isolates and minimises.
fn batch_run(
    seeds: &[u64],
    timeout: Duration,
    no_slow: bool,
    raw_checks: usize,
    totals: &Mutex<Totals>,
) {
    let end = child(&exec_args(seeds, None, None, no_slow), timeout, &[]);
    let lines = match end {
        End::Ok(out) => out,
        End::Failed(_) => {
            // Rerun each program alone to find the culprits.
            let mut out = String::new();
            for &seed in seeds {
                match child(&exec_args(&[seed], None, None, no_slow), timeout, &[]) {
                    End::Ok(o) => out.push_str(&o),
                    End::Failed(why) => {
                        let keep = minimise(seed, timeout, no_slow);
                        let program = program_from_seed(seed);
                        let calls: Vec<String> = keep
                            .iter()
                            .map(|&i| format!("  [{i}] {:?}", program.calls[i]))
                            .collect();
                        let report = format!(
                            "seed {seed}: {why}\nminimised to calls {keep:?} (ggml-fuzz exec --seeds {seed} --keep {}):\n{}",
                            keep.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
                            calls.join("\n")
                        );
                        eprintln!("FAILURE {report}");
                        totals.lock().expect("lock").failures.push(report);
                    }
                }
            }
            out
        }
    };
    let mut refusals = Vec::new();
    {
        let mut t = totals.lock().expect("lock");
        t.programs += seeds.len() as u64;
        for line in lines.lines() {
            let mut parts = line.splitn(4, ' ');
            let (Some(seed), Some(i), Some(kind), Some(outcome)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            t.calls += 1;
            *t.outcomes
                .entry(outcome.split(' ').next().unwrap_or("?").to_string())
                .or_default() += 1;
            if let Some(f) = family(kind) {
                let row = t.families.entry(f.to_string()).or_default();
                row[0] += 1;
                row[1] += u64::from(outcome.starts_with("ok"));
                row[2] += u64::from(outcome.starts_with("err"));
            }
            if let Some(variant) = outcome.strip_prefix("err ") {
                if let (Ok(seed), Ok(i)) = (seed.parse(), i.parse()) {
                    refusals.push((seed, i, kind.to_string(), variant.to_string()));
                }
            }
        }
    }
    // Replay a few refusals through raw ggml: those of declared ops first
    // (their over-cautious rate is reported per family), then others.
    let (ops, others): (Vec<_>, Vec<_>) = refusals.iter().partition(|r| family(&r.2).is_some());
    let mut picked = 0;
    let mut picked_ops = 0;
    let spread = (others.len() / raw_checks.max(1)).max(1);
    let picks = ops.iter().map(|r| (true, *r)).chain(
        others
            .iter()
            .enumerate()
            .filter(|(k, _)| k % spread == 0)
            .map(|(_, r)| (false, *r)),
    );
    for (is_op, (seed, i, kind, variant)) in picks {
        if is_op && picked_ops >= raw_checks || !is_op && picked >= raw_checks {
            continue;
        }
        let program = program_from_seed(*seed);
        if !raw::applicable(&program.calls[*i]) {
            continue;
        }
        if is_op {
            picked_ops += 1;
        } else {
            picked += 1;
        }
        let cause = format!("{kind} -> {variant}");
        let end = child(&exec_args(&[*seed], None, Some(*i), no_slow), timeout, &[]);
        let mut t = totals.lock().expect("lock");
        t.raw_checked += 1;
        let survived = matches!(&end, End::Ok(out) if out.contains("raw survived"));
        let computed = matches!(&end, End::Ok(out) if out.contains("raw survived Computed"));
        if let Some(f) = family(kind) {
            let row = t.families.entry(f.to_string()).or_default();
            row[3] += 1;
            row[4] += u64::from(survived);
            row[5] += u64::from(computed);
        }
        if survived && std::env::var_os("GGML_FUZZ_SHOW_SURVIVED").is_some() {
            let how = if computed { "computed" } else { "built" };
            eprintln!("survived ({how}): seed {seed} call {i}: {kind} -> {variant}");
        }
        if survived {
            *t.raw_survived.entry(cause).or_default() += 1;
        } else {
            *t.raw_crashed.entry(cause).or_default() += 1;
        }
    }
    let _ = &totals.lock().expect("lock").refusals;
}
