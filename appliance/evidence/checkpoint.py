"""C2SP transparency-log checkpoints (c2sp.org/tlog-checkpoint): a signed note stating a log's tree head.

Body: origin line, decimal tree size, base64 RFC 6962 root, then optional non-empty extension lines.
Parsing is strict, so one tree head has exactly one textual form and therefore one signed message.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .merkle import HASH_SIZE
from .note import open_note, sign_note

_SIZE = re.compile(r"0|[1-9][0-9]*")  # explicit ASCII digits: str.isdigit() accepts other scripts
MAX_SIZE = 2**64 - 1  # tree sizes are uint64 in every other implementation


class CheckpointError(ValueError):
    """Checkpoint text that does not follow c2sp.org/tlog-checkpoint."""


def _check_line(kind: str, line: str) -> None:
    if not line:
        raise CheckpointError(f"empty {kind} line")
    if any(c < " " for c in line):
        raise CheckpointError(f"{kind} line contains a control character")


def _decode_root(line: str) -> bytes:
    try:
        root = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as e:
        raise CheckpointError("root hash is not base64") from e
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != line:
        raise CheckpointError("root hash is not canonical base64 of 32 bytes")
    return root


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: who (origin), how many leaves (size) and their Merkle root."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= MAX_SIZE:
            raise CheckpointError(f"tree size {self.size!r} is not a uint64")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointError("root must be 32 bytes")
        for ext in self.extensions:
            _check_line("extension", ext)

    def to_text(self) -> str:
        """The note text: one field per line, each ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Strictly parse checkpoint note text (as returned by open_note)."""
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("checkpoint needs origin, size and root lines")
        origin, size, root, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise CheckpointError(f"tree size {size[:24]!r} is not a decimal without leading zeros")
        return cls(origin, int(size), _decode_root(root), tuple(extensions))


def sign_checkpoint(cp: Checkpoint, name: str, key: Ed25519PrivateKey) -> str:
    """The checkpoint as a signed note; ``name`` should equal ``cp.origin``."""
    return sign_note(cp.to_text(), name, key)


def verify_checkpoint(note: str, verifiers: Mapping[str, Ed25519PublicKey], origin: str | None = None) -> Checkpoint:
    """The checkpoint in a signed note, after a known key's signature verifies.

    Raises NoteError for signature problems and CheckpointError for a bad body or, when ``origin`` is
    given, a checkpoint from another log.
    """
    cp = Checkpoint.parse(open_note(note, verifiers))
    if origin is not None and cp.origin != origin:
        raise CheckpointError(f"checkpoint is for log {cp.origin!r}, expected {origin!r}")
    return cp
