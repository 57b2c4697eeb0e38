// k6: all three signals at once as OTLP/JSON, the shares of a typical seed
// (logs 60%, metrics 30%, traces 10% of the requests), ramping arrival rate.
//   k6 run -e BASE_URL=http://127.0.0.1:4318 -e PEAK_RATE=1000 load-tests/k6/mixed.js
import { namespaces, pick, SIGNALS } from './lib/otlp.js';
import { RECORDS, TENANTS, rampingScenario, send, thresholds } from './lib/run.js';

const NAMESPACES = namespaces(TENANTS);

export const options = {
  scenarios: {
    logs: rampingScenario('logs', 0.6),
    metrics: rampingScenario('metrics', 0.3),
    traces: rampingScenario('traces', 0.1),
  },
  thresholds: thresholds(['logs', 'metrics', 'traces']),
};

function one(signal) {
  const body = SIGNALS[signal].build({ namespace: pick(NAMESPACES), records: RECORDS });
  send(signal, SIGNALS[signal].path, JSON.stringify(body), 'application/json');
}

export function logs() {
  one('logs');
}

export function metrics() {
  one('metrics');
}

export function traces() {
  one('traces');
}
