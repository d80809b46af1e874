"""Attachments to maintenance entries (a photo of a repair slip, a vendor's report), stored by content.

A file is stored once under its SHA-256 (``<dir>/<2 hex>/<64 hex>``); the maintenance entry holds only the
hash, so the signed event log covers the file's content too. Only photos (JPEG, PNG) and PDFs are taken,
recognised by their first bytes, not by what the client claims.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from appliance.state.atomic import atomic_write_bytes

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"%PDF-", "application/pdf"))


class AttachmentError(ValueError):
    """An attachment that cannot be stored or found; the message says why."""


def media_type(data: bytes) -> str | None:
    return next((kind for magic, kind in MAGIC if data.startswith(magic)), None)


class AttachmentStore:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    def _path(self, digest: str) -> Path:
        if not SHA256_HEX.fullmatch(digest):
            raise AttachmentError("an attachment is named by its SHA-256: 64 lower-case hex digits")
        return self.directory / digest[:2] / digest

    def put(self, data: bytes) -> dict[str, str | int]:
        """Store ``data`` (blocking: a worker thread); returns its hash, type and size. Storing the same
        content twice keeps one copy."""
        if not data:
            raise AttachmentError("the attachment is empty")
        if len(data) > self.max_bytes:
            raise AttachmentError(f"the attachment is larger than {self.max_bytes // 2**20} MiB")
        kind = media_type(data)
        if kind is None:
            raise AttachmentError("only JPEG or PNG photos and PDF files can be attached")
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data, mode=0o444)
        return {"sha256": digest, "media_type": kind, "size": len(data)}

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def get(self, digest: str) -> tuple[bytes, str]:
        """The stored bytes and their type, checked against the hash (a damaged file is an error)."""
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise AttachmentError(f"no attachment {digest}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise AttachmentError(f"attachment {digest} is damaged on disk")
        return data, media_type(data) or "application/octet-stream"
