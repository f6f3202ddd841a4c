// SPDX-License-Identifier: GPL-2.0-only

//! The hook point counts derived from the packet path's tallies equal
//! those of counting at every point directly, as the hooks did before:
//! whatever the packets, their drops, and the changes of layout (hooked
//! points, hook counters on or off) in between.

use proptest::prelude::*;
use rnf_core::hookcount::{
    family_hook_index, Counter, Layout, PointBooks, Tally, NUM_FAMILY_HOOKS, NUM_TALLIES,
};
use rnf_core::hooks::{hook_point, hook_points_of, Hook, FAMILIES, NUM_HOOK_POINTS};

#[derive(Clone, Debug)]
enum Event {
    /// A packet of `len` bytes at (family, hook) `fh`; `drop` picks the
    /// hooked point (of those at `fh`, modulo their number) that drops it.
    Packet {
        fh: usize,
        len: u64,
        drop: Option<usize>,
    },
    /// The packet path counts under a new layout from now on.
    Relayout(Layout),
}

fn layout() -> impl Strategy<Value = Layout> {
    // Few hooked points most of the time, as real rule sets have.
    (
        prop_oneof![
            Just(0u64),
            any::<u64>(),
            any::<u64>().prop_map(|m| m & (m >> 7))
        ],
        any::<bool>(),
    )
        .prop_map(|(m, counting)| Layout {
            hooked: m & ((1u64 << NUM_HOOK_POINTS) - 1),
            counting,
        })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0..NUM_FAMILY_HOOKS, 1u64..2000, proptest::option::weighted(0.2, 0usize..8))
            .prop_map(|(fh, len, drop)| Event::Packet { fh, len, drop }),
        1 => layout().prop_map(Event::Relayout),
    ]
}

/// The points of (family, hook) `fh`.
fn points_of(fh: usize) -> (usize, usize) {
    let family = FAMILIES[fh / Hook::ALL.len()];
    let hook = Hook::ALL[fh % Hook::ALL.len()];
    assert_eq!(family_hook_index(family, hook), fh);
    hook_points_of(family, hook)
}

fn add(c: &mut Counter, len: u64) {
    *c = c.plus(Counter {
        packets: 1,
        bytes: len,
    });
}

/// Counting at every point, as the hooks did: with no hooked point at the
/// hook, every point counts (if counting); else each hooked point counts
/// what it is handed and, if counting, the unhooked points before the
/// first hooked one and those after each hooked one that accepted.
fn reference(
    counts: &mut [Counter; NUM_HOOK_POINTS],
    l: Layout,
    fh: usize,
    len: u64,
    drop_at: Option<usize>,
) {
    let (s, e) = points_of(fh);
    let hooked: Vec<usize> = (s..e).filter(|p| l.hooked & (1 << p) != 0).collect();
    if hooked.is_empty() {
        if l.counting {
            (s..e).for_each(|p| add(&mut counts[p], len));
        }
        return;
    }
    if l.counting {
        (s..hooked[0]).for_each(|p| add(&mut counts[p], len));
    }
    for (i, &q) in hooked.iter().enumerate() {
        add(&mut counts[q], len);
        if drop_at == Some(q) {
            return;
        }
        let next = hooked.get(i + 1).copied().unwrap_or(e);
        if l.counting {
            (q + 1..next).for_each(|p| add(&mut counts[p], len));
        }
    }
}

/// What the packet path tallies for the same packet.
fn tallies(t: &mut [Counter; NUM_TALLIES], l: Layout, fh: usize, len: u64, drop_at: Option<usize>) {
    let (s, e) = points_of(fh);
    let hooked: Vec<usize> = (s..e).filter(|p| l.hooked & (1 << p) != 0).collect();
    if hooked.is_empty() {
        if l.counting {
            add(&mut t[Tally::Arrived(fh).index()], len);
        }
        return;
    }
    for q in hooked {
        add(&mut t[Tally::Seen(q).index()], len);
        if drop_at == Some(q) {
            add(&mut t[Tally::Stopped(q).index()], len);
            return;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn derived_counts_equal_counting_at_every_point(
        start in layout(),
        events in proptest::collection::vec(event(), 0..60),
    ) {
        let mut books = PointBooks::new(start);
        let mut t = [Counter::default(); NUM_TALLIES];
        let mut want = [Counter::default(); NUM_HOOK_POINTS];
        let mut l = start;
        for ev in events {
            match ev {
                Event::Packet { fh, len, drop } => {
                    let (s, e) = points_of(fh);
                    let hooked: Vec<usize> =
                        (s..e).filter(|p| l.hooked & (1 << p) != 0).collect();
                    let drop_at = drop.and_then(|k| (!hooked.is_empty()).then(|| hooked[k % hooked.len()]));
                    reference(&mut want, l, fh, len, drop_at);
                    tallies(&mut t, l, fh, len, drop_at);
                }
                Event::Relayout(next) => {
                    books.relayout(next, |x| t[x.index()]);
                    l = next;
                }
            }
            prop_assert_eq!(books.layout(), l);
            for (p, w) in want.iter().enumerate() {
                prop_assert_eq!(books.count(p, |x| t[x.index()]), *w, "point {} {:?}", p, hook_point(p));
            }
        }
    }
}

#[test]
fn a_drop_stops_the_points_after_it() {
    // IPv4 PREROUTING: raw, mangle, nat-dst. Raw hooked and dropping:
    // mangle and nat-dst see nothing of the dropped packet.
    let (s, e) = points_of(0);
    assert_eq!(e - s, 3);
    let l = Layout {
        hooked: 1 << s,
        counting: true,
    };
    let books = PointBooks::new(l);
    let mut t = [Counter::default(); NUM_TALLIES];
    tallies(&mut t, l, 0, 100, None);
    tallies(&mut t, l, 0, 60, Some(s));
    let c = |p| books.count(p, |x: Tally| t[x.index()]);
    assert_eq!(
        c(s),
        Counter {
            packets: 2,
            bytes: 160
        }
    );
    assert_eq!(
        c(s + 1),
        Counter {
            packets: 1,
            bytes: 100
        }
    );
    assert_eq!(
        c(s + 2),
        Counter {
            packets: 1,
            bytes: 100
        }
    );
}
