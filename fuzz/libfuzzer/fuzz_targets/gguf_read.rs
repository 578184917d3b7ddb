//! libFuzzer target: the GGUF reader. Input bytes drive the structure-aware
//! generator (`ggml_fuzz::gguf`); the file it makes is read by ours and by
//! ggml's reader, which must agree (`oracle::check`). A crash, sanitizer
//! report, panic or disagreement is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = ggml_fuzz::gguf::file_from_bytes(data);
    if let Err(e) = ggml_fuzz::gguf::oracle::check(&file) {
        panic!("{e}");
    }
    // The raw input as a file too.
    if let Err(e) = ggml_fuzz::gguf::oracle::check(data) {
        panic!("{e}");
    }
});
