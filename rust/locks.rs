// SPDX-License-Identifier: GPL-2.0

//! Lock stripes: an array of spinlocks taken with bottom halves disabled,
//! for data that the packet path (softirq) and process context both write.
//!
//! The `kernel` crate's `SpinLock` takes plain `spin_lock()`, which would
//! deadlock against a softirq on the same CPU; these take `spin_lock_bh()`.

use crate::sys;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::prelude::*;

/// `n` spinlocks, all of one lockdep class.
///
/// # Invariants
///
/// `locks` points at `n` initialised spinlocks owned by `self`.
pub struct StripedLocks {
    locks: NonNull<sys::spinlock_t>,
    n: u32,
}

// SAFETY: spinlocks are made to be shared between CPUs.
unsafe impl Send for StripedLocks {}
// SAFETY: as above.
unsafe impl Sync for StripedLocks {}

impl StripedLocks {
    /// Allocates `n` (at least one) unlocked locks.
    pub fn new(n: u32) -> Result<Self> {
        // SAFETY: no preconditions; NULL on failure.
        let p = unsafe { sys::rnf_locks_alloc(n.max(1)) };
        let locks = NonNull::new(p).ok_or(ENOMEM)?;
        // INVARIANT: `rnf_locks_alloc` initialised `n` locks.
        Ok(Self { locks, n: n.max(1) })
    }

    /// The number of stripes.
    pub fn len(&self) -> u32 {
        self.n
    }

    /// Whether there are no stripes (never: `new` makes at least one).
    #[allow(dead_code)]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Takes stripe `i % len()`.
    pub fn lock(&self, i: u32) -> StripeGuard<'_> {
        let i = i.checked_rem(self.n).unwrap_or(0);
        // SAFETY: `i < n`, the locks are initialised (type invariant).
        unsafe { sys::rnf_lock_bh(self.locks.as_ptr(), i) };
        StripeGuard {
            locks: self,
            i,
            _not_send: PhantomData,
        }
    }

    /// Takes stripes `a % len()` and `b % len()` (once if they are the
    /// same), in index order so that two CPUs cannot deadlock.
    pub fn lock2(&self, a: u32, b: u32) -> Stripe2Guard<'_> {
        let (a, b) = (
            a.checked_rem(self.n).unwrap_or(0),
            b.checked_rem(self.n).unwrap_or(0),
        );
        // SAFETY: both indices are in range; the helper orders them.
        unsafe { sys::rnf_lock2_bh(self.locks.as_ptr(), a, b) };
        Stripe2Guard {
            locks: self,
            a,
            b,
            _not_send: PhantomData,
        }
    }
}

impl Drop for StripedLocks {
    fn drop(&mut self) {
        // SAFETY: owned; no guard can outlive `self`, so none is held.
        unsafe { sys::rnf_locks_free(self.locks.as_ptr()) };
    }
}

/// One stripe held; released when dropped.
pub struct StripeGuard<'a> {
    locks: &'a StripedLocks,
    i: u32,
    _not_send: PhantomData<*mut ()>,
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds stripe `i`, taken on this CPU.
        unsafe { sys::rnf_unlock_bh(self.locks.locks.as_ptr(), self.i) };
    }
}

/// Two stripes held; released when dropped.
pub struct Stripe2Guard<'a> {
    locks: &'a StripedLocks,
    a: u32,
    b: u32,
    _not_send: PhantomData<*mut ()>,
}

impl Drop for Stripe2Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds stripes `a` and `b`, taken together.
        unsafe { sys::rnf_unlock2_bh(self.locks.locks.as_ptr(), self.a, self.b) };
    }
}
