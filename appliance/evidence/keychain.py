"""The station's signing keys over time: the key history, the rotation link, and which key signs what.

A rotation hands the log from one Ed25519 key to the next. The hand-over is a *link*: canonical JSON
(RFC 8785) naming the old and the new key (fingerprints, and the new public key), the log (origin) and
the tree head at the moment of the hand-over (``log_size``, ``log_root``), signed by the old key and by
the new key. The log entry ``signing_key_rotated`` at index ``log_size`` carries it. Rule for verifiers:

- entries ``[0, r)`` belong to the old key, entries from the rotation entry ``r`` on to the new key;
- a checkpoint of size ``s`` must be signed by the key of entry ``s - 1`` (so the checkpoint of size ``r``
  by the old key, the one that covers the rotation entry by the new key);
- a manifest must be signed by the key of its ingest entry (``ingest.log_index``).

Retired public keys are kept in ``keys/signing-history.json`` (oldest first). Format: docs/event-log.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.evidence import manifest
from appliance.evidence.checkpoint import Checkpoint, verify_checkpoint
from appliance.evidence.note import SIG_PREFIX, UnknownSigner

HISTORY_FILE = "signing-history.json"
CURRENT_PUB = "station-signing.pub.pem"
ROTATION_EVENT = "signing_key_rotated"
LINK_KIND = "recterm.signing-key-link"
LINK_FIELDS = ("kind", "station", "origin", "log_size", "log_root", "old", "new", "new_public")


class KeyHistoryError(ValueError):
    """The key history file is unreadable or inconsistent."""


def fingerprint(public: Ed25519PublicKey) -> str:
    """``SHA256:`` + the manifest key id (SHA-256 of the raw public key, hex)."""
    return "SHA256:" + manifest.key_id(public)


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_pem(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


# -- the link -------------------------------------------------------------------------------------------


def link_statement(link: Mapping[str, Any]) -> bytes:
    """The signed bytes: the link's fields without its signatures, canonical JSON."""
    return rfc8785.dumps({k: link[k] for k in LINK_FIELDS})


def sign_link(context: Mapping[str, Any], old: Ed25519PrivateKey, new: Ed25519PrivateKey) -> dict[str, Any]:
    """A link from ``old`` to ``new``; ``context`` gives station, origin, log_size and log_root."""
    link: dict[str, Any] = {
        "kind": LINK_KIND,
        "station": context["station"],
        "origin": context["origin"],
        "log_size": context["log_size"],
        "log_root": context["log_root"],
        "old": fingerprint(old.public_key()),
        "new": fingerprint(new.public_key()),
        "new_public": public_pem(new.public_key()),
    }
    statement = link_statement(link)
    return link | {
        "old_sig": base64.b64encode(old.sign(statement)).decode(),
        "new_sig": base64.b64encode(new.sign(statement)).decode(),
    }


def link_problems(link: Mapping[str, Any], old: Ed25519PublicKey | None, new: Ed25519PublicKey | None) -> list[str]:
    """What is wrong with a link between the keys ``old`` and ``new`` (None: that key is unknown)."""
    try:
        statement = link_statement(link)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"link is malformed ({exc})"]
    problems = []
    if link.get("kind") != LINK_KIND:
        problems.append("link is not a signing-key link")
    try:
        named_new = load_public_pem(str(link["new_public"]))
    except ValueError:
        return [*problems, "link's new public key is not an Ed25519 PEM"]
    if fingerprint(named_new) != link["new"]:
        problems.append("link's new public key does not have the fingerprint it names")
    for role, key, expected in (("old", old, link["old"]), ("new", new, link["new"])):
        if key is None:
            problems.append(f"the {role} key {expected} is not in the key history")
            continue
        if fingerprint(key) != expected:
            problems.append(f"link names {expected} as the {role} key, the key history has {fingerprint(key)}")
            continue
        try:
            key.verify(base64.b64decode(str(link.get(f"{role}_sig", "")), validate=True), statement)
        except (InvalidSignature, binascii.Error, ValueError):
            problems.append(f"link signature by the {role} key {expected} does not verify")
    return problems


# -- the history file -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetiredKey:
    public: Ed25519PublicKey
    retired_at: str
    link: dict[str, Any]


def read_history(keys_dir: Path) -> list[RetiredKey]:
    """Retired keys, oldest first; [] when the station never rotated (no file)."""
    path = keys_dir / HISTORY_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise KeyHistoryError(f"{path}: not JSON ({exc})") from None
    try:
        if data["v"] != 1:
            raise KeyHistoryError(f"{path}: unknown version {data['v']!r}")
        retired = []
        for number, record in enumerate(data["retired"]):
            public = load_public_pem(record["public_pem"])
            if fingerprint(public) != record["fingerprint"]:
                raise KeyHistoryError(f"{path}: retired key {number} does not have the fingerprint it names")
            retired.append(RetiredKey(public, record["retired_at"], record["link"]))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, KeyHistoryError):
            raise
        raise KeyHistoryError(f"{path}: malformed ({exc!r})") from None
    return retired


def history_document(retired: list[RetiredKey]) -> bytes:
    records = [
        {
            "fingerprint": fingerprint(r.public),
            "public_pem": public_pem(r.public),
            "retired_at": r.retired_at,
            "link": r.link,
        }
        for r in retired
    ]
    return json.dumps({"v": 1, "retired": records}, indent=1).encode()


# -- verifying with the history -----------------------------------------------------------------------------


@dataclass
class KeyChain:
    """The keys a verifier trusts, oldest first; the last is the one in use now."""

    keys: list[Ed25519PublicKey]
    source: str = "--pubkey"

    @classmethod
    def from_keys_dir(cls, keys_dir: Path, current: Ed25519PublicKey | None = None) -> KeyChain:
        """The retired keys of ``keys_dir`` then its current public key (or ``current``, when pinned)."""
        retired = [r.public for r in read_history(keys_dir)]
        if current is None:
            current = load_public_pem((keys_dir / CURRENT_PUB).read_bytes())
        return cls([*retired, current], source=str(keys_dir / HISTORY_FILE))

    def open_checkpoint(self, text: str) -> tuple[Checkpoint, int]:
        """The checkpoint and the position of the key that signed it; NoteError/CheckpointError otherwise."""
        name = next((line.split(" ")[1] for line in text.splitlines() if line.startswith(SIG_PREFIX)), "")
        for position in range(len(self.keys) - 1, -1, -1):
            try:
                return verify_checkpoint(text, {name: self.keys[position]}), position
            except UnknownSigner:
                continue
        raise UnknownSigner(f"note has no signature from a key of {self.source}")

    def label(self, position: int | None) -> str:
        if position is None:
            return "a key missing from the key history"
        return f"key {fingerprint(self.keys[position])[:19]}…"


@dataclass
class Epochs:
    """Which key is in use for which log entries, learnt from the rotation entries while walking the log."""

    chain: KeyChain
    rotations: list[int] = field(default_factory=list)  # index of each signing_key_rotated entry
    links: list[dict[str, Any]] = field(default_factory=list)
    roots: list[bytes] = field(default_factory=list)  # tree root before each rotation entry

    def observe(self, index: int, entry_type: str, body: Mapping[str, Any], root_before: bytes) -> None:
        if entry_type == ROTATION_EVENT:
            self.rotations.append(index)
            self.links.append(dict(body.get("link", {})))
            self.roots.append(root_before)

    def position(self, index: int) -> int | None:
        """Position in the chain of the key in use at log entry ``index`` (None: not in the history).

        Epochs are counted from the newest key back, so a missing history still trusts the current key
        for the entries after the last rotation."""
        epoch = sum(1 for r in self.rotations if r <= index)
        position = len(self.chain.keys) - 1 - (len(self.rotations) - epoch)
        return position if position >= 0 else None

    def key_at(self, index: int) -> Ed25519PublicKey | None:
        position = self.position(index)
        return None if position is None else self.chain.keys[position]

    def problems(self) -> list[tuple[str, str]]:
        """(where, what) for every rotation whose link does not hold, and a history that does not fit."""
        found = []
        retired = len(self.chain.keys) - 1
        if retired != len(self.rotations):
            found.append(
                (
                    self.chain.source,
                    f"the log records {len(self.rotations)} signing key rotations, the key history holds "
                    f"{retired} retired keys",
                )
            )
        for index, link, root in zip(self.rotations, self.links, self.roots, strict=True):
            where = f"log entry {index} ({ROTATION_EVENT})"
            for problem in link_problems(link, self.key_at(index - 1), self.key_at(index)):
                found.append((where, problem))
            if link.get("log_size") != index:
                found.append((where, f"link is for log size {link.get('log_size')}, not {index}"))
            elif link.get("log_root") != base64.b64encode(root).decode():
                found.append((where, "link's log root is not the root of the entries before it"))
        return found

    def checkpoint_problem(self, size: int, signed_by: int) -> str | None:
        expected = self.position(max(size - 1, 0))
        if expected == signed_by:
            return None
        return (
            f"signed by {self.chain.label(signed_by)}, but entry {size - 1} belongs to {self.chain.label(expected)}"
            + (" (a retired key signing after its rotation)" if expected is not None and signed_by < expected else "")
        )

    def manifest_problem(self, body: Mapping[str, Any], index: int) -> str | None:
        """None when the manifest carries a valid signature by the key in use at its ingest entry."""
        key = self.key_at(index)
        if key is not None:
            try:
                manifest.verify(body, {manifest.key_id(key): key})
                return None
            except manifest.ManifestError as exc:
                problem = str(exc)
        else:
            problem = f"no key of the key history was in use at log entry {index}"
        others = {manifest.key_id(k): k for k in self.chain.keys if k is not key}
        for signature in body.get("signatures", []):
            if signature.get("key_id") in others:
                return (
                    f"signed by key {signature['key_id'][:16]}…, which was not the station's key at its ingest "
                    f"entry {index} (a retired key signing after its rotation, or a key before its time)"
                )
        return problem
