#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Flat profiles of one rnf.ko in the bench VM, with where inside rnf's
functions the samples fall: for each workload (MODES, comma-separated, of
kube100k, block1, block100k and ab.py's workloads: empty, kube1, ct_new,
ct_est, nat, dnat, nat_fwd, nat_none and the others of bench.RNF_WORKLOADS;
default empty, kube1, ct_est, nat) it prints ``perf report --sort sym``
and the most sampled ``symbol+offset`` of rnf (TOPN, default 120), to be
read against ``objdump -dr`` of the same rnf.ko. Under TCG samples land at
the start of translated blocks, so they pile up right after calls and
branches: an offset just after a call is the call's cost. With a module
built with debug info, tools/bench/srcline.py maps those offsets to the
inlined functions and rnf source lines (see its help).

    RNF_VM_PROFILE=bench KDIR=$(RNF_KERNEL=bench tools/testing/kernel.sh) \\
        tools/testing/vm.sh env RNFCTL=$PWD/target/release/rnfctl MODES=kube1 \\
        /usr/bin/python3 tools/bench/guest/profile.py build/bench-module/rnf.ko

With ENGINE=nft (no RNF_KO) it profiles nftables with nf_conntrack and
nf_nat on the same workloads (empty, ct_new, ct_est, nat, ct_new6), for
the comparison: the flat profile only, down to PERCENT (default 0.3) percent.
"""
import collections
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402

ENGINE = os.environ.get("ENGINE", "rnf")
if len(sys.argv) != (2 if ENGINE == "rnf" else 1):
    sys.exit("usage: profile.py RNF_KO, or ENGINE=nft profile.py")
if ENGINE == "rnf":
    b.MODULE = os.path.abspath(sys.argv[1])
os.makedirs(b.TMP, exist_ok=True)
os.makedirs(os.path.dirname(b.RNFCTL), exist_ok=True)
subprocess.run(["cp", b.RNFCTL_SRC, b.RNFCTL], check=True)
b.rnf_unload()
b.unload_netfilter()
if ENGINE == "rnf":
    b.rnf_load()


def prof(what):
    data = f"{b.TMP}/perf.data"
    p = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-a", "-o", data, "--",
                          "sleep", str(b.SECONDS)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pps = b.measure(during=lambda: p.wait())
    rep = b.sh(["perf", "report", "-i", data, "--stdio", "--sort", "sym", "--percent-limit",
                os.environ.get("PERCENT", "0.3"),
                "--kallsyms=/proc/kallsyms"], check=False)
    print(f"=== {what} {pps:.0f} pps", flush=True)
    for line in rep.stdout.splitlines():
        if line.strip() and not line.startswith("#"):
            print(line)
    sc = b.sh(["perf", "script", "-i", data, "-F", "ip,sym,symoff", "--kallsyms=/proc/kallsyms"],
              check=False)
    at = collections.Counter()
    total = 0
    for line in sc.stdout.splitlines():
        total += 1
        parts = line.split()
        if len(parts) >= 2 and ("rnf" in parts[1] or parts[1].startswith("_R")):
            at[parts[1]] += 1
    print(f"--- rnf sample offsets ({total} samples in all)")
    for sym, n in at.most_common(int(os.environ.get("TOPN", "120"))):
        print(f"{n:6d} {sym}")


modes = os.environ.get("MODES", "empty,kube1,ct_est,nat").split(",")
# Each workload in a fresh namespace (b.rnf_workload), as bench.py measures
# it: one after another in a namespace, a profile would also show the rules
# and flows the earlier workloads left.
for mode in modes:
    shape = mode.rstrip("0123456789k")
    if ENGINE != "rnf":
        ra = b.topo_up()
        b.pktgen_setup(ra)
        if mode == "empty":
            b.nft_empty_chain()
        elif mode in ("ct_new", "ct_est", "nat"):
            b.stateful_setup(ENGINE, mode, ra)
        elif mode == "ct_new6":
            b.ct_new6_setup(ra, ENGINE)
        else:
            sys.exit(f"profile.py: mode {mode} is for rnf only")
    elif mode in b.RNF_WORKLOADS:
        b.rnf_workload(mode)
    elif shape in ("kube", "block") and mode[len(shape):] in ("1", "100k"):
        b.rnf_workload("empty_off")
        b.load_rules("rnf", 1 if mode.endswith("1") else 100000, shape)
    else:
        sys.exit(f"profile.py: unknown mode {mode}")
    prof(mode)
    b.topo_down()
if ENGINE == "rnf":
    b.rnf_unload()
else:
    b.unload_netfilter()
