// SPDX-License-Identifier: GPL-2.0

//! KUnit support: failing the running test from Rust.
//!
//! 6.12 has no `#[kunit_tests]`; rnf's suite is declared in `rnf_kunit.c`,
//! whose cases call `extern "C"` test functions in `kunit_tests.rs`. Those
//! report failures with [`check!`](crate::check).

use crate::sys;
use kernel::str::CStr;

/// Marks the running KUnit test as failed with `msg` at `file:line`. Outside
/// a test it does nothing.
pub fn fail(file: &'static CStr, line: u32, msg: &'static CStr) {
    // SAFETY: both strings are NUL-terminated and live forever.
    unsafe { sys::rnf_kunit_fail(file.as_char_ptr(), line, msg.as_char_ptr()) }
}

/// Fails the running KUnit test, naming the condition, unless it holds.
#[macro_export]
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            $crate::ktest::fail(
                kernel::c_str!(file!()),
                line!(),
                kernel::c_str!(concat!("check failed: ", stringify!($cond))),
            );
        }
    };
}

/// Runs `background` in a kernel thread, over and over until `foreground`
/// returns, then stops the thread and waits for it: for tests of
/// concurrent readers and writers.
pub fn concurrently<B: Fn() + Sync, R>(
    background: &B,
    foreground: impl FnOnce() -> R,
) -> Option<R> {
    /// # Safety
    ///
    /// `arg` is the `&B` passed by `concurrently`, alive until the thread
    /// is stopped.
    unsafe extern "C" fn run<B: Fn() + Sync>(arg: *mut kernel::ffi::c_void) -> kernel::ffi::c_int {
        // SAFETY: see above.
        let f = unsafe { &*arg.cast::<B>() };
        // SAFETY: no preconditions (called in the kthread).
        while !unsafe { sys::rnf_kthread_should_stop() } {
            f();
            // SAFETY: no preconditions; kthread context.
            unsafe { sys::rnf_cond_resched() };
        }
        0
    }
    let arg = (background as *const B).cast_mut().cast();
    // SAFETY: `arg` outlives the thread, which is stopped below before
    // `background` goes out of scope.
    let task = unsafe { sys::rnf_kthread_start(Some(run::<B>), arg) };
    if task.is_null() {
        return None;
    }
    let r = foreground();
    // SAFETY: `task` was started above and not stopped yet.
    unsafe { sys::rnf_kthread_stop(task) };
    Some(r)
}

/// Runs `f` with bottom halves disabled, as the forwarding path's hooks run
/// (in softirq): code that takes another path while it cannot be preempted
/// is tested on both (see [`pinned`]).
pub fn with_bh_off<F: FnMut()>(f: F) {
    run_c(sys::rnf_run_bh_off, f)
}

/// Runs `f` on this CPU only, but preemptible (as a locally sent packet's
/// hooks may run): per-CPU state it leaves is there for it to find again.
pub fn pinned<F: FnMut()>(f: F) {
    run_c(sys::rnf_run_pinned, f)
}

/// Has the C helper `with` run `f`.
fn run_c<F: FnMut()>(
    with: unsafe extern "C" fn(
        Option<unsafe extern "C" fn(*mut kernel::ffi::c_void)>,
        *mut kernel::ffi::c_void,
    ),
    mut f: F,
) {
    /// # Safety
    ///
    /// `arg` is the `&mut F` passed by `run_c`, alive for the call.
    unsafe extern "C" fn run<F: FnMut()>(arg: *mut kernel::ffi::c_void) {
        // SAFETY: see above; nothing else uses `f` meanwhile.
        let f = unsafe { &mut *arg.cast::<F>() };
        f();
    }
    let arg = (&mut f as *mut F).cast();
    // SAFETY: `with` is one of the helpers above, which call `run::<F>`
    // once with `arg`, a live `&mut F`, and return before `f` goes out of
    // scope.
    unsafe { with(Some(run::<F>), arg) };
}

/// Lets other threads run (`cond_resched()`).
pub fn yield_now() {
    // SAFETY: no preconditions; process context.
    unsafe { sys::rnf_cond_resched() };
}
