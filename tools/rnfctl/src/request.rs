// SPDX-License-Identifier: GPL-2.0-only

//! The requests of the rule commands, as (command, attributes) pairs, built
//! without touching a socket so that tests can decode exactly what would
//! be sent. Attribute order is the order written here.
//!
//! | rnfctl                                | cmd               | attributes                                   |
//! |---------------------------------------|-------------------|----------------------------------------------|
//! | `add T C RULE`                        | `NEW_RULE`        | `TABLE` `CHAIN` `RULE` [`GENERATION`]         |
//! | `insert T C [at N] RULE`              | `NEW_RULE`        | `TABLE` `CHAIN` `RULE` `POSITION`=N-1 [`GENERATION`] |
//! | `replace T C H RULE`                  | `NEW_RULE`        | `TABLE` `CHAIN` `RULE` `HANDLE`=H [`GENERATION`] |
//! | `delete T C H`                        | `DEL_RULE`        | `TABLE` `CHAIN` `HANDLE` [`GENERATION`]       |
//! | `delete T C RULE`                     | `DEL_RULE`        | `TABLE` `CHAIN` `RULE` [`GENERATION`]         |
//! | `list [T [C]]`, `save`                | `GET_RULES` dump  | [`TABLE`] (a chain is picked out locally)     |
//! | `flush [T [C]]`, `zero [T [C]]`       | `FLUSH`, `ZERO`   | [`TABLE` [`CHAIN`]]                           |
//! | `policy T C P`                        | `SET_POLICY`      | `TABLE` `CHAIN` `POLICY`                      |
//! | `chain add/delete T C`                | `NEW_CHAIN`/`DEL_CHAIN` | `TABLE` `CHAIN`                         |
//! | `chain rename T C N`                  | `RENAME_CHAIN`    | `TABLE` `CHAIN` `NEW_NAME`                    |
//! | `restore`                             | `REPLACE_RULESET` | `RULESET` [`GENERATION`]                      |
//! | `restore` (over 64 KiB)               | `REPLACE_RULESET` | `RULESET_PART`... [`GENERATION`]              |
//!
//! `RULE` is nested (`NLA_F_NESTED`) with the rule blob as its payload.

use rnf_core::rules::{Policy, Table};
use rnf_core::ruleset_msg::{put_rule, RulesetPartWriter};
use rnf_core::wire::{attr, cmd, AttrWriter, WireError};

use crate::error::Target;

/// One request: what to send and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Name of the operation in messages, e.g. `"add"`.
    pub op: &'static str,
    /// Generic netlink command.
    pub cmd: u8,
    /// Whether it is a dump (`NLM_F_DUMP`).
    pub dump: bool,
    /// The encoded attributes.
    pub attrs: Vec<u8>,
    /// What the request names, to word a refusal.
    pub target: Target,
}

/// Runs an encoding twice, to measure and then to write, and returns the
/// bytes.
pub fn encode(f: impl Fn(&mut AttrWriter<'_>)) -> Result<Vec<u8>, WireError> {
    let mut m = AttrWriter::measure();
    f(&mut m);
    let mut buf = vec![0u8; m.finish()?];
    let mut w = AttrWriter::new(&mut buf);
    f(&mut w);
    w.finish()?;
    Ok(buf)
}

/// Where `NEW_RULE` puts the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// At the end of the chain.
    Append,
    /// Before the rule at this 0-based index.
    At(u32),
    /// Instead of the rule with this handle.
    Replace(u64),
}

/// Which rule `DEL_RULE` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// The rule with this handle.
    Handle(u64),
    /// The first rule whose blob is this one.
    Rule(Vec<u8>),
}

fn put_head(w: &mut AttrWriter<'_>, table: Table, chain: &str) {
    w.put_u8(attr::TABLE, table as u8);
    w.put_str(attr::CHAIN, chain);
}

fn put_generation(w: &mut AttrWriter<'_>, generation: Option<u64>) {
    if let Some(g) = generation {
        w.put_u64(attr::GENERATION, g);
    }
}

fn target(table: Option<Table>, chain: Option<&str>, generation: Option<u64>) -> Target {
    Target {
        table,
        chain: chain.map(str::to_owned),
        generation,
        ..Target::default()
    }
}

/// `NEW_RULE`.
pub fn new_rule(
    op: &'static str,
    table: Table,
    chain: &str,
    blob: &[u8],
    place: Place,
    generation: Option<u64>,
) -> Result<Request, WireError> {
    let attrs = encode(|w| {
        put_head(w, table, chain);
        put_rule(w, attr::RULE, blob);
        match place {
            Place::Append => {}
            Place::At(i) => w.put_u32(attr::POSITION, i),
            Place::Replace(h) => w.put_u64(attr::HANDLE, h),
        }
        put_generation(w, generation);
    })?;
    let mut t = target(Some(table), Some(chain), generation);
    match place {
        Place::Append => {}
        Place::At(i) => t.position = Some(i),
        Place::Replace(h) => t.handle = Some(h),
    }
    Ok(Request {
        op,
        cmd: cmd::NEW_RULE,
        dump: false,
        attrs,
        target: t,
    })
}

/// `DEL_RULE`.
pub fn del_rule(
    table: Table,
    chain: &str,
    which: &Which,
    generation: Option<u64>,
) -> Result<Request, WireError> {
    let attrs = encode(|w| {
        put_head(w, table, chain);
        match which {
            Which::Handle(h) => w.put_u64(attr::HANDLE, *h),
            Which::Rule(blob) => put_rule(w, attr::RULE, blob),
        }
        put_generation(w, generation);
    })?;
    let mut t = target(Some(table), Some(chain), generation);
    match which {
        Which::Handle(h) => t.handle = Some(*h),
        Which::Rule(_) => t.by_rule = true,
    }
    Ok(Request {
        op: "delete",
        cmd: cmd::DEL_RULE,
        dump: false,
        attrs,
        target: t,
    })
}

/// `GET_RULES` dump of everything or of one table.
pub fn get_rules(op: &'static str, table: Option<Table>) -> Result<Request, WireError> {
    let attrs = encode(|w| {
        if let Some(t) = table {
            w.put_u8(attr::TABLE, t as u8);
        }
    })?;
    Ok(Request {
        op,
        cmd: cmd::GET_RULES,
        dump: true,
        attrs,
        target: target(table, None, None),
    })
}

/// `FLUSH` or `ZERO` (`command`) of everything, a table or a chain.
pub fn scoped(
    op: &'static str,
    command: u8,
    table: Option<Table>,
    chain: Option<&str>,
) -> Result<Request, WireError> {
    let attrs = encode(|w| {
        if let Some(t) = table {
            w.put_u8(attr::TABLE, t as u8);
            if let Some(c) = chain {
                w.put_str(attr::CHAIN, c);
            }
        }
    })?;
    Ok(Request {
        op,
        cmd: command,
        dump: false,
        attrs,
        target: target(table, chain, None),
    })
}

/// `SET_POLICY`.
pub fn set_policy(table: Table, chain: &str, policy: Policy) -> Result<Request, WireError> {
    let attrs = encode(|w| {
        put_head(w, table, chain);
        w.put_u8(attr::POLICY, policy as u8);
    })?;
    Ok(Request {
        op: "policy",
        cmd: cmd::SET_POLICY,
        dump: false,
        attrs,
        target: target(Some(table), Some(chain), None),
    })
}

/// `NEW_CHAIN` or `DEL_CHAIN` (`command`).
pub fn chain(
    op: &'static str,
    command: u8,
    table: Table,
    name: &str,
) -> Result<Request, WireError> {
    let attrs = encode(|w| put_head(w, table, name))?;
    Ok(Request {
        op,
        cmd: command,
        dump: false,
        attrs,
        target: target(Some(table), Some(name), None),
    })
}

/// `RENAME_CHAIN`.
pub fn rename_chain(table: Table, name: &str, new_name: &str) -> Result<Request, WireError> {
    let attrs = encode(|w| {
        put_head(w, table, name);
        w.put_str(attr::NEW_NAME, new_name);
    })?;
    let mut t = target(Some(table), Some(name), None);
    t.new_name = Some(new_name.to_owned());
    Ok(Request {
        op: "chain rename",
        cmd: cmd::RENAME_CHAIN,
        dump: false,
        attrs,
        target: t,
    })
}

/// `REPLACE_RULESET` with the `RULESET` that `ruleset` writes.
pub fn replace_ruleset(
    ruleset: impl Fn(&mut AttrWriter<'_>),
    generation: Option<u64>,
) -> Result<Request, WireError> {
    let attrs = encode(|w| {
        let nest = w.begin_nested(attr::RULESET);
        ruleset(w);
        w.end_nested(nest);
        put_generation(w, generation);
    })?;
    Ok(Request {
        op: "restore",
        cmd: cmd::REPLACE_RULESET,
        dump: false,
        attrs,
        target: target(None, None, generation),
    })
}

/// `REPLACE_RULESET` with the rule set that `ruleset` writes split into
/// `RULESET_PART` attributes of at most `part_size` bytes each: for rule
/// sets larger than one attribute holds. Still one request, so one atomic
/// change.
pub fn replace_ruleset_parts<'n>(
    ruleset: impl Fn(&mut RulesetPartWriter<'_, '_, 'n>),
    part_size: usize,
    generation: Option<u64>,
) -> Result<Request, WireError> {
    let attrs = encode(|w| {
        let mut p = RulesetPartWriter::new(w, part_size);
        ruleset(&mut p);
        p.finish();
        put_generation(w, generation);
    })?;
    Ok(Request {
        op: "restore",
        cmd: cmd::REPLACE_RULESET,
        dump: false,
        attrs,
        target: target(None, None, generation),
    })
}
