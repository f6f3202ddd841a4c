// SPDX-License-Identifier: GPL-2.0-only

//! The fixed-offset header reads of the packet path, repeated, for
//! counting their instructions on the host (as `eval_icount`): `noted`
//! is what a filter hook does for a packet tracking noted
//! (`V4Ports::read`, its fingerprint, `V4Ports::facts`); `nat` one NAT
//! stage's rewrite from the note (`nat::manip_noted`, destination).
//!
//! ```text
//! cargo build --release -p rnf-core --example read_icount
//! for n in 0 1000; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/read_icount noted $n; done
//! ```
//! The difference of the two runs' totals over 1,000 is one read.

use rnf_core::nat::{self, Endpoint, Manip};
use rnf_core::packet::{self, V4Ports};
use std::hint::black_box;

/// A 46-byte UDP packet from 10.0.1.5:1234 to 10.0.2.2:9.
fn udp() -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 1, 5, 10, 0, 2, 2, 0x04, 0xd2, 0, 9, 0,
        26, 0, 0,
    ];
    p.resize(46, 0xab);
    p
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut p = udp();
    let facts = packet::parse(&p).unwrap();
    let shape = nat::noted_shape(&facts);
    let mut fp = facts.fingerprint();
    let mut to = Endpoint {
        addr: [0; 16],
        port: 22,
    };
    to.addr[..4].copy_from_slice(&[10, 0, 3, 3]);
    let mut back = Endpoint {
        addr: facts.dst,
        port: 9,
    };
    let mut sum = 0u64;
    for _ in 0..n {
        match what.as_str() {
            "noted" => {
                let pkt = black_box(&p[..]);
                if let Some(h) = V4Ports::read(pkt) {
                    if h.fingerprint() == black_box(fp) {
                        if let Some(f) = h.facts(pkt) {
                            sum += u64::from(black_box(f).total_len);
                        }
                    }
                }
            }
            "nat" => {
                // Back and forth between two destinations, each rewrite
                // checked against the fingerprint the last one gave.
                let q = black_box(&mut p[..]);
                let r =
                    nat::manip_noted(q, black_box((shape, fp)), Manip::Dst, &to, (false, false));
                if let nat::Noted::Done {
                    fingerprint: Some(f),
                    ..
                } = black_box(r)
                {
                    fp = f;
                }
                core::mem::swap(&mut to, &mut back);
            }
            _ => {}
        }
    }
    println!("{sum}");
}
