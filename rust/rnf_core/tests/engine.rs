// SPDX-License-Identifier: GPL-2.0-only

//! The compiled evaluator against the reference interpreter on random rule
//! sets and packets; compile-time checks (loops, depth, names); robustness
//! of the evaluator on corrupt buffers.

mod common;

use common::gen::*;
use common::*;
use proptest::prelude::*;
use rnf_core::ct::CtState;
use rnf_core::eval::{eval, CompiledTable, Verdict};
use rnf_core::hooks::{Family, Hook};
use rnf_core::nat::{range_flag, NatAction, NatKind, NatRange};
use rnf_core::packet::{PacketFacts, IPPROTO_TCP};
use rnf_core::rules::{
    Cidr, CtMarkOp, CtStateMatch, MarkMatch, MarkOp, Policy, PortRange, RejectKind, Table,
    RANDOM_ALWAYS,
};

#[derive(Clone, Debug)]
enum ActionChoice {
    Fixed(OwnedAction),
    Jump(usize),
    Goto(usize),
}

fn action() -> impl Strategy<Value = ActionChoice> {
    prop_oneof![
        3 => Just(ActionChoice::Fixed(OwnedAction::Accept)),
        3 => Just(ActionChoice::Fixed(OwnedAction::Drop)),
        1 => prop::sample::select(RejectKind::ALL.to_vec())
            .prop_map(|k| ActionChoice::Fixed(OwnedAction::Reject(k))),
        2 => Just(ActionChoice::Fixed(OwnedAction::Return)),
        3 => any::<usize>().prop_map(ActionChoice::Jump),
        2 => any::<usize>().prop_map(ActionChoice::Goto),
        2 => (prop::sample::select(vec!["", "IN ", "drop: "]), 0u8..8)
            .prop_map(|(p, l)| ActionChoice::Fixed(OwnedAction::Log(p.to_string(), l))),
        2 => (prop::sample::select(vec![MarkOp::Set, MarkOp::Xor, MarkOp::And, MarkOp::Or]), 0u32..4)
            .prop_map(|(op, v)| ActionChoice::Fixed(OwnedAction::Mark(op, v))),
        2 => (prop::sample::select(CtMarkOp::ALL.to_vec()), 0u32..4, prop::sample::select(vec![u32::MAX, 3, 0xf0]))
            .prop_map(|(op, v, mask)| {
                let mask = if op.has_mask() { mask } else { u32::MAX };
                let v = if op.has_value() { v & mask } else { 0 };
                ActionChoice::Fixed(OwnedAction::CtMark(op, v, mask))
            }),
    ]
}

/// A filter table: the three built-ins, then `n_user` user chains. Jumps
/// and gotos go from a chain to a user chain after it (no loops) when
/// `acyclic`, anywhere otherwise.
fn rule_set(
    n_user: std::ops::Range<usize>,
    rules_per_chain: std::ops::Range<usize>,
    acyclic: bool,
) -> impl Strategy<Value = Vec<OwnedChain>> {
    (n_user, any::<[bool; 3]>()).prop_flat_map(move |(n_user, policies)| {
        let n = 3 + n_user;
        prop::collection::vec(
            prop::collection::vec((rule_matches(), action()), rules_per_chain.clone()),
            n,
        )
        .prop_map(move |chains| {
            let names: Vec<String> = ["INPUT", "FORWARD", "OUTPUT"]
                .iter()
                .map(|s| s.to_string())
                .chain((0..n_user).map(|i| format!("user{i}")))
                .collect();
            let mut counter = 0u32;
            let mut handle = 100u64;
            chains
                .into_iter()
                .enumerate()
                .map(|(i, rules)| {
                    let rules = rules
                        .into_iter()
                        .map(|(m, a)| {
                            let target = |x: usize| -> Option<String> {
                                let lo = if acyclic { (i + 1).max(3) } else { 3 };
                                (lo < n).then(|| names[lo + x % (n - lo)].clone())
                            };
                            let action = match a {
                                ActionChoice::Fixed(a) => a,
                                ActionChoice::Jump(x) => {
                                    target(x).map_or(OwnedAction::Drop, OwnedAction::Jump)
                                }
                                ActionChoice::Goto(x) => {
                                    target(x).map_or(OwnedAction::Accept, OwnedAction::Goto)
                                }
                            };
                            let r = fix(OwnedRule { action, ..m });
                            counter += 1;
                            handle += 1;
                            (handle, counter, r.encode())
                        })
                        .collect();
                    counter += 1;
                    OwnedChain {
                        name: names[i].clone(),
                        policy: (i < 3).then(|| {
                            if policies[i] {
                                Policy::Accept
                            } else {
                                Policy::Drop
                            }
                        }),
                        policy_counter: counter,
                        rules,
                    }
                })
                .collect()
        })
    })
}

/// Runs every packet through both interpreters with equal environments
/// that live across packets (so nth and limit state carries over), and
/// checks they agree on verdicts and on every call into the environment.
fn agree(chains: &[OwnedChain], packets: &[(Hook, PacketFacts)], env: &TestEnv) {
    agree_in(Table::Filter, chains, packets, env);
}

fn agree_in(table: Table, chains: &[OwnedChain], packets: &[(Hook, PacketFacts)], env: &TestEnv) {
    let compiled = compile(table, chains).expect("acyclic rule set compiles");
    let table = CompiledTable::new(&compiled).expect("header");
    let mut e_ref = env.clone();
    let mut e_cmp = env.clone();
    let mut e_aft = env.clone();
    for (hook, f) in packets {
        e_ref.mark = env.mark;
        e_cmp.mark = env.mark;
        e_aft.mark = env.mark;
        e_ref.events.clear();
        e_cmp.events.clear();
        e_aft.events.clear();
        let state = e_ref.ct_state;
        let want = ref_eval(chains, *hook, f, &mut e_ref);
        // The kernel's shortcut for a leading `ct state ... accept`.
        if let Some(r) = table.state_accept(*hook) {
            if r.matches(state) {
                assert_eq!(want, Verdict::Accept, "{r:?} for {f:?} at {hook:?}");
                assert_eq!(e_ref.events, [Event::Count(r.counter, f.total_len)]);
            }
        }
        let got = table.eval(*hook, f, &mut e_cmp);
        assert_eq!(got, want, "verdict for {f:?} at {hook:?}");
        assert_eq!(e_cmp.events, e_ref.events, "environment calls for {f:?}");
        assert_eq!(e_cmp.mark, e_ref.mark);
        assert_eq!(e_cmp.flow, e_ref.flow);
        assert_eq!(e_cmp.ct_state, e_ref.ct_state);
        // The kernel's evaluation past that rule, given it.
        let first = table.state_accept(*hook);
        let got = table.eval_after(*hook, f, &mut e_aft, first.as_ref());
        assert_eq!(got, want, "verdict after {first:?} for {f:?} at {hook:?}");
        assert_eq!(e_aft.events, e_ref.events, "environment calls for {f:?}");
        assert_eq!(e_aft.mark, e_ref.mark);
        assert_eq!(e_aft.flow, e_ref.flow);
        assert_eq!(e_aft.ct_state, e_ref.ct_state);
    }
}

/// A leading rule for [`state_accept_is_the_first_rule`]: `ct state`, with
/// another match or another action now and then.
fn leading_state_rule() -> impl Strategy<Value = (OwnedRule, bool)> {
    (
        (1u8..=u8::MAX, any::<bool>()),
        0u8..4,
        prop_oneof![3 => Just(OwnedAction::Accept), 1 => Just(OwnedAction::Drop)],
        rule_matches(),
    )
        .prop_map(|((bits, negated), extra, action, other)| {
            let accept = matches!(action, OwnedAction::Accept);
            let mut r = OwnedRule {
                ct_state: Some(CtStateMatch {
                    states: match bits & CtState::ALL.0 {
                        0 => CtState::ESTABLISHED,
                        b => CtState(b),
                    },
                    negated,
                }),
                action,
                ..OwnedRule::default()
            };
            match extra {
                1 => r.family = Some(Family::Ipv4),
                2 => r.proto = Some(IPPROTO_TCP),
                3 => {
                    r.mark = other.mark.or(Some(MarkMatch {
                        value: 0,
                        mask: 0,
                        negated: false,
                    }))
                }
                _ => {}
            }
            (fix(r), accept && extra == 0)
        })
}

/// A rule that has a flat form (see `rnf_core::compile`): family,
/// protocol, one address or prefix per side, one port range per side,
/// ct state; accept, drop or reject. Now and then (the `bool`) one with
/// something more, which keeps its chain walked as records.
fn flat_or_not_rule() -> impl Strategy<Value = (OwnedRule, bool)> {
    let states = prop::sample::select(CtState::NAMES.iter().map(|(_, s)| *s).collect::<Vec<_>>());
    (
        (
            opt(prop::sample::select(vec![Family::Ipv4, Family::Ipv6])),
            opt(prop::sample::select(PROTOS.to_vec())),
            opt((any::<bool>(), cidr())),
            opt((any::<bool>(), cidr())),
            opt((any::<bool>(), port_range())),
            opt((any::<bool>(), port_range())),
            opt((states, any::<bool>())),
        ),
        prop_oneof![
            3 => Just(OwnedAction::Accept),
            3 => Just(OwnedAction::Drop),
            1 => prop::sample::select(RejectKind::ALL.to_vec()).prop_map(OwnedAction::Reject),
        ],
        0u8..12,
    )
        .prop_map(|((family, proto, sa, da, sp, dp, ct), action, extra)| {
            let one = |l: Option<(bool, Cidr)>| l.map(|(n, c)| (n, vec![c]));
            let mut r = OwnedRule {
                family,
                proto,
                saddr: one(sa),
                daddr: one(da),
                sport: sp.map(|(n, p)| (n, vec![p])),
                dport: dp.map(|(n, p)| (n, vec![p])),
                ct_state: ct.map(|(states, negated)| CtStateMatch { states, negated }),
                action,
                ..Default::default()
            };
            // Something the flat form does not hold.
            let more = match extra {
                0 => {
                    r.iif = Some(("eth0".into(), false, false));
                    true
                }
                1 => {
                    r.mark = Some(MarkMatch {
                        value: 1,
                        mask: 1,
                        negated: false,
                    });
                    true
                }
                2 => {
                    r.action = OwnedAction::Log(String::new(), 4);
                    true
                }
                _ => false,
            };
            let r = fix(r);
            // `fix` may have dropped the address of another family, or
            // the ports of a protocol without them.
            (r, more)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// `state_accept` finds a built-in chain's first rule exactly when it
    /// is `ct state ... accept` and nothing else, and then (checked in
    /// `agree`) a packet in a state it matches is accepted and counted by
    /// that rule alone, as the reference says.
    #[test]
    fn state_accept_is_the_first_rule(
        mut chains in rule_set(0..3, 0..5, true),
        (lead, plain) in leading_state_rule(),
        at in 0usize..3,
        packets in prop::collection::vec((hook(), packet()), 1..12),
        env in env(),
    ) {
        chains[at].rules.insert(0, (1, 0, lead.encode()));
        let compiled = compile(Table::Filter, &chains).expect("acyclic rule set compiles");
        let table = CompiledTable::new(&compiled).expect("header");
        let hook = [Hook::LocalIn, Hook::Forward, Hook::LocalOut][at];
        prop_assert_eq!(table.state_accept(hook).is_some(), plain);
        agree(&chains, &packets, &env);
    }

    /// Built-in chains of fewer than 16 rules that all have a flat form
    /// are compiled to it (and others not), and it decides as the
    /// reference does, with the same counts, from the first rule and past
    /// a leading `ct state ... accept`.
    #[test]
    fn flat_chains_agree_with_reference(
        input in prop::collection::vec(flat_or_not_rule(), 0..18),
        forward in prop::collection::vec(flat_or_not_rule(), 1..6),
        policies in (any::<bool>(), any::<bool>()),
        packets in prop::collection::vec((hook(), packet()), 1..24),
        env in env(),
    ) {
        let policy = |drop: bool| Some(if drop { Policy::Drop } else { Policy::Accept });
        let rules = |v: &[(OwnedRule, bool)]| v.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>();
        let chains = vec![
            OwnedChain::of("INPUT", policy(policies.0), 100, &rules(&input)),
            OwnedChain::of("FORWARD", policy(policies.1), 101, &rules(&forward)),
        ];
        let compiled = compile(Table::Filter, &chains).expect("rule set compiles");
        let table = CompiledTable::new(&compiled).expect("header");
        for (hook, v) in [(Hook::LocalIn, &input), (Hook::Forward, &forward)] {
            let flat = v.len() < 16 && v.iter().all(|(r, more)| {
                // One address per side survives `fix` only with the rule's family.
                !more && [&r.saddr, &r.daddr].iter().all(|l| {
                    l.as_ref().map_or(true, |(_, c)| c.len() == 1 && Some(c[0].family) == r.family)
                })
            });
            prop_assert_eq!(table.is_flat(hook), flat, "{:?}", hook);
        }
        agree(&chains, &packets, &env);
    }

    #[test]
    fn compiled_agrees_with_reference_small(
        chains in rule_set(0..5, 0..8, true),
        packets in prop::collection::vec((hook(), packet()), 1..24),
        env in env(),
    ) {
        agree(&chains, &packets, &env);
    }

    #[test]
    fn loops_and_depth_are_refused_exactly_when_the_reference_says(
        chains in rule_set(1..6, 0..5, false),
    ) {
        let got = compile(Table::Filter, &chains);
        prop_assert_eq!(got.is_ok(), ref_graph_ok(&chains), "{:?}", got.err());
        if let Err(e) = got {
            let name = e.chain.expect("a loop names a chain");
            prop_assert!(chains.iter().any(|c| c.name == name));
        }
    }

    #[test]
    fn corrupt_buffers_never_panic(
        chains in rule_set(0..4, 0..6, true),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        packets in prop::collection::vec((hook(), packet()), 1..8),
        env in env(),
    ) {
        let mut buf = compile(Table::Filter, &chains).unwrap();
        for (i, b) in flips {
            let i = i.index(buf.len());
            buf[i] = b;
        }
        let mut e = env;
        for (h, f) in &packets {
            let _ = eval(&buf, *h, f, &mut e);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        mut buf in prop::collection::vec(any::<u8>(), 0..512),
        f in packet(),
        h in hook(),
    ) {
        // Give half of the cases a valid header so the walk gets further.
        if buf.len() >= 64 && buf[0] & 1 == 0 {
            buf[..4].copy_from_slice(b"RNFc");
            buf[4] = rnf_core::compile::layout::VERSION;
            buf[5] = 3;
            let n = buf.len() as u32;
            buf[8..12].copy_from_slice(&n.to_le_bytes());
        }
        let _ = eval(&buf, h, &f, &mut TestEnv::new(1));
    }
}

// ---------------------------------------------------------------------
// The nat table: NAT verdicts are terminal, and hook-bound.

#[derive(Clone, Debug)]
enum NatTableAction {
    Plain(ActionChoice),
    Nat(NatChoice),
}

/// Actions of the nat table: no drop or reject.
fn nat_table_action() -> impl Strategy<Value = NatTableAction> {
    prop_oneof![
        3 => nat_choice().prop_map(NatTableAction::Nat),
        4 => action()
            .prop_filter("the nat table does not filter", |a| !matches!(
                a,
                ActionChoice::Fixed(OwnedAction::Drop | OwnedAction::Reject(_))
            ))
            .prop_map(NatTableAction::Plain),
    ]
}

/// A nat table: the four built-ins (policy accept), then `n_user` user
/// chains, jumps and gotos only forward (no loops). With `fit`, each NAT
/// action gets a kind allowed at every hook its chain is reached from (or
/// becomes accept when none is); without, a random kind.
fn nat_rule_set(
    n_user: std::ops::Range<usize>,
    rules_per_chain: std::ops::Range<usize>,
    fit: bool,
) -> impl Strategy<Value = Vec<OwnedChain>> {
    n_user.prop_flat_map(move |n_user| {
        let n = 4 + n_user;
        prop::collection::vec(
            prop::collection::vec(
                (rule_matches(), nat_table_action()),
                rules_per_chain.clone(),
            ),
            n,
        )
        .prop_map(move |chains| {
            let names: Vec<String> = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
                .iter()
                .map(|s| s.to_string())
                .chain((0..n_user).map(|i| format!("user{i}")))
                .collect();
            // First the graph, with NAT actions left as accept.
            let mut counter = 0u32;
            let mut handle = 100u64;
            let mut pending = Vec::new();
            let mut out: Vec<OwnedChain> = chains
                .into_iter()
                .enumerate()
                .map(|(i, rules)| {
                    let rules = rules
                        .into_iter()
                        .enumerate()
                        .map(|(k, (m, a))| {
                            let target = |x: usize| -> Option<String> {
                                let lo = (i + 1).max(4);
                                (lo < n).then(|| names[lo + x % (n - lo)].clone())
                            };
                            let action = match a {
                                NatTableAction::Plain(ActionChoice::Fixed(a)) => a,
                                NatTableAction::Plain(ActionChoice::Jump(x)) => {
                                    target(x).map_or(OwnedAction::Accept, OwnedAction::Jump)
                                }
                                NatTableAction::Plain(ActionChoice::Goto(x)) => {
                                    target(x).map_or(OwnedAction::Return, OwnedAction::Goto)
                                }
                                NatTableAction::Nat(c) => {
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
                    OwnedChain {
                        name: names[i].clone(),
                        policy: (i < 4).then_some(Policy::Accept),
                        policy_counter: counter,
                        rules,
                    }
                })
                .collect();
            // Then the NAT actions, for the hooks their chains are
            // reached from.
            let hooks = ref_chain_hooks(Table::Nat, &out);
            for (i, k, m, c) in pending {
                let allowed = if fit {
                    nat_kinds_at(hooks[i])
                } else {
                    NAT_KINDS.to_vec()
                };
                let r = pick_nat(&allowed, &c, m, OwnedAction::Accept);
                out[i].rules[k].2 = r.encode();
            }
            out
        })
    })
}

fn nat_hook() -> impl Strategy<Value = Hook> {
    prop::sample::select(Table::Nat.hooks().to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// First-match semantics with NAT verdicts: the compiled nat table and
    /// the reference interpreter agree on every verdict (the NAT action
    /// and its range included) and every call into the environment.
    #[test]
    fn nat_table_agrees_with_reference(
        chains in nat_rule_set(0..5, 0..8, true),
        packets in prop::collection::vec((nat_hook(), packet()), 1..24),
        env in env(),
    ) {
        agree_in(Table::Nat, &chains, &packets, &env);
    }

    #[test]
    fn corrupt_nat_tables_never_panic(
        chains in nat_rule_set(0..4, 0..6, true),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        packets in prop::collection::vec((nat_hook(), packet()), 1..8),
        env in env(),
    ) {
        let mut buf = compile(Table::Nat, &chains).unwrap();
        for (i, b) in flips {
            let i = i.index(buf.len());
            buf[i] = b;
        }
        let mut e = env;
        for (h, f) in &packets {
            let _ = eval(&buf, *h, f, &mut e);
        }
    }

    /// A NAT action in a chain reached from a hook where it cannot run is
    /// refused exactly when the reference says so, naming the chain and
    /// the rule.
    #[test]
    fn nat_hooks_are_refused_exactly_when_the_reference_says(
        chains in nat_rule_set(1..5, 0..5, false),
    ) {
        let got = compile(Table::Nat, &chains);
        prop_assert_eq!(got.is_ok(), ref_nat_hooks_ok(Table::Nat, &chains), "{:?}", got.err());
        if let Err(e) = got {
            prop_assert!(["snat", "dnat", "masquerade", "redirect"].contains(&e.field), "{}", e);
            let name = e.chain.expect("names the chain");
            let c = chains.iter().find(|c| c.name == name).unwrap();
            prop_assert!(c.rules.iter().any(|r| Some(r.0) == e.handle));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn compiled_agrees_with_reference_thousands_of_rules(
        chains in rule_set(6..10, 250..400, true),
        packets in prop::collection::vec((hook(), packet()), 50..100),
        env in env(),
    ) {
        let n: usize = chains.iter().map(|c| c.rules.len()).sum();
        prop_assert!(n >= 2000, "{} rules", n);
        agree(&chains, &packets, &env);
    }
}

// ---------------------------------------------------------------------
// Hand-written cases.

fn chain(name: &str, policy: Option<Policy>, rules: Vec<OwnedRule>) -> OwnedChain {
    OwnedChain::of(name, policy, 999, &rules)
}

#[test]
fn jump_return_goto_and_policy() {
    let port = |p: u16, a| OwnedRule {
        proto: Some(IPPROTO_TCP),
        dport: Some((false, vec![PortRange { lo: p, hi: p }])),
        action: a,
        ..Default::default()
    };
    let chains = vec![
        chain(
            "INPUT",
            Some(Policy::Drop),
            vec![
                rule(OwnedAction::Jump("web".into())),
                port(25, OwnedAction::Goto("mail".into())),
                port(22, OwnedAction::Accept),
            ],
        ),
        chain(
            "web",
            None,
            vec![
                port(80, OwnedAction::Accept),
                port(443, OwnedAction::Reject(RejectKind::TcpReset)),
                rule(OwnedAction::Return),
            ],
        ),
        chain("mail", None, vec![rule(OwnedAction::Mark(MarkOp::Set, 7))]),
    ];
    let buf = compile(Table::Filter, &chains).unwrap();
    let run = |p: u16| {
        let mut e = TestEnv::new(1);
        let v = eval(&buf, Hook::LocalIn, &tcp_packet(p), &mut e);
        (v, e.mark)
    };
    assert_eq!(run(80), (Verdict::Accept, 0));
    assert_eq!(run(443), (Verdict::Reject(RejectKind::TcpReset), 0));
    assert_eq!(run(22), (Verdict::Accept, 0)); // back from web, then rule 3
    assert_eq!(run(25), (Verdict::Drop, 7)); // goto mail, end of mail: policy
    assert_eq!(run(9999), (Verdict::Drop, 0)); // policy
                                               // No filter chain on PREROUTING: accept.
    let mut e = TestEnv::new(1);
    assert_eq!(
        eval(&buf, Hook::PreRouting, &tcp_packet(1), &mut e),
        Verdict::Accept
    );
    let t = CompiledTable::new(&buf).unwrap();
    assert_eq!(t.n_chains(), 3);
    assert_eq!(t.n_rules(), 7);
    let c = t.chain(0).unwrap();
    assert_eq!(c.name, "INPUT");
    assert_eq!(c.hook, Some(Hook::LocalIn));
    assert_eq!(c.policy, Some(Policy::Drop));
    assert_eq!(c.depth, 1);
    assert_eq!(t.chain(1).unwrap().hook, None);
}

#[test]
fn counters_and_policy_counter() {
    let chains = vec![chain(
        "OUTPUT",
        Some(Policy::Accept),
        vec![rule(OwnedAction::Log("x".into(), 4))],
    )];
    let buf = compile(Table::Filter, &chains).unwrap();
    let mut e = TestEnv::new(1);
    assert_eq!(
        eval(&buf, Hook::LocalOut, &tcp_packet(1), &mut e),
        Verdict::Accept
    );
    assert_eq!(
        e.events,
        vec![
            Event::Count(1, 60),
            Event::Log(b"x".to_vec(), 4),
            Event::Count(999, 60)
        ]
    );
}

#[test]
fn depth_limit_is_exactly_sixteen() {
    let build = |n: usize| {
        let mut chains = vec![chain(
            "INPUT",
            Some(Policy::Accept),
            vec![rule(OwnedAction::Jump("c0".into()))],
        )];
        for i in 0..n {
            let next = if i + 1 < n {
                rule(OwnedAction::Jump(format!("c{}", i + 1)))
            } else {
                rule(OwnedAction::Drop)
            };
            chains.push(chain(&format!("c{i}"), None, vec![next]));
        }
        chains
    };
    let ok = build(16);
    let buf = compile(Table::Filter, &ok).unwrap();
    let mut e = TestEnv::new(1);
    assert_eq!(
        eval(&buf, Hook::LocalIn, &tcp_packet(1), &mut e),
        Verdict::Drop
    );
    let deep = build(17);
    let e = compile(Table::Filter, &deep).unwrap_err();
    assert_eq!(e.chain, Some("INPUT"));
    assert!(e.message.contains("deeper than 16"), "{e}");
}

#[test]
fn loops_name_the_chain() {
    let chains = vec![
        chain(
            "INPUT",
            Some(Policy::Accept),
            vec![rule(OwnedAction::Jump("a".into()))],
        ),
        chain("a", None, vec![rule(OwnedAction::Goto("b".into()))]),
        chain("b", None, vec![rule(OwnedAction::Jump("a".into()))]),
    ];
    let e = compile(Table::Filter, &chains).unwrap_err();
    assert_eq!(e.chain, Some("a"));
    assert_eq!(
        e.to_string(),
        "chain 'a': this chain can reach itself through jump or goto"
    );
}

#[test]
fn chain_set_errors() {
    let c = |name: &str, p| chain(name, p, vec![]);
    let cases: Vec<(Vec<OwnedChain>, &str)> = vec![
        (vec![c("INPUT", None)], "a built-in chain needs a policy"),
        (
            vec![c("PREROUTING", Some(Policy::Accept))],
            "the table has no such built-in chain",
        ),
        (
            vec![c("x", Some(Policy::Accept))],
            "only built-in chains have a policy",
        ),
        (
            vec![c("x", None), c("x", None)],
            "two chains have this name",
        ),
        (
            vec![chain(
                "INPUT",
                Some(Policy::Accept),
                vec![rule(OwnedAction::Jump("nope".into()))],
            )],
            "jump or goto to a chain that does not exist in this table",
        ),
        (vec![c("bad name", None)], "chain: a name has only letters"),
    ];
    for (chains, want) in cases {
        let e = compile(Table::Filter, &chains).unwrap_err();
        assert!(e.message.starts_with(want), "{e} / {want}");
    }
    // A bad rule blob names its chain and handle.
    let chains = vec![OwnedChain {
        name: "INPUT".into(),
        policy: Some(Policy::Accept),
        policy_counter: 0,
        rules: vec![(42, 0, vec![1, 2, 3])],
    }];
    let e = compile(Table::Filter, &chains).unwrap_err();
    assert_eq!((e.chain, e.handle), (Some("INPUT"), Some(42)));
}

#[test]
fn empty_table_and_small_buffer() {
    let buf = compile(Table::Nat, &[]).unwrap();
    let mut e = TestEnv::new(1);
    assert_eq!(
        eval(&buf, Hook::PreRouting, &tcp_packet(1), &mut e),
        Verdict::Accept
    );
    let chains = vec![chain("INPUT", Some(Policy::Drop), vec![])];
    let n = rnf_core::compile::measure(Table::Filter, specs(&chains)).unwrap();
    let mut small = vec![0u8; n - 1];
    assert!(rnf_core::compile::fill(Table::Filter, specs(&chains), &mut small).is_err());
    // A buffer from another layout version is refused, and drops.
    let mut buf = compile(Table::Filter, &chains).unwrap();
    buf[4] = 99;
    assert!(CompiledTable::new(&buf).is_err());
    let mut e = TestEnv::new(1);
    assert_eq!(
        eval(&buf, Hook::LocalIn, &tcp_packet(1), &mut e),
        Verdict::Drop
    );
}

// ---------------------------------------------------------------------
// NAT by hand.

fn v4_range(a: [u8; 4], b: [u8; 4]) -> NatRange {
    NatRange::addrs(Family::Ipv4, addr16(a), addr16(b))
}

fn dnat_tcp(to: [u8; 4], port: u16) -> OwnedRule {
    OwnedRule {
        family: Some(Family::Ipv4),
        proto: Some(IPPROTO_TCP),
        action: OwnedAction::Nat(NatAction {
            kind: NatKind::Dnat,
            range: v4_range(to, to).with_ports(port, port),
        }),
        ..Default::default()
    }
}

fn nat_chains(
    pre: Vec<OwnedRule>,
    post: Vec<OwnedRule>,
    user: &[(&str, Vec<OwnedRule>)],
) -> Vec<OwnedChain> {
    let mut chains = vec![
        chain("PREROUTING", Some(Policy::Accept), pre),
        chain("INPUT", Some(Policy::Accept), vec![]),
        chain("OUTPUT", Some(Policy::Accept), vec![]),
        chain("POSTROUTING", Some(Policy::Accept), post),
    ];
    for (name, rules) in user {
        chains.push(chain(name, None, rules.clone()));
    }
    chains
}

fn v6_tcp_packet(dport: u16) -> PacketFacts {
    PacketFacts {
        family: Family::Ipv6,
        src: V6[0],
        dst: V6[1],
        l4_offset: 40,
        ..tcp_packet(dport)
    }
}

#[test]
fn nat_verdicts_are_terminal_and_per_family() {
    let port = |p: u16, r: OwnedRule| OwnedRule {
        dport: Some((false, vec![PortRange { lo: p, hi: p }])),
        ..r
    };
    let masq = OwnedRule {
        action: OwnedAction::Nat(NatAction {
            kind: NatKind::Masquerade,
            range: NatRange::empty(Family::Ipv4).with_flags(range_flag::FULLY_RANDOM),
        }),
        ..Default::default()
    };
    let chains = nat_chains(
        vec![
            rule(OwnedAction::Log("nat ".into(), 6)),
            port(80, dnat_tcp([10, 0, 2, 2], 8080)),
            // Never reached for port 80: the dnat before decided.
            port(80, dnat_tcp([10, 0, 2, 3], 8080)),
            port(22, rule(OwnedAction::Accept)),
            port(22, dnat_tcp([10, 0, 2, 4], 22)),
        ],
        vec![masq],
        &[],
    );
    let buf = compile(Table::Nat, &chains).unwrap();
    let run = |hook, f: &PacketFacts| eval(&buf, hook, f, &mut TestEnv::new(1));
    let want = NatAction {
        kind: NatKind::Dnat,
        range: v4_range([10, 0, 2, 2], [10, 0, 2, 2]).with_ports(8080, 8080),
    };
    assert_eq!(run(Hook::PreRouting, &tcp_packet(80)), Verdict::Nat(want));
    // accept ends the lookup without a translation.
    assert_eq!(run(Hook::PreRouting, &tcp_packet(22)), Verdict::Accept);
    assert_eq!(run(Hook::PreRouting, &tcp_packet(443)), Verdict::Accept);
    // An IPv4 dnat never answers an IPv6 packet.
    assert_eq!(run(Hook::PreRouting, &v6_tcp_packet(80)), Verdict::Accept);
    // Masquerade has no address; its range takes the packet's family.
    for f in [tcp_packet(1), v6_tcp_packet(1)] {
        match run(Hook::PostRouting, &f) {
            Verdict::Nat(n) => {
                assert_eq!(n.kind, NatKind::Masquerade);
                assert_eq!(n.range.family, f.family);
                assert_eq!(n.range.flags, range_flag::FULLY_RANDOM);
                let local = if f.family == Family::Ipv4 {
                    addr16([192, 0, 2, 1])
                } else {
                    V6[2]
                };
                let r = n.range.resolve(n.kind, local);
                assert!(r.has(range_flag::MAP_IPS) && r.contains_addr(&local));
            }
            v => panic!("{v:?}"),
        }
    }
    // The log before the dnat ran and the counters of the matching rules.
    let mut e = TestEnv::new(1);
    eval(&buf, Hook::PreRouting, &tcp_packet(80), &mut e);
    assert_eq!(
        e.events,
        vec![
            Event::Count(1, 60),
            Event::Log(b"nat ".to_vec(), 6),
            Event::Count(2, 60)
        ]
    );
}

#[test]
fn service_load_balancing_like_kube_proxy() {
    let svc = OwnedRule {
        family: Some(Family::Ipv4),
        proto: Some(IPPROTO_TCP),
        daddr: Some((
            false,
            vec![Cidr::new(Family::Ipv4, addr16([10, 96, 0, 10]), 32).unwrap()],
        )),
        dport: Some((false, vec![PortRange { lo: 80, hi: 80 }])),
        action: OwnedAction::Jump("SVC".into()),
        ..Default::default()
    };
    let backends = [[10, 0, 2, 2], [10, 0, 2, 3], [10, 0, 2, 4]];
    let spread = |first: OwnedRule, second: OwnedRule| {
        let rules = vec![
            OwnedRule { ..first },
            OwnedRule { ..second },
            dnat_tcp(backends[2], 8080),
        ];
        nat_chains(vec![svc.clone()], vec![], &[("SVC", rules)])
    };
    let to = |p: PacketFacts| PacketFacts {
        dst: addr16([10, 96, 0, 10]),
        ..p
    };
    let count = |chains: &[OwnedChain], n: usize| {
        let buf = compile(Table::Nat, chains).unwrap();
        let mut e = TestEnv::new(7);
        let mut e_ref = TestEnv::new(7);
        let mut hits = [0usize; 3];
        for _ in 0..n {
            let f = to(tcp_packet(80));
            let v = eval(&buf, Hook::PreRouting, &f, &mut e);
            assert_eq!(v, ref_eval(chains, Hook::PreRouting, &f, &mut e_ref));
            let Verdict::Nat(NatAction {
                kind: NatKind::Dnat,
                range,
            }) = v
            else {
                panic!("{v:?}");
            };
            let i = backends
                .iter()
                .position(|b| addr16(*b) == range.min_addr)
                .unwrap();
            assert_eq!((range.min_port, range.max_port), (8080, 8080));
            hits[i] += 1;
        }
        // Other destinations and IPv6 are not translated.
        assert_eq!(
            eval(&buf, Hook::PreRouting, &tcp_packet(80), &mut e),
            Verdict::Accept
        );
        assert_eq!(
            eval(&buf, Hook::PreRouting, &to(v6_tcp_packet(80)), &mut e),
            Verdict::Accept
        );
        hits
    };
    // nth: every third connection to the first, every second of the rest
    // to the second, the others to the third.
    let chains = spread(
        OwnedRule {
            nth: Some(3),
            ..dnat_tcp(backends[0], 8080)
        },
        OwnedRule {
            nth: Some(2),
            ..dnat_tcp(backends[1], 8080)
        },
    );
    assert_eq!(count(&chains, 6), [2, 2, 2]);
    // random: 1/3, then 1/2 of the rest.
    let chains = spread(
        OwnedRule {
            random: Some(RANDOM_ALWAYS / 3),
            ..dnat_tcp(backends[0], 8080)
        },
        OwnedRule {
            random: Some(RANDOM_ALWAYS / 2),
            ..dnat_tcp(backends[1], 8080)
        },
    );
    let hits = count(&chains, 3000);
    assert!(hits.iter().all(|h| (850..1150).contains(h)), "{hits:?}");
}

#[test]
fn nat_actions_in_user_chains_are_checked_against_their_hooks() {
    let dnat = dnat_tcp([10, 0, 2, 2], 80);
    let masq = OwnedRule {
        action: OwnedAction::Nat(NatAction {
            kind: NatKind::Masquerade,
            range: NatRange::empty(Family::Ipv4),
        }),
        ..Default::default()
    };
    // Reached from PREROUTING only (through a goto too): fine.
    let ok = nat_chains(
        vec![rule(OwnedAction::Jump("A".into()))],
        vec![],
        &[
            ("A", vec![rule(OwnedAction::Goto("B".into()))]),
            (
                "B",
                vec![rule(OwnedAction::Log(String::new(), 4)), dnat.clone()],
            ),
            ("UNUSED", vec![masq.clone(), dnat.clone()]),
        ],
    );
    let buf = compile(Table::Nat, &ok).unwrap();
    assert!(matches!(
        eval(&buf, Hook::PreRouting, &tcp_packet(1), &mut TestEnv::new(1)),
        Verdict::Nat(_)
    ));
    // Reached from POSTROUTING too: refused, naming the chain and rule.
    let bad = nat_chains(
        vec![rule(OwnedAction::Jump("A".into()))],
        vec![rule(OwnedAction::Jump("A".into()))],
        &[
            ("A", vec![rule(OwnedAction::Goto("B".into()))]),
            (
                "B",
                vec![rule(OwnedAction::Log(String::new(), 4)), dnat.clone()],
            ),
        ],
    );
    let e = compile(Table::Nat, &bad).unwrap_err();
    assert_eq!((e.field, e.chain, e.handle), ("dnat", Some("B"), Some(2)));
    assert_eq!(
        e.to_string(),
        "chain 'B' rule 2: dnat: only in nat PREROUTING and OUTPUT, or in a chain reached only from them"
    );
    // In a built-in chain directly.
    let bad = nat_chains(vec![masq.clone()], vec![], &[]);
    let e = compile(Table::Nat, &bad).unwrap_err();
    assert_eq!(
        (e.field, e.chain, e.handle),
        ("masquerade", Some("PREROUTING"), Some(1))
    );
    // Not in another table; the nat table neither drops nor rejects, nor
    // has a drop policy.
    let filter = vec![chain("INPUT", Some(Policy::Accept), vec![dnat.clone()])];
    let e = compile(Table::Filter, &filter).unwrap_err();
    assert_eq!(e.message, "dnat: only in the nat table");
    let drop = nat_chains(vec![rule(OwnedAction::Drop)], vec![], &[]);
    assert_eq!(compile(Table::Nat, &drop).unwrap_err().field, "drop");
    let mut policy = nat_chains(vec![], vec![], &[]);
    policy[3].policy = Some(Policy::Drop);
    let e = compile(Table::Nat, &policy).unwrap_err();
    assert_eq!((e.field, e.chain), ("policy", Some("POSTROUTING")));
}
