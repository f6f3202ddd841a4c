// SPDX-License-Identifier: GPL-2.0-only

//! Connection tracking without the kernel: what identifies a flow, what
//! state a flow is in, how long it lives, and how the flow table hashes it.
//!
//! The kernel module owns the flow table (RCU, per-bucket locks, GC); this
//! module gives it the pieces that need no kernel, modelled on Linux
//! `nf_conntrack` (6.12):
//!
//! - [`Tuple`]: the 5-tuple of one direction of a flow
//!   (`struct nf_conntrack_tuple`), built from a packet by
//!   [`Tuple::from_facts`], turned around by [`Tuple::invert`], and hashed
//!   by [`Tuple::hash`] with a per-boot key (SipHash-1-3; Linux's
//!   `hash_conntrack_raw()` keys `siphash()` with `nf_conntrack_hash_rnd`).
//! - [`classify`]: whether a packet belongs to a flow, is an ICMP error
//!   about one ([`icmp_error_inner`]), is never tracked (ICMPv6 neighbour
//!   discovery and MLD), or is invalid.
//! - [`ProtoState`] and [`UdpState`]: per-protocol state; TCP's is in
//!   [`crate::ct_tcp`].
//! - [`CtState`]: the `ct state` bitmask rules match on, with nftables'
//!   bit values.
//! - [`Timeouts`]: per-(protocol, state) lifetimes with Linux's defaults.
//! - [`default_max_entries`]: the default table limit, sized from memory
//!   as `nf_conntrack_init_start()` does.

use crate::ct_tcp::{TcpRefresh, TcpState};
use crate::hooks::Family;
use crate::packet::{
    self, PacketFacts, IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP,
    IPPROTO_UDP, IPPROTO_UDPLITE, L4,
};

/// Direction of a packet relative to the flow it belongs to
/// (`enum ip_conntrack_dir`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// The direction of the packet that created the flow
    /// (`IP_CT_DIR_ORIGINAL`).
    Original = 0,
    /// The opposite direction (`IP_CT_DIR_REPLY`).
    Reply = 1,
}

impl Direction {
    /// 0 for [`Original`](Self::Original), 1 for [`Reply`](Self::Reply):
    /// an index into per-direction arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The direction of [`index`](Self::index) `i` (any non-zero `i` is
    /// [`Reply`](Self::Reply)).
    pub const fn from_index(i: usize) -> Self {
        if i == 0 {
            Self::Original
        } else {
            Self::Reply
        }
    }

    /// The other direction.
    pub const fn opposite(self) -> Self {
        match self {
            Self::Original => Self::Reply,
            Self::Reply => Self::Original,
        }
    }
}

/// ICMP (IPv4) message types used by tracking.
pub mod icmp_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (error).
    pub const DEST_UNREACH: u8 = 3;
    /// Source quench (error, deprecated).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (error).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO: u8 = 8;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (error).
    pub const PARAMETER_PROB: u8 = 12;
    /// Timestamp request.
    pub const TIMESTAMP: u8 = 13;
    /// Timestamp reply.
    pub const TIMESTAMP_REPLY: u8 = 14;
    /// Information request.
    pub const INFO_REQUEST: u8 = 15;
    /// Information reply.
    pub const INFO_REPLY: u8 = 16;
    /// Address mask request.
    pub const ADDRESS: u8 = 17;
    /// Address mask reply.
    pub const ADDRESS_REPLY: u8 = 18;
}

/// ICMPv6 message types used by tracking.
pub mod icmpv6_type {
    /// Destination unreachable (error).
    pub const DEST_UNREACH: u8 = 1;
    /// Packet too big (error).
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem (error).
    pub const PARAM_PROB: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Multicast listener query.
    pub const MGM_QUERY: u8 = 130;
    /// Multicast listener report.
    pub const MGM_REPORT: u8 = 131;
    /// Multicast listener done.
    pub const MGM_REDUCTION: u8 = 132;
    /// Router solicitation.
    pub const ROUTER_SOLICITATION: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERTISEMENT: u8 = 134;
    /// Neighbour solicitation.
    pub const NEIGHBOUR_SOLICITATION: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
    /// Node information query.
    pub const NI_QUERY: u8 = 139;
    /// Node information reply.
    pub const NI_REPLY: u8 = 140;
    /// MLDv2 report.
    pub const MLD2_REPORT: u8 = 143;
}

/// The type of the answer to ICMP query type `ty`, or of the query that
/// ICMP reply type `ty` answers: the `invmap[]` of
/// `nf_conntrack_proto_icmp.c` / `nf_conntrack_proto_icmpv6.c`. `None` for
/// types that are neither.
pub const fn icmp_inverse_type(family: Family, ty: u8) -> Option<u8> {
    use icmp_type as t4;
    use icmpv6_type as t6;
    match family {
        Family::Ipv4 => match ty {
            t4::ECHO => Some(t4::ECHO_REPLY),
            t4::ECHO_REPLY => Some(t4::ECHO),
            t4::TIMESTAMP => Some(t4::TIMESTAMP_REPLY),
            t4::TIMESTAMP_REPLY => Some(t4::TIMESTAMP),
            t4::INFO_REQUEST => Some(t4::INFO_REPLY),
            t4::INFO_REPLY => Some(t4::INFO_REQUEST),
            t4::ADDRESS => Some(t4::ADDRESS_REPLY),
            t4::ADDRESS_REPLY => Some(t4::ADDRESS),
            _ => None,
        },
        Family::Ipv6 => match ty {
            t6::ECHO_REQUEST => Some(t6::ECHO_REPLY),
            t6::ECHO_REPLY => Some(t6::ECHO_REQUEST),
            t6::NI_QUERY => Some(t6::NI_REPLY),
            t6::NI_REPLY => Some(t6::NI_QUERY),
            _ => None,
        },
    }
}

/// Whether an ICMP message of type `ty` may create a flow: only queries
/// (`valid_new[]` in Linux). A reply without a flow is invalid.
pub const fn icmp_may_create(family: Family, ty: u8) -> bool {
    use icmp_type as t4;
    use icmpv6_type as t6;
    match family {
        Family::Ipv4 => matches!(
            ty,
            t4::ECHO | t4::TIMESTAMP | t4::INFO_REQUEST | t4::ADDRESS
        ),
        Family::Ipv6 => matches!(ty, t6::ECHO_REQUEST | t6::NI_QUERY),
    }
}

/// Whether ICMP type `ty` is an error that quotes the packet that caused
/// it. IPv4: `icmp_is_err()` (unreachable, source quench, redirect, time
/// exceeded, parameter problem). ICMPv6: every type below 128, as in
/// `icmpv6_error()`.
pub const fn icmp_is_error(family: Family, ty: u8) -> bool {
    use icmp_type as t4;
    match family {
        Family::Ipv4 => matches!(
            ty,
            t4::DEST_UNREACH
                | t4::SOURCE_QUENCH
                | t4::REDIRECT
                | t4::TIME_EXCEEDED
                | t4::PARAMETER_PROB
        ),
        Family::Ipv6 => ty < 128,
    }
}

/// Whether an ICMPv6 message is never tracked: MLD and neighbour
/// discovery, the `noct_valid_new[]` types for which Linux sets
/// `IP_CT_UNTRACKED`. Tracking them would fill the table with flows that
/// never see a reply and break address resolution under `ct state` rules.
pub const fn icmpv6_is_untracked(ty: u8) -> bool {
    use icmpv6_type as t6;
    matches!(
        ty,
        t6::MGM_QUERY
            | t6::MGM_REPORT
            | t6::MGM_REDUCTION
            | t6::ROUTER_SOLICITATION
            | t6::ROUTER_ADVERTISEMENT
            | t6::NEIGHBOUR_SOLICITATION
            | t6::NEIGHBOUR_ADVERTISEMENT
            | t6::MLD2_REPORT
    )
}

/// Whether protocol `proto` has 16-bit source and destination ports at the
/// start of its header, which then are part of the tuple.
pub const fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP
    )
}

/// Whether `proto` is the ICMP of `family` (ICMP for IPv4, ICMPv6 for
/// IPv6).
pub const fn is_icmp(family: Family, proto: u8) -> bool {
    matches!(
        (family, proto),
        (Family::Ipv4, IPPROTO_ICMP) | (Family::Ipv6, IPPROTO_ICMPV6)
    )
}

/// One direction of a flow: what `struct nf_conntrack_tuple` holds for
/// zone 0.
///
/// For protocols with ports ([`has_ports`]) the two 16-bit fields are the
/// source and destination port. For ICMP and ICMPv6 they are the
/// identifier and `type << 8 | code`, like Linux's `src.u.icmp.id` and
/// `dst.u.icmp.{type,code}`. For other protocols they are zero (Linux's
/// generic tracker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    /// Address family.
    pub family: Family,
    /// Transport protocol number.
    pub proto: u8,
    /// Source address (IPv4 in the first 4 bytes, the rest zero).
    pub src: [u8; 16],
    /// Destination address, laid out like `src`.
    pub dst: [u8; 16],
    /// Source port, or ICMP identifier.
    pub src_port_or_icmp_id: u16,
    /// Destination port, or ICMP `type << 8 | code`.
    pub dst_port_or_icmp_type_code: u16,
}

/// Length of [`Tuple::to_bytes`]' canonical encoding.
pub const TUPLE_BYTES: usize = 38;

/// A 128-bit hash key, chosen at random once per boot (Linux's
/// `nf_conntrack_hash_rnd`), so that remote hosts cannot predict which
/// bucket a tuple lands in and aim a flood of flows at one bucket.
pub type HashKey = [u8; 16];

/// A tuple as [`Tuple::to_bytes`] encodes it, read field by field in
/// place: the flow table keeps its tuples packed, and a reader of one field
/// (NAT, on every packet) need not decode the rest.
#[derive(Clone, Copy)]
pub struct TupleBytes<'a>(pub &'a [u8; TUPLE_BYTES]);

impl TupleBytes<'_> {
    /// The family; `None` for an unknown one.
    #[inline(always)]
    pub fn family(&self) -> Option<Family> {
        match self.0[0] {
            2 => Some(Family::Ipv4),
            10 => Some(Family::Ipv6),
            _ => None,
        }
    }

    /// The protocol.
    #[inline(always)]
    pub fn proto(&self) -> u8 {
        self.0[1]
    }

    /// The source address.
    #[inline(always)]
    pub fn src(&self) -> [u8; 16] {
        self.addr(2)
    }

    /// The destination address.
    #[inline(always)]
    pub fn dst(&self) -> [u8; 16] {
        self.addr(18)
    }

    /// The source port or ICMP id.
    #[inline(always)]
    pub fn src_port_or_icmp_id(&self) -> u16 {
        self.port(34)
    }

    /// The destination port or ICMP type and code.
    #[inline(always)]
    pub fn dst_port_or_icmp_type_code(&self) -> u16 {
        self.port(36)
    }

    fn addr(&self, at: usize) -> [u8; 16] {
        self.0
            .get(at..at + 16)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 16])
    }

    fn port(&self, at: usize) -> u16 {
        self.0
            .get(at..at + 2)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u16::from_be_bytes)
    }
}

impl Tuple {
    /// The tuple of the packet described by `facts`, whose bytes (from the
    /// IP header on, as given to [`packet::parse`]) are `pkt`.
    ///
    /// `pkt` is needed for ICMP only: the identifier is not part of
    /// [`PacketFacts`]. `None` when the packet has no usable tuple: a
    /// fragment after the first, a truncated transport header, or ICMP
    /// with less than the 8-byte header. [`classify`] says, beyond the
    /// tuple, whether the packet may be tracked at all.
    #[inline]
    pub fn from_facts(facts: &PacketFacts, pkt: &[u8]) -> Option<Tuple> {
        if facts.is_later_fragment() {
            return None;
        }
        let (a, b) = match facts.l4 {
            L4::Ports { sport, dport } | L4::Tcp { sport, dport, .. } => (sport, dport),
            L4::Icmp { ty, code } => {
                let id = be16(pkt, facts.l4_offset.checked_add(4)?)?;
                (id, u16::from_be_bytes([ty, code]))
            }
            L4::Truncated => return None,
            L4::Absent => {
                if has_ports(facts.proto) || is_icmp(facts.family, facts.proto) {
                    return None;
                }
                (0, 0)
            }
        };
        Some(Tuple {
            family: facts.family,
            proto: facts.proto,
            src: facts.src,
            dst: facts.dst,
            src_port_or_icmp_id: a,
            dst_port_or_icmp_type_code: b,
        })
    }

    /// ICMP type, for an ICMP tuple.
    pub const fn icmp_type(&self) -> Option<u8> {
        if is_icmp(self.family, self.proto) {
            Some((self.dst_port_or_icmp_type_code >> 8) as u8)
        } else {
            None
        }
    }

    /// The tuple of the other direction of the same flow
    /// (`nf_ct_invert_tuple()`): addresses swapped; ports swapped; for ICMP
    /// the identifier kept and a query type turned into its reply type and
    /// back ([`icmp_inverse_type`]). An ICMP type without an inverse is kept
    /// as it is, so that `invert` is its own inverse on every tuple; such a
    /// tuple never names a tracked flow ([`classify`] refuses it).
    pub fn invert(&self) -> Tuple {
        let (a, b) = if is_icmp(self.family, self.proto) {
            let [ty, code] = self.dst_port_or_icmp_type_code.to_be_bytes();
            let ty = icmp_inverse_type(self.family, ty).unwrap_or(ty);
            (self.src_port_or_icmp_id, u16::from_be_bytes([ty, code]))
        } else {
            (self.dst_port_or_icmp_type_code, self.src_port_or_icmp_id)
        };
        Tuple {
            family: self.family,
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            src_port_or_icmp_id: a,
            dst_port_or_icmp_type_code: b,
        }
    }

    /// Canonical byte encoding: family (`NFPROTO_*`), protocol, source
    /// and destination address (16 bytes each), then the two 16-bit fields
    /// big-endian. It does not depend on the host's byte order or on
    /// struct layout, so the kernel and `rnfctl` hash a tuple alike.
    #[inline]
    pub fn to_bytes(&self) -> [u8; TUPLE_BYTES] {
        let mut out = [0u8; TUPLE_BYTES];
        // Constant ranges of a fixed-size array, written out: the compiler
        // drops the checks and copies words (this runs for every tracked
        // packet; a loop over the parts compiled to copies of a length it
        // could not see).
        let [f, p, ..] = &mut out;
        (*f, *p) = (self.family as u8, self.proto);
        if let Some(d) = out.get_mut(2..18) {
            d.copy_from_slice(&self.src);
        }
        if let Some(d) = out.get_mut(18..34) {
            d.copy_from_slice(&self.dst);
        }
        if let Some(d) = out.get_mut(34..36) {
            d.copy_from_slice(&self.src_port_or_icmp_id.to_be_bytes());
        }
        if let Some(d) = out.get_mut(36..38) {
            d.copy_from_slice(&self.dst_port_or_icmp_type_code.to_be_bytes());
        }
        out
    }

    /// The tuple [`to_bytes`](Self::to_bytes) encoded; `None` for an
    /// unknown family.
    pub fn from_bytes(b: &[u8; TUPLE_BYTES]) -> Option<Tuple> {
        let t = TupleBytes(b);
        Some(Tuple {
            family: t.family()?,
            proto: t.proto(),
            src: t.src(),
            dst: t.dst(),
            src_port_or_icmp_id: t.src_port_or_icmp_id(),
            dst_port_or_icmp_type_code: t.dst_port_or_icmp_type_code(),
        })
    }

    /// Keyed hash of the tuple for the flow table: SipHash-1-3 under `key`
    /// of [`hash_input`](Self::hash_input), the tuple as little-endian
    /// 64-bit words (two for IPv4, five for IPv6), hashed word by word
    /// without building the bytes. Linux's `hash_conntrack_raw()` likewise
    /// hashes the tuple with `siphash()` under a random per-boot key, so
    /// that remote hosts cannot make tuples collide.
    ///
    /// Each direction of a flow is hashed separately (the table holds a
    /// flow under both its original and its reply tuple). The result
    /// depends only on the tuple and the key, not on the host's byte order,
    /// so the kernel and `rnfctl` compute the same value.
    #[inline]
    pub fn hash(&self, key: &HashKey) -> u64 {
        let misc = self.hash_misc();
        match self.family {
            // An IPv4 address fills the first 4 bytes (the rest is zero):
            // both fit one word. (A word count of its own per family keeps
            // the two apart, as the length is hashed too.)
            Family::Ipv4 => {
                let w = u64::from(le32_of(&self.src)) | u64::from(le32_of(&self.dst)) << 32;
                siphash13_words(key, &[w, misc])
            }
            Family::Ipv6 => {
                let (s0, s1) = le64_pair(&self.src);
                let (d0, d1) = le64_pair(&self.dst);
                siphash13_words(key, &[s0, s1, d0, d1, misc])
            }
        }
    }

    /// What [`hash`](Self::hash) hashes, as bytes (`hash == siphash13(key,
    /// &input[..len])`): for IPv4 the source and destination address (4
    /// bytes each), for IPv6 both 16-byte addresses; then the family
    /// (`NFPROTO_*`), the protocol and the two 16-bit fields
    /// little-endian, padded with zeros to 8 bytes.
    pub fn hash_input(&self) -> ([u8; 40], usize) {
        let mut out = [0u8; 40];
        let words: &[u64] = match self.family {
            Family::Ipv4 => &[
                u64::from(le32_of(&self.src)) | u64::from(le32_of(&self.dst)) << 32,
                self.hash_misc(),
            ],
            Family::Ipv6 => {
                let (s0, s1) = le64_pair(&self.src);
                let (d0, d1) = le64_pair(&self.dst);
                &[s0, s1, d0, d1, self.hash_misc()]
            }
        };
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        (out, words.len() * 8)
    }

    /// The hash's last word: family, protocol, the two 16-bit fields.
    #[inline(always)]
    fn hash_misc(&self) -> u64 {
        u64::from(self.family as u8)
            | u64::from(self.proto) << 8
            | u64::from(self.src_port_or_icmp_id) << 16
            | u64::from(self.dst_port_or_icmp_type_code) << 32
    }
}

/// The first 4 bytes of an address, little-endian.
#[inline(always)]
fn le32_of(a: &[u8; 16]) -> u32 {
    let [b0, b1, b2, b3, ..] = *a;
    u32::from_le_bytes([b0, b1, b2, b3])
}

/// An address as two little-endian words.
#[inline(always)]
fn le64_pair(a: &[u8; 16]) -> (u64, u64) {
    let v = u128::from_le_bytes(*a);
    (v as u64, (v >> 64) as u64)
}

/// Bucket of `hash` in a table of `buckets` buckets, by multiplying rather
/// than dividing (Linux's `reciprocal_scale()` on the upper 32 bits).
/// Always below `buckets` (0 when `buckets` is 0).
pub const fn bucket_index(hash: u64, buckets: u32) -> u32 {
    (((hash >> 32) * buckets as u64) >> 32) as u32
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    match buf.get(at..at.checked_add(2)?)? {
        [a, b] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// SipHash state (four 64-bit words).
struct Sip([u64; 4]);

impl Sip {
    #[inline(always)]
    fn new(key: &HashKey) -> Self {
        let (k0, k1) = le64_pair(key);
        Sip([
            k0 ^ 0x736f_6d65_7073_6575,
            k1 ^ 0x646f_7261_6e64_6f6d,
            k0 ^ 0x6c79_6765_6e65_7261,
            k1 ^ 0x7465_6462_7974_6573,
        ])
    }

    #[inline(always)]
    fn round(&mut self) {
        let [v0, v1, v2, v3] = &mut self.0;
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }

    #[inline(always)]
    fn compress(&mut self, m: u64, rounds: usize) {
        self.0[3] ^= m;
        for _ in 0..rounds {
            self.round();
        }
        self.0[0] ^= m;
    }
}

/// Little-endian value of up to 8 bytes.
#[inline(always)]
fn le64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// SipHash with `c` compression and `d` finalisation rounds, keyed by
/// `key` (read as two little-endian 64-bit words, as in the reference
/// implementation). Inlined: with the message's length and the rounds
/// known where it is called (a tuple's 38 bytes, 1-3), it unrolls.
#[inline(always)]
pub fn siphash(c: usize, d: usize, key: &HashKey, msg: &[u8]) -> u64 {
    let mut s = Sip::new(key);
    // Whole 8-byte words, split off without an indexing or assertion
    // panic path (the kernel's objtool rejects those).
    let mut rest = msg;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        s.compress(u64::from_le_bytes(*word), c);
        rest = tail;
    }
    // The last word carries the length's low byte in its top byte.
    let last = le64(rest) | ((msg.len() as u64 & 0xff) << 56);
    s.compress(last, c);
    s.0[2] ^= 0xff;
    for _ in 0..d {
        s.round();
    }
    let [v0, v1, v2, v3] = s.0;
    v0 ^ v1 ^ v2 ^ v3
}

/// SipHash-1-3: the reduced-round variant that Rust's `HashMap` and
/// Linux's `hsiphash()` (on 64-bit) use for hash tables. Linux's conntrack
/// hashes with full `siphash()` (SipHash-2-4); 1-3 is cheaper per packet
/// and, with a secret per-boot key, still keeps remote hosts from choosing
/// colliding tuples, which is all a flow table needs.
#[inline(always)]
pub fn siphash13(key: &HashKey, msg: &[u8]) -> u64 {
    siphash(1, 3, key, msg)
}

/// [`siphash13`] of the little-endian bytes of `words`, a word at a time
/// (no byte buffer, no partial last word: the final block is the length
/// alone). Unrolled for each `N`.
#[inline(always)]
pub fn siphash13_words<const N: usize>(key: &HashKey, words: &[u64; N]) -> u64 {
    let mut s = Sip::new(key);
    for w in words {
        s.compress(*w, 1);
    }
    s.compress(((N * 8) as u64 & 0xff) << 56, 1);
    s.0[2] ^= 0xff;
    for _ in 0..3 {
        s.round();
    }
    let [v0, v1, v2, v3] = s.0;
    v0 ^ v1 ^ v2 ^ v3
}

/// What tracking does with a packet, decided from its headers alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classified {
    /// The packet belongs to the flow with this tuple (in the packet's own
    /// direction): look it up, and create it if the protocol allows.
    Flow(Tuple),
    /// An ICMP or ICMPv6 error: its payload quotes the packet it is about.
    /// Pass the ICMP payload to [`icmp_error_inner`]; if that finds a
    /// tracked flow the error is RELATED to it, otherwise it is INVALID
    /// (Linux's `nf_conntrack_inet_error()` returns `-NF_ACCEPT`).
    IcmpError,
    /// Never tracked (ICMPv6 neighbour discovery and MLD): `ct state
    /// untracked`.
    Untracked,
    /// Cannot be tracked: `ct state invalid`, with the reason.
    Invalid(&'static str),
}

/// Decides how tracking treats the packet described by `facts` (bytes in
/// `pkt`, from the IP header on).
///
/// Mirrors the order of `nf_conntrack_in()`: an ICMP error goes to the
/// error handler before any lookup; ICMPv6 ND/MLD is untracked; an ICMP
/// type that is neither a query nor a reply cannot be tracked
/// (`icmp_pkt_to_tuple` works but no flow can exist for it, as only
/// queries create one, so it ends up invalid). Fragments after the first
/// are invalid here: rnf reassembles before tracking, as `nf_defrag` does,
/// so one reaching the tracker has nothing to be tracked by.
#[inline]
pub fn classify(facts: &PacketFacts, pkt: &[u8]) -> Classified {
    if facts.is_later_fragment() {
        return Classified::Invalid("fragment not reassembled");
    }
    if let L4::Icmp { ty, .. } = facts.l4 {
        if icmp_is_error(facts.family, ty) {
            return Classified::IcmpError;
        }
        if facts.family == Family::Ipv6 && icmpv6_is_untracked(ty) {
            return Classified::Untracked;
        }
        if icmp_inverse_type(facts.family, ty).is_none() {
            return Classified::Invalid("icmp type is not trackable");
        }
    }
    match Tuple::from_facts(facts, pkt) {
        Some(t) => Classified::Flow(t),
        None => Classified::Invalid("truncated transport header"),
    }
}

/// What an ICMP error says about the flow it quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpErrorInner {
    /// The tuple of the quoted packet, as that packet travelled (the
    /// packet that caused the error).
    pub quoted: Tuple,
    /// The tuple to look up in the flow table: `quoted` inverted, i.e. the
    /// error seen as travelling back towards the quoted packet's sender.
    /// The direction it is found under is the error's direction, like
    /// `nf_conntrack_inet_error()`.
    pub lookup: Tuple,
}

impl IcmpErrorInner {
    /// Whether an error whose outer destination is `outer_dst` may be
    /// related to the flow found under [`lookup`](Self::lookup): the error
    /// must go to the flow's endpoint in that direction. Linux checks
    /// `ct->tuplehash[dir].tuple.dst.u3` against the outer destination so
    /// that a crafted error quoting someone else's flow is not let through
    /// to a third host.
    pub fn outer_dst_matches(&self, outer_dst: &[u8; 16]) -> bool {
        self.lookup.dst == *outer_dst
    }
}

/// Parses the quoted packet in an ICMP (`family` IPv4) or ICMPv6 (IPv6)
/// error. `payload` starts right after the 8-byte ICMP header, at the
/// quoted IP header.
///
/// Needs the quoted IP header (and for IPv6 its extension headers) and the
/// first 8 bytes of its transport header: all an IPv4 router must quote
/// (RFC 792); ports, or ICMP type, code and identifier, lie within them.
/// `None` when the quote is of another family, is a later fragment, is cut
/// short, or quotes ICMP that cannot be tracked (an error about an error,
/// or an ICMP type without a reply type: Linux's `nf_ct_invert_tuple()`
/// fails for those).
pub fn icmp_error_inner(family: Family, payload: &[u8]) -> Option<IcmpErrorInner> {
    let facts = packet::parse(payload).ok()?;
    if facts.family != family || facts.is_later_fragment() {
        return None;
    }
    let l4 = facts.l4_offset;
    let a = be16(payload, l4);
    let b = be16(payload, l4.checked_add(2)?);
    let (x, y) = if has_ports(facts.proto) {
        (a?, b?)
    } else if is_icmp(family, facts.proto) {
        let [ty, _] = a?.to_be_bytes();
        icmp_inverse_type(family, ty)?;
        (be16(payload, l4.checked_add(4)?)?, a?)
    } else {
        (0, 0)
    };
    let quoted = Tuple {
        family,
        proto: facts.proto,
        src: facts.src,
        dst: facts.dst,
        src_port_or_icmp_id: x,
        dst_port_or_icmp_type_code: y,
    };
    Some(IcmpErrorInner {
        quoted,
        lookup: quoted.invert(),
    })
}

/// Flow status bits (`ct status`, and the status of a listed flow), with
/// Linux's `IPS_*` values so that users of `conntrack -L` read the same
/// numbers.
pub mod status {
    /// Related to another flow's expectation (rnf has no helpers; never set).
    pub const EXPECTED: u32 = 1 << 0;
    /// A packet in the reply direction has been seen.
    pub const SEEN_REPLY: u32 = 1 << 1;
    /// Not dropped early when the table is full.
    pub const ASSURED: u32 = 1 << 2;
    /// In the flow table (past its first packet's last hook).
    pub const CONFIRMED: u32 = 1 << 3;
    /// The source is translated (SNAT, masquerade).
    pub const SRC_NAT: u32 = 1 << 4;
    /// The destination is translated (DNAT, redirect).
    pub const DST_NAT: u32 = 1 << 5;
    /// Names as `ct status` and `conntrack list` write them, with their bits.
    pub const NAMES: [(&str, u32); 6] = [
        ("expected", EXPECTED),
        ("seen-reply", SEEN_REPLY),
        ("assured", ASSURED),
        ("confirmed", CONFIRMED),
        ("snat", SRC_NAT),
        ("dnat", DST_NAT),
    ];
    /// All defined bits.
    pub const ALL: u32 = EXPECTED | SEEN_REPLY | ASSURED | CONFIRMED | SRC_NAT | DST_NAT;
}

/// The `ct state` of a packet, as a bitmask so that one match can accept
/// several (`ct state established,related`).
///
/// Bit values are nftables' (`NF_CT_STATE_*_BIT`, the same as xt_state's):
/// invalid 1, established 2, related 4, new 8, untracked 64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CtState(pub u8);

impl CtState {
    /// Not tracked because it could not be (`ct state invalid`).
    pub const INVALID: CtState = CtState(1);
    /// Part of a flow that has seen traffic both ways, or any reply.
    pub const ESTABLISHED: CtState = CtState(2);
    /// Related to a tracked flow (an ICMP error about it).
    pub const RELATED: CtState = CtState(4);
    /// Original direction of a flow that has not seen a reply yet.
    pub const NEW: CtState = CtState(8);
    /// Exempt from tracking (`notrack`, ICMPv6 ND).
    pub const UNTRACKED: CtState = CtState(64);
    /// All defined bits.
    pub const ALL: CtState = CtState(1 | 2 | 4 | 8 | 64);

    /// The names `ct state` accepts, with their bits, in printing order.
    pub const NAMES: [(&'static str, CtState); 5] = [
        ("new", Self::NEW),
        ("established", Self::ESTABLISHED),
        ("related", Self::RELATED),
        ("invalid", Self::INVALID),
        ("untracked", Self::UNTRACKED),
    ];

    /// The state of a tracked packet: a reply is ESTABLISHED
    /// (`IP_CT_ESTABLISHED_REPLY`), an original-direction packet is NEW
    /// until the flow has seen a reply (`IPS_SEEN_REPLY`), then ESTABLISHED.
    pub const fn for_packet(dir: Direction, seen_reply: bool) -> CtState {
        match (dir, seen_reply) {
            (Direction::Original, false) => Self::NEW,
            _ => Self::ESTABLISHED,
        }
    }

    /// The state named `name` (one of [`NAMES`](Self::NAMES)).
    pub fn from_name(name: &str) -> Option<CtState> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
    }

    /// Parses a comma-separated list of names, as `ct state` takes:
    /// `"new,established"`. Empty items and unknown names are errors.
    pub fn parse_list(list: &str) -> Option<CtState> {
        let mut acc = CtState(0);
        for item in list.split(',') {
            acc = acc.union(Self::from_name(item.trim())?);
        }
        Some(acc)
    }

    /// Both sets of states.
    pub const fn union(self, other: CtState) -> CtState {
        CtState(self.0 | other.0)
    }

    /// Whether any state of `other` is in `self`: a packet in state
    /// `other` matches a `ct state self` rule.
    pub const fn intersects(self, other: CtState) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether only defined bits are set and at least one is.
    pub const fn is_valid(self) -> bool {
        self.0 != 0 && self.0 & !Self::ALL.0 == 0
    }

    /// The names of the states in `self`, in [`NAMES`](Self::NAMES) order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(_, s)| self.intersects(*s))
            .map(|(n, _)| n)
    }
}

/// Per-protocol tracking state kept in a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoState {
    /// TCP: the state of the connection; the full tracker (windows) is
    /// [`crate::ct_tcp::TcpConn`].
    Tcp(TcpState),
    /// UDP and UDP-Lite; see [`UdpState`].
    Udp {
        /// A packet in the reply direction has been seen.
        replied: bool,
        /// Traffic both ways for over 2 seconds: a stream, kept for the
        /// longer "replied" timeout.
        assured: bool,
    },
    /// ICMP or ICMPv6 query/reply.
    Icmp,
    /// Any other protocol (Linux's generic tracker). SCTP and DCCP are
    /// tracked this way by rnf, by ports, without their state machines.
    Generic,
}

impl ProtoState {
    /// The state a new flow of `tuple`'s protocol starts in (TCP's is
    /// replaced by the tracker's state after its first segment).
    pub const fn initial(tuple: &Tuple) -> ProtoState {
        match tuple.proto {
            IPPROTO_TCP => ProtoState::Tcp(TcpState::None),
            IPPROTO_UDP | IPPROTO_UDPLITE => ProtoState::Udp {
                replied: false,
                assured: false,
            },
            p if is_icmp(tuple.family, p) => ProtoState::Icmp,
            _ => ProtoState::Generic,
        }
    }
}

/// UDP tracking, as `nf_conntrack_udp_packet()`: a flow is "unreplied"
/// (30 s) until a reply is seen; a flow still active more than 2 seconds
/// after it was created, with a reply seen, is a stream: assured and kept
/// for the "replied" timeout (120 s). A single request/response exchange
/// (DNS) therefore keeps the short timeout and is not assured, so it
/// cannot crowd out streams when the table is full.
///
/// Simplified: UDP-Lite follows the same rule (Linux assures a UDP-Lite
/// flow at its first reply, without the 2-second wait).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UdpState {
    /// A packet in the reply direction has been seen (`IPS_SEEN_REPLY`).
    pub replied: bool,
    /// The flow is a stream (`IPS_ASSURED`).
    pub assured: bool,
}

/// How long after its creation a replied UDP flow must still see traffic
/// to count as a stream (`stream_ts = 2 * HZ + jiffies`).
pub const UDP_STREAM_DELAY_MS: u64 = 2000;

/// The outcome of one UDP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpUpdate {
    /// Timeout to set the flow's expiry to, from now, in seconds.
    pub timeout_secs: u32,
    /// This packet made the flow assured.
    pub became_assured: bool,
}

impl UdpState {
    /// Accounts a packet in direction `dir`, `ms_since_created`
    /// milliseconds after the flow was created.
    ///
    /// As in Linux the reply bit is set after the timeout is chosen
    /// (`nf_conntrack_in()` sets `IPS_SEEN_REPLY` after the protocol
    /// handler), so the first reply still gets the unreplied timeout.
    pub fn on_packet(
        &mut self,
        dir: Direction,
        ms_since_created: u64,
        timeouts: &Timeouts,
    ) -> UdpUpdate {
        let mut up = UdpUpdate {
            timeout_secs: timeouts.udp_unreplied,
            became_assured: false,
        };
        if self.replied && ms_since_created > UDP_STREAM_DELAY_MS {
            up.timeout_secs = timeouts.udp_replied;
            if !self.assured {
                self.assured = true;
                up.became_assured = true;
            }
        }
        if dir == Direction::Reply {
            self.replied = true;
        }
        up
    }

    /// The state as a [`ProtoState`].
    pub const fn proto_state(self) -> ProtoState {
        ProtoState::Udp {
            replied: self.replied,
            assured: self.assured,
        }
    }
}

/// TCP timeout slots: one per state, plus Linux's two extra ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpTimeout {
    /// `SYN_SENT`.
    SynSent = 0,
    /// `SYN_RECV`.
    SynRecv,
    /// `ESTABLISHED`.
    Established,
    /// `FIN_WAIT`.
    FinWait,
    /// `CLOSE_WAIT`.
    CloseWait,
    /// `LAST_ACK`.
    LastAck,
    /// `TIME_WAIT`.
    TimeWait,
    /// `CLOSE`.
    Close,
    /// `SYN_SENT2` (simultaneous open).
    SynSent2,
    /// Used instead of a longer state timeout after too many
    /// retransmissions (`TCP_CONNTRACK_RETRANS`).
    Retrans,
    /// Used instead of a longer state timeout while data is unacknowledged
    /// (`TCP_CONNTRACK_UNACK`).
    Unacknowledged,
}

/// Number of [`TcpTimeout`] slots.
pub const TCP_TIMEOUTS: usize = 11;

impl TcpTimeout {
    /// Every slot, in order.
    pub const ALL: [TcpTimeout; TCP_TIMEOUTS] = [
        Self::SynSent,
        Self::SynRecv,
        Self::Established,
        Self::FinWait,
        Self::CloseWait,
        Self::LastAck,
        Self::TimeWait,
        Self::Close,
        Self::SynSent2,
        Self::Retrans,
        Self::Unacknowledged,
    ];

    /// Name as `conntrack timeout tcp <name>` takes it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::SynSent => "syn_sent",
            Self::SynRecv => "syn_recv",
            Self::Established => "established",
            Self::FinWait => "fin_wait",
            Self::CloseWait => "close_wait",
            Self::LastAck => "last_ack",
            Self::TimeWait => "time_wait",
            Self::Close => "close",
            Self::SynSent2 => "syn_sent2",
            Self::Retrans => "retrans",
            Self::Unacknowledged => "unacknowledged",
        }
    }

    /// The slot of a TCP state; `None` for [`TcpState::None`], which a
    /// flow is never left in.
    pub const fn for_state(state: TcpState) -> Option<TcpTimeout> {
        Some(match state {
            TcpState::None => return None,
            TcpState::SynSent => Self::SynSent,
            TcpState::SynRecv => Self::SynRecv,
            TcpState::Established => Self::Established,
            TcpState::FinWait => Self::FinWait,
            TcpState::CloseWait => Self::CloseWait,
            TcpState::LastAck => Self::LastAck,
            TcpState::TimeWait => Self::TimeWait,
            TcpState::Close => Self::Close,
            TcpState::SynSent2 => Self::SynSent2,
        })
    }
}

/// A settable timeout: what `rnfctl conntrack timeout <proto> <state>`
/// names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutKey {
    /// A TCP slot.
    Tcp(TcpTimeout),
    /// UDP without a reply, or replied but not yet a stream.
    UdpUnreplied,
    /// UDP stream (assured).
    UdpReplied,
    /// ICMP and ICMPv6.
    Icmp,
    /// Every other protocol.
    Generic,
}

/// Why a timeout could not be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutError {
    /// The protocol is not `tcp`, `udp`, `icmp`, `icmpv6` or `generic`.
    UnknownProtocol,
    /// The protocol has no state by that name (or needs one and none was
    /// given, or takes none and one was given).
    UnknownState,
    /// Zero, or above [`MAX_TIMEOUT_SECS`].
    OutOfRange,
}

impl TimeoutError {
    /// Short description in words.
    pub const fn message(&self) -> &'static str {
        match self {
            Self::UnknownProtocol => "unknown protocol (tcp, udp, icmp, icmpv6, generic)",
            Self::UnknownState => "unknown state for this protocol",
            Self::OutOfRange => "timeout must be between 1 and 2147483 seconds",
        }
    }
}

impl core::fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

/// Largest settable timeout: `i32::MAX` jiffies at `HZ=1000`, so that an
/// expiry stays comparable with `time_after()` at any `HZ` the kernel may
/// have (Linux's sysctls take `proc_dointvec_jiffies`, bounded the same).
pub const MAX_TIMEOUT_SECS: u32 = 2_147_483;

impl TimeoutKey {
    /// Every key, in display order.
    pub const ALL: [TimeoutKey; TCP_TIMEOUTS + 4] = [
        Self::Tcp(TcpTimeout::SynSent),
        Self::Tcp(TcpTimeout::SynRecv),
        Self::Tcp(TcpTimeout::Established),
        Self::Tcp(TcpTimeout::FinWait),
        Self::Tcp(TcpTimeout::CloseWait),
        Self::Tcp(TcpTimeout::LastAck),
        Self::Tcp(TcpTimeout::TimeWait),
        Self::Tcp(TcpTimeout::Close),
        Self::Tcp(TcpTimeout::SynSent2),
        Self::Tcp(TcpTimeout::Retrans),
        Self::Tcp(TcpTimeout::Unacknowledged),
        Self::UdpUnreplied,
        Self::UdpReplied,
        Self::Icmp,
        Self::Generic,
    ];

    /// Protocol and state names (the state empty for ICMP and generic).
    pub const fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Tcp(t) => ("tcp", t.name()),
            Self::UdpUnreplied => ("udp", "unreplied"),
            Self::UdpReplied => ("udp", "replied"),
            Self::Icmp => ("icmp", ""),
            Self::Generic => ("generic", ""),
        }
    }

    /// Parses `<proto> [<state>]` as `rnfctl conntrack timeout` takes it.
    /// Names are case-insensitive and `-` may stand for `_`
    /// (`tcp syn-sent`). `udp stream` is another name for `udp replied`;
    /// `icmpv6` is another name for `icmp` (one timeout covers both, 30 s in
    /// Linux for each).
    pub fn parse(proto: &str, state: Option<&str>) -> Result<TimeoutKey, TimeoutError> {
        let p = Name::new(proto);
        let s = state.map(Name::new);
        if p.is("tcp") {
            let s = s.ok_or(TimeoutError::UnknownState)?;
            TcpTimeout::ALL
                .into_iter()
                .find(|t| s.is(t.name()))
                .map(Self::Tcp)
                .ok_or(TimeoutError::UnknownState)
        } else if p.is("udp") || p.is("udplite") {
            match s {
                Some(s) if s.is("unreplied") => Ok(Self::UdpUnreplied),
                Some(s) if s.is("replied") || s.is("stream") => Ok(Self::UdpReplied),
                _ => Err(TimeoutError::UnknownState),
            }
        } else if p.is("icmp") || p.is("icmpv6") || p.is("generic") {
            match s {
                None => Ok(if p.is("generic") {
                    Self::Generic
                } else {
                    Self::Icmp
                }),
                Some(_) => Err(TimeoutError::UnknownState),
            }
        } else {
            Err(TimeoutError::UnknownProtocol)
        }
    }
}

/// A name compared case-insensitively with `-` equal to `_`.
#[derive(Clone, Copy)]
struct Name<'a>(&'a str);

impl<'a> Name<'a> {
    fn new(s: &'a str) -> Self {
        Name(s.trim())
    }

    fn is(&self, canonical: &str) -> bool {
        self.0.len() == canonical.len()
            && self.0.bytes().zip(canonical.bytes()).all(|(a, b)| {
                let a = a.to_ascii_lowercase();
                a == b || (a == b'-' && b == b'_')
            })
    }
}

/// Flow lifetimes in seconds, per protocol and state.
///
/// Defaults are Linux 6.12's: `tcp_timeouts[]` in
/// `nf_conntrack_proto_tcp.c`, `udp_timeouts[]` in
/// `nf_conntrack_proto_udp.c`, `nf_ct_icmp_timeout` /
/// `nf_ct_icmpv6_timeout` and `nf_ct_generic_timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP, indexed by [`TcpTimeout`].
    pub tcp: [u32; TCP_TIMEOUTS],
    /// `UDP_CT_UNREPLIED`.
    pub udp_unreplied: u32,
    /// `UDP_CT_REPLIED`.
    pub udp_replied: u32,
    /// ICMP and ICMPv6 query/reply flows.
    pub icmp: u32,
    /// Other protocols.
    pub generic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::LINUX
    }
}

impl Timeouts {
    /// Linux's defaults.
    pub const LINUX: Timeouts = Timeouts {
        tcp: [
            120,    // TCP_CONNTRACK_SYN_SENT: 2 MINS
            60,     // TCP_CONNTRACK_SYN_RECV: 60 SECS
            432000, // TCP_CONNTRACK_ESTABLISHED: 5 DAYS
            120,    // TCP_CONNTRACK_FIN_WAIT: 2 MINS
            60,     // TCP_CONNTRACK_CLOSE_WAIT: 60 SECS
            30,     // TCP_CONNTRACK_LAST_ACK: 30 SECS
            120,    // TCP_CONNTRACK_TIME_WAIT: 2 MINS
            10,     // TCP_CONNTRACK_CLOSE: 10 SECS
            120,    // TCP_CONNTRACK_SYN_SENT2: 2 MINS
            300,    // TCP_CONNTRACK_RETRANS: 5 MINS
            300,    // TCP_CONNTRACK_UNACK: 5 MINS
        ],
        udp_unreplied: 30, // UDP_CT_UNREPLIED: 30*HZ
        udp_replied: 120,  // UDP_CT_REPLIED: 120*HZ
        icmp: 30,          // nf_ct_icmp_timeout = 30*HZ (icmpv6 the same)
        generic: 600,      // nf_ct_generic_timeout = 600*HZ
    };

    /// The timeout set for `key`.
    pub fn get(&self, key: TimeoutKey) -> u32 {
        match key {
            TimeoutKey::Tcp(t) => self.tcp_slot(t),
            TimeoutKey::UdpUnreplied => self.udp_unreplied,
            TimeoutKey::UdpReplied => self.udp_replied,
            TimeoutKey::Icmp => self.icmp,
            TimeoutKey::Generic => self.generic,
        }
    }

    /// Sets the timeout for `key` to `secs`, which must lie in
    /// `1..=MAX_TIMEOUT_SECS` (0 would expire flows before their second
    /// packet).
    pub fn set(&mut self, key: TimeoutKey, secs: u32) -> Result<(), TimeoutError> {
        if secs == 0 || secs > MAX_TIMEOUT_SECS {
            return Err(TimeoutError::OutOfRange);
        }
        let slot = match key {
            TimeoutKey::Tcp(t) => match self.tcp.get_mut(t as usize) {
                Some(s) => s,
                None => return Err(TimeoutError::UnknownState),
            },
            TimeoutKey::UdpUnreplied => &mut self.udp_unreplied,
            TimeoutKey::UdpReplied => &mut self.udp_replied,
            TimeoutKey::Icmp => &mut self.icmp,
            TimeoutKey::Generic => &mut self.generic,
        };
        *slot = secs;
        Ok(())
    }

    /// The TCP timeout in `slot`.
    pub fn tcp_slot(&self, slot: TcpTimeout) -> u32 {
        self.tcp.get(slot as usize).copied().unwrap_or(0)
    }

    /// The timeout of a flow in `state`, as shown in listings and used
    /// for non-TCP protocols. TCP's per-packet choice, which may pick a
    /// shorter slot (retransmissions, unacknowledged data, RST), is
    /// [`tcp_refresh`](Self::tcp_refresh).
    pub fn timeout_for(&self, state: &ProtoState) -> u32 {
        match *state {
            ProtoState::Tcp(s) => match TcpTimeout::for_state(s) {
                Some(t) => self.tcp_slot(t),
                // A flow with no TCP state yet is about to get one; treat
                // it like an unanswered SYN.
                None => self.tcp_slot(TcpTimeout::SynSent),
            },
            ProtoState::Udp { assured: true, .. } => self.udp_replied,
            ProtoState::Udp { .. } => self.udp_unreplied,
            ProtoState::Icmp => self.icmp,
            ProtoState::Generic => self.generic,
        }
    }

    /// The timeout a TCP segment sets, from the tracker's
    /// [`TcpRefresh`]: the selection at the end of
    /// `nf_conntrack_tcp_packet()`, in its order:
    ///
    /// 1. too many retransmissions and the state's timeout is longer than
    ///    `retrans`: `retrans`;
    /// 2. a RST: `close`;
    /// 3. unacknowledged data in either direction and the state's timeout
    ///    is longer than `unacknowledged`: `unacknowledged`;
    /// 4. the last window was zero and the state's timeout is longer than
    ///    `retrans`: `retrans`;
    /// 5. otherwise the state's timeout;
    ///
    /// and then, for a flow picked up mid-stream that has not seen a reply
    /// yet, at most `unacknowledged` (so a one-sided ESTABLISHED flow does
    /// not live five days).
    pub fn tcp_refresh(&self, r: &TcpRefresh) -> u32 {
        let state = self.timeout_for(&ProtoState::Tcp(r.state));
        let retrans = self.tcp_slot(TcpTimeout::Retrans);
        let unack = self.tcp_slot(TcpTimeout::Unacknowledged);
        let t = if r.retrans_exceeded && state > retrans {
            retrans
        } else if r.rst {
            self.tcp_slot(TcpTimeout::Close)
        } else if r.data_unacknowledged && state > unack {
            unack
        } else if r.zero_window && state > retrans {
            retrans
        } else {
            state
        };
        if r.cap_unacknowledged && t > unack {
            unack
        } else {
            t
        }
    }
}

/// Page size assumed by [`default_max_entries`].
pub const PAGE_SIZE: u64 = 4096;
/// `sizeof(struct hlist_head)` on a 64-bit kernel.
const HLIST_HEAD_BYTES: u64 = 8;

/// Default number of hash buckets for a machine with `total_ram_bytes` of
/// memory: `nf_conntrack_init_start()` (6.12) on a 64-bit kernel with 4 KiB
/// pages when no `hashsize` is given:
///
/// - 1/16384 of memory in `hlist_head`s (8 bytes each);
/// - more than 4 GiB: 262144; else more than 1 GiB: 65536;
/// - at least 1024;
/// - rounded up to a whole page of heads (512), as
///   `nf_ct_alloc_hashtable()` does.
pub const fn default_buckets(total_ram_bytes: u64) -> u32 {
    const GIB: u64 = 1 << 30;
    let nr_pages = total_ram_bytes / PAGE_SIZE;
    let mut size = (nr_pages * PAGE_SIZE) / 16384 / HLIST_HEAD_BYTES;
    if nr_pages > 4 * (GIB / PAGE_SIZE) {
        size = 262_144;
    } else if nr_pages > GIB / PAGE_SIZE {
        size = 65_536;
    }
    if size < 1024 {
        size = 1024;
    }
    let per_page = PAGE_SIZE / HLIST_HEAD_BYTES;
    size = size.div_ceil(per_page) * per_page;
    size as u32
}

/// Default flow limit (`nf_conntrack_max`) for a machine with
/// `total_ram_bytes` of memory.
///
/// Linux sets `nf_conntrack_max = max_factor * nf_conntrack_htable_size`
/// with `max_factor = 1` when the table is sized from memory (8 only when
/// `hashsize` is given explicitly), so that with every flow hashed twice
/// (original and reply) chains average two entries. rnf does the same:
/// the limit equals [`default_buckets`]: 1024 up to 128 MiB, then one per
/// 128 KiB of memory (8192 at 1 GiB), 65536 above 1 GiB and up to 4 GiB,
/// 262144 above 4 GiB.
pub const fn default_max_entries(total_ram_bytes: u64) -> u32 {
    default_buckets(total_ram_bytes)
}
