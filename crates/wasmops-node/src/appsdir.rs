//! Desired state from a directory of app declarations (`--apps-dir`), the
//! shape of a mounted ConfigMap: one `NAME.toml` per app.
//!
//! ```toml
//! reference = "registry.example.com/shop@sha256:..."   # or a tag
//! hosts = ["shop.example.com"]
//! routes = ["/"]                  # default: the app's own route prefixes
//! variables = { greeting = "hi" } # plain values only
//! secrets_dir = "/etc/wasmops/secrets/shop"  # a mounted Secret: file NAME holds variable NAME
//! # for a single component: env = { K = "V" }, memory = "64MiB", timeout = "10s", concurrency = 32
//! ```
//!
//! kubelet updates a mounted ConfigMap by writing a new timestamped
//! directory and swapping the `..data` symbolic link to it; the files seen
//! through `DIR/NAME.toml` are links through `..data`. So a pass resolves
//! `..data` once and reads every declaration from the directory it points
//! to: it sees the old set or the new one, never a mix.
//!
//! The node converges to the set: it deploys what is new or changed,
//! deletes what was declared and no longer is, and leaves alone apps
//! deployed through the admin API. A declaration that cannot be read or
//! applied is reported (log, metrics, `/readyz` detail) and skipped; the
//! app keeps the version it had.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::state::{AppSpec, Version};
use crate::{ChangeError, Node, valid_name};

/// Who the versions deployed from the directory are deployed by.
pub const OWNER: &str = "apps-dir";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeclaration {
    name: Option<String>,
    reference: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    memory: Option<String>,
    timeout: Option<String>,
    concurrency: Option<usize>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    secrets_dir: Option<PathBuf>,
}

/// One app as the directory declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    pub name: String,
    pub reference: String,
    pub spec: AppSpec,
    /// Variables given in the declaration itself (not from `secrets_dir`):
    /// none of them may be one the app marks secret.
    pub inline: Vec<String>,
}

/// What a pass over the directory found.
#[derive(Debug, Default)]
pub struct Scan {
    pub declarations: Vec<Declaration>,
    /// Apps whose declaration is there but cannot be used: `(app, why)`.
    pub broken: Vec<(String, String)>,
    /// Every app the directory names, usable or not.
    pub names: Vec<String>,
    /// Of everything read (declarations and secrets), to notice changes.
    pub fingerprint: u64,
}

/// The outcome of the last convergence.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub applied: usize,
    pub failed: Vec<(String, String)>,
}

/// The directory to read: where `..data` points when it is there.
fn effective_dir(dir: &Path) -> PathBuf {
    let data = dir.join("..data");
    std::fs::canonicalize(&data)
        .ok()
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// `line:col` (1-based) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The declarations of a directory: its `*.toml` files that are not
/// hidden (kubelet's `..data` and timestamped directories are), sorted.
pub fn declaration_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            !n.starts_with('.') && n.ends_with(".toml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every declaration of `dir`.
pub fn scan(dir: &Path) -> Scan {
    let mut out = Scan::default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let root = effective_dir(dir);
    root.hash(&mut hasher);
    let files = match declaration_files(&root) {
        Ok(f) => f,
        Err(e) => {
            out.broken
                .push(("-".into(), format!("{}: {e}", dir.display())));
            out.fingerprint = hasher.finish();
            return out;
        }
    };
    for path in files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = file.trim_end_matches(".toml").to_string();
        out.names.push(stem.clone());
        let shown = dir.join(&file).display().to_string();
        match read_one(&path, &stem, &shown, &mut hasher) {
            Ok(d) => out.declarations.push(d),
            Err(e) => out.broken.push((stem, e)),
        }
    }
    out.fingerprint = hasher.finish();
    out
}

fn read_one(
    path: &Path,
    stem: &str,
    shown: &str,
    hasher: &mut impl Hasher,
) -> Result<Declaration, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    text.hash(hasher);
    let raw: RawDeclaration = toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map_or((1, 1), |s| position(&text, s.start));
        format!("{shown}:{line}:{col}: {}", e.message().trim())
    })?;
    let at = |m: String| format!("{shown}: {m}");
    if !valid_name(stem) {
        return Err(at(format!(
            "`{stem}` is not a valid app name: name the file NAME.toml with lowercase letters, digits and `-`, starting with a letter"
        )));
    }
    if let Some(n) = &raw.name
        && n != stem
    {
        return Err(at(format!(
            "`name = \"{n}\"` differs from the file's name; name the file {n}.toml or drop `name`"
        )));
    }
    let memory = raw
        .memory
        .as_deref()
        .map(|m| wasmops_units::parse_nonzero_size(m).and_then(wasmops_units::check_memory))
        .transpose()
        .map_err(|e| at(format!("memory: {e}")))?;
    let timeout = raw
        .timeout
        .as_deref()
        .map(wasmops_units::parse_nonzero_duration)
        .transpose()
        .map_err(|e| at(format!("timeout: {e}")))?;
    let inline: Vec<String> = raw.variables.keys().cloned().collect();
    let mut variables = raw.variables;
    if let Some(dir) = &raw.secrets_dir {
        let root = effective_dir(dir);
        let rd = std::fs::read_dir(&root)
            .map_err(|e| at(format!("secrets_dir {}: {e}", dir.display())))?;
        let mut entries: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                !p.file_name()
                    .map(|n| n.to_string_lossy().starts_with('.'))
                    .unwrap_or(true)
                    && p.is_file()
            })
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let value = std::fs::read_to_string(&p)
                .map_err(|e| at(format!("secret `{name}` in {}: {e}", dir.display())))?;
            // One trailing newline is the file's, not the value's.
            let value = value.strip_suffix('\n').unwrap_or(&value).to_string();
            value.hash(hasher);
            if variables.insert(name.clone(), value).is_some() {
                return Err(at(format!(
                    "variable `{name}` is given both in `variables` and in secrets_dir; keep it in one place"
                )));
            }
        }
    }
    Ok(Declaration {
        inline,
        name: stem.to_string(),
        reference: raw.reference,
        spec: AppSpec {
            hosts: raw.hosts,
            routes: raw.routes,
            env: raw.env,
            memory,
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
            concurrency: raw.concurrency,
            variables,
        },
    })
}

/// Whether the running version is what `d` declares (routes left to the
/// app, and variables carried over, count as the same).
fn up_to_date(d: &Declaration, v: &Version) -> bool {
    let source_same = v.source == d.reference || v.source.starts_with(&format!("{}@", d.reference));
    let s = &v.spec;
    source_same
        && s.hosts == d.spec.hosts
        && (d.spec.routes.is_empty() || s.routes == d.spec.routes)
        && s.env == d.spec.env
        && s.memory == d.spec.memory
        && s.timeout_ms == d.spec.timeout_ms
        && s.concurrency == d.spec.concurrency
        && d.spec
            .variables
            .iter()
            .all(|(k, val)| s.variables.get(k) == Some(val))
}

impl Node {
    /// Applies one scan: deploys what is new or changed, deletes what the
    /// directory no longer names. Returns what was applied and what failed.
    pub async fn converge(self: &Arc<Self>, scan: Scan) -> Report {
        let mut report = Report {
            applied: 0,
            failed: scan.broken.clone(),
        };
        for d in &scan.declarations {
            let current = self.table().get(&d.name).map(|s| s.version.clone());
            if let Some(v) = &current {
                if v.deployed_by != OWNER {
                    report.failed.push((
                        d.name.clone(),
                        format!(
                            "app `{}` was deployed through the admin API; delete it there to let the apps directory manage it",
                            d.name
                        ),
                    ));
                    continue;
                }
                if up_to_date(d, v) {
                    report.applied += 1;
                    continue;
                }
            }
            match self.apply(d).await {
                Ok(v) => {
                    report.applied += 1;
                    tracing::info!(app = %d.name, version = v.version, digest = %v.digest, "declaration applied");
                }
                Err(e) => report.failed.push((d.name.clone(), e.to_string())),
            }
        }
        // Apps the directory deployed and no longer names.
        let gone: Vec<String> = self
            .table()
            .apps
            .iter()
            .filter(|a| a.version.deployed_by == OWNER && !scan.names.contains(&a.name))
            .map(|a| a.name.clone())
            .collect();
        for name in gone {
            let node = self.clone();
            let n = name.clone();
            match tokio::task::spawn_blocking(move || node.delete(&n, OWNER)).await {
                Ok(Ok(())) => tracing::info!(app = %name, "declaration removed: app deleted"),
                Ok(Err(e)) => report.failed.push((name, e.to_string())),
                Err(e) => report.failed.push((name, e.to_string())),
            }
        }
        for (app, error) in &report.failed {
            tracing::error!(app = %app, error = %error, "declaration not applied; the app keeps the version it had");
        }
        report
    }

    async fn apply(self: &Arc<Self>, d: &Declaration) -> Result<Version, ChangeError> {
        let (digest, manifest) = self.fetch(&d.reference).await?;
        let source = if d.reference.contains('@') {
            d.reference.clone()
        } else {
            format!("{}@{manifest}", d.reference)
        };
        // A secret never comes from the ConfigMap.
        let secret = self.secret_variables(&digest)?;
        if let Some(v) = d.inline.iter().find(|v| secret.contains(v)) {
            return Err(ChangeError::Bad(format!(
                "variable `{v}` is secret: give it in the Secret mounted at `secrets_dir` (a file named `{v}`), not in the declaration"
            )));
        }
        let node = self.clone();
        let (name, spec) = (d.name.clone(), d.spec.clone());
        tokio::task::spawn_blocking(move || node.deploy(&name, &digest, &source, spec, OWNER))
            .await
            .map_err(|e| ChangeError::Internal(e.to_string()))?
    }

    /// Follows `dir` until the node is dropped: a pass every `period`,
    /// applied when something changed, and again every `retry` while some
    /// declaration failed (a registry may come back).
    pub fn spawn_apps_dir(self: &Arc<Self>, dir: PathBuf, period: Duration, retry: Duration) {
        self.follows_apps_dir
            .store(true, std::sync::atomic::Ordering::Release);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last: Option<u64> = None;
            let mut last_apply = tokio::time::Instant::now();
            let mut failing = false;
            loop {
                let d = dir.clone();
                let Ok(scan) = tokio::task::spawn_blocking(move || scan(&d)).await else {
                    break;
                };
                let Some(node) = weak.upgrade() else { break };
                let changed = last != Some(scan.fingerprint);
                if changed || (failing && last_apply.elapsed() >= retry) {
                    let fingerprint = scan.fingerprint;
                    let report = node.converge(scan).await;
                    failing = !report.failed.is_empty();
                    last = Some(fingerprint);
                    last_apply = tokio::time::Instant::now();
                    *node.apps_dir.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
                }
                drop(node);
                tokio::time::sleep(period).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn declarations_are_read_checked_and_positioned() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("token"), "s3cret\n").unwrap();
        write(
            dir.path(),
            "shop.toml",
            &format!(
                "reference = \"r.example/shop:v1\"\nhosts = [\"shop.example.com\"]\nvariables = {{ greeting = \"hi\" }}\nsecrets_dir = \"{}\"\n",
                secrets.path().display()
            ),
        );
        write(dir.path(), "typo.toml", "reference = \"x\"\nhostz = []\n");
        write(dir.path(), "Bad_Name.toml", "reference = \"x\"\n");
        write(
            dir.path(),
            "other.toml",
            "name = \"else\"\nreference = \"x\"\n",
        );
        write(
            dir.path(),
            "mem.toml",
            "reference = \"x\"\nmemory = \"1KiB\"\n",
        );
        write(dir.path(), ".hidden.toml", "garbage");
        write(dir.path(), "README", "not a declaration");
        let s = scan(dir.path());
        assert_eq!(s.declarations.len(), 1, "{s:?}");
        let d = &s.declarations[0];
        assert_eq!(d.name, "shop");
        assert_eq!(d.spec.variables["token"], "s3cret");
        assert_eq!(d.spec.variables["greeting"], "hi");
        let broken: BTreeMap<_, _> = s.broken.iter().cloned().collect();
        assert!(
            broken["typo"].contains("typo.toml:2:1"),
            "{}",
            broken["typo"]
        );
        assert!(broken["typo"].contains("hostz"), "{}", broken["typo"]);
        assert!(broken["Bad_Name"].contains("not a valid app name"));
        assert!(broken["other"].contains("differs from the file's name"));
        assert!(broken["mem"].contains("memory"));
        assert!(!format!("{s:?}").contains("garbage"));
        assert_eq!(s.names.len(), 5);
        // The fingerprint follows the secrets too.
        let before = s.fingerprint;
        std::fs::write(secrets.path().join("token"), "rotated\n").unwrap();
        assert_ne!(scan(dir.path()).fingerprint, before);
    }

    #[test]
    fn a_kubelet_swap_is_seen_whole() {
        // DIR/..data -> ..v1; DIR/a.toml -> ..data/a.toml, as kubelet lays
        // out a mounted ConfigMap.
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("..v1");
        std::fs::create_dir(&v1).unwrap();
        write(&v1, "a.toml", "reference = \"r/a:1\"\n");
        std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/a.toml", dir.path().join("a.toml")).unwrap();
        let s = scan(dir.path());
        assert_eq!(s.declarations[0].reference, "r/a:1");
        // The new set in ..v2, then the link swapped by rename.
        let v2 = dir.path().join("..v2");
        std::fs::create_dir(&v2).unwrap();
        write(&v2, "a.toml", "reference = \"r/a:2\"\n");
        write(&v2, "b.toml", "reference = \"r/b:1\"\n");
        std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        let s = scan(dir.path());
        let refs: Vec<&str> = s
            .declarations
            .iter()
            .map(|d| d.reference.as_str())
            .collect();
        assert_eq!(refs, ["r/a:2", "r/b:1"]);
    }
}
