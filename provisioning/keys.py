"""The station's signing key: made on the device at provisioning, never shipped in an image."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.state.atomic import atomic_write_bytes

SIGNING_KEY = "station-signing.pem"
SIGNING_PUB = "station-signing.pub.pem"


def create_signing_key(keys_dir: Path) -> Ed25519PublicKey:
    """Generate the Ed25519 signing key (mode 0600) unless one exists; return its public key."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    private_path = keys_dir / SIGNING_KEY
    if private_path.exists():
        return load_signing_key(keys_dir).public_key()
    key = Ed25519PrivateKey.generate()
    atomic_write_bytes(
        private_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        mode=0o600,
    )
    public = key.public_key()
    atomic_write_bytes(
        keys_dir / SIGNING_PUB,
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        mode=0o644,
    )
    return public


def load_signing_key(keys_dir: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key((keys_dir / SIGNING_KEY).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{keys_dir / SIGNING_KEY} is not an Ed25519 key")
    return key


def fingerprint(public: Ed25519PublicKey) -> str:
    """SHA-256 over the raw public key, as the central side records it."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()
