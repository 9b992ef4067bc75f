# shellcheck shell=bash
# Shared helpers for the test scripts. Source it: `. "$(dirname "$0")/lib.sh"`.

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# serve_start DIR
#   Starts scripts/serve.py (python3's http.server with keep-alive and a deeper listen
#   backlog) on 127.0.0.1 with a kernel-chosen port, serving DIR, in the background. Sets SERVE_URL (http://127.0.0.1:PORT), SERVE_PID and SERVE_LOG.
#   Stop it with serve_stop (callers usually `trap serve_stop EXIT`).
serve_start() {
    local dir=$1 port="" i
    [ -d "$dir" ] || die "serve: not a directory: $dir"
    SERVE_LOG=$(mktemp "${TMPDIR:-/tmp}/compose-serve.XXXXXX")
    # -u: unbuffered, otherwise the "Serving HTTP on ... port N" line stays in python's
    # buffer and we never learn the port.
    python3 -u "$(dirname "${BASH_SOURCE[0]}")/serve.py" "$dir" >"$SERVE_LOG" 2>&1 &
    SERVE_PID=$!
    for i in $(seq 1 100); do
        port=$(sed -n 's/^Serving HTTP on [0-9.]* port \([0-9][0-9]*\) .*/\1/p' "$SERVE_LOG" | head -n1)
        [ -n "$port" ] && break
        if ! kill -0 "$SERVE_PID" 2>/dev/null; then
            cat "$SERVE_LOG" >&2
            die "serve: scripts/serve.py exited before announcing its port"
        fi
        sleep 0.1
    done
    if [ -z "$port" ]; then
        serve_stop
        die "serve: no port announced within 10s (log: $SERVE_LOG)"
    fi
    SERVE_URL="http://127.0.0.1:$port"
    export SERVE_URL SERVE_PID SERVE_LOG
}

# serve_stop: stops the server started by serve_start in this shell (by its PID only).
serve_stop() {
    if [ -n "${SERVE_PID:-}" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    SERVE_PID=""
    [ -n "${SERVE_LOG:-}" ] && rm -f "$SERVE_LOG"
    SERVE_LOG=""
}

# compose_binary: sets COMPOSE to the binary the e2e scripts test. COMPOSE=/path given:
# that binary, no build. Else `cargo build` of PROFILE (default debug: what `cargo test`
# already built, so CI does no second, slower release build; PROFILE=release for the
# release binary). Callers define `step` and `fail`.
compose_binary() {
    PROFILE=${PROFILE:-debug}
    if [ -n "${COMPOSE:-}" ]; then
        step "compose binary given: $COMPOSE"
    else
        step "cargo build ($PROFILE) --locked"
        if [ "$PROFILE" = release ]; then cargo build --release --locked; else cargo build --locked; fi
        COMPOSE=${CARGO_TARGET_DIR:-target}/$PROFILE/compose
    fi
    [ -x "$COMPOSE" ] || fail "$COMPOSE was not built"
    "$COMPOSE" --version
}
