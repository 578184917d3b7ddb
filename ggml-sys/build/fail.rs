//! One clear message instead of a panic backtrace when the build cannot go on.

/// Prints what is missing and the command that fixes it, then stops the build.
pub fn fail(what: &str, fix: &str) -> ! {
    eprintln!();
    eprintln!("error: ggml-sys: {what}");
    eprintln!();
    for line in fix.lines() {
        eprintln!("  {line}");
    }
    eprintln!();
    std::process::exit(1);
}
