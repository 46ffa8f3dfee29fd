//! The node's desired state: which apps are deployed, each version with its
//! digest, where it came from, who deployed it and when, and what happened
//! to it since (deploys, rollbacks). An embedded SQLite database in the
//! data directory (WAL, `synchronous=FULL`: an acknowledged deploy is on
//! disk), beside a content-addressed blob directory holding every
//! component that a version names.
//!
//! A deploy writes the blob first (temporary file, fsync, rename), then
//! commits one transaction that adds the version and makes it current; a
//! `kill -9` at any point leaves the old or the new version, never a half.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Why the state could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the node's state database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(String),
    #[error("no app named `{0}`")]
    NoApp(String),
    #[error("app `{app}` has no version {version}")]
    NoVersion { app: String, version: i64 },
    #[error("app `{0}` has no earlier version to roll back to")]
    NoEarlier(String),
    #[error("corrupt state record: {0}")]
    Corrupt(String),
}

/// How an app is reached and run: the part of a deployment besides the
/// component itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Host names (`Host` header) the app answers for; `*.example.com`
    /// matches any subdomain. Empty: any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefixes the app answers under (`/`, `/api`). Empty: `/`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Environment variables of the app's instances.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Linear memory of one instance, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Time limit of one request, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Requests the app handles at once; more wait in its queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Values of an app bundle's `[variables]` (kept in the state, never
    /// shown by the API: only their names are).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// One deployed version of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub version: i64,
    /// `sha256:<hex>` of the component or the app bundle.
    pub digest: String,
    /// Where it came from: a reference, or `upload`.
    pub source: String,
    pub spec: AppSpec,
    pub deployed_by: String,
    /// RFC 3339.
    pub deployed_at: String,
}

/// An app and the version it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppRecord {
    pub name: String,
    pub current: Version,
}

/// Something that happened to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at: String,
    /// `deploy` or `rollback`.
    pub action: String,
    pub version: i64,
    pub by: String,
}

/// The desired state, durable in `DATA_DIR/state.db` and `DATA_DIR/blobs`.
pub struct State {
    conn: Mutex<Connection>,
    blobs: PathBuf,
    /// Blobs uploaded (or named by a deploy under way) that no version
    /// names yet, by digest, with when: `gc` spares them for `grace`.
    pending: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    pub(crate) grace: Duration,
    /// `DATA_DIR/node.lock`, locked while the state is open: a second node
    /// on the same directory would keep its own table of apps and the two
    /// would undo each other's changes. The kernel drops the lock when the
    /// process ends, `kill -9` included.
    _lock: std::fs::File,
}

/// Takes the data directory's lock, or says which process holds it.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, StateError> {
    use std::io::{Read as _, Seek as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::io::AsRawFd as _;
    let path = data_dir.join("node.lock");
    let io = |e: std::io::Error| StateError::Io(format!("{}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock on a descriptor this function owns; no memory involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io(e));
        }
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(StateError::Io(format!(
            "another node{} is using the data directory {}; stop it, or give this node its own --data-dir",
            if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            },
            data_dir.display()
        )));
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    write!(f, "{}", std::process::id()).map_err(io)?;
    Ok(f)
}

fn now() -> (i64, String) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, wasmops_units::rfc3339(d))
}

fn rfc3339(secs: i64) -> String {
    wasmops_units::rfc3339(Duration::from_secs(secs.max(0) as u64))
}

/// How long an uploaded blob that no version names is kept.
pub const BLOB_GRACE: Duration = Duration::from_secs(3600);

impl State {
    /// Opens (creating when absent) the state in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StateError> {
        let io = |p: &Path, e: std::io::Error| StateError::Io(format!("{}: {e}", p.display()));
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
        // The node's own: a directory it makes is its user's only, and the
        // database (which holds the apps' variables, secret ones too) and
        // its WAL and shared-memory files (SQLite gives them the
        // database's mode) are 0600, tightened when an older node left
        // them wider.
        if !data_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(|e| io(data_dir, e))?;
        }
        let lock = lock_data_dir(data_dir)?;
        let blobs = data_dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| io(&blobs, e))?;
        let db = data_dir.join("state.db");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&db)
            .map_err(|e| io(&db, e))?;
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let f = data_dir.join(f);
            if f.exists() {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io(&f, e))?;
            }
        }
        let conn = Connection::open(&db)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS apps (
                 name TEXT PRIMARY KEY,
                 current INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS versions (
                 app TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 digest TEXT NOT NULL,
                 source TEXT NOT NULL,
                 spec TEXT NOT NULL,
                 deployed_by TEXT NOT NULL,
                 deployed_at INTEGER NOT NULL,
                 PRIMARY KEY (app, version)
             );
             CREATE TABLE IF NOT EXISTS events (
                 app TEXT NOT NULL,
                 at INTEGER NOT NULL,
                 action TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 by TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS events_app ON events (app);",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            blobs,
            pending: Mutex::new(std::collections::HashMap::new()),
            grace: BLOB_GRACE,
            _lock: lock,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file of the blob with `digest` (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.blobs.join(hex.to_ascii_lowercase()))
    }

    /// Stores `bytes` under their digest (durably: written to a temporary
    /// file, synced, renamed, the directory synced) and returns the digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, StateError> {
        let hex = format!("{:x}", sha2::Sha256::digest(bytes));
        let digest = format!("sha256:{hex}");
        let path = self.blobs.join(&hex);
        if self.touch_blob(&digest) {
            return Ok(digest);
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone(), std::time::Instant::now());
        let io = |e: std::io::Error| StateError::Io(format!("{}: {e}", self.blobs.display()));
        let mut tmp = tempfile::NamedTempFile::new_in(&self.blobs).map_err(io)?;
        tmp.write_all(bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        if let Ok(dir) = std::fs::File::open(&self.blobs) {
            let _ = dir.sync_all();
        }
        Ok(digest)
    }

    /// Whether the blob with `digest` is here; if so, it counts as just
    /// uploaded (`gc` spares it until a version names it, or for
    /// `grace`), for the deploy that is about to name it.
    pub fn touch_blob(&self, digest: &str) -> bool {
        if !self.blob_path(digest).is_some_and(|p| p.is_file()) {
            return false;
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.to_string(), std::time::Instant::now());
        true
    }

    /// The blob with `digest`, checked against it.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StateError> {
        let path = self
            .blob_path(digest)
            .ok_or_else(|| StateError::Corrupt(format!("bad digest {digest}")))?;
        let bytes =
            std::fs::read(&path).map_err(|e| StateError::Io(format!("{}: {e}", path.display())))?;
        let actual = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
        if actual != digest {
            return Err(StateError::Corrupt(format!(
                "blob {digest} holds {actual}: the data directory was changed behind the node's back"
            )));
        }
        Ok(bytes)
    }

    /// Adds a version of `app` (creating the app) and makes it current.
    pub fn deploy(
        &self,
        app: &str,
        digest: &str,
        source: &str,
        spec: &AppSpec,
        by: &str,
    ) -> Result<Version, StateError> {
        let (secs, at) = now();
        let spec_json =
            serde_json::to_string(spec).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE app = ?1",
            params![app],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO versions (app, version, digest, source, spec, deployed_by, deployed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![app, version, digest, source, spec_json, by, secs],
        )?;
        tx.execute(
            "INSERT INTO apps (name, current) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET current = excluded.current",
            params![app, version],
        )?;
        tx.execute(
            "INSERT INTO events (app, at, action, version, by) VALUES (?1, ?2, 'deploy', ?3, ?4)",
            params![app, secs, version, by],
        )?;
        tx.commit()?;
        // Named by a version now: a delete may let it go.
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        Ok(Version {
            version,
            digest: digest.to_string(),
            source: source.to_string(),
            spec: spec.clone(),
            deployed_by: by.to_string(),
            deployed_at: at,
        })
    }

    /// Makes version `to` of `app` current (by default the newest version
    /// older than the current one).
    pub fn rollback(&self, app: &str, to: Option<i64>, by: &str) -> Result<Version, StateError> {
        let (secs, _) = now();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: i64 = tx
            .query_row(
                "SELECT current FROM apps WHERE name = ?1",
                params![app],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StateError::NoApp(app.to_string()))?;
        let target = match to {
            Some(v) => v,
            None => tx
                .query_row(
                    "SELECT MAX(version) FROM versions WHERE app = ?1 AND version < ?2",
                    params![app, current],
                    |r| r.get::<_, Option<i64>>(0),
                )?
                .ok_or_else(|| StateError::NoEarlier(app.to_string()))?,
        };
        let version = version_row(&tx, app, target)?.ok_or(StateError::NoVersion {
            app: app.to_string(),
            version: target,
        })?;
        tx.execute(
            "UPDATE apps SET current = ?2 WHERE name = ?1",
            params![app, target],
        )?;
        tx.execute(
            "INSERT INTO events (app, at, action, version, by) VALUES (?1, ?2, 'rollback', ?3, ?4)",
            params![app, secs, target, by],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// Removes an app and its history. Blobs stay (another app may share
    /// them); `gc` removes the ones no version names.
    pub fn delete(&self, app: &str) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if tx.execute("DELETE FROM apps WHERE name = ?1", params![app])? == 0 {
            return Err(StateError::NoApp(app.to_string()));
        }
        tx.execute("DELETE FROM versions WHERE app = ?1", params![app])?;
        tx.execute("DELETE FROM events WHERE app = ?1", params![app])?;
        tx.commit()?;
        Ok(())
    }

    /// Removes blobs that no version names, but for uploads waiting for
    /// their deploy (within `grace`): an upload and the deploy that names
    /// it are two requests, and another app's delete may run between them.
    /// Returns how many.
    pub fn gc(&self) -> Result<usize, StateError> {
        let pending: std::collections::HashSet<String> = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.retain(|_, at| at.elapsed() < self.grace);
            p.keys()
                .filter_map(|d| d.strip_prefix("sha256:").map(str::to_string))
                .collect()
        };
        let used: std::collections::HashSet<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT DISTINCT digest FROM versions")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .filter_map(Result::ok)
                .filter_map(|d| d.strip_prefix("sha256:").map(str::to_string))
                .collect()
        };
        let mut removed = 0;
        if let Ok(rd) = std::fs::read_dir(&self.blobs) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.len() == 64
                    && !used.contains(&name)
                    && !pending.contains(&name)
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Every app with its current version, by name.
    pub fn apps(&self) -> Result<Vec<AppRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT a.name, v.version, v.digest, v.source, v.spec, v.deployed_by, v.deployed_at
             FROM apps a JOIN versions v ON v.app = a.name AND v.version = a.current
             ORDER BY a.name",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, version_from(r, 1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, v) = row?;
            out.push(AppRecord {
                name,
                current: v.map_err(StateError::Corrupt)?,
            });
        }
        Ok(out)
    }

    /// One app: its current version, every version, and its events.
    pub fn app(&self, app: &str) -> Result<(AppRecord, Vec<Version>, Vec<Event>), StateError> {
        let conn = self.conn();
        let current: i64 = conn
            .query_row(
                "SELECT current FROM apps WHERE name = ?1",
                params![app],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StateError::NoApp(app.to_string()))?;
        let mut stmt = conn.prepare(
            "SELECT version, digest, source, spec, deployed_by, deployed_at
             FROM versions WHERE app = ?1 ORDER BY version",
        )?;
        let mut versions = Vec::new();
        for v in stmt.query_map(params![app], |r| version_from(r, 0))? {
            versions.push(v?.map_err(StateError::Corrupt)?);
        }
        let mut stmt = conn
            .prepare("SELECT at, action, version, by FROM events WHERE app = ?1 ORDER BY rowid")?;
        let events = stmt
            .query_map(params![app], |r| {
                Ok(Event {
                    at: rfc3339(r.get(0)?),
                    action: r.get(1)?,
                    version: r.get(2)?,
                    by: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let current = versions
            .iter()
            .find(|v| v.version == current)
            .cloned()
            .ok_or_else(|| StateError::Corrupt(format!("app `{app}` runs a missing version")))?;
        Ok((
            AppRecord {
                name: app.to_string(),
                current,
            },
            versions,
            events,
        ))
    }
}

fn version_row(conn: &Connection, app: &str, version: i64) -> Result<Option<Version>, StateError> {
    let v = conn
        .query_row(
            "SELECT version, digest, source, spec, deployed_by, deployed_at
             FROM versions WHERE app = ?1 AND version = ?2",
            params![app, version],
            |r| version_from(r, 0),
        )
        .optional()?;
    v.transpose().map_err(StateError::Corrupt)
}

/// A version from the columns starting at `at`; the inner error is a spec
/// that does not parse.
fn version_from(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Result<Version, String>> {
    let spec: String = r.get(at + 3)?;
    let spec = match serde_json::from_str(&spec) {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("version spec: {e}"))),
    };
    Ok(Ok(Version {
        version: r.get(at)?,
        digest: r.get(at + 1)?,
        source: r.get(at + 2)?,
        spec,
        deployed_by: r.get(at + 4)?,
        deployed_at: rfc3339(r.get(at + 5)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploys_rollbacks_and_history_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let d1 = s.put_blob(b"one").unwrap();
        let d2 = s.put_blob(b"two").unwrap();
        assert_eq!(s.read_blob(&d1).unwrap(), b"one");
        let spec = AppSpec {
            hosts: vec!["a.example.com".into()],
            ..AppSpec::default()
        };
        assert_eq!(
            s.deploy("a", &d1, "upload", &spec, "ci").unwrap().version,
            1
        );
        assert_eq!(
            s.deploy("a", &d2, "upload", &spec, "ci").unwrap().version,
            2
        );
        assert_eq!(s.rollback("a", None, "ops").unwrap().digest, d1);
        drop(s);

        let s = State::open(dir.path()).unwrap();
        let apps = s.apps().unwrap();
        assert_eq!(apps.len(), 1);
        assert_eq!(
            (apps[0].current.version, apps[0].current.spec.clone()),
            (1, spec)
        );
        let (_, versions, events) = s.app("a").unwrap();
        assert_eq!(versions.len(), 2);
        let actions: Vec<_> = events
            .iter()
            .map(|e| (e.action.as_str(), e.version))
            .collect();
        assert_eq!(actions, [("deploy", 1), ("deploy", 2), ("rollback", 1)]);
        assert!(matches!(
            s.rollback("a", None, "ops"),
            Err(StateError::NoEarlier(_))
        ));
        assert!(matches!(
            s.rollback("a", Some(9), "ops"),
            Err(StateError::NoVersion { .. })
        ));
        assert_eq!(s.rollback("a", Some(2), "ops").unwrap().digest, d2);

        s.delete("a").unwrap();
        assert!(matches!(s.app("a"), Err(StateError::NoApp(_))));
        assert_eq!(s.gc().unwrap(), 2);
        // An upload no version names yet survives another app's delete,
        // until its grace is over; named by a deploy under way, it is
        // pending again.
        let d3 = s.put_blob(b"three").unwrap();
        assert_eq!(s.gc().unwrap(), 0);
        assert!(s.touch_blob(&d3));
        let mut s = s;
        s.grace = Duration::ZERO;
        assert_eq!(s.gc().unwrap(), 1);
        assert!(!s.touch_blob(&d3));

        // A blob changed on disk is refused.
        let d = s.put_blob(b"three").unwrap();
        std::fs::write(s.blob_path(&d).unwrap(), b"evil").unwrap();
        assert!(matches!(s.read_blob(&d), Err(StateError::Corrupt(_))));
    }

    #[test]
    fn the_database_and_a_new_data_dir_are_the_node_users_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        let s = State::open(&dir).unwrap();
        s.put_blob(b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        // Files an older node left wider are tightened on open.
        drop(s);
        std::fs::set_permissions(dir.join("state.db"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let _s = State::open(&dir).unwrap();
        assert_eq!(mode(&dir.join("state.db")), 0o600);
    }

    #[test]
    fn one_node_at_a_time_uses_a_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let Err(e) = State::open(dir.path()) else {
            panic!("a second open of the same data dir was let through");
        };
        let e = e.to_string();
        assert!(e.contains("another node"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("--data-dir"), "{e}");
        drop(s);
        State::open(dir.path()).unwrap();
    }
}
