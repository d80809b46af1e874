"""FAT directory entries: short names with their case flags, long names checked against their short entry.

The name is the one Linux's vfat shows with ``shortname=mixed`` (how the station mounts it): the long name
when one belongs to the entry, else the short name with the NTRes flags applied (0x08 lower-case base name,
0x10 lower-case extension: ``-rf.MP4`` is stored as ``-RF     MP4`` with 0x08). A long name whose checksum
or sequence does not match its short entry is ignored by the kernel, which shows the short name; here that
is a finding, because the short name is not the name the camera wrote.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

ENTRY = 32
ATTR_VOLUME, ATTR_DIRECTORY, ATTR_LONG_NAME = 0x08, 0x10, 0x0F
LOWER_BASE, LOWER_EXT = 0x08, 0x10
DELETED = 0xE5


@dataclass(frozen=True)
class DirItem:
    name: str
    short_name: str  # 8.3 as stored (upper case), for messages
    is_dir: bool
    start: int  # first cluster, 0 for none
    size: int
    modified: datetime | None
    created: datetime | None
    problem: str = ""  # why the entry's name cannot be trusted (a finding for this path)


def short_checksum(name11: bytes) -> int:
    total = 0
    for byte in name11:
        total = (((total & 1) << 7) | (total >> 1)) + byte & 0xFF
    return total


def short_name(name11: bytes, ntres: int) -> str:
    base, ext = name11[:8].rstrip(b" "), name11[8:].rstrip(b" ")
    if base[:1] == b"\x05":  # 0xE5 as a first character is stored as 0x05 (0xE5 marks deleted entries)
        base = b"\xe5" + base[1:]
    text_base, text_ext = base.decode("cp437"), ext.decode("cp437")  # the kernel's default codepage
    if ntres & LOWER_BASE:
        text_base = text_base.lower()
    if ntres & LOWER_EXT:
        text_ext = text_ext.lower()
    return f"{text_base}.{text_ext}" if text_ext else text_base


def fat_time(date: int, time: int, centiseconds: int = 0) -> datetime | None:
    """A FAT date and time (2-second steps, plus 10 ms units for creation) as naive wall time."""
    if date == 0:
        return None
    try:
        moment = datetime(1980 + (date >> 9), (date >> 5) & 0xF, date & 0x1F, time >> 11, (time >> 5) & 0x3F)
    except ValueError:
        return None
    seconds = (time & 0x1F) * 2
    if seconds > 59 or centiseconds > 199:
        return None
    return moment + timedelta(seconds=seconds, milliseconds=10 * centiseconds)


class _LongName:
    def __init__(self, count: int, checksum: int) -> None:
        self.next = count  # the sequence number expected next, counting down to 1
        self.checksum = checksum
        self.parts: list[bytes] = []
        self.broken = not 1 <= count <= 20  # 20 slots hold the longest name (255 characters)


def _long_part(entry: bytes) -> bytes:
    return entry[1:11] + entry[14:26] + entry[28:32]


def _decode_long(parts: list[bytes]) -> str:
    units = b"".join(reversed(parts))
    for at in range(0, len(units), 2):
        if units[at : at + 2] == b"\x00\x00":
            units = units[:at]
            break
    return units.decode("utf-16-le")  # strict: a lone surrogate raises


def parse(data: bytes, is_root: bool, fat32: bool) -> Iterator[DirItem]:
    """The live entries of one directory's bytes, in stored order, without "." and ".." and volume labels."""
    pending: _LongName | None = None
    for offset in range(0, len(data) - ENTRY + 1, ENTRY):
        entry = data[offset : offset + ENTRY]
        first, attr = entry[0], entry[11]
        if first == 0:
            return  # end of directory: nothing after this is in use
        if first == DELETED:
            pending = None
            continue
        if attr & 0x3F == ATTR_LONG_NAME:
            if first & 0x40:
                pending = _LongName(first & 0x1F, entry[13])
            elif (
                pending is not None
                and not pending.broken
                and first == pending.next - 1
                and entry[13] == pending.checksum
            ):
                pending.next -= 1
            elif pending is not None:
                pending.broken = True
                continue
            else:
                pending = _LongName(0, entry[13])  # a middle slot without its first: broken
                continue
            pending.parts.append(_long_part(entry))
            continue
        if attr & ATTR_VOLUME and not attr & ATTR_DIRECTORY:
            pending = None  # the volume label
            continue
        name11 = entry[:11]
        if not is_root and name11 in (b".          ", b"..         "):
            pending = None
            continue
        item = _short_item(entry, fat32)
        if pending is not None:
            if pending.broken or pending.next != 1 or pending.checksum != short_checksum(name11):
                item = _replace(item, problem=f"its long name does not belong to short entry {item.short_name} "
                                "(broken sequence or checksum): the camera's name is lost")  # fmt: skip
            else:
                try:
                    item = _replace(item, name=_decode_long(pending.parts))
                except UnicodeDecodeError:
                    item = _replace(item, problem=f"the long name of {item.short_name} is not valid UTF-16")
            pending = None
        yield item


def _short_item(entry: bytes, fat32: bool) -> DirItem:
    attr, ntres, centis = entry[11], entry[12], entry[13]
    crt_time, crt_date = struct.unpack_from("<HH", entry, 14)
    high = struct.unpack_from("<H", entry, 20)[0] if fat32 else 0  # FAT12/16 use that word for other things
    wrt_time, wrt_date, low, size = struct.unpack_from("<HHHI", entry, 22)
    stored = entry[:11].decode("cp437")
    return DirItem(
        name=short_name(entry[:11], ntres),
        short_name=f"{stored[:8].rstrip()}.{stored[8:].rstrip()}".rstrip("."),
        is_dir=bool(attr & ATTR_DIRECTORY),
        start=high << 16 | low,
        size=size,
        modified=fat_time(wrt_date, wrt_time),
        created=fat_time(crt_date, crt_time, centis),
    )


def _replace(item: DirItem, **changes: str) -> DirItem:
    return DirItem(**{**item.__dict__, **changes})
