// SPDX-License-Identifier: GPL-2.0

//! The module's parameters, declared with `module_param()` in
//! `rnf_helpers.c` (the 6.12 `module!` macro declares none).

use crate::sys;

/// Whether a network namespace created now counts packets at hooks where
/// it has no rules (`hook_counters=`, off by default; per namespace
/// afterwards with `rnfctl hook-counters`).
pub fn hook_counters() -> bool {
    // SAFETY: no preconditions; reads a module-lifetime static.
    unsafe { sys::rnf_hook_counters_default() }
}
