//! What an app becomes when it leaves the machine: its manifest rewritten
//! so sources point into the artifact, with its components and mounted
//! files (`push` makes an OCI artifact of it, `deploy` an app bundle).

use std::path::Path;

use anyhow::Context as _;
use wasmops_oci::app::AppInput;

/// An app's artifact: the manifest rewritten so sources point into the
/// artifact, each component validated.
pub fn app_input(path: &Path, source: &crate::sources::SourceArgs) -> anyhow::Result<AppInput> {
    let mut app = wasmops_manifest::load(path)?;
    crate::sources::resolve_dependencies(&mut app, source)?;
    let text = std::fs::read_to_string(&app.manifest_path)
        .with_context(|| format!("cannot read {}", app.manifest_path.display()))?;
    let mut doc: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{}: not TOML", app.manifest_path.display()))?;
    let mut components = Vec::new();
    let mut files = Vec::new();
    for c in &app.components {
        let wasm = component_bytes(&app, c)?;
        let Some(table) = doc
            .get_mut("component")
            .and_then(|t| t.get_mut(&c.id))
            .and_then(|t| t.as_table_mut())
        else {
            anyhow::bail!("component `{}` is not a table in the manifest", c.id);
        };
        table.insert(
            "source".into(),
            toml::Value::String(format!("components/{}.wasm", c.id)),
        );
        table.remove("build");
        // The artifact holds just the files the patterns chose.
        table.remove("exclude_files");
        // The artifact holds the component composed with its dependencies.
        table.remove("dependencies");
        table.remove("dependencies_inherit_configuration");
        if !c.files.is_empty() {
            let mut mounts = toml::value::Array::new();
            for (n, f) in c.files.iter().enumerate() {
                let title = format!("files/{}/{n}", c.id);
                let mut t = toml::Table::new();
                t.insert("source".into(), toml::Value::String(title.clone()));
                t.insert(
                    "destination".into(),
                    toml::Value::String(f.destination.clone()),
                );
                mounts.push(toml::Value::Table(t));
                files.push((
                    title,
                    wasmops_app::manifest::mount_source(&app, c, n)
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                ));
            }
            table.insert("files".into(), toml::Value::Array(mounts));
        }
        components.push((c.id.clone(), wasm));
    }
    Ok(AppInput {
        name: app.name.clone(),
        version: app.version.clone(),
        description: app.description.clone(),
        created: app_created(&app),
        manifest: toml::to_string(&doc).context("cannot write the manifest")?,
        components,
        files,
    })
}

/// A component's built file, composed with its dependencies, checked to be
/// a component.
fn component_bytes(
    app: &wasmops_manifest::App,
    c: &wasmops_manifest::ComponentSpec,
) -> anyhow::Result<Vec<u8>> {
    let wasm =
        wasmops_app::manifest::component_bytes(app, c).map_err(|e| anyhow::anyhow!("{e}"))?;
    let kind = wasmops_component::validate(&wasm);
    if !matches!(kind, Ok(wasmops_component::Kind::Component)) {
        anyhow::bail!(
            "component `{}`: {} is not a WebAssembly component; build it first (`wasmops build`)",
            c.id,
            c.source.display()
        );
    }
    Ok(wasm)
}

/// An app (a wasmops or a Spin manifest) as Spin's OCI layout describes
/// it: its locked app's variables, triggers and components.
pub fn spin_input(
    path: &Path,
    source: &crate::sources::SourceArgs,
) -> anyhow::Result<wasmops_oci::spin::SpinInput> {
    let mut app = wasmops_manifest::load(path)?;
    crate::sources::resolve_dependencies(&mut app, source)?;
    let mut components = Vec::new();
    for c in &app.components {
        let mut routes = Vec::new();
        for r in &c.routes {
            if let Some(h) = &r.host {
                anyhow::bail!(
                    "component `{}`: the route `{r}` is for host `{h}`, which Spin's layout cannot say; push it as a wasmops app (without --layout spin)",
                    c.id
                );
            }
            routes.push(r.path_form());
        }
        components.push(wasmops_oci::spin::SpinComponent {
            id: c.id.clone(),
            wasm: component_bytes(&app, c)?,
            routes,
            allowed_outbound_hosts: c.allowed_outbound_hosts.clone(),
            key_value_stores: c.key_value_stores.clone(),
            sqlite_databases: c.sqlite_databases.clone(),
            environment: c.environment.clone(),
            config: c.config.clone(),
            files: c
                .files
                .iter()
                .enumerate()
                .map(|(n, f)| {
                    wasmops_app::manifest::mount_source(&app, c, n)
                        .map(|dir| (dir, f.destination.clone()))
                        .map_err(|e| anyhow::anyhow!("{e}"))
                })
                .collect::<anyhow::Result<_>>()?,
        });
    }
    Ok(wasmops_oci::spin::SpinInput {
        name: app.name.clone(),
        version: app.version.clone(),
        description: app.description.clone(),
        created: app_created(&app),
        variables: app
            .variables
            .iter()
            .map(|v| wasmops_oci::spin::SpinVariable {
                name: v.name.clone(),
                default: v.default.clone(),
                secret: v.secret,
                description: v.description.clone(),
            })
            .collect(),
        components,
    })
}

/// The creation time of an app's artifact: from its manifest and its
/// components' files.
fn app_created(app: &wasmops_manifest::App) -> String {
    let mut inputs: Vec<&Path> = vec![app.manifest_path.as_path()];
    inputs.extend(app.components.iter().map(|c| c.source.as_path()));
    created_rfc3339(&inputs)
}

/// The creation time of an artifact made of `inputs`, RFC 3339 UTC to the
/// second: `SOURCE_DATE_EPOCH` when set, else the newest modification time
/// of the inputs, so pushing the same files again gives the same digest;
/// the clock only when no input has a time.
pub fn created_rfc3339(inputs: &[&Path]) -> String {
    let newest = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .max();
    let when = match std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(secs) => std::time::Duration::from_secs(secs),
        None => newest.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        }),
    };
    let mut s = String::with_capacity(20);
    crate::accesslog::write_rfc3339(
        &mut s,
        std::time::Duration::from_secs(when.as_secs()),
        false,
    );
    s
}
