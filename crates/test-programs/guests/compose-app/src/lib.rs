//! An HTTP component that imports `wasmops-test:greet/greeter` and answers
//! with its greeting for the request's path (`/Ada` → `Ada`). It runs
//! only once composed with a dependency that exports the greeter.
wit_bindgen::generate!({ path: "../compose-wit", world: "greeter-user" });

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct App;

impl wasip2::exports::http::incoming_handler::Guest for App {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let name = path.trim_start_matches('/');
        let text = wasmops_test::greet::greeter::greet(name);
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())]).unwrap();
        let response = OutgoingResponse::new(headers);
        let body = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));
        let out = body.write().unwrap();
        out.blocking_write_and_flush(text.as_bytes()).unwrap();
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasip2::http::proxy::export!(App);
