#!/usr/bin/env bash
# Serve a directory over HTTP on 127.0.0.1 (kernel-chosen port) in the background.
#
#   scripts/serve.sh DIR [PIDFILE]   # prints http://127.0.0.1:PORT on stdout;
#                                    # PID goes to PIDFILE (default: DIR.serve.pid)
#   scripts/serve.sh --stop PIDFILE  # stops that server
#
# Scripts that run a server only for their own lifetime should rather source lib.sh and
# use serve_start / serve_stop with a trap.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
if [ "$1" = "--stop" ]; then
    [ $# -eq 2 ] || usage
    pid=$(cat "$2") || die "cannot read PID file $2"
    case $pid in ''|*[!0-9]*) die "PID file $2 does not hold a PID" ;; esac
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
    rm -f "$2"
    exit 0
fi
[ $# -le 2 ] || usage
dir=$(cd "$1" && pwd) || die "not a directory: $1"
pidfile=${2:-$dir.serve.pid}

serve_start "$dir"
echo "$SERVE_PID" >"$pidfile"
# The log is only needed to read the port; the server keeps its (deleted) file open.
rm -f "$SERVE_LOG"
log "serving $dir at $SERVE_URL (pid $SERVE_PID; stop: $0 --stop $pidfile)"
echo "$SERVE_URL"
