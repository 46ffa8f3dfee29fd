//! A Spin SDK 7 HTTP component (WASIp3 `wasi:http/handler@0.3.0`):
//! answers with a greeting and the request's path.

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

#[http_service]
async fn hello(req: Request) -> impl IntoResponse {
    format!("Hello from Spin SDK 7! path={}\n", req.uri().path())
}
