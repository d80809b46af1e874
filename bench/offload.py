"""Offload throughput: the station's pipeline (copy + SHA-256 in one pass, fdatasync, read-back verify)
against `cp` then `sha256sum` of the same files, read through the same exFAT (exfat-fuse) mount, in the
same run. Prints the ratio baseline_time / pipeline_time (>= 1.0 means the pipeline is not slower).

    .venv/bin/python bench/offload.py [--cameras 1] [--files 8] [--mib 32]

Target (../shared/performance.md B1/B2): ratio >= 1.0 for 1 and 8 cameras; camera bytes read per byte
stored <= 1.01. Read amplification is measured on the loop device under the camera image.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from _common import drop_caches  # bench/_common.py: the script directory is on sys.path

from appliance.store import LocalStore
from devices.sim import media
from devices.volumes import Volume, open_volume


def make_camera(root: Path, index: int, files: int, mib: int) -> Path:
    image = root / f"cam{index}.img"
    media.create_image(image, "exfat", files * mib + 64, label=f"CAM{index}")
    src = root / f"src{index}"
    src.mkdir()
    pairs = []
    for i in range(files):
        path = src / f"REC{i:04d}.MP4"
        with open(path, "wb") as fh:
            for _ in range(mib):
                fh.write(os.urandom(2**20))
        pairs.append((f"DCIM/20260305/REC{i:04d}.MP4", path))
    media.add_files(image, pairs)
    for _, path in pairs:
        path.unlink()
    return image


def loop_sectors_read(mountpoint: Path) -> int:
    """Sectors read so far from the loop device backing a FUSE mount (field 3 of /sys/block/loopN/stat)."""
    source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mountpoint)], capture_output=True, text=True)
    name = Path(source.stdout.strip()).name
    if not name.startswith("loop"):
        return 0
    return int(Path(f"/sys/block/{name}/stat").read_text().split()[2])


def baseline(mounts: list[Path], dest: Path) -> float:
    def one(i: int, mnt: Path) -> None:
        target = dest / f"cp{i}"
        subprocess.run(["cp", "-r", str(mnt / "DCIM"), str(target)], check=True)
        subprocess.run(["sync"], check=True)
        files = sorted(str(p) for p in target.rglob("*.MP4"))
        subprocess.run(["sha256sum", *files], check=True, capture_output=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(len(mounts)) as pool:
        list(pool.map(one, range(len(mounts)), mounts))
    return time.perf_counter() - start


def pipeline(volumes: list[Volume], store: LocalStore) -> tuple[float, int]:
    def one(volume: Volume) -> int:
        total = 0
        for entry in volume.entries():
            with volume.open(entry.path) as src:
                total += store.ingest(src, entry.size).size
        return total

    start = time.perf_counter()
    with ThreadPoolExecutor(len(volumes)) as pool:
        stored = sum(pool.map(one, volumes))
    return time.perf_counter() - start, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--mib", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-offload-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        print(f"{datetime.now():%H:%M:%S} making {args.cameras} exFAT camera(s), {args.files} x {args.mib} MiB")
        images = [make_camera(root, i, args.files, args.mib) for i in range(args.cameras)]
        volumes = [open_volume(img, "userspace", root / f"mnt{i}") for i, img in enumerate(images)]
        try:
            mounts = [root / f"mnt{i}" for i in range(args.cameras)]
            drop_caches()
            (root / "cp").mkdir()
            before = sum(loop_sectors_read(m) for m in mounts)
            t_base = baseline(mounts, root / "cp")
            base_read = (sum(loop_sectors_read(m) for m in mounts) - before) * 512
            drop_caches()
            before = sum(loop_sectors_read(m) for m in mounts)
            store = LocalStore(root / "store")
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t_pipe, stored = pipeline(volumes, store)
            rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            read_bytes = (sum(loop_sectors_read(m) for m in mounts) - before) * 512
        finally:
            for volume in volumes:
                volume.close()
    total_mb = stored / 1e6
    print(f"baseline cp + sync + sha256sum: {t_base:.2f} s ({total_mb / t_base:.0f} MB/s)")
    print(f"pipeline copy+hash+fsync+verify: {t_pipe:.2f} s ({total_mb / t_pipe:.0f} MB/s)")
    if read_bytes:
        # Measured on the loop device under exfat-fuse, so it includes the filesystem's own metadata reads;
        # cp through the same mount is the floor any reader of that mount pays.
        print(f"camera bytes read per byte stored: {read_bytes / stored:.3f} (cp: {base_read / stored:.3f})")
    # Peak RSS of this process (KiB on Linux): run with a larger --mib to see it stay flat in file size.
    print(f"peak RSS {rss_peak / 1024:.0f} MiB (grew {(rss_peak - rss_before) / 1024:.1f} MiB during the pipeline)")
    print(f"ratio: {t_base / t_pipe:.2f}")


if __name__ == "__main__":
    main()
