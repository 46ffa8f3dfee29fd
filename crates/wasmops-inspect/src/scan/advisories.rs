//! The RustSec advisory database: loading, matching, refreshing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use semver::{Comparator, Op, Version, VersionReq};
use serde::Deserialize;

use super::{Severity, Vulnerability};
use crate::report::Dependency;

/// One advisory, as read from `crates/<crate>/RUSTSEC-YYYY-NNNN.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    /// `RUSTSEC-YYYY-NNNN`.
    pub id: String,
    /// The crate it is about.
    pub package: String,
    /// Date reported (`YYYY-MM-DD`).
    pub date: String,
    /// Title: the advisory's `title` key or its first markdown heading.
    pub title: String,
    /// Other ids (CVE, GHSA).
    pub aliases: Vec<String>,
    /// `unsound`, `unmaintained`, `notice`... for informational advisories.
    pub informational: Option<String>,
    /// Date the advisory was withdrawn, if it was.
    pub withdrawn: Option<String>,
    /// CVSS vector.
    pub cvss: Option<String>,
    /// Reference URL given by the advisory.
    pub url: Option<String>,
    /// Requirements of fixed versions, as written.
    pub patched: Vec<String>,
    /// Requirements of versions never affected, as written.
    pub unaffected: Vec<String>,
    /// Operating systems the issue is limited to (empty: all).
    pub os: Vec<String>,
    /// Architectures the issue is limited to (empty: all).
    pub arch: Vec<String>,
    /// Severity derived as described in the crate documentation.
    pub severity: Severity,
    patched_reqs: Vec<VersionReq>,
    unaffected_reqs: Vec<VersionReq>,
}

#[derive(Deserialize)]
struct RawFile {
    advisory: RawAdvisory,
    #[serde(default)]
    versions: RawVersions,
    #[serde(default)]
    affected: Option<RawAffected>,
}

#[derive(Deserialize)]
struct RawAdvisory {
    id: String,
    package: String,
    #[serde(default)]
    date: Option<toml::Value>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    informational: Option<String>,
    #[serde(default)]
    withdrawn: Option<toml::Value>,
    #[serde(default)]
    cvss: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawVersions {
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawAffected {
    #[serde(default)]
    os: Vec<String>,
    #[serde(default)]
    arch: Vec<String>,
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_reqs(list: &[String]) -> Result<Vec<VersionReq>, String> {
    list.iter()
        .map(|r| VersionReq::parse(r).map_err(|e| format!("bad version requirement `{r}`: {e}")))
        .collect()
}

/// The severity of a non-informational advisory from its CVSS vector.
fn cvss_severity(vector: Option<&str>) -> Severity {
    let Some(v) = vector else {
        return Severity::Medium;
    };
    match v.parse::<cvss::Cvss>() {
        Ok(c) => match c.severity() {
            cvss::Severity::None => Severity::Info,
            cvss::Severity::Low => Severity::Low,
            cvss::Severity::Medium => Severity::Medium,
            cvss::Severity::High => Severity::High,
            cvss::Severity::Critical => Severity::Critical,
        },
        Err(_) => Severity::Medium,
    }
}

impl Advisory {
    /// Parses one advisory file: TOML front matter between a "```toml" line
    /// and a "```" line, followed by markdown whose first `# ` heading is
    /// the title.
    pub fn parse(text: &str) -> Result<Advisory, String> {
        let mut lines = text.lines();
        lines
            .by_ref()
            .find(|l| l.trim() == "```toml")
            .ok_or("no ```toml front matter")?;
        let mut front = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if line.trim() == "```" {
                closed = true;
                break;
            }
            front.push_str(line);
            front.push('\n');
        }
        if !closed {
            return Err("unterminated ```toml front matter".to_string());
        }
        let heading = lines
            .find_map(|l| l.strip_prefix("# "))
            .map(|t| t.trim().to_string());

        let raw: RawFile = toml::from_str(&front).map_err(|e| e.message().to_string())?;
        let a = raw.advisory;
        let informational = a
            .informational
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let patched_reqs = parse_reqs(&raw.versions.patched)?;
        let unaffected_reqs = parse_reqs(&raw.versions.unaffected)?;
        let severity = match informational.as_deref() {
            Some("unsound" | "unmaintained") => Severity::Low,
            Some(_) => Severity::Info,
            None => cvss_severity(a.cvss.as_deref()),
        };
        let affected = raw.affected.unwrap_or_default();
        Ok(Advisory {
            title: a.title.or(heading).unwrap_or_else(|| a.id.clone()),
            id: a.id,
            package: a.package,
            date: a.date.as_ref().map(value_text).unwrap_or_default(),
            aliases: a.aliases,
            informational,
            withdrawn: a.withdrawn.as_ref().map(value_text),
            cvss: a.cvss,
            url: a.url,
            patched: raw.versions.patched,
            unaffected: raw.versions.unaffected,
            os: affected.os,
            arch: affected.arch,
            severity,
            patched_reqs,
            unaffected_reqs,
        })
    }

    /// Whether `version` of the package is affected: it matches no patched
    /// and no unaffected requirement.
    pub fn affects(&self, version: &Version) -> bool {
        !self
            .patched_reqs
            .iter()
            .chain(&self.unaffected_reqs)
            .any(|r| req_matches(r, version))
    }

    /// Whether the advisory can apply to WebAssembly code: an advisory
    /// limited to some operating systems or architectures applies only if
    /// they include a WebAssembly target.
    pub fn applies_to_wasm(&self) -> bool {
        let os_ok = self.os.is_empty()
            || self
                .os
                .iter()
                .any(|o| matches!(o.as_str(), "wasi" | "unknown" | "none" | "emscripten"));
        let arch_ok =
            self.arch.is_empty() || self.arch.iter().any(|a| a == "wasm32" || a == "wasm64");
        os_ok && arch_ok
    }

    /// The advisory's page.
    pub fn page_url(&self) -> String {
        crate::util::page_url(&self.id)
    }
}

/// Requirement matching in the spirit of RustSec: unlike Cargo, a
/// pre-release version is compared by plain version order (so
/// `1.0.0-alpha.1` is below `>= 1.0.0` and above `< 0.9`).
fn req_matches(req: &VersionReq, v: &Version) -> bool {
    if v.pre.is_empty() {
        return req.matches(v);
    }
    req.comparators.iter().all(|c| comparator_matches(c, v))
}

fn comparator_matches(c: &Comparator, v: &Version) -> bool {
    let full = |minor: Option<u64>, patch: Option<u64>| Version {
        major: c.major,
        minor: minor.unwrap_or(0),
        patch: patch.unwrap_or(0),
        pre: c.pre.clone(),
        build: Default::default(),
    };
    let base = full(c.minor, c.patch);
    // The exclusive upper bound of a partial or caret/tilde comparator.
    let upper = || -> Version {
        let bump = |major: u64, minor: u64, patch: u64| Version::new(major, minor, patch);
        match (c.op, c.minor, c.patch) {
            (Op::Caret, Some(minor), Some(patch)) => {
                if c.major > 0 {
                    bump(c.major.saturating_add(1), 0, 0)
                } else if minor > 0 {
                    bump(0, minor.saturating_add(1), 0)
                } else {
                    bump(0, 0, patch.saturating_add(1))
                }
            }
            (Op::Caret, Some(minor), None) => {
                if c.major > 0 {
                    bump(c.major.saturating_add(1), 0, 0)
                } else {
                    bump(0, minor.saturating_add(1), 0)
                }
            }
            (Op::Tilde, Some(minor), _) => bump(c.major, minor.saturating_add(1), 0),
            (_, Some(minor), Some(patch)) => bump(c.major, minor, patch.saturating_add(1)),
            (_, Some(minor), None) => bump(c.major, minor.saturating_add(1), 0),
            (_, None, _) => bump(c.major.saturating_add(1), 0, 0),
        }
    };
    // Versions are compared without their pre-release "minimum" flavour:
    // `<x.y.z-0` lower bounds so that pre-releases of x.y.z are included.
    let low = |mut b: Version| {
        if b.pre.is_empty() {
            b.pre = semver::Prerelease::new("0").unwrap_or_default();
        }
        b
    };
    let mut plain = v.clone();
    plain.build = Default::default();
    match c.op {
        Op::Exact | Op::Wildcard if c.patch.is_some() => plain == base,
        Op::Exact | Op::Wildcard => plain >= low(base) && plain < low(upper()),
        Op::Greater if c.patch.is_some() => plain > base,
        Op::Greater => plain >= low(upper()),
        Op::GreaterEq => plain >= base,
        Op::Less => plain < base,
        Op::LessEq if c.patch.is_some() => plain <= base,
        Op::LessEq => plain < low(upper()),
        Op::Caret | Op::Tilde => plain >= base && plain < low(upper()),
        _ => false,
    }
}

/// Why the advisory database could not be loaded or refreshed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// The directory has no `crates/` folder.
    #[error("no advisory database at {path} (expected a `crates/` directory)")]
    NotFound {
        /// The directory given.
        path: String,
    },
    /// Reading failed.
    #[error("cannot read {path}: {message}")]
    Io {
        /// What was being read.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The `git` program is not installed.
    #[error("cannot refresh the advisory database: the `git` program was not found")]
    GitMissing,
    /// A git command failed.
    #[error("`{command}` failed: {message}")]
    Git {
        /// The command line.
        command: String,
        /// The end of git's error output.
        message: String,
    },
    /// The directory exists, is not empty, and is not a git checkout.
    #[error("{path} exists and is not a git checkout; remove it or choose another directory")]
    NotACheckout {
        /// The directory.
        path: String,
    },
}

/// The advisory database, indexed by crate name.
#[derive(Debug, Clone, Default)]
pub struct AdvisoryDb {
    by_package: HashMap<String, Vec<Advisory>>,
    count: usize,
    withdrawn: usize,
    malformed: Vec<(PathBuf, String)>,
}

impl AdvisoryDb {
    /// Loads every `crates/<crate>/*.md` advisory under `dir` (a checkout
    /// of the RustSec advisory-db). Malformed files are skipped and listed
    /// in [`AdvisoryDb::malformed`]; withdrawn advisories are skipped and
    /// counted in [`AdvisoryDb::withdrawn`].
    pub fn load(dir: &Path) -> Result<AdvisoryDb, DbError> {
        let crates = dir.join("crates");
        if !crates.is_dir() {
            return Err(DbError::NotFound {
                path: dir.display().to_string(),
            });
        }
        let io = |p: &Path, e: std::io::Error| DbError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        };
        let mut db = AdvisoryDb::default();
        let mut pkg_dirs: Vec<PathBuf> = std::fs::read_dir(&crates)
            .map_err(|e| io(&crates, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        pkg_dirs.sort();
        for pkg_dir in pkg_dirs {
            let Ok(entries) = std::fs::read_dir(&pkg_dir) else {
                db.malformed
                    .push((pkg_dir.clone(), "unreadable directory".to_string()));
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect();
            files.sort();
            for file in files {
                let text = match std::fs::read_to_string(&file) {
                    Ok(t) => t,
                    Err(e) => {
                        db.malformed.push((file, e.to_string()));
                        continue;
                    }
                };
                match Advisory::parse(&text) {
                    Ok(a) if a.withdrawn.is_some() => db.withdrawn += 1,
                    Ok(a) => db.insert(a),
                    Err(e) => db.malformed.push((file, e)),
                }
            }
        }
        Ok(db)
    }

    /// Adds one advisory.
    pub fn insert(&mut self, advisory: Advisory) {
        self.count += 1;
        self.by_package
            .entry(advisory.package.clone())
            .or_default()
            .push(advisory);
    }

    /// Number of advisories loaded (withdrawn ones excluded).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no advisory was loaded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of withdrawn advisories skipped.
    pub fn withdrawn(&self) -> usize {
        self.withdrawn
    }

    /// Files that could not be read or parsed, with the reason.
    pub fn malformed(&self) -> &[(PathBuf, String)] {
        &self.malformed
    }

    /// The advisories about one crate.
    pub fn advisories_for(&self, package: &str) -> &[Advisory] {
        self.by_package.get(package).map_or(&[], Vec::as_slice)
    }

    /// The advisories that affect the given dependencies. Only packages from
    /// crates.io (or of unknown source) are matched; versions that are not
    /// semver are skipped.
    pub fn check(&self, deps: &[Dependency]) -> Vec<Vulnerability> {
        let mut out = Vec::new();
        for d in deps {
            if matches!(d.source.as_str(), "git" | "local" | "registry") {
                continue;
            }
            let Ok(version) = Version::parse(d.version.trim()) else {
                continue;
            };
            for a in self.advisories_for(&d.name) {
                if !a.applies_to_wasm() || !a.affects(&version) {
                    continue;
                }
                out.push(Vulnerability {
                    advisory_id: a.id.clone(),
                    package: d.name.clone(),
                    version: d.version.clone(),
                    title: a.title.clone(),
                    severity: a.severity,
                    url: a
                        .url
                        .clone()
                        .filter(|u| crate::util::looks_like_url(u))
                        .unwrap_or_else(|| a.page_url()),
                    patched: a.patched.clone(),
                    informational: a.informational.clone(),
                    aliases: a.aliases.clone(),
                    cvss: a.cvss.clone(),
                });
            }
        }
        out
    }
}

/// What [`refresh_db`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The database was cloned into a new directory.
    Cloned {
        /// The commit checked out.
        head: String,
    },
    /// An existing checkout was fetched and reset to the remote head.
    Updated {
        /// The commit checked out.
        head: String,
    },
}

/// Clones the advisory database from `git_url` into `dir`, or, when `dir`
/// is already a git checkout, fetches `git_url` and resets to what it
/// fetched. Runs the `git` program; never prompts for credentials.
pub fn refresh_db(git_url: &str, dir: &Path) -> Result<RefreshOutcome, DbError> {
    refresh_with(Path::new("git"), git_url, dir)
}

pub(crate) fn refresh_with(
    git: &Path,
    git_url: &str,
    dir: &Path,
) -> Result<RefreshOutcome, DbError> {
    let run = |args: &[&str], cwd: Option<&Path>| -> Result<String, DbError> {
        let mut cmd = Command::new(git);
        cmd.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "")
            .stdin(std::process::Stdio::null());
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let shown = format!("git {}", args.join(" "));
        let out = cmd.output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DbError::GitMissing
            } else {
                DbError::Git {
                    command: shown.clone(),
                    message: e.to_string(),
                }
            }
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let message = stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("no error output")
                .to_string();
            return Err(DbError::Git {
                command: shown,
                message,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };

    if dir.join(".git").exists() {
        run(&["fetch", "--depth", "1", "--quiet", git_url], Some(dir))?;
        run(&["reset", "--hard", "--quiet", "FETCH_HEAD"], Some(dir))?;
        let head = run(&["rev-parse", "HEAD"], Some(dir))?;
        return Ok(RefreshOutcome::Updated { head });
    }
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| DbError::Io {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?
            .next()
            .is_none();
        if !empty {
            return Err(DbError::NotACheckout {
                path: dir.display().to_string(),
            });
        }
    }
    let target = dir.to_string_lossy();
    run(
        &["clone", "--depth", "1", "--quiet", "--", git_url, &target],
        None,
    )?;
    let head = run(&["rev-parse", "HEAD"], Some(dir))?;
    Ok(RefreshOutcome::Cloned { head })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn m(req: &str, ver: &str) -> bool {
        req_matches(&VersionReq::parse(req).unwrap(), &v(ver))
    }

    #[test]
    fn requirement_forms() {
        assert!(m(">= 1.2.3, < 1.3", "1.2.9"));
        assert!(!m(">= 1.2.3, < 1.3", "1.3.0"));
        assert!(m("^0.9", "0.9.7"));
        assert!(!m("^0.9.1", "0.9.0"));
        assert!(m("< 0.5.0", "0.4.99"));
        // Pre-releases compare by plain version order.
        assert!(m(">= 1.0.0-alpha.1", "1.0.0-beta.2"));
        assert!(!m(">= 1.0.0", "1.0.0-rc.1"));
        assert!(m("< 1.0.0", "1.0.0-rc.1"));
        assert!(m("^0.3.4", "0.3.5-pre"));
        assert!(!m("^0.3.4", "0.4.0-pre"));
        assert!(m(">= 0.9", "1.0.0-alpha"));
        assert!(m("= 1.2", "1.2.3-x"));
    }

    #[test]
    fn parse_and_match() {
        let text = r#"```toml
[advisory]
id = "RUSTSEC-2099-0001"
package = "demo"
date = "2099-01-01"
cvss = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"

[versions]
patched = [">= 1.2.3", "^0.9.1"]
unaffected = ["< 0.5.0"]
```

# Demo advisory

Text.
"#;
        let a = Advisory::parse(text).unwrap();
        assert_eq!(a.title, "Demo advisory");
        assert_eq!(a.severity, Severity::Critical);
        assert!(a.affects(&v("1.2.2")));
        assert!(!a.affects(&v("1.2.3")));
        assert!(!a.affects(&v("0.9.4")));
        assert!(a.affects(&v("0.9.0")));
        assert!(!a.affects(&v("0.4.0")));
        assert!(a.applies_to_wasm());

        assert!(Advisory::parse("no front matter").is_err());
        assert!(Advisory::parse("```toml\n[advisory]\nid = 1\n```").is_err());
        assert!(Advisory::parse("```toml\n[advisory]\n").is_err());
    }
}

#[cfg(test)]
mod refresh_tests {
    use super::*;

    #[test]
    fn missing_git_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let e = refresh_with(
            Path::new("/nonexistent/bin/git-that-is-not-there"),
            "https://example.invalid/advisory-db.git",
            &tmp.path().join("db"),
        )
        .unwrap_err();
        assert_eq!(e, DbError::GitMissing);
        assert!(e.to_string().contains("`git` program was not found"));
    }
}
