//! The parts of a traces request that span metrics read, as prost messages
//! of their own: decoding these skips what span metrics never look at
//! (events, links, IDs) without allocating for it, and keeps a span's
//! attributes as raw bytes (zero-copy slices of the request), decoded only
//! when a configured dimension may be among them. Field numbers are those
//! of `opentelemetry.proto.trace.v1`.

use bytes::Bytes;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Status;

/// `ExportTraceServiceRequest`, as far as span metrics read it.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Request {
    /// `resource_spans`.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `ResourceSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ResourceSpans {
    /// `resource`: decoded whole (`service.name`, resource dimensions).
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// `scope_spans`.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

/// `ScopeSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ScopeSpans {
    /// `spans`.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

/// `Span`: name, kind, times, status, and the attributes undecoded.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Span {
    /// `name`.
    #[prost(string, tag = "5")]
    pub name: String,
    /// `kind` (a `SpanKind`).
    #[prost(int32, tag = "6")]
    pub kind: i32,
    /// `start_time_unix_nano`.
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// `end_time_unix_nano`.
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// `attributes`, each a `KeyValue` encoding.
    #[prost(bytes = "bytes", repeated, tag = "9")]
    pub attributes: Vec<Bytes>,
    /// `status`.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}
