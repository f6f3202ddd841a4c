// SPDX-License-Identifier: GPL-2.0-only

//! Proptest generators shared by the engine and tails tests: addresses,
//! ports, interfaces, packets and environments.

use super::{TestEnv, TestFlow};
use proptest::prelude::*;
use rnf_core::ct::{self, CtState, Direction};
use rnf_core::hooks::{Family, Hook};
use rnf_core::packet::{PacketFacts, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, L4};
use rnf_core::rules::{Cidr, PortRange};

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
