#!/usr/bin/env bash
# Runs the README's walk-throughs as written: the ```sh blocks under the
# given headings of README.md, in order, in a copy of the repository, with
# the `cmbsd` that the README's own `go install ./cmd/cmbsd` builds from it.
# A comment "# NNN" on a command's line (or the comment line right after it)
# is the HTTP status its curl must answer; "# NNN once …" allows that status
# to come a moment later (retried for up to 10 s). A command that starts a
# server in the foreground (`cmbsd …`, `go run ./cmd/cmbsd …`,
# `bash testdata/couchpeer/run.sh`) is run in the background, as a reader
# would in another terminal, and waited for. Every process a session started
# is stopped when it ends: each background command is its own process group
# (job control on), and the whole group is killed, so the server that
# `go run` starts goes with it.
#
# A here-document in a block (cat > f <<'END' … END) is written as is.
#
# Each session is one shell, as a reader's terminal, in a fresh copy of the
# repository; sessions are separated by "--", and the cmbsd installed by
# the first stays installed for the next. With no arguments, the README's
# walk-throughs: the three servers once beside the walk-through's server,
# once alone, then CouchDB, then the two CURVE servers, then smartmob, then
# three servers on one CouchDB behind a round-robin proxy, then the bus:
#
#   bash scripts/readme.sh 'Set up' 'Installing cmbsd' 'Walk-through (pyCMBS README §4)' \
#       'Three servers brokering messages' 'Running processes (the Process Registry)' \
#       -- 'Three servers brokering messages' \
#       -- 'On CouchDB' -- 'Two servers over CURVE' -- 'Deploy an app (smartmob)' \
#       -- 'Several servers on one CouchDB' -- 'The bus: Choria RPC and events on ZeroMQ' \
#       -- 'Piping bytes through a definition (streamed execute)'
#
# Where `unshare -rn` works, everything runs in a network namespace of its
# own, so the README's fixed ports (8090–8094, 5984, the members' sockets)
# cannot clash with anything on the machine; elsewhere (or with
# READMESH_NO_NAMESPACE=1) they must be free.
# READMESH_TIMEOUT bounds each session (seconds, default 120).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
readme=$root/README.md

if [ $# -eq 0 ]; then
  set -- 'Set up' 'Installing cmbsd' 'Walk-through (pyCMBS README §4)' 'Three servers brokering messages' \
    'Running processes (the Process Registry)' -- 'Three servers brokering messages' -- 'On CouchDB' -- 'Two servers over CURVE' \
    -- 'Deploy an app (smartmob)' -- 'Several servers on one CouchDB' \
    -- 'The bus: Choria RPC and events on ZeroMQ' -- 'Piping bytes through a definition (streamed execute)'
fi

# Outside the namespace: what needs the network or the original tree.
if [ -z "${READMESH_INNER:-}" ]; then
  command -v curl >/dev/null || { echo "readme.sh: curl is needed" >&2; exit 1; }
  bash "$root/testdata/couchpeer/install.sh"
  (cd "$root" && go mod download)
  work=$(mktemp -d "${TMPDIR:-/tmp}/cmbs-readme.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # A fresh clone for each session (copied from this one inside): the
  # tracked files and new ones not ignored, as they are in the working tree;
  # the peer's npm dependencies are linked, not copied.
  mkdir "$work/repo"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar -c --null -T - -f -) | tar -x -C "$work/repo"
  ln -s "$root/testdata/couchpeer/node_modules" "$work/repo/testdata/couchpeer/node_modules"
  export READMESH_INNER=1 READMESH_WORK=$work
  if [ -z "${READMESH_NO_NAMESPACE:-}" ] && command -v ip >/dev/null && unshare -rnpf --kill-child sh -c 'ip link set lo up' 2>/dev/null; then
    # -p -f --kill-child: whatever a session leaves running dies with it.
    unshare -rnpf --kill-child bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
  else
    echo "readme.sh: no network namespace (unshare -rnpf or ip failed): the README's ports must be free" >&2
    bash "$0" "$@"
  fi
  exit
fi

work=$READMESH_WORK
export GOBIN=$work/bin PATH=$work/bin:$PATH GOPROXY=off
# The README's pyzmq examples run `python3` as a reader with Debian's
# python3-zmq would (scripts/test.sh installs it): where the first python3
# on PATH cannot import zmq (a pyenv, a venv) but Debian's can, Debian's is
# the one the sessions find.
if ! python3 -c 'import zmq' 2>/dev/null && /usr/bin/python3 -c 'import zmq' 2>/dev/null; then
  mkdir -p "$work/bin" && ln -sf /usr/bin/python3 "$work/bin/python3"
fi

# extract HEADING... prints the ```sh blocks under those headings (not their
# subsections) as one script: each line preceded by a trace, status comments
# turned into checks, foreground servers sent to the background.
extract() {
  awk -v want="$(printf '%s\n' "$@")" '
    function q(s) { gsub(/\047/, "\047\\\047\047", s); return "\047" s "\047" }
    BEGIN { n = split(want, w, "\n"); for (i = 1; i <= n; i++) if (w[i] != "") wanted[w[i]] = 1 }
    /^```/ {
      if (!fence) { fence = 1; run = ($0 == "```sh") && (heading in wanted); if (run) blocks++ }
      else { fence = 0; run = 0 }
      next
    }
    !fence && /^#+ / { heading = $0; sub(/^#+ /, "", heading); next }
    !run { next }
    # A here-document body is passed through as written, up to its end word.
    heredoc != "" { print; if ($0 == heredoc) heredoc = ""; next }
    {
      line = $0; code = ""; once = 0
      if (line ~ /^[ \t]*#[ \t]+[1-5][0-9][0-9]([^0-9]|$)/) {
        # A status for the command before.
        c = line; sub(/^[ \t]*#[ \t]+/, "", c); code = substr(c, 1, 3)
        print "expect_status " code " " NR
        next
      }
      if (match(line, /[ \t]#[ \t]+[1-5][0-9][0-9]([^0-9]|$)/)) {
        c = substr(line, RSTART); sub(/^[ \t]*#[ \t]+/, "", c); code = substr(c, 1, 3)
        once = (c ~ /^[0-9][0-9][0-9] once /)
        line = substr(line, 1, RSTART - 1)
      }
      if (!cont && line !~ /^[ \t]*$/) print "trace " NR " " q($0)
      cont = (line ~ /\\$/)
      if (line ~ /^[ \t]*(cmbsd|go run \.\/cmd\/cmbsd|bash testdata\/couchpeer\/run\.sh)([ \t]|$)/ && line !~ /&[ \t]*$/) {
        port = (line ~ /couchpeer/) ? 5984 : 8090
        if (match(line, /--listen[ =]127\.0\.0\.1:[0-9]+/)) port = substr(line, RSTART + 19, RLENGTH - 19)
        else if (match(line, /run\.sh[ \t]+[0-9]+/)) { port = substr(line, RSTART, RLENGTH); sub(/^run\.sh[ \t]+/, "", port) }
        print line " &"
        print "wait_port " port " " NR " $!"
      } else if (once) {
        print "for _try in $(seq 20); do " line "; [ \"$(cat \"$status_file\")\" = " code " ] && break; sleep 0.5; done"
      } else {
        print line
      }
      if (code != "") print "expect_status " code " " NR
      if (match(line, /<<[\047"]?[A-Za-z_][A-Za-z_0-9]*[\047"]?/) && substr(line, RSTART + 2, 1) != "<") {
        heredoc = substr(line, RSTART + 2, RLENGTH - 2); gsub(/[\047"]/, "", heredoc)
      }
    }
    END { if (blocks == 0) { print "no ```sh block under the headings given" > "/dev/stderr"; exit 1 } }
  ' "$readme"
}

# The helpers every session's script starts with.
prelude() {
  cat <<'EOF'
set -euo pipefail
set -m # every background job its own process group, killed whole below
status_file=$(mktemp) body_file=$(mktemp)
trap 'for j in $(jobs -p); do kill -- "-$j" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -f "$status_file" "$body_file"' EXIT
trap 'exit 143' TERM INT
trace() { printf '+ README.md:%s: %s\n' "$1" "$2"; }
# curl as the reader runs it, but with its status noted and every call
# bounded; a server still starting (connection refused) is waited for.
curl() {
  command curl -sS --max-time 60 --retry 20 --retry-connrefused --retry-delay 1 \
    -w '%{http_code}' -o "$body_file" "$@" >"$status_file" || { echo "curl failed: curl $*" >&2; return 1; }
  cat "$body_file"
  echo
}
expect_status() {
  local got; got=$(cat "$status_file")
  if [ "$got" != "$1" ]; then
    echo "README.md:$2: status $got, want $1" >&2
    exit 1
  fi
}
wait_port() {
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { echo "README.md:$2: the server exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "README.md:$2: nothing listens on 127.0.0.1:$1 after 60 s" >&2
  exit 1
}
EOF
}

session() {
  local script=$work/session-$1.sh
  shift
  { prelude; extract "$@"; } >"$script"
  cp -a "$work/repo" "$work/repo-$n"
  echo "== README: $* (in a fresh copy, $(basename "$script"))"
  (cd "$work/repo-$n" && timeout "${READMESH_TIMEOUT:-120}" bash "$script")
}

n=0
headings=()
for a in "$@"; do
  if [ "$a" = -- ]; then
    n=$((n + 1)); session "$n" "${headings[@]}"; headings=()
  else
    headings+=("$a")
  fi
done
[ ${#headings[@]} -eq 0 ] || { n=$((n + 1)); session "$n" "${headings[@]}"; }
echo "== README walk-throughs ran as written"
