"""The simulator's world on disk: cameras (state + storage image), the dock wiring, what is docked.

Layout under the world root::

    world.json                 dock wiring: bay number -> USB port path
    docked.json                which camera sits in which bay (survives a restart of the simulator)
    cameras/<serial>/camera.json, storage.img
    usb/<port_path>.json       runtime: what the simulated USB bus currently shows (like udev)
    sim.sock                   control socket of the running simulator
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.state.atomic import atomic_write_json, read_json
from devices.sim import media

SERIAL = re.compile(r"^[A-Z0-9]{7}$")  # ZFY_INFO product serial: 7 characters


class SimError(Exception):
    """A simulator request that cannot be carried out."""


@dataclass
class SimCamera:
    serial: str
    vendor: str = "SIMCAM"
    model: str = "DSJ-S1"
    firmware: str = "1.0.0"
    password: str = "000000"
    battery_pct: int = 60
    clock_offset_s: float = 0.0
    resolution: str = "1920x1080@30"
    bitrate_mbps: float = 8.0
    fs_type: str = "exfat"
    usb_vid: int = 0x2E8A
    usb_pid: int = 0x0C01
    officer: dict[str, str] | None = None
    next_index: int = 1
    # None, "mute" (stops answering), "garbage" (answers nonsense) or "no_storage" (acknowledges MSC but its
    # storage never shows)
    fault: str | None = None
    storage_after_msc: bool = False  # storage shows on the bus only after MSC, as on many real cameras
    clock_stuck: bool = False  # a dead RTC: CLOCK_SET is acknowledged but the clock keeps its drift
    # A partitioned disk the scan catches before the kernel has listed its partition: its storage shows first
    # as a whole disk holding only a partition table, and this many seconds later as that disk's partition.
    partitions_after_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimCamera:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class SimWorld:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Held around every read-modify-write of a camera's state in this process (firmware commands, the
        # charger): without it the charger could write back a battery step over an officer record or clock
        # the firmware had just saved.
        self.state_lock = threading.RLock()

    # -- layout
    @property
    def usb_dir(self) -> Path:
        return self.root / "usb"

    @property
    def socket_path(self) -> Path:
        return self.root / "sim.sock"

    def camera_dir(self, serial: str) -> Path:
        if not SERIAL.match(serial):
            raise SimError(f"camera serial {serial!r} must be 7 capital letters or digits")
        return self.root / "cameras" / serial

    def image_path(self, serial: str) -> Path:
        return self.camera_dir(serial) / "storage.img"

    def init(self, bays: dict[int, str]) -> None:
        """Create the world with its dock wiring (bay number -> USB port path)."""
        (self.root / "cameras").mkdir(parents=True, exist_ok=True)
        self.usb_dir.mkdir(exist_ok=True)
        atomic_write_json(self.root / "world.json", {"bays": {str(k): v for k, v in bays.items()}})

    def wiring(self) -> dict[int, str]:
        data = read_json(self.root / "world.json")
        if data is None:
            raise SimError(f"{self.root} is not a simulator world (no world.json)")
        return {int(k): v for k, v in data["bays"].items()}

    def worn_contacts(self, bay: int) -> None:
        """A camera fails to enumerate in ``bay``: the kernel log lines a dirty dock contact causes (as the
        station reads them from journald on a Pi), written where the simulated station reads its kernel log."""
        port = self.wiring().get(bay)
        if port is None:
            raise SimError(f"no bay {bay} in the simulator's wiring")
        hub, _, number = port.rpartition(".")
        hub_port = f"{hub}-port{number}" if hub else "usb{}-port{}".format(*port.split("-", 1))  # a root port
        lines = [
            f"usb {port}: new high-speed USB device number 9 using xhci_hcd",
            f"usb {port}: device descriptor read/64, error -71",
            f"usb {port}: device descriptor read/64, error -71",
            f"usb {port}: device not accepting address 10, error -71",
            f"usb {hub_port}: unable to enumerate USB device",
        ]
        log = self.root / "dev" / "kmsg.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("a") as out:
            out.write("\n".join(lines) + "\n")

    # -- cameras
    def cameras(self) -> list[str]:
        folder = self.root / "cameras"
        return sorted(p.name for p in folder.iterdir() if (p / "camera.json").exists()) if folder.exists() else []

    def load(self, serial: str) -> SimCamera:
        data = read_json(self.camera_dir(serial) / "camera.json")
        if data is None:
            raise SimError(f"no simulated camera {serial}")
        return SimCamera.from_dict(data)

    def save(self, camera: SimCamera) -> None:
        atomic_write_json(self.camera_dir(camera.serial) / "camera.json", asdict(camera))

    def create_camera(
        self, serial: str, fs_type: str = "exfat", size_mib: int = 256, clips: int = 0, **attrs: Any
    ) -> SimCamera:
        folder = self.camera_dir(serial)
        if (folder / "camera.json").exists():
            raise SimError(f"camera {serial} already exists")
        if fs_type not in ("vfat", "exfat"):
            raise SimError("fs_type must be vfat (FAT32) or exfat")
        folder.mkdir(parents=True)
        try:
            media.create_image(self.image_path(serial), fs_type, size_mib, label=serial)  # type: ignore[arg-type]
            camera = SimCamera(serial=serial, fs_type=fs_type, **attrs)
            self.save(camera)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if clips:
            self.record(serial, clips)
        return camera

    def record(self, serial: str, count: int, seconds: float = 3.0) -> list[media.Recording]:
        """The officer records ``count`` clips (only while the camera is out of its dock)."""
        if serial in self.docked().values():
            raise SimError(f"camera {serial} is docked: it records only when taken out")
        camera = self.load(serial)
        start = camera_now(camera) - timedelta(seconds=count * (seconds + 5) + 60)
        made = media.record(self.image_path(serial), serial, start, count, seconds, first_index=camera.next_index)
        camera.next_index += count
        self.save(camera)
        return made

    def set_battery(self, serial: str, pct: int) -> None:
        if not 0 <= pct <= 100:
            raise SimError("battery level must be 0..100")
        camera = self.load(serial)
        camera.battery_pct = pct
        self.save(camera)

    # -- docking (persistent part; the server does the live part)
    def docked(self) -> dict[int, str]:
        return {int(k): v for k, v in read_json(self.root / "docked.json", {}).items()}

    def set_docked(self, bay: int, serial: str | None) -> None:
        docked = self.docked()
        if serial is None:
            docked.pop(bay, None)
        else:
            docked[bay] = serial
        atomic_write_json(self.root / "docked.json", {str(k): v for k, v in sorted(docked.items())})

    def expose_storage(self, serial: str) -> None:
        """The docked camera's storage enumerates: its bay's USB record gains the block device (for a camera
        with ``partitions_after_s``: first the bare partitioned disk, then its partition)."""
        delay = self.load(serial).partitions_after_s
        if delay is None:
            self._show_block_device(serial, self.image_path(serial))
            return
        disk, partition = self.camera_dir(serial) / "sda", self.camera_dir(serial) / "sda1"
        if not disk.exists():  # a disk of just a DOS partition table (sfdisk, util-linux), made whole or not at all
            temp = disk.with_name("sda.tmp")
            temp.write_bytes(b"")
            os.truncate(temp, 8 << 20)
            subprocess.run(["sfdisk", "--quiet", str(temp)], input="start=2048, type=c\n", text=True, check=True)
            temp.replace(disk)
        with contextlib.suppress(FileExistsError):
            partition.symlink_to(self.image_path(serial))
        self._show_block_device(serial, disk)
        timer = threading.Timer(delay, self._show_block_device, (serial, partition, disk))
        timer.daemon = True
        timer.start()

    def _show_block_device(self, serial: str, device: Path, replaces: Path | None = None) -> None:
        with self.state_lock:  # the simulator's unplug takes it too: a record is never written back after it
            for bay, docked in self.docked().items():
                record = self.usb_dir / f"{self.wiring()[bay]}.json"
                data = read_json(record, {}) if docked == serial else {}
                if "port_path" not in data:
                    continue
                if replaces is not None and data.get("block_device") != str(replaces):
                    continue  # undocked and docked again meanwhile: that dock shows its own storage
                data["block_device"] = str(device)
                atomic_write_json(record, data, mode=0o644)

    def clear_usb(self) -> None:
        if self.usb_dir.exists():
            for item in self.usb_dir.glob("*.json"):
                with contextlib.suppress(FileNotFoundError):
                    item.unlink()


def camera_now(camera: SimCamera) -> datetime:
    """The camera's own clock: local wall time plus its drift."""
    return datetime.now().replace(microsecond=0) + timedelta(seconds=camera.clock_offset_s)
