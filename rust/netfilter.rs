// SPDX-License-Identifier: GPL-2.0

//! Netfilter hooks: `nf_hook_ops` registered in a network namespace, and the
//! safe view of a packet and its hook state that a handler gets.

use crate::net::Net;
use crate::pernet::PreExit;
use crate::rcu::ReadGuard;
use crate::skb::SkBuff;
use crate::sys;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

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
    /// Which of the handler's callbacks serves the hook: `Handler::hook`
    /// with this `KIND`, below [`KINDS`].
    pub kind: u8,
}

/// The number of hook kinds a handler may have ([`HookSpec::kind`]).
pub const KINDS: u8 = 6;

/// The state netfilter passes with a packet (`struct nf_hook_state`).
pub struct HookState<'a>(&'a sys::nf_hook_state);

impl HookState<'_> {
    /// The hook (`NF_INET_*`).
    #[allow(dead_code)]
    pub fn hook(&self) -> u8 {
        self.0.hook
    }

    /// The protocol family (`NFPROTO_*`).
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

    /// Whether the packet came in on a loopback device (`lo`).
    pub fn in_is_loopback(&self) -> bool {
        // SAFETY: `in_` is NULL or a device the hook state holds for the
        // call.
        unsafe { sys::rnf_dev_is_loopback(self.0.in_) }
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
    /// Decides the fate of `skb` at the attachment point tagged `tag`, of
    /// kind `KIND` ([`HookSpec::kind`]). Runs in the packet path: under RCU,
    /// possibly in softirq, never sleeping.
    ///
    /// Each kind is a callback of its own, compiled on its own: a hook that
    /// only counts costs a packet little more than the counting (a general
    /// callback saves registers and sets up a large frame first), and the
    /// code of one kind of hook does not change how another is compiled.
    fn hook<const KIND: u8>(&self, tag: u32, skb: &SkBuff, state: &HookState<'_>) -> Verdict;
}

struct Slot<H> {
    handler: *const H,
    tag: u32,
}

/// Netfilter's hook function type.
type HookFn = unsafe extern "C" fn(
    *mut kernel::ffi::c_void,
    *mut sys::sk_buff,
    *const sys::nf_hook_state,
) -> kernel::ffi::c_uint;

/// The callback of hooks of kind `kind`, if it is one (below [`KINDS`]).
fn callback<H: Handler>(kind: u8) -> Option<HookFn> {
    Some(match kind {
        0 => hook_callback::<H, 0>,
        1 => hook_callback::<H, 1>,
        2 => hook_callback::<H, 2>,
        3 => hook_callback::<H, 3>,
        4 => hook_callback::<H, 4>,
        5 => hook_callback::<H, 5>,
        _ => return None,
    })
}

/// # Safety
///
/// Called by netfilter only, for a hook registered by [`Registration::new`],
/// with a valid skb and state.
unsafe extern "C" fn hook_callback<H: Handler, const KIND: u8>(
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
    handler.hook::<KIND>(slot.tag, skb, &state).to_raw()
}

/// Waits until every hook callback running when called has returned (a
/// grace period: netfilter runs hooks under RCU), so that what was written
/// before is seen by every callback after. May sleep.
pub fn wait_for_running_hooks() {
    // SAFETY: no preconditions; the callers are in process context.
    unsafe { sys::synchronize_net() };
}

/// Hooks of one network namespace, all served by one handler, each
/// registered or not as the caller decides ([`set`](Self::set)): rnf hooks
/// only the stages that have work to do, as nftables registers only the
/// base chains that exist.
///
/// # Invariants
///
/// Bit `i` of `state` (below [`CLOSED`]) is set exactly while `ops[i]` is
/// registered in `net`; once `CLOSED` is set no op is registered and none
/// is registered again. Each `ops[i]` has `priv` pointing at `slots[i]`,
/// whose handler pointer is `handler`'s. `ops` and `slots` are never
/// resized, so those pointers stay valid.
pub struct Registration<H: Handler> {
    net: *mut sys::net,
    ops: KVec<sys::nf_hook_ops>,
    // Referenced through `ops[i].priv` only.
    #[allow(dead_code)]
    slots: KVec<Slot<H>>,
    handler: Arc<H>,
    state: Pin<KBox<Mutex<u64>>>,
}

/// In a [`Registration`]'s state: unregistered for good.
const CLOSED: u64 = 1 << 63;

// SAFETY: the raw pointers refer to data owned by `self` (slots, ops) or to
// the namespace, which outlives the registration (it is owned by the
// namespace's pernet data); (un)registration is safe from any thread.
unsafe impl<H: Handler> Send for Registration<H> {}
// SAFETY: shared access reads immutable data or goes through the mutex.
unsafe impl<H: Handler> Sync for Registration<H> {}

impl<H: Handler> Registration<H> {
    /// Prepares one hook per spec in `net`, calling `handler`, and
    /// registers those in `initial` (bit `i`: `specs[i]`). At most 63 specs.
    ///
    /// The registration must not outlive `net`: keep it in the namespace's
    /// pernet data ([`crate::pernet::NetData`]).
    pub fn new(net: &Net, specs: &[HookSpec], handler: Arc<H>, initial: u64) -> Result<Self> {
        if specs.len() >= 63 {
            return Err(EINVAL);
        }
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
                hook: Some(callback::<H>(spec.kind).ok_or(EINVAL)?),
                priv_: (slot as *const Slot<H>).cast_mut().cast(),
                pf: spec.pf,
                hooknum: u32::from(spec.hooknum),
                priority: spec.priority,
                ..Default::default()
            };
            ops.push(op, GFP_KERNEL)?;
        }
        // INVARIANT: nothing registered yet; pointers set up as documented.
        let reg = Self {
            net: net.as_ptr(),
            ops,
            slots,
            handler,
            state: KBox::pin_init(new_mutex!(0), GFP_KERNEL)?,
        };
        reg.set(initial)?;
        Ok(reg)
    }

    /// The handler the hooks call.
    #[allow(dead_code)]
    pub fn handler(&self) -> &Arc<H> {
        &self.handler
    }

    /// The number of hooks that can be registered.
    pub fn hook_count(&self) -> usize {
        self.ops.len()
    }

    /// Which hooks are registered (bit `i`: the `i`-th spec).
    pub fn registered(&self) -> u64 {
        *self.state.lock() & !CLOSED
    }

    /// Registers the hooks in `wanted` that are not, and unregisters those
    /// registered that are not in it. May sleep. Stops at the first hook
    /// that cannot be registered (out of memory); what was done stays
    /// done. Does nothing once [`unregister`](Self::unregister) ran.
    pub fn set(&self, wanted: u64) -> Result {
        let mut state = self.state.lock();
        if *state & CLOSED != 0 {
            return Ok(());
        }
        for (i, op) in self.ops.iter().enumerate() {
            let bit = 1u64 << i;
            if wanted & bit != 0 && *state & bit == 0 {
                // SAFETY: `op` is not registered (invariant: its bit is
                // clear) and stays alive and unmoved, with its slot, until
                // it is unregistered and a grace period has passed (see
                // `unregister` and `Drop`).
                kernel::error::to_result(unsafe { sys::nf_register_net_hook(self.net, op) })?;
                // INVARIANT: registered.
                *state |= bit;
            } else if wanted & bit == 0 && *state & bit != 0 {
                // SAFETY: `op` is registered in `net` (invariant). Its
                // handler may run on until a grace period has passed; the
                // slot and handler live as long as `self`, which is dropped
                // after one (see `Drop`).
                unsafe { sys::nf_unregister_net_hook(self.net, op) };
                // INVARIANT: unregistered.
                *state &= !bit;
            }
        }
        Ok(())
    }

    /// Unregisters every hook for good; returns whether any was registered.
    fn close(&self) -> bool {
        let mut state = self.state.lock();
        let mut any = false;
        for (i, op) in self.ops.iter().enumerate() {
            if *state & (1u64 << i) != 0 {
                // SAFETY: registered in `net` (invariant).
                unsafe { sys::nf_unregister_net_hook(self.net, op) };
                any = true;
            }
        }
        // INVARIANT: none registered, none will be.
        *state = CLOSED;
        any
    }

    /// Unregisters the hooks while the namespace is going away. Handlers may
    /// still be running; `grace` proves a grace period passes before `self`
    /// is dropped.
    pub fn unregister(&self, _grace: &PreExit) {
        self.close();
    }
}

impl<H: Handler> Drop for Registration<H> {
    fn drop(&mut self) {
        // Hooks unregistered earlier (by `set`) may still be running on
        // other CPUs too: wait for them all before freeing the slots, unless
        // `unregister` ran, which comes with a grace period before this.
        let closed = *self.state.lock() & CLOSED != 0;
        if self.close() || !closed {
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
