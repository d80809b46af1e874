"""Hot-plug from the simulator: it announces docked cameras as files under ``<world>/usb/``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from devices.hotplug.base import DeviceScanner, DockedDevice, UsbIds

log = logging.getLogger(__name__)


class SimulatedScanner(DeviceScanner):
    def __init__(self, world_root: Path) -> None:
        super().__init__()
        self.usb_dir = Path(world_root) / "usb"

    def scan(self) -> dict[str, DockedDevice]:
        found: dict[str, DockedDevice] = {}
        if not self.usb_dir.is_dir():
            return found
        for item in sorted(self.usb_dir.glob("*.json")):
            try:
                data = json.loads(item.read_bytes())
                usb = data["usb"]
                device = DockedDevice(
                    port_path=str(data["port_path"]),
                    usb=UsbIds(int(usb["vid"]), int(usb["pid"]), str(usb["serial"])),
                    block_device=Path(data["block_device"]) if data.get("block_device") else None,
                    control_port=data.get("control_port"),
                )
            except FileNotFoundError:
                continue  # unplugged between listing and reading
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring malformed device announcement %s: %s", item.name, exc)
                continue
            found[device.port_path] = device
        return found
