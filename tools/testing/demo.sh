#!/bin/bash
# The rnf demo, run inside the test VM by `make demo`: a client and a server
# in their own network namespaces, joined through a router namespace; rnf is
# loaded, traffic is sent, and rnfctl shows what the module saw where.
set -euo pipefail
# One stream: vng carries stdout and stderr separately and they interleave.
exec 2>&1
repo=$(cd "$(dirname "$0")/../.." && pwd)
# A copy anyone may run (the checkout may sit under a 0700 home).
mkdir -p /tmp/rnf-bin && cp "$repo/target/debug/rnfctl" /tmp/rnf-bin/ && chmod 755 /tmp/rnf-bin
rnfctl=/tmp/rnf-bin/rnfctl
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

say "rnfctl before the module is loaded"
"$rnfctl" status || true

say "insmod rnf.ko hook_counters=1 (count at every hook: by default only hooks with rules are hooked and count)"
for dep in $(modinfo -F depends "$repo/rnf.ko" | tr , ' '); do modprobe "$dep"; done
insmod "$repo/rnf.ko" hook_counters=1
dmesg | grep -E "rnf [0-9.]+ loaded" | tail -n1

say "topology: client (10.0.1.2) -- router (10.0.1.1 | 10.0.2.1) -- server (10.0.2.2)"
for ns in client router server; do ip netns add $ns; inns $ns ip link set lo up; done
inns client ip link add eth0 type veth peer name lan netns router
inns server ip link add eth0 type veth peer name wan netns router
inns client sh -c 'ip addr add 10.0.1.2/24 dev eth0 && ip -6 addr add fd00:1::2/64 dev eth0 nodad && ip link set eth0 up && ip route add default via 10.0.1.1 && ip -6 route add default via fd00:1::1'
inns server sh -c 'ip addr add 10.0.2.2/24 dev eth0 && ip -6 addr add fd00:2::2/64 dev eth0 nodad && ip link set eth0 up && ip route add default via 10.0.2.1 && ip -6 route add default via fd00:2::1'
inns router sh -c 'ip addr add 10.0.1.1/24 dev lan && ip addr add 10.0.2.1/24 dev wan && ip -6 addr add fd00:1::1/64 dev lan nodad && ip -6 addr add fd00:2::1/64 dev wan nodad && ip link set lan up && ip link set wan up && sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1'

say "client: ping the server (IPv4 and IPv6) and fetch a page over TCP"
inns client ping -c3 -i0.2 10.0.2.2 | tail -n2
inns client ping -6 -c3 -i0.2 fd00:2::2 | tail -n2
inns server sh -c 'echo "hello from the server" | nc -l -q1 -p 8080 >/dev/null 2>&1 &'
sleep 0.5
inns client nc -q1 10.0.2.2 8080 </dev/null

say "router: rnfctl status (packets seen at each hook of the router's namespace)"
inns router "$rnfctl" status
say "client: rnfctl status"
inns client "$rnfctl" status
say "router, every attachment point: rnfctl status -v"
inns router "$rnfctl" status -v
say "router: a firewall rule - drop TCP to port 8080 from the client's subnet, log it"
inns router "$rnfctl" add filter FORWARD proto tcp dport 8080 saddr 10.0.1.0/24 log prefix "demo-drop: "
inns router "$rnfctl" add filter FORWARD proto tcp dport 8080 saddr 10.0.1.0/24 drop
inns server sh -c 'echo "hello again" | nc -l -q1 -p 8080 >/dev/null 2>&1 &'
sleep 0.5
if inns client nc -q1 -w3 10.0.2.2 8080 </dev/null; then echo "(unexpected: the connection went through)"; else echo "client: connection to 10.0.2.2:8080 timed out (dropped by the router)"; fi
inns router "$rnfctl" list -v filter FORWARD
dmesg | grep "demo-drop: " | tail -n1
say "router: flush the rules; the server is reachable again"
inns router "$rnfctl" flush
inns client nc -q1 -w3 10.0.2.2 8080 </dev/null

say "router: port forward - its port 2222 to the server's 8080, masqueraded (NAT on conntrack)"
inns router "$rnfctl" add nat PREROUTING iif lan proto tcp dport 2222 dnat to 10.0.2.2:8080
inns router "$rnfctl" add nat POSTROUTING oif wan masquerade
inns router "$rnfctl" list nat
inns server sh -c 'echo "hello through NAT" | nc -l -q1 -p 8080 >/dev/null 2>&1 &'
sleep 0.5
inns client nc -q1 -w3 10.0.1.1 2222 </dev/null
say "router: rnfctl conntrack list (the NATed flow: original and reply tuples)"
inns router "$rnfctl" conntrack list -p tcp --dport 2222
inns router "$rnfctl" flush

say "as an unprivileged user"
setpriv --reuid=65534 --regid=65534 --clear-groups "$rnfctl" status || true

say "rmmod rnf"
rmmod rnf
dmesg | grep -E "rnf unloading" | tail -n1
