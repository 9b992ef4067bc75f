#!/usr/bin/env bash
# End-to-end multi-arch test against REAL Debian 12 data: one compose run builds
# amd64 and arm64 from a loopback mirror on 127.0.0.1, and each architecture's image runs
# a native program of its own architecture.
#
#   1 mirror: debian-mirror.sh with a private apt state (APT_STATE, amd64 + arm64; the
#     host's dpkg architectures and apt lists are left alone) for the packages of
#     CC_MANIFEST (default manifests/debian12-cc.toml), plus zlib1g-dev:arm64 (build-time
#     only, for the cross link); served on 127.0.0.1.
#   2 compile tests/e2e-assets/check.cc twice: g++ -> check-amd64, aarch64-linux-gnu-g++ ->
#     check-arm64, linked against the arm64 zlib of the verified .debs (see below).
#   3 test manifest: CC_MANIFEST + [[file]] /usr/local/bin/check <- check-{arch} as the
#     entrypoint, cmd = the non-root user's name.
#   4 ONE compose run --arch amd64 --arch arm64; skopeo sees an image index with linux/amd64
#     and linux/arm64/v8 and selects arm64; compose verify passes on the written lock.
#   5 arm64: skopeo copy --override-arch arm64, umoci unpack, run the program under
#     qemu-aarch64-static in a chroot of the rootfs as the non-root uid/gid.
#   6 amd64: the same selection, umoci unpack, runc run as the non-root uid/gid.
#   7 figures: the two-arch compose vs one-arch composes (warm cache), layer sizes.
#
# Every step stops the run at its first failure.
#
# The arm64 program needs libz.so.1 for arm64 at link time. Rather than
# `dpkg --add-architecture arm64` on the host, zlib1g:arm64 and zlib1g-dev:arm64 (fetched
# and hash-checked by debian-mirror.sh like every other .deb) are extracted with dpkg-deb -x
# into a throwaway sysroot. zlib1g-dev's libz.so is an absolute symlink
# (/lib/aarch64-linux-gnu/libz.so.1.2.13) that dangles outside a real root, and -lz would
# then silently take libz.a; so the link names the shared object itself:
# `-L SYSROOT/lib/aarch64-linux-gnu -l:libz.so.1`, headers from SYSROOT/usr/include. The
# result is checked: AArch64, PT_INTERP /lib/ld-linux-aarch64.so.1, DT_NEEDED libz.so.1.
#
# Needs root (chroot, runc), g++, zlib1g-dev, g++-aarch64-linux-gnu, qemu-user-static,
# skopeo, umoci, runc, python3, dpkg-deb, readelf. Environment: CC_MANIFEST, KEEP_TMP=1 keeps
# the work directory, E2E_CACHE (default /var/tmp/compose-e2e-multiarch: the private apt
# state and the downloaded .debs, reused between runs; everything in it is re-verified),
# APT_STATE, DEB_CACHE (override those two), PROFILE (debug|release), COMPOSE (a compose
# binary to test instead of building one), FIG_REPEAT (timings of step 7: best of N, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

CC_MANIFEST=${CC_MANIFEST:-manifests/debian12-cc.toml}
E2E_CACHE=${E2E_CACHE:-/var/tmp/compose-e2e-multiarch}
ARCHS=(amd64 arm64)
E2E_START=$(date +%s%N)
step() { printf '\n--- e2e-multiarch: %s\n' "$*"; STEP_START=$(date +%s%N); }
took() { printf '  (%s ms)\n' $(( ($(date +%s%N) - STEP_START) / 1000000 )); }
fail() { printf '\nE2E-MULTIARCH FAILED: %s\n' "$*" >&2; exit 1; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/compose-e2e-multiarch.XXXXXX")
RUNC_ID=compose-e2e-multiarch-$$
cleanup() {
    serve_stop
    if command -v runc >/dev/null && runc state "$RUNC_ID" >/dev/null 2>&1; then
        runc delete --force "$RUNC_ID" >/dev/null 2>&1 || true
    fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "work directory kept: $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

for t in g++ aarch64-linux-gnu-g++ qemu-aarch64-static skopeo umoci runc python3 dpkg-deb tar \
         readelf apt-get curl chroot; do
    command -v "$t" >/dev/null || fail "$t not found (.ci/run installs what the e2e needs: g++-aarch64-linux-gnu, qemu-user-static, ...)"
done
[ "$(id -u)" = 0 ] || fail "run as root (chroot and runc need it)"
[ "$(dpkg --print-architecture)" = amd64 ] || fail "this test runs on an amd64 host (arm64 under qemu, amd64 natively)"

# Image name, [image].user and its uid/gid, architectures, package names, from the manifest.
read -r TAG USER_NAME USER_UID USER_GID MANIFEST_ARCHS PKGS < <(PYTHONPATH=scripts python3 - "$CC_MANIFEST" <<'PY'
import sys, manifest_view
m = manifest_view.load(sys.argv[1])
user = m["image"]["user"]
u = next(u for u in m["user"] if u["name"] == user)
print(m["image"]["name"], user, u["uid"], u["gid"], ",".join(m["image"].get("architectures", [])),
      " ".join(m["package"]))
PY
) || fail "cannot read $CC_MANIFEST (needs [image] user = a [[user]] name)"
echo "manifest $CC_MANIFEST: image $TAG, architectures $MANIFEST_ARCHS, user $USER_NAME ($USER_UID:$USER_GID)"
echo "packages: $PKGS"
[ "$MANIFEST_ARCHS" = amd64,arm64 ] || fail "$CC_MANIFEST: [image] architectures is '$MANIFEST_ARCHS', this test needs amd64,arm64"

step "1 mirror: real Debian 12, amd64 + arm64, private apt state (host apt untouched)"
export APT_STATE=${APT_STATE:-$E2E_CACHE/apt-state}
export DEB_CACHE=${DEB_CACHE:-$E2E_CACHE/debs}
export ARCHES="${ARCHS[*]}"
export CHOSEN_VERSIONS=$TMP/chosen.tsv
: >"$CHOSEN_VERSIONS"
host_archs=$(dpkg --print-architecture; dpkg --print-foreign-architectures)
# shellcheck disable=SC2086
scripts/debian-mirror.sh "$TMP/mirror" $PKGS zlib1g-dev:arm64
[ "$host_archs" = "$(dpkg --print-architecture; dpkg --print-foreign-architectures)" ] \
    || fail "the host's dpkg architectures changed during the mirror step"
echo "  host dpkg architectures unchanged: $(tr '\n' ' ' <<<"$host_archs")"
for a in "${ARCHS[@]}"; do
    n=$(awk -F'\t' -v a="$a" '$3 == a || $3 == "all"' "$CHOSEN_VERSIONS" | cut -f1 | sort -u \
        | grep -cvx zlib1g-dev || true)
    echo "  $a: $n packages in the mirror for the manifest"
done
took

step "serve"
serve_start "$TMP/mirror"
echo "  mirror at $SERVE_URL (pid $SERVE_PID)"
curl -fsS -o /dev/null "$SERVE_URL/debian/dists/bookworm/InRelease" \
    || fail "the mirror server does not answer at $SERVE_URL"

compose_binary
took

# check_elf FILE MACHINE INTERP: prints and checks the ELF machine, PT_INTERP, DT_NEEDED.
check_elf() { # file machine interp
    local f=$1 machine interp needed lib
    machine=$(readelf -hW "$f" | sed -n 's/^ *Machine: *//p')
    interp=$(readelf -lW "$f" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
    needed=$(readelf -dW "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    echo "  $(basename "$f"): $(stat -c %s "$f") bytes, $machine, PT_INTERP $interp, DT_NEEDED: $needed"
    [ "$machine" = "$2" ] || fail "$f: machine is '$machine', expected '$2'"
    [ "$interp" = "$3" ] || fail "$f: PT_INTERP is '$interp', expected '$3'"
    for lib in libstdc++.so.6 libgcc_s.so.1 libc.so.6 libz.so.1; do
        case " $needed " in *" $lib "*) ;; *) fail "$f does not need $lib: it would not test what it is meant to" ;; esac
    done
}

step "2 compile tests/e2e-assets/check.cc for amd64 (g++) and arm64 (aarch64-linux-gnu-g++)"
BIN=$TMP/bin
mkdir -p "$BIN"
CXXFLAGS=(-std=c++17 -O2 -Wall -Wextra -Werror)
g++ --version | head -n1 | sed 's/^/  /'
g++ "${CXXFLAGS[@]}" -o "$BIN/check-amd64" tests/e2e-assets/check.cc -lz \
    || fail "g++ could not build check.cc (apt-get install g++ zlib1g-dev)"
check_elf "$BIN/check-amd64" "Advanced Micro Devices X86-64" /lib64/ld-linux-x86-64.so.2
# arm64 zlib from the verified .debs, into a throwaway sysroot (see the header).
SYSROOT=$TMP/arm64-sysroot
for p in zlib1g zlib1g-dev; do
    v=$(awk -F'\t' -v p="$p" '$1 == p && $3 == "arm64" { print $2; exit }' "$CHOSEN_VERSIONS")
    [ -n "$v" ] || fail "$p:arm64 is not in the mirror"
    deb=$(find "$TMP/mirror" -name "${p}_${v#*:}_arm64.deb" | head -n1)
    [ -n "$deb" ] || fail "no ${p}_${v#*:}_arm64.deb in the mirror"
    dpkg-deb -x "$deb" "$SYSROOT"
    echo "  extracted $(basename "$deb") (sha256 checked by debian-mirror.sh) into the sysroot"
done
[ -f "$SYSROOT/lib/aarch64-linux-gnu/libz.so.1" ] || fail "zlib1g:arm64 has no /lib/aarch64-linux-gnu/libz.so.1"
aarch64-linux-gnu-g++ --version | head -n1 | sed 's/^/  /'
aarch64-linux-gnu-g++ "${CXXFLAGS[@]}" -I "$SYSROOT/usr/include" -o "$BIN/check-arm64" \
    tests/e2e-assets/check.cc -L "$SYSROOT/lib/aarch64-linux-gnu" -l:libz.so.1 \
    || fail "aarch64-linux-gnu-g++ could not build check.cc (apt-get install g++-aarch64-linux-gnu)"
check_elf "$BIN/check-arm64" AArch64 /lib/ld-linux-aarch64.so.1
took

step "3 test manifest: $CC_MANIFEST + /usr/local/bin/check <- $BIN/check-{arch}"
scripts/e2e-manifest.py "$CC_MANIFEST" "$TMP/ma.toml" --program "$BIN/check-{arch}"
grep -q "^source = \"$BIN/check-{arch}\"$" "$TMP/ma.toml" || fail "the manifest's [[file]] source is not $BIN/check-{arch}"
took

run_compose() { # logname outdir [args...] -> compose's digest in $DIGEST, time in $MS
    local name=$1 out=$2 rc=0 start
    shift 2
    start=$(date +%s%N)
    "$COMPOSE" "$TMP/ma.toml" --mirror "http://deb.debian.org=$SERVE_URL" --output "$out" \
        --cache "$TMP/cache" "$@" >"$TMP/$name.stdout" 2>"$TMP/$name.stderr" || rc=$?
    MS=$(ms_since "$start")
    if [ "$rc" != 0 ]; then
        { echo "---- compose stderr ($name) ----"; tail -n 40 "$TMP/$name.stderr"; } >&2
        fail "compose ($name) exited $rc: $COMPOSE $TMP/ma.toml --mirror http://deb.debian.org=$SERVE_URL --output $out --cache $TMP/cache $*"
    fi
    DIGEST=$(tail -n 1 "$TMP/$name.stdout")
    [[ $DIGEST =~ ^sha256:[0-9a-f]{64}$ ]] || fail "compose ($name): last stdout line '$DIGEST' is not a digest"
}

step "4a ONE compose run for both architectures (cold cache): --arch amd64 --arch arm64"
OUT=$TMP/out
run_compose two-cold "$OUT" --arch amd64 --arch arm64
D_TWO=$DIGEST
T_TWO_COLD=$MS
echo "  digest $D_TWO in $T_TWO_COLD ms"
grep -E '^[a-z0-9]+: [0-9]+ packages' "$TMP/two-cold.stderr" | sed 's/^/  compose: /' || true
[ -f "$TMP/ma.toml.lock" ] || fail "compose wrote no lock at $TMP/ma.toml.lock"
echo "  lock $TMP/ma.toml.lock: $(wc -l <"$TMP/ma.toml.lock") lines"
took

step "4b skopeo inspect --raw: an image index with linux/amd64 and linux/arm64/v8"
skopeo inspect --raw "oci:$OUT:$TAG" >"$TMP/index.json" || fail "skopeo cannot read oci:$OUT:$TAG"
# Per platform: the image manifest's digest, its layer digest and sizes (read from the layout).
python3 - "$TMP/index.json" "$OUT" "$D_TWO" >"$TMP/platforms.tsv" <<'PY' || fail "the image index is not right (above)"
import hashlib, json, os, sys
raw, out, digest = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(raw, "rb").read()
idx = json.loads(data)
def blob(d):
    return open(os.path.join(out, "blobs", *d.split(":")), "rb").read()
err = []
if idx.get("mediaType") != "application/vnd.oci.image.index.v1+json":
    err.append(f"mediaType is {idx.get('mediaType')}, expected an OCI image index")
if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
    err.append("the index's digest is not the digest compose printed")
plats = []
for m in idx.get("manifests", []):
    p = m.get("platform", {})
    name = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
    plats.append(name)
    man = json.loads(blob(m["digest"]))
    cfg = json.loads(blob(man["config"]["digest"]))
    if (cfg.get("os"), cfg.get("architecture"), cfg.get("variant")) != (p.get("os"), p.get("architecture"), p.get("variant")):
        err.append(f"{name}: config says {cfg.get('os')}/{cfg.get('architecture')}/{cfg.get('variant')}")
    layers = man["layers"]
    print(f"{p.get('architecture')}\t{m['digest']}\t{layers[0]['digest']}\t{sum(l['size'] for l in layers)}\t{len(layers)}")
    print(f"  {name:<16} manifest {m['digest']}, {len(layers)} layer(s), {sum(l['size'] for l in layers)} bytes compressed", file=sys.stderr)
if plats != ["linux/amd64", "linux/arm64/v8"]:
    err.append(f"platforms are {plats}, expected ['linux/amd64', 'linux/arm64/v8'] (sorted)")
for e in err:
    print(f"  WRONG: {e}", file=sys.stderr)
sys.exit(1 if err else 0)
PY
declare -A MAN_DIGEST LAYER_DIGEST LAYER_SIZE
while IFS=$'\t' read -r a md ld ls _; do
    MAN_DIGEST[$a]=$md LAYER_DIGEST[$a]=$ld LAYER_SIZE[$a]=$ls
done <"$TMP/platforms.tsv"
for a in "${ARCHS[@]}"; do
    variant=(); [ "$a" = arm64 ] && variant=(--override-variant v8)
    skopeo --override-arch "$a" "${variant[@]}" inspect "oci:$OUT:$TAG" >"$TMP/inspect-$a.json" \
        || fail "skopeo --override-arch $a inspect oci:$OUT:$TAG failed"
    # skopeo's "Digest" is the index's; the selected image shows in Architecture and Layers.
    got=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); print(i["Os"], i["Architecture"], " ".join(i["Layers"]))' "$TMP/inspect-$a.json")
    echo "  skopeo --override-arch $a ${variant[*]} inspect: os/arch/layers $got"
    [ "$got" = "linux $a ${LAYER_DIGEST[$a]}" ] \
        || fail "skopeo selected '$got' for $a, expected 'linux $a ${LAYER_DIGEST[$a]}'"
done
took

step "4c compose verify $TMP/ma.toml (the lock just written, --cache of the build)"
rc=0
"$COMPOSE" verify "$TMP/ma.toml" --cache "$TMP/cache" --mirror "http://deb.debian.org=$SERVE_URL" \
    >"$TMP/verify.out" 2>"$TMP/verify.err" || rc=$?
sed 's/^/  | /' "$TMP/verify.out"
grep -v '^\s*$' "$TMP/verify.err" | tail -n 10 | sed 's/^/  stderr: /' || true
[ "$rc" = 0 ] || fail "compose verify exited $rc on the lock of the two-arch build"
for a in "${ARCHS[@]}"; do
    grep -q "${MAN_DIGEST[$a]#sha256:}" "$TMP/verify.out" "$TMP/ma.toml.lock" \
        || fail "neither the lock nor the verify audit mentions the $a manifest ${MAN_DIGEST[$a]}"
done
echo "  compose verify: exit 0"
took

# select_and_unpack ARCH -> $TMP/ARCH-bundle (umoci needs a single image: skopeo picks it).
select_and_unpack() {
    local a=$1 variant=() digest
    [ "$a" = arm64 ] && variant=(--override-variant v8)
    skopeo --override-arch "$a" "${variant[@]}" copy -q "oci:$OUT:$TAG" "oci:$TMP/$a-image:$TAG" \
        || fail "skopeo copy --override-arch $a oci:$OUT:$TAG failed"
    digest=$(skopeo inspect "oci:$TMP/$a-image:$TAG" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
    echo "  skopeo copy --override-arch $a ${variant[*]}: manifest $digest"
    [ "$digest" = "${MAN_DIGEST[$a]}" ] || fail "skopeo copied $digest for $a, the index's $a manifest is ${MAN_DIGEST[$a]}"
    umoci unpack --image "$TMP/$a-image:$TAG" "$TMP/$a-bundle" >/dev/null \
        || fail "umoci cannot unpack $TMP/$a-image:$TAG"
    R=$TMP/$a-bundle/rootfs
    echo "  rootfs: $(find "$R" -xdev | wc -l) entries, $(du -sb "$R" | cut -f1) bytes"
    cmp -s "$R/usr/local/bin/check" "$BIN/check-$a" \
        || fail "/usr/local/bin/check in the $a image is not check-$a"
    echo "  /usr/local/bin/check is check-$a ($(readelf -hW "$R/usr/local/bin/check" | sed -n 's/^ *Machine: *//p'))"
    ROOTFS_BYTES[$a]=$(du -sb "$R" | cut -f1)
}
declare -A ROOTFS_BYTES

# The image config, as umoci turned it into a runtime spec: args, env, user.
image_process() { # bundle -> prints "ARGS<TAB>ENV<TAB>CWD", list items joined by \x1f
    python3 - "$1/config.json" "$USER_UID" "$USER_GID" "$USER_NAME" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
uid, gid, user = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
p = c["process"]
if p["args"] != ["/usr/local/bin/check", user]:
    sys.exit(f"image config gives args {p['args']}, expected ['/usr/local/bin/check', '{user}']")
got = (p["user"].get("uid"), p["user"].get("gid"))
if got != (uid, gid):
    sys.exit(f"umoci resolved the image user to {got}, the manifest says {(uid, gid)}")
print("\x1f".join(p["args"]) + "\t" + "\x1f".join(p["env"]) + "\t" + p["cwd"])
PY
}

step "5 arm64: unpack, run /usr/local/bin/check under qemu-aarch64-static in a chroot as $USER_NAME ($USER_UID:$USER_GID)"
select_and_unpack arm64
AR=$TMP/arm64-bundle/rootfs
proc=$(image_process "$TMP/arm64-bundle") || fail "the arm64 image config is not right (above)"
IFS=$'\t' read -r args_s env_s cwd <<<"$proc"
IFS=$'\x1f' read -r -a ARGS <<<"$args_s"
IFS=$'\x1f' read -r -a ENVS <<<"$env_s"
echo "  image config: args ${ARGS[*]}, env ${ENVS[*]}, cwd $cwd (chroot runs from /)"
bf=/proc/sys/fs/binfmt_misc/qemu-aarch64
if [ -r "$bf" ]; then
    echo "  binfmt_misc: qemu-aarch64 registered ($(head -n1 "$bf")); not relied on"
else
    echo "  binfmt_misc: no qemu-aarch64 entry; the emulator is invoked explicitly"
fi
qemu-aarch64-static --version | head -n1 | sed 's/^/  /'
install -m 0755 "$(command -v qemu-aarch64-static)" "$AR/qemu-aarch64-static"
run_check_program "qemu-aarch64-static in chroot (arm64)" "$TMP/qemu" \
    "$USER_UID" "$USER_GID" "$USER_NAME" \
    env -i "${ENVS[@]}" chroot --userspec="$USER_UID:$USER_GID" --groups= "$AR" \
    /qemu-aarch64-static "${ARGS[@]}"
rm -f "$AR/qemu-aarch64-static"
[ -e "$AR/qemu-aarch64-static" ] && fail "the emulator is still in the rootfs"
echo "  emulator removed from the rootfs"
took

step "6 amd64: unpack, runc run as $USER_NAME ($USER_UID:$USER_GID)"
select_and_unpack amd64
image_process "$TMP/amd64-bundle" >/dev/null || fail "the amd64 image config is not right (above)"
# Keep umoci's runtime spec (the image config is what is tested); change only what a CI
# run needs: no terminal, the user given numerically, a read-only root.
python3 - "$TMP/amd64-bundle/config.json" "$USER_UID" "$USER_GID" <<'PY' || fail "runc config"
import json, sys
path, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["user"] = {"uid": uid, "gid": gid}
c["root"]["readonly"] = True
json.dump(c, open(path, "w"), indent=2)
print(f"  config: args {c['process']['args']}, user {uid}:{gid}, terminal false, root read-only")
PY
run_check_program "runc run (amd64)" "$TMP/runc" "$USER_UID" "$USER_GID" "$USER_NAME" \
    runc run --bundle "$TMP/amd64-bundle" "$RUNC_ID"
took

step "6b the two layers hold the same paths (modulo the architecture triplet)"
# From the layer tars (not the unpacked trees: runc adds /dev, /proc, /sys mount points).
# Only the loader's location differs by design: amd64 /usr/lib64/ld-linux-x86-64.so.2
# (+ the /lib64 symlink), arm64 /usr/lib/ld-linux-aarch64.so.1.
layer_paths() { # arch
    tar -tzf "$OUT/blobs/sha256/${LAYER_DIGEST[$1]#sha256:}" | sed -e 's|^\./||' -e 's|/$||' \
        -e 's/x86_64-linux-gnu\|aarch64-linux-gnu/TRIPLET/g' \
        -e '/ld-linux-x86-64\.so\.2$\|ld-linux-aarch64\.so\.1$\|^lib64$\|^usr\/lib64$/d' | LC_ALL=C sort
}
if diff <(layer_paths amd64) <(layer_paths arm64) >"$TMP/paths.diff"; then
    echo "  the same $(layer_paths arm64 | wc -l) paths in both layers (besides the loader)"
else
    sed 's/^/  /' "$TMP/paths.diff" | head -n 20
    fail "the amd64 and arm64 layers differ in more than the triplet and the loader (< amd64, > arm64)"
fi
took

step "7 figures: two-arch compose vs one-arch composes, warm .deb cache"
# Two modes, each timed for amd64+arm64 together and for each architecture alone:
#   resolve:   no lock yet (a --lock path that does not exist): InRelease + Packages
#              fetched, verified and parsed, packages resolved; the .debs come from the cache;
#   from lock: the lock that run wrote: "packages pinned by the lock", no index needed.
# Each timed FIG_REPEAT times (default 2, fresh lock and output each time); the minimum is
# reported, all samples are printed (a loaded machine makes single samples noisy).
FIG_REPEAT=${FIG_REPEAT:-2}
declare -A T_RES T_LOCK
min() { printf '%s\n' "$@" | sort -n | head -n1; }
time_compose() { # key args... -> T_RES[key], T_LOCK[key]; checks the digest of every run
    local key=$1 d1="" i res=() lock=()
    shift
    for i in $(seq 1 "$FIG_REPEAT"); do
        rm -rf "$TMP/$key.lock" "$TMP/out-$key-resolve" "$TMP/out-$key-lock"
        run_compose "$key-resolve" "$TMP/out-$key-resolve" "$@" --lock "$TMP/$key.lock"
        res+=("$MS")
        [ -z "$d1" ] && d1=$DIGEST
        [ "$DIGEST" = "$d1" ] || fail "compose ($key) run $i: $DIGEST, run 1: $d1"
        grep -q 'packages pinned by' "$TMP/$key-resolve.stderr" && fail "compose ($key) used a lock where none existed"
        run_compose "$key-lock" "$TMP/out-$key-lock" "$@" --lock "$TMP/$key.lock"
        lock+=("$MS")
        grep -q 'packages pinned by' "$TMP/$key-lock.stderr" || fail "compose ($key) did not build from the lock it wrote"
        [ "$DIGEST" = "$d1" ] || fail "compose ($key): from the lock $DIGEST, resolving $d1"
    done
    T_RES[$key]=$(min "${res[@]}") T_LOCK[$key]=$(min "${lock[@]}")
    echo "  $key: resolve ${res[*]} ms, from lock ${lock[*]} ms, digest $DIGEST"
}
time_compose two --arch amd64 --arch arm64
[ "$DIGEST" = "$D_TWO" ] || fail "two-arch compose, warm cache, other output: $DIGEST != $D_TWO (first run)"
for a in "${ARCHS[@]}"; do
    time_compose "$a" --arch "$a"
    one_man=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$TMP/out-$a-lock/index.json")
    [ "$one_man" = "${MAN_DIGEST[$a]}" ] \
        || fail "the $a image built alone ($one_man) differs from the $a image of the two-arch index (${MAN_DIGEST[$a]})"
done
echo "  the two-arch digest is the first run's; each architecture's image manifest is the same built alone or with the other"
echo
ratio() { python3 -c "print(f'{$1 / ($2 + $3):.2f}')"; }
printf '  %-36s %12s %12s\n' "compose, loopback, $PROFILE, min of $FIG_REPEAT" "resolve ms" "lock ms"
printf '  %-36s %12s %12s\n' "amd64+arm64, cold .deb cache" "$T_TWO_COLD" "-"
printf '  %-36s %12s %12s\n' "amd64+arm64, warm" "${T_RES[two]}" "${T_LOCK[two]}"
for a in "${ARCHS[@]}"; do printf '  %-36s %12s %12s\n' "$a only, warm" "${T_RES[$a]}" "${T_LOCK[$a]}"; done
printf '  %-36s %12s %12s\n' "two-arch / (amd64 + arm64 alone)" \
    "$(ratio "${T_RES[two]}" "${T_RES[amd64]}" "${T_RES[arm64]}")" \
    "$(ratio "${T_LOCK[two]}" "${T_LOCK[amd64]}" "${T_LOCK[arm64]}")"
echo
printf '  %-6s %-73s %12s %12s\n' ARCH "LAYER" "COMPRESSED" "ROOTFS"
for a in "${ARCHS[@]}"; do
    printf '  %-6s %-73s %12s %12s\n' "$a" "${LAYER_DIGEST[$a]}" "${LAYER_SIZE[$a]}" "${ROOTFS_BYTES[$a]}"
done
took

printf '\nE2E-MULTIARCH OK: %s %s (linux/amd64 %s, linux/arm64/v8 %s) in %s s\n' "$TAG" "$D_TWO" \
    "${MAN_DIGEST[amd64]}" "${MAN_DIGEST[arm64]}" "$(( $(ms_since "$E2E_START") / 1000 ))"
