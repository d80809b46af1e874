"""The station's signing key: made on the device at provisioning, never shipped in an image; rotated on
request (the retired public keys stay in ``signing-history.json``, the private ones are destroyed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.evidence import keychain
from appliance.state.atomic import atomic_write_bytes, fsync_dir

SIGNING_KEY = "station-signing.pem"
SIGNING_PUB = keychain.CURRENT_PUB
NEXT_KEY = "station-signing.next.pem"  # exists only while a rotation is under way


def create_signing_key(keys_dir: Path) -> Ed25519PublicKey:
    """Generate the Ed25519 signing key (mode 0600) unless one exists; return its public key."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    private_path = keys_dir / SIGNING_KEY
    if private_path.exists():
        return load_signing_key(keys_dir).public_key()
    key = Ed25519PrivateKey.generate()
    atomic_write_bytes(private_path, _private_pem(key), mode=0o600)
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
    return keychain.fingerprint(public)


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def rotate_signing_key(keys_dir: Path, context: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the signing key with a new one; return the link (keychain.sign_link) signed by both keys.

    ``context`` binds the link to the log: station, origin, log_size, log_root. Order, so that a power cut
    at any point leaves either the old key in use or the new one with its history (recover_signing_key):
    the new key to ``station-signing.next.pem``, then the history with the old public key and the link,
    then the rename over ``station-signing.pem``, which destroys the old private key."""
    old = load_signing_key(keys_dir)
    new = Ed25519PrivateKey.generate()
    link = keychain.sign_link(context, old, new)
    atomic_write_bytes(keys_dir / NEXT_KEY, _private_pem(new), mode=0o600)
    retired = keychain.read_history(keys_dir)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    retired.append(keychain.RetiredKey(old.public_key(), stamp, link))
    atomic_write_bytes(keys_dir / keychain.HISTORY_FILE, keychain.history_document(retired), mode=0o644)
    _install_next(keys_dir, new.public_key())
    return link


def _install_next(keys_dir: Path, public: Ed25519PublicKey) -> None:
    os.replace(keys_dir / NEXT_KEY, keys_dir / SIGNING_KEY)
    fsync_dir(keys_dir)
    atomic_write_bytes(keys_dir / SIGNING_PUB, keychain.public_pem(public).encode(), mode=0o644)


def recover_signing_key(keys_dir: Path) -> None:
    """Finish or undo a rotation a power cut interrupted, before the key is loaded.

    A new key whose link is already in the history is installed; one the history does not know yet is
    dropped (the rotation had not happened: the old key stays)."""
    pending = keys_dir / NEXT_KEY
    retired = keychain.read_history(keys_dir)
    if pending.exists():
        key = serialization.load_pem_private_key(pending.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{pending} is not an Ed25519 key")
        if retired and retired[-1].link.get("new") == fingerprint(key.public_key()):
            _install_next(keys_dir, key.public_key())
        else:
            pending.unlink()
            fsync_dir(keys_dir)
    if retired and fingerprint(load_signing_key(keys_dir).public_key()) != retired[-1].link.get("new"):
        raise keychain.KeyHistoryError(
            f"{keys_dir / keychain.HISTORY_FILE}: the last rotation names {retired[-1].link.get('new')}, "
            f"but {SIGNING_KEY} is another key"
        )
