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
