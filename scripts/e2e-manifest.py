#!/usr/bin/env python3
"""Write a test variant of a manifest (used by scripts/e2e-debian.sh and e2e-multiarch.sh).

    scripts/e2e-manifest.py SRC OUT [--program HOSTFILE] [--drop-package NAME]...

The variant is SRC's text, comments kept, with these edits (each must apply exactly once,
and the result is parsed back to check it):

  * every host path (`keyring`, `[[file]] source`) and every `[image] include` is made
    absolute, so OUT may live anywhere (docs/manifest.md: host paths and includes are
    relative to the file that writes them; an included base keeps its own relative
    paths, which compose resolves against the base's directory);
  * --program: `[[file]] path = "/usr/local/bin/check"`, `source = HOSTFILE`, mode 0755 is
    appended (HOSTFILE may contain `{arch}`: then HOSTFILE for each of [image].architectures
    must exist); `[image] entrypoint` becomes ["/usr/local/bin/check"] and `cmd` becomes
    [<the [image].user name>], the name the program expects getpwuid() to return;
  * --drop-package NAME: the `[package.NAME]` table is removed.

Prints one line per edit.
"""
import argparse
import os
import re
import sys
import tomllib

PROGRAM_PATH = "/usr/local/bin/check"


def die(msg):
    print(f"e2e-manifest: {msg}", file=sys.stderr)
    sys.exit(1)


def sub_once(pattern, repl, text, what):
    new, n = re.subn(pattern, repl, text, flags=re.M)
    if n != 1:
        die(f"{what}: expected exactly one match of /{pattern}/, found {n}")
    return new


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--program")
    ap.add_argument("--drop-package", action="append", default=[])
    a = ap.parse_args()

    src_dir = os.path.dirname(os.path.abspath(a.src))
    text = open(a.src, encoding="utf-8").read()
    orig = tomllib.loads(text)

    def absolutize(m):
        key, rel = m.group(1), m.group(2)
        path = rel if os.path.isabs(rel) else os.path.normpath(os.path.join(src_dir, rel))
        return f'{key} = "{path}"'

    text, n = re.subn(r'^(keyring|source) = "([^"]+)"', absolutize, text, flags=re.M)
    print(f"  {n} host path(s) made absolute (relative to {src_dir})")

    def absolutize_includes(m):
        paths = re.findall(r'"([^"]+)"', m.group(1))
        paths = [p if os.path.isabs(p) else os.path.normpath(os.path.join(src_dir, p)) for p in paths]
        return "include = [" + ", ".join(f'"{p}"' for p in paths) + "]"

    text, n = re.subn(r'^include = \[([^\]]*)\]', absolutize_includes, text, flags=re.M)
    print(f"  {n} include list(s) made absolute")

    for name in a.drop_package:
        header = re.escape(name) if re.fullmatch(r"[A-Za-z0-9_-]+", name) else '"' + re.escape(name) + '"'
        # The table runs from its header to the next table header (or the end).
        text = sub_once(rf"^\[package\.{header}\]\n(?:(?!\[).*\n|\n)*", "", text, f"drop [package.{name}]")
        print(f"  [package.{name}] removed")

    if a.program:
        user = orig.get("image", {}).get("user")
        if not user or ":" in user:
            die("--program needs [image] user = <a [[user]] name>")
        prog = os.path.abspath(a.program)
        # A `{arch}` in HOSTFILE is kept for compose to expand (docs/manifest.md): one program
        # per architecture of [image].architectures, each of which must exist.
        arches = orig.get("image", {}).get("architectures", []) if "{arch}" in prog else [None]
        if not arches:
            die(f"{prog}: has {{arch}} but the manifest lists no [image] architectures")
        for arch in arches:
            f = prog.replace("{arch}", arch) if arch else prog
            if not os.path.isfile(f):
                die(f"{f}: no such file")
        text = sub_once(r"^entrypoint = .*$", f'entrypoint = ["{PROGRAM_PATH}"]', text, "[image] entrypoint")
        text = sub_once(r"^cmd = .*$", f'cmd = ["{user}"]', text, "[image] cmd")
        text += (
            "\n[[file]]\n"
            "# Added by scripts/e2e-manifest.py: the e2e test program (tests/e2e-assets/check.cc).\n"
            f'path = "{PROGRAM_PATH}"\n'
            f'source = "{prog}"\n'
            'mode = "0755"\n'
        )
        print(f"  entrypoint {PROGRAM_PATH} {user}; [[file]] {PROGRAM_PATH} <- {prog} (0755)")

    m = tomllib.loads(text)
    for name in a.drop_package:
        if name in m.get("package", {}):
            die(f"[package.{name}] still present after the edit")
    if a.program:
        if m["image"].get("entrypoint") != [PROGRAM_PATH]:
            die("entrypoint edit did not take")
        if not any(f.get("path") == PROGRAM_PATH for f in m.get("file", [])):
            die("[[file]] edit did not take")
    kept = set(orig.get("package", {})) - set(a.drop_package)
    if set(m.get("package", {})) != kept:
        die(f"packages changed unexpectedly: {sorted(m.get('package', {}))} != {sorted(kept)}")
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"  wrote {a.out}: packages {' '.join(m.get('package', {}))}")


if __name__ == "__main__":
    main()
