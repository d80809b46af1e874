"""The station's hot-plug back end: sysfs gives the snapshot, a udev monitor wakes the scanner early.

Devices are keyed by the USB port path in sysfs (``1-1.3``), never by sda/ttyACM0 order, which changes
after a reset. All paths come from ``devices.paths`` so tests run this on a checked-in fake sysfs tree.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from devices import paths
from devices.hotplug.base import DeviceScanner, DockedDevice, UsbIds

log = logging.getLogger(__name__)

PORT_PATH = re.compile(r"^\d+-\d+(\.\d+)*$")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def usb_port_of(sys_device: Path) -> str | None:
    """The port path of the USB device a sysfs node hangs under (nearest ancestor named like 1-1.3)."""
    real = Path(os.path.realpath(sys_device))
    devices = Path(os.path.realpath(paths.sysfs("devices")))
    # Only the part inside sysfs: a prefix folder named like "2024-06" is not a USB port.
    for part in reversed(real.relative_to(devices).parts if real.is_relative_to(devices) else real.parts):
        if PORT_PATH.match(part):
            return part
    return None


def _storage_nodes() -> dict[str, Path]:
    """USB port path -> the block node holding the camera's filesystem (first partition, or whole disk)."""
    found: dict[str, Path] = {}
    block = paths.sysfs("class", "block")
    if not block.is_dir():
        return found
    for node in sorted(block.iterdir()):
        if (node / "partition").exists():
            continue  # partitions are looked at through their disk
        port = usb_port_of(node)
        if port is None:
            continue
        partitions = sorted(p.name for p in node.iterdir() if (p / "partition").exists()) if node.is_dir() else []
        found[port] = paths.dev(partitions[0] if partitions else node.name)
    return found


def _control_ports() -> dict[str, str]:
    found: dict[str, str] = {}
    tty = paths.sysfs("class", "tty")
    if not tty.is_dir():
        return found
    for node in sorted(tty.iterdir()):
        if not node.name.startswith(("ttyACM", "ttyUSB")):
            continue
        port = usb_port_of(node / "device") if (node / "device").exists() else None
        if port is not None:
            found.setdefault(port, str(paths.dev(node.name)))
    return found


def scan_sysfs() -> dict[str, DockedDevice]:
    storage = _storage_nodes()
    control = _control_ports()
    found: dict[str, DockedDevice] = {}
    usb = paths.sysfs("bus", "usb", "devices")
    if not usb.is_dir():
        return found
    for node in sorted(usb.iterdir()):
        if not PORT_PATH.match(node.name) or (node.name not in storage and node.name not in control):
            continue
        try:
            ids = UsbIds(int(_read(node / "idVendor"), 16), int(_read(node / "idProduct"), 16), _read(node / "serial"))
        except ValueError:
            log.warning("USB device %s: unreadable descriptors, ignored", node.name)
            continue
        found[node.name] = DockedDevice(node.name, ids, storage.get(node.name), control.get(node.name))
    return found


class UdevScanner(DeviceScanner):
    def __init__(self) -> None:
        super().__init__()
        self._monitor = None
        try:
            import pyudev

            self._monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            self._monitor.filter_by("usb")
            self._monitor.filter_by("block")
            self._monitor.filter_by("tty")
            self._monitor.start()
        except Exception as exc:  # no udev (container, test box): polling alone still finds everything
            log.warning("udev monitor unavailable (%s); polling sysfs only", exc)
            self._monitor = None

    def scan(self) -> dict[str, DockedDevice]:
        return scan_sysfs()

    def wait_for_change(self, timeout: float) -> None:
        if self._monitor is None:
            super().wait_for_change(timeout)
            return
        device = self._monitor.poll(timeout=timeout)
        if device is not None:
            # Let the burst of events from one plug-in settle before scanning.
            while self._monitor.poll(timeout=0.2) is not None:
                pass
