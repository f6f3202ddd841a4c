// SPDX-License-Identifier: GPL-2.0-only

//! Helpers of the tests: decoding requests, and a stand-in for the kernel
//! that answers a rule set with the `GET_RULES` dump the protocol
//! describes.

use rnf_core::netlink::GenlMsgHdr;
use rnf_core::rules::{Policy, Table};
use rnf_core::ruleset_msg::{encode_chain_listing, ruleset_tables, ChainHeader, RuleEntry};
use rnf_core::wire::{attr, cmd, AttrIter, AttrWriter};

use crate::request::{encode, Request};

/// One top-level attribute: type, nested flag, payload.
pub type RawAttr = (u16, bool, Vec<u8>);

/// The top-level attributes of a request, in order.
pub fn attrs(r: &Request) -> Vec<RawAttr> {
    AttrIter::new(&r.attrs)
        .map(|a| {
            let a = a.expect("well-formed attributes");
            (a.ty, a.nested, a.payload.to_vec())
        })
        .collect()
}

/// Their types, in order.
pub fn types(r: &Request) -> Vec<u16> {
    attrs(r).into_iter().map(|(t, _, _)| t).collect()
}

/// The payload of the attribute of type `ty`.
pub fn get(r: &Request, ty: u16) -> Vec<u8> {
    attrs(r)
        .into_iter()
        .find(|(t, _, _)| *t == ty)
        .unwrap_or_else(|| panic!("no attribute {ty} in {:?}", types(r)))
        .2
}

/// A NUL-terminated string payload.
pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A reply message (genl header and attributes) for `command`.
pub fn reply(command: u8, f: impl Fn(&mut AttrWriter<'_>)) -> Vec<u8> {
    let mut m = GenlMsgHdr {
        cmd: command,
        version: 1,
        reserved: 0,
    }
    .to_bytes()
    .to_vec();
    m.extend(encode(f).unwrap());
    m
}

/// A rule of a canned listing: (handle, packets, bytes, blob).
pub type FakeRule = (u64, u64, u64, Vec<u8>);

/// One chain of a canned listing.
pub struct FakeChain<'a> {
    pub table: Table,
    pub name: &'a str,
    pub policy: Option<Policy>,
    pub packets: u64,
    pub bytes: u64,
    /// Rules in order.
    pub rules: Vec<FakeRule>,
}

/// The dump messages for `chains` at `generation`, one per chain.
pub fn dump(chains: &[FakeChain<'_>], generation: u64) -> Vec<Vec<u8>> {
    chains
        .iter()
        .map(|c| {
            reply(cmd::GET_RULES, |w| {
                encode_chain_listing(
                    w,
                    &ChainHeader {
                        table: c.table,
                        chain: c.name,
                        policy: c.policy,
                        packets: c.packets,
                        bytes: c.bytes,
                        generation,
                    },
                    c.rules
                        .iter()
                        .enumerate()
                        .map(|(i, (h, p, b, blob))| RuleEntry {
                            handle: *h,
                            position: i as u32,
                            packets: *p,
                            bytes: *b,
                            rule: blob,
                        }),
                )
            })
        })
        .collect()
}

/// What a kernel that took the `REPLACE_RULESET` request `r` would dump:
/// handles from 1 in file order, zero counters.
pub fn kernel_after_restore(r: &Request, generation: u64) -> Vec<Vec<u8>> {
    assert_eq!(r.cmd, cmd::REPLACE_RULESET);
    let payload = get(r, attr::RULESET);
    let mut handle = 0;
    let mut owned: Vec<(Table, String, Option<Policy>, Vec<FakeRule>)> = Vec::new();
    for t in ruleset_tables(&payload) {
        let t = t.unwrap();
        for c in t.chains() {
            let c = c.unwrap();
            let rules = c
                .rules()
                .map(|b| {
                    handle += 1;
                    (handle, 0, 0, b.unwrap().to_vec())
                })
                .collect();
            owned.push((t.table, c.name.to_string(), c.policy, rules));
        }
    }
    let chains: Vec<FakeChain<'_>> = owned
        .iter()
        .map(|(t, n, p, r)| FakeChain {
            table: *t,
            name: n,
            policy: *p,
            packets: 0,
            bytes: 0,
            rules: r.clone(),
        })
        .collect();
    dump(&chains, generation)
}
