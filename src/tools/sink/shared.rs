//! The state every request handler shares: counting or refusing one request.

use super::*;

/// The state every request handler shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) noop: bool,
    pub(super) track_namespaces: bool,
    pub(super) fault: Mutex<Fault>,
    pub(super) authorization: Mutex<Vec<String>>,
    pub(super) counts: Mutex<Counts>,
    /// Set once after both listeners exist; weak so that handlers (owned by
    /// the listeners' routers) do not keep the listeners alive.
    pub(super) listeners: OnceLock<Weak<Listeners>>,
}

#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) stats: SinkStats,
    pub(super) seqs: HashMap<u64, u32>,
    pub(super) by_namespace: NamespaceSeqs,
}

/// What a request is answered with.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Answer {
    Accepted,
    Refused {
        status: u16,
        retry_after: Option<u64>,
    },
    Invalid(String),
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a counter lock leaves the counters usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Shared ===

impl Shared {
    /// Counts or refuses one request, then waits out any injected latency.
    pub(super) async fn ingest(
        &self,
        signal: Signal,
        key: String,
        headers: &HeaderMap,
        body: Result<Bytes, String>,
        json: bool,
    ) -> Answer {
        let mut fault = lock(&self.fault).clone();
        if !fault.only_endpoints.is_empty() && !fault.only_endpoints.contains(&key) {
            fault = Fault::default();
        }
        let authorized = {
            let accepted = lock(&self.authorization);
            accepted.is_empty()
                || headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| accepted.iter().any(|a| a == v))
        };
        let poisoned = match (&fault.refuse_marker, &body) {
            (Some(marker), Ok(body)) => contains(body, marker.as_bytes()),
            _ => false,
        };
        let answer = match decide_fault(&fault, rand::random::<f64>()) {
            _ if !authorized => Answer::Refused {
                status: 401,
                retry_after: None,
            },
            _ if poisoned => Answer::Refused {
                status: 400,
                retry_after: None,
            },
            Some((status, retry_after)) => Answer::Refused {
                status,
                retry_after,
            },
            None => self.accept(signal, key, body, json),
        };
        {
            let mut counts = lock(&self.counts);
            counts.stats.last_headers = headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            match answer {
                _ if !authorized => counts.stats.requests_unauthorized += 1,
                Answer::Refused { .. } => counts.stats.requests_refused += 1,
                Answer::Invalid(_) => counts.stats.requests_invalid += 1,
                Answer::Accepted => {}
            }
        }
        if let Some(latency) = fault.latency {
            tokio::time::sleep(latency).await;
        }
        answer
    }

    pub(super) fn accept(
        &self,
        signal: Signal,
        key: String,
        body: Result<Bytes, String>,
        json: bool,
    ) -> Answer {
        let body = match body {
            Ok(body) => body,
            Err(e) => return Answer::Invalid(e),
        };
        let request = if self.noop {
            None
        } else {
            match ExportRequest::decode(signal, &body, json) {
                Ok(r) => Some(r),
                Err(e) => return Answer::Invalid(format!("decoding {signal} request: {e:#}")),
            }
        };
        let mut guard = lock(&self.counts);
        let Counts {
            stats,
            seqs,
            by_namespace,
        } = &mut *guard;
        let track = self.track_namespaces;
        let per_signal = stats.signal_mut(signal);
        per_signal.requests += 1;
        per_signal.bytes += body.len() as u64;
        let endpoint = stats.endpoints.entry(key.clone()).or_default();
        endpoint.requests += 1;
        let mut records = 0u64;
        if let Some(request) = &request {
            request.for_each_record(|ns, seq| {
                records += 1;
                let ns = ns.unwrap_or(NO_NAMESPACE);
                // Look up before inserting: the namespace set is small and
                // mostly already present, so avoid allocating a key each time.
                match stats.namespaces.get_mut(ns) {
                    Some(n) => *n += 1,
                    None => {
                        stats.namespaces.insert(ns.to_owned(), 1);
                    }
                }
                match endpoint.namespaces.get_mut(ns) {
                    Some(n) => *n += 1,
                    None => {
                        endpoint.namespaces.insert(ns.to_owned(), 1);
                    }
                }
                if track && let Some(seq) = seq {
                    by_namespace
                        .entry((key.clone(), ns.to_owned()))
                        .or_default()
                        .insert(seq);
                }
                match seq {
                    Some(seq) => {
                        let count = seqs.entry(seq).or_insert(0);
                        if *count == 0 {
                            stats.distinct_seqs += 1;
                        } else {
                            stats.duplicate_seqs += 1;
                        }
                        *count = count.saturating_add(1);
                    }
                    None => stats.records_without_seq += 1,
                }
            });
        }
        endpoint.records += records;
        stats.signal_mut(signal).records += records;
        Answer::Accepted
    }
}
