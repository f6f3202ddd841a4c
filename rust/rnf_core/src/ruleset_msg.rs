// SPDX-License-Identifier: GPL-2.0-only

//! Encoding and decoding of the rule-management messages of the rnf
//! family: the per-chain messages of a [`cmd::GET_RULES`] dump and the
//! [`attr::RULESET`] payload of [`cmd::REPLACE_RULESET`].
//!
//! Both sides use these: the kernel encodes listings and decodes rule sets,
//! `rnfctl` does the opposite (and its tests the reverse, to check itself).
//! Nothing here allocates or panics; decoders borrow from the received
//! bytes and skip attributes they do not know.
//!
//! A rule blob (the `rules` format) travels as the payload of a nested
//! attribute ([`put_rule`]): its `nla_type` is `attr::RULE | NLA_F_NESTED`.
//!
//! A rule set larger than one attribute can hold (`nla_len` is a `u16`:
//! 64 KiB) travels as several [`attr::RULESET_PART`] attributes of one
//! request ([`RulesetPartWriter`]); a netlink message itself may be far
//! larger than 64 KiB. The kernel reads the parts in order as one rule set
//! ([`RulesetItems`]), so one request is still one atomic change.
//!
//! [`cmd::GET_RULES`]: crate::wire::cmd::GET_RULES
//! [`cmd::REPLACE_RULESET`]: crate::wire::cmd::REPLACE_RULESET
//! [`attr::RULESET`]: crate::wire::attr::RULESET

use crate::rules::{Policy, Table, MAX_RULES};
use crate::wire::{
    attr, nla_align, rule_entry, ruleset, AttrIter, AttrWriter, Nest, WireError, NLA_F_NESTED,
    NLA_HDRLEN,
};

/// Writes a rule blob as a nested attribute of type `ty` (normally
/// [`attr::RULE`]).
pub fn put_rule(w: &mut AttrWriter<'_>, ty: u16, blob: &[u8]) {
    w.put_bytes(ty | NLA_F_NESTED, blob);
}

/// Iterator over the payloads of the attributes of one type in a list;
/// other types are skipped, iteration stops after the first error.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    it: AttrIter<'a>,
    ty: u16,
    failed: bool,
}

impl<'a> Entries<'a> {
    /// The attributes of type `ty` in `buf`.
    pub const fn new(buf: &'a [u8], ty: u16) -> Self {
        Self {
            it: AttrIter::new(buf),
            ty,
            failed: false,
        }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        for a in self.it.by_ref() {
            match a {
                Ok(a) if a.ty == self.ty => return Some(Ok(a.payload)),
                Ok(_) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// One rule of a listing ([`rule_entry::ENTRY`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleEntry<'a> {
    /// Stable handle.
    pub handle: u64,
    /// 0-based position in its chain.
    pub position: u32,
    /// Packets that matched.
    pub packets: u64,
    /// Bytes that matched.
    pub bytes: u64,
    /// The rule blob.
    pub rule: &'a [u8],
}

impl<'a> RuleEntry<'a> {
    /// Writes this entry as a nested [`rule_entry::ENTRY`] attribute.
    pub fn encode(&self, w: &mut AttrWriter<'_>) {
        let nest = w.begin_nested(rule_entry::ENTRY);
        w.put_u64(attr::HANDLE, self.handle);
        w.put_u32(attr::POSITION, self.position);
        w.put_u64(attr::PACKETS, self.packets);
        w.put_u64(attr::BYTES, self.bytes);
        put_rule(w, attr::RULE, self.rule);
        w.end_nested(nest);
    }

    /// Decodes the payload of a [`rule_entry::ENTRY`]. All five attributes
    /// are required; unknown ones are skipped. The blob is not validated.
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut handle = None;
        let mut position = None;
        let mut packets = None;
        let mut bytes = None;
        let mut rule = None;
        for a in AttrIter::new(payload) {
            let a = a?;
            match a.ty {
                attr::HANDLE => handle = Some(a.u64()?),
                attr::POSITION => position = Some(a.u32()?),
                attr::PACKETS => packets = Some(a.u64()?),
                attr::BYTES => bytes = Some(a.u64()?),
                attr::RULE => rule = Some(a.payload),
                _ => {}
            }
        }
        Ok(Self {
            handle: handle.ok_or(WireError::Missing(attr::HANDLE))?,
            position: position.ok_or(WireError::Missing(attr::POSITION))?,
            packets: packets.ok_or(WireError::Missing(attr::PACKETS))?,
            bytes: bytes.ok_or(WireError::Missing(attr::BYTES))?,
            rule: rule.ok_or(WireError::Missing(attr::RULE))?,
        })
    }
}

/// The chain-level attributes of one [`cmd::GET_RULES`] dump message.
///
/// [`cmd::GET_RULES`]: crate::wire::cmd::GET_RULES
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHeader<'a> {
    /// Table of the chain.
    pub table: Table,
    /// Chain name.
    pub chain: &'a str,
    /// Policy; `Some` for built-in chains only.
    pub policy: Option<Policy>,
    /// Packets that met the policy (0 for user chains).
    pub packets: u64,
    /// Bytes that met the policy (0 for user chains).
    pub bytes: u64,
    /// Rule-set generation the listing was taken at.
    pub generation: u64,
}

/// Encodes one [`cmd::GET_RULES`] dump message's attributes: the header,
/// then `RULES` with `entries` in order. `PACKETS` and `BYTES` are written
/// for built-in chains only.
///
/// [`cmd::GET_RULES`]: crate::wire::cmd::GET_RULES
pub fn encode_chain_listing<'r>(
    w: &mut AttrWriter<'_>,
    header: &ChainHeader<'_>,
    entries: impl Iterator<Item = RuleEntry<'r>>,
) {
    w.put_u8(attr::TABLE, header.table as u8);
    w.put_str(attr::CHAIN, header.chain);
    if let Some(p) = header.policy {
        w.put_u8(attr::POLICY, p as u8);
        w.put_u64(attr::PACKETS, header.packets);
        w.put_u64(attr::BYTES, header.bytes);
    }
    w.put_u64(attr::GENERATION, header.generation);
    let nest = w.begin_nested(attr::RULES);
    for e in entries {
        e.encode(w);
    }
    w.end_nested(nest);
}

/// A decoded [`cmd::GET_RULES`] dump message.
///
/// [`cmd::GET_RULES`]: crate::wire::cmd::GET_RULES
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainListing<'a> {
    /// Chain-level attributes.
    pub header: ChainHeader<'a>,
    rules: &'a [u8],
}

impl<'a> ChainListing<'a> {
    /// Decodes the attributes of a dump message (after the genl header).
    /// `TABLE`, `CHAIN` and `GENERATION` are required; `PACKETS` and
    /// `BYTES` default to 0, `POLICY` to none and `RULES` to empty.
    pub fn decode(attrs: &'a [u8]) -> Result<Self, WireError> {
        let mut table = None;
        let mut chain = None;
        let mut policy = None;
        let mut packets = 0;
        let mut bytes = 0;
        let mut generation = None;
        let mut rules: &[u8] = &[];
        for a in AttrIter::new(attrs) {
            let a = a?;
            match a.ty {
                attr::TABLE => table = Some(Table::from_u8(a.u8()?).ok_or(WireError::BadValue)?),
                attr::CHAIN => chain = Some(a.str()?),
                attr::POLICY => {
                    policy = Some(Policy::from_u8(a.u8()?).ok_or(WireError::BadValue)?);
                }
                attr::PACKETS => packets = a.u64()?,
                attr::BYTES => bytes = a.u64()?,
                attr::GENERATION => generation = Some(a.u64()?),
                attr::RULES => rules = a.payload,
                _ => {}
            }
        }
        Ok(Self {
            header: ChainHeader {
                table: table.ok_or(WireError::Missing(attr::TABLE))?,
                chain: chain.ok_or(WireError::Missing(attr::CHAIN))?,
                policy,
                packets,
                bytes,
                generation: generation.ok_or(WireError::Missing(attr::GENERATION))?,
            },
            rules,
        })
    }

    /// The rules, in the order the kernel sent them; iteration stops after
    /// the first error.
    pub fn rules(&self) -> impl Iterator<Item = Result<RuleEntry<'a>, WireError>> + 'a {
        let mut failed = false;
        Entries::new(self.rules, rule_entry::ENTRY).filter_map(move |p| {
            if failed {
                return None;
            }
            let r = p.and_then(RuleEntry::decode);
            failed = r.is_err();
            Some(r)
        })
    }
}

/// Opens a [`ruleset::TABLE`] entry inside `attr::RULESET` and writes its
/// `attr::TABLE`; close it with [`AttrWriter::end_nested`].
pub fn begin_ruleset_table(w: &mut AttrWriter<'_>, table: Table) -> Nest {
    let nest = w.begin_nested(ruleset::TABLE);
    w.put_u8(attr::TABLE, table as u8);
    nest
}

/// Opens a [`ruleset::CHAIN`] entry inside a table entry and writes its
/// name and policy; write its rules with [`put_rule`] (`attr::RULE`), then
/// close it with [`AttrWriter::end_nested`].
pub fn begin_ruleset_chain(w: &mut AttrWriter<'_>, name: &str, policy: Option<Policy>) -> Nest {
    let nest = w.begin_nested(ruleset::CHAIN);
    w.put_str(attr::CHAIN, name);
    if let Some(p) = policy {
        w.put_u8(attr::POLICY, p as u8);
    }
    nest
}

/// The tables in the payload of an `attr::RULESET` attribute.
pub fn ruleset_tables(
    payload: &[u8],
) -> impl Iterator<Item = Result<RulesetTable<'_>, WireError>> + '_ {
    let mut failed = false;
    Entries::new(payload, ruleset::TABLE).filter_map(move |p| {
        if failed {
            return None;
        }
        let r = p.and_then(RulesetTable::decode);
        failed = r.is_err();
        Some(r)
    })
}

/// One table of a rule set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RulesetTable<'a> {
    /// The table.
    pub table: Table,
    chains: &'a [u8],
}

impl<'a> RulesetTable<'a> {
    /// Decodes the payload of a [`ruleset::TABLE`]; `attr::TABLE` is
    /// required.
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let a = AttrIter::new(payload)
            .find(attr::TABLE)?
            .ok_or(WireError::Missing(attr::TABLE))?;
        let table = Table::from_u8(a.u8()?).ok_or(WireError::BadValue)?;
        Ok(Self {
            table,
            chains: payload,
        })
    }

    /// The chains, in order; iteration stops after the first error.
    pub fn chains(&self) -> impl Iterator<Item = Result<RulesetChain<'a>, WireError>> + 'a {
        let mut failed = false;
        Entries::new(self.chains, ruleset::CHAIN).filter_map(move |p| {
            if failed {
                return None;
            }
            let r = p.and_then(RulesetChain::decode);
            failed = r.is_err();
            Some(r)
        })
    }
}

/// One chain of a rule set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RulesetChain<'a> {
    /// Chain name.
    pub name: &'a str,
    /// Policy (built-in chains).
    pub policy: Option<Policy>,
    rules: &'a [u8],
}

impl<'a> RulesetChain<'a> {
    /// Decodes the payload of a [`ruleset::CHAIN`]; `attr::CHAIN` is
    /// required.
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut name = None;
        let mut policy = None;
        for a in AttrIter::new(payload) {
            let a = a?;
            match a.ty {
                attr::CHAIN => name = Some(a.str()?),
                attr::POLICY => {
                    policy = Some(Policy::from_u8(a.u8()?).ok_or(WireError::BadValue)?);
                }
                _ => {}
            }
        }
        Ok(Self {
            name: name.ok_or(WireError::Missing(attr::CHAIN))?,
            policy,
            rules: payload,
        })
    }

    /// The rule blobs (not validated), in order.
    pub fn rules(&self) -> Entries<'a> {
        Entries::new(self.rules, attr::RULE)
    }
}

/// Size (header included) that [`RulesetPartWriter`] keeps each
/// [`attr::RULESET_PART`] under, unless a single entry is larger: well
/// below the 65535 bytes an attribute can hold.
pub const PART_SIZE: usize = 60 * 1024;

/// Most bytes of rule-set attributes (every `RULESET` and `RULESET_PART`,
/// headers included) the kernel takes in one `REPLACE_RULESET`.
pub const RULESET_MAX_BYTES: usize = 64 << 20;

/// Most rules the kernel takes in one `REPLACE_RULESET` (each table is
/// further limited to `rules::MAX_RULES`).
pub const RULESET_MAX_RULES: usize = 4 * MAX_RULES;

/// Size of a [`ruleset::TABLE`] entry's header and `attr::TABLE`.
const TABLE_HEAD: usize = NLA_HDRLEN + NLA_HDRLEN + 4;

/// Size of a [`ruleset::CHAIN`] entry's header, name and policy.
fn chain_head(name: &str, policy: Option<Policy>) -> usize {
    let name_attr = nla_align(NLA_HDRLEN.saturating_add(name.len()).saturating_add(1));
    let policy_attr = if policy.is_some() { NLA_HDRLEN + 4 } else { 0 };
    NLA_HDRLEN
        .saturating_add(name_attr)
        .saturating_add(policy_attr)
}

/// Writes a rule set as [`attr::RULESET_PART`] attributes, each at most
/// `part_size` bytes unless a single entry does not fit in an empty part.
///
/// Call [`table`](Self::table), then [`chain`](Self::chain) for each of
/// its chains, then [`rule`](Self::rule) for each of the chain's rules, in
/// order, and [`finish`](Self::finish) at the end. Where a part is full,
/// the open table and chain are closed and repeated (the chain without its
/// policy) at the start of the next part: [`RulesetItems`] reads such a
/// repeat as a continuation. Writing is deterministic, so the same calls
/// on [`AttrWriter::measure`] size the buffer exactly.
#[derive(Debug)]
pub struct RulesetPartWriter<'w, 'b, 'n> {
    w: &'w mut AttrWriter<'b>,
    part_size: usize,
    /// The open part and where it starts.
    part: Option<(Nest, usize)>,
    table: Option<(Nest, Table)>,
    chain: Option<(Nest, &'n str)>,
    parts: usize,
}

impl<'w, 'b, 'n> RulesetPartWriter<'w, 'b, 'n> {
    /// A writer of parts of at most `part_size` bytes (at most
    /// [`PART_SIZE`] is sensible; larger values are capped at what an
    /// attribute can hold).
    pub fn new(w: &'w mut AttrWriter<'b>, part_size: usize) -> Self {
        Self {
            w,
            part_size: part_size.min(nla_align(u16::MAX as usize) - NLA_HDRLEN),
            part: None,
            table: None,
            chain: None,
            parts: 0,
        }
    }

    fn used(&self) -> usize {
        match &self.part {
            Some((_, start)) => self.w.len().saturating_sub(*start),
            None => 0,
        }
    }

    fn close_chain(&mut self) {
        if let Some((n, _)) = self.chain.take() {
            self.w.end_nested(n);
        }
    }

    fn close_table(&mut self) {
        self.close_chain();
        if let Some((n, _)) = self.table.take() {
            self.w.end_nested(n);
        }
    }

    fn close_part(&mut self) {
        self.close_table();
        if let Some((n, _)) = self.part.take() {
            self.w.end_nested(n);
        }
    }

    /// Makes sure `need` more bytes go into the open part: if they do not
    /// fit, starts a new part and reopens the table and chain there.
    fn room(&mut self, need: usize) {
        if self.part.is_some() && self.used().saturating_add(need) <= self.part_size {
            return;
        }
        let table = self.table.as_ref().map(|t| t.1);
        let chain = self.chain.as_ref().map(|c| c.1);
        self.close_part();
        let start = self.w.len();
        self.part = Some((self.w.begin_nested(attr::RULESET_PART), start));
        self.parts = self.parts.saturating_add(1);
        if let Some(t) = table {
            self.table = Some((begin_ruleset_table(self.w, t), t));
            if let Some(c) = chain {
                self.chain = Some((begin_ruleset_chain(self.w, c, None), c));
            }
        }
        // A new part takes the next entry even if it is too large alone.
    }

    /// Starts table `t` (closing the chain and table before it).
    pub fn table(&mut self, t: Table) {
        self.close_table();
        self.room(TABLE_HEAD);
        self.table = Some((begin_ruleset_table(self.w, t), t));
    }

    /// Starts chain `name` of the current table (closing the chain before
    /// it); `policy` for built-in chains.
    pub fn chain(&mut self, name: &'n str, policy: Option<Policy>) {
        self.close_chain();
        self.room(chain_head(name, policy));
        self.chain = Some((begin_ruleset_chain(self.w, name, policy), name));
    }

    /// Appends a rule blob to the current chain.
    pub fn rule(&mut self, blob: &[u8]) {
        self.room(nla_align(NLA_HDRLEN.saturating_add(blob.len())));
        put_rule(self.w, attr::RULE, blob);
    }

    /// Closes everything and returns the number of parts written (at least
    /// one: an empty rule set is one empty part).
    pub fn finish(mut self) -> usize {
        if self.part.is_none() {
            self.room(0);
        }
        self.close_part();
        self.parts
    }
}

/// One step of reading a rule set ([`RulesetItems`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesetItem<'a> {
    /// A table starts; the chains and rules that follow are its own.
    Table(Table),
    /// A chain of the current table starts (or, for a name given just
    /// before, continues with a new policy).
    Chain(&'a str, Option<Policy>),
    /// A rule blob (not validated) of the current chain.
    Rule(&'a [u8]),
}

/// Reads the rule set of a `REPLACE_RULESET` request: every top-level
/// [`attr::RULESET`] and [`attr::RULESET_PART`] attribute, in order, as one
/// list of tables.
///
/// A table entry for the table just read continues that table, and a chain
/// entry for the chain just read continues that chain (reported again only
/// if it gives a policy): this is how [`RulesetPartWriter`] splits tables
/// and chains across parts. Other top-level attributes are skipped; the
/// first malformed entry ends the iteration with an error.
#[derive(Clone, Debug)]
pub struct RulesetItems<'a> {
    parts: AttrIter<'a>,
    tables: Entries<'a>,
    chains: Entries<'a>,
    rules: Entries<'a>,
    table: Option<Table>,
    chain: Option<&'a str>,
    failed: bool,
}

impl<'a> RulesetItems<'a> {
    /// Reads the top-level attributes `attrs` of a request (everything
    /// after the generic netlink header).
    pub const fn new(attrs: &'a [u8]) -> Self {
        Self {
            parts: AttrIter::new(attrs),
            tables: Entries::new(&[], ruleset::TABLE),
            chains: Entries::new(&[], ruleset::CHAIN),
            rules: Entries::new(&[], attr::RULE),
            table: None,
            chain: None,
            failed: false,
        }
    }

    /// Reads the payload of a single [`attr::RULESET`].
    pub const fn from_ruleset(payload: &'a [u8]) -> Self {
        let mut s = Self::new(&[]);
        s.tables = Entries::new(payload, ruleset::TABLE);
        s
    }

    fn step(&mut self) -> Option<Result<RulesetItem<'a>, WireError>> {
        loop {
            if let Some(r) = self.rules.next() {
                return Some(r.map(RulesetItem::Rule));
            }
            if let Some(c) = self.chains.next() {
                let c = match c.and_then(RulesetChain::decode) {
                    Ok(c) => c,
                    Err(e) => return Some(Err(e)),
                };
                self.rules = c.rules();
                if self.chain != Some(c.name) || c.policy.is_some() {
                    self.chain = Some(c.name);
                    return Some(Ok(RulesetItem::Chain(c.name, c.policy)));
                }
                continue;
            }
            if let Some(t) = self.tables.next() {
                let t = match t.and_then(RulesetTable::decode) {
                    Ok(t) => t,
                    Err(e) => return Some(Err(e)),
                };
                self.chains = Entries::new(t.chains, ruleset::CHAIN);
                if self.table != Some(t.table) {
                    self.table = Some(t.table);
                    self.chain = None;
                    return Some(Ok(RulesetItem::Table(t.table)));
                }
                continue;
            }
            match self.parts.next()? {
                Ok(a) if a.ty == attr::RULESET || a.ty == attr::RULESET_PART => {
                    self.tables = Entries::new(a.payload, ruleset::TABLE);
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl<'a> Iterator for RulesetItems<'a> {
    type Item = Result<RulesetItem<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.step();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{vec, vec::Vec};

    fn encode(f: impl Fn(&mut AttrWriter<'_>)) -> Vec<u8> {
        let mut m = AttrWriter::measure();
        f(&mut m);
        let mut buf = vec![0u8; m.finish().unwrap()];
        let mut w = AttrWriter::new(&mut buf);
        f(&mut w);
        w.finish().unwrap();
        buf
    }

    #[test]
    fn rule_is_nested_on_the_wire() {
        let b = encode(|w| put_rule(w, attr::RULE, &[1, 2, 3, 4]));
        assert_eq!(&b[2..4], &(attr::RULE | NLA_F_NESTED).to_ne_bytes());
        let a = AttrIter::new(&b).next().unwrap().unwrap();
        assert!(a.nested);
        assert_eq!(a.payload, &[1, 2, 3, 4]);
    }

    #[test]
    fn chain_listing_round_trip() {
        let h = ChainHeader {
            table: Table::Filter,
            chain: "INPUT",
            policy: Some(Policy::Drop),
            packets: 12,
            bytes: 1008,
            generation: 7,
        };
        let rules = [
            RuleEntry {
                handle: 4,
                position: 0,
                packets: 1,
                bytes: 2,
                rule: &[4, 0, 1, 0],
            },
            RuleEntry {
                handle: 9,
                position: 1,
                packets: u64::MAX,
                bytes: 3,
                rule: &[],
            },
        ];
        let b = encode(|w| encode_chain_listing(w, &h, rules.iter().copied()));
        let l = ChainListing::decode(&b).unwrap();
        assert_eq!(l.header, h);
        let got: Vec<_> = l.rules().map(|r| r.unwrap()).collect();
        assert_eq!(got, rules);

        let user = ChainHeader {
            chain: "WEB",
            policy: None,
            packets: 0,
            bytes: 0,
            ..h
        };
        let b = encode(|w| encode_chain_listing(w, &user, core::iter::empty()));
        let l = ChainListing::decode(&b).unwrap();
        assert_eq!(l.header, user);
        assert_eq!(l.rules().count(), 0);
        assert!(AttrIter::new(&b).find(attr::PACKETS).unwrap().is_none());
    }

    #[test]
    fn listing_errors() {
        let b = encode(|w| {
            w.put_u8(attr::TABLE, 3);
            w.put_str(attr::CHAIN, "X");
        });
        assert_eq!(
            ChainListing::decode(&b),
            Err(WireError::Missing(attr::GENERATION))
        );
        let b = encode(|w| {
            w.put_u8(attr::TABLE, 9);
        });
        assert_eq!(ChainListing::decode(&b), Err(WireError::BadValue));
        let b = encode(|w| {
            w.put_u8(attr::TABLE, 3);
            w.put_str(attr::CHAIN, "X");
            w.put_u64(attr::GENERATION, 1);
            let n = w.begin_nested(attr::RULES);
            let e = w.begin_nested(rule_entry::ENTRY);
            w.put_u64(attr::HANDLE, 1);
            w.end_nested(e);
            w.end_nested(n);
        });
        let l = ChainListing::decode(&b).unwrap();
        let r: Vec<_> = l.rules().collect();
        assert_eq!(r, vec![Err(WireError::Missing(attr::POSITION))]);
    }

    #[test]
    fn ruleset_round_trip() {
        let b = encode(|w| {
            let rs = w.begin_nested(attr::RULESET);
            let t = begin_ruleset_table(w, Table::Filter);
            let c = begin_ruleset_chain(w, "INPUT", Some(Policy::Drop));
            put_rule(w, attr::RULE, &[1, 0, 0, 0]);
            put_rule(w, attr::RULE, &[2, 0, 0, 0]);
            w.end_nested(c);
            let c = begin_ruleset_chain(w, "WEB", None);
            w.end_nested(c);
            w.end_nested(t);
            let t = begin_ruleset_table(w, Table::Raw);
            w.end_nested(t);
            w.end_nested(rs);
        });
        let rs = AttrIter::new(&b).find(attr::RULESET).unwrap().unwrap();
        assert!(rs.nested);
        let tables: Vec<_> = ruleset_tables(rs.payload).map(|t| t.unwrap()).collect();
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].table, Table::Filter);
        assert_eq!(tables[1].table, Table::Raw);
        assert_eq!(tables[1].chains().count(), 0);
        let chains: Vec<_> = tables[0].chains().map(|c| c.unwrap()).collect();
        assert_eq!(chains.len(), 2);
        assert_eq!(chains[0].name, "INPUT");
        assert_eq!(chains[0].policy, Some(Policy::Drop));
        let rules: Vec<_> = chains[0].rules().map(|r| r.unwrap()).collect();
        assert_eq!(rules, vec![&[1u8, 0, 0, 0][..], &[2, 0, 0, 0][..]]);
        assert_eq!(chains[1].name, "WEB");
        assert_eq!(chains[1].policy, None);
        assert_eq!(chains[1].rules().count(), 0);
    }

    #[test]
    fn ruleset_errors() {
        let b = encode(|w| {
            let t = w.begin_nested(ruleset::TABLE);
            w.end_nested(t);
        });
        let r: Vec<_> = ruleset_tables(&b).collect();
        assert_eq!(r, vec![Err(WireError::Missing(attr::TABLE))]);
        let b = encode(|w| {
            let t = begin_ruleset_table(w, Table::Nat);
            let c = w.begin_nested(ruleset::CHAIN);
            w.put_u8(attr::POLICY, 5);
            w.end_nested(c);
            w.end_nested(t);
        });
        let t = ruleset_tables(&b).next().unwrap().unwrap();
        let c: Vec<_> = t.chains().collect();
        assert_eq!(c, vec![Err(WireError::BadValue)]);
        // Garbage after a good entry ends iteration with an error.
        let mut b = encode(|w| {
            let t = begin_ruleset_table(w, Table::Nat);
            w.end_nested(t);
        });
        b.extend_from_slice(&[9, 0]);
        let r: Vec<_> = ruleset_tables(&b).collect();
        assert_eq!(r.len(), 2);
        assert!(r[0].is_ok());
        assert_eq!(r[1], Err(WireError::Truncated));
    }
}
