// SPDX-License-Identifier: GPL-2.0-only

//! Property tests: NAT's incremental header rewrite gives exactly the
//! bytes a from-scratch recomputation gives, for IPv4 and IPv6, TCP, UDP
//! (with and without a checksum), UDP-Lite, DCCP, SCTP, ICMP and ICMPv6,
//! fragments and odd lengths; with checksum offload pending
//! (CHECKSUM_PARTIAL) the NIC's sum comes out right; the reported
//! CHECKSUM_COMPLETE delta matches the change of the packet's sum.

mod nat_common;

use nat_common::*;
use proptest::prelude::*;
use rnf_core::csum;
use rnf_core::hooks::Family;
use rnf_core::nat::{manip_packet, rewrite_len, rewritten_fingerprint, Endpoint, Manip, NatError};
use rnf_core::packet::{parse, IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_UDP};

fn manip_strategy() -> impl Strategy<Value = Manip> {
    prop_oneof![Just(Manip::Src), Just(Manip::Dst)]
}

/// Turns the packet's transport checksum into what the stack leaves for a
/// CHECKSUM_PARTIAL skb: the folded pseudo-header sum, not complemented
/// (zero for ICMPv4, which has no pseudo-header). Returns false when the
/// protocol has no Internet checksum to offload.
fn make_partial(p: &mut [u8]) -> bool {
    let f = parse(p).unwrap();
    let v6 = f.family == Family::Ipv6;
    let Some(off) = csum_offset(v6, f.proto) else {
        return false;
    };
    if f.is_later_fragment() {
        return false;
    }
    let l4 = f.l4_offset;
    let end = f.total_len as usize;
    let (src, dst) = if v6 {
        (p[8..24].to_vec(), p[24..40].to_vec())
    } else {
        (p[12..16].to_vec(), p[16..20].to_vec())
    };
    let v = if f.proto == IPPROTO_ICMP {
        0
    } else {
        ref_sum(&[&ref_pseudo(v6, &src, &dst, f.proto, end - l4)])
    };
    p[l4 + off..l4 + off + 2].copy_from_slice(&v.to_be_bytes());
    true
}

/// What the NIC (or `skb_checksum_help`) does for CHECKSUM_PARTIAL: sum
/// from the transport header to the end, field included, store the
/// complement, zero becoming 0xffff.
fn nic_finish(p: &mut [u8]) {
    let f = parse(p).unwrap();
    let v6 = f.family == Family::Ipv6;
    let off = csum_offset(v6, f.proto).unwrap();
    let l4 = f.l4_offset;
    let end = f.total_len as usize;
    let mut c = !ref_sum(&[&p[l4..end]]);
    if c == 0 {
        c = 0xffff;
    }
    p[l4 + off..l4 + off + 2].copy_from_slice(&c.to_be_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Incremental update == full recomputation, byte for byte.
    #[test]
    fn rewrite_matches_recomputation(
        s in spec_strategy(),
        manip in manip_strategy(),
        addr in any::<[u8; 16]>(),
        port in any::<u16>(),
    ) {
        let p = build(&s);
        prop_assert!(checksums_verify(&p));
        let to = Endpoint { addr: addr_for(s.v6, addr), port };
        let facts = parse(&p).unwrap();
        let mut q = p.clone();
        let r = manip_packet(&mut q, &facts, manip, &to, false).unwrap();
        let want = ref_manip(&p, manip, &to);
        prop_assert_eq!(&q, &want);
        prop_assert!(checksums_verify(&q));
        // The fingerprint the kernel notes for the rewritten packet is the
        // one the later hooks compute from its headers.
        prop_assert_eq!(
            rewritten_fingerprint(&facts, manip, &to),
            parse(&q).unwrap().fingerprint()
        );
        // The zero UDP checksum of IPv4 stays zero.
        if s.udp_zero && !s.v6 && s.proto == IPPROTO_UDP && !s.later_fragment {
            let l4 = facts.l4_offset;
            prop_assert_eq!(&q[l4 + 6..l4 + 8], &[0, 0]);
        }
        // CHECKSUM_COMPLETE: the delta is the change of the sum over the
        // whole packet (not for SCTP, which asks for CHECKSUM_NONE).
        if !r.csum_none {
            let before = u32::from(ref_sum(&[&p]));
            let after = ref_sum(&[&q]);
            let updated = csum::fold(csum::add(before, r.csum_delta));
            prop_assert_eq!(
                updated % 0xffff, after % 0xffff,
                "complete delta: before {:04x} after {:04x}", before, after
            );
        }
        prop_assert_eq!(r.csum_none, s.proto == IPPROTO_SCTP && !s.later_fragment);
    }

    /// CHECKSUM_PARTIAL: after the rewrite, the NIC's sum over the
    /// transport bytes gives a checksum that verifies for the new
    /// addresses and ports; everything else equals the reference.
    #[test]
    fn partial_offload_comes_out_right(
        s in spec_strategy().prop_filter("offloadable", |s| {
            csum_offset(s.v6, s.proto).is_some()
                && !s.later_fragment
                && !(s.udp_zero && !s.v6 && s.proto == IPPROTO_UDP)
        }),
        manip in manip_strategy(),
        addr in any::<[u8; 16]>(),
        port in any::<u16>(),
    ) {
        let mut p = build(&s);
        prop_assert!(make_partial(&mut p));
        let to = Endpoint { addr: addr_for(s.v6, addr), port };
        let facts = parse(&p).unwrap();
        let mut q = p.clone();
        manip_packet(&mut q, &facts, manip, &to, true).unwrap();
        nic_finish(&mut q);
        prop_assert!(checksums_verify(&q));
        let mut want = build(&s);
        set_fields(&mut want, manip, &to);
        fix_checksums(&mut want, true);
        let l4 = facts.l4_offset;
        let off = csum_offset(s.v6, facts.proto).unwrap();
        // Compare all but the checksum field (0 and 0xffff both mean a
        // zero sum for TCP).
        let mut a = q.clone();
        let mut b = want.clone();
        a[l4 + off..l4 + off + 2].fill(0);
        b[l4 + off..l4 + off + 2].fill(0);
        prop_assert_eq!(a, b);
    }

    /// Given only the first `rewrite_len` bytes (what the kernel makes
    /// writable), a rewrite writes what it writes given the whole packet,
    /// with the same result; or, where it needs the whole packet (SCTP's
    /// CRC32c), says so without writing anything.
    #[test]
    fn rewrite_len_is_enough(
        s in spec_strategy(),
        manip in manip_strategy(),
        addr in any::<[u8; 16]>(),
        port in any::<u16>(),
        partial in any::<bool>(),
    ) {
        let p = build(&s);
        let facts = parse(&p).unwrap();
        let to = Endpoint { addr: addr_for(s.v6, addr), port };
        let n = rewrite_len(&facts).min(p.len());
        let mut whole = p.clone();
        let mut head = p[..n].to_vec();
        let full = manip_packet(&mut whole, &facts, manip, &to, partial);
        let short = manip_packet(&mut head, &facts, manip, &to, partial);
        if short == Err(NatError::NeedFullPacket) {
            // The kernel then makes the whole packet writable and rewrites
            // it whole (`full`); nothing was written meanwhile.
            prop_assert_eq!(&head[..], &p[..n]);
        } else {
            prop_assert_eq!(short, full);
            prop_assert_eq!(&head[..], &whole[..n]);
            prop_assert_eq!(&whole[n..], &p[n..], "nothing past rewrite_len is written");
        }
    }

    /// A packet cut short inside the transport header is refused before
    /// anything is written.
    #[test]
    fn short_buffer_is_refused_untouched(
        s in spec_strategy(),
        manip in manip_strategy(),
        addr in any::<[u8; 16]>(),
        port in any::<u16>(),
        cut in 0usize..40,
    ) {
        let p = build(&s);
        let facts = parse(&p).unwrap();
        let to = Endpoint { addr: addr_for(s.v6, addr), port };
        let len = p.len().saturating_sub(cut).max(facts.l4_offset);
        let mut q = p[..len].to_vec();
        match manip_packet(&mut q, &facts, manip, &to, false) {
            Ok(_) => {
                // Succeeding on a cut buffer is fine only when everything
                // NAT touches was there: the result matches the reference.
                let want = ref_manip(&p, manip, &to);
                if s.proto != IPPROTO_SCTP {
                    prop_assert_eq!(&q[..], &want[..len]);
                }
            }
            Err(e) => {
                prop_assert!(matches!(e, NatError::Truncated | NatError::NeedFullPacket));
                prop_assert_eq!(&q[..], &p[..len]);
            }
        }
    }

    /// Odd payload lengths and the last-byte padding rule.
    #[test]
    fn odd_lengths(
        v6 in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 1..200usize)
            .prop_filter("odd", |v| v.len() % 2 == 1),
        port in any::<u16>(),
        addr in any::<[u8; 16]>(),
    ) {
        let s = Spec {
            v6,
            proto: IPPROTO_UDP,
            src: addr_for(v6, [7; 16]),
            dst: addr_for(v6, [9; 16]),
            sport: 1,
            dport: 2,
            icmp_type: 0,
            ext: 0,
            payload,
            udp_zero: false,
            later_fragment: false,
        };
        let p = build(&s);
        let to = Endpoint { addr: addr_for(v6, addr), port };
        let facts = parse(&p).unwrap();
        let mut q = p.clone();
        manip_packet(&mut q, &facts, Manip::Dst, &to, false).unwrap();
        prop_assert_eq!(q, ref_manip(&p, Manip::Dst, &to));
    }
}

#[test]
fn ipv4_endpoint_with_ipv6_bytes_is_a_mismatch() {
    let s = Spec {
        v6: false,
        proto: IPPROTO_UDP,
        src: addr_for(false, [1; 16]),
        dst: addr_for(false, [2; 16]),
        sport: 1,
        dport: 2,
        icmp_type: 0,
        ext: 0,
        payload: vec![1, 2, 3],
        udp_zero: false,
        later_fragment: false,
    };
    let mut p = build(&s);
    let facts = parse(&p).unwrap();
    let to = Endpoint {
        addr: [3; 16],
        port: 9,
    };
    assert_eq!(
        manip_packet(&mut p, &facts, Manip::Src, &to, false),
        Err(NatError::Mismatch)
    );
}

#[test]
fn udp_computed_zero_is_sent_as_ffff() {
    // Search a destination port that makes the new checksum come out as
    // zero, and check it is sent as 0xffff.
    let s = Spec {
        v6: false,
        proto: IPPROTO_UDP,
        src: addr_for(false, [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        dst: addr_for(false, [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        sport: 1000,
        dport: 53,
        icmp_type: 0,
        ext: 0,
        payload: vec![0x12, 0x34, 0x56],
        udp_zero: false,
        later_fragment: false,
    };
    let p = build(&s);
    let facts = parse(&p).unwrap();
    let mut found = false;
    for port in 0..=u16::MAX {
        let to = Endpoint { addr: s.dst, port };
        let mut q = p.clone();
        manip_packet(&mut q, &facts, Manip::Dst, &to, false).unwrap();
        let c = u16::from_be_bytes([q[26], q[27]]);
        assert_ne!(c, 0, "UDP checksum 0 sent for port {port}");
        if c == 0xffff {
            found = true;
            assert!(checksums_verify(&q));
        }
    }
    assert!(found, "some port gives a computed zero");
}
