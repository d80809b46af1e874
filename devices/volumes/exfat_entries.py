"""exFAT directory entry sets: a File entry, its Stream Extension and File Name entries, checked by the set's
SetChecksum and the name's NameHash (Linux's exfat looks a name up by its hash: a wrong hash is a file it
lists but cannot open)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from devices.volumes.exfat_layout import UpCase, rotate_sum
from devices.volumes.fat_entries import fat_time

ENTRY = 32
FILE, STREAM, NAME = 0x85, 0xC0, 0xC1
BITMAP, UPCASE, LABEL = 0x81, 0x82, 0x83
ATTR_DIRECTORY = 0x10
ALLOCATION_POSSIBLE, NO_FAT_CHAIN = 0x01, 0x02


@dataclass(frozen=True)
class SetItem:
    name: str  # "" when it could not be decoded (``problem`` says why)
    is_dir: bool
    first_cluster: int
    size: int  # DataLength
    valid_size: int  # ValidDataLength: bytes past it read as zeros
    contiguous: bool  # NoFatChain: the clusters are first_cluster onwards, no FAT chain
    modified: datetime | None
    created: datetime | None
    problem: tuple[str, str] | None = None  # (reason, detail)


@dataclass(frozen=True)
class SystemEntry:
    """A root directory entry of the volume itself (the allocation bitmap or the up-case table)."""

    kind: int
    flags: int
    checksum: int
    first_cluster: int
    size: int


@dataclass(frozen=True)
class DirectoryProblem:
    detail: str


def exfat_time(stamp: int, centiseconds: int) -> datetime | None:
    return fat_time(stamp >> 16, stamp & 0xFFFF, centiseconds)


def parse(data: bytes, upcase: UpCase | None) -> Iterator[SetItem | SystemEntry | DirectoryProblem]:
    """The entries in use of one directory's bytes, in stored order."""
    count = len(data) // ENTRY
    index = 0
    while index < count:
        entry = data[index * ENTRY : (index + 1) * ENTRY]
        kind = entry[0]
        if kind == 0:
            return  # end of directory
        if kind < 0x80 or kind >= STREAM:  # unused entries; a secondary without its primary is ignored, as drivers do
            index += 1
            continue
        if kind in (BITMAP, UPCASE):
            checksum = struct.unpack_from("<I", entry, 4)[0]
            first, size = struct.unpack_from("<IQ", entry, 20)
            yield SystemEntry(kind, entry[1], checksum, first, size)
            index += 1
            continue
        if kind == LABEL:
            index += 1
            continue
        if 0xA0 <= kind <= 0xBF:  # benign primaries (volume GUID, TexFAT padding): skipped with their secondaries
            index += 1 + entry[1]
            continue
        if kind != FILE:
            yield DirectoryProblem(f"an unknown critical directory entry (type 0x{kind:02x}) at entry {index}")
            index += 1
            continue
        secondaries = entry[1]
        if not 2 <= secondaries <= 18 or index + secondaries >= count:
            yield _broken(f"entry set at entry {index} claims {secondaries} secondary entries")
            index += 1
            continue
        yield _entry_set(data[index * ENTRY : (index + 1 + secondaries) * ENTRY], index, upcase)
        index += 1 + secondaries


def _broken(detail: str) -> SetItem:
    return SetItem("", False, 0, 0, 0, False, None, None, ("bad_entry", detail))


def _entry_set(raw: bytes, index: int, upcase: UpCase | None) -> SetItem:
    file, stream = raw[:ENTRY], raw[ENTRY : 2 * ENTRY]
    attributes = struct.unpack_from("<H", file, 4)[0]
    created, modified = struct.unpack_from("<II", file, 8)
    flags, name_length, name_hash = stream[1], stream[3], struct.unpack_from("<H", stream, 4)[0]
    valid, first, size = struct.unpack_from("<Q", stream, 8)[0], *struct.unpack_from("<IQ", stream, 20)
    names = -(-name_length // 15)
    item = SetItem(
        name="",
        is_dir=bool(attributes & ATTR_DIRECTORY),
        first_cluster=first if flags & ALLOCATION_POSSIBLE else 0,
        size=size,
        valid_size=valid,
        contiguous=bool(flags & NO_FAT_CHAIN),
        modified=exfat_time(modified, file[21]),
        created=exfat_time(created, file[20]),
    )
    kinds = [raw[at] for at in range(ENTRY, len(raw), ENTRY)]
    if stream[0] != STREAM or not 1 <= name_length <= 255 or kinds[1 : 1 + names] != [NAME] * names:
        return _with(item, "bad_entry", f"entry set at entry {index} lacks its stream or name entries")
    if any(k < 0xE0 for k in kinds[1 + names :]):
        return _with(item, "bad_entry", f"entry set at entry {index} holds an unknown critical entry")
    encoded = b"".join(raw[at + 2 : at + ENTRY] for at in range(2 * ENTRY, (2 + names) * ENTRY, ENTRY))
    encoded = encoded[: 2 * name_length]
    try:
        item = SetItem(**{**item.__dict__, "name": encoded.decode("utf-16-le")})
    except UnicodeDecodeError:
        return _with(item, "bad_name", f"the name in the entry set at entry {index} is not valid UTF-16")
    expected = rotate_sum(raw, 16, skip=(2, 3))
    stored = struct.unpack_from("<H", file, 2)[0]
    if expected != stored:
        return _with(
            item, "bad_entry", f"the entry set's checksum is 0x{stored:04x}, its entries give 0x{expected:04x}"
        )
    if upcase is not None and upcase.name_hash(encoded) != name_hash:
        return _with(item, "bad_entry", "the name hash does not match the name (Linux's exfat could not open it)")
    if not flags & ALLOCATION_POSSIBLE and (first or size):
        return _with(item, "bad_entry", "an entry that may not hold clusters names some")
    if valid > size:
        return _with(item, "bad_entry", f"ValidDataLength {valid} is beyond the size {size}")
    return item


def _with(item: SetItem, reason: str, detail: str) -> SetItem:
    return SetItem(**{**item.__dict__, "problem": (reason, detail)})
