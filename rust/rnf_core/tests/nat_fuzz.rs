// SPDX-License-Identifier: GPL-2.0-only

//! Robustness: arbitrary bytes, arbitrary (even inconsistent) facts and
//! arbitrary ranges never make the NAT code panic, and a failed rewrite
//! leaves the buffer untouched.

use proptest::prelude::*;
use rnf_core::csum;
use rnf_core::ct::Tuple;
use rnf_core::hooks::Family;
use rnf_core::nat::{
    choose_tuple, endpoint, manip_packet, sctp_crc32c, translate_icmp_error, Endpoint, Manip,
    NatRange,
};
use rnf_core::packet::{parse, PacketFacts, L4};

fn manip() -> impl Strategy<Value = Manip> {
    prop_oneof![Just(Manip::Src), Just(Manip::Dst)]
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::Ipv4), Just(Family::Ipv6)]
}

fn facts() -> impl Strategy<Value = PacketFacts> {
    (
        family(),
        any::<u8>(),
        any::<u32>(),
        any::<u16>(),
        any::<bool>(),
        0usize..200,
        (any::<u8>(), any::<u8>(), any::<u8>()),
    )
        .prop_map(
            |(family, proto, total_len, frag_offset, is_fragment, l4_offset, (ty, code, k))| {
                let l4 = match k % 4 {
                    0 => L4::Absent,
                    1 => L4::Truncated,
                    2 => L4::Icmp { ty, code },
                    _ => L4::Ports { sport: 1, dport: 2 },
                };
                PacketFacts {
                    family,
                    src: [0; 16],
                    dst: [0; 16],
                    proto,
                    total_len,
                    frag_offset,
                    is_fragment,
                    l4_offset,
                    l4,
                    payload_offset: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// Parsed arbitrary bytes: rewriting and ICMP translation either work
    /// or fail without touching the buffer.
    #[test]
    fn arbitrary_packets_never_panic(
        mut buf in prop::collection::vec(any::<u8>(), 0..160),
        v6 in any::<bool>(),
        m in manip(),
        addr in any::<[u8; 16]>(),
        inner in any::<[u8; 16]>(),
        port in any::<u16>(),
        partial in any::<bool>(),
    ) {
        // Steer the version nibble so most inputs get past the IP header.
        if let Some(b) = buf.first_mut() {
            *b = (*b & 0x0f) | if v6 { 0x60 } else { 0x40 };
        }
        let Ok(f) = parse(&buf) else { return Ok(()) };
        let mut a = addr;
        let mut i = inner;
        if f.family == Family::Ipv4 {
            a[4..].fill(0);
            i[4..].fill(0);
        }
        let to = Endpoint { addr: a, port };
        let mut q = buf.clone();
        if manip_packet(&mut q, &f, m, &to, partial).is_err() {
            prop_assert_eq!(&q, &buf);
        }
        let mut q = buf.clone();
        let ie = Endpoint { addr: i, port };
        if translate_icmp_error(&mut q, &f, m, &a, &ie, partial).is_err() {
            prop_assert_eq!(&q, &buf);
        }
    }

    /// Facts that do not describe the bytes: no panic.
    #[test]
    fn inconsistent_facts_never_panic(
        buf in prop::collection::vec(any::<u8>(), 0..160),
        f in facts(),
        m in manip(),
        addr in any::<[u8; 16]>(),
        port in any::<u16>(),
        partial in any::<bool>(),
    ) {
        let to = Endpoint { addr, port };
        let mut q = buf.clone();
        let _ = manip_packet(&mut q, &f, m, &to, partial);
        let mut q = buf;
        let _ = translate_icmp_error(&mut q, &f, m, &addr, &to, partial);
    }

    /// Arbitrary ranges (reversed bounds, any flags, any family mix) and
    /// tuples: no panic, and any result is free.
    #[test]
    fn arbitrary_ranges_never_panic(
        fam in family(),
        proto in any::<u8>(),
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        min_addr in any::<[u8; 16]>(),
        max_addr in any::<[u8; 16]>(),
        min_port in any::<u16>(),
        max_port in any::<u16>(),
        flags in any::<u8>(),
        m in manip(),
        seed in any::<u32>(),
        busy in any::<u16>(),
    ) {
        let orig = Tuple {
            family: fam,
            proto,
            src,
            dst,
            src_port_or_icmp_id: sport,
            dst_port_or_icmp_type_code: dport,
        };
        let range = NatRange { family: fam, min_addr, max_addr, min_port, max_port, flags };
        let mut x = seed;
        let random = || {
            x = x.wrapping_mul(747_796_405).wrapping_add(1);
            x
        };
        let taken = |t: &Tuple| endpoint(&t.invert(), m).port % 7 == busy % 7;
        let got = choose_tuple(&orig, &range, m, seed, random, taken);
        if let Some(t) = got {
            prop_assert!(endpoint(&t, m).port % 7 != busy % 7);
        }
    }

    /// Checksum arithmetic on arbitrary input: no panic, and splitting a
    /// sum at an even offset gives the same sum.
    #[test]
    fn csum_split_invariant(
        data in prop::collection::vec(any::<u8>(), 0..300),
        cut in any::<prop::sample::Index>(),
    ) {
        let c = cut.index(data.len() + 1) & !1;
        let whole = csum::fold(csum::sum(&data, 0));
        let parts = csum::fold(csum::sum(&data[c..], csum::sum(&data[..c], 0)));
        prop_assert_eq!(whole % 0xffff, parts % 0xffff);
        let _ = sctp_crc32c(&data);
    }
}
