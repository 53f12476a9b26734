#!/bin/sh
# Serves the CouchDB-API test peer on 127.0.0.1:PORT (default 5984) until
# interrupted, installing its npm dependencies first if needed: a CouchDB to
# try cmbsd --store http://127.0.0.1:5984 with. It keeps its databases in
# memory only. Needs node and npm.
#
#   bash testdata/couchpeer/run.sh [PORT]
set -eu
dir=$(dirname "$0")
sh "$dir/install.sh"
COUCH_PEER_PORT=${1:-5984}
export COUCH_PEER_PORT
exec node "$dir/couch-peer.js"
