"""The station's hot-plug back end: sysfs gives the snapshot, a udev monitor wakes the scanner early.

Devices are keyed by the USB port path in sysfs (``1-1.3``), never by sda/ttyACM0 order, which changes
after a reset, and grouped by the bay's port path, so a camera that is one composite device and a camera
that carries a small hub of its own (storage and control port on the hub's ports) are both one camera in
one bay. All paths come from ``devices.paths`` so tests run this on a checked-in fake sysfs tree.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection
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


def _udev_done(node: Path, kind: str) -> bool:
    """udev has finished with the device behind sysfs ``node`` (``kind`` "b" block, "c" char): its database
    entry exists, so the group that lets the station open it and the /dev/recterm names are in place. Found
    under QEMU: the station probed /dev/sda while it was still root:disk and blkid's "permission denied"
    read as "no filesystem". Where no udev runs (a container, the fake tree) there is nothing to wait for."""
    if not paths.run("udev", "control").exists():
        return True
    number = _read(node / "dev")
    return bool(number) and paths.run("udev", "data", f"{kind}{number}").exists()


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
        if _read(node / "size") in ("", "0"):
            continue  # the disk node comes before the kernel has read its capacity: not ready to read yet
        partitions = sorted(p.name for p in node.iterdir() if (p / "partition").exists()) if node.is_dir() else []
        storage = node / partitions[0] if partitions else node
        if not _udev_done(storage, "b"):
            continue  # not the station's to open yet
        found[port] = paths.dev(storage.name)
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
        if port is not None and _udev_done(node, "c"):
            found.setdefault(port, str(paths.dev(node.name)))
    return found


def bay_port_of(port: str, bay_ports: Collection[str]) -> str:
    """The bay a USB device at ``port`` sits in: the longest bay port path equal to it or above it (a
    camera that carries its own hub shows its storage on ``1-1.3.1`` and its control port on ``1-1.3.2``;
    both are the camera in bay port ``1-1.3``). A device under no bay keeps its own port path."""
    owners = [p for p in bay_ports if port == p or port.startswith(p + ".")]
    return max(owners, key=len) if owners else port


def _usb_ids(port: str) -> UsbIds | None:
    node = paths.sysfs("bus", "usb", "devices", port)
    try:
        return UsbIds(int(_read(node / "idVendor"), 16), int(_read(node / "idProduct"), 16), _read(node / "serial"))
    except ValueError:
        log.warning("USB device %s: unreadable descriptors, ignored", port)
        return None


def scan_sysfs(bay_ports: Collection[str] = ()) -> dict[str, DockedDevice]:
    """Every camera on the bus, keyed by the port path of the bay it is in (``bay_ports``) or, outside any
    bay, by its own. A camera's USB identity is that of the device carrying its storage (else its control
    port): the one the inventory knows and the control port's answer is checked against."""
    storage = _storage_nodes()
    control = _control_ports()
    functions: dict[str, dict[str, str]] = {}  # bay port -> {"storage": port, "control": port}
    for kind, found in (("storage", storage), ("control", control)):
        for port in sorted(found):
            slots = functions.setdefault(bay_port_of(port, bay_ports), {})
            if kind in slots:
                log.warning("bay port %s: a second %s device on %s, ignored", bay_port_of(port, bay_ports), kind, port)
                continue
            slots[kind] = port
    docked: dict[str, DockedDevice] = {}
    for bay_port, slots in sorted(functions.items()):
        ids = _usb_ids(slots.get("storage") or slots["control"])
        if ids is None:
            continue
        disk = storage[slots["storage"]] if "storage" in slots else None
        tty = control[slots["control"]] if "control" in slots else None
        docked[bay_port] = DockedDevice(bay_port, ids, disk, tty)
    return docked


class UdevScanner(DeviceScanner):
    def __init__(self, bay_ports: Collection[str] = ()) -> None:
        super().__init__()
        self.bay_ports = tuple(bay_ports)
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
        return scan_sysfs(self.bay_ports)

    def wait_for_change(self, timeout: float) -> None:
        if self._monitor is None:
            super().wait_for_change(timeout)
            return
        device = self._monitor.poll(timeout=timeout)
        if device is not None:
            # Let the burst of events from one plug-in settle before scanning.
            while self._monitor.poll(timeout=0.2) is not None:
                pass
