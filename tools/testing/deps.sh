#!/bin/bash
# Install what building and testing rnf needs on a Debian 12 machine, as
# root. Idempotent: each step is skipped when its result is already there.
set -euo pipefail

log() { echo "deps.sh: $*" >&2; }
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

# Debian packages: the kernel source and its build tools (clang/lld/llvm 14
# for LLVM=1), QEMU for the test VM, udev (virtme-ng needs it to find the
# guest's virtio-serial ports), and the userspace the tests drive.
pkgs=(
    linux-source-6.12 clang lld llvm libelf-dev libssl-dev flex bison bc cpio
    kmod xz-utils zstd python3-pip
    qemu-system-x86 busybox-static udev
    iproute2 iputils-ping socat netcat-openbsd ethtool nftables iptables
)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Rust: the kernel builds its `core` from source.
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
    log "adding rust-src"
    rustup component add rust-src
fi
# bindgen for the kernel's and rnf's bindings (0.73 is known to work).
if ! command -v bindgen >/dev/null; then
    log "installing bindgen-cli"
    cargo install --locked bindgen-cli@0.73.2
fi
# virtme-ng runs the test VM.
if ! command -v vng >/dev/null; then
    log "installing virtme-ng"
    pip install --quiet virtme-ng==1.42 || pip install --quiet --break-system-packages virtme-ng==1.42
fi
exit 0
