// SPDX-License-Identifier: GPL-2.0-only

//! Netlink and generic netlink message headers: encoding requests into a
//! caller buffer and parsing received datagrams, including `NLMSG_ERROR`
//! messages with extended-ack attributes.
//!
//! Used by `rnfctl`; the kernel module builds its messages with the kernel's
//! own helpers. Nothing here panics on any input.

use crate::wire::{AttrIter, AttrWriter, WireError};

/// Netlink messages are aligned to this many bytes (`NLMSG_ALIGNTO`).
pub const NLMSG_ALIGNTO: usize = 4;
/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct genlmsghdr`.
pub const GENL_HDRLEN: usize = 4;

/// `nlmsg_flags`: a request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `nlmsg_flags`: part of a multipart message ending with `NLMSG_DONE`.
pub const NLM_F_MULTI: u16 = 0x2;
/// `nlmsg_flags`: reply with an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;
/// `nlmsg_flags` of a GET request: dump everything (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `nlmsg_flags` of an `NLMSG_ERROR`: the original request's payload was left out.
pub const NLM_F_CAPPED: u16 = 0x100;
/// `nlmsg_flags` of an `NLMSG_ERROR` or `NLMSG_DONE`: extended-ack attributes follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// Message type: nothing.
pub const NLMSG_NOOP: u16 = 0x1;
/// Message type: error or acknowledgement.
pub const NLMSG_ERROR: u16 = 0x2;
/// Message type: end of a multipart message.
pub const NLMSG_DONE: u16 = 0x3;
/// Message type: data lost.
pub const NLMSG_OVERRUN: u16 = 0x4;

/// Extended-ack attribute: error message (string).
pub const NLMSGERR_ATTR_MSG: u16 = 1;
/// Extended-ack attribute: offset of the offending attribute in the request (`u32`).
pub const NLMSGERR_ATTR_OFFS: u16 = 2;
/// Extended-ack attribute: type of a missing required attribute (`u32`).
pub const NLMSGERR_ATTR_MISS_TYPE: u16 = 5;

/// Generic netlink controller family id.
pub const GENL_ID_CTRL: u16 = 0x10;
/// Controller command: look up a family.
pub const CTRL_CMD_GETFAMILY: u8 = 3;
/// Controller attribute: family id (`u16`).
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// Controller attribute: family name (string).
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// Version sent in controller requests.
pub const CTRL_VERSION: u8 = 1;

/// `len` rounded up to a multiple of [`NLMSG_ALIGNTO`], saturating.
pub const fn nlmsg_align(len: usize) -> usize {
    match len.checked_add(NLMSG_ALIGNTO - 1) {
        Some(v) => v & !(NLMSG_ALIGNTO - 1),
        None => usize::MAX & !(NLMSG_ALIGNTO - 1),
    }
}

fn array<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], WireError> {
    let end = at.checked_add(N).ok_or(WireError::Truncated)?;
    let bytes = buf.get(at..end).ok_or(WireError::Truncated)?;
    <[u8; N]>::try_from(bytes).map_err(|_| WireError::Truncated)
}

/// `struct nlmsghdr` (native endianness on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NlMsgHdr {
    /// Length of the message including this header.
    pub len: u32,
    /// Message type: `NLMSG_*` or a (generic netlink) family id.
    pub ty: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Port id of the sender (0 for the kernel).
    pub pid: u32,
}

impl NlMsgHdr {
    /// The header as it goes on the wire.
    pub fn to_bytes(&self) -> [u8; NLMSG_HDRLEN] {
        let mut b = [0u8; NLMSG_HDRLEN];
        let parts: [&[u8]; 5] = [
            &self.len.to_ne_bytes(),
            &self.ty.to_ne_bytes(),
            &self.flags.to_ne_bytes(),
            &self.seq.to_ne_bytes(),
            &self.pid.to_ne_bytes(),
        ];
        let mut at = 0;
        for p in parts {
            if let Some(dst) = b.get_mut(at..at + p.len()) {
                dst.copy_from_slice(p);
            }
            at += p.len();
        }
        b
    }

    /// Reads a header from the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        Ok(Self {
            len: u32::from_ne_bytes(array(buf, 0)?),
            ty: u16::from_ne_bytes(array(buf, 4)?),
            flags: u16::from_ne_bytes(array(buf, 6)?),
            seq: u32::from_ne_bytes(array(buf, 8)?),
            pid: u32::from_ne_bytes(array(buf, 12)?),
        })
    }
}

/// `struct genlmsghdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenlMsgHdr {
    /// Command.
    pub cmd: u8,
    /// Family protocol version.
    pub version: u8,
    /// Reserved, zero.
    pub reserved: u16,
}

impl GenlMsgHdr {
    /// The header as it goes on the wire.
    pub fn to_bytes(&self) -> [u8; GENL_HDRLEN] {
        let r = self.reserved.to_ne_bytes();
        [self.cmd, self.version, r[0], r[1]]
    }

    /// Splits the payload of a generic netlink message into its header and
    /// the attributes after it.
    pub fn split(payload: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let [cmd, version, r0, r1] = array::<GENL_HDRLEN>(payload, 0)?;
        let attrs = payload.get(GENL_HDRLEN..).ok_or(WireError::Truncated)?;
        Ok((
            Self {
                cmd,
                version,
                reserved: u16::from_ne_bytes([r0, r1]),
            },
            attrs,
        ))
    }
}

/// Encodes a generic netlink request into `buf`: `nlmsghdr`, `genlmsghdr`,
/// then the attributes `attrs` writes. Returns the message length, or
/// [`WireError::Overflow`] if `buf` is too small.
pub fn encode_genl_request(
    buf: &mut [u8],
    family_id: u16,
    flags: u16,
    seq: u32,
    cmd: u8,
    version: u8,
    attrs: impl FnOnce(&mut AttrWriter<'_>),
) -> Result<usize, WireError> {
    const HDRS: usize = NLMSG_HDRLEN + GENL_HDRLEN;
    let attr_len = {
        let body = buf.get_mut(HDRS..).ok_or(WireError::Overflow)?;
        let mut w = AttrWriter::new(body);
        attrs(&mut w);
        w.finish()?
    };
    let hdrs = genl_headers(family_id, flags, seq, cmd, version, attr_len)?;
    buf.get_mut(..HDRS)
        .ok_or(WireError::Overflow)?
        .copy_from_slice(&hdrs);
    Ok(HDRS + attr_len)
}

/// The `nlmsghdr` and `genlmsghdr` of a generic netlink request whose
/// attributes take `attr_len` bytes.
pub fn genl_headers(
    family_id: u16,
    flags: u16,
    seq: u32,
    cmd: u8,
    version: u8,
    attr_len: usize,
) -> Result<[u8; NLMSG_HDRLEN + GENL_HDRLEN], WireError> {
    let total = (NLMSG_HDRLEN + GENL_HDRLEN)
        .checked_add(attr_len)
        .ok_or(WireError::Overflow)?;
    let nlh = NlMsgHdr {
        len: u32::try_from(total).map_err(|_| WireError::Overflow)?,
        ty: family_id,
        flags,
        seq,
        pid: 0,
    }
    .to_bytes();
    let genl = GenlMsgHdr {
        cmd,
        version,
        reserved: 0,
    }
    .to_bytes();
    let mut out = [0u8; NLMSG_HDRLEN + GENL_HDRLEN];
    for (d, s) in out.iter_mut().zip(nlh.iter().chain(genl.iter())) {
        *d = *s;
    }
    Ok(out)
}

/// Encodes a controller `CTRL_CMD_GETFAMILY` request for the family `name`
/// (with `NLM_F_REQUEST | NLM_F_ACK`).
pub fn encode_get_family(buf: &mut [u8], seq: u32, name: &str) -> Result<usize, WireError> {
    encode_genl_request(
        buf,
        GENL_ID_CTRL,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        CTRL_CMD_GETFAMILY,
        CTRL_VERSION,
        |w| w.put_str(CTRL_ATTR_FAMILY_NAME, name),
    )
}

/// The family id in the attributes of a controller `GETFAMILY` reply.
pub fn parse_family_id(attrs: &[u8]) -> Result<u16, WireError> {
    AttrIter::new(attrs)
        .find(CTRL_ATTR_FAMILY_ID)?
        .ok_or(WireError::Missing(CTRL_ATTR_FAMILY_ID))?
        .u16()
}

/// An error or acknowledgement (`NLMSG_ERROR`), or the status at the end of
/// a dump (`NLMSG_DONE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlError<'a> {
    /// Positive errno (`-nlmsgerr.error`); 0 for an acknowledgement.
    pub errno: i32,
    /// Extended-ack message (`NLMSGERR_ATTR_MSG`), if the kernel sent one.
    pub ext_ack_msg: Option<&'a str>,
    /// Offset of the offending attribute in the request
    /// (`NLMSGERR_ATTR_OFFS`).
    pub ext_ack_offs: Option<u32>,
    /// Type of a missing required attribute (`NLMSGERR_ATTR_MISS_TYPE`).
    pub ext_ack_miss_type: Option<u32>,
    /// Header of the request this answers (`NLMSG_ERROR` only).
    pub request: Option<NlMsgHdr>,
}

impl<'a> NlError<'a> {
    /// Whether this is an acknowledgement rather than an error.
    pub const fn is_ack(&self) -> bool {
        self.errno == 0
    }

    fn new(error: i32, request: Option<NlMsgHdr>) -> Self {
        Self {
            errno: 0i32.saturating_sub(error),
            ext_ack_msg: None,
            ext_ack_offs: None,
            ext_ack_miss_type: None,
            request,
        }
    }

    /// Reads extended-ack attributes; malformed ones end the parse but do
    /// not hide the errno.
    fn read_tlvs(&mut self, tlvs: &'a [u8]) {
        for a in AttrIter::new(tlvs) {
            let Ok(a) = a else { break };
            match a.ty {
                NLMSGERR_ATTR_MSG => self.ext_ack_msg = a.str().ok(),
                NLMSGERR_ATTR_OFFS => self.ext_ack_offs = a.u32().ok(),
                NLMSGERR_ATTR_MISS_TYPE => self.ext_ack_miss_type = a.u32().ok(),
                _ => {}
            }
        }
    }

    /// Parses the payload of an `NLMSG_ERROR` message whose header has
    /// `flags`: `int error`, the original request's header (and its payload
    /// unless [`NLM_F_CAPPED`]), then extended-ack attributes if
    /// [`NLM_F_ACK_TLVS`].
    pub fn parse_error(flags: u16, payload: &'a [u8]) -> Result<Self, WireError> {
        let error = i32::from_ne_bytes(array(payload, 0)?);
        let req_at = 4;
        let request = NlMsgHdr::parse(payload.get(req_at..).ok_or(WireError::Truncated)?)?;
        let mut e = Self::new(error, Some(request));
        if flags & NLM_F_ACK_TLVS != 0 {
            let req_len = if flags & NLM_F_CAPPED != 0 {
                NLMSG_HDRLEN
            } else {
                let l = usize::try_from(request.len).map_err(|_| WireError::BadLength)?;
                if l < NLMSG_HDRLEN {
                    return Err(WireError::BadLength);
                }
                l
            };
            let tlv_at = nlmsg_align(req_at.saturating_add(req_len));
            let tlvs = payload.get(tlv_at..).ok_or(WireError::Truncated)?;
            e.read_tlvs(tlvs);
        }
        Ok(e)
    }

    /// Parses the payload of an `NLMSG_DONE` message whose header has
    /// `flags`: optionally `int error`, then extended-ack attributes if
    /// [`NLM_F_ACK_TLVS`].
    pub fn parse_done(flags: u16, payload: &'a [u8]) -> Result<Self, WireError> {
        if payload.is_empty() {
            return Ok(Self::new(0, None));
        }
        let error = i32::from_ne_bytes(array(payload, 0)?);
        let mut e = Self::new(error, None);
        if flags & NLM_F_ACK_TLVS != 0 {
            e.read_tlvs(payload.get(4..).unwrap_or(&[]));
        }
        Ok(e)
    }
}

/// What a received netlink message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgKind<'a> {
    /// `NLMSG_ERROR`: an error, or an acknowledgement when `errno` is 0.
    Error(NlError<'a>),
    /// `NLMSG_DONE`: the end of a dump.
    Done(NlError<'a>),
    /// `NLMSG_NOOP` or `NLMSG_OVERRUN`.
    Control(u16),
    /// A message of a family (generic netlink header and attributes).
    Data(&'a [u8]),
}

/// One netlink message of a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlMsg<'a> {
    /// The message header.
    pub header: NlMsgHdr,
    /// The bytes after the header, up to `header.len`.
    pub payload: &'a [u8],
}

impl<'a> NlMsg<'a> {
    /// Classifies the message and parses error and done payloads.
    pub fn kind(&self) -> Result<MsgKind<'a>, WireError> {
        Ok(match self.header.ty {
            NLMSG_ERROR => MsgKind::Error(NlError::parse_error(self.header.flags, self.payload)?),
            NLMSG_DONE => MsgKind::Done(NlError::parse_done(self.header.flags, self.payload)?),
            NLMSG_NOOP | NLMSG_OVERRUN => MsgKind::Control(self.header.ty),
            _ => MsgKind::Data(self.payload),
        })
    }
}

/// Iterator over the netlink messages in a received datagram; yields `Err`
/// for malformed data and then stops.
#[derive(Clone, Debug)]
pub struct MsgIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// The messages in the datagram `buf`.
pub const fn messages(buf: &[u8]) -> MsgIter<'_> {
    MsgIter {
        rest: buf,
        failed: false,
    }
}

impl<'a> MsgIter<'a> {
    fn next_msg(&mut self) -> Result<NlMsg<'a>, WireError> {
        let header = NlMsgHdr::parse(self.rest)?;
        let len = usize::try_from(header.len).map_err(|_| WireError::BadLength)?;
        if len < NLMSG_HDRLEN {
            return Err(WireError::BadLength);
        }
        let payload = self
            .rest
            .get(NLMSG_HDRLEN..len)
            .ok_or(WireError::Truncated)?;
        let advance = nlmsg_align(len).min(self.rest.len());
        self.rest = self.rest.get(advance..).unwrap_or(&[]);
        Ok(NlMsg { header, payload })
    }
}

impl<'a> Iterator for MsgIter<'a> {
    type Item = Result<NlMsg<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let r = self.next_msg();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::wire::Attr;
    use std::{vec, vec::Vec};

    /// Builds an NLMSG_ERROR datagram the way the kernel's `netlink_ack`
    /// does.
    fn error_datagram(error: i32, request: &[u8], capped: bool, msg: Option<&str>) -> Vec<u8> {
        let req_hdr = NlMsgHdr::parse(request).unwrap();
        let mut payload = error.to_ne_bytes().to_vec();
        if capped {
            payload.extend_from_slice(&request[..NLMSG_HDRLEN]);
        } else {
            payload.extend_from_slice(request);
        }
        while payload.len() % 4 != 0 {
            payload.push(0);
        }
        let mut flags = if capped { NLM_F_CAPPED } else { 0 };
        if let Some(m) = msg {
            flags |= NLM_F_ACK_TLVS;
            let mut tlv = [0u8; 256];
            let mut w = AttrWriter::new(&mut tlv);
            w.put_str(NLMSGERR_ATTR_MSG, m);
            w.put_u32(NLMSGERR_ATTR_OFFS, 20);
            let n = w.finish().unwrap();
            payload.extend_from_slice(&tlv[..n]);
        }
        let hdr = NlMsgHdr {
            len: (NLMSG_HDRLEN + payload.len()) as u32,
            ty: NLMSG_ERROR,
            flags,
            seq: req_hdr.seq,
            pid: 1234,
        };
        let mut d = hdr.to_bytes().to_vec();
        d.extend_from_slice(&payload);
        d
    }

    fn request() -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = encode_get_family(&mut buf, 7, "rnf").unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn genl_request_layout() {
        let req = request();
        assert_eq!(req.len(), 16 + 4 + 8);
        let h = NlMsgHdr::parse(&req).unwrap();
        assert_eq!(
            h,
            NlMsgHdr {
                len: 28,
                ty: GENL_ID_CTRL,
                flags: NLM_F_REQUEST | NLM_F_ACK,
                seq: 7,
                pid: 0
            }
        );
        let (g, attrs) = GenlMsgHdr::split(&req[16..]).unwrap();
        assert_eq!(g.cmd, CTRL_CMD_GETFAMILY);
        let a: Vec<Attr<'_>> = AttrIter::new(attrs).map(|a| a.unwrap()).collect();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].ty, CTRL_ATTR_FAMILY_NAME);
        assert_eq!(a[0].str(), Ok("rnf"));
        assert_eq!(a[0].payload, b"rnf\0");
    }

    #[test]
    fn genl_request_too_small() {
        for n in 0..28 {
            let mut buf = vec![0u8; n];
            assert_eq!(
                encode_get_family(&mut buf, 1, "rnf"),
                Err(WireError::Overflow)
            );
        }
    }

    #[test]
    fn error_capped_with_ext_ack() {
        let req = request();
        let d = error_datagram(-22, &req, true, Some("bad attribute"));
        let msgs: Vec<_> = messages(&d).collect();
        assert_eq!(msgs.len(), 1);
        let m = msgs[0].unwrap();
        assert_eq!(m.header.seq, 7);
        let MsgKind::Error(e) = m.kind().unwrap() else {
            panic!("not an error")
        };
        assert_eq!(e.errno, 22);
        assert!(!e.is_ack());
        assert_eq!(e.ext_ack_msg, Some("bad attribute"));
        assert_eq!(e.ext_ack_offs, Some(20));
        assert_eq!(e.request.unwrap().seq, 7);
    }

    #[test]
    fn error_uncapped_with_ext_ack() {
        // Uneven request length: the TLVs start at the aligned offset.
        let mut buf = [0u8; 64];
        let n = encode_genl_request(&mut buf, 0x20, NLM_F_REQUEST, 3, 1, 1, |w| w.put_u8(1, 1))
            .unwrap();
        let d = error_datagram(-2, &buf[..n], false, Some("no such thing"));
        let m = messages(&d).next().unwrap().unwrap();
        let MsgKind::Error(e) = m.kind().unwrap() else {
            panic!("not an error")
        };
        assert_eq!(e.errno, 2);
        assert_eq!(e.ext_ack_msg, Some("no such thing"));
    }

    #[test]
    fn error_without_ext_ack() {
        let d = error_datagram(-1, &request(), false, None);
        let m = messages(&d).next().unwrap().unwrap();
        assert_eq!(
            m.kind().unwrap(),
            MsgKind::Error(NlError {
                errno: 1,
                ext_ack_msg: None,
                ext_ack_offs: None,
                ext_ack_miss_type: None,
                request: NlMsgHdr::parse(&request()).ok(),
            })
        );
    }

    #[test]
    fn ack_and_data_in_one_datagram() {
        // A family reply followed by an ACK.
        let mut reply = [0u8; 64];
        let n = encode_genl_request(&mut reply, GENL_ID_CTRL, 0, 7, 1, 2, |w| {
            w.put_u16(CTRL_ATTR_FAMILY_ID, 0x1f);
            w.put_str(CTRL_ATTR_FAMILY_NAME, "rnf");
        })
        .unwrap();
        let mut d = reply[..n].to_vec();
        d.extend(error_datagram(0, &request(), true, None));
        let msgs: Vec<_> = messages(&d).map(|m| m.unwrap()).collect();
        assert_eq!(msgs.len(), 2);
        let MsgKind::Data(p) = msgs[0].kind().unwrap() else {
            panic!("not data")
        };
        let (g, attrs) = GenlMsgHdr::split(p).unwrap();
        assert_eq!(g.cmd, 1);
        assert_eq!(parse_family_id(attrs), Ok(0x1f));
        let MsgKind::Error(ack) = msgs[1].kind().unwrap() else {
            panic!("not an ack")
        };
        assert!(ack.is_ack());
    }

    #[test]
    fn family_id_missing() {
        let mut b = [0u8; 16];
        let mut w = AttrWriter::new(&mut b);
        w.put_str(CTRL_ATTR_FAMILY_NAME, "x");
        let n = w.finish().unwrap();
        assert_eq!(
            parse_family_id(&b[..n]),
            Err(WireError::Missing(CTRL_ATTR_FAMILY_ID))
        );
    }

    #[test]
    fn done_message() {
        let mut d = NlMsgHdr {
            len: 20,
            ty: NLMSG_DONE,
            flags: NLM_F_MULTI,
            seq: 1,
            pid: 0,
        }
        .to_bytes()
        .to_vec();
        d.extend_from_slice(&0i32.to_ne_bytes());
        let m = messages(&d).next().unwrap().unwrap();
        let MsgKind::Done(e) = m.kind().unwrap() else {
            panic!("not done")
        };
        assert!(e.is_ack());
    }

    #[test]
    fn malformed_datagrams() {
        assert_eq!(
            messages(&[0u8; 10]).collect::<Vec<_>>(),
            vec![Err(WireError::Truncated)]
        );
        let mut h = NlMsgHdr {
            len: 8,
            ..Default::default()
        }
        .to_bytes()
        .to_vec();
        assert_eq!(
            messages(&h).collect::<Vec<_>>(),
            vec![Err(WireError::BadLength)]
        );
        h[0..4].copy_from_slice(&100u32.to_ne_bytes());
        assert_eq!(
            messages(&h).collect::<Vec<_>>(),
            vec![Err(WireError::Truncated)]
        );
        // An error message too short for its payload.
        let h = NlMsgHdr {
            len: 20,
            ty: NLMSG_ERROR,
            ..Default::default()
        };
        let mut d = h.to_bytes().to_vec();
        d.extend_from_slice(&[0; 4]);
        let m = messages(&d).next().unwrap().unwrap();
        assert_eq!(m.kind(), Err(WireError::Truncated));
    }
}
