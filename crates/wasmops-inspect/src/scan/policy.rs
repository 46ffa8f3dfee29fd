//! Scan policies, read from TOML.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, de};

use super::{Severity, rule};
use crate::capabilities::is_capability_id;
use crate::report::METADATA_FIELDS;
use crate::util::leading_version;

/// A toolchain version floor: producers named `name` (in the `processed-by`
/// or `sdk` fields, compared case-insensitively) must be at least `below`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainFloor {
    /// Producer name, e.g. `rustc`.
    pub name: String,
    /// Lowest allowed version (`x.y.z`; only its leading numbers count).
    #[serde(deserialize_with = "de_version")]
    pub below: String,
}

/// What a scan checks.
///
/// A policy file replaces the built-in policy: a field it leaves out is not
/// checked, except `unknown_imports`, which stays `high` unless set.
///
/// ```toml
/// deny_capabilities = ["sockets"]
/// allow_interfaces = ["wasi:*"]
/// unknown_imports = "high"          # or "off"
/// max_size = "10MiB"
/// require_metadata = ["licenses", "source"]
/// require_producers = ["language"]
/// banned_toolchains = [{ name = "rustc", below = "1.70.0" }]
///
/// [severity]                        # per-rule overrides; "off" disables
/// WOPS006 = "medium"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Capability ids (see the crate documentation) that are not allowed.
    #[serde(default, deserialize_with = "de_capabilities")]
    pub deny_capabilities: Vec<String>,
    /// When set, every import must match one of these patterns (`prefix*`,
    /// an exact name, or a name without `@version` matching any version).
    #[serde(default)]
    pub allow_interfaces: Option<Vec<String>>,
    /// Severity of rule WOPS004 (imports the host does not know); `None`
    /// (written `"off"`) disables it.
    #[serde(default = "default_unknown", deserialize_with = "de_optional_severity")]
    pub unknown_imports: Option<Severity>,
    /// Largest allowed file size in bytes (written `"10MiB"`, `"500 KB"`,
    /// or a number of bytes).
    #[serde(default, deserialize_with = "de_size")]
    pub max_size: Option<u64>,
    /// Metadata sections that must be present (top level or nested).
    #[serde(default, deserialize_with = "de_metadata_fields")]
    pub require_metadata: Vec<String>,
    /// Producers fields that must be present: `language`, `processed-by`, `sdk`.
    #[serde(default, deserialize_with = "de_producer_fields")]
    pub require_producers: Vec<String>,
    /// Minimum toolchain versions.
    #[serde(default)]
    pub banned_toolchains: Vec<ToolchainFloor>,
    /// Per-rule severity overrides; `None` (written `"off"`) disables a rule.
    #[serde(default, deserialize_with = "de_overrides")]
    pub severity: BTreeMap<String, Option<Severity>>,
}

fn default_unknown() -> Option<Severity> {
    Some(Severity::High)
}

impl Default for Policy {
    /// The built-in policy (see the crate documentation).
    fn default() -> Self {
        Policy {
            deny_capabilities: Vec::new(),
            allow_interfaces: None,
            unknown_imports: default_unknown(),
            max_size: Some(64 * 1024 * 1024),
            require_metadata: vec!["licenses".to_string()],
            require_producers: Vec::new(),
            banned_toolchains: Vec::new(),
            severity: BTreeMap::new(),
        }
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The TOML is invalid or does not describe a policy.
    #[error("policy error at line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
}

impl Policy {
    /// Parses a policy from TOML text. Unknown keys and invalid values are
    /// errors that carry the line and column.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        toml::from_str::<Policy>(text).map_err(|e| {
            let (line, column) = match e.span() {
                Some(span) => line_col(text, span.start),
                None => (1, 1),
            };
            PolicyError::Parse {
                line,
                column,
                message: e.message().trim().replace('\n', " "),
            }
        })
    }

    /// Reads and parses a policy file.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Policy::from_toml(&text)
    }

    /// The severity a rule reports with under this policy; `None` when the
    /// rule is off.
    pub fn severity_of(&self, rule_id: &str) -> Option<Severity> {
        if let Some(over) = self.severity.get(rule_id) {
            return *over;
        }
        if rule_id == "WOPS004" {
            return self.unknown_imports;
        }
        rule(rule_id).map(|r| r.default_severity)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, rest)| rest)
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Parses a size such as `10MiB`, `10 MB`, `512k` or `1048576` into bytes
/// (the units of [`wasmops_units::parse_size`]).
pub fn parse_size(s: &str) -> Result<u64, String> {
    wasmops_units::parse_size(s).map_err(|e| format!("invalid size `{s}`: {e}"))
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d).map_err(|_| {
        de::Error::custom("max_size must be a size such as \"10MiB\" or a number of bytes")
    })? {
        Raw::Int(n) => Ok(Some(n)),
        Raw::Text(s) => parse_size(&s).map(Some).map_err(de::Error::custom),
    }
}

fn de_version<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if leading_version(&s).is_none() {
        return Err(de::Error::custom(format!(
            "invalid version `{s}`: expected x.y.z"
        )));
    }
    Ok(s)
}

fn de_list_of<'de, D: Deserializer<'de>>(
    d: D,
    what: &str,
    valid: impl Fn(&str) -> bool,
    known: &str,
) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    for item in &list {
        if !valid(item) {
            return Err(de::Error::custom(format!(
                "unknown {what} `{item}`; known: {known}"
            )));
        }
    }
    Ok(list)
}

fn de_capabilities<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let known: Vec<&str> = crate::capability_ids().collect();
    de_list_of(d, "capability", is_capability_id, &known.join(", "))
}

fn de_metadata_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    de_list_of(
        d,
        "metadata field",
        |s| METADATA_FIELDS.contains(&s),
        &METADATA_FIELDS.join(", "),
    )
}

fn de_producer_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    const FIELDS: &[&str] = &["language", "processed-by", "sdk"];
    de_list_of(
        d,
        "producers field",
        |s| FIELDS.contains(&s),
        &FIELDS.join(", "),
    )
}

fn parse_optional_severity(s: &str) -> Result<Option<Severity>, String> {
    if s.eq_ignore_ascii_case("off") {
        Ok(None)
    } else {
        s.parse::<Severity>().map(Some)
    }
}

fn de_optional_severity<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Severity>, D::Error> {
    let s = String::deserialize(d)?;
    parse_optional_severity(&s).map_err(de::Error::custom)
}

fn de_overrides<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Option<Severity>>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (id, sev) in raw {
        if rule(&id).is_none() {
            return Err(de::Error::custom(format!("unknown rule id `{id}`")));
        }
        out.insert(
            id,
            parse_optional_severity(&sev).map_err(de::Error::custom)?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_policy() {
        let p = Policy::from_toml(
            r#"
deny_capabilities = ["sockets"]
allow_interfaces = ["wasi:*"]
max_size = "10MiB"
require_metadata = ["licenses", "source"]
require_producers = ["language"]
banned_toolchains = [{ name = "rustc", below = "1.70.0" }]
unknown_imports = "off"

[severity]
WOPS006 = "medium"
WOPS010 = "off"
"#,
        )
        .unwrap();
        assert_eq!(p.deny_capabilities, ["sockets"]);
        assert_eq!(p.max_size, Some(10 << 20));
        assert_eq!(p.banned_toolchains[0].below, "1.70.0");
        assert_eq!(p.severity_of("WOPS004"), None);
        assert_eq!(p.severity_of("WOPS006"), Some(Severity::Medium));
        assert_eq!(p.severity_of("WOPS010"), None);
        assert_eq!(p.severity_of("WOPS001"), Some(Severity::High));
    }

    #[test]
    fn empty_policy_checks_little() {
        let p = Policy::from_toml("").unwrap();
        assert!(p.require_metadata.is_empty());
        assert_eq!(p.max_size, None);
        assert_eq!(p.unknown_imports, Some(Severity::High));
    }

    #[test]
    fn errors_have_positions() {
        let e = Policy::from_toml("max_size = \"1MiB\"\ndeny_capabilites = [\"sockets\"]\n")
            .unwrap_err();
        let PolicyError::Parse { line, column, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!((*line, *column), (2, 1), "{e}");
        assert!(e.to_string().contains("deny_capabilites"), "{e}");

        let e = Policy::from_toml("\n\nmax_size = \"ten\"").unwrap_err();
        assert!(e.to_string().starts_with("policy error at line 3"), "{e}");

        let e = Policy::from_toml("deny_capabilities = [\"teleport\"]").unwrap_err();
        assert!(e.to_string().contains("teleport"), "{e}");

        let e = Policy::from_toml("banned_toolchains = [{ name = \"rustc\", below = \"new\" }]")
            .unwrap_err();
        assert!(e.to_string().contains("x.y.z"), "{e}");

        let e = Policy::from_toml("banned_toolchains = [{ name = \"rustc\", belw = \"1\" }]")
            .unwrap_err();
        assert!(e.to_string().contains("belw"), "{e}");

        let e = Policy::from_toml("[severity]\nWOPS999 = \"low\"").unwrap_err();
        assert!(e.to_string().contains("WOPS999"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("10 MB"), Ok(10_000_000));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
