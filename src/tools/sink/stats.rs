//! What the sink counts, and the check of a loadgen's acked file against it.

use super::*;

/// Counters of one signal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalStats {
    /// Accepted requests.
    pub requests: u64,
    /// Records in accepted requests (0 in noop mode).
    pub records: u64,
    /// Decompressed request bytes of accepted requests.
    pub bytes: u64,
}

/// Counters of one endpoint key (HTTP path prefix or gRPC authority).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// Accepted requests.
    pub requests: u64,
    /// Records in accepted requests.
    pub records: u64,
    /// Records per `k8s.namespace.name`.
    pub namespaces: BTreeMap<String, u64>,
}

/// What the sink has received; `GET /sink/stats` serves the same as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    /// Logs counters.
    pub logs: SignalStats,
    /// Metrics counters.
    pub metrics: SignalStats,
    /// Traces counters.
    pub traces: SignalStats,
    /// Requests answered with an injected fault (their records are not counted).
    pub requests_refused: u64,
    /// Requests that could not be decompressed or decoded (answered 400).
    pub requests_invalid: u64,
    /// Requests without an accepted `Authorization` (answered 401).
    pub requests_unauthorized: u64,
    /// Per endpoint key: `/` or the HTTP path prefix (`/tenant-a`), or for
    /// gRPC the `:authority` (`127.0.0.1:4317`).
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// Records per `k8s.namespace.name` ([`NO_NAMESPACE`] when absent).
    pub namespaces: BTreeMap<String, u64>,
    /// Records without a `seedgate.seq` attribute.
    pub records_without_seq: u64,
    /// Distinct seqs received.
    pub distinct_seqs: u64,
    /// Receptions of a seq beyond its first.
    pub duplicate_seqs: u64,
    /// Headers of the last request, lower-case names (non-UTF-8 values lossy).
    pub last_headers: BTreeMap<String, String>,
}

// === impl SinkStats ===

impl SinkStats {
    /// The counters of `signal`.
    pub fn signal(&self, signal: Signal) -> &SignalStats {
        match signal {
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
            Signal::Traces => &self.traces,
        }
    }

    pub(super) fn signal_mut(&mut self, signal: Signal) -> &mut SignalStats {
        match signal {
            Signal::Logs => &mut self.logs,
            Signal::Metrics => &mut self.metrics,
            Signal::Traces => &mut self.traces,
        }
    }

    /// Accepted records over all signals.
    pub fn records(&self) -> u64 {
        self.logs.records + self.metrics.records + self.traces.records
    }

    /// Accepted requests over all signals.
    pub fn requests(&self) -> u64 {
        self.logs.requests + self.metrics.requests + self.traces.requests
    }
}

/// The result of checking received seqs against an acked set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Distinct seqs the loadgen saw acknowledged.
    pub expected: u64,
    /// Distinct seqs the sink received.
    pub received: u64,
    /// Acked seqs never received: lost data.
    pub missing: u64,
    /// Receptions of a seq beyond its first (at-least-once redelivery).
    pub duplicates: u64,
    /// Received seqs that were not acked (e.g. sent, then the ack was lost).
    pub unexpected: u64,
    /// Up to 20 of the smallest missing seqs, for the error message.
    pub missing_sample: Vec<u64>,
}

// === impl Verification ===

impl Verification {
    /// Nothing acknowledged is missing.
    pub fn is_ok(&self) -> bool {
        self.missing == 0
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expected {} received {} missing {} duplicates {} unexpected {}",
            self.expected, self.received, self.missing, self.duplicates, self.unexpected
        )?;
        if !self.missing_sample.is_empty() {
            write!(f, " (first missing: {:?})", self.missing_sample)?;
        }
        Ok(())
    }
}

/// Checks `seqs` (seq → times received) against `acked`.
pub fn verify_seqs(seqs: &HashMap<u64, u32>, acked: &AckedSet) -> Verification {
    let mut v = Verification {
        expected: acked.len(),
        received: seqs.len() as u64,
        ..Verification::default()
    };
    for seq in acked.iter() {
        if !seqs.contains_key(&seq) {
            v.missing += 1;
            if v.missing_sample.len() < 20 {
                v.missing_sample.push(seq);
            }
        }
    }
    for (&seq, &count) in seqs {
        v.duplicates += u64::from(count.saturating_sub(1));
        if !acked.contains(seq) {
            v.unexpected += 1;
        }
    }
    v
}
