"""A real S3 server for the tests: a one-node Ceph cluster with radosgw (scripts/ceph-rgw.sh), per session.

Registered in tests/conftest.py through ``pytest_plugins``. Started once in a temp directory on free
ports, stopped by the script, which signals exactly the PIDs it recorded in DIR/pids.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import tomli_w
from botocore.config import Config

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ceph-rgw.sh"


@dataclass
class Rgw:
    dir: Path
    endpoint: str
    access_key: str
    secret_key: str

    def script(self, command: str) -> None:
        """rgw-stop / rgw-start: take the gateway down and up while the cluster keeps its data."""
        subprocess.run([str(SCRIPT), command, str(self.dir)], check=True, capture_output=True, timeout=120)

    def client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="default",
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
            ),
        )

    def new_bucket(self, lock: bool = True) -> str:
        name = f"t-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)  # type: ignore[attr-defined]
        return name

    def credentials_file(self, folder: Path) -> Path:
        path = folder / "s3-credentials"
        path.write_text(tomli_w.dumps({"access_key": self.access_key, "secret_key": self.secret_key}))
        path.chmod(0o600)
        return path


def _read_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rgw]:
    from tests.conftest import free_port

    folder = tmp_path_factory.mktemp("ceph")
    env = {"RGW_PORT": str(free_port()), "CEPH_MON_PORT": str(free_port()), "CEPH_MEMSTORE_BYTES": str(2 << 30)}
    started = subprocess.run(
        [str(SCRIPT), "start", str(folder)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if started.returncode != 0:
        pytest.fail(f"could not start the Ceph RGW test server:\n{started.stderr}", pytrace=False)
    values = _read_env(folder / "env")
    try:
        yield Rgw(folder, values["RGW_ENDPOINT"], values["RGW_ACCESS_KEY"], values["RGW_SECRET_KEY"])
    finally:
        subprocess.run([str(SCRIPT), "stop", str(folder)], check=False, capture_output=True, timeout=120)


def bucket_log_receipts(s3, bucket: str, station: str = "test-station") -> int:
    """How many upload receipts the station's log segments in the bucket hold (the log goes up after the
    recordings it receipts, so tests wait for this before auditing)."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{station}/log/entries/").get("Contents", [])
    text = b"".join(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing)
    return text.count(b'"type":"upload_receipt"')
