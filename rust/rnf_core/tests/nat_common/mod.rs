// SPDX-License-Identifier: GPL-2.0-only

//! Shared by the NAT tests: a packet builder, a from-scratch reference for
//! every checksum (written independently of `rnf_core::csum`), and a
//! reference NAT that sets the fields and recomputes everything.

#![allow(dead_code)]

use proptest::prelude::*;
use rnf_core::hooks::Family;
use rnf_core::nat::{Endpoint, Manip};
use rnf_core::packet::{
    parse, IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    IPPROTO_UDPLITE,
};

/// Plain RFC 1071 sum: 32-bit accumulator of big-endian words, odd byte
/// padded, folded at the end. Deliberately naive.
pub fn ref_sum(chunks: &[&[u8]]) -> u16 {
    let mut acc: u64 = 0;
    for c in chunks {
        let mut i = 0;
        while i + 1 < c.len() {
            acc += u64::from(c[i]) << 8 | u64::from(c[i + 1]);
            i += 2;
        }
        if i < c.len() {
            acc += u64::from(c[i]) << 8;
        }
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

pub fn ref_pseudo(v6: bool, src: &[u8], dst: &[u8], proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    if v6 {
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
    } else {
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    }
    p
}

/// Bitwise CRC32c, independent of the nibble table in the crate.
pub fn ref_crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Where the checksum of a transport protocol sits, if it has an Internet
/// checksum.
pub fn csum_offset(v6: bool, proto: u8) -> Option<usize> {
    match proto {
        IPPROTO_TCP => Some(16),
        IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_DCCP => Some(6),
        IPPROTO_ICMP if !v6 => Some(2),
        IPPROTO_ICMPV6 if v6 => Some(2),
        _ => None,
    }
}

/// Recomputes every checksum of the packet in `p` from scratch. A UDP
/// checksum that is zero stays zero when `keep_udp_zero` (IPv4 "no
/// checksum"); a computed zero UDP checksum is written as 0xffff.
pub fn fix_checksums(p: &mut [u8], keep_udp_zero: bool) {
    let f = parse(p).expect("builder packets parse");
    let v6 = f.family == Family::Ipv6;
    let end = f.total_len as usize;
    if !v6 {
        let ihl = f.l4_offset;
        p[10] = 0;
        p[11] = 0;
        let c = !ref_sum(&[&p[..ihl]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    if f.is_later_fragment() {
        return;
    }
    let l4 = f.l4_offset;
    let (src, dst): (Vec<u8>, Vec<u8>) = if v6 {
        (p[8..24].to_vec(), p[24..40].to_vec())
    } else {
        (p[12..16].to_vec(), p[16..20].to_vec())
    };
    if f.proto == IPPROTO_SCTP {
        if end >= l4 + 12 {
            p[l4 + 8..l4 + 12].fill(0);
            let crc = ref_crc32c(&p[l4..end]);
            p[l4 + 8..l4 + 12].copy_from_slice(&crc.to_le_bytes());
        }
        return;
    }
    let Some(off) = csum_offset(v6, f.proto) else {
        return;
    };
    if end < l4 + off + 2 {
        return;
    }
    if f.proto == IPPROTO_UDP && keep_udp_zero && p[l4 + off] == 0 && p[l4 + off + 1] == 0 {
        return;
    }
    p[l4 + off] = 0;
    p[l4 + off + 1] = 0;
    let pseudo = if f.proto == IPPROTO_ICMP {
        Vec::new()
    } else {
        ref_pseudo(v6, &src, &dst, f.proto, end - l4)
    };
    let mut c = !ref_sum(&[&pseudo, &p[l4..end]]);
    if c == 0 && matches!(f.proto, IPPROTO_UDP | IPPROTO_UDPLITE) {
        c = 0xffff;
    }
    p[l4 + off..l4 + off + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whether every checksum of the packet verifies.
pub fn checksums_verify(p: &[u8]) -> bool {
    let mut q = p.to_vec();
    fix_checksums(&mut q, true);
    // A recomputed checksum may differ in the representation of zero
    // (0x0000 vs 0xffff for TCP); verify by summing instead.
    let f = parse(p).unwrap();
    let v6 = f.family == Family::Ipv6;
    if !v6 && ref_sum(&[&p[..f.l4_offset]]) != 0xffff {
        return false;
    }
    if f.is_later_fragment() {
        return true;
    }
    let l4 = f.l4_offset;
    let end = f.total_len as usize;
    match csum_offset(v6, f.proto) {
        Some(off) if end >= l4 + off + 2 => {
            if f.proto == IPPROTO_UDP && !v6 && p[l4 + off] == 0 && p[l4 + off + 1] == 0 {
                return true;
            }
            let (src, dst) = if v6 {
                (&p[8..24], &p[24..40])
            } else {
                (&p[12..16], &p[16..20])
            };
            let pseudo = if f.proto == IPPROTO_ICMP {
                Vec::new()
            } else {
                ref_pseudo(v6, src, dst, f.proto, end - l4)
            };
            ref_sum(&[&pseudo, &p[l4..end]]) == 0xffff
        }
        _ => q == p,
    }
}

/// A packet to build.
#[derive(Clone, Debug)]
pub struct Spec {
    pub v6: bool,
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// ICMP type (for ICMP protocols).
    pub icmp_type: u8,
    /// IPv4 option words or IPv6 destination-options headers.
    pub ext: usize,
    pub payload: Vec<u8>,
    /// IPv4 UDP without checksum (field 0).
    pub udp_zero: bool,
    /// Make it a non-first fragment (IPv4 offset / IPv6 fragment header).
    pub later_fragment: bool,
}

/// Builds the packet with correct checksums.
pub fn build(s: &Spec) -> Vec<u8> {
    let l4: Vec<u8> = match s.proto {
        IPPROTO_TCP => {
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&s.sport.to_be_bytes());
            t[2..4].copy_from_slice(&s.dport.to_be_bytes());
            t[4..8].copy_from_slice(&[1, 2, 3, 4]);
            t[12] = 5 << 4;
            t[13] = 0x18;
            t
        }
        IPPROTO_UDP | IPPROTO_UDPLITE => {
            let mut u = vec![0u8; 8];
            u[0..2].copy_from_slice(&s.sport.to_be_bytes());
            u[2..4].copy_from_slice(&s.dport.to_be_bytes());
            let len = if s.proto == IPPROTO_UDP {
                (8 + s.payload.len()) as u16
            } else {
                0 // UDP-Lite: coverage 0 = whole packet
            };
            u[4..6].copy_from_slice(&len.to_be_bytes());
            u
        }
        IPPROTO_DCCP => {
            let mut d = vec![0u8; 12];
            d[0..2].copy_from_slice(&s.sport.to_be_bytes());
            d[2..4].copy_from_slice(&s.dport.to_be_bytes());
            d[4] = 3;
            d
        }
        IPPROTO_SCTP => {
            let mut d = vec![0u8; 12];
            d[0..2].copy_from_slice(&s.sport.to_be_bytes());
            d[2..4].copy_from_slice(&s.dport.to_be_bytes());
            d[4..8].copy_from_slice(&[9, 9, 9, 9]);
            d
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let mut i = vec![s.icmp_type, 0, 0, 0, 0, 0, 0, 0];
            i[4..6].copy_from_slice(&s.sport.to_be_bytes());
            i[6..8].copy_from_slice(&7u16.to_be_bytes());
            i
        }
        _ => Vec::new(),
    };
    let mut p = Vec::new();
    if s.v6 {
        p.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 0, 64]);
        p.extend_from_slice(&s.src);
        p.extend_from_slice(&s.dst);
        let mut next_at = 6;
        for _ in 0..s.ext {
            p[next_at] = 60;
            next_at = p.len();
            p.extend_from_slice(&[0u8; 8]);
        }
        if s.later_fragment {
            p[next_at] = 44;
            next_at = p.len();
            p.extend_from_slice(&[0, 0, 0, 0x08 | 1, 0, 0, 0, 1]);
        }
        p[next_at] = s.proto;
    } else {
        let ihl = 5 + s.ext;
        p.extend_from_slice(&[
            0x40 | ihl as u8,
            0,
            0,
            0,
            0x12,
            0x34,
            0,
            0,
            64,
            s.proto,
            0,
            0,
        ]);
        if s.later_fragment {
            p[6] = 0x20;
            p[7] = 0x10;
        }
        p.extend_from_slice(&s.src[..4]);
        p.extend_from_slice(&s.dst[..4]);
        p.extend(std::iter::repeat(1u8).take(4 * s.ext));
    }
    p.extend_from_slice(&l4);
    p.extend_from_slice(&s.payload);
    let total = p.len();
    if s.v6 {
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    } else {
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    }
    let zero = s.udp_zero && !s.v6 && s.proto == IPPROTO_UDP;
    fix_checksums(&mut p, false);
    if zero && !s.later_fragment {
        let l4 = 20 + 4 * s.ext;
        p[l4 + 6] = 0;
        p[l4 + 7] = 0;
    }
    p
}

/// Whether the ICMP(v6) type is a query whose id NAT rewrites.
pub fn icmp_query(v6: bool, ty: u8) -> bool {
    if v6 {
        matches!(ty, 128 | 129)
    } else {
        matches!(ty, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
    }
}

/// Sets the fields a NAT changes, without touching any checksum.
pub fn set_fields(p: &mut [u8], manip: Manip, to: &Endpoint) {
    let f = parse(p).unwrap();
    let v6 = f.family == Family::Ipv6;
    match (v6, manip) {
        (false, Manip::Src) => p[12..16].copy_from_slice(&to.addr[..4]),
        (false, Manip::Dst) => p[16..20].copy_from_slice(&to.addr[..4]),
        (true, Manip::Src) => p[8..24].copy_from_slice(&to.addr),
        (true, Manip::Dst) => p[24..40].copy_from_slice(&to.addr),
    }
    if f.is_later_fragment() {
        return;
    }
    let l4 = f.l4_offset;
    let end = (f.total_len as usize).min(p.len());
    match f.proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_DCCP | IPPROTO_SCTP => {
            let at = l4 + if manip == Manip::Src { 0 } else { 2 };
            if at + 2 <= end {
                p[at..at + 2].copy_from_slice(&to.port.to_be_bytes());
            }
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let icmp = (f.proto == IPPROTO_ICMP) != v6;
            if icmp && l4 + 6 <= end && icmp_query(v6, p[l4]) {
                p[l4 + 4..l4 + 6].copy_from_slice(&to.port.to_be_bytes());
            }
        }
        _ => {}
    }
}

/// The reference NAT: set the fields, recompute every checksum.
pub fn ref_manip(p: &[u8], manip: Manip, to: &Endpoint) -> Vec<u8> {
    let mut q = p.to_vec();
    set_fields(&mut q, manip, to);
    fix_checksums(&mut q, true);
    q
}

pub fn addr_for(v6: bool, mut a: [u8; 16]) -> [u8; 16] {
    if !v6 {
        a[4..].fill(0);
    }
    a
}

pub fn proto_strategy() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![
        IPPROTO_TCP,
        IPPROTO_UDP,
        IPPROTO_UDPLITE,
        IPPROTO_DCCP,
        IPPROTO_SCTP,
        IPPROTO_ICMP, // becomes ICMPv6 for IPv6
        47,           // GRE: IP header only
    ])
}

pub fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        proto_strategy(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
        prop::sample::select(vec![0u8, 8, 13, 14, 17, 3, 11, 128, 129, 1, 135]),
        0usize..3,
        prop::collection::vec(any::<u8>(), 0..80),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(v6, proto, src, dst, sport, dport, icmp_type, ext, payload, udp_zero, frag)| {
                let proto = match (proto, v6) {
                    (IPPROTO_ICMP, true) => IPPROTO_ICMPV6,
                    (p, _) => p,
                };
                Spec {
                    v6,
                    proto,
                    src: addr_for(v6, src),
                    dst: addr_for(v6, dst),
                    sport,
                    dport,
                    icmp_type,
                    ext,
                    payload,
                    udp_zero,
                    later_fragment: frag,
                }
            },
        )
}
