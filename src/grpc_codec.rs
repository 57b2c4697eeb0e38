//! A tonic codec that moves raw bytes: gRPC framing (and its compression) is
//! tonic's job, but the message inside stays an opaque OTLP encoding.
//!
//! This is what lets the receiver hand the request bytes to the scanner
//! without a prost decode, and the exporter send concatenated queue entries
//! without a prost encode (DESIGN.md, "Scan, don't decode").

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Encodes and decodes [`Bytes`] as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// See [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// See [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

/// HTTP/2 flow-control window per stream. h2's default (64 KiB) lets one
/// 4 MiB export request in only after dozens of window updates, and caps a
/// whole connection of concurrent requests at 64 KiB in flight: on loopback
/// that alone held throughput to a fraction of what the CPU could do.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// HTTP/2 flow-control window per connection (many streams share it).
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// A client endpoint with seedgate's HTTP/2 settings.
pub fn tune_endpoint(ep: tonic::transport::Endpoint) -> tonic::transport::Endpoint {
    ep.initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .tcp_nodelay(true)
}

/// A server builder with seedgate's HTTP/2 settings.
pub fn tune_server(b: tonic::transport::Server) -> tonic::transport::Server {
    b.initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .tcp_nodelay(true)
}
