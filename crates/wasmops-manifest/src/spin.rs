//! Spin's manifest (`spin.toml`, `spin_manifest_version = 2`), read into
//! the same raw form as a wasmops manifest so that one validator checks
//! both, with positions in the `spin.toml` the user wrote.
//!
//! What maps: `[application]` (name, version, description), `[variables]`,
//! `[[trigger.http]]` routes (private ones are not served), and per
//! component `source` (a path), `files` (directories, `DIR/**/*`, file
//! patterns such as `static/*.html`, `{ source, destination }` tables),
//! `exclude_files`, `allowed_outbound_hosts`,
//! `key_value_stores` (embedded stores unless the manifest is given their
//! backends), `sqlite_databases` (embedded databases, likewise),
//! `environment`, `variables` (templates of app variables), `build`
//! (`command`, `workdir`) and `dependencies` (local files and other
//! components, composed). What does not (other triggers, URL or registry
//! sources, `ai_models`) is an error at its position
//! saying so.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::error::{ManifestError, Source, did_you_mean, quote};
use crate::raw::{
    Entries, FileEntry, RawApp, RawBuild, RawComponent, RawFileTable, RawKvStore, RawManifest,
    RawVariable, RouteEntry, RouteField, StringOrList,
};

/// The file name Spin uses.
pub const SPIN_FILE_NAME: &str = "spin.toml";

#[derive(Debug, Deserialize)]
pub(crate) struct SpinProbe {
    #[serde(default)]
    pub spin_manifest_version: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpin {
    #[allow(dead_code)] // checked before, from a `SpinProbe`
    spin_manifest_version: Option<Spanned<toml::Value>>,
    application: Option<Spanned<SpinApplication>>,
    #[serde(default)]
    variables: Option<Entries<RawVariable>>,
    #[serde(default)]
    trigger: Option<Entries<toml::Value>>,
    #[serde(default)]
    component: Option<Entries<SpinComponent>>,
}

/// The HTTP triggers, read on their own once every trigger is known to be
/// one.
#[derive(Debug, Deserialize)]
struct TriggerProbe {
    #[serde(default)]
    trigger: Option<HttpTriggers>,
}

#[derive(Debug, Deserialize)]
struct HttpTriggers {
    #[serde(default)]
    http: Option<Vec<Spanned<HttpTrigger>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinApplication {
    name: Option<Spanned<String>>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // informational
    authors: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)] // Spin's environment targets: nothing to check here
    targets: Option<toml::Value>,
    #[serde(default)]
    trigger: Option<BTreeMap<String, Spanned<toml::Table>>>,
    #[serde(default)]
    #[allow(dead_code)] // settings of other tools, ignored as Spin does
    tool: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTrigger {
    route: Option<Spanned<toml::Value>>,
    component: Option<Spanned<toml::Value>>,
    #[serde(default)]
    executor: Option<Spanned<toml::Value>>,
    #[serde(default)]
    #[allow(dead_code)] // the trigger's id, unused
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinComponent {
    source: Option<Spanned<toml::Value>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    files: Option<Vec<Spanned<toml::Value>>>,
    #[serde(default)]
    exclude_files: Option<Spanned<toml::Value>>,
    #[serde(default)]
    allowed_outbound_hosts: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    allowed_http_hosts: Option<Spanned<toml::Value>>,
    #[serde(default)]
    key_value_stores: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    sqlite_databases: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    ai_models: Option<Spanned<toml::Value>>,
    #[serde(default)]
    environment: Option<Entries<String>>,
    #[serde(default)]
    variables: Option<Entries<String>>,
    #[serde(default)]
    build: Option<Spanned<SpinBuild>>,
    #[serde(default)]
    dependencies: Option<Entries<crate::raw::RawDependency>>,
    #[serde(default)]
    dependencies_inherit_configuration: Option<Spanned<bool>>,
    #[serde(default)]
    #[allow(dead_code)] // settings of other tools, ignored as Spin does
    tool: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinBuild {
    command: Option<Spanned<StringOrList>>,
    #[serde(default)]
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    watch: Option<Spanned<Vec<String>>>,
}

/// Whether `text` is a Spin manifest (it has `spin_manifest_version`).
pub(crate) fn is_spin(text: &str) -> bool {
    toml::from_str::<SpinProbe>(text).is_ok_and(|p| p.spin_manifest_version.is_some())
}

fn unsupported(src: &Source<'_>, span: Range<usize>, what: &str, hint: &str) -> ManifestError {
    src.error(span, format!("{what} is not supported by wasmops"), hint)
}

/// Reads a Spin manifest into the raw form of a wasmops manifest.
pub(crate) fn to_raw(src: &Source<'_>) -> Result<RawManifest, ManifestError> {
    let probe: SpinProbe =
        toml::from_str(src.text).map_err(|e| crate::error::from_toml(src, &e))?;
    let version = probe.spin_manifest_version.ok_or_else(|| {
        src.error(
            0..0,
            "missing `spin_manifest_version`",
            "add `spin_manifest_version = 2`",
        )
    })?;
    match version.get_ref() {
        toml::Value::Integer(2) => {}
        other => {
            return Err(src.error(
                version.span(),
                format!("unsupported spin_manifest_version {other}"),
                "wasmops reads Spin manifests of version 2 (`spin_manifest_version = 2`); `spin doctor` upgrades older ones",
            ));
        }
    }
    let raw: RawSpin = toml::from_str(src.text).map_err(|e| crate::error::from_toml(src, &e))?;

    let Some(application) = raw.application else {
        return Err(src.error(
            0..0,
            "missing table `[application]`",
            "add `[application]` with `name = \"my-app\"`",
        ));
    };
    let app_span = application.span();
    let application = application.into_inner();
    // `[application.trigger.http] base`: a path every route is under.
    let mut base = String::new();
    for (kind, table) in application.trigger.unwrap_or_default() {
        match kind.as_str() {
            "http" => {
                if let Some(b) = table.get_ref().get("base") {
                    let ok = b
                        .as_str()
                        .filter(|b| b.starts_with('/') && !b.contains(['*', '?', '#', ':']));
                    let Some(b) = ok else {
                        return Err(src.error(
                            table.span(),
                            format!("invalid `base = {b}` in [application.trigger.http]"),
                            "a path such as `base = \"/api\"`, under which every route is served",
                        ));
                    };
                    base = b.trim_end_matches('/').to_string();
                }
            }
            _ => {
                return Err(unsupported(
                    src,
                    table.span(),
                    &format!("the `{kind}` trigger"),
                    "wasmops serves HTTP triggers (`[[trigger.http]]`)",
                ));
            }
        }
    }
    // Spin allows names wasmops' do not: lowercase, `_` as `-`.
    let name = application.name.map(|n| {
        let span = n.span();
        Spanned::new(span, n.into_inner().to_ascii_lowercase().replace('_', "-"))
    });
    let app = Spanned::new(
        app_span,
        RawApp {
            name,
            version: application.version,
            description: application.description,
            memory_budget: None,
        },
    );

    // Routes by component, from the HTTP triggers.
    let components = raw.component.map(|e| e.0).unwrap_or_default();
    let ids: Vec<&str> = components
        .iter()
        .map(|(k, _)| k.get_ref().as_str())
        .collect();
    let mut routes: BTreeMap<String, Vec<Spanned<RouteEntry>>> = BTreeMap::new();
    for (kind, _) in raw.trigger.map(|e| e.0).unwrap_or_default() {
        if kind.get_ref() != "http" {
            return Err(unsupported(
                src,
                kind.span(),
                &format!("the `{}` trigger", kind.get_ref()),
                "wasmops serves HTTP triggers (`[[trigger.http]]`)",
            ));
        }
    }
    let probe: TriggerProbe =
        toml::from_str(src.text).map_err(|e| crate::error::from_toml(src, &e))?;
    for t in probe.trigger.and_then(|t| t.http).unwrap_or_default() {
        let t_span = t.span();
        let t = t.into_inner();
        if let Some(ex) = &t.executor {
            let kind = ex.get_ref().get("type").and_then(|v| v.as_str());
            if kind != Some("spin") {
                return Err(unsupported(
                    src,
                    ex.span(),
                    &format!("executor {}", ex.get_ref()),
                    "remove `executor`: wasmops runs WASI HTTP components (Spin's default executor)",
                ));
            }
        }
        let Some(component) = t.component else {
            return Err(src.error(
                t_span,
                "an HTTP trigger has no `component`",
                "add `component = \"ID\"` naming a [component.ID]",
            ));
        };
        let c_span = component.span();
        let Some(id) = component.get_ref().as_str() else {
            return Err(unsupported(
                src,
                c_span,
                "a component written inside its trigger",
                "declare it as [component.ID] and write `component = \"ID\"`",
            ));
        };
        if !ids.contains(&id) {
            let hint = match did_you_mean(id, &ids) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("declare [component.{id}]"),
            };
            return Err(src.error(
                c_span,
                format!(
                    "the trigger names component {}, which is not declared",
                    quote(id)
                ),
                hint,
            ));
        }
        let Some(route) = t.route else {
            return Err(src.error(
                t_span,
                "an HTTP trigger has no `route`",
                "add `route = \"/...\"`, or `route = { private = true }` for a component only other components call",
            ));
        };
        let r_span = route.span();
        match route.into_inner() {
            toml::Value::String(path) => {
                let path = match (base.as_str(), path.as_str()) {
                    ("", _) => path,
                    (b, "/") => b.to_string(),
                    (b, p) => format!("{b}{p}"),
                };
                routes
                    .entry(id.to_string())
                    .or_default()
                    .push(Spanned::new(r_span, RouteEntry::Path(path)))
            }
            toml::Value::Table(t) if t.get("private").and_then(|p| p.as_bool()) == Some(true) => {
                // Private: reachable by other components only, not served.
                routes.entry(id.to_string()).or_default();
            }
            _ => {
                return Err(src.error(
                    r_span,
                    "`route` must be a path or `{ private = true }`",
                    "e.g. `route = \"/api/...\"`",
                ));
            }
        }
    }

    let mut stores: Vec<(Spanned<String>, Spanned<RawKvStore>)> = Vec::new();
    let mut out = Vec::new();
    for (key, c) in components {
        let c_span = c.span();
        let c = c.into_inner();
        for (field, value, hint) in [
            ("`ai_models`", &c.ai_models, "remove it"),
            (
                "`allowed_http_hosts`",
                &c.allowed_http_hosts,
                "use `allowed_outbound_hosts = [\"https://example.com\"]`",
            ),
        ] {
            if let Some(v) = value {
                return Err(unsupported(src, v.span(), field, hint));
            }
        }
        let source = match c.source {
            None => None,
            Some(s) => match s.get_ref() {
                toml::Value::String(p) => Some(Spanned::new(s.span(), p.clone())),
                _ => {
                    return Err(unsupported(
                        src,
                        s.span(),
                        "a `source` from a URL or a registry",
                        "download the component and give its path: `source = \"app.wasm\"`",
                    ));
                }
            },
        };
        let mut files = Vec::new();
        let mut includes = Vec::new();
        for f in c.files.unwrap_or_default() {
            let (entry, include) = file(src, f)?;
            files.push(entry);
            includes.push(include);
        }
        let mut exclude = Vec::new();
        if let Some(list) = &c.exclude_files {
            let bad = || {
                src.error(
                    list.span(),
                    "`exclude_files` must be a list of patterns",
                    "e.g. `exclude_files = [\"**/node_modules\"]`",
                )
            };
            for v in list.get_ref().as_array().ok_or_else(bad)? {
                let p = v.as_str().ok_or_else(bad)?;
                if glob::Pattern::new(p).is_err() {
                    return Err(src.error(
                        list.span(),
                        format!("invalid pattern {} in `exclude_files`", quote(p)),
                        "e.g. `\"**/node_modules\"` or `\"static/*.map\"`",
                    ));
                }
                exclude.push(p.to_string());
            }
        }
        let build = match c.build {
            None => None,
            Some(b) => {
                let span = b.span();
                let b = b.into_inner();
                Some(Spanned::new(
                    span.clone(),
                    RawBuild {
                        language: Some(Spanned::new(span, "command".to_string())),
                        dir: b.workdir,
                        entry: None,
                        world: None,
                        wit: None,
                        sources: None,
                        args: None,
                        command: b.command,
                        watch: b.watch,
                    },
                ))
            }
        };
        // Every store a component names is the app's, embedded.
        for label in c.key_value_stores.iter().flatten() {
            if label.get_ref() != "default"
                && !stores.iter().any(|(k, _)| k.get_ref() == label.get_ref())
            {
                stores.push((
                    label.clone(),
                    Spanned::new(
                        label.span(),
                        RawKvStore {
                            backend: None,
                            path: None,
                            durability: None,
                            url: None,
                        },
                    ),
                ));
            }
        }
        let route = routes
            .remove(key.get_ref())
            .filter(|r| !r.is_empty())
            .map(|r| {
                let span = r[0].span();
                Spanned::new(span, RouteField::Many(r))
            });
        out.push((
            key,
            Spanned::new(
                c_span,
                RawComponent {
                    source,
                    description: c.description,
                    route,
                    allowed_outbound_hosts: c.allowed_outbound_hosts,
                    key_value_stores: c.key_value_stores,
                    sqlite_databases: c.sqlite_databases,
                    variables: None,
                    files: Some(files),
                    environment: c.environment,
                    instance_reuse: None,
                    limits: None,
                    spin_variables: c.variables.map(|e| e.0.into_iter().collect()),
                    spin_includes: includes,
                    spin_exclude: exclude,
                    build,
                    dependencies: c.dependencies,
                    dependencies_inherit_configuration: c.dependencies_inherit_configuration,
                },
            ),
        ));
    }

    Ok(RawManifest {
        manifest_version: None,
        app: Some(app),
        variables: raw.variables,
        key_value: Some(Entries(stores)),
        component: Some(Entries(out)),
        environments: None,
        test: None,
    })
}

/// One of Spin's `files` entries as a directory mount.
fn file(
    src: &Source<'_>,
    f: Spanned<toml::Value>,
) -> Result<(Spanned<FileEntry>, Option<String>), ManifestError> {
    let span = f.span();
    match f.into_inner() {
        toml::Value::String(p) => {
            // `DIR/**/*` and `DIR/**` are the whole directory.
            let whole = p
                .strip_suffix("/**/*")
                .or_else(|| p.strip_suffix("/**"))
                .unwrap_or(&p)
                .trim_end_matches('/');
            if !whole.contains(['*', '?', '[']) && !whole.is_empty() {
                return Ok((Spanned::new(span, FileEntry::Path(whole.to_string())), None));
            }
            // A pattern: the directory before its first wildcard is
            // mounted at the same path, with only the files it matches.
            if p.contains('{') || p.starts_with('/') || p.split('/').any(|s| s == "..") {
                return Err(unsupported(
                    src,
                    span,
                    &format!("the file pattern {}", quote(&p)),
                    "use `*`, `?`, `[...]` and `**` in a path relative to the app directory, e.g. `\"static/*.html\"`",
                ));
            }
            let segments: Vec<&str> = p.split('/').collect();
            let literal = segments
                .iter()
                .take_while(|s| !s.contains(['*', '?', '[']))
                .count();
            let dir = segments[..literal].join("/");
            let pattern = segments[literal..].join("/");
            let dir = if dir.is_empty() { ".".to_string() } else { dir };
            if glob::Pattern::new(&pattern).is_err() {
                return Err(src.error(
                    span,
                    format!("invalid file pattern {}", quote(&p)),
                    "e.g. `\"static/*.html\"` or `\"assets/**/*.png\"`",
                ));
            }
            Ok((Spanned::new(span, FileEntry::Path(dir)), Some(pattern)))
        }
        toml::Value::Table(t) => {
            let get = |k: &str| {
                t.get(k)
                    .and_then(|v| v.as_str())
                    .map(|s| Spanned::new(span.clone(), s.to_string()))
            };
            if let Some(k) = t.keys().find(|k| *k != "source" && *k != "destination") {
                return Err(src.error(
                    span,
                    format!("unknown key {} in a `files` table", quote(k)),
                    "a `files` table has `source` and `destination`",
                ));
            }
            Ok((
                Spanned::new(
                    span.clone(),
                    FileEntry::Table(RawFileTable {
                        source: get("source"),
                        destination: get("destination"),
                    }),
                ),
                None,
            ))
        }
        _ => Err(src.error(
            span,
            "a `files` entry must be a path or `{ source, destination }`",
            "e.g. `files = [\"static/**/*\"]`",
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeConfig {
    #[serde(default)]
    key_value_store: Option<Entries<RuntimeKvStore>>,
    #[serde(default)]
    sqlite_database: Option<Entries<RuntimeSqlite>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeSqlite {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    path: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeKvStore {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
}

/// Applies a Spin runtime-config file (`--runtime-config-file`) to `app`:
/// each `[key_value_store.LABEL]` (`type = "spin"` with an optional `path`,
/// relative to the file, or `type = "redis"` with `url`) becomes the backend
/// of that store; each `[sqlite_database.LABEL]` (`type = "spin"` with an
/// optional `path`) says where that database lives. Other sections
/// (variable providers, LLM) are refused at their position.
pub fn apply_runtime_config(
    app: &mut crate::App,
    path: &std::path::Path,
) -> Result<(), ManifestError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ManifestError::without_position(
            display.clone(),
            format!("cannot read the runtime configuration: {e}"),
            None,
        )
    })?;
    let src = Source {
        text: &text,
        display: &display,
    };
    let raw: RuntimeConfig =
        toml::from_str(&text).map_err(|e| crate::error::from_toml(&src, &e))?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    for (label, store) in raw.key_value_store.map(|e| e.0).unwrap_or_default() {
        let span = store.span();
        let store = store.into_inner();
        let Some(kind) = store.kind else {
            return Err(src.error(
                span,
                format!("store `{}` has no `type`", label.get_ref()),
                "add `type = \"spin\"` (an embedded store) or `type = \"redis\"` with `url`",
            ));
        };
        let backend = match kind.get_ref().as_str() {
            "spin" => crate::KvBackend::Embedded {
                path: match &store.path {
                    Some(p) => base.join(p.get_ref()),
                    None => crate::validate::default_store_path(&app.dir, label.get_ref()),
                },
                durability: crate::Durability::Process,
            },
            "redis" => match store.url {
                Some(u) => crate::KvBackend::Redis {
                    url: u.into_inner(),
                },
                None => {
                    return Err(src.error(
                        span,
                        format!("redis store `{}` has no `url`", label.get_ref()),
                        "add `url = \"redis://127.0.0.1:6379\"`",
                    ));
                }
            },
            other => {
                return Err(unsupported(
                    &src,
                    kind.span(),
                    &format!("the key-value store type {}", quote(other)),
                    "use `type = \"spin\"` (embedded) or `type = \"redis\"`",
                ));
            }
        };
        match app
            .key_value
            .iter_mut()
            .find(|s| &s.label == label.get_ref())
        {
            Some(s) => s.backend = backend,
            None => app.key_value.push(crate::KvStore {
                label: label.into_inner(),
                backend,
            }),
        }
    }
    for (label, db) in raw.sqlite_database.map(|e| e.0).unwrap_or_default() {
        let span = db.span();
        let db = db.into_inner();
        match db.kind.as_ref().map(|k| k.get_ref().as_str()) {
            Some("spin") => {}
            None => {
                return Err(src.error(
                    span,
                    format!("database `{}` has no `type`", label.get_ref()),
                    "add `type = \"spin\"` (an embedded database) with an optional `path`",
                ));
            }
            Some(other) => {
                let kind = db.kind.as_ref().map(|k| k.span()).unwrap_or(span);
                return Err(unsupported(
                    &src,
                    kind,
                    &format!("the SQLite database type {}", quote(other)),
                    "use `type = \"spin\"` (an embedded database file)",
                ));
            }
        }
        let path = match &db.path {
            Some(p) => base.join(p.get_ref()),
            None => crate::validate::default_sqlite_path(&app.dir, label.get_ref()),
        };
        match app.sqlite.iter_mut().find(|d| &d.label == label.get_ref()) {
            Some(d) => d.path = path,
            None => app.sqlite.push(crate::SqliteDatabase {
                label: label.into_inner(),
                path,
            }),
        }
    }
    Ok(())
}
