// OTLP/JSON request bodies for seedgate's load tests.
//
// Pure functions, no k6 imports: the k6 scripts use them, and
// tests/it/load_tests.rs runs them under node and POSTs what they build to a
// real seedgate. OTLP/JSON as the spec defines it: lowerCamelCase field
// names, traceId/spanId as hex strings, 64-bit integers (timeUnixNano,
// asInt, count) as decimal strings, enums (severityNumber, kind,
// aggregationTemporality, status.code) as integers.
//
// Every builder takes `opts`:
//   namespace  k8s.namespace.name of the one resource (the routing key)
//   records    log records / spans / data points in the request
//   rng        a () => [0,1) function (default Math.random), so a test can
//              make the bodies deterministic
//   nowMs      the wall clock in milliseconds (default Date.now())

/** `shoot--<project>--<name>` namespaces: `count` tenants over `projects` projects. */
export function namespaces(count, projects = 10) {
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push(`shoot--p${String(i % projects).padStart(2, '0')}--s${String(i).padStart(4, '0')}`);
  }
  return out;
}

/** One element of `list`, drawn with `rng`. */
export function pick(list, rng = Math.random) {
  return list[Math.floor(rng() * list.length) % list.length];
}

/** `bytes` random bytes as lowercase hex (traceId: 16, spanId: 8). */
export function hexId(bytes, rng = Math.random) {
  let s = '';
  for (let i = 0; i < bytes; i++) {
    s += Math.floor(rng() * 256).toString(16).padStart(2, '0');
  }
  // An all-zero id is invalid in OTLP; the odds are tiny but make it impossible.
  return /^0+$/.test(s) ? `${s.slice(0, -1)}1` : s;
}

/** Milliseconds → unix nanoseconds as a decimal string (int64 in OTLP/JSON). */
export function nanos(ms) {
  return `${Math.floor(ms)}000000`;
}

function str(key, value) {
  return { key, value: { stringValue: value } };
}

function defaults(opts) {
  return {
    namespace: opts.namespace || 'shoot--p00--s0000',
    records: opts.records || 10,
    rng: opts.rng || Math.random,
    nowMs: opts.nowMs === undefined ? Date.now() : opts.nowMs,
  };
}

function resource(namespace, service) {
  return {
    attributes: [
      str('k8s.namespace.name', namespace),
      str('service.name', service),
      str('k8s.pod.name', `${service}-0`),
    ],
  };
}

const SCOPE = { name: 'seedgate-load-tests', version: '1.0.0' };
const SEVERITIES = [
  [5, 'DEBUG'],
  [9, 'INFO'],
  [13, 'WARN'],
  [17, 'ERROR'],
];

/** ExportLogsServiceRequest: one resource, `records` log records of ~200 bytes. */
export function logsBody(options = {}) {
  const o = defaults(options);
  const logRecords = [];
  for (let i = 0; i < o.records; i++) {
    const [severityNumber, severityText] = pick(SEVERITIES, o.rng);
    logRecords.push({
      timeUnixNano: nanos(o.nowMs),
      observedTimeUnixNano: nanos(o.nowMs),
      severityNumber,
      severityText,
      body: {
        stringValue: `GET /healthz 200 ${Math.floor(o.rng() * 1000)}ms request ${i} from the k6 load test of seedgate`,
      },
      attributes: [str('log.file.path', '/var/log/pods/app.log'), { key: 'line', value: { intValue: String(i) } }],
      traceId: hexId(16, o.rng),
      spanId: hexId(8, o.rng),
    });
  }
  return {
    resourceLogs: [
      {
        resource: resource(o.namespace, 'kube-apiserver'),
        scopeLogs: [{ scope: SCOPE, logRecords }],
      },
    ],
  };
}

/** ExportMetricsServiceRequest: one resource, a cumulative sum and a gauge sharing `records` data points. */
export function metricsBody(options = {}) {
  const o = defaults(options);
  const sumPoints = [];
  const gaugePoints = [];
  for (let i = 0; i < o.records; i++) {
    const attributes = [str('code', String(200 + (i % 5)))];
    if (i % 2 === 0) {
      sumPoints.push({
        attributes,
        startTimeUnixNano: nanos(o.nowMs - 60000),
        timeUnixNano: nanos(o.nowMs),
        asInt: String(Math.floor(o.rng() * 1e6)),
      });
    } else {
      gaugePoints.push({ attributes, timeUnixNano: nanos(o.nowMs), asDouble: o.rng() * 100 });
    }
  }
  const metrics = [];
  if (sumPoints.length) {
    metrics.push({
      name: 'apiserver_request_total',
      unit: '1',
      sum: { dataPoints: sumPoints, aggregationTemporality: 2, isMonotonic: true },
    });
  }
  if (gaugePoints.length) {
    metrics.push({ name: 'process_cpu_usage', unit: '%', gauge: { dataPoints: gaugePoints } });
  }
  return {
    resourceMetrics: [
      {
        resource: resource(o.namespace, 'kube-apiserver'),
        scopeMetrics: [{ scope: SCOPE, metrics }],
      },
    ],
  };
}

/** ExportTraceServiceRequest: one resource, one trace of `records` spans (a root and its children). */
export function tracesBody(options = {}) {
  const o = defaults(options);
  const traceId = hexId(16, o.rng);
  const rootId = hexId(8, o.rng);
  const spans = [];
  for (let i = 0; i < o.records; i++) {
    const span = {
      traceId,
      spanId: i === 0 ? rootId : hexId(8, o.rng),
      name: i === 0 ? 'GET /api/v1/pods' : `etcd.get ${i}`,
      kind: i === 0 ? 2 : 3, // SERVER, CLIENT
      startTimeUnixNano: nanos(o.nowMs - 5),
      endTimeUnixNano: nanos(o.nowMs),
      attributes: [str('http.request.method', 'GET'), { key: 'http.response.status_code', value: { intValue: '200' } }],
      status: { code: 1 }, // OK
    };
    if (i > 0) span.parentSpanId = rootId;
    spans.push(span);
  }
  return {
    resourceSpans: [
      {
        resource: resource(o.namespace, 'kube-apiserver'),
        scopeSpans: [{ scope: SCOPE, spans }],
      },
    ],
  };
}

/** The builder and the OTLP/HTTP path of each signal. */
export const SIGNALS = {
  logs: { path: '/v1/logs', build: logsBody },
  metrics: { path: '/v1/metrics', build: metricsBody },
  traces: { path: '/v1/traces', build: tracesBody },
};

/** Records (log records, data points, spans) in a body built above: what seedgate counts. */
export function recordCount(signal, body) {
  if (signal === 'logs') {
    return body.resourceLogs.flatMap((r) => r.scopeLogs).reduce((n, s) => n + s.logRecords.length, 0);
  }
  if (signal === 'traces') {
    return body.resourceSpans.flatMap((r) => r.scopeSpans).reduce((n, s) => n + s.spans.length, 0);
  }
  return body.resourceMetrics
    .flatMap((r) => r.scopeMetrics)
    .flatMap((s) => s.metrics)
    .reduce((n, m) => n + (m.sum || m.gauge || m.histogram).dataPoints.length, 0);
}
