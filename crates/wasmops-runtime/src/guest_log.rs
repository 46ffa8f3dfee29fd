//! Guest stdout/stderr captured line by line into the host's log, tagged with
//! the component and the request, and bounded per request.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes of guest output logged per instance and stream; the rest is dropped
/// (with one warning).
pub const MAX_LOGGED_BYTES: usize = 64 * 1024;
/// A line longer than this is logged in pieces.
const MAX_LINE: usize = 4096;

#[derive(Clone)]
pub struct GuestLog {
    state: Arc<Mutex<State>>,
}

struct State {
    component: Arc<str>,
    request_id: Arc<str>,
    stream: &'static str,
    line: Vec<u8>,
    logged: usize,
    truncated: bool,
}

impl GuestLog {
    pub fn new(component: Arc<str>, request_id: Arc<str>, stream: &'static str) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                component,
                request_id,
                stream,
                line: Vec::new(),
                logged: 0,
                truncated: false,
            })),
        }
    }
}

impl GuestLog {
    /// A reused instance's next request: what is pending is logged under
    /// the request that wrote it, later output under `request_id`, with the
    /// per-request bound counted afresh.
    pub fn next_request(&self, request_id: Arc<str>) {
        if let Ok(mut s) = self.state.lock() {
            s.flush_partial();
            s.request_id = request_id;
            s.logged = 0;
            s.truncated = false;
        }
    }
}

impl State {
    fn emit(&mut self, bytes: &[u8]) {
        if self.truncated {
            return;
        }
        if self.logged + bytes.len() > MAX_LOGGED_BYTES {
            self.truncated = true;
            tracing::warn!(
                target: "wasmops::guest",
                component = %self.component,
                request_id = %self.request_id,
                stream = self.stream,
                "guest output beyond {MAX_LOGGED_BYTES} bytes is not logged"
            );
            return;
        }
        self.logged += bytes.len();
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        tracing::info!(
            target: "wasmops::guest",
            component = %self.component,
            request_id = %self.request_id,
            stream = self.stream,
            "{text}"
        );
    }

    fn write(&mut self, mut buf: &[u8]) {
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let (head, rest) = buf.split_at(nl + 1);
            if self.line.is_empty() {
                self.emit(head);
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.emit(&line);
            }
            buf = rest;
        }
        self.line.extend_from_slice(buf);
        if self.line.len() >= MAX_LINE {
            let line = std::mem::take(&mut self.line);
            self.emit(&line);
        }
    }

    fn flush_partial(&mut self) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.emit(&line);
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Ok(mut s) = self.state.lock() {
            s.write(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Ok(mut s) = self.state.lock() {
            s.flush_partial();
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            component: Arc::from("c"),
            request_id: Arc::from("r"),
            stream: "stdout",
            line: Vec::new(),
            logged: 0,
            truncated: false,
        }
    }

    #[test]
    fn splits_lines_and_keeps_partial_ones() {
        let mut s = state();
        s.write(b"one\ntw");
        assert_eq!(s.logged, 4);
        assert_eq!(s.line, b"tw");
        s.write(b"o\nthree");
        assert_eq!(s.logged, 8);
        s.flush_partial();
        assert_eq!(s.logged, 13);
        assert!(s.line.is_empty());
    }

    #[test]
    fn output_is_bounded() {
        let mut s = state();
        let line = vec![b'x'; 1023];
        for _ in 0..100 {
            s.write(&line);
            s.write(b"\n");
        }
        assert!(s.truncated);
        assert!(s.logged <= MAX_LOGGED_BYTES);
        // Very long lines are cut into pieces rather than buffered forever.
        let mut s = state();
        s.write(&vec![b'y'; MAX_LINE * 3]);
        assert!(s.line.len() < MAX_LINE);
    }
}
