//! A JSON API over the app's key-value store and configuration.
//!
//! - `GET /api/counter`: `{"count":N}`; `POST /api/counter` adds one.
//! - `POST /api/incr/KEY[?by=N]`: adds N (default 1) to KEY atomically.
//! - `GET|PUT|DELETE /api/kv/KEY`: read, write (the request body), delete.
//! - `GET /api/keys`: every key.
//! - `POST /api/batch`: body of `key=value` lines, written in one batch;
//!   `GET /api/batch?keys=a,b`: those keys' values.
//! - `GET /api/config`: the `greeting` variable.
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};

wit_bindgen::generate!({
    path: "../wit",
    world: "host",
    generate_all,
});

use wasi::keyvalue::{atomics, batch, store};

struct Api;

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        content_type.as_bytes().to_vec(),
    )])
    .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream taken once");
    for chunk in body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

fn json(out: ResponseOutparam, status: u16, body: &str) {
    respond(out, status, "application/json", body.as_bytes());
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if (c as u32) < 0x20 => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn error(out: ResponseOutparam, e: store::Error) {
    let msg = match e {
        store::Error::NoSuchStore => "no such store".to_string(),
        store::Error::AccessDenied => "access denied".to_string(),
        store::Error::Other(m) => m,
    };
    json(out, 500, &format!("{{\"error\":{}}}\n", quote(&msg)));
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut data = Vec::new();
    let Ok(body) = request.consume() else { return data };
    let Ok(stream) = body.stream() else { return data };
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        data.extend_from_slice(&chunk);
    }
    drop(stream);
    let _ = IncomingBody::finish(body);
    data
}

fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let full = request.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = full.split_once('?').unwrap_or((&full, ""));
    let method = request.method();

    if path == "/api/config" {
        return match wasi::config::store::get("greeting") {
            Ok(Some(g)) => json(out, 200, &format!("{{\"greeting\":{}}}\n", quote(&g))),
            Ok(None) => json(out, 200, "{\"greeting\":null}\n"),
            Err(_) => json(out, 500, "{\"error\":\"configuration unavailable\"}\n"),
        };
    }

    let bucket = match store::open("default") {
        Ok(b) => b,
        Err(e) => return error(out, e),
    };
    match (method, path) {
        (Method::Get, "/api/counter") => match bucket.get("count") {
            Ok(v) => {
                let n = v.and_then(|v| String::from_utf8(v).ok()).unwrap_or_else(|| "0".into());
                json(out, 200, &format!("{{\"count\":{n}}}\n"))
            }
            Err(e) => error(out, e),
        },
        (Method::Post, "/api/counter") => match atomics::increment(&bucket, "count", 1) {
            Ok(n) => json(out, 200, &format!("{{\"count\":{n}}}\n")),
            Err(e) => error(out, e),
        },
        (Method::Post, p) if p.starts_with("/api/incr/") => {
            let key = &p["/api/incr/".len()..];
            let by = param(query, "by").and_then(|b| b.parse().ok()).unwrap_or(1);
            match atomics::increment(&bucket, key, by) {
                Ok(n) => json(out, 200, &format!("{{\"key\":{},\"value\":{n}}}\n", quote(key))),
                Err(e) => error(out, e),
            }
        }
        (Method::Get, p) if p.starts_with("/api/kv/") => match bucket.get(&p["/api/kv/".len()..]) {
            Ok(Some(v)) => respond(out, 200, "application/octet-stream", &v),
            Ok(None) => json(out, 404, "{\"error\":\"no such key\"}\n"),
            Err(e) => error(out, e),
        },
        (Method::Put, p) if p.starts_with("/api/kv/") => {
            let value = read_body(&request);
            match bucket.set(&p["/api/kv/".len()..], &value) {
                Ok(()) => json(out, 200, "{\"ok\":true}\n"),
                Err(e) => error(out, e),
            }
        }
        (Method::Delete, p) if p.starts_with("/api/kv/") => match bucket.delete(&p["/api/kv/".len()..]) {
            Ok(()) => json(out, 200, "{\"ok\":true}\n"),
            Err(e) => error(out, e),
        },
        (Method::Get, "/api/keys") => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                match bucket.list_keys(cursor) {
                    Ok(page) => {
                        keys.extend(page.keys);
                        match page.cursor {
                            Some(c) => cursor = Some(c),
                            None => break,
                        }
                    }
                    Err(e) => return error(out, e),
                }
            }
            let list: Vec<String> = keys.iter().map(|k| quote(k)).collect();
            json(out, 200, &format!("{{\"keys\":[{}]}}\n", list.join(",")))
        }
        (Method::Post, "/api/batch") => {
            let body = String::from_utf8_lossy(&read_body(&request)).into_owned();
            let pairs: Vec<(String, Vec<u8>)> = body
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            match batch::set_many(&bucket, &pairs) {
                Ok(()) => json(out, 200, &format!("{{\"written\":{}}}\n", pairs.len())),
                Err(e) => error(out, e),
            }
        }
        (Method::Get, "/api/batch") => {
            let keys: Vec<String> = param(query, "keys")
                .unwrap_or("")
                .split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
            match batch::get_many(&bucket, &keys) {
                Ok(values) => {
                    let fields: Vec<String> = keys
                        .iter()
                        .zip(values)
                        .map(|(k, v)| match v {
                            Some((_, v)) => format!("{}:{}", quote(k), quote(&String::from_utf8_lossy(&v))),
                            None => format!("{}:null", quote(k)),
                        })
                        .collect();
                    json(out, 200, &format!("{{{}}}\n", fields.join(",")))
                }
                Err(e) => error(out, e),
            }
        }
        _ => json(out, 404, "{\"error\":\"no such endpoint\"}\n"),
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Api {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        handle(request, out)
    }
}

wasip2::http::proxy::export!(Api);
