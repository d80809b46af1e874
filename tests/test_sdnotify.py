"""sd_notify: `recterm run` tells systemd READY once its health endpoint answers, pings the watchdog, and
says STOPPING on SIGTERM, over a real AF_UNIX datagram socket as systemd provides it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from appliance.sdnotify import notify, watchdog_interval
from tests.conftest import write_config


def _receive_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if any(wanted in message for message in got):
            return got
    raise AssertionError(f"no {wanted!r} within {timeout:g} s; got {got}")


def test_recterm_run_notifies_ready_watchdog_and_stopping(tmp_path: Path, world) -> None:
    path = write_config(tmp_path, world)
    port = int(path.read_text().split("port = ")[1].split()[0])
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECTERM_")}
        env.update(NOTIFY_SOCKET=str(address), WATCHDOG_USEC="400000")  # a ping every 0.2 s
        recterm = Path(sys.executable).with_name("recterm")
        proc = subprocess.Popen([str(recterm), "run", "--config", str(path)], env=env, stderr=subprocess.PIPE)
        try:
            messages = _receive_until(sock, "READY=1", 60)
            # READY is sent only once the web server answers.
            health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json()
            assert health["state"] == "running"
            pings = [m for m in _receive_until(sock, "WATCHDOG=1", 5) if m == "WATCHDOG=1"]
            pings += [m for m in _receive_until(sock, "WATCHDOG=1", 5) if m == "WATCHDOG=1"]
            assert len(pings) >= 2
        finally:
            proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in _receive_until(sock, "STOPPING=1", 30)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert any(m.startswith("READY=1\nSTATUS=station test-station") for m in messages)


def test_notify_is_a_no_op_outside_systemd() -> None:
    assert notify("READY=1", environ={}) is False
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_watchdog_interval_is_half_of_watchdog_sec_and_only_for_our_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"recterm-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert notify("STATUS=hello", environ={"NOTIFY_SOCKET": "@" + name})
        sock.settimeout(5)
        assert sock.recv(100) == b"STATUS=hello"
