// SPDX-License-Identifier: GPL-2.0

//! rnf's KUnit cases, run inside the kernel when the module loads (with
//! KUnit enabled). The suite itself is declared in `rnf_kunit.c`.

use crate::check;
use crate::firewall::NetState;
use crate::hooks::{self, NUM_HOOK_POINTS};
use crate::net::Net;
use crate::percpu::{Counter, PerCpuCounters};
use crate::pernet::NetData;
use crate::skb::OwnedSkBuff;
use crate::wire::{self, AttrWriter, StatusReply};
use kernel::prelude::*;

/// Per-CPU counters add up across CPUs, reset, and ignore bad indexes.
#[no_mangle]
pub extern "C" fn rnf_kunit_percpu_counters() {
    let Ok(c) = PerCpuCounters::new(4) else {
        check!(false);
        return;
    };
    check!(c.len() == 4);
    check!(c.sum(2) == Counter::default());
    c.add(2, 100);
    c.add(2, 50);
    c.add_on_cpu(2, 0, 10);
    check!(
        c.sum(2)
            == Counter {
                packets: 3,
                bytes: 160
            }
    );
    check!(c.sum(1) == Counter::default());
    // Out of range: counts nothing, reads zero.
    c.add(4, 1000);
    check!(c.sum(4) == Counter::default());
    check!((0..4).map(|i| c.sum(i).packets).sum::<u64>() == 3);
    c.zero(2);
    check!(c.sum(2) == Counter::default());
}

/// The packet path counts an skb's length at the hook point it is given.
#[no_mangle]
pub extern "C" fn rnf_kunit_count_skb() {
    let Some(state) = NetState::get(Net::init_net()) else {
        check!(false);
        return;
    };
    let (Ok(mut linear), Ok(mut other)) = (OwnedSkBuff::alloc(256), OwnedSkBuff::alloc(64)) else {
        check!(false);
        return;
    };
    check!(linear.put(&[0x45; 84]).is_ok());
    check!(linear.len() == 84);
    check!(other.put(&[0u8; 40]).is_ok());
    // More than the room left is refused, not written.
    check!(other.put(&[0u8; 4096]).is_err());
    check!(other.len() == 40);

    // Point 27 is the last one (IPv6 POSTROUTING nat-src); use it and the
    // first so no ordinary traffic interferes in the test VM's init netns.
    let last = (NUM_HOOK_POINTS - 1) as u32;
    let before = state.path().counted(last);
    state.path().count(last, &linear);
    state.path().count(last, &other);
    let after = state.path().counted(last);
    check!(after.packets == before.packets + 2);
    check!(after.bytes == before.bytes + 124);
}

/// Every namespace has rnf's 28 hooks, and the status reply encodes and
/// decodes with the shared wire code.
#[no_mangle]
pub extern "C" fn rnf_kunit_status_encoding() {
    let Some(state) = NetState::get(Net::init_net()) else {
        check!(false);
        return;
    };
    check!(state.hook_count() == NUM_HOOK_POINTS);

    let mut m = AttrWriter::measure();
    wire::encode_status(&mut m, crate::VERSION, 42, state.hook_stats());
    let len = m.len();
    let Ok(mut buf) = KVec::from_elem(0u8, len, GFP_KERNEL) else {
        check!(false);
        return;
    };
    let mut w = AttrWriter::new(&mut buf);
    wire::encode_status(&mut w, crate::VERSION, 42, state.hook_stats());
    check!(w.finish() == Ok(len));

    let Ok(reply) = StatusReply::decode(&buf) else {
        check!(false);
        return;
    };
    check!(reply.version == crate::VERSION);
    check!(reply.netns_cookie == 42);
    let mut n = 0;
    for (i, stat) in reply.hooks().enumerate() {
        let Ok(stat) = stat else {
            check!(false);
            return;
        };
        check!(hooks::hook_point(i) == Some((stat.family, stat.hook, stat.stage)));
        check!(stat.priority == stat.stage.priority());
        n += 1;
    }
    check!(n == NUM_HOOK_POINTS);

    // A buffer one byte short overflows cleanly.
    let mut short = AttrWriter::new(&mut buf[..len - 1]);
    wire::encode_status(&mut short, crate::VERSION, 42, state.hook_stats());
    check!(short.finish().is_err());
}
