//! A WASIp3 `wasi:http/service` handler: answers "Hello from WASIp3!" and
//! echoes the request path in `x-path`.
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Hello;

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let headers = Fields::from_list(&[
            ("content-type".to_string(), b"text/plain".to_vec()),
            ("x-path".to_string(), path.into_bytes()),
        ])
        .unwrap();
        let (mut body_tx, body_rx) = wit_stream::new();
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
        wasip3::spawn_local(async move {
            let rest = body_tx.write_all(b"Hello from WASIp3!\n".to_vec()).await;
            drop(rest);
            drop(body_tx);
            let _ = trailers_tx.write(Ok(None)).await;
        });
        Ok(response)
    }
}

wasip3::http::service::export!(Hello);
