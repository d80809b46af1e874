"""The station on the simulated dock board, gpiozero's mock pins and a simulated badge reader: the same
drivers as on a Pi, only the transport underneath differs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gpiozero import Device

from appliance.config import load_config
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from tests.conftest import register_cameras, wait_until, write_config

PINS = {1: (2, 3, 4, 17), 2: (27, 22, 10, 9), 3: (11, 5, 6, 13), 4: (19, 26, 14, 15)}


def device_config(tmp_path: Path, world: SimWorld):
    bays = [
        {"number": n, "port_path": f"1-1.{n}", "dock_channel": n,
         "gpio": {"red": r, "green": g, "blue": b, "latch": latch}}
        for n, (r, g, b, latch) in PINS.items()
    ]  # fmt: skip
    path = write_config(
        tmp_path,
        world,
        bays=bays,
        devices={
            "dock_board": {"backend": "simulated"},
            "gpio": {"backend": "mock", "buzzer": 18},
            "badge": {"backend": "simulated"},
        },
    )
    return load_config(path)


def rgb(station, bay: int) -> tuple[float, float, float]:
    led = station.station.indicators._leds[bay]  # the gpiozero RGBLED on mock pins
    return tuple(round(v, 2) for v in led.value)


def test_board_charge_state_leds_and_badges_reach_the_station(
    world: SimWorld, sim_server: SimServer, tmp_path: Path, start_station
) -> None:
    config = device_config(tmp_path, world)
    world.create_camera("CAMDEV1", fs_type="vfat", size_mib=40, clips=1, battery_pct=90)  # ~5 s charging
    register_cameras(config, "CAMDEV1")
    station = start_station(cfg=config)
    try:
        assert rgb(station, 1) == (0, 0, 0)  # empty bay: dark
        sim_server.dock("CAMDEV1", 1)
        # The board is polled every 2 s and the simulated battery fills fast: "charging" may be missed.
        wait_until(lambda: (station.bay(1)["charge"] or {}).get("present") is True, 20, "board presence")
        charge = station.bay(1)["charge"]
        assert charge["state"] in ("charging", "full") and (charge["current_ma"] > 0) == (charge["state"] == "charging")
        wait_until(lambda: station.bay(1)["led"] in ("charging", "ready"), 60, "offload done")
        assert rgb(station, 1) != (0, 0, 0)
        wait_until(lambda: station.bay(1)["led"] == "ready", 60, "charged to full: green")
        assert rgb(station, 1) == (0, 1, 0)

        received: list = []

        async def listen() -> None:
            q = station.station.bus.subscribe()
            topic, data = await asyncio.wait_for(q.get(), 20)
            while topic != "badge":
                topic, data = await asyncio.wait_for(q.get(), 20)
            received.append(data)

        future = asyncio.run_coroutine_threadsafe(listen(), station.loop)  # subscribes on the station's loop
        wait_until(lambda: sim_server.badge is not None, 5, "reader")
        time.sleep(0.5)  # the listener subscribes first
        sim_server.badge.swipe("0a1b2c3d")
        future.result(timeout=20)
        assert received == [{"card": "0A1B2C3D"}]

        sim_server.undock(1)
        wait_until(lambda: station.bay(1)["led"] == "off", 20, "dark again")
        assert rgb(station, 1) == (0, 0, 0)
    finally:
        Device.pin_factory = None
