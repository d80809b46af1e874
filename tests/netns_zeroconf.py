"""Run inside a fresh network namespace (tests/test_discovery.py): loopback with multicast is the whole
LAN. Advertises a station and a central endpoint, then runs `recterm discover` as a separate process and
prints what it found as one JSON object; then runs a whole station (`recterm run`) that advertises itself,
and prints what discovery finds of it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from appliance import __version__
from appliance.discovery import CENTRAL_TYPE, Advertiser, service_info, station_info
from devices.sim.world import SimWorld
from tests.conftest import write_config

LO = ["127.0.0.1"]


def setup_loopback_lan() -> None:
    for args in (["link", "set", "lo", "up"], ["link", "set", "lo", "multicast", "on"]):
        subprocess.run(["ip", *args], check=True)
    subprocess.run(["ip", "route", "add", "224.0.0.0/4", "dev", "lo"], check=True)


RECTERM = str(Path(sys.executable).with_name("recterm"))


def discover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RECTERM, "discover", "--interface", *LO, *args], capture_output=True, text=True, check=False)


def station_listing(root: Path) -> list[dict]:
    """A whole station (`recterm run`, simulated devices) advertising itself; what `recterm discover` sees."""
    world = SimWorld(root / "sim")
    world.init({1: "1-1.1"})
    config = write_config(root, world, discovery={"advertise": True, "interfaces": LO})
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECTERM_")}
    station = subprocess.Popen([RECTERM, "run", "--config", str(config)], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = [json.loads(line) for line in discover("--timeout", "2").stdout.splitlines()]
            if found:
                return found
        return []
    finally:
        station.send_signal(signal.SIGTERM)
        station.wait(timeout=30)


async def main(before: subprocess.CompletedProcess[str]) -> None:
    station = station_info("st-ns-01", __version__, 8443, LO, "SHA256:abc")
    central = service_info(CENTRAL_TYPE, "central-1", 9443, LO, {"scheme": "https", "path": "/api/v1/"})
    async with Advertiser(station, LO), Advertiser(central, LO):
        loop = asyncio.get_running_loop()
        listing = await loop.run_in_executor(None, discover, "--timeout", "3")
        endpoint = await loop.run_in_executor(None, discover, "--central", "--timeout", "3")
    print(
        json.dumps(
            {
                "before": [before.returncode, before.stderr],
                "listing": [json.loads(line) for line in listing.stdout.splitlines()],
                "listing_err": listing.stderr,
                "central": [endpoint.returncode, endpoint.stdout.strip(), endpoint.stderr],
            }
        )
    )


if __name__ == "__main__":
    setup_loopback_lan()
    asyncio.run(main(discover("--central", "--timeout", "2")))  # before anything is advertised
    print(json.dumps({"running_station": station_listing(Path(sys.argv[1]))}))
