// SPDX-License-Identifier: GPL-2.0-only

//! Netlink attribute (TLV) encoding and decoding without allocation, and the
//! messages of rnf's generic netlink family.
//!
//! An attribute is a 4-byte header (`nla_len: u16`, `nla_type: u16`, native
//! endianness) followed by the payload and padding up to a multiple of
//! [`NLA_ALIGNTO`]. `nla_len` counts the header and the payload, not the
//! padding.
//!
//! Writing never panics: [`AttrWriter`] writes into a caller-provided buffer
//! and records an overflow instead. To size a buffer, run the same encoding
//! twice: first into [`AttrWriter::measure`], then into a buffer of
//! [`AttrWriter::len`] bytes.
//!
//! Reading never panics either: every access to received bytes is checked.

use crate::hooks::{Family, Hook, Stage};

/// Version of rnf, reported by the kernel module and by `rnfctl`.
pub const VERSION: &str = "0.1.0";

/// Attributes are aligned to this many bytes (`NLA_ALIGNTO`).
pub const NLA_ALIGNTO: usize = 4;
/// Size of an attribute header (`NLA_HDRLEN`).
pub const NLA_HDRLEN: usize = 4;
/// `nla_type` flag: the payload is a list of attributes.
pub const NLA_F_NESTED: u16 = 1 << 15;
/// `nla_type` flag: the payload is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
/// Mask of the type bits of `nla_type`.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
/// Largest payload one attribute can carry (`nla_len` is a `u16`).
pub const NLA_MAX_PAYLOAD: usize = u16::MAX as usize - NLA_HDRLEN;

/// `len` rounded up to a multiple of [`NLA_ALIGNTO`], saturating.
pub const fn nla_align(len: usize) -> usize {
    match len.checked_add(NLA_ALIGNTO - 1) {
        Some(v) => v & !(NLA_ALIGNTO - 1),
        None => usize::MAX & !(NLA_ALIGNTO - 1),
    }
}

/// Error while encoding or decoding netlink data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input ends in the middle of a header or payload.
    Truncated,
    /// A length field is impossible (shorter than its header, or an
    /// attribute payload has the wrong size for its type).
    BadLength,
    /// A message or attribute has an unexpected type.
    BadType,
    /// A required attribute (of the given type) is missing.
    Missing(u16),
    /// The output buffer is too small, or a nested attribute grew beyond
    /// what `nla_len` can express.
    Overflow,
    /// A value is out of range (for example an unknown family or hook).
    BadValue,
    /// A string attribute is not valid UTF-8.
    BadUtf8,
}

impl WireError {
    /// Short description in words.
    pub const fn message(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated netlink data",
            Self::BadLength => "bad length in netlink data",
            Self::BadType => "unexpected netlink message or attribute type",
            Self::Missing(_) => "required netlink attribute missing",
            Self::Overflow => "netlink buffer too small",
            Self::BadValue => "netlink attribute value out of range",
            Self::BadUtf8 => "netlink string attribute is not UTF-8",
        }
    }
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing(ty) => write!(f, "{} (type {})", self.message(), ty),
            _ => f.write_str(self.message()),
        }
    }
}

/// Position of an open nested attribute, returned by
/// [`AttrWriter::begin_nested`] and consumed by [`AttrWriter::end_nested`].
#[derive(Debug)]
#[must_use = "a nested attribute must be closed with end_nested"]
pub struct Nest {
    start: usize,
}

/// Writes netlink attributes into a caller-provided buffer.
///
/// Nothing is written past the end of the buffer: once something does not
/// fit, the writer stops writing but keeps counting, so [`len`](Self::len)
/// still gives the size the whole encoding needs and
/// [`finish`](Self::finish) reports [`WireError::Overflow`].
#[derive(Debug)]
pub struct AttrWriter<'a> {
    buf: Option<&'a mut [u8]>,
    pos: usize,
    err: Option<WireError>,
}

impl<'a> AttrWriter<'a> {
    /// A writer that fills `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf: Some(buf),
            pos: 0,
            err: None,
        }
    }

    /// A writer without a buffer that only counts the bytes an encoding
    /// needs.
    pub const fn measure() -> Self {
        Self {
            buf: None,
            pos: 0,
            err: None,
        }
    }

    /// Bytes written so far, or that would have been written if the buffer
    /// were large enough (including padding).
    pub const fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing has been written.
    pub const fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Whether this writer only measures.
    pub const fn is_measuring(&self) -> bool {
        self.buf.is_none()
    }

    /// Ends writing: the number of bytes written, or the first error
    /// ([`WireError::Overflow`] if something did not fit). A measuring writer
    /// returns the size needed.
    pub fn finish(self) -> Result<usize, WireError> {
        match self.err {
            Some(e) => Err(e),
            None => Ok(self.pos),
        }
    }

    fn fail(&mut self, e: WireError) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    /// Reserves `total` bytes at the current position and returns their
    /// offset if they can be written to the buffer.
    fn reserve(&mut self, total: usize) -> Option<usize> {
        let start = self.pos;
        let end = match start.checked_add(total) {
            Some(end) => end,
            None => {
                self.fail(WireError::Overflow);
                return None;
            }
        };
        self.pos = end;
        if self.err.is_some() {
            return None;
        }
        let fits = match &self.buf {
            None => false,
            Some(buf) => end <= buf.len(),
        };
        if !fits {
            if self.buf.is_some() {
                self.fail(WireError::Overflow);
            }
            return None;
        }
        Some(start)
    }

    fn write_at(&mut self, off: usize, bytes: &[u8]) {
        if let Some(buf) = self.buf.as_deref_mut() {
            let end = off.saturating_add(bytes.len());
            match buf.get_mut(off..end) {
                // Byte by byte rather than `copy_from_slice`: the lengths are
                // equal by construction, and this leaves no panic path in the
                // kernel build (whose objtool does not know newer core panics).
                Some(dst) => dst.iter_mut().zip(bytes).for_each(|(d, s)| *d = *s),
                None => self.fail(WireError::Overflow),
            }
        }
    }

    fn fill_zero(&mut self, off: usize, n: usize) {
        if let Some(buf) = self.buf.as_deref_mut() {
            let end = off.saturating_add(n);
            match buf.get_mut(off..end) {
                Some(dst) => dst.fill(0),
                None => self.fail(WireError::Overflow),
            }
        }
    }

    fn header(len: u16, ty: u16) -> [u8; NLA_HDRLEN] {
        let l = len.to_ne_bytes();
        let t = ty.to_ne_bytes();
        [l[0], l[1], t[0], t[1]]
    }

    /// Writes an attribute whose payload is the concatenation of `parts`.
    fn put_parts(&mut self, ty: u16, parts: &[&[u8]]) {
        let mut plen: usize = 0;
        for p in parts {
            plen = plen.saturating_add(p.len());
        }
        if plen > NLA_MAX_PAYLOAD {
            // Still account for the space so `len` stays meaningful.
            self.pos = self
                .pos
                .saturating_add(nla_align(plen.saturating_add(NLA_HDRLEN)));
            self.fail(WireError::Overflow);
            return;
        }
        let nla_len = NLA_HDRLEN + plen;
        let total = nla_align(nla_len);
        let Some(off) = self.reserve(total) else {
            return;
        };
        // `nla_len` is at most u16::MAX, checked above.
        self.write_at(off, &Self::header(nla_len as u16, ty));
        let mut at = off + NLA_HDRLEN;
        for p in parts {
            self.write_at(at, p);
            at += p.len();
        }
        self.fill_zero(at, total - nla_len);
    }

    /// Writes an attribute with an arbitrary payload.
    pub fn put_bytes(&mut self, ty: u16, payload: &[u8]) {
        self.put_parts(ty, &[payload]);
    }

    /// Writes a `u8` attribute.
    pub fn put_u8(&mut self, ty: u16, v: u8) {
        self.put_bytes(ty, &[v]);
    }

    /// Writes a `u16` attribute (native endianness).
    pub fn put_u16(&mut self, ty: u16, v: u16) {
        self.put_bytes(ty, &v.to_ne_bytes());
    }

    /// Writes a `u32` attribute (native endianness).
    pub fn put_u32(&mut self, ty: u16, v: u32) {
        self.put_bytes(ty, &v.to_ne_bytes());
    }

    /// Writes a `u64` attribute (native endianness), without a padding
    /// attribute: the payload may be only 4-byte aligned.
    pub fn put_u64(&mut self, ty: u16, v: u64) {
        self.put_bytes(ty, &v.to_ne_bytes());
    }

    /// Writes an `i32` attribute (native endianness).
    pub fn put_i32(&mut self, ty: u16, v: i32) {
        self.put_bytes(ty, &v.to_ne_bytes());
    }

    /// Writes a NUL-terminated string attribute.
    pub fn put_str(&mut self, ty: u16, s: &str) {
        self.put_parts(ty, &[s.as_bytes(), &[0]]);
    }

    /// Opens a nested attribute of type `ty`; the attributes written until
    /// the matching [`end_nested`](Self::end_nested) form its payload.
    pub fn begin_nested(&mut self, ty: u16) -> Nest {
        let start = self.pos;
        if let Some(off) = self.reserve(NLA_HDRLEN) {
            self.write_at(off, &Self::header(NLA_HDRLEN as u16, ty | NLA_F_NESTED));
        }
        Nest { start }
    }

    /// Closes a nested attribute: sets its length to cover everything
    /// written since [`begin_nested`](Self::begin_nested).
    pub fn end_nested(&mut self, nest: Nest) {
        let len = self.pos.saturating_sub(nest.start);
        let Ok(len) = u16::try_from(len) else {
            self.fail(WireError::Overflow);
            return;
        };
        if self.err.is_none() {
            self.write_at(nest.start, &len.to_ne_bytes());
        }
    }
}

/// One received netlink attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Type, without the [`NLA_F_NESTED`] and [`NLA_F_NET_BYTEORDER`] flags.
    pub ty: u16,
    /// Whether [`NLA_F_NESTED`] was set.
    pub nested: bool,
    /// Payload, without header and padding.
    pub payload: &'a [u8],
}

impl<'a> Attr<'a> {
    fn array<const N: usize>(&self) -> Result<[u8; N], WireError> {
        <[u8; N]>::try_from(self.payload).map_err(|_| WireError::BadLength)
    }

    /// The payload as a `u8`; it must be exactly 1 byte.
    pub fn u8(&self) -> Result<u8, WireError> {
        self.array::<1>().map(|[b]| b)
    }

    /// The payload as a native-endian `u16`; it must be exactly 2 bytes.
    pub fn u16(&self) -> Result<u16, WireError> {
        self.array().map(u16::from_ne_bytes)
    }

    /// The payload as a native-endian `u32`; it must be exactly 4 bytes.
    pub fn u32(&self) -> Result<u32, WireError> {
        self.array().map(u32::from_ne_bytes)
    }

    /// The payload as a native-endian `u64`; it must be exactly 8 bytes (it
    /// need not be 8-byte aligned).
    pub fn u64(&self) -> Result<u64, WireError> {
        self.array().map(u64::from_ne_bytes)
    }

    /// The payload as a native-endian `i32`; it must be exactly 4 bytes.
    pub fn i32(&self) -> Result<i32, WireError> {
        self.array().map(i32::from_ne_bytes)
    }

    /// The payload as a string: one trailing NUL, if present, is removed;
    /// the rest must be UTF-8.
    pub fn str(&self) -> Result<&'a str, WireError> {
        let bytes = match self.payload.split_last() {
            Some((0, rest)) => rest,
            _ => self.payload,
        };
        core::str::from_utf8(bytes).map_err(|_| WireError::BadUtf8)
    }

    /// The attributes in the payload.
    pub fn nested_iter(&self) -> AttrIter<'a> {
        AttrIter::new(self.payload)
    }
}

/// Iterator over the attributes in a byte buffer.
///
/// Yields `Err` for malformed data and then stops.
#[derive(Clone, Debug)]
pub struct AttrIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> AttrIter<'a> {
    /// Iterates over the attributes in `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self {
            rest: buf,
            failed: false,
        }
    }

    /// The first attribute of type `ty`, if any. Errors in the data before
    /// it are returned.
    pub fn find(self, ty: u16) -> Result<Option<Attr<'a>>, WireError> {
        for a in self {
            let a = a?;
            if a.ty == ty {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    fn next_attr(&mut self) -> Result<Attr<'a>, WireError> {
        let hdr = self.rest.get(..NLA_HDRLEN).ok_or(WireError::Truncated)?;
        let (len, raw_ty) = match hdr {
            [l0, l1, t0, t1] => (
                usize::from(u16::from_ne_bytes([*l0, *l1])),
                u16::from_ne_bytes([*t0, *t1]),
            ),
            _ => return Err(WireError::Truncated),
        };
        if len < NLA_HDRLEN {
            return Err(WireError::BadLength);
        }
        let payload = self.rest.get(NLA_HDRLEN..len).ok_or(WireError::Truncated)?;
        // The last attribute may come without its padding.
        let advance = nla_align(len).min(self.rest.len());
        self.rest = self.rest.get(advance..).unwrap_or(&[]);
        Ok(Attr {
            ty: raw_ty & NLA_TYPE_MASK,
            nested: raw_ty & NLA_F_NESTED != 0,
            payload,
        })
    }
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Result<Attr<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let r = self.next_attr();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// Name of rnf's generic netlink family.
pub const FAMILY_NAME: &str = "rnf";
/// Version of rnf's generic netlink protocol (`genlmsghdr.version`).
pub const FAMILY_VERSION: u8 = 1;

/// Commands of the rnf generic netlink family (`genlmsghdr.cmd`).
pub mod cmd {
    /// Unused.
    pub const UNSPEC: u8 = 0;
    /// Get the module's version and per-hook counters. Reply attributes:
    /// [`attr::VERSION`](super::attr::VERSION),
    /// [`attr::NETNS_COOKIE`](super::attr::NETNS_COOKIE),
    /// [`attr::HOOK_STATS`](super::attr::HOOK_STATS).
    pub const GET_STATUS: u8 = 1;
    /// Add a rule: `TABLE`, `CHAIN`, `RULE` (a `rules` blob), optional
    /// `POSITION` (0-based index to insert before; absent: append) or
    /// `HANDLE` (replace that rule), optional `GENERATION`. Reply: `HANDLE`,
    /// `GENERATION`.
    pub const NEW_RULE: u8 = 2;
    /// Delete a rule: `TABLE`, `CHAIN`, and `HANDLE` or `RULE` (the first
    /// rule whose blob is identical). Optional `GENERATION`. Reply:
    /// `GENERATION`.
    pub const DEL_RULE: u8 = 3;
    /// List rules: optional `TABLE`, `CHAIN`. Dump: one message per chain
    /// with `TABLE`, `CHAIN`, `POLICY` (built-in chains), `PACKETS`,
    /// `BYTES` (policy counters), `GENERATION` and `RULES` (nested list of
    /// `rule_entry::ENTRY`).
    pub const GET_RULES: u8 = 4;
    /// Delete every rule: optional `TABLE`, `CHAIN`.
    pub const FLUSH: u8 = 5;
    /// Reset counters: optional `TABLE`, `CHAIN`.
    pub const ZERO: u8 = 6;
    /// Set a built-in chain's policy: `TABLE`, `CHAIN`, `POLICY`.
    pub const SET_POLICY: u8 = 7;
    /// Create a user chain: `TABLE`, `CHAIN`.
    pub const NEW_CHAIN: u8 = 8;
    /// Delete an empty, unreferenced user chain: `TABLE`, `CHAIN`.
    pub const DEL_CHAIN: u8 = 9;
    /// Rename a user chain: `TABLE`, `CHAIN`, `NEW_NAME`.
    pub const RENAME_CHAIN: u8 = 10;
    /// Replace the whole rule set atomically (restore): the rule set as one
    /// `RULESET`, or, for rule sets larger than one attribute can hold
    /// (64 KiB), as several `RULESET_PART` attributes in the same message,
    /// concatenated in order (see `ruleset_msg::RulesetItems`); optional
    /// `GENERATION`. One request is one atomic change.
    pub const REPLACE_RULESET: u8 = 11;
    /// Dump the flow table; the request has no attributes. Each reply
    /// message is one flow: the attributes of `ct_msg::FlowMsg`
    /// (`CT_ORIG`, `CT_REPLY`, `CT_ID`, `CT_PROTO_STATE`, `CT_STATUS`,
    /// `CT_TIMEOUT`, `CT_AGE`, `CT_MARK`, `CT_COUNTERS`).
    pub const GET_CT: u8 = 12;
    /// Delete one flow: `CT_ORIG` (or `CT_REPLY`), a nested
    /// [`ct_tuple`](super::ct_tuple). `ENOENT` if there is no such flow.
    pub const DEL_CT: u8 = 13;
    /// Delete every flow of the network namespace. No attributes.
    pub const FLUSH_CT: u8 = 14;
    /// Get the flow table's size and counters. Reply: `CT_COUNT`,
    /// `CT_LIMIT`, `CT_BUCKETS`, `CT_TIMEOUTS` (every key), `CT_STATS`.
    pub const GET_CT_STATS: u8 = 15;
    /// Set the most flows the table holds: `CT_LIMIT` (`u32`, not 0).
    pub const SET_CT_LIMIT: u8 = 16;
    /// Set one timeout: `CT_TIMEOUTS` with exactly one
    /// [`ct_timeout::ENTRY`](super::ct_timeout::ENTRY).
    pub const SET_CT_TIMEOUT: u8 = 17;
    /// A flow event, sent by the kernel only, to the multicast group
    /// [`CT_MCGRP`](super::CT_MCGRP): `CT_EVENT` plus the attributes of
    /// one flow as in a [`GET_CT`] dump.
    pub const CT_EVENT: u8 = 18;
    /// Switch the per-hook counters of `GET_STATUS` on or off for the
    /// namespace: `HOOK_COUNTING` (`u8`, 1 on, 0 off).
    pub const SET_HOOK_COUNTING: u8 = 19;
}

/// Name of the multicast group of the rnf family that carries
/// [`cmd::CT_EVENT`] messages.
pub const CT_MCGRP: &str = "conntrack";

/// Top-level attributes of rnf messages.
pub mod attr {
    /// Unused.
    pub const UNSPEC: u16 = 0;
    /// Module version (NUL-terminated string).
    pub const VERSION: u16 = 1;
    /// Cookie of the network namespace (`u64`).
    pub const NETNS_COOKIE: u16 = 2;
    /// Per-hook counters: nested list of
    /// [`hook_stats::ENTRY`](super::hook_stats::ENTRY).
    pub const HOOK_STATS: u16 = 3;
    /// Padding (reserved; rnf writes `u64` attributes unpadded).
    pub const PAD: u16 = 4;
    /// Table (`u8`, `rules::Table` as a number).
    pub const TABLE: u16 = 5;
    /// Chain name (NUL-terminated string, at most `rules::MAX_CHAIN_NAME`
    /// bytes).
    pub const CHAIN: u16 = 6;
    /// A rule (nested; the `rules` blob format).
    pub const RULE: u16 = 7;
    /// Rule handle (`u64`), stable for the life of the rule.
    pub const HANDLE: u16 = 8;
    /// Position in a chain (`u32`, 0-based).
    pub const POSITION: u16 = 9;
    /// Rule-set generation (`u64`): a writer that read generation N and
    /// sends it is refused (`ESTALE`) if another change came in between.
    pub const GENERATION: u16 = 10;
    /// Chain policy (`u8`, `rules::Policy` as a number).
    pub const POLICY: u16 = 11;
    /// Packet count (`u64`).
    pub const PACKETS: u16 = 12;
    /// Byte count (`u64`).
    pub const BYTES: u16 = 13;
    /// Rules of a chain: nested list of `rule_entry::ENTRY`.
    pub const RULES: u16 = 14;
    /// New chain name (string).
    pub const NEW_NAME: u16 = 15;
    /// A whole rule set (nested list of `ruleset::TABLE` entries).
    pub const RULESET: u16 = 16;
    /// Original-direction tuple of a flow (nested
    /// [`ct_tuple`](super::ct_tuple)).
    pub const CT_ORIG: u16 = 17;
    /// Reply-direction tuple of a flow (nested
    /// [`ct_tuple`](super::ct_tuple)).
    pub const CT_REPLY: u16 = 18;
    /// Flow id (`u32`), unique among the flows of the table.
    pub const CT_ID: u16 = 19;
    /// Protocol state (`u8`): `ct_tcp::TcpState` as a number for TCP, 0
    /// for other protocols.
    pub const CT_PROTO_STATE: u16 = 20;
    /// Flow status (`u32`, `ct::status` bits).
    pub const CT_STATUS: u16 = 21;
    /// Seconds until the flow expires (`u32`).
    pub const CT_TIMEOUT: u16 = 22;
    /// Connection mark (`u32`).
    pub const CT_MARK: u16 = 23;
    /// Packet and byte counters of both directions (nested
    /// [`ct_counters`](super::ct_counters)).
    pub const CT_COUNTERS: u16 = 24;
    /// Kind of flow event (`u8`, [`ct_event`](super::ct_event)).
    pub const CT_EVENT: u16 = 25;
    /// Number of flows in the table (`u32`).
    pub const CT_COUNT: u16 = 26;
    /// Most flows the table holds (`u32`).
    pub const CT_LIMIT: u16 = 27;
    /// Number of hash buckets (`u32`).
    pub const CT_BUCKETS: u16 = 28;
    /// Timeouts: nested list of
    /// [`ct_timeout::ENTRY`](super::ct_timeout::ENTRY).
    pub const CT_TIMEOUTS: u16 = 29;
    /// Table counters (nested [`ct_stats`](super::ct_stats)).
    pub const CT_STATS: u16 = 30;
    /// Seconds since the flow was created (`u32`).
    pub const CT_AGE: u16 = 31;
    /// One piece of a rule set too large for one [`RULESET`] (nested, the
    /// same format: a list of `ruleset::TABLE` entries). A request may carry
    /// many, each under 64 KiB; the kernel reads them in order as one rule
    /// set, where a table or chain entry that repeats the one just before
    /// it continues it (see `ruleset_msg::RulesetItems`).
    pub const RULESET_PART: u16 = 32;
    /// Whether hooks without rules are hooked to count packets for
    /// `GET_STATUS` (`u8`, 1 on, 0 off; on in a new namespace).
    pub const HOOK_COUNTING: u16 = 33;
    /// Highest attribute type.
    pub const MAX: u16 = 33;
}

/// Attributes inside [`attr::CT_ORIG`] and [`attr::CT_REPLY`]: one
/// direction of a flow, a `ct::Tuple`.
pub mod ct_tuple {
    /// Address family (`u8`: 2 IPv4, 10 IPv6, as `hooks::Family`).
    pub const FAMILY: u16 = 1;
    /// Transport protocol number (`u8`).
    pub const PROTO: u16 = 2;
    /// Source address (4 bytes for IPv4, 16 for IPv6, network order).
    pub const SRC: u16 = 3;
    /// Destination address, like [`SRC`].
    pub const DST: u16 = 4;
    /// Source port or ICMP identifier (`u16`, native endianness):
    /// `Tuple::src_port_or_icmp_id`.
    pub const SRC_PORT: u16 = 5;
    /// Destination port or ICMP `type << 8 | code` (`u16`, native
    /// endianness): `Tuple::dst_port_or_icmp_type_code`.
    pub const DST_PORT: u16 = 6;
}

/// Attributes inside [`attr::CT_COUNTERS`] (all `u64`).
pub mod ct_counters {
    /// Packets in the original direction.
    pub const ORIG_PACKETS: u16 = 1;
    /// Bytes in the original direction.
    pub const ORIG_BYTES: u16 = 2;
    /// Packets in the reply direction.
    pub const REPLY_PACKETS: u16 = 3;
    /// Bytes in the reply direction.
    pub const REPLY_BYTES: u16 = 4;
}

/// Attributes inside [`attr::CT_STATS`] (all `u64`, since the module was
/// loaded or the namespace created).
pub mod ct_stats {
    /// Flows inserted into the table.
    pub const INSERTED: u16 = 1;
    /// Flows removed because they timed out (garbage collection).
    pub const EXPIRED: u16 = 2;
    /// Unassured flows dropped early to make room.
    pub const EARLY_DROPS: u16 = 3;
    /// Packets dropped because the table was full with nothing droppable.
    pub const FULL_DROPS: u16 = 4;
    /// Packets whose ct state was invalid.
    pub const INVALID: u16 = 5;
    /// Flows removed by `DEL_CT`, `FLUSH_CT` or a TCP reset.
    pub const DELETED: u16 = 6;
    /// Packets dropped because NAT found no free tuple in its range (or no
    /// address to masquerade or redirect to). Optional on decode (0).
    pub const NAT_DROPS: u16 = 7;
}

/// Attributes inside [`attr::CT_TIMEOUTS`].
pub mod ct_timeout {
    /// One timeout (nested: [`KEY`], [`SECS`]).
    pub const ENTRY: u16 = 1;
    /// Which timeout (`u8`): the index of the key in `ct::TimeoutKey::ALL`.
    pub const KEY: u16 = 1;
    /// Seconds (`u32`, `1..=ct::MAX_TIMEOUT_SECS`).
    pub const SECS: u16 = 2;
}

/// Values of [`attr::CT_EVENT`].
pub mod ct_event {
    /// A flow was confirmed (inserted into the table).
    pub const NEW: u8 = 1;
    /// A flow changed state or status.
    pub const UPDATE: u8 = 2;
    /// A flow was removed.
    pub const DESTROY: u8 = 3;
}

/// Attributes of one rule in a listing (`attr::RULES`).
pub mod rule_entry {
    /// One rule (nested: `HANDLE`, `POSITION`, `PACKETS`, `BYTES`, `RULE`,
    /// using the top-level `attr` numbers).
    pub const ENTRY: u16 = 1;
}

/// The whole-rule-set format of `REPLACE_RULESET` (and `rnfctl save`).
pub mod ruleset {
    /// One table (nested: `attr::TABLE`, then `CHAIN` entries).
    pub const TABLE: u16 = 1;
    /// One chain inside a table (nested: `attr::CHAIN`, optional
    /// `attr::POLICY` for built-in chains, then `attr::RULE` entries in
    /// order).
    pub const CHAIN: u16 = 2;
}

/// Attributes inside [`attr::HOOK_STATS`].
pub mod hook_stats {
    /// One hook point (nested [`hook_stat`](super::hook_stat) attributes).
    pub const ENTRY: u16 = 1;
}

/// Attributes inside a [`hook_stats::ENTRY`].
pub mod hook_stat {
    /// [`Family`](crate::hooks::Family) (`u8`).
    pub const FAMILY: u16 = 1;
    /// [`Hook`](crate::hooks::Hook) (`u8`).
    pub const HOOK: u16 = 2;
    /// [`Stage`](crate::hooks::Stage) (`u8`).
    pub const STAGE: u16 = 3;
    /// Netfilter priority of the registration (`i32`).
    pub const PRIORITY: u16 = 4;
    /// Packets seen (`u64`).
    pub const PACKETS: u16 = 5;
    /// Bytes seen (`u64`).
    pub const BYTES: u16 = 6;
}

/// Counters of one hook point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookStat {
    /// Address family.
    pub family: Family,
    /// Netfilter hook.
    pub hook: Hook,
    /// Stage on the hook.
    pub stage: Stage,
    /// Netfilter priority the stage is registered at.
    pub priority: i32,
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen.
    pub bytes: u64,
}

impl HookStat {
    /// Writes this entry as a nested [`hook_stats::ENTRY`] attribute.
    pub fn encode(&self, w: &mut AttrWriter<'_>) {
        let nest = w.begin_nested(hook_stats::ENTRY);
        w.put_u8(hook_stat::FAMILY, self.family as u8);
        w.put_u8(hook_stat::HOOK, self.hook as u8);
        w.put_u8(hook_stat::STAGE, self.stage as u8);
        w.put_i32(hook_stat::PRIORITY, self.priority);
        w.put_u64(hook_stat::PACKETS, self.packets);
        w.put_u64(hook_stat::BYTES, self.bytes);
        w.end_nested(nest);
    }

    /// Decodes the payload of a [`hook_stats::ENTRY`] attribute. Unknown
    /// attributes are skipped; all six known ones are required.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut family = None;
        let mut hook = None;
        let mut stage = None;
        let mut priority = None;
        let mut packets = None;
        let mut bytes = None;
        for a in AttrIter::new(payload) {
            let a = a?;
            match a.ty {
                hook_stat::FAMILY => {
                    family = Some(Family::from_u8(a.u8()?).ok_or(WireError::BadValue)?);
                }
                hook_stat::HOOK => hook = Some(Hook::from_u8(a.u8()?).ok_or(WireError::BadValue)?),
                hook_stat::STAGE => {
                    stage = Some(Stage::from_u8(a.u8()?).ok_or(WireError::BadValue)?);
                }
                hook_stat::PRIORITY => priority = Some(a.i32()?),
                hook_stat::PACKETS => packets = Some(a.u64()?),
                hook_stat::BYTES => bytes = Some(a.u64()?),
                _ => {}
            }
        }
        Ok(Self {
            family: family.ok_or(WireError::Missing(hook_stat::FAMILY))?,
            hook: hook.ok_or(WireError::Missing(hook_stat::HOOK))?,
            stage: stage.ok_or(WireError::Missing(hook_stat::STAGE))?,
            priority: priority.ok_or(WireError::Missing(hook_stat::PRIORITY))?,
            packets: packets.ok_or(WireError::Missing(hook_stat::PACKETS))?,
            bytes: bytes.ok_or(WireError::Missing(hook_stat::BYTES))?,
        })
    }
}

/// Encodes the attributes of a [`cmd::GET_STATUS`] reply (everything after
/// the generic netlink header).
///
/// Call it with [`AttrWriter::measure`] to size the reply, then again with
/// the reply buffer; check the result with [`AttrWriter::finish`].
pub fn encode_status(
    w: &mut AttrWriter<'_>,
    version: &str,
    netns_cookie: u64,
    stats: impl Iterator<Item = HookStat>,
) {
    w.put_str(attr::VERSION, version);
    w.put_u64(attr::NETNS_COOKIE, netns_cookie);
    let nest = w.begin_nested(attr::HOOK_STATS);
    for s in stats {
        s.encode(w);
    }
    w.end_nested(nest);
}

/// A decoded [`cmd::GET_STATUS`] reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusReply<'a> {
    /// Module version.
    pub version: &'a str,
    /// Cookie of the module's network namespace.
    pub netns_cookie: u64,
    /// Whether the namespace counts packets at hooks without rules
    /// (`HOOK_COUNTING`; `None` from a module that does not say).
    pub hook_counting: Option<bool>,
    hooks: &'a [u8],
}

impl<'a> StatusReply<'a> {
    /// Decodes the attributes of a reply (the bytes after the generic
    /// netlink header). Unknown attributes are skipped; `VERSION`,
    /// `NETNS_COOKIE` and `HOOK_STATS` are required.
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut version = None;
        let mut cookie = None;
        let mut hooks = None;
        let mut hook_counting = None;
        for a in AttrIter::new(payload) {
            let a = a?;
            match a.ty {
                attr::VERSION => version = Some(a.str()?),
                attr::NETNS_COOKIE => cookie = Some(a.u64()?),
                attr::HOOK_COUNTING => hook_counting = Some(a.u8()? != 0),
                attr::HOOK_STATS => hooks = Some(a.payload),
                _ => {}
            }
        }
        Ok(Self {
            version: version.ok_or(WireError::Missing(attr::VERSION))?,
            netns_cookie: cookie.ok_or(WireError::Missing(attr::NETNS_COOKIE))?,
            hook_counting,
            hooks: hooks.ok_or(WireError::Missing(attr::HOOK_STATS))?,
        })
    }

    /// The per-hook counters, in the order the kernel sent them. Entries of
    /// unknown type are skipped; iteration stops after the first error.
    pub fn hooks(&self) -> impl Iterator<Item = Result<HookStat, WireError>> + 'a {
        let mut failed = false;
        AttrIter::new(self.hooks).filter_map(move |a| {
            if failed {
                return None;
            }
            let r = match a {
                Ok(a) if a.ty == hook_stats::ENTRY => HookStat::decode(a.payload),
                Ok(_) => return None,
                Err(e) => Err(e),
            };
            failed = r.is_err();
            Some(r)
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{vec, vec::Vec};

    fn stat(i: u64) -> HookStat {
        HookStat {
            family: if i % 2 == 0 {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            hook: Hook::LocalOut,
            stage: Stage::Filter,
            priority: Stage::Filter.priority(),
            packets: i * 10 + 1,
            bytes: u64::MAX - i,
        }
    }

    fn stats(n: u64) -> impl Iterator<Item = HookStat> {
        (0..n).map(stat)
    }

    #[test]
    fn attribute_layout() {
        let mut buf = [0xaau8; 32];
        let mut w = AttrWriter::new(&mut buf);
        w.put_u8(7, 0x11);
        w.put_str(8, "ab");
        assert_eq!(w.finish(), Ok(16));
        assert_eq!(&buf[0..2], &5u16.to_ne_bytes());
        assert_eq!(&buf[2..4], &7u16.to_ne_bytes());
        assert_eq!(&buf[4..8], &[0x11, 0, 0, 0]); // padding zeroed
        assert_eq!(&buf[8..10], &7u16.to_ne_bytes()); // "ab\0" + header
        assert_eq!(&buf[12..16], b"ab\0\0");
        assert_eq!(buf[16], 0xaa); // nothing written past the end
    }

    #[test]
    fn nested_lengths() {
        let mut buf = [0u8; 64];
        let mut w = AttrWriter::new(&mut buf);
        let outer = w.begin_nested(3);
        w.put_u32(1, 5);
        let inner = w.begin_nested(1);
        w.put_u8(2, 9);
        w.end_nested(inner);
        w.end_nested(outer);
        let n = w.finish().unwrap();
        assert_eq!(n, 4 + 8 + 4 + 8);
        let top: Vec<_> = AttrIter::new(&buf[..n]).collect();
        assert_eq!(top.len(), 1);
        let outer = top[0].unwrap();
        assert_eq!(outer.ty, 3);
        assert!(outer.nested);
        assert_eq!(outer.payload.len(), 20);
        assert_eq!(
            u16::from_ne_bytes([buf[2], buf[3]]),
            3 | NLA_F_NESTED,
            "nested flag on the wire"
        );
        let kids: Vec<_> = outer.nested_iter().map(|a| a.unwrap()).collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].u32(), Ok(5));
        assert!(kids[1].nested);
        assert_eq!(kids[1].payload.len(), 8);
        assert_eq!(kids[1].nested_iter().next().unwrap().unwrap().u8(), Ok(9));
    }

    #[test]
    fn status_round_trip() {
        let mut m = AttrWriter::measure();
        encode_status(&mut m, "0.1.0", 4097, stats(28));
        let need = m.finish().unwrap();
        let mut buf = vec![0u8; need];
        let mut w = AttrWriter::new(&mut buf);
        encode_status(&mut w, "0.1.0", 4097, stats(28));
        assert_eq!(w.finish(), Ok(need));

        let r = StatusReply::decode(&buf).unwrap();
        assert_eq!(r.version, "0.1.0");
        assert_eq!(r.netns_cookie, 4097);
        assert_eq!(r.hook_counting, None);
        let got: Vec<_> = r.hooks().map(|h| h.unwrap()).collect();
        let want: Vec<_> = stats(28).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn status_says_whether_hooks_count() {
        for on in [false, true] {
            let mut buf = vec![0u8; 4096];
            let mut w = AttrWriter::new(&mut buf);
            encode_status(&mut w, "0.1.0", 1, stats(2));
            w.put_u8(attr::HOOK_COUNTING, u8::from(on));
            let n = w.finish().unwrap();
            let r = StatusReply::decode(&buf[..n]).unwrap();
            assert_eq!(r.hook_counting, Some(on));
            assert_eq!(r.hooks().count(), 2);
        }
    }

    #[test]
    fn too_small_buffer_overflows_and_still_measures() {
        let mut m = AttrWriter::measure();
        encode_status(&mut m, "0.1.0", 1, stats(3));
        let need = m.len();
        let mut buf = vec![0u8; need - 1];
        let mut w = AttrWriter::new(&mut buf);
        encode_status(&mut w, "0.1.0", 1, stats(3));
        assert_eq!(w.len(), need);
        assert_eq!(w.finish(), Err(WireError::Overflow));
    }

    #[test]
    fn oversized_nest_and_attr_are_errors() {
        let mut m = AttrWriter::measure();
        let n = m.begin_nested(1);
        for _ in 0..6000 {
            m.put_u64(2, 0);
        }
        m.end_nested(n);
        assert_eq!(m.finish(), Err(WireError::Overflow));

        let big = vec![0u8; 70_000];
        let mut m = AttrWriter::measure();
        m.put_bytes(1, &big);
        assert!(m.len() >= 70_004);
        assert_eq!(m.finish(), Err(WireError::Overflow));
    }

    #[test]
    fn unknown_attributes_are_skipped() {
        let mut buf = [0u8; 256];
        let mut w = AttrWriter::new(&mut buf);
        w.put_u32(99, 1);
        w.put_str(attr::VERSION, "9.9");
        w.put_u64(attr::NETNS_COOKIE, 7);
        let n = w.begin_nested(attr::HOOK_STATS);
        w.put_u8(77, 0); // unknown entry type
        let e = w.begin_nested(hook_stats::ENTRY);
        w.put_u8(hook_stat::FAMILY, 10);
        w.put_u8(hook_stat::HOOK, 4);
        w.put_u8(hook_stat::STAGE, 4);
        w.put_u32(50, 50); // unknown field
        w.put_i32(hook_stat::PRIORITY, 100);
        w.put_u64(hook_stat::PACKETS, 2);
        w.put_u64(hook_stat::BYTES, 3);
        w.end_nested(e);
        w.end_nested(n);
        let len = w.finish().unwrap();
        let r = StatusReply::decode(&buf[..len]).unwrap();
        assert_eq!(r.version, "9.9");
        let hooks: Vec<_> = r.hooks().collect();
        assert_eq!(
            hooks,
            vec![Ok(HookStat {
                family: Family::Ipv6,
                hook: Hook::PostRouting,
                stage: Stage::NatSrc,
                priority: 100,
                packets: 2,
                bytes: 3,
            })]
        );
    }

    #[test]
    fn missing_and_bad_attributes() {
        let mut buf = [0u8; 64];
        let mut w = AttrWriter::new(&mut buf);
        w.put_str(attr::VERSION, "1");
        w.put_u64(attr::NETNS_COOKIE, 7);
        let len = w.finish().unwrap();
        assert_eq!(
            StatusReply::decode(&buf[..len]),
            Err(WireError::Missing(attr::HOOK_STATS))
        );

        let mut w = AttrWriter::new(&mut buf);
        w.put_str(attr::VERSION, "1");
        w.put_u32(attr::NETNS_COOKIE, 7); // wrong size
        let len = w.finish().unwrap();
        assert_eq!(StatusReply::decode(&buf[..len]), Err(WireError::BadLength));

        let mut w = AttrWriter::new(&mut buf);
        let e = w.begin_nested(hook_stats::ENTRY);
        w.put_u8(hook_stat::FAMILY, 3); // no such family
        w.end_nested(e);
        let len = w.finish().unwrap();
        let r = StatusReply {
            version: "",
            netns_cookie: 0,
            hook_counting: None,
            hooks: &buf[..len],
        };
        assert_eq!(
            r.hooks().collect::<Vec<_>>(),
            vec![Err(WireError::BadValue)]
        );
    }

    #[test]
    fn iterator_errors() {
        // Header claims more than there is.
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&12u16.to_ne_bytes());
        let v: Vec<_> = AttrIter::new(&b).collect();
        assert_eq!(v, vec![Err(WireError::Truncated)]);
        // nla_len shorter than the header.
        b[0..2].copy_from_slice(&2u16.to_ne_bytes());
        let v: Vec<_> = AttrIter::new(&b).collect();
        assert_eq!(v, vec![Err(WireError::BadLength)]);
        // Trailing garbage after a good attribute.
        let mut b = [0u8; 6];
        b[0..2].copy_from_slice(&4u16.to_ne_bytes());
        let v: Vec<_> = AttrIter::new(&b).collect();
        assert_eq!(v.len(), 2);
        assert!(v[0].is_ok());
        assert_eq!(v[1], Err(WireError::Truncated));
        // Last attribute without padding is accepted.
        let mut b = [0u8; 5];
        b[0..2].copy_from_slice(&5u16.to_ne_bytes());
        b[4] = 3;
        let v: Vec<_> = AttrIter::new(&b).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].unwrap().u8(), Ok(3));
    }

    #[test]
    fn string_decoding() {
        let a = Attr {
            ty: 1,
            nested: false,
            payload: b"abc\0",
        };
        assert_eq!(a.str(), Ok("abc"));
        let a = Attr {
            payload: b"abc",
            ..a
        };
        assert_eq!(a.str(), Ok("abc"));
        let a = Attr {
            payload: b"\xff\0",
            ..a
        };
        assert_eq!(a.str(), Err(WireError::BadUtf8));
    }
}
