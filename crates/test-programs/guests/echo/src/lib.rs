//! Echoes the request: method, path, query and headers as `x-echo-*` response
//! headers, the body as the response body.
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Echo;

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.clone(),
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (path_with_query.clone(), String::new()),
        };
        let mut out_headers: Vec<(String, Vec<u8>)> = vec![
            ("x-echo-method".into(), method_name(&request.method()).into_bytes()),
            ("x-echo-path".into(), path.into_bytes()),
            ("x-echo-query".into(), query.into_bytes()),
            ("x-echo-authority".into(), request.authority().unwrap_or_default().into_bytes()),
        ];
        for (name, value) in request.headers().entries() {
            out_headers.push((format!("x-echo-header-{name}"), value));
        }
        let mut body_bytes = Vec::new();
        let incoming = request.consume().unwrap();
        {
            let stream = incoming.stream().unwrap();
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => body_bytes.extend_from_slice(&chunk),
                    Err(_) => break,
                }
            }
        }
        IncomingBody::finish(incoming);
        out_headers.push(("x-echo-body-length".into(), body_bytes.len().to_string().into_bytes()));
        let response = OutgoingResponse::new(Fields::from_list(&out_headers).unwrap());
        let body = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));
        let out = body.write().unwrap();
        for chunk in body_bytes.chunks(4096) {
            out.blocking_write_and_flush(chunk).unwrap();
        }
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasip2::http::proxy::export!(Echo);
