// SPDX-License-Identifier: GPL-2.0

//! Per-network-namespace state (`struct pernet_operations`).
//!
//! A type implementing [`NetData`] gets one instance per network namespace:
//! created when the namespace appears (or, for those that exist, when the
//! subsystem is registered) and dropped when it goes away (or when the
//! subsystem is unregistered). Between [`NetData::pre_exit`] and the drop the
//! kernel waits for an RCU grace period, so anything unpublished in
//! `pre_exit` (hooks, say) has no readers left when the data is dropped.

use crate::net::Net;
use crate::sys;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::types::Opaque;

/// The id the kernel assigns to a pernet subsystem (`pernet_operations::id`).
pub struct NetId(AtomicU32);

impl Default for NetId {
    fn default() -> Self {
        Self::new()
    }
}

impl NetId {
    /// An id not yet assigned; the kernel sets it at registration.
    pub const fn new() -> Self {
        Self(AtomicU32::new(0))
    }
}

/// Proof, handed to [`NetData::pre_exit`], that an RCU grace period will pass
/// before the namespace's data is dropped.
pub struct PreExit(());

/// The namespace, as its own pernet data keeps it for work that runs
/// outside a hook or a request (background passes).
///
/// # Invariants
///
/// Points at the namespace whose pernet `init` made it. Only handed to that
/// namespace's data, which is dropped in the namespace's `exit`, before the
/// namespace is freed; the data must not let it escape elsewhere.
#[derive(Clone)]
pub struct NetRef(core::ptr::NonNull<sys::net>);

// SAFETY: a namespace may be used from any thread while it lives.
unsafe impl Send for NetRef {}
// SAFETY: as above.
unsafe impl Sync for NetRef {}

impl NetRef {
    /// The namespace.
    pub fn get(&self) -> &Net {
        // SAFETY: alive while the data holding `self` lives (type invariant).
        unsafe { Net::from_raw(self.0.as_ptr()) }
    }
}

/// State kept for each network namespace.
pub trait NetData: Send + Sync + Sized + 'static {
    /// Where the kernel stores this subsystem's id.
    const ID: &'static NetId;

    /// Creates the state of a new namespace. `own` may be kept in the state
    /// (and only there).
    fn init(net: &Net, own: NetRef) -> Result<Pin<KBox<Self>>>;

    /// The namespace is going away; readers may still run until a grace
    /// period has passed, after which the state is dropped.
    fn pre_exit(&self, net: &Net, grace: &PreExit);

    /// This subsystem's state in `net`, if it has been created.
    fn get(net: &Net) -> Option<&Self> {
        let slot = slot::<Self>(net);
        // SAFETY: the slot holds NULL or a pointer from `KBox::into_raw` that
        // stays valid until the namespace's `exit` callback, which cannot run
        // while the caller holds `&Net` from a context that keeps `net`
        // alive and the subsystem registered.
        unsafe { slot.read().as_ref() }
    }
}

/// The namespace's storage slot for `T`'s data pointer.
fn slot<T: NetData>(net: &Net) -> *mut *mut T {
    let id = T::ID.0.load(Ordering::Relaxed);
    // SAFETY: `net` is live; `id` was assigned by `register_pernet_subsys`
    // with `size` = one pointer, so the slot exists in every namespace.
    unsafe { sys::rnf_net_generic(net.as_ptr(), id).cast::<*mut T>() }
}

/// # Safety
///
/// Called by the kernel only, for a namespace being set up, after the
/// subsystem's id was assigned.
unsafe extern "C" fn init_callback<T: NetData>(net: *mut sys::net) -> kernel::ffi::c_int {
    let Some(own) = core::ptr::NonNull::new(net) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the kernel passes a live namespace being set up.
    let net = unsafe { Net::from_raw(net) };
    // INVARIANT: handed only to this namespace's data, dropped in `exit`.
    match T::init(net, NetRef(own)) {
        Ok(data) => {
            // SAFETY: the data stays pinned: it is only turned back into a
            // `Pin<KBox>` (in `exit_callback`) to be dropped.
            let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(data) });
            // SAFETY: the slot is valid (see `slot`) and exclusively ours
            // during `init`.
            unsafe { slot::<T>(net).write(raw) };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the kernel only, for a namespace being torn down.
unsafe extern "C" fn pre_exit_callback<T: NetData>(net: *mut sys::net) {
    // SAFETY: the kernel passes a live namespace being torn down.
    let net = unsafe { Net::from_raw(net) };
    if let Some(data) = T::get(net) {
        data.pre_exit(net, &PreExit(()));
    }
}

/// # Safety
///
/// Called by the kernel only, for a namespace being torn down, a grace period
/// after `pre_exit_callback`.
unsafe extern "C" fn exit_callback<T: NetData>(net: *mut sys::net) {
    // SAFETY: the kernel passes a live namespace being torn down.
    let net = unsafe { Net::from_raw(net) };
    let slot = slot::<T>(net);
    // SAFETY: the slot is valid and no one else uses it during `exit`.
    let data = unsafe { slot.replace(core::ptr::null_mut()) };
    if !data.is_null() {
        // SAFETY: `data` came from `KBox::into_raw` of a pinned box in
        // `init_callback`; the kernel ran a grace period after `pre_exit`,
        // so no reader is left.
        drop(unsafe { Pin::new_unchecked(KBox::from_raw(data)) });
    }
}

/// A registered pernet subsystem for `T`; unregistering drops every
/// namespace's `T`.
///
/// # Invariants
///
/// `ops` is registered with `register_pernet_subsys` for the life of `self`.
pub struct Registration<T: NetData> {
    ops: Pin<KBox<Opaque<sys::pernet_operations>>>,
    _data: PhantomData<T>,
}

// SAFETY: the registration only holds kernel-owned bookkeeping; unregistering
// may happen from any thread.
unsafe impl<T: NetData> Send for Registration<T> {}
// SAFETY: `&Registration` exposes nothing.
unsafe impl<T: NetData> Sync for Registration<T> {}

impl<T: NetData> Registration<T> {
    /// Registers the subsystem: `T::init` runs for every existing namespace
    /// before this returns, and for every new one after.
    pub fn register() -> Result<Self> {
        let ops = KBox::pin(Opaque::new(sys::pernet_operations::default()), GFP_KERNEL)?;
        // SAFETY: `ops` is a fresh, pinned allocation nothing else sees yet.
        let raw = unsafe { &mut *ops.get() };
        raw.init = Some(init_callback::<T>);
        raw.pre_exit = Some(pre_exit_callback::<T>);
        raw.exit = Some(exit_callback::<T>);
        raw.id = T::ID.0.as_ptr();
        raw.size = core::mem::size_of::<*mut T>();
        // SAFETY: `ops` is pinned and outlives the registration (it is
        // unregistered in `drop` before being freed); `id` points to a
        // static.
        kernel::error::to_result(unsafe { sys::register_pernet_subsys(ops.get()) })?;
        // INVARIANT: registered above.
        Ok(Self {
            ops,
            _data: PhantomData,
        })
    }
}

impl<T: NetData> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: `ops` is registered (type invariant); this runs
        // `pre_exit`, waits for a grace period, then `exit` for every
        // namespace.
        unsafe { sys::unregister_pernet_subsys(self.ops.get()) }
    }
}
