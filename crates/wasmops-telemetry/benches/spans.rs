//! The tracer's own cost per request: three spans (request, instantiate,
//! guest handler) started, ended and queued, with the exporter encoding and
//! shipping them to a local sink that discards them.
//! `cargo bench -p wasmops-telemetry --bench spans`
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmops_telemetry::trace::{Attr, Kind, Protocol, Sampler, SpanRecord, TraceConfig, Tracer};

mod support {
    pub mod http_sink;
}

/// CPU time of this process so far (all threads), from /proc.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = support::http_sink::start(None);
    let tracer = rt.block_on(async {
        Tracer::spawn(TraceConfig {
            endpoint,
            protocol: Protocol::HttpProtobuf,
            service_name: "bench".into(),
            sampler: Sampler::ALWAYS_ON,
        })
    });
    let component: Arc<str> = Arc::from("hello");
    let request_id: Arc<str> = Arc::from("0000abcd-1");
    let n = 300_000u32;
    for round in 0..3 {
        let start = Instant::now();
        let cpu0 = cpu();
        for i in 0..n {
            let ctx = tracer.server_context(None);
            let inst = SpanRecord::start(
                "instantiate",
                Kind::Internal,
                ctx.child(),
                Some(ctx.span_id),
            );
            tracer.end(inst);
            let handler = SpanRecord::start(
                "guest handler",
                Kind::Internal,
                ctx.child(),
                Some(ctx.span_id),
            );
            tracer.end(handler);
            // As the server does: the attributes are borrowed from the request.
            let path = format!("/item/{i}");
            let req = SpanRecord::start("request", Kind::Server, ctx, None);
            tracer.end_with(
                req,
                &[
                    ("http.request.method", Attr::Str("GET")),
                    ("url.path", Attr::Str(&path)),
                    ("http.response.status_code", Attr::Int(200)),
                    ("wasmops.component", Attr::Str(&component)),
                    ("wasmops.request_id", Attr::Str(&request_id)),
                ],
            );
            // Stay under the queue bound, as a server at ~15k requests/s would.
            if i % 2000 == 1999 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let elapsed = start.elapsed() - Duration::from_millis(5) * (n / 2000);
        rt.block_on(tracer.flush(Duration::from_secs(10)));
        let total = cpu() - cpu0;
        println!(
            "round {round}: {:.2} µs per request (3 spans) on the request path; {:.2} µs of CPU per request in all (exporter and sink included); {} spans dropped",
            elapsed.as_secs_f64() * 1e6 / f64::from(n),
            total.as_secs_f64() * 1e6 / f64::from(n),
            tracer.dropped()
        );
    }
}
