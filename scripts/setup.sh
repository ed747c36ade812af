#!/usr/bin/env bash
# One-time set-up of a Debian 12 machine for edgelive development, tests and the demo:
# the real servers the tests talk to (mosquitto, nginx-rtmp, ffmpeg), SDL2, and a venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mosquitto mosquitto-clients nginx-light libnginx-mod-rtmp ffmpeg iproute2
              libsdl2-2.0-0 python3-venv python3-dev fonts-dejavu-core openssl)

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
