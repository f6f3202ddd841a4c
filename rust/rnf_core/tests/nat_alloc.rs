// SPDX-License-Identifier: GPL-2.0-only

//! Tuple allocation: never a taken tuple, always in range, the original
//! port kept when free, `None` when the range is exhausted, random
//! allocation spread over the range; address choice by hash; backend
//! choice for load balancing.

use std::cell::Cell;
use std::collections::HashSet;

use proptest::prelude::*;
use rnf_core::ct::{self, Tuple};
use rnf_core::hooks::Family;
use rnf_core::nat::{
    choose_tuple, endpoint, flow_hash, pick_backend, range_flag, Manip, NatKind, NatRange,
    MAX_ATTEMPTS,
};
use rnf_core::packet::{IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

/// xorshift32: a deterministic stand-in for `get_random_u32`.
fn rng(seed: u32) -> impl FnMut() -> u32 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    }
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut o = [0u8; 16];
    o[..4].copy_from_slice(&a);
    o
}

fn tuple(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tuple {
    Tuple {
        family: Family::Ipv4,
        proto,
        src: v4(src),
        dst: v4(dst),
        src_port_or_icmp_id: sport,
        dst_port_or_icmp_type_code: dport,
    }
}

/// Checks the invariants of a successful choice.
fn check_choice(orig: &Tuple, range: &NatRange, manip: Manip, got: &Tuple) {
    assert_eq!(got.family, orig.family);
    assert_eq!(got.proto, orig.proto);
    let ep = endpoint(got, manip);
    let other = endpoint(got, manip.invert());
    // The other side never changes (for ICMP the id is the only key).
    match manip {
        Manip::Src => assert_eq!(got.dst, orig.dst),
        Manip::Dst => assert_eq!(got.src, orig.src),
    }
    if !ct::is_icmp(orig.family, orig.proto) {
        assert_eq!(other, endpoint(orig, manip.invert()));
    }
    if range.has(range_flag::MAP_IPS) {
        assert!(range.contains_addr(&ep.addr), "address out of range");
    } else {
        assert_eq!(ep.addr, endpoint(orig, manip).addr);
    }
    if ct::has_ports(orig.proto) || ct::is_icmp(orig.family, orig.proto) {
        if range.has(range_flag::PROTO_SPECIFIED) {
            assert!(
                range.contains_port(ep.port),
                "port {} out of range",
                ep.port
            );
        } else if manip == Manip::Dst && !ct::is_icmp(orig.family, orig.proto) {
            assert_eq!(
                ep.port, orig.dst_port_or_icmp_type_code,
                "dst port changed without a range"
            );
        } else if !ct::is_icmp(orig.family, orig.proto) && ep.port != orig.src_port_or_icmp_id {
            // Privileged ports stay privileged (nf_nat_l4proto_unique_tuple).
            let p = ep.port;
            match orig.src_port_or_icmp_id {
                0..=511 => assert!((1..=511).contains(&p)),
                512..=1023 => assert!((600..=1023).contains(&p)),
                _ => assert!(p >= 1024),
            }
        }
    } else {
        assert_eq!(ep.port, endpoint(orig, manip).port);
    }
}

fn range_strategy() -> impl Strategy<Value = NatRange> {
    (
        any::<[u8; 4]>(),
        0u8..8,
        any::<u16>(),
        0u16..300,
        0u8..=range_flag::ALL,
    )
        .prop_map(|(a, span, p, pspan, flags)| {
            let mut hi = a;
            hi[3] = hi[3].saturating_add(span);
            let mut r = NatRange::addrs(Family::Ipv4, v4(a), v4(hi));
            r.flags = flags;
            r.min_port = p;
            r.max_port = p.saturating_add(pspan);
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever is taken, a choice is free, in range and leaves the other
    /// side alone; `None` only when the candidates were all taken.
    #[test]
    fn choice_is_free_and_in_range(
        proto in prop::sample::select(vec![IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_GRE]),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        range in range_strategy(),
        manip in prop_oneof![Just(Manip::Src), Just(Manip::Dst)],
        seed in any::<u32>(),
        // Taken reply tuples: a dense block of ports on a few addresses.
        taken_ports in 0u16..400,
        taken_base in any::<u16>(),
    ) {
        let orig = tuple(proto, src, sport, dst, dport);
        let calls = Cell::new(0u32);
        let is_taken = |reply: &Tuple| {
            calls.set(calls.get() + 1);
            // Reply tuples: the NATed endpoint is the reply's other side.
            let t = reply.invert();
            let k = endpoint(&t, manip).port;
            k.wrapping_sub(taken_base) < taken_ports
        };
        let got = choose_tuple(&orig, &range, manip, 0, rng(seed), is_taken);
        // Bounded work: steps 1 and 3, then at most 128+64+32+16 probes.
        prop_assert!(calls.get() <= 2 + 2 * MAX_ATTEMPTS);
        if let Some(t) = got {
            let k = endpoint(&t, manip).port;
            prop_assert!(k.wrapping_sub(taken_base) >= taken_ports, "taken tuple returned");
            check_choice(&orig, &range, manip, &t);
        }
    }

    /// Source NAT keeps the original tuple when it is in range and free.
    #[test]
    fn keeps_original_when_free(
        src in any::<[u8; 4]>(),
        sport in any::<u16>(),
        seed in any::<u32>(),
    ) {
        let orig = tuple(IPPROTO_TCP, src, sport, [8, 8, 8, 8], 443);
        // The range holds the original address, no port range.
        let range = NatRange::addrs(Family::Ipv4, v4(src), v4(src));
        let got = choose_tuple(&orig, &range, Manip::Src, 0, rng(seed), |_| false);
        prop_assert_eq!(got, Some(orig));
        // A new address keeps the port when that is free.
        let range = NatRange::addrs(Family::Ipv4, v4([100, 64, 0, 1]), v4([100, 64, 0, 1]));
        let got = choose_tuple(&orig, &range, Manip::Src, 0, rng(seed), |_| false).unwrap();
        prop_assert_eq!(got.src_port_or_icmp_id, sport);
        prop_assert_eq!(got.src, v4([100, 64, 0, 1]));
        // ... but not with `random`.
        let r = range.with_flags(range_flag::FULLY_RANDOM);
        let n = (0..20u32)
            .filter(|i| choose_tuple(&orig, &r, Manip::Src, 0, rng(seed ^ i), |_| false)
                .unwrap().src_port_or_icmp_id != sport)
            .count();
        prop_assert!(n > 0);
    }

    /// Allocating flow after flow from one small range hands out every
    /// port once, then reports exhaustion.
    #[test]
    fn exhausts_small_range_then_none(
        size in 1u16..=128,
        min in 1024u16..60000,
        seed in any::<u32>(),
        random in any::<bool>(),
    ) {
        let mut range = NatRange::addrs(Family::Ipv4, v4([192, 0, 2, 1]), v4([192, 0, 2, 1]))
            .with_ports(min, min + size - 1);
        if random {
            range = range.with_flags(range_flag::RANDOM);
        }
        let mut taken: HashSet<Tuple> = HashSet::new();
        let mut r = rng(seed);
        for i in 0..size {
            // Every client uses the same source port, as in the issue's
            // "many hosts, same source port" scenario.
            let orig = tuple(IPPROTO_UDP, [10, 0, (i >> 8) as u8, i as u8], 5000, [1, 1, 1, 1], 53);
            let got = choose_tuple(&orig, &range, Manip::Src, 0, &mut r, |t| taken.contains(t));
            let t = got.expect("a free port remains");
            check_choice(&orig, &range, Manip::Src, &t);
            prop_assert!(taken.insert(t.invert()));
        }
        let orig = tuple(IPPROTO_UDP, [10, 9, 9, 9], 5000, [1, 1, 1, 1], 53);
        prop_assert_eq!(
            choose_tuple(&orig, &range, Manip::Src, 0, &mut r, |t| taken.contains(t)),
            None
        );
    }
}

#[test]
fn large_exhausted_range_gives_none_after_bounded_work() {
    let range = NatRange::addrs(Family::Ipv4, v4([192, 0, 2, 1]), v4([192, 0, 2, 1]));
    let orig = tuple(IPPROTO_TCP, [10, 0, 0, 1], 40000, [1, 1, 1, 1], 80);
    let mut calls = 0;
    let got = choose_tuple(&orig, &range, Manip::Src, 0, rng(7), |_| {
        calls += 1;
        true
    });
    assert_eq!(got, None);
    // Step 1 is skipped (the original address is not in the range); step
    // 3 (new address, same port), then rounds of 128, 64, 32, 16 and 8
    // probes, as nf_nat_l4proto_unique_tuple does.
    assert_eq!(calls, 1 + 128 + 64 + 32 + 16 + 8);
}

#[test]
fn fully_random_spreads_over_the_range() {
    let range = NatRange::addrs(Family::Ipv4, v4([192, 0, 2, 1]), v4([192, 0, 2, 1]))
        .with_ports(10000, 10999)
        .with_flags(range_flag::FULLY_RANDOM);
    let orig = tuple(IPPROTO_TCP, [10, 0, 0, 1], 40000, [1, 1, 1, 1], 80);
    let mut buckets = [0u32; 10];
    let mut r = rng(12345);
    let n = 20000;
    for _ in 0..n {
        let t = choose_tuple(&orig, &range, Manip::Src, 0, &mut r, |_| false).unwrap();
        buckets[usize::from((t.src_port_or_icmp_id - 10000) / 100)] += 1;
    }
    let want = n / 10;
    for b in buckets {
        assert!(b > want * 8 / 10 && b < want * 12 / 10, "{buckets:?}");
    }
}

#[test]
fn privileged_ports_stay_privileged() {
    let range = NatRange::addrs(Family::Ipv4, v4([192, 0, 2, 1]), v4([192, 0, 2, 1]));
    for (sport, lo, hi) in [(22, 1, 511), (700, 600, 1023), (40000, 1024, 65535)] {
        let orig = tuple(IPPROTO_TCP, [10, 0, 0, 1], sport, [1, 1, 1, 1], 80);
        let mut seen_other = false;
        for seed in 0..200 {
            // The original port (on the new address) is taken.
            let got = choose_tuple(&orig, &range, Manip::Src, 0, rng(seed), |t| {
                t.dst_port_or_icmp_type_code == sport
            })
            .unwrap();
            assert!(
                (lo..=hi).contains(&got.src_port_or_icmp_id),
                "{sport} -> {}",
                got.src_port_or_icmp_id
            );
            seen_other |= got.src_port_or_icmp_id != sport;
        }
        assert!(seen_other);
    }
}

#[test]
fn dnat_without_ports_keeps_the_port_and_clash_is_none() {
    let range = NatRange::addrs(Family::Ipv4, v4([10, 1, 0, 5]), v4([10, 1, 0, 5]));
    let orig = tuple(IPPROTO_TCP, [198, 51, 100, 1], 5555, [203, 0, 113, 1], 80);
    let got = choose_tuple(&orig, &range, Manip::Dst, 0, rng(1), |_| false).unwrap();
    assert_eq!(
        (
            got.dst,
            got.dst_port_or_icmp_type_code,
            got.src_port_or_icmp_id
        ),
        (v4([10, 1, 0, 5]), 80, 5555)
    );
    assert_eq!(
        choose_tuple(&orig, &range, Manip::Dst, 0, rng(1), |_| true),
        None
    );
    // dnat to :22 (a single port).
    let r22 = range.with_ports(22, 22);
    let got = choose_tuple(&orig, &r22, Manip::Dst, 0, rng(1), |_| false).unwrap();
    assert_eq!(got.dst_port_or_icmp_type_code, 22);
}

#[test]
fn icmp_ids_are_searched_for_either_manip() {
    let range = NatRange::addrs(Family::Ipv4, v4([192, 0, 2, 1]), v4([192, 0, 2, 1]));
    let orig = tuple(IPPROTO_ICMP, [10, 0, 0, 1], 77, [1, 1, 1, 1], 0x0800);
    for manip in [Manip::Src, Manip::Dst] {
        let got = choose_tuple(&orig, &range, manip, 0, rng(3), |t| {
            t.src_port_or_icmp_id == 77
        })
        .unwrap();
        assert_ne!(got.src_port_or_icmp_id, 77);
        assert_eq!(
            got.dst_port_or_icmp_type_code, 0x0800,
            "type/code untouched"
        );
    }
    let mut t6 = orig;
    t6.family = Family::Ipv6;
    t6.proto = IPPROTO_ICMPV6;
    assert!(ct::is_icmp(t6.family, t6.proto) && t6.invert().src_port_or_icmp_id == 77);
}

#[test]
fn address_hash_is_sticky() {
    let range = NatRange::addrs(Family::Ipv4, v4([192, 0, 2, 0]), v4([192, 0, 2, 255]));
    let a = tuple(IPPROTO_TCP, [10, 0, 0, 1], 1000, [1, 1, 1, 1], 80);
    let first = choose_tuple(&a, &range, Manip::Src, 0, rng(1), |_| false)
        .unwrap()
        .src;
    // Same client and destination, other ports: same address.
    for p in 1001..1100 {
        let mut b = a;
        b.src_port_or_icmp_id = p;
        assert_eq!(
            choose_tuple(&b, &range, Manip::Src, 0, rng(p.into()), |_| false)
                .unwrap()
                .src,
            first
        );
    }
    // Persistent: same address whatever the destination.
    let pr = range.with_flags(range_flag::PERSISTENT);
    let p0 = choose_tuple(&a, &pr, Manip::Src, 0, rng(1), |_| false)
        .unwrap()
        .src;
    let mut spread = HashSet::new();
    for d in 0..=255u8 {
        let mut b = a;
        b.dst = v4([1, 1, 1, d]);
        assert_eq!(
            choose_tuple(&b, &pr, Manip::Src, 0, rng(1), |_| false)
                .unwrap()
                .src,
            p0
        );
        spread.insert(
            choose_tuple(&b, &range, Manip::Src, 0, rng(1), |_| false)
                .unwrap()
                .src,
        );
    }
    // Without persistent, destinations spread one client over the range.
    assert!(spread.len() > 64, "{}", spread.len());
}

#[test]
fn ipv6_address_ranges() {
    let mut lo = [0u8; 16];
    lo[0] = 0x20;
    lo[1] = 0x01;
    lo[7] = 0xff;
    lo[8..].fill(0xff);
    let mut hi = lo;
    hi[7] = 0x00;
    hi[6] = 0x01;
    hi[8..].fill(0x00);
    hi[15] = 0x10; // lo < hi, differing in several words
    let (lo, hi) = if lo < hi { (lo, hi) } else { (hi, lo) };
    let range = NatRange::addrs(Family::Ipv6, lo, hi);
    for i in 0..500u32 {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&i.to_be_bytes());
        let t = Tuple {
            family: Family::Ipv6,
            proto: IPPROTO_UDP,
            src,
            dst: [9; 16],
            src_port_or_icmp_id: 4000,
            dst_port_or_icmp_type_code: 53,
        };
        let got = choose_tuple(&t, &range, Manip::Src, 0, rng(i), |_| false).unwrap();
        assert!(range.contains_addr(&got.src));
    }
}

#[test]
fn resolve_masquerade_and_redirect() {
    let rule = NatRange::empty(Family::Ipv4)
        .with_ports(8443, 8443)
        .with_flags(range_flag::RANDOM);
    let local = v4([127, 0, 0, 1]);
    for kind in [NatKind::Masquerade, NatKind::Redirect] {
        let r = rule.resolve(kind, local);
        assert!(r.has(range_flag::MAP_IPS) && r.has(range_flag::RANDOM));
        assert_eq!((r.min_addr, r.max_addr, r.min_port), (local, local, 8443));
    }
    assert_eq!(rule.resolve(NatKind::Dnat, local), rule);
}

#[test]
fn backends_spread_and_flows_stick() {
    assert_eq!(pick_backend(0, 5), None);
    assert_eq!(pick_backend(1, u32::MAX), Some(0));
    let mut counts = [0u32; 3];
    let mut r = rng(99);
    for _ in 0..30000 {
        counts[pick_backend(3, r()).unwrap()] += 1;
    }
    for c in counts {
        assert!((9000..11000).contains(&c), "{counts:?}");
    }
    let t = tuple(IPPROTO_TCP, [10, 0, 0, 1], 1000, [10, 96, 0, 1], 80);
    let b = pick_backend(3, flow_hash(&t, 42));
    for _ in 0..10 {
        assert_eq!(pick_backend(3, flow_hash(&t, 42)), b);
    }
    let mut by_hash = [0u32; 3];
    for p in 0..3000u16 {
        let mut u = t;
        u.src_port_or_icmp_id = 10000 + p;
        by_hash[pick_backend(3, flow_hash(&u, 42)).unwrap()] += 1;
    }
    assert!(by_hash.iter().all(|c| *c > 800), "{by_hash:?}");
}
