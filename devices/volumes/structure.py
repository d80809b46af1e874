"""What a structural check of a camera filesystem finds: every file with where its data lies, every
directory, and the findings (damage and notes) per file, per directory and for the volume."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from devices.volumes.base import Finding


@dataclass(frozen=True)
class WalkedFile:
    path: str  # as the kernel shows it: long name, or short name with its case flags applied
    size: int
    modified: datetime | None  # the camera's wall clock, as stored
    created: datetime | None
    extents: tuple[tuple[int, int], ...]  # (byte offset on the device, length), covering ``size`` when undamaged


@dataclass
class Structure:
    fs_type: str
    device_size: int
    files: dict[str, WalkedFile] = field(default_factory=dict)  # in listing order (depth first, by name)
    directories: list[str] = field(default_factory=list)  # every directory walked, "" the root
    # Entries not listed, with a finding each: damaged directories (nothing under them is listed either) and
    # names no path may carry. A mounted view of the same volume must skip them too.
    skipped: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)

    def add(self, path: str, reason: str, detail: str, damage: bool = True) -> None:
        self.findings.append(Finding(path, reason, detail, damage))

    def damaged(self) -> set[str]:
        """Paths (files, directories, "" for the volume) with at least one damage finding."""
        return {f.path for f in self.findings if f.damage}
