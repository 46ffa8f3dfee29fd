//! `wasi:keyvalue` (store, atomics, batch) over durable backends: an
//! embedded SQLite database in WAL mode, or Redis.
//!
//! Values are bytes; counters written by `increment` are stored as the
//! decimal text of the number in both backends (as Redis does), so `get`
//! returns the same bytes whichever backend holds them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use wasmops_telemetry::ComponentMetrics;
use wasmops_telemetry::trace::{Kind, SpanContext, SpanRecord, Tracer};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "wasmops:host/extensions",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store@0.2.0-draft.bucket": super::Bucket,
            "wasi:keyvalue/store@0.2.0-draft2.bucket": super::Bucket,
            "wasi:keyvalue/atomics@0.2.0-draft2.cas": crate::kv_draft2::Cas,
            "fermyon:spin/key-value.store": crate::spin::SpinStore,
            "spin:key-value/key-value.store": crate::spin::SpinStore,
            "fermyon:spin/sqlite.connection": crate::sqlite::Connection,
            "spin:sqlite/sqlite.connection": crate::sqlite::Connection,
            "fermyon:spin/redis.connection": crate::redis_out::Connection,
            "spin:redis/redis.connection": crate::redis_out::Connection,
        },
        trappable_error_type: {
            "wasi:keyvalue/store@0.2.0-draft.error" => super::KvError,
            "wasi:keyvalue/store@0.2.0-draft2.error" => super::KvError,
        },
    });
}

use bindings::wasi::keyvalue0_2_0_draft::{atomics, batch, store};

/// Keys returned by one `list-keys` call.
const PAGE: usize = 1000;

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("no such store")]
    NoSuchStore,
    #[error("access denied")]
    AccessDenied,
    #[error("{0}")]
    Other(String),
}

impl From<wasmtime::component::ResourceTableError> for KvError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        KvError::Other(e.to_string())
    }
}

impl From<rusqlite::Error> for KvError {
    fn from(e: rusqlite::Error) -> Self {
        KvError::Other(format!("store error: {e}"))
    }
}

impl From<redis::RedisError> for KvError {
    fn from(e: redis::RedisError) -> Self {
        KvError::Other(format!("store error: {e}"))
    }
}

/// How durable an embedded store's acknowledged writes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survive a crash or `kill -9` of the process (WAL, synchronous=NORMAL).
    Process,
    /// Also survive a power loss (synchronous=FULL: an fsync per commit).
    Fsync,
}

/// One store, shared by every instance that opens it. Cheap to clone.
#[derive(Clone)]
pub struct KvStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    label: String,
    backend: Backend,
}

enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Redis {
        conn: redis::aio::ConnectionManager,
        /// `<app>:<store>:`, so that apps sharing a server stay apart.
        prefix: String,
    },
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner.backend {
            Backend::Sqlite(_) => "embedded",
            Backend::Redis { .. } => "redis",
        };
        write!(f, "KvStore({}, {kind})", self.inner.label)
    }
}

/// A Redis URL with any password replaced, fit for messages.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:***@{host}")
                } else {
                    format!("{scheme}://***@{host}")
                }
            }
            None => url.to_string(),
        },
        None => "<invalid url>".to_string(),
    }
}

impl KvStore {
    /// Opens (creating if needed) an embedded store at `path`.
    pub fn open_embedded(label: &str, path: &Path, durability: Durability) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the directory of key-value store `{label}` ({}): {e}",
                    dir.display()
                )
            })?;
        }
        let open = || -> rusqlite::Result<rusqlite::Connection> {
            let c = rusqlite::Connection::open(path)?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(
                None,
                "synchronous",
                match durability {
                    Durability::Process => "NORMAL",
                    Durability::Fsync => "FULL",
                },
            )?;
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;",
            )?;
            Ok(c)
        };
        let conn = open().map_err(|e| {
            anyhow::anyhow!(
                "cannot open key-value store `{label}` at {}: {e}; check that the file is a wasmops store and that no other program holds it",
                path.display()
            )
        })?;
        Ok(Self {
            inner: Arc::new(StoreInner {
                label: label.to_string(),
                backend: Backend::Sqlite(Mutex::new(conn)),
            }),
        })
    }

    /// Connects to a Redis store. Keys live under `prefix`. Must be called
    /// inside a tokio runtime.
    pub async fn open_redis(label: &str, url: &str, prefix: String) -> anyhow::Result<Self> {
        let shown = redact_url(url);
        let client = redis::Client::open(url).map_err(|e| {
            anyhow::anyhow!("invalid Redis URL `{shown}` for key-value store `{label}`: {e}")
        })?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(5))
            .set_response_timeout(std::time::Duration::from_secs(10))
            .set_number_of_retries(2);
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to Redis at {shown} for key-value store `{label}`: {e}; check that the server runs and the URL is right"
            )
        })?;
        Ok(Self {
            inner: Arc::new(StoreInner {
                label: label.to_string(),
                backend: Backend::Redis { conn, prefix },
            }),
        })
    }

    pub fn label(&self) -> &str {
        &self.inner.label
    }

    fn is_embedded(&self) -> bool {
        matches!(self.inner.backend, Backend::Sqlite(_))
    }

    /// Runs `f` on the embedded store's connection on the blocking pool: a
    /// write may wait for SQLite's lock (up to the busy timeout while another
    /// worker process writes) and, with `durability = "fsync"`, for the
    /// disk, and neither may hold a serving thread (a worker process has
    /// one). `None` for a Redis store.
    async fn embedded<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<R, KvError> + Send + 'static,
    ) -> Option<Result<R, KvError>> {
        if !self.is_embedded() {
            return None;
        }
        let inner = self.inner.clone();
        let job = tokio::task::spawn_blocking(move || match &inner.backend {
            Backend::Sqlite(c) => f(&mut c.lock().unwrap_or_else(|p| p.into_inner())),
            Backend::Redis { .. } => unreachable!("checked above"),
        });
        Some(job.await.unwrap_or_else(|e| {
            Err(KvError::Other(format!(
                "the key-value operation did not finish: {e}"
            )))
        }))
    }

    fn redis(&self) -> (redis::aio::ConnectionManager, &str) {
        match &self.inner.backend {
            Backend::Redis { conn, prefix } => (conn.clone(), prefix),
            Backend::Sqlite(_) => unreachable!("checked by the caller"),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let k = key.to_string();
        if let Some(r) = self.embedded(move |c| read_value(c, &k)).await {
            return r;
        }
        let (mut conn, prefix) = self.redis();
        Ok(redis::cmd("GET")
            .arg(format!("{prefix}{key}"))
            .query_async(&mut conn)
            .await?)
    }

    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        if self.is_embedded() {
            return self.set_many(&[(key.to_string(), value.to_vec())]).await;
        }
        let (mut conn, prefix) = self.redis();
        redis::cmd("SET")
            .arg(format!("{prefix}{key}"))
            .arg(value)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.delete_many(&[key.to_string()]).await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        let k = key.to_string();
        if let Some(r) = self
            .embedded(move |c| {
                let mut st = c.prepare_cached("SELECT 1 FROM kv WHERE key = ?1")?;
                Ok(st.exists([k])?)
            })
            .await
        {
            return r;
        }
        let (mut conn, prefix) = self.redis();
        let n: i64 = redis::cmd("EXISTS")
            .arg(format!("{prefix}{key}"))
            .query_async(&mut conn)
            .await?;
        Ok(n > 0)
    }

    /// One page of keys from `cursor`, and the cursor of the next page.
    pub async fn list_keys(
        &self,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let offset = i64::try_from(cursor.unwrap_or(0)).unwrap_or(i64::MAX);
        if let Some(r) = self
            .embedded(move |c| {
                let mut st =
                    c.prepare_cached("SELECT key FROM kv ORDER BY key LIMIT ?1 OFFSET ?2")?;
                let keys = st
                    .query_map(rusqlite::params![PAGE as i64 + 1, offset], |r| {
                        r.get::<_, String>(0)
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(page(keys, offset as u64))
            })
            .await
        {
            return r;
        }
        let (mut conn, prefix) = self.redis();
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor.unwrap_or(0))
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await?;
        let keys = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect();
        Ok((keys, (next != 0).then_some(next)))
    }

    /// Adds `delta` to the number under `key` (absent is 0), atomically, and
    /// returns the new number.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let k = key.to_string();
        if let Some(r) = self
            .embedded(move |c| {
                // IMMEDIATE: the read and the write are one step even when
                // another process shares the file.
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let current = match read_value(&tx, &k)? {
                    None => 0,
                    Some(v) => parse_counter(&k, &v)?,
                };
                let new = current.checked_add(delta).ok_or_else(|| {
                    KvError::Other(format!("incrementing `{k}` overflows a 64-bit integer"))
                })?;
                write_value(&tx, &k, new.to_string().as_bytes())?;
                tx.commit()?;
                Ok(new)
            })
            .await
        {
            return r;
        }
        let (mut conn, prefix) = self.redis();
        redis::cmd("INCRBY")
            .arg(format!("{prefix}{key}"))
            .arg(delta)
            .query_async(&mut conn)
            .await
            .map_err(|e: redis::RedisError| {
                if e.kind() == redis::ErrorKind::TypeError
                    || e.to_string().contains("not an integer")
                {
                    KvError::Other(format!("the value of `{key}` is not an integer"))
                } else {
                    e.into()
                }
            })
    }

    /// Sets `key` to `new` if its value is still `expected` (`None`: the
    /// key is absent), in one indivisible step; whether it did.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        let (k, exp, val) = (key.to_string(), expected.map(<[u8]>::to_vec), new.to_vec());
        if let Some(r) = self
            .embedded(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                if read_value(&tx, &k)? != exp {
                    return Ok(false);
                }
                write_value(&tx, &k, &val)?;
                tx.commit()?;
                Ok(true)
            })
            .await
        {
            return r;
        }
        // One script, so Redis runs the compare and the set as one step.
        const SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if (ARGV[1] == '0' and v == false) or (ARGV[1] == '1' and v == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3])
  return 1
end
return 0";
        let (mut conn, prefix) = self.redis();
        let done: i64 = redis::cmd("EVAL")
            .arg(SCRIPT)
            .arg(1)
            .arg(format!("{prefix}{key}"))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .query_async(&mut conn)
            .await?;
        Ok(done == 1)
    }

    pub async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ks = keys.to_vec();
        if let Some(r) = self
            .embedded(move |c| {
                let tx = c.transaction()?;
                let mut out = Vec::with_capacity(ks.len());
                for k in ks {
                    let v = read_value(&tx, &k)?;
                    out.push(v.map(|v| (k, v)));
                }
                Ok(out)
            })
            .await
        {
            return r;
        }
        let (mut conn, prefix) = self.redis();
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(format!("{prefix}{k}"));
        }
        let values: Vec<Option<Vec<u8>>> = cmd.query_async(&mut conn).await?;
        Ok(keys
            .iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| (k.clone(), v)))
            .collect())
    }

    pub async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let ps = pairs.to_vec();
        if let Some(r) = self
            .embedded(move |c| {
                let tx = c.transaction()?;
                for (k, v) in &ps {
                    write_value(&tx, k, v)?;
                }
                Ok(tx.commit()?)
            })
            .await
        {
            return r;
        }
        let (mut conn, prefix) = self.redis();
        let mut cmd = redis::cmd("MSET");
        for (k, v) in pairs {
            cmd.arg(format!("{prefix}{k}")).arg(v.as_slice());
        }
        cmd.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    pub async fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ks = keys.to_vec();
        if let Some(r) = self
            .embedded(move |c| {
                let tx = c.transaction()?;
                {
                    let mut st = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
                    for k in &ks {
                        st.execute([k])?;
                    }
                }
                Ok(tx.commit()?)
            })
            .await
        {
            return r;
        }
        let (mut conn, prefix) = self.redis();
        let mut cmd = redis::cmd("DEL");
        for k in keys {
            cmd.arg(format!("{prefix}{k}"));
        }
        cmd.query_async::<()>(&mut conn).await?;
        Ok(())
    }
}

/// The value under `key` in an embedded store.
fn read_value(c: &rusqlite::Connection, key: &str) -> Result<Option<Vec<u8>>, KvError> {
    use rusqlite::OptionalExtension;
    let mut st = c.prepare_cached("SELECT value FROM kv WHERE key = ?1")?;
    Ok(st.query_row([key], |r| r.get(0)).optional()?)
}

/// Sets `key` to `value` in an embedded store.
fn write_value(c: &rusqlite::Connection, key: &str, value: &[u8]) -> Result<(), KvError> {
    let mut st = c.prepare_cached(
        "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?;
    st.execute(rusqlite::params![key, value])?;
    Ok(())
}

fn page(mut keys: Vec<String>, offset: u64) -> (Vec<String>, Option<u64>) {
    if keys.len() > PAGE {
        keys.truncate(PAGE);
        (keys, Some(offset + PAGE as u64))
    } else {
        (keys, None)
    }
}

fn parse_counter(key: &str, v: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| KvError::Other(format!("the value of `{key}` is not an integer")))
}

/// The stores one component may open, by label. The default opens none.
#[derive(Clone, Default)]
pub struct KvAccess {
    stores: Arc<HashMap<String, KvStore>>,
}

impl std::fmt::Debug for KvAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.stores.keys()).finish()
    }
}

impl KvAccess {
    pub fn new(stores: impl IntoIterator<Item = KvStore>) -> Self {
        Self {
            stores: Arc::new(
                stores
                    .into_iter()
                    .map(|s| (s.label().to_string(), s))
                    .collect(),
            ),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// The store granted under `label`.
    pub(crate) fn get(&self, label: &str) -> Option<KvStore> {
        self.stores.get(label).cloned()
    }
}

/// An open bucket: the store it belongs to.
pub struct Bucket {
    store: KvStore,
}

impl Bucket {
    pub(crate) fn new(store: KvStore) -> Self {
        Self { store }
    }
}

/// What the host functions see of an instance's state.
pub struct KvView<'a> {
    pub table: &'a mut ResourceTable,
    pub access: &'a KvAccess,
    pub metrics: Option<&'a ComponentMetrics>,
    pub trace: Option<(&'a Tracer, SpanContext)>,
}

impl KvView<'_> {
    pub(crate) fn store(&self, b: &Resource<Bucket>) -> Result<KvStore, KvError> {
        Ok(self.table.get(b)?.store.clone())
    }
}

/// Runs one operation, counting it and recording its span.
pub(crate) async fn op<T>(
    metrics: Option<&ComponentMetrics>,
    trace: Option<(&Tracer, SpanContext)>,
    store: &KvStore,
    op: &'static str,
    f: impl Future<Output = Result<T, KvError>>,
) -> Result<T, KvError> {
    {
        let span = trace.filter(|(_, p)| p.sampled).map(|(t, parent)| {
            let mut s = SpanRecord::start(
                "key-value",
                Kind::Client,
                parent.child(),
                Some(parent.span_id),
            );
            s.attr("wasmops.kv.store", store.label().to_string())
                .attr("wasmops.kv.operation", op);
            (t, s)
        });
        let started = Instant::now();
        let r = f.await;
        if let Some(m) = metrics {
            m.kv_operation(
                store.label(),
                op,
                if r.is_ok() { "ok" } else { "error" },
                started.elapsed().as_secs_f64(),
            );
        }
        if let Some((t, mut s)) = span {
            if let Err(e) = &r {
                s.error = Some(e.to_string());
            }
            t.end(s);
        }
        r
    }
}

/// `open`, the errors and the bucket operations both drafts of
/// `wasi:keyvalue` share; `$list_keys` is the one that differs (the
/// cursor's type).
macro_rules! keyvalue_store {
    ($store:path, $($list_keys:tt)*) => {
        use $store as kv_store;

        impl kv_store::Host for KvView<'_> {
            async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KvError> {
                match self.access.get(&identifier) {
                    Some(store) => Ok(self.table.push(Bucket::new(store))?),
                    None => {
                        tracing::warn!(store = %identifier, "key-value store denied: not granted to the component");
                        Err(KvError::AccessDenied)
                    }
                }
            }

            fn convert_error(&mut self, err: KvError) -> wasmtime::Result<kv_store::Error> {
                Ok(match err {
                    KvError::NoSuchStore => kv_store::Error::NoSuchStore,
                    KvError::AccessDenied => kv_store::Error::AccessDenied,
                    KvError::Other(e) => kv_store::Error::Other(e),
                })
            }
        }

        impl kv_store::HostBucket for KvView<'_> {
            async fn get(&mut self, b: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, KvError> {
                let s = self.store(&b)?;
                op(self.metrics, self.trace, &s, "get", s.get(&key)).await
            }

            async fn set(&mut self, b: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<(), KvError> {
                let s = self.store(&b)?;
                op(self.metrics, self.trace, &s, "set", s.set(&key, &value)).await
            }

            async fn delete(&mut self, b: Resource<Bucket>, key: String) -> Result<(), KvError> {
                let s = self.store(&b)?;
                op(self.metrics, self.trace, &s, "delete", s.delete(&key)).await
            }

            async fn exists(&mut self, b: Resource<Bucket>, key: String) -> Result<bool, KvError> {
                let s = self.store(&b)?;
                op(self.metrics, self.trace, &s, "exists", s.exists(&key)).await
            }

            async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
                self.table.delete(b)?;
                Ok(())
            }

            $($list_keys)*
        }
    };
}
pub(crate) use keyvalue_store;

mod draft_store {
    use super::*;
    keyvalue_store!(
        super::store,
        async fn list_keys(
            &mut self,
            b: Resource<Bucket>,
            cursor: Option<u64>,
        ) -> Result<store::KeyResponse, KvError> {
            let s = self.store(&b)?;
            let (keys, cursor) = op(
                self.metrics,
                self.trace,
                &s,
                "list-keys",
                s.list_keys(cursor),
            )
            .await?;
            Ok(store::KeyResponse { keys, cursor })
        }
    );
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        let s = self.store(&b)?;
        let delta = i64::try_from(delta).map_err(|_| {
            KvError::Other("the increment does not fit a 64-bit signed integer".into())
        })?;
        let n = op(
            self.metrics,
            self.trace,
            &s,
            "increment",
            s.increment(&key, delta),
        )
        .await?;
        u64::try_from(n).map_err(|_| KvError::Other(format!("the value of `{key}` is negative")))
    }
}

/// The batch operations both drafts share; `$get_many` is the one whose
/// result differs in shape.
macro_rules! keyvalue_batch {
    ($batch:path, $($get_many:tt)*) => {
        impl $batch for KvView<'_> {
            async fn set_many(&mut self, b: Resource<Bucket>, pairs: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
                let s = self.store(&b)?;
                op(self.metrics, self.trace, &s, "set-many", s.set_many(&pairs)).await
            }

            async fn delete_many(&mut self, b: Resource<Bucket>, keys: Vec<String>) -> Result<(), KvError> {
                let s = self.store(&b)?;
                op(self.metrics, self.trace, &s, "delete-many", s.delete_many(&keys)).await
            }

            $($get_many)*
        }
    };
}
pub(crate) use keyvalue_batch;

keyvalue_batch!(
    batch::Host,
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let s = self.store(&b)?;
        op(self.metrics, self.trace, &s, "get-many", s.get_many(&keys)).await
    }
);

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds `wasi:keyvalue` store, atomics and batch to the linker.
pub fn add_to_linker<T: Send + 'static>(
    l: &mut Linker<T>,
    f: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(l, f)?;
    atomics::add_to_linker::<T, HasKv>(l, f)?;
    batch::add_to_linker::<T, HasKv>(l, f)?;
    use bindings::wasi::keyvalue0_2_0_draft2 as draft2;
    draft2::store::add_to_linker::<T, HasKv>(l, f)?;
    draft2::atomics::add_to_linker::<T, HasKv>(l, f)?;
    draft2::batch::add_to_linker::<T, HasKv>(l, f)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("redis://u:s3cret@h"), "redis://u:***@h");
        assert_eq!(redact_url("redis://127.0.0.1"), "redis://127.0.0.1");
    }

    #[tokio::test]
    async fn embedded_store_roundtrip_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let s = KvStore::open_embedded(
            "default",
            &dir.path().join("kv/default.db"),
            Durability::Process,
        )
        .unwrap();
        assert_eq!(s.get("a").await.unwrap(), None);
        s.set("a", b"1").await.unwrap();
        assert_eq!(s.get("a").await.unwrap(), Some(b"1".to_vec()));
        assert!(s.exists("a").await.unwrap());
        assert_eq!(s.increment("a", 41).await.unwrap(), 42);
        assert_eq!(s.get("a").await.unwrap(), Some(b"42".to_vec()));
        assert_eq!(s.increment("n", -3).await.unwrap(), -3);
        // Compare-and-swap: only from the value (or absence) it expects.
        assert!(s.compare_and_swap("c", None, b"1").await.unwrap());
        assert!(!s.compare_and_swap("c", None, b"2").await.unwrap());
        assert!(!s.compare_and_swap("c", Some(b"0"), b"2").await.unwrap());
        assert!(s.compare_and_swap("c", Some(b"1"), b"2").await.unwrap());
        assert_eq!(s.get("c").await.unwrap(), Some(b"2".to_vec()));
        s.delete("c").await.unwrap();
        s.set("t", b"text").await.unwrap();
        assert!(
            matches!(s.increment("t", 1).await, Err(KvError::Other(m)) if m.contains("not an integer"))
        );
        s.set_many(&[("x".into(), b"1".to_vec()), ("y".into(), b"2".to_vec())])
            .await
            .unwrap();
        let got = s.get_many(&["x".into(), "zz".into()]).await.unwrap();
        assert_eq!(got, vec![Some(("x".into(), b"1".to_vec())), None]);
        s.delete_many(&["x".into(), "y".into()]).await.unwrap();
        assert!(!s.exists("x").await.unwrap());
        for i in 0..(PAGE + 5) {
            s.set(&format!("k{i:05}"), b"").await.unwrap();
        }
        let (first, cursor) = s.list_keys(None).await.unwrap();
        assert_eq!(first.len(), PAGE);
        let (rest, end) = s.list_keys(cursor).await.unwrap();
        assert_eq!(end, None);
        assert_eq!(first.len() + rest.len(), PAGE + 5 + 3); // a, n, t
        drop(s);
        // Reopening finds the data.
        let s = KvStore::open_embedded(
            "default",
            &dir.path().join("kv/default.db"),
            Durability::Fsync,
        )
        .unwrap();
        assert_eq!(s.get("a").await.unwrap(), Some(b"42".to_vec()));
    }

    /// A write that waits for SQLite's lock (another worker process is
    /// writing) waits on the blocking pool: the serving thread, the only
    /// one of this runtime, keeps running other tasks meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_waiting_for_the_lock_does_not_hold_the_serving_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv/default.db");
        let s = KvStore::open_embedded("default", &path, Durability::Process).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let writer = {
            let s = s.clone();
            tokio::spawn(async move { s.set("a", b"1").await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !writer.is_finished(),
            "the write should still wait for the lock"
        );
        other.execute_batch("COMMIT").unwrap();
        writer.await.unwrap().unwrap();
        assert_eq!(s.get("a").await.unwrap(), Some(b"1".to_vec()));
    }
}
