#!/usr/bin/env bash
# The project's test command: installs what the tests need that cargo does
# not bring, then runs every test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seedgate-target}"
# A real Prometheus and promtool check the dashboard and the alert rules.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
if [ -f tests/requirements.txt ]; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
cargo test --all-targets "$@"
