// SPDX-License-Identifier: GPL-2.0-only

//! Round trips of the rule syntax (parse → blob → print → parse gives the
//! same blob) for every rule form, and the wording of parse errors.

use crate::rule_parse::{parse_rule, split_words, ParseError};
use crate::rule_print::print_rule;

fn parse(line: &str) -> Result<Vec<u8>, ParseError> {
    parse_rule(&split_words(line).expect("words"))
}

/// Parses `line`, prints it, and checks the printed text is `canonical`
/// and parses back to the same blob.
fn round_trip(line: &str, canonical: &str) {
    let blob = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    let printed = print_rule(&blob).unwrap();
    assert_eq!(printed, canonical, "printing {line}");
    let again = parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
    assert_eq!(again, blob, "re-parsing {printed}");
}

#[test]
fn every_rule_form_round_trips() {
    let cases: &[(&str, &str)] = &[
        ("accept", "accept"),
        ("drop", "drop"),
        ("return", "return"),
        ("reject", "reject"),
        ("reject with icmp-port-unreachable", "reject"),
        (
            "proto tcp reject with tcp-reset",
            "proto tcp reject with tcp-reset",
        ),
        (
            "reject with icmp-host-prohibited",
            "reject with icmp-host-prohibited",
        ),
        (
            "reject with icmp6-adm-prohibited",
            "reject with icmp-admin-prohibited",
        ),
        ("jump web", "jump web"),
        ("goto DOCKER-USER", "goto DOCKER-USER"),
        ("log", "log"),
        (
            "log prefix \"drop: \" level info",
            "log prefix \"drop: \" level info",
        ),
        ("log level 4 prefix x", "log prefix \"x\""),
        ("mark set 0x10", "mark set 0x10"),
        ("mark xor 3", "mark xor 0x3"),
        ("mark and 0xff", "mark and 0xff"),
        ("mark or 1", "mark or 0x1"),
        ("ip accept", "ip accept"),
        ("ip6 drop", "ip6 drop"),
        ("proto udp accept", "proto udp accept"),
        ("proto 47 accept", "proto gre accept"),
        ("proto 200 accept", "proto 200 accept"),
        ("proto ipv6-icmp accept", "proto icmpv6 accept"),
        ("saddr 10.1.2.3/8 drop", "ip saddr 10.0.0.0/8 drop"),
        (
            "saddr ! 10.0.0.0/8,192.168.1.1 drop",
            "ip saddr ! 10.0.0.0/8,192.168.1.1 drop",
        ),
        (
            "daddr !2001:db8::/32 drop",
            "ip6 daddr ! 2001:db8::/32 drop",
        ),
        (
            "saddr 10.0.0.0/8,2001:db8::1 drop",
            "saddr 10.0.0.0/8,2001:db8::1 drop",
        ),
        ("ip6 saddr ::/0 accept", "ip6 saddr ::/0 accept"),
        ("proto tcp dport 22 accept", "proto tcp dport 22 accept"),
        (
            "proto tcp sport ! 1000-2000,80 accept",
            "proto tcp sport ! 1000-2000,80 accept",
        ),
        ("dport 53 accept", "dport 53 accept"),
        ("iif eth0 accept", "iif eth0 accept"),
        ("iif ! eth+ accept", "iif ! eth+ accept"),
        ("oif + accept", "oif + accept"),
        ("oif !wlan0 drop", "oif ! wlan0 drop"),
        (
            "tcp flags syn / syn,ack,rst,fin drop",
            "tcp flags syn / fin,syn,rst,ack drop",
        ),
        ("tcp flags syn/syn,ack drop", "tcp flags syn / syn,ack drop"),
        (
            "proto tcp tcp flags none /fin,syn accept",
            "proto tcp tcp flags none / fin,syn accept",
        ),
        (
            "icmp type echo-request accept",
            "proto icmp icmp type echo-request accept",
        ),
        (
            "ip6 icmp type echo-request accept",
            "ip6 proto icmpv6 icmp type echo-request accept",
        ),
        (
            "proto icmpv6 icmp type 135 accept",
            "proto icmpv6 icmp type nd-neighbor-solicit accept",
        ),
        (
            "icmp type 3 code 3 drop",
            "proto icmp icmp type destination-unreachable code 3 drop",
        ),
        ("icmp type 99 drop", "proto icmp icmp type 99 drop"),
        ("mark 0x1 accept", "mark 0x1 accept"),
        ("mark ! 16/0xff accept", "mark ! 0x10/0xff accept"),
        ("limit 10/second accept", "limit 10/second burst 5 accept"),
        (
            "limit 3/min burst 1 accept",
            "limit 3/minute burst 1 accept",
        ),
        ("limit 1/hour burst 10 log", "limit 1/hour burst 10 log"),
        ("limit 2/d accept", "limit 2/day burst 5 accept"),
        ("uid 1000 accept", "uid 1000 accept"),
        ("gid 0 drop", "gid 0 drop"),
        (
            "payload contains \"GET /\" drop",
            "payload contains \"GET /\" drop",
        ),
        (
            "payload contains \"a\\\"b\\\\c\" drop",
            "payload contains \"a\\\"b\\\\c\" drop",
        ),
        (
            "payload contains \"tab\\x09\" drop",
            "payload contains \"tab\\x09\" drop",
        ),
        ("random 0.5 accept", "random 0.5 accept"),
        ("random 0.3 accept", "random 0.3 accept"),
        ("random 1 accept", "random 1 accept"),
        ("random 0 accept", "random 0 accept"),
        ("random 0.0001 accept", "random 0.0001 accept"),
        ("nth 3 accept", "nth 3 accept"),
        (
            "comment \"allow ssh\" accept",
            "comment \"allow ssh\" accept",
        ),
        ("comment \"\" accept", "comment \"\" accept"),
    ];
    for (line, canonical) in cases {
        round_trip(line, canonical);
    }
}

#[test]
fn conntrack_rule_forms_round_trip() {
    let cases: &[(&str, &str)] = &[
        ("ct state new accept", "ct state new accept"),
        (
            "ct state related,established accept",
            "ct state established,related accept",
        ),
        ("ct state ! invalid accept", "ct state ! invalid accept"),
        ("ct state !untracked drop", "ct state ! untracked drop"),
        (
            "ct state untracked,invalid,new,related,established log",
            "ct state new,established,related,invalid,untracked log",
        ),
        ("ct state new,new accept", "ct state new accept"),
        ("ct status assured accept", "ct status assured accept"),
        (
            "ct status dnat,snat,confirmed,expected,seen-reply drop",
            "ct status expected,seen-reply,confirmed,snat,dnat drop",
        ),
        ("ct status ! assured drop", "ct status ! assured drop"),
        (
            "ct direction original accept",
            "ct direction original accept",
        ),
        ("ct direction ! reply accept", "ct direction ! reply accept"),
        ("ct mark 1 accept", "ct mark 0x1 accept"),
        ("ct mark ! 0x10/0xf0 accept", "ct mark ! 0x10/0xf0 accept"),
        ("ct mark 0/0xffffffff accept", "ct mark 0x0 accept"),
        ("ct mark set 0x10", "ct mark set 0x10"),
        ("ct mark set 0x10/0xff", "ct mark set 0x10/0xff"),
        ("ct mark set 5/0xffffffff", "ct mark set 0x5"),
        ("ct mark xor 3", "ct mark xor 0x3"),
        ("ct mark and 0xff", "ct mark and 0xff"),
        ("ct mark or 1", "ct mark or 0x1"),
        ("ct mark save", "ct mark save"),
        ("ct mark save mask 0xff00", "ct mark save mask 0xff00"),
        ("ct mark restore", "ct mark restore"),
        ("ct mark restore mask 0xffffffff", "ct mark restore"),
        ("ct mark restore mask 255", "ct mark restore mask 0xff"),
        ("notrack", "notrack"),
        ("proto udp dport 53 notrack", "proto udp dport 53 notrack"),
        (
            "ct mark 0x1/0x1 ct mark restore",
            "ct mark 0x1/0x1 ct mark restore",
        ),
        (
            "mark ! 0x2 ct mark set 0x2/0x2",
            "mark ! 0x2 ct mark set 0x2/0x2",
        ),
    ];
    for (line, canonical) in cases {
        round_trip(line, canonical);
    }
}

#[test]
fn a_rule_with_every_ct_match_round_trips() {
    round_trip(
        "ct mark !0x1/0x3 limit 1/second ct direction reply ct status snat \
         ct state established mark 2 proto tcp accept",
        "proto tcp mark 0x2 ct state established ct status snat ct direction reply \
         ct mark ! 0x1/0x3 limit 1/second burst 5 accept",
    );
}

#[test]
fn a_rule_with_everything_round_trips() {
    round_trip(
        "comment \"all\" nth 2 random 0.25 payload contains x gid 5 uid 7 \
         limit 5/second burst 2 mark 1/3 tcp flags syn / syn,ack oif eth1 iif lo \
         dport 80,443 sport 1024-65535 daddr 10.0.0.1 saddr 10.0.0.0/24 proto tcp ip \
         reject with tcp-reset",
        "ip proto tcp saddr 10.0.0.0/24 daddr 10.0.0.1 sport 1024-65535 dport 80,443 \
         iif lo oif eth1 tcp flags syn / syn,ack mark 0x1/0x3 limit 5/second burst 2 \
         uid 7 gid 5 payload contains \"x\" random 0.25 nth 2 comment \"all\" \
         reject with tcp-reset",
    );
}

fn err(line: &str) -> String {
    format!("rnfctl: {}", parse(line).unwrap_err())
}

#[test]
fn nat_rule_forms_round_trip() {
    let cases: &[(&str, &str)] = &[
        // An address implies the rule's family.
        ("dnat to 10.0.0.1", "ip dnat to 10.0.0.1"),
        ("ip dnat to 10.0.0.1-10.0.0.1", "ip dnat to 10.0.0.1"),
        (
            "proto tcp dport 80 dnat to 10.0.0.1:8080",
            "ip proto tcp dport 80 dnat to 10.0.0.1:8080",
        ),
        (
            "proto tcp dnat to 10.0.0.1-10.0.0.3:8000-8010",
            "ip proto tcp dnat to 10.0.0.1-10.0.0.3:8000-8010",
        ),
        (
            "proto udp dnat to 10.0.0.1:53-53 random persistent",
            "ip proto udp dnat to 10.0.0.1:53 random persistent",
        ),
        ("dnat to fd00::1", "ip6 dnat to fd00::1"),
        ("dnat to [fd00::1]", "ip6 dnat to fd00::1"),
        ("dnat to fd00::1-fd00::3", "ip6 dnat to fd00::1-fd00::3"),
        (
            "proto tcp dnat to [fd00::1]:80",
            "ip6 proto tcp dnat to [fd00::1]:80",
        ),
        (
            "proto tcp dnat to [fd00::1-fd00::3]:80-81",
            "ip6 proto tcp dnat to [fd00::1-fd00::3]:80-81",
        ),
        (
            "proto tcp dnat to [fd00::1]-[fd00::3]:80",
            "ip6 proto tcp dnat to [fd00::1-fd00::3]:80",
        ),
        (
            "ip6 saddr fd00:1::/64 oif eth0 snat to 2001:db8::1",
            "ip6 saddr fd00:1::/64 oif eth0 snat to 2001:db8::1",
        ),
        (
            "saddr 10.0.1.0/24 proto udp snat to 192.0.2.1-192.0.2.9:1024-65535 persistent fully-random random",
            "ip proto udp saddr 10.0.1.0/24 snat to 192.0.2.1-192.0.2.9:1024-65535 random fully-random persistent",
        ),
        ("masquerade", "masquerade"),
        ("oif eth0 masquerade random", "oif eth0 masquerade random"),
        (
            "proto tcp masquerade to :1024-65535 fully-random",
            "proto tcp masquerade to 1024-65535 fully-random",
        ),
        (
            "proto tcp dport 8445 redirect to 8443",
            "proto tcp dport 8445 redirect to 8443",
        ),
        (
            "proto udp redirect to :5353 random",
            "proto udp redirect to 5353 random",
        ),
        ("redirect", "redirect"),
        (
            "ip6 proto tcp dport 80 redirect to 8080",
            "ip6 proto tcp dport 80 redirect to 8080",
        ),
        (
            "proto tcp random 0.3333 dnat to 10.0.2.2:8080",
            "ip proto tcp random 0.3333 dnat to 10.0.2.2:8080",
        ),
        (
            "proto tcp nth 3 dnat to 10.0.2.2:8080",
            "ip proto tcp nth 3 dnat to 10.0.2.2:8080",
        ),
    ];
    for (line, canonical) in cases {
        round_trip(line, canonical);
    }
}

#[test]
fn nat_errors_name_the_word_and_what_was_expected() {
    let to = "an address, range or address and ports like 10.0.0.1, \
              10.0.0.1-10.0.0.3:8000-8010 or [fd00::1]:80";
    let cases: Vec<(&str, String)> = vec![
        (
            "dnat",
            format!("rnfctl: at 'dnat': expected 'to' and {to}, got nothing"),
        ),
        (
            "dnat 10.0.0.1",
            format!("rnfctl: at 'dnat': expected 'to' and {to}, got '10.0.0.1'"),
        ),
        (
            "snat to",
            format!("rnfctl: at 'snat to': expected {to}, got nothing"),
        ),
        (
            "proto tcp dnat to :80",
            "rnfctl: at 'dnat to': dnat needs an address to translate to, like 10.0.0.1:80".into(),
        ),
        (
            "dnat to 10.0.0.300",
            "rnfctl: at 'dnat to': expected an address or range like 10.0.0.1-10.0.0.3, got '10.0.0.300'".into(),
        ),
        (
            "dnat to 10.0.0.1-fd00::1",
            "rnfctl: at 'dnat to': expected an address or range like 10.0.0.1-10.0.0.3, got '10.0.0.1-fd00::1'".into(),
        ),
        (
            "proto tcp dnat to 10.0.0.1:90-80",
            "rnfctl: at 'dnat to': expected a port or range like 80 or 8000-8010, got '90-80'".into(),
        ),
        (
            "proto tcp dnat to [fd00::1:80",
            format!("rnfctl: at 'dnat to': expected {to}, got '[fd00::1:80'"),
        ),
        (
            "dnat to 10.0.0.3-10.0.0.1",
            "rnfctl: at 'dnat': the first address of the range is above the last".into(),
        ),
        (
            "proto tcp dnat to 10.0.0.1:0",
            "rnfctl: at 'dnat': ports are 1 to 65535".into(),
        ),
        (
            "dnat to 10.0.0.1:80",
            "rnfctl: at 'dnat': a port needs proto tcp, udp, udplite, sctp or dccp".into(),
        ),
        (
            "proto icmp redirect to 8443",
            "rnfctl: at 'redirect': a port needs proto tcp, udp, udplite, sctp or dccp".into(),
        ),
        (
            "ip6 dnat to 10.0.0.1",
            "rnfctl: at 'dnat': an address of the other family than the rule's 'ip'/'ip6'".into(),
        ),
        (
            "saddr fd00::/8 snat to 10.0.0.1",
            "rnfctl: at 'snat': an address of the other family than the rule's 'ip'/'ip6'".into(),
        ),
        (
            "proto tcp redirect to 10.0.0.1:8443",
            "rnfctl: at 'redirect to': expected a port or range like 8443 or 8000-8010 (redirect \
             translates to the local host's address), got '10.0.0.1:8443'".into(),
        ),
        (
            "masquerade to eth0",
            "rnfctl: at 'masquerade to': expected a port or range like 1024-65535 (masquerade \
             translates to the outgoing interface's address), got 'eth0'".into(),
        ),
        (
            "redirect persistent",
            "rnfctl: at 'redirect': the only option is random".into(),
        ),
        (
            "masquerade persistent",
            "rnfctl: at 'masquerade': the options are random and fully-random".into(),
        ),
        (
            "dnat to 10.0.0.1 fully-random",
            "rnfctl: at 'dnat': the options are random and persistent".into(),
        ),
        (
            "masquerade random random",
            "rnfctl: at 'random': given twice".into(),
        ),
        (
            "masquerade accept",
            "rnfctl: at 'accept': unexpected word after the action (the action comes last)".into(),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(err(line), want, "for '{line}'");
    }
}

#[test]
fn errors_name_the_word_and_what_was_expected() {
    let cases: &[(&str, &str)] = &[
        (
            "dport 80x accept",
            "rnfctl: at 'dport': expected a port or range like 80 or 1000-2000, got '80x'",
        ),
        (
            "dport 80,,81 accept",
            "rnfctl: at 'dport': expected a port or range like 80 or 1000-2000, got ''",
        ),
        (
            "sport 2000-1000 accept",
            "rnfctl: at 'sport': expected a port or range like 80 or 1000-2000, got '2000-1000'",
        ),
        (
            "saddr 10.0.0.300 drop",
            "rnfctl: at 'saddr': expected an address or prefix like 10.0.0.0/8 or 2001:db8::/32, got '10.0.0.300'",
        ),
        (
            "saddr 10.0.0.0/33 drop",
            "rnfctl: at 'saddr': expected an address or prefix like 10.0.0.0/8 or 2001:db8::/32, got '10.0.0.0/33'",
        ),
        (
            "proto bogus accept",
            "rnfctl: at 'proto': expected a protocol name (tcp, udp, icmp, icmpv6, sctp, ...) or number 1-255, got 'bogus'",
        ),
        (
            "dport",
            "rnfctl: at 'dport': expected a port or range like 80 or 1000-2000, got nothing",
        ),
        (
            "proto tcp",
            "rnfctl: at the end of the rule: expected an action (accept, drop, reject, return, jump CHAIN, goto CHAIN, log, mark set|xor|and|or V, ct mark set|xor|and|or|save|restore, notrack, snat to ADDR, dnat to ADDR, masquerade, redirect), got nothing",
        ),
        ("accept drop", "rnfctl: at 'drop': unexpected word after the action (the action comes last)"),
        ("dport 1 dport 2 accept", "rnfctl: at 'dport': given twice"),
        ("ip ip6 accept", "rnfctl: at 'ip6': ip or ip6 is given twice"),
        (
            "proto icmp dport 22 accept",
            "rnfctl: at 'dport': ports need proto tcp, udp, udplite, sctp or dccp",
        ),
        (
            "reject with tcp-reset",
            "rnfctl: at 'reject': 'with tcp-reset' needs 'proto tcp'",
        ),
        (
            "reject with icmp-bogus",
            "rnfctl: at 'reject with': expected tcp-reset, icmp-port-unreachable, icmp-host-unreachable, icmp-net-unreachable, icmp-proto-unreachable, icmp-net-prohibited, icmp-host-prohibited or icmp-admin-prohibited, got 'icmp-bogus'",
        ),
        (
            "jump INPUT",
            "rnfctl: at 'jump': PREROUTING, INPUT, FORWARD, OUTPUT and POSTROUTING are built-in chain names",
        ),
        (
            "jump a-very-long-chain-name-of-more-than-31",
            "rnfctl: at 'jump': a name has 1 to 31 characters",
        ),
        (
            "tcp flags syn / bogus drop",
            "rnfctl: at 'tcp flags': expected flag names fin, syn, rst, psh, ack, urg, ece, cwr (comma-separated) or none, got 'bogus'",
        ),
        (
            "tcp flags syn,ack / syn drop",
            "rnfctl: at 'tcp flags': a flag before '/' is missing from the mask after it",
        ),
        ("tcp syn drop", "rnfctl: at 'tcp': expected 'flags', got 'syn'"),
        (
            "tcp flags syn syn drop",
            "rnfctl: at 'tcp flags': expected '/' and the flags examined, got 'syn'",
        ),
        (
            "icmp type bogus accept",
            "rnfctl: at 'icmp type': expected an ICMP type name like echo-request, or a number 0-255, got 'bogus'",
        ),
        (
            "proto udp icmp type echo-request accept",
            "rnfctl: at 'icmp': the rule's proto is not icmp or icmpv6",
        ),
        (
            "mark 0x100/0xff accept",
            "rnfctl: at 'mark': the value has bits outside the mask, so it never matches",
        ),
        (
            "mark zz accept",
            "rnfctl: at 'mark': expected a mark like 0x10 or 0x10/0xff, or set|xor|and|or for the action, got 'zz'",
        ),
        (
            "limit 10/fortnight accept",
            "rnfctl: at 'limit': expected a rate like 10/second, 5/minute, 1/hour or 1/day, got '10/fortnight'",
        ),
        (
            "limit 10/second burst 0 accept",
            "rnfctl: at 'burst': expected a number of packets, got '0'",
        ),
        ("uid root accept", "rnfctl: at 'uid': expected a numeric id, got 'root'"),
        (
            "random 1.5 accept",
            "rnfctl: at 'random': expected a probability from 0 to 1, like 0.25, got '1.5'",
        ),
        (
            "nth 0 accept",
            "rnfctl: at 'nth': expected a count N of at least 1 (every N-th packet), got '0'",
        ),
        (
            "payload has x drop",
            "rnfctl: at 'payload': expected 'contains', got 'has'",
        ),
        (
            "log level loud",
            "rnfctl: at 'level': expected a level emerg, alert, crit, err, warning, notice, info, debug or 0-7, got 'loud'",
        ),
        (
            "log prefix \"this prefix is far too long for the kernel\"",
            "rnfctl: at 'log': a prefix has at most 29 characters and no control characters",
        ),
        (
            "ip saddr 2001:db8::1 drop",
            "rnfctl: at 'saddr': an address of the other family than the rule's 'ip'/'ip6'",
        ),
        (
            "iif !",
            "rnfctl: at 'iif': expected an interface name like eth0, or a prefix like eth+, got nothing",
        ),
        (
            "trace",
            "rnfctl: at 'trace': trace is not supported by this version of rnf yet",
        ),
        (
            "frobnicate accept",
            "rnfctl: at 'frobnicate': unknown word; expected a match (ip, ip6, proto, saddr, daddr, sport, dport, iif, oif, tcp flags, icmp type, mark, ct state, ct status, ct direction, ct mark, limit, uid, gid, payload contains, random, nth, comment) or an action (accept, drop, reject, return, jump CHAIN, goto CHAIN, log, mark set|xor|and|or V, ct mark set|xor|and|or|save|restore, notrack, snat to ADDR, dnat to ADDR, masquerade, redirect)",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(err(line), *want, "for '{line}'");
    }
}

#[test]
fn conntrack_errors_name_the_word_and_what_was_expected() {
    let states = "states new, established, related, invalid or untracked (comma-separated)";
    let bits =
        "status bits expected, seen-reply, assured, confirmed, snat or dnat (comma-separated)";
    let cases: Vec<(&str, String)> = vec![
        (
            "ct accept",
            "rnfctl: at 'ct': expected 'state', 'status', 'direction' or 'mark', got 'accept'"
                .into(),
        ),
        (
            "ct",
            "rnfctl: at 'ct': expected 'state', 'status', 'direction' or 'mark', got nothing"
                .into(),
        ),
        (
            "ct state bogus accept",
            format!("rnfctl: at 'ct state': expected {states}, got 'bogus'"),
        ),
        (
            "ct state new,bogus accept",
            format!("rnfctl: at 'ct state': expected {states}, got 'bogus'"),
        ),
        (
            "ct state new, accept",
            format!("rnfctl: at 'ct state': expected {states}, got ''"),
        ),
        (
            "ct state \"\" accept",
            format!("rnfctl: at 'ct state': expected {states}, got ''"),
        ),
        (
            "ct state !",
            format!("rnfctl: at 'ct state': expected {states}, got nothing"),
        ),
        (
            "ct state NEW accept",
            format!("rnfctl: at 'ct state': expected {states}, got 'NEW'"),
        ),
        (
            "ct status bogus accept",
            format!("rnfctl: at 'ct status': expected {bits}, got 'bogus'"),
        ),
        (
            "ct status , accept",
            format!("rnfctl: at 'ct status': expected {bits}, got ''"),
        ),
        (
            "ct direction sideways accept",
            "rnfctl: at 'ct direction': expected original or reply, got 'sideways'".into(),
        ),
        (
            "ct mark zz accept",
            "rnfctl: at 'ct mark': expected a mark like 0x10 or 0x10/0xff, or set|xor|and|or|save|restore for the action, got 'zz'".into(),
        ),
        (
            "ct mark 1/ accept",
            "rnfctl: at 'ct mark': expected a mark like 0x10 or 0x10/0xff, or set|xor|and|or|save|restore for the action, got '1/'".into(),
        ),
        (
            "ct mark 0x100/0xff accept",
            "rnfctl: at 'ct mark': the value has bits outside the mask, so it never matches"
                .into(),
        ),
        (
            "ct mark set 0x100/0xff",
            "rnfctl: at 'ct mark': the value has bits outside the mask after '/'".into(),
        ),
        (
            "ct mark set",
            "rnfctl: at 'ct mark': expected a mark value like 0x10, or 0x10/0xff to set only the bits in 0xff, got nothing".into(),
        ),
        (
            "ct mark xor 1/2",
            "rnfctl: at 'ct mark': expected a mark value like 0x10 or 16, got '1/2'".into(),
        ),
        (
            "ct mark save mask",
            "rnfctl: at 'mask': expected a mask like 0xff00, got nothing".into(),
        ),
        (
            "ct mark save 0x1",
            "rnfctl: at '0x1': unexpected word after the action (the action comes last)".into(),
        ),
        (
            "ct state new ct state established accept",
            "rnfctl: at 'ct state': given twice".into(),
        ),
        (
            "ct mark 1 ct mark 2 accept",
            "rnfctl: at 'ct mark': given twice".into(),
        ),
        (
            "notrack accept",
            "rnfctl: at 'accept': unexpected word after the action (the action comes last)"
                .into(),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(err(line), want, "for '{line}'");
    }
}

#[test]
fn split_words_handles_quotes() {
    assert_eq!(
        split_words(r#"a "b c" "d\"e" "\x41" f"#).unwrap(),
        vec!["a", "b c", "d\"e", "A", "f"]
    );
    assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    assert!(split_words("\"open").is_err());
    assert!(split_words(r#""\q""#).is_err());
}
