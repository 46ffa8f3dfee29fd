//! `wasmops compose`: one component composed with the components that fill
//! its imports, written as one self-contained component. The same
//! composition `up`, `push` and `deploy` do for an app's
//! `[component.ID.dependencies]`.

use std::path::PathBuf;

use clap::Args;

/// Compose a component with its dependencies into one component.
///
/// Give a component file and `--dep IMPORT=FILE` for each import to fill,
/// or an app (directory or manifest) and `--component ID` to compose that
/// component as its manifest says. IMPORT is an interface
/// (`ns:pkg/iface[@version]`) or a package (`ns:pkg`, every import from it).
#[derive(Args)]
pub struct ComposeArgs {
    /// The component (.wasm), or an app directory or manifest.
    #[arg(value_name = "COMPONENT|APP")]
    pub input: PathBuf,
    /// IMPORT=FILE: a component whose export fills the import IMPORT
    /// (repeatable).
    #[arg(long = "dep", value_name = "IMPORT=FILE")]
    pub deps: Vec<String>,
    /// IMPORT=EXPORT: use the dependency's export EXPORT for IMPORT, when
    /// the names differ.
    #[arg(long = "export", value_name = "IMPORT=EXPORT")]
    pub exports: Vec<String>,
    /// Let dependencies import what carries configuration (environment,
    /// files, network, stores, variables); by default they may not, and
    /// their environment is empty.
    #[arg(long)]
    pub inherit_configuration: bool,
    /// With an app: the component to compose.
    #[arg(long, value_name = "ID")]
    pub component: Option<String>,
    /// Where to write the composed component.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub format: crate::options::FormatArg,
    /// How the app's dependencies given as registry references are pulled.
    #[command(flatten)]
    pub source: crate::sources::SourceArgs,
}

fn split_pair<'a>(s: &'a str, flag: &str, form: &str) -> anyhow::Result<(&'a str, &'a str)> {
    s.split_once('=')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| anyhow::anyhow!("invalid {flag} `{s}`: expected {form}"))
}

pub fn run(args: &ComposeArgs) -> anyhow::Result<i32> {
    let (bytes, main_name, deps) = if wasmops_manifest::is_app_path(&args.input) {
        if !args.deps.is_empty() || !args.exports.is_empty() || args.inherit_configuration {
            anyhow::bail!(
                "--dep, --export and --inherit-configuration are for a component file; an app's dependencies come from its manifest (`[component.ID.dependencies]`)"
            );
        }
        let mut app = wasmops_manifest::load(&args.input).map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::sources::resolve_dependencies(&mut app, &args.source)?;
        let with_deps: Vec<&str> = app
            .components
            .iter()
            .filter(|c| !c.dependencies.is_empty())
            .map(|c| c.id.as_str())
            .collect();
        let id = match (&args.component, with_deps.as_slice()) {
            (Some(id), _) => id.clone(),
            (None, [one]) => one.to_string(),
            (None, []) => anyhow::bail!(
                "no component of {} has dependencies; add `[component.ID.dependencies]` or compose a file with --dep",
                app.name
            ),
            (None, many) => anyhow::bail!(
                "several components have dependencies ({}); pick one with --component",
                many.join(", ")
            ),
        };
        let c = app
            .component(&id)
            .ok_or_else(|| anyhow::anyhow!("the app has no component `{id}`"))?;
        let bytes =
            wasmops_app::manifest::component_bytes(&app, c).map_err(|e| anyhow::anyhow!("{e}"))?;
        (bytes, format!("component `{id}`"), c.dependencies.len())
    } else {
        if args.component.is_some() {
            anyhow::bail!(
                "--component is for an app; {} is a component file",
                args.input.display()
            );
        }
        if args.deps.is_empty() {
            anyhow::bail!("nothing to compose: give each dependency as --dep IMPORT=FILE");
        }
        let main = std::fs::read(&args.input)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.input.display()))?;
        let mut exports = std::collections::HashMap::new();
        for e in &args.exports {
            let (import, export) = split_pair(e, "--export", "IMPORT=EXPORT")?;
            exports.insert(import.to_string(), export.to_string());
        }
        let mut deps = Vec::new();
        for d in &args.deps {
            let (import, file) = split_pair(d, "--dep", "IMPORT=FILE")?;
            let bytes =
                std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?;
            deps.push(wasmops_component::compose::Dependency {
                import: import.to_string(),
                origin: file.to_string(),
                bytes,
                export: exports.remove(import),
                inherit_configuration: args.inherit_configuration,
            });
        }
        if let Some(import) = exports.keys().next() {
            anyhow::bail!("--export for `{import}`, which no --dep names");
        }
        let name = args.input.display().to_string();
        let n = deps.len();
        let bytes = wasmops_component::compose::compose(&name, &main, &deps)?;
        (bytes, name, n)
    };
    std::fs::write(&args.output, &bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.output.display()))?;
    if args.format.json() {
        crate::options::print_json(&serde_json::json!({
            "component": main_name,
            "dependencies": deps,
            "output": args.output.display().to_string(),
            "bytes": bytes.len(),
        }));
    } else {
        println!(
            "composed {main_name} with {deps} dependenc{} into {} ({} bytes)",
            if deps == 1 { "y" } else { "ies" },
            args.output.display(),
            bytes.len()
        );
    }
    Ok(0)
}
