//! The reader's memory is bounded by the file, not by what the file claims:
//! measured with a counting global allocator (its own test binary, so that
//! no other test allocates meanwhile).

#[path = "common/counting.rs"]
mod counting;

use ggml::gguf::Gguf;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// Peak bytes allocated while opening `bytes` (beyond the copy of the
/// file `from_bytes` makes), and whether it opened.
fn peak_opening(bytes: &[u8]) -> (usize, bool) {
    let (ok, peak) = counting::peak_during(|| Gguf::from_bytes(bytes).is_ok());
    (peak.saturating_sub(bytes.len().next_multiple_of(8)), ok)
}

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&n_tensors.to_le_bytes());
    v.extend_from_slice(&n_kv.to_le_bytes());
    v
}

fn str(v: &mut Vec<u8>, s: &[u8]) {
    v.extend_from_slice(&(s.len() as u64).to_le_bytes());
    v.extend_from_slice(s);
}

/// The bound the docs state: four bytes per byte of file, plus 4 KiB.
fn bound(len: usize) -> usize {
    4 * len + 4096
}

#[test]
fn metadata_memory_is_bounded_by_the_file() {
    // An array that claims 2^30 elements in a 100-byte file.
    let mut f = header(0, 1);
    str(&mut f, b"big");
    f.extend_from_slice(&9i32.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&(1u64 << 30).to_le_bytes());
    f.resize(100, 0);
    let (peak, ok) = peak_opening(&f);
    assert!(!ok);
    assert!(peak <= bound(f.len()), "2^30-element claim: {peak} bytes");

    // Counts that claim 2^62 entries.
    let f = header(1 << 62, 1 << 62);
    let (peak, ok) = peak_opening(&f);
    assert!(!ok && peak <= bound(f.len()), "huge counts: {peak} bytes");

    // The densest valid files: many one-byte keys, and many empty tensors,
    // and the same with a lying count and the tail cut off.
    let n = 20_000;
    let mut kvs = header(0, n);
    for i in 0..n {
        str(&mut kvs, format!("{i:x}").as_bytes());
        kvs.extend_from_slice(&0i32.to_le_bytes());
        kvs.push(1);
    }
    let mut tensors = header(n, 0);
    for i in 0..n {
        str(&mut tensors, format!("{i}").as_bytes());
        tensors.extend_from_slice(&1u32.to_le_bytes());
        tensors.extend_from_slice(&0i64.to_le_bytes());
        tensors.extend_from_slice(&0i32.to_le_bytes());
        tensors.extend_from_slice(&0u64.to_le_bytes());
    }
    tensors.resize(tensors.len().next_multiple_of(32), 0);
    let (peak, ok) = peak_opening(&tensors);
    assert!(ok, "the tensor file is valid");
    assert!(
        peak <= bound(tensors.len()),
        "{n} tensor infos: {peak} bytes for {}",
        tensors.len()
    );
    let g = Gguf::from_bytes(&tensors).unwrap();
    assert!(g.index_bytes() <= bound(tensors.len()));
    let (kv_peak, kv_ok) = peak_opening(&kvs);
    assert!(kv_ok, "the key file is valid");
    eprintln!(
        "{n} keys: peak {kv_peak} B for a {} B file; {n} tensors: peak {peak} B, index {} B, for a {} B file",
        kvs.len(),
        g.index_bytes(),
        tensors.len()
    );
    let peak = kv_peak;
    assert!(
        peak <= bound(kvs.len()),
        "{n} keys: {peak} bytes for {}",
        kvs.len()
    );
    let mut lying = tensors[..tensors.len() / 2].to_vec();
    lying[8..16].copy_from_slice(&(n * 2).to_le_bytes());
    let (peak, ok) = peak_opening(&lying);
    assert!(
        !ok && peak <= bound(lying.len()),
        "a lying count: {peak} bytes"
    );
}
