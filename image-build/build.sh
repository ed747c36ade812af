#!/usr/bin/env bash
# Build the edgelive SD-card image, on either base:
#
#   image-build/build.sh --from FILE.img.xz [OUT_DIR]   Raspberry Pi OS Lite (bookworm, arm64)
#       as downloaded (.img or .img.xz): the Pi camera (picamera2, libcamera), the VideoCore
#       H.264 encoder and KMS, for Pi Zero 2 W, 3, 4, 5 and CM4. Recommended.
#   image-build/build.sh [OUT_DIR]                      Debian 12 arm64 built here: Debian's
#       kernel and the Raspberry Pi boot firmware (Pi 3, 4, 400, CM4, Zero 2 W; it also boots
#       in QEMU's virt machine), for USB (V4L2) cameras.
#
# As root; OUT_DIR defaults to build/image. Both go through the same step, customize.sh,
# which turns an image file into OUT_DIR/edgelive-arm64.img (edgelive in /opt/edgelive/venv,
# its systemd unit enabled, the board profiles' config.txt); from the Debian base it also
# leaves the kernel and initrd that boot the image in QEMU (tests/image_machine.py) beside
# it. The Debian base (mmdebstrap under qemu-user, about 22 min on 2 cores) is cached outside
# the checkout, in $EDGELIVE_IMAGE_CACHE (default /var/cache/edgelive/image), under a hash of
# its recipe, so that every clone on the machine shares it; it becomes a plain Debian image
# file (OUT_DIR/debian-arm64.img, about 1 min) that customize.sh takes like a downloaded one
# (about 2 min).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
from=
if [ "${1:-}" = --from ]; then
  [ -f "${2:-}" ] || { echo "build.sh: --from needs an image file (.img or .img.xz)" >&2; exit 1; }
  from=$(realpath "$2"); shift 2
fi
out=$(realpath -m "${1:-$repo/build/image}")
cache=$(realpath -m "${EDGELIVE_IMAGE_CACHE:-/var/cache/edgelive/image}")
suite=bookworm
mirror=${EDGELIVE_MIRROR:-http://deb.debian.org/debian}
security=${EDGELIVE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
components="main non-free-firmware"   # non-free-firmware: the Pi boot loader and Wi-Fi

step() { echo "==> $*"; }
[ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root (chroot and file ownership)" >&2; exit 1; }
for tool in mmdebstrap genimage mcopy mkfs.vfat mke2fs sfdisk resize2fs xz; do
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
# (not for --from: the base is the given image)
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
if [ -z "$from" ] && [ ! -f "$base" ]; then
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

# --- 2. the plain Debian image ------------------------------------------------------------
# The base as a Raspberry Pi SD-card image of its own: boot firmware on the FAT, the root by
# label, DHCP and DNS by systemd. Nothing of edgelive yet: customize.sh adds that.
root="$out/root"
cleanup() {  # unmount whatever an earlier, interrupted run left mounted in the root
  { grep -o " $root/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m"; done
}
debian_image() {
  trap cleanup EXIT
  cleanup
  rm -rf --one-file-system "$root"
  mkdir -p "$root"
  step "unpacking the base"
  tar -C "$root" --numeric-owner -xpf "$base"
  mount -t proc proc "$root/proc"
  mount --bind /dev "$root/dev"
  in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
  cat > "$root/etc/fstab" <<'EOF'
LABEL=RASPIROOT  /               ext4  rw,noatime,errors=remount-ro  0 1
LABEL=RASPIFIRM  /boot/firmware  vfat  rw,noatime,nofail             0 2
EOF
  # config.txt and cmdline.txt again, with the root by label.
  cat >> "$root/etc/default/raspi-firmware" <<'EOF'
# edgelive image
ROOTPART="LABEL=RASPIROOT"
# No cma= on the command line: each board's device tree sizes it (a Pi 4 given 64M may not boot).
CMA=0
CONSOLES="tty0 ttyS1,115200"
EOF
  in_root /etc/initramfs/post-update.d/z50-raspi-firmware
  in_root systemctl enable -q systemd-networkd.service systemd-resolved.service \
    systemd-timesyncd.service
  ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  cleanup
  step "packing $out/debian-arm64.img"
  rm -rf "$out/genimage.tmp"
  genimage --config "$here/genimage.cfg" --rootpath "$root" --tmppath "$out/genimage.tmp" \
    --inputpath "$out" --outputpath "$out"
  rm -rf --one-file-system "$out/genimage.tmp" "$out/bootfs.vfat" "$out/rootfs.ext4" "$root"
}

# --- 3. edgelive on the image ---------------------------------------------------------------
if [ -z "$from" ]; then
  debian_image
  from=$out/debian-arm64.img
fi
rm -rf "$out/wheels"
mkdir -p "$out/wheels"
step "edgelive and its dependencies as arm64 wheels"
"$python" -m pip wheel -q --no-deps -w "$out/wheels" "$repo"
"$python" -m pip download -q --only-binary=:all: --dest "$out/wheels" \
  --platform manylinux_2_36_aarch64 --platform manylinux_2_34_aarch64 \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
  --platform manylinux2014_aarch64 \
  --python-version 3.11 --implementation cp \
  "$(ls "$out"/wheels/edgelive-*.whl)[pi]"

img=$out/edgelive-arm64.img
step "copying $from to $img"
rm -f "$img" "$out/vmlinuz" "$out/initrd.img"
case "$from" in
  *.xz) xz -dc "$from" | cp --sparse=always /dev/stdin "$img" ;;
  *) cp --sparse=always "$from" "$img" ;;
esac
chmod 0644 "$img"   # from a pipe, cp makes it 0600
[ "$from" != "$out/debian-arm64.img" ] || rm "$from"
"$here/customize.sh" "$img" "$out/wheels"
ls -l --block-size=M "$img"
echo "Write it to an SD card, e.g.: dd if=$img of=/dev/sdX bs=4M conv=fsync"
