// SPDX-License-Identifier: GPL-2.0-only

//! Parsing the headers of an IPv4 or IPv6 packet into [`PacketFacts`], the
//! fields the rule evaluator matches on.
//!
//! The input starts at the network header. It needs to hold the headers
//! only, not the whole packet: the kernel copies (or points at) the linear
//! part it needs, and the lengths used for counters come from the IP header.
//!
//! The network layer must be complete and well formed, or [`parse`] returns
//! a [`PacketError`]: a firewall cannot say anything about a packet whose
//! addresses it cannot read. The transport layer is optional: a non-first
//! fragment, an unknown protocol, or a transport header that is cut short
//! gives facts without ports ([`L4::Absent`] or [`L4::Truncated`]), so that
//! address rules still apply and port rules do not match.

use crate::hooks::Family;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of DCCP.
pub const IPPROTO_DCCP: u8 = 33;
/// IP protocol number of GRE.
pub const IPPROTO_GRE: u8 = 47;
/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;
/// IP protocol number of AH.
pub const IPPROTO_AH: u8 = 51;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 "no next header".
pub const IPPROTO_NONE: u8 = 59;
/// IP protocol number of SCTP.
pub const IPPROTO_SCTP: u8 = 132;
/// IP protocol number of UDP-Lite.
pub const IPPROTO_UDPLITE: u8 = 136;

/// IPv6 extension header: hop-by-hop options.
const NEXTHDR_HOP: u8 = 0;
/// IPv6 extension header: routing.
const NEXTHDR_ROUTING: u8 = 43;
/// IPv6 extension header: fragment.
const NEXTHDR_FRAGMENT: u8 = 44;
/// IPv6 extension header: destination options.
const NEXTHDR_DEST: u8 = 60;

/// Most IPv6 extension headers walked before giving up. Real packets carry a
/// handful; the bound keeps the walk short on hostile input.
pub const MAX_IPV6_EXT_HEADERS: usize = 16;

/// TCP flag bits as in the TCP header's flags byte.
pub mod tcp_flag {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// Why a packet could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// The input is empty or its IP version is neither 4 nor 6.
    BadVersion,
    /// The input ends inside the IP header or an IPv6 extension header.
    Truncated,
    /// The IPv4 header length is below 20 bytes, or the total length is
    /// shorter than the header.
    BadHeaderLength,
    /// More than [`MAX_IPV6_EXT_HEADERS`] IPv6 extension headers.
    TooManyExtHeaders,
}

impl PacketError {
    /// Short description in words.
    pub const fn message(&self) -> &'static str {
        match self {
            Self::BadVersion => "not an IPv4 or IPv6 packet",
            Self::Truncated => "packet ends inside its IP headers",
            Self::BadHeaderLength => "bad IPv4 header or total length",
            Self::TooManyExtHeaders => "too many IPv6 extension headers",
        }
    }
}

impl core::fmt::Display for PacketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

/// What is known about the transport header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// No transport header to look at: a non-first fragment, ESP, "no next
    /// header", or a protocol rnf does not parse.
    Absent,
    /// The protocol has a header rnf parses, but the input ends inside it or
    /// it is malformed (for example a TCP data offset below 5).
    Truncated,
    /// A protocol with 16-bit ports at the start of its header (UDP,
    /// UDP-Lite, SCTP, DCCP).
    Ports {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// TCP.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// The flags byte ([`tcp_flag`] bits).
        flags: u8,
    },
    /// ICMP for IPv4 or ICMPv6 for IPv6.
    Icmp {
        /// Message type.
        ty: u8,
        /// Message code.
        code: u8,
    },
}

/// The header fields of one packet that rules can match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketFacts {
    /// Address family.
    pub family: Family,
    /// Source address; an IPv4 address fills the first 4 bytes, the rest
    /// is zero.
    pub src: [u8; 16],
    /// Destination address, laid out like [`src`](Self::src).
    pub dst: [u8; 16],
    /// Transport protocol: the IPv4 protocol field, or for IPv6 the next
    /// header after the extension headers.
    pub proto: u8,
    /// Length of the packet from the start of the IP header, as the IP
    /// header states it (IPv6: 40 + payload length).
    pub total_len: u32,
    /// Fragment offset in 8-byte units (0 for an unfragmented packet or a
    /// first fragment).
    pub frag_offset: u16,
    /// Whether the packet is a fragment (IPv4: offset or MF set; IPv6: a
    /// fragment header is present).
    pub is_fragment: bool,
    /// Offset of the transport header from the start of the input.
    pub l4_offset: usize,
    /// Transport header fields.
    pub l4: L4,
    /// Offset of the transport payload (after the TCP, UDP or ICMP header)
    /// from the start of the input, if the transport header was parsed.
    pub payload_offset: Option<usize>,
}

impl PacketFacts {
    /// Whether this is a fragment other than the first: it has no
    /// transport header.
    pub const fn is_later_fragment(&self) -> bool {
        self.frag_offset != 0
    }

    /// Source and destination port, if the transport protocol has ports.
    pub const fn ports(&self) -> Option<(u16, u16)> {
        match self.l4 {
            L4::Ports { sport, dport } | L4::Tcp { sport, dport, .. } => Some((sport, dport)),
            _ => None,
        }
    }

    /// TCP flags, for TCP.
    pub const fn tcp_flags(&self) -> Option<u8> {
        match self.l4 {
            L4::Tcp { flags, .. } => Some(flags),
            _ => None,
        }
    }

    /// ICMP (or ICMPv6) type and code.
    pub const fn icmp(&self) -> Option<(u8, u8)> {
        match self.l4 {
            L4::Icmp { ty, code } => Some((ty, code)),
            _ => None,
        }
    }

    /// A cheap fingerprint of the headers: addresses, protocol, stated
    /// length and ports (see [`fingerprint_of`]).
    #[inline(always)]
    pub fn fingerprint(&self) -> u32 {
        fingerprint_of(
            &self.src,
            &self.dst,
            self.proto,
            self.total_len,
            self.ports(),
        )
    }
}

/// Odd multipliers of [`fingerprint_of`], one per 64-bit header word.
const FP_KEYS: [u64; 5] = [
    0x9e37_79b9_7f4a_7c15,
    0xff51_afd7_ed55_8ccd,
    0xc4ce_b9fe_1a85_ec53,
    0xd6e8_feb8_6659_fd93,
    0xa076_1d64_78bd_642f,
];

/// The fingerprint of a packet with these headers: tells the packet a
/// per-CPU note was made for from another that reuses its buffer address
/// (a mismatch only costs a lookup). Every hook after tracking computes
/// it, and a NAT rewrite for the headers it wrote, so it is a multilinear
/// multiply-shift hash (the high half of a sum of products, five
/// multiplications) rather than a chain of mixing rounds: any one changed
/// header byte changes it. Like the mixing chain it replaced, its constants
/// are fixed: it guards against a stale note, not a chosen collision (a
/// packet would also have to reuse the buffer of the noted one between
/// that one's hooks).
#[inline(always)]
pub fn fingerprint_of(
    src: &[u8; 16],
    dst: &[u8; 16],
    proto: u8,
    total_len: u32,
    ports: Option<(u16, u16)>,
) -> u32 {
    let (s, d) = (u128::from_ne_bytes(*src), u128::from_ne_bytes(*dst));
    let ports = ports.map_or(0, |(sp, dp)| u64::from(sp) << 16 | u64::from(dp));
    let misc = u64::from(proto) << 56 | u64::from(total_len) << 32 | ports;
    let [k0, k1, k2, k3, k4] = FP_KEYS;
    let h = (s as u64)
        .wrapping_mul(k0)
        .wrapping_add(((s >> 64) as u64).wrapping_mul(k1))
        .wrapping_add((d as u64).wrapping_mul(k2))
        .wrapping_add(((d >> 64) as u64).wrapping_mul(k3))
        .wrapping_add(misc.wrapping_mul(k4));
    (h >> 32) as u32
}

/// [`fingerprint_of`] an IPv4 packet, from its addresses as 4 bytes
/// each: the same value (the zero upper bytes of the 16-byte layout drop
/// two of the five multiplications), for the hooks that read the fields
/// straight from the header ([`V4Ports`]).
#[inline(always)]
pub fn fingerprint_v4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    total_len: u32,
    (sport, dport): (u16, u16),
) -> u32 {
    // The low 64 bits of `u128::from_ne_bytes` of the padded address.
    let word = |a: [u8; 4]| u64::from_ne_bytes([a[0], a[1], a[2], a[3], 0, 0, 0, 0]);
    let misc = u64::from(proto) << 56
        | u64::from(total_len) << 32
        | u64::from(sport) << 16
        | u64::from(dport);
    let [k0, _, k2, _, k4] = FP_KEYS;
    let h = word(src)
        .wrapping_mul(k0)
        .wrapping_add(word(dst).wrapping_mul(k2))
        .wrapping_add(misc.wrapping_mul(k4));
    (h >> 32) as u32
}

/// What [`fingerprint_of`] covers of an IPv4 TCP or UDP packet, read
/// straight from its header where a later hook knows the packet from a
/// note (no parse): [`read`](Self::read) takes only a packet that is no
/// fragment, whose transport header lies whole within its stated length
/// and the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V4Ports {
    /// Offset of the transport header (the IP header's length).
    pub l4_offset: usize,
    /// TCP (else UDP).
    pub tcp: bool,
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Length of the packet as its IP header states it.
    pub total_len: u16,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl V4Ports {
    /// The fields of the packet in `pkt` (from its IP header on), if it is
    /// such a packet.
    #[inline(always)]
    pub fn read(pkt: &[u8]) -> Option<Self> {
        let (b0, proto) = (*pkt.first()?, *pkt.get(9)?);
        let tcp = match proto {
            IPPROTO_TCP => 0x10,
            IPPROTO_UDP => 0,
            _ => return None,
        };
        Self::read_shaped(pkt, b0 & 0x0f | tcp)
    }

    /// [`read`](Self::read) for a packet expected to have `shape`: its IP
    /// header's length in 32-bit words in the low four bits, `0x10` for
    /// TCP (else UDP). `None` for any other packet.
    #[inline(always)]
    pub fn read_shaped(pkt: &[u8], shape: u8) -> Option<Self> {
        let ihl = shape & 0x0f;
        let tcp = shape & 0x10 != 0;
        let l4_offset = usize::from(ihl) * 4;
        let (full, want) = if tcp {
            (20, IPPROTO_TCP)
        } else {
            (8, IPPROTO_UDP)
        };
        let Some(&[b0, _, l0, l1, _, _, f0, f1, _, proto, _, _, s0, s1, s2, s3, d0, d1, d2, d3]) =
            pkt.get(..20)
        else {
            return None;
        };
        let total_len = u16::from_be_bytes([l0, l1]);
        // Version 4 and that header length and protocol, neither more
        // fragments nor an offset, the transport header whole.
        if ihl < 5 || b0 != 0x40 | ihl || proto != want {
            return None;
        }
        if u16::from_be_bytes([f0, f1]) & 0x3fff != 0
            || pkt.len().min(usize::from(total_len)) < l4_offset + full
        {
            return None;
        }
        let Some(&[p0, p1, p2, p3]) = pkt.get(l4_offset..l4_offset + 4) else {
            return None;
        };
        Some(Self {
            l4_offset,
            tcp,
            src: [s0, s1, s2, s3],
            dst: [d0, d1, d2, d3],
            total_len,
            sport: u16::from_be_bytes([p0, p1]),
            dport: u16::from_be_bytes([p2, p3]),
        })
    }

    /// What [`parse`] finds of the packet in `pkt` that these fields were
    /// [`read_shaped`](Self::read_shaped) from, completed from the bytes
    /// after the ports (TCP's data offset and flags), at fixed offsets;
    /// `None` where the parse would find the transport header cut short
    /// (a TCP data offset below 5), which the caller then parses.
    #[inline(always)]
    pub fn facts(&self, pkt: &[u8]) -> Option<PacketFacts> {
        let (sport, dport) = (self.sport, self.dport);
        let end = pkt.len().min(usize::from(self.total_len));
        let (l4, payload) = if self.tcp {
            let &[off, flags] = pkt
                .get(self.l4_offset + 12..self.l4_offset + 14)?
                .first_chunk()?;
            let hlen = usize::from(off >> 4) * 4;
            if hlen < 20 {
                return None;
            }
            let payload = self.l4_offset + hlen;
            (
                L4::Tcp {
                    sport,
                    dport,
                    flags,
                },
                (payload <= end).then_some(payload),
            )
        } else {
            (L4::Ports { sport, dport }, Some(self.l4_offset + 8))
        };
        let addr = |a: [u8; 4]| u128::from(u32::from_le_bytes(a)).to_le_bytes();
        Some(PacketFacts {
            family: Family::Ipv4,
            src: addr(self.src),
            dst: addr(self.dst),
            proto: self.proto(),
            total_len: u32::from(self.total_len),
            frag_offset: 0,
            is_fragment: false,
            l4_offset: self.l4_offset,
            l4,
            payload_offset: payload,
        })
    }

    /// The transport protocol.
    #[inline(always)]
    pub fn proto(&self) -> u8 {
        if self.tcp {
            IPPROTO_TCP
        } else {
            IPPROTO_UDP
        }
    }

    /// [`fingerprint_of`] these fields: a parse's
    /// [`fingerprint`](PacketFacts::fingerprint) of the packet, where the
    /// parse finds its ports.
    #[inline(always)]
    pub fn fingerprint(&self) -> u32 {
        self.fingerprint_with(self.src, self.dst, (self.sport, self.dport))
    }

    /// [`fingerprint`](Self::fingerprint) with other addresses and ports.
    #[inline(always)]
    pub fn fingerprint_with(&self, src: [u8; 4], dst: [u8; 4], ports: (u16, u16)) -> u32 {
        fingerprint_v4(src, dst, self.proto(), u32::from(self.total_len), ports)
    }
}

/// The [`fingerprint`](PacketFacts::fingerprint) and stated length
/// (`total_len`) of the packet in `pkt` (from its IP header on), read
/// straight from its headers where a later hook knows the packet from a
/// note: an IPv4 packet [`V4Ports::read`] takes, or an IPv6 TCP or UDP
/// packet whose transport header follows the fixed header (no extension
/// headers) and lies whole within its stated length and the buffer.
/// `None` for any other packet.
#[inline(always)]
pub fn noted_fields(pkt: &[u8]) -> Option<(u32, u32)> {
    // IPv4 first, exactly as before IPv6 was read here: a dispatch on the
    // version ahead of it cost IPv4 packets 18 instructions.
    match V4Ports::read(pkt) {
        Some(h) => Some((h.fingerprint(), u32::from(h.total_len))),
        None => noted_fields_v6(pkt),
    }
}

/// [`noted_fields`] of an IPv6 packet (`None` for any other). Out of line,
/// off the IPv4 path.
#[inline(never)]
fn noted_fields_v6(pkt: &[u8]) -> Option<(u32, u32)> {
    noted_facts_v6(pkt).map(|f| (f.fingerprint(), f.total_len))
}

/// What a parse finds of an IPv6 TCP or UDP packet whose transport header
/// follows the fixed header, read at fixed offsets where a later hook
/// knows the packet from a note: `None` for any other packet, or unless
/// the fixed part of the transport header lies within the stated length
/// and `pkt`. (A TCP header's data offset is not looked at: where a parse
/// finds it too small, it finds no ports, and its fingerprint is another.)
#[inline(always)]
pub fn noted_facts_v6(pkt: &[u8]) -> Option<PacketFacts> {
    let hdr: &[u8; 40] = pkt.first_chunk()?;
    if hdr[0] >> 4 != 6 {
        return None;
    }
    let proto = hdr[6];
    let full = match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        _ => return None,
    };
    let total_len = 40 + u32::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if pkt.len().min(total_len as usize) < 40 + full {
        return None;
    }
    let (src, dst) = (*hdr[8..].first_chunk()?, *hdr[24..].first_chunk()?);
    let &[p0, p1, p2, p3] = pkt.get(40..44)?.first_chunk()?;
    let (sport, dport) = (u16::from_be_bytes([p0, p1]), u16::from_be_bytes([p2, p3]));
    let l4 = if proto == IPPROTO_TCP {
        L4::Tcp {
            sport,
            dport,
            flags: *pkt.get(53)?,
        }
    } else {
        L4::Ports { sport, dport }
    };
    Some(PacketFacts {
        family: Family::Ipv6,
        src,
        dst,
        proto,
        total_len,
        frag_offset: 0,
        is_fragment: false,
        l4_offset: 40,
        l4,
        payload_offset: None,
    })
}

/// Copies `src` into the start of `dst`, as far as both reach.
///
/// Byte by byte rather than `copy_from_slice`, which has a panic path for
/// unequal lengths that the kernel's objtool does not know as `noreturn`.
pub(crate) fn copy_into(dst: &mut [u8], src: &[u8]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    match buf.get(at..at.checked_add(2)?)? {
        [a, b] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

fn byte(buf: &[u8], at: usize) -> Option<u8> {
    buf.get(at).copied()
}

/// Parses the packet in `buf`, which starts at the IP header. Inlined: the
/// packet path parses at every hook with work, and a call costs there.
#[inline(always)]
pub fn parse(buf: &[u8]) -> Result<PacketFacts, PacketError> {
    match byte(buf, 0).map(|b| b >> 4) {
        Some(4) => parse_ipv4(buf),
        Some(6) => parse_ipv6(buf),
        _ => Err(PacketError::BadVersion),
    }
}

// Inlined: every hook with work parses, and a call costs more than the
// parse under emulation. The fixed header is read as one 20-byte array, so
// its fields are loads at constant offsets with no bounds check each.
#[inline(always)]
fn parse_ipv4(buf: &[u8]) -> Result<PacketFacts, PacketError> {
    let hdr: &[u8; 20] = buf.first_chunk().ok_or(PacketError::Truncated)?;
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(PacketError::BadHeaderLength);
    }
    if buf.len() < ihl {
        return Err(PacketError::Truncated);
    }
    let total_len = u16::from_be_bytes([hdr[2], hdr[3]]);
    if usize::from(total_len) < ihl {
        return Err(PacketError::BadHeaderLength);
    }
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    let frag_offset = frag & 0x1fff;
    let more_fragments = frag & 0x2000 != 0;
    let proto = hdr[9];
    // An IPv4 address fills the first 4 bytes of the 16: as a number whose
    // low 32 bits are the address bytes in little-endian order.
    let addr = |a: [u8; 4]| u128::from(u32::from_le_bytes(a)).to_le_bytes();
    let src = addr([hdr[12], hdr[13], hdr[14], hdr[15]]);
    let dst = addr([hdr[16], hdr[17], hdr[18], hdr[19]]);
    // Bytes beyond the stated total length (link-layer padding) are not
    // part of the packet.
    let end = buf.len().min(usize::from(total_len));
    let mut facts = PacketFacts {
        family: Family::Ipv4,
        src,
        dst,
        proto,
        total_len: u32::from(total_len),
        frag_offset,
        is_fragment: frag_offset != 0 || more_fragments,
        l4_offset: ihl,
        l4: L4::Absent,
        payload_offset: None,
    };
    if frag_offset == 0 {
        let l4 = buf.get(ihl..end).unwrap_or(&[]);
        let (l4, payload) = parse_l4(Family::Ipv4, proto, l4);
        facts.l4 = l4;
        facts.payload_offset = payload.map(|p| ihl + p);
    }
    Ok(facts)
}

fn parse_ipv6(buf: &[u8]) -> Result<PacketFacts, PacketError> {
    let hdr: &[u8; 40] = buf.first_chunk().ok_or(PacketError::Truncated)?;
    let payload_len = u16::from_be_bytes([hdr[4], hdr[5]]);
    let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
    if let (Some(s), Some(d)) = (hdr[8..].first_chunk::<16>(), hdr[24..].first_chunk::<16>()) {
        (src, dst) = (*s, *d);
    }
    let total_len = 40 + u32::from(payload_len);
    let end = buf.len().min(40 + usize::from(payload_len));
    let mut next = hdr[6];
    let mut off = 40usize;
    let mut frag_offset = 0u16;
    let mut is_fragment = false;
    let mut walked = 0;
    loop {
        let len = match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let l = byte(buf, off + 1).ok_or(PacketError::Truncated)?;
                (usize::from(l) + 1) * 8
            }
            IPPROTO_AH => {
                let l = byte(buf, off + 1).ok_or(PacketError::Truncated)?;
                (usize::from(l) + 2) * 4
            }
            NEXTHDR_FRAGMENT => 8,
            _ => break,
        };
        walked += 1;
        if walked > MAX_IPV6_EXT_HEADERS {
            return Err(PacketError::TooManyExtHeaders);
        }
        let ext = buf.get(off..off + len).ok_or(PacketError::Truncated)?;
        let this = next;
        next = byte(ext, 0).unwrap_or(0);
        off += len;
        if this == NEXTHDR_FRAGMENT {
            is_fragment = true;
            frag_offset = be16(ext, 2).unwrap_or(0) >> 3;
            if frag_offset != 0 {
                // Later fragments carry no further headers we can trust.
                break;
            }
        }
    }
    let mut facts = PacketFacts {
        family: Family::Ipv6,
        src,
        dst,
        proto: next,
        total_len,
        frag_offset,
        is_fragment,
        l4_offset: off,
        l4: L4::Absent,
        payload_offset: None,
    };
    if frag_offset == 0 {
        let l4 = buf.get(off..end).unwrap_or(&[]);
        let (l4, payload) = parse_l4(Family::Ipv6, next, l4);
        facts.l4 = l4;
        facts.payload_offset = payload.map(|p| off + p);
    }
    Ok(facts)
}

/// Parses a transport header; returns its facts and the offset of its
/// payload within `l4`.
#[inline(always)]
fn parse_l4(family: Family, proto: u8, l4: &[u8]) -> (L4, Option<usize>) {
    // Each header is read as an array of its fixed part: loads at constant
    // offsets, one length check per header.
    let ports = |h: &[u8]| match h {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0, 0),
    };
    match (family, proto) {
        (_, IPPROTO_TCP) => {
            let Some(h) = l4.first_chunk::<20>() else {
                return (L4::Truncated, None);
            };
            let hlen = usize::from(h[12] >> 4) * 4;
            if hlen < 20 {
                return (L4::Truncated, None);
            }
            let (sport, dport) = ports(h);
            // A header that claims more options than the input holds still
            // has valid ports and flags; only the payload is out of reach.
            let payload = (hlen <= l4.len()).then_some(hlen);
            (
                L4::Tcp {
                    sport,
                    dport,
                    flags: h[13],
                },
                payload,
            )
        }
        (_, IPPROTO_UDP | IPPROTO_UDPLITE) => match l4.first_chunk::<8>() {
            Some(h) => {
                let (sport, dport) = ports(h);
                (L4::Ports { sport, dport }, Some(8))
            }
            None => (L4::Truncated, None),
        },
        (_, IPPROTO_SCTP | IPPROTO_DCCP) => match l4.first_chunk::<12>() {
            Some(h) => {
                let (sport, dport) = ports(h);
                (L4::Ports { sport, dport }, Some(12))
            }
            None => (L4::Truncated, None),
        },
        (Family::Ipv4, IPPROTO_ICMP) | (Family::Ipv6, IPPROTO_ICMPV6) => {
            match l4.first_chunk::<8>() {
                Some(h) => (
                    L4::Icmp {
                        ty: h[0],
                        code: h[1],
                    },
                    Some(8),
                ),
                None => (L4::Truncated, None),
            }
        }
        _ => (L4::Absent, None),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// A header read without a parse ([`V4Ports::read`]) gives the
        /// fields and the fingerprint of a parse of the packet, and is had
        /// for every IPv4 TCP or UDP packet that parses with its ports, is
        /// no fragment and holds its whole transport header.
        #[test]
        fn v4_ports_read_is_the_parse(
            ihl in prop_oneof![5u8..=7, any::<u8>()],
            proto in prop_oneof![Just(IPPROTO_TCP), Just(IPPROTO_UDP), any::<u8>()],
            frag in prop_oneof![Just(0u16), Just(0x4000), Just(0x2000), any::<u16>()],
            len in prop_oneof![20u16..=80, any::<u16>()],
            cut in 0usize..=40,
            body in any::<[u8; 80]>(),
        ) {
            let mut p = body;
            p[0] = 0x40 | (ihl & 0x0f);
            p[9] = proto;
            p[2..4].copy_from_slice(&len.to_be_bytes());
            p[6..8].copy_from_slice(&frag.to_be_bytes());
            let p = &p[..80 - cut];
            let read = V4Ports::read(p);
            let parsed = parse(p).ok().filter(|f| {
                f.ports().is_some() && !f.is_fragment && matches!(f.proto, IPPROTO_TCP | IPPROTO_UDP)
            });
            match (read, parsed) {
                (Some(r), Some(f)) => {
                    prop_assert_eq!(r.fingerprint(), f.fingerprint());
                    prop_assert_eq!(&r.src[..], &f.src[..4]);
                    prop_assert_eq!(&r.dst[..], &f.dst[..4]);
                    prop_assert_eq!(r.proto(), f.proto);
                    prop_assert_eq!(u32::from(r.total_len), f.total_len);
                    prop_assert_eq!(r.l4_offset, f.l4_offset);
                    prop_assert_eq!(Some((r.sport, r.dport)), f.ports());
                }
                (None, Some(f)) => {
                    let full = if f.proto == IPPROTO_TCP { 20 } else { 8 };
                    let whole = f.l4_offset + full <= p.len().min(f.total_len as usize);
                    prop_assert!(!whole, "not read: {:?}", f);
                }
                // What does not parse may still read (the fingerprint then
                // tells it from any noted packet).
                _ => {}
            }
        }

        /// The facts completed from a shaped read ([`V4Ports::facts`]) are
        /// the parse's, and are had for every packet read whose parse
        /// finds its ports.
        #[test]
        fn v4_ports_facts_are_the_parse(
            ihl in prop_oneof![5u8..=7, any::<u8>()],
            proto in prop_oneof![Just(IPPROTO_TCP), Just(IPPROTO_UDP), any::<u8>()],
            doff in prop_oneof![5u8..=8, any::<u8>()],
            len in prop_oneof![20u16..=100, any::<u16>()],
            cut in 0usize..=60,
            body in any::<[u8; 100]>(),
        ) {
            let mut p = body;
            p[0] = 0x40 | (ihl & 0x0f);
            p[9] = proto;
            p[2..4].copy_from_slice(&len.to_be_bytes());
            p[6..8].copy_from_slice(&[0, 0]);
            let l4 = usize::from(ihl & 0x0f) * 4;
            if let Some(b) = p.get_mut(l4 + 12) {
                *b = doff << 4 | (*b & 0x0f);
            }
            let p = &p[..100 - cut];
            let Some(r) = V4Ports::read(p) else {
                return Ok(());
            };
            let parsed = parse(p).ok().filter(|f| f.ports().is_some());
            prop_assert_eq!(r.facts(p), parsed);
        }

        /// [`noted_fields`] of an IPv6 packet are a parse's fingerprint
        /// and stated length, and are had for every IPv6 TCP or UDP packet
        /// without extension headers that parses with its ports and holds
        /// its whole transport header; of an IPv4 packet, they are
        /// [`V4Ports::read`]'s.
        #[test]
        fn noted_fields_are_the_parse(
            v6 in any::<bool>(),
            proto in prop_oneof![Just(IPPROTO_TCP), Just(IPPROTO_UDP), Just(0u8), Just(44u8),
                                 Just(60u8), any::<u8>()],
            len in prop_oneof![0u16..=60, any::<u16>()],
            cut in 0usize..=60,
            body in any::<[u8; 100]>(),
        ) {
            let mut p = body;
            if v6 {
                p[0] = 0x60 | (p[0] & 0x0f);
                p[6] = proto;
                p[4..6].copy_from_slice(&len.to_be_bytes());
            } else {
                p[0] = 0x45;
                p[9] = proto;
                p[2..4].copy_from_slice(&len.to_be_bytes());
                p[6..8].copy_from_slice(&[0, 0]);
            }
            let p = &p[..100 - cut];
            let read = noted_fields(p);
            if !v6 {
                prop_assert_eq!(read, V4Ports::read(p).map(|h| (h.fingerprint(), u32::from(h.total_len))));
                return Ok(());
            }
            let parsed = parse(p).ok().filter(|f| {
                f.ports().is_some() && !f.is_fragment && f.l4_offset == 40
                    && matches!(f.proto, IPPROTO_TCP | IPPROTO_UDP)
            });
            match (read, parsed) {
                (Some((fp, total)), Some(f)) => {
                    prop_assert_eq!(fp, f.fingerprint());
                    prop_assert_eq!(total, f.total_len);
                }
                (None, Some(f)) => {
                    let full = if f.proto == IPPROTO_TCP { 20 } else { 8 };
                    prop_assert!(40 + full > p.len().min(f.total_len as usize), "not read: {:?}", f);
                }
                (Some(_), None) => {
                    // Read but not such a parse: only a TCP header whose data
                    // offset is too small (the parse finds no ports, so its
                    // fingerprint differs from any noted one).
                    prop_assert_eq!(proto, IPPROTO_TCP);
                    prop_assert!(p.get(52).is_some_and(|b| b >> 4 < 5));
                }
                (None, None) => {}
            }
        }

        /// [`fingerprint_v4`] is [`fingerprint_of`] the padded addresses.
        #[test]
        fn fingerprint_v4_is_fingerprint_of(
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            proto in any::<u8>(),
            len in any::<u16>(),
            ports in any::<(u16, u16)>(),
        ) {
            let pad = |a: [u8; 4]| {
                let mut p = [0u8; 16];
                p[..4].copy_from_slice(&a);
                p
            };
            prop_assert_eq!(
                fingerprint_v4(src, dst, proto, u32::from(len), ports),
                fingerprint_of(&pad(src), &pad(dst), proto, u32::from(len), Some(ports))
            );
        }

        /// Any one changed byte of the fingerprinted fields (an address
        /// byte, the protocol, a byte of the stated length, of either port,
        /// or ports appearing) changes the fingerprint.
        #[test]
        fn fingerprint_sees_every_byte(
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            proto in any::<u8>(),
            len in any::<u16>(),
            ports in any::<(u16, u16)>(),
            at in 0usize..39,
            flip in 1u8..=255,
        ) {
            let fp = |s: &[u8; 16], d: &[u8; 16], p: u8, l: u16, ports| {
                fingerprint_of(s, d, p, u32::from(l), ports)
            };
            let base = fp(&src, &dst, proto, len, Some(ports));
            let (mut s, mut d, mut p, mut l, mut pt) = (src, dst, proto, len, ports);
            match at {
                0..=15 => s[at] ^= flip,
                16..=31 => d[at - 16] ^= flip,
                32 => p ^= flip,
                33 | 34 => l ^= u16::from(flip) << (8 * (at - 33)),
                35 | 36 => pt.0 ^= u16::from(flip) << (8 * (at - 35)),
                _ => pt.1 ^= u16::from(flip) << (8 * (at - 37)),
            }
            prop_assert_ne!(base, fp(&s, &d, p, l, Some(pt)));
            if ports != (0, 0) {
                prop_assert_ne!(base, fp(&src, &dst, proto, len, None));
            }
        }
    }
    use super::*;

    fn v4(proto: u8, l4: &[u8]) -> [u8; 64] {
        let mut p = [0u8; 64];
        p[0] = 0x45;
        let total = (20 + l4.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[192, 168, 1, 2]);
        p[20..20 + l4.len()].copy_from_slice(l4);
        p
    }

    #[test]
    fn ipv4_tcp() {
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = tcp_flag::SYN;
        let p = v4(IPPROTO_TCP, &tcp);
        let f = parse(&p).unwrap();
        assert_eq!(f.family, Family::Ipv4);
        assert_eq!(&f.src[..4], &[10, 0, 0, 1]);
        assert_eq!(&f.src[4..], &[0; 12]);
        assert_eq!(f.ports(), Some((1234, 80)));
        assert_eq!(f.tcp_flags(), Some(tcp_flag::SYN));
        assert_eq!(f.total_len, 40);
        assert_eq!(f.payload_offset, Some(40));
        // Cut inside the TCP header: facts without L4.
        let f = parse(&p[..30]).unwrap();
        assert_eq!(f.l4, L4::Truncated);
        assert_eq!(f.ports(), None);
        // Cut inside the IP header: error.
        assert_eq!(parse(&p[..19]), Err(PacketError::Truncated));
    }

    #[test]
    fn ipv4_later_fragment_has_no_ports() {
        let mut p = v4(IPPROTO_UDP, &[0, 1, 0, 2, 0, 8, 0, 0]);
        p[6..8].copy_from_slice(&(0x2000u16 | 3).to_be_bytes());
        let f = parse(&p).unwrap();
        assert!(f.is_fragment && f.is_later_fragment());
        assert_eq!(f.frag_offset, 3);
        assert_eq!(f.l4, L4::Absent);
        // First fragment (MF set, offset 0) keeps its ports.
        p[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        let f = parse(&p).unwrap();
        assert!(f.is_fragment && !f.is_later_fragment());
        assert_eq!(f.ports(), Some((1, 2)));
    }

    #[test]
    fn ipv4_bad_lengths() {
        let mut p = v4(IPPROTO_UDP, &[0; 8]);
        p[0] = 0x44;
        assert_eq!(parse(&p), Err(PacketError::BadHeaderLength));
        let mut p = v4(IPPROTO_UDP, &[0; 8]);
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(parse(&p), Err(PacketError::BadHeaderLength));
        assert_eq!(parse(&[]), Err(PacketError::BadVersion));
        assert_eq!(parse(&[0x55; 40]), Err(PacketError::BadVersion));
    }

    #[test]
    fn ipv6_ext_headers() {
        let mut p = [0u8; 120];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&80u16.to_be_bytes());
        p[6] = NEXTHDR_HOP;
        p[8] = 0x20;
        p[24] = 0xfe;
        // hop-by-hop, 8 bytes, next = dest opts
        p[40] = NEXTHDR_DEST;
        p[41] = 0;
        // dest opts, 16 bytes, next = fragment
        p[48] = NEXTHDR_FRAGMENT;
        p[49] = 1;
        // fragment, next = AH, offset 0, M set
        p[64] = IPPROTO_AH;
        p[66..68].copy_from_slice(&1u16.to_be_bytes());
        // AH with payload len 1 => (1+2)*4 = 12 bytes, next = ICMPv6
        p[72] = IPPROTO_ICMPV6;
        p[73] = 1;
        p[84] = 128;
        p[85] = 0;
        let f = parse(&p).unwrap();
        assert_eq!(f.family, Family::Ipv6);
        assert_eq!(f.src[0], 0x20);
        assert_eq!(f.dst[0], 0xfe);
        assert_eq!(f.proto, IPPROTO_ICMPV6);
        assert_eq!(f.l4_offset, 84);
        assert!(f.is_fragment && !f.is_later_fragment());
        assert_eq!(f.icmp(), Some((128, 0)));
        assert_eq!(f.total_len, 120);
        // Non-first fragment.
        p[66..68].copy_from_slice(&(5u16 << 3).to_be_bytes());
        let f = parse(&p).unwrap();
        assert_eq!(f.proto, IPPROTO_AH);
        assert_eq!(f.l4, L4::Absent);
        assert_eq!(f.frag_offset, 5);
        // Truncated inside the extension headers.
        assert_eq!(parse(&p[..60]), Err(PacketError::Truncated));
    }

    #[test]
    fn ipv6_too_many_ext_headers() {
        let mut p = [0u8; 40 + 8 * 20];
        p[0] = 0x60;
        p[6] = NEXTHDR_DEST;
        for i in 0..20 {
            p[40 + 8 * i] = NEXTHDR_DEST;
        }
        assert_eq!(parse(&p), Err(PacketError::TooManyExtHeaders));
    }
}
