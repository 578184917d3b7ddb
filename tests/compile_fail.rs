//! The borrowing rules of the safe API, proven by programs that must not
//! compile (tests/ui/*.rs, with the compiler's expected errors in *.stderr):
//! two mutable views at once, a view across a computation, a view or data
//! token used after its context is dropped, a tensor outliving its context,
//! a view alive while the tensor is overwritten, and a view of the data or
//! the backend used while an asynchronous computation is pending, a GGUF
//! tensor view outliving its file, a GGUF writer outliving an array it will
//! write, a llama context outliving its model, logits held across a
//! decode, a LoRA adapter outliving its model (or removed while borrowed).
//!
//! Regenerate the expected errors after a deliberate change with
//! `TRYBUILD=overwrite cargo test --test compile_fail`, then read them.

#[test]
fn borrowing_rules() {
    // These programs are only type-checked (`cargo check`), so ggml-sys needs
    // its bindings, not a native build: docs.rs mode skips compiling
    // llama.cpp again in trybuild's own target directory.
    std::env::set_var("DOCS_RS", "1");
    // So they are the same in every link mode: scripts/test-all, which runs
    // the suite once per mode in separate target directories, points them
    // all at one directory and the dependencies are checked once.
    if let Some(dir) = std::env::var_os("GGML_TRYBUILD_TARGET_DIR") {
        std::env::set_var("CARGO_TARGET_DIR", dir);
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
