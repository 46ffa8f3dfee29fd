//! Static files: answers GET requests from the directory mounted at
//! `/static` (read-only), `/` giving `index.html`.
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Web;

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), content_type.as_bytes().to_vec()),
        ("content-length".to_string(), body.len().to_string().into_bytes()),
    ])
    .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream taken once");
    for chunk in body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            return; // the client went away
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if !matches!(request.method(), Method::Get | Method::Head) {
            return respond(out, 405, "text/plain", b"method not allowed\n");
        }
        let full = request.path_with_query().unwrap_or_else(|| "/".into());
        let path = full.split('?').next().unwrap_or("/");
        let rel = match path.trim_start_matches('/') {
            "" => "index.html",
            p => p,
        };
        if rel.split('/').any(|seg| seg == ".." || seg.is_empty()) {
            return respond(out, 400, "text/plain", b"bad path\n");
        }
        match std::fs::read(format!("/static/{rel}")) {
            Ok(bytes) => respond(out, 200, content_type(rel), &bytes),
            Err(_) => respond(out, 404, "text/plain", format!("not found: {path}\n").as_bytes()),
        }
    }
}

wasip2::http::proxy::export!(Web);
