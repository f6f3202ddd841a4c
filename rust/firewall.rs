// SPDX-License-Identifier: GPL-2.0

//! rnf's state in each network namespace and what its hooks do.
//!
//! Every namespace gets rnf's hooks at each of the 28 attachment points
//! (`hooks::HOOK_STAGES` for IPv4 and IPv6): the points where iptables has
//! its raw, mangle, nat and filter tables, at the same priorities. Each point
//! counts the packets and bytes it sees.

use crate::hooks::{self, Family, Hook, Stage, NUM_HOOK_POINTS};
use crate::net::Net;
use crate::netfilter::{self, HookSpec, HookState, Verdict};
use crate::percpu::{Counter, PerCpuCounters};
use crate::pernet::{self, NetId, PreExit};
use crate::skb::SkBuff;
use crate::wire::HookStat;
use kernel::prelude::*;
use kernel::sync::Arc;

static NET_ID: NetId = NetId::new();

/// What the packet path of one namespace uses.
pub struct PacketPath {
    counters: PerCpuCounters,
}

impl PacketPath {
    fn new() -> Result<Self> {
        Ok(Self {
            counters: PerCpuCounters::new(NUM_HOOK_POINTS as u32)?,
        })
    }

    /// Counts a packet at hook point `point` (see `hooks::hook_point`).
    pub fn count(&self, point: u32, skb: &SkBuff) {
        self.counters.add(point, u64::from(skb.len()));
    }

    /// The packets and bytes counted at hook point `point`.
    pub fn counted(&self, point: u32) -> Counter {
        self.counters.sum(point)
    }
}

impl netfilter::Handler for PacketPath {
    fn hook(&self, point: u32, skb: &SkBuff, _state: &HookState<'_>) -> Verdict {
        self.count(point, skb);
        Verdict::Accept
    }
}

/// rnf's state in one network namespace.
pub struct NetState {
    // Declared first so it is unregistered before the rest is dropped.
    hooks: netfilter::Registration<PacketPath>,
    path: Arc<PacketPath>,
}

impl NetState {
    /// Per-hook-point statistics, in `hooks::hook_point` order.
    pub fn hook_stats(&self) -> impl Iterator<Item = HookStat> + '_ {
        (0..NUM_HOOK_POINTS).filter_map(move |i| {
            let (family, hook, stage) = hooks::hook_point(i)?;
            let c = self.path.counted(i as u32);
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

    /// The packet path of this namespace.
    #[allow(dead_code)]
    pub fn path(&self) -> &PacketPath {
        &self.path
    }

    /// The number of hooks registered.
    #[allow(dead_code)]
    pub fn hook_count(&self) -> usize {
        self.hooks.hook_count()
    }
}

/// The attachment point of hook point `index`.
fn spec(index: usize, family: Family, hook: Hook, stage: Stage) -> HookSpec {
    HookSpec {
        pf: family as u8,
        hooknum: hook as u8,
        priority: stage.priority(),
        tag: index as u32,
    }
}

impl pernet::NetData for NetState {
    const ID: &'static NetId = &NET_ID;

    fn init(net: &Net) -> Result<KBox<Self>> {
        let path = Arc::new(PacketPath::new()?, GFP_KERNEL)?;
        let mut specs = KVec::with_capacity(NUM_HOOK_POINTS, GFP_KERNEL)?;
        for i in 0..NUM_HOOK_POINTS {
            let (family, hook, stage) = hooks::hook_point(i).ok_or(EINVAL)?;
            specs.push(spec(i, family, hook, stage), GFP_KERNEL)?;
        }
        let hooks = netfilter::Registration::new(net, &specs, path.clone())?;
        Ok(KBox::new(Self { hooks, path }, GFP_KERNEL)?)
    }

    fn pre_exit(&self, _net: &Net, grace: &PreExit) {
        self.hooks.unregister(grace);
    }
}
