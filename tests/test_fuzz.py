"""schemathesis fuzzing of the OpenAPI schema against a running station (real HTTP, signed in with every role
so the guards let the generated requests reach the handlers): no 5xx, and no response that leaks a stack
trace or a Python exception."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from appliance.config import load_config
from devices.sim.world import SimWorld
from tests.conftest import STAFF_PASSWORD, RunningStation, add_account, register_cameras, wait_until, write_config

EXAMPLES = 30  # per operation
LEAKS = ("Traceback (most recent call last)", 'File "/', "Exception:", "Error:", "site-packages")


@pytest.fixture(scope="module")
def station_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    world = SimWorld(root / "sim")
    world.init({n: f"1-1.{n}" for n in range(1, 5)})
    config = load_config(write_config(root, world))
    register_cameras(config, "CAMFUZ1")
    station = RunningStation(config, serve_web=True)
    # One account holding every role: the fuzzer gets past each guard to the handler behind it.
    add_account(station, "fuzzer", "admin", "supervisor", "equipment", "officer", police_no="110001")
    url = f"http://127.0.0.1:{config.web.port}"

    def answers() -> bool:
        try:
            return requests.get(url + "/api/health", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(answers, 30, "web server")
    yield url
    station.stop()


@pytest.fixture(scope="module")
def signed_in_session(station_url: str) -> Iterator[requests.Session]:
    session = requests.Session()
    session.get(station_url + "/api/health", timeout=10)
    session.headers["X-CSRF-Token"] = session.cookies["recterm_csrf"]
    answer = session.post(station_url + "/api/auth/signin", json={"username": "fuzzer", "password": STAFF_PASSWORD})
    assert answer.ok, answer.text
    session.headers["X-CSRF-Token"] = session.cookies["recterm_csrf"]  # the session's own token
    yield session
    session.close()


# Left out: the event stream never ends by design; signing out would end the fuzzer's own session.
SKIP = {"/api/events/stream", "/api/auth/signout"}


def test_no_server_errors_and_no_leaks(station_url: str, signed_in_session: requests.Session) -> None:
    schema = schemathesis.openapi.from_url(station_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed, statuses = 0, Counter[int]()
    for operation in operations:
        if operation.path in SKIP:
            continue

        # Valid requests and invalid ones (wrong types, missing fields, junk) alike.
        cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        @given(case=cases)
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=station_url, session=signed_in_session, timeout=30)
            statuses[response.status_code] += 1
            where = (case.method, case.formatted_path)
            assert response.status_code < 500, (*where, response.status_code, response.text[:500])
            # Binary answers (export ZIPs, report PDFs, attachment images) carry no error text to leak.
            kind = " ".join(response.headers.get("content-type", []))  # schemathesis: header -> list of values
            body = response.text if kind.startswith("text/") or "json" in kind else ""
            leaked = [marker for marker in LEAKS if marker in body]
            assert not leaked, (*where, leaked, body[:500])

        fuzz()
        fuzzed += 1
    assert fuzzed >= 30  # every operation of the schema but the two left out
    # The fuzzer reached the handlers (not only the guards): answers of every kind came back.
    assert statuses[200] > 100 and statuses[422] > 50 and statuses[401] < sum(statuses.values()) / 4, statuses
    print(f"fuzzed {fuzzed} operations, {sum(statuses.values())} requests: {dict(sorted(statuses.items()))}")
