//! Snapshot tests of error messages: each folder under `tests/broken/` holds
//! a `wasmops.toml` or a Spin `spin.toml` (and the files it needs) and
//! `expected.txt`, the exact
//! error line. `UPDATE_SNAPSHOTS=1` rewrites the expected files.

use std::fs;
use std::path::Path;

use wasmops_manifest::{Checks, parse_str};

#[test]
fn broken_manifests_give_the_expected_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let mut cases: Vec<_> = fs::read_dir(&root)
        .expect("tests/broken exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "only {} cases", cases.len());

    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        // A case is a wasmops manifest, or a Spin one.
        let file = if case.join("spin.toml").is_file() {
            "spin.toml"
        } else {
            "wasmops.toml"
        };
        let text = fs::read_to_string(case.join(file)).expect("a manifest");
        let actual = match parse_str(&text, file, case, &Checks::default()) {
            Ok(_) => format!("(no error: case `{name}` parsed successfully)"),
            Err(e) => e.to_string(),
        };
        let expected_path = case.join("expected.txt");
        if update {
            fs::write(&expected_path, format!("{actual}\n")).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        let expected = expected.trim_end_matches('\n');
        if expected != actual {
            failures.push(format!(
                "{name}:\n  expected: {expected}\n  actual:   {actual}"
            ));
        }
        assert!(!actual.contains('\n'), "{name}: error is not one line");
    }
    assert!(
        failures.is_empty(),
        "{} snapshot(s) differ (rerun with UPDATE_SNAPSHOTS=1 to accept):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
