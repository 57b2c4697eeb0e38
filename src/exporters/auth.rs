//! The `Authorization` value of an output's `auth` block, shared by both
//! OTLP senders.
//!
//! [`Auth::authorization`] is called once per attempt: `basic` answers with
//! a value computed at build time, `oauth2` with the cached token (fetching
//! it first when there is none or it is due for refresh, see [`oauth2`]).
//! A token endpoint that cannot be reached or refuses us makes the attempt
//! [`Outcome::Retryable`] with reason `auth`: the data stays queued until
//! the identity provider is back.
//!
//! Invariants:
//! - every value handed out is marked sensitive (kept out of `Debug` and
//!   HPACK tables), and no error text carries a credential;
//! - after the backend answered 401 / `UNAUTHENTICATED` to a token,
//!   [`Auth::observe`] drops that token, so the next attempt asks for a new
//!   one. A refused token that came from the cache (it may have been
//!   revoked or rotated at the provider) costs one immediate retry with a
//!   token fetched for it; a refused token the provider has just issued is
//!   a configuration problem, and the batch is dropped as permanent.
//!
//! [`oauth2`]: super::oauth2

use std::sync::Arc;

use base64::Engine as _;
use http::HeaderValue;

use super::oauth2::{Token, TokenSource, Used};
use super::redact::{read_secret_file, sensitive_value};
use super::{ExportError, Outcome, Reason};
use crate::config::{AuthConfig, BasicAuthConfig, OutputConfig};

/// The credentials of one exporter.
#[derive(Debug, Clone, Default)]
pub(crate) enum Auth {
    /// No `auth` block.
    #[default]
    None,
    /// `Basic base64(user:password)`, computed once.
    Basic(HeaderValue),
    /// A client-credentials token source shared by all clones.
    OAuth2(Arc<TokenSource>),
}

/// What an attempt was sent with, for [`Auth::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented {
    /// Nothing or a static value.
    Static,
    /// An OAuth2 token, and whether it was fetched for this attempt.
    Token { used: Used, fetched: bool },
}

// === impl Auth ===

impl Auth {
    /// Builds the credentials of `output`; reads `password_file` and checks
    /// `client_secret_file` is readable. No network I/O.
    ///
    /// # Errors
    /// [`ExportError::ReadFile`] for an unreadable file, [`ExportError::Build`]
    /// for a value that cannot be a header, [`ExportError::Client`] when the
    /// token client cannot be made.
    pub(crate) fn build(output: &OutputConfig, destination: &str) -> Result<Self, ExportError> {
        match &output.auth {
            None => Ok(Auth::None),
            Some(AuthConfig::Basic(b)) => Ok(Auth::Basic(basic_value(b)?)),
            Some(AuthConfig::Oauth2(o)) => {
                Ok(Auth::OAuth2(Arc::new(TokenSource::build(o, destination)?)))
            }
        }
    }

    /// The `Authorization` value for the next attempt, if any.
    ///
    /// # Errors
    /// A retryable `auth` outcome when no token could be had.
    pub(crate) async fn authorization(&self) -> Result<Option<(HeaderValue, Presented)>, Outcome> {
        match self {
            Auth::None => Ok(None),
            Auth::Basic(v) => Ok(Some((v.clone(), Presented::Static))),
            Auth::OAuth2(source) => match source.token().await {
                Ok(Token {
                    value,
                    used,
                    fetched,
                }) => Ok(Some((value, Presented::Token { used, fetched }))),
                Err(detail) => Err(Outcome::Retryable {
                    after: None,
                    reason: Reason::Auth,
                    detail,
                }),
            },
        }
    }

    /// Runs an attempt with the `Authorization` value (if any) and tells
    /// the credentials how it ended; a cached token the backend refused is
    /// replaced and the attempt made once more (see the module doc). No
    /// attempt when no token could be had.
    pub(crate) async fn around<F>(
        &self,
        mut attempt: impl FnMut(Option<HeaderValue>) -> F,
    ) -> Outcome
    where
        F: Future<Output = Outcome>,
    {
        let mut retried = false;
        loop {
            let presented = match self.authorization().await {
                Ok(p) => p,
                Err(outcome) => return outcome,
            };
            let (value, presented) = presented.unzip();
            let outcome = attempt(value).await;
            let refused_cached = self.observe(presented, &outcome);
            if !refused_cached || retried {
                return outcome;
            }
            tracing::info!(
                "The backend refused a cached OAuth2 token; retrying once with a new one"
            );
            retried = true;
        }
    }

    /// Tells the credentials how an attempt ended: a 401 / `UNAUTHENTICATED`
    /// to a token invalidates it. True when that token came from the cache.
    pub(crate) fn observe(&self, presented: Option<Presented>, outcome: &Outcome) -> bool {
        let unauthorized =
            matches!(outcome, Outcome::Permanent { reason, .. } if reason.is_unauthenticated());
        match (unauthorized, self, presented) {
            (true, Auth::OAuth2(source), Some(Presented::Token { used, fetched })) => {
                source.invalidate(used);
                !fetched
            }
            _ => false,
        }
    }
}

/// `Basic base64(username:password)`, marked sensitive.
fn basic_value(b: &BasicAuthConfig) -> Result<HeaderValue, ExportError> {
    let password = match (&b.password, &b.password_file) {
        (Some(p), _) => p.expose().to_owned(),
        (None, Some(path)) => read_secret_file("auth.basic.password_file", path)?,
        (None, None) => {
            return Err(ExportError::Build {
                field: "auth.basic",
                reason: "password or password_file is required".to_owned(),
            });
        }
    };
    let pair = format!("{}:{password}", b.username);
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    sensitive_value("auth.basic", &format!("Basic {encoded}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::{OutputType, Secret};

    fn basic(password: &str) -> OutputConfig {
        let mut o = OutputConfig::of_kind(OutputType::OtlpHttp);
        o.auth = Some(AuthConfig::Basic(BasicAuthConfig {
            username: "user".into(),
            password: Some(Secret::new(password)),
            password_file: None,
        }));
        o
    }

    #[tokio::test]
    async fn basic_is_the_rfc_7617_value_and_sensitive() {
        let auth = Auth::build(&basic("pa ss"), "test").unwrap();
        let (v, presented) = auth.authorization().await.unwrap().unwrap();
        // base64("user:pa ss")
        assert_eq!(v.to_str().unwrap(), "Basic dXNlcjpwYSBzcw==");
        assert!(v.is_sensitive());
        assert_eq!(presented, Presented::Static);
        assert!(!format!("{auth:?}").contains("dXNlcjpwYSBzcw"), "{auth:?}");
    }

    #[test]
    fn password_file_is_read_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "filepw\n").unwrap();
        let mut o = basic("unused");
        if let Some(AuthConfig::Basic(b)) = &mut o.auth {
            b.password = None;
            b.password_file = Some(path.clone());
        }
        let Auth::Basic(v) = Auth::build(&o, "test").unwrap() else {
            panic!("basic expected")
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode("user:filepw");
        assert_eq!(v.to_str().unwrap(), format!("Basic {encoded}"));

        std::fs::remove_file(&path).unwrap();
        let err = Auth::build(&o, "test").unwrap_err();
        assert_eq!(err.kind(), "read_file");
        assert!(!format!("{err} {err:?}").contains("filepw"), "{err}");
    }
}
