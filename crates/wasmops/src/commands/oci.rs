//! `wasmops push` and `wasmops pull` with the local OCI layout store
//! (`oci-layout:PATH[:TAG]`).

use std::path::{Path, PathBuf};

use clap::Args;
use wasmops_oci::{ComponentInfo, Layout, LayoutRef};

/// Store a component as a CNCF Wasm OCI artifact (config
/// `application/vnd.wasm.config.v0+json`, one `application/wasm` layer) and
/// print its manifest digest.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// The component (.wasm).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where: `oci-layout:PATH[:TAG]` (tag `latest` by default).
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Print JSON (`{"digest": ..., "reference": ...}`).
    #[arg(long)]
    pub json: bool,
}

/// Fetch a component by reference, verifying every digest, and write it.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// What: `oci-layout:PATH[:TAG|@sha256:DIGEST]`.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Where to write the component.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: PathBuf,
}

/// RFC 3339 UTC time of now, to the second.
fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut s = String::with_capacity(20);
    crate::accesslog::write_rfc3339(&mut s, now, false);
    s
}

fn parse_ref(s: &str) -> anyhow::Result<LayoutRef> {
    LayoutRef::parse(s).map_err(|e| {
        anyhow::anyhow!("{e}; references name a local OCI layout: oci-layout:PATH[:TAG]")
    })
}

pub fn push(args: &PushArgs) -> anyhow::Result<i32> {
    let r = parse_ref(&args.reference)?;
    let wasm = std::fs::read(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let report = wasmops_inspect::inspect(&wasm)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    if !report.valid {
        anyhow::bail!(
            "{}: not a valid WebAssembly file: {}",
            args.file.display(),
            report.validation_error.as_deref().unwrap_or("invalid")
        );
    }
    let component = matches!(report.kind, wasmops_inspect::WasmKind::Component);
    let mut annotations = Vec::new();
    for (field, key) in [
        ("version", "version"),
        ("description", "description"),
        ("licenses", "licenses"),
        ("source", "source"),
        ("revision", "revision"),
        ("homepage", "url"),
    ] {
        if let Some(v) = report.metadata_value(field) {
            annotations.push((key.to_string(), v.to_string()));
        }
    }
    if let Some(name) = args.file.file_name() {
        annotations.push(("title".into(), name.to_string_lossy().into_owned()));
    }
    let info = ComponentInfo {
        os: if component { "wasip2" } else { "wasip1" }.into(),
        imports: report.imports.iter().map(|i| i.display_name()).collect(),
        exports: report.exports.iter().map(|e| e.name.clone()).collect(),
        author: report.metadata_value("authors").map(str::to_string),
        annotations,
        created: now_rfc3339(),
    };
    let store = Layout::open(&r.path, true)?;
    if r.reference.starts_with("sha256:") {
        anyhow::bail!("push needs a tag, not a digest: oci-layout:PATH:TAG");
    }
    let d = store.push_component(&wasm, &info, &r.reference)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"digest": d, "reference": args.reference})
        );
    } else {
        println!("{d}");
    }
    Ok(0)
}

/// The bytes of a component given as a file path or an `oci-layout:` reference.
pub fn read_source(source: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let s = source.to_string_lossy();
    if !s.starts_with("oci-layout:") {
        return Ok(None);
    }
    let r = parse_ref(&s)?;
    let store = Layout::open(&r.path, false)?;
    Ok(Some(store.pull_component(&r.reference)?.wasm))
}

pub fn pull(args: &PullArgs) -> anyhow::Result<i32> {
    let r = parse_ref(&args.reference)?;
    let store = Layout::open(&r.path, false)?;
    let pulled = store.pull_component(&r.reference)?;
    let tmp = args.output.with_extension("wasm.partial");
    std::fs::write(&tmp, &pulled.wasm)
        .and_then(|()| std::fs::rename(&tmp, &args.output))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.output.display()))?;
    println!("{} {}", pulled.manifest_digest, args.output.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_shape() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T");
    }
}
