//! Spin's platform interfaces for components built with the Spin SDKs for
//! WASIp2: `fermyon:spin/key-value@2.0.0` over the same stores as
//! `wasi:keyvalue` (the component's `key_value_stores`), and
//! `fermyon:spin/variables@2.0.0` and the `wasi:config` draft of 2024-09-27
//! over the same values as `wasi:config` (the component's variables). Errors are the ones Spin gives: a label
//! not granted is `access-denied`, a missing key is `none`, a name that is
//! not a variable name is `invalid-name`, a variable not granted is
//! `undefined`.

use wasmtime::component::{HasData, Linker, Resource};

use wasmtime::component::{Accessor, FutureReader, StreamReader};

use crate::grants::ConfigVars;
use crate::host::OutboundPolicy;
use crate::kv::bindings::fermyon::spin::{
    key_value, redis as redis2, sqlite as sqlite2, variables,
};
use crate::kv::bindings::spin::key_value::key_value as key_value3;
use crate::kv::bindings::spin::redis::redis as redis3;
use crate::kv::bindings::spin::sqlite::sqlite as sqlite3;
use crate::kv::bindings::spin::variables::variables as variables3;
use crate::kv::bindings::wasi::config::store as config_draft;
use crate::kv::{KvError, KvStore, KvView, op};
use crate::redis_out::{self, RedisError};
use crate::sqlite::{SqlError, SqliteAccess};

/// An open `fermyon:spin/key-value` store.
pub struct SpinStore {
    store: KvStore,
}

/// What Spin's host functions see of an instance.
pub struct SpinView<'a> {
    pub kv: KvView<'a>,
    pub vars: &'a ConfigVars,
    pub sqlite: &'a SqliteAccess,
    /// Outbound grants (Redis addresses among them).
    pub outbound: &'a OutboundPolicy,
    /// Redis connections the instance holds open.
    pub redis_open: &'a mut usize,
}

impl<'a> SpinView<'a> {
    fn store(&self, s: &Resource<SpinStore>) -> wasmtime::Result<KvStore> {
        Ok(self.kv.table.get(s)?.store.clone())
    }

    /// Runs one operation on `st` (counted and traced), with Spin's errors;
    /// only the metrics and trace context are held across the await (the
    /// resource table is not `Sync`).
    fn op<'f, T: 'f>(
        &self,
        st: &'f KvStore,
        name: &'static str,
        f: impl Future<Output = Result<T, KvError>> + Send + 'f,
    ) -> impl Future<Output = KvResult<T>> + Send + 'f
    where
        'a: 'f,
    {
        let (metrics, trace) = (self.kv.metrics, self.kv.trace);
        async move { Ok(op(metrics, trace, st, name, f).await.map_err(kv_error)) }
    }
}

fn kv_error(e: KvError) -> key_value::Error {
    match e {
        KvError::NoSuchStore => key_value::Error::NoSuchStore,
        KvError::AccessDenied => key_value::Error::AccessDenied,
        KvError::Other(m) => key_value::Error::Other(m),
    }
}

type KvResult<T> = wasmtime::Result<Result<T, key_value::Error>>;

impl key_value::Host for SpinView<'_> {}

impl key_value::HostStore for SpinView<'_> {
    async fn open(&mut self, label: String) -> KvResult<Resource<SpinStore>> {
        match self.kv.access.get(&label) {
            Some(store) => Ok(Ok(self.kv.table.push(SpinStore { store })?)),
            None => {
                tracing::warn!(store = %label, "key-value store denied: not granted to the component");
                Ok(Err(key_value::Error::AccessDenied))
            }
        }
    }

    async fn get(&mut self, s: Resource<SpinStore>, key: String) -> KvResult<Option<Vec<u8>>> {
        let st = self.store(&s)?;
        self.op(&st, "get", st.get(&key)).await
    }

    async fn set(&mut self, s: Resource<SpinStore>, key: String, value: Vec<u8>) -> KvResult<()> {
        let st = self.store(&s)?;
        self.op(&st, "set", st.set(&key, &value)).await
    }

    async fn delete(&mut self, s: Resource<SpinStore>, key: String) -> KvResult<()> {
        let st = self.store(&s)?;
        self.op(&st, "delete", st.delete(&key)).await
    }

    async fn exists(&mut self, s: Resource<SpinStore>, key: String) -> KvResult<bool> {
        let st = self.store(&s)?;
        self.op(&st, "exists", st.exists(&key)).await
    }

    async fn get_keys(&mut self, s: Resource<SpinStore>) -> KvResult<Vec<String>> {
        let st = self.store(&s)?;
        let all = async {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let (page, next) = st.list_keys(cursor).await?;
                keys.extend(page);
                match next {
                    Some(c) => cursor = Some(c),
                    None => return Ok(keys),
                }
            }
        };
        self.op(&st, "get-keys", all).await
    }

    async fn drop(&mut self, s: Resource<SpinStore>) -> wasmtime::Result<()> {
        self.kv.table.delete(s)?;
        Ok(())
    }
}

/// Why `name` is not a variable name as Spin has them: lowercase ASCII
/// letters, digits and `_`, starting with a letter, not ending with `_`,
/// no `__`.
fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a variable name cannot be empty")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Some("variable names may contain only lower-case letters, numbers, and underscores")
    } else if !name.as_bytes()[0].is_ascii_lowercase() {
        Some("variable names must start with a letter")
    } else if name.ends_with('_') {
        Some("variable names must end with a letter or a number")
    } else if name.contains("__") {
        Some("variable names cannot contain two consecutive underscores")
    } else {
        None
    }
}

/// Why a variable could not be read (both interface versions have these).
enum VarError {
    InvalidName(String),
    Undefined(String),
}

/// The component's variable `name`, with Spin's errors.
fn variable(vars: &ConfigVars, name: &str) -> Result<String, VarError> {
    if let Some(why) = invalid_name(name) {
        return Err(VarError::InvalidName(format!("{name:?}: {why}")));
    }
    match vars.get(name) {
        Some(v) => Ok(v.to_string()),
        None => Err(VarError::Undefined(format!(
            "no variable {name:?} for this component (grant it in the manifest's `variables`)"
        ))),
    }
}

macro_rules! var_error {
    ($m:ident) => {
        impl From<VarError> for $m::Error {
            fn from(e: VarError) -> Self {
                match e {
                    VarError::InvalidName(m) => $m::Error::InvalidName(m),
                    VarError::Undefined(m) => $m::Error::Undefined(m),
                }
            }
        }
    };
}
var_error!(variables);
var_error!(variables3);

impl variables::Host for SpinView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(variable(self.vars, &name).map_err(Into::into))
    }
}

impl variables3::Host for SpinView<'_> {}

impl<U> variables3::HostWithStore<U> for HasSpin {
    async fn get(
        accessor: &Accessor<U, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, variables3::Error>> {
        Ok(accessor
            .with(|mut a| variable(a.get().vars, &name))
            .map_err(Into::into))
    }
}

/// `wasi:config/store@0.2.0-draft-2024-09-27`, the draft the Spin SDKs
/// import: the component's variables, as `wasi:config@0.2.0-rc.1` gives
/// them.
impl config_draft::Host for SpinView<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config_draft::Error>> {
        Ok(Ok(self.vars.get(&key).map(str::to_string)))
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, config_draft::Error>> {
        Ok(Ok(self.vars.all()))
    }
}

fn kv_error3(e: KvError) -> key_value3::Error {
    match e {
        KvError::NoSuchStore => key_value3::Error::NoSuchStore,
        KvError::AccessDenied => key_value3::Error::AccessDenied,
        KvError::Other(m) => key_value3::Error::Other(m),
    }
}

/// What a `spin:key-value@3` operation needs once the instance's state is
/// let go: the store, and where its metrics and spans go.
struct KvOp {
    store: KvStore,
    metrics: Option<wasmops_telemetry::ComponentMetrics>,
    trace: Option<(
        wasmops_telemetry::trace::Tracer,
        wasmops_telemetry::trace::SpanContext,
    )>,
}

impl KvOp {
    /// The store behind `s` (an unknown handle is `no-such-store`, as on
    /// Spin).
    fn of<U>(
        accessor: &Accessor<U, HasSpin>,
        s: &Resource<SpinStore>,
    ) -> Result<Self, key_value3::Error> {
        accessor.with(|mut a| {
            let v = a.get();
            let store =
                v.kv.table
                    .get(s)
                    .map_err(|_| key_value3::Error::NoSuchStore)?
                    .store
                    .clone();
            Ok(KvOp {
                store,
                metrics: v.kv.metrics.cloned(),
                trace: v.kv.trace.map(|(t, c)| (t.clone(), c)),
            })
        })
    }

    async fn run<T>(
        &self,
        name: &'static str,
        f: impl Future<Output = Result<T, KvError>>,
    ) -> Result<T, key_value3::Error> {
        let trace = self.trace.as_ref().map(|(t, c)| (t, *c));
        op(self.metrics.as_ref(), trace, &self.store, name, f)
            .await
            .map_err(kv_error3)
    }
}

type Kv3<T> = wasmtime::Result<Result<T, key_value3::Error>>;

impl key_value3::Host for SpinView<'_> {}

impl key_value3::HostStore for SpinView<'_> {
    async fn drop(&mut self, s: Resource<SpinStore>) -> wasmtime::Result<()> {
        self.kv.table.delete(s)?;
        Ok(())
    }
}

impl<U> key_value3::HostStoreWithStore<U> for HasSpin {
    async fn open(accessor: &Accessor<U, Self>, label: String) -> Kv3<Resource<SpinStore>> {
        accessor.with(|mut a| {
            let v = a.get();
            match v.kv.access.get(&label) {
                Some(store) => Ok(Ok(v.kv.table.push(SpinStore { store })?)),
                None => {
                    tracing::warn!(store = %label, "key-value store denied: not granted to the component");
                    Ok(Err(key_value3::Error::AccessDenied))
                }
            }
        })
    }

    async fn get(
        accessor: &Accessor<U, Self>,
        s: Resource<SpinStore>,
        key: String,
    ) -> Kv3<Option<Vec<u8>>> {
        let o = match KvOp::of(accessor, &s) {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        Ok(o.run("get", o.store.get(&key)).await)
    }

    async fn set(
        accessor: &Accessor<U, Self>,
        s: Resource<SpinStore>,
        key: String,
        value: Vec<u8>,
    ) -> Kv3<()> {
        let o = match KvOp::of(accessor, &s) {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        Ok(o.run("set", o.store.set(&key, &value)).await)
    }

    async fn delete(accessor: &Accessor<U, Self>, s: Resource<SpinStore>, key: String) -> Kv3<()> {
        let o = match KvOp::of(accessor, &s) {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        Ok(o.run("delete", o.store.delete(&key)).await)
    }

    async fn exists(
        accessor: &Accessor<U, Self>,
        s: Resource<SpinStore>,
        key: String,
    ) -> Kv3<bool> {
        let o = match KvOp::of(accessor, &s) {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        Ok(o.run("exists", o.store.exists(&key)).await)
    }

    async fn get_keys(
        accessor: &Accessor<U, Self>,
        s: Resource<SpinStore>,
    ) -> wasmtime::Result<(
        StreamReader<String>,
        FutureReader<Result<(), key_value3::Error>>,
    )> {
        let keys = match KvOp::of(accessor, &s) {
            Ok(o) => o.run("get-keys", all_keys(&o.store)).await,
            Err(e) => Err(e),
        };
        let (keys, end) = match keys {
            Ok(k) => (k, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        accessor.with(|mut a| {
            Ok((
                StreamReader::new(&mut a, keys)?,
                FutureReader::new(&mut a, async move { wasmtime::error::Ok(end) })?,
            ))
        })
    }
}

/// Every key of `st`, page after page.
async fn all_keys(st: &KvStore) -> Result<Vec<String>, KvError> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = st.list_keys(cursor).await?;
        keys.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(keys),
        }
    }
}

macro_rules! sqlite_types {
    ($m:ident) => {
        impl From<SqlError> for $m::Error {
            fn from(e: SqlError) -> Self {
                match e {
                    SqlError::NoSuchDatabase => $m::Error::NoSuchDatabase,
                    SqlError::AccessDenied => $m::Error::AccessDenied,
                    SqlError::InvalidConnection => $m::Error::InvalidConnection,
                    SqlError::DatabaseFull => $m::Error::DatabaseFull,
                    SqlError::Io(m) => $m::Error::Io(m),
                }
            }
        }
        impl From<$m::Value> for crate::sqlite::Value {
            fn from(v: $m::Value) -> Self {
                match v {
                    $m::Value::Integer(i) => Self::Integer(i),
                    $m::Value::Real(f) => Self::Real(f),
                    $m::Value::Text(s) => Self::Text(s),
                    $m::Value::Blob(b) => Self::Blob(b),
                    $m::Value::Null => Self::Null,
                }
            }
        }
        impl From<crate::sqlite::Value> for $m::Value {
            fn from(v: crate::sqlite::Value) -> Self {
                use crate::sqlite::Value as V;
                match v {
                    V::Integer(i) => Self::Integer(i),
                    V::Real(f) => Self::Real(f),
                    V::Text(s) => Self::Text(s),
                    V::Blob(b) => Self::Blob(b),
                    V::Null => Self::Null,
                }
            }
        }
        pub(super) fn row(values: Vec<crate::sqlite::Value>) -> $m::RowResult {
            $m::RowResult {
                values: values.into_iter().map(Into::into).collect(),
            }
        }
    };
}

mod sqlite2_types {
    use super::*;
    sqlite_types!(sqlite2);
    pub(super) use row as row2;
}
mod sqlite3_types {
    use super::*;
    sqlite_types!(sqlite3);
    pub(super) use row as row3;
}
use sqlite2_types::row2;
use sqlite3_types::row3;

impl SpinView<'_> {
    fn sql_open(
        &mut self,
        database: &str,
    ) -> wasmtime::Result<Result<Resource<Connection>, SqlError>> {
        match self.sqlite.open(database) {
            Ok(c) => Ok(Ok(self.kv.table.push(c)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    /// What a statement on `c` needs, taken out of the instance.
    fn sql_job(&self, c: &Resource<Connection>) -> Result<SqlJob, SqlError> {
        let conn = self
            .kv
            .table
            .get(c)
            .map_err(|_| SqlError::InvalidConnection)?;
        Ok(SqlJob {
            db: conn.db().clone(),
            deadline: std::time::Instant::now() + self.sqlite.statement_limit,
        })
    }

    /// Records what the statement on `c` did, for `last-insert-rowid` and
    /// `changes`.
    fn sql_done(&mut self, c: &Resource<Connection>, rowid: i64, changes: u64) {
        if let Ok(conn) = self.kv.table.get_mut(c) {
            conn.last_insert_rowid = rowid;
            conn.changes = changes;
        }
    }

    async fn sql_execute(
        &mut self,
        c: &Resource<Connection>,
        statement: String,
        params: Vec<crate::sqlite::Value>,
    ) -> Result<crate::sqlite::Rows, SqlError> {
        let (rows, rowid, changes) = self.sql_job(c)?.run(statement, params).await?;
        self.sql_done(c, rowid, changes);
        Ok(rows)
    }
}

/// A statement to run on the blocking pool: SQLite calls block, and a slow
/// one (up to the statement limit) must not hold an async worker that
/// other requests and apps need.
struct SqlJob {
    db: crate::sqlite::SqliteDb,
    deadline: std::time::Instant,
}

impl SqlJob {
    async fn run(
        self,
        statement: String,
        params: Vec<crate::sqlite::Value>,
    ) -> Result<(crate::sqlite::Rows, i64, u64), SqlError> {
        tokio::task::spawn_blocking(move || self.db.execute(&statement, params, self.deadline))
            .await
            .map_err(|e| SqlError::Io(format!("the statement did not finish: {e}")))?
    }
}

use crate::sqlite::Connection;

/// `open`, `execute` and `drop` of a connection, the same in both interface
/// versions; `$row` converts a row, `$extra` are the version's own methods.
macro_rules! sqlite_connection {
    ($m:ident, $row:ident, $($extra:tt)*) => {
        impl $m::Host for SpinView<'_> {}

        impl $m::HostConnection for SpinView<'_> {
            async fn open(
                &mut self,
                database: String,
            ) -> wasmtime::Result<Result<Resource<Connection>, $m::Error>> {
                Ok(self.sql_open(&database)?.map_err(Into::into))
            }

            async fn execute(
                &mut self,
                c: Resource<Connection>,
                statement: String,
                parameters: Vec<$m::Value>,
            ) -> wasmtime::Result<Result<$m::QueryResult, $m::Error>> {
                let params = parameters.into_iter().map(Into::into).collect();
                Ok(self
                    .sql_execute(&c, statement, params)
                    .await
                    .map(|r| $m::QueryResult {
                        columns: r.columns,
                        rows: r.rows.into_iter().map($row).collect(),
                    })
                    .map_err(Into::into))
            }

            async fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
                self.kv.table.delete(c)?;
                Ok(())
            }

            $($extra)*
        }
    };
}

sqlite_connection!(sqlite2, row2,);
sqlite_connection! {
    sqlite3,
    row3,
    async fn last_insert_rowid(&mut self, c: Resource<Connection>) -> wasmtime::Result<i64> {
        Ok(self.kv.table.get(&c)?.last_insert_rowid)
    }

    async fn changes(&mut self, c: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(self.kv.table.get(&c)?.changes)
    }
}

type Sql3<T> = wasmtime::Result<Result<T, sqlite3::Error>>;

impl<U> sqlite3::HostConnectionWithStore<U> for HasSpin {
    async fn open_async(
        accessor: &Accessor<U, Self>,
        database: String,
    ) -> Sql3<Resource<Connection>> {
        Ok(accessor
            .with(|mut a| a.get().sql_open(&database))?
            .map_err(Into::into))
    }

    async fn execute_async(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        statement: String,
        parameters: Vec<sqlite3::Value>,
    ) -> Sql3<(
        Vec<String>,
        StreamReader<sqlite3::RowResult>,
        FutureReader<Result<(), sqlite3::Error>>,
    )> {
        let params = parameters.into_iter().map(Into::into).collect();
        let job = match accessor.with(|mut a| a.get().sql_job(&c)) {
            Ok(j) => j,
            Err(e) => return Ok(Err(e.into())),
        };
        let (rows, rowid, changes) = match job.run(statement, params).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.into())),
        };
        accessor.with(|mut a| {
            a.get().sql_done(&c, rowid, changes);
            let stream: Vec<sqlite3::RowResult> = rows.rows.into_iter().map(row3).collect();
            Ok(Ok((
                rows.columns,
                StreamReader::new(&mut a, stream)?,
                FutureReader::new(&mut a, async { wasmtime::error::Ok(Ok(())) })?,
            )))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
    ) -> wasmtime::Result<i64> {
        accessor.with(|mut a| Ok(a.get().kv.table.get(&c)?.last_insert_rowid))
    }

    async fn changes_async(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
    ) -> wasmtime::Result<u64> {
        accessor.with(|mut a| Ok(a.get().kv.table.get(&c)?.changes))
    }
}

macro_rules! redis_types {
    ($m:ident) => {
        impl From<RedisError> for $m::Error {
            fn from(e: RedisError) -> Self {
                match e {
                    RedisError::InvalidAddress => $m::Error::InvalidAddress,
                    RedisError::TooManyConnections => $m::Error::TooManyConnections,
                    RedisError::TypeError => $m::Error::TypeError,
                    RedisError::Other(m) => $m::Error::Other(m),
                }
            }
        }
        impl From<$m::RedisParameter> for redis_out::Param {
            fn from(p: $m::RedisParameter) -> Self {
                match p {
                    $m::RedisParameter::Int64(i) => Self::Int(i),
                    $m::RedisParameter::Binary(b) => Self::Binary(b),
                }
            }
        }
        impl From<redis_out::Reply> for $m::RedisResult {
            fn from(r: redis_out::Reply) -> Self {
                match r {
                    redis_out::Reply::Nil => Self::Nil,
                    redis_out::Reply::Status(s) => Self::Status(s),
                    redis_out::Reply::Int(i) => Self::Int64(i),
                    redis_out::Reply::Binary(b) => Self::Binary(b),
                }
            }
        }
    };
}
redis_types!(redis2);
redis_types!(redis3);

impl SpinView<'_> {
    /// Connects to `address` if granted and the instance has a connection
    /// to spare.
    async fn redis_open(
        &mut self,
        address: &str,
    ) -> wasmtime::Result<Result<Resource<redis_out::Connection>, RedisError>> {
        if *self.redis_open >= redis_out::MAX_CONNECTIONS {
            return Ok(Err(RedisError::TooManyConnections));
        }
        match redis_out::open(self.outbound, address).await {
            Ok(c) => {
                *self.redis_open += 1;
                Ok(Ok(self.kv.table.push(c)?))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn redis_drop(&mut self, c: Resource<redis_out::Connection>) -> wasmtime::Result<()> {
        self.kv.table.delete(c)?;
        *self.redis_open = self.redis_open.saturating_sub(1);
        Ok(())
    }

    /// A handle on the connection behind `c` that outlives the borrow.
    fn redis(
        &self,
        c: &Resource<redis_out::Connection>,
    ) -> wasmtime::Result<redis_out::Connection> {
        Ok(self.kv.table.get(c)?.clone())
    }
}

type R2<T> = wasmtime::Result<Result<T, redis2::Error>>;

/// The Redis operations that only pass their arguments on, for one
/// interface version: `v2` methods on the instance's view, `v3` ones on
/// the store's accessor.
macro_rules! redis_ops {
    (v2: $($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            async fn $name(&mut self, c: Resource<redis_out::Connection>, $($arg: $ty),*) -> R2<$ret> {
                let c = self.redis(&c)?;
                Ok(redis_out::ops::$name(&c, $($arg),*).await.map_err(Into::into))
            }
        )*
    };
    (v3: $($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            async fn $name(accessor: &Accessor<U, Self>, c: Resource<redis_out::Connection>, $($arg: $ty),*) -> R3<$ret> {
                let c = redis3_conn(accessor, &c)?;
                Ok(redis_out::ops::$name(&c, $($arg),*).await.map_err(Into::into))
            }
        )*
    };
}

/// Those operations, listed once for both versions.
macro_rules! redis_simple_ops {
    ($v:ident) => {
        redis_ops!($v:
            publish(channel: String, payload: Vec<u8>) -> ();
            get(key: String) -> Option<Vec<u8>>;
            set(key: String, value: Vec<u8>) -> ();
            incr(key: String) -> i64;
            del(keys: Vec<String>) -> u32;
            sadd(key: String, values: Vec<String>) -> u32;
            smembers(key: String) -> Vec<String>;
            srem(key: String, values: Vec<String>) -> u32;
        );
    };
}

impl redis2::Host for SpinView<'_> {}

impl redis2::HostConnection for SpinView<'_> {
    async fn open(&mut self, address: String) -> R2<Resource<redis_out::Connection>> {
        Ok(self.redis_open(&address).await?.map_err(Into::into))
    }
    async fn execute(
        &mut self,
        c: Resource<redis_out::Connection>,
        command: String,
        arguments: Vec<redis2::RedisParameter>,
    ) -> R2<Vec<redis2::RedisResult>> {
        let c = self.redis(&c)?;
        let args = arguments.into_iter().map(Into::into).collect();
        Ok(redis_out::ops::execute(&c, command, args)
            .await
            .map(|r| r.into_iter().map(Into::into).collect())
            .map_err(Into::into))
    }
    async fn drop(&mut self, c: Resource<redis_out::Connection>) -> wasmtime::Result<()> {
        self.redis_drop(c)
    }
    redis_simple_ops!(v2);
}

type R3<T> = wasmtime::Result<Result<T, redis3::Error>>;

/// The connection behind `c`, or the trap an unknown handle is.
fn redis3_conn<U>(
    accessor: &Accessor<U, HasSpin>,
    c: &Resource<redis_out::Connection>,
) -> wasmtime::Result<redis_out::Connection> {
    accessor.with(|mut a| a.get().redis(c))
}

impl redis3::Host for SpinView<'_> {}

impl redis3::HostConnection for SpinView<'_> {
    async fn drop(&mut self, c: Resource<redis_out::Connection>) -> wasmtime::Result<()> {
        self.redis_drop(c)
    }
}

impl<U> redis3::HostConnectionWithStore<U> for HasSpin {
    async fn open(
        accessor: &Accessor<U, Self>,
        address: String,
    ) -> R3<Resource<redis_out::Connection>> {
        let (policy, full) = accessor.with(|mut a| {
            let v = a.get();
            (
                v.outbound.clone(),
                *v.redis_open >= redis_out::MAX_CONNECTIONS,
            )
        });
        if full {
            return Ok(Err(redis3::Error::TooManyConnections));
        }
        match redis_out::open(&policy, &address).await {
            Ok(c) => accessor.with(|mut a| {
                let v = a.get();
                *v.redis_open += 1;
                Ok(Ok(v.kv.table.push(c)?))
            }),
            Err(e) => Ok(Err(e.into())),
        }
    }
    async fn execute(
        accessor: &Accessor<U, Self>,
        c: Resource<redis_out::Connection>,
        command: String,
        arguments: Vec<redis3::RedisParameter>,
    ) -> R3<Vec<redis3::RedisResult>> {
        let c = redis3_conn(accessor, &c)?;
        let args = arguments.into_iter().map(Into::into).collect();
        Ok(redis_out::ops::execute(&c, command, args)
            .await
            .map(|r| r.into_iter().map(Into::into).collect())
            .map_err(Into::into))
    }
    redis_simple_ops!(v3);
}

struct HasSpin;

impl HasData for HasSpin {
    type Data<'a> = SpinView<'a>;
}

/// Adds Spin's key-value and variables interfaces to the linker.
/// Adds Spin's interfaces; the `spin:*@3` ones (async functions) only to a
/// linker of an engine with concurrency support.
pub fn add_to_linker<T: Send + 'static>(
    l: &mut Linker<T>,
    concurrent: bool,
    f: fn(&mut T) -> SpinView<'_>,
) -> wasmtime::Result<()> {
    key_value::add_to_linker::<T, HasSpin>(l, f)?;
    variables::add_to_linker::<T, HasSpin>(l, f)?;
    config_draft::add_to_linker::<T, HasSpin>(l, f)?;
    sqlite2::add_to_linker::<T, HasSpin>(l, f)?;
    redis2::add_to_linker::<T, HasSpin>(l, f)?;
    if concurrent {
        key_value3::add_to_linker::<T, HasSpin>(l, f)?;
        variables3::add_to_linker::<T, HasSpin>(l, f)?;
        sqlite3::add_to_linker::<T, HasSpin>(l, f)?;
        redis3::add_to_linker::<T, HasSpin>(l, f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::invalid_name;

    #[test]
    fn variable_names_as_spin_has_them() {
        for ok in ["a", "greeting", "api_key2", "x1"] {
            assert_eq!(invalid_name(ok), None, "{ok}");
        }
        for bad in ["", "Greeting", "1a", "a_", "a__b", "a-b", "é"] {
            assert!(invalid_name(bad).is_some(), "{bad}");
        }
    }
}
