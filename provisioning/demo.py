"""Provision the demo station: a simulated world with 8 bays, a dozen officers, cameras holding real
recordings, a signing key made on the spot, and a config that ties it together. Idempotent: an existing
demo is reused as it is."""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import tomli_w
from tinydb import TinyDB

from appliance import inventory
from appliance.config import load_config
from appliance.pins import hash_pin
from appliance.security.accounts import add_account
from appliance.security.scrypt import hash_secret
from appliance.state.db import StateDB
from devices.sim.world import SimWorld
from provisioning.keys import create_signing_key, fingerprint

log = logging.getLogger(__name__)

BAYS = 8
OFFICERS = [
    ("110001", "张伟"),
    ("110002", "王芳"),
    ("110003", "李娜"),
    ("110004", "刘洋"),
    ("110005", "陈静"),
    ("110006", "杨磊"),
    ("110007", "赵敏"),
    ("110008", "黄勇"),
    ("110009", "周杰"),
    ("110010", "吴婷"),
    ("110011", "徐强"),
    ("110012", "孙丽"),
]
UNIT = ("330100000001", "综合行政执法大队")
EQUIPMENT_OFFICER = "110012"  # the demo's equipment staff member
SUPERVISOR_OFFICER = "110011"  # the demo's supervisor (spot checks are recorded in this number)
# (serial, filesystem, clips, bay or None, battery %)
CAMERAS = [
    ("ZFY0001", "exfat", 4, 1, 35),
    ("ZFY0002", "vfat", 3, 2, 60),
    ("ZFY0003", "exfat", 5, 3, 80),
    ("ZFY0004", "vfat", 2, 5, 95),
    ("ZFY0005", "exfat", 0, None, 100),
    ("ZFY0006", "vfat", 0, None, 100),
]
UNREGISTERED = ("ZFYX999", "vfat", 1, 8, 50)


# The demo's staff accounts (README lists them; `make demo` prints them). Demo only: a real station has no
# account until `recterm provision` registers its first administrator. Staff who record maintenance or spot
# checks are linked to their police number: the station records them under it (docs/maintenance.md).
DEMO_ACCOUNTS = [
    ("admin", ["admin"], "demo-admin-pass", None),
    ("equipment", ["equipment"], "demo-equipment-pass", EQUIPMENT_OFFICER),
    ("supervisor", ["supervisor"], "demo-supervisor-pass", SUPERVISOR_OFFICER),
    ("auditor", ["auditor"], "demo-auditor-pass", None),
    ("officer110001", ["officer"], "demo-officer-pass", "110001"),
]


def demo_card(police_no: str) -> str:
    """The demo's badge card ids (README lists them): CARD plus the police number."""
    return f"CARD{police_no}"


def demo_pin(police_no: str) -> str:
    """The demo's PINs (README lists them): the last four digits of the police number."""
    return police_no[-4:]


DEMO_PROFILE = "demo-policy.toml"
# The simulated cameras hold 128 MiB, not the tens of GiB of real ones: profile 003 with storage minimums
# a demo camera can meet, so check-out can be tried. Everything else is 003 as shipped.
DEMO_STORAGE = {"min_free_gib": 0.05, "min_free_hours": 0.02}


def write_demo_profile(path: Path) -> None:
    text = (resources.files("appliance") / "policies" / "003.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    data["id"] = "003-demo"
    for key, value in DEMO_STORAGE.items():
        data["checkout"][key]["value"] = value
        data["checkout"][key]["note"] = "Demo only: sized for the simulator's 128 MiB cameras. " + data["checkout"][
            key
        ].get("note", "")
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


def port_for(bay: int) -> str:
    # The demo's dock wiring: bay n hangs on port n of the hub on root port 1.
    return f"1-1.{bay}"


def print_demo_accounts(echo: Callable[[str], None]) -> None:
    echo("demo staff accounts (sign in at /login; the kiosk at /kiosk needs none):")
    for username, roles, password, police_no in DEMO_ACCOUNTS:
        linked = f", police number {police_no}" if police_no else ""
        echo(f"  {username:14} {password:22} {', '.join(roles)}{linked}")


def provision_demo(root: Path, web_port: int = 8080) -> Path:
    """Create (or reuse) the demo under ``root``; return the config path."""
    root = root.resolve()
    config_path = root / "station.toml"
    if config_path.exists():
        log.info("reusing the demo station in %s", root)
        return config_path
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "station": {"id": "demo-station-01", "name": "演示采集站", "data_dir": "data"},
        "web": {"host": "127.0.0.1", "port": web_port},
        "devices": {
            "backend": "simulated",
            "storage": "userspace",
            "sim_world": "sim",
            "dock_board": {"backend": "simulated"},
            "badge": {"backend": "simulated"},
        },
        "bays": [
            {"number": n, "port_path": port_for(n), "label": f"{n}", "dock_channel": n} for n in range(1, BAYS + 1)
        ],
        "offload": {"parallel": 4, "reserve_gib": 0.5},
        "central": {"kind": "archive", "archive_dir": "central-archive"},
        "policy": {"profile": "003", "profile_file": DEMO_PROFILE},
    }
    write_demo_profile(root / DEMO_PROFILE)
    staging = root / "station.toml.new"
    staging.write_text(tomli_w.dumps(config), encoding="utf-8")
    loaded = load_config(staging)

    public = create_signing_key(loaded.keys_dir)
    log.info("station signing key %s", fingerprint(public))

    world = SimWorld(root / "sim")
    world.init({n: port_for(n) for n in range(1, BAYS + 1)})
    for serial, fs_type, clips, bay, battery in [*CAMERAS, UNREGISTERED]:
        if serial not in world.cameras():
            log.info("making simulated camera %s (%s, %d recordings)", serial, fs_type, clips)
            world.create_camera(serial, fs_type=fs_type, size_mib=128, clips=clips, battery_pct=battery)
        if bay is not None and bay not in world.docked():
            world.set_docked(bay, serial)

    db = StateDB(loaded.state_dir / "state.json")
    try:

        def seed(tdb: TinyDB) -> None:
            for serial, *_ in CAMERAS:
                inventory.upsert_camera(tdb, serial, model="DSJ-S1", vendor="SIMCAM", driver="serial")
            for police_no, name in OFFICERS:
                inventory.upsert_officer(
                    tdb,
                    police_no,
                    name=name,
                    unit_code=UNIT[0],
                    unit_name=UNIT[1],
                    card=demo_card(police_no),
                    role="equipment" if police_no == EQUIPMENT_OFFICER else "officer",
                    pin_hash=hash_pin(demo_pin(police_no)),
                )
            for username, roles, password, police_no in DEMO_ACCOUNTS:
                row = {"username": username, "roles": roles, "police_no": police_no}
                add_account(tdb, row | {"password_hash": hash_secret(password)})

        db.call(seed)
    finally:
        db.close()
    staging.rename(config_path)  # last step: a half-made demo is redone next time, not reused
    return config_path
