//! A Spin SDK 5.2 HTTP component: a counter in the `default` key-value
//! store, a variable, and the errors Spin defines for what is not granted.
//!
//! - `GET /count`: increments `count` in the default store, returns it.
//! - `GET /greeting`: the `greeting` variable.
//! - `GET /denied-store`: opens the store `other` (not granted).
//! - `GET /undefined-variable`: reads `nope` (not declared).
//! - `GET /keys`: the default store's keys, sorted, comma-separated.
//! - `GET /config`: `greeting` through the `wasi:config` draft the SDK
//!   imports (`wasi:config/store@0.2.0-draft-2024-09-27`).
//! - `POST /notes` (body: text): adds a row to `notes` in the `default`
//!   SQLite database; answers `id=<rowid> count=<rows>`.
//! - `GET /notes`: the notes, one per line, oldest first.
//! - `GET /denied-database`: opens the database `other` (not granted).
//! - `GET /runaway-sql`: a query that never ends on its own; answers the
//!   error the host interrupts it with.
//! - `GET /outbound` (header `x-url`): a GET of that URL through
//!   `spin_sdk::http::send`; answers `<status> <body>` or the error.
//! - `GET /wasi-kv`: the `wasi:keyvalue@0.2.0-draft2` the SDK also
//!   imports, on the `default` store: set/get, increment, a
//!   compare-and-swap that wins and one that loses, batch and list-keys.
//! - `GET /redis` (header `x-redis`: the server's address): a round trip
//!   through outbound Redis: `set`, `get`, `incr`, `sadd`/`smembers`,
//!   `execute("PING")` and `del`.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::redis::{self, RedisParameter, RedisResult};
use spin_sdk::sqlite::{Connection, Value};

/// Every operation of the keyvalue draft once; what each answered.
fn wasi_kv() -> Result<String, spin_sdk::wit::wasi::keyvalue::store::Error> {
    use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};
    let b = store::open("default")?;
    b.set("draft2:a", b"one")?;
    let a = String::from_utf8_lossy(&b.get("draft2:a")?.unwrap_or_default()).into_owned();
    let n = atomics::increment(&b, "draft2:n", 5)?;
    let n = atomics::increment(&b, "draft2:n", -2).map(|m| format!("{n},{m}"))?;
    let cas = atomics::Cas::new(&b, "draft2:a")?;
    let won = match atomics::swap(cas, b"two") {
        Ok(()) => "won".to_string(),
        Err(e) => format!("{e:?}"),
    };
    let stale = atomics::Cas::new(&b, "draft2:a")?;
    b.set("draft2:a", b"three")?;
    let lost = match atomics::swap(stale, b"four") {
        Ok(()) => "won".to_string(),
        Err(atomics::CasError::CasFailed(fresh)) => {
            let now = fresh.current()?.unwrap_or_default();
            format!("lost(now {})", String::from_utf8_lossy(&now))
        }
        Err(e) => format!("{e:?}"),
    };
    batch::set_many(&b, &[("draft2:x".to_string(), b"1".to_vec()), ("draft2:y".to_string(), b"2".to_vec())])?;
    let many = batch::get_many(&b, &["draft2:x".to_string(), "draft2:none".to_string()])?
        .into_iter()
        .map(|(k, v)| format!("{k}={}", v.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or("-".into())))
        .collect::<Vec<_>>()
        .join(";");
    let mut keys = b.list_keys(None)?.keys;
    keys.retain(|k| k.starts_with("draft2:"));
    keys.sort();
    let denied = match store::open("other") {
        Ok(_) => "opened".to_string(),
        Err(e) => format!("{e:?}"),
    };
    Ok(format!(
        "a={a} n={n} cas={won} stale={lost} many={many} keys={} other={denied}",
        keys.join(",")
    ))
}

/// Every operation of outbound Redis once; what each answered.
fn redis_round_trip(addr: &str) -> Result<String, redis::Error> {
    let c = redis::Connection::open(addr)?;
    c.set("spin-kv:greeting", &b"hello".to_vec())?;
    let got = c.get("spin-kv:greeting")?.unwrap_or_default();
    c.del(&["spin-kv:n".to_string()])?;
    let n = c.incr("spin-kv:n")?;
    c.sadd("spin-kv:set", &["a".to_string(), "b".to_string()])?;
    let mut members = c.smembers("spin-kv:set")?;
    members.sort();
    let ping = match c.execute("PING", &[])?.first() {
        Some(RedisResult::Status(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    let echo = match c
        .execute("ECHO", &[RedisParameter::Binary(b"echoed".to_vec())])?
        .first()
    {
        Some(RedisResult::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    };
    let removed = c.del(&["spin-kv:greeting".to_string(), "spin-kv:set".to_string()])?;
    Ok(format!(
        "get={} incr={n} members={} ping={ping} echo={echo} del={removed}",
        String::from_utf8_lossy(&got),
        members.join(",")
    ))
}

#[http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let body = match req.path() {
        "/outbound" => {
            let url = req
                .header("x-url")
                .and_then(|h| h.as_str())
                .unwrap_or_default()
                .to_string();
            match spin_sdk::http::send::<_, Response>(Request::get(url)).await {
                Ok(r) => format!("{} {}", r.status(), String::from_utf8_lossy(r.body())),
                Err(e) => format!("error: {e}"),
            }
        }
        "/count" => {
            let store = Store::open_default()?;
            let n = match store.get("count")? {
                Some(v) => String::from_utf8(v)?.parse::<u64>()? + 1,
                None => 1,
            };
            store.set("count", n.to_string().as_bytes())?;
            n.to_string()
        }
        "/greeting" => spin_sdk::variables::get("greeting")?,
        "/denied-store" => match Store::open("other") {
            Ok(_) => "opened".to_string(),
            Err(e) => format!("error: {e:?}"),
        },
        "/undefined-variable" => match spin_sdk::variables::get("nope") {
            Ok(v) => v,
            Err(e) => format!("error: {e:?}"),
        },
        "/config" => match spin_sdk::wit::wasi::config::store::get("greeting") {
            Ok(Some(v)) => v,
            Ok(None) => "none".to_string(),
            Err(e) => format!("error: {e:?}"),
        },
        "/notes" if req.method() == &spin_sdk::http::Method::Post => {
            let text = String::from_utf8(req.body().to_vec())?;
            let db = Connection::open_default()?;
            db.execute(
                "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
                &[],
            )?;
            db.execute("INSERT INTO notes (body) VALUES (?)", &[Value::Text(text)])?;
            let rows = db.execute("SELECT last_insert_rowid(), count(*) FROM notes", &[])?;
            let row = &rows.rows[0];
            match (&row.values[0], &row.values[1]) {
                (Value::Integer(id), Value::Integer(n)) => format!("id={id} count={n}"),
                other => format!("unexpected: {other:?}"),
            }
        }
        "/notes" => {
            let db = Connection::open_default()?;
            let rows = db.execute("SELECT id, body FROM notes ORDER BY id", &[])?;
            rows.rows()
                .map(|r| format!("{}:{}", r.get::<i64>("id").unwrap_or(-1), r.get::<&str>("body").unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("\n")
        }
        "/runaway-sql" => {
            let db = Connection::open_default()?;
            match db.execute(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                &[],
            ) {
                Ok(_) => "finished".to_string(),
                Err(e) => format!("error: {e:?}"),
            }
        }
        "/denied-database" => match Connection::open("other") {
            Ok(_) => "opened".to_string(),
            Err(e) => format!("error: {e:?}"),
        },
        "/wasi-kv" => wasi_kv().unwrap_or_else(|e| format!("error: {e:?}")),
        "/redis" => {
            let addr = req
                .header("x-redis")
                .and_then(|h| h.as_str())
                .unwrap_or("redis://127.0.0.1:6379")
                .to_string();
            redis_round_trip(&addr).unwrap_or_else(|e| format!("error: {e:?}"))
        }
        "/keys" => {
            let mut keys = Store::open_default()?.get_keys()?;
            keys.sort();
            keys.join(",")
        }
        _ => return Ok(Response::new(404, "not found")),
    };
    Ok(Response::new(200, body))
}
