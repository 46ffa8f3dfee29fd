//! The access log: one record per request, handed to the process's access-log
//! sink when one is installed (the CLI installs a direct JSON writer), or else
//! emitted as a `tracing` event with target [`TARGET`].
//!
//! The direct sink exists for cost: an access line through `tracing` goes
//! through the subscriber stack and a `Visit` of every field, formatted by
//! `fmt`; the sink writes the same line from the record's fields as they are.

use std::sync::OnceLock;
use std::time::Duration;

use crate::trace::HexId;

/// The target of access-log events.
pub const TARGET: &str = "wasmops::access";

/// One request, as the access log tells it.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub app: &'a str,
    pub component: &'a str,
    pub request_id: &'a str,
    /// The request's trace, when it has one.
    pub trace_id: Option<[u8; 16]>,
    /// The response was cut off after its head was sent (`status` then
    /// tells why: 500 for a guest failure, 504 for a timeout).
    pub aborted: bool,
}

/// Where access records go instead of `tracing`.
pub trait AccessLog: Send + Sync {
    fn record(&self, r: &AccessRecord<'_>);
}

static SINK: OnceLock<Box<dyn AccessLog>> = OnceLock::new();

/// Sends every later access record to `sink`, for the life of the process.
/// The caller decides beforehand that access lines are wanted at all (the
/// sink bypasses `tracing`'s filters). Returns false if a sink was already
/// installed.
pub fn install(sink: Box<dyn AccessLog>) -> bool {
    SINK.set(sink).is_ok()
}

impl AccessRecord<'_> {
    /// Logs the record.
    pub fn emit(&self) {
        if let Some(sink) = SINK.get() {
            sink.record(self);
            return;
        }
        tracing::info!(
            target: TARGET,
            method = self.method,
            path = self.path,
            status = self.status,
            duration_ms = (self.duration.as_secs_f64() * 1e6).round() / 1e3,
            app = self.app,
            component = self.component,
            request_id = self.request_id,
            trace_id = %HexId(self.trace_id),
            aborted = self.aborted,
            "request"
        );
    }
}
