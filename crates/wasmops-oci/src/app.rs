//! Reading the components out of pulled artifacts, and the wasmops app
//! artifact.
//!
//! The app layout: an OCI image manifest whose config
//! (`application/vnd.wasmops.app.config.v1+json`) names the app and maps
//! each component id to its layer; the layers are the app manifest
//! (`application/vnd.wasmops.app.manifest.v1+toml`, rewritten so each
//! `source` is `components/<id>.wasm` and each mounted directory is
//! `files/<id>/<n>`), one `application/wasm` layer per component and one
//! `application/vnd.wasmops.app.files.v1.tar` layer per mounted directory.
//! Every layer carries its path in `org.opencontainers.image.title`.

use std::io::Read as _;
use std::path::{Component, Path};

use serde_json::{Value, json};

use crate::distribution::{ArtifactKind, Blob, Pulled};
use crate::{Layout, MANIFEST_MEDIA_TYPE, OciError};

pub const APP_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasmops.app.config.v1+json";
pub const APP_MANIFEST_MEDIA_TYPE: &str = "application/vnd.wasmops.app.manifest.v1+toml";
pub const APP_FILES_MEDIA_TYPE: &str = "application/vnd.wasmops.app.files.v1.tar";
const TITLE: &str = "org.opencontainers.image.title";

/// What goes into an app artifact.
pub struct AppInput {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub created: String,
    /// The rewritten `wasmops.toml`.
    pub manifest: String,
    /// `(id, wasm)`, stored at `components/<id>.wasm`.
    pub components: Vec<(String, Vec<u8>)>,
    /// `(path in the artifact, directory on disk)`.
    pub files: Vec<(String, std::path::PathBuf)>,
}

/// The blobs (config first) and the manifest of an app artifact.
pub fn app_artifact(input: &AppInput) -> Result<(Vec<Blob>, Vec<u8>), OciError> {
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    let mut layer = |blobs: &mut Vec<Blob>, media: &str, title: &str, data: Vec<u8>| {
        let b = Blob::new(data);
        layers.push(json!({
            "mediaType": media,
            "digest": b.digest,
            "size": b.data.len(),
            "annotations": { TITLE: title },
        }));
        let d = b.digest.clone();
        blobs.push(b);
        d
    };
    layer(
        &mut blobs,
        APP_MANIFEST_MEDIA_TYPE,
        "wasmops.toml",
        input.manifest.clone().into_bytes(),
    );
    let mut components = Vec::new();
    for (id, wasm) in &input.components {
        let title = format!("components/{id}.wasm");
        let d = layer(
            &mut blobs,
            crate::WASM_LAYER_MEDIA_TYPE,
            &title,
            wasm.clone(),
        );
        components.push(json!({"id": id, "digest": d}));
    }
    for (title, dir) in &input.files {
        let tar = pack_dir(dir)?;
        layer(&mut blobs, APP_FILES_MEDIA_TYPE, title, tar);
    }
    let mut config = json!({
        "created": input.created,
        "name": input.name,
        "components": components,
    });
    if let Some(v) = &input.version {
        config["version"] = json!(v);
    }
    if let Some(d) = &input.description {
        config["description"] = json!(d);
    }
    let config = Blob::new(serde_json::to_vec(&config).unwrap_or_default());
    let about = About {
        name: &input.name,
        version: input.version.as_deref(),
        description: input.description.as_deref(),
        created: &input.created,
    };
    Ok(image(APP_CONFIG_MEDIA_TYPE, config, blobs, layers, &about))
}

/// What an app artifact says of itself in its manifest's annotations.
pub(crate) struct About<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
    pub description: Option<&'a str>,
    pub created: &'a str,
}

/// An OCI image manifest over `config` and `layers` (whose blobs are
/// `blobs`), annotated with the app's title, version, description and
/// creation time; returns the blobs, config first, and the manifest.
pub(crate) fn image(
    config_media_type: &str,
    config: Blob,
    mut blobs: Vec<Blob>,
    layers: Vec<Value>,
    about: &About<'_>,
) -> (Vec<Blob>, Vec<u8>) {
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        "org.opencontainers.image.created".into(),
        json!(about.created),
    );
    annotations.insert(TITLE.into(), json!(about.name));
    if let Some(v) = about.version {
        annotations.insert("org.opencontainers.image.version".into(), json!(v));
    }
    if let Some(d) = about.description {
        annotations.insert("org.opencontainers.image.description".into(), json!(d));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": config_media_type,
            "digest": config.digest,
            "size": config.data.len(),
        },
        "layers": layers,
        "annotations": annotations,
    });
    blobs.insert(0, config);
    (blobs, serde_json::to_vec(&manifest).unwrap_or_default())
}

/// A directory as a tar stream: regular files and directories only, sorted,
/// with zeroed times and owners so equal trees give equal digests.
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>, OciError> {
    let io = |p: &Path, e: std::io::Error| OciError::Io(format!("{}: {e}", p.display()));
    let mut builder = tar::Builder::new(Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| io(&d, e))?;
        for e in rd {
            let e = e.map_err(|e| io(&d, e))?;
            let ft = e.file_type().map_err(|er| io(&e.path(), er))?;
            if ft.is_dir() {
                stack.push(e.path());
                entries.push((e.path(), true));
            } else if ft.is_file() {
                entries.push((e.path(), false));
            } else {
                return Err(OciError::Invalid(format!(
                    "{}: only regular files and directories can be packed (symbolic links and devices cannot)",
                    e.path().display()
                )));
            }
        }
    }
    entries.sort();
    for (path, is_dir) in entries {
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        if is_dir {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            builder
                .append_data(&mut h, rel, std::io::empty())
                .map_err(|e| io(&path, e))?;
        } else {
            let data = std::fs::read(&path).map_err(|e| io(&path, e))?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            builder
                .append_data(&mut h, rel, data.as_slice())
                .map_err(|e| io(&path, e))?;
        }
    }
    builder
        .into_inner()
        .map_err(|e| OciError::Io(format!("{}: {e}", dir.display())))
}

/// An app bundle: the app as one tar, laid out as an unpacked app artifact
/// (`wasmops.toml`, `components/<id>.wasm`, `files/...`), with zeroed
/// times and owners so equal inputs give equal digests. What `deploy`
/// uploads to a node.
pub fn app_bundle(input: &AppInput) -> Result<Vec<u8>, OciError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        builder
            .append_data(&mut h, name, data)
            .map_err(|e| OciError::Io(format!("{name}: {e}")))
    };
    add("wasmops.toml", input.manifest.as_bytes())?;
    for (id, wasm) in &input.components {
        add(&format!("components/{id}.wasm"), wasm)?;
    }
    for (title, dir) in &input.files {
        let tar = pack_dir(dir)?;
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries = archive
            .entries()
            .map_err(|e| OciError::Io(format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| OciError::Io(e.to_string()))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let rel = entry
                .path()
                .map_err(|e| OciError::Io(e.to_string()))?
                .into_owned();
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| OciError::Io(e.to_string()))?;
            add(&format!("{title}/{}", rel.display()), &data)?;
        }
    }
    builder
        .into_inner()
        .map_err(|e| OciError::Io(format!("app bundle: {e}")))
}

/// Whether `data` is a tar archive (the `ustar` magic).
pub fn is_tar(data: &[u8]) -> bool {
    data.get(257..262) == Some(b"ustar")
}

/// Unpacks an app bundle (or a files layer) into `dest`, refusing anything
/// but regular files and directories under it.
pub fn unpack_bundle(data: &[u8], dest: &Path) -> Result<(), OciError> {
    unpack_tar(data, dest)
}

/// Unpacks a tar of [`pack_dir`] into `dest`, refusing anything but
/// regular files and directories under it, and a file named twice (which
/// of the two a reader gets would depend on the unpacker). Errors name the
/// entry, not `dest` (on a node, a path of its data directory).
fn unpack_tar(data: &[u8], dest: &Path) -> Result<(), OciError> {
    let bad = |why: String| OciError::Invalid(format!("files layer: {why}"));
    let io = |p: &Path, e: std::io::Error| OciError::Io(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dest).map_err(|e| io(Path::new("."), e))?;
    let mut archive = tar::Archive::new(data);
    let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
    let mut files = std::collections::HashSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if !safe_relative(&path) {
            return Err(bad(format!("unsafe path {}", path.display())));
        }
        let target = dest.join(&path);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(|e| io(&path, e))?
            }
            tar::EntryType::Regular => {
                if !files.insert(path.clone()) {
                    return Err(bad(format!("{} is in the archive twice", path.display())));
                }
                if let Some(p) = target.parent() {
                    std::fs::create_dir_all(p).map_err(|e| io(&path, e))?;
                }
                let mut buf = Vec::new();
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| bad(e.to_string()))?;
                std::fs::write(&target, buf).map_err(|e| io(&path, e))?;
            }
            t => return Err(bad(format!("{} is a {t:?}, not a file", path.display()))),
        }
    }
    Ok(())
}

pub(crate) fn safe_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

pub(crate) fn layers(pulled: &Pulled) -> Vec<Value> {
    pulled.manifest["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The components of a pulled artifact, as `(name, wasm)`: the one
/// component of a CNCF artifact (named by its title annotation, else
/// `component`), each component of an app or of a Spin app by its id.
pub fn components(store: &Layout, pulled: &Pulled) -> Result<Vec<(String, Vec<u8>)>, OciError> {
    let is_wasm = |l: &Value| {
        matches!(
            l["mediaType"].as_str(),
            Some(crate::WASM_LAYER_MEDIA_TYPE) | Some(crate::SPIN_WASM_LAYER_MEDIA_TYPE)
        )
    };
    match pulled.kind {
        ArtifactKind::Component => {
            let layer = layers(pulled)
                .into_iter()
                .find(is_wasm)
                .ok_or_else(|| OciError::Invalid(format!("{} has no wasm layer", pulled.digest)))?;
            let name = layer["annotations"][TITLE]
                .as_str()
                .and_then(|t| t.strip_suffix(".wasm"))
                .unwrap_or("component")
                .to_string();
            let d = layer["digest"].as_str().unwrap_or_default();
            Ok(vec![(name, store.get_blob(d, "layer")?)])
        }
        ArtifactKind::App | ArtifactKind::Spin => {
            // A Spin app's locked app is its config (older Spin) or its
            // `application/vnd.fermyon.spin.application.v1+config` layer.
            let locked_layer = layers(pulled)
                .into_iter()
                .find(|l| l["mediaType"] == crate::SPIN_CONFIG_MEDIA_TYPE);
            let config_bytes = match (&pulled.kind, locked_layer) {
                (ArtifactKind::Spin, Some(l)) => {
                    store.get_blob(l["digest"].as_str().unwrap_or_default(), "locked app")?
                }
                _ => pulled.config.clone(),
            };
            let config: Value = serde_json::from_slice(&config_bytes).map_err(|e| {
                OciError::Invalid(format!(
                    "the app config of {} is not JSON: {e}",
                    pulled.digest
                ))
            })?;
            let mut out = Vec::new();
            for c in config["components"].as_array().into_iter().flatten() {
                let id = c["id"].as_str().unwrap_or_default();
                let d = c["digest"]
                    .as_str()
                    .or(c["source"]["digest"].as_str())
                    .or(c["source"]["content"]["digest"].as_str())
                    .unwrap_or_default();
                if id.is_empty() || d.is_empty() {
                    continue;
                }
                if !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    || id.starts_with('.')
                {
                    return Err(OciError::Invalid(format!(
                        "component id `{id}` of {} is not a plain name",
                        pulled.digest
                    )));
                }
                if !layers(pulled)
                    .iter()
                    .any(|l| l["digest"] == d && is_wasm(l))
                {
                    return Err(OciError::Invalid(format!(
                        "component `{id}` of {} names {d}, which is not one of its wasm layers",
                        pulled.digest
                    )));
                }
                out.push((id.to_string(), store.get_blob(d, "layer")?));
            }
            if out.is_empty() {
                // No usable config: every wasm layer, named by digest.
                for l in layers(pulled).iter().filter(|l| is_wasm(l)) {
                    let d = l["digest"].as_str().unwrap_or_default();
                    out.push((d[7..19].to_string(), store.get_blob(d, "layer")?));
                }
            }
            if out.is_empty() {
                return Err(OciError::Invalid(format!(
                    "{} holds no components",
                    pulled.digest
                )));
            }
            Ok(out)
        }
    }
}

/// Writes a pulled wasmops app into `dest` (which must not exist or be
/// empty): `wasmops.toml`, `components/`, `files/`. Written to a sibling
/// temporary directory first, so a failure leaves nothing behind.
pub fn unpack_app(store: &Layout, pulled: &Pulled, dest: &Path) -> Result<(), OciError> {
    if !matches!(pulled.kind, ArtifactKind::App | ArtifactKind::Spin) {
        return Err(OciError::Invalid(format!(
            "{} is not an app",
            pulled.digest
        )));
    }
    if dest.exists()
        && std::fs::read_dir(dest)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(OciError::Io(format!(
            "{} exists and is not empty; pull an app into a new directory",
            dest.display()
        )));
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| OciError::Io(format!("{}: {e}", parent.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(".wasmops-pull-")
        .tempdir_in(parent)
        .map_err(|e| OciError::Io(format!("{}: {e}", parent.display())))?;
    if pulled.kind == ArtifactKind::Spin {
        crate::spin::write_app(store, pulled, tmp.path())?;
    } else {
        write_app(store, pulled, tmp.path())?;
    }
    let kept = tmp.keep();
    if dest.exists() {
        let _ = std::fs::remove_dir(dest);
    }
    std::fs::rename(&kept, dest).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        OciError::Io(format!("{}: {e}", dest.display()))
    })
}

/// A wasmops app's layers written into `dir`.
fn write_app(store: &Layout, pulled: &Pulled, dir: &Path) -> Result<(), OciError> {
    let mut has_manifest = false;
    for l in layers(pulled) {
        let title = l["annotations"][TITLE].as_str().unwrap_or_default();
        let d = l["digest"].as_str().unwrap_or_default();
        if !safe_relative(Path::new(title)) {
            return Err(OciError::Invalid(format!(
                "layer {d} of {} has an unsafe path `{title}`",
                pulled.digest
            )));
        }
        let target = dir.join(title);
        let media = l["mediaType"].as_str().unwrap_or_default();
        match media {
            APP_FILES_MEDIA_TYPE => unpack_tar(&store.get_blob(d, "files layer")?, &target)?,
            APP_MANIFEST_MEDIA_TYPE | crate::WASM_LAYER_MEDIA_TYPE => {
                has_manifest |= media == APP_MANIFEST_MEDIA_TYPE && title == "wasmops.toml";
                let data = store.get_blob(d, "layer")?;
                if let Some(p) = target.parent() {
                    std::fs::create_dir_all(p)
                        .map_err(|e| OciError::Io(format!("{}: {e}", p.display())))?;
                }
                std::fs::write(&target, data)
                    .map_err(|e| OciError::Io(format!("{}: {e}", target.display())))?;
            }
            _ => {}
        }
    }
    if !has_manifest {
        return Err(OciError::Invalid(format!(
            "{} has no wasmops.toml layer",
            pulled.digest
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_is_deterministic_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.txt"), "x").unwrap();
        std::fs::write(dir.path().join("top.html"), "<p>").unwrap();
        let one = pack_dir(dir.path()).unwrap();
        let two = pack_dir(dir.path()).unwrap();
        assert_eq!(crate::digest(&one), crate::digest(&two));
        let out = tempfile::tempdir().unwrap();
        unpack_tar(&one, out.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("a/b/x.txt")).unwrap(),
            "x"
        );
        assert_eq!(
            std::fs::read_to_string(out.path().join("top.html")).unwrap(),
            "<p>"
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`; write the name into the header directly.
        h.as_old_mut().name[..7].copy_from_slice(b"../evil");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let out = tempfile::tempdir().unwrap();
        let e = unpack_tar(&data, &out.path().join("d"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsafe path"), "{e}");
        assert!(!out.path().join("evil").exists());
    }

    #[test]
    fn a_file_named_twice_is_refused_and_errors_do_not_name_the_destination() {
        let mut b = tar::Builder::new(Vec::new());
        for body in [&b"name = \"a\""[..], &b"name = \"b\""[..]] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, "wasmops.toml", body).unwrap();
        }
        let data = b.into_inner().unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("secret-place");
        let e = unpack_bundle(&data, &dest).unwrap_err().to_string();
        assert!(e.contains("wasmops.toml is in the archive twice"), "{e}");
        assert!(!e.contains("secret-place"), "{e}");
        // A file where the archive made a directory: the entry is named,
        // not where it was unpacked.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        b.append_data(&mut h, "d", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "d", &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let dest = out.path().join("other-secret-place");
        let e = unpack_bundle(&data, &dest).unwrap_err().to_string();
        assert!(e.starts_with("d: "), "{e}");
        assert!(!e.contains("secret-place"), "{e}");
    }

    #[test]
    fn links_in_a_pulled_files_layer_are_refused() {
        // A symbolic link, then a file written "through" it: neither may
        // reach outside the directory the app is unpacked into.
        let outside = tempfile::tempdir().unwrap();
        for kind in [tar::EntryType::Symlink, tar::EntryType::Link] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_link_name(outside.path()).unwrap();
            h.set_cksum();
            b.append_data(&mut h, "static", std::io::empty()).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(4);
            h.set_cksum();
            b.append_data(&mut h, "static/owned.txt", &b"evil"[..])
                .unwrap();
            let data = b.into_inner().unwrap();
            let out = tempfile::tempdir().unwrap();
            let e = unpack_tar(&data, &out.path().join("d"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a file"), "{kind:?}: {e}");
            assert!(!outside.path().join("owned.txt").exists());
        }
    }
}
