//! `wasmops new`: a project from a template, ready for `wasmops build`.

use std::path::PathBuf;

use clap::Args;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

/// What each template is.
const DESCRIPTIONS: &[(&str, &str)] = &[
    ("http-rust", "HTTP handler in Rust (cargo, wasm32-wasip2)"),
    ("http-js", "HTTP handler in JavaScript (componentize-js)"),
    (
        "http-ts",
        "HTTP handler in TypeScript (tsc + componentize-js)",
    ),
    ("http-python", "HTTP handler in Python (componentize-py)"),
    (
        "cli-c",
        "command in C (clang + wasi-libc, preview1 adapter)",
    ),
    ("cli-go", "command in Go (GOOS=wasip1, preview1 adapter)"),
];

/// Create a project from a template: its sources, a `wasmops.toml` with the
/// build recipe, a README and a `.gitignore`. Without arguments, list the
/// templates.
#[derive(Args, Debug)]
pub struct NewArgs {
    /// The template (see --list).
    #[arg(value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// The project's name: lowercase letters, digits and `-`; also its directory.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Where to create it [default: ./NAME].
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// List the templates.
    #[arg(long)]
    pub list: bool,
}

fn valid_name(n: &str) -> bool {
    n.len() <= 63
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !n.ends_with('-')
}

pub fn run(args: &NewArgs) -> anyhow::Result<i32> {
    if args.list || args.template.is_none() {
        for (name, _) in embedded::TEMPLATES {
            let what = DESCRIPTIONS
                .iter()
                .find(|d| d.0 == *name)
                .map_or("", |d| d.1);
            println!("{name:<12} {what}");
        }
        return Ok(0);
    }
    let (Some(template), Some(name)) = (&args.template, &args.name) else {
        anyhow::bail!(
            "give the project a name too, e.g. `wasmops new {} hello`",
            args.template.as_deref().unwrap_or("http-rust")
        );
    };
    let Some((_, files)) = embedded::TEMPLATES.iter().find(|t| t.0 == template) else {
        let names: Vec<&str> = embedded::TEMPLATES.iter().map(|t| t.0).collect();
        anyhow::bail!(
            "unknown template `{template}`; use one of: {}",
            names.join(", ")
        );
    };
    if !valid_name(name) {
        anyhow::bail!(
            "invalid name `{name}`: use lowercase letters, digits and `-`, starting with a letter (e.g. `my-app`)"
        );
    }
    let dir = args.output.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        anyhow::bail!(
            "{} already exists and is not empty; pick another name or --output",
            dir.display()
        );
    }
    let crate_name = name.replace('-', "_");
    for (rel, text) in *files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name);
        std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    println!(
        "created {} ({template}); next: cd {} && wasmops build",
        dir.display(),
        dir.display()
    );
    Ok(0)
}
