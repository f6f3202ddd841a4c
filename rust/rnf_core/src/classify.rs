// SPDX-License-Identifier: GPL-2.0-only

//! Per-chain classification index: finds the next rule of a chain, at or
//! after a position, that can match a packet, without looking at the rules
//! in between (issue 6).
//!
//! # The scheme: per-field hash tables of sorted rule-id lists, leapfrogged
//!
//! A chain of at least [`INDEX_MIN_RULES`] rules gets an index built by
//! [`crate::compile::fill`]; shorter chains are walked linearly, which is
//! faster for them. Rules are numbered by their position in the chain.
//! Seven *fields* are indexed: protocol, source and destination address
//! (one table per family each) and source and destination port. For each
//! field a rule is either
//!
//! - *wildcard*: it does not constrain the field, or constrains it in a
//!   way the index does not cover (a negated list, a port list wider than
//!   [`MAX_PORT_EXPAND`] ports, a prefix length that is not among the
//!   [`MAX_LENS`] most used ones of the chain);
//! - *keyed*: it accepts exactly the packets whose field has one of its
//!   keys: the protocol, each port of its ranges, each prefix (length and
//!   masked address) of the field's family. A rule whose address list has
//!   no prefix of a family has no key there and is never a candidate for
//!   that family's packets (exactly what the matcher says).
//!
//! Per field the index holds the sorted list of wildcard rules and an
//! open-addressing hash table from key to the sorted list of rules with
//! that key. For a packet, each field's *candidate set* is the union of a
//! few sorted lists: the wildcard list and the list of the packet's key
//! (for addresses, one lookup per indexed prefix length: the packet's
//! address masked to it). A rule is a candidate when it is in every
//! field's set; the candidates are a superset of the matching rules, and
//! the evaluator checks the lowest one with the full matcher (which stays
//! the source of truth, with everything the index does not look at:
//! interfaces, flags, marks, ct, payload, `limit`, `nth`, ...), then asks
//! for the next one after it.
//!
//! "Lowest candidate at or after `p`" is a leapfrog intersection: each
//! field in turn moves `p` up to its own lowest member at or after `p`;
//! when no field moves it, `p` is in all of them. Seeking in a sorted
//! list of `len` distinct ids out of `n` rules uses that the `k`-th
//! element lies between `k` and `n - len + k`, so the binary search is
//! over a window of at most `n - len + 1` entries: one step for the
//! wildcard list of a field nobody constrains, `log(len)` steps for a
//! short list. Fields whose wildcard list holds every rule are skipped,
//! and the fields are visited smallest candidate set first. Addresses are
//! resolved first, and a field with at most `FEW_CANDIDATES` (4) candidates
//! ends the resolution as the query's only field: the full matcher checks
//! those few, which costs less than intersecting them with the other
//! fields' lists. In the common shapes (a blocklist of source prefixes,
//! kube-proxy's destination address + port + protocol) that is the
//! address field, with one or two rules.
//!
//! Cost per query: a hash probe per protocol and port, one per indexed
//! prefix length per address, then a few binary searches per round of the
//! intersection; it depends on how many rules share the packet's keys and
//! on the wildcard rules, not on the chain's length. Worst case (rules
//! that are candidates for every packet, or fields that alternate) the
//! rounds are bounded by the number of rules, like a linear walk.
//!
//! Why not bit vectors: a bit vector per key is `n / 8` bytes, too large
//! when most keys have one rule (kube-proxy services, blocklists), and
//! ANDing them costs `O(n / 64)` per packet unless summarised; the sorted
//! lists here are the sparse form of the same vectors, and the windowed
//! search is the summary.
//!
//! # Layout
//!
//! An index block, 4-byte aligned, all offsets from the start of the
//! buffer:
//!
//! - [`IX_HDR`] bytes: rule count `n`, offset of the chain's end record,
//!   offset of the rule offset table (`n` × `u32`: record of rule `i`),
//!   then [`N_FIELDS`] field descriptors of [`FD_LEN`] bytes: wildcard
//!   list offset and length, hash table offset and capacity (a power of
//!   two, 0 for none), number of indexed prefix lengths and the lengths
//!   (`u8` each, [`MAX_LENS`] bytes).
//! - The rule offset table, then per field: the wildcard list (room for
//!   `n` ids), the keyed lists (room for one id per key of every rule),
//!   the hash table ([`SLOT_LEN`]-byte slots: `u8` tag, 0 for empty, the
//!   prefix length plus one for addresses, 1 otherwise; 3 bytes 0; the
//!   key as a 16-byte big-endian number, the address masked to the
//!   prefix, or the port or protocol; `u32` list offset; `u32` list
//!   length).
//!
//! Everything is sized from upper bounds that [`crate::compile::measure`]
//! can compute in one pass (the number of keys, not of distinct keys), so
//! unused room stays zero. Lookups check every read; a corrupt index gives
//! wrong candidates or `None`, never a panic, and every loop is bounded by
//! the buffer's size.

use crate::compile::rd_u32;
use crate::hooks::Family;
use crate::packet::PacketFacts;
use crate::rules::RuleView;

/// Chains with fewer rules are walked linearly.
pub const INDEX_MIN_RULES: usize = 16;
/// A field with at most this many candidates is the query's only field:
/// its candidates go to the full matcher one by one, which costs less than
/// intersecting them with the other fields' (often long) lists.
const FEW_CANDIDATES: u64 = 4;
/// Most prefix lengths indexed per address field and family.
pub const MAX_LENS: usize = 16;
/// A port list covering more ports than this is not indexed (wildcard).
pub const MAX_PORT_EXPAND: u32 = 16;
/// Number of indexed fields.
pub const N_FIELDS: usize = 7;

/// Field: protocol.
const F_PROTO: usize = 0;
/// Field: IPv4 source address.
const F_SADDR4: usize = 1;
/// Field: IPv6 source address.
const F_SADDR6: usize = 2;
/// Field: IPv4 destination address.
const F_DADDR4: usize = 3;
/// Field: IPv6 destination address.
const F_DADDR6: usize = 4;
/// Field: source port.
const F_SPORT: usize = 5;
/// Field: destination port.
const F_DPORT: usize = 6;

/// Index offset: number of rules (`u32`).
const IX_N: usize = 0;
/// Index offset: the chain's end record (`u32`).
const IX_END: usize = 4;
/// Index offset: rule offset table (`u32`).
const IX_OFFS: usize = 8;
/// Index offset: first field descriptor.
const IX_FIELDS: usize = 16;
/// Size of a field descriptor.
pub const FD_LEN: usize = 36;
/// Size of the index header.
pub const IX_HDR: usize = IX_FIELDS + N_FIELDS * FD_LEN;
/// Field descriptor offset: wildcard list (`u32`).
const FD_WILD: usize = 0;
/// Field descriptor offset: wildcard list length (`u32`).
const FD_WILD_LEN: usize = 4;
/// Field descriptor offset: hash table (`u32`).
const FD_SLOTS: usize = 8;
/// Field descriptor offset: hash table capacity (`u32`, power of two).
const FD_CAP: usize = 12;
/// Field descriptor offset: number of prefix lengths (`u8`).
const FD_NLENS: usize = 16;
/// Field descriptor offset: the prefix lengths ([`MAX_LENS`] × `u8`).
const FD_LENS: usize = 20;
/// Size of a hash slot.
pub const SLOT_LEN: usize = 28;
const S_TAG: usize = 0;
const S_KEY: usize = 4;
const S_LIST: usize = 20;
const S_LEN: usize = 24;

/// Tag of exact (protocol, port) keys.
const TAG_EXACT: u8 = 1;

/// Most lists one query unions: per field the wildcard list and a key's,
/// per address field one per prefix length.
const MAX_SLICES: usize = 2 + 2 * (1 + MAX_LENS) + 2 + 2;

fn rd_u128(buf: &[u8], at: usize) -> Option<u128> {
    let b = buf.get(at..at.checked_add(16)?)?;
    Some(u128::from_be_bytes(<[u8; 16]>::try_from(b).ok()?))
}

fn rd_u8(buf: &[u8], at: usize) -> Option<u8> {
    buf.get(at).copied()
}

/// The top `len` bits of a 128-bit number.
const fn prefix_mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else if len >= 128 {
        u128::MAX
    } else {
        u128::MAX << (128 - len as u32)
    }
}

/// Hash of a key (tag and value).
fn hash(tag: u8, key: u128) -> u32 {
    let mut h = (key as u64) ^ ((key >> 64) as u64).rotate_left(29) ^ (u64::from(tag) << 56);
    h = (h ^ (h >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (h ^ (h >> 32)) as u32
}

fn is_addr_field(f: usize) -> bool {
    matches!(f, F_SADDR4 | F_SADDR6 | F_DADDR4 | F_DADDR6)
}

fn field_family(f: usize) -> Family {
    match f {
        F_SADDR6 | F_DADDR6 => Family::Ipv6,
        _ => Family::Ipv4,
    }
}

/// Number of ports a non-negated port list covers, saturating.
fn port_width(l: &crate::rules::PortList<'_>) -> u32 {
    l.iter().fold(0u32, |acc, r| {
        acc.saturating_add(u32::from(r.hi.saturating_sub(r.lo)).saturating_add(1))
    })
}

/// Upper bound of the keys a rule has in each field (for sizing).
pub(crate) fn rule_keys(v: &RuleView<'_>) -> [usize; N_FIELDS] {
    let mut k = [0usize; N_FIELDS];
    if let Some(s) = k.get_mut(F_PROTO) {
        *s = usize::from(v.proto.is_some());
    }
    for (f4, f6, list) in [(F_SADDR4, F_SADDR6, v.saddr), (F_DADDR4, F_DADDR6, v.daddr)] {
        if let Some(l) = list.filter(|l| !l.negated) {
            for c in l.iter() {
                let f = if c.family == Family::Ipv4 { f4 } else { f6 };
                if let Some(s) = k.get_mut(f) {
                    *s = s.saturating_add(1);
                }
            }
        }
    }
    for (f, list) in [(F_SPORT, v.sport), (F_DPORT, v.dport)] {
        if let Some(l) = list.filter(|l| !l.negated) {
            let w = port_width(&l);
            if w <= MAX_PORT_EXPAND {
                if let Some(s) = k.get_mut(f) {
                    *s = w as usize;
                }
            }
        }
    }
    k
}

/// Capacity of a field's hash table for `keys` keys: a power of two at
/// least twice as large (so probes stay short), 0 for none.
fn capacity(keys: usize) -> usize {
    if keys == 0 {
        0
    } else {
        keys.saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(0)
    }
}

/// Size of the index of a chain of `n` rules whose rules have `keys` keys
/// per field in all (sums of [`rule_keys`]), saturating.
pub(crate) fn index_size(n: usize, keys: &[usize; N_FIELDS]) -> usize {
    let mut s = IX_HDR.saturating_add(n.saturating_mul(4));
    for k in keys {
        s = s
            .saturating_add(n.saturating_mul(4))
            .saturating_add(k.saturating_mul(4))
            .saturating_add(capacity(*k).saturating_mul(SLOT_LEN));
    }
    s
}

/// Little-endian output for the builder; out-of-range writes clear `ok`.
struct W<'b> {
    buf: &'b mut [u8],
    ok: bool,
}

impl W<'_> {
    fn bytes(&mut self, at: usize, b: &[u8]) {
        match self.buf.get_mut(at..at.saturating_add(b.len())) {
            Some(d) => {
                for (o, i) in d.iter_mut().zip(b) {
                    *o = *i;
                }
            }
            None => self.ok = false,
        }
    }
    fn u32(&mut self, at: usize, v: u32) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn get_u32(&self, at: usize) -> u32 {
        rd_u32(self.buf, at).unwrap_or(0)
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The prefix lengths indexed for each address field (the others
/// `MAX_LENS`-long arrays of `u8`, with a count).
#[derive(Clone, Copy)]
struct Lens {
    n: usize,
    lens: [u8; MAX_LENS],
}

impl Lens {
    const EXACT: Lens = Lens {
        n: 1,
        lens: [0; MAX_LENS],
    };
    fn has(&self, len: u8) -> bool {
        self.lens.iter().take(self.n).any(|l| *l == len)
    }
}

/// What a rule asks of field `f`: calls `emit(tag, key)` per key and
/// returns false, or returns true for a wildcard rule (and emits nothing).
fn field_keys(v: &RuleView<'_>, f: usize, lens: &Lens, mut emit: impl FnMut(u8, u128)) -> bool {
    match f {
        F_PROTO => match v.proto {
            None => true,
            Some(p) => {
                emit(TAG_EXACT, u128::from(p));
                false
            }
        },
        F_SPORT | F_DPORT => {
            let list = if f == F_SPORT { v.sport } else { v.dport };
            let Some(l) = list.filter(|l| !l.negated) else {
                return true;
            };
            if port_width(&l) > MAX_PORT_EXPAND {
                return true;
            }
            for r in l.iter() {
                let mut p = r.lo;
                loop {
                    emit(TAG_EXACT, u128::from(p));
                    if p >= r.hi {
                        break;
                    }
                    p += 1;
                }
            }
            false
        }
        _ => {
            let list = if f == F_SADDR4 || f == F_SADDR6 {
                v.saddr
            } else {
                v.daddr
            };
            let fam = field_family(f);
            let Some(l) = list.filter(|l| !l.negated) else {
                return true;
            };
            if l.iter().any(|c| c.family == fam && !lens.has(c.prefix)) {
                return true;
            }
            for c in l.iter().filter(|c| c.family == fam) {
                let key = u128::from_be_bytes(c.addr) & prefix_mask(c.prefix);
                emit(c.prefix.saturating_add(1), key);
            }
            false
        }
    }
}

/// Where the parts of one field's index go.
#[derive(Clone, Copy, Default)]
struct FieldArea {
    wild: usize,
    lists: usize,
    slots: usize,
    cap: usize,
}

/// Finds the slot of `(tag, key)` in a table being built, or the empty
/// slot where it goes.
fn probe_build(w: &W<'_>, slots: usize, cap: usize, tag: u8, key: u128) -> Option<usize> {
    let mask = cap.checked_sub(1)?;
    let mut i = (hash(tag, key) as usize) & mask;
    for _ in 0..cap {
        let at = slots.checked_add(i.checked_mul(SLOT_LEN)?)?;
        let t = rd_u8(w.buf, at.checked_add(S_TAG)?)?;
        if t == 0 || (t == tag && rd_u128(w.buf, at.checked_add(S_KEY)?)? == key) {
            return Some(at);
        }
        i = (i + 1) & mask;
    }
    None
}

/// Builds the index of a chain of `n` rules at `at` in `buf`, whose
/// records start at `start`; `rules` yields the chain's rules (each call a
/// fresh pass) with their record lengths, and `keys` are the sums of
/// [`rule_keys`] over them. Returns false if something did not fit (an
/// internal error).
pub(crate) fn build<'r, F, I>(
    buf: &mut [u8],
    at: usize,
    start: usize,
    n: usize,
    keys: &[usize; N_FIELDS],
    rules: F,
) -> bool
where
    F: Fn() -> I,
    I: Iterator<Item = (RuleView<'r>, usize)>,
{
    let mut w = W { buf, ok: true };
    // Layout.
    let offs = at + IX_HDR;
    let mut p = offs + 4 * n;
    let mut areas = [FieldArea::default(); N_FIELDS];
    for (a, k) in areas.iter_mut().zip(keys) {
        a.wild = p;
        p += 4 * n;
        a.lists = p;
        p += 4 * k;
        a.slots = p;
        a.cap = capacity(*k);
        p += a.cap * SLOT_LEN;
    }
    if p != at + index_size(n, keys) {
        return false;
    }

    // Pass 1: record offsets, end record, and the prefix lengths in use.
    let mut hist4 = [[0u16; 33]; 2];
    let mut hist6 = [[0u16; 129]; 2];
    let mut pos = start;
    for (i, (v, len)) in rules().enumerate() {
        w.u32(offs + 4 * i, to_u32(pos));
        pos += len;
        for (side, list) in [v.saddr, v.daddr].into_iter().enumerate() {
            let Some(l) = list.filter(|l| !l.negated) else {
                continue;
            };
            for c in l.iter() {
                let slot = match c.family {
                    Family::Ipv4 => hist4
                        .get_mut(side)
                        .and_then(|h| h.get_mut(usize::from(c.prefix))),
                    Family::Ipv6 => hist6
                        .get_mut(side)
                        .and_then(|h| h.get_mut(usize::from(c.prefix))),
                };
                if let Some(s) = slot {
                    *s = s.saturating_add(1);
                }
            }
        }
    }
    w.u32(at + IX_N, to_u32(n));
    w.u32(at + IX_END, to_u32(pos));
    w.u32(at + IX_OFFS, to_u32(offs));

    let mut lens = [Lens::EXACT; N_FIELDS];
    for (f, l) in lens.iter_mut().enumerate() {
        let hist: &[u16] = match f {
            F_SADDR4 => hist4.first().map_or(&[], |h| h.as_slice()),
            F_DADDR4 => hist4.get(1).map_or(&[], |h| h.as_slice()),
            F_SADDR6 => hist6.first().map_or(&[], |h| h.as_slice()),
            F_DADDR6 => hist6.get(1).map_or(&[], |h| h.as_slice()),
            _ => continue,
        };
        *l = top_lens(hist);
    }

    // Pass 2: count the rules per key.
    for (v, _) in rules() {
        for (f, (a, l)) in areas.iter().zip(&lens).enumerate() {
            field_keys(&v, f, l, |tag, key| {
                match probe_build(&w, a.slots, a.cap, tag, key) {
                    Some(s) => {
                        let c = w.get_u32(s + S_LEN);
                        if c == 0 {
                            w.bytes(s + S_TAG, &[tag]);
                            w.bytes(s + S_KEY, &key.to_be_bytes());
                        }
                        w.u32(s + S_LEN, c.saturating_add(1));
                    }
                    None => w.ok = false,
                }
            });
        }
    }

    // Room for each key's list.
    for a in &areas {
        let mut cursor = a.lists;
        for i in 0..a.cap {
            let s = a.slots + i * SLOT_LEN;
            let c = w.get_u32(s + S_LEN) as usize;
            if c != 0 {
                w.u32(s + S_LIST, to_u32(cursor));
                w.u32(s + S_LEN, 0);
                cursor += 4 * c;
            }
        }
        if cursor > a.slots {
            w.ok = false;
        }
    }

    // Pass 3: the lists, in rule order (so sorted), without duplicates.
    let mut wild_len = [0usize; N_FIELDS];
    for (i, (v, _)) in rules().enumerate() {
        let id = to_u32(i);
        for (f, (a, l)) in areas.iter().zip(&lens).enumerate() {
            let wild = field_keys(&v, f, l, |tag, key| {
                match probe_build(&w, a.slots, a.cap, tag, key) {
                    Some(s) => {
                        let list = w.get_u32(s + S_LIST) as usize;
                        let len = w.get_u32(s + S_LEN) as usize;
                        if len > 0 && w.get_u32(list + 4 * (len - 1)) == id {
                            return;
                        }
                        w.u32(list + 4 * len, id);
                        w.u32(s + S_LEN, to_u32(len + 1));
                    }
                    None => w.ok = false,
                }
            });
            if wild {
                if let Some(wl) = wild_len.get_mut(f) {
                    w.u32(a.wild + 4 * *wl, id);
                    *wl += 1;
                }
            }
        }
    }

    for (f, ((a, l), wl)) in areas.iter().zip(&lens).zip(wild_len).enumerate() {
        let d = at + IX_FIELDS + f * FD_LEN;
        w.u32(d + FD_WILD, to_u32(a.wild));
        w.u32(d + FD_WILD_LEN, to_u32(wl));
        w.u32(d + FD_SLOTS, to_u32(a.slots));
        w.u32(d + FD_CAP, to_u32(a.cap));
        if is_addr_field(f) {
            w.bytes(d + FD_NLENS, &[u8::try_from(l.n).unwrap_or(0)]);
            w.bytes(d + FD_LENS, &l.lens);
        } else {
            w.bytes(d + FD_NLENS, &[1]);
        }
    }
    w.ok
}

/// The [`MAX_LENS`] prefix lengths used most, from a histogram.
fn top_lens(hist: &[u16]) -> Lens {
    let mut l = Lens {
        n: 0,
        lens: [0; MAX_LENS],
    };
    let mut taken = [false; 129];
    while l.n < MAX_LENS {
        let mut best: Option<(usize, u16)> = None;
        for (len, c) in hist.iter().enumerate() {
            if *c > 0
                && !taken.get(len).copied().unwrap_or(true)
                && best.map_or(true, |(_, bc)| *c > bc)
            {
                best = Some((len, *c));
            }
        }
        let Some((len, _)) = best else {
            break;
        };
        if let Some(t) = taken.get_mut(len) {
            *t = true;
        }
        if let Some(s) = l.lens.get_mut(l.n) {
            *s = u8::try_from(len).unwrap_or(0);
        }
        l.n += 1;
    }
    l
}

/// A sorted list of rule ids in the buffer.
#[derive(Clone, Copy, Default)]
struct Slice {
    off: u32,
    len: u32,
}

/// A chain's index resolved for one packet: the lists whose union is each
/// field's candidate set. Made once per chain visit, asked for the next
/// candidate any number of times.
pub(crate) struct Query {
    /// Number of rules.
    n: u32,
    /// End record of the chain.
    end: u32,
    /// Rule offset table.
    offs: usize,
    slices: [Slice; MAX_SLICES],
    /// Per field to intersect: first slice and number of slices.
    fields: [(u8, u8); 5],
    n_fields: usize,
    /// Some field has no candidate at all.
    none: bool,
}

impl Query {
    /// A query that resolves nothing yet, to [`resolve`](Self::resolve)
    /// in place (a `Query` is a few hundred bytes: made once per
    /// evaluation, not moved around per chain).
    pub(crate) const fn blank() -> Self {
        Query {
            n: 0,
            end: 0,
            offs: 0,
            slices: [Slice { off: 0, len: 0 }; MAX_SLICES],
            fields: [(0, 0); 5],
            n_fields: 0,
            none: true,
        }
    }

    /// Resolves the index at `at` for `facts`; `None` if it is corrupt
    /// (`self` is left resolving no rule then).
    pub(crate) fn resolve(&mut self, buf: &[u8], at: usize, facts: &PacketFacts) -> Option<()> {
        self.n = 0;
        self.n_fields = 0;
        self.none = true;
        let n = rd_u32(buf, at.checked_add(IX_N)?)?;
        let end = rd_u32(buf, at.checked_add(IX_END)?)?;
        let offs = rd_u32(buf, at.checked_add(IX_OFFS)?)? as usize;
        // The offset table must be there, which bounds `n` by the size.
        buf.get(offs..offs.checked_add((n as usize).checked_mul(4)?)?)?;
        (self.n, self.end, self.offs, self.none) = (n, end, offs, false);
        let q = self;
        let (saddr, daddr) = match facts.family {
            Family::Ipv4 => (F_SADDR4, F_DADDR4),
            Family::Ipv6 => (F_SADDR6, F_DADDR6),
        };
        let ports = facts.ports();
        // Addresses first: they are the fields most likely to have few
        // candidates, which ends the resolution early.
        let wanted: [(usize, Option<u128>); 5] = [
            (daddr, Some(u128::from_be_bytes(facts.dst))),
            (saddr, Some(u128::from_be_bytes(facts.src))),
            (F_DPORT, ports.map(|p| u128::from(p.1))),
            (F_SPORT, ports.map(|p| u128::from(p.0))),
            (F_PROTO, Some(u128::from(facts.proto))),
        ];
        let mut ns = 0usize;
        let mut sizes = [0u64; 5];
        for (f, value) in wanted {
            let d = at.checked_add(IX_FIELDS + f * FD_LEN)?;
            let first = ns;
            let mut total = 0u64;
            let wild = Slice {
                off: rd_u32(buf, d + FD_WILD)?,
                len: rd_u32(buf, d + FD_WILD_LEN)?,
            };
            if wild.len >= n {
                // Every rule is a candidate: nothing to intersect.
                continue;
            }
            if wild.len > 0 {
                *q.slices.get_mut(ns)? = wild;
                ns += 1;
                total += u64::from(wild.len);
            }
            if let Some(value) = value {
                let slots = rd_u32(buf, d + FD_SLOTS)? as usize;
                let cap = rd_u32(buf, d + FD_CAP)? as usize;
                let exact = !is_addr_field(f);
                let nlens = if exact {
                    1
                } else {
                    usize::from(rd_u8(buf, d + FD_NLENS)?).min(MAX_LENS)
                };
                for i in 0..nlens {
                    let (tag, key) = if exact {
                        (TAG_EXACT, value)
                    } else {
                        let len = rd_u8(buf, d + FD_LENS + i)?;
                        (len.saturating_add(1), value & prefix_mask(len))
                    };
                    if let Some(s) = lookup(buf, slots, cap, tag, key) {
                        if s.len > 0 {
                            *q.slices.get_mut(ns)? = s;
                            ns += 1;
                            total += u64::from(s.len);
                        }
                    }
                }
            }
            if ns == first {
                q.none = true;
                return Some(());
            }
            let field = (u8::try_from(first).ok()?, u8::try_from(ns - first).ok()?);
            if total <= FEW_CANDIDATES {
                // Every matching rule is among these few: the other fields
                // need not be looked up or intersected (kube-proxy's
                // service address, a blocklist's source prefix).
                *q.fields.first_mut()? = field;
                q.n_fields = 1;
                return Some(());
            }
            let k = q.n_fields;
            *q.fields.get_mut(k)? = field;
            *sizes.get_mut(k)? = total;
            q.n_fields += 1;
        }
        // Smallest candidate set first (insertion sort of at most 5).
        for i in 1..q.n_fields {
            let mut j = i;
            while j > 0 {
                let (a, b) = (sizes.get(j - 1).copied()?, sizes.get(j).copied()?);
                if a <= b {
                    break;
                }
                sizes.swap(j - 1, j);
                q.fields.swap(j - 1, j);
                j -= 1;
            }
        }
        Some(())
    }

    /// Number of rules of the chain.
    pub(crate) const fn n(&self) -> u32 {
        self.n
    }

    /// Offset of the chain's end record.
    pub(crate) const fn end(&self) -> usize {
        self.end as usize
    }

    /// Offset of the record of rule `i`.
    pub(crate) fn rule_offset(&self, buf: &[u8], i: u32) -> Option<usize> {
        let at = self.offs.checked_add((i as usize).checked_mul(4)?)?;
        rd_u32(buf, at).map(|o| o as usize)
    }

    /// The lowest candidate rule at or after `p`, or [`n`](Self::n) if
    /// there is none.
    pub(crate) fn next(&self, buf: &[u8], mut p: u32) -> u32 {
        let n = self.n;
        if self.none {
            return n;
        }
        let fields = self.fields.get(..self.n_fields).unwrap_or(&[]);
        let union_from = |(first, count): (u8, u8), p: u32| -> u32 {
            let first = usize::from(first);
            let slices = self
                .slices
                .get(first..first + usize::from(count))
                .unwrap_or(&[]);
            let mut best = n;
            for s in slices {
                let v = seek(buf, *s, n, p);
                if v < best {
                    best = v;
                    if v == p {
                        break;
                    }
                }
            }
            best
        };
        if let [only] = fields {
            // Nothing to intersect with: the field's lowest candidate.
            return union_from(*only, p).min(n);
        }
        // Each round either returns or moves `p` up to an element of a
        // list: at most as many rounds as rules.
        loop {
            if p >= n {
                return n;
            }
            let mut moved = false;
            for &field in fields {
                let best = union_from(field, p);
                if best >= n {
                    return n;
                }
                if best > p {
                    p = best;
                    moved = true;
                }
            }
            if !moved {
                return p;
            }
        }
    }
}

/// The slice of `(tag, key)` in a hash table, if any.
fn lookup(buf: &[u8], slots: usize, cap: usize, tag: u8, key: u128) -> Option<Slice> {
    let mask = cap.checked_sub(1)?;
    // Bounded by the table, and by the buffer for a corrupt capacity.
    let bound = cap.min(buf.len() / SLOT_LEN);
    let mut i = (hash(tag, key) as usize) & mask;
    for _ in 0..bound {
        let at = slots.checked_add(i.checked_mul(SLOT_LEN)?)?;
        let slot = buf.get(at..at.checked_add(SLOT_LEN)?)?;
        let t = rd_u8(slot, S_TAG)?;
        if t == 0 {
            return None;
        }
        if t == tag && rd_u128(slot, S_KEY)? == key {
            return Some(Slice {
                off: rd_u32(slot, S_LIST)?,
                len: rd_u32(slot, S_LEN)?,
            });
        }
        i = (i + 1) & mask;
    }
    None
}

/// The lowest element at or after `p` of a sorted list of distinct ids
/// below `n`, or `n`. Its `k`-th element lies in `k..=n - len + k`, so
/// the answer's position lies in `p - (n - len) ..= p`.
fn seek(buf: &[u8], s: Slice, n: u32, p: u32) -> u32 {
    let len = s.len.min(n);
    let mut lo = p.saturating_sub(n - len);
    let mut hi = p.saturating_add(1).min(len);
    let at = |k: u32| -> Option<u32> {
        rd_u32(
            buf,
            (s.off as usize).checked_add((k as usize).checked_mul(4)?)?,
        )
    };
    // First position in lo..hi whose element is >= p.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid) {
            Some(v) if v >= p => hi = mid,
            Some(_) => lo = mid + 1,
            None => return n,
        }
    }
    if lo >= len {
        return n;
    }
    match at(lo) {
        Some(v) if v >= p => v.min(n),
        _ => n,
    }
}
