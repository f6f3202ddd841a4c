// SPDX-License-Identifier: GPL-2.0-only

//! Internet checksum arithmetic (RFC 1071) and its incremental update
//! (RFC 1624), as NAT needs it.
//!
//! # Conventions
//!
//! Every value here is in *network-order numeric* form: a 16-bit word is
//! `u16::from_be_bytes` of its two bytes, a 32-bit value (an IPv4 address)
//! is `u32::from_be_bytes` of its four. A checksum field read that way and
//! written back with `to_be_bytes` is what goes on the wire.
//!
//! A *partial sum* is a `u32` one's-complement accumulator (Linux calls it
//! `__wsum`): [`add`] adds with end-around carry, [`fold`] folds it to 16
//! bits *without* complementing, and [`finish`] folds and complements, which
//! is what a checksum field holds. (Linux's `csum_fold` is our [`finish`].)
//!
//! The one's-complement sum does not depend on byte order (RFC 1071 §2(B)),
//! so a partial sum computed here is the byte-swap of the kernel's `__wsum`
//! over the same bytes on a little-endian machine. [`to_native_wsum`] turns
//! a 16-bit result into a value the kernel can pass to `csum_add`.
//!
//! # Checksum offload
//!
//! The `proto_replace*` functions mirror `inet_proto_csum_replace4/16` in
//! Linux's `net/core/utils.c`. With `partial == false` the field holds a
//! real checksum and is updated by RFC 1624 equation 3,
//! `HC' = ~(~HC + ~m + m')`. With `partial == true` the skb is
//! `CHECKSUM_PARTIAL`: the stack has put the folded pseudo-header sum, *not*
//! complemented, in the field and the NIC will sum the transport header
//! and payload (field included) and store the complement. Then only a
//! change covered by the pseudo-header (`pseudo == true`, an address) must
//! be applied, to the uncomplemented sum; a port change is summed by the
//! NIC itself and must not touch the field.

/// Adds two partial sums with end-around carry (Linux `csum_add`).
pub const fn add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(carry as u32)
}

/// Subtracts `b` from partial sum `a` in one's complement (Linux
/// `csum_sub`: adding the complement).
pub const fn sub(a: u32, b: u32) -> u32 {
    add(a, !b)
}

/// Folds a partial sum to 16 bits with end-around carry, not complemented.
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Folds and complements a partial sum: the value a checksum field holds
/// (Linux `csum_fold`).
pub const fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// One's-complement sum of `data` added to `initial`.
///
/// Words are big-endian byte pairs; an odd last byte is padded with a zero
/// byte on the right, as RFC 1071 says. The caller must start every sum it
/// combines with another at an even offset of the packet.
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    // A u64 accumulator cannot overflow for any slice that fits in memory
    // of a 64-bit machine below 2^48 bytes; fold it at the end.
    let mut acc = u64::from(initial);
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        if let [a, b] = w {
            acc += u64::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [last] = words.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    fold64(acc)
}

/// Folds a 64-bit accumulator to a 32-bit partial sum.
const fn fold64(acc: u64) -> u32 {
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    s as u32
}

/// The Internet checksum of `data`: the complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// Partial sum of a 32-bit value: its two 16-bit halves.
pub const fn sum32(v: u32) -> u32 {
    add(v >> 16, v & 0xffff)
}

/// Partial sum of a 16-byte value (an IPv6 address).
#[inline]
pub fn sum128(v: &[u8; 16]) -> u32 {
    sum(v, 0)
}

/// Partial sum of the IPv4 pseudo-header of TCP, UDP and UDP-Lite
/// (RFC 793 §3.1, RFC 768): source, destination, zero and protocol, and
/// the transport length.
pub const fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    let s = add(
        sum32(u32::from_be_bytes(src)),
        sum32(u32::from_be_bytes(dst)),
    );
    add(s, add(proto as u32, len as u32))
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1) of TCP, UDP and
/// ICMPv6: source, destination, 32-bit upper-layer length and next header.
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u32 {
    let s = add(sum128(src), sum128(dst));
    add(s, add(sum32(len), u32::from(proto)))
}

/// RFC 1624 equation 3 on a real checksum: the field `check` covered data
/// whose partial sum changes by `-from + to` (`from`/`to` are partial sums).
const fn replace_sum(check: u16, from: u32, to: u32) -> u16 {
    finish(add(sub((!check) as u32, from), to))
}

/// Updates a checksum for a 16-bit word of the data changing from `from`
/// to `to` (Linux `csum_replace2`; the IPv4 header checksum). Inlined: a
/// few instructions, called on every NAT rewrite, where the call cost more.
#[inline]
pub fn replace2(check: &mut u16, from: u16, to: u16) {
    *check = replace_sum(*check, u32::from(from), u32::from(to));
}

/// Updates a checksum for a 32-bit value of the data changing from `from`
/// to `to` (Linux `csum_replace4`; an IPv4 address in the IP header).
/// Inlined, as [`replace2`].
#[inline]
pub fn replace4(check: &mut u16, from: u32, to: u32) {
    *check = replace_sum(*check, sum32(from), sum32(to));
}

/// Updates a checksum for a 16-byte value of the data changing from
/// `from` to `to`.
pub fn replace16(check: &mut u16, from: &[u8; 16], to: &[u8; 16]) {
    *check = replace_sum(*check, sum128(from), sum128(to));
}

/// Applies the change `-from + to` (partial sums) to a transport checksum
/// field, the way `inet_proto_csum_replace4` and `inet_proto_csum_replace16`
/// do in Linux's `net/core/utils.c`:
///
/// - not `partial`: RFC 1624 on the real checksum, whatever `pseudo` is;
/// - `partial` and `pseudo`: the field holds the uncomplemented folded
///   pseudo-header sum, so add the change to it directly
///   (`~csum_fold(csum_add(csum_sub(csum_unfold(*sum), from), to))`);
/// - `partial` and not `pseudo`: the NIC sums the changed bytes itself;
///   leave the field alone.
///
/// Inlined, as [`replace2`]: two calls per NAT rewrite of a port.
#[inline]
pub fn proto_replace_sum(check: &mut u16, from: u32, to: u32, pseudo: bool, partial: bool) {
    if !partial {
        *check = replace_sum(*check, from, to);
    } else if pseudo {
        *check = fold(add(sub(u32::from(*check), from), to));
    }
}

/// [`proto_replace_sum`] for a 16-bit word (Linux
/// `inet_proto_csum_replace2`; a port or ICMP id, with `pseudo == false`).
#[inline]
pub fn proto_replace2(check: &mut u16, from: u16, to: u16, pseudo: bool, partial: bool) {
    proto_replace_sum(check, u32::from(from), u32::from(to), pseudo, partial);
}

/// [`proto_replace_sum`] for a 32-bit value (Linux
/// `inet_proto_csum_replace4`; an IPv4 address, with `pseudo == true`).
#[inline]
pub fn proto_replace4(check: &mut u16, from: u32, to: u32, pseudo: bool, partial: bool) {
    proto_replace_sum(check, sum32(from), sum32(to), pseudo, partial);
}

/// [`proto_replace_sum`] for a 16-byte value (Linux
/// `inet_proto_csum_replace16`; an IPv6 address, with `pseudo == true`).
pub fn proto_replace16(
    check: &mut u16,
    from: &[u8; 16],
    to: &[u8; 16],
    pseudo: bool,
    partial: bool,
) {
    proto_replace_sum(check, sum128(from), sum128(to), pseudo, partial);
}

/// UDP's checksum value that means "no checksum" on IPv4 (RFC 768).
pub const UDP_NO_CHECKSUM: u16 = 0;

/// What a UDP sender transmits instead of a computed checksum of zero
/// (RFC 768: "all ones"; Linux `CSUM_MANGLED_0`).
pub const CSUM_MANGLED_0: u16 = 0xffff;

/// A computed UDP checksum as it goes on the wire: zero becomes
/// [`CSUM_MANGLED_0`], because zero would mean "no checksum".
pub const fn udp_wire(check: u16) -> u16 {
    if check == 0 {
        CSUM_MANGLED_0
    } else {
        check
    }
}

/// A 16-bit network-order sum as a native-endian `__wsum` for the kernel's
/// `csum_add`: its big-endian bytes read in native order.
///
/// The one's-complement sum commutes with byte swapping, so the kernel's
/// native-order sum over some bytes equals this value's bytes read natively.
pub const fn to_native_wsum(v: u16) -> u32 {
    u16::from_ne_bytes(v.to_be_bytes()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn odd_length_pads_right() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn ipv4_header_checksum() {
        // A well-known header: checksum b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(checksum(&h), 0);
        // Change the destination and update incrementally.
        let mut c = 0xb861;
        replace4(&mut c, 0xc0a8_00c7, 0x0a00_0001);
        h[10] = 0;
        h[11] = 0;
        h[16..20].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(c, checksum(&h));
    }

    #[test]
    fn partial_leaves_ports_alone() {
        let mut c = 0x1234;
        proto_replace2(&mut c, 80, 8080, false, true);
        assert_eq!(c, 0x1234);
        proto_replace4(&mut c, 0x0a00_0001, 0x0a00_0002, true, true);
        assert_eq!(c, 0x1235);
    }

    #[test]
    fn native_wsum_roundtrip() {
        let w = to_native_wsum(0x1234);
        assert_eq!(w.to_ne_bytes()[..2], [0x12, 0x34]);
        assert_eq!(udp_wire(0), 0xffff);
        assert_eq!(udp_wire(7), 7);
    }
}
