# SPDX-License-Identifier: GPL-2.0
"""Rule engine tests (issue 3): rules written with rnfctl act on real traffic
between namespaces, per namespace, with counters; bad requests change
nothing."""

import json
import re
import subprocess
import time

import rnftest as t
from rnftest import check, check_eq


def ping(ns, dst, count=1, wait=2):
    six = ["-6"] if ":" in dst else []
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", *six, "-c", str(count), "-i", "0.2",
                        "-W", str(wait), dst], capture_output=True, text=True)
    return p.returncode == 0


def rnf(ns, *args, ok=True):
    p = t.rnfctl(*args, ns=ns, check_rc=False)
    if ok and p.returncode != 0:
        raise t.TestFailure(f"rnfctl {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def listing(ns, *scope):
    return json.loads(rnf(ns, "list", *scope, "--json").stdout)


def chain_of(lst, table, chain):
    for c in lst.get("chains", lst if isinstance(lst, list) else []):
        if c.get("table") == table and c.get("chain", c.get("name")) == chain:
            return c
    raise t.TestFailure(f"no chain {table}/{chain} in listing: {lst}")


def test_drop_and_delete(topo):
    # An empty chain with policy accept still counts what meets its policy
    # (the packet path skips reading the headers there, not the counter).
    before = chain_of(listing("b", "filter", "INPUT"), "filter", "INPUT")
    check(ping("a", "10.0.2.2", count=2), "baseline ping a->b")
    after = chain_of(listing("b", "filter", "INPUT"), "filter", "INPUT")
    check(after["packets"] >= before["packets"] + 2,
          f"policy counter of the empty INPUT chain: {before} -> {after}")
    check(after["bytes"] >= before["bytes"] + 2 * 84, f"policy bytes: {before} -> {after}")
    rnf("b", "add", "filter", "INPUT", "proto", "icmp", "drop")
    check(not ping("a", "10.0.2.2"), "ping should be dropped by b's INPUT rule")
    c = chain_of(listing("b", "filter", "INPUT"), "filter", "INPUT")
    rules = c["rules"]
    check_eq(len(rules), 1, "rules in b filter INPUT")
    check(rules[0]["packets"] >= 1, f"drop rule counted nothing: {rules[0]}")
    # The router and the bystander are untouched.
    check_eq(len(chain_of(listing("r", "filter", "INPUT"), "filter", "INPUT")["rules"]), 0, "rules in r")
    rnf("b", "delete", "filter", "INPUT", str(rules[0]["handle"]))
    check(ping("a", "10.0.2.2"), "ping after deleting the rule")


def stage_counts(ns, family, hook):
    """{stage: packets} of one hook from rnfctl status."""
    _, stats = t.status(ns=ns)
    return {s: v[0] for (f, h, s), v in stats.items() if f == family and h == hook}


def test_counts_of_unhooked_points(topo):
    """Points without work are not hooked (an empty chain costs no hook
    call) yet count as if they were: a packet accepted by the mangle
    FORWARD rule is counted at filter FORWARD and in its empty chain's
    policy counter; one that mangle drops is not."""
    rnf("r", "add", "mangle", "FORWARD", "proto", "icmp", "daddr", "10.0.2.2", "accept")
    try:
        st0 = stage_counts("r", "ipv4", "FORWARD")
        pol0 = chain_of(listing("r", "filter", "FORWARD"), "filter", "FORWARD")["packets"]
        check(ping("a", "10.0.2.2", count=2), "ping through r")
        st1 = stage_counts("r", "ipv4", "FORWARD")
        pol1 = chain_of(listing("r", "filter", "FORWARD"), "filter", "FORWARD")["packets"]
        check_eq(st1["mangle"] - st0["mangle"], 4, "mangle FORWARD saw requests and replies")
        check_eq(st1["filter"] - st0["filter"], 4, "filter FORWARD counted as if hooked")
        check_eq(pol1 - pol0, 4, "the empty filter FORWARD chain's policy counted them")
        rnf("r", "insert", "mangle", "FORWARD", "proto", "icmp", "daddr", "10.0.2.2", "drop")
        check(not ping("a", "10.0.2.2", count=2, wait=1), "ping dropped in mangle")
        st2 = stage_counts("r", "ipv4", "FORWARD")
        pol2 = chain_of(listing("r", "filter", "FORWARD"), "filter", "FORWARD")["packets"]
        check_eq(st2["mangle"] - st1["mangle"], 2, "mangle FORWARD saw the requests")
        check_eq(st2["filter"] - st1["filter"], 0, "filter FORWARD never saw them")
        check_eq(pol2 - pol1, 0, "nor did its policy counter")
    finally:
        rnf("r", "flush", "mangle")
    st3 = stage_counts("r", "ipv4", "FORWARD")
    check(ping("a", "10.0.2.2", count=1), "ping through r with no rules")
    st4 = stage_counts("r", "ipv4", "FORWARD")
    check_eq((st4["mangle"] - st3["mangle"], st4["filter"] - st3["filter"]), (2, 2),
             "with nothing hooked both points still count")


def test_policy_counter_of_empty_chain(topo):
    """An empty chain's policy counter counts what its point counts, moved
    over by the rule store: exact across a zero, a rule added (the point
    hooked, the policy counted at the chain's end) and the rule deleted
    again (the point unhooked)."""
    def policy():
        return chain_of(listing("r", "filter", "FORWARD"), "filter", "FORWARD")["packets"]

    check(ping("a", "10.0.2.2", count=2), "ping through r")
    check(policy() >= 4, "the empty FORWARD chain's policy counted requests and replies")
    rnf("r", "zero", "filter", "FORWARD")
    check_eq(policy(), 0, "policy counter after zero")
    check(ping("a", "10.0.2.2", count=1), "ping through r")
    check_eq(policy(), 2, "policy counter of the empty chain after one ping")
    rnf("r", "add", "filter", "FORWARD", "proto", "udp", "dport", "9", "drop")
    try:
        check(ping("a", "10.0.2.2", count=1), "ping through r past the udp rule")
        check_eq(policy(), 4, "policy counter with a rule in the chain")
    finally:
        rnf("r", "flush", "filter", "FORWARD")
    check(ping("a", "10.0.2.2", count=1), "ping through r, chain empty again")
    check_eq(policy(), 6, "policy counter after the rule is gone")


def test_hook_counters(topo):
    """Tracking's hooks count for the hooks they sit on (those lose their
    counting hook); `hook-counters off` unhooks what only counts: stages
    without rules stand still, stages with rules count, and `on` brings
    the counts back. Only an admin may switch it."""
    def seen(hook):
        return stage_counts("r", "ipv4", hook)

    # A rule that needs tracking, on a hook forwarded packets do not pass:
    # PREROUTING and POSTROUTING are then counted by tracking's hooks.
    rnf("r", "add", "filter", "INPUT", "ct", "state", "invalid", "drop")
    try:
        pre0, post0 = seen("PREROUTING"), seen("POSTROUTING")
        check(ping("a", "10.0.2.2", count=2), "ping through r while tracking")
        pre1, post1 = seen("PREROUTING"), seen("POSTROUTING")
        check_eq(pre1["raw"] - pre0["raw"], 4, "PREROUTING counted while tracking")
        check_eq(post1["mangle"] - post0["mangle"], 4, "POSTROUTING counted while tracking")
    finally:
        rnf("r", "flush", "filter", "INPUT")
    check_eq(rnf("r", "hook-counters").stdout.strip(), "on", "on in a new namespace")
    p = t.sh(["ip", "netns", "exec", "r", "setpriv", "--reuid=65534", "--regid=65534",
              "--clear-groups", t.RNFCTL, "hook-counters", "off"], check_rc=False)
    check_eq(p.returncode, 4, f"unprivileged switch refused: {p.stderr}")
    rnf("r", "hook-counters", "off")
    try:
        check_eq(rnf("r", "hook-counters").stdout.strip(), "off", "switched off")
        check("hook counters: off" in rnf("r", "status").stdout, "status says so")
        pre0, fwd0 = seen("PREROUTING"), seen("FORWARD")
        check(ping("a", "10.0.2.2", count=2), "ping through r, counters off")
        pre1, fwd1 = seen("PREROUTING"), seen("FORWARD")
        check_eq((pre1["raw"] - pre0["raw"], fwd1["filter"] - fwd0["filter"]), (0, 0),
                 "hooks without rules count nothing")
        rnf("r", "add", "filter", "FORWARD", "proto", "icmp", "accept")
        check(ping("a", "10.0.2.2", count=2), "ping through r, a FORWARD rule")
        pre2, fwd2 = seen("PREROUTING"), seen("FORWARD")
        check_eq((pre2["raw"] - pre1["raw"], fwd2["mangle"] - fwd1["mangle"],
                  fwd2["filter"] - fwd1["filter"]), (0, 0, 4),
                 "only the stage with rules counts")
    finally:
        rnf("r", "flush", "filter", "FORWARD")
        rnf("r", "hook-counters", "on")
    pre3 = seen("PREROUTING")
    check(ping("a", "10.0.2.2", count=1), "ping through r, counters on again")
    check_eq(seen("PREROUTING")["raw"] - pre3["raw"], 2, "PREROUTING counts again")
    check(not re.search("hook counters", rnf("r", "status").stdout), "no note while on")


def test_order_insert_and_policy(topo):
    rnf("r", "add", "filter", "FORWARD", "proto", "icmp", "accept")
    rnf("r", "insert", "filter", "FORWARD", "at", "1", "proto", "icmp", "daddr", "10.0.2.2", "drop")
    check(not ping("a", "10.0.2.2"), "the inserted drop comes first")
    rnf("r", "delete", "filter", "FORWARD", "proto", "icmp", "daddr", "10.0.2.2", "drop")
    check(ping("a", "10.0.2.2"), "accept after deleting the drop by its text")
    rnf("r", "flush", "filter", "FORWARD")
    rnf("r", "policy", "filter", "FORWARD", "drop")
    try:
        check(not ping("a", "10.0.2.2"), "FORWARD policy drop stops forwarding")
        check(not ping("a", "fd00:2::2"), "the policy applies to IPv6 too")
        rnf("r", "add", "filter", "FORWARD", "ip6", "proto", "icmpv6", "accept")
        check(ping("a", "fd00:2::2"), "an ip6 rule lets ICMPv6 through")
        check(not ping("a", "10.0.2.2"), "... and not IPv4")
        c = chain_of(listing("r", "filter", "FORWARD"), "filter", "FORWARD")
        check(c.get("packets", 0) >= 1, f"policy counter: {c}")
    finally:
        rnf("r", "policy", "filter", "FORWARD", "accept")
        rnf("r", "flush", "filter", "FORWARD")


def test_reject(topo):
    server = subprocess.Popen(["ip", "netns", "exec", "b", "nc", "-l", "-k", "-p", "8080"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        rnf("b", "add", "filter", "INPUT", "proto", "tcp", "dport", "8080", "reject", "with", "tcp-reset")
        start = time.monotonic()
        p = t.sh("nc -z -w5 10.0.2.2 8080", ns="a", check_rc=False)
        took = time.monotonic() - start
        check(p.returncode != 0, "connection should be refused")
        check(took < 4, f"a reset answers at once; took {took:.1f}s (dropped, not rejected?)")
        rnf("b", "flush", "filter", "INPUT")
        rnf("b", "add", "filter", "INPUT", "proto", "udp", "dport", "9999", "reject")
        p = t.sh("echo x | nc -u -w2 10.0.2.2 9999; echo x | nc -u -w2 10.0.2.2 9999", ns="a",
                 check_rc=False)
        c = chain_of(listing("b", "filter", "INPUT"), "filter", "INPUT")
        check(c["rules"][0]["packets"] >= 1, "UDP reject rule counted")
    finally:
        server.kill()
        server.wait()
        rnf("b", "flush", "filter", "INPUT")


def test_user_chains_and_loops(topo):
    rnf("b", "chain", "add", "filter", "PINGS")
    rnf("b", "add", "filter", "INPUT", "proto", "icmp", "jump", "PINGS")
    rnf("b", "add", "filter", "PINGS", "saddr", "10.0.1.0/24", "drop")
    try:
        check(not ping("a", "10.0.2.2"), "a user chain's drop applies")
        rnf("b", "chain", "add", "filter", "LOOP")
        rnf("b", "add", "filter", "LOOP", "jump", "PINGS")
        p = rnf("b", "add", "filter", "PINGS", "jump", "LOOP", ok=False)
        check(p.returncode != 0, "a jump loop must be refused")
        check("itself" in p.stderr or "loop" in p.stderr.lower(), f"loop message: {p.stderr!r}")
        check_eq(len(chain_of(listing("b", "filter", "PINGS"), "filter", "PINGS")["rules"]), 1,
                 "the refused rule changed nothing")
        p = rnf("b", "chain", "delete", "filter", "PINGS", ok=False)
        check(p.returncode != 0, "deleting a chain in use must fail")
        p = rnf("b", "add", "filter", "NOSUCH", "accept", ok=False)
        check(p.returncode != 0 and "NOSUCH" in p.stderr, f"unknown chain message: {p.stderr!r}")
    finally:
        rnf("b", "flush", "filter")
        rnf("b", "chain", "delete", "filter", "LOOP", ok=False)
        rnf("b", "chain", "delete", "filter", "PINGS", ok=False)
    check(ping("a", "10.0.2.2"), "ping after the flush")


def test_log_and_mark(topo):
    rnf("b", "add", "mangle", "PREROUTING", "proto", "icmp", "mark", "set", "0x2a")
    rnf("b", "add", "filter", "INPUT", "mark", "0x2a", "log", "prefix", "RNFTEST-MARKED: ")
    rnf("b", "add", "filter", "INPUT", "mark", "0x2a", "drop")
    try:
        check(not ping("a", "10.0.2.2"), "marked packets are dropped")
        log = t.dmesg()
        check(re.search(r"RNFTEST-MARKED: IN=vb .*SRC=10\.0\.1\.2 DST=10\.0\.2\.2.*PROTO=ICMP", log),
              "log line in dmesg:\n" + "\n".join(log.splitlines()[-5:]))
    finally:
        rnf("b", "flush")
    check(ping("a", "10.0.2.2"), "ping after the flush")


def test_save_restore(topo):
    rnf("b", "chain", "add", "filter", "SSH")
    rnf("b", "add", "filter", "INPUT", "proto", "tcp", "dport", "22", "jump", "SSH")
    rnf("b", "add", "filter", "SSH", "saddr", "10.0.1.0/24", "accept")
    rnf("b", "add", "filter", "SSH", "drop")
    rnf("b", "policy", "filter", "FORWARD", "drop")
    saved = rnf("b", "save").stdout
    rnf("b", "flush")
    rnf("b", "policy", "filter", "FORWARD", "accept")
    p = subprocess.run(["ip", "netns", "exec", "b", t.RNFCTL, "restore"], input=saved,
                       capture_output=True, text=True)
    check_eq(p.returncode, 0, f"restore: {p.stderr}")
    def body(text):
        # restore advances the generation; everything else must round-trip.
        return [l for l in text.splitlines() if not l.startswith("# generation")]

    restored = rnf("b", "save").stdout
    check_eq(body(restored), body(saved), "save after restore")
    # A file the module refuses (a jump loop: rnfctl's parser does not look
    # for those, the module's compiler does) changes nothing, not even the
    # generation.
    bad = restored + "chain LOOPA\nchain LOOPB\nadd LOOPA jump LOOPB\nadd LOOPB jump LOOPA\n"
    p = subprocess.run(["ip", "netns", "exec", "b", t.RNFCTL, "restore"],
                       input=bad, capture_output=True, text=True)
    check(p.returncode != 0, "a bad rule file must be refused")
    check("LOOP" in p.stderr and "itself" in p.stderr, f"the refusal names the problem: {p.stderr!r}")
    check_eq(rnf("b", "save").stdout, restored, "nothing changed by a refused restore")
    rnf("b", "flush")
    rnf("b", "policy", "filter", "FORWARD", "accept")
    rnf("b", "chain", "delete", "filter", "SSH")


def test_host_firewall_sample(topo):
    """samples/host-firewall.rnf: SSH from 10.0.1.0/24 only, HTTP payloads
    dropped and logged, everything else rejected and logged."""
    with open(f"{t.REPO}/samples/host-firewall.rnf") as f:
        sample = f.read()
    p = subprocess.run(["ip", "netns", "exec", "b", t.RNFCTL, "restore"], input=sample,
                       capture_output=True, text=True)
    check_eq(p.returncode, 0, f"restore the sample: {p.stderr}")
    got = "/tmp/rnf-ssh-received"
    server = subprocess.Popen(["ip", "netns", "exec", "b", "sh", "-c",
                               f"exec nc -l -k -p 22 > {got}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        # SSH from the allowed subnet gets through and carries data.
        p = t.sh("printf 'SSH-2.0-test\\n' | nc -q1 -w3 10.0.2.2 22", ns="a", check_rc=False)
        check_eq(p.returncode, 0, f"ssh-like connection from 10.0.1.2: {p.stderr}")
        # From the router's address (10.0.2.1, another subnet): rejected at once.
        start = time.monotonic()
        p = t.sh("nc -z -w5 10.0.2.2 22", ns="r", check_rc=False)
        check(p.returncode != 0 and time.monotonic() - start < 4,
              "SSH from outside 10.0.1.0/24 should be rejected at once")
        # An HTTP request line is dropped even to the SSH port.
        t.sh("printf 'GET / HTTP/1.1\\r\\n\\r\\n' | nc -q1 -w2 10.0.2.2 22", ns="a", check_rc=False)
        time.sleep(0.5)
        with open(got, "rb") as f:
            data = f.read()
        check(b"SSH-2.0-test" in data, f"the server got the SSH banner: {data!r}")
        check(b"HTTP/1.1" not in data, f"the HTTP payload must not arrive: {data!r}")
        log = t.dmesg()
        check("rnf-http-drop: " in log, "HTTP drop logged")
        check("rnf-reject: IN=vb" in log, "reject logged")
    finally:
        server.kill()
        server.wait()
        rnf("b", "flush")


def received(ns, dst, count):
    """How many of `count` pings to dst are answered."""
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1",
                        dst], capture_output=True, text=True)
    m = re.search(r"(\d+) received", p.stdout)
    return int(m.group(1)) if m else 0


def tcp_ok(ns, port, user=None):
    cmd = ["ip", "netns", "exec", ns]
    if user is not None:
        cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    cmd += ["nc", "-z", "-w2", "10.0.2.2", str(port)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def with_rules(ns, rules, probe):
    """Adds rules (lists of words, table and chain first), runs probe, flushes."""
    try:
        for r in rules:
            rnf(ns, "add", *r)
        return probe()
    finally:
        rnf(ns, "flush")


def test_matches(topo):
    server = subprocess.Popen(["ip", "netns", "exec", "b", "nc", "-l", "-k", "-p", "8080"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The server may take a while to listen on a loaded machine.
        deadline = time.monotonic() + 10
        while not tcp_ok("a", 8080) and time.monotonic() < deadline:
            time.sleep(0.5)
        check(tcp_ok("a", 8080), "baseline TCP to b:8080")
        fi = ["filter", "INPUT"]
        # Ports: ranges and negation.
        check(not with_rules("b", [fi + ["proto", "tcp", "dport", "8000-8100", "drop"]],
                             lambda: tcp_ok("a", 8080)), "dport range drop")
        check(with_rules("b", [fi + ["proto", "tcp", "dport", "!", "8000-8100", "drop"]],
                         lambda: tcp_ok("a", 8080)), "negated dport range lets 8080 through")
        check(not with_rules("b", [fi + ["proto", "tcp", "sport", "1024-65535", "dport", "8080", "drop"]],
                             lambda: tcp_ok("a", 8080)), "sport range drop")
        # TCP flags: a SYN without ACK is a new connection.
        check(not with_rules("b", [fi + ["proto", "tcp", "tcp", "flags", "syn", "/", "syn,ack", "drop"]],
                             lambda: tcp_ok("a", 8080)), "tcp flags syn / syn,ack drops new connections")
        # ICMP types: requests reach b, replies do not.
        check_eq(with_rules("b", [fi + ["proto", "icmp", "icmp", "type", "echo-request", "drop"]],
                            lambda: received("a", "10.0.2.2", 2)), 0, "echo-request dropped")
        check_eq(with_rules("b", [fi + ["proto", "icmp", "icmp", "type", "echo-reply", "drop"]],
                            lambda: received("a", "10.0.2.2", 2)), 2, "echo-reply rule leaves requests alone")
        # Interfaces on the router: requests come in on ra, replies on rb.
        ff = ["filter", "FORWARD"]
        check_eq(with_rules("r", [ff + ["iif", "rb", "drop"]], lambda: received("a", "10.0.2.2", 1)),
                 0, "iif rb drops the replies")
        check_eq(with_rules("r", [ff + ["iif", "rx", "drop"]], lambda: received("a", "10.0.2.2", 1)),
                 1, "iif rx matches nothing")
        check_eq(with_rules("r", [ff + ["oif", "r+", "drop"]], lambda: received("a", "10.0.2.2", 1)),
                 0, "oif r+ (prefix) drops")
        check_eq(with_rules("r", [ff + ["iif", "!", "ra", "drop"]], lambda: received("a", "10.0.2.2", 1)),
                 0, "iif ! ra drops the replies")
        # limit: burst 2 then 1/second; ping every 0.2 s -> 2 or 3 of 6 pass.
        n = with_rules("b", [fi + ["proto", "icmp", "limit", "1/second", "burst", "2", "accept"],
                             fi + ["proto", "icmp", "drop"]], lambda: received("a", "10.0.2.2", 6))
        check(2 <= n <= 3, f"limit 1/second burst 2 let {n} of 6 pings through")
        # nth 2: every second request is dropped.
        check_eq(with_rules("b", [fi + ["proto", "icmp", "nth", "2", "drop"]],
                            lambda: received("a", "10.0.2.2", 6)), 3, "nth 2 drops every second ping")
        # random: probability 1 always matches, 0 never.
        check_eq(with_rules("b", [fi + ["proto", "icmp", "random", "1", "drop"]],
                            lambda: received("a", "10.0.2.2", 2)), 0, "random 1")
        check_eq(with_rules("b", [fi + ["proto", "icmp", "random", "0", "drop"]],
                            lambda: received("a", "10.0.2.2", 2)), 2, "random 0")
        # uid: only the nobody user's connections are dropped, at a's OUTPUT.
        fo = ["filter", "OUTPUT"]
        check(with_rules("a", [fo + ["proto", "tcp", "uid", "65534", "drop"]],
                         lambda: (not tcp_ok("a", 8080, user=65534)) and tcp_ok("a", 8080)),
              "uid 65534 drops nobody's connection only")
        check(with_rules("a", [fo + ["proto", "tcp", "gid", "65534", "drop"]],
                         lambda: (not tcp_ok("a", 8080, user=65534)) and tcp_ok("a", 8080)),
              "gid 65534 drops nobody's connection only")
        # return goes back to the caller; goto does not come back.
        rnf("b", "chain", "add", "filter", "SUB")
        try:
            rnf("b", "add", "filter", "SUB", "return")
            check_eq(with_rules("b", [fi + ["proto", "icmp", "jump", "SUB"], fi + ["proto", "icmp", "drop"]],
                                lambda: received("a", "10.0.2.2", 1)), 0, "return comes back to INPUT")
            rnf("b", "add", "filter", "SUB", "return")
            check_eq(with_rules("b", [fi + ["proto", "icmp", "goto", "SUB"], fi + ["proto", "icmp", "drop"]],
                                lambda: received("a", "10.0.2.2", 1)), 1,
                     "after goto, the end of SUB is the end of INPUT (policy accept)")
        finally:
            rnf("b", "flush")
            rnf("b", "chain", "delete", "filter", "SUB")
        # comment is kept and listed.
        rnf("b", "add", "filter", "INPUT", "proto", "icmp", "comment", "pings from the lab", "accept")
        text = rnf("b", "list", "filter", "INPUT").stdout
        check("pings from the lab" in text, f"comment in listing:\n{text}")
        rnf("b", "flush")
        # IPv6 reject: an ICMPv6 error reaches the client at once (with a
        # listener there, so nothing else would refuse the connection).
        server6 = subprocess.Popen(["ip", "netns", "exec", "b", "nc", "-6", "-l", "-k", "-p", "8080"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            check(t.sh("nc -6 -z -w3 fd00:2::2 8080", ns="a", check_rc=False).returncode == 0,
                  "baseline IPv6 TCP to b:8080")
            rnf("b", "add", "filter", "INPUT", "ip6", "proto", "tcp", "dport", "8080", "reject")
            start = time.monotonic()
            p = t.sh("nc -6 -z -w5 fd00:2::2 8080", ns="a", check_rc=False)
            check(p.returncode != 0 and time.monotonic() - start < 4, "IPv6 reject answers at once")
        finally:
            server6.kill()
            server6.wait()
    finally:
        server.kill()
        server.wait()
        rnf("b", "flush")


def rule_rows(ns, table, chain):
    return chain_of(listing(ns, table, chain), table, chain)["rules"]


def test_contract(topo):
    """replace, zero, chain rename, generations, counters that survive other
    changes, and oversized requests."""
    fi = ["filter", "INPUT"]
    try:
        rnf("b", "add", *fi, "proto", "icmp", "accept")
        check_eq(received("a", "10.0.2.2", 2), 2, "pings accepted")
        first = rule_rows("b", *fi)[0]
        check(first["packets"] >= 2, f"counted: {first}")
        # Counters survive a change to another rule.
        rnf("b", "add", *fi, "proto", "tcp", "dport", "9", "drop")
        again = rule_rows("b", *fi)[0]
        check_eq((again["handle"], again["packets"] >= first["packets"]), (first["handle"], True),
                 "first rule's counters after adding another")
        # replace: same handle, new behaviour, counters from zero.
        rnf("b", "replace", *fi, str(first["handle"]), "proto", "icmp", "drop")
        rows = rule_rows("b", *fi)
        check_eq((rows[0]["handle"], rows[0]["packets"]), (first["handle"], 0), "replaced rule")
        check_eq(received("a", "10.0.2.2", 1), 0, "the replacement drops")
        # zero: counters back to 0, rules unchanged.
        check(rule_rows("b", *fi)[0]["packets"] >= 1, "the drop counted")
        rnf("b", "zero", "filter")
        check_eq([r["packets"] for r in rule_rows("b", *fi)], [0, 0], "counters after zero")
        # A writer with a stale generation is refused and changes nothing.
        gen = listing("b", "filter", "INPUT")
        gen = gen.get("generation") if isinstance(gen, dict) else None
        check(isinstance(gen, int), f"listing has a generation: {gen!r}")
        rnf("b", "add", *fi, "proto", "udp", "drop")
        p = rnf("b", "add", "--generation", str(gen), *fi, "proto", "udp", "dport", "53", "accept", ok=False)
        check(p.returncode != 0 and "generation" in p.stderr, f"stale writer: {p.stderr!r}")
        check_eq(len(rule_rows("b", *fi)), 3, "rules after the stale write")
        # rename an unreferenced chain.
        rnf("b", "chain", "add", "filter", "OLDNAME")
        rnf("b", "chain", "rename", "filter", "OLDNAME", "NEWNAME")
        names = [c.get("chain", c.get("name")) for c in listing("b", "filter")["chains"]]
        check("NEWNAME" in names and "OLDNAME" not in names, f"chains after rename: {names}")
        rnf("b", "chain", "delete", "filter", "NEWNAME")
        # An oversized rule (raw request: rnfctl would not build one).
        from test_foundation import Genl, nla
        import errno as E
        g = Genl()
        fam = g.family_id("rnf")
        big = nla(7 | 0x8000, b"\0" * 5000)
        err, txt, _ = g.request(fam, 2, nla(5, bytes([3])) + nla(6, b"INPUT\0") + big)
        check(err in (E.E2BIG, E.EINVAL) and txt, f"oversized rule: errno {err}, message {txt!r}")
        check_eq(len(rule_rows("b", *fi)), 3, "rules after the oversized request")
    finally:
        rnf("b", "flush")


def test_unprivileged_list():
    p = t.rnfctl("list", check_rc=False, user=65534)
    check_eq(p.returncode, 4, "exit status")
    check("permission denied" in p.stderr, p.stderr)


# 8,000 rules with 200-byte comments: about 2 MB in ~35 RULESET_PART
# attributes, ten times the default socket send buffer; the filter table's
# 6,000 rules need counters in several per-CPU chunks (one allocation holds
# 2,048 at most). 100,000-rule sets are exercised by `make bench`, which
# keeps `make check` short (a debug rnfctl parses 100,000 rules slowly
# under TCG).
LARGE_RAW = 2_000
LARGE_FILTER = 6_000
LARGE_TOTAL = LARGE_RAW + LARGE_FILTER
LARGE_COMMENT = " comment " + "x" * 200


def large_rule_file(bad_at=None, loop_at=None):
    """A LARGE_TOTAL-rule file: a blocklist of single addresses in raw
    PREROUTING and filter INPUT, none matching the test
    traffic except the very last rule, which drops ICMP from a. Rule number
    `bad_at` (counted from 1 over the file) is made unparsable, rule
    `loop_at` jumps into a loop of user chains (only the module sees that)."""
    lines = ["table raw"]
    n = 0

    def rule(chain, text):
        nonlocal n
        n += 1
        if n == bad_at:
            text = "saddr 198.19.999.1 drop"
        elif n == loop_at:
            text = "jump LOOPA"
        lines.append(f"add {chain}{LARGE_COMMENT} {text}")

    for i in range(LARGE_RAW):
        rule("PREROUTING", f"saddr 198.18.{i // 256 % 256}.{i % 256} drop")
    lines.append("table filter")
    if loop_at:
        lines += ["chain LOOPA", "chain LOOPB", "add LOOPA jump LOOPB", "add LOOPB jump LOOPA"]
    for i in range(LARGE_FILTER - 1):
        rule("INPUT", f"saddr 198.19.{i // 256 % 256}.{i % 256} proto tcp dport {1 + i % 60000} drop")
    rule("INPUT", "proto icmp saddr 10.0.1.2 drop")
    return "\n".join(lines) + "\n"


def restore_text(ns, text):
    start = time.monotonic()
    p = subprocess.run(["ip", "netns", "exec", ns, t.RNFCTL, "restore"], input=text,
                       capture_output=True, text=True, timeout=600)
    return p, time.monotonic() - start


def rule_count(ns):
    lst = listing(ns)
    chains = lst.get("chains", lst if isinstance(lst, list) else [])
    return sum(len(c["rules"]) for c in chains)


def test_large_restore(topo):
    """Issue 6: a rule set far over the 64 KiB of one netlink attribute
    restores atomically in one request; a bad rule near the end changes
    nothing."""
    check(ping("a", "10.0.2.2"), "baseline ping a->b")
    text = large_rule_file()
    check(len(text) > 512 << 10, f"the file is {len(text)} bytes")
    p, took = restore_text("b", text)
    check_eq(p.returncode, 0, f"restore of {LARGE_TOTAL} rules: {p.stderr}")
    print(f"# large restore: {LARGE_TOTAL} rules ({len(text)} bytes of file) in {took:.2f} s",
          flush=True)
    check_eq(rule_count("b"), LARGE_TOTAL, "rules listed after the restore")
    check(not ping("a", "10.0.2.2"), "the last rule drops ICMP from a")
    # One more rule on top of them, timed.
    for i in range(3):
        start = time.monotonic()
        rnf("b", "add", "filter", "INPUT", "proto", "tcp", "dport", str(9000 + i), "drop")
        print(f"# add to a {LARGE_TOTAL + i}-rule set: "
              f"{time.monotonic() - start:.2f} s", flush=True)
    check_eq(rule_count("b"), LARGE_TOTAL + 3, "rules after three adds")
    saved = rnf("b", "save").stdout

    # A rule rnfctl cannot parse next to last: refused with its line,
    # nothing sent.
    p, _ = restore_text("b", large_rule_file(bad_at=LARGE_TOTAL - 1))
    check(p.returncode != 0, "a file with a bad rule next to last must be refused")
    bad_line = 2 + LARGE_TOTAL - 1  # "table raw", "table filter", then a rule a line
    check(f"line {bad_line}:" in p.stderr, f"the refusal names line {bad_line}: {p.stderr!r}")
    check_eq(rnf("b", "save").stdout, saved, "nothing changed by the refused file")

    # The rule next to last jumps into a loop: only the module finds it,
    # after all parts arrived; the whole request is refused and nothing
    # changes, not even the generation.
    p, took = restore_text("b", large_rule_file(loop_at=LARGE_TOTAL - 1))
    check(p.returncode != 0, "a file with a jump loop next to last must be refused")
    check("LOOP" in p.stderr and "itself" in p.stderr, f"the refusal names the loop: {p.stderr!r}")
    print(f"# refused large restore in {took:.2f} s", flush=True)
    check_eq(rnf("b", "save").stdout, saved, "nothing changed by the refused restore")
    check(not ping("a", "10.0.2.2"), "the old rules still apply")

    rnf("b", "flush")
    check(ping("a", "10.0.2.2"), "ping after the flush")
    check_eq(rule_count("b"), 0, "rules after the flush")


def test_appended_rules(topo):
    """Issue 6: rules appended to a large table go into its tails (compiled
    on their own, not recompiling the table) and act exactly as if the
    table had been compiled with them: first match in order, counters that
    survive the next full compile, user chains and return. With 121 rules
    compiled the tails hold at most 15: the appends below reach that, so a
    background compaction (or, if it is late, a full compile) folds them in
    on the way."""
    check(ping("a", "10.0.2.2"), "baseline ping a->b")
    lines = ["table filter", "chain TAILC"]
    for i in range(120):
        lines.append(f"add INPUT saddr 198.19.{i // 256}.{i % 256} proto tcp dport {1 + i} drop")
    lines.append("add INPUT proto icmp jump TAILC")
    p, _ = restore_text("b", "\n".join(lines) + "\n")
    check_eq(p.returncode, 0, f"restore: {p.stderr}")
    check(ping("a", "10.0.2.2"), "nothing in the 120 rules matches the ping")

    # Into the tail of the user chain: a drop, then a return before it
    # would have let the ping through (it is after the drop: no effect).
    start = time.monotonic()
    rnf("b", "add", "filter", "TAILC", "proto", "icmp", "saddr", "10.0.1.2", "drop")
    print(f"# append to a 121-rule table: {time.monotonic() - start:.2f} s", flush=True)
    rnf("b", "add", "filter", "TAILC", "return")
    check(not ping("a", "10.0.2.2"), "the drop appended to the jumped-to chain applies")
    # A return appended to INPUT's tail after an accept of ICMP: the
    # accept is reached only once the chain returns.
    rnf("b", "flush", "filter", "TAILC")
    for i in range(20):
        rnf("b", "add", "filter", "INPUT", "proto", "udp", "dport", str(7000 + i), "drop")
    rnf("b", "add", "filter", "INPUT", "proto", "icmp", "saddr", "10.0.1.2", "drop")
    rnf("b", "add", "filter", "INPUT", "proto", "icmp", "accept")
    check(not ping("a", "10.0.2.2"), "the first matching appended rule decides (drop before accept)")
    rows = chain_of(listing("b", "filter", "INPUT"), "filter", "INPUT")["rules"]
    check_eq(len(rows), 121 + 22, "rules listed in INPUT")
    drop, accept = rows[-2], rows[-1]
    check(drop["packets"] >= 1, f"the appended drop counted: {drop}")
    check_eq(accept["packets"], 0, f"the accept after it counted nothing: {accept}")
    seen = drop["packets"]

    # A jump cannot go into a tail: this append recompiles the table, and
    # the counters of the rules that were in the tails go on.
    rnf("b", "add", "filter", "INPUT", "proto", "tcp", "dport", "9999", "jump", "TAILC")
    rows = chain_of(listing("b", "filter", "INPUT"), "filter", "INPUT")["rules"]
    check(rows[-3]["packets"] >= seen, f"counter kept across the full compile: {rows[-3]} < {seen}")
    check(not ping("a", "10.0.2.2"), "still dropped after the full compile")
    # Deleting an appended rule (a full compile again) lets the accept act.
    rnf("b", "delete", "filter", "INPUT", str(rows[-3]["handle"]))
    check(ping("a", "10.0.2.2"), "the accept applies once the drop is deleted")
    rows = chain_of(listing("b", "filter", "INPUT"), "filter", "INPUT")["rules"]
    check(rows[-2]["packets"] >= 1, f"the accept counted the ping: {rows[-2]}")
    rnf("b", "flush")
    rnf("b", "chain", "delete", "filter", "TAILC")


def run(topo):
    t.run_test("rules: drop counted and deleted by handle, in one namespace only", test_drop_and_delete, topo)
    t.run_test("rules: points without work unhooked, counted as if hooked",
               test_counts_of_unhooked_points, topo)
    t.run_test("rules: an empty chain's policy counter is exact across zero and rule changes",
               test_policy_counter_of_empty_chain, topo)
    t.run_test("rules: hook counters: counted by tracking's hooks; off and on", test_hook_counters, topo)
    t.run_test("rules: insert at, delete by text, policy drop, ip6 rules", test_order_insert_and_policy, topo)
    t.run_test("rules: reject sends a TCP reset / ICMP error", test_reject, topo)
    t.run_test("rules: user chains; loops and unknown chains refused", test_user_chains_and_loops, topo)
    t.run_test("rules: mangle mark then filter on mark, with a log line", test_log_and_mark, topo)
    t.run_test("rules: save and restore round-trip; a bad file changes nothing", test_save_restore, topo)
    t.run_test("rules: samples/host-firewall.rnf on real traffic", test_host_firewall_sample, topo)
    t.run_test("rules: ports, tcp flags, icmp types, interfaces, limit, nth, random, uid/gid, "
               "return/goto, comment, IPv6 reject", test_matches, topo)
    t.run_test("rules: replace, zero, rename, stale generation, surviving counters, oversized rule",
               test_contract, topo)
    t.run_test("rules: unprivileged list refused", test_unprivileged_list)
    t.run_test("rules: restore of a rule set over 64 KiB in one atomic request; a bad rule "
               "next to last changes nothing", test_large_restore, topo)
    t.run_test("rules: appended rules in tails act in order, in user chains, counters kept",
               test_appended_rules, topo)
