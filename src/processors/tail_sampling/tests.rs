//! The engine against hand-built traces; policies are written as YAML, the
//! Collector's way.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use rand::Rng;

use super::policy::fnv1a64;
use super::{Decision, Outcome, Sampler};
use crate::config::TailSamplingConfig;

const ID: [u8; 16] = [7; 16];

fn sampler(policies: &str) -> Sampler {
    let c: TailSamplingConfig = serde_saphyr::from_str(&format!("policies: {policies}\n")).unwrap();
    Sampler::new(&c).unwrap()
}

fn decide(s: &mut Sampler, trace: &[ResourceSpans]) -> Decision {
    s.decide(trace, Instant::now())
}

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(v) }),
        ..KeyValue::default()
    }
}

fn text(key: &str, v: &str) -> KeyValue {
    kv(key, Value::StringValue(v.to_owned()))
}

/// A span of trace [`ID`] from `start` to `end` milliseconds.
fn span(start_ms: u64, end_ms: u64) -> Span {
    Span {
        trace_id: ID.to_vec(),
        start_time_unix_nano: start_ms * 1_000_000,
        end_time_unix_nano: end_ms * 1_000_000,
        ..Span::default()
    }
}

fn with_attrs(mut s: Span, attrs: Vec<KeyValue>) -> Span {
    s.attributes = attrs;
    s
}

fn with_status(mut s: Span, code: StatusCode) -> Span {
    s.status = Some(Status {
        code: code as i32,
        ..Status::default()
    });
    s
}

/// One resource with `attrs`, its spans in one scope.
fn resource(attrs: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: attrs,
            ..Resource::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..ScopeSpans::default()
        }],
        ..ResourceSpans::default()
    }
}

fn one(spans: Vec<Span>) -> Vec<ResourceSpans> {
    vec![resource(vec![], spans)]
}

#[track_caller]
fn assert_outcome(s: &mut Sampler, trace: &[ResourceSpans], want: Outcome) {
    let d = decide(s, trace);
    assert_eq!(d.outcomes, [want], "{d:?}");
}

#[test]
fn always_sample_keeps_every_trace_and_names_itself() {
    let mut s = sampler("[{name: all, type: always_sample}]");
    let d = decide(&mut s, &one(vec![span(0, 1)]));
    assert!(d.sampled);
    assert_eq!(d.policy.as_deref(), Some("all"));
    assert_eq!(d.outcomes, [Outcome::Sampled]);
}

#[test]
fn fnv1a_matches_its_reference_vectors() {
    assert_eq!(fnv1a64(&[]), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(&[b"foo"]), 0xdcb2_7518_fed9_d577);
    assert_eq!(
        fnv1a64(&[b"fo", b"o"]),
        fnv1a64(&[b"foo"]),
        "parts concatenate"
    );
}

fn random_trace(rng: &mut impl Rng) -> Vec<ResourceSpans> {
    let mut s = span(0, 1);
    s.trace_id = rng.random::<[u8; 16]>().to_vec();
    one(vec![s])
}

#[test]
fn probabilistic_is_deterministic_and_keeps_about_its_percentage() {
    let policy = "[{name: p, type: probabilistic, probabilistic: {sampling_percentage: 25}}]";
    let (mut a, mut b) = (sampler(policy), sampler(policy));
    let mut salted = sampler(
        "[{name: p, type: probabilistic, probabilistic: {sampling_percentage: 25, hash_salt: other}}]",
    );
    let mut rng = rand::rng();
    let (mut kept, mut salt_differs) = (0, 0);
    for _ in 0..10_000 {
        let t = random_trace(&mut rng);
        let d = decide(&mut a, &t);
        assert_eq!(
            d.sampled,
            decide(&mut b, &t).sampled,
            "another replica agrees"
        );
        assert_eq!(
            d.sampled,
            decide(&mut a, &t).sampled,
            "so does a second look"
        );
        kept += usize::from(d.sampled);
        salt_differs += usize::from(d.sampled != decide(&mut salted, &t).sampled);
    }
    // 25% of 10,000 is 2,500 with a standard deviation of about 43.
    assert!((2_300..=2_700).contains(&kept), "kept {kept}");
    assert!(
        salt_differs > 1_000,
        "the salt changes the choice: {salt_differs}"
    );

    let mut none =
        sampler("[{name: p, type: probabilistic, probabilistic: {sampling_percentage: 0}}]");
    let mut all =
        sampler("[{name: p, type: probabilistic, probabilistic: {sampling_percentage: 100}}]");
    for _ in 0..1_000 {
        let t = random_trace(&mut rng);
        assert!(!decide(&mut none, &t).sampled);
        assert!(decide(&mut all, &t).sampled);
    }
}

#[test]
fn status_code_keeps_traces_with_a_listed_status() {
    let mut s = sampler("[{name: e, type: status_code, status_code: {status_codes: [ERROR]}}]");
    let ok = with_status(span(0, 1), StatusCode::Ok);
    let err = with_status(span(0, 1), StatusCode::Error);
    assert_outcome(&mut s, &one(vec![ok.clone()]), Outcome::NotSampled);
    assert_outcome(&mut s, &one(vec![ok.clone(), err]), Outcome::Sampled);
    let mut unset = sampler("[{name: u, type: status_code, status_code: {status_codes: [UNSET]}}]");
    assert_outcome(&mut unset, &one(vec![span(0, 1)]), Outcome::Sampled);
    assert_outcome(&mut unset, &one(vec![ok]), Outcome::NotSampled);
}

#[test]
fn latency_runs_from_the_earliest_start_to_the_latest_end() {
    let mut s = sampler("[{name: slow, type: latency, latency: {threshold_ms: 100}}]");
    // No span lasts 100ms; the trace does, and its spans are in two resources.
    let split = vec![
        resource(vec![], vec![span(1_000, 1_040)]),
        resource(vec![], vec![span(1_060, 1_100)]),
    ];
    assert_outcome(&mut s, &split, Outcome::Sampled);
    assert_outcome(&mut s, &one(vec![span(1_000, 1_099)]), Outcome::NotSampled);

    let mut band = sampler(
        "[{name: b, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 200}}]",
    );
    assert_outcome(&mut band, &one(vec![span(0, 100)]), Outcome::NotSampled);
    assert_outcome(&mut band, &one(vec![span(0, 101)]), Outcome::Sampled);
    assert_outcome(&mut band, &one(vec![span(0, 200)]), Outcome::Sampled);
    assert_outcome(&mut band, &one(vec![span(0, 201)]), Outcome::NotSampled);
}

#[test]
fn string_attribute_matches_resource_and_span_attributes_exactly_or_by_regex() {
    let mut exact = sampler(
        "[{name: s, type: string_attribute, string_attribute: {key: http.route, values: [/a, /b]}}]",
    );
    let on_span = one(vec![with_attrs(span(0, 1), vec![text("http.route", "/b")])]);
    let on_resource = vec![resource(vec![text("http.route", "/a")], vec![span(0, 1)])];
    let other = one(vec![with_attrs(
        span(0, 1),
        vec![text("http.route", "/abc")],
    )]);
    let not_a_string = one(vec![with_attrs(
        span(0, 1),
        vec![kv("http.route", Value::IntValue(1))],
    )]);
    assert_outcome(&mut exact, &on_span, Outcome::Sampled);
    assert_outcome(&mut exact, &on_resource, Outcome::Sampled);
    assert_outcome(&mut exact, &other, Outcome::NotSampled);
    assert_outcome(&mut exact, &not_a_string, Outcome::NotSampled);

    let mut regex = sampler(
        "[{name: r, type: string_attribute, string_attribute: {key: http.route, values: ['^/a.c$', 'x+'], enabled_regex_matching: true}}]",
    );
    assert_outcome(&mut regex, &other, Outcome::Sampled);
    assert_outcome(&mut regex, &on_span, Outcome::NotSampled);
    let unanchored = one(vec![with_attrs(
        span(0, 1),
        vec![text("http.route", "/axxb")],
    )]);
    assert_outcome(&mut regex, &unanchored, Outcome::Sampled);
}

#[test]
fn invert_match_drops_on_a_match_and_keeps_otherwise() {
    let mut s = sampler(
        "[{name: no-health, type: string_attribute, string_attribute: {key: http.route, values: [/healthz], invert_match: true}}]",
    );
    let health = vec![
        resource(vec![], vec![span(0, 1)]),
        resource(
            vec![],
            vec![with_attrs(span(0, 1), vec![text("http.route", "/healthz")])],
        ),
    ];
    let d = decide(&mut s, &health);
    assert_eq!(d.outcomes, [Outcome::InvertNotSampled]);
    assert!(!d.sampled);
    assert_eq!(d.policy.as_deref(), Some("no-health"), "the veto is named");
    let d = decide(
        &mut s,
        &one(vec![with_attrs(
            span(0, 1),
            vec![text("http.route", "/api")],
        )]),
    );
    assert_eq!(d.outcomes, [Outcome::InvertSampled]);
    assert!(d.sampled, "an inverted no-match keeps the trace");
}

#[test]
fn numeric_attribute_reads_integers_and_doubles_within_inclusive_bounds() {
    let mut s = sampler(
        "[{name: n, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, max_value: 599}}]",
    );
    let code = |v: Value| {
        one(vec![with_attrs(
            span(0, 1),
            vec![kv("http.status_code", v)],
        )])
    };
    assert_outcome(&mut s, &code(Value::IntValue(500)), Outcome::Sampled);
    assert_outcome(&mut s, &code(Value::IntValue(599)), Outcome::Sampled);
    assert_outcome(&mut s, &code(Value::IntValue(404)), Outcome::NotSampled);
    assert_outcome(&mut s, &code(Value::DoubleValue(503.5)), Outcome::Sampled);
    assert_outcome(
        &mut s,
        &code(Value::StringValue("503".into())),
        Outcome::NotSampled,
    );
    let on_resource = vec![resource(
        vec![kv("http.status_code", Value::IntValue(502))],
        vec![span(0, 1)],
    )];
    assert_outcome(&mut s, &on_resource, Outcome::Sampled);

    let mut at_least = sampler(
        "[{name: n, type: numeric_attribute, numeric_attribute: {key: retries, min_value: 3, invert_match: true}}]",
    );
    let retries = |n| {
        one(vec![with_attrs(
            span(0, 1),
            vec![kv("retries", Value::IntValue(n))],
        )])
    };
    assert_outcome(&mut at_least, &retries(i64::MAX), Outcome::InvertNotSampled);
    assert_outcome(&mut at_least, &retries(2), Outcome::InvertSampled);
}

#[test]
fn span_count_keeps_traces_within_its_bounds() {
    let mut s = sampler("[{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 3}}]");
    let spans = |n| one((0..n).map(|_| span(0, 1)).collect());
    assert_outcome(&mut s, &spans(1), Outcome::NotSampled);
    assert_outcome(&mut s, &spans(2), Outcome::Sampled);
    assert_outcome(&mut s, &spans(3), Outcome::Sampled);
    assert_outcome(&mut s, &spans(4), Outcome::NotSampled);
    let mut open = sampler("[{name: c, type: span_count, span_count: {min_spans: 2}}]");
    assert_outcome(&mut open, &spans(1_000), Outcome::Sampled);
    // Spread over two resources, the spans still count together.
    let split = vec![
        resource(vec![], vec![span(0, 1)]),
        resource(vec![], vec![span(0, 1)]),
    ];
    assert_outcome(&mut s, &split, Outcome::Sampled);
}

#[test]
fn rate_limiting_counts_spans_per_second_across_seconds() {
    let mut s = sampler("[{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 5}}]");
    let spans = |n| one((0..n).map(|_| span(0, 1)).collect());
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    assert!(s.decide(&spans(3), at(0)).sampled, "3 of 5");
    assert!(!s.decide(&spans(3), at(100)).sampled, "6 would exceed 5");
    assert!(s.decide(&spans(2), at(999)).sampled, "exactly 5");
    assert!(!s.decide(&spans(1), at(999)).sampled, "the second is full");
    assert!(s.decide(&spans(5), at(1_000)).sampled, "a new second");
    assert!(!s.decide(&spans(1), at(1_500)).sampled);
    assert!(s.decide(&spans(1), at(3_200)).sampled, "seconds later");
    assert!(
        !s.decide(&spans(6), at(5_000)).sampled,
        "a trace over the limit never fits"
    );
}

#[test]
fn an_inverted_no_overrides_every_other_yes() {
    let mut s = sampler(
        "[{name: all, type: always_sample},
          {name: errors, type: status_code, status_code: {status_codes: [ERROR]}},
          {name: no-health, type: string_attribute, string_attribute: {key: http.route, values: [/healthz], invert_match: true}}]",
    );
    assert_eq!(
        s.policy_names().collect::<Vec<_>>(),
        ["all", "errors", "no-health"]
    );
    let health = one(vec![with_status(
        with_attrs(span(0, 1), vec![text("http.route", "/healthz")]),
        StatusCode::Error,
    )]);
    let d = decide(&mut s, &health);
    assert!(!d.sampled);
    assert_eq!(
        d.outcomes,
        [
            Outcome::Sampled,
            Outcome::Sampled,
            Outcome::InvertNotSampled
        ]
    );
    assert_eq!(d.policy.as_deref(), Some("no-health"));
    let api = one(vec![with_attrs(
        span(0, 1),
        vec![text("http.route", "/api")],
    )]);
    let d = decide(&mut s, &api);
    assert!(d.sampled);
    assert_eq!(d.policy.as_deref(), Some("all"), "the first that kept it");

    let mut nothing = sampler(
        "[{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}, {name: slow, type: latency, latency: {threshold_ms: 10}}]",
    );
    let d = decide(&mut nothing, &api);
    assert_eq!((d.sampled, d.policy), (false, None));
}

#[test]
fn and_keeps_only_what_every_sub_policy_keeps() {
    let mut s = sampler(
        "[{name: slow-errors, type: and, and: {and_sub_policy: [
            {name: errors, type: status_code, status_code: {status_codes: [ERROR]}},
            {name: slow, type: latency, latency: {threshold_ms: 100}},
            {name: no-health, type: string_attribute, string_attribute: {key: http.route, values: [/healthz], invert_match: true}}]}}]",
    );
    let err = |end, route| {
        one(vec![with_status(
            with_attrs(span(0, end), vec![text("http.route", route)]),
            StatusCode::Error,
        )])
    };
    assert_outcome(&mut s, &err(150, "/api"), Outcome::Sampled);
    assert_outcome(&mut s, &err(50, "/api"), Outcome::NotSampled);
    // Inside an and, an inverted outcome is a plain one.
    assert_outcome(&mut s, &err(150, "/healthz"), Outcome::NotSampled);
    let ok = one(vec![span(0, 150)]);
    assert_outcome(&mut s, &ok, Outcome::NotSampled);
}

#[test]
fn and_evaluates_a_rate_limiter_only_when_it_is_reached() {
    let mut s = sampler(
        "[{name: a, type: and, and: {and_sub_policy: [
            {name: errors, type: status_code, status_code: {status_codes: [ERROR]}},
            {name: r, type: rate_limiting, rate_limiting: {spans_per_second: 1}}]}}]",
    );
    let now = Instant::now();
    assert!(
        !s.decide(&one(vec![span(0, 1)]), now).sampled,
        "no error: the limiter is untouched"
    );
    let err = one(vec![with_status(span(0, 1), StatusCode::Error)]);
    assert!(s.decide(&err, now).sampled, "the limiter's one span");
    assert!(!s.decide(&err, now).sampled, "spent");
}

#[test]
fn new_refuses_an_invalid_block_with_its_problems() {
    let c: TailSamplingConfig = serde_saphyr::from_str(
        "policies: [{name: r, type: string_attribute, string_attribute: {key: k, values: ['('], enabled_regex_matching: true}}]\n",
    )
    .unwrap();
    let err = Sampler::new(&c).unwrap_err();
    assert!(
        err.contains("tail_sampling.policies[0].string_attribute.values[0]")
            && err.contains("regular expression"),
        "{err}"
    );
    let err = Sampler::new(&TailSamplingConfig::default()).unwrap_err();
    assert!(err.contains("must list at least one policy"), "{err}");
}
