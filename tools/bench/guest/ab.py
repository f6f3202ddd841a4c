#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""A/B of rnf.ko builds in one boot of the bench VM: AB_ROUNDS rounds (default
3), each measuring no firewall, then for every module given: no rules (with
hook counters on and off), one kube rule, established flows and DNAT +
masquerade (bench.py's workloads; AB_MODES picks among empty (hook
counters on), empty_off, kube1, ct_new, ct_new6 (new IPv6 flows), ct_est,
nat (hook counters on), nat_off (DNAT +
masquerade with hook counters off), nat_est (DNAT + masquerade, its flows
replied first), dnat (the DNAT alone), nat_fwd (DNAT + masquerade behind a
FORWARD filter: state accept, then the forwarded port), nat_none
(established flows past nat rules that do not match them)), loading and
unloading the module in turn; with AB_NFT=1 also nftables' empty chain and
workloads 2-4 (nf_conntrack), and nat_est, nat_fwd and ct_new6 if asked; prints every
value and the median. Run-to-run noise under TCG is up to 15 %, so compare
builds within one boot:

    RNF_VM_PROFILE=bench KDIR=$(RNF_KERNEL=bench tools/testing/kernel.sh) \
        tools/testing/vm.sh env RNFCTL=$PWD/target/release/rnfctl \
        /usr/bin/python3 tools/bench/guest/ab.py OLD/rnf.ko NEW/rnf.ko

(each rnf.ko built for the benchmark kernel, as bench.sh builds
build/bench-module/rnf.ko).

With RNF_VM_QEMU_OPTS="-icount shift=0,align=off,sleep=on" the guest's clock
counts instructions (1 ns each) instead of following the host: packets per
second then measure instructions per packet, the same in every round and
whatever else the host runs (rounds agree within 0.1 %; one round is
enough), at about three times the wall-clock time. perf's cpu-clock
samples in such a guest fall per instruction, so profile.py under it gives
instruction profiles. It measures work, not TCG's cost of it (calls and
memory accesses cost more than other instructions under TCG).
"""
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402

mods = sys.argv[1:]
if not mods:
    sys.exit("usage: ab.py RNF_KO [RNF_KO...]")
os.makedirs(b.TMP, exist_ok=True)
os.makedirs(os.path.dirname(b.RNFCTL), exist_ok=True)
subprocess.run(["cp", b.RNFCTL_SRC, b.RNFCTL], check=True)
b.rnf_unload(); b.unload_netfilter()
res = {}
rounds = int(os.environ.get("AB_ROUNDS", "3"))
modes = os.environ.get("AB_MODES", "empty,empty_off,kube1,ct_est,nat").split(",")


for rnd in range(rounds):
    ra = b.topo_up(); b.pktgen_setup(ra)
    res.setdefault("none", []).append(b.measure())
    for i, m in enumerate(mods):
        b.MODULE = m
        b.rnf_load()
        # Each workload in a fresh namespace, as bench.py measures them (a
        # row after another in one namespace would also pay for the rules
        # and flows the earlier rows left).
        for mode in b.RNF_WORKLOADS:
            if mode in modes and b.rnf_workload(mode):
                res.setdefault(f"{i} {mode}", []).append(b.measure())
        b.topo_down()
        b.rnf_unload()
    if os.environ.get("AB_NFT"):
        # nftables with nf_conntrack/nf_nat on the same workloads, for scale.
        for label, _, v in b.empty_rows("nft") + b.stateful_rows("nft"):
            if isinstance(v, float):
                res.setdefault(f"nft {label[0]}", []).append(v)
        for mode in ("nat_est", "nat_fwd", "ct_new6"):
            if mode in modes:
                res.setdefault(f"nft {mode}", []).append(b.nft_workload(mode))
        b.topo_down()
        b.unload_netfilter()
# (A first line of its own: the VM's console has been seen to swallow the
# first line printed after a long run.)
print(f"AB results: {rounds} round(s), packets/s", flush=True)
for k, v in res.items():
    print(f"AB {k:12s} " + " ".join(f"{x:8.0f}" for x in v) + f"   median {statistics.median(v):8.0f}",
          flush=True)
