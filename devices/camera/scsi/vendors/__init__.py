"""Vendor maps: how one vendor's SCSI command set spells the common camera function set.

A vendor is one module in this package defining ``VENDOR = VendorMap(...)``: its opcode and one sub-command
byte per function; the CDB layout and record formats default to the documented ones (docs/camera-scsi.md)
and are fields too, for a vendor that moves them. Both sides use the codecs here: the driver to build
commands and read answers, the simulator to read commands and build answers, so they cannot drift apart.
"""

from __future__ import annotations

import codecs
import enum
import importlib
import pkgutil
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

from devices.camera.line_protocol import CLOCK_FORMAT, COMMANDS, PASSWORD
from devices.camera.model import ZFY_ENCODING, ZFY_FIELDS, CameraIdentity, OfficerRecord
from devices.camera.scsi.transport import DATA_PROTECT, HARDWARE_ERROR, ILLEGAL_REQUEST, Sense

# The function set carries the line protocol's command names, so both transports share one vocabulary.
FUNCTIONS: tuple[str, ...] = COMMANDS


class Phase(enum.Enum):
    NONE = "none"
    IN = "in"  # camera -> station
    OUT = "out"  # station -> camera


PHASES: dict[str, Phase] = {
    "INIT": Phase.NONE,
    "IDENT": Phase.IN,
    "INFO_GET": Phase.IN,
    "INFO_SET": Phase.OUT,
    "CLOCK_GET": Phase.IN,
    "CLOCK_SET": Phase.OUT,
    "MSC": Phase.NONE,
    "RES": Phase.IN,
    "BATT": Phase.IN,
    "STORAGE": Phase.IN,
    "FREE": Phase.OUT,
}

# Standard sense codes (SPC-4) the camera answers with; only the password refusal is vendor-specific.
SENSE_INVALID_OPCODE = Sense(ILLEGAL_REQUEST, 0x20, 0x00)  # unknown opcode or sub-command
SENSE_INVALID_FIELD_IN_CDB = Sense(ILLEGAL_REQUEST, 0x24, 0x00)
SENSE_INVALID_FIELD_IN_PARAMETERS = Sense(ILLEGAL_REQUEST, 0x26, 0x00)  # data-out record rejected
SENSE_INTERNAL_TARGET_FAILURE = Sense(HARDWARE_ERROR, 0x44, 0x00)
# ASC 0x80-0xFF is reserved for vendors (SPC-4 4.5.2.1).
SENSE_PASSWORD_REJECTED = Sense(DATA_PROTECT, 0x80, 0x01)

CLOCK_LEN = 14
BATTERY_LEN = 1
STORAGE = struct.Struct(">QQ")  # total, free (bytes)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class CdbError(ValueError):
    """A CDB the camera must refuse; ``sense`` is what it answers."""

    def __init__(self, message: str, sense: Sense) -> None:
        super().__init__(message)
        self.sense = sense


@dataclass(frozen=True)
class Cdb:
    """A decoded command. ``function`` is None for a sub-command the vendor does not define."""

    function: str | None
    subcommand: int
    password: str
    length: int


@dataclass(frozen=True, eq=False)
class VendorMap:
    name: str
    opcode: int  # vendor-specific operation code, 0xC0-0xFF
    subcommands: Mapping[str, int]  # function -> sub-command byte (CDB byte 1)
    cdb_len: int = 16
    password_offset: int = 2  # 6 ASCII bytes
    length_offset: int = 10  # transfer length, u32 big-endian
    encoding: str = ZFY_ENCODING
    officer_layout: tuple[tuple[str, int], ...] = tuple(ZFY_FIELDS.items())
    identity_layout: tuple[tuple[str, int], ...] = (("vendor", 16), ("model", 16), ("serial", 16), ("firmware", 16))
    resolution_len: int = 32
    max_transfer: int = 32 * 1024  # per command; FREE lists longer than this go in several commands
    auth_sense: Sense = SENSE_PASSWORD_REJECTED
    _by_byte: dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"vendor name {self.name!r} must be a lower-case identifier")
        if not 0xC0 <= self.opcode <= 0xFF:
            raise ValueError(f"{self.name}: opcode 0x{self.opcode:02x} is outside the vendor-specific 0xC0-0xFF")
        if set(self.subcommands) != set(FUNCTIONS):
            raise ValueError(f"{self.name}: sub-commands must cover exactly {', '.join(FUNCTIONS)}")
        by_byte = {byte: fn for fn, byte in self.subcommands.items()}
        if len(by_byte) != len(self.subcommands) or not all(0 <= b <= 0xFF for b in by_byte):
            raise ValueError(f"{self.name}: sub-command bytes must be distinct values 0..255")
        used = [0, 1, *range(self.password_offset, self.password_offset + 6)]
        used += range(self.length_offset, self.length_offset + 4)
        if len(set(used)) != len(used) or max(used) >= self.cdb_len:
            raise ValueError(f"{self.name}: CDB fields overlap or do not fit {self.cdb_len} bytes")
        codecs.lookup(self.encoding)
        if self.max_transfer < max(self.officer_len, self.identity_len, self.resolution_len):
            raise ValueError(f"{self.name}: max_transfer is smaller than a record")
        object.__setattr__(self, "subcommands", dict(self.subcommands))
        object.__setattr__(self, "_by_byte", by_byte)

    # -- CDBs
    def build_cdb(self, function: str, password: str, length: int = 0) -> bytes:
        if not PASSWORD.fullmatch(password):  # fullmatch: "$" alone lets "\n" through
            raise ValueError("device password must be 6 letters or digits")
        if not 0 <= length <= 0xFFFFFFFF:
            raise ValueError(f"transfer length {length} does not fit 32 bits")
        cdb = bytearray(self.cdb_len)  # reserved bytes and control stay 0
        cdb[0] = self.opcode
        cdb[1] = self.subcommands[function]
        cdb[self.password_offset : self.password_offset + 6] = password.encode("ascii")
        cdb[self.length_offset : self.length_offset + 4] = length.to_bytes(4, "big")
        return bytes(cdb)

    def parse_cdb(self, cdb: bytes) -> Cdb:
        """Decode a CDB as the camera does; ``CdbError`` carries the sense to refuse it with."""
        if len(cdb) != self.cdb_len:
            raise CdbError(f"CDB is {len(cdb)} bytes, not {self.cdb_len}", SENSE_INVALID_FIELD_IN_CDB)
        if cdb[0] != self.opcode:
            raise CdbError(f"opcode 0x{cdb[0]:02x} is not ours", SENSE_INVALID_OPCODE)
        password = cdb[self.password_offset : self.password_offset + 6].decode("latin-1")
        length = int.from_bytes(cdb[self.length_offset : self.length_offset + 4], "big")
        fields_ = {0, 1, *range(self.password_offset, self.password_offset + 6)}
        fields_ |= set(range(self.length_offset, self.length_offset + 4))
        if any(cdb[i] for i in range(self.cdb_len) if i not in fields_):
            raise CdbError("reserved CDB bytes are not zero", SENSE_INVALID_FIELD_IN_CDB)
        return Cdb(self._by_byte.get(cdb[1]), cdb[1], password, length)

    # -- records
    @property
    def officer_len(self) -> int:
        return sum(size for _, size in self.officer_layout)

    @property
    def identity_len(self) -> int:
        return sum(size for _, size in self.identity_layout)

    def record_len(self, function: str) -> int | None:
        """Bytes in the function's data phase: 0 for none, None when variable (FREE)."""
        return {
            "IDENT": self.identity_len,
            "INFO_GET": self.officer_len,
            "INFO_SET": self.officer_len,
            "CLOCK_GET": CLOCK_LEN,
            "CLOCK_SET": CLOCK_LEN,
            "RES": self.resolution_len,
            "BATT": BATTERY_LEN,
            "STORAGE": STORAGE.size,
            "FREE": None,
        }.get(function, 0)

    def _pack_fields(self, layout: Iterable[tuple[str, int]], values: Mapping[str, str]) -> bytes:
        out = bytearray()
        for name, size in layout:
            raw = str(values[name]).encode(self.encoding)
            if len(raw) > size or b"\0" in raw:
                raise ValueError(f"{name} {values[name]!r} does not fit {size} NUL-free bytes")
            out += raw.ljust(size, b"\0")
        return bytes(out)

    def _unpack_fields(self, layout: Iterable[tuple[str, int]], data: bytes, what: str) -> dict[str, str]:
        layout = list(layout)
        if len(data) != sum(size for _, size in layout):
            raise ValueError(f"{what} record is {len(data)} bytes, not {sum(size for _, size in layout)}")
        values, offset = {}, 0
        for name, size in layout:
            # C char arrays: the value ends at the first NUL; bytes after it are not looked at.
            raw = data[offset : offset + size].split(b"\0", 1)[0]
            try:
                values[name] = raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raise ValueError(f"{what} {name} is not {self.encoding} text: {raw.hex()}") from exc
            offset += size
        return values

    def pack_officer(self, record: OfficerRecord) -> bytes:
        return self._pack_fields(self.officer_layout, record.to_dict())

    def unpack_officer(self, data: bytes) -> OfficerRecord:
        return OfficerRecord(**self._unpack_fields(self.officer_layout, data, "ZFY_INFO"))

    def pack_identity(self, identity: CameraIdentity) -> bytes:
        return self._pack_fields(self.identity_layout, asdict(identity))

    def unpack_identity(self, data: bytes) -> CameraIdentity:
        return CameraIdentity(**self._unpack_fields(self.identity_layout, data, "identity"))

    def pack_clock(self, when: datetime) -> bytes:
        return when.strftime(CLOCK_FORMAT).encode("ascii")

    def unpack_clock(self, data: bytes) -> datetime:
        if len(data) != CLOCK_LEN or not data.isdigit():  # bytes.isdigit: ASCII digits only
            raise ValueError(f"clock {data!r} is not {CLOCK_LEN} ASCII digits")
        return datetime.strptime(data.decode("ascii"), CLOCK_FORMAT)

    def pack_battery(self, pct: int) -> bytes:
        if not 0 <= pct <= 100:
            raise ValueError(f"battery level {pct} is not 0..100")
        return bytes([pct])

    def unpack_battery(self, data: bytes) -> int:
        if len(data) != BATTERY_LEN or data[0] > 100:
            raise ValueError(f"battery answer {data.hex() or 'empty'} is not one byte 0..100")
        return data[0]

    def pack_storage(self, total: int, free: int) -> bytes:
        return STORAGE.pack(total, free)

    def unpack_storage(self, data: bytes) -> tuple[int, int]:
        if len(data) != STORAGE.size:
            raise ValueError(f"storage answer is {len(data)} bytes, not {STORAGE.size}")
        total, free = STORAGE.unpack(data)
        if free > total:
            raise ValueError(f"free {free} exceeds total {total}")
        return total, free

    def pack_resolution(self, text: str) -> bytes:
        return self._pack_fields([("resolution", self.resolution_len)], {"resolution": text})

    def unpack_resolution(self, data: bytes) -> str:
        text = self._unpack_fields([("resolution", self.resolution_len)], data, "resolution")["resolution"]
        if not text:
            raise ValueError("resolution is empty")
        return text

    def pack_paths(self, paths: Iterable[str]) -> list[bytes]:
        """FREE's parameter lists: NUL-terminated paths, split so no list exceeds ``max_transfer``."""
        batches: list[bytes] = []
        current = bytearray()
        for path in paths:
            raw = path.encode(self.encoding) + b"\0"
            if len(raw) == 1 or b"\0" in raw[:-1] or len(raw) > self.max_transfer:
                raise ValueError(f"camera path {path!r} is empty, contains NUL or is too long")
            if len(current) + len(raw) > self.max_transfer:
                batches.append(bytes(current))
                current = bytearray()
            current += raw
        if current:
            batches.append(bytes(current))
        return batches

    def unpack_paths(self, data: bytes) -> list[str]:
        if not data.endswith(b"\0"):
            raise ValueError("path list does not end with NUL")
        raws = data[:-1].split(b"\0")
        if any(not raw for raw in raws):
            raise ValueError("path list has an empty entry")
        return [raw.decode(self.encoding) for raw in raws]


def get_vendor(name: str) -> VendorMap:
    """The map in ``vendors/<name>.py``: adding a vendor is adding a file, no registry to edit."""
    if not _NAME.match(name):
        raise KeyError(f"no camera vendor map {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise  # the vendor file exists but is broken: say that, not "unknown vendor"
        raise KeyError(f"no camera vendor map {name!r} (known: {', '.join(vendor_names())})") from exc
    vendor = getattr(module, "VENDOR", None)
    if not isinstance(vendor, VendorMap):
        raise KeyError(f"{module.__name__} defines no VENDOR map")
    return vendor


def vendor_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
