#!/usr/bin/env python3
"""Choose dependency-closed package sets for the scale case of scripts/bench.sh.

    scripts/bench-scale-set.py MIRROR ARCH N... [--exclude NAME]... > sets.tsv

MIRROR is a loopback mirror written by scripts/debian-mirror.sh (its verified Packages
indexes of bookworm, bookworm-updates, bookworm-security). A package is eligible when it
is installed on this host (dpkg status `ii`) for ARCH or `all` at exactly the version the
indexes resolve to (the highest across suites): the host proves that its Depends were
satisfiable together, and the ELF files it ships load there. Each eligible package's
Depends and Pre-Depends are resolved inside the eligible set (the first alternative that
is eligible, itself or through Provides); a package with an unsatisfiable clause is left
out with everything that needs it.

The strongly connected components of that dependency graph are emitted in Tarjan order
(dependencies first), roots taken by name: every prefix that ends on a component boundary
is closed under Depends. For each N, the shortest such prefix with at least N packages is
printed as one line: `N<TAB>COUNT<TAB>DEB_BYTES<TAB>INSTALLED_KIB<TAB>name name ...`
(the sizes as the Packages stanzas give them: Size, Installed-Size).
"""
import argparse
import glob
import os
import re
import subprocess
import sys


def stanzas(path):
    cur = {}
    key = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line == "\n":
                if cur:
                    yield cur
                cur, key = {}, None
            elif line[0] in " \t":
                if key:
                    cur[key] += line
            else:
                key, _, val = line.partition(":")
                cur[key] = val.strip()
    if cur:
        yield cur


def newer(a, b):
    """a > b in dpkg's order (dpkg itself decides: rare, only names in several suites)."""
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0


def clauses(field):
    out = []
    for clause in filter(None, (c.strip() for c in field.split(","))):
        alts = []
        for alt in clause.split("|"):
            name = re.sub(r"\(.*?\)|\[.*?\]|<.*?>", "", alt).strip().split(":")[0]
            if name:
                alts.append(name)
        out.append(alts)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mirror")
    ap.add_argument("arch")
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--exclude", action="append", default=[])
    # Cross toolchains ship ELF files of another machine, whose libraries the image does
    # not hold for that machine (the linkage check would fail on them).
    ap.add_argument("--exclude-regex", default=r"-cross$|aarch64|arm64|armhf|i386")
    a = ap.parse_args()

    cand = {}
    for path in sorted(glob.glob(os.path.join(a.mirror, "*/dists/*/main/binary-" + a.arch + "/Packages"))):
        for s in stanzas(path):
            name, ver = s.get("Package"), s.get("Version")
            if not name or s.get("Architecture") not in (a.arch, "all"):
                continue
            if name not in cand or (ver != cand[name]["Version"] and newer(ver, cand[name]["Version"])):
                cand[name] = s
    if not cand:
        sys.exit(f"bench-scale-set: no Packages index for {a.arch} under {a.mirror}")

    q = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\n"],
                       capture_output=True, text=True, check=True).stdout
    eligible = {}
    for line in q.splitlines():
        name, ver, arch, status = line.split("\t")
        s = cand.get(name)
        if (status.strip() == "ii" and arch in (a.arch, "all") and s and s["Version"] == ver
                and s["Architecture"] == arch and name not in a.exclude
                and not re.search(a.exclude_regex, name)):
            eligible[name] = s
    provides = {}
    for name, s in eligible.items():
        for alts in clauses(s.get("Provides", "")):
            for p in alts:
                provides.setdefault(p, []).append(name)

    # Resolve every clause inside the eligible set; drop packages that cannot be closed.
    deps = {}
    for name, s in eligible.items():
        chosen = []
        for alts in clauses(s.get("Pre-Depends", "") + "," + s.get("Depends", "")):
            pick = next((x for x in alts if x in eligible), None)
            if pick is None:
                pick = next((sorted(provides[x])[0] for x in alts if x in provides), None)
            if pick is None:
                chosen = None
                break
            if pick != name:
                chosen.append(pick)
        deps[name] = chosen
    changed = True
    while changed:
        changed = False
        for name, d in deps.items():
            if d is not None and any(deps.get(x) is None for x in d):
                deps[name] = None
                changed = True
    ok = {n: sorted(set(d)) for n, d in deps.items() if d is not None}

    # Tarjan (iterative): components come out dependencies first.
    index, low, onstack, stack, order = {}, {}, set(), [], []
    counter = 0
    for root in sorted(ok):
        if root in index:
            continue
        work = [(root, iter(ok[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        onstack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    onstack.add(nxt)
                    work.append((nxt, iter(ok[nxt])))
                elif nxt in onstack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    x = stack.pop()
                    onstack.discard(x)
                    comp.append(x)
                    if x == node:
                        break
                order.append(sorted(comp))

    print(f"bench-scale-set: {len(eligible)} installed packages at the mirror's version, "
          f"{len(ok)} closed under Depends", file=sys.stderr)
    ok_stanza = eligible
    prefix = []
    sizes = sorted(a.sizes)
    for comp in order:
        prefix += comp
        while sizes and len(prefix) >= sizes[0]:
            debs = sum(int(ok_stanza[x].get("Size", 0)) for x in prefix)
            inst = sum(int(ok_stanza[x].get("Installed-Size", 0)) for x in prefix)
            print(f"{sizes.pop(0)}\t{len(prefix)}\t{debs}\t{inst}\t{' '.join(prefix)}")
    for n in sizes:
        print(f"bench-scale-set: only {len(prefix)} packages, fewer than {n}", file=sys.stderr)
        debs = sum(int(ok_stanza[x].get("Size", 0)) for x in prefix)
        inst = sum(int(ok_stanza[x].get("Installed-Size", 0)) for x in prefix)
        print(f"{n}\t{len(prefix)}\t{debs}\t{inst}\t{' '.join(prefix)}")


if __name__ == "__main__":
    main()
