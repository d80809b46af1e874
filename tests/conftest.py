"""Shared fixtures: a simulated world with real filesystem images, a running simulator, a station config."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from appliance import inventory
from appliance.config import StationConfig, load_config
from appliance.state.db import StateDB
from appliance.station import Lifecycle, Station
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from provisioning.keys import create_signing_key

pytest_plugins = ["tests.rgw"]  # the session-wide Ceph RGW S3 server

BAYS = 4


def port_for(bay: int) -> str:
    return f"1-1.{bay}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def wait_until(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def world(tmp_path: Path) -> SimWorld:
    world = SimWorld(tmp_path / "sim")
    world.init({n: port_for(n) for n in range(1, BAYS + 1)})
    return world


@pytest.fixture
def sim_server(world: SimWorld) -> Iterator[SimServer]:
    server = SimServer(world, charge_interval_s=0.5)
    server.start()
    yield server
    server.stop()


def write_config(tmp_path: Path, world: SimWorld, **overrides: object) -> Path:
    data: dict[str, object] = {
        "station": {"id": "test-station", "data_dir": str(tmp_path / "data")},
        "web": {"host": "127.0.0.1", "port": free_port()},
        "devices": {
            "backend": "simulated",
            "storage": "userspace",
            "sim_world": str(world.root),
            "poll_interval_s": 0.1,
        },
        "bays": [{"number": n, "port_path": port_for(n)} for n in range(1, BAYS + 1)],
        "offload": {"parallel": 4, "reserve_gib": 0},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value  # type: ignore[dict-item]
    path = tmp_path / "station.toml"
    path.write_text(tomli_w.dumps(data))
    create_signing_key(load_config(path).keys_dir)  # provisioning makes it on a real station
    return path


@pytest.fixture
def config(tmp_path: Path, world: SimWorld) -> StationConfig:
    return load_config(write_config(tmp_path, world))


def register_cameras(config: StationConfig, *serials: str, password: str = "000000", **fields: object) -> None:
    db = StateDB(config.state_dir / "state.json")
    try:
        db.call(lambda tdb: [inventory.upsert_camera(tdb, s, password=password, **fields) for s in serials])
    finally:
        db.close()


# Check-out thresholds sized for the simulator's small camera images (tens of MiB, not tens of GiB).
TEST_CHECKOUT = {
    "min_battery_pct": 50,
    "min_free_gib": 0.01,
    "min_free_hours": 0.005,
    "max_clock_drift_s": 5,
    "return_within_hours": 12,
}


def write_test_profile(tmp_path: Path, name: str = "test-profile", **checkout: float) -> Path:
    """Profile 003 with the check-out thresholds of TEST_CHECKOUT (and ``checkout`` overrides)."""
    import tomllib
    from importlib import resources

    data = tomllib.loads((resources.files("appliance") / "policies" / "003.toml").read_text(encoding="utf-8"))
    for key, value in {**TEST_CHECKOUT, **checkout}.items():
        data["checkout"][key]["value"] = value
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def checkout_config(tmp_path: Path, world: SimWorld, **overrides: object) -> StationConfig:
    """A station config using the test profile; ``profile`` overrides thresholds, the rest the config."""
    profile = write_test_profile(tmp_path, **overrides.pop("profile", {}))  # type: ignore[arg-type]
    return load_config(write_config(tmp_path, world, policy={"profile_file": str(profile)}, **overrides))


def register_officers(config: StationConfig, *rows: dict[str, object]) -> None:
    """Officers with card ``CARD<police_no>`` and PIN = last four digits, unless a row says otherwise."""
    from appliance.pins import hash_pin

    db = StateDB(config.state_dir / "state.json")
    try:
        for row in rows:
            fields = {
                "name": f"警员{row['police_no']}",
                "unit_code": "330100000001",
                "unit_name": "执法大队",
                "card": f"CARD{row['police_no']}",
                "pin_hash": hash_pin(str(row["police_no"])[-4:]),
                **{k: v for k, v in row.items() if k != "police_no"},
            }
            db.call(lambda tdb, r=row, f=fields: inventory.upsert_officer(tdb, str(r["police_no"]), **f))
    finally:
        db.close()


STAFF_PASSWORD = "correct horse battery"  # every test account's password


class PageClient(httpx.Client):
    """An HTTP client that behaves as the station's pages do: it picks up the CSRF cookie (from its first
    response) and repeats it in the X-CSRF-Token header of every state-changing request."""

    def __init__(self, base_url: str, sign_in: tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(base_url=base_url, timeout=kwargs.pop("timeout", 30), **kwargs)
        self.event_hooks["request"] = [self._add_csrf]
        self._sign_in = sign_in

    def _add_csrf(self, request: httpx.Request) -> None:
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and "x-csrf-token" not in request.headers:
            token = self.cookies.get("recterm_csrf")
            if token:
                request.headers["X-CSRF-Token"] = token

    def __enter__(self) -> PageClient:
        super().__enter__()
        if "recterm_csrf" not in self.cookies:
            self.get("/api/health")  # the first response hands out the CSRF cookie
        if self._sign_in:
            username, password = self._sign_in
            response = self.post("/api/auth/signin", json={"username": username, "password": password})
            assert response.status_code == 200, response.text
        return self


def web_client(base_url: str, **kwargs: Any) -> PageClient:
    return PageClient(base_url, **kwargs)


def add_account(station: RunningStation, username: str, *roles: str, police_no: str | None = None) -> None:
    accounts = station.station.accounts
    station.call(accounts.create(username, STAFF_PASSWORD, list(roles), by="test", police_no=police_no))


def signed_in(base_url: str, username: str, password: str = STAFF_PASSWORD, **kwargs: Any) -> PageClient:
    """A client that signs in as ``username`` when entered (``with signed_in(...) as http``)."""
    return PageClient(base_url, sign_in=(username, password), **kwargs)


class RunningStation:
    """A station running on its own event loop in a background thread, as `recterm run` would."""

    def __init__(self, config: StationConfig, serve_web: bool) -> None:
        self.config = config
        self.station = Station(config)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(serve_web,), daemon=True)
        self._thread.start()
        wait_until(lambda: self._ready.is_set() or self.error is not None, 30, "station start")
        if self.error:
            raise self.error

    def _main(self, serve_web: bool) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.station.run(serve_web=serve_web, on_running=self._ready.set))
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.close()

    def bay(self, number: int) -> dict[str, object]:
        assert self.station.bays is not None
        return next(b for b in self.station.bays.snapshot() if b["number"] == number)

    def wait_bay(self, number: int, state: str, timeout: float = 60) -> dict[str, object]:
        wait_until(lambda: self.bay(number)["state"] == state, timeout, f"bay {number} to be {state}")
        return self.bay(number)

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the station's loop (where its services live) and wait for the result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.station.state is Lifecycle.RUNNING:
            self.loop.call_soon_threadsafe(self.station.request_stop)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "station did not stop"


@pytest.fixture
def start_station(config: StationConfig) -> Iterator[Callable[..., RunningStation]]:
    running: list[RunningStation] = []

    def start(serve_web: bool = False, cfg: StationConfig | None = None) -> RunningStation:
        station = RunningStation(cfg or config, serve_web)
        running.append(station)
        return station

    yield start
    for station in running:
        with contextlib.suppress(Exception):
            station.stop()
