#!/usr/bin/env python3
"""Compare an image rootfs with whole-package extraction of the same packages.

    scripts/e2e-sizes.py ROOTFS WHOLE DEB... [--max-ratio R]

ROOTFS: the unpacked image rootfs (umoci unpack). WHOLE: the whole-package extraction
(mmdebstrap --variant=extract; with --skeleton, what mmdebstrap itself created before
extracting is not counted). DEB...: the .debs both were made from.

Prints `du -sb`-style totals of both trees (apparent bytes of files, symlinks and
directories, hard links once) and their ratio, then a per-package table of regular-file
bytes: what each .deb's data.tar holds and how much of it is in the image (a path counts
when the rootfs has a regular file of the same size there, after the merged-usr mapping
/bin /sbin /lib /lib64 /libx32 -> /usr/...), plus what the image has that no package
ships (generated files, added [[file]]s). Exit 1 if ROOTFS/WHOLE > --max-ratio.
"""
import argparse
import os
import subprocess
import sys
import tarfile

MERGED = ("bin", "sbin", "lib", "lib64", "libx32")


def du_sb(root, skip=frozenset()):
    """Apparent size like `du -sb`: every inode once (files, dirs, symlinks); paths in
    `skip` ("/etc/apt", ...) are not counted themselves (their children still are)."""
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            p = os.path.join(dirpath, name) if name else dirpath
            if name in dirnames and not os.path.islink(p):
                continue  # directories are counted when walked into
            rel = "/" + os.path.relpath(p, root) if p != root else "/"
            if rel in skip:
                continue
            st = os.lstat(p)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def merged(path):
    path = "/" + path.lstrip("./")
    first = path.split("/")[1]
    return "/usr" + path if first in MERGED else path


def deb_files(deb, names=None):
    """(package, {merged path: size}) for the regular files of a .deb's data.tar; every
    member name (unmapped, "/etc/x") is added to the set `names` if given."""
    pkg = subprocess.run(["dpkg-deb", "-f", deb, "Package"], check=True,
                         capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    files = {}
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
        for m in tf:
            if names is not None:
                names.add("/" + m.name.lstrip("./").rstrip("/"))
            if m.isreg():
                files[merged(m.name)] = m.size
    if proc.wait() != 0:
        sys.exit(f"dpkg-deb --fsys-tarfile {deb} failed")
    return pkg, files


def image_files(root):
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if os.path.isfile(p) and not os.path.islink(p):
                out["/" + os.path.relpath(p, root)] = st.st_size
    return out


def human(n):
    return f"{n / 1e6:.2f} MB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rootfs")
    ap.add_argument("whole")
    ap.add_argument("debs", nargs="+")
    ap.add_argument("--max-ratio", type=float, default=0.5)
    ap.add_argument("--skeleton", help="file: paths (`find .` output) the extractor made "
                    "before extracting; not counted in WHOLE unless a .deb ships them")
    a = ap.parse_args()

    img = image_files(a.rootfs)
    shipped = set()
    per_pkg = [deb_files(deb, shipped) for deb in sorted(a.debs)]
    skip = set()
    if a.skeleton:
        for line in open(a.skeleton, encoding="utf-8"):
            rel = "/" + line.strip().lstrip("./")
            if rel != "/" and rel not in shipped:
                skip.add(rel)
    img_total, whole_total = du_sb(a.rootfs), du_sb(a.whole, skip)
    if skip:
        print(f"  not counted in WHOLE: {len(skip)} entries the extractor made itself "
              f"({du_sb(a.whole) - whole_total} bytes: apt/dpkg state, /dev nodes, ...)")
    ratio = img_total / whole_total
    claimed = set()
    print(f"  {'PACKAGE':<16} {'DEB FILES':>10} {'IN IMAGE':>10}  SHARE   FILES")
    sum_deb = sum_in = 0
    for pkg, files in per_pkg:
        inside = {p: s for p, s in files.items() if img.get(p) == s}
        claimed.update(inside)
        d, i = sum(files.values()), sum(inside.values())
        sum_deb += d
        sum_in += i
        share = f"{100 * i / d:5.1f}%" if d else "    -"
        print(f"  {pkg:<16} {d:>10} {i:>10} {share}  {len(inside)}/{len(files)}")
    extra = {p: s for p, s in img.items() if p not in claimed}
    extra_bytes = sum(extra.values())
    print(f"  {'(all packages)':<16} {sum_deb:>10} {sum_in:>10} {100 * sum_in / sum_deb:5.1f}%")
    print(f"  not from a package: {len(extra)} files, {extra_bytes} bytes — largest:")
    for p, s in sorted(extra.items(), key=lambda kv: -kv[1])[:6]:
        print(f"    {s:>10}  {p}")
    print(f"  image rootfs (du -sb)            {img_total:>10}  {human(img_total)}")
    print(f"  whole-package extraction (du -sb) {whole_total:>9}  {human(whole_total)}")
    print(f"  ratio rootfs / whole = {ratio:.3f} (required <= {a.max_ratio})")
    if ratio > a.max_ratio:
        print(f"SIZE CHECK FAILED: the image rootfs is {100 * ratio:.1f}% of whole-package "
              f"extraction, more than {100 * a.max_ratio:.0f}%", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
