//! Forwards `GET /proxy/REST` to `{upstream}/REST`, where `upstream` is the
//! app variable (e.g. `http://127.0.0.1:8080`), and answers with the
//! upstream's status and body. Errors become 502 with the error code.
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

wit_bindgen::generate!({
    path: "../wit",
    world: "host",
    generate_all,
});

struct Proxy;

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
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

fn forward(upstream: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, authority) = upstream
        .trim_end_matches('/')
        .split_once("://")
        .ok_or_else(|| format!("bad upstream `{upstream}`"))?;
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http }))
        .map_err(|_| "bad scheme".to_string())?;
    req.set_authority(Some(authority)).map_err(|_| "bad authority".to_string())?;
    req.set_path_with_query(Some(path)).map_err(|_| "bad path".to_string())?;
    let fut = outgoing_handler::handle(req, None).map_err(|c| format!("{c:?}"))?;
    fut.subscribe().block();
    let resp = match fut.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Err(format!("{code:?}")),
        other => return Err(format!("{other:?}")),
    };
    let status = resp.status();
    let body = resp.consume().map_err(|_| "no body".to_string())?;
    let stream = body.stream().map_err(|_| "no stream".to_string())?;
    let mut data = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        data.extend_from_slice(&chunk);
    }
    Ok((status, data))
}

impl wasip2::exports::http::incoming_handler::Guest for Proxy {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_else(|| "/".into());
        let rest = full.strip_prefix("/proxy").unwrap_or(&full);
        let rest = if rest.is_empty() { "/" } else { rest };
        let upstream = match wasi::config::store::get("upstream") {
            Ok(Some(u)) => u,
            _ => return respond(out, 500, b"the `upstream` variable is not set\n"),
        };
        match forward(&upstream, rest) {
            Ok((status, body)) => respond(out, status, &body),
            Err(code) => respond(out, 502, format!("upstream error: {code}\n").as_bytes()),
        }
    }
}

wasip2::http::proxy::export!(Proxy);
