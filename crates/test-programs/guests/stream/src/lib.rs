//! Status codes and streaming bodies.
//! - `/status/NNN`: answers with status NNN and body "status NNN".
//! - `/stream?chunks=N&size=M&delay_ms=D`: N chunks of M bytes ('a'..'z' cycling),
//!   with a pause of D ms before each chunk, trailer-free.
//! - `/no-response`: returns without setting a response.
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Stream;

fn query_param(query: &str, key: &str) -> Option<u64> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

fn respond(out: ResponseOutparam, status: u16, body_chunks: impl Iterator<Item = Vec<u8>>, delay_ms: u64) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).unwrap();
    let body = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().unwrap();
    for chunk in body_chunks {
        if delay_ms > 0 {
            wasip2::clocks::monotonic_clock::subscribe_duration(delay_ms * 1_000_000).block();
        }
        for piece in chunk.chunks(4096) {
            stream.blocking_write_and_flush(piece).unwrap();
        }
    }
    drop(stream);
    OutgoingBody::finish(body, None).unwrap();
}

impl wasip2::exports::http::incoming_handler::Guest for Stream {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let pq = request.path_with_query().unwrap_or_default();
        let (path, query) = pq.split_once('?').unwrap_or((pq.as_str(), ""));
        if let Some(code) = path.strip_prefix("/status/") {
            let code: u16 = code.parse().unwrap_or(400);
            let body = format!("status {code}").into_bytes();
            respond(response_out, code, std::iter::once(body), 0);
        } else if path == "/stream" {
            let chunks = query_param(query, "chunks").unwrap_or(4);
            let size = query_param(query, "size").unwrap_or(1024) as usize;
            let delay = query_param(query, "delay_ms").unwrap_or(0);
            let iter = (0..chunks).map(move |i| vec![b'a' + (i % 26) as u8; size]);
            respond(response_out, 200, iter, delay);
        } else if path == "/no-response" {
            drop(response_out);
        } else {
            respond(response_out, 404, std::iter::once(b"not found".to_vec()), 0);
        }
    }
}

wasip2::http::proxy::export!(Stream);
