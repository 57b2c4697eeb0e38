//! The stdout exporter: one JSON line per record, for the embedded default
//! configuration and for debugging a pipeline.
//!
//! Invariants: the lines of one request are rendered into one buffer and
//! written with a single `write_all` under the stdout lock, so requests sent
//! concurrently never interleave inside each other. The rendering itself is
//! [`crate::proto::json::records_to_json_lines`].

use std::io::Write;

use super::{Outcome, Reason};
use crate::signal::Signal;

/// Writes records of one signal to standard output.
#[derive(Debug, Clone)]
pub struct StdoutExporter {
    signal: Signal,
}

impl StdoutExporter {
    /// A writer for `signal`.
    pub fn new(signal: Signal) -> Self {
        Self { signal }
    }

    /// Renders and writes one request. Blocking, but only on our own stdout
    /// pipe; a request that cannot be rendered is permanent (it never will
    /// be), a failed write is retryable (the reader may come back).
    pub fn send(&self, body: &[u8], records: u64) -> Outcome {
        let mut buf = Vec::with_capacity(body.len().saturating_mul(2));
        if let Err(e) = crate::proto::json::records_to_json_lines(self.signal, body, &mut buf) {
            return Outcome::Permanent {
                reason: Reason::Encode,
                detail: format!(
                    "cannot render {records} {} records as JSON: {e}",
                    self.signal
                ),
            };
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(&buf).and_then(|()| out.flush()) {
            Ok(()) => Outcome::Accepted {
                rejected: 0,
                message: String::new(),
            },
            Err(e) => Outcome::Retryable {
                after: None,
                reason: Reason::Io,
                detail: format!("cannot write to stdout: {e}"),
            },
        }
    }
}
