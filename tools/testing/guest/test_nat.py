# SPDX-License-Identifier: GPL-2.0
"""NAT tests (issue 5): the samples for port redirect, port forward,
masquerade and service load balancing, on real traffic between
namespaces, IPv4 and IPv6, with checksum offloads on and off."""

import hashlib
import json
import subprocess
import time

import rnftest as t
from rnftest import check, check_eq

# A TCP server that greets each client with its own address and the
# client's address as it sees them, then echoes lines; "SEND n" makes it
# send n pseudo-random bytes and close, "RECV n" makes it read n bytes and
# answer their SHA-256.
SERVER = r"""
import hashlib, random, socket, sys, threading
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
def serve(c):
    with c:
        f = c.makefile('rwb')
        me = c.getsockname(); peer = c.getpeername()
        f.write(f"{me[0]} {peer[0]} {peer[1]}\n".encode()); f.flush()
        for line in f:
            w = line.split()
            if w and w[0] == b'SEND':
                rnd = random.Random(int(w[1]))
                left = int(w[1])
                while left:
                    n = min(left, 65536)
                    f.write(rnd.randbytes(n)); left -= n
                f.flush()
                return
            if w and w[0] == b'RECV':
                left = int(w[1]); h = hashlib.sha256()
                while left:
                    d = f.read(min(left, 65536))
                    if not d:
                        break
                    h.update(d); left -= len(d)
                f.write(h.hexdigest().encode() + b"\n"); f.flush()
                continue
            f.write(line); f.flush()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# A client: connects (from an optional source address and port), prints the
# greeting, then runs commands from argv: "echo:WORD", "get:N", "put:N",
# "wait:WHY" (reads a line from stdin first).
CLIENT = r"""
import hashlib, random, socket, sys
dst, port, src, sport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
fam = socket.AF_INET6 if ':' in dst else socket.AF_INET
c = socket.socket(fam)
c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if src != '-':
    c.bind((src, sport))
c.settimeout(20)
c.connect((dst, port))
f = c.makefile('rwb')
print('greeting', f.readline().decode().strip(), flush=True)
for cmd in sys.argv[5:]:
    op, arg = cmd.split(':')
    if op == 'echo':
        f.write(arg.encode() + b"\n"); f.flush()
        print('echo', f.readline().decode().strip(), flush=True)
    elif op == 'get':
        n = int(arg); f.write(f"SEND {n}\n".encode()); f.flush()
        h = hashlib.sha256(); got = 0
        while True:
            d = f.read(65536)
            if not d:
                break
            h.update(d); got += len(d)
        want = hashlib.sha256(random.Random(n).randbytes(n)).hexdigest()
        print('get', got, h.hexdigest() == want, flush=True)
    elif op == 'put':
        n = int(arg); data = random.Random(n + 1).randbytes(n)
        f.write(f"RECV {n}\n".encode()); f.write(data); f.flush()
        ok = f.readline().decode().strip() == hashlib.sha256(data).hexdigest()
        print('put', n, ok, flush=True)
    elif op == 'wait':
        sys.stdin.readline()
"""


def rnf(ns, *args, ok=True):
    p = t.rnfctl(*args, ns=ns, check_rc=False)
    if ok and p.returncode != 0:
        raise t.TestFailure(f"rnfctl {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def ct_stats(ns):
    """`rnfctl conntrack stats --json` in `ns`."""
    return json.loads(rnf(ns, "conntrack", "stats", "--json").stdout)


def restore(ns, name):
    with open(f"{t.REPO}/samples/{name}") as f:
        text = f.read()
    p = subprocess.run(["ip", "netns", "exec", ns, t.RNFCTL, "restore"], input=text,
                       capture_output=True, text=True)
    check_eq(p.returncode, 0, f"restore samples/{name}: {p.stderr}")


def server(ns, addr, port):
    p = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", SERVER, addr, str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t.wait_listening(p, ns, port)
    check(p.poll() is None,
          f"server {addr}:{port} runs: {p.stderr.read() if p.poll() is not None else ''}")
    return p


def client(ns, dst, port, *cmds, src="-", sport=0, check_rc=True, timeout=120):
    """Runs the client; returns {'greeting': (local, peer, peer_port), ...} or None."""
    p = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", CLIENT, dst, str(port), src,
                        str(sport), *cmds], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        if check_rc:
            raise t.TestFailure(f"client {dst}:{port} from {ns} failed: {p.stderr[-500:]}")
        return None
    out = {"echo": [], "get": [], "put": []}
    for line in p.stdout.splitlines():
        w = line.split()
        if w[0] == "greeting":
            out["greeting"] = (w[1], w[2], int(w[3]))
        else:
            out[w[0]].append(w[1:])
    return out


def live_client(dst, port, *cmds, src="-", sport=0):
    """The client, run from a and left running: its "wait:" commands hold
    until `go` lets it on."""
    return subprocess.Popen(["ip", "netns", "exec", "a", "python3", "-c", CLIENT, dst, str(port),
                             src, str(sport), *cmds],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def go(*lives):
    """Lets each live client past the "wait:" it holds at."""
    for live in lives:
        live.stdin.write("go\n")
        live.stdin.flush()


def chain_rules(ns, table, chain, *opts):
    """The rules of `chain` in `table` as `rnfctl list --json` gives them,
    and the whole listing (for messages)."""
    rows = json.loads(rnf(ns, "list", table, chain, *opts, "--json").stdout)
    chains = rows.get("chains", []) if isinstance(rows, dict) else rows
    return [r for c in chains for r in c["rules"]], rows


def stop(*procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def cleanup(*nss):
    for ns in nss:
        rnf(ns, "flush")
        rnf(ns, "conntrack", "flush")


def flows(ns, *filters):
    return json.loads(rnf(ns, "conntrack", "list", "--json", *filters).stdout)


def test_nat_rules_come_and_go_while_tracking(topo):
    """In a namespace that tracks flows but has never had a nat rule (its
    NAT stages skip the packets), a nat rule added translates the next
    flow; once the nat rules are flushed, that flow stays translated both
    ways and new ones are not (as with nf_nat, while a rule keeps packets
    tracked: here the filter rule)."""
    # Fresh namespaces: r must never have had a nat rule (earlier tests
    # gave it some).
    topo.up()
    rnf("r", "add", "filter", "FORWARD", "ct", "state", "established,related", "accept")
    srv = server("b", "10.0.2.2", 22)
    live = None
    try:
        r = client("a", "10.0.2.2", 22, "echo:before")
        check_eq(r["greeting"][1], "10.0.1.2", "before: the server sees the client's own address")
        f = flows("r", "-p", "tcp", "--dport", "22", "-f", "ipv4")
        check(len(f) == 1 and "dnat" not in f[0]["status"] and "snat" not in f[0]["status"],
              f"before: one flow, tracked, untranslated: {f}")
        rnf("r", "add", "nat", "PREROUTING", "iif", "ra", "proto", "tcp", "dport", "2222",
            "dnat", "to", "10.0.2.2:22")
        rnf("r", "add", "nat", "POSTROUTING", "oif", "rb", "masquerade")
        live = live_client("10.0.1.1", 2222, "echo:after", "wait:flush", "echo:still")
        greeting = live.stdout.readline().split()
        check_eq(greeting[:1] + greeting[2:3], ["greeting", "10.0.2.1"],
                 "after: forwarded to b:22, which sees the router's address")
        check_eq(live.stdout.readline().strip(), "echo after", "after: data flows")
        rnf("r", "flush", "nat")
        go(live)
        out, err = live.communicate(timeout=60)
        check_eq((live.returncode, out.strip()), (0, "echo still"),
                 f"the translated flow outlives the flushed rules: {err[-300:]}")
        check(client("a", "10.0.1.1", 2222, check_rc=False, timeout=30) is None,
              "a new flow to 2222 is no longer forwarded")
    finally:
        stop(srv, *([live] if live else []))
        cleanup("r")


def test_untranslated_flows_pass(topo):
    """Flows that the nat rules leave alone pass r's NAT stages as they are,
    both ways, v4 and v6: a connection opened before r had nat rules lives
    on once it has them, and new connections that no nat rule matches (a
    DNAT of another port, masquerade out of a's side) reach b from a's own
    address, with data intact both ways, and are listed untranslated."""
    topo.up()
    rnf("r", "add", "filter", "FORWARD", "ct", "state", "established,related", "accept")
    srv4 = server("b", "10.0.2.2", 22)
    srv6 = server("b", "fd00:2::2", 22)
    live = None
    try:
        live = live_client("10.0.2.2", 22, "echo:before", "wait:rules", "echo:after",
                           "get:100000")
        check_eq(live.stdout.readline().split()[2:3], ["10.0.1.2"],
                 "before: b sees a's own address")
        check_eq(live.stdout.readline().strip(), "echo before", "before: data flows")
        for other in ("10.0.2.2:22", "[fd00:2::2]:22"):
            rnf("r", "add", "nat", "PREROUTING", "iif", "ra", "proto", "tcp", "dport", "2222",
                "dnat", "to", other)
        rnf("r", "add", "nat", "POSTROUTING", "oif", "ra", "masquerade")
        go(live)
        out, err = live.communicate(timeout=60)
        check_eq((live.returncode, out.split("\n")[:2]), (0, ["echo after", "get 100000 True"]),
                 f"the flow from before the rules carries data both ways: {err[-300:]}")
        for dst, src in (("10.0.2.2", "10.0.1.2"), ("fd00:2::2", "fd00:1::2")):
            r = client("a", dst, 22, "echo:new", "put:100000", "get:100000")
            check_eq(r["greeting"][1], src, f"{dst}: b sees a's own address")
            check_eq((r["echo"], r["put"], r["get"]),
                     ([["new"]], [["100000", "True"]], [["100000", "True"]]),
                     f"{dst}: data intact both ways")
        f = flows("r", "-p", "tcp", "--dport", "22")
        check(len(f) >= 3 and all("dnat" not in x["status"] and "snat" not in x["status"]
                                  and x["reply"]["dst"] in ("10.0.1.2", "fd00:1::2") for x in f),
              f"the flows are listed untranslated: {f}")
    finally:
        stop(srv4, srv6, *([live] if live else []))
        cleanup("r")


def test_filter_rules_come_and_go_on_translated_flows(topo):
    """Port-forwarded and masqueraded connections (v4 and v6) opened while
    r has no filter rules carry data both ways on through a FORWARD chain
    added mid-flow that accepts only established flows and drops invalid
    ones (policy drop), and on once it is flushed again: the filter sees
    the translated packets as their flow's, never as invalid (its invalid
    rule counts nothing, its state rule counts both uploads' bytes)."""
    topo.up()
    srv4 = server("b", "10.0.2.2", 22)
    srv6 = server("b", "fd00:2::2", 22)
    lives = []
    try:
        for other in ("10.0.2.2:22", "[fd00:2::2]:22"):
            rnf("r", "add", "nat", "PREROUTING", "iif", "ra", "proto", "tcp", "dport", "2222",
                "dnat", "to", other)
        rnf("r", "add", "nat", "POSTROUTING", "oif", "rb", "masquerade")
        for via, seen in (("10.0.1.1", "10.0.2.1"), ("fd00:1::1", "fd00:2::1")):
            live = live_client(via, 2222, "echo:before", "wait:filter", "echo:during",
                               "put:200000", "wait:flush", "echo:after", "get:200000")
            lives.append(live)
            check_eq(live.stdout.readline().split()[2:3], [seen],
                     f"{via}: forwarded to b, which sees r's address")
            check_eq(live.stdout.readline().strip(), "echo before", f"{via}: data flows")
        rnf("r", "add", "filter", "FORWARD", "ct", "state", "invalid", "drop")
        rnf("r", "add", "filter", "FORWARD", "ct", "state", "established,related", "accept")
        rnf("r", "policy", "filter", "FORWARD", "drop")
        go(*lives)
        for via, live in zip(("10.0.1.1", "fd00:1::1"), lives):
            got = [live.stdout.readline().strip() for _ in range(2)]
            check_eq(got, ["echo during", "put 200000 True"],
                     f"{via}: data both ways through the filter added mid-flow")
        rules, rows = chain_rules("r", "filter", "FORWARD", "-v")
        counts = [(r["packets"], r["bytes"]) for r in rules]
        check(len(counts) == 2 and counts[0] == (0, 0) and counts[1][1] >= 400000,
              f"no translated packet seen as invalid; the state rule took both uploads: {rows}")
        rnf("r", "flush", "filter")
        rnf("r", "policy", "filter", "FORWARD", "accept")
        go(*lives)
        for via, live in zip(("10.0.1.1", "fd00:1::1"), lives):
            out, err = live.communicate(timeout=60)
            check_eq((live.returncode, out.split("\n")[:2]), (0, ["echo after", "get 200000 True"]),
                     f"{via}: data both ways once the filter is flushed: {err[-300:]}")
    finally:
        stop(srv4, srv6, *lives)
        rnf("r", "policy", "filter", "FORWARD", "accept")
        cleanup("r")


def test_mangle_rules_between_tracking_and_nat(topo):
    """A mangle PREROUTING chain runs after tracking and before nat-dst: its
    rule marks a port-forwarded flow on the flow's first packet, which the
    filter then lets through by that mark alone (policy drop). Without
    mangle rules, tracking runs in the nat-dst hook itself (one hook
    fewer): new flows are still translated, both ways."""
    srv = server("b", "10.0.2.2", 22)
    try:
        rnf("r", "add", "nat", "PREROUTING", "iif", "ra", "proto", "tcp", "dport", "2222",
            "dnat", "to", "10.0.2.2:22")
        rnf("r", "add", "nat", "POSTROUTING", "oif", "rb", "masquerade")
        rnf("r", "add", "filter", "FORWARD", "ct", "state", "established,related", "accept")
        rnf("r", "add", "filter", "FORWARD", "ct", "mark", "0x2a", "accept")
        rnf("r", "policy", "filter", "FORWARD", "drop")
        mark = ["iif", "ra", "proto", "tcp", "dport", "2222", "ct", "mark", "set", "0x2a"]
        rnf("r", "add", "mangle", "PREROUTING", *mark)
        r = client("a", "10.0.1.1", 2222, "echo:marked", timeout=60)
        check_eq((r["greeting"][1], r["echo"]), ("10.0.2.1", [["marked"]]),
                 "marked in mangle, forwarded to b:22, masqueraded")
        f = flows("r", "-p", "tcp", "--dport", "2222", "-f", "ipv4")
        check(len(f) == 1 and f[0]["mark"] == 0x2a and "dnat" in f[0]["status"],
              f"one flow, marked and translated: {f}")
        rules, rows = chain_rules("r", "mangle", "PREROUTING")
        counts = [r["packets"] for r in rules]
        check(len(counts) == 1 and counts[0] >= 3, f"the mangle rule saw the client's packets: {rows}")
        # No mangle rule left: tracking moves into the nat-dst hook.
        rnf("r", "delete", "mangle", "PREROUTING", *mark)
        rnf("r", "add", "filter", "FORWARD", "proto", "tcp", "dport", "22", "accept")
        rnf("r", "conntrack", "flush")
        for word in ("again", "more"):
            r = client("a", "10.0.1.1", 2222, f"echo:{word}", timeout=60)
            check_eq((r["greeting"][1], r["echo"]), ("10.0.2.1", [[word]]),
                     f"{word}: without mangle rules, still forwarded and masqueraded")
        f = flows("r", "-p", "tcp", "--dport", "2222", "-f", "ipv4")
        check(len(f) == 2 and all(x["mark"] == 0 and "dnat" in x["status"] for x in f),
              f"two new flows, unmarked, translated: {f}")
    finally:
        stop(srv)
        rnf("r", "policy", "filter", "FORWARD", "accept")
        cleanup("r")


def test_port_redirect(topo):
    """samples/port-redirect.rnf on b: 8445 reaches the server on 8443 from
    another namespace and from b itself over loopback; 8443 is closed to
    the network."""
    restore("b", "port-redirect.rnf")
    srv = server("b", "0.0.0.0", 8443)
    try:
        r = client("a", "10.0.2.2", 8445, "echo:via-8445")
        check_eq(r["echo"], [["via-8445"]], "echo through the redirect")
        check_eq(r["greeting"][0], "10.0.2.2", "server answered on the incoming interface's address")
        r = client("b", "127.0.0.1", 8445, "echo:local")
        check_eq(r["echo"], [["local"]], "local client via OUTPUT redirect on loopback")
        check(client("a", "10.0.2.2", 8443, check_rc=False, timeout=30) is None,
              "direct access to 8443 is refused")
        f = flows("b", "-p", "tcp", "--dport", "8445")
        check(f and f[0]["reply"]["sport"] == 8443 and "dnat" in f[0]["status"],
              f"conntrack shows the redirect: {f}")
    finally:
        stop(srv)
        cleanup("b")


def test_port_forward(topo):
    """samples/port-forward.rnf on r: a reaches b's port 22 through r's port
    2222, b sees r's address, data flows both ways; IPv6 too; conntrack
    shows both tuples."""
    restore("r", "port-forward.rnf")
    srv4 = server("b", "10.0.2.2", 22)
    srv6 = server("b", "fd00:2::2", 22)
    try:
        r = client("a", "10.0.1.1", 2222, "echo:hello", "echo:again", "put:200000", "get:200000")
        check_eq(r["greeting"][1], "10.0.2.1", "the server sees the router's address")
        check_eq(r["echo"], [["hello"], ["again"]], "the session carries data both ways")
        check_eq(r["get"], [["200000", "True"]], "download intact")
        check_eq(r["put"], [["200000", "True"]], "upload intact")
        r6 = client("a", "fd00:1::1", 2222, "echo:six")
        check_eq(r6["greeting"][1], "fd00:2::1", "IPv6: the server sees the router's address")
        check_eq(r6["echo"], [["six"]], "IPv6 session carries data")
        f = flows("r", "-p", "tcp", "--dport", "2222", "-f", "ipv4")
        check_eq(len(f), 1, f"one forwarded flow listed: {f}")
        f = f[0]
        check_eq((f["orig"]["src"], f["orig"]["dst"], f["orig"]["dport"]),
                 ("10.0.1.2", "10.0.1.1", 2222), "original tuple")
        check_eq((f["reply"]["src"], f["reply"]["sport"], f["reply"]["dst"]),
                 ("10.0.2.2", 22, "10.0.2.1"), "reply tuple after DNAT and masquerade")
        check("dnat" in f["status"] and "snat" in f["status"], f"status: {f['status']}")
    finally:
        stop(srv4, srv6)
        cleanup("r")


def test_masquerade_private_network(topo):
    """samples/masquerade.rnf on r: three inside hosts (addresses) using the
    same source port at once all reach the outside, which sees only the
    router's address, each flow on its own port."""
    for i in (3, 4):
        t.sh(f"ip addr add 10.0.1.{i}/24 dev va", ns="a")
    restore("r", "masquerade.rnf")
    srv = server("b", "10.0.2.2", 80)
    procs = []
    try:
        for i in (2, 3, 4):
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", "a", "python3", "-c", CLIENT, "10.0.2.2", "80",
                 f"10.0.1.{i}", "40000", f"echo:host{i}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        seen = []
        for i, p in zip((2, 3, 4), procs):
            out, err = p.communicate(timeout=60)
            check_eq(p.returncode, 0, f"client 10.0.1.{i}: {err[-300:]}")
            lines = dict(line.split(" ", 1) for line in out.splitlines())
            local, peer, port = lines["greeting"].split()
            check_eq(peer, "10.0.2.1", f"host {i} appears as the router")
            check_eq(lines["echo"], f"host{i}", f"host {i}'s session works")
            seen.append(int(port))
        check_eq(len(set(seen)), 3, f"three flows on three distinct ports: {seen}")
        check(40000 in seen, f"the first flow keeps its port: {seen}")
        f = flows("r", "-p", "tcp", "--sport", "40000")
        check_eq(len(f), 3, f"three flows listed: {f}")
        check(all("snat" in x["status"] for x in f), "all source-NATed")
        # IPv6 through the same sample.
        srv6 = server("b", "fd00:2::2", 80)
        try:
            r = client("a", "fd00:2::2", 80, "echo:v6")
            check_eq(r["greeting"][1], "fd00:2::1", "IPv6 masqueraded to the router's address")
        finally:
            stop(srv6)
        # The router loses its inside address: its masqueraded flows go.
        t.sh("ip addr del 10.0.2.1/24 dev rb", ns="r")
        check_eq(flows("r", "-p", "tcp", "--sport", "40000", "-f", "ipv4"), [],
                 "flows forgotten when the masquerade address goes away")
    finally:
        t.sh("ip addr add 10.0.2.1/24 dev rb", ns="r", check_rc=False)
        t.sh("ip route replace default via 10.0.2.1", ns="b", check_rc=False)
        for i in (3, 4):
            t.sh(f"ip addr del 10.0.1.{i}/24 dev va", ns="a", check_rc=False)
        stop(srv, *procs)
        cleanup("r")


# A connected UDP socket sends to argv[1] port argv[2]; prints how it ended.
UDP_REFUSED = (r"import socket,sys; fam=socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET;"
               r"s=socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(3);"
               r"s.connect((sys.argv[1], int(sys.argv[2]))); s.send(b'x');"
               "\ntry:\n s.recv(100); print('data')"
               "\nexcept ConnectionRefusedError: print('refused')"
               "\nexcept socket.timeout: print('timeout')")


def refused_through_r(ns, dsts, port, nat):
    """From `ns`, a connected UDP socket to each of `dsts` at `port` must
    see the refusal (an ICMP port unreachable that came back through r),
    and r must list that one flow with status `nat` (snat or dnat)."""
    for dst in dsts:
        out = t.sh(["python3", "-c", UDP_REFUSED, dst, str(port)], ns=ns).stdout.strip()
        check_eq(out, "refused", f"the port unreachable for {dst}:{port} reached the client")
        f = flows("r", "-p", "udp", "--dport", str(port), "-f", "ipv6" if ":" in dst else "ipv4")
        check_eq(len(f), 1, f"one UDP flow to {dst} port {port}: {f}")
        check(nat in f[0]["status"], f"the flow has {nat}: {f[0]['status']}")


def test_masquerade_icmp_error(topo):
    """samples/masquerade.rnf on r: the outside host's port unreachable for
    a masqueraded UDP flow is addressed to the router; r translates it
    back (outer destination and the quoted packet's source), so the inside
    client's connected socket sees the refusal, IPv4 and IPv6."""
    restore("r", "masquerade.rnf")
    try:
        refused_through_r("a", ("10.0.2.2", "fd00:2::2"), 9, "snat")
    finally:
        cleanup("r")


def test_dnat_icmp_error(topo):
    """A UDP port forwarded by r to a closed port of the inside host: that
    host's port unreachable comes back through r with its source and the
    quoted packet's destination translated back to r's forwarded port, so
    the outside client's connected socket sees the refusal, IPv4 and IPv6."""
    rnf("r", "add", "nat", "PREROUTING", "iif", "rb", "proto", "udp", "dport", "5353",
        "dnat", "to", "10.0.1.2:9")
    rnf("r", "add", "nat", "PREROUTING", "iif", "rb", "proto", "udp", "dport", "5353",
        "dnat", "to", "[fd00:1::2]:9")
    try:
        refused_through_r("b", ("10.0.2.1", "fd00:2::1"), 5353, "dnat")
    finally:
        cleanup("r")


# Prints, as hex, the first ICMP "fragmentation needed" (IPv4) or "packet
# too big" (IPv6) that reaches device argv[1] within argv[2] seconds (after
# printing "ready"), from the IP header on; nothing if none came.
SNIFF_TOO_BIG = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(0.5)
print('ready', flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        frame = s.recv(4096)
    except socket.timeout:
        continue
    ip = frame[14:]
    et = frame[12:14]
    if et == b'\x08\x00' and len(ip) > 22 and ip[9] == 1 and ip[20:22] == b'\x03\x04':
        print(ip.hex(), flush=True); break
    if et == b'\x86\xdd' and len(ip) > 41 and ip[6] == 58 and ip[40] == 2:
        print(ip.hex(), flush=True); break
"""

# Sends from this namespace, to argv[1] (the router), an ICMP error that
# quotes the start of a TCP segment argv[2]:argv[3] -> argv[4]:argv[5]
# with sequence number argv[6], as a router further on would when the
# segment does not fit its next link (MTU 1000): "fragmentation needed"
# quoting the IPv4 header and the first 8 bytes of TCP (ports and sequence
# number, not the TCP checksum), or "packet too big" quoting the IPv6
# header and the whole 20-byte TCP header.
SEND_TOO_BIG = r"""
import socket, struct, sys
to, src, sport, dst, dport, seq = sys.argv[1:7]
sport, dport, seq = int(sport), int(dport), int(seq)
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
if ':' not in to:
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 1400, 4242, 0x4000, 63, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    quote = ip + struct.pack('!HHI', sport, dport, seq)
    icmp = struct.pack('!BBHHH', 3, 4, 0, 0, 1000) + quote
    icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.sendto(icmp, (to, 0))
else:
    s6, d6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    tcp = struct.pack('!HHIIBBHHH', sport, dport, seq, 0, 0x50, 0x10, 65535, 0, 0)
    tcp = tcp[:16] + struct.pack('!H', csum(s6 + d6 + struct.pack('!IxxxB', 1380, 6)
                                          + tcp + b'\0' * 1360)) + tcp[18:]
    ip = struct.pack('!IHBB16s16s', 6 << 28, 1380, 6, 63, s6, d6)
    # The kernel fills in the ICMPv6 checksum.
    icmp = struct.pack('!BBHI', 2, 0, 0, 1280) + ip + tcp
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.sendto(icmp, (to, 0))
"""


def csum16(b):
    if len(b) % 2:
        b += b"\0"
    total = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return total


def test_snat_tcp_too_big(topo):
    """A TCP flow source-NATed by r to another port: a router beyond r
    (played by b) sends r "fragmentation needed" (IPv4: the quote holds the
    IPv4 header and only 8 bytes of TCP) or "packet too big" (IPv6) about
    a segment of the flow. r translates it back: the inside host gets it
    addressed to itself, quoting its own address and port, with valid IPv4
    header and ICMP checksums, so its path MTU discovery works through the
    NAT."""
    rnf("r", "add", "nat", "POSTROUTING", "oif", "rb", "proto", "tcp", "snat", "to",
        "10.0.2.1:31000")
    rnf("r", "add", "nat", "POSTROUTING", "oif", "rb", "proto", "tcp", "snat", "to",
        "[fd00:2::1]:31000")
    procs = []
    try:
        for v6 in (False, True):
            inside, router, outside = (("fd00:1::2", "fd00:2::1", "fd00:2::2") if v6 else
                                       ("10.0.1.2", "10.0.2.1", "10.0.2.2"))
            fam = "ipv6" if v6 else "ipv4"
            srv = server("b", outside, 80)
            cli = live_client(outside, 80, "echo:hi", "wait:icmp", src=inside, sport=40000)
            sniff = subprocess.Popen(["ip", "netns", "exec", "a", "python3", "-c", SNIFF_TOO_BIG,
                                      "va", "30"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            procs += [srv, cli, sniff]
            check_eq(cli.stdout.readline().split()[2:], [router, "31000"],
                     f"{fam}: the server sees the flow from the router's port 31000")
            check_eq(cli.stdout.readline().strip(), "echo hi", f"{fam}: the session works")
            check_eq(sniff.stdout.readline().strip(), "ready", f"{fam}: sniffer ready")
            f = flows("r", "-p", "tcp", "--sport", "40000", "-f", fam)
            check_eq(len(f), 1, f"{fam}: one flow listed: {f}")
            t.sh(["python3", "-c", SEND_TOO_BIG, router, router, "31000", outside, "80",
                  "123456789"], ns="b")
            out, err = sniff.communicate(timeout=60)
            check(out.strip(), f"{fam}: the ICMP error reached the inside host: {err[-300:]}")
            pkt = bytes.fromhex(out.strip())
            if not v6:
                hl = (pkt[0] & 15) * 4
                check_eq((pkt[12:16], pkt[16:20]),
                         (bytes([10, 0, 2, 2]), bytes([10, 0, 1, 2])),
                         "outer source and (translated) destination")
                check_eq(csum16(pkt[:hl]), 0xffff, "outer IPv4 header checksum")
                icmp = pkt[hl:int.from_bytes(pkt[2:4], "big")]
                check_eq(csum16(icmp), 0xffff, "ICMP checksum over the translated quote")
                check_eq(int.from_bytes(icmp[6:8], "big"), 1000, "next-hop MTU kept")
                q = icmp[8:]
                check_eq((q[12:16], q[16:20]), (bytes([10, 0, 1, 2]), bytes([10, 0, 2, 2])),
                         "quoted source translated back")
                check_eq(csum16(q[:20]), 0xffff, "quoted IPv4 header checksum")
                check_eq(q[20:28].hex(), (40000).to_bytes(2, "big").hex() + "0050"
                         + (123456789).to_bytes(4, "big").hex(),
                         "quoted ports (source port translated back) and sequence number")
            else:
                check_eq(pkt[24:40].hex(), "fd000001000000000000000000000002",
                         "outer destination translated")
                icmp = pkt[40:40 + int.from_bytes(pkt[4:6], "big")]
                pseudo = pkt[8:40] + len(icmp).to_bytes(4, "big") + b"\0\0\0\x3a"
                check_eq(csum16(pseudo + icmp), 0xffff, "ICMPv6 checksum")
                q = icmp[8:]
                check_eq(q[8:24].hex(), "fd000001000000000000000000000002",
                         "quoted source translated back")
                check_eq(q[40:42], (40000).to_bytes(2, "big"), "quoted source port")
                # The quoted TCP checksum follows the new address and port:
                # it checks over them and the segment's (zero) payload.
                tcp_pseudo = q[8:40] + (1380).to_bytes(4, "big") + b"\0\0\0\x06"
                check_eq(csum16(tcp_pseudo + q[40:60] + b"\0" * 1360), 0xffff,
                         "quoted TCP checksum updated")
            go(cli)
            cli.wait(timeout=30)
            stop(srv)
    finally:
        stop(*procs)
        cleanup("r")


def test_service_load_balancing(topo):
    """samples/service-lb.rnf on r: connections to the virtual IP spread
    over three backends; each connection stays on its backend."""
    for i in (3, 4):
        t.sh(f"ip addr add 10.0.2.{i}/24 dev vb", ns="b")
    restore("r", "service-lb.rnf")
    servers = [server("b", f"10.0.2.{i}", 8080) for i in (2, 3, 4)]
    try:
        used = {}
        for _ in range(24):
            r = client("a", "10.96.0.10", 80, "echo:one", "echo:two", "echo:three")
            check_eq(r["echo"], [["one"], ["two"], ["three"]], "every request answered in order")
            used[r["greeting"][0]] = used.get(r["greeting"][0], 0) + 1
        check_eq(sorted(used), ["10.0.2.2", "10.0.2.3", "10.0.2.4"], f"every backend used: {used}")
        # One held connection: the same backend answers every request.
        p = live_client("10.96.0.10", 80, *[f"echo:n{i}" for i in range(20)])
        out, err = p.communicate(timeout=60)
        check_eq(p.returncode, 0, f"held connection: {err[-300:]}")
        check_eq(out.count("echo n"), 20, "20 answers on one connection")
        f = flows("r", "-p", "tcp", "--dport", "80", "--dst", "10.96.0.10")
        check(f and all(x["reply"]["src"] in ("10.0.2.2", "10.0.2.3", "10.0.2.4") for x in f),
              f"flows bound to backends: {f[:2]}")
    finally:
        stop(*servers)
        for i in (3, 4):
            t.sh(f"ip addr del 10.0.2.{i}/24 dev vb", ns="b", check_rc=False)
        cleanup("r")


def set_offloads(on):
    state = "on" if on else "off"
    for ns, dev in (("a", "va"), ("r", "ra"), ("r", "rb"), ("b", "vb")):
        t.sh(f"ethtool -K {dev} tx {state} rx {state} tso {state} gso {state} gro {state}",
             ns=ns, check_rc=False)


def test_large_transfers_offloads(topo):
    """Megabytes through DNAT + masquerade arrive intact (SHA-256 checked by
    the receiver) with checksum offloads on and off, both families."""
    restore("r", "port-forward.rnf")
    srv4 = server("b", "10.0.2.2", 22)
    srv6 = server("b", "fd00:2::2", 22)
    try:
        for on in (True, False):
            set_offloads(on)
            for dst in ("10.0.1.1", "fd00:1::1"):
                r = client("a", dst, 2222, "put:3000000" if dst[0] == "1" else "echo:x",
                           "get:3000000", timeout=240)
                check_eq(r["get"], [["3000000", "True"]], f"download via {dst}, offloads {on}")
                if dst[0] == "1":
                    check_eq(r["put"], [["3000000", "True"]], f"upload via {dst}, offloads {on}")
    finally:
        set_offloads(True)
        stop(srv4, srv6)
        cleanup("r")


UDP_SINK = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('10.0.2.2', 7000)); s.settimeout(60)
seen = []
try:
    while True:
        d, a = s.recvfrom(100)
        if d == b'end':
            break
        seen.append(a[1])
except socket.timeout:
    pass
print(' '.join(map(str, sorted(seen))))
"""


def test_snat_range_exhausted(topo):
    """snat to a range of two ports: two flows get them, a third finds no
    free tuple and its packet is dropped and counted."""
    rnf("r", "add", "nat", "POSTROUTING", "oif", "rb", "proto", "udp", "snat", "to",
        "10.0.2.1:30000-30001")
    before = ct_stats("r")["nat_drops"]
    sink = subprocess.Popen(["ip", "netns", "exec", "b", "python3", "-c", UDP_SINK],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t.wait_listening(sink, "b", 7000, udp=True)
        for sport in (5001, 5002, 5003):
            t.sh(["python3", "-c", "import socket; s=socket.socket(socket.AF_INET, "
                  f"socket.SOCK_DGRAM); s.bind(('10.0.1.2', {sport})); "
                  "s.sendto(b'x', ('10.0.2.2', 7000))"], ns="a")
        # The end marker, sent in b itself: the sink stops when every
        # datagram sent before it that got through has arrived.
        time.sleep(0.5)
        t.sh(["python3", "-c", "import socket; s=socket.socket(socket.AF_INET, "
              "socket.SOCK_DGRAM); s.sendto(b'end', ('10.0.2.2', 7000))"], ns="b")
        out, err = sink.communicate(timeout=90)
        check_eq(out.split(), ["30000", "30001"], f"two flows mapped into the range: {err}")
        after = ct_stats("r")["nat_drops"]
        check_eq(after - before, 1, "the third flow's packet dropped and counted")
    finally:
        stop(sink)
        cleanup("r")


def test_nat_rules_refused(topo):
    """NAT actions outside the nat table or on the wrong hook are refused
    with a reason, and change nothing."""
    before = rnf("r", "save").stdout
    for args, word in ((["filter", "INPUT", "dnat", "to", "10.0.0.1"], "nat"),
                       (["nat", "POSTROUTING", "dnat", "to", "10.0.0.1"], "PREROUTING"),
                       (["nat", "PREROUTING", "masquerade"], "POSTROUTING")):
        p = rnf("r", "add", *args, ok=False)
        check(p.returncode != 0 and word in p.stderr, f"{args} refused naming {word}: {p.stderr}")
    check_eq(rnf("r", "save").stdout, before, "nothing changed")


def run(topo):
    t.kill_strays("a", "r", "b")
    t.run_test("nat: nat rules added and flushed while flows are tracked",
               test_nat_rules_come_and_go_while_tracking, topo)
    t.run_test("nat: flows the nat rules leave alone pass untouched, v4 and v6, before and after",
               test_untranslated_flows_pass, topo)
    t.run_test("nat: a filter added and flushed under live translated flows, v4 and v6",
               test_filter_rules_come_and_go_on_translated_flows, topo)
    t.run_test("nat: mangle rules see tracked flows before nat-dst; tracking fused without them",
               test_mangle_rules_between_tracking_and_nat, topo)
    t.run_test("nat: redirect 8445 to 8443 from outside and on loopback; 8443 closed",
               test_port_redirect, topo)
    t.run_test("nat: port forward 2222 -> 22 with masquerade, v4 and v6, tuples listed",
               test_port_forward, topo)
    t.run_test("nat: private network masquerade without port clashes; forgotten on address loss",
               test_masquerade_private_network, topo)
    t.run_test("nat: ICMP errors for masqueraded flows translated back, v4 and v6",
               test_masquerade_icmp_error, topo)
    t.run_test("nat: ICMP errors for a forwarded UDP port translated back, v4 and v6",
               test_dnat_icmp_error, topo)
    t.run_test("nat: fragmentation needed / packet too big for a SNATed TCP flow translated back",
               test_snat_tcp_too_big, topo)
    t.run_test("nat: service VIP balanced over three backends, connections sticky",
               test_service_load_balancing, topo)
    t.run_test("nat: large transfers intact with offloads on and off",
               test_large_transfers_offloads, topo)
    t.run_test("nat: snat port range exhausted: packet dropped and counted",
               test_snat_range_exhausted, topo)
    t.run_test("nat: misplaced NAT rules refused", test_nat_rules_refused, topo)
