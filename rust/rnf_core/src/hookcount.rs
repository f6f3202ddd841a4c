// SPDX-License-Identifier: GPL-2.0-only

//! The per-point packet and byte counts of `rnfctl status`, kept with as
//! few additions per packet as the hooks allow.
//!
//! Every hook point counts the packets that pass it, hooked or not (see
//! `rust/firewall.rs`): an unhooked point counts what its (family, hook)
//! lets through to it, as if it were hooked with an empty chain. Adding to
//! each point's counter at each hook cost a forwarded packet a dozen
//! counter updates. Instead the packet path keeps *tallies* ([`Tally`]):
//!
//! - a packet's arrival at a (family, hook) none of whose points is
//!   hooked, counted by the hook that meets it there first (a counting
//!   hook, or a tracking hook that stands in for one);
//! - at each hooked point, the packets it is handed (`Seen`) and those it
//!   does not let through (`Stopped`: dropped).
//!
//! Every point's count follows from those under the current [`Layout`]
//! (which points are hooked, whether unhooked points count at all):
//! [`view`]. A point before the first hooked point of its hook saw what
//! that point is handed; one after hooked point `q` saw what `q` let
//! through; a hook with no hooked point gives every point its arrivals.
//! When the layout changes, [`PointBooks::relayout`] carries each point's
//! count over, so counts never jump. The same holds per point for the
//! policy counters of empty chains, which count exactly what their point
//! counts (see `rust/ruleset.rs`).

use crate::hooks::{hook_point, hook_points_of, Hook, FAMILIES, NUM_HOOK_POINTS};

/// A packet and byte count. Counts wrap, as the kernel's counters do, so
/// differences of two readings are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

impl Counter {
    /// `self + other`, wrapping.
    #[must_use]
    pub const fn plus(self, other: Counter) -> Counter {
        Counter {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }

    /// `self - other`, wrapping.
    #[must_use]
    pub const fn minus(self, other: Counter) -> Counter {
        Counter {
            packets: self.packets.wrapping_sub(other.packets),
            bytes: self.bytes.wrapping_sub(other.bytes),
        }
    }
}

/// Number of (family, hook) pairs.
pub const NUM_FAMILY_HOOKS: usize = FAMILIES.len() * Hook::ALL.len();

/// What the packet path tallies, each in its own counter ([`Tally::index`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    /// Arrivals at (family, hook) number `i` (family-major, hooks in
    /// [`Hook::ALL`] order) while none of its points is hooked.
    Arrived(usize),
    /// Packets hooked point `i` was handed.
    Seen(usize),
    /// Packets hooked point `i` did not let through.
    Stopped(usize),
}

/// Number of tally counters.
pub const NUM_TALLIES: usize = NUM_FAMILY_HOOKS + 2 * NUM_HOOK_POINTS;

impl Tally {
    /// The tally's counter: arrivals first, then what each point saw, then
    /// what each point stopped. Below [`NUM_TALLIES`] for valid indices.
    #[inline(always)]
    pub const fn index(self) -> usize {
        match self {
            Tally::Arrived(fh) => fh,
            Tally::Seen(p) => NUM_FAMILY_HOOKS + p,
            Tally::Stopped(p) => NUM_FAMILY_HOOKS + NUM_HOOK_POINTS + p,
        }
    }
}

/// The index of (family, hook) pair for [`Tally::Arrived`], from the hook
/// points it has (`hook_points_of`): the same order.
#[inline(always)]
pub const fn family_hook_index(family: crate::hooks::Family, hook: Hook) -> usize {
    let fam = match family {
        crate::hooks::Family::Ipv4 => 0,
        crate::hooks::Family::Ipv6 => 1,
    };
    fam * Hook::ALL.len() + hook as usize
}

/// How the packet path counts: which hook points are hooked (bit `i`:
/// point `i`), and whether points without work count at all (`rnfctl
/// hook-counters`; a hooked point always counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Hooked points.
    pub hooked: u64,
    /// Whether unhooked points count.
    pub counting: bool,
}

/// Point `p`'s count as the tallies show it under `layout` (since the
/// tallies started). `tally` reads a tally's counter.
pub fn view(p: usize, layout: Layout, tally: impl Fn(Tally) -> Counter) -> Counter {
    let Some((family, hook, _)) = hook_point(p) else {
        return Counter::default();
    };
    if layout.hooked & (1u64 << p) != 0 {
        return tally(Tally::Seen(p));
    }
    if !layout.counting {
        return Counter::default();
    }
    let (start, end) = hook_points_of(family, hook);
    let here = layout.hooked & ((1u64 << end) - (1u64 << start));
    let before = here & ((1u64 << p) - 1);
    if before != 0 {
        // What the last hooked point before `p` let through.
        let q = 63 - before.leading_zeros() as usize;
        return tally(Tally::Seen(q)).minus(tally(Tally::Stopped(q)));
    }
    if here != 0 {
        // What the first hooked point after `p` was handed.
        return tally(Tally::Seen(here.trailing_zeros() as usize));
    }
    tally(Tally::Arrived(family_hook_index(family, hook)))
}

/// Each point's count carried over from earlier layouts: a point's count
/// is `base + view(now) - snap`, where `snap` is its view when the current
/// layout began.
#[derive(Clone, Debug)]
pub struct PointBooks {
    base: [Counter; NUM_HOOK_POINTS],
    snap: [Counter; NUM_HOOK_POINTS],
    layout: Layout,
}

impl PointBooks {
    /// Books for tallies that start at zero under `layout`.
    pub const fn new(layout: Layout) -> Self {
        PointBooks {
            base: [Counter {
                packets: 0,
                bytes: 0,
            }; NUM_HOOK_POINTS],
            snap: [Counter {
                packets: 0,
                bytes: 0,
            }; NUM_HOOK_POINTS],
            layout,
        }
    }

    /// The layout the tallies are read under.
    pub const fn layout(&self) -> Layout {
        self.layout
    }

    /// Point `p`'s count.
    pub fn count(&self, p: usize, tally: impl Fn(Tally) -> Counter) -> Counter {
        let (Some(base), Some(snap)) = (self.base.get(p), self.snap.get(p)) else {
            return Counter::default();
        };
        base.plus(view(p, self.layout, tally)).minus(*snap)
    }

    /// The packet path counts under `layout` from now on: every point
    /// keeps its count.
    pub fn relayout(&mut self, layout: Layout, tally: impl Fn(Tally) -> Counter) {
        for p in 0..NUM_HOOK_POINTS {
            let now = self.count(p, &tally);
            let next = view(p, layout, &tally);
            if let (Some(b), Some(s)) = (self.base.get_mut(p), self.snap.get_mut(p)) {
                *b = now;
                *s = next;
            }
        }
        self.layout = layout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::{hook_points_mask, Family};

    #[test]
    fn tallies_have_distinct_indices() {
        let mut seen = [false; NUM_TALLIES];
        let all = (0..NUM_FAMILY_HOOKS)
            .map(Tally::Arrived)
            .chain((0..NUM_HOOK_POINTS).map(Tally::Seen))
            .chain((0..NUM_HOOK_POINTS).map(Tally::Stopped));
        for t in all {
            assert!(!seen[t.index()], "{t:?}");
            seen[t.index()] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn family_hook_indices_cover_the_pairs() {
        let mut seen = [false; NUM_FAMILY_HOOKS];
        for (fi, f) in FAMILIES.into_iter().enumerate() {
            for (hi, h) in Hook::ALL.into_iter().enumerate() {
                // Family-major, hooks in `Hook::ALL` order: the order the
                // module registers its counting hooks in.
                let i = family_hook_index(f, h);
                assert_eq!(i, fi * Hook::ALL.len() + hi);
                assert!(!seen[i]);
                seen[i] = true;
                // Points of the pair map back to it.
                let (s, e) = hook_points_of(f, h);
                for p in s..e {
                    let (pf, ph, _) = hook_point(p).unwrap();
                    assert_eq!((pf, ph), (f, h));
                }
            }
        }
    }

    #[test]
    fn forward_path_example() {
        // IPv4 FORWARD is mangle then filter; with filter hooked, mangle
        // saw what filter was handed.
        let (s, e) = hook_points_of(Family::Ipv4, Hook::Forward);
        assert_eq!(e - s, 2);
        let layout = Layout {
            hooked: 1 << (s + 1),
            counting: true,
        };
        let tally = |t: Tally| match t {
            Tally::Seen(p) if p == s + 1 => Counter {
                packets: 10,
                bytes: 1000,
            },
            _ => Counter::default(),
        };
        assert_eq!(view(s, layout, tally).packets, 10);
        assert_eq!(view(s + 1, layout, tally).packets, 10);
        // Hook counters off: the unhooked point stands still.
        let off = Layout {
            counting: false,
            ..layout
        };
        assert_eq!(view(s, off, tally).packets, 0);
        assert_eq!(view(s + 1, off, tally).packets, 10);
        assert_eq!(hook_points_mask(Family::Ipv4, Hook::Forward), 0b11 << s);
    }
}
