//! Scanning: policy findings, known vulnerabilities, SARIF and CycloneDX output.
//!
//! See the crate documentation for the rule table, the default policy and
//! how advisory severities are chosen.

mod advisories;
mod cyclonedx;
mod policy;
mod sarif;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use advisories::{Advisory, AdvisoryDb, DbError, RefreshOutcome, refresh_db};
pub use policy::{Policy, PolicyError, ToolchainFloor, parse_size};
pub use sarif::INFORMATION_URI;

use crate::report::{Report, WasmKind};
use crate::text::{one_line, table};
use crate::util::leading_version;

/// How serious a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Info,
    /// Minor.
    Low,
    /// Should be fixed.
    Medium,
    /// Must be fixed before deploying.
    High,
    /// Must be fixed now.
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The SARIF level: `error` for high and critical, `warning` for
    /// medium, `note` for low and info.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low | Severity::Info => "note",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown severity `{s}`; expected one of info, low, medium, high, critical")
            })
    }
}

/// A rule of the policy check: its stable id, default severity and summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id (`WOPS001`...).
    pub id: &'static str,
    /// Stable kebab-case name (`denied-capability`...).
    pub name: &'static str,
    /// Severity when the policy does not override it.
    pub default_severity: Severity,
    /// One-line summary.
    pub summary: &'static str,
}

/// Every policy rule, in id order.
pub const RULES: &[Rule] = &[
    Rule {
        id: "WOPS001",
        name: "invalid-binary",
        default_severity: Severity::High,
        summary: "The binary does not validate",
    },
    Rule {
        id: "WOPS002",
        name: "denied-capability",
        default_severity: Severity::High,
        summary: "Uses a capability the policy denies",
    },
    Rule {
        id: "WOPS003",
        name: "import-not-allowed",
        default_severity: Severity::High,
        summary: "Imports an interface outside the policy's allow list",
    },
    Rule {
        id: "WOPS004",
        name: "unknown-import",
        default_severity: Severity::High,
        summary: "Imports an interface the wasmops host does not provide",
    },
    Rule {
        id: "WOPS005",
        name: "size-limit",
        default_severity: Severity::Medium,
        summary: "The file is larger than the policy's max_size",
    },
    Rule {
        id: "WOPS006",
        name: "missing-metadata",
        default_severity: Severity::Low,
        summary: "A required metadata section is missing",
    },
    Rule {
        id: "WOPS007",
        name: "missing-producers",
        default_severity: Severity::Low,
        summary: "A required producers field is missing",
    },
    Rule {
        id: "WOPS008",
        name: "old-toolchain",
        default_severity: Severity::High,
        summary: "Built by a toolchain older than the policy allows",
    },
    Rule {
        id: "WOPS009",
        name: "unreadable-dependency-list",
        default_severity: Severity::Low,
        summary: "The embedded dependency list cannot be read",
    },
    Rule {
        id: "WOPS010",
        name: "no-dependency-list",
        default_severity: Severity::Info,
        summary: "No embedded dependency list: vulnerabilities cannot be checked",
    },
    Rule {
        id: "WOPS011",
        name: "undecodable-wit",
        default_severity: Severity::Info,
        summary: "The component's WIT world cannot be decoded",
    },
    Rule {
        id: "WOPS012",
        name: "unavailable-spin-interface",
        default_severity: Severity::Low,
        summary: "Imports a Spin interface the wasmops host answers with errors",
    },
];

/// Looks a rule up by id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// One problem found by the policy check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable rule id (see [`RULES`]).
    pub rule_id: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// What was found.
    pub message: String,
    /// How to fix it.
    pub fix: String,
    /// What it is about, e.g. the import name.
    pub location: Option<String>,
}

/// A dependency matched by an advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vulnerability {
    /// The advisory id (`RUSTSEC-2022-0013`).
    pub advisory_id: String,
    /// The crate.
    pub package: String,
    /// The crate version embedded in the binary.
    pub version: String,
    /// The advisory title.
    pub title: String,
    /// Severity (see the crate documentation).
    pub severity: Severity,
    /// Where to read more.
    pub url: String,
    /// Version requirements that fix it (empty: no fixed release).
    pub patched: Vec<String>,
    /// For informational advisories, their kind (`unsound`, `unmaintained`,
    /// `notice`); `None` for vulnerabilities.
    pub informational: Option<String>,
    /// Other ids of the same issue (CVE, GHSA).
    pub aliases: Vec<String>,
    /// The CVSS vector, when the advisory has one.
    pub cvss: Option<String>,
}

/// The result of [`scan()`]: policy findings and advisories for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// The file name or path as given by the caller.
    pub file: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Policy findings, most severe first.
    pub findings: Vec<Finding>,
    /// Advisories matching the embedded dependencies, most severe first.
    pub vulnerabilities: Vec<Vulnerability>,
    /// How many advisories the database held (0 without a database).
    pub advisories_checked: usize,
    /// Whether an advisory database was there to check against: without
    /// one, no vulnerability was looked for (a pass says nothing).
    pub advisory_database: bool,
}

/// Whether an import name matches an `allow_interfaces` pattern: `prefix*`
/// matches by prefix; a pattern without `@` matches any version of the
/// name; otherwise the match is exact.
pub(crate) fn pattern_matches(pattern: &str, name: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return name.starts_with(prefix);
    }
    if pattern == name {
        return true;
    }
    if !pattern.contains('@')
        && let Some((base, _)) = name.split_once('@')
    {
        return base == pattern;
    }
    false
}

/// Applies `policy` to an inspected file and, when `db` is given, checks
/// its embedded dependencies against the advisory database.
///
/// `file` is only used to label the result.
pub fn scan(file: &str, report: &Report, policy: &Policy, db: Option<&AdvisoryDb>) -> ScanReport {
    let mut findings = Vec::new();
    let mut add =
        |rule_id: &'static str, message: String, fix: String, location: Option<String>| {
            let Some(severity) = policy.severity_of(rule_id) else {
                return;
            };
            findings.push(Finding {
                rule_id,
                severity,
                message,
                fix,
                location,
            });
        };

    if let Some(e) = &report.validation_error {
        add(
            "WOPS001",
            format!("the {} does not validate: {e}", report.kind.as_str()),
            "Rebuild it with a toolchain that targets the WebAssembly features wasmops supports"
                .to_string(),
            None,
        );
    }

    for cap in &report.capabilities {
        if policy.deny_capabilities.iter().any(|d| d == cap.id) {
            for iface in &cap.interfaces {
                add(
                    "WOPS002",
                    format!("capability `{}` is denied by the policy ({iface})", cap.id),
                    format!(
                        "Remove the code that uses `{iface}`, or allow `{}` in the policy",
                        cap.id
                    ),
                    Some(iface.clone()),
                );
            }
        }
    }

    if let Some(allow) = &policy.allow_interfaces {
        for import in &report.imports {
            let name = import.interface_name();
            let allowed = allow.iter().any(|p| {
                pattern_matches(p, name)
                    || pattern_matches(p, &import.display_name())
                    || import
                        .module
                        .as_deref()
                        .is_some_and(|m| pattern_matches(p, m))
            });
            if !allowed {
                let shown = import.display_name();
                add(
                    "WOPS003",
                    format!("import `{shown}` is not in the policy's allow list"),
                    format!(
                        "Remove the import, or add a pattern matching `{name}` to allow_interfaces"
                    ),
                    Some(shown),
                );
            }
        }
    }

    // Imports by what the host does with them: nothing (they would not
    // link), or stand-ins answering with the interface's errors.
    let import_rules: [(&str, &str, &str, &str); 2] = [
        (
            "unknown-import",
            "WOPS004",
            "is not provided by the wasmops host",
            "Remove the import or satisfy it at build time (e.g. compose the component with an implementation)",
        ),
        (
            "unavailable-spin",
            "WOPS012",
            "is a Spin interface the wasmops host does not implement: calls to it return errors",
            "Nothing to do if the program never calls it (the Python Spin SDK imports every Spin interface); a program that uses it needs a host that provides it",
        ),
    ];
    for (capability, rule, what, fix) in import_rules {
        let Some(cap) = report.capabilities.iter().find(|c| c.id == capability) else {
            continue;
        };
        for iface in &cap.interfaces {
            add(
                rule,
                format!("import `{iface}` {what}"),
                fix.to_string(),
                Some(iface.clone()),
            );
        }
    }

    if let Some(max) = policy.max_size
        && report.size as u64 > max
    {
        add(
            "WOPS005",
            format!("file is {} bytes, over the limit of {max} bytes", report.size),
            "Build in release mode, strip debug info and custom sections (e.g. `wasm-tools strip`), or raise max_size".to_string(),
            None,
        );
    }

    for field in &policy.require_metadata {
        if !report.has_metadata(field) {
            add(
                "WOPS006",
                format!("metadata section `{field}` is missing"),
                match field.as_str() {
                    "licenses" | "description" | "version" | "authors" | "source" | "homepage" => {
                        format!(
                            "Declare it in the package manifest (Cargo.toml, package.json, pyproject.toml) and rebuild with `wasmops build`, which embeds it; or add it with `wasm-tools metadata add --{field} <value>`"
                        )
                    }
                    _ => format!("Add it, e.g. `wasm-tools metadata add --{field} <value>`"),
                },
                Some(field.clone()),
            );
        }
    }

    for field in &policy.require_producers {
        if !report.producers.iter().any(|p| &p.field == field) {
            add(
                "WOPS007",
                format!("producers field `{field}` is missing"),
                "Keep the producers custom section when stripping (it records the toolchain)"
                    .to_string(),
                Some(field.clone()),
            );
        }
    }

    for floor in &policy.banned_toolchains {
        let Some(min) = leading_version(&floor.below) else {
            continue;
        };
        for p in &report.producers {
            if p.field == "language" || !p.name.eq_ignore_ascii_case(&floor.name) {
                continue;
            }
            if let Some(v) = leading_version(&p.version)
                && v < min
            {
                add(
                    "WOPS008",
                    format!(
                        "built with {} {}, older than the required {}",
                        p.name,
                        one_line(&p.version),
                        floor.below
                    ),
                    format!("Rebuild with {} {} or newer", floor.name, floor.below),
                    Some(format!("{}: {} {}", p.field, p.name, one_line(&p.version))),
                );
            }
        }
    }

    if let Some(e) = &report.dependency_list_error {
        add(
            "WOPS009",
            format!("the embedded dependency list cannot be read: {e}"),
            "Rebuild with a current `cargo auditable`".to_string(),
            Some(".dep-v0".to_string()),
        );
    }

    if db.is_some() && !report.has_dependency_list {
        add(
            "WOPS010",
            "no embedded dependency list: known vulnerabilities cannot be checked".to_string(),
            "For Rust code, build with `cargo auditable build` to embed the dependency list"
                .to_string(),
            None,
        );
    }

    if report.kind == WasmKind::Component && report.valid && report.wit.is_none() {
        add(
            "WOPS011",
            "the component's WIT world cannot be decoded".to_string(),
            "Check the component with `wasm-tools component wit`".to_string(),
            None,
        );
    }

    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.rule_id.cmp(b.rule_id)));

    let mut vulnerabilities = db
        .map(|db| db.check(&report.dependencies))
        .unwrap_or_default();
    vulnerabilities.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.advisory_id.cmp(&b.advisory_id))
    });

    ScanReport {
        file: file.to_string(),
        sha256: report.sha256.clone(),
        findings,
        vulnerabilities,
        advisories_checked: db.map(AdvisoryDb::len).unwrap_or(0),
        advisory_database: db.is_some(),
    }
}

/// What a report says when no advisory database was there.
pub const NO_DATABASE: &str = "no advisory database, so no known vulnerability was looked for; fetch one with `--update-db https://github.com/rustsec/advisory-db --db DIR` (or set WASMOPS_ADVISORY_DB)";

impl ScanReport {
    /// Whether anything reaches `threshold` (findings and advisories alike).
    pub fn fails(&self, threshold: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= threshold)
            || self.vulnerabilities.iter().any(|v| v.severity >= threshold)
    }

    /// The most severe finding or advisory, if any.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings
            .iter()
            .map(|f| f.severity)
            .chain(self.vulnerabilities.iter().map(|v| v.severity))
            .max()
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// A human-readable table.
    pub fn to_table(&self) -> String {
        let mut o = format!("{}\nsha256: {}\n", one_line(&self.file), self.sha256);
        o.push_str(&format!("\nfindings ({}):\n", self.findings.len()));
        if self.findings.is_empty() {
            o.push_str("  (none)\n");
        } else {
            let mut rows = vec![vec![
                "severity".to_string(),
                "rule".to_string(),
                "location".to_string(),
                "message".to_string(),
            ]];
            for f in &self.findings {
                rows.push(vec![
                    f.severity.to_string(),
                    f.rule_id.to_string(),
                    one_line(f.location.as_deref().unwrap_or("-")),
                    one_line(&f.message),
                ]);
                rows.push(vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("fix: {}", one_line(&f.fix)),
                ]);
            }
            o.push_str(&table(&rows, "  "));
        }
        if !self.advisory_database {
            o.push_str(&format!("\nadvisories: NOT CHECKED: {NO_DATABASE}\n"));
            match self.max_severity() {
                Some(s) => o.push_str(&format!("\nhighest severity: {s}\n")),
                None => o.push_str("\nno policy finding; vulnerabilities not checked\n"),
            }
            return o;
        }
        o.push_str(&format!(
            "\nadvisories ({} of {} checked):\n",
            self.vulnerabilities.len(),
            self.advisories_checked
        ));
        if self.vulnerabilities.is_empty() {
            o.push_str("  (none)\n");
        } else {
            let mut rows = vec![vec![
                "severity".to_string(),
                "advisory".to_string(),
                "package".to_string(),
                "title".to_string(),
            ]];
            for v in &self.vulnerabilities {
                let title = match &v.informational {
                    Some(kind) => format!("[{kind}] {}", one_line(&v.title)),
                    None => one_line(&v.title),
                };
                rows.push(vec![
                    v.severity.to_string(),
                    v.advisory_id.clone(),
                    format!("{} {}", one_line(&v.package), one_line(&v.version)),
                    title,
                ]);
                let fix = if v.patched.is_empty() {
                    "no patched release".to_string()
                } else {
                    format!("upgrade to {}", v.patched.join(" or "))
                };
                rows.push(vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("{fix}; {}", v.url),
                ]);
            }
            o.push_str(&table(&rows, "  "));
        }
        match self.max_severity() {
            Some(s) => o.push_str(&format!("\nhighest severity: {s}\n")),
            None => o.push_str("\nno problems found\n"),
        }
        o
    }

    /// SARIF 2.1.0 log of the findings and advisories, as pretty JSON.
    /// `uri` names the scanned artifact in each result's location.
    pub fn to_sarif(&self, uri: &str) -> String {
        serde_json::to_string_pretty(&sarif::sarif(self, uri)).unwrap_or_default()
    }

    /// CycloneDX 1.5 SBOM of the file (from `report`, the inspection of
    /// the same file) with the advisories as `vulnerabilities`, as pretty JSON.
    pub fn to_cyclonedx(&self, report: &Report) -> String {
        serde_json::to_string_pretty(&cyclonedx::bom(report, Some(self), &self.file))
            .unwrap_or_default()
    }
}

/// SARIF 2.1.0 for several files at once (an app's components): one run,
/// each result located in its file, as pretty JSON.
pub fn sarif_many(scans: &[&ScanReport]) -> String {
    let parts: Vec<(&ScanReport, &str)> = scans.iter().map(|s| (*s, s.file.as_str())).collect();
    serde_json::to_string_pretty(&sarif::sarif_merged(&parts)).unwrap_or_default()
}

/// A part of an app's SBOM: the component's id, its inspection and scan.
pub struct BomPart<'a> {
    /// The component's id in the app.
    pub id: &'a str,
    /// Its inspection.
    pub report: &'a Report,
    /// Its scan.
    pub scan: &'a ScanReport,
}

/// One CycloneDX 1.5 SBOM for an app (`name`, `version`): each component
/// of it with its own dependencies and vulnerabilities, as pretty JSON.
pub fn app_cyclonedx(name: &str, version: Option<&str>, parts: &[BomPart<'_>]) -> String {
    let parts: Vec<(&str, &Report, &ScanReport)> =
        parts.iter().map(|p| (p.id, p.report, p.scan)).collect();
    serde_json::to_string_pretty(&cyclonedx::app_bom(name, version, &parts)).unwrap_or_default()
}

/// CycloneDX 1.5 SBOM of an inspected file, without vulnerabilities.
/// `file` is used as the component name when the binary carries none.
pub fn sbom(report: &Report, file: &str) -> String {
    serde_json::to_string_pretty(&cyclonedx::bom(report, None, file)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_order_and_parse() {
        assert!(Severity::Info < Severity::Low);
        assert!(Severity::High < Severity::Critical);
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert!("severe".parse::<Severity>().is_err());
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("wasi:*", "wasi:io/poll@0.2.0"));
        assert!(pattern_matches(
            "wasi:http/outgoing-handler",
            "wasi:http/outgoing-handler@0.2.0"
        ));
        assert!(!pattern_matches(
            "wasi:http/outgoing-handler@0.2.1",
            "wasi:http/outgoing-handler@0.2.0"
        ));
        assert!(!pattern_matches("wasi:http", "wasi:http/types@0.2.0"));
        assert!(pattern_matches("*", "anything"));
    }
}
