"""Badge (RFID card) readers: serial readers sending one number per line, keyboard-wedge readers on evdev,
and a pty-based simulated serial reader. Import a back end from its module."""

from devices.badge.base import MAX_CARD_LENGTH, BadCardLine, BadgeReader, CardCallback, normalise_card

__all__ = ["MAX_CARD_LENGTH", "BadCardLine", "BadgeReader", "CardCallback", "normalise_card"]
