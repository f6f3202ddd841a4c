// SPDX-License-Identifier: GPL-2.0-only

//! Proptest generators shared by the engine and tails tests: addresses,
//! ports, interfaces, packets and environments; rule matches (and `fix`,
//! which makes them valid together) and NAT actions fitted to the hooks
//! of their chain; and the rule and TCP packet of the hand-written cases.

use super::{OwnedAction, OwnedRule, TestEnv, TestFlow};
use proptest::prelude::*;
use rnf_core::ct::{self, CtState, Direction};
use rnf_core::hooks::{Family, Hook};
use rnf_core::nat::{NatAction, NatKind, NatRange};
use rnf_core::packet::{PacketFacts, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, L4};
use rnf_core::rules::{
    proto_has_ports, Cidr, CtDirectionMatch, CtStateMatch, CtStatusMatch, IcmpMatch, Limit,
    LimitUnit, MarkMatch, PortRange, RejectKind, TcpFlagsMatch, RANDOM_ALWAYS,
};

pub const V4: [[u8; 4]; 4] = [
    [10, 0, 0, 1],
    [10, 0, 1, 2],
    [10, 1, 0, 1],
    [192, 168, 1, 1],
];
pub const V6: [[u8; 16]; 3] = [
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
];
pub const PORTS: [u16; 5] = [22, 53, 80, 443, 1500];
pub const IFACES: [&str; 4] = ["eth0", "eth1", "wlan0", ""];
pub const PAYLOADS: [&[u8]; 3] = [b"GET / HTTP/1.1", b"hello world", b""];
pub const NEEDLES: [&[u8]; 3] = [b"GET", b"world", b"zzz"];
pub const PROTOS: [u8; 5] = [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6, 47];

pub fn addr16(v4: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&v4);
    a
}

pub fn cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (0..V4.len(), prop::sample::select(vec![0u8, 8, 16, 24, 32])).prop_map(|(i, p)| Cidr::new(
            Family::Ipv4,
            addr16(V4[i]),
            p
        )
        .unwrap()),
        (
            0..V6.len(),
            prop::sample::select(vec![0u8, 16, 32, 64, 128])
        )
            .prop_map(|(i, p)| Cidr::new(Family::Ipv6, V6[i], p).unwrap()),
    ]
}

pub fn port_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        prop::sample::select(PORTS.to_vec()).prop_map(|p| PortRange { lo: p, hi: p }),
        (0..PORTS.len(), 0..PORTS.len()).prop_map(|(a, b)| {
            let (lo, hi) = (PORTS[a.min(b)], PORTS[a.max(b)]);
            PortRange { lo, hi }
        }),
    ]
}

pub fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.2, s)
}

pub fn iface() -> impl Strategy<Value = (String, bool, bool)> {
    (
        prop::sample::select(vec!["eth0", "eth", "wlan0", "eth1"]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(n, p, neg)| (n.to_string(), p, neg))
}

pub fn packet() -> impl Strategy<Value = PacketFacts> {
    (
        any::<bool>(),
        0usize..4,
        0usize..4,
        prop::sample::select(PROTOS.to_vec()),
        0usize..PORTS.len(),
        0usize..PORTS.len(),
        any::<u8>(),
        prop::sample::select(vec![0u8, 3, 8, 128]),
        0u8..4,
        20u32..1500,
        0u8..8,
    )
        .prop_map(
            |(v6, s, d, proto, sp, dp, flags, ty, code, total_len, l4kind)| {
                let (family, src, dst) = if v6 {
                    (Family::Ipv6, V6[s % 3], V6[d % 3])
                } else {
                    (Family::Ipv4, addr16(V4[s]), addr16(V4[d]))
                };
                let (sport, dport) = (PORTS[sp], PORTS[dp]);
                let l4 = if l4kind == 0 {
                    L4::Absent
                } else if l4kind == 1 {
                    L4::Truncated
                } else {
                    match proto {
                        IPPROTO_TCP => L4::Tcp {
                            sport,
                            dport,
                            flags,
                        },
                        IPPROTO_UDP => L4::Ports { sport, dport },
                        IPPROTO_ICMP | IPPROTO_ICMPV6 => L4::Icmp { ty, code },
                        _ => L4::Absent,
                    }
                };
                PacketFacts {
                    family,
                    src,
                    dst,
                    proto,
                    total_len,
                    frag_offset: 0,
                    is_fragment: false,
                    l4_offset: 20,
                    l4,
                    payload_offset: None,
                }
            },
        )
}

pub fn env() -> impl Strategy<Value = TestEnv> {
    (
        0usize..4,
        0usize..4,
        prop::sample::select(vec![0u32, 1, 2, 3, 0xff]),
        opt(0u32..3),
        opt(0u32..3),
        0usize..3,
        any::<u64>(),
        (
            prop::sample::select(CtState::NAMES.iter().map(|(_, s)| *s).collect::<Vec<_>>()),
            opt((
                prop::sample::select(vec![Direction::Original, Direction::Reply]),
                0..=ct::status::ALL,
                prop::sample::select(vec![0u32, 1, 2, 3, 0xff]),
            )),
        ),
    )
        .prop_map(|(i, o, mark, uid, gid, p, seed, (ct_state, flow))| {
            let mut e = TestEnv::new(seed);
            e.ct_state = ct_state;
            e.flow = flow.map(|(direction, status, mark)| TestFlow {
                direction,
                status,
                mark,
            });
            e.iif = IFACES[i].as_bytes().to_vec();
            e.oif = IFACES[o].as_bytes().to_vec();
            e.mark = mark;
            e.uid = uid;
            e.gid = gid;
            e.payload = PAYLOADS[p].to_vec();
            e
        })
}

pub fn hook() -> impl Strategy<Value = Hook> {
    prop::sample::select(Hook::ALL.to_vec())
}

// ---------------------------------------------------------------------
// Rules.

pub fn mark_match() -> impl Strategy<Value = MarkMatch> {
    (
        0u32..4,
        prop::sample::select(vec![0xffu32, 1, u32::MAX]),
        any::<bool>(),
    )
        .prop_map(|(v, mask, negated)| MarkMatch {
            value: v & mask,
            mask,
            negated,
        })
}

/// Matches of a rule, made consistent afterwards by `fix`.
pub fn rule_matches() -> impl Strategy<Value = OwnedRule> {
    let a = (
        opt(prop::sample::select(vec![Family::Ipv4, Family::Ipv6])),
        opt(prop::sample::select(PROTOS.to_vec())),
        opt((any::<bool>(), prop::collection::vec(cidr(), 1..4))),
        opt((any::<bool>(), prop::collection::vec(cidr(), 1..4))),
        opt((any::<bool>(), prop::collection::vec(port_range(), 1..4))),
        opt((any::<bool>(), prop::collection::vec(port_range(), 1..4))),
        opt(iface()),
        opt(iface()),
    );
    let b = (
        opt(
            (1u8..=0x3f, any::<u8>()).prop_map(|(mask, s)| TcpFlagsMatch {
                mask,
                set: s & mask,
            }),
        ),
        opt((prop::sample::select(vec![0u8, 3, 8, 128]), opt(0u8..4))
            .prop_map(|(ty, code)| IcmpMatch { ty, code })),
        opt(mark_match()),
        opt((1u32..4, 1u32..4).prop_map(|(rate, burst)| Limit {
            rate,
            unit: LimitUnit::Second,
            burst,
        })),
        opt(0u32..3),
        opt(0u32..3),
        opt(prop::sample::select(NEEDLES.to_vec()).prop_map(|n| n.to_vec())),
        opt(prop::sample::select(vec![
            0,
            RANDOM_ALWAYS / 2,
            RANDOM_ALWAYS,
        ])),
        opt(1u32..4),
    );
    let c = (
        opt(
            (1u8..=u8::MAX, any::<bool>()).prop_map(|(bits, negated)| CtStateMatch {
                states: CtState(bits & CtState::ALL.0),
                negated,
            }),
        )
        .prop_map(|m| m.filter(|m| m.states.is_valid())),
        opt(
            (1u32..=ct::status::ALL, any::<bool>()).prop_map(|(bits, negated)| CtStatusMatch {
                bits: bits & ct::status::ALL,
                negated,
            }),
        )
        .prop_map(|m| m.filter(|m| m.bits != 0)),
        opt((
            prop::sample::select(vec![Direction::Original, Direction::Reply]),
            any::<bool>(),
        )
            .prop_map(|(direction, negated)| CtDirectionMatch { direction, negated })),
        opt(mark_match()),
    );
    (a, b, c).prop_map(
        |(
            (family, proto, saddr, daddr, sport, dport, iif, oif),
            (tcp_flags, icmp, mark, limit, uid, gid, payload, random, nth),
            (ct_state, ct_status, ct_direction, ct_mark),
        )| OwnedRule {
            family,
            proto,
            saddr,
            daddr,
            sport,
            dport,
            iif,
            oif,
            tcp_flags,
            icmp,
            mark,
            ct_state,
            ct_status,
            ct_direction,
            ct_mark,
            limit,
            uid,
            gid,
            payload,
            random,
            nth,
            comment: None,
            action: OwnedAction::Accept,
        },
    )
}

/// Drops the addresses that are not of the rule's family (if it has one),
/// and an address list left empty by that.
pub fn keep_family_addrs(r: &mut OwnedRule) {
    if let Some(f) = r.family {
        for l in [&mut r.saddr, &mut r.daddr] {
            if let Some((_, items)) = l {
                items.retain(|c| c.family == f);
                if items.is_empty() {
                    *l = None;
                }
            }
        }
    }
}

/// Gives a rule without a family the family of its addresses, when it has
/// some and they all have the same one.
pub fn infer_family(r: &mut OwnedRule) {
    if r.family.is_none() {
        let fams: Vec<Family> = r
            .saddr
            .iter()
            .chain(r.daddr.iter())
            .flat_map(|(_, l)| l.iter().map(|c| c.family))
            .collect();
        if let Some(first) = fams.first() {
            if fams.iter().all(|f| f == first) {
                r.family = Some(*first);
            }
        }
    }
}

/// Drops the parts of a random rule that `validate` would refuse together.
pub fn fix(mut r: OwnedRule) -> OwnedRule {
    keep_family_addrs(&mut r);
    infer_family(&mut r);
    if r.icmp.is_some() && r.proto.is_none() {
        r.proto = Some(IPPROTO_ICMP);
    }
    if let Some(p) = r.proto {
        if !proto_has_ports(p) {
            r.sport = None;
            r.dport = None;
        }
        if p != IPPROTO_TCP {
            r.tcp_flags = None;
        }
        if p != IPPROTO_ICMP && p != IPPROTO_ICMPV6 {
            r.icmp = None;
        }
    }
    if matches!(r.action, OwnedAction::Reject(RejectKind::TcpReset)) && r.proto != Some(IPPROTO_TCP)
    {
        r.action = OwnedAction::Reject(RejectKind::PortUnreachable);
    }
    r
}

// ---------------------------------------------------------------------
// NAT actions.

pub const NAT_KINDS: [NatKind; 4] = [
    NatKind::Snat,
    NatKind::Dnat,
    NatKind::Masquerade,
    NatKind::Redirect,
];

/// A NAT action before its chain's hooks are known: the kind is picked
/// afterwards among those allowed there ([`pick_nat`]), or at random.
#[derive(Clone, Debug)]
pub struct NatChoice {
    pub pick: usize,
    pub v6: bool,
    pub addrs: (usize, usize),
    pub ports: Option<(u16, u16)>,
    pub options: u8,
}

pub fn nat_choice() -> impl Strategy<Value = NatChoice> {
    (
        any::<usize>(),
        any::<bool>(),
        (0usize..4, 0usize..4),
        opt((1u16..3, 0u16..3).prop_map(|(lo, n)| (lo * 1000, lo * 1000 + n))),
        any::<u8>(),
    )
        .prop_map(|(pick, v6, addrs, ports, options)| NatChoice {
            pick,
            v6,
            addrs,
            ports,
            options,
        })
}

/// Makes a NAT action of `kind` from `c` and fits the rule to it: the
/// address's family becomes the rule's, ports go when the rule's protocol
/// has none.
pub fn resolve_nat(kind: NatKind, c: &NatChoice, mut r: OwnedRule) -> OwnedRule {
    let mut range = NatRange::empty(Family::Ipv4);
    if kind.takes_addr() {
        let (a, b) = if c.v6 {
            (V6[c.addrs.0 % 3], V6[c.addrs.1 % 3])
        } else {
            (addr16(V4[c.addrs.0]), addr16(V4[c.addrs.1]))
        };
        let family = if c.v6 { Family::Ipv6 } else { Family::Ipv4 };
        range = NatRange::addrs(family, a.min(b), a.max(b));
        r.family = Some(family);
    }
    if let Some((lo, hi)) = c.ports {
        if r.proto.is_some_and(proto_has_ports) {
            range = range.with_ports(lo, hi);
        }
    }
    range = range.with_flags(c.options & kind.option_flags());
    r.action = OwnedAction::Nat(NatAction { kind, range });
    fix(r)
}

/// The NAT kinds allowed at every hook of `hooks` (a bit per hook, as
/// [`ref_chain_hooks`](super::ref_chain_hooks) gives them for a chain).
pub fn nat_kinds_at(hooks: u8) -> Vec<NatKind> {
    NAT_KINDS
        .into_iter()
        .filter(|kind| {
            Hook::ALL
                .iter()
                .filter(|h| hooks & (1 << (**h as u8)) != 0)
                .all(|h| kind.allowed_at(*h))
        })
        .collect()
}

/// `r` with the NAT action of `c` of a kind among `kinds` (picked by
/// `c.pick`), or with `fallback` when there is none.
pub fn pick_nat(
    kinds: &[NatKind],
    c: &NatChoice,
    r: OwnedRule,
    fallback: OwnedAction,
) -> OwnedRule {
    match kinds.get(c.pick % kinds.len().max(1)) {
        Some(kind) => resolve_nat(*kind, c, r),
        None => fix(OwnedRule {
            action: fallback,
            ..r
        }),
    }
}

// ---------------------------------------------------------------------
// By hand.

/// A rule that matches every packet, with `action`.
pub fn rule(action: OwnedAction) -> OwnedRule {
    OwnedRule {
        action,
        ..Default::default()
    }
}

/// An IPv4 TCP SYN from `src`:`sport` to `dst`:`dport`, 60 bytes, with
/// no payload offset.
pub fn tcp_syn(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> PacketFacts {
    PacketFacts {
        family: Family::Ipv4,
        src,
        dst,
        proto: IPPROTO_TCP,
        total_len: 60,
        frag_offset: 0,
        is_fragment: false,
        l4_offset: 20,
        l4: L4::Tcp {
            sport,
            dport,
            flags: 2,
        },
        payload_offset: None,
    }
}

/// A TCP SYN from 10.0.0.1:40000 to 10.0.0.2:`dport`, 60 bytes.
pub fn tcp_packet(dport: u16) -> PacketFacts {
    PacketFacts {
        payload_offset: Some(40),
        ..tcp_syn(addr16([10, 0, 0, 1]), addr16([10, 0, 0, 2]), 40000, dport)
    }
}
