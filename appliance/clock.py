"""What the station knows about its own clock, recorded with every ingest (a power cut can set it back)."""

from __future__ import annotations

from devices import paths


def clock_synced() -> bool | None:
    """True when systemd-timesyncd has synchronised the clock since boot; None where it does not run."""
    if paths.run("systemd", "timesync", "synchronized").exists():
        return True
    if paths.run("systemd", "timesync").is_dir():
        return False
    return None
