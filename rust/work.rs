// SPDX-License-Identifier: GPL-2.0

//! Deferred work that re-arms itself: background passes such as conntrack
//! garbage collection, run in process context on a system workqueue.

use crate::sys;
use core::ptr::NonNull;
use kernel::prelude::*;
use kernel::sync::Arc;

/// What a [`DelayedWork`] runs.
pub trait WorkFn: Send + Sync + 'static {
    /// One pass, in process context (it may sleep). Returns the delay in
    /// milliseconds until the next pass, or `None` to stop.
    fn run(&self) -> Option<u32>;
}

/// Periodic work over a shared `T`, stopped and waited for when dropped.
///
/// # Invariants
///
/// `work` is a live `rnf_work` whose argument is `Arc::into_raw(data)`,
/// a reference owned by `self`.
pub struct DelayedWork<T: WorkFn> {
    work: NonNull<sys::rnf_work>,
    data: *const T,
}

// SAFETY: the work item is kernel bookkeeping usable from any thread; `T`
// is `Send + Sync`.
unsafe impl<T: WorkFn> Send for DelayedWork<T> {}
// SAFETY: `&DelayedWork` only schedules.
unsafe impl<T: WorkFn> Sync for DelayedWork<T> {}

/// # Safety
///
/// Called by the workqueue only, with the argument `DelayedWork::new` set.
unsafe extern "C" fn run_callback<T: WorkFn>(arg: *mut kernel::ffi::c_void) -> kernel::ffi::c_long {
    // SAFETY: `arg` is the `Arc<T>` reference `DelayedWork` owns, released
    // only after the work is disabled and no pass runs.
    let data = unsafe { &*arg.cast::<T>() };
    match data.run() {
        Some(ms) => ms as kernel::ffi::c_long,
        None => -1,
    }
}

impl<T: WorkFn> DelayedWork<T> {
    /// Creates the work (not scheduled).
    pub fn new(data: Arc<T>) -> Result<Self> {
        let raw = Arc::into_raw(data);
        // SAFETY: the callback matches the helper's signature; `raw` stays
        // valid until `drop`, after the work is disabled.
        let w = unsafe { sys::rnf_work_new(Some(run_callback::<T>), raw.cast_mut().cast()) };
        match NonNull::new(w) {
            Some(work) => Ok(Self { work, data: raw }),
            None => {
                // SAFETY: `raw` came from `Arc::into_raw` just above.
                drop(unsafe { Arc::from_raw(raw) });
                Err(ENOMEM)
            }
        }
    }

    /// Runs a pass after `ms` milliseconds (if none is pending already).
    pub fn schedule(&self, ms: u32) {
        // SAFETY: `work` is live (type invariant).
        unsafe { sys::rnf_work_schedule(self.work.as_ptr(), ms) };
    }
}

impl<T: WorkFn> Drop for DelayedWork<T> {
    fn drop(&mut self) {
        // SAFETY: `work` is live; this disables it, waits for a running
        // pass, and frees it. No pass runs afterwards.
        unsafe { sys::rnf_work_free(self.work.as_ptr()) };
        // SAFETY: the reference taken in `new`, unused from now on.
        drop(unsafe { Arc::from_raw(self.data) });
    }
}
