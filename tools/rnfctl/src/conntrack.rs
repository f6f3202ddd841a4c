// SPDX-License-Identifier: GPL-2.0-only

//! `rnfctl conntrack ...`: the flow table, its limit and its timeouts.
//!
//! | rnfctl                         | cmd              | attributes              |
//! |--------------------------------|------------------|-------------------------|
//! | `conntrack list [FILTER]`      | `GET_CT` dump    | (filtered here)         |
//! | `conntrack delete FILTER`      | `GET_CT` dump, then `DEL_CT` per flow | `CT_ORIG` |
//! | `conntrack flush`              | `FLUSH_CT`       |                         |
//! | `conntrack count`, `stats`     | `GET_CT_STATS`   |                         |
//! | `conntrack limit [N]`          | `GET_CT_STATS` / `SET_CT_LIMIT` | `CT_LIMIT` |
//! | `conntrack timeout [P [S] N]`  | `GET_CT_STATS` / `SET_CT_TIMEOUT` | `CT_TIMEOUTS` |
//!
//! The output follows conntrack-tools: one flow per line like
//! `conntrack -L`, events like `conntrack -E`.

use std::net::{Ipv4Addr, Ipv6Addr};

use rnf_core::ct::{self, status, TimeoutError, TimeoutKey, Tuple, MAX_TIMEOUT_SECS};
use rnf_core::ct_msg::{encode_delete, encode_set_timeout, CtStatsMsg, FlowMsg};
use rnf_core::ct_tcp::TcpState;
use rnf_core::hooks::Family;
use rnf_core::netlink::GenlMsgHdr;
use rnf_core::packet::{
    IPPROTO_AH, IPPROTO_DCCP, IPPROTO_ESP, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
};
use rnf_core::wire::{self, attr, cmd, ct_event};
use serde::Serialize;

use crate::cli::{ConntrackCommand, CtFilterArgs, FamilyArg};
use crate::error::Error;
use crate::nl::GenlSocket;
use crate::output::{table, Align};

/// Protocol names as `-p` takes them and listings print them.
const PROTOCOLS: [(&str, u8); 10] = [
    ("tcp", IPPROTO_TCP),
    ("udp", IPPROTO_UDP),
    ("udplite", IPPROTO_UDPLITE),
    ("icmp", IPPROTO_ICMP),
    ("icmpv6", IPPROTO_ICMPV6),
    ("sctp", IPPROTO_SCTP),
    ("dccp", IPPROTO_DCCP),
    ("gre", IPPROTO_GRE),
    ("esp", IPPROTO_ESP),
    ("ah", IPPROTO_AH),
];

/// Name of a protocol in a listing: conntrack's, `unknown` for those
/// without a tracker of their own.
pub fn proto_name(proto: u8) -> &'static str {
    PROTOCOLS
        .iter()
        .find(|(_, p)| *p == proto)
        .map_or("unknown", |(n, _)| n)
}

/// An address prefix of a filter, laid out like [`Tuple`]'s addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    family: Family,
    addr: [u8; 16],
    len: u8,
}

impl Prefix {
    fn parse(s: &str) -> Option<Self> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let mut addr = [0u8; 16];
        let (family, max) = if let Ok(v4) = a.parse::<Ipv4Addr>() {
            addr[..4].copy_from_slice(&v4.octets());
            (Family::Ipv4, 32)
        } else {
            addr = a.parse::<Ipv6Addr>().ok()?.octets();
            (Family::Ipv6, 128)
        };
        let len = len.unwrap_or(max);
        (len <= max).then_some(Self { family, addr, len })
    }

    fn contains(&self, family: Family, a: &[u8; 16]) -> bool {
        if family != self.family {
            return false;
        }
        let bits = usize::from(self.len);
        let whole = bits / 8;
        if a[..whole] != self.addr[..whole] {
            return false;
        }
        let rest = bits % 8;
        rest == 0 || {
            let mask = 0xffu8 << (8 - rest);
            a[whole] & mask == self.addr[whole] & mask
        }
    }
}

/// The flow filters of `conntrack list` and `conntrack delete`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    family: Option<Family>,
    proto: Option<u8>,
    src: Option<Prefix>,
    dst: Option<Prefix>,
    sport: Option<u16>,
    dport: Option<u16>,
    state: Option<TcpState>,
    mark: Option<(u32, u32)>,
    status_set: u32,
    status_unset: u32,
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A protocol name or number.
pub fn parse_proto(s: &str) -> Option<u8> {
    let l = s.to_ascii_lowercase();
    match l.as_str() {
        "icmp6" | "ipv6-icmp" => return Some(IPPROTO_ICMPV6),
        "udp-lite" => return Some(IPPROTO_UDPLITE),
        _ => {}
    }
    PROTOCOLS
        .iter()
        .find(|(n, _)| *n == l)
        .map(|(_, p)| *p)
        .or_else(|| s.parse().ok())
}

/// A TCP state name: `ESTABLISHED`, `established`, `syn-sent`, ...
pub fn parse_tcp_state(s: &str) -> Option<TcpState> {
    let norm = s.replace('-', "_").to_ascii_uppercase();
    TcpState::ALL
        .into_iter()
        .filter(|t| *t != TcpState::None)
        .find(|t| t.name() == norm)
}

/// Status names: ours (`seen-reply`), conntrack's (`SEEN_REPLY`,
/// `SRC_NAT`), and `unreplied`. Returns (bits that must be set, bits that
/// must be clear).
fn parse_status(list: &str) -> Result<(u32, u32), String> {
    let mut set = 0;
    let mut unset = 0;
    for word in list.split(',') {
        let w = word.trim().to_ascii_lowercase().replace('_', "-");
        let bit = match w.as_str() {
            "unreplied" => {
                unset |= status::SEEN_REPLY;
                continue;
            }
            "src-nat" => status::SRC_NAT,
            "dst-nat" => status::DST_NAT,
            _ => status::NAMES
                .iter()
                .find(|(n, _)| *n == w)
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    let names: Vec<&str> = status::NAMES.iter().map(|(n, _)| *n).collect();
                    format!(
                        "at '{word}': unknown status; expected {} or unreplied",
                        names.join(", ")
                    )
                })?,
        };
        set |= bit;
    }
    if set & unset != 0 {
        return Err(format!(
            "at '{list}': seen-reply and unreplied exclude each other"
        ));
    }
    Ok((set, unset))
}

impl Filter {
    /// Checks and converts the command-line filters.
    pub fn from_args(op: &'static str, a: &CtFilterArgs) -> Result<Self, Error> {
        let bad = |m: String| Error::invalid(op, m);
        let mut f = Filter {
            family: a.family.map(|f| match f {
                FamilyArg::Ipv4 => Family::Ipv4,
                FamilyArg::Ipv6 => Family::Ipv6,
            }),
            sport: a.sport,
            dport: a.dport,
            ..Filter::default()
        };
        if let Some(p) = &a.proto {
            f.proto = Some(parse_proto(p).ok_or_else(|| {
                bad(format!(
                    "at '{p}': unknown protocol; expected tcp, udp, udplite, icmp, icmpv6, sctp, dccp, gre, esp, ah or a number 0-255"
                ))
            })?);
        }
        for (which, arg, slot) in [("-s", &a.src, &mut f.src), ("-d", &a.dst, &mut f.dst)] {
            if let Some(s) = arg {
                let p = Prefix::parse(s).ok_or_else(|| {
                    bad(format!(
                        "at '{s}': {which} expects an IPv4 or IPv6 address, optionally with /LEN"
                    ))
                })?;
                *slot = Some(p);
            }
        }
        for p in [f.src, f.dst].into_iter().flatten() {
            match f.family {
                Some(fam) if fam != p.family => {
                    return Err(bad(format!(
                        "the addresses are {} but -f asks for {}",
                        p.family.name(),
                        fam.name()
                    )))
                }
                _ => f.family = Some(p.family),
            }
        }
        if let Some(s) = &a.state {
            let st = parse_tcp_state(s).ok_or_else(|| {
                let names: Vec<&str> = TcpState::ALL[1..].iter().map(|t| t.name()).collect();
                bad(format!(
                    "at '{s}': unknown TCP state; expected one of {}",
                    names.join(", ")
                ))
            })?;
            match f.proto {
                None | Some(IPPROTO_TCP) => f.proto = Some(IPPROTO_TCP),
                Some(p) => {
                    return Err(bad(format!(
                        "--state is a TCP state, but -p asks for {}",
                        proto_name_or_number(p)
                    )))
                }
            }
            f.state = Some(st);
        }
        if f.sport.is_some() || f.dport.is_some() {
            if let Some(p) = f.proto.filter(|p| !ct::has_ports(*p)) {
                return Err(bad(format!(
                    "--sport and --dport need a protocol with ports (tcp, udp, udplite, sctp, dccp), not {}",
                    proto_name_or_number(p)
                )));
            }
        }
        if let Some(m) = &a.mark {
            let (v, mask) = match m.split_once('/') {
                Some((v, mask)) => (parse_u32(v), parse_u32(mask)),
                None => (parse_u32(m), Some(u32::MAX)),
            };
            match (v, mask) {
                (Some(v), Some(mask)) => f.mark = Some((v, mask)),
                _ => {
                    return Err(bad(format!(
                        "at '{m}': expected a mark V or V/M (decimal or 0x hex, 32 bits)"
                    )))
                }
            }
        }
        if let Some(s) = &a.status {
            (f.status_set, f.status_unset) = parse_status(s).map_err(bad)?;
        }
        Ok(f)
    }

    /// Whether `flow` passes every filter. Addresses and ports are those
    /// of the original direction.
    pub fn matches(&self, flow: &FlowMsg) -> bool {
        let t = &flow.orig;
        let has_ports = ct::has_ports(t.proto);
        self.family.map_or(true, |f| f == t.family)
            && self.proto.map_or(true, |p| p == t.proto)
            && self.src.map_or(true, |p| p.contains(t.family, &t.src))
            && self.dst.map_or(true, |p| p.contains(t.family, &t.dst))
            && self
                .sport
                .map_or(true, |p| has_ports && p == t.src_port_or_icmp_id)
            && self
                .dport
                .map_or(true, |p| has_ports && p == t.dst_port_or_icmp_type_code)
            && self.state.map_or(true, |s| {
                t.proto == IPPROTO_TCP && TcpState::from_u8(flow.proto_state) == Some(s)
            })
            && self.mark.map_or(true, |(v, m)| flow.mark & m == v & m)
            && flow.status & self.status_set == self.status_set
            && flow.status & self.status_unset == 0
    }
}

fn proto_name_or_number(p: u8) -> String {
    match proto_name(p) {
        "unknown" => format!("protocol {p}"),
        n => n.to_string(),
    }
}

/// An address of `family` stored as in [`Tuple`].
pub fn addr_string(family: Family, a: &[u8; 16]) -> String {
    match family {
        Family::Ipv4 => Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        Family::Ipv6 => Ipv6Addr::from(*a).to_string(),
    }
}

/// `src=.. dst=.. sport=.. dport=..` (or `type=.. code=.. id=..` for
/// ICMP) of one direction, then its counters.
fn tuple_words(t: &Tuple, (packets, bytes): (u64, u64)) -> String {
    let mut s = format!(
        "src={} dst={}",
        addr_string(t.family, &t.src),
        addr_string(t.family, &t.dst)
    );
    if ct::is_icmp(t.family, t.proto) {
        let [ty, code] = t.dst_port_or_icmp_type_code.to_be_bytes();
        s.push_str(&format!(
            " type={ty} code={code} id={}",
            t.src_port_or_icmp_id
        ));
    } else if ct::has_ports(t.proto) {
        s.push_str(&format!(
            " sport={} dport={}",
            t.src_port_or_icmp_id, t.dst_port_or_icmp_type_code
        ));
    }
    s.push_str(&format!(" packets={packets} bytes={bytes}"));
    s
}

/// The TCP state name of a flow, if it is TCP.
fn state_name(f: &FlowMsg) -> Option<&'static str> {
    if f.orig.proto != IPPROTO_TCP {
        return None;
    }
    Some(TcpState::from_u8(f.proto_state).map_or("UNKNOWN", TcpState::name))
}

/// One flow as `conntrack -L` prints it:
/// `tcp      6 431999 ESTABLISHED src=.. dst=.. sport=.. dport=.. packets=.. bytes=..
/// [UNREPLIED] src=.. .. [ASSURED] mark=0 id=7`. The timeout is left out
/// when `timeout` is false (destroyed flows).
pub fn flow_line(f: &FlowMsg, timeout: bool) -> String {
    let mut s = format!("{:<8} {} ", proto_name(f.orig.proto), f.orig.proto);
    if timeout {
        s.push_str(&format!("{} ", f.timeout_secs));
    }
    if let Some(st) = state_name(f) {
        s.push_str(st);
        s.push(' ');
    }
    s.push_str(&tuple_words(&f.orig, f.counters[0]));
    if f.status & status::SEEN_REPLY == 0 {
        s.push_str(" [UNREPLIED]");
    }
    s.push(' ');
    s.push_str(&tuple_words(&f.reply, f.counters[1]));
    if f.status & status::ASSURED != 0 {
        s.push_str(" [ASSURED]");
    }
    s.push_str(&format!(" mark={} id={}", f.mark, f.id));
    s
}

/// Name of a [`ct_event`] value, lower case.
pub fn event_name(e: u8) -> &'static str {
    match e {
        ct_event::NEW => "new",
        ct_event::UPDATE => "update",
        ct_event::DESTROY => "destroy",
        _ => "unknown",
    }
}

/// One event as `conntrack -E` prints it: `[NEW] tcp      6 120 SYN_SENT
/// src=.. [UNREPLIED] src=.. mark=0 id=7` (no timeout for `[DESTROY]`).
pub fn event_line(f: &FlowMsg) -> String {
    let e = f.event.unwrap_or(0);
    format!(
        "[{}] {}",
        event_name(e).to_ascii_uppercase(),
        flow_line(f, e != ct_event::DESTROY)
    )
}

#[derive(Serialize)]
struct TupleJson {
    src: String,
    dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dport: Option<u16>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u8>,
    #[serde(rename = "id", skip_serializing_if = "Option::is_none")]
    icmp_id: Option<u16>,
    packets: u64,
    bytes: u64,
}

impl TupleJson {
    fn new(t: &Tuple, (packets, bytes): (u64, u64)) -> Self {
        let icmp = ct::is_icmp(t.family, t.proto);
        let ports = ct::has_ports(t.proto);
        let [ty, code] = t.dst_port_or_icmp_type_code.to_be_bytes();
        Self {
            src: addr_string(t.family, &t.src),
            dst: addr_string(t.family, &t.dst),
            sport: ports.then_some(t.src_port_or_icmp_id),
            dport: ports.then_some(t.dst_port_or_icmp_type_code),
            icmp_type: icmp.then_some(ty),
            code: icmp.then_some(code),
            icmp_id: icmp.then_some(t.src_port_or_icmp_id),
            packets,
            bytes,
        }
    }
}

#[derive(Serialize)]
struct FlowJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    id: u32,
    family: &'static str,
    proto: &'static str,
    proto_num: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    status: Vec<&'static str>,
    timeout: u32,
    age: u32,
    mark: u32,
    orig: TupleJson,
    reply: TupleJson,
}

impl FlowJson {
    fn new(f: &FlowMsg) -> Self {
        Self {
            event: f.event.map(event_name),
            id: f.id,
            family: f.orig.family.name(),
            proto: proto_name(f.orig.proto),
            proto_num: f.orig.proto,
            state: state_name(f),
            status: status::NAMES
                .iter()
                .filter(|(_, b)| f.status & b != 0)
                .map(|(n, _)| *n)
                .collect(),
            timeout: f.timeout_secs,
            age: f.age_secs,
            mark: f.mark,
            orig: TupleJson::new(&f.orig, f.counters[0]),
            reply: TupleJson::new(&f.reply, f.counters[1]),
        }
    }
}

/// Flows as a JSON array (one line).
pub fn flows_json(flows: &[FlowMsg]) -> String {
    let v: Vec<FlowJson> = flows.iter().map(FlowJson::new).collect();
    // Plain structs of strings and integers always serialize.
    serde_json::to_string(&v).unwrap_or_default()
}

/// One flow or event as a JSON object (one line).
pub fn flow_json(f: &FlowMsg) -> String {
    serde_json::to_string(&FlowJson::new(f)).unwrap_or_default()
}

/// What `conntrack list` prints on standard output.
pub fn render_list(flows: &[FlowMsg], json: bool) -> String {
    if json {
        let mut s = flows_json(flows);
        s.push('\n');
        return s;
    }
    let mut s = String::new();
    for f in flows {
        s.push_str(&flow_line(f, true));
        s.push('\n');
    }
    s
}

/// The summary `conntrack list` prints on standard error.
pub fn list_summary(n: usize) -> String {
    format!(
        "rnfctl v{}: {n} flow entries have been shown.",
        wire::VERSION
    )
}

#[derive(Serialize)]
struct StatsJson {
    count: u32,
    limit: u32,
    buckets: u32,
    inserted: u64,
    expired: u64,
    deleted: u64,
    early_drops: u64,
    full_drops: u64,
    invalid: u64,
    nat_drops: u64,
}

/// What `conntrack stats` prints.
pub fn render_stats(s: &CtStatsMsg, json: bool) -> String {
    if json {
        let j = StatsJson {
            count: s.count,
            limit: s.limit,
            buckets: s.buckets,
            inserted: s.inserted,
            expired: s.expired,
            deleted: s.deleted,
            early_drops: s.early_drops,
            full_drops: s.full_drops,
            invalid: s.invalid,
            nat_drops: s.nat_drops,
        };
        let mut out = serde_json::to_string(&j).unwrap_or_default();
        out.push('\n');
        return out;
    }
    let rows: [(&str, String); 10] = [
        ("count", s.count.to_string()),
        ("limit", s.limit.to_string()),
        ("buckets", s.buckets.to_string()),
        ("inserted", s.inserted.to_string()),
        ("expired", s.expired.to_string()),
        ("deleted", s.deleted.to_string()),
        ("early_drops", s.early_drops.to_string()),
        ("full_drops", s.full_drops.to_string()),
        ("invalid", s.invalid.to_string()),
        ("nat_drops", s.nat_drops.to_string()),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<12} {v}\n"));
    }
    out
}

/// What `conntrack limit` prints.
pub fn render_limit(s: &CtStatsMsg) -> String {
    format!("limit  {}\ncount  {}\n", s.limit, s.count)
}

/// What `conntrack timeout` prints: every timeout.
pub fn render_timeouts(s: &CtStatsMsg) -> String {
    use Align::{Left, Right};
    let rows: Vec<Vec<String>> = TimeoutKey::ALL
        .into_iter()
        .map(|k| {
            let (p, st) = k.names();
            vec![
                p.to_string(),
                if st.is_empty() { "-" } else { st }.to_string(),
                s.timeouts.get(k).to_string(),
            ]
        })
        .collect();
    table(
        &["PROTO", "STATE", "SECONDS"],
        &[Left, Left, Right],
        &[7, 14, 7],
        &rows,
    )
}

/// `PROTO [STATE] SECONDS` of `conntrack timeout`.
pub fn parse_timeout_words(words: &[String]) -> Result<(TimeoutKey, u32), Error> {
    const OP: &str = "conntrack timeout";
    let (proto, state, secs) = match words {
        [p, s] => (p, None, s),
        [p, st, s] => (p, Some(st.as_str()), s),
        _ => {
            return Err(Error::invalid(
                OP,
                "expected nothing (to show the timeouts) or PROTO [STATE] SECONDS, e.g. 'tcp established 3600'",
            ))
        }
    };
    let key = TimeoutKey::parse(proto, state).map_err(|e| {
        let what = match state {
            Some(st) => format!("{proto} {st}"),
            None => proto.to_string(),
        };
        Error::invalid(OP, format!("at '{what}': {e}"))
    })?;
    let secs = secs
        .parse::<u32>()
        .ok()
        .filter(|s| (1..=MAX_TIMEOUT_SECS).contains(s))
        .ok_or_else(|| {
            Error::invalid(
                OP,
                format!("at '{secs}': {}", TimeoutError::OutOfRange.message()),
            )
        })?;
    Ok((key, secs))
}

/// Decodes the messages of a `GET_CT` dump.
pub fn decode_flows(op: &'static str, replies: &[Vec<u8>]) -> Result<Vec<FlowMsg>, Error> {
    replies
        .iter()
        .map(|r| {
            let (_, attrs) = GenlMsgHdr::split(r).map_err(|e| Error::wire(op, e))?;
            FlowMsg::decode(attrs).map_err(|e| Error::wire(op, e))
        })
        .collect()
}

/// Decodes the reply to `GET_CT_STATS`.
pub fn decode_stats(op: &'static str, replies: &[Vec<u8>]) -> Result<CtStatsMsg, Error> {
    let r = replies.first().ok_or_else(|| Error::Protocol {
        op,
        detail: "the kernel acknowledged but sent no statistics".into(),
    })?;
    let (_, attrs) = GenlMsgHdr::split(r).map_err(|e| Error::wire(op, e))?;
    CtStatsMsg::decode(attrs).map_err(|e| Error::wire(op, e))
}

/// The flow-table half of rnf, over a socket.
struct Ct {
    sock: GenlSocket,
    family: u16,
}

impl Ct {
    fn open() -> Result<Self, Error> {
        let mut sock = GenlSocket::open()?;
        let family = sock.resolve_family(wire::FAMILY_NAME)?;
        Ok(Self { sock, family })
    }

    fn simple(
        &mut self,
        op: &'static str,
        command: u8,
        attrs: impl FnOnce(&mut rnf_core::wire::AttrWriter<'_>),
    ) -> Result<Vec<Vec<u8>>, Error> {
        self.sock
            .request(op, self.family, command, wire::FAMILY_VERSION, 0, attrs)
            .map_err(Error::conntrack)
    }

    fn flows(&mut self, op: &'static str) -> Result<Vec<FlowMsg>, Error> {
        let replies = self
            .sock
            .dump_volatile(op, self.family, cmd::GET_CT)
            .map_err(Error::conntrack)?;
        decode_flows(op, &replies)
    }

    fn stats(&mut self, op: &'static str) -> Result<CtStatsMsg, Error> {
        let replies = self.simple(op, cmd::GET_CT_STATS, |_| {})?;
        decode_stats(op, &replies)
    }
}

/// The message refusing `conntrack delete` without a filter.
pub const DELETE_NEEDS_FILTER: &str =
    "give at least one filter (-p, -s, -d, --sport, ...); to delete every flow use 'rnfctl conntrack flush'";

/// Runs a `conntrack` command and returns what to print on standard
/// output (summaries go to standard error).
pub fn run(c: &ConntrackCommand) -> Result<String, Error> {
    match c {
        ConntrackCommand::List { filter, json } => {
            const OP: &str = "conntrack list";
            let filter = Filter::from_args(OP, filter)?;
            let flows: Vec<FlowMsg> = Ct::open()?
                .flows(OP)?
                .into_iter()
                .filter(|f| filter.matches(f))
                .collect();
            if !json {
                eprintln!("{}", list_summary(flows.len()));
            }
            Ok(render_list(&flows, *json))
        }
        ConntrackCommand::Delete { filter } => {
            const OP: &str = "conntrack delete";
            if filter.is_empty() {
                return Err(Error::invalid(OP, DELETE_NEEDS_FILTER));
            }
            let filter = Filter::from_args(OP, filter)?;
            let mut ct = Ct::open()?;
            let mut deleted = 0u64;
            for f in ct.flows(OP)?.iter().filter(|f| filter.matches(f)) {
                match ct.simple(OP, cmd::DEL_CT, |w| encode_delete(w, &f.orig)) {
                    Ok(_) => deleted += 1,
                    // Gone meanwhile (expired, or deleted by someone else).
                    Err(Error::CtRefused {
                        errno: libc::ENOENT,
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(format!("{deleted} flows deleted\n"))
        }
        ConntrackCommand::Flush => {
            Ct::open()?.simple("conntrack flush", cmd::FLUSH_CT, |_| {})?;
            Ok(String::new())
        }
        ConntrackCommand::Count => {
            let s = Ct::open()?.stats("conntrack count")?;
            Ok(format!("{}\n", s.count))
        }
        ConntrackCommand::Stats { json } => {
            let s = Ct::open()?.stats("conntrack stats")?;
            Ok(render_stats(&s, *json))
        }
        ConntrackCommand::Limit { limit: None } => {
            let s = Ct::open()?.stats("conntrack limit")?;
            Ok(render_limit(&s))
        }
        ConntrackCommand::Limit { limit: Some(n) } => {
            Ct::open()?.simple("conntrack limit", cmd::SET_CT_LIMIT, |w| {
                w.put_u32(attr::CT_LIMIT, *n)
            })?;
            Ok(String::new())
        }
        ConntrackCommand::Timeout { words } if words.is_empty() => {
            let s = Ct::open()?.stats("conntrack timeout")?;
            Ok(render_timeouts(&s))
        }
        ConntrackCommand::Timeout { words } => {
            let (key, secs) = parse_timeout_words(words)?;
            Ct::open()?.simple("conntrack timeout", cmd::SET_CT_TIMEOUT, |w| {
                encode_set_timeout(w, key, secs)
            })?;
            Ok(String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::test_util::reply;
    use clap::Parser;
    use rnf_core::ct::Timeouts;
    use rnf_core::ct_msg::decode_set_timeout;
    use rnf_core::wire::AttrIter;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&a);
        o
    }

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    /// Flows as the kernel would dump them, decoded as rnfctl does.
    fn dumped(flows: &[FlowMsg]) -> Vec<FlowMsg> {
        let replies: Vec<Vec<u8>> = flows
            .iter()
            .map(|f| reply(cmd::GET_CT, |w| f.encode(w)))
            .collect();
        decode_flows("conntrack list", &replies).unwrap()
    }

    fn tcp() -> FlowMsg {
        let orig = Tuple {
            family: Family::Ipv4,
            proto: IPPROTO_TCP,
            src: v4([10, 0, 0, 2]),
            dst: v4([10, 0, 1, 2]),
            src_port_or_icmp_id: 40000,
            dst_port_or_icmp_type_code: 22,
        };
        FlowMsg {
            orig,
            reply: orig.invert(),
            id: 7,
            proto_state: TcpState::Established as u8,
            status: status::SEEN_REPLY | status::ASSURED | status::CONFIRMED,
            timeout_secs: 431_999,
            age_secs: 3,
            mark: 0,
            counters: [(3, 180), (2, 120)],
            event: None,
        }
    }

    fn udp() -> FlowMsg {
        let orig = Tuple {
            family: Family::Ipv6,
            proto: IPPROTO_UDP,
            src: v6("2001:db8::1"),
            dst: v6("2001:db8:1::53"),
            src_port_or_icmp_id: 5353,
            dst_port_or_icmp_type_code: 53,
        };
        FlowMsg {
            orig,
            reply: orig.invert(),
            id: 8,
            proto_state: 0,
            status: status::CONFIRMED,
            timeout_secs: 29,
            age_secs: 1,
            mark: 0x10,
            counters: [(1, 60), (0, 0)],
            event: None,
        }
    }

    fn icmp() -> FlowMsg {
        let orig = Tuple {
            family: Family::Ipv4,
            proto: IPPROTO_ICMP,
            src: v4([192, 0, 2, 1]),
            dst: v4([192, 0, 2, 2]),
            src_port_or_icmp_id: 1234,
            dst_port_or_icmp_type_code: 8 << 8,
        };
        FlowMsg {
            orig,
            reply: orig.invert(),
            id: 9,
            proto_state: 0,
            status: status::SEEN_REPLY | status::CONFIRMED,
            timeout_secs: 30,
            age_secs: 0,
            mark: 3,
            counters: [(1, 84), (1, 84)],
            event: None,
        }
    }

    fn gre_snat() -> FlowMsg {
        let orig = Tuple {
            family: Family::Ipv4,
            proto: IPPROTO_GRE,
            src: v4([10, 0, 0, 5]),
            dst: v4([198, 51, 100, 1]),
            src_port_or_icmp_id: 0,
            dst_port_or_icmp_type_code: 0,
        };
        let mut reply = orig.invert();
        reply.dst = v4([203, 0, 113, 1]);
        FlowMsg {
            orig,
            reply,
            id: 10,
            proto_state: 0,
            status: status::SEEN_REPLY | status::CONFIRMED | status::SRC_NAT,
            timeout_secs: 599,
            age_secs: 5,
            mark: 0,
            counters: [(4, 400), (4, 400)],
            event: None,
        }
    }

    fn all() -> Vec<FlowMsg> {
        dumped(&[tcp(), udp(), icmp(), gre_snat()])
    }

    #[test]
    fn human_lines() {
        assert_eq!(
            render_list(&all(), false),
            "\
tcp      6 431999 ESTABLISHED src=10.0.0.2 dst=10.0.1.2 sport=40000 dport=22 packets=3 bytes=180 src=10.0.1.2 dst=10.0.0.2 sport=22 dport=40000 packets=2 bytes=120 [ASSURED] mark=0 id=7
udp      17 29 src=2001:db8::1 dst=2001:db8:1::53 sport=5353 dport=53 packets=1 bytes=60 [UNREPLIED] src=2001:db8:1::53 dst=2001:db8::1 sport=53 dport=5353 packets=0 bytes=0 mark=16 id=8
icmp     1 30 src=192.0.2.1 dst=192.0.2.2 type=8 code=0 id=1234 packets=1 bytes=84 src=192.0.2.2 dst=192.0.2.1 type=0 code=0 id=1234 packets=1 bytes=84 mark=3 id=9
gre      47 599 src=10.0.0.5 dst=198.51.100.1 packets=4 bytes=400 src=198.51.100.1 dst=203.0.113.1 packets=4 bytes=400 mark=0 id=10
"
        );
        assert_eq!(render_list(&[], false), "");
        assert_eq!(
            list_summary(4),
            format!("rnfctl v{}: 4 flow entries have been shown.", wire::VERSION)
        );
    }

    #[test]
    fn event_lines() {
        let mut f = tcp();
        f.event = Some(ct_event::NEW);
        f.proto_state = TcpState::SynSent as u8;
        f.status = status::CONFIRMED;
        f.timeout_secs = 120;
        let f = dumped(&[f])[0];
        assert_eq!(
            event_line(&f),
            "[NEW] tcp      6 120 SYN_SENT src=10.0.0.2 dst=10.0.1.2 sport=40000 dport=22 packets=3 bytes=180 [UNREPLIED] src=10.0.1.2 dst=10.0.0.2 sport=22 dport=40000 packets=2 bytes=120 mark=0 id=7"
        );
        let u = FlowMsg {
            event: Some(ct_event::UPDATE),
            ..tcp()
        };
        assert!(event_line(&u).starts_with("[UPDATE] tcp      6 431999 ESTABLISHED src="));
        let d = FlowMsg {
            event: Some(ct_event::DESTROY),
            ..udp()
        };
        assert!(
            event_line(&d).starts_with("[DESTROY] udp      17 src=2001:db8::1 "),
            "{}",
            event_line(&d)
        );
    }

    #[test]
    fn json_output() {
        let s = render_list(&all(), true);
        assert!(s.ends_with("]\n"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(
            a[0],
            serde_json::json!({
                "id": 7, "family": "ipv4", "proto": "tcp", "proto_num": 6,
                "state": "ESTABLISHED", "status": ["seen-reply", "assured", "confirmed"],
                "timeout": 431999, "age": 3, "mark": 0,
                "orig": {"src": "10.0.0.2", "dst": "10.0.1.2", "sport": 40000, "dport": 22,
                         "packets": 3, "bytes": 180},
                "reply": {"src": "10.0.1.2", "dst": "10.0.0.2", "sport": 22, "dport": 40000,
                          "packets": 2, "bytes": 120}
            })
        );
        assert_eq!(a[1]["family"], "ipv6");
        assert_eq!(a[1]["orig"]["dst"], "2001:db8:1::53");
        assert!(a[1].get("state").is_none());
        assert_eq!(a[1]["status"], serde_json::json!(["confirmed"]));
        assert_eq!(
            a[2]["orig"],
            serde_json::json!({"src": "192.0.2.1", "dst": "192.0.2.2", "type": 8, "code": 0,
                               "id": 1234, "packets": 1, "bytes": 84})
        );
        assert_eq!(a[2]["reply"]["type"], 0);
        assert_eq!(a[3]["proto"], "gre");
        assert_eq!(
            a[3]["status"],
            serde_json::json!(["seen-reply", "confirmed", "snat"])
        );
        assert!(a[3]["orig"].get("sport").is_none());
        assert_eq!(render_list(&[], true), "[]\n");
        let e = FlowMsg {
            event: Some(ct_event::DESTROY),
            ..tcp()
        };
        let v: serde_json::Value = serde_json::from_str(&flow_json(&e)).unwrap();
        assert_eq!(v["event"], "destroy");
        assert!(!flow_json(&e).contains('\n'));
    }

    fn filter(args: &[&str]) -> Result<Filter, Error> {
        let mut full = vec!["rnfctl", "conntrack", "list"];
        full.extend_from_slice(args);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Conntrack(ConntrackCommand::List { filter, .. }) => {
                Filter::from_args("conntrack list", &filter)
            }
            c => panic!("{c:?}"),
        }
    }

    /// The ids of the canned flows that pass the filter `args`.
    fn ids(args: &[&str]) -> Vec<u32> {
        let f = filter(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        all()
            .iter()
            .filter(|x| f.matches(x))
            .map(|x| x.id)
            .collect()
    }

    #[test]
    fn filters() {
        assert_eq!(ids(&[]), vec![7, 8, 9, 10]);
        assert_eq!(ids(&["-f", "ipv4"]), vec![7, 9, 10]);
        assert_eq!(ids(&["-f", "ipv6"]), vec![8]);
        assert_eq!(ids(&["-p", "tcp"]), vec![7]);
        assert_eq!(ids(&["-p", "TCP"]), vec![7]);
        assert_eq!(ids(&["-p", "17"]), vec![8]);
        assert_eq!(ids(&["-p", "icmp"]), vec![9]);
        assert_eq!(ids(&["-p", "gre"]), vec![10]);
        assert_eq!(ids(&["-s", "10.0.0.2"]), vec![7]);
        assert_eq!(ids(&["-s", "10.0.0.0/24"]), vec![7, 10]);
        assert_eq!(ids(&["-s", "10.0.0.0/8"]), vec![7, 10]);
        assert_eq!(ids(&["-s", "0.0.0.0/0"]), vec![7, 9, 10]);
        assert_eq!(ids(&["-s", "10.0.0.4/31"]), vec![10]);
        assert_eq!(ids(&["-s", "10.0.0.4/32"]), Vec::<u32>::new());
        // The reply direction's addresses are not matched.
        assert_eq!(ids(&["-d", "10.0.0.2"]), Vec::<u32>::new());
        assert_eq!(ids(&["-d", "10.0.1.2"]), vec![7]);
        assert_eq!(ids(&["--dst", "2001:db8:1::/48"]), vec![8]);
        assert_eq!(ids(&["--src", "2001:db8::1"]), vec![8]);
        assert_eq!(ids(&["--sport", "40000"]), vec![7]);
        assert_eq!(ids(&["--dport", "22"]), vec![7]);
        assert_eq!(ids(&["--dport", "53", "-p", "udp"]), vec![8]);
        // ICMP ids and types are not ports.
        assert_eq!(ids(&["--sport", "1234"]), Vec::<u32>::new());
        assert_eq!(ids(&["--dport", "0"]), Vec::<u32>::new());
        assert_eq!(ids(&["--state", "ESTABLISHED"]), vec![7]);
        assert_eq!(ids(&["--state", "established"]), vec![7]);
        assert_eq!(ids(&["--state", "syn-sent"]), Vec::<u32>::new());
        assert_eq!(ids(&["--mark", "16"]), vec![8]);
        assert_eq!(ids(&["--mark", "0x10/0xf0"]), vec![8]);
        assert_eq!(ids(&["--mark", "0/0xfffffffc"]), vec![7, 9, 10]);
        assert_eq!(ids(&["--mark", "0"]), vec![7, 10]);
        assert_eq!(ids(&["--status", "assured"]), vec![7]);
        assert_eq!(ids(&["--status", "SEEN_REPLY"]), vec![7, 9, 10]);
        assert_eq!(ids(&["--status", "seen-reply,confirmed"]), vec![7, 9, 10]);
        assert_eq!(ids(&["--status", "unreplied"]), vec![8]);
        assert_eq!(ids(&["--status", "snat"]), vec![10]);
        assert_eq!(ids(&["--status", "SRC_NAT"]), vec![10]);
        assert_eq!(ids(&["--status", "dnat"]), Vec::<u32>::new());
        assert_eq!(
            ids(&[
                "-p",
                "tcp",
                "-s",
                "10.0.0.0/8",
                "--dport",
                "22",
                "--status",
                "assured"
            ]),
            vec![7]
        );
        assert_eq!(ids(&["-p", "tcp", "--dport", "23"]), Vec::<u32>::new());
    }

    #[test]
    fn filter_errors() {
        let err = |args: &[&str]| filter(args).unwrap_err().to_string();
        assert!(err(&["-p", "tcpx"]).contains("at 'tcpx': unknown protocol"));
        assert!(err(&["-p", "256"]).contains("unknown protocol"));
        assert!(err(&["-s", "10.0.0.300"]).contains("at '10.0.0.300': -s expects"));
        assert!(err(&["-d", "10.0.0.0/33"]).contains("-d expects"));
        assert!(err(&["-s", "::1/129"]).contains("-s expects"));
        assert_eq!(
            err(&["-f", "ipv6", "-s", "10.0.0.1"]),
            "conntrack list: the addresses are ipv4 but -f asks for ipv6"
        );
        assert!(err(&["-s", "10.0.0.1", "-d", "::1"]).contains("the addresses are ipv6"));
        assert!(err(&["--state", "open"]).contains("unknown TCP state; expected one of SYN_SENT"));
        assert_eq!(
            err(&["-p", "udp", "--state", "established"]),
            "conntrack list: --state is a TCP state, but -p asks for udp"
        );
        assert!(err(&["-p", "icmp", "--dport", "1"]).contains("need a protocol with ports"));
        assert!(err(&["-p", "99", "--sport", "1"]).contains("not protocol 99"));
        assert!(err(&["--mark", "x"]).contains("expected a mark V or V/M"));
        assert!(err(&["--mark", "1/"]).contains("expected a mark"));
        assert!(err(&["--mark", "4294967296"]).contains("expected a mark"));
        assert!(err(&["--status", "bogus"]).contains("at 'bogus': unknown status"));
        assert!(err(&["--status", "unreplied,seen-reply"]).contains("exclude each other"));
        // --state implies tcp.
        assert_eq!(
            filter(&["--state", "close"]).unwrap().proto,
            Some(IPPROTO_TCP)
        );
    }

    #[test]
    fn prefixes() {
        let p = Prefix::parse("192.0.2.128/25").unwrap();
        assert!(p.contains(Family::Ipv4, &v4([192, 0, 2, 200])));
        assert!(!p.contains(Family::Ipv4, &v4([192, 0, 2, 127])));
        assert!(!p.contains(Family::Ipv6, &v4([192, 0, 2, 200])));
        let p = Prefix::parse("::/0").unwrap();
        assert!(p.contains(Family::Ipv6, &v6("2001:db8::1")));
        assert!(!p.contains(Family::Ipv4, &v4([1, 2, 3, 4])));
        let p = Prefix::parse("2001:db8::/33").unwrap();
        assert!(p.contains(Family::Ipv6, &v6("2001:db8:7fff::1")));
        assert!(!p.contains(Family::Ipv6, &v6("2001:db8:8000::1")));
        assert_eq!(Prefix::parse("10.0.0.1/x"), None);
        assert_eq!(Prefix::parse("host"), None);
    }

    fn stats() -> CtStatsMsg {
        let mut timeouts = Timeouts::LINUX;
        timeouts
            .set(TimeoutKey::Tcp(ct::TcpTimeout::Established), 3600)
            .unwrap();
        let s = CtStatsMsg {
            count: 3,
            limit: 262_144,
            buckets: 65_536,
            timeouts,
            inserted: 10,
            expired: 4,
            early_drops: 1,
            full_drops: 2,
            invalid: 5,
            deleted: 6,
            nat_drops: 0,
        };
        decode_stats(
            "conntrack stats",
            &[reply(cmd::GET_CT_STATS, |w| s.encode(w))],
        )
        .unwrap()
    }

    #[test]
    fn stats_limit_timeouts_output() {
        let s = stats();
        assert_eq!(
            render_stats(&s, false),
            "\
count        3
limit        262144
buckets      65536
inserted     10
expired      4
deleted      6
early_drops  1
full_drops   2
invalid      5
nat_drops    0
"
        );
        let v: serde_json::Value = serde_json::from_str(&render_stats(&s, true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"count": 3, "limit": 262144, "buckets": 65536, "inserted": 10,
                "expired": 4, "deleted": 6, "early_drops": 1, "full_drops": 2, "invalid": 5, "nat_drops": 0})
        );
        assert_eq!(render_limit(&s), "limit  262144\ncount  3\n");
        let t = render_timeouts(&s);
        assert!(
            t.starts_with("PROTO    STATE           SECONDS\ntcp      syn_sent            120\n"),
            "{t}"
        );
        assert!(t.contains("\ntcp      established        3600\n"), "{t}");
        assert!(t.contains("\nudp      replied             120\n"), "{t}");
        assert!(t.ends_with("\ngeneric  -                   600\n"), "{t}");
        assert_eq!(t.lines().count(), 1 + TimeoutKey::ALL.len());
        assert!(decode_stats("conntrack stats", &[]).is_err());
    }

    #[test]
    fn timeout_words() {
        let w = |s: &str| -> Vec<String> { s.split(' ').map(str::to_owned).collect() };
        assert_eq!(
            parse_timeout_words(&w("tcp established 3600")).unwrap(),
            (TimeoutKey::Tcp(ct::TcpTimeout::Established), 3600)
        );
        assert_eq!(
            parse_timeout_words(&w("udp stream 180")).unwrap(),
            (TimeoutKey::UdpReplied, 180)
        );
        assert_eq!(
            parse_timeout_words(&w("icmp 10")).unwrap(),
            (TimeoutKey::Icmp, 10)
        );
        let err = |s: &str| parse_timeout_words(&w(s)).unwrap_err().to_string();
        assert_eq!(
            err("tcp bogus 5"),
            "conntrack timeout: at 'tcp bogus': unknown state for this protocol"
        );
        assert_eq!(
            err("foo 5"),
            "conntrack timeout: at 'foo': unknown protocol (tcp, udp, icmp, icmpv6, generic)"
        );
        assert_eq!(
            err("tcp established 0"),
            "conntrack timeout: at '0': timeout must be between 1 and 2147483 seconds"
        );
        assert!(err("icmp 2147484").contains("between 1 and 2147483"));
        assert!(err("icmp x").contains("at 'x'"));
        assert!(err("tcp").contains("PROTO [STATE] SECONDS"));
        assert!(err("tcp a b c").contains("PROTO [STATE] SECONDS"));
        // What the request carries.
        let (key, secs) = parse_timeout_words(&w("generic 90")).unwrap();
        let attrs = crate::request::encode(|wr| encode_set_timeout(wr, key, secs)).unwrap();
        assert_eq!(decode_set_timeout(&attrs), Ok((TimeoutKey::Generic, 90)));
        assert_eq!(
            AttrIter::new(&attrs).next().unwrap().unwrap().ty,
            attr::CT_TIMEOUTS
        );
    }

    #[test]
    fn delete_needs_a_filter() {
        match Cli::try_parse_from(["rnfctl", "conntrack", "delete"])
            .unwrap()
            .command
        {
            Command::Conntrack(c) => {
                let e = run(&c).unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!("conntrack delete: {DELETE_NEEDS_FILTER}")
                );
                assert!(e.to_string().contains("rnfctl conntrack flush"));
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn bad_dump_is_a_protocol_error() {
        let r = reply(cmd::GET_CT, |w| w.put_u32(attr::CT_ID, 1));
        let e = decode_flows("conntrack list", &[r]).unwrap_err();
        assert!(matches!(e, Error::Protocol { .. }), "{e:?}");
        assert!(e.to_string().contains("required netlink attribute missing"));
    }
}
