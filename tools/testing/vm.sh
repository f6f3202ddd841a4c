#!/bin/bash
# Boot the rnf test kernel in a VM (virtme-ng) over the host's filesystem
# and run a command in it as root; with no command, an interactive shell.
#
#   tools/testing/vm.sh [COMMAND [ARGS...]]
#
# The guest sees this checkout at the same path, read-only; the command's
# output comes back on stdout and its exit status is vm.sh's.
#
# Nested KVM hangs on the machines this project is developed on (QEMU 7.2
# stalls while decompressing the kernel), so the VM runs under TCG unless
# RNF_KVM=1 is set and /dev/kvm is usable. RNF_VM_PROFILE=bench boots
# without the debugging that can be switched off at boot (see below).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kdir=${KDIR:-$("$here/kernel.sh")}
mem=${RNF_VM_MEMORY:-2G}
cpus=${RNF_VM_CPUS:-2}

args=(--run "$kdir" --force-9p --memory "$mem" --cpus "$cpus" --user root
      --cwd "$repo")
if [ "${RNF_KVM:-0}" = 1 ] && [ -w /dev/kvm ]; then
    :
else
    args+=(--disable-kvm)
fi
# Quiet console; panic on oops so a crash ends the run instead of hanging.
append="quiet loglevel=4 oops=panic panic=-1 kunit.stats_enabled=0"
# RNF_VM_PROFILE picks the debugging done at boot (the kernel is the same):
#   debug (default)  SLUB debugging on top of what the kernel has built in
#                    (lockdep with PROVE_LOCKING, kmemleak, KFENCE, ...)
#   bench            what can be switched off at boot switched off: no SLUB
#                    debugging, kmemleak off, KFENCE off, lockdep's
#                    dependency checking off (lock tracking stays: the
#                    hooks are compiled in; see Documentation/performance.rst)
case "${RNF_VM_PROFILE:-debug}" in
    debug)
        append+=" slub_debug=FZP" ;;
    bench)
        append+=" kmemleak=off kfence.sample_interval=0 lockdep.prove_locking=0" ;;
    *)
        echo "vm.sh: unknown RNF_VM_PROFILE '$RNF_VM_PROFILE' (debug or bench)" >&2
        exit 2 ;;
esac
args+=(--append "$append")
# Extra QEMU options, such as -icount for benchmarks whose guest clock
# should count instructions, not host time.
if [ -n "${RNF_VM_QEMU_OPTS:-}" ]; then
    args+=(--qemu-opts "$RNF_VM_QEMU_OPTS")
fi

if [ $# -eq 0 ]; then
    exec vng "${args[@]}"
fi
# vng --exec takes one string: quote each argument for the guest shell.
cmd=$(printf '%q ' "$@")
exec vng "${args[@]}" --exec "$cmd"
