"""The hot-plug interface: a snapshot of docked devices keyed by USB port path, plus a wake-up hint."""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UsbIds:
    vid: int
    pid: int
    serial: str


@dataclass(frozen=True)
class DockedDevice:
    """A camera seen on one physical USB port: its storage and its control port, if it has them."""

    port_path: str
    usb: UsbIds
    block_device: Path | None
    control_port: str | None


class DeviceScanner(abc.ABC):
    """Blocking; run on a worker thread. The station diffs successive scans into dock/undock events, so a
    missed udev event can delay a dock by one poll interval but never lose it."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    @abc.abstractmethod
    def scan(self) -> dict[str, DockedDevice]:
        """Every camera on the bus now, keyed by USB port path."""

    def wait_for_change(self, timeout: float) -> None:
        """Return when something may have changed, or after ``timeout`` seconds (the polling fallback)."""
        self._closed.wait(timeout)

    def close(self) -> None:
        self._closed.set()
