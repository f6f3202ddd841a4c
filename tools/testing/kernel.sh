#!/bin/bash
# Build (or reuse) the rnf test kernel.
#
# The kernel is Debian's linux-source-6.12, configured from x86_64 allnoconfig
# plus tools/testing/kernel.config, built with LLVM=1 and Rust. Output lives in
# a cache outside the checkout, keyed by kernel version and config hash, so
# only the first run pays for it.
#
#   tools/testing/kernel.sh          build if needed, print the build dir
#   RNF_CACHE=/path ...              cache root (default ~/.cache/rnf)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${RNF_CACHE:-$HOME/.cache/rnf}
tarball=/usr/src/linux-source-6.12.tar.xz
fragment=$here/kernel.config
jobs=${RNF_JOBS:-$(nproc)}

log() { echo "kernel.sh: $*" >&2; }

[ -r "$tarball" ] || { log "missing $tarball (run tools/testing/deps.sh)"; exit 1; }

# Source tree, extracted once per Debian package version.
pkgver=$(dpkg-query -W -f='${Version}' linux-source-6.12)
src=$cache/src/linux-source-6.12-$pkgver
if [ ! -f "$src/.rnf-extracted" ]; then
    log "extracting $tarball ($pkgver)"
    rm -rf "$src" "$src.tmp"
    mkdir -p "$src.tmp"
    tar -C "$src.tmp" -xf "$tarball"
    mv "$src.tmp/linux-source-6.12" "$src"
    rmdir "$src.tmp"
    touch "$src/.rnf-extracted"
fi

kver=$(make -s -C "$src" kernelversion)
tools="$(clang --version | head -n1) / $(rustc --version) / $(bindgen --version 2>&1 | head -n1)"
key=$( { cat "$fragment"; echo "$pkgver"; echo "$tools"; } | sha256sum | cut -c1-12)
out=$cache/kernel-$kver-$key

if [ -f "$out/.rnf-built" ]; then
    echo "$out"
    exit 0
fi

log "building Linux $kver into $out (cold build; cached afterwards)"
start=$(date +%s)
mkdir -p "$out"
mk() { make -C "$src" O="$out" LLVM=1 -j"$jobs" "$@"; }
mk -s rustavailable >&2
mk -s allnoconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$fragment" >/dev/null
mk -s olddefconfig >&2
# Every line of the fragment must have survived olddefconfig: a silently
# dropped option (an unmet dependency) would make the tests lie.
missing=0
while IFS= read -r line; do
    case "$line" in ''|'#'*) continue ;; esac
    opt=${line%%=*}; val=${line#*=}
    if [ "$val" = n ]; then
        grep -qx "$opt=[ym]" "$out/.config" && { log "option $opt should be off"; missing=1; }
    else
        grep -qx "$line" "$out/.config" || { log "option not applied: $line (got: $(grep "^$opt=" "$out/.config" || echo unset))"; missing=1; }
    fi
done < "$fragment"
[ $missing = 0 ] || { log "config fragment not applied; fix tools/testing/kernel.config"; exit 1; }

mk bzImage modules >&2
# virtme-ng (--mods=use) boots with the modules installed here.
(cd "$out" && virtme-prep-kdir-mods) >&2
touch "$out/.rnf-built"
log "built in $(( $(date +%s) - start )) s"
echo "$out"
