//! [`Sampler`]: every policy of one `tail_sampling` block, deciding whole
//! traces.

use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::policy::{Facts, Outcome, Policy};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::trace::TraceFacts;
use crate::config::tail_sampling::TailSamplingConfig;
use crate::proto::span_facts::for_each_span;

/// The policies of one `tail_sampling` block, compiled once. It holds state
/// (the rate limiters' counts), hence `&mut self` to decide.
#[derive(Debug)]
pub struct Sampler {
    policies: Vec<(Arc<str>, Policy)>,
    /// The attribute keys the policies read.
    keys: Vec<String>,
    /// The first decision's time: the rate limiters count whole seconds
    /// from it.
    origin: Option<Instant>,
}

/// A trace's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Keep the trace's spans.
    pub sampled: bool,
    /// The policy that decided, for metrics: when kept, the first that kept
    /// it; when dropped by an `invert_match`, the first that did; `None`
    /// when no policy kept it.
    pub policy: Option<Arc<str>>,
    /// Every policy's outcome, in the order of the configuration (see
    /// [`Sampler::policy_names`]).
    pub outcomes: Vec<Outcome>,
}

impl Sampler {
    /// Compiles the policies of a `tail_sampling` block.
    ///
    /// # Errors
    /// The block's problems ([`TailSamplingConfig::validate`]), joined.
    pub fn new(c: &TailSamplingConfig) -> Result<Sampler, String> {
        c.validate().map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let policies = c
            .policies
            .iter()
            .map(|p| Ok((Arc::from(p.name.as_str()), Policy::build(p)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let mut keys = Vec::new();
        for (_, p) in &policies {
            p.attribute_keys(&mut keys);
        }
        Ok(Sampler {
            policies,
            keys,
            origin: None,
        })
    }

    /// The top-level policies' names, in the order of
    /// [`Decision::outcomes`].
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|(name, _)| &**name)
    }

    /// The attribute keys the policies read: what [`TraceFacts`] keeps of
    /// each span and resource.
    pub fn attribute_keys(&self) -> &[String] {
        &self.keys
    }

    /// The facts of the spans of `trace`, whatever their trace IDs (tests
    /// and benches; the data path gathers them as it stores spans).
    pub fn facts_of(&self, trace: &[ResourceSpans]) -> TraceFacts {
        let keys: Vec<Arc<str>> = self.keys.iter().map(|k| Arc::from(k.as_str())).collect();
        let request = ExportTraceServiceRequest {
            resource_spans: trace.to_vec(),
        };
        let mut facts = TraceFacts::default();
        // An encoding of our own always frames.
        for_each_span(&request.encode_to_vec(), &self.keys, |s| {
            facts.add(s, &keys)
        })
        .expect("prost's encoding frames");
        facts
    }

    /// Decides one trace: `trace` holds every span of it, possibly spread
    /// over several `ResourceSpans` and `ScopeSpans`.
    pub fn decide(&mut self, trace: &[ResourceSpans], now: Instant) -> Decision {
        let facts = self.facts_of(trace);
        self.decide_facts(&facts, now)
    }

    /// Decides one trace from its facts. Every policy is evaluated (so rate
    /// limiters count a trace another policy keeps, as in the Collector);
    /// `now` is the rate limiters' clock.
    pub fn decide_facts(&mut self, trace: &TraceFacts, now: Instant) -> Decision {
        let origin = *self.origin.get_or_insert(now);
        let facts = Facts {
            trace,
            span_count: trace.span_count(),
            second: now.saturating_duration_since(origin).as_secs(),
        };
        let outcomes: Vec<Outcome> = self
            .policies
            .iter_mut()
            .map(|(_, p)| p.evaluate(facts))
            .collect();
        let (sampled, by) = Outcome::combine(&outcomes);
        Decision {
            sampled,
            policy: by
                .and_then(|i| self.policies.get(i))
                .map(|(name, _)| Arc::clone(name)),
            outcomes,
        }
    }
}
