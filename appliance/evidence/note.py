"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then one or more lines
``— <key name> <base64(4-byte key id ‖ signature)>``. The text is only trusted once a signature from a
known key verifies. Verifier keys travel as ``<name>+<hex key id>+<base64(0x01 ‖ public key)>``, the
encoding of golang.org/x/mod/sumdb/note, so keys and notes interoperate with the Go tooling.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01  # signature type byte assigned by the spec
SIG_PREFIX = "— "  # em dash U+2014, space
MAX_SIGNATURES = 100  # the spec requires accepting at least 16; bound the work an attacker can cause
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """A note, signature line or verifier key is malformed, or no known signature verifies."""


class UnknownSigner(NoteError):
    """Well-formed, but signed by none of the given keys (another key may still verify it)."""


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """First 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + _raw(public_key)).digest()[:4]


def _check_name(name: str) -> None:
    # Names are delimited by spaces in signature lines and by "+" in verifier keys.
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"invalid key name {name!r}: must be non-empty, without spaces or '+'")


def _check_chars(text: str) -> None:
    """Valid UTF-8 (no lone surrogates) and no ASCII control characters but newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise NoteError("note is not valid UTF-8") from e
    if any(c < " " and c != "\n" for c in text):
        raise NoteError("note contains a control character")


def _b64decode(s: str) -> bytes:
    """Strict standard base64: canonical padding and trailing bits, so one value has one spelling."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise NoteError(f"bad base64 {s[:16]!r}") from e
    if base64.b64encode(raw).decode() != s:
        raise NoteError(f"non-canonical base64 {s[:16]!r}")
    return raw


def _check_text(text: str) -> None:
    _check_chars(text)
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note: ``text``, a blank line and one Ed25519 signature line by ``name``."""
    _check_text(text)
    _check_name(name)
    sig = private_key.sign(text.encode())
    encoded = base64.b64encode(key_id(name, private_key.public_key()) + sig).decode()
    return f"{text}\n{SIG_PREFIX}{name} {encoded}\n"


def _split(note: str) -> tuple[str, list[str]]:
    """Text (with its final newline) and signature lines; the last blank line separates them."""
    _check_chars(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("note has no signature lines, or the last one lacks its newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    return text, lines


def _parse_signature(line: str) -> tuple[str, bytes, bytes]:
    """``— <name> <base64>`` to (name, key id, signature)."""
    if not line.startswith(SIG_PREFIX):
        raise NoteError(f"not a signature line: {line[:40]!r}")
    name, _, encoded = line[len(SIG_PREFIX) :].partition(" ")
    _check_name(name)
    raw = _b64decode(encoded)
    if len(raw) < 5:
        raise NoteError(f"signature by {name} is too short")
    return name, raw[:4], raw[4:]


def open_note(note: str, verifiers: Mapping[str, Ed25519PublicKey]) -> str:
    """The note's text if a signature by a known key verifies; raises NoteError otherwise.

    Signatures whose (name, key id) is not in ``verifiers`` are ignored, as the spec requires. A bad
    signature from a known key rejects the whole note: it means the note was altered.
    """
    text, lines = _split(note)
    message = text.encode()
    verified = False
    for line in lines:
        name, kid, sig = _parse_signature(line)
        key = verifiers.get(name)
        if key is None or key_id(name, key) != kid:
            continue
        try:
            key.verify(sig, message)
        except InvalidSignature:
            raise NoteError(f"invalid signature for key {name}+{kid.hex()}") from None
        verified = True
    if not verified:
        raise UnknownSigner("note has no signature from a known key")
    return text


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """``<name>+<hex key id>+<base64(0x01 ‖ public key)>``."""
    _check_name(name)
    encoded = base64.b64encode(bytes([ALG_ED25519]) + _raw(public_key)).decode()
    return f"{name}+{key_id(name, public_key).hex()}+{encoded}"


def parse_verifier_key(vkey: str) -> tuple[str, Ed25519PublicKey]:
    """Inverse of verifier_key; checks the algorithm byte, key length and key id."""
    # Split at the first two "+" only: names cannot hold one but base64 can.
    name, _, rest = vkey.partition("+")
    kid_hex, _, encoded = rest.partition("+")
    _check_name(name)
    if not _KEY_ID_HEX.fullmatch(kid_hex):
        raise NoteError(f"verifier key id {kid_hex!r} is not 8 hex digits")
    raw = _b64decode(encoded)
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise NoteError("verifier key is not an Ed25519 key (0x01 ‖ 32 bytes)")
    public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(name, public_key) != bytes.fromhex(kid_hex):
        raise NoteError(f"verifier key id {kid_hex} does not match key {name}")
    return name, public_key
