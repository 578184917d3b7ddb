//! The borrowing rules of the safe API, proven by programs that must not
//! compile (tests/ui/*.rs, with the compiler's expected errors in *.stderr):
//! two mutable views at once, a view across a computation, a view or data
//! token used after its context is dropped, a tensor outliving its context,
//! and a view alive while the tensor is overwritten.
//!
//! Regenerate the expected errors after a deliberate change with
//! `TRYBUILD=overwrite cargo test --test compile_fail`, then read them.

#[test]
fn borrowing_rules() {
    // These programs are only type-checked (`cargo check`), so ggml-sys needs
    // its bindings, not a native build: docs.rs mode skips compiling
    // llama.cpp again in trybuild's own target directory.
    std::env::set_var("DOCS_RS", "1");
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
