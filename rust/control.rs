// SPDX-License-Identifier: GPL-2.0

//! The `rnf` generic netlink family: how rnfctl talks to the module.
//!
//! The wire format (commands, attributes, encoding) is `wire`, shared with
//! rnfctl. Every command is admin-only: CAP_NET_ADMIN over the caller's
//! network namespace, checked by the kernel before a handler runs.

use crate::firewall::NetState;
use crate::genl::{self, AttrKind, Command, Request};
use crate::pernet::NetData;
use crate::wire::{self, attr, cmd, AttrWriter};
use kernel::c_str;
use kernel::prelude::*;

/// The attribute policy for requests, indexed by attribute type. Reply-only
/// attributes are refused in requests.
const POLICY: [AttrKind; attr::MAX as usize + 1] = [
    AttrKind::Reject, // UNSPEC
    AttrKind::Reject, // VERSION
    AttrKind::Reject, // NETNS_COOKIE
    AttrKind::Reject, // HOOK_STATS
    AttrKind::Reject, // PAD
];

const COMMANDS: [Command; 1] = [Command {
    cmd: cmd::GET_STATUS,
    admin: true,
}];

/// Registers the family.
pub fn register(module: &'static ThisModule) -> Result<genl::Registration> {
    genl::Registration::register::<Control>(
        module,
        c_str!("rnf"),
        u32::from(wire::FAMILY_VERSION),
        &POLICY,
        &COMMANDS,
    )
}

/// The family's request handler.
pub struct Control;

impl genl::Handler for Control {
    fn doit(req: &mut Request<'_>) -> Result {
        match req.cmd() {
            cmd::GET_STATUS => status(req),
            _ => {
                req.set_error(c_str!("rnf: unknown command"));
                Err(crate::errno::eopnotsupp())
            }
        }
    }
}

/// `GET_STATUS`: the module version and per-hook-point counters of the
/// caller's namespace.
fn status(req: &mut Request<'_>) -> Result {
    let net = req.net();
    let Some(state) = NetState::get(net) else {
        req.set_error(c_str!("rnf: no state for this network namespace"));
        return Err(ENODEV);
    };
    let cookie = net.cookie();
    let mut measure = AttrWriter::measure();
    wire::encode_status(&mut measure, crate::VERSION, cookie, state.hook_stats());
    let len = measure.len();
    req.reply(cmd::GET_STATUS, len, |buf| {
        let mut w = AttrWriter::new(buf);
        wire::encode_status(&mut w, crate::VERSION, cookie, state.hook_stats());
        match w.finish() {
            Ok(n) if n == len => Ok(()),
            _ => Err(crate::errno::emsgsize()),
        }
    })
}
