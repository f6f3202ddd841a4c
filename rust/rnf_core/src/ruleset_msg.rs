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
//! [`cmd::GET_RULES`]: crate::wire::cmd::GET_RULES
//! [`cmd::REPLACE_RULESET`]: crate::wire::cmd::REPLACE_RULESET
//! [`attr::RULESET`]: crate::wire::attr::RULESET

use crate::rules::{Policy, Table};
use crate::wire::{attr, rule_entry, ruleset, AttrIter, AttrWriter, Nest, WireError, NLA_F_NESTED};

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
