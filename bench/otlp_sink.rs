//! A minimal OTLP/HTTP sink for benchmarks: accepts POSTs on keep-alive
//! connections, reads and discards each body, answers 200. It stands in for a
//! collector on another machine while costing as little CPU as possible on
//! this one. Build: `rustc -O -o target/otlp_sink bench/otlp_sink.rs`.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "4318".into());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind");
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut w = conn.try_clone().expect("clone");
            let mut r = BufReader::with_capacity(1 << 16, conn);
            let mut line = String::new();
            let mut body = vec![0u8; 1 << 16];
            loop {
                let mut len = 0usize;
                loop {
                    line.clear();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                while len > 0 {
                    let n = len.min(body.len());
                    if r.read_exact(&mut body[..n]).is_err() {
                        return;
                    }
                    len -= n;
                }
                let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                if w.write_all(ok).is_err() {
                    return;
                }
            }
        });
    }
}
