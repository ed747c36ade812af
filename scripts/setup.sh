#!/usr/bin/env bash
# One-time set-up of a Debian 12 machine for edgelive development, tests and the demo:
# the real servers the tests talk to (mosquitto, nginx-rtmp, ffmpeg), SDL2, the image builder's
# tools (mmdebstrap and qemu-user for arm64, genimage, mtools, qemu-system for the boot test),
# and a venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mosquitto mosquitto-clients nginx-light libnginx-mod-rtmp ffmpeg iproute2
              libsdl2-2.0-0 python3-venv python3-dev fonts-dejavu-core openssl
              mmdebstrap qemu-user-static binfmt-support arch-test genimage mtools dosfstools
              e2fsprogs fdisk xz-utils qemu-system-arm ipxe-qemu chromium chromium-driver)
# ipxe-qemu: the boot test's virtio-net-pci NIC needs its option ROM (efi-virtio.rom), a
# Recommends of qemu-system-arm that --no-install-recommends leaves out. The test boots the
# kernel directly, so no UEFI firmware (qemu-efi-aarch64) is needed.
# chromium + chromium-driver: the web console's tests run it headless through Selenium.

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The packages start system-wide daemons; edgelive runs its own on free ports.
  for svc in nginx mosquitto; do $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
fi

# The image build runs arm64 programs through qemu-user, registered with binfmt_misc (a
# container may not have it mounted, nor registered by the package's postinst).
if ! arch-test arm64 >/dev/null 2>&1 && [ "$(uname -m)" != aarch64 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  mountpoint -q /proc/sys/fs/binfmt_misc \
    || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  $SUDO update-binfmts --enable qemu-aarch64
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import edgelive, pytest" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  echo "==> installing edgelive and its dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch .venv/.installed
fi
