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

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::gen::addr16;
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
