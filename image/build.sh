#!/bin/bash
# Build the station's OS image: Debian bookworm arm64 for Raspberry Pi 4/5 (image/README.md).
#
#   image/build.sh [OUT_DIR]          (make image; needs root, mmdebstrap, qemu-user-static, mtools)
#
# Out: disk.img (GPT: boot FAT32, rootA, rootB, data), root.img (slot image, also the update payload),
# boot-slot.tar (the slot's boot files), qemu/ (kernel + initrd for make image-test), bom.json + bom.txt.
# Reproducible: SOURCE_DATE_EPOCH (default: the last commit's time) fixes every time stamp, file system
# UUIDs and FAT serial are derived from it, packages come from one archive state (MIRROR; point it at
# snapshot.debian.org/archive/debian/<time> to rebuild an old image bit for bit) and Python packages
# from image/requirements-arm64.lock.
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")
repo=$(dirname "$here")
out=$(realpath -m "${1:-$repo/build/image}")  # -m: on a fresh clone build/ does not exist yet
mirror=${MIRROR:-http://deb.debian.org/debian}
security_mirror=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
update_key=${UPDATE_KEY_PUB:-$repo/var/keys/dev-update.pub.pem}
pip=${PIP:-$repo/.venv/bin/pip}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}
export SOURCE_DATE_EPOCH
version=${VERSION:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)}

rootfs=$out/rootfs
log() { printf '%s build: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap in directory mode, device ownership in the images)"
for tool in mmdebstrap mkfs.ext4 debugfs mkfs.vfat mcopy sfdisk qemu-aarch64-static; do
    command -v "$tool" >/dev/null || die "$tool is missing (make image installs the build packages)"
done
[ -f "$update_key" ] || die "no update public key at $update_key (make bundle makes the development key)"


"$here/binfmt.sh"

rm -rf "$out"
mkdir -p "$out/wheels" "$out/qemu"

log "wheels: the station and its pinned dependencies (aarch64, CPython 3.11)"
"$pip" wheel -q --no-deps -w "$out/wheels" "$repo"
"$pip" download -q --no-deps --only-binary=:all: --python-version 311 --implementation cp \
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
    --platform linux_aarch64 -d "$out/wheels" -r "$here/requirements-arm64.lock"

packages=(
    # boot and base system
    systemd systemd-sysv systemd-timesyncd systemd-resolved udev dbus kmod initramfs-tools
    linux-image-arm64 raspi-firmware
    # storage: camera file systems, growing the data partition, fsck
    e2fsprogs dosfstools exfatprogs util-linux cloud-guest-utils fdisk
    # the station (tzdata: station.timezone and the work calendar); ffprobe reads recordings' durations (gaps), Pango lays out the PDF reports (WeasyPrint)
    python3 python3-venv ca-certificates tzdata iproute2 libusb-1.0-0 ffmpeg libpango-1.0-0 libpangoft2-1.0-0
    # the kiosk
    cage chromium fonts-noto-cjk
)
# shellcheck disable=SC2016 # $1 is mmdebstrap's (the tree), expanded by the hook's shell
firmware_hook='mkdir -p "$1/boot/firmware"'  # raspi-firmware's kernel hook wants it
log "mmdebstrap: bookworm arm64, ${#packages[@]} packages and their dependencies"
started=$(date +%s)
nice mmdebstrap \
    --architectures=arm64 \
    --variant=apt \
    --components="main non-free-firmware" \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/zh_CN/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --essential-hook="$firmware_hook" \
    --customize-hook="\"$here/customize.sh\" \"\$1\" \"$out/wheels\" \"$update_key\" \"$version\"" \
    bookworm "$rootfs" \
    "deb $mirror bookworm main non-free-firmware" \
    "deb $mirror bookworm-updates main non-free-firmware" \
    "deb $security_mirror bookworm-security main non-free-firmware"
log "mmdebstrap and customisation took $(( $(date +%s) - started )) s"

"$here/assemble.sh" "$out" "$version"
