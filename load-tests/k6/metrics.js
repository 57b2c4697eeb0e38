// k6: OTLP/HTTP metrics as OTLP/JSON against seedgate, ramping arrival rate,
// spread over TENANTS shoot namespaces. See ../README.md.
//   k6 run -e BASE_URL=http://127.0.0.1:4318 load-tests/k6/metrics.js
import { namespaces, pick, SIGNALS } from './lib/otlp.js';
import { RECORDS, TENANTS, rampingScenario, send, thresholds } from './lib/run.js';

const NAMESPACES = namespaces(TENANTS);

export const options = {
  scenarios: { metrics: rampingScenario('metrics') },
  thresholds: thresholds(['metrics']),
};

export function metrics() {
  const body = SIGNALS.metrics.build({ namespace: pick(NAMESPACES), records: RECORDS });
  send('metrics', SIGNALS.metrics.path, JSON.stringify(body), 'application/json');
}
