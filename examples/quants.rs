//! Every quantized type ggml can produce, side by side: a smooth 256×256 image
//! `img[i][j] = cos(2πj/n)·sin(2πi/n)` is quantized to each type and read back
//! dequantized; the table shows what each type costs (bits per weight,
//! compression against f32) and what it loses (L2, L∞, RMSE of the error), and
//! a PNG grid shows the dequantized images.
//!
//! ```text
//! cargo run --release --example quants [-- --json] [-- --out PATH]
//! ```
//!
//! `--json` prints the table as a JSON array of objects (`type`,
//! `bits_per_weight`, `compression`, `l2`, `linf`, `rmse`) instead of text;
//! `--out PATH` writes the PNG there (default `quants.png`).
//!
//! Run time: our part takes well under a second. The rest is ggml building the
//! lattice tables of `iq2_s` and `iq1_m` on first use (about 5 s and 11 s on
//! one core here); ggml parallelises that with OpenMP, so
//! `cargo run --release --features openmp --example quants` divides it by the
//! core count. Types that took over a second are named after the table.

use std::f32::consts::PI;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use font8x8::UnicodeFonts;
use ggml::ndarray::{Array2, ArrayView2, Ix2};
use ggml::{Context, Type};
use image::{GrayImage, ImageFormat, Luma};

/// Side of the test image.
const N: usize = 256;

/// Every quantized type ggml can produce, on a smooth 256×256 image: its
/// cost and its error, as a table and a PNG grid.
#[derive(clap::Parser)]
#[command(version)]
struct Options {
    /// Print the table as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Where to write the PNG grid.
    #[arg(long, default_value = "quants.png")]
    out: PathBuf,
}

/// One row of the table: a type and its error on the image.
struct Row {
    ty: Type,
    bits_per_weight: f64,
    compression: f64,
    l2: f64,
    linf: f64,
    rmse: f64,
    image: Array2<f32>,
    seconds: f64,
}

/// Why ggml cannot quantize the image to `ty`, if it cannot.
fn skip_reason(ty: Type) -> Option<String> {
    if !ty.can_quantize() {
        Some("an intermediate type of matrix products: ggml has no quantizer for it".into())
    } else if ty.requires_imatrix() {
        Some("needs an importance matrix (computed from model activations)".into())
    } else if !ty.can_dequantize() {
        Some("ggml cannot dequantize it".into())
    } else if ty.check_row_len(N).is_err() {
        Some(format!(
            "block size {} does not divide the row length {N}",
            ty.block_size()
        ))
    } else {
        None
    }
}

/// Quantizes `img` to `ty`, dequantizes it and measures the error.
fn measure(img: &Array2<f32>, ty: Type) -> Result<Row> {
    let start = std::time::Instant::now();
    let ctx = Context::new(Context::tensor_size(ty, img.shape())? + (1 << 16))?;
    let t = ctx.tensor_from_array_as(ty, img)?;
    let back = ctx.data()?.to_array_as::<f32, Ix2>(t)?;

    let (mut sum_sq, mut linf) = (0f64, 0f64);
    for (&x, &y) in img.iter().zip(&back) {
        let e = f64::from(y - x).abs();
        sum_sq += e * e;
        linf = linf.max(e);
    }
    let bits_per_weight = ty.bits_per_weight();
    Ok(Row {
        ty,
        bits_per_weight,
        compression: 32.0 / bits_per_weight,
        l2: sum_sq.sqrt(),
        linf,
        rmse: (sum_sq / img.len() as f64).sqrt(),
        image: back,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<8} {:>7} {:>11} {:>10} {:>10} {:>10}",
        "type", "bits/w", "compression", "L2", "L∞", "RMSE"
    );
    for r in rows {
        println!(
            "{:<8} {:>7.4} {:>10.2}x {:>10.4} {:>10.6} {:>10.6}",
            r.ty.name(),
            r.bits_per_weight,
            r.compression,
            r.l2,
            r.linf,
            r.rmse
        );
    }
}

fn print_json(rows: &[Row]) -> Result<()> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "type": r.ty.name(),
                "bits_per_weight": r.bits_per_weight,
                "compression": r.compression,
                "l2": r.l2,
                "linf": r.linf,
                "rmse": r.rmse,
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}

/// Panels per row of the grid, the gap between panels, the label band's
/// height and the label font's scale (8×8 glyphs drawn `SCALE` times larger).
const COLUMNS: usize = 6;
const GAP: usize = 8;
const SCALE: usize = 2;
const LABEL: usize = 8 * SCALE + 8;

/// Draws `text` in black with its top-left corner at (x, y).
fn draw_text(canvas: &mut GrayImage, x: usize, y: usize, text: &str) {
    for (k, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for (dy, dx) in (0..SCALE).flat_map(|dy| (0..SCALE).map(move |dx| (dy, dx))) {
                    let px = x + (k * 8 + gx) * SCALE + dx;
                    let py = y + gy * SCALE + dy;
                    if px < canvas.width() as usize && py < canvas.height() as usize {
                        canvas.put_pixel(px as u32, py as u32, Luma([0]));
                    }
                }
            }
        }
    }
}

/// Maps [-1, 1] to black..white.
fn grey(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// A grid of labelled panels on white.
fn render(panels: &[(String, ArrayView2<'_, f32>)]) -> GrayImage {
    let cols = COLUMNS.min(panels.len()).max(1);
    let rows = panels.len().div_ceil(cols);
    let (cell_w, cell_h) = (N + GAP, N + LABEL + GAP);
    let mut canvas = GrayImage::from_pixel(
        (cols * cell_w + GAP) as u32,
        (rows * cell_h + GAP) as u32,
        Luma([255]),
    );
    for (k, (label, img)) in panels.iter().enumerate() {
        let x0 = GAP + (k % cols) * cell_w;
        let y0 = GAP + (k / cols) * cell_h;
        draw_text(&mut canvas, x0, y0 + 2, label);
        for ((i, j), &v) in img.indexed_iter() {
            canvas.put_pixel((x0 + j) as u32, (y0 + LABEL + i) as u32, Luma([grey(v)]));
        }
    }
    canvas
}

fn main() -> Result<()> {
    let options = <Options as clap::Parser>::parse();
    let n = N as f32;
    let img = Array2::from_shape_fn((N, N), |(i, j)| {
        (2.0 * PI * j as f32 / n).cos() * (2.0 * PI * i as f32 / n).sin()
    });

    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for &ty in Type::ALL.iter().filter(|t| t.is_quantized()) {
        match skip_reason(ty) {
            Some(reason) => skipped.push((ty, reason)),
            None => rows.push(measure(&img, ty).with_context(|| format!("quantizing to {ty}"))?),
        }
    }
    // Most bits first; ties keep ggml's order (the sort is stable).
    rows.sort_by(|a, b| b.bits_per_weight.total_cmp(&a.bits_per_weight));

    if options.json {
        print_json(&rows)?;
    } else {
        println!("{N}×{N} image cos(2πj/n)·sin(2πi/n) through every quantized type:\n");
        print_table(&rows);
    }
    // Notes go to stderr in JSON mode so that stdout stays valid JSON.
    let mut notes = Vec::new();
    let slow: Vec<String> = rows
        .iter()
        .filter(|r| r.seconds > 1.0)
        .map(|r| format!("{} {:.1} s", r.ty.name(), r.seconds))
        .collect();
    if !slow.is_empty() {
        notes.push(format!(
            "\nslow: {} (ggml's one-time table set-up; --features openmp parallelises it)",
            slow.join(", ")
        ));
    }
    notes.extend([String::new(), "skipped:".to_string()]);
    notes.extend(
        skipped
            .iter()
            .map(|(ty, reason)| format!("  {:<8} {reason}", ty.name())),
    );

    let mut panels = vec![("original f32".to_string(), img.view())];
    panels.extend(rows.iter().map(|r| {
        (
            format!("{} {:.2} bpw", r.ty.name(), r.bits_per_weight),
            r.image.view(),
        )
    }));
    render(&panels)
        .save_with_format(&options.out, ImageFormat::Png)
        .with_context(|| format!("writing {}", options.out.display()))?;
    notes.push(format!("\nwrote {}", options.out.display()));

    for line in notes {
        if options.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(())
}
