//! `wasmops build`: every component of the app, with its language's
//! toolchain, in parallel, cached.

use std::path::PathBuf;

use clap::Args;
use wasmops_build::{BuildError, Options, Outcome};

/// Build the app's components from source (those with a `build` recipe in
/// `wasmops.toml`), in parallel. A component whose inputs and toolchain did
/// not change since its last build is not rebuilt. Every output is checked
/// to be a valid component.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The app: a directory holding `wasmops.toml`, or the manifest itself.
    #[arg(value_name = "DIR|FILE", default_value = ".")]
    pub app: PathBuf,
    /// Build only this component (repeatable).
    #[arg(long = "component", short = 'c', value_name = "ID")]
    pub components: Vec<String>,
    /// Components built at once [default: one per core].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Rebuild even when nothing changed.
    #[arg(long)]
    pub force: bool,
    /// `json`: one document on stdout with each component's outcome,
    /// duration, notes and error (progress stays on stderr).
    #[arg(long, value_enum, default_value_t = crate::options::Format::Text)]
    pub format: crate::options::Format,
}

pub fn run(args: &BuildArgs) -> anyhow::Result<i32> {
    let app = wasmops_manifest::load(&args.app).map_err(|e| anyhow::anyhow!("{e}"))?;
    for id in &args.components {
        match app.component(id) {
            None => anyhow::bail!(
                "no component `{id}` in {}; it has: {}",
                app.manifest_path.display(),
                app.components
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(c) if c.build.is_none() => {
                return Err(BuildError::NoRecipe { id: id.clone() }.into());
            }
            _ => {}
        }
    }
    if app.components.iter().all(|c| c.build.is_none()) {
        eprintln!(
            "wasmops: no component of `{}` has a build recipe; nothing to build",
            app.name
        );
        if let crate::options::Format::Json = args.format {
            crate::options::print_json(&serde_json::json!({
                "app": app.name,
                "ok": true,
                "components": [],
            }));
        }
        return Ok(0);
    }
    let mut options = Options {
        force: args.force,
        ..Options::default()
    };
    if let Some(j) = args.jobs {
        options.jobs = j.max(1);
    }
    let only = (!args.components.is_empty()).then_some(&args.components[..]);
    let results = crate::progress::build_with_progress(&app, only, &options);
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    for r in &results {
        match &r.result {
            Ok(Outcome::Built(notes)) => {
                for n in notes {
                    eprintln!("wasmops: {}: {n}", r.id);
                }
            }
            Ok(Outcome::Cached) => {}
            Err(e) => {
                if let Some(out) = e.output() {
                    eprintln!("{out}");
                }
                eprintln!("error: {e}");
            }
        }
    }
    if let crate::options::Format::Json = args.format {
        let components: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                let language = app
                    .component(&r.id)
                    .and_then(|c| c.build.as_ref())
                    .map(|b| b.language.name());
                let (outcome, notes, error) = match &r.result {
                    Ok(Outcome::Built(n)) => ("built", n.clone(), None),
                    Ok(Outcome::Cached) => ("up-to-date", Vec::new(), None),
                    Err(e) => ("failed", Vec::new(), Some(e.to_string())),
                };
                serde_json::json!({
                    "id": r.id,
                    "language": language,
                    "outcome": outcome,
                    "duration_ms": wasmops_units::millis(r.elapsed),
                    "output": app.component(&r.id).map(|c| c.source.display().to_string()),
                    "notes": notes,
                    "error": error,
                })
            })
            .collect();
        crate::options::print_json(&serde_json::json!({
            "app": app.name,
            "ok": failed == 0,
            "components": components,
        }));
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
