//! Package metadata carried into a built component: the licence,
//! description, version, authors, source and homepage that the project's
//! own package manifest declares (`Cargo.toml`, `package.json`,
//! `pyproject.toml`), written as the top-level custom sections that
//! `wasm-tools metadata` and `wasmops inspect` read (`licenses`,
//! `description`, ...; each a UTF-8 string).

use std::path::{Path, PathBuf};

use wasmops_manifest::Language;

/// The metadata fields, in the order they are written.
const FIELDS: &[&str] = &[
    "licenses",
    "description",
    "version",
    "authors",
    "source",
    "homepage",
];

/// Fields found in a package manifest: (section name, value).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackageMetadata {
    /// The manifest they came from.
    pub from: PathBuf,
    pub fields: Vec<(&'static str, String)>,
}

impl PackageMetadata {
    fn set(&mut self, name: &'static str, value: Option<String>) {
        if let Some(v) = value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            && !self.fields.iter().any(|(n, _)| *n == name)
        {
            self.fields.push((name, v));
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The package manifest of a component's sources, read for its metadata.
/// `entry` is the Rust package (`-p`) when there is one.
pub fn package_metadata(
    language: Language,
    dir: &Path,
    entry: Option<&str>,
) -> Option<PackageMetadata> {
    match language {
        Language::Rust => cargo(dir, entry),
        Language::JavaScript | Language::TypeScript => npm(&dir.join("package.json")),
        Language::Python => pyproject(&dir.join("pyproject.toml")),
        Language::C | Language::Go | Language::Command => None,
    }
}

fn read_toml(path: &Path) -> Option<toml::Table> {
    std::fs::read_to_string(path).ok()?.parse().ok()
}

fn str_of(v: Option<&toml::Value>) -> Option<String> {
    v.and_then(|v| v.as_str()).map(str::to_string)
}

/// The Cargo.toml of `entry` (or of `dir`'s own package), with values a
/// member inherits from its workspace (`license.workspace = true`).
fn cargo(dir: &Path, entry: Option<&str>) -> Option<PackageMetadata> {
    let root = dir.join("Cargo.toml");
    let root_doc = read_toml(&root)?;
    let is_entry = |doc: &toml::Table| match entry {
        Some(e) => {
            doc.get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                == Some(e)
        }
        None => doc.get("package").is_some(),
    };
    let (path, doc) = if is_entry(&root_doc) {
        (root.clone(), root_doc.clone())
    } else {
        // A workspace member: its directory is listed in `members`.
        let members = root_doc
            .get("workspace")
            .and_then(|w| w.get("members"))
            .and_then(|m| m.as_array())?;
        members
            .iter()
            .filter_map(|m| m.as_str())
            .filter(|m| !m.contains('*'))
            .map(|m| dir.join(m).join("Cargo.toml"))
            .find_map(|p| read_toml(&p).filter(is_entry).map(|d| (p, d)))?
    };
    let package = doc.get("package")?.as_table()?;
    let inherited = root_doc
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.as_table());
    let field = |name: &str| -> Option<&toml::Value> {
        let v = package.get(name)?;
        if v.get("workspace").and_then(|w| w.as_bool()) == Some(true) {
            inherited?.get(name)
        } else {
            Some(v)
        }
    };
    let mut m = PackageMetadata {
        from: path,
        ..Default::default()
    };
    m.set("licenses", str_of(field("license")));
    m.set("description", str_of(field("description")));
    m.set("version", str_of(field("version")));
    m.set(
        "authors",
        field("authors").and_then(|a| a.as_array()).map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }),
    );
    m.set("source", str_of(field("repository")));
    m.set("homepage", str_of(field("homepage")));
    Some(m)
}

fn npm(path: &Path) -> Option<PackageMetadata> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    // `"repository": "url"` or `{ "url": ... }`; `"author"` likewise.
    let either = |v: &serde_json::Value, key: &str| s(v).or_else(|| s(&v[key]));
    let mut m = PackageMetadata {
        from: path.to_path_buf(),
        ..Default::default()
    };
    m.set("licenses", s(&doc["license"]));
    m.set("description", s(&doc["description"]));
    m.set("version", s(&doc["version"]));
    m.set("authors", either(&doc["author"], "name"));
    m.set("source", either(&doc["repository"], "url"));
    m.set("homepage", s(&doc["homepage"]));
    Some(m)
}

fn pyproject(path: &Path) -> Option<PackageMetadata> {
    let doc = read_toml(path)?;
    let project = doc.get("project")?.as_table()?;
    let mut m = PackageMetadata {
        from: path.to_path_buf(),
        ..Default::default()
    };
    // PEP 639 `license = "MIT"`, or the older `license = { text = "MIT" }`.
    let license = project.get("license").and_then(|l| {
        l.as_str()
            .map(str::to_string)
            .or_else(|| str_of(l.get("text")))
    });
    m.set("licenses", license);
    m.set("description", str_of(project.get("description")));
    m.set("version", str_of(project.get("version")));
    m.set(
        "authors",
        project.get("authors").and_then(|a| a.as_array()).map(|a| {
            a.iter()
                .filter_map(|x| str_of(x.get("name")))
                .collect::<Vec<_>>()
                .join(", ")
        }),
    );
    let urls = project.get("urls").and_then(|u| u.as_table());
    let url = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| urls.and_then(|u| str_of(u.get(*k))))
    };
    m.set(
        "source",
        url(&["Source", "source", "Repository", "repository"]),
    );
    m.set("homepage", url(&["Homepage", "homepage"]));
    Some(m)
}

/// The names of the component's top-level custom sections.
fn top_level_sections(component: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload {
            Ok(wasmparser::Payload::ModuleSection { .. })
            | Ok(wasmparser::Payload::ComponentSection { .. }) => depth += 1,
            Ok(wasmparser::Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(wasmparser::Payload::CustomSection(c)) if depth == 0 => {
                names.push(c.name().to_string())
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    names
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The component with the package's metadata appended as top-level
/// custom sections; fields it already carries are left as they are.
/// Returns the names of the fields added.
pub fn embed(component: &[u8], meta: &PackageMetadata) -> (Vec<u8>, Vec<&'static str>) {
    let present = top_level_sections(component);
    let mut out = component.to_vec();
    let mut added = Vec::new();
    for name in FIELDS {
        let Some(value) = meta.get(name) else {
            continue;
        };
        if present.iter().any(|p| p == name) {
            continue;
        }
        let mut body = Vec::new();
        leb128(name.len(), &mut body);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(value.as_bytes());
        out.push(0);
        leb128(body.len(), &mut out);
        out.extend_from_slice(&body);
        added.push(*name);
    }
    (out, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_workspace_member_inherits() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"api\"]\n[workspace.package]\nlicense = \"MIT OR Apache-2.0\"\nversion = \"1.2.3\"\n",
        )
        .unwrap();
        std::fs::create_dir(d.path().join("api")).unwrap();
        std::fs::write(
            d.path().join("api/Cargo.toml"),
            "[package]\nname = \"api\"\nlicense.workspace = true\nversion.workspace = true\ndescription = \"The API\"\nauthors = [\"A\", \"B\"]\n",
        )
        .unwrap();
        let m = package_metadata(Language::Rust, d.path(), Some("api")).unwrap();
        assert_eq!(m.get("licenses"), Some("MIT OR Apache-2.0"));
        assert_eq!(m.get("version"), Some("1.2.3"));
        assert_eq!(m.get("description"), Some("The API"));
        assert_eq!(m.get("authors"), Some("A, B"));
        assert!(package_metadata(Language::Rust, d.path(), Some("nope")).is_none());
    }

    #[test]
    fn npm_and_python_forms() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("package.json"),
            r#"{"license":"ISC","repository":{"type":"git","url":"https://example.com/r.git"},"author":{"name":"Ann"}}"#,
        )
        .unwrap();
        let m = package_metadata(Language::JavaScript, d.path(), None).unwrap();
        assert_eq!(m.get("licenses"), Some("ISC"));
        assert_eq!(m.get("source"), Some("https://example.com/r.git"));
        assert_eq!(m.get("authors"), Some("Ann"));
        std::fs::write(
            d.path().join("pyproject.toml"),
            "[project]\nname = \"x\"\nlicense = { text = \"BSD-3-Clause\" }\n[project.urls]\nHomepage = \"https://example.com\"\n",
        )
        .unwrap();
        let m = package_metadata(Language::Python, d.path(), None).unwrap();
        assert_eq!(m.get("licenses"), Some("BSD-3-Clause"));
        assert_eq!(m.get("homepage"), Some("https://example.com"));
    }

    #[test]
    fn embeds_once_and_keeps_validity() {
        let component = wat::parse_str("(component)").unwrap();
        let meta = PackageMetadata {
            from: PathBuf::new(),
            fields: vec![("licenses", "MIT".into()), ("version", "0.1.0".into())],
        };
        let (out, added) = embed(&component, &meta);
        assert_eq!(added, ["licenses", "version"]);
        assert_eq!(top_level_sections(&out), ["licenses", "version"]);
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&out)
            .unwrap();
        let (again, added) = embed(&out, &meta);
        assert!(added.is_empty());
        assert_eq!(again, out);
    }
}
