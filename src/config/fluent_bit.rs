//! `output.fluent_bit`: how a `fluent_bit_http` output renders logs, the
//! way Fluent Bit's HTTP output (`out_http`) does for Kyma's log pipelines
//! with an `http` output.
//!
//! The records themselves are rendered by [`crate::proto::fluent_bit`]; this
//! is only what a user sets.

use serde::{Deserialize, Serialize};

use super::{OutputConfig, OutputType, Problems};

/// The body format: Fluent Bit's `format` values that carry JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FluentBitFormat {
    /// One JSON array of records (Kyma's default).
    #[default]
    Json,
    /// One JSON object per line (newline-delimited JSON).
    JsonLines,
    /// JSON objects one after the other, no separator.
    JsonStream,
}

impl FluentBitFormat {
    /// The value as Fluent Bit spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            FluentBitFormat::Json => "json",
            FluentBitFormat::JsonLines => "json_lines",
            FluentBitFormat::JsonStream => "json_stream",
        }
    }

    /// Every value, for messages.
    pub const ALL: [FluentBitFormat; 3] = [
        FluentBitFormat::Json,
        FluentBitFormat::JsonLines,
        FluentBitFormat::JsonStream,
    ];
}

/// The default `date_key`: Fluent Bit's `json_date_key` default.
pub const DEFAULT_DATE_KEY: &str = "date";

/// `output.fluent_bit` of a `fluent_bit_http` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FluentBitConfig {
    /// `json` (default), `json_lines` or `json_stream`.
    pub format: FluentBitFormat,
    /// Replace the dots in the keys of `kubernetes.labels` and
    /// `kubernetes.annotations` with underscores (Kyma's `dedot`).
    pub dedot: bool,
    /// Keep the pod's annotations under `kubernetes.annotations` (Kyma's
    /// `input.runtime.keepAnnotations`; off by default).
    pub keep_annotations: bool,
    /// Leave the pod's labels out of `kubernetes.labels` (Kyma's
    /// `input.runtime.dropLabels`; off by default).
    pub drop_labels: bool,
    /// The key of the record's time, in seconds as a double (Fluent Bit's
    /// `json_date_key` with `json_date_format double`).
    pub date_key: String,
}

impl Default for FluentBitConfig {
    fn default() -> Self {
        Self {
            format: FluentBitFormat::default(),
            dedot: false,
            keep_annotations: false,
            drop_labels: false,
            date_key: DEFAULT_DATE_KEY.to_owned(),
        }
    }
}

/// The `fluent_bit` block and the rules of a `fluent_bit_http` output that
/// the OTLP outputs do not have; `signals` are the pipeline's.
pub(super) fn check(
    p: &mut Problems,
    at: &str,
    o: &OutputConfig,
    signals: &[crate::signal::Signal],
) {
    let fluent = o.kind == OutputType::FluentBitHttp;
    if let Some(f) = &o.fluent_bit {
        if !fluent {
            p.push(
                format!("{at}.fluent_bit"),
                format!(
                    "is only used by type fluent_bit_http, not {}",
                    o.kind.as_str()
                ),
            );
        }
        if f.date_key.is_empty() {
            p.push(format!("{at}.fluent_bit.date_key"), "must not be empty");
        }
    }
    if !fluent {
        return;
    }
    if let Some(s) = signals.iter().find(|s| **s != crate::signal::Signal::Logs) {
        p.push(
            at.to_owned(),
            format!("type fluent_bit_http sends logs only: remove {s} from the pipeline's signals"),
        );
    }
    if o.auth
        .as_ref()
        .is_some_and(|a| !matches!(a, super::AuthConfig::Basic(_)))
    {
        p.push(
            format!("{at}.auth"),
            "type fluent_bit_http takes basic authentication only (Fluent Bit's http_user/http_passwd)",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{OutputType, assert_problems, parse};

    #[test]
    fn a_fluent_bit_http_output_parses_with_its_defaults() {
        let c = parse(
            "c.yaml",
            "pipelines:\n  - name: fb\n    signals: [logs]\n    output:\n      type: fluent_bit_http\n      endpoint: https://logs.example:9880\n",
        )
        .unwrap();
        let o = &c.pipelines[0].output;
        assert_eq!(o.kind, OutputType::FluentBitHttp);
        assert_eq!(o.fluent_bit, None, "absent: the defaults");
        let c = parse(
            "c.yaml",
            "pipelines:\n  - name: fb\n    signals: [logs]\n    output:\n      type: fluent_bit_http\n      endpoint: http://logs:9880\n      path: /ingest\n      fluent_bit: { format: json_lines, dedot: true }\n",
        )
        .unwrap();
        let f = c.pipelines[0].output.fluent_bit.clone().unwrap();
        assert_eq!(f.format, super::FluentBitFormat::JsonLines);
        assert!(f.dedot);
        assert_eq!(f.date_key, super::DEFAULT_DATE_KEY);
    }

    #[test]
    fn fluent_bit_mistakes_name_file_line_and_field() {
        assert_problems(
            "pipelines:\n  - name: fb\n    signals: [logs, traces]\n    output:\n      type: fluent_bit_http\n      fluent_bit: { date_key: '' }\n      auth: { oauth2: { token_url: 'https://idp/token', client_id: c, client_secret: s } }\n",
            &[
                "c.yaml:4: pipelines[0].output.endpoint: is required for type fluent_bit_http",
                "pipelines[0].output.fluent_bit.date_key: must not be empty",
                "pipelines[0].output: type fluent_bit_http sends logs only: remove traces from the pipeline's signals",
                "pipelines[0].output.auth: type fluent_bit_http takes basic authentication only",
            ],
        );
        assert_problems(
            "pipelines:\n  - name: o\n    signals: [logs]\n    output:\n      type: otlp_http\n      endpoint: http://x:4318\n      fluent_bit: { dedot: true }\n",
            &[
                "pipelines[0].output.fluent_bit: is only used by type fluent_bit_http, not otlp_http",
            ],
        );
    }
}
