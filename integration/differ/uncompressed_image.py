#!/usr/bin/env python3
"""Copies an OCI image layout with every gzip/zstd layer replaced by its uncompressed tar
(media type application/vnd.oci.image.layer.v1.tar). The config, and so the diffIDs and the
unpacked tree, stay the same; only the manifest and the layer blobs change.

    uncompressed_image.py SRC_LAYOUT DST_LAYOUT [TAG]     (TAG default v1; cached: DST is
                                        kept while DST/.source names SRC's manifest digest)
"""

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    tag = sys.argv[3] if len(sys.argv) == 4 else "v1"
    idx = json.load(open(os.path.join(src, "index.json")))
    top = next(m for m in idx["manifests"]
               if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    marker = os.path.join(dst, ".source")
    if os.path.exists(os.path.join(dst, "index.json")) and os.path.exists(marker) and \
            open(marker).read().strip() == top["digest"]:
        return
    tmp = dst + ".building"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "blobs", "sha256"))
    shutil.copy(os.path.join(src, "oci-layout"), tmp)

    def path(root, d):
        return os.path.join(root, "blobs", "sha256", d.split(":", 1)[1])

    def put(b, media):
        d = "sha256:" + hashlib.sha256(b).hexdigest()
        with open(path(tmp, d), "wb") as f:
            f.write(b)
        return {"mediaType": media, "digest": d, "size": len(b)}

    man = json.load(open(path(src, top["digest"])))
    shutil.copy(path(src, man["config"]["digest"]), path(tmp, man["config"]["digest"]))
    layers = []
    for l in man["layers"]:
        raw = open(path(src, l["digest"]), "rb").read()
        mt = l["mediaType"]
        if mt.endswith("+gzip") or mt.endswith(".gzip"):
            raw = gzip.decompress(raw)
        elif mt.endswith("+zstd"):
            raw = subprocess.run(["zstd", "-q", "-d", "-c"], input=raw, check=True,
                                 stdout=subprocess.PIPE).stdout
        layers.append(put(raw, "application/vnd.oci.image.layer.v1.tar"))
    man["layers"] = layers
    man["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    m = put(json.dumps(man, separators=(",", ":")).encode(), man["mediaType"])
    m["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(tmp, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [m]}, f)
    with open(os.path.join(tmp, ".source"), "w") as f:
        f.write(top["digest"] + "\n")
    shutil.rmtree(dst, ignore_errors=True)
    os.rename(tmp, dst)


if __name__ == "__main__":
    main()
