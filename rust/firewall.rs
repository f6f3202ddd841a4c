// SPDX-License-Identifier: GPL-2.0

//! rnf's state in each network namespace and what its hooks do.
//!
//! Every namespace has rnf's hooks at each of the 28 attachment points
//! (`hooks::HOOK_STAGES` for IPv4 and IPv6): the points where iptables has
//! its raw, mangle, nat and filter tables, at the same priorities. Each point
//! counts the packets and bytes it sees, then evaluates its table's compiled
//! rules. Connection tracking (`conntrack`) has its own hooks, between raw
//! and mangle; rules after it see its result. The nat table is consulted
//! for a flow's first packet only; its decision is bound to the flow and
//! applied to every packet of it.
//!
//! A point is hooked only while it has work to do (its chain has rules or
//! drops; for NAT, once the namespace has had a nat rule, while packets
//! are tracked), and tracking's hooks only while a rule needs tracking: a
//! netfilter hook costs a call per packet even when it returns at once.
//! One counting hook per (family, hook) without a hooked point, first of
//! rnf's, counts the packets that arrive there, so the counters read as if
//! every point were hooked: the packet path keeps a few tallies per hook
//! and every point's count, and the policy counter of an empty chain,
//! follows from them (`hookcount`).

use crate::conntrack::{Conntrack, PacketCt};
use crate::ct::{self, CtState, Direction};
use crate::eval::{EvalEnv, Verdict as RuleVerdict};
use crate::hookcount::{self, Layout, PointBooks, Tally, NUM_TALLIES};
use crate::hooks::{self, Family, Hook, Stage, NUM_HOOK_POINTS};
use crate::nat::Manip;
use crate::net::Net;
use crate::netfilter::{self, Defrag, HookSpec, HookState, Verdict};
use crate::packet::{self, PacketFacts};
use crate::percpu::{Counter, PacketNote, PerCpuCounters};
use crate::pernet::{self, NetData, NetId, NetRef, PreExit};
use crate::rcu::RcuBox;
use crate::rules::{Limit, Table};
use crate::ruleset::{ChangeError, Image, RuleStore, SlotState, TableImage};
use crate::skb::{HeaderBuf, SkBuff};
use crate::sys;
use crate::wire::HookStat;
use crate::work::{DelayedWork, WorkFn};
use core::cell::OnceCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

static NET_ID: NetId = NetId::new();

/// Bytes of headers copied out of a packet for matching: IPv4 with options
/// or IPv6 with a few extension headers, plus the transport header.
const HEADER_BYTES: usize = 128;

/// Counting hooks: one per (family, hook), tagged after the hook points in
/// `hookcount::family_hook_index` order.
const NUM_COUNT_POINTS: usize = hookcount::NUM_FAMILY_HOOKS;
/// The counting hooks run first of rnf's (after reassembly at -400).
const COUNT_PRIORITY: i32 = Stage::Raw.priority() - 1;
/// In a [`Hooks`] mask: the hook points.
const POINT_MASK: u64 = (1 << NUM_HOOK_POINTS) - 1;
/// Tracking's hooks, all of them.
const CT_MASK: u64 = (1 << Conntrack::HOOKS.len()) - 1;
/// Tracking's hooks are tagged from here on (after the counting hooks).
const CT_TAG: usize = NUM_HOOK_POINTS + NUM_COUNT_POINTS;

/// The kinds of hook ([`netfilter::HookSpec::kind`]), each served by a
/// callback compiled on its own: a counting hook.
const KIND_COUNT: u8 = 0;
/// A tracking hook of [`Conntrack`].
const KIND_TRACK: u8 = 1;
/// A confirming hook of [`Conntrack`].
const KIND_CONFIRM: u8 = 2;
/// A raw, mangle or filter hook point.
const KIND_RULES: u8 = 3;
/// An IPv4 NAT hook point.
const KIND_NAT: u8 = 4;
/// An IPv6 NAT hook point.
const KIND_NAT6: u8 = 5;
const _: () = assert!(KIND_NAT6 < netfilter::KINDS);

/// What the packet path of one namespace uses.
pub struct PacketPath {
    /// Which hook points are hooked (bit `i`: point `i`); the counting
    /// hooks count for the others.
    hooked: AtomicU64,
    /// Whether packets are counted at hook points without work (by the
    /// counting hooks and the hooked points): `rnfctl hook-counters`.
    counting: AtomicBool,
    /// Whether tracking's hooks count for the (family, hook)s they sit on
    /// (those have no counting hook while tracking's hooks are there).
    ct_counts: AtomicBool,
    /// Which of tracking's hooks (bit `i`: `Conntrack::HOOKS[i]`) are not
    /// registered because the NAT point of their (family, hook) does
    /// their work (`hooks::fused_ct_hooks`).
    fused: AtomicU64,
    /// The tallies of `hookcount::Tally`, per CPU.
    tallies: PerCpuCounters,
    /// What the tallies add up to per point, across layouts.
    books: Pin<KBox<Mutex<PointBooks>>>,
    /// The compiled rule set, replaced as a whole on every change.
    pub image: RcuBox<Image>,
    /// Connection tracking, whose result rules match on.
    pub ct: Arc<Conntrack>,
}

impl PacketPath {
    /// A packet path that counts at hook points without work if
    /// `counting`.
    fn new(ct: Arc<Conntrack>, counting: bool) -> Result<Self> {
        Ok(Self {
            hooked: AtomicU64::new(0),
            counting: AtomicBool::new(counting),
            ct_counts: AtomicBool::new(false),
            fused: AtomicU64::new(0),
            tallies: PerCpuCounters::new(NUM_TALLIES as u32)?,
            books: KBox::pin_init(
                new_mutex!(PointBooks::new(Layout {
                    hooked: 0,
                    counting,
                })),
                GFP_KERNEL,
            )?,
            image: RcuBox::empty(),
            ct,
        })
    }

    /// Counts a packet in tally `t` on this CPU.
    #[inline(always)]
    fn tally(&self, t: Tally, skb: &SkBuff) {
        self.tallies.add(t.index() as u32, u64::from(skb.len()));
    }

    /// The packets and bytes counted at hook point `point`.
    pub fn counted(&self, point: u32) -> Counter {
        let books = self.books.lock();
        books.count(point as usize, |t| self.tallies.sum(t.index() as u32))
    }

    /// The packets and bytes counted at every hook point, read under one
    /// lock of the books.
    pub fn counted_all(&self) -> [Counter; NUM_HOOK_POINTS] {
        let books = self.books.lock();
        core::array::from_fn(|p| books.count(p, |t| self.tallies.sum(t.index() as u32)))
    }

    /// The packet path counts as `hooked` and `counting` say from now on
    /// (each point keeps its count): called whenever either changes.
    fn relayout(&self) {
        let layout = Layout {
            hooked: self.hooked.load(Ordering::Relaxed),
            counting: self.hook_counting(),
        };
        let mut books = self.books.lock();
        if books.layout() != layout {
            books.relayout(layout, |t| self.tallies.sum(t.index() as u32));
        }
    }

    /// Whether packets are counted at hook points without work.
    pub fn hook_counting(&self) -> bool {
        self.counting.load(Ordering::Relaxed)
    }
}

impl PacketPath {
    /// Counts the packet's arrival at (family, hook) `fh` (of
    /// `hookcount::family_hook_index`), none of whose points is hooked:
    /// what each of its points then counts. Inlined into its callers (a
    /// counting hook does nothing else; under emulation a call and return
    /// cost more than the counting).
    #[inline(always)]
    pub(crate) fn count_arrival(&self, fh: usize, skb: &SkBuff) {
        if self.hook_counting() {
            self.tally(Tally::Arrived(fh), skb);
        }
    }
}

impl PacketPath {
    /// Tracking's hook `i` (of `Conntrack::HOOKS`): counts for its
    /// (family, hook) while that has no hooked point (tracking's hooks
    /// replace the counting hooks there), then tracks (`TRACK`) or
    /// confirms. Inlined into netfilter's callback, as
    /// [`stage`](Self::stage) is: under emulation each call and return per
    /// hook showed.
    #[inline(always)]
    fn ct_hook<const TRACK: bool>(&self, i: usize, skb: &SkBuff, state: &HookState<'_>) -> Verdict {
        if let Some(&(points, fh)) = CT_HOOK_COUNTS.get(i) {
            if self.ct_counts.load(Ordering::Relaxed)
                && self.hooked.load(Ordering::Relaxed) & points == 0
            {
                self.count_arrival(fh, skb);
            }
        }
        if TRACK {
            self.ct.track_hook(skb, state)
        } else {
            self.ct.confirm_hook(skb, state)
        }
    }
}

/// For tracking's hook `i` (of `Conntrack::HOOKS`): the hook points of its
/// (family, hook) as a mask, and that (family, hook)'s tally index. A
/// table: worked out per packet, they were a few percent of a tracked
/// packet's cost in rnf under emulation.
const CT_HOOK_COUNTS: [(u64, usize); Conntrack::HOOKS.len()] = {
    let mut out = [(0, 0); Conntrack::HOOKS.len()];
    let mut i = 0;
    while i < out.len() {
        let (family, hook, _) = Conntrack::HOOKS[i];
        out[i] = (
            hooks::hook_points_mask(family, hook),
            hookcount::family_hook_index(family, hook),
        );
        i += 1;
    }
    out
};

/// For hook point `p`: the index in `Conntrack::HOOKS` of the tracking
/// hook whose work it can take over (`hooks::fused_ct_hooks`), `u8::MAX`
/// for none (its bit in `PacketPath::fused` is never set).
const NAT_CT_HOOK: [u8; NUM_HOOK_POINTS] = {
    let mut out = [u8::MAX; NUM_HOOK_POINTS];
    let mut i = 0;
    while i < Conntrack::HOOKS.len() {
        if let Some(p) = hooks::ct_nat_point(i) {
            out[p] = i as u8;
        }
        i += 1;
    }
    out
};

/// The policy counters of empty chains, by hook point: at a point whose
/// table has an empty chain (policy accept) at the point's hook, the
/// chain's policy counter counts what the point counts (the rule store
/// moves the point's counts over; the packet path adds to neither). NAT
/// points have no policy counter. Derived from the tables when a rule set
/// is published.
#[derive(Clone, Copy)]
pub struct PolicyPoints {
    /// Bit `i`: point `i` has a policy counter.
    pub mask: u64,
    /// (table, counter in its slots) of point `i`, where `mask` has bit `i`.
    pub at: [(u8, u32); NUM_HOOK_POINTS],
}

impl PolicyPoints {
    /// No policy counters.
    pub const NONE: Self = PolicyPoints {
        mask: 0,
        at: [(0, 0); NUM_HOOK_POINTS],
    };

    /// The policy counters of `tables`' empty chains, by hook point.
    pub fn of(tables: &[Option<Arc<TableImage>>; 4]) -> Self {
        let mut pp = Self::NONE;
        for (point, at) in pp.at.iter_mut().enumerate() {
            let Some((_, hook, stage)) = hooks::hook_point(point) else {
                continue;
            };
            if matches!(stage, Stage::NatDst | Stage::NatSrc) {
                continue;
            }
            let table = table_of(stage);
            let empty = tables
                .get(table as usize)
                .and_then(|t| t.as_deref())
                .and_then(|t| t.empty_at(hook));
            if let Some(counter) = empty {
                pp.mask |= 1 << point;
                *at = (table as u8, counter);
            }
        }
        pp
    }
}

/// The hook points that have work with these tables: a raw, mangle or
/// filter point whose chain has rules or drops; a NAT point while packets
/// are tracked once the namespace has had a nat rule (`nat_used`).
pub fn wanted_points(tables: &[Option<Arc<TableImage>>; 4], tracking: bool, nat_used: bool) -> u64 {
    let mut mask = 0u64;
    for point in 0..NUM_HOOK_POINTS {
        let Some((_, hook, stage)) = hooks::hook_point(point) else {
            continue;
        };
        let wanted = match stage {
            Stage::NatDst | Stage::NatSrc => tracking && nat_used,
            _ => tables
                .get(table_of(stage) as usize)
                .and_then(|t| t.as_deref())
                .is_some_and(|t| t.empty_at(hook).is_none()),
        };
        if wanted {
            mask |= 1 << point;
        }
    }
    mask
}

/// The counting hooks wanted with hook points `points` while `counting`:
/// one for each (family, hook) that has no hooked point, unless tracking's
/// hooks are there (`ct_counts`) to count for it.
fn counting_for(points: u64, counting: bool, ct_counts: bool) -> u64 {
    let mut mask = 0u64;
    if !counting {
        return mask;
    }
    for family in hooks::FAMILIES {
        for hook in Hook::ALL {
            let by_ct = ct_counts
                && Conntrack::HOOKS
                    .iter()
                    .any(|(cf, ch, _)| *cf == family && *ch == hook);
            if points & hooks::hook_points_mask(family, hook) == 0 && !by_ct {
                mask |= 1 << (NUM_HOOK_POINTS + hookcount::family_hook_index(family, hook));
            }
        }
    }
    mask
}

/// A namespace's netfilter hooks: the hook points and counting hooks, and
/// tracking's hooks, registered as the published rule set needs them.
#[pin_data]
pub struct Hooks {
    points: netfilter::Registration<PacketPath>,
    /// Tracking's hooks, tagged from [`CT_TAG`].
    ct: netfilter::Registration<PacketPath>,
    path: Arc<PacketPath>,
    /// Reassembly, on while packets are tracked (as `nf_ct_netns_get`
    /// enables it for nf_conntrack): tracking needs whole datagrams.
    #[pin]
    defrag: Mutex<Option<Defrag>>,
    net: NetRef,
}

impl Hooks {
    /// Before publishing a rule set: registers the points in `points` (a
    /// [`wanted_points`] mask) and, if `tracking`, tracking's hooks, less
    /// those whose work a NAT point takes over ([`Self::fuse`]). Hooks no
    /// longer needed stay until [`trim`](Self::trim). May sleep.
    pub fn enable(&self, points: u64, tracking: bool) -> Result {
        // Counting for a point stops just before it is hooked. While hooks
        // change, a packet may be counted twice or not at all at a point
        // (counters are statistics, as with iptables'), never wrongly
        // filtered.
        self.path
            .hooked
            .fetch_or(points & POINT_MASK, Ordering::Relaxed);
        self.path.relayout();
        let wanted = (self.points.registered() | points) & POINT_MASK;
        if tracking {
            let mut defrag = self.defrag.lock();
            if defrag.is_none() {
                *defrag = Some(Defrag::enable(self.net.clone())?);
            }
            drop(defrag);
            // A tracking hook whose NAT point gets a point in between (a
            // mangle chain before nat-dst) tracks on its own again before
            // that point is hooked.
            self.unfuse(hooks::fused_ct_hooks(wanted))?;
            // Tracking's hooks count from now on; the counting hooks they
            // replace go below.
            self.path
                .ct_counts
                .store(self.path.hook_counting(), Ordering::Relaxed);
        }
        // Points are registered before the counting hooks they replace go
        // (`set` works in index order, points first).
        let counting = self.path.hook_counting();
        let ct_counts = self.path.ct_counts.load(Ordering::Relaxed);
        let done = self
            .points
            .set(wanted | counting_for(wanted, counting, ct_counts));
        self.path
            .hooked
            .store(self.points.registered() & POINT_MASK, Ordering::Relaxed);
        self.path.relayout();
        if tracking {
            self.fuse();
        }
        done
    }

    /// After publishing a rule set: unregisters the points not in `points`
    /// and, unless `tracking`, tracking's hooks. May sleep.
    pub fn trim(&self, points: u64, tracking: bool) {
        // Counting hooks come before the points (or tracking's hooks) they
        // replace go. One that cannot be registered (out of memory) leaves
        // its hook uncounted until the next change.
        let mut points = points & POINT_MASK;
        if tracking {
            // Tracking's hooks whose NAT point goes track on their own
            // again first. One that cannot be registered keeps its NAT
            // point, which goes on doing its work.
            let _ = self.unfuse(hooks::fused_ct_hooks(points));
            let fused = self.path.fused.load(Ordering::Relaxed);
            for i in 0..Conntrack::HOOKS.len() {
                match hooks::ct_nat_point(i) {
                    Some(p) if fused & (1 << i) != 0 => points |= 1 << p,
                    _ => {}
                }
            }
        }
        let counting = self.path.hook_counting();
        let ct_counts =
            tracking && (self.ct.registered() | self.path.fused.load(Ordering::Relaxed)) == CT_MASK;
        let keep = counting_for(points, counting, ct_counts);
        let _ = self.points.set(self.points.registered() | keep);
        if !counting || !tracking {
            self.path.ct_counts.store(false, Ordering::Relaxed);
        }
        if !tracking {
            self.path.fused.store(0, Ordering::Relaxed);
            let _ = self.ct.set(0);
            // Fragments pass unassembled again, as without nf_conntrack.
            drop(self.defrag.lock().take());
        }
        let _ = self.points.set(points | keep);
        self.path
            .hooked
            .store(self.points.registered() & POINT_MASK, Ordering::Relaxed);
        self.path.relayout();
        if tracking {
            self.fuse();
        }
    }

    /// Registers tracking's hooks that are left to NAT points now but
    /// cannot be with `fusable` (a [`hooks::fused_ct_hooks`] mask), then
    /// takes the work back from those points: each hook is registered a
    /// grace period before its point stops doing its work, so a packet
    /// meanwhile may be tracked twice (as a retransmission is), never not
    /// at all. On error the hooks that could not be registered stay with
    /// their points. May sleep.
    fn unfuse(&self, fusable: u64) -> Result {
        let fused = self.path.fused.load(Ordering::Relaxed);
        let done = self.ct.set(CT_MASK & !(fused & fusable));
        let back = fused & !self.ct.registered();
        if back != fused {
            // A packet whose NAT point sees its bit cleared must meet the
            // hook registered above: a grace period between the two.
            netfilter::wait_for_running_hooks();
            self.path.fused.store(back, Ordering::Relaxed);
        }
        done
    }

    /// Leaves the work of tracking's hooks to the NAT points that can take
    /// it with the points now registered ([`hooks::fused_ct_hooks`]): one
    /// netfilter hook fewer per packet at each. The point starts doing the
    /// work a grace period before the hook goes (see
    /// [`unfuse`](Self::unfuse)). May sleep.
    fn fuse(&self) {
        let can = hooks::fused_ct_hooks(self.points.registered() & POINT_MASK);
        let old = self.path.fused.load(Ordering::Relaxed);
        let fused = old | can;
        if fused != old {
            self.path.fused.store(fused, Ordering::Relaxed);
            // A packet that no longer meets the hooks unregistered below
            // must see its NAT point's bit set: a grace period between.
            netfilter::wait_for_running_hooks();
        }
        let _ = self.ct.set(CT_MASK & !fused);
    }

    /// The packets and bytes counted at every hook point.
    pub fn point_counts(&self) -> [Counter; NUM_HOOK_POINTS] {
        self.path.counted_all()
    }

    /// Which hook points are registered (bit `i`: point `i`).
    pub fn hooked_points(&self) -> u64 {
        self.points.registered() & POINT_MASK
    }

    /// Whether packets are tracked: tracking's hooks registered, or their
    /// work left to NAT points, and reassembly enabled.
    pub fn tracking_hooked(&self) -> bool {
        (self.ct.registered() | self.path.fused.load(Ordering::Relaxed)) != 0
            && self.defrag.lock().is_some()
    }

    /// The number of hooks that can be registered.
    pub fn hook_count(&self) -> usize {
        self.points.hook_count() + self.ct.hook_count()
    }

    fn unregister(&self, grace: &PreExit) {
        self.points.unregister(grace);
        self.ct.unregister(grace);
    }
}

fn table_of(stage: Stage) -> Table {
    match stage {
        Stage::Raw => Table::Raw,
        Stage::Mangle => Table::Mangle,
        Stage::Filter => Table::Filter,
        Stage::NatDst | Stage::NatSrc => Table::Nat,
    }
}

impl netfilter::Handler for PacketPath {
    // Each kind is inlined into its own netfilter callback.
    #[inline(always)]
    fn hook<const KIND: u8>(&self, tag: u32, skb: &SkBuff, state: &HookState<'_>) -> Verdict {
        match KIND {
            KIND_COUNT => {
                self.counting_hook(tag, skb);
                Verdict::Accept
            }
            KIND_TRACK => self.ct_hook::<true>((tag as usize).wrapping_sub(CT_TAG), skb, state),
            KIND_CONFIRM => self.ct_hook::<false>((tag as usize).wrapping_sub(CT_TAG), skb, state),
            KIND_RULES => self.point::<false, false>(tag, skb, state),
            KIND_NAT => self.point::<true, false>(tag, skb, state),
            KIND_NAT6 => self.point::<true, true>(tag, skb, state),
            _ => Verdict::Accept,
        }
    }
}

impl PacketPath {
    /// A counting hook: its tag after the hook points is its (family, hook)
    /// in `family_hook_index` order.
    #[inline(always)]
    fn counting_hook(&self, tag: u32, skb: &SkBuff) {
        if let Some(fh) = (tag as usize).checked_sub(NUM_HOOK_POINTS) {
            self.count_arrival(fh, skb);
        }
    }

    /// Hook point `point`, a NAT one (`NAT`; an IPv6 one if `V6`) or a
    /// raw, mangle or filter one.
    #[inline(always)]
    fn point<const NAT: bool, const V6: bool>(
        &self,
        point: u32,
        skb: &SkBuff,
        state: &HookState<'_>,
    ) -> Verdict {
        let Some((_, hook, stage)) = hooks::hook_point(point as usize) else {
            return Verdict::Accept;
        };
        let point = point as usize;
        // A NAT point that does the work of tracking's hook on its (family,
        // hook): tracking, before the point is handed the packet, as at
        // tracking's own priority.
        let fused = match NAT_CT_HOOK.get(point) {
            Some(&i) if NAT && self.fused.load(Ordering::Relaxed) & (1u64 << (i & 63)) != 0 => {
                Some(usize::from(i))
            }
            _ => None,
        };
        if fused.is_some_and(|i| i < Conntrack::TRACKING_HOOKS)
            && self.ct.track_for_nat(skb, state) == Verdict::Drop
        {
            return Verdict::Drop;
        }
        // What this point and its unhooked neighbours count follows from
        // what it is handed and what it stops (`hookcount::view`).
        self.tally(Tally::Seen(point), skb);
        let verdict = self.stage::<NAT, V6>(hook, stage, skb, state);
        if verdict == Verdict::Drop {
            self.tally(Tally::Stopped(point), skb);
        } else if fused.is_some_and(|i| i >= Conntrack::TRACKING_HOOKS) {
            // Confirming, after the point let the packet through.
            self.ct.confirm_hook(skb, state);
        }
        verdict
    }
}

impl PacketPath {
    /// What hook point (`hook`, `stage`) decides for the packet; `NAT`
    /// says whether `stage` is a NAT stage, `V6` whether an IPv6 one.
    #[inline(always)]
    fn stage<const NAT: bool, const V6: bool>(
        &self,
        hook: Hook,
        stage: Stage,
        skb: &SkBuff,
        state: &HookState<'_>,
    ) -> Verdict {
        let table = if NAT { Table::Nat } else { table_of(stage) };
        let rcu = state.rcu();
        let timg = self
            .image
            .read(rcu)
            .and_then(|image| image.tables.get(table as usize))
            .and_then(|t| t.as_deref());
        let is_nat = NAT;
        // NAT applies the bindings of existing flows even without rules,
        // while packets are tracked (a rule needs it). Until the namespace
        // has had a nat rule, no flow has a binding: a nat table that
        // decides nothing is skipped then.
        let tracking = self.ct.active();
        let nat_idle = || !self.ct.nat_used() && timg.map_or(true, |t| t.passive());
        if (timg.is_none() && !is_nat) || (is_nat && (!tracking || nat_idle())) {
            return Verdict::Accept;
        }
        // A packet of a bound flow that tracking noted: rewritten from the
        // note alone, as nf_nat rewrites from the skb's conntrack entry.
        if is_nat {
            if let Some(v) = self.nat_noted::<V6>(hook, skb, state) {
                return v;
            }
        }
        // An empty chain with policy accept: accept, read nothing (its
        // policy counter counts what the point counts). The nat table
        // still has bindings to apply.
        if timg
            .filter(|_| !is_nat)
            .is_some_and(|t| t.empty_at(hook).is_some())
        {
            return Verdict::Accept;
        }
        // A packet tracking noted, at a mangle or filter point: accepted on
        // its noted state alone by a chain that starts with `ct state
        // established,related accept`, or its facts read at fixed offsets
        // instead of parsed.
        if let Some(t) = timg.filter(|_| tracking && stage != Stage::Raw && !is_nat) {
            if let Some(v) = self.noted_rules(t, hook, skb, state) {
                return v;
            }
        }
        let mut hdr = HeaderBuf::<HEADER_BYTES>::new();
        let pkt = skb.headers(&mut hdr);
        let Ok(facts) = packet::parse(pkt) else {
            // The IP layer checked the header before any hook; what does
            // not parse here is not a packet rnf can classify.
            return Verdict::Drop;
        };
        let ct = if stage == Stage::Raw || !tracking {
            PacketCt::none()
        } else {
            self.ct.packet_ct(skb, &facts, pkt, rcu)
        };
        let mut env = KernelEnv::new(skb, state, &facts, hook, &self.ct, ct);
        if is_nat {
            return self.nat(&mut env, timg, pkt);
        }
        let Some(timg) = timg else {
            return Verdict::Accept;
        };
        env.slots = Some(&timg.state);
        let verdict = timg.eval(hook, &facts, &mut env);
        self.finish(verdict, &env)
    }
}

impl PacketPath {
    /// Turns a table's verdict into netfilter's.
    #[inline]
    fn finish(&self, verdict: RuleVerdict, env: &KernelEnv<'_>) -> Verdict {
        match verdict {
            RuleVerdict::Accept => Verdict::Accept,
            // Only the nat table gives NAT verdicts (see `nat`).
            RuleVerdict::Nat(_) => Verdict::Accept,
            RuleVerdict::Drop => {
                self.ct.dropped(&env.ct, env.state.rcu());
                Verdict::Drop
            }
            RuleVerdict::Reject(kind) => {
                self.ct.dropped(&env.ct, env.state.rcu());
                env.state.reject(env.skb, kind as u8);
                Verdict::Drop
            }
        }
    }

    /// Table `t`'s verdict at `hook` on a packet that tracking noted, from
    /// its note ([`Conntrack::note`]): if the chain starts with `ct state
    /// ... accept` and that takes the noted state, accepted by it (counted
    /// there) once the headers are seen to be the noted ones
    /// ([`Conntrack::noted_len`]); else, for IPv4, the chain's verdict on
    /// facts read at fixed offsets instead of parsed
    /// ([`Conntrack::noted_packet`]). `None` for any other packet, which
    /// the caller parses. The note is read once for both. Not inlined:
    /// inside the callback it cost the packets of untracked rule sets
    /// about 45 instructions (and the state test alone slowed new flows
    /// and NAT).
    #[inline(never)]
    fn noted_rules(
        &self,
        t: &TableImage,
        hook: Hook,
        skb: &SkBuff,
        state: &HookState<'_>,
    ) -> Option<Verdict> {
        let note = self.ct.note(skb)?;
        if let Some(rule) = t.state_accept_at(hook) {
            if rule.matches(CtState(note.state)) {
                let len = self.ct.noted_len(skb, &note)?;
                t.state.counters.add(rule.counter, u64::from(len));
                return Some(Verdict::Accept);
            }
        }
        // `noted_eval` reads only IPv4 TCP and UDP at fixed offsets; an
        // IPv6 packet, told by its hook, is left to the caller's one copy
        // and parse.
        if u32::from(state.pf()) == sys::NFPROTO_IPV6 {
            return None;
        }
        self.noted_eval(t, hook, skb, state, note)
    }

    /// [`noted_rules`](Self::noted_rules) past the state test: the chain's
    /// verdict on the facts of the packet with note `note`. Not inlined
    /// there: its frame (the header copy, the facts, the evaluator's
    /// state) cost the packets accepted on their state alone.
    #[inline(never)]
    fn noted_eval(
        &self,
        t: &TableImage,
        hook: Hook,
        skb: &SkBuff,
        state: &HookState<'_>,
        note: PacketNote,
    ) -> Option<Verdict> {
        let mut hdr = HeaderBuf::<HEADER_BYTES>::new();
        let pkt = skb.headers(&mut hdr);
        let (facts, ct) = self.ct.noted_packet(note, pkt, state.rcu())?;
        let mut env = KernelEnv::new(skb, state, &facts, hook, &self.ct, ct);
        env.slots = Some(&t.state);
        let verdict = t.eval(hook, &facts, &mut env);
        Some(self.finish(verdict, &env))
    }

    /// A NAT stage's rewrite from the packet's note
    /// ([`Conntrack::nat_noted`]), with the stage's verdict; `None` where
    /// the stage must copy and parse the headers ([`nat`](Self::nat)).
    #[inline(always)]
    fn nat_noted<const V6: bool>(
        &self,
        hook: Hook,
        skb: &SkBuff,
        state: &HookState<'_>,
    ) -> Option<Verdict> {
        let manip = Manip::for_hook(hook)?;
        let done = self.ct.nat_noted::<V6>(skb, manip, state.rcu())?;
        Some(Self::rewritten(hook, manip, done, skb, state))
    }

    /// The verdict on a packet whose `manip` side a NAT stage at `hook`
    /// rewrote (`Ok(true)`), left alone (`Ok(false)`) or failed to rewrite.
    #[inline(always)]
    fn rewritten(
        hook: Hook,
        manip: Manip,
        done: Result<bool>,
        skb: &SkBuff,
        state: &HookState<'_>,
    ) -> Verdict {
        match done {
            Ok(true) if hook == Hook::LocalOut && manip == Manip::Dst => {
                // A new destination may need another route.
                match state.reroute(skb) {
                    Ok(()) => Verdict::Accept,
                    Err(_) => Verdict::Drop,
                }
            }
            Ok(_) => Verdict::Accept,
            Err(_) => Verdict::Drop,
        }
    }

    /// The NAT stages: on a flow's first packet the nat table decides the
    /// translation of this side (`Manip`), bound to the flow; every packet
    /// of the flow, both ways, is then rewritten from that binding.
    #[inline(always)]
    fn nat<'a>(
        &self,
        env: &mut KernelEnv<'a>,
        timg: Option<&'a TableImage>,
        pkt: &[u8],
    ) -> Verdict {
        let Some(manip) = Manip::for_hook(env.hook) else {
            return Verdict::Accept;
        };
        let Some((flow, dir)) = env.ct.flow else {
            return Verdict::Accept;
        };
        let (skb, state, facts) = (env.skb, env.state, env.facts);
        if env.ct.state == CtState::RELATED {
            // An ICMP error about a flow: translate what it quotes.
            return match self.ct.nat_icmp_error(flow, dir, manip, skb, facts) {
                Ok(_) => Verdict::Accept,
                Err(_) => Verdict::Drop,
            };
        }
        if !Conntrack::nat_done(flow, manip)
            && dir == Direction::Original
            && flow.status() & ct::status::CONFIRMED == 0
        {
            let mut action = None;
            if let Some(timg) = timg {
                env.slots = Some(&timg.state);
                match timg.eval(env.hook, facts, env) {
                    RuleVerdict::Nat(a) => action = Some((a.kind, a.range)),
                    RuleVerdict::Accept => {}
                    v => return self.finish(v, env),
                }
            }
            if self.ct.bind_nat(flow, manip, action, skb, state).is_err() {
                self.ct.dropped(&env.ct, state.rcu());
                return Verdict::Drop;
            }
        }
        let done = self
            .ct
            .nat_packet(flow, dir, manip, skb, (facts, pkt), &env.ct);
        Self::rewritten(env.hook, manip, done, skb, state)
    }
}

/// What the evaluator asks of the kernel for one packet.
struct KernelEnv<'a> {
    skb: &'a SkBuff,
    state: &'a HookState<'a>,
    /// The evaluated table's per-rule state (counters, limits).
    slots: Option<&'a SlotState>,
    facts: &'a PacketFacts,
    hook: Hook,
    conntrack: &'a Conntrack,
    ct: PacketCt<'a>,
    /// The devices' names, read when a rule first asks.
    in_name: OnceCell<([u8; 16], usize)>,
    out_name: OnceCell<([u8; 16], usize)>,
}

impl<'a> KernelEnv<'a> {
    fn new(
        skb: &'a SkBuff,
        state: &'a HookState<'a>,
        facts: &'a PacketFacts,
        hook: Hook,
        conntrack: &'a Conntrack,
        ct: PacketCt<'a>,
    ) -> Self {
        KernelEnv {
            skb,
            state,
            slots: None,
            facts,
            hook,
            conntrack,
            ct,
            in_name: OnceCell::new(),
            out_name: OnceCell::new(),
        }
    }
}

impl EvalEnv for KernelEnv<'_> {
    fn count(&mut self, counter: u32, bytes: u32) {
        if let Some(slots) = self.slots {
            slots.counters.add(counter, u64::from(bytes));
        }
    }

    fn limit_allows(&mut self, counter: u32, limit: &Limit) -> bool {
        let Some(tat) = self.slots.and_then(|s| s.limit_tat.get(counter as usize)) else {
            return false;
        };
        // GCRA: a packet conforms if it is not earlier than the theoretical
        // arrival time minus the burst allowance.
        let t = limit.interval_nanos();
        let tau = t.saturating_mul(u64::from(limit.burst.saturating_sub(1)));
        // SAFETY: no preconditions.
        let now = unsafe { sys::rnf_now_ns() };
        let mut cur = tat.load(Ordering::Relaxed);
        loop {
            let base = if cur == 0 { now } else { cur };
            if now.saturating_add(tau) < base {
                return false;
            }
            let next = base.max(now).saturating_add(t);
            match tat.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }

    fn random_u32(&mut self) -> u32 {
        // SAFETY: no preconditions.
        unsafe { sys::rnf_random_u32() }
    }

    fn nth_hit(&mut self, counter: u32, n: u32) -> bool {
        let Some(c) = self.slots.and_then(|s| s.nth.get(counter as usize)) else {
            return false;
        };
        n != 0 && (c.fetch_add(1, Ordering::Relaxed).wrapping_add(1)) % n == 0
    }

    fn payload_contains(&mut self, needle: &[u8]) -> bool {
        let Some(start) = self.facts.payload_offset else {
            return false;
        };
        payload_contains(self.skb, start as u32, needle)
    }

    fn iif_name(&self) -> &[u8] {
        let (name, len) = self.in_name.get_or_init(|| {
            let mut buf = [0u8; 16];
            let len = self.state.in_name(&mut buf).len();
            (buf, len)
        });
        name.get(..*len).unwrap_or(&[])
    }

    fn oif_name(&self) -> &[u8] {
        let (name, len) = self.out_name.get_or_init(|| {
            let mut buf = [0u8; 16];
            let len = self.state.out_name(&mut buf).len();
            (buf, len)
        });
        name.get(..*len).unwrap_or(&[])
    }

    fn mark(&self) -> u32 {
        self.skb.mark()
    }

    fn set_mark(&mut self, mark: u32) {
        self.skb.set_mark(mark);
    }

    fn uid(&self) -> Option<u32> {
        self.owner().map(|(u, _)| u)
    }

    fn gid(&self) -> Option<u32> {
        self.owner().map(|(_, g)| g)
    }

    fn log(&mut self, prefix: &[u8], level: u8) {
        let mut line = LogLine::new();
        for b in prefix {
            line.push(*b);
        }
        let (i, o) = (self.iif_name(), self.oif_name());
        let _ = write!(line, "IN=");
        for b in i {
            line.push(*b);
        }
        let _ = write!(line, " OUT=");
        for b in o {
            line.push(*b);
        }
        let f = self.facts;
        let _ = write!(line, " SRC=");
        write_addr(&mut line, f.family, &f.src);
        let _ = write!(line, " DST=");
        write_addr(&mut line, f.family, &f.dst);
        let _ = write!(line, " LEN={} PROTO=", f.total_len);
        let _ = match f.proto {
            6 => write!(line, "TCP"),
            17 => write!(line, "UDP"),
            1 => write!(line, "ICMP"),
            58 => write!(line, "ICMPv6"),
            p => write!(line, "{p}"),
        };
        let _ = match f.l4 {
            packet::L4::Ports { sport, dport } => write!(line, " SPT={sport} DPT={dport}"),
            packet::L4::Tcp {
                sport,
                dport,
                flags,
            } => write!(line, " SPT={sport} DPT={dport} FLAGS=0x{flags:02x}"),
            packet::L4::Icmp { ty, code } => write!(line, " TYPE={ty} CODE={code}"),
            _ => Ok(()),
        };
        let _ = write!(line, " MARK=0x{:x}", self.skb.mark());
        // SAFETY: `line` is NUL-terminated.
        unsafe { sys::rnf_log(level, line.as_c_ptr()) };
    }

    fn ct_state(&self) -> CtState {
        self.ct.state
    }

    fn ct_direction(&self) -> Option<Direction> {
        self.ct.flow.map(|(_, d)| d)
    }

    fn ct_status(&self) -> u32 {
        self.ct.flow.map_or(0, |(f, _)| f.status())
    }

    fn ct_mark(&self) -> Option<u32> {
        self.ct.flow.map(|(f, _)| f.mark.load(Ordering::Relaxed))
    }

    fn set_ct_mark(&mut self, mark: u32) {
        if let Some((f, _)) = self.ct.flow {
            f.mark.store(mark, Ordering::Relaxed);
        }
    }

    fn notrack(&mut self) {
        self.conntrack.notrack(self.skb, self.facts);
        self.ct.state = CtState::UNTRACKED;
    }
}

impl KernelEnv<'_> {
    fn owner(&self) -> Option<(u32, u32)> {
        // Only locally generated packets have an owner, as with xt_owner.
        match self.hook {
            Hook::LocalOut | Hook::PostRouting => self.skb.owner(self.state.net()),
            _ => None,
        }
    }
}

/// Searches the transport payload, starting `start` bytes past the network
/// header, for `needle`, in chunks (the payload may be paged).
fn payload_contains(skb: &SkBuff, start: u32, needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let mut buf = [0u8; 512];
    let keep = needle.len().saturating_sub(1);
    let mut have = 0usize;
    let mut off = start;
    loop {
        let Some(space) = buf.get_mut(have..) else {
            return false;
        };
        let n = skb.copy_network(off, space);
        if n == 0 {
            return false;
        }
        off = off.saturating_add(n as u32);
        have += n;
        let Some(window) = buf.get(..have) else {
            return false;
        };
        if window.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        // Keep the last `keep` bytes: a match may straddle two chunks.
        let from = have.saturating_sub(keep);
        buf.copy_within(from..have, 0);
        have -= from;
    }
}

/// A kernel log line, NUL-terminated.
struct LogLine {
    bytes: [u8; 256],
    len: usize,
}

impl LogLine {
    fn new() -> Self {
        Self {
            bytes: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        if self.len + 1 < self.bytes.len() {
            if let Some(slot) = self.bytes.get_mut(self.len) {
                // Keep the line printable.
                *slot = if b.is_ascii_graphic() || b == b' ' {
                    b
                } else {
                    b'?'
                };
                self.len += 1;
            }
        }
    }

    fn as_c_ptr(&self) -> *const kernel::ffi::c_char {
        self.bytes.as_ptr().cast()
    }
}

impl Write for LogLine {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            self.push(b);
        }
        Ok(())
    }
}

fn write_addr(line: &mut LogLine, family: Family, a: &[u8; 16]) {
    match family {
        Family::Ipv4 => {
            let _ = write!(line, "{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
        }
        Family::Ipv6 => {
            for (i, pair) in a.chunks(2).enumerate() {
                let w = u16::from_be_bytes([
                    pair.first().copied().unwrap_or(0),
                    pair.get(1).copied().unwrap_or(0),
                ]);
                let _ = if i == 0 {
                    write!(line, "{w:x}")
                } else {
                    write!(line, ":{w:x}")
                };
            }
        }
    }
}

/// rnf's state in one network namespace.
#[pin_data]
pub struct NetState {
    // Declared first so they are unregistered before the rest is dropped
    // (the rule store holds them too, and switches them with the rules).
    hooks: Arc<Hooks>,
    _gc: DelayedWork<Conntrack>,
    /// Folds large tails into the main buffers in the background.
    compactor: DelayedWork<Rules>,
    path: Arc<PacketPath>,
    /// The rule set; every change is made under its lock.
    pub rules: Arc<Rules>,
}

/// A namespace's rule set and where it is published, shared with its
/// background compaction.
#[pin_data]
pub struct Rules {
    /// The rule set; every change is made under this lock.
    #[pin]
    store: Mutex<RuleStore>,
    path: Arc<PacketPath>,
}

impl core::ops::Deref for Rules {
    type Target = Mutex<RuleStore>;

    fn deref(&self) -> &Mutex<RuleStore> {
        &self.store
    }
}

impl WorkFn for Rules {
    /// One compaction: copy the chains under the lock, compile them
    /// without it (a large table takes long), publish under the lock if
    /// nothing changed meanwhile, else try again while it is still wanted.
    fn run(&self) -> Option<u32> {
        let mut c = match self.store.lock().compaction() {
            Ok(Some(c)) => c,
            _ => return None,
        };
        if c.compile().is_err() {
            return None;
        }
        let mut store = self.store.lock();
        match store.finish_compaction(c, &self.path.image) {
            Ok(false) if store.wants_compaction() => Some(COMPACT_RETRY_MS),
            _ => None,
        }
    }
}

/// How soon a compaction overtaken by a change tries again.
const COMPACT_RETRY_MS: u32 = 20;

impl NetState {
    /// Per-hook-point statistics, in `hooks::hook_point` order.
    pub fn hook_stats(&self) -> impl Iterator<Item = HookStat> + '_ {
        let counts = self.path.counted_all();
        (0..NUM_HOOK_POINTS).filter_map(move |i| {
            let (family, hook, stage) = hooks::hook_point(i)?;
            let c = counts.get(i).copied().unwrap_or_default();
            Some(HookStat {
                family,
                hook,
                stage,
                priority: stage.priority(),
                packets: c.packets,
                bytes: c.bytes,
            })
        })
    }

    /// Starts a compaction soon if the tails of a table have grown large.
    pub fn compact_if_wanted(&self, store: &RuleStore) {
        if store.wants_compaction() {
            self.compactor.schedule(0);
        }
    }

    /// The packet path of this namespace.
    pub fn path(&self) -> &PacketPath {
        &self.path
    }

    /// Connection tracking.
    pub fn conntrack(&self) -> &Conntrack {
        &self.path.ct
    }

    /// Switches counting at hook points without work on or off (`rnfctl
    /// hook-counters`): off, a namespace without rules has no hook at all.
    /// May sleep.
    pub fn set_hook_counting(&self, on: bool) -> Result<(), ChangeError> {
        let mut store = self.rules.lock();
        self.path.counting.store(on, Ordering::Relaxed);
        self.path.relayout();
        store.rehook()
    }

    /// The hooks of this namespace.
    #[allow(dead_code)]
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }
}

/// The attachment point of hook point `index`.
fn spec(index: usize, family: Family, hook: Hook, stage: Stage) -> HookSpec {
    HookSpec {
        pf: family as u8,
        hooknum: hook as u8,
        priority: stage.priority(),
        tag: index as u32,
        kind: match (stage, family) {
            (Stage::NatDst | Stage::NatSrc, Family::Ipv4) => KIND_NAT,
            (Stage::NatDst | Stage::NatSrc, Family::Ipv6) => KIND_NAT6,
            _ => KIND_RULES,
        },
    }
}

impl pernet::NetData for NetState {
    const ID: &'static NetId = &NET_ID;

    fn init(net: &Net, own: NetRef) -> Result<Pin<KBox<Self>>> {
        let own_net = own.clone();
        let ct = Arc::new(Conntrack::new(own)?, GFP_KERNEL)?;
        let gc = DelayedWork::new(ct.clone())?;
        // Counting at hooks without rules as the module parameter says
        // now (off by default: no hook until the rules need one).
        let counting = crate::params::hook_counters();
        let path = Arc::new(PacketPath::new(ct.clone(), counting)?, GFP_KERNEL)?;
        let mut specs = KVec::with_capacity(NUM_HOOK_POINTS + NUM_COUNT_POINTS, GFP_KERNEL)?;
        for i in 0..NUM_HOOK_POINTS {
            let (family, hook, stage) = hooks::hook_point(i).ok_or(EINVAL)?;
            specs.push(spec(i, family, hook, stage), GFP_KERNEL)?;
        }
        let mut store = RuleStore::new().map_err(|e| e.errno)?;
        store.set_tracker(ct.clone());
        store.publish_initial(&path.image).map_err(|e| e.errno)?;
        let published = path.clone();
        let rules = Arc::pin_init(
            pin_init!(Rules {
                store <- new_mutex!(store),
                path: published,
            }),
            GFP_KERNEL,
        )?;
        let compactor = DelayedWork::new(rules.clone())?;
        for family in hooks::FAMILIES {
            for hook in Hook::ALL {
                let fh = hookcount::family_hook_index(family, hook);
                specs.push(
                    HookSpec {
                        pf: family as u8,
                        hooknum: hook as u8,
                        priority: COUNT_PRIORITY,
                        tag: (NUM_HOOK_POINTS + fh) as u32,
                        kind: KIND_COUNT,
                    },
                    GFP_KERNEL,
                )?;
            }
        }
        let ct_specs = Conntrack::hook_specs(CT_TAG as u32, (KIND_TRACK, KIND_CONFIRM));
        let ct_reg = netfilter::Registration::new(net, &ct_specs, path.clone(), 0)?;
        let points = netfilter::Registration::new(net, &specs, path.clone(), 0)?;
        let hooks_path = path.clone();
        let hooks = Arc::pin_init(
            pin_init!(Hooks {
                ct: ct_reg,
                points,
                path: hooks_path,
                defrag <- new_mutex!(None),
                net: own_net,
            }),
            GFP_KERNEL,
        )?;
        // Hooks what the initial (empty) rule set needs (`counting_for`:
        // the counting hooks if counting, otherwise none).
        rules
            .store
            .lock()
            .set_hooks(hooks.clone())
            .map_err(|e| e.errno)?;
        gc.schedule(1000);
        KBox::pin_init(
            pin_init!(NetState {
                hooks,
                _gc: gc,
                compactor,
                path,
                rules,
            }),
            GFP_KERNEL,
        )
    }

    fn pre_exit(&self, _net: &Net, grace: &PreExit) {
        self.hooks.unregister(grace);
    }
}

/// Forgets masqueraded flows when their interface goes down or loses the
/// address they were mapped to.
pub struct MasqueradeEvents;

impl netfilter::AddrEvents for MasqueradeEvents {
    fn address_gone(net: &Net, ifindex: i32, addr: Option<(Family, [u8; 16])>) {
        if let Some(state) = NetState::get(net) {
            state.conntrack().forget_masquerade(ifindex, addr);
        }
    }
}
