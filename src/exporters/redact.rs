//! Keeping credentials out of what seedgate shows: secrets read from
//! files, header values marked sensitive (kept out of `Debug` and HPACK
//! tables), and transport errors without the endpoint URL (which may carry
//! user info). Shared by `auth`, `oauth2` and the HTTP sender, so that none
//! of them depends on another for it.

use std::error::Error as _;

use http::HeaderValue;

use super::ExportError;

/// A secret file's content without the trailing newline.
pub(crate) fn read_secret_file(
    field: &'static str,
    path: &std::path::Path,
) -> Result<String, ExportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExportError::ReadFile {
        field,
        path: path.to_owned(),
        source,
    })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// A header value marked sensitive; the error never shows the value.
pub(crate) fn sensitive_value(
    field: &'static str,
    value: &str,
) -> Result<HeaderValue, ExportError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ExportError::Build {
        field,
        reason: "the credential is not a valid header value".to_owned(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// The error and its causes on one line, without the URL (which may carry
/// user info) and never with headers (reqwest does not print them).
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<endpoint>");
    }
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
