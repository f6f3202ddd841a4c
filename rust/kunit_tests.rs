// SPDX-License-Identifier: GPL-2.0

//! rnf's KUnit cases, run inside the kernel when the module loads (with
//! KUnit enabled). The suite itself is declared in `rnf_kunit.c`.

use crate::check;
use crate::firewall::NetState;
use crate::hooks::{self, NUM_HOOK_POINTS};
use crate::net::Net;
use crate::percpu::{Counter, PacketNote, PacketNotes, PerCpuCounters};
use crate::pernet::NetData;
use crate::rcu::RcuBox;
use crate::rules::{Action, ListSpec, PortRange, RuleSpec, Table};
use crate::ruleset::{Image, Placement, RuleStore};
use crate::skb::{HeaderBuf, OwnedSkBuff};
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

/// The packet path counts an skb's length at the points of the hook it
/// arrives at while hook counters are on (`hook_counters=1`), and
/// nothing while they are off (the default).
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

    // Point 27 is the last one (IPv6 POSTROUTING nat-src): no ordinary
    // traffic interferes there in the test VM's init netns, which has no
    // rules, so no point of that hook is hooked and an arrival there
    // counts at each of its points.
    let last = (NUM_HOOK_POINTS - 1) as u32;
    let before = state.path().counted(last);
    let path = state.path();
    let fh = crate::hookcount::family_hook_index(hooks::Family::Ipv6, hooks::Hook::PostRouting);
    path.count_arrival(fh, &linear);
    path.count_arrival(fh, &other);
    let after = state.path().counted(last);
    if path.hook_counting() {
        check!(after.packets == before.packets + 2);
        check!(after.bytes == before.bytes + 124);
    } else {
        check!(after == before);
    }
}

/// Every namespace has rnf's hooks (only those with work registered), and
/// the status reply encodes and decodes with the shared wire code.
#[no_mangle]
pub extern "C" fn rnf_kunit_status_encoding() {
    let Some(state) = NetState::get(Net::init_net()) else {
        check!(false);
        return;
    };
    // 28 hook points and 10 counting hooks, and tracking's 8; with the
    // empty rule set of a fresh namespace at most the counting hooks are
    // registered (with hook_counters=1; no point has work, nothing needs
    // tracking).
    let hooks = state.hooks();
    check!(hooks.hook_count() == NUM_HOOK_POINTS + 10 + 8);
    check!(hooks.hooked_points() == 0);
    check!(!hooks.tracking_hooked());

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
        // The packet path's copy: inline from the linear part, through C
        // for what lies in pages (32 bytes of `paged` do).
        let mut all = HeaderBuf::<192>::new();
        check!(skb.headers(&mut all) == bytes);
        let mut some = HeaderBuf::<32>::new();
        check!(skb.headers(&mut some) == &bytes[..32]);
        let mut few = HeaderBuf::<13>::new();
        check!(skb.headers(&mut few) == &bytes[..13]);
        let Ok(facts) = crate::packet::parse(buf.get(..got).unwrap_or(&[])) else {
            check!(false);
            continue;
        };
        check!(facts.proto == 6);
        check!(facts.payload_offset == Some(40));
    }
    // Header writes. In place for a linear skb nobody shares; through C
    // where the bytes lie in a page (pulled into the linear part first)
    // or are shared with a clone (unshared first: the other keeps its own).
    let last = n - 1;
    for skb in [&linear, &paged] {
        let wrote = skb.write_headers(n as u32, |b, cs| {
            if let Some(x) = b.get_mut(last) {
                *x = b'!';
            }
            (b.len(), cs.partial())
        });
        check!(matches!(wrote, Ok(((len, false), _)) if len == n));
        let mut end = [0u8; 1];
        check!(skb.copy_network(last as u32, &mut end) == 1 && end == *b"!");
    }
    // The checksum state comes with the bytes (`CHECKSUM_PARTIAL`: the
    // transport checksum is left to the NIC; `CHECKSUM_COMPLETE`: the
    // skb sums the whole packet).
    let seen = |cs: crate::skb::CsumState| (cs.partial(), cs.complete());
    linear.set_ip_summed(3);
    check!(matches!(
        linear.write_headers(20, |_, cs| seen(cs)),
        Ok(((true, false), _))
    ));
    linear.set_ip_summed(2);
    check!(matches!(
        linear.write_headers(20, |_, cs| seen(cs)),
        Ok(((false, true), _))
    ));
    linear.set_ip_summed(0);
    check!(matches!(
        linear.write_headers(20, |_, cs| seen(cs)),
        Ok(((false, false), _))
    ));
    let Ok(clone) = linear.clone_shared() else {
        check!(false);
        return;
    };
    check!(clone
        .write_headers(20, |b, _| b.first_mut().map(|x| *x = 0x46))
        .is_ok());
    let (mut mine, mut theirs) = ([0u8; 1], [0u8; 1]);
    check!(linear.copy_network(0, &mut mine) == 1 && clone.copy_network(0, &mut theirs) == 1);
    check!(mine == [0x45] && theirs == [0x46]);
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
    let mut env = TestEnv { counted: 0 };
    Some(t.eval(crate::hooks::Hook::LocalIn, &facts, &mut env))
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

/// Appends go into the tails and act at once; a compaction folds them into
/// the main buffer without changing a verdict or the generation, and one
/// overtaken by a change publishes nothing.
#[no_mangle]
pub extern "C" fn rnf_kunit_tails_compaction() {
    use crate::eval::Verdict;
    let image: RcuBox<Image> = RcuBox::empty();
    let Ok(mut store) = RuleStore::new() else {
        check!(false);
        return;
    };
    let tails = |s: &RuleStore| s.tables()[Table::Filter as usize].tail_rules();
    let append = |s: &mut RuleStore, port: u16| {
        let mut b = [0u8; 256];
        let n = tcp_rule(port, Action::Drop, &mut b);
        s.add_rule(Table::Filter, "INPUT", &b[..n], Placement::Append, &image)
            .is_ok()
    };
    // Some appended rules in the tails (the table is small: its tails hold
    // at most an eighth of its compiled rules).
    let mut last = 0u16;
    for i in 0..200u16 {
        last = 1000 + i;
        check!(append(&mut store, last));
        // From about 60 compiled rules the tails may hold 7.
        if i >= 60 && tails(&store) == 2 {
            break;
        }
    }
    check!(tails(&store) >= 2);
    check!(verdict_for(&image, last) == Some(Verdict::Drop));
    check!(verdict_for(&image, 1000) == Some(Verdict::Drop));
    check!(verdict_for(&image, 80) == Some(Verdict::Accept));

    // Overtaken by a change: nothing published, the tails stay.
    let Ok(Some(mut c)) = store.compaction() else {
        check!(false);
        return;
    };
    check!(c.compile().is_ok());
    check!(append(&mut store, 7));
    check!(tails(&store) >= 3);
    check!(matches!(store.finish_compaction(c, &image), Ok(false)));
    check!(tails(&store) >= 3);
    check!(verdict_for(&image, 7) == Some(Verdict::Drop));

    // Appends up to the tails' limit ask for a compaction.
    for i in 0..100u16 {
        if store.wants_compaction() {
            break;
        }
        last = 2000 + i;
        check!(append(&mut store, last));
    }
    check!(store.wants_compaction());

    // Not overtaken: the tails are folded in, verdicts and generation stay.
    let g = store.generation();
    let Ok(Some(mut c)) = store.compaction() else {
        check!(false);
        return;
    };
    check!(c.compile().is_ok());
    check!(matches!(store.finish_compaction(c, &image), Ok(true)));
    check!(tails(&store) == 0);
    check!(!store.wants_compaction());
    check!(store.generation() == g);
    for port in [7, 1000, last] {
        check!(verdict_for(&image, port) == Some(Verdict::Drop));
    }
    check!(verdict_for(&image, 80) == Some(Verdict::Accept));
    check!(matches!(store.compaction(), Ok(None)));
}

/// An IPv4/UDP packet `src:sport -> dst:dport` with one payload byte.
fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> [u8; 29] {
    let [s0, s1] = sport.to_be_bytes();
    let [d0, d1] = dport.to_be_bytes();
    [
        0x45, 0, 0, 29, 0, 1, 0x40, 0, 64, 17, 0, 0, src[0], src[1], src[2], src[3], dst[0],
        dst[1], dst[2], dst[3], s0, s1, d0, d1, 0, 9, 0, 0, b'x',
    ]
}

/// Tracks the IPv4 packet `pkt` in `ct` as tracking's hook does; the
/// verdict.
fn track_packet(ct: &crate::conntrack::Conntrack, pkt: &[u8]) -> Option<crate::netfilter::Verdict> {
    let mut skb = OwnedSkBuff::alloc(128).ok()?;
    skb.put(pkt).ok()?;
    let lock = crate::rcu::read_lock();
    Some(ct.track(&skb, || false, lock.guard()))
}

/// Whether bucket `x` is among the 8 that early drop searches from bucket
/// `start` on, in a table of `n` buckets.
fn in_early_drop_window(n: u32, start: u32, x: u32) -> bool {
    x.wrapping_add(n)
        .wrapping_sub(start)
        .checked_rem(n)
        .is_some_and(|d| d < 8)
}

fn tuple_of(pkt: &[u8]) -> Option<crate::ct::Tuple> {
    let facts = crate::packet::parse(pkt).ok()?;
    crate::ct::Tuple::from_facts(&facts, pkt)
}

/// The flow table: a flow is found by either tuple, a second flow with one
/// of its tuples clashes, removal hides it at once, and the count and the
/// reservation limit hold.
#[no_mangle]
pub extern "C" fn rnf_kunit_flow_table() {
    use crate::ct::Direction;
    use crate::flow_table::{FlowTable, InsertError};
    let Ok(table) = FlowTable::<u32>::new(4, [7; 16]) else {
        check!(false);
        return;
    };
    let (Some(a), Some(b)) = (
        tuple_of(&udp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53)),
        tuple_of(&udp4([10, 0, 0, 1], 1001, [10, 0, 0, 2], 53)),
    ) else {
        check!(false);
        return;
    };
    let lock = crate::rcu::read_lock();
    let g = lock.guard();
    check!(table.reserve(2));
    let Ok(fa) = table.alloc(a, a.invert(), 0, 1) else {
        check!(false);
        return;
    };
    let Ok(inserted) = table.insert(fa, g) else {
        check!(false);
        return;
    };
    check!(table.count() == 1);
    check!(matches!(table.lookup(&a, g), Some((f, Direction::Original)) if f.id == inserted.id));
    check!(
        matches!(table.lookup(&a.invert(), g), Some((f, Direction::Reply)) if f.id == inserted.id)
    );
    check!(table.lookup(&b, g).is_none());
    check!(table.track(inserted) == 1);
    table.with_track(inserted, |t| *t = 2);
    check!(table.track(inserted) == 2);
    // The same flow again (another CPU's packet) clashes with the first.
    check!(table.reserve(2));
    if let Ok(dup) = table.alloc(a.invert(), a, 0, 0) {
        check!(
            matches!(table.insert(dup, g), Err(InsertError::Clash(f, Direction::Reply, Direction::Original)) if f.id == inserted.id)
        );
    }
    check!(table.count() == 1);
    // The limit holds.
    check!(table.reserve(2));
    check!(!table.reserve(2));
    table.unreserve();
    // NAT moves the reply tuple: found under the new one only; a tuple
    // another flow has is refused.
    let moved = crate::ct::Tuple {
        src: [10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ..a.invert()
    };
    check!(table.rehash_reply(inserted, &moved, g));
    check!(table.lookup(&a.invert(), g).is_none());
    check!(matches!(table.lookup(&moved, g), Some((f, Direction::Reply)) if f.id == inserted.id));
    check!(inserted.tuple(Direction::Reply) == moved);
    check!(table.reserve(3));
    if let Ok(fb) = table.alloc(b, b.invert(), 0, 3) {
        if let Ok(other) = table.insert(fb, g) {
            check!(!table.rehash_reply(inserted, &b.invert(), g));
            check!(table.remove(other));
        }
    }
    // Removal: once, and at once invisible.
    check!(table.remove(inserted));
    check!(!table.remove(inserted));
    check!(table.lookup(&a, g).is_none());
    check!(table.lookup(&moved, g).is_none());
    check!(table.count() == 0);
}

/// Chains of many nodes (24 flows in 2 buckets, so most nodes share a
/// chain with their flow's other node): removing nodes at the front, in
/// the middle and at the end of chains, and moving reply nodes, leaves
/// every chain well linked, the removed flows gone and the others found
/// in both directions.
#[no_mangle]
pub extern "C" fn rnf_kunit_flow_table_chains() {
    use crate::ct::Direction;
    use crate::flow_table::FlowTable;
    const N: u16 = 24;
    let Ok(table) = FlowTable::<u32>::new(2, [5; 16]) else {
        check!(false);
        return;
    };
    let lock = crate::rcu::read_lock();
    let g = lock.guard();
    let orig = |i: u16| tuple_of(&udp4([10, 0, 0, 1], 2000 + i, [10, 0, 0, 2], 53));
    // The reply tuple of flow i, moved (NAT) when `moved`.
    let reply = |i: u16, moved: bool| {
        orig(i).map(|t| crate::ct::Tuple {
            src: [
                10,
                0,
                if moved { 9 } else { 0 },
                2,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
            ..t.invert()
        })
    };
    let mut flows = [None; N as usize];
    for (i, slot) in (0..N).zip(flows.iter_mut()) {
        let (Some(o), Some(r)) = (orig(i), reply(i, false)) else {
            check!(false);
            return;
        };
        check!(table.reserve(u32::MAX));
        match table.alloc(o, r, 0, u32::from(i)) {
            Ok(f) => *slot = table.insert(f, g).ok(),
            Err(_) => table.unreserve(),
        }
    }
    check!(flows.iter().all(Option::is_some));
    check!(table.links_ok(g));
    let mut gone = [false; N as usize];
    let mut moved = [false; N as usize];
    // Every flow present is found by both of its tuples, the others by none.
    let all_found = |gone: &[bool], moved: &[bool]| {
        (0..N).zip(gone.iter().zip(moved.iter())).all(|(i, (&x, &m))| {
            let (Some(o), Some(r)) = (orig(i), reply(i, m)) else {
                return false;
            };
            let by_orig = table.lookup(&o, g);
            let by_reply = table.lookup(&r, g);
            if x {
                by_orig.is_none() && by_reply.is_none()
            } else {
                matches!(by_orig, Some((f, Direction::Original)) if table.track(f) == u32::from(i))
                    && matches!(by_reply, Some((f, Direction::Reply)) if table.track(f) == u32::from(i))
            }
        })
    };
    check!(all_found(&gone, &moved));
    // Oldest first, newest first, the middle; reply nodes moved between.
    let order: [u16; N as usize] = [
        0, 23, 12, 1, 22, 11, 13, 2, 21, 10, 14, 3, 20, 9, 15, 4, 19, 8, 16, 5, 18, 7, 17, 6,
    ];
    for (step, &i) in order.iter().enumerate() {
        if step % 3 == 1 {
            // Move the reply node of the next flow still present.
            if let Some(j) = (0..N).find(|&j| !gone[usize::from(j)] && !moved[usize::from(j)]) {
                if let (Some(f), Some(r)) = (flows[usize::from(j)], reply(j, true)) {
                    check!(table.rehash_reply(f, &r, g));
                    moved[usize::from(j)] = true;
                }
            }
        }
        if let Some(f) = flows[usize::from(i)] {
            check!(table.remove(f));
            gone[usize::from(i)] = true;
        }
        check!(table.links_ok(g));
        check!(all_found(&gone, &moved));
    }
    check!(table.count() == 0);
}

/// Tracking policy: NEW then ESTABLISHED for a reply; expiry collected by
/// GC; a full table evicts an unassured flow first and, when every flow is
/// assured, drops the new flow's packet instead.
#[no_mangle]
pub extern "C" fn rnf_kunit_conntrack_policy() {
    use crate::conntrack::Conntrack;
    use crate::netfilter::Verdict;
    let Ok(ct) = Conntrack::with_size(None, 3, 8) else {
        check!(false);
        return;
    };
    let send = |pkt: &[u8]| -> Option<(Verdict, crate::ct::CtState)> {
        let mut skb = OwnedSkBuff::alloc(128).ok()?;
        skb.put(pkt).ok()?;
        let lock = crate::rcu::read_lock();
        let v = ct.track(&skb, || false, lock.guard());
        let facts = crate::packet::parse(pkt).ok()?;
        let st = ct.packet_ct(&skb, &facts, pkt, lock.guard()).state;
        Some((v, st))
    };
    let c = [10, 0, 0, 1];
    let s = [10, 0, 0, 2];
    check!(send(&udp4(c, 1000, s, 53)) == Some((Verdict::Accept, crate::ct::CtState::NEW)));
    check!(send(&udp4(s, 53, c, 1000)) == Some((Verdict::Accept, crate::ct::CtState::ESTABLISHED)));
    check!(send(&udp4(c, 1000, s, 53)) == Some((Verdict::Accept, crate::ct::CtState::ESTABLISHED)));
    check!(ct.stats().count == 1 && ct.stats().inserted == 1);
    // Expiry: make every flow due, then one full GC sweep removes it.
    let expire_all = || {
        let lock = crate::rcu::read_lock();
        for b in 0..ct.table().buckets() {
            ct.table().for_each_in(b, lock.guard(), |f| {
                f.expires_ns.store(0, core::sync::atomic::Ordering::Relaxed)
            });
        }
    };
    expire_all();
    for _ in 0..16 {
        ct.gc_pass();
    }
    check!(ct.stats().count == 0 && ct.stats().expired == 1);
    // Fill the table (limit 3) with unassured flows; a fourth evicts one.
    for p in 2000..2004 {
        check!(matches!(
            send(&udp4(c, p, s, 53)),
            Some((Verdict::Accept, _))
        ));
    }
    check!(ct.stats().count == 3);
    check!(ct.stats().early_drops == 1);
    // All assured: nothing can be evicted; the new flow's packet is dropped.
    {
        let lock = crate::rcu::read_lock();
        for b in 0..ct.table().buckets() {
            ct.table().for_each_in(b, lock.guard(), |f| {
                f.set_status(crate::ct::status::ASSURED);
            });
        }
    }
    check!(matches!(
        send(&udp4(c, 3000, s, 53)),
        Some((Verdict::Drop, _))
    ));
    check!(ct.stats().full_drops == 1 && ct.stats().count == 3);
    // Expired flows not yet collected make room first, assured or not.
    expire_all();
    let expired = ct.stats().expired;
    check!(matches!(
        send(&udp4(c, 3001, s, 53)),
        Some((Verdict::Accept, _))
    ));
    check!(ct.stats().expired == expired + 1 && ct.stats().early_drops == 1);
    check!(ct.stats().count == 3);
    check!(ct.flush() == 3);
    check!(ct.stats().count == 0);
}

/// Early drop counts a flow's reply node too: in a table with far more
/// buckets than flows, a new flow whose 8 buckets hold only an old flow's
/// reply node evicts that flow instead of being dropped (as
/// `nf_conntrack`'s `early_drop_list()` does).
#[no_mangle]
pub extern "C" fn rnf_kunit_early_drop_reply_nodes() {
    use crate::conntrack::Conntrack;
    use crate::netfilter::Verdict;
    let Ok(ct) = Conntrack::with_size(None, 1, 4096) else {
        check!(false);
        return;
    };
    let send = |pkt: &[u8]| track_packet(&ct, pkt);
    let c = [10, 0, 0, 1];
    let s = [10, 0, 0, 2];
    let Some(a) = tuple_of(&udp4(c, 1000, s, 53)) else {
        check!(false);
        return;
    };
    check!(send(&udp4(c, 1000, s, 53)) == Some(Verdict::Accept));
    check!(ct.stats().count == 1);
    let n = ct.table().buckets();
    let (ob, rb) = (ct.table().bucket_of(&a), ct.table().bucket_of(&a.invert()));
    let within = |start: u32, x: u32| in_early_drop_window(n, start, x);
    // A second flow whose buckets to search hold the first one's reply
    // node but not its original node.
    let port = (2000..60000u16).find(|&p| {
        tuple_of(&udp4(c, p, s, 53)).is_some_and(|t| {
            let b = ct.table().bucket_of(&t);
            within(b, rb) && !within(b, ob)
        })
    });
    check!(port.is_some());
    if let Some(p) = port {
        check!(send(&udp4(c, p, s, 53)) == Some(Verdict::Accept));
        let st = ct.stats();
        check!(st.early_drops == 1 && st.full_drops == 0 && st.count == 1);
    }
    check!(ct.flush() == 1);
}

/// Garbage collection evicts like nf_conntrack's above 95 % of the limit,
/// and only after a new flow's packet was dropped with the table full:
/// until then a full sweep evicts nothing; after it, confirmed unassured
/// flows go until the table holds 95 % of its limit, assured ones stay,
/// and the dropped flow then gets in.
#[no_mangle]
pub extern "C" fn rnf_kunit_gc_evicts_when_full() {
    use crate::conntrack::Conntrack;
    use crate::ct::status::{ASSURED, CONFIRMED};
    use crate::netfilter::Verdict;
    const LIMIT: u16 = 40;
    let Ok(ct) = Conntrack::with_size(None, u32::from(LIMIT), 4096) else {
        check!(false);
        return;
    };
    let send = |pkt: &[u8]| track_packet(&ct, pkt);
    let mark = |pkt: &[u8], bits: u32| {
        let lock = crate::rcu::read_lock();
        match tuple_of(pkt).and_then(|t| ct.table().lookup(&t, lock.guard())) {
            Some((f, _)) => {
                f.set_status(bits);
                true
            }
            None => false,
        }
    };
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    // 36 assured flows, then 4 confirmed, unassured ones: the table full.
    for p in 1000..1000 + LIMIT {
        check!(send(&udp4(c, p, s, 53)) == Some(Verdict::Accept));
        let bits = if p < 1036 {
            CONFIRMED | ASSURED
        } else {
            CONFIRMED
        };
        check!(mark(&udp4(c, p, s, 53), bits));
    }
    check!(ct.stats().count == u32::from(LIMIT));
    let sweep = || {
        for _ in 0..8 {
            ct.gc_pass();
        }
    };
    sweep();
    check!(ct.stats().count == u32::from(LIMIT) && ct.stats().early_drops == 0);
    // A new flow whose buckets to search hold no node of any flow: nothing
    // to evict there, its packet is dropped.
    let n = ct.table().buckets();
    let nodes: KVec<u32> = {
        let mut v = KVec::new();
        for p in 1000..1000 + LIMIT {
            if let Some(t) = tuple_of(&udp4(c, p, s, 53)) {
                let _ = v.push(ct.table().bucket_of(&t), GFP_KERNEL);
                let _ = v.push(ct.table().bucket_of(&t.invert()), GFP_KERNEL);
            }
        }
        v
    };
    check!(nodes.len() == 2 * usize::from(LIMIT));
    let clear = |b: u32| !nodes.iter().any(|&x| in_early_drop_window(n, b, x));
    let port = (2000..60000u16)
        .find(|&p| tuple_of(&udp4(c, p, s, 53)).is_some_and(|t| clear(ct.table().bucket_of(&t))));
    check!(port.is_some());
    let Some(port) = port else {
        return;
    };
    check!(send(&udp4(c, port, s, 53)) == Some(Verdict::Drop));
    check!(ct.stats().full_drops == 1 && ct.stats().early_drops == 0);
    // The next sweep evicts unassured flows down to 95 % of the limit (38).
    sweep();
    let st = ct.stats();
    check!(st.count == 38 && st.early_drops == 2);
    for p in 1000..1036u16 {
        check!(mark(&udp4(c, p, s, 53), 0));
    }
    // Under 95 %: no more evictions, and the dropped flow gets in.
    sweep();
    check!(ct.stats().count == 38 && ct.stats().early_drops == 2);
    check!(send(&udp4(c, port, s, 53)) == Some(Verdict::Accept));
    check!(ct.stats().count == 39 && ct.stats().full_drops == 1);
    check!(ct.flush() == 39);
}

/// Lookups in a kernel thread while flows are inserted and removed: every
/// flow a reader finds has the tuple it looked for (never a freed or
/// half-built flow).
#[no_mangle]
pub extern "C" fn rnf_kunit_flow_table_concurrent() {
    use crate::flow_table::FlowTable;
    use core::sync::atomic::{AtomicU32, Ordering};
    let Ok(table) = FlowTable::<u32>::new(8, [3; 16]) else {
        check!(false);
        return;
    };
    let mut tuples = [None; 16];
    for (i, t) in tuples.iter_mut().enumerate() {
        *t = tuple_of(&udp4([10, 0, 0, 1], 1000 + i as u16, [10, 0, 0, 2], 53));
    }
    let lookups = AtomicU32::new(0);
    let found = AtomicU32::new(0);
    let wrong = AtomicU32::new(0);
    let reader = || {
        let lock = crate::rcu::read_lock();
        for t in tuples.iter().flatten() {
            lookups.fetch_add(1, Ordering::Relaxed);
            for q in [*t, t.invert()] {
                if let Some((f, d)) = table.lookup(&q, lock.guard()) {
                    found.fetch_add(1, Ordering::Relaxed);
                    if f.tuple(d) != q || table.track(f) != u32::from(t.src_port_or_icmp_id) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    let rounds = crate::ktest::concurrently(&reader, || {
        for round in 0..100u32 {
            let lock = crate::rcu::read_lock();
            let g = lock.guard();
            for t in tuples.iter().flatten() {
                if table.reserve(u32::MAX) {
                    if let Ok(f) = table.alloc(*t, t.invert(), 0, u32::from(t.src_port_or_icmp_id))
                    {
                        let _ = table.insert(f, g);
                    } else {
                        table.unreserve();
                    }
                }
            }
            for (i, t) in tuples.iter().flatten().enumerate() {
                if (i as u32 + round) % 2 == 0 {
                    if let Some((f, _)) = table.lookup(t, g) {
                        table.remove(f);
                    }
                }
            }
            drop(lock);
            // Let the reader run on a one-CPU machine too.
            crate::ktest::yield_now();
        }
    });
    check!(rounds.is_some());
    check!(lookups.load(Ordering::Relaxed) > 0);
    check!(found.load(Ordering::Relaxed) > 0);
    check!(wrong.load(Ordering::Relaxed) == 0);
}

/// Per-CPU packet notes: what is noted for an skb is what a later hook on
/// the same CPU gets back, for that skb only, whether noted and read in
/// place (bottom halves off, as the forwarding path runs) or through the C
/// helpers (preemptible), and across the two.
#[no_mangle]
pub extern "C" fn rnf_kunit_packet_notes() {
    let (Ok(notes), Ok(a), Ok(b)) = (
        PacketNotes::new(),
        OwnedSkBuff::alloc(64),
        OwnedSkBuff::alloc(64),
    ) else {
        check!(false);
        return;
    };
    let note = PacketNote {
        bucket: 0x0102_0304,
        id: 0xa0b0_c0d0,
        fingerprint: 0x1122_3344,
        dir: 1,
        state: 0x42,
        flags: 0x81,
        shape: 0x15,
    };
    let other = PacketNote {
        bucket: 7,
        id: 9,
        fingerprint: 0xdead_beef,
        dir: 0,
        state: 2,
        flags: 0,
        shape: 0,
    };
    // Noted and read back in each context, then across them (on one CPU:
    // the notes are per CPU).
    crate::ktest::pinned(|| {
        notes.set(&a, &note);
        check!(notes.get(&a) == Some(note));
        check!(notes.get(&b).is_none());
        crate::ktest::with_bh_off(|| {
            check!(notes.get(&a) == Some(note));
            notes.set(&b, &other);
            check!(notes.get(&b) == Some(other));
            check!(notes.get(&a).is_none());
        });
        check!(notes.get(&b) == Some(other));
        check!(notes.get(&a).is_none());
    });
}
