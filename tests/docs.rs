//! The Chinese documentation keeps up with the English: every configuration field, endpoint and
//! card error code named in `README.md` is in `README.zh-CN.md`, the code blocks are the same
//! (so they stay runnable), and each language links the other. Likewise for the Windows guide.

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The fenced code blocks, in order.
fn code_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(mut b) => {
                    b.push(line);
                    blocks.push(b.join("\n"));
                }
                None => current = Some(vec![line]),
            }
        } else if let Some(b) = current.as_mut() {
            b.push(line);
        }
    }
    blocks
}

/// Words of `text` that match `pred`, split on what cannot be part of them.
fn words(text: &str, pred: impl Fn(&str) -> bool) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "._:/-{}".contains(c)))
        .map(|w| w.trim_matches(|c: char| c == '.' || c == ':' || c == '-'))
        .filter(|w| pred(w))
        .map(str::to_string)
        .collect()
}

fn config_fields(text: &str) -> BTreeSet<String> {
    let sections = [
        "server.", "ukey.", "auth.", "webhook.", "customs.", "ceb.", "log.",
    ];
    words(text, |w| {
        sections
            .iter()
            .any(|s| w.starts_with(s) && w.len() > s.len())
            && w[w.find('.').unwrap() + 1..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
    })
}

fn endpoints(text: &str) -> BTreeSet<String> {
    words(text, |w| {
        ["/rpc", "/api/", "/health", "/metrics", "/openapi.json"]
            .iter()
            .any(|p| w.starts_with(p))
    })
}

fn error_codes(text: &str) -> BTreeSet<String> {
    words(text, |w| w.starts_with("Err:") && w.len() > 4)
}

/// Each English page and its Chinese twin.
const PAIRS: [(&str, &str); 8] = [
    ("README.md", "README.zh-CN.md"),
    ("docs/reference.md", "docs/reference.zh-CN.md"),
    ("docs/benchmark.md", "docs/benchmark.zh-CN.md"),
    ("docs/windows.md", "docs/windows.zh-CN.md"),
    (
        "docs/compat-java-signer.md",
        "docs/compat-java-signer.zh-CN.md",
    ),
    ("docs/fleet.md", "docs/fleet.zh-CN.md"),
    ("docs/security.md", "docs/security.zh-CN.md"),
    ("docs/transfer-client.md", "docs/transfer-client.zh-CN.md"),
];

#[test]
fn the_chinese_readme_names_every_field_endpoint_and_error_of_the_english_one() {
    for (en_path, zh_path) in &PAIRS[..2] {
        names_match(en_path, zh_path);
    }
}

/// The README is short: the reference holds the rest (issue 31: at most ~300 lines each).
#[test]
fn the_readmes_stay_a_newcomers_page() {
    for path in ["README.md", "README.zh-CN.md"] {
        let lines = read(path).lines().count();
        assert!(
            lines <= 300,
            "{path} has {lines} lines; move reference text to docs/"
        );
    }
}

fn names_match(en_path: &str, zh_path: &str) {
    let en = read(en_path);
    let zh = read(zh_path);
    for (what, names) in [
        ("config field", config_fields(&en)),
        ("endpoint", endpoints(&en)),
        ("error code", error_codes(&en)),
    ] {
        // the short README names only a few card errors; the reference names them all
        let at_least = if what == "error code" && en_path == "README.md" {
            1
        } else {
            4
        };
        assert!(
            names.len() >= at_least,
            "found too few {what}s in {en_path}: {names:?}"
        );
        let missing: Vec<_> = names.iter().filter(|n| !zh.contains(n.as_str())).collect();
        assert!(
            missing.is_empty(),
            "{zh_path} lacks these {what}s of {en_path}: {missing:?}"
        );
    }
}

#[test]
fn both_readmes_have_the_same_code_blocks_and_link_each_other() {
    for (en_path, zh_path) in PAIRS {
        let file_name = |p: &'static str| p.rsplit('/').next().unwrap_or(p);
        let (zh_name, en_name) = (file_name(zh_path), file_name(en_path));
        let en = read(en_path);
        let zh = read(zh_path);
        let (a, b) = (code_blocks(&en), code_blocks(&zh));
        assert_eq!(
            a.len(),
            b.len(),
            "{en_path} and {zh_path} differ in code blocks"
        );
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "code block {i} of {zh_path} differs from {en_path}");
        }
        let head = |t: &str| t.lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(
            head(&en).contains(&format!("({zh_name})")),
            "{en_path} links {zh_name} at the top"
        );
        assert!(
            head(&zh).contains(&format!("({en_name})")),
            "{zh_path} links back to {en_name}"
        );
    }
}

#[test]
fn the_extractors_find_what_they_should() {
    let sample =
        "| `ukey.client_restart_command` | x | `POST /api/ukey/restart` and `Err:Custom50070`.";
    assert!(config_fields(sample).contains("ukey.client_restart_command"));
    assert!(endpoints(sample).contains("/api/ukey/restart"));
    assert!(error_codes(sample).contains("Err:Custom50070"));
}
