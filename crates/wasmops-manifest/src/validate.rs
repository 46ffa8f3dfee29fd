//! From the raw manifest to an [`App`]: every check after parsing, each
//! reported at the position of the value it is about.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde_spanned::Spanned;

use crate::error::{self, ManifestError, Source, did_you_mean, quote};
use crate::raw::{
    FileEntry, RawBackend, RawBuild, RawComponent, RawDependency, RawDurability, RawEnvironment,
    RawKvStore, RawLimits, RawManifest, RawTest, RawVariable, RouteEntry, RouteField, Scalar,
    VersionProbe,
};
use crate::routes::{parse_route_host, parse_route_path};
use crate::units::{DURATION_UNITS, SIZE_UNITS, parse_duration, parse_size};
use crate::{
    App, BuildSpec, Checks, ComponentLimits, ComponentSpec, Dependency, DependencySource,
    Durability, Environment, Expect, FileMount, InstanceReuse, KubeSettings, KvBackend, KvStore,
    Language, ResolvedVariable, Route, SmokeTest, SqliteDatabase, Variable, dotenv,
    variable_env_name,
};

const OUTBOUND_HINT: &str = "use SCHEME://HOST[:PORT], e.g. https://api.example.com";

pub(crate) fn parse(
    text: &str,
    display: &str,
    dir: &Path,
    manifest_path: &Path,
    checks: &Checks,
) -> Result<App, ManifestError> {
    let src = Source { text, display };

    // A Spin manifest is read into the same form and checked the same way.
    if crate::spin::is_spin(text) {
        let raw = crate::spin::to_raw(&src)?;
        let mut v = Validator {
            src: &src,
            dir,
            checks,
        };
        return v.manifest(raw, manifest_path);
    }

    // The version first: a manifest for another version of the format may
    // well have keys this one does not know.
    let probe: VersionProbe = toml::from_str(text).map_err(|e| error::from_toml(&src, &e))?;
    check_version(&src, probe.manifest_version)?;

    let raw: RawManifest = toml::from_str(text).map_err(|e| error::from_toml(&src, &e))?;
    let mut v = Validator {
        src: &src,
        dir,
        checks,
    };
    v.manifest(raw, manifest_path)
}

fn check_version(
    src: &Source<'_>,
    version: Option<Spanned<toml::Value>>,
) -> Result<(), ManifestError> {
    let Some(version) = version else {
        return Err(src.error(
            0..0,
            "missing `manifest_version`",
            "add `manifest_version = 1` as the first line",
        ));
    };
    match version.get_ref() {
        toml::Value::Integer(1) => Ok(()),
        toml::Value::Integer(n) => Err(src.error(
            version.span(),
            format!("unsupported manifest_version {n}"),
            "this version of wasmops reads `manifest_version = 1`",
        )),
        _ => Err(src.error(
            version.span(),
            "manifest_version must be the integer 1",
            "write `manifest_version = 1` (a number, not a string)",
        )),
    }
}

struct Validator<'a> {
    src: &'a Source<'a>,
    dir: &'a Path,
    checks: &'a Checks<'a>,
}

/// A declared route and where: for the error on a second declaration.
struct RouteOrigin {
    component: String,
    line: usize,
    col: usize,
}

impl Validator<'_> {
    /// `path` with every link followed, if it stays inside the app
    /// directory (itself with links followed); an error at `span` otherwise.
    /// A path that does not exist yet (a build output) is resolved through
    /// its nearest existing ancestor.
    fn inside_app(
        &self,
        path: &Path,
        span: Range<usize>,
        what: &str,
        shown: &str,
    ) -> Result<PathBuf, ManifestError> {
        let root = std::fs::canonicalize(self.dir).unwrap_or_else(|_| normalize(self.dir));
        let resolved = resolve_existing(path);
        if resolved.starts_with(&root) {
            return Ok(resolved);
        }
        let through_link = path_has_link(self.dir, path);
        let message = if through_link {
            format!(
                "{what} {} leads outside of the app directory through a symbolic link (to {})",
                quote(shown),
                resolved.display()
            )
        } else {
            format!(
                "{what} {} is outside of the app directory ({})",
                quote(shown),
                resolved.display()
            )
        };
        Err(self.err(
            span,
            message,
            "an app may only use files inside its own directory: copy what it needs into it",
        ))
    }

    fn err(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ManifestError {
        self.src.error(span, message, hint)
    }

    fn manifest(&mut self, raw: RawManifest, manifest_path: &Path) -> Result<App, ManifestError> {
        let Some(app) = raw.app else {
            return Err(self.err(
                0..0,
                "missing table `[app]`",
                "add an `[app]` table with `name = \"my-app\"`",
            ));
        };
        let app_span = app.span();
        let app = app.into_inner();
        let Some(name) = app.name else {
            return Err(self.err(
                app_span,
                "`[app]` has no `name`",
                "add `name = \"my-app\"` (lowercase letters, digits and `-`)",
            ));
        };
        check_app_name(self.src, &name)?;

        let mut variables = Vec::new();
        for (key, var) in raw.variables.map(|e| e.0).unwrap_or_default() {
            variables.push(self.variable(key, var)?);
        }

        let mut stores: BTreeMap<String, KvStore> = BTreeMap::new();
        let mut store_files: HashMap<PathBuf, String> = HashMap::new();
        for (key, store) in raw.key_value.map(|e| e.0).unwrap_or_default() {
            let store = self.kv_store(key, store, &mut store_files)?;
            stores.insert(store.label.clone(), store);
        }

        let components_raw = raw.component.map(|e| e.0).unwrap_or_default();
        if components_raw.is_empty() {
            return Err(self.err(
                app_span.start..app_span.start,
                "the app has no component",
                "add one, e.g. `[component.hello]` with `source = \"hello.wasm\"` and `route = \"/...\"`",
            ));
        }
        let mut routes: HashMap<Route, RouteOrigin> = HashMap::new();
        let mut components = Vec::new();
        let ids: Vec<String> = components_raw
            .iter()
            .map(|(k, _)| k.get_ref().clone())
            .collect();
        for (key, component) in components_raw {
            let declared: Vec<&str> = stores.keys().map(String::as_str).collect();
            components.push(self.component(
                key,
                component,
                &variables,
                &declared,
                &ids,
                &mut routes,
            )?);
        }

        for component in &components {
            for label in &component.key_value_stores {
                stores.entry(label.clone()).or_insert_with(|| KvStore {
                    label: label.clone(),
                    backend: KvBackend::Embedded {
                        path: default_store_path(self.dir, label),
                        durability: Durability::Process,
                    },
                });
            }
        }

        let mut sqlite: BTreeMap<String, SqliteDatabase> = BTreeMap::new();
        for component in &components {
            for label in &component.sqlite_databases {
                sqlite
                    .entry(label.clone())
                    .or_insert_with(|| SqliteDatabase {
                        label: label.clone(),
                        path: default_sqlite_path(self.dir, label),
                    });
            }
        }

        let memory_budget = match app.memory_budget {
            None => None,
            Some(m) => Some(self.size(&m, "memory_budget")?),
        };
        let mut environments = Vec::new();
        for (key, env) in raw.environments.map(|e| e.0).unwrap_or_default() {
            environments.push(self.environment(key, env)?);
        }
        let mut tests = Vec::new();
        for t in raw.test.unwrap_or_default() {
            tests.push(self.smoke_test(t)?);
        }
        Ok(App {
            manifest_path: manifest_path.to_path_buf(),
            dir: self.dir.to_path_buf(),
            name: name.into_inner(),
            version: app.version,
            description: app.description,
            memory_budget,
            variables,
            key_value: stores.into_values().collect(),
            sqlite: sqlite.into_values().collect(),
            components,
            environments,
            tests,
        })
    }

    fn smoke_test(&self, t: Spanned<RawTest>) -> Result<SmokeTest, ManifestError> {
        let span = t.span();
        let t = t.into_inner();
        let Some(path) = t.path else {
            return Err(self.err(
                span.start..span.start,
                "a [[test]] has no `path`",
                "add the request's path, e.g. `path = \"/\"`",
            ));
        };
        if !path.get_ref().starts_with('/') || path.get_ref().contains(char::is_whitespace) {
            return Err(self.err(
                path.span(),
                format!("test path {} is not a path", quote(path.get_ref())),
                "write the path (and query) starting with `/`, e.g. `/api/items?limit=2`",
            ));
        }
        let method = match &t.method {
            None => "GET".to_string(),
            Some(m) => {
                let up = m.get_ref().to_ascii_uppercase();
                if up.is_empty() || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(self.err(
                        m.span(),
                        format!("invalid method {}", quote(m.get_ref())),
                        "e.g. `method = \"POST\"`",
                    ));
                }
                up
            }
        };
        let mut expect = Expect::default();
        if let Some(e) = t.expect {
            let e = e.into_inner();
            if let Some(st) = &e.status {
                let v = *st.get_ref();
                if !(100..=599).contains(&v) {
                    return Err(self.err(
                        st.span(),
                        format!("status {v} is not an HTTP status"),
                        "give a status between 100 and 599, e.g. `status = 200`",
                    ));
                }
                expect.status = Some(v as u16);
            }
            expect.headers = e
                .headers
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            expect.body_contains = e.body_contains;
            if let Some(json) = e.json {
                let span = json.span();
                for (pointer, value) in json.into_inner() {
                    if !(pointer.is_empty() || pointer.starts_with('/')) {
                        return Err(self.err(
                            span.clone(),
                            format!("JSON pointer {} does not start with `/`", quote(&pointer)),
                            "write a JSON pointer, e.g. `\"/items/0/id\" = 7` (`\"\"` is the whole body)",
                        ));
                    }
                    expect.json.push((pointer, value));
                }
            }
        }
        Ok(SmokeTest {
            name: t
                .name
                .unwrap_or_else(|| format!("{method} {}", path.get_ref())),
            method,
            path: path.into_inner(),
            host: t.host,
            headers: t.headers.unwrap_or_default().into_iter().collect(),
            body: t.body,
            expect,
        })
    }

    fn environment(
        &self,
        key: Spanned<String>,
        env: Spanned<RawEnvironment>,
    ) -> Result<Environment, ManifestError> {
        let name = key.get_ref();
        if !is_name(name, true) {
            return Err(self.err(
                key.span(),
                format!("invalid environment name {}", quote(name)),
                "environment names are lowercase letters, digits, `-` and `_`, starting with a letter, e.g. `staging`",
            ));
        }
        let env = env.into_inner();
        if let Some(node) = &env.node {
            let url = node.get_ref();
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| {
                r.trim_end_matches('/').is_empty() || r.contains(char::is_whitespace)
            }) {
                return Err(self.err(
                    node.span(),
                    format!("invalid node URL {}", quote(url)),
                    "give the node's admin API, e.g. `node = \"https://node.internal:9464\"`",
                ));
            }
        }
        let ca = match &env.ca {
            None => None,
            Some(c) if c.get_ref().trim().is_empty() => {
                return Err(self.err(
                    c.span(),
                    "empty `ca`",
                    "give a PEM file, e.g. `ca = \"certs/ca.pem\"`",
                ));
            }
            Some(c) => Some(normalize(&self.dir.join(c.get_ref()))),
        };
        let kube = match env.kube {
            None => None,
            Some(k) => {
                let k = k.into_inner();
                let count =
                    |v: &Option<Spanned<i64>>, what: &str| -> Result<Option<u32>, ManifestError> {
                        match v {
                            None => Ok(None),
                            Some(n) if *n.get_ref() >= 1 && *n.get_ref() <= 10_000 => {
                                Ok(Some(*n.get_ref() as u32))
                            }
                            Some(n) => Err(self.err(
                                n.span(),
                                format!("{what} must be between 1 and 10000"),
                                format!("e.g. `{what} = 2`"),
                            )),
                        }
                    };
                let replicas = count(&k.replicas, "replicas")?;
                let min_replicas = count(&k.min_replicas, "min_replicas")?;
                let max_replicas = count(&k.max_replicas, "max_replicas")?;
                if let (Some(r), true) = (
                    &k.replicas,
                    k.min_replicas.is_some() || k.max_replicas.is_some(),
                ) {
                    return Err(self.err(
                        r.span(),
                        "`replicas` is a fixed size and `min_replicas`/`max_replicas` autoscale",
                        "keep one or the other",
                    ));
                }
                if let (Some(min), Some(max), Some(m)) =
                    (min_replicas, max_replicas, &k.min_replicas)
                    && min > max
                {
                    return Err(self.err(
                        m.span(),
                        format!("min_replicas ({min}) is above max_replicas ({max})"),
                        "make min_replicas at most max_replicas",
                    ));
                }
                Some(KubeSettings {
                    image: k.image,
                    reference: k.reference,
                    namespace: k.namespace,
                    fleet: k.fleet,
                    replicas,
                    min_replicas,
                    max_replicas,
                    cpu: k.cpu,
                    memory: k
                        .memory
                        .as_ref()
                        .map(|m| self.size(m, "memory"))
                        .transpose()?,
                    memory_limit: k
                        .memory_limit
                        .as_ref()
                        .map(|m| self.size(m, "memory_limit"))
                        .transpose()?,
                })
            }
        };
        if let Some(url) = &env.url {
            let u = url.get_ref();
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.contains(char::is_whitespace)
            {
                return Err(self.err(
                    url.span(),
                    format!("invalid url {}", quote(u)),
                    "give where the app's traffic reaches it, e.g. `url = \"https://shop.example.com\"`",
                ));
            }
        }
        Ok(Environment {
            name: key.into_inner(),
            node: env.node.map(Spanned::into_inner),
            ca,
            hosts: env.hosts.unwrap_or_default(),
            url: env.url.map(Spanned::into_inner),
            kube,
        })
    }

    fn variable(
        &self,
        key: Spanned<String>,
        var: Spanned<RawVariable>,
    ) -> Result<Variable, ManifestError> {
        let name = key.get_ref();
        if !is_name(name, false) {
            let suggestion = suggest_name(name, '_');
            return Err(self.err(
                key.span(),
                format!("invalid variable name {}", quote(name)),
                format!(
                    "variable names are lowercase letters, digits and `_`, starting with a letter{}",
                    suggestion.map(|s| format!(", e.g. `{s}`")).unwrap_or_default()
                ),
            ));
        }
        let var = var.into_inner();
        let required = var.required.as_ref().is_some_and(|r| *r.get_ref());
        if required && let (Some(req), Some(_)) = (&var.required, &var.default) {
            return Err(self.err(
                req.span(),
                format!("variable `{name}` is required and has a default"),
                "a default already gives it a value: remove `required = true` or the default",
            ));
        }
        Ok(Variable {
            name: key.into_inner(),
            default: var.default.map(Spanned::into_inner),
            required,
            secret: var.secret.unwrap_or(false),
            description: var.description,
        })
    }

    fn kv_store(
        &self,
        key: Spanned<String>,
        store: Spanned<RawKvStore>,
        files: &mut HashMap<PathBuf, String>,
    ) -> Result<KvStore, ManifestError> {
        let label = key.get_ref();
        if !is_name(label, true) {
            return Err(self.err(
                key.span(),
                format!("invalid store label {}", quote(label)),
                label_hint(label),
            ));
        }
        let store = store.into_inner();
        let backend = store
            .backend
            .as_ref()
            .map_or(RawBackend::Embedded, |b| *b.get_ref());
        let backend = match backend {
            RawBackend::Embedded => {
                if let Some(url) = &store.url {
                    return Err(self.err(
                        url.span(),
                        format!("store `{label}` has a `url` but is an embedded store"),
                        "add `backend = \"redis\"`, or remove `url`",
                    ));
                }
                let path = match &store.path {
                    None => default_store_path(self.dir, label),
                    Some(p) if p.get_ref().trim().is_empty() || p.get_ref().contains('\0') => {
                        return Err(self.err(
                            p.span(),
                            format!("invalid `path` for store `{label}`"),
                            format!("give a file path relative to the app directory, e.g. `.wasmops/kv/{label}.db`"),
                        ));
                    }
                    Some(p) => normalize(&self.dir.join(p.get_ref())),
                };
                if let Some(other) = files.get(&path) {
                    let span = store.path.as_ref().map_or(key.span(), |p| p.span());
                    return Err(self.err(
                        span,
                        format!("store `{label}` uses the same file as store `{other}`"),
                        "give each store its own `path`",
                    ));
                }
                files.insert(path.clone(), label.clone());
                let durability = match store.durability.as_ref().map(|d| *d.get_ref()) {
                    None | Some(RawDurability::Process) => Durability::Process,
                    Some(RawDurability::Fsync) => Durability::Fsync,
                };
                KvBackend::Embedded { path, durability }
            }
            RawBackend::Redis => {
                for (field, span) in [
                    ("path", store.path.as_ref().map(Spanned::span)),
                    ("durability", store.durability.as_ref().map(Spanned::span)),
                ] {
                    if let Some(span) = span {
                        return Err(self.err(
                            span,
                            format!("`{field}` applies only to embedded stores, and store `{label}` is a Redis store"),
                            format!("remove `{field}`"),
                        ));
                    }
                }
                let Some(url) = store.url else {
                    return Err(self.err(
                        store.backend.map_or(key.span(), |b| b.span()),
                        format!("Redis store `{label}` has no `url`"),
                        "add `url = \"redis://127.0.0.1:6379\"`",
                    ));
                };
                check_redis_url(self.src, &url)?;
                KvBackend::Redis {
                    url: url.into_inner(),
                }
            }
        };
        Ok(KvStore {
            label: label.clone(),
            backend,
        })
    }

    fn component(
        &self,
        key: Spanned<String>,
        component: Spanned<RawComponent>,
        declared_variables: &[Variable],
        declared_stores: &[&str],
        component_ids: &[String],
        routes_seen: &mut HashMap<Route, RouteOrigin>,
    ) -> Result<ComponentSpec, ManifestError> {
        let id = key.get_ref().clone();
        if !is_name(&id, true) {
            return Err(self.err(
                key.span(),
                format!("invalid component id {}", quote(&id)),
                format!(
                    "ids are lowercase letters, digits, `-` and `_`, starting with a letter{}",
                    suggest_name(&id, '-')
                        .map(|s| format!(", e.g. `{s}`"))
                        .unwrap_or_default()
                ),
            ));
        }
        let c = component.into_inner();

        let Some(source) = c.source else {
            return Err(self.err(
                key.span(),
                format!("component `{id}` has no `source`"),
                format!(
                    "add `source = \"path/to/{id}.wasm\"` (relative to the manifest's directory)"
                ),
            ));
        };
        let build = match c.build {
            Some(b) => Some(self.build(b)?),
            None => None,
        };
        let source = if build.is_some() {
            self.output_file(&source)?
        } else {
            self.source_file(&source)?
        };

        let mut routes = Vec::new();
        if let Some(field) = c.route {
            let span = field.span();
            let entries = match field.into_inner() {
                RouteField::One(entry) => vec![Spanned::new(span, entry)],
                RouteField::Many(entries) => entries,
            };
            for entry in entries {
                let (route, at) = self.route(entry)?;
                let (line, col) = self.src.position(at.start);
                if let Some(first) = routes_seen.get(&route) {
                    return Err(self.err(
                        at,
                        format!("route {} is declared twice", quote(&route.to_string())),
                        format!(
                            "it is already routed to component `{}` at {}:{}:{}; remove one",
                            first.component, self.src.display, first.line, first.col
                        ),
                    ));
                }
                routes_seen.insert(
                    route.clone(),
                    RouteOrigin {
                        component: id.clone(),
                        line,
                        col,
                    },
                );
                routes.push(route);
            }
        }

        let mut allowed_outbound_hosts = Vec::new();
        for host in c.allowed_outbound_hosts.unwrap_or_default() {
            if let Err(message) = (self.checks.outbound_host)(host.get_ref()) {
                return Err(self.err(host.span(), message, OUTBOUND_HINT));
            }
            if !allowed_outbound_hosts.contains(host.get_ref()) {
                allowed_outbound_hosts.push(host.into_inner());
            }
        }

        let mut key_value_stores: Vec<String> = Vec::new();
        for label in c.key_value_stores.unwrap_or_default() {
            if !is_name(label.get_ref(), true) {
                return Err(self.err(
                    label.span(),
                    format!("invalid store label {}", quote(label.get_ref())),
                    label_hint(label.get_ref()),
                ));
            }
            // `default` exists without being declared; any other store
            // must be, so a typo does not make a new, empty store.
            if label.get_ref() != "default" && !declared_stores.contains(&label.get_ref().as_str())
            {
                let mut known: Vec<&str> = declared_stores.to_vec();
                known.push("default");
                let hint = match did_you_mean(label.get_ref(), &known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "declare it: `[key_value.{}]` (an embedded store by default)",
                        label.get_ref()
                    ),
                };
                return Err(self.err(
                    label.span(),
                    format!("undeclared key-value store {}", quote(label.get_ref())),
                    hint,
                ));
            }
            if !key_value_stores.contains(label.get_ref()) {
                key_value_stores.push(label.into_inner());
            }
        }

        let mut sqlite_databases: Vec<String> = Vec::new();
        for label in c.sqlite_databases.unwrap_or_default() {
            if !is_name(label.get_ref(), true) {
                return Err(self.err(
                    label.span(),
                    format!("invalid database label {}", quote(label.get_ref())),
                    label_hint(label.get_ref()),
                ));
            }
            if !sqlite_databases.contains(label.get_ref()) {
                sqlite_databases.push(label.into_inner());
            }
        }

        let mut dependencies = Vec::new();
        for (name, dep) in c.dependencies.map(|e| e.0).unwrap_or_default() {
            dependencies.push(self.dependency(&id, name, dep, component_ids)?);
        }
        let dependencies_inherit_configuration = c
            .dependencies_inherit_configuration
            .map(|b| b.into_inner())
            .unwrap_or(false);

        let mut variables: Vec<String> = Vec::new();
        for name in c.variables.unwrap_or_default() {
            if !declared_variables.iter().any(|v| &v.name == name.get_ref()) {
                let names: Vec<&str> = declared_variables.iter().map(|v| v.name.as_str()).collect();
                let hint = match did_you_mean(name.get_ref(), &names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if is_name(name.get_ref(), false) => format!(
                        "declare it under [variables], e.g. `{} = {{ default = \"...\" }}`",
                        name.get_ref()
                    ),
                    None => {
                        "declare it under [variables] (names are lowercase letters, digits and `_`)"
                            .to_string()
                    }
                };
                return Err(self.err(
                    name.span(),
                    format!("unknown variable {}", quote(name.get_ref())),
                    hint,
                ));
            }
            if !variables.contains(name.get_ref()) {
                variables.push(name.into_inner());
            }
        }

        let config = match c.spin_variables {
            None => variables
                .iter()
                .map(|v| (v.clone(), format!("{{{{ {v} }}}}")))
                .collect(),
            Some(list) => self.spin_variables(list, declared_variables, &mut variables)?,
        };

        let mut files: Vec<FileMount> = Vec::new();
        for (n, entry) in c.files.unwrap_or_default().into_iter().enumerate() {
            let include = c.spin_includes.get(n).cloned().flatten();
            let mut mount = self.file_mount(entry, &files, include.is_some())?;
            mount.exclude = c.spin_exclude.clone();
            match (
                include,
                files
                    .iter_mut()
                    .find(|m| m.destination == mount.destination),
            ) {
                // Patterns in one directory (`static/*.html`,
                // `static/*.css`) are one mount of their files.
                (Some(p), Some(m)) => {
                    if !m.include.contains(&p) {
                        m.include.push(p);
                    }
                }
                (Some(p), None) => {
                    mount.include.push(p);
                    files.push(mount);
                }
                (None, _) => files.push(mount),
            }
        }

        let mut environment = Vec::new();
        for (name, value) in c.environment.map(|e| e.0).unwrap_or_default() {
            let n = name.get_ref();
            if n.is_empty() || n.contains(['=', '\0']) {
                return Err(self.err(
                    name.span(),
                    format!("invalid environment variable name {}", quote(n)),
                    "names cannot be empty or contain `=`, e.g. LOG_LEVEL",
                ));
            }
            if value.get_ref().contains('\0') {
                return Err(self.err(
                    value.span(),
                    format!("the value of environment variable `{n}` contains a NUL character"),
                    "remove the \\u0000",
                ));
            }
            environment.push((name.into_inner(), value.into_inner()));
        }

        let limits = match c.limits {
            Some(limits) => self.limits(limits)?,
            None => ComponentLimits::default(),
        };
        let instance_reuse = match c.instance_reuse {
            None => None,
            Some(n) => {
                let v = *n.get_ref();
                let requests = u32::try_from(v)
                    .ok()
                    .and_then(std::num::NonZeroU32::new)
                    .ok_or_else(|| {
                        self.err(
                            n.span(),
                            format!(
                                "instance_reuse must be a number of requests from 1 to {}, not {v}",
                                u32::MAX
                            ),
                            "e.g. `instance_reuse = 1000`; leave it out for a fresh instance per request",
                        )
                    })?;
                if routes.is_empty() {
                    return Err(self.err(
                        n.span(),
                        format!("instance_reuse applies to HTTP components; `{id}` has no route"),
                        "remove `instance_reuse`, or give the component a `route`",
                    ));
                }
                let (line, col) = self.src.position(n.span().start);
                Some(InstanceReuse {
                    requests,
                    line,
                    col,
                })
            }
        };

        Ok(ComponentSpec {
            id,
            source,
            description: c.description,
            routes,
            allowed_outbound_hosts,
            key_value_stores,
            sqlite_databases,
            dependencies,
            dependencies_inherit_configuration,
            variables,
            files,
            environment,
            config,
            limits,
            instance_reuse,
            build,
        })
    }

    /// One `[component.ID.dependencies]` entry.
    fn dependency(
        &self,
        id: &str,
        name: Spanned<String>,
        dep: Spanned<RawDependency>,
        component_ids: &[String],
    ) -> Result<Dependency, ManifestError> {
        if !is_import_name(name.get_ref()) {
            return Err(self.err(
                name.span(),
                format!("invalid dependency name {}", quote(name.get_ref())),
                "name the import it fills: an interface `ns:pkg/iface` (optionally `@1.2.3`) or a package `ns:pkg`",
            ));
        }
        let span = dep.span();
        let t = match dep.into_inner() {
            RawDependency::Version(v) => {
                return Err(self.err(
                    span,
                    format!(
                        "dependency {} from a package registry (version {}) is not supported",
                        quote(name.get_ref()),
                        quote(&v)
                    ),
                    "give the registry too: `{ registry = \"ghcr.io\", package = \"ns:name\", version = \"1.0.0\" }`, or a file: `{ path = \"deps/dep.wasm\" }`",
                ));
            }
            RawDependency::Table(t) => t,
        };
        if t.url.is_some() || t.digest.is_some() {
            return Err(self.err(
                span,
                format!(
                    "dependency {} from a URL is not supported",
                    quote(name.get_ref())
                ),
                "download the component and give it as `{ path = \"deps/dep.wasm\" }`, or push it to an OCI registry and give `{ reference = \"HOST/REPO:TAG\" }`",
            ));
        }
        let registry = match (t.registry, t.package, t.version) {
            (None, None, None) => None,
            (Some(r), Some(p), Some(v)) => {
                let ok = p.split_once(':').filter(|(ns, n)| {
                    !ns.is_empty() && !n.is_empty() && !n.contains([':', '/', '@'])
                });
                let Some((ns, n)) = ok else {
                    return Err(self.err(
                        span,
                        format!(
                            "invalid package {} in dependency {}",
                            quote(&p),
                            quote(name.get_ref())
                        ),
                        "a package is `namespace:name`, e.g. `package = \"acme:greeter\"`",
                    ));
                };
                Some(format!("{}/{ns}/{n}:{v}", r.trim_end_matches('/')))
            }
            _ => {
                return Err(self.err(
                    span,
                    format!(
                        "dependency {} from a registry needs `registry`, `package` and `version`",
                        quote(name.get_ref())
                    ),
                    "e.g. `{ registry = \"ghcr.io\", package = \"acme:greeter\", version = \"1.0.0\" }` (pulled as ghcr.io/acme/greeter:1.0.0)",
                ));
            }
        };
        let reference = match (t.reference, registry) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    span,
                    format!(
                        "dependency {} has both `reference` and `registry`",
                        quote(name.get_ref())
                    ),
                    "keep one of them",
                ));
            }
            (r, g) => r.or(g),
        };
        let source = match (t.path, t.component, reference) {
            (None, None, Some(r)) => DependencySource::Reference(r),
            (Some(p), None, None) => DependencySource::Path(self.dir.join(p)),
            (None, Some(other), None) => {
                if other == id {
                    return Err(self.err(
                        span,
                        format!("component `{id}` cannot depend on itself"),
                        "name another component of the app",
                    ));
                }
                if !component_ids.contains(&other) {
                    let known: Vec<&str> = component_ids.iter().map(String::as_str).collect();
                    let hint = match did_you_mean(&other, &known) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("the app's components: {}", known.join(", ")),
                    };
                    return Err(self.err(
                        span,
                        format!(
                            "dependency {} names the unknown component {}",
                            quote(name.get_ref()),
                            quote(&other)
                        ),
                        hint,
                    ));
                }
                DependencySource::Component(other)
            }
            _ => {
                return Err(self.err(
                    span,
                    format!(
                        "dependency {} needs exactly one of `path`, `component` and a registry reference",
                        quote(name.get_ref())
                    ),
                    "e.g. `{ path = \"deps/dep.wasm\" }`, `{ component = \"other\" }` or `{ reference = \"HOST/REPO:TAG\" }`",
                ));
            }
        };
        Ok(Dependency {
            import: name.into_inner(),
            source,
            export: t.export,
        })
    }

    /// A Spin component's variables: each name (lowercase words joined by
    /// `_`) with a template whose `{{ name }}` parts are app variables; those
    /// are added to `variables` (what the component may read).
    fn spin_variables(
        &self,
        list: Vec<(Spanned<String>, Spanned<String>)>,
        declared: &[Variable],
        variables: &mut Vec<String>,
    ) -> Result<Vec<(String, String)>, ManifestError> {
        let mut out = Vec::new();
        for (name, template) in list {
            if !is_name(name.get_ref(), false) {
                return Err(self.err(
                    name.span(),
                    format!("invalid variable name {}", quote(name.get_ref())),
                    "names are lowercase letters, digits and `_`, starting with a letter",
                ));
            }
            let mut rest = template.get_ref().as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else {
                    return Err(self.err(
                        template.span(),
                        format!("unclosed `{{{{` in {}", quote(template.get_ref())),
                        "close it: `{{ app_variable }}`",
                    ));
                };
                let var = after[..end].trim();
                if !declared.iter().any(|v| v.name == var) {
                    let names: Vec<&str> = declared.iter().map(|v| v.name.as_str()).collect();
                    let hint = match did_you_mean(var, &names) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "declare it under [variables], e.g. `{var} = {{ default = \"...\" }}`"
                        ),
                    };
                    return Err(self.err(
                        template.span(),
                        format!(
                            "unknown variable {} in {}",
                            quote(var),
                            quote(template.get_ref())
                        ),
                        hint,
                    ));
                }
                if !variables.iter().any(|v| v == var) {
                    variables.push(var.to_string());
                }
                rest = &after[end + 2..];
            }
            out.push((name.into_inner(), template.into_inner()));
        }
        Ok(out)
    }

    /// The output of a build recipe: it may not exist yet, but must not be
    /// a directory.
    fn output_file(&self, source: &Spanned<String>) -> Result<PathBuf, ManifestError> {
        let s = source.get_ref();
        if s.trim().is_empty() || s.contains('\0') {
            return Err(self.err(
                source.span(),
                "`source` is empty",
                "give the path of the .wasm file the build produces, relative to the manifest",
            ));
        }
        let path = self.dir.join(s);
        if path.is_dir() {
            return Err(self.err(
                source.span(),
                format!("{} is a directory", quote(s)),
                "`source` is the path of the .wasm file the build produces",
            ));
        }
        self.inside_app(&path, source.span(), "`source`", s)
    }

    fn build(&self, b: Spanned<RawBuild>) -> Result<BuildSpec, ManifestError> {
        let span = b.span();
        let b = b.into_inner();
        let names = Language::ALL.map(Language::name).join(", ");
        let Some(language) = b.language else {
            return Err(self.err(
                span,
                "build recipe has no `language`",
                format!("add `language = \"rust\"` (one of {names})"),
            ));
        };
        let lang = Language::parse(language.get_ref()).ok_or_else(|| {
            self.err(
                language.span(),
                format!("unknown language {}", quote(language.get_ref())),
                format!("use one of {names}"),
            )
        })?;
        let dir = match &b.dir {
            None => self.dir.to_path_buf(),
            Some(d) => {
                let path = self.dir.join(d.get_ref());
                if !path.is_dir() {
                    return Err(self.err(
                        d.span(),
                        format!("no such directory {}", quote(d.get_ref())),
                        "`dir` is the directory of the component's sources, relative to the manifest",
                    ));
                }
                self.inside_app(&path, d.span(), "build `dir`", d.get_ref())?
            }
        };
        let command = match (lang, b.command) {
            (Language::Command, None) => {
                return Err(self.err(
                    span,
                    "a `command` build recipe has no `command`",
                    "add the commands that produce `source`, e.g. `command = \"make app.wasm\"`",
                ));
            }
            (Language::Command, Some(c)) => {
                let span = c.span();
                let list = c.into_inner().into_vec();
                if list.is_empty() || list.iter().any(|x| x.trim().is_empty()) {
                    return Err(self.err(
                        span,
                        "`command` is empty",
                        "give the commands that produce `source`, e.g. `command = \"make app.wasm\"`",
                    ));
                }
                list
            }
            (_, Some(c)) => {
                return Err(self.err(
                    c.span(),
                    format!(
                        "`command` is for `language = \"command\"`, not {}",
                        lang.name()
                    ),
                    "remove `command`, or set `language = \"command\"`",
                ));
            }
            (_, None) => Vec::new(),
        };
        let watch = match b.watch {
            None => Vec::new(),
            Some(w) => {
                let span = w.span();
                let list = w.into_inner();
                if let Some(bad) = list.iter().find(|p| glob::Pattern::new(p).is_err()) {
                    return Err(self.err(
                        span,
                        format!("invalid pattern {} in `watch`", quote(bad)),
                        "e.g. `watch = [\"src/**/*.rs\", \"Cargo.toml\"]`",
                    ));
                }
                list
            }
        };
        Ok(BuildSpec {
            language: lang,
            dir,
            entry: b.entry,
            world: b.world,
            wit: b.wit,
            sources: b.sources.unwrap_or_default(),
            args: b.args.unwrap_or_default(),
            command,
            watch,
        })
    }

    fn source_file(&self, source: &Spanned<String>) -> Result<PathBuf, ManifestError> {
        let s = source.get_ref();
        if s.trim().is_empty() || s.contains('\0') {
            return Err(self.err(
                source.span(),
                "`source` is empty",
                "give the path of the component's .wasm file, relative to the manifest",
            ));
        }
        let path = self.dir.join(s);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Err(self.err(
                source.span(),
                format!("{} is a directory", quote(s)),
                "`source` is the path of the component's .wasm file",
            )),
            Ok(_) => self.inside_app(&path, source.span(), "`source`", s),
            Err(_) => Err(self.err(
                source.span(),
                format!("no such file {}", quote(s)),
                "build the component first, or fix the path",
            )),
        }
    }

    /// A route and the position to report problems with it at.
    fn route(&self, entry: Spanned<RouteEntry>) -> Result<(Route, Range<usize>), ManifestError> {
        let entry_span = entry.span();
        let (path, path_span, host) = match entry.into_inner() {
            RouteEntry::Path(p) => (p, entry_span, None),
            RouteEntry::Table(t) => {
                let Some(path) = t.path else {
                    return Err(self.err(
                        entry_span,
                        "route has no `path`",
                        "write { path = \"/api/...\", host = \"api.example.com\" }",
                    ));
                };
                let span = path.span();
                (path.into_inner(), span, t.host)
            }
        };
        let (path, prefix) =
            parse_route_path(&path).map_err(|(m, h)| self.err(path_span.clone(), m, h))?;
        let host = match host {
            None => None,
            Some(h) => Some(
                parse_route_host(h.get_ref()).map_err(|(m, hint)| self.err(h.span(), m, hint))?,
            ),
        };
        Ok((Route { host, path, prefix }, path_span))
    }

    fn file_mount(
        &self,
        entry: Spanned<FileEntry>,
        previous: &[FileMount],
        pattern: bool,
    ) -> Result<FileMount, ManifestError> {
        let entry_span = entry.span();
        let (source, source_span, destination) = match entry.into_inner() {
            FileEntry::Path(p) => (p, entry_span.clone(), None),
            FileEntry::Table(t) => {
                let Some(source) = t.source else {
                    return Err(self.err(
                        entry_span,
                        "file mount has no `source`",
                        "write { source = \"assets\", destination = \"/assets\" }",
                    ));
                };
                let Some(destination) = t.destination else {
                    return Err(self.err(
                        entry_span,
                        "file mount has no `destination`",
                        format!(
                            "add `destination = \"/{}\"` (an absolute path in the guest)",
                            source.get_ref().trim_matches('/')
                        ),
                    ));
                };
                let span = source.span();
                (source.into_inner(), span, Some(destination))
            }
        };

        let relative = match relative_inside(&source) {
            Ok(r) => r,
            Err(why) => {
                return Err(self.err(
                    source_span,
                    format!("files source {} {why}", quote(&source)),
                    "give a directory inside the app directory, relative to it, e.g. `static`",
                ));
            }
        };
        let host_path = self.dir.join(&relative);
        match std::fs::metadata(&host_path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(self.err(
                    source_span,
                    format!("files source {} is not a directory", quote(&source)),
                    "only directories can be mounted: put the file in a directory and mount that",
                ));
            }
            Err(_) => {
                return Err(self.err(
                    source_span,
                    format!("no such directory {}", quote(&source)),
                    "create it, or fix the path (relative to the app directory)",
                ));
            }
        }
        let resolved = self.inside_app(&host_path, source_span.clone(), "files source", &source)?;

        let (destination, dest_span) = match destination {
            None => {
                let parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                (format!("/{}", parts.join("/")), source_span)
            }
            Some(d) => {
                let span = d.span();
                let d = d.into_inner();
                let bad_segment = d.split('/').any(|s| s == "." || s == "..");
                if !d.starts_with('/') || bad_segment || d.chars().any(char::is_control) {
                    let hint = if d.starts_with('/') {
                        "write an absolute guest path without `.` or `..`, e.g. `/assets`"
                            .to_string()
                    } else {
                        format!(
                            "guest paths are absolute: write {}",
                            quote(&format!("/{d}"))
                        )
                    };
                    return Err(self.err(span, format!("invalid destination {}", quote(&d)), hint));
                }
                let trimmed = d.trim_end_matches('/');
                (
                    if trimmed.is_empty() {
                        "/".to_string()
                    } else {
                        trimmed.to_string()
                    },
                    span,
                )
            }
        };
        if !pattern && previous.iter().any(|m| m.destination == destination) {
            return Err(self.err(
                dest_span,
                format!("two directories are mounted at {}", quote(&destination)),
                "give each mount its own destination",
            ));
        }
        Ok(FileMount {
            source: resolved,
            destination,
            include: Vec::new(),
            exclude: Vec::new(),
        })
    }

    /// A positive size: an integer number of bytes or a string with a unit.
    fn size(&self, m: &Spanned<Scalar>, what: &str) -> Result<u64, ManifestError> {
        let hint = format!("write a number with a unit ({SIZE_UNITS}), e.g. \"8GiB\"");
        match m.get_ref() {
            Scalar::Int(n) if *n > 0 => Ok(*n as u64),
            Scalar::Int(_) => {
                Err(self.err(m.span(), format!("{what} must be greater than zero"), hint))
            }
            Scalar::Str(s) => parse_size(s).map_err(|why| {
                self.err(
                    m.span(),
                    format!("invalid {what} {}: {why}", quote(s)),
                    hint.clone(),
                )
            }),
        }
    }

    fn limits(&self, limits: RawLimits) -> Result<ComponentLimits, ManifestError> {
        let size_hint = format!("write a number with a unit ({SIZE_UNITS}), e.g. \"64MiB\"");
        let duration_hint =
            format!("write a number with a unit ({DURATION_UNITS}), e.g. \"10s\" or \"250ms\"");
        let memory = match limits.memory {
            None => None,
            Some(m) => {
                let bytes = match m.get_ref() {
                    Scalar::Int(n) if *n > 0 => *n as u64,
                    Scalar::Int(_) => {
                        return Err(self.err(
                            m.span(),
                            "memory must be greater than zero",
                            size_hint,
                        ));
                    }
                    Scalar::Str(s) => parse_size(s).map_err(|why| {
                        self.err(
                            m.span(),
                            format!("invalid memory size {}: {why}", quote(s)),
                            size_hint.clone(),
                        )
                    })?,
                };
                Some(wasmops_units::check_memory(bytes).map_err(|why| {
                    self.err(
                        m.span(),
                        format!("memory limit {why}"),
                        "give at least \"64KiB\"; most components need a few MiB",
                    )
                })?)
            }
        };
        let timeout = match limits.timeout {
            None => None,
            Some(t) => Some(match t.get_ref() {
                Scalar::Int(n) => {
                    return Err(self.err(
                        t.span(),
                        format!("timeout {n} has no unit"),
                        format!(
                            "write it as a string with a unit ({DURATION_UNITS}), e.g. \"{}s\"",
                            n.max(&1)
                        ),
                    ));
                }
                Scalar::Str(s) => parse_duration(s).map_err(|why| {
                    self.err(
                        t.span(),
                        format!("invalid timeout {}: {why}", quote(s)),
                        duration_hint.clone(),
                    )
                })?,
            }),
        };
        let concurrency = match limits.concurrency {
            None => None,
            Some(c) => {
                let n = *c.get_ref();
                if n < 1 {
                    return Err(self.err(
                        c.span(),
                        format!("concurrency must be at least 1, not {n}"),
                        "it is the number of requests handled at once, e.g. `concurrency = 100`",
                    ));
                }
                Some(usize::try_from(n).map_err(|_| {
                    self.err(
                        c.span(),
                        "concurrency is too large",
                        "e.g. `concurrency = 100`",
                    )
                })?)
            }
        };
        Ok(ComponentLimits {
            memory,
            timeout,
            concurrency,
        })
    }
}

fn check_app_name(src: &Source<'_>, name: &Spanned<String>) -> Result<(), ManifestError> {
    let n = name.get_ref();
    let problem = if n.is_empty() {
        Some("the app name is empty".to_string())
    } else if n.chars().count() > 63 {
        Some(format!(
            "the app name is longer than 63 characters ({})",
            n.chars().count()
        ))
    } else if !(n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        Some(format!("invalid app name {}", quote(n)))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(message) => {
            let suggestion = suggest_name(n, '-')
                .map(|s| s.chars().take(63).collect::<String>())
                .map(|s| format!(", e.g. `{}`", s.trim_end_matches('-')))
                .unwrap_or_default();
            Err(src.error(
                name.span(),
                message,
                format!("use lowercase letters, digits and `-`, starting with a letter, at most 63 characters{suggestion}"),
            ))
        }
    }
}

fn check_redis_url(src: &Source<'_>, url: &Spanned<String>) -> Result<(), ManifestError> {
    // The URL may hold a password: never quote it.
    let u = url.get_ref();
    let hint = "use redis://HOST[:PORT][/DB], or rediss:// for TLS, e.g. `redis://127.0.0.1:6379`";
    let Some((scheme, rest)) = u.split_once("://") else {
        return Err(src.error(url.span(), "the Redis url has no scheme", hint));
    };
    if !matches!(scheme, "redis" | "rediss") {
        let scheme: String = scheme.chars().take(20).collect();
        return Err(src.error(
            url.span(),
            format!("unsupported Redis url scheme {}", quote(&scheme)),
            hint,
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(src.error(url.span(), "the Redis url has no valid host", hint));
    }
    Ok(())
}

/// `[a-z][a-z0-9_]*`, with `-` too when `dash`.
fn is_name(s: &str, dash: bool) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (dash && b == b'-')
        })
}

/// A valid name close to `s`, if there is an obvious one.
fn suggest_name(s: &str, sep: char) -> Option<String> {
    let mut out = String::new();
    for c in s.chars().take(200) {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with(sep) {
            out.push(sep);
        }
    }
    let out = out.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let out = out.trim_end_matches(sep);
    (!out.is_empty() && out != s).then(|| out.to_string())
}

fn label_hint(label: &str) -> String {
    format!(
        "store labels are lowercase letters, digits, `-` and `_`, starting with a letter{}",
        suggest_name(label, '-')
            .map(|s| format!(", e.g. `{s}`"))
            .unwrap_or_default()
    )
}

/// `ns:pkg`, `ns:pkg/iface`, either with `@version`.
fn is_import_name(s: &str) -> bool {
    let (base, version) = match s.split_once('@') {
        Some((b, v)) => (b, Some(v)),
        None => (s, None),
    };
    let word = |w: &str| {
        !w.is_empty()
            && w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let Some((ns, rest)) = base.split_once(':') else {
        return false;
    };
    let (pkg, iface) = match rest.split_once('/') {
        Some((p, i)) => (p, Some(i)),
        None => (rest, None),
    };
    word(ns)
        && word(pkg)
        && iface.is_none_or(word)
        && version.is_none_or(|v| !v.is_empty() && v.starts_with(|c: char| c.is_ascii_digit()))
}

pub(crate) fn default_store_path(dir: &Path, label: &str) -> PathBuf {
    dir.join(".wasmops").join("kv").join(format!("{label}.db"))
}

/// Where an SQLite database lives unless a runtime configuration says.
pub(crate) fn default_sqlite_path(dir: &Path, label: &str) -> PathBuf {
    dir.join(".wasmops")
        .join("sqlite")
        .join(format!("{label}.db"))
}

/// The path relative to the app directory, or why it is not one.
fn relative_inside(s: &str) -> Result<PathBuf, &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.contains('\0') {
        return Err("contains a NUL character");
    }
    let path = Path::new(s);
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return Err("is an absolute path"),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Err("leads outside of the app directory");
                }
                depth -= 1;
                out.pop();
            }
            Component::Normal(n) => {
                depth += 1;
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// `path` with links followed: canonical if it exists, else its nearest
/// existing ancestor made canonical and the rest appended (normalized).
fn resolve_existing(path: &Path) -> PathBuf {
    let path = normalize(path);
    if let Ok(p) = std::fs::canonicalize(&path) {
        return p;
    }
    let mut rest = Vec::new();
    let mut cur = path.as_path();
    while let Some(parent) = cur.parent() {
        if let Some(name) = cur.file_name() {
            rest.push(name.to_owned());
        }
        if let Ok(mut p) = std::fs::canonicalize(parent) {
            for n in rest.iter().rev() {
                p.push(n);
            }
            return p;
        }
        cur = parent;
    }
    path
}

/// Whether some component of `path` below `base` is a symbolic link.
fn path_has_link(base: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(base).unwrap_or(path);
    let mut cur = base.to_path_buf();
    rel.components().any(|c| {
        cur.push(c);
        std::fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink())
    })
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn resolve_variables(
    app: &App,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ResolvedVariable>, ManifestError> {
    if app.variables.is_empty() {
        return Ok(Vec::new());
    }
    let dotenv_path = app.dir.join(".env");
    let dotenv_display = dotenv_path.display().to_string();
    let mut from_file: HashMap<String, String> = HashMap::new();
    match std::fs::read(&dotenv_path) {
        Ok(bytes) => {
            let text = std::str::from_utf8(&bytes).map_err(|e| {
                let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
                let (line, col) = error::position_in(valid, valid.len());
                ManifestError {
                    path: dotenv_display.clone(),
                    line,
                    col,
                    message: "the file is not valid UTF-8".into(),
                    hint: Some("save it as UTF-8".into()),
                }
            })?;
            let entries = dotenv::parse(text).map_err(|p| ManifestError {
                path: dotenv_display.clone(),
                line: p.line,
                col: p.col,
                message: p.message,
                hint: Some(p.hint),
            })?;
            let declared: HashSet<&str> = app.variables.iter().map(|v| v.name.as_str()).collect();
            for entry in entries {
                let key = entry.key.to_ascii_lowercase();
                let name = if declared.contains(key.as_str()) {
                    key
                } else {
                    // Spin's prefix too, so a Spin app's `.env` works as is.
                    match key
                        .strip_prefix("wasmops_variable_")
                        .or_else(|| key.strip_prefix("spin_variable_"))
                    {
                        Some(n) => n.to_string(),
                        None => continue,
                    }
                };
                from_file.insert(name, entry.value);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ManifestError::without_position(
                dotenv_display,
                format!("cannot read the file: {e}"),
                None,
            ));
        }
    }

    let mut out = Vec::new();
    for var in &app.variables {
        let env_name = variable_env_name(&var.name);
        // `SPIN_VARIABLE_<NAME>` is how Spin's users set variables; ours
        // wins when both are set.
        let value = env(&env_name)
            .or_else(|| env(&format!("SPIN_VARIABLE_{}", var.name.to_ascii_uppercase())))
            .or_else(|| from_file.get(&var.name).cloned())
            .or_else(|| var.default.clone());
        match value {
            Some(value) => out.push(ResolvedVariable {
                name: var.name.clone(),
                value,
                secret: var.secret,
            }),
            None if var.required => {
                return Err(ManifestError::without_position(
                    app.manifest_path.display().to_string(),
                    format!("required variable `{}` has no value", var.name),
                    Some(format!(
                        "set the environment variable {env_name}, or add `{}=...` to {dotenv_display}",
                        var.name
                    )),
                ));
            }
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("a", false));
        assert!(is_name("api_token2", false));
        assert!(!is_name("api-token", false));
        assert!(is_name("api-token", true));
        assert!(!is_name("", true));
        assert!(!is_name("1a", true));
        assert!(!is_name("Api", true));
        assert_eq!(suggest_name("My Shop!", '-').as_deref(), Some("my-shop"));
        assert_eq!(suggest_name("API_TOKEN", '_').as_deref(), Some("api_token"));
        assert_eq!(suggest_name("123", '-'), None);
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative_inside("static"), Ok(PathBuf::from("static")));
        assert_eq!(relative_inside("./a/../b/"), Ok(PathBuf::from("b")));
        assert_eq!(relative_inside("."), Ok(PathBuf::new()));
        assert!(relative_inside("../x").is_err());
        assert!(relative_inside("a/../../x").is_err());
        assert!(relative_inside("/etc").is_err());
        assert!(relative_inside("").is_err());
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/..")), PathBuf::from("/"));
    }
}
