"""The line protocol of a camera's USB serial (CDC-ACM) control port. Specified in docs/camera-serial.md.

Request:  ``<seq> <COMMAND> <password>[ <json>]\\n``
Response: ``<seq> OK[ <json>]\\n`` or ``<seq> ERR <CODE> <message>\\n``
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

COMMANDS = (
    "INIT",
    "IDENT",
    "INFO_GET",
    "INFO_SET",
    "CLOCK_GET",
    "CLOCK_SET",
    "MSC",
    "RES",
    "BATT",
    "STORAGE",
    "FREE",
)
ERROR_CODES = ("AUTH", "UNKNOWN", "BAD_ARG", "BUSY", "FAILED")
MAX_LINE = 64 * 1024
PASSWORD = re.compile(r"^[0-9A-Za-z]{6}$")
SEQ = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() also takes "²", which int() refuses
CLOCK_FORMAT = "%Y%m%d%H%M%S"


class ProtocolError(ValueError):
    """A line that does not follow the protocol."""


@dataclass(frozen=True)
class Request:
    seq: int
    command: str
    password: str
    arg: Any = None

    def encode(self) -> bytes:
        line = f"{self.seq} {self.command} {self.password}"
        if self.arg is not None:
            line += " " + json.dumps(self.arg, ensure_ascii=False, separators=(",", ":"))
        return (line + "\n").encode()


@dataclass(frozen=True)
class Response:
    seq: int
    ok: bool
    value: Any = None
    code: str = ""
    message: str = ""

    def encode(self) -> bytes:
        if self.ok:
            tail = "" if self.value is None else " " + json.dumps(self.value, ensure_ascii=False)
            return f"{self.seq} OK{tail}\n".encode()
        message = " ".join(self.message.splitlines())  # a newline in it would end the line early
        return f"{self.seq} ERR {self.code} {message}\n".encode()


def _decode(line: bytes) -> str:
    if len(line) > MAX_LINE:
        raise ProtocolError("line too long")
    try:
        return line.decode().rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise ProtocolError("line is not UTF-8") from exc


def parse_request(line: bytes) -> Request:
    parts = _decode(line).split(" ", 3)
    if len(parts) < 3 or not SEQ.fullmatch(parts[0]):
        raise ProtocolError("expected '<seq> <COMMAND> <password>'")
    seq, command, password = int(parts[0]), parts[1], parts[2]
    arg = None
    if len(parts) == 4:
        try:
            arg = json.loads(parts[3])
        except json.JSONDecodeError as exc:
            raise ProtocolError("argument is not JSON") from exc
    return Request(seq, command, password, arg)


def parse_response(line: bytes) -> Response:
    text = _decode(line)
    parts = text.split(" ", 2)
    if len(parts) < 2 or not SEQ.fullmatch(parts[0]):
        raise ProtocolError(f"malformed response {text[:80]!r}")
    seq = int(parts[0])
    if parts[1] == "OK":
        try:
            value = json.loads(parts[2]) if len(parts) == 3 else None
        except json.JSONDecodeError as exc:
            raise ProtocolError("response value is not JSON") from exc
        return Response(seq, True, value)
    if parts[1] == "ERR" and len(parts) == 3:
        code, _, message = parts[2].partition(" ")
        return Response(seq, False, code=code, message=message)
    raise ProtocolError(f"malformed response {text[:80]!r}")
