use super::*;
use crate::config::{ProcessorConfig, assert_problems, parse};

/// A traces pipeline whose one processor is `tail_sampling` with `body`:
/// the body's first line is line 7 of the file.
fn yaml(body: &str) -> String {
    let mut s = String::from(
        "pipelines:\n  - name: t\n    signals: [traces]\n    output: {type: noop}\n    processors:\n      - tail_sampling:\n",
    );
    for line in body.lines() {
        s.push_str("          ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

const P: &str = "pipelines[0].processors[0].tail_sampling";

fn parsed(body: &str) -> TailSamplingConfig {
    let c = parse("c.yaml", &yaml(body)).unwrap();
    match c.pipelines[0].processors.first() {
        Some(ProcessorConfig::TailSampling(t)) => t.clone(),
        other => panic!("not tail_sampling: {other:?}"),
    }
}

#[track_caller]
fn refused(body: &str, wanted: &[&str]) {
    let wanted: Vec<String> = wanted.iter().map(|w| w.replace("{P}", P)).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    assert_problems(&yaml(body), &wanted);
}

#[test]
fn the_collectors_example_parses_with_every_policy_type() {
    let t = parsed(
            "decision_wait: 10s
num_traces: 100
expected_new_traces_per_sec: 10
max_pending_bytes: 64MiB
decision_cache:
  sampled_cache_size: 100_000
  non_sampled_cache_size: 100_000
policies:
  [
      {
        name: test-policy-1,
        type: always_sample
      },
      {
        name: test-policy-2,
        type: latency,
        latency: {threshold_ms: 5000, upper_threshold_ms: 10000}
      },
      {
        name: test-policy-3,
        type: numeric_attribute,
        numeric_attribute: {key: key1, min_value: 50, max_value: 100}
      },
      {
        name: test-policy-4,
        type: probabilistic,
        probabilistic: {sampling_percentage: 10}
      },
      {
        name: test-policy-5,
        type: status_code,
        status_code: {status_codes: [ERROR, UNSET]}
      },
      {
        name: test-policy-6,
        type: string_attribute,
        string_attribute: {key: key2, values: [value1, value2]}
      },
      {
        name: test-policy-7,
        type: string_attribute,
        string_attribute: {key: key2, values: [value1, val*], enabled_regex_matching: true, cache_max_size: 10}
      },
      {
        name: test-policy-8,
        type: rate_limiting,
        rate_limiting: {spans_per_second: 35}
     },
     {
        name: test-policy-10,
        type: span_count,
        span_count: {min_spans: 2, max_spans: 20}
     },
     {
        name: and-policy-1,
        type: and,
        and: {
          and_sub_policy:
          [
            {
              name: test-and-policy-1,
              type: numeric_attribute,
              numeric_attribute: { key: key1, min_value: 50, max_value: 100 }
            },
            {
                name: test-and-policy-2,
                type: string_attribute,
                string_attribute: { key: key2, values: [ value1, value2 ], invert_match: true }
            },
          ]
        }
     },
  ]
",
        );
    assert_eq!(t.decision_wait, Duration::from_secs(10));
    assert_eq!(t.num_traces, 100);
    assert_eq!(t.max_pending_bytes, ByteSize::mib(64));
    assert_eq!(t.decision_cache.sampled_cache_size, 100_000);
    let kinds: Vec<&str> = t.policies.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "always_sample",
            "latency",
            "numeric_attribute",
            "probabilistic",
            "status_code",
            "string_attribute",
            "string_attribute",
            "rate_limiting",
            "span_count",
            "and"
        ]
    );
    assert!(t.policies.iter().all(|p| p.rule().is_some()));
    assert_eq!(
        t.policies[1].rule(),
        Some(PolicyRule::Latency(&LatencyConfig {
            threshold_ms: 5000,
            upper_threshold_ms: Some(10000)
        }))
    );
    let Some(PolicyRule::And(and)) = t.policies[9].rule() else {
        panic!("and: {:?}", t.policies[9]);
    };
    assert!(
        matches!(and.and_sub_policy[1].rule(), Some(PolicyRule::StringAttribute(s)) if s.invert_match)
    );
}

#[test]
fn defaults_are_the_collectors_plus_seedgates_own() {
    let t = parsed("policies: [{name: all, type: always_sample}]");
    assert_eq!(
        t,
        TailSamplingConfig {
            policies: t.policies.clone(),
            ..TailSamplingConfig::default()
        }
    );
    assert_eq!(t.decision_wait, DEFAULT_DECISION_WAIT);
    assert_eq!(t.num_traces, DEFAULT_NUM_TRACES);
    assert_eq!(t.max_pending_bytes, ByteSize::mib(256));
    assert_eq!(
        t.decision_cache,
        DecisionCacheConfig {
            sampled_cache_size: 100_000,
            non_sampled_cache_size: 100_000
        }
    );
    assert!(t.validate().is_ok());
}

#[test]
fn zero_limits_and_no_policies_are_refused() {
    refused(
        "decision_wait: 0s\nnum_traces: 0\nmax_pending_bytes: 0\n",
        &[
            "c.yaml:7: {P}.decision_wait: must be greater than 0s",
            "c.yaml:8: {P}.num_traces: must be greater than 0",
            "c.yaml:9: {P}.max_pending_bytes: must be greater than 0",
            "c.yaml:6: {P}.policies: must list at least one policy",
        ],
    );
    refused(
        "policies: []\n",
        &["c.yaml:7: {P}.policies: must list at least one policy"],
    );
}

#[test]
fn blocks_must_match_their_type() {
    refused(
        "policies:
  - name: a
    type: latency
  - name: b
    type: probabilistic
    probabilistic: {sampling_percentage: 5}
    latency: {threshold_ms: 1}
  - name: c
    type: always_sample
    rate_limiting: {spans_per_second: 1}
",
        &[
            "c.yaml:8: {P}.policies[0].latency: is required for type latency",
            "c.yaml:13: {P}.policies[1].latency: is only used by type latency, not probabilistic",
            "c.yaml:16: {P}.policies[2].rate_limiting: is only used by type rate_limiting, not always_sample",
        ],
    );
}

/// An unknown type is not a serde error (see [`PolicyType`]): it is
/// reported with its line and the known types.
#[test]
fn an_unknown_type_names_the_known_ones() {
    refused(
        "policies:\n  - name: c\n    type: composite\n",
        &[
            "c.yaml:9: {P}.policies[0].type: unknown policy type \"composite\": seedgate has always_sample, probabilistic, status_code, latency, string_attribute, numeric_attribute, span_count, rate_limiting, and",
        ],
    );
}

#[test]
fn names_are_required_and_unique_among_siblings() {
    refused(
            "policies:
  - {name: a, type: always_sample}
  - {name: a, type: always_sample}
  - {name: '', type: always_sample}
  - name: b
    type: and
    and: {and_sub_policy: [{name: a, type: always_sample}, {name: x, type: always_sample}, {name: x, type: always_sample}]}
",
            &[
                "c.yaml:9: {P}.policies[1].name: \"a\" is used by an earlier policy",
                "c.yaml:10: {P}.policies[2].name: must not be empty",
                "c.yaml:13: {P}.policies[3].and.and_sub_policy[2].name: \"x\" is used by an earlier policy",
            ],
        );
    let err = parse(
        "c.yaml",
        &yaml(
            "policies:\n  - {name: a, type: and, and: {and_sub_policy: [{name: a, type: always_sample}]}}\n",
        ),
    );
    assert!(
        err.is_ok(),
        "a sub-policy may share its parent's name: {err:?}"
    );
}

#[test]
fn bad_values_in_blocks_are_refused_with_their_field() {
    refused(
        "policies:
  - name: p
    type: probabilistic
    probabilistic: {sampling_percentage: 100.5}
  - name: s
    type: string_attribute
    string_attribute:
      key: ''
      enabled_regex_matching: true
      values: [ok, '(']
  - name: n
    type: numeric_attribute
    numeric_attribute: {key: k, min_value: 5, max_value: 1}
  - name: c
    type: span_count
    span_count: {min_spans: 5, max_spans: 2}
  - name: r
    type: rate_limiting
    rate_limiting: {spans_per_second: 0}
  - name: l
    type: latency
    latency: {threshold_ms: 10, upper_threshold_ms: 10}
  - name: e
    type: status_code
    status_code: {status_codes: []}
  - name: u
    type: numeric_attribute
    numeric_attribute: {key: k}
  - name: z
    type: span_count
    span_count: {min_spans: 0, max_spans: 0}
  - name: v
    type: string_attribute
    string_attribute: {key: k, values: []}
",
        &[
            "c.yaml:10: {P}.policies[0].probabilistic.sampling_percentage: 100.5 must be between 0 and 100",
            "c.yaml:14: {P}.policies[1].string_attribute.key: must not be empty",
            "c.yaml:16: {P}.policies[1].string_attribute.values[1]: \"(\" is not a regular expression: regex parse error",
            "c.yaml:19: {P}.policies[2].numeric_attribute.min_value: must not be greater than max_value (1)",
            "c.yaml:22: {P}.policies[3].span_count.min_spans: must not be greater than max_spans (2)",
            "c.yaml:25: {P}.policies[4].rate_limiting.spans_per_second: must be greater than 0",
            "c.yaml:28: {P}.policies[5].latency.upper_threshold_ms: must be greater than threshold_ms (10)",
            "c.yaml:31: {P}.policies[6].status_code.status_codes: must list at least one of ERROR, OK, UNSET",
            "c.yaml:34: {P}.policies[7].numeric_attribute: needs min_value, max_value or both",
            "c.yaml:37: {P}.policies[8].span_count.max_spans: must be greater than 0 (leave it out for no upper bound)",
            "c.yaml:40: {P}.policies[9].string_attribute.values: must list at least one value",
        ],
    );
}

#[test]
fn an_and_holds_at_least_one_policy_and_no_and() {
    refused(
        "policies:
  - name: a
    type: and
    and:
      and_sub_policy:
        - name: inner
          type: and
          and: {and_sub_policy: [{name: x, type: always_sample}]}
        - name: bad
          type: rate_limiting
          rate_limiting: {spans_per_second: 0}
  - name: b
    type: and
    and: {and_sub_policy: []}
",
        &[
            "c.yaml:13: {P}.policies[0].and.and_sub_policy[0].type: an and policy cannot hold another and",
            "c.yaml:17: {P}.policies[0].and.and_sub_policy[1].rate_limiting.spans_per_second: must be greater than 0",
            "c.yaml:20: {P}.policies[1].and.and_sub_policy: must list at least one policy",
        ],
    );
}

#[test]
fn an_unknown_status_code_or_field_is_a_parse_error() {
    for (body, word) in [
        (
            "policies: [{name: e, type: status_code, status_code: {status_codes: [FATAL]}}]",
            "FATAL",
        ),
        (
            "policies: [{name: e, type: always_sample, sample_on_first_match: true}]",
            "sample_on_first_match",
        ),
    ] {
        let err = parse("c.yaml", &yaml(body)).unwrap_err().to_string();
        assert!(err.contains("c.yaml:7") && err.contains(word), "{err}");
    }
}
