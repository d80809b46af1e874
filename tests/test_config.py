"""The configuration: layered, validated, and refused with file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.config import ConfigError, load_config

GOOD = """
[station]
id = "st-01"
data_dir = "data"

[web]
port = 8088

[[bays]]
number = 1
port_path = "1-1.1"

[[bays]]
number = 2
port_path = "1-1.2"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


def test_defaults_then_file_then_environment(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config(path, environ={"RECTERM_WEB__PORT": "9001", "RECTERM_OFFLOAD__PARALLEL": "2"})
    assert config.station.id == "st-01"  # from the file
    assert config.web.port == 9001  # the environment wins over the file
    assert config.offload.parallel == 2
    assert config.offload.buffer_kib == 1024  # built-in default
    assert config.station.data_dir == (tmp_path / "data").resolve()  # relative to the file, not the cwd
    assert [b.port_path for b in config.bays] == ["1-1.1", "1-1.2"]


def test_unknown_key_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "\n[offload]\nparalel = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    message = str(err.value)
    assert str(path) in message
    assert "offload.paralel" in message
    assert "unknown key" in message


def test_wrong_type_is_refused_naming_file_key_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("port = 8088", 'port = "eighty"'))
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    message = str(err.value)
    assert f"{path}: web.port:" in message
    assert "integer" in message


def test_out_of_range_and_bad_environment_value_name_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={"RECTERM_WEB__PORT": "70000"})
    assert "environment variable RECTERM_WEB__PORT: web.port:" in str(err.value)


def test_duplicate_port_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('port_path = "1-1.2"', 'port_path = "1-1.1"'))
    with pytest.raises(ConfigError, match=r"1-1\.1 is mapped to more than one bay"):
        load_config(path, environ={})


def test_malformed_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[station\n"), environ={})
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml", environ={})


def test_simulated_backend_needs_a_world(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[devices]\nbackend = "simulated"\n')
    with pytest.raises(ConfigError, match="devices: Value error, a simulated back end needs sim_world"):
        load_config(path, environ={})


def test_config_show_prints_the_effective_config(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    lan = {"RECTERM_WEB__HOST": "0.0.0.0", "RECTERM_WEB__TLS": "true"}
    result = CliRunner().invoke(main, ["config", "show", "--config", str(path)], env=lan)
    assert result.exit_code == 0, result.output
    assert 'id = "st-01"' in result.output
    assert 'host = "0.0.0.0"' in result.output
    assert "port = 8088" in result.output
    assert 'profile = "003"' in result.output


def test_config_check_reports_errors_with_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[policy]\nprofile = "999"\n')
    result = CliRunner().invoke(main, ["config", "check", "--config", str(path)], env={})
    assert result.exit_code == 1
    assert "no such profile" in result.output
    ok = CliRunner().invoke(main, ["config", "check", "--config", str(write(tmp_path, GOOD))], env={})
    assert ok.exit_code == 0 and "policy 003" in ok.output


BOARD = '\n[devices.dock_board]\nbackend = "real"\nurl = "/dev/serial/by-path/board"\n'


def test_bay_map_needs_a_dock_channel_for_every_bay_when_a_board_is_configured(tmp_path: Path) -> None:
    text = GOOD.replace('port_path = "1-1.1"', 'port_path = "1-1.1"\ndock_channel = 1') + BOARD
    with pytest.raises(ConfigError, match="bay 2 has no dock_channel, but a dock board is configured"):
        load_config(write(tmp_path, text), environ={})


def test_bay_map_refuses_a_channel_used_twice(tmp_path: Path) -> None:
    text = GOOD.replace('port_path = "1-1.1"', 'port_path = "1-1.1"\ndock_channel = 3')
    text = text.replace('port_path = "1-1.2"', 'port_path = "1-1.2"\ndock_channel = 3') + BOARD
    with pytest.raises(ConfigError, match="dock board channel 3 is mapped to bays 1 and 2"):
        load_config(write(tmp_path, text), environ={})


def test_bay_map_needs_pins_when_gpio_is_enabled(tmp_path: Path) -> None:
    text = GOOD.replace(
        'port_path = "1-1.1"', 'port_path = "1-1.1"\ngpio = { red = 5, green = 6, blue = 13, latch = 19 }'
    )
    with pytest.raises(ConfigError, match="bay 2 has no gpio pins, but GPIO is enabled"):
        load_config(write(tmp_path, text + '\n[devices.gpio]\nbackend = "mock"\n'), environ={})


def test_a_board_on_real_hardware_needs_its_port(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"devices\.dock_board: Value error, backend = 'real' needs url"):
        load_config(write(tmp_path, GOOD + '\n[devices.dock_board]\nbackend = "real"\n'), environ={})


def test_a_lan_listener_needs_tls(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match=r"reachable from the LAN: set web\.tls = true"):
        load_config(path, environ={"RECTERM_WEB__HOST": "0.0.0.0"})
    assert load_config(path, environ={"RECTERM_WEB__HOST": "0.0.0.0", "RECTERM_WEB__TLS": "true"}).web.tls


def test_mount_root_follows_the_storage_back_end(tmp_path: Path) -> None:
    """Through the helper, camera storage is mounted in the helper's root-owned directory, which the station
    cannot change (docs/mount-helper.md); its own mounts go under the data directory; either can be set."""
    path = write(tmp_path, GOOD)
    assert load_config(path).mount_root == (tmp_path / "data/run/mnt").resolve()
    helper = load_config(path, environ={"RECTERM_DEVICES__STORAGE": "helper"})
    assert helper.mount_root == Path("/run/recterm/mnt")
    moved = load_config(
        path, environ={"RECTERM_DEVICES__STORAGE": "helper", "RECTERM_DEVICES__MOUNT_ROOT": "/run/other/mnt"}
    )
    assert moved.mount_root == Path("/run/other/mnt")


def test_the_log_checkpoint_policy_is_a_bounded_setting(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD + "\n[log]\ncheckpoint_every = 16\ncheckpoint_interval_s = 60\n"), {})
    assert (config.log.checkpoint_every, config.log.checkpoint_interval_s) == (16, 60.0)
    assert load_config(write(tmp_path, GOOD), {}).log.checkpoint_every == 256
    for bad in ("checkpoint_every = 0", "checkpoint_every = 100000", "checkpoint_interval_s = 0.5"):
        with pytest.raises(ConfigError, match=r"log\.checkpoint_"):
            load_config(write(tmp_path, GOOD + f"\n[log]\n{bad}\n"), {})
