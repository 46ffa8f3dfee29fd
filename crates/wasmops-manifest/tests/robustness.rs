//! No input makes the parser panic, and every error is one line with a
//! position inside the text.

use std::fs;
use std::path::Path;

use wasmops_manifest::{Checks, ManifestError, parse_str};

const VALID: &str = r#"manifest_version = 1
[app]
name = "shop"
[variables]
greeting = { default = "hello" }
token = { required = true, secret = true }
[key_value.default]
durability = "fsync"
[key_value.cache]
backend = "redis"
url = "redis://127.0.0.1"
[component.web]
source = "app.wasm"
route = ["/", "/api/...", { path = "/x", host = "*.example.com" }]
allowed_outbound_hosts = ["https://api.example.com"]
key_value_stores = ["default"]
variables = ["greeting"]
files = ["static", { source = "static", destination = "/s" }]
environment = { A = "b" }
[component.web.limits]
memory = "64MiB"
timeout = "1.5s"
concurrency = 10
"#;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.wasm"), "x").unwrap();
    fs::create_dir(dir.path().join("static")).unwrap();
    dir
}

fn check(text: &str, dir: &Path) -> Result<(), ManifestError> {
    match parse_str(text, "wasmops.toml", dir, &Checks::default()) {
        Ok(_) => Ok(()),
        Err(e) => {
            let rendered = e.to_string();
            assert!(!rendered.contains('\n'), "{rendered}");
            assert!(rendered.starts_with("wasmops.toml:"), "{rendered}");
            assert!(e.line >= 1, "{rendered}");
            assert!(e.line <= text.split('\n').count(), "{rendered}\n{text}");
            assert!(e.hint.is_some(), "{rendered}");
            Err(e)
        }
    }
}

#[test]
fn the_base_manifest_is_valid() {
    let dir = app_dir();
    check(VALID, dir.path()).unwrap();
}

#[test]
fn mutated_manifests_never_panic() {
    let dir = app_dir();
    let alphabet: Vec<char> = "[]{}=\",.'#\\\n /-_:*0123456789aezAZ…\t\0\u{feff}"
        .chars()
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let mut chars: Vec<char> = VALID.chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(chars.len() + 1);
            match rng.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = alphabet[rng.below(alphabet.len())],
                _ => chars.insert(at, alphabet[rng.below(alphabet.len())]),
            }
        }
        let text: String = chars.into_iter().collect();
        let _ = check(&text, dir.path());
    }
}

#[test]
fn random_bytes_never_panic() {
    let dir = app_dir();
    let mut rng = Rng(42);
    for _ in 0..500 {
        let len = rng.below(400);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = check(&text, dir.path());
        // And through `load`, which reads bytes.
        let file = dir.path().join("wasmops.toml");
        fs::write(&file, &bytes).unwrap();
        let _ = wasmops_manifest::load(&file);
    }
}

#[test]
fn deep_nesting_and_huge_values_are_errors() {
    let dir = app_dir();
    let n = 100_000;
    let head = "manifest_version = 1\n[app]\nname = \"x\"\n[component.a]\nsource = \"app.wasm\"\n";
    let cases = [
        format!("{head}route = {}{}\n", "[".repeat(n), "]".repeat(n)),
        format!("{head}route = {}\n", "{ a = ".repeat(n)),
        format!("{head}route = {}", "[".repeat(n)),
        format!("{}= 1\n", "a.".repeat(n)),
        format!("[{}]\n", "a.".repeat(n)),
        format!("{head}[component.a.limits]\nconcurrency = 99999999999999999999999999\n"),
        format!("{head}[component.a.limits]\nconcurrency = -9223372036854775808\n"),
        format!("{head}[component.a.limits]\nmemory = 9223372036854775807\n"),
        format!(
            "{head}[component.a.limits]\nmemory = \"{}GiB\"\n",
            "9".repeat(5000)
        ),
        format!(
            "{head}[component.a.limits]\ntimeout = \"{}h\"\n",
            "9".repeat(30)
        ),
        format!("{head}[component.a.limits]\ntimeout = -1\n"),
        format!("{head}route = \"/{}\"\n", "a/".repeat(n)),
        format!("{head}description = \"{}\"\n", "é".repeat(n)),
        format!(
            "{head}[component.{}]\nsource = \"app.wasm\"\n",
            "b".repeat(n)
        ),
        "manifest_version = 99999999999999999999999\n".to_string(),
        "manifest_version = 1e999\n".to_string(),
        "manifest_version = \"1\"\n".to_string(),
        format!("{head}route = \"/\"\n[component.b]\nsource = \"app.wasm\"\nroute = \"/\"\n"),
        format!("\u{feff}{head}"),
        String::new(),
        "\0".to_string(),
    ];
    for text in &cases {
        let _ = check(text, dir.path());
    }
    // Some of these are valid: make sure at least the obviously bad ones fail.
    assert!(check(&cases[0], dir.path()).is_err());
    assert!(check(&cases[5], dir.path()).is_err());
    assert!(check(&cases[8], dir.path()).is_err());
    assert!(check(&cases[17], dir.path()).is_err());
    assert!(check(&cases[19], dir.path()).is_err());
}
