// SPDX-License-Identifier: GPL-2.0-only

//! Evaluation of one packet that matches only the LAST rule of a chain of
//! 1 to 65,000 rules (the table limit is 65,536), for three shapes, and
//! compile time at those sizes:
//!
//! - `ports`: `ip saddr A/24 tcp dport P drop`, every (A, P) distinct;
//! - `kube`: kube-proxy's services, `ip daddr A tcp dport P jump svcK`
//!   (8 service chains of one `accept` each);
//! - `blocklist`: `ip saddr PREFIX drop`, /32 and /24 prefixes.
//!
//! `cargo bench -p rnf-core --bench eval`

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::gen::tcp_syn;
use common::{compile, NullEnv, OwnedAction, OwnedChain, OwnedRule};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use rnf_core::eval::{CompiledTable, Verdict};
use rnf_core::hooks::{Family, Hook};
use rnf_core::packet::{PacketFacts, IPPROTO_TCP};
use rnf_core::rules::{Cidr, Policy, PortRange, Table};
use std::time::Duration;

const SIZES: [usize; 5] = [1, 100, 1_000, 10_000, 65_000];
const SERVICES: usize = 8;

fn v4(i: usize, len: u8) -> Cidr {
    let i = i as u32;
    let a = [
        10 + (i >> 24) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ];
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&a);
    Cidr::new(Family::Ipv4, x, len).unwrap()
}

fn port(p: u16) -> Option<(bool, Vec<PortRange>)> {
    Some((false, vec![PortRange { lo: p, hi: p }]))
}

#[derive(Clone, Copy)]
enum Shape {
    Ports,
    Kube,
    Blocklist,
}

impl Shape {
    const ALL: [Shape; 3] = [Shape::Ports, Shape::Kube, Shape::Blocklist];
    fn name(self) -> &'static str {
        match self {
            Shape::Ports => "ports",
            Shape::Kube => "kube",
            Shape::Blocklist => "blocklist",
        }
    }

    /// Rule `i` of `n`.
    fn rule(self, i: usize) -> OwnedRule {
        let base = OwnedRule {
            family: Some(Family::Ipv4),
            ..Default::default()
        };
        match self {
            // 256 ports per /24, so (address, port) pairs are distinct.
            Shape::Ports => OwnedRule {
                proto: Some(IPPROTO_TCP),
                saddr: Some((false, vec![v4((i / 256) << 8, 24)])),
                dport: port(1000 + (i % 256) as u16),
                action: OwnedAction::Drop,
                ..base
            },
            Shape::Kube => OwnedRule {
                proto: Some(IPPROTO_TCP),
                daddr: Some((false, vec![v4(i / 2, 32)])),
                dport: port(if i % 2 == 0 { 80 } else { 443 }),
                action: OwnedAction::Jump(format!("svc{}", i % SERVICES)),
                ..base
            },
            Shape::Blocklist => OwnedRule {
                saddr: Some((
                    false,
                    vec![if i % 4 == 3 {
                        v4(i << 8, 24)
                    } else {
                        v4(i, 32)
                    }],
                )),
                action: OwnedAction::Drop,
                ..base
            },
        }
    }

    /// A packet that matches rule `i` (and no earlier one).
    fn packet(self, i: usize) -> PacketFacts {
        let r = self.rule(i);
        let addr = |l: &Option<(bool, Vec<Cidr>)>| l.as_ref().map(|(_, c)| c[0].addr);
        let mut src = addr(&r.saddr).unwrap_or([0; 16]);
        if r.saddr.as_ref().map_or(true, |(_, c)| c[0].prefix < 32) {
            src[3] |= 1;
        }
        let dst = addr(&r.daddr).unwrap_or([192, 168, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let dport = r.dport.as_ref().map_or(22, |(_, p)| p[0].lo);
        tcp_syn(src, dst, 40000, dport)
    }

    fn chains(self, n: usize) -> Vec<OwnedChain> {
        let encode = |rules: Vec<OwnedRule>, first: usize| -> Vec<(u64, u32, Vec<u8>)> {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| ((first + i) as u64, (first + i) as u32, r.encode()))
                .collect()
        };
        let mut chains = vec![OwnedChain {
            name: "INPUT".into(),
            policy: Some(Policy::Accept),
            policy_counter: 0,
            rules: encode((0..n).map(|i| self.rule(i)).collect(), 1),
        }];
        if let Shape::Kube = self {
            for k in 0..SERVICES {
                let accept = OwnedRule {
                    action: OwnedAction::Accept,
                    ..Default::default()
                };
                chains.push(OwnedChain {
                    name: format!("svc{k}"),
                    policy: None,
                    policy_counter: 0,
                    rules: encode(vec![accept], n + 1 + k),
                });
            }
        }
        chains
    }

    fn expected(self) -> Verdict {
        match self {
            Shape::Kube => Verdict::Accept,
            _ => Verdict::Drop,
        }
    }
}

fn bench_eval(c: &mut Criterion) {
    let mut g = c.benchmark_group("eval_last_rule");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(20);
    for shape in Shape::ALL {
        for n in SIZES {
            let chains = shape.chains(n);
            let buf = compile(Table::Filter, &chains).expect("compiles");
            let table = CompiledTable::new(&buf).unwrap();
            let f = shape.packet(n - 1);
            // Only the last rule matches: earlier ones must not.
            if n > 1 {
                let mut e = NullEnv;
                let only_first = compile(Table::Filter, &shape.chains(n - 1)).unwrap();
                let t = CompiledTable::new(&only_first).unwrap();
                assert_eq!(t.eval(Hook::LocalIn, &f, &mut e), Verdict::Accept);
            }
            assert_eq!(
                table.eval(Hook::LocalIn, &f, &mut NullEnv),
                shape.expected()
            );
            g.bench_with_input(BenchmarkId::new(shape.name(), n), &f, |b, f| {
                b.iter(|| table.eval(Hook::LocalIn, black_box(f), &mut NullEnv))
            });
        }
    }
    g.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(1000))
        .sample_size(10);
    for shape in Shape::ALL {
        for n in SIZES {
            let chains = shape.chains(n);
            let size = rnf_core::compile::measure(Table::Filter, common::specs(&chains)).unwrap();
            // The compiled table's size, beside its compile time.
            eprintln!("compile/{}/{n}: {size} bytes", shape.name());
            let mut buf = vec![0u8; size];
            g.bench_with_input(BenchmarkId::new(shape.name(), n), &chains, |b, chains| {
                b.iter(|| {
                    let m =
                        rnf_core::compile::measure(Table::Filter, common::specs(chains)).unwrap();
                    rnf_core::compile::fill(Table::Filter, common::specs(chains), &mut buf[..m])
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_eval, bench_compile);
criterion_main!(benches);
