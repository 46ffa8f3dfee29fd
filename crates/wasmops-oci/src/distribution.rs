//! Push and pull over either kind of store: a registry, or a local OCI
//! layout. Pulls from a registry land in a local layout (the content store),
//! which also serves as the cache: a blob it holds, verified, is not fetched
//! again.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::registry::{Progress, ProgressFn, Registry};
use crate::{Layout, MANIFEST_MEDIA_TYPE, OciError, Reference};

/// Where an artifact lives.
pub enum Target {
    Registry {
        client: Arc<Registry>,
        reference: Reference,
    },
    Layout {
        store: Layout,
        /// A tag or a `sha256:` digest.
        reference: String,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Registry { reference, .. } => write!(f, "{reference}"),
            Target::Layout { store, reference } => {
                write!(f, "oci-layout:{}", store.root().display())?;
                if reference.starts_with("sha256:") {
                    write!(f, "@{reference}")
                } else {
                    write!(f, ":{reference}")
                }
            }
        }
    }
}

/// The kinds of artifact wasmops reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A CNCF Wasm artifact (one component).
    Component,
    /// A wasmops app (manifest and components).
    App,
    /// A Spin app (`application/vnd.fermyon.spin.application.v1+config`).
    Spin,
}

/// A pulled artifact: its manifest, verified, with every blob it names
/// present and verified in `store`.
pub struct Pulled {
    pub digest: String,
    pub manifest: Value,
    pub manifest_bytes: Vec<u8>,
    pub config: Vec<u8>,
    pub kind: ArtifactKind,
    /// Blobs that came over the network (the others were in the store).
    pub fetched: usize,
}

/// A blob to push.
pub struct Blob {
    pub digest: String,
    pub data: Bytes,
}

impl Blob {
    pub fn new(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Self {
            digest: crate::digest(&data),
            data,
        }
    }
}

/// Blobs larger than this are refused before any byte is fetched.
pub const MAX_LAYER: u64 = 2 << 30;

/// Descriptors (`digest`, `size`) a manifest names: config, then layers.
/// The config may be 4 MiB at most, a layer 2 GiB.
pub fn descriptors(manifest: &Value) -> Result<Vec<(String, u64)>, OciError> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let config = std::iter::once(&manifest["config"]);
    let layers = manifest["layers"].as_array().into_iter().flatten();
    for d in config.chain(layers) {
        let digest = d["digest"].as_str().unwrap_or_default();
        if !crate::valid_digest(digest) {
            return Err(OciError::Invalid(format!(
                "the manifest names a blob with an unsupported digest `{digest}` (only sha256 is read)"
            )));
        }
        let size = d["size"]
            .as_u64()
            .ok_or_else(|| OciError::Invalid(format!("the manifest gives no size for {digest}")))?;
        let limit = if out.is_empty() {
            crate::registry::MAX_MANIFEST as u64
        } else {
            MAX_LAYER
        };
        if size > limit {
            return Err(OciError::Invalid(format!(
                "the manifest declares {digest} as {size} bytes, more than the {limit} wasmops accepts for a {}",
                if out.is_empty() { "config" } else { "layer" }
            )));
        }
        out.push((digest.to_string(), size));
    }
    Ok(out)
}

/// What kind of artifact a manifest describes.
pub fn kind_of(manifest: &Value) -> Result<ArtifactKind, OciError> {
    let config = manifest["config"]["mediaType"].as_str().unwrap_or("");
    let layer_types: Vec<&str> = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["mediaType"].as_str())
        .collect();
    Ok(match config {
        crate::app::APP_CONFIG_MEDIA_TYPE => ArtifactKind::App,
        crate::SPIN_CONFIG_MEDIA_TYPE => ArtifactKind::Spin,
        // Spin's current layout: an image config, the locked app a layer.
        _ if layer_types.contains(&crate::SPIN_CONFIG_MEDIA_TYPE) => ArtifactKind::Spin,
        _ if layer_types.iter().any(|t| {
            *t == crate::WASM_LAYER_MEDIA_TYPE || *t == crate::SPIN_WASM_LAYER_MEDIA_TYPE
        }) =>
        {
            ArtifactKind::Component
        }
        _ => {
            return Err(OciError::Invalid(format!(
                "not a Wasm artifact: config `{config}` with layers [{}]; wasmops reads CNCF Wasm artifacts, wasmops apps and Spin apps",
                layer_types.join(", ")
            )));
        }
    })
}

/// Pulls an artifact: fetches its manifest and every blob the content store
/// lacks (verifying each), and records the reference in the store.
pub async fn pull(
    target: &Target,
    cache: &Layout,
    progress: &ProgressFn,
) -> Result<Pulled, OciError> {
    let (digest, manifest_bytes) = match target {
        Target::Layout { store, reference } => {
            let d = store.resolve(reference)?;
            let bytes = store.get_blob(&d, "manifest")?;
            (d, bytes)
        }
        Target::Registry { client, reference } => {
            if let Some(d) = &reference.digest
                && cache.has_blob(d)
                && let Ok(bytes) = cache.get_blob(d, "manifest")
            {
                (d.clone(), bytes)
            } else {
                let f = client.get_manifest(reference).await?;
                (f.digest, f.bytes)
            }
        }
    };
    let manifest: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| OciError::Invalid(format!("manifest {digest} is not JSON: {e}")))?;
    if !manifest.is_object() {
        return Err(OciError::Invalid(format!(
            "manifest {digest} is not an object"
        )));
    }
    let kind = kind_of(&manifest)?;
    let store = match target {
        Target::Layout { store, .. } => store,
        Target::Registry { .. } => cache,
    };
    // Every blob is fetched to a temporary file and verified; none joins
    // the store until all have, so a bad artifact leaves nothing behind.
    let mut fetched = Vec::new();
    for (d, size) in descriptors(&manifest)? {
        match target {
            Target::Layout { store, .. } => store.verify_blob(&d, size)?,
            Target::Registry { client, reference } => {
                if cache.has_valid_blob(&d, size) || fetched.iter().any(|(f, _)| *f == d) {
                    progress(Progress::Done {
                        digest: d.clone(),
                        skipped: true,
                    });
                    continue;
                }
                let mut w = cache.blob_writer()?;
                client
                    .fetch_blob(reference, &d, size, w.file(), progress)
                    .await?;
                fetched.push((d, w));
            }
        }
    }
    let fetched_count = fetched.len();
    for (d, w) in fetched {
        w.commit(&d)?;
    }
    let config = store.get_blob(
        manifest["config"]["digest"].as_str().unwrap_or_default(),
        "config",
    )?;
    if let Target::Registry { reference, .. } = target {
        cache.put_blob(&manifest_bytes)?;
        cache.tag(&manifest_bytes, &reference.to_string())?;
        cache.tag(&manifest_bytes, &reference.with_digest(&digest).to_string())?;
    }
    Ok(Pulled {
        digest,
        manifest,
        manifest_bytes,
        config,
        kind,
        fetched: fetched_count,
    })
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: String,
    /// Blobs sent.
    pub uploaded: usize,
    /// Blobs the target had already.
    pub skipped: usize,
}

/// Pushes blobs then a manifest; blobs the target has are not sent again.
pub async fn push(
    target: &Target,
    blobs: &[Blob],
    manifest: &[u8],
    progress: &ProgressFn,
) -> Result<Pushed, OciError> {
    let mut uploaded = 0;
    let digest = match target {
        Target::Layout { store, reference } => {
            for b in blobs {
                let skipped = store.has_blob(&b.digest);
                store.put_blob(&b.data)?;
                uploaded += usize::from(!skipped);
                progress(Progress::Done {
                    digest: b.digest.clone(),
                    skipped,
                });
            }
            if reference.starts_with("sha256:") {
                store.put_blob(manifest)?
            } else {
                store.tag(manifest, reference)?
            }
        }
        Target::Registry { client, reference } => {
            for b in blobs {
                if client
                    .push_blob(reference, &b.digest, b.data.clone(), progress)
                    .await?
                {
                    uploaded += 1;
                }
            }
            let media_type = serde_json::from_slice::<Value>(manifest)
                .ok()
                .and_then(|m| m["mediaType"].as_str().map(str::to_string))
                .unwrap_or_else(|| MANIFEST_MEDIA_TYPE.to_string());
            client
                .put_manifest(reference, reference.reference(), manifest, &media_type)
                .await?
        }
    };
    Ok(Pushed {
        digest,
        uploaded,
        skipped: blobs.len() - uploaded,
    })
}

/// The manifest digest a target names, without fetching blobs.
pub async fn resolve(target: &Target) -> Result<String, OciError> {
    match target {
        Target::Layout { store, reference } => store.resolve(reference),
        Target::Registry { client, reference } => {
            if let Some(d) = &reference.digest {
                return Ok(d.clone());
            }
            Ok(client.get_manifest(reference).await?.digest)
        }
    }
}

/// Reads a manifest (verified) at a tag; `None` when the tag is absent.
pub async fn manifest_at(target: &Target, tag: &str) -> Result<Option<Vec<u8>>, OciError> {
    match target {
        Target::Layout { store, .. } => match store.resolve(tag) {
            Ok(d) => Ok(Some(store.get_blob(&d, "manifest")?)),
            Err(OciError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        },
        Target::Registry { client, reference } => {
            let r = reference.with_tag(tag);
            match client.get_manifest(&r).await {
                Ok(f) => Ok(Some(f.bytes)),
                Err(OciError::Missing(_)) => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}

/// Reads a blob (verified) from a target, into memory; for small blobs
/// such as signature payloads.
pub async fn small_blob(target: &Target, digest: &str, size: u64) -> Result<Vec<u8>, OciError> {
    if size > crate::registry::MAX_MANIFEST as u64 {
        return Err(OciError::Invalid(format!(
            "blob {digest} is too large ({size} bytes)"
        )));
    }
    match target {
        Target::Layout { store, .. } => store.get_blob(digest, "blob"),
        Target::Registry { client, reference } => {
            let mut buf = Vec::new();
            client
                .fetch_blob(reference, digest, size, &mut buf, &crate::registry::quiet())
                .await?;
            Ok(buf)
        }
    }
}

/// A target with the same repository at another tag.
pub fn sibling(target: &Target, tag: &str) -> Result<Target, OciError> {
    Ok(match target {
        Target::Registry { client, reference } => Target::Registry {
            client: client.clone(),
            reference: reference.with_tag(tag),
        },
        Target::Layout { store, .. } => Target::Layout {
            store: Layout::open(store.root(), false)?,
            reference: tag.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_blobs_are_refused_up_front() {
        let d = crate::digest(b"x");
        let m = |config: u64, layer: u64| {
            serde_json::json!({
                "config": {"digest": d, "size": config},
                "layers": [{"digest": d, "size": layer, "mediaType": "application/wasm"}],
            })
        };
        assert!(descriptors(&m(100, 1 << 20)).is_ok());
        let e = descriptors(&m(64 << 20, 1)).unwrap_err().to_string();
        assert!(e.contains("config"), "{e}");
        let e = descriptors(&m(1, 3 << 30)).unwrap_err().to_string();
        assert!(e.contains("layer"), "{e}");
        let bad = serde_json::json!({"config": {"digest": "md5:00", "size": 1}});
        assert!(descriptors(&bad).is_err());
    }
}
