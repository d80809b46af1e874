"""Signed update bundles: one Ed25519-signed manifest in front of the payloads it describes.

Layout (docs/os-update.md)::

    b"RTBUNDLE1\\n"                 magic, 10 bytes
    manifest length                 4 bytes, big-endian
    manifest                        canonical JSON (sorted keys, no spaces), UTF-8
    signature                       64 bytes: Ed25519 over magic + length + manifest
    payloads                        in manifest order, each exactly its "size" bytes

The manifest names the signing key (``key_id``: SHA-256 of the raw public key), the compatible string and,
for every payload, its size and SHA-256. So the signature covers every byte of the bundle: a changed
payload no longer matches its hash, a changed manifest no longer matches the signature.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAGIC = b"RTBUNDLE1\n"
FORMAT = 1
MAX_MANIFEST = 64 * 1024
SIGNATURE_SIZE = 64
CHUNK = 1 << 20
COMPATIBLE = "recterm-rpi-arm64"
PAYLOAD_NAMES = ("rootfs", "boot")  # raw root filesystem image; tar of the slot's boot files


class BundleError(Exception):
    """The bundle cannot be trusted or used; nothing was written."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def load_trusted_keys(keys_dir: Path) -> dict[str, Ed25519PublicKey]:
    """Every ``*.pub.pem`` in ``keys_dir`` (the image's trust anchors), by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in sorted(Path(keys_dir).glob("*.pub.pem")):
        public = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(public, Ed25519PublicKey):
            raise BundleError(f"{path}: not an Ed25519 public key")
        keys[key_id(public)] = public
    return keys


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def write_bundle(
    out: Path,
    payloads: Mapping[str, Path],
    key: Ed25519PrivateKey,
    version: str,
    compatible: str = COMPATIBLE,
) -> dict[str, object]:
    """Make a bundle at ``out`` (written next to it, then renamed); returns its manifest."""
    unknown = set(payloads) - set(PAYLOAD_NAMES)
    if unknown or "rootfs" not in payloads:
        raise BundleError(f"payloads must include rootfs and may include boot; got {sorted(payloads)}")
    entries = []
    for name in PAYLOAD_NAMES:
        if name in payloads:
            size, sha256 = _hash_file(payloads[name])
            entries.append({"name": name, "size": size, "sha256": sha256})
    manifest: dict[str, object] = {
        "format": FORMAT,
        "compatible": compatible,
        "version": version,
        "key_id": key_id(key.public_key()),
        "payloads": entries,
    }
    body = _canonical(manifest)
    head = MAGIC + struct.pack(">I", len(body)) + body
    staging = out.with_name(out.name + ".partial")
    with open(staging, "wb") as fh:
        fh.write(head + key.sign(head))
        for name in PAYLOAD_NAMES:
            if name in payloads:
                with open(payloads[name], "rb") as src:
                    while chunk := src.read(CHUNK):
                        fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    staging.replace(out)
    return manifest


@dataclass(frozen=True)
class Payload:
    name: str
    offset: int
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    version: str
    compatible: str
    key_id: str
    payloads: tuple[Payload, ...]

    def payload(self, name: str) -> Payload | None:
        return next((p for p in self.payloads if p.name == name), None)


def _read_exact(fh: BinaryIO, size: int, what: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise BundleError(f"bundle truncated in the {what}")
    return data


def read_manifest(path: Path, trusted: Mapping[str, Ed25519PublicKey], compatible: str = COMPATIBLE) -> Manifest:
    """Check magic, signature (by a trusted key) and compatibility; return the manifest. Payload hashes
    are checked by ``verify_payloads``."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; errors become BundleError
    except OSError as exc:
        raise BundleError(f"{path}: {exc.strerror}") from None
    with fh:
        if _read_exact(fh, len(MAGIC), "header") != MAGIC:
            raise BundleError(f"{path} is not an update bundle (bad magic)")
        raw_len = _read_exact(fh, 4, "header")
        (length,) = struct.unpack(">I", raw_len)
        if not 0 < length <= MAX_MANIFEST:
            raise BundleError(f"manifest length {length} out of range")
        body = _read_exact(fh, length, "manifest")
        signature = _read_exact(fh, SIGNATURE_SIZE, "signature")
        data_start = fh.tell()
        total = os.fstat(fh.fileno()).st_size
    try:
        manifest = json.loads(body)
        claimed_key = str(manifest["key_id"])
    except (ValueError, KeyError, TypeError):
        raise BundleError("manifest is not valid JSON with a key_id") from None
    public = trusted.get(claimed_key)
    if public is None:
        raise BundleError(f"bundle signed by an unknown key {claimed_key}; trusted: {', '.join(trusted) or 'none'}")
    try:
        public.verify(signature, MAGIC + raw_len + body)
    except InvalidSignature:
        raise BundleError(f"bad signature: the manifest was changed after signing by {claimed_key}") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"bundle format {manifest.get('format')!r} is not {FORMAT}")
    if manifest.get("compatible") != compatible:
        raise BundleError(f"bundle is for {manifest.get('compatible')!r}, this system is {compatible!r}")
    payloads = []
    offset = data_start
    for entry in manifest["payloads"]:
        payloads.append(Payload(entry["name"], offset, int(entry["size"]), entry["sha256"]))
        offset += int(entry["size"])
    if offset != total:
        raise BundleError(f"bundle is {total} bytes, its manifest describes {offset}")
    result = Manifest(str(manifest["version"]), manifest["compatible"], claimed_key, tuple(payloads))
    if result.payload("rootfs") is None:
        raise BundleError("bundle has no rootfs payload")
    return result


def read_range(path: Path, offset: int, size: int, short: str) -> Iterator[bytes]:
    """``size`` bytes of ``path`` from ``offset``, in chunks; BundleError(``short``) if the file ends first."""
    left = size
    with open(path, "rb") as fh:
        fh.seek(offset)
        while left:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                raise BundleError(short)
            left -= len(chunk)
            yield chunk


def iter_payload(path: Path, payload: Payload) -> Iterator[bytes]:
    """The payload's bytes in chunks, hashed as they go; BundleError at the end if the hash differs."""
    digest = hashlib.sha256()
    for chunk in read_range(path, payload.offset, payload.size, f"bundle truncated in payload {payload.name}"):
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != payload.sha256:
        raise BundleError(f"payload {payload.name} does not match its signed hash (bundle damaged or tampered)")


def verify_payloads(path: Path, manifest: Manifest) -> None:
    for payload in manifest.payloads:
        for _ in iter_payload(path, payload):
            pass
