"""The central store on S3 with Object Lock (Ceph RGW, MinIO, cloud stores): layout in docs/s3-layout.md.

Every local byte is read once per upload attempt: each part is read into one buffer, which feeds the
file's SHA-256 (in part order: the local copy must still match its manifest), its MD5 (Content-MD5) and
the request. Parts are read and hashed by the workers in parallel.
botocore is told to add no checksums of its own (Ceph Pacific ignores x-amz-checksum-*) and not to hash
payloads for SigV4 (UNSIGNED-PAYLOAD: Content-MD5 already protects every PUT and part).

Large files go multipart: the upload id and each finished part (number, MD5) are persisted in the
StateDB as they happen, so after a restart only the parts that were in flight are sent again.

An upload counts only once a HEAD shows the size, the ETag the parts imply, the SHA-256 in the metadata,
COMPLIANCE retention until at least the requested date and the legal hold when one was asked for.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import threading
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from tinydb import Query

from appliance.central.base import CentralStoreError, Lock, Receipt, StoreUnavailable, stronger
from appliance.config import S3Section
from appliance.state.db import StateDB

log = logging.getLogger(__name__)

UPLOADS = "s3_uploads"  # StateDB table: one row per unfinished multipart upload
SHA256_META = "sha256"  # x-amz-meta-sha256: the recording's hash, as in its manifest


class S3StoreError(CentralStoreError):
    """The S3 store refused an object or does not hold it as expected."""


def load_credentials(path: Path) -> tuple[str, str]:
    """access_key and secret_key from a TOML file only its owner can read."""
    try:
        mode = path.stat().st_mode
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise S3StoreError(f"{path}: S3 credentials file not found") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise S3StoreError(f"{path}: cannot read S3 credentials: {exc}") from None
    if mode & 0o077:
        raise S3StoreError(f"{path}: S3 credentials must not be readable by others (chmod 600)")
    try:
        return str(data["access_key"]), str(data["secret_key"])
    except KeyError as exc:
        raise S3StoreError(f"{path}: missing {exc.args[0]}") from None


def make_client(settings: S3Section, max_pool: int | None = None) -> Any:
    access, secret = load_credentials(settings.credentials_file)
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint,
        region_name=settings.region,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            max_pool_connections=max_pool or settings.concurrency + 2,
            connect_timeout=5,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 2},  # the uploader does the real backoff
        ),
    )


def md5_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: MD5 of the concatenated part MD5s, dash, part count."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def _unavailable(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or exc.response.get("Error", {}).get("Code") in ("SlowDown", "RequestTimeout")
    return isinstance(exc, BotoCoreError)


class S3Store:
    kind = "s3"

    def __init__(self, settings: S3Section, db: StateDB, client: Any | None = None) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.part_size = settings.part_size_mib * 2**20
        self.concurrency = settings.concurrency
        self.db = db
        self.s3 = client or make_client(settings)
        self.on_part: Callable[[int], None] | None = None  # tests/bench: called after each part is persisted
        self.throttle: Callable[[int], None] | None = None  # daytime bandwidth cap (throttle.py)

    # -- public interface (CentralStore)
    def put(self, key: str, source: Path, sha256: str, lock: Lock | None = None) -> Receipt:
        with _translated(key, "upload"):
            return self._put(key, source, sha256, lock)

    def put_bytes(self, key: str, data: bytes, lock: Lock | None = None) -> Receipt:
        sha = hashlib.sha256(data).hexdigest()
        with _translated(key, "upload"):
            existing = self._head(key)
            if existing is None:
                md5 = hashlib.md5(data).digest()
                self.s3.put_object(
                    Bucket=self.bucket, Key=key, Body=data, ContentMD5=md5_b64(md5), **self._put_args(sha, lock)
                )
                return self._confirm(key, len(data), sha, md5.hex(), lock)
            return self._confirm(key, len(data), sha, hashlib.md5(data).hexdigest(), lock, head=existing)

    def confirm(self, key: str, sha256: str) -> Receipt:
        head = self._head(key)
        if head is None:
            raise S3StoreError(f"{key}: not in the bucket")
        if head.get("Metadata", {}).get(SHA256_META) != sha256:
            raise S3StoreError(f"{key}: stored object differs from the recording (sha256 in its metadata)")
        return Receipt(key, head["ContentLength"], sha256, head["ETag"].strip('"'), head.get("VersionId", ""))

    # -- the work
    def _put(self, key: str, source: Path, sha256: str, lock: Lock | None) -> Receipt:
        size = source.stat().st_size
        existing = self._head(key)
        if existing is not None:
            return self._finish_existing(key, source, size, sha256, lock, existing)
        if size <= self.part_size:
            with open(source, "rb") as fh:
                data = fh.read()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise S3StoreError(f"{key}: local copy no longer matches its hash; not uploaded")
            md5 = hashlib.md5(data).digest()
            if self.throttle is not None:
                self.throttle(len(data))
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentMD5=md5_b64(md5), **self._put_args(sha256, lock)
            )
            return self._confirm(key, size, sha256, md5.hex(), lock)
        return self._multipart(key, source, size, sha256, lock)

    def _put_args(self, sha256: str, lock: Lock | None) -> dict[str, Any]:
        args: dict[str, Any] = {"Metadata": {SHA256_META: sha256}}
        if lock is not None:
            args["ObjectLockMode"] = "COMPLIANCE"
            args["ObjectLockRetainUntilDate"] = lock.retain_until
            if lock.legal_hold:
                args["ObjectLockLegalHoldStatus"] = "ON"
        return args

    def _multipart(self, key: str, source: Path, size: int, sha256: str, lock: Lock | None) -> Receipt:
        state = self._load_state(key)
        if state is not None and (state["sha256"] != sha256 or state["part_size"] != self.part_size):
            self._abort(state)
            state = None
        if state is not None and not self._upload_alive(state):
            log.info("%s: upload %s no longer on the server; starting again", key, state["upload_id"])
            self._drop_state(key)
            state = None
        if state is None:
            created = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key, **self._put_args(sha256, lock))
            state = {"key": key, "upload_id": created["UploadId"], "sha256": sha256, "part_size": self.part_size}
            state["parts"] = {}
            self.db.call(lambda db: db.table(UPLOADS).insert(dict(state)))
        else:
            log.info("%s: resuming upload with %d parts already stored", key, len(state["parts"]))
        done = {int(n): bytes.fromhex(m) for n, m in state["parts"].items()}  # part number -> MD5
        count = (size + self.part_size - 1) // self.part_size
        pipeline = _PartPipeline(self, state, done)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="s3-part") as pool:
            in_flight: set[Future[None]] = set()
            fd = os.open(source, os.O_RDONLY)
            try:
                for number in range(1, count + 1):
                    while len(in_flight) >= self.concurrency:  # bounded memory: one part per worker
                        finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                        for f in finished:
                            f.result()
                    in_flight.add(pool.submit(pipeline.run, fd, number))
                for f in wait(in_flight).done:
                    f.result()
            except BaseException:
                pipeline.abort()
                raise
            finally:
                wait(in_flight)
                os.close(fd)
        digest, part_md5s = pipeline.digest, pipeline.md5s
        if digest.hexdigest() != sha256:
            self._abort(state)
            raise S3StoreError(f"{key}: local copy no longer matches its hash; not uploaded")
        parts = [{"PartNumber": n, "ETag": f'"{part_md5s[n].hex()}"'} for n in range(1, count + 1)]
        try:
            self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=state["upload_id"], MultipartUpload={"Parts": parts}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload" or self._head(key) is None:
                raise
            # Completed by an attempt that died before it could drop its state: the HEAD below decides.
        receipt = self._confirm(key, size, sha256, multipart_etag([part_md5s[n] for n in range(1, count + 1)]), lock)
        self._drop_state(key)
        return receipt

    def _finish_existing(
        self, key: str, source: Path, size: int, sha256: str, lock: Lock | None, head: dict[str, Any]
    ) -> Receipt:
        """The key is already there: same recording (an earlier attempt) is confirmed, anything else refused."""
        if head.get("Metadata", {}).get(SHA256_META) != sha256 or head["ContentLength"] != size:
            raise S3StoreError(f"{key}: the bucket already holds different bytes under this key; not overwritten")
        self._drop_state(key)
        return self._confirm(key, size, sha256, self._local_etag(source, size), lock, head=head)

    def _local_etag(self, source: Path, size: int) -> str:
        """The ETag our upload of ``source`` produced (only needed when confirming after a crash)."""
        md5s = []
        with open(source, "rb") as fh:
            while data := fh.read(self.part_size):
                md5s.append(hashlib.md5(data).digest())
        if size <= self.part_size:
            return md5s[0].hex() if md5s else hashlib.md5(b"").hexdigest()
        return multipart_etag(md5s)

    def _confirm(
        self,
        key: str,
        size: int,
        sha256: str,
        etag: str,
        lock: Lock | None,
        head: dict[str, Any] | None = None,
    ) -> Receipt:
        head = head if head is not None else self._head(key)
        if head is None:
            raise S3StoreError(f"{key}: not in the bucket after the upload")
        if lock is not None and not _lock_holds(head, lock):
            # Ceph Pacific drops the lock headers of multipart uploads: set them on the version now.
            self._apply_lock(key, head.get("VersionId"), lock)
            head = self._head(key)
            if head is None:
                raise S3StoreError(f"{key}: vanished while its lock was set")
        problems = []
        if head["ContentLength"] != size:
            problems.append(f"size {head['ContentLength']} != {size}")
        if head["ETag"].strip('"') != etag:
            problems.append(f"ETag {head['ETag']} != {etag}")
        if head.get("Metadata", {}).get(SHA256_META) != sha256:
            problems.append("sha256 metadata differs")
        if lock is not None and not _lock_holds(head, lock):
            problems.append(
                f"lock {head.get('ObjectLockMode')} until {head.get('ObjectLockRetainUntilDate')}, hold "
                f"{head.get('ObjectLockLegalHoldStatus')}; wanted COMPLIANCE until {lock.retain_until}"
                f"{', hold ON' if lock.legal_hold else ''}"
            )
        if problems:
            raise S3StoreError(f"{key}: stored object not as uploaded: {'; '.join(problems)}")
        return Receipt(key, size, sha256, etag, head.get("VersionId", ""))

    def relock(self, key: str, lock: Lock) -> Lock:
        """Lengthen the COMPLIANCE retention and/or set the legal hold of a stored object (its retention class
        changed after upload); confirmed by HEAD. The server itself refuses to shorten COMPLIANCE retention."""
        with _translated(key, "lock"):
            head = self._head(key)
            if head is None:
                raise S3StoreError(f"{key}: not in the bucket, cannot lock it")
            current = None
            if head.get("ObjectLockRetainUntilDate") is not None:
                current = Lock(head["ObjectLockRetainUntilDate"], head.get("ObjectLockLegalHoldStatus") == "ON")
            target = stronger(current, lock)
            if target != current:
                self._apply_lock(key, head.get("VersionId"), target)
            after = self._head(key)
            if after is None or not _lock_holds(after, target):
                raise S3StoreError(f"{key}: lock not in force after setting it")
            return target

    def _apply_lock(self, key: str, version: str | None, lock: Lock) -> None:
        version_arg = {"VersionId": version} if version else {}
        self.s3.put_object_retention(
            Bucket=self.bucket,
            Key=key,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": lock.retain_until},
            **version_arg,
        )
        if lock.legal_hold:
            self.s3.put_object_legal_hold(Bucket=self.bucket, Key=key, LegalHold={"Status": "ON"}, **version_arg)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    # -- multipart state
    def _load_state(self, key: str) -> dict[str, Any] | None:
        return self.db.call(lambda db: db.table(UPLOADS).get(Query().key == key))

    def _drop_state(self, key: str) -> None:
        self.db.call(lambda db: db.table(UPLOADS).remove(Query().key == key))

    def _upload_alive(self, state: dict[str, Any]) -> bool:
        try:
            self.s3.list_parts(Bucket=self.bucket, Key=state["key"], UploadId=state["upload_id"], MaxParts=1)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return False
            raise

    def _abort(self, state: dict[str, Any]) -> None:
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=state["key"], UploadId=state["upload_id"])
        except ClientError as exc:
            log.warning("%s: could not abort upload %s: %s", state["key"], state["upload_id"], exc)
        self._drop_state(state["key"])

    def pending_uploads(self) -> list[dict[str, Any]]:
        return self.db.call(lambda db: db.table(UPLOADS).all())

    def __repr__(self) -> str:
        return f"S3Store({self.settings.endpoint}/{self.bucket}, part {self.part_size >> 20} MiB)"


class _PartPipeline:
    """Each worker reads its part (pread, in parallel), feeds it to the file's SHA-256 in part order, then
    computes its MD5 and sends it: every byte read once, hashing spread over the workers."""

    def __init__(self, store: S3Store, state: dict[str, Any], done: dict[int, bytes]) -> None:
        self.store = store
        self.state = state
        self.done = frozenset(done)
        self.md5s = dict(done)
        self.digest = hashlib.sha256()
        self._next = 1  # the part the SHA-256 needs next
        self._turn = threading.Condition()
        self._aborted = False
        self._persist = threading.Lock()

    def abort(self) -> None:
        with self._turn:
            self._aborted = True
            self._turn.notify_all()

    def run(self, fd: int, number: int) -> None:
        try:
            data = os.pread(fd, self.store.part_size, (number - 1) * self.store.part_size)
            with self._turn:
                while self._next != number and not self._aborted:
                    self._turn.wait()
                if self._aborted:
                    return
                self.digest.update(data)
                self._next += 1
                self._turn.notify_all()
            if number not in self.done:
                self._send(number, data)
        except BaseException:
            self.abort()
            raise

    def _send(self, number: int, data: bytes) -> None:
        store, key = self.store, self.state["key"]
        md5 = hashlib.md5(data).digest()
        self.md5s[number] = md5
        if store.throttle is not None:
            store.throttle(len(data))
        answer = store.s3.upload_part(
            Bucket=store.bucket,
            Key=key,
            UploadId=self.state["upload_id"],
            PartNumber=number,
            Body=data,
            ContentMD5=md5_b64(md5),
        )
        if answer["ETag"].strip('"') != md5.hex():
            raise S3StoreError(f"{key}: part {number} stored with ETag {answer['ETag']}, expected its MD5")
        with self._persist:
            store.db.call(lambda db: db.table(UPLOADS).update(_add_part(str(number), md5.hex()), Query().key == key))
        if store.on_part is not None:
            store.on_part(number)


def _add_part(number: str, md5_hex: str) -> Callable[[dict[str, Any]], None]:
    def transform(doc: dict[str, Any]) -> None:
        doc["parts"] = {**doc.get("parts", {}), number: md5_hex}

    return transform


@contextlib.contextmanager
def _translated(key: str, what: str) -> Iterator[None]:
    """boto3's errors as the CentralStore's: unavailable (the uploader backs off and retries) or refused."""
    try:
        yield
    except CentralStoreError:
        raise
    except (ClientError, BotoCoreError) as exc:
        if _unavailable(exc):
            raise StoreUnavailable(f"{key}: S3 store unavailable: {exc}") from exc
        raise S3StoreError(f"{key}: S3 refused the {what}: {exc}") from exc


def _lock_holds(head: dict[str, Any], lock: Lock) -> bool:
    until = head.get("ObjectLockRetainUntilDate")
    if head.get("ObjectLockMode") != "COMPLIANCE" or not isinstance(until, datetime):
        return False
    # S3 keeps whole seconds (some servers milliseconds): compare at second precision.
    if until.astimezone(UTC).replace(microsecond=0) < lock.retain_until.astimezone(UTC).replace(microsecond=0):
        return False
    return not lock.legal_hold or head.get("ObjectLockLegalHoldStatus") == "ON"
