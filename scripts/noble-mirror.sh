#!/usr/bin/env bash
# Build the loopback Ubuntu 24.04 (noble) repository of tests/support/noble.rs from
# ../shared/data/ubuntu (the real noble .debs with their real stanzas; each suite's
# Release signed with a key made for this run, as no signed noble main index exists
# there), serve it on 127.0.0.1 and compose the shipped manifest from it: the run the
# README shows.
#
#   scripts/noble-mirror.sh [DIR]     # DIR: work directory (default: a new one in /tmp)
#
# DIR gets mirror/ (the repository: ubuntu/dists, ubuntu/pool as links to the .debs, and
# test-keyring.gpg), out/ (the image), noble.lock (the lock; the repository's manifests/
# stays untouched) and cache/. Environment: MANIFEST (default
# manifests/noble-tiny-grpc.toml; manifests/noble-static.toml works too), COMPOSE (a
# compose binary; default: `cargo build --release --locked`), SERVE_ONLY=1 (build and
# serve the repository, print the compose command, and serve until Ctrl-C).
#
# Only amd64: there is no arm64 noble .deb in ../shared/data, nor a noble tzdata, so the
# run leaves tzdata out with --exclude-package tzdata.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MANIFEST=${MANIFEST:-manifests/noble-tiny-grpc.toml}
DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/compose-noble.XXXXXX")}
[ -d ../shared/data/ubuntu/debs ] || die "../shared/data/ubuntu/debs is not there: the repository is made of those files"
mkdir -p "$DIR"
[ -e "$DIR/mirror" ] && die "$DIR/mirror exists: give a new or empty work directory"

log "building the repository in $DIR/mirror"
cargo run --quiet --locked --example noble_mirror -- "$DIR/mirror"

if [ -z "${COMPOSE:-}" ]; then
    cargo build --quiet --release --locked
    COMPOSE=${CARGO_TARGET_DIR:-target}/release/compose
fi

serve_start "$DIR/mirror"
trap serve_stop EXIT
cmd=("$COMPOSE" "$MANIFEST" --arch amd64
     --mirror "http://archive.ubuntu.com=$SERVE_URL"
     --keyring "http://archive.ubuntu.com/ubuntu=$DIR/mirror/test-keyring.gpg"
     --exclude-package tzdata
     --output "$DIR/out" --lock "$DIR/noble.lock" --cache "$DIR/cache")
log "serving $DIR/mirror at $SERVE_URL"
log "\$ ${cmd[*]}"
if [ "${SERVE_ONLY:-0}" = 1 ]; then
    log "serving until Ctrl-C"
    wait "$SERVE_PID"
else
    "${cmd[@]}"
fi
