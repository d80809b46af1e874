"""`recterm demo` (what `make demo` runs): provisions a whole simulated station, serves it, stops on Ctrl-C,
and reuses its state the next time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from provisioning.demo import DEMO_ACCOUNTS, EQUIPMENT_OFFICER, demo_card, demo_pin
from tests.conftest import free_port, signed_in, wait_until, web_client


def start_demo(root: Path, port: int) -> subprocess.Popen[bytes]:
    recterm = Path(sys.executable).with_name("recterm")
    return subprocess.Popen(
        [str(recterm), "demo", "--dir", str(root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def bays(port: int) -> list[dict]:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/bays", timeout=2).json()
    except httpx.HTTPError:
        return []


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = proc.communicate(timeout=60)
    return out.decode()


def test_demo_serves_a_simulated_station_and_stops_cleanly(tmp_path: Path) -> None:
    root, port = tmp_path / "demo", free_port()
    proc = start_demo(root, port)
    try:
        wait_until(lambda: len(bays(port)) == 8, 180, "demo web UI")
        # Cameras sit in bays 1, 2, 3 and 5 holding real recordings; bay 8 holds an unregistered one.
        wait_until(
            lambda: [b["state"] for b in bays(port) if b["number"] in (1, 2, 3, 5)] == ["ready"] * 4,
            120,
            "demo cameras offloaded",
        )
        board = {b["number"]: b for b in bays(port)}
        assert board[8]["state"] == "unauthorised"
        assert board[4]["state"] == "empty"
        assert sum(b["progress"]["files_total"] for b in board.values() if b["progress"]) == 4 + 3 + 5 + 2
        # The README's demo accounts sign in; its cards and PINs check a camera out (the demo profile fits
        # 128 MiB cameras).
        web = f"http://127.0.0.1:{port}"
        for username, _, password, police_no in DEMO_ACCOUNTS:
            with signed_in(web, username, password) as staff:
                me = staff.get("/api/auth/me").json()
                assert (me["username"], me["police_nos"]) == (username, [police_no] if police_no else [])
        # Equipment staff record under their linked police number (the station takes it from the session).
        with signed_in(web, "equipment", "demo-equipment-pass") as staff:
            entry = {"target": "camera", "target_id": "ZFY0006", "kind": "inspection", "what": "demo"}
            made = staff.post("/api/maintenance/entries", json=entry)
            assert made.status_code == 200 and made.json()["by"] == EQUIPMENT_OFFICER, made.text
        with signed_in(web, "admin", "demo-admin-pass") as admin:
            assert "执法记录仪采集站" in admin.get("/").text
        with web_client(web) as kiosk:
            first = kiosk.post("/api/checkout/identify", json={"card": demo_card("110001")}).json()["ticket"]
            wait_until(lambda: len(kiosk.get("/api/checkout/proposal").json()["candidates"]) == 4, 120, "ready cameras")
            second = kiosk.post("/api/checkout/identify", json={"police_no": "110002", "pin": demo_pin("110002")})
            taken = kiosk.post("/api/checkout", json={"tickets": [first, second.json()["ticket"]]})
            assert taken.status_code == 200, taken.text
            assert taken.json()["camera"] == "ZFY0004"  # bay 5, the best charged (95 %, the gate asks 80 %)
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert "station stopped" in out
    assert "demo-admin-pass" in out  # `make demo` prints the demo accounts
    assert (root / "data" / "keys" / "station-signing.pem").stat().st_mode & 0o777 == 0o600
    config_before = (root / "station.toml").read_bytes()

    # Second run: same state, nothing copied again.
    started = time.monotonic()
    proc = start_demo(root, port)
    try:
        wait_until(lambda: len([b for b in bays(port) if b["state"] == "ready"]) == 4, 60, "demo restart")
        board = bays(port)
        assert all(b["progress"]["skipped"] == b["progress"]["files_total"] for b in board if b["progress"]), [
            (b["number"], b["progress"], b["message"]) for b in board
        ]
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert "reusing the demo station" in out
    assert (root / "station.toml").read_bytes() == config_before
    assert time.monotonic() - started < 60
