#!/usr/bin/env python3
"""The merged view of a manifest and the bases it includes, for the test scripts.

    scripts/manifest_view.py MANIFEST            # prints: name user uid gid package...
    import manifest_view; manifest_view.load(path) -> dict

`[image] include` is followed recursively (paths relative to the including file), each
base merged under the file that includes it as docs/manifest.md ("Base manifests") says:
[image] scalars and env/labels keys of the including file win, packages and users are
merged. Only what the scripts read is merged: [image], [package.*] and [[user]]. compose
itself checks conflicts; this view does not.
"""
import os
import sys
import tomllib


def load(path, seen=None):
    seen = set() if seen is None else seen
    path = os.path.abspath(path)
    if path in seen:
        return {}
    seen.add(path)
    m = tomllib.load(open(path, "rb"))
    merged = {"image": {}, "package": {}, "user": []}
    for inc in m.get("image", {}).get("include", []):
        base = load(os.path.join(os.path.dirname(path), inc), seen)
        merged["image"].update(base.get("image", {}))
        merged["package"].update(base.get("package", {}))
        merged["user"] += [u for u in base.get("user", []) if u not in merged["user"]]
    merged["image"].update({k: v for k, v in m.get("image", {}).items() if k != "include"})
    merged["package"].update(m.get("package", {}))
    merged["user"] += [u for u in m.get("user", []) if u not in merged["user"]]
    return merged


def main():
    m = load(sys.argv[1])
    user = m["image"].get("user", "0:0")
    uid = gid = None
    if ":" in user:
        uid, gid = user.split(":")
    else:
        for u in m["user"]:
            if u["name"] == user:
                uid, gid = u["uid"], u["gid"]
    print(m["image"]["name"], user, uid, gid, " ".join(m["package"]))


if __name__ == "__main__":
    main()
