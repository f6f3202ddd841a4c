#!/bin/bash
# `make bench`: rnf against no firewall, nftables (plain rules and sets or
# verdict maps) and iptables (legacy and nft backends), in the test VM.
#
#   tools/bench/bench.sh            full run (about 30 minutes under TCG)
#   BENCH_QUICK=1 tools/bench/bench.sh   sizes 1, 1000, 10000 only
#
# The guest (tools/bench/guest/bench.py) cannot write the checkout (it is
# shared read-only), so it prints its CSV between markers; this script
# writes bench-results/<timestamp>/{bench.log,results.csv,meta.txt,
# table.txt,bench.png} and prints the table. Other knobs: BENCH_SECONDS,
# BENCH_LOAD_BUDGET, BENCH_DEADLINE, BENCH_ROUNDS, BENCH_ONLY, BENCH_PROFILE (see bench.py),
# RNF_KVM=1 (KVM where /dev/kvm works; TCG otherwise), BENCH_ICOUNT=1 (under
# TCG, QEMU's -icount: the guest clock counts instructions, 1 ns each, so
# every packets/s figure is 1e9 / instructions per packet, the same from run
# to run whatever else the host does; about three times the wall-clock time,
# so the VM's timeout triples too), BENCH_VM_PROFILE
# (the VM's boot profile, RNF_VM_PROFILE of tools/testing/vm.sh: bench by
# default, i.e. the kernel's boot-time debugging switched off; debug keeps
# the test profile), BENCH_KERNEL (bench, the default: the benchmark kernel
# of tools/testing/kernel-bench.config, built and cached on first use, with
# rnf.ko built for it under build/bench-module; test: the test kernel of
# `make check`, KDIR, and the checkout's rnf.ko).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
out=${BENCH_OUT:-$repo/bench-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

# The kernel and the rnf.ko built for it.
kernel=${BENCH_KERNEL:-bench}
case "$kernel" in
    bench)
        kdir=$(RNF_KERNEL=bench "$repo/tools/testing/kernel.sh")
        # kbuild builds external modules in their source folder: build this
        # one from a copy of the sources, so the checkout's rnf.ko (for the
        # test kernel) stays as it is. tar keeps modification times, so an
        # unchanged source is not rebuilt.
        mdir=$repo/build/bench-module
        mkdir -p "$mdir"
        tar -C "$repo" --exclude='*.o' --exclude='.*.cmd' --exclude='*.d' \
            --exclude='*.ko' --exclude='rust/ffi_generated.rs' --exclude='rust/rnf_core/target' \
            -cf - Kbuild rust | tar -C "$mdir" -xf -
        make -s -C "$kdir" M="$mdir" LLVM=1 modules >&2
        module=$mdir/rnf.ko ;;
    test)
        kdir=${KDIR:-$("$repo/tools/testing/kernel.sh")}
        [ -f rnf.ko ] || { echo "bench.sh: no rnf.ko (make module)" >&2; exit 1; }
        module=$repo/rnf.ko ;;
    *)
        echo "bench.sh: unknown BENCH_KERNEL '$kernel' (bench or test)" >&2
        exit 2 ;;
esac
rnfctl=${RNFCTL:-$repo/target/release/rnfctl}
[ -x "$rnfctl" ] || { echo "bench.sh: no $rnfctl (cargo build --release -p rnfctl)" >&2; exit 1; }

# One VM at a time on this machine: wait for any other to finish.
while pgrep -f qemu-system >/dev/null; do
    echo "bench.sh: another VM is running; waiting 30 s" >&2
    sleep 30
done

vm_profile=${BENCH_VM_PROFILE:-bench}
accel=TCG
if [ "${RNF_KVM:-0}" = 1 ] && [ -w /dev/kvm ]; then accel=KVM; fi
vm_timeout=${BENCH_TIMEOUT:-3600}
if [ "${BENCH_ICOUNT:-0}" = 1 ]; then
    [ "$accel" = TCG ] || { echo "bench.sh: BENCH_ICOUNT=1 needs TCG (unset RNF_KVM)" >&2; exit 2; }
    export RNF_VM_QEMU_OPTS="${RNF_VM_QEMU_OPTS:+$RNF_VM_QEMU_OPTS }-icount shift=0,align=off,sleep=on"
    accel="TCG -icount shift=0 (guest time counts instructions: 1 ns each)"
    vm_timeout=${BENCH_TIMEOUT:-10800}
fi
{
    echo "command: ${BENCH_COMMAND:-make bench}${BENCH_QUICK:+ (BENCH_QUICK=$BENCH_QUICK)}${BENCH_ICOUNT:+ (BENCH_ICOUNT=$BENCH_ICOUNT)}"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- rust tools/rnfctl 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "host: nproc=$(nproc); cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); accel=$accel"
    echo "vm: ${RNF_VM_CPUS:-2} vCPUs, ${RNF_VM_MEMORY:-2G}, boot profile $vm_profile (RNF_VM_PROFILE of tools/testing/vm.sh)"
    echo "kernel: $kernel ($(basename "$kdir")$([ "$kernel" = bench ] && echo ': kernel.config + kernel-bench.config, fault finding off' || echo ': the test kernel, kernel.config'))"
} > "$out/meta.txt"
cat "$out/meta.txt"

env_args=()
for v in BENCH_QUICK BENCH_SECONDS BENCH_LOAD_BUDGET BENCH_DEADLINE BENCH_ROUNDS BENCH_ONLY BENCH_PROFILE; do
    [ -n "${!v:-}" ] && env_args+=("$v=${!v}")
done
set +e
KDIR=$kdir RNF_VM_PROFILE=$vm_profile timeout "$vm_timeout" "$repo/tools/testing/vm.sh" \
    env "${env_args[@]}" RNFCTL="$rnfctl" RNF_MODULE="$module" /usr/bin/python3 tools/bench/guest/bench.py 2>&1 | tee "$out/bench.log"
rc=${PIPESTATUS[0]}
set -e

sed -n '/^=== BENCH CSV BEGIN ===$/,/^=== BENCH CSV END ===$/p' "$out/bench.log" | sed '1d;$d' > "$out/results.csv"
sed -n '/^=== BENCH META BEGIN ===$/,/^=== BENCH META END ===$/p' "$out/bench.log" | sed '1d;$d' >> "$out/meta.txt"
if [ ! -s "$out/results.csv" ]; then
    echo "bench.sh: the guest printed no results (exit $rc); see $out/bench.log" >&2
    exit 1
fi
python3 "$here/report.py" "$out"
echo "bench.sh: results in $out"
