//! An OAuth2 client-credentials token source (RFC 6749 §4.4), the part of
//! the Collector's `oauth2client` extension that an exporter needs.
//!
//! A token is fetched on first use, kept, and fetched again once
//! [`refresh_after`] of its `expires_in` has passed (80%, at most 30 s
//! early), so a batch never waits on a token that is about to run out.
//! Concurrent senders share one fetch: the first takes the flight lock, the
//! others wait on it and then find the new token in the cache (single
//! flight). A token without `expires_in` is kept until the backend refuses
//! it (401 / `UNAUTHENTICATED`), like golang.org/x/oauth2 does.
//!
//! Why no `oauth2` crate: the grant is one form POST and one JSON answer;
//! reqwest and serde are already here, and the crate would bring its own
//! HTTP client abstraction and error types for that.
//!
//! Invariants:
//! - the client secret is read from the config or its file for each fetch
//!   (a rotated file is picked up) and never appears in an error: the
//!   token endpoint's error text is reduced to its `error` and
//!   `error_description` fields, with the secret masked if echoed;
//! - a failed refresh keeps using the old token while it has not expired;
//! - [`TokenSource::invalidate`] only drops the token it was given, so a
//!   late 401 to an old token does not throw away a fresh one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::HeaderValue;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};

use super::redact::{error_chain, read_secret_file, sensitive_value};
use super::{ExportError, tls};
use crate::config::{ClientAuth, OAuth2Config, Secret};

/// The most bytes read from a token response.
const TOKEN_RESPONSE_LIMIT: usize = 64 * 1024;
/// The most a token is refreshed ahead of its expiry.
const MAX_REFRESH_LEAD: Duration = Duration::from_secs(30);

/// Which token an attempt carried (its generation in this source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Used(u64);

/// A token handed to one caller of [`TokenSource::token`].
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// `Bearer <token>`, sensitive.
    pub(crate) value: HeaderValue,
    pub(crate) used: Used,
    /// Fetched by this call, not taken from the cache (a refused fresh
    /// token is a configuration problem; a refused cached one may have been
    /// revoked and is worth one retry with a new one).
    pub(crate) fetched: bool,
}

/// One cached token.
#[derive(Debug, Clone)]
struct Cached {
    /// `Bearer <token>`, sensitive.
    value: HeaderValue,
    generation: u64,
    /// Fetch a new one from then on.
    refresh_at: Option<Instant>,
    /// Unusable from then on.
    expires_at: Option<Instant>,
}

#[derive(Clone)]
enum SecretSource {
    Inline(Secret),
    File(PathBuf),
}

/// Fetches and caches client-credentials tokens for one output.
pub(crate) struct TokenSource {
    client: reqwest::Client,
    url: reqwest::Url,
    client_id: String,
    secret: SecretSource,
    scope: String,
    params: BTreeMap<String, String>,
    client_auth: ClientAuth,
    cached: Mutex<Option<Cached>>,
    /// Held while a fetch runs: the single flight.
    flight: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// How long after issue a token with lifetime `expires_in` is refreshed:
/// at 80% of its life, but never more than 30 s before it expires.
pub(crate) fn refresh_after(expires_in: Duration) -> Duration {
    expires_in - (expires_in / 5).min(MAX_REFRESH_LEAD)
}

// === impl TokenSource ===

impl TokenSource {
    /// Builds the token client. No network I/O; checks that a
    /// `client_secret_file` is readable.
    ///
    /// # Errors
    /// An invalid `token_url`, unreadable TLS or secret files.
    pub(crate) fn build(cfg: &OAuth2Config, destination: &str) -> Result<Self, ExportError> {
        let url = reqwest::Url::parse(&cfg.token_url).map_err(|e| ExportError::Build {
            field: "auth.oauth2.token_url",
            reason: format!("{:?} is not a valid URL: {e}", cfg.token_url),
        })?;
        let secret = match (&cfg.client_secret, &cfg.client_secret_file) {
            (Some(s), _) => SecretSource::Inline(s.clone()),
            (None, Some(path)) => {
                read_secret_file("auth.oauth2.client_secret_file", path)?;
                SecretSource::File(path.clone())
            }
            (None, None) => {
                return Err(ExportError::Build {
                    field: "auth.oauth2",
                    reason: "client_secret or client_secret_file is required".to_owned(),
                });
            }
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("seedgate/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // The credentials go to the configured endpoint only.
            .redirect(reqwest::redirect::Policy::none());
        if tls::wants_tls(Some(url.scheme()), &cfg.tls)? {
            // Its TLS metrics carry the output's destination with `/oauth2`.
            builder = builder.tls_backend_preconfigured(tls::client_config(
                &cfg.tls,
                &format!("{destination}/oauth2"),
                tls::DefaultRoots::Platform,
                &[b"http/1.1"],
            )?);
        }
        let client = builder.build().map_err(|e| ExportError::Client {
            client: "oauth2",
            reason: error_chain(&e),
        })?;
        Ok(Self {
            client,
            url,
            client_id: cfg.client_id.clone(),
            secret,
            scope: cfg.scopes.join(" "),
            params: cfg.endpoint_params.clone(),
            client_auth: cfg.client_auth,
            cached: Mutex::new(None),
            flight: tokio::sync::Mutex::new(0),
        })
    }

    fn cached(&self) -> Option<Cached> {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current `Bearer` value, fetching a token first when there is
    /// none or it is due for refresh.
    ///
    /// # Errors
    /// Why no token could be had (free of secrets).
    pub(crate) async fn token(&self) -> Result<Token, String> {
        let fresh = |c: &Cached| c.refresh_at.is_none_or(|t| Instant::now() < t);
        let cached = |c: Cached| Token {
            value: c.value,
            used: Used(c.generation),
            fetched: false,
        };
        if let Some(c) = self.cached().filter(fresh) {
            return Ok(cached(c));
        }
        let mut generation = self.flight.lock().await;
        // Someone else may have fetched while we waited for the flight.
        let old = self.cached();
        if let Some(c) = old.clone().filter(fresh) {
            return Ok(cached(c));
        }
        let issued = Instant::now();
        match self.fetch().await {
            Ok((value, expires_in)) => {
                *generation += 1;
                let c = Cached {
                    value: value.clone(),
                    generation: *generation,
                    refresh_at: expires_in.map(|e| issued + refresh_after(e)),
                    expires_at: expires_in.map(|e| issued + e),
                };
                *self
                    .cached
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(c);
                Ok(Token {
                    value,
                    used: Used(*generation),
                    fetched: true,
                })
            }
            Err(e) => match old {
                // A failed refresh: the old token still works for a while.
                Some(c) if c.expires_at.is_some_and(|t| Instant::now() < t) => {
                    tracing::warn!(error = %e, "Refreshing the OAuth2 token failed; using the current one until it expires");
                    Ok(cached(c))
                }
                _ => Err(e),
            },
        }
    }

    /// Drops the cached token if it is still the one an attempt used (the
    /// backend refused it).
    pub(crate) fn invalidate(&self, used: Used) {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.as_ref().is_some_and(|c| c.generation == used.0) {
            tracing::info!(token_url = %self.url, "The backend refused the OAuth2 token; the next batch fetches a new one");
            *cached = None;
        }
    }

    /// The form body of a token request and, with `client_auth: basic`,
    /// the client's `Authorization` value.
    fn form(&self, secret: &str) -> Result<(String, Option<HeaderValue>), String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if !self.scope.is_empty() {
            form.append_pair("scope", &self.scope);
        }
        for (k, v) in &self.params {
            form.append_pair(k, v);
        }
        let basic = match self.client_auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: both parts form-encoded, then base64.
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(&self.client_id), enc(secret));
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                let value = sensitive_value("auth.oauth2", &format!("Basic {b64}"))
                    .map_err(|e| e.to_string())?;
                Some(value)
            }
            ClientAuth::Body => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", secret);
                None
            }
        };
        Ok((form.finish(), basic))
    }

    /// One token request: the `Bearer` value and the lifetime, if given.
    async fn fetch(&self) -> Result<(HeaderValue, Option<Duration>), String> {
        let secret = match &self.secret {
            SecretSource::Inline(s) => s.expose().to_owned(),
            SecretSource::File(path) => read_secret_file("auth.oauth2.client_secret_file", path)
                .map_err(|e| e.to_string())?,
        };
        let (body, basic) = self.form(&secret)?;
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        if let Some(value) = basic {
            request = request.header(AUTHORIZATION, value);
        }
        let mask = |text: String| {
            if secret.is_empty() {
                text
            } else {
                text.replace(&secret, "<redacted>")
            }
        };
        let mut response = request
            .body(body)
            .send()
            .await
            .map_err(|e| mask(format!("token request failed: {}", error_chain(&e))))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk[..chunk.len().min(TOKEN_RESPONSE_LIMIT - body.len())]);
            if body.len() >= TOKEN_RESPONSE_LIMIT {
                break;
            }
        }
        if !status.is_success() {
            return Err(mask(format!(
                "token endpoint answered HTTP {}{}",
                status.as_u16(),
                error_summary(&body)
            )));
        }
        let parsed = parse_token(&body).map_err(mask)?;
        let value =
            sensitive_value("auth.oauth2", &format!("Bearer {}", parsed.0)).map_err(|_| {
                "the token endpoint sent a token that is not a valid header value".to_owned()
            })?;
        Ok((value, parsed.1))
    }
}

/// `access_token` and `expires_in` of a successful token response.
fn parse_token(body: &[u8]) -> Result<(String, Option<Duration>), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the token response is not JSON: {e}"))?;
    let token = v
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the token response has no access_token")?;
    if let Some(kind) = v.get("token_type").and_then(serde_json::Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!(
            "token_type {kind:?} is not supported (bearer only)"
        ));
    }
    // Some providers send the number as a string.
    let expires_in = match v.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s > 0.0)
    .map(|s| Duration::from_secs_f64(s.min(1e9)));
    Ok((token.to_owned(), expires_in))
}

/// `: <error>: <error_description>` of an RFC 6749 §5.2 error answer,
/// shortened; empty when the body is not one.
fn error_summary(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let mut out = String::new();
    for field in ["error", "error_description"] {
        if let Some(s) = v.get(field).and_then(serde_json::Value::as_str) {
            out.push_str(": ");
            out.extend(s.chars().take(200));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::exporters::Reason;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A token endpoint: counts requests, keeps the last form body and
    /// `Authorization` header, answers `tok-<n>` with `expires_in`.
    #[derive(Clone, Default)]
    struct Idp {
        hits: Arc<AtomicU64>,
        last: Arc<std::sync::Mutex<(String, String)>>,
        expires_in: Option<u64>,
        refuse: bool,
    }

    async fn idp(idp: Idp) -> (String, Idp) {
        crate::tools::install_crypto_provider();
        let state = idp.clone();
        let app = axum::Router::new().fallback(move |headers: http::HeaderMap, body: String| {
            let s = state.clone();
            async move {
                let n = s.hits.fetch_add(1, Ordering::SeqCst) + 1;
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                *s.last.lock().unwrap() = (auth, body);
                // Long enough for concurrent callers to pile up.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if s.refuse {
                    return (
                        http::StatusCode::UNAUTHORIZED,
                        r#"{"error":"invalid_client","error_description":"bad s3cret"}"#.to_owned(),
                    );
                }
                let mut answer =
                    serde_json::json!({"access_token": format!("tok-{n}"), "token_type": "Bearer"});
                if let Some(e) = s.expires_in {
                    answer["expires_in"] = e.into();
                }
                (http::StatusCode::OK, answer.to_string())
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (format!("http://{addr}/token"), idp)
    }

    fn config(url: &str) -> OAuth2Config {
        OAuth2Config {
            token_url: url.to_owned(),
            client_id: "my client".into(),
            client_secret: Some(Secret::new("s3cret")),
            client_secret_file: None,
            scopes: vec!["logs.write".into(), "metrics.write".into()],
            endpoint_params: BTreeMap::from([("audience".into(), "otlp".into())]),
            client_auth: ClientAuth::Basic,
            timeout: Duration::from_secs(5),
            tls: crate::config::TlsConfig::default(),
        }
    }

    #[test]
    fn refresh_is_at_80_percent_and_at_most_30s_early() {
        assert_eq!(
            refresh_after(Duration::from_secs(2)),
            Duration::from_millis(1600)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(100)),
            Duration::from_secs(80)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3570)
        );
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_with_basic_client_auth() {
        let (url, idp) = idp(Idp::default()).await;
        let source = Arc::new(TokenSource::build(&config(&url), "test").unwrap());
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let s = source.clone();
                tokio::spawn(async move { s.token().await.unwrap().value })
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap().to_str().unwrap(), "Bearer tok-1");
        }
        assert_eq!(idp.hits.load(Ordering::SeqCst), 1, "single flight");
        let (auth, form) = idp.last.lock().unwrap().clone();
        let b64 = base64::engine::general_purpose::STANDARD.encode("my+client:s3cret");
        assert_eq!(auth, format!("Basic {b64}"));
        assert_eq!(
            form,
            "grant_type=client_credentials&scope=logs.write+metrics.write&audience=otlp"
        );
        assert!(!format!("{source:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn a_token_is_refreshed_before_it_expires() {
        let (url, idp) = idp(Idp {
            expires_in: Some(1),
            ..Idp::default()
        })
        .await;
        let mut cfg = config(&url);
        cfg.client_auth = ClientAuth::Body;
        let source = TokenSource::build(&cfg, "test").unwrap();
        let first = source.token().await.unwrap();
        let again = source.token().await.unwrap();
        assert!(first.fetched && !again.fetched);
        assert_eq!(first.value, again.value);
        assert_eq!(idp.hits.load(Ordering::SeqCst), 1);
        // Refresh at 800 ms of the 1 s lifetime.
        tokio::time::sleep(Duration::from_millis(850)).await;
        let second = source.token().await.unwrap();
        assert_eq!(second.value.to_str().unwrap(), "Bearer tok-2");
        assert_eq!(idp.hits.load(Ordering::SeqCst), 2);
        let (auth, form) = idp.last.lock().unwrap().clone();
        assert!(auth.is_empty(), "body client auth sends no header");
        assert!(
            form.ends_with("&client_id=my+client&client_secret=s3cret"),
            "{form}"
        );
    }

    #[tokio::test]
    async fn invalidation_drops_only_the_refused_token() {
        let (url, idp) = idp(Idp::default()).await;
        let source = TokenSource::build(&config(&url), "test").unwrap();
        let used1 = source.token().await.unwrap().used;
        source.invalidate(used1);
        let second = source.token().await.unwrap();
        let used2 = second.used;
        assert_eq!(second.value.to_str().unwrap(), "Bearer tok-2");
        assert_ne!(used1, used2);
        // A late 401 to the old token keeps the new one.
        source.invalidate(used1);
        assert_eq!(source.token().await.unwrap().used, used2);
        assert_eq!(idp.hits.load(Ordering::SeqCst), 2);
    }

    /// A backend that refuses the tokens in `revoked` (all of them when it
    /// holds `*`) with `refusal`, answers the rest with `otherwise`, and
    /// records every token it saw.
    struct Backend {
        revoked: Vec<&'static str>,
        refusal: Reason,
        otherwise: Outcome,
        seen: Vec<String>,
    }

    impl Backend {
        fn answer(&mut self, value: Option<http::HeaderValue>) -> Outcome {
            let token = value.unwrap().to_str().unwrap().to_owned();
            let refused = self.revoked.iter().any(|r| *r == "*" || token.ends_with(r));
            self.seen.push(token);
            if refused {
                Outcome::Permanent {
                    reason: self.refusal,
                    detail: String::new(),
                }
            } else {
                self.otherwise.clone()
            }
        }
    }

    use super::super::Outcome;

    #[tokio::test]
    async fn a_refused_cached_token_is_replaced_and_retried_once() {
        let (url, idp) = idp(Idp::default()).await;
        let mut o = crate::config::OutputConfig::of_kind(crate::config::OutputType::OtlpGrpc);
        o.auth = Some(crate::config::AuthConfig::Oauth2(Box::new(config(&url))));
        let auth = super::super::auth::Auth::build(&o, "test").unwrap();
        let accepted = Outcome::Accepted {
            rejected: 0,
            message: String::new(),
        };
        let mut backend = Backend {
            revoked: vec![],
            refusal: Reason::of_http(401),
            otherwise: Outcome::Permanent {
                reason: Reason::of_http(400),
                detail: String::new(),
            },
            seen: vec![],
        };
        // A 400 says nothing about the token.
        let got = auth.around(|v| std::future::ready(backend.answer(v))).await;
        assert!(
            matches!(got, Outcome::Permanent { reason, .. } if reason == Reason::of_http(400)),
            "{got:?}"
        );
        // The cached tok-1 was revoked: one retry with a new token passes.
        backend.revoked = vec!["tok-1"];
        backend.otherwise = accepted;
        let got = auth.around(|v| std::future::ready(backend.answer(v))).await;
        assert!(matches!(got, Outcome::Accepted { .. }), "{got:?}");
        // Every token refused: the cached one, then the fresh one, then the
        // batch is permanent (no third try).
        backend.revoked = vec!["*"];
        backend.refusal = Reason::Grpc(tonic::Code::Unauthenticated);
        let got = auth.around(|v| std::future::ready(backend.answer(v))).await;
        assert!(
            matches!(
                got,
                Outcome::Permanent {
                    reason: Reason::Grpc(tonic::Code::Unauthenticated),
                    ..
                }
            ),
            "{got:?}"
        );
        assert_eq!(
            backend.seen,
            [
                "Bearer tok-1",
                "Bearer tok-1",
                "Bearer tok-2",
                "Bearer tok-2",
                "Bearer tok-3"
            ]
        );
        // The refused fresh token is dropped too.
        let (v, _) = auth.authorization().await.unwrap().unwrap();
        assert_eq!(v.to_str().unwrap(), "Bearer tok-4");
        assert_eq!(idp.hits.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_refusing_endpoint_is_a_retryable_auth_outcome_without_the_secret() {
        let (url, _idp) = idp(Idp {
            refuse: true,
            ..Idp::default()
        })
        .await;
        let mut o = crate::config::OutputConfig::of_kind(crate::config::OutputType::OtlpHttp);
        o.auth = Some(crate::config::AuthConfig::Oauth2(Box::new(config(&url))));
        let auth = super::super::auth::Auth::build(&o, "test").unwrap();
        match auth.authorization().await {
            Err(Outcome::Retryable { reason, detail, .. }) => {
                assert_eq!(reason, "auth");
                assert!(detail.contains("HTTP 401: invalid_client"), "{detail}");
                assert!(!detail.contains("s3cret"), "{detail}");
            }
            other => panic!("expected a retryable auth outcome, got {other:?}"),
        }
    }

    #[test]
    fn token_responses_parse_leniently_and_strictly_where_it_matters() {
        let (t, e) = parse_token(br#"{"access_token":"a","expires_in":"60"}"#).unwrap();
        assert_eq!((t.as_str(), e), ("a", Some(Duration::from_secs(60))));
        assert_eq!(parse_token(br#"{"access_token":"a"}"#).unwrap().1, None);
        assert!(parse_token(br#"{"access_token":"a","token_type":"mac"}"#).is_err());
        assert!(parse_token(br#"{"token_type":"bearer"}"#).is_err());
    }
}
