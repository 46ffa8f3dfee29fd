//! OCI distribution of components: the CNCF "Wasm OCI Artifact" layout
//! (config `application/vnd.wasm.config.v0+json`, one `application/wasm`
//! layer), and a local content store in the OCI image layout on disk
//! (`oci-layout:PATH[:TAG|@DIGEST]` references), where every blob is
//! addressed and verified by its sha256 digest.

use std::path::{Path, PathBuf};

pub mod app;
pub mod auth;
pub mod distribution;
mod reference;
pub mod registry;
pub mod resolve;
pub mod sign;
pub mod spin;

pub use reference::Reference;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Spin's app config and its component layers.
pub const SPIN_CONFIG_MEDIA_TYPE: &str = "application/vnd.fermyon.spin.application.v1+config";
pub const SPIN_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid reference `{0}`: {1}")]
    BadReference(String, &'static str),
    #[error("{0}")]
    Io(String),
    #[error("no `{reference}` in {store}; it has: {known}")]
    NotFound {
        reference: String,
        store: String,
        known: String,
    },
    #[error(
        "digest mismatch for {what}: expected {expected}, got {actual}; {origin} holds corrupt or tampered content"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
        /// Where the bad content came from: the local content store, or a
        /// registry.
        origin: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Auth(String),
    /// A registry answered 404, or a layout named is not there.
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("credential helper {0} failed: {1}")]
    Helper(String, String),
    #[error("{0}")]
    Signature(String),
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    hex_digest(&Sha256::digest(bytes))
}

/// `sha256:<hex>` of a finished sha256.
pub(crate) fn hex_digest(h: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in h {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The default content store: `$WASMOPS_OCI_STORE`, else
/// `$XDG_CACHE_HOME/wasmops/oci`, else `~/.cache/wasmops/oci`.
pub fn default_store_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WASMOPS_OCI_STORE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("wasmops/oci");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/wasmops/oci")
}

pub(crate) fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// A reference to an artifact in a local OCI layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    pub path: PathBuf,
    /// A tag, or a `sha256:` digest.
    pub reference: String,
}

impl LayoutRef {
    /// Parses `oci-layout:PATH[:TAG]` or `oci-layout:PATH@sha256:HEX` (tag
    /// `latest` by default).
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let rest = s
            .strip_prefix("oci-layout:")
            .ok_or_else(|| OciError::BadReference(s.into(), "expected oci-layout:PATH[:TAG]"))?;
        let (path, reference) = if let Some((p, d)) = rest.rsplit_once('@') {
            if !valid_digest(d) {
                return Err(OciError::BadReference(
                    s.into(),
                    "the digest must be sha256:<64 lowercase hex>",
                ));
            }
            (p, d.to_string())
        } else {
            match rest.rsplit_once(':') {
                Some((p, t)) if !t.contains('/') => (p, t.to_string()),
                _ => (rest, "latest".to_string()),
            }
        };
        if path.is_empty() {
            return Err(OciError::BadReference(s.into(), "the path is empty"));
        }
        if !reference.starts_with("sha256:") && !valid_tag(&reference) {
            return Err(OciError::BadReference(
                s.into(),
                "a tag is 1-128 of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
            ));
        }
        Ok(Self {
            path: PathBuf::from(path),
            reference,
        })
    }
}

pub(crate) fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// What goes into a component's artifact besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct ComponentInfo {
    /// `wasip1` or `wasip2`.
    pub os: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The world the component targets, e.g. `wasi:http/proxy@0.2.6`.
    pub target: Option<String>,
    pub author: Option<String>,
    /// `org.opencontainers.image.*` annotations (without the prefix):
    /// version, description, licenses, source, revision, url, title.
    pub annotations: Vec<(String, String)>,
    /// RFC 3339 creation time.
    pub created: String,
}

/// The config and manifest of a component as a CNCF Wasm artifact.
pub fn component_artifact(wasm: &[u8], info: &ComponentInfo) -> (Vec<u8>, Vec<u8>) {
    let layer = digest(wasm);
    let mut config = json!({
        "created": info.created,
        "architecture": "wasm",
        "os": info.os,
        "layerDigests": [layer],
        "component": {
            "imports": info.imports,
            "exports": info.exports,
        },
    });
    if let Some(a) = &info.author {
        config["author"] = json!(a);
    }
    if let Some(t) = &info.target {
        config["component"]["target"] = json!(t);
    }
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        "org.opencontainers.image.created".into(),
        json!(info.created),
    );
    for (k, v) in &info.annotations {
        annotations.insert(format!("org.opencontainers.image.{k}"), json!(v));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": WASM_CONFIG_MEDIA_TYPE,
            "digest": digest(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": WASM_LAYER_MEDIA_TYPE,
            "digest": layer,
            "size": wasm.len(),
        }],
        "annotations": annotations,
    });
    (config, serde_json::to_vec(&manifest).unwrap_or_default())
}

/// An OCI image layout directory used as a content store.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens the layout at `root`, creating it when `create` and absent.
    pub fn open(root: &Path, create: bool) -> Result<Self, OciError> {
        let io = |e: std::io::Error| OciError::Io(format!("{}: {e}", root.display()));
        let marker = root.join("oci-layout");
        if !marker.is_file() {
            if !create {
                // Missing, as a registry's 404: the source asked for is
                // not there (the node answers 404, not a gateway error).
                return Err(OciError::Missing(format!(
                    "{} is not an OCI layout (no `oci-layout` file): push there first, or check the path",
                    root.display()
                )));
            }
            std::fs::create_dir_all(root.join("blobs/sha256")).map_err(io)?;
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
            let index = json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []});
            write_atomic(
                &root.join("index.json"),
                &serde_json::to_vec_pretty(&index).unwrap_or_default(),
            )
            .map_err(io)?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a blob file is present (not verified).
    pub fn has_blob(&self, d: &str) -> bool {
        valid_digest(d) && self.blob_path(d).is_file()
    }

    /// Whether a blob is present with the given size and digest; a corrupt
    /// one is removed so it is fetched again.
    pub fn has_valid_blob(&self, d: &str, size: u64) -> bool {
        if !self.has_blob(d) {
            return false;
        }
        match self.verify_blob(d, size) {
            Ok(()) => true,
            Err(_) => {
                let _ = std::fs::remove_file(self.blob_path(d));
                false
            }
        }
    }

    /// Checks a blob's size and digest without reading it into memory.
    pub fn verify_blob(&self, d: &str, size: u64) -> Result<(), OciError> {
        if !valid_digest(d) {
            return Err(OciError::Invalid(format!("invalid digest `{d}`")));
        }
        let path = self.blob_path(d);
        let io = |e: std::io::Error| OciError::Io(format!("blob {d}: {}: {e}", path.display()));
        let mut f = std::fs::File::open(&path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len != size {
            return Err(OciError::Invalid(format!(
                "blob {d} has {len} bytes, its manifest declares {size}; the content store is corrupt or was tampered with"
            )));
        }
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(io)?;
        let actual = hex_digest(&h.finalize());
        if actual != d {
            return Err(OciError::DigestMismatch {
                what: "blob".into(),
                expected: d.into(),
                actual,
                origin: format!("the local content store {}", self.root.display()),
            });
        }
        Ok(())
    }

    /// A temporary file in the store for a blob being fetched; it becomes
    /// the blob only on [`BlobWriter::commit`].
    pub fn blob_writer(&self) -> Result<BlobWriter, OciError> {
        let dir = self.root.join("blobs/sha256");
        std::fs::create_dir_all(&dir)
            .and_then(|()| tempfile::NamedTempFile::new_in(&dir))
            .map(|tmp| BlobWriter {
                tmp,
                dir: self.root.clone(),
            })
            .map_err(|e| OciError::Io(format!("{}: {e}", dir.display())))
    }

    fn blob_path(&self, d: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    }

    /// Stores a blob (no-op when present); returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, OciError> {
        let d = digest(bytes);
        let path = self.blob_path(&d);
        if !path.exists() {
            write_atomic(&path, bytes)
                .map_err(|e| OciError::Io(format!("{}: {e}", path.display())))?;
        }
        Ok(d)
    }

    /// Reads a blob and checks it against its digest.
    pub fn get_blob(&self, d: &str, what: &str) -> Result<Vec<u8>, OciError> {
        if !valid_digest(d) {
            return Err(OciError::Invalid(format!("{what}: invalid digest `{d}`")));
        }
        let path = self.blob_path(d);
        let bytes = std::fs::read(&path)
            .map_err(|e| OciError::Io(format!("{what} {d}: {}: {e}", path.display())))?;
        let actual = digest(&bytes);
        if actual != d {
            return Err(OciError::DigestMismatch {
                what: what.into(),
                expected: d.into(),
                actual,
                origin: format!("the local content store {}", self.root.display()),
            });
        }
        Ok(bytes)
    }

    fn index(&self) -> Result<Value, OciError> {
        let path = self.root.join("index.json");
        let bytes =
            std::fs::read(&path).map_err(|e| OciError::Io(format!("{}: {e}", path.display())))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| OciError::Invalid(format!("{}: not an OCI index: {e}", path.display())))
    }

    /// Records a manifest under a tag (replacing the tag's previous target).
    pub fn tag(&self, manifest: &[u8], tag: &str) -> Result<String, OciError> {
        let d = self.put_blob(manifest)?;
        let mut index = self.index()?;
        let list = index["manifests"]
            .as_array_mut()
            .ok_or_else(|| OciError::Invalid("index.json has no manifests list".into()))?;
        list.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
        list.push(json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": d,
            "size": manifest.len(),
            "annotations": { REF_NAME: tag },
        }));
        let path = self.root.join("index.json");
        write_atomic(
            &path,
            &serde_json::to_vec_pretty(&index).unwrap_or_default(),
        )
        .map_err(|e| OciError::Io(format!("{}: {e}", path.display())))?;
        Ok(d)
    }

    /// The manifest digest a tag or digest names.
    pub fn resolve(&self, reference: &str) -> Result<String, OciError> {
        if reference.starts_with("sha256:") {
            return Ok(reference.to_string());
        }
        let index = self.index()?;
        let list = index["manifests"].as_array().cloned().unwrap_or_default();
        list.iter()
            .find(|m| m["annotations"][REF_NAME].as_str() == Some(reference))
            .and_then(|m| m["digest"].as_str().map(str::to_string))
            .ok_or_else(|| OciError::NotFound {
                reference: reference.into(),
                store: self.root.display().to_string(),
                known: {
                    let tags: Vec<&str> = list
                        .iter()
                        .filter_map(|m| m["annotations"][REF_NAME].as_str())
                        .collect();
                    if tags.is_empty() {
                        "no tags".into()
                    } else {
                        tags.join(", ")
                    }
                },
            })
    }

    /// Stores a component as a CNCF Wasm artifact under `tag`; returns the
    /// manifest digest.
    pub fn push_component(
        &self,
        wasm: &[u8],
        info: &ComponentInfo,
        tag: &str,
    ) -> Result<String, OciError> {
        let (config, manifest) = component_artifact(wasm, info);
        self.put_blob(wasm)?;
        self.put_blob(&config)?;
        self.tag(&manifest, tag)
    }

    /// Reads the component a reference names, verifying the manifest, the
    /// config and the layer against their digests.
    pub fn pull_component(&self, reference: &str) -> Result<Pulled, OciError> {
        let d = self.resolve(reference)?;
        let manifest_bytes = self.get_blob(&d, "manifest")?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| OciError::Invalid(format!("manifest {d}: {e}")))?;
        let config_digest = manifest["config"]["digest"].as_str().unwrap_or("");
        let config = self.get_blob(config_digest, "config")?;
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        let layer = layers
            .iter()
            .find(|l| {
                matches!(
                    l["mediaType"].as_str(),
                    Some(WASM_LAYER_MEDIA_TYPE)
                        | Some("application/vnd.wasm.content.layer.v1+wasm")
                )
            })
            .ok_or_else(|| OciError::Invalid(format!("manifest {d} has no wasm layer")))?;
        let layer_digest = layer["digest"].as_str().unwrap_or("");
        let wasm = self.get_blob(layer_digest, "layer")?;
        if layer["size"].as_u64() != Some(wasm.len() as u64) {
            return Err(OciError::Invalid(format!(
                "layer {layer_digest}: size does not match the manifest"
            )));
        }
        Ok(Pulled {
            manifest_digest: d,
            manifest,
            config: serde_json::from_slice(&config).unwrap_or(Value::Null),
            wasm,
        })
    }
}

/// A blob being written into a [`Layout`].
pub struct BlobWriter {
    tmp: tempfile::NamedTempFile,
    dir: PathBuf,
}

impl BlobWriter {
    pub fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Makes the written bytes the blob `d` (the caller has verified them).
    pub fn commit(self, d: &str) -> Result<(), OciError> {
        let path = self
            .dir
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| OciError::Io(format!("{}: {e}", path.display())))?;
        self.tmp
            .persist(&path)
            .map_err(|e| OciError::Io(format!("{}: {}", path.display(), e.error)))?;
        Ok(())
    }
}

/// A component read from a store.
#[derive(Debug)]
pub struct Pulled {
    pub manifest_digest: String,
    pub manifest: Value,
    pub config: Value,
    pub wasm: Vec<u8>,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, None)
}

/// Writes a file whole or not at all (a synced temporary file renamed over
/// it), with Unix permissions `mode` when given.
pub(crate) fn write_atomic_mode(
    path: &Path,
    bytes: &[u8],
    mode: Option<u32>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = LayoutRef::parse("oci-layout:./store:v1").unwrap();
        assert_eq!(
            (r.path.to_str().unwrap(), r.reference.as_str()),
            ("./store", "v1")
        );
        let r = LayoutRef::parse("oci-layout:/a/b").unwrap();
        assert_eq!(r.reference, "latest");
        let d = digest(b"x");
        let r = LayoutRef::parse(&format!("oci-layout:/a@{d}")).unwrap();
        assert_eq!(r.reference, d);
        assert!(LayoutRef::parse("oci-layout:/a@sha256:zz").is_err());
        assert!(LayoutRef::parse("oci-layout::tag").is_err());
        assert!(LayoutRef::parse("docker.io/x").is_err());
        assert!(LayoutRef::parse("oci-layout:/a:-bad").is_err());
    }

    #[test]
    fn push_pull_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let store = Layout::open(dir.path(), true).unwrap();
        let wasm = b"\0asm\x0d\0\x01\0".to_vec();
        let info = ComponentInfo {
            os: "wasip2".into(),
            created: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        let d = store.push_component(&wasm, &info, "v1").unwrap();
        let p = store.pull_component("v1").unwrap();
        assert_eq!(p.manifest_digest, d);
        assert_eq!(p.wasm, wasm);
        assert_eq!(p.config["architecture"], "wasm");
        assert_eq!(p.manifest["layers"][0]["mediaType"], WASM_LAYER_MEDIA_TYPE);
        assert!(store.pull_component(&d).is_ok());
        assert!(matches!(
            store.pull_component("v2"),
            Err(OciError::NotFound { .. })
        ));
        // Tampering with the layer is detected.
        let layer = dir.path().join("blobs/sha256").join(&digest(&wasm)[7..]);
        std::fs::write(&layer, b"evil").unwrap();
        assert!(matches!(
            store.pull_component("v1"),
            Err(OciError::DigestMismatch { .. })
        ));
    }
}
