// SPDX-License-Identifier: GPL-2.0-only

//! `rnfctl status`.

use rnf_core::wire::{self, StatusReply};

use crate::cli::{OnOff, StatusArgs};
use crate::error::Error;
use crate::nl::GenlSocket;
use crate::output::{self, Status};

const OP: &str = "status";

/// Asks the kernel for its status.
pub fn fetch() -> Result<Status, Error> {
    let mut sock = GenlSocket::open()?;
    let family = sock.resolve_family(wire::FAMILY_NAME)?;
    let replies = sock.request(
        OP,
        family,
        wire::cmd::GET_STATUS,
        wire::FAMILY_VERSION,
        0,
        |_| {},
    )?;
    decode(&replies)
}

/// Decodes the replies to a `GET_STATUS` request.
pub fn decode(replies: &[Vec<u8>]) -> Result<Status, Error> {
    let reply = replies.first().ok_or_else(|| Error::Protocol {
        op: OP,
        detail: "the kernel acknowledged but sent no status".into(),
    })?;
    let (_, attrs) = rnf_core::netlink::GenlMsgHdr::split(reply).map_err(|e| Error::wire(OP, e))?;
    let reply = StatusReply::decode(attrs).map_err(|e| Error::wire(OP, e))?;
    Status::from_reply(&reply).map_err(|e| Error::wire(OP, e))
}

/// Runs `rnfctl hook-counters [on|off]` and returns what to print.
pub fn hook_counters(state: Option<OnOff>) -> Result<String, Error> {
    const OP: &str = "hook-counters";
    let Some(state) = state else {
        return Ok(match fetch()?.hook_counting {
            Some(true) => "on\n".into(),
            Some(false) => "off\n".into(),
            None => {
                return Err(Error::Protocol {
                    op: OP,
                    detail: "the loaded rnf module does not report hook counting \
                             (it is older than this rnfctl)"
                        .into(),
                })
            }
        });
    };
    let mut sock = GenlSocket::open()?;
    let family = sock.resolve_family(wire::FAMILY_NAME)?;
    sock.request(
        OP,
        family,
        wire::cmd::SET_HOOK_COUNTING,
        wire::FAMILY_VERSION,
        0,
        |w| w.put_u8(wire::attr::HOOK_COUNTING, u8::from(state == OnOff::On)),
    )?;
    Ok(String::new())
}

/// Runs `rnfctl status` and returns what to print.
pub fn run(args: &StatusArgs) -> Result<String, Error> {
    let status = fetch()?;
    Ok(render(&status, args))
}

/// The output for `args`.
pub fn render(status: &Status, args: &StatusArgs) -> String {
    if args.json {
        let mut s = output::status_json(status);
        s.push('\n');
        s
    } else {
        output::status_human(status, args.verbose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnf_core::hooks::{Family, Hook, Stage};
    use rnf_core::netlink::GenlMsgHdr;
    use rnf_core::wire::{encode_status, AttrWriter, HookStat};

    fn reply_payload() -> Vec<u8> {
        let stats = [HookStat {
            family: Family::Ipv6,
            hook: Hook::Forward,
            stage: Stage::Filter,
            priority: 0,
            packets: 3,
            bytes: 300,
        }];
        let mut buf = vec![0u8; 256];
        buf[..4].copy_from_slice(
            &GenlMsgHdr {
                cmd: wire::cmd::GET_STATUS,
                version: 1,
                reserved: 0,
            }
            .to_bytes(),
        );
        let mut w = AttrWriter::new(&mut buf[4..]);
        encode_status(&mut w, "0.1.0", 7, stats.into_iter());
        let n = w.finish().unwrap();
        buf.truncate(4 + n);
        buf
    }

    #[test]
    fn decode_and_render() {
        let s = decode(&[reply_payload()]).unwrap();
        let human = render(
            &s,
            &StatusArgs {
                json: false,
                verbose: false,
            },
        );
        assert_eq!(
            human,
            "rnf 0.1.0 (netns cookie 7)\n\
             FAMILY  HOOK         PACKETS      BYTES\n\
             ipv6    FORWARD            3        300\n"
        );
        let json = render(
            &s,
            &StatusArgs {
                json: true,
                verbose: true,
            },
        );
        assert_eq!(
            json,
            "{\"version\":\"0.1.0\",\"netns_cookie\":7,\"hooks\":[{\"family\":\"ipv6\",\"hook\":\"FORWARD\",\"stage\":\"filter\",\"priority\":0,\"packets\":3,\"bytes\":300}]}\n"
        );
    }

    #[test]
    fn no_reply_or_bad_reply() {
        let e = decode(&[]).unwrap_err();
        assert!(matches!(e, Error::Protocol { .. }));
        let e = decode(&[vec![1, 1]]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "status: bad reply from the kernel: truncated netlink data"
        );
        let mut p = reply_payload();
        p.truncate(4);
        let e = decode(&[p]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "status: bad reply from the kernel: required netlink attribute missing (type 1)"
        );
    }
}
