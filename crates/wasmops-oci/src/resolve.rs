//! Resolving what `run`, `serve`, `up` and the node are given: a local
//! file, or a reference (`oci-layout:PATH[:TAG|@DIGEST]`, or
//! `[HOST[:PORT]/]REPO[:TAG][@DIGEST]`) pulled under a signature policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::distribution::{self, ArtifactKind, Pulled, Target};
use crate::registry::{Registry, RegistryOptions};
use crate::{Layout, LayoutRef, OciError, Reference, sign};

/// How references are reached and what they must carry.
#[derive(Debug, Clone, Default)]
pub struct SourcePolicy {
    /// Refuse a reference unless it carries a signature that verifies with
    /// this public key (cosign format). Local files are not affected.
    pub verify_key: Option<PathBuf>,
    /// Registries reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
}

/// Whether `source` reads as a reference rather than a file path.
pub fn is_reference(source: &str) -> bool {
    source.starts_with("oci-layout:") || Reference::looks_like_registry(source)
}

/// A reference as a push or pull target; a layout is created when `create`.
pub fn target(s: &str, insecure: &[String], create: bool) -> Result<Target, OciError> {
    if s.starts_with("oci-layout:") {
        let r = LayoutRef::parse(s)?;
        return Ok(Target::Layout {
            store: Layout::open(&r.path, create)?,
            reference: r.reference,
        });
    }
    let reference = Reference::parse(s).map_err(|e| {
        OciError::Invalid(format!(
            "{e}; a reference is HOST[:PORT]/REPO[:TAG][@sha256:DIGEST] or oci-layout:PATH[:TAG]"
        ))
    })?;
    Ok(Target::Registry {
        client: Arc::new(Registry::new(RegistryOptions {
            insecure: insecure.to_vec(),
            ..RegistryOptions::default()
        })?),
        reference,
    })
}

/// Reads a cosign public key, refusing a private one.
pub fn load_public_key(path: &Path) -> Result<sign::PublicKey, OciError> {
    let pem = std::fs::read(path)
        .map_err(|e| OciError::Io(format!("cannot read the key {}: {e}", path.display())))?;
    if String::from_utf8_lossy(&pem).contains("PRIVATE KEY") {
        return Err(OciError::Invalid(format!(
            "{} is a private key; verify with the public key (`.pub`)",
            path.display()
        )));
    }
    sign::verifier(&pem)
}

/// Pulls `source` into `cache`, verifying its signature first when the
/// policy asks, and then pulling exactly the verified digest. Returns what
/// was pulled and the layout its blobs are in.
pub async fn pull_checked(
    source: &str,
    policy: &SourcePolicy,
    cache: &Layout,
) -> Result<(Pulled, Layout), OciError> {
    let mut t = target(source, &policy.insecure, false)?;
    if let Some(key) = &policy.verify_key {
        let key = load_public_key(key)?;
        let v = sign::verify(&t, &key).await.map_err(|e| {
            OciError::Invalid(format!(
                "refusing {source}: {e} (the signature policy requires a valid signature)"
            ))
        })?;
        // Pull exactly what was verified, even if the tag moves meanwhile.
        t = match t {
            Target::Registry { client, reference } => Target::Registry {
                client,
                reference: reference.with_digest(&v.digest),
            },
            Target::Layout { store, .. } => Target::Layout {
                store,
                reference: v.digest,
            },
        };
    }
    let pulled = distribution::pull(&t, cache, &crate::registry::quiet()).await?;
    let blobs_in = match t {
        Target::Layout { store, .. } => store,
        Target::Registry { .. } => cache.clone(),
    };
    Ok((pulled, blobs_in))
}

/// The one component of a pulled artifact, with its manifest digest.
pub fn single_component(
    source: &str,
    pulled: &Pulled,
    store: &Layout,
) -> Result<Vec<u8>, OciError> {
    if pulled.kind == ArtifactKind::App {
        return Err(OciError::Invalid(format!(
            "{source} is a wasmops app, not a single component"
        )));
    }
    let mut components = crate::app::components(store, pulled)?;
    if components.len() != 1 {
        return Err(OciError::Invalid(format!(
            "{source} holds {} components ({}); pull it with `wasmops pull {source} -o DIR` and pick one",
            components.len(),
            components
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    components
        .pop()
        .map(|(_, w)| w)
        .ok_or_else(|| OciError::Invalid(format!("{source} holds no component")))
}

/// An app artifact unpacked (once per digest) under `root`; returns the
/// app directory.
pub fn unpacked_app(
    source: &str,
    pulled: &Pulled,
    store: &Layout,
    root: &Path,
) -> Result<PathBuf, OciError> {
    if !matches!(pulled.kind, ArtifactKind::App | ArtifactKind::Spin) {
        return Err(OciError::Invalid(format!(
            "{source} is a single component, not an app"
        )));
    }
    let dir = root.join(&pulled.digest[7..]);
    if !dir.join("wasmops.toml").is_file() && !dir.join("spin.toml").is_file() {
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        crate::app::unpack_app(store, pulled, &dir)?;
    }
    Ok(dir)
}
