//! libFuzzer target: libFuzzer's mutated bytes become a program of safe
//! calls (the same generator as the `ggml-fuzz` driver), run in process. An
//! abort, crash, sanitizer report or panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let program = ggml_fuzz::program_from_bytes(data);
    let options = ggml_fuzz::safe::Options::default();
    drop(ggml_fuzz::safe::run(&program, options, None, |_, _| {}));
});
