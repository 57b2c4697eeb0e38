//! One policy, compiled from its configuration, and what it says about a
//! trace: the Collector's four outcomes and the rule that combines them.

use std::collections::HashSet;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use regex::RegexSet;

use super::trace::TraceFacts;
use crate::config::tail_sampling::{PolicyConfig, PolicyRule, ProbabilisticConfig, StatusCodeName};

/// What one policy says about a trace (the Collector's decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Keep it.
    Sampled,
    /// This policy does not keep it; another may.
    NotSampled,
    /// `invert_match` found no match: keep it, unless another policy says
    /// [`Outcome::InvertNotSampled`].
    InvertSampled,
    /// `invert_match` found a match: drop it, whatever the other policies
    /// say.
    InvertNotSampled,
}

impl Outcome {
    /// A metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Sampled => "sampled",
            Outcome::NotSampled => "not_sampled",
            Outcome::InvertSampled => "inverted_sampled",
            Outcome::InvertNotSampled => "inverted_not_sampled",
        }
    }

    /// Whether it votes to keep the trace (an `and` reads inverted outcomes
    /// as plain ones).
    pub const fn keeps(self) -> bool {
        matches!(self, Outcome::Sampled | Outcome::InvertSampled)
    }

    /// The Collector's rule over every policy's outcome: dropped if any says
    /// [`Outcome::InvertNotSampled`], else kept if any keeps, else dropped.
    /// Returns whether the trace is kept and the index of the outcome that
    /// decided (the first veto, else the first keep; none when nothing
    /// kept it).
    pub fn combine(outcomes: &[Outcome]) -> (bool, Option<usize>) {
        if let Some(i) = outcomes
            .iter()
            .position(|o| *o == Outcome::InvertNotSampled)
        {
            return (false, Some(i));
        }
        match outcomes.iter().position(|o| o.keeps()) {
            Some(i) => (true, Some(i)),
            None => (false, None),
        }
    }
}

/// A compiled policy.
#[derive(Debug)]
pub(super) enum Policy {
    AlwaysSample,
    Probabilistic(Probabilistic),
    /// The listed codes, as the proto's `StatusCode` numbers.
    StatusCode(Vec<i32>),
    Latency {
        threshold_ms: u64,
        upper_threshold_ms: Option<u64>,
    },
    /// `string_attribute` and `numeric_attribute`.
    Attribute {
        key: String,
        matcher: Matcher,
        invert: bool,
    },
    SpanCount {
        min: u64,
        max: Option<u64>,
    },
    RateLimiting(RateLimiter),
    And(Vec<Policy>),
}

/// What a trace knows that every policy may read, computed once.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts<'a> {
    pub(super) trace: &'a TraceFacts,
    pub(super) span_count: u64,
    /// Whole seconds since the sampler's first decision: the rate limiters'
    /// clock.
    pub(super) second: u64,
}

impl Policy {
    /// Compiles a policy (regular expressions once, here).
    ///
    /// # Errors
    /// An unknown type, a missing block or an invalid regular expression,
    /// which a validated configuration does not have.
    pub(super) fn build(c: &PolicyConfig) -> Result<Policy, String> {
        let rule = c.rule().ok_or_else(|| {
            format!(
                "policy {:?}: type {} without its block",
                c.name,
                c.kind.as_str()
            )
        })?;
        Ok(match rule {
            PolicyRule::AlwaysSample => Policy::AlwaysSample,
            PolicyRule::Probabilistic(p) => Policy::Probabilistic(Probabilistic::new(p)),
            PolicyRule::StatusCode(s) => {
                Policy::StatusCode(s.status_codes.iter().map(|c| status_number(*c)).collect())
            }
            PolicyRule::Latency(l) => Policy::Latency {
                threshold_ms: l.threshold_ms,
                upper_threshold_ms: l.upper_threshold_ms,
            },
            PolicyRule::StringAttribute(s) => Policy::Attribute {
                key: s.key.clone(),
                matcher: if s.enabled_regex_matching {
                    Matcher::Regex(
                        RegexSet::new(&s.values)
                            .map_err(|e| format!("policy {:?}: {e}", c.name))?,
                    )
                } else {
                    Matcher::Exact(s.values.iter().cloned().collect())
                },
                invert: s.invert_match,
            },
            PolicyRule::NumericAttribute(n) => Policy::Attribute {
                key: n.key.clone(),
                matcher: Matcher::Range {
                    min: n.min_value.unwrap_or(i64::MIN),
                    max: n.max_value.unwrap_or(i64::MAX),
                },
                invert: n.invert_match,
            },
            PolicyRule::SpanCount(s) => Policy::SpanCount {
                min: s.min_spans,
                max: s.max_spans,
            },
            PolicyRule::RateLimiting(r) => {
                Policy::RateLimiting(RateLimiter::new(r.spans_per_second))
            }
            PolicyRule::And(a) => Policy::And(
                a.and_sub_policy
                    .iter()
                    .map(Policy::build)
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// The attribute keys this policy (and its sub-policies) read.
    pub(super) fn attribute_keys(&self, out: &mut Vec<String>) {
        match self {
            Policy::Attribute { key, .. } if !out.contains(key) => out.push(key.clone()),
            Policy::And(subs) => subs.iter().for_each(|p| p.attribute_keys(out)),
            _ => {}
        }
    }

    /// What this policy says about the trace.
    pub(super) fn evaluate(&mut self, f: Facts<'_>) -> Outcome {
        let kept = match self {
            Policy::AlwaysSample => true,
            Policy::Probabilistic(p) => p.keeps(f.trace.trace_id()),
            Policy::StatusCode(codes) => codes.iter().any(|c| f.trace.has_status(*c)),
            Policy::Latency {
                threshold_ms,
                upper_threshold_ms,
            } => {
                let d = f.trace.duration_ms();
                match upper_threshold_ms {
                    None => d >= *threshold_ms,
                    Some(upper) => *threshold_ms < d && d <= *upper,
                }
            }
            Policy::Attribute {
                key,
                matcher,
                invert,
            } => {
                let found = f.trace.any_attribute(key, |v| matcher.matches(v));
                return match (*invert, found) {
                    (false, true) => Outcome::Sampled,
                    (false, false) => Outcome::NotSampled,
                    (true, true) => Outcome::InvertNotSampled,
                    (true, false) => Outcome::InvertSampled,
                };
            }
            Policy::SpanCount { min, max } => {
                f.span_count >= *min && max.is_none_or(|max| f.span_count <= max)
            }
            Policy::RateLimiting(r) => r.admit(f.second, f.span_count),
            // In order, until one does not keep the trace (the Collector's
            // `and`: later sub-policies, a rate limiter among them, are not
            // evaluated then).
            Policy::And(subs) => subs.iter_mut().all(|s| s.evaluate(f).keeps()),
        };
        if kept {
            Outcome::Sampled
        } else {
            Outcome::NotSampled
        }
    }
}

const fn status_number(c: StatusCodeName) -> i32 {
    match c {
        StatusCodeName::Error => StatusCode::Error as i32,
        StatusCodeName::Ok => StatusCode::Ok as i32,
        StatusCodeName::Unset => StatusCode::Unset as i32,
    }
}

/// How an attribute policy reads a value.
#[derive(Debug)]
pub(super) enum Matcher {
    /// `string_attribute`: one of these strings.
    Exact(HashSet<String>),
    /// `string_attribute` with `enabled_regex_matching`: a string any of
    /// these match, anywhere in it (Go's `MatchString`).
    Regex(RegexSet),
    /// `numeric_attribute`: an integer or a double within, inclusive.
    Range { min: i64, max: i64 },
}

impl Matcher {
    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Matcher::Exact(set), Value::StringValue(s)) => set.contains(s),
            (Matcher::Regex(set), Value::StringValue(s)) => set.is_match(s),
            (Matcher::Range { min, max }, Value::IntValue(i)) => (*min..=*max).contains(i),
            // Bounds near ±2^63 round to the nearest double: harmless.
            (Matcher::Range { min, max }, Value::DoubleValue(d)) => {
                (*min as f64..=*max as f64).contains(d)
            }
            _ => false,
        }
    }
}

/// `probabilistic`: the Collector's hash, so a seedgate and a Collector with
/// the same salt keep the same traces, and so do every replica and restart.
///
/// The hash is 64-bit FNV-1a over the salt then the trace ID's 16 bytes
/// (not xxh3: FNV-1a is what the Collector's policy uses, and trace IDs are
/// already random, so its weaker mixing costs nothing); the trace is kept
/// when the hash is at most `percentage / 100 × u64::MAX`. An empty salt is
/// the Collector's default, `default-hash-seed`.
#[derive(Debug)]
pub(super) struct Probabilistic {
    salt: Vec<u8>,
    threshold: u64,
}

/// The Collector's salt when none is set.
const DEFAULT_HASH_SALT: &str = "default-hash-seed";

impl Probabilistic {
    fn new(c: &ProbabilisticConfig) -> Self {
        let salt = if c.hash_salt.is_empty() {
            DEFAULT_HASH_SALT
        } else {
            c.hash_salt.as_str()
        };
        // A float to integer `as` saturates: 100% is u64::MAX. (0% is 0,
        // which keeps a trace whose hash is 0, one in 2^64, like the
        // Collector.)
        let threshold = (u64::MAX as f64 * (c.sampling_percentage / 100.0)) as u64;
        Self {
            salt: salt.as_bytes().to_vec(),
            threshold,
        }
    }

    fn keeps(&self, trace_id: &[u8]) -> bool {
        fnv1a64(&[&self.salt, trace_id]) <= self.threshold
    }
}

/// 64-bit FNV-1a over the parts, one after the other.
pub(super) fn fnv1a64(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// `rate_limiting`: the spans kept in the current second.
///
/// A trace is kept when the spans already kept this second plus its own
/// stay within `spans_per_second` (the Collector compares with `<`, so it
/// keeps one span fewer than the limit; here the limit is reached). A trace
/// larger than the limit is never kept.
#[derive(Debug)]
pub(super) struct RateLimiter {
    spans_per_second: u64,
    second: u64,
    spans: u64,
}

impl RateLimiter {
    const fn new(spans_per_second: u64) -> Self {
        Self {
            spans_per_second,
            second: 0,
            spans: 0,
        }
    }

    /// Counts `spans` into `second` if they fit.
    fn admit(&mut self, second: u64, spans: u64) -> bool {
        if second != self.second {
            self.second = second;
            self.spans = 0;
        }
        let total = self.spans.saturating_add(spans);
        let fits = total <= self.spans_per_second;
        if fits {
            self.spans = total;
        }
        fits
    }
}
