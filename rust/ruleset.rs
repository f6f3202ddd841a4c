// SPDX-License-Identifier: GPL-2.0

//! The rule set of one network namespace.
//!
//! [`RuleStore`] is the source of truth: tables, chains and rules (kept as
//! the validated blobs rnfctl sent, with stable handles and counter slots).
//! Every change is made on a copy of the table's chains, compiled by the
//! shared core into one buffer and, only if that succeeds, published with
//! one pointer swap as a new [`Image`]; the old image is freed after an RCU
//! grace period. A packet therefore sees the old rule set or the new one,
//! and a change that fails leaves everything as it was.
//!
//! Counters live in per-CPU slots that a rule keeps for its whole life, so
//! they survive changes to other rules. `limit` and `nth` state is kept per
//! slot too.

use crate::compile::{self, ChainSpec, CompileError, RuleRef};
use crate::conntrack::Conntrack;
use crate::eval::{CompiledTable, EvalEnv, StateAccept, TailLink, Tails, Verdict};
use crate::firewall::{self, Hooks};
use crate::hooks::{Hook, NUM_HOOK_POINTS};
use crate::packet::PacketFacts;
use crate::percpu::{Counter, PerCpuCounters};
use crate::rcu::{RcuBox, Retired};
use crate::rules::{self, Policy, Table};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::alloc::AllocError;
use kernel::prelude::*;
use kernel::sync::Arc;

/// Counter slots a table starts with; doubled when they run out.
const INITIAL_SLOTS: u32 = 64;

/// Most rules appended into a table's tails before an append recompiles
/// the whole table (see [`TableRules::can_append`]).
const MAX_TAIL_RULES: usize = 2048;

/// Tails this large ask for a compaction: a full compile in the background
/// that folds them into the main buffer (see [`RuleStore::compaction`]).
const COMPACT_AT: usize = 256;

/// A table's tails stay below its compiled rules divided by this.
const TAIL_RATIO: usize = 8;

/// Most counter slots of a table: its rules plus built-in chain policies
/// and a little room. (Counters are per-CPU, in chunks: see `percpu`.)
const MAX_SLOTS: usize = rules::MAX_RULES + rules::MAX_CHAINS + 8;

/// Why a change was refused: the errno and a message for the extended ack.
pub struct ChangeError {
    /// The errno.
    pub errno: Error,
    /// What is wrong, for a person (at most 79 bytes are sent).
    pub text: Text,
}

/// A short message built with `write!`.
pub struct Text {
    bytes: [u8; 80],
    len: usize,
}

impl Default for Text {
    fn default() -> Self {
        Self::new()
    }
}

impl Text {
    fn new() -> Self {
        Self {
            bytes: [0; 80],
            len: 0,
        }
    }

    /// The message.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.bytes.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut enc = [0u8; 4];
            let e = c.encode_utf8(&mut enc).as_bytes();
            if self.len + e.len() > self.bytes.len() - 1 {
                break;
            }
            for b in e {
                if let Some(slot) = self.bytes.get_mut(self.len) {
                    *slot = *b;
                    self.len += 1;
                }
            }
        }
        Ok(())
    }
}

fn fail(errno: Error, args: fmt::Arguments<'_>) -> ChangeError {
    let mut text = Text::new();
    let _ = text.write_fmt(args);
    ChangeError { errno, text }
}

macro_rules! refuse {
    ($errno:expr, $($arg:tt)*) => {
        return Err(fail($errno, format_args!($($arg)*)))
    };
}

fn errno(e: i32) -> Error {
    Error::from_errno(-e)
}

fn oom(_: AllocError) -> ChangeError {
    fail(ENOMEM, format_args!("out of memory"))
}

fn hooks_failed(e: Error) -> ChangeError {
    fail(
        e,
        format_args!("cannot register the netfilter hooks the rules need"),
    )
}

const ENOENT_: i32 = 2;
const E2BIG_: i32 = 7;
const EEXIST_: i32 = 17;
const EBUSY_: i32 = 16;
const ERANGE_: i32 = 34;
const ELOOP_: i32 = 40;
const ESTALE_: i32 = 116;
const ENOSPC_: i32 = 28;

/// The per-slot state the packet path updates.
pub struct SlotState {
    /// Packet and byte counters, one per slot.
    pub counters: PerCpuCounters,
    /// `nth` match counters.
    pub nth: KVec<AtomicU32>,
    /// `limit` match state: the theoretical arrival time (GCRA) in ns.
    pub limit_tat: KVec<AtomicU64>,
}

impl SlotState {
    fn new(slots: u32) -> Result<Self, AllocError> {
        let counters = PerCpuCounters::new(slots).map_err(|_| AllocError)?;
        let mut nth = KVec::with_capacity(slots as usize, GFP_KERNEL)?;
        let mut limit_tat = KVec::with_capacity(slots as usize, GFP_KERNEL)?;
        for _ in 0..slots {
            nth.push(AtomicU32::new(0), GFP_KERNEL)?;
            limit_tat.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        Ok(Self {
            counters,
            nth,
            limit_tat,
        })
    }

    fn slots(&self) -> u32 {
        self.counters.len()
    }

    /// Clears a slot for a new owner. Only once no packet can still be
    /// using the slot for its previous owner (a grace period after the
    /// image that dropped it was replaced).
    fn reset(&self, slot: u32) {
        self.counters.zero(slot);
        if let Some(n) = self.nth.get(slot as usize) {
            n.store(0, Ordering::Relaxed);
        }
        if let Some(t) = self.limit_tat.get(slot as usize) {
            t.store(0, Ordering::Relaxed);
        }
    }
}

/// One compiled table, as the packet path sees it.
pub struct TableImage {
    /// The compiled rule set (`compile` layout); a large table's is several
    /// MB, so it may be virtually contiguous. Shared by the images that
    /// only add tails to it.
    pub main: Arc<KVVec<u8>>,
    /// Rules appended since `main` was compiled, if any.
    tails: Option<TailImage>,
    /// Its counter and match state.
    pub state: Arc<SlotState>,
    /// Per hook, the policy counter of a built-in chain with no rules and
    /// policy accept ([`NOT_EMPTY`] otherwise): see [`empty_at`](Self::empty_at).
    empty: [u32; 5],
    /// The table decides nothing (no rules, policy accept everywhere).
    passive: bool,
    /// Per hook, the built-in chain's first rule when it is `ct state ...
    /// accept` alone: see [`state_accept_at`](Self::state_accept_at).
    state_accept: [Option<StateAccept>; 5],
}

/// In [`TableImage::empty`]: the chain at the hook has rules, or drops.
const NOT_EMPTY: u32 = u32::MAX;

/// Rules appended to chains since the table's main buffer was compiled,
/// compiled on their own (see [`Tails`]).
struct TailImage {
    buf: KVVec<u8>,
    links: KVec<TailLink>,
}

impl TableImage {
    fn new(
        main: Arc<KVVec<u8>>,
        tails: Option<TailImage>,
        state: Arc<SlotState>,
    ) -> Result<Arc<Self>, ChangeError> {
        let mut empty = [NOT_EMPTY; 5];
        let mut state_accept = [None; 5];
        let mut passive = false;
        if let Ok(m) = CompiledTable::new(&main) {
            passive = tails.is_none() && m.accepts_all();
            // (A chain's tail follows its own rules: the first is main's.)
            for (s, hook) in state_accept.iter_mut().zip(Hook::ALL) {
                *s = m.state_accept(hook);
            }
            for (e, hook) in empty.iter_mut().zip(Hook::ALL) {
                if let Some((chain, counter)) = m.empty_accept(hook) {
                    let tailed = tails
                        .as_ref()
                        .is_some_and(|t| t.links.iter().any(|l| l.chain == chain));
                    if !tailed {
                        *e = counter;
                    }
                }
            }
        }
        Arc::new(
            Self {
                main,
                tails,
                state,
                empty,
                passive,
                state_accept,
            },
            GFP_KERNEL,
        )
        .map_err(oom)
    }

    /// When the table's chain at `hook` has no rules and policy accept:
    /// its policy counter. The packet path then counts the packet there
    /// and accepts it without reading its headers.
    #[inline]
    pub fn empty_at(&self, hook: Hook) -> Option<u32> {
        self.empty
            .get(hook as usize)
            .copied()
            .filter(|c| *c != NOT_EMPTY)
    }

    /// When the table's chain at `hook` starts with `ct state ... accept`
    /// and nothing more: that rule. The packet path then accepts a packet
    /// whose noted state it matches, counting it there, without a parse.
    #[inline]
    pub fn state_accept_at(&self, hook: Hook) -> Option<&StateAccept> {
        self.state_accept.get(hook as usize)?.as_ref()
    }

    /// Whether the table decides nothing: no rules, and policy accept at
    /// every hook it has a chain for.
    #[inline]
    pub fn passive(&self) -> bool {
        self.passive
    }

    /// The table's verdict for a packet at `hook`; a buffer that does not
    /// make sense drops it. (Inlined into the hook: a call costs there.) A
    /// leading `ct state ... accept` ([`state_accept_at`](Self::state_accept_at))
    /// is decided on the packet's state alone, before the evaluator's walk.
    #[inline(always)]
    pub fn eval<E: EvalEnv + ?Sized>(
        &self,
        hook: Hook,
        facts: &PacketFacts,
        env: &mut E,
    ) -> Verdict {
        let Ok(main) = CompiledTable::new(&self.main) else {
            return Verdict::Drop;
        };
        let first = self.state_accept_at(hook);
        match &self.tails {
            // (Two copies of the evaluation: with `None` passed through, the
            // chains without that rule paid for its test and the registers
            // it holds, 25 instructions per packet.)
            None if first.is_none() => main.eval(hook, facts, env),
            None => main.eval_after(hook, facts, env, first),
            Some(t) => match Tails::new(&t.buf, &t.links) {
                Ok(tails) => main.eval_with_tails(hook, facts, env, &tails, first),
                Err(_) => Verdict::Drop,
            },
        }
    }

    /// Whether a rule of the table needs packets tracked.
    pub fn needs_conntrack(&self) -> bool {
        let tails = self
            .tails
            .as_ref()
            .is_some_and(|t| CompiledTable::new(&t.buf).is_ok_and(|c| c.needs_conntrack()));
        tails || CompiledTable::new(&self.main).is_ok_and(|c| c.needs_conntrack())
    }

    /// The compiled main table (the one without tails).
    pub fn compiled(&self) -> Option<CompiledTable<'_>> {
        CompiledTable::new(&self.main).ok()
    }
}

/// Everything the packet path evaluates, published as one pointer.
pub struct Image {
    /// Compiled tables, indexed by `Table as usize`.
    pub tables: [Option<Arc<TableImage>>; 4],
}

/// A chain name (at most `rules::MAX_CHAIN_NAME` bytes, validated UTF-8).
#[derive(Clone, Copy)]
struct Name {
    bytes: [u8; 32],
    len: u8,
}

impl Name {
    fn new(s: &str) -> Option<Self> {
        if s.len() > rules::MAX_CHAIN_NAME {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (d, b) in bytes.iter_mut().zip(s.bytes()) {
            *d = b;
        }
        Some(Self {
            bytes,
            len: s.len() as u8,
        })
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(self.bytes.get(..self.len as usize).unwrap_or(&[])).unwrap_or("")
    }
}

/// A rule as stored.
pub struct Rule {
    /// Stable handle.
    pub handle: u64,
    /// Counter slot.
    pub slot: u32,
    /// The validated blob.
    pub blob: KVec<u8>,
}

/// A chain as stored.
pub struct Chain {
    name: Name,
    /// The hook of a built-in chain.
    pub hook: Option<Hook>,
    /// A built-in chain's policy.
    pub policy: Policy,
    /// A built-in chain's policy counter slot.
    pub policy_slot: u32,
    /// Rules in order.
    pub rules: KVec<Arc<Rule>>,
    /// How many of `rules` the table's main buffer holds; the others were
    /// appended since and are in its tails.
    compiled: usize,
}

impl Chain {
    /// A new, empty user chain.
    fn user(name: Name) -> Self {
        Self {
            name,
            hook: None,
            policy: Policy::Accept,
            policy_slot: 0,
            rules: KVec::new(),
            compiled: 0,
        }
    }

    /// The same chain with no rules and policy accept.
    fn emptied(&self) -> Self {
        Self {
            name: self.name,
            hook: self.hook,
            policy: Policy::Accept,
            policy_slot: self.policy_slot,
            rules: KVec::new(),
            compiled: 0,
        }
    }

    /// The chain's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
}

fn clone_chain(c: &Chain) -> Result<Chain, ChangeError> {
    let mut rules = KVec::with_capacity(c.rules.len(), GFP_KERNEL).map_err(oom)?;
    for r in c.rules.iter() {
        rules.push(r.clone(), GFP_KERNEL).map_err(oom)?;
    }
    Ok(Chain {
        name: c.name,
        hook: c.hook,
        policy: c.policy,
        policy_slot: c.policy_slot,
        rules,
        compiled: c.compiled,
    })
}

fn clone_chains(chains: &[Chain]) -> Result<KVec<Chain>, ChangeError> {
    let mut out = KVec::with_capacity(chains.len(), GFP_KERNEL).map_err(oom)?;
    for c in chains {
        out.push(clone_chain(c)?, GFP_KERNEL).map_err(oom)?;
    }
    Ok(out)
}

/// One table's rules and counter slots.
pub struct TableRules {
    table: Table,
    chains: KVec<Chain>,
    state: Arc<SlotState>,
    /// Counter offsets for listings, so zeroing and slot growth are exact
    /// without touching per-CPU data the packet path writes.
    base: KVec<Counter>,
    free: SlotStack,
    next_slot: u32,
    /// Slots released by the last change, reusable once it is published.
    released: SlotStack,
    image: Option<Arc<TableImage>>,
}

impl TableRules {
    fn new(table: Table) -> Result<Self, ChangeError> {
        let state =
            Arc::new(SlotState::new(INITIAL_SLOTS).map_err(oom)?, GFP_KERNEL).map_err(oom)?;
        let mut t = Self {
            table,
            chains: KVec::new(),
            state,
            base: KVec::new(),
            free: SlotStack::new(),
            next_slot: 0,
            released: SlotStack::new(),
            image: None,
        };
        for _ in 0..INITIAL_SLOTS {
            t.base.push(Counter::default(), GFP_KERNEL).map_err(oom)?;
        }
        for hook in table.hooks() {
            let name = Name::new(hook.name()).ok_or(fail(EINVAL, format_args!("bad chain")))?;
            let policy_slot = t.alloc_slot()?;
            t.chains
                .push(
                    Chain {
                        name,
                        hook: Some(*hook),
                        policy: Policy::Accept,
                        policy_slot,
                        rules: KVec::new(),
                        compiled: 0,
                    },
                    GFP_KERNEL,
                )
                .map_err(oom)?;
        }
        Ok(t)
    }

    /// The table.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The chains, built-in ones first.
    pub fn chains(&self) -> &[Chain] {
        &self.chains
    }

    /// A slot's counters, as the user sees them.
    pub fn counted(&self, slot: u32) -> Counter {
        let c = self.state.counters.sum(slot);
        let b = self.base.get(slot as usize).copied().unwrap_or_default();
        Counter {
            packets: c.packets.wrapping_add(b.packets),
            bytes: c.bytes.wrapping_add(b.bytes),
        }
    }

    /// Adds `c` to what slot `slot` lists.
    fn add_base(&mut self, slot: u32, c: Counter) {
        if let Some(b) = self.base.get_mut(slot as usize) {
            *b = b.plus(c);
        }
    }

    fn zero_slot(&mut self, slot: u32) {
        let c = self.state.counters.sum(slot);
        if let Some(b) = self.base.get_mut(slot as usize) {
            b.packets = 0u64.wrapping_sub(c.packets);
            b.bytes = 0u64.wrapping_sub(c.bytes);
        }
    }

    /// A free slot, growing the slot state if none is left. A grown state
    /// takes effect with the next publication.
    fn alloc_slot(&mut self) -> Result<u32, ChangeError> {
        if let Some(s) = self.free.pop() {
            self.state.reset(s);
            if let Some(b) = self.base.get_mut(s as usize) {
                *b = Counter::default();
            }
            return Ok(s);
        }
        if self.next_slot >= self.state.slots() {
            self.grow()?;
        }
        let s = self.next_slot;
        self.next_slot += 1;
        Ok(s)
    }

    /// Doubles the slots. Counts taken so far move into `base`; the packet
    /// path keeps counting into the old state until the next image is
    /// published, and `publish` moves those last counts over too.
    fn grow(&mut self) -> Result<(), ChangeError> {
        let old = self.state.slots();
        let cap = u32::try_from(MAX_SLOTS).unwrap_or(u32::MAX);
        let new = Some(old.saturating_mul(2).min(cap))
            .filter(|n| *n > old)
            .ok_or(fail(
                errno(ENOSPC_),
                format_args!(
                    "too many rules in table {} (at most {} counters)",
                    self.table.name(),
                    MAX_SLOTS
                ),
            ))?;
        let state = Arc::new(SlotState::new(new).map_err(oom)?, GFP_KERNEL).map_err(oom)?;
        for _ in old..new {
            self.base
                .push(Counter::default(), GFP_KERNEL)
                .map_err(oom)?;
        }
        self.state = state;
        Ok(())
    }

    fn find_chain(chains: &[Chain], name: &str) -> Option<usize> {
        chains.iter().position(|c| c.name() == name)
    }

    /// Makes `chains`, compiled into `buf`, the table's rules and its image
    /// for the next publication.
    fn install(&mut self, mut chains: KVec<Chain>, buf: KVVec<u8>) -> Result<(), ChangeError> {
        let main = Arc::new(buf, GFP_KERNEL).map_err(oom)?;
        let image = TableImage::new(main, None, self.state.clone())?;
        for c in chains.iter_mut() {
            c.compiled = c.rules.len();
        }
        self.chains = chains;
        self.image = Some(image);
        Ok(())
    }

    /// Rules appended to the table's chains since its main buffer was
    /// compiled.
    pub fn tail_rules(&self) -> usize {
        self.chains
            .iter()
            .map(|c| c.rules.len().saturating_sub(c.compiled))
            .sum()
    }

    /// Whether a rule appended to chain `ci` can go into the tails rather
    /// than recompiling the table: the table has a main buffer, the rule
    /// adds no edge to the chain graph (no jump or goto, which need the
    /// loop and depth checks of a full compile), and the tails stay small
    /// next to the main buffer (their rules are classified per tail chain,
    /// and every append recompiles them).
    fn can_append(&self, ci: usize, blob: &[u8]) -> bool {
        let Some(main) = self.image.as_ref().map(|i| &i.main) else {
            return false;
        };
        let Ok(main) = CompiledTable::new(main) else {
            return false;
        };
        let jumps = rules::RuleView::decode(blob).map_or(true, |v| {
            matches!(v.action, rules::Action::Jump(_) | rules::Action::Goto(_))
        });
        !jumps
            && ci < main.n_chains()
            && self.chains.len() == main.n_chains()
            && self.tail_rules() < self.tail_cap()
    }

    /// Most rules the tails may hold: small next to the compiled rules.
    fn tail_cap(&self) -> usize {
        let compiled: usize = self.chains.iter().map(|c| c.compiled).sum();
        (compiled / TAIL_RATIO).min(MAX_TAIL_RULES)
    }

    /// Whether the tails are large enough to fold into the main buffer.
    fn wants_compaction(&self) -> bool {
        let tails = self.tail_rules();
        tails > 0 && tails >= self.tail_cap().min(COMPACT_AT)
    }

    /// Compiles the tails of the table's chains (each chain's rules past
    /// `compiled`, and `new` at the end of chain `ci`) and makes them, with
    /// the current main buffer, the image for the next publication.
    fn install_tails(&mut self, ci: usize, new: &Arc<Rule>) -> Result<(), ChangeError> {
        let Some(main) = self.image.as_ref().map(|i| i.main.clone()) else {
            refuse!(EINVAL, "internal error: tails without a compiled table");
        };
        let tailed = |i: usize, c: &Chain| c.rules.len() > c.compiled || i == ci;
        let specs = self
            .chains
            .iter()
            .enumerate()
            .filter(|(i, c)| tailed(*i, c))
            .map(|(i, c)| ChainSpec {
                name: c.name(),
                policy: c.hook.map(|_| Policy::Accept),
                policy_counter: c.policy_slot,
                rules: Iterator::chain(
                    c.rules.iter().skip(c.compiled),
                    core::iter::once(new).filter(move |_| i == ci),
                )
                .map(|r| RuleRef {
                    handle: r.handle,
                    counter: r.slot,
                    blob: &r.blob,
                }),
            });
        let size = compile::measure(self.table, specs.clone()).map_err(compile_error)?;
        let mut buf = KVVec::from_elem(0u8, size, GFP_KERNEL).map_err(oom)?;
        compile::fill(self.table, specs, &mut buf).map_err(compile_error)?;
        let mut links = KVec::new();
        let mut t = 0u32;
        for (i, c) in self.chains.iter().enumerate() {
            if tailed(i, c) {
                let chain = u32::try_from(i).unwrap_or(u32::MAX);
                links
                    .push(TailLink { chain, tail: t }, GFP_KERNEL)
                    .map_err(oom)?;
                t += 1;
            }
        }
        let Ok(m) = CompiledTable::new(&main) else {
            refuse!(EINVAL, "internal error: bad compiled table");
        };
        let Ok(tt) = CompiledTable::new(&buf) else {
            refuse!(EINVAL, "internal error: bad compiled tails");
        };
        compile::check_tails(&m, &tt, &links).map_err(compile_error)?;
        let image = TableImage::new(main, Some(TailImage { buf, links }), self.state.clone())?;
        self.image = Some(image);
        Ok(())
    }

    fn compile(&self, chains: &[Chain]) -> Result<KVVec<u8>, ChangeError> {
        compile_chains(self.table, chains, compile_error)
    }

    /// [`compile`](Self::compile), with `map` wording a compile error.
    fn compile_with(
        &self,
        chains: &[Chain],
        map: impl Fn(CompileError<'_>) -> ChangeError,
    ) -> Result<KVVec<u8>, ChangeError> {
        compile_chains(self.table, chains, map)
    }
}

/// Compiles `chains` as table `table`, with `map` wording a compile error
/// (no lock needed: a pure function of the chains).
fn compile_chains(
    table: Table,
    chains: &[Chain],
    map: impl Fn(CompileError<'_>) -> ChangeError,
) -> Result<KVVec<u8>, ChangeError> {
    let specs = chains.iter().map(|c| ChainSpec {
        name: c.name(),
        policy: c.hook.map(|_| c.policy),
        policy_counter: c.policy_slot,
        rules: c.rules.iter().map(|r| RuleRef {
            handle: r.handle,
            counter: r.slot,
            blob: &r.blob,
        }),
    });
    let size = compile::measure(table, specs.clone()).map_err(&map)?;
    let mut buf = KVVec::from_elem(0u8, size, GFP_KERNEL).map_err(oom)?;
    compile::fill(table, specs, &mut buf).map_err(&map)?;
    Ok(buf)
}

/// A copy of the chains of the tables whose tails are to be folded into
/// their main buffers, taken under the store's lock and compiled without
/// it (see [`RuleStore::compaction`]).
pub struct Compaction {
    generation: u64,
    tables: KVec<(Table, KVec<Chain>)>,
    compiled: KVec<KVVec<u8>>,
}

impl Compaction {
    /// Compiles the copied tables. Slow for a large table; run it without
    /// the store's lock.
    pub fn compile(&mut self) -> Result<(), ChangeError> {
        for (t, chains) in self.tables.iter() {
            let buf = compile_chains(*t, chains, compile_error)?;
            self.compiled.push(buf, GFP_KERNEL).map_err(oom)?;
        }
        Ok(())
    }
}

fn compile_error(e: CompileError<'_>) -> ChangeError {
    let code = if e.message.contains("reach itself") || e.message.contains("deep") {
        errno(ELOOP_)
    } else if e.message.contains("too many") {
        errno(E2BIG_)
    } else if e.message.contains("does not exist") || e.message.contains("no chain") {
        errno(ENOENT_)
    } else {
        EINVAL
    };
    fail(code, format_args!("{e}"))
}

/// A compile error of a restore, naming the rule by its position in its
/// chain (counted from 1) rather than by its new handle:
/// `"TABLE CHAIN rule N: ..."`, which rnfctl maps back to the file's line.
fn restore_compile_error(e: CompileError<'_>, table: Table, chains: &[Chain]) -> ChangeError {
    let at = e.chain.zip(e.handle).and_then(|(name, h)| {
        let c = chains.iter().find(|c| c.name() == name)?;
        let i = c.rules.iter().position(|r| r.handle == h)?;
        Some((name, i + 1))
    });
    let message = e.message;
    match at {
        Some((name, n)) => {
            let mut named = compile_error(e);
            named.text = Text::default();
            let _ = fmt::Write::write_fmt(
                &mut named.text,
                format_args!("{} {} rule {}: {}", table.name(), name, n, message),
            );
            named
        }
        None => compile_error(e),
    }
}

/// Where a new rule goes.
#[derive(Clone, Copy)]
pub enum Placement {
    /// At the end.
    Append,
    /// Before the rule at this 0-based position (the end if equal to the
    /// chain's length).
    Insert(u32),
    /// In place of the rule with this handle (which keeps its counters).
    Replace(u64),
}

/// Which rule to delete.
pub enum Victim<'a> {
    /// By handle.
    Handle(u64),
    /// The first rule with this exact blob.
    Blob(&'a [u8]),
}

/// A chain of a rule set being restored: name, policy (built-in chains)
/// and rule blobs in order (up to a whole table's, so possibly MBs of
/// slices: virtually contiguous).
pub type RestoreChain<'a> = (&'a str, Option<Policy>, KVVec<&'a [u8]>);

/// A whole table of a rule set being restored.
pub struct RestoreTable<'a> {
    /// The table.
    pub table: Table,
    /// Its chains.
    pub chains: KVec<RestoreChain<'a>>,
}

/// A table compiled by `replace`, waiting to be published.
struct Staged {
    table: Table,
    chains: KVec<Chain>,
    buf: KVVec<u8>,
}

/// The rule set of a namespace.
pub struct RuleStore {
    tables: KVec<TableRules>,
    next_handle: u64,
    generation: u64,
    /// Images replaced by changes whose readers may not have finished,
    /// oldest first: what they hold is settled once they are unused, so
    /// that a change does not wait for a grace period.
    pending: [Option<Pending>; MAX_PENDING],
    /// The namespace's connection tracker: it tracks packets only while a
    /// published rule needs it (see [`publish`](Self::publish)).
    tracker: Option<Arc<Conntrack>>,
    /// The namespace's hooks: registered as the published rules need them.
    hooks: Option<Arc<Hooks>>,
    /// The policy counters of the published tables' empty chains, by hook
    /// point: each counts what its point counts.
    policy: firewall::PolicyPoints,
    /// Per hook point, its count when it was last moved into the policy
    /// counter `policy` maps it to.
    policy_snap: [Counter; NUM_HOOK_POINTS],
}

/// Most replaced images kept waiting for their grace period; a change that
/// finds them all taken waits for the oldest.
const MAX_PENDING: usize = 8;

/// An image replaced by a change, and what becomes free with it.
struct Pending {
    image: Retired<Image>,
    /// Per table, slots of rules the change removed.
    released: [SlotStack; 4],
}

impl RuleStore {
    /// The empty rule set: every built-in chain, policy accept.
    pub fn new() -> Result<Self, ChangeError> {
        let mut tables = KVec::with_capacity(4, GFP_KERNEL).map_err(oom)?;
        for t in Table::ALL {
            tables.push(TableRules::new(t)?, GFP_KERNEL).map_err(oom)?;
        }
        Ok(Self {
            tables,
            next_handle: 1,
            generation: 1,
            pending: [const { None }; MAX_PENDING],
            tracker: None,
            hooks: None,
            policy: firewall::PolicyPoints::NONE,
            policy_snap: [Counter::default(); NUM_HOOK_POINTS],
        })
    }

    /// Compiles and publishes the empty rule set, so that built-in chains
    /// count what meets their policy from the start, as iptables' do.
    pub fn publish_initial(&mut self, out: &RcuBox<Image>) -> Result<(), ChangeError> {
        for tr in self.tables.iter_mut() {
            let chains = clone_chains(&tr.chains)?;
            let buf = tr.compile(&chains)?;
            tr.install(chains, buf)?;
        }
        self.publish(out)
    }

    /// Switches `ct` on and off with the rules that need it.
    pub fn set_tracker(&mut self, ct: Arc<Conntrack>) {
        self.tracker = Some(ct);
    }

    /// Registers and unregisters `hooks` with the rules from now on,
    /// starting with what the published rules need. May sleep.
    pub fn set_hooks(&mut self, hooks: Arc<Hooks>) -> Result<(), ChangeError> {
        self.hooks = Some(hooks);
        self.rehook()
    }

    /// Registers what the published rules need and unregisters the rest
    /// (after the hook counting setting changed). May sleep.
    pub fn rehook(&mut self) -> Result<(), ChangeError> {
        let Some(hooks) = &self.hooks else {
            return Ok(());
        };
        let mut tables: [Option<Arc<TableImage>>; 4] = [None, None, None, None];
        for (slot, tr) in tables.iter_mut().zip(self.tables.iter()) {
            *slot = tr.image.clone();
        }
        let track = self.tracker.as_ref().is_some_and(|ct| ct.active());
        let nat_used = self.tracker.as_ref().is_some_and(|ct| ct.nat_used());
        let points = firewall::wanted_points(&tables, track, nat_used);
        hooks.enable(points, track).map_err(hooks_failed)?;
        hooks.trim(points, track);
        Ok(())
    }

    /// The generation: incremented by every change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The tables, in `Table` order.
    pub fn tables(&self) -> &[TableRules] {
        &self.tables
    }

    /// Refuses a writer that read an older generation.
    pub fn check_generation(&self, seen: Option<u64>) -> Result<(), ChangeError> {
        match seen {
            Some(g) if g != self.generation => refuse!(
                errno(ESTALE_),
                "rule set changed: generation is now {}, not {}",
                self.generation,
                g
            ),
            _ => Ok(()),
        }
    }

    fn table_mut(&mut self, t: Table) -> Result<&mut TableRules, ChangeError> {
        match self.tables.get_mut(t as usize) {
            Some(tr) => Ok(tr),
            None => refuse!(EINVAL, "unknown table"),
        }
    }

    /// Compiles `chains` for table `t` and, if that works, makes them the
    /// table's rules and publishes a new image into `out`.
    fn commit(
        &mut self,
        t: Table,
        chains: KVec<Chain>,
        out: &RcuBox<Image>,
    ) -> Result<(), ChangeError> {
        let tr = self.table_mut(t)?;
        let buf = tr.compile(&chains)?;
        tr.install(chains, buf)?;
        self.generation += 1;
        self.publish(out)
    }

    /// Publishes the tables' current images as one new [`Image`]. The old
    /// one waits in `pending` for its readers to finish (no grace period
    /// is waited for here unless `pending` is full); see [`settle`](Self::settle).
    fn publish(&mut self, out: &RcuBox<Image>) -> Result<(), ChangeError> {
        let mut tables: [Option<Arc<TableImage>>; 4] = [None, None, None, None];
        for (slot, tr) in tables.iter_mut().zip(self.tables.iter()) {
            *slot = tr.image.clone();
        }
        let track = tables.iter().flatten().any(|t| t.needs_conntrack());
        let nat = tables[Table::Nat as usize]
            .as_ref()
            .is_some_and(|t| !t.passive());
        let tracker = self.tracker.as_ref();
        // The NAT stages run once a nat rule can have bound a flow: flag
        // that before the rule can be seen.
        if nat {
            tracker.inspect(|ct| ct.set_nat_used());
        }
        let nat_used = tracker.is_some_and(|ct| ct.nat_used());
        let points = firewall::wanted_points(&tables, track, nat_used);
        let policy = firewall::PolicyPoints::of(&tables);
        let image = KBox::new(Image { tables }, GFP_KERNEL).map_err(oom)?;
        // What the new rules need is hooked before they can be seen; what
        // only the old ones needed is unhooked after (below).
        if let Some(h) = &self.hooks {
            h.enable(points, track).map_err(hooks_failed)?;
        }
        // Tracking starts before the first rule that needs it can be seen,
        // and stops only after the last one is gone (as nftables registers
        // conntrack's hooks only while a rule uses them).
        if track {
            tracker.inspect(|ct| ct.set_active(true));
        }
        if self.pending.iter().all(Option::is_some) {
            self.settle_oldest()?;
        }
        let mut released = [const { SlotStack::new() }; 4];
        for (r, tr) in released.iter_mut().zip(self.tables.iter_mut()) {
            core::mem::swap(r, &mut tr.released);
        }
        let retired = out.replace(Some(image));
        // The empty chains' policy counters take what their points counted
        // under the old tables; the new tables' ones count from here.
        self.settle_policy();
        self.policy = policy;
        if !track {
            self.tracker.as_ref().inspect(|ct| ct.set_active(false));
        }
        if let Some(h) = &self.hooks {
            h.trim(points, track);
        }
        if let Some(free) = self.pending.iter_mut().find(|p| p.is_none()) {
            *free = Some(Pending {
                image: retired,
                released,
            });
        }
        self.settle(false)
    }

    /// Settles the replaced images no reader uses any more (all of them,
    /// waiting for their grace periods, if `wait`), oldest first.
    fn settle(&mut self, wait: bool) -> Result<(), ChangeError> {
        while self
            .pending
            .first()
            .is_some_and(|p| p.as_ref().is_some_and(|p| wait || p.image.unused()))
        {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Waits until counts that readers of replaced images may still add to
    /// a slot state the tables no longer use have all been moved into the
    /// tables' bases, so that listed counters are exact.
    pub fn settle_counts(&mut self) -> Result<(), ChangeError> {
        self.settle_policy();
        let stale = self.pending.iter().flatten().any(|p| {
            p.image.get().is_some_and(|img| {
                img.tables.iter().zip(self.tables.iter()).any(|(t, tr)| {
                    t.as_ref()
                        .is_some_and(|t| !Arc::ptr_eq(&t.state, &tr.state))
                })
            })
        });
        self.settle(stale)
    }

    /// Moves into each empty chain's policy counter (its `base`) what its
    /// hook points counted since the last time: the packet path adds to
    /// the points' counts only (see `hookcount`). A point that just became
    /// mapped starts from its count now.
    fn settle_policy(&mut self) {
        let Some(counts) = self.hooks.as_ref().map(|h| h.point_counts()) else {
            return;
        };
        for (p, (snap, now)) in self.policy_snap.iter_mut().zip(counts).enumerate() {
            let moved = now.minus(*snap);
            *snap = now;
            if self.policy.mask & (1u64 << p) == 0 {
                continue;
            }
            if let Some(&(t, slot)) = self.policy.at.get(p) {
                if let Some(tr) = self.tables.get_mut(usize::from(t)) {
                    tr.add_base(slot, moved);
                }
            }
        }
    }

    /// Settles the oldest replaced image, waiting for its grace period if
    /// needed: its tables' released slots become reusable, and counts left
    /// in a slot state the table no longer uses (and no later image uses)
    /// move into `base`.
    fn settle_oldest(&mut self) -> Result<(), ChangeError> {
        let Some(first) = self.pending.first_mut() else {
            return Ok(());
        };
        let Some(p) = first.take() else {
            return Ok(());
        };
        self.pending.rotate_left(1);
        let Pending {
            image,
            mut released,
        } = p;
        let old = image.into_inner();
        for (i, (tr, rel)) in self.tables.iter_mut().zip(released.iter_mut()).enumerate() {
            let old_table = old
                .as_ref()
                .and_then(|o| o.tables.get(i))
                .and_then(|t| t.as_ref());
            if let Some(old_table) = old_table {
                let later = self.pending.iter().flatten().any(|p| {
                    p.image
                        .get()
                        .and_then(|img| img.tables.get(i))
                        .and_then(|t| t.as_ref())
                        .is_some_and(|t| Arc::ptr_eq(&t.state, &old_table.state))
                });
                if !later && !Arc::ptr_eq(&old_table.state, &tr.state) {
                    for s in 0..old_table.state.slots() {
                        let c = old_table.state.counters.sum(s);
                        if let Some(b) = tr.base.get_mut(s as usize) {
                            b.packets = b.packets.wrapping_add(c.packets);
                            b.bytes = b.bytes.wrapping_add(c.bytes);
                        }
                    }
                }
            }
            while let Some(s) = rel.pop() {
                tr.free.push(s)?;
            }
        }
        Ok(())
    }

    /// Frees `slot` of table `t`, whose rule the last publication removed:
    /// once the image it replaced is unused.
    fn release_published(&mut self, t: Table, slot: u32) -> Result<(), ChangeError> {
        let latest = self.pending.iter_mut().rev().flatten().next();
        match latest.and_then(|p| p.released.get_mut(t as usize)) {
            Some(r) => r.push(slot),
            None => self.table_mut(t)?.free.push(slot),
        }
    }

    /// Adds a rule; returns its handle.
    pub fn add_rule(
        &mut self,
        t: Table,
        chain: &str,
        blob: &[u8],
        place: Placement,
        out: &RcuBox<Image>,
    ) -> Result<u64, ChangeError> {
        if blob.len() > rules::MAX_RULE_SIZE {
            refuse!(errno(E2BIG_), "rule too large");
        }
        if let Err(e) = rules::validate(blob) {
            refuse!(EINVAL, "{}", e.message);
        }
        if matches!(place, Placement::Append) {
            let tr = self.table_mut(t)?;
            if let Some(ci) = TableRules::find_chain(&tr.chains, chain) {
                if tr.can_append(ci, blob) {
                    return self.append_to_tails(t, ci, blob, out);
                }
            }
        }
        let handle = self.next_handle;
        let tr = self.table_mut(t)?;
        let mut chains = clone_chains(&tr.chains)?;
        let Some(ci) = TableRules::find_chain(&chains, chain) else {
            refuse!(errno(ENOENT_), "no chain '{}' in table {}", chain, t.name());
        };
        if !matches!(place, Placement::Replace(_)) {
            room_for_one(&chains, t)?;
        }
        let copy = owned(blob)?;
        let Some(c) = chains.get_mut(ci) else {
            refuse!(errno(ENOENT_), "no chain '{}'", chain);
        };
        let (slot, handle, index, replaced) = match place {
            Placement::Replace(h) => {
                let Some(i) = c.rules.iter().position(|r| r.handle == h) else {
                    refuse!(
                        errno(ENOENT_),
                        "no rule with handle {} in chain '{}'",
                        h,
                        chain
                    );
                };
                let slot = c.rules.get(i).map(|r| r.slot).unwrap_or(0);
                (slot, h, i, true)
            }
            Placement::Append => (u32::MAX, handle, c.rules.len(), false),
            Placement::Insert(p) => {
                if p as usize > c.rules.len() {
                    refuse!(
                        errno(ERANGE_),
                        "position {} is past the end of chain '{}' ({} rules)",
                        p + 1,
                        chain,
                        c.rules.len()
                    );
                }
                (u32::MAX, handle, p as usize, false)
            }
        };
        let slot = if replaced { slot } else { tr.alloc_slot()? };
        let rule = Arc::new(
            Rule {
                handle,
                slot,
                blob: copy,
            },
            GFP_KERNEL,
        )
        .map_err(oom)?;
        let Some(c) = chains.get_mut(ci) else {
            refuse!(errno(ENOENT_), "no chain '{}'", chain);
        };
        if replaced {
            if let Some(r) = c.rules.get_mut(index) {
                *r = rule;
            }
        } else {
            insert_at(&mut c.rules, index, rule)?;
        }
        match self.commit(t, chains, out) {
            Ok(()) => {
                if replaced {
                    // A replaced rule counts from zero, as with iptables -R.
                    self.table_mut(t)?.zero_slot(slot);
                } else {
                    self.next_handle += 1;
                }
                Ok(handle)
            }
            Err(e) => {
                if !replaced {
                    let tr = self.table_mut(t)?;
                    tr.free.push(slot)?;
                }
                Err(e)
            }
        }
    }

    /// Whether some table's tails are large enough to be folded into its
    /// main buffer in the background.
    pub fn wants_compaction(&self) -> bool {
        self.tables.iter().any(TableRules::wants_compaction)
    }

    /// Starts a compaction: copies the chains of every table with tails
    /// (their rules are shared, not copied). `None` if there is nothing to
    /// fold.
    pub fn compaction(&self) -> Result<Option<Compaction>, ChangeError> {
        let mut tables = KVec::new();
        for tr in self.tables.iter() {
            if tr.tail_rules() > 0 {
                tables
                    .push((tr.table, clone_chains(&tr.chains)?), GFP_KERNEL)
                    .map_err(oom)?;
            }
        }
        if tables.is_empty() {
            return Ok(None);
        }
        Ok(Some(Compaction {
            generation: self.generation,
            tables,
            compiled: KVec::new(),
        }))
    }

    /// Publishes a compiled compaction if the rule set has not changed
    /// since it was started (then the copied chains are the current ones);
    /// returns whether it did. The rules, their handles and counters stay:
    /// only how they are compiled changes, so the generation does not.
    pub fn finish_compaction(
        &mut self,
        c: Compaction,
        out: &RcuBox<Image>,
    ) -> Result<bool, ChangeError> {
        if c.generation != self.generation || c.compiled.len() != c.tables.len() {
            return Ok(false);
        }
        for ((t, chains), buf) in c.tables.into_iter().zip(c.compiled) {
            self.table_mut(t)?.install(chains, buf)?;
        }
        self.publish(out)?;
        Ok(true)
    }

    /// Appends a rule to chain `ci` of table `t` by recompiling only the
    /// table's tails ([`TableRules::can_append`] said it may): the cost
    /// of the change does not grow with the table. Returns its handle.
    fn append_to_tails(
        &mut self,
        t: Table,
        ci: usize,
        blob: &[u8],
        out: &RcuBox<Image>,
    ) -> Result<u64, ChangeError> {
        let handle = self.next_handle;
        let tr = self.table_mut(t)?;
        room_for_one(&tr.chains, t)?;
        let copy = owned(blob)?;
        let slot = tr.alloc_slot()?;
        let staged = Arc::new(
            Rule {
                handle,
                slot,
                blob: copy,
            },
            GFP_KERNEL,
        )
        .map_err(oom)
        .and_then(|rule| {
            // Room first, so that once the tails are in the image nothing
            // can fail.
            match tr.chains.get_mut(ci) {
                Some(c) => c.rules.reserve(1, GFP_KERNEL).map_err(oom)?,
                None => refuse!(errno(ENOENT_), "no such chain"),
            }
            tr.install_tails(ci, &rule)?;
            Ok(rule)
        });
        let rule = match staged {
            Ok(rule) => rule,
            Err(e) => {
                tr.free.push(slot)?;
                return Err(e);
            }
        };
        if let Some(c) = tr.chains.get_mut(ci) {
            c.rules.push(rule, GFP_KERNEL).map_err(oom)?;
        }
        self.next_handle += 1;
        self.generation += 1;
        self.publish(out)?;
        Ok(handle)
    }

    /// Deletes a rule.
    pub fn del_rule(
        &mut self,
        t: Table,
        chain: &str,
        victim: Victim<'_>,
        out: &RcuBox<Image>,
    ) -> Result<(), ChangeError> {
        let tr = self.table_mut(t)?;
        let mut chains = clone_chains(&tr.chains)?;
        let c = chain_mut(&mut chains, chain, t)?;
        let pos = match victim {
            Victim::Handle(h) => c.rules.iter().position(|r| r.handle == h),
            Victim::Blob(b) => c.rules.iter().position(|r| &r.blob[..] == b),
        };
        let Some(pos) = pos else {
            match victim {
                Victim::Handle(h) => {
                    refuse!(
                        errno(ENOENT_),
                        "no rule with handle {} in chain '{}'",
                        h,
                        chain
                    )
                }
                Victim::Blob(_) => refuse!(errno(ENOENT_), "no such rule in chain '{}'", chain),
            }
        };
        let slot = c.rules.get(pos).map(|r| r.slot).unwrap_or(0);
        c.rules = without(&c.rules, pos)?;
        self.commit(t, chains, out)?;
        self.release_published(t, slot)
    }

    fn for_each_table(
        &mut self,
        t: Option<Table>,
        mut f: impl FnMut(&mut TableRules) -> Result<bool, ChangeError>,
    ) -> Result<bool, ChangeError> {
        let mut any = false;
        for tr in self.tables.iter_mut() {
            if t.map_or(true, |t| t == tr.table) {
                any |= f(tr)?;
            }
        }
        Ok(any)
    }

    /// Deletes every rule of a table or chain (all tables if `t` is None).
    pub fn flush(
        &mut self,
        t: Option<Table>,
        chain: Option<&str>,
        out: &RcuBox<Image>,
    ) -> Result<(), ChangeError> {
        let targets: KVec<Table> = {
            let mut v = KVec::new();
            for tr in self.tables.iter() {
                if t.map_or(true, |t| t == tr.table) {
                    v.push(tr.table, GFP_KERNEL).map_err(oom)?;
                }
            }
            v
        };
        for table in targets.iter().copied() {
            let tr = self.table_mut(table)?;
            let mut chains = clone_chains(&tr.chains)?;
            if let Some(name) = chain {
                if TableRules::find_chain(&chains, name).is_none() {
                    refuse!(
                        errno(ENOENT_),
                        "no chain '{}' in table {}",
                        name,
                        table.name()
                    );
                }
            }
            let mut freed = KVec::new();
            for c in chains.iter_mut() {
                if chain.map_or(true, |n| n == c.name()) {
                    for r in c.rules.iter() {
                        freed.push(r.slot, GFP_KERNEL).map_err(oom)?;
                    }
                    c.rules = KVec::new();
                }
            }
            self.commit(table, chains, out)?;
            for s in freed {
                self.release_published(table, s)?;
            }
        }
        Ok(())
    }

    /// Resets counters of a table or chain (all tables if `t` is None).
    pub fn zero(&mut self, t: Option<Table>, chain: Option<&str>) -> Result<(), ChangeError> {
        self.settle_counts()?;
        let found = self.for_each_table(t, |tr| {
            let mut slots = KVec::new();
            let mut found = false;
            for c in tr.chains.iter() {
                if chain.map_or(true, |n| n == c.name()) {
                    found = true;
                    if c.hook.is_some() {
                        slots.push(c.policy_slot, GFP_KERNEL).map_err(oom)?;
                    }
                    for r in c.rules.iter() {
                        slots.push(r.slot, GFP_KERNEL).map_err(oom)?;
                    }
                }
            }
            for s in slots {
                tr.zero_slot(s);
            }
            Ok(found)
        })?;
        if let (Some(name), false) = (chain, found) {
            refuse!(errno(ENOENT_), "no chain '{}'", name);
        }
        Ok(())
    }

    /// Sets a built-in chain's policy.
    pub fn set_policy(
        &mut self,
        t: Table,
        chain: &str,
        policy: Policy,
        out: &RcuBox<Image>,
    ) -> Result<(), ChangeError> {
        let tr = self.table_mut(t)?;
        let mut chains = clone_chains(&tr.chains)?;
        let c = chain_mut(&mut chains, chain, t)?;
        if c.hook.is_none() {
            refuse!(
                EINVAL,
                "'{}' is a user chain: only built-in chains have a policy",
                chain
            );
        }
        c.policy = policy;
        self.commit(t, chains, out)
    }

    /// Creates an empty user chain.
    pub fn new_chain(
        &mut self,
        t: Table,
        name: &str,
        out: &RcuBox<Image>,
    ) -> Result<(), ChangeError> {
        if let Err(e) = rules::validate_chain_name(name) {
            refuse!(EINVAL, "{}", e.message);
        }
        let Some(n) = Name::new(name) else {
            refuse!(EINVAL, "chain name too long");
        };
        if rules::builtin_chain_hook(name).is_some() {
            refuse!(errno(EEXIST_), "'{}' is the name of a built-in chain", name);
        }
        let tr = self.table_mut(t)?;
        let mut chains = clone_chains(&tr.chains)?;
        if TableRules::find_chain(&chains, name).is_some() {
            refuse!(
                errno(EEXIST_),
                "chain '{}' exists in table {}",
                name,
                t.name()
            );
        }
        if chains.len() >= rules::MAX_CHAINS {
            refuse!(
                errno(ENOSPC_),
                "table {} has the most chains allowed",
                t.name()
            );
        }
        chains.push(Chain::user(n), GFP_KERNEL).map_err(oom)?;
        self.commit(t, chains, out)
    }

    /// Deletes an empty user chain that no rule jumps to.
    pub fn del_chain(
        &mut self,
        t: Table,
        name: &str,
        out: &RcuBox<Image>,
    ) -> Result<(), ChangeError> {
        let tr = self.table_mut(t)?;
        let chains = clone_chains(&tr.chains)?;
        let Some(i) = TableRules::find_chain(&chains, name) else {
            refuse!(errno(ENOENT_), "no chain '{}' in table {}", name, t.name());
        };
        match chains.get(i) {
            Some(c) if c.hook.is_some() => {
                refuse!(
                    EINVAL,
                    "'{}' is a built-in chain and cannot be deleted",
                    name
                )
            }
            Some(c) if !c.rules.is_empty() => refuse!(
                errno(EBUSY_),
                "chain '{}' is not empty ({} rules): flush it first",
                name,
                c.rules.len()
            ),
            _ => {}
        }
        let chains = without_chain(&chains, i)?;
        self.commit(t, chains, out).map_err(|e| referenced(e, name))
    }

    /// Renames a user chain that no rule jumps to.
    pub fn rename_chain(
        &mut self,
        t: Table,
        name: &str,
        new_name: &str,
        out: &RcuBox<Image>,
    ) -> Result<(), ChangeError> {
        if let Err(e) = rules::validate_chain_name(new_name) {
            refuse!(EINVAL, "{}", e.message);
        }
        let Some(n) = Name::new(new_name) else {
            refuse!(EINVAL, "chain name too long");
        };
        if rules::builtin_chain_hook(new_name).is_some() {
            refuse!(
                errno(EEXIST_),
                "'{}' is the name of a built-in chain",
                new_name
            );
        }
        let tr = self.table_mut(t)?;
        let mut chains = clone_chains(&tr.chains)?;
        if TableRules::find_chain(&chains, new_name).is_some() {
            refuse!(
                errno(EEXIST_),
                "chain '{}' exists in table {}",
                new_name,
                t.name()
            );
        }
        let c = chain_mut(&mut chains, name, t)?;
        if c.hook.is_some() {
            refuse!(
                EINVAL,
                "'{}' is a built-in chain and cannot be renamed",
                name
            );
        }
        c.name = n;
        self.commit(t, chains, out).map_err(|e| referenced(e, name))
    }

    /// Replaces the given tables' rules as one change: every table is
    /// compiled first, and only if all compile are they published, in one
    /// image. Tables not given are left as they are.
    pub fn replace(
        &mut self,
        new: &[RestoreTable<'_>],
        out: &RcuBox<Image>,
    ) -> Result<(), ChangeError> {
        // Build and compile everything before touching the store.
        let mut staged: KVec<Staged> = KVec::new();
        let mut handle = self.next_handle;
        for rt in new {
            let tr = self.table_mut(rt.table)?;
            if staged.iter().any(|s| s.table == rt.table) {
                refuse!(EINVAL, "table {} given twice", rt.table.name());
            }
            // Every old rule's slot may be reused by the new rules.
            let mut slots = KVec::new();
            for c in tr.chains.iter() {
                for r in c.rules.iter() {
                    slots.push(r.slot, GFP_KERNEL).map_err(oom)?;
                }
            }
            // Built-in chains stay (with their policy slots), emptied and
            // back to policy accept unless the new set says otherwise; user
            // chains exist only if the new set names them.
            let mut chains = KVec::new();
            for c in tr.chains.iter().filter(|c| c.hook.is_some()) {
                chains.push(c.emptied(), GFP_KERNEL).map_err(oom)?;
            }
            let mut new_slots = KVec::new();
            let mut reused = 0usize;
            for (name, policy, blobs) in rt.chains.iter() {
                let ci = match TableRules::find_chain(&chains, name) {
                    Some(i) => i,
                    None => {
                        if let Err(e) = rules::validate_chain_name(name) {
                            refuse!(EINVAL, "{}", e.message);
                        }
                        let Some(n) = Name::new(name) else {
                            refuse!(EINVAL, "chain name too long");
                        };
                        chains.push(Chain::user(n), GFP_KERNEL).map_err(oom)?;
                        chains.len() - 1
                    }
                };
                let Some(c) = chains.get_mut(ci) else {
                    refuse!(EINVAL, "bad chain");
                };
                if let Some(p) = policy {
                    if c.hook.is_none() {
                        refuse!(
                            EINVAL,
                            "'{}' is a user chain: only built-in chains have a policy",
                            name
                        );
                    }
                    c.policy = *p;
                }
                for blob in blobs.iter() {
                    let n = chains.get(ci).map_or(0, |c| c.rules.len()) + 1;
                    if let Err(e) = rules::validate(blob) {
                        // "TABLE CHAIN rule N: ...", N counted from 1 in the
                        // chain: rnfctl maps it back to the file's line.
                        refuse!(
                            EINVAL,
                            "{} {} rule {}: {}",
                            rt.table.name(),
                            name,
                            n,
                            e.message
                        );
                    }
                    let copy = owned(blob)?;
                    let slot = match slots.get(reused).copied() {
                        Some(s) => {
                            reused += 1;
                            s
                        }
                        None => {
                            let tr = self.table_mut(rt.table)?;
                            let s = tr.alloc_slot()?;
                            new_slots.push(s, GFP_KERNEL).map_err(oom)?;
                            s
                        }
                    };
                    let rule = Arc::new(
                        Rule {
                            handle,
                            slot,
                            blob: copy,
                        },
                        GFP_KERNEL,
                    )
                    .map_err(oom)?;
                    handle += 1;
                    let Some(c) = chains.get_mut(ci) else {
                        refuse!(EINVAL, "bad chain");
                    };
                    c.rules.push(rule, GFP_KERNEL).map_err(oom)?;
                }
            }
            let tr = self.table_mut(rt.table)?;
            let table = rt.table;
            let buf = match tr.compile_with(&chains, |e| restore_compile_error(e, table, &chains)) {
                Ok(b) => b,
                Err(e) => {
                    for s in new_slots {
                        tr.free.push(s)?;
                    }
                    return Err(e);
                }
            };
            // Slots of old rules not reused become free after publication.
            for s in slots.iter().skip(reused).copied() {
                tr.released.push(s)?;
            }
            staged
                .push(
                    Staged {
                        table: rt.table,
                        chains,
                        buf,
                    },
                    GFP_KERNEL,
                )
                .map_err(oom)?;
        }
        for Staged {
            table: t,
            chains,
            buf,
        } in staged
        {
            let tr = self.table_mut(t)?;
            // Reused slots start from zero, as fresh rules.
            for c in chains.iter() {
                for r in c.rules.iter() {
                    tr.zero_slot(r.slot);
                }
            }
            tr.install(chains, buf)?;
        }
        self.next_handle = handle;
        self.generation += 1;
        self.publish(out)
    }
}

/// Refuses a new rule in a table that has the most rules allowed.
fn room_for_one(chains: &[Chain], t: Table) -> Result<(), ChangeError> {
    let total: usize = chains.iter().map(|c| c.rules.len()).sum();
    if total >= rules::MAX_RULES {
        refuse!(
            errno(ENOSPC_),
            "table {} has the most rules allowed",
            t.name()
        );
    }
    Ok(())
}

/// A copy of a rule blob for the store.
fn owned(blob: &[u8]) -> Result<KVec<u8>, ChangeError> {
    let mut copy = KVec::with_capacity(blob.len(), GFP_KERNEL).map_err(oom)?;
    copy.extend_from_slice(blob, GFP_KERNEL).map_err(oom)?;
    Ok(copy)
}

fn insert_at(v: &mut KVec<Arc<Rule>>, index: usize, item: Arc<Rule>) -> Result<(), ChangeError> {
    v.push(item, GFP_KERNEL).map_err(oom)?;
    let len = v.len();
    if index < len {
        v[index..].rotate_right(1);
    }
    Ok(())
}

/// The chain called `name` in `chains` (of table `t`).
fn chain_mut<'c>(
    chains: &'c mut [Chain],
    name: &str,
    t: Table,
) -> Result<&'c mut Chain, ChangeError> {
    match TableRules::find_chain(chains, name).and_then(|i| chains.get_mut(i)) {
        Some(c) => Ok(c),
        None => refuse!(errno(ENOENT_), "no chain '{}' in table {}", name, t.name()),
    }
}

/// A chain that disappears (deleted or renamed) while a rule still jumps
/// to it fails to compile with ENOENT; say why in the user's terms.
fn referenced(e: ChangeError, name: &str) -> ChangeError {
    if e.errno == errno(ENOENT_) {
        fail(
            errno(EBUSY_),
            format_args!("chain '{}' is the target of a jump or goto", name),
        )
    } else {
        e
    }
}

fn without(v: &[Arc<Rule>], index: usize) -> Result<KVec<Arc<Rule>>, ChangeError> {
    let mut out = KVec::with_capacity(v.len().saturating_sub(1), GFP_KERNEL).map_err(oom)?;
    for (i, r) in v.iter().enumerate() {
        if i != index {
            out.push(r.clone(), GFP_KERNEL).map_err(oom)?;
        }
    }
    Ok(out)
}

fn without_chain(v: &[Chain], index: usize) -> Result<KVec<Chain>, ChangeError> {
    let mut out = KVec::with_capacity(v.len().saturating_sub(1), GFP_KERNEL).map_err(oom)?;
    for (i, c) in v.iter().enumerate() {
        if i != index {
            out.push(clone_chain(c)?, GFP_KERNEL).map_err(oom)?;
        }
    }
    Ok(out)
}

/// A stack of free counter slots.
struct SlotStack {
    items: KVec<u32>,
    top: usize,
}

impl SlotStack {
    const fn new() -> Self {
        Self {
            items: KVec::new(),
            top: 0,
        }
    }

    fn push(&mut self, slot: u32) -> Result<(), ChangeError> {
        match self.items.get_mut(self.top) {
            Some(x) => *x = slot,
            None => self.items.push(slot, GFP_KERNEL).map_err(oom)?,
        }
        self.top += 1;
        Ok(())
    }

    fn pop(&mut self) -> Option<u32> {
        self.top = self.top.checked_sub(1)?;
        self.items.get(self.top).copied()
    }
}
