// SPDX-License-Identifier: GPL-2.0-only

//! Rule sets larger than one netlink attribute: `RulesetPartWriter` splits
//! them into `RULESET_PART` attributes and `RulesetItems` reads them back
//! as the same rule set, whatever the part size.

use proptest::prelude::*;
use rnf_core::rules::{Policy, Table};
use rnf_core::ruleset_msg::{
    begin_ruleset_chain, begin_ruleset_table, put_rule, RulesetItem, RulesetItems,
    RulesetPartWriter, PART_SIZE,
};
use rnf_core::wire::{attr, AttrIter, AttrWriter, WireError};

type Chain = (String, Option<Policy>, Vec<Vec<u8>>);
type Set = Vec<(Table, Vec<Chain>)>;

fn write_parts(w: &mut AttrWriter<'_>, set: &Set, part_size: usize) -> usize {
    let mut p = RulesetPartWriter::new(w, part_size);
    for (t, chains) in set {
        p.table(*t);
        for (name, policy, rules) in chains {
            p.chain(name, *policy);
            for r in rules {
                p.rule(r);
            }
        }
    }
    p.finish()
}

/// The request attributes: the parts, then a `GENERATION` as rnfctl sends.
fn encode_parts(set: &Set, part_size: usize) -> (Vec<u8>, usize) {
    let mut m = AttrWriter::measure();
    let n = write_parts(&mut m, set, part_size);
    m.put_u64(attr::GENERATION, 7);
    let len = m.finish().unwrap();
    let mut buf = vec![0u8; len];
    let mut w = AttrWriter::new(&mut buf);
    assert_eq!(write_parts(&mut w, set, part_size), n);
    w.put_u64(attr::GENERATION, 7);
    assert_eq!(w.finish(), Ok(len), "measured and written sizes agree");
    (buf, n)
}

/// The same set as one `RULESET`, if it fits in one attribute.
fn encode_single(set: &Set) -> Option<Vec<u8>> {
    let f = |w: &mut AttrWriter<'_>| {
        let rs = w.begin_nested(attr::RULESET);
        for (t, chains) in set {
            let tn = begin_ruleset_table(w, *t);
            for (name, policy, rules) in chains {
                let cn = begin_ruleset_chain(w, name, *policy);
                for r in rules {
                    put_rule(w, attr::RULE, r);
                }
                w.end_nested(cn);
            }
            w.end_nested(tn);
        }
        w.end_nested(rs);
    };
    let mut m = AttrWriter::measure();
    f(&mut m);
    let mut buf = vec![0u8; m.finish().ok()?];
    let mut w = AttrWriter::new(&mut buf);
    f(&mut w);
    w.finish().unwrap();
    Some(buf)
}

/// Reads a rule set back with the kernel's rules: tables and chains in
/// order, continuations merged.
fn decode(items: RulesetItems<'_>) -> Result<Set, WireError> {
    let mut set: Set = Vec::new();
    for item in items {
        match item? {
            RulesetItem::Table(t) => set.push((t, Vec::new())),
            RulesetItem::Chain(name, policy) => {
                let chains = &mut set.last_mut().expect("chain inside a table").1;
                match chains.last_mut() {
                    Some(c) if c.0 == name => c.1 = policy,
                    _ => chains.push((name.to_string(), policy, Vec::new())),
                }
            }
            RulesetItem::Rule(b) => {
                let t = set.last_mut().expect("rule inside a table");
                t.1.last_mut()
                    .expect("rule inside a chain")
                    .2
                    .push(b.to_vec());
            }
        }
    }
    Ok(set)
}

fn part_sizes(attrs: &[u8]) -> Vec<usize> {
    AttrIter::new(attrs)
        .map(|a| a.unwrap())
        .filter(|a| a.ty == attr::RULESET_PART)
        .map(|a| a.payload.len() + 4)
        .collect()
}

fn policy() -> impl Strategy<Value = Option<Policy>> {
    prop_oneof![
        Just(None),
        Just(Some(Policy::Accept)),
        Just(Some(Policy::Drop))
    ]
}

/// Tables in order without repeats, chains with distinct names.
fn rule_set() -> impl Strategy<Value = Set> {
    let chain = (
        policy(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..50),
    );
    let table = prop::collection::vec(chain, 0..6);
    prop::collection::vec(prop::option::of(table), 4).prop_map(|tables| {
        tables
            .into_iter()
            .zip(Table::ALL)
            .filter_map(|(t, table)| {
                t.map(|chains| {
                    let chains = chains
                        .into_iter()
                        .enumerate()
                        .map(|(i, (p, rules))| (format!("C{i}"), p, rules))
                        .collect();
                    (table, chains)
                })
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn split_round_trip(set in rule_set(), part_size in 0usize..=2 * PART_SIZE) {
        let (attrs, n) = encode_parts(&set, part_size);
        let sizes = part_sizes(&attrs);
        prop_assert_eq!(sizes.len(), n);
        prop_assert!(n >= 1);
        for s in &sizes {
            prop_assert!(*s <= 65535);
            // Only a part holding one entry larger than the size may exceed
            // it (rules here are under 300 bytes with their headers).
            if part_size >= 512 {
                prop_assert!(*s <= part_size.min(65532), "part of {} > {}", s, part_size);
            }
        }
        let got = decode(RulesetItems::new(&attrs)).unwrap();
        prop_assert_eq!(&got, &set);
        // The single-attribute encoding reads the same, either way.
        if let Some(single) = encode_single(&set) {
            prop_assert_eq!(&decode(RulesetItems::new(&single)).unwrap(), &set);
            let payload = AttrIter::new(&single).next().unwrap().unwrap().payload;
            prop_assert_eq!(&decode(RulesetItems::from_ruleset(payload)).unwrap(), &set);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        for item in RulesetItems::new(&bytes) {
            if item.is_err() {
                break;
            }
        }
        for item in RulesetItems::from_ruleset(&bytes) {
            if item.is_err() {
                break;
            }
        }
    }

    #[test]
    fn truncated_parts_are_errors_not_panics(set in rule_set(), cut in any::<prop::sample::Index>()) {
        let (attrs, _) = encode_parts(&set, 1024);
        let cut = cut.index(attrs.len() + 1);
        let items: Vec<_> = RulesetItems::new(&attrs[..cut]).collect();
        // Iteration stops at the first error.
        let errs = items.iter().filter(|i| i.is_err()).count();
        prop_assert!(errs <= 1);
        if errs == 1 {
            prop_assert!(items.last().unwrap().is_err());
        }
    }
}

/// 100,000 rules, several MB: far more than one attribute holds.
#[test]
fn hundred_thousand_rules_round_trip() {
    let rule = |i: usize| {
        let mut b = vec![1u8, 0, 0, 0];
        b.extend_from_slice(&(i as u32).to_ne_bytes());
        b.extend(std::iter::repeat(0xab).take(i % 40));
        b
    };
    let set: Set = vec![
        (
            Table::Raw,
            vec![(
                "PREROUTING".into(),
                Some(Policy::Accept),
                (0..40_000).map(rule).collect(),
            )],
        ),
        (
            Table::Filter,
            vec![
                (
                    "INPUT".into(),
                    Some(Policy::Drop),
                    (40_000..99_000).map(rule).collect(),
                ),
                ("FORWARD".into(), Some(Policy::Accept), Vec::new()),
                ("BLOCK".into(), None, (99_000..100_000).map(rule).collect()),
            ],
        ),
    ];
    let (attrs, n) = encode_parts(&set, PART_SIZE);
    assert!(attrs.len() > 2 << 20, "{} bytes", attrs.len());
    assert!(n > 30, "{n} parts");
    assert!(part_sizes(&attrs).iter().all(|s| *s <= PART_SIZE));
    let got = decode(RulesetItems::new(&attrs)).unwrap();
    assert_eq!(got, set);
    let rules = RulesetItems::new(&attrs)
        .filter(|i| matches!(i, Ok(RulesetItem::Rule(_))))
        .count();
    assert_eq!(rules, 100_000);
}

/// A continued chain is announced once; a table named again after another
/// one is a new table (which the kernel refuses as given twice).
#[test]
fn continuation_rules() {
    let (attrs, n) = encode_parts(
        &vec![(
            Table::Filter,
            vec![("INPUT".into(), Some(Policy::Drop), vec![vec![0u8; 100]; 50])],
        )],
        256,
    );
    assert!(n >= 20);
    let items: Vec<_> = RulesetItems::new(&attrs).map(|i| i.unwrap()).collect();
    assert_eq!(items[0], RulesetItem::Table(Table::Filter));
    assert_eq!(items[1], RulesetItem::Chain("INPUT", Some(Policy::Drop)));
    assert_eq!(items.len(), 52);

    let set: Set = vec![
        (Table::Filter, vec![]),
        (Table::Raw, vec![]),
        (Table::Filter, vec![]),
    ];
    let (attrs, _) = encode_parts(&set, PART_SIZE);
    let items: Vec<_> = RulesetItems::new(&attrs).map(|i| i.unwrap()).collect();
    assert_eq!(
        items,
        vec![
            RulesetItem::Table(Table::Filter),
            RulesetItem::Table(Table::Raw),
            RulesetItem::Table(Table::Filter)
        ]
    );
}

/// An empty rule set is one empty part.
#[test]
fn empty_set_is_one_part() {
    let (attrs, n) = encode_parts(&Vec::new(), PART_SIZE);
    assert_eq!(n, 1);
    assert_eq!(part_sizes(&attrs), vec![4]);
    assert_eq!(RulesetItems::new(&attrs).count(), 0);
}
