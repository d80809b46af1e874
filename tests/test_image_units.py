"""The image's systemd units, scripts and udev rules: `systemd-analyze verify` on every unit, `shellcheck`
on every shell script, and the udev rules generated from a bay map.

systemd-analyze runs with --root on a staging tree holding the units, systemd's own units and the
station's real console scripts (from this venv) where the image installs them, so it checks what the
image ships. The image build (image/build.sh) runs the same verify inside the built root, where every
program exists."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import StationConfig, load_config
from devices.hotplug.udev_rules import render_rules
from devices.volumes import fd_mount
from devices.volumes.helper import DEFAULT_MOUNT_ROOT

IMAGE = Path(__file__).resolve().parent.parent / "image"
ROOTFS = IMAGE / "rootfs"
UNIT_DIR = ROOTFS / "etc" / "systemd" / "system"
UNITS = sorted(p.name for p in UNIT_DIR.iterdir() if p.suffix in (".service", ".socket", ".timer"))
# Programs the units start that come from Debian packages in the image, not from the project.
DEBIAN_PROGRAMS = {"recterm-kiosk.service": "/usr/bin/cage"}
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def _shell_scripts() -> list[Path]:
    scripts = []
    for path in sorted(IMAGE.rglob("*")):
        if path.is_file() and path.read_bytes()[:2] == b"#!" and b"sh" in path.read_bytes().split(b"\n", 1)[0]:
            scripts.append(path)
    return scripts


@pytest.fixture(scope="module")
def staging_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir():
        pytest.skip("systemd-analyze (package systemd) is not installed")
    root = tmp_path_factory.mktemp("image-root")
    shutil.copytree(ROOTFS, root, dirs_exist_ok=True, symlinks=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    bin_dir = root / "opt/recterm/bin"
    bin_dir.mkdir(parents=True)
    for script in ("recterm", "recterm-mount-helper", "recterm-udev-rules", "recterm-update"):
        shutil.copy2(Path(sys.executable).with_name(script), bin_dir / script)
    for program in DEBIAN_PROGRAMS.values():
        if Path(program).exists():
            (root / program.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(program, root / program.lstrip("/"))
    return root


def _verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", f"etc/systemd/system/{unit}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify(staging_root: Path, unit: str) -> None:
    program = DEBIAN_PROGRAMS.get(unit)
    if program and not (staging_root / program.lstrip("/")).exists():
        pytest.skip(f"{program} (a Debian package of the image) is not installed here; build.sh verifies it")
    proc = _verify(staging_root, unit)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_verify_catches_a_broken_unit(staging_root: Path) -> None:
    broken = staging_root / "etc/systemd/system/recterm-broken.service"
    broken.write_text((UNIT_DIR / "recterm.service").read_text().replace("Type=notify", "Type=notifyy"))
    try:
        proc = _verify(staging_root, broken.name)
    finally:
        broken.unlink()
    assert "notifyy" in proc.stderr


def test_station_unit_is_hardened() -> None:
    unit = (UNIT_DIR / "recterm.service").read_text().splitlines()
    settings = [line.split("=", 1) for line in unit if "=" in line and not line.startswith("#")]
    values = {k: v for k, v in settings}
    assert values["User"] == "recterm" and values["Type"] == "notify" and values["Restart"] == "always"
    assert values["ProtectSystem"] == "strict" and values["ProtectHome"] == "yes" and values["PrivateTmp"] == "yes"
    assert values["NoNewPrivileges"] == "yes" and values["CapabilityBoundingSet"] == ""
    assert values["ReadWritePaths"] == "/var/lib/recterm" and int(values["WatchdogSec"]) > 0
    assert values["DevicePolicy"] == "closed"


def test_tmpfiles_make_a_mount_root_the_mount_helper_trusts(tmp_path: Path) -> None:
    """systemd-tmpfiles makes the image's mount root at boot: root's, 0755 all the way down, which the helper's
    own checks accept; and the station looks there by default when it mounts through the helper."""
    if shutil.which("systemd-tmpfiles") is None or os.geteuid() != 0:
        pytest.skip("needs systemd-tmpfiles (package systemd) and root (files owned by root)")
    conf = ROOTFS / "usr/lib/tmpfiles.d/recterm.conf"
    proc = subprocess.run(
        ["systemd-tmpfiles", "--create", f"--root={tmp_path}", str(conf)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    made = tmp_path / DEFAULT_MOUNT_ROOT.relative_to("/")
    assert (made.stat().st_uid, stat.S_IMODE(made.stat().st_mode)) == (0, 0o755)
    os.close(fd_mount.open_trusted_dir(made))  # UnsafePath if anyone but root could change it
    assert StationConfig.model_validate({"devices": {"storage": "helper"}}).mount_root == DEFAULT_MOUNT_ROOT
    station_unit = (UNIT_DIR / "recterm.service").read_text()
    assert "MountFlags=shared" in station_unit and str(DEFAULT_MOUNT_ROOT) in station_unit


def test_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (make deps installs it)")
    scripts = _shell_scripts()
    assert len(scripts) >= 3
    proc = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_udev_rules_name_only_the_bays(tmp_path: Path) -> None:
    text = (ROOTFS / "usr/share/recterm/station.toml").read_text().replace('"1-1.4"', '"1-1.4.1"')
    for bay in (1, 2, 3, 4):
        text = text.replace(f"number = {bay}\n", f"number = {bay}\ndock_channel = {bay}\n")
    board = '[devices.dock_board]\nbackend = "real"\nurl = "/dev/recterm/dock-board"\nport_path = "1-1.4.7"\n'
    config_file = tmp_path / "station.toml"
    config_file.write_text(text + "\n" + board)
    rules = render_rules(load_config(config_file))
    group_lines = [line for line in rules.splitlines() if 'GROUP="recterm"' in line]
    # Four bays x (disk, partition, sg, control) + the dock board; every one pinned to one port.
    assert len(group_lines) == 17
    assert all('SUBSYSTEMS=="usb", KERNELS=="' in line for line in group_lines)
    assert 'KERNELS=="1-1.3", SYMLINK+="recterm/bay3-part%n"' in rules
    assert 'KERNELS=="1-1.4.1", SYMLINK+="recterm/bay4-disk"' in rules
    assert 'KERNELS=="1-1.4.7", SYMLINK+="recterm/dock-board"' in rules


def _lowvoltage(tmp_path: Path, throttled: str, run_for: float) -> tuple[subprocess.CompletedProcess[str], Path]:
    flag, marker = tmp_path / "get_throttled", tmp_path / "powered-off"
    flag.write_text(throttled + "\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "RECTERM_THROTTLED_FILE": str(flag),
        "RECTERM_LOWVOLTAGE_INTERVAL_S": "1",
        "RECTERM_LOWVOLTAGE_HOLD_S": "2",
        "RECTERM_POWEROFF": f"touch {marker}",
    }
    script = ROOTFS / "usr/libexec/recterm/lowvoltage-watch"
    proc = subprocess.run(["timeout", str(run_for), str(script)], env=env, capture_output=True, text=True)
    return proc, marker


def test_sustained_under_voltage_powers_off_cleanly(tmp_path: Path) -> None:
    proc, marker = _lowvoltage(tmp_path, "50005", run_for=60)
    assert proc.returncode == 0 and marker.exists()
    assert "under-voltage (get_throttled=0x50005)" in proc.stdout and "powering off cleanly" in proc.stdout


def test_no_power_off_while_the_supply_is_good(tmp_path: Path) -> None:
    proc, marker = _lowvoltage(tmp_path, "50000", run_for=4)  # "has occurred" bits only: not now
    assert proc.returncode == 124 and not marker.exists()  # still watching when timeout stopped it


def test_arm64_lock_pins_every_runtime_dependency() -> None:
    """image/build.sh installs offline from exactly the locked wheels: a dependency added to pyproject.toml
    but not re-locked (image/lock-deps.sh) would fail the image build half an hour in."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((IMAGE.parent / "pyproject.toml").read_text())["project"]
    pinned = {}
    for line in (IMAGE / "requirements-arm64.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[canonicalize_name(name)] = version
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in image/requirements-arm64.lock"
        assert requirement.specifier.contains(pinned[name]), f"locked {name}=={pinned[name]} does not satisfy {spec}"


def test_device_classes_the_station_may_open_have_their_drivers_loaded_at_boot() -> None:
    """systemd resolves DeviceAllow=char-NAME/block-NAME through /proc/devices when the service starts; a
    class whose module is not loaded yet is dropped and the first camera's port is refused (EPERM, found by
    make image-test). Every modular class in the unit must be in modules-load.d (gpiochip, input: built in)."""
    provides = {"sd": "sd_mod", "sg": "sg", "ttyACM": "cdc_acm", "ttyUSB": "usbserial"}
    unit = (UNIT_DIR / "recterm.service").read_text()
    classes = {
        line.split("=", 1)[1].split()[0].split("-", 1)[1]
        for line in unit.splitlines()
        if line.startswith("DeviceAllow=")
    }
    conf = (ROOTFS / "etc/modules-load.d/recterm.conf").read_text().splitlines()
    loaded = {line.strip() for line in conf if line.strip() and not line.startswith("#")}
    assert classes - {"gpiochip", "input"} == set(provides)
    assert {provides[c] for c in provides} <= loaded
