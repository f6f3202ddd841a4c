# SPDX-License-Identifier: GPL-2.0
"""Helpers for rnf's in-VM tests: TAP-style reporting, namespaces, rnfctl.

Tests run as root inside the test VM (tools/testing/vm.sh). Each prints
`ok N - name` or `not ok N - name` with indented diagnostics; the host
(tools/testing/check.sh) counts them.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODULE = os.path.join(REPO, "rnf.ko")
RNFCTL_SRC = os.environ.get("RNFCTL", os.path.join(REPO, "target", "debug", "rnfctl"))
# A copy anyone may execute (the checkout may sit under a 0700 home).
RNFCTL = "/tmp/rnf-bin/rnfctl"

_results = []


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure(f"{what}: expected {want!r}, got {got!r}")


def report(name, ok, diag=""):
    n = len(_results) + 1
    _results.append(ok)
    print(f"{'ok' if ok else 'not ok'} {n} - {name}", flush=True)
    if diag:
        for line in diag.rstrip().splitlines():
            print(f"#   {line}", flush=True)


def run_test(name, fn, *args):
    start = time.monotonic()
    try:
        fn(*args)
    except TestFailure as e:
        report(name, False, str(e))
        return False
    except Exception as e:  # a broken test is a failed test
        report(name, False, f"{type(e).__name__}: {e}")
        return False
    finally:
        print(f"# time {time.monotonic() - start:.1f}s: {name}", flush=True)
    report(name, True)
    return True


def finish():
    failed = sum(1 for r in _results if not r)
    print(f"# rnf guest tests done: {len(_results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def sh(cmd, check_rc=True, ns=None, timeout=120, user=None):
    """Run a command (list or string) and return CompletedProcess."""
    if isinstance(cmd, str):
        cmd = ["sh", "-c", cmd]
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check_rc and p.returncode != 0:
        raise TestFailure(
            f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}{p.stderr}"
        )
    return p


def install_rnfctl():
    os.makedirs(os.path.dirname(RNFCTL), exist_ok=True)
    shutil.copy(RNFCTL_SRC, RNFCTL)
    os.chmod(RNFCTL, 0o755)
    os.chmod(os.path.dirname(RNFCTL), 0o755)


def rnfctl(*args, ns=None, check_rc=True, user=None):
    return sh([RNFCTL, *args], ns=ns, check_rc=check_rc, user=user)


def status(ns=None):
    """rnfctl status --json in namespace ns, as {(family, hook, stage): (pkts, bytes)}."""
    out = json.loads(rnfctl("status", "--json", ns=ns).stdout)
    return out, {
        (h["family"], h["hook"], h["stage"]): (h["packets"], h["bytes"]) for h in out["hooks"]
    }


def kill_strays(*namespaces):
    """Kills every process left running in the given namespaces (servers
    of earlier tests), so that ports are free."""
    for ns in namespaces:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], capture_output=True)
    time.sleep(0.2)


def wait_listening(proc, ns, port, udp=False, timeout=15):
    """Waits until `proc` (a server started in namespace ns) has a socket
    bound to `port` (TCP listening, or UDP): Python starts slowly under TCG,
    so a fixed sleep is not enough. Returns early if the process exits."""
    flags = "-Hlun" if udp else "-Hltn"
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if sh(["ss", flags, f"sport = :{port}"], ns=ns, check_rc=False).stdout.strip():
            return
        time.sleep(0.2)


def module_loaded():
    with open("/proc/modules") as f:
        return any(line.split()[0] == "rnf" for line in f)


_deps_loaded = False


# The suites load rnf counting at every hook in every namespace (the
# hook_counters parameter; off by default), as most of their checks read
# `rnfctl status` and policy counters of empty chains. The foundation test
# "a namespace without rules has no hook by default" loads it as a user does.
SUITE_PARAMS = ("hook_counters=1",)


def insmod(params=SUITE_PARAMS):
    # rnf uses symbols of other modules (nf_reject_ipv4/6 for REJECT,
    # nf_defrag_ipv4/6): load what modinfo says it depends on, as modprobe
    # would, once (they stay loaded when rnf is unloaded).
    global _deps_loaded
    if not _deps_loaded:
        deps = sh(["modinfo", "-F", "depends", MODULE]).stdout.strip()
        for dep in filter(None, deps.split(",")):
            sh(["modprobe", dep])
        _deps_loaded = True
    sh(["insmod", MODULE, *params])


def rmmod():
    sh(["rmmod", "rnf"])


def dmesg():
    return sh(["dmesg"]).stdout


BAD_KERNEL_LOG = re.compile(
    r"BUG:|WARNING:|Oops|general protection|KASAN|UBSAN|kmemleak|"
    r"possible circular locking|possible recursive locking|suspicious RCU usage|"
    r"inconsistent lock state|sleeping function called from invalid context|"
    r"Call Trace:|refcount_t:|list_(add|del) corruption"
)


def bad_log_lines(text):
    return [line for line in text.splitlines() if BAD_KERNEL_LOG.search(line)]


class Topology:
    """Two hosts joined through a router, plus a bystander namespace.

        a (10.0.1.2, fd00:1::2) -- r (10.0.1.1 | 10.0.2.1) -- b (10.0.2.2, fd00:2::2)
        c: unconnected
    """

    NAMES = ("a", "r", "b", "c")

    def __init__(self):
        self.up()

    def up(self):
        self.down()
        for n in self.NAMES:
            sh(["ip", "netns", "add", n])
            sh("ip link set lo up", ns=n)
        sh("ip link add va type veth peer name ra netns r", ns="a")
        sh("ip link add vb type veth peer name rb netns r", ns="b")
        sh("ip addr add 10.0.1.2/24 dev va && ip -6 addr add fd00:1::2/64 dev va nodad"
           " && ip link set va up && ip route add default via 10.0.1.1"
           " && ip -6 route add default via fd00:1::1", ns="a")
        sh("ip addr add 10.0.2.2/24 dev vb && ip -6 addr add fd00:2::2/64 dev vb nodad"
           " && ip link set vb up && ip route add default via 10.0.2.1"
           " && ip -6 route add default via fd00:2::1", ns="b")
        sh("ip addr add 10.0.1.1/24 dev ra && ip -6 addr add fd00:1::1/64 dev ra nodad"
           " && ip addr add 10.0.2.1/24 dev rb && ip -6 addr add fd00:2::1/64 dev rb nodad"
           " && ip link set ra up && ip link set rb up"
           " && sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1", ns="r")
        # Let IPv6 neighbour discovery settle so it is not counted later.
        sh("ping -6 -c1 -W5 fd00:2::2", ns="a")
        sh("ping -c1 -W5 10.0.2.2", ns="a")

    def down(self):
        for n in self.NAMES:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
