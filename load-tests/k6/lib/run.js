// The k6 side shared by the scripts: options from __ENV and one send.
// (Imports k6 modules, so node cannot run it; lib/otlp.js stays pure.)
import http from 'k6/http';
import { check } from 'k6';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:4318').replace(/\/$/, '');
export const TENANTS = parseInt(__ENV.TENANTS || '200', 10);
export const RECORDS = parseInt(__ENV.RECORDS || '100', 10);
const START_RATE = parseInt(__ENV.START_RATE || '10', 10);
const PEAK_RATE = parseInt(__ENV.PEAK_RATE || '500', 10);
const RAMP = __ENV.RAMP || '1m';
const HOLD = __ENV.HOLD || '2m';
const P99_MS = parseInt(__ENV.P99_MS || '250', 10);

/** A ramping-arrival-rate scenario: START_RATE → PEAK_RATE requests/s over RAMP, HOLD at the peak, down in 30s. */
export function rampingScenario(exec, share = 1) {
  return {
    executor: 'ramping-arrival-rate',
    exec,
    startRate: Math.max(1, Math.round(START_RATE * share)),
    timeUnit: '1s',
    preAllocatedVUs: Math.max(10, Math.round(50 * share)),
    maxVUs: Math.max(50, Math.round(500 * share)),
    stages: [
      { target: Math.max(1, Math.round(PEAK_RATE * share)), duration: RAMP },
      { target: Math.max(1, Math.round(PEAK_RATE * share)), duration: HOLD },
      { target: 0, duration: '30s' },
    ],
    tags: { signal: exec },
  };
}

/** Thresholds: under 1% failed requests (a 429 or 503 is a failure), p99 under P99_MS per signal, every check passed. */
export function thresholds(signals) {
  const t = {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  };
  for (const s of signals) {
    t[`http_req_duration{signal:${s}}`] = [`p(99)<${P99_MS}`];
  }
  return t;
}

const REJECTED = { logs: 'rejectedLogRecords', metrics: 'rejectedDataPoints', traces: 'rejectedSpans' };

/** POSTs one request body to /v1/<signal> and checks the answer. */
export function send(signal, path, body, contentType) {
  const res = http.post(`${BASE_URL}${path}`, body, {
    headers: { 'Content-Type': contentType },
    tags: { signal },
  });
  check(res, {
    'status is 200': (r) => r.status === 200,
    'no rejected records': (r) => {
      if (r.status !== 200 || contentType !== 'application/json' || !r.body) return true;
      const ps = JSON.parse(r.body).partialSuccess;
      return !ps || !ps[REJECTED[signal]] || ps[REJECTED[signal]] === '0';
    },
  });
  return res;
}
