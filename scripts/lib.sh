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

# run_check_program LABEL OUT UID GID USER CMD...
#   Runs the e2e check program (tests/e2e-assets/check.cc) through CMD (runc, or qemu in
#   a chroot) with a 120 s timeout, its output in OUT.out/OUT.err, shown indented; fails
#   (the calling script's `fail`) unless it exits 0, reports "check: all checks passed"
#   and ran as USER (UID:GID).
run_check_program() {
    local label=$1 out=$2 uid=$3 gid=$4 user=$5 rc=0 start ms
    shift 5
    start=$(date +%s%N)
    timeout 120 "$@" >"$out.out" 2>"$out.err" </dev/null || rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    sed 's/^/  | /' "$out.out"
    if [ -s "$out.err" ]; then sed "s/^/  $label stderr: /" "$out.err"; fi
    echo "  $label: exit $rc in $ms ms"
    [ "$rc" = 0 ] || fail "the program exited $rc under $label (output above)"
    grep -q '^check: all checks passed$' "$out.out" \
        || fail "the program under $label did not report 'all checks passed'"
    grep -q "^ok   user: uid $uid gid $gid -> name '$user'" "$out.out" \
        || fail "the program under $label did not run as $user ($uid:$gid)"
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

# dockerd_start DIR
#   Starts a Docker daemon of this script's own (Debian's dockerd, package docker.io) with
#   its data root, exec root, pid file, log and socket under DIR: vfs storage, no bridge,
#   no iptables rules, no masquerading, so nothing of the machine's networking or any
#   other daemon is touched (it starts a containerd of its own, unless a system one
#   answers at /run/containerd, where it keeps to containerd namespaces of its own).
#   Sets DOCKERD_PID and exports DOCKER_HOST (unix://DIR/d.sock) and DOCKER_CONFIG
#   (DIR/client); waits up to 60 s for it to answer. Needs root. Stop it with
#   dockerd_stop. DIR must be short (the socket path must fit in 107 bytes).
dockerd_start() {
    local dir=$1 i
    mkdir -p "$dir/client"
    dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
        -H "unix://$dir/d.sock" --storage-driver=vfs --bridge=none --iptables=false \
        --ip6tables=false --ip-masq=false --userland-proxy=false \
        --containerd-namespace compose-test --containerd-plugins-namespace compose-test-plugins \
        </dev/null >"$dir/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    DOCKERD_DIR=$dir
    export DOCKER_HOST="unix://$dir/d.sock" DOCKER_CONFIG="$dir/client"
    for i in $(seq 1 300); do
        docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            tail -n 20 "$dir/dockerd.log" >&2
            DOCKERD_PID=""
            die "dockerd exited at start (log above)"
        fi
        sleep 0.2
    done
    tail -n 20 "$dir/dockerd.log" >&2
    dockerd_stop
    die "dockerd did not answer within 60 s (log above)"
}

# dockerd_stop: stops the daemon started by dockerd_start in this shell (by its PID only:
# SIGTERM, which also stops the containerd it started, then SIGKILL after 30 s).
dockerd_stop() {
    local i
    if [ -n "${DOCKERD_PID:-}" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        for i in $(seq 1 300); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            kill -9 "$DOCKERD_PID" 2>/dev/null || true
            # Its containerd, by the pid file it wrote under DIR (orphaned by SIGKILL).
            local cpid
            cpid=$(cat "$DOCKERD_DIR/exec/containerd/containerd.pid" 2>/dev/null || true)
            [ -n "$cpid" ] && grep -q "$DOCKERD_DIR" "/proc/$cpid/cmdline" 2>/dev/null \
                && kill -9 "$cpid" 2>/dev/null
        fi
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
    DOCKERD_PID=""
    unset DOCKER_HOST DOCKER_CONFIG
}

# apt_pinned_opts ARCH...: sets the array APT_PINNED to apt options that make apt-cache
#   and apt-get independent of this host's dpkg: the architectures are exactly ARCH...
#   (not the host's native + foreign ones: `dpkg --add-architecture arm64` must change
#   nothing), the dpkg status is empty (the host's installed set plays no part), and the
#   package cache is built in memory (the on-disk one is for the host's architectures).
apt_pinned_opts() {
    local a
    APT_PINNED=(-o "APT::Architectures=" -o "Dir::State::status=/dev/null"
                -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=")
    for a in "$@"; do APT_PINNED+=(-o "APT::Architectures::=$a"); done
}

# fake_status OUT ARCH PKG...: writes to OUT the dpkg status stanzas ("Status: install
#   ok installed") of the dependency closure of PKG... for ARCH, PKG... themselves
#   excluded, each the candidate's own stanza: what mmdebstrap --variant=extract is told
#   is installed so that it extracts exactly PKG... (its setup hook appends OUT to the
#   chroot's status). apt is asked through apt_pinned_opts ARCH, plus the array
#   FAKE_STATUS_APT_OPTS when set (a private lists directory), so the result does not
#   depend on the host's dpkg architectures or installed packages. Prints the packages
#   marked installed.
fake_status() {
    local out=$1 arch=$2 deps pins
    shift 2
    apt_pinned_opts "$arch"
    local opts=("${APT_PINNED[@]}" "${FAKE_STATUS_APT_OPTS[@]}")
    deps=$(apt-cache "${opts[@]}" depends --recurse --no-recommends --no-suggests \
               --no-conflicts --no-breaks --no-replaces --no-enhances "$@" \
           | grep -v '^[ <]' | sort -u | grep -vxF -f <(printf '%s\n' "$@") || true)
    : >"$out"
    [ -n "$deps" ] || return 0
    # One apt-cache call each (every call parses the lists): candidates, then stanzas.
    # shellcheck disable=SC2086
    pins=$(apt-cache "${opts[@]}" policy $deps \
           | awk '/^[^ ].*:$/ { p = substr($0, 1, length($0) - 1) }
                  /^ *Candidate: / && $2 != "(none)" { print p "=" $2 }')
    # shellcheck disable=SC2086
    apt-cache "${opts[@]}" show $pins | awk '
        /^$/ { print; skip = 0; next }
        /^(Filename|Size|MD5sum|SHA256|Description-md5|Tag|Section|Homepage):/ { skip = 1; next }
        /^[^ ]/ { skip = 0 }
        !skip { print }
        /^Package:/ { print "Status: install ok installed" }' >"$out"
    # A stanza of another architecture would make dpkg in the chroot see a conflict.
    if grep '^Architecture:' "$out" | grep -qvxE "Architecture: ($arch|all)"; then
        die "fake_status: a stanza of another architecture than $arch in $out"
    fi
    sed -n 's/^Package: //p' "$out" | tr '\n' ' '
}
