#!/usr/bin/env bash
# Build a loopback mirror of REAL Debian 12 data, laid out like deb.debian.org:
#
#   scripts/debian-mirror.sh OUTDIR PKG[:ARCH]...
#
#   OUTDIR/debian/dists/{bookworm,bookworm-updates}/InRelease
#   OUTDIR/debian/dists/<suite>/main/binary-<arch>/Packages
#   OUTDIR/debian-security/dists/bookworm-security/{InRelease,main/binary-<arch>/Packages}
#   OUTDIR/<archive>/<Filename of the package's stanza>          (the .debs)
#
# Serve OUTDIR and point compose at it with `--mirror http://deb.debian.org=URL`.
#
# Everything comes from this host's apt: the signed InRelease files and the Packages
# indexes apt already fetched (/var/lib/apt/lists), the .debs via `apt-get download`.
# Nothing is re-signed or rewritten: each InRelease is checked with gpgv against
# Debian's keyring, each Packages file against the SHA256 and size its InRelease lists,
# each .deb against the SHA256 and size of its Packages stanza. Only the plain
# `Packages` is written (apt stores it lz4-compressed; recompressing to .xz/.gz would give
# bytes whose hashes are not in Release, so compose must use the plain variant).
#
# Environment:
#   ARCHES     Debian architectures (default: amd64, plus arm64 when apt has arm64 lists,
#              i.e. after `dpkg --add-architecture arm64 && apt-get update`).
#   DEB_CACHE  where downloaded .debs are kept between runs (default OUTDIR/../debs-cache).
#   LISTS_DIR  apt lists directory (default: apt's Dir::State::lists, /var/lib/apt/lists).
#   APT_STATE  a directory: instead of the host's apt state, run a private
#              `apt-get update` for ARCHES (default then "amd64 arm64") into APT_STATE/lists
#              with APT_STATE/cache, and use that for apt-cache/apt-get download. The host's
#              dpkg architectures and lists are left untouched. Uses the host's sources.
#   KEYRING    default /usr/share/keyrings/debian-archive-keyring.gpg.
#   CHOSEN_VERSIONS  a file: one "package<TAB>version<TAB>architecture" line is appended
#              per .deb put in the mirror (what compose must resolve; the e2e compares
#              scanner output with it).
#   SUITES     "archive:suite ..." (default "debian:bookworm debian:bookworm-updates
#              debian-security:bookworm-security").
#
# A PKG without :ARCH is fetched for every architecture in ARCHES (once if it is
# Architecture: all). The version is the highest one across the suites' verified
# Packages indexes — what compose resolves — and must equal apt's candidate.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -ge 1 ] || { sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
start_ns=$(date +%s%N)

OUTDIR=$1; shift
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
DEB_CACHE=${DEB_CACHE:-$(dirname "$OUTDIR")/debs-cache}
mkdir -p "$DEB_CACHE"
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
SUITES=${SUITES:-"debian:bookworm debian:bookworm-updates debian-security:bookworm-security"}
APT_OPTS=()
if [ -n "${APT_STATE:-}" ]; then
    ARCHES=${ARCHES:-"amd64 arm64"}
    mkdir -p "$APT_STATE/lists/partial" "$APT_STATE/cache/archives/partial"
    APT_STATE=$(cd "$APT_STATE" && pwd)
    APT_OPTS=(-o "Dir::State::Lists=$APT_STATE/lists" -o "Dir::Cache=$APT_STATE/cache"
              -o "APT::Architectures=" )
    for a in $ARCHES; do APT_OPTS+=(-o "APT::Architectures::=$a"); done
    chown -R _apt "$APT_STATE/lists" 2>/dev/null || true
    echo "== private apt-get update ($ARCHES) into $APT_STATE"
    apt-get "${APT_OPTS[@]}" update -q=2 || die "apt-get update into $APT_STATE failed"
    LISTS_DIR=$APT_STATE/lists
fi
if [ -z "${LISTS_DIR:-}" ]; then
    LISTS_DIR=/var/lib/apt/lists
    if command -v apt-config >/dev/null; then
        eval "$(apt-config "${APT_OPTS[@]}" shell LISTS_DIR Dir::State::lists/d)"
    fi
fi
LISTS_DIR=${LISTS_DIR%/}

for tool in gpgv lz4 apt-get apt-cache dpkg dpkg-deb sha256sum awk; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y gpgv lz4 dpkg apt)"
done
[ -r "$KEYRING" ] || die "keyring $KEYRING not readable (apt-get install debian-archive-keyring)"

# apt names list files after the URL: deb.debian.org_debian-security_dists_bookworm-security_...
list_prefix() { # archive suite
    printf '%s/deb.debian.org_%s_dists_%s' "$LISTS_DIR" "$1" "$2"
}

# Which architectures? Default amd64 (+arm64 if its lists exist).
first_archive=${SUITES%% *}
if [ -z "${ARCHES:-}" ]; then
    ARCHES=amd64
    if ls "$(list_prefix "${first_archive%%:*}" "${first_archive#*:}")"_main_binary-arm64_Packages* >/dev/null 2>&1; then
        ARCHES="amd64 arm64"
    else
        log "note: no arm64 apt lists on this host: mirror is amd64 only" \
            "(for arm64: dpkg --add-architecture arm64 && apt-get update, or set ARCHES)"
    fi
fi

# Decompress whatever variant apt stored for a Packages index (lz4 by default;
# plain/gz/xz/zst depending on Acquire::CompressionTypes / Acquire::GzipIndexes).
decompress_list() { # listfile-without-ext -> stdout
    local base=$1
    if [ -f "$base.lz4" ]; then lz4 -dc "$base.lz4"
    elif [ -f "$base" ]; then cat "$base"
    elif [ -f "$base.gz" ]; then gzip -dc "$base.gz"
    elif [ -f "$base.xz" ]; then xz -dc "$base.xz"
    elif [ -f "$base.zst" ]; then zstd -dcq "$base.zst"
    else return 1
    fi
}

# Hash and size listed for FILE in the SHA256 section of a Release/InRelease.
release_sha256() { # inrelease relpath -> "sha256 size"
    awk -v want="$2" '
        /^[^ ]/ { insha = ($0 ~ /^SHA256:/) ; next }
        insha && $3 == want { print $1, $2; found = 1; exit }
        END { if (!found) exit 1 }' "$1"
}

# From here on apt sees exactly ARCHES and no installed package, whatever this host's
# dpkg architectures and installed set are (scripts/lib.sh).
# shellcheck disable=SC2086
apt_pinned_opts $ARCHES
APT_OPTS+=("${APT_PINNED[@]}")

echo "== InRelease and Packages ($ARCHES) from $LISTS_DIR"
for spec in $SUITES; do
    archive=${spec%%:*} suite=${spec#*:}
    prefix=$(list_prefix "$archive" "$suite")
    dists=$OUTDIR/$archive/dists/$suite
    mkdir -p "$dists"
    [ -f "${prefix}_InRelease" ] || die "no ${prefix}_InRelease: is '$archive $suite' in apt's sources, and was apt-get update run?"
    if ! gpgv --keyring "$KEYRING" "${prefix}_InRelease" 2>"$dists/.gpgv.log"; then
        cat "$dists/.gpgv.log" >&2
        die "$archive/$suite InRelease: signature does not verify with $KEYRING"
    fi
    good=$(grep -c 'Good signature' "$dists/.gpgv.log" || true)
    rm -f "$dists/.gpgv.log"
    cp "${prefix}_InRelease" "$dists/InRelease"
    date_line=$(sed -n 's/^Date: //p' "$dists/InRelease" | head -n1)
    valid_until=$(sed -n 's/^Valid-Until: //p' "$dists/InRelease" | head -n1)
    printf '%-32s InRelease: %s good signature(s); Date %s; Valid-Until %s\n' \
        "$archive/$suite" "$good" "$date_line" "${valid_until:-none}"
    for arch in $ARCHES; do
        rel=main/binary-$arch/Packages
        expect=$(release_sha256 "$dists/InRelease" "$rel") \
            || die "$archive/$suite InRelease does not list $rel (SHA256)"
        mkdir -p "$dists/main/binary-$arch"
        out=$dists/$rel
        decompress_list "${prefix}_main_binary-${arch}_Packages" >"$out.tmp" \
            || die "no apt list ${prefix}_main_binary-${arch}_Packages{.lz4,,.gz,.xz,.zst}" \
                   "(for $arch: dpkg --add-architecture $arch && apt-get update)"
        got="$(sha256sum <"$out.tmp" | cut -d' ' -f1) $(stat -c %s "$out.tmp")"
        if [ "$got" != "$expect" ]; then
            rm -f "$out.tmp"
            die "$archive/$suite $rel: apt's list decompresses to 'sha256 size' = '$got' but the verified InRelease says '$expect' (stale lists? run apt-get update)"
        fi
        mv "$out.tmp" "$out"
        # Never leave variants whose hashes were not checked.
        rm -f "$out.xz" "$out.gz" "$out.zst" "$out.lz4"
        printf '%-32s %s: %s bytes, sha256 %s OK\n' "" "$rel" "${expect#* }" "${expect%% *}"
    done
done

# All stanzas of the wanted packages, from every verified Packages file, as TSV:
# archive suite package version architecture filename size sha256
stanzas() { # names... (one Packages pass per file)
    local spec archive suite arch
    for spec in $SUITES; do
        archive=${spec%%:*} suite=${spec#*:}
        for arch in $ARCHES; do
            awk -v names=" $* " -v archive="$archive" -v suite="$suite" '
                function flush() {
                    if (p != "" && index(names, " " p " "))
                        print archive "\t" suite "\t" p "\t" v "\t" a "\t" f "\t" s "\t" h
                    p = v = a = f = s = h = ""
                }
                /^$/ { flush(); next }
                /^Package: /      { p = $2 }
                /^Version: /      { v = $2 }
                /^Architecture: / { a = $2 }
                /^Filename: /     { f = $2 }
                /^Size: /         { s = $2 }
                /^SHA256: /       { h = $2 }
                END { flush() }' "$OUTDIR/$archive/dists/$suite/main/binary-$arch/Packages"
        done
    done | sort -u
}

[ $# -gt 0 ] || { echo "(no packages requested)"; exit 0; }

names=()
for want in "$@"; do names+=("${want%%:*}"); done
all=$(stanzas "${names[@]}")

echo "== packages (cache: $DEB_CACHE)"
summary=()
bytes_total=0
downloaded=0
seen=" "
for want in "$@"; do
    name=${want%%:*}
    if [ "$want" != "$name" ]; then arches=${want#*:}; else arches=$ARCHES; fi
    for arch in $arches; do
        case " $ARCHES " in *" $arch "*) ;; *) die "$want: $arch is not in ARCHES ($ARCHES)";; esac
        # Candidates: this package for this arch or Architecture: all.
        cands=$(awk -F'\t' -v n="$name" -v a="$arch" '$3 == n && ($5 == a || $5 == "all")' <<<"$all")
        [ -n "$cands" ] || die "$name: not in any Packages index for $arch ($SUITES)"
        best=""
        while IFS=$'\t' read -r _ _ _ v _ _ _ _; do
            if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
        done <<<"$cands"
        pkgarch=$(awk -F'\t' -v v="$best" '$4 == v { print $5; exit }' <<<"$cands")
        key="$name/$best/$pkgarch"
        case $seen in *" $key "*) continue ;; esac
        seen="$seen$key "

        # apt must agree: its candidate is what `apt-get download` fetches.
        aptcand=$(apt-cache "${APT_OPTS[@]}" policy "$name:$arch" | sed -n 's/^ *Candidate: //p')
        [ "$aptcand" = "$best" ] || die "$name:$arch: highest version in the Packages indexes is $best but apt's candidate is '$aptcand' (pinning?)"

        # The stanzas of exactly that Package/Version/Architecture (maybe in several
        # suites/archives, e.g. a security fix later folded into a point release).
        rows=$(awk -F'\t' -v v="$best" -v a="$pkgarch" '$4 == v && $5 == a' <<<"$cands")
        IFS=$'\t' read -r _ _ _ _ _ filename size sha <<<"$(head -n1 <<<"$rows")"
        while IFS=$'\t' read -r _ _ _ _ _ f2 s2 h2; do
            [ "$s2 $h2" = "$size $sha" ] || die "$key: stanzas disagree on size/SHA256 across suites ($f2)"
        done <<<"$rows"

        cached=$DEB_CACHE/$sha.deb
        if [ -f "$cached" ] && [ "$(sha256sum <"$cached" | cut -d' ' -f1)" = "$sha" ]; then
            how=cached
        else
            tmp=$(mktemp -d)
            # apt-get download as root wants _apt to write the target dir.
            chmod 0777 "$tmp"
            ( cd "$tmp" && apt-get "${APT_OPTS[@]}" download -q=2 "$name:$arch=$best" ) \
                || { rm -rf "$tmp"; die "apt-get download $name:$arch=$best failed"; }
            deb=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -n1)
            [ -n "$deb" ] || { rm -rf "$tmp"; die "apt-get download $name:$arch=$best produced no .deb"; }
            got=$(sha256sum <"$deb" | cut -d' ' -f1)
            gotsize=$(stat -c %s "$deb")
            if [ "$got $gotsize" != "$sha $size" ]; then
                rm -rf "$tmp"
                die "$key: downloaded .deb has sha256/size $got/$gotsize, Packages says $sha/$size"
            fi
            mv "$deb" "$cached.tmp" && mv "$cached.tmp" "$cached"
            rm -rf "$tmp"
            how=downloaded
            downloaded=$((downloaded + 1))
        fi
        # Control fields must be the stanza's, not just the hash (belt and braces).
        ctl="$(dpkg-deb -f "$cached" Package Version Architecture | awk '{print $2}' | paste -sd/)"
        [ "$ctl" = "$key" ] || die "$cached: control says $ctl, expected $key"

        where=""
        while IFS=$'\t' read -r archive suite _ _ _ f _ _; do
            dest=$OUTDIR/$archive/$f
            mkdir -p "$(dirname "$dest")"
            if ! [ -f "$dest" ] || ! cmp -s "$cached" "$dest"; then
                ln -f "$cached" "$dest" 2>/dev/null || cp "$cached" "$dest"
            fi
            where="$where $archive/$suite"
        done <<<"$rows"
        bytes_total=$((bytes_total + size))
        [ -z "${CHOSEN_VERSIONS:-}" ] || printf '%s\t%s\t%s\n' "$name" "$best" "$pkgarch" >>"$CHOSEN_VERSIONS"
        summary+=("$(printf '%-16s %-24s %-6s %9s  %-10s %s' "$name" "$best" "$pkgarch" "$size" "$how" "${where# }")")
    done
done

printf '%-16s %-24s %-6s %9s  %-10s %s\n' PACKAGE VERSION ARCH SIZE FETCH FROM
printf '%s\n' "${summary[@]}"
end_ns=$(date +%s%N)
printf '== %d .deb(s), %d bytes (%d downloaded now); mirror %s is %s; %d.%03ds\n' \
    "${#summary[@]}" "$bytes_total" "$downloaded" "$OUTDIR" \
    "$(du -sh "$OUTDIR" | cut -f1)" \
    $(( (end_ns - start_ns) / 1000000000 )) $(( (end_ns - start_ns) / 1000000 % 1000 ))
