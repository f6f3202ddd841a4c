// SPDX-License-Identifier: GPL-2.0-only

//! Conntrack pieces other than TCP: tuples from real packet bytes, ICMP
//! echo and error handling, the keyed hash, `ct state` bits, timeouts,
//! UDP streams and the default table size.

use rnf_core::ct::{
    bucket_index, classify, default_buckets, default_max_entries, icmp_error_inner, siphash,
    siphash13, Classified, CtState, Direction, ProtoState, TcpTimeout, TimeoutError, TimeoutKey,
    Timeouts, Tuple, UdpState, MAX_TIMEOUT_SECS,
};
use rnf_core::ct_tcp::{TcpRefresh, TcpState};
use rnf_core::hooks::Family;
use rnf_core::packet::{self, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

const A4: [u8; 4] = [10, 0, 0, 1];
const B4: [u8; 4] = [93, 184, 216, 34];
const R4: [u8; 4] = [192, 0, 2, 254];

fn a6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[2] = 0x0d;
    a[3] = 0xb8;
    a[15] = last;
    a
}

fn addr16(a: [u8; 4]) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&a);
    x
}

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(l4);
    p
}

fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(l4);
    p
}

fn ports(sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let mut l4 = vec![0u8; len];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = ports(sport, dport, 8);
    u[4..6].copy_from_slice(&8u16.to_be_bytes());
    u
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = ports(sport, dport, 20);
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

fn icmp(ty: u8, code: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn tuple_of(pkt: &[u8]) -> Tuple {
    let facts = packet::parse(pkt).unwrap();
    match classify(&facts, pkt) {
        Classified::Flow(t) => {
            assert_eq!(Tuple::from_facts(&facts, pkt), Some(t));
            t
        }
        other => panic!("not a flow: {other:?}"),
    }
}

#[test]
fn udp_tuple_and_reply() {
    let out = tuple_of(&ipv4(IPPROTO_UDP, A4, B4, &udp(40000, 53)));
    assert_eq!(out.family, Family::Ipv4);
    assert_eq!(out.proto, IPPROTO_UDP);
    assert_eq!((out.src, out.dst), (addr16(A4), addr16(B4)));
    assert_eq!(
        (out.src_port_or_icmp_id, out.dst_port_or_icmp_type_code),
        (40000, 53)
    );
    let back = tuple_of(&ipv4(IPPROTO_UDP, B4, A4, &udp(53, 40000)));
    assert_eq!(back, out.invert());
    assert_eq!(back.invert(), out);
}

#[test]
fn tcp_tuple_ipv6() {
    let t = tuple_of(&ipv6(IPPROTO_TCP, a6(1), a6(2), &tcp(50000, 443, 0x02)));
    assert_eq!((t.src, t.dst), (a6(1), a6(2)));
    assert_eq!(
        (t.src_port_or_icmp_id, t.dst_port_or_icmp_type_code),
        (50000, 443)
    );
    let r = tuple_of(&ipv6(IPPROTO_TCP, a6(2), a6(1), &tcp(443, 50000, 0x12)));
    assert_eq!(r, t.invert());
}

#[test]
fn icmp_echo_reply_inverts_to_request() {
    let req = tuple_of(&ipv4(IPPROTO_ICMP, A4, B4, &icmp(8, 0, 0x1234, 1, b"ping")));
    assert_eq!(req.src_port_or_icmp_id, 0x1234);
    assert_eq!(req.dst_port_or_icmp_type_code, 8 << 8);
    assert_eq!(req.icmp_type(), Some(8));
    let rep = tuple_of(&ipv4(IPPROTO_ICMP, B4, A4, &icmp(0, 0, 0x1234, 1, b"ping")));
    assert_eq!(rep, req.invert());
    assert_eq!(rep.invert(), req);
    // Another identifier is another flow.
    let other = tuple_of(&ipv4(IPPROTO_ICMP, B4, A4, &icmp(0, 0, 0x1235, 1, b"")));
    assert_ne!(other, req.invert());
}

#[test]
fn icmpv6_echo_reply_inverts_to_request() {
    let req = tuple_of(&ipv6(
        IPPROTO_ICMPV6,
        a6(1),
        a6(2),
        &icmp(128, 0, 7, 1, b""),
    ));
    let rep = tuple_of(&ipv6(
        IPPROTO_ICMPV6,
        a6(2),
        a6(1),
        &icmp(129, 0, 7, 1, b""),
    ));
    assert_eq!(rep, req.invert());
    assert_eq!(req.icmp_type(), Some(128));
}

#[test]
fn icmp_types_that_are_not_tracked() {
    // Router advertisement (IPv4 type 9): no reply type, cannot be tracked.
    let p = ipv4(IPPROTO_ICMP, A4, B4, &icmp(9, 0, 0, 0, b""));
    let f = packet::parse(&p).unwrap();
    assert!(matches!(classify(&f, &p), Classified::Invalid(_)));
    // ICMPv6 neighbour solicitation and MLD: untracked, as Linux does.
    for ty in [133, 134, 135, 136, 130, 143] {
        let p = ipv6(IPPROTO_ICMPV6, a6(1), a6(2), &icmp(ty, 0, 0, 0, b""));
        let f = packet::parse(&p).unwrap();
        assert_eq!(classify(&f, &p), Classified::Untracked, "type {ty}");
    }
    // Errors go to the error handler.
    let p = ipv4(IPPROTO_ICMP, R4, A4, &icmp(11, 0, 0, 0, b""));
    let f = packet::parse(&p).unwrap();
    assert_eq!(classify(&f, &p), Classified::IcmpError);
}

#[test]
fn other_protocols_have_a_portless_tuple() {
    let t = tuple_of(&ipv4(IPPROTO_GRE, A4, B4, &[0u8; 8]));
    assert_eq!(
        (t.src_port_or_icmp_id, t.dst_port_or_icmp_type_code),
        (0, 0)
    );
    assert_eq!(ProtoState::initial(&t), ProtoState::Generic);
}

#[test]
fn truncated_transport_is_invalid() {
    let p = ipv4(IPPROTO_UDP, A4, B4, &[0, 53, 0]);
    let f = packet::parse(&p).unwrap();
    assert!(matches!(classify(&f, &p), Classified::Invalid(_)));
    assert_eq!(Tuple::from_facts(&f, &p), None);
}

/// An ICMP error from router R about `inner` (the packet that caused it).
fn icmp4_error(ty: u8, code: u8, to: [u8; 4], inner: &[u8]) -> Vec<u8> {
    ipv4(IPPROTO_ICMP, R4, to, &icmp(ty, code, 0, 0, inner))
}

fn related_flow(err: &[u8]) -> (rnf_core::ct::IcmpErrorInner, [u8; 16]) {
    let facts = packet::parse(err).unwrap();
    assert_eq!(classify(&facts, err), Classified::IcmpError);
    let payload = &err[facts.payload_offset.unwrap()..];
    (icmp_error_inner(facts.family, payload).unwrap(), facts.dst)
}

#[test]
fn icmp4_port_unreachable_for_udp_flow() {
    // A sends to B:53; B answers port unreachable quoting the IP header and
    // the 8 bytes of UDP header.
    let orig_pkt = ipv4(IPPROTO_UDP, A4, B4, &udp(40000, 53));
    let flow = tuple_of(&orig_pkt);
    let err = ipv4(IPPROTO_ICMP, B4, A4, &icmp(3, 3, 0, 0, &orig_pkt[..28]));
    let (inner, outer_dst) = related_flow(&err);
    assert_eq!(inner.quoted, flow);
    // The error travels back to A: it is found as the flow's reply tuple.
    assert_eq!(inner.lookup, flow.invert());
    assert!(inner.outer_dst_matches(&outer_dst));
    assert!(!inner.outer_dst_matches(&addr16(R4)));
}

#[test]
fn icmp4_time_exceeded_for_tcp_quotes_only_8_bytes() {
    let syn = ipv4(IPPROTO_TCP, A4, B4, &tcp(33000, 22, 0x02));
    let flow = tuple_of(&syn);
    // Routers quote the IP header plus 8 bytes: the TCP ports and sequence
    // number, not the whole header.
    let err = icmp4_error(11, 0, A4, &syn[..28]);
    let (inner, dst) = related_flow(&err);
    assert_eq!(inner.quoted, flow);
    assert_eq!(inner.lookup, flow.invert());
    assert!(inner.outer_dst_matches(&dst));
}

#[test]
fn icmp4_error_about_a_reply_is_found_in_original_direction() {
    // B's reply to A hits a problem on the way; the router tells B. The
    // quoted packet is B->A, its inversion A->B: the flow's original tuple.
    let flow = tuple_of(&ipv4(IPPROTO_UDP, A4, B4, &udp(40000, 53)));
    let reply = ipv4(IPPROTO_UDP, B4, A4, &udp(53, 40000));
    let err = icmp4_error(3, 1, B4, &reply[..28]);
    let (inner, dst) = related_flow(&err);
    assert_eq!(inner.lookup, flow);
    assert!(inner.outer_dst_matches(&dst));
}

#[test]
fn icmp4_error_quoting_echo_request() {
    let ping = ipv4(IPPROTO_ICMP, A4, B4, &icmp(8, 0, 0xbeef, 3, b"abcdefgh"));
    let flow = tuple_of(&ping);
    let err = icmp4_error(11, 0, A4, &ping[..28]);
    let (inner, _) = related_flow(&err);
    assert_eq!(inner.quoted, flow);
    assert_eq!(inner.lookup, flow.invert(), "the echo reply tuple");
}

#[test]
fn icmp4_error_quoting_an_error_or_garbage_is_refused() {
    let inner_err = ipv4(IPPROTO_ICMP, A4, B4, &icmp(3, 3, 0, 0, &[0u8; 28]));
    assert_eq!(icmp_error_inner(Family::Ipv4, &inner_err[..28]), None);
    // Cut inside the quoted ports.
    let orig = ipv4(IPPROTO_UDP, A4, B4, &udp(1, 2));
    assert_eq!(icmp_error_inner(Family::Ipv4, &orig[..22]), None);
    // IPv6 quoted in an ICMPv4 error.
    let v6 = ipv6(IPPROTO_UDP, a6(1), a6(2), &udp(1, 2));
    assert_eq!(icmp_error_inner(Family::Ipv4, &v6), None);
    assert_eq!(icmp_error_inner(Family::Ipv4, &[]), None);
    // A later fragment has no ports.
    let mut frag = orig.clone();
    frag[6] = 0x00;
    frag[7] = 0x10;
    assert_eq!(icmp_error_inner(Family::Ipv4, &frag), None);
}

#[test]
fn icmpv6_packet_too_big_for_tcp_flow() {
    let seg = ipv6(IPPROTO_TCP, a6(1), a6(2), &tcp(51000, 443, 0x18));
    let flow = tuple_of(&seg);
    // ICMPv6 errors quote as much as fits in the minimum MTU; here the
    // IPv6 header and 8 bytes of TCP. Type 2 carries the MTU in bytes 4-7.
    let mut body = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    body.extend_from_slice(&seg[..48]);
    let err = ipv6(IPPROTO_ICMPV6, a6(9), a6(1), &body);
    let (inner, dst) = related_flow(&err);
    assert_eq!(inner.quoted, flow);
    assert_eq!(inner.lookup, flow.invert());
    assert!(inner.outer_dst_matches(&dst));
}

#[test]
fn icmpv6_error_with_extension_header_in_quote() {
    // The quoted packet has a destination options header before UDP.
    let mut l4 = vec![IPPROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
    l4.extend_from_slice(&udp(5353, 5353));
    let quoted = ipv6(60, a6(1), a6(2), &l4);
    let flow = tuple_of(&quoted);
    let err = ipv6(IPPROTO_ICMPV6, a6(2), a6(1), &icmp(1, 4, 0, 0, &quoted));
    let (inner, _) = related_flow(&err);
    assert_eq!(inner.quoted, flow);
    assert_eq!(inner.quoted.proto, IPPROTO_UDP);
}

#[test]
fn siphash_matches_reference_vectors() {
    let key: [u8; 16] = core::array::from_fn(|i| i as u8);
    // SipHash-2-4 reference (Aumasson & Bernstein), empty message and the
    // 15-byte message 00..0e.
    assert_eq!(siphash(2, 4, &key, &[]), 0x726f_db47_dd0e_0e31);
    let msg: Vec<u8> = (0..15).collect();
    assert_eq!(siphash(2, 4, &key, &msg), 0xa129_ca61_49be_45e5);
    // And against std's SipHasher (2-4) on messages of every length up to
    // 64.
    let k0 = u64::from_le_bytes(key[..8].try_into().unwrap());
    let k1 = u64::from_le_bytes(key[8..].try_into().unwrap());
    for len in 0..64 {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
        std::hash::Hasher::write(&mut h, &msg);
        assert_eq!(
            siphash(2, 4, &key, &msg),
            std::hash::Hasher::finish(&h),
            "len {len}"
        );
    }
    assert_eq!(siphash13(&key, b"abc"), siphash(1, 3, &key, b"abc"));
    assert_ne!(siphash13(&key, b"abc"), siphash(2, 4, &key, b"abc"));
}

#[test]
fn tuple_hash_is_keyed_and_stable() {
    let t = tuple_of(&ipv4(IPPROTO_UDP, A4, B4, &udp(40000, 53)));
    let k1 = [7u8; 16];
    let mut k2 = k1;
    k2[15] ^= 1;
    assert_eq!(t.hash(&k1), t.hash(&k1));
    assert_ne!(t.hash(&k1), t.hash(&k2));
    assert_ne!(t.hash(&k1), t.invert().hash(&k1));
    // The canonical encoding, and so the hash, is fixed: a change here
    // would make kernel and rnfctl disagree.
    let b = t.to_bytes();
    assert_eq!(b[0], 2);
    assert_eq!(b[1], IPPROTO_UDP);
    assert_eq!(&b[2..6], &A4);
    assert_eq!(&b[18..22], &B4);
    assert_eq!(&b[34..38], &[0x9c, 0x40, 0, 53]);
    // The hash reads the addresses and the rest as words (IPv4: 16 bytes).
    let (input, len) = t.hash_input();
    assert_eq!(len, 16);
    assert_eq!(&input[..8], &[A4, B4].concat()[..]);
    assert_eq!(&input[8..16], &[2, IPPROTO_UDP, 0x40, 0x9c, 53, 0, 0, 0]);
    assert_eq!(t.hash(&k1), siphash13(&k1, &input[..len]));
    assert_ne!(t.hash(&k1), siphash13(&k1, &b));
    for buckets in [1u32, 2, 1000, 262_144] {
        assert!(bucket_index(t.hash(&k1), buckets) < buckets);
    }
    assert_eq!(bucket_index(u64::MAX, 0), 0);
}

#[test]
fn ct_state_bits_and_names() {
    assert_eq!(CtState::INVALID.0, 1);
    assert_eq!(CtState::ESTABLISHED.0, 2);
    assert_eq!(CtState::RELATED.0, 4);
    assert_eq!(CtState::NEW.0, 8);
    assert_eq!(CtState::UNTRACKED.0, 64);
    let s = CtState::parse_list("established,related").unwrap();
    assert!(s.intersects(CtState::ESTABLISHED) && s.intersects(CtState::RELATED));
    assert!(!s.intersects(CtState::NEW));
    assert_eq!(s.names().collect::<Vec<_>>(), ["established", "related"]);
    assert!(s.is_valid());
    assert_eq!(CtState::parse_list("new,bogus"), None);
    assert_eq!(CtState::parse_list(""), None);
    assert!(!CtState(0).is_valid());
    assert!(!CtState(0x80).is_valid());
    assert_eq!(
        CtState::for_packet(Direction::Original, false),
        CtState::NEW
    );
    assert_eq!(
        CtState::for_packet(Direction::Original, true),
        CtState::ESTABLISHED
    );
    assert_eq!(
        CtState::for_packet(Direction::Reply, false),
        CtState::ESTABLISHED
    );
}

#[test]
fn linux_default_timeouts_exactly() {
    let t = Timeouts::default();
    let tcp = |s| t.timeout_for(&ProtoState::Tcp(s));
    assert_eq!(tcp(TcpState::SynSent), 120);
    assert_eq!(tcp(TcpState::SynRecv), 60);
    assert_eq!(tcp(TcpState::Established), 432_000);
    assert_eq!(tcp(TcpState::FinWait), 120);
    assert_eq!(tcp(TcpState::CloseWait), 60);
    assert_eq!(tcp(TcpState::LastAck), 30);
    assert_eq!(tcp(TcpState::TimeWait), 120);
    assert_eq!(tcp(TcpState::Close), 10);
    assert_eq!(tcp(TcpState::SynSent2), 120);
    assert_eq!(t.tcp_slot(TcpTimeout::Retrans), 300);
    assert_eq!(t.tcp_slot(TcpTimeout::Unacknowledged), 300);
    let udp = |replied, assured| t.timeout_for(&ProtoState::Udp { replied, assured });
    assert_eq!(udp(false, false), 30);
    assert_eq!(udp(true, false), 30);
    assert_eq!(udp(true, true), 120);
    assert_eq!(t.timeout_for(&ProtoState::Icmp), 30);
    assert_eq!(t.timeout_for(&ProtoState::Generic), 600);
}

#[test]
fn tcp_refresh_order() {
    let t = Timeouts::default();
    let base = TcpRefresh {
        state: TcpState::Established,
        retrans_exceeded: false,
        rst: false,
        data_unacknowledged: false,
        zero_window: false,
        cap_unacknowledged: false,
    };
    assert_eq!(t.tcp_refresh(&base), 432_000);
    let with = |f: fn(&mut TcpRefresh)| {
        let mut r = base;
        f(&mut r);
        t.tcp_refresh(&r)
    };
    assert_eq!(with(|r| r.retrans_exceeded = true), 300);
    assert_eq!(with(|r| r.rst = true), 10);
    assert_eq!(with(|r| r.data_unacknowledged = true), 300);
    assert_eq!(with(|r| r.zero_window = true), 300);
    assert_eq!(with(|r| r.cap_unacknowledged = true), 300);
    // Shorter states are not lengthened by the retrans/unack slots.
    assert_eq!(
        with(|r| {
            r.state = TcpState::LastAck;
            r.data_unacknowledged = true;
        }),
        30
    );
}

#[test]
fn timeouts_set_by_name_with_validation() {
    let mut t = Timeouts::default();
    let k = TimeoutKey::parse("tcp", Some("established")).unwrap();
    assert_eq!(k, TimeoutKey::Tcp(TcpTimeout::Established));
    t.set(k, 3600).unwrap();
    assert_eq!(t.timeout_for(&ProtoState::Tcp(TcpState::Established)), 3600);
    assert_eq!(
        TimeoutKey::parse("TCP", Some("syn-sent")),
        Ok(TimeoutKey::Tcp(TcpTimeout::SynSent))
    );
    assert_eq!(
        TimeoutKey::parse("udp", Some("unreplied")),
        Ok(TimeoutKey::UdpUnreplied)
    );
    assert_eq!(
        TimeoutKey::parse("udp", Some("replied")),
        Ok(TimeoutKey::UdpReplied)
    );
    assert_eq!(
        TimeoutKey::parse("udp", Some("stream")),
        Ok(TimeoutKey::UdpReplied)
    );
    assert_eq!(TimeoutKey::parse("icmp", None), Ok(TimeoutKey::Icmp));
    assert_eq!(TimeoutKey::parse("icmpv6", None), Ok(TimeoutKey::Icmp));
    assert_eq!(TimeoutKey::parse("generic", None), Ok(TimeoutKey::Generic));
    assert_eq!(
        TimeoutKey::parse("sctp", None),
        Err(TimeoutError::UnknownProtocol)
    );
    assert_eq!(
        TimeoutKey::parse("tcp", None),
        Err(TimeoutError::UnknownState)
    );
    assert_eq!(
        TimeoutKey::parse("tcp", Some("listen")),
        Err(TimeoutError::UnknownState)
    );
    assert_eq!(
        TimeoutKey::parse("icmp", Some("x")),
        Err(TimeoutError::UnknownState)
    );
    assert_eq!(t.set(TimeoutKey::Icmp, 0), Err(TimeoutError::OutOfRange));
    assert_eq!(
        t.set(TimeoutKey::Icmp, MAX_TIMEOUT_SECS + 1),
        Err(TimeoutError::OutOfRange)
    );
    t.set(TimeoutKey::Icmp, MAX_TIMEOUT_SECS).unwrap();
    assert_eq!(t.get(TimeoutKey::Icmp), MAX_TIMEOUT_SECS);
    // Every key's names parse back to it, and set/get agree.
    for key in TimeoutKey::ALL {
        let (p, s) = key.names();
        let state = if s.is_empty() { None } else { Some(s) };
        assert_eq!(TimeoutKey::parse(p, state), Ok(key));
        let mut t = Timeouts::default();
        t.set(key, 77).unwrap();
        assert_eq!(t.get(key), 77);
    }
}

#[test]
fn udp_stream_after_two_seconds() {
    let t = Timeouts::default();
    let mut u = UdpState::default();
    // Query and answer within 2 s: unreplied timeout throughout.
    assert_eq!(u.on_packet(Direction::Original, 0, &t).timeout_secs, 30);
    let up = u.on_packet(Direction::Reply, 40, &t);
    assert_eq!((up.timeout_secs, up.became_assured), (30, false));
    assert!(u.replied && !u.assured);
    let up = u.on_packet(Direction::Original, 1500, &t);
    assert_eq!((up.timeout_secs, up.became_assured), (30, false));
    // Still going after 2 s: a stream.
    let up = u.on_packet(Direction::Original, 2500, &t);
    assert_eq!((up.timeout_secs, up.became_assured), (120, true));
    let up = u.on_packet(Direction::Reply, 3000, &t);
    assert_eq!((up.timeout_secs, up.became_assured), (120, false));
    assert_eq!(
        u.proto_state(),
        ProtoState::Udp {
            replied: true,
            assured: true
        }
    );
    // One-way traffic never becomes a stream.
    let mut one = UdpState::default();
    for ms in [0, 5000, 60_000] {
        assert_eq!(one.on_packet(Direction::Original, ms, &t).timeout_secs, 30);
    }
    assert!(!one.assured);
}

#[test]
fn default_table_size_from_memory() {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    assert_eq!(default_max_entries(0), 1024);
    assert_eq!(default_max_entries(64 * MIB), 1024);
    assert_eq!(default_max_entries(128 * MIB), 1024);
    assert_eq!(default_max_entries(512 * MIB), 4096);
    // 600 MiB: 4800 heads, rounded up to a page of heads (512).
    assert_eq!(default_max_entries(600 * MIB), 5120);
    assert_eq!(default_max_entries(GIB), 8192);
    assert_eq!(default_max_entries(GIB + 4096), 65_536);
    assert_eq!(default_max_entries(4 * GIB), 65_536);
    assert_eq!(default_max_entries(4 * GIB + 4096), 262_144);
    assert_eq!(default_max_entries(256 * GIB), 262_144);
    assert_eq!(default_max_entries(u64::MAX), 262_144);
    assert_eq!(default_buckets(16 * GIB), default_max_entries(16 * GIB));
}
