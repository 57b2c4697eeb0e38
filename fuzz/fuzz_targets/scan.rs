#![no_main]
//! The wire scan that ingest runs on every request (`proto::scan`,
//! `count_records`, `concat`) and the load balancer's `proto::split` of
//! what ingest accepted.
//!
//! Input: byte 0 picks the signal, the split key and the backend count,
//! byte 1 which blocks to slice out again; the rest is the request body.
//!
//! Checked, on every input:
//! - a scan's blocks are in order, in bounds and disjoint; `count_records`
//!   agrees with it (same total, or the same error); any selection of
//!   blocks, concatenated, scans again to exactly those blocks;
//! - the scan with the default limits gives the same answer as with the
//!   largest ones, or `ValueTooDeep`;
//! - when prost decodes the body, the scan accepts it too with prost's
//!   record count and routing key per block, and the concatenated blocks
//!   decode with prost to exactly the selected resources; the scan may
//!   refuse on purpose what prost lets through: groups (prost skips them),
//!   trace/span IDs of the wrong length (the Collector refuses them) and
//!   values nested too deep;
//! - a split of a scanned body puts every record in exactly one part, each
//!   part scans to its count, an empty part has no bytes and, when prost
//!   decodes the body, so does every part; by `traceID`, every span is in
//!   the part its trace ID's owner names.

use libfuzzer_sys::fuzz_target;
use seedgate::config::RoutingKey;
use seedgate::proto::{self, Block, Limits, ScanError, split};
use seedgate::signal::Signal;
use seedgate_fuzz::{PerSignal, Request, Summary, control, keys, signal_of, with_request};

fuzz_target!(|data: &[u8]| {
    let Some((c, rest)) = control(data) else {
        return;
    };
    let Some((mask, buf)) = control(rest) else {
        return;
    };
    let signal = signal_of(c);
    let keys = keys();
    // The largest limits, as `count_records` uses them.
    let scanned = proto::scan_with(signal, buf, &keys, Limits::MAX);
    match proto::scan(signal, buf, &keys) {
        Err(ScanError::ValueTooDeep { .. }) => {}
        default => assert_eq!(default, scanned),
    }
    let keep = |i: usize| mask & (1 << (i % 8)) != 0;
    check_scan(signal, buf, &scanned, &keep);
    with_request(
        signal,
        AgainstProst {
            buf,
            scanned: &scanned,
            keep: &keep,
        },
    );
    if scanned.is_ok() {
        // Split only sees what ingest accepted.
        let n = 1 + usize::from(c / 12) % 4;
        with_request(
            signal,
            Split {
                signal,
                key: split_key(signal, c),
                buf,
                n,
            },
        );
    }
});

/// The scan against itself: block ranges, `count_records`, re-slicing.
fn check_scan(
    signal: Signal,
    buf: &[u8],
    scanned: &Result<Vec<Block<'_>>, ScanError>,
    keep: &dyn Fn(usize) -> bool,
) {
    let blocks = match scanned {
        Ok(blocks) => blocks,
        Err(e) => {
            assert!(e.offset() <= buf.len(), "{e} is outside the body");
            // count_records does not read routing keys; otherwise it
            // validates the same framing and stops at the same place.
            if !matches!(e, ScanError::InvalidUtf8 { .. }) {
                assert_eq!(proto::count_records(signal, buf), Err(*e));
            }
            return;
        }
    };
    let mut end = 0;
    for b in blocks {
        assert!(b.range.start >= end && b.range.start < b.range.end && b.range.end <= buf.len());
        end = b.range.end;
    }
    let total: u64 = blocks.iter().map(|b| u64::from(b.records)).sum();
    assert_eq!(proto::count_records(signal, buf), Ok(total));

    let selected: Vec<Block<'_>> = blocks
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, b)| b.clone())
        .collect();
    let mut part = Vec::new();
    proto::concat(buf, &selected, &mut part);
    let again = proto::scan(signal, &part, &keys()).expect("selected blocks scan again");
    let summary = |bs: &[Block<'_>]| -> Vec<(u32, Option<String>)> {
        bs.iter()
            .map(|b| (b.records, b.key.map(str::to_owned)))
            .collect()
    };
    assert_eq!(summary(&again), summary(&selected));
}

/// The scan against a full prost decode, where prost accepts the body.
struct AgainstProst<'a> {
    buf: &'a [u8],
    scanned: &'a Result<Vec<Block<'a>>, ScanError>,
    keep: &'a dyn Fn(usize) -> bool,
}

impl PerSignal for AgainstProst<'_> {
    type Out = ();

    fn run<R: Request>(self) {
        let Ok(request) = R::decode(self.buf) else {
            return;
        };
        let blocks = match self.scanned {
            Ok(blocks) => blocks,
            Err(e) if refused_on_purpose(e) => return,
            Err(e) => panic!("prost decodes what the scan refuses: {e}"),
        };
        let scanned: Summary = blocks
            .iter()
            .map(|b| (b.records, b.key.map(str::to_owned)))
            .collect();
        assert_eq!(scanned, request.summary());

        let selected: Vec<Block<'_>> = blocks
            .iter()
            .enumerate()
            .filter(|(i, _)| (self.keep)(*i))
            .map(|(_, b)| b.clone())
            .collect();
        let mut part = Vec::new();
        proto::concat(self.buf, &selected, &mut part);
        let decoded = R::decode(part.as_slice()).expect("selected blocks decode");
        // Compared encoded: a NaN double is not equal to itself.
        assert_eq!(
            decoded.encode_to_vec(),
            request.keep(self.keep).encode_to_vec()
        );
    }
}

/// What the scan refuses although prost decodes it: groups (prost skips
/// them), IDs of the wrong length (the Collector refuses them), values
/// nested deeper than the limit.
fn refused_on_purpose(e: &ScanError) -> bool {
    matches!(
        e,
        ScanError::Group { .. }
            | ScanError::InvalidIdLength { .. }
            | ScanError::ValueTooDeep { .. }
    )
}

/// The split key a control byte picks among those that fit the signal.
fn split_key(signal: Signal, c: u8) -> RoutingKey {
    let fitting: Vec<RoutingKey> = [
        RoutingKey::TraceId,
        RoutingKey::Service,
        RoutingKey::Resource,
        RoutingKey::StreamId,
    ]
    .into_iter()
    .filter(|k| k.fits(signal))
    .collect();
    fitting[usize::from(c / 3) % fitting.len()]
}

/// The split of a scanned body over `n` backends.
struct Split<'a> {
    signal: Signal,
    key: RoutingKey,
    buf: &'a [u8],
    n: usize,
}

impl PerSignal for Split<'_> {
    type Out = ();

    fn run<R: Request>(self) {
        let n = self.n as u64;
        let owner = |hash: u64| (hash % n) as usize;
        // A body that does not split is sent whole to one backend: not a
        // property violation, so nothing to check.
        let Ok(parts) = split::split(self.signal, self.key, self.buf, self.n, &owner) else {
            return;
        };
        assert_eq!(parts.len(), self.n);
        // Ingest's split takes the trace keys its scan found: it must come
        // to exactly the same parts as reading the spans.
        let mut keys = Vec::new();
        if proto::scan_keyed(self.signal, self.buf, &[], Limits::MAX, Some(&mut keys)).is_ok() {
            let hinted =
                split::spread_keyed(self.signal, self.key, self.buf, self.n, &owner, Some(&keys))
                    .expect("it split without the keys")
                    .into_parts(self.buf, self.n);
            assert_eq!(hinted, parts);
        }
        let total: u64 = parts.iter().map(|p| u64::from(p.records)).sum();
        assert_eq!(Ok(total), proto::count_records(self.signal, self.buf));
        for p in &parts {
            assert_eq!(p.records == 0, p.body.is_empty(), "{p:?}");
            assert_eq!(
                proto::count_records(self.signal, &p.body),
                Ok(u64::from(p.records))
            );
        }
        if R::decode(self.buf).is_err() {
            return;
        }
        for (i, p) in parts.iter().enumerate() {
            let decoded = R::decode(p.body.as_slice()).expect("a part decodes");
            assert_eq!(decoded.records(), u64::from(p.records));
            if self.key == RoutingKey::TraceId {
                for id in decoded.trace_ids() {
                    assert_eq!(owner(split::key_hash(id)), i, "span of trace {id:02x?}");
                }
            }
        }
    }
}
