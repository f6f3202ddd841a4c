// SPDX-License-Identifier: GPL-2.0-only

//! Property tests for connection tracking: tuple inversion is an
//! involution, the hash is a function of tuple and key only, and no input
//! (packet bytes, ICMP error payloads, TCP segment sequences, names) makes
//! a parser or tracker panic.

use proptest::prelude::*;
use rnf_core::ct::{
    bucket_index, classify, default_max_entries, icmp_error_inner, siphash13, Classified, CtState,
    Direction, TimeoutKey, Timeouts, Tuple,
};
use rnf_core::ct_tcp::{TcpAction, TcpConfig, TcpConn, TcpSegment};
use rnf_core::hooks::Family;
use rnf_core::packet::{self, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::Ipv4), Just(Family::Ipv6)]
}

fn tuple() -> impl Strategy<Value = Tuple> {
    (
        family(),
        prop_oneof![
            Just(IPPROTO_TCP),
            Just(IPPROTO_UDP),
            Just(IPPROTO_ICMP),
            Just(IPPROTO_ICMPV6),
            any::<u8>()
        ],
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        prop_oneof![
            // ICMP echo and other query types, to exercise the type map.
            (
                prop_oneof![
                    Just(0u8),
                    Just(8),
                    Just(13),
                    Just(14),
                    Just(128),
                    Just(129),
                    Just(139)
                ],
                any::<u8>()
            )
                .prop_map(|(t, c)| u16::from_be_bytes([t, c])),
            any::<u16>()
        ],
    )
        .prop_map(|(family, proto, mut src, mut dst, a, b)| {
            if family == Family::Ipv4 {
                src[4..].fill(0);
                dst[4..].fill(0);
            }
            Tuple {
                family,
                proto,
                src,
                dst,
                src_port_or_icmp_id: a,
                dst_port_or_icmp_type_code: b,
            }
        })
}

/// An arbitrary segment: (reply direction, seq, ack, window, flags, data
/// length, option bytes).
type RawSeg = (bool, u32, u32, u16, u8, u32, Vec<u8>);

fn raw_seg() -> impl Strategy<Value = RawSeg> {
    (
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u8>(),
        0u32..3000,
        proptest::collection::vec(any::<u8>(), 0..40),
    )
}

fn as_seg(r: &RawSeg) -> (Direction, TcpSegment<'_>) {
    let dir = if r.0 {
        Direction::Reply
    } else {
        Direction::Original
    };
    (
        dir,
        TcpSegment {
            seq: r.1,
            ack: r.2,
            window: r.3,
            flags: r.4,
            data_len: r.5,
            options: &r.6,
        },
    )
}

/// A step of a near-valid conversation: flags from the common set, numbers
/// close to the ends' current positions so that the window code is
/// exercised beyond the first check.
#[derive(Clone, Debug)]
struct Step {
    reply: bool,
    flags: u8,
    seq_delta: i32,
    ack_delta: i32,
    window: u16,
    len: u32,
    opts: Vec<u8>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        any::<bool>(),
        prop_oneof![
            Just(0x02u8),
            Just(0x12),
            Just(0x10),
            Just(0x18),
            Just(0x11),
            Just(0x04),
            Just(0x14),
            any::<u8>()
        ],
        prop_oneof![-3i32..3, -100_000i32..100_000, any::<i32>()],
        prop_oneof![-3i32..3, -100_000i32..100_000, any::<i32>()],
        any::<u16>(),
        prop_oneof![Just(0u32), 1u32..2000],
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(
            |(reply, flags, seq_delta, ack_delta, window, len, opts)| Step {
                reply,
                flags,
                seq_delta,
                ack_delta,
                window,
                len,
                opts,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn invert_is_an_involution(t in tuple()) {
        prop_assert_eq!(t.invert().invert(), t);
        prop_assert_eq!(t.invert().src, t.dst);
        prop_assert_eq!(t.invert().dst, t.src);
    }

    #[test]
    fn hash_depends_on_tuple_and_key_only(t in tuple(), key in any::<[u8; 16]>(), buckets in 1u32..) {
        let h = t.hash(&key);
        prop_assert_eq!(h, t.hash(&key));
        let copy = t;
        prop_assert_eq!(h, copy.hash(&key));
        let (input, len) = t.hash_input();
        prop_assert_eq!(h, siphash13(&key, &input[..len]));
        prop_assert_eq!(len, if t.family == Family::Ipv4 { 16 } else { 40 });
        prop_assert!(bucket_index(h, buckets) < buckets);
    }

    #[test]
    fn hash_input_tells_tuples_apart(a in tuple(), b in tuple()) {
        // Nothing of a tuple is left out of what is hashed.
        prop_assert_eq!(a == b, a.hash_input() == b.hash_input());
        let t = Tuple { proto: a.proto ^ 1, ..a };
        prop_assert_ne!(t.hash_input(), a.hash_input());
    }

    #[test]
    fn encoding_round_trips(a in tuple()) {
        prop_assert_eq!(Tuple::from_bytes(&a.to_bytes()), Some(a));
    }

    #[test]
    fn encoding_is_injective(a in tuple(), b in tuple()) {
        prop_assert_eq!(a == b, a.to_bytes() == b.to_bytes());
    }

    #[test]
    fn packet_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        if let Ok(facts) = packet::parse(&bytes) {
            let c = classify(&facts, &bytes);
            if let Classified::Flow(t) = c {
                prop_assert_eq!(Tuple::from_facts(&facts, &bytes), Some(t));
            }
            let _ = TcpSegment::from_packet(&facts, &bytes);
        }
        for f in [Family::Ipv4, Family::Ipv6] {
            if let Some(inner) = icmp_error_inner(f, &bytes) {
                prop_assert_eq!(inner.lookup, inner.quoted.invert());
                prop_assert_eq!(inner.quoted.family, f);
            }
        }
        let _ = TcpSegment::parse(&bytes, 0);
    }

    #[test]
    fn ipv4_header_prefix_payloads_never_panic(
        ihl in 5u8..16,
        proto in prop_oneof![Just(IPPROTO_TCP), Just(IPPROTO_UDP), Just(IPPROTO_ICMP), any::<u8>()],
        rest in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        // Valid-looking quoted IPv4 headers get further into the parser.
        let mut q = vec![0x40 | ihl, 0, 0, 200, 0, 0, 0, 0, 64, proto, 0, 0];
        q.extend_from_slice(&rest);
        let _ = icmp_error_inner(Family::Ipv4, &q);
    }

    #[test]
    fn tcp_tracker_never_panics_on_random_segments(
        segs in proptest::collection::vec(raw_seg(), 1..40),
        liberal in any::<bool>(),
        loose in any::<bool>(),
    ) {
        let cfg = TcpConfig { be_liberal: liberal, loose, ..TcpConfig::default() };
        let (_, first) = as_seg(&segs[0]);
        prop_assert_eq!(TcpConn::new(&first, cfg).is_ok(), TcpConn::may_create(&first, &cfg));
        if let Ok(mut conn) = TcpConn::new(&first, cfg) {
            conn.on_segment(Direction::Original, &first);
            for raw in &segs[1..] {
                let (dir, s) = as_seg(raw);
                let before = conn.state();
                let v = conn.on_segment(dir, &s);
                if !matches!(v.action, TcpAction::Accept) {
                    prop_assert_eq!(conn.state(), before);
                }
                prop_assert_eq!(v.old_state, before);
                prop_assert_eq!(v.new_state, conn.state());
            }
        }
    }

    #[test]
    fn tcp_tracker_near_valid_conversations(
        isn_c in any::<u32>(),
        isn_s in any::<u32>(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let t = Timeouts::default();
        let syn = TcpSegment { seq: isn_c, ack: 0, window: 64240, flags: 0x02, data_len: 0, options: &[2, 4, 5, 180, 4, 2, 1, 3, 3, 7] };
        let mut conn = TcpConn::new(&syn, TcpConfig::default()).unwrap();
        conn.on_segment(Direction::Original, &syn);
        // Positions the ends would be at if all went well.
        let mut next = [isn_c.wrapping_add(1), isn_s];
        for st in &steps {
            let d = usize::from(st.reply);
            let seq = next[d].wrapping_add(st.seq_delta as u32);
            let ack = next[1 - d].wrapping_add(st.ack_delta as u32);
            let s = TcpSegment {
                seq,
                ack,
                window: st.window,
                flags: st.flags,
                data_len: st.len,
                options: &st.opts,
            };
            let dir = if st.reply { Direction::Reply } else { Direction::Original };
            let before = conn.state();
            let v = conn.on_segment(dir, &s);
            if let Some(r) = v.refresh {
                let secs = t.tcp_refresh(&r);
                prop_assert!((1..=432_000).contains(&secs));
            }
            match v.action {
                TcpAction::Accept => {
                    next[d] = s.end();
                }
                _ => prop_assert_eq!(conn.state(), before),
            }
            if v.action == TcpAction::Reopen {
                break;
            }
        }
    }

    #[test]
    fn names_never_panic(p in ".{0,12}", s in proptest::option::of(".{0,16}"), list in ".{0,40}") {
        if let Ok(k) = TimeoutKey::parse(&p, s.as_deref()) {
            let mut t = Timeouts::default();
            prop_assert!(t.set(k, 1).is_ok());
        }
        if let Some(st) = CtState::parse_list(&list) {
            prop_assert!(st.is_valid());
        }
    }

    #[test]
    fn table_size_is_bounded_and_monotonic(a in any::<u64>(), b in any::<u64>()) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let (x, y) = (default_max_entries(lo), default_max_entries(hi));
        prop_assert!(x <= y);
        prop_assert!((1024..=262_144).contains(&x));
        prop_assert_eq!(x % 512, 0);
    }
}
