"""Signed manifests: one per recording, canonical JSON (RFC 8785), never touching the original file.

The signature covers the canonical JSON of the manifest without its ``signatures`` list, so further
signatures (an SM2 one under a 国密 profile, a central countersignature) can be added later without
invalidating the first. Format: docs/manifest.md.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KIND = "recterm.recording"
VERSION = 1


class ManifestError(Exception):
    """A manifest that is malformed or whose signatures do not verify."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: how manifests name the key that signed them."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def signed_bytes(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signatures"}
    return rfc8785.dumps(body)


def sign(manifest: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return the manifest with an Ed25519 signature appended to its signature list."""
    signature = {
        "alg": "ed25519",
        "key_id": key_id(key.public_key()),
        "sig": base64.b64encode(key.sign(signed_bytes(manifest))).decode(),
    }
    return {**manifest, "signatures": [*manifest.get("signatures", []), signature]}


def verify(manifest: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> None:
    """Every Ed25519 signature by a known key must verify, and at least one must be there."""
    if manifest.get("kind") != KIND or manifest.get("v") != VERSION:
        raise ManifestError("not a recording manifest of a known version")
    message = signed_bytes(manifest)
    checked = 0
    for signature in manifest.get("signatures", []):
        if signature.get("alg") != "ed25519" or signature.get("key_id") not in keys:
            continue  # another algorithm (SM2) or another signer: not ours to judge
        try:
            keys[signature["key_id"]].verify(base64.b64decode(signature["sig"], validate=True), message)
        except (InvalidSignature, ValueError) as exc:
            raise ManifestError(f"signature by {signature['key_id'][:12]}… does not verify") from exc
        checked += 1
    if not checked:
        raise ManifestError("no signature by a known station key")


def encode(manifest: Mapping[str, Any]) -> bytes:
    """The stored form: canonical JSON, so the same manifest always has the same bytes."""
    return rfc8785.dumps(dict(manifest))
