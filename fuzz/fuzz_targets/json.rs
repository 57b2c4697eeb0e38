#![no_main]
//! OTLP/JSON request bodies (`proto::json::request_from_json`), as the
//! HTTP receiver converts them before ingest scans them, and the way back
//! the stdout and debug paths take.
//!
//! Input: byte 0 picks the signal; the rest is the JSON body.
//!
//! Checked, on every input:
//! - a refusal names the signal and says where (`line L column C`);
//! - what it accepts is a protobuf request that prost decodes and that the
//!   wire scan accepts, with prost's record count and routing key per
//!   block (what ingest will count is what the client sent), unless the
//!   scan refuses it on purpose (a trace/span ID of the wrong length, values
//!   nested too deep);
//! - `records_to_json_lines` writes one JSON object per record;
//! - writing it as OTLP/JSON and reading that back gives the same request,
//!   to the last bit of every double (seedgate builds serde_json with
//!   `float_roundtrip`).

use libfuzzer_sys::fuzz_target;
use seedgate::proto::{self, Limits, ScanError, json};
use seedgate::signal::Signal;
use seedgate_fuzz::{PerSignal, Request, Summary, control, keys, signal_of, with_request};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((c, body)) = control(data) else {
        return;
    };
    let signal = signal_of(c);
    match json::request_from_json(signal, body) {
        Ok(pb) => with_request(signal, Accepted { signal, pb: &pb }),
        Err(e) => {
            let prefix = format!("invalid OTLP/JSON {} request: ", signal.as_str());
            assert!(e.message.starts_with(&prefix), "{}", e.message);
            assert!(
                e.message.contains(" at line "),
                "no position: {}",
                e.message
            );
        }
    }
});

/// The checks of a body `request_from_json` turned into `pb`.
struct Accepted<'a> {
    signal: Signal,
    pb: &'a [u8],
}

impl PerSignal for Accepted<'_> {
    type Out = ();

    fn run<R: Request>(self) {
        let request = R::decode(self.pb).expect("the converted request decodes");
        match proto::scan_with(self.signal, self.pb, &keys(), Limits::MAX) {
            Ok(blocks) => {
                let scanned: Summary = blocks
                    .iter()
                    .map(|b| (b.records, b.key.map(str::to_owned)))
                    .collect();
                assert_eq!(scanned, request.summary());
            }
            Err(ScanError::InvalidIdLength { .. } | ScanError::ValueTooDeep { .. }) => {}
            Err(e) => panic!("ingest refuses converted JSON: {e}"),
        }

        let mut lines = Vec::new();
        let n = json::records_to_json_lines(self.signal, self.pb, &mut lines)
            .expect("JSON lines of a valid request");
        assert_eq!(n, request.records());
        let mut count = 0;
        for line in lines.split_inclusive(|b| *b == b'\n') {
            let Some(line) = line.strip_suffix(b"\n") else {
                panic!("a line without its newline");
            };
            let value: serde_json::Value = serde_json::from_slice(line).expect("a line is JSON");
            assert!(value.is_object(), "{value}");
            count += 1;
        }
        assert_eq!(count, n);

        let text = json::request_to_json(self.signal, self.pb).expect("written as JSON");
        let again = json::request_from_json(self.signal, &text).unwrap_or_else(|e| {
            panic!(
                "our own JSON is refused: {e}\n{}",
                String::from_utf8_lossy(&text)
            )
        });
        let again = R::decode(again.as_slice()).expect("read back, it decodes");
        // Compared encoded: a NaN double is not equal to itself.
        if again.encode_to_vec() != request.encode_to_vec() {
            let written = |pb: &[u8]| -> Value {
                let text = json::request_to_json(self.signal, pb).expect("written as JSON");
                serde_json::from_slice(&text).expect("our own JSON parses")
            };
            let (first, second) = (written(self.pb), written(&again.encode_to_vec()));
            assert!(
                same_json(&first, &second),
                "the round trip changed the request:\n{first}\n{second}"
            );
        }
    }
}

/// Equal JSON documents, doubles compared bit for bit.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x.to_bits() == y.to_bits(),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
