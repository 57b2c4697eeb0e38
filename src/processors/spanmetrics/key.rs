//! [`SeriesKey`]: one series' dimension set, and its canonical bytes, which
//! the store keeps (in its entries) across restarts and upgrades.
//!
//! # Format, version 1
//!
//! ```text
//! key       = 0x01 attribute*            ; the version byte, then every dimension
//! attribute = varint(len) name value     ; names UTF-8, unique, in ascending byte order
//! value     = 0x00                       ; empty (an attribute without a value)
//!           | 0x01 varint(len) utf8      ; string
//!           | 0x02 (0x00 | 0x01)         ; bool
//!           | 0x03 i64 big-endian        ; int, 8 bytes
//!           | 0x04 f64 bits big-endian   ; double, 8 bytes
//!           | 0x05 varint(len) bytes     ; bytes
//!           | 0x06 varint(len) AnyValue  ; array, kvlist or anything newer: its protobuf encoding
//! ```
//!
//! `varint` is protobuf's LEB128. One dimension set has exactly one
//! encoding (decoding refuses any other), so equal sets are equal keys.
//! Values keep their type: an int `200` and a string `"200"` are two series
//! (the Collector, which keys on the value's string form, merges them).
//!
//! The store keeps keys inside entry payloads ([`super::entries`]), not as
//! LMDB keys: LMDB's 511-byte key limit does not apply, a key may be as long
//! as its attributes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

use super::codec::{FormatError, Reader, put_bytes};
use crate::config::spanmetrics::OVERFLOW_ATTRIBUTE;

/// The format version this code writes and reads.
pub const KEY_VERSION: u8 = 1;

const EMPTY: u8 = 0x00;
const STRING: u8 = 0x01;
const BOOL: u8 = 0x02;
const INT: u8 = 0x03;
const DOUBLE: u8 = 0x04;
const BYTES: u8 = 0x05;
const OTHER: u8 = 0x06;

/// The dimension set of one series: its attributes, sorted by name, and
/// their canonical encoding. Equality, order and hash are the encoding's,
/// so a map of keys iterates in LMDB's key order and can be searched with
/// the bytes alone.
#[derive(Debug, Clone)]
pub struct SeriesKey {
    attributes: Vec<KeyValue>,
    encoded: Vec<u8>,
}

/// A dimension's value as the aggregation finds it: borrowed from the
/// request's bytes (or from an `AnyValue`), so that a span's key costs no
/// allocation but the reused buffer it is written to.
#[derive(Debug, Clone)]
pub(super) enum ValueRef<'a> {
    /// An attribute without a value.
    Empty,
    /// A string (the span's name, kind and status among them).
    Str(&'a str),
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A double.
    Double(f64),
    /// Bytes.
    Bytes(&'a [u8]),
    /// An array, a kvlist or anything newer.
    Composite(&'a any_value::Value),
    /// A value the request's bytes left to prost to decode (see
    /// `request::value`): rare, so owned.
    Decoded(AnyValue),
}

impl<'a> ValueRef<'a> {
    /// The value of an attribute (`None`: it has none).
    pub(super) fn of(value: Option<&'a AnyValue>) -> Self {
        use any_value::Value;
        match value.and_then(|v| v.value.as_ref()) {
            None => Self::Empty,
            Some(Value::StringValue(s)) => Self::Str(s),
            Some(Value::BoolValue(b)) => Self::Bool(*b),
            Some(Value::IntValue(i)) => Self::Int(*i),
            Some(Value::DoubleValue(d)) => Self::Double(*d),
            Some(Value::BytesValue(b)) => Self::Bytes(b),
            Some(other) => Self::Composite(other),
        }
    }
}

impl SeriesKey {
    /// The key of `attributes`: sorted by name, the first of a repeated
    /// name kept.
    pub fn new(mut attributes: Vec<KeyValue>) -> Self {
        attributes.sort_by(|a, b| a.key.cmp(&b.key));
        attributes.dedup_by(|later, first| later.key == first.key);
        for kv in &mut attributes {
            // Only profiles use a dictionary index for the name.
            kv.key_strindex = 0;
            kv.value.get_or_insert_with(AnyValue::default);
        }
        let mut encoded = vec![KEY_VERSION];
        for kv in &attributes {
            encode_attribute(&mut encoded, &kv.key, &ValueRef::of(kv.value.as_ref()));
        }
        Self {
            attributes,
            encoded,
        }
    }

    /// The series every span goes to once `aggregation_cardinality_limit`
    /// series exist: `otel.metric.overflow: true` alone, as the Collector's.
    pub fn overflow() -> Self {
        Self::new(vec![KeyValue {
            key: OVERFLOW_ATTRIBUTE.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            }),
            ..Default::default()
        }])
    }

    /// Whether this is [`SeriesKey::overflow`].
    pub fn is_overflow(&self) -> bool {
        matches!(
            self.get(OVERFLOW_ATTRIBUTE).and_then(|v| v.value.as_ref()),
            Some(any_value::Value::BoolValue(true))
        )
    }

    /// The attributes, sorted by name; every one has a value (maybe empty).
    pub fn attributes(&self) -> &[KeyValue] {
        &self.attributes
    }

    /// The value of dimension `name`.
    pub fn get(&self, name: &str) -> Option<&AnyValue> {
        self.attributes
            .binary_search_by(|kv| kv.key.as_str().cmp(name))
            .ok()
            .and_then(|i| self.attributes.get(i))
            .and_then(|kv| kv.value.as_ref())
    }

    /// The `service.name` dimension (every series but the overflow has it).
    pub fn service_name(&self) -> Option<&str> {
        match self.get("service.name")?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    /// The canonical encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// The canonical encoding (see the module's documentation).
    pub fn encode(&self) -> Vec<u8> {
        self.encoded.clone()
    }

    /// Reads a canonical encoding back.
    ///
    /// # Errors
    /// An unknown version, truncated or non-canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::versioned(bytes, KEY_VERSION)?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            let key = std::str::from_utf8(r.bytes()?)
                .map_err(|_| FormatError::Invalid("a name is not UTF-8"))?
                .to_owned();
            let value = decode_value(&mut r)?;
            attributes.push(KeyValue {
                key,
                value: Some(value),
                ..Default::default()
            });
        }
        r.finish()?;
        let key = Self::new(attributes);
        if key.encoded == bytes {
            Ok(key)
        } else {
            Err(FormatError::Invalid("not the canonical encoding"))
        }
    }
}

/// Appends one attribute in the key format; ingest writes a span's key
/// with it straight from the request, in the same order as
/// [`SeriesKey::new`].
pub(super) fn encode_attribute(out: &mut Vec<u8>, name: &str, value: &ValueRef<'_>) {
    put_bytes(out, name.as_bytes());
    encode_value(out, value);
}

fn encode_value(out: &mut Vec<u8>, value: &ValueRef<'_>) {
    match value {
        ValueRef::Empty => out.push(EMPTY),
        ValueRef::Str(s) => {
            out.push(STRING);
            put_bytes(out, s.as_bytes());
        }
        ValueRef::Bool(b) => out.extend_from_slice(&[BOOL, u8::from(*b)]),
        ValueRef::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_be_bytes());
        }
        ValueRef::Double(d) => {
            out.push(DOUBLE);
            out.extend_from_slice(&d.to_bits().to_be_bytes());
        }
        ValueRef::Bytes(b) => {
            out.push(BYTES);
            put_bytes(out, b);
        }
        ValueRef::Composite(v) => {
            out.push(OTHER);
            let any = AnyValue {
                value: Some((*v).clone()),
            };
            put_bytes(out, &any.encode_to_vec());
        }
        // What prost decoded may be a scalar after all: its canonical form.
        ValueRef::Decoded(any) => encode_value(out, &ValueRef::of(Some(any))),
    }
}

fn decode_value(r: &mut Reader<'_>) -> Result<AnyValue, FormatError> {
    use any_value::Value;
    let value = match r.u8()? {
        EMPTY => return Ok(AnyValue::default()),
        STRING => Value::StringValue(
            std::str::from_utf8(r.bytes()?)
                .map_err(|_| FormatError::Invalid("a string value is not UTF-8"))?
                .to_owned(),
        ),
        BOOL => match r.u8()? {
            0 => Value::BoolValue(false),
            1 => Value::BoolValue(true),
            _ => return Err(FormatError::Invalid("a bool is neither 0 nor 1")),
        },
        INT => Value::IntValue(r.u64()?.cast_signed()),
        DOUBLE => Value::DoubleValue(f64::from_bits(r.u64()?)),
        BYTES => Value::BytesValue(r.bytes()?.to_vec()),
        OTHER => {
            return AnyValue::decode(r.bytes()?)
                .map_err(|_| FormatError::Invalid("a composite value is not an AnyValue"));
        }
        _ => return Err(FormatError::Invalid("unknown value type")),
    };
    Ok(AnyValue { value: Some(value) })
}

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl Eq for SeriesKey {}

impl PartialOrd for SeriesKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeriesKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.encoded.cmp(&other.encoded)
    }
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.encoded.hash(state);
    }
}

impl Borrow<[u8]> for SeriesKey {
    fn borrow(&self) -> &[u8] {
        &self.encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.to_owned())
    }

    fn sample() -> SeriesKey {
        SeriesKey::new(vec![
            kv("status.code", s("STATUS_CODE_UNSET")),
            kv("service.name", s("cart")),
            kv("span.name", s("GET /")),
            kv("span.kind", s("SPAN_KIND_SERVER")),
            kv("http.status_code", any_value::Value::IntValue(200)),
        ])
    }

    #[test]
    fn a_key_encodes_to_these_bytes_forever() {
        let mut want = vec![1u8];
        want.extend_from_slice(b"\x10http.status_code\x03\0\0\0\0\0\0\0\xc8");
        want.extend_from_slice(b"\x0cservice.name\x01\x04cart");
        want.extend_from_slice(b"\x09span.kind\x01\x10SPAN_KIND_SERVER");
        want.extend_from_slice(b"\x09span.name\x01\x05GET /");
        want.extend_from_slice(b"\x0bstatus.code\x01\x11STATUS_CODE_UNSET");
        assert_eq!(sample().encode(), want);
        assert_eq!(
            SeriesKey::overflow().encode(),
            b"\x01\x14otel.metric.overflow\x02\x01".to_vec()
        );
    }

    #[test]
    fn every_value_type_round_trips() {
        use opentelemetry_proto::tonic::common::v1::ArrayValue;
        let key = SeriesKey::new(vec![
            kv("a.string", s("x")),
            kv("b.bool", any_value::Value::BoolValue(false)),
            kv("c.int", any_value::Value::IntValue(-7)),
            kv("d.double", any_value::Value::DoubleValue(0.25)),
            kv("e.bytes", any_value::Value::BytesValue(vec![0, 255])),
            kv(
                "f.array",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(s("y")),
                    }],
                }),
            ),
            KeyValue {
                key: "g.empty".to_owned(),
                value: None,
                ..Default::default()
            },
        ]);
        let back = SeriesKey::decode(&key.encode()).unwrap();
        assert_eq!(back, key);
        assert_eq!(back.attributes(), key.attributes());
        assert_eq!(sample(), SeriesKey::decode(&sample().encode()).unwrap());
        assert_eq!(sample().service_name(), Some("cart"));
    }

    #[test]
    fn order_and_repeats_do_not_change_the_key() {
        let mut attrs = sample().attributes().to_vec();
        attrs.reverse();
        attrs.push(kv("service.name", s("cart")));
        assert_eq!(SeriesKey::new(attrs), sample());
        let other = SeriesKey::new(vec![kv("http.status_code", s("200"))]);
        let int = SeriesKey::new(vec![kv(
            "http.status_code",
            any_value::Value::IntValue(200),
        )]);
        assert_ne!(other, int, "values keep their type");
    }

    #[test]
    fn bad_bytes_are_refused() {
        let good = sample().encode();
        assert_eq!(SeriesKey::decode(&[]), Err(FormatError::Empty));
        let mut newer = good.clone();
        newer[0] = 2;
        assert_eq!(
            SeriesKey::decode(&newer),
            Err(FormatError::Version { found: 2, known: 1 })
        );
        assert_eq!(
            SeriesKey::decode(&good[..good.len() - 1]),
            Err(FormatError::Truncated)
        );
        // Two attributes out of order: decodable, not canonical.
        let mut swapped = vec![1u8];
        swapped.extend_from_slice(b"\x01b\x00\x01a\x00");
        assert!(matches!(
            SeriesKey::decode(&swapped),
            Err(FormatError::Invalid(_))
        ));
    }

    #[test]
    fn the_overflow_key_is_recognised() {
        assert!(SeriesKey::overflow().is_overflow());
        assert!(!sample().is_overflow());
        assert_eq!(SeriesKey::overflow().service_name(), None);
        assert_eq!(
            SeriesKey::decode(&SeriesKey::overflow().encode()).unwrap(),
            SeriesKey::overflow()
        );
    }
}
