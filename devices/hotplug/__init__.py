"""Which cameras are on the USB bus, by physical port path: udev on the station, files in simulation."""

from devices.hotplug.base import DeviceScanner, DockedDevice, UsbIds
from devices.hotplug.factory import make_scanner

__all__ = ["DeviceScanner", "DockedDevice", "UsbIds", "make_scanner"]
