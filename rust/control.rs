// SPDX-License-Identifier: GPL-2.0

//! The `rnf` generic netlink family: how rnfctl talks to the module.
//!
//! The wire format (commands, attributes, encoding) is `wire` and
//! `ruleset_msg`, shared with rnfctl. Every command is admin-only:
//! CAP_NET_ADMIN over the caller's network namespace, checked by the kernel
//! before a handler runs. Requests are checked against the attribute policy
//! by the kernel, then completely by the rule store before anything
//! changes; a refused request changes nothing and says why in the extended
//! ack.

use crate::ct_msg;
use crate::firewall::NetState;
use crate::genl::{self, AttrKind, Command, Request};
use crate::pernet::NetData;
use crate::rules::{self, Policy, Table};
use crate::ruleset::{ChangeError, Placement, RestoreTable, Rule, RuleStore, TableRules, Victim};
use crate::ruleset_msg::{self, ChainHeader, RuleEntry, RulesetItem};
use crate::wire::{self, attr, cmd, AttrWriter};
use kernel::c_str;
use kernel::prelude::*;
use kernel::sync::Arc;

const NAME_MAX: u16 = rules::MAX_CHAIN_NAME as u16 + 1;

/// The attribute policy for requests, indexed by attribute type. Reply-only
/// attributes are refused in requests.
const POLICY: [AttrKind; attr::MAX as usize + 1] = [
    AttrKind::Reject,              // UNSPEC
    AttrKind::Reject,              // VERSION
    AttrKind::Reject,              // NETNS_COOKIE
    AttrKind::Reject,              // HOOK_STATS
    AttrKind::Reject,              // PAD
    AttrKind::U8,                  // TABLE
    AttrKind::NulString(NAME_MAX), // CHAIN
    AttrKind::Nested,              // RULE
    AttrKind::U64,                 // HANDLE
    AttrKind::U32,                 // POSITION
    AttrKind::U64,                 // GENERATION
    AttrKind::U8,                  // POLICY
    AttrKind::Reject,              // PACKETS
    AttrKind::Reject,              // BYTES
    AttrKind::Reject,              // RULES
    AttrKind::NulString(NAME_MAX), // NEW_NAME
    AttrKind::Nested,              // RULESET
    AttrKind::Nested,              // CT_ORIG
    AttrKind::Nested,              // CT_REPLY
    AttrKind::Reject,              // CT_ID
    AttrKind::Reject,              // CT_PROTO_STATE
    AttrKind::Reject,              // CT_STATUS
    AttrKind::Reject,              // CT_TIMEOUT
    AttrKind::Reject,              // CT_MARK
    AttrKind::Reject,              // CT_COUNTERS
    AttrKind::Reject,              // CT_EVENT
    AttrKind::Reject,              // CT_COUNT
    AttrKind::U32,                 // CT_LIMIT
    AttrKind::Reject,              // CT_BUCKETS
    AttrKind::Nested,              // CT_TIMEOUTS
    AttrKind::Reject,              // CT_STATS
    AttrKind::Reject,              // CT_AGE
    AttrKind::Nested,              // RULESET_PART
    AttrKind::U8,                  // HOOK_COUNTING
];

const fn admin(cmd: u8) -> Command {
    Command {
        cmd,
        admin: true,
        dump: false,
    }
}

const COMMANDS: [Command; 18] = [
    admin(cmd::GET_STATUS),
    admin(cmd::NEW_RULE),
    admin(cmd::DEL_RULE),
    Command {
        cmd: cmd::GET_RULES,
        admin: true,
        dump: true,
    },
    admin(cmd::FLUSH),
    admin(cmd::ZERO),
    admin(cmd::SET_POLICY),
    admin(cmd::NEW_CHAIN),
    admin(cmd::DEL_CHAIN),
    admin(cmd::RENAME_CHAIN),
    admin(cmd::REPLACE_RULESET),
    Command {
        cmd: cmd::GET_CT,
        admin: true,
        dump: true,
    },
    admin(cmd::DEL_CT),
    admin(cmd::FLUSH_CT),
    admin(cmd::GET_CT_STATS),
    admin(cmd::SET_CT_LIMIT),
    admin(cmd::SET_CT_TIMEOUT),
    admin(cmd::SET_HOOK_COUNTING),
];

/// Registers the family.
pub fn register(module: &'static ThisModule) -> Result<genl::Registration> {
    genl::Registration::register::<Control>(
        module,
        c_str!("rnf"),
        u32::from(wire::FAMILY_VERSION),
        &POLICY,
        &COMMANDS,
        &[c_str!("conntrack")],
    )
}

/// The family's request handler.
pub struct Control;

impl genl::Handler for Control {
    fn doit(req: &mut Request<'_>) -> Result {
        let net = req.net();
        let Some(state) = NetState::get(net) else {
            req.set_error(c_str!("rnf: no state for this network namespace"));
            return Err(ENODEV);
        };
        match req.cmd() {
            cmd::GET_STATUS => status(req, state),
            cmd::NEW_RULE => new_rule(req, state),
            cmd::GET_CT_STATS => ct_stats(req, state),
            cmd::DEL_CT => ct_delete(req, state),
            cmd::FLUSH_CT => {
                state.conntrack().flush();
                Ok(())
            }
            cmd::SET_CT_LIMIT => ct_set_limit(req, state),
            cmd::SET_CT_TIMEOUT => ct_set_timeout(req, state),
            cmd::SET_HOOK_COUNTING => set_hook_counting(req, state),
            c => {
                let r = change(req, state, c);
                r.map_err(|e| {
                    req.set_error_fmt(format_args!("{}", e.text.as_str()));
                    e.errno
                })
            }
        }
    }

    fn dump(req: &mut Request<'_>) -> Result<KVec<KVec<u8>>> {
        let net = req.net();
        let Some(state) = NetState::get(net) else {
            req.set_error(c_str!("rnf: no state for this network namespace"));
            return Err(ENODEV);
        };
        match req.cmd() {
            cmd::GET_CT => state.conntrack().dump(),
            _ => list(req, state),
        }
    }
}

/// `GET_CT_STATS`: size, limit, timeouts and counters of the flow table.
fn ct_stats(req: &mut Request<'_>, state: &NetState) -> Result {
    let stats = state.conntrack().stats();
    let mut measure = AttrWriter::measure();
    stats.encode(&mut measure);
    let len = measure.len();
    req.reply(cmd::GET_CT_STATS, len, |buf| {
        let mut w = AttrWriter::new(buf);
        stats.encode(&mut w);
        match w.finish() {
            Ok(n) if n == len => Ok(()),
            _ => Err(crate::errno::emsgsize()),
        }
    })
}

/// `DEL_CT`: removes the flow with the given tuple (either direction).
fn ct_delete(req: &mut Request<'_>, state: &NetState) -> Result {
    let payload = req.attr(attr::CT_ORIG).or_else(|| req.attr(attr::CT_REPLY));
    let Some(payload) = payload else {
        req.set_error(c_str!(
            "rnf: a flow tuple (CT_ORIG or CT_REPLY) is required"
        ));
        return Err(EINVAL);
    };
    let tuple = match ct_msg::decode_tuple(payload) {
        Ok(t) => t,
        Err(e) => {
            req.set_error_fmt(format_args!("rnf: bad flow tuple: {}", e.message()));
            return Err(EINVAL);
        }
    };
    if state.conntrack().delete(&tuple) {
        Ok(())
    } else {
        req.set_error(c_str!("rnf: no such flow"));
        Err(ENOENT)
    }
}

/// `SET_CT_LIMIT`: the most flows the table holds.
fn ct_set_limit(req: &mut Request<'_>, state: &NetState) -> Result {
    match u32_attr(req, attr::CT_LIMIT) {
        Some(0) => {
            req.set_error(c_str!("rnf: the conntrack limit must be at least 1"));
            Err(EINVAL)
        }
        Some(n) => {
            state.conntrack().set_limit(n);
            Ok(())
        }
        None => {
            req.set_error(c_str!("rnf: CT_LIMIT is required"));
            Err(EINVAL)
        }
    }
}

/// `SET_CT_TIMEOUT`: one timeout, given as the single entry of
/// `CT_TIMEOUTS`.
fn ct_set_timeout(req: &mut Request<'_>, state: &NetState) -> Result {
    let Some(nest) = req.attr(attr::CT_TIMEOUTS) else {
        req.set_error(c_str!("rnf: CT_TIMEOUTS is required"));
        return Err(EINVAL);
    };
    let mut entry = None;
    for a in wire::AttrIter::new(nest) {
        let Ok(a) = a else {
            req.set_error(c_str!("rnf: malformed CT_TIMEOUTS"));
            return Err(EINVAL);
        };
        if a.ty != wire::ct_timeout::ENTRY {
            continue;
        }
        if entry.is_some() {
            req.set_error(c_str!("rnf: set one timeout per request"));
            return Err(EINVAL);
        }
        entry = Some(a.payload);
    }
    let Some(entry) = entry else {
        req.set_error(c_str!("rnf: CT_TIMEOUTS has no entry"));
        return Err(EINVAL);
    };
    let (key, secs) = match ct_msg::decode_timeout_entry(entry) {
        Ok(v) => v,
        Err(e) => {
            req.set_error_fmt(format_args!("rnf: bad timeout: {}", e.message()));
            return Err(EINVAL);
        }
    };
    match state.conntrack().set_timeout(key, secs) {
        Ok(()) => Ok(()),
        Err(e) => {
            req.set_error_fmt(format_args!("rnf: {}", e.message()));
            Err(EINVAL)
        }
    }
}

/// `SET_HOOK_COUNTING`: whether hooks without rules are hooked to count.
fn set_hook_counting(req: &mut Request<'_>, state: &NetState) -> Result {
    let on = match u8_attr(req, attr::HOOK_COUNTING) {
        Some(0) => false,
        Some(1) => true,
        Some(_) => {
            req.set_error(c_str!("rnf: HOOK_COUNTING must be 0 (off) or 1 (on)"));
            return Err(EINVAL);
        }
        None => {
            req.set_error(c_str!("rnf: HOOK_COUNTING is required"));
            return Err(EINVAL);
        }
    };
    state.set_hook_counting(on).map_err(|e| {
        req.set_error_fmt(format_args!("{}", e.text.as_str()));
        e.errno
    })
}

/// `GET_STATUS`: the module version and per-hook-point counters of the
/// caller's namespace, and whether hooks without rules count.
fn status(req: &mut Request<'_>, state: &NetState) -> Result {
    let cookie = req.net().cookie();
    let counting = u8::from(state.path().hook_counting());
    let mut measure = AttrWriter::measure();
    wire::encode_status(&mut measure, crate::VERSION, cookie, state.hook_stats());
    measure.put_u8(attr::HOOK_COUNTING, counting);
    let len = measure.len();
    req.reply(cmd::GET_STATUS, len, |buf| {
        let mut w = AttrWriter::new(buf);
        wire::encode_status(&mut w, crate::VERSION, cookie, state.hook_stats());
        w.put_u8(attr::HOOK_COUNTING, counting);
        match w.finish() {
            Ok(n) if n == len => Ok(()),
            _ => Err(crate::errno::emsgsize()),
        }
    })
}

fn bad(msg: &str) -> ChangeError {
    ChangeError {
        errno: EINVAL,
        text: text(msg),
    }
}

fn text(msg: &str) -> crate::ruleset::Text {
    let mut t = crate::ruleset::Text::default();
    let _ = core::fmt::Write::write_str(&mut t, msg);
    t
}

fn u8_attr(req: &Request<'_>, ty: u16) -> Option<u8> {
    req.attr(ty).and_then(|p| p.first().copied())
}

fn u32_attr(req: &Request<'_>, ty: u16) -> Option<u32> {
    let p = req.attr(ty)?;
    Some(u32::from_ne_bytes([
        *p.first()?,
        *p.get(1)?,
        *p.get(2)?,
        *p.get(3)?,
    ]))
}

fn u64_attr(req: &Request<'_>, ty: u16) -> Option<u64> {
    let p = req.attr(ty)?;
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(p.get(..8)?) {
        *d = *s;
    }
    Some(u64::from_ne_bytes(b))
}

/// A NUL-terminated string attribute (the policy checked the NUL).
fn str_attr<'a>(req: &Request<'a>, ty: u16) -> Option<&'a str> {
    let p = req.attr(ty)?;
    let end = p.iter().position(|b| *b == 0).unwrap_or(p.len());
    core::str::from_utf8(p.get(..end)?).ok()
}

fn table_attr(req: &Request<'_>, required: bool) -> Result<Option<Table>, ChangeError> {
    match u8_attr(req, attr::TABLE) {
        Some(v) => match Table::from_u8(v) {
            Some(t) => Ok(Some(t)),
            None => Err(bad("unknown table (expected raw, mangle, nat or filter)")),
        },
        None if required => Err(bad("a table is required")),
        None => Ok(None),
    }
}

fn chain_attr<'a>(req: &Request<'a>, required: bool) -> Result<Option<&'a str>, ChangeError> {
    match str_attr(req, attr::CHAIN) {
        Some(c) => Ok(Some(c)),
        None if required => Err(bad("a chain is required")),
        None => Ok(None),
    }
}

/// `NEW_RULE`: replies with the new rule's handle and the generation.
fn new_rule(req: &mut Request<'_>, state: &NetState) -> Result {
    let r = (|| {
        let table = table_attr(req, true)?.ok_or(bad("a table is required"))?;
        let chain = chain_attr(req, true)?.ok_or(bad("a chain is required"))?;
        let blob = req.attr(attr::RULE).ok_or(bad("a rule is required"))?;
        let place = match (u32_attr(req, attr::POSITION), u64_attr(req, attr::HANDLE)) {
            (Some(_), Some(_)) => return Err(bad("give a position or a handle, not both")),
            (Some(p), None) => Placement::Insert(p),
            (None, Some(h)) => Placement::Replace(h),
            (None, None) => Placement::Append,
        };
        let mut store = state.rules.lock();
        store.check_generation(u64_attr(req, attr::GENERATION))?;
        let handle = store.add_rule(table, chain, blob, place, &state.path().image)?;
        state.compact_if_wanted(&store);
        Ok((handle, store.generation()))
    })();
    match r {
        Ok((handle, generation)) => {
            let mut m = AttrWriter::measure();
            m.put_u64(attr::HANDLE, handle);
            m.put_u64(attr::GENERATION, generation);
            let len = m.len();
            req.reply(cmd::NEW_RULE, len, |buf| {
                let mut w = AttrWriter::new(buf);
                w.put_u64(attr::HANDLE, handle);
                w.put_u64(attr::GENERATION, generation);
                w.finish().map(|_| ()).map_err(|_| crate::errno::emsgsize())
            })
        }
        Err(e) => {
            req.set_error_fmt(format_args!("{}", e.text.as_str()));
            Err(e.errno)
        }
    }
}

/// The commands that change the rule set and answer with an ack only.
fn change(req: &mut Request<'_>, state: &NetState, c: u8) -> Result<(), ChangeError> {
    let image = &state.path().image;
    let mut store = state.rules.lock();
    store.check_generation(u64_attr(req, attr::GENERATION))?;
    match c {
        cmd::DEL_RULE => {
            let table = table_attr(req, true)?.ok_or(bad("a table is required"))?;
            let chain = chain_attr(req, true)?.ok_or(bad("a chain is required"))?;
            let victim = match (u64_attr(req, attr::HANDLE), req.attr(attr::RULE)) {
                (Some(h), None) => Victim::Handle(h),
                (None, Some(b)) => Victim::Blob(b),
                _ => return Err(bad("give a rule handle or a rule, not both or neither")),
            };
            store.del_rule(table, chain, victim, image)
        }
        cmd::FLUSH => {
            let table = table_attr(req, false)?;
            let chain = chain_attr(req, false)?;
            if chain.is_some() && table.is_none() {
                return Err(bad("a chain needs its table"));
            }
            store.flush(table, chain, image)
        }
        cmd::ZERO => {
            let table = table_attr(req, false)?;
            let chain = chain_attr(req, false)?;
            if chain.is_some() && table.is_none() {
                return Err(bad("a chain needs its table"));
            }
            store.zero(table, chain)
        }
        cmd::SET_POLICY => {
            let table = table_attr(req, true)?.ok_or(bad("a table is required"))?;
            let chain = chain_attr(req, true)?.ok_or(bad("a chain is required"))?;
            let policy = u8_attr(req, attr::POLICY)
                .and_then(Policy::from_u8)
                .ok_or(bad("a policy is required (accept or drop)"))?;
            store.set_policy(table, chain, policy, image)
        }
        cmd::NEW_CHAIN | cmd::DEL_CHAIN | cmd::RENAME_CHAIN => {
            let table = table_attr(req, true)?.ok_or(bad("a table is required"))?;
            let chain = chain_attr(req, true)?.ok_or(bad("a chain is required"))?;
            match c {
                cmd::NEW_CHAIN => store.new_chain(table, chain, image),
                cmd::DEL_CHAIN => store.del_chain(table, chain, image),
                _ => {
                    let new = str_attr(req, attr::NEW_NAME).ok_or(bad("a new name is required"))?;
                    store.rename_chain(table, chain, new, image)
                }
            }
        }
        cmd::REPLACE_RULESET => restore(&mut store, req, image),
        _ => Err(ChangeError {
            errno: crate::errno::eopnotsupp(),
            text: text("unknown command"),
        }),
    }
}

fn wire_error(e: wire::WireError) -> ChangeError {
    bad(e.message())
}

/// `REPLACE_RULESET`: decode everything, then replace atomically.
///
/// The rule set is every `RULESET` and `RULESET_PART` attribute of the
/// request, in order (`ruleset_msg::RulesetItems`): a rule set larger than
/// one attribute (64 KiB) comes as many parts of one message, so one
/// request is still one change, and no state is kept between requests.
/// Bounded by `RULESET_MAX_BYTES` and `RULESET_MAX_RULES` (and each table
/// by `rules::MAX_RULES` when compiled); the rule blobs are borrowed from
/// the request, nothing changes unless everything compiles.
fn restore(
    store: &mut RuleStore,
    req: &Request<'_>,
    image: &crate::rcu::RcuBox<crate::ruleset::Image>,
) -> Result<(), ChangeError> {
    let oom = |_| ChangeError {
        errno: ENOMEM,
        text: text("out of memory"),
    };
    let too_big = |what: &str, limit: usize| {
        let mut t = crate::ruleset::Text::default();
        let _ = core::fmt::Write::write_fmt(&mut t, format_args!("{what} {limit}"));
        ChangeError {
            errno: crate::errno::emsgsize(),
            text: t,
        }
    };
    let raw = req.raw_attrs();
    let mut bytes = 0usize;
    for a in wire::AttrIter::new(raw) {
        let a = a.map_err(wire_error)?;
        if a.ty == attr::RULESET || a.ty == attr::RULESET_PART {
            bytes = bytes.saturating_add(a.payload.len() + wire::NLA_HDRLEN);
        }
    }
    if bytes == 0 {
        return Err(bad("a rule set is required"));
    }
    if bytes > ruleset_msg::RULESET_MAX_BYTES {
        return Err(too_big(
            "rule set too large: at most MiB:",
            ruleset_msg::RULESET_MAX_BYTES >> 20,
        ));
    }
    let mut tables: KVec<RestoreTable<'_>> = KVec::new();
    let mut rules = 0usize;
    for item in ruleset_msg::RulesetItems::new(raw) {
        match item.map_err(wire_error)? {
            RulesetItem::Table(t) => tables
                .push(
                    RestoreTable {
                        table: t,
                        chains: KVec::new(),
                    },
                    GFP_KERNEL,
                )
                .map_err(oom)?,
            RulesetItem::Chain(name, policy) => {
                let t = tables.last_mut().ok_or(bad("a chain outside a table"))?;
                t.chains
                    .push((name, policy, KVVec::new()), GFP_KERNEL)
                    .map_err(oom)?;
            }
            RulesetItem::Rule(blob) => {
                rules += 1;
                if rules > ruleset_msg::RULESET_MAX_RULES {
                    return Err(too_big(
                        "too many rules in one rule set: at most",
                        ruleset_msg::RULESET_MAX_RULES,
                    ));
                }
                let c = tables
                    .last_mut()
                    .and_then(|t| t.chains.last_mut())
                    .ok_or(bad("a rule outside a chain"))?;
                c.2.push(blob, GFP_KERNEL).map_err(oom)?;
            }
        }
    }
    store.replace(&tables, image)
}

fn rule_entry<'a>(tr: &TableRules, i: usize, r: &'a Arc<Rule>) -> RuleEntry<'a> {
    let n = tr.counted(r.slot);
    RuleEntry {
        handle: r.handle,
        position: i as u32,
        packets: n.packets,
        bytes: n.bytes,
        rule: &r.blob,
    }
}

/// Rules per dump message: keeps each message well under the 64 KiB a
/// netlink attribute can hold.
const DUMP_BYTES: usize = 16 * 1024;

/// `GET_RULES`: a snapshot of the listing, one or more messages per chain.
fn list(req: &mut Request<'_>, state: &NetState) -> Result<KVec<KVec<u8>>> {
    let table = match table_attr(req, false) {
        Ok(t) => t,
        Err(e) => {
            req.set_error_fmt(format_args!("{}", e.text.as_str()));
            return Err(e.errno);
        }
    };
    let chain = str_attr(req, attr::CHAIN);
    let mut store = state.rules.lock();
    // Counts still going into a replaced slot state are moved first.
    if let Err(e) = store.settle_counts() {
        return Err(e.errno);
    }
    let mut msgs = KVec::new();
    let mut found = chain.is_none();
    for tr in store.tables() {
        if table.is_some_and(|t| t != tr.table()) {
            continue;
        }
        for c in tr.chains() {
            if chain.is_some_and(|n| n != c.name()) {
                continue;
            }
            found = true;
            let pc = tr.counted(c.policy_slot);
            let header = ChainHeader {
                table: tr.table(),
                chain: c.name(),
                policy: c.hook.map(|_| c.policy),
                packets: pc.packets,
                bytes: pc.bytes,
                generation: store.generation(),
            };
            // Split the chain's rules into messages of at most DUMP_BYTES.
            let mut start = 0usize;
            loop {
                let mut end = start;
                let mut size = 0usize;
                while let Some(r) = c.rules.get(end) {
                    let mut m = AttrWriter::measure();
                    rule_entry(tr, end, r).encode(&mut m);
                    if end > start && size + m.len() > DUMP_BYTES {
                        break;
                    }
                    size += m.len();
                    end += 1;
                }
                let part = || {
                    c.rules
                        .iter()
                        .enumerate()
                        .skip(start)
                        .take(end - start)
                        .map(|(i, r)| rule_entry(tr, i, r))
                };
                let mut m = AttrWriter::measure();
                ruleset_msg::encode_chain_listing(&mut m, &header, part());
                let mut buf = KVec::from_elem(0u8, m.len(), GFP_KERNEL)?;
                let mut w = AttrWriter::new(&mut buf);
                ruleset_msg::encode_chain_listing(&mut w, &header, part());
                w.finish().map_err(|_| crate::errno::emsgsize())?;
                msgs.push(buf, GFP_KERNEL)?;
                start = end;
                if start >= c.rules.len() {
                    break;
                }
            }
        }
    }
    if !found {
        req.set_error(c_str!("no such chain"));
        return Err(ENOENT);
    }
    Ok(msgs)
}
