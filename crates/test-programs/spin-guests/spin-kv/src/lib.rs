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

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let body = match req.path() {
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
        "/keys" => {
            let mut keys = Store::open_default()?.get_keys()?;
            keys.sort();
            keys.join(",")
        }
        _ => return Ok(Response::new(404, "not found")),
    };
    Ok(Response::new(200, body))
}
