//! Why an export attempt failed: a closed set, so that every rule that
//! looks at a failure (back-pressure for the adaptive limit, whether a
//! refusal may be about one record, the auth retry) is a `match` the
//! compiler checks, and the metric label is always one of the names in the
//! [module doc](super).

use std::fmt;

use tonic::Code;

/// The reason of an [`Outcome::Retryable`](super::Outcome::Retryable) or
/// [`Outcome::Permanent`](super::Outcome::Permanent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// An OTLP/HTTP status: 429, 502, 503, 504 (retryable) and 400, 401,
    /// 403, 404, 405, 413, 415, 500 (permanent) keep their number; other
    /// statuses are [`Reason::Http4xx`], [`Reason::Http5xx`] or
    /// [`Reason::HttpOther`].
    Http(HttpStatus),
    /// A 4xx status without a label of its own.
    Http4xx,
    /// A 5xx status without a label of its own.
    Http5xx,
    /// A status outside 400..=599 that is not a success.
    HttpOther,
    /// A gRPC status from the backend.
    Grpc(Code),
    /// The connection could not be made or was lost (refused, reset, DNS).
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The attempt took longer than the output's `timeout`.
    Timeout,
    /// No OAuth2 token could be had, or a credential cannot be metadata.
    Auth,
    /// Any other I/O failure between us and the backend.
    Transport,
    /// The request could not be compressed or rendered.
    Encode,
    /// Writing to stdout failed.
    Io,
}

/// The HTTP statuses with a label of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpStatus {
    /// 400 Bad Request.
    BadRequest,
    /// 401 Unauthorized.
    Unauthorized,
    /// 403 Forbidden.
    Forbidden,
    /// 404 Not Found.
    NotFound,
    /// 405 Method Not Allowed.
    MethodNotAllowed,
    /// 413 Content Too Large.
    TooLarge,
    /// 415 Unsupported Media Type.
    UnsupportedMediaType,
    /// 429 Too Many Requests.
    TooManyRequests,
    /// 500 Internal Server Error.
    InternalServerError,
    /// 502 Bad Gateway.
    BadGateway,
    /// 503 Service Unavailable.
    ServiceUnavailable,
    /// 504 Gateway Timeout.
    GatewayTimeout,
}

impl Reason {
    /// The reason of a non-success HTTP status.
    pub const fn of_http(status: u16) -> Self {
        use HttpStatus as S;
        let own = match status {
            400 => Some(S::BadRequest),
            401 => Some(S::Unauthorized),
            403 => Some(S::Forbidden),
            404 => Some(S::NotFound),
            405 => Some(S::MethodNotAllowed),
            413 => Some(S::TooLarge),
            415 => Some(S::UnsupportedMediaType),
            429 => Some(S::TooManyRequests),
            500 => Some(S::InternalServerError),
            502 => Some(S::BadGateway),
            503 => Some(S::ServiceUnavailable),
            504 => Some(S::GatewayTimeout),
            _ => None,
        };
        match (own, status / 100) {
            (Some(s), _) => Self::Http(s),
            (None, 4) => Self::Http4xx,
            (None, 5) => Self::Http5xx,
            (None, _) => Self::HttpOther,
        }
    }

    /// Whether the OTLP/HTTP specification says to retry this status.
    pub const fn http_retryable(self) -> bool {
        use HttpStatus as S;
        matches!(
            self,
            Self::Http(
                S::TooManyRequests | S::BadGateway | S::ServiceUnavailable | S::GatewayTimeout
            )
        )
    }

    /// The backend is overloaded or too slow: the adaptive concurrency
    /// limit should come down.
    pub const fn is_back_pressure(self) -> bool {
        self.http_retryable()
            || matches!(
                self,
                Self::Grpc(Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded)
                    | Self::Timeout
                    | Self::Connect
            )
    }

    /// Whether a permanent refusal for this reason may be about something
    /// in the request's *content* (one bad record, a request too large), so
    /// that a part of it could be accepted: the delivery loop then splits a
    /// batch of several entries to find the ones refused on their own.
    ///
    /// Refusals about the request's envelope (authentication, permission,
    /// path, method, media type, an unimplemented service) and seedgate's
    /// own permanent errors would refuse every part alike: splitting would
    /// only multiply the requests.
    pub const fn about_content(self) -> bool {
        use HttpStatus as S;
        matches!(
            self,
            Self::Http(S::BadRequest | S::TooLarge | S::InternalServerError)
                | Self::Http4xx
                | Self::Http5xx
                | Self::Grpc(
                    Code::InvalidArgument
                        | Code::ResourceExhausted
                        | Code::FailedPrecondition
                        | Code::Internal
                        | Code::Unknown
                )
        )
    }

    /// The backend refused the credential (a 401 or `UNAUTHENTICATED`).
    pub const fn is_unauthenticated(self) -> bool {
        matches!(
            self,
            Self::Http(HttpStatus::Unauthorized) | Self::Grpc(Code::Unauthenticated)
        )
    }

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        use HttpStatus as S;
        match self {
            Self::Http(s) => match s {
                S::BadRequest => "http_400",
                S::Unauthorized => "http_401",
                S::Forbidden => "http_403",
                S::NotFound => "http_404",
                S::MethodNotAllowed => "http_405",
                S::TooLarge => "http_413",
                S::UnsupportedMediaType => "http_415",
                S::TooManyRequests => "http_429",
                S::InternalServerError => "http_500",
                S::BadGateway => "http_502",
                S::ServiceUnavailable => "http_503",
                S::GatewayTimeout => "http_504",
            },
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::HttpOther => "http_other",
            Self::Grpc(code) => grpc_label(code),
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Auth => "auth",
            Self::Transport => "transport",
            Self::Encode => "encode",
            Self::Io => "io",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a label, so tests and logs read naturally.
impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The label of a gRPC code.
const fn grpc_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "grpc_ok",
        Code::Cancelled => "grpc_cancelled",
        Code::Unknown => "grpc_unknown",
        Code::InvalidArgument => "grpc_invalid_argument",
        Code::DeadlineExceeded => "grpc_deadline_exceeded",
        Code::NotFound => "grpc_not_found",
        Code::AlreadyExists => "grpc_already_exists",
        Code::PermissionDenied => "grpc_permission_denied",
        Code::ResourceExhausted => "grpc_resource_exhausted",
        Code::FailedPrecondition => "grpc_failed_precondition",
        Code::Aborted => "grpc_aborted",
        Code::OutOfRange => "grpc_out_of_range",
        Code::Unimplemented => "grpc_unimplemented",
        Code::Internal => "grpc_internal",
        Code::Unavailable => "grpc_unavailable",
        Code::DataLoss => "grpc_data_loss",
        Code::Unauthenticated => "grpc_unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http_status_has_the_label_of_the_module_doc() {
        for (status, label) in [
            (400, "http_400"),
            (401, "http_401"),
            (402, "http_4xx"),
            (403, "http_403"),
            (404, "http_404"),
            (405, "http_405"),
            (409, "http_4xx"),
            (413, "http_413"),
            (415, "http_415"),
            (429, "http_429"),
            (500, "http_500"),
            (501, "http_5xx"),
            (502, "http_502"),
            (503, "http_503"),
            (504, "http_504"),
            (599, "http_5xx"),
            (302, "http_other"),
        ] {
            assert_eq!(Reason::of_http(status).as_str(), label, "{status}");
        }
        let retryable: Vec<u16> = (300..600)
            .filter(|s| Reason::of_http(*s).http_retryable())
            .collect();
        assert_eq!(retryable, [429, 502, 503, 504]);
    }

    #[test]
    fn back_pressure_and_content_refusals_are_the_documented_ones() {
        let back: Vec<&str> = [
            Reason::of_http(429),
            Reason::of_http(500),
            Reason::of_http(503),
            Reason::Grpc(Code::Unavailable),
            Reason::Grpc(Code::ResourceExhausted),
            Reason::Grpc(Code::DeadlineExceeded),
            Reason::Grpc(Code::Aborted),
            Reason::Timeout,
            Reason::Connect,
            Reason::Tls,
            Reason::Auth,
        ]
        .into_iter()
        .filter(|r| r.is_back_pressure())
        .map(Reason::as_str)
        .collect();
        assert_eq!(
            back,
            [
                "http_429",
                "http_503",
                "grpc_unavailable",
                "grpc_resource_exhausted",
                "grpc_deadline_exceeded",
                "timeout",
                "connect"
            ]
        );
        assert!(Reason::of_http(413).about_content());
        assert!(Reason::Grpc(Code::InvalidArgument).about_content());
        assert!(!Reason::of_http(401).about_content());
        assert!(!Reason::of_http(415).about_content());
        assert!(!Reason::Grpc(Code::Unimplemented).about_content());
        assert!(!Reason::Encode.about_content());
        assert!(Reason::of_http(401).is_unauthenticated());
        assert!(Reason::Grpc(Code::Unauthenticated).is_unauthenticated());
        assert!(!Reason::Auth.is_unauthenticated());
    }
}
