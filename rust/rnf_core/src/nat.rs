// SPDX-License-Identifier: GPL-2.0-only

//! Network address translation without the kernel: the NAT kinds and where
//! they apply, address/port ranges, choosing a clash-free tuple for a new
//! flow, and rewriting a packet's headers in place with incremental
//! checksum updates.
//!
//! This mirrors Linux's `net/netfilter/nf_nat_core.c` (tuple selection:
//! `get_unique_tuple`, `find_best_ips_proto`, `nf_nat_l4proto_unique_tuple`)
//! and `net/netfilter/nf_nat_proto.c` (header rewriting:
//! `nf_nat_ipv4_manip_pkt`, `nf_nat_ipv6_manip_pkt`, the per-protocol
//! `*_manip_pkt`, `nf_nat_icmp_reply_translation`). The kernel module
//! keeps the conntrack table and the per-flow binding; it calls
//! [`choose_tuple`] on a flow's first packet with a callback into that
//! table, and [`manip_packet`] (or [`translate_icmp_error`]) on every
//! packet after making the headers writable.
//!
//! # Packets
//!
//! A packet is a `&mut [u8]` starting at the IP header together with the
//! [`PacketFacts`] that [`crate::packet::parse`] returned for the same
//! bytes. The buffer must hold at least the IP headers and the complete
//! transport header (for SCTP, the whole packet, because its CRC32c covers
//! everything); when it does not, the rewrite fails with
//! [`NatError::Truncated`] or [`NatError::NeedFullPacket`] before writing
//! anything that would leave a checksum wrong.
//!
//! # Checksum offload
//!
//! `partial` says the skb is `CHECKSUM_PARTIAL` (see [`crate::csum`]).
//! For `CHECKSUM_COMPLETE` the rewrite reports
//! [`Rewrite::csum_delta`], the change of the one's-complement sum over
//! all bytes from the IP header on: the kernel adds it to `skb->csum`.

use crate::csum;
use crate::ct::{self, Tuple};
use crate::hooks::{Family, Hook, Stage};
use crate::packet::{
    noted_facts_v6, parse, PacketError, PacketFacts, V4Ports, IPPROTO_DCCP, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
};
use crate::rules::action_kind;

/// Most candidate ports tried in the first round of a port search, as
/// Linux's `NF_NAT_MAX_ATTEMPTS`: the search runs in softirq, so it must
/// not walk a whole 64k range when every port is in use.
pub const MAX_ATTEMPTS: u32 = 128;

/// The NAT actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Source NAT to a given address range (`snat to`).
    Snat,
    /// Destination NAT to a given address range (`dnat to`).
    Dnat,
    /// Source NAT to the outgoing interface's address (`masquerade`).
    Masquerade,
    /// Destination NAT to the local host (`redirect`).
    Redirect,
}

impl NatKind {
    /// The kind for a rule's [`action_kind`] value, if it is a NAT action.
    pub const fn from_action_kind(kind: u8) -> Option<Self> {
        match kind {
            action_kind::SNAT => Some(Self::Snat),
            action_kind::DNAT => Some(Self::Dnat),
            action_kind::MASQUERADE => Some(Self::Masquerade),
            action_kind::REDIRECT => Some(Self::Redirect),
            _ => None,
        }
    }

    /// The rule's [`action_kind`] value.
    pub const fn action_kind(self) -> u8 {
        match self {
            Self::Snat => action_kind::SNAT,
            Self::Dnat => action_kind::DNAT,
            Self::Masquerade => action_kind::MASQUERADE,
            Self::Redirect => action_kind::REDIRECT,
        }
    }

    /// Whether the action translates to addresses given in the rule
    /// (`snat`, `dnat`) rather than to a local address the kernel finds
    /// (`masquerade`, `redirect`).
    pub const fn takes_addr(self) -> bool {
        matches!(self, Self::Snat | Self::Dnat)
    }

    /// The [`range_flag`] option bits the action accepts besides
    /// `MAP_IPS` and `PROTO_SPECIFIED`, as iptables' targets do: SNAT
    /// `--random --random-fully --persistent`, DNAT `--random
    /// --persistent`, MASQUERADE `--random --random-fully`, REDIRECT
    /// `--random`.
    pub const fn option_flags(self) -> u8 {
        match self {
            Self::Snat => range_flag::RANDOM | range_flag::FULLY_RANDOM | range_flag::PERSISTENT,
            Self::Dnat => range_flag::RANDOM | range_flag::PERSISTENT,
            Self::Masquerade => range_flag::RANDOM | range_flag::FULLY_RANDOM,
            Self::Redirect => range_flag::RANDOM,
        }
    }

    /// Which side of the tuple the action changes.
    pub const fn manip(self) -> Manip {
        match self {
            Self::Snat | Self::Masquerade => Manip::Src,
            Self::Dnat | Self::Redirect => Manip::Dst,
        }
    }

    /// The NAT stage whose chains may hold the action.
    pub const fn stage(self) -> Stage {
        match self.manip() {
            Manip::Src => Stage::NatSrc,
            Manip::Dst => Stage::NatDst,
        }
    }

    /// Whether the action may be used in the nat chain on `hook`, as
    /// iptables allows: DNAT and REDIRECT in PREROUTING and OUTPUT, SNAT in
    /// POSTROUTING and INPUT, MASQUERADE in POSTROUTING only (it needs the
    /// outgoing interface).
    pub const fn allowed_at(self, hook: Hook) -> bool {
        match self {
            Self::Dnat | Self::Redirect => matches!(hook, Hook::PreRouting | Hook::LocalOut),
            Self::Snat => matches!(hook, Hook::PostRouting | Hook::LocalIn),
            Self::Masquerade => matches!(hook, Hook::PostRouting),
        }
    }

    /// Lower-case rule keyword.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Snat => "snat",
            Self::Dnat => "dnat",
            Self::Masquerade => "masquerade",
            Self::Redirect => "redirect",
        }
    }
}

/// Which side of a packet a translation changes (Linux
/// `enum nf_nat_manip_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manip {
    /// The source address and port.
    Src,
    /// The destination address and port.
    Dst,
}

impl Manip {
    /// The manip done at `hook` (Linux `HOOK2MANIP`): source NAT after
    /// routing (POSTROUTING, INPUT), destination NAT before it
    /// (PREROUTING, OUTPUT); none in FORWARD.
    pub const fn for_hook(hook: Hook) -> Option<Self> {
        match hook {
            Hook::PostRouting | Hook::LocalIn => Some(Self::Src),
            Hook::PreRouting | Hook::LocalOut => Some(Self::Dst),
            Hook::Forward => None,
        }
    }

    /// The other side.
    pub const fn invert(self) -> Self {
        match self {
            Self::Src => Self::Dst,
            Self::Dst => Self::Src,
        }
    }
}

/// Flags of a [`NatRange`]; the values are Linux's `NF_NAT_RANGE_*`.
pub mod range_flag {
    /// The range gives addresses to map to (otherwise addresses stay).
    pub const MAP_IPS: u8 = 1 << 0;
    /// The range gives ports (or ICMP ids) to map to.
    pub const PROTO_SPECIFIED: u8 = 1 << 1;
    /// `random`: never keep the original port; random offset.
    pub const RANDOM: u8 = 1 << 2;
    /// `persistent`: a client gets the same address whatever the
    /// destination.
    pub const PERSISTENT: u8 = 1 << 3;
    /// `fully-random`: like [`RANDOM`]. (Linux 6.x draws a random search
    /// offset for both; they differ only in older kernels.)
    pub const FULLY_RANDOM: u8 = 1 << 4;
    /// Either random flag (`NF_NAT_RANGE_PROTO_RANDOM_ALL`).
    pub const RANDOM_ALL: u8 = RANDOM | FULLY_RANDOM;
    /// All flags rnf knows.
    pub const ALL: u8 = MAP_IPS | PROTO_SPECIFIED | RANDOM | PERSISTENT | FULLY_RANDOM;
}

/// Where a NAT action may map a flow: an inclusive address range and an
/// inclusive port range (Linux `struct nf_nat_range2`).
///
/// Addresses are laid out like [`PacketFacts::src`]: an IPv4 address fills
/// the first 4 bytes, the rest is zero. Without
/// [`range_flag::MAP_IPS`] the addresses are zero; without
/// [`range_flag::PROTO_SPECIFIED`] the ports are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatRange {
    /// Address family of the addresses.
    pub family: Family,
    /// Lowest address (used with [`range_flag::MAP_IPS`]).
    pub min_addr: [u8; 16],
    /// Highest address.
    pub max_addr: [u8; 16],
    /// Lowest port or ICMP id (used with [`range_flag::PROTO_SPECIFIED`]).
    pub min_port: u16,
    /// Highest port or ICMP id.
    pub max_port: u16,
    /// [`range_flag`] bits.
    pub flags: u8,
}

impl NatRange {
    /// A range that maps nothing: addresses and ports stay as they are.
    pub const fn empty(family: Family) -> Self {
        Self {
            family,
            min_addr: [0; 16],
            max_addr: [0; 16],
            min_port: 0,
            max_port: 0,
            flags: 0,
        }
    }

    /// A range of addresses `min..=max`, ports unchanged.
    pub const fn addrs(family: Family, min: [u8; 16], max: [u8; 16]) -> Self {
        Self {
            family,
            min_addr: min,
            max_addr: max,
            min_port: 0,
            max_port: 0,
            flags: range_flag::MAP_IPS,
        }
    }

    /// The same range with ports `min..=max`.
    pub const fn with_ports(mut self, min: u16, max: u16) -> Self {
        self.min_port = min;
        self.max_port = max;
        self.flags |= range_flag::PROTO_SPECIFIED;
        self
    }

    /// The same range with `flags` added.
    pub const fn with_flags(mut self, flags: u8) -> Self {
        self.flags |= flags;
        self
    }

    /// Whether `flag` (a [`range_flag`] bit) is set.
    pub const fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The range an action actually uses, given the address the kernel
    /// found for it: MASQUERADE maps to the outgoing interface's address
    /// and REDIRECT to the incoming interface's (or loopback for local
    /// traffic), keeping the rule's ports and flags, as
    /// `nf_nat_masquerade_ipv4` and `nf_nat_redirect_ipv4` build their
    /// `newrange`. SNAT and DNAT use the rule's range as it is.
    pub const fn resolve(&self, kind: NatKind, local_addr: [u8; 16]) -> Self {
        match kind {
            NatKind::Snat | NatKind::Dnat => *self,
            NatKind::Masquerade | NatKind::Redirect => {
                let mut r = *self;
                r.min_addr = local_addr;
                r.max_addr = local_addr;
                r.flags |= range_flag::MAP_IPS;
                r
            }
        }
    }

    /// Whether `addr` lies in the address range (true when the range maps
    /// no addresses).
    pub fn contains_addr(&self, addr: &[u8; 16]) -> bool {
        if !self.has(range_flag::MAP_IPS) {
            return true;
        }
        let (lo, hi) = ordered(self.min_addr, self.max_addr);
        let a = addr_value(self.family, addr);
        addr_value(self.family, &lo) <= a && a <= addr_value(self.family, &hi)
    }

    /// Whether `port` lies in the port range (true when the range maps no
    /// ports).
    pub const fn contains_port(&self, port: u16) -> bool {
        if !self.has(range_flag::PROTO_SPECIFIED) {
            return true;
        }
        let (lo, hi) = if self.min_port <= self.max_port {
            (self.min_port, self.max_port)
        } else {
            (self.max_port, self.min_port)
        };
        lo <= port && port <= hi
    }
}

/// A NAT action as a rule gives it and the evaluator returns it in
/// [`Verdict::Nat`](crate::eval::Verdict::Nat): the kind and the range
/// to map to.
///
/// For `masquerade` and `redirect` the range has no
/// [`range_flag::MAP_IPS`]: the kernel finds the address and builds the
/// range it uses with [`NatRange::resolve`]. In a
/// [`Verdict`](crate::eval::Verdict) the range's family is the packet's;
/// in a rule ([`Action::Nat`](crate::rules::Action::Nat)) a range without
/// addresses has family IPv4 (unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatAction {
    /// What to translate.
    pub kind: NatKind,
    /// Where to.
    pub range: NatRange,
}

fn ordered(a: [u8; 16], b: [u8; 16]) -> ([u8; 16], [u8; 16]) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// An address and a port, the side of a tuple that a NAT changes.
///
/// For ICMP and ICMPv6 query messages `port` is the identifier, whichever
/// side is changed: conntrack keeps the id in the source half of the tuple
/// and Linux's `icmp_manip_pkt` writes `tuple->src.u.icmp.id` for both
/// manip types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Address, laid out like [`PacketFacts::src`].
    pub addr: [u8; 16],
    /// Port (or ICMP id); ignored for protocols without one.
    pub port: u16,
}

impl Endpoint {
    /// The endpoint as one word, if its address fits in the first four
    /// bytes (every IPv4 endpoint does): for a cache of endpoints in an
    /// atomic word. Never 0, so 0 can mean "nothing cached".
    #[inline]
    pub fn to_word(&self) -> Option<u64> {
        let [a0, a1, a2, a3, rest @ ..] = self.addr;
        if rest != [0; 12] {
            return None;
        }
        Some(
            WORD_CACHED
                | u64::from(u32::from_ne_bytes([a0, a1, a2, a3]))
                | u64::from(self.port) << 32,
        )
    }

    /// The endpoint [`to_word`](Self::to_word) made `w` from; `None` for
    /// a word it does not make (0 among them).
    #[inline(always)]
    pub fn from_word(w: u64) -> Option<Endpoint> {
        if w & !(WORD_CACHED | 0xffff_ffff_ffff) != 0 || w & WORD_CACHED == 0 {
            return None;
        }
        let [a0, a1, a2, a3] = (w as u32).to_ne_bytes();
        Some(Endpoint {
            addr: [a0, a1, a2, a3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port: (w >> 32) as u16,
        })
    }
}

/// In [`Endpoint::to_word`]'s words: set in every word it makes.
const WORD_CACHED: u64 = 1 << 63;

/// The side of `t` that `manip` changes. For ICMP the port is the query
/// id, which conntrack keeps in the source half for both directions.
#[inline]
pub fn endpoint(t: &Tuple, manip: Manip) -> Endpoint {
    side(
        manip,
        ct::is_icmp(t.family, t.proto),
        (t.src, t.src_port_or_icmp_id),
        (t.dst, t.dst_port_or_icmp_type_code),
    )
}

/// [`endpoint`] from a tuple's fields: `source` and `dest` are its
/// (address, 16-bit field) halves.
#[inline(always)]
fn side(manip: Manip, icmp: bool, source: ([u8; 16], u16), dest: ([u8; 16], u16)) -> Endpoint {
    match manip {
        Manip::Src => Endpoint {
            addr: source.0,
            port: source.1,
        },
        Manip::Dst => Endpoint {
            addr: dest.0,
            port: if icmp { source.1 } else { dest.1 },
        },
    }
}

/// `endpoint(&other.invert(), manip)` without building the inverse: the
/// endpoint a NAT hook doing `manip` rewrites a packet to, `other` being
/// the flow's tuple of the packet's opposite direction (what
/// `nf_nat_packet()` gets from `nf_ct_invert_tuple`). Inverting swaps the
/// sides (the ICMP id stays in the source half), so this is the other
/// side of `other` itself.
#[inline(always)]
pub fn translated_endpoint(other: &Tuple, manip: Manip) -> Endpoint {
    endpoint(other, manip.invert())
}

/// [`translated_endpoint`] from `other` as [`Tuple::to_bytes`] encodes it
/// (the flow table keeps its tuples packed): reads the one side it needs
/// instead of decoding the whole tuple, on every NATed packet.
#[inline(always)]
pub fn translated_endpoint_of_bytes(other: &[u8; ct::TUPLE_BYTES], manip: Manip) -> Endpoint {
    let t = ct::TupleBytes(other);
    side(
        manip.invert(),
        t.family().is_some_and(|f| ct::is_icmp(f, t.proto())),
        (t.src(), t.src_port_or_icmp_id()),
        (t.dst(), t.dst_port_or_icmp_type_code()),
    )
}

/// The key (port or ICMP id) that `manip` changes.
fn key(t: &Tuple, manip: Manip) -> u16 {
    endpoint(t, manip).port
}

fn set_key(t: &mut Tuple, manip: Manip, key: u16) {
    match manip {
        Manip::Dst if !ct::is_icmp(t.family, t.proto) => t.dst_port_or_icmp_type_code = key,
        _ => t.src_port_or_icmp_id = key,
    }
}

fn set_addr(t: &mut Tuple, manip: Manip, addr: [u8; 16]) {
    match manip {
        Manip::Src => t.src = addr,
        Manip::Dst => t.dst = addr,
    }
}

// ---------------------------------------------------------------------------
// Tuple selection
// ---------------------------------------------------------------------------

/// An address as a 128-bit number split in two halves (no `u128`: the
/// kernel's compiler builtins do not provide all of its operations).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AddrValue {
    hi: u64,
    lo: u64,
}

fn addr_value(family: Family, a: &[u8; 16]) -> AddrValue {
    let mut hi = 0u64;
    let mut lo = 0u64;
    match family {
        Family::Ipv4 => {
            for b in a.iter().take(4) {
                lo = (lo << 8) | u64::from(*b);
            }
        }
        Family::Ipv6 => {
            for (i, b) in a.iter().enumerate() {
                if i < 8 {
                    hi = (hi << 8) | u64::from(*b);
                } else {
                    lo = (lo << 8) | u64::from(*b);
                }
            }
        }
    }
    AddrValue { hi, lo }
}

fn addr_bytes(family: Family, v: AddrValue) -> [u8; 16] {
    let mut out = [0u8; 16];
    match family {
        Family::Ipv4 => {
            let four = (v.lo as u32).to_be_bytes();
            crate::packet::copy_into(&mut out, &four);
        }
        Family::Ipv6 => {
            let (h, l) = out.split_at_mut(8);
            crate::packet::copy_into(h, &v.hi.to_be_bytes());
            crate::packet::copy_into(l, &v.lo.to_be_bytes());
        }
    }
    out
}

/// A small keyed hash of 32-bit words (a multiply-rotate mix with the
/// MurmurHash3 finaliser). Linux uses `jhash2` here; any well-mixing hash
/// gives the same property: the same inputs pick the same address.
fn hash_words(words: &[u32], init: u32) -> u32 {
    let mut h = init ^ 0x9e37_79b9;
    for w in words {
        h ^= w
            .wrapping_mul(0xcc9e_2d51)
            .rotate_left(15)
            .wrapping_mul(0x1b87_3593);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

fn addr_words(a: &[u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, chunk) in a.chunks_exact(4).enumerate() {
        if let (Some(slot), [b0, b1, b2, b3]) = (w.get_mut(i), chunk) {
            *slot = u32::from_be_bytes([*b0, *b1, *b2, *b3]);
        }
    }
    w
}

/// `(value * range) >> 32`: maps a 32-bit hash onto `0..range` without a
/// division (Linux `reciprocal_scale`). `range` is at most 2^32.
const fn reciprocal_scale(value: u32, range: u64) -> u64 {
    (value as u64 * range) >> 32
}

/// Picks the address for a new flow within `range`, like Linux's
/// `find_best_ips_proto`: a hash of the original source address, mixed
/// with the destination unless the range is `persistent`, so that a
/// client keeps appearing from the same address (some servers insist on
/// it) while clients spread over the range.
///
/// Linux picks each 32-bit word of an IPv6 address separately, which can
/// leave the range when the bounds differ in more than one word; this
/// picks an offset from the lowest address instead and so always stays in
/// the range. Ranges of more than 2^32 addresses use their first 2^32.
fn choose_addr(orig: &Tuple, range: &NatRange, zone_seed: u32) -> [u8; 16] {
    let family = range.family;
    let (min, max) = ordered(range.min_addr, range.max_addr);
    let (min, max) = (addr_value(family, &min), addr_value(family, &max));
    if min == max {
        return addr_bytes(family, min);
    }
    let init = if range.has(range_flag::PERSISTENT) {
        0
    } else {
        let dst = addr_words(&orig.dst);
        let last = match family {
            Family::Ipv4 => dst[0],
            Family::Ipv6 => dst[3],
        };
        last ^ zone_seed
    };
    let src = addr_words(&orig.src);
    let j = match family {
        Family::Ipv4 => hash_words(&[src[0]], init),
        Family::Ipv6 => hash_words(&src, init),
    };
    // span - 1 = max - min, as a 128-bit subtraction in two halves.
    let (lo, borrow) = max.lo.overflowing_sub(min.lo);
    let hi = max.hi.wrapping_sub(min.hi).wrapping_sub(u64::from(borrow));
    let off = if hi == 0 && lo < u64::from(u32::MAX) {
        reciprocal_scale(j, lo + 1)
    } else {
        u64::from(j)
    };
    let (lo, carry) = min.lo.overflowing_add(off);
    let hi = min.hi.wrapping_add(u64::from(carry));
    addr_bytes(family, AddrValue { hi, lo })
}

/// Whether the tuple lies in `range` for `manip` (Linux `nf_in_range`
/// with `l4proto_in_range`).
fn in_range(t: &Tuple, range: &NatRange, manip: Manip) -> bool {
    let addr = match manip {
        Manip::Src => &t.src,
        Manip::Dst => &t.dst,
    };
    if !range.contains_addr(addr) {
        return false;
    }
    if !(ct::has_ports(t.proto) || ct::is_icmp(t.family, t.proto)) {
        return true;
    }
    range.contains_port(key(t, manip))
}

/// Chooses the tuple a new flow is translated to: the original-direction
/// tuple after the NAT, such that no other flow already uses its inverse
/// as a reply tuple.
///
/// - `orig`: the flow's tuple as it is before this NAT.
/// - `range`: where to map it (after [`NatRange::resolve`]).
/// - `manip`: which side to change.
/// - `zone_seed`: mixed into the address hash (Linux mixes the conntrack
///   zone id); 0 is fine.
/// - `random`: a source of random numbers (the kernel passes
///   `get_random_u32`); called a few times at most.
/// - `reply_taken(reply)`: whether `reply` is already the reply tuple of
///   another flow (Linux `nf_conntrack_tuple_taken`); it receives the
///   *inverse* of each candidate, the tuple the conntrack table would
///   have to insert.
///
/// Follows Linux's `get_unique_tuple`:
///
/// 1. For source NAT without `random`: keep the original tuple if it lies
///    in the range and is free (so a client keeps its port where it can).
/// 2. Pick the address ([`range_flag::MAP_IPS`]) by hash, see above.
/// 3. Without `random`, keep the (maybe new-addressed) tuple if its port
///    is in the range and it is free.
/// 4. Otherwise search the port range like `nf_nat_l4proto_unique_tuple`
///    (Linux 6.5 and later): from a random offset, probe up to
///    [`MAX_ATTEMPTS`] consecutive ports; if all are taken, halve the
///    number of probes and start again from a new random offset; the
///    round of fewer than 16 is the last (so at most 128 + 64 + 32 + 16 +
///    8 probes; a range of at most 128 ports is searched whole in the
///    first round). Without a given port range a
///    source port below 512 maps into 1..=511, one in 512..=1023 into
///    600..=1023 and any other into 1024..=65535 (the "loose convention"
///    that privileged ports stay privileged); a destination port without a
///    range is never changed. ICMP ids use 0..=65535 unless a range is
///    given.
///
/// Returns `None` when every candidate tried is taken, or when the range
/// maps addresses of the other family; the kernel drops
/// the packet and counts it. Unlike Linux, which returns the last
/// (clashing) candidate and lets the conntrack insertion fail, this never
/// returns a taken tuple.
///
/// Not done here: Linux step 1 also reuses an existing mapping of the same
/// source (`find_appropriate_src`, the "bysource" table); a kernel that
/// keeps such a table can try that mapping before calling this.
pub fn choose_tuple(
    orig: &Tuple,
    range: &NatRange,
    manip: Manip,
    zone_seed: u32,
    mut random: impl FnMut() -> u32,
    mut reply_taken: impl FnMut(&Tuple) -> bool,
) -> Option<Tuple> {
    let mut taken = |t: &Tuple| reply_taken(&t.invert());
    let random_all = range.has(range_flag::RANDOM_ALL);
    if range.has(range_flag::MAP_IPS) && range.family != orig.family {
        // An IPv4 range cannot map an IPv6 flow (nor the reverse).
        return None;
    }

    // 1) Keep the original tuple when possible (source NAT only).
    if manip == Manip::Src && !random_all && in_range(orig, range, manip) && !taken(orig) {
        return Some(*orig);
    }

    // 2) The address.
    let mut t = *orig;
    if range.has(range_flag::MAP_IPS) {
        set_addr(&mut t, manip, choose_addr(orig, range, zone_seed));
    }

    // 3) Keep the port if it is in range and free.
    if !random_all && in_range(&t, range, manip) && !taken(&t) {
        return Some(t);
    }

    // 4) Search the ports (or ICMP ids).
    let (min, size) = if ct::is_icmp(t.family, t.proto) {
        if range.has(range_flag::PROTO_SPECIFIED) {
            port_span(range)
        } else {
            (0, 65536)
        }
    } else if ct::has_ports(t.proto) {
        if range.has(range_flag::PROTO_SPECIFIED) {
            port_span(range)
        } else if manip == Manip::Dst {
            // "If it's dst rewrite, can't change port."
            return (!taken(&t)).then_some(t);
        } else {
            match key(&t, manip) {
                0..=511 => (1, 511),
                512..=1023 => (600, 424),
                _ => (1024, 64512),
            }
        }
    } else {
        // No ports to vary: the tuple is what it is.
        return (!taken(&t)).then_some(t);
    };

    let mut attempts = size.min(MAX_ATTEMPTS);
    // Linux keeps the offset in a u16 and takes it modulo the range size
    // on each probe, so when it wraps at 65536 a probe sequence can skip
    // ports of a range whose size does not divide 65536. Stepping the
    // index within the range instead visits `attempts` distinct ports,
    // and a range of at most 128 ports is searched whole.
    let start = |r: u32| r.checked_rem(size).unwrap_or(0);
    let mut idx = start(random());
    loop {
        for _ in 0..attempts {
            set_key(&mut t, manip, (min + idx) as u16);
            if !taken(&t) {
                return Some(t);
            }
            idx += 1;
            if idx >= size {
                idx = 0;
            }
        }
        if attempts >= size || attempts < 16 {
            return None;
        }
        attempts /= 2;
        idx = start(random());
    }
}

/// First port and number of ports of a range's port span (1..=65536).
fn port_span(range: &NatRange) -> (u32, u32) {
    let (lo, hi) = if range.min_port <= range.max_port {
        (range.min_port, range.max_port)
    } else {
        (range.max_port, range.min_port)
    };
    (u32::from(lo), u32::from(hi) - u32::from(lo) + 1)
}

// ---------------------------------------------------------------------------
// Load balancing
// ---------------------------------------------------------------------------

/// Index of the backend to use among `count`, from a uniformly distributed
/// 32-bit `value` (a random number, or [`flow_hash`] for a choice that
/// depends only on the flow). `None` if `count` is 0.
///
/// The choice is made once, on a flow's first packet; the kernel binds the
/// resulting tuple to the flow, so every later packet of the flow goes to
/// the same backend whatever this would return for it.
pub fn pick_backend(count: usize, value: u32) -> Option<usize> {
    if count == 0 {
        return None;
    }
    let n = u64::try_from(count).unwrap_or(u64::MAX).min(1 << 32);
    usize::try_from(reciprocal_scale(value, n)).ok()
}

/// A keyed hash of a tuple's addresses, ports and protocol, for choices
/// that must be the same for every packet of a flow.
pub fn flow_hash(t: &Tuple, seed: u32) -> u32 {
    let s = addr_words(&t.src);
    let d = addr_words(&t.dst);
    let words = [
        s[0],
        s[1],
        s[2],
        s[3],
        d[0],
        d[1],
        d[2],
        d[3],
        (u32::from(t.src_port_or_icmp_id) << 16) | u32::from(t.dst_port_or_icmp_type_code),
        u32::from(t.proto) | (u32::from(t.family as u8) << 8),
    ];
    hash_words(&words, seed)
}

// ---------------------------------------------------------------------------
// Header rewriting
// ---------------------------------------------------------------------------

/// Why a packet could not be rewritten. Nothing has been written when a
/// rewrite fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatError {
    /// The buffer does not hold the headers the rewrite must change.
    Truncated,
    /// SCTP: the CRC32c covers the whole packet, and the buffer does not
    /// hold all of it (the kernel must linearize the skb).
    NeedFullPacket,
    /// The buffer and the facts disagree (IP version or offsets), or the
    /// endpoint's family is not the packet's.
    Mismatch,
    /// [`translate_icmp_error`] on a packet that is not an ICMP error.
    NotIcmpError,
    /// The packet quoted in an ICMP error cannot be parsed.
    BadInner(PacketError),
}

impl NatError {
    /// Short description in words.
    pub const fn message(&self) -> &'static str {
        match self {
            Self::Truncated => "packet too short for the headers NAT rewrites",
            Self::NeedFullPacket => "SCTP NAT needs the whole packet",
            Self::Mismatch => "packet does not match its parsed facts",
            Self::NotIcmpError => "not an ICMP error",
            Self::BadInner(_) => "unparsable packet quoted in an ICMP error",
        }
    }
}

impl core::fmt::Display for NatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

/// What a rewrite did, for the kernel's bookkeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Change of the one's-complement sum of the bytes from the IP header
    /// to the end, as a partial sum in network order ([`crate::csum`]).
    /// For a `CHECKSUM_COMPLETE` skb whose `skb->csum` covers the packet
    /// from the network header (as it does in the netfilter hooks), do
    /// `skb->csum = csum_add(skb->csum, to_native_wsum(fold(csum_delta)))`.
    ///
    /// This agrees with Linux: for IPv4 the header checksum cancels the
    /// address change, so the delta is the pseudo-header change that
    /// `inet_proto_csum_replace4` applies to `skb->csum`; for IPv6 the
    /// address change and the transport checksum change cancel, and
    /// `inet_proto_csum_replace16` leaves `skb->csum` alone (since Linux
    /// 5.8).
    pub csum_delta: u32,
    /// The SCTP CRC32c was recomputed in software: like `sctp_manip_pkt`,
    /// the kernel should set `skb->ip_summed = CHECKSUM_NONE`.
    pub csum_none: bool,
    /// The transport header was changed (false for non-first fragments
    /// and protocols without ports).
    pub l4_changed: bool,
}

/// A buffer whose 16-bit writes keep a running sum of what they changed.
struct Patcher<'a> {
    buf: &'a mut [u8],
    delta: u32,
}

impl Patcher<'_> {
    #[inline(always)]
    fn get16(&self, at: usize) -> Option<u16> {
        match self.buf.get(at..at.checked_add(2)?)? {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    fn get_byte(&self, at: usize) -> Option<u8> {
        self.buf.get(at).copied()
    }

    /// Writes a 16-bit word. All words NAT writes lie at even offsets from
    /// the IP header, so the running sum is a sum of aligned words.
    /// (Two byte stores, not a slice copy: a copy of a length the compiler
    /// cannot see became a `memcpy` call per word.)
    #[inline(always)]
    fn set16(&mut self, at: usize, v: u16) {
        let w = self
            .buf
            .get_mut(at..at.saturating_add(2))
            .and_then(|w| w.try_into().ok());
        put16(w, v, &mut self.delta, true);
    }

    fn get_addr(&self, family: Family, at: usize) -> Option<[u8; 16]> {
        let mut a = [0u8; 16];
        match family {
            Family::Ipv4 => {
                let four: [u8; 4] = self.buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
                let [a0, a1, a2, a3, ..] = &mut a;
                [*a0, *a1, *a2, *a3] = four;
            }
            Family::Ipv6 => a = self.buf.get(at..at.checked_add(16)?)?.try_into().ok()?,
        }
        Some(a)
    }

    #[inline(always)]
    fn set_addr(&mut self, family: Family, at: usize, a: &[u8; 16]) {
        // IPv4's two words written out: the loop over pairs below cost a
        // NATed packet more than the rest of the rewrite.
        let [a0, a1, a2, a3, ..] = *a;
        self.set16(at, u16::from_be_bytes([a0, a1]));
        self.set16(at + 2, u16::from_be_bytes([a2, a3]));
        if family == Family::Ipv6 {
            for (i, pair) in a.chunks_exact(2).enumerate().skip(2) {
                if let [x, y] = pair {
                    self.set16(at + 2 * i, u16::from_be_bytes([*x, *y]));
                }
            }
        }
    }

    /// Applies a `proto_replace` to the checksum at `at`.
    #[inline(always)]
    fn replace_csum(&mut self, at: usize, f: impl FnOnce(&mut u16)) {
        if let Some(mut c) = self.get16(at) {
            f(&mut c);
            self.set16(at, c);
        }
    }
}

/// Partial sum change for an address change (the pseudo-header part).
fn addr_sums(family: Family, from: &[u8; 16], to: &[u8; 16]) -> (u32, u32) {
    match family {
        // (A 32-bit word's sum: the slice sum compiled to a loop.)
        Family::Ipv4 => (csum::sum32(addr_u32(from)), csum::sum32(addr_u32(to))),
        Family::Ipv6 => (csum::sum128(from), csum::sum128(to)),
    }
}

/// ICMPv4 query types whose identifier NAT rewrites (`icmp_manip_pkt`).
const fn icmp_is_query(ty: u8) -> bool {
    matches!(ty, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
}

/// ICMPv4 error types that quote the offending packet.
const fn icmp_is_error(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// ICMPv6 error types (RFC 4443: types below 128) that quote a packet.
const fn icmpv6_is_error(ty: u8) -> bool {
    matches!(ty, 1..=4)
}

/// One IP packet (outer, or quoted in an ICMP error) located in a buffer.
#[derive(Clone, Copy)]
struct Layout {
    family: Family,
    /// Offset of the IP header.
    ip: usize,
    /// Offset of the transport header.
    l4: usize,
    /// End of the packet's bytes available in the buffer.
    end: usize,
    /// Total length the IP header claims, as an end offset.
    claimed_end: usize,
    proto: u8,
    later_fragment: bool,
    /// A packet quoted in an ICMP error: its transport header may be cut
    /// after 8 bytes (RFC 792), which is enough for ports.
    inner: bool,
}

/// Checks the transport header is there; returns whether the checksum can
/// be updated (the header up to `full` bytes is present).
fn l4_room(lay: &Layout, full: usize) -> Result<bool, NatError> {
    let have = lay.end.saturating_sub(lay.l4);
    if have < 8 {
        return Err(NatError::Truncated);
    }
    if have >= full {
        return Ok(true);
    }
    // The packet itself is shorter than the header: leave the checksum,
    // as Linux does for a short header. A buffer shorter than the packet
    // means the kernel did not make the header writable.
    if lay.inner || lay.claimed_end.saturating_sub(lay.l4) < full {
        Ok(false)
    } else {
        Err(NatError::Truncated)
    }
}

/// Rewrites the transport header: ports (or ICMP id) and checksum,
/// including the pseudo-header change for the address.
fn manip_l4(
    p: &mut Patcher<'_>,
    lay: &Layout,
    manip: Manip,
    old_addr: &[u8; 16],
    to: &Endpoint,
    partial: bool,
) -> Result<Rewrite, NatError> {
    let mut out = Rewrite::default();
    let l4 = lay.l4;
    let port_at = l4 + if manip == Manip::Src { 0 } else { 2 };
    let (from_sum, to_sum) = addr_sums(lay.family, old_addr, &to.addr);
    match (lay.family, lay.proto) {
        (_, IPPROTO_TCP | IPPROTO_DCCP) => {
            // TCP: checksum at 16 of a 20-byte header; DCCP: at 6 of 12.
            let (csum_at, full) = if lay.proto == IPPROTO_TCP {
                (l4 + 16, 20)
            } else {
                (l4 + 6, 12)
            };
            let do_csum = l4_room(lay, full)?;
            let old_port = p.get16(port_at).ok_or(NatError::Truncated)?;
            if do_csum {
                p.replace_csum(csum_at, |c| {
                    csum::proto_replace_sum(c, from_sum, to_sum, true, partial);
                    csum::proto_replace2(c, old_port, to.port, false, partial);
                });
            }
            p.set16(port_at, to.port);
            out.l4_changed = true;
        }
        (_, IPPROTO_UDP | IPPROTO_UDPLITE) => {
            l4_room(lay, 8)?;
            let csum_at = l4 + 6;
            let old_port = p.get16(port_at).ok_or(NatError::Truncated)?;
            let old_csum = p.get16(csum_at).ok_or(NatError::Truncated)?;
            // `__udp_manip_pkt`: a zero UDP checksum means "none" and
            // stays zero (on IPv6 it is invalid, and Linux leaves it too);
            // UDP-Lite always has one.
            if lay.proto == IPPROTO_UDPLITE || old_csum != 0 {
                p.replace_csum(csum_at, |c| {
                    csum::proto_replace_sum(c, from_sum, to_sum, true, partial);
                    csum::proto_replace2(c, old_port, to.port, false, partial);
                    *c = csum::udp_wire(*c);
                });
            }
            p.set16(port_at, to.port);
            out.l4_changed = true;
        }
        (_, IPPROTO_SCTP) => {
            // SCTP's CRC32c covers the whole packet and has no
            // pseudo-header. `sctp_manip_pkt` recomputes it unless the
            // NIC will (CHECKSUM_PARTIAL); a quoted header is left alone
            // because the quote never holds the whole packet.
            let recompute = !lay.inner && !partial;
            if recompute && lay.end < lay.claimed_end {
                return Err(NatError::NeedFullPacket);
            }
            l4_room(lay, 12)?;
            p.set16(port_at, to.port);
            if recompute && lay.end >= l4 + 12 {
                p.set16(l4 + 8, 0);
                p.set16(l4 + 10, 0);
                let crc = p.buf.get(l4..lay.end).map(sctp_crc32c).unwrap_or(0);
                let [a, b, c, d] = crc.to_le_bytes();
                p.set16(l4 + 8, u16::from_be_bytes([a, b]));
                p.set16(l4 + 10, u16::from_be_bytes([c, d]));
                out.csum_none = true;
            }
            out.l4_changed = true;
        }
        (Family::Ipv4, IPPROTO_ICMP) => {
            l4_room(lay, 8)?;
            let ty = p.get_byte(l4).ok_or(NatError::Truncated)?;
            if icmp_is_query(ty) {
                let old_id = p.get16(l4 + 4).ok_or(NatError::Truncated)?;
                p.replace_csum(l4 + 2, |c| {
                    csum::proto_replace2(c, old_id, to.port, false, partial)
                });
                p.set16(l4 + 4, to.port);
                out.l4_changed = true;
            }
        }
        (Family::Ipv6, IPPROTO_ICMPV6) => {
            l4_room(lay, 8)?;
            let ty = p.get_byte(l4).ok_or(NatError::Truncated)?;
            let echo = matches!(ty, 128 | 129);
            let old_id = p.get16(l4 + 4).ok_or(NatError::Truncated)?;
            // ICMPv6 has a pseudo-header: every address change shows.
            p.replace_csum(l4 + 2, |c| {
                csum::proto_replace_sum(c, from_sum, to_sum, true, partial);
                if echo {
                    csum::proto_replace2(c, old_id, to.port, false, partial);
                }
            });
            if echo {
                p.set16(l4 + 4, to.port);
            }
            out.l4_changed = true;
        }
        // Other protocols: only the IP header changes, as Linux passes
        // unknown protocols unmodified (GRE/PPTP call ids are not done).
        _ => {}
    }
    Ok(out)
}

/// Rewrites one IP packet located by `lay`: transport header first (it
/// needs the old address for the pseudo-header), then the IP header.
fn manip_ip(
    p: &mut Patcher<'_>,
    lay: &Layout,
    manip: Manip,
    to: &Endpoint,
    partial: bool,
) -> Result<Rewrite, NatError> {
    let addr_at = lay.ip
        + match (lay.family, manip) {
            (Family::Ipv4, Manip::Src) => 12,
            (Family::Ipv4, Manip::Dst) => 16,
            (Family::Ipv6, Manip::Src) => 8,
            (Family::Ipv6, Manip::Dst) => 24,
        };
    let old_addr = p.get_addr(lay.family, addr_at).ok_or(NatError::Truncated)?;
    let mut out = Rewrite::default();
    if !lay.later_fragment {
        out = manip_l4(p, lay, manip, &old_addr, to, partial)?;
    }
    if lay.family == Family::Ipv4 {
        let (from, to_v) = (addr_u32(&old_addr), addr_u32(&to.addr));
        p.replace_csum(lay.ip + 10, |c| csum::replace4(c, from, to_v));
    }
    p.set_addr(lay.family, addr_at, &to.addr);
    Ok(out)
}

fn addr_u32(a: &[u8; 16]) -> u32 {
    u32::from_be_bytes([a[0], a[1], a[2], a[3]])
}

/// Locates the packet described by `facts` at `ip` in `buf`.
fn layout(buf: &[u8], ip: usize, facts: &PacketFacts, inner: bool) -> Result<Layout, NatError> {
    let version = buf.get(ip).map(|b| b >> 4);
    let want = match facts.family {
        Family::Ipv4 => 4,
        Family::Ipv6 => 6,
    };
    if version != Some(want) {
        return Err(NatError::Mismatch);
    }
    let l4 = ip.checked_add(facts.l4_offset).ok_or(NatError::Mismatch)?;
    let claimed_end = ip.saturating_add(facts.total_len as usize);
    let end = buf.len().min(claimed_end);
    if l4 > buf.len() || l4 % 2 != 0 {
        return Err(NatError::Mismatch);
    }
    Ok(Layout {
        family: facts.family,
        ip,
        l4,
        end,
        claimed_end,
        proto: facts.proto,
        later_fragment: facts.is_later_fragment(),
        inner,
    })
}

/// The [fingerprint](PacketFacts::fingerprint) of the packet `facts`
/// describe once [`manip_packet`] has rewritten its `manip` side to `to`:
/// that side's address, and its port where the packet has ports.
#[inline(always)]
pub fn rewritten_fingerprint(facts: &PacketFacts, manip: Manip, to: &Endpoint) -> u32 {
    let ports = facts.ports().map(|(sp, dp)| match manip {
        Manip::Src => (to.port, dp),
        Manip::Dst => (sp, to.port),
    });
    let (src, dst) = match manip {
        Manip::Src => (&to.addr, &facts.dst),
        Manip::Dst => (&facts.src, &to.addr),
    };
    crate::packet::fingerprint_of(src, dst, facts.proto, facts.total_len, ports)
}

/// How many bytes from the network header [`manip_packet`] reads and
/// writes in the packet `facts` describe: its IP headers and the fixed part
/// of its transport header, as `nf_nat`'s per-protocol
/// `skb_ensure_writable(skb, hdroff + sizeof(*hdr))`. The kernel makes
/// these writable and no more, so a packet whose payload lies in page
/// fragments (GRO, large sends) keeps it there instead of having it pulled
/// into the header. (SCTP's CRC32c covers the whole packet; where it must
/// be recomputed [`manip_packet`] asks for all of it with
/// [`NatError::NeedFullPacket`].)
pub fn rewrite_len(facts: &PacketFacts) -> usize {
    let header = if facts.is_later_fragment() {
        0
    } else {
        transport_header_len(facts.family, facts.proto).unwrap_or(0)
    };
    facts.l4_offset.saturating_add(header)
}

/// The fixed part of the transport header a rewrite changes (ports or ICMP
/// id and checksum), for the protocols that have one.
#[inline(always)]
fn transport_header_len(family: Family, proto: u8) -> Option<usize> {
    match (family, proto) {
        (_, IPPROTO_TCP) => Some(20),
        (_, IPPROTO_DCCP | IPPROTO_SCTP) => Some(12),
        (_, IPPROTO_UDP | IPPROTO_UDPLITE) => Some(8),
        (Family::Ipv4, IPPROTO_ICMP) | (Family::Ipv6, IPPROTO_ICMPV6) => Some(8),
        _ => None,
    }
}

/// Rewrites `manip`'s side of the packet in `pkt` to `to`, fixing the
/// checksums incrementally (Linux `nf_nat_ipv4_manip_pkt` /
/// `nf_nat_ipv6_manip_pkt`).
///
/// `pkt` starts at the IP header; `facts` is what
/// [`crate::packet::parse`] said about it. `to.addr` must be of the
/// packet's family. Changes:
///
/// - IP source or destination address; the IPv4 header checksum
///   (RFC 1624).
/// - TCP, UDP, UDP-Lite, DCCP: the port and the checksum, which covers
///   the address through the pseudo-header. A zero UDP checksum stays
///   zero; a UDP checksum that comes out zero is sent as `0xffff`.
/// - SCTP: the port; the CRC32c is recomputed over the whole packet
///   unless `partial`.
/// - ICMP query messages (echo, timestamp, information, address mask):
///   the identifier, to `to.port`. ICMPv6: the checksum for the
///   pseudo-header, and the identifier of echo messages.
/// - Non-first fragments and other protocols: the IP header only.
///
/// `partial`: the skb is `CHECKSUM_PARTIAL`, see [`crate::csum`].
#[inline]
pub fn manip_packet(
    pkt: &mut [u8],
    facts: &PacketFacts,
    manip: Manip,
    to: &Endpoint,
    partial: bool,
) -> Result<Rewrite, NatError> {
    match manip_v4_ports(pkt, facts, manip, to, partial) {
        Some(done) => Ok(done),
        None => manip_any(pkt, facts, manip, to, partial),
    }
}

/// [`manip_packet`] for any packet: located by [`layout`] and checked
/// before anything is written. (Not inlined: the fast path is what the
/// callers' packets take.)
#[inline(never)]
fn manip_any(
    pkt: &mut [u8],
    facts: &PacketFacts,
    manip: Manip,
    to: &Endpoint,
    partial: bool,
) -> Result<Rewrite, NatError> {
    let lay = layout(pkt, 0, facts, false)?;
    check_family(&lay, to)?;
    let mut p = Patcher { buf: pkt, delta: 0 };
    // Check before writing anything, so that a failure leaves the packet
    // as it was.
    dry_run(&p, &lay)?;
    let mut out = manip_ip(&mut p, &lay, manip, to, partial)?;
    out.csum_delta = p.delta;
    Ok(out)
}

/// The 16-bit word at `at` of a fixed-size header (`None` past its end,
/// which constant offsets never are).
#[inline(always)]
fn word<const N: usize>(h: &mut [u8; N], at: usize) -> Option<&mut [u8; 2]> {
    h.get_mut(at..at.checked_add(2)?)?.try_into().ok()
}

/// Writes `v` into word `w` and, if `track`, adds the change to the
/// running sum `delta` (for [`Patcher::set16`] and the fast path alike).
#[inline(always)]
fn put16(w: Option<&mut [u8; 2]>, v: u16, delta: &mut u32, track: bool) {
    if let Some(w) = w {
        let old = u16::from_be_bytes(*w);
        *w = v.to_be_bytes();
        if track {
            *delta = csum::add(*delta, csum::sub(u32::from(v), u32::from(old)));
        }
    }
}

/// The transport half of [`manip_v4_ports`]: the checksum, then the port,
/// of a TCP (`N` = 20) or UDP (`N` = 8) header, as [`manip_l4`] writes
/// them.
#[inline(always)]
fn manip_ports<const N: usize>(
    th: &mut [u8; N],
    manip: Manip,
    sums: (u32, u32),
    to_port: u16,
    partial: bool,
    (delta, track): (&mut u32, bool),
) {
    let udp = N == 8;
    let csum_at = if udp { 6 } else { 16 };
    let port_at = if manip == Manip::Src { 0 } else { 2 };
    let old_port = word(th, port_at).map_or(0, |w| u16::from_be_bytes(*w));
    let mut c = word(th, csum_at).map_or(0, |w| u16::from_be_bytes(*w));
    // `__udp_manip_pkt`: a zero UDP checksum means "none" and stays zero.
    if !udp || c != 0 {
        csum::proto_replace_sum(&mut c, sums.0, sums.1, true, partial);
        csum::proto_replace2(&mut c, old_port, to_port, false, partial);
        if udp {
            c = csum::udp_wire(c);
        }
        put16(word(th, csum_at), c, delta, track);
    }
    put16(word(th, port_at), to_port, delta, track);
}

/// [`manip_packet`] for what nearly every NATed packet is: IPv4 TCP or
/// UDP, not a later fragment, its whole transport header in `pkt`. It
/// reads and writes at constant offsets of fixed-size headers (the general
/// path's layout, dry run and per-word bounds checks cost several hundred
/// instructions per rewrite), writing the same words in the same order as
/// [`manip_ip`], so the bytes and the [`Rewrite`] are the same; a unit
/// test holds the two paths to that. `None` for any other packet, which
/// the general path handles (errors included).
#[inline(always)]
fn manip_v4_ports(
    pkt: &mut [u8],
    facts: &PacketFacts,
    manip: Manip,
    to: &Endpoint,
    partial: bool,
) -> Option<Rewrite> {
    let tcp = match facts.proto {
        IPPROTO_TCP => true,
        IPPROTO_UDP => false,
        _ => return None,
    };
    if facts.family != Family::Ipv4 || facts.is_later_fragment() {
        return None;
    }
    let l4 = facts.l4_offset;
    let full = if tcp { 20 } else { 8 };
    // The transport header must lie within the packet's stated length too.
    let end = pkt.len().min(facts.total_len as usize);
    if l4 < 20 || l4 % 2 != 0 || l4.checked_add(full)? > end {
        return None;
    }
    rewrite_v4_ports(pkt, l4, tcp, manip, to, (partial, true))
}

/// The writes of [`manip_v4_ports`] once the packet is known to be IPv4
/// TCP (`tcp`) or UDP with its transport header, whole, at `l4` (even,
/// at least 20). `None`, having written nothing, if `to` is not IPv4 or
/// the bytes are not an IPv4 header after all.
#[inline(always)]
fn rewrite_v4_ports(
    pkt: &mut [u8],
    l4: usize,
    tcp: bool,
    manip: Manip,
    to: &Endpoint,
    (partial, track): (bool, bool),
) -> Option<Rewrite> {
    let [a0, a1, a2, a3, rest @ ..] = to.addr;
    if rest != [0; 12] {
        return None;
    }
    let at = if manip == Manip::Src { 12 } else { 16 };
    let (version, from) = {
        let ip: &[u8; 20] = pkt.get(..20)?.try_into().ok()?;
        let [b0, .., s0, s1, s2, s3, d0, d1, d2, d3] = *ip;
        // Chosen as words: a choice between byte arrays compiled to four
        // byte loads at a computed offset.
        let (src, dst) = (
            u32::from_be_bytes([s0, s1, s2, s3]),
            u32::from_be_bytes([d0, d1, d2, d3]),
        );
        (b0 >> 4, if at == 12 { src } else { dst })
    };
    if version != 4 {
        return None;
    }
    let to_v = u32::from_be_bytes([a0, a1, a2, a3]);
    let sums = (csum::sum32(from), csum::sum32(to_v));
    let mut delta = 0u32;
    let th = pkt.get_mut(l4..)?;
    if tcp {
        let th: &mut [u8; 20] = th.get_mut(..20)?.try_into().ok()?;
        manip_ports(th, manip, sums, to.port, partial, (&mut delta, track));
    } else {
        let th: &mut [u8; 8] = th.get_mut(..8)?.try_into().ok()?;
        manip_ports(th, manip, sums, to.port, partial, (&mut delta, track));
    }
    let ip: &mut [u8; 20] = pkt.get_mut(..20)?.try_into().ok()?;
    let mut c = word(ip, 10).map_or(0, |w| u16::from_be_bytes(*w));
    csum::replace4(&mut c, from, to_v);
    put16(word(ip, 10), c, &mut delta, track);
    put16(
        word(ip, at),
        u16::from_be_bytes([a0, a1]),
        &mut delta,
        track,
    );
    put16(
        word(ip, at + 2),
        u16::from_be_bytes([a2, a3]),
        &mut delta,
        track,
    );
    Some(Rewrite {
        csum_delta: delta,
        csum_none: false,
        l4_changed: true,
    })
}

/// The shape of a packet that [`manip_noted`] (IPv4) or
/// [`manip_noted_v6`] can rewrite from a note alone, for the note made when
/// the packet was tracked: for IPv4 its header length in 32-bit words (5
/// to 15) in the low four bits, [`SHAPE_TCP`] for TCP (else UDP), as
/// [`V4Ports::read_shaped`] takes it; for IPv6 whose transport header
/// follows the fixed header, [`SHAPE_V6`] and [`SHAPE_TCP`] for TCP (the
/// low four bits 0, which no IPv4 header length is). 0 for any other
/// packet (IPv6 with extension headers, fragments, other protocols, a
/// transport header the parse found cut short), which the NAT stages
/// parse.
#[inline(always)]
pub fn noted_shape(facts: &PacketFacts) -> u8 {
    let tcp = match facts.proto {
        IPPROTO_TCP => SHAPE_TCP,
        IPPROTO_UDP => 0,
        _ => return 0,
    };
    if facts.is_fragment || facts.ports().is_none() {
        return 0;
    }
    match facts.family {
        Family::Ipv6 if facts.l4_offset == 40 => SHAPE_V6 | tcp,
        Family::Ipv4 if facts.l4_offset % 4 == 0 => match u8::try_from(facts.l4_offset / 4) {
            Ok(ihl @ 5..=15) => ihl | tcp,
            _ => 0,
        },
        _ => 0,
    }
}

/// In a [`noted_shape`]: TCP (else UDP).
pub const SHAPE_TCP: u8 = 0x10;
/// In a [`noted_shape`]: IPv6, the transport header right after the fixed
/// header.
pub const SHAPE_V6: u8 = 0x20;

/// How many bytes from the network header [`manip_noted`] reads and
/// writes for a packet of IPv4 `shape` (non-zero): [`rewrite_len`] of it.
#[inline(always)]
pub fn noted_rewrite_len(shape: u8) -> u32 {
    u32::from(shape & 0x0f) * 4 + if shape & SHAPE_TCP != 0 { 20 } else { 8 }
}

/// [`noted_rewrite_len`] for [`manip_noted_v6`]: the fixed header and the
/// fixed part of the transport header.
#[inline(always)]
pub fn noted_rewrite_len_v6(shape: u8) -> u32 {
    40 + if shape & SHAPE_TCP != 0 { 20 } else { 8 }
}

/// What [`manip_noted`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noted {
    /// The packet is not the noted one (or not as noted): nothing was
    /// written; parse it.
    Stale,
    /// The packet has the new endpoint on that side already (one that
    /// looped back after its rewrite): nothing was written.
    Translated,
    /// Rewritten, as [`manip_packet`] would have.
    Done {
        /// The rewrite, for the checksum state.
        rewrite: Rewrite,
        /// For a destination rewrite, the fingerprint of the headers as
        /// they are now ([`rewritten_fingerprint`]), for the note that
        /// later hooks check; `None` for a source rewrite (the last stage
        /// that reads the note).
        fingerprint: Option<u32>,
    },
}

/// [`manip_packet`] without a parse, for the NAT stages of a packet that
/// tracking noted with [`noted_shape`] `shape` (non-zero) and headers of
/// [`fingerprint`](PacketFacts::fingerprint) `fingerprint`: the packet in
/// `pkt` is taken for that one only if its IPv4 header has that length
/// and protocol, is not a fragment, holds its transport header within its
/// stated length, and its addresses, protocol, stated length and ports
/// give that fingerprint; otherwise nothing is written
/// ([`Noted::Stale`]). The bytes written and the [`Rewrite`] are
/// [`manip_packet`]'s for that packet, and a packet whose `manip` side is
/// `to` already is left alone, as the NAT stage's "translated already"
/// check leaves it. Only with `complete` (the skb's checksum is
/// `CHECKSUM_COMPLETE`, the one state that takes it) is the rewrite's
/// `csum_delta` worked out; it is 0 otherwise.
#[inline(always)]
pub fn manip_noted(
    pkt: &mut [u8],
    (shape, fingerprint): (u8, u32),
    manip: Manip,
    to: &Endpoint,
    (partial, complete): (bool, bool),
) -> Noted {
    let Some(h) = V4Ports::read_shaped(pkt, shape) else {
        return Noted::Stale;
    };
    if h.fingerprint() != fingerprint {
        return Noted::Stale;
    }
    let [a0, a1, a2, a3, rest @ ..] = to.addr;
    let to_v4 = [a0, a1, a2, a3];
    let side = match manip {
        Manip::Src => (h.src, h.sport),
        Manip::Dst => (h.dst, h.dport),
    };
    if side == (to_v4, to.port) && rest == [0; 12] {
        return Noted::Translated;
    }
    let Some(rewrite) = rewrite_v4_ports(pkt, h.l4_offset, h.tcp, manip, to, (partial, complete))
    else {
        return Noted::Stale;
    };
    let fingerprint = match manip {
        Manip::Src => None,
        Manip::Dst => Some(h.fingerprint_with(h.src, to_v4, (h.sport, to.port))),
    };
    Noted::Done {
        rewrite,
        fingerprint,
    }
}

/// [`manip_noted`] for IPv6: `shape` is [`SHAPE_V6`] (and [`SHAPE_TCP`]
/// for TCP). The packet in `pkt` is taken for the noted one only if it is
/// IPv6 with that transport protocol right after the fixed header, holds
/// the fixed part of the transport header within its stated length, and
/// its addresses, protocol, stated length and ports give `fingerprint`;
/// otherwise nothing is written ([`Noted::Stale`]). It is then rewritten
/// by [`manip_packet`] on the fields read at those fixed offsets, with no
/// parse of the rest: the same bytes and [`Rewrite`] as for the packet's
/// parse.
pub fn manip_noted_v6(
    pkt: &mut [u8],
    (shape, fingerprint): (u8, u32),
    manip: Manip,
    to: &Endpoint,
    partial: bool,
) -> Noted {
    if shape & !SHAPE_TCP != SHAPE_V6 {
        return Noted::Stale;
    }
    let Some(facts) = noted_facts_v6(pkt) else {
        return Noted::Stale;
    };
    let tcp = shape & SHAPE_TCP != 0;
    if (facts.proto == IPPROTO_TCP) != tcp || facts.fingerprint() != fingerprint {
        return Noted::Stale;
    }
    let (sport, dport) = facts.ports().unwrap_or_default();
    let side = match manip {
        Manip::Src => (facts.src, sport),
        Manip::Dst => (facts.dst, dport),
    };
    if side == (to.addr, to.port) {
        return Noted::Translated;
    }
    match manip_packet(pkt, &facts, manip, to, partial) {
        Ok(rewrite) => Noted::Done {
            rewrite,
            fingerprint: (manip == Manip::Dst).then(|| rewritten_fingerprint(&facts, manip, to)),
        },
        Err(_) => Noted::Stale,
    }
}

#[inline(always)]
fn check_family(lay: &Layout, to: &Endpoint) -> Result<(), NatError> {
    if lay.family == Family::Ipv4 && to.addr.iter().skip(4).any(|b| *b != 0) {
        return Err(NatError::Mismatch);
    }
    Ok(())
}

/// The checks [`manip_l4`] would fail on, without writing.
#[inline(always)]
fn dry_run(p: &Patcher<'_>, lay: &Layout) -> Result<(), NatError> {
    let addr_end = lay.ip + if lay.family == Family::Ipv4 { 20 } else { 40 };
    if p.buf.len() < addr_end {
        return Err(NatError::Truncated);
    }
    if lay.later_fragment {
        return Ok(());
    }
    match transport_header_len(lay.family, lay.proto) {
        Some(full) => l4_room(lay, full).map(|_| ()),
        None => Ok(()),
    }
}

/// Translates an ICMP error about a NATed flow (Linux
/// `nf_nat_icmp_reply_translation` and `nf_nat_icmpv6_reply_translation`).
///
/// The error quotes a packet of the flow as it looked on the other side
/// of this NAT; the quote is rewritten with the *opposite* manip (its
/// `manip.invert()` side becomes `inner`), its IPv4 header checksum and
/// transport checksum updated, then the ICMP checksum is updated for the
/// quote's changes, and finally the outer header's `manip` address becomes
/// `outer`.
///
/// With conntrack entry tuples `orig` and `reply` and the error travelling
/// in direction `dir` at a hook doing `manip`, Linux uses: `inner` =
/// the `manip.invert()` endpoint of the tuple of the *other* direction
/// (`tuplehash[!dir]`), and `outer` = the `manip` address of that tuple's
/// inverse. Example: a client C:c masqueraded to N:n talks to S:s; a
/// router R sends "fragmentation needed" about N:n→S:s to N. In
/// PREROUTING (`manip` = `Dst`) the quote's source becomes C:c (`inner`)
/// and the outer destination becomes C (`outer`).
///
/// The caller decides whether the flow is NATed in the relevant direction
/// and refuses ICMP redirects for NATed flows, as Linux does.
///
/// `partial`: the skb is `CHECKSUM_PARTIAL`; the ICMP checksum is then
/// summed by the NIC and only the ICMPv6 pseudo-header change is applied.
/// The quoted headers' own checksums are always real checksums.
pub fn translate_icmp_error(
    pkt: &mut [u8],
    facts: &PacketFacts,
    manip: Manip,
    outer: &[u8; 16],
    inner: &Endpoint,
    partial: bool,
) -> Result<Rewrite, NatError> {
    let lay = layout(pkt, 0, facts, false)?;
    let outer_ep = Endpoint {
        addr: *outer,
        port: 0,
    };
    check_family(&lay, &outer_ep)?;
    check_family(&lay, inner)?;
    let is_error = match (facts.family, facts.icmp()) {
        (Family::Ipv4, Some((ty, _))) if facts.proto == IPPROTO_ICMP => icmp_is_error(ty),
        (Family::Ipv6, Some((ty, _))) if facts.proto == IPPROTO_ICMPV6 => icmpv6_is_error(ty),
        _ => false,
    };
    if !is_error || lay.later_fragment {
        return Err(NatError::NotIcmpError);
    }
    let quote_at = lay.l4 + 8;
    let quote = pkt.get(quote_at..lay.end).ok_or(NatError::Truncated)?;
    let inner_facts = parse(quote).map_err(NatError::BadInner)?;
    if inner_facts.family != facts.family {
        return Err(NatError::Mismatch);
    }
    let mut inner_lay = layout(pkt, quote_at, &inner_facts, true)?;
    // The quote ends where the ICMP message ends, not where its own
    // length field says.
    inner_lay.end = lay.end;
    inner_lay.claimed_end = lay.end;

    let mut p = Patcher { buf: pkt, delta: 0 };
    dry_run(&p, &lay)?;
    dry_run(&p, &inner_lay)?;

    // The quote: opposite manip, real checksums.
    let mut out = manip_ip(&mut p, &inner_lay, manip.invert(), inner, false)?;
    let quote_delta = p.delta;
    // The ICMP checksum covers the quote byte for byte. (Linux recomputes
    // it over the whole message; the incremental update gives the same
    // result and needs only the headers.)
    if !partial {
        p.replace_csum(lay.l4 + 2, |c| {
            csum::proto_replace_sum(c, 0, quote_delta, false, false)
        });
    }
    // The outer header, as for an ICMP packet of the reverse flow: for
    // errors only the address (and the ICMPv6 pseudo-header) changes.
    let outer_out = manip_ip(&mut p, &lay, manip, &outer_ep, partial)?;
    out.csum_none |= outer_out.csum_none;
    out.l4_changed = true;
    out.csum_delta = p.delta;
    Ok(out)
}

/// CRC32c (Castagnoli) of `data`, as SCTP puts it in its common header
/// (RFC 9260 appendix A): the bytes of the result go on the wire in
/// little-endian order. Nibble-table implementation: small and without
/// allocation; SCTP NAT is rare enough that speed matters little.
pub fn sctp_crc32c(data: &[u8]) -> u32 {
    // T[i] is the CRC of the nibble i shifted through the reflected
    // polynomial 0x82f63b78 four times.
    const T: [u32; 16] = [
        0x0000_0000,
        0x105e_c76f,
        0x20bd_8ede,
        0x30e3_49b1,
        0x417b_1dbc,
        0x5125_dad3,
        0x61c6_9362,
        0x7198_540d,
        0x82f6_3b78,
        0x92a8_fc17,
        0xa24b_b5a6,
        0xb215_72c9,
        0xc38d_26c4,
        0xd3d3_e1ab,
        0xe330_a81a,
        0xf36e_6f75,
    ];
    let step = |c: u32| (c >> 4) ^ T.get((c & 0xf) as usize).copied().unwrap_or(0);
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        crc = step(step(crc));
    }
    !crc
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    use proptest::prelude::*;

    proptest! {
        /// An endpoint cached as a word is the endpoint back, exactly for
        /// addresses whose last twelve bytes are zero; a word `to_word`
        /// does not make (0 among them) reads as nothing cached.
        #[test]
        fn endpoint_words(
            addr in any::<[u8; 16]>(),
            v4 in any::<bool>(),
            port in any::<u16>(),
            w in any::<u64>(),
        ) {
            let mut a = addr;
            if v4 {
                a[4..].fill(0);
            }
            let ep = Endpoint { addr: a, port };
            let word = ep.to_word();
            prop_assert_eq!(word.is_some(), a[4..] == [0; 12]);
            if let Some(word) = word {
                prop_assert_ne!(word, 0);
                prop_assert_eq!(Endpoint::from_word(word), Some(ep));
            }
            prop_assert_eq!(Endpoint::from_word(0), None);
            if let Some(back) = Endpoint::from_word(w) {
                prop_assert_eq!(back.to_word(), Some(w));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The IPv4 TCP/UDP fast path writes the same bytes and reports
        /// the same [`Rewrite`] as the general path, whatever the header
        /// holds (checksums need not verify), for every length, fragment
        /// field and option length; and it is taken for every whole,
        /// unfragmented header (so the general path cannot hide it).
        #[test]
        fn fast_path_is_the_general_path(
            ihl in 5u8..=7,
            tcp in any::<bool>(),
            frag in prop_oneof![Just(0u16), Just(0x2000), Just(0x4000), any::<u16>()],
            len_delta in -12i32..=12,
            cut in 0usize..=40,
            body in proptest::collection::vec(any::<u8>(), 80),
            manip in prop_oneof![Just(Manip::Src), Just(Manip::Dst)],
            addr in any::<[u8; 4]>(),
            v6_bytes in any::<bool>(),
            port in any::<u16>(),
            partial in any::<bool>(),
        ) {
            let hl = usize::from(ihl) * 4;
            let full = if tcp { 20 } else { 8 };
            let p = v4_packet(ihl, tcp, frag, len_delta, cut, body);
            let Ok(facts) = parse(&p) else {
                return Ok(());
            };
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&addr);
            if v6_bytes {
                a[15] = 1;
            }
            let to = Endpoint { addr: a, port };
            let (mut fast, mut any) = (p.clone(), p.clone());
            let f = manip_v4_ports(&mut fast, &facts, manip, &to, partial);
            let g = manip_any(&mut any, &facts, manip, &to, partial);
            let whole = !facts.is_later_fragment()
                && !v6_bytes
                && hl + full <= p.len().min(facts.total_len as usize);
            prop_assert_eq!(f.is_some(), whole);
            if let Some(f) = f {
                prop_assert_eq!(Ok(f), g);
                prop_assert_eq!(fast, any);
            } else {
                prop_assert_eq!(fast, p);
            }
        }
    }

    /// An IPv4 TCP or UDP packet of header length `ihl` words with the
    /// fragment field `frag`, stated length `len_delta` off its headers'
    /// and `cut` bytes cut off, filled from `body`.
    fn v4_packet(
        ihl: u8,
        tcp: bool,
        frag: u16,
        len_delta: i32,
        cut: usize,
        body: Vec<u8>,
    ) -> Vec<u8> {
        let hl = usize::from(ihl) * 4;
        let full = if tcp { 20 } else { 8 };
        let mut p = body;
        p[0] = 0x40 | ihl;
        p[9] = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        let total = (hl + full) as i32 + len_delta;
        p[2..4].copy_from_slice(&(total.max(0) as u16).to_be_bytes());
        p.truncate(p.len() - cut);
        p
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// A rewrite from the note (the shape and fingerprint tracking
        /// noted) writes the bytes and reports the [`Rewrite`] of
        /// [`manip_packet`], and the fingerprint of a parse of the result;
        /// it is taken for every whole, unfragmented IPv4 TCP or UDP
        /// header, leaves a packet already translated alone, and with any
        /// other fingerprint writes nothing.
        #[test]
        fn noted_rewrite_is_manip_packet(
            ihl in 5u8..=7,
            tcp in any::<bool>(),
            frag in prop_oneof![Just(0u16), Just(0x4000), Just(0x2000), any::<u16>()],
            len_delta in -12i32..=12,
            cut in 0usize..=40,
            body in proptest::collection::vec(any::<u8>(), 80),
            manip in prop_oneof![Just(Manip::Src), Just(Manip::Dst)],
            addr in any::<[u8; 4]>(),
            same in any::<bool>(),
            port in any::<u16>(),
            partial in any::<bool>(),
            complete in any::<bool>(),
            flip in 1u32..,
        ) {
            let p = v4_packet(ihl, tcp, frag, len_delta, cut, body);
            let Ok(facts) = parse(&p) else {
                return Ok(());
            };
            let shape = noted_shape(&facts);
            prop_assert_eq!(shape != 0, !facts.is_fragment && facts.ports().is_some());
            if shape == 0 {
                return Ok(());
            }
            let hl = usize::from(ihl) * 4;
            prop_assert_eq!(noted_rewrite_len(shape) as usize, rewrite_len(&facts));
            let mut to = Endpoint { addr: [0; 16], port };
            to.addr[..4].copy_from_slice(&addr);
            let (sport, dport) = facts.ports().unwrap_or_default();
            if same {
                to = match manip {
                    Manip::Src => Endpoint { addr: facts.src, port: sport },
                    Manip::Dst => Endpoint { addr: facts.dst, port: dport },
                };
            }
            let fp = facts.fingerprint();
            let mut stale = p.clone();
            prop_assert_eq!(
                manip_noted(&mut stale, (shape, fp ^ flip), manip, &to, (partial, complete)),
                Noted::Stale
            );
            prop_assert_eq!(&stale, &p);
            let (mut noted, mut general) = (p.clone(), p.clone());
            let n = manip_noted(&mut noted, (shape, fp), manip, &to, (partial, complete));
            let whole = hl + if tcp { 20 } else { 8 } <= p.len().min(facts.total_len as usize);
            match n {
                Noted::Stale => prop_assert!(!whole),
                Noted::Translated => {
                    prop_assert!(whole && same);
                    prop_assert_eq!(&noted, &p);
                }
                Noted::Done { rewrite, fingerprint } => {
                    prop_assert!(whole && !same);
                    // The checksum delta only for a CHECKSUM_COMPLETE skb.
                    let want = manip_packet(&mut general, &facts, manip, &to, partial)
                        .map(|r| Rewrite { csum_delta: if complete { r.csum_delta } else { 0 }, ..r });
                    prop_assert_eq!(Ok(rewrite), want);
                    prop_assert_eq!(&noted, &general);
                    let now = rewritten_fingerprint(&facts, manip, &to);
                    prop_assert_eq!(fingerprint, (manip == Manip::Dst).then_some(now));
                    prop_assert_eq!(Ok(now), parse(&noted).map(|f| f.fingerprint()));
                }
            }
            if let Noted::Stale = n {
                prop_assert_eq!(&noted, &p);
            }
        }

        /// Whatever the bytes, shape and fingerprint, a rewrite from a note
        /// (IPv4's or IPv6's) happens only to a packet that parses, has
        /// that shape and that fingerprint: anything else is left as it was.
        #[test]
        fn noted_rewrite_only_of_the_noted_packet(
            mut p in proptest::collection::vec(any::<u8>(), 0..72),
            version in prop_oneof![Just(0x40u8), Just(0x60u8), any::<u8>()],
            proto in prop_oneof![Just(IPPROTO_TCP), Just(IPPROTO_UDP), any::<u8>()],
            shape in prop_oneof![Just(SHAPE_V6), Just(SHAPE_V6 | SHAPE_TCP), any::<u8>()],
            fp in any::<u32>(),
            use_fp in any::<bool>(),
            manip in prop_oneof![Just(Manip::Src), Just(Manip::Dst)],
            port in any::<u16>(),
        ) {
            // The protocol where the version's header has it.
            let at = if version >> 4 == 6 { 6 } else { 9 };
            if p.len() > at {
                p[0] = version | (p[0] & 0x0f);
                p[at] = proto;
            }
            let parsed = parse(&p).ok();
            let fp = match (&parsed, use_fp) {
                (Some(f), true) => f.fingerprint(),
                _ => fp,
            };
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&[10, 0, 0, 1]);
            let to = Endpoint { addr, port };
            for v6 in [false, true] {
                let mut out = p.clone();
                let noted = if v6 {
                    manip_noted_v6(&mut out, (shape, fp), manip, &to, false)
                } else {
                    manip_noted(&mut out, (shape, fp), manip, &to, (false, true))
                };
                match noted {
                    Noted::Done { .. } => {
                        let f = parsed.as_ref().expect("a rewritten packet parses");
                        prop_assert_eq!(noted_shape(f), shape);
                        prop_assert_eq!(f.fingerprint(), fp);
                        prop_assert_eq!(f.family == Family::Ipv6, v6);
                    }
                    _ => prop_assert_eq!(&out, &p),
                }
            }
        }
    }

    /// An IPv6 TCP or UDP packet from `body` (at least 40 + 20 bytes):
    /// next header `next`, the stated length `len_delta` off the headers'
    /// (so the payload may be cut or padded), `cut` bytes cut off the end.
    fn v6_packet(next: u8, tcp: bool, len_delta: i32, cut: usize, body: Vec<u8>) -> Vec<u8> {
        let full = if tcp { 20 } else { 8 };
        let mut p = body;
        p[0] = 0x60 | (p[0] & 0x0f);
        p[6] = next;
        let payload = full + len_delta;
        p[4..6].copy_from_slice(&(payload.max(0) as u16).to_be_bytes());
        p.truncate(p.len() - cut);
        p
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// IPv6: a rewrite from the note, through the kernel's window (the
        /// first `noted_rewrite_len_v6` bytes), writes the bytes and reports
        /// the [`Rewrite`] of [`manip_packet`] on the whole packet's parse,
        /// and the fingerprint of a parse of the result; it is taken for
        /// every TCP or UDP packet whose transport header follows the fixed
        /// header and whose parse finds the ports, leaves a packet already
        /// translated alone, and with any other fingerprint writes nothing.
        #[test]
        fn noted_rewrite_v6_is_manip_packet(
            tcp in any::<bool>(),
            other_next in any::<bool>(),
            len_delta in -12i32..=40,
            cut in 0usize..=60,
            body in proptest::collection::vec(any::<u8>(), 120),
            manip in prop_oneof![Just(Manip::Src), Just(Manip::Dst)],
            addr in any::<[u8; 16]>(),
            same in any::<bool>(),
            port in any::<u16>(),
            partial in any::<bool>(),
            flip in 1u32..,
        ) {
            let next = match (other_next, tcp) {
                (true, _) => body[6],
                (false, true) => IPPROTO_TCP,
                (false, false) => IPPROTO_UDP,
            };
            let p = v6_packet(next, tcp, len_delta, cut, body);
            let Ok(facts) = parse(&p) else {
                return Ok(());
            };
            let shape = noted_shape(&facts);
            prop_assert_eq!(
                shape != 0,
                matches!(facts.proto, IPPROTO_TCP | IPPROTO_UDP)
                    && !facts.is_fragment
                    && facts.ports().is_some()
                    && facts.l4_offset == 40
            );
            if shape == 0 {
                return Ok(());
            }
            prop_assert_eq!(shape & 0x0f, 0);
            prop_assert_eq!(noted_rewrite_len_v6(shape) as usize, rewrite_len(&facts));
            let (sport, dport) = facts.ports().unwrap_or_default();
            let to = match (same, manip) {
                (true, Manip::Src) => Endpoint { addr: facts.src, port: sport },
                (true, Manip::Dst) => Endpoint { addr: facts.dst, port: dport },
                (false, _) => Endpoint { addr, port },
            };
            let window = p.len().min(noted_rewrite_len_v6(shape) as usize);
            let fp = facts.fingerprint();
            let mut stale = p.clone();
            prop_assert_eq!(
                manip_noted_v6(&mut stale[..window], (shape, fp ^ flip), manip, &to, partial),
                Noted::Stale
            );
            prop_assert_eq!(&stale, &p);
            // And never as an IPv4 shape.
            prop_assert_eq!(
                manip_noted(&mut stale[..window], (shape, fp), manip, &to, (partial, true)),
                Noted::Stale
            );
            prop_assert_eq!(&stale, &p);
            let (mut noted, mut general) = (p.clone(), p.clone());
            let n = manip_noted_v6(&mut noted[..window], (shape, fp), manip, &to, partial);
            match n {
                Noted::Stale => prop_assert!(false, "a noted packet went stale"),
                Noted::Translated => {
                    let here = match manip {
                        Manip::Src => Endpoint { addr: facts.src, port: sport },
                        Manip::Dst => Endpoint { addr: facts.dst, port: dport },
                    };
                    prop_assert_eq!(to, here);
                    prop_assert_eq!(&noted, &p);
                }
                Noted::Done { rewrite, fingerprint } => {
                    prop_assert_eq!(Ok(rewrite), manip_packet(&mut general, &facts, manip, &to, partial));
                    prop_assert_eq!(&noted, &general);
                    let now = rewritten_fingerprint(&facts, manip, &to);
                    prop_assert_eq!(fingerprint, (manip == Manip::Dst).then_some(now));
                    prop_assert_eq!(Ok(now), parse(&noted).map(|f| f.fingerprint()));
                }
            }
        }
    }

    proptest! {
        /// `translated_endpoint` is the endpoint of the inverted tuple,
        /// for ICMP (whose inverse keeps the id and inverts the type) and
        /// protocols with ports; `translated_endpoint_of_bytes` gives the
        /// same from the tuple's bytes.
        #[test]
        fn translated_endpoint_is_the_inverse_endpoint(
            v6 in any::<bool>(),
            proto in prop_oneof![Just(IPPROTO_TCP), Just(IPPROTO_UDP), Just(IPPROTO_ICMP),
                                 Just(IPPROTO_ICMPV6), Just(IPPROTO_SCTP)],
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            a in any::<u16>(),
            b in any::<u16>(),
            manip in prop_oneof![Just(Manip::Src), Just(Manip::Dst)],
        ) {
            let t = Tuple {
                family: if v6 { Family::Ipv6 } else { Family::Ipv4 },
                proto,
                src,
                dst,
                src_port_or_icmp_id: a,
                dst_port_or_icmp_type_code: b,
            };
            prop_assert_eq!(translated_endpoint(&t, manip), endpoint(&t.invert(), manip));
            // And read from the packed tuple, as the kernel does.
            prop_assert_eq!(
                translated_endpoint_of_bytes(&t.to_bytes(), manip),
                translated_endpoint(&t, manip)
            );
        }
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(sctp_crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn kinds_and_hooks() {
        assert!(NatKind::Dnat.allowed_at(Hook::PreRouting));
        assert!(NatKind::Redirect.allowed_at(Hook::LocalOut));
        assert!(!NatKind::Dnat.allowed_at(Hook::PostRouting));
        assert!(NatKind::Snat.allowed_at(Hook::LocalIn));
        assert!(!NatKind::Masquerade.allowed_at(Hook::LocalIn));
        assert_eq!(NatKind::Masquerade.manip(), Manip::Src);
        assert_eq!(NatKind::Redirect.stage(), Stage::NatDst);
        for h in Hook::ALL {
            for k in [
                NatKind::Snat,
                NatKind::Dnat,
                NatKind::Masquerade,
                NatKind::Redirect,
            ] {
                if k.allowed_at(h) {
                    assert_eq!(Manip::for_hook(h), Some(k.manip()));
                }
            }
        }
        assert_eq!(NatKind::from_action_kind(11), Some(NatKind::Masquerade));
        assert_eq!(NatKind::from_action_kind(13), None);
    }

    #[test]
    fn addr_choice_in_range() {
        let mut min = [0u8; 16];
        let mut max = [0u8; 16];
        min[..4].copy_from_slice(&[10, 0, 0, 1]);
        max[..4].copy_from_slice(&[10, 0, 0, 4]);
        let r = NatRange::addrs(Family::Ipv4, min, max);
        let mut t = Tuple {
            family: Family::Ipv4,
            proto: IPPROTO_TCP,
            src: [0; 16],
            dst: [0; 16],
            src_port_or_icmp_id: 1000,
            dst_port_or_icmp_type_code: 80,
        };
        let mut seen = [false; 4];
        for i in 0..200u8 {
            t.src[..4].copy_from_slice(&[192, 168, i, 1]);
            let a = choose_addr(&t, &r, 0);
            assert!(r.contains_addr(&a));
            seen[usize::from(a[3] - 1)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
