// SPDX-License-Identifier: GPL-2.0-only

//! Tails: rules appended to a compiled table, compiled on their own and
//! walked after each chain's own rules ([`Tails`],
//! [`CompiledTable::eval_with_tails`], [`check_tails`]).
//!
//! - Equivalence: a rule set cut into compiled prefixes (the "main"
//!   table, with every jump and goto) and suffixes (the tails) gives the
//!   same verdicts and the same calls into the environment as the whole
//!   rule set compiled at once, in the filter, mangle, raw and nat tables, from
//!   a handful of rules to thousands, with classification indexes in the
//!   main table and in the tails.
//! - By hand: goto then the end of the chain without a jump to come back
//!   to applies the entry chain's policy without its tail; `return` in a
//!   tail comes back to the jump; what [`check_tails`] refuses and
//!   accepts; tails of another table drop.
//! - Corrupt tails (random bytes, flipped bytes, truncations, random
//!   links) never panic.

mod common;

use common::gen::*;
use common::*;
use proptest::prelude::*;
use rnf_core::compile::{check_tails, layout};
use rnf_core::eval::{CompiledTable, TailLink, Tails, Verdict};
use rnf_core::hooks::{Family, Hook};
use rnf_core::nat::{NatAction, NatKind, NatRange};
use rnf_core::packet::{PacketFacts, IPPROTO_TCP, IPPROTO_UDP, L4};
use rnf_core::rules::{Cidr, CtMarkOp, MarkOp, Policy, PortRange, RejectKind, Table};

/// `PROPTEST_CASES` divided by `div` when it is set, `default` otherwise,
/// so that a longer run scales every property, the expensive ones less.
fn cases(default: u32, div: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(default, |n| (n / div).max(1))
}

/// Runs a property for [`cases`]`(default, div)` cases. (The `proptest!`
/// macro would let `PROPTEST_CASES` set every property's count, hundreds
/// of cases of thousands of rules included.)
fn property<S: Strategy>(
    default: u32,
    div: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = ProptestConfig {
        cases: cases(default, div),
        source_file: Some(file!()),
        // Shrinking thousands of rules takes long: report what is there.
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    };
    if let Err(e) = proptest::test_runner::TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------
// Rule sets with jumps in the main part, and how they are cut.

#[derive(Clone, Debug)]
enum Choice {
    Fixed(OwnedAction),
    Jump(usize),
    Goto(usize),
    Nat(NatChoice),
}

/// An action; jumps and gotos only with `jumps` (the main part of a
/// chain), NAT actions (and no drop or reject) in the nat table, notrack
/// in the raw table.
fn action(jumps: bool, table: Table) -> impl Strategy<Value = Choice> {
    let fixed = prop_oneof![
        3 => Just(OwnedAction::Accept),
        3 => Just(OwnedAction::Drop),
        1 => prop::sample::select(RejectKind::ALL.to_vec()).prop_map(OwnedAction::Reject),
        1 => Just(OwnedAction::Notrack),
        2 => Just(OwnedAction::Return),
        2 => (prop::sample::select(vec!["", "IN ", "tail: "]), 0u8..8)
            .prop_map(|(p, l)| OwnedAction::Log(p.to_string(), l)),
        2 => (prop::sample::select(vec![MarkOp::Set, MarkOp::Xor, MarkOp::And, MarkOp::Or]), 0u32..4)
            .prop_map(|(op, v)| OwnedAction::Mark(op, v)),
        2 => (prop::sample::select(CtMarkOp::ALL.to_vec()), 0u32..4, prop::sample::select(vec![u32::MAX, 3, 0xf0]))
            .prop_map(|(op, v, mask)| {
                let mask = if op.has_mask() { mask } else { u32::MAX };
                let v = if op.has_value() { v & mask } else { 0 };
                OwnedAction::CtMark(op, v, mask)
            }),
    ]
    .prop_map(move |a| match a {
        // notrack only in the raw table.
        OwnedAction::Notrack if table != Table::Raw => OwnedAction::Log("nt ".into(), 2),
        // The nat table does not filter.
        OwnedAction::Drop if table == Table::Nat => OwnedAction::Return,
        OwnedAction::Reject(_) if table == Table::Nat => OwnedAction::Accept,
        a => a,
    });
    let mut options = vec![(16, fixed.prop_map(Choice::Fixed).boxed())];
    if jumps {
        options.push((3, any::<usize>().prop_map(Choice::Jump).boxed()));
        options.push((2, any::<usize>().prop_map(Choice::Goto).boxed()));
    }
    if table == Table::Nat {
        options.push((4, nat_choice().prop_map(Choice::Nat).boxed()));
    }
    prop::strategy::Union::new_weighted(options)
}

fn is_jump(blob: &[u8]) -> bool {
    matches!(
        rnf_core::rules::RuleView::decode(blob).unwrap().action,
        rnf_core::rules::Action::Jump(_) | rnf_core::rules::Action::Goto(_)
    )
}

/// A rule set of `table`: its built-in chains, then `n_user` user
/// chains; each chain is a head of `head_len` rules with jumps and gotos
/// (to user chains after it, so no loops) followed by `rest_len` rules
/// without. NAT actions get a kind allowed at every hook their chain is
/// reached from.
fn rule_set(
    table: Table,
    n_user: std::ops::Range<usize>,
    head_len: std::ops::Range<usize>,
    rest_len: std::ops::Range<usize>,
    selective: bool,
) -> impl Strategy<Value = Vec<OwnedChain>> {
    let n_builtin = table.hooks().len();
    (n_user, any::<[bool; 5]>()).prop_flat_map(move |(n_user, policies)| {
        let n = n_builtin + n_user;
        let part = |jumps: bool, len: std::ops::Range<usize>| {
            prop::collection::vec(
                (rule_matches(), action(jumps, table), any::<[u8; 3]>()),
                len,
            )
        };
        prop::collection::vec(
            (part(true, head_len.clone()), part(false, rest_len.clone())),
            n,
        )
        .prop_map(move |chains| {
            let names: Vec<String> = table
                .hooks()
                .iter()
                .map(|h| h.name().to_string())
                .chain((0..n_user).map(|i| format!("user{i}")))
                .collect();
            let mut counter = 0u32;
            let mut handle = 100u64;
            let mut pending = Vec::new();
            let mut out: Vec<OwnedChain> = chains
                .into_iter()
                .enumerate()
                .map(|(i, (head, rest))| {
                    let n_head = head.len();
                    let rules = head
                        .into_iter()
                        .chain(rest)
                        .enumerate()
                        .map(|(k, (m, a, shape))| {
                            let m = shape_rule(m, shape, selective, usize::from(k >= n_head));
                            let target = |x: usize| -> Option<String> {
                                let lo = (i + 1).max(n_builtin);
                                (lo < n).then(|| names[lo + x % (n - lo)].clone())
                            };
                            let no_target = if table == Table::Nat {
                                OwnedAction::Accept
                            } else {
                                OwnedAction::Drop
                            };
                            let action = match a {
                                Choice::Fixed(a) => a,
                                Choice::Jump(x) => target(x).map_or(no_target, OwnedAction::Jump),
                                Choice::Goto(x) => {
                                    target(x).map_or(OwnedAction::Return, OwnedAction::Goto)
                                }
                                Choice::Nat(c) => {
                                    pending.push((i, k, m.clone(), c));
                                    OwnedAction::Accept
                                }
                            };
                            counter += 1;
                            handle += 1;
                            (handle, counter, fix(OwnedRule { action, ..m }).encode())
                        })
                        .collect();
                    counter += 1;
                    let policy = (i < n_builtin).then(|| {
                        if policies[i] || table == Table::Nat {
                            Policy::Accept
                        } else {
                            Policy::Drop
                        }
                    });
                    OwnedChain {
                        name: names[i].clone(),
                        policy,
                        policy_counter: counter,
                        rules,
                    }
                })
                .collect();
            let hooks = ref_chain_hooks(table, &out);
            for (i, k, m, c) in pending {
                let allowed = nat_kinds_at(hooks[i]);
                let fallback = OwnedAction::Log("no nat ".into(), 1);
                out[i].rules[k].2 = pick_nat(&allowed, &c, m, fallback).encode();
            }
            out
        })
    })
}

/// A pool of keys for [`shape_rule`]: `size` source addresses
/// `10.sa.0.i`, destination addresses `10.da.0.i` and destination ports
/// `port + i`.
struct Pool {
    size: u8,
    sa: u8,
    da: u8,
    port: u16,
}

/// The keys of the parts of a chain with jumps (wide: a packet goes
/// through many rules before one matches) and without (narrower, for
/// packets that reach the tails to match there).
const POOLS: [Pool; 2] = [
    Pool {
        size: 16,
        sa: 2,
        da: 3,
        port: 2000,
    },
    Pool {
        size: 3,
        sa: 4,
        da: 5,
        port: 3000,
    },
];

/// Makes a random rule easier to match: three rules in four keep only
/// their header matches and conntrack state (with `selective`, only the
/// conntrack state). With `selective`, every rule gets a key from pool
/// `pool` (a source or destination address or a destination port), so
/// that a packet goes through many rules of a long chain before one
/// matches, as in a real rule set, and reaches the tails.
fn shape_rule(mut r: OwnedRule, shape: [u8; 3], selective: bool, pool: usize) -> OwnedRule {
    if shape[0] % 4 != 0 && selective {
        // The key, below, and the conntrack state.
        r = OwnedRule {
            ct_state: r.ct_state,
            ..Default::default()
        };
    } else if shape[0] % 4 != 0 {
        r = OwnedRule {
            family: r.family,
            proto: r.proto,
            saddr: r.saddr,
            daddr: r.daddr,
            sport: r.sport,
            dport: r.dport,
            ct_state: r.ct_state,
            ..Default::default()
        };
    }
    if !selective {
        return r;
    }
    let p = &POOLS[pool];
    let i = shape[2] % p.size;
    let host = |a: u8| vec![Cidr::new(Family::Ipv4, addr16([10, a, 0, i]), 32).unwrap()];
    match shape[1] % 3 {
        0 => {
            r.proto = Some(if i % 2 == 0 { IPPROTO_TCP } else { IPPROTO_UDP });
            let port = p.port + u16::from(i);
            r.dport = Some((false, vec![PortRange { lo: port, hi: port }]));
        }
        1 => {
            r.family = Some(Family::Ipv4);
            r.saddr = Some((false, host(p.sa)));
        }
        _ => {
            r.family = Some(Family::Ipv4);
            r.daddr = Some((false, host(p.da)));
        }
    }
    r
}

/// Packets whose addresses and destination port are often from one of
/// the [`POOLS`] (either, half of the time each).
fn wide_packet() -> impl Strategy<Value = PacketFacts> {
    (packet(), any::<[u8; 3]>(), any::<u8>()).prop_map(|(mut f, k, bits)| {
        let p = &POOLS[usize::from(bits >> 7)];
        if f.family == Family::Ipv4 {
            if bits & 3 != 0 {
                f.src = addr16([10, p.sa, 0, k[0] % p.size]);
            }
            if bits & 12 != 0 {
                f.dst = addr16([10, p.da, 0, k[1] % p.size]);
            }
        }
        if bits & 48 != 0 {
            let port = p.port + u16::from(k[2] % p.size);
            match &mut f.l4 {
                L4::Tcp { dport, .. } | L4::Ports { dport, .. } => *dport = port,
                _ => {}
            }
        }
        f
    })
}

/// How one chain is cut: where, moved forward past the chain's last
/// jump or goto.
#[derive(Clone, Debug)]
struct Cut {
    /// 0: as far forward as jumps allow (the longest tail); 1: no tail
    /// chain at all; 2: an empty tail chain after the whole chain;
    /// otherwise at `at`.
    mode: u8,
    at: prop::sample::Index,
}

fn cut() -> impl Strategy<Value = Cut> {
    (0u8..8, any::<prop::sample::Index>()).prop_map(|(mode, at)| Cut { mode, at })
}

/// A rule set cut into main chains and tails.
#[derive(Clone, Debug)]
struct Split {
    main: Vec<OwnedChain>,
    tails: Vec<OwnedChain>,
    links: Vec<TailLink>,
}

/// Cuts chain `i` of `full` at `at[i]` (`None`: no tail chain); the tails
/// are ordered by `order` (a permutation seed), so a tail's index differs
/// from its chain's.
fn split_at(table: Table, full: &[OwnedChain], at: &[Option<usize>], order: u64) -> Split {
    let mut main = Vec::new();
    let mut tails: Vec<(u32, OwnedChain)> = Vec::new();
    for (i, (c, k)) in full.iter().zip(at).enumerate() {
        let k = k.unwrap_or(c.rules.len());
        main.push(OwnedChain {
            rules: c.rules[..k].to_vec(),
            ..c.clone()
        });
        if at[i].is_some() {
            let policy = c.policy.map(|p| {
                // Any policy for a built-in chain's tail (never applied).
                if table != Table::Nat && (order >> (i % 64)) & 1 == 1 {
                    Policy::Drop
                } else {
                    p
                }
            });
            tails.push((
                i as u32,
                OwnedChain {
                    name: c.name.clone(),
                    policy,
                    // Never counted: the main chain's end applies.
                    policy_counter: 90_000 + i as u32,
                    rules: c.rules[k..].to_vec(),
                },
            ));
        }
    }
    // Fisher-Yates with xorshift.
    let mut s = order | 1;
    for j in (1..tails.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        tails.swap(j, (s % (j as u64 + 1)) as usize);
    }
    let mut links: Vec<TailLink> = tails
        .iter()
        .enumerate()
        .map(|(t, (chain, _))| TailLink {
            chain: *chain,
            tail: t as u32,
        })
        .collect();
    links.sort();
    Split {
        main,
        tails: tails.into_iter().map(|(_, c)| c).collect(),
        links,
    }
}

/// The cut points of `cuts` applied to `full`: never before a jump or goto.
fn split(table: Table, full: &[OwnedChain], cuts: &[Cut], order: u64) -> Split {
    let at: Vec<Option<usize>> = full
        .iter()
        .zip(cuts)
        .map(|(c, cut)| {
            let len = c.rules.len();
            let after_jumps = c
                .rules
                .iter()
                .rposition(|(_, _, b)| is_jump(b))
                .map_or(0, |p| p + 1);
            match cut.mode {
                0 => Some(after_jumps),
                1 => None,
                2 => Some(len),
                _ => Some(cut.at.index(len + 1).max(after_jumps)),
            }
        })
        .collect();
    split_at(table, full, &at, order)
}

/// The whole rule set compiled at once and cut into main and tails agree
/// on every verdict and every call into the environment, for `packets`
/// in order with environments that live across them (nth and limit
/// state carry over). Returns the number of rules in tails, and whether
/// some chain of each part has a classification index.
fn agree(
    table: Table,
    full: &[OwnedChain],
    s: &Split,
    packets: &[(Hook, PacketFacts)],
    env: &TestEnv,
) -> (usize, bool, bool) {
    let full_buf = compile(table, full).expect("the whole rule set compiles");
    let main_buf = compile(table, &s.main).expect("the main part compiles");
    let tail_buf = compile(table, &s.tails).expect("the tails compile");
    let whole = CompiledTable::new(&full_buf).unwrap();
    let main = CompiledTable::new(&main_buf).unwrap();
    let tails_table = CompiledTable::new(&tail_buf).unwrap();
    check_tails(&main, &tails_table, &s.links).expect("tails without jumps are fine");
    let tails = Tails::new(&tail_buf, &s.links).unwrap();
    assert_eq!(tails.table().n_chains(), s.tails.len());
    // What the kernel derives from the two buffers: whether packets must
    // be tracked, and the hooks whose chain is empty with policy accept
    // and no tail (counted and accepted without evaluating).
    assert_eq!(
        main.needs_conntrack() || tails_table.needs_conntrack(),
        whole.needs_conntrack()
    );
    let shortcut = |hook: Hook| {
        main.empty_accept(hook)
            .filter(|(chain, _)| s.links.iter().all(|l| l.chain != *chain))
    };
    let mut e_full = env.clone();
    let mut e_tail = env.clone();
    for (hook, f) in packets {
        e_full.mark = env.mark;
        e_tail.mark = env.mark;
        e_full.events.clear();
        e_tail.events.clear();
        let want = whole.eval(*hook, f, &mut e_full);
        // With the leading `ct state ... accept` given, as the kernel
        // evaluates it.
        let first = main.state_accept(*hook);
        let got = main.eval_with_tails(*hook, f, &mut e_tail, &tails, first.as_ref());
        assert_eq!(got, want, "verdict for {f:?} at {hook:?}");
        assert_eq!(
            e_tail.events, e_full.events,
            "environment calls for {f:?} at {hook:?}"
        );
        assert_eq!(e_tail.mark, e_full.mark);
        assert_eq!(e_tail.flow, e_full.flow);
        assert_eq!(e_tail.ct_state, e_full.ct_state);
        if let Some((_, counter)) = shortcut(*hook) {
            assert_eq!(want, Verdict::Accept);
            assert_eq!(e_full.events, vec![Event::Count(counter, f.total_len)]);
        }
    }
    let indexed = |cs: &[OwnedChain]| {
        cs.iter()
            .any(|c| c.rules.len() >= rnf_core::classify::INDEX_MIN_RULES)
    };
    let n_tail = s.tails.iter().map(|c| c.rules.len()).sum();
    (n_tail, indexed(&s.main), indexed(&s.tails))
}

fn table() -> impl Strategy<Value = Table> {
    prop_oneof![
        3 => Just(Table::Filter),
        1 => Just(Table::Mangle),
        1 => Just(Table::Raw),
        2 => Just(Table::Nat),
    ]
}

fn packets_for(
    table: Table,
    n: std::ops::Range<usize>,
    selective: bool,
) -> impl Strategy<Value = Vec<(Hook, PacketFacts)>> {
    // Mostly hooks the table has a chain at, sometimes any.
    let hooks = table.hooks().to_vec();
    let h = prop_oneof![4 => prop::sample::select(hooks), 1 => hook()];
    let f = if selective {
        wide_packet().boxed()
    } else {
        packet().boxed()
    };
    prop::collection::vec((h, f), n)
}

/// A case: a table, its rule set, how each chain is cut, the tails'
/// order, packets and an environment.
type Case = (
    Table,
    Vec<OwnedChain>,
    Vec<Cut>,
    u64,
    Vec<(Hook, PacketFacts)>,
    TestEnv,
);

fn case(
    n_user: std::ops::Range<usize>,
    head_len: std::ops::Range<usize>,
    rest_len: std::ops::Range<usize>,
    n_packets: std::ops::Range<usize>,
    selective: bool,
) -> impl Strategy<Value = Case> {
    table().prop_flat_map(move |t| {
        (
            Just(t),
            rule_set(
                t,
                n_user.clone(),
                head_len.clone(),
                rest_len.clone(),
                selective,
            ),
            prop::collection::vec(cut(), 5 + n_user.end),
            any::<u64>(),
            packets_for(t, n_packets.clone(), selective),
            env(),
        )
    })
}

/// Small rule sets: every way of cutting them.
#[test]
fn tails_agree_with_the_whole_compile_small() {
    let strategy = case(0..4, 0..6, 0..5, 1..16, false);
    property(
        200,
        1,
        strategy,
        |(table, full, cuts, order, packets, env)| {
            let s = split(table, &full, &cuts, order);
            agree(table, &full, &s, &packets, &env);
            // The whole rule set against the reference interpreter too, so a
            // bug shared by both compiled forms shows.
            let buf = compile(table, &full).unwrap();
            let whole = CompiledTable::new(&buf).unwrap();
            let mut e_ref = env.clone();
            let mut e_cmp = env.clone();
            for (h, f) in &packets {
                prop_assert_eq!(
                    whole.eval(*h, f, &mut e_cmp),
                    ref_eval(&full, *h, f, &mut e_ref)
                );
            }
            Ok(())
        },
    );
}

/// Chains long enough for classification indexes in the main part, in
/// the tails, or both.
#[test]
fn tails_agree_with_the_whole_compile_indexed() {
    let strategy = case(1..4, 0..40, 10..40, 16..40, true);
    property(
        16,
        16,
        strategy,
        |(table, full, cuts, order, packets, env)| {
            let s = split(table, &full, &cuts, order);
            agree(table, &full, &s, &packets, &env);
            Ok(())
        },
    );
}

/// Hundreds to thousands of rules, tails of tens to hundreds.
#[test]
fn tails_agree_with_the_whole_compile_large() {
    let strategy = case(2..5, 30..250, 16..160, 24..48, true);
    property(
        2,
        128,
        strategy,
        |(table, full, cuts, order, packets, env)| {
            let n: usize = full.iter().map(|c| c.rules.len()).sum();
            prop_assert!(n >= 200, "{} rules", n);
            // The first chain has the longest tail it can (its part without
            // jumps has 16 rules or more), the second none (its 46 rules or
            // more stay in the main table).
            let mut cuts = cuts;
            cuts[0].mode = 0;
            cuts[1].mode = 1;
            let s = split(table, &full, &cuts, order);
            let (n_tail, main_ix, tail_ix) = agree(table, &full, &s, &packets, &env);
            prop_assert!(n_tail >= 16 && main_ix && tail_ix);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------
// By hand.

fn log(prefix: &str) -> OwnedRule {
    rule(OwnedAction::Log(prefix.into(), 4))
}

fn jump(to: &str) -> OwnedRule {
    rule(OwnedAction::Jump(to.into()))
}

fn goto(to: &str) -> OwnedRule {
    rule(OwnedAction::Goto(to.into()))
}

fn set_mark(v: u32) -> OwnedRule {
    rule(OwnedAction::Mark(MarkOp::Set, v))
}

/// Chains whose rules have handles and counters numbered from 1 across
/// the rule set, and policy counters 1000 + the chain's index.
fn chains(spec: Vec<(&str, Option<Policy>, Vec<OwnedRule>)>) -> Vec<OwnedChain> {
    let mut n = 0u32;
    spec.into_iter()
        .enumerate()
        .map(|(i, (name, policy, rules))| OwnedChain {
            name: name.into(),
            policy,
            policy_counter: 1000 + i as u32,
            rules: rules
                .iter()
                .map(|r| {
                    n += 1;
                    (u64::from(n), n, r.encode())
                })
                .collect(),
        })
        .collect()
}

/// Evaluates a TCP packet at `hook` against `full` compiled whole and
/// against `full` cut at `at` (main and tails), checks they agree, and
/// returns the verdict and the calls into the environment.
fn both(
    table: Table,
    full: &[OwnedChain],
    at: &[Option<usize>],
    hook: Hook,
) -> (Verdict, Vec<Event>) {
    let s = split_at(table, full, at, 0x5eed);
    let packets = [(hook, tcp_packet(80))];
    agree(table, full, &s, &packets, &TestEnv::new(1));
    let buf = compile(table, full).unwrap();
    let mut e = TestEnv::new(1);
    let v = CompiledTable::new(&buf)
        .unwrap()
        .eval(hook, &packets[0].1, &mut e);
    (v, e.events)
}

fn count(c: u32) -> Event {
    Event::Count(c, 60)
}

fn logged(prefix: &str) -> Event {
    Event::Log(prefix.as_bytes().to_vec(), 4)
}

/// A user chain entered with goto from the built-in chain, at its end
/// (or at a `return`) with no jump to come back to: the built-in chain's
/// policy applies, and its tail is not walked, as iptables does not try
/// the rules after the goto.
#[test]
fn goto_then_end_applies_the_policy_without_the_entry_chains_tail() {
    let full = chains(vec![
        (
            "INPUT",
            Some(Policy::Drop),
            vec![goto("X"), rule(OwnedAction::Accept)],
        ),
        ("X", None, vec![log("x"), set_mark(5)]),
    ]);
    let (v, events) = both(Table::Filter, &full, &[Some(1), Some(1)], Hook::LocalIn);
    assert_eq!(v, Verdict::Drop);
    assert_eq!(
        events,
        vec![
            count(1),
            count(3),
            logged("x"),
            count(4),
            Event::SetMark(5),
            count(1000)
        ]
    );
    // The same with an explicit return in X's tail.
    let full = chains(vec![
        (
            "INPUT",
            Some(Policy::Accept),
            vec![goto("X"), rule(OwnedAction::Drop)],
        ),
        (
            "X",
            None,
            vec![log("x"), rule(OwnedAction::Return), rule(OwnedAction::Drop)],
        ),
    ]);
    let (v, events) = both(Table::Filter, &full, &[Some(1), Some(1)], Hook::LocalIn);
    assert_eq!(v, Verdict::Accept);
    assert_eq!(
        events,
        vec![count(1), count(3), logged("x"), count(4), count(1000)]
    );
    // Entered with jump instead, X comes back and the tail is walked.
    let full = chains(vec![
        (
            "INPUT",
            Some(Policy::Accept),
            vec![jump("X"), rule(OwnedAction::Drop)],
        ),
        ("X", None, vec![log("x"), rule(OwnedAction::Return)]),
    ]);
    let (v, events) = both(Table::Filter, &full, &[Some(1), Some(1)], Hook::LocalIn);
    assert_eq!(v, Verdict::Drop);
    assert_eq!(
        events,
        vec![count(1), count(3), logged("x"), count(4), count(2)]
    );
    // Goto from a chain entered with jump: the end comes back to the jump,
    // and the rest of the entry chain's tail applies.
    let full = chains(vec![
        (
            "INPUT",
            Some(Policy::Drop),
            vec![jump("A"), log("in"), rule(OwnedAction::Accept)],
        ),
        ("A", None, vec![goto("B"), rule(OwnedAction::Drop)]),
        ("B", None, vec![log("b"), set_mark(2)]),
    ]);
    for at in [[Some(1), Some(1), Some(1)], [Some(2), None, Some(0)]] {
        let (v, events) = both(Table::Filter, &full, &at, Hook::LocalIn);
        assert_eq!(v, Verdict::Accept);
        assert_eq!(
            events,
            vec![
                count(1),
                count(4),
                count(6),
                logged("b"),
                count(7),
                Event::SetMark(2),
                count(2),
                logged("in"),
                count(3)
            ]
        );
    }
}

/// `return` in the tail of a user chain comes back to the rule after
/// the jump, through nested jumps; the end of a tail too.
#[test]
fn return_in_a_tail_comes_back_to_the_jump() {
    let full = chains(vec![
        (
            "INPUT",
            Some(Policy::Drop),
            vec![jump("A"), log("back"), set_mark(9)],
        ),
        (
            "A",
            None,
            vec![
                jump("B"),
                log("a"),
                rule(OwnedAction::Return),
                rule(OwnedAction::Accept),
            ],
        ),
        (
            "B",
            None,
            vec![log("b"), rule(OwnedAction::Return), rule(OwnedAction::Drop)],
        ),
    ]);
    let want = vec![
        count(1),
        count(4),
        count(8),
        logged("b"),
        count(9),
        count(5),
        logged("a"),
        count(6),
        count(2),
        logged("back"),
        count(3),
        Event::SetMark(9),
        count(1000),
    ];
    for at in [
        [Some(2), Some(2), Some(1)],
        [Some(1), Some(1), Some(0)],
        [None, Some(2), Some(1)],
        [Some(3), Some(4), Some(3)],
    ] {
        let (v, events) = both(Table::Filter, &full, &at, Hook::LocalIn);
        assert_eq!(v, Verdict::Drop, "{at:?}");
        assert_eq!(events, want, "{at:?}");
    }
    // A tail that ends without return comes back too; a return in the
    // tail of the built-in chain applies its policy.
    let full = chains(vec![
        (
            "OUTPUT",
            Some(Policy::Accept),
            vec![
                jump("A"),
                log("back"),
                rule(OwnedAction::Return),
                set_mark(1),
            ],
        ),
        ("A", None, vec![log("a"), log("tail")]),
    ]);
    let (v, events) = both(Table::Filter, &full, &[Some(1), Some(1)], Hook::LocalOut);
    assert_eq!(v, Verdict::Accept);
    assert_eq!(
        events,
        vec![
            count(1),
            count(5),
            logged("a"),
            count(6),
            logged("tail"),
            count(2),
            logged("back"),
            count(3),
            count(1000)
        ]
    );
}

/// Compiles `chains` of `table` and returns the buffer.
fn build(table: Table, chains: &[OwnedChain]) -> Vec<u8> {
    compile(table, chains).unwrap()
}

#[test]
fn check_tails_refuses_jumps_in_tails() {
    let main = chains(vec![
        ("INPUT", Some(Policy::Accept), vec![jump("X")]),
        ("X", None, vec![log("x")]),
        ("Y", None, vec![log("y")]),
    ]);
    let main_buf = build(Table::Filter, &main);
    let m = CompiledTable::new(&main_buf).unwrap();
    for (k, to) in [jump("Y"), goto("Y")].into_iter().enumerate() {
        // The tails compile: Y is there.
        let mut tails = chains(vec![
            ("Y", None, vec![rule(OwnedAction::Accept)]),
            ("X", None, vec![log("t"), to]),
        ]);
        tails[1].rules[1].0 = 77;
        let tail_buf = build(Table::Filter, &tails);
        let t = CompiledTable::new(&tail_buf).unwrap();
        let links = [
            TailLink { chain: 1, tail: 1 },
            TailLink { chain: 2, tail: 0 },
        ];
        let e = check_tails(&m, &t, &links).unwrap_err();
        assert_eq!(
            (e.field, e.message, e.chain, e.handle),
            (
                "action",
                "internal error: a jump in a tail",
                Some("X"),
                Some(77)
            ),
            "{k}"
        );
        // Were they published anyway, the evaluator would not follow the
        // jump: a jump in a tail does not make sense, and drops.
        let tails = Tails::new(&tail_buf, &links).unwrap();
        let mut env = TestEnv::new(1);
        assert_eq!(
            m.eval_with_tails(Hook::LocalIn, &tcp_packet(80), &mut env, &tails, None),
            Verdict::Drop
        );
        // Linked to Y only, X's tail is never looked at.
        assert!(check_tails(&m, &t, &links[1..]).is_ok());
    }
}

#[test]
fn check_tails_refuses_bad_links() {
    const UNLINKED: &str = "internal error: a tail is linked to another chain";
    let main = chains(vec![
        ("INPUT", Some(Policy::Accept), vec![log("in")]),
        ("OUTPUT", Some(Policy::Accept), vec![log("out")]),
        ("X", None, vec![]),
    ]);
    let tails = chains(vec![
        ("X", None, vec![log("x")]),
        ("OUTPUT", Some(Policy::Drop), vec![log("o")]),
        ("INPUT", Some(Policy::Accept), vec![log("i")]),
    ]);
    let (mb, tb) = (build(Table::Filter, &main), build(Table::Filter, &tails));
    let (m, t) = (
        CompiledTable::new(&mb).unwrap(),
        CompiledTable::new(&tb).unwrap(),
    );
    let l = |chain, tail| TailLink { chain, tail };
    let good = [l(0, 2), l(1, 1), l(2, 0)];
    check_tails(&m, &t, &good).unwrap();
    check_tails(&m, &t, &good[1..]).unwrap();
    check_tails(&m, &t, &[]).unwrap();
    let bad: [(&[TailLink], Option<&str>); 7] = [
        // Names differ.
        (&[l(0, 1)], Some("INPUT")),
        (&[l(2, 2)], Some("X")),
        // Not sorted, or twice.
        (&[l(1, 1), l(0, 2)], Some("INPUT")),
        (&[l(0, 2), l(0, 2)], Some("INPUT")),
        (&[l(0, 2), l(2, 0), l(1, 1)], Some("OUTPUT")),
        // Out of range.
        (&[l(3, 0)], None),
        (&[l(0, 3)], Some("INPUT")),
    ];
    for (links, chain) in bad {
        let e = check_tails(&m, &t, links).unwrap_err();
        assert_eq!((e.message, e.chain), (UNLINKED, chain), "{links:?}");
    }
    // Evaluating with such links does not panic; the good ones agree with
    // the whole compile.
    let full = chains(vec![
        ("INPUT", Some(Policy::Accept), vec![log("in"), log("i")]),
        ("OUTPUT", Some(Policy::Accept), vec![log("out"), log("o")]),
        ("X", None, vec![log("x")]),
    ]);
    let fb = build(Table::Filter, &full);
    let whole = CompiledTable::new(&fb).unwrap();
    for (links, _) in bad.iter().chain([(&good[..], None)].iter()) {
        let ts = Tails::new(&tb, links).unwrap();
        for hook in Hook::ALL {
            let mut e = TestEnv::new(1);
            let v = m.eval_with_tails(hook, &tcp_packet(22), &mut e, &ts, None);
            if links == &&good[..] {
                let mut e2 = TestEnv::new(1);
                let w = whole.eval(hook, &tcp_packet(22), &mut e2);
                assert_eq!((v, e.events.len()), (w, e2.events.len()));
            }
        }
    }
}

#[test]
fn tails_of_another_table_are_refused_and_drop() {
    let main = chains(vec![("INPUT", Some(Policy::Accept), vec![log("in")])]);
    let tails = chains(vec![("INPUT", Some(Policy::Accept), vec![log("i")])]);
    let mb = build(Table::Filter, &main);
    let tb = build(Table::Mangle, &tails);
    let (m, t) = (
        CompiledTable::new(&mb).unwrap(),
        CompiledTable::new(&tb).unwrap(),
    );
    let links = [TailLink { chain: 0, tail: 0 }];
    let e = check_tails(&m, &t, &links).unwrap_err();
    assert_eq!((e.field, e.chain), ("table", None));
    for links in [&links[..], &[]] {
        let ts = Tails::new(&tb, links).unwrap();
        for hook in [Hook::LocalIn, Hook::PreRouting] {
            let mut env = TestEnv::new(1);
            assert_eq!(
                m.eval_with_tails(hook, &tcp_packet(80), &mut env, &ts, None),
                Verdict::Drop
            );
            assert!(env.events.is_empty());
        }
    }
    // The same tails in the filter table are fine.
    let tb = build(Table::Filter, &tails);
    let t = CompiledTable::new(&tb).unwrap();
    check_tails(&m, &t, &links).unwrap();
    let ts = Tails::new(&tb, &links).unwrap();
    let mut env = TestEnv::new(1);
    assert_eq!(
        m.eval_with_tails(Hook::LocalIn, &tcp_packet(80), &mut env, &ts, None),
        Verdict::Accept
    );
    assert_eq!(
        env.events,
        vec![count(1), logged("in"), count(1), logged("i"), count(1000)]
    );
}

fn dnat() -> OwnedRule {
    let to = addr16([10, 0, 2, 2]);
    OwnedRule {
        family: Some(Family::Ipv4),
        proto: Some(IPPROTO_TCP),
        action: OwnedAction::Nat(NatAction {
            kind: NatKind::Dnat,
            range: NatRange::addrs(Family::Ipv4, to, to).with_ports(8080, 8080),
        }),
        ..Default::default()
    }
}

fn masquerade() -> OwnedRule {
    rule(OwnedAction::Nat(NatAction {
        kind: NatKind::Masquerade,
        range: NatRange::empty(Family::Ipv4),
    }))
}

/// The nat table's built-in chains with these rules, then user chains.
fn nat(
    pre: Vec<OwnedRule>,
    post: Vec<OwnedRule>,
    user: Vec<(&'static str, Vec<OwnedRule>)>,
) -> Vec<OwnedChain> {
    let mut spec = vec![
        ("PREROUTING", Some(Policy::Accept), pre),
        ("INPUT", Some(Policy::Accept), vec![]),
        ("OUTPUT", Some(Policy::Accept), vec![]),
        ("POSTROUTING", Some(Policy::Accept), post),
    ];
    spec.extend(user.into_iter().map(|(n, r)| (n, None, r)));
    chains(spec)
}

/// A NAT action in the tail of a user chain is checked against every
/// hook the chain is reached from in the main table (jumps and gotos).
#[test]
fn check_tails_checks_nat_actions_against_the_hooks() {
    // U reached from PREROUTING and POSTROUTING; V from POSTROUTING only,
    // through a goto; W from nowhere.
    let main = nat(
        vec![jump("U")],
        vec![jump("U"), goto("V")],
        vec![("U", vec![log("u")]), ("V", vec![]), ("W", vec![])],
    );
    let mb = build(Table::Nat, &main);
    let m = CompiledTable::new(&mb).unwrap();
    let check = |name: &'static str, at: u32, rules: Vec<OwnedRule>| {
        let mut tails = chains(vec![(name, None, rules)]);
        tails[0].rules.last_mut().unwrap().0 = 500;
        let tb = build(Table::Nat, &tails);
        let t = CompiledTable::new(&tb).unwrap();
        check_tails(&m, &t, &[TailLink { chain: at, tail: 0 }])
            .map_err(|e| (e.field, e.chain, e.handle))
    };
    assert_eq!(
        check("U", 4, vec![log("t"), dnat()]),
        Err(("dnat", Some("U"), Some(500)))
    );
    assert_eq!(
        check("U", 4, vec![masquerade()]),
        Err(("masquerade", Some("U"), Some(500)))
    );
    assert_eq!(check("U", 4, vec![log("t")]), Ok(()));
    assert_eq!(check("V", 5, vec![masquerade()]), Ok(()));
    assert_eq!(
        check("V", 5, vec![dnat()]),
        Err(("dnat", Some("V"), Some(500)))
    );
    // A chain no built-in chain reaches takes any NAT action, as in the
    // main compile.
    assert_eq!(check("W", 6, vec![dnat(), masquerade()]), Ok(()));

    // Reached from PREROUTING only, U takes a dnat, and the verdict is
    // the whole compile's.
    let full = nat(
        vec![jump("U"), log("pre")],
        vec![],
        vec![("U", vec![log("u"), dnat()])],
    );
    for at in [
        [Some(1), None, None, None, Some(1)],
        [Some(1), Some(0), Some(0), Some(0), Some(0)],
    ] {
        let (v, events) = both(Table::Nat, &full, &at, Hook::PreRouting);
        assert!(
            matches!(v, Verdict::Nat(n) if n.kind == NatKind::Dnat),
            "{v:?}"
        );
        assert_eq!(events, vec![count(1), count(3), logged("u"), count(4)]);
    }

    // In the tail of a built-in chain, compiling the tails refuses it
    // (the tails' chain has the built-in chain's name).
    let tails = chains(vec![("POSTROUTING", Some(Policy::Accept), vec![dnat()])]);
    let e = compile(Table::Nat, &tails).unwrap_err();
    assert_eq!((e.field, e.chain), ("dnat", Some("POSTROUTING")));
}

/// Empty tails, and tails on a table without a chain at the hook.
#[test]
fn empty_tails_change_nothing() {
    let full = chains(vec![
        ("INPUT", Some(Policy::Drop), vec![log("a"), jump("X")]),
        ("X", None, vec![log("x")]),
    ]);
    for at in [[None, None], [Some(2), Some(1)], [Some(2), None]] {
        for hook in Hook::ALL {
            both(Table::Filter, &full, &at, hook);
        }
    }
    let none: [TailLink; 0] = [];
    let empty = build(Table::Filter, &[]);
    let main = build(Table::Filter, &full);
    let m = CompiledTable::new(&main).unwrap();
    let ts = Tails::new(&empty, &none).unwrap();
    assert_eq!(ts.table().n_chains(), 0);
    check_tails(&m, ts.table(), &none).unwrap();
    let mut e = TestEnv::new(1);
    assert_eq!(
        m.eval_with_tails(Hook::LocalIn, &tcp_packet(1), &mut e, &ts, None),
        Verdict::Drop
    );
    assert_eq!(e.events.len(), 6);
}

// ---------------------------------------------------------------------
// Corrupt tails.

/// One way of spoiling a valid tails buffer and its links.
#[derive(Clone, Debug)]
struct Spoil {
    flips: Vec<(prop::sample::Index, u8)>,
    /// Cut the buffer there, and say so in its header.
    truncate: Option<prop::sample::Index>,
    links: Option<Vec<(u32, u32)>>,
}

fn spoil() -> impl Strategy<Value = Spoil> {
    let small = prop_oneof![4 => 0u32..8, 1 => any::<u32>()];
    (
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        prop::option::weighted(0.3, any::<prop::sample::Index>()),
        prop::option::weighted(0.4, prop::collection::vec((small.clone(), small), 0..6)),
    )
        .prop_map(|(flips, truncate, links)| Spoil {
            flips,
            truncate,
            links,
        })
}

/// Evaluates every packet against `main` with tails from `buf` and
/// `links`, if `buf` has a header, and checks them; nothing may panic.
/// (`nth` 0 and an empty payload needle, which only a corrupt buffer
/// asks for, are answered by [`TestEnv`] as the kernel's environment
/// answers them: no hit, a hit.)
fn poke(
    main: &CompiledTable<'_>,
    buf: &[u8],
    links: &[TailLink],
    packets: &[(Hook, PacketFacts)],
    env: &TestEnv,
) {
    let Ok(tails) = Tails::new(buf, links) else {
        return;
    };
    let _ = check_tails(main, tails.table(), links);
    let _ = tails.table().chain_actions(0).count();
    let mut e = env.clone();
    for (h, f) in packets {
        let _ = main.eval_with_tails(*h, f, &mut e, &tails, None);
    }
}

/// Flipped bytes, truncations and random links: no panic.
#[test]
fn corrupt_tails_never_panic() {
    let strategy = (
        case(0..3, 0..8, 0..24, 1..8, true),
        prop::collection::vec(spoil(), 1..8),
    );
    property(
        48,
        4,
        strategy,
        |((table, full, cuts, order, packets, env), spoils)| {
            let s = split(table, &full, &cuts, order);
            let main_buf = compile(table, &s.main).unwrap();
            let main = CompiledTable::new(&main_buf).unwrap();
            let tail_buf = compile(table, &s.tails).unwrap();
            for sp in spoils {
                let mut buf = tail_buf.clone();
                for (i, b) in &sp.flips {
                    let i = i.index(buf.len());
                    buf[i] = *b;
                }
                // (An empty tails table is a header only.)
                if let Some(at) = sp.truncate.filter(|_| buf.len() > layout::HDR_LEN) {
                    let n = layout::HDR_LEN + at.index(buf.len() - layout::HDR_LEN);
                    buf.truncate(n);
                    // Without the header saying so, it is refused.
                    if sp.flips.is_empty() {
                        prop_assert!(Tails::new(&buf, &s.links).is_err());
                    }
                    buf[layout::H_TOTAL..layout::H_TOTAL + 4]
                        .copy_from_slice(&(n as u32).to_le_bytes());
                }
                let links: Vec<TailLink> = match &sp.links {
                    Some(l) => l
                        .iter()
                        .map(|&(chain, tail)| TailLink { chain, tail })
                        .collect(),
                    None => s.links.clone(),
                };
                poke(&main, &buf, &links, &packets, &env);
            }
            Ok(())
        },
    );
}

/// Random bytes as tails, half of them behind a valid header of the
/// main table's table: no panic.
#[test]
fn arbitrary_tails_never_panic() {
    let full = chains(vec![
        ("INPUT", Some(Policy::Accept), vec![jump("X"), log("in")]),
        ("FORWARD", Some(Policy::Drop), vec![goto("X")]),
        ("OUTPUT", Some(Policy::Accept), vec![]),
        ("X", None, vec![log("x")]),
    ]);
    let main_buf = build(Table::Filter, &full);
    let main = CompiledTable::new(&main_buf).unwrap();
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..768),
        prop::collection::vec((0u32..6, 0u32..6), 0..5),
        prop::option::weighted(0.8, Just(Table::Filter as u8)),
        prop::collection::vec((hook(), packet()), 1..6),
        env(),
    );
    property(
        256,
        1,
        strategy,
        |(mut buf, links, table_byte, packets, env)| {
            if buf.len() >= layout::HDR_LEN && buf[0] & 1 == 0 {
                buf[..4].copy_from_slice(&layout::MAGIC);
                buf[4] = layout::VERSION;
                buf[layout::H_TABLE] = table_byte.unwrap_or(buf[layout::H_TABLE]);
                let n = buf.len() as u32;
                buf[layout::H_TOTAL..layout::H_TOTAL + 4].copy_from_slice(&n.to_le_bytes());
                // A small chain count, so that links find chains (the rule
                // count stays random: it scales the evaluator's step bound).
                let chains = u32::from(buf[layout::H_CHAINS] % 5);
                buf[layout::H_CHAINS..layout::H_CHAINS + 4].copy_from_slice(&chains.to_le_bytes());
            }
            let links: Vec<TailLink> = links
                .into_iter()
                .map(|(chain, tail)| TailLink { chain, tail })
                .collect();
            poke(&main, &buf, &links, &packets, &env);
            let mut sorted = links.clone();
            sorted.sort();
            sorted.dedup_by_key(|l| l.chain);
            poke(&main, &buf, &sorted, &packets, &env);
            Ok(())
        },
    );
}
