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
# RNF_KVM=1 is set and /dev/kvm is usable.
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
args+=(--append "quiet loglevel=4 oops=panic panic=-1 kunit.stats_enabled=0 slub_debug=FZP")

if [ $# -eq 0 ]; then
    exec vng "${args[@]}"
fi
# vng --exec takes one string: quote each argument for the guest shell.
cmd=$(printf '%q ' "$@")
exec vng "${args[@]}" --exec "$cmd"
