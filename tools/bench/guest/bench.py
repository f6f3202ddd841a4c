#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""rnf benchmark, run as root inside the test VM (tools/bench/bench.sh).

Traffic: kernel pktgen in namespace a sends 64-byte UDP packets out of a's
veth toward b through the router namespace r; the rate is the packets per
second that arrive at b's veth (its rx counter) over a fixed interval. b
drops them at once: r's neighbour entry for the sink address 10.0.2.3 is a
MAC address that is not b's, so b's stack discards each frame before IP.
The firewall under test runs in r (FORWARD, or nat PREROUTING/POSTROUTING).

    a (10.0.1.2) --va/ra-- r (10.0.1.1 | 10.0.2.1) --rb/vb-- b (10.0.2.2; sink 10.0.2.3)

Every configuration is measured in fresh namespaces. rnf.ko is loaded only
for rnf's own rows, and nf_conntrack/nf_nat (and the iptables/nftables
modules) are unloaded before them; no rnf row shares a run with
nf_conntrack, and no nftables/iptables row with rnf.ko.

Results go to stdout: human lines, then the CSV between the lines
"=== BENCH CSV BEGIN ===" and "=== BENCH CSV END ===" (the checkout is
read-only in the guest; the host script writes the files).

Environment: BENCH_QUICK=1 (sizes 1, 1000, 10000), BENCH_SECONDS (length of
one measurement, default 3), BENCH_LOAD_BUDGET (skip a rule-set size whose
load is estimated to take longer, seconds, default 90), BENCH_DEADLINE
(seconds after which remaining configurations are skipped, default 2700),
BENCH_ROUNDS (rounds of the rows that compare engines, default 3),
BENCH_ONLY (comma-separated engines), BENCH_PROFILE=0 (no perf profile),
RNF_MODULE (the rnf.ko to load; bench.sh passes the one built for the kernel).
"""

import ctypes
import os
import re
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
MODULE = os.environ.get("RNF_MODULE", os.path.join(REPO, "rnf.ko"))
RNFCTL_SRC = os.environ.get("RNFCTL", os.path.join(REPO, "target", "release", "rnfctl"))
RNFCTL = "/tmp/rnf-bin/rnfctl"
TMP = "/tmp/rnf-bench"

QUICK = os.environ.get("BENCH_QUICK", "0") == "1"
SIZES = [1, 1000, 10000] if QUICK else [1, 100, 1000, 10000, 100000]
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
WARMUP = 1.0
LOAD_BUDGET = float(os.environ.get("BENCH_LOAD_BUDGET", "90"))
DEADLINE = float(os.environ.get("BENCH_DEADLINE", "2700"))
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "3")))
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
PROFILE = os.environ.get("BENCH_PROFILE", "1") != "0"
START = time.monotonic()

SINK = "10.0.2.3"
SINK_MAC = "02:00:00:00:00:99"
DPORT = 5001
NAT_PORT = 2222
# rnf's DNAT rule of workload 4 (and of ab.py's dnat and nat_none), and its
# nat table (also ab.py's nat_fwd's).
RNF_DNAT = f"add PREROUTING iif ra proto udp dport {NAT_PORT} dnat to {SINK}:{DPORT}"
RNF_NAT = ["table nat", RNF_DNAT, "add POSTROUTING oif rb masquerade"]

CSV_FIELDS = ["workload", "shape", "engine", "rules", "metric", "value", "unit", "ratio", "note"]
rows = []

GENERATOR = ("kernel pktgen (UDP 64 B, xmit_mode start_xmit, clone_skb 0) on a's veth, "
             "one kpktgend thread; rate = rx packets at b's veth")


def log(msg):
    print(msg, flush=True)


def elapsed():
    return time.monotonic() - START


class Failed(Exception):
    pass


def sh(cmd, ns=None, check=True, timeout=600, stdin=None):
    if isinstance(cmd, str):
        cmd = ["sh", "-c", cmd]
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and p.returncode != 0:
        raise Failed(f"{' '.join(cmd)[:120]}: exit {p.returncode}: {(p.stderr or p.stdout).strip()[:300]}")
    return p


# --- timed commands run in r, entered with setns(2) in the child ----------
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _enter_r():
    fd = os.open("/run/netns/r", os.O_RDONLY)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        os._exit(126)
    os.close(fd)


def _timed_run(cmd, stdin_path=None, timeout=900, env=None):
    """Run cmd in namespace r; return (seconds from its start to its exit, its stderr)."""
    f = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdin=f, capture_output=True, timeout=timeout,
                           preexec_fn=_enter_r, env=env)
        dt = time.monotonic() - t0
    finally:
        if stdin_path:
            f.close()
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        msg = (err or p.stdout.decode(errors="replace")).strip().splitlines()
        msg = [x for x in msg if not TIMING_LINE.match(x)] or msg
        raise Failed(f"{os.path.basename(cmd[0])} exit {p.returncode}: {' / '.join(msg[:2])[:200]}")
    return dt, err


def timed(cmd, stdin_path=None, timeout=900):
    """Run cmd in namespace r; return seconds from its start to its exit."""
    return _timed_run(cmd, stdin_path, timeout)[0]


# rnfctl with RNFCTL_TIMING set prints, for each netlink request the kernel
# answers, "rnfctl: timing: <op> <N> us": sendmsg to ack, no process start.
TIMING_LINE = re.compile(r"^rnfctl: timing: (.+) (\d+) us$")


def request_seconds(stderr, op):
    """The time of the request `op` in rnfctl's timing lines (seconds), or
    None if there is none (an rnfctl without RNFCTL_TIMING)."""
    found = [int(m.group(2)) for m in map(TIMING_LINE.match, stderr.splitlines())
             if m and m.group(1) == op]
    return sum(found) / 1e6 if found else None


def rnf_timed(args, op, stdin_path=None, timeout=900):
    """rnfctl ARGS in namespace r with RNFCTL_TIMING=1: (command seconds,
    request seconds or None)."""
    env = dict(os.environ, RNFCTL_TIMING="1")
    dt, err = _timed_run([RNFCTL] + args, stdin_path, timeout, env)
    return dt, request_seconds(err, op)


def process_floor():
    """Seconds from start to exit of `rnfctl --version` (no request), started
    as the update commands are (setns into r): (median, min, max) of 5."""
    runs = sorted(timed([RNFCTL, "--version"]) for _ in range(5))
    return runs[2], runs[0], runs[-1]


def record_floor(engine):
    """The process floor, once per run, taken right after an update command
    so that the guest is as busy as it is for those (not just after the
    namespaces and their processes were started)."""
    try:
        med, lo, hi = process_floor()
        record("floor", "-", engine, 0, "process", med, "s",
               "rnfctl --version started as the update commands are (setns into r), no request:"
               f" median of 5 ({lo * 1000:.0f}-{hi * 1000:.0f} ms)")
    except (Failed, subprocess.TimeoutExpired) as e:
        na("floor", "-", engine, 0, "process", "s", str(e))


# --- modules -------------------------------------------------------------
def loaded_modules():
    with open("/proc/modules") as f:
        return {line.split()[0]: int(line.split()[2]) for line in f}


NETFILTER_MODULES = [
    "nft_compat", "nft_masq", "nft_nat", "nft_chain_nat", "nft_ct", "nft_reject_inet",
    "nft_reject_ipv4", "nft_reject_ipv6", "nft_reject", "iptable_nat", "iptable_filter",
    "iptable_mangle", "iptable_raw", "ip6table_filter", "ip6table_nat", "ip6table_mangle",
    "ip6table_raw", "xt_MASQUERADE", "xt_nat", "xt_conntrack", "xt_state", "xt_tcpudp",
    "xt_comment", "ip_tables", "ip6_tables", "nf_tables", "nfnetlink", "x_tables",
    "nf_nat", "nf_conntrack", "nf_defrag_ipv4", "nf_defrag_ipv6",
]


def unload_netfilter():
    """Unload nftables/iptables/conntrack/NAT modules (those not in use)."""
    for _ in range(3):
        mods = loaded_modules()
        for m in NETFILTER_MODULES:
            if m in mods:
                subprocess.run(["rmmod", m], capture_output=True)
    left = [m for m in ("nf_conntrack", "nf_nat", "nf_tables", "ip_tables") if m in loaded_modules()]
    return left


def rnf_loaded():
    return "rnf" in loaded_modules()


def rnf_load():
    if rnf_loaded():
        return
    left = unload_netfilter()
    if "nf_conntrack" in left or "nf_nat" in left:
        raise Failed(f"cannot unload {left} before loading rnf")
    deps = sh(["modinfo", "-F", "depends", MODULE]).stdout.strip()
    for dep in filter(None, deps.split(",")):
        sh(["modprobe", dep])
    sh(["insmod", MODULE])


def rnf_unload():
    if rnf_loaded():
        sh(["rmmod", "rnf"])


# --- topology --------------------------------------------------------------
NS = ("a", "r", "b")
_holders = {}


def topo_down():
    for p in _holders.values():
        p.kill()
        p.wait()
    _holders.clear()
    for n in NS:
        subprocess.run(["ip", "netns", "del", n], capture_output=True)


def topo_up():
    topo_down()
    for n in NS:
        sh(["ip", "netns", "add", n])
        sh("ip link set lo up", ns=n)
    sh("ip link add va type veth peer name ra netns r", ns="a")
    sh("ip link add vb type veth peer name rb netns r", ns="b")
    sh("ip addr add 10.0.1.2/24 dev va && ip link set va up && ip route add default via 10.0.1.1", ns="a")
    sh(f"ip addr add 10.0.2.2/24 dev vb && ip addr add {SINK}/32 dev vb && ip link set vb up"
       " && ip route add default via 10.0.2.1", ns="b")
    sh("ip addr add 10.0.1.1/24 dev ra && ip addr add 10.0.2.1/24 dev rb"
       " && ip link set ra up && ip link set rb up"
       " && sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0"
       " net.ipv4.conf.ra.rp_filter=0 net.ipv4.conf.rb.rp_filter=0", ns="r")
    # The sink: frames for 10.0.2.3 go to b's veth with a MAC address that
    # is not b's, so b counts and drops them before IP (no ICMP, no socket).
    sh(f"ip neigh replace {SINK} lladdr {SINK_MAC} dev rb nud permanent", ns="r")
    ra_mac = sh("cat /sys/class/net/ra/address", ns="r").stdout.strip()
    sh(f"ip neigh replace 10.0.1.1 lladdr {ra_mac} dev va nud permanent", ns="a")
    sh("ip neigh replace 10.0.2.1 lladdr $(ip netns exec r cat /sys/class/net/rb/address)"
       " dev vb nud permanent", ns="b")
    # A process in each namespace lets us read its counters without exec.
    for n in NS:
        _holders[n] = subprocess.Popen(["ip", "netns", "exec", n, "sleep", "1000000"])
    return ra_mac


def dev_counter(ns, dev, which):
    """rx or tx packets of dev in namespace ns, from /proc/PID/net/dev."""
    with open(f"/proc/{_holders[ns].pid}/net/dev") as f:
        for line in f:
            if ":" in line and line.split(":")[0].strip() == dev:
                v = line.split(":", 1)[1].split()
                return int(v[0 + 1] if which == "rx" else v[8 + 1])
    raise Failed(f"no device {dev} in {ns}")


# --- the generator -----------------------------------------------------------
def pktgen_setup(ra_mac, dst=SINK, dport=(DPORT, DPORT), sport=(1024, 65535),
                 src=("10.0.1.2", "10.0.1.2"), dst_mac=None):
    sh("modprobe pktgen")
    base = f"/proc/{_holders['a'].pid}/net/pktgen"
    for _ in range(50):
        if os.path.exists(f"{base}/kpktgend_0"):
            break
        time.sleep(0.1)

    def w(f, s):
        with open(f"{base}/{f}", "w") as fh:
            fh.write(s + "\n")

    def upper(r):
        # pktgen steps a port from min up to, not including, max (addresses
        # up to and including max): ranges here include their last port.
        return r[1] + 1 if r[0] < r[1] < 65535 else r[1]

    for t in sorted(x for x in os.listdir(base) if x.startswith("kpktgend_")):
        w(t, "rem_device_all")
    w("kpktgend_0", "add_device va")
    for c in ("count 0", "clone_skb 0", "pkt_size 64", "delay 0", f"dst {dst}",
              f"src_min {src[0]}", f"src_max {src[1]}", f"dst_mac {dst_mac or ra_mac}",
              f"udp_src_min {sport[0]}", f"udp_src_max {upper(sport)}",
              f"udp_dst_min {dport[0]}", f"udp_dst_max {upper(dport)}"):
        w("va", c)


def measure(count_ns="b", count_dev="vb", during=None):
    """Run pktgen for WARMUP + SECONDS; return packets per second at count_dev."""
    t = threading.Thread(target=lambda: sh("echo start > /proc/net/pktgen/pgctrl", ns="a",
                                           check=False, timeout=120))
    t.start()
    try:
        time.sleep(WARMUP)
        c0, t0 = dev_counter(count_ns, count_dev, "rx"), time.monotonic()
        if during:
            during()
        else:
            time.sleep(SECONDS)
        c1, t1 = dev_counter(count_ns, count_dev, "rx"), time.monotonic()
    finally:
        sh("echo stop > /proc/net/pktgen/pgctrl", ns="a", check=False)
        t.join()
    return (c1 - c0) / (t1 - t0)


# --- rule sets ---------------------------------------------------------------
def decoy_ip(i):
    return f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def decoy_net(i):
    # /24 prefixes from 11.0.0.0 on: none holds 10.0.1.2.
    n = (11 << 24) + (i << 8)
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.0/24"


def write(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def rnf_filter(n, shape):
    lines = ["table filter", "policy FORWARD drop"]
    if shape == "kube":
        lines += [f"add FORWARD daddr {decoy_ip(i)} proto udp dport 80 accept" for i in range(n - 1)]
        lines.append(f"add FORWARD daddr {SINK} proto udp dport {DPORT} accept")
    else:
        lines += [f"add FORWARD saddr {decoy_net(i)} drop" for i in range(n - 1)]
        lines.append("add FORWARD saddr 10.0.1.0/24 proto udp accept")
    return write(f"{TMP}/rnf-{shape}-{n}.rnf", lines)


def nft_filter(n, shape, sets):
    lines = ["flush ruleset", "table ip t {"]
    if sets and shape == "kube":
        elems = [f"{decoy_ip(i)} . 80 : accept" for i in range(n - 1)] + [f"{SINK} . {DPORT} : accept"]
        lines += ["  map svc { type ipv4_addr . inet_service : verdict",
                  "    elements = { " + ",\n      ".join(elems) + " }", "  }",
                  "  chain forward { type filter hook forward priority 0; policy drop;",
                  "    ip daddr . udp dport vmap @svc", "  }"]
    elif sets:
        lines += ["  set block { type ipv4_addr; flags interval;"]
        if n > 1:
            lines += ["    elements = { " + ",\n      ".join(decoy_net(i) for i in range(n - 1)) + " }"]
        lines += ["  }", "  chain forward { type filter hook forward priority 0; policy drop;",
                  "    ip saddr @block drop", "    ip saddr 10.0.1.0/24 meta l4proto udp accept", "  }"]
    else:
        lines += ["  chain forward { type filter hook forward priority 0; policy drop;"]
        if shape == "kube":
            lines += [f"    ip daddr {decoy_ip(i)} udp dport 80 accept" for i in range(n - 1)]
            lines.append(f"    ip daddr {SINK} udp dport {DPORT} accept")
        else:
            lines += [f"    ip saddr {decoy_net(i)} drop" for i in range(n - 1)]
            lines.append("    ip saddr 10.0.1.0/24 meta l4proto udp accept")
        lines.append("  }")
    lines.append("}")
    return write(f"{TMP}/nft-{'set' if sets else 'plain'}-{shape}-{n}.nft", lines)


def ipt_filter(n, shape):
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    if shape == "kube":
        lines += [f"-A FORWARD -d {decoy_ip(i)}/32 -p udp -m udp --dport 80 -j ACCEPT" for i in range(n - 1)]
        lines.append(f"-A FORWARD -d {SINK}/32 -p udp -m udp --dport {DPORT} -j ACCEPT")
    else:
        lines += [f"-A FORWARD -s {decoy_net(i)} -j DROP" for i in range(n - 1)]
        lines.append("-A FORWARD -s 10.0.1.0/24 -p udp -j ACCEPT")
    lines.append("COMMIT")
    return write(f"{TMP}/ipt-{shape}-{n}.rules", lines)


# Engines of the filter workload: how to load N rules (atomically replacing
# what is there), and how to add one rule (or element) to them.
IPT = {"iptables-legacy": ("iptables-legacy", "iptables-legacy-restore"),
       "iptables-nft": ("iptables-nft", "iptables-nft-restore")}


# The request time (seconds, or None) of the last rnfctl update command run
# by load_rules() or add_one().
last_request = None


def load_rules(engine, n, shape):
    global last_request
    if engine == "rnf":
        dt, last_request = rnf_timed(["restore"], "restore", rnf_filter(n, shape))
        return dt
    if engine in ("nft", "nft-set"):
        return timed(["nft", "-f", nft_filter(n, shape, engine == "nft-set")])
    return timed([IPT[engine][1]], ipt_filter(n, shape))


def add_one(engine, shape):
    global last_request
    extra = "10.255.0.9"
    if engine == "rnf":
        dt, last_request = rnf_timed(["add", "filter", "FORWARD", "daddr", extra, "proto", "udp", "dport",
                                      "80", "accept"], "add")
        return dt
    if engine == "nft":
        return timed(["nft", "add", "rule", "ip", "t", "forward", "ip", "daddr", extra, "udp", "dport", "80", "accept"])
    if engine == "nft-set":
        if shape == "kube":
            return timed(["nft", "add", "element", "ip", "t", "svc", "{", f"{extra} . 80 : accept", "}"])
        return timed(["nft", "add", "element", "ip", "t", "block", "{", "11.255.255.0/24", "}"])
    return timed([IPT[engine][0], "-A", "FORWARD", "-d", extra + "/32", "-p", "udp", "-m", "udp",
                  "--dport", "80", "-j", "ACCEPT"])


# --- results -----------------------------------------------------------------
def record(workload, shape, engine, rules, metric, value, unit, note=""):
    rows.append(dict(workload=workload, shape=shape, engine=engine, rules=rules, metric=metric,
                     value=value, unit=unit, ratio="", note=note))
    v = f"{value:.4g}" if isinstance(value, float) else value
    log(f"# {workload:9} {shape:6} {engine:16} {rules!s:>7} {metric:12} {v} {unit} {note}")


def na(workload, shape, engine, rules, metric, unit, reason):
    record(workload, shape, engine, rules, metric, "n/a", unit, f"n/a ({reason})")


def record_request(label, metric, what):
    """The netlink request time of the rnfctl command just run, as its own
    row (metric e.g. add_one_request next to add_one)."""
    if last_request is None:
        na(*label.values(), metric, "s", "rnfctl printed no RNFCTL_TIMING line")
    else:
        record(*label.values(), metric, last_request, "s",
               f"{what}: rnfctl's netlink request, sendmsg to ack (RNFCTL_TIMING)")


def over_deadline():
    return elapsed() > DEADLINE


def wanted(engine):
    return not ONLY or engine in ONLY


# --- workloads ---------------------------------------------------------------
def baseline(tag):
    if not wanted("none"):
        return
    ra_mac = topo_up()
    pktgen_setup(ra_mac)
    record("baseline", "-", "none", 0, "pps", measure(), "pkt/s", tag)
    # How fast the generator alone goes: frames r drops at once (not its MAC).
    pktgen_setup(ra_mac, dst_mac="02:00:00:00:00:98")
    record("generator", "-", "none", 0, "pps", measure("r", "ra"), "pkt/s",
           "pktgen alone: frames r's veth receives and drops before IP")


def filter_rows(engine):
    """Workload 1 and 5: N rules in FORWARD, traffic matches only the last."""
    for shape in ("kube", "block"):
        ra_mac = topo_up()
        pktgen_setup(ra_mac)
        first = last = None  # (n, load seconds) of the smallest and the previous size
        for n in SIZES:
            label = dict(workload="filter", shape=shape, engine=engine, rules=n)
            if over_deadline():
                for m, u in (("pps", "pkt/s"), ("replace", "s"), ("add_one", "s")):
                    na(*label.values(), m, u, "bench deadline reached")
                continue
            # Load time = fixed cost (that of the smallest size) + a part
            # linear in N, extrapolated from the previous size.
            est = first[1] + max(0.0, last[1] - first[1]) * n / last[0] if last and last is not first else 0
            if est > LOAD_BUDGET:
                for m, u in (("pps", "pkt/s"), ("replace", "s"), ("add_one", "s")):
                    na(*label.values(), m, u, f"skipped: load estimated {est:.0f} s > BENCH_LOAD_BUDGET {LOAD_BUDGET:.0f} s")
                continue
            try:
                t_load = load_rules(engine, n, shape)
            except (Failed, subprocess.TimeoutExpired) as e:
                for m, u in (("pps", "pkt/s"), ("replace", "s"), ("add_one", "s")):
                    na(*label.values(), m, u, f"load failed: {e}")
                last = (n, 1e9)
                first = first or last
                continue
            last = (n, t_load)
            first = first or last
            record(*label.values(), "replace", t_load, "s", "install N rules atomically over the previous set")
            if engine == "rnf":
                record_request(label, "replace_request", "replace all")
            pps = measure()
            record(*label.values(), "pps", pps, "pkt/s", "" if pps > 0 else "nothing passed: rule did not match")
            if pps > 0 and PROFILE and engine == "rnf" and shape == "kube" and n == max(
                    s for s in SIZES if s <= 10000):
                profile(f"rnf filter kube {n} rules")
            try:
                record(*label.values(), "add_one", add_one(engine, shape), "s",
                       "one element added to the set" if engine == "nft-set" else "one rule appended")
                if engine == "rnf":
                    record_request(label, "add_one_request", "add one")
            except (Failed, subprocess.TimeoutExpired) as e:
                na(*label.values(), "add_one", "s", str(e))
            if engine == "rnf" and not any(r["workload"] == "floor" for r in rows):
                record_floor(engine)


def ct_rules(engine):
    if engine == "rnf":
        return timed([RNFCTL, "restore"], write(f"{TMP}/rnf-ct.rnf", [
            "table filter", "policy FORWARD drop",
            "add FORWARD ct state established,related accept",
            f"add FORWARD daddr {SINK} proto udp dport {DPORT} accept"]))
    if engine == "nft":
        return timed(["nft", "-f", write(f"{TMP}/nft-ct.nft", [
            "flush ruleset", nft_state_forward("ip", SINK)])])
    return timed([IPT[engine][1]], write(f"{TMP}/ipt-ct.rules", [
        "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A FORWARD -d {SINK}/32 -p udp -m udp --dport {DPORT} -j ACCEPT", "COMMIT"]))


def nat_rules(engine):
    if engine == "rnf":
        return timed([RNFCTL, "restore"], write(f"{TMP}/rnf-nat.rnf", RNF_NAT))
    if engine == "nft":
        return timed(["nft", "-f", write(f"{TMP}/nft-nat.nft", [
            "flush ruleset", "table ip nat {",
            "  chain pre { type nat hook prerouting priority dstnat;",
            f"    iif \"ra\" udp dport {NAT_PORT} dnat to {SINK}:{DPORT}", "  }",
            "  chain post { type nat hook postrouting priority srcnat;",
            "    oif \"rb\" masquerade", "  }", "}"])])
    return timed([IPT[engine][1]], write(f"{TMP}/ipt-nat.rules", [
        "*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        f"-A PREROUTING -i ra -p udp -m udp --dport {NAT_PORT} -j DNAT --to-destination {SINK}:{DPORT}",
        "-A POSTROUTING -o rb -j MASQUERADE", "COMMIT"]))


def set_ct_limit(engine):
    if engine == "rnf":
        sh([RNFCTL, "conntrack", "limit", "262144"], ns="r", check=False)
    else:
        # Global: writable in the initial namespace only.
        sh("sysctl -qw net.netfilter.nf_conntrack_max=262144", check=False)


def establish(flows, to=(SINK, DPORT), back_to="10.0.1.2"):
    """One packet each way for each flow (source ports flows[0] to
    flows[1] of a's address, to `to`), so conntrack sees them replied: the
    reply comes from b's SINK:DPORT to `back_to` (r's address where r
    masquerades the flows, which keep their ports)."""
    code = ("import socket,sys\n"
            "for p in range(%d, %d):\n"
            "    s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "    s.bind((sys.argv[1], %s))\n"
            "    s.sendto(b'x', (sys.argv[2], %s))\n")
    sh([sys.executable, "-c", code % (flows[0], flows[1] + 1, "p", to[1]), "10.0.1.2", to[0]],
       ns="a")
    time.sleep(0.3)
    sh([sys.executable, "-c", code % (flows[0], flows[1] + 1, DPORT, "p"), SINK, back_to], ns="b")
    time.sleep(0.3)


def establish_nat():
    """Workload 4's 16 flows seen both ways through r's DNAT and
    masquerade (ab.py's nat_est)."""
    establish((10000, 10015), to=("10.0.1.1", NAT_PORT), back_to="10.0.2.1")


# The workloads rnf_workload sets up (ab.py's AB_MODES, profile.py's MODES).
RNF_WORKLOADS = ("empty", "empty_off", "kube1", "ct_new", "ct_new6", "ct_est", "nat", "nat_off",
                 "nat_est", "dnat", "nat_fwd", "nat_none")


def rnf_workload(mode):
    """A fresh topology set up for one of ab.py's and profile.py's workloads
    (RNF_WORKLOADS; rnf loaded): empty (hook counters on), empty_off,
    kube1, ct_new, ct_est, nat (hook counters on), nat_off (DNAT +
    masquerade with hook counters off), nat_est (DNAT
    + masquerade, its flows replied first), dnat (the DNAT alone), nat_fwd
    (DNAT + masquerade behind a FORWARD filter: state accept, then the
    forwarded port, which takes these unreplied flows), nat_none (ct_est's flows past nat rules that do not match them),
    ct_new6 (new IPv6 flows). Hook counters are set explicitly, on for
    empty and nat, off (rnf's default since hook_counters=) for the others,
    so that builds from before and after that change compare. False for a
    mode this build cannot run (hook counters that cannot be switched)."""
    ra = topo_up()
    pktgen_setup(ra)
    counters = "on" if mode in ("empty", "nat") else "off"
    if sh([RNFCTL, "hook-counters", counters], ns="r", check=False).returncode != 0:
        return False
    if mode in ("empty", "empty_off"):
        return True
    if mode == "ct_new6":
        ct_new6_setup(ra)
        return True
    if mode == "kube1":
        load_rules("rnf", 1, "kube")
    elif mode in ("ct_new", "ct_est"):
        stateful_setup("rnf", mode, ra)
    elif mode in ("nat", "nat_off"):
        stateful_setup("rnf", "nat", ra)
    elif mode == "nat_est":
        stateful_setup("rnf", "nat", ra)
        establish_nat()
    elif mode == "dnat":
        stateful_setup("rnf", "nat", ra)
        timed([RNFCTL, "restore"], write(f"{TMP}/rnf-dnat.rnf", ["table nat", RNF_DNAT]))
    elif mode == "nat_fwd":
        # DNAT + masquerade behind a FORWARD filter of Docker's shape:
        # established flows accepted on their state, then the forwarded
        # port. The workload's flows are never replied (NEW), so the port
        # rule takes them: a point after the destination stage that reads
        # the note and evaluates the chain.
        stateful_setup("rnf", "nat", ra)
        timed([RNFCTL, "restore"], write(f"{TMP}/rnf-nat-fwd.rnf", RNF_NAT + [
            "table filter", "policy FORWARD drop",
            "add FORWARD ct state established,related accept",
            f"add FORWARD daddr {SINK} proto udp dport {DPORT} accept"]))
    elif mode == "nat_none":
        # Established flows forwarded untranslated past nat rules that
        # match other traffic.
        stateful_setup("rnf", "ct_est", ra)
        timed([RNFCTL, "restore"], write(f"{TMP}/rnf-nat-none.rnf", [
            "table nat", RNF_DNAT, "add POSTROUTING oif ra masquerade"]))
    return True


SINK6 = "fd00:2::3"


def ct_new6_setup(ra_mac, engine="rnf"):
    """Workload 2 over IPv6, for A/B of rnf builds (ab.py's ct_new6; with
    engine "nft", nftables and nf_conntrack on the same): r forwards IPv6
    from a to b's sink, every packet a new flow. pktgen cannot step an
    IPv6 source address, so the source port steps over 64,512 values with
    a flow limit of 4,096: each packet's tuple was evicted long before it
    comes again, as with workload 2's IPv4 flows."""
    sh("ip -6 addr add fd00:1::2/64 dev va nodad", ns="a")
    sh("ip -6 addr add fd00:1::1/64 dev ra nodad && ip -6 addr add fd00:2::1/64 dev rb nodad"
       f" && sysctl -qw net.ipv6.conf.all.forwarding=1"
       f" && ip -6 neigh replace {SINK6} lladdr {SINK_MAC} dev rb nud permanent", ns="r")
    if engine == "nft":
        sh("nft -f -", ns="r", stdin=nft_state_forward("ip6", SINK6))
        # Global: the initial namespace's (set_ct_limit puts it back).
        sh("sysctl -qw net.netfilter.nf_conntrack_max=4096")
    else:
        timed([RNFCTL, "restore"], write(f"{TMP}/rnf-ct6.rnf", [
            "table filter", "policy FORWARD drop",
            "add FORWARD ct state established,related accept",
            f"add FORWARD ip6 daddr {SINK6} proto udp dport {DPORT} accept"]))
        sh([RNFCTL, "conntrack", "limit", "4096"], ns="r")
    pktgen_setup(ra_mac, sport=(1024, 65535))
    base = f"/proc/{_holders['a'].pid}/net/pktgen/va"
    for c in ("dst6 " + SINK6, "src6 fd00:1::2", "pkt_size 84"):
        with open(base, "w") as fh:
            fh.write(c + "\n")


def nft_state_forward(family, daddr):
    """An nftables table (family ip or ip6) with rnf's stateful FORWARD
    chain: established and related flows, then UDP to daddr:DPORT; policy
    drop."""
    return (f"table {family} f {{\n chain forward {{\n  type filter hook forward priority filter;"
            " policy drop;\n  ct state established,related accept\n"
            f"  {family} daddr {daddr} udp dport {DPORT} accept\n }}\n}}\n")


def nft_empty_chain():
    """nftables' empty base chain in r's FORWARD (policy accept)."""
    sh("nft -f -", ns="r", stdin="table ip t {\n chain forward {\n  type filter hook forward"
       " priority 0; policy accept;\n }\n}\n")


def nft_workload(mode):
    """ab.py's nat_fwd, nat_est or ct_new6 for nftables (nf_conntrack,
    nf_nat): workload 4's nat table, and for nat_fwd a forward chain of the
    same rules as rnf's (state accept, then the forwarded port, policy
    drop), for nat_est the flows replied first; ct_new6 as rnf's. Returns
    the packets/s."""
    if mode == "ct_new6":
        ct_new6_setup(topo_up(), "nft")
        try:
            return measure()
        finally:
            set_ct_limit("nft")
    stateful_setup("nft", "nat", topo_up())
    if mode == "nat_est":
        establish_nat()
    else:
        sh("nft -f -", ns="r", stdin=nft_state_forward("ip", SINK))
    return measure()


def rnf_counters_off():
    """Switches rnf's hook counters in r off; the note's words for it, which
    say "(the default)" where they were off already (report.py judges the
    targets by the rows so noted: rnf as loaded)."""
    was = sh([RNFCTL, "hook-counters"], ns="r").stdout.strip()
    sh([RNFCTL, "hook-counters", "off"], ns="r")
    return "hook counters off" + (" (the default)" if was == "off" else "")


def empty_rows(engine):
    """The empty rule set: rnf loaded with no rules (as loaded, with its
    hook counters off, and with them on), an empty nftables base chain, an
    empty iptables filter table. Returns [(label, note, pps)]."""
    ra_mac = topo_up()
    pktgen_setup(ra_mac)
    if engine == "rnf":
        # Label "empty" is rnf counting at every hook (the default before
        # hook_counters=, so earlier runs' rows compare), "empty_off" the
        # default now: no hook in a namespace without rules.
        off = rnf_counters_off()
        out = [(("empty_off", "-", engine, 0), f"module loaded, no rules, {off}", measure())]
        sh([RNFCTL, "hook-counters", "on"], ns="r")
        out.append((("empty", "-", engine, 0), "module loaded, no rules, rnfctl hook-counters on",
                    measure()))
        return out
    if engine == "nft":
        nft_empty_chain()
        return [(("empty", "-", engine, 0), "empty base chain", measure())]
    sh("iptables-legacy -P FORWARD ACCEPT", ns="r")
    return [(("empty", "-", engine, 0), "empty filter table", measure())]


def stateful_setup(engine, wl, ra_mac):
    """Rules, flows and pktgen for workload wl (ct_new, ct_est, nat) of
    engine in a fresh topology. Returns the row's note."""
    set_ct_limit(engine)
    if wl == "ct_new":
        ct_rules(engine)
        set_ct_limit(engine)
        # Every packet a new flow: source port 1024-65535 and source
        # address 10.0.1.2-10.0.1.254 both step on each packet.
        pktgen_setup(ra_mac, sport=(1024, 65535), src=("10.0.1.2", "10.0.1.254"))
        return "pktgen UDP, every packet a new flow (sport x saddr stepping)"
    if wl == "ct_est":
        ct_rules(engine)
        establish((10000, 10003))
        pktgen_setup(ra_mac, sport=(10000, 10003))
        return "4 UDP flows seen both ways first (established)"
    nat_rules(engine)
    set_ct_limit(engine)
    pktgen_setup(ra_mac, dst="10.0.1.1", dport=(NAT_PORT, NAT_PORT), sport=(10000, 10015))
    return f"16 UDP flows to r:{NAT_PORT}, DNAT to {SINK}:{DPORT}, masquerade out of rb"


def stateful_rows(engine, profile_ct_new=False):
    """Workloads 2-4: new flows, established flows, DNAT + masquerade.
    Returns [(label, note, pps or the reason it was not measured)]."""
    out = []
    for wl in ("ct_new", "ct_est", "nat"):
        label = (wl, "-", engine, 2)
        try:
            note = stateful_setup(engine, wl, topo_up())
            if engine == "rnf" and wl == "nat":
                # As loaded (hook counters off), then with the hook
                # counters of `rnfctl status` on (a counting hook in
                # FORWARD, which this rule set does not hook): label
                # "nat" counts, as rnf did by default before hook_counters=.
                off = rnf_counters_off()
                out.append((("nat_off", "-", engine, 2), f"{note}, {off}", measure()))
                sh([RNFCTL, "hook-counters", "on"], ns="r")
                note += ", rnfctl hook-counters on"
            pps = measure()
            if pps > 0 and profile_ct_new and wl == "ct_new":
                profile("rnf ct_new")
            out.append((label, note, pps))
        except (Failed, subprocess.TimeoutExpired) as e:
            out.append((label, "", str(e)))
    return out


def comparison_rounds():
    """The rows whose targets compare engines with each other: the empty
    rule set and workloads 2-4, for rnf, nft and iptables-legacy. Under TCG
    the host's speed drifts by tens of percent over minutes, so these are
    measured in ROUNDS rounds, each taking the no-firewall path and then
    every engine in turn (rnf.ko loaded for its part only, nf_conntrack and
    the nftables/iptables modules unloaded after theirs). A row's value is
    the median of its rounds; every round's value is a `pps_round` row, so
    that the report can compare engines round by round."""
    engines = [e for e in ("rnf", "nft", "iptables-legacy") if wanted(e)]
    # label -> {"note", "vals": pps per round, "errs": why not measured};
    # dicts keep the order labels first came in.
    got = {}

    def add(label, note, value):
        row = got.setdefault(label, {"note": note, "vals": [], "errs": []})
        row["note"] = row["note"] or note
        row["vals" if isinstance(value, float) else "errs"].append(value)

    for rnd in range(ROUNDS):
        if over_deadline():
            break
        if wanted("none"):
            ra_mac = topo_up()
            pktgen_setup(ra_mac)
            add(("baseline", "-", "none", 0), "", measure())
        for engine in engines:
            try:
                if engine == "rnf":
                    rnf_load()
                for label, note, value in empty_rows(engine):
                    add(label, note, value)
                profile = engine == "rnf" and rnd == 0 and PROFILE
                for label, note, value in stateful_rows(engine, profile_ct_new=profile):
                    add(label, note, value)
            except (Failed, subprocess.TimeoutExpired) as e:
                add(("empty", "-", engine, 0), "", f"{engine}: {e}")
            finally:
                topo_down()
                if engine == "rnf":
                    rnf_unload()
                else:
                    unload_netfilter()
    for label, row in got.items():
        note, vals, errs = row["note"], row["vals"], row["errs"]
        if not vals:
            na(*label, "pps", "pkt/s", errs[0] if errs else "not measured")
            continue
        rounds = " / ".join(f"{v:,.0f}" for v in vals)
        what = f"median of {len(vals)} rounds ({rounds})"
        if label[0] == "baseline":
            note = f"comparison rounds, median of {len(vals)}: {rounds}"
        else:
            note = f"{note}; {what}" + (f"; not measured in {len(errs)}: {errs[0]}" if errs else "")
        med = statistics.median(vals)
        record(*label, "pps", med, "pkt/s", note if med > 0 else f"nothing passed; {note}")
        for k, v in enumerate(vals):
            record(*label, "pps_round", v, "pkt/s", f"round {k + 1}")


def pair_rounds():
    """The filter targets whose two sides are minutes apart in the filter
    rows, measured again side by side: rnf with 1 rule and with the largest
    size (the cost-ratio target), and rnf and iptables-legacy with 10,000
    rules (the 10x target; legacy is the only engine that target is close
    for), ROUNDS times per shape. Every value is a `pps_round` row of
    workload `filter_pair`; the report judges those targets by the median
    of the per-round ratios."""
    big = max(SIZES)
    for shape in ("kube", "block"):
        for rnd in range(ROUNDS):
            if over_deadline():
                return
            note = f"round {rnd + 1}, side by side"
            if wanted("rnf"):
                try:
                    rnf_load()
                    ra_mac = topo_up()
                    pktgen_setup(ra_mac)
                    for n in sorted({1, 10000, big}):
                        load_rules("rnf", n, shape)
                        record("filter_pair", shape, "rnf", n, "pps_round", measure(), "pkt/s", note)
                except (Failed, subprocess.TimeoutExpired) as e:
                    na("filter_pair", shape, "rnf", "-", "pps_round", "pkt/s", str(e))
                finally:
                    topo_down()
                    rnf_unload()
            if wanted("iptables-legacy") and 10000 in SIZES:
                try:
                    ra_mac = topo_up()
                    pktgen_setup(ra_mac)
                    load_rules("iptables-legacy", 10000, shape)
                    record("filter_pair", shape, "iptables-legacy", 10000, "pps_round", measure(), "pkt/s",
                           note)
                except (Failed, subprocess.TimeoutExpired) as e:
                    na("filter_pair", shape, "iptables-legacy", 10000, "pps_round", "pkt/s", str(e))
                finally:
                    topo_down()
                    unload_netfilter()


# --- profile -----------------------------------------------------------------
profiles = []


def profile(what):
    """perf record -a during a measurement; keep the top of the report."""
    if not os.path.exists("/usr/bin/perf") or over_deadline():
        return
    data = f"{TMP}/perf.data"
    p = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-a", "-o", data, "--",
                          "sleep", str(SECONDS)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    measure(during=lambda: p.wait())
    # rnf.ko is loaded from the checkout, not installed: name its symbols
    # from the running kernel's table.
    rep = sh(["perf", "report", "-i", data, "--stdio", "--sort", "sym", "--percent-limit", "0.3",
              "--kallsyms=/proc/kallsyms"], check=False)
    lines = [x for x in rep.stdout.splitlines() if x.strip() and not x.startswith("#")][:40]
    profiles.append((what, lines or [(rep.stderr or "perf report failed").strip()[:300]]))


# --- main --------------------------------------------------------------------
def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    hyp = "KVM" if os.path.exists("/sys/bus/platform/devices/kvm-clock") else "?"
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            cs = f.read().strip()
        hyp = "KVM" if cs == "kvm-clock" else "TCG"
    except OSError:
        pass
    return f"guest nproc={os.cpu_count()}; cpu={model}; accel={hyp}; kernel={os.uname().release}"


def kernel_cmdline():
    try:
        with open("/proc/cmdline") as f:
            return f.read().strip()
    except OSError as e:
        return f"? ({e})"


def boot_debug():
    """What the boot profile left on, read back from the running kernel."""
    out = []
    for name, path in (("lockdep.prove_locking", "/sys/module/lockdep/parameters/prove_locking"),
                       ("kfence.sample_interval", "/sys/module/kfence/parameters/sample_interval")):
        try:
            with open(path) as f:
                out.append(f"{name}={f.read().strip()}")
        except OSError:
            out.append(f"{name}=?")
    slub = [c for c in ("kmalloc-64", "kmalloc-256")
            if os.path.exists(f"/sys/kernel/slab/{c}/sanity_checks")]
    checks = []
    for c in slub:
        with open(f"/sys/kernel/slab/{c}/sanity_checks") as f:
            checks.append(f"{c}={f.read().strip()}")
    if checks:
        out.append("slub sanity_checks " + ",".join(checks))
    kmsg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    out.append("kmemleak " + ("disabled" if "Kernel memory leak detector disabled" in kmsg
                              else "not reported disabled in dmesg"))
    return "; ".join(out)


def add_ratios():
    base = [r["value"] for r in rows if r["workload"] == "baseline" and r["metric"] == "pps"]
    if not base:
        return
    b = sum(base) / len(base)
    for r in rows:
        if r["metric"] == "pps" and isinstance(r["value"], float) and b > 0:
            r["ratio"] = f"{r['value'] / b:.3f}"


def main():
    os.makedirs(TMP, exist_ok=True)
    os.makedirs(os.path.dirname(RNFCTL), exist_ok=True)
    subprocess.run(["cp", RNFCTL_SRC, RNFCTL], check=True)
    log(f"# machine: {machine()}")
    log(f"# generator: {GENERATOR}")
    log(f"# sizes: {SIZES}; {SECONDS:g} s per measurement after {WARMUP:g} s warm-up")
    log(f"# rnfctl: {RNFCTL_SRC}")
    log(f"# kernel command line: {kernel_cmdline()}")
    boot = boot_debug()
    log(f"# boot debugging: {boot}")
    rnf_unload()
    unload_netfilter()
    baseline("before")
    comparison_rounds()
    pair_rounds()
    # rnf first, with nf_conntrack/nf_nat and the nftables/iptables modules out.
    if wanted("rnf"):
        try:
            rnf_load()
            filter_rows("rnf")
        except Failed as e:
            na("filter", "-", "rnf", "-", "pps", "pkt/s", str(e))
        finally:
            topo_down()
            rnf_unload()
    baseline("after rnf")
    for engine in ("nft", "nft-set", "iptables-legacy", "iptables-nft"):
        if not wanted(engine):
            continue
        try:
            filter_rows(engine)
        except Failed as e:
            na("filter", "-", engine, "-", "pps", "pkt/s", str(e))
        topo_down()
        unload_netfilter()
    add_ratios()
    log(f"# done in {elapsed():.0f} s")
    print("=== BENCH CSV BEGIN ===")
    print(",".join(CSV_FIELDS))
    for r in rows:
        vals = []
        for k in CSV_FIELDS:
            v = r[k]
            v = f"{v:.6g}" if isinstance(v, float) else str(v)
            if "," in v or '"' in v:
                v = '"' + v.replace('"', '""') + '"'
            vals.append(v)
        print(",".join(vals))
    print("=== BENCH CSV END ===")
    print("=== BENCH META BEGIN ===")
    print(f"machine: {machine()}")
    print(f"generator: {GENERATOR}")
    print(f"kernel command line: {kernel_cmdline()}")
    print(f"boot debugging: {boot}")
    print(f"sizes: {SIZES}; seconds: {SECONDS:g}; warmup: {WARMUP:g}; load budget: {LOAD_BUDGET:g} s")
    print(f"elapsed: {elapsed():.0f} s")
    for what, lines in profiles:
        print(f"profile: {what} (perf record -e cpu-clock -a, {SECONDS:g} s)")
        for x in lines:
            print(f"    {x}")
    if not profiles:
        print("profile: none taken" + ("" if os.path.exists("/usr/bin/perf") else " (perf not in the guest)"))
    print("=== BENCH META END ===")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        topo_down()
