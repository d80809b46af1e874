"""The dock controller board: bay presence, charge state and current, and bay USB power, over a serial line."""

from devices.dock.base import DisabledDockBoard, DockBoard, DockBoardError, DockBoardGone, DockBoardTimeout
from devices.dock.protocol import (
    BoardInfo,
    BootEvent,
    ChannelStatus,
    ChargeEvent,
    ChargeState,
    DockEvent,
    FaultEvent,
    PowerEvent,
    PresenceEvent,
)
from devices.dock.serial_board import SerialDockBoard

__all__ = [
    "BoardInfo",
    "BootEvent",
    "ChannelStatus",
    "ChargeEvent",
    "ChargeState",
    "DisabledDockBoard",
    "DockBoard",
    "DockBoardError",
    "DockBoardGone",
    "DockBoardTimeout",
    "DockEvent",
    "FaultEvent",
    "PowerEvent",
    "PresenceEvent",
    "SerialDockBoard",
]
