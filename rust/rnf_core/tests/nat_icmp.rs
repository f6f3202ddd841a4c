// SPDX-License-Identifier: GPL-2.0-only

//! Property tests: translating an ICMP or ICMPv6 error about a NATed flow
//! (quoted inner header and ports, inner IPv4 header checksum, inner
//! transport checksum, outer ICMP checksum, outer address) gives the bytes
//! a from-scratch recomputation gives, for full and truncated quotes.

mod nat_common;

use nat_common::*;
use proptest::prelude::*;
use rnf_core::hooks::Family;
use rnf_core::nat::{manip_packet, translate_icmp_error, Endpoint, Manip, NatError};
use rnf_core::packet::{
    parse, IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP,
};

/// Wraps `quote` in an ICMP error from `from` to `to`.
fn icmp_error(v6: bool, from: [u8; 16], to: [u8; 16], ty: u8, quote: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    if v6 {
        p.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, IPPROTO_ICMPV6, 64]);
        p.extend_from_slice(&from);
        p.extend_from_slice(&to);
    } else {
        p.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, IPPROTO_ICMP, 0, 0]);
        p.extend_from_slice(&from[..4]);
        p.extend_from_slice(&to[..4]);
    }
    p.extend_from_slice(&[ty, 0, 0, 0, 0, 0, 0x05, 0xdc]);
    p.extend_from_slice(quote);
    let total = p.len();
    if v6 {
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    } else {
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    }
    fix_checksums(&mut p, true);
    p
}

/// The quote as a from-scratch NAT of the whole inner packet would leave
/// it, cut to `q` bytes; where the quote cuts the transport header short
/// of its checksum-carrying size (TCP 20, DCCP 12) the checksum is not
/// updated, and an SCTP CRC is never updated (Linux does the same: it
/// cannot see the whole header or packet).
fn expected_quote(inner: &[u8], q: usize, manip: Manip, to: &Endpoint) -> Vec<u8> {
    let f = parse(inner).unwrap();
    let mut e = ref_manip(inner, manip, to);
    let l4 = f.l4_offset;
    if !f.is_later_fragment() {
        let keep = match f.proto {
            IPPROTO_TCP if q < l4 + 20 => Some(l4 + 16..l4 + 18),
            IPPROTO_DCCP if q < l4 + 12 => Some(l4 + 6..l4 + 8),
            IPPROTO_SCTP => Some(l4 + 8..l4 + 12),
            _ => None,
        };
        if let Some(r) = keep {
            let r = r.start.min(e.len())..r.end.min(e.len());
            e[r.clone()].copy_from_slice(&inner[r]);
        }
    }
    e.truncate(q);
    e
}

fn error_type(v6: bool, pick: u8) -> u8 {
    if v6 {
        [1, 2, 3, 4][usize::from(pick % 4)]
    } else {
        [3, 4, 5, 11, 12][usize::from(pick % 5)]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn icmp_error_matches_recomputation(
        s in spec_strategy(),
        manip in prop_oneof![Just(Manip::Src), Just(Manip::Dst)],
        router in any::<[u8; 16]>(),
        outer_new in any::<[u8; 16]>(),
        inner_addr in any::<[u8; 16]>(),
        inner_port in any::<u16>(),
        ty in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let inner = build(&s);
        let f = parse(&inner).unwrap();
        // Quote lengths: the RFC 792 minimum (IP header + 8) up to all.
        let min_q = (f.l4_offset + 8).min(inner.len());
        let q = min_q + cut.index(inner.len() - min_q + 1);
        let quote = &inner[..q];
        let v6 = s.v6;
        // The error goes to the NAT's address: the outer destination is
        // what the reply direction has.
        let outer_dst = addr_for(v6, [0x42; 16]);
        let pkt = icmp_error(v6, addr_for(v6, router), outer_dst, error_type(v6, ty), quote);
        let facts = parse(&pkt).unwrap();
        let outer = addr_for(v6, outer_new);
        let inner_ep = Endpoint { addr: addr_for(v6, inner_addr), port: inner_port };
        let mut got = pkt.clone();
        let r = translate_icmp_error(&mut got, &facts, manip, &outer, &inner_ep, false);
        prop_assert!(r.is_ok(), "{:?}", r);

        let want_quote = expected_quote(&inner, q, manip.invert(), &inner_ep);
        let mut want = pkt.clone();
        let qa = facts.l4_offset + 8;
        want[qa..].copy_from_slice(&want_quote);
        let ofs = match (v6, manip) {
            (false, Manip::Src) => 12..16,
            (false, Manip::Dst) => 16..20,
            (true, Manip::Src) => 8..24,
            (true, Manip::Dst) => 24..40,
        };
        let n = ofs.len();
        want[ofs].copy_from_slice(&outer[..n]);
        fix_checksums(&mut want, true);
        prop_assert_eq!(&got, &want);
        prop_assert!(checksums_verify(&got));
        // CHECKSUM_COMPLETE: the delta tracks the packet's sum.
        let r = r.unwrap();
        let before = u32::from(ref_sum(&[&pkt]));
        let after = ref_sum(&[&got]);
        let updated = rnf_core::csum::fold(rnf_core::csum::add(before, r.csum_delta));
        prop_assert_eq!(updated % 0xffff, after % 0xffff);
    }

    /// CHECKSUM_PARTIAL on the error: the ICMP checksum is left to the NIC
    /// (ICMPv6: only its pseudo-header part is updated).
    #[test]
    fn icmp_error_partial(
        s in spec_strategy(),
        manip in prop_oneof![Just(Manip::Src), Just(Manip::Dst)],
        outer_new in any::<[u8; 16]>(),
        inner_addr in any::<[u8; 16]>(),
        inner_port in any::<u16>(),
    ) {
        let inner = build(&s);
        let v6 = s.v6;
        let ty = if v6 { 1 } else { 3 };
        let (from, to) = (addr_for(v6, [1; 16]), addr_for(v6, [2; 16]));
        let mut pkt = icmp_error(v6, from, to, ty, &inner);
        // What the stack leaves in the field for CHECKSUM_PARTIAL.
        let l4 = if v6 { 40 } else { 20 };
        let len = pkt.len() - l4;
        let v = if v6 {
            let pseudo = ref_pseudo(true, &pkt[8..24], &pkt[24..40], IPPROTO_ICMPV6, len);
            ref_sum(&[&pseudo])
        } else {
            0
        };
        pkt[l4 + 2..l4 + 4].copy_from_slice(&v.to_be_bytes());
        let facts = parse(&pkt).unwrap();
        let outer = addr_for(v6, outer_new);
        let inner_ep = Endpoint { addr: addr_for(v6, inner_addr), port: inner_port };
        let mut got = pkt.clone();
        translate_icmp_error(&mut got, &facts, manip, &outer, &inner_ep, true).unwrap();
        // The NIC: sum from the ICMP header to the end (the field holding
        // the pseudo-header sum included), store the complement.
        let c = !ref_sum(&[&got[l4..]]);
        let c = if c == 0 { 0xffff } else { c };
        got[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        prop_assert!(checksums_verify(&got));
        // The rest equals the full (non-offload) translation.
        let mut full = pkt.clone();
        fix_checksums(&mut full, true);
        translate_icmp_error(&mut full, &facts, manip, &outer, &inner_ep, false).unwrap();
        let (mut a, mut b) = (got.clone(), full.clone());
        a[l4 + 2..l4 + 4].fill(0);
        b[l4 + 2..l4 + 4].fill(0);
        prop_assert_eq!(a, b);
    }
}

#[test]
fn not_an_error_is_refused() {
    let s = Spec {
        v6: false,
        proto: IPPROTO_ICMP,
        src: addr_for(false, [1; 16]),
        dst: addr_for(false, [2; 16]),
        sport: 77,
        dport: 0,
        icmp_type: 8,
        ext: 0,
        payload: vec![0; 8],
        udp_zero: false,
        later_fragment: false,
    };
    let mut p = build(&s);
    let facts = parse(&p).unwrap();
    let ep = Endpoint {
        addr: addr_for(false, [3; 16]),
        port: 5,
    };
    assert_eq!(
        translate_icmp_error(&mut p, &facts, Manip::Src, &ep.addr, &ep, false),
        Err(NatError::NotIcmpError)
    );
    // An echo request gets its id rewritten by the ordinary path.
    let r = manip_packet(&mut p, &facts, Manip::Src, &ep, false).unwrap();
    assert!(r.l4_changed);
    assert_eq!(u16::from_be_bytes([p[24], p[25]]), 5);
    assert!(checksums_verify(&p));
    assert_eq!(parse(&p).unwrap().family, Family::Ipv4);
}

/// The example from the documentation: a masqueraded client, an error
/// from a router about the translated packet, seen in PREROUTING.
#[test]
fn masquerade_fragmentation_needed_example() {
    let c = addr_for(false, [192, 168, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let n = addr_for(false, [203, 0, 113, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let srv = addr_for(false, [198, 51, 100, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let r = addr_for(false, [198, 51, 100, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // The translated packet N:40000 -> S:443 the router could not forward.
    let sent = build(&Spec {
        v6: false,
        proto: IPPROTO_TCP,
        src: n,
        dst: srv,
        sport: 40000,
        dport: 443,
        icmp_type: 0,
        ext: 0,
        payload: vec![0x5a; 100],
        udp_zero: false,
        later_fragment: false,
    });
    let mut pkt = icmp_error(false, r, n, 3, &sent[..28]);
    let facts = parse(&pkt).unwrap();
    let client = Endpoint {
        addr: c,
        port: 1234,
    };
    translate_icmp_error(&mut pkt, &facts, Manip::Dst, &c, &client, false).unwrap();
    assert_eq!(&pkt[16..20], &c[..4]); // outer destination: the client
    assert_eq!(&pkt[12..16], &r[..4]); // outer source: the router
    assert_eq!(&pkt[28 + 12..28 + 16], &c[..4]); // quoted source: the client
    assert_eq!(u16::from_be_bytes([pkt[48], pkt[49]]), 1234); // quoted port
    assert!(checksums_verify(&pkt));
    assert_eq!(
        ref_sum(&[&pkt[28..48]]),
        0xffff,
        "quoted IPv4 header checksum"
    );
}
