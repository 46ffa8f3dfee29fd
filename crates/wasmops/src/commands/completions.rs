//! `wasmops completions SHELL` and `wasmops man`: generated from the
//! command-line definitions, so they never drift from the commands.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

/// Print the completion script of a shell, e.g. `wasmops completions bash >
/// ~/.local/share/bash-completion/completions/wasmops`, or for zsh into a
/// directory of `$fpath` as `_wasmops`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Write the man pages (`wasmops.1` and one per command, `wasmops-up.1`,
/// ...) into a directory, e.g. `wasmops man -o ~/.local/share/man/man1`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// The directory to write them in (created if missing).
    #[arg(short, long, value_name = "DIR", default_value = "man")]
    pub output: PathBuf,
}

pub fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<i32> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "wasmops", &mut out);
    use std::io::Write as _;
    std::io::stdout().write_all(&out)?;
    Ok(0)
}

pub fn man(args: &ManArgs, cmd: clap::Command) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    clap_mangen::generate_to(cmd, &args.output)
        .with_context(|| format!("cannot write the man pages in {}", args.output.display()))?;
    let n = std::fs::read_dir(&args.output)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
                .count()
        })
        .unwrap_or(0);
    println!("wrote {n} man pages in {}", args.output.display());
    Ok(0)
}
