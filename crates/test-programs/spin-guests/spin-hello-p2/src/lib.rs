//! A Spin SDK 5.2 HTTP component (WASIp2 `wasi:http/incoming-handler`)
//! that imports nothing of Spin's own: a greeting and the request's path,
//! for the benchmark against `wasmtime serve`.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn hello(req: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::new(
        200,
        format!("Hello from Spin SDK 5.2! path={}\n", req.path()),
    ))
}
