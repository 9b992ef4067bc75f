#!/usr/bin/env bash
# Benchmark (not a test: nothing here fails on a timing) of compose against the peer a
# Debian user has today, `mmdebstrap --variant=extract`: same machine,
# same loopback mirror of real Debian 12 packages, same nine packages (base-files libc6
# libgcc-s1 libstdc++6 zlib1g libssl3 tzdata netbase ca-certificates).
#
#   sudo scripts/bench.sh
#
# Modes, each run RUNS times, interleaved (one of each per round, so a change of machine
# load hits every mode alike):
#   compose warm   the cache already holds the indexes, .debs and the compressed layer
#                  of the warm-up build (a rebuild); a fresh --lock per run, so compose
#                  resolves again from the cached indexes (only the InRelease files are
#                  fetched), selects every file again and checks the cached layer
#                  against the tree (src/oci/layer_cache.rs).
#   compose warm, layer compressed again   the same with COMPOSE_LAYER_CACHE=0: the
#                  whole work of a first build of this tree, minus the downloads.
#   compose cold   an empty --cache per run: InRelease, Packages and .debs are downloaded.
#   compose zstd: warm / warm, layer compressed again / cold   the same three with
#                  --compression zstd (the layer cache keeps each compressor apart).
#   mmdebstrap warm  a persistent apt archive cache, mmdebstrap's documented pattern
#                  (setup-hook sync-in CACHE, sync-out CACHE after extraction): the .debs
#                  are not downloaded again; apt still runs `update` (InRelease +
#                  Packages) into its fresh chroot, as it always does.
#   mmdebstrap cold  nothing cached.
# The manifest is manifests/debian12-cc.toml plus [package.libssl3] (libssl.so.3 and
# libcrypto.so.3), for the host architecture. mmdebstrap extracts exactly the nine
# packages: the rest of their Depends closure is marked installed by a setup hook (as in
# scripts/e2e-debian.sh step B7), and it verifies the mirror with Debian's keyring.
# Every run is timed by `/usr/bin/time -f '%e %M'` (wall seconds, peak RSS in KiB: for
# mmdebstrap the largest single process of its tree: perl, apt or dpkg).
#
# Output: the machine (date, nproc, CPU, load average), then a Markdown table: median,
# min/max wall, peak RSS; the ratios mmdebstrap/compose; the targets of docs/benchmarks.md, met or not.
#
# Environment:
#   RUNS=3             timed runs per mode (the median is the figure).
#   COMPOSE=PATH       the compose binary (default: `cargo build --release --locked`).
#   DEB_CACHE=DIR      keep the downloaded .debs between bench runs (debian-mirror.sh).
#   BENCH_MULTIARCH=1  also: compose --arch amd64 --arch arm64 vs --arch amd64 (warm,
#                      COMPOSE_LAYER_CACHE=0: every layer compressed).
#                      Builds the mirror for amd64 + arm64 from a private apt state
#                      (APT_STATE, default a directory in the work dir; debian-mirror.sh
#                      runs `apt-get update` for both into it; the host stays untouched).
#   BENCH_SCALE=1      also: the scale case: whole packages (paths = ["/**"]) in sets of
#                      SCALE_SIZES (default "50 100 150") packages, closed under Depends,
#                      chosen by scripts/bench-scale-set.py among the packages installed on
#                      this host at the mirror's version (so every DT_NEEDED is met); their
#                      .debs are added to the mirror (apt-get download, kept in DEB_CACHE).
#                      Warm compose (COMPOSE_LAYER_CACHE=0: every layer compressed), RUNS
#                      times per set: time and peak RSS as the set grows.
#                      SCALE_EXCLUDE="name ..." leaves packages (and what needs them) out.
#   KEEP_TMP=1         keep the work directory.
set -euo pipefail
if [ $# -gt 0 ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    case $1 in -h|--help) exit 0 ;; *) exit 2 ;; esac
fi
cd "$(dirname "$0")/.."
. scripts/lib.sh

RUNS=${RUNS:-3}
BENCH_MULTIARCH=${BENCH_MULTIARCH:-0}
BENCH_SCALE=${BENCH_SCALE:-0}
SCALE_SIZES=${SCALE_SIZES:-50 100 150}
SCALE_EXCLUDE=${SCALE_EXCLUDE:-}
PKGS="base-files libc6 libgcc-s1 libstdc++6 zlib1g libssl3 tzdata netbase ca-certificates"
HOST_ARCH=$(dpkg --print-architecture)
KEYRING=$PWD/keys/debian-archive-keyring.gpg
step() { printf '\n--- bench: %s\n' "$*" >&2; }
fail() { printf '\nBENCH FAILED: %s\n' "$*" >&2; exit 1; }

case $RUNS in ''|*[!0-9]*|0) fail "RUNS must be a positive integer (got '$RUNS')" ;; esac
[ "$(id -u)" = 0 ] || fail "run as root (mmdebstrap --mode=root)"
for t in mmdebstrap python3 apt-cache dpkg curl; do
    command -v "$t" >/dev/null || fail "$t not found (.ci/run installs mmdebstrap)"
done
[ -x /usr/bin/time ] || fail "/usr/bin/time not found (apt-get install time)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/compose-bench.XXXXXX")
cleanup() {
    serve_stop
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "work directory kept: $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- mirror, server, binary
step "mirror: $PKGS"
export DEB_CACHE=${DEB_CACHE:-$TMP/debs-cache}
export CHOSEN_VERSIONS=$TMP/chosen.tsv
: >"$CHOSEN_VERSIONS"
APT_OPTS=()
if [ "$BENCH_MULTIARCH" = 1 ]; then
    export APT_STATE=${APT_STATE:-$TMP/apt-state} ARCHES="amd64 arm64"
    mkdir -p "$APT_STATE"
    # The same private apt state for apt-cache below (dependency closure for mmdebstrap),
    # native architecture only, no pkgcache.bin (the host's is for other lists).
    APT_OPTS=(-o "Dir::State::Lists=$APT_STATE/lists" -o "Dir::Cache=$APT_STATE/cache"
              -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
              -o "APT::Architectures=" -o "APT::Architectures::=$HOST_ARCH")
fi
# shellcheck disable=SC2086
scripts/debian-mirror.sh "$TMP/mirror" $PKGS >"$TMP/mirror.log" 2>&1 \
    || { tail -n 20 "$TMP/mirror.log" >&2; fail "scripts/debian-mirror.sh failed"; }
sed -n '/^PACKAGE /,$p' "$TMP/mirror.log" >&2

serve_start "$TMP/mirror"
curl -fsS -o /dev/null "$SERVE_URL/debian/dists/bookworm/InRelease" \
    || fail "the mirror server does not answer at $SERVE_URL"
log "mirror served at $SERVE_URL (pid $SERVE_PID)"

PROFILE=release compose_binary >&2

step "manifest: manifests/debian12-cc.toml + [package.libssl3]"
scripts/e2e-manifest.py manifests/debian12-cc.toml "$TMP/bench.toml" >&2
cat >>"$TMP/bench.toml" <<'EOF'

# Added by scripts/bench.sh: the ninth package of the benchmark.
[package.libssl3]
paths = ["/usr/lib/*-linux-gnu/libssl.so.3", "/usr/lib/*-linux-gnu/libcrypto.so.3"]
EOF
got=$(PYTHONPATH=scripts python3 - "$TMP/bench.toml" <<'PY'
import sys, manifest_view
print(" ".join(sorted(manifest_view.load(sys.argv[1])["package"])))
PY
)
want=$(tr ' ' '\n' <<<"$PKGS" | sort | tr '\n' ' ')
[ "$got " = "$want" ] || fail "bench manifest packages are '$got', expected '$want'"

# ---------------------------------------------------------------- mmdebstrap preparation
step "mmdebstrap: dependencies of the nine packages marked installed (not extracted)"
mmdebstrap --version >&2
PKG_LIST=$(tr ' ' '\n' <<<"$PKGS")
# The host's dpkg architectures and installed packages play no part (scripts/lib.sh).
FAKE_STATUS_APT_OPTS=("${APT_OPTS[@]}")
# shellcheck disable=SC2086
marked=$(fake_status "$TMP/fake-status" "$HOST_ARCH" $PKGS)
log "  marked installed: $marked"
MM_CACHE=$TMP/mm-archives
mkdir -p "$MM_CACHE"

# ---------------------------------------------------------------- one timed run
# timed TOOL MODE RUN LOG CMD...: runs CMD under /usr/bin/time, appends
# "tool mode run wall_s rss_kib cpu_s" to $TMP/times.tsv (cpu: user + system seconds of
# the process and its waited-for children); a failing run stops the bench.
timed() {
    local tool=$1 mode=$2 run=$3 logf=$4 rc=0 wall rss user sys
    shift 4
    /usr/bin/time -f '%e %M %U %S' -o "$TMP/time.out" "$@" >"$logf" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 25 "$logf" >&2
        fail "$tool $mode (run $run) exited $rc: $*"
    fi
    read -r wall rss user sys <"$TMP/time.out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$mode" "$run" "$wall" "$rss" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" >>"$TMP/times.tsv"
    printf '  %-10s %-12s run %s: %6.2f s, %7.1f MiB\n' "$tool" "$mode" "$run" "$wall" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" >&2
}

requests() { grep -c '"GET ' "$SERVE_LOG" || true; }
# show_requests TOOL MODE BEFORE: how many requests the run made, and which (kept in the
# work directory; the paths are listed for compose's warm mode, which should fetch only
# the InRelease files).
show_requests() {
    local f=$TMP/requests-$1-$2.log
    grep '"GET ' "$SERVE_LOG" | tail -n "+$(( $3 + 1 ))" | sed 's/.*"GET \([^ ]*\) .*" \([0-9]*\) .*/\2 \1/' >"$f" || true
    log "    ($(wc -l <"$f") HTTP requests to the mirror)"
    if [ "$1 $2" = "compose warm" ]; then sed 's/^/      /' "$f" >&2; fi
}

# compose_run MODE RUN CACHE [ARGS...]: composes MANIFEST_FILE with a fresh --lock and
# --output every run; checks the digest against the first one of the same manifest and
# architectures.
MANIFEST_FILE=$TMP/bench.toml
compose_run() {
    local mode=$1 run=$2 cache=$3 out=$TMP/out-$1-$2 before digest layers=1
    shift 3
    # Every mode but the rebuilds ("warm", "warm-zstd") compresses its layers.
    case $mode in warm|warm-zstd) ;; *) layers=0 ;; esac
    before=$(requests)
    timed compose "$mode" "$run" "$TMP/compose-$mode-$run.log" \
        env COMPOSE_LAYER_CACHE=$layers "$COMPOSE" "$MANIFEST_FILE" --mirror "http://deb.debian.org=$SERVE_URL" \
        --cache "$cache" --lock "$TMP/lock-$mode-$run" --output "$out" --quiet "$@"
    digest=$(tail -n 1 "$TMP/compose-$mode-$run.log")
    [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || fail "compose $mode run $run: last line '$digest' is not a digest"
    local key
    key=$(basename "$MANIFEST_FILE")_${*:-default}; key=${key// /_}
    if [ -f "$TMP/digest-$key" ]; then
        [ "$(cat "$TMP/digest-$key")" = "$digest" ] || fail "compose $mode run $run: digest $digest differs from an earlier run's $(cat "$TMP/digest-$key")"
    else
        echo "$digest" >"$TMP/digest-$key"
    fi
    if [ "$run" = 1 ]; then show_requests compose "$mode" "$before"; fi
    rm -rf "$out" "$TMP/lock-$mode-$run"
}

# mm_run MODE RUN: mmdebstrap into a fresh target; warm syncs the archive cache in and out.
mm_run() {
    local mode=$1 run=$2 target=$TMP/mm-$1-$2 before hooks=()
    if [ "$mode" = warm ]; then
        # mmdebstrap(1)'s archive-cache pattern. Its example syncs out in a customize hook,
        # but mmdebstrap 1.3 runs no customize hooks for --variant=extract, so the sync-out
        # is an extract hook (the .debs are still in the chroot's archives then).
        # shellcheck disable=SC2016
        hooks=(--setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
               --setup-hook="sync-in $MM_CACHE /var/cache/apt/archives/"
               --extract-hook="sync-out /var/cache/apt/archives $MM_CACHE")
    fi
    before=$(requests)
    # shellcheck disable=SC2016
    timed mmdebstrap "$mode" "$run" "$TMP/mm-$mode-$run.log" \
        mmdebstrap --variant=extract --mode=root --format=directory \
        --architectures="$HOST_ARCH" --include="${PKGS// /,}" --keyring="$KEYRING" \
        --setup-hook='cat '"$TMP/fake-status"' >>"$1/var/lib/dpkg/status"' \
        "${hooks[@]}" \
        bookworm "$target" \
        "deb $SERVE_URL/debian bookworm bookworm-updates main" \
        "deb $SERVE_URL/debian-security bookworm-security main"
    if [ "$run" = 1 ]; then show_requests mmdebstrap "$mode" "$before"; fi
    local triplet f
    triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
    # Not merged-usr: libc6 has /lib/<triplet>/libc.so.6 in bookworm.
    for f in "lib/$triplet/libc.so.6" "usr/lib/$triplet/libssl.so.3" \
             "usr/lib/$triplet/libstdc++.so.6" usr/share/zoneinfo/Etc/UTC etc/services \
             etc/os-release usr/share/ca-certificates; do
        [ -e "$target/$f" ] || [ -e "$target/usr/$f" ] \
            || fail "mmdebstrap $mode run $run: /$f was not extracted"
    done
    for f in "$target"/usr/share/doc/*; do
        grep -qxF "$(basename "$f")" <<<"$PKG_LIST" \
            || fail "mmdebstrap $mode run $run extracted an undeclared package: $(basename "$f")"
    done
    rm -rf "$target"
}

# ---------------------------------------------------------------- the runs
step "warm-up (untimed): fill compose's cache and mmdebstrap's archive cache"
"$COMPOSE" "$TMP/bench.toml" --mirror "http://deb.debian.org=$SERVE_URL" --arch "$HOST_ARCH" \
    --cache "$TMP/cache-warm" --lock "$TMP/lock-warmup" --output "$TMP/out-warmup" --quiet \
    >"$TMP/warmup.log" 2>&1 || { tail -n 20 "$TMP/warmup.log" >&2; fail "compose warm-up failed"; }
rm -rf "$TMP/out-warmup"
"$COMPOSE" "$TMP/bench.toml" --mirror "http://deb.debian.org=$SERVE_URL" --arch "$HOST_ARCH" \
    --cache "$TMP/cache-warm" --lock "$TMP/lock-warmup" --output "$TMP/out-warmup" --quiet \
    --compression zstd >"$TMP/warmup.log" 2>&1 \
    || { tail -n 20 "$TMP/warmup.log" >&2; fail "compose warm-up (zstd) failed"; }
rm -rf "$TMP/out-warmup"
mm_run warm 0
ls "$MM_CACHE"/*.deb >/dev/null 2>&1 || fail "mmdebstrap's sync-out left no .deb in $MM_CACHE"
log "  mmdebstrap archive cache: $(find "$MM_CACHE" -name '*.deb' | wc -l) .debs"

machine() {
    local load1
    read -r load1 _ </proc/loadavg
    printf -- '- date: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf -- '- machine: %s CPU(s), %s; %s MiB RAM; %s\n' "$(nproc)" \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
        "$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)" "$(uname -r)"
    printf -- '- load average before the runs: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf -- '- compose %s (%s); %s\n' "$("$COMPOSE" --version | awk '{ print $NF }')" "$COMPOSE" "$(mmdebstrap --version)"
    printf -- '- RUNS=%s per mode, interleaved; loopback mirror served by scripts/serve.py (python3 http.server, HTTP/1.1 keep-alive, backlog 128)\n' "$RUNS"
    if awk -v l="$load1" 'BEGIN { exit !(l > 1) }'; then
        printf -- '- **the 1-minute load average is %s (> 1): this machine is busy, the figures are provisional**\n' "$load1"
    fi
}
machine >"$TMP/machine.md"

step "timed runs: $RUNS round(s)"
for run in $(seq 1 "$RUNS"); do
    compose_run warm "$run" "$TMP/cache-warm" --arch "$HOST_ARCH"
    compose_run warm-recompress "$run" "$TMP/cache-warm" --arch "$HOST_ARCH"
    compose_run cold "$run" "$TMP/cache-cold-$run" --arch "$HOST_ARCH"
    rm -rf "$TMP/cache-cold-$run"
    compose_run warm-zstd "$run" "$TMP/cache-warm" --arch "$HOST_ARCH" --compression zstd
    compose_run warm-recompress-zstd "$run" "$TMP/cache-warm" --arch "$HOST_ARCH" --compression zstd
    compose_run cold-zstd "$run" "$TMP/cache-cold-$run" --arch "$HOST_ARCH" --compression zstd
    rm -rf "$TMP/cache-cold-$run"
    mm_run warm "$run"
    mm_run cold "$run"
done

if [ "$BENCH_MULTIARCH" = 1 ]; then
    step "multi-arch: compose --arch amd64 --arch arm64 vs --arch amd64 (warm)"
    [ -f "$TMP/mirror/debian/dists/bookworm/main/binary-arm64/Packages" ] \
        || fail "the mirror has no arm64 index"
    "$COMPOSE" "$TMP/bench.toml" --mirror "http://deb.debian.org=$SERVE_URL" \
        --arch amd64 --arch arm64 --cache "$TMP/cache-warm" --lock "$TMP/lock-warmup2" \
        --output "$TMP/out-warmup2" --quiet >"$TMP/warmup2.log" 2>&1 \
        || { tail -n 20 "$TMP/warmup2.log" >&2; fail "compose amd64+arm64 warm-up failed"; }
    rm -rf "$TMP/out-warmup2"
    for run in $(seq 1 "$RUNS"); do
        compose_run one-arch "$run" "$TMP/cache-warm" --arch amd64
        compose_run two-arch "$run" "$TMP/cache-warm" --arch amd64 --arch arm64
    done
fi

if [ "$BENCH_SCALE" = 1 ]; then
    step "scale: whole packages (paths = [\"/**\"]), dependency-closed sets of $SCALE_SIZES packages"
    excl=()
    for x in $SCALE_EXCLUDE; do excl+=(--exclude "$x"); done
    # shellcheck disable=SC2086
    scripts/bench-scale-set.py "$TMP/mirror" "$HOST_ARCH" $SCALE_SIZES "${excl[@]}" >"$TMP/sets.tsv" \
        || fail "scripts/bench-scale-set.py found no package sets"
    all=$(tail -n 1 "$TMP/sets.tsv" | cut -f5)
    log "  mirror: $(wc -w <<<"$all") packages (.debs from DEB_CACHE or apt-get download)"
    # shellcheck disable=SC2086
    ARCHES=$HOST_ARCH scripts/debian-mirror.sh "$TMP/mirror" $all >"$TMP/mirror-scale.log" 2>&1 \
        || { tail -n 20 "$TMP/mirror-scale.log" >&2; fail "scripts/debian-mirror.sh (scale set) failed"; }
    while IFS=$'\t' read -r _ count _ _ names; do
        python3 - "$TMP/scale-$count.toml" "$KEYRING" "$HOST_ARCH" $names <<'PY'
import sys
out, keyring, arch, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
src = lambda url, suites: (f'[[source]]\nurl = "{url}"\nsuites = {suites}\n'
                           f'components = ["main"]\nkeyring = "{keyring}"\n\n')
text = (f'# Written by scripts/bench.sh: the scale case, {len(names)} whole packages.\n'
        f'[image]\nname = "bench-scale-{len(names)}"\narchitectures = ["{arch}"]\n'
        'merged-usr = true\nuser = "0:0"\nworkdir = "/"\nentrypoint = []\ncmd = []\n'
        'env = {}\nlabels = {}\nannotations = {}\n\n'
        + src("http://deb.debian.org/debian", '["bookworm", "bookworm-updates"]')
        + src("http://deb.debian.org/debian-security", '["bookworm-security"]')
        + "".join(f'[package."{n}"]\npaths = ["/**"]\n\n' for n in names)
        + '[generate]\nca-bundle = false\npasswd = false\ndpkg-status = true\n')
open(out, "w").write(text)
PY
        MANIFEST_FILE=$TMP/scale-$count.toml
        log "  $count packages: warm-up (cold cache for these .debs)"
        "$COMPOSE" "$MANIFEST_FILE" --mirror "http://deb.debian.org=$SERVE_URL" --arch "$HOST_ARCH" \
            --cache "$TMP/cache-warm" --lock "$TMP/lock-scale-warmup" --output "$TMP/out-scale-warmup" \
            >"$TMP/scale-warmup-$count.log" 2>&1 \
            || { grep -m 5 '^error' "$TMP/scale-warmup-$count.log" >&2
                 fail "compose of the $count-package set failed (SCALE_EXCLUDE=\"name ...\" leaves packages out)"; }
        grep -E '^[a-z0-9]+: [0-9]+ packages' "$TMP/scale-warmup-$count.log" | sed 's/^/    compose: /' >&2
        rm -rf "$TMP/out-scale-warmup" "$TMP/lock-scale-warmup"
        for run in $(seq 1 "$RUNS"); do
            compose_run "scale-$count" "$run" "$TMP/cache-warm" --arch "$HOST_ARCH"
        done
    done <"$TMP/sets.tsv"
    MANIFEST_FILE=$TMP/bench.toml
fi

# ---------------------------------------------------------------- the table
step "results"
[ -f "$TMP/sets.tsv" ] || : >"$TMP/sets.tsv"
python3 - "$TMP/times.tsv" "$TMP/machine.md" "$TMP/sets.tsv" <<'PY'
import os, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
runs = {}
for tool, mode, run, wall, rss, cpu in rows:
    if run == "0":      # warm-up
        continue
    runs.setdefault((tool, mode), []).append((float(wall), int(rss), float(cpu)))
print(open(sys.argv[2]).read())
print("| tool | mode | median wall (s) | min / max (s) | median CPU (s) | peak RSS (MiB) | runs |")
print("|---|---|---:|---:|---:|---:|---:|")
med, rss = {}, {}
order = [("compose", "warm"), ("compose", "warm-recompress"), ("compose", "cold"),
         ("compose", "warm-zstd"), ("compose", "warm-recompress-zstd"), ("compose", "cold-zstd"),
         ("mmdebstrap", "warm"), ("mmdebstrap", "cold"),
         ("compose", "one-arch"), ("compose", "two-arch")]
for key in order:
    if key not in runs:
        continue
    w = [x[0] for x in runs[key]]
    med[key] = statistics.median(w)
    rss[key] = max(x[1] for x in runs[key]) / 1024
    labels = {"one-arch": "warm, amd64, layer compressed", "two-arch": "warm, amd64 + arm64, layers compressed",
              "warm-recompress": "warm, layer compressed again", "cold": "cold (empty cache)",
              "warm-zstd": "zstd: warm (rebuild: layer from the layer cache)",
              "warm-recompress-zstd": "zstd: warm, layer compressed again", "cold-zstd": "zstd: cold (empty cache)"}
    if key[0] == "compose":
        labels["warm"] = "warm (rebuild: layer from the layer cache)"
    else:
        labels["warm"] = "warm (.debs from its archive cache)"
    label = labels.get(key[1], key[1])
    cpu = statistics.median(x[2] for x in runs[key])
    print(f"| {key[0]} | {label} | {med[key]:.2f} | {min(w):.2f} / {max(w):.2f} | {cpu:.2f} | {rss[key]:.1f} | {len(w)} |")
print()
def ratio(a, b):
    return med[a] / med[b] if med.get(b) else float("inf")
warm = ratio(("mmdebstrap", "warm"), ("compose", "warm"))
recompress = ratio(("mmdebstrap", "warm"), ("compose", "warm-recompress"))
cold = ratio(("mmdebstrap", "cold"), ("compose", "cold"))
peak = max(rss[("compose", m)] for m in ("warm", "warm-recompress", "cold", "warm-zstd", "warm-recompress-zstd", "cold-zstd"))
met = lambda ok: "met" if ok else "**not met**"
print("| target | measured | |")
print("|---|---:|---|")
print(f"| warm: mmdebstrap / compose ≥ 10× (rebuild) | {warm:.1f}× | {met(warm >= 10)} |")
print(f"| warm: mmdebstrap / compose, layer compressed again | {recompress:.1f}× | {met(recompress >= 10)} |")
print(f"| cold: mmdebstrap / compose ≥ 6× (gzip, the default) | {cold:.1f}× | {met(cold >= 6)} |")
zwarm = ratio(("mmdebstrap", "warm"), ("compose", "warm-zstd"))
zrecompress = ratio(("mmdebstrap", "warm"), ("compose", "warm-recompress-zstd"))
zcold = ratio(("mmdebstrap", "cold"), ("compose", "cold-zstd"))
print(f"| zstd warm: mmdebstrap / compose ≥ 15× (rebuild) | {zwarm:.1f}× | {met(zwarm >= 15)} |")
print(f"| zstd warm: mmdebstrap / compose, layer compressed again | {zrecompress:.1f}× | {met(zrecompress >= 15)} |")
print(f"| zstd cold: mmdebstrap / compose ≥ 8× | {zcold:.1f}× | {met(zcold >= 8)} |")
print(f"| compose peak RSS ≤ 100 MB (MiB here) | {peak:.1f} | {met(peak <= 100)} |")
if ("compose", "two-arch") in med:
    two = ratio(("compose", "two-arch"), ("compose", "one-arch"))
    cpu_of = lambda k: statistics.median(x[2] for x in runs[k])
    one_cores = cpu_of(("compose", "one-arch")) / med[("compose", "one-arch")]
    print(f"| amd64 + arm64 / amd64 alone, well under 2× | {two:.2f}× | {met(two < 1.5)} (< 1.5× taken as 'well under'; "
          f"one architecture alone keeps {one_cores:.1f} of {os.cpu_count()} cores busy) |")
sets = [l.rstrip("\n").split("\t") for l in open(sys.argv[3]) if l.strip()]
if sets:
    print()
    print("Scale: compose warm, whole packages (`paths = [\"/**\"]`), sets closed under Depends")
    print()
    print("| packages | .debs (MB) | installed (MB) | median wall (s) | min / max (s) | peak RSS (MiB) | s per 100 MB installed |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for _, count, debs, inst, _names in sets:
        key = ("compose", f"scale-{count}")
        if key not in runs:
            continue
        w = [x[0] for x in runs[key]]
        m = statistics.median(w)
        mb = int(inst) * 1024 / 1e6
        print(f"| {count} | {int(debs) / 1e6:.1f} | {mb:.1f} | {m:.2f} | {min(w):.2f} / {max(w):.2f} | "
              f"{max(x[1] for x in runs[key]) / 1024:.1f} | {100 * m / mb:.2f} |")
print()
print("Peak RSS: the largest of the runs; for mmdebstrap, the largest single process of its tree.")
print("mmdebstrap warm still runs `apt-get update` (InRelease + Packages) in its fresh chroot;")
print("only its .debs come from the archive cache.")
PY

