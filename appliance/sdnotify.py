"""systemd's service notification protocol (sd_notify): READY, STOPPING and watchdog pings.

One datagram per message to the AF_UNIX socket named in $NOTIFY_SOCKET (a leading "@" means the abstract
namespace). Outside systemd the variable is unset and every call is a no-op, so the same code runs in
the demo and the tests. The watchdog interval comes from $WATCHDOG_USEC (set by WatchdogSec=); pings go
out at half of it from the event loop, so a hung loop stops pinging and systemd restarts the station.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(environ: Mapping[str, str]) -> str | None:
    path = environ.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one notification (e.g. "READY=1"); False when not under systemd or the send failed."""
    address = _address(os.environ if environ is None else environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("sd_notify %r failed: %s", message, exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of WatchdogSec), or None when systemd asked for no watchdog."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were forked or exec'ed by the real service)
    return int(usec) / 1e6 / 2


async def watchdog(stop: asyncio.Event, interval: float) -> None:
    """Ping systemd's watchdog until ``stop`` is set."""
    while not stop.is_set():
        notify("WATCHDOG=1")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
