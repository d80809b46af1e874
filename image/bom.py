#!/usr/bin/env python3
"""Bill of materials of a built image: every Debian package (name, version, architecture, source), every
Python wheel in /opt/recterm (name, version, SHA-256 of the wheel file) and the SHA-256 of the images."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def debian_packages(rootfs: Path) -> list[dict[str, str]]:
    packages = []
    for stanza in (rootfs / "var/lib/dpkg/status").read_text().split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed"):
            packages.append(
                {
                    "name": fields["Package"],
                    "version": fields["Version"],
                    "architecture": fields.get("Architecture", ""),
                    "source": fields.get("Source", fields["Package"]).split()[0],
                }
            )
    return sorted(packages, key=lambda p: p["name"])


def python_packages(wheels: Path) -> list[dict[str, str]]:
    found = []
    for wheel in sorted(wheels.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        found.append({"name": name, "version": version, "wheel": wheel.name, "sha256": sha256(wheel)})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rootfs", type=Path, required=True)
    parser.add_argument("--wheels", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--image", type=Path, action="append", default=[])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--text", type=Path, required=True)
    args = parser.parse_args()
    bom = {
        "version": args.version,
        "source_date_epoch": int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
        "images": {image.name: sha256(image) for image in args.image},
        "debian": debian_packages(args.rootfs),
        "python": python_packages(args.wheels),
    }
    args.json.write_text(json.dumps(bom, indent=1) + "\n")
    lines = [f"records terminal image {bom['version']}", ""]
    lines += [f"{name}  sha256 {digest}" for name, digest in bom["images"].items()]
    lines += ["", f"Debian packages ({len(bom['debian'])}):"]
    lines += [f"  {p['name']} {p['version']} {p['architecture']}" for p in bom["debian"]]
    lines += ["", f"Python packages ({len(bom['python'])}):"]
    lines += [f"  {p['name']}=={p['version']}  sha256 {p['sha256']}" for p in bom["python"]]
    args.text.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
