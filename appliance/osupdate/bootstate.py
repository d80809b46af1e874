"""Which root slot boots: the primary (known good) one, or a freshly written one on trial.

The state lives on the FAT boot partition as ``recterm-boot.json``::

    {"primary": "A", "trial": "B" | null, "tries_left": 1}

- ``install`` sets trial to the slot it just wrote (only after the write was read back and matched).
- ``select_boot`` is the boot loader's decision: boot the trial slot while it has tries left (and spend
  one), otherwise drop the trial and boot the primary. A trial that hangs or fails its health check is
  rebooted (watchdog, FailureAction=reboot) and so falls back by itself.
- ``mark_good`` runs in the booted trial slot once the station's health check passed: it becomes primary.

On a Raspberry Pi the firmware makes the same decision with its one-shot ``tryboot`` flag: the files
``slot.txt`` (included by config.txt) and ``tryboot.txt`` select each slot's boot folder by ``os_prefix``;
``select_boot`` is what `make image-test` uses in place of the firmware.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from appliance.state.atomic import atomic_write_bytes, atomic_write_json, read_json

SLOTS = ("A", "B")
STATE_FILE = "recterm-boot.json"


class BootStateError(Exception):
    pass


@dataclass(frozen=True)
class BootState:
    primary: str = "A"
    trial: str | None = None
    tries_left: int = 0

    def __post_init__(self) -> None:
        if self.primary not in SLOTS or self.trial not in (*SLOTS, None) or self.trial == self.primary:
            raise BootStateError(f"invalid boot state {self}")


def other(slot: str) -> str:
    return "B" if slot == "A" else "A"


def load(boot_dir: Path) -> BootState:
    raw = read_json(Path(boot_dir) / STATE_FILE, default={})
    try:
        return BootState(**raw)
    except TypeError as exc:
        raise BootStateError(f"{boot_dir / STATE_FILE}: {exc}") from None


def save(boot_dir: Path, state: BootState) -> None:
    """State file plus the Pi firmware's view of it, each replaced atomically."""
    boot_dir = Path(boot_dir)
    atomic_write_bytes(boot_dir / "slot.txt", f"os_prefix=slot-{state.primary}/\n".encode(), mode=0o644)
    if state.trial is not None:
        tryboot = f"include config.txt\nos_prefix=slot-{state.trial}/\n"
        atomic_write_bytes(boot_dir / "tryboot.txt", tryboot.encode(), mode=0o644)
    else:
        (boot_dir / "tryboot.txt").unlink(missing_ok=True)
    atomic_write_json(boot_dir / STATE_FILE, asdict(state), mode=0o644)


def select_boot(boot_dir: Path) -> str:
    """The boot loader's choice for this boot (spends one try of a trial)."""
    state = load(boot_dir)
    if state.trial is not None and state.tries_left > 0:
        save(boot_dir, replace(state, tries_left=state.tries_left - 1))
        return state.trial
    if state.trial is not None:
        save(boot_dir, BootState(primary=state.primary))
    return state.primary


def mark_good(boot_dir: Path, booted: str) -> BootState:
    """The booted slot passed its health check: keep it. A no-op when it already is the primary."""
    state = load(boot_dir)
    if booted == state.primary:
        return state
    if booted != state.trial:
        raise BootStateError(f"booted slot {booted} is neither primary ({state.primary}) nor on trial")
    new = BootState(primary=booted)
    save(boot_dir, new)
    return new


def booted_slot(cmdline: str) -> str:
    """The slot the kernel was told to mount as root (root=PARTLABEL=rootA / rootB)."""
    for word in cmdline.split():
        if word.startswith("root=") and word[-5:-1] == "root" and word[-1] in SLOTS:
            return word[-1]
    raise BootStateError(f"cannot tell the booted slot from the kernel command line: {cmdline.strip()!r}")
