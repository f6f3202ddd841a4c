// SPDX-License-Identifier: GPL-2.0-only

//! The rule model and its wire format: tables, chains, and one rule as a
//! netlink attribute blob.
//!
//! A rule travels from `rnfctl` to the kernel as a list of attributes (the
//! ids are in [`rule_attr`]) and is stored there as that blob. The kernel
//! checks a blob with [`validate`] before accepting it; the errors name the
//! field that is wrong in words meant for the person who typed the rule,
//! because they come back as the netlink extended-ack message.
//!
//! [`RuleSpec`] encodes a rule from borrowed parts; [`RuleView`] decodes a
//! validated blob without allocating, with iterators over its lists.
//!
//! All matches of a rule must hold for the rule to match. A match on a
//! field the packet lacks (ports of an ICMP packet, TCP flags of a UDP
//! packet, ICMP type of a non-ICMP packet, a uid of a forwarded packet)
//! does not hold, whether or not it is negated, as in iptables.

use crate::ct::{status as ct_status, CtState, Direction};
use crate::hooks::{Family, Hook, Stage};
use crate::nat::{range_flag, NatAction, NatKind, NatRange};
use crate::packet::{
    copy_into, IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    IPPROTO_UDPLITE,
};
use crate::wire::{Attr, AttrIter, AttrWriter, WireError};

/// Largest rule blob the kernel accepts, in bytes.
pub const MAX_RULE_SIZE: usize = 4096;
/// Most entries in one address or port list.
pub const MAX_LIST_ITEMS: usize = 64;
/// Most chains in one table, built-in chains included.
pub const MAX_CHAINS: usize = 1024;
/// Most rules in one table.
pub const MAX_RULES: usize = 131_072;
/// Deepest nesting of `jump`s a packet can take from a built-in chain.
pub const MAX_JUMP_DEPTH: usize = 16;
/// Longest chain name, in bytes.
pub const MAX_CHAIN_NAME: usize = 31;
/// Longest interface name, in bytes (`IFNAMSIZ - 1`).
pub const MAX_IFNAME: usize = 15;
/// Longest `payload contains` text, in bytes.
pub const MAX_PAYLOAD_NEEDLE: usize = 128;
/// Longest `log prefix`, in bytes (as in iptables' LOG target).
pub const MAX_LOG_PREFIX: usize = 29;
/// Longest comment, in bytes.
pub const MAX_COMMENT: usize = 255;
/// Highest `limit` rate per unit: beyond it the token bucket's resolution
/// (nanoseconds per token) becomes meaningless.
pub const MAX_LIMIT_RATE: u32 = 1_000_000;
/// Highest `limit` burst.
pub const MAX_LIMIT_BURST: u32 = 1_000_000;
/// Default `limit` burst, as in iptables.
pub const DEFAULT_LIMIT_BURST: u32 = 5;
/// `random` probability that always matches: probabilities are stored in
/// units of 2^-31, as in iptables' statistic match.
pub const RANDOM_ALWAYS: u32 = 0x8000_0000;
/// Default `log level` (warning), as in iptables.
pub const DEFAULT_LOG_LEVEL: u8 = 4;

/// Attribute ids of a rule blob (top level).
pub mod rule_attr {
    /// Unused.
    pub const UNSPEC: u16 = 0;
    /// Family restriction: `u8` `NFPROTO_IPV4` or `NFPROTO_IPV6`; absent
    /// means both.
    pub const FAMILY: u16 = 1;
    /// Transport protocol number (`u8`, not 0).
    pub const PROTO: u16 = 2;
    /// Source addresses: nested [`list_attr`](super::list_attr) with CIDRs.
    pub const SADDR: u16 = 3;
    /// Destination addresses, like [`SADDR`].
    pub const DADDR: u16 = 4;
    /// Source ports: nested [`list_attr`](super::list_attr) with ranges.
    pub const SPORT: u16 = 5;
    /// Destination ports, like [`SPORT`].
    pub const DPORT: u16 = 6;
    /// Input interface: nested [`iface_attr`](super::iface_attr).
    pub const IIF: u16 = 7;
    /// Output interface: nested [`iface_attr`](super::iface_attr).
    pub const OIF: u16 = 8;
    /// TCP flags: nested [`tcp_flags_attr`](super::tcp_flags_attr).
    pub const TCP_FLAGS: u16 = 9;
    /// ICMP or ICMPv6 type and code: nested [`icmp_attr`](super::icmp_attr).
    pub const ICMP: u16 = 10;
    /// Packet mark: nested [`mark_attr`](super::mark_attr).
    pub const MARK: u16 = 11;
    /// Rate limit: nested [`limit_attr`](super::limit_attr).
    pub const LIMIT: u16 = 12;
    /// Owner uid of a locally generated packet (`u32`).
    pub const UID: u16 = 13;
    /// Owner gid of a locally generated packet (`u32`).
    pub const GID: u16 = 14;
    /// `payload contains`: the bytes to look for (not NUL-terminated).
    pub const PAYLOAD: u16 = 15;
    /// `random`: probability in units of 2^-31 (`u32`, at most
    /// [`RANDOM_ALWAYS`](super::RANDOM_ALWAYS)).
    pub const RANDOM: u16 = 16;
    /// `nth`: match every N-th packet (`u32`, at least 1).
    pub const NTH: u16 = 17;
    /// Comment (string); kept, printed, never matched.
    pub const COMMENT: u16 = 18;
    /// The action: nested [`action_attr`](super::action_attr). Required.
    pub const ACTION: u16 = 19;
    /// `ct state`: nested [`ct_match_attr`](super::ct_match_attr), the
    /// value a `u8` of [`CtState`](crate::ct::CtState) bits.
    pub const CT_STATE: u16 = 20;
    /// `ct status`: nested [`ct_match_attr`](super::ct_match_attr), the
    /// value a `u32` of [`ct::status`](crate::ct::status) bits.
    pub const CT_STATUS: u16 = 21;
    /// `ct direction`: nested [`ct_match_attr`](super::ct_match_attr), the
    /// value a `u8` [`Direction`](crate::ct::Direction) (0 original,
    /// 1 reply).
    pub const CT_DIRECTION: u16 = 22;
    /// `ct mark`: the flow's mark, nested [`mark_attr`](super::mark_attr)
    /// as for [`MARK`].
    pub const CT_MARK: u16 = 23;
    /// First id reserved for further conntrack matches (zone, helper,
    /// expiration); `validate` refuses them.
    pub const RESERVED_CT_FIRST: u16 = 24;
    /// Last id reserved for conntrack matches.
    pub const RESERVED_CT_LAST: u16 = 31;
    /// Highest id in use.
    pub const MAX: u16 = 23;
}

/// Attributes inside an address or port list.
pub mod list_attr {
    /// Flag (empty payload): the list is negated (`!`).
    pub const NEG: u16 = 1;
    /// IPv4 prefix: 4 address bytes (network order) and the prefix length.
    pub const CIDR4: u16 = 2;
    /// IPv6 prefix: 16 address bytes and the prefix length.
    pub const CIDR6: u16 = 3;
    /// Port range: first and last port, two native-endian `u16`.
    pub const RANGE: u16 = 4;
}

/// Attributes inside [`rule_attr::IIF`] and [`rule_attr::OIF`].
pub mod iface_attr {
    /// Interface name (string, 1 to 15 bytes).
    pub const NAME: u16 = 1;
    /// Flag: the name is a prefix (written `NAME+`).
    pub const PREFIX: u16 = 2;
    /// Flag: negated.
    pub const NEG: u16 = 3;
}

/// Attributes inside [`rule_attr::TCP_FLAGS`].
pub mod tcp_flags_attr {
    /// Flags to examine (`u8`, not 0).
    pub const MASK: u16 = 1;
    /// Of those, the ones that must be set (`u8`, within `MASK`).
    pub const SET: u16 = 2;
}

/// Attributes inside [`rule_attr::ICMP`].
pub mod icmp_attr {
    /// Type (`u8`). Required.
    pub const TYPE: u16 = 1;
    /// Code (`u8`); absent matches every code.
    pub const CODE: u16 = 2;
}

/// Attributes inside [`rule_attr::MARK`].
pub mod mark_attr {
    /// Value (`u32`). Required.
    pub const VALUE: u16 = 1;
    /// Mask (`u32`); absent means all bits.
    pub const MASK: u16 = 2;
    /// Flag: negated.
    pub const NEG: u16 = 3;
}

/// Attributes inside [`rule_attr::CT_STATE`], [`rule_attr::CT_STATUS`] and
/// [`rule_attr::CT_DIRECTION`].
pub mod ct_match_attr {
    /// The states, status bits or direction (see each match's id).
    /// Required.
    pub const VALUE: u16 = 1;
    /// Flag: negated.
    pub const NEG: u16 = 2;
}

/// Attributes inside [`rule_attr::LIMIT`].
pub mod limit_attr {
    /// Packets per unit (`u32`, 1 to [`MAX_LIMIT_RATE`](super::MAX_LIMIT_RATE)).
    pub const RATE: u16 = 1;
    /// [`LimitUnit`](super::LimitUnit) (`u8`).
    pub const UNIT: u16 = 2;
    /// Burst (`u32`); absent means
    /// [`DEFAULT_LIMIT_BURST`](super::DEFAULT_LIMIT_BURST).
    pub const BURST: u16 = 3;
}

/// Attributes inside [`rule_attr::ACTION`].
pub mod action_attr {
    /// [`action_kind`](super::action_kind) (`u8`). Required.
    pub const KIND: u16 = 1;
    /// Reject: [`RejectKind`](super::RejectKind) (`u8`); absent means
    /// port unreachable.
    pub const REJECT_WITH: u16 = 2;
    /// Jump and goto: target chain name (string).
    pub const CHAIN: u16 = 3;
    /// Log: prefix (string).
    pub const LOG_PREFIX: u16 = 4;
    /// Log: syslog level 0 to 7 (`u8`).
    pub const LOG_LEVEL: u16 = 5;
    /// Mark: [`MarkOp`](super::MarkOp) (`u8`); ct mark:
    /// [`CtMarkOp`](super::CtMarkOp) (`u8`).
    pub const MARK_OP: u16 = 6;
    /// Mark and ct mark: operand (`u32`); absent for `ct mark save` and
    /// `ct mark restore`.
    pub const MARK_VALUE: u16 = 7;
    /// Ct mark: mask of `set`, `save` and `restore` (`u32`); absent means
    /// all bits.
    pub const MARK_MASK: u16 = 8;
    /// NAT: lowest address of the range, 4 (IPv4) or 16 (IPv6) bytes in
    /// network order. `snat` and `dnat` only, and required there.
    pub const NAT_MIN_ADDR: u16 = 9;
    /// NAT: highest address of the range, of the same length as
    /// [`NAT_MIN_ADDR`] (equal to it for a single address); required with
    /// it.
    pub const NAT_MAX_ADDR: u16 = 10;
    /// NAT: lowest port of the range (`u16`, 1 or more); needs a rule
    /// protocol with ports.
    pub const NAT_MIN_PORT: u16 = 11;
    /// NAT: highest port (`u16`, at least [`NAT_MIN_PORT`]); required
    /// with it.
    pub const NAT_MAX_PORT: u16 = 12;
    /// NAT: [`range_flag`](crate::nat::range_flag) bits (`u8`). Required:
    /// `MAP_IPS` exactly when addresses are given, `PROTO_SPECIFIED`
    /// exactly when ports are, and only the options the action takes
    /// ([`NatKind::option_flags`](crate::nat::NatKind::option_flags)).
    pub const NAT_FLAGS: u16 = 13;
    /// First id reserved for further arguments (trace, zones).
    pub const RESERVED_FIRST: u16 = 14;
}

/// Values of [`action_attr::KIND`].
pub mod action_kind {
    /// Accept (terminal).
    pub const ACCEPT: u8 = 1;
    /// Drop (terminal).
    pub const DROP: u8 = 2;
    /// Reject with an ICMP error or TCP reset (terminal).
    pub const REJECT: u8 = 3;
    /// Return to the calling chain.
    pub const RETURN: u8 = 4;
    /// Jump to a user chain, coming back after it.
    pub const JUMP: u8 = 5;
    /// Go to a user chain without coming back.
    pub const GOTO: u8 = 6;
    /// Log and continue.
    pub const LOG: u8 = 7;
    /// Change the packet mark and continue.
    pub const MARK: u8 = 8;
    /// Source NAT to the rule's addresses (terminal; nat table,
    /// POSTROUTING and INPUT).
    pub const SNAT: u8 = 9;
    /// Destination NAT to the rule's addresses (terminal; nat table,
    /// PREROUTING and OUTPUT).
    pub const DNAT: u8 = 10;
    /// Source NAT to the outgoing interface's address (terminal; nat
    /// table, POSTROUTING).
    pub const MASQUERADE: u8 = 11;
    /// Destination NAT to the local host (terminal; nat table, PREROUTING
    /// and OUTPUT).
    pub const REDIRECT: u8 = 12;
    /// Exempt the packet from connection tracking and continue (raw
    /// table only).
    pub const NOTRACK: u8 = 13;
    /// Change the flow's mark (or copy it to or from the packet mark) and
    /// continue.
    pub const CT_MARK: u8 = 14;
    /// Reserved: trace the packet through the rules.
    pub const RESERVED_TRACE: u8 = 15;
}

/// An error in a rule, a chain name or a rule set.
///
/// `message` is a complete sentence fragment naming the field, for example
/// `"dport: a range's first port is above its last"`; the kernel sends it as
/// the extended-ack message, so it must make sense to the person who wrote
/// the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// The field or keyword at fault, as written in rnfctl syntax (`"dport"`,
    /// `"action"`, `"chain"`).
    pub field: &'static str,
    /// What is wrong, starting with the field.
    pub message: &'static str,
}

impl RuleError {
    const fn new(field: &'static str, message: &'static str) -> Self {
        Self { field, message }
    }
}

impl core::fmt::Display for RuleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message)
    }
}

/// An iptables table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Table {
    /// `raw`: before connection tracking.
    Raw = 0,
    /// `mangle`: packet alterations.
    Mangle = 1,
    /// `nat`: address translation, consulted for a flow's first packet.
    Nat = 2,
    /// `filter`: accept or drop.
    Filter = 3,
}

impl Table {
    /// All tables.
    pub const ALL: [Table; 4] = [Table::Raw, Table::Mangle, Table::Nat, Table::Filter];

    /// The table with discriminant `v`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Raw),
            1 => Some(Self::Mangle),
            2 => Some(Self::Nat),
            3 => Some(Self::Filter),
            _ => None,
        }
    }

    /// Name as written in rnfctl: `"raw"`, `"mangle"`, `"nat"`, `"filter"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Mangle => "mangle",
            Self::Nat => "nat",
            Self::Filter => "filter",
        }
    }

    /// The table called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The hooks where the table has a built-in chain, in packet-path order.
    pub const fn hooks(self) -> &'static [Hook] {
        match self {
            Self::Raw => &[Hook::PreRouting, Hook::LocalOut],
            Self::Mangle => &Hook::ALL,
            Self::Nat => &[
                Hook::PreRouting,
                Hook::LocalIn,
                Hook::LocalOut,
                Hook::PostRouting,
            ],
            Self::Filter => &[Hook::LocalIn, Hook::Forward, Hook::LocalOut],
        }
    }

    /// Whether the table has a built-in chain on `hook`.
    pub fn has_hook(self, hook: Hook) -> bool {
        self.hooks().contains(&hook)
    }

    /// The stage the table's built-in chain on `hook` runs at: `nat` is
    /// destination NAT before routing and source NAT after it.
    pub fn stage(self, hook: Hook) -> Option<Stage> {
        if !self.has_hook(hook) {
            return None;
        }
        Some(match self {
            Self::Raw => Stage::Raw,
            Self::Mangle => Stage::Mangle,
            Self::Filter => Stage::Filter,
            Self::Nat => match hook {
                Hook::PreRouting | Hook::LocalOut => Stage::NatDst,
                _ => Stage::NatSrc,
            },
        })
    }

    /// The built-in chain called `name` (`"INPUT"`, ...), if the table has it.
    pub fn builtin(self, name: &str) -> Option<Hook> {
        self.hooks().iter().copied().find(|h| h.name() == name)
    }
}

/// The hook whose built-in chain is called `name` in some table. Such names
/// cannot be used for user chains.
pub fn builtin_chain_hook(name: &str) -> Option<Hook> {
    Hook::ALL.into_iter().find(|h| h.name() == name)
}

/// Checks a user chain's name: 1 to [`MAX_CHAIN_NAME`] bytes of ASCII
/// letters, digits, `_`, `-` and `.`, not starting with `-`, and not a
/// built-in chain's name.
pub fn validate_chain_name(name: &str) -> Result<(), RuleError> {
    const E_LEN: RuleError = RuleError::new("chain", "chain: a name has 1 to 31 characters");
    const E_CHARS: RuleError = RuleError::new(
        "chain",
        "chain: a name has only letters, digits, '_', '-' and '.', and does not start with '-'",
    );
    const E_BUILTIN: RuleError = RuleError::new(
        "chain",
        "chain: PREROUTING, INPUT, FORWARD, OUTPUT and POSTROUTING are built-in chain names",
    );
    if name.is_empty() || name.len() > MAX_CHAIN_NAME {
        return Err(E_LEN);
    }
    if name.starts_with('-')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(E_CHARS);
    }
    if builtin_chain_hook(name).is_some() {
        return Err(E_BUILTIN);
    }
    Ok(())
}

/// Policy of a built-in chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Policy {
    /// Accept packets that reach the end of the chain.
    Accept = 0,
    /// Drop packets that reach the end of the chain.
    Drop = 1,
}

impl Policy {
    /// The policy with discriminant `v`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Accept),
            1 => Some(Self::Drop),
            _ => None,
        }
    }

    /// `"accept"` or `"drop"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Drop => "drop",
        }
    }
}

/// An address prefix. Host bits beyond the prefix are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Family of the address.
    pub family: Family,
    /// Address bytes in network order; IPv4 uses the first 4.
    pub addr: [u8; 16],
    /// Prefix length (at most 32 for IPv4, 128 for IPv6).
    pub prefix: u8,
}

/// `n` leading one bits in 16 bytes (all 128 for `n` above 128).
fn prefix_mask(n: u8) -> [u8; 16] {
    mask_bits(n).to_be_bytes()
}

/// The top `n` bits of a 128-bit number ([`prefix_mask`] as a number; all
/// 128 for `n` above 128). Compiling a rule set builds one per prefix
/// several times over (decoding, sizing, indexing): a loop over the 16
/// bytes was a quarter of the compile's instructions.
pub(crate) const fn mask_bits(n: u8) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        !(u128::MAX >> n)
    }
}

impl Cidr {
    /// The prefix `addr/prefix` with host bits cleared, or `None` if the
    /// prefix length is too long for the family.
    pub fn new(family: Family, addr: [u8; 16], prefix: u8) -> Option<Self> {
        if prefix > Self::max_prefix(family) {
            return None;
        }
        Some(Self {
            family,
            addr: (u128::from_be_bytes(addr) & mask_bits(prefix)).to_be_bytes(),
            prefix,
        })
    }

    /// 32 for IPv4, 128 for IPv6.
    pub const fn max_prefix(family: Family) -> u8 {
        match family {
            Family::Ipv4 => 32,
            Family::Ipv6 => 128,
        }
    }

    /// The netmask as 16 bytes.
    pub fn mask(&self) -> [u8; 16] {
        prefix_mask(self.prefix)
    }

    /// Whether the prefix contains the address `addr` of family `family`.
    pub fn contains(&self, family: Family, addr: &[u8; 16]) -> bool {
        family == self.family
            && self
                .addr
                .iter()
                .zip(addr)
                .zip(self.mask())
                .all(|((n, a), m)| a & m == *n)
    }

    fn from_attr(a: &Attr<'_>) -> Option<Self> {
        let (family, n) = match a.ty {
            list_attr::CIDR4 => (Family::Ipv4, 4),
            list_attr::CIDR6 => (Family::Ipv6, 16),
            _ => return None,
        };
        let addr_bytes = a.payload.get(..n)?;
        let &[prefix] = a.payload.get(n..)? else {
            return None;
        };
        let mut addr = [0u8; 16];
        copy_into(&mut addr, addr_bytes);
        // Canonical form only: host bits must be clear.
        Self::new(family, addr, prefix).filter(|c| c.addr == addr)
    }

    fn encode(&self, w: &mut AttrWriter<'_>) {
        match self.family {
            Family::Ipv4 => {
                let mut p = [0u8; 5];
                if let (Some(d), Some(s)) = (p.get_mut(..4), self.addr.get(..4)) {
                    copy_into(d, s);
                }
                if let Some(l) = p.last_mut() {
                    *l = self.prefix;
                }
                w.put_bytes(list_attr::CIDR4, &p);
            }
            Family::Ipv6 => {
                let mut p = [0u8; 17];
                if let Some(d) = p.get_mut(..16) {
                    copy_into(d, &self.addr);
                }
                if let Some(l) = p.last_mut() {
                    *l = self.prefix;
                }
                w.put_bytes(list_attr::CIDR6, &p);
            }
        }
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (at least `lo`).
    pub hi: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    fn from_attr(a: &Attr<'_>) -> Option<Self> {
        match (a.ty, a.payload) {
            (list_attr::RANGE, &[a0, a1, b0, b1]) => {
                let lo = u16::from_ne_bytes([a0, a1]);
                let hi = u16::from_ne_bytes([b0, b1]);
                (lo <= hi).then_some(Self { lo, hi })
            }
            _ => None,
        }
    }

    fn encode(&self, w: &mut AttrWriter<'_>) {
        let l = self.lo.to_ne_bytes();
        let h = self.hi.to_ne_bytes();
        w.put_bytes(list_attr::RANGE, &[l[0], l[1], h[0], h[1]]);
    }
}

/// A decoded address list: `saddr [!] CIDR,...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrList<'a> {
    /// Whether the list is negated.
    pub negated: bool,
    raw: &'a [u8],
}

impl<'a> AddrList<'a> {
    /// The prefixes, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = Cidr> + 'a {
        AttrIter::new(self.raw)
            .filter_map(|a| a.ok())
            .filter_map(|a| Cidr::from_attr(&a))
    }

    /// Whether the match holds for an address (negation included).
    pub fn matches(&self, family: Family, addr: &[u8; 16]) -> bool {
        self.iter().any(|c| c.contains(family, addr)) != self.negated
    }
}

/// A decoded port list: `dport [!] P[-Q],...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortList<'a> {
    /// Whether the list is negated.
    pub negated: bool,
    raw: &'a [u8],
}

impl<'a> PortList<'a> {
    /// The ranges, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = PortRange> + 'a {
        AttrIter::new(self.raw)
            .filter_map(|a| a.ok())
            .filter_map(|a| PortRange::from_attr(&a))
    }

    /// Whether the match holds for a port (negation included).
    pub fn matches(&self, port: u16) -> bool {
        self.iter().any(|r| r.contains(port)) != self.negated
    }
}

/// An interface match: `iif [!] NAME[+]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfaceMatch<'a> {
    /// Interface name (or prefix).
    pub name: &'a str,
    /// Whether `name` is a prefix (written with a trailing `+`).
    pub prefix: bool,
    /// Whether the match is negated.
    pub negated: bool,
}

impl IfaceMatch<'_> {
    /// Whether the match holds for the interface called `ifname` (empty
    /// when the packet has no such interface at this hook).
    pub fn matches(&self, ifname: &[u8]) -> bool {
        let n = self.name.as_bytes();
        let hit = if self.prefix {
            ifname.starts_with(n)
        } else {
            ifname == n
        };
        hit != self.negated
    }

    fn encode(&self, w: &mut AttrWriter<'_>, ty: u16) {
        let nest = w.begin_nested(ty);
        w.put_str(iface_attr::NAME, self.name);
        if self.prefix {
            w.put_bytes(iface_attr::PREFIX, &[]);
        }
        if self.negated {
            w.put_bytes(iface_attr::NEG, &[]);
        }
        w.end_nested(nest);
    }
}

/// `tcp flags SET / MASK`: `(flags & mask) == set`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlagsMatch {
    /// Flags examined (not 0).
    pub mask: u8,
    /// Flags that must be set among `mask`; the others must be clear.
    pub set: u8,
}

impl TcpFlagsMatch {
    /// Whether the match holds for a TCP flags byte.
    pub const fn matches(&self, flags: u8) -> bool {
        flags & self.mask == self.set
    }
}

/// `icmp type T [code C]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    /// ICMP or ICMPv6 type.
    pub ty: u8,
    /// Code; `None` matches every code.
    pub code: Option<u8>,
}

impl IcmpMatch {
    /// Whether the match holds for an ICMP type and code.
    pub fn matches(&self, ty: u8, code: u8) -> bool {
        self.ty == ty && self.code.map_or(true, |c| c == code)
    }
}

/// `mark [!] V[/M]`: `(mark & mask) == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MarkMatch {
    /// Value (no bits outside `mask`).
    pub value: u32,
    /// Mask.
    pub mask: u32,
    /// Whether the match is negated.
    pub negated: bool,
}

impl MarkMatch {
    /// Whether the match holds for a packet mark.
    pub const fn matches(&self, mark: u32) -> bool {
        (mark & self.mask == self.value) != self.negated
    }
}

/// `ct state [!] STATE[,STATE...]`: the packet's conntrack state is one of
/// `states`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtStateMatch {
    /// The states (valid: at least one, only defined bits).
    pub states: CtState,
    /// Whether the match is negated.
    pub negated: bool,
}

impl CtStateMatch {
    /// Whether the match holds for a packet in state `state`. Every packet
    /// has a state (untracked and invalid ones too), so negation is plain.
    pub const fn matches(&self, state: CtState) -> bool {
        self.states.intersects(state) != self.negated
    }
}

/// `ct status [!] NAME[,NAME...]`: at least one of the status bits is set
/// in the packet's flow (as iptables' `--ctstatus`; nftables' `ct status`
/// with a set of flags is the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtStatusMatch {
    /// The bits (valid: at least one, only [`ct::status::ALL`](crate::ct::status::ALL)).
    pub bits: u32,
    /// Whether the match is negated: none of the bits is set.
    pub negated: bool,
}

impl CtStatusMatch {
    /// Whether the match holds for a packet whose flow has status bits
    /// `status`; `None` for a packet without a flow, which matches neither
    /// the match nor its negation.
    pub fn matches(&self, status: Option<u32>) -> bool {
        status.is_some_and(|s| (s & self.bits != 0) != self.negated)
    }
}

/// `ct direction [!] original|reply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtDirectionMatch {
    /// The direction.
    pub direction: Direction,
    /// Whether the match is negated.
    pub negated: bool,
}

impl CtDirectionMatch {
    /// Whether the match holds for a packet in direction `dir` of its
    /// flow; `None` for a packet without a flow, which matches neither the
    /// match nor its negation.
    pub fn matches(&self, dir: Option<Direction>) -> bool {
        dir.is_some_and(|d| (d == self.direction) != self.negated)
    }

    /// The direction a packet with a flow must have: the negation folded
    /// in.
    pub const fn effective(&self) -> Direction {
        if self.negated {
            self.direction.opposite()
        } else {
            self.direction
        }
    }
}

/// Time unit of a `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LimitUnit {
    /// Per second.
    Second = 1,
    /// Per minute.
    Minute = 2,
    /// Per hour.
    Hour = 3,
    /// Per day.
    Day = 4,
}

impl LimitUnit {
    /// The unit with discriminant `v`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Second),
            2 => Some(Self::Minute),
            3 => Some(Self::Hour),
            4 => Some(Self::Day),
            _ => None,
        }
    }

    /// `"second"`, `"minute"`, `"hour"` or `"day"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The unit called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Second, Self::Minute, Self::Hour, Self::Day]
            .into_iter()
            .find(|u| u.name() == name)
    }

    /// Length of the unit in nanoseconds.
    pub const fn nanos(self) -> u64 {
        match self {
            Self::Second => 1_000_000_000,
            Self::Minute => 60_000_000_000,
            Self::Hour => 3_600_000_000_000,
            Self::Day => 86_400_000_000_000,
        }
    }
}

/// `limit N/unit burst B`: a token bucket holding up to `burst` packets,
/// refilled at `rate` per `unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Packets per unit.
    pub rate: u32,
    /// Time unit.
    pub unit: LimitUnit,
    /// Bucket size in packets.
    pub burst: u32,
}

impl Limit {
    /// Nanoseconds per token: the time one packet's allowance takes to
    /// refill.
    pub const fn interval_nanos(&self) -> u64 {
        if self.rate == 0 {
            u64::MAX
        } else {
            self.unit.nanos() / self.rate as u64
        }
    }
}

/// How `reject` answers. Names are iptables' IPv4 ones; the kernel sends
/// the corresponding ICMPv6 error for IPv6 packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectKind {
    /// ICMP port unreachable (ICMPv6 port unreachable). The default.
    PortUnreachable = 0,
    /// A TCP reset; only for TCP rules.
    TcpReset = 1,
    /// ICMP network unreachable (ICMPv6 no route).
    NetUnreachable = 2,
    /// ICMP host unreachable (ICMPv6 address unreachable).
    HostUnreachable = 3,
    /// ICMP protocol unreachable (ICMPv6 port unreachable).
    ProtoUnreachable = 4,
    /// ICMP network prohibited (ICMPv6 administratively prohibited).
    NetProhibited = 5,
    /// ICMP host prohibited (ICMPv6 administratively prohibited).
    HostProhibited = 6,
    /// ICMP administratively prohibited (ICMPv6 the same).
    AdminProhibited = 7,
}

impl RejectKind {
    /// All kinds.
    pub const ALL: [RejectKind; 8] = [
        Self::PortUnreachable,
        Self::TcpReset,
        Self::NetUnreachable,
        Self::HostUnreachable,
        Self::ProtoUnreachable,
        Self::NetProhibited,
        Self::HostProhibited,
        Self::AdminProhibited,
    ];

    /// The kind with discriminant `v`.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == v)
    }

    /// Name as written after `reject with`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::PortUnreachable => "icmp-port-unreachable",
            Self::TcpReset => "tcp-reset",
            Self::NetUnreachable => "icmp-net-unreachable",
            Self::HostUnreachable => "icmp-host-unreachable",
            Self::ProtoUnreachable => "icmp-proto-unreachable",
            Self::NetProhibited => "icmp-net-prohibited",
            Self::HostProhibited => "icmp-host-prohibited",
            Self::AdminProhibited => "icmp-admin-prohibited",
        }
    }

    /// The kind called `name`; ip6tables' `icmp6-*` names are accepted too.
    pub fn from_name(name: &str) -> Option<Self> {
        let alias = match name {
            "icmp6-port-unreachable" => Some(Self::PortUnreachable),
            "icmp6-no-route" => Some(Self::NetUnreachable),
            "icmp6-addr-unreachable" => Some(Self::HostUnreachable),
            "icmp6-adm-prohibited" => Some(Self::AdminProhibited),
            _ => None,
        };
        alias.or_else(|| Self::ALL.into_iter().find(|k| k.name() == name))
    }
}

/// Operation of the `mark` action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MarkOp {
    /// `mark set V`: mark = V.
    Set = 1,
    /// `mark xor V`: mark ^= V.
    Xor = 2,
    /// `mark and V`: mark &= V.
    And = 3,
    /// `mark or V`: mark |= V.
    Or = 4,
}

impl MarkOp {
    /// The operation with discriminant `v`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Set),
            2 => Some(Self::Xor),
            3 => Some(Self::And),
            4 => Some(Self::Or),
            _ => None,
        }
    }

    /// `"set"`, `"xor"`, `"and"` or `"or"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Xor => "xor",
            Self::And => "and",
            Self::Or => "or",
        }
    }

    /// The operation called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Set, Self::Xor, Self::And, Self::Or]
            .into_iter()
            .find(|o| o.name() == name)
    }

    /// The new mark.
    pub const fn apply(self, mark: u32, value: u32) -> u32 {
        match self {
            Self::Set => value,
            Self::Xor => mark ^ value,
            Self::And => mark & value,
            Self::Or => mark | value,
        }
    }
}

/// Operation of the `ct mark` action. `set`, `xor`, `and` and `or` change
/// the flow's mark as `mark` does the packet's; `save` and `restore` copy
/// between the two (iptables' `CONNMARK --save-mark` and `--restore-mark`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CtMarkOp {
    /// `ct mark set V[/M]`: ct mark = (ct mark & !M) | V.
    Set = 1,
    /// `ct mark xor V`: ct mark ^= V.
    Xor = 2,
    /// `ct mark and V`: ct mark &= V.
    And = 3,
    /// `ct mark or V`: ct mark |= V.
    Or = 4,
    /// `ct mark save [mask M]`: ct mark = (ct mark & !M) | (mark & M).
    Save = 5,
    /// `ct mark restore [mask M]`: mark = (mark & !M) | (ct mark & M).
    Restore = 6,
}

impl CtMarkOp {
    /// All operations.
    pub const ALL: [CtMarkOp; 6] = [
        Self::Set,
        Self::Xor,
        Self::And,
        Self::Or,
        Self::Save,
        Self::Restore,
    ];

    /// The operation with discriminant `v`.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|o| *o as u8 == v)
    }

    /// `"set"`, `"xor"`, `"and"`, `"or"`, `"save"` or `"restore"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Xor => "xor",
            Self::And => "and",
            Self::Or => "or",
            Self::Save => "save",
            Self::Restore => "restore",
        }
    }

    /// The operation called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Whether the operation takes a value (all but `save` and `restore`).
    pub const fn has_value(self) -> bool {
        !matches!(self, Self::Save | Self::Restore)
    }

    /// Whether the operation takes a mask (`set`, `save`, `restore`).
    pub const fn has_mask(self) -> bool {
        matches!(self, Self::Set | Self::Save | Self::Restore)
    }

    /// Whether the operation changes the packet mark rather than the
    /// flow's (`restore`).
    pub const fn writes_packet_mark(self) -> bool {
        matches!(self, Self::Restore)
    }

    /// The new mark: the flow's, or for `restore` the packet's, given the
    /// flow's mark `ct` and the packet's `mark`.
    pub const fn apply(self, ct: u32, mark: u32, value: u32, mask: u32) -> u32 {
        match self {
            Self::Set => (ct & !mask) | value,
            Self::Xor => ct ^ value,
            Self::And => ct & value,
            Self::Or => ct | value,
            Self::Save => (ct & !mask) | (mark & mask),
            Self::Restore => (mark & !mask) | (ct & mask),
        }
    }
}

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action<'a> {
    /// Accept the packet (end of this table for it).
    Accept,
    /// Drop the packet.
    Drop,
    /// Drop the packet and tell the sender.
    Reject(RejectKind),
    /// Return to the chain that jumped here; in a built-in chain, apply its
    /// policy.
    Return,
    /// Continue in a user chain and come back after it.
    Jump(&'a str),
    /// Continue in a user chain without coming back.
    Goto(&'a str),
    /// Log the packet and continue (non-terminal).
    Log {
        /// Prefix of the log line (may be empty).
        prefix: &'a str,
        /// Syslog level 0 to 7.
        level: u8,
    },
    /// Change the packet mark and continue (non-terminal).
    Mark {
        /// Operation.
        op: MarkOp,
        /// Operand.
        value: u32,
    },
    /// Change the flow's mark, or copy between it and the packet mark, and
    /// continue (non-terminal). A packet without a flow is left alone.
    CtMark {
        /// Operation.
        op: CtMarkOp,
        /// Operand (0 for `save` and `restore`; within `mask` for `set`).
        value: u32,
        /// Mask (all bits for `xor`, `and` and `or`).
        mask: u32,
    },
    /// Exempt the packet from connection tracking and continue
    /// (non-terminal, like iptables' `-j CT --notrack`). Raw table only.
    Notrack,
    /// Translate the flow's addresses or ports (terminal: the nat table's
    /// verdict for the packet). Nat table only, on the hooks
    /// [`NatKind::allowed_at`] allows.
    Nat(NatAction),
}

impl Action<'_> {
    /// The NAT action, if it is one.
    pub const fn nat(&self) -> Option<NatAction> {
        match self {
            Self::Nat(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether evaluation goes on to the next rule after this action.
    pub const fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Self::Log { .. } | Self::Mark { .. } | Self::CtMark { .. } | Self::Notrack
        )
    }

    fn encode(&self, w: &mut AttrWriter<'_>) {
        let nest = w.begin_nested(rule_attr::ACTION);
        match *self {
            Self::Accept => w.put_u8(action_attr::KIND, action_kind::ACCEPT),
            Self::Drop => w.put_u8(action_attr::KIND, action_kind::DROP),
            Self::Reject(k) => {
                w.put_u8(action_attr::KIND, action_kind::REJECT);
                w.put_u8(action_attr::REJECT_WITH, k as u8);
            }
            Self::Return => w.put_u8(action_attr::KIND, action_kind::RETURN),
            Self::Jump(c) => {
                w.put_u8(action_attr::KIND, action_kind::JUMP);
                w.put_str(action_attr::CHAIN, c);
            }
            Self::Goto(c) => {
                w.put_u8(action_attr::KIND, action_kind::GOTO);
                w.put_str(action_attr::CHAIN, c);
            }
            Self::Log { prefix, level } => {
                w.put_u8(action_attr::KIND, action_kind::LOG);
                w.put_str(action_attr::LOG_PREFIX, prefix);
                w.put_u8(action_attr::LOG_LEVEL, level);
            }
            Self::Mark { op, value } => {
                w.put_u8(action_attr::KIND, action_kind::MARK);
                w.put_u8(action_attr::MARK_OP, op as u8);
                w.put_u32(action_attr::MARK_VALUE, value);
            }
            Self::CtMark { op, value, mask } => {
                w.put_u8(action_attr::KIND, action_kind::CT_MARK);
                w.put_u8(action_attr::MARK_OP, op as u8);
                if op.has_value() {
                    w.put_u32(action_attr::MARK_VALUE, value);
                }
                if op.has_mask() {
                    w.put_u32(action_attr::MARK_MASK, mask);
                }
            }
            Self::Notrack => w.put_u8(action_attr::KIND, action_kind::NOTRACK),
            Self::Nat(n) => {
                w.put_u8(action_attr::KIND, n.kind.action_kind());
                let r = &n.range;
                if r.has(range_flag::MAP_IPS) {
                    let len = match r.family {
                        Family::Ipv4 => 4,
                        Family::Ipv6 => 16,
                    };
                    for (ty, a) in [
                        (action_attr::NAT_MIN_ADDR, &r.min_addr),
                        (action_attr::NAT_MAX_ADDR, &r.max_addr),
                    ] {
                        w.put_bytes(ty, a.get(..len).unwrap_or(&[]));
                    }
                }
                if r.has(range_flag::PROTO_SPECIFIED) {
                    w.put_u16(action_attr::NAT_MIN_PORT, r.min_port);
                    w.put_u16(action_attr::NAT_MAX_PORT, r.max_port);
                }
                w.put_u8(action_attr::NAT_FLAGS, r.flags);
            }
        }
        w.end_nested(nest);
    }
}

/// A list to encode: `[!] ITEM,...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListSpec<'a, T> {
    /// Whether the list is negated.
    pub negated: bool,
    /// The entries (1 to [`MAX_LIST_ITEMS`]).
    pub items: &'a [T],
}

/// A rule to encode, from borrowed parts. `None` leaves a match out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSpec<'a> {
    /// Family restriction; `None` is both.
    pub family: Option<Family>,
    /// Transport protocol.
    pub proto: Option<u8>,
    /// Source addresses.
    pub saddr: Option<ListSpec<'a, Cidr>>,
    /// Destination addresses.
    pub daddr: Option<ListSpec<'a, Cidr>>,
    /// Source ports.
    pub sport: Option<ListSpec<'a, PortRange>>,
    /// Destination ports.
    pub dport: Option<ListSpec<'a, PortRange>>,
    /// Input interface.
    pub iif: Option<IfaceMatch<'a>>,
    /// Output interface.
    pub oif: Option<IfaceMatch<'a>>,
    /// TCP flags.
    pub tcp_flags: Option<TcpFlagsMatch>,
    /// ICMP type and code.
    pub icmp: Option<IcmpMatch>,
    /// Packet mark.
    pub mark: Option<MarkMatch>,
    /// Conntrack state.
    pub ct_state: Option<CtStateMatch>,
    /// Conntrack status bits.
    pub ct_status: Option<CtStatusMatch>,
    /// Direction within the flow.
    pub ct_direction: Option<CtDirectionMatch>,
    /// The flow's mark.
    pub ct_mark: Option<MarkMatch>,
    /// Rate limit.
    pub limit: Option<Limit>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
    /// Payload text.
    pub payload: Option<&'a [u8]>,
    /// Probability in units of 2^-31.
    pub random: Option<u32>,
    /// Every N-th packet.
    pub nth: Option<u32>,
    /// Comment.
    pub comment: Option<&'a str>,
    /// Action.
    pub action: Action<'a>,
}

impl<'a> RuleSpec<'a> {
    /// A rule with no matches and the given action.
    pub const fn new(action: Action<'a>) -> Self {
        Self {
            family: None,
            proto: None,
            saddr: None,
            daddr: None,
            sport: None,
            dport: None,
            iif: None,
            oif: None,
            tcp_flags: None,
            icmp: None,
            mark: None,
            ct_state: None,
            ct_status: None,
            ct_direction: None,
            ct_mark: None,
            limit: None,
            uid: None,
            gid: None,
            payload: None,
            random: None,
            nth: None,
            comment: None,
            action,
        }
    }

    /// Writes the rule's attributes. It does not validate: run [`validate`]
    /// on the result. Size the buffer with [`AttrWriter::measure`] first.
    pub fn encode(&self, w: &mut AttrWriter<'_>) {
        if let Some(f) = self.family {
            w.put_u8(rule_attr::FAMILY, f as u8);
        }
        if let Some(p) = self.proto {
            w.put_u8(rule_attr::PROTO, p);
        }
        for (ty, l) in [
            (rule_attr::SADDR, self.saddr),
            (rule_attr::DADDR, self.daddr),
        ] {
            if let Some(l) = l {
                let nest = w.begin_nested(ty);
                if l.negated {
                    w.put_bytes(list_attr::NEG, &[]);
                }
                for c in l.items {
                    c.encode(w);
                }
                w.end_nested(nest);
            }
        }
        for (ty, l) in [
            (rule_attr::SPORT, self.sport),
            (rule_attr::DPORT, self.dport),
        ] {
            if let Some(l) = l {
                let nest = w.begin_nested(ty);
                if l.negated {
                    w.put_bytes(list_attr::NEG, &[]);
                }
                for r in l.items {
                    r.encode(w);
                }
                w.end_nested(nest);
            }
        }
        if let Some(i) = &self.iif {
            i.encode(w, rule_attr::IIF);
        }
        if let Some(i) = &self.oif {
            i.encode(w, rule_attr::OIF);
        }
        if let Some(t) = self.tcp_flags {
            let nest = w.begin_nested(rule_attr::TCP_FLAGS);
            w.put_u8(tcp_flags_attr::MASK, t.mask);
            w.put_u8(tcp_flags_attr::SET, t.set);
            w.end_nested(nest);
        }
        if let Some(i) = self.icmp {
            let nest = w.begin_nested(rule_attr::ICMP);
            w.put_u8(icmp_attr::TYPE, i.ty);
            if let Some(c) = i.code {
                w.put_u8(icmp_attr::CODE, c);
            }
            w.end_nested(nest);
        }
        for (ty, m) in [
            (rule_attr::MARK, self.mark),
            (rule_attr::CT_MARK, self.ct_mark),
        ] {
            if let Some(m) = m {
                let nest = w.begin_nested(ty);
                w.put_u32(mark_attr::VALUE, m.value);
                w.put_u32(mark_attr::MASK, m.mask);
                if m.negated {
                    w.put_bytes(mark_attr::NEG, &[]);
                }
                w.end_nested(nest);
            }
        }
        if let Some(c) = self.ct_state {
            let nest = w.begin_nested(rule_attr::CT_STATE);
            w.put_u8(ct_match_attr::VALUE, c.states.0);
            if c.negated {
                w.put_bytes(ct_match_attr::NEG, &[]);
            }
            w.end_nested(nest);
        }
        if let Some(c) = self.ct_status {
            let nest = w.begin_nested(rule_attr::CT_STATUS);
            w.put_u32(ct_match_attr::VALUE, c.bits);
            if c.negated {
                w.put_bytes(ct_match_attr::NEG, &[]);
            }
            w.end_nested(nest);
        }
        if let Some(c) = self.ct_direction {
            let nest = w.begin_nested(rule_attr::CT_DIRECTION);
            w.put_u8(ct_match_attr::VALUE, c.direction as u8);
            if c.negated {
                w.put_bytes(ct_match_attr::NEG, &[]);
            }
            w.end_nested(nest);
        }
        if let Some(l) = self.limit {
            let nest = w.begin_nested(rule_attr::LIMIT);
            w.put_u32(limit_attr::RATE, l.rate);
            w.put_u8(limit_attr::UNIT, l.unit as u8);
            w.put_u32(limit_attr::BURST, l.burst);
            w.end_nested(nest);
        }
        if let Some(u) = self.uid {
            w.put_u32(rule_attr::UID, u);
        }
        if let Some(g) = self.gid {
            w.put_u32(rule_attr::GID, g);
        }
        if let Some(p) = self.payload {
            w.put_bytes(rule_attr::PAYLOAD, p);
        }
        if let Some(r) = self.random {
            w.put_u32(rule_attr::RANDOM, r);
        }
        if let Some(n) = self.nth {
            w.put_u32(rule_attr::NTH, n);
        }
        if let Some(c) = self.comment {
            w.put_str(rule_attr::COMMENT, c);
        }
        self.action.encode(w);
    }
}

/// A validated rule blob, decoded without copying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleView<'a> {
    /// Family restriction; `None` is both.
    pub family: Option<Family>,
    /// Transport protocol.
    pub proto: Option<u8>,
    /// Source addresses.
    pub saddr: Option<AddrList<'a>>,
    /// Destination addresses.
    pub daddr: Option<AddrList<'a>>,
    /// Source ports.
    pub sport: Option<PortList<'a>>,
    /// Destination ports.
    pub dport: Option<PortList<'a>>,
    /// Input interface.
    pub iif: Option<IfaceMatch<'a>>,
    /// Output interface.
    pub oif: Option<IfaceMatch<'a>>,
    /// TCP flags.
    pub tcp_flags: Option<TcpFlagsMatch>,
    /// ICMP type and code.
    pub icmp: Option<IcmpMatch>,
    /// Packet mark.
    pub mark: Option<MarkMatch>,
    /// Conntrack state.
    pub ct_state: Option<CtStateMatch>,
    /// Conntrack status bits.
    pub ct_status: Option<CtStatusMatch>,
    /// Direction within the flow.
    pub ct_direction: Option<CtDirectionMatch>,
    /// The flow's mark.
    pub ct_mark: Option<MarkMatch>,
    /// Rate limit.
    pub limit: Option<Limit>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
    /// Payload text.
    pub payload: Option<&'a [u8]>,
    /// Probability in units of 2^-31.
    pub random: Option<u32>,
    /// Every N-th packet.
    pub nth: Option<u32>,
    /// Comment.
    pub comment: Option<&'a str>,
    /// Action.
    pub action: Action<'a>,
}

/// Checks a rule blob completely: structure, every value, and the
/// consistency of matches with each other (a port match needs a protocol
/// with ports, a `tcp-reset` needs `proto tcp`, ...). Jump and goto
/// targets are checked when the rule set is compiled.
pub fn validate(blob: &[u8]) -> Result<(), RuleError> {
    RuleView::decode(blob).map(|_| ())
}

/// Whether protocol `p` has 16-bit ports at the start of its header.
pub const fn proto_has_ports(p: u8) -> bool {
    matches!(
        p,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP
    )
}

const fn e(field: &'static str, message: &'static str) -> RuleError {
    RuleError::new(field, message)
}

fn flag(a: &Attr<'_>, err: RuleError) -> Result<bool, RuleError> {
    if a.payload.is_empty() {
        Ok(true)
    } else {
        Err(err)
    }
}

fn set_once<T>(slot: &mut Option<T>, v: T, err: RuleError) -> Result<(), RuleError> {
    if slot.is_some() {
        return Err(err);
    }
    *slot = Some(v);
    Ok(())
}

fn decode_list(
    field: &'static str,
    payload: &[u8],
    item_ty: &[u16],
    errs: &ListErrors,
) -> Result<(bool, usize), RuleError> {
    let mut negated = false;
    let mut n = 0usize;
    for a in AttrIter::new(payload) {
        let a = a.map_err(|_| errs.malformed)?;
        if a.ty == list_attr::NEG {
            if negated {
                return Err(errs.malformed);
            }
            negated = flag(&a, errs.malformed)?;
        } else if item_ty.contains(&a.ty) {
            n += 1;
            if n > MAX_LIST_ITEMS {
                return Err(errs.too_many);
            }
        } else {
            return Err(errs.malformed);
        }
    }
    if n == 0 {
        return Err(e(field, errs.empty));
    }
    Ok((negated, n))
}

struct ListErrors {
    malformed: RuleError,
    too_many: RuleError,
    empty: &'static str,
}

fn decode_addr_list<'a>(
    field: &'static str,
    payload: &'a [u8],
    errs: &ListErrors,
    bad_item: RuleError,
) -> Result<AddrList<'a>, RuleError> {
    let (negated, _) = decode_list(field, payload, &[list_attr::CIDR4, list_attr::CIDR6], errs)?;
    for a in AttrIter::new(payload).flatten() {
        if a.ty != list_attr::NEG && Cidr::from_attr(&a).is_none() {
            return Err(bad_item);
        }
    }
    Ok(AddrList {
        negated,
        raw: payload,
    })
}

fn decode_port_list<'a>(
    field: &'static str,
    payload: &'a [u8],
    errs: &ListErrors,
    bad_item: RuleError,
) -> Result<PortList<'a>, RuleError> {
    let (negated, _) = decode_list(field, payload, &[list_attr::RANGE], errs)?;
    for a in AttrIter::new(payload).flatten() {
        if a.ty != list_attr::NEG && PortRange::from_attr(&a).is_none() {
            return Err(bad_item);
        }
    }
    Ok(PortList {
        negated,
        raw: payload,
    })
}

fn decode_iface<'a>(payload: &'a [u8], field: &'static str) -> Result<IfaceMatch<'a>, RuleError> {
    let (malformed, bad_name) = if field == "iif" {
        (
            e("iif", "iif: malformed interface match"),
            e(
                "iif",
                "iif: an interface name has 1 to 15 characters, without spaces, '/' or ':'",
            ),
        )
    } else {
        (
            e("oif", "oif: malformed interface match"),
            e(
                "oif",
                "oif: an interface name has 1 to 15 characters, without spaces, '/' or ':'",
            ),
        )
    };
    let mut name = None;
    let mut prefix = false;
    let mut negated = false;
    for a in AttrIter::new(payload) {
        let a = a.map_err(|_| malformed)?;
        match a.ty {
            iface_attr::NAME => set_once(&mut name, a.str().map_err(|_| bad_name)?, malformed)?,
            iface_attr::PREFIX if !prefix => prefix = flag(&a, malformed)?,
            iface_attr::NEG if !negated => negated = flag(&a, malformed)?,
            _ => return Err(malformed),
        }
    }
    let name = name.ok_or(malformed)?;
    let ok_char = |b: u8| b.is_ascii_graphic() && b != b'/' && b != b':';
    // A prefix may be empty ("+" alone matches every interface, as in
    // iptables); a full name may not.
    if name.len() > MAX_IFNAME || (name.is_empty() && !prefix) || !name.bytes().all(ok_char) {
        return Err(bad_name);
    }
    Ok(IfaceMatch {
        name,
        prefix,
        negated,
    })
}

/// Decodes a nested [`mark_attr`] match (`mark`, `ct mark`).
fn decode_mark(payload: &[u8], bad: RuleError, outside: RuleError) -> Result<MarkMatch, RuleError> {
    let mut value = None;
    let mut mask = None;
    let mut negated = false;
    for n in AttrIter::new(payload) {
        let n = n.map_err(|_| bad)?;
        match n.ty {
            mark_attr::VALUE => set_once(&mut value, n.u32().map_err(|_| bad)?, bad)?,
            mark_attr::MASK => set_once(&mut mask, n.u32().map_err(|_| bad)?, bad)?,
            mark_attr::NEG if !negated => negated = flag(&n, bad)?,
            _ => return Err(bad),
        }
    }
    let value = value.ok_or(bad)?;
    let mask = mask.unwrap_or(u32::MAX);
    if value & !mask != 0 {
        return Err(outside);
    }
    Ok(MarkMatch {
        value,
        mask,
        negated,
    })
}

/// Decodes a nested [`ct_match_attr`] match: its value attribute (still to
/// be read) and whether it is negated.
fn decode_ct_match(payload: &[u8], bad: RuleError) -> Result<(Attr<'_>, bool), RuleError> {
    let mut value = None;
    let mut negated = false;
    for n in AttrIter::new(payload) {
        let n = n.map_err(|_| bad)?;
        match n.ty {
            ct_match_attr::VALUE => set_once(&mut value, n, bad)?,
            ct_match_attr::NEG if !negated => negated = flag(&n, bad)?,
            _ => return Err(bad),
        }
    }
    Ok((value.ok_or(bad)?, negated))
}

/// The NAT arguments of an action, as found.
#[derive(Default)]
struct NatArgs<'a> {
    min_addr: Option<&'a [u8]>,
    max_addr: Option<&'a [u8]>,
    min_port: Option<u16>,
    max_port: Option<u16>,
    flags: Option<u8>,
}

/// An address as an integer, for ordering a range (IPv4 in the low 32
/// bits).
fn addr_key(a: &[u8; 16], family: Family) -> (u64, u64) {
    let word = |bytes: &[u8]| bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
    match family {
        Family::Ipv4 => (0, word(a.get(..4).unwrap_or(&[]))),
        Family::Ipv6 => (
            word(a.get(..8).unwrap_or(&[])),
            word(a.get(8..).unwrap_or(&[])),
        ),
    }
}

/// The error for a NAT action's `field` (its keyword) with one message per
/// kind, so that messages stay `&'static str`.
fn nat_err(kind: NatKind, msgs: [&'static str; 4]) -> RuleError {
    let [snat, dnat, masq, redir] = msgs;
    match kind {
        NatKind::Snat => e("snat", snat),
        NatKind::Dnat => e("dnat", dnat),
        NatKind::Masquerade => e("masquerade", masq),
        NatKind::Redirect => e("redirect", redir),
    }
}

fn decode_nat_range(kind: NatKind, a: &NatArgs<'_>) -> Result<NatRange, RuleError> {
    let flags = a
        .flags
        .ok_or(e("action", "action: malformed NAT action (no flags)"))?;
    if flags & !range_flag::ALL != 0 {
        return Err(e(
            "action",
            "action: unknown NAT flag (is rnfctl newer than the module?)",
        ));
    }
    let options = flags & !(range_flag::MAP_IPS | range_flag::PROTO_SPECIFIED);
    if options & !kind.option_flags() != 0 {
        return Err(nat_err(
            kind,
            [
                "snat: the options are random, fully-random and persistent",
                "dnat: the options are random and persistent",
                "masquerade: the options are random and fully-random",
                "redirect: the only option is random",
            ],
        ));
    }
    let mut range = NatRange::empty(Family::Ipv4).with_flags(options);
    match (a.min_addr, a.max_addr) {
        (None, None) => {
            if kind.takes_addr() {
                return Err(nat_err(
                    kind,
                    [
                        "snat: needs an address to translate to ('snat to ADDR')",
                        "dnat: needs an address to translate to ('dnat to ADDR')",
                        "",
                        "",
                    ],
                ));
            }
            if flags & range_flag::MAP_IPS != 0 {
                return Err(e(
                    "action",
                    "action: malformed NAT action (flags without addresses)",
                ));
            }
        }
        (Some(lo), Some(hi)) => {
            if !kind.takes_addr() {
                return Err(nat_err(
                    kind,
                    [
                        "",
                        "",
                        "masquerade: translates to the outgoing interface's address; 'to' takes only ports",
                        "redirect: translates to the local host's address; 'to' takes only ports",
                    ],
                ));
            }
            let family = match (lo.len(), hi.len()) {
                (4, 4) => Family::Ipv4,
                (16, 16) => Family::Ipv6,
                _ => return Err(e("action", "action: malformed NAT address")),
            };
            if flags & range_flag::MAP_IPS == 0 {
                return Err(e(
                    "action",
                    "action: malformed NAT action (addresses without flags)",
                ));
            }
            let mut min = [0u8; 16];
            let mut max = [0u8; 16];
            copy_into(&mut min, lo);
            copy_into(&mut max, hi);
            if addr_key(&min, family) > addr_key(&max, family) {
                return Err(nat_err(
                    kind,
                    [
                        "snat: the first address of the range is above the last",
                        "dnat: the first address of the range is above the last",
                        "",
                        "",
                    ],
                ));
            }
            range = NatRange::addrs(family, min, max).with_flags(options);
        }
        _ => {
            return Err(e(
                "action",
                "action: malformed NAT action (half an address range)",
            ))
        }
    }
    match (a.min_port, a.max_port) {
        (None, None) => {
            if flags & range_flag::PROTO_SPECIFIED != 0 {
                return Err(e(
                    "action",
                    "action: malformed NAT action (flags without ports)",
                ));
            }
        }
        (Some(lo), Some(hi)) => {
            if flags & range_flag::PROTO_SPECIFIED == 0 {
                return Err(e(
                    "action",
                    "action: malformed NAT action (ports without flags)",
                ));
            }
            if lo == 0 {
                return Err(nat_err(
                    kind,
                    [
                        "snat: ports are 1 to 65535",
                        "dnat: ports are 1 to 65535",
                        "masquerade: ports are 1 to 65535",
                        "redirect: ports are 1 to 65535",
                    ],
                ));
            }
            if lo > hi {
                return Err(nat_err(
                    kind,
                    [
                        "snat: the first port of the range is above the last",
                        "dnat: the first port of the range is above the last",
                        "masquerade: the first port of the range is above the last",
                        "redirect: the first port of the range is above the last",
                    ],
                ));
            }
            range = range.with_ports(lo, hi);
        }
        _ => {
            return Err(e(
                "action",
                "action: malformed NAT action (half a port range)",
            ))
        }
    }
    Ok(range)
}

/// Checks that NAT action `kind` may run on `hook` of the nat table
/// ([`NatKind::allowed_at`]). The compiler runs it for every hook a chain
/// can be reached from.
pub fn check_nat_hook(kind: NatKind, hook: Hook) -> Result<(), RuleError> {
    if kind.allowed_at(hook) {
        return Ok(());
    }
    Err(nat_err(
        kind,
        [
            "snat: only in nat POSTROUTING and INPUT, or in a chain reached only from them",
            "dnat: only in nat PREROUTING and OUTPUT, or in a chain reached only from them",
            "masquerade: only in nat POSTROUTING, or in a chain reached only from it",
            "redirect: only in nat PREROUTING and OUTPUT, or in a chain reached only from them",
        ],
    ))
}

fn decode_action(payload: &[u8]) -> Result<Action<'_>, RuleError> {
    const MALFORMED: RuleError = e("action", "action: malformed action");
    let mut kind = None;
    let mut reject = None;
    let mut chain = None;
    let mut log_prefix = None;
    let mut log_level = None;
    let mut mark_op = None;
    let mut mark_value = None;
    let mut mark_mask = None;
    let mut nat = NatArgs::default();
    for a in AttrIter::new(payload) {
        let a = a.map_err(|_| MALFORMED)?;
        let dup = e("action", "action: an argument is given twice");
        match a.ty {
            action_attr::KIND => set_once(&mut kind, a.u8().map_err(|_| MALFORMED)?, dup)?,
            action_attr::REJECT_WITH => {
                let k = a.u8().ok().and_then(RejectKind::from_u8).ok_or(e(
                    "reject",
                    "reject: unknown 'with' kind (tcp-reset, icmp-port-unreachable, ...)",
                ))?;
                set_once(&mut reject, k, dup)?;
            }
            action_attr::CHAIN => set_once(
                &mut chain,
                a.str()
                    .map_err(|_| e("chain", "chain: a name is ASCII text"))?,
                dup,
            )?,
            action_attr::LOG_PREFIX => set_once(
                &mut log_prefix,
                a.str()
                    .map_err(|_| e("log", "log: the prefix is not UTF-8 text"))?,
                dup,
            )?,
            action_attr::LOG_LEVEL => {
                set_once(&mut log_level, a.u8().map_err(|_| MALFORMED)?, dup)?
            }
            action_attr::MARK_OP => set_once(&mut mark_op, a.u8().map_err(|_| MALFORMED)?, dup)?,
            action_attr::MARK_VALUE => {
                set_once(&mut mark_value, a.u32().map_err(|_| MALFORMED)?, dup)?
            }
            action_attr::MARK_MASK => {
                set_once(&mut mark_mask, a.u32().map_err(|_| MALFORMED)?, dup)?
            }
            action_attr::NAT_MIN_ADDR => set_once(&mut nat.min_addr, a.payload, dup)?,
            action_attr::NAT_MAX_ADDR => set_once(&mut nat.max_addr, a.payload, dup)?,
            action_attr::NAT_MIN_PORT => {
                set_once(&mut nat.min_port, a.u16().map_err(|_| MALFORMED)?, dup)?
            }
            action_attr::NAT_MAX_PORT => {
                set_once(&mut nat.max_port, a.u16().map_err(|_| MALFORMED)?, dup)?
            }
            action_attr::NAT_FLAGS => {
                set_once(&mut nat.flags, a.u8().map_err(|_| MALFORMED)?, dup)?
            }
            _ => {
                return Err(e(
                    "action",
                    "action: unknown action argument (is rnfctl newer than the module?)",
                ))
            }
        }
    }
    let kind = kind.ok_or(e("action", "action: the rule has no action"))?;
    let stray = e("action", "action: argument does not belong to this action");
    let nat_present = nat.min_addr.is_some()
        || nat.max_addr.is_some()
        || nat.min_port.is_some()
        || nat.max_port.is_some()
        || nat.flags.is_some();
    let only = |allowed: [bool; 8]| -> Result<(), RuleError> {
        let present = [
            reject.is_some(),
            chain.is_some(),
            log_prefix.is_some(),
            log_level.is_some(),
            mark_op.is_some(),
            mark_value.is_some(),
            mark_mask.is_some(),
            nat_present,
        ];
        if present.iter().zip(allowed).any(|(p, a)| *p && !a) {
            Err(stray)
        } else {
            Ok(())
        }
    };
    let action = match kind {
        action_kind::ACCEPT => {
            only([false; 8])?;
            Action::Accept
        }
        action_kind::DROP => {
            only([false; 8])?;
            Action::Drop
        }
        action_kind::RETURN => {
            only([false; 8])?;
            Action::Return
        }
        action_kind::REJECT => {
            only([true, false, false, false, false, false, false, false])?;
            Action::Reject(reject.unwrap_or(RejectKind::PortUnreachable))
        }
        action_kind::JUMP | action_kind::GOTO => {
            only([false, true, false, false, false, false, false, false])?;
            let c = chain.ok_or(e("chain", "chain: jump and goto need a chain name"))?;
            validate_chain_name(c)?;
            if kind == action_kind::JUMP {
                Action::Jump(c)
            } else {
                Action::Goto(c)
            }
        }
        action_kind::LOG => {
            only([false, false, true, true, false, false, false, false])?;
            let prefix = log_prefix.unwrap_or("");
            if prefix.len() > MAX_LOG_PREFIX || prefix.bytes().any(|b| b.is_ascii_control()) {
                return Err(e(
                    "log",
                    "log: a prefix has at most 29 characters and no control characters",
                ));
            }
            let level = log_level.unwrap_or(DEFAULT_LOG_LEVEL);
            if level > 7 {
                return Err(e(
                    "log",
                    "log: the level is 0 to 7 (emerg, alert, crit, err, warning, notice, info, debug)",
                ));
            }
            Action::Log { prefix, level }
        }
        action_kind::MARK => {
            only([false, false, false, false, true, true, false, false])?;
            let op = mark_op
                .and_then(MarkOp::from_u8)
                .ok_or(e("mark", "mark: the action is 'mark set|xor|and|or VALUE'"))?;
            let value = mark_value.ok_or(e("mark", "mark: the action needs a value"))?;
            Action::Mark { op, value }
        }
        action_kind::CT_MARK => {
            only([false, false, false, false, true, true, true, false])?;
            let op = mark_op.and_then(CtMarkOp::from_u8).ok_or(e(
                "ct mark",
                "ct mark: the action is 'ct mark set|xor|and|or VALUE' or 'ct mark save|restore'",
            ))?;
            let value = match (op.has_value(), mark_value) {
                (true, Some(v)) => v,
                (true, None) => return Err(e("ct mark", "ct mark: the action needs a value")),
                (false, None) => 0,
                (false, Some(_)) => {
                    return Err(e("ct mark", "ct mark: save and restore take no value"))
                }
            };
            let mask = match (op.has_mask(), mark_mask) {
                (_, None) => u32::MAX,
                (true, Some(m)) => m,
                (false, Some(_)) => {
                    return Err(e("ct mark", "ct mark: xor, and and or take no mask"))
                }
            };
            if value & !mask != 0 {
                return Err(e(
                    "ct mark",
                    "ct mark: the value has bits outside the mask after '/'",
                ));
            }
            Action::CtMark { op, value, mask }
        }
        action_kind::NOTRACK => {
            only([false; 8])?;
            Action::Notrack
        }
        action_kind::SNAT..=action_kind::REDIRECT => {
            only([false, false, false, false, false, false, false, true])?;
            let kind = NatKind::from_action_kind(kind).ok_or(MALFORMED)?;
            Action::Nat(NatAction {
                kind,
                range: decode_nat_range(kind, &nat)?,
            })
        }
        action_kind::RESERVED_TRACE => {
            return Err(e(
                "action",
                "action: trace is not supported by this module yet",
            ))
        }
        _ => {
            return Err(e(
                "action",
                "action: unknown action (is rnfctl newer than the module?)",
            ))
        }
    };
    Ok(action)
}

impl<'a> RuleView<'a> {
    /// Decodes and validates a rule blob; see [`validate`].
    pub fn decode(blob: &'a [u8]) -> Result<Self, RuleError> {
        const MALFORMED: RuleError = e("rule", "rule: malformed rule attributes");
        const DUP: RuleError = e("rule", "rule: a match is given twice");
        if blob.len() > MAX_RULE_SIZE {
            return Err(e("rule", "rule: larger than 4096 bytes"));
        }
        let mut v = Self {
            family: None,
            proto: None,
            saddr: None,
            daddr: None,
            sport: None,
            dport: None,
            iif: None,
            oif: None,
            tcp_flags: None,
            icmp: None,
            mark: None,
            ct_state: None,
            ct_status: None,
            ct_direction: None,
            ct_mark: None,
            limit: None,
            uid: None,
            gid: None,
            payload: None,
            random: None,
            nth: None,
            comment: None,
            action: Action::Accept,
        };
        let mut action = None;
        for a in AttrIter::new(blob) {
            let a = a.map_err(|_| MALFORMED)?;
            let num = |r: Result<u32, WireError>, err: RuleError| r.map_err(|_| err);
            match a.ty {
                rule_attr::FAMILY => {
                    let f = a
                        .u8()
                        .ok()
                        .and_then(Family::from_u8)
                        .ok_or(e("family", "family: a rule's family is 'ip' or 'ip6'"))?;
                    set_once(&mut v.family, f, DUP)?;
                }
                rule_attr::PROTO => {
                    let p = a
                        .u8()
                        .map_err(|_| e("proto", "proto: a protocol is a number 1 to 255"))?;
                    if p == 0 {
                        return Err(e(
                            "proto",
                            "proto: 0 is not a protocol (leave 'proto' out to match all)",
                        ));
                    }
                    set_once(&mut v.proto, p, DUP)?;
                }
                rule_attr::SADDR => {
                    let l = decode_addr_list(
                        "saddr",
                        a.payload,
                        &ListErrors {
                            malformed: e("saddr", "saddr: malformed address list"),
                            too_many: e("saddr", "saddr: more than 64 addresses"),
                            empty: "saddr: the list is empty",
                        },
                        e(
                            "saddr",
                            "saddr: bad prefix (length too long, or host bits set)",
                        ),
                    )?;
                    set_once(&mut v.saddr, l, DUP)?;
                }
                rule_attr::DADDR => {
                    let l = decode_addr_list(
                        "daddr",
                        a.payload,
                        &ListErrors {
                            malformed: e("daddr", "daddr: malformed address list"),
                            too_many: e("daddr", "daddr: more than 64 addresses"),
                            empty: "daddr: the list is empty",
                        },
                        e(
                            "daddr",
                            "daddr: bad prefix (length too long, or host bits set)",
                        ),
                    )?;
                    set_once(&mut v.daddr, l, DUP)?;
                }
                rule_attr::SPORT => {
                    let l = decode_port_list(
                        "sport",
                        a.payload,
                        &ListErrors {
                            malformed: e("sport", "sport: malformed port list"),
                            too_many: e("sport", "sport: more than 64 ports or ranges"),
                            empty: "sport: the list is empty",
                        },
                        e("sport", "sport: a range's first port is above its last"),
                    )?;
                    set_once(&mut v.sport, l, DUP)?;
                }
                rule_attr::DPORT => {
                    let l = decode_port_list(
                        "dport",
                        a.payload,
                        &ListErrors {
                            malformed: e("dport", "dport: malformed port list"),
                            too_many: e("dport", "dport: more than 64 ports or ranges"),
                            empty: "dport: the list is empty",
                        },
                        e("dport", "dport: a range's first port is above its last"),
                    )?;
                    set_once(&mut v.dport, l, DUP)?;
                }
                rule_attr::IIF => set_once(&mut v.iif, decode_iface(a.payload, "iif")?, DUP)?,
                rule_attr::OIF => set_once(&mut v.oif, decode_iface(a.payload, "oif")?, DUP)?,
                rule_attr::TCP_FLAGS => {
                    let bad = e("tcp flags", "tcp flags: malformed flags match");
                    let mut mask = None;
                    let mut set = None;
                    for n in AttrIter::new(a.payload) {
                        let n = n.map_err(|_| bad)?;
                        match n.ty {
                            tcp_flags_attr::MASK => {
                                set_once(&mut mask, n.u8().map_err(|_| bad)?, bad)?
                            }
                            tcp_flags_attr::SET => {
                                set_once(&mut set, n.u8().map_err(|_| bad)?, bad)?
                            }
                            _ => return Err(bad),
                        }
                    }
                    let (Some(mask), Some(set)) = (mask, set) else {
                        return Err(bad);
                    };
                    if mask == 0 {
                        return Err(e("tcp flags", "tcp flags: the mask (after '/') is empty"));
                    }
                    if set & !mask != 0 {
                        return Err(e(
                            "tcp flags",
                            "tcp flags: a flag before '/' is missing from the mask after it",
                        ));
                    }
                    set_once(&mut v.tcp_flags, TcpFlagsMatch { mask, set }, DUP)?;
                }
                rule_attr::ICMP => {
                    let bad = e("icmp", "icmp: malformed icmp type match");
                    let mut ty = None;
                    let mut code = None;
                    for n in AttrIter::new(a.payload) {
                        let n = n.map_err(|_| bad)?;
                        match n.ty {
                            icmp_attr::TYPE => set_once(&mut ty, n.u8().map_err(|_| bad)?, bad)?,
                            icmp_attr::CODE => set_once(&mut code, n.u8().map_err(|_| bad)?, bad)?,
                            _ => return Err(bad),
                        }
                    }
                    let ty = ty.ok_or(bad)?;
                    set_once(&mut v.icmp, IcmpMatch { ty, code }, DUP)?;
                }
                rule_attr::MARK => set_once(
                    &mut v.mark,
                    decode_mark(
                        a.payload,
                        e("mark", "mark: malformed mark match"),
                        e(
                            "mark",
                            "mark: the value has bits outside the mask, so it never matches",
                        ),
                    )?,
                    DUP,
                )?,
                rule_attr::CT_MARK => set_once(
                    &mut v.ct_mark,
                    decode_mark(
                        a.payload,
                        e("ct mark", "ct mark: malformed ct mark match"),
                        e(
                            "ct mark",
                            "ct mark: the value has bits outside the mask, so it never matches",
                        ),
                    )?,
                    DUP,
                )?,
                rule_attr::CT_STATE => {
                    let bad = e("ct state", "ct state: malformed ct state match");
                    let (value, negated) = decode_ct_match(a.payload, bad)?;
                    let states = CtState(value.u8().map_err(|_| bad)?);
                    if states.0 == 0 {
                        return Err(e("ct state", "ct state: the list of states is empty"));
                    }
                    if !states.is_valid() {
                        return Err(e(
                            "ct state",
                            "ct state: the states are new, established, related, invalid and untracked",
                        ));
                    }
                    set_once(&mut v.ct_state, CtStateMatch { states, negated }, DUP)?;
                }
                rule_attr::CT_STATUS => {
                    let bad = e("ct status", "ct status: malformed ct status match");
                    let (value, negated) = decode_ct_match(a.payload, bad)?;
                    let bits = num(value.u32(), bad)?;
                    if bits == 0 {
                        return Err(e("ct status", "ct status: the list of status bits is empty"));
                    }
                    if bits & !ct_status::ALL != 0 {
                        return Err(e(
                            "ct status",
                            "ct status: the bits are expected, seen-reply, assured, confirmed, snat and dnat",
                        ));
                    }
                    set_once(&mut v.ct_status, CtStatusMatch { bits, negated }, DUP)?;
                }
                rule_attr::CT_DIRECTION => {
                    let bad = e("ct direction", "ct direction: malformed ct direction match");
                    let (value, negated) = decode_ct_match(a.payload, bad)?;
                    let direction = match value.u8().map_err(|_| bad)? {
                        0 => Direction::Original,
                        1 => Direction::Reply,
                        _ => {
                            return Err(e(
                                "ct direction",
                                "ct direction: the direction is original or reply",
                            ))
                        }
                    };
                    set_once(
                        &mut v.ct_direction,
                        CtDirectionMatch { direction, negated },
                        DUP,
                    )?;
                }
                rule_attr::LIMIT => {
                    let bad = e("limit", "limit: malformed limit match");
                    let mut rate = None;
                    let mut unit = None;
                    let mut burst = None;
                    for n in AttrIter::new(a.payload) {
                        let n = n.map_err(|_| bad)?;
                        match n.ty {
                            limit_attr::RATE => set_once(&mut rate, num(n.u32(), bad)?, bad)?,
                            limit_attr::UNIT => {
                                let u = n.u8().ok().and_then(LimitUnit::from_u8).ok_or(e(
                                    "limit",
                                    "limit: the unit is second, minute, hour or day",
                                ))?;
                                set_once(&mut unit, u, bad)?;
                            }
                            limit_attr::BURST => set_once(&mut burst, num(n.u32(), bad)?, bad)?,
                            _ => return Err(bad),
                        }
                    }
                    let (Some(rate), Some(unit)) = (rate, unit) else {
                        return Err(bad);
                    };
                    if rate == 0 || rate > MAX_LIMIT_RATE {
                        return Err(e("limit", "limit: the rate is 1 to 1000000 per unit"));
                    }
                    let burst = burst.unwrap_or(DEFAULT_LIMIT_BURST);
                    if burst == 0 || burst > MAX_LIMIT_BURST {
                        return Err(e("limit", "limit: the burst is 1 to 1000000"));
                    }
                    set_once(&mut v.limit, Limit { rate, unit, burst }, DUP)?;
                }
                rule_attr::UID => set_once(
                    &mut v.uid,
                    num(a.u32(), e("uid", "uid: a uid is a number"))?,
                    DUP,
                )?,
                rule_attr::GID => set_once(
                    &mut v.gid,
                    num(a.u32(), e("gid", "gid: a gid is a number"))?,
                    DUP,
                )?,
                rule_attr::PAYLOAD => {
                    if a.payload.is_empty() || a.payload.len() > MAX_PAYLOAD_NEEDLE {
                        return Err(e(
                            "payload",
                            "payload: the text to look for has 1 to 128 bytes",
                        ));
                    }
                    set_once(&mut v.payload, a.payload, DUP)?;
                }
                rule_attr::RANDOM => {
                    let p = num(a.u32(), e("random", "random: malformed probability"))?;
                    if p > RANDOM_ALWAYS {
                        return Err(e("random", "random: the probability is 0 to 1"));
                    }
                    set_once(&mut v.random, p, DUP)?;
                }
                rule_attr::NTH => {
                    let n = num(a.u32(), e("nth", "nth: malformed count"))?;
                    if n == 0 {
                        return Err(e("nth", "nth: N is at least 1"));
                    }
                    set_once(&mut v.nth, n, DUP)?;
                }
                rule_attr::COMMENT => {
                    let c = a
                        .str()
                        .map_err(|_| e("comment", "comment: not UTF-8 text"))?;
                    if c.len() > MAX_COMMENT || c.contains('\0') {
                        return Err(e(
                            "comment",
                            "comment: at most 255 bytes, without NUL characters",
                        ));
                    }
                    set_once(&mut v.comment, c, DUP)?;
                }
                rule_attr::ACTION => set_once(&mut action, decode_action(a.payload)?, DUP)?,
                rule_attr::RESERVED_CT_FIRST..=rule_attr::RESERVED_CT_LAST => {
                    return Err(e(
                        "ct",
                        "ct: this conntrack match is not supported by this module (is rnfctl newer than the module?)",
                    ))
                }
                _ => {
                    return Err(e(
                        "rule",
                        "rule: unknown match attribute (is rnfctl newer than the module?)",
                    ))
                }
            }
        }
        v.action = action.ok_or(e("action", "action: the rule has no action"))?;
        v.check_consistency()?;
        Ok(v)
    }

    /// Checks what depends on the table the rule is in: `notrack` only in
    /// `raw`, the table that runs before connection tracking; NAT actions
    /// only in `nat`, and no `drop` or `reject` there (as iptables: the
    /// nat table sees only a flow's first packet and is not for
    /// filtering). The compiler runs it for every rule of a table.
    pub fn check_table(&self, table: Table) -> Result<(), RuleError> {
        match self.action {
            Action::Notrack if table != Table::Raw => Err(e(
                "notrack",
                "notrack: only in the raw table, which runs before connection tracking",
            )),
            Action::Nat(n) if table != Table::Nat => Err(nat_err(
                n.kind,
                [
                    "snat: only in the nat table",
                    "dnat: only in the nat table",
                    "masquerade: only in the nat table",
                    "redirect: only in the nat table",
                ],
            )),
            Action::Drop if table == Table::Nat => Err(e(
                "drop",
                "drop: not in the nat table, which sees only a flow's first packet and is not for filtering (use the filter table)",
            )),
            Action::Reject(_) if table == Table::Nat => Err(e(
                "reject",
                "reject: not in the nat table, which sees only a flow's first packet and is not for filtering (use the filter table)",
            )),
            _ => Ok(()),
        }
    }

    /// Checks what depends on the hook of the built-in chain the rule is
    /// in (after [`check_table`](Self::check_table)): where a NAT action
    /// may run. For a user chain the compiler checks every hook it can be
    /// reached from.
    pub fn check_hook(&self, hook: Hook) -> Result<(), RuleError> {
        match self.action {
            Action::Nat(n) => check_nat_hook(n.kind, hook),
            _ => Ok(()),
        }
    }

    fn check_consistency(&self) -> Result<(), RuleError> {
        for (field, list) in [("saddr", self.saddr), ("daddr", self.daddr)] {
            if let (Some(f), Some(l)) = (self.family, list) {
                if l.iter().any(|c| c.family != f) {
                    return Err(if field == "saddr" {
                        e(
                            "saddr",
                            "saddr: an address of the other family than the rule's 'ip'/'ip6'",
                        )
                    } else {
                        e(
                            "daddr",
                            "daddr: an address of the other family than the rule's 'ip'/'ip6'",
                        )
                    });
                }
            }
        }
        // Canonical form: a rule whose addresses are all of one family says
        // so. Without it, `saddr ! 10.0.0.0/8` would match every IPv6
        // packet, which nobody means; and requiring it makes every valid
        // blob print and parse back to itself.
        if self.family.is_none() {
            let mut fams = self
                .saddr
                .iter()
                .chain(self.daddr.iter())
                .flat_map(|l| l.iter().map(|c| c.family));
            if let Some(first) = fams.next() {
                if fams.all(|f| f == first) {
                    return Err(e(
                        "family",
                        "family: a rule whose addresses are all IPv4 or all IPv6 must say 'ip' or 'ip6'",
                    ));
                }
            }
        }
        if self.icmp.is_some() && self.proto.is_none() {
            return Err(e(
                "icmp",
                "icmp: an icmp type match needs proto icmp or icmpv6",
            ));
        }
        if let Some(p) = self.proto {
            if !proto_has_ports(p) {
                if self.sport.is_some() {
                    return Err(e(
                        "sport",
                        "sport: ports need proto tcp, udp, udplite, sctp or dccp",
                    ));
                }
                if self.dport.is_some() {
                    return Err(e(
                        "dport",
                        "dport: ports need proto tcp, udp, udplite, sctp or dccp",
                    ));
                }
            }
            if p != IPPROTO_TCP && self.tcp_flags.is_some() {
                return Err(e("tcp flags", "tcp flags: the rule's proto is not tcp"));
            }
            if p != IPPROTO_ICMP && p != IPPROTO_ICMPV6 && self.icmp.is_some() {
                return Err(e("icmp", "icmp: the rule's proto is not icmp or icmpv6"));
            }
        }
        if let Action::Reject(RejectKind::TcpReset) = self.action {
            if self.proto != Some(IPPROTO_TCP) {
                return Err(e("reject", "reject: 'with tcp-reset' needs 'proto tcp'"));
            }
        }
        if let Action::Nat(n) = self.action {
            self.check_nat(n)?;
        }
        Ok(())
    }

    /// A NAT action against the rule's matches: ports need a protocol
    /// with ports (as iptables' `--to-ports` needs `-p tcp|udp|...`), and
    /// an address makes the rule one of its family only.
    fn check_nat(&self, n: NatAction) -> Result<(), RuleError> {
        if n.range.has(range_flag::PROTO_SPECIFIED) && !self.proto.is_some_and(proto_has_ports) {
            return Err(nat_err(
                n.kind,
                [
                    "snat: a port needs proto tcp, udp, udplite, sctp or dccp",
                    "dnat: a port needs proto tcp, udp, udplite, sctp or dccp",
                    "masquerade: a port needs proto tcp, udp, udplite, sctp or dccp",
                    "redirect: a port needs proto tcp, udp, udplite, sctp or dccp",
                ],
            ));
        }
        if n.range.has(range_flag::MAP_IPS) {
            match self.family {
                Some(f) if f != n.range.family => {
                    return Err(nat_err(
                        n.kind,
                        [
                            "snat: an address of the other family than the rule's 'ip'/'ip6'",
                            "dnat: an address of the other family than the rule's 'ip'/'ip6'",
                            "",
                            "",
                        ],
                    ))
                }
                Some(_) => {}
                // Canonical form, as for the address matches: an IPv4
                // translation applies to IPv4 packets only, and the rule
                // says so.
                None => return Err(e(
                    "family",
                    "family: a rule translating to an IPv4 or IPv6 address must say 'ip' or 'ip6'",
                )),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn encode(spec: &RuleSpec<'_>) -> Vec<u8> {
        let mut m = AttrWriter::measure();
        spec.encode(&mut m);
        let mut buf = vec![0u8; m.finish().unwrap()];
        let mut w = AttrWriter::new(&mut buf);
        spec.encode(&mut w);
        w.finish().unwrap();
        buf
    }

    fn v4(a: [u8; 4], p: u8) -> Cidr {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        Cidr::new(Family::Ipv4, b, p).unwrap()
    }

    #[test]
    fn cidr_masks_and_contains() {
        let c = v4([10, 1, 2, 3], 8);
        assert_eq!(&c.addr[..4], &[10, 0, 0, 0]);
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 200, 0, 1]);
        assert!(c.contains(Family::Ipv4, &a));
        assert!(!c.contains(Family::Ipv6, &a));
        a[0] = 11;
        assert!(!c.contains(Family::Ipv4, &a));
        assert!(v4([0, 0, 0, 0], 0).contains(Family::Ipv4, &a));
        assert!(Cidr::new(Family::Ipv4, [0; 16], 33).is_none());
        let c = Cidr::new(Family::Ipv6, [0xff; 16], 12).unwrap();
        assert_eq!(&c.addr[..3], &[0xff, 0xf0, 0]);
    }

    /// The mask as the byte loop it replaced built it, every length; a
    /// prefix decodes only with its host bits clear.
    #[test]
    fn prefix_masks_and_canonical_prefixes() {
        for n in 0..=255u8 {
            let mut m = [0u8; 16];
            let mut left = u32::from(n);
            for b in m.iter_mut() {
                let take = left.min(8);
                *b = (0xff00u16 >> take) as u8;
                left -= take;
            }
            assert_eq!(prefix_mask(n), m, "/{n}");
        }
        let decode = |ty, payload: &[u8]| {
            Cidr::from_attr(&Attr {
                ty,
                nested: false,
                payload,
            })
        };
        let c = decode(list_attr::CIDR4, &[10, 1, 0, 0, 16]).unwrap();
        assert_eq!(
            (c.family, &c.addr[..5], c.prefix),
            (Family::Ipv4, &[10, 1, 0, 0, 0][..], 16)
        );
        assert!(decode(list_attr::CIDR4, &[10, 1, 0, 1, 16]).is_none());
        assert!(decode(list_attr::CIDR4, &[10, 1, 0, 0, 33]).is_none());
        assert!(decode(list_attr::CIDR4, &[0, 0, 0, 0, 0]).is_some());
        assert!(decode(list_attr::CIDR4, &[128, 0, 0, 0, 0]).is_none());
        let mut v6 = [0u8; 17];
        v6[15] = 1;
        v6[16] = 128;
        assert!(decode(list_attr::CIDR6, &v6).is_some());
        v6[16] = 127;
        assert!(decode(list_attr::CIDR6, &v6).is_none());
        v6[16] = 129;
        assert!(decode(list_attr::CIDR6, &v6).is_none());
    }

    #[test]
    fn full_rule_round_trip() {
        let cidrs = [v4([10, 0, 0, 0], 8), v4([192, 168, 0, 1], 32)];
        let ports = [
            PortRange { lo: 80, hi: 80 },
            PortRange { lo: 1000, hi: 2000 },
        ];
        let spec = RuleSpec {
            family: Some(Family::Ipv4),
            proto: Some(IPPROTO_TCP),
            saddr: Some(ListSpec {
                negated: true,
                items: &cidrs,
            }),
            dport: Some(ListSpec {
                negated: false,
                items: &ports,
            }),
            iif: Some(IfaceMatch {
                name: "eth",
                prefix: true,
                negated: false,
            }),
            tcp_flags: Some(TcpFlagsMatch { mask: 0x17, set: 2 }),
            mark: Some(MarkMatch {
                value: 1,
                mask: 0xff,
                negated: true,
            }),
            limit: Some(Limit {
                rate: 10,
                unit: LimitUnit::Minute,
                burst: 3,
            }),
            uid: Some(1000),
            payload: Some(b"GET /"),
            random: Some(RANDOM_ALWAYS / 2),
            nth: Some(3),
            comment: Some("web"),
            ..RuleSpec::new(Action::Reject(RejectKind::TcpReset))
        };
        let blob = encode(&spec);
        let v = RuleView::decode(&blob).unwrap();
        assert_eq!(v.family, Some(Family::Ipv4));
        let s = v.saddr.unwrap();
        assert!(s.negated);
        assert_eq!(s.iter().collect::<Vec<_>>(), cidrs);
        assert_eq!(v.dport.unwrap().iter().collect::<Vec<_>>(), ports);
        assert!(v.dport.unwrap().matches(1500));
        assert!(!v.dport.unwrap().matches(81));
        assert_eq!(v.iif, spec.iif);
        assert_eq!(v.tcp_flags, spec.tcp_flags);
        assert_eq!(v.mark, spec.mark);
        assert_eq!(v.limit, spec.limit);
        assert_eq!(v.uid, Some(1000));
        assert_eq!(v.payload, Some(&b"GET /"[..]));
        assert_eq!(v.comment, Some("web"));
        assert_eq!(v.action, Action::Reject(RejectKind::TcpReset));
    }

    #[test]
    fn errors_name_the_field() {
        let p = [PortRange { lo: 1, hi: 2 }];
        let spec = RuleSpec {
            proto: Some(IPPROTO_ICMP),
            dport: Some(ListSpec {
                negated: false,
                items: &p,
            }),
            ..RuleSpec::new(Action::Accept)
        };
        assert_eq!(validate(&encode(&spec)).unwrap_err().field, "dport");

        let spec = RuleSpec::new(Action::Reject(RejectKind::TcpReset));
        let err = validate(&encode(&spec)).unwrap_err();
        assert_eq!(err.message, "reject: 'with tcp-reset' needs 'proto tcp'");

        let spec = RuleSpec::new(Action::Jump("INPUT"));
        assert_eq!(validate(&encode(&spec)).unwrap_err().field, "chain");

        let c6 = [Cidr::new(Family::Ipv6, [0; 16], 0).unwrap()];
        let spec = RuleSpec {
            family: Some(Family::Ipv4),
            daddr: Some(ListSpec {
                negated: false,
                items: &c6,
            }),
            ..RuleSpec::new(Action::Drop)
        };
        assert_eq!(validate(&encode(&spec)).unwrap_err().field, "daddr");

        let spec = RuleSpec {
            mark: Some(MarkMatch {
                value: 0x100,
                mask: 0xff,
                negated: false,
            }),
            ..RuleSpec::new(Action::Drop)
        };
        assert_eq!(validate(&encode(&spec)).unwrap_err().field, "mark");

        // Addresses of one family without 'ip'/'ip6'; icmp without proto.
        let c4 = [v4([10, 0, 0, 0], 8)];
        let spec = RuleSpec {
            saddr: Some(ListSpec {
                negated: true,
                items: &c4,
            }),
            ..RuleSpec::new(Action::Drop)
        };
        assert_eq!(validate(&encode(&spec)).unwrap_err().field, "family");
        let spec = RuleSpec {
            icmp: Some(IcmpMatch { ty: 8, code: None }),
            ..RuleSpec::new(Action::Drop)
        };
        assert_eq!(validate(&encode(&spec)).unwrap_err().field, "icmp");

        // No action at all.
        assert_eq!(validate(&[]).unwrap_err().field, "action");

        // Reserved ct match.
        let mut blob = encode(&RuleSpec::new(Action::Accept));
        let mut extra = [0u8; 8];
        let mut w = AttrWriter::new(&mut extra);
        w.put_u32(rule_attr::RESERVED_CT_FIRST, 1);
        w.finish().unwrap();
        blob.extend_from_slice(&extra);
        assert_eq!(validate(&blob).unwrap_err().field, "ct");
    }

    #[test]
    fn chain_names() {
        assert!(validate_chain_name("DOCKER-USER").is_ok());
        assert!(validate_chain_name("f2b_sshd.1").is_ok());
        assert!(validate_chain_name("").is_err());
        assert!(validate_chain_name("-x").is_err());
        assert!(validate_chain_name("a b").is_err());
        assert!(validate_chain_name("FORWARD").is_err());
        assert!(validate_chain_name(&"a".repeat(31)).is_ok());
        assert!(validate_chain_name(&"a".repeat(32)).is_err());
    }

    #[test]
    fn tables() {
        assert_eq!(Table::Nat.stage(Hook::PreRouting), Some(Stage::NatDst));
        assert_eq!(Table::Nat.stage(Hook::PostRouting), Some(Stage::NatSrc));
        assert_eq!(Table::Nat.stage(Hook::Forward), None);
        assert_eq!(Table::Filter.builtin("INPUT"), Some(Hook::LocalIn));
        assert_eq!(Table::Filter.builtin("PREROUTING"), None);
        assert_eq!(Table::from_name("mangle"), Some(Table::Mangle));
        // Every (table, hook) maps to a hook point iptables has.
        for t in Table::ALL {
            for h in t.hooks() {
                let s = t.stage(*h).unwrap();
                assert!(crate::hooks::HOOK_STAGES.contains(&(*h, s)));
            }
        }
    }

    #[test]
    fn ct_matches_round_trip() {
        let spec = RuleSpec {
            ct_state: Some(CtStateMatch {
                states: CtState::ESTABLISHED.union(CtState::RELATED),
                negated: false,
            }),
            ct_status: Some(CtStatusMatch {
                bits: ct_status::ASSURED | ct_status::DST_NAT,
                negated: true,
            }),
            ct_direction: Some(CtDirectionMatch {
                direction: Direction::Reply,
                negated: true,
            }),
            ct_mark: Some(MarkMatch {
                value: 0x10,
                mask: 0xf0,
                negated: true,
            }),
            ..RuleSpec::new(Action::CtMark {
                op: CtMarkOp::Set,
                value: 1,
                mask: 0xff,
            })
        };
        let blob = encode(&spec);
        let v = RuleView::decode(&blob).unwrap();
        assert_eq!(v.ct_state, spec.ct_state);
        assert_eq!(v.ct_status, spec.ct_status);
        assert_eq!(v.ct_direction, spec.ct_direction);
        assert_eq!(v.ct_mark, spec.ct_mark);
        assert_eq!(v.action, spec.action);
        assert!(!v.action.is_terminal());
        for op in CtMarkOp::ALL {
            let (value, mask) = match op {
                CtMarkOp::Set => (0x2, 0x3),
                CtMarkOp::Save | CtMarkOp::Restore => (0, 0xff00),
                _ => (7, u32::MAX),
            };
            let a = Action::CtMark { op, value, mask };
            let blob = encode(&RuleSpec::new(a));
            assert_eq!(RuleView::decode(&blob).unwrap().action, a, "{op:?}");
        }
        let blob = encode(&RuleSpec::new(Action::Notrack));
        let v = RuleView::decode(&blob).unwrap();
        assert_eq!(v.action, Action::Notrack);
        assert!(!v.action.is_terminal());
    }

    /// A blob with one nested attribute `ty` holding `inner`, and an
    /// accept action.
    fn with_nested(ty: u16, inner: impl Fn(&mut AttrWriter<'_>)) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let mut w = AttrWriter::new(&mut buf);
        let n = w.begin_nested(ty);
        inner(&mut w);
        w.end_nested(n);
        Action::Accept.encode(&mut w);
        let len = w.finish().unwrap();
        buf.truncate(len);
        buf
    }

    fn action_blob(inner: impl Fn(&mut AttrWriter<'_>)) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let mut w = AttrWriter::new(&mut buf);
        let n = w.begin_nested(rule_attr::ACTION);
        inner(&mut w);
        w.end_nested(n);
        let len = w.finish().unwrap();
        buf.truncate(len);
        buf
    }

    #[test]
    fn ct_match_refusals() {
        let msg = |blob: Vec<u8>| validate(&blob).unwrap_err().message;
        // ct state: empty, undefined bit, wrong size, no value, twice.
        assert_eq!(
            msg(with_nested(rule_attr::CT_STATE, |w| w.put_u8(ct_match_attr::VALUE, 0))),
            "ct state: the list of states is empty"
        );
        assert_eq!(
            msg(with_nested(rule_attr::CT_STATE, |w| w.put_u8(ct_match_attr::VALUE, 16))),
            "ct state: the states are new, established, related, invalid and untracked"
        );
        assert_eq!(
            msg(with_nested(rule_attr::CT_STATE, |w| w.put_u32(ct_match_attr::VALUE, 8))),
            "ct state: malformed ct state match"
        );
        assert_eq!(
            msg(with_nested(rule_attr::CT_STATE, |w| w
                .put_bytes(ct_match_attr::NEG, &[]))),
            "ct state: malformed ct state match"
        );
        let twice = {
            let s = RuleSpec {
                ct_state: Some(CtStateMatch {
                    states: CtState::NEW,
                    negated: false,
                }),
                ..RuleSpec::new(Action::Accept)
            };
            let mut b = with_nested(rule_attr::CT_STATE, |w| w.put_u8(ct_match_attr::VALUE, 8));
            b.extend_from_slice(&encode(&s));
            b
        };
        assert_eq!(validate(&twice).unwrap_err().field, "rule");
        // ct status: empty, undefined bit.
        assert_eq!(
            msg(with_nested(rule_attr::CT_STATUS, |w| w.put_u32(ct_match_attr::VALUE, 0))),
            "ct status: the list of status bits is empty"
        );
        assert_eq!(
            msg(with_nested(rule_attr::CT_STATUS, |w| w
                .put_u32(ct_match_attr::VALUE, 1 << 6))),
            "ct status: the bits are expected, seen-reply, assured, confirmed, snat and dnat"
        );
        // ct direction: 0 and 1 only.
        assert_eq!(
            msg(with_nested(rule_attr::CT_DIRECTION, |w| w
                .put_u8(ct_match_attr::VALUE, 2))),
            "ct direction: the direction is original or reply"
        );
        // ct mark: the value within the mask.
        let e = validate(&with_nested(rule_attr::CT_MARK, |w| {
            w.put_u32(mark_attr::VALUE, 0x100);
            w.put_u32(mark_attr::MASK, 0xff);
        }))
        .unwrap_err();
        assert_eq!(e.field, "ct mark");
        assert_eq!(
            e.message,
            "ct mark: the value has bits outside the mask, so it never matches"
        );
        assert_eq!(
            msg(with_nested(rule_attr::CT_MARK, |w| w.put_u32(mark_attr::MASK, 1))),
            "ct mark: malformed ct mark match"
        );
    }

    #[test]
    fn ct_action_refusals() {
        let msg = |blob: Vec<u8>| validate(&blob).unwrap_err().message;
        let ct_mark = |op: u8, value: Option<u32>, mask: Option<u32>| {
            action_blob(move |w| {
                w.put_u8(action_attr::KIND, action_kind::CT_MARK);
                w.put_u8(action_attr::MARK_OP, op);
                if let Some(v) = value {
                    w.put_u32(action_attr::MARK_VALUE, v);
                }
                if let Some(m) = mask {
                    w.put_u32(action_attr::MARK_MASK, m);
                }
            })
        };
        assert!(validate(&ct_mark(CtMarkOp::Set as u8, Some(1), Some(3))).is_ok());
        assert_eq!(
            msg(ct_mark(CtMarkOp::Set as u8, Some(4), Some(3))),
            "ct mark: the value has bits outside the mask after '/'"
        );
        assert_eq!(
            msg(ct_mark(CtMarkOp::Set as u8, None, None)),
            "ct mark: the action needs a value"
        );
        assert_eq!(
            msg(ct_mark(CtMarkOp::Xor as u8, Some(1), Some(3))),
            "ct mark: xor, and and or take no mask"
        );
        assert_eq!(
            msg(ct_mark(CtMarkOp::Save as u8, Some(1), None)),
            "ct mark: save and restore take no value"
        );
        assert_eq!(
            msg(ct_mark(9, Some(1), None)),
            "ct mark: the action is 'ct mark set|xor|and|or VALUE' or 'ct mark save|restore'"
        );
        // Notrack takes no argument; mark takes no mask.
        assert_eq!(
            msg(action_blob(|w| {
                w.put_u8(action_attr::KIND, action_kind::NOTRACK);
                w.put_u32(action_attr::MARK_VALUE, 1);
            })),
            "action: argument does not belong to this action"
        );
        assert_eq!(
            msg(action_blob(|w| {
                w.put_u8(action_attr::KIND, action_kind::MARK);
                w.put_u8(action_attr::MARK_OP, MarkOp::Set as u8);
                w.put_u32(action_attr::MARK_VALUE, 1);
                w.put_u32(action_attr::MARK_MASK, 1);
            })),
            "action: argument does not belong to this action"
        );
    }

    #[test]
    fn notrack_only_in_raw() {
        let blob = encode(&RuleSpec::new(Action::Notrack));
        let v = RuleView::decode(&blob).unwrap();
        assert!(v.check_table(Table::Raw).is_ok());
        for t in [Table::Mangle, Table::Nat, Table::Filter] {
            let e = v.check_table(t).unwrap_err();
            assert_eq!(e.field, "notrack");
            assert_eq!(
                e.message,
                "notrack: only in the raw table, which runs before connection tracking"
            );
        }
        let blob = encode(&RuleSpec::new(Action::CtMark {
            op: CtMarkOp::Save,
            value: 0,
            mask: u32::MAX,
        }));
        let v = RuleView::decode(&blob).unwrap();
        assert!(Table::ALL.iter().all(|t| v.check_table(*t).is_ok()));
    }

    #[test]
    fn ct_mark_ops() {
        // ct = 0x0f, packet mark = 0xf0.
        let ap = |op: CtMarkOp, value, mask| op.apply(0x0f, 0xf0, value, mask);
        assert_eq!(ap(CtMarkOp::Set, 0x30, u32::MAX), 0x30);
        assert_eq!(ap(CtMarkOp::Set, 0x30, 0xf0), 0x3f);
        assert_eq!(ap(CtMarkOp::Xor, 0x03, u32::MAX), 0x0c);
        assert_eq!(ap(CtMarkOp::And, 0x03, u32::MAX), 0x03);
        assert_eq!(ap(CtMarkOp::Or, 0x30, u32::MAX), 0x3f);
        assert_eq!(ap(CtMarkOp::Save, 0, u32::MAX), 0xf0);
        assert_eq!(ap(CtMarkOp::Save, 0, 0x30), 0x3f);
        assert_eq!(ap(CtMarkOp::Restore, 0, u32::MAX), 0x0f);
        assert_eq!(ap(CtMarkOp::Restore, 0, 0x03), 0xf3);
        assert!(CtMarkOp::Restore.writes_packet_mark());
        assert!(CtMarkOp::ALL
            .iter()
            .all(|o| CtMarkOp::from_name(o.name()) == Some(*o)
                && CtMarkOp::from_u8(*o as u8) == Some(*o)));
    }

    #[test]
    fn ct_match_semantics() {
        let st = CtStateMatch {
            states: CtState::NEW.union(CtState::INVALID),
            negated: false,
        };
        assert!(st.matches(CtState::NEW));
        assert!(!st.matches(CtState::ESTABLISHED));
        let nst = CtStateMatch {
            negated: true,
            ..st
        };
        assert!(nst.matches(CtState::UNTRACKED));
        assert!(!nst.matches(CtState::INVALID));
        let s = CtStatusMatch {
            bits: ct_status::ASSURED | ct_status::SRC_NAT,
            negated: false,
        };
        assert!(s.matches(Some(ct_status::SRC_NAT | ct_status::CONFIRMED)));
        assert!(!s.matches(Some(ct_status::CONFIRMED)));
        assert!(!s.matches(None));
        let ns = CtStatusMatch { negated: true, ..s };
        assert!(ns.matches(Some(ct_status::CONFIRMED)));
        assert!(!ns.matches(Some(ct_status::ASSURED)));
        assert!(!ns.matches(None));
        let d = CtDirectionMatch {
            direction: Direction::Original,
            negated: true,
        };
        assert!(d.matches(Some(Direction::Reply)));
        assert!(!d.matches(Some(Direction::Original)));
        assert!(!d.matches(None));
        assert_eq!(d.effective(), Direction::Reply);
    }

    #[test]
    fn mark_ops() {
        assert_eq!(MarkOp::Set.apply(5, 3), 3);
        assert_eq!(MarkOp::Xor.apply(5, 3), 6);
        assert_eq!(MarkOp::And.apply(5, 3), 1);
        assert_eq!(MarkOp::Or.apply(5, 3), 7);
    }

    fn a4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    fn a6(last: u8) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        b[15] = last;
        b
    }

    fn nat(kind: NatKind, range: NatRange) -> Action<'static> {
        Action::Nat(NatAction { kind, range })
    }

    #[test]
    fn nat_actions_round_trip() {
        let v4 = NatRange::addrs(Family::Ipv4, a4([10, 0, 0, 1]), a4([10, 0, 0, 3]));
        let v6 = NatRange::addrs(Family::Ipv6, a6(1), a6(1));
        let cases = [
            (Some(Family::Ipv4), None, nat(NatKind::Dnat, v4)),
            (
                Some(Family::Ipv4),
                Some(IPPROTO_TCP),
                nat(NatKind::Dnat, v4.with_ports(8000, 8010)),
            ),
            (
                Some(Family::Ipv6),
                Some(IPPROTO_UDP),
                nat(
                    NatKind::Snat,
                    v6.with_ports(53, 53).with_flags(
                        range_flag::RANDOM | range_flag::FULLY_RANDOM | range_flag::PERSISTENT,
                    ),
                ),
            ),
            (
                None,
                None,
                nat(NatKind::Masquerade, NatRange::empty(Family::Ipv4)),
            ),
            (
                None,
                Some(IPPROTO_SCTP),
                nat(
                    NatKind::Masquerade,
                    NatRange::empty(Family::Ipv4)
                        .with_ports(1024, 65535)
                        .with_flags(range_flag::FULLY_RANDOM),
                ),
            ),
            (
                None,
                Some(IPPROTO_TCP),
                nat(
                    NatKind::Redirect,
                    NatRange::empty(Family::Ipv4)
                        .with_ports(8443, 8443)
                        .with_flags(range_flag::RANDOM),
                ),
            ),
        ];
        for (family, proto, action) in cases {
            let spec = RuleSpec {
                family,
                proto,
                ..RuleSpec::new(action)
            };
            let blob = encode(&spec);
            let v = RuleView::decode(&blob).unwrap_or_else(|e| panic!("{action:?}: {e}"));
            assert_eq!(v.action, action);
            assert!(v.action.is_terminal());
            assert_eq!(v.action.nat(), action.nat());
            assert!(v.check_table(Table::Nat).is_ok());
        }
    }

    #[test]
    fn nat_action_refusals() {
        let msg = |blob: Vec<u8>| validate(&blob).unwrap_err().message;
        let raw = |kind: u8, args: &dyn Fn(&mut AttrWriter<'_>)| {
            action_blob(move |w| {
                w.put_u8(action_attr::KIND, kind);
                args(w);
            })
        };
        let addrs = |w: &mut AttrWriter<'_>, lo: &[u8], hi: &[u8]| {
            w.put_bytes(action_attr::NAT_MIN_ADDR, lo);
            w.put_bytes(action_attr::NAT_MAX_ADDR, hi);
        };
        let ports = |w: &mut AttrWriter<'_>, lo: u16, hi: u16| {
            w.put_u16(action_attr::NAT_MIN_PORT, lo);
            w.put_u16(action_attr::NAT_MAX_PORT, hi);
        };
        let flags = |w: &mut AttrWriter<'_>, f: u8| w.put_u8(action_attr::NAT_FLAGS, f);
        let mi = range_flag::MAP_IPS;
        let ps = range_flag::PROTO_SPECIFIED;
        // dnat/snat need an address; masquerade/redirect take none.
        assert_eq!(
            msg(raw(action_kind::DNAT, &|w| flags(w, 0))),
            "dnat: needs an address to translate to ('dnat to ADDR')"
        );
        assert_eq!(
            msg(raw(action_kind::SNAT, &|w| flags(w, 0))),
            "snat: needs an address to translate to ('snat to ADDR')"
        );
        assert_eq!(
            msg(raw(action_kind::MASQUERADE, &|w| {
                addrs(w, &[1, 2, 3, 4], &[1, 2, 3, 4]);
                flags(w, mi);
            })),
            "masquerade: translates to the outgoing interface's address; 'to' takes only ports"
        );
        assert_eq!(
            msg(raw(action_kind::REDIRECT, &|w| {
                addrs(w, &[1, 2, 3, 4], &[1, 2, 3, 4]);
                flags(w, mi);
            })),
            "redirect: translates to the local host's address; 'to' takes only ports"
        );
        // Ranges in order; ports from 1.
        assert_eq!(
            msg(raw(action_kind::DNAT, &|w| {
                addrs(w, &[10, 0, 0, 3], &[10, 0, 0, 1]);
                flags(w, mi);
            })),
            "dnat: the first address of the range is above the last"
        );
        assert_eq!(
            msg(raw(action_kind::REDIRECT, &|w| {
                ports(w, 90, 80);
                flags(w, ps);
            })),
            "redirect: the first port of the range is above the last"
        );
        assert_eq!(
            msg(raw(action_kind::REDIRECT, &|w| {
                ports(w, 0, 80);
                flags(w, ps);
            })),
            "redirect: ports are 1 to 65535"
        );
        // Options per kind.
        assert_eq!(
            msg(raw(action_kind::REDIRECT, &|w| flags(
                w,
                range_flag::PERSISTENT
            ))),
            "redirect: the only option is random"
        );
        assert_eq!(
            msg(raw(action_kind::MASQUERADE, &|w| flags(
                w,
                range_flag::PERSISTENT
            ))),
            "masquerade: the options are random and fully-random"
        );
        assert_eq!(
            msg(raw(action_kind::DNAT, &|w| {
                addrs(w, &[1, 2, 3, 4], &[1, 2, 3, 4]);
                flags(w, mi | range_flag::FULLY_RANDOM);
            })),
            "dnat: the options are random and persistent"
        );
        // Malformed: flags missing or not matching the arguments, mixed
        // address lengths, half ranges, unknown bits, stray arguments.
        let malformed: [&dyn Fn(&mut AttrWriter<'_>); 8] = [
            &|w| addrs(w, &[1, 2, 3, 4], &[1, 2, 3, 4]),
            &|w| {
                addrs(w, &[1, 2, 3, 4], &[1, 2, 3, 4]);
                flags(w, 0);
            },
            &|w| {
                addrs(w, &[1, 2, 3, 4], &[1, 2, 3, 4]);
                flags(w, mi | ps);
            },
            &|w| {
                addrs(w, &[1, 2, 3, 4], &[0; 16]);
                flags(w, mi);
            },
            &|w| {
                w.put_bytes(action_attr::NAT_MIN_ADDR, &[1, 2, 3, 4]);
                flags(w, mi);
            },
            &|w| {
                addrs(w, &[1, 2, 3, 4], &[1, 2, 3, 4]);
                w.put_u16(action_attr::NAT_MIN_PORT, 80);
                flags(w, mi | ps);
            },
            &|w| {
                addrs(w, &[1, 2, 3, 4], &[1, 2, 3, 4]);
                flags(w, mi | 0x80);
            },
            &|w| {
                addrs(w, &[1, 2, 3], &[1, 2, 3]);
                flags(w, mi);
            },
        ];
        for (i, args) in malformed.iter().enumerate() {
            let e = validate(&raw(action_kind::DNAT, args)).unwrap_err();
            assert_eq!(e.field, "action", "case {i}: {}", e.message);
        }
        assert_eq!(
            msg(raw(action_kind::ACCEPT, &|w| flags(w, 0))),
            "action: argument does not belong to this action"
        );
        assert_eq!(
            msg(raw(action_kind::REDIRECT, &|w| {
                flags(w, 0);
                w.put_u32(action_attr::MARK_VALUE, 1);
            })),
            "action: argument does not belong to this action"
        );

        // Against the rule: ports need a protocol with ports; the
        // address's family is the rule's, and must be said.
        let v4 = NatRange::addrs(Family::Ipv4, a4([10, 0, 0, 1]), a4([10, 0, 0, 1]));
        let rule = |family, proto, a| {
            let spec = RuleSpec {
                family,
                proto,
                ..RuleSpec::new(a)
            };
            validate(&encode(&spec)).map_err(|e| e.message)
        };
        let with_ports = nat(NatKind::Dnat, v4.with_ports(80, 80));
        assert_eq!(
            rule(Some(Family::Ipv4), None, with_ports),
            Err("dnat: a port needs proto tcp, udp, udplite, sctp or dccp")
        );
        assert_eq!(
            rule(Some(Family::Ipv4), Some(IPPROTO_ICMP), with_ports),
            Err("dnat: a port needs proto tcp, udp, udplite, sctp or dccp")
        );
        assert!(rule(Some(Family::Ipv4), Some(IPPROTO_DCCP), with_ports).is_ok());
        let redirect = nat(
            NatKind::Redirect,
            NatRange::empty(Family::Ipv4).with_ports(8443, 8443),
        );
        assert_eq!(
            rule(None, None, redirect),
            Err("redirect: a port needs proto tcp, udp, udplite, sctp or dccp")
        );
        assert_eq!(
            rule(Some(Family::Ipv6), None, nat(NatKind::Snat, v4)),
            Err("snat: an address of the other family than the rule's 'ip'/'ip6'")
        );
        assert_eq!(
            rule(None, None, nat(NatKind::Snat, v4)),
            Err("family: a rule translating to an IPv4 or IPv6 address must say 'ip' or 'ip6'")
        );
        // Without an address a NAT rule may be for both families.
        assert!(rule(
            None,
            None,
            nat(NatKind::Masquerade, NatRange::empty(Family::Ipv4))
        )
        .is_ok());
    }

    #[test]
    fn nat_tables_and_hooks() {
        let v4 = NatRange::addrs(Family::Ipv4, a4([10, 0, 0, 1]), a4([10, 0, 0, 1]));
        let check = |a: Action<'static>, table: Table, hook: Option<Hook>| {
            let spec = RuleSpec {
                family: Some(Family::Ipv4),
                ..RuleSpec::new(a)
            };
            let blob = encode(&spec);
            let v = RuleView::decode(&blob).unwrap();
            v.check_table(table)
                .and_then(|()| hook.map_or(Ok(()), |h| v.check_hook(h)))
                .map_err(|e| e.message)
        };
        let kinds = [
            NatKind::Snat,
            NatKind::Dnat,
            NatKind::Masquerade,
            NatKind::Redirect,
        ];
        for kind in kinds {
            let range = if kind.takes_addr() {
                v4
            } else {
                NatRange::empty(Family::Ipv4)
            };
            let a = nat(kind, range);
            for t in [Table::Raw, Table::Mangle, Table::Filter] {
                let e = check(a, t, None).unwrap_err();
                assert!(e.ends_with(": only in the nat table"), "{e}");
                assert!(e.starts_with(kind.name()), "{e}");
            }
            for h in Table::Nat.hooks() {
                let got = check(a, Table::Nat, Some(*h));
                assert_eq!(got.is_ok(), kind.allowed_at(*h), "{kind:?} at {h:?}");
            }
        }
        assert_eq!(
            check(nat(NatKind::Dnat, v4), Table::Nat, Some(Hook::PostRouting)),
            Err("dnat: only in nat PREROUTING and OUTPUT, or in a chain reached only from them")
        );
        assert_eq!(
            check(
                nat(NatKind::Masquerade, NatRange::empty(Family::Ipv4)),
                Table::Nat,
                Some(Hook::LocalIn)
            ),
            Err("masquerade: only in nat POSTROUTING, or in a chain reached only from it")
        );
        // The nat table is not for filtering.
        assert_eq!(
            check(Action::Drop, Table::Nat, None),
            Err("drop: not in the nat table, which sees only a flow's first packet and is not for filtering (use the filter table)")
        );
        assert!(check(
            Action::Reject(RejectKind::PortUnreachable),
            Table::Nat,
            None
        )
        .unwrap_err()
        .starts_with("reject: not in the nat table"));
        for ok in [
            Action::Accept,
            Action::Return,
            Action::Log {
                prefix: "",
                level: 4,
            },
            Action::Jump("X"),
        ] {
            assert!(check(ok, Table::Nat, Some(Hook::PreRouting)).is_ok());
        }
    }
}
