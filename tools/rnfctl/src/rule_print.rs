// SPDX-License-Identifier: GPL-2.0-only

//! Printing a rule blob in the canonical form of the rule syntax (see
//! `rule_parse`): matches in a fixed order, names where rnf has them,
//! marks in hexadecimal, texts quoted. Parsing the printed words (after
//! [`split_words`](crate::rule_parse::split_words)) gives the same blob.

use std::fmt::Write;

use rnf_core::ct;
use rnf_core::hooks::Family;
use rnf_core::nat::{range_flag, NatAction};
use rnf_core::rules::{
    Action, AddrList, Cidr, CtMarkOp, IfaceMatch, MarkMatch, PortList, RejectKind, RuleError,
    RuleView, DEFAULT_LOG_LEVEL, RANDOM_ALWAYS,
};

use crate::rule_parse::{
    uses_icmpv6, CT_DIRECTIONS, ICMPV6_TYPES, ICMP_TYPES, LOG_LEVELS, NAT_OPTIONS, PROTOCOLS,
    TCP_FLAGS,
};

/// A text in double quotes, with `"`, `\` and control characters escaped.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn cidr(c: &Cidr) -> String {
    let a = match c.family {
        Family::Ipv4 => {
            let b: [u8; 4] = [c.addr[0], c.addr[1], c.addr[2], c.addr[3]];
            std::net::Ipv4Addr::from(b).to_string()
        }
        Family::Ipv6 => std::net::Ipv6Addr::from(c.addr).to_string(),
    };
    if c.prefix == Cidr::max_prefix(c.family) {
        a
    } else {
        format!("{a}/{}", c.prefix)
    }
}

fn neg(negated: bool) -> &'static str {
    if negated {
        "! "
    } else {
        ""
    }
}

fn addrs(out: &mut String, word: &str, l: AddrList<'_>) {
    let items: Vec<String> = l.iter().map(|c| cidr(&c)).collect();
    let _ = write!(out, " {word} {}{}", neg(l.negated), items.join(","));
}

fn ports(out: &mut String, word: &str, l: PortList<'_>) {
    let items: Vec<String> = l
        .iter()
        .map(|r| {
            if r.lo == r.hi {
                r.lo.to_string()
            } else {
                format!("{}-{}", r.lo, r.hi)
            }
        })
        .collect();
    let _ = write!(out, " {word} {}{}", neg(l.negated), items.join(","));
}

fn iface(out: &mut String, word: &str, i: IfaceMatch<'_>) {
    let plus = if i.prefix { "+" } else { "" };
    let _ = write!(out, " {word} {}{}{plus}", neg(i.negated), i.name);
}

fn flags(v: u8) -> String {
    if v == 0 {
        return "none".to_string();
    }
    let names: Vec<&str> = TCP_FLAGS
        .iter()
        .filter(|(_, b)| v & b != 0)
        .map(|(n, _)| *n)
        .collect();
    names.join(",")
}

fn mark(out: &mut String, word: &str, m: MarkMatch) {
    let _ = write!(out, " {word} {}{:#x}", neg(m.negated), m.value);
    if m.mask != u32::MAX {
        let _ = write!(out, "/{:#x}", m.mask);
    }
}

/// The shortest decimal probability that parses back to `p` (units of
/// 2^-31).
fn probability(p: u32) -> String {
    let f = f64::from(p) / f64::from(RANDOM_ALWAYS);
    for digits in 1..=12 {
        let s = format!("{f:.digits$}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        let s = if s.is_empty() { "0" } else { s };
        let back: f64 = s.parse().unwrap_or(-1.0);
        if (back * f64::from(RANDOM_ALWAYS)).round() as u32 == p {
            return s.to_string();
        }
    }
    f.to_string()
}

fn addr(family: Family, a: &[u8; 16]) -> String {
    match family {
        Family::Ipv4 => std::net::Ipv4Addr::from([a[0], a[1], a[2], a[3]]).to_string(),
        Family::Ipv6 => std::net::Ipv6Addr::from(*a).to_string(),
    }
}

/// `snat to ADDR[-ADDR][:PORT[-PORT]]`, `masquerade [to PORT[-PORT]]`,
/// then the options; an IPv6 address in brackets when a port follows
/// (`[fd00::1]:80`, `[fd00::1-fd00::3]:80`).
fn nat(out: &mut String, n: NatAction) {
    let r = &n.range;
    let _ = write!(out, " {}", n.kind.name());
    let ports = r.has(range_flag::PROTO_SPECIFIED).then(|| {
        if r.min_port == r.max_port {
            r.min_port.to_string()
        } else {
            format!("{}-{}", r.min_port, r.max_port)
        }
    });
    if r.has(range_flag::MAP_IPS) {
        let mut a = addr(r.family, &r.min_addr);
        if r.max_addr != r.min_addr {
            let _ = write!(a, "-{}", addr(r.family, &r.max_addr));
        }
        match (&ports, r.family) {
            (Some(p), Family::Ipv6) => {
                let _ = write!(out, " to [{a}]:{p}");
            }
            (Some(p), Family::Ipv4) => {
                let _ = write!(out, " to {a}:{p}");
            }
            (None, _) => {
                let _ = write!(out, " to {a}");
            }
        }
    } else if let Some(p) = &ports {
        let _ = write!(out, " to {p}");
    }
    for (name, bit) in NAT_OPTIONS {
        if r.has(*bit) {
            let _ = write!(out, " {name}");
        }
    }
}

/// Prints a rule blob as rule words, e.g. `ip proto tcp dport 22 accept`.
pub fn print_rule(blob: &[u8]) -> Result<String, RuleError> {
    let v = RuleView::decode(blob)?;
    let mut out = String::new();
    match v.family {
        Some(Family::Ipv4) => out.push_str(" ip"),
        Some(Family::Ipv6) => out.push_str(" ip6"),
        None => {}
    }
    if let Some(p) = v.proto {
        match PROTOCOLS.iter().find(|(_, n)| *n == p) {
            Some((name, _)) => {
                let _ = write!(out, " proto {name}");
            }
            None => {
                let _ = write!(out, " proto {p}");
            }
        }
    }
    if let Some(l) = v.saddr {
        addrs(&mut out, "saddr", l);
    }
    if let Some(l) = v.daddr {
        addrs(&mut out, "daddr", l);
    }
    if let Some(l) = v.sport {
        ports(&mut out, "sport", l);
    }
    if let Some(l) = v.dport {
        ports(&mut out, "dport", l);
    }
    if let Some(i) = v.iif {
        iface(&mut out, "iif", i);
    }
    if let Some(i) = v.oif {
        iface(&mut out, "oif", i);
    }
    if let Some(t) = v.tcp_flags {
        let _ = write!(out, " tcp flags {} / {}", flags(t.set), flags(t.mask));
    }
    if let Some(i) = v.icmp {
        let table = if uses_icmpv6(v.family, v.proto) {
            ICMPV6_TYPES
        } else {
            ICMP_TYPES
        };
        match table.iter().find(|(_, t)| *t == i.ty) {
            Some((name, _)) => {
                let _ = write!(out, " icmp type {name}");
            }
            None => {
                let _ = write!(out, " icmp type {}", i.ty);
            }
        }
        if let Some(c) = i.code {
            let _ = write!(out, " code {c}");
        }
    }
    if let Some(m) = v.mark {
        mark(&mut out, "mark", m);
    }
    if let Some(c) = v.ct_state {
        let names: Vec<&str> = c.states.names().collect();
        let _ = write!(out, " ct state {}{}", neg(c.negated), names.join(","));
    }
    if let Some(c) = v.ct_status {
        let names: Vec<&str> = ct::status::NAMES
            .iter()
            .filter(|(_, b)| c.bits & b != 0)
            .map(|(n, _)| *n)
            .collect();
        let _ = write!(out, " ct status {}{}", neg(c.negated), names.join(","));
    }
    if let Some(c) = v.ct_direction {
        let name = CT_DIRECTIONS
            .iter()
            .find(|(_, d)| *d == c.direction)
            .map_or("original", |(n, _)| *n);
        let _ = write!(out, " ct direction {}{name}", neg(c.negated));
    }
    if let Some(m) = v.ct_mark {
        mark(&mut out, "ct mark", m);
    }
    if let Some(l) = v.limit {
        let _ = write!(out, " limit {}/{} burst {}", l.rate, l.unit.name(), l.burst);
    }
    if let Some(u) = v.uid {
        let _ = write!(out, " uid {u}");
    }
    if let Some(g) = v.gid {
        let _ = write!(out, " gid {g}");
    }
    if let Some(p) = v.payload {
        let _ = write!(
            out,
            " payload contains {}",
            quote(&String::from_utf8_lossy(p))
        );
    }
    if let Some(p) = v.random {
        let _ = write!(out, " random {}", probability(p));
    }
    if let Some(n) = v.nth {
        let _ = write!(out, " nth {n}");
    }
    if let Some(c) = v.comment {
        let _ = write!(out, " comment {}", quote(c));
    }
    match v.action {
        Action::Accept => out.push_str(" accept"),
        Action::Drop => out.push_str(" drop"),
        Action::Reject(RejectKind::PortUnreachable) => out.push_str(" reject"),
        Action::Reject(k) => {
            let _ = write!(out, " reject with {}", k.name());
        }
        Action::Return => out.push_str(" return"),
        Action::Jump(c) => {
            let _ = write!(out, " jump {c}");
        }
        Action::Goto(c) => {
            let _ = write!(out, " goto {c}");
        }
        Action::Log { prefix, level } => {
            out.push_str(" log");
            if !prefix.is_empty() {
                let _ = write!(out, " prefix {}", quote(prefix));
            }
            if level != DEFAULT_LOG_LEVEL {
                let name = LOG_LEVELS
                    .get(usize::from(level))
                    .copied()
                    .unwrap_or("warning");
                let _ = write!(out, " level {name}");
            }
        }
        Action::Mark { op, value } => {
            let _ = write!(out, " mark {} {value:#x}", op.name());
        }
        Action::CtMark { op, value, mask } => {
            let _ = write!(out, " ct mark {}", op.name());
            if op.has_value() {
                let _ = write!(out, " {value:#x}");
            }
            if mask != u32::MAX {
                match op {
                    CtMarkOp::Set => {
                        let _ = write!(out, "/{mask:#x}");
                    }
                    _ => {
                        let _ = write!(out, " mask {mask:#x}");
                    }
                }
            }
        }
        Action::Notrack => out.push_str(" notrack"),
        Action::Nat(n) => nat(&mut out, n),
    }
    Ok(out.trim_start().to_string())
}
