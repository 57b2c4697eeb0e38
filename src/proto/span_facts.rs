//! What tail sampling reads of each span of a traces request, at the wire
//! level: the trace ID, start and end, status code, and the attributes (of
//! the span and its resource) whose keys a policy names. Nothing is decoded
//! but those attributes' values, which the caller decodes.
//!
//! Path: request → resource spans (1) → resource (1) → attributes (1), and
//! → scope spans (2) → span (2) → trace_id (1), start (7), end (8),
//! attributes (9), status (15) → code (3). A field that occurs twice counts
//! its last occurrence, as prost merges.

use super::ScanError;
use super::wire::{I64, Reader, Value};

/// One span, as tail sampling reads it.
#[derive(Debug, Clone, Copy)]
pub struct SpanFacts<'s, 'a> {
    /// The trace ID's bytes (empty when absent).
    pub trace_id: &'a [u8],
    /// `start_time_unix_nano`.
    pub start_unix_nano: u64,
    /// `end_time_unix_nano`.
    pub end_unix_nano: u64,
    /// `status.code` (0, unset, when absent).
    pub status_code: u64,
    /// The resource's then the span's attributes with a wanted key: the key
    /// and its `AnyValue`'s encoding.
    pub attributes: &'s [(&'a str, &'a [u8])],
}

/// Calls `f` with every span of a traces request, in order. Attributes are
/// read only for keys in `keys` (none when it is empty).
///
/// # Errors
/// A [`ScanError`] for a framing problem in the levels walked.
pub fn for_each_span<'a>(
    buf: &'a [u8],
    keys: &[String],
    mut f: impl FnMut(&SpanFacts<'_, 'a>),
) -> Result<(), ScanError> {
    let top = Reader::new(buf);
    let mut attributes: Vec<(&'a str, &'a [u8])> = Vec::new();
    let mut resources = top.clone();
    while let Some(field) = resources.next_field()? {
        if field.number != 1 {
            continue;
        }
        let (start, end) = field.expect_len("resource_spans")?;
        let block = top.nested(start, end);
        attributes.clear();
        if !keys.is_empty() {
            for (s, e) in children(block.clone(), 1, "resource")? {
                key_values(&top, top.nested(s, e), 1, keys, &mut attributes)?;
            }
        }
        let of_resource = attributes.len();
        for (s, e) in children(block, 2, "scope_spans")? {
            for (s, e) in children(top.nested(s, e), 2, "spans")? {
                attributes.truncate(of_resource);
                let mut span = SpanFacts {
                    trace_id: &[],
                    start_unix_nano: 0,
                    end_unix_nano: 0,
                    status_code: 0,
                    attributes: &[],
                };
                let mut fields = top.nested(s, e);
                while let Some(field) = fields.next_field()? {
                    match (field.number, field.value) {
                        (1, Value::Len { start, end }) => span.trace_id = top.bytes(start, end),
                        (7 | 8, _) => {
                            field.expect("start/end_time_unix_nano", I64)?;
                            let at = fields.position();
                            let bytes = top.bytes(at.saturating_sub(8), at);
                            let v = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
                            if field.number == 7 {
                                span.start_unix_nano = v;
                            } else {
                                span.end_unix_nano = v;
                            }
                        }
                        (9, Value::Len { start, end }) if !keys.is_empty() => {
                            key_value(&top, top.nested(start, end), keys, &mut attributes)?;
                        }
                        (15, Value::Len { start, end }) => {
                            let mut status = top.nested(start, end);
                            while let Some(f) = status.next_field()? {
                                if let (3, Value::Varint(code)) = (f.number, f.value) {
                                    span.status_code = code;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                span.attributes = &attributes;
                f(&span);
            }
        }
    }
    Ok(())
}

/// The ranges of a message's length-delimited fields numbered `number`.
fn children(
    mut message: Reader<'_>,
    number: u32,
    name: &'static str,
) -> Result<Vec<(usize, usize)>, ScanError> {
    let mut out = Vec::new();
    while let Some(field) = message.next_field()? {
        if field.number == number {
            out.push(field.expect_len(name)?);
        }
    }
    Ok(out)
}

/// The wanted `KeyValue`s among a message's fields numbered `number`.
fn key_values<'a>(
    top: &Reader<'a>,
    mut message: Reader<'a>,
    number: u32,
    keys: &[String],
    out: &mut Vec<(&'a str, &'a [u8])>,
) -> Result<(), ScanError> {
    while let Some(field) = message.next_field()? {
        if field.number == number {
            let (s, e) = field.expect_len("attributes")?;
            key_value(top, top.nested(s, e), keys, out)?;
        }
    }
    Ok(())
}

/// One `KeyValue`, kept when its key is wanted.
fn key_value<'a>(
    top: &Reader<'a>,
    mut kv: Reader<'a>,
    keys: &[String],
    out: &mut Vec<(&'a str, &'a [u8])>,
) -> Result<(), ScanError> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    while let Some(field) = kv.next_field()? {
        match (field.number, field.value) {
            (1, Value::Len { start, end }) => key = top.bytes(start, end),
            (2, Value::Len { start, end }) => value = top.bytes(start, end),
            _ => {}
        }
    }
    if let Ok(key) = std::str::from_utf8(key)
        && keys.iter().any(|k| k == key)
    {
        out.push((key, value));
    }
    Ok(())
}
