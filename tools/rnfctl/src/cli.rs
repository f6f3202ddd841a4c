// SPDX-License-Identifier: GPL-2.0-only

//! Command-line syntax. Each subcommand has its own arguments struct so that
//! new commands (add, insert, delete, list, flush, policy, chain, save,
//! restore, conntrack, monitor) slot in as further variants.

use clap::{Args, Parser, Subcommand, ValueEnum};
use rnf_core::rules::{Policy, Table};

/// The rule syntax, shown by `--help` of the commands that take a rule.
pub const RULE_HELP: &str = "\
RULE: [MATCH...] ACTION. Matches come in any order, each at most once; all must hold.

Matches:
  ip | ip6                       only IPv4 / only IPv6 (default: both; implied by addresses)
  proto tcp|udp|icmp|icmpv6|sctp|udplite|dccp|gre|esp|ah|N
  saddr [!] CIDR[,CIDR...]       source address or prefix (10.0.0.0/8, 2001:db8::1)
  daddr [!] CIDR[,CIDR...]       destination address or prefix
  sport [!] P[-Q][,...]          source port(s) (needs proto tcp, udp, sctp, udplite or dccp)
  dport [!] P[-Q][,...]          destination port(s)
  iif [!] NAME                   input interface; a trailing + matches a prefix (eth+)
  oif [!] NAME                   output interface
  tcp flags SET / MASK           of the flags in MASK exactly those in SET are set
                                 (flags: fin syn rst psh ack urg ece cwr, comma-separated, or none)
  icmp type NAME|N [code C]      ICMP/ICMPv6 type (echo-request, destination-unreachable, ...)
  mark [!] V[/M]                 packet mark (masked)
  ct state [!] new|established|related|invalid|untracked[,...]   conntrack state
  ct status [!] expected|seen-reply|assured|confirmed|snat|dnat[,...]   any of these flow bits
  ct direction [!] original|reply   direction of the packet in its flow
  ct mark [!] V[/M]              the flow's mark (masked)
  limit N/second|minute|hour|day [burst B]   rate limit (default burst 5)
  uid N | gid N                  owner of a locally generated packet
  payload contains TEXT          the transport payload contains TEXT
  random P                       with probability P (0 to 1)
  nth N                          every N-th packet
  comment TEXT                   a note kept with the rule

Actions (last word or words):
  accept | drop | return
  reject [with tcp-reset|icmp-port-unreachable|icmp-host-unreachable|icmp-net-unreachable|
         icmp-proto-unreachable|icmp-net-prohibited|icmp-host-prohibited|icmp-admin-prohibited]
  jump CHAIN                     continue in a user chain, come back at its end or on return
  goto CHAIN                     continue in a user chain without coming back
  log [prefix TEXT] [level emerg|alert|crit|err|warning|notice|info|debug|0-7]   (non-terminal)
  mark set|xor|and|or V          change the packet mark (non-terminal)
  ct mark set V[/M] | ct mark xor|and|or V | ct mark save|restore [mask M]
                                 change the flow's mark, or copy it to/from the packet mark
  notrack                        exempt from connection tracking (raw table; non-terminal)
  dnat to ADDR[-ADDR][:PORT[-PORT]] [random] [persistent]
                                 destination NAT (nat PREROUTING, OUTPUT); IPv6: [fd00::1]:80
  snat to ADDR[-ADDR][:PORT[-PORT]] [random] [fully-random] [persistent]
                                 source NAT (nat POSTROUTING, INPUT)
  masquerade [to PORT[-PORT]] [random] [fully-random]
                                 source NAT to the outgoing interface's address (nat POSTROUTING)
  redirect [to PORT[-PORT]] [random]
                                 to the local host (nat PREROUTING, OUTPUT)
  (ports in NAT actions need proto tcp, udp, udplite, sctp or dccp)

Quote TEXT for the shell when it has blanks: comment 'ssh from the office'.
A word starting with '-' must come after '--'.

Examples:
  rnfctl add filter INPUT proto tcp dport 22 saddr 10.0.0.0/8 accept
  rnfctl add filter INPUT proto tcp dport 80,443 tcp flags syn / syn,ack,rst,fin limit 50/second accept
  rnfctl insert filter INPUT at 2 iif lo accept
  rnfctl add filter INPUT payload contains \"GET /admin\" log prefix \"admin: \" level info
  rnfctl add filter INPUT icmp type echo-request limit 1/second burst 10 accept
  rnfctl add filter FORWARD ip6 daddr ! 2001:db8::/32 reject with icmp-admin-prohibited
  rnfctl add mangle PREROUTING iif eth+ mark set 0x10
  rnfctl add filter INPUT ct state established,related accept
  rnfctl add nat PREROUTING proto tcp dport 8445 redirect to 8443
  rnfctl add nat PREROUTING iif eth0 proto tcp dport 2222 dnat to 10.0.2.2:22
  rnfctl add nat POSTROUTING saddr 10.0.1.0/24 oif eth0 masquerade
  rnfctl chain add filter WEB && rnfctl add filter INPUT proto tcp dport 80 jump WEB
  rnfctl replace filter INPUT 7 proto tcp dport 2222 accept
  rnfctl delete filter INPUT 7
  rnfctl delete filter INPUT proto tcp dport 22 saddr 10.0.0.0/8 accept
";

/// The rule-file format, shown by `rnfctl save --help` and `restore --help`.
pub const FILE_HELP: &str = "\
Rule file format (what save writes and restore reads), one item per line:

  # rnf rule set (rnfctl save)
  # generation 42
  table filter
  policy INPUT drop
  policy FORWARD accept
  policy OUTPUT accept
  chain WEB
  add INPUT proto tcp dport 22 saddr 10.0.0.0/8 accept
  add INPUT proto tcp dport 80,443 jump WEB
  add WEB payload contains \"GET /admin\" drop

  table NAME             starts the part of a table: raw, mangle, nat or filter (each once)
  policy CHAIN accept|drop   policy of a built-in chain of that table (default accept)
  chain NAME             declares a user chain (before the 'add' lines that append to it)
  add CHAIN RULE         appends a rule to a chain, in the rule syntax of 'rnfctl add --help'
  # ...                  a comment line; blank lines are ignored

Words are separated by blanks; double quotes group words, and inside them \\\", \\\\
and \\xHH are escapes. The file describes the whole rule set: restore replaces every
table at once (atomically), and a table the file does not mention ends up with
empty built-in chains that accept. Counters start from zero.
save prints every table, built-in chains first, user chains by name, rules in
order, each rule in canonical form, so that save, restore, save gives the same
text again (except the generation comment, which restore advances).
";

/// Control the rnf kernel firewall.
#[derive(Debug, Parser)]
#[command(name = "rnfctl", version = rnf_core::VERSION, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// rnfctl's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the module's version and per-hook packet counters.
    Status(StatusArgs),
    /// Append a rule to a chain.
    #[command(after_help = RULE_HELP)]
    Add(AddArgs),
    /// Insert a rule into a chain: at position N (1 is first, the default).
    #[command(after_help = RULE_HELP)]
    Insert(InsertArgs),
    /// Replace the rule with a handle by another (counters start from zero).
    #[command(after_help = RULE_HELP)]
    Replace(ReplaceArgs),
    /// Delete a rule, by handle or by its text (the first rule exactly like it).
    #[command(after_help = RULE_HELP)]
    Delete(DeleteArgs),
    /// List chains with positions, handles and (with -v) counters.
    List(ListArgs),
    /// Delete every rule of every table, of a table, or of a chain.
    Flush(ScopeArgs),
    /// Reset the counters of every table, of a table, or of a chain.
    Zero(ScopeArgs),
    /// Set the policy of a built-in chain.
    Policy(PolicyArgs),
    /// Add, delete or rename a user chain.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Print the whole rule set as a rule file (on standard output).
    #[command(after_help = FILE_HELP)]
    Save(SaveArgs),
    /// Replace the whole rule set, atomically, by a rule file.
    #[command(after_help = FILE_HELP)]
    Restore(RestoreArgs),
    /// Show and change the connection-tracking table (flows, limit, timeouts).
    #[command(subcommand)]
    Conntrack(ConntrackCommand),
    /// Print events as the kernel reports them, until interrupted.
    #[command(subcommand)]
    Monitor(MonitorCommand),
    /// Show or set whether hooks without rules count packets for `status`.
    #[command(after_help = HOOK_COUNTERS_HELP)]
    HookCounters {
        /// on or off (nothing: show).
        state: Option<OnOff>,
    },
}

/// A switch as a clap value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Switched on.
    On,
    /// Switched off.
    Off,
}

/// The help text after `rnfctl hook-counters --help`.
pub const HOOK_COUNTERS_HELP: &str = "\
On, every hook counts the packets that pass it for `rnfctl status`: hooks
without rules are hooked only to count. Off (the default in a new
namespace, unless rnf was loaded with hook_counters=1), only stages with
rules are hooked and count, and the policy counters of empty chains stand
still: a namespace without rules costs its packets nothing, as without a
firewall. The setting is per network namespace.
";

/// A table name as a clap value.
pub fn parse_table(s: &str) -> Result<Table, String> {
    Table::from_name(s)
        .ok_or_else(|| format!("unknown table '{s}'; expected raw, mangle, nat or filter"))
}

/// A policy as a clap value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Accept packets that reach the end of the chain.
    Accept,
    /// Drop packets that reach the end of the chain.
    Drop,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Accept => Policy::Accept,
            PolicyArg::Drop => Policy::Drop,
        }
    }
}

/// Arguments of `rnfctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (every stage of every hook).
    #[arg(long)]
    pub json: bool,
    /// One row per stage, with its priority.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Options of the commands that change rules.
#[derive(Debug, Args, Clone, Copy, PartialEq, Eq)]
pub struct WriteOpts {
    /// Refuse the change if the rule set is no longer at generation N
    /// (as shown by list --json or save): another writer came in between.
    #[arg(long, value_name = "N")]
    pub generation: Option<u64>,
}

/// Arguments of `rnfctl add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// raw, mangle, nat or filter.
    #[arg(value_parser = parse_table)]
    pub table: Table,
    /// Chain (built-in chains are upper case: INPUT, OUTPUT, ...).
    pub chain: String,
    /// The rule: [MATCH...] ACTION (see below).
    #[arg(required = true, value_name = "RULE")]
    pub rule: Vec<String>,
    /// Print the new rule's handle ("handle N").
    #[arg(long)]
    pub echo: bool,
    #[command(flatten)]
    pub write: WriteOpts,
}

/// Arguments of `rnfctl insert`.
#[derive(Debug, Args)]
pub struct InsertArgs {
    /// raw, mangle, nat or filter.
    #[arg(value_parser = parse_table)]
    pub table: Table,
    /// Chain.
    pub chain: String,
    /// [at N] and the rule: [MATCH...] ACTION (see below). N is 1-based.
    #[arg(required = true, value_name = "RULE")]
    pub rule: Vec<String>,
    /// Print the new rule's handle ("handle N").
    #[arg(long)]
    pub echo: bool,
    #[command(flatten)]
    pub write: WriteOpts,
}

/// Arguments of `rnfctl replace`.
#[derive(Debug, Args)]
pub struct ReplaceArgs {
    /// raw, mangle, nat or filter.
    #[arg(value_parser = parse_table)]
    pub table: Table,
    /// Chain.
    pub chain: String,
    /// Handle of the rule to replace (see list).
    pub handle: u64,
    /// The new rule: [MATCH...] ACTION (see below).
    #[arg(required = true, value_name = "RULE")]
    pub rule: Vec<String>,
    /// Print the rule's handle ("handle N").
    #[arg(long)]
    pub echo: bool,
    #[command(flatten)]
    pub write: WriteOpts,
}

/// Arguments of `rnfctl delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// raw, mangle, nat or filter.
    #[arg(value_parser = parse_table)]
    pub table: Table,
    /// Chain.
    pub chain: String,
    /// A handle, or the rule: [MATCH...] ACTION (see below).
    #[arg(required = true, value_name = "HANDLE|RULE")]
    pub rule: Vec<String>,
    #[command(flatten)]
    pub write: WriteOpts,
}

/// Arguments of `rnfctl list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this table.
    #[arg(value_parser = parse_table)]
    pub table: Option<Table>,
    /// Only this chain of the table.
    pub chain: Option<String>,
    /// Exact counters (without -n, large ones are shortened: 123K, 45M).
    #[arg(short, long)]
    pub numeric: bool,
    /// Show packet and byte counters of rules and policies.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print JSON: every field, exact counters, and the generation.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `rnfctl flush` and `rnfctl zero`.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Only this table.
    #[arg(value_parser = parse_table)]
    pub table: Option<Table>,
    /// Only this chain of the table.
    pub chain: Option<String>,
}

/// Arguments of `rnfctl policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// raw, mangle, nat or filter.
    #[arg(value_parser = parse_table)]
    pub table: Table,
    /// A built-in chain of the table.
    pub chain: String,
    /// What happens to packets that reach the end of the chain.
    #[arg(value_enum)]
    pub policy: PolicyArg,
}

/// `rnfctl chain ...`.
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Create a user chain.
    Add {
        /// raw, mangle, nat or filter.
        #[arg(value_parser = parse_table)]
        table: Table,
        /// Name: letters, digits, '_', '-', '.', at most 31, case-sensitive.
        name: String,
    },
    /// Delete a user chain; it must be empty and no rule may jump or go to it.
    #[command(alias = "del")]
    Delete {
        /// raw, mangle, nat or filter.
        #[arg(value_parser = parse_table)]
        table: Table,
        /// Name.
        name: String,
    },
    /// Rename a user chain; no rule may jump or go to it.
    Rename {
        /// raw, mangle, nat or filter.
        #[arg(value_parser = parse_table)]
        table: Table,
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
}

/// Arguments of `rnfctl save`.
#[derive(Debug, Args)]
pub struct SaveArgs {}

/// Arguments of `rnfctl restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Read the rule file from FILE instead of standard input ('-').
    #[arg(default_value = "-")]
    pub file: String,
    /// Only check the file; send nothing.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub write: WriteOpts,
}

/// The flow filters, shown by `rnfctl conntrack list --help` and `delete --help`.
pub const CT_FILTER_HELP: &str = "\
Filters (all given must hold; addresses and ports are those of the original direction,
the packet that created the flow, like conntrack -L -s/-d):
  -f ipv4|ipv6            address family
  -p PROTO                tcp, udp, icmp, icmpv6, sctp, udplite, dccp, gre, esp, ah or a number
  -s ADDR[/LEN]           source address or prefix
  -d ADDR[/LEN]           destination address or prefix
  --sport N, --dport N    source / destination port (flows with ports only)
  --state STATE           TCP state: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT,
                          LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2 (implies -p tcp)
  --mark V[/M]            connection mark (masked), decimal or 0x hex
  --status S[,S...]       every listed status bit is set: expected, seen-reply, assured,
                          confirmed, snat, dnat (or unreplied: seen-reply is not set)

Examples:
  rnfctl conntrack list -p tcp --dport 22
  rnfctl conntrack list --json -s 10.0.0.0/8 --status assured
  rnfctl conntrack delete -p udp -d 192.0.2.53 --dport 53
";

/// An address family as a clap value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// The flow filters of `conntrack list` and `conntrack delete`; parsed
/// further (and checked) by `conntrack::Filter::from_args`.
#[derive(Debug, Args, Clone, Default, PartialEq, Eq)]
pub struct CtFilterArgs {
    /// Only flows of this address family.
    #[arg(short = 'f', long, value_enum, value_name = "FAMILY")]
    pub family: Option<FamilyArg>,
    /// Only flows of this protocol (name or number).
    #[arg(short = 'p', long = "proto", value_name = "PROTO")]
    pub proto: Option<String>,
    /// Only flows from this source address or prefix (original direction).
    #[arg(short = 's', long = "src", value_name = "ADDR[/LEN]")]
    pub src: Option<String>,
    /// Only flows to this destination address or prefix (original direction).
    #[arg(short = 'd', long = "dst", value_name = "ADDR[/LEN]")]
    pub dst: Option<String>,
    /// Only flows from this source port (original direction).
    #[arg(long, value_name = "N")]
    pub sport: Option<u16>,
    /// Only flows to this destination port (original direction).
    #[arg(long, value_name = "N")]
    pub dport: Option<u16>,
    /// Only TCP flows in this state (ESTABLISHED, TIME_WAIT, ...).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only flows whose mark, masked with M, is V.
    #[arg(long, value_name = "V[/M]")]
    pub mark: Option<String>,
    /// Only flows with all these status bits (assured, seen-reply, ...).
    #[arg(long, value_name = "S[,S...]")]
    pub status: Option<String>,
}

impl CtFilterArgs {
    /// Whether no filter was given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `rnfctl conntrack ...`.
#[derive(Debug, Subcommand)]
pub enum ConntrackCommand {
    /// List flows, one per line like conntrack -L (or as JSON).
    #[command(alias = "ls", after_help = CT_FILTER_HELP)]
    List {
        #[command(flatten)]
        filter: CtFilterArgs,
        /// Print a JSON array of flows.
        #[arg(long)]
        json: bool,
    },
    /// Print the number of flows in the table.
    Count,
    /// Show the table's size, limit and counters.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete the flows that match the filters (at least one filter).
    #[command(alias = "del", after_help = CT_FILTER_HELP)]
    Delete {
        #[command(flatten)]
        filter: CtFilterArgs,
    },
    /// Delete every flow.
    Flush,
    /// Show the most flows the table holds (and how many it holds now), or set it.
    Limit {
        /// New limit (1 or more).
        #[arg(value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
        limit: Option<u32>,
    },
    /// Show all flow timeouts, or set one: PROTO [STATE] SECONDS.
    #[command(after_help = CT_TIMEOUT_HELP)]
    Timeout {
        /// Nothing (show), or PROTO [STATE] SECONDS.
        #[arg(value_name = "PROTO [STATE] SECONDS")]
        words: Vec<String>,
    },
}

/// The timeout keys, shown by `rnfctl conntrack timeout --help`.
pub const CT_TIMEOUT_HELP: &str = "\
Timeouts (seconds, 1 to 2147483):
  tcp syn_sent|syn_recv|established|fin_wait|close_wait|last_ack|time_wait|close|
      syn_sent2|retrans|unacknowledged
  udp unreplied|replied (or stream)
  icmp (also icmpv6)
  generic (every other protocol)

Examples:
  rnfctl conntrack timeout
  rnfctl conntrack timeout tcp established 3600
  rnfctl conntrack timeout udp replied 180
  rnfctl conntrack timeout icmp 10
";

/// `rnfctl monitor ...`.
#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Print flow events ([NEW], [UPDATE], [DESTROY]) like conntrack -E.
    Conntrack {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rnfctl").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn status_flags() {
        let status = |args: &[&str]| match parse(args).unwrap().command {
            Command::Status(a) => a,
            other => panic!("{other:?}"),
        };
        let a = status(&["status", "--json"]);
        assert!(a.json);
        assert!(!a.verbose);
        let a = status(&["status", "-v"]);
        assert!(!a.json);
        assert!(a.verbose);
        let a = status(&["status", "--verbose", "--json"]);
        assert!(a.json && a.verbose);
        let a = status(&["status"]);
        assert!(!a.json && !a.verbose);
    }

    fn cmd(args: &[&str]) -> Command {
        parse(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rule_commands() {
        match cmd(&[
            "add",
            "filter",
            "INPUT",
            "proto",
            "tcp",
            "saddr",
            "!",
            "10.0.0.0/8",
            "accept",
        ]) {
            Command::Add(a) => {
                assert_eq!(a.table, Table::Filter);
                assert_eq!(a.chain, "INPUT");
                assert_eq!(
                    a.rule,
                    words(&["proto", "tcp", "saddr", "!", "10.0.0.0/8", "accept"])
                );
                assert!(!a.echo);
                assert_eq!(a.write.generation, None);
            }
            c => panic!("{c:?}"),
        }
        match cmd(&[
            "add",
            "--echo",
            "nat",
            "OUTPUT",
            "drop",
            "--generation",
            "7",
        ]) {
            Command::Add(a) => {
                assert_eq!(a.table, Table::Nat);
                assert!(a.echo);
                assert_eq!(a.write.generation, Some(7));
                assert_eq!(a.rule, words(&["drop"]));
            }
            c => panic!("{c:?}"),
        }
        // After '--' a word may start with '-'.
        match cmd(&["add", "raw", "OUTPUT", "--", "comment", "-x-", "accept"]) {
            Command::Add(a) => assert_eq!(a.rule, words(&["comment", "-x-", "accept"])),
            c => panic!("{c:?}"),
        }
        match cmd(&["insert", "mangle", "FORWARD", "at", "2", "drop", "--echo"]) {
            Command::Insert(a) => {
                assert_eq!(a.table, Table::Mangle);
                assert_eq!(a.chain, "FORWARD");
                assert_eq!(a.rule, words(&["at", "2", "drop"]));
                assert!(a.echo);
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["replace", "filter", "WEB", "12", "return"]) {
            Command::Replace(a) => {
                assert_eq!((a.chain.as_str(), a.handle), ("WEB", 12));
                assert_eq!(a.rule, words(&["return"]));
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["delete", "filter", "WEB", "12", "--generation", "3"]) {
            Command::Delete(a) => {
                assert_eq!(a.rule, words(&["12"]));
                assert_eq!(a.write.generation, Some(3));
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["delete", "filter", "WEB", "ip", "drop"]) {
            Command::Delete(a) => assert_eq!(a.rule, words(&["ip", "drop"])),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn list_flush_zero_policy_chain_save_restore() {
        match cmd(&["list"]) {
            Command::List(a) => {
                assert_eq!((a.table, a.chain.as_deref()), (None, None));
                assert!(!a.numeric && !a.verbose && !a.json);
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["list", "filter", "INPUT", "-n", "-v", "--json"]) {
            Command::List(a) => {
                assert_eq!(
                    (a.table, a.chain.as_deref()),
                    (Some(Table::Filter), Some("INPUT"))
                );
                assert!(a.numeric && a.verbose && a.json);
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["list", "-nv", "raw"]) {
            Command::List(a) => {
                assert_eq!(a.table, Some(Table::Raw));
                assert!(a.numeric && a.verbose && !a.json);
            }
            c => panic!("{c:?}"),
        }
        for (word, is_flush) in [("flush", true), ("zero", false)] {
            for (args, table, chain) in [
                (vec![word], None, None),
                (vec![word, "nat"], Some(Table::Nat), None),
                (vec![word, "nat", "X"], Some(Table::Nat), Some("X")),
            ] {
                let a = match (cmd(&args), is_flush) {
                    (Command::Flush(a), true) | (Command::Zero(a), false) => a,
                    (c, _) => panic!("{c:?}"),
                };
                assert_eq!((a.table, a.chain.as_deref()), (table, chain));
            }
        }
        match cmd(&["policy", "filter", "INPUT", "drop"]) {
            Command::Policy(a) => {
                assert_eq!((a.table, a.chain.as_str()), (Table::Filter, "INPUT"));
                assert_eq!(Policy::from(a.policy), Policy::Drop);
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["policy", "raw", "OUTPUT", "accept"]) {
            Command::Policy(a) => assert_eq!(Policy::from(a.policy), Policy::Accept),
            c => panic!("{c:?}"),
        }
        match cmd(&["chain", "add", "filter", "WEB"]) {
            Command::Chain(ChainCommand::Add { table, name }) => {
                assert_eq!((table, name.as_str()), (Table::Filter, "WEB"));
            }
            c => panic!("{c:?}"),
        }
        for w in ["delete", "del"] {
            match cmd(&["chain", w, "mangle", "WEB"]) {
                Command::Chain(ChainCommand::Delete { table, name }) => {
                    assert_eq!((table, name.as_str()), (Table::Mangle, "WEB"));
                }
                c => panic!("{c:?}"),
            }
        }
        match cmd(&["chain", "rename", "filter", "WEB", "HTTP"]) {
            Command::Chain(ChainCommand::Rename {
                table,
                name,
                new_name,
            }) => assert_eq!(
                (table, name.as_str(), new_name.as_str()),
                (Table::Filter, "WEB", "HTTP")
            ),
            c => panic!("{c:?}"),
        }
        assert!(matches!(cmd(&["save"]), Command::Save(_)));
        match cmd(&["restore"]) {
            Command::Restore(a) => {
                assert_eq!(a.file, "-");
                assert!(!a.check);
                assert_eq!(a.write.generation, None);
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["restore", "--check", "--generation", "9", "rules.rnf"]) {
            Command::Restore(a) => {
                assert_eq!(a.file, "rules.rnf");
                assert!(a.check);
                assert_eq!(a.write.generation, Some(9));
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn usage_errors() {
        use clap::error::ErrorKind::*;
        let kind = |args: &[&str]| parse(args).unwrap_err().kind();
        assert_eq!(kind(&["add", "filter", "INPUT"]), MissingRequiredArgument);
        assert_eq!(kind(&["add", "filter"]), MissingRequiredArgument);
        assert_eq!(
            kind(&["replace", "filter", "INPUT", "x", "drop"]),
            ValueValidation
        );
        assert_eq!(
            kind(&["replace", "filter", "INPUT", "7"]),
            MissingRequiredArgument
        );
        assert_eq!(
            kind(&["delete", "filter", "INPUT"]),
            MissingRequiredArgument
        );
        assert_eq!(kind(&["policy", "filter", "INPUT", "reject"]), InvalidValue);
        assert_eq!(
            kind(&["chain", "rename", "filter", "A"]),
            MissingRequiredArgument
        );
        assert_eq!(kind(&["chain", "list"]), InvalidSubcommand);
        assert_eq!(kind(&["list", "filter", "INPUT", "extra"]), UnknownArgument);
        assert_eq!(
            kind(&["add", "--generation", "x", "filter", "INPUT", "drop"]),
            ValueValidation
        );
        assert_eq!(
            kind(&["add", "filter", "INPUT", "mark", "set", "-1"]),
            UnknownArgument
        );
        let e = parse(&["add", "flter", "INPUT", "drop"]).unwrap_err();
        assert_eq!(e.kind(), ValueValidation);
        assert!(
            e.to_string()
                .contains("unknown table 'flter'; expected raw, mangle, nat or filter"),
            "{e}"
        );
    }

    #[test]
    fn help_documents_the_syntax() {
        let mut c = Cli::command();
        for sub in ["add", "insert", "replace", "delete"] {
            let help = c
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            for word in [
                "ip | ip6",
                "proto ",
                "saddr [!]",
                "daddr [!]",
                "sport [!]",
                "dport [!]",
                "iif [!]",
                "oif [!]",
                "tcp flags",
                "icmp type",
                "mark [!]",
                "limit ",
                "uid N",
                "gid N",
                "payload contains",
                "random P",
                "nth N",
                "comment TEXT",
                "accept",
                "drop",
                "return",
                "reject [with tcp-reset",
                "icmp-host-prohibited",
                "jump CHAIN",
                "goto CHAIN",
                "log [prefix TEXT] [level",
                "mark set|xor|and|or V",
                "ct state [!]",
                "ct status [!]",
                "ct direction [!]",
                "ct mark [!]",
                "ct mark set V[/M]",
                "notrack",
                "dnat to ADDR",
                "snat to ADDR",
                "masquerade [to PORT",
                "redirect [to PORT",
                "Examples:",
            ] {
                assert!(help.contains(word), "{sub} --help lacks {word:?}");
            }
        }
        for sub in ["save", "restore"] {
            let help = c
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            for word in [
                "table NAME",
                "policy CHAIN accept|drop",
                "chain NAME",
                "add CHAIN RULE",
                "# generation",
            ] {
                assert!(help.contains(word), "{sub} --help lacks {word:?}");
            }
        }
    }

    #[test]
    fn conntrack_commands() {
        match cmd(&["conntrack", "list"]) {
            Command::Conntrack(ConntrackCommand::List { filter, json }) => {
                assert!(filter.is_empty());
                assert!(!json);
            }
            c => panic!("{c:?}"),
        }
        match cmd(&[
            "conntrack",
            "ls",
            "--json",
            "-f",
            "ipv6",
            "-p",
            "tcp",
            "-s",
            "2001:db8::/32",
            "-d",
            "::1",
            "--sport",
            "40000",
            "--dport",
            "22",
            "--state",
            "established",
            "--mark",
            "0x10/0xff",
            "--status",
            "assured,seen-reply",
        ]) {
            Command::Conntrack(ConntrackCommand::List { filter, json }) => {
                assert!(json);
                assert_eq!(
                    filter,
                    CtFilterArgs {
                        family: Some(FamilyArg::Ipv6),
                        proto: Some("tcp".into()),
                        src: Some("2001:db8::/32".into()),
                        dst: Some("::1".into()),
                        sport: Some(40000),
                        dport: Some(22),
                        state: Some("established".into()),
                        mark: Some("0x10/0xff".into()),
                        status: Some("assured,seen-reply".into()),
                    }
                );
                assert!(!filter.is_empty());
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["conntrack", "delete", "--src", "10.0.0.1", "--proto", "udp"]) {
            Command::Conntrack(ConntrackCommand::Delete { filter }) => {
                assert_eq!(filter.src.as_deref(), Some("10.0.0.1"));
                assert_eq!(filter.proto.as_deref(), Some("udp"));
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["conntrack", "delete"]) {
            Command::Conntrack(ConntrackCommand::Delete { filter }) => assert!(filter.is_empty()),
            c => panic!("{c:?}"),
        }
        assert!(matches!(
            cmd(&["conntrack", "count"]),
            Command::Conntrack(ConntrackCommand::Count)
        ));
        assert!(matches!(
            cmd(&["conntrack", "flush"]),
            Command::Conntrack(ConntrackCommand::Flush)
        ));
        assert!(matches!(
            cmd(&["conntrack", "stats", "--json"]),
            Command::Conntrack(ConntrackCommand::Stats { json: true })
        ));
        assert!(matches!(
            cmd(&["conntrack", "limit"]),
            Command::Conntrack(ConntrackCommand::Limit { limit: None })
        ));
        assert!(matches!(
            cmd(&["conntrack", "limit", "4294967295"]),
            Command::Conntrack(ConntrackCommand::Limit {
                limit: Some(u32::MAX)
            })
        ));
        match cmd(&["conntrack", "timeout", "tcp", "established", "3600"]) {
            Command::Conntrack(ConntrackCommand::Timeout { words: w }) => {
                assert_eq!(w, words(&["tcp", "established", "3600"]));
            }
            c => panic!("{c:?}"),
        }
        match cmd(&["conntrack", "timeout"]) {
            Command::Conntrack(ConntrackCommand::Timeout { words }) => assert!(words.is_empty()),
            c => panic!("{c:?}"),
        }
        assert!(matches!(
            cmd(&["monitor", "conntrack"]),
            Command::Monitor(MonitorCommand::Conntrack { json: false })
        ));
        assert!(matches!(
            cmd(&["monitor", "conntrack", "--json"]),
            Command::Monitor(MonitorCommand::Conntrack { json: true })
        ));
        assert!(matches!(
            cmd(&["hook-counters"]),
            Command::HookCounters { state: None }
        ));
        assert!(matches!(
            cmd(&["hook-counters", "off"]),
            Command::HookCounters {
                state: Some(OnOff::Off)
            }
        ));
        assert!(matches!(
            cmd(&["hook-counters", "on"]),
            Command::HookCounters {
                state: Some(OnOff::On)
            }
        ));

        use clap::error::ErrorKind::*;
        let kind = |args: &[&str]| parse(args).unwrap_err().kind();
        assert_eq!(kind(&["conntrack", "limit", "0"]), ValueValidation);
        assert_eq!(kind(&["hook-counters", "maybe"]), InvalidValue);
        assert_eq!(kind(&["conntrack", "limit", "-1"]), UnknownArgument);
        assert_eq!(kind(&["conntrack", "limit", "4294967296"]), ValueValidation);
        assert_eq!(
            kind(&["conntrack", "list", "--sport", "65536"]),
            ValueValidation
        );
        assert_eq!(kind(&["conntrack", "list", "-f", "ipx"]), InvalidValue);
        assert_eq!(
            kind(&["conntrack"]),
            DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert_eq!(kind(&["monitor", "rules"]), InvalidSubcommand);
        let mut c = Cli::command();
        let help = c
            .find_subcommand_mut("conntrack")
            .unwrap()
            .find_subcommand_mut("list")
            .unwrap()
            .render_long_help()
            .to_string();
        for w in ["--state", "--status", "seen-reply", "Examples:"] {
            assert!(help.contains(w), "conntrack list --help lacks {w:?}");
        }
    }

    #[test]
    fn errors() {
        assert!(parse(&[]).is_err(), "a subcommand is required");
        assert_eq!(
            parse(&["frobnicate"]).unwrap_err().kind(),
            clap::error::ErrorKind::InvalidSubcommand
        );
        assert_eq!(
            parse(&["status", "--bogus"]).unwrap_err().kind(),
            clap::error::ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayVersion
        );
    }
}
