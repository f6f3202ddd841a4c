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
//! Eight *fields* are indexed: protocol, source and destination address
//! (one table per family each), source and destination port, and the
//! *service*: destination address, protocol and destination port
//! together, keyed for rules that ask for exact values of all three (a
//! list of hosts, a protocol, at most [`MAX_SVC_KEYS`] host × port
//! combinations), as kube-proxy's service rules do: one probe finds the
//! rules of the packet's exact service, where the destination address
//! alone finds every port of it. For each field a rule is either
//!
//! - *wildcard*: it does not constrain the field, or constrains it in a
//!   way the index does not cover (a negated list, a port list wider than
//!   [`MAX_PORT_EXPAND`] ports, a prefix length that is not among the
//!   [`MAX_LENS`] most used ones of the chain);
//! - *keyed*: it accepts exactly the packets whose field has one of its
//!   keys: the protocol, each port of its ranges, each prefix (length and
//!   masked address) of the field's family, each (host, protocol, port).
//!   A rule whose address list has
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
//! and the fields are visited smallest candidate set first. The service
//! and the addresses are resolved first, and a field with at most
//! `FEW_CANDIDATES` (4) candidates ends the resolution as the query's only
//! field: its candidates are read once into the query, and the full
//! matcher checks those few, which costs less than intersecting them with
//! the other fields' lists. In the common shapes (a blocklist of source
//! prefixes, kube-proxy's services) that is the first field looked up,
//! with one rule. Fields where every rule is a wildcard are left out of
//! the index's *plan* when it is built, and not looked at.
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
//!   the plan (`u32`, bit `1 << f` for a field `f` with a rule that is not
//!   a wildcard), then [`N_FIELDS`] field descriptors of [`FD_LEN`] bytes: wildcard
//!   list offset and length, hash table offset and capacity (a power of
//!   two, 0 for none), number of indexed prefix lengths and the lengths
//!   (`u8` each, [`MAX_LENS`] bytes).
//! - The rule offset table, then per field: the wildcard list (room for
//!   `n` ids), the keyed lists (room for one id per key of every rule),
//!   the hash table ([`SLOT_LEN`]-byte slots: `u8` tag, 0 for empty, the
//!   prefix length plus one for addresses, the family (1 for IPv4, 2 for
//!   IPv6) for services, 1 otherwise; 3 bytes 0; the key as a 16-byte
//!   big-endian number, the address masked to the prefix, the port or
//!   protocol, or for a service the IPv4 host above the protocol and port
//!   (the IPv6 host XOR them: equal services give equal keys); `u32` list
//!   offset; `u32` list length).
//!
//! Everything is sized from upper bounds that [`crate::compile::measure`]
//! can compute in one pass (`ChainKeys`: the number of keys, and for the
//! hash tables an upper bound of the distinct keys), so unused room stays
//! zero. Lookups check every read; a corrupt index gives wrong candidates
//! or `None`, never a panic, and every loop is bounded by the buffer's
//! size.

use crate::compile::rd_u32;
use crate::hooks::Family;
use crate::packet::PacketFacts;
use crate::rules::{mask_bits, RuleView};

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
pub const N_FIELDS: usize = 8;
/// Most service keys (destination hosts × destination ports) a rule has
/// in the service field; a rule with more is a wildcard there.
pub const MAX_SVC_KEYS: usize = 16;

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
/// Field: service, the destination address, protocol and destination
/// port together, for rules that ask for one exact value of each (a
/// destination host, a protocol, a few ports): kube-proxy's services.
const F_SVC: usize = 7;

/// Index offset: number of rules (`u32`).
const IX_N: usize = 0;
/// Index offset: the chain's end record (`u32`).
const IX_END: usize = 4;
/// Index offset: rule offset table (`u32`).
const IX_OFFS: usize = 8;
/// Index offset: the fields worth looking up (`u32`, bit `1 << f` for
/// field `f`): those with a rule that is not a wildcard.
const IX_PLAN: usize = 12;
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
/// Tag of service keys of an IPv4 destination.
const TAG_SVC4: u8 = 1;
/// Tag of service keys of an IPv6 destination.
const TAG_SVC6: u8 = 2;

/// Most lists one query unions: per field the wildcard list and a key's,
/// per address field one per prefix length.
const MAX_SLICES: usize = 2 + 2 * (1 + MAX_LENS) + 2 + 2 + 2;

fn rd_u128(buf: &[u8], at: usize) -> Option<u128> {
    let b = buf.get(at..at.checked_add(16)?)?;
    Some(u128::from_be_bytes(<[u8; 16]>::try_from(b).ok()?))
}

fn rd_u8(buf: &[u8], at: usize) -> Option<u8> {
    buf.get(at).copied()
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

/// The service key of a destination `addr` of `family`, protocol and
/// destination port. Equal parts give equal keys, which is all the index
/// needs (an IPv6 key folds the protocol and port into the address, so
/// different parts may share a key: more candidates, never fewer).
fn svc_key(family: Family, addr: [u8; 16], proto: u8, port: u16) -> (u8, u128) {
    let a = u128::from_be_bytes(addr);
    let x = (u128::from(proto) << 16) | u128::from(port);
    match family {
        Family::Ipv4 => (TAG_SVC4, (a & mask_bits(32)) | x),
        Family::Ipv6 => (TAG_SVC6, a ^ x),
    }
}

/// The parts of a rule keyed in the service field: destination hosts
/// (every prefix full length), a protocol and destination ports, at most
/// [`MAX_SVC_KEYS`] combinations; `None` for a wildcard there.
fn svc_parts<'r>(
    v: &RuleView<'r>,
) -> Option<(
    crate::rules::AddrList<'r>,
    u8,
    crate::rules::PortList<'r>,
    usize,
)> {
    let daddr = v.daddr.filter(|l| !l.negated)?;
    let proto = v.proto?;
    let dport = v.dport.filter(|l| !l.negated)?;
    let mut hosts = 0usize;
    for c in daddr.iter() {
        let full = match c.family {
            Family::Ipv4 => 32,
            Family::Ipv6 => 128,
        };
        if c.prefix != full {
            return None;
        }
        hosts += 1;
    }
    let keys = hosts.saturating_mul(port_width(&dport) as usize);
    (keys <= MAX_SVC_KEYS).then_some((daddr, proto, dport, keys))
}

/// Upper bound of the keys a rule has in each field (for sizing).
fn rule_keys(v: &RuleView<'_>) -> [usize; N_FIELDS] {
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
    if let (Some((.., keys)), Some(s)) = (svc_parts(v), k.get_mut(F_SVC)) {
        *s = keys;
    }
    k
}

/// Distinct keys of the protocol and port fields that [`ChainKeys`]
/// tells apart before it falls back to the fields' domains.
const FEW_KEYS: usize = 8;

/// The small fields, whose keys fit a `u16`: protocol, source and
/// destination port, with the number of distinct keys each can have.
const SMALL_FIELDS: [(usize, usize); 3] =
    [(F_PROTO, 1 << 8), (F_SPORT, 1 << 16), (F_DPORT, 1 << 16)];

/// The keys of a chain's rules, for sizing its index in one pass without
/// allocating: per field, how many keys all its rules have (the keyed
/// lists hold an id per key) and an upper bound of how many of them are
/// distinct (the hash table's slots). Rules that share a key share its
/// slot: a kube-proxy chain of 100,000 rules for one protocol and a few
/// ports needs a few slots there, not 262,144 each. The distinct keys of
/// the protocol and port fields are told apart while there are at most
/// [`FEW_KEYS`]; past that, the field's domain (256 protocols, 65,536
/// ports) bounds them. Addresses and services are bounded by their
/// count.
#[derive(Clone, Copy)]
pub(crate) struct ChainKeys {
    total: [usize; N_FIELDS],
    /// Per small field, its distinct keys so far (`n` of them; `n` above
    /// [`FEW_KEYS`] once there were more).
    few: [([u16; FEW_KEYS], usize); SMALL_FIELDS.len()],
}

impl ChainKeys {
    /// No rules yet.
    pub(crate) const fn new() -> Self {
        Self {
            total: [0; N_FIELDS],
            few: [([0; FEW_KEYS], 0); SMALL_FIELDS.len()],
        }
    }

    /// Adds rule `v`'s keys.
    pub(crate) fn add(&mut self, v: &RuleView<'_>) {
        let k = rule_keys(v);
        for (t, r) in self.total.iter_mut().zip(k) {
            *t = t.saturating_add(r);
        }
        // The small fields' keys, as the index's build takes them.
        for ((f, _), few) in SMALL_FIELDS.iter().zip(&mut self.few) {
            field_keys(v, *f, &Lens::EXACT, |_, key| {
                Self::note(few, u16::try_from(key).unwrap_or(u16::MAX));
            });
        }
    }

    fn note((keys, n): &mut ([u16; FEW_KEYS], usize), key: u16) {
        if *n > FEW_KEYS || keys.iter().take(*n).any(|k| *k == key) {
            return;
        }
        // (At `FEW_KEYS` it only counts: one more than it tells apart.)
        if let Some(slot) = keys.get_mut(*n) {
            *slot = key;
        }
        *n += 1;
    }

    /// How many keys field `f`'s rules have in all.
    fn total(&self, f: usize) -> usize {
        self.total.get(f).copied().unwrap_or(0)
    }

    /// An upper bound of field `f`'s distinct keys.
    fn distinct(&self, f: usize) -> usize {
        let total = self.total(f);
        SMALL_FIELDS
            .iter()
            .zip(&self.few)
            .find(|((g, _), _)| *g == f)
            .map_or(total, |((_, domain), (_, n))| {
                if *n <= FEW_KEYS {
                    *n
                } else {
                    total.min(*domain)
                }
            })
    }
}

/// Capacity of a hash table for `distinct` keys: a power of two at least
/// twice as large (so probes stay short), 0 for none.
fn capacity(distinct: usize) -> usize {
    if distinct == 0 {
        0
    } else {
        distinct
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(0)
    }
}

/// Size of the index of a chain of `n` rules whose rules have `keys`,
/// saturating.
pub(crate) fn index_size(n: usize, keys: &ChainKeys) -> usize {
    let mut s = IX_HDR.saturating_add(n.saturating_mul(4));
    for f in 0..N_FIELDS {
        s = s
            .saturating_add(n.saturating_mul(4))
            .saturating_add(keys.total(f).saturating_mul(4))
            .saturating_add(capacity(keys.distinct(f)).saturating_mul(SLOT_LEN));
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
        F_SVC => {
            let Some((daddr, proto, dport, _)) = svc_parts(v) else {
                return true;
            };
            for c in daddr.iter() {
                for r in dport.iter() {
                    let mut p = r.lo;
                    loop {
                        let (tag, key) = svc_key(c.family, c.addr, proto, p);
                        emit(tag, key);
                        if p >= r.hi {
                            break;
                        }
                        p += 1;
                    }
                }
            }
            false
        }
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
                let key = u128::from_be_bytes(c.addr) & mask_bits(c.prefix);
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
/// fresh pass) with their record lengths, and `keys` are their keys
/// ([`ChainKeys`]). Returns false if something did not fit (an internal
/// error).
pub(crate) fn build<'r, F, I>(
    buf: &mut [u8],
    at: usize,
    start: usize,
    n: usize,
    keys: &ChainKeys,
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
    for (f, a) in areas.iter_mut().enumerate() {
        a.wild = p;
        p += 4 * n;
        a.lists = p;
        p += 4 * keys.total(f);
        a.slots = p;
        a.cap = capacity(keys.distinct(f));
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

    let mut plan = 0u32;
    for (f, ((a, l), wl)) in areas.iter().zip(&lens).zip(wild_len).enumerate() {
        if wl < n {
            plan |= 1 << f;
        }
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
    w.u32(at + IX_PLAN, plan);
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

/// [`FEW_CANDIDATES`] as a length.
const FEW: usize = FEW_CANDIDATES as usize;

/// [`Query::few_len`] when the general fields answer.
const GENERAL: u8 = u8::MAX;
/// [`Query::few_len`] when every rule is a candidate.
const ALL: u8 = u8::MAX - 1;

/// `N` bytes at `at`, as an array (so that reads at constant offsets in
/// it need no further checks).
#[inline(always)]
fn arr<const N: usize>(buf: &[u8], at: usize) -> Option<&[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The little-endian `u32` at `at` of an array (0 past its end: with a
/// constant `at`, a plain load).
#[inline(always)]
fn le32<const N: usize>(a: &[u8; N], at: usize) -> u32 {
    match a.get(at..at.wrapping_add(4)) {
        Some(&[b0, b1, b2, b3]) => u32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0,
    }
}

/// The lists of a query whose candidates are not few: per field to
/// intersect, the lists whose union is its candidate set.
struct General {
    slices: [Slice; MAX_SLICES],
    /// Per field to intersect: first slice and number of slices.
    fields: [(u8, u8); WANTED],
    n_fields: usize,
}

impl General {
    const fn blank() -> Self {
        General {
            slices: [Slice { off: 0, len: 0 }; MAX_SLICES],
            fields: [(0, 0); WANTED],
            n_fields: 0,
        }
    }
}

/// A chain's index resolved for one packet. Made once per chain visit,
/// asked for the next candidate any number of times.
///
/// Most queries end with one field with at most [`FEW_CANDIDATES`]
/// candidates (kube-proxy's service address, a blocklist's prefix): their
/// ids are read into [`few`](Self::few) once, and [`next`](Self::next)
/// scans them. The lists of the others are in [`general`](Self::general),
/// which only they initialise (a few hundred bytes).
pub(crate) struct Query {
    /// Number of rules.
    n: u32,
    /// End record of the chain.
    end: u32,
    /// Rule offset table.
    offs: usize,
    /// Number of candidates in `few` (0: no rule), or [`GENERAL`] or
    /// [`ALL`].
    few_len: u8,
    /// The candidates, ascending, if few.
    few: [u32; FEW],
    general: Option<General>,
}

impl Query {
    /// A query that resolves nothing yet, to [`resolve`](Self::resolve)
    /// in place (made once per evaluation, not moved around per chain).
    pub(crate) const fn blank() -> Self {
        Query {
            n: 0,
            end: 0,
            offs: 0,
            few_len: 0,
            few: [0; FEW],
            general: None,
        }
    }

    /// Resolves the index at `at` for `facts`; `None` if it is corrupt
    /// (`self` is left resolving no rule then).
    pub(crate) fn resolve(&mut self, buf: &[u8], at: usize, facts: &PacketFacts) -> Option<()> {
        self.n = 0;
        self.few_len = 0;
        let hdr: &[u8; IX_HDR] = arr(buf, at)?;
        let n = le32(hdr, IX_N);
        let end = le32(hdr, IX_END);
        let offs = le32(hdr, IX_OFFS) as usize;
        let plan = le32(hdr, IX_PLAN);
        // The offset table must be there, which bounds `n` by the size.
        buf.get(offs..offs.checked_add((n as usize).checked_mul(4)?)?)?;
        (self.n, self.end, self.offs) = (n, end, offs);
        // The first field that narrows the candidates decides: few of
        // them (the common case), or the general query from it on.
        for k in 0..WANTED {
            let (f, tag, value) = wanted(facts, k);
            let Some(l) = field(buf, hdr, plan, n, f, tag, value)? else {
                continue;
            };
            if l.count == 0 {
                // No rule has the packet's key, and none is a wildcard.
                return Some(());
            }
            if l.total <= FEW_CANDIDATES {
                return self.take_few(buf, &l);
            }
            return self.resolve_general(buf, hdr, facts, k, l);
        }
        // Every rule is a candidate for every field.
        self.few_len = ALL;
        Some(())
    }

    /// Resolves to the few candidates of `l`'s lists.
    #[inline(always)]
    fn take_few(&mut self, buf: &[u8], l: &Lists) -> Option<()> {
        let mut few = [0u32; FEW];
        let mut len = 0usize;
        if let ([s, ..], 1) = (&l.first, l.count) {
            // One list: ascending and without duplicates already.
            for (i, c) in few.iter_mut().enumerate().take(s.len as usize) {
                let at = (s.off as usize).checked_add(i.checked_mul(4)?)?;
                *c = rd_u32(buf, at)?;
            }
            self.few = few;
            self.few_len = u8::try_from(s.len.min(FEW_CANDIDATES as u32)).ok()?;
            return Some(());
        }
        for s in l.first.iter().take(l.count) {
            for i in 0..s.len {
                let at = (s.off as usize).checked_add((i as usize).checked_mul(4)?)?;
                insert(&mut few, &mut len, rd_u32(buf, at)?);
            }
        }
        self.few = few;
        self.few_len = u8::try_from(len).ok()?;
        Some(())
    }

    /// [`resolve`](Self::resolve) from the `k0`-th field on, whose lists
    /// `l0` hold more than a few candidates: the fields to intersect,
    /// smallest candidate set first, unless a later field has few
    /// candidates (then it alone).
    #[inline(never)]
    fn resolve_general(
        &mut self,
        buf: &[u8],
        hdr: &[u8; IX_HDR],
        facts: &PacketFacts,
        k0: usize,
        l0: Lists,
    ) -> Option<()> {
        let n = self.n;
        let plan = le32(hdr, IX_PLAN);
        let g = self.general.get_or_insert_with(General::blank);
        let mut n_fields = 0usize;
        let mut sizes = [0u64; WANTED];
        let mut ns = 0usize;
        for k in k0..WANTED {
            let (f, tag, value) = wanted(facts, k);
            let l = if k == k0 {
                l0
            } else {
                match field(buf, hdr, plan, n, f, tag, value)? {
                    Some(l) => l,
                    None => continue,
                }
            };
            if l.count == 0 {
                self.few_len = 0;
                return Some(());
            }
            if l.total <= FEW_CANDIDATES {
                // Every matching rule is among these few: the other
                // fields need not be looked up or intersected.
                return self.take_few(buf, &l);
            }
            let first = ns;
            if l.count <= FEW {
                for s in l.first.iter().take(l.count) {
                    *g.slices.get_mut(ns)? = *s;
                    ns += 1;
                }
            } else {
                // More lists than `l` holds: look them up again.
                let d: &[u8; FD_LEN] = arr(hdr, IX_FIELDS.checked_add(f.checked_mul(FD_LEN)?)?)?;
                let slices = &mut g.slices;
                let mut fail = false;
                let mut push = |s: Slice| {
                    if s.len > 0 {
                        match slices.get_mut(ns) {
                            Some(d) => *d = s,
                            None => fail = true,
                        }
                        ns += 1;
                    }
                };
                push(Slice {
                    off: le32(d, FD_WILD),
                    len: le32(d, FD_WILD_LEN),
                });
                if let Some(value) = value {
                    field_lists(buf, d, f, tag, value, &mut push)?;
                }
                if fail {
                    return None;
                }
            }
            let field = (u8::try_from(first).ok()?, u8::try_from(ns - first).ok()?);
            *g.fields.get_mut(n_fields)? = field;
            *sizes.get_mut(n_fields)? = l.total;
            n_fields += 1;
        }
        g.n_fields = n_fields;
        // Smallest candidate set first (insertion sort of at most 5).
        for i in 1..n_fields {
            let mut j = i;
            while j > 0 {
                let (a, b) = (sizes.get(j - 1).copied()?, sizes.get(j).copied()?);
                if a <= b {
                    break;
                }
                sizes.swap(j - 1, j);
                g.fields.swap(j - 1, j);
                j -= 1;
            }
        }
        self.few_len = GENERAL;
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
    #[inline]
    pub(crate) fn rule_offset(&self, buf: &[u8], i: u32) -> Option<usize> {
        let at = self.offs.checked_add((i as usize).checked_mul(4)?)?;
        rd_u32(buf, at).map(|o| o as usize)
    }

    /// The lowest candidate rule at or after `p`, or [`n`](Self::n) if
    /// there is none.
    #[inline]
    pub(crate) fn next(&self, buf: &[u8], p: u32) -> u32 {
        if self.few_len == ALL {
            return p.min(self.n);
        }
        if self.few_len != GENERAL {
            let few = self.few.get(..usize::from(self.few_len)).unwrap_or(&[]);
            for &c in few {
                if c >= p {
                    return c.min(self.n);
                }
            }
            return self.n;
        }
        self.next_general(buf, p)
    }

    /// [`next`](Self::next) of a query with many candidates: the leapfrog
    /// intersection of its fields.
    fn next_general(&self, buf: &[u8], mut p: u32) -> u32 {
        let n = self.n;
        let Some(g) = self.general.as_ref() else {
            return n;
        };
        let fields = g.fields.get(..g.n_fields).unwrap_or(&[]);
        let union_from = |(first, count): (u8, u8), p: u32| -> u32 {
            let first = usize::from(first);
            let slices = g
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

/// Number of fields a query looks at: the service, both addresses, both
/// ports and the protocol.
const WANTED: usize = 6;

/// The `k`-th field a query looks at, the tag of its keys (exact fields)
/// and the packet's value there (`None` for ports of a packet without):
/// the service, then the addresses, the fields most likely to have few
/// candidates, which ends the resolution early.
#[inline(always)]
fn wanted(facts: &PacketFacts, k: usize) -> (usize, u8, Option<u128>) {
    let v4 = matches!(facts.family, Family::Ipv4);
    match k {
        0 => {
            let key = facts
                .ports()
                .map(|p| svc_key(facts.family, facts.dst, facts.proto, p.1));
            (F_SVC, key.map_or(0, |k| k.0), key.map(|k| k.1))
        }
        1 => (
            if v4 { F_DADDR4 } else { F_DADDR6 },
            0,
            Some(u128::from_be_bytes(facts.dst)),
        ),
        2 => (
            if v4 { F_SADDR4 } else { F_SADDR6 },
            0,
            Some(u128::from_be_bytes(facts.src)),
        ),
        3 => (F_DPORT, TAG_EXACT, facts.ports().map(|p| u128::from(p.1))),
        4 => (F_SPORT, TAG_EXACT, facts.ports().map(|p| u128::from(p.0))),
        _ => (F_PROTO, TAG_EXACT, Some(u128::from(facts.proto))),
    }
}

/// The lists of one field for a packet: the first [`FEW`] of them, how
/// many there are, and how many ids they hold in all.
#[derive(Clone, Copy)]
struct Lists {
    first: [Slice; FEW],
    count: usize,
    total: u64,
}

impl Lists {
    #[inline(always)]
    fn push(&mut self, s: Slice) {
        if s.len > 0 {
            if let Some(l) = self.first.get_mut(self.count) {
                *l = s;
            }
            self.count += 1;
            self.total += u64::from(s.len);
        }
    }
}

/// Field `f`'s lists for the packet's `value` (keys tagged `tag` if the
/// field is exact) in the index whose header is `hdr`: `Some(None)` for a field that narrows nothing (left out of
/// `plan`, or every one of the `n` rules a wildcard), `None` for a
/// corrupt index.
#[inline(always)]
fn field(
    buf: &[u8],
    hdr: &[u8; IX_HDR],
    plan: u32,
    n: u32,
    f: usize,
    tag: u8,
    value: Option<u128>,
) -> Option<Option<Lists>> {
    // Fields where every rule is a wildcard are left out of the plan
    // when the index is built.
    if plan & (1 << f) == 0 {
        return Some(None);
    }
    let d: &[u8; FD_LEN] = arr(hdr, IX_FIELDS.checked_add(f.checked_mul(FD_LEN)?)?)?;
    let wild = Slice {
        off: le32(d, FD_WILD),
        len: le32(d, FD_WILD_LEN),
    };
    if wild.len >= n {
        return Some(None);
    }
    let mut l = Lists {
        first: [Slice::default(); FEW],
        count: 0,
        total: 0,
    };
    l.push(wild);
    if let Some(value) = value {
        field_lists(buf, d, f, tag, value, &mut |s| l.push(s))?;
    }
    Some(Some(l))
}

/// Adds `id` to the ascending list `few[..*len]` unless it is there (a
/// rule with several of the packet's prefixes is in several lists);
/// drops the largest past [`FEW`] ids (only with a corrupt index).
fn insert(few: &mut [u32; FEW], len: &mut usize, id: u32) {
    let mut i = *len;
    while i > 0 {
        match few.get(i - 1) {
            Some(&v) if v > id => i -= 1,
            Some(&v) if v == id => return,
            _ => break,
        }
    }
    // Shift `few[i..len]` up by one.
    let mut j = (*len).min(FEW - 1);
    while j > i {
        if let Some(v) = few.get(j - 1).copied() {
            if let Some(d) = few.get_mut(j) {
                *d = v;
            }
        }
        j -= 1;
    }
    if let Some(d) = few.get_mut(i) {
        *d = id;
        *len = (*len + 1).min(FEW);
    }
}

/// Calls `push` with the list of each of the packet's keys (`value`) in
/// field `f`, whose descriptor is `d`: one per indexed prefix length for
/// an address, one tagged `tag` for the other fields. `None` for a
/// corrupt table.
#[inline(always)]
fn field_lists(
    buf: &[u8],
    d: &[u8; FD_LEN],
    f: usize,
    tag: u8,
    value: u128,
    push: &mut impl FnMut(Slice),
) -> Option<()> {
    let slots = le32(d, FD_SLOTS) as usize;
    let cap = le32(d, FD_CAP) as usize;
    if cap == 0 {
        return Some(());
    }
    if !is_addr_field(f) {
        if let Some(s) = lookup(buf, slots, cap, tag, value) {
            push(s);
        }
        return Some(());
    }
    let nlens = d.get(FD_NLENS).map_or(0, |l| usize::from(*l)).min(MAX_LENS);
    let lens: &[u8; MAX_LENS] = arr(d, FD_LENS)?;
    for &len in lens.iter().take(nlens) {
        let key = value & mask_bits(len);
        if let Some(s) = lookup(buf, slots, cap, len.saturating_add(1), key) {
            push(s);
        }
    }
    Some(())
}

/// The slice of `(tag, key)` in a hash table, if any.
fn lookup(buf: &[u8], slots: usize, cap: usize, tag: u8, key: u128) -> Option<Slice> {
    // A power of two, so that the probes visit every slot once: bounded
    // by the table, and by the buffer for a corrupt capacity (the slots
    // in the buffer are the first ones, and a probe past them ends it).
    if !cap.is_power_of_two() {
        return None;
    }
    let mask = cap - 1;
    let mut i = (hash(tag, key) as usize) & mask;
    for _ in 0..cap {
        let at = slots.checked_add(i.checked_mul(SLOT_LEN)?)?;
        let slot: &[u8; SLOT_LEN] = arr(buf, at)?;
        let t = slot.first().copied().unwrap_or(0);
        if t == 0 {
            return None;
        }
        if t == tag {
            let k: &[u8; 16] = arr(slot, S_KEY)?;
            if u128::from_be_bytes(*k) == key {
                return Some(Slice {
                    off: le32(slot, S_LIST),
                    len: le32(slot, S_LEN),
                });
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizing: rules that share their protocol or port share its slot.
    #[test]
    fn protocol_and_port_slots_follow_distinct_keys() {
        let mut k = ChainKeys::new();
        let slots = |k: &ChainKeys, f| capacity(k.distinct(f));
        for (p, port) in [(6u16, 80u16), (17, 80), (6, 443), (6, 80), (17, 53)] {
            ChainKeys::note(&mut k.few[0], p);
            ChainKeys::note(&mut k.few[2], port);
            k.total[F_PROTO] += 1;
            k.total[F_DPORT] += 1;
        }
        k.total[F_DADDR4] = 100_000;
        k.total[F_SVC] = 100_000;
        assert_eq!(k.total(F_PROTO), 5);
        assert_eq!(k.distinct(F_PROTO), 2);
        assert_eq!(k.distinct(F_DPORT), 3);
        assert_eq!(slots(&k, F_PROTO), 4);
        assert_eq!(slots(&k, F_DPORT), 8);
        assert_eq!(slots(&k, F_SPORT), 0);
        // Addresses and services: as many as there are keys.
        assert_eq!(slots(&k, F_DADDR4), 262_144);
        assert_eq!(slots(&k, F_SVC), 262_144);
        // More distinct keys than it tells apart: the domain bounds them.
        for port in 1000..1100 {
            ChainKeys::note(&mut k.few[2], port);
        }
        k.total[F_DPORT] = 100_000;
        assert_eq!(k.distinct(F_DPORT), 65_536);
        assert_eq!(slots(&k, F_DPORT), 131_072);
        k.total[F_DPORT] = 100;
        assert_eq!(k.distinct(F_DPORT), 100);
    }
}
