// k6: OTLP/HTTP logs as OTLP/JSON against seedgate, ramping arrival rate,
// spread over TENANTS shoot namespaces. See ../README.md.
//   k6 run -e BASE_URL=http://127.0.0.1:4318 load-tests/k6/logs.js
import { namespaces, pick, SIGNALS } from './lib/otlp.js';
import { RECORDS, TENANTS, rampingScenario, send, thresholds } from './lib/run.js';

const NAMESPACES = namespaces(TENANTS);

export const options = {
  scenarios: { logs: rampingScenario('logs') },
  thresholds: thresholds(['logs']),
};

export function logs() {
  const body = SIGNALS.logs.build({ namespace: pick(NAMESPACES), records: RECORDS });
  send('logs', SIGNALS.logs.path, JSON.stringify(body), 'application/json');
}
