#!/bin/bash
# mmdebstrap customize hook: turn the installed Debian tree ($1) into the station's root slot.
#   customize.sh ROOT WHEELS_DIR UPDATE_KEY_PUB VERSION
set -euo pipefail

root=$1
wheels=$2
update_key=$3
version=$4
here=$(dirname "$(readlink -f "$0")")
in_root() { chroot "$root" "$@"; }

echo "customize: overlay (units, udev, fstab, journald, scripts, kiosk page)"
# Every file and folder of the overlay dated SOURCE_DATE_EPOCH: a checkout's own file times differ per clone.
tar -C "$here/rootfs" --owner=0 --group=0 --numeric-owner --mtime="@${SOURCE_DATE_EPOCH:?}" -cf - . \
    | tar -C "$root" -xf - --no-same-owner
mkdir -p "$root/data" "$root/var/lib/recterm" "$root/boot/firmware"
rm -rf "$root/etc/recterm"
ln -s /data/config "$root/etc/recterm"
install -D -m 0644 "$update_key" "$root/usr/share/recterm/update-keys/$(basename "$update_key")"
install -D -m 0644 "$here/README.md" "$root/usr/share/doc/recterm/README.md"
printf '%s\n' "$version" > "$root/usr/share/recterm/version"

echo "customize: users"
in_root groupadd --system --force render
in_root useradd --system --user-group --home-dir /var/lib/recterm --no-create-home \
    --shell /usr/sbin/nologin --comment "records terminal station" recterm
in_root useradd --system --user-group --home-dir /run/recterm-kiosk --no-create-home \
    --shell /usr/sbin/nologin --groups video,render,input --comment "records terminal kiosk" kiosk
in_root passwd --lock root >/dev/null

echo "customize: the station in /opt/recterm from its wheel, dependencies as pinned"
mkdir -p "$root/tmp/wheels"
cp "$wheels"/*.whl "$root/tmp/wheels/"
in_root python3 -m venv /opt/recterm
in_root /opt/recterm/bin/pip install --quiet --no-index --find-links /tmp/wheels --no-cache-dir records-terminal
rm -rf "$root/tmp/wheels"

echo "customize: system configuration"
printf 'recterm\n' > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\trecterm\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
: > "$root/etc/machine-id"  # read-only root: systemd makes a transient one; firstboot pins it
in_root systemctl enable recterm.service recterm-kiosk.service recterm-firstboot.service \
    recterm-udev.service recterm-mount.socket recterm-lowvoltage.service recterm-boot-ok.service \
    systemd-networkd.service systemd-resolved.service systemd-timesyncd.service
in_root systemctl set-default graphical.target
# Nothing may write to the read-only root on a timer.
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service

echo "customize: systemd-analyze verify (inside the image, every program present)"
in_root sh -c 'systemd-analyze verify /etc/systemd/system/recterm*.service /etc/systemd/system/recterm*.socket'

echo "customize: clean"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
    "$root"/var/log/* "$root"/etc/ssh/ssh_host_*
