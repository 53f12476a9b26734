#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (the
# CouchDB-API test peer from npm, Debian's python3-zmq for the ZeroMQ interop
# test), then vets, runs every test with the race detector, and runs each fuzz
# target briefly.
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

echo "== gofmt and go vet"
unformatted=$(gofmt -l . | grep -v '/testdata/' || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== the OCCI suite again, on CouchDB (the CouchDB-API test peer)"
if [ -n "${COUCHDB_URL:-}" ]; then
  CMBS_TEST_STORE=couchdb go test -race -count=1 -timeout 20m ./occi/...
else
  peer_log=$(mktemp)
  (cd testdata/couchpeer && COUCH_PEER_PORT=0 exec node couch-peer.js >"$peer_log" 2>&1) &
  peer_pid=$!
  trap 'kill "$peer_pid" 2>/dev/null || true' EXIT
  url=""
  for _ in $(seq 100); do
    url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$peer_log" | head -n 1 || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  if [ -z "$url" ]; then
    echo "the CouchDB-API test peer did not start:"; cat "$peer_log"; exit 1
  fi
  COUCHDB_URL="$url" CMBS_TEST_STORE=couchdb go test -race -count=1 -timeout 20m ./occi/...
  kill "$peer_pid" 2>/dev/null || true
  trap - EXIT
fi

echo "== fuzzing briefly"
fuzz() { # package target
  go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-10s}" "$1"
}
while read -r pkg target; do
  fuzz "$pkg" "$target"
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r t; do
    echo "./$(dirname "${f#./}") $t"
  done
done | sort -u)
echo "== all tests passed"
