// SPDX-License-Identifier: GPL-2.0-only

//! The rule commands: from the command line to requests ([`build`], pure,
//! so tests can check every request), and running them against the kernel.

use std::io::Read;

use rnf_core::netlink::GenlMsgHdr;
use rnf_core::rules::{validate_chain_name, Policy, RuleView, Table};
use rnf_core::wire::{self, attr, cmd, AttrIter, WireError};

use crate::cli::{ChainCommand, Command, ListArgs, MonitorCommand};
use crate::error::Error;
use crate::listing::{self, HumanOpts, Listing};
use crate::nl::GenlSocket;
use crate::request::{self, Place, Request, Which};
use crate::rule_parse::{parse_rule, strip_field};
use crate::rulefile;

fn wire_err(op: &'static str) -> impl Fn(WireError) -> Error {
    move |e| {
        match e {
        WireError::Overflow => Error::invalid(
            op,
            "the request does not fit in a netlink message (a nested attribute is limited to 64 KiB)",
        ),
        e => Error::wire(op, e),
    }
    }
}

fn rule(op: &'static str, words: &[String]) -> Result<Vec<u8>, Error> {
    parse_rule(words).map_err(|e| Error::invalid(op, e.to_string()))
}

/// A rule to put in `chain` of `table`: parsed, and checked against the
/// table (notrack only in raw, NAT only in nat) and a built-in chain's
/// hook (where each NAT action runs), as the module would.
fn placed_rule(
    op: &'static str,
    table: Table,
    chain: &str,
    words: &[String],
) -> Result<Vec<u8>, Error> {
    let blob = rule(op, words)?;
    RuleView::decode(&blob)
        .and_then(|v| {
            v.check_table(table)?;
            table.builtin(chain).map_or(Ok(()), |h| v.check_hook(h))
        })
        .map_err(|e| {
            Error::invalid(
                op,
                format!("at '{}': {}", e.field, strip_field(e.message, e.field)),
            )
        })?;
    Ok(blob)
}

/// `[at N] RULE...` of `insert`: the 0-based position and the rule words.
pub fn split_insert(words: &[String]) -> Result<(u32, &[String]), Error> {
    match words {
        [at, n, rest @ ..] if at == "at" => {
            let pos = n
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .and_then(|n| u32::try_from(n - 1).ok())
                .ok_or_else(|| {
                    Error::invalid(
                        "insert",
                        format!(
                            "at 'at': expected a position 1, 2, ... (1 is the first rule), got '{n}'"
                        ),
                    )
                })?;
            Ok((pos, rest))
        }
        [at] if at == "at" => Err(Error::invalid(
            "insert",
            "at 'at': expected a position 1, 2, ... (1 is the first rule), got nothing",
        )),
        _ => Ok((0, words)),
    }
}

fn check_chain_name(op: &'static str, name: &str) -> Result<(), Error> {
    validate_chain_name(name).map_err(|e| {
        let m = e.message.strip_prefix("chain: ").unwrap_or(e.message);
        Error::invalid(op, format!("at '{name}': {m}"))
    })
}

/// The request of a command other than `status` and `restore` (see
/// [`restore_request`]).
pub fn build(command: &Command) -> Result<Request, Error> {
    match command {
        Command::Add(a) => {
            let blob = placed_rule("add", a.table, &a.chain, &a.rule)?;
            request::new_rule(
                "add",
                a.table,
                &a.chain,
                &blob,
                Place::Append,
                a.write.generation,
            )
            .map_err(wire_err("add"))
        }
        Command::Insert(a) => {
            let (pos, words) = split_insert(&a.rule)?;
            let blob = placed_rule("insert", a.table, &a.chain, words)?;
            request::new_rule(
                "insert",
                a.table,
                &a.chain,
                &blob,
                Place::At(pos),
                a.write.generation,
            )
            .map_err(wire_err("insert"))
        }
        Command::Replace(a) => {
            let blob = placed_rule("replace", a.table, &a.chain, &a.rule)?;
            request::new_rule(
                "replace",
                a.table,
                &a.chain,
                &blob,
                Place::Replace(a.handle),
                a.write.generation,
            )
            .map_err(wire_err("replace"))
        }
        Command::Delete(a) => {
            let which = match a.rule.as_slice() {
                [h] if h.bytes().all(|b| b.is_ascii_digit()) => {
                    Which::Handle(h.parse().map_err(|_| {
                        Error::invalid("delete", format!("at '{h}': the handle is too large"))
                    })?)
                }
                words => Which::Rule(rule("delete", words)?),
            };
            request::del_rule(a.table, &a.chain, &which, a.write.generation)
                .map_err(wire_err("delete"))
        }
        Command::Flush(a) => request::scoped("flush", cmd::FLUSH, a.table, a.chain.as_deref())
            .map_err(wire_err("flush")),
        Command::Zero(a) => request::scoped("zero", cmd::ZERO, a.table, a.chain.as_deref())
            .map_err(wire_err("zero")),
        Command::Policy(a) => {
            if a.table.builtin(&a.chain).is_none() {
                let names: Vec<&str> = a.table.hooks().iter().map(|h| h.name()).collect();
                return Err(Error::invalid(
                    "policy",
                    format!(
                        "at '{}': only built-in chains have a policy; those of table {} are {}",
                        a.chain,
                        a.table.name(),
                        names.join(", ")
                    ),
                ));
            }
            if a.table == Table::Nat && Policy::from(a.policy) == Policy::Drop {
                return Err(Error::invalid(
                    "policy",
                    format!("at 'drop': {}", rnf_core::compile::NAT_POLICY_DROP),
                ));
            }
            request::set_policy(a.table, &a.chain, Policy::from(a.policy))
                .map_err(wire_err("policy"))
        }
        Command::Chain(ChainCommand::Add { table, name }) => {
            check_chain_name("chain add", name)?;
            request::chain("chain add", cmd::NEW_CHAIN, *table, name).map_err(wire_err("chain add"))
        }
        Command::Chain(ChainCommand::Delete { table, name }) => {
            request::chain("chain delete", cmd::DEL_CHAIN, *table, name)
                .map_err(wire_err("chain delete"))
        }
        Command::Chain(ChainCommand::Rename {
            table,
            name,
            new_name,
        }) => {
            check_chain_name("chain rename", new_name)?;
            request::rename_chain(*table, name, new_name).map_err(wire_err("chain rename"))
        }
        Command::List(a) => request::get_rules("list", a.table).map_err(wire_err("list")),
        Command::Save(_) => request::get_rules("save", None).map_err(wire_err("save")),
        Command::Status(_)
        | Command::Restore(_)
        | Command::Conntrack(_)
        | Command::Monitor(_)
        | Command::HookCounters { .. } => Err(Error::invalid(
            "rnfctl",
            "internal: this command has no single request",
        )),
    }
}

/// The `REPLACE_RULESET` request for the rule file `text`.
#[cfg(test)]
pub fn restore_request(text: &str, generation: Option<u64>) -> Result<Request, Error> {
    let file = rulefile::parse(text).map_err(|e| Error::invalid("restore", e.to_string()))?;
    restore_file_request(&file, generation, rnf_core::ruleset_msg::PART_SIZE)
}

/// The `REPLACE_RULESET` request for a parsed rule file: one `RULESET`
/// if the rule set fits in one attribute (64 KiB; what every version of
/// the module reads), else `RULESET_PART`s of at most `part_size` bytes in
/// the same message, which the module reads as one rule set: one request,
/// one atomic change, for a rule set of any size.
pub fn restore_file_request(
    file: &rulefile::RuleFile,
    generation: Option<u64>,
    part_size: usize,
) -> Result<Request, Error> {
    match request::replace_ruleset(|w| file.encode(w), generation) {
        Err(WireError::Overflow) => {
            request::replace_ruleset_parts(|p| file.encode_parts(p), part_size, generation)
                .map_err(wire_err("restore"))
        }
        r => r.map_err(wire_err("restore")),
    }
}

/// A kernel refusal of a restore that names a rule (`"TABLE CHAIN rule
/// N: ..."`) reworded with the rule's line in the file.
pub fn restore_error_line(e: Error, file: &rulefile::RuleFile) -> Error {
    let named = match &e {
        Error::Refused {
            ext_ack: Some(m), ..
        } => rulefile::refused_rule(m).and_then(|(t, c, n)| {
            let line = file.rule_line(t, c, n)?;
            let why = m.split_once(": ").map_or(m.as_str(), |(_, w)| w);
            Some(format!(
                "line {line}: the kernel refused rule {n} of chain '{c}' in table {}: {why}; nothing was changed",
                t.name()
            ))
        }),
        _ => None,
    };
    match named {
        Some(message) => Error::invalid("restore", message),
        None => e,
    }
}

/// The handle in the reply to a `NEW_RULE`.
pub fn reply_handle(op: &'static str, replies: &[Vec<u8>]) -> Result<u64, Error> {
    for r in replies {
        let (_, attrs) = GenlMsgHdr::split(r).map_err(|e| Error::wire(op, e))?;
        if let Some(a) = AttrIter::new(attrs)
            .find(attr::HANDLE)
            .map_err(|e| Error::wire(op, e))?
        {
            return a.u64().map_err(|e| Error::wire(op, e));
        }
    }
    Err(Error::Protocol {
        op,
        detail: "the kernel did not send the new rule's handle".into(),
    })
}

/// What `rnfctl list` prints for a listing.
pub fn render_list(l: &Listing, a: &ListArgs) -> Result<String, Error> {
    let chains = l.select(a.table, a.chain.as_deref());
    if let (Some(t), Some(c)) = (a.table, &a.chain) {
        if chains.is_empty() {
            let hint = t
                .hooks()
                .iter()
                .find(|h| h.name().eq_ignore_ascii_case(c))
                .map(|h| {
                    format!(
                        "; chain names are case-sensitive: did you mean {}?",
                        h.name()
                    )
                })
                .unwrap_or_default();
            return Err(Error::invalid(
                "list",
                format!("no chain '{c}' in table {}{hint}", t.name()),
            ));
        }
    }
    if a.json {
        let mut s = listing::json(l, &chains);
        s.push('\n');
        Ok(s)
    } else {
        Ok(listing::human(
            l,
            &chains,
            HumanOpts {
                verbose: a.verbose,
                numeric: a.numeric,
            },
        ))
    }
}

struct Conn {
    sock: GenlSocket,
    family: u16,
}

impl Conn {
    fn open() -> Result<Self, Error> {
        let mut sock = GenlSocket::open()?;
        let family = sock.resolve_family(wire::FAMILY_NAME)?;
        Ok(Self { sock, family })
    }

    fn send(&mut self, r: &Request) -> Result<Vec<Vec<u8>>, Error> {
        self.sock
            .request_encoded(r.op, self.family, r.cmd, r.dump, &r.attrs)
            .map_err(|e| e.about(&r.target))
    }

    fn listing(&mut self, op: &'static str, table: Option<Table>) -> Result<Listing, Error> {
        let r = request::get_rules(op, table).map_err(wire_err(op))?;
        let replies = self.send(&r)?;
        Listing::decode(op, &replies)
    }
}

fn read_input(op: &'static str, file: &str) -> Result<String, Error> {
    let mut text = String::new();
    let res = if file == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text))
    };
    res.map_err(|e| Error::invalid(op, format!("reading {file}: {e}")))?;
    Ok(text)
}

/// Runs a rule command and returns what to print.
pub fn run(command: &Command) -> Result<String, Error> {
    match command {
        Command::Status(a) => crate::status::run(a),
        Command::HookCounters { state } => crate::status::hook_counters(*state),
        Command::Conntrack(c) => crate::conntrack::run(c),
        Command::Monitor(MonitorCommand::Conntrack { json }) => {
            crate::monitor::run_conntrack(*json)
        }
        Command::List(a) => {
            let l = Conn::open()?.listing("list", a.table)?;
            render_list(&l, a)
        }
        Command::Save(_) => {
            let l = Conn::open()?.listing("save", None)?;
            rulefile::save(&l).map_err(|m| Error::invalid("save", m))
        }
        Command::Restore(a) => {
            let text = read_input("restore", &a.file)?;
            let file =
                rulefile::parse(&text).map_err(|e| Error::invalid("restore", e.to_string()))?;
            let r =
                restore_file_request(&file, a.write.generation, rnf_core::ruleset_msg::PART_SIZE)?;
            if a.check {
                return Ok(String::new());
            }
            Conn::open()?
                .send(&r)
                .map_err(|e| restore_error_line(e, &file))?;
            Ok(String::new())
        }
        _ => {
            let r = build(command)?;
            let echo = match command {
                Command::Add(a) => a.echo,
                Command::Insert(a) => a.echo,
                Command::Replace(a) => a.echo,
                _ => false,
            };
            let replies = Conn::open()?.send(&r)?;
            if echo {
                Ok(format!("handle {}\n", reply_handle(r.op, &replies)?))
            } else {
                Ok(String::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::test_util::{attrs, cstr, get, kernel_after_restore, reply, types};
    use clap::Parser;
    use rnf_core::wire::NLA_F_NESTED;

    fn cli(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("rnfctl").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    fn req(args: &[&str]) -> Request {
        build(&cli(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn local_err(args: &[&str]) -> String {
        build(&cli(args)).unwrap_err().to_string()
    }

    fn blob(rule: &str) -> Vec<u8> {
        let words: Vec<String> = rule.split(' ').map(str::to_owned).collect();
        parse_rule(&words).unwrap()
    }

    const FILTER: u8 = Table::Filter as u8;

    #[test]
    fn rules_are_checked_against_table_and_hook_before_sending() {
        let r = req(&[
            "add",
            "nat",
            "PREROUTING",
            "proto",
            "tcp",
            "dport",
            "8445",
            "redirect",
            "to",
            "8443",
        ]);
        assert_eq!(
            get(&r, attr::RULE),
            blob("proto tcp dport 8445 redirect to 8443")
        );
        let r = req(&["insert", "nat", "POSTROUTING", "oif", "eth0", "masquerade"]);
        assert_eq!(get(&r, attr::RULE), blob("oif eth0 masquerade"));
        // A user chain is checked by the module, against the hooks that
        // reach it.
        req(&[
            "add",
            "nat",
            "SVC",
            "proto",
            "tcp",
            "dnat",
            "to",
            "10.0.0.1:80",
        ]);
        assert_eq!(
            local_err(&["add", "filter", "INPUT", "notrack"]),
            "add: at 'notrack': only in the raw table, which runs before connection tracking"
        );
        assert_eq!(
            local_err(&["add", "filter", "INPUT", "dnat", "to", "1.2.3.4"]),
            "add: at 'dnat': only in the nat table"
        );
        assert_eq!(
            local_err(&["replace", "nat", "POSTROUTING", "3", "dnat", "to", "1.2.3.4"]),
            "replace: at 'dnat': only in nat PREROUTING and OUTPUT, or in a chain reached only from them"
        );
        assert_eq!(
            local_err(&["insert", "nat", "INPUT", "masquerade"]),
            "insert: at 'masquerade': only in nat POSTROUTING, or in a chain reached only from it"
        );
        assert_eq!(
            local_err(&["add", "nat", "PREROUTING", "drop"]),
            "add: at 'drop': not in the nat table, which sees only a flow's first packet and is not for filtering (use the filter table)"
        );
        assert_eq!(
            local_err(&["policy", "nat", "POSTROUTING", "drop"]),
            "policy: at 'drop': the nat table's chains have policy accept: it sees only a flow's first packet and is not for filtering"
        );
    }

    #[test]
    fn add_appends() {
        let r = req(&[
            "add", "filter", "INPUT", "proto", "tcp", "dport", "22", "accept",
        ]);
        assert_eq!(r.op, "add");
        assert_eq!(r.cmd, cmd::NEW_RULE);
        assert!(!r.dump);
        assert_eq!(
            attrs(&r),
            vec![
                (attr::TABLE, false, vec![FILTER]),
                (attr::CHAIN, false, cstr("INPUT")),
                (attr::RULE, true, blob("proto tcp dport 22 accept")),
            ]
        );
        // The nested flag is on the wire.
        assert_eq!(&r.attrs[18..20], &[0, 0][..], "CHAIN padding");
        let rule_hdr = 8 + 12;
        assert_eq!(
            u16::from_ne_bytes([r.attrs[rule_hdr + 2], r.attrs[rule_hdr + 3]]),
            attr::RULE | NLA_F_NESTED
        );
        assert_eq!(r.target.table, Some(Table::Filter));
        assert_eq!(r.target.chain.as_deref(), Some("INPUT"));
    }

    #[test]
    fn generation_is_sent_last() {
        for args in [
            &["add", "--generation", "42", "nat", "OUTPUT", "accept"][..],
            &["add", "nat", "OUTPUT", "accept", "--generation", "42"][..],
        ] {
            let r = req(args);
            assert_eq!(
                types(&r),
                vec![attr::TABLE, attr::CHAIN, attr::RULE, attr::GENERATION]
            );
            assert_eq!(get(&r, attr::TABLE), vec![Table::Nat as u8]);
            assert_eq!(get(&r, attr::GENERATION), 42u64.to_ne_bytes());
            assert_eq!(r.target.generation, Some(42));
        }
        let r = req(&["delete", "filter", "INPUT", "7", "--generation", "3"]);
        assert_eq!(
            types(&r),
            vec![attr::TABLE, attr::CHAIN, attr::HANDLE, attr::GENERATION]
        );
        let r = req(&[
            "replace",
            "--generation",
            "1",
            "filter",
            "INPUT",
            "7",
            "drop",
        ]);
        assert_eq!(
            types(&r),
            vec![
                attr::TABLE,
                attr::CHAIN,
                attr::RULE,
                attr::HANDLE,
                attr::GENERATION
            ]
        );
        let r = req(&["insert", "--generation", "9", "filter", "INPUT", "drop"]);
        assert_eq!(
            types(&r),
            vec![
                attr::TABLE,
                attr::CHAIN,
                attr::RULE,
                attr::POSITION,
                attr::GENERATION
            ]
        );
    }

    #[test]
    fn insert_positions_are_one_based() {
        let r = req(&["insert", "filter", "INPUT", "iif", "lo", "accept"]);
        assert_eq!(r.cmd, cmd::NEW_RULE);
        assert_eq!(
            types(&r),
            vec![attr::TABLE, attr::CHAIN, attr::RULE, attr::POSITION]
        );
        assert_eq!(get(&r, attr::POSITION), 0u32.to_ne_bytes());
        assert_eq!(get(&r, attr::RULE), blob("iif lo accept"));
        let r = req(&["insert", "filter", "INPUT", "at", "3", "drop"]);
        assert_eq!(get(&r, attr::POSITION), 2u32.to_ne_bytes());
        assert_eq!(get(&r, attr::RULE), blob("drop"));
        let r = req(&["insert", "filter", "INPUT", "at", "1", "drop"]);
        assert_eq!(get(&r, attr::POSITION), 0u32.to_ne_bytes());
        let r = req(&["insert", "filter", "INPUT", "at", "4294967296", "drop"]);
        assert_eq!(get(&r, attr::POSITION), u32::MAX.to_ne_bytes());
        assert_eq!(
            local_err(&["insert", "filter", "INPUT", "at", "0", "drop"]),
            "insert: at 'at': expected a position 1, 2, ... (1 is the first rule), got '0'"
        );
        assert_eq!(
            local_err(&["insert", "filter", "INPUT", "at", "x", "drop"]),
            "insert: at 'at': expected a position 1, 2, ... (1 is the first rule), got 'x'"
        );
        assert_eq!(
            local_err(&["insert", "filter", "INPUT", "at", "4294967297", "drop"]),
            "insert: at 'at': expected a position 1, 2, ... (1 is the first rule), got '4294967297'"
        );
        assert_eq!(
            local_err(&["insert", "filter", "INPUT", "at"]),
            "insert: at 'at': expected a position 1, 2, ... (1 is the first rule), got nothing"
        );
        assert_eq!(
            local_err(&["insert", "filter", "INPUT", "at", "2"]),
            "insert: at the end of the rule: expected an action (accept, drop, reject, return, jump CHAIN, goto CHAIN, log, mark set|xor|and|or V, ct mark set|xor|and|or|save|restore, notrack, snat to ADDR, dnat to ADDR, masquerade, redirect), got nothing"
        );
    }

    #[test]
    fn replace_names_the_handle() {
        let r = req(&[
            "replace", "filter", "INPUT", "17", "proto", "udp", "dport", "53", "accept",
        ]);
        assert_eq!(r.cmd, cmd::NEW_RULE);
        assert_eq!(
            types(&r),
            vec![attr::TABLE, attr::CHAIN, attr::RULE, attr::HANDLE]
        );
        assert_eq!(get(&r, attr::HANDLE), 17u64.to_ne_bytes());
        assert_eq!(get(&r, attr::RULE), blob("proto udp dport 53 accept"));
        assert_eq!(r.target.handle, Some(17));
    }

    #[test]
    fn delete_by_handle_or_rule() {
        let r = req(&["delete", "filter", "INPUT", "5"]);
        assert_eq!(r.cmd, cmd::DEL_RULE);
        assert_eq!(
            attrs(&r),
            vec![
                (attr::TABLE, false, vec![FILTER]),
                (attr::CHAIN, false, cstr("INPUT")),
                (attr::HANDLE, false, 5u64.to_ne_bytes().to_vec()),
            ]
        );
        assert_eq!(r.target.handle, Some(5));
        let r = req(&[
            "delete", "mangle", "WEB", "proto", "tcp", "dport", "5", "accept",
        ]);
        assert_eq!(
            attrs(&r),
            vec![
                (attr::TABLE, false, vec![Table::Mangle as u8]),
                (attr::CHAIN, false, cstr("WEB")),
                (attr::RULE, true, blob("proto tcp dport 5 accept")),
            ]
        );
        assert!(r.target.by_rule);
        assert_eq!(
            local_err(&["delete", "filter", "INPUT", "99999999999999999999"]),
            "delete: at '99999999999999999999': the handle is too large"
        );
        assert_eq!(
            local_err(&["delete", "filter", "INPUT", "reject", "with", "tcp-reset"]),
            "delete: at 'reject': 'with tcp-reset' needs 'proto tcp'"
        );
    }

    #[test]
    fn list_and_save_dump() {
        let r = req(&["list"]);
        assert_eq!(r.cmd, cmd::GET_RULES);
        assert!(r.dump);
        assert!(r.attrs.is_empty());
        // A chain is picked out of the table's listing, so that references
        // to it can be counted: only the table is sent.
        for args in [
            &["list", "nat"][..],
            &["list", "nat", "POSTROUTING", "-v"][..],
        ] {
            let r = req(args);
            assert_eq!(
                attrs(&r),
                vec![(attr::TABLE, false, vec![Table::Nat as u8])]
            );
        }
        let r = req(&["save"]);
        assert_eq!((r.cmd, r.dump, r.attrs.len()), (cmd::GET_RULES, true, 0));
    }

    #[test]
    fn flush_and_zero_scopes() {
        for (word, command) in [("flush", cmd::FLUSH), ("zero", cmd::ZERO)] {
            let r = req(&[word]);
            assert_eq!((r.cmd, r.dump), (command, false));
            assert!(r.attrs.is_empty());
            let r = req(&[word, "raw"]);
            assert_eq!(
                attrs(&r),
                vec![(attr::TABLE, false, vec![Table::Raw as u8])]
            );
            let r = req(&[word, "filter", "WEB"]);
            assert_eq!(
                attrs(&r),
                vec![
                    (attr::TABLE, false, vec![FILTER]),
                    (attr::CHAIN, false, cstr("WEB"))
                ]
            );
        }
    }

    #[test]
    fn policy() {
        let r = req(&["policy", "filter", "FORWARD", "drop"]);
        assert_eq!(r.cmd, cmd::SET_POLICY);
        assert_eq!(
            attrs(&r),
            vec![
                (attr::TABLE, false, vec![FILTER]),
                (attr::CHAIN, false, cstr("FORWARD")),
                (attr::POLICY, false, vec![Policy::Drop as u8]),
            ]
        );
        let r = req(&["policy", "raw", "PREROUTING", "accept"]);
        assert_eq!(get(&r, attr::POLICY), vec![Policy::Accept as u8]);
        assert_eq!(
            local_err(&["policy", "raw", "INPUT", "drop"]),
            "policy: at 'INPUT': only built-in chains have a policy; those of table raw are PREROUTING, OUTPUT"
        );
    }

    #[test]
    fn chains() {
        let r = req(&["chain", "add", "filter", "WEB"]);
        assert_eq!((r.op, r.cmd), ("chain add", cmd::NEW_CHAIN));
        assert_eq!(
            attrs(&r),
            vec![
                (attr::TABLE, false, vec![FILTER]),
                (attr::CHAIN, false, cstr("WEB"))
            ]
        );
        for word in ["delete", "del"] {
            let r = req(&["chain", word, "filter", "WEB"]);
            assert_eq!((r.op, r.cmd), ("chain delete", cmd::DEL_CHAIN));
            assert_eq!(
                attrs(&r),
                vec![
                    (attr::TABLE, false, vec![FILTER]),
                    (attr::CHAIN, false, cstr("WEB"))
                ]
            );
        }
        let r = req(&["chain", "rename", "nat", "WEB", "web2"]);
        assert_eq!((r.op, r.cmd), ("chain rename", cmd::RENAME_CHAIN));
        assert_eq!(
            attrs(&r),
            vec![
                (attr::TABLE, false, vec![Table::Nat as u8]),
                (attr::CHAIN, false, cstr("WEB")),
                (attr::NEW_NAME, false, cstr("web2")),
            ]
        );
        assert_eq!(
            local_err(&["chain", "add", "filter", "OUTPUT"]),
            "chain add: at 'OUTPUT': PREROUTING, INPUT, FORWARD, OUTPUT and POSTROUTING are built-in chain names"
        );
        assert_eq!(
            local_err(&["chain", "rename", "filter", "A", "b/c"]),
            "chain rename: at 'b/c': a name has only letters, digits, '_', '-' and '.', and does not start with '-'"
        );
        assert_eq!(
            local_err(&[
                "chain",
                "add",
                "filter",
                "a-very-long-chain-name-of-32-chars"
            ]),
            "chain add: at 'a-very-long-chain-name-of-32-chars': a name has 1 to 31 characters"
        );
    }

    #[test]
    fn rule_errors_name_the_word() {
        assert_eq!(
            local_err(&["add", "filter", "INPUT", "proto", "tcp", "dport", "80x", "accept"]),
            "add: at 'dport': expected a port or range like 80 or 1000-2000, got '80x'"
        );
        assert_eq!(
            local_err(&["replace", "filter", "INPUT", "3", "frobnicate"]),
            "replace: at 'frobnicate': unknown word; expected a match (ip, ip6, proto, saddr, daddr, sport, dport, iif, oif, tcp flags, icmp type, mark, ct state, ct status, ct direction, ct mark, limit, uid, gid, payload contains, random, nth, comment) or an action (accept, drop, reject, return, jump CHAIN, goto CHAIN, log, mark set|xor|and|or V, ct mark set|xor|and|or|save|restore, notrack, snat to ADDR, dnat to ADDR, masquerade, redirect)"
        );
    }

    #[test]
    fn restore_sends_every_table() {
        let text =
            "table filter\npolicy INPUT drop\nchain WEB\nadd INPUT jump WEB\nadd WEB accept\n";
        let r = restore_request(text, Some(8)).unwrap();
        assert_eq!(
            (r.op, r.cmd, r.dump),
            ("restore", cmd::REPLACE_RULESET, false)
        );
        assert_eq!(types(&r), vec![attr::RULESET, attr::GENERATION]);
        assert!(attrs(&r)[0].1, "RULESET is nested");
        assert_eq!(get(&r, attr::GENERATION), 8u64.to_ne_bytes());
        let payload = get(&r, attr::RULESET);
        let tables: Vec<_> = rnf_core::ruleset_msg::ruleset_tables(&payload)
            .map(|t| t.unwrap())
            .collect();
        assert_eq!(
            tables.iter().map(|t| t.table).collect::<Vec<_>>(),
            Table::ALL.to_vec()
        );
        let summary: Vec<Vec<(String, Option<Policy>, usize)>> = tables
            .iter()
            .map(|t| {
                t.chains()
                    .map(|c| {
                        let c = c.unwrap();
                        (c.name.to_string(), c.policy, c.rules().count())
                    })
                    .collect()
            })
            .collect();
        let a = Some(Policy::Accept);
        let s = |n: &str| n.to_string();
        assert_eq!(
            summary,
            vec![
                vec![(s("PREROUTING"), a, 0), (s("OUTPUT"), a, 0)],
                vec![
                    (s("PREROUTING"), a, 0),
                    (s("INPUT"), a, 0),
                    (s("FORWARD"), a, 0),
                    (s("OUTPUT"), a, 0),
                    (s("POSTROUTING"), a, 0),
                ],
                vec![
                    (s("PREROUTING"), a, 0),
                    (s("INPUT"), a, 0),
                    (s("OUTPUT"), a, 0),
                    (s("POSTROUTING"), a, 0),
                ],
                vec![
                    (s("INPUT"), Some(Policy::Drop), 1),
                    (s("FORWARD"), a, 0),
                    (s("OUTPUT"), a, 0),
                    (s("WEB"), None, 1),
                ],
            ]
        );
        let filter_input = tables[3].chains().next().unwrap().unwrap();
        let rules: Vec<_> = filter_input.rules().map(|r| r.unwrap().to_vec()).collect();
        assert_eq!(rules, vec![blob("jump WEB")]);
        let r = restore_request("", None).unwrap();
        assert_eq!(types(&r), vec![attr::RULESET]);
        let e =
            restore_request("table filter\n\nadd INPUT reject with tcp-reset\n", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "restore: line 3: at 'reject': 'with tcp-reset' needs 'proto tcp'"
        );
    }

    /// Every item of a restore request, as the kernel reads it.
    fn restore_items(r: &Request) -> Vec<String> {
        rnf_core::ruleset_msg::RulesetItems::new(&r.attrs)
            .map(|i| format!("{:?}", i.unwrap()))
            .collect()
    }

    #[test]
    fn large_restore_is_split_into_parts_of_one_request() {
        let mut text = String::from("table filter\npolicy INPUT drop\nchain BLOCK\n");
        for i in 0..5000 {
            text.push_str(&format!(
                "add BLOCK ip saddr 10.{}.{}.0/24 proto tcp dport {} drop\n",
                i / 256,
                i % 256,
                1000 + i
            ));
        }
        text.push_str("add INPUT jump BLOCK\ntable raw\nadd PREROUTING notrack\n");
        let r = restore_request(&text, Some(3)).unwrap();
        assert_eq!((r.cmd, r.dump), (cmd::REPLACE_RULESET, false));
        let t = types(&r);
        assert_eq!(t.last(), Some(&attr::GENERATION));
        let parts = &t[..t.len() - 1];
        assert!(parts.len() > 2, "{} parts", parts.len());
        assert!(parts.iter().all(|ty| *ty == attr::RULESET_PART));
        assert!(attrs(&r)
            .iter()
            .filter(|a| a.0 == attr::RULESET_PART)
            .all(|a| a.1 && a.2.len() + 4 <= rnf_core::ruleset_msg::PART_SIZE));
        // The kernel reads the same rule set as from one big RULESET.
        let file = rulefile::parse(&text).unwrap();
        let single = request::encode(|w| {
            let n = w.begin_nested(attr::RULESET);
            file.encode(w);
            // A measuring writer does not check nested lengths until the end.
            w.end_nested(n);
        });
        assert!(single.is_err(), "too large for one attribute");
        let small = restore_file_request(&file, Some(3), 1 << 20).unwrap();
        let items = restore_items(&r);
        assert_eq!(items, restore_items(&small));
        assert_eq!(
            items.iter().filter(|i| i.starts_with("Rule(")).count(),
            5002
        );
        // Tiny parts read the same too.
        assert_eq!(
            restore_items(&restore_file_request(&file, Some(3), 64).unwrap()),
            items
        );
    }

    #[test]
    fn kernel_refusal_of_a_restore_names_the_line() {
        let text = "table filter\nchain WEB\n\nadd WEB accept\nadd WEB drop\n";
        let file = rulefile::parse(text).unwrap();
        let refused = |m: &str| Error::Refused {
            op: "restore",
            errno: libc::EINVAL,
            ext_ack: Some(m.to_string()),
            target: Box::default(),
        };
        let e = restore_error_line(
            refused("filter WEB rule 2: rule: malformed rule attributes"),
            &file,
        );
        assert_eq!(
            e.to_string(),
            "restore: line 5: the kernel refused rule 2 of chain 'WEB' in table filter: rule: malformed rule attributes; nothing was changed"
        );
        // Messages that name no rule of the file are kept.
        let e = restore_error_line(refused("filter WEB rule 3: x"), &file);
        assert!(matches!(e, Error::Refused { .. }));
        let e = restore_error_line(refused("table filter given twice"), &file);
        assert!(matches!(e, Error::Refused { .. }));
    }

    #[test]
    fn save_restore_save_is_identical() {
        let text = "\
# rnf rule set (rnfctl save); load it with: rnfctl restore < FILE
# generation 5
table raw
policy PREROUTING accept
policy OUTPUT accept

table mangle
policy PREROUTING accept
policy INPUT accept
policy FORWARD accept
policy OUTPUT accept
policy POSTROUTING accept
add PREROUTING iif eth+ mark set 0x10

table nat
policy PREROUTING accept
policy INPUT accept
policy OUTPUT accept
policy POSTROUTING accept

table filter
policy INPUT drop
policy FORWARD drop
policy OUTPUT accept
chain LOGDROP
chain WEB
add INPUT iif lo accept
add INPUT ip proto tcp saddr 10.0.0.0/8 dport 22 accept
add INPUT proto tcp dport 80,443 jump WEB
add INPUT goto LOGDROP
add LOGDROP limit 5/minute burst 5 log prefix \"drop: \" level info
add LOGDROP reject with icmp-host-prohibited
add WEB payload contains \"GET /admin\" comment \"no \\\"admin\\\" here\" drop
add WEB return
";
        let r = restore_request(text, None).unwrap();
        let dump = kernel_after_restore(&r, 5);
        let l = Listing::decode("save", &dump).unwrap();
        let saved = rulefile::save(&l).unwrap();
        assert_eq!(saved, text);
        // And once more from the saved text.
        let r2 = restore_request(&saved, None).unwrap();
        assert_eq!(r2, r);
    }

    #[test]
    fn handle_of_the_reply() {
        let replies = vec![reply(cmd::NEW_RULE, |w| {
            w.put_u64(attr::GENERATION, 3);
            w.put_u64(attr::HANDLE, 12);
        })];
        assert_eq!(reply_handle("add", &replies).unwrap(), 12);
        let e = reply_handle("add", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "add: bad reply from the kernel: the kernel did not send the new rule's handle"
        );
        let bad = vec![reply(cmd::NEW_RULE, |w| w.put_u32(attr::HANDLE, 12))];
        assert_eq!(
            reply_handle("add", &bad).unwrap_err().to_string(),
            "add: bad reply from the kernel: bad length in netlink data"
        );
    }

    /// The kernel's answer to `r` as rnfctl shows it.
    fn refused(r: &Request, errno: i32, ack: Option<&str>) -> String {
        let e = Error::Kernel {
            op: r.op,
            errno,
            ext_ack: ack.map(str::to_owned),
        }
        .about(&r.target);
        e.to_string()
    }

    #[test]
    fn kernel_refusals_in_words() {
        let add = req(&["add", "filter", "FOO", "accept"]);
        assert_eq!(
            refused(&add, libc::ENOENT, Some("chain not found")),
            "add: no chain 'FOO' in table filter (kernel: chain not found)"
        );
        let add = req(&["add", "filter", "input", "accept"]);
        assert_eq!(
            refused(&add, libc::ENOENT, None),
            "add: no chain 'input' in table filter; chain names are case-sensitive: did you mean INPUT?"
        );
        let rep = req(&["replace", "filter", "INPUT", "9", "drop"]);
        assert_eq!(
            refused(&rep, libc::ENOENT, Some("rule handle not found")),
            "replace: no rule with handle 9 in chain 'INPUT' of table filter (kernel: rule handle not found)"
        );
        assert_eq!(
            refused(&rep, libc::ENOENT, Some("chain not found")),
            "replace: no chain 'INPUT' in table filter (kernel: chain not found)"
        );
        let del = req(&["delete", "filter", "INPUT", "drop"]);
        assert_eq!(
            refused(&del, libc::ENOENT, None),
            "delete: no rule in chain 'INPUT' of table filter is exactly like this one (list the chain to see its rules, or delete by handle)"
        );
        let jump = req(&["add", "filter", "INPUT", "jump", "NOPE"]);
        assert_eq!(
            refused(&jump, libc::EINVAL, Some("jump: no chain NOPE")),
            "add: the kernel refused the request as invalid (kernel: jump: no chain NOPE)"
        );
        let ca = req(&["chain", "add", "filter", "WEB"]);
        assert_eq!(
            refused(&ca, libc::EEXIST, Some("chain exists")),
            "chain add: table filter already has a chain 'WEB' (kernel: chain exists)"
        );
        let cr = req(&["chain", "rename", "filter", "WEB", "API"]);
        assert_eq!(
            refused(&cr, libc::EEXIST, None),
            "chain rename: table filter already has a chain 'API'"
        );
        let cd = req(&["chain", "delete", "filter", "WEB"]);
        assert_eq!(
            refused(&cd, libc::EBUSY, Some("chain is busy")),
            "chain delete: chain 'WEB' in table filter is in use: it has rules, or rules jump or go to it (kernel: chain is busy)"
        );
        assert_eq!(
            refused(&cd, libc::EBUSY, Some("chain 'WEB' is not empty (2 rules): flush it first")),
            "chain delete: chain 'WEB' in table filter still has rules (empty it first with: rnfctl flush filter WEB) (kernel: chain 'WEB' is not empty (2 rules): flush it first)"
        );
        assert_eq!(
            refused(&cr, libc::EBUSY, Some("chain 'WEB' is the target of a jump or goto")),
            "chain rename: rules jump or go to chain 'WEB' in table filter; delete or replace them first (kernel: chain 'WEB' is the target of a jump or goto)"
        );
        let ins = req(&["insert", "filter", "INPUT", "at", "9", "drop"]);
        assert_eq!(
            refused(&ins, libc::ERANGE, Some("position 8 is past the end of chain 'INPUT' (2 rules)")),
            "insert: position 9 is past the end of chain 'INPUT' in table filter ('add' appends) (kernel: position 8 is past the end of chain 'INPUT' (2 rules))"
        );
        let nope = req(&["add", "filter", "INPUT", "jump", "NOPE"]);
        let ack = "chain 'INPUT' rule 3: jump or goto to a chain that does not exist in this table";
        for errno in [libc::EINVAL, libc::ENOENT] {
            assert_eq!(
                refused(&nope, errno, Some(ack)),
                format!("add: the rule jumps or goes to a chain that table filter does not have (create it with: rnfctl chain add filter NAME) (kernel: {ack})")
            );
        }
        let j = req(&["add", "filter", "WEB", "jump", "API"]);
        assert_eq!(
            refused(&j, libc::ELOOP, Some("jump loop")),
            "add: the jumps and gotos between chains would form a loop or nest deeper than 16 chains (kernel: jump loop)"
        );
        for errno in [libc::E2BIG, libc::ENOSPC] {
            assert_eq!(
                refused(&j, errno, None),
                "add: a limit of rnf was reached (at most 131072 rules per table, 1024 chains per table, 4096 bytes per rule)"
            );
        }
        let g = req(&["add", "--generation", "41", "filter", "INPUT", "drop"]);
        assert_eq!(
            refused(&g, libc::ESTALE, Some("stale generation")),
            "the rule set changed since generation 41 (another writer); list again and retry"
        );
        let e = Error::Kernel {
            op: "add",
            errno: libc::EPERM,
            ext_ack: None,
        }
        .about(&g.target);
        assert_eq!(e.exit_code(), crate::error::EXIT_PERMISSION);
        assert!(e.to_string().starts_with("permission denied"), "{e}");
        let odd = refused(&g, libc::EIO, None);
        assert_eq!(odd, "add: Input/output error (EIO)");
        let odd = refused(&g, 4000, None);
        assert!(odd.ends_with("(errno 4000)") && odd.len() > 20, "{odd}");
    }
}
