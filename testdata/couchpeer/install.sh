#!/bin/sh
# Installs the couch-peer's npm dependencies (pinned by package-lock.json) into
# testdata/couchpeer/node_modules, unless they are already installed from the
# same lockfile. Needs node and npm; safe to run repeatedly.
set -eu
cd "$(dirname "$0")"

# A stamp of the manifests the tree was installed from tells a stale tree
# (lockfile changed since) from a current one without asking npm.
stamp=node_modules/.cmbs-install-stamp
want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "couchpeer/install.sh: npm not found (install Node.js >= 18 with npm)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
