//! On-disk cache of compiled components.
//!
//! An entry is keyed by the blake3 hash of the component's bytes and a
//! fingerprint of the engine (wasmtime version and every setting that changes
//! generated code). The file holds the payload that `Component::serialize`
//! produced, then its blake3 hash and a magic string: the payload starts the
//! file so that the engine can map it (`deserialize_file`) instead of reading
//! and copying it, and its code pages are shared with the page cache. Entries
//! are written to a temporary file in the same directory and renamed into
//! place, so a reader never sees half an entry, and never changed in place,
//! so a mapping stays whole; an entry whose checksum does not match is
//! reported as corrupt and rebuilt by the caller. Entries of the earlier
//! layout (magic and hash before the payload) are rewritten on first use.
//!
//! Two things spare loads the reading and hashing of whole files (a
//! componentize-js component is 13 MB, its entry 37 MB):
//! - an entry's checksum is verified once per process: the cache remembers
//!   the identity (device, inode, size, modification time) of every entry
//!   it verified, and since entries are replaced by rename, never changed
//!   in place, an unchanged identity is the same verified bytes;
//! - the index of stored sources (`sources/`): for a file that is never
//!   changed in place once written (a content-addressed store's, such as a
//!   node's blobs), the digest its first load found is kept under a name
//!   derived from its path, so later loads find the entry without reading
//!   the file.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmops_component::Kind;

/// Ends an entry, after the payload's blake3 hash.
const MAGIC: &[u8; 8] = b"WOPSART2";
const TRAILER: usize = 32 + 8;
/// Began an entry of the earlier layout, followed by the hash.
const OLD_MAGIC: &[u8; 8] = b"WOPSART1";
const OLD_HEADER: usize = 8 + 32;

#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    /// Entries whose checksum this process verified.
    verified: Arc<Mutex<HashSet<FileId>>>,
}

/// What tells one file's content from another's without reading it, as
/// long as nobody writes to it in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            device: m.dev(),
            inode: m.ino(),
            len: m.len(),
            modified: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A whole entry, checksum verified: the file to map (its payload
    /// starts at offset 0; the trailer after it is not part of the image).
    /// `crowded` when the process holds so many files open that one more
    /// kept open (a mapping keeps its file open while it is loaded) would
    /// risk running out: read it instead.
    Hit {
        path: PathBuf,
        crowded: bool,
    },
    Miss,
    /// An entry exists but is damaged; it has been removed.
    Corrupt(String),
}

impl ArtifactCache {
    /// Opens (and creates) a cache directory.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            verified: Default::default(),
        })
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

    /// Finds an entry and verifies its checksum (reading the file through a
    /// small buffer: nothing of it is kept in memory).
    pub fn get(&self, key: &str) -> Lookup {
        let path = self.path_for(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Corrupt(format!("unreadable: {e}")),
        };
        let damaged = |why: String| {
            let _ = std::fs::remove_file(&path);
            Lookup::Corrupt(why)
        };
        let crowded = files_crowded(&file);
        let id = file.metadata().ok().map(|m| FileId::of(&m));
        let verified = || self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if id.is_some_and(|id| verified().contains(&id)) {
            return Lookup::Hit { path, crowded };
        }
        match verify(&file) {
            Ok(None) => {
                if let Some(id) = id {
                    verified().insert(id);
                }
                Lookup::Hit { path, crowded }
            }
            Ok(Some(payload)) => match self.put(key, &payload) {
                Ok(()) => Lookup::Hit { path, crowded },
                Err(e) => damaged(format!("of an earlier layout and cannot be rewritten: {e}")),
            },
            Err(why) => damaged(why),
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
        tmp.write_all(payload)?;
        tmp.write_all(blake3::hash(payload).as_bytes())?;
        tmp.write_all(MAGIC)?;
        tmp.as_file().sync_data()?;
        tmp.persist(self.path_for(key)).map_err(|e| e.error)?;
        Ok(())
    }
}

/// What the index of stored sources knows of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSource {
    /// blake3 of its bytes (as a component: WAT compiled), hex.
    pub digest: String,
    pub kind: Kind,
    /// Bytes of active data segments its memories start with.
    pub data: u64,
}

impl ArtifactCache {
    /// Where the index of stored sources keeps what it knows of `source`.
    fn source_entry(&self, source: &Path) -> PathBuf {
        let source = std::path::absolute(source).unwrap_or_else(|_| source.to_owned());
        let name = blake3::hash(source.as_os_str().as_encoded_bytes()).to_hex();
        self.dir.join("sources").join(&name[..32])
    }

    /// What was recorded of a stored source, if anything (and if the file
    /// still has the size it had then).
    pub fn source_digest(&self, source: &Path) -> Option<StoredSource> {
        let text = std::fs::read_to_string(self.source_entry(source)).ok()?;
        let mut words = text.split_whitespace();
        let (digest, len, kind, data) =
            (words.next()?, words.next()?, words.next()?, words.next()?);
        let kind = match kind {
            "component" => Kind::Component,
            "module" => Kind::CoreModule,
            _ => return None,
        };
        let (len, data): (u64, u64) = (len.parse().ok()?, data.parse().ok()?);
        let right = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        (right && std::fs::metadata(source).ok()?.len() == len).then(|| StoredSource {
            digest: digest.to_string(),
            kind,
            data,
        })
    }

    /// Records the digest of a stored source's bytes, its kind and its
    /// memories' initial data (best effort: without it, loads read and hash
    /// the file as any other).
    pub fn record_source(&self, source: &Path, digest: &str, kind: Kind, data: u64) {
        let Ok(len) = std::fs::metadata(source).map(|m| m.len()) else {
            return;
        };
        let kind = match kind {
            Kind::Component => "component",
            Kind::CoreModule => "module",
        };
        let entry = self.source_entry(source);
        let write = || -> std::io::Result<()> {
            let dir = entry.parent().expect("entries are in sources/");
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
            writeln!(tmp, "{digest} {len} {kind} {data}")?;
            tmp.persist(&entry).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!(dir = %self.dir.display(), error = %e, "cannot record a stored source's digest");
        }
    }
}

/// Whether half the process's open-file limit is in use: descriptors are
/// handed out lowest first, so `file`'s number is how many others are open.
fn files_crowded(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return true;
    }
    file.as_raw_fd() as u64 >= limit.rlim_cur / 2
}

/// The payload of a verified entry, read into memory.
pub fn payload(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)?;
    if bytes.len() < TRAILER || &bytes[bytes.len() - 8..] != MAGIC {
        return Err(std::io::Error::other(format!(
            "{}: not a wasmops artifact (bad trailer)",
            path.display()
        )));
    }
    bytes.truncate(bytes.len() - TRAILER);
    Ok(bytes)
}

/// Checks an entry: `None` if it is whole, the payload if it is a whole
/// entry of the earlier layout, why not otherwise.
fn verify(file: &File) -> Result<Option<Vec<u8>>, String> {
    let unreadable = |e: std::io::Error| format!("unreadable: {e}");
    let len = file.metadata().map_err(unreadable)?.len();
    if len < TRAILER as u64 {
        return Err("not a wasmops artifact (too short)".into());
    }
    let mut trailer = [0u8; TRAILER];
    file.read_exact_at(&mut trailer, len - TRAILER as u64)
        .map_err(unreadable)?;
    if &trailer[32..] == MAGIC {
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_reader(file.take(len - TRAILER as u64))
            .map_err(unreadable)?;
        if hasher.finalize().as_bytes() != &trailer[..32] {
            return Err("checksum mismatch".into());
        }
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(len as usize);
    let mut reader = file;
    reader.read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() < OLD_HEADER || &bytes[..8] != OLD_MAGIC {
        return Err("not a wasmops artifact (bad trailer)".into());
    }
    if blake3::hash(&bytes[OLD_HEADER..]).as_bytes() != &bytes[8..OLD_HEADER] {
        return Err("checksum mismatch".into());
    }
    bytes.drain(..OLD_HEADER);
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry's checksum is verified by the first lookup of a process;
    /// later ones trust the file while its identity is unchanged.
    #[test]
    fn an_entry_is_verified_once_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let c = ArtifactCache::open(dir.path()).unwrap();
        c.put("k", b"payload bytes").unwrap();
        assert!(matches!(c.get("k"), Lookup::Hit { .. }));
        // Damaged in place, its time put back: not read again here...
        let path = c.path_for("k");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"X", 0).unwrap();
        f.set_modified(modified).unwrap();
        drop(f);
        assert!(matches!(c.get("k"), Lookup::Hit { .. }));
        // ...but a new process verifies it.
        let fresh = ArtifactCache::open(dir.path()).unwrap();
        assert!(matches!(fresh.get("k"), Lookup::Corrupt(_)));
        // A replaced entry is a new file: verified again.
        c.put("k", b"payload bytes").unwrap();
        assert!(matches!(c.get("k"), Lookup::Hit { .. }));
        assert!(matches!(fresh.get("k"), Lookup::Hit { .. }));
    }

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let c = ArtifactCache::open(dir.path()).unwrap();
        assert!(matches!(c.get("k"), Lookup::Miss));
        c.put("k", b"payload bytes").unwrap();
        let p = c.path_for("k");
        match c.get("k") {
            // The payload starts the file, so that it can be mapped as is.
            Lookup::Hit { path, crowded } => {
                assert_eq!(path, p);
                assert!(!crowded);
                assert!(std::fs::read(&path).unwrap().starts_with(b"payload bytes"));
            }
            other => panic!("{other:?}"),
        }
        // Flip one payload byte: detected, removed.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[b"payload bytes".len() - 1] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(c.get("k"), Lookup::Corrupt(why) if why == "checksum mismatch"));
        assert!(!p.exists());
        // Truncated file, and one that is no entry at all.
        std::fs::write(&p, b"WOPS").unwrap();
        assert!(matches!(c.get("k"), Lookup::Corrupt(_)));
        std::fs::write(&p, [7u8; 100]).unwrap();
        assert!(matches!(c.get("k"), Lookup::Corrupt(why) if why.contains("bad trailer")));
        // No temporary files are left behind.
        c.put("k2", b"x").unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp-")), "{names:?}");
    }

    #[test]
    fn entries_of_the_earlier_layout_are_rewritten_and_damaged_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let c = ArtifactCache::open(dir.path()).unwrap();
        let old = |payload: &[u8]| {
            let mut b = OLD_MAGIC.to_vec();
            b.extend_from_slice(blake3::hash(payload).as_bytes());
            b.extend_from_slice(payload);
            b
        };
        std::fs::write(c.path_for("k"), old(b"compiled code")).unwrap();
        assert!(matches!(c.get("k"), Lookup::Hit { .. }));
        let now = std::fs::read(c.path_for("k")).unwrap();
        assert!(
            now.starts_with(b"compiled code") && now.ends_with(MAGIC),
            "{now:?}"
        );
        assert!(matches!(c.get("k"), Lookup::Hit { .. }));
        let mut bad = old(b"compiled code");
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(c.path_for("k"), bad).unwrap();
        assert!(matches!(c.get("k"), Lookup::Corrupt(why) if why == "checksum mismatch"));
        assert!(!c.path_for("k").exists());
    }
}
