"""The camera control function set shared by every vendor driver and transport."""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from datetime import datetime


class CameraError(Exception):
    """The camera did not do what was asked; the message says what and why."""


class CameraAuthError(CameraError):
    """The camera refused the device password."""


class CameraGone(CameraError):
    """The camera stopped answering or its port vanished (undocked, reset)."""


# ZFY_INFO field sizes in bytes, as the vendors' libraries define them (GB18030 text, NUL padded).
ZFY_FIELDS = {"serial": 7, "police_no": 6, "name": 32, "unit_code": 12, "unit_name": 32}
ZFY_ENCODING = "gb18030"


@dataclass(frozen=True)
class CameraIdentity:
    vendor: str
    model: str
    serial: str
    firmware: str


@dataclass(frozen=True)
class OfficerRecord:
    """ZFY_INFO: who the camera is issued to, as written into the device."""

    serial: str
    police_no: str
    name: str
    unit_code: str
    unit_name: str

    def __post_init__(self) -> None:
        for field, size in ZFY_FIELDS.items():
            value = getattr(self, field)
            encoded = value.encode(ZFY_ENCODING)
            if len(encoded) > size:
                raise ValueError(f"ZFY_INFO {field} is {len(encoded)} bytes, at most {size}")
            if "\x00" in value:
                raise ValueError(f"ZFY_INFO {field} contains NUL")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class StorageStatus:
    total_bytes: int
    free_bytes: int


class CameraControl(abc.ABC):
    """One camera's control functions. Blocking: call from a worker thread, never the event loop."""

    @abc.abstractmethod
    def init(self) -> None: ...

    @abc.abstractmethod
    def identity(self) -> CameraIdentity: ...

    @abc.abstractmethod
    def read_officer(self) -> OfficerRecord: ...

    @abc.abstractmethod
    def write_officer(self, record: OfficerRecord) -> None: ...

    @abc.abstractmethod
    def read_clock(self) -> datetime: ...

    @abc.abstractmethod
    def set_clock(self, when: datetime) -> None: ...

    @abc.abstractmethod
    def enter_mass_storage(self) -> None: ...

    @abc.abstractmethod
    def resolution(self) -> str: ...

    @abc.abstractmethod
    def battery_pct(self) -> int: ...

    @abc.abstractmethod
    def storage(self) -> StorageStatus: ...

    @abc.abstractmethod
    def free_recordings(self, camera_paths: list[str]) -> None:
        """Delete recordings on the camera. Only ever called after their copies are verified."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> CameraControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
