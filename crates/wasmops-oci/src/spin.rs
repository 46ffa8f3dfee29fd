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
    pub sqlite_databases: Vec<String>,
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
                "databases": c.sqlite_databases,
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

/// A TOML string (JSON's escapes are TOML's).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A pulled Spin app (its locked app, components and files) written into
/// `dir` as an app wasmops serves: `components/ID.wasm`, `files/ID/...`
/// and a `spin.toml` that says the same as the locked app.
pub(crate) fn write_app(
    store: &crate::Layout,
    pulled: &crate::distribution::Pulled,
    dir: &Path,
) -> Result<(), OciError> {
    let bad = |what: String| OciError::Invalid(format!("{}: {what}", pulled.digest));
    let locked_bytes = match crate::app::layers(pulled)
        .into_iter()
        .find(|l| l["mediaType"] == SPIN_CONFIG_MEDIA_TYPE)
    {
        Some(l) => store.get_blob(l["digest"].as_str().unwrap_or_default(), "locked app")?,
        None => pulled.config.clone(),
    };
    let locked: Value = serde_json::from_slice(&locked_bytes)
        .map_err(|e| bad(format!("the locked app is not JSON: {e}")))?;
    let write = |path: &Path, data: &[u8]| -> Result<(), OciError> {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)
                .map_err(|e| OciError::Io(format!("{}: {e}", p.display())))?;
        }
        std::fs::write(path, data).map_err(|e| OciError::Io(format!("{}: {e}", path.display())))
    };
    let name = locked["metadata"]["name"].as_str().unwrap_or("spin-app");
    let mut toml = format!(
        "spin_manifest_version = 2\n\n[application]\nname = {}\n",
        toml_str(name)
    );
    for key in ["version", "description"] {
        if let Some(v) = locked["metadata"][key].as_str() {
            toml.push_str(&format!("{key} = {}\n", toml_str(v)));
        }
    }
    if let Some(vars) = locked["variables"].as_object().filter(|v| !v.is_empty()) {
        toml.push_str("\n[variables]\n");
        for (k, v) in vars {
            let mut fields = Vec::new();
            match v["default"].as_str() {
                Some(d) => fields.push(format!("default = {}", toml_str(d))),
                None => fields.push("required = true".into()),
            }
            if v["secret"].as_bool() == Some(true) {
                fields.push("secret = true".into());
            }
            toml.push_str(&format!("{} = {{ {} }}\n", toml_str(k), fields.join(", ")));
        }
    }
    for t in locked["triggers"].as_array().into_iter().flatten() {
        if t["trigger_type"] != "http" {
            return Err(bad(format!(
                "its `{}` trigger is not served by wasmops (HTTP triggers are)",
                t["trigger_type"].as_str().unwrap_or("?")
            )));
        }
        let config = &t["trigger_config"];
        let route = match &config["route"] {
            Value::String(r) => toml_str(r),
            _ => "{ private = true }".into(),
        };
        toml.push_str(&format!(
            "\n[[trigger.http]]\nroute = {route}\ncomponent = {}\n",
            toml_str(config["component"].as_str().unwrap_or_default())
        ));
    }
    for c in locked["components"].as_array().into_iter().flatten() {
        let id = c["id"].as_str().unwrap_or_default();
        if !crate::app::safe_relative(Path::new(id)) || id.contains('/') {
            return Err(bad(format!("component id `{id}` is not a plain name")));
        }
        let digest = c["source"]["digest"]
            .as_str()
            .or(c["source"]["content"]["digest"].as_str())
            .ok_or_else(|| bad(format!("component `{id}` has no source digest")))?;
        write(
            &dir.join(format!("components/{id}.wasm")),
            &store.get_blob(digest, "component")?,
        )?;
        toml.push_str(&format!(
            "\n[component.{}]\nsource = {}\n",
            toml_str(id),
            toml_str(&format!("components/{id}.wasm"))
        ));
        let files = c["files"].as_array().cloned().unwrap_or_default();
        for f in &files {
            let rel = f["path"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/');
            if !crate::app::safe_relative(Path::new(rel)) {
                return Err(bad(format!(
                    "component `{id}` has an unsafe file path `{rel}`"
                )));
            }
            let data = match (f["inline"].as_str(), f["digest"].as_str()) {
                (Some(b64), _) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| bad(format!("file `{rel}`: {e}")))?,
                (None, Some(d)) => store.get_blob(d, "file")?,
                (None, None) => return Err(bad(format!("file `{rel}` has no content"))),
            };
            write(&dir.join("files").join(id).join(rel), &data)?;
        }
        if !files.is_empty() {
            toml.push_str(&format!(
                "files = [{{ source = {}, destination = \"/\" }}]\n",
                toml_str(&format!("files/{id}"))
            ));
        }
        for (key, field) in [
            ("allowed_outbound_hosts", "allowed_outbound_hosts"),
            ("key_value_stores", "key_value_stores"),
            ("sqlite_databases", "databases"),
        ] {
            let list: Vec<String> = c["metadata"][field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(toml_str))
                .collect();
            if !list.is_empty() {
                toml.push_str(&format!("{key} = [{}]\n", list.join(", ")));
            }
        }
        for (table, key) in [("environment", "env"), ("variables", "config")] {
            if let Some(map) = c[key].as_object().filter(|m| !m.is_empty()) {
                toml.push_str(&format!("[component.{}.{table}]\n", toml_str(id)));
                for (k, v) in map {
                    toml.push_str(&format!(
                        "{} = {}\n",
                        toml_str(k),
                        toml_str(v.as_str().unwrap_or_default())
                    ));
                }
            }
        }
    }
    write(&dir.join("spin.toml"), toml.as_bytes())
}
