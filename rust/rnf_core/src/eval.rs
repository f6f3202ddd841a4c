// SPDX-License-Identifier: GPL-2.0-only

//! Evaluating a packet against a compiled table (see [`crate::compile`]).
//!
//! Semantics are iptables': the rules of a chain are tried in order; the
//! first matching rule with a terminal action (NAT actions included)
//! decides; `log`, `mark`,
//! `ct mark` and `notrack` act and go on; `jump` remembers where to come back (a stack of
//! [`MAX_JUMP_DEPTH`] entries, no allocation), `goto` does not; `return`
//! or the end of a user chain comes back to the last `jump`, or, if there
//! is none, applies the policy of the built-in chain the packet entered;
//! the end of a built-in chain applies its policy.
//!
//! A rule's matches are tried in a fixed order, the same for every rule:
//! family, protocol, addresses, ports, TCP flags, ICMP, interfaces, mark,
//! ct state, ct status, ct direction, ct mark, uid, gid, then the ones that ask the kernel for more (payload) or change
//! state (`nth`, `random`, `limit`, last), so that a `limit` spends tokens
//! only on packets that match everything else. A match stops at the first
//! part that fails.
//!
//! What needs the kernel (counters, token buckets, randomness, the payload,
//! interface names, the mark, socket owner, logging, the packet's flow)
//! goes through [`EvalEnv`], which the kernel implements per packet.
//!
//! Conntrack matches follow iptables' `conntrack` and `connmark` matches:
//! every packet has a `ct state` (untracked and invalid are states), so a
//! negated `ct state` is plain negation; `ct status`, `ct direction` and
//! `ct mark` need a flow, and a packet without one matches neither them
//! nor their negation. `ct mark` actions leave a packet without a flow
//! alone.
//!
//! The evaluator trusts a buffer that [`fill`](crate::compile::fill)
//! wrote, but never panics or loops forever on any other: a buffer that
//! does not make sense drops the packet.

use crate::classify::Query;
use crate::compile::layout::*;
use crate::compile::{rd_u16, rd_u32};
use crate::ct::{CtState, Direction};
use crate::hooks::{Family, Hook};
use crate::nat::{range_flag, NatAction, NatKind, NatRange};
use crate::packet::PacketFacts;
use crate::rules::{
    action_kind, CtMarkOp, Limit, LimitUnit, MarkOp, Policy, RejectKind, Table, MAX_JUMP_DEPTH,
};

/// What the evaluator needs from the kernel for one packet.
///
/// `counter` arguments are the slot the rule set's owner assigned to the
/// rule (see [`RuleRef::counter`](crate::compile::RuleRef::counter)), so
/// state keyed by them survives recompiles.
///
/// The conntrack methods describe one flow consistently: a packet has a
/// flow exactly when [`ct_direction`](Self::ct_direction) and
/// [`ct_mark`](Self::ct_mark) are `Some` (the evaluator asks
/// `ct_direction` to tell whether a negated `ct status` applies).
pub trait EvalEnv {
    /// A rule (or a built-in chain's policy) matched a packet of `bytes`
    /// bytes: add to its counters.
    fn count(&mut self, counter: u32, bytes: u32);
    /// Whether the token bucket of the rule in slot `counter` has a token
    /// for this packet (and take it).
    fn limit_allows(&mut self, counter: u32, limit: &Limit) -> bool;
    /// A random number, for `random`.
    fn random_u32(&mut self) -> u32;
    /// Counts a packet for the `nth` match of the rule in slot `counter`;
    /// true for every `n`-th one.
    fn nth_hit(&mut self, counter: u32, n: u32) -> bool;
    /// Whether the transport payload contains `needle`. The payload may be
    /// spread over several fragments of the packet buffer.
    fn payload_contains(&mut self, needle: &[u8]) -> bool;
    /// Name of the input interface, empty if none at this hook.
    fn iif_name(&self) -> &[u8];
    /// Name of the output interface, empty if none at this hook.
    fn oif_name(&self) -> &[u8];
    /// The packet's mark.
    fn mark(&self) -> u32;
    /// Sets the packet's mark.
    fn set_mark(&mut self, mark: u32);
    /// Owner uid of a locally generated packet's socket.
    fn uid(&self) -> Option<u32>;
    /// Owner gid of a locally generated packet's socket.
    fn gid(&self) -> Option<u32>;
    /// Logs the packet with a prefix at a syslog level (0 to 7).
    fn log(&mut self, prefix: &[u8], level: u8);
    /// The packet's conntrack state (UNTRACKED when exempted by notrack, INVALID when it could not be tracked).
    fn ct_state(&self) -> CtState;
    /// Direction of the packet within its flow; None without a flow.
    fn ct_direction(&self) -> Option<Direction>;
    /// Status bits (`ct::status`) of the packet's flow; 0 without a flow.
    fn ct_status(&self) -> u32;
    /// The flow's mark; None without a flow.
    fn ct_mark(&self) -> Option<u32>;
    /// Sets the flow's mark (no-op without a flow).
    fn set_ct_mark(&mut self, mark: u32);
    /// Exempts the packet from tracking (raw table).
    fn notrack(&mut self);
}

/// The outcome of a table for a packet.
///
/// `notrack` is not a verdict but a request to the kernel
/// ([`EvalEnv::notrack`]) on the way to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let the packet go on (`NF_ACCEPT`). In the nat table: no
    /// translation at this hook.
    Accept,
    /// Drop the packet (`NF_DROP`).
    Drop,
    /// Drop the packet and send the error (`NF_DROP` after sending it).
    Reject(RejectKind),
    /// A NAT action matched (nat table only): bind the packet's flow to a
    /// translation within the range and let the packet go on
    /// (`NF_ACCEPT`, unless no tuple can be had). The range's family is
    /// the packet's; for `masquerade` and `redirect` it has no
    /// [`MAP_IPS`](crate::nat::range_flag::MAP_IPS) and the kernel fills
    /// in the address with [`NatRange::resolve`](crate::nat::NatRange::resolve).
    Nat(NatAction),
}

/// Why a buffer is not a compiled table this evaluator can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Shorter than its header or than the length it states.
    Truncated,
    /// Does not start with the magic bytes.
    BadMagic,
    /// Another layout version.
    BadVersion(u8),
    /// An unknown table.
    BadTable,
}

/// A built-in or user chain of a compiled table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainInfo<'a> {
    /// Name.
    pub name: &'a str,
    /// Hook of a built-in chain.
    pub hook: Option<Hook>,
    /// Policy of a built-in chain.
    pub policy: Option<Policy>,
    /// Number of rules.
    pub rules: u32,
    /// Deepest nesting of jumps below this chain.
    pub depth: u32,
}

/// A compiled table whose header has been checked.
#[derive(Clone, Copy, Debug)]
pub struct CompiledTable<'a> {
    buf: &'a [u8],
    table: Table,
}

fn byte(buf: &[u8], at: usize) -> Option<u8> {
    buf.get(at).copied()
}

impl<'a> CompiledTable<'a> {
    /// Checks the header of `buf`. (Inlined: every evaluation checks it.)
    #[inline(always)]
    pub fn new(buf: &'a [u8]) -> Result<Self, LayoutError> {
        let hdr = buf.get(..HDR_LEN).ok_or(LayoutError::Truncated)?;
        if hdr.get(..4) != Some(&MAGIC[..]) {
            return Err(LayoutError::BadMagic);
        }
        let v = byte(hdr, 4).unwrap_or(0);
        if v != VERSION {
            return Err(LayoutError::BadVersion(v));
        }
        let table = byte(hdr, H_TABLE)
            .and_then(Table::from_u8)
            .ok_or(LayoutError::BadTable)?;
        let total = rd_u32(hdr, H_TOTAL).ok_or(LayoutError::Truncated)? as usize;
        let buf = buf.get(..total).ok_or(LayoutError::Truncated)?;
        Ok(Self { buf, table })
    }

    /// The table.
    pub const fn table(&self) -> Table {
        self.table
    }

    /// The compiled bytes.
    pub const fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Number of chains.
    #[inline]
    pub fn n_chains(&self) -> usize {
        rd_u32(self.buf, H_CHAINS).unwrap_or(0) as usize
    }

    /// Number of rules.
    pub fn n_rules(&self) -> usize {
        rd_u32(self.buf, H_RULES).unwrap_or(0) as usize
    }

    /// The `i`-th chain, in the order the compiler was given them.
    pub fn chain(&self, i: usize) -> Option<ChainInfo<'a>> {
        if i >= self.n_chains() {
            return None;
        }
        let e = HDR_LEN.checked_add(i.checked_mul(CHAIN_LEN)?)?;
        let entry = self.buf.get(e..e.checked_add(CHAIN_LEN)?)?;
        let name = entry.get(C_NAME..C_NAME + 32)?;
        let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        let name = core::str::from_utf8(name.get(..len)?).ok()?;
        Some(ChainInfo {
            name,
            hook: byte(entry, C_HOOK).and_then(Hook::from_u8),
            policy: byte(entry, C_POLICY).and_then(Policy::from_u8),
            rules: rd_u32(entry, C_RULES)?,
            depth: rd_u32(entry, C_DEPTH)?,
        })
    }

    /// For a hook whose built-in chain has no rules and policy accept: the
    /// chain's index and its policy counter, so that the kernel can count
    /// the packet and accept it without reading its headers. `None` when
    /// the chain has rules, drops, or the table has no chain there.
    pub fn empty_accept(&self, hook: Hook) -> Option<(u32, u32)> {
        let h = hook as usize;
        if rd_u32(self.buf, H_ENTRY + 4 * h)? == 0 {
            return None;
        }
        let chain = rd_u32(self.buf, H_ENTRY_CHAIN + 4 * h)?;
        let info = self.chain(chain as usize)?;
        if info.rules != 0 || info.policy != Some(Policy::Accept) {
            return None;
        }
        let end = rd_u32(self.buf, H_POLICY + 4 * h)? as usize;
        let rec = self.buf.get(end..)?;
        let accept = byte(rec, R_KIND)? == KIND_END && byte(rec, R_ACTION)? == action_kind::ACCEPT;
        accept.then_some((chain, rd_u32(rec, R_COUNTER)?))
    }

    /// For a hook whose built-in chain starts with a rule that matches on
    /// the packet's conntrack state alone and accepts (`ct state
    /// established,related accept`, the first rule of most stateful rule
    /// sets): that rule, so that the kernel can count and accept a packet
    /// it matches without reading the packet's headers. `None` for any
    /// other first rule (another match, family or protocol, another
    /// action), an empty chain, or no chain there.
    pub fn state_accept(&self, hook: Hook) -> Option<StateAccept> {
        let entry = rd_u32(self.buf, H_ENTRY + 4 * hook as usize)? as usize;
        if entry == 0 {
            return None;
        }
        let rest = self.buf.get(entry..)?;
        let len = rd_u32(rest, R_LEN)? as usize;
        if len < REC_HDR {
            return None;
        }
        let rec = rest.get(..len)?;
        let plain = byte(rec, R_KIND)? == KIND_RULE
            && byte(rec, R_ACTION)? == action_kind::ACCEPT
            && byte(rec, R_FAMILY)? == 0
            && byte(rec, R_PROTO)? == 0
            && rd_u32(rec, R_MATCHES)? == M_CT_STATE;
        if !plain {
            return None;
        }
        let s = Sections { rec, p: REC_HDR };
        Some(StateAccept {
            states: CtState(s.u8_at(0)?),
            negated: s.u8_at(1)? != 0,
            counter: rd_u32(rec, R_COUNTER)?,
        })
    }

    /// Whether the table decides nothing: it has no rules, and every hook
    /// it is entered from has an empty chain with policy accept. (The
    /// kernel skips a nat table in that state.)
    pub fn accepts_all(&self) -> bool {
        self.n_rules() == 0
            && Hook::ALL.into_iter().all(|hook| {
                rd_u32(self.buf, H_ENTRY + 4 * hook as usize) == Some(0)
                    || self.empty_accept(hook).is_some()
            })
    }

    /// Whether a rule of the table needs packets tracked
    /// ([`needs_conntrack`](crate::compile::needs_conntrack)).
    pub fn needs_conntrack(&self) -> bool {
        rd_u32(self.buf, H_FLAGS).is_some_and(|f| f & F_CONNTRACK != 0)
    }

    /// The hooks chain `i` can be reached from (bit `1 << hook`).
    pub fn chain_hooks(&self, i: usize) -> Option<u8> {
        let e = self.entry(u32::try_from(i).ok()?)?;
        byte(self.buf, e.checked_add(C_HOOKS)?)
    }

    /// The handles and action kinds of chain `i`'s rules, in order.
    pub fn chain_actions(&self, i: usize) -> impl Iterator<Item = (u64, u8)> + 'a {
        let buf = self.buf;
        let mut at = u32::try_from(i)
            .ok()
            .and_then(|i| self.chain_start(i))
            .unwrap_or(usize::MAX);
        core::iter::from_fn(move || {
            let rest = buf.get(at..)?;
            let len = rd_u32(rest, R_LEN)? as usize;
            if len < REC_HDR || byte(rest, R_KIND)? != KIND_RULE {
                return None;
            }
            let lo = u64::from(rd_u32(rest, R_HANDLE)?);
            let hi = u64::from(rd_u32(rest, R_HANDLE.checked_add(4)?)?);
            at = at.checked_add(len)?;
            Some((lo | (hi << 32), byte(rest, R_ACTION)?))
        })
    }

    /// Evaluates a packet that reached `hook`: the verdict of the table's
    /// built-in chain there (accept if the table has none).
    pub fn eval<E: EvalEnv + ?Sized>(
        &self,
        hook: Hook,
        facts: &PacketFacts,
        env: &mut E,
    ) -> Verdict {
        self.run(hook, facts, env, None, None)
            .unwrap_or(Verdict::Drop)
    }

    /// [`eval`](Self::eval) given `first`, the table's
    /// [`state_accept`](Self::state_accept) rule at `hook` as the caller
    /// keeps it (`None` if it has none): that rule is decided on
    /// [`EvalEnv::ct_state`] alone (a match counts and accepts) and the
    /// walk starts at the rule after it, without the evaluator's work for
    /// the first rule (the classification index, the match sections). The
    /// verdict and the counts are [`eval`](Self::eval)'s; `first` must be
    /// this table's.
    pub fn eval_after<E: EvalEnv + ?Sized>(
        &self,
        hook: Hook,
        facts: &PacketFacts,
        env: &mut E,
        first: Option<&StateAccept>,
    ) -> Verdict {
        self.run(hook, facts, env, None, first)
            .unwrap_or(Verdict::Drop)
    }

    /// [`eval`](Self::eval) of the table with `tails`: rules appended to
    /// its chains since it was compiled, tried after a chain's own rules
    /// and before its end (policy or return).
    /// `first` as for [`eval_after`](Self::eval_after).
    pub fn eval_with_tails<E: EvalEnv + ?Sized>(
        &self,
        hook: Hook,
        facts: &PacketFacts,
        env: &mut E,
        tails: &Tails<'_>,
        first: Option<&StateAccept>,
    ) -> Verdict {
        if tails.table.table != self.table {
            return Verdict::Drop;
        }
        self.run(hook, facts, env, Some(tails), first)
            .unwrap_or(Verdict::Drop)
    }

    /// Offset of chain `i`'s entry in the chain table.
    #[inline(always)]
    fn entry(&self, i: u32) -> Option<usize> {
        if i as usize >= self.n_chains() {
            return None;
        }
        HDR_LEN.checked_add((i as usize).checked_mul(CHAIN_LEN)?)
    }

    /// Resolves the classification index of chain `i` for `facts` into
    /// `q`: `Some(false)` for a chain walked linearly, `None` for a
    /// corrupt buffer.
    #[inline(always)]
    fn query(&self, i: u32, facts: &PacketFacts, q: &mut Query) -> Option<bool> {
        let e = self.entry(i)?;
        let at = rd_u32(self.buf, e.checked_add(C_INDEX)?)? as usize;
        if at == 0 {
            return Some(false);
        }
        q.resolve(self.buf, at, facts)?;
        Some(true)
    }

    /// The first record of chain `i`.
    fn chain_start(&self, i: u32) -> Option<usize> {
        let e = self.entry(i)?;
        Some(rd_u32(self.buf, e.checked_add(C_START)?)? as usize)
    }

    /// [`eval`](Self::eval), with `None` for a buffer that does not make
    /// sense. Inlined into its two callers (with `rule_matches` inlined
    /// into it), so that the one without tails (nearly every evaluation)
    /// drops their handling and the spills around it: on the host, a chain
    /// whose first rule (`ct state established,related accept`) matches
    /// took 309 instructions and takes 223; its second (address and port)
    /// 522 and 405.
    #[inline(always)]
    fn run<E: EvalEnv + ?Sized>(
        &self,
        hook: Hook,
        facts: &PacketFacts,
        env: &mut E,
        tails: Option<&Tails<'_>>,
        first: Option<&StateAccept>,
    ) -> Option<Verdict> {
        let h = hook as usize;
        let entry = rd_u32(self.buf, H_ENTRY + 4 * h)? as usize;
        if entry == 0 {
            return Some(Verdict::Accept);
        }
        // A chain with a flat form and no tail: scanned as such.
        if tails.is_none() {
            let flat = rd_u32(self.buf, H_FLAT + 4 * h)? as usize;
            if flat != 0 {
                return self.run_flat(flat, facts, env, first);
            }
        }
        // The leading `ct state ... accept`, decided on the state alone;
        // `first` is the rule at `entry` (see `eval_after`).
        let (mut pos, mut idx) = (entry, 0u32);
        if let Some(r) = first {
            if r.matches(env.ct_state()) {
                env.count(r.counter, facts.total_len);
                return Some(Verdict::Accept);
            }
            pos = pos.checked_add(rd_u32(self.buf.get(entry..)?, R_LEN)? as usize)?;
            idx = 1;
        }
        let policy_at = rd_u32(self.buf, H_POLICY + 4 * h)? as usize;
        let mut max_steps = rd_u32(self.buf, H_MAX_STEPS)?;
        if let Some(t) = tails {
            // Every record of the main table may be followed by a whole
            // tail (a chain's end, reached again after each return).
            let tail_len = u32::try_from(t.table.n_rules().saturating_add(t.table.n_chains()))
                .unwrap_or(u32::MAX);
            max_steps = max_steps.saturating_mul(tail_len.saturating_add(2));
        }
        // Where to come back after a jump: record, chain, rule index. Made
        // at the first jump: most packets take none, and zeroing the frames
        // for each of them cost a memset call per evaluation.
        let mut stack: Option<[Frame; MAX_JUMP_DEPTH]> = None;
        let mut sp = 0usize;
        // The chain being walked and the index of the rule at `pos` in it
        // ([`NO_RULE`] at the policy record).
        let mut chain = rd_u32(self.buf, H_ENTRY_CHAIN + 4 * h)?;
        // Walking the tail of `chain` (records in `tails`), and the main
        // record to come back to at its end (`chain`'s end record).
        let mut tail: Option<(u32, usize)> = None;
        // Set when coming back from a tail: the end record at `pos` applies.
        let mut tail_done = false;
        // The classification index of `chain` (or of its tail) resolved
        // for this packet, if it has one.
        let mut q_chain = NO_CHAIN;
        let mut q_tail = false;
        // Whether `chain` (or its tail) has an index, resolved in `query`.
        let mut indexed = false;
        // Its lists for a query with many candidates (a few hundred bytes,
        // on the stack all the same) are initialised by the first such
        // query only.
        let mut query = Query::blank();
        let mut steps = 0u32;
        loop {
            // Bounded by the compiler's worst case, so that even a corrupt
            // buffer whose jumps form a loop ends (in a drop).
            if steps >= max_steps {
                return None;
            }
            steps += 1;
            let (buf, c) = match (tail, tails) {
                (Some((t, _)), Some(ts)) => (ts.table.buf, t),
                _ => (self.buf, chain),
            };
            if idx != NO_RULE {
                if q_chain != c || q_tail != tail.is_some() {
                    indexed = match (tail, tails) {
                        (Some(_), Some(ts)) => ts.table.query(c, facts, &mut query)?,
                        _ => self.query(c, facts, &mut query)?,
                    };
                    q_chain = c;
                    q_tail = tail.is_some();
                }
                if indexed {
                    let q = &query;
                    if idx < q.n() {
                        // Skip to the next rule that can match.
                        idx = q.next(buf, idx);
                        pos = if idx < q.n() {
                            q.rule_offset(buf, idx)?
                        } else {
                            q.end()
                        };
                    }
                }
            }
            let rest = buf.get(pos..)?;
            let len = rd_u32(rest, R_LEN)? as usize;
            if len < REC_HDR {
                return None;
            }
            let rec = rest.get(..len)?;
            let action = byte(rec, R_ACTION)?;
            let counter = rd_u32(rec, R_COUNTER)?;
            match byte(rec, R_KIND)? {
                KIND_END => {
                    if let Some((_, back)) = tail.take() {
                        // The tail is done: the main chain's end applies.
                        (pos, idx, tail_done) = (back, NO_RULE, true);
                        continue;
                    }
                    if !core::mem::take(&mut tail_done) {
                        if let Some(t) = tails.and_then(|ts| ts.of(chain)) {
                            let start = tails?.table.chain_start(t)?;
                            tail = Some((t, pos));
                            (pos, idx) = (start, 0);
                            continue;
                        }
                    }
                    match action {
                        action_kind::ACCEPT => {
                            env.count(counter, facts.total_len);
                            return Some(Verdict::Accept);
                        }
                        action_kind::DROP => {
                            env.count(counter, facts.total_len);
                            return Some(Verdict::Drop);
                        }
                        action_kind::RETURN => {
                            (pos, chain, idx) =
                                pop(&stack, &mut sp).unwrap_or((policy_at, chain, NO_RULE));
                            // Straight to the policy: the entry chain's tail was walked.
                            tail_done = idx == NO_RULE;
                            continue;
                        }
                        _ => return None,
                    }
                }
                KIND_RULE => {}
                _ => return None,
            }
            let next = pos.checked_add(len)?;
            let next_idx = idx.saturating_add(1);
            if !rule_matches(rec, facts, env)? {
                pos = next;
                idx = next_idx;
                continue;
            }
            env.count(counter, facts.total_len);
            let arg = rd_u32(rec, R_ARG)?;
            match action {
                action_kind::ACCEPT => return Some(Verdict::Accept),
                action_kind::DROP => return Some(Verdict::Drop),
                action_kind::REJECT => {
                    return RejectKind::from_u8(u8::try_from(arg).ok()?).map(Verdict::Reject)
                }
                action_kind::RETURN => {
                    tail = None;
                    (pos, chain, idx) = pop(&stack, &mut sp).unwrap_or((policy_at, chain, NO_RULE));
                    tail_done = idx == NO_RULE;
                }
                // A tail has no jumps: its rules were checked one by one
                // against the compiled table, which knows no new edges.
                action_kind::JUMP if tail.is_none() => {
                    let slot = stack
                        .get_or_insert([(0, 0, 0); MAX_JUMP_DEPTH])
                        .get_mut(sp)?;
                    *slot = (next, chain, next_idx);
                    sp += 1;
                    pos = arg as usize;
                    chain = rd_u32(rec, R_ARG2)?;
                    idx = 0;
                }
                action_kind::GOTO if tail.is_none() => {
                    pos = arg as usize;
                    chain = rd_u32(rec, R_ARG2)?;
                    idx = 0;
                }
                action_kind::LOG => {
                    let m = rd_u32(rec, R_MATCHES)?;
                    let prefix = if m & M_LOG_PREFIX != 0 {
                        log_prefix(rec, m)?
                    } else {
                        &[]
                    };
                    env.log(prefix, u8::try_from(arg).ok()?);
                    (pos, idx) = (next, next_idx);
                }
                action_kind::MARK => {
                    let op = MarkOp::from_u8(u8::try_from(rd_u32(rec, R_ARG2)?).ok()?)?;
                    let new = op.apply(env.mark(), arg);
                    env.set_mark(new);
                    (pos, idx) = (next, next_idx);
                }
                action_kind::CT_MARK => {
                    let op = CtMarkOp::from_u8(u8::try_from(rd_u32(rec, R_ARG2)?).ok()?)?;
                    let mask = arg3(rec)?;
                    if let Some(ct) = env.ct_mark() {
                        let new = op.apply(ct, env.mark(), arg, mask);
                        if op.writes_packet_mark() {
                            env.set_mark(new);
                        } else {
                            env.set_ct_mark(new);
                        }
                    }
                    (pos, idx) = (next, next_idx);
                }
                action_kind::NOTRACK => {
                    env.notrack();
                    (pos, idx) = (next, next_idx);
                }
                action_kind::SNAT..=action_kind::REDIRECT => {
                    let kind = NatKind::from_action_kind(action)?;
                    return nat_range(rec, facts.family)
                        .map(|range| Verdict::Nat(NatAction { kind, range }));
                }
                _ => return None,
            }
        }
    }
}

impl CompiledTable<'_> {
    /// Whether the built-in chain at `hook` has a flat form, which
    /// evaluations without tails scan instead of walking its records (see
    /// [`crate::compile`]).
    pub fn is_flat(&self, hook: Hook) -> bool {
        rd_u32(self.buf, H_FLAT + 4 * hook as usize).is_some_and(|at| at != 0)
    }

    /// [`run`](Self::run) over the flat form at `at` of the hook's
    /// built-in chain: the first entry that matches decides, else the
    /// policy; the same verdict and counts as walking its records.
    #[inline(always)]
    fn run_flat<E: EvalEnv + ?Sized>(
        &self,
        at: usize,
        facts: &PacketFacts,
        env: &mut E,
        first: Option<&StateAccept>,
    ) -> Option<Verdict> {
        let block = self.buf.get(at..)?;
        let n = rd_u32(block, 0)? as usize;
        let entries = block.get(FLAT_HDR..FLAT_HDR.checked_add(n.checked_mul(FLAT_LEN)?)?)?;
        let mut skip = 0;
        if let Some(r) = first {
            if r.matches(env.ct_state()) {
                env.count(r.counter, facts.total_len);
                return Some(Verdict::Accept);
            }
            skip = 1;
        }
        let family = facts.family as u8;
        let src = u128::from_ne_bytes(facts.src);
        let dst = u128::from_ne_bytes(facts.dst);
        for e in entries.chunks_exact(FLAT_LEN).skip(skip) {
            let e: &[u8; FLAT_LEN] = e.try_into().ok()?;
            if !flat_matches(e, family, facts.proto, (src, dst), facts, env) {
                continue;
            }
            env.count(u32::from_le_bytes(field(e, FL_COUNTER)), facts.total_len);
            return match e[FL_ACTION] {
                action_kind::ACCEPT => Some(Verdict::Accept),
                action_kind::DROP => Some(Verdict::Drop),
                action_kind::REJECT => RejectKind::from_u8(e[FL_REJECT]).map(Verdict::Reject),
                _ => None,
            };
        }
        let counter = rd_u32(block, 8)?;
        env.count(counter, facts.total_len);
        match u8::try_from(rd_u32(block, 4)?).ok()? {
            action_kind::ACCEPT => Some(Verdict::Accept),
            action_kind::DROP => Some(Verdict::Drop),
            _ => None,
        }
    }
}

/// `N` bytes of a flat entry from `at` (within it: offsets are constants).
#[inline(always)]
fn field<const N: usize>(e: &[u8; FLAT_LEN], at: usize) -> [u8; N] {
    let mut v = [0u8; N];
    if let Some(s) = e.get(at..at + N) {
        v.copy_from_slice(s);
    }
    v
}

/// Whether a flat entry matches: [`rule_matches`] of its record, in the
/// same order (family, protocol, addresses, ports, ct state).
#[inline(always)]
fn flat_matches<E: EvalEnv + ?Sized>(
    e: &[u8; FLAT_LEN],
    family: u8,
    proto: u8,
    (src, dst): (u128, u128),
    facts: &PacketFacts,
    env: &mut E,
) -> bool {
    let (fam, p) = (e[FL_FAMILY], e[FL_PROTO]);
    if (fam != 0 && fam != family) || (p != 0 && p != proto) {
        return false;
    }
    let m = u32::from_le_bytes(field(e, FL_MATCHES));
    for (i, (addr, bit, neg)) in [(src, M_SADDR, M_SADDR_NEG), (dst, M_DADDR, M_DADDR_NEG)]
        .into_iter()
        .enumerate()
    {
        if m & bit != 0 {
            let net = u128::from_ne_bytes(field(e, FL_ADDRS + 32 * i));
            let mask = u128::from_ne_bytes(field(e, FL_ADDRS + 32 * i + 16));
            if (addr & mask == net) == (m & neg != 0) {
                return false;
            }
        }
    }
    if m & (M_SPORT | M_DPORT) != 0 {
        let Some((sport, dport)) = facts.ports() else {
            return false;
        };
        for (i, (port, bit, neg)) in [(sport, M_SPORT, M_SPORT_NEG), (dport, M_DPORT, M_DPORT_NEG)]
            .into_iter()
            .enumerate()
        {
            if m & bit != 0 {
                let [a, b, c, d] = field(e, FL_PORTS + 4 * i);
                let (lo, hi) = (u16::from_le_bytes([a, b]), u16::from_le_bytes([c, d]));
                if (lo <= port && port <= hi) == (m & neg != 0) {
                    return false;
                }
            }
        }
    }
    if m & M_CT_STATE != 0
        && env.ct_state().intersects(CtState(e[FL_CT_STATES])) == (e[FL_CT_NEG] != 0)
    {
        return false;
    }
    true
}

/// A built-in chain's first rule when it is `ct state ... accept` and
/// nothing more ([`CompiledTable::state_accept`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateAccept {
    /// The states it names.
    pub states: CtState,
    /// Whether it is negated (`ct state != ...`).
    pub negated: bool,
    /// Its counter slot.
    pub counter: u32,
}

impl StateAccept {
    /// Whether a packet in conntrack state `state` matches the rule: the
    /// chain's verdict on it is then accept, with the rule's counter
    /// counting the packet's stated length, as [`eval`] decides.
    #[inline(always)]
    pub fn matches(&self, state: CtState) -> bool {
        state.intersects(self.states) != self.negated
    }
}

/// Which chain of a [`Tails`] table holds the tail of which chain of the
/// compiled table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TailLink {
    /// The chain's index in the compiled table.
    pub chain: u32,
    /// The index of the chain holding its tail in the tails' table.
    pub tail: u32,
}

/// Rules appended to chains of a compiled table after it was compiled,
/// compiled on their own by [`compile::fill`](crate::compile::fill) and checked by
/// [`compile::check_tails`](crate::compile::check_tails),
/// so that appending a rule costs the size of the tail, not of the table.
#[derive(Clone, Copy, Debug)]
pub struct Tails<'a> {
    table: CompiledTable<'a>,
    links: &'a [TailLink],
}

impl<'a> Tails<'a> {
    /// The tails compiled into `buf`, linked to the compiled table's chains
    /// by `links` (sorted by [`TailLink::chain`]).
    pub fn new(buf: &'a [u8], links: &'a [TailLink]) -> Result<Self, LayoutError> {
        Ok(Self {
            table: CompiledTable::new(buf)?,
            links,
        })
    }

    /// The compiled tails.
    pub const fn table(&self) -> &CompiledTable<'a> {
        &self.table
    }

    /// The tail chain of chain `chain`, if it has one.
    fn of(&self, chain: u32) -> Option<u32> {
        let i = self.links.binary_search_by_key(&chain, |l| l.chain).ok()?;
        let t = self.links.get(i)?.tail;
        ((t as usize) < self.table.n_chains()).then_some(t)
    }
}

/// The rule index at a chain's policy record: no index lookups there.
const NO_RULE: u32 = u32::MAX;
/// No chain's index resolved yet.
const NO_CHAIN: u32 = u32::MAX;

type Frame = (usize, u32, u32);

fn pop(stack: &Option<[Frame; MAX_JUMP_DEPTH]>, sp: &mut usize) -> Option<Frame> {
    let i = sp.checked_sub(1)?;
    let v = stack.as_ref()?.get(i).copied()?;
    *sp = i;
    Some(v)
}

/// Evaluates a packet that reached `hook` against a compiled table; a
/// buffer that is not one drops the packet.
pub fn eval<E: EvalEnv + ?Sized>(
    compiled: &[u8],
    hook: Hook,
    facts: &PacketFacts,
    env: &mut E,
) -> Verdict {
    match CompiledTable::new(compiled) {
        Ok(t) => t.eval(hook, facts, env),
        Err(_) => Verdict::Drop,
    }
}

/// Reads the sections of a record in order.
struct Sections<'r> {
    rec: &'r [u8],
    p: usize,
}

impl<'r> Sections<'r> {
    fn u8_at(&self, off: usize) -> Option<u8> {
        byte(self.rec, self.p.checked_add(off)?)
    }
    fn u32(&mut self) -> Option<u32> {
        let v = rd_u32(self.rec, self.p)?;
        self.p = self.p.checked_add(4)?;
        Some(v)
    }
    fn take(&mut self, n: usize) -> Option<&'r [u8]> {
        let end = self.p.checked_add(n)?;
        let s = self.rec.get(self.p..end)?;
        self.p = end;
        Some(s)
    }
    /// A length-prefixed byte string (`u16` length, `u16` 0, padded bytes).
    fn text(&mut self) -> Option<&'r [u8]> {
        let n = usize::from(rd_u16(self.rec, self.p)?);
        self.p = self.p.checked_add(4)?;
        let s = self.rec.get(self.p..self.p.checked_add(n)?)?;
        self.p = self.p.checked_add(n.checked_add(3)? & !3)?;
        Some(s)
    }
}

/// Whether an address section matches; `None` if it is malformed.
#[inline(always)]
fn addr_matches(
    s: &mut Sections<'_>,
    family: Family,
    addr: &[u8; 16],
    negated: bool,
) -> Option<bool> {
    let n4 = usize::from(rd_u16(s.rec, s.p)?);
    let n6 = usize::from(rd_u16(s.rec, s.p.checked_add(2)?)?);
    s.p = s.p.checked_add(4)?;
    let v4 = s.take(n4.checked_mul(8)?)?;
    let v6 = s.take(n6.checked_mul(32)?)?;
    // Each entry is the network, then the mask, compared as one word (a
    // byte loop per entry showed in profiles: every address match of a
    // walked rule runs this).
    let hit = match family {
        Family::Ipv4 => {
            let [a0, a1, a2, a3, ..] = *addr;
            let a = u32::from_ne_bytes([a0, a1, a2, a3]);
            // One entry (nearly every rule): no loop.
            if let Ok(&[n0, n1, n2, n3, m0, m1, m2, m3]) = <&[u8; 8]>::try_from(v4) {
                let (net, mask) = ([n0, n1, n2, n3], [m0, m1, m2, m3]);
                return Some((a & u32::from_ne_bytes(mask) == u32::from_ne_bytes(net)) != negated);
            }
            v4.chunks_exact(8).any(|e| match split_pair::<4>(e) {
                Some((net, mask)) => a & u32::from_ne_bytes(mask) == u32::from_ne_bytes(net),
                None => false,
            })
        }
        Family::Ipv6 => {
            let a = u128::from_ne_bytes(*addr);
            v6.chunks_exact(32).any(|e| match split_pair::<16>(e) {
                Some((net, mask)) => a & u128::from_ne_bytes(mask) == u128::from_ne_bytes(net),
                None => false,
            })
        }
    };
    Some(hit != negated)
}

/// The two `N`-byte halves of an address entry (network, mask).
#[inline(always)]
fn split_pair<const N: usize>(entry: &[u8]) -> Option<([u8; N], [u8; N])> {
    let (net, rest) = entry.split_first_chunk::<N>()?;
    Some((*net, *rest.first_chunk::<N>()?))
}

/// Whether a port section matches `port`.
#[inline(always)]
fn ports_match(s: &mut Sections<'_>, port: u16, negated: bool) -> Option<bool> {
    let n = usize::from(rd_u16(s.rec, s.p)?);
    s.p = s.p.checked_add(4)?;
    let ranges = s.take(n.checked_mul(4)?)?;
    // One range (nearly every rule): no loop.
    if let Ok(&[a, b, c, d]) = <&[u8; 4]>::try_from(ranges) {
        let (lo, hi) = (u16::from_le_bytes([a, b]), u16::from_le_bytes([c, d]));
        return Some((lo <= port && port <= hi) != negated);
    }
    let hit = ranges.chunks_exact(4).any(|r| match r {
        [a, b, c, d] => {
            let lo = u16::from_le_bytes([*a, *b]);
            let hi = u16::from_le_bytes([*c, *d]);
            lo <= port && port <= hi
        }
        _ => false,
    });
    Some(hit != negated)
}

fn iface_matches(s: &mut Sections<'_>, ifname: &[u8], negated: bool, prefix: bool) -> Option<bool> {
    let n = usize::from(s.u8_at(0)?);
    let sec = s.take(IFACE_LEN)?;
    let name = sec.get(4..4usize.checked_add(n)?)?;
    let hit = if prefix {
        ifname.starts_with(name)
    } else {
        ifname == name
    };
    Some(hit != negated)
}

fn log_prefix(rec: &[u8], m: u32) -> Option<&[u8]> {
    let mut s = Sections { rec, p: REC_HDR };
    skip_matches(&mut s, m)?;
    s.text()
}

/// The third action argument of a record (the mask of `ct mark`).
fn arg3(rec: &[u8]) -> Option<u32> {
    let m = rd_u32(rec, R_MATCHES)?;
    if m & M_ARG3 == 0 {
        return None;
    }
    let mut s = Sections { rec, p: REC_HDR };
    skip_matches(&mut s, m)?;
    if m & M_LOG_PREFIX != 0 {
        s.text()?;
    }
    s.u32()
}

/// The range of a NAT record, for a packet of `family`; `None` if the
/// record is malformed or its addresses are of another family (which the
/// compiler never writes: such a rule is restricted to its addresses'
/// family).
fn nat_range(rec: &[u8], family: Family) -> Option<NatRange> {
    let m = rd_u32(rec, R_MATCHES)?;
    if m & M_NAT == 0 {
        return None;
    }
    let mut s = Sections { rec, p: REC_HDR };
    skip_matches(&mut s, m)?;
    if m & M_LOG_PREFIX != 0 {
        s.text()?;
    }
    if m & M_ARG3 != 0 {
        s.u32()?;
    }
    let sec = s.take(NAT_LEN)?;
    let flags = byte(sec, 0)?;
    if flags & range_flag::MAP_IPS != 0 && byte(sec, 1)? != family as u8 {
        return None;
    }
    let mut min_addr = [0u8; 16];
    let mut max_addr = [0u8; 16];
    for (d, s) in min_addr.iter_mut().zip(sec.get(8..24)?) {
        *d = *s;
    }
    for (d, s) in max_addr.iter_mut().zip(sec.get(24..40)?) {
        *d = *s;
    }
    Some(NatRange {
        family,
        min_addr,
        max_addr,
        min_port: rd_u16(sec, 4)?,
        max_port: rd_u16(sec, 6)?,
        flags,
    })
}

/// Moves past every match section of a record.
fn skip_matches(s: &mut Sections<'_>, m: u32) -> Option<()> {
    for bit in [M_SADDR, M_DADDR] {
        if m & bit != 0 {
            let n4 = usize::from(rd_u16(s.rec, s.p)?);
            let n6 = usize::from(rd_u16(s.rec, s.p.checked_add(2)?)?);
            s.take(4 + n4.checked_mul(8)? + n6.checked_mul(32)?)?;
        }
    }
    for bit in [M_SPORT, M_DPORT] {
        if m & bit != 0 {
            let n = usize::from(rd_u16(s.rec, s.p)?);
            s.take(4 + n.checked_mul(4)?)?;
        }
    }
    let fixed = [
        (M_TCP_FLAGS, 4),
        (M_ICMP, 4),
        (M_IIF, IFACE_LEN),
        (M_OIF, IFACE_LEN),
        (M_MARK, 8),
        (M_CT_STATE, CT_STATE_LEN),
        (M_CT_STATUS, CT_STATUS_LEN),
        (M_CT_DIRECTION, CT_DIRECTION_LEN),
        (M_CT_MARK, CT_MARK_LEN),
        (M_UID, 4),
        (M_GID, 4),
    ];
    for (bit, n) in fixed {
        if m & bit != 0 {
            s.take(n)?;
        }
    }
    if m & M_PAYLOAD != 0 {
        s.text()?;
    }
    for (bit, n) in [(M_NTH, 4), (M_RANDOM, 4), (M_LIMIT, LIMIT_LEN)] {
        if m & bit != 0 {
            s.take(n)?;
        }
    }
    Some(())
}

/// Whether a rule record matches; `None` if it is malformed. (Inlined:
/// see [`CompiledTable::run`].)
#[inline(always)]
fn rule_matches<E: EvalEnv + ?Sized>(rec: &[u8], facts: &PacketFacts, env: &mut E) -> Option<bool> {
    let family = byte(rec, R_FAMILY)?;
    if family != 0 && family != facts.family as u8 {
        return Some(false);
    }
    let proto = byte(rec, R_PROTO)?;
    if proto != 0 && proto != facts.proto {
        return Some(false);
    }
    let m = rd_u32(rec, R_MATCHES)?;
    let counter = rd_u32(rec, R_COUNTER)?;
    let mut s = Sections { rec, p: REC_HDR };
    // The matches in the order of their sections, in four groups, each
    // tested once: most rules use one or two groups, and a rule with a
    // single match (`ct state established,related`) skips the tests of
    // the others.
    // Packet fields.
    if m & (M_SADDR | M_DADDR | M_SPORT | M_DPORT | M_TCP_FLAGS | M_ICMP) != 0 {
        if m & M_SADDR != 0
            && !addr_matches(&mut s, facts.family, &facts.src, m & M_SADDR_NEG != 0)?
        {
            return Some(false);
        }
        if m & M_DADDR != 0
            && !addr_matches(&mut s, facts.family, &facts.dst, m & M_DADDR_NEG != 0)?
        {
            return Some(false);
        }
        if m & (M_SPORT | M_DPORT) != 0 {
            let Some((sport, dport)) = facts.ports() else {
                return Some(false);
            };
            if m & M_SPORT != 0 && !ports_match(&mut s, sport, m & M_SPORT_NEG != 0)? {
                return Some(false);
            }
            if m & M_DPORT != 0 && !ports_match(&mut s, dport, m & M_DPORT_NEG != 0)? {
                return Some(false);
            }
        }
        if m & M_TCP_FLAGS != 0 {
            let Some(flags) = facts.tcp_flags() else {
                return Some(false);
            };
            let (mask, set) = (s.u8_at(0)?, s.u8_at(1)?);
            s.take(4)?;
            if flags & mask != set {
                return Some(false);
            }
        }
        if m & M_ICMP != 0 {
            let Some((ty, code)) = facts.icmp() else {
                return Some(false);
            };
            let (t, c, has_code) = (s.u8_at(0)?, s.u8_at(1)?, s.u8_at(2)?);
            s.take(4)?;
            if t != ty || (has_code != 0 && c != code) {
                return Some(false);
            }
        }
    }
    // Devices.
    if m & (M_IIF | M_OIF) != 0 {
        if m & M_IIF != 0
            && !iface_matches(
                &mut s,
                env.iif_name(),
                m & M_IIF_NEG != 0,
                m & M_IIF_PREFIX != 0,
            )?
        {
            return Some(false);
        }
        if m & M_OIF != 0
            && !iface_matches(
                &mut s,
                env.oif_name(),
                m & M_OIF_NEG != 0,
                m & M_OIF_PREFIX != 0,
            )?
        {
            return Some(false);
        }
    }
    // Marks and conntrack.
    if m & (M_MARK | M_CT_STATE | M_CT_STATUS | M_CT_DIRECTION | M_CT_MARK) != 0 {
        if m & M_MARK != 0 {
            let value = s.u32()?;
            let mask = s.u32()?;
            if (env.mark() & mask == value) == (m & M_MARK_NEG != 0) {
                return Some(false);
            }
        }
        if m & M_CT_STATE != 0 {
            let (states, negated) = (s.u8_at(0)?, s.u8_at(1)? != 0);
            s.take(CT_STATE_LEN)?;
            if env.ct_state().intersects(CtState(states)) == negated {
                return Some(false);
            }
        }
        if m & M_CT_STATUS != 0 {
            let bits = s.u32()?;
            let negated = s.u8_at(0)? != 0;
            s.take(CT_STATUS_LEN - 4)?;
            let hit = env.ct_status() & bits != 0;
            // Without a flow the status is 0: a plain match fails by itself,
            // a negated one must fail too.
            if hit == negated || (negated && env.ct_direction().is_none()) {
                return Some(false);
            }
        }
        if m & M_CT_DIRECTION != 0 {
            let want = s.u8_at(0)?;
            s.take(CT_DIRECTION_LEN)?;
            if env.ct_direction().map(|d| d as u8) != Some(want) {
                return Some(false);
            }
        }
        if m & M_CT_MARK != 0 {
            let value = s.u32()?;
            let mask = s.u32()?;
            let negated = s.u8_at(0)? != 0;
            s.take(CT_MARK_LEN - 8)?;
            match env.ct_mark() {
                Some(ct) if (ct & mask == value) != negated => {}
                _ => return Some(false),
            }
        }
    }
    // Socket owner, payload and the stateful matches.
    if m & (M_UID | M_GID | M_PAYLOAD | M_NTH | M_RANDOM | M_LIMIT) != 0 {
        if m & M_UID != 0 {
            let uid = s.u32()?;
            if env.uid() != Some(uid) {
                return Some(false);
            }
        }
        if m & M_GID != 0 {
            let gid = s.u32()?;
            if env.gid() != Some(gid) {
                return Some(false);
            }
        }
        if m & M_PAYLOAD != 0 {
            let needle = s.text()?;
            // The compiler never writes an empty one; spare the kernel's
            // search from a corrupt buffer's.
            if needle.is_empty() {
                return None;
            }
            if !env.payload_contains(needle) {
                return Some(false);
            }
        }
        if m & M_NTH != 0 {
            let n = s.u32()?;
            if !env.nth_hit(counter, n) {
                return Some(false);
            }
        }
        if m & M_RANDOM != 0 {
            let p = s.u32()?;
            if env.random_u32() & 0x7fff_ffff >= p {
                return Some(false);
            }
        }
        if m & M_LIMIT != 0 {
            let rate = s.u32()?;
            let burst = s.u32()?;
            let unit = LimitUnit::from_u8(s.u8_at(0)?)?;
            s.take(4)?;
            let limit = Limit { rate, unit, burst };
            if !env.limit_allows(counter, &limit) {
                return Some(false);
            }
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::compile::{fill, measure, ChainSpec, RuleRef};
    use crate::ct::status;
    use crate::packet::{PacketFacts, L4};
    use crate::rules::{
        Action, CtDirectionMatch, CtStateMatch, CtStatusMatch, MarkMatch, RuleSpec,
    };
    use crate::wire::AttrWriter;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    /// A packet's conntrack view, and what the evaluator did to it.
    #[derive(Clone, Debug, Default)]
    struct CtEnv {
        mark: u32,
        state: CtState,
        /// Direction, status and mark of the flow, if any.
        flow: Option<(Direction, u32, u32)>,
        notracked: u32,
    }

    impl EvalEnv for CtEnv {
        fn count(&mut self, _counter: u32, _bytes: u32) {}
        fn limit_allows(&mut self, _counter: u32, _limit: &Limit) -> bool {
            true
        }
        fn random_u32(&mut self) -> u32 {
            0
        }
        fn nth_hit(&mut self, _counter: u32, _n: u32) -> bool {
            true
        }
        fn payload_contains(&mut self, _needle: &[u8]) -> bool {
            false
        }
        fn iif_name(&self) -> &[u8] {
            b"eth0"
        }
        fn oif_name(&self) -> &[u8] {
            b""
        }
        fn mark(&self) -> u32 {
            self.mark
        }
        fn set_mark(&mut self, mark: u32) {
            self.mark = mark;
        }
        fn uid(&self) -> Option<u32> {
            None
        }
        fn gid(&self) -> Option<u32> {
            None
        }
        fn log(&mut self, _prefix: &[u8], _level: u8) {}
        fn ct_state(&self) -> CtState {
            self.state
        }
        fn ct_direction(&self) -> Option<Direction> {
            self.flow.map(|f| f.0)
        }
        fn ct_status(&self) -> u32 {
            self.flow.map_or(0, |f| f.1)
        }
        fn ct_mark(&self) -> Option<u32> {
            self.flow.map(|f| f.2)
        }
        fn set_ct_mark(&mut self, mark: u32) {
            if let Some(f) = &mut self.flow {
                f.2 = mark;
            }
        }
        fn notrack(&mut self) {
            self.notracked += 1;
            self.state = CtState::UNTRACKED;
        }
    }

    fn blob(spec: &RuleSpec<'_>) -> Vec<u8> {
        let mut m = AttrWriter::measure();
        spec.encode(&mut m);
        let mut buf = vec![0u8; m.finish().unwrap()];
        let mut w = AttrWriter::new(&mut buf);
        spec.encode(&mut w);
        w.finish().unwrap();
        buf
    }

    /// `table`'s first built-in chain holding `rules` (handles from 1),
    /// policy accept, compiled.
    fn compile_rules(
        table: Table,
        rules: &[RuleSpec<'_>],
    ) -> Result<Vec<u8>, crate::compile::CompileError<'static>> {
        let blobs: Vec<Vec<u8>> = rules.iter().map(blob).collect();
        let name = table.hooks()[0].name();
        let chains = || {
            core::iter::once(ChainSpec {
                name,
                policy: Some(Policy::Accept),
                policy_counter: 0,
                rules: blobs.iter().enumerate().map(|(i, b)| RuleRef {
                    handle: i as u64 + 1,
                    counter: i as u32 + 1,
                    blob: b,
                }),
            })
        };
        // The only chain is the built-in one, whose name is 'static.
        let owned = |e: crate::compile::CompileError<'_>| crate::compile::CompileError {
            chain: e.chain.map(|_| name),
            field: e.field,
            message: e.message,
            handle: e.handle,
        };
        let n = measure(table, chains()).map_err(owned)?;
        let mut buf = vec![0u8; n];
        fill(table, chains(), &mut buf).map_err(owned)?;
        Ok(buf)
    }

    fn facts() -> PacketFacts {
        PacketFacts {
            family: Family::Ipv4,
            src: [0; 16],
            dst: [0; 16],
            proto: 17,
            total_len: 60,
            frag_offset: 0,
            is_fragment: false,
            l4_offset: 20,
            l4: L4::Ports {
                sport: 1000,
                dport: 53,
            },
            payload_offset: Some(28),
        }
    }

    /// Whether a filter rule with the given matches (and action drop)
    /// matches a packet in `env`.
    fn hits(rule: RuleSpec<'_>, env: &CtEnv) -> bool {
        let buf = compile_rules(Table::Filter, &[rule]).unwrap();
        let mut e = env.clone();
        eval(&buf, Hook::LocalIn, &facts(), &mut e) == Verdict::Drop
    }

    fn env(state: CtState, flow: Option<(Direction, u32, u32)>) -> CtEnv {
        CtEnv {
            state,
            flow,
            ..CtEnv::default()
        }
    }

    const ORIG: Direction = Direction::Original;
    const REPLY: Direction = Direction::Reply;

    #[test]
    fn ct_state_each_state_and_negation() {
        let set = CtState::ESTABLISHED.union(CtState::RELATED);
        for (_, state) in CtState::NAMES {
            let flow =
                (state == CtState::NEW || state == CtState::ESTABLISHED).then_some((ORIG, 0, 0));
            let e = env(state, flow);
            for negated in [false, true] {
                let rule = RuleSpec {
                    ct_state: Some(CtStateMatch {
                        states: set,
                        negated,
                    }),
                    ..RuleSpec::new(Action::Drop)
                };
                let want = (state == CtState::ESTABLISHED || state == CtState::RELATED) != negated;
                assert_eq!(hits(rule, &e), want, "{state:?} negated {negated}");
            }
        }
    }

    #[test]
    fn empty_accept_only_for_an_empty_chain_with_policy_accept() {
        let empty = compile_rules(Table::Filter, &[]).unwrap();
        let t = CompiledTable::new(&empty).unwrap();
        // filter's first built-in chain is INPUT, policy counter 0.
        assert_eq!(t.empty_accept(Hook::LocalIn), Some((0, 0)));
        // No filter chain at PREROUTING.
        assert_eq!(t.empty_accept(Hook::PreRouting), None);
        let one = compile_rules(Table::Filter, &[RuleSpec::new(Action::Drop)]).unwrap();
        let t = CompiledTable::new(&one).unwrap();
        assert_eq!(t.empty_accept(Hook::LocalIn), None);
        assert!(!t.needs_conntrack());
        let ct = RuleSpec {
            ct_state: Some(CtStateMatch {
                states: CtState::ESTABLISHED,
                negated: false,
            }),
            ..RuleSpec::new(Action::Accept)
        };
        let buf = compile_rules(Table::Filter, &[ct]).unwrap();
        assert!(CompiledTable::new(&buf).unwrap().needs_conntrack());
        // Policy drop: not empty-accept.
        let chains = || {
            core::iter::once(ChainSpec {
                name: "INPUT",
                policy: Some(Policy::Drop),
                policy_counter: 7,
                rules: core::iter::empty::<RuleRef<'_>>(),
            })
        };
        let mut buf = vec![0u8; measure(Table::Filter, chains()).unwrap()];
        fill(Table::Filter, chains(), &mut buf).unwrap();
        assert_eq!(
            CompiledTable::new(&buf)
                .unwrap()
                .empty_accept(Hook::LocalIn),
            None
        );
        assert!(!CompiledTable::new(&buf).unwrap().accepts_all());
    }

    #[test]
    fn accepts_all_only_without_rules_and_drop_policies() {
        for table in [Table::Raw, Table::Mangle, Table::Nat, Table::Filter] {
            let empty = compile_rules(table, &[]).unwrap();
            assert!(
                CompiledTable::new(&empty).unwrap().accepts_all(),
                "{table:?}"
            );
            let one = compile_rules(table, &[RuleSpec::new(Action::Accept)]).unwrap();
            assert!(
                !CompiledTable::new(&one).unwrap().accepts_all(),
                "{table:?}"
            );
        }
        // An empty user chain nobody jumps to changes nothing.
        let chains = |policy| {
            [
                ChainSpec {
                    name: "PREROUTING",
                    policy: Some(policy),
                    policy_counter: 0,
                    rules: core::iter::empty::<RuleRef<'_>>(),
                },
                ChainSpec {
                    name: "idle",
                    policy: None,
                    policy_counter: 1,
                    rules: core::iter::empty::<RuleRef<'_>>(),
                },
            ]
            .into_iter()
        };
        for (policy, want) in [(Policy::Accept, true), (Policy::Drop, false)] {
            let mut buf = vec![0u8; measure(Table::Mangle, chains(policy)).unwrap()];
            fill(Table::Mangle, chains(policy), &mut buf).unwrap();
            assert_eq!(
                CompiledTable::new(&buf).unwrap().accepts_all(),
                want,
                "{policy:?}"
            );
        }
    }

    #[test]
    fn ct_status_any_listed_bit_and_no_flow() {
        let rule = |negated| RuleSpec {
            ct_status: Some(CtStatusMatch {
                bits: status::ASSURED | status::DST_NAT,
                negated,
            }),
            ..RuleSpec::new(Action::Drop)
        };
        let est = CtState::ESTABLISHED;
        let cases = [
            (Some((ORIG, status::ASSURED | status::CONFIRMED, 0)), true),
            (Some((REPLY, status::DST_NAT, 0)), true),
            (
                Some((ORIG, status::CONFIRMED | status::SEEN_REPLY, 0)),
                false,
            ),
            (Some((ORIG, 0, 0)), false),
        ];
        for (flow, want) in cases {
            assert_eq!(hits(rule(false), &env(est, flow)), want, "{flow:?}");
            assert_eq!(hits(rule(true), &env(est, flow)), !want, "! {flow:?}");
        }
        // Without a flow neither the match nor its negation holds.
        for state in [CtState::UNTRACKED, CtState::INVALID] {
            assert!(!hits(rule(false), &env(state, None)));
            assert!(!hits(rule(true), &env(state, None)));
        }
    }

    #[test]
    fn ct_direction_and_no_flow() {
        let rule = |direction, negated| RuleSpec {
            ct_direction: Some(CtDirectionMatch { direction, negated }),
            ..RuleSpec::new(Action::Drop)
        };
        let est = CtState::ESTABLISHED;
        for want in [ORIG, REPLY] {
            for have in [ORIG, REPLY] {
                let e = env(est, Some((have, 0, 0)));
                assert_eq!(hits(rule(want, false), &e), want == have);
                assert_eq!(hits(rule(want, true), &e), want != have);
            }
            assert!(!hits(rule(want, false), &env(CtState::INVALID, None)));
            assert!(!hits(rule(want, true), &env(CtState::INVALID, None)));
        }
    }

    #[test]
    fn ct_mark_masked_and_no_flow() {
        let rule = |negated| RuleSpec {
            ct_mark: Some(MarkMatch {
                value: 0x10,
                mask: 0xf0,
                negated,
            }),
            ..RuleSpec::new(Action::Drop)
        };
        let est = CtState::ESTABLISHED;
        for (ct, want) in [
            (0x10, true),
            (0x1f, true),
            (0xff10, true),
            (0x20, false),
            (0, false),
        ] {
            let e = env(est, Some((ORIG, 0, ct)));
            assert_eq!(hits(rule(false), &e), want, "{ct:#x}");
            assert_eq!(hits(rule(true), &e), !want, "! {ct:#x}");
        }
        // The packet mark is not the flow's.
        let e = CtEnv {
            mark: 0x10,
            ..env(CtState::UNTRACKED, None)
        };
        assert!(!hits(rule(false), &e));
        assert!(!hits(rule(true), &e));
    }

    /// Runs `actions` then a rule dropping packets whose flow mark and
    /// packet mark are what the test wants; returns the environment after.
    fn run_actions(table: Table, actions: &[Action<'_>], env: &CtEnv) -> (Verdict, CtEnv) {
        let rules: Vec<RuleSpec<'_>> = actions.iter().map(|a| RuleSpec::new(*a)).collect();
        let buf = compile_rules(table, &rules).unwrap();
        let mut e = env.clone();
        let v = eval(&buf, table.hooks()[0], &facts(), &mut e);
        (v, e)
    }

    #[test]
    fn ct_mark_actions_continue_and_need_a_flow() {
        let start = CtEnv {
            mark: 0xf0,
            ..env(CtState::ESTABLISHED, Some((ORIG, 0, 0x0f)))
        };
        let a = |op, value, mask| Action::CtMark { op, value, mask };
        let cases = [
            (a(CtMarkOp::Set, 0x30, u32::MAX), 0x30, 0xf0),
            (a(CtMarkOp::Set, 0x30, 0xf0), 0x3f, 0xf0),
            (a(CtMarkOp::Xor, 0x03, u32::MAX), 0x0c, 0xf0),
            (a(CtMarkOp::And, 0x03, u32::MAX), 0x03, 0xf0),
            (a(CtMarkOp::Or, 0x30, u32::MAX), 0x3f, 0xf0),
            (a(CtMarkOp::Save, 0, u32::MAX), 0xf0, 0xf0),
            (a(CtMarkOp::Save, 0, 0x30), 0x3f, 0xf0),
            (a(CtMarkOp::Restore, 0, u32::MAX), 0x0f, 0x0f),
            (a(CtMarkOp::Restore, 0, 0x03), 0x0f, 0xf3),
        ];
        for (action, ct, mark) in cases {
            // Non-terminal: a later rule drops.
            let (v, e) = run_actions(Table::Mangle, &[action, Action::Drop], &start);
            assert_eq!(v, Verdict::Drop, "{action:?}");
            assert_eq!(e.flow.map(|f| f.2), Some(ct), "{action:?}");
            assert_eq!(e.mark, mark, "{action:?}");
            // Without a flow nothing changes, and evaluation goes on.
            let no_flow = CtEnv {
                flow: None,
                ..start.clone()
            };
            let (v, e) = run_actions(Table::Mangle, &[action], &no_flow);
            assert_eq!(v, Verdict::Accept);
            assert_eq!((e.flow, e.mark), (None, 0xf0), "{action:?}");
        }
        // A later match sees the new flow mark.
        let rules = [
            RuleSpec::new(a(CtMarkOp::Set, 5, u32::MAX)),
            RuleSpec {
                ct_mark: Some(MarkMatch {
                    value: 5,
                    mask: u32::MAX,
                    negated: false,
                }),
                ..RuleSpec::new(Action::Drop)
            },
        ];
        let buf = compile_rules(Table::Filter, &rules).unwrap();
        let mut e = start.clone();
        assert_eq!(eval(&buf, Hook::LocalIn, &facts(), &mut e), Verdict::Drop);
    }

    #[test]
    fn notrack_continues_in_raw_and_is_refused_elsewhere() {
        let start = env(CtState::INVALID, None);
        let (v, e) = run_actions(Table::Raw, &[Action::Notrack], &start);
        assert_eq!(v, Verdict::Accept);
        assert_eq!(e.notracked, 1);
        // Non-terminal: the next rule sees an untracked packet.
        let rules = [
            RuleSpec::new(Action::Notrack),
            RuleSpec {
                ct_state: Some(CtStateMatch {
                    states: CtState::UNTRACKED,
                    negated: false,
                }),
                ..RuleSpec::new(Action::Drop)
            },
        ];
        let buf = compile_rules(Table::Raw, &rules).unwrap();
        let mut e = start.clone();
        assert_eq!(
            eval(&buf, Hook::PreRouting, &facts(), &mut e),
            Verdict::Drop
        );
        for t in [Table::Mangle, Table::Nat, Table::Filter] {
            let rules = [
                RuleSpec::new(Action::Accept),
                RuleSpec::new(Action::Notrack),
            ];
            let err = compile_rules(t, &rules).unwrap_err();
            assert_eq!(err.field, "notrack");
            assert_eq!(err.handle, Some(2));
            assert_eq!(err.chain, Some(t.hooks()[0].name()));
            assert_eq!(
                err.message,
                "notrack: only in the raw table, which runs before connection tracking"
            );
        }
    }

    fn state() -> impl Strategy<Value = CtState> {
        prop::sample::select(CtState::NAMES.iter().map(|(_, s)| *s).collect::<Vec<_>>())
    }

    fn direction() -> impl Strategy<Value = Direction> {
        prop::sample::select(vec![ORIG, REPLY])
    }

    fn mark() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..4, Just(0xff), Just(0x100), any::<u32>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Compiled ct matches agree with the definition, written out
        /// here without the rule model's helpers.
        #[test]
        fn ct_matches_agree_with_reference(
            st in prop::option::of((1u8..=0x4f, any::<bool>())),
            stat in prop::option::of((1u32..=status::ALL, any::<bool>())),
            dir in prop::option::of((direction(), any::<bool>())),
            cm in prop::option::of((mark(), prop_oneof![Just(u32::MAX), Just(0xff), mark()], any::<bool>())),
            pkt_state in state(),
            flow in prop::option::of((direction(), 0u32..=status::ALL, mark())),
        ) {
            let st = st.map(|(b, n)| (CtState(b & CtState::ALL.0), n)).filter(|(s, _)| s.0 != 0);
            let stat = stat.map(|(b, n)| (b & status::ALL, n)).filter(|(b, _)| *b != 0);
            let cm = cm.map(|(v, m, n)| (v & m, m, n));
            let rule = RuleSpec {
                ct_state: st.map(|(states, negated)| CtStateMatch { states, negated }),
                ct_status: stat.map(|(bits, negated)| CtStatusMatch { bits, negated }),
                ct_direction: dir.map(|(direction, negated)| CtDirectionMatch { direction, negated }),
                ct_mark: cm.map(|(value, mask, negated)| MarkMatch { value, mask, negated }),
                ..RuleSpec::new(Action::Drop)
            };
            let mut want = true;
            if let Some((s, n)) = st {
                want &= (s.0 & pkt_state.0 != 0) ^ n;
            }
            if let Some((b, n)) = stat {
                want &= flow.is_some_and(|(_, fs, _)| (fs & b != 0) ^ n);
            }
            if let Some((d, n)) = dir {
                want &= flow.is_some_and(|(fd, _, _)| (fd == d) ^ n);
            }
            if let Some((v, m, n)) = cm {
                want &= flow.is_some_and(|(_, _, fm)| (fm & m == v) ^ n);
            }
            let e = env(pkt_state, flow);
            prop_assert_eq!(hits(rule, &e), want);
        }
    }
}
