#!/usr/bin/env bash
# Build the edgelive SD-card image: Debian 12 arm64 with Debian's kernel and the Raspberry Pi
# boot firmware (Pi 3, 4, 400, CM4, Zero 2 W; it also boots in QEMU's virt machine), edgelive
# in /opt/edgelive/venv and its systemd unit enabled.
#
#   image-build/build.sh [OUT_DIR]        as root; OUT_DIR defaults to build/image
#
# Writes OUT_DIR/edgelive-arm64.img (for the SD card) and, beside it, the kernel and initrd
# that boot the image in QEMU (tests/test_image_boot.py). The Debian base (mmdebstrap under
# qemu-user, about 22 min on 2 cores) is cached outside the checkout, in
# $EDGELIVE_IMAGE_CACHE (default /var/cache/edgelive/image), under a hash of its recipe, so
# that every clone on the machine shares it; the edgelive layer on top is rebuilt every time
# (about 2 min).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$(realpath -m "${1:-$repo/build/image}")
cache=$(realpath -m "${EDGELIVE_IMAGE_CACHE:-/var/cache/edgelive/image}")
suite=bookworm
mirror=${EDGELIVE_MIRROR:-http://deb.debian.org/debian}
security=${EDGELIVE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
components="main non-free-firmware"   # non-free-firmware: the Pi boot loader and Wi-Fi

step() { echo "==> $*"; }
[ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root (chroot and file ownership)" >&2; exit 1; }
for tool in mmdebstrap genimage mcopy mkfs.vfat mke2fs; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
if [ "$(uname -m)" != aarch64 ] && ! arch-test arm64 >/dev/null 2>&1; then
  echo "build.sh: this machine cannot run arm64 programs; scripts/setup.sh registers" \
       "qemu-user for it" >&2
  exit 1
fi
python=$repo/.venv/bin/python   # builds the wheel and reads the board profiles
[ -x "$python" ] || { echo "build.sh: no .venv: run scripts/setup.sh first" >&2; exit 1; }
mkdir -p "$out" "$cache"

# --- 1. Debian base, cached by its package list and recipe ---------------------------------
packages=$(grep -v '^\s*#' "$here/packages.txt" | xargs | tr ' ' ,)
# No manuals, translations or docs (but licences) on a headless box.
dpkg_opts=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
           --dpkgopt='path-include=/usr/share/locale/locale.alias'
           --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright')
# Every kernel, udev or firmware package would rebuild the initramfs (minutes each under
# qemu-user): hold update-initramfs off while installing, then run it once.
hold_initramfs='set -e; chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
  printf "#!/bin/sh\nexit 0\n" > "$1/usr/sbin/update-initramfs"; chmod 755 "$1/usr/sbin/update-initramfs"'
make_initramfs='set -e; rm "$1/usr/sbin/update-initramfs"
  chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
  chroot "$1" update-initramfs -c -k all
  echo edgelive > "$1/etc/hostname"'
key=$(printf '%s\n' "$suite" "$mirror" "$packages" "${dpkg_opts[*]}" "$hold_initramfs" \
      "$make_initramfs" | sha256sum | cut -c1-12)
base="$cache/base-$key.tar"
if [ ! -f "$base" ]; then
  step "Debian $suite arm64 base ($base; about 22 min)"
  rm -f "$cache"/base-*.tar "$cache"/base-*.tar.part
  mmdebstrap --arch=arm64 --variant=minbase --format=tar --include="$packages" \
    --components="${components// /,}" "${dpkg_opts[@]}" \
    --essential-hook="$hold_initramfs" --customize-hook="$make_initramfs" \
    "$suite" "$base.part" \
    "deb $mirror $suite $components" \
    "deb $mirror $suite-updates $components" \
    "deb $security $suite-security $components"
  mv "$base.part" "$base"
fi

# --- 2. edgelive layer --------------------------------------------------------------------
root="$out/root"
cleanup() {  # unmount whatever an earlier, interrupted run left mounted in the root
  { grep -o " $root/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m"; done
}
trap cleanup EXIT
cleanup
rm -rf --one-file-system "$root" "$out/wheels"
mkdir -p "$root" "$out/wheels"
step "unpacking the base"
tar -C "$root" --numeric-owner -xpf "$base"

step "edgelive and its dependencies as arm64 wheels"
"$python" -m pip wheel -q --no-deps -w "$out/wheels" "$repo"
"$python" -m pip download -q --only-binary=:all: --dest "$out/wheels" \
  --platform manylinux_2_36_aarch64 --platform manylinux_2_34_aarch64 \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
  --platform manylinux2014_aarch64 \
  --python-version 3.11 --implementation cp \
  "$(ls "$out"/wheels/edgelive-*.whl)[pi]"

step "installing edgelive into /opt/edgelive/venv (emulated)"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp -r "$out/wheels" "$root/tmp/wheels"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# --system-site-packages: on a Raspberry Pi OS base picamera2 and pykms come from apt.
in_root python3 -m venv --system-site-packages /opt/edgelive/venv
in_root /opt/edgelive/venv/bin/pip install -q --no-index --find-links /tmp/wheels "edgelive[pi]"
ln -sf /opt/edgelive/venv/bin/edgelive "$root/usr/local/bin/edgelive"
rm -rf "$root/tmp/wheels"

step "users, service, network and boot configuration"
in_root groupadd --system gpio
in_root useradd --system --home-dir /var/lib/edgelive --no-create-home \
  --shell /usr/sbin/nologin --groups video,render,audio,gpio,systemd-journal edgelive
gid=$(in_root getent group edgelive | cut -d: -f3)
# The service, and the narrow reboot helper (a path unit + a root oneshot) for device/reboot.
for unit in edgelive.service edgelive-reboot.path edgelive-reboot.service; do
  install -D -m 0644 "$repo/systemd/$unit" "$root/etc/systemd/system/$unit"
done
mkdir -p "$root/usr/share/edgelive" "$root/opt/edgelive"
cp -r "$repo/board" "$root/usr/share/edgelive/board"
cp -r "$repo/docs" "$root/opt/edgelive/docs"
cp -r "$here/rootfs/." "$root/"
# The boot partition is writable by the edgelive group so that the box can take the secrets
# out of edgelive.toml after importing it; others cannot read it.
cat > "$root/etc/fstab" <<EOF
LABEL=RASPIROOT  /               ext4  rw,noatime,errors=remount-ro            0 1
LABEL=RASPIFIRM  /boot/firmware  vfat  rw,noatime,gid=$gid,umask=0007,nofail   0 2
EOF
"$python" "$here/config_txt.py" "$repo/board" > "$root/etc/default/raspi-firmware-custom"
in_root systemctl enable -q edgelive.service edgelive-reboot.path systemd-networkd.service \
  systemd-resolved.service systemd-timesyncd.service
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
in_root passwd -l root >/dev/null
: > "$root/etc/machine-id"          # a new id on each box's first boot
# config.txt and cmdline.txt again, with the board sections and the root by label.
cat >> "$root/etc/default/raspi-firmware" <<'EOF'
# edgelive image
ROOTPART="LABEL=RASPIROOT"
# No cma= on the command line: each board's device tree sizes it (a Pi 4 given 64M may not boot).
CMA=0
CONSOLES="tty0 ttyS1,115200"
EOF
in_root /etc/initramfs/post-update.d/z50-raspi-firmware
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
cleanup

# --- 3. the disk image --------------------------------------------------------------------
step "packing $out/edgelive-arm64.img"
cp -L "$root/vmlinuz" "$root/initrd.img" "$out/"
rm -rf "$out/genimage.tmp"
genimage --config "$here/genimage.cfg" --rootpath "$root" --tmppath "$out/genimage.tmp" \
  --inputpath "$out" --outputpath "$out"
rm -rf "$out/genimage.tmp" "$out/bootfs.vfat" "$out/rootfs.ext4"
ls -l --block-size=M "$out/edgelive-arm64.img"
echo "Write it to an SD card, e.g.: dd if=$out/edgelive-arm64.img of=/dev/sdX bs=4M conv=fsync"
