#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytesize::ByteSize;

use super::*;
use crate::config::Config;
use crate::operator::crds::{LogPipelineSpec, MetricPipelineSpec, TracePipelineSpec};
use crate::operator::pem_store::DirPemStore;
use crate::operator::tls_material::test_certs::{certs, day};
use crate::signal::Signal;

fn spec<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn trace(yaml: &str) -> TracePipelineSpec {
    spec(yaml)
}

/// A Secret source whose reads all fail.
struct Failing;

impl SecretSource for Failing {
    fn get(&self, _: &str, _: &str) -> Result<Option<SecretData>, SecretApiError> {
        Err(SecretApiError("connection refused".to_owned()))
    }
}

/// A PEM store that cannot write.
struct ReadOnly;

impl PemStore for ReadOnly {
    fn store(&self, _: &[u8]) -> std::io::Result<PathBuf> {
        Err(std::io::Error::other("read-only file system"))
    }
}

struct Env {
    secrets: StaticSecrets,
    pems: DirPemStore,
    _dir: tempfile::TempDir,
    now: Timestamp,
}

impl Env {
    fn new(secrets: StaticSecrets) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            secrets,
            pems: DirPemStore::new(dir.path().join("tls")).unwrap(),
            _dir: dir,
            now: day(2030, 1, 1),
        }
    }

    fn ctx(&self) -> ResolveContext<'_> {
        ResolveContext {
            secrets: &self.secrets,
            pems: &self.pems,
            now: self.now,
            queue_defaults: QueueConfig::default(),
        }
    }

    fn resolve<S: PipelineSpec>(&self, spec: &S) -> Result<Resolved, Rejection> {
        resolve("p", spec, &self.ctx())
    }
}

fn backend_secret() -> StaticSecrets {
    StaticSecrets::new().with(
        "default",
        "backend",
        [
            ("endpoint", "https://backend.example.com:4317"),
            ("http-endpoint", "https://backend.example.com"),
            ("bad-endpoint", "http://backend:4317/v1/traces"),
            ("user", "user"),
            ("password", "pass"),
            ("token", "t0ken"),
        ],
    )
}

fn rejected(reason: &'static str, message: &str) -> Result<(), Rejection> {
    Err(Rejection::new(reason, message))
}

/// Drops the `Resolved` so tables compare only the verdict.
fn verdict(r: Result<Resolved, Rejection>) -> Result<(), Rejection> {
    r.map(|_| ())
}

#[test]
fn rejections_in_kyma_order_with_kyma_messages() {
    let env = Env::new(backend_secret());
    let ep_secret = |key: &str| {
        format!(
            "output:\n  otlp:\n    endpoint:\n      valueFrom:\n        secretKeyRef: {{name: backend, namespace: default, key: {key}}}\n"
        )
    };
    let cases: Vec<(String, Result<(), Rejection>)> = vec![
        // 1. Secret references.
        (
            "output: {otlp: {endpoint: {valueFrom: {secretKeyRef: {name: does-not-exist, namespace: default, key: endpoint}}}}}".into(),
            rejected(
                reason::REFERENCED_SECRET_MISSING,
                "One or more referenced Secrets are missing: Secret 'does-not-exist' of Namespace 'default'",
            ),
        ),
        (
            ep_secret("nope"),
            rejected(
                reason::REFERENCED_SECRET_MISSING,
                "One or more keys in a referenced Secret are missing: Key 'nope' in Secret 'backend' of Namespace 'default'",
            ),
        ),
        (
            "output: {otlp: {endpoint: {valueFrom: {secretKeyRef: {name: '', namespace: default, key: ''}}}}}".into(),
            rejected(
                reason::REFERENCED_SECRET_MISSING,
                "Secret reference is missing field/s: Name, Key",
            ),
        ),
        (
            // A missing password Secret beats the invalid endpoint.
            "output: {otlp: {endpoint: {value: 'http://x/y'}, authentication: {basic: {user: {value: u}, password: {valueFrom: {secretKeyRef: {name: gone, namespace: ns, key: password}}}}}}}".into(),
            rejected(
                reason::REFERENCED_SECRET_MISSING,
                "One or more referenced Secrets are missing: Secret 'gone' of Namespace 'ns'",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, headers: [{name: a, valueFrom: {secretKeyRef: {name: backend, namespace: default, key: missing}}}]}}".into(),
            rejected(
                reason::REFERENCED_SECRET_MISSING,
                "One or more keys in a referenced Secret are missing: Key 'missing' in Secret 'backend' of Namespace 'default'",
            ),
        ),
        // 2. The endpoint.
        (
            "output: {otlp: {endpoint: {value: 'http://backend.observability:4317/v1/traces'}}}".into(),
            rejected(
                reason::ENDPOINT_INVALID,
                "OTLP output endpoint invalid: gRPC endpoints cannot contain paths",
            ),
        ),
        (
            ep_secret("bad-endpoint"),
            rejected(
                reason::ENDPOINT_INVALID,
                "OTLP output endpoint invalid: gRPC endpoints cannot contain paths",
            ),
        ),
        (
            "output: {otlp: {protocol: http, endpoint: {value: 'backend.observability:4318'}}}".into(),
            rejected(
                reason::ENDPOINT_INVALID,
                "OTLP output endpoint invalid: missing or unsupported protocol scheme",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://backend.example.com/otlp:4317'}}}".into(),
            rejected(reason::ENDPOINT_INVALID, "OTLP output endpoint invalid: missing port"),
        ),
        (
            "output: {otlp: {endpoint: {value: ''}}}".into(),
            rejected(
                reason::ENDPOINT_INVALID,
                "OTLP output endpoint invalid: failed to resolve value",
            ),
        ),
        (
            // The endpoint is checked before TLS.
            "output: {otlp: {endpoint: {value: 'x'}, tls: {cert: {value: garbage}}}}".into(),
            rejected(reason::ENDPOINT_INVALID, "OTLP output endpoint invalid: missing port"),
        ),
        // 3. TLS.
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, tls: {cert: {value: garbage}}}}".into(),
            rejected(
                reason::TLS_CONFIGURATION_INVALID,
                "TLS configuration invalid: a certificate and private key must either both be provided or both be missing",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, tls: {cert: {value: garbage}, key: {value: garbage}}}}".into(),
            rejected(
                reason::TLS_CONFIGURATION_INVALID,
                "TLS configuration invalid: failed to decode PEM block containing certificate",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, tls: {ca: {value: garbage}}}}".into(),
            rejected(
                reason::TLS_CONFIGURATION_INVALID,
                "TLS configuration invalid: failed to decode PEM block containing CA certificate",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, tls: {ca: {}}}}".into(),
            rejected(
                reason::TLS_CONFIGURATION_INVALID,
                "TLS configuration invalid: failed to resolve value",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, tls: {insecure: true}}}".into(),
            rejected(
                reason::TLS_CONFIGURATION_INVALID,
                "TLS configuration invalid: insecure is set but the endpoint is https://: use http:// for plain text",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'http://x:4317'}, tls: {ca: {value: garbage}}}}".into(),
            rejected(
                reason::TLS_CONFIGURATION_INVALID,
                "TLS configuration invalid: ca, cert or key is set but the endpoint is http://: use https://, or set insecure for plain text",
            ),
        ),
        // 5. seedgate's own rules.
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, headers: [{name: Bad Header, value: v}]}}".into(),
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.output.otlp.headers[0].name: \"Bad Header\" is not a valid header name",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, headers: [{name: a, value: \"v\\n\"}]}}".into(),
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.output.otlp.headers[0].value: is not a valid header value",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, headers: [{name: a}]}}".into(),
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.output.otlp.headers[0]: Header must have 'value' or 'valueFrom' set",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, headers: [{name: x, value: y}, {name: authorization, value: z}], authentication: {basic: {user: {value: u}, password: {value: p}}}}}".into(),
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.output.otlp.headers[1].name: Authorization is also set by spec.output.otlp.authentication.basic: keep one",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, path: /v1/traces}}".into(),
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.output.otlp.path: is only used by types otlp_http and fluent_bit_http",
            ),
        ),
        (
            "output: {otlp: {protocol: http, endpoint: {value: 'https://x'}, path: v1/traces}}".into(),
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.output.otlp.path: \"v1/traces\" must start with '/'",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}}}\nseedgate: {queue: {maxBytes: lots}}".into(),
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.seedgate.queue.maxBytes: \"lots\" is not a size (e.g. 512Mi, 1GiB)",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}}}\nseedgate: {queue: {maxBytes: '0'}}".into(),
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.seedgate.queue.maxBytes: must be greater than 0",
            ),
        ),
        // 0. What seedgate does not have comes first of all.
        (
            "output: {otlp: {compression: snappy, endpoint: {valueFrom: {secretKeyRef: {name: gone, namespace: ns, key: k}}}}}".into(),
            rejected(
                reason::UNSUPPORTED_FEATURE,
                "Not supported by seedgate: spec.output.otlp.compression 'snappy' (use none, gzip or zstd)",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}, authentication: {oauth2: {clientID: {value: a}, clientSecret: {value: b}, tokenURL: {value: 'https://t'}}}}}".into(),
            rejected(
                reason::UNSUPPORTED_FEATURE,
                "Not supported by seedgate: spec.output.otlp.authentication.oauth2 (use authentication.basic or a header)",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}}}\ntransform: [{statements: ['set(x, 1)']}]".into(),
            rejected(
                reason::UNSUPPORTED_FEATURE,
                "Not supported by seedgate: spec.transform (OTTL transformations)",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}}}\nfilter: [{conditions: ['true']}]".into(),
            rejected(
                reason::UNSUPPORTED_FEATURE,
                "Not supported by seedgate: spec.filter (OTTL filters)",
            ),
        ),
        (
            "output: {otlp: {endpoint: {value: 'https://x:4317'}}}\ntransform: []\nfilter: []".into(),
            Ok(()),
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(verdict(env.resolve(&trace(&yaml))), want, "{yaml}");
    }
}

#[test]
fn agent_inputs_and_delta_are_not_supported() {
    let env = Env::new(StaticSecrets::new());
    let out = "output: {otlp: {endpoint: {value: 'https://x:4317'}}}\n";
    let agent = |input: &str| {
        format!(
            "Not supported by seedgate: spec.input.{input} (seedgate runs no agent: point the seed's agents at seedgate's OTLP ports, select namespaces with spec.input.otlp.namespaces, and set spec.input.{input}.enabled to false)"
        )
    };
    // A LogPipeline's runtime input is on unless switched off (Kyma's default).
    for (input, want) in [
        (
            "input: {runtime: {}}",
            rejected(reason::UNSUPPORTED_FEATURE, &agent("runtime")),
        ),
        (
            "input: {runtime: {enabled: true}}",
            rejected(reason::UNSUPPORTED_FEATURE, &agent("runtime")),
        ),
        ("input: {runtime: {enabled: false}}", Ok(())),
        ("input: {otlp: {enabled: true}}", Ok(())),
    ] {
        let s: LogPipelineSpec = spec(&format!("{out}{input}"));
        assert_eq!(verdict(env.resolve(&s)), want, "{input}");
    }
    // A MetricPipeline's agent inputs are off unless switched on.
    for (input, want) in [
        (
            "input: {prometheus: {enabled: true}}",
            rejected(reason::UNSUPPORTED_FEATURE, &agent("prometheus")),
        ),
        (
            "input: {istio: {enabled: true}}",
            rejected(reason::UNSUPPORTED_FEATURE, &agent("istio")),
        ),
        (
            "input: {runtime: {enabled: true}}",
            rejected(reason::UNSUPPORTED_FEATURE, &agent("runtime")),
        ),
        (
            "input: {runtime: {}, prometheus: {enabled: false}, istio: {}}",
            Ok(()),
        ),
    ] {
        let s: MetricPipelineSpec = spec(&format!("{out}{input}"));
        assert_eq!(verdict(env.resolve(&s)), want, "{input}");
    }
    let delta: MetricPipelineSpec =
        spec("output: {otlp: {temporality: delta, endpoint: {value: 'https://x:4317'}}}");
    assert_eq!(
        verdict(env.resolve(&delta)),
        rejected(
            reason::UNSUPPORTED_FEATURE,
            "Not supported by seedgate: spec.output.otlp.temporality 'delta' (seedgate forwards metrics as they arrive: use preserve)"
        )
    );
    let preserve: MetricPipelineSpec =
        spec("output: {otlp: {temporality: preserve, endpoint: {value: 'https://x:4317'}}}");
    assert!(env.resolve(&preserve).is_ok());
}

#[test]
fn api_and_local_failures_are_transient() {
    let env = Env::new(StaticSecrets::new());
    let s = trace(
        "output: {otlp: {endpoint: {valueFrom: {secretKeyRef: {name: a, namespace: b, key: c}}}}}",
    );
    let ctx = ResolveContext {
        secrets: &Failing,
        ..env.ctx()
    };
    let err = resolve("p", &s, &ctx).unwrap_err();
    assert_eq!(
        err,
        Rejection::new(
            reason::VALIDATION_FAILED,
            "Pipeline validation failed due to an error from the Kubernetes API server"
        )
    );
    assert!(err.is_transient());

    let c = certs((2031, 1, 1), (2031, 1, 1));
    let s = trace(&format!(
        "output: {{otlp: {{endpoint: {{value: 'https://x:4317'}}, tls: {{ca: {{value: {:?}}}}}}}}}",
        c.ca
    ));
    let ctx = ResolveContext {
        pems: &ReadOnly,
        ..env.ctx()
    };
    let err = resolve("p", &s, &ctx).unwrap_err();
    assert_eq!(
        err,
        Rejection::new(
            reason::VALIDATION_FAILED,
            "Pipeline validation failed due to a local error: cannot write TLS material: read-only file system"
        )
    );
    assert!(err.is_transient());
    assert!(!Rejection::max_pipelines_exceeded().is_transient());
}

#[test]
fn a_minimal_trace_pipeline() {
    let env = Env::new(StaticSecrets::new());
    let r = env
        .resolve(&trace(
            "output: {otlp: {endpoint: {value: 'https://backend.example.com:4317'}}}",
        ))
        .unwrap();
    let mut output = OutputConfig::of_kind(OutputType::OtlpGrpc);
    output.endpoint = Some("https://backend.example.com:4317".to_owned());
    assert_eq!(
        r,
        Resolved {
            pipeline: PipelineConfig::new(
                "tracepipeline.p",
                vec![Signal::Traces],
                InputConfig {
                    namespaces: NamespacesConfig {
                        include: None,
                        exclude: None,
                        system: true,
                    },
                    no_namespace: true,
                },
                output,
            ),
            input_enabled: true,
            cert_warning: None,
            pem_files: vec![],
        }
    );
    // It is a valid pipeline of a seedgate configuration file.
    let cfg = Config {
        pipelines: vec![r.pipeline],
        ..Config::default()
    };
    assert!(cfg.validate().is_ok());
}

#[test]
fn outputs_headers_and_authentication() {
    let env = Env::new(backend_secret());
    let r = env
        .resolve(&trace(
            "\
output:
  otlp:
    protocol: http
    path: /custom/traces
    compression: zstd
    endpoint: {valueFrom: {secretKeyRef: {name: backend, namespace: default, key: http-endpoint}}}
    headers:
      - {name: X-Plain, value: plain}
      - name: X-Token
        prefix: Bearer
        valueFrom: {secretKeyRef: {name: backend, namespace: default, key: token}}
      - {name: X-Empty-Prefix, prefix: '', value: v}
    authentication:
      basic:
        user: {valueFrom: {secretKeyRef: {name: backend, namespace: default, key: user}}}
        password: {valueFrom: {secretKeyRef: {name: backend, namespace: default, key: password}}}
",
        ))
        .unwrap();
    let o = &r.pipeline.output;
    assert_eq!(o.kind, OutputType::OtlpHttp);
    assert_eq!(o.endpoint.as_deref(), Some("https://backend.example.com"));
    assert_eq!(o.path.as_deref(), Some("/custom/traces"));
    assert_eq!(o.compression, Compression::Zstd);
    assert_eq!(
        o.headers,
        [
            HeaderConfig::new("X-Plain", "", "plain"),
            HeaderConfig::new("X-Token", "Bearer ", "t0ken"),
            HeaderConfig::new("X-Empty-Prefix", "", "v"),
            // base64("user:pass")
            HeaderConfig::new("Authorization", "Basic ", "dXNlcjpwYXNz"),
        ]
    );

    for (compression, want) in [
        ("", Compression::Gzip),
        ("compression: gzip, ", Compression::Gzip),
        ("compression: none, ", Compression::None),
        ("compression: zstd, ", Compression::Zstd),
    ] {
        let s = trace(&format!(
            "output: {{otlp: {{{compression}endpoint: {{value: 'https://x:4317'}}}}}}"
        ));
        assert_eq!(env.resolve(&s).unwrap().pipeline.output.compression, want);
    }
}

#[test]
fn plain_text_and_scheme_less_grpc() {
    // The TLS references are not read under `insecure` (Kyma): the Secret
    // `gone` does not exist and nothing complains.
    let env = Env::new(StaticSecrets::new());
    for (otlp, endpoint, insecure) in [
        (
            "endpoint: {value: 'backend:4317'}",
            "https://backend:4317",
            false,
        ),
        (
            "endpoint: {value: 'backend:4317'}, tls: {insecure: true}",
            "http://backend:4317",
            true,
        ),
        (
            "endpoint: {value: 'http://backend:4317'}",
            "http://backend:4317",
            true,
        ),
        (
            "endpoint: {value: 'http://backend:4317'}, tls: {insecure: true, insecureSkipVerify: true, ca: {valueFrom: {secretKeyRef: {name: gone, namespace: ns, key: ca}}}}",
            "http://backend:4317",
            true,
        ),
        (
            "endpoint: {value: 'https://backend:4317'}, tls: {insecureSkipVerify: true}",
            "https://backend:4317",
            false,
        ),
    ] {
        let r = env
            .resolve(&trace(&format!("output: {{otlp: {{{otlp}}}}}")))
            .unwrap_or_else(|e| panic!("{otlp}: {e}"));
        let o = &r.pipeline.output;
        assert_eq!(o.endpoint.as_deref(), Some(endpoint), "{otlp}");
        assert_eq!(o.tls.insecure, insecure, "{otlp}");
        assert_eq!(
            o.tls.insecure_skip_verify,
            otlp.contains("insecureSkipVerify") && !insecure,
            "{otlp}"
        );
        assert_eq!(o.tls.ca_file, None, "{otlp}");
        assert!(r.pem_files.is_empty(), "{otlp}");
    }
}

#[test]
fn tls_material_becomes_files_and_expiry_is_reported() {
    let c = certs((2031, 1, 1), (2030, 1, 10));
    let secrets = StaticSecrets::new().with(
        "sap-cloud-logging-integration",
        "sap-cloud-logging",
        [
            ("ingest-otlp-endpoint", "https://ingest.example.com"),
            ("ingest-otlp-ca", c.ca.as_str()),
            ("ingest-otlp-cert", c.cert.as_str()),
            ("ingest-otlp-key", c.key.as_str()),
        ],
    );
    let mut env = Env::new(secrets);
    let s: MetricPipelineSpec = spec(
        "\
output:
  otlp:
    protocol: http
    endpoint: {valueFrom: {secretKeyRef: {name: sap-cloud-logging, namespace: sap-cloud-logging-integration, key: ingest-otlp-endpoint}}}
    tls:
      ca: {valueFrom: {secretKeyRef: {name: sap-cloud-logging, namespace: sap-cloud-logging-integration, key: ingest-otlp-ca}}}
      cert: {valueFrom: {secretKeyRef: {name: sap-cloud-logging, namespace: sap-cloud-logging-integration, key: ingest-otlp-cert}}}
      key: {valueFrom: {secretKeyRef: {name: sap-cloud-logging, namespace: sap-cloud-logging-integration, key: ingest-otlp-key}}}
",
    );
    // 9 days before the client certificate ends.
    let r = env.resolve(&s).unwrap();
    assert_eq!(
        r.cert_warning,
        Some(CertWarning {
            message: "TLS certificate is about to expire, configured certificate is valid until 2030-01-10".to_owned()
        })
    );
    let tls = &r.pipeline.output.tls;
    assert!(!tls.insecure);
    for (path, pem) in [
        (&tls.ca_file, &c.ca),
        (&tls.cert_file, &c.cert),
        (&tls.key_file, &c.key),
    ] {
        let path = path.as_ref().unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), *pem);
        assert!(r.pem_files.contains(path));
    }
    assert_eq!(r.pem_files.len(), 3);
    // Resolving again gives the same files.
    assert_eq!(env.resolve(&s).unwrap().pem_files, r.pem_files);

    // A month earlier: no warning.
    env.now = day(2029, 12, 1);
    assert_eq!(env.resolve(&s).unwrap().cert_warning, None);
    // After its end: expired, and nothing is written.
    env.now = day(2030, 1, 11);
    let fresh = Env {
        now: env.now,
        ..Env::new(env.secrets.clone())
    };
    assert_eq!(
        verdict(fresh.resolve(&s)),
        rejected(
            reason::TLS_CERTIFICATE_EXPIRED,
            "TLS certificate expired on 2030-01-10"
        )
    );
    assert_eq!(std::fs::read_dir(fresh.pems.dir()).unwrap().count(), 0);

    // The CA, inline, with escaped newlines (one line of YAML).
    let c = certs((2030, 1, 5), (2031, 1, 1));
    let s = trace(&format!(
        "output: {{otlp: {{endpoint: {{value: 'https://x:4317'}}, tls: {{ca: {{value: '{}'}}}}}}}}",
        c.ca.replace('\n', "\\n")
    ));
    let inline = Env::new(StaticSecrets::new());
    let r = inline.resolve(&s).unwrap();
    assert_eq!(
        r.cert_warning.unwrap().message,
        "TLS CA certificate is about to expire, configured certificate is valid until 2030-01-05"
    );
    assert_eq!(
        std::fs::read_to_string(r.pipeline.output.tls.ca_file.unwrap()).unwrap(),
        c.ca,
        "stored sanitised"
    );
    let mut late = Env::new(StaticSecrets::new());
    late.now = day(2030, 2, 1);
    assert_eq!(
        verdict(late.resolve(&s)),
        rejected(
            reason::TLS_CERTIFICATE_EXPIRED,
            "TLS CA certificate expired on 2030-01-05"
        )
    );
    // A mismatched key.
    let s = trace(&format!(
        "output: {{otlp: {{endpoint: {{value: 'https://x:4317'}}, tls: {{cert: {{value: {:?}}}, key: {{value: {:?}}}}}}}}}",
        c.cert, c.other_key
    ));
    assert_eq!(
        verdict(Env::new(StaticSecrets::new()).resolve(&s)),
        rejected(
            reason::TLS_CONFIGURATION_INVALID,
            "TLS configuration invalid: certificate and private key do not match"
        )
    );
}

#[test]
fn inputs_and_namespace_selectors() {
    let env = Env::new(StaticSecrets::new());
    let out = "output: {otlp: {endpoint: {value: 'https://x:4317'}}}\n";
    let ns = |include: Option<&[&str]>, exclude: Option<&[&str]>| NamespacesConfig {
        system: include.is_none(),
        include: include.map(|l| l.iter().map(|s| (*s).to_owned()).collect()),
        exclude: exclude.map(|l| l.iter().map(|s| (*s).to_owned()).collect()),
    };
    for (input, want, enabled) in [
        ("", ns(None, None), true),
        ("input: {}", ns(None, None), true),
        ("input: {otlp: {}}", ns(None, None), true),
        ("input: {otlp: {namespaces: {}}}", ns(None, None), true),
        (
            "input: {otlp: {namespaces: {include: []}}}",
            ns(None, None),
            true,
        ),
        (
            "input: {otlp: {namespaces: {include: [a, b]}}}",
            ns(Some(&["a", "b"]), None),
            true,
        ),
        (
            "input: {otlp: {namespaces: {exclude: [kube-system]}}}",
            ns(None, Some(&["kube-system"])),
            true,
        ),
        ("input: {otlp: {enabled: false}}", ns(None, None), false),
    ] {
        let s: LogPipelineSpec = spec(&format!("{out}{input}"));
        let r = env.resolve(&s).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.pipeline.input.namespaces, want, "{input}");
        assert!(r.pipeline.input.no_namespace, "{input}");
        assert_eq!(r.input_enabled, enabled, "{input}");
        assert_eq!(r.pipeline.name, "logpipeline.p");
        assert_eq!(r.pipeline.signals, [Signal::Logs]);
    }
    let both: MetricPipelineSpec = spec(&format!(
        "{out}input: {{otlp: {{namespaces: {{include: [a], exclude: [b]}}}}}}"
    ));
    assert_eq!(
        verdict(env.resolve(&both)),
        rejected(
            reason::CONFIGURATION_INVALID,
            "Pipeline configuration invalid: spec.input.otlp.namespaces: include and exclude are mutually exclusive: keep one"
        )
    );
    let bad: MetricPipelineSpec = spec(&format!(
        "{out}input: {{otlp: {{namespaces: {{include: [Not_A_Namespace]}}}}}}"
    ));
    assert_eq!(
        verdict(env.resolve(&bad)),
        rejected(
            reason::CONFIGURATION_INVALID,
            "Pipeline configuration invalid: spec.input.otlp.namespaces.include[0]: \"Not_A_Namespace\" is not a namespace name (1-63 characters of a-z, 0-9, '-', starting and ending alphanumeric)"
        )
    );
}

#[test]
fn the_seedgate_queue_extension() {
    let env = Env::new(StaticSecrets::new());
    let out = "output: {otlp: {endpoint: {value: 'https://x:4317'}}}\n";
    let defaults = QueueConfig {
        max_bytes: ByteSize::gib(2),
        when_full: WhenFull::Block,
        retry_after: Duration::from_secs(7),
    };
    let resolve_with = |env: &Env, yaml: &str| {
        let ctx = ResolveContext {
            queue_defaults: defaults,
            ..env.ctx()
        };
        resolve("p", &trace(&format!("{out}{yaml}")), &ctx).map(|r| r.pipeline.queue)
    };
    for (yaml, want) in [
        ("", None),
        ("seedgate: {}", None),
        ("seedgate: {queue: {}}", Some(defaults)),
        (
            "seedgate: {queue: {maxBytes: 64Mi, whenFull: dropNewest}}",
            Some(QueueConfig {
                max_bytes: ByteSize::mib(64),
                when_full: WhenFull::DropNewest,
                retry_after: Duration::from_secs(7),
            }),
        ),
        (
            "seedgate: {queue: {maxBytes: 1GiB}}",
            Some(QueueConfig {
                max_bytes: ByteSize::gib(1),
                ..defaults
            }),
        ),
        ("seedgate: {queue: {whenFull: block}}", Some(defaults)),
    ] {
        assert_eq!(resolve_with(&env, yaml), Ok(want), "{yaml}");
    }
}

#[test]
fn long_names_do_not_fit() {
    let env = Env::new(StaticSecrets::new());
    let s = trace("output: {otlp: {endpoint: {value: 'https://x:4317'}}}");
    let ok = "a".repeat(49);
    assert_eq!(
        resolve(&ok, &s, &env.ctx()).unwrap().pipeline.name,
        format!("tracepipeline.{ok}")
    );
    let long = "a".repeat(50);
    assert_eq!(
        verdict(resolve(&long, &s, &env.ctx())),
        rejected(
            reason::CONFIGURATION_INVALID,
            &format!(
                "Pipeline configuration invalid: metadata.name: seedgate names this pipeline \"tracepipeline.{long}\", which is longer than 63 characters: use a name of at most 49 characters"
            )
        )
    );
}

#[test]
fn secret_refs_in_kyma_order() {
    let s = trace(
        "\
output:
  otlp:
    endpoint: {valueFrom: {secretKeyRef: {name: s, namespace: n, key: endpoint}}}
    authentication:
      basic:
        user: {valueFrom: {secretKeyRef: {name: s, namespace: n, key: user}}}
        password: {value: plain}
    headers:
      - {name: h, valueFrom: {secretKeyRef: {name: s, namespace: n, key: header}}}
      - {name: i, value: 'plain wins', valueFrom: {secretKeyRef: {name: s, namespace: n, key: unused}}}
    tls:
      ca: {valueFrom: {secretKeyRef: {name: s, namespace: n, key: ca}}}
      cert: {valueFrom: {secretKeyRef: {name: s, namespace: n, key: cert}}}
      key: {valueFrom: {secretKeyRef: {name: s, namespace: n, key: key}}}
",
    );
    let keys: Vec<&str> = secret_refs(&s).iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["endpoint", "user", "header", "ca", "cert", "key"]);
    let mut insecure = s.clone();
    insecure.output.otlp.tls.as_mut().unwrap().insecure = true;
    let keys: Vec<&str> = secret_refs(&insecure)
        .iter()
        .map(|r| r.key.as_str())
        .collect();
    assert_eq!(keys, ["endpoint", "user", "header"]);
}

#[test]
fn static_secrets_answer_like_the_api() {
    let s = StaticSecrets::new().with("ns", "a", [("k", "v")]);
    assert_eq!(
        s.get("ns", "a").unwrap(),
        Some(SecretData::from([("k".to_owned(), b"v".to_vec())]))
    );
    assert_eq!(s.get("ns", "b").unwrap(), None);
    assert_eq!(s.get("other", "a").unwrap(), None);
}

#[test]
fn an_http_output_becomes_a_fluent_bit_http_output() {
    let secrets = StaticSecrets::new().with(
        "backend",
        "creds",
        [
            ("host", "logs.example.com"),
            ("user", "fb"),
            ("password", "pw"),
        ],
    );
    let env = Env::new(secrets);
    // Kyma's upstream sample, with basic authentication from a Secret.
    let s: LogPipelineSpec = spec(
        "\
input:
  runtime:
    namespaces: {include: [shop]}
    keepAnnotations: true
output:
  http:
    dedot: true
    host: {valueFrom: {secretKeyRef: {name: creds, namespace: backend, key: host}}}
    user: {valueFrom: {secretKeyRef: {name: creds, namespace: backend, key: user}}}
    password: {valueFrom: {secretKeyRef: {name: creds, namespace: backend, key: password}}}
    port: '9880'
    uri: /ingest
    compress: gzip
    format: json_lines
",
    );
    let keys: Vec<&str> = secret_refs(&s).iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["host", "user", "password"]);
    let r = env.resolve(&s).unwrap();
    assert!(r.input_enabled);
    let p = &r.pipeline;
    assert_eq!(p.name, "logpipeline.p");
    assert_eq!(p.signals, [Signal::Logs]);
    assert_eq!(p.input.namespaces.include, Some(vec!["shop".to_owned()]));
    let o = &p.output;
    assert_eq!(o.kind, OutputType::FluentBitHttp);
    assert_eq!(o.endpoint.as_deref(), Some("https://logs.example.com:9880"));
    assert_eq!(o.path.as_deref(), Some("/ingest"));
    assert_eq!(o.compression, Compression::Gzip);
    assert!(!o.tls.insecure);
    assert_eq!(o.headers.len(), 1);
    assert_eq!(o.headers[0].name, "Authorization");
    assert_eq!(
        format!("{}{}", o.headers[0].prefix, o.headers[0].value),
        "Basic ZmI6cHc="
    );
    let fb = o.fluent_bit.as_ref().unwrap();
    assert_eq!(fb.format, FluentBitFormat::JsonLines);
    assert!(fb.dedot && fb.keep_annotations && !fb.drop_labels);
    // The whole file-configuration check agrees with what resolve built.
    assert!(config::pipeline_problems(p, &|f| f.to_owned()).is_empty());

    // Kyma's defaults: port 443, TLS, json, no compression, every
    // namespace but the system ones; the load-test pipeline's plain text.
    let s: LogPipelineSpec = spec(
        "output: {http: {host: {value: log-receiver.log-load-test}, tls: {insecure: true, insecureSkipVerify: true}}}\ninput: {runtime: {enabled: true}}",
    );
    let p = env.resolve(&s).unwrap().pipeline;
    assert_eq!(
        p.output.endpoint.as_deref(),
        Some("http://log-receiver.log-load-test:443")
    );
    assert!(p.output.tls.insecure && !p.output.tls.insecure_skip_verify);
    assert_eq!(p.output.compression, Compression::None);
    assert_eq!(
        p.output.fluent_bit.as_ref().unwrap().format,
        FluentBitFormat::Json
    );
    assert!(!p.input.namespaces.system && p.input.namespaces.include.is_none());
    assert!(p.input.namespaces.matches("shop") && !p.input.namespaces.matches("kube-system"));
    let s: LogPipelineSpec =
        spec("output: {http: {host: {value: h}}}\ninput: {runtime: {enabled: false}}");
    assert!(!env.resolve(&s).unwrap().input_enabled);
}

#[test]
fn http_output_refusals() {
    let env = Env::new(StaticSecrets::new());
    let out = |http: &str| -> LogPipelineSpec { spec(&format!("output: {{http: {{{http}}}}}")) };
    for (http, want) in [
        (
            "host: {value: 'https://myhost/logs'}, port: '80'",
            rejected(
                reason::ENDPOINT_INVALID,
                "HTTP output host invalid: host \"https://myhost/logs\" must be a host name or IP address, without scheme or path (the path goes in uri)",
            ),
        ),
        (
            "host: {value: h}, port: http",
            rejected(
                reason::ENDPOINT_INVALID,
                "HTTP output host invalid: port \"http\" is not a port number",
            ),
        ),
        (
            "host: {value: h}, user: {value: u}",
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.output.http: 'user' and 'password' go together (basic authentication)",
            ),
        ),
        (
            "host: {value: h}, compress: snappy",
            rejected(
                reason::CONFIGURATION_INVALID,
                "Pipeline configuration invalid: spec.output.http.compress: \"snappy\" is not supported: use gzip, or leave it out",
            ),
        ),
        (
            "host: {value: h}, format: msgpack",
            rejected(
                reason::UNSUPPORTED_FEATURE,
                "Not supported by seedgate: spec.output.http.format \"msgpack\" (seedgate sends json, json_lines or json_stream)",
            ),
        ),
        (
            "host: {valueFrom: {secretKeyRef: {name: gone, namespace: ns, key: host}}}",
            rejected(
                reason::REFERENCED_SECRET_MISSING,
                &conditions::msg_secret_missing("gone", "ns"),
            ),
        ),
        (
            "host: {value: h}, uri: /x, tls: {ca: {value: garbage}}",
            rejected(
                reason::TLS_CONFIGURATION_INVALID,
                "TLS configuration invalid: failed to decode PEM block containing CA certificate",
            ),
        ),
        (
            "host: {value: '10.0.0.7'}, tls: {insecure: true, ca: {value: garbage}}",
            Ok(()),
        ),
    ] {
        assert_eq!(verdict(env.resolve(&out(http))), want, "{http}");
    }
    let containers: LogPipelineSpec = spec(
        "output: {http: {host: {value: h}}}\ninput: {runtime: {containers: {exclude: [istio-proxy]}}}",
    );
    assert_eq!(
        verdict(env.resolve(&containers)),
        rejected(
            reason::UNSUPPORTED_FEATURE,
            "Not supported by seedgate: spec.input.runtime.containers (selecting containers needs Kyma's log agent: seedgate takes the logs the seed's agents send over OTLP and selects them by namespace; remove containers)"
        )
    );
    let filters: LogPipelineSpec =
        spec("output: {http: {host: {value: h}}}\nfilters: [{custom: 'Name grep'}]");
    assert_eq!(
        verdict(env.resolve(&filters)).unwrap_err().reason,
        reason::UNSUPPORTED_FEATURE
    );
}
