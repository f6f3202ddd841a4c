#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The filter targets that TCG's noise leaves unsettled, in one boot:
bench.py's side-by-side rounds (rnf with 1, 10,000 and 100,000 rules of
the kube and block shapes; iptables-legacy with 10,000), with the
no-firewall baseline measured first. The verdicts are report.py's own
(its targets() over these rows): the cost ratio of 100,000 rules to 1 rule
(the per-packet forwarding time, 1/pps, at 100,000 rules over that at 1
rule; target at most 1.25) and rnf's packets/s at 10,000 rules over
iptables-legacy's (target at least 10). It also prints the ratio of the
firewall's own cost, 1/pps - 1/baseline, which the target does not ask
for. Meant for -icount, where one round is exact (PAIRS_ROUNDS, default
1):

    RNF_VM_PROFILE=bench KDIR=$(RNF_KERNEL=bench tools/testing/kernel.sh) \\
        RNF_VM_QEMU_OPTS="-icount shift=0,align=off,sleep=on" \\
        tools/testing/vm.sh env RNFCTL=$PWD/target/release/rnfctl \\
        RNF_MODULE=$PWD/build/bench-module/rnf.ko \\
        /usr/bin/python3 tools/bench/guest/pairs.py
"""
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench as b  # noqa: E402
import report  # noqa: E402

b.ROUNDS = int(os.environ.get("PAIRS_ROUNDS", "1"))
os.makedirs(b.TMP, exist_ok=True)
os.makedirs(os.path.dirname(b.RNFCTL), exist_ok=True)
subprocess.run(["cp", b.RNFCTL_SRC, b.RNFCTL], check=True)
b.rnf_unload()
b.unload_netfilter()
b.baseline("pairs.py")
b.topo_down()
b.pair_rounds()

base = next(r["value"] for r in b.rows if r["workload"] == "baseline")
print(f"PAIRS results: baseline {base:.0f} pkt/s", flush=True)
for r in b.rows:
    if r["workload"] == "filter_pair":
        print(f"PAIRS {r['shape']:5s} {r['engine']:16s} {r['rules']!s:>6} {r['value']!s:>10} "
              f"{r['note']}", flush=True)


# The targets as report.py's targets() judges the side-by-side rows, with
# its compared() (it reads CSV rows: strings).
data = [{k: str(v) for k, v in r.items()} for r in b.rows]
big = max(b.SIZES)
for shape in ("kube", "block"):
    pair = dict(workload="filter_pair", shape=shape, engine="rnf")
    ratio, detail, _ = report.compared(data, dict(pair, rules=1), dict(pair, rules=big))
    if ratio is not None:
        print(f"PAIRS {shape}: cost at {big} rules / 1 rule: {detail} (target <= 1.25: "
              f"{'met' if ratio <= 1.25 else 'MISSED'})", flush=True)
    pair = dict(workload="filter_pair", shape=shape, rules=10000)
    ratio, detail, _ = report.compared(data, dict(pair, engine="rnf"),
                                       dict(pair, engine="iptables-legacy"))
    if ratio is not None:
        print(f"PAIRS {shape}: rnf / iptables-legacy at 10000 rules: {detail} (target >= 10: "
              f"{'met' if ratio >= 10 else 'MISSED'})", flush=True)


def rounds(shape, engine, n):
    return [r["value"] for r in b.rows if r["workload"] == "filter_pair" and r["shape"] == shape
            and r["engine"] == engine and r["rules"] == n and isinstance(r["value"], float)]


def cost(pps):
    return 1 / pps - 1 / base


# Not a target: the firewall's own cost (beyond the no-firewall path).
for shape in ("kube", "block"):
    one, big = rounds(shape, "rnf", 1), rounds(shape, "rnf", max(b.SIZES))
    if one and big:
        ratios = [cost(y) / cost(x) for x, y in zip(one, big)]
        print(f"PAIRS {shape}: rnf's own cost at {max(b.SIZES)} rules / 1 rule "
              f"(1/pps - 1/baseline): {statistics.median(ratios):.3f} (rounds "
              + " ".join(f"{x:.3f}" for x in ratios) + ")", flush=True)
