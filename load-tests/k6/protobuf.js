// k6: OTLP/HTTP with protobuf bodies (application/x-protobuf). k6 cannot
// encode protobuf without an extension, so the bodies are encoded before the
// run by make-payloads.py (same builders as the JSON scripts, PAYLOADS per
// signal, each for another tenant) and read here as binary files:
//   python3 load-tests/k6/make-payloads.py            # writes load-tests/k6/payloads/
//   k6 run -e BASE_URL=http://127.0.0.1:4318 load-tests/k6/protobuf.js
import { rampingScenario, send, thresholds } from './lib/run.js';

const PAYLOADS = parseInt(__ENV.PAYLOADS || '50', 10);
const PATHS = { logs: '/v1/logs', metrics: '/v1/metrics', traces: '/v1/traces' };

// open() only works in the init context: every file is read once, up front.
const BODIES = {};
for (const signal of Object.keys(PATHS)) {
  BODIES[signal] = [];
  for (let i = 0; i < PAYLOADS; i++) {
    BODIES[signal].push(open(`./payloads/${signal}-${i}.pb`, 'b'));
  }
}

export const options = {
  scenarios: {
    logs: rampingScenario('logs', 0.6),
    metrics: rampingScenario('metrics', 0.3),
    traces: rampingScenario('traces', 0.1),
  },
  thresholds: thresholds(['logs', 'metrics', 'traces']),
};

function one(signal) {
  const list = BODIES[signal];
  send(signal, PATHS[signal], list[Math.floor(Math.random() * list.length)], 'application/x-protobuf');
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
