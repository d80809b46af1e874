"""No camera ever appears: for a station run without docks (web UI and upload only)."""

from __future__ import annotations

from devices.hotplug.base import DeviceScanner, DockedDevice


class DisabledScanner(DeviceScanner):
    def scan(self) -> dict[str, DockedDevice]:
        return {}
