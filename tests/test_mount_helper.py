"""The root mount helper: what it refuses (wrong user, a device no bay owns, another bay's mount point,
symlinks, a mount root the station could change, garbage), that it answers every request, and the
station's client, over real UNIX sockets and real loop devices. The helper runs as its own process with
the connection on stdin, exactly as systemd's Accept=yes hands it. The swap race: test_mount_helper_race.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.volumes import VolumeError
from devices.volumes.helper import REQUEST_TIMEOUT_S, helper_request, mount_via_helper
from tests.conftest import wait_until
from tests.mount_helper_harness import HelperSocket, helper_env, loop_device, mounts_of, needs_root

pytestmark = needs_root


@pytest.fixture
def vfat_loop(tmp_path: Path) -> Iterator[Path]:
    with loop_device(tmp_path / "camera.img", "vfat") as loop:
        yield loop


@pytest.fixture
def ext4_loop(tmp_path: Path) -> Iterator[Path]:
    with loop_device(tmp_path / "camera-ext4.img", "ext4", {"DCIM/100MEDIA/A.MP4": b"clip"}) as loop:
        yield loop


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """The image's layout in miniature: root's /dev/recterm and mount root (the helper makes bay<N>)."""
    dev_dir, mount_root = tmp_path / "dev-recterm", tmp_path / "mnt"
    dev_dir.mkdir()
    mount_root.mkdir(mode=0o755)
    return {"dev_dir": dev_dir, "mount_root": mount_root}


@pytest.fixture
def helper(tmp_path: Path, layout: dict[str, Path]) -> Iterator[HelperSocket]:
    server = HelperSocket(tmp_path / "mount.sock", helper_env(layout["dev_dir"], layout["mount_root"]))
    yield server
    server.close()


def ask(helper: HelperSocket, **request: str) -> str:
    with pytest.raises(VolumeError) as refused:
        helper_request(request, helper.path)
    return str(refused.value)


def raw_ask(helper: HelperSocket, payload: bytes) -> dict[str, object]:
    """Send bytes as they are (no newline added) and read the one answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(REQUEST_TIMEOUT_S + 30)
        sock.connect(str(helper.path))
        sock.sendall(payload)
        return json.loads(sock.makefile("rb").readline())


def test_refuses_a_device_no_bay_owns(helper, layout, vfat_loop) -> None:
    reason = ask(helper, op="mount", device=str(vfat_loop), mountpoint=str(layout["mount_root"] / "bay3"))
    assert "is not a bay's storage" in reason
    wait_until(lambda: bool(helper.stderr), 30, "the helper to exit")
    assert "asked" in helper.stderr[-1] and "is not a bay's storage" in helper.stderr[-1]  # audited in the journal
    assert not (layout["mount_root"] / "bay3").exists()  # the helper removed the mount point it made


def test_refuses_another_bays_mount_point(helper, layout, vfat_loop) -> None:
    (layout["dev_dir"] / "bay3-part1").symlink_to(vfat_loop)
    reason = ask(
        helper, op="mount", device=str(layout["dev_dir"] / "bay3-part1"), mountpoint=str(layout["mount_root"] / "bay4")
    )
    assert "belongs to bay 3, not to bay 4" in reason


@pytest.mark.parametrize("where", ["outside", "symlink", "not-bay", "relative", "dot-dot", "newline"])
def test_refuses_mount_points_outside_its_root(helper, layout, vfat_loop, tmp_path, where) -> None:
    (layout["dev_dir"] / "bay3-disk").symlink_to(vfat_loop)
    target = {
        "outside": tmp_path,
        "symlink": layout["mount_root"] / "bay3",
        "not-bay": layout["mount_root"] / "etc",
        "relative": Path("mnt/bay3"),
        "dot-dot": layout["mount_root"] / ".." / "mnt" / "bay3",
        "newline": layout["mount_root"] / "bay3\n",
    }[where]
    if where == "symlink":
        target.symlink_to(tmp_path)
    if where == "not-bay":
        target.mkdir()
    reason = ask(helper, op="mount", device=str(layout["dev_dir"] / "bay3-disk"), mountpoint=str(target))
    assert "mount point" in reason
    assert not os.path.ismount(tmp_path) and mounts_of(vfat_loop) == []
    assert sorted(p.name for p in layout["mount_root"].iterdir()) == {"symlink": ["bay3"], "not-bay": ["etc"]}.get(
        where, []
    )


def test_refuses_a_character_device_and_garbage(helper, layout) -> None:
    (layout["dev_dir"] / "bay3-disk").symlink_to("/dev/null")
    reason = ask(
        helper, op="mount", device=str(layout["dev_dir"] / "bay3-disk"), mountpoint=str(layout["mount_root"] / "bay3")
    )
    assert "not a block device" in reason
    assert "op 'mount' or 'umount'" in ask(helper, op="format", mountpoint=str(layout["mount_root"] / "bay3"))
    assert "is not mounted" in ask(helper, op="umount", mountpoint=str(layout["mount_root"] / "bay3"))


def test_refuses_anyone_but_the_station_user(tmp_path, layout) -> None:
    server = HelperSocket(tmp_path / "other.sock", helper_env(layout["dev_dir"], layout["mount_root"], "nobody"))
    try:
        with pytest.raises(VolumeError, match="is not the station user nobody"):
            helper_request({"op": "umount", "mountpoint": str(layout["mount_root"] / "bay3")}, server.path)
    finally:
        server.close()


@pytest.mark.parametrize("how", ["station-owned", "world-writable", "writable-parent", "symlink", "bay-dir-owned"])
def test_refuses_a_mount_root_the_station_could_change(tmp_path, layout, ext4_loop, how) -> None:
    """Whoever may rename entries in the mount root, or above it, could swap a bay's directory for a symlink:
    the helper mounts only where every directory from / down is root's and writable by no one else."""
    nobody = 65534
    mount_root = layout["mount_root"]
    if how == "station-owned":  # the layout before: the station made <data>/run/mnt itself
        os.chown(mount_root, nobody, nobody)
    elif how == "world-writable":
        mount_root.chmod(0o777)
    elif how == "writable-parent":
        tmp_path.chmod(0o777)
    elif how == "symlink":
        (tmp_path / "real-mnt").mkdir()
        mount_root.rmdir()
        mount_root.symlink_to(tmp_path / "real-mnt")
    else:
        (mount_root / "bay3").mkdir()
        os.chown(mount_root / "bay3", nobody, nobody)
    (layout["dev_dir"] / "bay3-disk").symlink_to(ext4_loop)
    server = HelperSocket(tmp_path / "mount.sock", helper_env(layout["dev_dir"], mount_root))
    try:
        reason = ask(
            server, op="mount", device=str(layout["dev_dir"] / "bay3-disk"), mountpoint=str(mount_root / "bay3")
        )
    finally:
        server.close()
        tmp_path.chmod(0o700)
    assert (
        "is owned by uid 65534" if "owned" in how else "writable by others" if "writable" in how else "symlink"
    ) in reason
    assert mounts_of(ext4_loop) == []


def test_every_request_is_answered_however_bad(helper, layout, tmp_path) -> None:
    """Oversized, endless, nested, undecodable: each gets {"ok": false, "error": ...} and the helper exits
    cleanly, never with a traceback; so does a helper whose own set-up is broken."""
    answers = [
        raw_ask(helper, b"x" * 10_000 + b"\n"),
        raw_ask(helper, b'{"op": "mount", "device": "' + b"a" * 5000),  # never a newline
        raw_ask(helper, b"[" * 4000 + b"\n"),
        raw_ask(helper, b"\xff\xfe\n"),
        raw_ask(
            helper,
            b'{"op": "mount", "device": "/dev/\\u0000", "mountpoint": "'
            + str(layout["mount_root"]).encode()
            + b'/bay3"}\n',
        ),
        raw_ask(helper, b""),  # nothing at all: answered after the read timeout
    ]
    broken = {
        "no station user": helper_env(layout["dev_dir"], layout["mount_root"], "no-such-user"),
        "no mount root parent": helper_env(layout["dev_dir"], tmp_path / "gone" / "mnt"),
        "relative mount root": helper_env(layout["dev_dir"], Path("mnt")),
    }
    for name, env in broken.items():
        server = HelperSocket(tmp_path / f"{name.replace(' ', '-')}.sock", env)
        try:
            answers.append(raw_ask(server, b'{"op": "umount", "mountpoint": "mnt/bay3"}\n'))
            answers.append(
                raw_ask(
                    server, json.dumps({"op": "umount", "mountpoint": str(tmp_path / "gone/mnt/bay3")}).encode() + b"\n"
                )
            )
        finally:
            server.close()
    reasons = [str(a.get("error")) for a in answers]
    assert all(a["ok"] is False for a in answers), answers
    assert "request longer than 4096 bytes" in reasons[0] and "request longer than 4096 bytes" in reasons[1]
    assert "not one line of JSON" in reasons[2] and "not one line of JSON" in reasons[3]
    assert "no request line within" in reasons[5]
    assert "station user no-such-user does not exist" in reasons[6]
    assert not any("internal error" in r for r in reasons), reasons
    wait_until(lambda: len(helper.stderr) == 6, 30, "the helpers to exit")
    assert all("Traceback" not in err for err in helper.stderr) and set(helper.exit_codes) == {0}


def test_a_real_mount_read_only_through_the_helper(helper, layout, ext4_loop) -> None:
    """A real kernel mount, on a filesystem this kernel has (the test allowance): the helper makes the bay's
    directory, mounts with its own fixed flags, refuses a second mount there, unmounts and removes it."""
    (layout["dev_dir"] / "bay3-part1").symlink_to(ext4_loop)
    mountpoint = layout["mount_root"] / "bay3"
    volume = mount_via_helper(layout["dev_dir"] / "bay3-part1", "ext4", mountpoint, helper.path)
    try:
        [(where, options)] = mounts_of(ext4_loop)
        assert where == mountpoint and {"ro", "nosuid", "nodev", "noexec", "noatime"} <= options
        assert (mountpoint / "DCIM/100MEDIA/A.MP4").read_bytes() == b"clip"
        assert "already a mount point" in ask(
            helper, op="mount", device=str(layout["dev_dir"] / "bay3-part1"), mountpoint=str(mountpoint)
        )
    finally:
        volume.close()
    assert mounts_of(ext4_loop) == [] and not mountpoint.exists()


def test_requests_at_once_for_one_bay_mount_it_once(tmp_path, layout, ext4_loop) -> None:
    """systemd starts a helper per connection, several at once: each request holds the mount root's lock
    from its checks to its mount, so the others are told the bay is mounted (without it: a bare EBUSY)."""
    (layout["dev_dir"] / "bay3-disk").symlink_to(ext4_loop)
    mountpoint = layout["mount_root"] / "bay3"
    request = {"op": "mount", "device": str(layout["dev_dir"] / "bay3-disk"), "mountpoint": str(mountpoint)}
    server = HelperSocket(tmp_path / "mount.sock", helper_env(layout["dev_dir"], layout["mount_root"]), concurrent=True)
    outcomes: list[str] = []

    def mount_once() -> None:
        try:
            helper_request(request, server.path)
            outcomes.append("mounted")
        except VolumeError as exc:
            outcomes.append(str(exc))

    try:
        for _ in range(8):
            outcomes.clear()
            clients = [threading.Thread(target=mount_once) for _ in range(4)]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            stacked = len(mounts_of(ext4_loop))
            helper_request({"op": "umount", "mountpoint": str(mountpoint)}, server.path)
            while mounts_of(ext4_loop):  # a failed test must not leave mounts behind
                subprocess.run(["umount", str(mountpoint)], check=True)
            assert stacked == 1 and outcomes.count("mounted") == 1, outcomes
            assert all(o == "mounted" or "already a mount point" in o for o in outcomes), outcomes
    finally:
        server.close()


def test_the_bays_own_device_is_mounted_read_only_by_the_kernel(helper, layout, vfat_loop) -> None:
    (layout["dev_dir"] / "bay3-part1").symlink_to(vfat_loop)
    mountpoint = layout["mount_root"] / "bay3"
    if "vfat" not in Path("/proc/filesystems").read_text():
        # This kernel has no vfat: the helper must get as far as the kernel and say so.
        with pytest.raises(VolumeError, match=r"mount .*no driver"):
            mount_via_helper(layout["dev_dir"] / "bay3-part1", "vfat", mountpoint, helper.path)
        assert not mountpoint.exists()  # the helper removed the mount point it made
        pytest.skip("kernel without vfat: the mount itself is checked by make image-test in the guest")
    volume = mount_via_helper(layout["dev_dir"] / "bay3-part1", "vfat", mountpoint, helper.path)
    try:
        [(where, options)] = mounts_of(vfat_loop)
        assert where == mountpoint and {"ro", "nosuid", "nodev", "noexec"} <= options
    finally:
        volume.close()
    assert not os.path.ismount(mountpoint)
