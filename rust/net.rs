// SPDX-License-Identifier: GPL-2.0

//! Network namespaces.

use crate::sys;
use kernel::types::Opaque;

/// A network namespace (`struct net`).
///
/// Only ever seen behind a reference handed out by the kernel (a hook's
/// state, a netlink request, a pernet callback), which keeps it alive.
#[repr(transparent)]
pub struct Net(Opaque<sys::net>);

impl Net {
    /// Views a raw `struct net` pointer as a `Net`.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a live network namespace for the whole of `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut sys::net) -> &'a Net {
        // SAFETY: `Net` is a transparent wrapper of `sys::net` and the caller
        // guarantees the pointee outlives `'a`.
        unsafe { &*ptr.cast::<Net>() }
    }

    /// The initial network namespace.
    #[allow(dead_code)]
    pub fn init_net() -> &'static Net {
        // SAFETY: `init_net` is a static that lives as long as the kernel.
        unsafe { Net::from_raw(core::ptr::addr_of_mut!(sys::init_net)) }
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::net {
        self.0.get()
    }

    /// The namespace's cookie: a 64-bit id unique for the life of the system.
    pub fn cookie(&self) -> u64 {
        // SAFETY: `self` is a live namespace by the type invariant.
        unsafe { sys::rnf_net_cookie(self.as_ptr()) }
    }
}
