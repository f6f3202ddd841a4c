// SPDX-License-Identifier: GPL-2.0-only

//! The rule commands: from the command line to requests ([`build`], pure,
//! so tests can check every request), and running them against the kernel.

use std::io::Read;

use rnf_core::netlink::GenlMsgHdr;
use rnf_core::rules::{validate_chain_name, Policy, Table};
use rnf_core::wire::{self, attr, cmd, AttrIter, WireError};

use crate::cli::{ChainCommand, Command, ListArgs};
use crate::error::Error;
use crate::listing::{self, HumanOpts, Listing};
use crate::nl::GenlSocket;
use crate::request::{self, Place, Request, Which};
use crate::rule_parse::parse_rule;
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
            let blob = rule("add", &a.rule)?;
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
            let blob = rule("insert", words)?;
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
            let blob = rule("replace", &a.rule)?;
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
        Command::Status(_) | Command::Restore(_) => Err(Error::invalid(
            "rnfctl",
            "internal: this command has no single request",
        )),
    }
}

/// The `REPLACE_RULESET` request for the rule file `text`.
pub fn restore_request(text: &str, generation: Option<u64>) -> Result<Request, Error> {
    let file = rulefile::parse(text).map_err(|e| Error::invalid("restore", e.to_string()))?;
    request::replace_ruleset(|w| file.encode(w), generation).map_err(wire_err("restore"))
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
            let r = restore_request(&text, a.write.generation)?;
            if a.check {
                return Ok(String::new());
            }
            Conn::open()?.send(&r)?;
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
