//! On-disk cache of compiled components.
//!
//! An entry is keyed by the blake3 hash of the component's bytes and a
//! fingerprint of the engine (wasmtime version and every setting that changes
//! generated code). The file holds a magic string, the blake3 hash of the
//! payload, and the payload that `Component::serialize` produced. Entries are
//! written to a temporary file in the same directory and renamed into place,
//! so a reader never sees half an entry; an entry whose checksum does not match
//! is reported as corrupt and rebuilt by the caller.

use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"WOPSART1";
const HEADER: usize = 8 + 32;

#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Vec<u8>),
    Miss,
    /// An entry exists but is damaged; it has been removed.
    Corrupt(String),
}

impl ArtifactCache {
    /// Opens (and creates) a cache directory.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The default location: `$WASMOPS_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/wasmops/artifacts`, else `~/.cache/wasmops/artifacts`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("WASMOPS_CACHE_DIR") {
            return Some(PathBuf::from(d));
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(d).join("wasmops/artifacts"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/wasmops/artifacts"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_for(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    pub fn get(&self, key: &str) -> Lookup {
        let path = self.path_for(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Corrupt(format!("unreadable: {e}")),
        };
        match check(&bytes) {
            Ok(()) => {
                let mut bytes = bytes;
                bytes.drain(..HEADER);
                Lookup::Hit(bytes)
            }
            Err(why) => {
                let _ = std::fs::remove_file(&path);
                Lookup::Corrupt(why)
            }
        }
    }

    /// Removes an entry (for instance one the engine refused to load).
    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.path_for(key));
    }

    /// Writes an entry atomically.
    pub fn put(&self, key: &str, payload: &[u8]) -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .suffix(".cwasm")
            .tempfile_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(blake3::hash(payload).as_bytes())?;
        tmp.write_all(payload)?;
        tmp.as_file().sync_data()?;
        tmp.persist(self.path_for(key)).map_err(|e| e.error)?;
        Ok(())
    }
}

fn check(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a wasmops artifact (bad header)".into());
    }
    let want = &bytes[8..HEADER];
    let got = blake3::hash(&bytes[HEADER..]);
    if got.as_bytes() != want {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let c = ArtifactCache::open(dir.path()).unwrap();
        assert!(matches!(c.get("k"), Lookup::Miss));
        c.put("k", b"payload bytes").unwrap();
        match c.get("k") {
            Lookup::Hit(b) => assert_eq!(b, b"payload bytes"),
            other => panic!("{other:?}"),
        }
        // Flip one payload byte: detected, removed.
        let p = c.path_for("k");
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(c.get("k"), Lookup::Corrupt(_)));
        assert!(!p.exists());
        // Truncated file.
        std::fs::write(&p, b"WOPS").unwrap();
        assert!(matches!(c.get("k"), Lookup::Corrupt(_)));
        // No temporary files are left behind.
        c.put("k2", b"x").unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp-")), "{names:?}");
    }
}
