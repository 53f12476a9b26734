#!/usr/bin/env bash
# The benchmark command with what it compares against installed: the
# CouchDB-API test peer (npm) and Debian's nats-server (for the L2/L3.2
# fan-out column; skipped with a message when it cannot be installed).
# Usage: bash scripts/bench.sh [-quick] [cmbsbench flags…]
set -euo pipefail
cd "$(dirname "$0")/.."
bash testdata/couchpeer/install.sh
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null) ||
      echo "warning: could not install nats-server; the NATS column will be skipped"
  fi
fi
exec go run ./cmd/cmbsbench "$@"
