// SPDX-License-Identifier: GPL-2.0

//! Generic netlink: registering a family and answering its requests.
//!
//! Requests are validated by the kernel against the family's attribute
//! policy (strictly: unknown attributes are refused) and, for commands
//! marked admin-only, against CAP_NET_ADMIN in the namespace's user
//! namespace, before a handler runs.

use crate::net::Net;
use crate::rcu::ReadGuard;
use crate::sys;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::types::Opaque;

/// The kind of an attribute in a policy (`NLA_*`).
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
pub enum AttrKind {
    /// Must not appear in requests.
    Reject,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `s32`.
    S32,
    /// A NUL-terminated string of at most this many bytes (0: no limit).
    NulString(u16),
    /// Opaque bytes, at most this many (0: no limit).
    Binary(u16),
    /// Nested attributes.
    Nested,
}

/// One command of a family.
#[derive(Clone, Copy, Debug)]
pub struct Command {
    /// The command number.
    pub cmd: u8,
    /// Only callers with CAP_NET_ADMIN over the request's namespace.
    pub admin: bool,
    /// Answered as a dump (`NLM_F_DUMP`, [`Handler::dump`]) rather than by
    /// [`Handler::doit`].
    pub dump: bool,
}

/// A family's request handler.
pub trait Handler: 'static {
    /// Handles a validated request. An error becomes the netlink error
    /// answer; set a message with [`Request::set_error`].
    fn doit(req: &mut Request<'_>) -> Result;

    /// Starts a dump: returns the payload (attributes after the generic
    /// netlink header) of every message to send, taken as one snapshot so
    /// the whole dump is consistent.
    fn dump(req: &mut Request<'_>) -> Result<KVec<KVec<u8>>> {
        let _ = req;
        Err(crate::errno::eopnotsupp())
    }
}

/// A request being handled.
pub struct Request<'a> {
    info: *mut sys::genl_info,
    maxattr: u16,
    _life: PhantomData<&'a mut sys::genl_info>,
}

impl<'a> Request<'a> {
    /// The command number.
    pub fn cmd(&self) -> u8 {
        // SAFETY: `info` and its `genlhdr` are valid for the request.
        unsafe { (*(*self.info).genlhdr).cmd }
    }

    /// The caller's network namespace.
    pub fn net(&self) -> &'a Net {
        // SAFETY: `info` is valid; the namespace outlives the request (the
        // requesting socket holds it).
        unsafe { Net::from_raw(sys::rnf_genl_info_net(self.info)) }
    }

    /// The payload of attribute `ty`, if the request has it.
    #[allow(dead_code)]
    pub fn attr(&self, ty: u16) -> Option<&'a [u8]> {
        if ty == 0 || ty > self.maxattr {
            return None;
        }
        // SAFETY: the kernel parsed the request into `attrs`, an array of
        // `maxattr + 1` entries, valid for the request.
        let nla = unsafe { *(*self.info).attrs.add(usize::from(ty)) };
        if nla.is_null() {
            return None;
        }
        // SAFETY: `nla` points into the validated request message;
        // `nla_len` covers the header and payload, both inside the message.
        unsafe {
            let len =
                usize::from((*nla).nla_len).checked_sub(core::mem::size_of::<sys::nlattr>())?;
            let data = nla.cast::<u8>().add(core::mem::size_of::<sys::nlattr>());
            Some(core::slice::from_raw_parts(data, len))
        }
    }

    /// Every top-level attribute of the request, in order, as the raw
    /// bytes after the generic netlink header: unlike [`attr`](Self::attr),
    /// which sees only the last attribute of a type, this sees repeated
    /// ones. The kernel validated each against the policy.
    pub fn raw_attrs(&self) -> &'a [u8] {
        const NLMSG_HDRLEN: usize = core::mem::size_of::<sys::nlmsghdr>();
        const GENL_HDRLEN: usize = core::mem::size_of::<sys::genlmsghdr>();
        // SAFETY: `info`, its `nlhdr`, `genlhdr` and `family` are valid for
        // the request; `nlmsg_len` is the length of the whole message.
        let (msg_len, genlhdr, hdrsize) = unsafe {
            (
                (*(*self.info).nlhdr).nlmsg_len as usize,
                (*self.info).genlhdr.cast::<u8>(),
                (*(*self.info).family).hdrsize as usize,
            )
        };
        // As `genl_family_rcv_msg_attrs_parse`: the attributes follow the
        // genl header and the family header, each aligned to 4 bytes.
        let skip = (GENL_HDRLEN + hdrsize + 3) & !3;
        let Some(len) = msg_len
            .checked_sub(NLMSG_HDRLEN)
            .and_then(|l| l.checked_sub(skip))
        else {
            return &[];
        };
        // SAFETY: the message (`nlmsg_len` bytes from `nlhdr`, checked by
        // netlink against the skb) holds the genl header at `genlhdr`
        // (`NLMSG_HDRLEN` bytes after `nlhdr`), the family header, then
        // `len` bytes of attributes; it lives as long as the request.
        unsafe { core::slice::from_raw_parts(genlhdr.add(skip), len) }
    }

    /// Sets the extended-ack message sent back with an error.
    pub fn set_error(&mut self, msg: &'static CStr) {
        // SAFETY: `info` is valid; `msg` lives forever, as extack requires.
        unsafe { sys::rnf_extack_set_msg(self.info, msg.as_char_ptr()) }
    }

    /// Sets a formatted extended-ack message (cut to 79 bytes), for
    /// messages that name what is wrong.
    pub fn set_error_fmt(&mut self, args: core::fmt::Arguments<'_>) {
        let mut buf = MsgBuf {
            bytes: [0; 80],
            len: 0,
        };
        let _ = core::fmt::write(&mut buf, args);
        // SAFETY: `info` is valid; `buf` is NUL-terminated (its last byte
        // is never written) and copied before this returns.
        unsafe { sys::rnf_extack_set_msg_copy(self.info, buf.bytes.as_ptr().cast()) }
    }

    /// Replies with command `cmd` and a payload of `len` bytes that `fill`
    /// writes (netlink attributes, after the generic netlink header).
    pub fn reply(&mut self, cmd: u8, len: usize, fill: impl FnOnce(&mut [u8]) -> Result) -> Result {
        let put_len = u32::try_from(len).map_err(|_| crate::errno::emsgsize())?;
        // SAFETY: no preconditions; NULL on failure.
        let skb = unsafe { sys::rnf_genlmsg_new(len) };
        if skb.is_null() {
            return Err(ENOMEM);
        }
        let result = (|| {
            // SAFETY: `skb` is a fresh message; `info` and its family are
            // valid for the request.
            let hdr = unsafe {
                sys::rnf_genlmsg_put_reply(skb, self.info, (*self.info).family.cast(), cmd)
            };
            if hdr.is_null() {
                return Err(crate::errno::emsgsize());
            }
            // SAFETY: `rnf_genlmsg_new(len)` left room for `len` payload
            // bytes after the headers; `skb_put` returns them, and they are
            // zeroed before being handed out as a slice.
            let payload = unsafe {
                let p = sys::skb_put(skb, put_len).cast::<u8>();
                core::ptr::write_bytes(p, 0, len);
                core::slice::from_raw_parts_mut(p, len)
            };
            fill(payload)?;
            // SAFETY: `hdr` was returned by `genlmsg_put_reply` on `skb`.
            unsafe { sys::rnf_genlmsg_end(skb, hdr) };
            Ok(())
        })();
        match result {
            Ok(()) => {
                // SAFETY: `skb` is a complete message; `genlmsg_reply`
                // consumes it whatever the outcome.
                kernel::error::to_result(unsafe { sys::rnf_genlmsg_reply(skb, self.info) })
            }
            Err(e) => {
                // SAFETY: `skb` is ours and not sent.
                unsafe { sys::rnf_kfree_skb(skb) };
                Err(e)
            }
        }
    }
}

/// A NUL-terminated message buffer for [`Request::set_error_fmt`].
struct MsgBuf {
    bytes: [u8; 80],
    len: usize,
}

impl core::fmt::Write for MsgBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            // Keep the last byte for the NUL; drop NULs from the text.
            if self.len + 1 >= self.bytes.len() {
                break;
            }
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = if b == 0 { b'?' } else { b };
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// The messages of a dump in progress, kept in `cb->args[0]`.
struct DumpState {
    msgs: KVec<KVec<u8>>,
    next: usize,
    cmd: u8,
}

/// # Safety
///
/// Called by generic netlink only, for a dump of this family, after the
/// request was parsed into the callback's dump info.
unsafe extern "C" fn start_callback<H: Handler>(
    cb: *mut sys::netlink_callback,
) -> kernel::ffi::c_int {
    // SAFETY: the kernel passes a valid callback whose dump info it set up.
    let info = unsafe { sys::rnf_dump_info(cb) };
    // SAFETY: `info` is valid; its family is ours.
    let maxattr = unsafe { (*(*info).family).maxattr } as u16;
    let mut req = Request {
        info,
        maxattr,
        _life: PhantomData,
    };
    let cmd = req.cmd();
    let msgs = match H::dump(&mut req) {
        Ok(m) => m,
        Err(e) => return e.to_errno(),
    };
    // Every message must fit the buffer netlink allocates for a dump.
    let largest = msgs.iter().map(|m| m.len()).max().unwrap_or(0);
    let need = u32::try_from(largest.saturating_add(256)).unwrap_or(u32::MAX);
    // SAFETY: `cb` is valid.
    unsafe { sys::rnf_dump_set_min_alloc(cb, need) };
    let state = match KBox::new(DumpState { msgs, next: 0, cmd }, GFP_KERNEL) {
        Ok(s) => s,
        Err(_) => return ENOMEM.to_errno(),
    };
    // SAFETY: `args` has room for 6 longs that the family owns; `done`
    // frees what is stored here.
    unsafe { *sys::rnf_dump_args(cb) = KBox::into_raw(state) as kernel::ffi::c_long };
    0
}

/// # Safety
///
/// Called by netlink only, for a dump started by `start_callback`.
unsafe extern "C" fn dumpit_callback(
    skb: *mut sys::sk_buff,
    cb: *mut sys::netlink_callback,
) -> kernel::ffi::c_int {
    // SAFETY: `start_callback` stored a `DumpState` in `args[0]`; netlink
    // calls dumpit and done one at a time for a callback.
    let state = unsafe { (*sys::rnf_dump_args(cb) as *mut DumpState).as_mut() };
    let Some(state) = state else { return 0 };
    // SAFETY: the dump info stays valid for the dump.
    let family = unsafe { (*sys::rnf_dump_info(cb)).family };
    let mut sent = 0;
    while let Some(msg) = state.msgs.get(state.next) {
        let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
        // SAFETY: `skb` is the dump's buffer, `msg` is `len` readable bytes.
        let rc = unsafe {
            sys::rnf_dump_put(skb, cb, family.cast(), state.cmd, msg.as_ptr().cast(), len)
        };
        if rc != 0 {
            if sent == 0 {
                // A message too big for an empty buffer can never be sent.
                return rc;
            }
            break;
        }
        sent += 1;
        state.next += 1;
    }
    if sent == 0 {
        0
    } else {
        // SAFETY: `skb` is valid.
        unsafe { (*skb).len as kernel::ffi::c_int }
    }
}

/// # Safety
///
/// Called by netlink only, once, when a dump ends.
unsafe extern "C" fn done_callback(cb: *mut sys::netlink_callback) -> kernel::ffi::c_int {
    // SAFETY: `args[0]` is NULL or the `DumpState` from `start_callback`.
    let args = unsafe { sys::rnf_dump_args(cb) };
    // SAFETY: as above; cleared so it is freed once.
    let p = unsafe { core::mem::replace(&mut *args, 0) } as *mut DumpState;
    if !p.is_null() {
        // SAFETY: `p` came from `KBox::into_raw` in `start_callback`.
        drop(unsafe { KBox::from_raw(p) });
    }
    0
}

/// # Safety
///
/// Called by generic netlink only, with a valid `info` for one of this
/// family's requests.
unsafe extern "C" fn doit_callback<H: Handler>(
    _skb: *mut sys::sk_buff,
    info: *mut sys::genl_info,
) -> kernel::ffi::c_int {
    // SAFETY: the kernel passes a valid `info` whose family is ours.
    let maxattr = unsafe { (*(*info).family).maxattr } as u16;
    let mut req = Request {
        info,
        maxattr,
        _life: PhantomData,
    };
    match H::doit(&mut req) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

fn policy_entry(kind: AttrKind) -> sys::nla_policy {
    let mut p = sys::nla_policy::default();
    let (ty, len) = match kind {
        AttrKind::Reject => (sys::NLA_REJECT, 0),
        AttrKind::U8 => (sys::NLA_U8, 0),
        AttrKind::U16 => (sys::NLA_U16, 0),
        AttrKind::U32 => (sys::NLA_U32, 0),
        AttrKind::U64 => (sys::NLA_U64, 0),
        AttrKind::S32 => (sys::NLA_S32, 0),
        AttrKind::NulString(max) => (sys::NLA_NUL_STRING, max),
        AttrKind::Binary(max) => (sys::NLA_BINARY, max),
        AttrKind::Nested => (sys::NLA_NESTED, 0),
    };
    p.type_ = ty as u8;
    p.len = len;
    p
}

/// A registered generic netlink family.
///
/// # Invariants
///
/// `family` is registered with `genl_register_family` for the life of
/// `self`, and points at `ops` and `policy`, which are never resized.
pub struct Registration {
    family: Pin<KBox<Opaque<sys::genl_family>>>,
    _ops: KVec<sys::genl_ops>,
    _policy: KVec<sys::nla_policy>,
    _groups: KVec<sys::genl_multicast_group>,
}

/// The registered family, for senders of multicast messages; NULL while
/// none is registered. Cleared, then a grace period waited for, before the
/// family is unregistered, so a sender under RCU never sees it go.
static FAMILY: AtomicPtr<sys::genl_family> = AtomicPtr::new(core::ptr::null_mut());

/// `GENL_MCAST_CAP_NET_ADMIN`: listening to a group needs CAP_NET_ADMIN
/// over the namespace (a macro bindgen does not see).
const MCAST_CAP_NET_ADMIN: u8 = 1 << 0;

/// Whether a socket has ever joined one of the family's multicast groups
/// since the module was loaded: set by [`bind_callback`], which generic
/// netlink calls before the membership takes effect, and never cleared
/// (the calls that leave a group cannot be told apart from calls by
/// sockets that never joined it, so a count could not be trusted), like
/// the one-way `udp_encap_enable()`. Until it is set no one can be
/// listening, and [`has_listeners`] answers without asking netlink (per
/// new flow in a full flow table, two calls into netlink, for the evicted
/// flow's DESTROY and the new one's NEW: about 100 instructions a packet
/// in the new-flows benchmark).
static EVER_BOUND: AtomicBool = AtomicBool::new(false);

/// Generic netlink's `bind` callback: a socket is joining group `_mcgrp`
/// (called after the capability check, before the socket is a member).
extern "C" fn bind_callback(_mcgrp: kernel::ffi::c_int) -> kernel::ffi::c_int {
    EVER_BOUND.store(true, Ordering::Release);
    0
}

/// Whether anyone in `net` listens to multicast group `group` (its index in
/// the family's groups) of the registered family.
#[inline(always)]
pub fn has_listeners(net: &Net, group: u32, guard: &ReadGuard) -> bool {
    EVER_BOUND.load(Ordering::Acquire) && asks_netlink(net, group, guard)
}

/// [`has_listeners`] once a socket has joined a group: netlink's answer.
#[inline(never)]
fn asks_netlink(net: &Net, group: u32, _guard: &ReadGuard) -> bool {
    let family = FAMILY.load(Ordering::Acquire);
    if family.is_null() {
        return false;
    }
    // SAFETY: a published family stays registered until a grace period
    // after it is unpublished (see `FAMILY`); `_guard` holds that off.
    unsafe { sys::rnf_genl_has_listeners(family.cast(), net.as_ptr(), group) }
}

/// Sends a message of command `cmd` with `payload` (attributes) to the
/// listeners of multicast group `group` in `net`, from any context (it
/// allocates atomically). Nothing is built when no one listens.
pub fn multicast(net: &Net, group: u32, cmd: u8, payload: &[u8], _guard: &ReadGuard) -> Result {
    let family = FAMILY.load(Ordering::Acquire);
    if family.is_null() {
        return Ok(());
    }
    let len = u32::try_from(payload.len()).map_err(|_| crate::errno::emsgsize())?;
    // SAFETY: as in `has_listeners`; `payload` is readable for `len` bytes.
    let rc = unsafe {
        sys::rnf_genl_multicast(
            family.cast(),
            net.as_ptr(),
            group,
            cmd,
            payload.as_ptr().cast(),
            len,
        )
    };
    // No listener left between the check and the send is not an error.
    if rc == -(sys::ESRCH as i32) {
        return Ok(());
    }
    kernel::error::to_result(rc)
}

// SAFETY: the family is kernel bookkeeping; unregistering works from any
// thread.
unsafe impl Send for Registration {}
// SAFETY: `&Registration` exposes nothing.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers family `name`. `policy[i]` is the policy of attribute `i`
    /// (entry 0 is unused). Requests are handled by `H`, under the kernel's
    /// generic netlink mutex (one at a time).
    pub fn register<H: Handler>(
        module: &'static ThisModule,
        name: &CStr,
        version: u32,
        policy: &[AttrKind],
        commands: &[Command],
        groups: &[&CStr],
    ) -> Result<Self> {
        let name = name.as_bytes();
        let maxattr = u32::try_from(policy.len().saturating_sub(1)).map_err(|_| EINVAL)?;
        let mut pol = KVec::with_capacity(policy.len(), GFP_KERNEL)?;
        for kind in policy {
            pol.push(policy_entry(*kind), GFP_KERNEL)?;
        }
        let mut ops = KVec::with_capacity(commands.len(), GFP_KERNEL)?;
        for c in commands {
            let op = sys::genl_ops {
                cmd: c.cmd,
                doit: if c.dump {
                    None
                } else {
                    Some(doit_callback::<H>)
                },
                start: if c.dump {
                    Some(start_callback::<H>)
                } else {
                    None
                },
                dumpit: if c.dump { Some(dumpit_callback) } else { None },
                done: if c.dump { Some(done_callback) } else { None },
                policy: pol.as_ptr(),
                maxattr,
                flags: if c.admin {
                    sys::GENL_UNS_ADMIN_PERM as u8
                } else {
                    0
                },
                ..Default::default()
            };
            ops.push(op, GFP_KERNEL)?;
        }

        let mut grps = KVec::with_capacity(groups.len(), GFP_KERNEL)?;
        for g in groups {
            let mut grp = sys::genl_multicast_group::default();
            let gname = g.as_bytes();
            if gname.len() >= grp.name.len() {
                return Err(EINVAL);
            }
            for (dst, src) in grp.name.iter_mut().zip(gname) {
                *dst = *src as _;
            }
            grp.flags = MCAST_CAP_NET_ADMIN;
            grps.push(grp, GFP_KERNEL)?;
        }

        let family = KBox::pin(Opaque::new(sys::genl_family::default()), GFP_KERNEL)?;
        // SAFETY: `family` is a fresh, pinned allocation nothing else sees.
        let raw = unsafe { &mut *family.get() };
        if name.len() >= raw.name.len() {
            return Err(EINVAL);
        }
        for (dst, src) in raw.name.iter_mut().zip(name) {
            *dst = *src as _;
        }
        raw.version = version;
        raw.maxattr = maxattr;
        raw.set_netnsok(1);
        raw.policy = pol.as_ptr();
        raw.ops = ops.as_ptr();
        raw.n_ops = u8::try_from(ops.len()).map_err(|_| EINVAL)?;
        if !grps.is_empty() {
            raw.mcgrps = grps.as_ptr();
            raw.n_mcgrps = u8::try_from(grps.len()).map_err(|_| EINVAL)?;
        }
        // Every command gets strict validation.
        raw.resv_start_op = 0;
        raw.bind = Some(bind_callback);
        raw.module = module.as_ptr().cast();
        // SAFETY: `family`, `ops` and `pol` are heap allocations that stay
        // put and alive until `genl_unregister_family` in `drop`.
        kernel::error::to_result(unsafe { sys::genl_register_family(family.get()) })?;
        FAMILY.store(family.get(), Ordering::Release);
        // A socket that joined the groups' numbers before they were this
        // family's (no family to call back then) is a listener too.
        let n_groups = u32::try_from(grps.len()).map_err(|_| EINVAL)?;
        // SAFETY: `family` is registered (above) with `n_groups` groups.
        if unsafe { sys::rnf_genl_has_listeners_any(family.get().cast(), n_groups) } {
            EVER_BOUND.store(true, Ordering::Release);
        }
        // INVARIANT: registered above with pointers into `ops` and `pol`.
        Ok(Self {
            family,
            _ops: ops,
            _policy: pol,
            _groups: grps,
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        FAMILY.store(core::ptr::null_mut(), Ordering::Release);
        // SAFETY: no preconditions; senders that saw the family are done
        // after this grace period.
        unsafe { sys::rnf_synchronize_rcu() };
        // SAFETY: registered (type invariant). Requests run under the genl
        // mutex, which unregistering takes, so none is running afterwards.
        unsafe { sys::genl_unregister_family(self.family.get()) };
    }
}
