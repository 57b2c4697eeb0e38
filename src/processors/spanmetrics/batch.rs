//! The spans of one request grouped by series, on the way to a deltas
//! entry.
//!
//! Every span's key is written to one buffer and the spans are grouped once
//! all are read, by sorting: a map would allocate each new key of a request,
//! and the entry wants its series in key order anyway.

use std::ops::Range;

use super::entries::{DELTAS_VERSION, put_series};
use super::series::{AggregateRef, EncodedDeltas};

/// One request's spans, each as its key, bucket and duration.
pub(super) struct SpanBatch {
    keys: Vec<u8>,
    spans: Vec<Observed>,
}

struct Observed {
    /// Where its key is in `keys`.
    key: Range<usize>,
    bucket: usize,
    millis: f64,
}

impl SpanBatch {
    /// A batch for a request of `request_len` bytes: a span's key is about
    /// its share of the request, so the buffers seldom grow.
    pub(super) fn with_capacity(request_len: usize) -> Self {
        Self {
            keys: Vec::with_capacity(request_len / 2),
            spans: Vec::with_capacity(request_len / 256),
        }
    }

    /// Adds a span; `write_key` appends its key to the buffer it is given.
    ///
    /// # Errors
    /// What `write_key` returns (the span is not added).
    pub(super) fn push<E>(
        &mut self,
        bucket: usize,
        millis: f64,
        write_key: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.keys.len();
        if let Err(e) = write_key(&mut self.keys) {
            self.keys.truncate(start);
            return Err(e);
        }
        self.spans.push(Observed {
            key: start..self.keys.len(),
            bucket,
            millis,
        });
        Ok(())
    }

    fn key(&self, span: &Observed) -> &[u8] {
        self.keys.get(span.key.clone()).unwrap_or_default()
    }

    /// The deltas entry of the spans, `bounds + 1` buckets a series.
    pub(super) fn encode(mut self, bounds: usize) -> EncodedDeltas {
        let mut spans = std::mem::take(&mut self.spans);
        // Stable: a series' durations add up in the request's order, as
        // they always have.
        spans.sort_by(|a, b| self.key(a).cmp(self.key(b)));
        let mut bytes = Vec::with_capacity(1 + self.keys.len());
        bytes.push(DELTAS_VERSION);
        let mut counts = vec![0u64; bounds + 1];
        let mut previous: &[u8] = &[];
        for series in spans.chunk_by(|a, b| self.key(a) == self.key(b)) {
            counts.fill(0);
            let mut sum = 0.0;
            for span in series {
                if let Some(c) = counts.get_mut(span.bucket) {
                    *c += 1;
                }
                sum += span.millis;
            }
            let Some(first) = series.first() else {
                continue;
            };
            let delta = AggregateRef {
                calls: series.len() as u64,
                bucket_counts: &counts,
                sum,
            };
            let key = self.key(first);
            put_series(&mut bytes, previous, key, delta);
            previous = key;
        }
        EncodedDeltas {
            bytes,
            spans: spans.len() as u64,
        }
    }
}
