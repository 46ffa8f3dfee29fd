//! `wasmops inspect`, `validate`, `scan` and `check` on real components:
//! the test guests, the example app, and Rust commands built here with
//! `cargo auditable` against a vulnerable and a fixed `regex`, scanned with
//! the RustSec snapshot of the shared data.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{output, run, wasmops};

/// The shared reference data: `$WASMOPS_SHARED_DATA`, or a `shared/data`
/// folder beside one of the repository's parents.
fn shared_data() -> PathBuf {
    if let Some(d) = std::env::var_os("WASMOPS_SHARED_DATA") {
        return PathBuf::from(d);
    }
    let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        let candidate = d.join("shared/data");
        if candidate.join("rustsec-advisory-db").is_dir() {
            return candidate;
        }
        dir = d.parent();
    }
    panic!("the shared data (rustsec-advisory-db, schemas) is missing: set WASMOPS_SHARED_DATA");
}

fn db() -> String {
    shared_data()
        .join("rustsec-advisory-db")
        .display()
        .to_string()
}

/// The two `cargo auditable` commands (vulnerable, fixed), built once.
fn audited() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("audit");
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit");
        for v in ["vulnerable", "fixed"] {
            let status = std::process::Command::new("cargo")
                .args(["auditable", "build", "--release", "--locked"])
                .args(["--target", "wasm32-wasip2", "--target-dir"])
                .arg(&target)
                .current_dir(fixtures.join(v))
                .env("CARGO_NET_OFFLINE", "true")
                .env_remove("RUSTFLAGS")
                .status()
                .expect("cargo auditable (crates.io `cargo-auditable`) is needed");
            assert!(status.success(), "cargo auditable build of {v} failed");
        }
        let out = target.join("wasm32-wasip2/release");
        (
            out.join("audit-vulnerable.wasm"),
            out.join("audit-fixed.wasm"),
        )
    })
}

fn json(out: &common::Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn inspect_reports_world_capabilities_producers_and_digest() {
    let out = run(&["inspect", "--format", "json", test_programs::HOSTILE]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = json(&out);
    assert_eq!(r["kind"], "component");
    let bytes = std::fs::read(test_programs::HOSTILE).unwrap();
    assert_eq!(r["size"], bytes.len());
    assert_eq!(r["sha256"].as_str().unwrap().len(), 64);
    let caps: Vec<&str> = r["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for c in [
        "sockets",
        "outbound-http",
        "filesystem",
        "environment",
        "incoming-http",
    ] {
        assert!(caps.contains(&c), "{c} missing from {caps:?}");
    }
    let producers = r["producers"].to_string();
    assert!(producers.contains("rustc"), "{producers}");
    assert!(r["sections"].as_array().unwrap().len() > 1);

    // The WIT of the world.
    let wit = run(&["inspect", "--wit", test_programs::HELLO]);
    assert_eq!(wit.code, 0, "{}", wit.stderr);
    assert!(
        wit.stdout.contains("export wasi:http/incoming-handler@0.2"),
        "{}",
        wit.stdout
    );

    // A preview1 core module: its WASI calls in plain words.
    let text = run(&["inspect", test_programs::CLI_P1]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("kind:    module"), "{}", text.stdout);
    assert!(text.stdout.contains("wasi-preview1"), "{}", text.stdout);

    // A component using the key-value store and configuration.
    let api =
        Path::new(test_programs::EXAMPLE_WEBAPP).join("target/wasm32-wasip2/release/api.wasm");
    let r = json(&run(&[
        "inspect",
        "--format",
        "json",
        api.to_str().unwrap(),
    ]));
    let caps = r["capabilities"].to_string();
    assert!(
        caps.contains("key-value") && caps.contains("\"config\""),
        "{caps}"
    );
}

#[test]
fn dependency_list_and_advisories_from_cargo_auditable() {
    let (vulnerable, fixed) = audited();
    let r = json(&run(&[
        "inspect",
        "--format",
        "json",
        vulnerable.to_str().unwrap(),
    ]));
    assert_eq!(r["has_dependency_list"], true);
    assert!(
        r["dependencies"].to_string().contains("\"regex\""),
        "{}",
        r["dependencies"]
    );

    let out = run(&[
        "scan",
        vulnerable.to_str().unwrap(),
        "--db",
        &db(),
        "--format",
        "json",
    ]);
    assert_eq!(
        out.code, 1,
        "a high advisory fails the scan: {}",
        out.stdout
    );
    let s = json(&out);
    let ids: Vec<&str> = s["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["advisory_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"RUSTSEC-2022-0013"), "{ids:?}");

    // The SBOM lists the dependency with its purl.
    let sbom = run(&[
        "scan",
        vulnerable.to_str().unwrap(),
        "--db",
        &db(),
        "--format",
        "cyclonedx",
        "--fail-on",
        "critical",
    ]);
    assert_eq!(sbom.code, 0, "{}", sbom.stderr);
    let bom = json(&sbom);
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    assert!(
        bom["components"]
            .to_string()
            .contains("pkg:cargo/regex@1.5.4"),
        "{}",
        bom["components"]
    );

    // SARIF carries the advisory as a result.
    let sarif = json(&run(&[
        "scan",
        vulnerable.to_str().unwrap(),
        "--db",
        &db(),
        "--format",
        "sarif",
        "--fail-on",
        "critical",
    ]));
    assert_eq!(sarif["version"], "2.1.0");
    assert!(
        sarif["runs"][0]["results"]
            .to_string()
            .contains("RUSTSEC-2022-0013")
    );

    // The same program with the fixed version: nothing to report.
    let out = run(&[
        "scan",
        fixed.to_str().unwrap(),
        "--db",
        &db(),
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let s = json(&out);
    assert_eq!(s["vulnerabilities"].as_array().unwrap().len(), 0, "{s}");
}

#[test]
fn policy_denying_outbound_http() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "deny_capabilities = [\"outbound-http\"]\n").unwrap();
    let proxy =
        Path::new(test_programs::EXAMPLE_WEBAPP).join("target/wasm32-wasip2/release/proxy.wasm");
    let p = policy.to_str().unwrap();
    let out = run(&["scan", proxy.to_str().unwrap(), "--policy", p]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("WOPS002"), "{}", out.stdout);
    let out = run(&["scan", test_programs::HELLO, "--policy", p]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(!out.stdout.contains("WOPS002"), "{}", out.stdout);

    // A policy with a typo is refused with its position.
    std::fs::write(&policy, "deny_capabilites = [\"sockets\"]\n").unwrap();
    let out = run(&["scan", test_programs::HELLO, "--policy", p]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("1:1") || out.stderr.contains("line 1"),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_and_world_conformance() {
    let out = run(&["validate", test_programs::HELLO, test_programs::CLI]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(&[
        "validate",
        "--world",
        "wasi:cli/command",
        test_programs::CLI,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(&[
        "validate",
        "--world",
        "wasi:cli/command",
        test_programs::HELLO,
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("wasi:cli/run"), "{}", out.stderr);
    let out = run(&[
        "validate",
        "--world",
        "wasi:nope/nothing",
        test_programs::HELLO,
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("wasi:http/proxy"),
        "lists the known worlds: {}",
        out.stderr
    );
    // The host's world: what wasmops gives an HTTP component. The example
    // app's Rust components (std imports `wasi:cli` and filesystem
    // interfaces) and a componentize-js/py style import set pass it; a
    // command does not (it exports no handler).
    let example = Path::new(test_programs::EXAMPLE_WEBAPP).join("target/wasm32-wasip2/release");
    for c in ["web", "api", "proxy"] {
        let f = example.join(format!("{c}.wasm"));
        let out = run(&[
            "validate",
            "--world",
            "wasmops:host/http",
            f.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{c}: {}", out.stderr);
    }
    let out = run(&[
        "validate",
        "--world",
        "wasmops:host/http",
        test_programs::CLI,
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("incoming-handler"), "{}", out.stderr);
}

#[test]
fn check_validates_and_scans_an_app() {
    let out = output(wasmops().args(["check", test_programs::EXAMPLE_WEBAPP, "--db", &db()]));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for id in ["== web", "== api", "== proxy"] {
        assert!(out.stdout.contains(id), "{}", out.stdout);
    }
    // SARIF and CycloneDX for the whole app: one run, one SBOM.
    let sarif = run(&["check", test_programs::EXAMPLE_WEBAPP, "--format", "sarif"]);
    assert_eq!(sarif.code, 0, "{}", sarif.stderr);
    let sarif = json(&sarif);
    assert_eq!(sarif["runs"].as_array().unwrap().len(), 1);
    let files: Vec<String> = sarif["runs"][0]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["location"]["uri"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[1].ends_with("api.wasm"), "{files:?}");
    let bom = json(&run(&[
        "check",
        test_programs::EXAMPLE_WEBAPP,
        "--format",
        "cyclonedx",
    ]));
    assert_eq!(bom["metadata"]["component"]["name"], "webapp");
    assert_eq!(bom["components"].as_array().unwrap().len(), 3);
    // A component that does not handle HTTP behind a route fails the check.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::CLI, dir.path().join("cli.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"x\"\n[component.cli]\nsource = \"cli.wasm\"\nroute = \"/...\"\n",
    )
    .unwrap();
    let out = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("component `cli`"), "{}", out.stderr);
}

#[test]
fn broken_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("text.wasm", b"hello, world"),
        ("empty.wasm", b""),
        ("truncated.wasm", b"\0asm\x0d\0\x01\0\x01\xff\xff"),
        (
            "garbage.wasm",
            b"\0asm\x01\0\0\0\x01\x80\x80\x80\x80\x10zzzz",
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        for cmd in ["inspect", "scan"] {
            let out = run(&[cmd, path.to_str().unwrap()]);
            common::assert_one_line_error(&out);
        }
        let out = run(&["validate", path.to_str().unwrap()]);
        assert_eq!(out.code, 1, "{name}");
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    let out = run(&["inspect", "/nonexistent.wasm"]);
    common::assert_one_line_error(&out);
}

/// `--update-db` clones a git repository of advisories (here a local one
/// made from the snapshot) and scans with it.
#[test]
fn advisory_database_refresh_from_git() {
    let (vulnerable, _) = audited();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("advisory-db");
    let crates = repo.join("crates/regex");
    std::fs::create_dir_all(&crates).unwrap();
    let src = shared_data().join("rustsec-advisory-db/crates/regex");
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(e.path(), crates.join(e.file_name())).unwrap();
    }
    let git = |args: &[&str]| {
        let s = std::process::Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@localhost")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@localhost")
            .status()
            .unwrap();
        assert!(s.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "advisories"]);
    let local = tmp.path().join("db");
    let url = format!("file://{}", repo.display());
    let out = run(&[
        "scan",
        vulnerable.to_str().unwrap(),
        "--db",
        local.to_str().unwrap(),
        "--update-db",
        &url,
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains("RUSTSEC-2022-0013"), "{}", out.stdout);
    // Again: an update of the existing checkout.
    let out = run(&[
        "scan",
        vulnerable.to_str().unwrap(),
        "--db",
        local.to_str().unwrap(),
        "--update-db",
        &url,
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    // An unreachable repository is a clear error.
    let out = run(&[
        "scan",
        vulnerable.to_str().unwrap(),
        "--db",
        local.to_str().unwrap(),
        "--update-db",
        "file:///nonexistent/repo",
    ]);
    common::assert_one_line_error(&out);
}

#[test]
fn a_scan_without_an_advisory_database_says_it_checked_nothing() {
    let home = tempfile::tempdir().unwrap();
    let scan = |extra: &[&str]| {
        let mut args = vec!["scan", test_programs::HELLO];
        args.extend_from_slice(extra);
        common::output(
            common::wasmops()
                .env_remove("WASMOPS_ADVISORY_DB")
                .env("HOME", home.path())
                .args(&args),
        )
    };
    let out = scan(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("advisories: NOT CHECKED"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("--update-db"), "{}", out.stdout);
    assert!(!out.stdout.contains("0 of 0 checked"), "{}", out.stdout);
    let out = scan(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["advisory_database"], false, "{v}");
    // Asked to fail on findings, it cannot pass having checked nothing.
    let out = scan(&["--fail-on", "critical"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("vulnerabilities were not checked"),
        "{}",
        out.stderr
    );
}
