#!/usr/bin/env python3
"""Check a manifest's package patterns against real .deb file lists.

    scripts/check-manifest-patterns.py MANIFEST DEBDIR [--arch ARCH]... [-v]

For each [package.NAME] and each architecture (--arch, else [image].architectures), the
.deb of NAME for that architecture (or Architecture: all) is looked up in DEBDIR (for
example the debs-cache of scripts/debian-mirror.sh), its data member is listed with
`dpkg-deb -c`, paths are mapped to merged-usr form (/bin /sbin /lib /lib64 /libx32 ->
/usr/...) and every pattern of `paths`, `optional-paths` and `exclude` is matched with
the manifest's glob rules (docs/manifest.md: `*` and `?` stop at `/`, `**` crosses it, `{a,b}`).
A `paths` pattern that matches no non-directory entry is an error (exit 1), as in compose.

This is a development aid for writing manifests; compose itself does the real check.
"""
import argparse
import os
import re
import subprocess
import sys
import tomllib

MERGED = ("bin", "sbin", "lib", "lib64", "libx32")


def glob_to_regex(pat):
    out, i, n, depth = [], 0, len(pat), 0
    while i < n:
        c = pat[i]
        if pat.startswith("/**/", i):
            out.append("/(?:.*/)?")
            i += 4
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "{":
            out.append("(?:")
            depth += 1
            i += 1
        elif c == "}" and depth:
            out.append(")")
            depth -= 1
            i += 1
        elif c == "," and depth:
            out.append("|")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def merged(path):
    parts = path.split("/")
    if len(parts) > 1 and parts[1] in MERGED:
        return "/usr" + path
    return path


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], check=True,
                          capture_output=True, text=True).stdout.strip()


def deb_entries(deb):
    """[(merged path, kind, link target or '')] of the data member."""
    out = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], check=True,
                         capture_output=True).stdout
    listing = subprocess.run(["tar", "-tvf", "-"], input=out, check=True,
                             capture_output=True).stdout.decode()
    entries = []
    for line in listing.splitlines():
        cols = line.split(None, 5)
        kind, rest = cols[0][0], cols[5]
        target = ""
        if kind == "l":
            rest, target = rest.split(" -> ", 1)
        elif kind == "h":
            rest, target = rest.split(" link to ", 1)
        path = rest[1:] if rest.startswith(".") else rest
        path = path.rstrip("/") or "/"
        entries.append((merged(path), kind, target))
    return entries


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("debdir")
    ap.add_argument("--arch", action="append")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    with open(args.manifest, "rb") as f:
        man = tomllib.load(f)
    arches = args.arch or man.get("image", {}).get("architectures") or ["amd64"]

    index = {}
    for name in sorted(os.listdir(args.debdir)):
        if name.endswith(".deb"):
            deb = os.path.join(args.debdir, name)
            index[(deb_field(deb, "Package"), deb_field(deb, "Architecture"))] = deb

    errors = 0
    for pkg, spec in man.get("package", {}).items():
        for arch in arches:
            if "arch" in spec and arch not in spec["arch"]:
                continue
            deb = index.get((pkg, arch)) or index.get((pkg, "all"))
            if not deb:
                print(f"{pkg} [{arch}]: no .deb in {args.debdir}")
                errors += 1
                continue
            entries = [e for e in deb_entries(deb) if e[1] != "d"]
            excl = [glob_to_regex(p) for p in spec.get("exclude", [])]
            version = deb_field(deb, "Version")
            print(f"{pkg} {version} [{arch}] ({len(entries)} non-directory entries)")
            selected = set()
            for key in ("paths", "optional-paths"):
                for pat in spec.get(key, []):
                    rx = glob_to_regex(pat)
                    hits = [e for e in entries if rx.match(e[0])]
                    kept = [e for e in hits if not any(x.match(e[0]) for x in excl)]
                    selected.update(e[0] for e in kept)
                    shown = ", ".join(
                        e[0] + (f" -> {e[2]}" if e[2] else "") for e in kept[:3])
                    more = f", ... (+{len(kept) - 3})" if len(kept) > 3 else ""
                    flag = ""
                    if not hits and key == "paths":
                        flag = "  <-- ERROR: matches nothing"
                        errors += 1
                    print(f"  {key:14} {pat!r}: {len(hits)} match, {len(kept)} kept"
                          f" [{shown}{more}]{flag}")
            for pat, rx in zip(spec.get("exclude", []), excl):
                n = sum(1 for e in entries if rx.match(e[0]))
                print(f"  {'exclude':14} {pat!r}: {n} entries dropped")
            if args.verbose:
                for p in sorted(selected):
                    print(f"      {p}")
            print(f"  => {len(selected)} entries selected")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
