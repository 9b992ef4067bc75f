#!/usr/bin/env bash
# End-to-end test against REAL Debian 12 data, offline from the tool's point of view:
#
#   1. build a loopback mirror (scripts/debian-mirror.sh) of the packages the manifest
#      declares, and serve it on 127.0.0.1;
#   2. cargo build --locked (PROFILE=release for the release binary);
#   3. compose the manifest through --mirror http://deb.debian.org=<server>;
#   4. skopeo inspect and umoci unpack the result, look at the rootfs;
#   5. compose again into another directory with an empty cache: same digest.
#
# Environment: MANIFEST (default manifests/debian12-minimal.toml), KEEP_TMP=1 keeps the
# work directory, DEB_CACHE (reuse downloaded .debs between runs), ARCHES/APT_STATE are
# passed to debian-mirror.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MANIFEST=${MANIFEST:-manifests/debian12-minimal.toml}
step() { printf '\n--- e2e: %s\n' "$*"; }
fail() { printf '\nE2E FAILED: %s\n' "$*" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/compose-e2e.XXXXXX")
cleanup() {
    serve_stop
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "work directory kept: $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# Image name (= default tag) and package names, from the manifest itself.
read -r TAG PKGS < <(python3 - "$MANIFEST" <<'PY'
import sys, tomllib
m = tomllib.load(open(sys.argv[1], "rb"))
print(m["image"]["name"], " ".join(m.get("package", {})))
PY
) || fail "cannot read $MANIFEST"
echo "manifest $MANIFEST: image $TAG, packages: $PKGS"

step "mirror"
export DEB_CACHE=${DEB_CACHE:-$TMP/debs-cache}
# shellcheck disable=SC2086
scripts/debian-mirror.sh "$TMP/mirror" $PKGS

step "serve"
serve_start "$TMP/mirror"
echo "mirror at $SERVE_URL (pid $SERVE_PID)"
curl -fsS -o /dev/null "$SERVE_URL/debian/dists/bookworm/InRelease" \
    || fail "the mirror server does not answer at $SERVE_URL"

# The dev profile (dependencies optimised, see Cargo.toml) is what `cargo test` already
# built: no second, slower release build in CI. PROFILE=release to test the release binary.
PROFILE=${PROFILE:-debug}
step "cargo build ($PROFILE) --locked"
if [ "$PROFILE" = release ]; then cargo build --release --locked; else cargo build --locked; fi
COMPOSE=target/$PROFILE/compose
[ -x "$COMPOSE" ] || fail "$COMPOSE was not built"

# ---------------------------------------------------------------------------------------
# The compose runs. Everything below needs a compose that can build an image; while the
# tool is being written this is where the e2e stops, loudly, with compose's own output.
# ---------------------------------------------------------------------------------------
run_compose() { # outdir cachedir logname -> prints the digest
    local out=$1 cache=$2 name=$3 rc=0
    "$COMPOSE" "$MANIFEST" --mirror "http://deb.debian.org=$SERVE_URL" \
        --output "$out" --cache "$cache" >"$TMP/$name.stdout" 2>"$TMP/$name.stderr" || rc=$?
    if [ "$rc" -ne 0 ]; then
        {
            echo "---- compose stderr ($name) ----"; tail -n 40 "$TMP/$name.stderr"
            echo "---- compose stdout ($name) ----"; tail -n 20 "$TMP/$name.stdout"
        } >&2
        fail "compose ($name) exited with $rc: $COMPOSE $MANIFEST --mirror http://deb.debian.org=$SERVE_URL --output $out --cache $cache"
    fi
    local digest
    digest=$(tail -n 1 "$TMP/$name.stdout")
    if ! [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]]; then
        { echo "---- compose stderr ($name) ----"; tail -n 20 "$TMP/$name.stderr"; } >&2
        fail "compose ($name) exited 0 but its last stdout line is '$digest', not a sha256:<64 hex> digest (is the build pipeline implemented yet?)"
    fi
    [ -f "$out/index.json" ] && [ -f "$out/oci-layout" ] \
        || fail "compose ($name): $out is not an OCI image layout"
    echo "$digest"
}

step "compose (1): $MANIFEST"
start=$(date +%s%N)
D1=$(run_compose "$TMP/out" "$TMP/cache" run1)
echo "digest $D1 in $(( ($(date +%s%N) - start) / 1000000 )) ms"

step "skopeo inspect oci:$TMP/out:$TAG"
skopeo inspect "oci:$TMP/out:$TAG" >"$TMP/inspect.json" \
    || fail "skopeo cannot read the image oci:$TMP/out:$TAG"
python3 - "$TMP/inspect.json" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))
print(f"  {i.get('Os')}/{i.get('Architecture')}, {len(i.get('Layers') or [])} layer(s), created {i.get('Created')}")
PY

step "umoci unpack"
umoci unpack --image "$TMP/out:$TAG" "$TMP/bundle" >/dev/null \
    || fail "umoci cannot unpack $TMP/out:$TAG"
R=$TMP/bundle/rootfs
echo "  rootfs: $(find "$R" -xdev | wc -l) entries, $(du -sh "$R" | cut -f1)"
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for p in usr/lib/"$triplet"/libc.so.6 usr/lib/"$triplet"/libstdc++.so.6 \
         etc/os-release usr/share/zoneinfo/Etc/UTC etc/services; do
    [ -e "$R/$p" ] || fail "rootfs lacks /$p"
done
for l in lib lib64 bin sbin; do
    [ -L "$R/$l" ] && echo "  /$l -> $(readlink "$R/$l")"
done
[ -e "$R/var/lib/dpkg/status" ] && fail "rootfs has /var/lib/dpkg/status (distroless layout uses status.d)"
# The image has no shell, but its own loader can run: resolve libstdc++'s dependencies
# inside the image, as a program would at start.
if [ "$(id -u)" = 0 ]; then
    interp=$( (ls "$R"/usr/lib64/ld-linux-*.so.* "$R"/usr/lib/ld-linux-*.so.* 2>/dev/null || true) | head -n1)
    if [ -n "$interp" ]; then
        chroot "$R" "${interp#"$R"}" --list "/usr/lib/$triplet/libstdc++.so.6" \
            || fail "the image's loader cannot resolve libstdc++.so.6 inside the image"
    fi
fi

step "compose (2): other output, empty cache"
D2=$(run_compose "$TMP/out2" "$TMP/cache2" run2)
echo "digest $D2"
[ "$D1" = "$D2" ] || fail "not reproducible: $D1 (first run) != $D2 (second run, empty cache)"
cmp -s "$TMP/out/index.json" "$TMP/out2/index.json" || fail "index.json differs between runs"

printf '\nE2E OK: %s %s\n' "$TAG" "$D1"
