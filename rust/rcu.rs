// SPDX-License-Identifier: GPL-2.0

//! Values published under RCU: readers in the packet path see the old value
//! or the new one, never a mix, without taking a lock; the old value is
//! freed only after every reader that could see it has finished.

use crate::sys;
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::prelude::*;

/// Proof that the holder is inside an RCU read-side critical section.
///
/// Only the abstractions that know they run under RCU hand it out (a
/// netfilter hook does: netfilter calls hooks under `rcu_read_lock()`).
pub struct ReadGuard {
    _not_send: PhantomData<*mut ()>,
}

impl ReadGuard {
    /// A guard for the current read-side critical section.
    ///
    /// # Safety
    ///
    /// The caller must be inside an RCU read-side critical section for the
    /// whole of `'a`.
    pub(crate) unsafe fn assume_held<'a>() -> &'a ReadGuard {
        static GUARD: ReadGuard = ReadGuard {
            _not_send: PhantomData,
        };
        &GUARD
    }
}

/// An RCU read-side critical section, held until dropped.
pub struct ReadLock {
    _not_send: PhantomData<*mut ()>,
}

/// Enters an RCU read-side critical section (`rcu_read_lock()`).
#[allow(dead_code)]
pub fn read_lock() -> ReadLock {
    // SAFETY: no preconditions; paired with the unlock in `drop`.
    unsafe { sys::rnf_rcu_read_lock() };
    ReadLock {
        _not_send: PhantomData,
    }
}

impl ReadLock {
    /// The guard for this critical section.
    pub fn guard(&self) -> &ReadGuard {
        // SAFETY: the critical section lasts as long as `self`.
        unsafe { ReadGuard::assume_held() }
    }
}

impl Drop for ReadLock {
    fn drop(&mut self) {
        // SAFETY: paired with the lock taken in `read_lock`.
        unsafe { sys::rnf_rcu_read_unlock() };
    }
}

// SAFETY: `ReadGuard` has no data; the static above needs `Sync`. A guard is
// only handed out by reference with the lifetime of the critical section.
unsafe impl Sync for ReadGuard {}

/// A value published with RCU (`rcu_assign_pointer` / `rcu_dereference`).
///
/// # Invariants
///
/// `ptr` is NULL or comes from `KBox::into_raw` and is owned by `self`;
/// a value replaced in `ptr` is freed only after a grace period.
pub struct RcuBox<T> {
    ptr: AtomicPtr<T>,
}

// SAFETY: readers on any CPU get `&T` (needs `T: Sync`); the value may be
// freed on any thread (needs `T: Send`).
unsafe impl<T: Send + Sync> Send for RcuBox<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for RcuBox<T> {}

impl<T> RcuBox<T> {
    /// An empty box.
    pub const fn empty() -> Self {
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The published value, for a reader inside an RCU critical section.
    #[inline]
    pub fn read<'a>(&'a self, _guard: &'a ReadGuard) -> Option<&'a T> {
        // Acquire orders the reads of the value after the pointer load, as
        // `rcu_dereference` does.
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-NULL pointer is a live value owned by `self`; it is
        // freed only after a grace period, which cannot end while the
        // caller's critical section (`_guard`) lasts.
        unsafe { p.as_ref() }
    }

    /// Publishes `new` (or nothing). The old value comes back as
    /// [`Retired`], which waits for a grace period before freeing it.
    pub fn replace(&self, new: Option<KBox<T>>) -> Retired<T> {
        let p = new.map_or(ptr::null_mut(), KBox::into_raw);
        // Release orders the initialisation of the value before its
        // publication, as `rcu_assign_pointer` does.
        let old = self.ptr.swap(p, Ordering::AcqRel);
        // SAFETY: no preconditions. Taken after the swap: readers that can
        // still see `old` started before the grace period it names.
        let cookie = unsafe { sys::rnf_rcu_cookie() };
        Retired {
            ptr: old,
            cookie,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for RcuBox<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: `p` is owned by `self`. Readers borrow `self` for as
            // long as they use the value, so none is left when it drops.
            drop(unsafe { KBox::from_raw(p) });
        }
    }
}

/// A value taken out of an [`RcuBox`], freed after a grace period when
/// dropped (dropping may sleep).
///
/// # Invariants
///
/// `ptr` is NULL or an unpublished value from `KBox::into_raw`, owned here.
pub struct Retired<T> {
    ptr: *mut T,
    /// The grace period after which no reader uses the value.
    cookie: usize,
    _owns: PhantomData<T>,
}

// SAFETY: a `Retired` owns its value (like a `KBox`); readers only read it
// through the `RcuBox` it came from, so moving the owner to another thread
// is as safe as moving a `KBox<T>`.
unsafe impl<T: Send> Send for Retired<T> {}

impl<T> Retired<T> {
    /// The retired value, for a writer that needs to read it (for example
    /// to carry counters over). Readers may still be using it.
    pub fn get(&self) -> Option<&T> {
        // SAFETY: owned by `self` and not freed before `self` drops.
        unsafe { self.ptr.as_ref() }
    }

    /// Whether no reader can be using the value any more (its grace period
    /// has ended), without waiting.
    pub fn unused(&self) -> bool {
        // SAFETY: no preconditions; does not sleep.
        self.ptr.is_null() || unsafe { sys::rnf_rcu_elapsed(self.cookie) }
    }

    /// Waits until no reader uses the value (at once if its grace period
    /// has already ended) and gives it back.
    pub fn into_inner(mut self) -> Option<KBox<T>> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: no preconditions; may sleep, which `Retired` users may.
        unsafe { sys::rnf_rcu_wait(self.cookie) };
        let p = core::mem::replace(&mut self.ptr, ptr::null_mut());
        // SAFETY: `p` is owned (type invariant) and, after the grace
        // period, unused by any reader.
        Some(unsafe { KBox::from_raw(p) })
    }
}

impl<T> Drop for Retired<T> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: no preconditions; may sleep.
            unsafe { sys::rnf_rcu_wait(self.cookie) };
            // SAFETY: owned, and unused after the grace period.
            drop(unsafe { KBox::from_raw(self.ptr) });
        }
    }
}
