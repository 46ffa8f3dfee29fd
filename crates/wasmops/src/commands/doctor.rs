//! `wasmops doctor`: which toolchains are here, which the app needs, and
//! how to install what is missing.

use std::path::PathBuf;

use clap::Args;
use wasmops_build::toolchain;
use wasmops_manifest::Language;

/// List the toolchains of every language (found or not, path, version),
/// what the app in DIR needs, and the exact command that installs what is
/// missing. Exits 1 when something the app needs is missing.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The app (a directory holding `wasmops.toml`, or the manifest).
    #[arg(value_name = "DIR|FILE", default_value = ".")]
    pub app: PathBuf,
    #[command(flatten)]
    pub format: crate::options::FormatArg,
}

pub fn run(args: &DoctorArgs) -> anyhow::Result<i32> {
    let manifest = wasmops_manifest::is_app_path(&args.app) || args.app.is_file();
    let app = if manifest {
        Some(wasmops_manifest::load(&args.app).map_err(|e| anyhow::anyhow!("{e}"))?)
    } else {
        None
    };
    let mut needed: Vec<(Language, std::path::PathBuf, Vec<String>)> = Vec::new();
    if let Some(app) = &app {
        for c in &app.components {
            if let Some(b) = &c.build {
                match needed.iter_mut().find(|n| n.0 == b.language) {
                    Some(n) => n.2.push(c.id.clone()),
                    None => needed.push((b.language, b.dir.clone(), vec![c.id.clone()])),
                }
            }
        }
    }
    let here = std::env::current_dir().unwrap_or_default();
    let mut missing_needed = false;
    let mut report = Vec::new();
    for lang in Language::ALL {
        let need = needed.iter().find(|n| n.0 == lang);
        let dir = need.map_or(here.clone(), |n| n.1.clone());
        let tools = toolchain::tools(lang, &dir);
        // What `wasmops build` installs itself (npm packages the project
        // lists) is not missing.
        let ok = tools.iter().all(toolchain::Tool::available);
        if need.is_some() && !ok {
            missing_needed = true;
        }
        report.push((lang, need.map(|n| n.2.clone()), tools, ok));
    }
    if args.format.json() {
        let v: Vec<serde_json::Value> = report
            .iter()
            .map(|(lang, need, tools, ok)| {
                serde_json::json!({
                    "language": lang.name(),
                    "ready": ok,
                    "needed_by": need,
                    "tools": tools,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (lang, need, tools, ok) in &report {
            let mark = if *ok { "ok" } else { "missing" };
            let by = match need {
                Some(ids) => format!(" (needed by {})", ids.join(", ")),
                None => String::new(),
            };
            println!("{}: {mark}{by}", lang.name());
            for t in tools {
                match (&t.path, &t.version) {
                    (Some(p), v) => println!(
                        "  found    {:<22} {} {}",
                        t.name,
                        p.display(),
                        v.as_deref().unwrap_or("")
                    ),
                    (None, _) if t.installed_by_build => println!(
                        "  by build {:<22} `wasmops build` installs it (npm install)",
                        t.name
                    ),
                    (None, _) if t.optional => println!(
                        "  optional {:<22} not installed (builds work without it): {}",
                        t.name, t.install
                    ),
                    (None, _) => println!("  missing  {:<22} install: {}", t.name, t.install),
                }
            }
        }
        match (&app, missing_needed) {
            (Some(_), true) => println!("\nthe app needs what is missing above"),
            (Some(_), false) => println!("\neverything the app needs is here"),
            (None, _) => println!("\nno wasmops.toml here: showing every language"),
        }
    }
    Ok(if missing_needed { 1 } else { 0 })
}
