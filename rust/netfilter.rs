// SPDX-License-Identifier: GPL-2.0

//! Netfilter hooks: `nf_hook_ops` registered in a network namespace, and the
//! safe view of a packet and its hook state that a handler gets.

use crate::net::Net;
use crate::pernet::PreExit;
use crate::rcu::ReadGuard;
use crate::skb::SkBuff;
use crate::sys;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::prelude::*;
use kernel::sync::Arc;

/// What a hook decides for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the packet continue to the next hook.
    Accept,
    /// Drop the packet.
    #[allow(dead_code)]
    Drop,
}

impl Verdict {
    fn to_raw(self) -> kernel::ffi::c_uint {
        match self {
            Verdict::Accept => sys::NF_ACCEPT,
            Verdict::Drop => sys::NF_DROP,
        }
    }
}

/// Where to attach a hook: protocol family (`NFPROTO_*`), hook
/// (`NF_INET_*`), priority, and a tag handed back to the handler.
#[derive(Clone, Copy, Debug)]
pub struct HookSpec {
    /// `NFPROTO_IPV4` or `NFPROTO_IPV6`.
    pub pf: u8,
    /// `NF_INET_PRE_ROUTING` .. `NF_INET_POST_ROUTING`.
    pub hooknum: u8,
    /// Lower runs first (`NF_IP_PRI_*`).
    pub priority: i32,
    /// Passed to [`Handler::hook`] to tell the attachment points apart.
    pub tag: u32,
}

/// The state netfilter passes with a packet (`struct nf_hook_state`).
pub struct HookState<'a>(&'a sys::nf_hook_state);

impl HookState<'_> {
    /// The hook (`NF_INET_*`).
    #[allow(dead_code)]
    pub fn hook(&self) -> u8 {
        self.0.hook
    }

    /// The protocol family (`NFPROTO_*`).
    #[allow(dead_code)]
    pub fn pf(&self) -> u8 {
        self.0.pf
    }

    /// The namespace the packet is in.
    pub fn net(&self) -> &Net {
        // SAFETY: netfilter passes the live namespace of the packet.
        unsafe { Net::from_raw(self.0.net) }
    }

    /// Hooks run under `rcu_read_lock()`; RCU-published data may be read.
    pub fn rcu(&self) -> &ReadGuard {
        // SAFETY: netfilter runs hooks inside an RCU read-side critical
        // section, which lasts at least as long as `self`.
        unsafe { ReadGuard::assume_held() }
    }

    /// Copies the input device's name into `buf`; empty if none (at
    /// OUTPUT, for example).
    pub fn in_name<'b>(&self, buf: &'b mut [u8; 16]) -> &'b [u8] {
        dev_name(self.0.in_, buf)
    }

    /// Copies the output device's name into `buf`; empty if none.
    pub fn out_name<'b>(&self, buf: &'b mut [u8; 16]) -> &'b [u8] {
        dev_name(self.0.out, buf)
    }

    /// Routes `skb` again after its destination changed (DNAT at OUTPUT).
    pub fn reroute(&self, skb: &SkBuff) -> Result {
        // SAFETY: `skb` and the state are valid for the hook call.
        kernel::error::to_result(unsafe { sys::rnf_route_me_harder(self.0, skb.as_ptr()) })
    }

    /// The address masquerade maps `skb` to (the output interface's
    /// address for its next hop) and that interface's index.
    pub fn masquerade_addr(&self, skb: &SkBuff) -> Option<([u8; 16], u32)> {
        let mut addr = [0u8; 16];
        let mut ifindex = 0u32;
        // SAFETY: `skb` and the state are valid for the hook call (under
        // RCU); the outputs are writable.
        unsafe { sys::rnf_masq_addr(self.0, skb.as_ptr(), addr.as_mut_ptr(), &mut ifindex) }
            .then_some((addr, ifindex))
    }

    /// The address redirect maps `skb` to: loopback for local traffic,
    /// else the input interface's first address.
    pub fn redirect_addr(&self, skb: &SkBuff) -> Option<[u8; 16]> {
        let mut addr = [0u8; 16];
        // SAFETY: as above.
        unsafe { sys::rnf_redirect_addr(self.0, skb.as_ptr(), addr.as_mut_ptr()) }.then_some(addr)
    }

    /// Sends a reject for `skb` (a TCP reset for `kind` 1, else the ICMP or
    /// ICMPv6 error for `rules::RejectKind` `kind`), as iptables' REJECT
    /// does. The caller then drops the packet.
    pub fn reject(&self, skb: &SkBuff, kind: u8) {
        // SAFETY: `skb` and the state are valid for the hook call; the
        // functions only read `skb` to build the answer.
        unsafe { sys::rnf_reject(skb.as_ptr(), self.0, kind) }
    }
}

fn dev_name<'b>(dev: *mut sys::net_device, buf: &'b mut [u8; 16]) -> &'b [u8] {
    // SAFETY: `dev` is NULL or a device netfilter keeps alive for the hook
    // call; `buf` has 16 bytes (IFNAMSIZ).
    let n = unsafe { sys::rnf_dev_name(dev, buf.as_mut_ptr().cast(), 16) } as usize;
    buf.get(..n).unwrap_or(&[])
}

/// Code run for packets at the hooks of a [`Registration`].
pub trait Handler: Send + Sync + 'static {
    /// Decides the fate of `skb` at the attachment point tagged `tag`. Runs
    /// in the packet path: under RCU, possibly in softirq, never sleeping.
    fn hook(&self, tag: u32, skb: &SkBuff, state: &HookState<'_>) -> Verdict;
}

struct Slot<H> {
    handler: *const H,
    tag: u32,
}

/// # Safety
///
/// Called by netfilter only, for a hook registered by [`Registration::new`],
/// with a valid skb and state.
unsafe extern "C" fn hook_callback<H: Handler>(
    priv_: *mut kernel::ffi::c_void,
    skb: *mut sys::sk_buff,
    state: *const sys::nf_hook_state,
) -> kernel::ffi::c_uint {
    // SAFETY: `priv_` is the `Slot<H>` set up by `Registration::new`; slots
    // and the handler outlive the registration plus a grace period, and
    // netfilter runs hooks under RCU.
    let slot = unsafe { &*priv_.cast::<Slot<H>>() };
    // SAFETY: as above, the handler is kept alive by the registration's `Arc`.
    let handler = unsafe { &*slot.handler };
    // SAFETY: netfilter passes a valid skb that it owns for the call.
    let skb = unsafe { SkBuff::from_raw(skb) };
    // SAFETY: netfilter passes a valid state for the call.
    let state = HookState(unsafe { &*state });
    handler.hook(slot.tag, skb, &state).to_raw()
}

/// Hooks registered in one network namespace, all served by one handler.
///
/// # Invariants
///
/// While `registered` is true, `ops` is registered in `net`; each `ops[i]`
/// has `priv` pointing at `slots[i]`, whose handler pointer is `handler`'s.
/// `ops` and `slots` are never resized, so those pointers stay valid.
pub struct Registration<H: Handler> {
    net: *mut sys::net,
    ops: KVec<sys::nf_hook_ops>,
    // Referenced through `ops[i].priv` only.
    #[allow(dead_code)]
    slots: KVec<Slot<H>>,
    handler: Arc<H>,
    registered: AtomicBool,
}

// SAFETY: the raw pointers refer to data owned by `self` (slots, ops) or to
// the namespace, which outlives the registration (it is owned by the
// namespace's pernet data); unregistration is safe from any thread.
unsafe impl<H: Handler> Send for Registration<H> {}
// SAFETY: shared access only reads or uses an atomic flag.
unsafe impl<H: Handler> Sync for Registration<H> {}

impl<H: Handler> Registration<H> {
    /// Registers one hook per spec in `net`, calling `handler`.
    ///
    /// The registration must not outlive `net`: keep it in the namespace's
    /// pernet data ([`crate::pernet::NetData`]).
    pub fn new(net: &Net, specs: &[HookSpec], handler: Arc<H>) -> Result<Self> {
        let mut slots = KVec::with_capacity(specs.len(), GFP_KERNEL)?;
        for spec in specs {
            slots.push(
                Slot {
                    handler: &*handler as *const H,
                    tag: spec.tag,
                },
                GFP_KERNEL,
            )?;
        }
        let mut ops = KVec::with_capacity(specs.len(), GFP_KERNEL)?;
        for (spec, slot) in specs.iter().zip(slots.iter()) {
            let op = sys::nf_hook_ops {
                hook: Some(hook_callback::<H>),
                priv_: (slot as *const Slot<H>).cast_mut().cast(),
                pf: spec.pf,
                hooknum: u32::from(spec.hooknum),
                priority: spec.priority,
                ..Default::default()
            };
            ops.push(op, GFP_KERNEL)?;
        }
        let n = u32::try_from(ops.len()).map_err(|_| EINVAL)?;
        // SAFETY: `ops` holds `n` initialised hook ops whose `priv` point at
        // `slots`, all kept alive and unmoved until unregistration plus a
        // grace period (see `unregister` and `Drop`).
        kernel::error::to_result(unsafe {
            sys::nf_register_net_hooks(net.as_ptr(), ops.as_ptr(), n)
        })?;
        // INVARIANT: registered above; pointers set up as documented.
        Ok(Self {
            net: net.as_ptr(),
            ops,
            slots,
            handler,
            registered: AtomicBool::new(true),
        })
    }

    /// The handler the hooks call.
    #[allow(dead_code)]
    pub fn handler(&self) -> &Arc<H> {
        &self.handler
    }

    /// The number of hooks.
    pub fn hook_count(&self) -> usize {
        self.ops.len()
    }

    fn unregister_raw(&self) -> bool {
        if !self.registered.swap(false, Ordering::AcqRel) {
            return false;
        }
        // SAFETY: the hooks are registered in `net` (type invariant, and the
        // flag was true); `ops` is the same array that was registered.
        unsafe { sys::nf_unregister_net_hooks(self.net, self.ops.as_ptr(), self.ops.len() as u32) };
        true
    }

    /// Unregisters the hooks while the namespace is going away. Handlers may
    /// still be running; `grace` proves a grace period passes before `self`
    /// is dropped.
    pub fn unregister(&self, _grace: &PreExit) {
        self.unregister_raw();
    }
}

impl<H: Handler> Drop for Registration<H> {
    fn drop(&mut self) {
        if self.unregister_raw() {
            // Not unregistered ahead of a grace period: wait here for
            // handlers still running on other CPUs before freeing the slots.
            // SAFETY: no preconditions; may sleep, which `drop` may.
            unsafe { sys::synchronize_net() };
        }
    }
}

/// IPv4 and IPv6 reassembly before conntrack in one namespace
/// (`nf_defrag_ipv4`/`nf_defrag_ipv6`), so that tracking always sees
/// transport headers. Disabled when dropped.
pub struct Defrag {
    net: crate::pernet::NetRef,
}

impl Defrag {
    /// Enables reassembly in the namespace `net`.
    pub fn enable(net: crate::pernet::NetRef) -> Result<Self> {
        // SAFETY: `net` is a live namespace (`NetRef` invariant).
        kernel::error::to_result(unsafe { sys::rnf_defrag_enable(net.get().as_ptr()) })?;
        Ok(Self { net })
    }
}

impl Drop for Defrag {
    fn drop(&mut self) {
        // SAFETY: enabled in `new` for this live namespace; each enable is
        // paired with one disable.
        unsafe { sys::rnf_defrag_disable(self.net.get().as_ptr()) };
    }
}

/// What [`AddrNotifier`] reports.
pub trait AddrEvents: 'static {
    /// In `net`, interface `ifindex` went down (`addr` is `None`) or lost
    /// the address `addr` (IPv4 in the first 4 bytes). May run in atomic
    /// context: must not sleep.
    fn address_gone(net: &Net, ifindex: i32, addr: Option<(crate::hooks::Family, [u8; 16])>);
}

/// Registered interface and address notifiers (one per module).
pub struct AddrNotifier {
    _p: core::marker::PhantomData<()>,
}

/// # Safety
///
/// Called by the notifier helpers only, with a live namespace and `addr`
/// NULL or 16 readable bytes.
unsafe extern "C" fn addr_callback<E: AddrEvents>(
    net: *mut sys::net,
    ifindex: kernel::ffi::c_int,
    addr: *const u8,
    family: u8,
) {
    // SAFETY: the notifier runs for a live namespace.
    let net = unsafe { Net::from_raw(net) };
    let a = if addr.is_null() {
        None
    } else {
        let mut b = [0u8; 16];
        // SAFETY: `addr` points at 16 bytes (see above).
        unsafe { core::ptr::copy_nonoverlapping(addr, b.as_mut_ptr(), 16) };
        let fam = if u32::from(family) == sys::NFPROTO_IPV6 {
            crate::hooks::Family::Ipv6
        } else {
            crate::hooks::Family::Ipv4
        };
        Some((fam, b))
    };
    E::address_gone(net, ifindex, a);
}

impl AddrNotifier {
    /// Registers the notifiers; `E` hears every event until dropped.
    pub fn register<E: AddrEvents>() -> Result<Self> {
        // SAFETY: the callback matches; it stays valid (module code) until
        // `drop` unregisters.
        kernel::error::to_result(unsafe { sys::rnf_notifiers_register(Some(addr_callback::<E>)) })?;
        Ok(Self {
            _p: core::marker::PhantomData,
        })
    }
}

impl Drop for AddrNotifier {
    fn drop(&mut self) {
        // SAFETY: registered in `register`; after this no callback runs.
        unsafe { sys::rnf_notifiers_unregister() };
    }
}
