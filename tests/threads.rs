//! The thread cap (`ggml::set_max_threads`): conversions split across threads
//! by default, stay on the calling thread when capped at 1, and produce the
//! same bytes either way. Thread counts are read from /proc/self/status while
//! the conversions run. One test function, in a binary of its own: the cap
//! is process-wide, and other tests' threads would blur the counts.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use ggml::{convert, Type};

fn threads_now() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Quantizes `src` to Q4_K a few times while a sampler thread records the
/// largest thread count of the process; returns (bytes, peak, baseline).
fn quantize_watched(src: &[f32], row_len: usize) -> Result<(Vec<u8>, usize, usize)> {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(threads_now(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(5));
    let baseline = peak.load(Ordering::Relaxed);
    let mut dst = vec![0u8; src.len() / row_len * Type::Q4_K.row_size(row_len).unwrap()];
    for _ in 0..3 {
        convert::from_f32(Type::Q4_K, src, &mut dst, row_len, None)?;
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    Ok((dst, peak.load(Ordering::Relaxed), baseline))
}

#[test]
fn the_thread_cap_limits_conversions_and_keeps_their_results() -> Result<()> {
    ggml::init()?;
    assert_eq!(ggml::max_threads(), ggml::available_cores());
    assert_eq!(
        ggml::available_cores(),
        std::thread::available_parallelism()?.get()
    );

    let row_len = 4096;
    let src: Vec<f32> = (0..1024 * row_len)
        .map(|i| ((i as f32) * 0.37).sin() * 3.0)
        .collect();

    ggml::set_max_threads(1);
    assert_eq!(ggml::max_threads(), 1);
    let (capped, peak, baseline) = quantize_watched(&src, row_len)?;
    assert!(baseline > 0, "no thread count in /proc/self/status");
    assert_eq!(
        peak, baseline,
        "a conversion capped at 1 thread spawned threads"
    );

    ggml::set_max_threads(0);
    assert_eq!(ggml::max_threads(), ggml::available_cores());
    let (split, peak, baseline) = quantize_watched(&src, row_len)?;
    if ggml::available_cores() > 1 {
        assert!(peak > baseline, "a large conversion stayed on one thread");
    }
    // Rows are split at row boundaries, so the bytes do not depend on the split.
    assert!(capped == split, "results differ between 1 and all threads");

    // And the bytes are a real Q4_K encoding of the input (independent bound:
    // 4-bit codes with per-32 scales, error well under 1/8 of the row's range).
    let mut back = vec![0f32; src.len()];
    convert::to_f32(Type::Q4_K, &split, &mut back)?;
    let worst = src
        .iter()
        .zip(&back)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst > 0.0 && worst < 6.0 / 8.0, "worst error {worst}");
    Ok(())
}
