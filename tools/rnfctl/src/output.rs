// SPDX-License-Identifier: GPL-2.0-only

//! Human-readable and JSON output.

use rnf_core::wire::{HookStat, StatusReply, WireError};
use serde::Serialize;

/// A decoded status reply, owning its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Module version.
    pub version: String,
    /// Cookie of the module's network namespace.
    pub netns_cookie: u64,
    /// Counters of every hook point, sorted by family, hook and priority.
    pub hooks: Vec<HookStat>,
    /// Whether hook points without rules count (`None`: the module did
    /// not say).
    pub hook_counting: Option<bool>,
}

impl Status {
    /// Takes over a decoded reply; fails on the first malformed entry.
    pub fn from_reply(reply: &StatusReply<'_>) -> Result<Self, WireError> {
        let mut hooks = reply.hooks().collect::<Result<Vec<_>, _>>()?;
        hooks.sort_by_key(|h| (h.family, h.hook, h.priority, h.stage));
        Ok(Self {
            version: reply.version.to_owned(),
            netns_cookie: reply.netns_cookie,
            hooks,
            hook_counting: reply.hook_counting,
        })
    }
}

#[derive(Serialize)]
struct HookJson {
    family: &'static str,
    hook: &'static str,
    stage: &'static str,
    priority: i32,
    packets: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    version: &'a str,
    netns_cookie: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook_counting: Option<bool>,
    hooks: Vec<HookJson>,
}

/// The status as one line of JSON (all stages).
pub fn status_json(s: &Status) -> String {
    let j = StatusJson {
        version: &s.version,
        netns_cookie: s.netns_cookie,
        hook_counting: s.hook_counting,
        hooks: s
            .hooks
            .iter()
            .map(|h| HookJson {
                family: h.family.name(),
                hook: h.hook.name(),
                stage: h.stage.name(),
                priority: h.priority,
                packets: h.packets,
                bytes: h.bytes,
            })
            .collect(),
    };
    // Serializing plain structs of strings and integers cannot fail.
    serde_json::to_string(&j).unwrap_or_default()
}

/// Column alignment.
#[derive(Clone, Copy)]
pub enum Align {
    /// Text to the left.
    Left,
    /// Text to the right (numbers).
    Right,
}

/// Formats rows as columns separated by two spaces; each column is as wide
/// as its widest cell, and at least its minimum width. Lines have no
/// trailing spaces.
pub fn table(header: &[&str], align: &[Align], min: &[usize], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header
        .iter()
        .zip(min)
        .map(|(h, m)| h.len().max(*m))
        .collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, ((c, w), a)) in r.iter().zip(&width).zip(align).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            match a {
                Align::Left => line.push_str(&format!("{c:<w$}")),
                Align::Right => line.push_str(&format!("{c:>w$}")),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The note `status` prints while hook counters are off.
pub const HOOK_COUNTERS_OFF: &str = "hook counters: off: only stages with rules count \
     (rnfctl hook-counters on)\n";

/// The status for people. Without `verbose`, one row per family and hook
/// with the counters of the hook's first stage (the one that sees every
/// packet); with `verbose`, one row per stage.
pub fn status_human(s: &Status, verbose: bool) -> String {
    use Align::{Left, Right};
    let mut out = format!("rnf {} (netns cookie {})\n", s.version, s.netns_cookie);
    if s.hook_counting == Some(false) {
        out.push_str(HOOK_COUNTERS_OFF);
    }
    if verbose {
        let rows: Vec<Vec<String>> = s
            .hooks
            .iter()
            .map(|h| {
                vec![
                    h.family.name().to_string(),
                    h.hook.name().to_string(),
                    h.stage.name().to_string(),
                    h.priority.to_string(),
                    h.packets.to_string(),
                    h.bytes.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["FAMILY", "HOOK", "STAGE", "PRIORITY", "PACKETS", "BYTES"],
            &[Left, Left, Left, Right, Right, Right],
            &[6, 11, 7, 8, 7, 9],
            &rows,
        ));
    } else {
        // `hooks` is sorted by family, hook and priority: the first entry of
        // each (family, hook) run is its first stage.
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut last = None;
        for h in &s.hooks {
            if last == Some((h.family, h.hook)) {
                continue;
            }
            last = Some((h.family, h.hook));
            rows.push(vec![
                h.family.name().to_string(),
                h.hook.name().to_string(),
                h.packets.to_string(),
                h.bytes.to_string(),
            ]);
        }
        out.push_str(&table(
            &["FAMILY", "HOOK", "PACKETS", "BYTES"],
            &[Left, Left, Right, Right],
            &[6, 11, 7, 9],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnf_core::hooks::{Family, Hook, Stage};
    use rnf_core::wire::{encode_status, AttrWriter};

    fn stat(family: Family, hook: Hook, stage: Stage, packets: u64, bytes: u64) -> HookStat {
        HookStat {
            family,
            hook,
            stage,
            priority: stage.priority(),
            packets,
            bytes,
        }
    }

    /// Encodes a canned reply the way the kernel does, out of order, and
    /// decodes it again.
    fn canned() -> Status {
        use Family::*;
        use Hook::*;
        use Stage::*;
        let stats = [
            stat(Ipv4, LocalIn, Filter, 5, 400),
            stat(Ipv4, PreRouting, Mangle, 11, 1000),
            stat(Ipv4, PreRouting, Raw, 12, 1008),
            stat(Ipv6, PostRouting, Mangle, 1234567, 987654321),
            stat(Ipv4, LocalIn, Mangle, 6, 480),
        ];
        let mut m = AttrWriter::measure();
        encode_status(&mut m, "0.1.0", 4097, stats.iter().copied());
        let mut buf = vec![0u8; m.len()];
        let mut w = AttrWriter::new(&mut buf);
        encode_status(&mut w, "0.1.0", 4097, stats.iter().copied());
        w.finish().unwrap();
        let reply = StatusReply::decode(&buf).unwrap();
        Status::from_reply(&reply).unwrap()
    }

    #[test]
    fn human() {
        assert_eq!(
            status_human(&canned(), false),
            "\
rnf 0.1.0 (netns cookie 4097)
FAMILY  HOOK         PACKETS      BYTES
ipv4    PREROUTING        12       1008
ipv4    INPUT              6        480
ipv6    POSTROUTING  1234567  987654321
"
        );
    }

    #[test]
    fn human_matches_documented_layout_for_small_numbers() {
        let s = Status {
            version: "0.1.0".into(),
            netns_cookie: 4097,
            hooks: vec![stat(Family::Ipv4, Hook::PreRouting, Stage::Raw, 12, 1008)],
            hook_counting: None,
        };
        assert_eq!(
            status_human(&s, false),
            "\
rnf 0.1.0 (netns cookie 4097)
FAMILY  HOOK         PACKETS      BYTES
ipv4    PREROUTING        12       1008
"
        );
    }

    #[test]
    fn wide_numbers_widen_columns() {
        let s = Status {
            version: "0.1.0".into(),
            netns_cookie: 1,
            hooks: vec![stat(
                Family::Ipv4,
                Hook::Forward,
                Stage::Mangle,
                u64::MAX,
                1,
            )],
            hook_counting: Some(true),
        };
        assert_eq!(
            status_human(&s, false),
            "\
rnf 0.1.0 (netns cookie 1)
FAMILY  HOOK                      PACKETS      BYTES
ipv4    FORWARD      18446744073709551615          1
"
        );
    }

    #[test]
    fn human_says_when_hook_counters_are_off() {
        let mut s = canned();
        s.hook_counting = Some(false);
        let out = status_human(&s, false);
        assert!(out.starts_with("rnf 0.1.0 (netns cookie 4097)\nhook counters: off: only stages with rules count (rnfctl hook-counters on)\nFAMILY"), "{out}");
        let j = status_json(&s);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["hook_counting"], false);
        s.hook_counting = Some(true);
        assert!(!status_human(&s, true).contains("hook counters"));
    }

    #[test]
    fn human_verbose() {
        assert_eq!(
            status_human(&canned(), true),
            "\
rnf 0.1.0 (netns cookie 4097)
FAMILY  HOOK         STAGE    PRIORITY  PACKETS      BYTES
ipv4    PREROUTING   raw          -300       12       1008
ipv4    PREROUTING   mangle       -150       11       1000
ipv4    INPUT        mangle       -150        6        480
ipv4    INPUT        filter          0        5        400
ipv6    POSTROUTING  mangle       -150  1234567  987654321
"
        );
    }

    #[test]
    fn json() {
        let j = status_json(&canned());
        assert!(j.starts_with(
            r#"{"version":"0.1.0","netns_cookie":4097,"hooks":[{"family":"ipv4","hook":"PREROUTING","stage":"raw","priority":-300,"packets":12,"bytes":1008},"#
        ), "{j}");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        let hooks = v["hooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 5, "all stages are listed");
        assert_eq!(hooks[4]["family"], "ipv6");
        assert_eq!(hooks[4]["hook"], "POSTROUTING");
        assert_eq!(hooks[4]["stage"], "mangle");
        assert_eq!(hooks[4]["bytes"], 987654321u64);
    }

    #[test]
    fn malformed_entry_is_an_error() {
        let mut buf = [0u8; 128];
        let mut w = AttrWriter::new(&mut buf);
        w.put_str(rnf_core::wire::attr::VERSION, "0.1.0");
        w.put_u64(rnf_core::wire::attr::NETNS_COOKIE, 1);
        let n = w.begin_nested(rnf_core::wire::attr::HOOK_STATS);
        let e = w.begin_nested(rnf_core::wire::hook_stats::ENTRY);
        w.put_u8(rnf_core::wire::hook_stat::FAMILY, 2);
        w.end_nested(e);
        w.end_nested(n);
        let len = w.finish().unwrap();
        let reply = StatusReply::decode(&buf[..len]).unwrap();
        assert_eq!(
            Status::from_reply(&reply),
            Err(WireError::Missing(rnf_core::wire::hook_stat::HOOK))
        );
    }
}
