//! A stderr writer for the log that batches lines: events at INFO and below
//! are appended to a buffer flushed every 50 ms (or at 64 KiB), so an access
//! log line per request costs a copy instead of a system call; WARN and ERROR
//! events flush at once, and `flush()` runs before the process exits.
//!
//! A full buffer is swapped for an empty one and written after the buffer's
//! lock is released, so other threads keep appending while it is written;
//! stderr's own lock, taken before the buffer's is released, keeps batches
//! in order.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

const FLUSH_AT: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(50);

static SHARED: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

#[derive(Clone, Copy)]
pub struct LogWriter {
    buf: &'static Mutex<Vec<u8>>,
}

impl LogWriter {
    /// The process's writer; starts the flushing thread on first use.
    pub fn new() -> Self {
        let buf = SHARED.get_or_init(|| {
            let _ = std::thread::Builder::new()
                .name("wasmops-log".into())
                .spawn(|| {
                    loop {
                        std::thread::sleep(FLUSH_EVERY);
                        flush();
                    }
                });
            Mutex::new(Vec::with_capacity(FLUSH_AT))
        });
        Self { buf }
    }

    /// A writer for one event; `urgent` writes through at once.
    pub fn guard(&self, urgent: bool) -> Guard {
        Guard {
            buf: self.buf,
            urgent,
        }
    }
}

/// Appends `data` (if any), then writes the buffer out if `force` or if it
/// is full.
fn append(buf: &Mutex<Vec<u8>>, data: &[u8], force: bool) -> std::io::Result<()> {
    let mut b = buf
        .lock()
        .map_err(|_| std::io::Error::other("log buffer poisoned"))?;
    b.extend_from_slice(data);
    if b.is_empty() || !(force || b.len() >= FLUSH_AT) {
        return Ok(());
    }
    let full = std::mem::replace(&mut *b, Vec::with_capacity(FLUSH_AT));
    let mut out = std::io::stderr().lock();
    drop(b);
    out.write_all(&full)
}

/// Writes out whatever is buffered.
pub fn flush() {
    if let Some(b) = SHARED.get() {
        let _ = append(b, &[], true);
    }
}

pub struct Guard {
    buf: &'static Mutex<Vec<u8>>,
    urgent: bool,
}

impl Write for Guard {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        append(self.buf, data, self.urgent)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Guard;

    fn make_writer(&'a self) -> Guard {
        self.guard(true)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Guard {
        self.guard(*meta.level() <= tracing::Level::WARN)
    }
}
