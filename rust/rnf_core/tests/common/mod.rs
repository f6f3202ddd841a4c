// SPDX-License-Identifier: GPL-2.0-only

//! Shared by the engine tests: owned rules and rule sets, a straightforward
//! reference interpreter over rule blobs, and a recording [`EvalEnv`].

#![allow(dead_code)]

pub mod gen;

use std::collections::HashMap;

use rnf_core::compile::{self, ChainSpec, CompileError, RuleRef};
use rnf_core::ct::{CtState, Direction};
use rnf_core::eval::{EvalEnv, Verdict};
use rnf_core::hooks::{Family, Hook};
use rnf_core::packet::PacketFacts;
use rnf_core::rules::{
    Action, Cidr, CtDirectionMatch, CtStateMatch, CtStatusMatch, IcmpMatch, IfaceMatch, Limit,
    ListSpec, MarkMatch, Policy, PortRange, RuleSpec, RuleView, Table, TcpFlagsMatch,
    MAX_JUMP_DEPTH,
};
use rnf_core::wire::AttrWriter;

/// A rule with owned parts; `spec()` borrows them.
#[derive(Clone, Debug, Default)]
pub struct OwnedRule {
    pub family: Option<Family>,
    pub proto: Option<u8>,
    pub saddr: Option<(bool, Vec<Cidr>)>,
    pub daddr: Option<(bool, Vec<Cidr>)>,
    pub sport: Option<(bool, Vec<PortRange>)>,
    pub dport: Option<(bool, Vec<PortRange>)>,
    pub iif: Option<(String, bool, bool)>,
    pub oif: Option<(String, bool, bool)>,
    pub tcp_flags: Option<TcpFlagsMatch>,
    pub icmp: Option<IcmpMatch>,
    pub mark: Option<MarkMatch>,
    pub ct_state: Option<CtStateMatch>,
    pub ct_status: Option<CtStatusMatch>,
    pub ct_direction: Option<CtDirectionMatch>,
    pub ct_mark: Option<MarkMatch>,
    pub limit: Option<Limit>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub payload: Option<Vec<u8>>,
    pub random: Option<u32>,
    pub nth: Option<u32>,
    pub comment: Option<String>,
    pub action: OwnedAction,
}

#[derive(Clone, Debug, Default)]
pub enum OwnedAction {
    #[default]
    Accept,
    Drop,
    Reject(rnf_core::rules::RejectKind),
    Return,
    Jump(String),
    Goto(String),
    Log(String, u8),
    Mark(rnf_core::rules::MarkOp, u32),
    CtMark(rnf_core::rules::CtMarkOp, u32, u32),
    Notrack,
    Nat(rnf_core::nat::NatAction),
}

impl OwnedRule {
    pub fn encode(&self) -> Vec<u8> {
        fn iface(i: &Option<(String, bool, bool)>) -> Option<IfaceMatch<'_>> {
            i.as_ref().map(|(name, prefix, negated)| IfaceMatch {
                name: name.as_str(),
                prefix: *prefix,
                negated: *negated,
            })
        }
        let action = match &self.action {
            OwnedAction::Accept => Action::Accept,
            OwnedAction::Drop => Action::Drop,
            OwnedAction::Reject(k) => Action::Reject(*k),
            OwnedAction::Return => Action::Return,
            OwnedAction::Jump(c) => Action::Jump(c),
            OwnedAction::Goto(c) => Action::Goto(c),
            OwnedAction::Log(p, l) => Action::Log {
                prefix: p,
                level: *l,
            },
            OwnedAction::Mark(op, v) => Action::Mark { op: *op, value: *v },
            OwnedAction::CtMark(op, value, mask) => Action::CtMark {
                op: *op,
                value: *value,
                mask: *mask,
            },
            OwnedAction::Notrack => Action::Notrack,
            OwnedAction::Nat(n) => Action::Nat(*n),
        };
        let spec = RuleSpec {
            family: self.family,
            proto: self.proto,
            saddr: self.saddr.as_ref().map(|(n, l)| ListSpec {
                negated: *n,
                items: l,
            }),
            daddr: self.daddr.as_ref().map(|(n, l)| ListSpec {
                negated: *n,
                items: l,
            }),
            sport: self.sport.as_ref().map(|(n, l)| ListSpec {
                negated: *n,
                items: l,
            }),
            dport: self.dport.as_ref().map(|(n, l)| ListSpec {
                negated: *n,
                items: l,
            }),
            iif: iface(&self.iif),
            oif: iface(&self.oif),
            tcp_flags: self.tcp_flags,
            icmp: self.icmp,
            mark: self.mark,
            ct_state: self.ct_state,
            ct_status: self.ct_status,
            ct_direction: self.ct_direction,
            ct_mark: self.ct_mark,
            limit: self.limit,
            uid: self.uid,
            gid: self.gid,
            payload: self.payload.as_deref(),
            random: self.random,
            nth: self.nth,
            comment: self.comment.as_deref(),
            action,
        };
        encode_spec(&spec)
    }
}

pub fn encode_spec(spec: &RuleSpec<'_>) -> Vec<u8> {
    let mut m = AttrWriter::measure();
    spec.encode(&mut m);
    let mut buf = vec![0u8; m.finish().expect("rule fits")];
    let mut w = AttrWriter::new(&mut buf);
    spec.encode(&mut w);
    w.finish().expect("rule encodes");
    buf
}

/// One chain of a rule set: name, policy (built-ins), policy counter, and
/// rules as (handle, counter, blob).
#[derive(Clone, Debug)]
pub struct OwnedChain {
    pub name: String,
    pub policy: Option<Policy>,
    pub policy_counter: u32,
    pub rules: Vec<(u64, u32, Vec<u8>)>,
}

impl OwnedChain {
    /// A chain of `rules`, encoded, with handles and counters 1, 2, ... in
    /// their order.
    pub fn of(
        name: &str,
        policy: Option<Policy>,
        policy_counter: u32,
        rules: &[OwnedRule],
    ) -> Self {
        OwnedChain {
            name: name.into(),
            policy,
            policy_counter,
            rules: rules
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u64 + 1, i as u32 + 1, r.encode()))
                .collect(),
        }
    }
}

pub fn specs(
    chains: &[OwnedChain],
) -> impl Iterator<Item = ChainSpec<'_, impl Iterator<Item = RuleRef<'_>>>> + Clone {
    chains.iter().map(|c| ChainSpec {
        name: c.name.as_str(),
        policy: c.policy,
        policy_counter: c.policy_counter,
        rules: c.rules.iter().map(|(h, n, b)| RuleRef {
            handle: *h,
            counter: *n,
            blob: b,
        }),
    })
}

pub fn compile(table: Table, chains: &[OwnedChain]) -> Result<Vec<u8>, CompileError<'_>> {
    let n = compile::measure(table, specs(chains))?;
    let mut buf = vec![0u8; n];
    let written = compile::fill(table, specs(chains), &mut buf)?;
    assert_eq!(written, n);
    Ok(buf)
}

// ---------------------------------------------------------------------
// Reference interpreter: walks the rule blobs directly, recursively.

enum Outcome {
    Verdict(Verdict),
    Return,
}

fn ref_matches(v: &RuleView<'_>, f: &PacketFacts, env: &mut dyn EvalEnv, counter: u32) -> bool {
    if v.family.is_some_and(|fam| fam != f.family) {
        return false;
    }
    if v.proto.is_some_and(|p| p != f.proto) {
        return false;
    }
    if let Some(l) = v.saddr {
        if !l.matches(f.family, &f.src) {
            return false;
        }
    }
    if let Some(l) = v.daddr {
        if !l.matches(f.family, &f.dst) {
            return false;
        }
    }
    if v.sport.is_some() || v.dport.is_some() {
        let Some((sp, dp)) = f.ports() else {
            return false;
        };
        if v.sport.is_some_and(|l| !l.matches(sp)) || v.dport.is_some_and(|l| !l.matches(dp)) {
            return false;
        }
    }
    if let Some(t) = v.tcp_flags {
        match f.tcp_flags() {
            Some(fl) if t.matches(fl) => {}
            _ => return false,
        }
    }
    if let Some(i) = v.icmp {
        match f.icmp() {
            Some((ty, code)) if i.matches(ty, code) => {}
            _ => return false,
        }
    }
    if v.iif.is_some_and(|i| !i.matches(env.iif_name())) {
        return false;
    }
    if v.oif.is_some_and(|i| !i.matches(env.oif_name())) {
        return false;
    }
    if v.mark.is_some_and(|m| !m.matches(env.mark())) {
        return false;
    }
    if v.ct_state.is_some_and(|c| !c.matches(env.ct_state())) {
        return false;
    }
    // A flow is there when the packet has a direction in it.
    let status = env.ct_direction().map(|_| env.ct_status());
    if v.ct_status.is_some_and(|c| !c.matches(status)) {
        return false;
    }
    if v.ct_direction
        .is_some_and(|c| !c.matches(env.ct_direction()))
    {
        return false;
    }
    if let Some(m) = v.ct_mark {
        match env.ct_mark() {
            Some(ct) if m.matches(ct) => {}
            _ => return false,
        }
    }
    if v.uid.is_some() && env.uid() != v.uid {
        return false;
    }
    if v.gid.is_some() && env.gid() != v.gid {
        return false;
    }
    if let Some(p) = v.payload {
        if !env.payload_contains(p) {
            return false;
        }
    }
    if let Some(n) = v.nth {
        if !env.nth_hit(counter, n) {
            return false;
        }
    }
    if let Some(p) = v.random {
        if (env.random_u32() & 0x7fff_ffff) >= p {
            return false;
        }
    }
    if let Some(l) = v.limit {
        if !env.limit_allows(counter, &l) {
            return false;
        }
    }
    true
}

fn ref_chain(
    chains: &[OwnedChain],
    idx: usize,
    f: &PacketFacts,
    env: &mut dyn EvalEnv,
    depth: usize,
) -> Outcome {
    assert!(depth <= MAX_JUMP_DEPTH + 1, "reference recursion too deep");
    for (_, counter, blob) in &chains[idx].rules {
        let v = RuleView::decode(blob).expect("valid rule");
        if !ref_matches(&v, f, env, *counter) {
            continue;
        }
        env.count(*counter, f.total_len);
        let find = |name: &str| chains.iter().position(|c| c.name == name).unwrap();
        match v.action {
            Action::Accept => return Outcome::Verdict(Verdict::Accept),
            Action::Drop => return Outcome::Verdict(Verdict::Drop),
            Action::Reject(k) => return Outcome::Verdict(Verdict::Reject(k)),
            Action::Return => return Outcome::Return,
            Action::Jump(t) => {
                if let Outcome::Verdict(v) = ref_chain(chains, find(t), f, env, depth + 1) {
                    return Outcome::Verdict(v);
                }
            }
            // The chain we go to takes this chain's place: its return is
            // this chain's return.
            Action::Goto(t) => return ref_chain(chains, find(t), f, env, depth),
            Action::Log { prefix, level } => env.log(prefix.as_bytes(), level),
            Action::Mark { op, value } => {
                let m = op.apply(env.mark(), value);
                env.set_mark(m);
            }
            Action::CtMark { op, value, mask } => {
                if let Some(ct) = env.ct_mark() {
                    let new = op.apply(ct, env.mark(), value, mask);
                    if op.writes_packet_mark() {
                        env.set_mark(new);
                    } else {
                        env.set_ct_mark(new);
                    }
                }
            }
            Action::Notrack => env.notrack(),
            // The verdict's range is of the packet's family (a rule with
            // addresses only matches packets of theirs).
            Action::Nat(n) => {
                let mut n = n;
                n.range.family = f.family;
                return Outcome::Verdict(Verdict::Nat(n));
            }
        }
    }
    Outcome::Return
}

pub fn ref_eval(
    chains: &[OwnedChain],
    hook: Hook,
    f: &PacketFacts,
    env: &mut dyn EvalEnv,
) -> Verdict {
    let Some(idx) = chains.iter().position(|c| c.name == hook.name()) else {
        return Verdict::Accept;
    };
    match ref_chain(chains, idx, f, env, 0) {
        Outcome::Verdict(v) => v,
        Outcome::Return => {
            let c = &chains[idx];
            env.count(c.policy_counter, f.total_len);
            match c.policy.expect("built-in has a policy") {
                Policy::Accept => Verdict::Accept,
                Policy::Drop => Verdict::Drop,
            }
        }
    }
}

/// The reference check of the chain graph: `Err(chain)` for a chain that
/// can reach itself, `Err` too for a built-in whose jumps nest deeper than
/// the limit.
pub fn ref_graph_ok(chains: &[OwnedChain]) -> bool {
    let edges = |i: usize| -> Vec<(usize, bool)> {
        chains[i]
            .rules
            .iter()
            .filter_map(|(_, _, b)| match RuleView::decode(b).unwrap().action {
                Action::Jump(t) => Some((chains.iter().position(|c| c.name == t)?, true)),
                Action::Goto(t) => Some((chains.iter().position(|c| c.name == t)?, false)),
                _ => None,
            })
            .collect()
    };
    // Loop: a chain reachable from itself.
    for start in 0..chains.len() {
        let mut seen = vec![false; chains.len()];
        let mut todo: Vec<usize> = edges(start).into_iter().map(|(t, _)| t).collect();
        while let Some(c) = todo.pop() {
            if c == start {
                return false;
            }
            if !seen[c] {
                seen[c] = true;
                todo.extend(edges(c).into_iter().map(|(t, _)| t));
            }
        }
    }
    fn depth(
        i: usize,
        edges: &dyn Fn(usize) -> Vec<(usize, bool)>,
        memo: &mut HashMap<usize, usize>,
    ) -> usize {
        if let Some(d) = memo.get(&i) {
            return *d;
        }
        let d = edges(i)
            .into_iter()
            .map(|(t, jump)| depth(t, edges, memo) + usize::from(jump))
            .max()
            .unwrap_or(0);
        memo.insert(i, d);
        d
    }
    let mut memo = HashMap::new();
    chains
        .iter()
        .enumerate()
        .filter(|(_, c)| c.policy.is_some())
        .all(|(i, _)| depth(i, &edges, &mut memo) <= MAX_JUMP_DEPTH)
}

/// The reference for the hooks each chain can be reached from: bit
/// `1 << hook` per built-in chain of `table` that reaches it through
/// jumps and gotos.
pub fn ref_chain_hooks(table: Table, chains: &[OwnedChain]) -> Vec<u8> {
    let mut hooks = vec![0u8; chains.len()];
    for (root, c) in chains.iter().enumerate() {
        let Some(h) = table.builtin(&c.name) else {
            continue;
        };
        let bit = 1u8 << (h as u8);
        let mut todo = vec![root];
        while let Some(i) = todo.pop() {
            if hooks[i] & bit != 0 {
                continue;
            }
            hooks[i] |= bit;
            for (_, _, b) in &chains[i].rules {
                if let Action::Jump(t) | Action::Goto(t) = RuleView::decode(b).unwrap().action {
                    if let Some(j) = chains.iter().position(|c| c.name == t) {
                        todo.push(j);
                    }
                }
            }
        }
    }
    hooks
}

/// The reference check of NAT actions against the hooks their chains
/// are reached from.
pub fn ref_nat_hooks_ok(table: Table, chains: &[OwnedChain]) -> bool {
    let hooks = ref_chain_hooks(table, chains);
    chains.iter().zip(hooks).all(|(c, mask)| {
        c.rules
            .iter()
            .all(|(_, _, b)| match RuleView::decode(b).unwrap().action {
                Action::Nat(n) => Hook::ALL
                    .iter()
                    .filter(|h| mask & (1 << (**h as u8)) != 0)
                    .all(|h| n.kind.allowed_at(*h)),
                _ => true,
            })
    })
}

// ---------------------------------------------------------------------
// A deterministic environment that records what the evaluator asks of it.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Count(u32, u32),
    Limit(u32, Limit, bool),
    Random(u32),
    Nth(u32, u32, bool),
    Payload(Vec<u8>, bool),
    SetMark(u32),
    Log(Vec<u8>, u8),
    SetCtMark(u32),
    Notrack,
}

/// The flow a [`TestEnv`] packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestFlow {
    pub direction: Direction,
    pub status: u32,
    pub mark: u32,
}

#[derive(Clone, Debug)]
pub struct TestEnv {
    pub iif: Vec<u8>,
    pub oif: Vec<u8>,
    pub mark: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub payload: Vec<u8>,
    pub rng: u64,
    pub nth: HashMap<u32, u32>,
    pub limit_calls: HashMap<u32, u32>,
    pub events: Vec<Event>,
    /// The packet's conntrack state.
    pub ct_state: CtState,
    /// Its flow, if it has one.
    pub flow: Option<TestFlow>,
}

impl TestEnv {
    pub fn new(seed: u64) -> Self {
        Self {
            iif: Vec::new(),
            oif: Vec::new(),
            mark: 0,
            uid: None,
            gid: None,
            payload: Vec::new(),
            rng: seed | 1,
            nth: HashMap::new(),
            limit_calls: HashMap::new(),
            events: Vec::new(),
            ct_state: CtState::INVALID,
            flow: None,
        }
    }
}

impl EvalEnv for TestEnv {
    fn count(&mut self, counter: u32, bytes: u32) {
        self.events.push(Event::Count(counter, bytes));
    }
    fn limit_allows(&mut self, counter: u32, limit: &Limit) -> bool {
        let n = self.limit_calls.entry(counter).or_insert(0);
        *n += 1;
        // A bucket of `burst` tokens that never refills.
        let ok = *n <= limit.burst;
        self.events.push(Event::Limit(counter, *limit, ok));
        ok
    }
    fn random_u32(&mut self) -> u32 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let v = (self.rng >> 32) as u32;
        self.events.push(Event::Random(v));
        v
    }
    fn nth_hit(&mut self, counter: u32, n: u32) -> bool {
        let c = self.nth.entry(counter).or_insert(0);
        *c += 1;
        // As the kernel's: a (corrupt) nth 0 never hits.
        let hit = n != 0 && *c % n == 0;
        self.events.push(Event::Nth(counter, n, hit));
        hit
    }
    fn payload_contains(&mut self, needle: &[u8]) -> bool {
        // As the kernel's: an empty needle is in every payload.
        let hit = needle.is_empty() || self.payload.windows(needle.len()).any(|w| w == needle);
        self.events.push(Event::Payload(needle.to_vec(), hit));
        hit
    }
    fn iif_name(&self) -> &[u8] {
        &self.iif
    }
    fn oif_name(&self) -> &[u8] {
        &self.oif
    }
    fn mark(&self) -> u32 {
        self.mark
    }
    fn set_mark(&mut self, mark: u32) {
        self.mark = mark;
        self.events.push(Event::SetMark(mark));
    }
    fn uid(&self) -> Option<u32> {
        self.uid
    }
    fn gid(&self) -> Option<u32> {
        self.gid
    }
    fn log(&mut self, prefix: &[u8], level: u8) {
        self.events.push(Event::Log(prefix.to_vec(), level));
    }
    fn ct_state(&self) -> CtState {
        self.ct_state
    }
    fn ct_direction(&self) -> Option<Direction> {
        self.flow.map(|f| f.direction)
    }
    fn ct_status(&self) -> u32 {
        self.flow.map_or(0, |f| f.status)
    }
    fn ct_mark(&self) -> Option<u32> {
        self.flow.map(|f| f.mark)
    }
    fn set_ct_mark(&mut self, mark: u32) {
        if let Some(f) = &mut self.flow {
            f.mark = mark;
        }
        self.events.push(Event::SetCtMark(mark));
    }
    fn notrack(&mut self) {
        self.ct_state = CtState::UNTRACKED;
        self.events.push(Event::Notrack);
    }
}

/// An environment that asks nothing of anyone: a new flow's packet, in on
/// `eth0`, counted into nothing (benchmarks and instruction counts).
pub struct NullEnv;

impl EvalEnv for NullEnv {
    fn count(&mut self, counter: u32, bytes: u32) {
        std::hint::black_box((counter, bytes));
    }
    fn limit_allows(&mut self, _: u32, _: &Limit) -> bool {
        true
    }
    fn random_u32(&mut self) -> u32 {
        0
    }
    fn nth_hit(&mut self, _: u32, _: u32) -> bool {
        true
    }
    fn payload_contains(&mut self, _: &[u8]) -> bool {
        false
    }
    fn iif_name(&self) -> &[u8] {
        b"eth0"
    }
    fn oif_name(&self) -> &[u8] {
        b""
    }
    fn mark(&self) -> u32 {
        0
    }
    fn set_mark(&mut self, _: u32) {}
    fn uid(&self) -> Option<u32> {
        None
    }
    fn gid(&self) -> Option<u32> {
        None
    }
    fn log(&mut self, _: &[u8], _: u8) {}
    fn ct_state(&self) -> CtState {
        CtState::NEW
    }
    fn ct_direction(&self) -> Option<Direction> {
        Some(Direction::Original)
    }
    fn ct_status(&self) -> u32 {
        0
    }
    fn ct_mark(&self) -> Option<u32> {
        Some(0)
    }
    fn set_ct_mark(&mut self, _: u32) {}
    fn notrack(&mut self) {}
}
