// SPDX-License-Identifier: GPL-2.0-only

//! One evaluation, repeated, for counting its instructions on the host:
//! the new-flows benchmark's forward chain (`ct state established,related
//! accept`, then `daddr A proto udp dport P accept`, policy drop) for a
//! packet of a new flow that the second rule accepts, through
//! `eval_after` as the kernel's packet path calls it; and the one-rule kube
//! shape (`daddr A proto tcp dport P accept`) through `eval`.
//!
//! ```text
//! cargo build --release -p rnf-core --example eval_icount
//! for n in 0 1000; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/eval_icount ct $n; done
//! ```
//! The difference of the two runs' totals over 1,000 is one evaluation.
//!
//! Large chains, through `eval` at `LocalIn` (chain INPUT, policy drop),
//! for a packet that matches only the chain's LAST rule: `kubeN` is N
//! rules `daddr A_i proto tcp dport P_i accept` (two rules per service
//! address, ports 80 and 443), `blockN` N - 1 rules `saddr 10.x.y.0/24
//! drop` then `accept`, `portsN` N rules `saddr 10.x.y.0/24 proto tcp
//! dport P accept` (256 ports per prefix: the general, intersecting
//! query). N is a number, with an optional `k` (thousands):
//! `kube10k`, `block16`, `kube1`. Chains of at least 16 rules are indexed.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::gen::{addr16, tcp_syn};
use common::{compile, NullEnv, OwnedAction, OwnedChain, OwnedRule};
use rnf_core::ct::CtState;
use rnf_core::eval::{CompiledTable, Verdict};
use rnf_core::hooks::{Family, Hook};
use rnf_core::packet::{PacketFacts, IPPROTO_TCP, IPPROTO_UDP, L4};
use rnf_core::rules::{Cidr, CtStateMatch, Policy, PortRange, Table};
use std::hint::black_box;

fn host(a: [u8; 4]) -> Cidr {
    Cidr::new(Family::Ipv4, addr16(a), 32).unwrap()
}

fn packet(proto: u8, dport: u16) -> PacketFacts {
    PacketFacts {
        family: Family::Ipv4,
        src: addr16([10, 0, 1, 5]),
        dst: addr16([10, 0, 2, 2]),
        proto,
        total_len: 46,
        frag_offset: 0,
        is_fragment: false,
        l4_offset: 20,
        l4: if proto == IPPROTO_UDP {
            L4::Ports { sport: 1234, dport }
        } else {
            L4::Tcp {
                sport: 1234,
                dport,
                flags: 2,
            }
        },
        payload_offset: Some(28),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shape = args.get(1).map_or("ct", |s| s.as_str());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let big = |prefix: &str| -> Option<usize> {
        let rest = shape.strip_prefix(prefix)?;
        match rest.strip_suffix('k') {
            Some(k) => k.parse::<usize>().ok().map(|k| k * 1000),
            None => rest.parse().ok(),
        }
    };
    if let Some(rules) = big("kube") {
        return run_large(Shape::Kube, rules, n);
    }
    if let Some(rules) = big("block") {
        return run_large(Shape::Block, rules, n);
    }
    if let Some(rules) = big("ports") {
        return run_large(Shape::Ports, rules, n);
    }
    let accept = |proto| OwnedRule {
        family: Some(Family::Ipv4),
        proto: Some(proto),
        daddr: Some((false, vec![host([10, 0, 2, 2])])),
        dport: Some((false, vec![PortRange { lo: 9, hi: 9 }])),
        action: OwnedAction::Accept,
        ..Default::default()
    };
    let (chains, hook, f) = match shape {
        "ct" => {
            let est = OwnedRule {
                ct_state: Some(CtStateMatch {
                    states: CtState(CtState::ESTABLISHED.0 | CtState::RELATED.0),
                    negated: false,
                }),
                action: OwnedAction::Accept,
                ..Default::default()
            };
            (
                vec![OwnedChain::of(
                    "FORWARD",
                    Some(Policy::Drop),
                    0,
                    &[est, accept(IPPROTO_UDP)],
                )],
                Hook::Forward,
                packet(IPPROTO_UDP, 9),
            )
        }
        _ => (
            vec![OwnedChain::of(
                "FORWARD",
                Some(Policy::Drop),
                0,
                &[accept(IPPROTO_TCP)],
            )],
            Hook::Forward,
            packet(IPPROTO_TCP, 9),
        ),
    };
    let buf = compile(Table::Filter, &chains).expect("compiles");
    let table = CompiledTable::new(&buf).unwrap();
    let first = table.state_accept(hook);
    assert_eq!(first.is_some(), shape == "ct");
    assert_eq!(table.eval(hook, &f, &mut NullEnv), Verdict::Accept);
    for _ in 0..n {
        let v = if first.is_some() {
            table.eval_after(hook, black_box(&f), &mut NullEnv, first.as_ref())
        } else {
            table.eval(hook, black_box(&f), &mut NullEnv)
        };
        black_box(v);
    }
}

/// `n` evaluations of the large chain of `shape` with `rules` rules.
#[inline(never)]
fn run_large(shape: Shape, rules: usize, n: usize) {
    let (chains, hook, f) = large(shape, rules);
    let buf = compile(Table::Filter, &chains).expect("compiles");
    let table = CompiledTable::new(&buf).unwrap();
    assert_eq!(table.eval(hook, &f, &mut NullEnv), Verdict::Accept);
    for _ in 0..n {
        black_box(one(&table, hook, black_box(&f)));
    }
}

/// One evaluation of the large shapes, not inlined (as the kernel's hook
/// calls it; the count includes the call), so that
/// `--toggle-collect=eval_icount::one` profiles it alone.
#[inline(never)]
fn one(table: &CompiledTable<'_>, hook: Hook, f: &PacketFacts) -> Verdict {
    table.eval(hook, f, &mut NullEnv)
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Kube,
    Block,
    Ports,
}

/// Rule `i` of a large chain of `shape`, `n` rules.
fn large_rule(shape: Shape, i: usize, n: usize) -> OwnedRule {
    let i32 = i as u32;
    match shape {
        Shape::Kube => OwnedRule {
            family: Some(Family::Ipv4),
            proto: Some(IPPROTO_TCP),
            daddr: Some((
                false,
                vec![host([10, 96, ((i32 / 2) >> 8) as u8, (i32 / 2) as u8])],
            )),
            dport: Some((
                false,
                vec![if i % 2 == 0 {
                    PortRange { lo: 80, hi: 80 }
                } else {
                    PortRange { lo: 443, hi: 443 }
                }],
            )),
            action: OwnedAction::Accept,
            ..Default::default()
        },
        // The benchmark's `ports` shape: 256 ports per /24, so that
        // neither field alone has few candidates (the general query).
        Shape::Ports => OwnedRule {
            family: Some(Family::Ipv4),
            proto: Some(IPPROTO_TCP),
            saddr: Some((
                false,
                vec![Cidr::new(
                    Family::Ipv4,
                    addr16([10, (i32 >> 16) as u8, (i32 >> 8) as u8, 0]),
                    24,
                )
                .unwrap()],
            )),
            dport: Some((
                false,
                vec![PortRange {
                    lo: 1000 + (i % 256) as u16,
                    hi: 1000 + (i % 256) as u16,
                }],
            )),
            action: OwnedAction::Accept,
            ..Default::default()
        },
        Shape::Block if i + 1 == n => OwnedRule {
            action: OwnedAction::Accept,
            ..Default::default()
        },
        Shape::Block => OwnedRule {
            family: Some(Family::Ipv4),
            saddr: Some((
                false,
                vec![Cidr::new(
                    Family::Ipv4,
                    addr16([10, (i32 >> 8) as u8, i32 as u8, 0]),
                    24,
                )
                .unwrap()],
            )),
            action: OwnedAction::Drop,
            ..Default::default()
        },
    }
}

/// Chain INPUT of `n` rules of `shape`, and a packet that only its last
/// rule matches (checked against the chain without that rule).
fn large(shape: Shape, n: usize) -> (Vec<OwnedChain>, Hook, PacketFacts) {
    assert!(n >= 1);
    let chain = |n: usize| {
        let rules: Vec<OwnedRule> = (0..n).map(|i| large_rule(shape, i, n)).collect();
        vec![OwnedChain::of("INPUT", Some(Policy::Drop), 0, &rules)]
    };
    let last = (n - 1) as u32;
    let f = match shape {
        Shape::Kube => tcp_syn(
            addr16([10, 0, 1, 5]),
            addr16([10, 96, ((last / 2) >> 8) as u8, (last / 2) as u8]),
            40000,
            if last % 2 == 0 { 80 } else { 443 },
        ),
        Shape::Block => tcp_syn(addr16([192, 168, 1, 5]), addr16([10, 0, 2, 2]), 40000, 22),
        Shape::Ports => tcp_syn(
            addr16([10, (last >> 16) as u8, (last >> 8) as u8, 7]),
            addr16([10, 0, 2, 2]),
            40000,
            1000 + (last % 256) as u16,
        ),
    };
    // Only the last rule matches: without it, the policy drops (for the
    // block shape, the last rule is the only accept anyway).
    if shape != Shape::Block && n > 1 {
        let mut without = chain(n);
        without[0].rules.pop();
        let buf = compile(Table::Filter, &without).expect("compiles");
        let t = CompiledTable::new(&buf).unwrap();
        assert_eq!(t.eval(Hook::LocalIn, &f, &mut NullEnv), Verdict::Drop);
    }
    (chain(n), Hook::LocalIn, f)
}
