// SPDX-License-Identifier: GPL-2.0-only

//! The classification index (chains of at least 16 rules) against the
//! reference interpreter on large rule sets shaped like real ones:
//! kube-proxy services (destination address + port + protocol → jump),
//! blocklists (thousands of source prefixes → drop), and random rules
//! drawn from small pools so that many rules share keys, with every kind
//! of match the index does not look at mixed in. Also: corrupt indexes
//! never panic.

mod common;

use common::gen::{infer_family, keep_family_addrs, tcp_syn};
use common::*;
use proptest::prelude::*;
use rnf_core::ct::{CtState, Direction};
use rnf_core::eval::{eval, CompiledTable};
use rnf_core::hooks::{Family, Hook};
use rnf_core::packet::{PacketFacts, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, L4};
use rnf_core::rules::{
    Cidr, CtStateMatch, IcmpMatch, Limit, LimitUnit, MarkMatch, MarkOp, Policy, PortRange, Table,
    TcpFlagsMatch, RANDOM_ALWAYS,
};

/// xorshift64*, enough to shape rule sets from a proptest seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&a);
    x
}

/// A small pool of IPv4 addresses, so that rules share them.
fn pool_v4(r: &mut Rng, pool: usize) -> [u8; 16] {
    let i = r.below(pool) as u32;
    v4([10, (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

fn pool_v6(r: &mut Rng, pool: usize) -> [u8; 16] {
    let i = r.below(pool) as u16;
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[14..].copy_from_slice(&i.to_be_bytes());
    a
}

const PORTS: [u16; 8] = [22, 53, 80, 443, 1500, 8080, 8443, 9000];

fn cidr(r: &mut Rng, fam: Family, pool: usize) -> Cidr {
    match fam {
        Family::Ipv4 => {
            // Many lengths, more than the index keeps (16), /32 most.
            let len = if r.chance(50) { 32 } else { r.below(33) as u8 };
            Cidr::new(Family::Ipv4, pool_v4(r, pool), len).unwrap()
        }
        Family::Ipv6 => {
            let len = [128u8, 64, 112, 120, 0, 16][r.below(6)];
            Cidr::new(Family::Ipv6, pool_v6(r, pool), len).unwrap()
        }
    }
}

fn ports(r: &mut Rng) -> (bool, Vec<PortRange>) {
    let n = 1 + r.below(3);
    let list = (0..n)
        .map(|_| {
            let lo = PORTS[r.below(PORTS.len())];
            let hi = match r.below(4) {
                0 => lo.saturating_add(r.below(20) as u16),
                1 => lo.saturating_add(2),
                _ => lo,
            };
            PortRange { lo, hi }
        })
        .collect();
    (r.chance(10), list)
}

/// The non-indexed extras: interfaces, marks, ct, flags, limit, nth, ...
fn extras(r: &mut Rng, rule: &mut OwnedRule) {
    if !r.chance(25) {
        return;
    }
    match r.below(9) {
        0 => {
            rule.iif = Some((
                ["eth0", "eth", "wlan0"][r.below(3)].into(),
                r.chance(50),
                false,
            ))
        }
        1 => {
            rule.mark = Some(MarkMatch {
                value: r.below(3) as u32,
                mask: 0xff,
                negated: r.chance(30),
            })
        }
        2 => {
            rule.ct_state = Some(CtStateMatch {
                states: [CtState::NEW, CtState::ESTABLISHED, CtState::INVALID][r.below(3)],
                negated: r.chance(30),
            })
        }
        3 => {
            rule.limit = Some(Limit {
                rate: 1,
                unit: LimitUnit::Second,
                burst: 1 + r.below(3) as u32,
            })
        }
        4 => rule.nth = Some(1 + r.below(3) as u32),
        5 => rule.random = Some([0, RANDOM_ALWAYS / 2, RANDOM_ALWAYS][r.below(3)]),
        6 => rule.payload = Some(b"GET".to_vec()),
        7 if rule.proto == Some(IPPROTO_TCP) => {
            rule.tcp_flags = Some(TcpFlagsMatch {
                mask: 0x12,
                set: 0x02,
            })
        }
        _ => rule.uid = Some(r.below(2) as u32),
    }
}

/// An action: mostly terminal, some non-terminal, some jumps to `users`.
fn action(r: &mut Rng, users: usize, terminal_percent: usize) -> OwnedAction {
    if r.chance(terminal_percent) {
        return [OwnedAction::Drop, OwnedAction::Accept][r.below(2)].clone();
    }
    match r.below(6) {
        0 if users > 0 => OwnedAction::Jump(format!("user{}", r.below(users))),
        1 if users > 0 => OwnedAction::Goto(format!("user{}", r.below(users))),
        2 => OwnedAction::Log("x ".into(), 4),
        3 => OwnedAction::Mark(MarkOp::Set, r.below(3) as u32),
        4 => OwnedAction::Return,
        _ => OwnedAction::Accept,
    }
}

/// Makes addresses and protocol consistent, as the validator wants.
fn fix(mut rule: OwnedRule) -> OwnedRule {
    infer_family(&mut rule);
    keep_family_addrs(&mut rule);
    if !matches!(rule.proto, Some(IPPROTO_TCP | IPPROTO_UDP)) {
        rule.sport = None;
        rule.dport = None;
    }
    if rule.proto != Some(IPPROTO_TCP) {
        rule.tcp_flags = None;
    }
    rule
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `ip daddr A tcp dport P → jump` (kube-proxy's KUBE-SERVICES).
    Kube,
    /// `ip saddr PREFIX → drop`.
    Blocklist,
    /// Anything, from small pools.
    Mixed,
    /// Services in both families: `daddr HOSTS proto P dport PORTS` with
    /// several hosts (IPv4 and IPv6) and ports, some wider than the
    /// service keys go, some negated, and IPv6 hosts whose low bits are
    /// ports (their service keys collide).
    Services,
}

/// A filter table whose INPUT chain has `n` rules of `shape`, FORWARD and
/// OUTPUT a few, and `users` user chains (some large) that INPUT jumps
/// to.
fn rule_set(shape: Shape, n: usize, seed: u64) -> Vec<OwnedChain> {
    let mut r = Rng::new(seed);
    let users = 6;
    let pool = (n / 3).max(4);
    let mut counter = 0u32;
    let mut handle = 0u64;
    let mut make = |r: &mut Rng, chain_i: usize, len: usize| -> Vec<(u64, u32, Vec<u8>)> {
        // User chains jump only to later ones.
        let later = |r: &mut Rng| -> usize {
            if chain_i < 3 {
                users
            } else {
                let _ = r;
                0
            }
        };
        (0..len)
            .map(|_| {
                let mut rule = OwnedRule::default();
                let shape = if r.chance(5) { Shape::Mixed } else { shape };
                match shape {
                    Shape::Kube => {
                        rule.proto = Some([IPPROTO_TCP, IPPROTO_UDP][r.below(2)]);
                        rule.daddr = Some((
                            false,
                            vec![Cidr::new(Family::Ipv4, pool_v4(r, pool), 32).unwrap()],
                        ));
                        rule.dport = Some((
                            false,
                            vec![{
                                let p = PORTS[r.below(PORTS.len())];
                                PortRange { lo: p, hi: p }
                            }],
                        ));
                    }
                    Shape::Services => {
                        rule.proto = Some([IPPROTO_TCP, IPPROTO_UDP][r.below(2)]);
                        let most = if r.chance(80) { 1 } else { 5 };
                        let hosts = (0..1 + r.below(most))
                            .map(|_| {
                                if r.chance(70) {
                                    Cidr::new(Family::Ipv4, pool_v4(r, pool), 32).unwrap()
                                } else if r.chance(50) {
                                    Cidr::new(Family::Ipv6, pool_v6(r, pool), 128).unwrap()
                                } else {
                                    let mut a = pool_v6(r, 4);
                                    a[14..].copy_from_slice(
                                        &PORTS[r.below(PORTS.len())].to_be_bytes(),
                                    );
                                    // Now and then not a host: a wildcard.
                                    let len = if r.chance(90) { 128 } else { 120 };
                                    Cidr::new(Family::Ipv6, a, len).unwrap()
                                }
                            })
                            .collect();
                        rule.daddr = Some((r.chance(3), hosts));
                        let (neg, mut list) = ports(r);
                        if r.chance(60) {
                            list.truncate(1);
                        }
                        rule.dport = Some((neg && r.chance(30), list));
                    }
                    Shape::Blocklist => {
                        let fam = if r.chance(85) {
                            Family::Ipv4
                        } else {
                            Family::Ipv6
                        };
                        rule.saddr = Some((r.chance(2), vec![cidr(r, fam, pool)]));
                    }
                    Shape::Mixed => {
                        if r.chance(60) {
                            rule.proto =
                                Some([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, 47][r.below(4)]);
                        }
                        for side in 0..2 {
                            if r.chance(50) {
                                let k = 1 + r.below(3);
                                let list = (0..k)
                                    .map(|_| {
                                        let fam = if r.chance(75) {
                                            Family::Ipv4
                                        } else {
                                            Family::Ipv6
                                        };
                                        cidr(r, fam, 8)
                                    })
                                    .collect();
                                let l = Some((r.chance(10), list));
                                if side == 0 {
                                    rule.saddr = l;
                                } else {
                                    rule.daddr = l;
                                }
                            }
                        }
                        if r.chance(40) {
                            rule.dport = Some(ports(r));
                        }
                        if r.chance(25) {
                            rule.sport = Some(ports(r));
                        }
                        if r.chance(10) {
                            rule.proto = Some(IPPROTO_ICMP);
                            rule.icmp = Some(IcmpMatch { ty: 8, code: None });
                        }
                    }
                }
                extras(r, &mut rule);
                let u = later(r);
                rule.action = action(
                    r,
                    u,
                    if matches!(shape, Shape::Blocklist) {
                        85
                    } else {
                        60
                    },
                );
                if chain_i >= 3 {
                    if let OwnedAction::Jump(_) | OwnedAction::Goto(_) = rule.action {
                        rule.action = OwnedAction::Accept;
                    }
                }
                counter += 1;
                handle += 1;
                (handle, counter, fix(rule).encode())
            })
            .collect()
    };
    let mut chains = Vec::new();
    for (i, name) in ["INPUT", "FORWARD", "OUTPUT"].iter().enumerate() {
        let len = if i == 0 { n } else { r.below(40) };
        let rules = make(&mut r, i, len);
        chains.push(OwnedChain {
            name: name.to_string(),
            policy: Some(if r.chance(50) {
                Policy::Accept
            } else {
                Policy::Drop
            }),
            policy_counter: 1_000_000 + i as u32,
            rules,
        });
    }
    for u in 0..users {
        let len = if u % 2 == 0 {
            20 + r.below(200)
        } else {
            r.below(8)
        };
        let rules = make(&mut r, 3 + u, len);
        chains.push(OwnedChain {
            name: format!("user{u}"),
            policy: None,
            policy_counter: 0,
            rules,
        });
    }
    chains
}

/// Packets: most made to hit the keys of a random rule, some anything.
fn packets(chains: &[OwnedChain], seed: u64, count: usize) -> Vec<(Hook, PacketFacts)> {
    use rnf_core::rules::RuleView;
    let mut r = Rng::new(seed ^ 0x5555);
    let all: Vec<&Vec<u8>> = chains
        .iter()
        .flat_map(|c| c.rules.iter().map(|x| &x.2))
        .collect();
    (0..count)
        .map(|_| {
            let mut fam = if r.chance(80) {
                Family::Ipv4
            } else {
                Family::Ipv6
            };
            let mut src = if fam == Family::Ipv4 {
                pool_v4(&mut r, 64)
            } else {
                pool_v6(&mut r, 64)
            };
            let mut dst = if fam == Family::Ipv4 {
                pool_v4(&mut r, 64)
            } else {
                pool_v6(&mut r, 64)
            };
            let mut proto = [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, 47][r.below(4)];
            let mut sport = PORTS[r.below(PORTS.len())];
            let mut dport = PORTS[r.below(PORTS.len())];
            if !all.is_empty() && r.chance(85) {
                let v = RuleView::decode(all[r.below(all.len())]).unwrap();
                if let Some(f) = v.family {
                    fam = f;
                }
                let pick = |l: Option<rnf_core::rules::AddrList<'_>>,
                            a: &mut [u8; 16],
                            fam: &mut Family| {
                    if let Some(c) = l.and_then(|l| l.iter().next()) {
                        *fam = c.family;
                        *a = c.addr;
                    }
                };
                pick(v.saddr, &mut src, &mut fam);
                pick(v.daddr, &mut dst, &mut fam);
                if src.iter().skip(4).any(|b| *b != 0) && fam == Family::Ipv4 {
                    src = pool_v4(&mut r, 64);
                }
                if dst.iter().skip(4).any(|b| *b != 0) && fam == Family::Ipv4 {
                    dst = pool_v4(&mut r, 64);
                }
                if let Some(p) = v.proto {
                    proto = p;
                }
                if let Some(p) = v.dport.and_then(|l| l.iter().next()) {
                    dport = p.hi;
                }
                if let Some(p) = v.sport.and_then(|l| l.iter().next()) {
                    sport = p.lo;
                }
            }
            if fam == Family::Ipv6 {
                if src[..4] == [10, 0, 0, 0][..] || src[0] == 10 {
                    src = pool_v6(&mut r, 64);
                }
                if dst[0] == 10 {
                    dst = pool_v6(&mut r, 64);
                }
            }
            let l4 = match (proto, r.below(10)) {
                (_, 0) => L4::Absent,
                (IPPROTO_TCP, _) => L4::Tcp {
                    sport,
                    dport,
                    flags: [0x02, 0x10, 0x12][r.below(3)],
                },
                (IPPROTO_UDP, _) => L4::Ports { sport, dport },
                (IPPROTO_ICMP, _) => L4::Icmp { ty: 8, code: 0 },
                _ => L4::Absent,
            };
            let hook = [
                Hook::LocalIn,
                Hook::LocalIn,
                Hook::LocalIn,
                Hook::Forward,
                Hook::LocalOut,
            ][r.below(5)];
            (
                hook,
                PacketFacts {
                    family: fam,
                    src,
                    dst,
                    proto,
                    total_len: 40 + r.below(1400) as u32,
                    frag_offset: 0,
                    is_fragment: false,
                    l4_offset: 20,
                    l4,
                    payload_offset: None,
                },
            )
        })
        .collect()
}

fn env(seed: u64) -> TestEnv {
    let mut e = TestEnv::new(seed);
    e.iif = b"eth0".to_vec();
    e.payload = b"GET / HTTP/1.1".to_vec();
    e.ct_state = CtState::NEW;
    e.flow = Some(TestFlow {
        direction: Direction::Original,
        status: 0,
        mark: 0,
    });
    e.uid = Some(1);
    e
}

/// Both interpreters, same environment that lives across packets: same
/// verdicts, same calls (counters, limits, nth, logs, marks) in order.
fn agree(chains: &[OwnedChain], packets: &[(Hook, PacketFacts)], seed: u64) {
    let compiled = compile(Table::Filter, chains).expect("rule set compiles");
    let table = CompiledTable::new(&compiled).expect("header");
    let mut e_ref = env(seed);
    let mut e_cmp = env(seed);
    for (hook, f) in packets {
        e_ref.mark = 1;
        e_cmp.mark = 1;
        e_ref.events.clear();
        e_cmp.events.clear();
        let want = ref_eval(chains, *hook, f, &mut e_ref);
        let got = table.eval(*hook, f, &mut e_cmp);
        assert_eq!(got, want, "verdict for {f:?} at {hook:?}");
        assert_eq!(e_cmp.events, e_ref.events, "environment calls for {f:?}");
        assert_eq!(e_cmp.mark, e_ref.mark);
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    prop::sample::select(vec![
        Shape::Kube,
        Shape::Blocklist,
        Shape::Mixed,
        Shape::Services,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn indexed_agrees_with_reference_large(
        shape in shape(),
        n in 16usize..3000,
        seed in any::<u64>(),
    ) {
        let chains = rule_set(shape, n, seed);
        let pk = packets(&chains, seed, 150);
        agree(&chains, &pk, seed);
    }

    #[test]
    fn corrupt_indexes_never_panic(
        shape in shape(),
        n in 16usize..300,
        seed in any::<u64>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let chains = rule_set(shape, n, seed);
        let mut buf = compile(Table::Filter, &chains).unwrap();
        // Hit the indexes (after the records) more often than the rest.
        let records_end = buf.len() / 3;
        for (i, b) in flips {
            let at = if b & 1 == 0 {
                records_end + i.index(buf.len() - records_end)
            } else {
                i.index(buf.len())
            };
            buf[at] = b;
        }
        let mut e = env(seed);
        for (h, f) in packets(&chains, seed, 40) {
            let _ = eval(&buf, h, &f, &mut e);
        }
    }
}

#[test]
fn ten_thousand_rule_shapes_agree() {
    for (i, shape) in [Shape::Kube, Shape::Blocklist, Shape::Mixed, Shape::Services]
        .into_iter()
        .enumerate()
    {
        let chains = rule_set(shape, 10_000, 77 + i as u64);
        let pk = packets(&chains, 5 + i as u64, 300);
        agree(&chains, &pk, 9);
    }
}

/// Only the last of many rules matches: the index finds it, and the
/// rules that share its keys but not the rest are skipped or checked.
#[test]
fn last_rule_of_a_long_chain() {
    let n = 5000u32;
    let mut rules: Vec<OwnedRule> = (0..n)
        .map(|i| OwnedRule {
            family: Some(Family::Ipv4),
            proto: Some(IPPROTO_TCP),
            daddr: Some((
                false,
                vec![Cidr::new(Family::Ipv4, v4([10, 96, (i >> 8) as u8, i as u8]), 32).unwrap()],
            )),
            dport: Some((false, vec![PortRange { lo: 80, hi: 80 }])),
            action: OwnedAction::Drop,
            ..Default::default()
        })
        .collect();
    // A wildcard rule in the middle that does not match (mark).
    rules[2500] = OwnedRule {
        mark: Some(MarkMatch {
            value: 7,
            mask: 0xff,
            negated: false,
        }),
        action: OwnedAction::Drop,
        ..Default::default()
    };
    let chains = vec![OwnedChain::of("INPUT", Some(Policy::Accept), 0, &rules)];
    let last = n - 1;
    let f = tcp_syn(
        v4([1, 2, 3, 4]),
        v4([10, 96, (last >> 8) as u8, last as u8]),
        1000,
        80,
    );
    let miss = PacketFacts {
        l4: L4::Tcp {
            sport: 1000,
            dport: 81,
            flags: 0x02,
        },
        ..f
    };
    agree(&chains, &[(Hook::LocalIn, f), (Hook::LocalIn, miss)], 1);
    let compiled = compile(Table::Filter, &chains).unwrap();
    let mut e = TestEnv::new(1);
    assert_eq!(
        eval(&compiled, Hook::LocalIn, &f, &mut e),
        rnf_core::eval::Verdict::Drop
    );
    assert_eq!(e.events, vec![Event::Count(n, 60)]);
}

/// More rules than ports: 70,000 rules on 65,536 distinct destination
/// ports and one protocol (their tables are sized by the keys the field
/// can have, not by the rules' keys), each port's first rule found.
#[test]
fn more_rules_than_ports() {
    let n = 70_000u32;
    let rules: Vec<OwnedRule> = (0..n)
        .map(|i| OwnedRule {
            family: Some(Family::Ipv4),
            proto: Some(if i % 7 == 0 { IPPROTO_UDP } else { IPPROTO_TCP }),
            dport: Some((
                false,
                vec![PortRange {
                    lo: i as u16,
                    hi: i as u16,
                }],
            )),
            action: if i % 2 == 0 {
                OwnedAction::Drop
            } else {
                OwnedAction::Accept
            },
            ..Default::default()
        })
        .collect();
    let chains = vec![OwnedChain::of("INPUT", Some(Policy::Drop), 0, &rules)];
    let mut pk = Vec::new();
    for port in [0u16, 1, 7, 4_463, 65_535] {
        for (s, proto) in [(1u16, IPPROTO_TCP), (2, IPPROTO_UDP)] {
            let f = tcp_syn(v4([1, 2, 3, 4]), v4([10, 0, 0, 1]), 1000 + s, port);
            let f = if proto == IPPROTO_UDP {
                PacketFacts {
                    proto,
                    l4: L4::Ports {
                        sport: 1000 + s,
                        dport: port,
                    },
                    ..f
                }
            } else {
                f
            };
            pk.push((Hook::LocalIn, f));
        }
    }
    agree(&chains, &pk, 3);
}
