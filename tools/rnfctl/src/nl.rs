// SPDX-License-Identifier: GPL-2.0-only

//! Generic netlink transport: the socket, family resolution and
//! request/acknowledgement exchanges. Encoding and decoding is done by
//! `rnf_core`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};
use rnf_core::netlink::{self, GenlMsgHdr, MsgKind, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use rnf_core::wire::{AttrIter, AttrWriter, WireError};

use crate::error::Error;

/// Size of the buffer requests are encoded into.
const REQUEST_BUF: usize = 8192;

/// `NLM_F_DUMP_INTR`: the kernel saw the data change while it was dumping.
pub const NLM_F_DUMP_INTR: u16 = 0x10;

/// Controller attribute: the family's multicast groups (nested list).
pub const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
/// Inside one multicast group entry: its name (string).
pub const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
/// Inside one multicast group entry: its id (`u32`).
pub const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;

/// Messages up to this size fit any netlink socket's default send buffer.
const SMALL_MESSAGE: usize = 64 * 1024;

/// What netlink keeps of the send buffer for itself (a message may be at
/// most the buffer less this), with a margin.
const SNDBUF_OVERHEAD: usize = 64;

/// Receive buffer asked for on sockets that listen to events, so that a
/// burst of events is not lost (the kernel caps it at `rmem_max`).
const EVENT_RCVBUF: usize = 4 << 20;

/// Whether a value of `RNFCTL_TIMING` asks for a timing line per request:
/// any non-empty value does.
pub fn timing_wanted(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// Whether `RNFCTL_TIMING` is set (read once).
fn timing_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| timing_wanted(std::env::var_os("RNFCTL_TIMING").as_deref()))
}

/// The line printed to standard error for one request when
/// `RNFCTL_TIMING` is set: the time from just before the request was sent
/// to the arrival of its acknowledgement or end of dump.
pub fn timing_line(op: &str, elapsed: Duration) -> String {
    format!("rnfctl: timing: {op} {} us", elapsed.as_micros())
}

/// Prints the timing line of an exchange that began at `sent` when
/// `RNFCTL_TIMING` asks for it, if the kernel answered it (with an
/// acknowledgement or with an error).
fn report_timing<T>(op: &str, sent: Instant, result: &Result<T, Error>) {
    let answered = matches!(result, Ok(_) | Err(Error::Kernel { .. }));
    if answered && timing_enabled() {
        eprintln!("{}", timing_line(op, sent.elapsed()));
    }
}

/// The id of the multicast group `group` in the attributes of a
/// `CTRL_CMD_GETFAMILY` reply; `None` if the family has no such group.
pub fn parse_mcast_group(attrs: &[u8], group: &str) -> Result<Option<u32>, WireError> {
    let Some(groups) = AttrIter::new(attrs).find(CTRL_ATTR_MCAST_GROUPS)? else {
        return Ok(None);
    };
    for entry in groups.nested_iter() {
        let entry = entry?;
        let mut name = None;
        let mut id = None;
        for a in entry.nested_iter() {
            let a = a?;
            match a.ty {
                CTRL_ATTR_MCAST_GRP_NAME => name = Some(a.str()?),
                CTRL_ATTR_MCAST_GRP_ID => id = Some(a.u32()?),
                _ => {}
            }
        }
        if name == Some(group) {
            return id
                .map(Some)
                .ok_or(WireError::Missing(CTRL_ATTR_MCAST_GRP_ID));
        }
    }
    Ok(None)
}

/// The generic netlink payloads (genl header and attributes) of the
/// messages of type `family_id` in a datagram of notifications; other
/// messages are skipped.
pub fn notifications(
    op: &'static str,
    datagram: &[u8],
    family_id: u16,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    for msg in netlink::messages(datagram) {
        let msg = msg.map_err(|e| Error::wire(op, e))?;
        if msg.header.ty != family_id {
            continue;
        }
        if let MsgKind::Data(payload) = msg.kind().map_err(|e| Error::wire(op, e))? {
            out.push(payload.to_vec());
        }
    }
    Ok(out)
}

/// A whole generic netlink request message: `nlmsghdr`, `genlmsghdr`, then
/// the already encoded attributes `attrs`.
pub fn build_request(
    family_id: u16,
    flags: u16,
    seq: u32,
    cmd: u8,
    version: u8,
    attrs: &[u8],
) -> Result<Vec<u8>, WireError> {
    let hdrs = netlink::genl_headers(family_id, flags, seq, cmd, version, attrs.len())?;
    let mut msg = Vec::with_capacity(hdrs.len() + attrs.len());
    msg.extend_from_slice(&hdrs);
    msg.extend_from_slice(attrs);
    Ok(msg)
}

/// Where an exchange stands after a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More datagrams are expected.
    More,
    /// The acknowledgement or end of dump arrived.
    Finished,
}

/// Processes one received datagram of the exchange with sequence number
/// `seq`: appends the generic netlink payload (genl header and attributes)
/// of each reply message of type `family_id` to `replies`, and returns
/// whether the exchange is over. Messages of other exchanges are ignored.
/// An `NLMSG_ERROR` with a non-zero errno becomes [`Error::Kernel`].
pub fn process_datagram(
    op: &'static str,
    datagram: &[u8],
    family_id: u16,
    seq: u32,
    replies: &mut Vec<Vec<u8>>,
) -> Result<Progress, Error> {
    process_datagram_opts(op, datagram, family_id, seq, replies, true)
}

/// [`process_datagram`], where `dump_intr_is_error` says whether a dump
/// the kernel marks as interrupted (`NLM_F_DUMP_INTR`) is an error; it is
/// not for data that changes all the time, like the flow table.
pub fn process_datagram_opts(
    op: &'static str,
    datagram: &[u8],
    family_id: u16,
    seq: u32,
    replies: &mut Vec<Vec<u8>>,
    dump_intr_is_error: bool,
) -> Result<Progress, Error> {
    for msg in netlink::messages(datagram) {
        let msg = msg.map_err(|e| Error::wire(op, e))?;
        if msg.header.seq != seq {
            continue;
        }
        match msg.kind().map_err(|e| Error::wire(op, e))? {
            MsgKind::Error(e) | MsgKind::Done(e) => {
                if e.is_ack() {
                    return Ok(Progress::Finished);
                }
                return Err(Error::Kernel {
                    op,
                    errno: e.errno,
                    ext_ack: e.ext_ack_msg.map(str::to_owned),
                });
            }
            MsgKind::Control(ty) if ty == netlink::NLMSG_OVERRUN => {
                return Err(Error::Protocol {
                    op,
                    detail: "netlink overrun: messages were lost".into(),
                })
            }
            MsgKind::Control(_) => {}
            MsgKind::Data(_) if dump_intr_is_error && msg.header.flags & NLM_F_DUMP_INTR != 0 => {
                return Err(Error::Protocol {
                    op,
                    detail: "the rule set changed while it was being listed; run the command again"
                        .into(),
                })
            }
            MsgKind::Data(payload) if msg.header.ty == family_id => {
                replies.push(payload.to_vec());
            }
            MsgKind::Data(_) => {
                return Err(Error::Protocol {
                    op,
                    detail: format!("unexpected message type {}", msg.header.ty),
                })
            }
        }
    }
    Ok(Progress::More)
}

/// A generic netlink socket connected to the kernel.
pub struct GenlSocket {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
}

impl GenlSocket {
    /// Opens and binds a `NETLINK_GENERIC` socket with extended acks
    /// enabled.
    pub fn open() -> Result<Self, Error> {
        let io_err = |err| Error::Io {
            op: "opening a generic netlink socket",
            err,
        };
        let mut sock = Socket::new(NETLINK_GENERIC).map_err(io_err)?;
        sock.bind_auto().map_err(io_err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(io_err)?;
        // Extended acks carry the kernel's error text (Linux 4.12+); capped
        // acks leave the echoed request out of error messages. Kernels
        // without them still work, so failures are not fatal.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(Self {
            sock,
            seq,
            rx: Vec::new(),
        })
    }

    /// Looks up the id of the generic netlink family `name`.
    /// [`Error::ModuleNotLoaded`] if the controller does not know it.
    pub fn resolve_family(&mut self, name: &str) -> Result<u16, Error> {
        const OP: &str = "looking up the generic netlink family";
        let attrs = self.get_family(name)?;
        netlink::parse_family_id(&attrs).map_err(|e| Error::wire(OP, e))
    }

    /// Looks up the id of the generic netlink family `name` and of its
    /// multicast group `group`; `None` for the group if the family has
    /// none by that name.
    pub fn resolve_group(&mut self, name: &str, group: &str) -> Result<(u16, Option<u32>), Error> {
        const OP: &str = "looking up the generic netlink family";
        let attrs = self.get_family(name)?;
        let id = netlink::parse_family_id(&attrs).map_err(|e| Error::wire(OP, e))?;
        let group = parse_mcast_group(&attrs, group).map_err(|e| Error::wire(OP, e))?;
        Ok((id, group))
    }

    /// The attributes of the controller's `CTRL_CMD_GETFAMILY` reply for
    /// `name`.
    fn get_family(&mut self, name: &str) -> Result<Vec<u8>, Error> {
        const OP: &str = "looking up the generic netlink family";
        let replies = self
            .request(
                OP,
                netlink::GENL_ID_CTRL,
                netlink::CTRL_CMD_GETFAMILY,
                netlink::CTRL_VERSION,
                0,
                |w| w.put_str(netlink::CTRL_ATTR_FAMILY_NAME, name),
            )
            .map_err(|e| match e {
                Error::Kernel { errno, .. } if errno == libc::ENOENT => Error::ModuleNotLoaded,
                e => e,
            })?;
        let reply = replies.first().ok_or_else(|| Error::Protocol {
            op: OP,
            detail: "no reply from the generic netlink controller".into(),
        })?;
        let (_, attrs) = GenlMsgHdr::split(reply).map_err(|e| Error::wire(OP, e))?;
        Ok(attrs.to_vec())
    }

    /// Joins the multicast group `group` and enlarges the receive buffer
    /// for the events to come. A refusal for lack of privilege becomes
    /// the kernel's `EPERM`, worded as such.
    pub fn join_group(&mut self, op: &'static str, group: u32) -> Result<(), Error> {
        let _ = self.sock.set_rx_buf_sz(EVENT_RCVBUF);
        self.sock
            .add_membership(group)
            .map_err(|err| match err.raw_os_error() {
                Some(errno) if errno == libc::EPERM || errno == libc::EACCES => Error::Kernel {
                    op,
                    errno: libc::EPERM,
                    ext_ack: None,
                },
                _ => Error::Io { op, err },
            })
    }

    /// Waits for the next datagram of notifications and returns the
    /// payloads of its messages of type `family_id`. When the kernel had
    /// to drop notifications because the receive buffer was full, the
    /// error is [`Error::Io`] with `ENOBUFS`; the socket stays usable.
    pub fn recv_notifications(
        &mut self,
        op: &'static str,
        family_id: u16,
    ) -> Result<Vec<Vec<u8>>, Error> {
        self.recv_datagram(op)?;
        notifications(op, &self.rx, family_id)
    }

    /// Sends a dump request without attributes and collects every reply,
    /// also when the kernel marks the dump as interrupted by changes
    /// (right for tables that change all the time, like the flow table).
    pub fn dump_volatile(
        &mut self,
        op: &'static str,
        family_id: u16,
        cmd: u8,
    ) -> Result<Vec<Vec<u8>>, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = build_request(
            family_id,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
            seq,
            cmd,
            rnf_core::wire::FAMILY_VERSION,
            &[],
        )
        .map_err(|e| Error::wire(op, e))?;
        let sent = self.send_all(op, &msg)?;
        let result = self.collect(op, |rx, replies| {
            process_datagram_opts(op, rx, family_id, seq, replies, false)
        });
        report_timing(op, sent, &result);
        result
    }

    /// Sends a request (`NLM_F_REQUEST | NLM_F_ACK | extra_flags`) and
    /// collects the replies until the acknowledgement. Each reply is the
    /// payload after the netlink header (genl header and attributes).
    pub fn request(
        &mut self,
        op: &'static str,
        family_id: u16,
        cmd: u8,
        version: u8,
        extra_flags: u16,
        attrs: impl FnOnce(&mut AttrWriter<'_>),
    ) -> Result<Vec<Vec<u8>>, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut buf = vec![0u8; REQUEST_BUF];
        let len = netlink::encode_genl_request(
            &mut buf,
            family_id,
            NLM_F_REQUEST | NLM_F_ACK | extra_flags,
            seq,
            cmd,
            version,
            attrs,
        )
        .map_err(|e| Error::wire(op, e))?;
        buf.truncate(len);
        self.exchange(op, family_id, seq, &buf)
    }

    /// Sends a request whose attributes are already encoded (`attrs`),
    /// with `NLM_F_REQUEST | NLM_F_ACK` and `NLM_F_DUMP` if `dump`, and
    /// collects the replies until the acknowledgement or end of dump.
    pub fn request_encoded(
        &mut self,
        op: &'static str,
        family_id: u16,
        cmd: u8,
        dump: bool,
        attrs: &[u8],
    ) -> Result<Vec<Vec<u8>>, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let flags = NLM_F_REQUEST | NLM_F_ACK | if dump { NLM_F_DUMP } else { 0 };
        let msg = build_request(
            family_id,
            flags,
            seq,
            cmd,
            rnf_core::wire::FAMILY_VERSION,
            attrs,
        )
        .map_err(|e| Error::wire(op, e))?;
        self.exchange(op, family_id, seq, &msg)
    }

    /// Sends one message and collects the replies of exchange `seq`.
    fn exchange(
        &mut self,
        op: &'static str,
        family_id: u16,
        seq: u32,
        msg: &[u8],
    ) -> Result<Vec<Vec<u8>>, Error> {
        let sent = self.send_all(op, msg)?;
        let result = self.collect(op, |rx, replies| {
            process_datagram(op, rx, family_id, seq, replies)
        });
        report_timing(op, sent, &result);
        result
    }

    /// Receives datagrams and hands each to `process` until it says the
    /// exchange is finished; returns the replies it collected.
    fn collect(
        &mut self,
        op: &'static str,
        mut process: impl FnMut(&[u8], &mut Vec<Vec<u8>>) -> Result<Progress, Error>,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let mut replies = Vec::new();
        loop {
            self.recv_datagram(op)?;
            if process(&self.rx, &mut replies)? == Progress::Finished {
                return Ok(replies);
            }
        }
    }

    /// Makes the socket's send buffer large enough for a message of `len`
    /// bytes: netlink refuses a message longer than the send buffer less
    /// 32 bytes (`EMSGSIZE`), and the buffer is about 200 KiB by default.
    /// `SO_SNDBUFFORCE` (CAP_NET_ADMIN in the initial namespace) sets any
    /// size; otherwise `SO_SNDBUF` is capped at `net.core.wmem_max`.
    fn fit_send_buffer(&mut self, op: &'static str, len: usize) -> Result<(), Error> {
        let current = self.send_buffer().unwrap_or(0);
        let need = len.saturating_add(SNDBUF_OVERHEAD);
        if current >= need {
            return Ok(());
        }
        // The kernel doubles the value it is given.
        let ask = libc::c_int::try_from(need.div_ceil(2)).unwrap_or(libc::c_int::MAX);
        if self.set_send_buffer(libc::SO_SNDBUFFORCE, ask).is_err() {
            let _ = self.set_send_buffer(libc::SO_SNDBUF, ask);
        }
        let got = self.send_buffer().unwrap_or(0);
        if got >= need {
            return Ok(());
        }
        Err(Error::Invalid {
            op,
            message: format!(
                "the request is {len} bytes, more than this netlink socket may send ({} bytes):                  run rnfctl with CAP_NET_ADMIN in the initial namespace (as root), or raise                  the sysctl net.core.wmem_max to at least {}",
                got.saturating_sub(SNDBUF_OVERHEAD),
                need.div_ceil(2)
            ),
        })
    }

    fn set_send_buffer(&self, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the socket is open; `value` is a readable `c_int` of
        // `len` bytes for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn send_buffer(&self) -> io::Result<usize> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the socket is open; `value` and `len` are writable and
        // `len` says how large `value` is.
        let rc = unsafe {
            libc::getsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(value).unwrap_or(0))
    }

    /// Sends `msg` in one `sendmsg`; returns the instant just before it,
    /// where the exchange's timing starts.
    fn send_all(&mut self, op: &'static str, msg: &[u8]) -> Result<Instant, Error> {
        if msg.len() > SMALL_MESSAGE {
            self.fit_send_buffer(op, msg.len())?;
        }
        let start = Instant::now();
        let sent = self
            .sock
            .send(msg, 0)
            .map_err(|err| Error::Io { op, err })?;
        if sent != msg.len() {
            return Err(Error::Io {
                op,
                err: io::Error::new(io::ErrorKind::WriteZero, "short netlink send"),
            });
        }
        Ok(start)
    }

    /// Receives one whole datagram into `self.rx`, however large.
    fn recv_datagram(&mut self, op: &'static str) -> Result<(), Error> {
        let io_err = |err| Error::Io { op, err };
        loop {
            self.rx.clear();
            self.rx.reserve(64);
            let size = match self
                .sock
                .recv(&mut self.rx, libc::MSG_PEEK | libc::MSG_TRUNC)
            {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            self.rx.clear();
            self.rx.reserve(size.max(64));
            match self.sock.recv(&mut self.rx, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnf_core::netlink::{
        NlMsgHdr, NLMSGERR_ATTR_MSG, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK_TLVS, NLM_F_CAPPED,
    };

    const FAMILY: u16 = 0x1c;

    fn msg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut d = NlMsgHdr {
            len: (16 + payload.len()) as u32,
            ty,
            flags,
            seq,
            pid: 0,
        }
        .to_bytes()
        .to_vec();
        d.extend_from_slice(payload);
        while d.len() % 4 != 0 {
            d.push(0);
        }
        d
    }

    /// A capped NLMSG_ERROR as the kernel sends it, optionally with an
    /// ext-ack message.
    fn error(errno: i32, seq: u32, ext_ack: Option<&str>) -> Vec<u8> {
        let mut p = (-errno).to_ne_bytes().to_vec();
        p.extend_from_slice(
            &NlMsgHdr {
                len: 24,
                ty: FAMILY,
                flags: NLM_F_REQUEST | NLM_F_ACK,
                seq,
                pid: 77,
            }
            .to_bytes(),
        );
        let mut flags = NLM_F_CAPPED;
        if let Some(m) = ext_ack {
            flags |= NLM_F_ACK_TLVS;
            let mut tlv = [0u8; 128];
            let mut w = AttrWriter::new(&mut tlv);
            w.put_str(NLMSGERR_ATTR_MSG, m);
            let n = w.finish().unwrap();
            p.extend_from_slice(&tlv[..n]);
        }
        msg(NLMSG_ERROR, flags, seq, &p)
    }

    #[test]
    fn reply_then_ack() {
        let mut d = msg(FAMILY, 0, 5, &[1, 1, 0, 0, 8, 0, 1, 0, b'x', 0, 0, 0]);
        d.extend(error(0, 5, None));
        let mut replies = Vec::new();
        assert_eq!(
            process_datagram("status", &d, FAMILY, 5, &mut replies).unwrap(),
            Progress::Finished
        );
        assert_eq!(replies, vec![vec![1, 1, 0, 0, 8, 0, 1, 0, b'x', 0, 0, 0]]);
    }

    #[test]
    fn reply_without_ack_wants_more() {
        let d = msg(FAMILY, 0, 5, &[1, 1, 0, 0]);
        let mut replies = Vec::new();
        assert_eq!(
            process_datagram("status", &d, FAMILY, 5, &mut replies).unwrap(),
            Progress::More
        );
        assert_eq!(replies.len(), 1);
    }

    #[test]
    fn error_with_ext_ack() {
        let d = error(libc::EINVAL, 9, Some("hook stats unavailable"));
        let mut replies = Vec::new();
        let e = process_datagram("status", &d, FAMILY, 9, &mut replies).unwrap_err();
        match &e {
            Error::Kernel { op, errno, ext_ack } => {
                assert_eq!(*op, "status");
                assert_eq!(*errno, libc::EINVAL);
                assert_eq!(ext_ack.as_deref(), Some("hook stats unavailable"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "status: Invalid argument (EINVAL): hook stats unavailable"
        );
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn error_without_ext_ack() {
        let d = error(libc::EPERM, 9, None);
        let e = process_datagram("status", &d, FAMILY, 9, &mut Vec::new()).unwrap_err();
        assert!(matches!(
            e,
            Error::Kernel {
                errno: libc::EPERM,
                ext_ack: None,
                ..
            }
        ));
        assert_eq!(e.exit_code(), 4);
    }

    #[test]
    fn other_sequence_numbers_are_ignored() {
        let mut d = error(libc::EINVAL, 8, None);
        d.extend(msg(FAMILY, 0, 8, &[1, 1, 0, 0]));
        let mut replies = Vec::new();
        assert_eq!(
            process_datagram("status", &d, FAMILY, 9, &mut replies).unwrap(),
            Progress::More
        );
        assert!(replies.is_empty());
    }

    #[test]
    fn done_ends_a_dump() {
        let d = msg(NLMSG_DONE, netlink::NLM_F_MULTI, 3, &0i32.to_ne_bytes());
        assert_eq!(
            process_datagram("list", &d, FAMILY, 3, &mut Vec::new()).unwrap(),
            Progress::Finished
        );
    }

    #[test]
    fn interrupted_dump_is_an_error() {
        let d = msg(
            FAMILY,
            netlink::NLM_F_MULTI | NLM_F_DUMP_INTR,
            3,
            &[4, 1, 0, 0],
        );
        let e = process_datagram("list", &d, FAMILY, 3, &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "list: bad reply from the kernel: the rule set changed while it was being listed; run the command again"
        );
    }

    #[test]
    fn interrupted_volatile_dump_is_kept() {
        let mut d = msg(
            FAMILY,
            netlink::NLM_F_MULTI | NLM_F_DUMP_INTR,
            3,
            &[4, 1, 0, 0],
        );
        d.extend(msg(
            NLMSG_DONE,
            netlink::NLM_F_MULTI,
            3,
            &0i32.to_ne_bytes(),
        ));
        let mut replies = Vec::new();
        assert_eq!(
            process_datagram_opts("conntrack list", &d, FAMILY, 3, &mut replies, false).unwrap(),
            Progress::Finished
        );
        assert_eq!(replies, vec![vec![4, 1, 0, 0]]);
    }

    /// A `CTRL_CMD_GETFAMILY` reply's attributes with multicast groups.
    fn family_reply(groups: &[(&str, u32)]) -> Vec<u8> {
        let mut buf = vec![0u8; 512];
        let mut w = AttrWriter::new(&mut buf);
        w.put_u16(netlink::CTRL_ATTR_FAMILY_ID, 0x1f);
        w.put_str(netlink::CTRL_ATTR_FAMILY_NAME, "rnf");
        let n = w.begin_nested(CTRL_ATTR_MCAST_GROUPS);
        for (i, (name, id)) in groups.iter().enumerate() {
            let e = w.begin_nested(i as u16 + 1);
            w.put_u32(CTRL_ATTR_MCAST_GRP_ID, *id);
            w.put_str(CTRL_ATTR_MCAST_GRP_NAME, name);
            w.end_nested(e);
        }
        w.end_nested(n);
        let len = w.finish().unwrap();
        buf.truncate(len);
        buf
    }

    #[test]
    fn multicast_group_lookup() {
        let a = family_reply(&[("log", 5), ("conntrack", 6)]);
        assert_eq!(parse_mcast_group(&a, "conntrack"), Ok(Some(6)));
        assert_eq!(parse_mcast_group(&a, "log"), Ok(Some(5)));
        assert_eq!(parse_mcast_group(&a, "trace"), Ok(None));
        assert_eq!(parse_mcast_group(&family_reply(&[]), "conntrack"), Ok(None));
        let mut buf = vec![0u8; 64];
        let mut w = AttrWriter::new(&mut buf);
        w.put_u16(netlink::CTRL_ATTR_FAMILY_ID, 0x1f);
        let len = w.finish().unwrap();
        assert_eq!(parse_mcast_group(&buf[..len], "conntrack"), Ok(None));
        // A group without an id.
        let mut w = AttrWriter::new(&mut buf);
        let n = w.begin_nested(CTRL_ATTR_MCAST_GROUPS);
        let e = w.begin_nested(1);
        w.put_str(CTRL_ATTR_MCAST_GRP_NAME, "conntrack");
        w.end_nested(e);
        w.end_nested(n);
        let len = w.finish().unwrap();
        assert_eq!(
            parse_mcast_group(&buf[..len], "conntrack"),
            Err(WireError::Missing(CTRL_ATTR_MCAST_GRP_ID))
        );
    }

    #[test]
    fn notifications_of_the_family_only() {
        let mut d = msg(FAMILY, 0, 0, &[18, 1, 0, 0]);
        d.extend(msg(0x33, 0, 0, &[1, 1, 0, 0]));
        d.extend(msg(FAMILY, 0, 0, &[18, 1, 0, 0, 5, 0, 25, 0, 1, 0, 0, 0]));
        let n = notifications("monitor", &d, FAMILY).unwrap();
        assert_eq!(
            n,
            vec![
                vec![18, 1, 0, 0],
                vec![18, 1, 0, 0, 5, 0, 25, 0, 1, 0, 0, 0]
            ]
        );
        assert!(notifications("monitor", &[1, 2, 3], FAMILY).is_err());
    }

    #[test]
    fn timing_variable_and_line() {
        assert!(!timing_wanted(None));
        assert!(!timing_wanted(Some(OsStr::new(""))));
        assert!(timing_wanted(Some(OsStr::new("1"))));
        assert!(timing_wanted(Some(OsStr::new("0"))));
        assert_eq!(
            timing_line("add", Duration::from_micros(2104)),
            "rnfctl: timing: add 2104 us"
        );
        assert_eq!(
            timing_line("restore", Duration::from_nanos(999)),
            "rnfctl: timing: restore 0 us"
        );
    }

    #[test]
    fn built_request_layout() {
        let m = build_request(
            FAMILY,
            NLM_F_REQUEST | NLM_F_ACK,
            42,
            2,
            1,
            &[8, 0, 5, 0, 3, 0, 0, 0],
        )
        .unwrap();
        assert_eq!(m.len(), 28);
        let h = NlMsgHdr::parse(&m).unwrap();
        assert_eq!(
            h,
            NlMsgHdr {
                len: 28,
                ty: FAMILY,
                flags: NLM_F_REQUEST | NLM_F_ACK,
                seq: 42,
                pid: 0
            }
        );
        assert_eq!(&m[16..20], &[2, 1, 0, 0]);
        assert_eq!(&m[20..], &[8, 0, 5, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let e = process_datagram("status", &[1, 2, 3], FAMILY, 1, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, Error::Protocol { .. }), "{e:?}");
        let d = msg(0x99, 0, 1, &[]);
        let e = process_datagram("status", &d, FAMILY, 1, &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "status: bad reply from the kernel: unexpected message type 153"
        );
    }

    /// Opens a socket against the running kernel, or `None` where this
    /// sandbox has no netlink (then the live tests have nothing to check).
    fn live() -> Option<GenlSocket> {
        match GenlSocket::open() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("skipping live netlink test: {e}");
                None
            }
        }
    }

    #[test]
    fn live_resolve_controller_family() {
        let Some(mut s) = live() else { return };
        assert_eq!(s.resolve_family("nlctrl").unwrap(), netlink::GENL_ID_CTRL);
    }

    #[test]
    fn live_controller_multicast_group() {
        let Some(mut s) = live() else { return };
        // The controller itself has the group "notify".
        let (id, group) = s.resolve_group("nlctrl", "notify").unwrap();
        assert_eq!(id, netlink::GENL_ID_CTRL);
        let group = group.expect("nlctrl has a notify group");
        assert!(group > 0);
        assert_eq!(s.resolve_group("nlctrl", "nosuchgroup").unwrap().1, None);
        s.join_group("monitor", group).unwrap();
    }

    #[test]
    fn live_unknown_family_is_module_not_loaded() {
        let Some(mut s) = live() else { return };
        let e = s.resolve_family("rnfnosuchfam").unwrap_err();
        assert!(matches!(e, Error::ModuleNotLoaded), "{e:?}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn live_kernel_error_carries_ext_ack() {
        let Some(mut s) = live() else { return };
        // Family names are limited to GENL_NAMSIZ - 1 = 15 bytes: the
        // controller's policy rejects a longer one with an ext-ack message.
        let e = s.resolve_family("a-family-name-too-long").unwrap_err();
        let Error::Kernel { errno, ext_ack, .. } = &e else {
            panic!("unexpected {e:?}")
        };
        assert_eq!(*errno, libc::EINVAL);
        let msg = ext_ack.as_deref().expect("kernel sent an ext-ack message");
        assert!(!msg.is_empty());
        assert_eq!(
            e.to_string(),
            format!("looking up the generic netlink family: Invalid argument (EINVAL): {msg}")
        );
    }
}
