#!/usr/bin/env bash
# Turn a Raspberry Pi SD-card image file into an edgelive image, in place: the one
# customization step for both bases, Raspberry Pi OS Lite (bookworm, arm64) as downloaded and
# the plain Debian image that build.sh makes from its own base.
#
#   image-build/customize.sh IMAGE WHEELS_DIR     as root; build.sh calls it
#
# IMAGE has a FAT boot partition (1) and an ext4 root (2), as both bases lay them out. The
# root is mounted through a loop device at its offset (no partition device nodes needed), the
# FAT is read and written with mtools (no vfat driver needed on the build machine). The base
# is told by its root: Raspberry Pi OS has /etc/rpi-issue. Installs, from the image's own apt
# sources, the packages of packages-common.txt and packages-<base>.txt that are missing; the
# edgelive wheels from WHEELS_DIR into /opt/edgelive/venv (with the system's site packages,
# where picamera2 and pykms come from on Raspberry Pi OS); the service, the files of rootfs/,
# the board profiles' config.txt sections and the edgelive user. The root partition is grown
# first when it has less than 1 GiB free.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
img=$(realpath "$1")
wheels=$(realpath "$2")
python=$repo/.venv/bin/python   # reads the board profiles
work=$(mktemp -d "${TMPDIR:-/tmp}/edgelive-customize.XXXXXX")
root=$work/root
loop=
step() { echo "==> $*"; }

cleanup() {
  { grep -o " $root[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m"; done
  [ -z "$loop" ] || losetup -d "$loop" 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# Partition N's start and size in bytes, from the MBR (sfdisk reads the file, no device).
part() {  # part N start|size
  sfdisk -J "$img" | "$python" -c 'import json, sys
t = json.load(sys.stdin)["partitiontable"]
p = t["partitions"][int(sys.argv[1]) - 1]
print(p[sys.argv[2]] * t.get("sectorsize", 512))' "$1" "$2"
}
fat="$img@@$(part 1 start)"
export MTOOLS_SKIP_CHECK=1

# --- room for the venv and the packages ----------------------------------------------------
root_start=$(part 2 start)
loop=$(losetup -f --show -o "$root_start" --sizelimit "$(part 2 size)" "$img")
e2fsck -fy "$loop" >/dev/null || [ $? -le 1 ]   # 1: errors corrected
free=$(dumpe2fs -h "$loop" 2>/dev/null | awk -F: '
  /^Free blocks/ {f=$2} /^Block size/ {b=$2} END {print f*b}')
want=$((1024 * 1024 * 1024))
if [ "$free" -lt "$want" ]; then
  grow=$(( (want - free + 64 * 1024 * 1024) / (1024 * 1024) ))
  step "growing the root partition by ${grow} MiB"
  losetup -d "$loop"; loop=
  truncate -s "+${grow}M" "$img"
  echo ", +" | sfdisk -q --no-reread --no-tell-kernel -N 2 "$img"
  loop=$(losetup -f --show -o "$root_start" --sizelimit "$(part 2 size)" "$img")
  resize2fs -p "$loop" >/dev/null
fi

step "mounting the root, the boot partition's files beside it"
mkdir -p "$root"
mount "$loop" "$root"
base=debian
[ -e "$root/etc/rpi-issue" ] && base=pios
echo "base: $base"
# The boot partition's files go into /boot/firmware, where the base's own tools (Debian's
# raspi-firmware hook) expect them, and back onto the FAT at the end.
mkdir -p "$root/boot/firmware"
[ -z "$(ls -A "$root/boot/firmware")" ] || { echo "customize.sh: /boot/firmware in the root is not empty" >&2; exit 1; }
mcopy -s -n -p -m -Q -i "$fat" '::*' "$root/boot/firmware/"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive "$@"; }

# --- apt packages from the image's own repositories ----------------------------------------
packages=$(cat "$here/packages-common.txt" "$here/packages-$base.txt" | grep -v '^\s*#' | xargs)
missing=()
for p in $packages; do
  in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt packages: ${missing[*]}"
  # The chroot resolves names through the build machine's resolver while apt runs.
  mv "$root/etc/resolv.conf" "$work/resolv.conf" 2>/dev/null || true
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  in_root apt-get update -q
  in_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  in_root apt-get clean
  rm -f "$root/etc/resolv.conf"
  mv "$work/resolv.conf" "$root/etc/resolv.conf" 2>/dev/null || true
  rm -rf "$root"/var/lib/apt/lists/*
fi

step "installing edgelive into /opt/edgelive/venv (emulated)"
rm -rf "$root/opt/edgelive/venv"
cp -r "$wheels" "$root/tmp/wheels"
# --system-site-packages: on Raspberry Pi OS picamera2, libcamera and pykms come from apt.
in_root python3 -m venv --system-site-packages /opt/edgelive/venv
in_root /opt/edgelive/venv/bin/pip install -q --no-index --find-links /tmp/wheels "edgelive[pi]"
ln -sf /opt/edgelive/venv/bin/edgelive "$root/usr/local/bin/edgelive"
rm -rf "$root/tmp/wheels"

step "user, service and boot configuration"
in_root getent group gpio >/dev/null || in_root groupadd --system gpio
in_root getent passwd edgelive >/dev/null || in_root useradd --system --home-dir /var/lib/edgelive \
  --no-create-home --shell /usr/sbin/nologin --groups video,render,audio,gpio,systemd-journal edgelive
gid=$(in_root getent group edgelive | cut -d: -f3)
# The service, and the narrow reboot helper (a path unit + a root oneshot) for device/reboot.
for unit in edgelive.service edgelive-reboot.path edgelive-reboot.service; do
  install -D -m 0644 "$repo/systemd/$unit" "$root/etc/systemd/system/$unit"
done
# Updates (docs/updates.md): the venv is the first release, current and good point at it;
# the service owns the slots and links, root the keys (ReadOnlyPaths= in the unit). The key
# is $EDGELIVE_RELEASE_PUB, else a development pair made once beside the image.
version=$(in_root /opt/edgelive/venv/bin/python -c 'import edgelive; print(edgelive.__version__)')
slot="$root/opt/edgelive/releases/$version"
install -d "$slot/bin" "$root/opt/edgelive/keys" "$root/opt/edgelive/downloads"
printf '#!/bin/sh\n# edgelive %s, the release the image came with\nexec /opt/edgelive/venv/bin/edgelive "$@"\n' \
  "$version" > "$slot/bin/edgelive"
chmod 755 "$slot/bin/edgelive"
ln -sfn "releases/$version" "$root/opt/edgelive/current"
ln -sfn "releases/$version" "$root/opt/edgelive/good"
pub=${EDGELIVE_RELEASE_PUB:-$(dirname "$img")/release-dev.pub}
if [ -z "${EDGELIVE_RELEASE_PUB:-}" ] && [ ! -f "$pub" ]; then
  echo "customize.sh: EDGELIVE_RELEASE_PUB not set: a development key pair beside the image" >&2
  "$python" -m edgelive release keygen --out "${pub%.pub}" >/dev/null
fi
install -m 0644 "$pub" "$root/opt/edgelive/keys/release.pub"
in_root chown -R edgelive:edgelive /opt/edgelive/releases /opt/edgelive/downloads
in_root chown edgelive:edgelive /opt/edgelive
mkdir -p "$root/usr/share/edgelive" "$root/opt/edgelive"
rm -rf "$root/usr/share/edgelive/board" "$root/opt/edgelive/docs"
cp -r "$repo/board" "$root/usr/share/edgelive/board"
cp -r "$repo/docs" "$root/opt/edgelive/docs"
cp -r "$here/rootfs/." "$root/"
# The boot partition is writable by the edgelive group so that the box can take the secrets
# out of edgelive.toml after importing it; others cannot read it.
awk -v opts="rw,noatime,gid=$gid,umask=0007,nofail" \
  '$2 == "/boot/firmware" && $3 == "vfat" {$4 = opts} {print}' "$root/etc/fstab" > "$work/fstab"
grep -q ' /boot/firmware vfat ' "$work/fstab" || { echo "customize.sh: no /boot/firmware in fstab" >&2; exit 1; }
cat "$work/fstab" > "$root/etc/fstab"
# The board profiles' config.txt sections (camera auto-detect, KMS, HDMI audio), each under
# its model filter so one image serves every board.
if [ "$base" = pios ]; then
  # Raspberry Pi OS reads /boot/firmware/config.txt as it is: our block replaces an earlier one.
  "$python" - "$root/boot/firmware/config.txt" "$repo/board" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, str(Path(sys.argv[2]).parent / "image-build"))
from config_txt import config_txt, with_block
path = Path(sys.argv[1])
path.write_text(with_block(path.read_text(), config_txt(Path(sys.argv[2]))))
EOF
else
  # Debian's raspi-firmware writes config.txt and appends this file to it.
  "$python" "$here/config_txt.py" "$repo/board" > "$root/etc/default/raspi-firmware-custom"
  in_root /etc/initramfs/post-update.d/z50-raspi-firmware
fi
in_root systemctl enable -q edgelive.service edgelive-reboot.path
in_root passwd -l root >/dev/null
: > "$root/etc/machine-id"          # a new id on each box's first boot
rm -rf "$root"/var/cache/apt/archives/*.deb

# The Debian base's kernel and initrd, beside the image, boot it in QEMU (the Pi boots its own
# copies from the FAT).
[ ! -e "$root/vmlinuz" ] || cp -L "$root/vmlinuz" "$root/initrd.img" "$(dirname "$img")/"

step "writing the boot partition back"
mcopy -s -o -p -m -Q -i "$fat" "$root"/boot/firmware/* ::/
rm -rf "${root:?}"/boot/firmware/*
