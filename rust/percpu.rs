// SPDX-License-Identifier: GPL-2.0

//! Per-CPU packet and byte counters.
//!
//! The packet path adds to the counter of the CPU it runs on, with no shared
//! cache line and no lock; readers add the CPUs up. This is how iptables and
//! nftables count.

use crate::sys;
use kernel::prelude::*;

pub use crate::hookcount::Counter;

/// Counters per per-CPU allocation: the kernel refuses (with a warning)
/// per-CPU allocations above `PCPU_MIN_UNIT_SIZE` (32 KiB), so a large array
/// is split into chunks of 16 KiB.
const CHUNK: u32 = 1024;

/// An array of per-CPU counters.
///
/// # Invariants
///
/// Each of `chunks` is a per-CPU allocation of `CHUNK` `rnf_counter`s made
/// by `rnf_counters_alloc`, owned by this value and freed when it is
/// dropped; there are enough chunks for `len` (> 0) counters. `first` is
/// the first chunk and `in_first` the number of counters in it
/// (`min(len, CHUNK)`).
pub struct PerCpuCounters {
    chunks: KVec<*mut sys::rnf_counter>,
    len: u32,
    first: *mut sys::rnf_counter,
    in_first: u32,
}

// SAFETY: the allocations are owned by the value and may be freed from any
// thread.
unsafe impl Send for PerCpuCounters {}
// SAFETY: updates use `this_cpu` operations and reads use `READ_ONCE`, both
// safe from any CPU at any time.
unsafe impl Sync for PerCpuCounters {}

impl PerCpuCounters {
    /// Allocates `len` (at least one) zeroed counters.
    pub fn new(len: u32) -> Result<Self> {
        if len == 0 {
            return Err(ENOMEM);
        }
        let n = len.div_ceil(CHUNK);
        let mut chunks = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        let mut this = Self {
            chunks: KVec::new(),
            len,
            first: core::ptr::null_mut(),
            in_first: 0,
        };
        for _ in 0..n {
            // SAFETY: no preconditions; returns NULL on failure.
            let ptr = unsafe { sys::rnf_counters_alloc(CHUNK) };
            if ptr.is_null() {
                this.chunks = chunks;
                return Err(ENOMEM);
            }
            // Capacity reserved above: cannot fail.
            chunks.push(ptr, GFP_KERNEL)?;
        }
        // INVARIANT: `n` chunks of `CHUNK` counters cover `len`; `first`
        // is the first of them (`n >= 1`), holding `min(len, CHUNK)`.
        this.first = chunks.first().copied().unwrap_or(core::ptr::null_mut());
        this.in_first = len.min(CHUNK);
        this.chunks = chunks;
        Ok(this)
    }

    /// The chunk holding counter `idx` and the index within it.
    #[inline]
    fn at(&self, idx: u32) -> Option<(*mut sys::rnf_counter, u32)> {
        if idx >= self.len {
            return None;
        }
        let p = *self.chunks.get((idx / CHUNK) as usize)?;
        Some((p, idx % CHUNK))
    }

    /// The number of counters.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Never true: there is at least one counter (type invariant).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Counts one packet of `bytes` bytes in counter `idx`, on this CPU.
    /// An index out of range counts nothing.
    #[inline]
    pub fn add(&self, idx: u32, bytes: u64) {
        if idx < self.in_first {
            // SAFETY: `first` holds `CHUNK` counters and `idx < in_first <=
            // CHUNK` (type invariant).
            unsafe { add_here(self.first, idx, bytes) };
            return;
        }
        if let Some((p, i)) = self.at(idx) {
            // SAFETY: `p` holds `CHUNK` counters (type invariant), `i < CHUNK`.
            unsafe { add_here(p, i, bytes) };
        }
    }

    /// Counts one packet in counter `idx` as if on CPU `cpu`. For tests: it
    /// is not atomic with respect to that CPU's own updates.
    #[allow(dead_code)]
    pub fn add_on_cpu(&self, idx: u32, cpu: u32, bytes: u64) {
        // SAFETY: no preconditions.
        let cpus = unsafe { sys::rnf_nr_possible_cpus() };
        if let Some((p, i)) = self.at(idx) {
            if cpu < cpus {
                // SAFETY: `p` holds `CHUNK` counters, `i < CHUNK` and `cpu`
                // is below `nr_cpu_ids`.
                unsafe { sys::rnf_counter_add_on_cpu(p, i, cpu, bytes) }
            }
        }
    }

    /// The sum over all CPUs of counter `idx` (zero if out of range).
    pub fn sum(&self, idx: u32) -> Counter {
        let mut out = sys::rnf_counter::default();
        if let Some((p, i)) = self.at(idx) {
            // SAFETY: `p` holds `CHUNK` counters, `i < CHUNK`, and `out` is a
            // valid place to write.
            unsafe { sys::rnf_counter_sum(p, i, &mut out) }
        }
        Counter {
            packets: out.packets,
            bytes: out.bytes,
        }
    }

    /// Resets counter `idx` on every CPU.
    #[allow(dead_code)]
    pub fn zero(&self, idx: u32) {
        if let Some((p, i)) = self.at(idx) {
            // SAFETY: `p` holds `CHUNK` counters and `i < CHUNK`.
            unsafe { sys::rnf_counter_zero(p, i) }
        }
    }
}

// The layout `add_here` writes to.
const _: () = assert!(core::mem::size_of::<sys::rnf_counter>() == 16);
const _: () = assert!(core::mem::offset_of!(sys::rnf_counter, bytes) == 8);

/// Counts one packet of `bytes` bytes in counter `i` of the chunk `p`, on
/// this CPU.
///
/// On x86-64 this is what `this_cpu_inc` and `this_cpu_add` compile to, two
/// `%gs`-relative instructions, written out here: a call into C per counter
/// was a measurable part of the packet path (several counters per packet).
///
/// # Safety
///
/// `p` is a live chunk of `CHUNK` counters from `rnf_counters_alloc` and
/// `i < CHUNK`.
#[inline(always)]
unsafe fn add_here(p: *mut sys::rnf_counter, i: u32, bytes: u64) {
    #[cfg(target_arch = "x86_64")]
    {
        let c = p.wrapping_add(i as usize);
        // SAFETY: `c` is the per-CPU address of counter `i` of a live chunk
        // (the function's safety contract). On x86-64 the `%gs` base is this CPU's
        // per-CPU offset, so `gs:[c]` is this CPU's copy of the counter's
        // `packets` and `gs:[c + 8]` of its `bytes` (layout asserted above).
        // Each instruction is one read-modify-write of this CPU's memory that
        // neither preemption nor an interrupt can split, as with
        // `this_cpu_add`; only this CPU writes its copy this way.
        unsafe {
            core::arch::asm!(
                "inc qword ptr gs:[{c}]",
                "add qword ptr gs:[{c} + 8], {b}",
                c = in(reg) c,
                b = in(reg) bytes,
                options(nostack),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: `p` holds `CHUNK` counters and `i < CHUNK` (the function's
    // safety contract).
    unsafe {
        sys::rnf_counter_add(p, i, bytes)
    }
}

impl Drop for PerCpuCounters {
    fn drop(&mut self) {
        for p in self.chunks.iter() {
            // SAFETY: each chunk was allocated by `rnf_counters_alloc` and is
            // owned by `self` (type invariant); nothing uses it after this.
            unsafe { sys::rnf_counters_free(*p) }
        }
    }
}

/// What conntrack found for a packet, noted for the later hooks the same
/// packet passes so that they need no second lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketNote {
    /// Hash bucket of the packet's flow (by the packet's own tuple).
    pub bucket: u32,
    /// Id of the packet's flow, 0 for none.
    pub id: u32,
    /// A cheap fingerprint of the packet's headers, to tell a reused skb
    /// address from the packet that was noted.
    pub fingerprint: u32,
    /// Direction within the flow (0 original, 1 reply).
    pub dir: u8,
    /// `ct state` bits.
    pub state: u8,
    /// Flags of the noting code.
    pub flags: u8,
    /// The packet's shape for a NAT rewrite from the note alone
    /// (`nat::noted_shape`), 0 for none.
    pub shape: u8,
}

/// One [`PacketNote`] per CPU: the note of the packet that CPU handled last.
///
/// # Invariants
///
/// `ptr` is a per-CPU allocation from `rnf_pkt_ct_alloc`, owned by `self`.
pub struct PacketNotes {
    ptr: *mut sys::rnf_pkt_ct,
}

// SAFETY: the allocation is owned and may be freed from any thread.
unsafe impl Send for PacketNotes {}
// SAFETY: each access copies the slot of the current CPU with preemption
// disabled.
unsafe impl Sync for PacketNotes {}

impl PacketNotes {
    /// Allocates empty notes.
    pub fn new() -> Result<Self> {
        // SAFETY: no preconditions; NULL on failure.
        let ptr = unsafe { sys::rnf_pkt_ct_alloc() };
        if ptr.is_null() {
            return Err(ENOMEM);
        }
        Ok(Self { ptr })
    }

    /// Notes `note` for `skb` on this CPU.
    #[inline(always)]
    pub fn set(&self, skb: &crate::skb::SkBuff, note: &PacketNote) {
        let v = sys::rnf_pkt_ct {
            skb: (skb as *const crate::skb::SkBuff).cast(),
            bucket: note.bucket,
            id: note.id,
            fingerprint: note.fingerprint,
            dir: note.dir,
            state: note.state,
            flags: note.flags,
            shape: note.shape,
        };
        #[cfg(target_arch = "x86_64")]
        if preempt_off() {
            let w = words(&v);
            // SAFETY: `ptr` is a live per-CPU allocation of one
            // `rnf_pkt_ct` (type invariant; 24 bytes, asserted below), so
            // `gs:[ptr]` to `gs:[ptr + 16]` is this CPU's slot, and with
            // preemption off this task stays on this CPU. Only this CPU
            // writes its slot; an interrupt that notes a packet of its own
            // meanwhile leaves a slot that matches neither packet whole,
            // which readers tell by the fingerprint (as with the C helper).
            unsafe {
                core::arch::asm!(
                    "mov qword ptr gs:[{p}], {a}",
                    "mov qword ptr gs:[{p} + 8], {b}",
                    "mov qword ptr gs:[{p} + 16], {c}",
                    p = in(reg) self.ptr,
                    a = in(reg) w[0],
                    b = in(reg) w[1],
                    c = in(reg) w[2],
                    options(nostack, preserves_flags),
                );
            }
            return;
        }
        // SAFETY: `ptr` is live (type invariant); `v` is read during the call.
        unsafe { sys::rnf_pkt_ct_set(self.ptr, &v) };
    }

    /// The note this CPU has for `skb`, if its last note was for it.
    #[inline(always)]
    pub fn get(&self, skb: &crate::skb::SkBuff) -> Option<PacketNote> {
        let want = (skb as *const crate::skb::SkBuff).cast::<core::ffi::c_void>();
        #[cfg(target_arch = "x86_64")]
        if preempt_off() {
            let (a, b, c): (u64, u64, u64);
            // SAFETY: as in `set`: this CPU's slot, read while this task
            // cannot move to another CPU.
            unsafe {
                core::arch::asm!(
                    "mov {a}, qword ptr gs:[{p}]",
                    "mov {b}, qword ptr gs:[{p} + 8]",
                    "mov {c}, qword ptr gs:[{p} + 16]",
                    p = in(reg) self.ptr,
                    a = out(reg) a,
                    b = out(reg) b,
                    c = out(reg) c,
                    options(nostack, readonly, preserves_flags),
                );
            }
            if a != want as u64 {
                return None;
            }
            let [c0, c1, c2, c3, c4, c5, c6, c7] = c.to_ne_bytes();
            return Some(PacketNote {
                bucket: b as u32,
                id: (b >> 32) as u32,
                fingerprint: u32::from_ne_bytes([c0, c1, c2, c3]),
                dir: c4,
                state: c5,
                flags: c6,
                shape: c7,
            });
        }
        let mut v = sys::rnf_pkt_ct::default();
        // SAFETY: `ptr` is live; `v` is written during the call.
        let found = unsafe { sys::rnf_pkt_ct_get(self.ptr, want, &mut v) };
        found.then_some(PacketNote {
            bucket: v.bucket,
            id: v.id,
            fingerprint: v.fingerprint,
            dir: v.dir,
            state: v.state,
            flags: v.flags,
            shape: v.shape,
        })
    }
}

// The layout `PacketNotes` reads and writes in place on x86-64: the skb
// pointer, then bucket and id, then fingerprint, dir, state, flags, shape.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<sys::rnf_pkt_ct>() == 24);
    assert!(offset_of!(sys::rnf_pkt_ct, bucket) == 8);
    assert!(offset_of!(sys::rnf_pkt_ct, id) == 12);
    assert!(offset_of!(sys::rnf_pkt_ct, fingerprint) == 16);
    assert!(offset_of!(sys::rnf_pkt_ct, dir) == 20);
    assert!(offset_of!(sys::rnf_pkt_ct, state) == 21);
    assert!(offset_of!(sys::rnf_pkt_ct, flags) == 22);
    assert!(offset_of!(sys::rnf_pkt_ct, shape) == 23);
};

/// A note as the three words of its slot (layout asserted above).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn words(v: &sys::rnf_pkt_ct) -> [u64; 3] {
    let mut c = [0u8; 8];
    c[..4].copy_from_slice(&v.fingerprint.to_ne_bytes());
    (c[4], c[5], c[6], c[7]) = (v.dir, v.state, v.flags, v.shape);
    [
        v.skb as u64,
        u64::from(v.bucket) | u64::from(v.id) << 32,
        u64::from_ne_bytes(c),
    ]
}

/// Whether this CPU runs with preemption off (in softirq, as the forwarding
/// path's hooks run, or with preemption disabled): the running task cannot
/// move to another CPU until it is on again. One `%gs`-relative load of
/// `preempt_count`, as `preempt_count()` is on x86-64.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn preempt_off() -> bool {
    let count: u32;
    // SAFETY: `pcpu_hot` is the kernel's per-CPU hot data; `gs:` addresses
    // this CPU's copy, and `preempt_count` is a 32-bit field at
    // `RNF_PCPU_PREEMPT_COUNT` (C's `offsetof`). A read has no side effect.
    unsafe {
        core::arch::asm!(
            "mov {n:e}, dword ptr gs:[rip + {hot} + {off}]",
            n = out(reg) count,
            hot = sym sys::pcpu_hot,
            off = const sys::RNF_PCPU_PREEMPT_COUNT,
            options(nostack, readonly, preserves_flags),
        );
    }
    count & sys::RNF_PREEMPT_COUNT_MASK != 0
}

impl Drop for PacketNotes {
    fn drop(&mut self) {
        // SAFETY: owned; no hook uses it after the namespace's hooks are
        // gone, which happens before its state is dropped.
        unsafe { sys::rnf_pkt_ct_free(self.ptr) };
    }
}
