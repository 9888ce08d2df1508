//! The tree's boundaries, checked on the source: which layer may import which, that `main.rs`
//! only wires, and that every module says what it owns.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// The code of a file, comments left out (they may name any layer).
fn code(p: &Path) -> String {
    read(p)
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn config_is_plain_data_and_imports_no_other_layer() {
    let text = code(&src().join("config.rs"));
    for layer in [
        "auth",
        "http",
        "ukey",
        "customs",
        "webhook",
        "cli",
        "simulator",
    ] {
        assert!(
            !text.contains(&format!("crate::{layer}")),
            "config.rs imports crate::{layer}"
        );
    }
}

#[test]
fn the_customs_domain_serves_no_http() {
    let mut files = Vec::new();
    rust_files(&src().join("customs"), &mut files);
    assert!(!files.is_empty());
    for f in files {
        let text = code(&f);
        for forbidden in ["tiny_http", "crate::http", "Reply"] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                f.display()
            );
        }
    }
}

#[test]
fn the_signing_workflows_serve_no_http() {
    let mut files = Vec::new();
    rust_files(&src().join("sign"), &mut files);
    assert!(!files.is_empty());
    for f in files {
        let text = code(&f);
        for forbidden in ["tiny_http", "crate::http", "Reply"] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                f.display()
            );
        }
    }
}

/// The formats (XML-DSig, 179, certificates) know no card and no webhook: the workflows that
/// use the card are `crate::sign`, so the two never import each other in a circle.
#[test]
fn the_customs_formats_know_no_card() {
    let mut files = Vec::new();
    rust_files(&src().join("customs"), &mut files);
    for f in files {
        let text = code(&f);
        for forbidden in [
            "crate::ukey",
            "crate::webhook",
            "crate::sign",
            "crate::auth",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                f.display()
            );
        }
    }
}

#[test]
fn only_the_http_front_talks_to_tiny_http() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for f in files {
        let rel = f
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("http/") {
            continue;
        }
        assert!(!code(&f).contains("tiny_http"), "{rel} uses tiny_http");
    }
}

#[test]
fn main_only_wires() {
    let lines = read(&src().join("main.rs")).lines().count();
    assert!(
        lines <= 150,
        "main.rs has {lines} lines; move logic into a module"
    );
}

#[test]
fn every_module_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for f in files {
        let text = read(&f);
        let is_test_file = f.file_name().is_some_and(|n| n == "tests.rs");
        assert!(
            is_test_file || text.trim_start().starts_with("//!"),
            "{} has no //! line",
            f.display()
        );
    }
}
