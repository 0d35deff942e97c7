#!/usr/bin/env bash
# Installs frugal's build and test dependencies from Debian 12 packages.
# Idempotent: packages already present are skipped, so a second run does nothing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  libsentencepiece-dev libpcre2-dev nlohmann-json3-dev libcli11-dev libfmt-dev
  libcpp-httplib-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3-numpy
  chromium  # tests/server: the chat page is driven headless over the DevTools pipe (no driver needed)
  qemu-user  # tests/cli: the binary runs under emulated CPUs without AVX-512 and without AVX2
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
