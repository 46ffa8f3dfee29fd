//! A Spin SDK 7 HTTP component (WASIp3) that uses the SDK's asynchronous
//! platform interfaces:
//!
//! - `GET /count`: increments `count` in the `default` key-value store.
//! - `GET /keys`: the store's keys (streamed), sorted, comma-separated.
//! - `GET /denied-store`: opens the store `other` (not granted).
//! - `GET /greeting`: the `greeting` variable.
//! - `GET /undefined-variable`: reads `nope` (not declared).
//! - `POST /notes` (body: text): adds a row in the `default` SQLite
//!   database; answers `id=<rowid> count=<rows> changes=<n>`.
//! - `GET /notes`: the notes (streamed rows), one per line.
//! - `GET /denied-database`: opens the database `other` (not granted).
//! - `GET /redis` (header `x-redis`: address): a Redis round trip.
//! - `GET /outbound` (header `x-url`): a GET of that URL through
//!   `spin_sdk::http::send` (`wasi:http/client@0.3.0`).

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::{Connection, Value};

#[http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let path = req.uri().path().to_string();
    let post = req.method() == spin_sdk::http::Method::POST;
    let url = req
        .headers()
        .get("x-url")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let redis_addr = req
        .headers()
        .get("x-redis")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("redis://127.0.0.1:6379")
        .to_string();
    let body = if post {
        use http_body_util::BodyExt;
        match req.into_body().collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(_) => String::new(),
        }
    } else {
        String::new()
    };
    let out = match path.as_str() {
        "/count" => count().await,
        "/keys" => keys().await,
        "/denied-store" => match Store::open("other").await {
            Ok(_) => "opened".to_string(),
            Err(e) => format!("error: {e:?}"),
        },
        "/greeting" => spin_sdk::variables::get("greeting")
            .await
            .unwrap_or_else(|e| format!("error: {e:?}")),
        "/undefined-variable" => match spin_sdk::variables::get("nope").await {
            Ok(v) => v,
            Err(e) => format!("error: {e:?}"),
        },
        "/notes" if post => add_note(body).await,
        "/notes" => notes().await,
        "/denied-database" => match Connection::open("other").await {
            Ok(_) => "opened".to_string(),
            Err(e) => format!("error: {e:?}"),
        },
        "/redis" => redis(&redis_addr).await,
        "/outbound" => outbound(&url).await,
        _ => "not found".to_string(),
    };
    out
}

async fn outbound(url: &str) -> String {
    use http_body_util::BodyExt;
    let req = match http::Request::get(url).body(http_body_util::Empty::<bytes::Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return format!("error: {e}"),
    };
    match spin_sdk::http::send(req).await {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.into_body().collect().await {
                Ok(b) => format!("{status} {}", String::from_utf8_lossy(&b.to_bytes())),
                Err(e) => format!("error: {e:?}"),
            }
        }
        Err(e) => format!("error: {e:?}"),
    }
}

async fn count() -> String {
    let run = async {
        let store = Store::open_default().await?;
        let n = match store.get("count").await? {
            Some(v) => String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0) + 1,
            None => 1,
        };
        store.set("count", n.to_string()).await?;
        Ok::<_, spin_sdk::key_value::Error>(n.to_string())
    };
    run.await.unwrap_or_else(|e| format!("error: {e:?}"))
}

async fn keys() -> String {
    let run = async {
        let store = Store::open_default().await?;
        let mut keys = store.get_keys().await.collect().await?;
        keys.sort();
        Ok::<_, spin_sdk::key_value::Error>(keys.join(","))
    };
    run.await.unwrap_or_else(|e| format!("error: {e:?}"))
}

async fn add_note(text: String) -> String {
    let run = async {
        let db = Connection::open_default().await?;
        db.execute(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
            [],
        )
        .await?
        .collect()
        .await?;
        db.execute("INSERT INTO notes (body) VALUES (?)", [Value::Text(text)])
            .await?
            .collect()
            .await?;
        let id = db.last_insert_rowid().await;
        let changes = db.changes().await;
        let rows = db
            .execute("SELECT count(*) FROM notes", [])
            .await?
            .collect()
            .await?;
        let n: i64 = rows[0].get(0).unwrap_or(-1);
        Ok::<_, spin_sdk::sqlite::Error>(format!("id={id} count={n} changes={changes}"))
    };
    run.await.unwrap_or_else(|e| format!("error: {e:?}"))
}

async fn notes() -> String {
    let run = async {
        let db = Connection::open_default().await?;
        let mut result = db.execute("SELECT id, body FROM notes ORDER BY id", []).await?;
        let columns = result.columns().join(",");
        let mut lines = vec![columns];
        while let Some(row) = result.next().await {
            let id: i64 = row.get(0).unwrap_or(-1);
            let body: &str = row.get(1).unwrap_or("?");
            lines.push(format!("{id}:{body}"));
        }
        result.result().await?;
        Ok::<_, spin_sdk::sqlite::Error>(lines.join("\n"))
    };
    run.await.unwrap_or_else(|e| format!("error: {e:?}"))
}

async fn redis(addr: &str) -> String {
    use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
    let run = async {
        let c = Connection::open(addr).await?;
        c.set("spin-p3:greeting", b"hello").await?;
        let got = c.get("spin-p3:greeting").await?.unwrap_or_default();
        c.del(["spin-p3:n"]).await?;
        let n = c.incr("spin-p3:n").await?;
        let echo = match c
            .execute("ECHO", vec![RedisParameter::Binary(b"echoed".to_vec())])
            .await?
            .first()
        {
            Some(RedisResult::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        };
        Ok::<_, spin_sdk::redis::Error>(format!(
            "get={} incr={n} echo={echo}",
            String::from_utf8_lossy(&got)
        ))
    };
    run.await.unwrap_or_else(|e| format!("error: {e:?}"))
}
