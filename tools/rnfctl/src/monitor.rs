// SPDX-License-Identifier: GPL-2.0-only

//! `rnfctl monitor conntrack`: flow events from the kernel's multicast
//! group [`CT_MCGRP`], one line each, like `conntrack -E`.

use std::io::Write;

use rnf_core::ct_msg::FlowMsg;
use rnf_core::netlink::GenlMsgHdr;
use rnf_core::wire::{cmd, WireError, CT_MCGRP, FAMILY_NAME};

use crate::conntrack::{event_line, flow_json};
use crate::error::Error;
use crate::nl::GenlSocket;

const OP: &str = "monitor conntrack";

/// The warning printed (on standard error) when the kernel had to drop
/// events because rnfctl did not read them fast enough.
pub const LOST_EVENTS: &str =
    "rnfctl: warning: the kernel dropped events (receive buffer full, ENOBUFS); continuing";

/// The line for one notification (genl header and attributes), or `None`
/// for a message that is not a flow event.
pub fn render_event(payload: &[u8], json: bool) -> Result<Option<String>, WireError> {
    let (hdr, attrs) = GenlMsgHdr::split(payload)?;
    if hdr.cmd != cmd::CT_EVENT {
        return Ok(None);
    }
    let f = FlowMsg::decode(attrs)?;
    Ok(Some(if json { flow_json(&f) } else { event_line(&f) }))
}

/// Prints flow events until the process is killed or standard output is
/// closed.
pub fn run_conntrack(json: bool) -> Result<String, Error> {
    let mut sock = GenlSocket::open()?;
    let (family, group) = sock.resolve_group(FAMILY_NAME, CT_MCGRP)?;
    let group = group.ok_or_else(|| {
        Error::invalid(
            OP,
            format!(
                "the loaded rnf module has no '{CT_MCGRP}' event group (is it older than rnfctl?)"
            ),
        )
    })?;
    sock.join_group(OP, group)?;
    let mut out = std::io::stdout().lock();
    loop {
        let msgs = match sock.recv_notifications(OP, family) {
            Ok(m) => m,
            Err(Error::Io { err, .. }) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                eprintln!("{LOST_EVENTS}");
                continue;
            }
            Err(e) => return Err(e),
        };
        for m in msgs {
            let line = match render_event(&m, json) {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => {
                    eprintln!("rnfctl: warning: skipped a malformed event: {e}");
                    continue;
                }
            };
            // A reader that went away (a closed pipe) ends the monitor.
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(String::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::reply;
    use rnf_core::ct::{status, Tuple};
    use rnf_core::ct_tcp::TcpState;
    use rnf_core::hooks::Family;
    use rnf_core::wire::ct_event;

    fn event(e: u8) -> FlowMsg {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 0, 0, 2]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[10, 0, 1, 2]);
        let orig = Tuple {
            family: Family::Ipv4,
            proto: 6,
            src,
            dst,
            src_port_or_icmp_id: 40000,
            dst_port_or_icmp_type_code: 22,
        };
        FlowMsg {
            orig,
            reply: orig.invert(),
            id: 7,
            proto_state: TcpState::SynSent as u8,
            status: status::CONFIRMED,
            timeout_secs: 120,
            age_secs: 0,
            mark: 0,
            counters: [(1, 60), (0, 0)],
            event: Some(e),
        }
    }

    #[test]
    fn events_render() {
        let m = reply(cmd::CT_EVENT, |w| event(ct_event::NEW).encode(w));
        assert_eq!(
            render_event(&m, false).unwrap().unwrap(),
            "[NEW] tcp      6 120 SYN_SENT src=10.0.0.2 dst=10.0.1.2 sport=40000 dport=22 packets=1 bytes=60 [UNREPLIED] src=10.0.1.2 dst=10.0.0.2 sport=22 dport=40000 packets=0 bytes=0 mark=0 id=7"
        );
        let j = render_event(&m, true).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["event"], "new");
        assert_eq!(v["state"], "SYN_SENT");
        assert_eq!(v["orig"]["dport"], 22);
        let m = reply(cmd::CT_EVENT, |w| event(ct_event::DESTROY).encode(w));
        assert!(render_event(&m, false)
            .unwrap()
            .unwrap()
            .starts_with("[DESTROY] tcp      6 SYN_SENT src=10.0.0.2"));
    }

    #[test]
    fn other_commands_are_skipped_and_garbage_is_an_error() {
        let m = reply(cmd::GET_STATUS, |w| w.put_u32(1, 1));
        assert_eq!(render_event(&m, false), Ok(None));
        let m = reply(cmd::CT_EVENT, |w| w.put_u32(rnf_core::wire::attr::CT_ID, 1));
        assert!(render_event(&m, false).is_err());
        assert!(render_event(&[1], false).is_err());
    }
}
