//! Build script (Cargo.toml `build`): embeds `docs/openapi.yaml` (JSON, readable in the tree) without its comment
//! lines and indentation, which were 12.6 KB of the Windows exe. JSON strings cannot hold a raw
//! line break, so trimming each line and joining them changes no value; a unit test in
//! `src/http/openapi.rs` parses both and compares.

use std::path::Path;

fn main() {
    let src = Path::new("docs/openapi.yaml");
    println!("cargo:rerun-if-changed={}", src.display());
    let text = std::fs::read_to_string(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let json = &text[text.find('{').unwrap_or(0)..];
    let compact: String = json.lines().map(str::trim).collect();
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapi.json");
    std::fs::write(&out, compact).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
