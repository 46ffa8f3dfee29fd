//! A keep-alive OTLP/HTTP sink on loopback for the spans bench and the
//! tracer's tests: reads each request body, keeps it when asked to, and
//! answers 200.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// Request bodies received, when the sink keeps them.
pub type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

/// Starts the sink; returns its traces endpoint. With `keep`, every body is
/// pushed there; without, bodies are discarded.
pub fn start(keep: Option<Bodies>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let mut line = String::new();
                loop {
                    let mut len = 0usize;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    if let Some(k) = &keep {
                        k.lock().unwrap().push(body);
                    }
                    let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    format!("http://{addr}/v1/traces")
}
