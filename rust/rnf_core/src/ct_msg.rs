// SPDX-License-Identifier: GPL-2.0-only

//! Encoding and decoding of the connection-tracking messages of the rnf
//! family: flows of a [`cmd::GET_CT`] dump and of [`cmd::CT_EVENT`]
//! notifications, tuples of [`cmd::DEL_CT`], the [`cmd::GET_CT_STATS`]
//! reply and the requests that change the table's limit and timeouts.
//!
//! The kernel encodes flows and statistics and decodes requests; `rnfctl`
//! does the opposite. Nothing here allocates or panics; decoders skip
//! attributes they do not know.
//!
//! [`cmd::GET_CT`]: crate::wire::cmd::GET_CT
//! [`cmd::CT_EVENT`]: crate::wire::cmd::CT_EVENT
//! [`cmd::DEL_CT`]: crate::wire::cmd::DEL_CT
//! [`cmd::GET_CT_STATS`]: crate::wire::cmd::GET_CT_STATS

use crate::ct::{Direction, TimeoutKey, Timeouts, Tuple, MAX_TIMEOUT_SECS};
use crate::hooks::Family;
use crate::wire::{
    attr, ct_counters, ct_event, ct_stats, ct_timeout, ct_tuple, AttrIter, AttrWriter, WireError,
};

/// Length of an address of `family` on the wire.
const fn addr_len(family: Family) -> usize {
    match family {
        Family::Ipv4 => 4,
        Family::Ipv6 => 16,
    }
}

/// The first [`addr_len`] bytes of an address.
fn wire_addr(family: Family, a: &[u8; 16]) -> &[u8] {
    a.get(..addr_len(family)).unwrap_or(a)
}

/// An address of `family` from the wire, laid out as in [`Tuple`] (IPv4
/// in the first 4 bytes, the rest zero).
fn addr_from_wire(family: Family, bytes: &[u8]) -> Result<[u8; 16], WireError> {
    if bytes.len() != addr_len(family) {
        return Err(WireError::BadLength);
    }
    let mut out = [0u8; 16];
    out.iter_mut().zip(bytes).for_each(|(o, b)| *o = *b);
    Ok(out)
}

/// Writes `t` as a nested attribute of type `ty` ([`attr::CT_ORIG`] or
/// [`attr::CT_REPLY`]) holding all six [`ct_tuple`] attributes.
pub fn encode_tuple(w: &mut AttrWriter<'_>, ty: u16, t: &Tuple) {
    let nest = w.begin_nested(ty);
    w.put_u8(ct_tuple::FAMILY, t.family as u8);
    w.put_u8(ct_tuple::PROTO, t.proto);
    w.put_bytes(ct_tuple::SRC, wire_addr(t.family, &t.src));
    w.put_bytes(ct_tuple::DST, wire_addr(t.family, &t.dst));
    w.put_u16(ct_tuple::SRC_PORT, t.src_port_or_icmp_id);
    w.put_u16(ct_tuple::DST_PORT, t.dst_port_or_icmp_type_code);
    w.end_nested(nest);
}

/// Decodes the payload of a [`attr::CT_ORIG`] or [`attr::CT_REPLY`]
/// attribute. All six [`ct_tuple`] attributes are required; the family
/// must be IPv4 or IPv6 ([`WireError::BadValue`]) and the addresses as
/// long as the family's ([`WireError::BadLength`]).
pub fn decode_tuple(payload: &[u8]) -> Result<Tuple, WireError> {
    let mut family = None;
    let mut proto = None;
    let mut src = None;
    let mut dst = None;
    let mut sport = None;
    let mut dport = None;
    for a in AttrIter::new(payload) {
        let a = a?;
        match a.ty {
            ct_tuple::FAMILY => {
                family = Some(Family::from_u8(a.u8()?).ok_or(WireError::BadValue)?);
            }
            ct_tuple::PROTO => proto = Some(a.u8()?),
            ct_tuple::SRC => src = Some(a.payload),
            ct_tuple::DST => dst = Some(a.payload),
            ct_tuple::SRC_PORT => sport = Some(a.u16()?),
            ct_tuple::DST_PORT => dport = Some(a.u16()?),
            _ => {}
        }
    }
    let family = family.ok_or(WireError::Missing(ct_tuple::FAMILY))?;
    let src = src.ok_or(WireError::Missing(ct_tuple::SRC))?;
    let dst = dst.ok_or(WireError::Missing(ct_tuple::DST))?;
    Ok(Tuple {
        family,
        proto: proto.ok_or(WireError::Missing(ct_tuple::PROTO))?,
        src: addr_from_wire(family, src)?,
        dst: addr_from_wire(family, dst)?,
        src_port_or_icmp_id: sport.ok_or(WireError::Missing(ct_tuple::SRC_PORT))?,
        dst_port_or_icmp_type_code: dport.ok_or(WireError::Missing(ct_tuple::DST_PORT))?,
    })
}

/// One flow, as a [`cmd::GET_CT`](crate::wire::cmd::GET_CT) dump message
/// or a [`cmd::CT_EVENT`](crate::wire::cmd::CT_EVENT) carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowMsg {
    /// Tuple of the original direction.
    pub orig: Tuple,
    /// Tuple of the reply direction (after NAT, not simply the inverse).
    pub reply: Tuple,
    /// Flow id.
    pub id: u32,
    /// `TcpState` as a number for TCP, 0 otherwise.
    pub proto_state: u8,
    /// `ct::status` bits.
    pub status: u32,
    /// Seconds until the flow expires.
    pub timeout_secs: u32,
    /// Seconds since the flow was created.
    pub age_secs: u32,
    /// Connection mark.
    pub mark: u32,
    /// `(packets, bytes)` per direction, indexed by [`Direction::index`].
    pub counters: [(u64, u64); 2],
    /// [`ct_event`] value, for an event; `None` in a dump.
    pub event: Option<u8>,
}

impl FlowMsg {
    /// `(packets, bytes)` of direction `dir`.
    pub fn counters_of(&self, dir: Direction) -> (u64, u64) {
        self.counters.get(dir.index()).copied().unwrap_or((0, 0))
    }

    /// Writes the top-level attributes of one flow message: `CT_EVENT`
    /// (only if [`event`](Self::event) is set), `CT_ORIG`, `CT_REPLY`,
    /// `CT_ID`, `CT_PROTO_STATE`, `CT_STATUS`, `CT_TIMEOUT`, `CT_AGE`,
    /// `CT_MARK`, `CT_COUNTERS`.
    pub fn encode(&self, w: &mut AttrWriter<'_>) {
        if let Some(e) = self.event {
            w.put_u8(attr::CT_EVENT, e);
        }
        encode_tuple(w, attr::CT_ORIG, &self.orig);
        encode_tuple(w, attr::CT_REPLY, &self.reply);
        w.put_u32(attr::CT_ID, self.id);
        w.put_u8(attr::CT_PROTO_STATE, self.proto_state);
        w.put_u32(attr::CT_STATUS, self.status);
        w.put_u32(attr::CT_TIMEOUT, self.timeout_secs);
        w.put_u32(attr::CT_AGE, self.age_secs);
        w.put_u32(attr::CT_MARK, self.mark);
        let (op, ob) = self.counters_of(Direction::Original);
        let (rp, rb) = self.counters_of(Direction::Reply);
        let nest = w.begin_nested(attr::CT_COUNTERS);
        w.put_u64(ct_counters::ORIG_PACKETS, op);
        w.put_u64(ct_counters::ORIG_BYTES, ob);
        w.put_u64(ct_counters::REPLY_PACKETS, rp);
        w.put_u64(ct_counters::REPLY_BYTES, rb);
        w.end_nested(nest);
    }

    /// Decodes the attributes of one flow message (the bytes after the
    /// generic netlink header). Unknown attributes are skipped.
    ///
    /// Required: `CT_ORIG`, `CT_REPLY` (same family and protocol, else
    /// [`WireError::BadValue`]), `CT_ID`, `CT_STATUS`, `CT_TIMEOUT`.
    /// Optional, 0 when absent: `CT_PROTO_STATE`, `CT_AGE`, `CT_MARK`,
    /// `CT_COUNTERS` (if present, all four counters are required).
    /// `CT_EVENT`, if present, must be a [`ct_event`] value.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut orig = None;
        let mut reply = None;
        let mut id = None;
        let mut proto_state = 0;
        let mut status = None;
        let mut timeout = None;
        let mut age = 0;
        let mut mark = 0;
        let mut counters = [(0, 0); 2];
        let mut event = None;
        for a in AttrIter::new(payload) {
            let a = a?;
            match a.ty {
                attr::CT_ORIG => orig = Some(decode_tuple(a.payload)?),
                attr::CT_REPLY => reply = Some(decode_tuple(a.payload)?),
                attr::CT_ID => id = Some(a.u32()?),
                attr::CT_PROTO_STATE => proto_state = a.u8()?,
                attr::CT_STATUS => status = Some(a.u32()?),
                attr::CT_TIMEOUT => timeout = Some(a.u32()?),
                attr::CT_AGE => age = a.u32()?,
                attr::CT_MARK => mark = a.u32()?,
                attr::CT_COUNTERS => counters = decode_counters(a.payload)?,
                attr::CT_EVENT => {
                    let e = a.u8()?;
                    if !matches!(e, ct_event::NEW | ct_event::UPDATE | ct_event::DESTROY) {
                        return Err(WireError::BadValue);
                    }
                    event = Some(e);
                }
                _ => {}
            }
        }
        let orig: Tuple = orig.ok_or(WireError::Missing(attr::CT_ORIG))?;
        let reply: Tuple = reply.ok_or(WireError::Missing(attr::CT_REPLY))?;
        if orig.family != reply.family || orig.proto != reply.proto {
            return Err(WireError::BadValue);
        }
        Ok(Self {
            orig,
            reply,
            id: id.ok_or(WireError::Missing(attr::CT_ID))?,
            proto_state,
            status: status.ok_or(WireError::Missing(attr::CT_STATUS))?,
            timeout_secs: timeout.ok_or(WireError::Missing(attr::CT_TIMEOUT))?,
            age_secs: age,
            mark,
            counters,
            event,
        })
    }
}

fn decode_counters(payload: &[u8]) -> Result<[(u64, u64); 2], WireError> {
    let mut v = [None; 4];
    for a in AttrIter::new(payload) {
        let a = a?;
        let slot = match a.ty {
            ct_counters::ORIG_PACKETS => v.get_mut(0),
            ct_counters::ORIG_BYTES => v.get_mut(1),
            ct_counters::REPLY_PACKETS => v.get_mut(2),
            ct_counters::REPLY_BYTES => v.get_mut(3),
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = Some(a.u64()?);
        }
    }
    let [op, ob, rp, rb] = v;
    Ok([
        (
            op.ok_or(WireError::Missing(ct_counters::ORIG_PACKETS))?,
            ob.ok_or(WireError::Missing(ct_counters::ORIG_BYTES))?,
        ),
        (
            rp.ok_or(WireError::Missing(ct_counters::REPLY_PACKETS))?,
            rb.ok_or(WireError::Missing(ct_counters::REPLY_BYTES))?,
        ),
    ])
}

/// The wire number of a timeout key: its index in [`TimeoutKey::ALL`].
pub fn timeout_key_index(key: TimeoutKey) -> u8 {
    let mut i: u8 = 0;
    for k in TimeoutKey::ALL {
        if k == key {
            return i;
        }
        i = i.saturating_add(1);
    }
    // Every key is in ALL; not reached.
    u8::MAX
}

/// The timeout key with wire number `index`.
pub fn timeout_key_from_index(index: u8) -> Option<TimeoutKey> {
    TimeoutKey::ALL.get(usize::from(index)).copied()
}

/// Writes one [`ct_timeout::ENTRY`] (inside an [`attr::CT_TIMEOUTS`]
/// nest).
pub fn encode_timeout_entry(w: &mut AttrWriter<'_>, key: TimeoutKey, secs: u32) {
    let nest = w.begin_nested(ct_timeout::ENTRY);
    w.put_u8(ct_timeout::KEY, timeout_key_index(key));
    w.put_u32(ct_timeout::SECS, secs);
    w.end_nested(nest);
}

/// Decodes the payload of one [`ct_timeout::ENTRY`]. Both attributes are
/// required; an unknown key index, 0 seconds or more than
/// [`MAX_TIMEOUT_SECS`] is [`WireError::BadValue`].
pub fn decode_timeout_entry(payload: &[u8]) -> Result<(TimeoutKey, u32), WireError> {
    let mut key = None;
    let mut secs = None;
    for a in AttrIter::new(payload) {
        let a = a?;
        match a.ty {
            ct_timeout::KEY => {
                key = Some(timeout_key_from_index(a.u8()?).ok_or(WireError::BadValue)?)
            }
            ct_timeout::SECS => secs = Some(a.u32()?),
            _ => {}
        }
    }
    let key = key.ok_or(WireError::Missing(ct_timeout::KEY))?;
    let secs = secs.ok_or(WireError::Missing(ct_timeout::SECS))?;
    if secs == 0 || secs > MAX_TIMEOUT_SECS {
        return Err(WireError::BadValue);
    }
    Ok((key, secs))
}

/// Writes an [`attr::CT_TIMEOUTS`] nest with every timeout of `t`, in
/// [`TimeoutKey::ALL`] order.
pub fn encode_timeouts(w: &mut AttrWriter<'_>, t: &Timeouts) {
    let nest = w.begin_nested(attr::CT_TIMEOUTS);
    for key in TimeoutKey::ALL {
        encode_timeout_entry(w, key, t.get(key));
    }
    w.end_nested(nest);
}

/// Decodes the payload of an [`attr::CT_TIMEOUTS`] nest that must name
/// every key of [`TimeoutKey::ALL`] (as a [`cmd::GET_CT_STATS`] reply
/// does); a missing key is [`WireError::Missing`]`(ct_timeout::ENTRY)`.
///
/// [`cmd::GET_CT_STATS`]: crate::wire::cmd::GET_CT_STATS
pub fn decode_timeouts(payload: &[u8]) -> Result<Timeouts, WireError> {
    let mut t = Timeouts::LINUX;
    let mut seen: u32 = 0;
    for a in AttrIter::new(payload) {
        let a = a?;
        if a.ty != ct_timeout::ENTRY {
            continue;
        }
        let (key, secs) = decode_timeout_entry(a.payload)?;
        t.set(key, secs).map_err(|_| WireError::BadValue)?;
        seen |= 1u32 << timeout_key_index(key);
    }
    let all = (1u32 << TimeoutKey::ALL.len()) - 1;
    if seen != all {
        return Err(WireError::Missing(ct_timeout::ENTRY));
    }
    Ok(t)
}

/// Writes the attributes of a [`cmd::SET_CT_TIMEOUT`] request: an
/// [`attr::CT_TIMEOUTS`] nest with one entry.
///
/// [`cmd::SET_CT_TIMEOUT`]: crate::wire::cmd::SET_CT_TIMEOUT
pub fn encode_set_timeout(w: &mut AttrWriter<'_>, key: TimeoutKey, secs: u32) {
    let nest = w.begin_nested(attr::CT_TIMEOUTS);
    encode_timeout_entry(w, key, secs);
    w.end_nested(nest);
}

/// Decodes the attributes of a [`cmd::SET_CT_TIMEOUT`] request:
/// [`attr::CT_TIMEOUTS`] is required and must hold exactly one entry
/// (none: [`WireError::Missing`]`(ct_timeout::ENTRY)`; more:
/// [`WireError::BadValue`]).
///
/// [`cmd::SET_CT_TIMEOUT`]: crate::wire::cmd::SET_CT_TIMEOUT
pub fn decode_set_timeout(payload: &[u8]) -> Result<(TimeoutKey, u32), WireError> {
    let nest = AttrIter::new(payload)
        .find(attr::CT_TIMEOUTS)?
        .ok_or(WireError::Missing(attr::CT_TIMEOUTS))?;
    let mut found = None;
    for a in nest.nested_iter() {
        let a = a?;
        if a.ty != ct_timeout::ENTRY {
            continue;
        }
        if found.is_some() {
            return Err(WireError::BadValue);
        }
        found = Some(decode_timeout_entry(a.payload)?);
    }
    found.ok_or(WireError::Missing(ct_timeout::ENTRY))
}

/// Writes the attributes of a [`cmd::DEL_CT`] request: the flow's
/// original tuple as [`attr::CT_ORIG`].
///
/// [`cmd::DEL_CT`]: crate::wire::cmd::DEL_CT
pub fn encode_delete(w: &mut AttrWriter<'_>, orig: &Tuple) {
    encode_tuple(w, attr::CT_ORIG, orig);
}

/// Decodes the attributes of a [`cmd::DEL_CT`] request: the tuple and
/// which direction of the flow it names ([`attr::CT_ORIG`] is preferred
/// when both are present).
///
/// [`cmd::DEL_CT`]: crate::wire::cmd::DEL_CT
pub fn decode_delete(payload: &[u8]) -> Result<(Direction, Tuple), WireError> {
    let mut reply = None;
    for a in AttrIter::new(payload) {
        let a = a?;
        match a.ty {
            attr::CT_ORIG => return Ok((Direction::Original, decode_tuple(a.payload)?)),
            attr::CT_REPLY => reply = Some(a.payload),
            _ => {}
        }
    }
    match reply {
        Some(p) => Ok((Direction::Reply, decode_tuple(p)?)),
        None => Err(WireError::Missing(attr::CT_ORIG)),
    }
}

/// Decodes the attributes of a [`cmd::SET_CT_LIMIT`] request: the
/// [`attr::CT_LIMIT`], which must not be 0 ([`WireError::BadValue`]).
///
/// [`cmd::SET_CT_LIMIT`]: crate::wire::cmd::SET_CT_LIMIT
pub fn decode_set_limit(payload: &[u8]) -> Result<u32, WireError> {
    let limit = AttrIter::new(payload)
        .find(attr::CT_LIMIT)?
        .ok_or(WireError::Missing(attr::CT_LIMIT))?
        .u32()?;
    if limit == 0 {
        return Err(WireError::BadValue);
    }
    Ok(limit)
}

/// A [`cmd::GET_CT_STATS`] reply.
///
/// [`cmd::GET_CT_STATS`]: crate::wire::cmd::GET_CT_STATS
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtStatsMsg {
    /// Flows in the table.
    pub count: u32,
    /// Most flows the table holds.
    pub limit: u32,
    /// Hash buckets.
    pub buckets: u32,
    /// Timeouts in force.
    pub timeouts: Timeouts,
    /// Flows inserted.
    pub inserted: u64,
    /// Flows removed on timeout.
    pub expired: u64,
    /// Unassured flows dropped early to make room.
    pub early_drops: u64,
    /// Packets dropped because the table was full with nothing droppable.
    pub full_drops: u64,
    /// Packets whose ct state was invalid.
    pub invalid: u64,
    /// Flows removed by delete, flush or TCP reset.
    pub deleted: u64,
    /// Packets dropped because NAT had no free tuple (or address).
    pub nat_drops: u64,
}

impl CtStatsMsg {
    /// Writes the reply's attributes: `CT_COUNT`, `CT_LIMIT`,
    /// `CT_BUCKETS`, `CT_TIMEOUTS` (every key), `CT_STATS`.
    pub fn encode(&self, w: &mut AttrWriter<'_>) {
        w.put_u32(attr::CT_COUNT, self.count);
        w.put_u32(attr::CT_LIMIT, self.limit);
        w.put_u32(attr::CT_BUCKETS, self.buckets);
        encode_timeouts(w, &self.timeouts);
        let nest = w.begin_nested(attr::CT_STATS);
        w.put_u64(ct_stats::INSERTED, self.inserted);
        w.put_u64(ct_stats::EXPIRED, self.expired);
        w.put_u64(ct_stats::EARLY_DROPS, self.early_drops);
        w.put_u64(ct_stats::FULL_DROPS, self.full_drops);
        w.put_u64(ct_stats::INVALID, self.invalid);
        w.put_u64(ct_stats::DELETED, self.deleted);
        w.put_u64(ct_stats::NAT_DROPS, self.nat_drops);
        w.end_nested(nest);
    }

    /// Decodes a reply's attributes. All five top-level attributes, every
    /// timeout key and all six counters are required; unknown attributes
    /// are skipped.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut count = None;
        let mut limit = None;
        let mut buckets = None;
        let mut timeouts = None;
        let mut stats = None;
        for a in AttrIter::new(payload) {
            let a = a?;
            match a.ty {
                attr::CT_COUNT => count = Some(a.u32()?),
                attr::CT_LIMIT => limit = Some(a.u32()?),
                attr::CT_BUCKETS => buckets = Some(a.u32()?),
                attr::CT_TIMEOUTS => timeouts = Some(decode_timeouts(a.payload)?),
                attr::CT_STATS => stats = Some(decode_stats(a.payload)?),
                _ => {}
            }
        }
        let [inserted, expired, early_drops, full_drops, invalid, deleted, nat_drops] =
            stats.ok_or(WireError::Missing(attr::CT_STATS))?;
        Ok(Self {
            count: count.ok_or(WireError::Missing(attr::CT_COUNT))?,
            limit: limit.ok_or(WireError::Missing(attr::CT_LIMIT))?,
            buckets: buckets.ok_or(WireError::Missing(attr::CT_BUCKETS))?,
            timeouts: timeouts.ok_or(WireError::Missing(attr::CT_TIMEOUTS))?,
            inserted,
            expired,
            early_drops,
            full_drops,
            invalid,
            deleted,
            nat_drops,
        })
    }
}

/// The [`ct_stats`] counters, in attribute order; all but the last
/// (`NAT_DROPS`, 0 when absent) are required.
fn decode_stats(payload: &[u8]) -> Result<[u64; 7], WireError> {
    let mut v = [None; 7];
    for a in AttrIter::new(payload) {
        let a = a?;
        // Types 1..=7 map to slots 0..=6.
        if let Some(slot) = usize::from(a.ty)
            .checked_sub(usize::from(ct_stats::INSERTED))
            .and_then(|i| v.get_mut(i))
        {
            *slot = Some(a.u64()?);
        }
    }
    let mut out = [0u64; 7];
    let mut ty = ct_stats::INSERTED;
    for (o, x) in out.iter_mut().zip(v) {
        *o = match x {
            Some(x) => x,
            None if ty == ct_stats::NAT_DROPS => 0,
            None => return Err(WireError::Missing(ty)),
        };
        ty = ty.saturating_add(1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::ct::status;
    use crate::ct_tcp::TcpState;
    use crate::wire::NLA_HDRLEN;
    use proptest::prelude::*;
    use std::{vec, vec::Vec};

    fn encode(f: impl Fn(&mut AttrWriter<'_>)) -> Vec<u8> {
        let mut m = AttrWriter::measure();
        f(&mut m);
        let need = m.finish().unwrap();
        let mut buf = vec![0u8; need];
        let mut w = AttrWriter::new(&mut buf);
        f(&mut w);
        assert_eq!(w.finish(), Ok(need));
        buf
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&a);
        o
    }

    fn tcp_flow() -> FlowMsg {
        let orig = Tuple {
            family: Family::Ipv4,
            proto: 6,
            src: v4([10, 0, 0, 2]),
            dst: v4([10, 0, 1, 2]),
            src_port_or_icmp_id: 40000,
            dst_port_or_icmp_type_code: 22,
        };
        FlowMsg {
            orig,
            reply: orig.invert(),
            id: 7,
            proto_state: TcpState::Established as u8,
            status: status::SEEN_REPLY | status::ASSURED | status::CONFIRMED,
            timeout_secs: 431_999,
            age_secs: 12,
            mark: 0x10,
            counters: [(3, 180), (2, 120)],
            event: None,
        }
    }

    #[test]
    fn tuple_layout_ipv4() {
        let t = tcp_flow().orig;
        let buf = encode(|w| encode_tuple(w, attr::CT_ORIG, &t));
        let top: Vec<_> = AttrIter::new(&buf).map(|a| a.unwrap()).collect();
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].ty, attr::CT_ORIG);
        assert!(top[0].nested);
        let kids: Vec<_> = top[0].nested_iter().map(|a| a.unwrap()).collect();
        let tys: Vec<_> = kids.iter().map(|a| a.ty).collect();
        assert_eq!(tys, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(kids[0].u8(), Ok(2));
        assert_eq!(kids[1].u8(), Ok(6));
        assert_eq!(kids[2].payload, &[10, 0, 0, 2]);
        assert_eq!(kids[3].payload, &[10, 0, 1, 2]);
        assert_eq!(kids[4].u16(), Ok(40000));
        assert_eq!(kids[5].u16(), Ok(22));
        assert_eq!(decode_tuple(top[0].payload), Ok(t));
    }

    #[test]
    fn tuple_ipv6_and_icmp() {
        let mut src = [0u8; 16];
        src[0] = 0x20;
        src[1] = 0x01;
        src[15] = 1;
        let t = Tuple {
            family: Family::Ipv6,
            proto: 58,
            src,
            dst: [0xfe; 16],
            src_port_or_icmp_id: 0x1234,
            dst_port_or_icmp_type_code: 128 << 8,
        };
        let buf = encode(|w| encode_tuple(w, attr::CT_REPLY, &t));
        let a = AttrIter::new(&buf).next().unwrap().unwrap();
        let src_attr = a.nested_iter().find(ct_tuple::SRC).unwrap().unwrap();
        assert_eq!(src_attr.payload.len(), 16);
        assert_eq!(decode_tuple(a.payload), Ok(t));
    }

    /// A tuple payload built by hand from (type, bytes) pairs.
    fn raw(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        encode(|w| {
            for (ty, b) in attrs {
                w.put_bytes(*ty, b);
            }
        })
    }

    #[test]
    fn tuple_errors() {
        let good: [(u16, &[u8]); 6] = [
            (1, &[2]),
            (2, &[17]),
            (3, &[1, 2, 3, 4]),
            (4, &[5, 6, 7, 8]),
            (5, &53u16.to_ne_bytes()),
            (6, &1000u16.to_ne_bytes()),
        ];
        let t = decode_tuple(&raw(&good)).unwrap();
        assert_eq!(t.src, v4([1, 2, 3, 4]));
        assert_eq!(t.dst_port_or_icmp_type_code, 1000);
        // Each attribute is required.
        for i in 0..6 {
            let mut v = good.to_vec();
            v.remove(i);
            assert_eq!(
                decode_tuple(&raw(&v)),
                Err(WireError::Missing(i as u16 + 1)),
                "without {}",
                i + 1
            );
        }
        // Unknown family.
        let mut v = good.to_vec();
        v[0] = (1, &[7]);
        assert_eq!(decode_tuple(&raw(&v)), Err(WireError::BadValue));
        // IPv6 family with IPv4-sized addresses.
        v[0] = (1, &[10]);
        assert_eq!(decode_tuple(&raw(&v)), Err(WireError::BadLength));
        // Wrong-size port and protocol.
        let mut v = good.to_vec();
        v[4] = (5, &[1]);
        assert_eq!(decode_tuple(&raw(&v)), Err(WireError::BadLength));
        let mut v = good.to_vec();
        v[1] = (2, &[1, 2]);
        assert_eq!(decode_tuple(&raw(&v)), Err(WireError::BadLength));
        // Unknown attributes are skipped, order does not matter.
        let mut v = good.to_vec();
        v.reverse();
        v.insert(2, (99, &[1, 2, 3]));
        assert_eq!(decode_tuple(&raw(&v)), Ok(t));
        // Truncated.
        let b = raw(&good);
        assert_eq!(decode_tuple(&b[..b.len() - 3]), Err(WireError::Truncated));
    }

    #[test]
    fn flow_round_trip_and_event() {
        let f = tcp_flow();
        let buf = encode(|w| f.encode(w));
        assert_eq!(FlowMsg::decode(&buf), Ok(f));
        assert!(AttrIter::new(&buf).find(attr::CT_EVENT).unwrap().is_none());
        let e = FlowMsg {
            event: Some(ct_event::DESTROY),
            ..f
        };
        let buf = encode(|w| e.encode(w));
        assert_eq!(FlowMsg::decode(&buf), Ok(e));
        assert_eq!(
            AttrIter::new(&buf)
                .find(attr::CT_EVENT)
                .unwrap()
                .unwrap()
                .u8(),
            Ok(3)
        );
        assert_eq!(f.counters_of(Direction::Reply), (2, 120));
    }

    #[test]
    fn flow_required_and_optional() {
        let f = tcp_flow();
        let without = |skip: u16| {
            let buf = encode(|w| f.encode(w));
            let mut out = vec![0u8; buf.len()];
            let mut w = AttrWriter::new(&mut out);
            for a in AttrIter::new(&buf) {
                let a = a.unwrap();
                if a.ty != skip {
                    let ty = if a.nested {
                        a.ty | crate::wire::NLA_F_NESTED
                    } else {
                        a.ty
                    };
                    w.put_bytes(ty, a.payload);
                }
            }
            let n = w.finish().unwrap();
            out.truncate(n);
            FlowMsg::decode(&out)
        };
        for ty in [
            attr::CT_ORIG,
            attr::CT_REPLY,
            attr::CT_ID,
            attr::CT_STATUS,
            attr::CT_TIMEOUT,
        ] {
            assert_eq!(without(ty), Err(WireError::Missing(ty)));
        }
        assert_eq!(without(attr::CT_MARK).unwrap().mark, 0);
        assert_eq!(without(attr::CT_AGE).unwrap().age_secs, 0);
        assert_eq!(without(attr::CT_PROTO_STATE).unwrap().proto_state, 0);
        assert_eq!(without(attr::CT_COUNTERS).unwrap().counters, [(0, 0); 2]);
        assert_eq!(without(999), Ok(f));
    }

    #[test]
    fn flow_errors() {
        let f = tcp_flow();
        // Mismatched families.
        let mut g = f;
        g.reply.family = Family::Ipv6;
        let buf = encode(|w| g.encode(w));
        assert_eq!(FlowMsg::decode(&buf), Err(WireError::BadValue));
        // Bad event value.
        let g = FlowMsg {
            event: Some(4),
            ..f
        };
        let buf = encode(|w| g.encode(w));
        assert_eq!(FlowMsg::decode(&buf), Err(WireError::BadValue));
        // Counters missing one.
        let buf = encode(|w| {
            encode_tuple(w, attr::CT_ORIG, &f.orig);
            encode_tuple(w, attr::CT_REPLY, &f.reply);
            w.put_u32(attr::CT_ID, 1);
            w.put_u32(attr::CT_STATUS, 1);
            w.put_u32(attr::CT_TIMEOUT, 1);
            let n = w.begin_nested(attr::CT_COUNTERS);
            w.put_u64(ct_counters::ORIG_PACKETS, 1);
            w.put_u64(ct_counters::ORIG_BYTES, 1);
            w.put_u64(ct_counters::REPLY_PACKETS, 1);
            w.end_nested(n);
        });
        assert_eq!(
            FlowMsg::decode(&buf),
            Err(WireError::Missing(ct_counters::REPLY_BYTES))
        );
        // Wrong-size scalar.
        let buf = encode(|w| {
            f.encode(w);
            w.put_u16(attr::CT_MARK, 1);
        });
        assert_eq!(FlowMsg::decode(&buf), Err(WireError::BadLength));
        // Every truncation inside an attribute is an error, never a panic
        // (a cut between attributes may only lose optional ones).
        let buf = encode(|w| f.encode(w));
        let mut boundaries = Vec::new();
        let mut at = 0;
        for a in AttrIter::new(&buf) {
            at += crate::wire::nla_align(NLA_HDRLEN + a.unwrap().payload.len());
            boundaries.push(at);
        }
        for n in 1..buf.len() {
            if let Ok(g) = FlowMsg::decode(&buf[..n]) {
                assert!(boundaries.contains(&n), "cut at {n}");
                assert_eq!(g.counters, [(0, 0); 2], "cut at {n}");
            }
        }
        // Garbage header.
        let mut bad = buf.clone();
        bad[0] = 2;
        bad[1] = 0;
        assert_eq!(FlowMsg::decode(&bad), Err(WireError::BadLength));
    }

    #[test]
    fn timeout_entries() {
        for (i, key) in TimeoutKey::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(timeout_key_index(key)), i);
            assert_eq!(timeout_key_from_index(i as u8), Some(key));
            let buf = encode(|w| encode_timeout_entry(w, key, 77));
            let a = AttrIter::new(&buf).next().unwrap().unwrap();
            assert_eq!(a.ty, ct_timeout::ENTRY);
            assert!(a.nested);
            assert_eq!(decode_timeout_entry(a.payload), Ok((key, 77)));
        }
        assert_eq!(timeout_key_from_index(TimeoutKey::ALL.len() as u8), None);
        let entry =
            |k: &[u8], s: u32| raw(&[(ct_timeout::KEY, k), (ct_timeout::SECS, &s.to_ne_bytes())]);
        assert_eq!(
            decode_timeout_entry(&entry(&[15], 5)),
            Err(WireError::BadValue)
        );
        assert_eq!(
            decode_timeout_entry(&entry(&[0], 0)),
            Err(WireError::BadValue)
        );
        assert_eq!(
            decode_timeout_entry(&entry(&[0], MAX_TIMEOUT_SECS + 1)),
            Err(WireError::BadValue)
        );
        assert_eq!(
            decode_timeout_entry(&entry(&[14], MAX_TIMEOUT_SECS)),
            Ok((TimeoutKey::Generic, MAX_TIMEOUT_SECS))
        );
        assert_eq!(
            decode_timeout_entry(&raw(&[(ct_timeout::KEY, &[1])])),
            Err(WireError::Missing(ct_timeout::SECS))
        );
        assert_eq!(
            decode_timeout_entry(&raw(&[(ct_timeout::SECS, &5u32.to_ne_bytes())])),
            Err(WireError::Missing(ct_timeout::KEY))
        );
    }

    #[test]
    fn set_timeout_request() {
        let key = TimeoutKey::UdpReplied;
        let buf = encode(|w| encode_set_timeout(w, key, 180));
        assert_eq!(decode_set_timeout(&buf), Ok((key, 180)));
        // Two entries.
        let buf = encode(|w| {
            let n = w.begin_nested(attr::CT_TIMEOUTS);
            encode_timeout_entry(w, key, 1);
            encode_timeout_entry(w, key, 2);
            w.end_nested(n);
        });
        assert_eq!(decode_set_timeout(&buf), Err(WireError::BadValue));
        // None.
        let buf = encode(|w| {
            let n = w.begin_nested(attr::CT_TIMEOUTS);
            w.end_nested(n);
        });
        assert_eq!(
            decode_set_timeout(&buf),
            Err(WireError::Missing(ct_timeout::ENTRY))
        );
        assert_eq!(
            decode_set_timeout(&[]),
            Err(WireError::Missing(attr::CT_TIMEOUTS))
        );
    }

    #[test]
    fn delete_and_limit_requests() {
        let t = tcp_flow().orig;
        let buf = encode(|w| encode_delete(w, &t));
        assert_eq!(decode_delete(&buf), Ok((Direction::Original, t)));
        let buf = encode(|w| encode_tuple(w, attr::CT_REPLY, &t.invert()));
        assert_eq!(decode_delete(&buf), Ok((Direction::Reply, t.invert())));
        assert_eq!(decode_delete(&[]), Err(WireError::Missing(attr::CT_ORIG)));

        let buf = encode(|w| w.put_u32(attr::CT_LIMIT, 65536));
        assert_eq!(decode_set_limit(&buf), Ok(65536));
        let buf = encode(|w| w.put_u32(attr::CT_LIMIT, 0));
        assert_eq!(decode_set_limit(&buf), Err(WireError::BadValue));
        let buf = encode(|w| w.put_u64(attr::CT_LIMIT, 1));
        assert_eq!(decode_set_limit(&buf), Err(WireError::BadLength));
        assert_eq!(
            decode_set_limit(&[]),
            Err(WireError::Missing(attr::CT_LIMIT))
        );
    }

    fn stats() -> CtStatsMsg {
        let mut timeouts = Timeouts::LINUX;
        timeouts.set(TimeoutKey::Icmp, 5).unwrap();
        CtStatsMsg {
            count: 3,
            limit: 262_144,
            buckets: 65_536,
            timeouts,
            inserted: 10,
            expired: 4,
            early_drops: 1,
            full_drops: 2,
            invalid: 5,
            deleted: u64::MAX,
            nat_drops: 7,
        }
    }

    #[test]
    fn stats_round_trip_and_errors() {
        let s = stats();
        let buf = encode(|w| s.encode(w));
        assert_eq!(CtStatsMsg::decode(&buf), Ok(s));
        for ty in [
            attr::CT_COUNT,
            attr::CT_LIMIT,
            attr::CT_BUCKETS,
            attr::CT_TIMEOUTS,
            attr::CT_STATS,
        ] {
            let mut out = Vec::new();
            for a in AttrIter::new(&buf) {
                let a = a.unwrap();
                if a.ty != ty {
                    let t = if a.nested {
                        a.ty | crate::wire::NLA_F_NESTED
                    } else {
                        a.ty
                    };
                    out.extend(encode(|w| w.put_bytes(t, a.payload)));
                }
            }
            assert_eq!(CtStatsMsg::decode(&out), Err(WireError::Missing(ty)));
        }
        // A timeout missing.
        let buf = encode(|w| {
            let n = w.begin_nested(attr::CT_TIMEOUTS);
            for key in &TimeoutKey::ALL[1..] {
                encode_timeout_entry(w, *key, 9);
            }
            w.end_nested(n);
        });
        let a = AttrIter::new(&buf).next().unwrap().unwrap();
        assert_eq!(
            decode_timeouts(a.payload),
            Err(WireError::Missing(ct_timeout::ENTRY))
        );
        // A counter missing.
        let buf = raw(&[
            (1, &1u64.to_ne_bytes()),
            (2, &1u64.to_ne_bytes()),
            (3, &1u64.to_ne_bytes()),
            (4, &1u64.to_ne_bytes()),
            (6, &1u64.to_ne_bytes()),
        ]);
        assert_eq!(
            decode_stats(&buf),
            Err(WireError::Missing(ct_stats::INVALID))
        );
        // Truncations.
        let buf = encode(|w| s.encode(w));
        for n in 1..buf.len() {
            assert!(CtStatsMsg::decode(&buf[..n]).is_err(), "cut at {n}");
        }
        assert!(buf.len() > NLA_HDRLEN);
    }

    fn arb_tuple() -> impl Strategy<Value = Tuple> {
        (
            any::<bool>(),
            any::<u8>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(v6, proto, mut src, mut dst, a, b)| {
                let family = if v6 { Family::Ipv6 } else { Family::Ipv4 };
                if !v6 {
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

    fn arb_flow() -> impl Strategy<Value = FlowMsg> {
        (
            arb_tuple(),
            any::<[u8; 16]>(),
            any::<(u32, u8, u32, u32, u32, u32)>(),
            any::<[(u64, u64); 2]>(),
            proptest::option::of(1u8..=3),
        )
            .prop_map(
                |(orig, naddr, (id, ps, st, to, age, mark), counters, event)| {
                    let mut reply = orig.invert();
                    // A NATed reply: another source address.
                    if naddr[0] & 1 == 1 {
                        reply.src = naddr;
                        if orig.family == Family::Ipv4 {
                            reply.src[4..].fill(0);
                        }
                    }
                    FlowMsg {
                        orig,
                        reply,
                        id,
                        proto_state: ps,
                        status: st,
                        timeout_secs: to,
                        age_secs: age,
                        mark,
                        counters,
                        event,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn tuple_round_trip(t in arb_tuple(), ty in 1u16..100) {
            let buf = encode(|w| encode_tuple(w, ty, &t));
            let a = AttrIter::new(&buf).next().unwrap().unwrap();
            prop_assert_eq!(a.ty, ty);
            prop_assert_eq!(decode_tuple(a.payload), Ok(t));
        }

        #[test]
        fn flow_round_trip(f in arb_flow()) {
            let buf = encode(|w| f.encode(w));
            prop_assert_eq!(FlowMsg::decode(&buf), Ok(f));
        }

        #[test]
        fn flow_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = FlowMsg::decode(&bytes);
            let _ = CtStatsMsg::decode(&bytes);
            let _ = decode_set_timeout(&bytes);
            let _ = decode_delete(&bytes);
        }

        #[test]
        fn flow_decode_of_corrupted_bytes_never_panics(
            f in arb_flow(), at in any::<prop::sample::Index>(), v in any::<u8>()
        ) {
            let mut buf = encode(|w| f.encode(w));
            let i = at.index(buf.len());
            buf[i] = v;
            let _ = FlowMsg::decode(&buf);
        }
    }
}
