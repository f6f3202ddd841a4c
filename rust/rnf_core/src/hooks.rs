// SPDX-License-Identifier: GPL-2.0-only

//! Netfilter address families, hooks and the stages (iptables tables) that
//! rnf registers on them.
//!
//! A *hook point* is one `(family, hook, stage)` triple; there are
//! [`NUM_HOOK_POINTS`] of them, numbered densely by [`hook_point_index`].

/// Netfilter protocol family (`NFPROTO_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Family {
    /// `NFPROTO_IPV4`.
    Ipv4 = 2,
    /// `NFPROTO_IPV6`.
    Ipv6 = 10,
}

impl Family {
    /// The family with the `NFPROTO_*` value `v`, if rnf handles it.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            2 => Some(Self::Ipv4),
            10 => Some(Self::Ipv6),
            _ => None,
        }
    }

    /// Lower-case name: `"ipv4"` or `"ipv6"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
        }
    }

    /// Position of the family in [`FAMILIES`].
    const fn ordinal(self) -> usize {
        match self {
            Self::Ipv4 => 0,
            Self::Ipv6 => 1,
        }
    }
}

/// Netfilter hook of the inet families (`NF_INET_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Hook {
    /// `NF_INET_PRE_ROUTING`.
    PreRouting = 0,
    /// `NF_INET_LOCAL_IN`.
    LocalIn = 1,
    /// `NF_INET_FORWARD`.
    Forward = 2,
    /// `NF_INET_LOCAL_OUT`.
    LocalOut = 3,
    /// `NF_INET_POST_ROUTING`.
    PostRouting = 4,
}

impl Hook {
    /// All hooks in packet-path (numeric) order.
    pub const ALL: [Hook; 5] = [
        Hook::PreRouting,
        Hook::LocalIn,
        Hook::Forward,
        Hook::LocalOut,
        Hook::PostRouting,
    ];

    /// The hook with the `NF_INET_*` value `v`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::PreRouting),
            1 => Some(Self::LocalIn),
            2 => Some(Self::Forward),
            3 => Some(Self::LocalOut),
            4 => Some(Self::PostRouting),
            _ => None,
        }
    }

    /// iptables chain name: `"PREROUTING"`, `"INPUT"`, `"FORWARD"`,
    /// `"OUTPUT"` or `"POSTROUTING"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::PreRouting => "PREROUTING",
            Self::LocalIn => "INPUT",
            Self::Forward => "FORWARD",
            Self::LocalOut => "OUTPUT",
            Self::PostRouting => "POSTROUTING",
        }
    }
}

/// Processing stage: which iptables table a hook registration stands for.
///
/// NAT is split into destination NAT (on `PREROUTING` and `OUTPUT`) and
/// source NAT (on `INPUT` and `POSTROUTING`) because the two run at different
/// priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Stage {
    /// The `raw` table (`NF_IP_PRI_RAW`, -300).
    Raw = 0,
    /// The `mangle` table (`NF_IP_PRI_MANGLE`, -150).
    Mangle = 1,
    /// Destination NAT (`NF_IP_PRI_NAT_DST`, -100).
    NatDst = 2,
    /// The `filter` table (`NF_IP_PRI_FILTER`, 0).
    Filter = 3,
    /// Source NAT (`NF_IP_PRI_NAT_SRC`, 100).
    NatSrc = 4,
}

impl Stage {
    /// All stages in priority order.
    pub const ALL: [Stage; 5] = [
        Stage::Raw,
        Stage::Mangle,
        Stage::NatDst,
        Stage::Filter,
        Stage::NatSrc,
    ];

    /// The stage with discriminant `v`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Raw),
            1 => Some(Self::Mangle),
            2 => Some(Self::NatDst),
            3 => Some(Self::Filter),
            4 => Some(Self::NatSrc),
            _ => None,
        }
    }

    /// Netfilter hook priority: the iptables `NF_IP_PRI_*` value (the
    /// `NF_IP6_PRI_*` values are the same).
    pub const fn priority(self) -> i32 {
        match self {
            Self::Raw => -300,
            Self::Mangle => -150,
            Self::NatDst => -100,
            Self::Filter => 0,
            Self::NatSrc => 100,
        }
    }

    /// Name: `"raw"`, `"mangle"`, `"nat-dst"`, `"filter"` or `"nat-src"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Mangle => "mangle",
            Self::NatDst => "nat-dst",
            Self::Filter => "filter",
            Self::NatSrc => "nat-src",
        }
    }
}

/// Families rnf registers hooks for, in index order.
pub const FAMILIES: [Family; 2] = [Family::Ipv4, Family::Ipv6];

/// The `(hook, stage)` pairs where iptables has a table, sorted by hook and
/// then by priority. The same pairs are used for every family.
pub const HOOK_STAGES: [(Hook, Stage); 14] = [
    (Hook::PreRouting, Stage::Raw),
    (Hook::PreRouting, Stage::Mangle),
    (Hook::PreRouting, Stage::NatDst),
    (Hook::LocalIn, Stage::Mangle),
    (Hook::LocalIn, Stage::Filter),
    (Hook::LocalIn, Stage::NatSrc),
    (Hook::Forward, Stage::Mangle),
    (Hook::Forward, Stage::Filter),
    (Hook::LocalOut, Stage::Raw),
    (Hook::LocalOut, Stage::Mangle),
    (Hook::LocalOut, Stage::NatDst),
    (Hook::LocalOut, Stage::Filter),
    (Hook::PostRouting, Stage::Mangle),
    (Hook::PostRouting, Stage::NatSrc),
];

/// Number of hook points: every family times every entry of [`HOOK_STAGES`].
pub const NUM_HOOK_POINTS: usize = FAMILIES.len() * HOOK_STAGES.len();

/// Dense index `0..NUM_HOOK_POINTS` of a hook point: family-major, then in
/// [`HOOK_STAGES`] order. `None` if iptables has no such table on the hook.
pub const fn hook_point_index(family: Family, hook: Hook, stage: Stage) -> Option<usize> {
    let mut rest: &[(Hook, Stage)] = &HOOK_STAGES;
    let mut i = 0;
    while let [(h, s), tail @ ..] = rest {
        if *h as u8 == hook as u8 && *s as u8 == stage as u8 {
            return Some(family.ordinal() * HOOK_STAGES.len() + i);
        }
        rest = tail;
        i += 1;
    }
    None
}

/// The positions `start..end` of `hook`'s entries in [`HOOK_STAGES`],
/// worked out at compile time.
const fn stages_of(hook: Hook) -> (usize, usize) {
    let (mut i, mut start, mut end) = (0, usize::MAX, 0);
    let mut rest: &[(Hook, Stage)] = &HOOK_STAGES;
    while let [(h, _), tail @ ..] = rest {
        if *h as u8 == hook as u8 {
            if start == usize::MAX {
                start = i;
            }
            end = i + 1;
        }
        rest = tail;
        i += 1;
    }
    if start == usize::MAX {
        return (0, 0);
    }
    (start, end)
}

const PRE_ROUTING_STAGES: (usize, usize) = stages_of(Hook::PreRouting);
const LOCAL_IN_STAGES: (usize, usize) = stages_of(Hook::LocalIn);
const FORWARD_STAGES: (usize, usize) = stages_of(Hook::Forward);
const LOCAL_OUT_STAGES: (usize, usize) = stages_of(Hook::LocalOut);
const POST_ROUTING_STAGES: (usize, usize) = stages_of(Hook::PostRouting);

/// The hook points of `hook` in `family`: the dense indices `start..end`
/// ([`HOOK_STAGES`] lists each hook's stages together, by priority). The
/// packet path asks this for every packet: a table, not a search.
pub const fn hook_points_of(family: Family, hook: Hook) -> (usize, usize) {
    let base = family.ordinal() * HOOK_STAGES.len();
    let (start, end) = match hook {
        Hook::PreRouting => PRE_ROUTING_STAGES,
        Hook::LocalIn => LOCAL_IN_STAGES,
        Hook::Forward => FORWARD_STAGES,
        Hook::LocalOut => LOCAL_OUT_STAGES,
        Hook::PostRouting => POST_ROUTING_STAGES,
    };
    (base + start, base + end)
}

/// The hook points of `hook` in `family` as a mask (bit `i`: point `i`),
/// the range [`hook_points_of`] gives. `NUM_HOOK_POINTS` is below 64.
pub const fn hook_points_mask(family: Family, hook: Hook) -> u64 {
    let (start, end) = hook_points_of(family, hook);
    (1u64 << end) - (1u64 << start)
}

/// The hook point with dense index `index`; the inverse of
/// [`hook_point_index`].
pub fn hook_point(index: usize) -> Option<(Family, Hook, Stage)> {
    let family = match index / HOOK_STAGES.len() {
        0 => Family::Ipv4,
        1 => Family::Ipv6,
        _ => return None,
    };
    let (hook, stage) = *HOOK_STAGES.get(index % HOOK_STAGES.len())?;
    Some((family, hook, stage))
}

/// Priority of connection tracking (`NF_IP_PRI_CONNTRACK`).
pub const PRI_CONNTRACK: i32 = -200;
/// Priority of confirmation (`NF_IP_PRI_CONNTRACK_CONFIRM`).
pub const PRI_CONFIRM: i32 = i32::MAX;

/// Tracking's hooks: (family, hook, priority), the [`CT_TRACKING`] that
/// track first (where packets enter: PREROUTING and OUTPUT), then those
/// that confirm (where they leave: INPUT and POSTROUTING), as
/// nf_conntrack's.
pub const CT_HOOKS: [(Family, Hook, i32); 8] = [
    (Family::Ipv4, Hook::PreRouting, PRI_CONNTRACK),
    (Family::Ipv4, Hook::LocalOut, PRI_CONNTRACK),
    (Family::Ipv6, Hook::PreRouting, PRI_CONNTRACK),
    (Family::Ipv6, Hook::LocalOut, PRI_CONNTRACK),
    (Family::Ipv4, Hook::LocalIn, PRI_CONFIRM),
    (Family::Ipv4, Hook::PostRouting, PRI_CONFIRM),
    (Family::Ipv6, Hook::LocalIn, PRI_CONFIRM),
    (Family::Ipv6, Hook::PostRouting, PRI_CONFIRM),
];

/// How many of [`CT_HOOKS`] come first and track (the rest confirm).
pub const CT_TRACKING: usize = 4;

/// The NAT stage beside tracking's hook `i` (of [`CT_HOOKS`]): nat-dst
/// where it tracks, nat-src where it confirms.
const fn ct_nat_stage(i: usize) -> Stage {
    if i < CT_TRACKING {
        Stage::NatDst
    } else {
        Stage::NatSrc
    }
}

/// The NAT point on the (family, hook) of tracking's hook `i` (of
/// [`CT_HOOKS`]), at [`ct_nat_stage`]. Every one of tracking's hooks has
/// one; `None` for `i` out of range.
pub const fn ct_nat_point(i: usize) -> Option<usize> {
    let mut rest: &[(Family, Hook, i32)] = &CT_HOOKS;
    let mut j = 0;
    while let [(family, hook, _), tail @ ..] = rest {
        if j == i {
            return hook_point_index(*family, *hook, ct_nat_stage(i));
        }
        rest = tail;
        j += 1;
    }
    None
}

/// Whether a point of `hook` in `family` with a priority strictly between
/// `lo` and `hi` is in `points`.
const fn hooked_between(points: u64, family: Family, hook: Hook, (lo, hi): (i32, i32)) -> bool {
    let mut rest: &[(Hook, Stage)] = &HOOK_STAGES;
    let mut p = family.ordinal() * HOOK_STAGES.len();
    while let [(h, stage), tail @ ..] = rest {
        let pr = stage.priority();
        if *h as u8 == hook as u8 && points & (1u64 << p) != 0 && pr > lo && pr < hi {
            return true;
        }
        rest = tail;
        p += 1;
    }
    false
}

/// Which of tracking's hooks (bit `i`: [`CT_HOOKS`]`[i]`) leave their work
/// to the NAT point of their (family, hook) ([`ct_nat_point`]) while the
/// hook points in `points` are hooked: those whose NAT point is hooked with
/// no hooked point between the two priorities. That point then tracks the
/// packet just before its own stage (nat-dst, at -100 rather than -200) or
/// confirms its flow just after (nat-src, at 100 rather than last), in
/// the same callback: one netfilter hook fewer where the packet enters
/// and one fewer where it leaves. No stage of rnf runs in between, so rnf's
/// rules see the same states either way; only other netfilter users
/// between the two priorities see rnf's tracking done earlier or later.
pub const fn fused_ct_hooks(points: u64) -> u64 {
    let mut out = 0u64;
    let mut rest: &[(Family, Hook, i32)] = &CT_HOOKS;
    let mut i = 0;
    while let [(family, hook, priority), tail @ ..] = rest {
        if let Some(nat) = ct_nat_point(i) {
            let nat_priority = ct_nat_stage(i).priority();
            let between = if *priority < nat_priority {
                (*priority, nat_priority)
            } else {
                (nat_priority, *priority)
            };
            if points & (1u64 << nat) != 0 && !hooked_between(points, *family, *hook, between) {
                out |= 1u64 << i;
            }
        }
        rest = tail;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_stages_distinct_and_sorted() {
        assert_eq!(NUM_HOOK_POINTS, 28);
        for (i, a) in HOOK_STAGES.iter().enumerate() {
            for b in &HOOK_STAGES[i + 1..] {
                assert_ne!(a, b, "duplicate entry");
            }
        }
        for w in HOOK_STAGES.windows(2) {
            let (h0, s0) = w[0];
            let (h1, s1) = w[1];
            assert!(
                (h0 as u8, s0.priority()) < (h1 as u8, s1.priority()),
                "not sorted at {:?} / {:?}",
                w[0],
                w[1]
            );
        }
    }

    #[test]
    fn hook_stages_match_iptables_tables() {
        let has = |h, s| HOOK_STAGES.contains(&(h, s));
        // raw: PREROUTING, OUTPUT
        for h in Hook::ALL {
            assert_eq!(
                has(h, Stage::Raw),
                matches!(h, Hook::PreRouting | Hook::LocalOut)
            );
            assert!(has(h, Stage::Mangle));
            assert_eq!(
                has(h, Stage::NatDst),
                matches!(h, Hook::PreRouting | Hook::LocalOut)
            );
            assert_eq!(
                has(h, Stage::NatSrc),
                matches!(h, Hook::LocalIn | Hook::PostRouting)
            );
            assert_eq!(
                has(h, Stage::Filter),
                matches!(h, Hook::LocalIn | Hook::Forward | Hook::LocalOut)
            );
        }
    }

    #[test]
    fn index_round_trip() {
        assert_eq!(FAMILIES[0].ordinal(), 0);
        assert_eq!(FAMILIES[1].ordinal(), 1);
        for i in 0..NUM_HOOK_POINTS {
            let (f, h, s) = hook_point(i).expect("in range");
            assert_eq!(hook_point_index(f, h, s), Some(i));
        }
        assert_eq!(hook_point(NUM_HOOK_POINTS), None);
        // Every point lies in its hook's range, and the ranges cover them all.
        let mut covered = 0;
        for family in FAMILIES {
            for hook in Hook::ALL {
                let (start, end) = hook_points_of(family, hook);
                assert!(start < end, "{family:?} {hook:?}");
                for i in start..end {
                    let (f, h, _) = hook_point(i).unwrap();
                    assert_eq!((f, h), (family, hook));
                }
                covered += end - start;
                let mask = hook_points_mask(family, hook);
                assert_eq!(mask.count_ones() as usize, end - start);
                assert_eq!(mask.trailing_zeros() as usize, start);
            }
        }
        assert_eq!(covered, NUM_HOOK_POINTS);
        assert_eq!(
            hook_point_index(Family::Ipv4, Hook::PreRouting, Stage::Raw),
            Some(0)
        );
        assert_eq!(
            hook_point_index(Family::Ipv6, Hook::PreRouting, Stage::Raw),
            Some(14)
        );
        assert_eq!(
            hook_point_index(Family::Ipv4, Hook::Forward, Stage::Raw),
            None
        );
        assert_eq!(
            hook_point_index(Family::Ipv6, Hook::PostRouting, Stage::NatSrc),
            Some(27)
        );
    }

    #[test]
    fn enum_values_and_names() {
        assert_eq!(Family::Ipv4 as u8, 2);
        assert_eq!(Family::Ipv6 as u8, 10);
        for f in FAMILIES {
            assert_eq!(Family::from_u8(f as u8), Some(f));
        }
        assert_eq!(Family::from_u8(7), None);
        assert_eq!(Family::Ipv6.name(), "ipv6");
        for (n, h) in Hook::ALL.iter().enumerate() {
            assert_eq!(*h as usize, n);
            assert_eq!(Hook::from_u8(n as u8), Some(*h));
        }
        assert_eq!(Hook::from_u8(5), None);
        assert_eq!(Hook::LocalIn.name(), "INPUT");
        assert_eq!(Hook::LocalOut.name(), "OUTPUT");
        let prios: [i32; 5] = Stage::ALL.map(Stage::priority);
        assert_eq!(prios, [-300, -150, -100, 0, 100]);
        for (n, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(Stage::from_u8(n as u8), Some(*s));
        }
        assert_eq!(Stage::from_u8(5), None);
        assert_eq!(Stage::NatDst.name(), "nat-dst");
    }
    #[test]
    fn tracking_hooks_and_their_nat_points() {
        let mut seen = 0u64;
        for (i, (family, hook, priority)) in CT_HOOKS.into_iter().enumerate() {
            let p = ct_nat_point(i).unwrap();
            let (f, h, stage) = hook_point(p).unwrap();
            assert_eq!((f, h), (family, hook));
            if i < CT_TRACKING {
                assert_eq!(priority, PRI_CONNTRACK);
                assert_eq!(stage, Stage::NatDst);
                assert!(matches!(hook, Hook::PreRouting | Hook::LocalOut));
            } else {
                assert_eq!(priority, PRI_CONFIRM);
                assert_eq!(stage, Stage::NatSrc);
                assert!(matches!(hook, Hook::LocalIn | Hook::PostRouting));
            }
            assert_eq!(seen & 1 << p, 0, "one NAT point per tracking hook");
            seen |= 1 << p;
        }
        assert_eq!(ct_nat_point(CT_HOOKS.len()), None);
    }

    #[test]
    fn fused_ct_hooks_need_the_nat_point_and_nothing_between() {
        let pt = |f, h, s| 1u64 << hook_point_index(f, h, s).unwrap();
        let all_nat = (0..CT_HOOKS.len()).fold(0, |m, i| m | 1u64 << ct_nat_point(i).unwrap());
        assert_eq!(fused_ct_hooks(0), 0);
        assert_eq!(fused_ct_hooks(all_nat), 0xff);
        // Filter points do not lie between: filter INPUT (0) comes before
        // nat-src (100), filter OUTPUT (0) after nat-dst (-100).
        let filters = pt(Family::Ipv4, Hook::LocalIn, Stage::Filter)
            | pt(Family::Ipv4, Hook::LocalOut, Stage::Filter)
            | pt(Family::Ipv4, Hook::Forward, Stage::Filter);
        assert_eq!(fused_ct_hooks(all_nat | filters), 0xff);
        // Raw (-300) runs before tracking (-200): no matter.
        let raw = pt(Family::Ipv4, Hook::PreRouting, Stage::Raw);
        assert_eq!(fused_ct_hooks(all_nat | raw), 0xff);
        // A mangle point (-150) lies between tracking and nat-dst: IPv4
        // PREROUTING keeps its tracking hook; its mangle point is also
        // before nat-src where it confirms, which changes nothing there.
        let mangle = pt(Family::Ipv4, Hook::PreRouting, Stage::Mangle);
        assert_eq!(fused_ct_hooks(all_nat | mangle), 0xff & !1);
        let mangle_post = pt(Family::Ipv6, Hook::PostRouting, Stage::Mangle);
        assert_eq!(fused_ct_hooks(all_nat | mangle_post), 0xff);
        // Without its NAT point, no hook leaves its work.
        let no_v6_pre = all_nat & !pt(Family::Ipv6, Hook::PreRouting, Stage::NatDst);
        assert_eq!(fused_ct_hooks(no_v6_pre), 0xff & !(1 << 2));
        for i in 0..CT_HOOKS.len() {
            assert_eq!(fused_ct_hooks(1u64 << ct_nat_point(i).unwrap()), 1 << i);
        }
    }
}
