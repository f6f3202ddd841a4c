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
#   RNF_KERNEL=bench ...             the benchmark kernel: kernel.config with
#                                    kernel-bench.config's overrides (the
#                                    fault-finding options off)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${RNF_CACHE:-$HOME/.cache/rnf}
tarball=/usr/src/linux-source-6.12.tar.xz
fragments=("$here/kernel.config")
flavour=${RNF_KERNEL:-test}
case "$flavour" in
    test) ;;
    bench) fragments+=("$here/kernel-bench.config") ;;
    *) echo "kernel.sh: unknown RNF_KERNEL '$flavour' (test or bench)" >&2; exit 2 ;;
esac
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
key=$( { cat "${fragments[@]}"; echo "$pkgver"; echo "$tools"; } | sha256sum | cut -c1-12)
if [ "$flavour" = test ]; then
    out=$cache/kernel-$kver-$key
else
    out=$cache/kernel-$flavour-$kver-$key
fi

if [ -f "$out/.rnf-built" ]; then
    echo "$out"
    exit 0
fi

log "building Linux $kver ($flavour kernel) into $out (cold build; cached afterwards)"
start=$(date +%s)
mkdir -p "$out"
mk() { make -C "$src" O="$out" LLVM=1 -j"$jobs" "$@"; }
mk -s rustavailable >&2
mk -s allnoconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${fragments[@]}" >/dev/null
mk -s olddefconfig >&2
# Every option of the fragments (the last value given, as merge_config.sh
# takes it) must have survived olddefconfig: a silently dropped option (an
# unmet dependency) would make the tests lie.
declare -A want=()
order=()
for f in "${fragments[@]}"; do
    while IFS= read -r line; do
        case "$line" in ''|'#'*) continue ;; esac
        opt=${line%%=*}
        [ -n "${want[$opt]+set}" ] || order+=("$opt")
        want[$opt]=${line#*=}
    done < "$f"
done
missing=0
for opt in "${order[@]}"; do
    val=${want[$opt]}
    if [ "$val" = n ]; then
        grep -qx "$opt=[ym]" "$out/.config" && { log "option $opt should be off"; missing=1; }
    else
        grep -qx "$opt=$val" "$out/.config" || { log "option not applied: $opt=$val (got: $(grep "^$opt=" "$out/.config" || echo unset))"; missing=1; }
    fi
done
[ $missing = 0 ] || { log "config fragments not applied; fix ${fragments[*]}"; exit 1; }

mk bzImage modules >&2
# virtme-ng (--mods=use) boots with the modules installed here.
(cd "$out" && virtme-prep-kdir-mods) >&2
touch "$out/.rnf-built"
log "built in $(( $(date +%s) - start )) s"
echo "$out"
