"""The S3 Object Lock store against a real Ceph RGW: locks as the class demands, write-once, resumable."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from appliance.central.base import Lock, lock_for
from appliance.central.s3 import UPLOADS, S3Store, S3StoreError, multipart_etag
from appliance.config import S3Section
from appliance.policy import load_profile
from appliance.state.db import StateDB
from tests.rgw import Rgw

MIB = 2**20


def settings(rgw: Rgw, tmp_path: Path, bucket: str, part_mib: int = 5, concurrency: int = 2) -> S3Section:
    return S3Section(
        endpoint=rgw.endpoint,
        bucket=bucket,
        credentials_file=rgw.credentials_file(tmp_path),
        part_size_mib=part_mib,
        concurrency=concurrency,
    )


def random_file(path: Path, size: int, seed: int = 1) -> str:
    path.write_bytes(random.Random(seed).randbytes(size))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db(tmp_path: Path):
    db = StateDB(tmp_path / "state.json")
    yield db
    db.close()


def test_lock_follows_the_retention_class() -> None:
    profile = load_profile("003")
    ingested = datetime(2026, 3, 5, 10, 0, 0, 500000, tzinfo=UTC)
    routine = lock_for("routine", ingested, profile)
    assert not routine.legal_hold and routine.retain_until > ingested and routine.retain_until.microsecond == 0
    for cls in ("long_term", "evidence", "unclassified"):
        held = lock_for(cls, ingested, profile)
        assert held.legal_hold and held.retain_until >= routine.retain_until


def test_small_object_is_locked_write_once_and_confirmed(rgw: Rgw, tmp_path: Path, db: StateDB) -> None:
    bucket = rgw.new_bucket()
    store = S3Store(settings(rgw, tmp_path, bucket), db)
    src = tmp_path / "a.mp4"
    sha = random_file(src, 300_000)
    lock = Lock(datetime.now(UTC).replace(microsecond=0) + timedelta(days=2), legal_hold=False)
    receipt = store.put("st/2026-03-05/CAM0001/110001/a.mp4", src, sha, lock)
    assert receipt.size == 300_000 and receipt.etag == hashlib.md5(src.read_bytes()).hexdigest()
    s3 = rgw.client()
    head = s3.head_object(Bucket=bucket, Key=receipt.key)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] >= lock.retain_until
    assert head.get("ObjectLockLegalHoldStatus") != "ON"
    assert store.put(receipt.key, src, sha, lock) == receipt  # idempotent: same bytes again
    other = tmp_path / "b.mp4"
    with pytest.raises(S3StoreError, match="different bytes"):
        store.put(receipt.key, other, random_file(other, 300_000, seed=2), lock)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=receipt.key, VersionId=receipt.version_id)
    # An overwrite through the raw API only adds a version: the locked one stays, and confirm notices.
    s3.put_object(Bucket=bucket, Key=receipt.key, Body=b"forged")
    original = s3.get_object(Bucket=bucket, Key=receipt.key, VersionId=receipt.version_id)
    assert hashlib.sha256(original["Body"].read()).hexdigest() == sha
    with pytest.raises(S3StoreError, match="differs"):
        store.confirm(receipt.key, sha)


def test_a_changed_local_copy_is_not_uploaded(rgw: Rgw, tmp_path: Path, db: StateDB) -> None:
    bucket = rgw.new_bucket()
    store = S3Store(settings(rgw, tmp_path, bucket), db)
    for size in (1000, 12 * MIB):
        src = tmp_path / f"r{size}"
        random_file(src, size)
        with pytest.raises(S3StoreError, match="no longer matches"):
            store.put(f"k{size}", src, "0" * 64, None)
    assert rgw.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert store.pending_uploads() == []


def test_multipart_long_term_gets_retention_and_legal_hold(rgw: Rgw, tmp_path: Path, db: StateDB) -> None:
    bucket = rgw.new_bucket()
    store = S3Store(settings(rgw, tmp_path, bucket), db)
    src = tmp_path / "big.mp4"
    sha = random_file(src, 17 * MIB + 123)
    lock = lock_for("long_term", datetime.now(UTC), load_profile("003"))
    receipt = store.put("st/d/CAM/off/big.mp4", src, sha, lock)
    data = src.read_bytes()
    md5s = [hashlib.md5(data[i : i + 5 * MIB]).digest() for i in range(0, len(data), 5 * MIB)]
    assert receipt.etag == multipart_etag(md5s) and receipt.etag.endswith("-4")
    s3 = rgw.client()
    head = s3.head_object(Bucket=bucket, Key=receipt.key)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockLegalHoldStatus"] == "ON"
    assert head["ObjectLockRetainUntilDate"] >= lock.retain_until
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=receipt.key, VersionId=receipt.version_id)
    got = s3.get_object(Bucket=bucket, Key=receipt.key)["Body"].read()
    assert hashlib.sha256(got).hexdigest() == sha
    assert store.pending_uploads() == []


def test_relock_lengthens_and_holds_but_never_shortens(rgw: Rgw, tmp_path: Path, db: StateDB) -> None:
    """A recording re-classified after upload: the central copy's lock follows the new class, only upwards."""
    bucket = rgw.new_bucket()
    store = S3Store(settings(rgw, tmp_path, bucket), db)
    src = tmp_path / "r.mp4"
    sha = random_file(src, 50_000)
    now = datetime.now(UTC).replace(microsecond=0)
    receipt = store.put("st/d/CAM/off/r.mp4", src, sha, Lock(now + timedelta(days=2), legal_hold=False))
    longer = store.relock(receipt.key, Lock(now + timedelta(days=40), legal_hold=True))
    head = rgw.client().head_object(Bucket=bucket, Key=receipt.key)
    assert head["ObjectLockLegalHoldStatus"] == "ON" and head["ObjectLockRetainUntilDate"] >= now + timedelta(days=40)
    assert longer == Lock(now + timedelta(days=40), legal_hold=True)
    kept = store.relock(receipt.key, Lock(now + timedelta(days=1), legal_hold=False))  # asks for less: ignored
    assert kept == longer
    head = rgw.client().head_object(Bucket=bucket, Key=receipt.key)
    assert head["ObjectLockRetainUntilDate"] >= now + timedelta(days=40) and head["ObjectLockLegalHoldStatus"] == "ON"
    with pytest.raises(S3StoreError, match="not in the bucket"):
        store.relock("st/d/CAM/off/missing.mp4", longer)


def _state_parts(path: Path) -> dict[str, str]:
    try:
        rows = json.loads(path.read_bytes()).get(UPLOADS, {})
    except (FileNotFoundError, ValueError):
        return {}
    return next(iter(rows.values()), {}).get("parts", {}) if rows else {}


def test_upload_killed_mid_multipart_resumes_and_sends_only_parts_in_flight(rgw: Rgw, tmp_path: Path) -> None:
    bucket = rgw.new_bucket()
    cfg = settings(rgw, tmp_path, bucket, part_mib=5, concurrency=2)
    src = tmp_path / "long.mp4"
    count = 12
    sha = random_file(src, count * 5 * MIB - 777, seed=7)
    state = tmp_path / "state.json"
    key = "st/d/CAM/off/long.mp4"
    rng = random.Random()
    s3 = rgw.client()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for _ in range(3):  # kill three times at random points, each after a random number of stored parts
        before = len(_state_parts(state))
        if before >= count - 2:
            break
        target = rng.randint(before + 1, count - 2)
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.s3_child", cfg.model_dump_json(), str(state), str(src), key, sha], env=env
        )
        deadline = time.monotonic() + 60
        while len(_state_parts(state)) < target and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.random() * 0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        persisted = _state_parts(state)
        upload_id = next(iter(json.loads(state.read_bytes())[UPLOADS].values()))["upload_id"]
        on_server = {p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]}
        assert {int(n) for n in persisted} <= on_server
        assert len(on_server - {int(n) for n in persisted}) <= cfg.concurrency  # only parts in flight are lost
    persisted = _state_parts(state)
    assert persisted, "the kills came before any part was stored"
    db = StateDB(state)
    try:
        store = S3Store(cfg, db)
        sent: list[int] = []
        store.on_part = sent.append
        receipt = store.put(key, src, sha)
        assert sorted(sent) == sorted(set(range(1, count + 1)) - {int(n) for n in persisted})
        assert store.pending_uploads() == []
    finally:
        db.close()
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(got).hexdigest() == sha and receipt.size == len(got)


def test_every_part_passes_the_bandwidth_cap(rgw: Rgw, tmp_path: Path, db: StateDB) -> None:
    store = S3Store(settings(rgw, tmp_path, rgw.new_bucket()), db)
    asked: list[int] = []
    store.throttle = asked.append
    for size in (1000, 13 * MIB + 5):
        src = tmp_path / f"r{size}"
        store.put(f"k{size}", src, random_file(src, size), None)
        assert sum(asked) == size
        asked.clear()
