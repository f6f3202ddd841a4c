// SPDX-License-Identifier: GPL-2.0-only

//! TCP connection tracking, modelled on Linux 6.12's
//! `net/netfilter/nf_conntrack_proto_tcp.c`.
//!
//! The tracker sits in the middle: it sees every segment of both
//! directions, but a segment it sees may still be lost before it arrives,
//! so it guesses each end's state. It has three parts, as in Linux:
//!
//! - the **state table** ([`TcpState`], indexed by direction, segment kind
//!   and state), including simultaneous open (`SYN_SENT2`), TIME_WAIT
//!   reopening by a new SYN, and "ignored" segments that may be valid for
//!   the ends while the tracker is out of sync (with the resync when a
//!   SYN/ACK answers an ignored SYN);
//! - **window tracking** per direction ([`TcpSender`]: `td_end`,
//!   `td_maxend`, `td_maxwin`, `td_scale`, flags), fed by the window scale
//!   and SACK-permitted options of the SYNs and by SACK blocks, and the
//!   in-window check of `tcp_in_window()` with its four bounds, its
//!   tolerance for retransmissions and for senders that overshoot the
//!   window, and the "be liberal" option;
//! - **flag validation** (`tcp_valid_flags[]`) and RST checks (an RST
//!   whose sequence number is behind what the peer acknowledged is
//!   invalid; one that is merely inexact keeps the state so the ends can
//!   do their RFC 5961 challenge ACK).
//!
//! Not modelled: NAT sequence adjustment (`nf_ct_seq_offset`, rnf has no
//! helpers that resize payloads), SYN proxy, checksum validation (the
//! kernel side checks or trusts checksums), and per-flow timeout policies.
//!
//! Use: [`TcpConn::new`] for the first segment of a flow that has none
//! (`tcp_new()`), then [`TcpConn::on_segment`] for that same segment and
//! every later one (`nf_conntrack_tcp_packet()`).

use crate::ct::{CtState, Direction};
use crate::packet::{tcp_flag, PacketFacts, L4};

/// TCP tracking states (`enum tcp_conntrack`, same numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// No segment seen yet (`NONE`).
    None = 0,
    /// SYN seen (`SYN_SENT`).
    SynSent = 1,
    /// SYN/ACK seen (`SYN_RECV`).
    SynRecv = 2,
    /// ACK of the SYN/ACK seen (`ESTABLISHED`).
    Established = 3,
    /// FIN seen (`FIN_WAIT`).
    FinWait = 4,
    /// ACK after the FIN seen (`CLOSE_WAIT`).
    CloseWait = 5,
    /// FIN seen from both sides (`LAST_ACK`).
    LastAck = 6,
    /// Last ACK seen (`TIME_WAIT`).
    TimeWait = 7,
    /// Closed by RST (`CLOSE`).
    Close = 8,
    /// SYN seen in the reply direction too: simultaneous open
    /// (`SYN_SENT2`).
    SynSent2 = 9,
}

/// Number of [`TcpState`]s.
pub const TCP_STATES: usize = 10;

impl TcpState {
    /// Every state, in numeric order.
    pub const ALL: [TcpState; TCP_STATES] = [
        Self::None,
        Self::SynSent,
        Self::SynRecv,
        Self::Established,
        Self::FinWait,
        Self::CloseWait,
        Self::LastAck,
        Self::TimeWait,
        Self::Close,
        Self::SynSent2,
    ];

    /// Name as `conntrack -L` prints it (`tcp_conntrack_names[]`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::Established => "ESTABLISHED",
            Self::FinWait => "FIN_WAIT",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::SynSent2 => "SYN_SENT2",
        }
    }

    /// The state with number `v`.
    pub const fn from_u8(v: u8) -> Option<TcpState> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::SynSent),
            2 => Some(Self::SynRecv),
            3 => Some(Self::Established),
            4 => Some(Self::FinWait),
            5 => Some(Self::CloseWait),
            6 => Some(Self::LastAck),
            7 => Some(Self::TimeWait),
            8 => Some(Self::Close),
            9 => Some(Self::SynSent2),
            _ => None,
        }
    }
}

/// What a segment is, for the state table (`enum tcp_bit_set`); decided by
/// `get_conntrack_index()`: RST first, then SYN (with or without ACK), FIN,
/// ACK, nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    /// SYN without ACK.
    Syn = 0,
    /// SYN with ACK.
    SynAck = 1,
    /// FIN (with or without ACK).
    Fin = 2,
    /// ACK, none of SYN, FIN, RST.
    Ack = 3,
    /// RST.
    Rst = 4,
    /// None of RST, SYN, FIN, ACK.
    None = 5,
}

impl SegmentKind {
    /// The kind of a segment with TCP flags `flags`.
    pub const fn of(flags: u8) -> SegmentKind {
        if flags & tcp_flag::RST != 0 {
            Self::Rst
        } else if flags & tcp_flag::SYN != 0 {
            if flags & tcp_flag::ACK != 0 {
                Self::SynAck
            } else {
                Self::Syn
            }
        } else if flags & tcp_flag::FIN != 0 {
            Self::Fin
        } else if flags & tcp_flag::ACK != 0 {
            Self::Ack
        } else {
            Self::None
        }
    }
}

/// Whether a flag combination is one a TCP may send (`tcp_valid_flags[]`):
/// SYN, SYN|ACK, RST, RST|ACK, FIN|ACK, ACK, each optionally with URG
/// except SYN|ACK and the RSTs; PSH, ECE and CWR are ignored. Anything else
/// (SYN|FIN, SYN|RST, FIN without ACK, no flags at all: scans and
/// fingerprinting) is invalid.
pub const fn valid_flags(flags: u8) -> bool {
    use tcp_flag::*;
    let f = flags & !(ECE | CWR | PSH);
    f == SYN
        || f == SYN | URG
        || f == SYN | ACK
        || f == RST
        || f == RST | ACK
        || f == FIN | ACK
        || f == FIN | ACK | URG
        || f == ACK
        || f == ACK | URG
}

/// Per-direction flags (`IP_CT_TCP_FLAG_*`, same values).
pub mod sender_flag {
    /// The sender's SYN carried the window scale option.
    pub const WINDOW_SCALE: u8 = 0x01;
    /// The sender's SYN carried SACK-permitted.
    pub const SACK_PERM: u8 = 0x02;
    /// This side sent the first FIN.
    pub const CLOSE_INIT: u8 = 0x04;
    /// Window checks are not enforced for this side (set for flows picked
    /// up mid-stream, whose window scale is unknown).
    pub const BE_LIBERAL: u8 = 0x08;
    /// This side has sent data the other has not acknowledged yet.
    pub const DATA_UNACKNOWLEDGED: u8 = 0x10;
    /// `td_maxack` holds a value.
    pub const MAXACK_SET: u8 = 0x20;
    /// (In [`TcpConn`](super::TcpConn)'s last-packet flags.) A SYN was let through in
    /// LAST_ACK; the peer may answer with an RFC 5961 challenge ACK.
    pub const EXP_CHALLENGE_ACK: u8 = 0x40;
    /// (In [`TcpConn`](super::TcpConn)'s last-packet flags.) Simultaneous open seen.
    pub const SIMULTANEOUS_OPEN: u8 = 0x80;
}

use sender_flag as sf;

/// Window tracking of one direction (`struct ip_ct_tcp_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSender {
    /// Highest `seq + len` seen from this side.
    pub td_end: u32,
    /// Highest right edge of the other side's advertised window
    /// (`ack + win`) seen: this side may send up to here.
    pub td_maxend: u32,
    /// Largest window this side has advertised (scaled), at least 1 once
    /// initialised; 0 means nothing is known about this side yet.
    pub td_maxwin: u32,
    /// Highest ACK this side has sent (valid with `MAXACK_SET`).
    pub td_maxack: u32,
    /// Window scale this side announced (0 unless both SYNs carried the
    /// option).
    pub td_scale: u8,
    /// [`sender_flag`] bits.
    pub flags: u8,
}

impl TcpSender {
    /// `nf_ct_tcp_state_reset()`: forget everything but BE_LIBERAL.
    fn reset(&mut self) {
        *self = TcpSender {
            flags: self.flags & sf::BE_LIBERAL,
            ..TcpSender::default()
        };
    }
}

/// The parts of a TCP segment the tracker reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with ACK).
    pub ack: u32,
    /// Window field, unscaled.
    pub window: u16,
    /// Flags byte ([`tcp_flag`] bits).
    pub flags: u8,
    /// Payload length: segment length minus the TCP header.
    pub data_len: u32,
    /// The option bytes (header bytes 20 to `doff * 4`).
    pub options: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    match b.get(at..at.checked_add(4)?)? {
        [a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?)? {
        [a, b] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

impl<'a> TcpSegment<'a> {
    /// Reads a segment from its TCP header bytes `hdr` (at least the
    /// `doff * 4` header bytes; more are ignored) and its payload length.
    /// `None` for a header cut short or a data offset below 5, which Linux
    /// (`tcp_error()`, "truncated packet") treats as invalid.
    pub fn parse(hdr: &'a [u8], data_len: u32) -> Option<TcpSegment<'a>> {
        let doff = usize::from(hdr.get(12)? >> 4) * 4;
        if doff < 20 {
            return None;
        }
        Some(TcpSegment {
            seq: be32(hdr, 4)?,
            ack: be32(hdr, 8)?,
            window: be16(hdr, 14)?,
            flags: *hdr.get(13)?,
            data_len,
            options: hdr.get(20..doff)?,
        })
    }

    /// Reads the segment of a parsed packet: `pkt` holds the packet from
    /// the IP header on (at least through the TCP header), and the payload
    /// length follows from the IP length in `facts`.
    pub fn from_packet(facts: &PacketFacts, pkt: &'a [u8]) -> Option<TcpSegment<'a>> {
        if !matches!(facts.l4, L4::Tcp { .. }) {
            return None;
        }
        let hdr = pkt.get(facts.l4_offset..)?;
        let doff = u32::from(hdr.get(12)? >> 4) * 4;
        let data_len = facts
            .total_len
            .checked_sub(u32::try_from(facts.l4_offset).ok()?)?
            .checked_sub(doff)?;
        Self::parse(hdr, data_len)
    }

    /// Sequence space the segment occupies: `seq + len`, plus one for SYN
    /// and one for FIN (`segment_seq_plus_len()`).
    pub fn end(&self) -> u32 {
        let mut end = self.seq.wrapping_add(self.data_len);
        if self.flags & tcp_flag::SYN != 0 {
            end = end.wrapping_add(1);
        }
        if self.flags & tcp_flag::FIN != 0 {
            end = end.wrapping_add(1);
        }
        end
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// TCP option kinds the tracker reads.
mod opt {
    pub(super) const EOL: u8 = 0;
    pub(super) const NOP: u8 = 1;
    pub(super) const WINDOW: u8 = 3;
    pub(super) const SACK_PERM: u8 = 4;
    pub(super) const SACK: u8 = 5;
    pub(super) const TIMESTAMP: u8 = 8;
}

/// Largest window scale (RFC 7323, `TCP_MAX_WSCALE`).
pub const TCP_MAX_WSCALE: u8 = 14;

/// Walks TCP options, calling `f(kind, body)` for each option with a
/// length; stops at EOL, a length below 2 or one running past the end
/// (Linux does not parse partial or "silly" options).
fn walk_options(mut rest: &[u8], mut f: impl FnMut(u8, &[u8]) -> bool) {
    loop {
        match rest {
            [] | [opt::EOL, ..] => return,
            [opt::NOP, tail @ ..] => rest = tail,
            [kind, len, ..] => {
                let len = usize::from(*len);
                if len < 2 {
                    return;
                }
                let (Some(body), Some(tail)) = (rest.get(2..len), rest.get(len..)) else {
                    return;
                };
                if !f(*kind, body) {
                    return;
                }
                rest = tail;
            }
            [_] => return,
        }
    }
}

/// `tcp_options()`: reads window scale and SACK-permitted from a SYN's
/// options into `sender`. With no options at all it changes nothing, as
/// Linux returns before resetting.
fn read_syn_options(options: &[u8], sender: &mut TcpSender) {
    if options.is_empty() {
        return;
    }
    sender.td_scale = 0;
    sender.flags &= sf::BE_LIBERAL;
    walk_options(options, |kind, body| {
        match (kind, body) {
            (opt::SACK_PERM, []) => sender.flags |= sf::SACK_PERM,
            (opt::WINDOW, [scale]) => {
                sender.td_scale = (*scale).min(TCP_MAX_WSCALE);
                sender.flags |= sf::WINDOW_SCALE;
            }
            _ => {}
        }
        true
    });
}

/// `tcp_sack()`: the highest right edge among the SACK blocks, or `sack`
/// if none is higher. Only the first SACK option counts.
fn highest_sack(options: &[u8], mut sack: u32) -> u32 {
    // Linux's fast path: exactly NOP NOP TIMESTAMP(10) has no SACK.
    if let [opt::NOP, opt::NOP, opt::TIMESTAMP, 10, _, _, _, _, _, _, _, _] = options {
        return sack;
    }
    walk_options(options, |kind, body| {
        if kind == opt::SACK && !body.is_empty() && body.len() % 8 == 0 {
            let mut blocks = body;
            while let Some((block, tail)) = blocks.split_first_chunk::<8>() {
                // A block is left edge, right edge; the right edge counts.
                let [_, _, _, _, a, b, c, d] = *block;
                let right = u32::from_be_bytes([a, b, c, d]);
                if after(right, sack) {
                    sack = right;
                }
                blocks = tail;
            }
            return false;
        }
        true
    });
    sack
}

/// `before(a, b)`: `a` precedes `b` in sequence space (mod 2^32).
pub const fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `after(a, b)`: `a` follows `b` in sequence space.
pub const fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// `MAXACKWINCONST`: the least slack allowed below the receiver's
/// `td_end` for an ACK.
const MAX_ACK_WIN_CONST: u32 = 66000;

/// `MAXACKWINDOW(sender)`.
fn max_ack_window(sender: &TcpSender) -> u32 {
    sender.td_maxwin.max(MAX_ACK_WIN_CONST)
}

/// Tracker options (Linux's `net.netfilter.nf_conntrack_tcp_*` sysctls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// `nf_conntrack_tcp_be_liberal` (default off): out-of-window segments
    /// are accepted instead of marked invalid. Invalid flags and invalid
    /// RSTs are still caught.
    pub be_liberal: bool,
    /// `nf_conntrack_tcp_loose` (default on): a flow may be picked up from
    /// a plain ACK segment in the middle of a connection (after a reboot
    /// of the firewall, or a route change), with window checks relaxed
    /// until the flow's SYNs are seen. Off: only a SYN creates a flow.
    pub loose: bool,
    /// `nf_conntrack_tcp_max_retrans` (default 3): after this many
    /// identical retransmissions the shorter `retrans` timeout applies.
    pub max_retrans: u8,
    /// `nf_conntrack_tcp_ignore_invalid_rst` (default off): an RST behind
    /// the acknowledged data is accepted instead of marked invalid.
    pub ignore_invalid_rst: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            be_liberal: false,
            loose: true,
            max_retrans: 3,
            ignore_invalid_rst: false,
        }
    }
}

/// What the tracker did with a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpAction {
    /// In window and valid for the state: the state is updated
    /// (`NF_ACCEPT` after `in_window`).
    Accept,
    /// Let through as part of the flow but not used to update it: it may
    /// be valid for the ends while the tracker is out of sync, or is a
    /// harmless retransmission (`NFCT_TCP_IGNORE` / `sIG`). The timeout is
    /// not refreshed.
    Ignore(&'static str),
    /// Not part of the flow as tracked: the packet's `ct state` is
    /// INVALID and the flow is unchanged (`-NF_ACCEPT`).
    Invalid(&'static str),
    /// A SYN reopens a closed (TIME_WAIT, CLOSE) connection: delete the
    /// flow and process the packet again as the first of a new flow
    /// (`nf_ct_kill()` then `-NF_REPEAT`).
    Reopen,
}

/// What decides the timeout a segment sets; turned into seconds by
/// [`Timeouts::tcp_refresh`](crate::ct::Timeouts::tcp_refresh).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRefresh {
    /// The state after the segment.
    pub state: TcpState,
    /// At least `max_retrans` identical retransmissions were seen.
    pub retrans_exceeded: bool,
    /// The segment is an RST.
    pub rst: bool,
    /// Either side has data in flight not acknowledged.
    pub data_unacknowledged: bool,
    /// The last window seen was zero.
    pub zero_window: bool,
    /// The flow has not seen a reply (picked up mid-stream): at most the
    /// `unacknowledged` timeout.
    pub cap_unacknowledged: bool,
}

/// The outcome of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpVerdict {
    /// What was done.
    pub action: TcpAction,
    /// State before the segment.
    pub old_state: TcpState,
    /// State after it.
    pub new_state: TcpState,
    /// The packet's `ct state` (NEW or ESTABLISHED, or INVALID when
    /// [`TcpAction::Invalid`]), decided as `nf_conntrack_in()` does before
    /// the segment is tracked.
    pub ct_state: CtState,
    /// `Some` when the flow's timeout is to be set from now; `None` leaves
    /// it (ignored segments, and retransmitted SYNs before any reply, so
    /// that port reuse cannot keep an unanswered flow alive forever).
    pub refresh: Option<TcpRefresh>,
    /// The flow became assured with this segment (`IPS_ASSURED`): it saw
    /// the handshake complete, or a valid answer after a mid-stream pickup.
    pub became_assured: bool,
    /// Delete the flow now: an RST was the only answer to it (Linux kills
    /// such flows at once, a common case not worth keeping for 10 s).
    pub destroy: bool,
    /// An out-of-window FIN or RST answered one from the other side on an
    /// assured flow: the ends and the tracker are out of sync, so if more
    /// than 120 s remain, lower the timeout to `unacknowledged`
    /// (`nf_tcp_handle_invalid()`).
    pub lower_timeout: bool,
}

/// Next state in the transition table: a state, `sIG` or `sIV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    To(TcpState),
    Ignore,
    Invalid,
}

/// The transition table `tcp_conntracks[dir][kind][state]` of Linux 6.12.
/// Columns: NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT,
/// LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2.
const TABLE: [[[Next; TCP_STATES]; 6]; 2] = {
    use Next::{Ignore as IG, Invalid as IV};
    use TcpState as S;
    const SS: Next = Next::To(S::SynSent);
    const SR: Next = Next::To(S::SynRecv);
    const ES: Next = Next::To(S::Established);
    const FW: Next = Next::To(S::FinWait);
    const CW: Next = Next::To(S::CloseWait);
    const LA: Next = Next::To(S::LastAck);
    const TW: Next = Next::To(S::TimeWait);
    const CL: Next = Next::To(S::Close);
    const S2: Next = Next::To(S::SynSent2);
    [
        // ORIGINAL
        [
            // syn: new connection, retransmitted SYN, reopen from TIME_WAIT
            // or CLOSE (RFC 1122); elsewhere ignored: the receiver will RST
            // it, or we hold a dead connection.
            [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
            // synack: only in simultaneous open.
            [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
            // fin: not before the SYN/ACK.
            [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
            // ack: NONE -> ESTABLISHED is the mid-stream pickup.
            [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
            // rst
            [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
            // none
            [IV; TCP_STATES],
        ],
        // REPLY
        [
            // syn: simultaneous open; in TIME_WAIT the server may have
            // switched role.
            [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
            // synack: standard open; later ones are retransmissions.
            [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
            // fin
            [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
            // ack: in SYN_SENT may be a half-open connection's answer.
            [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
            // rst
            [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
            // none
            [IV; TCP_STATES],
        ],
    ]
};

fn next_state(dir: Direction, kind: SegmentKind, state: TcpState) -> Next {
    TABLE
        .get(dir.index())
        .and_then(|d| d.get(kind as usize))
        .and_then(|k| k.get(state as usize))
        .copied()
        .unwrap_or(Next::Invalid)
}

/// What the tracker remembers of the last segment (`last_*` fields of
/// `struct ip_ct_tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LastSeen {
    dir: Direction,
    index: SegmentKind,
    seq: u32,
    ack: u32,
    end: u32,
    win: u16,
    wscale: u8,
    flags: u8,
}

/// Result of the window check.
enum Window {
    Accept,
    Ignore(&'static str),
    Invalid(&'static str),
}

/// The TCP part of one tracked flow (`struct ip_ct_tcp` plus the
/// `IPS_SEEN_REPLY` and `IPS_ASSURED` status bits it depends on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConn {
    state: TcpState,
    seen: [TcpSender; 2],
    last: LastSeen,
    retrans: u8,
    seen_reply: bool,
    assured: bool,
    cfg: TcpConfig,
}

impl TcpConn {
    /// Whether a segment may create a flow under `cfg`: a SYN without ACK,
    /// or with `loose` a plain ACK (mid-stream pickup). SYN/ACK, FIN, RST
    /// and invalid flag combinations never create one.
    pub fn may_create(seg: &TcpSegment<'_>, cfg: &TcpConfig) -> bool {
        valid_flags(seg.flags)
            && match SegmentKind::of(seg.flags) {
                SegmentKind::Syn => true,
                SegmentKind::Ack => cfg.loose,
                _ => false,
            }
    }

    /// Starts tracking a flow from its first segment (`tcp_new()`), seen in
    /// the original direction. Then call [`on_segment`](Self::on_segment)
    /// with the same segment, as Linux does.
    ///
    /// A SYN records the client's sequence space and options. A plain ACK,
    /// with `cfg.loose`, picks up a connection whose start was not seen:
    /// the tracker takes the segment's sequence and window as they are and
    /// sets BE_LIBERAL and SACK-permitted on both sides, because the window
    /// scale of such a flow is unknown.
    pub fn new(seg: &TcpSegment<'_>, cfg: TcpConfig) -> Result<TcpConn, &'static str> {
        if !valid_flags(seg.flags) {
            return Err("invalid tcp flag combination");
        }
        let kind = SegmentKind::of(seg.flags);
        let mut seen = [TcpSender::default(); 2];
        let end = seg.end();
        let win = u32::from(seg.window).max(1);
        match next_state(Direction::Original, kind, TcpState::None) {
            Next::To(TcpState::SynSent) => {
                seen[0] = TcpSender {
                    td_end: end,
                    td_maxend: end,
                    td_maxwin: win,
                    ..TcpSender::default()
                };
                read_syn_options(seg.options, &mut seen[0]);
            }
            Next::To(_) if !cfg.loose => return Err("mid-stream pickup is disabled"),
            Next::To(_) => {
                let flags = sf::SACK_PERM | sf::BE_LIBERAL;
                seen[0] = TcpSender {
                    td_end: end,
                    td_maxend: end.wrapping_add(win),
                    td_maxwin: win,
                    flags,
                    ..TcpSender::default()
                };
                seen[1].flags = flags;
            }
            _ => return Err("segment cannot start a connection"),
        }
        Ok(TcpConn {
            state: TcpState::None,
            seen,
            last: LastSeen {
                dir: Direction::Original,
                index: SegmentKind::None,
                seq: 0,
                ack: 0,
                end: 0,
                win: 0,
                wscale: 0,
                flags: 0,
            },
            retrans: 0,
            seen_reply: false,
            assured: false,
            cfg,
        })
    }

    /// Current state.
    pub const fn state(&self) -> TcpState {
        self.state
    }

    /// Whether a segment in the reply direction has been seen
    /// (`IPS_SEEN_REPLY`).
    pub const fn seen_reply(&self) -> bool {
        self.seen_reply
    }

    /// Whether the flow is assured (`IPS_ASSURED`): the handshake completed
    /// (or a picked-up flow was answered). Assured flows are not dropped
    /// early when the table is full.
    pub const fn assured(&self) -> bool {
        self.assured
    }

    /// Window tracking of the side that sends in `dir`.
    pub fn sender(&self, dir: Direction) -> &TcpSender {
        match dir {
            Direction::Original => &self.seen[0],
            Direction::Reply => &self.seen[1],
        }
    }

    /// Options in force for this flow.
    pub const fn config(&self) -> &TcpConfig {
        &self.cfg
    }

    /// Whether the flow may be dropped early when the table is full even
    /// though assured: it is closing (`tcp_can_early_drop()`).
    pub const fn can_early_drop(&self) -> bool {
        matches!(
            self.state,
            TcpState::FinWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
                | TcpState::CloseWait
        )
    }

    /// `nf_conntrack_tcp_established()`.
    fn established(&self) -> bool {
        self.state == TcpState::Established && self.assured
    }

    /// Tracks one segment travelling in `dir` (`nf_conntrack_tcp_packet()`).
    pub fn on_segment(&mut self, dir: Direction, seg: &TcpSegment<'_>) -> TcpVerdict {
        let mut v = TcpVerdict {
            action: TcpAction::Accept,
            old_state: self.state,
            new_state: self.state,
            ct_state: CtState::for_packet(dir, self.seen_reply),
            refresh: None,
            became_assured: false,
            destroy: false,
            lower_timeout: false,
        };
        if !valid_flags(seg.flags) {
            return invalid(v, "invalid tcp flag combination");
        }
        let d = dir.index();
        let index = SegmentKind::of(seg.flags);
        let mut old = self.state;
        let mut new = next_state(dir, index, old);
        let mut skip_window = false;

        match new {
            // A SYN opening a connection, or retransmitted.
            Next::To(TcpState::SynSent) if old < TcpState::TimeWait => {}
            Next::To(TcpState::SynSent) | Next::Ignore => {
                if new != Next::Ignore {
                    // RFC 1122: a new SYN may reopen a connection from
                    // TIME_WAIT (or CLOSE). Do so (delete the flow and start
                    // over) if it was closed by a FIN from either side or
                    // aborted by an RST from the SYN's side; otherwise the
                    // tracker may be out of sync with the ends, so handle
                    // it as an ignored segment.
                    let closed = (self.seen[0].flags | self.seen[1].flags) & sf::CLOSE_INIT != 0;
                    if closed || (self.last.dir == dir && self.last.index == SegmentKind::Rst) {
                        v.action = TcpAction::Reopen;
                        return v;
                    }
                }
                if index == SegmentKind::SynAck
                    && self.last.index == SegmentKind::Syn
                    && self.last.dir != dir
                    && seg.ack == self.last.end
                {
                    // The SYN/ACK acknowledges a SYN we ignored: the ends are
                    // in sync and the tracker is not. Take the ignored SYN's
                    // values as the start of the handshake.
                    old = TcpState::SynSent;
                    new = Next::To(TcpState::SynRecv);
                    let last = self.last;
                    let (client, server) = split(&mut self.seen, last.dir);
                    client.td_end = last.end;
                    client.td_maxend = last.end;
                    client.td_maxwin = u32::from(last.win).max(1);
                    client.td_scale = last.wscale;
                    self.last.flags &= !sf::EXP_CHALLENGE_ACK;
                    client.flags = self.last.flags;
                    server.reset();
                } else {
                    self.note_ignored(dir, index, old, seg);
                    return self.finish_ignored(v, dir, "segment ignored in this state");
                }
            }
            Next::Invalid => return invalid(v, invalid_reason(dir, index, old)),
            Next::To(TcpState::TimeWait) => {
                // RFC 5961: a SYN let through in LAST_ACK may draw a
                // challenge ACK; it does not acknowledge the last FIN.
                if old == TcpState::LastAck
                    && index == SegmentKind::Ack
                    && self.last.dir != dir
                    && self.last.index == SegmentKind::Syn
                    && self.last.flags & sf::EXP_CHALLENGE_ACK != 0
                {
                    self.last.flags &= !sf::EXP_CHALLENGE_ACK;
                    return self.finish_ignored(v, dir, "challenge-ack ignored");
                }
            }
            Next::To(TcpState::SynSent2) => {
                // The table cannot tell the SYN_RECV of a simultaneous open
                // from a normal one; remember it.
                self.last.flags |= sf::SIMULTANEOUS_OPEN;
            }
            Next::To(TcpState::SynRecv) => {
                if dir == Direction::Reply
                    && index == SegmentKind::Ack
                    && self.last.flags & sf::SIMULTANEOUS_OPEN != 0
                {
                    new = Next::To(TcpState::Established);
                }
            }
            Next::To(TcpState::Close) if index == SegmentKind::Rst => {
                match self.check_rst(dir, old, seg) {
                    RstCheck::Invalid => return invalid(v, "invalid rst"),
                    RstCheck::SkipWindow => skip_window = true,
                    RstCheck::KeepState => new = Next::To(old),
                    RstCheck::Window => {}
                }
            }
            Next::To(_) => {}
        }

        if !skip_window {
            match self.in_window(dir, index, seg) {
                Window::Accept => {}
                Window::Ignore(why) => return self.finish_ignored(v, dir, why),
                Window::Invalid(why) => {
                    v.lower_timeout = self.handle_invalid(dir, index);
                    return invalid(v, why);
                }
            }
        }

        // From here the segment is in window.
        self.last.index = index;
        self.last.dir = dir;
        let new_state = match new {
            Next::To(s) => s,
            _ => old,
        };
        self.state = new_state;
        v.new_state = new_state;
        if old != new_state && new_state == TcpState::FinWait {
            if let Some(s) = self.seen.get_mut(d) {
                s.flags |= sf::CLOSE_INIT;
            }
        }
        let mut refresh = TcpRefresh {
            state: new_state,
            retrans_exceeded: self.retrans >= self.cfg.max_retrans,
            rst: index == SegmentKind::Rst,
            data_unacknowledged: (self.seen[0].flags | self.seen[1].flags)
                & sf::DATA_UNACKNOWLEDGED
                != 0,
            zero_window: self.last.win == 0,
            cap_unacknowledged: false,
        };
        if !self.seen_reply {
            if seg.has(tcp_flag::RST) {
                // An RST as the only reply: nothing was established.
                v.destroy = true;
                return self.finish(v, dir);
            }
            if index == SegmentKind::Syn && old == TcpState::SynSent {
                // A retransmitted SYN does not renew the timeout, else port
                // reuse could keep an unanswered flow alive for ever.
                return self.finish(v, dir);
            }
            // ESTABLISHED without a reply: a mid-stream pickup.
            refresh.cap_unacknowledged = new_state == TcpState::Established;
        } else if !self.assured
            && matches!(old, TcpState::SynRecv | TcpState::Established)
            && new_state == TcpState::Established
        {
            self.assured = true;
            v.became_assured = true;
        }
        v.refresh = Some(refresh);
        self.finish(v, dir)
    }

    /// Marks the reply direction seen after an accepted or ignored segment
    /// (`nf_conntrack_in()` sets `IPS_SEEN_REPLY` after the protocol
    /// handler returned a verdict).
    fn finish(&mut self, v: TcpVerdict, dir: Direction) -> TcpVerdict {
        if dir == Direction::Reply {
            self.seen_reply = true;
        }
        v
    }

    fn finish_ignored(
        &mut self,
        mut v: TcpVerdict,
        dir: Direction,
        why: &'static str,
    ) -> TcpVerdict {
        v.action = TcpAction::Ignore(why);
        v.new_state = self.state;
        self.finish(v, dir)
    }

    /// Remembers an ignored segment, so that an answer to it can bring the
    /// tracker back in sync (or be recognised as a challenge ACK).
    fn note_ignored(
        &mut self,
        dir: Direction,
        index: SegmentKind,
        old: TcpState,
        seg: &TcpSegment<'_>,
    ) {
        self.last.index = index;
        self.last.dir = dir;
        self.last.seq = seg.seq;
        self.last.end = seg.end();
        self.last.win = seg.window;
        if index == SegmentKind::Syn && dir == Direction::Original {
            // Might be a valid new connection the ends agree on while we
            // hold a stale one: keep its options for the resync.
            let mut opts = TcpSender::default();
            read_syn_options(seg.options, &mut opts);
            self.last.flags = 0;
            self.last.wscale = 0;
            if opts.flags & sf::WINDOW_SCALE != 0 {
                self.last.flags |= sf::WINDOW_SCALE;
                self.last.wscale = opts.td_scale;
            }
            if opts.flags & sf::SACK_PERM != 0 {
                self.last.flags |= sf::SACK_PERM;
            }
            if old == TcpState::LastAck {
                self.last.flags |= sf::EXP_CHALLENGE_ACK;
            }
        }
        if old == TcpState::SynSent && index == SegmentKind::Ack && dir == Direction::Reply {
            // Possibly a challenge ACK answering the SYN; an RST from the
            // client with this sequence number will follow.
            self.last.ack = seg.ack;
        }
    }

    /// The RST checks of `nf_conntrack_tcp_packet()`'s CLOSE case.
    fn check_rst(&self, dir: Direction, old: TcpState, seg: &TcpSegment<'_>) -> RstCheck {
        // Closing already: the tuple may have been reused, window data is
        // stale; let the RST close it.
        if self.can_early_drop() {
            return RstCheck::SkipWindow;
        }
        let peer = self.sender(dir.opposite());
        let mut keep = false;
        if peer.flags & sf::MAXACK_SET != 0 && self.last.index != SegmentKind::Syn {
            let seq = seg.seq;
            if seq == 0 && !self.established() {
                // Most likely an answer to a SYN let through earlier.
                return RstCheck::Window;
            }
            if before(seq, peer.td_maxack) && !self.cfg.ignore_invalid_rst {
                return RstCheck::Invalid;
            }
            if !self.established() || seq == peer.td_maxack {
                return RstCheck::Window;
            }
            // Part of a train: data then RST right behind it.
            if self.last.index == SegmentKind::Ack && self.last.dir == dir && seq == self.last.end {
                return RstCheck::Window;
            }
            // Sequence number in window but not exact: keep the state so
            // the ends can do an RFC 5961 challenge ACK.
            keep = true;
        }
        if ((self.seen_reply && self.last.index == SegmentKind::Syn)
            || (!self.assured && self.last.index == SegmentKind::Ack))
            && seg.ack == self.last.end
        {
            // RST answering a SYN or ACK we let through while out of sync
            // (a half-open connection): the window may not know it.
            return RstCheck::SkipWindow;
        }
        if old == TcpState::SynSent
            && self.last.index == SegmentKind::Ack
            && self.last.dir == Direction::Reply
            && seg.seq == self.last.ack
        {
            // RST after a challenge ACK to the SYN.
            return RstCheck::SkipWindow;
        }
        if keep {
            RstCheck::KeepState
        } else {
            RstCheck::Window
        }
    }

    /// `nf_tcp_handle_invalid()`: whether an out-of-window FIN/RST that
    /// answers one from the other side should shorten an assured flow's
    /// timeout.
    fn handle_invalid(&mut self, dir: Direction, index: SegmentKind) -> bool {
        if !self.assured || !matches!(index, SegmentKind::Rst | SegmentKind::Fin) {
            return false;
        }
        if self.last.dir != dir && matches!(self.last.index, SegmentKind::Fin | SegmentKind::Rst) {
            return true;
        }
        self.last.index = index;
        self.last.dir = dir;
        false
    }

    /// A window failure: accepted anyway when the sender or the
    /// configuration is liberal (`nf_tcp_log_invalid()`).
    fn window_fail(&self, sender_flags: u8, res: Window) -> Window {
        if sender_flags & sf::BE_LIBERAL != 0 || self.cfg.be_liberal {
            Window::Accept
        } else {
            res
        }
    }

    /// `tcp_in_window()`: checks the segment against the windows of both
    /// sides and updates them.
    ///
    /// For the sender S and the receiver R:
    /// I. `seq <= S.td_maxend` (data within what R allowed);
    /// II. `seq + len >= S.td_end - R.td_maxwin` (not older than a window);
    /// III. `sack <= R.td_end` (no ACK of data not seen);
    /// IV. `sack >= R.td_end - MAXACKWINDOW(S)` (not an ancient ACK).
    fn in_window(&mut self, dir: Direction, index: SegmentKind, seg: &TcpSegment<'_>) -> Window {
        let state = self.state;
        let syn = seg.has(tcp_flag::SYN);
        let has_ack = seg.has(tcp_flag::ACK);
        let mut seq = seg.seq;
        let mut ack = seg.ack;
        let win_raw = seg.window;
        let mut win = u32::from(win_raw);
        let mut end = seg.end();
        let (sender, receiver) = split(&mut self.seen, dir);
        let mut sack = ack;
        if receiver.flags & sf::SACK_PERM != 0 {
            sack = highest_sack(seg.options, sack);
        }

        if sender.td_maxwin == 0 {
            // First segment from this side.
            if syn {
                init_sender(sender, receiver, seg, end, win, dir);
                if !has_ack {
                    // Simultaneous open: the other side's SYN.
                    return Window::Accept;
                }
            } else {
                // Mid-stream: its history is lost; use the segment's.
                sender.td_end = end;
                let swin = win << sender.td_scale;
                sender.td_maxwin = swin.max(1);
                sender.td_maxend = end.wrapping_add(sender.td_maxwin);
                if receiver.td_maxwin == 0 {
                    // Nothing from the other side yet: make III and IV pass
                    // until something is.
                    receiver.td_end = sack;
                    receiver.td_maxend = sack;
                } else if sack == receiver.td_end.wrapping_add(1) {
                    // Likely a reply to a keepalive.
                    receiver.td_end = receiver.td_end.wrapping_add(1);
                }
            }
        } else if syn
            && after(end, sender.td_end)
            && matches!(state, TcpState::SynSent | TcpState::SynRecv)
        {
            // RFC 793: a reinitialised TCP may start over with a higher
            // sequence number; take the new SYN's values.
            init_sender(sender, receiver, seg, end, win, dir);
            if dir == Direction::Reply && !has_ack {
                return Window::Accept;
            }
        }

        if !has_ack {
            // No ACK: pretend it acknowledges everything seen.
            ack = receiver.td_end;
            sack = ack;
        } else if seg.has(tcp_flag::RST) && ack == 0 {
            // Broken stacks send RST|ACK with a zero ACK.
            ack = receiver.td_end;
            sack = ack;
        }

        if seg.has(tcp_flag::RST) && seq == 0 && state == TcpState::SynSent {
            // RST answering a SYN.
            seq = sender.td_end;
            end = seq;
        }

        let sender_flags = sender.flags;
        let seq_ok = before(seq, sender.td_maxend.wrapping_add(1));
        if !seq_ok {
            let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
            let ack_ok = after(
                sack,
                receiver
                    .td_end
                    .wrapping_sub(max_ack_window(sender))
                    .wrapping_sub(1),
            );
            let in_recv_win = receiver.td_maxwin != 0
                && after(
                    end,
                    sender
                        .td_end
                        .wrapping_sub(receiver.td_maxwin)
                        .wrapping_sub(1),
                );
            if in_recv_win
                && ack_ok
                && overshot <= receiver.td_maxwin
                && before(sack, receiver.td_end.wrapping_add(1))
            {
                // Some TCPs send more than the receive window allows. If the
                // peer acknowledges it, later segments must not all fail
                // III, so record the data even though this one is ignored.
                sender.td_end = end;
                sender.flags |= sf::DATA_UNACKNOWLEDGED;
                return self.window_fail(
                    sender_flags,
                    Window::Ignore("more bytes than the receive window allows"),
                );
            }
            return self.window_fail(
                sender_flags,
                Window::Invalid("SEQ is over upper bound (over the window of the receiver)"),
            );
        }
        if !before(sack, receiver.td_end.wrapping_add(1)) {
            return self.window_fail(
                sender_flags,
                Window::Invalid("ACK is over upper bound (ACKed data not seen yet)"),
            );
        }
        let in_recv_win = receiver.td_maxwin == 0
            || after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            );
        if !in_recv_win {
            return self.window_fail(
                sender_flags,
                Window::Ignore("SEQ is under lower bound (already ACKed data retransmitted)"),
            );
        }
        if !after(
            sack,
            receiver
                .td_end
                .wrapping_sub(max_ack_window(sender))
                .wrapping_sub(1),
        ) {
            return self.window_fail(
                sender_flags,
                Window::Ignore("ignored ACK under lower bound (possible overly delayed)"),
            );
        }

        // RFC 7323: windows in SYNs are never scaled.
        if !syn {
            win = win.checked_shl(u32::from(sender.td_scale)).unwrap_or(win);
        }
        // Update the sender.
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        if sender.td_maxwin < swin {
            sender.td_maxwin = swin;
        }
        if after(end, sender.td_end) {
            sender.td_end = end;
            sender.flags |= sf::DATA_UNACKNOWLEDGED;
        }
        if has_ack {
            if sender.flags & sf::MAXACK_SET == 0 {
                sender.td_maxack = ack;
                sender.flags |= sf::MAXACK_SET;
            } else if after(ack, sender.td_maxack) {
                sender.td_maxack = ack;
            }
        }
        // Update the receiver.
        if receiver.td_maxwin != 0 && after(end, sender.td_maxend) {
            receiver.td_maxwin = receiver
                .td_maxwin
                .wrapping_add(end.wrapping_sub(sender.td_maxend));
        }
        if after(sack.wrapping_add(win), receiver.td_maxend.wrapping_sub(1)) {
            receiver.td_maxend = sack.wrapping_add(win);
            if win == 0 {
                receiver.td_maxend = receiver.td_maxend.wrapping_add(1);
            }
        }
        if ack == receiver.td_end {
            receiver.flags &= !sf::DATA_UNACKNOWLEDGED;
        }

        // Count identical retransmissions of ACK segments.
        if index == SegmentKind::Ack {
            let l = &mut self.last;
            if l.dir == dir && l.seq == seq && l.ack == ack && l.end == end && l.win == win_raw {
                self.retrans = self.retrans.saturating_add(1);
            } else {
                l.dir = dir;
                l.seq = seq;
                l.ack = ack;
                l.end = end;
                l.win = win_raw;
                self.retrans = 0;
            }
        }
        Window::Accept
    }
}

/// Outcome of the RST checks.
enum RstCheck {
    Invalid,
    SkipWindow,
    KeepState,
    Window,
}

fn invalid(mut v: TcpVerdict, why: &'static str) -> TcpVerdict {
    v.action = TcpAction::Invalid(why);
    v.ct_state = CtState::INVALID;
    v
}

/// Why the table refused a segment, in words.
fn invalid_reason(dir: Direction, index: SegmentKind, state: TcpState) -> &'static str {
    match (dir, index, state) {
        (_, SegmentKind::None, _) => "segment without SYN, FIN, RST or ACK",
        (Direction::Original, SegmentKind::Ack, TcpState::SynSent) => {
            "ACK before any SYN/ACK was seen"
        }
        (Direction::Original, SegmentKind::SynAck, _) => "SYN/ACK from the client",
        (Direction::Reply, SegmentKind::Syn, _) => "SYN from the server on an open connection",
        (_, SegmentKind::Fin, _) => "FIN before the handshake completed",
        _ => "segment not valid in this TCP state",
    }
}

/// The sender and receiver of a segment travelling in `dir`.
fn split(seen: &mut [TcpSender; 2], dir: Direction) -> (&mut TcpSender, &mut TcpSender) {
    let [orig, reply] = seen;
    match dir {
        Direction::Original => (orig, reply),
        Direction::Reply => (reply, orig),
    }
}

/// `tcp_init_sender()`: a SYN/ACK answering a SYN, or a SYN from the reply
/// direction in simultaneous open, starts the sender's window tracking.
/// Window scaling is in force only if both SYNs carried the option
/// (RFC 7323), so without it both scales are cleared.
fn init_sender(
    sender: &mut TcpSender,
    receiver: &mut TcpSender,
    seg: &TcpSegment<'_>,
    end: u32,
    win: u32,
    dir: Direction,
) {
    sender.td_end = end;
    sender.td_maxend = end;
    sender.td_maxwin = win.max(1);
    read_syn_options(seg.options, sender);
    if dir == Direction::Reply
        && !(sender.flags & sf::WINDOW_SCALE != 0 && receiver.flags & sf::WINDOW_SCALE != 0)
    {
        sender.td_scale = 0;
        receiver.td_scale = 0;
    }
}
