//! Malformed inputs: every one gives an error or a report, never a panic.
//!
//! `tests/corpus/` holds small malformed files (a test checks they are
//! current; `UPDATE_SNAPSHOTS=1` rewrites them);
//! larger cases (a decompression bomb) are built in memory.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::*;
use wasmops_inspect::scan::{AdvisoryDb, Policy};
use wasmops_inspect::{InspectError, conforms, features, inspect, scan, validate};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn db() -> &'static AdvisoryDb {
    static DB: OnceLock<AdvisoryDb> = OnceLock::new();
    DB.get_or_init(|| AdvisoryDb::load(&advisory_db_dir()).unwrap_or_default())
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const MODULE_HEADER: &[u8] = b"\0asm\x01\0\0\0";
const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\0\x01\0";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Small malformed inputs, written to `tests/corpus/`.
fn small_cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let rich = rich_component("1.5.4");
    let module = preview1_module();
    let mut huge_len = MODULE_HEADER.to_vec();
    huge_len.extend_from_slice(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x60, 0]);
    let mut huge_custom_name = MODULE_HEADER.to_vec();
    huge_custom_name.extend_from_slice(&[0, 6, 0xff, 0xff, 0xff, 0xff, 0x0f, b'x']);
    let mut huge_nested = COMPONENT_HEADER.to_vec();
    huge_nested.extend_from_slice(&[1, 0xff, 0xff, 0xff, 0x7f, 0, b'a', b's', b'm']);
    let mut overlong_leb = MODULE_HEADER.to_vec();
    overlong_leb.extend_from_slice(&[1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);

    let mut deep = String::new();
    for _ in 0..10_000 {
        deep.push('[');
    }
    let mut nested_garbage = COMPONENT_HEADER.to_vec();
    let inner = cat(&[MODULE_HEADER, &rng.bytes(40)]);
    nested_garbage.push(1);
    leb(&mut nested_garbage, inner.len() as u64);
    nested_garbage.extend_from_slice(&inner);

    // Components nested 64 deep, each with a custom section.
    let mut deep_components = cat(&[COMPONENT_HEADER, &custom("version", b"inner")]);
    for _ in 0..64 {
        let mut outer = COMPONENT_HEADER.to_vec();
        outer.push(4);
        leb(&mut outer, deep_components.len() as u64);
        outer.extend_from_slice(&deep_components);
        deep_components = outer;
    }

    let server = http_server_component();
    vec![
        ("empty.wasm", Vec::new()),
        ("magic-only.wasm", b"\0asm".to_vec()),
        ("text.bin", b"(module)\n".to_vec()),
        ("random-bytes.bin", rng.bytes(512)),
        (
            "module-header-then-garbage.wasm",
            cat(&[MODULE_HEADER, &rng.bytes(300)]),
        ),
        (
            "component-header-then-garbage.wasm",
            cat(&[COMPONENT_HEADER, &rng.bytes(300)]),
        ),
        ("unknown-version.wasm", b"\0asm\x02\0\0\0".to_vec()),
        ("unknown-layer.wasm", b"\0asm\x0d\0\x07\0".to_vec()),
        ("truncated-component.wasm", rich[..rich.len() / 2].to_vec()),
        ("truncated-component-header.wasm", rich[..10].to_vec()),
        ("truncated-module.wasm", module[..module.len() - 7].to_vec()),
        ("huge-section-length.wasm", huge_len),
        ("huge-custom-name-length.wasm", huge_custom_name),
        ("huge-nested-module-length.wasm", huge_nested),
        ("overlong-leb.wasm", overlong_leb),
        (
            "unknown-section-id.wasm",
            cat(&[MODULE_HEADER, &[99, 3, 1, 2, 3]]),
        ),
        ("nested-module-garbage.wasm", nested_garbage),
        ("deeply-nested-components.wasm", deep_components),
        (
            "dep-not-zlib.wasm",
            with_sections(
                server.clone(),
                &[custom(".dep-v0", b"plain text, not zlib")],
            ),
        ),
        (
            "dep-zlib-not-json.wasm",
            with_sections(server.clone(), &[custom(".dep-v0", &zlib(b"{not json"))]),
        ),
        (
            "dep-wrong-json-shape.wasm",
            with_sections(
                server.clone(),
                &[dep_section(r#"{"packages":[{"name":1}]}"#)],
            ),
        ),
        (
            "dep-bad-index.wasm",
            with_sections(
                server.clone(),
                &[dep_section(
                    r#"{"packages":[{"name":"a","version":"1.0.0","dependencies":[7]}]}"#,
                )],
            ),
        ),
        (
            "dep-deep-json.wasm",
            with_sections(server.clone(), &[custom(".dep-v0", &zlib(deep.as_bytes()))]),
        ),
        (
            "dep-bomb.wasm",
            with_sections(
                server.clone(),
                &[custom(".dep-v0", &zlib(&vec![b' '; 9 * 1024 * 1024]))],
            ),
        ),
        (
            "dep-truncated-zlib.wasm",
            with_sections(
                server.clone(),
                &[custom(".dep-v0", &{
                    let z = zlib(dep_json("1.5.4").as_bytes());
                    z[..z.len() / 2].to_vec()
                })],
            ),
        ),
        (
            "dep-weird-versions.wasm",
            with_sections(
                server.clone(),
                &[dep_section(
                    r#"{"packages":[{"name":"regex","version":"not-semver"},{"name":"regex","version":"18446744073709551615.0.0"},{"name":"smallvec","version":"0.6.9-alpha+x","source":"crates.io"}]}"#,
                )],
            ),
        ),
        (
            "bad-producers.wasm",
            with_sections(
                server.clone(),
                &[custom("producers", &[1, 3, b'b', b'a', b'd', 0])],
            ),
        ),
        (
            "truncated-producers.wasm",
            with_sections(server.clone(), &[custom("producers", &[5, 8, b'l', b'a'])]),
        ),
        (
            "bad-name-section.wasm",
            with_sections(module.clone(), &[custom("name", &[0, 9, 1, 2])]),
        ),
        (
            "bad-component-name-section.wasm",
            with_sections(
                server.clone(),
                &[custom("component-name", &[0, 0xff, 0xff])],
            ),
        ),
        (
            "metadata-not-utf8.wasm",
            with_sections(
                server.clone(),
                &[
                    custom("licenses", &[0xc3, 0x28]),
                    custom("source", &[0xff; 8]),
                ],
            ),
        ),
        (
            "control-chars-in-names.wasm",
            with_sections(
                component(&["acme:x/y@1.0.0"], &[]),
                &[
                    custom("description", b"line one\nline two\x1b[0m"),
                    producers(&[("sdk", &[("evil\u{1b}[31m", "1\n2")])]),
                ],
            ),
        ),
    ]
}

/// Runs every entry point over one input; panics only if a call panics.
fn exercise(name: &str, bytes: &[u8], heavy: bool) -> Result<(), InspectError> {
    let _ = validate(bytes, features());
    let _ = conforms(bytes, "wasi:http/proxy");
    let report = inspect(bytes)?;
    // The WIT decoder runs behind an unwind guard; it must not need it.
    assert!(
        !report
            .notes
            .iter()
            .any(|n| n.contains("failed unexpectedly")),
        "{name}: {:?}",
        report.notes
    );
    let _ = report.to_text();
    let _ = report.to_json();
    if heavy {
        let _ = conforms(bytes, "wasi:cli/command");
        let s = scan(name, &report, &Policy::default(), Some(db()));
        let _ = s.to_table();
        let _ = s.to_json();
        let _ = s.to_sarif(name);
        let _ = s.to_cyclonedx(&report);
        let _ = s.fails(wasmops_inspect::scan::Severity::Low);
    }
    Ok(())
}

#[test]
fn committed_corpus_is_current() {
    let dir = corpus_dir();
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    for (name, bytes) in small_cases() {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == bytes,
                "{} is missing or stale: rerun with UPDATE_SNAPSHOTS=1",
                path.display()
            );
        }
    }
}

#[test]
fn committed_corpus_never_panics() {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 25, "corpus has {} files", files.len());
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let _ = exercise(&name, &bytes, true);
    }
}

#[test]
fn corpus_outcomes() {
    let cases = small_cases();
    let get = |n: &str| {
        let (_, bytes) = cases.iter().find(|(name, _)| *name == n).unwrap();
        inspect(bytes)
    };
    for n in [
        "empty.wasm",
        "magic-only.wasm",
        "text.bin",
        "random-bytes.bin",
    ] {
        assert!(
            matches!(
                get(n),
                Err(InspectError::BadMagic | InspectError::TruncatedHeader(_))
            ),
            "{n}"
        );
    }
    for n in [
        "truncated-component.wasm",
        "truncated-module.wasm",
        "huge-section-length.wasm",
        "huge-nested-module-length.wasm",
        "unknown-version.wasm",
    ] {
        let e = get(n).unwrap_err();
        assert!(matches!(e, InspectError::Malformed { .. }), "{n}: {e}");
        assert!(!e.to_string().contains('\n'), "{n}: {e}");
    }
    for (n, needle) in [
        ("dep-not-zlib.wasm", "zlib"),
        ("dep-zlib-not-json.wasm", "JSON"),
        ("dep-wrong-json-shape.wasm", "JSON"),
        ("dep-bad-index.wasm", "index 7"),
        ("dep-deep-json.wasm", "JSON"),
        ("dep-truncated-zlib.wasm", "zlib"),
        ("dep-bomb.wasm", "more than 8388608 bytes"),
    ] {
        let r = get(n).unwrap();
        let e = r.dependency_list_error.as_deref().unwrap_or("");
        assert!(e.contains(needle), "{n}: {e:?}");
        assert!(r.dependencies.is_empty(), "{n}");
    }
    let r = get("dep-weird-versions.wasm").unwrap();
    assert_eq!(r.dependencies.len(), 3);
    let r = get("deeply-nested-components.wasm").unwrap();
    assert!(r.valid, "{:?}", r.validation_error);
    assert_eq!(r.nested_metadata.len(), 1);
    assert_eq!(r.nested_metadata[0].version.as_deref(), Some("inner"));
    let r = get("metadata-not-utf8.wasm").unwrap();
    assert_eq!(r.metadata.licenses, None);
    assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    let r = get("control-chars-in-names.wasm").unwrap();
    assert!(!r.to_text().contains('\u{1b}'));
}

#[test]
fn decompression_bomb_is_capped() {
    // 9 MiB of spaces inflates past the 8 MiB cap from a ~9 KiB payload.
    let bomb = zlib(&vec![b' '; 9 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    let bytes = with_nested_module(
        http_server_component(),
        &core_module_with(&[custom(".dep-v0", &bomb)]),
    );
    let r = inspect(&bytes).unwrap();
    assert!(r.has_dependency_list);
    let e = r.dependency_list_error.as_deref().unwrap();
    assert!(e.contains("more than 8388608 bytes"), "{e}");
    exercise("bomb.wasm", &bytes, true).unwrap();

    // Exactly at the cap is still read (and then rejected as JSON).
    let at_cap = zlib(&vec![b' '; 8 * 1024 * 1024]);
    let e = wasmops_inspect::decode_dep_list(&at_cap).unwrap_err();
    assert!(matches!(e, wasmops_inspect::DepListError::Json(_)), "{e}");
}

#[test]
fn generated_cases_never_panic() {
    for (name, bytes) in small_cases() {
        let _ = exercise(name, &bytes, true);
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        match rng.below(7) {
            // Flip one to four bits.
            0 => {
                for _ in 0..1 + rng.below(4) {
                    if b.is_empty() {
                        break;
                    }
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            // Truncate.
            1 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            // Insert random bytes.
            2 => {
                let at = rng.below(b.len() + 1);
                let n = 1 + rng.below(16);
                let extra = rng.bytes(n);
                b.splice(at..at, extra);
            }
            // Delete a range.
            3 => {
                if !b.is_empty() {
                    let at = rng.below(b.len());
                    let n = (1 + rng.below(32)).min(b.len() - at);
                    b.drain(at..at + n);
                }
            }
            // Overwrite with an extreme LEB128 value.
            4 => {
                if !b.is_empty() {
                    let at = rng.below(b.len());
                    let leb: &[u8] = [
                        &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                        &[0x80, 0x80, 0x80, 0x80, 0x00][..],
                        &[0x00][..],
                        &[0x7f][..],
                    ][rng.below(4)];
                    for (k, v) in leb.iter().enumerate() {
                        if let Some(slot) = b.get_mut(at + k) {
                            *slot = *v;
                        }
                    }
                }
            }
            // Duplicate a chunk.
            5 => {
                if !b.is_empty() {
                    let at = rng.below(b.len());
                    let n = (1 + rng.below(64)).min(b.len() - at);
                    let chunk = b[at..at + n].to_vec();
                    let to = rng.below(b.len() + 1);
                    b.splice(to..to, chunk);
                }
            }
            // Set a random byte.
            _ => {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
            }
        }
    }
    b
}

#[test]
fn five_thousand_mutations_never_panic() {
    let seeds = [
        rich_component("1.5.4"),
        http_client_component(),
        preview1_module(),
    ];
    let mut rng = Rng(0x00c0_ffee_1234_5678);
    let mut ok = 0usize;
    let mut errors = 0usize;
    for i in 0..5_000 {
        let base = &seeds[i % seeds.len()];
        let input = mutate(&mut rng, base);
        // Every 50th input also goes through scanning and all outputs.
        match exercise("mutant.wasm", &input, i % 50 == 0) {
            Ok(()) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().contains('\n'));
                errors += 1;
            }
        }
    }
    // The mutations exercise both paths.
    assert!(ok > 500, "ok={ok} errors={errors}");
    assert!(errors > 500, "ok={ok} errors={errors}");
}
