"""Upload throughput to the local Ceph RGW: the station's S3Store (one read pass: MD5 for Content-MD5 and
SHA-256 of the local copy over the same buffer, multipart parts persisted, COMPLIANCE lock, HEAD confirm)
against a plain boto3 ``upload_file`` of the same files (defaults: its own checksums, payload hashing over
http), in the same run, alternating rounds. Last line: ``ratio: X`` = station MB/s / plain MB/s.

    .venv/bin/python bench/upload.py [--files 4] [--mib 64] [--rounds 4] [--part-mib 16] [--concurrency 4]

Starts a throw-away cluster with scripts/ceph-rgw.sh unless RGW_ENV names an env file of a running one.
Target (issue 5): ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import tomli_w

from appliance.central.base import Lock
from appliance.central.s3 import S3Store
from appliance.config import S3Section
from appliance.state.db import StateDB

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ceph-rgw.sh"


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[7:].partition("=")
            env[name] = shlex.split(value)[0]
    return env


def make_files(folder: Path, count: int, mib: int) -> list[tuple[Path, str]]:
    files = []
    for i in range(count):
        path = folder / f"REC{i:04d}.MP4"
        digest = hashlib.sha256()
        with open(path, "wb") as fh:
            for _ in range(mib):
                chunk = os.urandom(2**20)
                digest.update(chunk)
                fh.write(chunk)
        files.append((path, digest.hexdigest()))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--part-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        work = Path(tmp)
        cluster = None
        env_file = os.environ.get("RGW_ENV")
        if env_file is None:
            cluster = work / "ceph"
            subprocess.run([str(SCRIPT), "start", str(cluster)], check=True, stdout=subprocess.DEVNULL)
            env_file = str(cluster / "env")
        try:
            env = read_env(Path(env_file))
            creds = work / "credentials"
            creds.write_text(tomli_w.dumps({"access_key": env["RGW_ACCESS_KEY"], "secret_key": env["RGW_SECRET_KEY"]}))
            creds.chmod(0o600)
            plain = boto3.client(
                "s3",
                endpoint_url=env["RGW_ENDPOINT"],
                aws_access_key_id=env["RGW_ACCESS_KEY"],
                aws_secret_access_key=env["RGW_SECRET_KEY"],
                region_name="default",
            )
            ours_bucket = f"bench-{uuid.uuid4().hex[:12]}"
            plain_bucket = f"bench-{uuid.uuid4().hex[:12]}"
            plain.create_bucket(Bucket=ours_bucket, ObjectLockEnabledForBucket=True)
            plain.create_bucket(Bucket=plain_bucket)
            files = make_files(work, args.files, args.mib)
            total = sum(p.stat().st_size for p, _ in files)
            settings = S3Section(
                endpoint=env["RGW_ENDPOINT"],
                bucket=ours_bucket,
                credentials_file=creds,
                part_size_mib=args.part_mib,
                concurrency=args.concurrency,
            )
            db = StateDB(work / "state.json")
            store = S3Store(settings, db)
            lock = Lock(datetime.now(UTC).replace(microsecond=0) + timedelta(days=1), legal_hold=False)
            ours_s = plain_s = 0.0
            # Warm-up, not timed: the first writes to a new cluster create RGW's pools, the first multipart
            # upload its non-ec pool. Large enough that both clients go multipart.
            warm = work / "warm"
            warm.write_bytes(os.urandom(2 * args.part_mib * 2**20 + 1))
            store.put("warm", warm, hashlib.sha256(warm.read_bytes()).hexdigest(), lock)
            plain.upload_file(str(warm), plain_bucket, "warm")

            def run_ours(rnd: int) -> float:
                t0 = time.perf_counter()
                for path, sha in files:
                    store.put(f"r{rnd}/{path.name}", path, sha, lock)
                return time.perf_counter() - t0

            def run_plain(rnd: int) -> float:
                t0 = time.perf_counter()
                for path, _ in files:
                    plain.upload_file(str(path), plain_bucket, f"r{rnd}/{path.name}")
                return time.perf_counter() - t0

            ours_s = plain_s = 0.0
            for rnd in range(args.rounds):  # alternate who goes first: neither gets a warmer server
                if rnd % 2 == 0:
                    ours, base = run_ours(rnd), run_plain(rnd)
                else:
                    base, ours = run_plain(rnd), run_ours(rnd)
                ours_s += ours
                plain_s += base
                print(
                    f"round {rnd + 1}: station {total / ours / 1e6:.1f} MB/s (locked, confirmed), "
                    f"plain upload_file {total / base / 1e6:.1f} MB/s"
                )
            db.close()
            print(f"{args.files} files x {args.mib} MiB, part {args.part_mib} MiB, concurrency {args.concurrency}")
            sent = total * args.rounds / 1e6
            print(f"station {sent / ours_s:.1f} MB/s, plain {sent / plain_s:.1f} MB/s")
            print(f"ratio: {plain_s / ours_s:.2f}")
        finally:
            if cluster is not None:
                subprocess.run([str(SCRIPT), "stop", str(cluster)], check=False, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
