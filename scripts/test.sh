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

echo "== the OCCI suite again, on CouchDB (the CouchDB-API test peer, or COUCHDB_URL)"
# The test binaries start one peer each (couchpeer.StartServer); tests that
# run on both stores in the first pass run on CouchDB only here.
CMBS_TEST_STORE=couchdb go test -race -count=1 -timeout 20m ./occi ./occi/entities

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
