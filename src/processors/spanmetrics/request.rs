//! The parts of a traces request that span metrics read, borrowed from its
//! bytes: a span's name, kind, duration and status code, and the attributes
//! a dimension asks for. Nothing is decoded (or allocated) that a span's
//! series key does not need; strings are checked to be UTF-8, as prost
//! would. Field numbers are those of `opentelemetry.proto.trace.v1`.
//!
//! Why not prost: decoding a request costs an allocation per span (its
//! name, its attribute list) and per resource attribute, and ingest pays it
//! for every request of a pipeline with span metrics.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;

use super::key::ValueRef;
use crate::proto::ScanError;
use crate::proto::wire::{Field, I64, Reader, VARINT, Value};

/// A traces request span metrics cannot read (ingest has checked the
/// request already: not expected).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Its framing, a wire type or a string.
    #[error(transparent)]
    Wire(#[from] ScanError),
    /// An attribute value left to prost (see `value`).
    #[error("an attribute value: {0}")]
    Value(#[from] prost::DecodeError),
}

/// Calls `f` with each `ResourceSpans` of an `ExportTraceServiceRequest`.
///
/// # Errors
/// Framing errors, or what `f` returns.
pub(super) fn for_each_resource<'a>(
    request: &'a [u8],
    mut f: impl FnMut(&ResourceSpans<'a>) -> Result<(), RequestError>,
) -> Result<(), RequestError> {
    let mut r = Reader::new(request);
    while let Some(field) = r.next_field()? {
        if field.number == 1 {
            let (s, e) = field.expect_len("ExportTraceServiceRequest.resource_spans")?;
            f(&ResourceSpans(r.nested(s, e)))?;
        }
    }
    Ok(())
}

/// One `ResourceSpans`.
pub(super) struct ResourceSpans<'a>(Reader<'a>);

impl<'a> ResourceSpans<'a> {
    /// The first resource attribute named `name` (several `resource`
    /// fields merge, so their attributes are searched in order).
    ///
    /// # Errors
    /// Framing errors; a string value that is not UTF-8.
    pub(super) fn attribute(&self, name: &str) -> Result<Option<ValueRef<'a>>, RequestError> {
        let mut r = self.0.clone();
        while let Some(f) = r.next_field()? {
            if f.number == 1 {
                let (s, e) = f.expect_len("ResourceSpans.resource")?;
                if let Some(v) = attribute(r.nested(s, e), 1, name)? {
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }

    /// Calls `f` with each span of every `ScopeSpans`.
    ///
    /// # Errors
    /// Framing errors; a span name that is not UTF-8; what `f` returns.
    pub(super) fn for_each_span(
        &self,
        mut f: impl FnMut(&Span<'a>) -> Result<(), RequestError>,
    ) -> Result<(), RequestError> {
        let mut r = self.0.clone();
        while let Some(field) = r.next_field()? {
            if field.number != 2 {
                continue;
            }
            let (s, e) = field.expect_len("ResourceSpans.scope_spans")?;
            let mut scope = r.nested(s, e);
            while let Some(field) = scope.next_field()? {
                if field.number == 2 {
                    let (s, e) = field.expect_len("ScopeSpans.spans")?;
                    f(&Span::read(scope.nested(s, e))?)?;
                }
            }
        }
        Ok(())
    }
}

/// What a span's series key reads of it. A field given twice keeps its last
/// value, as prost's decoding.
pub(super) struct Span<'a> {
    /// `name`.
    pub(super) name: &'a str,
    /// `kind` (a `SpanKind`).
    pub(super) kind: i32,
    /// `status.code` (0, unset, without a status).
    pub(super) status_code: i32,
    /// `end_time_unix_nano - start_time_unix_nano`, 0 if it ends first.
    pub(super) duration_nanos: u64,
    /// The whole span, for [`Span::attribute`].
    message: Reader<'a>,
}

impl<'a> Span<'a> {
    fn read(message: Reader<'a>) -> Result<Self, RequestError> {
        let mut span = Span {
            name: "",
            kind: 0,
            status_code: 0,
            duration_nanos: 0,
            message: message.clone(),
        };
        let (mut start, mut end) = (0, 0);
        let mut r = message;
        while let Some(f) = r.next_field()? {
            match f.number {
                5 => span.name = string(&r, &f, "Span.name")?,
                // int32 on the wire is a varint; prost truncates it so.
                6 => span.kind = varint(&f, "Span.kind")? as i32,
                7 => start = fixed64(&r, &f, "Span.start_time_unix_nano")?,
                8 => end = fixed64(&r, &f, "Span.end_time_unix_nano")?,
                15 => {
                    let (s, e) = f.expect_len("Span.status")?;
                    let mut status = r.nested(s, e);
                    while let Some(f) = status.next_field()? {
                        if f.number == 3 {
                            span.status_code = varint(&f, "Status.code")? as i32;
                        }
                    }
                }
                _ => {}
            }
        }
        span.duration_nanos = u64::saturating_sub(end, start);
        Ok(span)
    }

    /// The first of the span's attributes named `name`.
    ///
    /// # Errors
    /// Framing errors; a string value that is not UTF-8.
    pub(super) fn attribute(&self, name: &str) -> Result<Option<ValueRef<'a>>, RequestError> {
        attribute(self.message.clone(), 9, name)
    }
}

/// The value of the first `KeyValue` named `name` among the fields
/// `number` of `message`.
fn attribute<'a>(
    mut message: Reader<'a>,
    number: u32,
    name: &str,
) -> Result<Option<ValueRef<'a>>, RequestError> {
    while let Some(f) = message.next_field()? {
        if f.number != number {
            continue;
        }
        let (s, e) = f.expect_len("attributes")?;
        let mut key: &[u8] = &[];
        let mut r = message.nested(s, e);
        while let Some(f) = r.next_field()? {
            if f.number == 1 {
                let (s, e) = f.expect_len("KeyValue.key")?;
                key = r.bytes(s, e);
            }
        }
        if key == name.as_bytes() {
            return key_value(&message, (s, e)).map(Some);
        }
    }
    Ok(None)
}

/// The value of the `KeyValue` at `s..e` of `parent` (its `value` fields;
/// more than one merge).
fn key_value<'a>(
    parent: &Reader<'a>,
    (s, e): (usize, usize),
) -> Result<ValueRef<'a>, RequestError> {
    let mut r = parent.nested(s, e);
    let mut found = None;
    while let Some(f) = r.next_field()? {
        if f.number == 2 {
            let range = f.expect_len("KeyValue.value")?;
            if found.replace(range).is_some() {
                // A value given in two parts: prost's merge is the truth.
                let kv = KeyValue::decode(parent.bytes(s, e))?;
                return Ok(ValueRef::Decoded(kv.value.unwrap_or_default()));
            }
        }
    }
    match found {
        None => Ok(ValueRef::Empty),
        Some(range) => value(parent, range),
    }
}

/// The `AnyValue` at `s..e` of `parent`: a scalar given once is read in
/// place; anything else (an array, a kvlist, a oneof given twice) is
/// decoded by prost.
fn value<'a>(parent: &Reader<'a>, (s, e): (usize, usize)) -> Result<ValueRef<'a>, RequestError> {
    let decoded = || Ok(ValueRef::Decoded(AnyValue::decode(parent.bytes(s, e))?));
    let mut r = parent.nested(s, e);
    let Some(f) = r.next_field()? else {
        return Ok(ValueRef::Empty);
    };
    // `r` is past the field: `fixed64` finds its bytes there.
    let v = match f.number {
        1 => ValueRef::Str(string(&r, &f, "AnyValue.string_value")?),
        2 => ValueRef::Bool(varint(&f, "AnyValue.bool_value")? != 0),
        3 => ValueRef::Int(varint(&f, "AnyValue.int_value")?.cast_signed()),
        4 => ValueRef::Double(f64::from_bits(fixed64(&r, &f, "AnyValue.double_value")?)),
        7 => {
            let (s, e) = f.expect_len("AnyValue.bytes_value")?;
            ValueRef::Bytes(r.bytes(s, e))
        }
        _ => return decoded(),
    };
    if r.next_field()?.is_some() {
        return decoded();
    }
    Ok(v)
}

/// A `string` field, checked to be UTF-8.
fn string<'a>(r: &Reader<'a>, f: &Field, field: &'static str) -> Result<&'a str, ScanError> {
    let (s, e) = f.expect_len(field)?;
    std::str::from_utf8(r.bytes(s, e)).map_err(|error| ScanError::InvalidUtf8 {
        offset: s.saturating_add(error.valid_up_to()),
        field,
    })
}

fn varint(f: &Field, field: &'static str) -> Result<u64, ScanError> {
    f.expect(field, VARINT)?;
    match f.value {
        Value::Varint(v) => Ok(v),
        _ => Ok(0),
    }
}

/// A `fixed64` field just read by `r`: [`Value::I64`] carries no value,
/// so its 8 bytes are the last ones `r` has passed.
fn fixed64(r: &Reader<'_>, f: &Field, field: &'static str) -> Result<u64, ScanError> {
    f.expect(field, I64)?;
    let end = r.position();
    let bytes: [u8; 8] = r
        .bytes(end.saturating_sub(8), end)
        .try_into()
        .map_err(|_| ScanError::Truncated { offset: f.offset })?;
    Ok(u64::from_le_bytes(bytes))
}
