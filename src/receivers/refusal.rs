//! Why a receiver refused a request: one closed set for both protocols, so
//! that `seedgate_receiver_refused_requests_total{reason}` (and
//! `_refused_records_total`) counts the same thing whether the request came
//! over gRPC or HTTP. Each protocol maps a refusal to its own status in one
//! place (`grpc::status_of`, `http::status_of`).

use std::fmt;

use crate::ingest::IngestError;
use crate::proto::ScanError;

/// The reason label of a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// HTTP: a method other than POST.
    MethodNotAllowed,
    /// HTTP: a content type other than protobuf or JSON.
    UnsupportedMediaType,
    /// A `Content-Encoding` / `grpc-encoding` seedgate does not inflate.
    UnsupportedEncoding,
    /// A compressed body that does not inflate, or a gRPC message flagged
    /// compressed without an encoding.
    BadEncoding,
    /// Beyond `max_request_bytes`, before or after decompression.
    TooLarge,
    /// The body ended early or the connection failed while it was read.
    BodyRead,
    /// No room under `max_inflight_bytes` in time.
    MemoryLimit,
    /// The process is above the memory limiter's soft limit.
    MemoryLimiter,
    /// Not a valid OTLP request (framing, schema, JSON).
    Malformed,
    /// An `AnyValue` nested deeper than backends accept.
    ValueTooDeep,
    /// A string field that is not UTF-8.
    InvalidUtf8,
    /// A trace or span ID of the wrong length.
    InvalidIdLength,
    /// A processor refused the request.
    Processor,
    /// A hand-over batch from a leaving replica that cannot be stored.
    HandOver,
    /// A destination's queue is full (`when_full: block`).
    QueueFull,
    /// The storage is full (map or disk).
    StorageFull,
    /// The storage failed.
    StorageError,
    /// seedgate is shutting down.
    ShuttingDown,
}

impl RefusalReason {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::BadEncoding => "bad_encoding",
            Self::TooLarge => "too_large",
            Self::BodyRead => "body_read",
            Self::MemoryLimit => "memory_limit",
            Self::MemoryLimiter => "memory_limiter",
            Self::Malformed => "malformed",
            Self::ValueTooDeep => "value_too_deep",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidIdLength => "invalid_id_length",
            Self::Processor => "processor",
            Self::HandOver => "handover",
            Self::QueueFull => "queue_full",
            Self::StorageFull => "storage_full",
            Self::StorageError => "storage_error",
            Self::ShuttingDown => "shutting_down",
        }
    }

    /// The reason of an ingest refusal. What a decoder would refuse
    /// although the framing is fine gets its own label: a dashboard should
    /// tell a broken client from one sending values too deep for the
    /// backends.
    pub const fn of_ingest(e: &IngestError) -> Self {
        match e {
            IngestError::Malformed(ScanError::ValueTooDeep { .. }) => Self::ValueTooDeep,
            IngestError::Malformed(ScanError::InvalidUtf8 { .. }) => Self::InvalidUtf8,
            IngestError::Malformed(ScanError::InvalidIdLength { .. }) => Self::InvalidIdLength,
            IngestError::Malformed(_) => Self::Malformed,
            IngestError::Processor(_) => Self::Processor,
            IngestError::HandOver(_) => Self::HandOver,
            IngestError::QueueFull { .. } => Self::QueueFull,
            IngestError::StorageFull { .. } => Self::StorageFull,
            IngestError::Store(_) => Self::StorageError,
            IngestError::ShuttingDown => Self::ShuttingDown,
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RefusalReason as R;

    #[test]
    fn every_reason_has_a_label_of_its_own() {
        let all = [
            R::MethodNotAllowed,
            R::UnsupportedMediaType,
            R::UnsupportedEncoding,
            R::BadEncoding,
            R::TooLarge,
            R::BodyRead,
            R::MemoryLimit,
            R::MemoryLimiter,
            R::Malformed,
            R::ValueTooDeep,
            R::InvalidUtf8,
            R::InvalidIdLength,
            R::Processor,
            R::HandOver,
            R::QueueFull,
            R::StorageFull,
            R::StorageError,
            R::ShuttingDown,
        ];
        let labels: std::collections::HashSet<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), all.len());
        assert!(labels.iter().all(|l| {
            l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }));
    }
}
