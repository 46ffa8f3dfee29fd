//! Spin's SQLite interfaces (`fermyon:spin/sqlite@2.0.0` and
//! `spin:sqlite/sqlite@3.1.0`) on an embedded database per label. A
//! component opens only the labels it is granted (`sqlite_databases`);
//! any other label is `access-denied`, as on Spin.
//!
//! The database is the app's, not the guest's file system: statements that
//! would reach other files (`ATTACH`, `VACUUM INTO`, the temporary-files
//! directory pragma) are refused by an authorizer, extensions cannot be loaded, a statement that runs past
//! [`SqliteAccess::statement_limit`] is interrupted, and a result larger
//! than [`MAX_RESULT_BYTES`] is an error rather than a host allocation the
//! guest chose.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;

/// The most bytes of rows one query may return.
pub const MAX_RESULT_BYTES: usize = 64 << 20;

/// A statement runs at most this long unless the component's timeout says
/// otherwise.
pub const DEFAULT_STATEMENT_LIMIT: Duration = Duration::from_secs(30);

/// One database, shared by every instance that opens it. Cheap to clone.
#[derive(Clone)]
pub struct SqliteDb {
    inner: Arc<DbInner>,
}

struct DbInner {
    label: String,
    conn: Mutex<rusqlite::Connection>,
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteDb({})", self.inner.label)
    }
}

/// A column value, as both interface versions have them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    NoSuchDatabase,
    AccessDenied,
    InvalidConnection,
    DatabaseFull,
    Io(String),
}

/// The columns and rows of one statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl SqliteDb {
    /// Opens (creating if needed) the database of `label` at `path`.
    pub fn open(label: &str, path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the directory of SQLite database `{label}` ({}): {e}",
                    dir.display()
                )
            })?;
        }
        let open = || -> rusqlite::Result<rusqlite::Connection> {
            let c = rusqlite::Connection::open(path)?;
            c.busy_timeout(Duration::from_secs(5))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(c)
        };
        let conn = open().map_err(|e| {
            anyhow::anyhow!(
                "cannot open SQLite database `{label}` at {}: {e}; check that the file is an SQLite database and that the directory is writable",
                path.display()
            )
        })?;
        Ok(Self::confined(label, conn))
    }

    /// A private in-memory database (tests, `wasmops run`).
    pub fn in_memory(label: &str) -> anyhow::Result<Self> {
        Ok(Self::confined(
            label,
            rusqlite::Connection::open_in_memory()?,
        ))
    }

    /// The guest's statements reach this database and nothing else.
    fn confined(label: &str, conn: rusqlite::Connection) -> Self {
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
            .ok();
        conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
            AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
            // Where SQLite writes temporary files is the host's business.
            AuthAction::Pragma { pragma_name, .. }
                if pragma_name.eq_ignore_ascii_case("temp_store_directory")
                    || pragma_name.eq_ignore_ascii_case("data_store_directory") =>
            {
                Authorization::Deny
            }
            _ => Authorization::Allow,
        }));
        Self {
            inner: Arc::new(DbInner {
                label: label.to_string(),
                conn: Mutex::new(conn),
            }),
        }
    }

    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Runs one statement with its `?` parameters. Also gives the rowid of
    /// the last insert and the rows changed, read under the same lock.
    ///
    /// The statement must finish by `deadline`, its time spent waiting for
    /// the database (another statement of the app holds it) included.
    pub fn execute(
        &self,
        statement: &str,
        params: Vec<Value>,
        deadline: Instant,
    ) -> Result<(Rows, i64, u64), SqlError> {
        let conn = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        if Instant::now() >= deadline {
            return Err(SqlError::Io(
                "the statement was interrupted: its time ran out while other statements held the database".into(),
            ));
        }
        conn.progress_handler(10_000, Some(move || Instant::now() >= deadline));
        let result = run(&conn, statement, params);
        conn.progress_handler(0, None::<fn() -> bool>);
        let rows = result.map_err(sql_error)?;
        Ok((rows, conn.last_insert_rowid(), conn.changes()))
    }
}

fn run(conn: &rusqlite::Connection, statement: &str, params: Vec<Value>) -> rusqlite::Result<Rows> {
    let mut stmt = conn.prepare(statement)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let params = params.into_iter().map(|v| match v {
        Value::Integer(i) => rusqlite::types::Value::Integer(i),
        Value::Real(f) => rusqlite::types::Value::Real(f),
        Value::Text(s) => rusqlite::types::Value::Text(s),
        Value::Blob(b) => rusqlite::types::Value::Blob(b),
        Value::Null => rusqlite::types::Value::Null,
    });
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            let v = match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            };
            bytes += match &v {
                Value::Text(s) => s.len(),
                Value::Blob(b) => b.len(),
                _ => 8,
            };
            values.push(v);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("the query's result exceeds {} MiB; select fewer rows (LIMIT) or smaller columns", MAX_RESULT_BYTES >> 20).into(),
            ));
        }
        out.push(values);
    }
    Ok(Rows { columns, rows: out })
}

fn sql_error(e: rusqlite::Error) -> SqlError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => {
            SqlError::DatabaseFull
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::OperationInterrupted => {
            SqlError::Io(
                "the statement was interrupted: it ran past the component's time limit".into(),
            )
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::AuthorizationForStatementDenied => {
            SqlError::Io("not authorized: a component's statements may only use its own database (no ATTACH)".into())
        }
        rusqlite::Error::ToSqlConversionFailure(m) => SqlError::Io(m.to_string()),
        _ => SqlError::Io(e.to_string()),
    }
}

/// The databases a component may open, by label.
#[derive(Clone, Debug)]
pub struct SqliteAccess {
    dbs: Arc<HashMap<String, SqliteDb>>,
    /// How long one statement may run.
    pub statement_limit: Duration,
}

impl Default for SqliteAccess {
    fn default() -> Self {
        Self {
            dbs: Arc::default(),
            statement_limit: DEFAULT_STATEMENT_LIMIT,
        }
    }
}

impl SqliteAccess {
    pub fn new(dbs: impl IntoIterator<Item = SqliteDb>) -> Self {
        Self {
            dbs: Arc::new(
                dbs.into_iter()
                    .map(|d| (d.label().to_string(), d))
                    .collect(),
            ),
            statement_limit: DEFAULT_STATEMENT_LIMIT,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// The database of `label`, if the component is granted it.
    pub fn open(&self, label: &str) -> Result<Connection, SqlError> {
        match self.dbs.get(label) {
            Some(db) => Ok(Connection {
                db: db.clone(),
                last_insert_rowid: 0,
                changes: 0,
            }),
            None => {
                tracing::warn!(database = %label, "SQLite database denied: not granted to the component");
                Err(SqlError::AccessDenied)
            }
        }
    }
}

/// An open connection (a guest resource): the database, and what its last
/// statement did.
pub struct Connection {
    db: SqliteDb,
    pub last_insert_rowid: i64,
    pub changes: u64,
}

impl Connection {
    pub fn db(&self) -> &SqliteDb {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> SqliteDb {
        SqliteDb::in_memory("default").unwrap()
    }

    fn within(d: Duration) -> Instant {
        Instant::now() + d
    }

    #[test]
    fn queries_with_parameters_and_counts_changes() {
        let d = db();
        let t = within(DEFAULT_STATEMENT_LIMIT);
        d.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, b BLOB, r REAL)",
            vec![],
            t,
        )
        .unwrap();
        let (_, rowid, changes) = d
            .execute(
                "INSERT INTO t (name, b, r) VALUES (?, ?, ?)",
                vec![
                    Value::Text("a".into()),
                    Value::Blob(vec![1, 2]),
                    Value::Real(1.5),
                ],
                t,
            )
            .unwrap();
        assert_eq!((rowid, changes), (1, 1));
        let (rows, ..) = d
            .execute("SELECT id, name, b, r, NULL AS n FROM t", vec![], t)
            .unwrap();
        assert_eq!(rows.columns, ["id", "name", "b", "r", "n"]);
        assert_eq!(
            rows.rows,
            vec![vec![
                Value::Integer(1),
                Value::Text("a".into()),
                Value::Blob(vec![1, 2]),
                Value::Real(1.5),
                Value::Null
            ]]
        );
    }

    #[test]
    fn other_files_cannot_be_reached() {
        let d = db();
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.db");
        let t = within(DEFAULT_STATEMENT_LIMIT);
        let attach = format!("ATTACH DATABASE '{}' AS o", other.display());
        assert!(matches!(
            d.execute(&attach, vec![], t),
            Err(SqlError::Io(_))
        ));
        let vacuum = format!("VACUUM INTO '{}'", other.display());
        assert!(matches!(
            d.execute(&vacuum, vec![], t),
            Err(SqlError::Io(_))
        ));
        assert!(!other.exists(), "no file was written outside the database");
        assert!(d.execute("SELECT load_extension('x')", vec![], t).is_err());
        let pragma = format!("PRAGMA temp_store_directory = '{}'", dir.path().display());
        assert!(matches!(
            d.execute(&pragma, vec![], t),
            Err(SqlError::Io(_))
        ));
    }

    #[test]
    fn a_runaway_statement_is_interrupted() {
        let d = db();
        let e = d
            .execute(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                vec![],
                within(Duration::from_millis(200)),
            )
            .unwrap_err();
        assert!(
            matches!(&e, SqlError::Io(m) if m.contains("interrupted")),
            "{e:?}"
        );
        // The connection is usable afterwards.
        d.execute("SELECT 1", vec![], within(DEFAULT_STATEMENT_LIMIT))
            .unwrap();
        // A deadline already passed: not even started.
        assert!(d.execute("SELECT 1", vec![], Instant::now()).is_err());
    }

    #[test]
    fn an_oversized_result_is_an_error() {
        let d = db();
        let e = d
            .execute(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100) SELECT zeroblob(1048576) FROM c",
                vec![],
                within(DEFAULT_STATEMENT_LIMIT),
            )
            .unwrap_err();
        assert!(
            matches!(&e, SqlError::Io(m) if m.contains("exceeds")),
            "{e:?}"
        );
    }

    #[test]
    fn labels_not_granted_are_denied() {
        let access = SqliteAccess::new([db()]);
        assert!(access.open("default").is_ok());
        assert!(matches!(access.open("other"), Err(SqlError::AccessDenied)));
    }
}
