#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""A/B of rnf.ko builds in one boot of the bench VM: 3 rounds, each measuring
no firewall, then for every module given: no rules, one kube rule,
established flows and DNAT + masquerade (bench.py's workloads), loading and
unloading the module in turn; prints every value and the median. Run-to-run
noise under TCG is up to 15 %, so compare builds within one boot:

    RNF_VM_PROFILE=bench KDIR=$(RNF_KERNEL=bench tools/testing/kernel.sh) \
        tools/testing/vm.sh env RNFCTL=$PWD/target/release/rnfctl \
        /usr/bin/python3 tools/bench/guest/ab.py OLD/rnf.ko NEW/rnf.ko

(each rnf.ko built for the benchmark kernel, as bench.sh builds
build/bench-module/rnf.ko).
"""
import os
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
for rnd in range(3):
    ra = b.topo_up(); b.pktgen_setup(ra)
    res.setdefault("none", []).append(b.measure())
    for i, m in enumerate(mods):
        b.MODULE = m
        b.rnf_load()
        ra = b.topo_up(); b.pktgen_setup(ra)
        res.setdefault(f"{i} empty", []).append(b.measure())
        if b.sh([b.RNFCTL, "hook-counters", "off"], ns="r", check=False).returncode == 0:
            res.setdefault(f"{i} empty_off", []).append(b.measure())
            b.sh([b.RNFCTL, "hook-counters", "on"], ns="r")
        b.load_rules("rnf", 1, "kube")
        res.setdefault(f"{i} kube1", []).append(b.measure())
        b.ct_rules("rnf")
        b.establish((10000, 10003))
        b.pktgen_setup(ra, sport=(10000, 10003))
        res.setdefault(f"{i} ct_est", []).append(b.measure())
        b.nat_rules("rnf")
        b.pktgen_setup(ra, dst="10.0.1.1", dport=(b.NAT_PORT, b.NAT_PORT), sport=(10000, 10015))
        res.setdefault(f"{i} nat", []).append(b.measure())
        b.topo_down()
        b.rnf_unload()
for k, v in res.items():
    print(f"AB {k:12s} " + " ".join(f"{x:8.0f}" for x in v) + f"   median {sorted(v)[1]:8.0f}", flush=True)
