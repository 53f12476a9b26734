#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (the
# CouchDB-API test peer from npm, Debian's python3-zmq for the ZeroMQ interop
# test, Debian's nats-server for the bench's JetStream baseline tests,
# Debian's chromium for the console's browser tests), then vets, runs
# every test with the race detector, runs the README's walk-throughs
# (scripts/readme.sh), and runs each fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
bash testdata/couchpeer/install.sh
if ! /usr/bin/python3 -c 'import zmq' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-zmq >/dev/null) ||
      echo "warning: could not install python3-zmq; the ZeroMQ interop test will say so"
  else
    echo "warning: python3-zmq is missing (apt-get install python3-zmq); the ZeroMQ interop test will say so"
  fi
fi

# Debian's nats-server, for cmbsbench's NATS JetStream baseline tests
# (cmd/cmbsbench; they skip without it).
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null) ||
      echo "warning: could not install nats-server; the JetStream baseline tests will skip"
  else
    echo "warning: nats-server is missing (apt-get install nats-server); the JetStream baseline tests will skip"
  fi
fi

# Debian's chromium, headless, for the console's browser tests (console/).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ||
      echo "warning: could not install chromium; the console's browser tests will say so"
  else
    echo "warning: chromium is missing (apt-get install chromium); the console's browser tests will say so"
  fi
fi

echo "== gofmt and go vet"
unformatted=$(gofmt -l . | grep -v '/testdata/' || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== the OCCI suite again, on CouchDB (the CouchDB-API test peer, or COUCHDB_URL)"
# The test binaries start one peer each (couchpeer.StartServer); tests that
# run on both stores in the first pass run on CouchDB only here.
CMBS_TEST_STORE=couchdb go test -race -count=1 -timeout 20m ./occi ./occi/entities

echo "== the README's walk-throughs, as written"
bash scripts/readme.sh

echo "== fuzzing: each target for ${FUZZTIME:-10s} once it is fuzzing"
# go test's -fuzztime counts from the start, replaying the seed corpus and
# the cached one (baseline coverage) included, and that replay grows with the
# cache; and a new input is minimized for up to a minute by default, during
# which nothing else runs. Either could take a whole short budget, so each target
# runs with a long -fuzztime and a short -fuzzminimizetime, and is
# interrupted once it has fuzzed for FUZZTIME. Building and replaying are
# bounded by FUZZ_START_TIMEOUT seconds.
command -v pgrep >/dev/null || { echo "test.sh: the fuzz step needs pgrep (procps)"; exit 1; }
fuzz() { # package target
  local pkg=$1 target=$2 log pid rc=0 waited=0
  log=$(mktemp)
  set -m # its own process group, to end it all if it will not stop
  go test -run '^$' -fuzz "^$2\$" -fuzztime 1h -fuzzminimizetime 2s "$pkg" >"$log" 2>&1 </dev/null &
  pid=$!
  set +m
  while kill -0 "$pid" 2>/dev/null && ! grep -q 'now fuzzing' "$log"; do
    if [ "$waited" -ge "${FUZZ_START_TIMEOUT:-300}" ]; then
      kill -TERM -- "-$pid" 2>/dev/null || true
      wait "$pid" || true
      cat "$log"; rm -f "$log"
      echo "$pkg $target: not fuzzing after ${waited}s (building, replaying its corpus)"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    sleep "${FUZZTIME:-10s}"
    # The test binary (go test's child) stops its workers and passes on
    # SIGINT; what it started itself (a CouchDB-API peer) it stops too.
    kill -INT $(pgrep -P "$pid") 2>/dev/null || true
    # A worker stuck in one input would keep it from stopping.
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null && sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || true
      wait "$pid" || true
      cat "$log"; rm -f "$log"
      echo "$pkg $target: still running 60s after the interrupt"
      return 1
    fi
  fi
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$log"; rm -f "$log"
    return 1
  fi
  echo "$pkg $target: fuzzing after ${waited}s; $(grep -o 'execs: [0-9]*.*' "$log" | tail -n 1)"
  rm -f "$log"
}
while read -r pkg target; do
  fuzz "$pkg" "$target"
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r t; do
    echo "./$(dirname "${f#./}") $t"
  done
done | sort -u)
echo "== all tests passed"
