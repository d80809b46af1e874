"""What a records office needs to check a station's checkpoints with any C2SP signed-note implementation.

For every signing key the station has used (its key history, then the current key): the signed-note verifier
key (``<name>+<hex key id>+<base64(0x01 ‖ public key)>``, as golang.org/x/mod/sumdb/note reads it), the
fingerprint (``SHA256:<hex>``, as manifests, the rotation links and the zeroconf TXT record name it) and the
log entries the key signed for; with the log's origin line. `recterm keys show` and ``GET /api/keys/signing``
hand this out; how it is used: docs/event-log.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.evidence.checkpoint import CheckpointError
from appliance.evidence.keychain import (
    CURRENT_PUB,
    HISTORY_FILE,
    KeyChain,
    KeyHistoryError,
    fingerprint,
    load_public_pem,
    read_history,
)
from appliance.evidence.note import SIG_PREFIX, NoteError, verifier_key


class NoSignedCheckpoint(ValueError):
    """A data directory whose log has no checkpoint to learn the key name and origin from."""


@dataclass(frozen=True)
class KeyRecord:
    fingerprint: str
    verifier_key: str
    first_entry: int  # the first log entry this key signed for
    last_entry: int | None  # the last one; None for the key in use now
    retired_at: str | None


@dataclass(frozen=True)
class StationKeys:
    name: str  # the key name in every signature line (the station id)
    origin: str  # the first line of every checkpoint
    keys: tuple[KeyRecord, ...]  # oldest first; the last is the key in use now

    @property
    def current(self) -> KeyRecord:
        return self.keys[-1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "verifier_key": self.current.verifier_key,
            "fingerprint": self.current.fingerprint,
            "keys": [asdict(k) for k in self.keys],
        }

    def to_text(self) -> str:
        lines = [f"log origin    {self.origin}", f"key name      {self.name}", ""]
        for record in reversed(self.keys):
            if record.last_entry is None:
                lines.append(f"current key, log entries {record.first_entry} on")
            else:
                span = f"log entries {record.first_entry}..{record.last_entry}"
                lines.append(f"retired key, {span}, retired {record.retired_at}")
            lines += [f"  verifier key  {record.verifier_key}", f"  fingerprint   {record.fingerprint}"]
        return "\n".join(lines) + "\n"


def station_keys(keys_dir: Path, name: str, origin: str) -> StationKeys:
    """The keys of ``keys_dir`` (its current public key and signing-history.json) under the note name ``name``.

    Raises OSError when the current key is missing and KeyHistoryError when the history does not lead to it
    (each rotation link must name the key before it and the key after it)."""
    path = keys_dir / CURRENT_PUB
    try:
        current = load_public_pem(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"no station public key {path}: not the keys of a provisioned station") from None
    retired = read_history(keys_dir)
    records, first = [], 0
    fingerprints = [fingerprint(r.public) for r in retired] + [fingerprint(current)]
    for number, key in enumerate(retired):
        old, new = key.link.get("old"), key.link.get("new")
        if (old, new) != (fingerprints[number], fingerprints[number + 1]):
            raise KeyHistoryError(
                f"{keys_dir / HISTORY_FILE}: retired key {number} is linked from {old} to {new}, not from "
                f"{fingerprints[number]} to {fingerprints[number + 1]} (a rotation under way? try again)"
            )
        size = key.link.get("log_size")
        if not isinstance(size, int) or size < first:
            raise KeyHistoryError(f"{keys_dir / HISTORY_FILE}: retired key {number} has no valid log size")
        records.append(KeyRecord(fingerprints[number], verifier_key(name, key.public), first, size - 1, key.retired_at))
        first = size
    records.append(KeyRecord(fingerprints[-1], verifier_key(name, current), first, None, None))
    return StationKeys(name, origin, tuple(records))


def data_dir_keys(data_dir: Path) -> StationKeys:
    """The keys of a station data directory; its key name and origin come from its newest checkpoint, which
    must verify with one of them (so what is printed is what its checkpoints are signed with)."""
    keys_dir, folder = data_dir / "keys", data_dir / "log" / "checkpoints"
    if not keys_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} is not a station data directory: it has no keys/")
    notes = sorted(folder.glob("[0-9]*.note"), reverse=True) if folder.is_dir() else []
    newest = [folder / "latest.note", *notes]
    path = next((p for p in newest if p.is_file()), None)
    if path is None:
        raise NoSignedCheckpoint(
            f"{folder} holds no signed checkpoint (the station signs one at shutdown), so the key name and log "
            "origin are unknown: run with --config for a configured station"
        )
    note = path.read_text(encoding="utf-8", errors="replace")
    try:
        checkpoint, _ = KeyChain.from_keys_dir(keys_dir).open_checkpoint(note)
    except (NoteError, CheckpointError) as exc:
        raise NoteError(f"{path} does not verify with the keys of {keys_dir} ({exc}): run recterm verify") from None
    name = next(line.split(" ")[1] for line in note.splitlines() if line.startswith(SIG_PREFIX))
    return station_keys(keys_dir, name, checkpoint.origin)
