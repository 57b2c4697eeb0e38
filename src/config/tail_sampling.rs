//! `processors[].tail_sampling`: the OpenTelemetry Collector's
//! `tail_sampling` processor, with its names and fields, held durably.
//!
//! A policy is written the Collector's way, `{ name, type, <block named
//! after the type> }`; [`PolicyConfig::rule`] turns it into a [`PolicyRule`]
//! that names exactly one block, so the engine
//! ([`crate::processors::tail_sampling`]) never sees a half-written policy.
//! The Collector policies seedgate does not implement (`trace_state`,
//! `boolean_attribute`, `ottl_condition`, `drop`, `composite`,
//! `bytes_limiting`, …) are refused by the check with the list of those it
//! has, not silently ignored.

use std::collections::HashSet;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{Problem, Problems};

/// Default `decision_wait`: the Collector's.
pub const DEFAULT_DECISION_WAIT: Duration = Duration::from_secs(30);
/// Default `num_traces`: the Collector's.
pub const DEFAULT_NUM_TRACES: u64 = 50_000;
/// Default `max_pending_bytes` (seedgate's own).
pub const DEFAULT_MAX_PENDING_BYTES: u64 = 256 * 1024 * 1024;
/// Default `decision_cache.sampled_cache_size` (the Collector's is 0, off:
/// here late spans of a kept trace should follow it).
pub const DEFAULT_SAMPLED_CACHE_SIZE: u64 = 100_000;
/// Default `decision_cache.non_sampled_cache_size` (the Collector's is 0).
pub const DEFAULT_NON_SAMPLED_CACHE_SIZE: u64 = 100_000;

/// `tail_sampling`: spans of a traces pipeline wait per trace until the
/// policies decide whether the whole trace is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSamplingConfig {
    /// How long after its first span a trace is decided (default 30s): the
    /// time its other spans have to arrive.
    #[serde(with = "humantime_serde")]
    pub decision_wait: Duration,
    /// At most this many traces are pending (default 50000); beyond it the
    /// oldest are decided early, with the spans they have.
    pub num_traces: u64,
    /// At most this many bytes of pending spans (default 256MiB; seedgate's
    /// own: pending spans are on disk, the count alone does not bound them);
    /// beyond it the oldest traces are decided early.
    pub max_pending_bytes: ByteSize,
    /// How many decided trace IDs are remembered, so late spans follow
    /// their trace's decision.
    pub decision_cache: DecisionCacheConfig,
    /// The policies (required, at least one); see [`PolicyConfig`] for how
    /// their outcomes combine.
    pub policies: Vec<PolicyConfig>,
    /// Accepted so a Collector configuration parses; unused (the Collector's
    /// hint for sizing its maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_new_traces_per_sec: Option<u64>,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        Self {
            decision_wait: DEFAULT_DECISION_WAIT,
            num_traces: DEFAULT_NUM_TRACES,
            max_pending_bytes: ByteSize(DEFAULT_MAX_PENDING_BYTES),
            decision_cache: DecisionCacheConfig::default(),
            policies: Vec::new(),
            expected_new_traces_per_sec: None,
        }
    }
}

impl TailSamplingConfig {
    /// Every problem of this block on its own, with field paths under
    /// `tail_sampling` (for callers outside the configuration file, such as
    /// the engine's constructor).
    ///
    /// # Errors
    /// The list of problems.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut p = Problems::default();
        check(&mut p, "tail_sampling", self);
        p.finish()
    }
}

/// `decision_cache` (Collector names). 0 remembers nothing: a late span then
/// starts a new pending trace that is decided on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCacheConfig {
    /// Trace IDs of kept traces remembered (default 100000).
    pub sampled_cache_size: u64,
    /// Trace IDs of dropped traces remembered (default 100000).
    pub non_sampled_cache_size: u64,
}

impl Default for DecisionCacheConfig {
    fn default() -> Self {
        Self {
            sampled_cache_size: DEFAULT_SAMPLED_CACHE_SIZE,
            non_sampled_cache_size: DEFAULT_NON_SAMPLED_CACHE_SIZE,
        }
    }
}

/// One policy: `{ name, type, <block named after the type> }`.
///
/// Each policy yields sampled, not sampled, or (with `invert_match`)
/// inverted sampled / inverted not sampled; a trace is dropped if any policy
/// says inverted not sampled, else kept if any says sampled or inverted
/// sampled, else dropped (the Collector's rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique among its siblings; a metric label.
    pub name: String,
    /// Which block applies.
    #[serde(rename = "type")]
    pub kind: PolicyType,
    /// The block of type `probabilistic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilistic: Option<ProbabilisticConfig>,
    /// The block of type `status_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<StatusCodeConfig>,
    /// The block of type `latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyConfig>,
    /// The block of type `string_attribute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_attribute: Option<StringAttributeConfig>,
    /// The block of type `numeric_attribute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric_attribute: Option<NumericAttributeConfig>,
    /// The block of type `span_count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_count: Option<SpanCountConfig>,
    /// The block of type `rate_limiting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiting: Option<RateLimitingConfig>,
    /// The block of type `and`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and: Option<AndConfig>,
}

/// A policy's `type`.
///
/// An unknown type is not a serde error: it parses as
/// [`PolicyType::Unknown`] and [`TailSamplingConfig::validate`] refuses it with its field path and
/// the list of known types, clearer than serde's "unknown variant" for the
/// Collector types seedgate does not implement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum PolicyType {
    /// Keep every trace.
    AlwaysSample,
    /// A share of traces, by trace ID.
    Probabilistic,
    /// Traces with a span of one of the status codes.
    StatusCode,
    /// Traces by duration.
    Latency,
    /// Traces by a string attribute.
    StringAttribute,
    /// Traces by a numeric attribute.
    NumericAttribute,
    /// Traces by their number of spans.
    SpanCount,
    /// Traces up to a number of spans per second.
    RateLimiting,
    /// Traces every sub-policy keeps.
    And,
    /// Anything else, as written.
    Unknown(String),
}

impl PolicyType {
    /// Every known type, for messages.
    pub const KNOWN: [PolicyType; 9] = [
        PolicyType::AlwaysSample,
        PolicyType::Probabilistic,
        PolicyType::StatusCode,
        PolicyType::Latency,
        PolicyType::StringAttribute,
        PolicyType::NumericAttribute,
        PolicyType::SpanCount,
        PolicyType::RateLimiting,
        PolicyType::And,
    ];

    /// The type as written in the configuration.
    pub fn as_str(&self) -> &str {
        match self {
            PolicyType::AlwaysSample => "always_sample",
            PolicyType::Probabilistic => "probabilistic",
            PolicyType::StatusCode => "status_code",
            PolicyType::Latency => "latency",
            PolicyType::StringAttribute => "string_attribute",
            PolicyType::NumericAttribute => "numeric_attribute",
            PolicyType::SpanCount => "span_count",
            PolicyType::RateLimiting => "rate_limiting",
            PolicyType::And => "and",
            PolicyType::Unknown(s) => s,
        }
    }
}

impl From<String> for PolicyType {
    fn from(s: String) -> Self {
        PolicyType::KNOWN
            .into_iter()
            .find(|t| t.as_str() == s)
            .unwrap_or(PolicyType::Unknown(s))
    }
}

impl From<PolicyType> for String {
    fn from(t: PolicyType) -> Self {
        t.as_str().to_owned()
    }
}

/// `probabilistic`: keeps `sampling_percentage` percent of traces, decided
/// by a hash of `hash_salt` and the trace ID, so every replica and every
/// restart decide a trace alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticConfig {
    /// 0 to 100 (required).
    pub sampling_percentage: f64,
    /// Mixed into the hash (default empty: the Collector's
    /// `default-hash-seed`); the same salt everywhere decides alike.
    #[serde(default)]
    pub hash_salt: String,
}

/// `status_code`: keeps traces with a span whose status is listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCodeConfig {
    /// `ERROR`, `OK`, `UNSET` (required, at least one).
    pub status_codes: Vec<StatusCodeName>,
}

/// A span status code as the Collector writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusCodeName {
    /// `ERROR`.
    Error,
    /// `OK`.
    Ok,
    /// `UNSET` (also a span without a status).
    Unset,
}

/// `latency`: keeps traces by duration, from the earliest span start to the
/// latest span end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Without `upper_threshold_ms`: kept when the duration is at least this
    /// (required). With it: kept when longer than this.
    pub threshold_ms: u64,
    /// Kept only up to and including this (default: no upper bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_threshold_ms: Option<u64>,
}

/// `string_attribute`: keeps traces with a resource or span attribute
/// `key` whose string value is one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringAttributeConfig {
    /// The attribute (required).
    pub key: String,
    /// Exact values, or regular expressions (required, at least one).
    pub values: Vec<String>,
    /// `values` are regular expressions, matched anywhere in the value
    /// like the Collector's Go `MatchString` (anchor with `^…$`; default
    /// false).
    #[serde(default)]
    pub enabled_regex_matching: bool,
    /// Accepted so a Collector configuration parses; unused (the Collector
    /// caches regex results; seedgate matches with one compiled set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_size: Option<u64>,
    /// A match drops the trace whatever the other policies say, no match
    /// keeps it (default false).
    #[serde(default)]
    pub invert_match: bool,
}

/// `numeric_attribute`: keeps traces with a resource or span attribute
/// `key` whose integer or double value is within the bounds, inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributeConfig {
    /// The attribute (required).
    pub key: String,
    /// The lower bound (default: none; at least one bound is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_value: Option<i64>,
    /// The upper bound (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<i64>,
    /// A match drops the trace whatever the other policies say, no match
    /// keeps it (default false).
    #[serde(default)]
    pub invert_match: bool,
}

/// `span_count`: keeps traces by their number of spans, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCountConfig {
    /// At least this many spans (required).
    pub min_spans: u64,
    /// At most this many (default: no upper bound; the Collector's 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spans: Option<u64>,
}

/// `rate_limiting`: keeps traces while the spans kept by this policy in the
/// current second, this trace's included, stay within the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Spans per second (required, more than 0).
    pub spans_per_second: u64,
}

/// `and`: keeps a trace only if every sub-policy keeps it (an inverted
/// sampled counts as kept); an `and` cannot hold another `and`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndConfig {
    /// The sub-policies, evaluated in order until one does not keep the
    /// trace (required, at least one).
    pub and_sub_policy: Vec<PolicyConfig>,
}

/// A policy's type with its block: what [`PolicyConfig::rule`] reads from
/// the Collector's `{ type, <block> }` shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PolicyRule<'a> {
    /// `always_sample` (no block).
    AlwaysSample,
    /// `probabilistic`.
    Probabilistic(&'a ProbabilisticConfig),
    /// `status_code`.
    StatusCode(&'a StatusCodeConfig),
    /// `latency`.
    Latency(&'a LatencyConfig),
    /// `string_attribute`.
    StringAttribute(&'a StringAttributeConfig),
    /// `numeric_attribute`.
    NumericAttribute(&'a NumericAttributeConfig),
    /// `span_count`.
    SpanCount(&'a SpanCountConfig),
    /// `rate_limiting`.
    RateLimiting(&'a RateLimitingConfig),
    /// `and`.
    And(&'a AndConfig),
}

impl PolicyConfig {
    /// The block its `type` names; `None` for an unknown type or a missing
    /// block (both problems [`TailSamplingConfig::validate`] reports).
    pub fn rule(&self) -> Option<PolicyRule<'_>> {
        Some(match &self.kind {
            PolicyType::AlwaysSample => PolicyRule::AlwaysSample,
            PolicyType::Probabilistic => PolicyRule::Probabilistic(self.probabilistic.as_ref()?),
            PolicyType::StatusCode => PolicyRule::StatusCode(self.status_code.as_ref()?),
            PolicyType::Latency => PolicyRule::Latency(self.latency.as_ref()?),
            PolicyType::StringAttribute => {
                PolicyRule::StringAttribute(self.string_attribute.as_ref()?)
            }
            PolicyType::NumericAttribute => {
                PolicyRule::NumericAttribute(self.numeric_attribute.as_ref()?)
            }
            PolicyType::SpanCount => PolicyRule::SpanCount(self.span_count.as_ref()?),
            PolicyType::RateLimiting => PolicyRule::RateLimiting(self.rate_limiting.as_ref()?),
            PolicyType::And => PolicyRule::And(self.and.as_ref()?),
            PolicyType::Unknown(_) => return None,
        })
    }

    /// Which blocks are written, by the type they belong to.
    fn blocks(&self) -> [(PolicyType, bool); 8] {
        [
            (PolicyType::Probabilistic, self.probabilistic.is_some()),
            (PolicyType::StatusCode, self.status_code.is_some()),
            (PolicyType::Latency, self.latency.is_some()),
            (PolicyType::StringAttribute, self.string_attribute.is_some()),
            (
                PolicyType::NumericAttribute,
                self.numeric_attribute.is_some(),
            ),
            (PolicyType::SpanCount, self.span_count.is_some()),
            (PolicyType::RateLimiting, self.rate_limiting.is_some()),
            (PolicyType::And, self.and.is_some()),
        ]
    }
}

/// Checks one `tail_sampling` block at `at`.
pub(super) fn check(p: &mut Problems, at: &str, c: &TailSamplingConfig) {
    if c.decision_wait.is_zero() {
        p.push(format!("{at}.decision_wait"), "must be greater than 0s");
    }
    if c.num_traces == 0 {
        p.push(format!("{at}.num_traces"), "must be greater than 0");
    }
    if c.max_pending_bytes.0 == 0 {
        p.push(format!("{at}.max_pending_bytes"), "must be greater than 0");
    }
    check_policies(p, &format!("{at}.policies"), &c.policies, false);
}

/// A list of sibling policies: not empty, names unique; `nested` when it is
/// an `and`'s list.
fn check_policies(p: &mut Problems, at: &str, list: &[PolicyConfig], nested: bool) {
    if list.is_empty() {
        p.push(at, "must list at least one policy");
    }
    let mut names = HashSet::new();
    for (i, pol) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        if pol.name.is_empty() {
            p.push(format!("{at}.name"), "must not be empty");
        } else if !names.insert(pol.name.as_str()) {
            p.push(
                format!("{at}.name"),
                format!("{:?} is used by an earlier policy", pol.name),
            );
        }
        check_policy(p, &at, pol, nested);
    }
}

fn check_policy(p: &mut Problems, at: &str, pol: &PolicyConfig, nested: bool) {
    let kind = pol.kind.as_str();
    if let PolicyType::Unknown(_) = pol.kind {
        let known: Vec<&str> = PolicyType::KNOWN.iter().map(PolicyType::as_str).collect();
        p.push(
            format!("{at}.type"),
            format!(
                "unknown policy type {kind:?}: seedgate has {}",
                known.join(", ")
            ),
        );
    }
    for (t, written) in pol.blocks() {
        if written && t != pol.kind {
            p.push(
                format!("{at}.{}", t.as_str()),
                format!("is only used by type {}, not {kind}", t.as_str()),
            );
        }
    }
    match pol.rule() {
        None if !matches!(pol.kind, PolicyType::Unknown(_)) => {
            p.push(
                format!("{at}.{kind}"),
                format!("is required for type {kind}"),
            );
        }
        None => {}
        Some(PolicyRule::And(_)) if nested => p.push(
            format!("{at}.type"),
            "an and policy cannot hold another and",
        ),
        Some(rule) => check_rule(p, at, rule),
    }
}

/// The fields of a policy's block.
fn check_rule(p: &mut Problems, at: &str, rule: PolicyRule<'_>) {
    match rule {
        PolicyRule::AlwaysSample => {}
        PolicyRule::Probabilistic(c) => {
            if !(0.0..=100.0).contains(&c.sampling_percentage) {
                p.push(
                    format!("{at}.probabilistic.sampling_percentage"),
                    format!("{} must be between 0 and 100", c.sampling_percentage),
                );
            }
        }
        PolicyRule::StatusCode(c) => {
            if c.status_codes.is_empty() {
                p.push(
                    format!("{at}.status_code.status_codes"),
                    "must list at least one of ERROR, OK, UNSET",
                );
            }
        }
        PolicyRule::Latency(c) => {
            if let Some(upper) = c.upper_threshold_ms
                && upper <= c.threshold_ms
            {
                p.push(
                    format!("{at}.latency.upper_threshold_ms"),
                    format!("must be greater than threshold_ms ({})", c.threshold_ms),
                );
            }
        }
        PolicyRule::StringAttribute(c) => {
            let at = format!("{at}.string_attribute");
            check_key(p, &at, &c.key);
            if c.values.is_empty() {
                p.push(format!("{at}.values"), "must list at least one value");
            }
            if c.enabled_regex_matching {
                for (i, v) in c.values.iter().enumerate() {
                    if let Err(e) = regex::Regex::new(v) {
                        p.push(
                            format!("{at}.values[{i}]"),
                            format!("{v:?} is not a regular expression: {e}"),
                        );
                    }
                }
            }
        }
        PolicyRule::NumericAttribute(c) => {
            let at = format!("{at}.numeric_attribute");
            check_key(p, &at, &c.key);
            match (c.min_value, c.max_value) {
                (None, None) => p.push(at, "needs min_value, max_value or both"),
                (Some(min), Some(max)) if min > max => p.push(
                    format!("{at}.min_value"),
                    format!("must not be greater than max_value ({max})"),
                ),
                _ => {}
            }
        }
        PolicyRule::SpanCount(c) => match c.max_spans {
            Some(0) => p.push(
                format!("{at}.span_count.max_spans"),
                "must be greater than 0 (leave it out for no upper bound)",
            ),
            Some(max) if c.min_spans > max => p.push(
                format!("{at}.span_count.min_spans"),
                format!("must not be greater than max_spans ({max})"),
            ),
            _ => {}
        },
        PolicyRule::RateLimiting(c) => {
            if c.spans_per_second == 0 {
                p.push(
                    format!("{at}.rate_limiting.spans_per_second"),
                    "must be greater than 0",
                );
            }
        }
        PolicyRule::And(c) => {
            check_policies(
                p,
                &format!("{at}.and.and_sub_policy"),
                &c.and_sub_policy,
                true,
            );
        }
    }
}

fn check_key(p: &mut Problems, at: &str, key: &str) {
    if key.is_empty() {
        p.push(format!("{at}.key"), "must not be empty");
    }
}

#[cfg(test)]
mod tests;
