"""Mounting through file descriptors, for the root mount helper.

A path is resolved again at every use, so whoever can rename an entry on it can swap what a check saw for
something else before the use (a directory for a symlink, say, with renameat2 RENAME_EXCHANGE). Here every
directory and device node is opened once, without following a symlink where one could be planted, checked
with fstat, and then used only through its descriptor: as ``dir_fd`` or as ``/proc/self/fd/N``, which the
kernel follows to the open file itself, not to whatever now has its name.

mount(2) and umount2(2) are called directly (ctypes) rather than through mount(8): mount(8), even with
``--no-canonicalize``, is a program that may look the type up in fstab, run a ``/sbin/mount.<type>``
helper and reparse the options; the system call does exactly one thing with the descriptor paths.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME = 0x1, 0x2, 0x4, 0x8, 0x400
MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME}
UMOUNT_NOFOLLOW = 0x8
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded (find_library would run ldconfig)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


class UnsafePath(Exception):
    """A directory or node that someone other than root could change, or that is not what it must be."""


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def check_dir(fd: int, shown: str, *, sticky_ok: bool = False) -> None:
    """``fd`` is a directory owned by root that no one else may write to. ``sticky_ok`` also lets a
    world-writable sticky directory (/tmp) pass: in it the kernel lets no one else rename, remove or
    exchange root's own entries, and the next component is checked to be root's."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{shown} is not a directory")
    if st.st_uid != 0:
        raise UnsafePath(f"{shown} is owned by uid {st.st_uid}, not by root")
    if st.st_mode & 0o022 and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        raise UnsafePath(f"{shown} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})")


def open_dir_at(dir_fd: int, name: str, shown: str, *, create: bool = False) -> tuple[int, bool]:
    """An O_PATH descriptor on the directory ``name`` in ``dir_fd`` (never through a symlink), made 0755 first
    if missing and ``create``. Returns (fd, whether it was made here); unchecked: see check_dir."""
    created = False
    try:
        try:
            return os.open(name, _DIR, dir_fd=dir_fd), created
        except FileNotFoundError:
            if not create:
                raise
        try:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
            created = True
        except FileExistsError:
            pass
        return os.open(name, _DIR, dir_fd=dir_fd), created
    except FileNotFoundError:
        raise UnsafePath(f"{shown} does not exist") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):  # O_DIRECTORY|O_NOFOLLOW on a symlink or a file
            raise UnsafePath(f"{shown} is a symlink or not a directory") from None
        raise UnsafePath(f"{shown}: {exc.strerror}") from None


def open_trusted_dir(path: Path, *, create: bool = False) -> int:
    """An O_PATH descriptor on ``path``, reached from / one component at a time without following a symlink,
    each component root's and writable by no one else (sticky ancestors allowed, see check_dir; the last
    component strictly). ``create`` makes the last component if it is missing."""
    if not path.is_absolute() or ".." in path.parts:
        raise UnsafePath(f"{path} is not an absolute path without '..'")
    parts = path.parts[1:]
    fd = os.open("/", _DIR)
    try:
        check_dir(fd, "/", sticky_ok=bool(parts))
        walked = Path("/")
        for index, part in enumerate(parts):
            walked /= part
            last = index == len(parts) - 1
            child, _ = open_dir_at(fd, part, str(walked), create=create and last)
            os.close(fd)
            fd = child
            check_dir(fd, str(walked), sticky_ok=not last)
    except BaseException:
        os.close(fd)
        raise
    return fd


def mount_id(fd: int) -> int:
    """The id of the mount ``fd`` is on: a directory with something mounted on it opens as the mounted root,
    whose mount id differs from its parent directory's."""
    with open(f"/proc/self/fdinfo/{fd}") as info:
        for line in info:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise UnsafePath(f"no mount id for descriptor {fd}")


def mount(source_fd: int, target_fd: int, fs_type: str, flags: int, data: str) -> None:
    """Mount the block device open as ``source_fd`` on the directory open as ``target_fd``; OSError if the
    kernel refuses. The kernel follows both /proc/self/fd links to the very files checked."""
    if _libc.mount(fd_path(source_fd).encode(), fd_path(target_fd).encode(), fs_type.encode(), flags, data.encode()):
        _raise_errno()


def unmount_at(dir_fd: int, name: str) -> None:
    """Unmount what is mounted on ``name`` in the directory open as ``dir_fd``, not following ``name`` if it
    is a symlink. (An fd on the mount itself would keep it busy, so the name is looked up in its parent's fd.)"""
    if _libc.umount2(f"{fd_path(dir_fd)}/{name}".encode(), UMOUNT_NOFOLLOW):
        _raise_errno()


def _raise_errno() -> None:
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code))
