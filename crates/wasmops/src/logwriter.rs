//! A stderr writer for the log that batches lines: events at INFO and below
//! are appended to a buffer flushed every 50 ms (or at 64 KiB), so an access
//! log line per request costs a copy instead of a system call; WARN and ERROR
//! events flush at once, and `flush()` runs before the process exits.
//!
//! A full buffer is swapped for an empty one and written after the buffer's
//! lock is released, so other threads keep appending while it is written;
//! stderr's own lock, taken before the buffer's is released, keeps batches
//! in order.
//!
//! Worker processes share their supervisor's stderr. When that is a pipe or
//! a socket (a container runtime, a log shipper, `| jq`), a write of more
//! than `PIPE_BUF` bytes may be split and interleaved with another
//! process's, cutting JSON lines in two; there a batch goes out as whole
//! lines of at most `PIPE_BUF` bytes a write, which the kernel keeps whole.

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
    if stderr_is_shared_stream() {
        write_lines_whole(&mut out, &full)
    } else {
        out.write_all(&full)
    }
}

/// Whether stderr is a pipe or a socket, where large writes of several
/// processes may interleave (regular files and terminals keep each write
/// whole).
fn stderr_is_shared_stream() -> bool {
    static SHARED_STREAM: OnceLock<bool> = OnceLock::new();
    *SHARED_STREAM.get_or_init(|| {
        // SAFETY: fstat fills the struct it is given.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::fstat(libc::STDERR_FILENO, &mut st) } == 0;
        let kind = st.st_mode & libc::S_IFMT;
        ok && (kind == libc::S_IFIFO || kind == libc::S_IFSOCK)
    })
}

/// Writes `data` in pieces of whole lines, each at most `PIPE_BUF` bytes
/// (a line longer than that goes alone, in one write).
fn write_lines_whole(out: &mut impl Write, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let take = if data.len() <= libc::PIPE_BUF {
            data.len()
        } else {
            match data[..libc::PIPE_BUF].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => data
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(data.len(), |i| i + 1),
            }
        };
        out.write_all(&data[..take])?;
        data = &data[take..];
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps every write as it was made.
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.push(data.to_vec());
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn batches_go_out_as_whole_lines_of_at_most_pipe_buf() {
        let line = |n: usize, c: u8| {
            let mut l = vec![c; n];
            l.push(b'\n');
            l
        };
        let mut data = Vec::new();
        for i in 0..40 {
            data.extend(line(300 + i * 7, b'a' + (i % 26) as u8));
        }
        // A line longer than PIPE_BUF, then short ones again.
        data.extend(line(10_000, b'L'));
        data.extend(line(100, b'z'));
        let mut w = Writes(Vec::new());
        write_lines_whole(&mut w, &data).unwrap();
        assert_eq!(w.0.concat(), data);
        for piece in &w.0 {
            assert!(piece.ends_with(b"\n"));
            assert!(
                piece.len() <= libc::PIPE_BUF || !piece[..piece.len() - 1].contains(&b'\n'),
                "a piece of {} bytes holds several lines",
                piece.len()
            );
        }
        assert!(w.0.iter().any(|p| p.len() == 10_001));
        assert!(w.0.len() > 1);
    }
}
