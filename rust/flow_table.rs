// SPDX-License-Identifier: GPL-2.0

//! The flow table of connection tracking: an RCU hash in which every flow is
//! linked twice, into the bucket of its original tuple and into the bucket
//! of its reply tuple, so that a packet finds its flow in either direction
//! with one lookup.
//!
//! Readers walk the chains without a lock, under RCU. Writers take the lock
//! stripes of the buckets they change (both, in order, to link or unlink a
//! flow, as `nf_conntrack_double_lock()` does). Each node also knows the
//! link that points at it (`hlist`'s `pprev`), so a writer unlinks it
//! without walking its chain. An unlinked flow is freed
//! after a grace period (`kfree_rcu`), so a reader that is still on it can
//! go on walking. The per-protocol state of a flow is changed only under the
//! lock stripe of its original bucket.
//!
//! Flows come from a slab cache of their own ([`FlowCache`], made by the
//! module before any table and destroyed after the last one), where
//! `kmalloc` would round them up to its 512-byte size class.
//!
//! NAT changes a flow's reply tuple after the flow is in the table: the
//! flow's reply node moves to the new tuple's bucket. The tuples are kept
//! as atomic words so that a reader comparing them meanwhile reads either
//! value without a data race; a reader that was on the moving node may
//! miss the rest of its old chain, as with `hlist_nulls` restarts in
//! Linux: a lookup can miss, never find a wrong flow, and the insertion
//! of a duplicate is caught under the bucket locks.

use crate::ct::{self, Direction, HashKey, Tuple, TUPLE_BYTES};
use crate::locks::StripedLocks;
use crate::rcu::ReadGuard;
use crate::sys;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use kernel::prelude::*;
use kernel::types::Opaque;

/// Internal status bit: the flow is being removed (not one of `ct::status`).
const DYING: u32 = 1 << 30;

/// Most lock stripes a table has.
const MAX_STRIPES: u32 = 1024;

/// A tracked flow. `T` is the per-protocol state, which must not need
/// dropping (flows are freed with `kfree_rcu`, without running `drop`).
///
/// # Invariants
///
/// While linked, `next[d]` is the chain link of the flow's node in bucket
/// `bucket[d]`: 0 or a tagged pointer (flow address | direction) to the next
/// node; and `prev[d]` is the link that holds the node's tagged pointer:
/// the bucket's head or the `next` of the node before it in the chain.
/// Both change only under the lock stripe of `bucket[d]`. `track` is
/// accessed only under the lock stripe of `bucket[0]`.
#[repr(C)]
pub struct Flow<T: Copy> {
    rcu: Opaque<sys::callback_head>,
    next: [AtomicUsize; 2],
    prev: [AtomicPtr<AtomicUsize>; 2],
    free_next: AtomicUsize,
    /// The original and reply tuples, indexed by [`Direction::index`], as
    /// packed words ([`pack`]).
    keys: [[AtomicU64; KEY_WORDS]; 2],
    /// The hash bucket of each tuple.
    bucket: [AtomicU32; 2],
    /// A word for the table's owner (conntrack keeps the interface of a
    /// masqueraded flow here).
    pub aux: AtomicU32,
    /// A number that names the flow in listings and events.
    pub id: u32,
    /// When the flow was created (the owner's clock: conntrack's coarse
    /// monotonic nanoseconds).
    pub created_ns: u64,
    /// When the flow expires.
    pub expires_ns: AtomicU64,
    /// `ct::status` bits (and internal ones).
    pub status: AtomicU32,
    /// The flow's mark (`ct mark`).
    pub mark: AtomicU32,
    /// Packets and bytes, per direction.
    pub counters: [[AtomicU64; 2]; 2],
    /// Words for the owner to cache what it derives from the flow's
    /// tuples once they are fixed, 0 for nothing cached (conntrack: the
    /// endpoint each NAT rewrite writes, by direction and side).
    pub cache: [AtomicU64; 4],
    track: UnsafeCell<T>,
}

// SAFETY: `track` is only reached under a lock (type invariant); the rest
// is atomics and values fixed at creation.
unsafe impl<T: Copy + Send> Sync for Flow<T> {}
// SAFETY: as above.
unsafe impl<T: Copy + Send> Send for Flow<T> {}

/// Words of a packed tuple.
const KEY_WORDS: usize = 5;
const _: () = assert!(KEY_WORDS * 8 >= TUPLE_BYTES);

/// A tuple as words, for comparison without locks.
#[inline]
fn pack(t: &Tuple) -> [u64; KEY_WORDS] {
    let mut b = [0u8; KEY_WORDS * 8];
    if let Some(d) = b.get_mut(..TUPLE_BYTES) {
        d.copy_from_slice(&t.to_bytes());
    }
    // Word by word with constant offsets (an iterator over 8-byte chunks
    // compiled to a loop; this runs for every lookup).
    core::array::from_fn(|i| {
        b.get(i * 8..i * 8 + 8)
            .and_then(|c| c.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    })
}

#[inline]
fn unpack(w: &[u64; KEY_WORDS]) -> Option<Tuple> {
    Tuple::from_bytes(&unpack_bytes(w))
}

/// The bytes of the tuple packed in `w` ([`Tuple::to_bytes`]' encoding).
#[inline(always)]
fn unpack_bytes(w: &[u64; KEY_WORDS]) -> [u8; TUPLE_BYTES] {
    let mut b = [0u8; KEY_WORDS * 8];
    for (i, word) in w.iter().enumerate() {
        if let Some(c) = b.get_mut(i * 8..i * 8 + 8) {
            c.copy_from_slice(&word.to_le_bytes());
        }
    }
    b.first_chunk().copied().unwrap_or([0; TUPLE_BYTES])
}

fn atomic_key(t: &Tuple) -> [AtomicU64; KEY_WORDS] {
    pack(t).map(AtomicU64::new)
}

impl<T: Copy> Flow<T> {
    fn key(&self, d: usize) -> [u64; KEY_WORDS] {
        let mut w = [0u64; KEY_WORDS];
        if let Some(k) = self.keys.get(d) {
            for (o, a) in w.iter_mut().zip(k.iter()) {
                *o = a.load(Ordering::Relaxed);
            }
        }
        w
    }

    fn key_is(&self, d: usize, want: &[u64; KEY_WORDS]) -> bool {
        self.keys.get(d).is_some_and(|k| {
            k.iter()
                .zip(want.iter())
                .all(|(a, w)| a.load(Ordering::Relaxed) == *w)
        })
    }

    /// The tuple of direction `dir`.
    pub fn tuple(&self, dir: Direction) -> Tuple {
        // A key is always a packed valid tuple; the fallback is unreachable.
        unpack(&self.key(dir.index())).unwrap_or(Tuple {
            family: crate::hooks::Family::Ipv4,
            proto: 0,
            src: [0; 16],
            dst: [0; 16],
            src_port_or_icmp_id: 0,
            dst_port_or_icmp_type_code: 0,
        })
    }

    /// The tuple of direction `dir` as [`Tuple::to_bytes`] encodes it,
    /// for readers of one field (no decoding of the rest).
    #[inline(always)]
    pub fn tuple_bytes(&self, dir: Direction) -> [u8; TUPLE_BYTES] {
        unpack_bytes(&self.key(dir.index()))
    }

    /// The hash bucket the tuple of direction `dir` is linked in.
    pub fn bucket(&self, dir: Direction) -> u32 {
        self.bucket
            .get(dir.index())
            .map_or(0, |b| b.load(Ordering::Relaxed))
    }

    /// Status bits without the internal ones.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Relaxed) & ct::status::ALL
    }

    /// Whether the flow is being removed.
    pub fn is_dying(&self) -> bool {
        self.status.load(Ordering::Relaxed) & DYING != 0
    }

    /// Sets status bits; returns the bits that were newly set.
    pub fn set_status(&self, bits: u32) -> u32 {
        // Release: what was written to the flow before (a NAT binding's
        // reply tuple) is seen by whoever acquires the new bits.
        let old = self.status.fetch_or(bits, Ordering::Release);
        bits & !old
    }

    /// Counts a packet of `bytes` bytes in direction `dir`.
    pub fn count(&self, dir: Direction, bytes: u32) {
        if let Some(c) = self.counters.get(dir.index()) {
            c[0].fetch_add(1, Ordering::Relaxed);
            c[1].fetch_add(u64::from(bytes), Ordering::Relaxed);
        }
    }

    /// Packets and bytes counted in `dir`.
    pub fn counted(&self, dir: Direction) -> (u64, u64) {
        self.counters.get(dir.index()).map_or((0, 0), |c| {
            (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed))
        })
    }

    /// Whether the flow has expired at `now_ns`.
    pub fn expired(&self, now_ns: u64) -> bool {
        self.expires_ns.load(Ordering::Relaxed) <= now_ns
    }
}

fn tag<T: Copy>(flow: *const Flow<T>, dir: usize) -> usize {
    flow as usize | (dir & 1)
}

fn untag<T: Copy>(link: usize) -> (*const Flow<T>, usize) {
    ((link & !1usize) as *const Flow<T>, link & 1)
}

/// A link's address, as `prev` keeps it (written through only by `unlink`,
/// as an atomic, under the chain's lock).
fn ptr_of(link: &AtomicUsize) -> *mut AtomicUsize {
    core::ptr::from_ref(link).cast_mut()
}

/// The module's slab cache of flows, while a [`FlowCache`] is alive.
static CACHE: AtomicPtr<sys::kmem_cache> = AtomicPtr::new(core::ptr::null_mut());
/// The size of [`CACHE`]'s objects.
static CACHE_SIZE: AtomicUsize = AtomicUsize::new(0);
/// Tables that allocate from [`CACHE`].
static TABLES: AtomicUsize = AtomicUsize::new(0);

/// The slab cache that every [`FlowTable`] allocates its flows from, for
/// flows of up to `size_of::<Flow<T>>()` bytes of the `T` it was made
/// for. The module makes it before any table and drops it after the last
/// one is gone; should a table outlive it anyway, the cache is left in
/// place (and the kernel told) rather than destroyed under the table.
pub struct FlowCache(());

impl FlowCache {
    /// Makes the cache, for flows of per-protocol state `T`.
    pub fn new<T: Copy>() -> Result<Self> {
        let size = core::mem::size_of::<Flow<T>>();
        let size32 = u32::try_from(size).map_err(|_| EINVAL)?;
        let align = u32::try_from(core::mem::align_of::<Flow<T>>()).map_err(|_| EINVAL)?;
        if !CACHE.load(Ordering::Acquire).is_null() {
            return Err(EBUSY);
        }
        // SAFETY: the name is a static string; no other preconditions.
        let c = unsafe {
            sys::rnf_cache_create(kernel::c_str!("rnf_flow").as_char_ptr(), size32, align)
        };
        if c.is_null() {
            return Err(ENOMEM);
        }
        CACHE_SIZE.store(size, Ordering::Relaxed);
        CACHE.store(c, Ordering::Release);
        Ok(Self(()))
    }
}

impl Drop for FlowCache {
    fn drop(&mut self) {
        let c = CACHE.swap(core::ptr::null_mut(), Ordering::SeqCst);
        if c.is_null() {
            return;
        }
        if TABLES.load(Ordering::SeqCst) != 0 {
            pr_warn!("flow cache still in use at unload: left in place\n");
            return;
        }
        // SAFETY: made by `rnf_cache_create`; no table allocates from it
        // any more (none is left), and destroying it waits for the flows
        // still queued for `kfree_rcu`.
        unsafe { sys::rnf_cache_destroy(c) };
    }
}

/// A flow allocated from the cache and not yet in a table; freed into the
/// cache if dropped.
pub struct NewFlow<T: Copy> {
    flow: core::ptr::NonNull<Flow<T>>,
    cache: *mut sys::kmem_cache,
}

impl<T: Copy> core::ops::Deref for NewFlow<T> {
    type Target = Flow<T>;
    fn deref(&self) -> &Flow<T> {
        // SAFETY: `flow` is an initialised flow owned by `self`.
        unsafe { self.flow.as_ref() }
    }
}

impl<T: Copy> NewFlow<T> {
    /// Gives up ownership: the flow is the caller's to link or free.
    fn into_raw(self) -> *mut Flow<T> {
        let p = self.flow.as_ptr();
        core::mem::forget(self);
        p
    }
}

impl<T: Copy> Drop for NewFlow<T> {
    fn drop(&mut self) {
        // SAFETY: allocated from `cache`, which outlives every table and so
        // this flow; owned by `self`, so freed once. `T` needs no drop.
        unsafe { sys::rnf_cache_free(self.cache, self.flow.as_ptr().cast()) };
    }
}

/// Why a flow was not inserted.
pub enum InsertError<'g, T: Copy> {
    /// A flow with one of the new flow's tuples is in the table already
    /// (another CPU inserted it first, or another flow's reply tuple is
    /// this flow's); the new one was freed. Gives the flow found, the
    /// direction the tuple has in it, and which of the new flow's tuples
    /// it was.
    Clash(&'g Flow<T>, Direction, Direction),
    /// The flow's bucket is out of range (cannot happen: `bucket_of` keeps
    /// it in range); the new flow was freed.
    NoBucket,
}

/// The hash table.
///
/// # Invariants
///
/// Every non-zero link reachable from `buckets` is a tagged pointer to a
/// live flow allocated by [`FlowTable::alloc`] and owned by the table; an
/// unlinked flow is freed only after a grace period.
pub struct FlowTable<T: Copy + Send + 'static> {
    /// The module's flow cache, counted in `TABLES` while the table lives.
    cache: *mut sys::kmem_cache,
    buckets: KVec<AtomicUsize>,
    locks: StripedLocks,
    key: HashKey,
    count: AtomicU32,
    next_id: AtomicU32,
    _t: core::marker::PhantomData<T>,
}

// SAFETY: `cache` is a slab cache, which any CPU may allocate from and
// free to; the rest is atomics, locks and a vector of atomics.
unsafe impl<T: Copy + Send + 'static> Send for FlowTable<T> {}
// SAFETY: as above.
unsafe impl<T: Copy + Send + 'static> Sync for FlowTable<T> {}

impl<T: Copy + Send + 'static> FlowTable<T> {
    /// An empty table of `buckets` buckets, hashing with `key`, its flows
    /// from the module's [`FlowCache`] (which must be made for flows at
    /// least as large as this table's).
    pub fn new(buckets: u32, key: HashKey) -> Result<Self> {
        let n = buckets.max(1);
        let mut v = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        for _ in 0..n {
            v.push(AtomicUsize::new(0), GFP_KERNEL)?;
        }
        let locks = StripedLocks::new(n.min(MAX_STRIPES))?;
        // Counted before the cache is read, so that `FlowCache::drop`
        // (which clears the cache, then reads the count) sees the table
        // or the table sees no cache (both sequentially consistent).
        TABLES.fetch_add(1, Ordering::SeqCst);
        let cache = CACHE.load(Ordering::SeqCst);
        if cache.is_null() || CACHE_SIZE.load(Ordering::Relaxed) < core::mem::size_of::<Flow<T>>() {
            TABLES.fetch_sub(1, Ordering::SeqCst);
            return Err(EINVAL);
        }
        Ok(Self {
            cache,
            buckets: v,
            locks,
            key,
            count: AtomicU32::new(0),
            next_id: AtomicU32::new(1),
            _t: core::marker::PhantomData,
        })
    }

    /// The number of buckets.
    pub fn buckets(&self) -> u32 {
        self.buckets.len() as u32
    }

    /// The number of flows in the table, including ones not yet inserted
    /// but reserved with [`reserve`](Self::reserve).
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// The bucket of `t`.
    pub fn bucket_of(&self, t: &Tuple) -> u32 {
        ct::bucket_index(t.hash(&self.key), self.buckets())
    }

    /// Reserves room for one flow if fewer than `limit` are in the table.
    pub fn reserve(&self, limit: u32) -> bool {
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < limit).then_some(c + 1)
            })
            .is_ok()
    }

    /// Gives back a reservation that was not used.
    pub fn unreserve(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Allocates a flow (not yet in the table) without sleeping.
    #[allow(dead_code)]
    pub fn alloc(&self, orig: Tuple, reply: Tuple, now_ns: u64, track: T) -> Result<NewFlow<T>> {
        self.alloc_at(orig, self.bucket_of(&orig), reply, now_ns, track)
    }

    /// [`alloc`](Self::alloc) for a caller that hashed `orig` already:
    /// `orig_bucket` is `bucket_of(&orig)`, which [`insert`](Self::insert)
    /// relies on to link the flow where lookups look.
    pub fn alloc_at(
        &self,
        orig: Tuple,
        orig_bucket: u32,
        reply: Tuple,
        now_ns: u64,
        track: T,
    ) -> Result<NewFlow<T>> {
        const { assert!(!core::mem::needs_drop::<T>()) };
        let mut id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            id = self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        let flow = Flow {
            rcu: Opaque::uninit(),
            next: [AtomicUsize::new(0), AtomicUsize::new(0)],
            prev: [
                AtomicPtr::new(core::ptr::null_mut()),
                AtomicPtr::new(core::ptr::null_mut()),
            ],
            free_next: AtomicUsize::new(0),
            bucket: [
                AtomicU32::new(orig_bucket),
                AtomicU32::new(self.bucket_of(&reply)),
            ],
            keys: [atomic_key(&orig), atomic_key(&reply)],
            aux: AtomicU32::new(0),
            id,
            created_ns: now_ns,
            expires_ns: AtomicU64::new(now_ns),
            status: AtomicU32::new(0),
            mark: AtomicU32::new(0),
            counters: Default::default(),
            cache: Default::default(),
            track: UnsafeCell::new(track),
        };
        // SAFETY: the cache outlives the table (`FlowCache`); NULL on
        // failure.
        let p = unsafe { sys::rnf_cache_alloc_atomic(self.cache) }.cast::<Flow<T>>();
        let Some(nn) = core::ptr::NonNull::new(p) else {
            return Err(ENOMEM);
        };
        // SAFETY: `p` is valid for writing a `Flow<T>`: an object of the
        // cache, whose objects are at least that large and aligned for it
        // (`new` checked the size; the cache was made with the alignment
        // of a flow), not yet shared.
        unsafe { p.write(flow) };
        Ok(NewFlow {
            flow: nn,
            cache: self.cache,
        })
    }

    fn head(&self, b: u32) -> Option<&AtomicUsize> {
        self.buckets.get(b as usize)
    }

    /// Walks the chain of bucket `b`: `f` gets each node's flow and
    /// direction; returning `Some` stops the walk.
    #[inline(always)]
    fn walk<'g, R>(
        &'g self,
        b: u32,
        _guard: &'g ReadGuard,
        mut f: impl FnMut(&'g Flow<T>, usize) -> Option<R>,
    ) -> Option<R> {
        let mut cur = self.head(b)?.load(Ordering::Acquire);
        while cur != 0 {
            let (p, d) = untag::<T>(cur);
            // SAFETY: a linked node is a live flow (type invariant); it is
            // freed only after a grace period, which `_guard` holds off.
            let flow = unsafe { &*p };
            if let Some(r) = f(flow, d) {
                return Some(r);
            }
            cur = flow.next.get(d)?.load(Ordering::Acquire);
        }
        None
    }

    /// The flow with tuple `t` in either direction, if any, and the
    /// direction `t` is in. Dying flows are skipped; expired ones are not
    /// (the caller decides).
    #[inline]
    pub fn lookup<'g>(
        &'g self,
        t: &Tuple,
        guard: &'g ReadGuard,
    ) -> Option<(&'g Flow<T>, Direction)> {
        self.lookup_in(self.bucket_of(t), t, guard)
    }

    /// [`lookup`](Self::lookup) in bucket `b`, which must be
    /// `bucket_of(t)` for the lookup to find what is there.
    #[inline]
    pub fn lookup_at<'g>(
        &'g self,
        b: u32,
        t: &Tuple,
        guard: &'g ReadGuard,
    ) -> Option<(&'g Flow<T>, Direction)> {
        self.lookup_in(b, t, guard)
    }

    fn lookup_in<'g>(
        &'g self,
        b: u32,
        t: &Tuple,
        guard: &'g ReadGuard,
    ) -> Option<(&'g Flow<T>, Direction)> {
        self.lookup_key(b, &pack(t), guard)
    }

    /// The flow linked in bucket `b` with the packed tuple `want`.
    #[inline]
    fn lookup_key<'g>(
        &'g self,
        b: u32,
        want: &[u64; KEY_WORDS],
        guard: &'g ReadGuard,
    ) -> Option<(&'g Flow<T>, Direction)> {
        self.walk(b, guard, |flow, d| {
            // The key first: in a long chain most nodes differ there.
            (flow.key_is(d, want) && !flow.is_dying()).then_some((flow, Direction::from_index(d)))
        })
    }

    /// The flow with id `id` linked in bucket `b`, and its direction there.
    pub fn find_id<'g>(
        &'g self,
        b: u32,
        id: u32,
        guard: &'g ReadGuard,
    ) -> Option<(&'g Flow<T>, Direction)> {
        self.walk(b, guard, |flow, d| {
            (flow.id == id && !flow.is_dying()).then_some((flow, Direction::from_index(d)))
        })
    }

    /// Calls `f` for every node linked in bucket `b`: a flow whose tuples
    /// are both there comes twice, once with each direction.
    pub fn for_each_node_in<'g>(
        &'g self,
        b: u32,
        guard: &'g ReadGuard,
        mut f: impl FnMut(&'g Flow<T>, Direction),
    ) {
        self.walk(b, guard, |flow, d| {
            if !flow.is_dying() {
                f(flow, Direction::from_index(d));
            }
            None::<()>
        });
    }

    /// Calls `f` for every flow whose original tuple is in bucket `b` (so
    /// that walking every bucket visits every flow once).
    pub fn for_each_in<'g>(&'g self, b: u32, guard: &'g ReadGuard, mut f: impl FnMut(&'g Flow<T>)) {
        self.for_each_node_in(b, guard, |flow, d| {
            if d == Direction::Original {
                f(flow);
            }
        });
    }

    /// Links `flow` into both of its buckets, unless a flow with either of
    /// its tuples is there already. The caller holds a reservation
    /// ([`reserve`](Self::reserve)); on a clash it is given back.
    pub fn insert<'g>(
        &'g self,
        flow: NewFlow<T>,
        guard: &'g ReadGuard,
    ) -> core::result::Result<&'g Flow<T>, InsertError<'g, T>> {
        let (b0, b1) = (
            flow.bucket(Direction::Original),
            flow.bucket(Direction::Reply),
        );
        let (Some(h0), Some(h1)) = (self.head(b0), self.head(b1)) else {
            drop(flow);
            self.unreserve();
            return Err(InsertError::NoBucket);
        };
        let _locks = self.locks.lock2(b0, b1);
        for (which, b) in [(Direction::Original, b0), (Direction::Reply, b1)] {
            // The new flow's keys as packed, not unpacked and packed again.
            if let Some((other, dir)) = self.lookup_key(b, &flow.key(which.index()), guard) {
                drop(flow);
                self.unreserve();
                return Err(InsertError::Clash(other, dir, which));
            }
        }
        let p = flow.into_raw();
        // SAFETY: `p` is a fresh, valid flow that nothing else sees yet.
        let f = unsafe { &*p };
        // Where both tuples share a bucket: head -> reply node -> original
        // node -> old head.
        self.push(h0, f, Direction::Original);
        self.push(h1, f, Direction::Reply);
        // INVARIANT: linked into both of its buckets under their locks.
        Ok(f)
    }

    /// Links node `dir` of `flow` at the front of the chain whose head is
    /// `head`, the head of bucket `flow.bucket(dir)`, whose lock stripe the
    /// caller holds.
    fn push(&self, head: &AtomicUsize, flow: &Flow<T>, dir: Direction) {
        let d = dir.index() & 1;
        let old = head.load(Ordering::Relaxed);
        flow.next[d].store(old, Ordering::Relaxed);
        flow.prev[d].store(ptr_of(head), Ordering::Relaxed);
        if old != 0 {
            let (q, e) = untag::<T>(old);
            // SAFETY: a linked node is a live flow (type invariant); its
            // `prev` changes under the bucket's lock, which the caller holds.
            unsafe { &*q }.prev[e & 1].store(ptr_of(&flow.next[d]), Ordering::Relaxed);
        }
        // Release: the node (the whole flow, the first time) is complete
        // before a reader can reach it.
        head.store(tag(flow, d), Ordering::Release);
    }

    /// Unlinks node `dir` of `flow` from its chain, whose lock stripe the
    /// caller holds. The node keeps its own link, so readers on it go on
    /// to the rest of the chain.
    fn unlink(&self, flow: &Flow<T>, dir: Direction) {
        let d = dir.index() & 1;
        let link = flow.prev[d].load(Ordering::Relaxed);
        if link.is_null() {
            return;
        }
        let next = flow.next[d].load(Ordering::Relaxed);
        // SAFETY: `prev[d]` of a linked node is a live link (type
        // invariant): the bucket's head, which lives as long as the table,
        // or the `next` of a linked, so live, flow. The lock is held.
        unsafe { &*link }.store(next, Ordering::Release);
        if next != 0 {
            let (q, e) = untag::<T>(next);
            // SAFETY: as in `push`.
            unsafe { &*q }.prev[e & 1].store(link, Ordering::Relaxed);
        }
    }

    /// Whether every chain is well linked: each node's `prev` is the link
    /// that holds it, and its `bucket` the chain's (for tests; callers
    /// hold off writers).
    #[allow(dead_code)]
    pub fn links_ok(&self, guard: &ReadGuard) -> bool {
        let most = 2 * self.count() as usize + 2;
        (0..self.buckets())
            .zip(self.buckets.iter())
            .all(|(b, head)| {
                let mut link = ptr_of(head);
                let mut steps = 0usize;
                let bad = self.walk(b, guard, |flow, d| {
                    steps += 1;
                    let ok = flow.prev[d & 1].load(Ordering::Relaxed) == link
                        && flow.bucket[d & 1].load(Ordering::Relaxed) == b
                        && steps <= most;
                    link = ptr_of(&flow.next[d & 1]);
                    (!ok).then_some(())
                });
                bad.is_none()
            })
    }

    /// Unlinks `flow` and frees it after a grace period. False if it was
    /// being removed already (by another CPU, or earlier).
    pub fn remove(&self, flow: &Flow<T>) -> bool {
        loop {
            let b0 = flow.bucket(Direction::Original);
            let b1 = flow.bucket(Direction::Reply);
            let _locks = self.locks.lock2(b0, b1);
            // The reply node may have moved (NAT) before we got the locks.
            if flow.bucket(Direction::Reply) != b1 {
                continue;
            }
            if flow.status.fetch_or(DYING, Ordering::Relaxed) & DYING != 0 {
                return false;
            }
            self.unlink(flow, Direction::Original);
            self.unlink(flow, Direction::Reply);
            break;
        }
        self.count.fetch_sub(1, Ordering::Relaxed);
        let p: *const Flow<T> = flow;
        // SAFETY: the flow is unlinked, so no new reader finds it; it came
        // from the flow cache in `alloc`, whose objects `kfree_rcu` may free
        // (destroying the cache waits for it); it frees it after
        // every current reader is done. `T` needs no drop (asserted in
        // `alloc`), and neither does anything else in a flow.
        unsafe { sys::rnf_kfree_rcu(flow.rcu.get(), p.cast_mut().cast()) };
        true
    }

    /// Gives the flow a new reply tuple, moving its reply node to that
    /// tuple's bucket (NAT). False, and nothing changed, if another flow
    /// has that tuple or the flow is being removed.
    pub fn rehash_reply(&self, flow: &Flow<T>, reply: &Tuple, guard: &ReadGuard) -> bool {
        let nb = self.bucket_of(reply);
        let Some(new_head) = self.head(nb) else {
            return false;
        };
        loop {
            let ob = flow.bucket(Direction::Reply);
            let _locks = self.locks.lock2(ob, nb);
            if flow.bucket(Direction::Reply) != ob {
                continue;
            }
            if flow.is_dying() || self.lookup_in(nb, reply, guard).is_some() {
                return false;
            }
            self.unlink(flow, Direction::Reply);
            if let Some(k) = flow.keys.get(1) {
                for (a, w) in k.iter().zip(pack(reply).iter()) {
                    a.store(*w, Ordering::Relaxed);
                }
            }
            flow.bucket[1].store(nb, Ordering::Relaxed);
            // The new key is visible before the node is reachable (`push`
            // publishes it with Release).
            self.push(new_head, flow, Direction::Reply);
            return true;
        }
    }

    /// Runs `f` on the flow's per-protocol state, under its lock.
    pub fn with_track<R>(&self, flow: &Flow<T>, f: impl FnOnce(&mut T) -> R) -> R {
        let _lock = self.locks.lock(flow.bucket(Direction::Original));
        // SAFETY: `track` is only reached under this stripe (type
        // invariant), which is held until the end of this function.
        f(unsafe { &mut *flow.track.get() })
    }

    /// A copy of the flow's per-protocol state.
    pub fn track(&self, flow: &Flow<T>) -> T {
        self.with_track(flow, |t| *t)
    }
}

impl<T: Copy + Send + 'static> Drop for FlowTable<T> {
    fn drop(&mut self) {
        // No reader or writer is left (the owner is dropped after its hooks
        // and control paths are gone and a grace period has passed). Gather
        // every flow once, through its original node, into a list; free
        // them only after the walk, as each is also on another chain.
        let mut list = 0usize;
        for head in self.buckets.iter() {
            let mut cur = head.load(Ordering::Relaxed);
            while cur != 0 {
                let (p, d) = untag::<T>(cur);
                // SAFETY: linked nodes are live flows (type invariant).
                let flow = unsafe { &*p };
                if d == 0 {
                    flow.free_next.store(list, Ordering::Relaxed);
                    list = p as usize;
                }
                cur = flow.next.get(d).map_or(0, |n| n.load(Ordering::Relaxed));
            }
            head.store(0, Ordering::Relaxed);
        }
        while list != 0 {
            let p = list as *mut Flow<T>;
            // SAFETY: `p` is a flow gathered above, freed once, here.
            list = unsafe { (*p).free_next.load(Ordering::Relaxed) };
            // SAFETY: owned by the table and unreachable now; from the
            // cache, which outlives the table.
            unsafe { sys::rnf_cache_free(self.cache, p.cast()) };
        }
        TABLES.fetch_sub(1, Ordering::SeqCst);
    }
}
