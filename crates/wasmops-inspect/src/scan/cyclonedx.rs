//! CycloneDX 1.5 SBOM output.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};

use super::ScanReport;
use crate::report::{DependencyKind, Report};
use crate::util::{looks_like_url, now_rfc3339, page_url, purl_encode, uuid_v4};

const ROOT_REF: &str = "wasm-artifact";

fn file_stem(file: &str) -> &str {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ if base.is_empty() => "unnamed",
        _ => base,
    }
}

fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{}@{}", purl_encode(name), purl_encode(version))
}

fn rating_method(vector: &str) -> &'static str {
    if vector.starts_with("CVSS:3.1/") {
        "CVSSv31"
    } else if vector.starts_with("CVSS:3.0/") {
        "CVSSv3"
    } else if vector.starts_with("CVSS:4.0/") {
        "CVSSv4"
    } else {
        "other"
    }
}

pub(crate) fn bom(report: &Report, scan: Option<&ScanReport>, file: &str) -> Value {
    // The first root package of the dependency list is the artifact itself.
    let main_root = report.dependencies.iter().position(|d| d.root);
    let name = report
        .metadata
        .name
        .clone()
        .or_else(|| main_root.map(|i| report.dependencies[i].name.clone()))
        .unwrap_or_else(|| file_stem(file).to_string());
    let version = report
        .metadata_value("version")
        .map(str::to_string)
        .or_else(|| main_root.map(|i| report.dependencies[i].version.clone()));

    let mut root = json!({
        "type": "application",
        "bom-ref": ROOT_REF,
        "name": name,
        "hashes": [{ "alg": "SHA-256", "content": report.sha256 }],
        "properties": [
            { "name": "wasmops:kind", "value": report.kind.as_str() },
            { "name": "wasmops:size", "value": report.size.to_string() },
        ],
    });
    if let Some(v) = &version {
        root["version"] = json!(v);
    }
    if let Some(desc) = report.metadata_value("description") {
        root["description"] = json!(desc);
    }
    if let Some(lic) = report.metadata_value("licenses") {
        root["licenses"] = json!([{ "expression": lic }]);
    }
    if let Some(authors) = report.metadata_value("authors") {
        root["author"] = json!(authors);
    }
    let mut refs = Vec::new();
    for field in ["source", "homepage"] {
        if let Some(url) = report.metadata_value(field).filter(|u| looks_like_url(u)) {
            let kind = if field == "source" { "vcs" } else { "website" };
            refs.push(json!({ "type": kind, "url": url }));
        }
    }
    if !refs.is_empty() {
        root["externalReferences"] = Value::Array(refs);
    }

    // bom-refs: unique per (name, version, source) thanks to the merge in
    // `deps::merge_into`; the source is spelled out when it is not crates.io.
    let mut bom_refs: Vec<String> = Vec::with_capacity(report.dependencies.len());
    let mut used: HashMap<String, usize> = HashMap::new();
    for (i, d) in report.dependencies.iter().enumerate() {
        if Some(i) == main_root {
            bom_refs.push(ROOT_REF.to_string());
            continue;
        }
        let base = if d.source == "crates.io" || d.source.is_empty() {
            purl(&d.name, &d.version)
        } else {
            format!(
                "{}:{}@{}",
                purl_encode(&d.source),
                purl_encode(&d.name),
                purl_encode(&d.version)
            )
        };
        let n = used.entry(base.clone()).or_insert(0);
        *n += 1;
        bom_refs.push(if *n == 1 { base } else { format!("{base}#{n}") });
    }

    let mut components = Vec::new();
    for (i, d) in report.dependencies.iter().enumerate() {
        if Some(i) == main_root {
            continue;
        }
        let mut c = json!({
            "type": "library",
            "bom-ref": bom_refs[i],
            "name": d.name,
            "version": d.version,
            "scope": match d.kind {
                DependencyKind::Runtime => "required",
                DependencyKind::Build => "excluded",
            },
        });
        if d.source == "crates.io" {
            c["purl"] = json!(purl(&d.name, &d.version));
        }
        if !d.source.is_empty() {
            c["properties"] = json!([{ "name": "cargo:source", "value": d.source }]);
        }
        components.push(c);
    }

    let mut dependencies = Vec::new();
    if main_root.is_none() {
        // Without a root package, the artifact depends on the root-less
        // top of the graph: every package nothing else depends on.
        let mut depended: BTreeSet<usize> = BTreeSet::new();
        for d in &report.dependencies {
            depended.extend(d.dependencies.iter().copied());
        }
        let tops: BTreeSet<&str> = (0..report.dependencies.len())
            .filter(|i| !depended.contains(i))
            .map(|i| bom_refs[i].as_str())
            .collect();
        dependencies.push(json!({ "ref": ROOT_REF, "dependsOn": tops }));
    }
    for (i, d) in report.dependencies.iter().enumerate() {
        let on: BTreeSet<&str> = d
            .dependencies
            .iter()
            .filter_map(|&j| bom_refs.get(j))
            .map(String::as_str)
            .filter(|r| *r != bom_refs[i])
            .collect();
        dependencies.push(json!({ "ref": bom_refs[i], "dependsOn": on }));
    }

    let mut bom = document(report.sha256.as_bytes(), root, components, dependencies);

    if let Some(scan) = scan
        && !scan.vulnerabilities.is_empty()
    {
        let mut vulns = Vec::new();
        for (n, v) in scan.vulnerabilities.iter().enumerate() {
            let target = report
                .dependencies
                .iter()
                .position(|d| d.name == v.package && d.version == v.version)
                .map(|i| bom_refs[i].clone())
                .unwrap_or_else(|| ROOT_REF.to_string());
            let mut rating = json!({ "severity": v.severity.as_str() });
            if let Some(vector) = &v.cvss {
                rating["method"] = json!(rating_method(vector));
                rating["vector"] = json!(vector);
                if let Ok(c) = vector.parse::<cvss::Cvss>() {
                    rating["score"] = json!(c.score());
                }
            }
            let recommendation = if v.patched.is_empty() {
                "No patched release exists".to_string()
            } else {
                format!("Upgrade to a version matching {}", v.patched.join(" or "))
            };
            let mut entry = json!({
                "bom-ref": format!("vuln-{n}-{}", v.advisory_id),
                "id": v.advisory_id,
                "source": {
                    "name": "RustSec",
                    "url": page_url(&v.advisory_id),
                },
                "ratings": [rating],
                "description": v.title,
                "recommendation": recommendation,
                "advisories": [{
                    "url": if looks_like_url(&v.url) { v.url.clone() } else { page_url(&v.advisory_id) }
                }],
                "affects": [{
                    "ref": target,
                    "versions": [{ "version": v.version, "status": "affected" }],
                }],
            });
            if let Some(kind) = &v.informational {
                entry["properties"] = json!([{ "name": "rustsec:informational", "value": kind }]);
            }
            if !v.aliases.is_empty() {
                entry["references"] = Value::Array(
                    v.aliases
                        .iter()
                        .map(|a| json!({ "id": a, "source": { "name": alias_source(a) } }))
                        .collect(),
                );
            }
            vulns.push(entry);
        }
        bom["vulnerabilities"] = Value::Array(vulns);
    }
    bom
}

/// A CycloneDX 1.5 document describing `root`; `seed` goes into its
/// (otherwise random) serial number.
fn document(seed: &[u8], root: Value, components: Vec<Value>, dependencies: Vec<Value>) -> Value {
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_v4(seed)),
        "version": 1,
        "metadata": {
            "timestamp": now_rfc3339(),
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "wasmops-inspect",
                    "version": env!("CARGO_PKG_VERSION"),
                }]
            },
            "component": root,
        },
        "components": components,
        "dependencies": dependencies,
    })
}

/// Gives every reference in a component's BOM a prefix, so BOMs of
/// several components can share one document.
fn prefix_refs(v: &mut Value, prefix: &str) {
    let re = |s: &mut Value| {
        if let Some(r) = s.as_str() {
            *s = json!(format!("{prefix}{r}"));
        }
    };
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match k.as_str() {
                    "bom-ref" | "ref" => re(x),
                    "dependsOn" => {
                        if let Some(a) = x.as_array_mut() {
                            a.iter_mut().for_each(re);
                        }
                    }
                    _ => prefix_refs(x, prefix),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| prefix_refs(x, prefix)),
        _ => {}
    }
}

/// One CycloneDX 1.5 BOM for an app: the app is the described component;
/// each of its components is a component of it (with its own Rust
/// dependencies nested inside), and vulnerabilities point at the
/// component and package they affect.
pub(crate) fn app_bom(
    name: &str,
    version: Option<&str>,
    parts: &[(&str, &Report, &ScanReport)],
) -> Value {
    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    let mut vulnerabilities = Vec::new();
    let mut tops = Vec::new();
    // Seeds the serial number (random per document, as for one file).
    let mut serial = format!("app:{name}:");
    for (id, report, scan) in parts {
        serial.push_str(&report.sha256);
        let mut one = bom(report, Some(scan), &scan.file);
        prefix_refs(&mut one, &format!("{id}/"));
        let mut c = one["metadata"]["component"].take();
        c["name"] = json!(id);
        if let Some(props) = c["properties"].as_array_mut() {
            props.push(json!({ "name": "wasmops:component", "value": id }));
        }
        let nested = one["components"].take();
        if nested.as_array().is_some_and(|a| !a.is_empty()) {
            c["components"] = nested;
        }
        if let Some(r) = c["bom-ref"].as_str() {
            tops.push(r.to_string());
        }
        components.push(c);
        if let Value::Array(d) = one["dependencies"].take() {
            dependencies.extend(d);
        }
        if let Value::Array(v) = one["vulnerabilities"].take() {
            vulnerabilities.extend(v);
        }
    }
    dependencies.insert(0, json!({ "ref": "app", "dependsOn": tops }));
    let mut root = json!({ "type": "application", "bom-ref": "app", "name": name });
    if let Some(v) = version {
        root["version"] = json!(v);
    }
    let mut bom = document(serial.as_bytes(), root, components, dependencies);
    if !vulnerabilities.is_empty() {
        bom["vulnerabilities"] = Value::Array(vulnerabilities);
    }
    bom
}

fn alias_source(alias: &str) -> &'static str {
    if alias.starts_with("CVE-") {
        "NVD"
    } else if alias.starts_with("GHSA-") {
        "GitHub"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems() {
        assert_eq!(file_stem("target/app.wasm"), "app");
        assert_eq!(file_stem("C:\\x\\y.wasm"), "y");
        assert_eq!(file_stem(""), "unnamed");
        assert_eq!(file_stem(".wasm"), ".wasm");
    }
}
