//! Inspects a GGUF file: its metadata (long arrays shortened), its tensor
//! table, totals per type, and for a named tensor summary statistics and a
//! histogram of its values.
//!
//! ```text
//! cargo run --release --example gguf-inspect -- FILE [TENSOR]
//! ```
//!
//! The file is memory-mapped and validated; only the metadata and the one
//! tensor asked for are read, so a multi-gigabyte model opens in
//! milliseconds. Plain tensors are read in place (a view of the map),
//! quantized ones dequantized. For a split model, give the first shard.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Parser;
use ggml::gguf::{Gguf, TensorInfo, Value};
use ggml::Type;

/// Inspects a GGUF file: metadata, tensor table, totals per type, and one
/// tensor's statistics and histogram.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The file (for a split model, its first shard).
    file: String,
    /// A tensor to describe.
    tensor: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let path = &args.file;
    let start = Instant::now();
    // SAFETY: the file is not modified while this program runs (a user who
    // rewrites a file while inspecting it gets a SIGBUS, nothing worse).
    let file = unsafe { Gguf::open(path) }.with_context(|| format!("opening {path}"))?;
    let opened = start.elapsed();

    println!("{path}");
    println!(
        "  GGUF v{}, {} metadata keys, {} tensors, alignment {}, data at byte {}, {} in {} file(s)",
        file.version(),
        file.metadata_len(),
        file.tensor_count(),
        file.alignment(),
        file.data_offset(),
        bytes(file.file_len()),
        file.shards()
    );
    if let Some(why) = file.ggml_incompatibility() {
        println!("  note: ggml's own reader would refuse this file: {why}");
    }
    println!(
        "  opened and validated in {:.2} ms",
        opened.as_secs_f64() * 1e3
    );

    println!("\nmetadata:");
    let width = file.metadata().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in file.metadata() {
        println!(
            "  {key:width$}  {:<16} {}",
            value.type_description(),
            shorten(&value)
        );
    }

    println!("\ntensors:");
    let width = file.tensors().map(|t| t.name().len()).max().unwrap_or(0);
    let mut per_type: BTreeMap<Type, (usize, usize, usize)> = BTreeMap::new();
    for t in file.tensors() {
        println!(
            "  {:width$}  {:<8} {:<20} {:>12}",
            t.name(),
            t.ty().name(),
            format!("{:?}", t.shape()),
            bytes(t.byte_len())
        );
        let e = per_type.entry(t.ty()).or_default();
        *e = (e.0 + 1, e.1 + t.len(), e.2 + t.byte_len());
    }

    println!("\nper type:");
    let total: usize = per_type.values().map(|v| v.2).sum();
    for (ty, (n, elements, b)) in &per_type {
        println!(
            "  {:<8} {n:>5} tensors {elements:>14} values {:>12} ({:>5.1} %)",
            ty.name(),
            bytes(*b),
            100.0 * *b as f64 / total.max(1) as f64
        );
    }
    let elements: usize = per_type.values().map(|v| v.1).sum();
    println!(
        "  total    {:>5} tensors {elements:>14} values {:>12} ({:.2} bits per value)",
        file.tensor_count(),
        bytes(total),
        8.0 * total as f64 / elements.max(1) as f64
    );

    if let Some(name) = &args.tensor {
        let t = file.tensor(name)?;
        let start = Instant::now();
        let values = values(&t)?;
        let read = start.elapsed();
        println!(
            "\n{name}: {} {:?}, {} values ({}, {:.1} ms)",
            t.ty(),
            t.shape(),
            values.len(),
            if matches!(t.ty(), Type::F32) {
                "a view of the map"
            } else {
                "converted"
            },
            read.as_secs_f64() * 1e3
        );
        statistics(&values);
    }
    Ok(())
}

/// A value for a one-line display: long strings and arrays shortened.
fn shorten(v: &Value<'_>) -> String {
    let text = v.to_string();
    if text.chars().count() > 100 {
        let cut: String = text.chars().take(97).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The tensor's values as f64 (in place for f32, integers widened, other
/// float and quantized types dequantized).
fn values(t: &TensorInfo<'_>) -> Result<Vec<f64>> {
    Ok(match t.ty() {
        Type::F32 => t
            .view::<f32>()
            .map(|v| v.iter().map(|&x| x as f64).collect())
            .or_else(|_| {
                t.to_array::<f32>()
                    .map(|a| a.iter().map(|&x| x as f64).collect())
            })?,
        Type::F64 => t.to_array::<f64>()?.iter().copied().collect(),
        Type::I8 => t.to_array::<i8>()?.iter().map(|&x| x as f64).collect(),
        Type::I16 => t.to_array::<i16>()?.iter().map(|&x| x as f64).collect(),
        Type::I32 => t.to_array::<i32>()?.iter().map(|&x| x as f64).collect(),
        Type::I64 => t.to_array::<i64>()?.iter().map(|&x| x as f64).collect(),
        _ => t.to_array::<f32>()?.iter().map(|&x| x as f64).collect(),
    })
}

/// Minimum, maximum, mean, standard deviation and a 12-bin histogram.
fn statistics(values: &[f64]) {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        println!("  no finite values");
        return;
    }
    let (min, max) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let n = finite.len() as f64;
    let mean = finite.iter().sum::<f64>() / n;
    let std = (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    println!("  min {min:.6}  max {max:.6}  mean {mean:.6}  std {std:.6}");
    if finite.len() < values.len() {
        println!(
            "  {} values are NaN or infinite",
            values.len() - finite.len()
        );
    }
    const BINS: usize = 12;
    let mut counts = [0usize; BINS];
    let span = (max - min).max(f64::MIN_POSITIVE);
    for v in &finite {
        counts[(((v - min) / span) * BINS as f64).min(BINS as f64 - 1.0) as usize] += 1;
    }
    let most = *counts.iter().max().unwrap_or(&1);
    for (i, c) in counts.iter().enumerate() {
        let lo = min + span * i as f64 / BINS as f64;
        let bar = "#".repeat((40 * c).div_ceil(most.max(1)));
        println!("  {lo:>12.5} | {bar:<40} {c}");
    }
}
