// k6: OTLP/HTTP traces as OTLP/JSON against seedgate, ramping arrival rate,
// spread over TENANTS shoot namespaces. See ../README.md.
//   k6 run -e BASE_URL=http://127.0.0.1:4318 load-tests/k6/traces.js
import { namespaces, pick, SIGNALS } from './lib/otlp.js';
import { RECORDS, TENANTS, rampingScenario, send, thresholds } from './lib/run.js';

const NAMESPACES = namespaces(TENANTS);

export const options = {
  scenarios: { traces: rampingScenario('traces') },
  thresholds: thresholds(['traces']),
};

export function traces() {
  const body = SIGNALS.traces.build({ namespace: pick(NAMESPACES), records: RECORDS });
  send('traces', SIGNALS.traces.path, JSON.stringify(body), 'application/json');
}
