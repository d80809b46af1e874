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
out=$(readlink -f "${1:-$repo/build/image}")
mirror=${MIRROR:-http://deb.debian.org/debian}
security_mirror=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
update_key=${UPDATE_KEY_PUB:-$repo/var/keys/dev-update.pub.pem}
pip=${PIP:-$repo/.venv/bin/pip}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}
export SOURCE_DATE_EPOCH
version=${VERSION:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)}

# Partition sizes (MiB). The data partition grows to the whole card/SSD on first boot.
BOOT_MB=256
SLOT_MB=${SLOT_MB:-3072}
DATA_MB=512

rootfs=$out/rootfs
log() { printf '%s build: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap in directory mode, device ownership in the images)"
for tool in mmdebstrap mkfs.ext4 mkfs.vfat mcopy sfdisk qemu-aarch64-static; do
    command -v "$tool" >/dev/null || die "$tool is missing (make image installs the build packages)"
done
[ -f "$update_key" ] || die "no update public key at $update_key (make bundle makes the development key)"

# A UUID and a FAT serial from SOURCE_DATE_EPOCH, so two builds of one commit give the same images.
uuid_for() { printf '%s' "$SOURCE_DATE_EPOCH-$1" | sha256sum | sed -E 's/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*/\1-\2-4\3-8\4-\5/'; }

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
    # the station
    python3 python3-venv ca-certificates iproute2 libusb-1.0-0
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

log "boot files: firmware, kernel, initrd, device trees, per-slot cmdline"
kernel=$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n 1)
kver=${kernel##*/vmlinuz-}
staging=$out/boot
mkdir -p "$staging/slot-A" "$staging/slot-B"
cp "$rootfs"/usr/lib/raspi-firmware/*.elf "$rootfs"/usr/lib/raspi-firmware/*.dat "$staging/" 2>/dev/null || true
cp "$rootfs"/usr/lib/raspi-firmware/bootcode.bin "$staging/" 2>/dev/null || true
cp "$here/boot/config.txt" "$staging/config.txt"
printf 'os_prefix=slot-A/\n' > "$staging/slot.txt"
printf '{"primary": "A", "trial": null, "tries_left": 0}\n' > "$staging/recterm-boot.json"
for slot in A B; do
    cp "$kernel" "$staging/slot-$slot/vmlinuz"
    cp "$rootfs/boot/initrd.img-$kver" "$staging/slot-$slot/initrd.img"
    cp "$rootfs"/usr/lib/linux-image-"$kver"/broadcom/bcm27*.dtb "$staging/slot-$slot/"
    sed "s/@SLOT@/$slot/" "$here/boot/cmdline.txt" > "$staging/slot-$slot/cmdline.txt"
done
cp "$kernel" "$out/qemu/vmlinuz"
cp "$rootfs/boot/initrd.img-$kver" "$out/qemu/initrd.img"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C "$staging/slot-A" -cf "$out/boot-slot.tar" .

log "file system images"
find "$staging" "$rootfs" -xdev -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +
mkfs.vfat -F 32 -n BOOT -i "$(printf '%08x' "$SOURCE_DATE_EPOCH")" -C "$out/boot.img" $((BOOT_MB * 1024)) >/dev/null
(cd "$staging" && mcopy -s -p -m -i "$out/boot.img" ./* ::/)
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L rootfs -U "$(uuid_for root)" \
    -E "hash_seed=$(uuid_for root-hash),root_owner=0:0" -T default -O ^has_journal,metadata_csum \
    -d "$rootfs" "$out/root.img" "${SLOT_MB}M"
skeleton=$out/data-skeleton
recterm_ids=$(awk -F: '$1 == "recterm" { print $3 ":" $4 }' "$rootfs/etc/passwd")
mkdir -p "$skeleton"/{config,journal,systemd,recterm}
cp -a "$rootfs/var/lib/systemd/." "$skeleton/systemd/"  # /var/lib/systemd is bound from the data partition
chown "$recterm_ids" "$skeleton/recterm"
chmod 0750 "$skeleton/recterm"
chmod 2755 "$skeleton/journal"
chown "0:$(awk -F: '$1 == "systemd-journal" { print $3 }' "$rootfs/etc/group")" "$skeleton/journal"
touch -d "@$SOURCE_DATE_EPOCH" "$skeleton" "$skeleton"/*
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L data -U "$(uuid_for data)" \
    -E "hash_seed=$(uuid_for data-hash),root_owner=0:0" -O metadata_csum -d "$skeleton" "$out/data.img" "${DATA_MB}M"

log "disk image (GPT: boot, rootA, rootB, data)"
disk=$out/disk.img
total_mb=$((1 + BOOT_MB + 2 * SLOT_MB + DATA_MB + 1))
truncate -s "${total_mb}M" "$disk"
sfdisk --quiet --label gpt --disk-id "$(uuid_for disk)" "$disk" <<EOF
start=1MiB, size=${BOOT_MB}MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=boot, uuid=$(uuid_for p1)
size=${SLOT_MB}MiB, type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, name=rootA, uuid=$(uuid_for p2)
size=${SLOT_MB}MiB, type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, name=rootB, uuid=$(uuid_for p3)
size=${DATA_MB}MiB, type=0FC63DAF-8483-4772-8E7D-3D69D8477DE4, name=data, uuid=$(uuid_for p4)
EOF
offset=1
for part in boot.img:$BOOT_MB root.img:$SLOT_MB skip:$SLOT_MB data.img:$DATA_MB; do
    file=${part%%:*}
    size=${part##*:}
    if [ "$file" != skip ]; then
        dd if="$out/$file" of="$disk" bs=1M seek="$offset" conv=notrunc,sparse status=none
    fi
    offset=$((offset + size))
done

log "bill of materials"
"$here/bom.py" --rootfs "$rootfs" --wheels "$out/wheels" --version "$version" \
    --image "$disk" --image "$out/root.img" --json "$out/bom.json" --text "$out/bom.txt"
rm -rf "$skeleton" "$staging"
log "done: $disk ($(du -h --apparent-size "$disk" | cut -f1) sparse, $(du -h "$disk" | cut -f1) used)"
