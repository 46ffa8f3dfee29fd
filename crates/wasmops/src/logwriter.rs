//! A stderr writer for the log that batches lines: events at INFO and below
//! are appended to a buffer flushed every 50 ms (or at 64 KiB), so an access
//! log line per request costs a copy instead of a system call; WARN and ERROR
//! events flush at once, and `flush()` runs before the process exits.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

const FLUSH_AT: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(50);

static SHARED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
pub struct LogWriter {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl LogWriter {
    /// The process's writer; starts the flushing thread on first use.
    pub fn new() -> Self {
        let buf = SHARED
            .get_or_init(|| {
                let buf = Arc::new(Mutex::new(Vec::with_capacity(FLUSH_AT)));
                let b = buf.clone();
                let _ = std::thread::Builder::new()
                    .name("wasmops-log".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(FLUSH_EVERY);
                            drain(&b);
                        }
                    });
                buf
            })
            .clone();
        Self { buf }
    }
}

fn drain(buf: &Mutex<Vec<u8>>) {
    if let Ok(mut b) = buf.lock()
        && !b.is_empty()
    {
        let _ = std::io::stderr().write_all(&b);
        b.clear();
    }
}

/// Writes out whatever is buffered.
pub fn flush() {
    if let Some(b) = SHARED.get() {
        drain(b);
    }
}

pub struct Guard {
    buf: Arc<Mutex<Vec<u8>>>,
    urgent: bool,
}

impl Write for Guard {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut b = self
            .buf
            .lock()
            .map_err(|_| std::io::Error::other("log buffer poisoned"))?;
        b.extend_from_slice(data);
        if self.urgent || b.len() >= FLUSH_AT {
            let r = std::io::stderr().write_all(&b);
            b.clear();
            r?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogWriter {
    /// A writer for one event; `urgent` writes through at once.
    pub fn guard(&self, urgent: bool) -> Guard {
        Guard {
            buf: self.buf.clone(),
            urgent,
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Guard;

    fn make_writer(&'a self) -> Guard {
        Guard {
            buf: self.buf.clone(),
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Guard {
        Guard {
            buf: self.buf.clone(),
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}
