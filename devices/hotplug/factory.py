"""Choose the hot-plug back end named in the config."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from devices.hotplug.base import DeviceScanner


def make_scanner(backend: str, sim_world: Path | None = None, bay_ports: Collection[str] = ()) -> DeviceScanner:
    if backend == "simulated":
        from devices.hotplug.simulated import SimulatedScanner

        assert sim_world is not None, "config validation guarantees sim_world for the simulated back end"
        return SimulatedScanner(sim_world)
    if backend == "real":
        from devices.hotplug.udev import UdevScanner

        return UdevScanner(bay_ports)
    from devices.hotplug.disabled import DisabledScanner

    return DisabledScanner()
