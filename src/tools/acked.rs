//! The acked file: the loadgen's durable claim of what the other side
//! acknowledged, and the sink's way to check that claim.
//!
//! The format is one line per acknowledged request, `first last\n`: the
//! inclusive range of sequence numbers that request carried (the records of
//! one request are always consecutive). Lines are appended in ack order, not
//! seq order, and are flushed at least every second, so a loadgen killed
//! midway leaves a file that lists a subset of what was acked: never more.
//!
//! Invariant kept by the reader: a last line without its `\n` is *torn* (the
//! process died mid-write) and is ignored, even when it happens to parse,
//! because `12 3` may be the first half of `12 345`.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};

/// A set of sequence numbers, kept as sorted, merged, inclusive ranges so a
/// run of millions of records stays a few bytes per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckedSet {
    /// Sorted by start, non-overlapping and non-adjacent.
    ranges: Vec<(u64, u64)>,
    /// Seqs listed more than once in the input (the same request acked twice).
    overlapping: u64,
}

// === impl AckedSet ===

impl AckedSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the set from inclusive `(first, last)` ranges in any order.
    /// Ranges with `first > last` are ignored.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut raw: Vec<(u64, u64)> = ranges.into_iter().filter(|(f, l)| f <= l).collect();
        raw.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(raw.len());
        let mut overlapping = 0;
        for (first, last) in raw {
            match merged.last_mut() {
                Some(prev) if first <= prev.1.saturating_add(1) => {
                    if first <= prev.1 {
                        overlapping += prev.1.min(last) - first + 1;
                    }
                    prev.1 = prev.1.max(last);
                }
                _ => merged.push((first, last)),
            }
        }
        Self {
            ranges: merged,
            overlapping,
        }
    }

    /// Builds the set from single sequence numbers (e.g. the seqs a sink saw).
    pub fn from_seqs(seqs: impl IntoIterator<Item = u64>) -> Self {
        Self::from_ranges(seqs.into_iter().map(|s| (s, s)))
    }

    /// Whether `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        // The first range that starts after `seq`; the one before it is the
        // only candidate.
        let idx = self.ranges.partition_point(|&(first, _)| first <= seq);
        idx > 0 && self.ranges[idx - 1].1 >= seq
    }

    /// The number of distinct seqs in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(f, l)| l - f + 1).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Seqs that the input listed more than once (a request acked twice).
    pub fn overlapping(&self) -> u64 {
        self.overlapping
    }

    /// The merged inclusive ranges, sorted.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Every seq in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|&(f, l)| f..=l)
    }

    /// Renders the set in the acked-file format (one merged range per line).
    pub fn to_file_text(&self) -> String {
        let mut out = String::new();
        for (f, l) in &self.ranges {
            out.push_str(&format!("{f} {l}\n"));
        }
        out
    }
}

/// Parses acked-file text. A last line without a trailing newline is torn and
/// ignored; blank lines are skipped.
///
/// # Errors
///
/// A complete line that is not two integers `first last` with
/// `first <= last`, naming its 1-based line number.
pub fn parse_acked(text: &str) -> anyhow::Result<AckedSet> {
    // Only lines terminated by '\n' were written completely.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let mut ranges = Vec::new();
    for (idx, line) in complete.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_ascii_whitespace();
        let parsed = match (parts.next(), parts.next(), parts.next()) {
            (Some(f), Some(l), None) => f.parse::<u64>().ok().zip(l.parse::<u64>().ok()),
            _ => None,
        };
        match parsed {
            Some((first, last)) if first <= last => ranges.push((first, last)),
            _ => bail!(
                "line {}: expected `first last` with first <= last, got {line:?}",
                idx + 1
            ),
        }
    }
    Ok(AckedSet::from_ranges(ranges))
}

/// Reads and parses an acked file written by `seedgate loadgen --acked-file`
/// (or a sink's `--received-file`).
///
/// # Errors
///
/// The file cannot be read or has a malformed complete line.
pub fn read_acked_file(path: impl AsRef<Path>) -> anyhow::Result<AckedSet> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading acked file {}", path.display()))?;
    parse_acked(&text).with_context(|| format!("parsing acked file {}", path.display()))
}

/// Writes a set in the acked-file format, replacing `path`.
///
/// # Errors
///
/// The file cannot be written.
pub fn write_acked_file(path: impl AsRef<Path>, set: &AckedSet) -> anyhow::Result<()> {
    let path = path.as_ref();
    std::fs::write(path, set.to_file_text()).with_context(|| format!("writing {}", path.display()))
}

/// Appends acked ranges to a file through a buffer; the owner calls
/// [`AckedWriter::flush`] periodically and at the end.
#[derive(Debug)]
pub struct AckedWriter {
    out: std::io::BufWriter<std::fs::File>,
}

// === impl AckedWriter ===

impl AckedWriter {
    /// Creates (truncates) the file.
    ///
    /// # Errors
    ///
    /// The file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating acked file {}", path.display()))?;
        Ok(Self {
            out: std::io::BufWriter::new(file),
        })
    }

    /// Records one acknowledged request.
    ///
    /// # Errors
    ///
    /// Writing to the file failed.
    pub fn record(&mut self, first: u64, last: u64) -> anyhow::Result<()> {
        writeln!(self.out, "{first} {last}").context("writing acked file")
    }

    /// Pushes buffered lines to the file.
    ///
    /// # Errors
    ///
    /// Writing to the file failed.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().context("flushing acked file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_count_overlaps() {
        let set = AckedSet::from_ranges([(10, 19), (0, 9), (30, 39), (35, 36), (25, 24)]);
        assert_eq!(set.ranges(), &[(0, 19), (30, 39)]);
        assert_eq!(set.len(), 30);
        assert_eq!(set.overlapping(), 2);
        assert!(set.contains(0) && set.contains(19) && set.contains(35));
        assert!(!set.contains(20) && !set.contains(29) && !set.contains(40));
        assert_eq!(set.iter().count(), 30);
    }

    #[test]
    fn torn_last_line_is_ignored() {
        // "200 2" is the first half of "200 299": it parses but must not count.
        let set = parse_acked("0 99\n100 199\n200 2").expect("parse");
        assert_eq!(set.ranges(), &[(0, 199)]);
        let set = parse_acked("0 99\n100 1").expect("parse");
        assert_eq!(set.len(), 100);
        assert!(parse_acked("").expect("empty").is_empty());
        assert!(parse_acked("5 9").expect("only torn").is_empty());
    }

    #[test]
    fn malformed_complete_line_is_an_error_with_line_number() {
        let err = parse_acked("0 9\nx y\n10 19\n").expect_err("malformed");
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        assert!(parse_acked("9 0\n").is_err());
        assert!(parse_acked("1 2 3\n").is_err());
    }

    #[test]
    fn writer_output_reads_back_and_torn_file_parses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("acked");
        let mut w = AckedWriter::create(&path).expect("create");
        w.record(100, 199).expect("record");
        w.record(0, 99).expect("record");
        w.flush().expect("flush");
        // Simulate a kill in the middle of the next line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"200 29").expect("append");
        drop(f);
        let set = read_acked_file(&path).expect("read");
        assert_eq!(set.ranges(), &[(0, 199)]);

        let out = dir.path().join("copy");
        write_acked_file(&out, &set).expect("write");
        assert_eq!(read_acked_file(&out).expect("read back"), set);
    }
}
