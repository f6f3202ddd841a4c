// SPDX-License-Identifier: GPL-2.0-only

//! The TCP tracker follows recorded segment sequences: handshakes,
//! teardowns from either side, resets, simultaneous open, retransmissions,
//! out-of-window and invalid segments, window scaling, TIME_WAIT reuse and
//! mid-stream pickup, with the timeouts Linux would set.

use rnf_core::ct::{CtState, Direction, Timeouts};
use rnf_core::ct_tcp::{
    valid_flags, TcpAction, TcpConfig, TcpConn, TcpSegment, TcpState, TcpVerdict,
};
use rnf_core::packet::tcp_flag::{ACK, CWR, ECE, FIN, PSH, RST, SYN, URG};

use Direction::{Original as O, Reply as R};
use TcpState::{
    Close, CloseWait, Established, FinWait, LastAck, SynRecv, SynSent, SynSent2, TimeWait,
};

const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 5000;

fn seg(flags: u8, seq: u32, ack: u32, window: u16, len: u32) -> TcpSegment<'static> {
    TcpSegment {
        seq,
        ack,
        window,
        flags,
        data_len: len,
        options: &[],
    }
}

fn seg_opts(flags: u8, seq: u32, ack: u32, window: u16, options: &[u8]) -> TcpSegment<'_> {
    TcpSegment {
        seq,
        ack,
        window,
        flags,
        data_len: 0,
        options,
    }
}

/// A flow under test: the tracker, the timeouts, and a log of states.
struct Flow {
    conn: TcpConn,
    t: Timeouts,
}

impl Flow {
    fn start(first: &TcpSegment<'_>) -> (Flow, TcpVerdict) {
        Self::start_with(first, TcpConfig::default())
    }

    fn start_with(first: &TcpSegment<'_>, cfg: TcpConfig) -> (Flow, TcpVerdict) {
        let mut conn = TcpConn::new(first, cfg).expect("segment may create a flow");
        let v = conn.on_segment(O, first);
        (
            Flow {
                conn,
                t: Timeouts::default(),
            },
            v,
        )
    }

    fn send(&mut self, dir: Direction, s: &TcpSegment<'_>) -> TcpVerdict {
        self.conn.on_segment(dir, s)
    }

    /// Sends and checks the segment was accepted into `state`; returns the
    /// timeout it set.
    fn ok(&mut self, dir: Direction, s: &TcpSegment<'_>, state: TcpState) -> Option<u32> {
        let v = self.send(dir, s);
        assert_eq!(v.action, TcpAction::Accept, "{v:?}");
        assert_eq!(v.new_state, state, "{v:?}");
        assert_eq!(self.conn.state(), state);
        v.refresh.map(|r| self.t.tcp_refresh(&r))
    }
}

/// SYN, SYN/ACK, ACK with Linux's default timeouts along the way.
fn handshake() -> Flow {
    let syn = seg(SYN, CLIENT_ISN, 0, 64240, 0);
    let (mut f, v) = Flow::start(&syn);
    assert_eq!(v.action, TcpAction::Accept);
    assert_eq!((v.old_state, v.new_state), (TcpState::None, SynSent));
    assert_eq!(v.ct_state, CtState::NEW);
    assert_eq!(v.refresh.map(|r| f.t.tcp_refresh(&r)), Some(120));

    let v = f.send(R, &seg(SYN | ACK, SERVER_ISN, CLIENT_ISN + 1, 65160, 0));
    assert_eq!(v.action, TcpAction::Accept);
    assert_eq!(v.new_state, SynRecv);
    assert_eq!(v.ct_state, CtState::ESTABLISHED, "a reply is established");
    assert_eq!(v.refresh.map(|r| f.t.tcp_refresh(&r)), Some(60));
    assert!(!f.conn.assured());

    let v = f.send(O, &seg(ACK, CLIENT_ISN + 1, SERVER_ISN + 1, 502, 0));
    assert_eq!(v.action, TcpAction::Accept);
    assert_eq!(v.new_state, Established);
    assert_eq!(v.ct_state, CtState::ESTABLISHED);
    assert!(v.became_assured && f.conn.assured());
    assert_eq!(v.refresh.map(|r| f.t.tcp_refresh(&r)), Some(432_000));
    f
}

/// Handshake plus 100 bytes from the client and 200 from the server, all
/// acknowledged. Next client seq 1101, next server seq 5201.
fn established_with_data() -> Flow {
    let mut f = handshake();
    let c = CLIENT_ISN + 1;
    let s = SERVER_ISN + 1;
    // Unacknowledged data shortens the timeout to 300 s until acked.
    assert_eq!(
        f.ok(O, &seg(PSH | ACK, c, s, 502, 100), Established),
        Some(300)
    );
    assert_eq!(
        f.ok(R, &seg(ACK, s, c + 100, 509, 0), Established),
        Some(432_000)
    );
    assert_eq!(
        f.ok(R, &seg(PSH | ACK, s, c + 100, 509, 200), Established),
        Some(300)
    );
    assert_eq!(
        f.ok(O, &seg(ACK, c + 100, s + 200, 501, 0), Established),
        Some(432_000)
    );
    f
}

#[test]
fn handshake_data_and_client_close() {
    let mut f = established_with_data();
    let (c, s) = (1101, 5201);
    assert_eq!(f.ok(O, &seg(FIN | ACK, c, s, 501, 0), FinWait), Some(120));
    assert_eq!(f.ok(R, &seg(ACK, s, c + 1, 509, 0), CloseWait), Some(60));
    assert_eq!(
        f.ok(R, &seg(FIN | ACK, s, c + 1, 509, 0), LastAck),
        Some(30)
    );
    assert_eq!(
        f.ok(O, &seg(ACK, c + 1, s + 1, 501, 0), TimeWait),
        Some(120)
    );
    // A retransmitted last ACK stays in TIME_WAIT.
    assert_eq!(
        f.ok(O, &seg(ACK, c + 1, s + 1, 501, 0), TimeWait),
        Some(120)
    );
    // An RST in TIME_WAIT closes: CLOSE, 10 s.
    assert_eq!(f.ok(R, &seg(RST, s + 1, 0, 0, 0), Close), Some(10));
}

#[test]
fn server_closes_first() {
    let mut f = established_with_data();
    let (c, s) = (1101, 5201);
    assert_eq!(f.ok(R, &seg(FIN | ACK, s, c, 509, 0), FinWait), Some(120));
    assert_eq!(f.ok(O, &seg(ACK, c, s + 1, 501, 0), CloseWait), Some(60));
    assert_eq!(
        f.ok(O, &seg(FIN | ACK, c, s + 1, 501, 0), LastAck),
        Some(30)
    );
    assert_eq!(
        f.ok(R, &seg(ACK, s + 1, c + 1, 509, 0), TimeWait),
        Some(120)
    );
    assert_eq!(
        f.conn.sender(R).flags & 0x04,
        0x04,
        "CLOSE_INIT on the server side"
    );
    assert_eq!(f.conn.sender(O).flags & 0x04, 0);
}

#[test]
fn both_fins_cross() {
    let mut f = established_with_data();
    let (c, s) = (1101, 5201);
    f.ok(O, &seg(FIN | ACK, c, s, 501, 0), FinWait);
    // The server's FIN crosses the client's: LAST_ACK.
    f.ok(R, &seg(FIN | ACK, s, c, 509, 0), LastAck);
    f.ok(R, &seg(ACK, s + 1, c + 1, 509, 0), TimeWait);
    f.ok(O, &seg(ACK, c + 1, s + 1, 501, 0), TimeWait);
}

#[test]
fn rst_teardown_exact_sequence() {
    let mut f = established_with_data();
    let v = f.send(O, &seg(RST | ACK, 1101, 5201, 0, 0));
    assert_eq!(v.action, TcpAction::Accept);
    assert_eq!(v.new_state, Close);
    assert_eq!(v.refresh.map(|r| f.t.tcp_refresh(&r)), Some(10));
    assert!(!v.destroy, "the flow had a reply: it lingers in CLOSE");
}

#[test]
fn rst_behind_acknowledged_data_is_invalid() {
    let mut f = established_with_data();
    // The server acknowledged up to 1101; an RST at 1050 is stale or
    // forged.
    let v = f.send(O, &seg(RST, 1050, 0, 0, 0));
    assert_eq!(v.action, TcpAction::Invalid("invalid rst"));
    assert_eq!(v.ct_state, CtState::INVALID);
    assert_eq!(f.conn.state(), Established);
}

#[test]
fn ignore_invalid_rst_option() {
    // With nf_conntrack_tcp_ignore_invalid_rst a stale RST is not invalid;
    // on an established flow, not being exact, it keeps the state.
    let cfg = TcpConfig {
        ignore_invalid_rst: true,
        ..TcpConfig::default()
    };
    let (mut f, _) = Flow::start_with(&seg(SYN, CLIENT_ISN, 0, 64240, 0), cfg);
    let (c, s) = (CLIENT_ISN + 1, SERVER_ISN + 1);
    f.ok(R, &seg(SYN | ACK, SERVER_ISN, c, 65160, 0), SynRecv);
    f.ok(O, &seg(ACK, c, s, 502, 0), Established);
    f.ok(O, &seg(PSH | ACK, c, s, 502, 100), Established);
    f.ok(R, &seg(ACK, s, c + 100, 509, 0), Established);
    f.ok(O, &seg(RST, c + 50, 0, 0, 0), Established);
}

#[test]
fn inexact_rst_keeps_state_for_challenge_ack() {
    let mut f = established_with_data();
    // In window, but not at the next expected sequence number: the
    // receiver answers with a challenge ACK (RFC 5961), so the tracker
    // keeps the state, but as Linux does sets the CLOSE timeout.
    let v = f.send(O, &seg(RST, 1101 + 50, 0, 0, 0));
    assert_eq!(v.action, TcpAction::Accept);
    assert_eq!(v.new_state, Established);
    assert_eq!(v.refresh.map(|r| f.t.tcp_refresh(&r)), Some(10));
}

#[test]
fn rst_answering_syn_destroys_the_flow() {
    let (mut f, _) = Flow::start(&seg(SYN, CLIENT_ISN, 0, 64240, 0));
    let v = f.send(R, &seg(RST | ACK, 0, CLIENT_ISN + 1, 0, 0));
    assert_eq!(v.action, TcpAction::Accept);
    assert_eq!(v.new_state, Close);
    assert!(v.destroy, "an RST as the only reply kills the flow at once");
}

#[test]
fn simultaneous_open() {
    let a = 100;
    let b = 700;
    let (mut f, _) = Flow::start(&seg(SYN, a, 0, 8192, 0));
    // The peer's SYN crosses ours. Like a retransmitted SYN before any
    // reply, it does not renew the timeout (Linux checks the segment kind
    // and old state, not the direction).
    assert_eq!(f.ok(R, &seg(SYN, b, 0, 8192, 0), SynSent2), Option::None);
    // Each side answers the other's SYN with a SYN/ACK.
    assert_eq!(
        f.ok(O, &seg(SYN | ACK, a, b + 1, 8192, 0), SynRecv),
        Some(60)
    );
    let v = f.send(R, &seg(SYN | ACK, b, a + 1, 8192, 0));
    assert!(matches!(v.action, TcpAction::Ignore(_)), "{v:?}");
    assert_eq!(f.conn.state(), SynRecv);
    // The reply side's ACK completes the simultaneous open.
    let v = f.send(R, &seg(ACK, b + 1, a + 1, 8192, 0));
    assert_eq!((v.action, v.new_state), (TcpAction::Accept, Established));
    assert!(v.became_assured);
    f.ok(O, &seg(ACK, a + 1, b + 1, 8192, 0), Established);
}

#[test]
fn retransmitted_syn_does_not_renew_timeout() {
    let syn = seg(SYN, CLIENT_ISN, 0, 64240, 0);
    let (mut f, _) = Flow::start(&syn);
    let v = f.send(O, &syn);
    assert_eq!((v.action, v.new_state), (TcpAction::Accept, SynSent));
    assert_eq!(v.refresh, None, "port reuse must not keep a SYN flow alive");
}

#[test]
fn retransmitted_syn_ack_is_ignored() {
    let (mut f, _) = Flow::start(&seg(SYN, CLIENT_ISN, 0, 64240, 0));
    let synack = seg(SYN | ACK, SERVER_ISN, CLIENT_ISN + 1, 65160, 0);
    f.ok(R, &synack, SynRecv);
    let v = f.send(R, &synack);
    assert!(matches!(v.action, TcpAction::Ignore(_)), "{v:?}");
    assert_eq!(v.refresh, None);
    f.ok(
        O,
        &seg(ACK, CLIENT_ISN + 1, SERVER_ISN + 1, 502, 0),
        Established,
    );
}

#[test]
fn retransmitted_data_is_accepted() {
    let mut f = established_with_data();
    // The client's 100 bytes again, already acknowledged: still within a
    // window of the receiver, so in window.
    f.ok(O, &seg(PSH | ACK, 1001, 5201, 501, 100), Established);
}

#[test]
fn repeated_retransmissions_shorten_timeout() {
    let mut f = established_with_data();
    // The client's last segment in established_with_data() was this ACK;
    // each repeat counts as a retransmission, the third reaches
    // nf_conntrack_tcp_max_retrans (3).
    let ack = seg(ACK, 1101, 5201, 501, 0);
    assert_eq!(f.ok(O, &ack, Established), Some(432_000));
    assert_eq!(f.ok(O, &ack, Established), Some(432_000));
    assert_eq!(f.ok(O, &ack, Established), Some(300), "retrans timeout");
    // Something new resets the count.
    assert_eq!(
        f.ok(R, &seg(ACK, 5201, 1101, 509, 0), Established),
        Some(432_000)
    );
}

#[test]
fn ancient_retransmission_is_ignored() {
    let mut f = established_with_data();
    let v = f.send(
        O,
        &seg(PSH | ACK, 1001u32.wrapping_sub(300_000), 5201, 501, 100),
    );
    assert!(
        matches!(v.action, TcpAction::Ignore(why) if why.contains("lower bound")),
        "{v:?}"
    );
    assert_eq!(f.conn.state(), Established);
}

#[test]
fn segment_beyond_window_is_invalid() {
    let mut f = established_with_data();
    let v = f.send(O, &seg(PSH | ACK, 1101 + 200_000, 5201, 501, 100));
    assert!(
        matches!(v.action, TcpAction::Invalid(why) if why.contains("SEQ is over upper bound")),
        "{v:?}"
    );
    assert_eq!(v.ct_state, CtState::INVALID);
    assert_eq!(v.refresh, None);
    // The flow is unchanged: the next real segment is fine.
    f.ok(O, &seg(PSH | ACK, 1101, 5201, 501, 10), Established);
}

#[test]
fn ack_of_unseen_data_is_invalid() {
    let mut f = established_with_data();
    let v = f.send(O, &seg(ACK, 1101, 5201 + 100_000, 501, 0));
    assert!(
        matches!(v.action, TcpAction::Invalid(why) if why.contains("ACK is over upper bound")),
        "{v:?}"
    );
}

#[test]
fn be_liberal_accepts_out_of_window() {
    let cfg = TcpConfig {
        be_liberal: true,
        ..TcpConfig::default()
    };
    let (mut f, _) = Flow::start_with(&seg(SYN, CLIENT_ISN, 0, 64240, 0), cfg);
    f.ok(
        R,
        &seg(SYN | ACK, SERVER_ISN, CLIENT_ISN + 1, 65160, 0),
        SynRecv,
    );
    f.ok(
        O,
        &seg(ACK, CLIENT_ISN + 1, SERVER_ISN + 1, 502, 0),
        Established,
    );
    f.ok(
        O,
        &seg(PSH | ACK, CLIENT_ISN + 1 + 200_000, SERVER_ISN + 1, 502, 10),
        Established,
    );
    // Invalid flags are still invalid.
    assert!(matches!(
        f.send(O, &seg(SYN | FIN, 1, 0, 1, 0)).action,
        TcpAction::Invalid(_)
    ));
}

#[test]
fn overshooting_sender_is_ignored_not_invalid() {
    let mut f = handshake();
    // Server advertised 65160 in its SYN/ACK (unscaled). A client segment
    // starting just past the window is tolerated (ignored), and its data
    // recorded so the server's ACK of it is not "over upper bound".
    let s = SERVER_ISN + 1;
    let maxend = f.conn.sender(O).td_maxend;
    let len = 100;
    let v = f.send(O, &seg(PSH | ACK, maxend + 1, s, 502, len));
    assert!(
        matches!(v.action, TcpAction::Ignore(why) if why.contains("more bytes")),
        "{v:?}"
    );
    let end = maxend + 1 + len;
    assert_eq!(f.conn.sender(O).td_end, end);
    f.ok(R, &seg(ACK, s, end, 509, 0), Established);
}

#[test]
fn invalid_flag_combinations() {
    for bad in [
        SYN | FIN,
        SYN | RST,
        SYN | FIN | ACK,
        FIN,
        0,
        PSH,
        URG,
        FIN | PSH | URG,
        SYN | FIN | RST | PSH | ACK | URG,
        RST | FIN,
        SYN | ACK | URG,
    ] {
        assert!(!valid_flags(bad), "{bad:#x}");
        let s = seg(bad, 1, 0, 100, 0);
        assert!(TcpConn::new(&s, TcpConfig::default()).is_err(), "{bad:#x}");
        let mut f = established_with_data();
        let v = f.send(O, &s);
        assert!(matches!(v.action, TcpAction::Invalid(_)), "{bad:#x}: {v:?}");
        assert_eq!(f.conn.state(), Established);
    }
    for good in [
        SYN,
        SYN | ECE | CWR,
        SYN | ACK,
        SYN | ACK | ECE,
        ACK,
        ACK | PSH,
        ACK | URG | PSH,
        FIN | ACK,
        FIN | ACK | PSH,
        RST,
        RST | ACK,
    ] {
        assert!(valid_flags(good), "{good:#x}");
    }
}

#[test]
fn segments_out_of_order_for_the_state_are_invalid() {
    let (mut f, _) = Flow::start(&seg(SYN, CLIENT_ISN, 0, 64240, 0));
    // The client cannot ACK or FIN before a SYN/ACK.
    for s in [
        seg(ACK, CLIENT_ISN + 1, 1, 100, 0),
        seg(FIN | ACK, CLIENT_ISN + 1, 1, 100, 0),
        seg(SYN | ACK, CLIENT_ISN, 1, 100, 0),
    ] {
        let v = f.send(O, &s);
        assert!(matches!(v.action, TcpAction::Invalid(_)), "{v:?}");
        assert_eq!(f.conn.state(), SynSent);
    }
    // A SYN/ACK, FIN or RST cannot start a flow.
    for s in [
        seg(SYN | ACK, 1, 1, 1, 0),
        seg(FIN | ACK, 1, 1, 1, 0),
        seg(RST, 1, 0, 0, 0),
    ] {
        assert!(TcpConn::new(&s, TcpConfig::default()).is_err());
        assert!(!TcpConn::may_create(&s, &TcpConfig::default()));
    }
}

/// Client SYN options: MSS 1460, SACK permitted, timestamps, NOP, window
/// scale 7.
const CLIENT_OPTS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];
/// Server SYN/ACK options: MSS, SACK permitted, NOP, window scale 7.
const SERVER_OPTS_WS: [u8; 12] = [2, 4, 0x05, 0xb4, 4, 2, 1, 1, 1, 3, 3, 7];
/// Server SYN/ACK options without window scale.
const SERVER_OPTS_NO_WS: [u8; 8] = [2, 4, 0x05, 0xb4, 4, 2, 1, 1];

fn scaled_flow(server_opts: &[u8]) -> Flow {
    let (mut f, _) = Flow::start(&seg_opts(SYN, CLIENT_ISN, 0, 64240, &CLIENT_OPTS));
    f.ok(
        R,
        &seg_opts(SYN | ACK, SERVER_ISN, CLIENT_ISN + 1, 65160, server_opts),
        SynRecv,
    );
    f.ok(
        O,
        &seg(ACK, CLIENT_ISN + 1, SERVER_ISN + 1, 502, 0),
        Established,
    );
    // The server advertises 1024 << 7 = 128 KiB when scaling is on.
    f.ok(
        R,
        &seg(ACK, SERVER_ISN + 1, CLIENT_ISN + 1, 1024, 0),
        Established,
    );
    f
}

#[test]
fn window_scaling_from_syn_options() {
    let mut f = scaled_flow(&SERVER_OPTS_WS);
    assert_eq!(f.conn.sender(O).td_scale, 7);
    assert_eq!(f.conn.sender(R).td_scale, 7);
    assert_eq!(
        f.conn.sender(O).flags & 0x03,
        0x03,
        "window scale + SACK perm"
    );
    assert_eq!(f.conn.sender(O).td_maxend, CLIENT_ISN + 1 + (1024 << 7));
    // 100 KB ahead is within the scaled window.
    f.ok(
        O,
        &seg(
            PSH | ACK,
            CLIENT_ISN + 1 + 100_000,
            SERVER_ISN + 1,
            502,
            1000,
        ),
        Established,
    );
}

#[test]
fn window_scaling_needs_both_sides() {
    let mut f = scaled_flow(&SERVER_OPTS_NO_WS);
    assert_eq!(f.conn.sender(O).td_scale, 0);
    assert_eq!(f.conn.sender(R).td_scale, 0);
    // Unscaled, the server allowed only ~65 KB: 100 KB ahead is past the
    // window (within one more window: ignored, not accepted); 200 KB ahead
    // is invalid.
    let c = CLIENT_ISN + 1;
    let s = SERVER_ISN + 1;
    let v = f.send(O, &seg(PSH | ACK, c + 100_000, s, 502, 1000));
    assert!(matches!(v.action, TcpAction::Ignore(_)), "{v:?}");
    let v = f.send(O, &seg(PSH | ACK, c + 200_000, s, 502, 1000));
    assert!(matches!(v.action, TcpAction::Invalid(_)), "{v:?}");
}

#[test]
fn sack_blocks_count_as_acknowledgment_edges() {
    let mut f = scaled_flow(&SERVER_OPTS_WS);
    let c = CLIENT_ISN + 1;
    let s = SERVER_ISN + 1;
    f.ok(O, &seg(PSH | ACK, c, s, 502, 3000), Established);
    // Server SACKs 2000..3000 while acking 1000: NOP NOP SACK(10) block.
    let mut opts = vec![1, 1, 5, 10];
    opts.extend_from_slice(&(c + 2000).to_be_bytes());
    opts.extend_from_slice(&(c + 3000).to_be_bytes());
    let v = f.send(R, &seg_opts(ACK, s, c + 1000, 1024, &opts));
    assert_eq!(v.action, TcpAction::Accept);
    // A SACK edge past the data sent is an ACK of unseen data.
    let mut bad = vec![1, 1, 5, 10];
    bad.extend_from_slice(&(c + 2000).to_be_bytes());
    bad.extend_from_slice(&(c + 9000).to_be_bytes());
    let v = f.send(R, &seg_opts(ACK, s, c + 1000, 1024, &bad));
    assert!(matches!(v.action, TcpAction::Invalid(_)), "{v:?}");
}

fn closed_flow() -> Flow {
    let mut f = established_with_data();
    let (c, s) = (1101, 5201);
    f.ok(O, &seg(FIN | ACK, c, s, 501, 0), FinWait);
    f.ok(R, &seg(ACK, s, c + 1, 509, 0), CloseWait);
    f.ok(R, &seg(FIN | ACK, s, c + 1, 509, 0), LastAck);
    f.ok(O, &seg(ACK, c + 1, s + 1, 501, 0), TimeWait);
    f
}

#[test]
fn time_wait_reopened_by_new_syn() {
    let mut f = closed_flow();
    let syn = seg(SYN, 900_000, 0, 64240, 0);
    let v = f.send(O, &syn);
    assert_eq!(v.action, TcpAction::Reopen);
    assert_eq!(f.conn.state(), TimeWait, "the caller deletes the flow");
    // The caller then tracks the SYN as a new flow.
    let (g, v) = Flow::start(&syn);
    assert_eq!((v.action, g.conn.state()), (TcpAction::Accept, SynSent));
    // A SYN from the server side (role switch) also reopens.
    let mut f = closed_flow();
    assert_eq!(
        f.send(R, &seg(SYN, 77, 0, 100, 0)).action,
        TcpAction::Reopen
    );
}

#[test]
fn close_after_rst_reopened_by_syn_from_the_same_side() {
    let mut f = established_with_data();
    f.ok(O, &seg(RST, 1101, 0, 0, 0), Close);
    let v = f.send(O, &seg(SYN, 42, 0, 100, 0));
    assert_eq!(v.action, TcpAction::Reopen);
}

#[test]
fn ignored_syn_then_syn_ack_resyncs() {
    // The client restarted and opens again with the same ports while the
    // tracker still holds the old ESTABLISHED flow.
    let mut f = established_with_data();
    let isn = 3_000_000;
    let v = f.send(O, &seg_opts(SYN, isn, 0, 64240, &CLIENT_OPTS));
    assert!(matches!(v.action, TcpAction::Ignore(_)), "{v:?}");
    assert_eq!(f.conn.state(), Established);
    // The server's SYN/ACK acknowledges that SYN: the tracker resyncs.
    let v = f.send(
        R,
        &seg_opts(SYN | ACK, 8_000_000, isn + 1, 65160, &SERVER_OPTS_WS),
    );
    assert_eq!(
        (v.action, v.new_state),
        (TcpAction::Accept, SynRecv),
        "{v:?}"
    );
    f.ok(O, &seg(ACK, isn + 1, 8_000_001, 502, 0), Established);
    f.ok(
        O,
        &seg(PSH | ACK, isn + 1, 8_000_001, 502, 500),
        Established,
    );
    assert_eq!(f.conn.sender(O).td_scale, 7);
}

#[test]
fn mid_stream_pickup() {
    let first = seg(PSH | ACK, 1_000_000, 2_000_000, 1000, 100);
    let cfg = TcpConfig::default();
    assert!(cfg.loose, "Linux's nf_conntrack_tcp_loose defaults to 1");
    assert!(TcpConn::may_create(&first, &cfg));
    let (mut f, v) = Flow::start(&first);
    assert_eq!((v.action, v.new_state), (TcpAction::Accept, Established));
    assert_eq!(v.ct_state, CtState::NEW);
    // Without a reply, at most the unacknowledged timeout.
    assert_eq!(v.refresh.map(|r| f.t.tcp_refresh(&r)), Some(300));
    assert!(!f.conn.assured());
    // The other side answers; then the flow is assured on the next segment.
    let v = f.send(R, &seg(ACK, 2_000_000, 1_000_100, 2000, 0));
    assert_eq!((v.action, v.new_state), (TcpAction::Accept, Established));
    let v = f.send(O, &seg(ACK, 1_000_100, 2_000_000, 1000, 0));
    assert!(v.became_assured);
    assert_eq!(v.ct_state, CtState::ESTABLISHED);
    assert_eq!(v.refresh.map(|r| f.t.tcp_refresh(&r)), Some(432_000));
    // Windows of a picked-up flow are unknown (scaling): liberal.
    f.ok(
        O,
        &seg(ACK, 1_000_100 + 5_000_000, 2_000_000, 1000, 0),
        Established,
    );
}

#[test]
fn pickup_disabled_without_loose() {
    let cfg = TcpConfig {
        loose: false,
        ..TcpConfig::default()
    };
    let first = seg(ACK, 1, 1, 1000, 0);
    assert!(!TcpConn::may_create(&first, &cfg));
    assert!(TcpConn::new(&first, cfg).is_err());
    assert!(TcpConn::may_create(&seg(SYN, 1, 0, 1000, 0), &cfg));
}

#[test]
fn half_open_ack_in_syn_sent_is_ignored() {
    // The client sends a SYN for a connection the server believes open;
    // the server answers with an ACK (challenge ACK), then the client an
    // RST with that ACK's number as its sequence number.
    let (mut f, _) = Flow::start(&seg(SYN, CLIENT_ISN, 0, 64240, 0));
    let v = f.send(R, &seg(ACK, 777_777, 123, 500, 0));
    assert!(matches!(v.action, TcpAction::Ignore(_)), "{v:?}");
    assert_eq!(f.conn.state(), SynSent);
    let v = f.send(O, &seg(RST, 123, 0, 0, 0));
    assert_eq!((v.action, v.new_state), (TcpAction::Accept, Close), "{v:?}");
}

#[test]
fn verdict_states_are_reported() {
    let mut f = handshake();
    let v = f.send(O, &seg(FIN | ACK, CLIENT_ISN + 1, SERVER_ISN + 1, 502, 0));
    assert_eq!((v.old_state, v.new_state), (Established, FinWait));
    for s in TcpState::ALL {
        assert_eq!(TcpState::from_u8(s as u8), Some(s));
        assert!(!s.name().is_empty());
    }
    assert_eq!(TcpState::from_u8(10), None);
}

#[test]
fn segment_parse_from_header_bytes() {
    let mut hdr = vec![0u8; 20];
    hdr[0..2].copy_from_slice(&40000u16.to_be_bytes());
    hdr[2..4].copy_from_slice(&443u16.to_be_bytes());
    hdr[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    hdr[8..12].copy_from_slice(&0x0a0b_0c0du32.to_be_bytes());
    hdr[12] = 10 << 4; // 40-byte header
    hdr[13] = SYN;
    hdr[14..16].copy_from_slice(&64240u16.to_be_bytes());
    hdr.extend_from_slice(&CLIENT_OPTS);
    let s = TcpSegment::parse(&hdr, 0).unwrap();
    assert_eq!(
        (s.seq, s.ack, s.window, s.flags),
        (0x0102_0304, 0x0a0b_0c0d, 64240, SYN)
    );
    assert_eq!(s.options, &CLIENT_OPTS);
    assert_eq!(s.end(), 0x0102_0305);
    // Data offset beyond the bytes given, or below 5: refused.
    assert!(TcpSegment::parse(&hdr[..30], 0).is_none());
    hdr[12] = 4 << 4;
    assert!(TcpSegment::parse(&hdr, 0).is_none());
}

#[test]
fn segment_from_packet() {
    // IPv4 + TCP with 5 bytes of payload.
    let mut p = vec![
        0x45, 0, 0, 45, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&1234u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&100u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = PSH | ACK;
    p.extend_from_slice(&t);
    p.extend_from_slice(b"hello");
    let facts = rnf_core::packet::parse(&p).unwrap();
    let s = TcpSegment::from_packet(&facts, &p).unwrap();
    assert_eq!((s.seq, s.data_len, s.flags), (100, 5, PSH | ACK));
    assert_eq!(s.end(), 105);
}
