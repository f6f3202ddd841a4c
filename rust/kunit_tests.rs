// SPDX-License-Identifier: GPL-2.0

//! rnf's KUnit cases, run inside the kernel when the module loads (with
//! KUnit enabled). The suite itself is declared in `rnf_kunit.c`.

use crate::check;
use crate::firewall::NetState;
use crate::hooks::{self, NUM_HOOK_POINTS};
use crate::net::Net;
use crate::percpu::{Counter, PerCpuCounters};
use crate::pernet::NetData;
use crate::rcu::RcuBox;
use crate::rules::{Action, ListSpec, PortRange, RuleSpec, Table};
use crate::ruleset::{Image, Placement, RuleStore};
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

/// An IPv4/TCP packet to port `dport`, 40 header bytes plus `payload`.
fn tcp4(dport: u16, payload: &[u8], out: &mut [u8; 128]) -> usize {
    let total = 40 + payload.len();
    let hdr: [u8; 40] = [
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
        10,
        0,
        1,
        2,
        10,
        0,
        2,
        2, // IPv4: 10.0.1.2 -> 10.0.2.2, TCP
        0x9c,
        0x40,
        (dport >> 8) as u8,
        dport as u8,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0x50,
        0x02,
        0xff,
        0xff,
        0,
        0,
        0,
        0, // TCP SYN
    ];
    for (d, s) in out.iter_mut().zip(Iterator::chain(hdr.iter(), payload)) {
        *d = *s;
    }
    total.min(out.len())
}

/// The skb view reads headers and payload the same from linear and paged
/// packets, and stops at the end of the packet.
#[no_mangle]
pub extern "C" fn rnf_kunit_skb_view() {
    let mut pkt = [0u8; 128];
    let n = tcp4(80, b"GET / HTTP/1.1", &mut pkt);
    let Some(bytes) = pkt.get(..n) else {
        check!(false);
        return;
    };
    let (Ok(mut linear), Ok(mut paged)) = (OwnedSkBuff::alloc(256), OwnedSkBuff::alloc(256)) else {
        check!(false);
        return;
    };
    check!(linear.put(bytes).is_ok());
    // Headers split mid-TCP-header: 30 bytes linear, the rest in a page.
    check!(paged.put(&bytes[..30]).is_ok());
    check!(paged.put_frag(&bytes[30..]).is_ok());
    check!(paged.len() as usize == n);
    for skb in [&linear, &paged] {
        let mut buf = [0u8; 128];
        let got = skb.copy_network(0, &mut buf);
        check!(got == n);
        check!(buf.get(..n) == Some(bytes));
        check!(skb.network_len() as usize == n);
        // From an offset, and past the end.
        let mut tail = [0u8; 8];
        check!(skb.copy_network(40, &mut tail) == 8);
        check!(&tail == b"GET / HT");
        check!(skb.copy_network(n as u32, &mut tail) == 0);
        let Ok(facts) = crate::packet::parse(buf.get(..got).unwrap_or(&[])) else {
            check!(false);
            continue;
        };
        check!(facts.proto == 6);
        check!(facts.payload_offset == Some(40));
    }
    // skb marks are the packet's.
    linear.set_mark(0x2a);
    check!(linear.mark() == 0x2a);
}

/// A test environment for the evaluator: counts, no state.
struct TestEnv {
    counted: u32,
}

impl crate::eval::EvalEnv for TestEnv {
    fn count(&mut self, _counter: u32, _bytes: u32) {
        self.counted += 1;
    }
    fn limit_allows(&mut self, _counter: u32, _limit: &crate::rules::Limit) -> bool {
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
        0
    }
    fn set_mark(&mut self, _mark: u32) {}
    fn uid(&self) -> Option<u32> {
        None
    }
    fn gid(&self) -> Option<u32> {
        None
    }
    fn log(&mut self, _prefix: &[u8], _level: u8) {}
    fn ct_state(&self) -> crate::ct::CtState {
        crate::ct::CtState(0)
    }
    fn ct_direction(&self) -> Option<crate::ct::Direction> {
        None
    }
    fn ct_status(&self) -> u32 {
        0
    }
    fn ct_mark(&self) -> Option<u32> {
        None
    }
    fn set_ct_mark(&mut self, _mark: u32) {}
    fn notrack(&mut self) {}
}

fn verdict_for(image: &RcuBox<Image>, dport: u16) -> Option<crate::eval::Verdict> {
    let mut pkt = [0u8; 128];
    let n = tcp4(dport, b"", &mut pkt);
    let facts = crate::packet::parse(pkt.get(..n)?).ok()?;
    let lock = crate::rcu::read_lock();
    let img = image.read(lock.guard())?;
    let t = img.tables.get(Table::Filter as usize)?.as_ref()?;
    let compiled = crate::eval::CompiledTable::new(&t.buf).ok()?;
    let mut env = TestEnv { counted: 0 };
    Some(compiled.eval(crate::hooks::Hook::LocalIn, &facts, &mut env))
}

fn tcp_rule(dport: u16, action: Action<'_>, buf: &mut [u8]) -> usize {
    let ports = [PortRange {
        lo: dport,
        hi: dport,
    }];
    let mut spec = RuleSpec::new(action);
    spec.proto = Some(6);
    spec.dport = Some(ListSpec {
        negated: false,
        items: &ports,
    });
    let mut w = AttrWriter::new(buf);
    spec.encode(&mut w);
    w.finish().unwrap_or(0)
}

/// Rule changes are published whole, counters survive changes to other
/// rules, and a change that fails to compile changes nothing.
#[no_mangle]
pub extern "C" fn rnf_kunit_ruleset_publish() {
    let image: RcuBox<Image> = RcuBox::empty();
    let Ok(mut store) = RuleStore::new() else {
        check!(false);
        return;
    };
    let g0 = store.generation();
    let mut b22 = [0u8; 256];
    let n22 = tcp_rule(22, Action::Drop, &mut b22);
    let mut b80 = [0u8; 256];
    let n80 = tcp_rule(80, Action::Accept, &mut b80);
    let h22 = store.add_rule(
        Table::Filter,
        "INPUT",
        &b22[..n22],
        Placement::Append,
        &image,
    );
    check!(h22.is_ok());
    check!(store.generation() == g0 + 1);
    check!(verdict_for(&image, 22) == Some(crate::eval::Verdict::Drop));
    check!(verdict_for(&image, 80) == Some(crate::eval::Verdict::Accept));

    // Count something in the first rule's slot, then change another rule.
    let slot = |store: &RuleStore| {
        store.tables()[Table::Filter as usize]
            .chains()
            .iter()
            .find(|c| c.name() == "INPUT")
            .and_then(|c| c.rules.first().map(|r| r.slot))
    };
    let Some(s) = slot(&store) else {
        check!(false);
        return;
    };
    {
        let lock = crate::rcu::read_lock();
        if let Some(Some(t)) = image
            .read(lock.guard())
            .map(|i| i.tables[Table::Filter as usize].clone())
        {
            t.state.counters.add(s, 100);
        }
    }
    check!(store
        .add_rule(
            Table::Filter,
            "INPUT",
            &b80[..n80],
            Placement::Insert(0),
            &image
        )
        .is_ok());
    let c = store.tables()[Table::Filter as usize].counted(s);
    check!(c.packets == 1 && c.bytes == 100);

    // A jump to a chain that does not exist is refused; nothing changes.
    let g1 = store.generation();
    let mut bj = [0u8; 256];
    let nj = {
        let mut w = AttrWriter::new(&mut bj);
        RuleSpec::new(Action::Jump("NOPE")).encode(&mut w);
        w.finish().unwrap_or(0)
    };
    let r = store.add_rule(Table::Filter, "INPUT", &bj[..nj], Placement::Append, &image);
    check!(r.is_err());
    check!(store.generation() == g1);
    check!(verdict_for(&image, 22) == Some(crate::eval::Verdict::Drop));

    // The policy applies at the end of the chain.
    check!(store
        .set_policy(Table::Filter, "INPUT", crate::rules::Policy::Drop, &image)
        .is_ok());
    check!(verdict_for(&image, 443) == Some(crate::eval::Verdict::Drop));
    check!(verdict_for(&image, 80) == Some(crate::eval::Verdict::Accept));
}
