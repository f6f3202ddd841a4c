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
