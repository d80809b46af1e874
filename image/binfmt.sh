#!/bin/bash
# Let this (x86_64) kernel run arm64 programs through qemu-user-static, as mmdebstrap needs for the
# package scripts: mount binfmt_misc if it is not, then register qemu-aarch64 with the F flag (the
# interpreter is opened now, so it also works inside the image's chroot).
set -euo pipefail

binfmt=/proc/sys/fs/binfmt_misc
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
if [ "$(uname -m)" = aarch64 ]; then
    exit 0
fi
if [ ! -e "$binfmt/register" ]; then
    mount -t binfmt_misc binfmt_misc "$binfmt"
fi
if [ ! -e "$binfmt/qemu-aarch64" ]; then
    [ -f "$conf" ] || { echo "binfmt.sh: $conf missing (install qemu-user-static)" >&2; exit 1; }
    cat "$conf" > "$binfmt/register"
fi
grep -q '^enabled' "$binfmt/qemu-aarch64" || { echo "binfmt.sh: qemu-aarch64 is not enabled" >&2; exit 1; }
grep -q '^flags: .*F' "$binfmt/qemu-aarch64" || { echo "binfmt.sh: qemu-aarch64 lacks the F flag" >&2; exit 1; }
