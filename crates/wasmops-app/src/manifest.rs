//! An app host from a `wasmops.toml`: what the manifest grants each
//! component (files, environment, outbound hosts, variables, key-value
//! stores), its limits, and its routes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmops_manifest::{App, ComponentSpec, KvBackend, ResolvedVariable};
use wasmops_runtime::budget::MemoryBudget;
use wasmops_runtime::http::HttpSettings;
use wasmops_runtime::kv::{Durability, KvAccess, KvStore};
use wasmops_runtime::{DirGrant, Grants, Limits, OutboundRule, Runtime};

use crate::{AppHost, HostError, Observe, RouteSpec, Served, Source};

/// How a manifest's app is hosted.
#[derive(Clone)]
pub struct ManifestOptions {
    /// The app's name in metrics, logs and Redis keys, instead of the
    /// manifest's (a node may run one app under several names).
    pub name: Option<String>,
    /// Where embedded key-value stores live instead of the app's own
    /// `.wasmops` directory (an app pulled or deployed keeps its state
    /// outside its unpacked files).
    pub state_dir: Option<PathBuf>,
    /// Open the key-value stores; `false` when only checking the app.
    pub open_stores: bool,
    /// Requests that may wait for an instance, per component.
    pub max_queue: usize,
    pub max_body: u64,
    pub body_timeout: Duration,
    pub debug_errors: bool,
    pub budget: Option<Arc<MemoryBudget>>,
    /// The component files are never changed in place (a node's unpacked
    /// bundles): loaded as [`Source::Stored`].
    pub stored_sources: bool,
}

/// The memory limits and total concurrency of an app's components, for
/// sizing the engine's pool: `(largest, smallest, sum of concurrency)`.
pub fn sizing(app: &App) -> (u64, u64, usize) {
    let largest = app
        .components
        .iter()
        .map(|c| c.limits.memory_or_default())
        .max()
        .unwrap_or(wasmops_manifest::DEFAULT_MEMORY);
    let smallest = app
        .components
        .iter()
        .map(|c| c.limits.memory_or_default())
        .min()
        .unwrap_or(largest)
        .max(1);
    let total = app
        .components
        .iter()
        .map(|c| c.limits.concurrency_or_default())
        .sum();
    (largest, smallest, total)
}

/// Builds the host of `app` with its variables resolved (`vars`).
pub async fn from_manifest(
    rt: &Arc<Runtime>,
    app: &App,
    vars: &[ResolvedVariable],
    options: &ManifestOptions,
    observe: Observe,
) -> Result<AppHost, HostError> {
    let name = options.name.as_deref().unwrap_or(&app.name);
    let (stores, databases) = if options.open_stores {
        (
            open_stores(app, name, options.state_dir.as_deref()).await?,
            open_databases(app, options.state_dir.as_deref())?,
        )
    } else {
        (HashMap::new(), HashMap::new())
    };
    let mut served = Vec::new();
    // The app as the composing closures keep it (one copy for all).
    let mut composing: Option<Arc<App>> = None;
    for c in app.components.iter().filter(|c| !app.is_library(&c.id)) {
        let mut grants = component_grants(app, c, vars)?;
        for (n, dir) in grants.dirs.iter_mut().enumerate() {
            if c.files[n].is_filtered() {
                dir.host = mount_source(app, c, n).map_err(HostError::Config)?;
            }
        }
        grants.key_value = KvAccess::new(
            c.key_value_stores
                .iter()
                .filter_map(|l| stores.get(l).cloned()),
        );
        grants.sqlite = wasmops_runtime::sqlite::SqliteAccess::new(
            c.sqlite_databases
                .iter()
                .filter_map(|l| databases.get(l).cloned()),
        );
        let source = if !c.dependencies.is_empty() {
            // Composed when loaded, so again on every reload.
            let app = composing
                .get_or_insert_with(|| Arc::new(app.clone()))
                .clone();
            let spec = c.clone();
            Source::Made {
                name: c.source.clone(),
                make: Arc::new(move || component_bytes(&app, &spec)),
            }
        } else if options.stored_sources {
            Source::Stored(c.source.clone())
        } else {
            Source::File(c.source.clone())
        };
        served.push(Served {
            id: c.id.clone(),
            source,
            routes: c
                .routes
                .iter()
                .map(|r| RouteSpec {
                    host: r.host.clone(),
                    path: r.path.clone(),
                    prefix: r.prefix,
                    label: r.to_string(),
                })
                .collect(),
            grants,
            settings: HttpSettings {
                limits: Limits {
                    max_memory: c.limits.memory_or_default(),
                    timeout: Some(c.limits.timeout_or_default()),
                    ..Limits::default()
                },
                max_concurrency: c.limits.concurrency_or_default(),
                max_queue: options.max_queue,
                max_body: options.max_body,
                body_timeout: options.body_timeout,
                body_buffer: wasmops_runtime::http::DEFAULT_BODY_BUFFER,
                memory_budget: options.budget.clone(),
                debug_errors: options.debug_errors,
                name: Arc::from(c.id.as_str()),
                app: Arc::from(name),
                instance_reuse: c.instance_reuse.map(|r| r.requests),
            },
        });
    }
    AppHost::new(rt, name, served, observe).map_err(|e| match e {
        // Found at load, reported where the manifest asks for it.
        HostError::NotReusable { id, message } => {
            let at = app.component(&id).and_then(|c| c.instance_reuse);
            HostError::Config(
                wasmops_manifest::ManifestError {
                    path: app.manifest_path.display().to_string(),
                    line: at.map_or(0, |r| r.line),
                    col: at.map_or(0, |r| r.col),
                    message: format!("component `{id}`: {message}"),
                    hint: Some(
                        "remove `instance_reuse`: it applies to WASIp2 handlers (`wasi:http/incoming-handler@0.2`)".into(),
                    ),
                }
                .to_string(),
            )
        }
        e => e,
    })
}

/// Replaces `{{ name }}` with the variable's value; also says whether a
/// secret went in.
pub fn expand(template: &str, vars: &[ResolvedVariable]) -> Result<(String, bool), String> {
    let mut out = String::new();
    let mut secret = false;
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` in `{template}`"))?;
        let name = after[..end].trim();
        let var = vars
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| format!("`{template}` uses variable `{name}`, which has no value; declare it in [variables] and give it a value"))?;
        secret |= var.secret;
        out.push_str(&var.value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok((out, secret))
}

/// What the manifest grants one component (key-value stores aside).
pub fn component_grants(
    app: &App,
    c: &ComponentSpec,
    vars: &[ResolvedVariable],
) -> Result<Grants, HostError> {
    let at = |e: String| {
        HostError::Config(format!(
            "{}: component `{}`: {e}",
            app.manifest_path.display(),
            c.id
        ))
    };
    let mut outbound = Vec::new();
    for h in &c.allowed_outbound_hosts {
        let (spec, secret) = expand(h, vars).map_err(at)?;
        let rule = OutboundRule::parse(&spec).map_err(|e| {
            at(if secret {
                format!("allowed outbound host `{h}` (from a secret variable) is invalid")
            } else {
                e
            })
        })?;
        outbound.push(rule);
    }
    // A value whose app variables have no value is left out, as an unset
    // optional variable is.
    let config =
        wasmops_runtime::grants::ConfigVars::new(c.config.iter().filter_map(|(name, template)| {
            expand(template, vars)
                .ok()
                .map(|(value, _)| (name.clone(), value))
        }));
    Ok(Grants {
        // Mounts with patterns are staged when the app is hosted
        // (`from_manifest`), not each time grants are checked.
        dirs: c
            .files
            .iter()
            .map(|f| DirGrant {
                host: f.source.clone(),
                guest: f.destination.clone(),
                read_only: true,
            })
            .collect(),
        env: c.environment.clone(),
        outbound_http: outbound,
        config,
        ..Grants::default()
    })
}

/// Opens every store of the app. Stores are the app's own: embedded ones
/// live in its state directory, Redis keys carry the app's `name`.
pub async fn open_stores(
    app: &App,
    name: &str,
    state_dir: Option<&Path>,
) -> Result<HashMap<String, KvStore>, HostError> {
    let mut stores = HashMap::new();
    for s in &app.key_value {
        let store = match &s.backend {
            KvBackend::Embedded { path, durability } => {
                let default = app.state_dir().join("kv").join(format!("{}.db", s.label));
                let path = match state_dir {
                    Some(d) if *path == default => d.join("kv").join(format!("{}.db", s.label)),
                    _ => path.clone(),
                };
                let durability = match durability {
                    wasmops_manifest::Durability::Process => Durability::Process,
                    wasmops_manifest::Durability::Fsync => Durability::Fsync,
                };
                KvStore::open_embedded(&s.label, &path, durability)
            }
            KvBackend::Redis { url } => {
                KvStore::open_redis(&s.label, url, format!("{name}:{}:", s.label)).await
            }
        }
        .map_err(|e| HostError::Config(format!("{e:#}")))?;
        stores.insert(s.label.clone(), store);
    }
    Ok(stores)
}

/// The directory mounted for `c`'s `n`th file mount: its source, or, when
/// only some of its files are mounted (Spin's patterns and
/// `exclude_files`), a copy of those files made afresh under the app's
/// state directory (`.wasmops/files/ID/N`). Only regular files are copied;
/// symbolic links are never followed, so nothing outside the source is
/// reached.
pub fn mount_source(
    app: &App,
    c: &wasmops_manifest::ComponentSpec,
    n: usize,
) -> Result<std::path::PathBuf, String> {
    let f = &c.files[n];
    if !f.is_filtered() {
        return Ok(f.source.clone());
    }
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let compile = |p: &str| {
        glob::Pattern::new(p).map_err(|e| format!("component `{}`: file pattern `{p}`: {e}", c.id))
    };
    let include = f
        .include
        .iter()
        .map(|p| compile(p))
        .collect::<Result<Vec<_>, _>>()?;
    let exclude = f
        .exclude
        .iter()
        .map(|p| compile(p))
        .collect::<Result<Vec<_>, _>>()?;
    let parent = app.state_dir().join("files").join(&c.id);
    let fail = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        format!("component `{}`: cannot {what} {}: {e}", c.id, p.display())
    };
    // Excluded directories are not descended into (`**/node_modules`).
    let excluded = |p: &Path| {
        p.strip_prefix(&app.dir)
            .is_ok_and(|rel| exclude.iter().any(|x| x.matches_path_with(rel, opts)))
    };
    let walk = walkdir::WalkDir::new(&f.source)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !excluded(e.path()));
    // The chosen files, and a fingerprint of them (path, size, time).
    let mut chosen = Vec::new();
    let mut print = blake3::Hasher::new();
    for entry in walk {
        let entry = entry.map_err(|e| fail("read", &f.source, &e))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(&f.source) else {
            continue;
        };
        if !include.is_empty() && !include.iter().any(|p| p.matches_path_with(rel, opts)) {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| fail("read", entry.path(), &e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        print.update(rel.as_os_str().as_encoded_bytes());
        print.update(&[0]);
        print.update(&meta.len().to_le_bytes());
        print.update(&modified.to_le_bytes());
        chosen.push((entry.path().to_path_buf(), rel.to_path_buf()));
    }
    // One directory per selection, made whole then renamed into place and
    // never changed after: another process serving the app keeps its own.
    let hex = print.finalize().to_hex();
    let name = format!("{n}-{}", &hex[..16]);
    let staged = parent.join(&name);
    if !staged.is_dir() {
        let tmp = parent.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| fail("create", &tmp, &e))?;
        for (from, rel) in &chosen {
            let to = tmp.join(rel);
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(|e| fail("create", dir, &e))?;
            }
            if std::fs::hard_link(from, &to).is_err() {
                std::fs::copy(from, &to).map_err(|e| fail("copy", from, &e))?;
            }
        }
        if std::fs::rename(&tmp, &staged).is_err() {
            // Another process made the same selection first.
            let _ = std::fs::remove_dir_all(&tmp);
            if !staged.is_dir() {
                return Err(fail("create", &staged, &"rename failed"));
            }
        }
    }
    // Earlier selections of this mount are stale.
    if let Ok(rd) = std::fs::read_dir(&parent) {
        for e in rd.flatten() {
            let file_name = e.file_name();
            let other = file_name.to_string_lossy();
            if other != name
                && other
                    .split_once('-')
                    .is_some_and(|(k, _)| k == n.to_string())
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(staged)
}

/// The bytes of component `c` as it runs: its file, composed with its
/// dependencies when it has any (a dependency that is another component of
/// the app is that component as it runs, so dependencies compose in turn).
pub fn component_bytes(app: &App, c: &wasmops_manifest::ComponentSpec) -> Result<Vec<u8>, String> {
    component_bytes_at(app, c, 0)
}

fn component_bytes_at(
    app: &App,
    c: &wasmops_manifest::ComponentSpec,
    depth: usize,
) -> Result<Vec<u8>, String> {
    use wasmops_manifest::DependencySource;
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| {
            format!(
                "{what}: cannot read {}: {e}; build it first (`wasmops build`)",
                p.display()
            )
        })
    };
    let main = read(&c.source, &format!("component `{}`", c.id))?;
    if c.dependencies.is_empty() {
        return Ok(main);
    }
    if depth > 8 {
        return Err(format!(
            "component `{}`: dependencies nest more than 8 deep (a cycle?); break the cycle in `[component.{}.dependencies]`",
            c.id, c.id
        ));
    }
    let mut deps = Vec::new();
    for d in &c.dependencies {
        let (origin, bytes) = match &d.source {
            DependencySource::Path(p) => (
                p.display().to_string(),
                read(
                    p,
                    &format!("component `{}`: dependency `{}`", c.id, d.import),
                )?,
            ),
            DependencySource::Reference(r) => {
                return Err(format!(
                    "component `{}`: dependency `{}` is the registry reference `{r}`, which this command does not pull; run `wasmops up`, `check`, `scan`, `compose`, `test` or `push`, which do",
                    c.id, d.import
                ));
            }
            DependencySource::Component(other) => {
                let spec = app
                    .component(other)
                    .ok_or_else(|| format!("component `{}`: no component `{other}`", c.id))?;
                (
                    format!("component `{other}`"),
                    component_bytes_at(app, spec, depth + 1)?,
                )
            }
        };
        deps.push(wasmops_component::compose::Dependency {
            import: d.import.clone(),
            origin,
            bytes,
            export: d.export.clone(),
            inherit_configuration: c.dependencies_inherit_configuration,
        });
    }
    wasmops_component::compose::compose(&format!("component `{}`", c.id), &main, &deps)
        .map_err(|e| e.to_string())
}

/// Opens every SQLite database of the app; like embedded stores, those in
/// their default place live in the state directory when one is given.
pub fn open_databases(
    app: &App,
    state_dir: Option<&Path>,
) -> Result<HashMap<String, wasmops_runtime::sqlite::SqliteDb>, HostError> {
    let mut out = HashMap::new();
    for d in &app.sqlite {
        let default = app
            .state_dir()
            .join("sqlite")
            .join(format!("{}.db", d.label));
        let path = match state_dir {
            Some(s) if d.path == default => s.join("sqlite").join(format!("{}.db", d.label)),
            _ => d.path.clone(),
        };
        let db = wasmops_runtime::sqlite::SqliteDb::open(&d.label, &path)
            .map_err(|e| HostError::Config(format!("{e:#}")))?;
        out.insert(d.label.clone(), db);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_templates() {
        let vars = vec![
            ResolvedVariable {
                name: "up".into(),
                value: "http://127.0.0.1:8080".into(),
                secret: false,
            },
            ResolvedVariable {
                name: "key".into(),
                value: "s3cret".into(),
                secret: true,
            },
        ];
        assert_eq!(
            expand("{{ up }}", &vars).unwrap(),
            ("http://127.0.0.1:8080".into(), false)
        );
        assert_eq!(
            expand("https://{{key}}.example.com", &vars).unwrap(),
            ("https://s3cret.example.com".into(), true)
        );
        assert!(expand("{{ nope }}", &vars).unwrap_err().contains("nope"));
        assert!(expand("{{ up", &vars).is_err());
    }
}
