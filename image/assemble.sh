#!/bin/bash
# Second half of image/build.sh, also runnable alone on a finished tree: OUT/rootfs (the customised root)
# and OUT/wheels -> boot files, file system images, the GPT disk image and the bill of materials.
#   image/assemble.sh OUT VERSION      (root; SOURCE_DATE_EPOCH as for build.sh)
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")
repo=$(dirname "$here")
out=$(readlink -f "$1")
version=$2
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}
export SOURCE_DATE_EPOCH
rootfs=$out/rootfs

# Partition sizes (MiB). The data partition grows to the whole card/SSD on first boot.
BOOT_MB=256
SLOT_MB=${SLOT_MB:-3072}
DATA_MB=512

log() { printf '%s build: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# A UUID from SOURCE_DATE_EPOCH, so two builds of one commit give the same images.
uuid_for() { printf '%s' "$SOURCE_DATE_EPOCH-$1" | sha256sum | sed -E 's/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*/\1-\2-4\3-8\4-\5/'; }

[ -x "$rootfs/opt/recterm/bin/recterm" ] || die "no customised tree in $rootfs (run image/build.sh)"
rm -rf "${out:?}/boot" "${out:?}/data-skeleton"
rm -f "$out"/{boot,root,data,disk}.img "$out/boot-slot.tar"
mkdir -p "$out/qemu"

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
# --invariant: the label entry mkfs.vfat writes would carry the time of the build
mkfs.vfat -F 32 --invariant -n BOOT -i "$(printf '%08x' "$SOURCE_DATE_EPOCH")" -C "$out/boot.img" $((BOOT_MB * 1024)) >/dev/null
(cd "$staging" && mcopy -s -p -m -i "$out/boot.img" ./* ::/)
# mke2fs -d copies each file's ctime and atime from the tree, and those are the time of this build (touch
# sets ctime to now); debugfs sets both to SOURCE_DATE_EPOCH on every inode in use (e2fsprogs 1.47.1 and later
# clamp them themselves). The inode numbers come from a read-only mount of the new file system.
pin_inode_times() {  # IMAGE
    local mnt commands
    mnt=$(mktemp -d)
    commands=$(mktemp)
    mount -o ro,noload,loop "$1" "$mnt"
    find "$mnt" -xdev -printf '%i\n' | sort -un \
        | awk -v t="@$SOURCE_DATE_EPOCH" '{ print "sif <" $1 "> ctime " t; print "sif <" $1 "> atime " t }' >"$commands"
    umount "$mnt"
    rmdir "$mnt"
    local errors  # debugfs exits 0 whatever its commands did: its complaints (past the banner) are the errors
    errors=$(E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$commands" "$1" 2>&1 >/dev/null \
        | grep -v '^debugfs [0-9]' || true)
    rm "$commands"
    [ -z "$errors" ] || { echo "assemble: debugfs on $1: $errors" >&2; exit 1; }
}
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L rootfs -U "$(uuid_for root)" \
    -E "hash_seed=$(uuid_for root-hash),root_owner=0:0" -T default -O ^has_journal,metadata_csum \
    -d "$rootfs" "$out/root.img" "${SLOT_MB}M"
pin_inode_times "$out/root.img"
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
pin_inode_times "$out/data.img"

log "disk image (GPT: boot, rootA, rootB, data)"
disk=$out/disk.img
total_mb=$((1 + BOOT_MB + 2 * SLOT_MB + DATA_MB + 1))
truncate -s "${total_mb}M" "$disk"
sfdisk --quiet "$disk" <<EOF
label: gpt
label-id: $(uuid_for disk)
start=1MiB, size=${BOOT_MB}MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=boot, uuid=$(uuid_for p1)
size=${SLOT_MB}MiB, type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, name=rootA, uuid=$(uuid_for p2)
size=${SLOT_MB}MiB, type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, name=rootB, uuid=$(uuid_for p3)
size=${DATA_MB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data, uuid=$(uuid_for p4)
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
