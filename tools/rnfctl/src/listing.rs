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
