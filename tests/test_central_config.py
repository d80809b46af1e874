"""Config of the central store: S3 section demanded for kind s3, paths anchored, secrets only in a 0600 file."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from appliance.central.s3 import S3StoreError, load_credentials
from appliance.config import ConfigError, load_config


def write(tmp_path: Path, central: dict) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(tomli_w.dumps({"central": central}))
    return path


def test_kind_s3_needs_its_section_and_anchors_the_credentials_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"central: Value error, central.kind = \"s3\" needs a \[central.s3\]"):
        load_config(write(tmp_path, {"kind": "s3"}), environ={})
    s3 = {"endpoint": "http://127.0.0.1:7480", "bucket": "evidence", "credentials_file": "creds.toml"}
    config = load_config(write(tmp_path, {"kind": "s3", "s3": s3}), environ={})
    assert config.central.s3 is not None and config.central.s3.credentials_file == tmp_path / "creds.toml"
    with pytest.raises(ConfigError, match=r"central\.s3\.secret_key: unknown key"):
        load_config(write(tmp_path, {"kind": "s3", "s3": {**s3, "secret_key": "x"}}), environ={})
    with pytest.raises(ConfigError, match="not a time of day"):
        load_config(write(tmp_path, {"night_window": "01:00-25:00"}), environ={})


def test_credentials_file_must_be_private(tmp_path: Path) -> None:
    creds = tmp_path / "creds.toml"
    creds.write_text('access_key = "AK"\nsecret_key = "SK"\n')
    creds.chmod(0o644)
    with pytest.raises(S3StoreError, match="chmod 600"):
        load_credentials(creds)
    creds.chmod(0o600)
    assert load_credentials(creds) == ("AK", "SK")
    creds.write_text('access_key = "AK"\n')
    with pytest.raises(S3StoreError, match="missing secret_key"):
        load_credentials(creds)


def test_station_refuses_to_start_without_its_s3_credentials(tmp_path: Path, world) -> None:
    from appliance.station import Station, StationError
    from tests.conftest import write_config

    central = {
        "kind": "s3",
        "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "evidence", "credentials_file": "missing.toml"},
    }
    config = load_config(write_config(tmp_path, world, central=central), environ={})
    with pytest.raises(StationError, match=r"missing\.toml: S3 credentials file not found"):
        Station(config)
