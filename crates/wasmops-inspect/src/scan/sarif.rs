//! SARIF 2.1.0 output.

use serde_json::{Map, Value, json};

use super::{RULES, ScanReport};
use crate::util::{looks_like_url, page_url};

const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// The `informationUri` of the SARIF tool driver.
pub const INFORMATION_URI: &str = "https://github.com/wasmops/wasmops";

/// Makes a file path usable as a SARIF `uri-reference`: backslashes become
/// slashes and characters not allowed in a URI are percent-encoded.
pub(crate) fn uri_reference(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        let c = b as char;
        if b == b'\\' {
            out.push('/');
        } else if c.is_ascii_alphanumeric() || "-._~:/@!$&'()*+,;=".contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

fn cvss_score(vector: Option<&str>) -> Option<f64> {
    vector?.parse::<cvss::Cvss>().ok().map(|c| c.score())
}

fn fix_text(patched: &[String]) -> String {
    if patched.is_empty() {
        "No patched release exists: replace the crate or accept the risk.".to_string()
    } else {
        format!("Upgrade to a version matching {}.", patched.join(" or "))
    }
}

pub(crate) fn sarif(scan: &ScanReport, uri: &str) -> Value {
    let uri = uri_reference(uri);
    let mut rules: Vec<Value> = Vec::new();
    let mut rule_ids: Vec<String> = Vec::new();
    let mut results: Vec<Value> = Vec::new();

    let mut rule_index = |id: &str, make: &dyn Fn() -> Value| -> usize {
        if let Some(i) = rule_ids.iter().position(|r| r == id) {
            return i;
        }
        rule_ids.push(id.to_string());
        rules.push(make());
        rules.len() - 1
    };

    let location = |logical: Option<&str>| -> Value {
        let mut loc = json!({
            "physicalLocation": { "artifactLocation": { "uri": uri } }
        });
        if let Some(name) = logical {
            loc["logicalLocations"] = json!([{ "fullyQualifiedName": name }]);
        }
        loc
    };

    for f in &scan.findings {
        let idx = rule_index(f.rule_id, &|| {
            let (name, summary, level) = match RULES.iter().find(|r| r.id == f.rule_id) {
                Some(r) => (r.name, r.summary, r.default_severity.sarif_level()),
                None => ("policy-finding", "Policy finding", f.severity.sarif_level()),
            };
            json!({
                "id": f.rule_id,
                "name": name,
                "shortDescription": { "text": summary },
                "help": { "text": f.fix },
                "defaultConfiguration": { "level": level },
                "properties": { "tags": ["wasmops-policy"] },
            })
        });
        results.push(json!({
            "ruleId": f.rule_id,
            "ruleIndex": idx,
            "level": f.severity.sarif_level(),
            "message": { "text": format!("{}. Fix: {}", f.message, f.fix) },
            "locations": [location(f.location.as_deref())],
            "properties": { "severity": f.severity.as_str() },
        }));
    }

    for v in &scan.vulnerabilities {
        let idx = rule_index(&v.advisory_id, &|| {
            let mut props = Map::new();
            let mut tags = vec![json!("security"), json!("rustsec")];
            if let Some(kind) = &v.informational {
                tags.push(json!(kind));
            }
            props.insert("tags".into(), Value::Array(tags));
            if let Some(score) = cvss_score(v.cvss.as_deref()) {
                props.insert("security-severity".into(), json!(format!("{score:.1}")));
            }
            json!({
                "id": v.advisory_id,
                "shortDescription": { "text": v.title },
                "help": { "text": fix_text(&v.patched) },
                "helpUri": if looks_like_url(&v.url) { v.url.clone() } else { page_url(&v.advisory_id) },
                "defaultConfiguration": { "level": v.severity.sarif_level() },
                "properties": Value::Object(props),
            })
        });
        let prefix = match &v.informational {
            Some(kind) => format!("[{kind}] "),
            None => String::new(),
        };
        results.push(json!({
            "ruleId": v.advisory_id,
            "ruleIndex": idx,
            "level": v.severity.sarif_level(),
            "message": {
                "text": format!(
                    "{prefix}{} {}: {} {}",
                    v.package, v.version, v.title, fix_text(&v.patched)
                )
            },
            "locations": [location(Some(&format!("{}@{}", v.package, v.version)))],
            "properties": { "severity": v.severity.as_str() },
        }));
    }

    log(
        rules,
        vec![json!({
            "location": { "uri": uri },
            "hashes": { "sha-256": scan.sha256 },
        })],
        results,
    )
}

/// A SARIF log of one `wasmops` run.
fn log(rules: Vec<Value>, artifacts: Vec<Value>, results: Vec<Value>) -> Value {
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "wasmops",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "informationUri": INFORMATION_URI,
                    "rules": rules,
                }
            },
            "artifacts": artifacts,
            "results": results,
        }]
    })
}

/// One SARIF log with one run for several files (an app's components):
/// rules shared by id, every file an artifact, each result located in its
/// file. (Code scanning takes one run per tool and category per upload.)
pub(crate) fn sarif_merged(parts: &[(&ScanReport, &str)]) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    let mut artifacts: Vec<Value> = Vec::new();
    for (scan, uri) in parts {
        let one = sarif(scan, uri);
        let run = &one["runs"][0];
        let own_rules = run["tool"]["driver"]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // This file's rule indexes, in the merged rule list.
        let mut remap = Vec::with_capacity(own_rules.len());
        for r in own_rules {
            let at = match rules.iter().position(|x| x["id"] == r["id"]) {
                Some(i) => i,
                None => {
                    rules.push(r);
                    rules.len() - 1
                }
            };
            remap.push(at);
        }
        let artifact_index = artifacts.len();
        for a in run["artifacts"].as_array().cloned().unwrap_or_default() {
            artifacts.push(a);
        }
        for mut res in run["results"].as_array().cloned().unwrap_or_default() {
            if let Some(i) = res["ruleIndex"]
                .as_u64()
                .and_then(|i| remap.get(i as usize))
            {
                res["ruleIndex"] = json!(i);
            }
            if let Some(locs) = res["locations"].as_array_mut() {
                for l in locs {
                    l["physicalLocation"]["artifactLocation"]["index"] = json!(artifact_index);
                }
            }
            results.push(res);
        }
    }
    log(rules, artifacts, results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(uri_reference("a b\\c.wasm"), "a%20b/c.wasm");
        assert_eq!(uri_reference(""), "unknown");
        assert_eq!(uri_reference("é"), "%C3%A9");
        assert_eq!(uri_reference("a%b#c?.wasm"), "a%25b%23c%3F.wasm");
    }
}
