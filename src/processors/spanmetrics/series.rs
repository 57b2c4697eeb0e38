//! The values of span metrics: what spans add to one series
//! ([`Aggregate`], borrowed as [`AggregateRef`]), a request's additions to
//! every series it touches ([`Deltas`]) and their encoded entry
//! ([`EncodedDeltas`]). Plain values, shared by the aggregation, the
//! entries and the stored totals.

use std::collections::BTreeMap;
use std::collections::btree_map;

use super::key::SeriesKey;

/// What some spans add to one series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Aggregate {
    /// How many spans.
    pub calls: u64,
    /// Spans per bucket: one per bound, and the last above every bound.
    pub bucket_counts: Vec<u64>,
    /// The sum of their durations, in milliseconds.
    pub sum: f64,
}

impl Aggregate {
    /// Nothing yet, for `bounds` bucket bounds.
    pub fn empty(bounds: usize) -> Self {
        Self {
            calls: 0,
            bucket_counts: vec![0; bounds + 1],
            sum: 0.0,
        }
    }

    /// An aggregate with these totals (tests build expectations with it).
    #[cfg(test)]
    pub(crate) fn of(calls: u64, buckets: &[u64], sum: f64) -> Self {
        Self {
            calls,
            bucket_counts: buckets.to_vec(),
            sum,
        }
    }

    /// Borrowed.
    pub fn view(&self) -> AggregateRef<'_> {
        AggregateRef {
            calls: self.calls,
            bucket_counts: &self.bucket_counts,
            sum: self.sum,
        }
    }

    /// Adds `other` in (bucket by bucket; a longer `other` lengthens this).
    pub fn merge(&mut self, other: AggregateRef<'_>) {
        self.calls = self.calls.saturating_add(other.calls);
        self.sum += other.sum;
        if self.bucket_counts.len() < other.bucket_counts.len() {
            self.bucket_counts.resize(other.bucket_counts.len(), 0);
        }
        for (mine, theirs) in self.bucket_counts.iter_mut().zip(other.bucket_counts) {
            *mine = mine.saturating_add(*theirs);
        }
    }
}

/// An [`Aggregate`] borrowed from where it was read (a stored entry, a
/// request's spans): added to a series without being copied first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregateRef<'a> {
    /// How many spans.
    pub calls: u64,
    /// Spans per bucket.
    pub bucket_counts: &'a [u64],
    /// The sum of their durations, in milliseconds.
    pub sum: f64,
}

impl AggregateRef<'_> {
    /// Owned.
    pub fn to_aggregate(&self) -> Aggregate {
        Aggregate {
            calls: self.calls,
            bucket_counts: self.bucket_counts.to_vec(),
            sum: self.sum,
        }
    }
}

/// A request's deltas as ingest stores them: a deltas entry
/// ([`super::entries`]) and how many spans it counts.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedDeltas {
    /// The entry.
    pub bytes: Vec<u8>,
    /// The spans it counts.
    pub spans: u64,
}

/// What a request adds, per series, in key order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deltas(BTreeMap<SeriesKey, Aggregate>);

impl Deltas {
    /// How many series.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no span was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The delta of one series.
    pub fn get(&self, key: &SeriesKey) -> Option<&Aggregate> {
        self.0.get(key)
    }

    /// The series and their deltas, in key order.
    pub fn iter(&self) -> btree_map::Iter<'_, SeriesKey, Aggregate> {
        self.0.iter()
    }

    /// Adds `delta` to series `key` (the caller sends a series past the
    /// cardinality limit to [`SeriesKey::overflow`] this way).
    pub fn add(&mut self, key: SeriesKey, delta: &Aggregate) {
        match self.0.entry(key) {
            btree_map::Entry::Occupied(mut e) => e.get_mut().merge(delta.view()),
            btree_map::Entry::Vacant(e) => {
                e.insert(delta.clone());
            }
        }
    }

    /// Adds every series of `other`: the deltas of two requests merged are
    /// the deltas of their spans together.
    pub fn merge(&mut self, other: Deltas) {
        for (key, delta) in other.0 {
            self.add(key, &delta);
        }
    }
}

impl IntoIterator for Deltas {
    type Item = (SeriesKey, Aggregate);
    type IntoIter = btree_map::IntoIter<SeriesKey, Aggregate>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Deltas {
    type Item = (&'a SeriesKey, &'a Aggregate);
    type IntoIter = btree_map::Iter<'a, SeriesKey, Aggregate>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
