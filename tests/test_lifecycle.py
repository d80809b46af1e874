"""The station process: explicit lifecycle, clean SIGTERM, and a dying task that takes it down loudly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from appliance.config import StationConfig
from appliance.eventlog import EventLog
from appliance.station import Lifecycle, Station, TaskDied
from devices.hotplug.simulated import SimulatedScanner
from tests.conftest import wait_until, write_config


def test_sigterm_stops_recterm_run_cleanly(tmp_path: Path, world) -> None:
    path = write_config(tmp_path, world, log={"checkpoint_every": 16, "checkpoint_interval_s": 30})
    recterm = Path(sys.executable).with_name("recterm")
    proc = subprocess.Popen([str(recterm), "run", "--config", str(path)], stderr=subprocess.PIPE)
    port = int(path.read_text().split("port = ")[1].split()[0])

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).json()["state"] == "running"
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 60, "station health")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    entries = list(EventLog(tmp_path / "data" / "log").entries())
    assert entries[0].type == "boot" and entries[0].body["policy"] == "003"
    # The boot entry declares the configured checkpoint policy and is signed at once (docs/event-log.md).
    assert entries[0].body["log"] == {"checkpoint_every": 16, "checkpoint_interval_s": 30}
    assert (tmp_path / "data" / "log" / "checkpoints" / "000000000001.note").exists()
    assert entries[-1].type == "shutdown" and entries[-1].body == {"clean": True}


def test_a_dying_background_task_stops_the_station(config: StationConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_scan(self: SimulatedScanner) -> dict:
        raise RuntimeError("sysfs vanished")

    monkeypatch.setattr(SimulatedScanner, "scan", broken_scan)
    station = Station(config)
    with pytest.raises(TaskDied, match="sysfs vanished"):
        asyncio.run(asyncio.wait_for(station.run(serve_web=False), timeout=30))
    assert station.state is Lifecycle.STOPPED
    last = list(EventLog(config.log_dir).entries())[-1]
    assert last.type == "shutdown" and last.body == {"clean": False}


def test_recterm_run_exits_70_when_a_task_dies(tmp_path: Path, world) -> None:
    path = write_config(tmp_path, world)
    port = int(path.read_text().split("port = ")[1].split()[0])
    recterm = Path(sys.executable).with_name("recterm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECTERM_")}
    with socket.socket() as squatter:  # the web port is taken: the web task cannot start
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        proc = subprocess.run([str(recterm), "run", "--config", str(path)], capture_output=True, timeout=60, env=env)
    assert proc.returncode == 70, proc.stderr.decode()
    assert b"background task web died" in proc.stderr
