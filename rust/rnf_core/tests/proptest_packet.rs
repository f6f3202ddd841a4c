// SPDX-License-Identifier: GPL-2.0-only

//! Property tests: parsing arbitrary bytes as a packet or as a rule never
//! panics; a constructed packet parses back to the fields it was built
//! from.

use proptest::prelude::*;
use rnf_core::hooks::Family;
use rnf_core::packet::{
    parse, PacketError, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, L4,
};
use rnf_core::rules::{validate, RuleView};

#[derive(Clone, Debug)]
struct Built {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    ty: u8,
    code: u8,
    /// IPv4 options (in 4-byte words) or IPv6 extension headers
    /// (hop-by-hop / destination options, 8 bytes each).
    ext: usize,
    payload: usize,
}

fn build(b: &Built) -> Vec<u8> {
    let l4: Vec<u8> = match b.proto {
        IPPROTO_TCP => {
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&b.sport.to_be_bytes());
            t[2..4].copy_from_slice(&b.dport.to_be_bytes());
            t[12] = 5 << 4;
            t[13] = b.flags;
            t
        }
        IPPROTO_UDP => {
            let mut u = vec![0u8; 8];
            u[0..2].copy_from_slice(&b.sport.to_be_bytes());
            u[2..4].copy_from_slice(&b.dport.to_be_bytes());
            u
        }
        IPPROTO_SCTP => {
            let mut u = vec![0u8; 12];
            u[0..2].copy_from_slice(&b.sport.to_be_bytes());
            u[2..4].copy_from_slice(&b.dport.to_be_bytes());
            u
        }
        _ => vec![b.ty, b.code, 0, 0, 0, 0, 0, 0],
    };
    let mut p = Vec::new();
    if b.v6 {
        p.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 0, 64]);
        p.extend_from_slice(&b.src);
        p.extend_from_slice(&b.dst);
        let mut next_at = 6;
        for _ in 0..b.ext {
            p[next_at] = 60; // destination options
            next_at = p.len();
            p.extend_from_slice(&[0u8; 8]);
        }
        p[next_at] = b.proto;
    } else {
        let ihl = 5 + b.ext;
        p.extend_from_slice(&[0x40 | ihl as u8, 0, 0, 0, 0, 0, 0, 0, 64, b.proto, 0, 0]);
        p.extend_from_slice(&b.src[..4]);
        p.extend_from_slice(&b.dst[..4]);
        p.extend(std::iter::repeat(1u8).take(4 * b.ext));
    }
    let l4_off = p.len();
    p.extend_from_slice(&l4);
    p.extend(std::iter::repeat(0xaa).take(b.payload));
    let total = p.len() as u16;
    if b.v6 {
        p[4..6].copy_from_slice(&(total - 40).to_be_bytes());
    } else {
        p[2..4].copy_from_slice(&total.to_be_bytes());
    }
    let _ = l4_off;
    p
}

fn built() -> impl Strategy<Value = Built> {
    (
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        prop::sample::select(vec![IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, 0xff]),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        0usize..4,
        0usize..64,
    )
        .prop_map(
            |(v6, mut src, mut dst, proto, sport, dport, flags, ty, code, ext, payload)| {
                if !v6 {
                    src[4..].fill(0);
                    dst[4..].fill(0);
                }
                let proto = if proto == 0xff {
                    if v6 {
                        IPPROTO_ICMPV6
                    } else {
                        IPPROTO_ICMP
                    }
                } else {
                    proto
                };
                Built {
                    v6,
                    src,
                    dst,
                    proto,
                    sport,
                    dport,
                    flags,
                    ty,
                    code,
                    ext,
                    payload,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&buf);
    }

    #[test]
    fn ip_like_bytes_never_panic(
        v6 in any::<bool>(),
        mut buf in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        // Force the version nibble so parsing gets past the first check.
        if let Some(b) = buf.first_mut() {
            *b = if v6 { 0x60 | (*b & 0x0f) } else { 0x45 };
        }
        if let Ok(f) = parse(&buf) {
            prop_assert!(f.l4_offset <= buf.len());
            if let Some(p) = f.payload_offset {
                prop_assert!(p <= buf.len());
            }
        }
    }

    #[test]
    fn constructed_packet_parses_back(b in built(), cut in any::<prop::sample::Index>()) {
        let p = build(&b);
        let f = parse(&p).unwrap();
        prop_assert_eq!(f.family, if b.v6 { Family::Ipv6 } else { Family::Ipv4 });
        prop_assert_eq!(f.src, b.src);
        prop_assert_eq!(f.dst, b.dst);
        prop_assert_eq!(f.proto, b.proto);
        prop_assert_eq!(f.total_len as usize, p.len());
        prop_assert!(!f.is_fragment);
        let want = match b.proto {
            IPPROTO_TCP => L4::Tcp { sport: b.sport, dport: b.dport, flags: b.flags },
            IPPROTO_UDP | IPPROTO_SCTP => L4::Ports { sport: b.sport, dport: b.dport },
            _ => L4::Icmp { ty: b.ty, code: b.code },
        };
        prop_assert_eq!(f.l4, want);
        prop_assert_eq!(f.payload_offset, Some(p.len() - b.payload));

        // Any prefix of the packet either is refused (inside the IP
        // headers) or parses with the same addresses.
        let n = cut.index(p.len());
        match parse(&p[..n]) {
            Ok(g) => {
                prop_assert_eq!(g.src, b.src);
                prop_assert!(n >= f.l4_offset);
                if n < p.len() - b.payload {
                    prop_assert_eq!(g.l4, L4::Truncated);
                }
            }
            Err(e) => prop_assert!(
                matches!(e, PacketError::Truncated | PacketError::BadVersion),
                "{:?}", e
            ),
        }
    }

    #[test]
    fn arbitrary_rule_blobs_never_panic(buf in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(v) = RuleView::decode(&buf) {
            // A blob that validates can be walked entirely.
            for l in [v.saddr, v.daddr].into_iter().flatten() {
                let _ = l.iter().count();
            }
            for l in [v.sport, v.dport].into_iter().flatten() {
                let _ = l.iter().count();
            }
        }
        let _ = validate(&buf);
    }
}
