"""Build the device back ends named in the config. Simulated back ends are the real drivers pointed at
the simulator's stable device names (``<sim_world>/dev/...``, as udev gives by-path names on a station)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.config import BaySection, DevicesSection
from devices.badge.base import BadgeReader
from devices.dock.base import DisabledDockBoard, DockBoard
from devices.gpio.base import BayIndicators
from devices.gpio.disabled import DisabledBayIndicators

SIM_DOCK_BOARD = "dev/dock-board"
SIM_BADGE_READER = "dev/badge-reader"


def sim_device(section: DevicesSection, name: str) -> str:
    assert section.sim_world is not None, "config validation guarantees sim_world for simulated back ends"
    return str(Path(section.sim_world) / name)


def make_dock_board(section: DevicesSection, bays: Sequence[BaySection]) -> DockBoard:
    config = section.dock_board
    if config.backend.value == "disabled":
        return DisabledDockBoard(max((b.dock_channel or 0 for b in bays), default=0) or len(bays))
    from devices.dock.serial_board import SerialDockBoard

    url = config.url if config.backend.value == "real" else sim_device(section, SIM_DOCK_BOARD)
    assert url is not None
    return SerialDockBoard(url)


def make_indicators(section: DevicesSection, bays: Sequence[BaySection]) -> BayIndicators:
    if section.gpio.backend == "disabled":
        return DisabledBayIndicators([b.number for b in bays])
    from devices.gpio.gpiozero_backend import BayPins, GpioBayIndicators

    pins = {
        b.number: BayPins(b.gpio.red, b.gpio.green, b.gpio.blue, b.gpio.latch, b.gpio.presence)
        for b in bays
        if b.gpio is not None
    }
    factory = None
    if section.gpio.backend == "mock":  # gpiozero's own mock pins: the demo and the tests
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        factory = MockFactory(pin_class=MockPWMPin)
    return GpioBayIndicators(pins, pin_factory=factory, buzzer=section.gpio.buzzer)


def make_badge_reader(section: DevicesSection, on_card: Callable[[str], None]) -> BadgeReader | None:
    config = section.badge
    if config.backend == "disabled":
        return None
    if config.backend == "keyboard":
        from devices.badge.keyboard_wedge import KeyboardWedgeReader

        assert config.device is not None  # config validation
        return KeyboardWedgeReader(config.device, on_card)
    from devices.badge.serial_reader import SerialBadgeReader

    url = config.url if config.backend == "serial" else sim_device(section, SIM_BADGE_READER)
    assert url is not None  # config validation
    return SerialBadgeReader(url, on_card)
