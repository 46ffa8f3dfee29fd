//! Spin's OCI layout for an app (what `spin registry push` writes and what
//! `spin up --from` and SpinKube's shim read): an OCI image manifest whose
//! config is an image config (`architecture: wasm`, the locked app's digest
//! in a label), one `application/vnd.wasm.content.layer.v1+wasm` layer per
//! component, one `application/vnd.wasm.content.layer.v1+data` layer per
//! static file (files of 128 bytes or less are inlined in the locked app
//! instead), and last the locked app itself
//! (`application/vnd.fermyon.spin.application.v1+config`, JSON).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::distribution::Blob;
use crate::{OciError, SPIN_CONFIG_MEDIA_TYPE, SPIN_WASM_LAYER_MEDIA_TYPE};

/// A static file's layer.
pub const SPIN_DATA_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+data";
/// The config blob: an OCI image config.
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The config label that names the locked app's layer.
pub const LOCKED_APP_LABEL: &str = "com.fermyon.spin.lockedAppDigest";
/// Files up to this size are inlined in the locked app.
const INLINE_MAX: usize = 128;

/// An app variable.
pub struct SpinVariable {
    pub name: String,
    pub default: Option<String>,
    pub secret: bool,
    pub description: Option<String>,
}

/// A component of the app.
pub struct SpinComponent {
    pub id: String,
    pub wasm: Vec<u8>,
    /// Its HTTP routes, as written (`/api/...`); none: not served.
    pub routes: Vec<String>,
    pub allowed_outbound_hosts: Vec<String>,
    pub key_value_stores: Vec<String>,
    pub environment: Vec<(String, String)>,
    /// (name, template) of its variables.
    pub config: Vec<(String, String)>,
    /// (directory on disk, path in the guest) of its read-only mounts.
    pub files: Vec<(PathBuf, String)>,
}

/// What goes into a Spin app artifact.
pub struct SpinInput {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub created: String,
    pub variables: Vec<SpinVariable>,
    pub components: Vec<SpinComponent>,
}

/// Every regular file under `dir`, sorted, with its path relative to it.
fn walk(dir: &Path) -> Result<Vec<(String, PathBuf)>, OciError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| OciError::Io(format!("{}: {e}", d.display())))?;
        for e in entries {
            let e = e.map_err(|e| OciError::Io(format!("{}: {e}", d.display())))?;
            let ty = e
                .file_type()
                .map_err(|err| OciError::Io(format!("{}: {err}", e.path().display())))?;
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap_or(&e.path())
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, e.path()));
            } else {
                return Err(OciError::Invalid(format!(
                    "{} is a link or a special file: an app's files must be regular files",
                    e.path().display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The blobs (config first) and the manifest of a Spin app artifact.
pub fn spin_artifact(input: &SpinInput) -> Result<(Vec<Blob>, Vec<u8>), OciError> {
    let mut layers: Vec<Value> = Vec::new();
    let mut blobs: Vec<Blob> = Vec::new();
    let mut push_layer = |blobs: &mut Vec<Blob>, media: &str, data: Vec<u8>| -> String {
        let b = Blob::new(data);
        let d = b.digest.clone();
        // The same bytes once, as Spin deduplicates.
        if !blobs.iter().any(|x| x.digest == d) {
            layers.push(json!({ "mediaType": media, "digest": d, "size": b.data.len() }));
            blobs.push(b);
        }
        d
    };

    let mut components = Vec::new();
    let mut triggers = Vec::new();
    for c in &input.components {
        let digest = push_layer(&mut blobs, SPIN_WASM_LAYER_MEDIA_TYPE, c.wasm.clone());
        let mut files = Vec::new();
        for (dir, guest) in &c.files {
            let base = guest.trim_start_matches('/').trim_end_matches('/');
            for (rel, path) in walk(dir)? {
                let data = std::fs::read(&path)
                    .map_err(|e| OciError::Io(format!("{}: {e}", path.display())))?;
                let at = if base.is_empty() {
                    rel
                } else {
                    format!("{base}/{rel}")
                };
                if data.len() <= INLINE_MAX {
                    files.push(json!({
                        "inline": base64::engine::general_purpose::STANDARD.encode(&data),
                        "path": at,
                    }));
                } else {
                    let d = push_layer(&mut blobs, SPIN_DATA_LAYER_MEDIA_TYPE, data);
                    files.push(json!({ "digest": d, "path": at }));
                }
            }
        }
        let env: BTreeMap<&str, &str> = c
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let config: BTreeMap<&str, &str> = c
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        components.push(json!({
            "id": c.id,
            "metadata": {
                "allowed_outbound_hosts": c.allowed_outbound_hosts,
                "key_value_stores": c.key_value_stores,
            },
            "source": { "content_type": "application/wasm", "digest": digest },
            "env": env,
            "files": files,
            "config": config,
        }));
        for (n, route) in c.routes.iter().enumerate() {
            let id = if n == 0 {
                format!("trigger-{}", c.id)
            } else {
                format!("trigger-{}-{n}", c.id)
            };
            triggers.push(json!({
                "id": id,
                "trigger_type": "http",
                "trigger_config": { "component": c.id, "route": route },
            }));
        }
    }
    let mut variables = Map::new();
    for v in &input.variables {
        let mut var = Map::new();
        if let Some(d) = &v.default {
            var.insert("default".into(), json!(d));
        }
        if let Some(d) = &v.description {
            var.insert("description".into(), json!(d));
        }
        if v.secret {
            var.insert("secret".into(), json!(true));
        }
        variables.insert(v.name.clone(), Value::Object(var));
    }
    let mut metadata = json!({
        "name": input.name,
        "triggers": { "http": {} },
        "trigger": { "type": "http" },
    });
    if let Some(v) = &input.version {
        metadata["version"] = json!(v);
    }
    if let Some(d) = &input.description {
        metadata["description"] = json!(d);
    }
    let locked = json!({
        "spin_lock_version": 0,
        "metadata": metadata,
        "variables": variables,
        "triggers": triggers,
        "components": components,
    });
    let locked_digest = push_layer(
        &mut blobs,
        SPIN_CONFIG_MEDIA_TYPE,
        serde_json::to_vec(&locked).unwrap_or_default(),
    );
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": "wasm",
            "os": "wasip1",
            "created": input.created,
            "config": { "Labels": { LOCKED_APP_LABEL: locked_digest } },
            "rootfs": { "type": "layers", "diff_ids": [] },
        }))
        .unwrap_or_default(),
    );
    let about = crate::app::About {
        name: &input.name,
        version: input.version.as_deref(),
        description: input.description.as_deref(),
        created: &input.created,
    };
    Ok(crate::app::image(
        IMAGE_CONFIG_MEDIA_TYPE,
        config,
        blobs,
        layers,
        &about,
    ))
}
