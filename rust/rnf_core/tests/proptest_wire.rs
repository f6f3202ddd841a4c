// SPDX-License-Identifier: GPL-2.0-only

//! Property tests: decoding arbitrary bytes never panics, and encoding into
//! any buffer either matches the measured encoding exactly or reports
//! `Overflow`.

use proptest::prelude::*;
use rnf_core::hooks::{hook_point, NUM_HOOK_POINTS};
use rnf_core::netlink::{self, MsgKind, NlError};
use rnf_core::wire::{
    encode_status, AttrIter, AttrWriter, HookStat, StatusReply, WireError, NLA_F_NESTED,
};

fn hook_stat() -> impl Strategy<Value = HookStat> {
    (0..NUM_HOOK_POINTS, any::<i32>(), any::<u64>(), any::<u64>()).prop_map(
        |(i, priority, packets, bytes)| {
            let (family, hook, stage) = hook_point(i).unwrap();
            HookStat {
                family,
                hook,
                stage,
                priority,
                packets,
                bytes,
            }
        },
    )
}

fn encode(
    buf: &mut [u8],
    version: &str,
    cookie: u64,
    stats: &[HookStat],
) -> (usize, Result<usize, WireError>) {
    let mut w = AttrWriter::new(buf);
    encode_status(&mut w, version, cookie, stats.iter().copied());
    (w.len(), w.finish())
}

/// Walks attributes recursively, touching every accessor.
fn walk(buf: &[u8], depth: u32) -> usize {
    let mut n = 0;
    for a in AttrIter::new(buf) {
        let Ok(a) = a else { break };
        n += 1;
        let _ = (a.u8(), a.u16(), a.u32(), a.u64(), a.i32(), a.str());
        assert!(a.ty & NLA_F_NESTED == 0);
        if depth < 4 {
            n += walk(a.payload, depth + 1);
        }
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn attr_iter_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let n = walk(&bytes, 0);
        // Every attribute takes at least 4 bytes.
        prop_assert!(n <= bytes.len() / 4 * 5);
        // At most one error, and it is the last item.
        let items: Vec<_> = AttrIter::new(&bytes).collect();
        if let Some(pos) = items.iter().position(|r| r.is_err()) {
            prop_assert_eq!(pos, items.len() - 1);
        }
    }

    #[test]
    fn status_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(r) = StatusReply::decode(&bytes) {
            let items: Vec<_> = r.hooks().take(1000).collect();
            if let Some(pos) = items.iter().position(|r| r.is_err()) {
                prop_assert_eq!(pos, items.len() - 1);
            }
        }
    }

    #[test]
    fn mutated_status_decode_never_panics(
        stats in proptest::collection::vec(hook_stat(), 0..8),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = vec![0u8; 2048];
        let (_, r) = encode(&mut buf, "0.1.0", 1, &stats);
        let len = r.unwrap();
        buf.truncate(len);
        for (i, b) in flips {
            let i = i.index(buf.len());
            buf[i] ^= b;
        }
        let end = cut.index(buf.len() + 1);
        if let Ok(r) = StatusReply::decode(&buf[..end]) {
            for h in r.hooks() {
                let _ = h;
            }
        }
    }

    #[test]
    fn encode_any_buffer_size(
        version in "[a-z0-9.\\-]{0,40}",
        cookie in any::<u64>(),
        stats in proptest::collection::vec(hook_stat(), 0..30),
        size in 0usize..1500,
    ) {
        let mut m = AttrWriter::measure();
        encode_status(&mut m, &version, cookie, stats.iter().copied());
        let need = m.finish().unwrap();
        prop_assert_eq!(need % 4, 0);

        let mut full = vec![0u8; need];
        let (_, r) = encode(&mut full, &version, cookie, &stats);
        prop_assert_eq!(r, Ok(need));

        let mut buf = vec![0x5au8; size];
        let (len, r) = encode(&mut buf, &version, cookie, &stats);
        prop_assert_eq!(len, need);
        if size >= need {
            prop_assert_eq!(r, Ok(need));
            prop_assert_eq!(&buf[..need], &full[..]);
            prop_assert!(buf[need..].iter().all(|&b| b == 0x5a));
        } else {
            prop_assert_eq!(r, Err(WireError::Overflow));
        }

        let reply = StatusReply::decode(&full).unwrap();
        prop_assert_eq!(reply.version, version.as_str());
        prop_assert_eq!(reply.netns_cookie, cookie);
        let got: Result<Vec<_>, _> = reply.hooks().collect();
        prop_assert_eq!(got.unwrap(), stats);
    }

    #[test]
    fn netlink_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for m in netlink::messages(&bytes) {
            let Ok(m) = m else { break };
            prop_assert!(m.payload.len() + 16 <= bytes.len());
            let _ = m.kind();
            let _ = NlError::parse_error(m.header.flags, m.payload);
            let _ = NlError::parse_done(m.header.flags, m.payload);
            if let Ok(MsgKind::Data(p)) = m.kind() {
                if let Ok((_, attrs)) = netlink::GenlMsgHdr::split(p) {
                    let _ = netlink::parse_family_id(attrs);
                    let _ = StatusReply::decode(attrs);
                }
            }
        }
    }

    #[test]
    fn error_payload_never_panics(
        flags in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok(e) = NlError::parse_error(flags, &payload) {
            prop_assert!(e.request.is_some());
        }
        let _ = NlError::parse_done(flags, &payload);
    }

    #[test]
    fn genl_request_any_buffer_size(
        name in "[a-z_]{0,30}",
        size in 0usize..100,
        seq in any::<u32>(),
    ) {
        let mut buf = vec![0u8; size];
        let need = 20 + 4 + (name.len() + 1).next_multiple_of(4);
        match netlink::encode_get_family(&mut buf, seq, &name) {
            Ok(n) => {
                prop_assert_eq!(n, need);
                let m = netlink::messages(&buf[..n]).next().unwrap().unwrap();
                prop_assert_eq!(m.header.seq, seq);
                prop_assert_eq!(m.header.len as usize, need);
            }
            Err(e) => {
                prop_assert_eq!(e, WireError::Overflow);
                prop_assert!(size < need);
            }
        }
    }
}
