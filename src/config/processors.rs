//! `pipelines[].processors`: what a pipeline does to its data between
//! routing and its queue, in the order listed (Collector names and fields
//! where they exist).
//!
//! - `resource` rewrites resource attributes at the wire level
//!   ([`crate::processors::resource`]);
//! - `tail_sampling` holds a traces pipeline's spans on disk per trace until
//!   its policies decide ([`TailSamplingConfig`]);
//! - `spanmetrics` counts every acknowledged span of a traces pipeline into
//!   RED metrics sent to a metrics pipeline ([`SpanMetricsConfig`]).

use serde::{Deserialize, Serialize};

use super::spanmetrics::SpanMetricsConfig;
use super::tail_sampling::TailSamplingConfig;
use super::{PipelineConfig, Problems};
use crate::signal::Signal;

/// One entry of `processors`: a map with one key, the processor's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProcessorConfig {
    /// The Collector's `resource` processor.
    Resource(ResourceProcessorConfig),
    /// The Collector's `tail_sampling` processor, durable.
    TailSampling(TailSamplingConfig),
    /// The Collector's `spanmetrics` connector, exactly once.
    #[serde(rename = "spanmetrics")]
    SpanMetrics(SpanMetricsConfig),
}

impl ProcessorConfig {
    /// The name as written in the configuration; also a metric label.
    pub const fn name(&self) -> &'static str {
        match self {
            ProcessorConfig::Resource(_) => "resource",
            ProcessorConfig::TailSampling(_) => "tail_sampling",
            ProcessorConfig::SpanMetrics(_) => "spanmetrics",
        }
    }
}

/// `resource`: actions on the resource attributes, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceProcessorConfig {
    /// The actions.
    pub attributes: Vec<ResourceAction>,
}

/// One action of a `resource` processor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceAction {
    /// The attribute.
    pub key: String,
    /// `insert`, `update`, `upsert` or `delete`.
    pub action: ActionKind,
    /// The value (`insert`, `update`, `upsert`): a string, integer, double
    /// or boolean; a string `${env:NAME}` is the environment variable `NAME`
    /// of the seedgate process, read when the pipeline is built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<AttributeValue>,
    /// Instead of `value`: the value of this other resource attribute (the
    /// action does nothing on a resource without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_attribute: Option<String>,
}

impl ResourceAction {
    /// An action on `key` with `value` (none for `delete`).
    pub fn new(key: &str, action: ActionKind, value: Option<AttributeValue>) -> Self {
        Self {
            key: key.to_owned(),
            action,
            value,
            from_attribute: None,
        }
    }
}

/// What a `resource` action does to `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Add it where it is missing.
    Insert,
    /// Change it where it exists.
    Update,
    /// Set it: insert or update.
    Upsert,
    /// Remove it.
    Delete,
}

/// A literal attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// `true` / `false`.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A string (possibly `${env:NAME}`).
    String(String),
}

/// Reads `${env:NAME}`; `None` for any other string.
pub fn env_reference(s: &str) -> Option<&str> {
    s.strip_prefix("${env:")?.strip_suffix('}')
}

/// The processors of one pipeline, on their own; `at` is the field path of
/// its `processors`.
pub(super) fn check(p: &mut Problems, at: &str, pipe: &PipelineConfig) {
    let traces_only = pipe.signals == [Signal::Traces];
    let mut sampling_at = None;
    for (i, proc) in pipe.processors.iter().enumerate() {
        let at = format!("{at}[{i}]");
        match proc {
            ProcessorConfig::Resource(r) => check_resource(p, &format!("{at}.resource"), r),
            ProcessorConfig::TailSampling(t) => {
                if sampling_at.replace(i).is_some() {
                    p.push(format!("{at}.tail_sampling"), "a pipeline has at most one tail_sampling");
                }
                super::tail_sampling::check(p, &format!("{at}.tail_sampling"), t);
            }
            ProcessorConfig::SpanMetrics(_) if sampling_at.is_some() => p.push(
                format!("{at}.spanmetrics"),
                "span metrics count every span before sampling: list spanmetrics before tail_sampling",
            ),
            ProcessorConfig::SpanMetrics(_) => {}
        }
        if !traces_only && !matches!(proc, ProcessorConfig::Resource(_)) {
            p.push(
                format!("{at}.{}", proc.name()),
                "works on traces: the pipeline's signals must be [traces]",
            );
        }
    }
    if !pipe.processors.is_empty() && pipe.loadbalancing.is_some() && sampling_at.is_some() {
        p.push(
            at.to_owned(),
            "tail_sampling and loadbalancing do not go together in one pipeline yet",
        );
    }
}

/// `receivers.processors`: only `resource` runs before routing (sampling
/// and span metrics belong to a traces pipeline).
pub(super) fn check_before_routing(p: &mut Problems, at: &str, list: &[ProcessorConfig]) {
    for (i, proc) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        match proc {
            ProcessorConfig::Resource(r) => check_resource(p, &format!("{at}.resource"), r),
            other => p.push(
                format!("{at}.{}", other.name()),
                "only resource runs before routing: put it in a traces pipeline's processors",
            ),
        }
    }
}

/// Checks that need every pipeline (a `spanmetrics` names its metrics
/// pipeline).
pub(super) fn check_across(p: &mut Problems, pipelines: &[PipelineConfig]) {
    for (i, pipe) in pipelines.iter().enumerate() {
        for (j, proc) in pipe.processors.iter().enumerate() {
            if let ProcessorConfig::SpanMetrics(s) = proc {
                super::spanmetrics::check(
                    p,
                    &format!("pipelines[{i}].processors[{j}].spanmetrics"),
                    s,
                    pipelines,
                );
            }
        }
    }
}

fn check_resource(p: &mut Problems, at: &str, r: &ResourceProcessorConfig) {
    if r.attributes.is_empty() {
        p.push(format!("{at}.attributes"), "must list at least one action");
    }
    for (i, a) in r.attributes.iter().enumerate() {
        let at = format!("{at}.attributes[{i}]");
        if a.key.is_empty() {
            p.push(format!("{at}.key"), "must not be empty");
        }
        match (a.action, &a.value, &a.from_attribute) {
            (ActionKind::Delete, None, None) => {}
            (ActionKind::Delete, _, _) => {
                p.push(at.clone(), "delete takes no value or from_attribute")
            }
            (_, Some(_), Some(_)) | (_, None, None) => p.push(
                at.clone(),
                format!(
                    "{} needs exactly one of value or from_attribute",
                    action_name(a.action)
                ),
            ),
            (_, Some(AttributeValue::String(s)), None) => {
                if let Some(name) = env_reference(s)
                    && std::env::var_os(name).is_none()
                {
                    p.push(
                        format!("{at}.value"),
                        format!("the environment variable {name} is not set"),
                    );
                }
            }
            (_, Some(_), None) | (_, None, Some(_)) => {}
        }
    }
}

const fn action_name(a: ActionKind) -> &'static str {
    match a {
        ActionKind::Insert => "insert",
        ActionKind::Update => "update",
        ActionKind::Upsert => "upsert",
        ActionKind::Delete => "delete",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{ConfigError, assert_problems, parse};
    use super::*;

    const NOOP: &str = "    output: { type: noop }\n";

    #[test]
    fn a_resource_processor_parses_with_typed_values() {
        let c = parse(
            "c.yaml",
            &format!(
                "pipelines:\n  - name: p\n{NOOP}    processors:\n      - resource:\n          attributes:\n            - {{ key: a, value: x, action: insert }}\n            - {{ key: b, value: 3, action: upsert }}\n            - {{ key: c, value: 1.5, action: update }}\n            - {{ key: d, value: true, action: upsert }}\n            - {{ key: e, from_attribute: a, action: insert }}\n            - {{ key: f, action: delete }}\n"
            ),
        )
        .unwrap();
        let ProcessorConfig::Resource(r) = &c.pipelines[0].processors[0] else {
            panic!("not a resource processor");
        };
        let values: Vec<_> = r.attributes.iter().map(|a| a.value.clone()).collect();
        assert_eq!(
            values,
            [
                Some(AttributeValue::String("x".to_owned())),
                Some(AttributeValue::Int(3)),
                Some(AttributeValue::Double(1.5)),
                Some(AttributeValue::Bool(true)),
                None,
                None,
            ]
        );
    }

    #[test]
    fn an_unknown_action_or_processor_is_a_parse_error_with_its_line() {
        for (yaml, word) in [
            (
                format!(
                    "pipelines:\n  - name: p\n{NOOP}    processors:\n      - resource:\n          attributes:\n            - {{ key: a, value: x, action: hash }}\n"
                ),
                "hash",
            ),
            (
                format!("pipelines:\n  - name: p\n{NOOP}    processors:\n      - batch: {{}}\n"),
                "batch",
            ),
        ] {
            match parse("c.yaml", &yaml).unwrap_err() {
                ConfigError::Parse { line, message, .. } => {
                    assert!(line.is_some(), "{message}");
                    assert!(message.contains(word), "{message}");
                }
                other => panic!("expected a parse error, got {other}"),
            }
        }
    }

    #[test]
    fn processor_mistakes_name_the_field() {
        assert_problems(
            &format!(
                "pipelines:\n  - name: p\n    signals: [logs]\n{NOOP}    processors:\n      - resource:\n          attributes:\n            - {{ key: '', action: delete }}\n            - {{ key: a, action: insert }}\n            - {{ key: b, value: 1, from_attribute: c, action: upsert }}\n            - {{ key: d, value: x, action: delete }}\n            - {{ key: e, value: '${{env:SEEDGATE_SURELY_UNSET}}', action: insert }}\n      - tail_sampling: {{ policies: [{{ name: all, type: always_sample }}] }}\n      - spanmetrics: {{ metrics_pipeline: m }}\n  - name: m\n    signals: [metrics]\n{NOOP}"
            ),
            &[
                "pipelines[0].processors[0].resource.attributes[0].key: must not be empty",
                "pipelines[0].processors[0].resource.attributes[1]: insert needs exactly one of value or from_attribute",
                "pipelines[0].processors[0].resource.attributes[2]: upsert needs exactly one of value or from_attribute",
                "pipelines[0].processors[0].resource.attributes[3]: delete takes no value or from_attribute",
                "pipelines[0].processors[0].resource.attributes[4].value: the environment variable SEEDGATE_SURELY_UNSET is not set",
                "pipelines[0].processors[1].tail_sampling: works on traces: the pipeline's signals must be [traces]",
                "pipelines[0].processors[2].spanmetrics: span metrics count every span before sampling: list spanmetrics before tail_sampling",
            ],
        );
        assert_problems(
            "receivers:\n  processors:\n    - tail_sampling: { policies: [{ name: all, type: always_sample }] }\n",
            &["receivers.processors[0].tail_sampling: only resource runs before routing"],
        );
    }
}
