// SPDX-License-Identifier: GPL-2.0-only

//! `rnfctl list`: decoding a `GET_RULES` dump and printing it for people
//! (like `iptables -L --line-numbers [-v] [-x]`) or as JSON.

use std::fmt::Write;

use rnf_core::netlink::GenlMsgHdr;
use rnf_core::rules::{Action, Policy, RuleView, Table};
use rnf_core::ruleset_msg::ChainListing;
use serde::Serialize;

use crate::error::Error;
use crate::output::{table, Align};
use crate::rule_print::print_rule;

/// One rule of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 0-based position in its chain, as the kernel sent it.
    pub position: u32,
    /// Stable handle.
    pub handle: u64,
    /// Packets that matched.
    pub packets: u64,
    /// Bytes that matched.
    pub bytes: u64,
    /// The rule blob.
    pub blob: Vec<u8>,
}

impl Rule {
    /// The rule in rule syntax, or why it cannot be shown.
    pub fn text(&self) -> Result<String, String> {
        print_rule(&self.blob).map_err(|e| format!("<rule rnfctl cannot show: {e}>"))
    }
}

/// One chain of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Table.
    pub table: Table,
    /// Name.
    pub name: String,
    /// Policy, for built-in chains.
    pub policy: Option<Policy>,
    /// Packets that met the policy.
    pub packets: u64,
    /// Bytes that met the policy.
    pub bytes: u64,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

impl Chain {
    /// Whether this is a built-in chain of its table.
    pub fn is_builtin(&self) -> bool {
        self.table.builtin(&self.name).is_some()
    }

    /// Sort key: tables in order, built-in chains in hook order, then user
    /// chains by name.
    fn key(&self) -> (Table, u8, String) {
        match self.table.builtin(&self.name) {
            Some(h) => (self.table, h as u8, String::new()),
            None => (self.table, u8::MAX, self.name.clone()),
        }
    }
}

/// A decoded rule listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// Generation the listing was taken at (`None` if the kernel sent no
    /// chain at all).
    pub generation: Option<u64>,
    /// Chains in display order.
    pub chains: Vec<Chain>,
}

impl Listing {
    /// Decodes the replies of a `GET_RULES` dump (genl header and
    /// attributes each). Messages for the same chain are merged (a chain
    /// too large for one message may come in several); every message must
    /// carry the same generation.
    pub fn decode(op: &'static str, replies: &[Vec<u8>]) -> Result<Self, Error> {
        let mut l = Listing::default();
        for reply in replies {
            let (_, attrs) = GenlMsgHdr::split(reply).map_err(|e| Error::wire(op, e))?;
            let c = ChainListing::decode(attrs).map_err(|e| Error::wire(op, e))?;
            let h = c.header;
            match l.generation {
                Some(g) if g != h.generation => {
                    return Err(Error::Protocol {
                        op,
                        detail: format!(
                            "the rule set changed while it was being listed (generation {g}, then {}); run the command again",
                            h.generation
                        ),
                    })
                }
                _ => l.generation = Some(h.generation),
            }
            let idx = match l
                .chains
                .iter()
                .position(|x| x.table == h.table && x.name == h.chain)
            {
                Some(i) => i,
                None => {
                    l.chains.push(Chain {
                        table: h.table,
                        name: h.chain.to_owned(),
                        policy: h.policy,
                        packets: h.packets,
                        bytes: h.bytes,
                        rules: Vec::new(),
                    });
                    l.chains.len() - 1
                }
            };
            for r in c.rules() {
                let r = r.map_err(|e| Error::wire(op, e))?;
                l.chains[idx].rules.push(Rule {
                    position: r.position,
                    handle: r.handle,
                    packets: r.packets,
                    bytes: r.bytes,
                    blob: r.rule.to_vec(),
                });
            }
        }
        l.chains.sort_by_key(Chain::key);
        for c in &mut l.chains {
            c.rules.sort_by_key(|r| r.position);
        }
        Ok(l)
    }

    /// The chains of `table` (all if `None`) and, if given, only `chain`.
    /// The listing itself stays whole, so references still count every
    /// rule of the table.
    pub fn select<'a>(&'a self, table: Option<Table>, chain: Option<&'a str>) -> Vec<&'a Chain> {
        self.chains
            .iter()
            .filter(|c| table.map_or(true, |t| c.table == t))
            .filter(|c| chain.map_or(true, |n| c.name == n))
            .collect()
    }

    /// How many rules of `table` jump or go to the chain `name`.
    pub fn references(&self, table: Table, name: &str) -> usize {
        self.chains
            .iter()
            .filter(|c| c.table == table)
            .flat_map(|c| &c.rules)
            .filter(|r| match RuleView::decode(&r.blob).map(|v| v.action) {
                Ok(Action::Jump(t) | Action::Goto(t)) => t == name,
                _ => false,
            })
            .count()
    }
}

/// A counter as `iptables -L -v` shows it: exact up to 99999, then in
/// thousands (K), millions (M), ... so that it stays at most 6 characters.
pub fn short_count(n: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if n <= 99_999 {
        return n.to_string();
    }
    let mut v = n;
    for u in UNITS {
        v /= 1000;
        if v <= 99_999 {
            return format!("{v}{u}");
        }
    }
    format!("{v}E")
}

/// Options of the human listing.
#[derive(Debug, Clone, Copy, Default)]
pub struct HumanOpts {
    /// Show counters.
    pub verbose: bool,
    /// Exact counters.
    pub numeric: bool,
}

/// The listing of `chains` (a selection of `l`) for people.
pub fn human(l: &Listing, chains: &[&Chain], o: HumanOpts) -> String {
    use Align::{Left, Right};
    let count = |n: u64| {
        if o.numeric {
            n.to_string()
        } else {
            short_count(n)
        }
    };
    let mut out = String::new();
    let mut last_table = None;
    for c in chains {
        if last_table != Some(c.table) {
            if last_table.is_some() {
                out.push('\n');
            }
            let _ = write!(out, "Table {}", c.table.name());
            if let Some(g) = l.generation {
                let _ = write!(out, " (generation {g})");
            }
            out.push('\n');
            last_table = Some(c.table);
        }
        out.push('\n');
        match c.policy.filter(|_| c.is_builtin()) {
            Some(p) if o.verbose => {
                let _ = writeln!(
                    out,
                    "Chain {} (policy {}, {} packets, {} bytes)",
                    c.name,
                    p.name(),
                    count(c.packets),
                    count(c.bytes)
                );
            }
            Some(p) => {
                let _ = writeln!(out, "Chain {} (policy {})", c.name, p.name());
            }
            None => {
                let n = l.references(c.table, &c.name);
                let s = if n == 1 { "" } else { "s" };
                let _ = writeln!(out, "Chain {} ({n} reference{s})", c.name);
            }
        }
        let rows: Vec<Vec<String>> = c
            .rules
            .iter()
            .map(|r| {
                let text = r.text().unwrap_or_else(|e| e);
                let mut row = vec![
                    (u64::from(r.position) + 1).to_string(),
                    r.handle.to_string(),
                ];
                if o.verbose {
                    row.push(count(r.packets));
                    row.push(count(r.bytes));
                }
                row.push(text);
                row
            })
            .collect();
        if o.verbose {
            out.push_str(&table(
                &["NUM", "HANDLE", "PACKETS", "BYTES", "RULE"],
                &[Right, Right, Right, Right, Left],
                &[3, 6, 7, 7, 0],
                &rows,
            ));
        } else {
            out.push_str(&table(
                &["NUM", "HANDLE", "RULE"],
                &[Right, Right, Left],
                &[3, 6, 0],
                &rows,
            ));
        }
    }
    out
}

#[derive(Serialize)]
struct RuleJson {
    position: u64,
    handle: u64,
    packets: u64,
    bytes: u64,
    rule: String,
}

#[derive(Serialize)]
struct ChainJson<'a> {
    table: &'static str,
    name: &'a str,
    builtin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    references: Option<usize>,
    rules: Vec<RuleJson>,
}

#[derive(Serialize)]
struct ListingJson<'a> {
    generation: Option<u64>,
    chains: Vec<ChainJson<'a>>,
}

/// The listing of `chains` as one line of JSON. Built-in chains have
/// `policy`, `packets` and `bytes`; user chains `references`. A rule's
/// `position` is 1-based, as in the human listing and `insert at`.
pub fn json(l: &Listing, chains: &[&Chain]) -> String {
    let j = ListingJson {
        generation: l.generation,
        chains: chains
            .iter()
            .map(|c| {
                let builtin = c.is_builtin();
                ChainJson {
                    table: c.table.name(),
                    name: &c.name,
                    builtin,
                    policy: c.policy.filter(|_| builtin).map(Policy::name),
                    packets: builtin.then_some(c.packets),
                    bytes: builtin.then_some(c.bytes),
                    references: (!builtin).then(|| l.references(c.table, &c.name)),
                    rules: c
                        .rules
                        .iter()
                        .map(|r| RuleJson {
                            position: u64::from(r.position) + 1,
                            handle: r.handle,
                            packets: r.packets,
                            bytes: r.bytes,
                            rule: r.text().unwrap_or_else(|e| e),
                        })
                        .collect(),
                }
            })
            .collect(),
    };
    serde_json::to_string(&j).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ListArgs;
    use crate::commands::render_list;
    use crate::rule_parse::{parse_rule, split_words};
    use crate::test_util::{dump, reply, FakeChain};
    use rnf_core::ruleset_msg::{encode_chain_listing, ChainHeader, RuleEntry};
    use rnf_core::wire::{attr, cmd};

    fn blob(rule: &str) -> Vec<u8> {
        parse_rule(&split_words(rule).unwrap()).unwrap()
    }

    /// A canned dump as a kernel might send it: out of order, a user chain
    /// split over two messages.
    fn canned() -> Vec<Vec<u8>> {
        use Table::*;
        let chains = [
            FakeChain {
                table: Filter,
                name: "WEB",
                policy: None,
                packets: 0,
                bytes: 0,
                rules: vec![(9, 3, 180, blob("payload contains \"GET /admin\" drop"))],
            },
            FakeChain {
                table: Filter,
                name: "INPUT",
                policy: Some(Policy::Drop),
                packets: 12,
                bytes: 1008,
                rules: vec![
                    (
                        4,
                        1_234_567,
                        987_654_321,
                        blob("proto tcp dport 22 saddr 10.0.0.0/8 accept"),
                    ),
                    (7, 100, 5200, blob("proto tcp dport 80,443 jump WEB")),
                ],
            },
            FakeChain {
                table: Filter,
                name: "EMPTY",
                policy: None,
                packets: 0,
                bytes: 0,
                rules: vec![],
            },
            FakeChain {
                table: Raw,
                name: "PREROUTING",
                policy: Some(Policy::Accept),
                packets: 100_000,
                bytes: 99_999,
                rules: vec![],
            },
            FakeChain {
                table: Filter,
                name: "OUTPUT",
                policy: Some(Policy::Accept),
                packets: 0,
                bytes: 0,
                rules: vec![],
            },
        ];
        let mut d = dump(&chains, 42);
        // The rest of WEB in a second message (position 1).
        d.push(reply(cmd::GET_RULES, |w| {
            let b = blob("return");
            encode_chain_listing(
                w,
                &ChainHeader {
                    table: Filter,
                    chain: "WEB",
                    policy: None,
                    packets: 0,
                    bytes: 0,
                    generation: 42,
                },
                [RuleEntry {
                    handle: 11,
                    position: 1,
                    packets: 0,
                    bytes: 0,
                    rule: &b,
                }]
                .into_iter(),
            )
        }));
        d
    }

    fn list(args: ListArgs) -> String {
        let l = Listing::decode("list", &canned()).unwrap();
        render_list(&l, &args).unwrap_or_else(|e| e.to_string())
    }

    fn args(table: Option<Table>, chain: Option<&str>, v: bool, n: bool, json: bool) -> ListArgs {
        ListArgs {
            table,
            chain: chain.map(str::to_owned),
            numeric: n,
            verbose: v,
            json,
        }
    }

    #[test]
    fn decode_merges_and_orders() {
        let l = Listing::decode("list", &canned()).unwrap();
        assert_eq!(l.generation, Some(42));
        let names: Vec<_> = l
            .chains
            .iter()
            .map(|c| format!("{}/{}", c.table.name(), c.name))
            .collect();
        assert_eq!(
            names,
            [
                "raw/PREROUTING",
                "filter/INPUT",
                "filter/OUTPUT",
                "filter/EMPTY",
                "filter/WEB"
            ]
        );
        let web = &l.chains[4];
        assert_eq!(
            web.rules.iter().map(|r| r.handle).collect::<Vec<_>>(),
            [9, 11]
        );
        assert_eq!(l.references(Table::Filter, "WEB"), 1);
        assert_eq!(l.references(Table::Filter, "EMPTY"), 0);
        assert_eq!(l.references(Table::Raw, "WEB"), 0);
    }

    #[test]
    fn human_default() {
        assert_eq!(
            list(args(None, None, false, false, false)),
            "\
Table raw (generation 42)

Chain PREROUTING (policy accept)
NUM  HANDLE  RULE

Table filter (generation 42)

Chain INPUT (policy drop)
NUM  HANDLE  RULE
  1       4  ip proto tcp saddr 10.0.0.0/8 dport 22 accept
  2       7  proto tcp dport 80,443 jump WEB

Chain OUTPUT (policy accept)
NUM  HANDLE  RULE

Chain EMPTY (0 references)
NUM  HANDLE  RULE

Chain WEB (1 reference)
NUM  HANDLE  RULE
  1       9  payload contains \"GET /admin\" drop
  2      11  return
"
        );
    }

    #[test]
    fn human_verbose_short_and_numeric_counters() {
        assert_eq!(
            list(args(Some(Table::Filter), Some("INPUT"), true, false, false)),
            "\
Table filter (generation 42)

Chain INPUT (policy drop, 12 packets, 1008 bytes)
NUM  HANDLE  PACKETS    BYTES  RULE
  1       4    1234K     987M  ip proto tcp saddr 10.0.0.0/8 dport 22 accept
  2       7      100     5200  proto tcp dport 80,443 jump WEB
"
        );
        assert_eq!(
            list(args(Some(Table::Filter), Some("INPUT"), true, true, false)),
            "\
Table filter (generation 42)

Chain INPUT (policy drop, 12 packets, 1008 bytes)
NUM  HANDLE  PACKETS      BYTES  RULE
  1       4  1234567  987654321  ip proto tcp saddr 10.0.0.0/8 dport 22 accept
  2       7      100       5200  proto tcp dport 80,443 jump WEB
"
        );
        assert_eq!(
            list(args(Some(Table::Raw), None, true, false, false)),
            "\
Table raw (generation 42)

Chain PREROUTING (policy accept, 100K packets, 99999 bytes)
NUM  HANDLE  PACKETS    BYTES  RULE
"
        );
    }

    #[test]
    fn one_chain_or_none() {
        assert_eq!(
            list(args(Some(Table::Filter), Some("WEB"), false, false, false)),
            "\
Table filter (generation 42)

Chain WEB (1 reference)
NUM  HANDLE  RULE
  1       9  payload contains \"GET /admin\" drop
  2      11  return
"
        );
        assert_eq!(
            list(args(Some(Table::Filter), Some("NOPE"), false, false, false)),
            "list: no chain 'NOPE' in table filter"
        );
        assert_eq!(
            list(args(Some(Table::Filter), Some("Input"), false, false, false)),
            "list: no chain 'Input' in table filter; chain names are case-sensitive: did you mean INPUT?"
        );
    }

    #[test]
    fn json_has_every_field() {
        let j = list(args(Some(Table::Filter), None, false, false, true));
        assert!(j.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["generation"], 42);
        let chains = v["chains"].as_array().unwrap();
        assert_eq!(chains.len(), 4);
        assert_eq!(
            chains[0],
            serde_json::json!({
                "table": "filter", "name": "INPUT", "builtin": true, "policy": "drop",
                "packets": 12, "bytes": 1008,
                "rules": [
                    {"position": 1, "handle": 4, "packets": 1234567, "bytes": 987654321,
                     "rule": "ip proto tcp saddr 10.0.0.0/8 dport 22 accept"},
                    {"position": 2, "handle": 7, "packets": 100, "bytes": 5200,
                     "rule": "proto tcp dport 80,443 jump WEB"}
                ]
            })
        );
        assert_eq!(
            chains[3],
            serde_json::json!({
                "table": "filter", "name": "WEB", "builtin": false, "references": 1,
                "rules": [
                    {"position": 1, "handle": 9, "packets": 3, "bytes": 180,
                     "rule": "payload contains \"GET /admin\" drop"},
                    {"position": 2, "handle": 11, "packets": 0, "bytes": 0, "rule": "return"}
                ]
            })
        );
        // -v and -n change nothing in JSON.
        assert_eq!(list(args(Some(Table::Filter), None, true, true, true)), j);
    }

    #[test]
    fn short_counts() {
        assert_eq!(short_count(0), "0");
        assert_eq!(short_count(99_999), "99999");
        assert_eq!(short_count(100_000), "100K");
        assert_eq!(short_count(99_999_999), "99999K");
        assert_eq!(short_count(100_000_000), "100M");
        assert_eq!(short_count(u64::MAX), "18446P");
    }

    #[test]
    fn bad_dumps() {
        let mut d = canned();
        d.push(reply(cmd::GET_RULES, |w| {
            encode_chain_listing(
                w,
                &ChainHeader {
                    table: Table::Nat,
                    chain: "INPUT",
                    policy: Some(Policy::Accept),
                    packets: 0,
                    bytes: 0,
                    generation: 43,
                },
                core::iter::empty(),
            )
        }));
        assert_eq!(
            Listing::decode("list", &d).unwrap_err().to_string(),
            "list: bad reply from the kernel: the rule set changed while it was being listed (generation 42, then 43); run the command again"
        );
        let d = vec![reply(cmd::GET_RULES, |w| w.put_u8(attr::TABLE, 3))];
        assert_eq!(
            Listing::decode("list", &d).unwrap_err().to_string(),
            "list: bad reply from the kernel: required netlink attribute missing (type 6)"
        );
        assert_eq!(
            Listing::decode("list", &[vec![4]]).unwrap_err().to_string(),
            "list: bad reply from the kernel: truncated netlink data"
        );
        let empty = Listing::decode("list", &[]).unwrap();
        assert_eq!(empty, Listing::default());
        assert_eq!(human(&empty, &[], HumanOpts::default()), "");
    }

    #[test]
    fn undecodable_rule_is_shown_not_fatal() {
        let d = dump(
            &[FakeChain {
                table: Table::Filter,
                name: "INPUT",
                policy: Some(Policy::Accept),
                packets: 0,
                bytes: 0,
                rules: vec![(1, 0, 0, vec![4, 0, 99, 0])],
            }],
            1,
        );
        let l = Listing::decode("list", &d).unwrap();
        let out = human(&l, &l.select(None, None), HumanOpts::default());
        assert!(
            out.contains("  1       1  <rule rnfctl cannot show: "),
            "{out}"
        );
        let e = crate::rulefile::save(&l).unwrap_err();
        assert!(
            e.starts_with(
                "rule with handle 1 in chain INPUT of table filter: <rule rnfctl cannot show: "
            ),
            "{e}"
        );
    }
}
