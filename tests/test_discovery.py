"""Zeroconf advertisement and discovery in an isolated network namespace (`unshare -n`): loopback with
multicast on is the only network, so nothing leaks to or from the host's LAN."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import __version__
from appliance.config import load_config
from provisioning.keys import fingerprint, load_signing_key

ROOT = Path(__file__).resolve().parents[1]


def test_station_and_central_found_in_a_network_namespace(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip to make a network namespace")
    run = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.netns_zeroconf", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    result, running = (json.loads(line) for line in run.stdout.strip().splitlines()[-2:])
    assert result["before"][0] == 1 and "no single central endpoint" in result["before"][1]  # nothing yet
    found = {r["kind"]: r for r in result["listing"]}
    assert found.keys() == {"station", "central"}, result
    station = found["station"]
    assert station["txt"] == {
        "id": "st-ns-01",
        "version": __version__,
        "scheme": "https",
        "path": "/",
        "key": "SHA256:abc",
    }
    assert station["url"] == "https://127.0.0.1:8443/" and station["addresses"] == ["127.0.0.1"]
    assert result["central"][:2] == [0, "https://127.0.0.1:9443/api/v1/"]

    # A running station advertises itself: its id, version and signing key fingerprint, on its web port.
    (advertised,) = running["running_station"]
    assert advertised["kind"] == "station" and advertised["txt"]["id"] == "test-station"
    assert advertised["txt"]["version"] == __version__ and advertised["txt"]["key"].startswith("SHA256:")
    config = load_config(tmp_path / "station.toml")
    assert advertised["txt"]["key"] == fingerprint(load_signing_key(config.keys_dir).public_key())
    assert advertised["url"] == f"http://127.0.0.1:{config.web.port}/"  # this one serves no TLS: it says so
