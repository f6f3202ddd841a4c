#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Where rnf's profile samples fall in its source: reads what
tools/bench/guest/profile.py printed (its ``symbol+offset`` lines per
workload) and maps each offset to the functions inlined there and the rnf
source line, with the DWARF of the same rnf.ko. Nearly everything rnf does
per packet is inlined into one netfilter callback, so the flat profile says
little on its own; this says how the callback's samples split between
parsing, tracking, NAT, rule evaluation and counting.

The rnf.ko must be the profiled one, built with debug info (the code is the
same as without; the debug sections are not loaded):

    BK=$(RNF_KERNEL=bench tools/testing/kernel.sh)
    mkdir -p build/prof && tar cf - Kbuild rust | tar xf - -C build/prof
    make -C $BK M=$PWD/build/prof LLVM=1 KRUSTFLAGS=-Cdebuginfo=2 modules
    KDIR=$BK RNF_VM_PROFILE=bench \\
        RNF_VM_QEMU_OPTS="-icount shift=0,align=off,sleep=on" \\
        tools/testing/vm.sh env RNFCTL=$PWD/target/release/rnfctl MODES=nat \\
        TOPN=2000 /usr/bin/python3 tools/bench/guest/profile.py \\
        build/prof/rnf.ko > prof.txt
    tools/bench/srcline.py build/prof/rnf.ko prof.txt nat
    tools/bench/srcline.py build/prof/rnf.ko prof.txt nat --within nat_packet

Prints the samples per inlined function (inclusive: a sample counts for
every function inlined at its address) and per rnf source line (the
innermost frame in rnf's own files). With --within, only samples with that
function among their frames. Needs llvm-nm and llvm-symbolizer (LLVM 14, as
the kernel build uses).
"""
import argparse
import collections
import re
import shutil
import subprocess
import sys


def tool(name):
    for cand in (f"{name}-14", name):
        if shutil.which(cand):
            return cand
    sys.exit(f"srcline.py: {name} not found (apt install llvm-14)")


def symbols(ko):
    out = subprocess.run([tool("llvm-nm"), ko], capture_output=True, text=True, check=True).stdout
    addr = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            addr[parts[2]] = int(parts[0], 16)
    return addr


def samples(prof, mode, addr):
    """[(count, address)] of the workload's rnf sample offsets."""
    text = open(prof).read()
    section = next((s for s in text.split("=== ") if s.startswith(mode + " ")), None)
    if section is None:
        sys.exit(f"srcline.py: no workload {mode!r} in {prof}")
    out, total = [], 0
    for line in section.splitlines():
        m = re.match(r"\s*(\d+) (\S+)\+0x([0-9a-f]+)$", line)
        if m and m[2] in addr:
            out.append((int(m[1]), addr[m[2]] + int(m[3], 16)))
        m = re.search(r"\((\d+) samples in all\)", line)
        if m:
            total = int(m[1])
    return out, total


def frames(ko, addrs):
    """For each address, [(function, file:line)] innermost first."""
    out = subprocess.run([tool("llvm-symbolizer"), f"--obj={ko}", "--inlining",
                          "--functions=linkage", "--demangle"],
                         input="\n".join(hex(a) for a in addrs), capture_output=True,
                         text=True, check=True).stdout
    result = []
    for block in out.strip().split("\n\n"):
        lines = block.splitlines()
        fr = []
        for i in range(0, len(lines) - 1, 2):
            func = re.sub(r"::h[0-9a-f]{16}$", "", lines[i])
            loc = lines[i + 1]
            if "/rustlib/" not in loc:
                # rnf's own files, from the module's top: rust/...
                loc = re.sub(r"^.*?/(rust/)", r"\1", loc)
            fr.append((func, loc))
        result.append(fr)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ko")
    ap.add_argument("profile")
    ap.add_argument("mode")
    ap.add_argument("--within", help="only samples with this function among their frames")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    s, total = samples(a.profile, a.mode, symbols(a.ko))
    incl, line = collections.Counter(), collections.Counter()
    n_rnf = 0
    for (n, _), fr in zip(s, frames(a.ko, [x for _, x in s])):
        if a.within and not any(a.within in f for f, _ in fr):
            continue
        n_rnf += n
        for f in {f for f, _ in fr}:
            incl[f] += n
        own = next((loc for _, loc in fr if loc.startswith("rust/")), fr[0][1] if fr else "?")
        line[own] += n
    print(f"{a.mode}: {n_rnf} samples in rnf" + (f" within {a.within}" if a.within else "")
          + f", of {total} in all")
    if not n_rnf:
        return
    print("--- by inlined function (inclusive)")
    for f, n in incl.most_common(a.top):
        print(f"{n:7d} {100 * n / n_rnf:5.1f}% {f}")
    print("--- by rnf source line")
    for loc, n in line.most_common(a.top):
        print(f"{n:7d} {100 * n / n_rnf:5.1f}% {loc}")


if __name__ == "__main__":
    main()
