// SPDX-License-Identifier: GPL-2.0

//! Socket buffers: the view of a packet that hooks get, and owned buffers.

use crate::sys;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use kernel::prelude::*;
use kernel::types::Opaque;

/// Room for a packet's first `N` header bytes, filled by
/// [`SkBuff::headers`]; not initialised before.
pub struct HeaderBuf<const N: usize>([MaybeUninit<u8>; N]);

impl<const N: usize> HeaderBuf<N> {
    /// An empty buffer (nothing written).
    #[inline(always)]
    pub fn new() -> Self {
        Self([MaybeUninit::uninit(); N])
    }
}

impl<const N: usize> Default for HeaderBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A socket buffer (`struct sk_buff`) borrowed from the kernel.
#[repr(transparent)]
pub struct SkBuff(Opaque<sys::sk_buff>);

// `skb->ip_summed` values (include/linux/skbuff.h).
const CHECKSUM_NONE: u8 = 0;
const CHECKSUM_COMPLETE: u8 = 2;
const CHECKSUM_PARTIAL: u8 = 3;

/// An skb's checksum state (`ip_summed`) when its headers were made
/// writable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CsumState(u8);

impl CsumState {
    /// Whether the transport checksum is left to the NIC.
    pub fn partial(self) -> bool {
        self.0 == CHECKSUM_PARTIAL
    }

    /// Whether the skb carries the checksum of the whole packet
    /// (`CHECKSUM_COMPLETE`), which a rewrite must adjust.
    pub fn complete(self) -> bool {
        self.0 == CHECKSUM_COMPLETE
    }
}

impl SkBuff {
    /// Views a raw `sk_buff` pointer as an `SkBuff`.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `sk_buff` that is not freed during `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut sys::sk_buff) -> &'a SkBuff {
        // SAFETY: `SkBuff` is a transparent wrapper of `sys::sk_buff`; the
        // caller guarantees validity for `'a`.
        unsafe { &*ptr.cast::<SkBuff>() }
    }

    fn raw(&self) -> *mut sys::sk_buff {
        self.0.get()
    }

    /// The length of the packet data in bytes (linear and paged parts).
    #[inline]
    pub fn len(&self) -> u32 {
        // SAFETY: `self` is a valid `sk_buff` (type invariant); `len` is a
        // plain field.
        unsafe { (*self.raw()).len }
    }

    /// Copies packet bytes from `offset` bytes past the network header into
    /// `buf`, whatever the skb's layout (linear or paged); returns how many
    /// were copied (fewer at the end of the packet).
    pub fn copy_network(&self, offset: u32, buf: &mut [u8]) -> usize {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: `self` is valid; `buf` has room for `len` bytes.
        let n =
            unsafe { sys::rnf_skb_copy_network(self.raw(), offset, buf.as_mut_ptr().cast(), len) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Copies the packet's first bytes from the network header on into
    /// `buf` (as many as fit) and returns them. `buf` need not be
    /// initialised: a packet path reads headers at every hook with work,
    /// and zeroing the buffer first showed as a `memset` call per packet.
    /// Headers in the linear part (almost always) are copied here, inline:
    /// the call into C and its `memcpy` call were a measurable part of each
    /// hook under emulation.
    #[inline(always)]
    pub fn headers<'b, const N: usize>(&self, buf: &'b mut HeaderBuf<N>) -> &'b [u8] {
        const { assert!(N < 256, "copy_short copies fewer than 256 bytes") };
        let dst = buf.0.as_mut_ptr().cast::<u8>();
        if let Some((net, linear, to_end)) = self.network_in_linear() {
            let n = to_end.min(N);
            if n <= linear {
                // SAFETY: the `n` bytes from the network header lie in the
                // skb's linear part (`n <= linear`), which the hook's skb
                // owns while it runs; `dst` has room for `N >= n` bytes and
                // does not overlap the packet.
                unsafe { copy_short(net, dst, n) };
                // SAFETY: the first `n <= N` bytes of `buf` were written.
                return unsafe { core::slice::from_raw_parts(dst, n) };
            }
        }
        let want = u32::try_from(N).unwrap_or(u32::MAX);
        // SAFETY: `self` is valid; `buf` has room for `N` bytes (written,
        // never read, by the helper).
        let got = unsafe { sys::rnf_skb_copy_network(self.raw(), 0, dst.cast(), want) };
        let got = usize::try_from(got).unwrap_or(0).min(N);
        // SAFETY: the helper initialised the first `got <= N` bytes;
        // `MaybeUninit<u8>` has `u8`'s layout.
        unsafe { core::slice::from_raw_parts(dst, got) }
    }

    /// Where the network header is, how many bytes from it lie in the
    /// linear part (`skb_headlen` past `skb_network_offset`) and how many
    /// to the packet's end, read from the skb's fields (no call); `None` if
    /// the network header is not in the linear part. At the netfilter hooks
    /// it is at or after `data` there; anything else (the offset wraps) is
    /// left to C.
    #[inline(always)]
    fn network_in_linear(&self) -> Option<(*mut u8, usize, usize)> {
        let raw = self.raw();
        // SAFETY: `self` is a valid `sk_buff` (type invariant), owned by the
        // hook running; these are plain fields. The network header offset
        // is a `u16` at `RNF_SKB_NETWORK_HEADER` (C's `offsetof`).
        let (head, data, len, data_len, nh) = unsafe {
            (
                (*raw).head,
                (*raw).data,
                (*raw).len as usize,
                (*raw).data_len as usize,
                raw.cast::<u8>()
                    .add(sys::RNF_SKB_NETWORK_HEADER as usize)
                    .cast::<u16>()
                    .read() as usize,
            )
        };
        let net = head.wrapping_add(nh);
        let noff = (net as usize).wrapping_sub(data as usize);
        let linear = len.wrapping_sub(data_len).checked_sub(noff)?;
        Some((net, linear, len.saturating_sub(noff)))
    }

    /// Bytes from the network header to the end of the packet.
    pub fn network_len(&self) -> u32 {
        // SAFETY: `self` is valid.
        unsafe { sys::rnf_skb_network_len(self.raw()) }
    }

    /// The packet's mark (`skb->mark`).
    pub fn mark(&self) -> u32 {
        // SAFETY: `self` is valid.
        unsafe { sys::rnf_skb_mark(self.raw()) }
    }

    /// Sets the packet's mark. The hook that was handed the skb owns it for
    /// the call, so no one else writes it meanwhile.
    pub fn set_mark(&self, mark: u32) {
        // SAFETY: `self` is valid; the field is plain data.
        unsafe { sys::rnf_skb_set_mark(self.raw(), mark) }
    }

    /// The owning socket's user and group ids (in `net`'s user namespace),
    /// for a locally generated packet.
    pub fn owner(&self, net: &crate::net::Net) -> Option<(u32, u32)> {
        let (mut uid, mut gid) = (0u32, 0u32);
        // SAFETY: `self` and `net` are valid; the outputs are writable.
        unsafe { sys::rnf_skb_owner(self.raw(), net.as_ptr(), &mut uid, &mut gid) }
            .then_some((uid, gid))
    }

    /// Makes the first `len` bytes from the network header writable
    /// (unshared, in the linear part) and runs `f` on them (fewer if the
    /// packet is shorter) and on whether the transport checksum is left to
    /// the NIC (`CHECKSUM_PARTIAL`); returns `f`'s result and the skb's
    /// checksum state, for [`csum_update`](Self::csum_update). The hook
    /// that was handed the skb owns it for the call; `f`'s slice is the only
    /// view of those bytes meanwhile.
    pub fn write_headers<R>(
        &self,
        len: u32,
        f: impl FnOnce(&mut [u8], CsumState) -> R,
    ) -> Result<(R, CsumState)> {
        let (p, avail, summed) = match self.writable_in_place(len) {
            Some(w) => w,
            None => {
                let (mut p, mut avail, mut summed) = (core::ptr::null_mut(), 0u32, 0u8);
                // SAFETY: `self` is valid and owned by the caller's hook; the
                // outputs are writable.
                let err = unsafe {
                    sys::rnf_skb_writable_network(self.raw(), len, &mut p, &mut avail, &mut summed)
                };
                // (Checked here, not by `to_result`: that is a call per rewrite.)
                if err != 0 {
                    return Err(Error::from_errno(err));
                }
                if p.is_null() {
                    return Err(EINVAL);
                }
                (p, avail, summed)
            }
        };
        // SAFETY: the first `avail` bytes from the network header are in the
        // skb's own linear buffer at `p`, unshared (`writable_in_place`, or
        // `skb_ensure_writable` in C); nothing else reads or writes them
        // while `f` runs (the hook owns the skb, and other views of the
        // packet copy it out).
        let bytes = unsafe { core::slice::from_raw_parts_mut(p, avail as usize) };
        let state = CsumState(summed);
        Ok((f(bytes, state), state))
    }

    /// What `rnf_skb_writable_network` gives when `skb_ensure_writable`
    /// has nothing to do, told from the skb's fields without a call: the
    /// skb is not a clone and the `len` bytes from the network header lie
    /// in its linear part. `None` otherwise (C then pulls or unshares).
    /// Under emulation the two calls were about a sixth of a NAT stage.
    #[inline(always)]
    fn writable_in_place(&self, len: u32) -> Option<(*mut u8, u32, u8)> {
        let raw = self.raw();
        // SAFETY: `self` is a valid `sk_buff` (type invariant), owned by the
        // hook running; these are bitfields, and bindgen's accessors read
        // the bytes holding them.
        let (cloned, summed) = unsafe {
            (
                (*raw).cloned(),
                (*raw)
                    .__bindgen_anon_4
                    .__bindgen_anon_1
                    .as_ref()
                    .ip_summed(),
            )
        };
        // A clone may share its data: `skb_cloned` looks further.
        if cloned != 0 {
            return None;
        }
        let (net, linear, _) = self.network_in_linear()?;
        (len as usize <= linear).then_some((net, len, summed))
    }

    /// Pulls the whole packet into the linear part (for rewrites that
    /// cover every byte, such as SCTP's CRC32c).
    pub fn linearize(&self) -> Result {
        // SAFETY: `self` is valid and owned by the caller's hook.
        kernel::error::to_result(unsafe { sys::rnf_skb_linearize(self.raw()) })
    }

    /// Accounts a rewrite in the skb's checksum state `state` (as
    /// [`write_headers`](Self::write_headers) found it): adds `native_delta`
    /// to a `CHECKSUM_COMPLETE` sum, or marks the checksum as computed in
    /// software (`none`). Nothing to do (no call) in the other cases.
    pub fn csum_update(&self, state: CsumState, native_delta: u32, none: bool) {
        let needed = if none {
            state.0 != CHECKSUM_NONE
        } else {
            state.0 == CHECKSUM_COMPLETE
        };
        if needed {
            // SAFETY: `self` is valid and owned by the caller's hook.
            unsafe { sys::rnf_skb_csum_update(self.raw(), native_delta, none) }
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::sk_buff {
        self.raw()
    }

    /// Whether the packet has no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Copies `n` bytes from `src` to `dst` in fixed-size pieces (per set bit
/// of `n`), which compile to plain moves: a copy of a length known only at
/// run time compiles to a `memcpy` call.
///
/// # Safety
///
/// `src` is readable and `dst` writable for `n < 256` bytes, and the two do
/// not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    let mut at = 0usize;
    macro_rules! piece {
        ($bit:literal, $size:literal) => {
            if n & $bit != 0 {
                for _ in 0..$bit / $size {
                    // SAFETY: `at + $bit <= n` (the pieces are the set bits
                    // of `n`, largest first), so both ranges are in bounds.
                    unsafe { core::ptr::copy_nonoverlapping(src.add(at), dst.add(at), $size) };
                    at += $size;
                }
            }
        };
        ($size:literal) => {
            piece!($size, $size)
        };
    }
    // (128 bytes at once compiles to a `memcpy` call.)
    piece!(128, 64);
    piece!(64);
    piece!(32);
    piece!(16);
    piece!(8);
    piece!(4);
    piece!(2);
    piece!(1);
    let _ = at;
}

/// An `sk_buff` owned by rnf, freed on drop.
///
/// # Invariants
///
/// `0` points to an `sk_buff` allocated by `alloc_skb` and owned by this
/// value.
pub struct OwnedSkBuff(NonNull<sys::sk_buff>);

// SAFETY: an owned `sk_buff` may be used and freed from any thread.
unsafe impl Send for OwnedSkBuff {}

impl OwnedSkBuff {
    /// Allocates an empty buffer with room for `size` bytes of linear data.
    #[allow(dead_code)]
    pub fn alloc(size: u32) -> Result<Self> {
        // SAFETY: no preconditions; returns NULL on failure.
        let skb = unsafe { sys::rnf_alloc_skb(size) };
        NonNull::new(skb).map(Self).ok_or(ENOMEM)
    }

    /// Appends `data` (at most a page) as a paged fragment: the skb becomes
    /// non-linear, as received packets often are.
    #[allow(dead_code)]
    pub fn put_frag(&mut self, data: &[u8]) -> Result {
        let len = u32::try_from(data.len()).map_err(|_| EINVAL)?;
        // SAFETY: `self.0` is a valid skb we own; `data` is `len` bytes.
        kernel::error::to_result(unsafe {
            sys::rnf_skb_add_page_frag(self.0.as_ptr(), data.as_ptr().cast(), len)
        })
    }

    /// A clone of the buffer (`skb_clone`): the two share their data until
    /// one is made writable.
    #[allow(dead_code)]
    pub fn clone_shared(&self) -> Result<Self> {
        // SAFETY: `self.0` is a valid skb we own; NULL on failure.
        let skb = unsafe { sys::rnf_skb_clone(self.0.as_ptr()) };
        NonNull::new(skb).map(Self).ok_or(ENOMEM)
    }

    /// Sets the checksum state (`ip_summed`, one of `CHECKSUM_*`).
    #[allow(dead_code)]
    pub fn set_ip_summed(&mut self, summed: u8) {
        // SAFETY: `self.0` is a valid skb we own (type invariant), not in
        // use elsewhere; bindgen's setter writes the bitfield's bits only.
        unsafe {
            (*self.0.as_ptr())
                .__bindgen_anon_4
                .__bindgen_anon_1
                .as_mut()
                .set_ip_summed(summed & 3)
        }
    }

    /// Appends `data` to the linear part.
    #[allow(dead_code)]
    pub fn put(&mut self, data: &[u8]) -> Result {
        let len = u32::try_from(data.len()).map_err(|_| EINVAL)?;
        // SAFETY: `self.0` is a valid skb (type invariant); `end`/`tail` are
        // plain fields.
        let room = unsafe {
            let skb = self.0.as_ptr();
            (*skb).end.wrapping_sub((*skb).tail)
        };
        if len > room {
            return Err(ENOSPC);
        }
        // SAFETY: there is tailroom for `len` bytes (checked above), so
        // `skb_put` returns a pointer to `len` writable bytes, which cannot
        // overlap `data` (it was not part of the buffer).
        unsafe {
            let dst = sys::skb_put(self.0.as_ptr(), len).cast::<u8>();
            core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len());
        }
        Ok(())
    }
}

impl core::ops::Deref for OwnedSkBuff {
    type Target = SkBuff;

    fn deref(&self) -> &SkBuff {
        // SAFETY: `self.0` is valid while `self` lives (type invariant).
        unsafe { SkBuff::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for OwnedSkBuff {
    fn drop(&mut self) {
        // SAFETY: `self.0` is owned by `self` (type invariant) and not used
        // after this.
        unsafe { sys::rnf_kfree_skb(self.0.as_ptr()) }
    }
}
