// SPDX-License-Identifier: GPL-2.0-only

//! Parsing the rule syntax of `rnfctl add|insert|replace|delete` into a
//! rule blob (see `rnf_core::rules`).
//!
//! ```text
//! [ip|ip6] [proto P] [saddr [!] CIDR[,CIDR...]] [daddr [!] ...]
//! [sport [!] P[-Q][,...]] [dport [!] ...] [iif [!] NAME[+]] [oif [!] NAME[+]]
//! [tcp flags SET / MASK] [icmp type NAME|N [code C]] [mark [!] V[/M]]
//! [ct state [!] STATE[,STATE...]] [ct status [!] BIT[,BIT...]]
//! [ct direction [!] original|reply] [ct mark [!] V[/M]]
//! [limit N/second|minute|hour|day [burst B]] [uid N] [gid N]
//! [payload contains TEXT] [random P] [nth N] [comment TEXT]
//! ACTION
//! ACTION := accept | drop | reject [with KIND] | return | jump CHAIN
//!         | goto CHAIN | log [prefix TEXT] [level L] | mark set|xor|and|or V
//!         | ct mark set V[/M] | ct mark xor|and|or V
//!         | ct mark save|restore [mask M] | notrack
//!         | dnat to NAT_TO [random] [persistent]
//!         | snat to NAT_TO [random] [fully-random] [persistent]
//!         | masquerade [to [:]PORT[-PORT]] [random] [fully-random]
//!         | redirect [to [:]PORT[-PORT]] [random]
//! NAT_TO := ADDR[-ADDR][:PORT[-PORT]]   (IPv6: [ADDR[-ADDR]]:PORT..., or
//!           ADDR[-ADDR] without a port)
//! STATE := new | established | related | invalid | untracked
//! BIT   := expected | seen-reply | assured | confirmed | snat | dnat
//! ```
//!
//! `ct state` matches when the packet's state is one of those listed;
//! `ct status` when at least one of the listed bits is set in its flow
//! (as iptables' `--ctstatus`). `ct status`, `ct direction` and `ct mark`
//! need a flow: a packet without one matches neither them nor their
//! negation. `notrack` is only allowed in the raw table.
//!
//! The NAT actions are for the nat table (snat in POSTROUTING and INPUT,
//! dnat and redirect in PREROUTING and OUTPUT, masquerade in POSTROUTING);
//! ports in them need `proto tcp|udp|udplite|sctp|dccp`, as iptables'
//! `--to-ports` needs `-p`.
//!
//! Matches come in any order, each at most once; the action comes last.
//! The words arrive already split (by the shell, or by [`split_words`] for
//! a rule file), so `TEXT` is one word; the printer quotes it.
//!
//! Rules the syntax leaves implicit are made explicit, so that printing a
//! rule shows what it does:
//! - when every address of a rule belongs to one family and no `ip`/`ip6`
//!   is given, the rule is restricted to that family (so that `saddr !
//!   10.0.0.0/8` does not match every IPv6 packet);
//! - likewise when the address a `snat`/`dnat` translates to does (an
//!   IPv4 `dnat` never applies to IPv6 packets);
//! - `icmp type` without `proto` sets `proto icmp` (`icmpv6` in an `ip6`
//!   rule); names of ICMP types are looked up in the ICMPv6 table for
//!   `ip6` or `proto icmpv6` rules, in the ICMP table otherwise;
//! - host bits of a prefix are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
//!
//! `tcp flags` follows nftables' `tcp flags syn / syn,ack,rst,fin`: the
//! flags before `/` must be set, those after it are the ones examined.

use std::fmt;
use std::net::IpAddr;

use rnf_core::ct::{self, CtState, Direction};
use rnf_core::hooks::Family;
use rnf_core::nat::{range_flag, NatAction, NatKind, NatRange};
use rnf_core::packet::{
    tcp_flag, IPPROTO_AH, IPPROTO_DCCP, IPPROTO_ESP, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
};
use rnf_core::rules::{
    validate, Action, Cidr, CtDirectionMatch, CtMarkOp, CtStateMatch, CtStatusMatch, IcmpMatch,
    IfaceMatch, Limit, LimitUnit, ListSpec, MarkMatch, MarkOp, PortRange, RejectKind, RuleSpec,
    TcpFlagsMatch, DEFAULT_LIMIT_BURST, DEFAULT_LOG_LEVEL, RANDOM_ALWAYS,
};
use rnf_core::wire::AttrWriter;

/// A word of a rule that is wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The keyword or word at fault; `None` for the end of the rule.
    pub at: Option<String>,
    /// What is wrong, e.g. `expected a port or range like 80 or 1000-2000, got '80x'`.
    pub message: String,
}

impl ParseError {
    fn expected(at: &str, what: &str, got: Option<&str>) -> Self {
        let got = match got {
            Some(g) => format!("got '{g}'"),
            None => "got nothing".to_string(),
        };
        Self {
            at: Some(at.to_string()),
            message: format!("expected {what}, {got}"),
        }
    }

    fn other(at: &str, message: impl Into<String>) -> Self {
        Self {
            at: Some(at.to_string()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(w) => write!(f, "at '{w}': {}", self.message),
            None => write!(f, "at the end of the rule: {}", self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// Protocol names, canonical first for each number.
pub const PROTOCOLS: &[(&str, u8)] = &[
    ("tcp", IPPROTO_TCP),
    ("udp", IPPROTO_UDP),
    ("icmp", IPPROTO_ICMP),
    ("icmpv6", IPPROTO_ICMPV6),
    ("ipv6-icmp", IPPROTO_ICMPV6),
    ("sctp", IPPROTO_SCTP),
    ("udplite", IPPROTO_UDPLITE),
    ("dccp", IPPROTO_DCCP),
    ("gre", IPPROTO_GRE),
    ("esp", IPPROTO_ESP),
    ("ah", IPPROTO_AH),
];

/// ICMP type names.
pub const ICMP_TYPES: &[(&str, u8)] = &[
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("router-advertisement", 9),
    ("router-solicitation", 10),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp-request", 13),
    ("timestamp-reply", 14),
    ("address-mask-request", 17),
    ("address-mask-reply", 18),
];

/// ICMPv6 type names.
pub const ICMPV6_TYPES: &[(&str, u8)] = &[
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("mld-listener-query", 130),
    ("mld-listener-report", 131),
    ("mld-listener-done", 132),
    ("nd-router-solicit", 133),
    ("nd-router-advert", 134),
    ("nd-neighbor-solicit", 135),
    ("nd-neighbor-advert", 136),
    ("nd-redirect", 137),
];

/// TCP flag names in printing order.
pub const TCP_FLAGS: &[(&str, u8)] = &[
    ("fin", tcp_flag::FIN),
    ("syn", tcp_flag::SYN),
    ("rst", tcp_flag::RST),
    ("psh", tcp_flag::PSH),
    ("ack", tcp_flag::ACK),
    ("urg", tcp_flag::URG),
    ("ece", tcp_flag::ECE),
    ("cwr", tcp_flag::CWR),
];

/// Syslog level names, by level.
pub const LOG_LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Words that will start tracing actions.
const RESERVED: &[&str] = &["trace"];

/// Options of the NAT actions, in printing order.
pub const NAT_OPTIONS: &[(&str, u8)] = &[
    ("random", range_flag::RANDOM),
    ("fully-random", range_flag::FULLY_RANDOM),
    ("persistent", range_flag::PERSISTENT),
];

/// Names of the directions of `ct direction`.
pub const CT_DIRECTIONS: [(&str, Direction); 2] = [
    ("original", Direction::Original),
    ("reply", Direction::Reply),
];

const MATCH_WORDS: &str = "ip, ip6, proto, saddr, daddr, sport, dport, iif, oif, tcp flags, \
     icmp type, mark, ct state, ct status, ct direction, ct mark, limit, uid, gid, \
     payload contains, random, nth, comment";
const ACTION_WORDS: &str = "accept, drop, reject, return, jump CHAIN, goto CHAIN, log, \
     mark set|xor|and|or V, ct mark set|xor|and|or|save|restore, notrack, snat to ADDR, \
     dnat to ADDR, masquerade, redirect";

/// Whether the ICMPv6 type table applies to a rule.
pub fn uses_icmpv6(family: Option<Family>, proto: Option<u8>) -> bool {
    family == Some(Family::Ipv6) || proto == Some(IPPROTO_ICMPV6)
}

/// Rule being parsed, with owned parts.
#[derive(Default)]
struct Parsed {
    family: Option<Family>,
    proto: Option<u8>,
    saddr: Option<(bool, Vec<Cidr>)>,
    daddr: Option<(bool, Vec<Cidr>)>,
    sport: Option<(bool, Vec<PortRange>)>,
    dport: Option<(bool, Vec<PortRange>)>,
    iif: Option<(String, bool, bool)>,
    oif: Option<(String, bool, bool)>,
    tcp_flags: Option<TcpFlagsMatch>,
    /// Type word and code, resolved once family and proto are known.
    icmp: Option<(String, Option<u8>)>,
    mark: Option<MarkMatch>,
    ct_state: Option<CtStateMatch>,
    ct_status: Option<CtStatusMatch>,
    ct_direction: Option<CtDirectionMatch>,
    ct_mark: Option<MarkMatch>,
    limit: Option<Limit>,
    uid: Option<u32>,
    gid: Option<u32>,
    payload: Option<String>,
    random: Option<u32>,
    nth: Option<u32>,
    comment: Option<String>,
    action: Option<ParsedAction>,
}

enum ParsedAction {
    Plain(Action<'static>),
    Jump(String),
    Goto(String),
    Log(String, u8),
}

struct Words<'w, S> {
    words: &'w [S],
    i: usize,
}

impl<'w, S: AsRef<str>> Words<'w, S> {
    fn peek(&self) -> Option<&'w str> {
        self.words.get(self.i).map(AsRef::as_ref)
    }
    fn next(&mut self) -> Option<&'w str> {
        let w = self.peek();
        if w.is_some() {
            self.i += 1;
        }
        w
    }
    /// The next word, which is required after `at`.
    fn need(&mut self, at: &str, what: &str) -> Result<&'w str, ParseError> {
        self.next()
            .ok_or_else(|| ParseError::expected(at, what, None))
    }
    /// An optional `!`, alone or in front of the next word. Returns
    /// whether it was there and the word after it.
    fn negated(&mut self, at: &str, what: &str) -> Result<(bool, &'w str), ParseError> {
        let w = self.need(at, what)?;
        if w == "!" {
            Ok((true, self.need(at, what)?))
        } else if let Some(rest) = w.strip_prefix('!') {
            Ok((true, rest))
        } else {
            Ok((false, w))
        }
    }
}

fn once<T>(slot: &mut Option<T>, at: &str, v: T) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::other(at, "given twice"));
    }
    *slot = Some(v);
    Ok(())
}

/// A number: decimal, or hexadecimal with `0x`.
fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) if !h.is_empty() => u32::from_str_radix(h, 16).ok(),
        _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}

fn parse_cidr(s: &str) -> Option<Cidr> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let (family, bytes) = match ip {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            (Family::Ipv4, b)
        }
        IpAddr::V6(v) => (Family::Ipv6, v.octets()),
    };
    let prefix = match prefix {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
        None => Cidr::max_prefix(family),
    };
    Cidr::new(family, bytes, prefix)
}

fn parse_port_range(s: &str) -> Option<PortRange> {
    let port = |p: &str| -> Option<u16> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (lo, hi) = (port(a)?, port(b)?);
            (lo <= hi).then_some(PortRange { lo, hi })
        }
        None => port(s).map(|p| PortRange { lo: p, hi: p }),
    }
}

fn parse_flags(s: &str) -> Option<u8> {
    if s == "none" {
        return Some(0);
    }
    let mut v = 0u8;
    for f in s.split(',') {
        v |= TCP_FLAGS.iter().find(|(n, _)| *n == f)?.1;
    }
    Some(v)
}

/// `0.25` → `0.25 * 2^31`, rounded.
fn parse_probability(s: &str) -> Option<u32> {
    if !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let p: f64 = s.parse().ok()?;
    if !(0.0..=1.0).contains(&p) {
        return None;
    }
    Some((p * f64::from(RANDOM_ALWAYS)).round() as u32)
}

fn parse_level(s: &str) -> Option<u8> {
    if let Some(i) = LOG_LEVELS.iter().position(|l| *l == s) {
        return u8::try_from(i).ok();
    }
    match s {
        "warn" => Some(4),
        "error" => Some(3),
        _ => number(s).filter(|n| *n <= 7).map(|n| n as u8),
    }
}

/// `V` or `V/M`; no mask is all bits.
fn parse_masked(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((a, b)) => Some((number(a)?, number(b)?)),
        None => Some((number(s)?, u32::MAX)),
    }
}

/// A comma-separated list of names from `names`, or-ed together; the item
/// at fault on error.
fn parse_name_list<T: Copy>(
    list: &str,
    names: &[(&str, T)],
    or: impl Fn(T, T) -> T,
) -> Result<T, String> {
    let mut acc: Option<T> = None;
    for item in list.split(',') {
        let v = names
            .iter()
            .find(|(n, _)| *n == item)
            .map(|(_, v)| *v)
            .ok_or_else(|| item.to_string())?;
        acc = Some(match acc {
            Some(a) => or(a, v),
            None => v,
        });
    }
    acc.ok_or_else(String::new)
}

/// The words after `ct`: a match, or the `ct mark` action.
fn parse_ct<S: AsRef<str>>(w: &mut Words<'_, S>, r: &mut Parsed) -> Result<(), ParseError> {
    let what = "'state', 'status', 'direction' or 'mark'";
    let k = w.need("ct", what)?;
    match k {
        "state" => {
            let at = "ct state";
            let what = "states new, established, related, invalid or untracked (comma-separated)";
            let (negated, list) = w.negated(at, what)?;
            let states = match CtState::parse_list(list) {
                Some(s) => s,
                None => {
                    let bad = parse_name_list(list, &CtState::NAMES, CtState::union)
                        .err()
                        .unwrap_or_default();
                    return Err(ParseError::expected(at, what, Some(&bad)));
                }
            };
            once(&mut r.ct_state, at, CtStateMatch { states, negated })
        }
        "status" => {
            let at = "ct status";
            let what = "status bits expected, seen-reply, assured, confirmed, snat or dnat \
                        (comma-separated)";
            let (negated, list) = w.negated(at, what)?;
            let bits = parse_name_list(list, &ct::status::NAMES, |a, b| a | b)
                .map_err(|bad| ParseError::expected(at, what, Some(&bad)))?;
            once(&mut r.ct_status, at, CtStatusMatch { bits, negated })
        }
        "direction" => {
            let at = "ct direction";
            let what = "original or reply";
            let (negated, d) = w.negated(at, what)?;
            let direction = CT_DIRECTIONS
                .iter()
                .find(|(n, _)| *n == d)
                .map(|(_, v)| *v)
                .ok_or_else(|| ParseError::expected(at, what, Some(d)))?;
            once(
                &mut r.ct_direction,
                at,
                CtDirectionMatch { direction, negated },
            )
        }
        "mark" => {
            let at = "ct mark";
            if let Some(op) = w.peek().and_then(CtMarkOp::from_name) {
                w.next();
                let (value, mask) = match op {
                    CtMarkOp::Set => {
                        let what =
                            "a mark value like 0x10, or 0x10/0xff to set only the bits in 0xff";
                        let v = w.need(at, what)?;
                        parse_masked(v).ok_or_else(|| ParseError::expected(at, what, Some(v)))?
                    }
                    CtMarkOp::Xor | CtMarkOp::And | CtMarkOp::Or => {
                        let what = "a mark value like 0x10 or 16";
                        let v = w.need(at, what)?;
                        let value =
                            number(v).ok_or_else(|| ParseError::expected(at, what, Some(v)))?;
                        (value, u32::MAX)
                    }
                    CtMarkOp::Save | CtMarkOp::Restore => {
                        let mut mask = u32::MAX;
                        if w.peek() == Some("mask") {
                            w.next();
                            let what = "a mask like 0xff00";
                            let m = w.need("mask", what)?;
                            mask = number(m)
                                .ok_or_else(|| ParseError::expected("mask", what, Some(m)))?;
                        }
                        (0, mask)
                    }
                };
                r.action = Some(ParsedAction::Plain(Action::CtMark { op, value, mask }));
                return Ok(());
            }
            let what =
                "a mark like 0x10 or 0x10/0xff, or set|xor|and|or|save|restore for the action";
            let (negated, v) = w.negated(at, what)?;
            let (value, mask) =
                parse_masked(v).ok_or_else(|| ParseError::expected(at, what, Some(v)))?;
            once(
                &mut r.ct_mark,
                at,
                MarkMatch {
                    value,
                    mask,
                    negated,
                },
            )
        }
        _ => Err(ParseError::expected("ct", what, Some(k))),
    }
}

/// `ADDR[-ADDR]` of one family.
fn parse_addr_range(s: &str) -> Option<(Family, [u8; 16], [u8; 16])> {
    let one = |a: &str| -> Option<(Family, [u8; 16])> {
        match a.parse::<IpAddr>().ok()? {
            IpAddr::V4(v) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v.octets());
                Some((Family::Ipv4, b))
            }
            IpAddr::V6(v) => Some((Family::Ipv6, v.octets())),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let ((fa, lo), (fb, hi)) = (one(a)?, one(b)?);
            (fa == fb).then_some((fa, lo, hi))
        }
        None => one(s).map(|(f, a)| (f, a, a)),
    }
}

/// The argument of `snat to` and `dnat to`: `ADDR[-ADDR][:PORTS]` for
/// IPv4; `ADDR[-ADDR]`, `[ADDR[-ADDR]][:PORTS]` or `[ADDR]-[ADDR][:PORTS]`
/// for IPv6; `:PORTS` alone. Returns the address part and the port part.
fn split_nat_to(s: &str) -> Option<(Option<String>, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (first, mut after) = rest.split_once(']')?;
        let mut addrs = first.to_string();
        if let Some(r2) = after.strip_prefix("-[") {
            let (second, a2) = r2.split_once(']')?;
            addrs = format!("{first}-{second}");
            after = a2;
        }
        let ports = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        return Some((Some(addrs), ports));
    }
    if let Some(p) = s.strip_prefix(':') {
        return Some((None, Some(p)));
    }
    match s.matches(':').count() {
        1 => {
            let (a, p) = s.split_once(':')?;
            Some((Some(a.to_string()), Some(p)))
        }
        _ => Some((Some(s.to_string()), None)),
    }
}

/// The words after `snat`, `dnat`, `masquerade` or `redirect`: `to` and
/// its argument (required for `snat` and `dnat`), then the options.
fn parse_nat<S: AsRef<str>>(w: &mut Words<'_, S>, kind: NatKind) -> Result<NatAction, ParseError> {
    let name = kind.name();
    let mut range = NatRange::empty(Family::Ipv4);
    let port_what = "a port or range like 80 or 8000-8010";
    if kind.takes_addr() {
        let what = "'to' and an address, range or address and ports like 10.0.0.1, \
                    10.0.0.1-10.0.0.3:8000-8010 or [fd00::1]:80";
        let t = w.need(name, what)?;
        if t != "to" {
            return Err(ParseError::expected(name, what, Some(t)));
        }
        let at = format!("{name} to");
        let what = "an address, range or address and ports like 10.0.0.1, \
                    10.0.0.1-10.0.0.3:8000-8010 or [fd00::1]:80";
        let v = w.need(&at, what)?;
        let (addrs, ports) =
            split_nat_to(v).ok_or_else(|| ParseError::expected(&at, what, Some(v)))?;
        let Some(addrs) = addrs else {
            return Err(ParseError::other(
                &at,
                format!("{name} needs an address to translate to, like 10.0.0.1{v}"),
            ));
        };
        let (family, lo, hi) = parse_addr_range(&addrs).ok_or_else(|| {
            ParseError::expected(
                &at,
                "an address or range like 10.0.0.1-10.0.0.3",
                Some(&addrs),
            )
        })?;
        range = NatRange::addrs(family, lo, hi);
        if let Some(p) = ports {
            let r =
                parse_port_range(p).ok_or_else(|| ParseError::expected(&at, port_what, Some(p)))?;
            range = range.with_ports(r.lo, r.hi);
        }
    } else if w.peek() == Some("to") {
        w.next();
        let at = format!("{name} to");
        let what = if kind == NatKind::Masquerade {
            "a port or range like 1024-65535 (masquerade translates to the outgoing \
             interface's address)"
        } else {
            "a port or range like 8443 or 8000-8010 (redirect translates to the local \
             host's address)"
        };
        let v = w.need(&at, what)?;
        let p = v.strip_prefix(':').unwrap_or(v);
        let r = parse_port_range(p).ok_or_else(|| ParseError::expected(&at, what, Some(v)))?;
        range = range.with_ports(r.lo, r.hi);
    }
    while let Some((opt, bit)) = w
        .peek()
        .and_then(|o| NAT_OPTIONS.iter().find(|(n, _)| *n == o))
    {
        w.next();
        if range.has(*bit) {
            return Err(ParseError::other(opt, "given twice"));
        }
        range = range.with_flags(*bit);
    }
    Ok(NatAction { kind, range })
}

fn parse_limit(s: &str) -> Option<(u32, LimitUnit)> {
    let (n, unit) = s.split_once('/')?;
    let unit = match unit {
        "s" | "sec" | "second" => LimitUnit::Second,
        "m" | "min" | "minute" => LimitUnit::Minute,
        "h" | "hour" => LimitUnit::Hour,
        "d" | "day" => LimitUnit::Day,
        _ => return None,
    };
    let n = number(n).filter(|n| *n > 0)?;
    Some((n, unit))
}

/// Parses the words of a rule (matches and action) into a validated rule
/// blob.
pub fn parse_rule<S: AsRef<str>>(words: &[S]) -> Result<Vec<u8>, ParseError> {
    let mut w = Words { words, i: 0 };
    let mut r = Parsed::default();
    while let Some(word) = w.next() {
        if r.action.is_some() {
            return Err(ParseError::other(
                word,
                "unexpected word after the action (the action comes last)",
            ));
        }
        match word {
            "ip" | "ip6" => {
                let f = if word == "ip" {
                    Family::Ipv4
                } else {
                    Family::Ipv6
                };
                if r.family.is_some() {
                    return Err(ParseError::other(word, "ip or ip6 is given twice"));
                }
                r.family = Some(f);
            }
            "proto" => {
                let what = "a protocol name (tcp, udp, icmp, icmpv6, sctp, ...) or number 1-255";
                let p = w.need(word, what)?;
                let v = PROTOCOLS
                    .iter()
                    .find(|(n, _)| *n == p)
                    .map(|(_, v)| *v)
                    .or_else(|| {
                        number(p)
                            .and_then(|n| u8::try_from(n).ok())
                            .filter(|n| *n != 0)
                    })
                    .ok_or_else(|| ParseError::expected(word, what, Some(p)))?;
                once(&mut r.proto, word, v)?;
            }
            "saddr" | "daddr" => {
                let what = "an address or prefix like 10.0.0.0/8 or 2001:db8::/32";
                let (neg, list) = w.negated(word, what)?;
                let mut items = Vec::new();
                for item in list.split(',') {
                    items.push(
                        parse_cidr(item)
                            .ok_or_else(|| ParseError::expected(word, what, Some(item)))?,
                    );
                }
                let slot = if word == "saddr" {
                    &mut r.saddr
                } else {
                    &mut r.daddr
                };
                once(slot, word, (neg, items))?;
            }
            "sport" | "dport" => {
                let what = "a port or range like 80 or 1000-2000";
                let (neg, list) = w.negated(word, what)?;
                let mut items = Vec::new();
                for item in list.split(',') {
                    items.push(
                        parse_port_range(item)
                            .ok_or_else(|| ParseError::expected(word, what, Some(item)))?,
                    );
                }
                let slot = if word == "sport" {
                    &mut r.sport
                } else {
                    &mut r.dport
                };
                once(slot, word, (neg, items))?;
            }
            "iif" | "oif" => {
                let what = "an interface name like eth0, or a prefix like eth+";
                let (neg, name) = w.negated(word, what)?;
                let (name, prefix) = match name.strip_suffix('+') {
                    Some(n) => (n, true),
                    None => (name, false),
                };
                if name.is_empty() && !prefix {
                    return Err(ParseError::expected(word, what, Some(name)));
                }
                let slot = if word == "iif" {
                    &mut r.iif
                } else {
                    &mut r.oif
                };
                once(slot, word, (name.to_string(), prefix, neg))?;
            }
            "tcp" => {
                let f = w.need(word, "'flags'")?;
                if f != "flags" {
                    return Err(ParseError::expected(word, "'flags'", Some(f)));
                }
                let at = "tcp flags";
                let what = "flags like syn / syn,ack,rst,fin (set / examined)";
                let first = w.need(at, what)?;
                let (set, mask) = match first.split_once('/') {
                    Some((a, b)) if !b.is_empty() => (a, b),
                    Some((a, _)) => (a, w.need(at, what)?),
                    None => {
                        let slash = w.need(at, what)?;
                        match slash.strip_prefix('/') {
                            Some("") => (first, w.need(at, what)?),
                            Some(m) => (first, m),
                            None => {
                                return Err(ParseError::expected(
                                    at,
                                    "'/' and the flags examined",
                                    Some(slash),
                                ))
                            }
                        }
                    }
                };
                let names =
                    "flag names fin, syn, rst, psh, ack, urg, ece, cwr (comma-separated) or none";
                let set_v = parse_flags(set.trim())
                    .ok_or_else(|| ParseError::expected(at, names, Some(set)))?;
                let mask_v = parse_flags(mask.trim())
                    .ok_or_else(|| ParseError::expected(at, names, Some(mask)))?;
                once(
                    &mut r.tcp_flags,
                    at,
                    TcpFlagsMatch {
                        mask: mask_v,
                        set: set_v,
                    },
                )?;
            }
            "icmp" => {
                let t = w.need(word, "'type'")?;
                if t != "type" {
                    return Err(ParseError::expected(word, "'type'", Some(t)));
                }
                let ty = w.need(
                    "icmp type",
                    "an ICMP type name like echo-request, or a number",
                )?;
                let code = if w.peek() == Some("code") {
                    w.next();
                    let c = w.need("code", "an ICMP code 0-255")?;
                    Some(
                        number(c)
                            .and_then(|n| u8::try_from(n).ok())
                            .ok_or_else(|| {
                                ParseError::expected("code", "an ICMP code 0-255", Some(c))
                            })?,
                    )
                } else {
                    None
                };
                once(&mut r.icmp, "icmp type", (ty.to_string(), code))?;
            }
            "mark" => {
                if let Some(op) = w.peek().and_then(MarkOp::from_name) {
                    w.next();
                    let at = "mark";
                    let what = "a mark value like 0x10 or 16";
                    let v = w.need(at, what)?;
                    let value = number(v).ok_or_else(|| ParseError::expected(at, what, Some(v)))?;
                    r.action = Some(ParsedAction::Plain(Action::Mark { op, value }));
                    continue;
                }
                let what = "a mark like 0x10 or 0x10/0xff, or set|xor|and|or for the action";
                let (neg, v) = w.negated(word, what)?;
                let (value, mask) =
                    parse_masked(v).ok_or_else(|| ParseError::expected(word, what, Some(v)))?;
                once(
                    &mut r.mark,
                    word,
                    MarkMatch {
                        value,
                        mask,
                        negated: neg,
                    },
                )?;
            }
            "ct" => parse_ct(&mut w, &mut r)?,
            "limit" => {
                let what = "a rate like 10/second, 5/minute, 1/hour or 1/day";
                let v = w.need(word, what)?;
                let (rate, unit) =
                    parse_limit(v).ok_or_else(|| ParseError::expected(word, what, Some(v)))?;
                let burst = if w.peek() == Some("burst") {
                    w.next();
                    let b = w.need("burst", "a number of packets")?;
                    number(b).filter(|n| *n > 0).ok_or_else(|| {
                        ParseError::expected("burst", "a number of packets", Some(b))
                    })?
                } else {
                    DEFAULT_LIMIT_BURST
                };
                once(&mut r.limit, word, Limit { rate, unit, burst })?;
            }
            "uid" | "gid" => {
                let what = "a numeric id";
                let v = w.need(word, what)?;
                let n = number(v).ok_or_else(|| ParseError::expected(word, what, Some(v)))?;
                let slot = if word == "uid" {
                    &mut r.uid
                } else {
                    &mut r.gid
                };
                once(slot, word, n)?;
            }
            "payload" => {
                let c = w.need(word, "'contains'")?;
                if c != "contains" {
                    return Err(ParseError::expected(word, "'contains'", Some(c)));
                }
                let t = w.need("payload contains", "the text to look for")?;
                if t.is_empty() {
                    return Err(ParseError::expected(
                        "payload contains",
                        "the text to look for",
                        Some(t),
                    ));
                }
                once(&mut r.payload, "payload contains", t.to_string())?;
            }
            "random" => {
                let what = "a probability from 0 to 1, like 0.25";
                let v = w.need(word, what)?;
                let p = parse_probability(v)
                    .ok_or_else(|| ParseError::expected(word, what, Some(v)))?;
                once(&mut r.random, word, p)?;
            }
            "nth" => {
                let what = "a count N of at least 1 (every N-th packet)";
                let v = w.need(word, what)?;
                let n = number(v)
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ParseError::expected(word, what, Some(v)))?;
                once(&mut r.nth, word, n)?;
            }
            "comment" => {
                let t = w.need(word, "the comment text")?;
                once(&mut r.comment, word, t.to_string())?;
            }
            "accept" => r.action = Some(ParsedAction::Plain(Action::Accept)),
            "drop" => r.action = Some(ParsedAction::Plain(Action::Drop)),
            "return" => r.action = Some(ParsedAction::Plain(Action::Return)),
            "notrack" => r.action = Some(ParsedAction::Plain(Action::Notrack)),
            "reject" => {
                let mut kind = RejectKind::PortUnreachable;
                if w.peek() == Some("with") {
                    w.next();
                    let what = "tcp-reset, icmp-port-unreachable, icmp-host-unreachable, \
                         icmp-net-unreachable, icmp-proto-unreachable, icmp-net-prohibited, \
                         icmp-host-prohibited or icmp-admin-prohibited";
                    let k = w.need("reject with", what)?;
                    kind = RejectKind::from_name(k)
                        .ok_or_else(|| ParseError::expected("reject with", what, Some(k)))?;
                }
                r.action = Some(ParsedAction::Plain(Action::Reject(kind)));
            }
            "jump" | "goto" => {
                let c = w.need(word, "a chain name")?;
                rnf_core::rules::validate_chain_name(c).map_err(|e| {
                    ParseError::other(word, strip_field(e.message, e.field).to_string())
                })?;
                r.action = Some(if word == "jump" {
                    ParsedAction::Jump(c.to_string())
                } else {
                    ParsedAction::Goto(c.to_string())
                });
            }
            "log" => {
                let mut prefix = None;
                let mut level = None;
                loop {
                    match w.peek() {
                        Some("prefix") if prefix.is_none() => {
                            w.next();
                            prefix = Some(w.need("prefix", "the log prefix text")?.to_string());
                        }
                        Some("level") if level.is_none() => {
                            w.next();
                            let what = "a level emerg, alert, crit, err, warning, notice, info, debug or 0-7";
                            let l = w.need("level", what)?;
                            level = Some(
                                parse_level(l)
                                    .ok_or_else(|| ParseError::expected("level", what, Some(l)))?,
                            );
                        }
                        _ => break,
                    }
                }
                r.action = Some(ParsedAction::Log(
                    prefix.unwrap_or_default(),
                    level.unwrap_or(DEFAULT_LOG_LEVEL),
                ));
            }
            "snat" | "dnat" | "masquerade" | "redirect" => {
                let kind = match word {
                    "snat" => NatKind::Snat,
                    "dnat" => NatKind::Dnat,
                    "masquerade" => NatKind::Masquerade,
                    _ => NatKind::Redirect,
                };
                r.action = Some(ParsedAction::Plain(Action::Nat(parse_nat(&mut w, kind)?)));
            }
            _ if RESERVED.contains(&word) => {
                return Err(ParseError::other(
                    word,
                    "trace is not supported by this version of rnf yet",
                ))
            }
            _ => {
                return Err(ParseError::other(
                    word,
                    format!(
                    "unknown word; expected a match ({MATCH_WORDS}) or an action ({ACTION_WORDS})"
                ),
                ))
            }
        }
    }
    encode(r)
}

/// `message` without its leading `"field: "`.
pub(crate) fn strip_field<'m>(message: &'m str, field: &str) -> &'m str {
    message
        .strip_prefix(field)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
}

fn encode(mut r: Parsed) -> Result<Vec<u8>, ParseError> {
    let Some(action) = r.action.take() else {
        return Err(ParseError {
            at: None,
            message: format!("expected an action ({ACTION_WORDS}), got nothing"),
        });
    };
    // Make the family explicit when the addresses imply it.
    if r.family.is_none() {
        let mut fams = r
            .saddr
            .iter()
            .chain(r.daddr.iter())
            .flat_map(|(_, l)| l.iter().map(|c| c.family));
        if let Some(first) = fams.next() {
            if fams.all(|f| f == first) {
                r.family = Some(first);
            }
        }
    }
    // And when the address to translate to does: an IPv4 dnat is for IPv4
    // packets only.
    if let (None, ParsedAction::Plain(Action::Nat(n))) = (r.family, &action) {
        if n.range.has(range_flag::MAP_IPS) {
            r.family = Some(n.range.family);
        }
    }
    let icmp = match &r.icmp {
        None => None,
        Some((ty, code)) => {
            if r.proto.is_none() {
                r.proto = Some(if r.family == Some(Family::Ipv6) {
                    IPPROTO_ICMPV6
                } else {
                    IPPROTO_ICMP
                });
            }
            let table = if uses_icmpv6(r.family, r.proto) {
                ICMPV6_TYPES
            } else {
                ICMP_TYPES
            };
            let t = table
                .iter()
                .find(|(n, _)| n == ty)
                .map(|(_, v)| *v)
                .or_else(|| number(ty).and_then(|n| u8::try_from(n).ok()))
                .ok_or_else(|| {
                    ParseError::expected(
                        "icmp type",
                        "an ICMP type name like echo-request, or a number 0-255",
                        Some(ty),
                    )
                })?;
            Some(IcmpMatch { ty: t, code: *code })
        }
    };
    let action = match &action {
        ParsedAction::Plain(a) => *a,
        ParsedAction::Jump(c) => Action::Jump(c),
        ParsedAction::Goto(c) => Action::Goto(c),
        ParsedAction::Log(p, l) => Action::Log {
            prefix: p,
            level: *l,
        },
    };
    fn list<T>(l: &Option<(bool, Vec<T>)>) -> Option<ListSpec<'_, T>> {
        l.as_ref().map(|(negated, items)| ListSpec {
            negated: *negated,
            items,
        })
    }
    fn iface(i: &Option<(String, bool, bool)>) -> Option<IfaceMatch<'_>> {
        i.as_ref().map(|(name, prefix, negated)| IfaceMatch {
            name,
            prefix: *prefix,
            negated: *negated,
        })
    }
    let spec = RuleSpec {
        family: r.family,
        proto: r.proto,
        saddr: list(&r.saddr),
        daddr: list(&r.daddr),
        sport: list(&r.sport),
        dport: list(&r.dport),
        iif: iface(&r.iif),
        oif: iface(&r.oif),
        tcp_flags: r.tcp_flags,
        icmp,
        mark: r.mark,
        ct_state: r.ct_state,
        ct_status: r.ct_status,
        ct_direction: r.ct_direction,
        ct_mark: r.ct_mark,
        limit: r.limit,
        uid: r.uid,
        gid: r.gid,
        payload: r.payload.as_deref().map(str::as_bytes),
        random: r.random,
        nth: r.nth,
        comment: r.comment.as_deref(),
        action,
    };
    let mut m = AttrWriter::measure();
    spec.encode(&mut m);
    let too_big = || ParseError {
        at: None,
        message: "the rule is too large".to_string(),
    };
    let mut buf = vec![0u8; m.finish().map_err(|_| too_big())?];
    let mut wr = AttrWriter::new(&mut buf);
    spec.encode(&mut wr);
    wr.finish().map_err(|_| too_big())?;
    validate(&buf)
        .map_err(|e| ParseError::other(e.field, strip_field(e.message, e.field).to_string()))?;
    Ok(buf)
}

/// Splits a line of a rule file into words: blanks separate words, double
/// quotes group them, and inside quotes `\"`, `\\` and `\xHH` (ASCII) are
/// escapes.
pub fn split_words(line: &str) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut word = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(ParseError::other(
                            &word,
                            "a quoted text has no closing '\"'",
                        ))
                    }
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('x') => {
                            let hex: String = chars.by_ref().take(2).collect();
                            let b = u8::from_str_radix(&hex, 16)
                                .ok()
                                .filter(u8::is_ascii)
                                .ok_or_else(|| {
                                    ParseError::expected(
                                        &word,
                                        "\\x and two hex digits below 80",
                                        Some(&hex),
                                    )
                                })?;
                            word.push(char::from(b));
                        }
                        Some(e @ ('"' | '\\')) => word.push(e),
                        other => {
                            return Err(ParseError::expected(
                                &word,
                                "\\\", \\\\ or \\xHH inside quotes",
                                other.map(String::from).as_deref(),
                            ))
                        }
                    },
                    Some(ch) => word.push(ch),
                }
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                word.push(ch);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}
