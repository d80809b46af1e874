"""The dock controller board's line protocol: framing, checksum, messages. Specified in docs/dock-board.md.

Every line is ``$<body>*<XX>\\n``: printable ASCII, ``XX`` the XOR of the body's bytes in hex.

Station:  ``<seq> <COMMAND>[ <arg>...]``
Board:    ``<seq> OK[ <field>...]``, ``<seq> ERR <CODE>[ <text>]``, or an unsolicited ``EVT <KIND> <arg>...``
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

PROTOCOL_VERSION = 1
MAX_LINE = 512  # bytes from "$" to "\n" inclusive: a 16-channel STATUS answer is about 380
MAX_CHANNELS = 16
MAX_SEQ = 65535
MAX_MA = 9999  # no USB port on a dock draws 10 A: a bigger number is noise that passed the checksum
CYCLE_MS = (100, 60000)  # shortest cut that resets a camera; longest a station may keep a bay dark
COMMANDS = ("HELLO", "STATUS", "POWER", "CYCLE")
ERROR_CODES = ("UNKNOWN", "BAD_ARG", "CHANNEL", "BUSY", "FAILED")

_START, _END = ord("$"), ord("\n")
_NUMBER = re.compile(r"0|[1-9][0-9]{0,4}")  # plain decimal, no sign, no leading zeros
_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")  # board id, firmware version
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,15}")  # error and fault codes
_CHECKSUM = re.compile(r"[0-9A-Fa-f]{2}")


class ProtocolError(ValueError):
    """A line that does not follow the protocol: garbage on the wire."""


class ChargeState(enum.StrEnum):
    IDLE = "idle"  # nothing docked, bay unpowered, or the charger is not running
    CHARGING = "charging"
    FULL = "full"  # charge terminated: the camera is full
    FAULT = "fault"  # the charger stopped on a fault (see EVT FAULT)
    UNKNOWN = "unknown"  # no board to ask; never on the wire

    @property
    def wire(self) -> str:
        if self is ChargeState.UNKNOWN:
            raise ValueError("UNKNOWN is not a wire state")
        return self.name

    @classmethod
    def from_wire(cls, token: str) -> ChargeState:
        if token not in ("IDLE", "CHARGING", "FULL", "FAULT"):
            raise ProtocolError(f"unknown charge state {token[:16]!r}")
        return cls[token]


@dataclass(frozen=True)
class BoardInfo:
    """What HELLO (and EVT BOOT) report."""

    board_id: str
    firmware: str
    channels: int
    protocol: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class ChannelStatus:
    """One bay as the board sees it. ``None`` means unknown (no board); see DisabledDockBoard."""

    channel: int
    present: bool | None
    charge_state: ChargeState
    current_ma: int | None
    usb_power: bool | None

    def to_wire(self) -> str:
        if self.present is None or self.current_ma is None or self.usb_power is None:
            raise ValueError("an unknown channel status cannot be sent")
        present, power = int(self.present), int(self.usb_power)
        return f"{self.channel}:{present}:{self.charge_state.wire}:{self.current_ma}:{power}"

    @classmethod
    def from_wire(cls, token: str) -> ChannelStatus:
        parts = token.split(":")
        if len(parts) != 5:
            raise ProtocolError(f"channel status {token[:40]!r} is not ch:present:state:mA:power")
        channel, present, state, current, power = parts
        return cls(
            channel=parse_channel(channel),
            present=_parse_flag(present),
            charge_state=ChargeState.from_wire(state),
            current_ma=parse_number(current, 0, MAX_MA, "current"),
            usb_power=_parse_flag(power),
        )


# -- events: unsolicited board lines


@dataclass(frozen=True)
class PresenceEvent:
    channel: int
    present: bool


@dataclass(frozen=True)
class ChargeEvent:
    channel: int
    state: ChargeState
    current_ma: int


@dataclass(frozen=True)
class FaultEvent:
    channel: int
    code: str


@dataclass(frozen=True)
class PowerEvent:
    channel: int
    on: bool


@dataclass(frozen=True)
class BootEvent:
    """The board (re)started: every channel is back at its power-on default."""

    info: BoardInfo


DockEvent = PresenceEvent | ChargeEvent | FaultEvent | PowerEvent | BootEvent


# -- framing


def checksum(body: bytes) -> int:
    """NMEA-style: XOR of every byte between "$" and "*"."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def frame(body: str) -> bytes:
    """One line on the wire. Refuses anything that would not survive the trip (non-ASCII, framing bytes)."""
    data = body.encode("ascii")
    if not _printable(data) or b"$" in data or b"*" in data:
        raise ValueError(f"not a sendable line body: {body[:40]!r}")
    line = b"$" + data + b"*%02X\n" % checksum(data)
    if len(line) > MAX_LINE:
        raise ValueError(f"line of {len(line)} bytes exceeds {MAX_LINE}")
    return line


def _printable(data: bytes) -> bool:
    return all(0x20 <= b <= 0x7E for b in data)


def unframe(line: bytes) -> str:
    """The body of one ``$...*XX`` line (the "$" and the line end already stripped), checksum verified."""
    if line.endswith(b"\r"):
        line = line[:-1]  # a terminal or a CR/LF firmware: harmless
    body, star, tail = line.rpartition(b"*")
    if not star:
        raise ProtocolError("no checksum")
    if not _printable(body) or not _printable(tail) or b"*" in body:
        raise ProtocolError("non-printable bytes in line")
    if not _CHECKSUM.fullmatch(tail.decode()):
        raise ProtocolError(f"malformed checksum {tail[:8]!r}")
    if int(tail, 16) != checksum(body):
        raise ProtocolError(f"bad checksum {tail.decode()} (computed {checksum(body):02X})")
    if not body:
        raise ProtocolError("empty line")
    return body.decode("ascii")


class LineReader:
    """Cuts a byte stream into checked line bodies, whatever the line noise.

    "$" always starts a new line, so a good line right after noise (even noise without a line end) is still
    read. Each run of noise, cut-short line, over-long line or line failing its checksum is reported once,
    as a ProtocolError, for the caller to count. Bare line ends between lines are ignored.
    """

    _CLEAN, _JUNK, _SKIP = range(3)  # between lines: nothing seen / noise seen / dropping an over-long line

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._room = max_line - 2  # "$" and "\n" count towards the limit
        self._line: bytearray | None = None  # None: between lines, hunting for "$"
        self._between = self._CLEAN

    def feed(self, data: bytes) -> list[str | ProtocolError]:
        # Byte by byte is plenty for a 115200-baud line (about 11 KB/s) and keeps every case visible.
        out: list[str | ProtocolError] = []
        for byte in data:
            if byte == _START:
                if self._line is not None:
                    out.append(ProtocolError("line cut short by a new line start"))
                elif self._between == self._JUNK:
                    out.append(ProtocolError("noise before a line start"))
                self._line, self._between = bytearray(), self._CLEAN
            elif byte == _END:
                if self._line is not None:
                    try:
                        out.append(unframe(bytes(self._line)))
                    except ProtocolError as exc:
                        out.append(exc)
                    self._line = None
                elif self._between == self._JUNK:
                    out.append(ProtocolError("noise between lines"))
                self._between = self._CLEAN
            elif self._line is not None:
                if len(self._line) >= self._room:
                    # Count it now, not when (if ever) its line end comes: a stream with no line end must
                    # not grow without bound nor go unreported.
                    out.append(ProtocolError(f"line longer than {self._room + 2} bytes"))
                    self._line, self._between = None, self._SKIP
                else:
                    self._line.append(byte)
            elif self._between == self._CLEAN and byte != 0x0D:
                self._between = self._JUNK
        return out


# -- fields


def parse_number(token: str, low: int, high: int, what: str) -> int:
    if not _NUMBER.fullmatch(token):
        raise ProtocolError(f"{what} {token[:16]!r} is not a number")
    value = int(token)
    if not low <= value <= high:
        raise ProtocolError(f"{what} {value} outside {low}..{high}")
    return value


def parse_channel(token: str) -> int:
    return parse_number(token, 1, MAX_CHANNELS, "channel")


def _parse_flag(token: str) -> bool:
    if token not in ("0", "1"):
        raise ProtocolError(f"flag {token[:16]!r} is not 0 or 1")
    return token == "1"


def _parse_switch(token: str) -> bool:
    if token not in ("ON", "OFF"):
        raise ProtocolError(f"{token[:16]!r} is not ON or OFF")
    return token == "ON"


def _parse_name(token: str, what: str) -> str:
    if not _NAME.fullmatch(token):
        raise ProtocolError(f"bad {what} {token[:40]!r}")
    return token


def _parse_code(token: str) -> str:
    if not _CODE.fullmatch(token):
        raise ProtocolError(f"bad code {token[:20]!r}")
    return token


# -- station → board


@dataclass(frozen=True)
class Command:
    seq: int
    word: str
    args: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return frame(" ".join((str(self.seq), self.word, *self.args)))


def parse_command(body: str) -> Command:
    """Board side. Only the shape is checked here; the board validates each command's arguments."""
    parts = body.split(" ")
    if len(parts) < 2:
        raise ProtocolError("expected '<seq> <COMMAND>'")
    seq = parse_number(parts[0], 1, MAX_SEQ, "seq")
    if not _CODE.fullmatch(parts[1]):
        raise ProtocolError(f"bad command word {parts[1][:16]!r}")
    return Command(seq, parts[1], tuple(parts[2:]))


# -- board → station


@dataclass(frozen=True)
class Answer:
    seq: int
    ok: bool
    fields: tuple[str, ...] = ()
    code: str = ""
    message: str = ""

    def encode(self) -> bytes:
        if self.ok:
            return frame(" ".join((str(self.seq), "OK", *self.fields)))
        # Keep a message on the line: printable ASCII only, no framing bytes.
        text = "".join(c if " " <= c <= "~" and c not in "$*" else "?" for c in self.message)[:200]
        return frame(f"{self.seq} ERR {self.code}" + (f" {text}" if text else ""))


def encode_event(event: DockEvent) -> bytes:
    match event:
        case PresenceEvent(channel, present):
            body = f"EVT PRESENT {channel} {int(present)}"
        case ChargeEvent(channel, state, current_ma):
            body = f"EVT CHARGE {channel} {state.wire} {current_ma}"
        case FaultEvent(channel, code):
            body = f"EVT FAULT {channel} {code}"
        case PowerEvent(channel, on):
            body = f"EVT POWER {channel} {'ON' if on else 'OFF'}"
        case BootEvent(info):
            body = f"EVT BOOT {info.protocol} {info.board_id} {info.firmware} {info.channels}"
    return frame(body)


def parse_board_line(body: str) -> Answer | DockEvent:
    """Station side: an answer to a command, or an event. Anything else is a ProtocolError."""
    parts = body.split(" ")
    if parts[0] == "EVT":
        return _parse_event(parts[1:])
    if len(parts) < 2:
        raise ProtocolError(f"malformed line {body[:40]!r}")
    seq = parse_number(parts[0], 1, MAX_SEQ, "seq")
    if parts[1] == "OK":
        return Answer(seq, True, tuple(parts[2:]))
    if parts[1] == "ERR" and len(parts) >= 3:
        return Answer(seq, False, code=_parse_code(parts[2]), message=" ".join(parts[3:]))
    raise ProtocolError(f"malformed answer {body[:40]!r}")


def _parse_event(parts: list[str]) -> DockEvent:
    match parts:
        case ["PRESENT", channel, flag]:
            return PresenceEvent(parse_channel(channel), _parse_flag(flag))
        case ["CHARGE", channel, state, current]:
            return ChargeEvent(
                parse_channel(channel), ChargeState.from_wire(state), parse_number(current, 0, MAX_MA, "current")
            )
        case ["FAULT", channel, code]:
            return FaultEvent(parse_channel(channel), _parse_code(code))
        case ["POWER", channel, switch]:
            return PowerEvent(parse_channel(channel), _parse_switch(switch))
        case ["BOOT", *fields]:
            return BootEvent(parse_hello(tuple(fields)))
    raise ProtocolError(f"unknown event {' '.join(parts)[:40]!r}")


# -- command payloads


def hello_fields(info: BoardInfo) -> tuple[str, ...]:
    return (str(info.protocol), info.board_id, info.firmware, str(info.channels))


def parse_hello(fields: tuple[str, ...]) -> BoardInfo:
    if len(fields) != 4:
        raise ProtocolError("HELLO answer is '<protocol> <board-id> <firmware> <channels>'")
    return BoardInfo(
        protocol=parse_number(fields[0], 1, 999, "protocol version"),
        board_id=_parse_name(fields[1], "board id"),
        firmware=_parse_name(fields[2], "firmware version"),
        channels=parse_channel(fields[3]),
    )


def status_fields(channels: list[ChannelStatus]) -> tuple[str, ...]:
    return tuple(c.to_wire() for c in channels)


def parse_status(fields: tuple[str, ...]) -> list[ChannelStatus]:
    """Every channel, 1..n in order: a gap or a repeat means the line is not what the board sent."""
    channels = [ChannelStatus.from_wire(token) for token in fields]
    if not channels or [c.channel for c in channels] != list(range(1, len(channels) + 1)):
        raise ProtocolError("STATUS answer must list channels 1..n in order")
    return channels


def parse_switch(token: str) -> bool:
    return _parse_switch(token)
