//! An HTTP handler: answers every request with a greeting.
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Handler;

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let out = body.write().expect("stream taken once");
        let text = format!("Hello from Rust! path={path}\n");
        out.blocking_write_and_flush(text.as_bytes())
            .expect("client went away");
        drop(out);
        OutgoingBody::finish(body, None).expect("body finished once");
    }
}

wasip2::http::proxy::export!(Handler);
