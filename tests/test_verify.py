"""`recterm offload` then `recterm verify`: any altered byte, dropped or reordered entry is caught."""

from __future__ import annotations

import random
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from devices.sim import media


@pytest.fixture(scope="module")
def offloaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding an honest offload of a real FAT32 camera image."""
    root = tmp_path_factory.mktemp("verify")
    image = root / "camera.img"
    media.create_image(image, "vfat", 40, label="CAM0001")
    media.record(image, "CAM0001", datetime(2026, 3, 5, 9, 0, 0), count=3, seconds=2.0)
    result = CliRunner().invoke(main, ["offload", str(image), "--store", str(root / "data"), "--serial", "CAM0001"])
    assert result.exit_code == 0, result.output
    assert "offloaded 3 recordings" in result.output
    again = CliRunner().invoke(main, ["offload", str(image), "--store", str(root / "data"), "--serial", "CAM0001"])
    assert "offloaded 0 recordings" in again.output and "3 already verified" in again.output
    return root / "data"


def run_verify(data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", str(data_dir)])
    return result.exit_code, result.output


@pytest.fixture
def copy(offloaded: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(offloaded, target)
    for path in target.rglob("*"):
        if path.is_file():
            path.chmod(0o644)  # the store is read-only; the attacker is not bound by that
    return target


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_honest_offload_verifies(offloaded: Path) -> None:
    code, output = run_verify(offloaded)
    assert code == 0, output
    assert "OK: " in output and "3 recordings, 3 manifests" in output


def test_any_byte_of_a_recording_altered_is_caught(copy: Path) -> None:
    objects = sorted((copy / "store" / "objects").rglob("*/*"))
    target = objects[1]
    flip(target, random.Random(1).randrange(target.stat().st_size))
    code, output = run_verify(copy)
    assert code == 1
    assert f"store/objects/{target.parent.name}/{target.name}: content does not match" in output


@pytest.mark.parametrize("seed", range(6))
def test_any_byte_of_a_manifest_altered_is_caught(copy: Path, seed: int) -> None:
    manifests = sorted((copy / "store" / "manifests").rglob("*.json"))
    rng = random.Random(seed)
    target = manifests[rng.randrange(len(manifests))]
    flip(target, rng.randrange(target.stat().st_size))
    code, output = run_verify(copy)
    assert code == 1, output
    assert f"store/manifests/{target.parent.name}/{target.name}" in output


@pytest.mark.parametrize("seed", range(12))
def test_any_byte_of_a_log_entry_altered_is_caught(copy: Path, seed: int) -> None:
    log = copy / "log" / "entries.jsonl"
    data = log.read_bytes()
    rng = random.Random(seed)
    offset = rng.randrange(len(data))
    while data[offset : offset + 1] == b"\n":
        offset = rng.randrange(len(data))
    flip(log, offset)
    code, output = run_verify(copy)
    assert code == 1, output
    assert "ERROR" in output


def test_dropped_entry_is_caught(copy: Path) -> None:
    log = copy / "log" / "entries.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2] + lines[3:]))
    code, output = run_verify(copy)
    assert code == 1
    assert "log entry 2: has sequence number 3 (dropped or reordered)" in output


def test_reordered_entries_are_caught(copy: Path) -> None:
    log = copy / "log" / "entries.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    log.write_bytes(b"".join(lines))
    code, output = run_verify(copy)
    assert code == 1
    assert "dropped or reordered" in output and "no longer produce the signed tree root" in output


def test_truncated_log_is_caught(copy: Path) -> None:
    log = copy / "log" / "entries.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))
    code, output = run_verify(copy)
    assert code == 1 and "(truncated)" in output


def test_missing_manifest_is_caught(copy: Path) -> None:
    next((copy / "store" / "manifests").rglob("*.json")).unlink()
    code, output = run_verify(copy)
    assert code == 1 and "ingest without a manifest" in output


def test_a_forged_checkpoint_is_caught(copy: Path) -> None:
    note = sorted((copy / "log" / "checkpoints").glob("0*.note"))[-1]
    text = note.read_text()
    note.write_text(text.replace(text.split("\n")[1], str(int(text.split("\n")[1]) + 1), 1))
    code, output = run_verify(copy)
    assert code == 1 and f"checkpoints/{note.name}: signature or format invalid" in output


def _append(data_dir: Path, *events: tuple[str, dict]) -> list[int]:
    from appliance.eventlog import EventLog, Signer
    from provisioning.keys import load_signing_key

    note = (data_dir / "log" / "checkpoints" / "latest.note").read_text()
    origin = note.splitlines()[0]
    name = next(line.split(" ")[1] for line in note.splitlines() if line.startswith("\u2014 "))
    log = EventLog(data_dir / "log", origin=origin, signer=Signer(name, load_signing_key(data_dir / "keys")))
    try:
        return [log.append(kind, body).seq for kind, body in events]
    finally:
        log.close()


def test_a_local_copy_deleted_after_its_receipt_verifies(copy: Path) -> None:
    obj = next((copy / "store" / "objects" / "sha256").glob("*/*"))
    (receipt,) = _append(copy, ("upload_receipt", {"key": "k", "sha256": obj.name, "size": 1, "target": "s3"}))
    _append(copy, ("local_delete", {"key": "k", "sha256": obj.name, "receipt_seq": receipt, "reason": "keep_period"}))
    obj.unlink()
    code, output = run_verify(copy)
    assert code == 0, output
    assert "local copy deleted after its confirmed upload" in output


def test_a_local_copy_deleted_without_receipt_is_caught(copy: Path) -> None:
    obj = next((copy / "store" / "objects" / "sha256").glob("*/*"))
    _append(copy, ("local_delete", {"key": "k", "sha256": obj.name, "receipt_seq": 0, "reason": "keep_period"}))
    obj.unlink()
    code, output = run_verify(copy)
    assert code == 1 and "deleted without an upload receipt" in output and "missing from the store" in output


# -- every kind of evidence, deleted or changed by one byte (issue 15, hole 1) ---------------------------


def evidence(data_dir: Path) -> list[tuple[str, Path]]:
    """Every file verify vouches for: recordings, manifests, checkpoints (latest.note included)."""
    return [
        *(("recording", p) for p in sorted((data_dir / "store" / "objects" / "sha256").glob("*/*"))),
        *(("manifest", p) for p in sorted((data_dir / "store" / "manifests").rglob("*.json"))),
        *(("checkpoint", p) for p in sorted((data_dir / "log" / "checkpoints").glob("*.note"))),
    ]


def fresh(offloaded: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(offloaded, target)
    return target


def verify_fails(data_dir: Path) -> bool:
    from appliance.evidence.verify import verify_data_dir

    return not verify_data_dir(data_dir).ok


def test_every_deletion_and_every_single_byte_change_is_caught(offloaded: Path, tmp_path: Path) -> None:
    rng = random.Random(15)
    missed = []
    for kind, original in evidence(offloaded):
        name = original.relative_to(offloaded)
        data = fresh(offloaded, tmp_path / "data")
        (data / name).unlink()
        if not verify_fails(data):
            missed.append(f"{kind} {name} deleted")
        for offset in sorted(rng.sample(range(original.stat().st_size), 3)):
            data = fresh(offloaded, tmp_path / "data")
            (data / name).chmod(0o644)
            flip(data / name, offset)
            if not verify_fails(data):
                missed.append(f"{kind} {name} byte {offset} changed")
    lines = (offloaded / "log" / "entries.jsonl").read_bytes().splitlines(keepends=True)
    for number, line in enumerate(lines):
        for edit in ("delete", rng.randrange(len(line))):
            changed = list(lines)
            if edit == "delete":
                del changed[number]
            else:
                edited = bytearray(line)
                edited[edit] ^= 0x01
                changed[number] = bytes(edited)
            data = fresh(offloaded, tmp_path / "data")
            (data / "log" / "entries.jsonl").write_bytes(b"".join(changed))
            if not verify_fails(data):
                missed.append(f"log entry {number} {edit}")
    assert not missed, missed
    assert len(evidence(offloaded)) >= 11 and len(lines) >= 10  # 3 recordings, 3 manifests, 5 notes


def rewrite_entry(data_dir: Path, seq: int, **body: object) -> None:
    """Change an entry and keep it canonical: only the signed checkpoints can tell."""
    import json

    import rfc8785

    log = data_dir / "log" / "entries.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[seq])
    entry["body"] |= body
    lines[seq] = rfc8785.dumps(entry) + b"\n"
    log.write_bytes(b"".join(lines))


def test_an_edited_entry_is_caught_after_the_newest_numbered_checkpoint_is_removed(copy: Path) -> None:
    notes = sorted((copy / "log" / "checkpoints").glob("0*.note"))
    notes[-1].unlink()
    rewrite_entry(copy, -2, camera="CAM0666")
    code, output = run_verify(copy)
    assert code == 1, output
    size = int(notes[-1].stem)
    assert f"checkpoints/latest.note: signs size {size}, but checkpoints/{notes[-1].name} is missing" in output
    assert "no longer produce the signed tree root" in output


def test_a_dropped_last_entry_is_caught_after_the_newest_numbered_checkpoint_is_removed(copy: Path) -> None:
    sorted((copy / "log" / "checkpoints").glob("0*.note"))[-1].unlink()
    log = copy / "log" / "entries.jsonl"
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:-1]))
    code, output = run_verify(copy)
    assert code == 1 and "(truncated)" in output, output


def test_a_rewritten_log_is_caught_after_every_note_is_removed(copy: Path) -> None:
    for note in (copy / "log" / "checkpoints").glob("*.note"):
        note.unlink()
    rewrite_entry(copy, 3, camera_mtime="2026-03-05T10:00:00")
    code, output = run_verify(copy)
    assert code == 1, output
    assert "log entry 0 (boot): no signed checkpoint of size 1 right after it (checkpoints removed?)" in output


def test_a_latest_note_left_behind_by_removed_checkpoints_is_caught(copy: Path) -> None:
    checkpoints = copy / "log" / "checkpoints"
    first = sorted(checkpoints.glob("0*.note"))[0]
    (checkpoints / "latest.note").write_bytes(first.read_bytes())  # an old latest, newer ones kept
    code, output = run_verify(copy)
    assert code == 1 and "numbered checkpoints are newer" in output, output


class Died(BaseException):
    """The process dies here."""


def test_an_ingest_whose_manifest_a_crash_prevented_is_a_notice_until_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.single_offload import offload_once
    from appliance.store import LocalStore

    image = tmp_path / "camera.img"
    media.create_image(image, "vfat", 40, label="CAM0002")
    media.record(image, "CAM0002", datetime(2026, 3, 5, 9, 0, 0), count=3, seconds=2.0)
    real = LocalStore.put_manifest
    calls = []

    def dies_on_the_second(self: LocalStore, *args: object) -> Path:
        calls.append(args)
        if len(calls) == 2:
            raise Died
        return real(self, *args)

    monkeypatch.setattr(LocalStore, "put_manifest", dies_on_the_second)
    with pytest.raises(Died):
        offload_once(image, tmp_path / "data", {"serial": "CAM0002", "model": ""})
    code, output = run_verify(tmp_path / "data")
    assert code == 0, output
    assert "ingest without a manifest: the station stopped right after it (a crash)" in output
    # Had the offload gone on after that ingest, its manifest would exist: then it was removed.
    _append(tmp_path / "data", ("offload_complete", {"bay": 0, "camera": "CAM0002", "copied": 3}))
    code, output = run_verify(tmp_path / "data")
    assert code == 1 and "ERROR log entry 3: ingest without a manifest" in output, output
    monkeypatch.setattr(LocalStore, "put_manifest", real)
    offload_once(image, tmp_path / "data", {"serial": "CAM0002", "model": ""})  # the next dock redoes it
    code, output = run_verify(tmp_path / "data")
    assert code == 0 and "log entry 3: ingest interrupted before its manifest; redone later" in output, output
