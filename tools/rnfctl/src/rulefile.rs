// SPDX-License-Identifier: GPL-2.0-only

//! The rule file of `rnfctl save` and `rnfctl restore`.
//!
//! ```text
//! # rnf rule set (rnfctl save)
//! # generation 42
//! table filter
//! policy INPUT drop
//! policy FORWARD accept
//! policy OUTPUT accept
//! chain WEB
//! add INPUT proto tcp dport 22 saddr 10.0.0.0/8 accept
//! add INPUT proto tcp dport 80,443 jump WEB
//! add WEB payload contains "GET /admin" drop
//! ```
//!
//! One item per line; words as in
//! [`split_words`](crate::rule_parse::split_words):
//! - `table NAME` starts the part of a table (`raw`, `mangle`, `nat`,
//!   `filter`); each table at most once;
//! - `policy CHAIN accept|drop` sets the policy of a built-in chain of that
//!   table (default `accept`), at most once per chain;
//! - `chain NAME` declares a user chain, before the `add` lines that
//!   append to it (a `jump`/`goto` may name a chain declared further down
//!   the same table);
//! - `add CHAIN RULE...` appends a rule in the syntax of `rnfctl add`
//!   (checked against the table too: `notrack` only in `raw`);
//! - lines whose first non-blank character is `#`, and blank lines, are
//!   ignored.
//!
//! The file is the whole rule set: `restore` sends all four tables, and a
//! table the file does not name is sent with empty built-in chains that
//! accept. `save` prints every table the kernel lists, built-in chains
//! first (in hook order), user chains by name, rules in order and in
//! canonical form, so that save → restore → save gives the same text again,
//! except for the `# generation` comment, which the restore advances.

use std::fmt;
use std::fmt::Write;

use rnf_core::rules::{validate_chain_name, Action, Policy, RuleView, Table};
use rnf_core::ruleset_msg::{
    begin_ruleset_chain, begin_ruleset_table, put_rule, RulesetPartWriter,
};
use rnf_core::wire::{attr, AttrWriter};

use crate::listing::Listing;
use crate::rule_parse::{parse_rule, split_words, strip_field};

/// An error in a rule file: the line (1-based), the word at fault, and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// Line number, from 1.
    pub line: usize,
    /// The word at fault; `None` for the end of the line.
    pub word: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.word {
            Some(w) => write!(f, "line {}: at '{w}': {}", self.line, self.message),
            None => write!(
                f,
                "line {}: at the end of the line: {}",
                self.line, self.message
            ),
        }
    }
}

impl std::error::Error for FileError {}

/// A chain of a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    /// Name.
    pub name: String,
    /// Policy of a built-in chain; `None` for user chains.
    pub policy: Option<Policy>,
    /// Line of its `policy` or `chain` line, if it had one.
    pub line: Option<usize>,
    /// Rule blobs in order, with their line numbers.
    pub rules: Vec<(usize, Vec<u8>)>,
}

/// A table of a rule file: its built-in chains (always all of them, in
/// hook order) followed by its user chains in the order declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table.
    pub table: Table,
    /// Chains.
    pub chains: Vec<ChainSpec>,
}

impl TableSpec {
    /// A table with empty built-in chains that accept.
    pub fn new(table: Table) -> Self {
        Self {
            table,
            chains: table
                .hooks()
                .iter()
                .map(|h| ChainSpec {
                    name: h.name().to_string(),
                    policy: Some(Policy::Accept),
                    line: None,
                    rules: Vec::new(),
                })
                .collect(),
        }
    }

    fn chain_mut(&mut self, name: &str) -> Option<&mut ChainSpec> {
        self.chains.iter_mut().find(|c| c.name == name)
    }
}

/// A parsed rule file: one entry per table, in [`Table::ALL`] order
/// (tables the file does not name are empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFile {
    /// All four tables.
    pub tables: Vec<TableSpec>,
}

fn err(line: usize, word: &str, message: impl Into<String>) -> FileError {
    FileError {
        line,
        word: Some(word.to_string()),
        message: message.into(),
    }
}

fn builtin_names(t: Table) -> String {
    let names: Vec<&str> = t.hooks().iter().map(|h| h.name()).collect();
    names.join(", ")
}

/// Parses a rule file.
pub fn parse(text: &str) -> Result<RuleFile, FileError> {
    let mut tables: Vec<TableSpec> = Table::ALL.into_iter().map(TableSpec::new).collect();
    let mut seen: Vec<(Table, usize)> = Vec::new();
    let mut current: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let words = split_words(line).map_err(|e| FileError {
            line: n,
            word: e.at,
            message: e.message,
        })?;
        let Some((first, rest)) = words.split_first() else {
            continue;
        };
        let extra = |at: usize| -> Result<(), FileError> {
            match rest.get(at) {
                Some(w) => Err(err(n, w, format!("unexpected word after '{first}' line"))),
                None => Ok(()),
            }
        };
        let need = |at: usize, what: &str| -> Result<&String, FileError> {
            rest.get(at).ok_or_else(|| FileError {
                line: n,
                word: None,
                message: format!("expected {what} after '{first}'"),
            })
        };
        if first == "table" {
            let name = need(0, "a table name (raw, mangle, nat or filter)")?;
            let t = Table::from_name(name).ok_or_else(|| {
                err(
                    n,
                    name,
                    "unknown table; expected raw, mangle, nat or filter",
                )
            })?;
            extra(1)?;
            if let Some((_, l)) = seen.iter().find(|(s, _)| *s == t) {
                return Err(err(
                    n,
                    name,
                    format!("table {} was already started on line {l}", t.name()),
                ));
            }
            seen.push((t, n));
            current = Table::ALL.iter().position(|x| *x == t);
            continue;
        }
        let Some(ti) = current else {
            return Err(err(
                n,
                first,
                "expected 'table NAME' before the first policy, chain or add line",
            ));
        };
        let spec = &mut tables[ti];
        let table = spec.table;
        match first.as_str() {
            "policy" => {
                let chain = need(0, "a built-in chain name")?;
                if table.builtin(chain).is_none() {
                    return Err(err(
                        n,
                        chain,
                        format!(
                            "table {} has no built-in chain of that name (it has {})",
                            table.name(),
                            builtin_names(table)
                        ),
                    ));
                }
                let p = need(1, "accept or drop")?;
                let policy = match p.as_str() {
                    "accept" => Policy::Accept,
                    "drop" if table == Table::Nat => {
                        return Err(err(n, p, rnf_core::compile::NAT_POLICY_DROP))
                    }
                    "drop" => Policy::Drop,
                    _ => return Err(err(n, p, "expected accept or drop")),
                };
                extra(2)?;
                let c = spec
                    .chain_mut(chain)
                    .ok_or_else(|| err(n, chain, "no such chain"))?;
                if let Some(l) = c.line {
                    return Err(err(
                        n,
                        chain,
                        format!("the policy of {chain} was already set on line {l}"),
                    ));
                }
                c.policy = Some(policy);
                c.line = Some(n);
            }
            "chain" => {
                let name = need(0, "a chain name")?;
                validate_chain_name(name).map_err(|e| {
                    let m = e
                        .message
                        .strip_prefix("chain: ")
                        .unwrap_or(e.message)
                        .to_string();
                    err(n, name, m)
                })?;
                extra(1)?;
                if let Some(c) = spec.chains.iter().find(|c| c.name == *name) {
                    return Err(err(
                        n,
                        name,
                        format!(
                            "chain {name} was already declared on line {}",
                            c.line.unwrap_or(0)
                        ),
                    ));
                }
                spec.chains.push(ChainSpec {
                    name: name.clone(),
                    policy: None,
                    line: Some(n),
                    rules: Vec::new(),
                });
            }
            "add" => {
                let chain = need(0, "a chain name and a rule")?;
                let Some(c) = spec.chain_mut(chain) else {
                    return Err(err(
                        n,
                        chain,
                        format!(
                            "no chain of that name in table {} (built-in: {}; declare user chains with 'chain NAME' first)",
                            table.name(),
                            builtin_names(table)
                        ),
                    ));
                };
                let blob = parse_rule(&rest[1..]).map_err(|e| FileError {
                    line: n,
                    word: e.at,
                    message: e.message,
                })?;
                // What depends on the table (notrack only in raw, NAT
                // only in nat) and on a built-in chain's hook (NAT).
                let hook = table.builtin(chain);
                RuleView::decode(&blob)
                    .and_then(|v| {
                        v.check_table(table)?;
                        hook.map_or(Ok(()), |h| v.check_hook(h))
                    })
                    .map_err(|e| err(n, e.field, strip_field(e.message, e.field)))?;
                c.rules.push((n, blob));
            }
            _ => {
                return Err(err(
                    n,
                    first,
                    "unknown line; expected table, policy, chain, add or a # comment",
                ))
            }
        }
    }
    // Jump and goto targets must be chains of the same table.
    for spec in &tables {
        for c in &spec.chains {
            for (line, blob) in &c.rules {
                let target = match RuleView::decode(blob).map(|v| v.action) {
                    Ok(Action::Jump(t) | Action::Goto(t)) => t,
                    _ => continue,
                };
                if !spec
                    .chains
                    .iter()
                    .any(|x| x.policy.is_none() && x.name == target)
                {
                    return Err(err(
                        *line,
                        target,
                        format!(
                            "no user chain of that name in table {} (declare it with 'chain {target}')",
                            spec.table.name()
                        ),
                    ));
                }
            }
        }
    }
    for spec in &tables {
        check_user_chain_hooks(spec)?;
    }
    Ok(RuleFile { tables })
}

/// Checks the rules of user chains against every hook whose built-in
/// chain reaches them through `jump` and `goto` (what the module's
/// compiler checks too, but here with the line).
fn check_user_chain_hooks(spec: &TableSpec) -> Result<(), FileError> {
    let index = |name: &str| spec.chains.iter().position(|c| c.name == name);
    for (i, c) in spec.chains.iter().enumerate() {
        let Some(hook) = spec.table.builtin(&c.name) else {
            continue;
        };
        let mut seen = vec![false; spec.chains.len()];
        seen[i] = true;
        let mut todo = vec![i];
        while let Some(j) = todo.pop() {
            for (line, blob) in &spec.chains[j].rules {
                let Ok(v) = RuleView::decode(blob) else {
                    continue;
                };
                if j != i {
                    v.check_hook(hook)
                        .map_err(|e| err(*line, e.field, strip_field(e.message, e.field)))?;
                }
                if let Action::Jump(t) | Action::Goto(t) = v.action {
                    if let Some(k) = index(t).filter(|k| !seen[*k]) {
                        seen[k] = true;
                        todo.push(k);
                    }
                }
            }
        }
    }
    Ok(())
}

impl RuleFile {
    /// Writes the payload of `attr::RULESET`: every table, each with all
    /// its built-in chains (with `POLICY`) and then its user chains (without),
    /// each with its rules in order.
    pub fn encode(&self, w: &mut AttrWriter<'_>) {
        for t in &self.tables {
            let tn = begin_ruleset_table(w, t.table);
            for c in &t.chains {
                let cn = begin_ruleset_chain(w, &c.name, c.policy);
                for (_, blob) in &c.rules {
                    put_rule(w, attr::RULE, blob);
                }
                w.end_nested(cn);
            }
            w.end_nested(tn);
        }
    }

    /// Writes the same rule set as `attr::RULESET_PART` attributes, for
    /// rule sets too large for one `attr::RULESET`.
    pub fn encode_parts<'n>(&'n self, p: &mut RulesetPartWriter<'_, '_, 'n>) {
        for t in &self.tables {
            p.table(t.table);
            for c in &t.chains {
                p.chain(&c.name, c.policy);
                for (_, blob) in &c.rules {
                    p.rule(blob);
                }
            }
        }
    }

    /// The line of rule `n` (counted from 1) of chain `chain` of table
    /// `table`, as the kernel names a rule it refuses in a restore.
    pub fn rule_line(&self, table: Table, chain: &str, n: usize) -> Option<usize> {
        let t = self.tables.iter().find(|t| t.table == table)?;
        let c = t.chains.iter().find(|c| c.name == chain)?;
        c.rules.get(n.checked_sub(1)?).map(|(line, _)| *line)
    }
}

/// Where a restore refusal of the kernel names a rule (`"TABLE CHAIN rule
/// N: ..."`): the table, chain and N.
pub fn refused_rule(ext_ack: &str) -> Option<(Table, &str, usize)> {
    let mut words = ext_ack.splitn(4, ' ');
    let table = Table::from_name(words.next()?)?;
    let chain = words.next()?;
    if words.next()? != "rule" {
        return None;
    }
    let n = words.next()?.split(':').next()?.parse().ok()?;
    Some((table, chain, n))
}

/// Prints a listing as a rule file. A rule that rnfctl cannot print is an
/// error (the file would not restore what the kernel has).
pub fn save(l: &Listing) -> Result<String, String> {
    let mut out =
        String::from("# rnf rule set (rnfctl save); load it with: rnfctl restore < FILE\n");
    if let Some(g) = l.generation {
        let _ = writeln!(out, "# generation {g}");
    }
    let mut last = None;
    for t in Table::ALL {
        let chains: Vec<_> = l.chains.iter().filter(|c| c.table == t).collect();
        if chains.is_empty() {
            continue;
        }
        if last.is_some() {
            out.push('\n');
        }
        last = Some(t);
        let _ = writeln!(out, "table {}", t.name());
        for c in &chains {
            if c.is_builtin() {
                let p = c.policy.unwrap_or(Policy::Accept);
                let _ = writeln!(out, "policy {} {}", c.name, p.name());
            }
        }
        for c in &chains {
            if !c.is_builtin() {
                let _ = writeln!(out, "chain {}", c.name);
            }
        }
        for c in &chains {
            for r in &c.rules {
                let text = r.text().map_err(|e| {
                    format!(
                        "rule with handle {} in chain {} of table {}: {e}",
                        r.handle,
                        c.name,
                        t.name()
                    )
                })?;
                let _ = writeln!(out, "add {} {text}", c.name);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn table(f: &RuleFile, t: Table) -> &TableSpec {
        f.tables.iter().find(|x| x.table == t).unwrap()
    }

    #[test]
    fn parses_items_comments_and_blank_lines() {
        let f = parse(
            "  # a comment\n\n\
             table nat\n\
             policy POSTROUTING accept\n\
             \t# indented comment\n\
             chain A\n\
             add A accept\n\
             add OUTPUT jump A\n\
             table filter\n\
             chain B\n\
             add B comment \"x # y\" drop\n",
        )
        .unwrap();
        assert_eq!(
            f.tables.iter().map(|t| t.table).collect::<Vec<_>>(),
            Table::ALL.to_vec()
        );
        let nat = table(&f, Table::Nat);
        let names: Vec<_> = nat.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "A"]);
        assert_eq!(nat.chains[3].policy, Some(Policy::Accept));
        assert_eq!(nat.chains[3].line, Some(4));
        assert_eq!(nat.chains[0].policy, Some(Policy::Accept));
        assert_eq!(nat.chains[0].line, None);
        assert_eq!(nat.chains[4].policy, None);
        assert_eq!(nat.chains[4].rules.len(), 1);
        assert_eq!(nat.chains[4].rules[0].0, 7);
        assert_eq!(nat.chains[2].rules[0].0, 8);
        let filter = table(&f, Table::Filter);
        let b = &filter.chains[3];
        assert_eq!(b.name, "B");
        assert_eq!(
            crate::rule_print::print_rule(&b.rules[0].1).unwrap(),
            "comment \"x # y\" drop"
        );
        // Untouched tables are their defaults.
        assert_eq!(table(&f, Table::Raw), &TableSpec::new(Table::Raw));
    }

    #[test]
    fn conntrack_rules_save_restore_save_identically() {
        let text = "\
# rnf rule set (rnfctl save); load it with: rnfctl restore < FILE
# generation 9
table raw
policy PREROUTING accept
policy OUTPUT accept
chain NOTRACK-DNS
add PREROUTING proto udp dport 53 jump NOTRACK-DNS
add OUTPUT notrack
add NOTRACK-DNS ct state ! untracked notrack

table mangle
policy PREROUTING accept
policy INPUT accept
policy FORWARD accept
policy OUTPUT accept
policy POSTROUTING accept
add PREROUTING ct mark restore
add PREROUTING iif eth+ mark 0x0 mark set 0x10
add PREROUTING ct direction original ct mark save mask 0xff00
add OUTPUT ct mark ! 0x0/0xff ct mark set 0x1/0xff

table nat
policy PREROUTING accept
policy INPUT accept
policy OUTPUT accept
policy POSTROUTING accept

table filter
policy INPUT drop
policy FORWARD drop
policy OUTPUT accept
add INPUT ct state established,related accept
add INPUT ct state invalid drop
add FORWARD ct status dnat ct direction ! reply accept
add FORWARD ct status ! assured,confirmed log
";
        let file = parse(text).unwrap();
        let r = crate::request::replace_ruleset(|w| file.encode(w), None).unwrap();
        let dump = crate::test_util::kernel_after_restore(&r, 9);
        let l = Listing::decode("save", &dump).unwrap();
        assert_eq!(save(&l).unwrap(), text);
    }

    #[test]
    fn nat_rules_save_restore_save_identically() {
        let text = "\
# rnf rule set (rnfctl save); load it with: rnfctl restore < FILE
# generation 4
table raw
policy PREROUTING accept
policy OUTPUT accept

table mangle
policy PREROUTING accept
policy INPUT accept
policy FORWARD accept
policy OUTPUT accept
policy POSTROUTING accept

table nat
policy PREROUTING accept
policy INPUT accept
policy OUTPUT accept
policy POSTROUTING accept
chain SVC-WEB
add PREROUTING ip proto tcp daddr 10.96.0.10 dport 80 jump SVC-WEB
add PREROUTING ip proto tcp dport 2222 iif ra dnat to 10.0.2.2:22
add PREROUTING ip6 proto tcp dport 2222 iif ra dnat to [fd00:2::2]:22
add PREROUTING proto tcp dport 8445 redirect to 8443
add OUTPUT ip proto tcp daddr 10.96.0.10 dport 80 jump SVC-WEB
add POSTROUTING ip saddr 10.0.1.0/24 oif rb masquerade
add POSTROUTING ip6 saddr fd00:1::/64 oif rb masquerade random fully-random
add POSTROUTING ip proto udp oif rc snat to 192.0.2.1-192.0.2.9:1024-65535 persistent
add SVC-WEB ip proto tcp random 0.3333 dnat to 10.0.2.2:8080
add SVC-WEB ip proto tcp nth 2 dnat to 10.0.2.3:8080
add SVC-WEB ip proto tcp dnat to 10.0.2.4-10.0.2.6:8080-8081 random

table filter
policy INPUT accept
policy FORWARD accept
policy OUTPUT accept
";
        let file = parse(text).unwrap();
        let r = crate::request::replace_ruleset(|w| file.encode(w), None).unwrap();
        let dump = crate::test_util::kernel_after_restore(&r, 4);
        let l = Listing::decode("save", &dump).unwrap();
        assert_eq!(save(&l).unwrap(), text);
    }

    #[test]
    fn nat_rules_are_checked_against_table_and_hooks() {
        assert_eq!(
            e("table filter\nadd INPUT dnat to 10.0.0.1\n"),
            "line 2: at 'dnat': only in the nat table"
        );
        assert_eq!(
            e("table nat\nadd POSTROUTING proto tcp redirect to 8443\n"),
            "line 2: at 'redirect': only in nat PREROUTING and OUTPUT, or in a chain reached only from them"
        );
        assert_eq!(
            e("table nat\npolicy INPUT drop\n"),
            "line 2: at 'drop': the nat table's chains have policy accept: it sees only a flow's first packet and is not for filtering"
        );
        assert_eq!(
            e("table nat\nadd PREROUTING reject\n"),
            "line 2: at 'reject': not in the nat table, which sees only a flow's first packet and is not for filtering (use the filter table)"
        );
        // A user chain: against every hook that reaches it, through jumps
        // and gotos, whatever the order of the lines.
        let ok = "table nat
chain A
chain B
add PREROUTING jump A
add OUTPUT goto A
add A goto B
add B dnat to 10.0.0.1
chain UNUSED
add UNUSED masquerade
add UNUSED dnat to 10.0.0.1
";
        assert!(parse(ok).is_ok());
        assert_eq!(
            e(&format!("{ok}add POSTROUTING jump A\n")),
            "line 7: at 'dnat': only in nat PREROUTING and OUTPUT, or in a chain reached only from them"
        );
    }

    #[test]
    fn notrack_only_in_the_raw_table() {
        assert!(parse(
            "table raw
add PREROUTING notrack
chain X
add X notrack
"
        )
        .is_ok());
        for t in ["mangle", "nat", "filter"] {
            assert_eq!(
                e(&format!("table {t}
add OUTPUT proto udp notrack
")),
                "line 2: at 'notrack': only in the raw table, which runs before connection tracking"
            );
        }
        assert_eq!(
            e("table filter
chain X
\nadd X notrack
"),
            "line 4: at 'notrack': only in the raw table, which runs before connection tracking"
        );
    }

    #[test]
    fn jump_may_name_a_chain_declared_later() {
        let f = parse("table filter\nadd INPUT jump LATER\nchain LATER\n").unwrap();
        assert_eq!(table(&f, Table::Filter).chains.len(), 4);
    }

    #[test]
    fn errors_name_line_and_word() {
        assert_eq!(
            e("add INPUT accept\n"),
            "line 1: at 'add': expected 'table NAME' before the first policy, chain or add line"
        );
        assert_eq!(
            e("table filter\n\ntable flter\n"),
            "line 3: at 'flter': unknown table; expected raw, mangle, nat or filter"
        );
        assert_eq!(
            e("table filter\ntable filter\n"),
            "line 2: at 'filter': table filter was already started on line 1"
        );
        assert_eq!(
            e("table"),
            "line 1: at the end of the line: expected a table name (raw, mangle, nat or filter) after 'table'"
        );
        assert_eq!(
            e("table raw extra\n"),
            "line 1: at 'extra': unexpected word after 'table' line"
        );
        assert_eq!(
            e("table raw\npolicy INPUT drop\n"),
            "line 2: at 'INPUT': table raw has no built-in chain of that name (it has PREROUTING, OUTPUT)"
        );
        assert_eq!(
            e("table raw\npolicy OUTPUT reject\n"),
            "line 2: at 'reject': expected accept or drop"
        );
        assert_eq!(
            e("table raw\npolicy OUTPUT drop\npolicy OUTPUT accept\n"),
            "line 3: at 'OUTPUT': the policy of OUTPUT was already set on line 2"
        );
        assert_eq!(
            e("table raw\npolicy OUTPUT\n"),
            "line 2: at the end of the line: expected accept or drop after 'policy'"
        );
        assert_eq!(
            e("table mangle\nchain X\nchain X\n"),
            "line 3: at 'X': chain X was already declared on line 2"
        );
        assert_eq!(
            e("table mangle\nchain FORWARD\n"),
            "line 2: at 'FORWARD': PREROUTING, INPUT, FORWARD, OUTPUT and POSTROUTING are built-in chain names"
        );
        assert_eq!(
            e("table filter\nadd WEB accept\nchain WEB\n"),
            "line 2: at 'WEB': no chain of that name in table filter (built-in: INPUT, FORWARD, OUTPUT; declare user chains with 'chain NAME' first)"
        );
        assert_eq!(
            e("table filter\nadd INPUT proto tcp dport 80x accept\n"),
            "line 2: at 'dport': expected a port or range like 80 or 1000-2000, got '80x'"
        );
        assert_eq!(
            e("table filter\nadd INPUT proto tcp\n"),
            "line 2: at the end of the line: expected an action (accept, drop, reject, return, jump CHAIN, goto CHAIN, log, mark set|xor|and|or V, ct mark set|xor|and|or|save|restore, notrack, snat to ADDR, dnat to ADDR, masquerade, redirect), got nothing"
        );
        assert_eq!(
            e("table filter\nadd INPUT comment \"open\n"),
            "line 2: at 'open': a quoted text has no closing '\"'"
        );
        assert_eq!(
            e("table filter\n# ok\nadd INPUT goto NOWHERE\n"),
            "line 3: at 'NOWHERE': no user chain of that name in table filter (declare it with 'chain NOWHERE')"
        );
        assert_eq!(
            e("table filter\nchain A\ntable nat\nadd OUTPUT jump A\n"),
            "line 4: at 'A': no user chain of that name in table nat (declare it with 'chain A')"
        );
        assert_eq!(
            e("table filter\nflush\n"),
            "line 2: at 'flush': unknown line; expected table, policy, chain, add or a # comment"
        );
    }
}
