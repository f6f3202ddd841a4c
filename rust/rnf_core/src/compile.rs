// SPDX-License-Identifier: GPL-2.0-only

//! Compiling one table's rule set into a single flat buffer for the packet
//! path.
//!
//! The kernel keeps rules as validated blobs (see [`crate::rules`]); after
//! every change it compiles the whole table into one buffer, publishes it
//! with a pointer swap, and [`crate::eval`] walks it for each packet. Like
//! [`AttrWriter`](crate::wire::AttrWriter), compiling takes two passes over
//! the same input so that nothing allocates: [`measure`] returns the size,
//! the caller allocates it, and [`fill`] writes the buffer.
//!
//! Everything a rule set can get wrong is found here, before anything is
//! published: invalid rules, duplicate or misnamed chains, jumps to chains
//! that do not exist, loops through `jump`/`goto`, and jumps nested deeper
//! than [`MAX_JUMP_DEPTH`], and actions bound to hooks (NAT) in a chain
//! reached from a hook where they cannot run. The errors name the chain
//! (and rule handle) at fault.
//!
//! # Layout (version [`layout::VERSION`])
//!
//! All integers little-endian, every offset from the start of the buffer
//! (so the buffer can be copied or moved), every record 4-byte aligned.
//!
//! - Header, [`layout::HDR_LEN`] bytes: magic `"RNFc"`, layout version,
//!   table, total length, chain and rule counts, the worst-case number of
//!   records one evaluation visits, and per hook the offset of the built-in
//!   chain's first record and of its end (policy) record (0 when the table
//!   has no chain there) and the built-in chain's index in the chain table.
//! - Chain table: one [`layout::CHAIN_LEN`]-byte entry per chain, in input
//!   order: name, first record, rule count, jump depth and worst-case
//!   steps below it, hook and policy for built-in chains, the hooks the
//!   chain can be reached from, the offset of its classification index (0
//!   for none).
//! - Records, chain after chain, each chain ending with an end record. A
//!   rule record is a [`layout::REC_HDR`]-byte header (length, family,
//!   protocol, action, a bit mask of the match sections that follow,
//!   counter slot, handle, two action arguments: for `jump`/`goto` the
//!   target chain's offset and index) followed by the match sections
//!   present, in bit order, each with pre-computed fixed-size fields
//!   (address and mask pairs, port ranges, NUL-padded interface names),
//!   then the action's sections (log prefix, third argument, NAT range).
//!
//! - Classification indexes, one per chain of at least
//!   [`INDEX_MIN_RULES`] rules, after all the records (layout in
//!   [`crate::classify`]): per field (protocol, source and destination
//!   address per family, source and destination port) a hash table from
//!   key to the sorted list of rules with that key, and the sorted list
//!   of rules that do not constrain the field. The evaluator uses them to
//!   skip to the next rule that can match, so a packet's cost depends on
//!   its fields, not on the number of rules; the records stay the source
//!   of truth. Their size is bounded from the keys of the rules
//!   (see `classify::ChainKeys`); [`measure`] counts it.
//! - Flat chains, after the indexes: a built-in chain of fewer than
//!   [`INDEX_MIN_RULES`] rules, each matching on no more than family,
//!   protocol, one address or prefix per side, one port range per side
//!   (each possibly negated) and ct state, with action accept, drop or
//!   reject, is also written as an array of fixed-size entries
//!   ([`layout::FLAT_LEN`]) that the evaluator scans without decoding
//!   sections, steps or jumps (the common small chains: a host's or
//!   router's `ct state established,related accept` then a few ports).
//!   The records stay the source of truth for everything else (listings,
//!   tails, the kernel's state-accept shortcut).

use crate::classify::{index_size, ChainKeys, INDEX_MIN_RULES};
use crate::hooks::{Family, Hook};
use crate::nat::NatKind;
use crate::packet::copy_into;
use crate::rules::{
    builtin_chain_hook, check_nat_hook, validate_chain_name, Action, Policy, RuleError, RuleView,
    Table, MAX_CHAINS, MAX_JUMP_DEPTH, MAX_RULES,
};

/// Constants of the compiled layout, shared with the evaluator.
pub mod layout {
    /// Magic bytes at offset 0.
    pub const MAGIC: [u8; 4] = *b"RNFc";
    /// Layout version at offset 4. Bumped whenever the layout changes.
    pub const VERSION: u8 = 7;
    /// Size of the header.
    pub const HDR_LEN: usize = 112;
    /// Header offset: table (`u8`).
    pub const H_TABLE: usize = 5;
    /// Header offset: total length (`u32`).
    pub const H_TOTAL: usize = 8;
    /// Header offset: number of chains (`u32`).
    pub const H_CHAINS: usize = 12;
    /// Header offset: number of rules (`u32`).
    pub const H_RULES: usize = 16;
    /// Header offset: most records one evaluation can visit (`u32`).
    pub const H_MAX_STEPS: usize = 20;
    /// Header offset: 5 × `u32`, per hook the first record of its built-in
    /// chain, 0 if none.
    pub const H_ENTRY: usize = 24;
    /// Header offset: 5 × `u32`, per hook the end record of its built-in
    /// chain, 0 if none.
    pub const H_POLICY: usize = 44;
    /// Header offset: 5 × `u32`, per hook the index of its built-in chain
    /// in the chain table (meaningful when its [`H_ENTRY`] is not 0).
    pub const H_ENTRY_CHAIN: usize = 64;
    /// Header offset: what the rules need (`u32`, `F_*` bits).
    pub const H_FLAGS: usize = 84;
    /// [`H_FLAGS`] bit: a rule matches on or sets conntrack state, or
    /// translates addresses, so packets must be tracked.
    pub const F_CONNTRACK: u32 = 1;
    /// Header offset: 5 × `u32`, per hook the flat form of its built-in
    /// chain (a [`FLAT_HDR`]-byte header and [`FLAT_LEN`]-byte entries),
    /// 0 if it has none.
    pub const H_FLAT: usize = 88;

    /// Size of a flat chain's header: `u32` number of entries, `u32` the
    /// policy (`ACCEPT`/`DROP`), `u32` the policy's counter slot.
    pub const FLAT_HDR: usize = 12;
    /// Size of a flat chain's entry, one per rule: `u32` match bits (`M_*`:
    /// addresses, ports, their negations, ct state), `u8` family, `u8`
    /// protocol, `u8` action (`ACCEPT`, `DROP`, `REJECT`), `u8` reject
    /// kind, `u8` ct states, `u8` 1 if negated, 2 bytes 0, `u32` counter
    /// slot, source network and mask, destination network and mask (16
    /// bytes each; an IPv4 address in the first 4, the rest 0), `u16`
    /// lowest and highest source port, the same for the destination.
    pub const FLAT_LEN: usize = 88;
    /// Flat entry offset: match bits (`u32`).
    pub const FL_MATCHES: usize = 0;
    /// Flat entry offset: family (`u8`, 0 for both).
    pub const FL_FAMILY: usize = 4;
    /// Flat entry offset: protocol (`u8`, 0 for any).
    pub const FL_PROTO: usize = 5;
    /// Flat entry offset: action (`u8`).
    pub const FL_ACTION: usize = 6;
    /// Flat entry offset: reject kind (`u8`).
    pub const FL_REJECT: usize = 7;
    /// Flat entry offset: ct states (`u8`).
    pub const FL_CT_STATES: usize = 8;
    /// Flat entry offset: ct state match negated (`u8`).
    pub const FL_CT_NEG: usize = 9;
    /// Flat entry offset: counter slot (`u32`).
    pub const FL_COUNTER: usize = 12;
    /// Flat entry offset: source network, then its mask, destination
    /// network, then its mask (16 bytes each).
    pub const FL_ADDRS: usize = 16;
    /// Flat entry offset: source port range, then destination port range
    /// (`u16` lowest, `u16` highest each).
    pub const FL_PORTS: usize = 80;
    /// The match bits a flat entry can have.
    pub const FLAT_MATCHES: u32 = M_SADDR
        | M_SADDR_NEG
        | M_DADDR
        | M_DADDR_NEG
        | M_SPORT
        | M_SPORT_NEG
        | M_DPORT
        | M_DPORT_NEG
        | M_CT_STATE;

    /// Size of a chain table entry.
    pub const CHAIN_LEN: usize = 64;
    /// Chain entry offset: name, NUL-padded (32 bytes).
    pub const C_NAME: usize = 0;
    /// Chain entry offset: first record (`u32`).
    pub const C_START: usize = 32;
    /// Chain entry offset: number of rules (`u32`).
    pub const C_RULES: usize = 36;
    /// Chain entry offset: deepest jump nesting below the chain (`u32`).
    pub const C_DEPTH: usize = 40;
    /// Chain entry offset: most records one pass through it visits (`u32`).
    pub const C_STEPS: usize = 44;
    /// Chain entry offset: hook of a built-in chain, [`NONE8`] for a user
    /// chain (`u8`).
    pub const C_HOOK: usize = 48;
    /// Chain entry offset: policy of a built-in chain, [`NONE8`] for a
    /// user chain (`u8`).
    pub const C_POLICY: usize = 49;
    /// Chain entry offset: compile-time scratch (`u8`, search state).
    pub const C_STATE: usize = 50;
    /// Chain entry offset: the hooks the chain can be reached from (`u8`,
    /// bit `1 << hook` per [`Hook`](crate::hooks::Hook)); 0 for a user
    /// chain no built-in chain reaches.
    pub const C_HOOKS: usize = 51;
    /// Chain entry offset: compile-time scratch (`u32`, search parent).
    pub const C_PARENT: usize = 52;
    /// Chain entry offset: compile-time scratch (`u32`, search cursor).
    pub const C_CURSOR: usize = 56;
    /// Chain entry offset: the chain's classification index
    /// ([`crate::classify`]), 0 for a chain walked linearly (`u32`).
    pub const C_INDEX: usize = 60;
    /// "None" in `u8` fields.
    pub const NONE8: u8 = 0xff;

    /// Size of a record header.
    pub const REC_HDR: usize = 32;
    /// Record offset: length including the header (`u32`).
    pub const R_LEN: usize = 0;
    /// Record offset: kind ([`KIND_RULE`] or [`KIND_END`]).
    pub const R_KIND: usize = 4;
    /// Record offset: family restriction (`u8`, 0 for both).
    pub const R_FAMILY: usize = 5;
    /// Record offset: protocol (`u8`, 0 for any).
    pub const R_PROTO: usize = 6;
    /// Record offset: action ([`action_kind`](crate::rules::action_kind)).
    /// In an end record: `ACCEPT`/`DROP` (a built-in chain's policy) or
    /// `RETURN` (end of a user chain).
    pub const R_ACTION: usize = 7;
    /// Record offset: match section bits (`u32`, `M_*`).
    pub const R_MATCHES: usize = 8;
    /// Record offset: counter slot (`u32`).
    pub const R_COUNTER: usize = 12;
    /// Record offset: rule handle (`u64`).
    pub const R_HANDLE: usize = 16;
    /// Record offset: first action argument (`u32`): target record offset
    /// (jump, goto), reject kind, log level, mark and ct mark value.
    pub const R_ARG: usize = 24;
    /// Record offset: second action argument (`u32`): target chain index
    /// (jump, goto), mark and ct mark operation.
    pub const R_ARG2: usize = 28;

    /// Record kind: a rule.
    pub const KIND_RULE: u8 = 1;
    /// Record kind: end of a chain.
    pub const KIND_END: u8 = 2;

    /// Section: source addresses (`u16` IPv4 count, `u16` IPv6 count, then
    /// address and mask pairs: 8 bytes each for IPv4, 32 for IPv6).
    pub const M_SADDR: u32 = 1 << 0;
    /// Flag: source address match negated.
    pub const M_SADDR_NEG: u32 = 1 << 1;
    /// Section: destination addresses, like [`M_SADDR`].
    pub const M_DADDR: u32 = 1 << 2;
    /// Flag: destination address match negated.
    pub const M_DADDR_NEG: u32 = 1 << 3;
    /// Section: source ports (`u16` count, `u16` 0, then `u16` first and
    /// last port per range).
    pub const M_SPORT: u32 = 1 << 4;
    /// Flag: source port match negated.
    pub const M_SPORT_NEG: u32 = 1 << 5;
    /// Section: destination ports, like [`M_SPORT`].
    pub const M_DPORT: u32 = 1 << 6;
    /// Flag: destination port match negated.
    pub const M_DPORT_NEG: u32 = 1 << 7;
    /// Section: TCP flags (`u8` mask, `u8` set, 2 bytes 0).
    pub const M_TCP_FLAGS: u32 = 1 << 8;
    /// Section: ICMP (`u8` type, `u8` code, `u8` 1 if the code counts, 0).
    pub const M_ICMP: u32 = 1 << 9;
    /// Section: input interface (`u8` length, 3 bytes 0, 16 name bytes).
    pub const M_IIF: u32 = 1 << 10;
    /// Flag: input interface match negated.
    pub const M_IIF_NEG: u32 = 1 << 11;
    /// Flag: input interface name is a prefix.
    pub const M_IIF_PREFIX: u32 = 1 << 12;
    /// Section: output interface, like [`M_IIF`].
    pub const M_OIF: u32 = 1 << 13;
    /// Flag: output interface match negated.
    pub const M_OIF_NEG: u32 = 1 << 14;
    /// Flag: output interface name is a prefix.
    pub const M_OIF_PREFIX: u32 = 1 << 15;
    /// Section: mark (`u32` value, `u32` mask).
    pub const M_MARK: u32 = 1 << 16;
    /// Flag: mark match negated.
    pub const M_MARK_NEG: u32 = 1 << 17;
    /// Section: ct state (`u8` [`CtState`](crate::ct::CtState) bits, `u8`
    /// 1 if negated, 2 bytes 0).
    pub const M_CT_STATE: u32 = 1 << 18;
    /// Section: ct status (`u32` status bits, `u8` 1 if negated, 3 bytes 0).
    pub const M_CT_STATUS: u32 = 1 << 19;
    /// Section: ct direction (`u8` the direction a packet must have, the
    /// rule's negation folded in, 3 bytes 0).
    pub const M_CT_DIRECTION: u32 = 1 << 20;
    /// Section: ct mark (`u32` value, `u32` mask, `u8` 1 if negated, 3
    /// bytes 0).
    pub const M_CT_MARK: u32 = 1 << 21;
    /// Section: uid (`u32`).
    pub const M_UID: u32 = 1 << 22;
    /// Section: gid (`u32`).
    pub const M_GID: u32 = 1 << 23;
    /// Section: payload text (`u16` length, `u16` 0, bytes, padding).
    pub const M_PAYLOAD: u32 = 1 << 24;
    /// Section: nth (`u32` N).
    pub const M_NTH: u32 = 1 << 25;
    /// Section: random (`u32` probability in units of 2^-31).
    pub const M_RANDOM: u32 = 1 << 26;
    /// Section: limit (`u32` rate, `u32` burst, `u8` unit, 3 bytes 0).
    pub const M_LIMIT: u32 = 1 << 27;
    /// Section: log prefix of a `log` action (`u16` length, `u16` 0,
    /// bytes, padding); the level is in [`R_ARG`].
    pub const M_LOG_PREFIX: u32 = 1 << 28;
    /// Section: third action argument (`u32`): the mask of a `ct mark`
    /// action (value in [`R_ARG`], operation in [`R_ARG2`]).
    pub const M_ARG3: u32 = 1 << 29;
    /// Section: the range of a NAT action, [`NAT_LEN`] bytes: `u8`
    /// [`range_flag`](crate::nat::range_flag) bits, `u8` family of the
    /// addresses (`NFPROTO_*`, 0 without `MAP_IPS`), 2 bytes 0, `u16`
    /// lowest and `u16` highest port, 16 bytes lowest and 16 bytes highest
    /// address (laid out as [`NatRange`](crate::nat::NatRange)'s).
    pub const M_NAT: u32 = 1 << 30;

    /// Size of a ct state section.
    pub const CT_STATE_LEN: usize = 4;
    /// Size of a ct status section.
    pub const CT_STATUS_LEN: usize = 8;
    /// Size of a ct direction section.
    pub const CT_DIRECTION_LEN: usize = 4;
    /// Size of a ct mark section.
    pub const CT_MARK_LEN: usize = 12;
    /// Size of an interface section.
    pub const IFACE_LEN: usize = 20;
    /// Size of a limit section.
    pub const LIMIT_LEN: usize = 12;
    /// Size of a NAT section.
    pub const NAT_LEN: usize = 40;
}

use layout::*;

/// One chain of the rule set handed to the compiler.
#[derive(Clone, Debug)]
pub struct ChainSpec<'a, R> {
    /// Name: a built-in chain's (`"INPUT"`, ...) or a user chain's.
    pub name: &'a str,
    /// Policy: required for a built-in chain, `None` for a user chain.
    pub policy: Option<Policy>,
    /// Counter slot for packets that meet a built-in chain's policy.
    pub policy_counter: u32,
    /// The rules, in order.
    pub rules: R,
}

/// One rule handed to the compiler.
#[derive(Clone, Copy, Debug)]
pub struct RuleRef<'a> {
    /// The rule's stable handle.
    pub handle: u64,
    /// Counter slot of the rule: the evaluator passes it to
    /// [`EvalEnv`](crate::eval::EvalEnv) for the rule's counters and its
    /// `limit` and `nth` state, so keeping the slot keeps them across
    /// recompiles.
    pub counter: u32,
    /// The rule blob, as stored.
    pub blob: &'a [u8],
}

/// Why a rule set does not compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileError<'a> {
    /// The field at fault, for rule errors (see
    /// [`RuleError`]); `"chain"` or `"table"`
    /// otherwise.
    pub field: &'static str,
    /// What is wrong.
    pub message: &'static str,
    /// The chain at fault, if any.
    pub chain: Option<&'a str>,
    /// The handle of the rule at fault, if any.
    pub handle: Option<u64>,
}

impl core::fmt::Display for CompileError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let Some(c) = self.chain {
            write!(f, "chain '{c}'")?;
            if let Some(h) = self.handle {
                write!(f, " rule {h}")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(self.message)
    }
}

const fn err<'a>(
    field: &'static str,
    message: &'static str,
    chain: Option<&'a str>,
    handle: Option<u64>,
) -> CompileError<'a> {
    CompileError {
        field,
        message,
        chain,
        handle,
    }
}

/// `n` rounded up to a multiple of 4, saturating.
const fn align4(n: usize) -> usize {
    match n.checked_add(3) {
        Some(v) => v & !3,
        None => usize::MAX & !3,
    }
}

/// Size of the compiled record of a rule.
fn record_len(v: &RuleView<'_>) -> usize {
    let mut n = REC_HDR;
    for list in [v.saddr, v.daddr].into_iter().flatten() {
        n += 4;
        for c in list.iter() {
            n += match c.family {
                Family::Ipv4 => 8,
                Family::Ipv6 => 32,
            };
        }
    }
    for list in [v.sport, v.dport].into_iter().flatten() {
        n += 4 + 4 * list.iter().count();
    }
    if v.tcp_flags.is_some() {
        n += 4;
    }
    if v.icmp.is_some() {
        n += 4;
    }
    n += IFACE_LEN * (usize::from(v.iif.is_some()) + usize::from(v.oif.is_some()));
    if v.mark.is_some() {
        n += 8;
    }
    if v.ct_state.is_some() {
        n += CT_STATE_LEN;
    }
    if v.ct_status.is_some() {
        n += CT_STATUS_LEN;
    }
    if v.ct_direction.is_some() {
        n += CT_DIRECTION_LEN;
    }
    if v.ct_mark.is_some() {
        n += CT_MARK_LEN;
    }
    n += 4 * (usize::from(v.uid.is_some()) + usize::from(v.gid.is_some()));
    if let Some(p) = v.payload {
        n += 4 + align4(p.len());
    }
    n += 4 * (usize::from(v.nth.is_some()) + usize::from(v.random.is_some()));
    if v.limit.is_some() {
        n += LIMIT_LEN;
    }
    if let Action::Log { prefix, .. } = v.action {
        n += 4 + align4(prefix.len());
    }
    if let Action::CtMark { .. } = v.action {
        n += 4;
    }
    if let Action::Nat(_) = v.action {
        n += NAT_LEN;
    }
    n
}

/// Why a nat chain cannot have policy drop, as iptables refuses `DROP` in
/// the nat table.
pub const NAT_POLICY_DROP: &str =
    "the nat table's chains have policy accept: it sees only a flow's first packet and is not for filtering";

/// Checks a chain's name and policy against the table.
fn check_chain<'a>(
    table: Table,
    name: &'a str,
    policy: Option<Policy>,
) -> Result<Option<Hook>, CompileError<'a>> {
    if let Some(h) = table.builtin(name) {
        if policy.is_none() {
            return Err(err(
                "policy",
                "a built-in chain needs a policy (accept or drop)",
                Some(name),
                None,
            ));
        }
        if table == Table::Nat && policy == Some(Policy::Drop) {
            return Err(err("policy", NAT_POLICY_DROP, Some(name), None));
        }
        return Ok(Some(h));
    }
    if builtin_chain_hook(name).is_some() {
        return Err(err(
            "chain",
            "the table has no such built-in chain",
            Some(name),
            None,
        ));
    }
    validate_chain_name(name).map_err(|e| err(e.field, e.message, Some(name), None))?;
    if policy.is_some() {
        return Err(err(
            "policy",
            "only built-in chains have a policy",
            Some(name),
            None,
        ));
    }
    Ok(None)
}

/// Whether a rule needs packets tracked: a `ct` match, a `ct mark` action
/// or a NAT action.
pub fn needs_conntrack(v: &RuleView<'_>) -> bool {
    v.ct_state.is_some()
        || v.ct_status.is_some()
        || v.ct_direction.is_some()
        || v.ct_mark.is_some()
        || matches!(v.action, Action::CtMark { .. } | Action::Nat(_))
}

/// Whether rule `v` has a flat entry ([`layout::FLAT_LEN`]): no match but
/// family, protocol, ct state, one address or prefix per side of the
/// rule's own family (so that a packet of the other family fails on the
/// family first, as with the record), one port range per side; action
/// accept, drop or reject.
fn flat_rule(v: &RuleView<'_>) -> bool {
    let one_addr = |l: &Option<crate::rules::AddrList<'_>>| match l {
        None => true,
        Some(l) => {
            let mut it = l.iter();
            match (it.next(), it.next()) {
                (Some(c), None) => v.family == Some(c.family),
                _ => false,
            }
        }
    };
    let one_range =
        |l: &Option<crate::rules::PortList<'_>>| l.as_ref().map_or(true, |l| l.iter().count() == 1);
    matches!(v.action, Action::Accept | Action::Drop | Action::Reject(_))
        && one_addr(&v.saddr)
        && one_addr(&v.daddr)
        && one_range(&v.sport)
        && one_range(&v.dport)
        && v.iif.is_none()
        && v.oif.is_none()
        && v.tcp_flags.is_none()
        && v.icmp.is_none()
        && v.mark.is_none()
        && v.ct_status.is_none()
        && v.ct_direction.is_none()
        && v.ct_mark.is_none()
        && v.limit.is_none()
        && v.uid.is_none()
        && v.gid.is_none()
        && v.payload.is_none()
        && v.random.is_none()
        && v.nth.is_none()
}

/// The size of the flat form of a chain with `n` rules, all
/// [`flat_rule`]s if `flat`, reached from hook `hook` (a built-in chain):
/// 0 for a chain without one.
fn flat_size(hook: Option<Hook>, n: usize, flat: bool) -> usize {
    if hook.is_some() && flat && n < INDEX_MIN_RULES {
        FLAT_HDR + n * FLAT_LEN
    } else {
        0
    }
}

/// Writes the flat entry of rule `v` (a [`flat_rule`]) at `at`.
fn write_flat(out: &mut Out<'_>, at: usize, v: &RuleView<'_>, counter: u32) {
    let mut m = 0u32;
    for (i, (list, bit, neg)) in [
        (v.saddr, M_SADDR, M_SADDR_NEG),
        (v.daddr, M_DADDR, M_DADDR_NEG),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(c) = list.as_ref().and_then(|l| l.iter().next()) else {
            continue;
        };
        m |= bit;
        if list.is_some_and(|l| l.negated) {
            m |= neg;
        }
        let width = match c.family {
            Family::Ipv4 => 4,
            Family::Ipv6 => 16,
        };
        let p = at + FL_ADDRS + 32 * i;
        out.bytes(p, c.addr.get(..width).unwrap_or(&[]));
        out.bytes(p + 16, c.mask().get(..width).unwrap_or(&[]));
    }
    for (i, (list, bit, neg)) in [
        (v.sport, M_SPORT, M_SPORT_NEG),
        (v.dport, M_DPORT, M_DPORT_NEG),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(r) = list.as_ref().and_then(|l| l.iter().next()) else {
            continue;
        };
        m |= bit;
        if list.is_some_and(|l| l.negated) {
            m |= neg;
        }
        out.u16(at + FL_PORTS + 4 * i, r.lo);
        out.u16(at + FL_PORTS + 4 * i + 2, r.hi);
    }
    if let Some(c) = v.ct_state {
        m |= M_CT_STATE;
        out.u8(at + FL_CT_STATES, c.states.0);
        out.u8(at + FL_CT_NEG, u8::from(c.negated));
    }
    let (action, reject) = match v.action {
        Action::Accept => (crate::rules::action_kind::ACCEPT, 0),
        Action::Drop => (crate::rules::action_kind::DROP, 0),
        Action::Reject(k) => (crate::rules::action_kind::REJECT, k as u8),
        _ => {
            out.ok = false;
            return;
        }
    };
    out.u32(at + FL_MATCHES, m);
    out.u8(at + FL_FAMILY, v.family.map_or(0, |f| f as u8));
    out.u8(at + FL_PROTO, v.proto.unwrap_or(0));
    out.u8(at + FL_ACTION, action);
    out.u8(at + FL_REJECT, reject);
    out.u32(at + FL_COUNTER, counter);
}

fn jump_target<'b>(a: &Action<'b>) -> Option<&'b str> {
    match *a {
        Action::Jump(t) | Action::Goto(t) => Some(t),
        _ => None,
    }
}

/// Checks a whole table's rule set and returns the size of its compiled
/// form. Loops and jump depth are checked by [`fill`], which needs the
/// output buffer to do it without allocating.
pub fn measure<'a, I, R>(table: Table, chains: I) -> Result<usize, CompileError<'a>>
where
    I: Iterator<Item = ChainSpec<'a, R>> + Clone,
    R: Iterator<Item = RuleRef<'a>>,
{
    let mut n_chains = 0usize;
    let mut n_rules = 0usize;
    let mut size = HDR_LEN;
    for (i, c) in chains.clone().enumerate() {
        n_chains += 1;
        if n_chains > MAX_CHAINS {
            return Err(err(
                "table",
                "more than 1024 chains in one table",
                None,
                None,
            ));
        }
        check_chain(table, c.name, c.policy)?;
        if chains.clone().take(i).any(|d| d.name == c.name) {
            return Err(err(
                "chain",
                "two chains have this name",
                Some(c.name),
                None,
            ));
        }
        let mut in_chain = 0usize;
        let mut keys = ChainKeys::new();
        let mut flat = true;
        for r in c.rules {
            n_rules += 1;
            in_chain += 1;
            if n_rules > MAX_RULES {
                return Err(err(
                    "table",
                    "more than 131072 rules in one table",
                    None,
                    None,
                ));
            }
            let v = RuleView::decode(r.blob)
                .and_then(|v| v.check_table(table).map(|()| v))
                .and_then(|v| match table.builtin(c.name) {
                    Some(h) => v.check_hook(h).map(|()| v),
                    None => Ok(v),
                })
                .map_err(|e| err(e.field, e.message, Some(c.name), Some(r.handle)))?;
            if let Some(t) = jump_target(&v.action) {
                if !chains.clone().any(|d| d.name == t) {
                    return Err(err(
                        "chain",
                        "jump or goto to a chain that does not exist in this table",
                        Some(c.name),
                        Some(r.handle),
                    ));
                }
            }
            size = size.saturating_add(record_len(&v));
            keys.add(&v);
            flat &= flat_rule(&v);
        }
        size = size.saturating_add(CHAIN_LEN + REC_HDR);
        if in_chain >= INDEX_MIN_RULES {
            size = size.saturating_add(index_size(in_chain, &keys));
        }
        size = size.saturating_add(flat_size(table.builtin(c.name), in_chain, flat));
    }
    if u32::try_from(size).is_err() {
        return Err(err("table", "the rule set is too large", None, None));
    }
    Ok(size)
}

/// Little-endian writes into the output; out-of-range writes are recorded
/// rather than panicking (they cannot happen once [`measure`] sized it).
struct Out<'b> {
    buf: &'b mut [u8],
    ok: bool,
}

impl Out<'_> {
    fn bytes(&mut self, at: usize, b: &[u8]) {
        match self.buf.get_mut(at..at.saturating_add(b.len())) {
            Some(d) => copy_into(d, b),
            None => self.ok = false,
        }
    }
    fn u8(&mut self, at: usize, v: u8) {
        self.bytes(at, &[v]);
    }
    fn u16(&mut self, at: usize, v: u16) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn u32(&mut self, at: usize, v: u32) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn u64(&mut self, at: usize, v: u64) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn get_u8(&self, at: usize) -> u8 {
        self.buf.get(at).copied().unwrap_or(0)
    }
    fn get_u32(&self, at: usize) -> u32 {
        rd_u32(self.buf, at).unwrap_or(0)
    }
    fn get_u64(&self, at: usize) -> u64 {
        let lo = u64::from(self.get_u32(at));
        let hi = u64::from(self.get_u32(at.saturating_add(4)));
        lo | (hi << 32)
    }
}

/// Reads a little-endian `u32` at `at`.
pub(crate) fn rd_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(<[u8; 4]>::try_from(b).ok()?))
}

/// Reads a little-endian `u16` at `at`.
pub(crate) fn rd_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(<[u8; 2]>::try_from(b).ok()?))
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn chain_entry(i: usize) -> usize {
    HDR_LEN + i * CHAIN_LEN
}

/// Index of the chain called `name` in the chain table being written.
fn find_chain(out: &Out<'_>, n_chains: usize, name: &str) -> Option<usize> {
    let n = name.as_bytes();
    (0..n_chains).find(|&i| {
        let at = chain_entry(i) + C_NAME;
        match out.buf.get(at..at + 32) {
            Some(stored) => {
                stored.get(..n.len()) == Some(n) && stored.get(n.len()).copied() == Some(0)
            }
            None => false,
        }
    })
}

/// Writes the record of rule `v` at `at`; returns its length.
fn write_record(
    out: &mut Out<'_>,
    at: usize,
    v: &RuleView<'_>,
    r: &RuleRef<'_>,
    target: Option<(usize, usize)>,
) -> usize {
    let len = record_len(v);
    out.u32(at + R_LEN, to_u32(len));
    out.u8(at + R_KIND, KIND_RULE);
    out.u8(at + R_FAMILY, v.family.map_or(0, |f| f as u8));
    out.u8(at + R_PROTO, v.proto.unwrap_or(0));
    out.u32(at + R_COUNTER, r.counter);
    out.u64(at + R_HANDLE, r.handle);
    let (kind, arg, arg2) = match v.action {
        Action::Accept => (crate::rules::action_kind::ACCEPT, 0, 0),
        Action::Drop => (crate::rules::action_kind::DROP, 0, 0),
        Action::Reject(k) => (crate::rules::action_kind::REJECT, u32::from(k as u8), 0),
        Action::Return => (crate::rules::action_kind::RETURN, 0, 0),
        Action::Jump(_) | Action::Goto(_) => {
            let (off, idx) = target.unwrap_or((0, 0));
            let k = if matches!(v.action, Action::Jump(_)) {
                crate::rules::action_kind::JUMP
            } else {
                crate::rules::action_kind::GOTO
            };
            (k, to_u32(off), to_u32(idx))
        }
        Action::Log { level, .. } => (crate::rules::action_kind::LOG, u32::from(level), 0),
        Action::Mark { op, value } => (crate::rules::action_kind::MARK, value, u32::from(op as u8)),
        Action::CtMark { op, value, .. } => (
            crate::rules::action_kind::CT_MARK,
            value,
            u32::from(op as u8),
        ),
        Action::Notrack => (crate::rules::action_kind::NOTRACK, 0, 0),
        Action::Nat(n) => (n.kind.action_kind(), 0, 0),
    };
    out.u8(at + R_ACTION, kind);
    out.u32(at + R_ARG, arg);
    out.u32(at + R_ARG2, arg2);

    let mut m = 0u32;
    let mut p = at + REC_HDR;
    for (list, bit, neg) in [
        (v.saddr, M_SADDR, M_SADDR_NEG),
        (v.daddr, M_DADDR, M_DADDR_NEG),
    ] {
        if let Some(l) = list {
            m |= bit;
            if l.negated {
                m |= neg;
            }
            let n4 = l.iter().filter(|c| c.family == Family::Ipv4).count();
            let n6 = l.iter().filter(|c| c.family == Family::Ipv6).count();
            out.u16(p, u16::try_from(n4).unwrap_or(0));
            out.u16(p + 2, u16::try_from(n6).unwrap_or(0));
            p += 4;
            for c in l.iter().filter(|c| c.family == Family::Ipv4) {
                let mask = c.mask();
                out.bytes(p, c.addr.get(..4).unwrap_or(&[]));
                out.bytes(p + 4, mask.get(..4).unwrap_or(&[]));
                p += 8;
            }
            for c in l.iter().filter(|c| c.family == Family::Ipv6) {
                out.bytes(p, &c.addr);
                out.bytes(p + 16, &c.mask());
                p += 32;
            }
        }
    }
    for (list, bit, neg) in [
        (v.sport, M_SPORT, M_SPORT_NEG),
        (v.dport, M_DPORT, M_DPORT_NEG),
    ] {
        if let Some(l) = list {
            m |= bit;
            if l.negated {
                m |= neg;
            }
            out.u16(p, u16::try_from(l.iter().count()).unwrap_or(0));
            p += 4;
            for r in l.iter() {
                out.u16(p, r.lo);
                out.u16(p + 2, r.hi);
                p += 4;
            }
        }
    }
    if let Some(t) = v.tcp_flags {
        m |= M_TCP_FLAGS;
        out.u8(p, t.mask);
        out.u8(p + 1, t.set);
        p += 4;
    }
    if let Some(i) = v.icmp {
        m |= M_ICMP;
        out.u8(p, i.ty);
        out.u8(p + 1, i.code.unwrap_or(0));
        out.u8(p + 2, u8::from(i.code.is_some()));
        p += 4;
    }
    for (iface, bit, neg, prefix) in [
        (v.iif, M_IIF, M_IIF_NEG, M_IIF_PREFIX),
        (v.oif, M_OIF, M_OIF_NEG, M_OIF_PREFIX),
    ] {
        if let Some(i) = iface {
            m |= bit;
            if i.negated {
                m |= neg;
            }
            if i.prefix {
                m |= prefix;
            }
            out.u8(p, u8::try_from(i.name.len()).unwrap_or(0));
            out.bytes(p + 4, i.name.as_bytes());
            p += IFACE_LEN;
        }
    }
    if let Some(mk) = v.mark {
        m |= M_MARK;
        if mk.negated {
            m |= M_MARK_NEG;
        }
        out.u32(p, mk.value);
        out.u32(p + 4, mk.mask);
        p += 8;
    }
    if let Some(c) = v.ct_state {
        m |= M_CT_STATE;
        out.u8(p, c.states.0);
        out.u8(p + 1, u8::from(c.negated));
        p += CT_STATE_LEN;
    }
    if let Some(c) = v.ct_status {
        m |= M_CT_STATUS;
        out.u32(p, c.bits);
        out.u8(p + 4, u8::from(c.negated));
        p += CT_STATUS_LEN;
    }
    if let Some(c) = v.ct_direction {
        m |= M_CT_DIRECTION;
        out.u8(p, c.effective() as u8);
        p += CT_DIRECTION_LEN;
    }
    if let Some(mk) = v.ct_mark {
        m |= M_CT_MARK;
        out.u32(p, mk.value);
        out.u32(p + 4, mk.mask);
        out.u8(p + 8, u8::from(mk.negated));
        p += CT_MARK_LEN;
    }
    if let Some(u) = v.uid {
        m |= M_UID;
        out.u32(p, u);
        p += 4;
    }
    if let Some(g) = v.gid {
        m |= M_GID;
        out.u32(p, g);
        p += 4;
    }
    if let Some(pl) = v.payload {
        m |= M_PAYLOAD;
        out.u16(p, u16::try_from(pl.len()).unwrap_or(0));
        out.bytes(p + 4, pl);
        p += 4 + align4(pl.len());
    }
    if let Some(n) = v.nth {
        m |= M_NTH;
        out.u32(p, n);
        p += 4;
    }
    if let Some(r) = v.random {
        m |= M_RANDOM;
        out.u32(p, r);
        p += 4;
    }
    if let Some(l) = v.limit {
        m |= M_LIMIT;
        out.u32(p, l.rate);
        out.u32(p + 4, l.burst);
        out.u8(p + 8, l.unit as u8);
        p += LIMIT_LEN;
    }
    if let Action::Log { prefix, .. } = v.action {
        m |= M_LOG_PREFIX;
        out.u16(p, u16::try_from(prefix.len()).unwrap_or(0));
        out.bytes(p + 4, prefix.as_bytes());
        p += 4 + align4(prefix.len());
    }
    if let Action::CtMark { mask, .. } = v.action {
        m |= M_ARG3;
        out.u32(p, mask);
        p += 4;
    }
    if let Action::Nat(n) = v.action {
        m |= M_NAT;
        let r = &n.range;
        out.u8(p, r.flags);
        if r.has(crate::nat::range_flag::MAP_IPS) {
            out.u8(p + 1, r.family as u8);
        }
        out.u16(p + 4, r.min_port);
        out.u16(p + 6, r.max_port);
        out.bytes(p + 8, &r.min_addr);
        out.bytes(p + 24, &r.max_addr);
        p += NAT_LEN;
    }
    out.u32(at + R_MATCHES, m);
    if p != at + len {
        out.ok = false;
    }
    len
}

/// What the end of a chain with `policy` does: a built-in chain's policy,
/// or `RETURN` for a user chain.
fn end_action(policy: Option<Policy>) -> u8 {
    match policy {
        Some(Policy::Accept) => crate::rules::action_kind::ACCEPT,
        Some(Policy::Drop) => crate::rules::action_kind::DROP,
        None => crate::rules::action_kind::RETURN,
    }
}

fn write_end(out: &mut Out<'_>, at: usize, policy: Option<Policy>, counter: u32) {
    out.u32(at + R_LEN, to_u32(REC_HDR));
    out.u8(at + R_KIND, KIND_END);
    out.u8(at + R_ACTION, end_action(policy));
    out.u32(at + R_COUNTER, counter);
}

const WHITE: u8 = 0;
const GRAY: u8 = 1;
const BLACK: u8 = 2;
const NO_PARENT: u32 = u32::MAX;

/// Compiles a whole table's rule set into `out`, which must hold at least
/// [`measure`] bytes; returns the number of bytes written.
///
/// `chains` must yield the same chains and rules as it did for [`measure`].
pub fn fill<'a, I, R>(table: Table, chains: I, out: &mut [u8]) -> Result<usize, CompileError<'a>>
where
    I: Iterator<Item = ChainSpec<'a, R>> + Clone,
    R: Iterator<Item = RuleRef<'a>>,
{
    let size = measure(table, chains.clone())?;
    let buf = out.get_mut(..size).ok_or(err(
        "table",
        "the output buffer is smaller than measured",
        None,
        None,
    ))?;
    buf.fill(0);
    let mut out = Out { buf, ok: true };
    let n_chains = chains.clone().count();
    let rules_off = HDR_LEN + n_chains * CHAIN_LEN;

    out.bytes(0, &MAGIC);
    out.u8(4, VERSION);
    out.u8(H_TABLE, table as u8);
    out.u32(H_TOTAL, to_u32(size));
    out.u32(H_CHAINS, to_u32(n_chains));

    // Chain table first, so that jump targets can be resolved while the
    // records are written.
    let mut pos = rules_off;
    let mut n_rules = 0usize;
    // Per hook, the built-in chain with a flat form: its index, its rule
    // count and the form's size.
    let mut flat_chains = [None::<(usize, usize, usize)>; Hook::ALL.len()];
    for (i, c) in chains.clone().enumerate() {
        let e = chain_entry(i);
        let hook = table.builtin(c.name);
        let start = pos;
        out.bytes(e + C_NAME, c.name.as_bytes());
        out.u32(e + C_START, to_u32(start));
        out.u8(e + C_HOOK, hook.map_or(NONE8, |h| h as u8));
        out.u8(e + C_POLICY, c.policy.map_or(NONE8, |p| p as u8));
        let mut count = 0usize;
        let mut flat = true;
        for r in c.rules {
            count += 1;
            match RuleView::decode(r.blob) {
                Ok(v) => {
                    pos += record_len(&v);
                    flat &= flat_rule(&v);
                }
                Err(_) => flat = false,
            }
        }
        n_rules += count;
        out.u32(e + C_RULES, to_u32(count));
        if let Some(h) = hook {
            out.u32(H_ENTRY + 4 * h as usize, to_u32(start));
            out.u32(H_POLICY + 4 * h as usize, to_u32(pos));
            out.u32(H_ENTRY_CHAIN + 4 * h as usize, to_u32(i));
            let len = flat_size(hook, count, flat);
            if let (Some(slot), 1..) = (flat_chains.get_mut(h as usize), len) {
                *slot = Some((i, count, len));
            }
        }
        pos += REC_HDR;
    }
    out.u32(H_RULES, to_u32(n_rules));

    let mut pos = rules_off;
    let mut flags = 0u32;
    for c in chains.clone() {
        for r in c.rules {
            let Ok(v) = RuleView::decode(r.blob) else {
                continue;
            };
            if needs_conntrack(&v) {
                flags |= F_CONNTRACK;
            }
            let target = jump_target(&v.action).and_then(|t| {
                let i = find_chain(&out, n_chains, t)?;
                Some((out.get_u32(chain_entry(i) + C_START) as usize, i))
            });
            pos += write_record(&mut out, pos, &v, &r, target);
        }
        write_end(&mut out, pos, c.policy, c.policy_counter);
        pos += REC_HDR;
    }
    out.u32(H_FLAGS, flags);

    // Classification indexes, after the records.
    for (i, c) in chains.clone().enumerate() {
        let mut n = 0usize;
        let mut keys = ChainKeys::new();
        for r in c.rules {
            n += 1;
            if let Ok(v) = RuleView::decode(r.blob) {
                keys.add(&v);
            }
        }
        if n < INDEX_MIN_RULES {
            continue;
        }
        let e = chain_entry(i);
        out.u32(e + C_INDEX, to_u32(pos));
        let start = out.get_u32(e + C_START) as usize;
        let rules = || {
            chains
                .clone()
                .nth(i)
                .into_iter()
                .flat_map(|c| c.rules)
                .filter_map(|r| RuleView::decode(r.blob).ok())
                .map(|v| {
                    let len = record_len(&v);
                    (v, len)
                })
        };
        if !crate::classify::build(out.buf, pos, start, n, &keys, rules) {
            out.ok = false;
        }
        pos = pos.saturating_add(index_size(n, &keys));
    }

    // Flat chains, after the indexes.
    for (h, slot) in flat_chains.into_iter().enumerate() {
        let Some((i, n, len)) = slot else {
            continue;
        };
        let Some(c) = chains.clone().nth(i) else {
            continue;
        };
        out.u32(H_FLAT + 4 * h, to_u32(pos));
        out.u32(pos, to_u32(n));
        out.u32(pos + 4, u32::from(end_action(c.policy)));
        out.u32(pos + 8, c.policy_counter);
        let mut at = pos + FLAT_HDR;
        for r in c.rules {
            if let Ok(v) = RuleView::decode(r.blob) {
                write_flat(&mut out, at, &v, r.counter);
            }
            at += FLAT_LEN;
        }
        pos = pos.saturating_add(len);
    }
    if !out.ok || pos != size {
        return Err(err(
            "table",
            "internal error: compiled size differs from measured size",
            None,
            None,
        ));
    }

    check_graph(&mut out, n_chains).map_err(|(i, message)| {
        err(
            "chain",
            message,
            chains.clone().nth(i).map(|c| c.name),
            None,
        )
    })?;

    let mut max_steps = 0u32;
    for i in 0..n_chains {
        let e = chain_entry(i);
        if out.get_u8(e + C_HOOK) != NONE8 {
            if out.get_u32(e + C_DEPTH) as usize > MAX_JUMP_DEPTH {
                let name = chains.clone().nth(i).map(|c| c.name);
                return Err(err(
                    "chain",
                    "jumps from this built-in chain nest deeper than 16 chains",
                    name,
                    None,
                ));
            }
            max_steps = max_steps.max(out.get_u32(e + C_STEPS));
        }
    }
    // Slack for the end record reached by a return from a chain entered
    // with goto.
    out.u32(H_MAX_STEPS, max_steps.saturating_add(2));

    mark_hooks(&mut out, n_chains).map_err(|(i, message)| {
        err(
            "chain",
            message,
            chains.clone().nth(i).map(|c| c.name),
            None,
        )
    })?;
    check_nat_hooks(&out, n_chains).map_err(|(i, handle, e)| {
        err(
            e.field,
            e.message,
            chains.clone().nth(i).map(|c| c.name),
            Some(handle),
        )
    })?;
    if !out.ok {
        return Err(err("table", "internal error while compiling", None, None));
    }
    Ok(size)
}

/// Depth-first search over the chain graph, keeping its state in the chain
/// table's scratch fields (no recursion, no allocation). Finds loops, and
/// computes per chain the deepest jump nesting below it and the most
/// records one pass through it can visit. Returns the index of the chain
/// at fault.
fn check_graph(out: &mut Out<'_>, n_chains: usize) -> Result<(), (usize, &'static str)> {
    const LOOP: &str = "this chain can reach itself through jump or goto";
    const CORRUPT: &str = "internal error: bad record while checking jumps";
    for root in 0..n_chains {
        if out.get_u8(chain_entry(root) + C_STATE) != WHITE {
            continue;
        }
        enter(out, root, NO_PARENT);
        let mut cur = root;
        loop {
            let e = chain_entry(cur);
            let at = out.get_u32(e + C_CURSOR) as usize;
            let kind = out.get_u8(at + R_KIND);
            let len = out.get_u32(at + R_LEN) as usize;
            if len < REC_HDR {
                return Err((cur, CORRUPT));
            }
            if kind == KIND_END {
                add_steps(out, e, 1);
                out.u8(e + C_STATE, BLACK);
                let parent = out.get_u32(e + C_PARENT);
                if parent == NO_PARENT {
                    break;
                }
                let p = parent as usize;
                fold(out, p, cur);
                cur = p;
                continue;
            }
            let action = out.get_u8(at + R_ACTION);
            let is_jump = action == crate::rules::action_kind::JUMP;
            let is_goto = action == crate::rules::action_kind::GOTO;
            if !is_jump && !is_goto {
                add_steps(out, e, 1);
                out.u32(e + C_CURSOR, to_u32(at + len));
                continue;
            }
            let t = out.get_u32(at + R_ARG2) as usize;
            if t >= n_chains {
                return Err((cur, CORRUPT));
            }
            match out.get_u8(chain_entry(t) + C_STATE) {
                GRAY => return Err((t, LOOP)),
                BLACK => fold(out, cur, t),
                _ => {
                    enter(out, t, to_u32(cur));
                    cur = t;
                }
            }
        }
    }
    Ok(())
}

/// Records in every chain's [`C_HOOKS`] the hooks whose built-in chain
/// can reach it through `jump` and `goto`, as iptables'
/// `mark_source_chains` does, so that hook-bound actions in user chains
/// can be checked. One depth-first walk per hook, in the chain table's
/// scratch fields: each chain is entered at most once per hook (its bit
/// marks it), so the work is at most five passes over the records. Runs
/// after [`check_graph`], on a loop-free graph.
fn mark_hooks(out: &mut Out<'_>, n_chains: usize) -> Result<(), (usize, &'static str)> {
    const CORRUPT: &str = "internal error: bad record while marking hooks";
    for root in 0..n_chains {
        let re = chain_entry(root);
        let Some(hook) = Hook::from_u8(out.get_u8(re + C_HOOK)) else {
            continue;
        };
        let bit = 1u8 << (hook as u8);
        visit(out, root, bit, NO_PARENT);
        let mut cur = root;
        loop {
            let e = chain_entry(cur);
            let at = out.get_u32(e + C_CURSOR) as usize;
            let len = out.get_u32(at + R_LEN) as usize;
            if len < REC_HDR {
                return Err((cur, CORRUPT));
            }
            if out.get_u8(at + R_KIND) == KIND_END {
                let parent = out.get_u32(e + C_PARENT);
                if parent == NO_PARENT {
                    break;
                }
                cur = parent as usize;
                let pe = chain_entry(cur);
                let pat = out.get_u32(pe + C_CURSOR) as usize;
                let plen = out.get_u32(pat + R_LEN) as usize;
                out.u32(pe + C_CURSOR, to_u32(pat.saturating_add(plen)));
                continue;
            }
            let action = out.get_u8(at + R_ACTION);
            if action == crate::rules::action_kind::JUMP
                || action == crate::rules::action_kind::GOTO
            {
                let t = out.get_u32(at + R_ARG2) as usize;
                if t >= n_chains {
                    return Err((cur, CORRUPT));
                }
                if out.get_u8(chain_entry(t) + C_HOOKS) & bit == 0 {
                    visit(out, t, bit, to_u32(cur));
                    cur = t;
                    continue;
                }
            }
            out.u32(e + C_CURSOR, to_u32(at.saturating_add(len)));
        }
    }
    Ok(())
}

/// Marks chain `i` as reached from the hook of `bit` and starts walking
/// it.
fn visit(out: &mut Out<'_>, i: usize, bit: u8, parent: u32) {
    let e = chain_entry(i);
    let hooks = out.get_u8(e + C_HOOKS) | bit;
    out.u8(e + C_HOOKS, hooks);
    out.u32(e + C_PARENT, parent);
    let start = out.get_u32(e + C_START);
    out.u32(e + C_CURSOR, start);
}

/// Checks every NAT action against the hooks its chain can be reached
/// from ([`check_nat_hook`]); returns the chain, the rule's handle and the
/// error.
fn check_nat_hooks(out: &Out<'_>, n_chains: usize) -> Result<(), (usize, u64, RuleError)> {
    const CORRUPT: RuleError = RuleError {
        field: "table",
        message: "internal error: bad record while checking NAT hooks",
    };
    for i in 0..n_chains {
        let e = chain_entry(i);
        let hooks = out.get_u8(e + C_HOOKS);
        let mut at = out.get_u32(e + C_START) as usize;
        loop {
            let len = out.get_u32(at + R_LEN) as usize;
            if len < REC_HDR {
                return Err((i, 0, CORRUPT));
            }
            if out.get_u8(at + R_KIND) != KIND_RULE {
                break;
            }
            if let Some(kind) = NatKind::from_action_kind(out.get_u8(at + R_ACTION)) {
                for h in Hook::ALL {
                    if hooks & (1u8 << (h as u8)) != 0 {
                        check_nat_hook(kind, h)
                            .map_err(|er| (i, out.get_u64(at + R_HANDLE), er))?;
                    }
                }
            }
            at = at.saturating_add(len);
        }
    }
    Ok(())
}

/// Starts visiting chain `i`.
fn enter(out: &mut Out<'_>, i: usize, parent: u32) {
    let e = chain_entry(i);
    out.u8(e + C_STATE, GRAY);
    out.u32(e + C_PARENT, parent);
    let start = out.get_u32(e + C_START);
    out.u32(e + C_CURSOR, start);
    out.u32(e + C_DEPTH, 0);
    out.u32(e + C_STEPS, 0);
}

fn add_steps(out: &mut Out<'_>, e: usize, n: u32) {
    let s = out.get_u32(e + C_STEPS).saturating_add(n);
    out.u32(e + C_STEPS, s);
}

/// Accounts for finished chain `child` in chain `p`, whose cursor is at the
/// jump or goto that leads to it, and moves `p`'s cursor past that rule.
fn fold(out: &mut Out<'_>, p: usize, child: usize) {
    let pe = chain_entry(p);
    let ce = chain_entry(child);
    let at = out.get_u32(pe + C_CURSOR) as usize;
    let is_jump = out.get_u8(at + R_ACTION) == crate::rules::action_kind::JUMP;
    let child_depth = out.get_u32(ce + C_DEPTH);
    let d = if is_jump {
        child_depth.saturating_add(1)
    } else {
        child_depth
    };
    if d > out.get_u32(pe + C_DEPTH) {
        out.u32(pe + C_DEPTH, d);
    }
    let s = out.get_u32(ce + C_STEPS).saturating_add(1);
    add_steps(out, pe, s);
    let len = out.get_u32(at + R_LEN) as usize;
    out.u32(pe + C_CURSOR, to_u32(at + len));
}

/// Checks tails compiled for a compiled table (see
/// [`Tails`](crate::eval::Tails)) before they are published with it.
///
/// The tails are compiled by [`fill`] as a table of their own whose chains
/// carry the names (and, for built-in chains, a policy) of the chains they
/// extend, so that [`fill`] checks each rule against the table and a
/// built-in chain's hook. What [`fill`] cannot know is checked here: every
/// link names chains of the same name, no tail rule jumps (a new edge in
/// the chain graph needs a full compile to check for loops and depth), and
/// a NAT action in the tail of a user chain is allowed at every hook that
/// chain is reached from in `main`.
pub fn check_tails<'a>(
    main: &crate::eval::CompiledTable<'a>,
    tails: &crate::eval::CompiledTable<'_>,
    links: &[crate::eval::TailLink],
) -> Result<(), CompileError<'a>> {
    const UNLINKED: &str = "internal error: a tail is linked to another chain";
    if main.table() != tails.table() {
        return Err(err(
            "table",
            "internal error: tails of another table",
            None,
            None,
        ));
    }
    for (i, l) in links.iter().enumerate() {
        let m = main
            .chain(l.chain as usize)
            .ok_or(err("table", UNLINKED, None, None))?;
        let t = tails
            .chain(l.tail as usize)
            .ok_or(err("table", UNLINKED, Some(m.name), None))?;
        let sorted = i == 0 || links.get(i - 1).is_some_and(|p| p.chain < l.chain);
        if t.name != m.name || !sorted {
            return Err(err("table", UNLINKED, Some(m.name), None));
        }
        let hooks = main.chain_hooks(l.chain as usize).unwrap_or(0);
        for (handle, action) in tails.chain_actions(l.tail as usize) {
            if matches!(
                action,
                crate::rules::action_kind::JUMP | crate::rules::action_kind::GOTO
            ) {
                return Err(err(
                    "action",
                    "internal error: a jump in a tail",
                    Some(m.name),
                    Some(handle),
                ));
            }
            if let Some(kind) = NatKind::from_action_kind(action) {
                for h in Hook::ALL {
                    if hooks & (1u8 << (h as u8)) != 0 {
                        check_nat_hook(kind, h)
                            .map_err(|e| err(e.field, e.message, Some(m.name), Some(handle)))?;
                    }
                }
            }
        }
    }
    Ok(())
}
