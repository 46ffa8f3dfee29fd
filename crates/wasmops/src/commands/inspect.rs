//! `wasmops inspect`, `validate`, `scan` and `check`: what a component is,
//! whether it is valid for a world, what it is made of, and whether any of
//! that breaks a policy or is known to be vulnerable.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::options::Format;
use wasmops_inspect::scan::{AdvisoryDb, Policy, ScanReport, Severity};

/// A file's WebAssembly binary: the text format (`.wat`) is assembled,
/// as `run` does.
fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let text = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'(' || b == b';');
    if !text {
        return Ok(bytes);
    }
    wat::parse_bytes(&bytes)
        .map(|b| b.into_owned())
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid WebAssembly text: {}",
                path.display(),
                wasmops_component::one_line(&e.to_string())
            )
        })
}

/// Show what a component (or core module) is: its world, its capabilities
/// in plain words, producers, metadata, embedded Rust dependencies, size by
/// section and SHA-256.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The file (.wasm).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print the component's world as WIT only.
    #[arg(long)]
    pub wit: bool,
}

pub fn inspect(args: &InspectArgs) -> anyhow::Result<i32> {
    let bytes = read(&args.file)?;
    let report = wasmops_inspect::inspect(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    if args.wit {
        match &report.wit {
            Some(wit) => print!("{wit}"),
            None => anyhow::bail!(
                "{}: no WIT to show ({}); `--wit` needs a valid component",
                args.file.display(),
                report
                    .notes
                    .first()
                    .map_or("not a component", String::as_str)
            ),
        }
        return Ok(0);
    }
    match args.format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => println!("{}", report.to_json()),
    }
    Ok(0)
}

/// Validate components and core modules with the features the host
/// enables; with --world, also check that each component fits that world:
/// the imports it does not provide and the exports that are missing.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The files (.wasm).
    #[arg(value_name = "FILES", required = true)]
    pub files: Vec<PathBuf>,
    /// A world to conform to: the strict `wasi:http/proxy`,
    /// `wasi:cli/command`, `wasi:http/service`, or `wasmops:host/http`, what
    /// the wasmops host gives an HTTP component (the proxy world and the
    /// `wasi:cli`, filesystem, socket, key-value and config interfaces that
    /// language runtimes import, and Spin's key-value, variables, SQLite and
    /// Redis interfaces; each granted or denied at run time).
    #[arg(long, value_name = "WORLD")]
    pub world: Option<String>,
    #[command(flatten)]
    pub format: crate::options::FormatArg,
}

pub fn validate(args: &ValidateArgs) -> anyhow::Result<i32> {
    let json = args.format.json();
    let mut failed = 0;
    let mut results = Vec::new();
    for f in &args.files {
        let shown = f.display().to_string();
        let mut entry = serde_json::json!({ "file": shown, "valid": false });
        let error = match read(f) {
            Err(e) => Some(e.to_string()),
            Ok(bytes) => match wasmops_inspect::validate(&bytes, wasmops_inspect::features()) {
                Err(e) => Some(format!("{shown}: invalid: {e}")),
                Ok(()) => {
                    entry["valid"] = true.into();
                    match &args.world {
                        None => {
                            if !json {
                                println!("{shown}: valid");
                            }
                            None
                        }
                        Some(world) => {
                            entry["world"] = world.as_str().into();
                            match wasmops_inspect::conforms(&bytes, world) {
                                Ok(c) => {
                                    entry["conforms"] = c.is_ok().into();
                                    entry["missing_exports"] = c.missing_exports.clone().into();
                                    entry["unsupported_imports"] =
                                        c.unsupported_imports.clone().into();
                                    if c.is_ok() {
                                        if !json {
                                            println!("{shown}: valid, conforms to {world}");
                                        }
                                        None
                                    } else {
                                        let mut why = Vec::new();
                                        if !c.missing_exports.is_empty() {
                                            why.push(format!(
                                                "missing exports: {}",
                                                c.missing_exports.join(", ")
                                            ));
                                        }
                                        if !c.unsupported_imports.is_empty() {
                                            why.push(format!(
                                                "imports the world does not provide: {}",
                                                c.unsupported_imports.join(", ")
                                            ));
                                        }
                                        Some(format!(
                                            "{shown}: does not conform to {world}: {}",
                                            why.join("; ")
                                        ))
                                    }
                                }
                                Err(e) => Some(format!("{shown}: {e}")),
                            }
                        }
                    }
                }
            },
        };
        if let Some(e) = error {
            failed += 1;
            eprintln!("error: {e}");
            entry["error"] = e.into();
        }
        results.push(entry);
    }
    if json {
        crate::options::print_json(&serde_json::json!({
            "ok": failed == 0,
            "files": results,
        }));
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScanFormat {
    Table,
    Json,
    Sarif,
    Cyclonedx,
}

/// Policy, vulnerabilities and SBOM.
#[derive(Args, Debug)]
pub struct ScanOptions {
    /// A policy file (TOML) instead of the built-in default.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The RustSec advisory database (a directory) [default: $WASMOPS_ADVISORY_DB, or ~/.cache/wasmops/advisory-db when present].
    #[arg(long, value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// Clone or update the advisory database from this git URL first.
    #[arg(long, value_name = "GIT_URL")]
    pub update_db: Option<String>,
    #[arg(long, value_enum, default_value_t = ScanFormat::Table)]
    pub format: ScanFormat,
    /// Exit 1 when a finding or vulnerability is at least this severe
    /// [default: high]. Given explicitly, a scan that could not check
    /// vulnerabilities (no advisory database) fails too.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    pub fail_on: Option<Severity>,
}

impl ScanOptions {
    /// Whether the reports fail the run; an explicit `--fail-on` with no
    /// advisory database fails it, saying why.
    fn failing(
        &self,
        reports: &[(
            wasmops_inspect::scan::ScanReport,
            wasmops_inspect::Report,
            String,
        )],
    ) -> bool {
        let threshold = self.fail_on.unwrap_or(Severity::High);
        let unchecked = reports.iter().any(|(s, _, _)| !s.advisory_database);
        if self.fail_on.is_some() && unchecked {
            eprintln!(
                "error: --fail-on {threshold}: vulnerabilities were not checked: {}",
                wasmops_inspect::scan::NO_DATABASE
            );
            return true;
        }
        reports.iter().any(|(s, _, _)| s.fails(threshold))
    }
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
}

fn default_db() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WASMOPS_ADVISORY_DB") {
        return Some(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME")?;
    let d = PathBuf::from(home).join(".cache/wasmops/advisory-db");
    d.is_dir().then_some(d)
}

impl ScanOptions {
    fn load(&self) -> anyhow::Result<(Policy, Option<AdvisoryDb>)> {
        let policy = match &self.policy {
            Some(p) => Policy::from_file(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            None => Policy::default(),
        };
        let dir = self.db.clone().or_else(default_db);
        if let Some(url) = &self.update_db {
            let dir = dir
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--update-db needs a directory: give --db DIR"))?;
            let outcome = wasmops_inspect::scan::refresh_db(url, &dir)
                .map_err(|e| anyhow::anyhow!("cannot update the advisory database: {e}"))?;
            eprintln!("wasmops: advisory database {}: {outcome:?}", dir.display());
        }
        let db = match dir {
            Some(d) => Some(AdvisoryDb::load(&d).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the advisory database {}: {e}; fetch it with --update-db https://github.com/rustsec/advisory-db --db {}",
                    d.display(),
                    d.display()
                )
            })?),
            None => None,
        };
        Ok((policy, db))
    }
}

/// Check a component (or every component of an app) against a policy and
/// the RustSec advisory database, and write a report, SARIF or a CycloneDX
/// SBOM. For an app, SARIF is one run over its components and the SBOM
/// describes the app with each component in it.
#[derive(Args, Debug)]
pub struct ScanArgs {
    /// A .wasm file, an app (a directory with `wasmops.toml`, or the
    /// manifest), or a registry reference to either (`HOST/REPO:TAG`,
    /// `oci-layout:PATH`).
    #[arg(value_name = "FILE|APP|REF")]
    pub target: PathBuf,
    #[command(flatten)]
    pub options: ScanOptions,
    #[command(flatten)]
    pub source: crate::sources::SourceArgs,
}

/// What is scanned: one component, or an app's components.
struct Scanned {
    /// The app's name and version, when the target is an app.
    app: Option<(String, Option<String>)>,
    /// Per component: its scan, its inspection, its name.
    reports: Vec<(ScanReport, wasmops_inspect::Report, String)>,
}

fn is_app_path(target: &Path) -> bool {
    target.is_dir() || wasmops_manifest::is_app_path(target)
}

/// A component's path as reports name it: relative to the working
/// directory when under it (code scanning resolves such paths in the
/// repository), absolute otherwise.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

fn scan_bytes(
    items: Vec<(String, String, Vec<u8>)>,
    options: &ScanOptions,
) -> anyhow::Result<Vec<(ScanReport, wasmops_inspect::Report, String)>> {
    let (policy, db) = options.load()?;
    let mut out = Vec::new();
    for (name, uri, bytes) in items {
        let report = wasmops_inspect::inspect(&bytes).map_err(|e| anyhow::anyhow!("{uri}: {e}"))?;
        let scanned = wasmops_inspect::scan(&uri, &report, &policy, db.as_ref());
        out.push((scanned, report, name));
    }
    Ok(out)
}

fn print_reports(scanned: &Scanned, format: ScanFormat) -> anyhow::Result<()> {
    let reports = &scanned.reports;
    match (format, &scanned.app) {
        (ScanFormat::Table, _) => {
            for (s, _, name) in reports {
                if reports.len() > 1 {
                    println!("== {name}");
                }
                print!("{}", s.to_table());
            }
        }
        (ScanFormat::Json, _) => {
            let all: Vec<serde_json::Value> = reports
                .iter()
                .map(|(s, _, _)| serde_json::from_str(&s.to_json()).unwrap_or_default())
                .collect();
            if all.len() == 1 && scanned.app.is_none() {
                println!("{}", serde_json::to_string_pretty(&all[0])?);
            } else {
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
        }
        (ScanFormat::Sarif, None) => {
            let (s, _, _) = &reports[0];
            println!("{}", s.to_sarif(&s.file));
        }
        (ScanFormat::Sarif, Some(_)) => {
            let scans: Vec<&ScanReport> = reports.iter().map(|(s, _, _)| s).collect();
            println!("{}", wasmops_inspect::scan::sarif_many(&scans));
        }
        (ScanFormat::Cyclonedx, None) => {
            let (s, r, _) = &reports[0];
            println!("{}", s.to_cyclonedx(r));
        }
        (ScanFormat::Cyclonedx, Some((name, version))) => {
            let parts: Vec<wasmops_inspect::scan::BomPart<'_>> = reports
                .iter()
                .map(|(s, r, id)| wasmops_inspect::scan::BomPart {
                    id,
                    report: r,
                    scan: s,
                })
                .collect();
            println!(
                "{}",
                wasmops_inspect::scan::app_cyclonedx(name, version.as_deref(), &parts)
            );
        }
    }
    Ok(())
}

pub fn scan(args: &ScanArgs) -> anyhow::Result<i32> {
    let target = &args.target;
    let (app_dir, one) = match crate::sources::fetch_source(target, &args.source)? {
        Some(crate::sources::Fetched::App(dir)) => (Some(dir), None),
        Some(crate::sources::Fetched::Component(bytes)) => (None, Some(bytes)),
        None if is_app_path(target) => (Some(target.clone()), None),
        None => (None, Some(read(target)?)),
    };
    let scanned = match (app_dir, one) {
        (Some(dir), _) => {
            let mut app = wasmops_manifest::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::sources::resolve_dependencies(&mut app, &args.source)?;
            let mut items = Vec::new();
            for c in &app.components {
                let bytes = wasmops_app::manifest::component_bytes(&app, c)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                items.push((c.id.clone(), shown(&c.source), bytes));
            }
            Scanned {
                app: Some((app.name.clone(), app.version.clone())),
                reports: scan_bytes(items, &args.options)?,
            }
        }
        (None, bytes) => Scanned {
            app: None,
            reports: scan_bytes(
                vec![(
                    target.display().to_string(),
                    target.display().to_string(),
                    bytes.unwrap_or_default(),
                )],
                &args.options,
            )?,
        },
    };
    print_reports(&scanned, args.options.format)?;
    let failing = args.options.failing(&scanned.reports);
    Ok(if failing { 1 } else { 0 })
}

/// Validate and scan every component of an app: the one command a CI job
/// calls. Exits 1 on an invalid component or a finding at --fail-on.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The app: a directory holding `wasmops.toml`, the manifest, or a
    /// registry reference to an app artifact.
    #[arg(value_name = "DIR|FILE|REF", default_value = ".")]
    pub app: PathBuf,
    #[command(flatten)]
    pub options: ScanOptions,
    #[command(flatten)]
    pub source: crate::sources::SourceArgs,
}

pub fn check(args: &CheckArgs) -> anyhow::Result<i32> {
    let dir = match crate::sources::fetch_source(&args.app, &args.source)? {
        Some(crate::sources::Fetched::App(dir)) => dir,
        Some(crate::sources::Fetched::Component(_)) => anyhow::bail!(
            "{} is a single component, not an app; check it with `wasmops scan {}`",
            args.app.display(),
            args.app.display()
        ),
        None => args.app.clone(),
    };
    let mut app = wasmops_manifest::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::sources::resolve_dependencies(&mut app, &args.source)?;
    let mut invalid = 0;
    let mut items = Vec::new();
    for c in &app.components {
        let bytes = match wasmops_app::manifest::component_bytes(&app, c) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                invalid += 1;
                continue;
            }
        };
        if let Err(e) = wasmops_inspect::validate(&bytes, wasmops_inspect::features()) {
            eprintln!("error: component `{}`: invalid: {e}", c.id);
            invalid += 1;
            continue;
        }
        // A routed component handles HTTP (WASIp2 or WASIp3); one without
        // routes is a command, or a handler only other components call (a
        // private Spin component).
        let http = ["wasi:http/proxy", "wasi:http/service"];
        let worlds: &[&str] = if app.is_library(&c.id) {
            // Only a dependency of others: it may export anything.
            &[]
        } else if c.routes.is_empty() {
            &["wasi:cli/command", http[0], http[1]]
        } else {
            &http
        };
        let missing: Vec<Vec<String>> = worlds
            .iter()
            .filter_map(|w| wasmops_inspect::conforms(&bytes, w).ok())
            .map(|conf| conf.missing_exports)
            .collect();
        if !missing.is_empty() && missing.iter().all(|m| !m.is_empty()) {
            let wanted: Vec<String> = missing.into_iter().flatten().collect();
            eprintln!(
                "error: component `{}`: exports none of {} ({})",
                c.id,
                wanted.join(", "),
                if c.routes.is_empty() {
                    "a command, or an HTTP handler"
                } else {
                    "it has routes, so it must handle HTTP"
                }
            );
            invalid += 1;
            continue;
        }
        items.push((c.id.clone(), shown(&c.source), bytes));
    }
    let scanned = Scanned {
        app: Some((app.name.clone(), app.version.clone())),
        reports: scan_bytes(items, &args.options)?,
    };
    print_reports(&scanned, args.options.format)?;
    let failing = args.options.failing(&scanned.reports);
    Ok(if failing || invalid > 0 { 1 } else { 0 })
}
