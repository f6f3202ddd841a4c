// SPDX-License-Identifier: GPL-2.0

//! rnf: a stateful firewall and NAT engine for Linux, in Rust.
//!
//! The crate root of `rnf.ko`. It has three layers:
//! - the shared core (`hooks`, `wire`), the same sources Cargo builds and
//!   tests on the host as `rnf-core`;
//! - safe abstractions over the kernel APIs rnf uses (`sys`, `net`,
//!   `netfilter`, `genl`, `pernet`, `percpu`, `skb`, `ktest`), the only
//!   modules with `unsafe`;
//! - the firewall, written against those (`firewall`, `control`).

use kernel::prelude::*;

// The shared core, included at the crate root so `crate::` paths inside it
// mean the same here as in the `rnf-core` crate.
#[allow(dead_code)]
#[path = "rnf_core/src/classify.rs"]
pub mod classify;
#[allow(dead_code)]
#[path = "rnf_core/src/compile.rs"]
pub mod compile;
#[allow(dead_code)]
#[path = "rnf_core/src/eval.rs"]
pub mod eval;
#[allow(dead_code)]
#[path = "rnf_core/src/hookcount.rs"]
pub mod hookcount;
#[allow(dead_code)]
#[path = "rnf_core/src/hooks.rs"]
pub mod hooks;
#[allow(dead_code)]
#[path = "rnf_core/src/packet.rs"]
pub mod packet;
#[allow(dead_code)]
#[path = "rnf_core/src/rules.rs"]
pub mod rules;
#[allow(dead_code)]
#[path = "rnf_core/src/ruleset_msg.rs"]
pub mod ruleset_msg;
// Connection tracking and NAT logic: built here already (the kernel side
// that uses it comes with issues 4 and 5) so kernel-only problems (objtool,
// clippy, no_std) show up early.
#[allow(dead_code)]
#[path = "rnf_core/src/csum.rs"]
pub mod csum;
#[allow(dead_code)]
#[path = "rnf_core/src/ct.rs"]
pub mod ct;
#[allow(dead_code)]
#[path = "rnf_core/src/ct_msg.rs"]
pub mod ct_msg;
#[allow(dead_code)]
#[path = "rnf_core/src/ct_tcp.rs"]
pub mod ct_tcp;
#[allow(dead_code)]
#[path = "rnf_core/src/nat.rs"]
pub mod nat;
#[allow(dead_code)]
#[path = "rnf_core/src/wire.rs"]
pub mod wire;

pub mod errno;
pub mod flow_table;
pub mod genl;
pub mod ktest;
pub mod locks;
pub mod net;
pub mod netfilter;
pub mod params;
pub mod percpu;
pub mod pernet;
pub mod rcu;
pub mod skb;
pub mod sys;
pub mod work;

pub mod conntrack;
pub mod control;
pub mod firewall;
#[cfg(CONFIG_KUNIT)]
pub mod kunit_tests;
pub mod ruleset;

/// The version reported to rnfctl.
pub(crate) const VERSION: &str = wire::VERSION;

module! {
    type: Rnf,
    name: "rnf",
    author: "The rnf authors",
    description: "rnf: stateful firewall and NAT in Rust",
    license: "GPL",
    alias: ["net-pf-16-proto-16-family-rnf"],
}

struct Rnf {
    // Dropped in this order: no more address events, no more requests,
    // then each namespace's hooks are unregistered and, after a grace
    // period, its state freed.
    _addr: netfilter::AddrNotifier,
    _control: genl::Registration,
    _pernet: pernet::Registration<firewall::NetState>,
    // Last: every namespace's flow table is gone by now.
    _flows: flow_table::FlowCache,
}

impl kernel::Module for Rnf {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let flows = flow_table::FlowCache::new::<conntrack::Track>()?;
        let pernet = pernet::Registration::<firewall::NetState>::register()?;
        let control = control::register(module)?;
        let addr = netfilter::AddrNotifier::register::<firewall::MasqueradeEvents>()?;
        pr_info!("rnf {} loaded\n", VERSION);
        Ok(Rnf {
            _addr: addr,
            _control: control,
            _pernet: pernet,
            _flows: flows,
        })
    }
}

impl Drop for Rnf {
    fn drop(&mut self) {
        pr_info!("rnf unloading\n");
    }
}
