//! Rewriting the resource of every top-level block of a request, leaving
//! every other byte as it is.
//!
//! Why this exists: the `resource` processor changes resource attributes
//! on data that is otherwise stored and forwarded untouched. Decoding whole
//! requests to change a few attributes would cost an allocation per record;
//! here only each block's `Resource` message (a few attributes) is decoded
//! and encoded again, and the records' bytes are copied as they are.
//!
//! The three requests have the same shape at the top: field 1 holds the
//! `Resource{Logs,Metrics,Spans}` blocks, and in each block field 1 is the
//! `Resource`. Repeated `resource` fields are merged as protobuf does (prost
//! decodes their concatenation), and the result is written once, first.

use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use super::ScanError;
use super::wire::{Reader, Value};

/// The `Resource{Logs,Metrics,Spans}` field of a request and the
/// `resource` field of a block: both 1.
const BLOCK_FIELD: u32 = 1;
const RESOURCE_FIELD: u32 = 1;

/// Why a request could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The framing is broken (not expected: requests are scanned first).
    #[error("malformed request: {0}")]
    Framing(#[from] ScanError),
    /// A block's `resource` is not a valid `Resource`.
    #[error("resource at byte {offset}: {source}")]
    Resource {
        /// Where the block starts.
        offset: usize,
        /// prost's error.
        source: prost::DecodeError,
    },
}

/// Calls `f` on the resource of every top-level block of `request` (a
/// block without one gets an empty resource) and returns the request with
/// the resources `f` left. Fields other than the blocks, and every field of
/// a block but its resource, are copied unchanged and in order.
///
/// # Errors
/// [`RewriteError`] for a request whose framing or resources do not decode.
pub fn rewrite_resources(
    request: &[u8],
    mut f: impl FnMut(&mut Resource),
) -> Result<Vec<u8>, RewriteError> {
    let mut out = Vec::with_capacity(request.len() + request.len() / 8);
    let mut top = Reader::new(request);
    let mut block_buf = Vec::new();
    let mut resource_bytes = Vec::new();
    while let Some(field) = top.next_field()? {
        let end = top.position();
        let (
            number,
            Value::Len {
                start,
                end: body_end,
            },
        ) = (field.number, field.value)
        else {
            out.extend_from_slice(top.bytes(field.offset, end));
            continue;
        };
        if number != BLOCK_FIELD {
            out.extend_from_slice(top.bytes(field.offset, end));
            continue;
        }
        block_buf.clear();
        resource_bytes.clear();
        let mut block = top.nested(start, body_end);
        let mut had_resource = false;
        loop {
            let before = block.position();
            let Some(inner) = block.next_field()? else {
                break;
            };
            match (inner.number, inner.value) {
                (RESOURCE_FIELD, Value::Len { start, end }) => {
                    had_resource = true;
                    resource_bytes.extend_from_slice(block.bytes(start, end));
                }
                _ => block_buf.extend_from_slice(block.bytes(before, block.position())),
            }
        }
        let mut resource = Resource::decode(resource_bytes.as_slice()).map_err(|source| {
            RewriteError::Resource {
                offset: field.offset,
                source,
            }
        })?;
        f(&mut resource);
        let resource_len = resource.encoded_len();
        let mut head = Vec::with_capacity(resource_len + 16);
        // A block without a resource stays without one unless `f` gave it
        // something.
        if had_resource || resource != Resource::default() {
            encode_key(RESOURCE_FIELD, WireType::LengthDelimited, &mut head);
            encode_varint(resource_len as u64, &mut head);
            resource.encode_raw(&mut head);
        }
        encode_key(BLOCK_FIELD, WireType::LengthDelimited, &mut out);
        encode_varint((head.len() + block_buf.len()) as u64, &mut out);
        out.extend_from_slice(&head);
        out.extend_from_slice(&block_buf);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..KeyValue::default()
        }
    }

    fn request() -> ExportLogsServiceRequest {
        let block = |ns: &str, resource: bool| ResourceLogs {
            resource: resource.then(|| Resource {
                attributes: vec![kv("k8s.namespace.name", ns)],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 7,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!("hello {ns}"))),
                    }),
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            schema_url: "https://opentelemetry.io/schemas/1.24.0".to_owned(),
        };
        ExportLogsServiceRequest {
            resource_logs: vec![block("a", true), block("b", false)],
        }
    }

    #[test]
    fn only_the_resources_change() {
        let before = request();
        let bytes = before.encode_to_vec();
        let out =
            rewrite_resources(&bytes, |r| r.attributes.push(kv("k8s.node.name", "n1"))).unwrap();
        let after = ExportLogsServiceRequest::decode(out.as_slice()).unwrap();
        let mut want = before;
        for block in &mut want.resource_logs {
            block
                .resource
                .get_or_insert_with(Resource::default)
                .attributes
                .push(kv("k8s.node.name", "n1"));
        }
        assert_eq!(after, want);
    }

    #[test]
    fn no_change_is_the_same_request() {
        let bytes = request().encode_to_vec();
        let out = rewrite_resources(&bytes, |_| {}).unwrap();
        assert_eq!(
            ExportLogsServiceRequest::decode(out.as_slice()).unwrap(),
            ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap()
        );
    }

    #[test]
    fn repeated_resource_fields_merge_like_protobuf() {
        // Two `resource` fields in one block: prost merges them.
        let first = Resource {
            attributes: vec![kv("a", "1")],
            ..Resource::default()
        }
        .encode_to_vec();
        let second = Resource {
            attributes: vec![kv("b", "2")],
            ..Resource::default()
        }
        .encode_to_vec();
        let mut block = Vec::new();
        for r in [&first, &second] {
            encode_key(1, WireType::LengthDelimited, &mut block);
            encode_varint(r.len() as u64, &mut block);
            block.extend_from_slice(r);
        }
        let mut request = Vec::new();
        encode_key(1, WireType::LengthDelimited, &mut request);
        encode_varint(block.len() as u64, &mut request);
        request.extend_from_slice(&block);
        let mut seen = Vec::new();
        rewrite_resources(&request, |r| {
            seen = r.attributes.iter().map(|a| a.key.clone()).collect();
        })
        .unwrap();
        assert_eq!(seen, ["a", "b"]);
    }

    #[test]
    fn broken_framing_is_an_error() {
        assert!(rewrite_resources(b"\x0a\x05\x01", |_| {}).is_err());
    }
}
