mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;
use wasmops_inspect::scan::{AdvisoryDb, DbError, Policy, RefreshOutcome, Severity, refresh_db};
use wasmops_inspect::{inspect, scan};

/// The real advisory snapshot, loaded once for all tests.
fn db() -> &'static AdvisoryDb {
    static DB: OnceLock<AdvisoryDb> = OnceLock::new();
    DB.get_or_init(|| AdvisoryDb::load(&advisory_db_dir()).expect("advisory snapshot"))
}

#[test]
fn real_snapshot_loads() {
    let db = db();
    assert!(db.len() > 1000, "{}", db.len());
    assert!(db.malformed().is_empty(), "{:?}", db.malformed());
    assert!(db.withdrawn() > 0);
    let regex = db.advisories_for("regex");
    let a = regex
        .iter()
        .find(|a| a.id == "RUSTSEC-2022-0013")
        .expect("RUSTSEC-2022-0013 in the snapshot");
    assert_eq!(a.patched, [">= 1.5.5"]);
    assert!(a.title.starts_with("Regexes with large repetitions"));
    assert_eq!(a.severity, Severity::High);
}

#[test]
fn missing_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = AdvisoryDb::load(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(e, DbError::NotFound { .. }));
    assert!(e.to_string().contains("crates/"), "{e}");
}

#[test]
fn malformed_advisories_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    write_small_db(dir.path());
    let db = AdvisoryDb::load(dir.path()).unwrap();
    assert_eq!(db.len(), 1);
    assert_eq!(db.malformed().len(), 2, "{:?}", db.malformed());
    assert_eq!(db.advisories_for("demo")[0].title, "Demo is broken");
}

// Test advisory: RUSTSEC-2022-0013 (regex: "Regexes with large repetitions on
// empty sub-expressions take a very long time to parse"), patched >= 1.5.5,
// CVSS 3.1 base 7.5 (high).
#[test]
fn vulnerable_dependency_is_reported() {
    let report = inspect(&rich_component("1.5.4")).unwrap();
    let s = scan("demo.wasm", &report, &Policy::default(), Some(db()));
    let v = s
        .vulnerabilities
        .iter()
        .find(|v| v.advisory_id == "RUSTSEC-2022-0013")
        .unwrap_or_else(|| panic!("not reported: {:#?}", s.vulnerabilities));
    assert_eq!(v.package, "regex");
    assert_eq!(v.version, "1.5.4");
    assert_eq!(v.severity, Severity::High);
    assert_eq!(v.patched, [">= 1.5.5"]);
    assert_eq!(v.informational, None);
    assert!(v.aliases.iter().any(|a| a == "CVE-2022-24713"));
    assert!(v.url.starts_with("https://"));
    assert!(s.fails(Severity::High));
    assert!(!s.fails(Severity::Critical));
    assert_eq!(s.advisories_checked, db().len());
    // `time` 0.1.40 comes from git: not matched against crates.io advisories.
    assert!(!s.vulnerabilities.iter().any(|v| v.package == "time"));
    let table = s.to_table();
    assert!(table.contains("RUSTSEC-2022-0013"), "{table}");
    assert!(table.contains("regex 1.5.4"), "{table}");
}

#[test]
fn patched_dependency_is_not_reported() {
    let report = inspect(&rich_component("1.5.5")).unwrap();
    let s = scan("demo.wasm", &report, &Policy::default(), Some(db()));
    assert!(
        !s.vulnerabilities
            .iter()
            .any(|v| v.advisory_id == "RUSTSEC-2022-0013"),
        "{:#?}",
        s.vulnerabilities
    );
}

#[test]
fn informational_and_withdrawn_advisories() {
    // smallvec 0.6.9 is hit by real vulnerabilities and by the informational
    // "unsound" RUSTSEC-2018-0018; markdown 0.3.0's only advisory
    // (RUSTSEC-2022-0044) was withdrawn.
    let bytes = with_nested_module(
        http_server_component(),
        &core_module_with(&[dep_section(
            r#"{"packages":[{"name":"smallvec","version":"0.6.9","source":"crates.io"},{"name":"markdown","version":"0.3.0","source":"crates.io"}]}"#,
        )]),
    );
    let report = inspect(&bytes).unwrap();
    let s = scan("x.wasm", &report, &Policy::default(), Some(db()));
    let info = s
        .vulnerabilities
        .iter()
        .find(|v| v.advisory_id == "RUSTSEC-2018-0018")
        .expect("informational advisory reported");
    assert_eq!(info.informational.as_deref(), Some("unsound"));
    assert_eq!(info.severity, Severity::Low);
    assert!(
        s.vulnerabilities
            .iter()
            .any(|v| v.advisory_id == "RUSTSEC-2019-0009" && v.informational.is_none())
    );
    assert!(!s.vulnerabilities.iter().any(|v| v.package == "markdown"));
    // Most severe first.
    assert!(
        s.vulnerabilities
            .windows(2)
            .all(|w| w[0].severity >= w[1].severity)
    );
}

#[test]
fn policy_denying_outbound_http() {
    let policy = Policy::from_toml(
        r#"
deny_capabilities = ["outbound-http"]
"#,
    )
    .unwrap();
    let client = inspect(&http_client_component()).unwrap();
    let s = scan("client.wasm", &client, &policy, None);
    assert!(s.fails(Severity::High), "{}", s.to_table());
    let f = &s.findings[0];
    assert_eq!(f.rule_id, "WOPS002");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(
        f.location.as_deref(),
        Some("wasi:http/outgoing-handler@0.2.0")
    );
    assert!(!f.fix.is_empty());

    let server = inspect(&http_server_component()).unwrap();
    let s = scan("server.wasm", &server, &policy, None);
    assert!(!s.fails(Severity::Info), "{}", s.to_table());
    assert!(s.findings.is_empty());
}

#[test]
fn policy_rules() {
    let policy = Policy::from_toml(
        r#"
allow_interfaces = ["wasi:io/*", "wasi:http/types", "wasi:http/outgoing-handler@0.2.0"]
max_size = "100"
require_metadata = ["licenses", "source", "authors"]
require_producers = ["language", "sdk"]
banned_toolchains = [{ name = "rustc", below = "1.96.0" }, { name = "wit-component", below = "0.200" }]

[severity]
WOPS006 = "medium"
"#,
    )
    .unwrap();
    let bytes = with_sections(
        component(
            &[
                "wasi:io/streams@0.2.0",
                "wasi:http/types@0.2.0",
                "wasi:http/outgoing-handler@0.2.0",
                "wasi:sockets/tcp@0.2.0",
                "acme:db/query@1.0.0",
            ],
            &[],
        ),
        &[producers(&[(
            "processed-by",
            &[("rustc", "1.95.0 (59807616e 2026-04-14)")],
        )])],
    );
    let r = inspect(&bytes).unwrap();
    let s = scan("p.wasm", &r, &policy, None);
    let got: Vec<(&str, Severity, Option<&str>)> = s
        .findings
        .iter()
        .map(|f| (f.rule_id, f.severity, f.location.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("WOPS003", Severity::High, Some("wasi:sockets/tcp@0.2.0")),
            ("WOPS003", Severity::High, Some("acme:db/query@1.0.0")),
            ("WOPS004", Severity::High, Some("acme:db/query@1.0.0")),
            (
                "WOPS008",
                Severity::High,
                Some("processed-by: rustc 1.95.0 (59807616e 2026-04-14)")
            ),
            ("WOPS005", Severity::Medium, None),
            ("WOPS006", Severity::Medium, Some("licenses")),
            ("WOPS006", Severity::Medium, Some("source")),
            ("WOPS006", Severity::Medium, Some("authors")),
            ("WOPS007", Severity::Low, Some("language")),
            ("WOPS007", Severity::Low, Some("sdk")),
        ]
    );
}

#[test]
fn toolchain_floor_passes_newer_compilers() {
    let policy =
        Policy::from_toml(r#"banned_toolchains = [{ name = "rustc", below = "1.70.0" }]"#).unwrap();
    let r = inspect(&rich_component("1.5.5")).unwrap();
    let s = scan("x.wasm", &r, &policy, None);
    assert!(!s.findings.iter().any(|f| f.rule_id == "WOPS008"));
}

#[test]
fn default_policy() {
    let p = Policy::default();
    // Unknown imports are errors; missing licenses are a low finding.
    let bytes = component(&["acme:db/query@1.0.0"], &[]);
    let s = scan("x.wasm", &inspect(&bytes).unwrap(), &p, None);
    let rules: Vec<_> = s.findings.iter().map(|f| (f.rule_id, f.severity)).collect();
    assert_eq!(
        rules,
        [("WOPS004", Severity::High), ("WOPS006", Severity::Low)]
    );
    // A well-labelled component passes.
    let s = scan(
        "x.wasm",
        &inspect(&rich_component("1.5.5")).unwrap(),
        &p,
        None,
    );
    assert!(s.findings.is_empty(), "{}", s.to_table());
    // Without a dependency list, a scan with a database says so.
    let s = scan(
        "x.wasm",
        &inspect(&http_server_component()).unwrap(),
        &p,
        Some(db()),
    );
    assert!(s.findings.iter().any(|f| f.rule_id == "WOPS010"));
    assert!(!s.fails(Severity::Medium));
}

#[test]
fn invalid_binaries_and_bad_dependency_lists_are_findings() {
    let bytes = wat::parse_str(r#"(module (func (result i32) (i64.const 1)))"#).unwrap();
    let s = scan(
        "bad.wasm",
        &inspect(&bytes).unwrap(),
        &Policy::default(),
        None,
    );
    assert_eq!(s.findings[0].rule_id, "WOPS001");
    let bytes = with_sections(
        http_server_component(),
        &[custom(".dep-v0", &zlib(b"not json"))],
    );
    let s = scan(
        "bad.wasm",
        &inspect(&bytes).unwrap(),
        &Policy::default(),
        Some(db()),
    );
    assert!(s.findings.iter().any(|f| f.rule_id == "WOPS009"));
    assert!(!s.findings.iter().any(|f| f.rule_id == "WOPS010"));
}

#[test]
fn scan_json_is_stable() {
    let report = inspect(&rich_component("1.5.4")).unwrap();
    let s = scan("demo.wasm", &report, &Policy::default(), Some(db()));
    let v: Value = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(v["file"], "demo.wasm");
    assert_eq!(v["sha256"], report.sha256);
    assert!(v["findings"].is_array());
    let vuln = v["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["advisory_id"] == "RUSTSEC-2022-0013")
        .unwrap();
    assert_eq!(vuln["severity"], "high");
    assert_eq!(vuln["package"], "regex");
    assert!(vuln["informational"].is_null());
}

// ---- schema validation -------------------------------------------------

/// Serves the CycloneDX helper schemas (spdx, jsf) from the shipped folder.
struct LocalSchemas(PathBuf);

impl jsonschema::Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        let file = s.rsplit('/').next().unwrap_or(s);
        let file = file.split('#').next().unwrap_or(file);
        let path = self.0.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot serve {s} from {}: {e}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn load_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_valid(schema: &Value, retriever: LocalSchemas, instance: &Value) {
    let validator = jsonschema::options()
        .with_retriever(retriever)
        .should_validate_formats(true)
        .build(schema)
        .expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{errors:#?}\n{}",
        serde_json::to_string_pretty(instance).unwrap()
    );
}

fn assert_invalid(schema: &Value, retriever: LocalSchemas, instance: &Value) {
    let validator = jsonschema::options()
        .with_retriever(retriever)
        .should_validate_formats(true)
        .build(schema)
        .expect("schema compiles");
    assert!(
        !validator.is_valid(instance),
        "schema accepted a broken document"
    );
}

fn vulnerable_scan() -> (wasmops_inspect::Report, wasmops_inspect::scan::ScanReport) {
    let report = inspect(&rich_component("1.5.4")).unwrap();
    let policy = Policy::from_toml(
        r#"
deny_capabilities = ["outbound-http"]
require_metadata = ["licenses", "authors"]
"#,
    )
    .unwrap();
    let mut s = scan("build/demo app.wasm", &report, &policy, Some(db()));
    // Add an informational advisory too.
    let smallvec =
        AdvisoryDb::load(&advisory_db_dir())
            .unwrap()
            .check(&[wasmops_inspect::Dependency {
                name: "smallvec".into(),
                version: "0.6.12".into(),
                source: "crates.io".into(),
                kind: wasmops_inspect::DependencyKind::Runtime,
                root: false,
                dependencies: vec![],
            }]);
    s.vulnerabilities.extend(smallvec);
    (report, s)
}

#[test]
fn sarif_validates_against_the_schema() {
    let (_, s) = vulnerable_scan();
    assert!(!s.findings.is_empty() && !s.vulnerabilities.is_empty());
    let sarif: Value = serde_json::from_str(&s.to_sarif("build/demo app.wasm")).unwrap();
    let dir = schema_dir().join("sarif");
    let schema = load_json(&dir.join("sarif-schema-2.1.0.json"));
    assert_valid(&schema, LocalSchemas(dir), &sarif);

    // The schema does bite: a wrong level or a missing message is rejected.
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]["level"] = Value::from("severe");
    assert_invalid(&schema, LocalSchemas(schema_dir().join("sarif")), &broken);
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("message");
    assert_invalid(&schema, LocalSchemas(schema_dir().join("sarif")), &broken);

    let run = &sarif["runs"][0];
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(run["tool"]["driver"]["name"], "wasmops");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["id"] == "WOPS002"));
    assert!(rules.iter().any(|r| r["id"] == "RUSTSEC-2022-0013"));
    let results = run["results"].as_array().unwrap();
    let vuln = results
        .iter()
        .find(|r| r["ruleId"] == "RUSTSEC-2022-0013")
        .unwrap();
    assert_eq!(vuln["level"], "error");
    assert_eq!(
        vuln["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "build/demo%20app.wasm"
    );
    let info = results
        .iter()
        .find(|r| r["ruleId"] == "RUSTSEC-2018-0018")
        .unwrap();
    assert_eq!(info["level"], "note");
    // Every result's ruleIndex points at its rule.
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
    }
}

/// An app of two components that share a crate: one SARIF run with both
/// files as artifacts, one SBOM with both components inside the app, every
/// reference unique and resolvable, both valid against their schemas.
#[test]
fn app_sarif_and_sbom_validate_and_keep_components_apart() {
    let (report, web) = vulnerable_scan();
    let mut api = web.clone();
    api.file = "api/api.wasm".into();
    let sarif: Value =
        serde_json::from_str(&wasmops_inspect::scan::sarif_many(&[&web, &api])).unwrap();
    let dir = schema_dir().join("sarif");
    let schema = load_json(&dir.join("sarif-schema-2.1.0.json"));
    assert_valid(&schema, LocalSchemas(dir), &sarif);
    let runs = sarif["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one run for the app");
    let artifacts = runs[0]["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2);
    let rules = runs[0]["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: std::collections::HashSet<&str> =
        rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), rules.len(), "each rule once");
    let results = runs[0]["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        2 * (web.findings.len() + web.vulnerabilities.len())
    );
    for r in results {
        assert_eq!(
            rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"],
            r["ruleId"]
        );
        let at = &r["locations"][0]["physicalLocation"]["artifactLocation"];
        let artifact = &artifacts[at["index"].as_u64().unwrap() as usize];
        assert_eq!(artifact["location"]["uri"], at["uri"]);
    }
    assert!(results.iter().any(|r| {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "api/api.wasm"
    }));

    let parts = [
        wasmops_inspect::scan::BomPart {
            id: "web",
            report: &report,
            scan: &web,
        },
        wasmops_inspect::scan::BomPart {
            id: "api",
            report: &report,
            scan: &api,
        },
    ];
    let bom: Value = serde_json::from_str(&wasmops_inspect::scan::app_cyclonedx(
        "shop",
        Some("1.2.0"),
        &parts,
    ))
    .unwrap();
    let dir = schema_dir().join("cyclonedx");
    let schema = load_json(&dir.join("bom-1.5.schema.json"));
    assert_valid(&schema, LocalSchemas(dir), &bom);
    assert_eq!(bom["metadata"]["component"]["name"], "shop");
    assert_eq!(bom["metadata"]["component"]["version"], "1.2.0");
    let comps = bom["components"].as_array().unwrap();
    let names: Vec<&str> = comps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "api"]);
    // Every bom-ref once; every reference points at one.
    let mut refs = std::collections::HashSet::new();
    fn collect<'a>(v: &'a Value, refs: &mut std::collections::HashSet<&'a str>) {
        for c in v.as_array().into_iter().flatten() {
            assert!(
                refs.insert(c["bom-ref"].as_str().unwrap()),
                "duplicate {}",
                c["bom-ref"]
            );
            collect(&c["components"], refs);
        }
    }
    refs.insert("app");
    collect(&bom["components"], &mut refs);
    for d in bom["dependencies"].as_array().unwrap() {
        assert!(refs.contains(d["ref"].as_str().unwrap()), "{d}");
        for on in d["dependsOn"].as_array().unwrap() {
            assert!(refs.contains(on.as_str().unwrap()), "{on}");
        }
    }
    let vulns = bom["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 2 * web.vulnerabilities.len());
    for v in vulns {
        let target = v["affects"][0]["ref"].as_str().unwrap();
        assert!(refs.contains(target), "{target}");
    }
    assert!(
        comps[1]["components"]
            .to_string()
            .contains("pkg:cargo/regex@1.5.4"),
        "{}",
        comps[1]
    );
}

#[test]
fn empty_sarif_validates() {
    let report = inspect(&http_server_component()).unwrap();
    let policy = Policy::from_toml("").unwrap();
    let s = scan("ok.wasm", &report, &policy, None);
    assert!(s.findings.is_empty());
    let sarif: Value = serde_json::from_str(&s.to_sarif("ok.wasm")).unwrap();
    let dir = schema_dir().join("sarif");
    let schema = load_json(&dir.join("sarif-schema-2.1.0.json"));
    assert_valid(&schema, LocalSchemas(dir), &sarif);
}

#[test]
fn cyclonedx_validates_against_the_schema() {
    let (report, s) = vulnerable_scan();
    let bom: Value = serde_json::from_str(&s.to_cyclonedx(&report)).unwrap();
    let dir = schema_dir().join("cyclonedx");
    let schema = load_json(&dir.join("bom-1.5.schema.json"));
    assert_valid(&schema, LocalSchemas(dir.clone()), &bom);

    // The schema does bite, including through the referenced spdx schema.
    let mut broken = bom.clone();
    broken["components"][0]["scope"] = Value::from("sometimes");
    assert_invalid(&schema, LocalSchemas(dir.clone()), &broken);
    let mut broken = bom.clone();
    broken["metadata"]["component"]["licenses"] =
        serde_json::json!([{ "license": { "id": "Not-An-SPDX-Id" } }]);
    assert_invalid(&schema, LocalSchemas(dir.clone()), &broken);
    let mut broken = bom.clone();
    broken["serialNumber"] = Value::from("urn:uuid:nope");
    assert_invalid(&schema, LocalSchemas(dir.clone()), &broken);

    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    assert_eq!(bom["version"], 1);
    assert!(
        bom["serialNumber"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    let root = &bom["metadata"]["component"];
    assert_eq!(root["type"], "application");
    assert_eq!(root["name"], "demo-app");
    assert_eq!(root["version"], "0.3.1");
    assert_eq!(root["hashes"][0]["alg"], "SHA-256");
    assert_eq!(root["hashes"][0]["content"], report.sha256);
    let comps = bom["components"].as_array().unwrap();
    assert_eq!(comps.len(), 5);
    let regex = comps.iter().find(|c| c["name"] == "regex").unwrap();
    assert_eq!(regex["purl"], "pkg:cargo/regex@1.5.4");
    assert_eq!(regex["scope"], "required");
    let cc = comps.iter().find(|c| c["name"] == "cc").unwrap();
    assert_eq!(cc["scope"], "excluded");
    let git = comps.iter().find(|c| c["name"] == "time").unwrap();
    assert!(git.get("purl").is_none());
    // The graph: the app depends on regex, which depends on memchr.
    let deps = bom["dependencies"].as_array().unwrap();
    let app = deps.iter().find(|d| d["ref"] == root["bom-ref"]).unwrap();
    assert!(
        app["dependsOn"]
            .as_array()
            .unwrap()
            .contains(&Value::from("pkg:cargo/regex@1.5.4"))
    );
    let rx = deps
        .iter()
        .find(|d| d["ref"] == "pkg:cargo/regex@1.5.4")
        .unwrap();
    assert_eq!(
        rx["dependsOn"],
        serde_json::json!(["pkg:cargo/memchr@2.7.4"])
    );
    let vulns = bom["vulnerabilities"].as_array().unwrap();
    let v = vulns
        .iter()
        .find(|v| v["id"] == "RUSTSEC-2022-0013")
        .unwrap();
    assert_eq!(v["affects"][0]["ref"], "pkg:cargo/regex@1.5.4");
    assert_eq!(v["ratings"][0]["severity"], "high");
    assert_eq!(v["ratings"][0]["method"], "CVSSv31");

    // A plain SBOM of a file with no dependency list also validates.
    let plain = inspect(&preview1_module()).unwrap();
    let bom: Value =
        serde_json::from_str(&wasmops_inspect::scan::sbom(&plain, "dir/tool.wasm")).unwrap();
    assert_valid(&schema, LocalSchemas(dir), &bom);
    assert_eq!(bom["metadata"]["component"]["name"], "tool");
    assert_eq!(bom["components"], serde_json::json!([]));
}

#[test]
fn serial_numbers_differ() {
    let report = inspect(&http_server_component()).unwrap();
    let a: Value = serde_json::from_str(&wasmops_inspect::scan::sbom(&report, "a.wasm")).unwrap();
    let b: Value = serde_json::from_str(&wasmops_inspect::scan::sbom(&report, "a.wasm")).unwrap();
    assert_ne!(a["serialNumber"], b["serialNumber"]);
}

// ---- refreshing the database ------------------------------------------

fn git(dir: &Path, args: &[&str]) {
    let st = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
}

#[test]
fn refresh_clones_then_updates() {
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("git not installed; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    git(&upstream, &["init", "--quiet"]);
    write_small_db(&upstream);
    git(&upstream, &["add", "."]);
    git(&upstream, &["commit", "--quiet", "-m", "one"]);
    let url = upstream.to_str().unwrap();

    let local = tmp.path().join("db");
    let out = refresh_db(url, &local).unwrap();
    assert!(matches!(out, RefreshOutcome::Cloned { ref head } if head.len() == 40));
    assert_eq!(AdvisoryDb::load(&local).unwrap().len(), 1);

    // A new advisory upstream arrives with the next refresh.
    std::fs::create_dir_all(upstream.join("crates/other")).unwrap();
    std::fs::write(
        upstream.join("crates/other/RUSTSEC-2099-0009.md"),
        "```toml\n[advisory]\nid = \"RUSTSEC-2099-0009\"\npackage = \"other\"\n[versions]\npatched = []\n```\n# Other\n",
    )
    .unwrap();
    git(&upstream, &["add", "."]);
    git(&upstream, &["commit", "--quiet", "-m", "two"]);
    let out = refresh_db(url, &local).unwrap();
    assert!(matches!(out, RefreshOutcome::Updated { .. }), "{out:?}");
    assert_eq!(AdvisoryDb::load(&local).unwrap().len(), 2);

    // Failures are clear.
    let e = refresh_db(
        tmp.path().join("missing").to_str().unwrap(),
        &tmp.path().join("db2"),
    )
    .unwrap_err();
    assert!(matches!(e, DbError::Git { .. }), "{e}");
    assert!(e.to_string().contains("git clone"), "{e}");
    let e = refresh_db(url, &upstream.join("crates")).unwrap_err();
    assert!(matches!(e, DbError::NotACheckout { .. }), "{e}");
}

#[test]
fn outputs_for_odd_inputs_still_validate() {
    let sarif_dir = schema_dir().join("sarif");
    let cdx_dir = schema_dir().join("cyclonedx");
    let sarif_schema = jsonschema::options()
        .with_retriever(LocalSchemas(sarif_dir.clone()))
        .should_validate_formats(true)
        .build(&load_json(&sarif_dir.join("sarif-schema-2.1.0.json")))
        .unwrap();
    let cdx_schema = jsonschema::options()
        .with_retriever(LocalSchemas(cdx_dir.clone()))
        .should_validate_formats(true)
        .build(&load_json(&cdx_dir.join("bom-1.5.schema.json")))
        .unwrap();

    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    for entry in std::fs::read_dir(corpus).unwrap() {
        let path = entry.unwrap().path();
        inputs.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&path).unwrap(),
        ));
    }
    // Metadata that is not what the fields promise.
    inputs.push((
        "odd metadata [1]#?.wasm".to_string(),
        with_sections(
            rich_component("1.5.4"),
            &[
                custom("source", b"not a url at all"),
                custom("homepage", b"https://ok.example/\"quoted\""),
                custom("licenses", b"(MIT"),
                custom("authors", "Zoë \u{1b}[31m".as_bytes()),
                dep_section(
                    r#"{"packages":[{"name":"we#ird name","version":"","source":"git"},{"name":"regex","version":"1.0.0+build.5","source":"crates.io","dependencies":[0,0,1]}]}"#,
                ),
            ],
        ),
    ));
    let mut checked = 0;
    for (name, bytes) in &inputs {
        let Ok(report) = inspect(bytes) else { continue };
        let policy = Policy::from_toml(
            r#"
deny_capabilities = ["outbound-http", "incoming-http"]
allow_interfaces = ["wasi:io/*"]
require_metadata = ["licenses", "source", "authors", "revision"]
require_producers = ["sdk"]
max_size = 10
banned_toolchains = [{ name = "rustc", below = "9.0" }]
"#,
        )
        .unwrap();
        let s = scan(name, &report, &policy, Some(db()));
        let sarif: Value = serde_json::from_str(&s.to_sarif(name)).unwrap();
        let errors: Vec<String> = sarif_schema
            .iter_errors(&sarif)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: SARIF {errors:#?}");
        let bom: Value = serde_json::from_str(&s.to_cyclonedx(&report)).unwrap();
        let errors: Vec<String> = cdx_schema
            .iter_errors(&bom)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: CycloneDX {errors:#?}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} inputs inspected");
}
