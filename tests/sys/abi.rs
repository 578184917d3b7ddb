//! The ABI guard and the build metadata, against the library actually linked.
//!
//! bindgen's layout tests (size, alignment and field offsets of every struct)
//! are compile-time `const` assertions in the generated bindings: they run, and
//! would fail the build, whenever `ggml-sys` compiles.
//!
//! Where the libraries are shared (the pkg-config modes, the `dynamic`
//! feature), a library that reports another ggml version is put in front of
//! the real one with `LD_PRELOAD` (a shim defining `ggml_version()`, compiled
//! here with `cc`), and the guard must refuse it. A static build has no library
//! to swap: the version the bindings expect is checked against the one linked.

use ggml_sys::abi::{self, ExpectedAbi, LinkedAbi};

#[test]
fn linked_library_matches_bindings() {
    abi::check().expect("the linked ggml is the one the bindings describe");
    // Cached: a second call answers the same.
    assert!(abi::check().is_ok());
}

#[test]
fn measured_values_match_the_headers() {
    let expected = ExpectedAbi::of_bindings();
    let linked = LinkedAbi::measure(&expected);
    assert_eq!(linked.tensor_size, expected.tensor_size);
    assert_eq!(linked.max_dims, Some(ggml_sys::GGML_MAX_DIMS));
    assert!(linked.knows_last_type);
    // Every link mode knows which ggml the bindings were made for: the guard
    // compares versions, not only layouts.
    let version = expected
        .ggml_version
        .as_deref()
        .expect("the build found the ggml version of the headers (build_info::GGML_VERSION)");
    assert_eq!(version, linked.ggml_version);
    assert!(!linked.ggml_commit.is_empty());
}

/// In a child process started by [`another_ggml_version_is_refused`] (with the
/// shim preloaded): prints what the guard says.
#[test]
fn abi_guard_child() {
    if std::env::var_os("GGML_SYS_ABI_CHILD").is_none() {
        return;
    }
    match abi::check() {
        Ok(()) => println!("GUARD: accepted"),
        Err(err) => println!("GUARD: refused: {err}"),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn another_ggml_version_is_refused() {
    let expected = ExpectedAbi::of_bindings();
    let version = expected
        .ggml_version
        .clone()
        .expect("GGML_VERSION is known");
    if !ggml_sys::build_info::SHARED {
        // Static: the library is inside this binary and cannot be another one.
        // The guard still compares what it measures with what it expects.
        let mut linked = LinkedAbi::measure(&expected);
        assert!(abi::compare(&expected, &linked).is_ok());
        linked.ggml_version = "0.0.1-other".into();
        assert!(abi::compare(&expected, &linked).is_err());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("other_version.c");
    let shim = dir.path().join("libother_version.so");
    std::fs::write(
        &source,
        "const char * ggml_version(void) { return \"0.0.1-other\"; }\n",
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = std::process::Command::new(&cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("this test compiles a shim library with `{cc}`: {e}"));
    assert!(status.success(), "{cc} failed to build the shim");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "abi::abi_guard_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GGML_SYS_ABI_CHILD", "1")
        .env("LD_PRELOAD", &shim)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // libtest may print "test abi_guard_child ... " on the same line.
    let line = stdout
        .lines()
        .find_map(|l| l.find("GUARD: ").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("the child printed no verdict: {stdout}"));
    assert!(
        line.contains("refused")
            && line.contains(&format!(
                "ggml version: bindings {version}, library 0.0.1-other"
            )),
        "{line}"
    );
}

fn consistent() -> (ExpectedAbi, LinkedAbi) {
    let expected = ExpectedAbi {
        ggml_version: Some("0.26.0".into()),
        type_count: 40,
        tensor_size: 336,
        max_dims: 4,
    };
    let linked = LinkedAbi {
        ggml_version: "0.26.0".into(),
        ggml_commit: "abc1234".into(),
        knows_last_type: true,
        tensor_size: 336,
        max_dims: Some(4),
    };
    (expected, linked)
}

#[test]
fn compare_accepts_equal_sides() {
    let (expected, linked) = consistent();
    assert!(abi::compare(&expected, &linked).is_ok());
}

#[test]
fn tampered_tensor_size_names_both_values() {
    let (expected, mut linked) = consistent();
    linked.tensor_size = 368;
    let err = abi::compare(&expected, &linked).unwrap_err();
    assert_eq!(err.differences.len(), 1);
    let message = err.to_string();
    assert!(message.contains("sizeof(struct ggml_tensor)"), "{message}");
    assert!(
        message.contains("336") && message.contains("368"),
        "{message}"
    );
    assert!(message.contains("abc1234"), "{message}");
}

#[test]
fn tampered_version_and_dims_name_both_values() {
    let (mut expected, mut linked) = consistent();
    expected.ggml_version = Some("0.26.0".into());
    linked.ggml_version = "0.9.4".into();
    linked.max_dims = Some(5);
    linked.knows_last_type = false;
    let err = abi::compare(&expected, &linked).unwrap_err();
    assert_eq!(err.differences.len(), 3);
    let message = err.to_string();
    for part in [
        "ggml version",
        "0.26.0",
        "0.9.4",
        "GGML_MAX_DIMS",
        "GGML_TYPE_COUNT",
        "40",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

#[test]
fn build_info_describes_the_libraries_on_disk() {
    use ggml_sys::build_info as info;
    // The link mode is the one the environment asked for (the test runs
    // with the same environment cargo built it with).
    let asked_system = std::env::var("GGML_SYS_USE_PKG_CONFIG").is_ok_and(|v| v == "1");
    assert_eq!(
        info::LINK_MODE == "system",
        asked_system,
        "{}",
        info::LINK_MODE
    );
    // The directory holds the libraries, shared or static as said.
    let dir = std::path::Path::new(info::LIB_DIR.expect("a library directory"));
    let (shared, archive) = (
        dir.join("libggml-base.so").exists()
            || std::fs::read_dir(dir).is_ok_and(|d| {
                d.filter_map(|e| e.ok()).any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("libggml-base.so")
                })
            }),
        dir.join("libggml-base.a").exists(),
    );
    assert_eq!(info::SHARED, shared, "libggml-base.so in {}", dir.display());
    if !info::SHARED {
        assert!(archive, "libggml-base.a in {}", dir.display());
    }
}
