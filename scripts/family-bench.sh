#!/usr/bin/env bash
# Three images of the Debian 12 family (manifests/debian12-minimal.toml,
# manifests/debian12-cc.toml and a glibc-only image on the same debian12-base.toml),
# from a loopback mirror of REAL bookworm data (scripts/debian-mirror.sh: the real signed
# InRelease files and full Packages indexes), built three ways:
#
#   1. one after the other, each run with its own cache (separate CI jobs);
#   2. one after the other, sharing one cache;
#   3. in one run: `compose A.toml B.toml C.toml` (src/many.rs).
#
# Prints, for each, the wall time, the requests (and the InRelease files and Packages
# indexes fetched) and the bytes the mirror sent (the README's table), and checks that the three ways build
# the same images and that the one run asks for each InRelease and each index once.
#
#   scripts/family-bench.sh [MIRROR_DIR]
#
# MIRROR_DIR (default $TMPDIR/compose-family-mirror) is built when it does not exist
# (needs this host's apt lists for bookworm and network for `apt-get download`).
# Environment: COMPOSE, PROFILE (scripts/lib.sh compose_binary).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
step() { printf -- '--- %s\n' "$*" >&2; }
fail() { die "$@"; }
MIRROR=${1:-${TMPDIR:-/tmp}/compose-family-mirror}
if [ ! -d "$MIRROR/debian/dists" ]; then
    ARCHES=amd64 scripts/debian-mirror.sh "$MIRROR" base-files libc6 libgcc-s1 'libstdc++6' \
        zlib1g tzdata netbase ca-certificates >&2
fi
compose_binary
TMP=$(mktemp -d "${TMPDIR:-/tmp}/compose-family.XXXXXX")
trap 'serve_stop; rm -rf "$TMP"' EXIT
mkdir "$TMP/m"
cp manifests/debian12-base.toml manifests/debian12-minimal.toml manifests/debian12-cc.toml "$TMP/m/"
cat >"$TMP/m/debian12-glibc.toml" <<'EOF'
[image]
include = ["debian12-base.toml"]
name = "debian12-glibc"
architectures = ["amd64"]

[package.libc6]
paths = ["/usr/lib/*-linux-gnu/ld-linux-*.so.*", "/usr/lib*/ld-linux-*.so.*", "/usr/lib/*-linux-gnu/libc.so.6"]
EOF
ln -s "$PWD/keys" "$TMP/keys"
MANIFESTS=("$TMP/m/debian12-minimal.toml" "$TMP/m/debian12-cc.toml" "$TMP/m/debian12-glibc.toml")

# What the server log says: requests, and of the 200 answers the InRelease files, the
# Packages indexes and the bytes.
served() {
    python3 - "$SERVE_LOG" "$MIRROR" <<'PY'
import os, re, sys
n = rel = idx = size = 0
for line in open(sys.argv[1]):
    m = re.search(r'"GET (\S+) HTTP/1\.[01]" (\d+)', line)
    if not m:
        continue
    n += 1
    path = m.group(1)
    f = os.path.join(sys.argv[2], path.lstrip("/"))
    if m.group(2) != "200" or not os.path.isfile(f):
        continue  # the Packages forms this mirror lacks (it keeps the plain one) answer 404
    rel += path.endswith("/InRelease")
    idx += "/binary-" in path
    size += os.path.getsize(f)
print(f"{n} {rel} {idx} {size}")
PY
}

# run MODE: builds the three images that way; prints one line and the digests.
run() {
    local mode=$1 start end i=0 digests=""
    rm -rf "$TMP"/cache-* "$TMP"/out-* "$TMP"/m/*.lock
    serve_start "$MIRROR"
    local args=(--arch amd64 --mirror "http://deb.debian.org=$SERVE_URL" -q)
    start=$(date +%s%N)
    case $mode in
    own | shared)
        for m in "${MANIFESTS[@]}"; do
            i=$((i + 1))
            local cache="$TMP/cache-$i"
            [ "$mode" = shared ] && cache="$TMP/cache-shared"
            digests+="$("$COMPOSE" "$m" "${args[@]}" --cache "$cache" --output "$TMP/out-$i") "
        done
        ;;
    one)
        digests=$("$COMPOSE" "${MANIFESTS[@]}" "${args[@]}" --cache "$TMP/cache-one" \
            --output "$TMP/out-{name}" | awk '{print $2}' | tr '\n' ' ')
        ;;
    esac
    end=$(date +%s%N)
    read -r n rel idx size < <(served)
    serve_stop
    printf '%-34s %6.1f s  %3d requests (%d InRelease, %d Packages fetched)  %5.1f MB\n' \
        "$mode" "$(echo "($end - $start) / 1000000000" | bc -l)" "$n" "$rel" "$idx" \
        "$(echo "$size / 1000000" | bc -l)" >&2
    echo "$digests $rel $idx"
}

own=$(run own)
shared=$(run shared)
one=$(run one)
[ "$(echo "$own" | cut -d' ' -f1-3)" = "$(echo "$one" | cut -d' ' -f1-3)" ] ||
    die "the one run built other images: $one vs $own"
[ "$(echo "$shared" | cut -d' ' -f1-3)" = "$(echo "$own" | cut -d' ' -f1-3)" ] ||
    die "the shared-cache runs built other images"
[ "$(echo "$one" | awk '{print $(NF-1), $NF}')" = "3 3" ] ||
    die "the one run did not ask for each InRelease and index once: $one"
echo "same images; the one run asked for each InRelease and each index once" >&2
