// SPDX-License-Identifier: GPL-2.0

//! Connection tracking in one network namespace.
//!
//! Packets are tracked once, at the conntrack priority (-200) of
//! PREROUTING and OUTPUT, after the raw table and before mangle, NAT and
//! filter. A packet either belongs to a flow (found in either direction,
//! or created when its protocol allows), is an ICMP error RELATED to a
//! flow, is exempt (`notrack`, ICMPv6 neighbour discovery), or is INVALID.
//! The result is noted per CPU for the later hooks the packet passes, so
//! they need no second lookup.
//!
//! While the nat table is in use and no mangle chain runs between the two,
//! the nat-dst point of PREROUTING and OUTPUT tracks the packet itself,
//! just before its stage, and the nat-src point of INPUT and POSTROUTING
//! confirms just after its stage: one netfilter hook fewer where a packet
//! enters and one fewer where it leaves (`hooks::fused_ct_hooks`). rnf's
//! rules see the same either way.
//!
//! A new flow is linked into the table at once, but is *confirmed* only
//! when its first packet reaches the last hook (INPUT or POSTROUTING at
//! the highest priority), as with `nf_conntrack_confirm()`: only confirmed
//! flows are listed and announced. A first packet dropped by rnf's rules
//! takes its flow with it; one dropped elsewhere leaves an unconfirmed
//! flow that garbage collection removes after a few seconds.
//!
//! The table is bounded: past the limit, a new flow first evicts an
//! unassured (or closing) flow near its bucket; if there is none its
//! packet is dropped and counted. Expired flows are removed by deferred
//! work that scans a slice of the table per pass.

use crate::ct::{
    self, icmp_error_inner, icmp_may_create, Classified, CtState, Direction, TimeoutKey, Timeouts,
    UdpState,
};
use crate::ct_msg::{CtStatsMsg, FlowMsg};
use crate::ct_tcp::{TcpAction, TcpConfig, TcpConn, TcpSegment};
use crate::flow_table::{Flow, FlowTable, InsertError};
use crate::genl;
use crate::hooks::{self, Family, Hook};
use crate::nat::{self, Manip, NatKind, NatRange};
use crate::netfilter::{HookSpec, HookState, Verdict};
use crate::packet::{self, PacketFacts, L4};
use crate::percpu::{PacketNote, PacketNotes};
use crate::pernet::NetRef;
use crate::rcu::{self, RcuBox, ReadGuard};
use crate::skb::{CsumState, HeaderBuf, SkBuff};
use crate::sys;
use crate::wire::{cmd, ct_event, AttrWriter};
use crate::work::WorkFn;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;

/// Bytes of headers copied out of a packet for tracking: IP header with
/// options or extension headers, transport header with options, and for
/// ICMP errors the quoted headers.
const HEADER_BYTES: usize = 192;

/// An unconfirmed flow older than this was created by a packet that never
/// made it through the stack.
const UNCONFIRMED_NS: u64 = 10_000_000_000;

/// Time between garbage collection passes, and buckets per pass (a full
/// sweep takes `GC_SLICES` passes). A pass that finds nothing to collect
/// doubles the time to the next, up to `GC_INTERVAL_MAX_MS` (a full sweep
/// every 4 s); one that collects goes back to `GC_INTERVAL_MS`. Lookups
/// drop expired flows they meet, and a full table evicts expired flows
/// first, so a slower sweep only delays DESTROY events (nf_conntrack's
/// adaptive GC lets them wait up to 60 s).
const GC_INTERVAL_MS: u32 = 125;
const GC_INTERVAL_MAX_MS: u32 = 500;
const GC_SLICES: u32 = 8;
/// Buckets scanned under one RCU read section before yielding.
const GC_BATCH: u32 = 64;
/// Status of a UDP flow whose tracking state no longer changes.
const UDP_STREAM: u32 = ct::status::SEEN_REPLY | ct::status::ASSURED;
/// Buckets looked at for a flow to evict when the table is full.
const EARLY_DROP_BUCKETS: u32 = 8;
/// Once a new flow found nothing to evict near its bucket, garbage
/// collection evicts unassured flows while the table holds more than this
/// share of its limit (per cent), as nf_conntrack's GC does above 95 %.
const GC_EVICT_PERCENT: u32 = 95;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Note flags.
const NOTE_UNCONFIRMED: u8 = 1;
const NOTE_CREATED: u8 = 2;

/// Internal status bits: the NAT of each side has been decided for the
/// flow (Linux `IPS_SRC_NAT_DONE`, `IPS_DST_NAT_DONE`).
const NAT_DONE_SRC: u32 = 1 << 28;
const NAT_DONE_DST: u32 = 1 << 29;

/// The per-protocol state of a flow.
#[derive(Clone, Copy, Debug)]
pub enum Track {
    /// TCP, with window tracking.
    Tcp(TcpConn),
    /// UDP and UDP-Lite.
    Udp(UdpState),
    /// ICMP and ICMPv6 queries.
    Icmp,
    /// Any other protocol.
    Generic,
}

impl Track {
    fn proto_state(&self) -> u8 {
        match self {
            Track::Tcp(c) => c.state() as u8,
            _ => 0,
        }
    }
}

/// A flow of this table.
pub type CtFlow = Flow<Track>;

/// Counters of what tracking did.
#[derive(Default)]
struct Stats {
    inserted: AtomicU64,
    expired: AtomicU64,
    early_drops: AtomicU64,
    full_drops: AtomicU64,
    invalid: AtomicU64,
    deleted: AtomicU64,
    nat_failed: AtomicU64,
}

fn nat_done_bit(manip: Manip) -> u32 {
    match manip {
        Manip::Src => NAT_DONE_SRC,
        Manip::Dst => NAT_DONE_DST,
    }
}

/// Whether a packet in `dir` is rewritten at a hook doing `manip`: the
/// original direction gets the flow's own NAT of that side, the reply
/// direction the undoing of the other side (`nf_nat_packet()`'s status bit
/// flip).
fn nat_applies(flow: &CtFlow, dir: Direction, manip: Manip) -> bool {
    let side = match (dir, manip) {
        (Direction::Original, Manip::Src) | (Direction::Reply, Manip::Dst) => ct::status::SRC_NAT,
        (Direction::Original, Manip::Dst) | (Direction::Reply, Manip::Src) => ct::status::DST_NAT,
    };
    flow.status() & side != 0
}

/// The endpoint that a NAT rewrite at a hook doing `manip` writes into a
/// packet of `flow` travelling in `dir` (where [`nat_applies`]): the
/// `manip` side of the other direction's tuple, inverted. Cached in the
/// flow once it is confirmed, when no binding changes its tuples any
/// more: reading it from the packed tuple was a good part of a NAT stage.
#[inline(always)]
fn nat_endpoint(flow: &CtFlow, dir: Direction, manip: Manip) -> nat::Endpoint {
    let slot = flow.cache.get(dir.index() * 2 + manip as usize);
    if let Some(ep) = slot.and_then(|w| nat::Endpoint::from_word(w.load(Ordering::Relaxed))) {
        return ep;
    }
    // Acquire, before the tuple is read: pairs with confirmation's
    // release, so a confirmed flow's tuple is read as its bindings left it.
    let confirmed = flow.status.load(Ordering::Acquire) & ct::status::CONFIRMED != 0;
    let ep = nat::translated_endpoint_of_bytes(&flow.tuple_bytes(dir.opposite()), manip);
    if confirmed {
        if let (Some(slot), Some(w)) = (slot, ep.to_word()) {
            slot.store(w, Ordering::Relaxed);
        }
    }
    ep
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What a NAT rewrite of a packet's headers came to.
type RewriteResult = core::result::Result<nat::Rewrite, nat::NatError>;

/// What conntrack knows about a packet at a hook after tracking.
#[derive(Clone, Copy)]
pub struct PacketCt<'g> {
    /// `ct state`.
    pub state: CtState,
    /// The packet's flow and its direction in it, if any.
    pub flow: Option<(&'g CtFlow, Direction)>,
    note: Option<PacketNote>,
}

impl PacketCt<'_> {
    /// Before tracking (the raw table): like nftables' `ct state` on a
    /// packet without a conntrack entry, INVALID.
    pub const fn none() -> Self {
        PacketCt {
            state: CtState::INVALID,
            flow: None,
            note: None,
        }
    }
}

/// What [`Conntrack::sweep`] hands its step.
enum Sweep<'g> {
    /// A flow, under the batch's RCU read section, at this time.
    Flow(&'g CtFlow, &'g ReadGuard, u64),
    /// The batch is done; the RCU read section is over.
    Batch,
}

/// Why a flow went away, for events and counters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gone {
    Expired,
    Deleted,
    EarlyDrop,
    /// Never confirmed: no one was told about it.
    Silent,
}

/// Connection tracking state of one namespace.
pub struct Conntrack {
    table: FlowTable<Track>,
    notes: PacketNotes,
    limit: AtomicU32,
    timeouts: RcuBox<Timeouts>,
    tcp: TcpConfig,
    stats: Stats,
    gc_cursor: AtomicU32,
    /// Time to the next garbage collection pass (ms).
    gc_delay: AtomicU32,
    /// Set when a new flow's packet was dropped with the table full;
    /// garbage collection then evicts unassured flows above
    /// `GC_EVICT_PERCENT` of the limit, and clears it once under.
    gc_evict: AtomicBool,
    /// The namespace, for events; `None` in tests.
    net: Option<NetRef>,
    /// Whether packets are tracked: only while a published rule needs it.
    active: AtomicBool,
    /// Whether this namespace ever had a nat rule: until then no flow has
    /// a NAT binding, and the NAT stages have nothing to do while the nat
    /// table decides nothing.
    nat_used: AtomicBool,
    /// Whether a packet was ever exempted from tracking (`notrack`): until
    /// then tracking has no note to look for.
    notrack_used: AtomicBool,
}

/// The packet's first bytes (a copy) and what they say.
struct Headers<'a> {
    pkt: &'a [u8],
    facts: PacketFacts,
}

impl<'a> Headers<'a> {
    /// Copies the packet's first bytes into `bytes` and parses them. The
    /// caller's buffer, not one returned by value: moving a few hundred
    /// bytes per packet showed in profiles.
    #[inline(always)]
    fn read(skb: &SkBuff, bytes: &'a mut HeaderBuf<HEADER_BYTES>) -> Option<Headers<'a>> {
        let pkt = skb.headers(bytes);
        // An IPv4 TCP or UDP packet (nearly every tracked one) is read at
        // fixed offsets: `V4Ports::facts` is what the parse would find.
        let facts = match packet::V4Ports::read(pkt).and_then(|h| h.facts(pkt)) {
            Some(facts) => facts,
            None => packet::parse(pkt).ok()?,
        };
        Some(Headers { pkt, facts })
    }

    fn pkt(&self) -> &[u8] {
        self.pkt
    }
}

/// Tracking's clock: monotonic, as of the last tick (timeouts are in
/// seconds; a tick-old time is cheaper than a clocksource read per packet):
/// the tick count in nanoseconds. Read in place, not through a call (one
/// per tracked packet).
#[inline(always)]
fn now_ns() -> u64 {
    #[cfg(target_pointer_width = "64")]
    {
        // SAFETY: `jiffies_64` is the kernel's tick count, only written by
        // the tick; on 64-bit machines a read is one load that cannot tear,
        // which is what `get_jiffies_64` does there.
        let ticks = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(sys::jiffies_64)) };
        ticks.wrapping_mul(u64::from(sys::RNF_TICK_NSEC))
    }
    #[cfg(not(target_pointer_width = "64"))]
    // SAFETY: no preconditions.
    unsafe {
        sys::rnf_now_coarse_ns()
    }
}

fn secs_from(now: u64, secs: u32) -> u64 {
    now.saturating_add(u64::from(secs).saturating_mul(NS_PER_SEC))
}

/// The default limit and bucket count for this machine's memory.
fn default_sizes() -> (u32, u32) {
    // SAFETY: no preconditions.
    let ram = unsafe { sys::rnf_totalram_bytes() };
    (ct::default_max_entries(ram), ct::default_buckets(ram))
}

fn hash_key() -> ct::HashKey {
    let mut key = [0u8; 16];
    for chunk in key.chunks_mut(4) {
        // SAFETY: no preconditions.
        let r = unsafe { sys::rnf_random_u32() }.to_le_bytes();
        for (d, s) in chunk.iter_mut().zip(r.iter()) {
            *d = *s;
        }
    }
    key
}

impl Conntrack {
    /// Tracking for a new namespace, with the default limit and timeouts.
    pub fn new(net: NetRef) -> Result<Self> {
        let (limit, buckets) = default_sizes();
        Self::with_size(Some(net), limit, buckets)
    }

    /// Tracking with a given limit and bucket count; without a namespace
    /// (tests), no events are sent.
    pub fn with_size(net: Option<NetRef>, limit: u32, buckets: u32) -> Result<Self> {
        let timeouts = RcuBox::empty();
        drop(timeouts.replace(Some(KBox::new(Timeouts::default(), GFP_KERNEL)?)));
        Ok(Self {
            table: FlowTable::new(buckets, hash_key())?,
            notes: PacketNotes::new()?,
            limit: AtomicU32::new(limit.max(1)),
            timeouts,
            tcp: TcpConfig::default(),
            stats: Stats::default(),
            gc_cursor: AtomicU32::new(0),
            gc_delay: AtomicU32::new(GC_INTERVAL_MS),
            gc_evict: AtomicBool::new(false),
            net,
            active: AtomicBool::new(false),
            nat_used: AtomicBool::new(false),
            notrack_used: AtomicBool::new(false),
        })
    }

    /// Starts or stops tracking packets (flows already tracked stay, and
    /// age out by their timeouts while tracking is off).
    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Release);
    }

    /// Whether packets are being tracked.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Notes that a nat rule exists in this namespace: from now on the NAT
    /// stages run (for good: flows bound by a rule outlive it, as nf_nat's
    /// bindings outlive the rule that made them).
    pub fn set_nat_used(&self) {
        self.nat_used.store(true, Ordering::Release);
    }

    /// Whether a NAT binding can exist in this namespace (see
    /// [`set_nat_used`](Self::set_nat_used)).
    #[inline]
    pub fn nat_used(&self) -> bool {
        self.nat_used.load(Ordering::Acquire)
    }

    /// Tracking's hooks: (family, hook, priority), tracking first, then
    /// confirmation.
    pub const HOOKS: [(Family, Hook, i32); 8] = hooks::CT_HOOKS;

    /// How many of [`HOOKS`](Self::HOOKS) come first and track (the rest
    /// confirm).
    pub const TRACKING_HOOKS: usize = hooks::CT_TRACKING;

    /// The attachment points of [`HOOKS`](Self::HOOKS), tagged from
    /// `first_tag` on, the tracking ones of hook kind `track` and the
    /// confirming ones of `confirm`.
    pub fn hook_specs(first_tag: u32, (track, confirm): (u8, u8)) -> [HookSpec; 8] {
        let mut i = 0;
        Self::HOOKS.map(|(family, hook, priority)| {
            let spec = HookSpec {
                pf: family as u8,
                hooknum: hook as u8,
                priority,
                tag: first_tag + i as u32,
                kind: if i < Self::TRACKING_HOOKS {
                    track
                } else {
                    confirm
                },
            };
            i += 1;
            spec
        })
    }

    /// A tracking hook (of the first [`TRACKING_HOOKS`](Self::TRACKING_HOOKS)
    /// of [`HOOKS`](Self::HOOKS)): tracks the packet while tracking is on.
    #[inline(always)]
    pub(crate) fn track_hook(&self, skb: &SkBuff, state: &HookState<'_>) -> Verdict {
        if !self.active() {
            return Verdict::Accept;
        }
        self.track(skb, || state.in_is_loopback(), state.rcu())
    }

    /// [`track_hook`](Self::track_hook) for a NAT point that does its work
    /// (`hooks::fused_ct_hooks`). Out of line: inlined there as well, the
    /// tracking code no longer fit inline in tracking's own callback, and
    /// every stateful rule set paid about 20 instructions per packet.
    #[inline(never)]
    pub(crate) fn track_for_nat(&self, skb: &SkBuff, state: &HookState<'_>) -> Verdict {
        self.track_hook(skb, state)
    }

    /// A confirming hook (the rest of [`HOOKS`](Self::HOOKS)): confirms the
    /// packet's flow.
    #[inline(always)]
    pub(crate) fn confirm_hook(&self, skb: &SkBuff, state: &HookState<'_>) -> Verdict {
        self.confirm(skb, state.rcu());
        Verdict::Accept
    }

    /// The timeouts in force (a reference: copying them per tracked
    /// packet showed).
    fn timeouts<'g>(&'g self, guard: &'g ReadGuard) -> &'g Timeouts {
        self.timeouts.read(guard).unwrap_or(&Timeouts::LINUX)
    }

    /// Tracks a packet at the conntrack priority.
    ///
    /// `looped` says whether the packet came in on a loopback device, asked
    /// only when the packet's tuple has no flow (a call per packet else).
    #[inline(always)]
    pub(crate) fn track(
        &self,
        skb: &SkBuff,
        looped: impl Fn() -> bool,
        guard: &ReadGuard,
    ) -> Verdict {
        let mut bytes = HeaderBuf::new();
        let Some(h) = Headers::read(skb, &mut bytes) else {
            // Nothing to track; the rules see it as invalid.
            bump(&self.stats.invalid);
            return Verdict::Accept;
        };
        let fp = h.facts.fingerprint();
        // (`notrack` set the flag before its note, on this CPU.)
        if self.notrack_used.load(Ordering::Relaxed) {
            if let Some(n) = self.notes.get(skb) {
                if n.fingerprint == fp && n.state == CtState::UNTRACKED.0 && n.id == 0 {
                    // `notrack` in the raw table.
                    return Verdict::Accept;
                }
            }
        }
        let mut note = PacketNote {
            fingerprint: fp,
            ..PacketNote::default()
        };
        let verdict = match ct::classify(&h.facts, h.pkt()) {
            Classified::Flow(tuple) => self.track_flow(&h, &tuple, looped, &mut note, guard),
            Classified::IcmpError => {
                // The flow the error is about, noted as for its own packets:
                // the NAT stages translate the error from it (and the rules
                // see its mark and status), as `nf_ct_get` gives the flow
                // of a RELATED packet.
                let (state, flow) = self.icmp_error_state(&h.facts, h.pkt(), guard);
                note.state = state;
                if let Some((flow, dir)) = flow {
                    note.id = flow.id;
                    note.dir = dir.index() as u8;
                    note.bucket = flow.bucket(dir);
                }
                Verdict::Accept
            }
            Classified::Untracked => {
                note.state = CtState::UNTRACKED.0;
                Verdict::Accept
            }
            Classified::Invalid(_) => {
                note.state = CtState::INVALID.0;
                Verdict::Accept
            }
        };
        if note.state == CtState::INVALID.0 {
            bump(&self.stats.invalid);
        }
        self.notes.set(skb, &note);
        verdict
    }

    /// RELATED if the error quotes a tracked flow and goes to its endpoint.
    /// `facts` describe `pkt`, the packet from its IP header on.
    fn icmp_error_state<'g>(
        &'g self,
        facts: &PacketFacts,
        pkt: &[u8],
        guard: &'g ReadGuard,
    ) -> (u8, Option<(&'g CtFlow, Direction)>) {
        let inner = pkt
            .get(facts.l4_offset.saturating_add(8)..)
            .and_then(|p| icmp_error_inner(facts.family, p));
        let Some(inner) = inner else {
            return (CtState::INVALID.0, None);
        };
        match self.table.lookup(&inner.lookup, guard) {
            Some((flow, dir)) if inner.outer_dst_matches(&facts.dst) => {
                (CtState::RELATED.0, Some((flow, dir)))
            }
            _ => (CtState::INVALID.0, None),
        }
    }

    /// A packet that looped back (arriving on `lo`) after it was translated
    /// on its way out: its tuple is the inverse of one of a NATed flow's
    /// tuples. Linux knows such packets by the conntrack entry they carry;
    /// rnf recognises them by their tuple.
    fn looped_back<'g>(
        &'g self,
        tuple: &ct::Tuple,
        guard: &'g ReadGuard,
    ) -> Option<(&'g CtFlow, Direction)> {
        let (flow, d) = self.table.lookup(&tuple.invert(), guard)?;
        let nat = ct::status::SRC_NAT | ct::status::DST_NAT;
        (flow.status() & nat != 0).then_some((flow, d.opposite()))
    }

    /// Tracks a packet of `tuple`. Inlined into both callers of
    /// [`track`](Self::track) (tracking's callback and
    /// [`track_for_nat`](Self::track_for_nat)): left to the compiler it
    /// became a call in tracking's callback too.
    #[inline(always)]
    fn track_flow(
        &self,
        h: &Headers<'_>,
        tuple: &ct::Tuple,
        looped: impl Fn() -> bool,
        note: &mut PacketNote,
        guard: &ReadGuard,
    ) -> Verdict {
        let now = now_ns();
        let timeouts = self.timeouts(guard);
        // The tuple's bucket, hashed once: the lookup, a new flow's
        // original node and early drop all start from it.
        let bucket = self.table.bucket_of(tuple);
        // At most twice: a TCP SYN that reopens a closed connection kills
        // the old flow and starts again, as `-NF_REPEAT` does.
        for _ in 0..2 {
            let found = match self.table.lookup_at(bucket, tuple, guard) {
                Some((flow, _)) if flow.expired(now) => {
                    self.kill(flow, Gone::Expired, guard);
                    None
                }
                None if looped() => self.looped_back(tuple, guard),
                other => other,
            };
            let (flow, dir, created) = match found {
                Some((flow, dir)) => (flow, dir, false),
                None => match self.create(h, tuple, bucket, now, guard) {
                    Ok(Some((flow, dir, created))) => (flow, dir, created),
                    Ok(None) => {
                        note.state = CtState::INVALID.0;
                        return Verdict::Accept;
                    }
                    Err(()) => return Verdict::Drop,
                },
            };
            match self.update(flow, dir, h, now, timeouts, guard) {
                Some(state) => {
                    note.state = state.0;
                    note.id = flow.id;
                    note.dir = dir.index() as u8;
                    note.bucket = flow.bucket(dir);
                    // (Only the NAT stages read it.)
                    if self.nat_used() {
                        note.shape = nat::noted_shape(&h.facts);
                    }
                    if flow.status() & ct::status::CONFIRMED == 0 {
                        note.flags |= NOTE_UNCONFIRMED;
                    }
                    if created {
                        note.flags |= NOTE_CREATED;
                    }
                    return Verdict::Accept;
                }
                None => {
                    // Reopen: the old flow is gone; track anew.
                    self.kill(flow, Gone::Deleted, guard);
                }
            }
        }
        note.state = CtState::INVALID.0;
        Verdict::Accept
    }

    /// Creates and inserts a flow for the first packet of `tuple`, whose
    /// bucket is `bucket`. `Ok(None)`: the packet cannot start a flow
    /// (invalid). `Err`: the table is full, drop the packet.
    fn create<'g>(
        &'g self,
        h: &Headers<'_>,
        tuple: &ct::Tuple,
        bucket: u32,
        now: u64,
        guard: &'g ReadGuard,
    ) -> core::result::Result<Option<(&'g CtFlow, Direction, bool)>, ()> {
        let track = match h.facts.l4 {
            L4::Tcp { .. } => {
                let Some(seg) = TcpSegment::from_packet(&h.facts, h.pkt()) else {
                    return Ok(None);
                };
                if !TcpConn::may_create(&seg, &self.tcp) {
                    return Ok(None);
                }
                match TcpConn::new(&seg, self.tcp) {
                    Ok(c) => Track::Tcp(c),
                    Err(_) => return Ok(None),
                }
            }
            L4::Icmp { ty, .. } => {
                if !icmp_may_create(h.facts.family, ty) {
                    return Ok(None);
                }
                Track::Icmp
            }
            _ if matches!(tuple.proto, packet::IPPROTO_UDP | packet::IPPROTO_UDPLITE) => {
                Track::Udp(UdpState::default())
            }
            _ => Track::Generic,
        };
        let limit = self.limit.load(Ordering::Relaxed);
        if !self.table.reserve(limit) {
            let evicted = self.early_drop(bucket, guard);
            // Nothing to evict near the bucket: garbage collection makes
            // room (written once, not per dropped packet).
            if !evicted && !self.gc_evict.load(Ordering::Relaxed) {
                self.gc_evict.store(true, Ordering::Relaxed);
            }
            if !evicted || !self.table.reserve(limit) {
                bump(&self.stats.full_drops);
                return Err(());
            }
        }
        let Ok(flow) = self
            .table
            .alloc_at(*tuple, bucket, tuple.invert(), now, track)
        else {
            self.table.unreserve();
            bump(&self.stats.full_drops);
            return Err(());
        };
        // Until this packet's update sets the protocol's timeout, the new
        // flow lives as long as an unconfirmed flow may: another CPU that
        // finds it in between must not take it for expired.
        flow.expires_ns
            .store(now.saturating_add(UNCONFIRMED_NS), Ordering::Relaxed);
        match self.table.insert(flow, guard) {
            Ok(f) => {
                bump(&self.stats.inserted);
                Ok(Some((f, Direction::Original, true)))
            }
            // Another CPU inserted the same flow first: use it.
            Err(InsertError::Clash(f, d, Direction::Original)) => Ok(Some((f, d, false))),
            // The packet's reply tuple is another flow's (one NATed to
            // this packet's tuple): the insertion fails and the packet is
            // dropped, as `__nf_conntrack_confirm()` does.
            Err(InsertError::Clash(_, _, Direction::Reply)) => {
                bump(&self.stats.full_drops);
                Err(())
            }
            Err(InsertError::NoBucket) => Err(()),
        }
    }

    /// Accounts a packet to its flow. `None` when a TCP SYN reopens a
    /// closed connection (the caller kills the flow and starts again).
    fn update(
        &self,
        flow: &CtFlow,
        dir: Direction,
        h: &Headers<'_>,
        now: u64,
        timeouts: &Timeouts,
        guard: &ReadGuard,
    ) -> Option<CtState> {
        let seen_reply = flow.status() & ct::status::SEEN_REPLY != 0;
        let mut state = CtState::for_packet(dir, seen_reply);
        let mut expires: Option<u64> = None;
        let mut assured = false;
        let mut destroy = false;
        let mut changed = false;
        match h.facts.l4 {
            L4::Tcp { .. } => {
                let seg = TcpSegment::from_packet(&h.facts, h.pkt());
                let verdict = self.table.with_track(flow, |t| match (t, seg) {
                    (Track::Tcp(c), Some(seg)) => Some(c.on_segment(dir, &seg)),
                    _ => None,
                });
                let Some(v) = verdict else {
                    return Some(CtState::INVALID);
                };
                state = v.ct_state;
                match v.action {
                    TcpAction::Accept => {}
                    TcpAction::Ignore(_) => return Some(state),
                    TcpAction::Invalid(_) => {
                        if v.lower_timeout {
                            let low =
                                secs_from(now, timeouts.tcp_slot(ct::TcpTimeout::Unacknowledged));
                            flow.expires_ns.fetch_min(low, Ordering::Relaxed);
                        }
                        return Some(CtState::INVALID);
                    }
                    TcpAction::Reopen => return None,
                }
                if let Some(r) = v.refresh {
                    expires = Some(secs_from(now, timeouts.tcp_refresh(&r)));
                }
                assured = v.became_assured;
                destroy = v.destroy;
                changed = v.old_state != v.new_state;
            }
            _ if matches!(h.facts.proto, packet::IPPROTO_UDP | packet::IPPROTO_UDPLITE)
                && flow.status() & UDP_STREAM == UDP_STREAM =>
            {
                // An assured UDP flow (replied, a stream): its state no
                // longer changes, so no lock is needed to refresh it.
                expires = Some(secs_from(now, timeouts.udp_replied));
            }
            _ if matches!(h.facts.proto, packet::IPPROTO_UDP | packet::IPPROTO_UDPLITE)
                && dir == Direction::Original
                && !seen_reply =>
            {
                // A UDP flow not replied to yet, one more packet the same
                // way: `UdpTrack::on_packet` would change nothing and give
                // the unreplied timeout, so no lock either. (A reply being
                // handled meanwhile sets the same timeout.)
                expires = Some(secs_from(now, timeouts.udp_unreplied));
            }
            _ => {
                let secs = self.table.with_track(flow, |t| match t {
                    Track::Udp(u) => {
                        let ms = now.saturating_sub(flow.created_ns) / 1_000_000;
                        let up = u.on_packet(dir, ms, timeouts);
                        assured = up.became_assured;
                        up.timeout_secs
                    }
                    Track::Icmp => timeouts.icmp,
                    _ => timeouts.generic,
                });
                expires = Some(secs_from(now, secs));
            }
        }
        if let Some(e) = expires {
            flow.expires_ns.store(e, Ordering::Relaxed);
        }
        flow.count(dir, h.facts.total_len);
        let mut bits = 0;
        if dir == Direction::Reply {
            bits |= ct::status::SEEN_REPLY;
        }
        if assured {
            bits |= ct::status::ASSURED;
        }
        // Read first: most packets set nothing new, and an atomic
        // read-modify-write per packet would bounce the flow's cache line.
        if flow.status() & bits != bits && flow.set_status(bits) != 0 {
            changed = true;
        }
        if destroy {
            self.kill(flow, Gone::Deleted, guard);
        } else if changed && flow.status() & ct::status::CONFIRMED != 0 {
            self.event(flow, ct_event::UPDATE, guard);
        }
        Some(state)
    }

    /// Evicts one flow to make room, from the first of the
    /// `EARLY_DROP_BUCKETS` buckets from `start` (the new flow's) that has
    /// a candidate, as `nf_conntrack`'s `early_drop()` stops at the first
    /// bucket it can drop from: in that bucket an expired flow (garbage
    /// collection has not reached it yet), else an unassured (or closing)
    /// one: unconfirmed flows first, then the oldest. The buckets are
    /// searched for original nodes, then for reply nodes: every node
    /// counts, as in `early_drop_list()`, for a table far smaller than its
    /// hash (a low limit) has few flows within 8 buckets, and counting only
    /// original nodes left half of them out. (Stopping at the first bucket,
    /// not ranking all the buckets' flows, keeps the cost of a new flow in
    /// a full table that of one bucket's walk.)
    fn early_drop(&self, start: u32, guard: &ReadGuard) -> bool {
        let n = self.table.buckets();
        let now = now_ns();
        let mut victim: Option<&CtFlow> = None;
        // Original nodes first, then, if no bucket had a candidate, reply
        // nodes: a full table with more flows than buckets (the usual case)
        // has one in the first bucket, and ranks half the nodes.
        'search: for pass in [Direction::Original, Direction::Reply] {
            for i in 0..EARLY_DROP_BUCKETS.min(n) {
                let b = start.wrapping_add(i).checked_rem(n).unwrap_or(0);
                self.table.for_each_node_in(b, guard, |flow, d| {
                    if d != pass {
                        return;
                    }
                    if !flow.expired(now) && !self.evictable(flow) {
                        return;
                    }
                    let better = match victim {
                        None => true,
                        Some(v) => {
                            let rank = |f: &CtFlow| {
                                (f.expired(now), f.status() & ct::status::CONFIRMED == 0)
                            };
                            (rank(flow), v.created_ns) > (rank(v), flow.created_ns)
                        }
                    };
                    if better {
                        victim = Some(flow);
                    }
                });
                if victim.is_some() {
                    break 'search;
                }
            }
        }
        match victim {
            Some(v) if v.expired(now) => self.kill(v, Gone::Expired, guard),
            Some(v) => self.kill(v, Gone::EarlyDrop, guard),
            None => false,
        }
    }

    /// Whether a live flow may be evicted to make room: not assured, or a
    /// TCP connection that is closing (`nf_conntrack`'s early drop and its
    /// GC's eviction take the same).
    fn evictable(&self, flow: &CtFlow) -> bool {
        flow.status() & ct::status::ASSURED == 0
            || matches!(self.table.track(flow), Track::Tcp(c) if c.can_early_drop())
    }

    /// Removes a flow, counting and announcing why.
    fn kill(&self, flow: &CtFlow, why: Gone, guard: &ReadGuard) -> bool {
        let confirmed = flow.status() & ct::status::CONFIRMED != 0;
        if !self.table.remove(flow) {
            return false;
        }
        match why {
            Gone::Expired => bump(&self.stats.expired),
            Gone::Deleted => bump(&self.stats.deleted),
            Gone::EarlyDrop => bump(&self.stats.early_drops),
            Gone::Silent => {}
        }
        if confirmed && why != Gone::Silent {
            // The flow stays readable until the grace period ends.
            self.event(flow, ct_event::DESTROY, guard);
        }
        true
    }

    /// Confirms the flow of a packet at its last hook.
    #[inline(always)]
    fn confirm(&self, skb: &SkBuff, guard: &ReadGuard) {
        let Some(note) = self.notes.get(skb) else {
            return;
        };
        if note.flags & NOTE_UNCONFIRMED == 0 || note.id == 0 {
            return;
        }
        if let Some((flow, _)) = self.table.find_id(note.bucket, note.id, guard) {
            if flow.set_status(ct::status::CONFIRMED) != 0 {
                self.event(flow, ct_event::NEW, guard);
            }
        }
    }

    /// What tracking found for the packet in `skb` (with headers `facts`),
    /// for a hook after tracking: from this CPU's note when it is for this
    /// packet, otherwise by looking the packet up without changing state.
    /// (Inlined into the hooks; the lookup without a note is not.)
    #[inline(always)]
    pub fn packet_ct<'g>(
        &'g self,
        skb: &SkBuff,
        facts: &PacketFacts,
        pkt: &[u8],
        guard: &'g ReadGuard,
    ) -> PacketCt<'g> {
        if let Some(n) = self.notes.get(skb) {
            if n.fingerprint == facts.fingerprint() {
                return self.noted_ct(n, guard);
            }
        }
        self.packet_ct_unnoted(facts, pkt, guard)
    }

    /// This CPU's note, if it is for the packet in `skb` (its fingerprint
    /// still to be checked against the packet).
    #[inline(always)]
    pub fn note(&self, skb: &SkBuff) -> Option<PacketNote> {
        self.notes.get(skb)
    }

    /// [`packet_ct`](Self::packet_ct) of an IPv4 TCP or UDP packet whose
    /// [`note`](Self::note) is `n`, with its facts, read at fixed offsets
    /// from `pkt` (its headers from the IP header on) instead of parsed:
    /// `packet::V4Ports::facts` gives what `packet::parse` would, and the
    /// fingerprint of what it reads is the parse's. `None` for a packet
    /// the note is not for, or of another kind, which the caller parses.
    #[inline(always)]
    pub fn noted_packet<'g>(
        &'g self,
        n: PacketNote,
        pkt: &[u8],
        guard: &'g ReadGuard,
    ) -> Option<(PacketFacts, PacketCt<'g>)> {
        let h = packet::V4Ports::read(pkt)?;
        if h.fingerprint() != n.fingerprint {
            return None;
        }
        let facts = h.facts(pkt)?;
        Some((facts, self.noted_ct(n, guard)))
    }

    /// What note `n` (checked against the packet) says of the packet: its
    /// noted state and flow.
    #[inline(always)]
    fn noted_ct<'g>(&'g self, n: PacketNote, guard: &'g ReadGuard) -> PacketCt<'g> {
        // The noted direction, not the one `find_id` meets first: a flow
        // whose two tuples share a bucket is linked there twice.
        let dir = Direction::from_index(usize::from(n.dir));
        let flow = if n.id != 0 {
            self.table
                .find_id(n.bucket, n.id, guard)
                .map(|(f, _)| (f, dir))
        } else {
            None
        };
        PacketCt {
            state: CtState(n.state),
            flow,
            note: Some(n),
        }
    }

    /// The stated length of the packet in `skb` if `note` (its
    /// [`note`](Self::note)) is for it, told from the note's fingerprint
    /// without a parse (IPv4, and IPv6 without extension headers, TCP and
    /// UDP only: [`packet::noted_fields`]; `None` for any other packet,
    /// which [`packet_ct`](Self::packet_ct) finds).
    #[inline(always)]
    pub fn noted_len(&self, skb: &SkBuff, note: &PacketNote) -> Option<u32> {
        // The IP header and the transport header after it (a TCP header
        // after at most 48 bytes of IPv4 header, or after IPv6's 40).
        let mut hdr = HeaderBuf::<68>::new();
        let (fingerprint, len) = packet::noted_fields(skb.headers(&mut hdr))?;
        (fingerprint == note.fingerprint).then_some(len)
    }

    /// [`packet_ct`](Self::packet_ct) for a packet without a note.
    #[inline(never)]
    fn packet_ct_unnoted<'g>(
        &'g self,
        facts: &PacketFacts,
        pkt: &[u8],
        guard: &'g ReadGuard,
    ) -> PacketCt<'g> {
        match ct::classify(facts, pkt) {
            // A packet translated since it was tracked has the inverse of
            // one of its flow's tuples.
            Classified::Flow(t) => match self
                .table
                .lookup(&t, guard)
                .or_else(|| self.looped_back(&t, guard))
            {
                Some((flow, dir)) => PacketCt {
                    state: CtState::for_packet(dir, flow.status() & ct::status::SEEN_REPLY != 0),
                    flow: Some((flow, dir)),
                    note: None,
                },
                None => PacketCt {
                    state: CtState::INVALID,
                    flow: None,
                    note: None,
                },
            },
            Classified::IcmpError => {
                let (state, flow) = self.icmp_error_state(facts, pkt, guard);
                PacketCt {
                    state: CtState(state),
                    flow,
                    note: None,
                }
            }
            Classified::Untracked => PacketCt {
                state: CtState::UNTRACKED,
                flow: None,
                note: None,
            },
            Classified::Invalid(_) => PacketCt {
                state: CtState::INVALID,
                flow: None,
                note: None,
            },
        }
    }

    /// Exempts the packet from tracking (`notrack`, raw table).
    pub fn notrack(&self, skb: &SkBuff, facts: &PacketFacts) {
        if !self.notrack_used.load(Ordering::Relaxed) {
            self.notrack_used.store(true, Ordering::Relaxed);
        }
        self.notes.set(
            skb,
            &PacketNote {
                fingerprint: facts.fingerprint(),
                state: CtState::UNTRACKED.0,
                ..PacketNote::default()
            },
        );
    }

    /// The packet's first packet was dropped by the rules: its flow, if
    /// this packet created it and it was never confirmed, goes too.
    pub fn dropped(&self, ct: &PacketCt<'_>, guard: &ReadGuard) {
        let (Some(note), Some((flow, _))) = (ct.note, ct.flow) else {
            return;
        };
        if note.flags & NOTE_CREATED != 0 && flow.status() & ct::status::CONFIRMED == 0 {
            self.kill(flow, Gone::Silent, guard);
        }
    }

    /// The flow's message for listings and events.
    fn flow_msg(&self, flow: &CtFlow, now: u64, event: Option<u8>) -> FlowMsg {
        let expires = flow.expires_ns.load(Ordering::Relaxed);
        FlowMsg {
            orig: flow.tuple(Direction::Original),
            reply: flow.tuple(Direction::Reply),
            id: flow.id,
            proto_state: self.table.track(flow).proto_state(),
            status: flow.status(),
            timeout_secs: u32::try_from(expires.saturating_sub(now) / NS_PER_SEC)
                .unwrap_or(u32::MAX),
            age_secs: u32::try_from(now.saturating_sub(flow.created_ns) / NS_PER_SEC)
                .unwrap_or(u32::MAX),
            mark: flow.mark.load(Ordering::Relaxed),
            counters: [
                flow.counted(Direction::Original),
                flow.counted(Direction::Reply),
            ],
            event,
        }
    }

    /// Tells `monitor conntrack` listeners about a flow. The check for
    /// listeners is inlined where flows are made and dropped (with no
    /// listener, twice per new flow in a full table); the message is built
    /// out of line.
    #[inline(always)]
    fn event(&self, flow: &CtFlow, kind: u8, guard: &ReadGuard) {
        let Some(net) = self.net.as_ref().map(NetRef::get) else {
            return;
        };
        if genl::has_listeners(net, 0, guard) {
            self.send_event(net, flow, kind, guard);
        }
    }

    /// [`event`](Self::event)'s message, for a `net` with listeners.
    #[inline(never)]
    fn send_event(&self, net: &crate::net::Net, flow: &CtFlow, kind: u8, guard: &ReadGuard) {
        let msg = self.flow_msg(flow, now_ns(), Some(kind));
        let mut buf = [0u8; 512];
        let mut w = AttrWriter::new(&mut buf);
        msg.encode(&mut w);
        if let Ok(len) = w.finish() {
            if let Some(payload) = buf.get(..len) {
                // A lost event (no memory, full socket) is the listener's
                // loss: it sees ENOBUFS.
                let _ = genl::multicast(net, 0, cmd::CT_EVENT, payload, guard);
            }
        }
    }

    /// Walks `count` buckets from `start` (wrapping), `GC_BATCH` buckets per
    /// RCU read section: `step` gets `Sweep::Flow` for each flow (with the
    /// section's guard and the time), then `Sweep::Batch` outside the
    /// section, where it may sleep; the CPU is yielded between batches.
    /// Returns the bucket after the last one walked.
    fn sweep(
        &self,
        start: u32,
        count: u32,
        mut step: impl FnMut(Sweep<'_>) -> Result,
    ) -> Result<u32> {
        let n = self.table.buckets();
        let mut b = start.checked_rem(n).unwrap_or(0);
        let mut done = 0;
        while done < count {
            {
                let lock = rcu::read_lock();
                let guard = lock.guard();
                let now = now_ns();
                let mut err = Ok(());
                for _ in 0..GC_BATCH.min(count - done) {
                    self.table.for_each_in(b, guard, |flow| {
                        if err.is_ok() {
                            err = step(Sweep::Flow(flow, guard, now));
                        }
                    });
                    b = b.wrapping_add(1).checked_rem(n).unwrap_or(0);
                    done += 1;
                }
                err?;
            }
            step(Sweep::Batch)?;
            // SAFETY: no preconditions; process context, no lock held.
            unsafe { sys::rnf_cond_resched() };
        }
        Ok(b)
    }

    /// One garbage collection pass over a slice of the table; returns how
    /// many flows it collected.
    pub(crate) fn gc_pass(&self) -> u32 {
        if self.table.count() == 0 {
            // Nothing to collect: no walk over the empty buckets.
            return 0;
        }
        let slice = (self.table.buckets() / GC_SLICES).max(1);
        let start = self.gc_cursor.load(Ordering::Relaxed);
        // Above this many flows, after a packet was dropped with the table
        // full, confirmed unassured flows are evicted.
        let evict_above = self
            .gc_evict
            .load(Ordering::Relaxed)
            .then(|| self.evict_threshold());
        let mut collected = 0u32;
        let swept = self.sweep(start, slice, |s| {
            if let Sweep::Flow(flow, guard, now) = s {
                let confirmed = flow.status() & ct::status::CONFIRMED != 0;
                let gone = if flow.expired(now) {
                    self.kill(flow, Gone::Expired, guard)
                } else if !confirmed && now.saturating_sub(flow.created_ns) > UNCONFIRMED_NS {
                    self.kill(flow, Gone::Silent, guard)
                } else if confirmed
                    && evict_above.is_some_and(|m| self.table.count() > m)
                    && self.evictable(flow)
                {
                    self.kill(flow, Gone::EarlyDrop, guard)
                } else {
                    false
                };
                collected = collected.saturating_add(u32::from(gone));
            }
            Ok(())
        });
        if let Ok(next) = swept {
            self.gc_cursor.store(next, Ordering::Relaxed);
        }
        if evict_above.is_some_and(|m| self.table.count() <= m) {
            self.gc_evict.store(false, Ordering::Relaxed);
        }
        collected
    }

    /// The number of flows above which garbage collection evicts once a
    /// packet was dropped with the table full.
    fn evict_threshold(&self) -> u32 {
        let limit = self.limit.load(Ordering::Relaxed);
        u32::try_from(u64::from(limit) * u64::from(GC_EVICT_PERCENT) / 100).unwrap_or(limit)
    }

    /// Every flow, as messages for a listing.
    pub fn dump(&self) -> Result<KVec<KVec<u8>>> {
        let mut msgs = KVec::new();
        let mut batch: KVec<FlowMsg> = KVec::new();
        self.sweep(0, self.table.buckets(), |s| {
            match s {
                Sweep::Flow(flow, _, now) => {
                    if flow.status() & ct::status::CONFIRMED != 0 && !flow.expired(now) {
                        // Under RCU: no sleeping allocation.
                        batch.push(self.flow_msg(flow, now, None), GFP_ATOMIC)?;
                    }
                }
                Sweep::Batch => {
                    for m in batch.iter() {
                        let mut w = AttrWriter::measure();
                        m.encode(&mut w);
                        let mut buf = KVec::from_elem(0u8, w.len(), GFP_KERNEL)?;
                        let mut w = AttrWriter::new(&mut buf);
                        m.encode(&mut w);
                        w.finish().map_err(|_| EINVAL)?;
                        msgs.push(buf, GFP_KERNEL)?;
                    }
                    batch = KVec::new();
                }
            }
            Ok(())
        })?;
        Ok(msgs)
    }

    /// Removes the flow with tuple `t` (either direction). False if none.
    pub fn delete(&self, t: &ct::Tuple) -> bool {
        let lock = rcu::read_lock();
        let guard = lock.guard();
        match self.table.lookup(t, guard) {
            Some((flow, _)) => self.kill(flow, Gone::Deleted, guard),
            None => false,
        }
    }

    /// Removes every flow; returns how many.
    pub fn flush(&self) -> u32 {
        let mut removed = 0u32;
        let _ = self.sweep(0, self.table.buckets(), |s| {
            if let Sweep::Flow(flow, guard, _) = s {
                let why = if flow.status() & ct::status::CONFIRMED != 0 {
                    Gone::Deleted
                } else {
                    Gone::Silent
                };
                if self.kill(flow, why, guard) {
                    removed += 1;
                }
            }
            Ok(())
        });
        removed
    }

    /// Sets the limit (existing flows above it stay until they end).
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
    }

    /// Sets one timeout; applies to flows from their next packet on.
    pub fn set_timeout(
        &self,
        key: TimeoutKey,
        secs: u32,
    ) -> core::result::Result<(), ct::TimeoutError> {
        let mut t = {
            let lock = rcu::read_lock();
            *self.timeouts(lock.guard())
        };
        t.set(key, secs)?;
        // Allocation failure leaves the timeouts as they were.
        if let Ok(b) = KBox::new(t, GFP_KERNEL) {
            drop(self.timeouts.replace(Some(b)));
        }
        Ok(())
    }

    /// The table's numbers.
    pub fn stats(&self) -> CtStatsMsg {
        let lock = rcu::read_lock();
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CtStatsMsg {
            count: self.table.count(),
            limit: self.limit.load(Ordering::Relaxed),
            buckets: self.table.buckets(),
            timeouts: *self.timeouts(lock.guard()),
            inserted: ld(&self.stats.inserted),
            expired: ld(&self.stats.expired),
            early_drops: ld(&self.stats.early_drops),
            full_drops: ld(&self.stats.full_drops),
            invalid: ld(&self.stats.invalid),
            deleted: ld(&self.stats.deleted),
            nat_drops: ld(&self.stats.nat_failed),
        }
    }

    /// Whether the NAT of side `manip` is decided for the flow.
    pub fn nat_done(flow: &CtFlow, manip: Manip) -> bool {
        flow.status.load(Ordering::Relaxed) & nat_done_bit(manip) != 0
    }

    /// Decides the NAT of side `manip` for a flow on its first packet:
    /// `action` is what the nat table said (`None`: no translation). The
    /// flow's reply tuple becomes the inverse of the translated tuple,
    /// chosen so that no other flow has it. `Err` when no free tuple is
    /// left in the range (the packet is dropped and counted).
    pub fn bind_nat(
        &self,
        flow: &CtFlow,
        manip: Manip,
        action: Option<(NatKind, NatRange)>,
        skb: &SkBuff,
        state: &HookState<'_>,
    ) -> core::result::Result<(), ()> {
        let guard = state.rcu();
        let done = nat_done_bit(manip);
        let Some((kind, range)) = action else {
            flow.set_status(done);
            return Ok(());
        };
        let local = match kind {
            NatKind::Masquerade => match state.masquerade_addr(skb) {
                Some((addr, ifindex)) => {
                    flow.aux.store(ifindex, Ordering::Relaxed);
                    Some(addr)
                }
                None => None,
            },
            NatKind::Redirect => state.redirect_addr(skb),
            NatKind::Snat | NatKind::Dnat => Some([0; 16]),
        };
        let Some(local) = local else {
            bump(&self.stats.nat_failed);
            return Err(());
        };
        let range = range.resolve(kind, local);
        let cur = flow.tuple(Direction::Reply).invert();
        let chosen = nat::choose_tuple(
            &cur,
            &range,
            manip,
            0,
            // SAFETY: no preconditions.
            || unsafe { sys::rnf_random_u32() },
            |reply| {
                self.table
                    .lookup(reply, guard)
                    .is_some_and(|(f, _)| f.id != flow.id)
            },
        );
        let Some(new) = chosen else {
            bump(&self.stats.nat_failed);
            return Err(());
        };
        if new != cur {
            if !self.table.rehash_reply(flow, &new.invert(), guard) {
                bump(&self.stats.nat_failed);
                return Err(());
            }
            flow.set_status(match manip {
                Manip::Src => ct::status::SRC_NAT,
                Manip::Dst => ct::status::DST_NAT,
            });
        }
        flow.set_status(done);
        Ok(())
    }

    /// Rewrites a packet of the flow (direction `dir`) for side `manip`
    /// from the flow's binding, as `nf_nat_packet()`. Returns whether the
    /// packet was changed.
    /// `facts` describe `pkt`, the packet's headers as they are now.
    /// `ct` is what [`packet_ct`](Self::packet_ct) found for the packet;
    /// its note, if any, is renoted with the new headers.
    pub fn nat_packet(
        &self,
        flow: &CtFlow,
        dir: Direction,
        manip: Manip,
        skb: &SkBuff,
        (facts, pkt): (&PacketFacts, &[u8]),
        ct: &PacketCt<'_>,
    ) -> Result<bool> {
        if !nat_applies(flow, dir, manip) {
            return Ok(false);
        }
        let ep = nat::translated_endpoint_of_bytes(&flow.tuple_bytes(dir.opposite()), manip);
        // Translated already (a packet that looped back)? Only a packet
        // that has the new address on this side can be: the tuple is made
        // for those only.
        let side = match manip {
            Manip::Src => &facts.src,
            Manip::Dst => &facts.dst,
        };
        if *side == ep.addr {
            if let Some(t) = ct::Tuple::from_facts(facts, pkt) {
                if nat::endpoint(&t, manip) == ep {
                    return Ok(false);
                }
            }
        }
        // Only the headers the rewrite changes are made writable (and
        // pulled into the linear part), as nf_nat does.
        let len = u32::try_from(nat::rewrite_len(facts)).unwrap_or(u32::MAX);
        let mut rw = skb.write_headers(len, |buf, cs| {
            nat::manip_packet(buf, facts, manip, &ep, cs.partial())
        })?;
        if rw.0 == Err(nat::NatError::NeedFullPacket) {
            skb.linearize()?;
            rw = skb.write_headers(skb.network_len(), |buf, cs| {
                nat::manip_packet(buf, facts, manip, &ep, cs.partial())
            })?;
        }
        let changed = self.account(skb, rw)?;
        // The packet's headers now, for the later hooks' note check. A
        // source rewrite is the last stage with rules at its hook
        // (POSTROUTING, LOCAL_IN): only confirmation follows, which finds
        // the flow by the note's skb alone, so the note is left as it is.
        if let Some(mut note) = ct.note.filter(|_| manip == Manip::Dst) {
            note.fingerprint = nat::rewritten_fingerprint(facts, manip, &ep);
            self.notes.set(skb, &note);
        }
        Ok(changed)
    }

    /// [`nat_packet`](Self::nat_packet) for a packet that tracking noted
    /// with a shape (`nat::noted_shape`) and whose binding for `manip` is
    /// decided: rewritten from the note, without copying or parsing its
    /// headers (`nat::manip_noted`, or `nat::manip_noted_v6` for an IPv6
    /// hook (`V6`), checks them against the note's fingerprint where it
    /// rewrites; with no translation here for the packet's direction it
    /// passes untouched once they are seen to be the noted ones). `None`
    /// where the packet needs the full stage: no such note for it, a first
    /// packet still to be bound, or headers that are not the noted ones.
    #[inline(always)]
    pub fn nat_noted<const V6: bool>(
        &self,
        skb: &SkBuff,
        manip: Manip,
        guard: &ReadGuard,
    ) -> Option<Result<bool>> {
        let mut note = self.notes.get(skb)?;
        if note.shape == 0 || note.id == 0 {
            return None;
        }
        let (flow, _) = self.table.find_id(note.bucket, note.id, guard)?;
        let dir = Direction::from_index(usize::from(note.dir));
        // (The condition under which the stage consults the nat table.)
        if !Self::nat_done(flow, manip)
            && dir == Direction::Original
            && flow.status() & ct::status::CONFIRMED == 0
        {
            return None;
        }
        if !nat_applies(flow, dir, manip) {
            // Nothing to translate on this side of the flow (no binding,
            // or one only for the other side): the packet passes as it is
            // once its headers are seen to be the noted ones, as the full
            // stage, copying and parsing them, would let it pass.
            return self.noted_len(skb, &note).map(|_| Ok(false));
        }
        let ep = nat_endpoint(flow, dir, manip);
        let noted = (note.shape, note.fingerprint);
        let done = if V6 {
            skb.write_headers(nat::noted_rewrite_len_v6(note.shape), |buf, cs| {
                nat::manip_noted_v6(buf, noted, manip, &ep, cs.partial())
            })
        } else {
            skb.write_headers(nat::noted_rewrite_len(note.shape), |buf, cs| {
                nat::manip_noted(buf, noted, manip, &ep, (cs.partial(), cs.complete()))
            })
        };
        let (noted, state) = match done {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        match noted {
            nat::Noted::Stale => None,
            nat::Noted::Translated => Some(Ok(false)),
            nat::Noted::Done {
                rewrite,
                fingerprint,
            } => {
                // As `nat_packet`: a destination rewrite renotes.
                if let Some(fingerprint) = fingerprint {
                    note.fingerprint = fingerprint;
                    self.notes.set(skb, &note);
                }
                Some(self.account(skb, (Ok(rewrite), state)))
            }
        }
    }

    /// Translates an ICMP error about a NATed flow (travelling in `dir`)
    /// at a hook doing `manip`: the quoted packet and the outer address,
    /// as `nf_nat_icmp_reply_translation()`.
    pub fn nat_icmp_error(
        &self,
        flow: &CtFlow,
        dir: Direction,
        manip: Manip,
        skb: &SkBuff,
        facts: &PacketFacts,
    ) -> Result<bool> {
        if !nat_applies(flow, dir, manip) {
            return Ok(false);
        }
        let other = flow.tuple(dir.opposite());
        let inner = nat::endpoint(&other, manip.invert());
        // The outer address is `translated_endpoint(&other, manip)`'s, which
        // is the same side of `other`: the quoted packet's.
        let outer = inner.addr;
        let rw = skb.write_headers(skb.network_len(), |buf, cs| {
            nat::translate_icmp_error(buf, facts, manip, &outer, &inner, cs.partial())
        })?;
        self.rewritten(skb, rw)
    }

    /// Accounts a header rewrite in the skb's checksum state and notes the
    /// packet's new headers for the later hooks.
    fn rewritten(&self, skb: &SkBuff, rw: (RewriteResult, CsumState)) -> Result<bool> {
        let changed = self.account(skb, rw)?;
        self.renote(skb);
        Ok(changed)
    }

    /// Accounts a header rewrite in the skb's checksum state (`state`, as
    /// the rewrite found it).
    fn account(&self, skb: &SkBuff, (rw, state): (RewriteResult, CsumState)) -> Result<bool> {
        let rw = rw.map_err(|_| EINVAL)?;
        skb.csum_update(
            state,
            crate::csum::to_native_wsum(crate::csum::fold(rw.csum_delta)),
            rw.csum_none,
        );
        Ok(true)
    }

    /// After a rewrite, notes the packet's new headers for the later hooks.
    fn renote(&self, skb: &SkBuff) {
        let mut bytes = HeaderBuf::new();
        if let Some(h) = Headers::read(skb, &mut bytes) {
            self.renote_as(skb, &h.facts);
        }
    }

    /// Notes that the packet's headers are now `facts`.
    fn renote_as(&self, skb: &SkBuff, facts: &PacketFacts) {
        let Some(mut note) = self.notes.get(skb) else {
            return;
        };
        note.fingerprint = facts.fingerprint();
        self.notes.set(skb, &note);
    }

    /// Forgets masqueraded flows of interface `ifindex` in this namespace
    /// (all of them when it went down, those mapped to `addr` when it lost
    /// that address), as `nf_nat_masquerade` does. Does not sleep.
    pub fn forget_masquerade(&self, ifindex: i32, addr: Option<(Family, [u8; 16])>) {
        let lock = rcu::read_lock();
        let guard = lock.guard();
        for b in 0..self.table.buckets() {
            self.table.for_each_in(b, guard, |flow| {
                if flow.status() & ct::status::SRC_NAT == 0
                    || flow.aux.load(Ordering::Relaxed) != ifindex as u32
                    || flow.aux.load(Ordering::Relaxed) == 0
                {
                    return;
                }
                let mapped = flow.tuple(Direction::Reply);
                let gone = match addr {
                    None => true,
                    Some((family, a)) => mapped.family == family && mapped.dst == a,
                };
                if gone {
                    self.kill(flow, Gone::Deleted, guard);
                }
            });
        }
    }

    /// The table, for tests.
    #[allow(dead_code)]
    pub fn table(&self) -> &FlowTable<Track> {
        &self.table
    }
}

impl WorkFn for Conntrack {
    fn run(&self) -> Option<u32> {
        let delay = if self.gc_pass() > 0 {
            GC_INTERVAL_MS
        } else {
            let d = self.gc_delay.load(Ordering::Relaxed);
            d.saturating_mul(2)
                .clamp(GC_INTERVAL_MS, GC_INTERVAL_MAX_MS)
        };
        self.gc_delay.store(delay, Ordering::Relaxed);
        Some(delay)
    }
}
