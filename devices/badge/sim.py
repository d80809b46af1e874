"""A simulated serial badge reader on a real pty: ``SimBadgeReader().swipe("0A1B2C3D")``."""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path


class SimBadgeReader:
    """The reader's end of a serial line. The station opens ``port`` as it would /dev/ttyACMn.

    With ``link`` (say tmp/serial/by-id/usb-badge), ``port`` is that symlink to the pty, and ``unplug()`` /
    ``plug()`` remove and recreate it like udev does on a real replug, so the station can reopen the same path.
    Without it, ``port`` is the pty's own path, which changes on every ``plug()``.
    """

    def __init__(self, link: str | Path | None = None, line_end: bytes = b"\r\n") -> None:
        self.link = Path(link) if link is not None else None
        self.line_end = line_end
        self._master: int | None = None
        self.slave_path = ""
        self.plug()

    @property
    def port(self) -> str:
        return str(self.link) if self.link is not None else self.slave_path

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> None:
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo and no newline translation: the station reads exactly what was sent
        self.slave_path = os.ttyname(slave)
        os.close(slave)
        self._master = master
        if self.link is not None:
            self.link.parent.mkdir(parents=True, exist_ok=True)
            temp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            temp.symlink_to(self.slave_path)
            os.replace(temp, self.link)  # atomic: the station never sees a half-made link

    def unplug(self) -> None:
        """The reader disappears: its link goes and the station's open port sees a hang-up."""
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        master, self._master = self._master, None
        if master is not None:
            os.close(master)

    def send(self, data: bytes) -> None:
        """Raw bytes on the line (for garbage, split lines, odd framing)."""
        if self._master is None:
            raise OSError("simulated badge reader is unplugged")
        os.write(self._master, data)

    def swipe(self, card: str) -> None:
        """A card held to the reader: its number and a line end."""
        self.send(card.encode("ascii") + self.line_end)

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> SimBadgeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
