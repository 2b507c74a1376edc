//! The memory of a frame ring: a single-producer, single-consumer ring of
//! fixed-size slots in one memfd mapped `MAP_SHARED` (`memfd.rs`'s
//! `SharedMap`: shared by a fork, or sent as an fd to a process started
//! otherwise and [opened](RingMemory::open) there), and the slot state
//! machine that makes handing out `&mut [u8]` / `&[u8]` into shared memory
//! sound.
//!
//! # Why this is sound
//!
//! Every slot has a state word: `FREE → WRITING → READY → READING → FREE`.
//! The producer takes slots in order (`head`), the consumer too (`tail`),
//! each holding at most one at a time (the public layer lends a slot for
//! the duration of a `&mut` borrow), and `head`/`tail` advance when a slot
//! is committed or released.
//! Only the producer moves a slot out of `FREE` and out of `WRITING`; only
//! the consumer moves it out of `READY` and out of `READING`; each move is a
//! compare-and-swap with acquire/release ordering. A [`SlotWrite`] (mutable
//! bytes) exists only while its slot is `WRITING`, a [`SlotRead`] (shared
//! bytes) only while it is `READING`, and there is one producer and one
//! consumer (the public layer enforces the roles), so no two borrows of a
//! slot's bytes ever overlap in time, in this process or the other one.
//! Lengths written by the other process are checked against the slot size
//! before a slice is made, and the ring's shape (slot count and size) is
//! this process's own copy, never read back from the shared header. The
//! memory is mapped once per process (zero-filled when made; sealed
//! against shrinking and checked to be large enough when opened), and
//! unmapped only when the last handle in this process is dropped.
//!
//! A process that runs other code on the same mapping (a second producer
//! made by hand, `/proc/<pid>/mem`) is outside what any type system can
//! promise; the public layer records the role holders' pids so that a dead
//! holder is detected and its slot recovered.

use super::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

#[cfg(not(loom))]
use super::memfd::SharedMap;
#[cfg(not(loom))]
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

#[cfg(loom)]
mod heap;
#[cfg(loom)]
use heap::Mapping;

const MAGIC: u32 = 0x4642_5247; // "FBRG"
const HEADER: usize = 128;
const SLOT_HEADER: usize = 32;
const PAGE: usize = 4096;

/// Slot states.
pub(crate) const FREE: u32 = 0;
pub(crate) const WRITING: u32 = 1;
pub(crate) const READY: u32 = 2;
pub(crate) const READING: u32 = 3;

// Header word offsets.
const OFF_MAGIC: usize = 0;
const OFF_SLOTS: usize = 4;
const OFF_SLOT_SIZE: usize = 8;
const OFF_PRODUCER: usize = 16;
const OFF_CONSUMER: usize = 20;
const OFF_HEAD: usize = 24;
const OFF_TAIL: usize = 32;
const OFF_READY_BELL: usize = 40;
const OFF_FREE_BELL: usize = 44;

// Slot header word offsets.
const SLOT_STATE: usize = 0;
const SLOT_OWNER: usize = 4;
const SLOT_LEN: usize = 8;

/// The ring's memfd, mapped (unmapped and closed on drop).
#[cfg(not(loom))]
type Mapping = SharedMap;

/// The ring's memory and its slot protocol.
#[derive(Debug)]
pub(crate) struct RingMemory {
    map: Mapping,
    slots: u32,
    slot_size: usize,
    /// Offset of the first slot's bytes in the mapping.
    #[cfg_attr(loom, allow(dead_code))]
    data: usize,
}

impl RingMemory {
    /// Maps a ring of `slots` slots of `slot_size` bytes each.
    pub(crate) fn new(slots: u32, slot_size: usize) -> io::Result<RingMemory> {
        let (len, data) = layout(slots, slot_size)?;
        #[cfg(not(loom))]
        let map = SharedMap::create(c"forkbridge-ring", len)?;
        #[cfg(loom)]
        let map = Mapping::new(len, slots, slot_size);
        let ring = RingMemory {
            map,
            slots,
            slot_size,
            data,
        };
        ring.u32_at(OFF_SLOTS).store(slots, Ordering::Relaxed);
        ring.u64_at(OFF_SLOT_SIZE)
            .store(slot_size as u64, Ordering::Relaxed);
        ring.u32_at(OFF_MAGIC).store(MAGIC, Ordering::Release);
        Ok(ring)
    }

    /// Maps the ring of a received memfd (one made by [`new`](Self::new)
    /// in another process, sent as [`fd`](Self::fd)), of the shape the
    /// sender stated. `InvalidInput` if the memfd cannot be sealed against
    /// shrinking or is too small for that shape (slots past the file's end
    /// would be a `SIGBUS`), `InvalidData` if its header is not that of a
    /// ring of that shape.
    #[cfg(not(loom))]
    pub(crate) fn open(fd: OwnedFd, slots: u32, slot_size: usize) -> io::Result<RingMemory> {
        if slots == 0 || slot_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a ring needs at least one slot of at least one byte",
            ));
        }
        let (len, data) = layout(slots, slot_size)?;
        let map = SharedMap::open(fd)?;
        if map.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a memfd of {} bytes cannot hold {slots} slots of {slot_size} bytes",
                    map.len()
                ),
            ));
        }
        let ring = RingMemory {
            map,
            slots,
            slot_size,
            data,
        };
        // Only a check that the sender meant this memory: the shape used
        // from here on is the one given, whatever the header says later.
        if ring.u32_at(OFF_MAGIC).load(Ordering::Acquire) != MAGIC
            || ring.u32_at(OFF_SLOTS).load(Ordering::Relaxed) != slots
            || ring.u64_at(OFF_SLOT_SIZE).load(Ordering::Relaxed) != slot_size as u64
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a ring of {slots} slots of {slot_size} bytes"),
            ));
        }
        Ok(ring)
    }

    /// The memfd, to send to another process.
    #[cfg(not(loom))]
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }

    /// Number of slots.
    pub(crate) fn slots(&self) -> u32 {
        self.slots
    }

    /// Bytes per slot.
    pub(crate) fn slot_size(&self) -> usize {
        self.slot_size
    }

    #[cfg(not(loom))]
    fn atomic<T>(&self, off: usize) -> &T {
        assert!(
            off + size_of::<T>() <= self.data && off.is_multiple_of(align_of::<T>()),
            "BUG: ring header offset {off}"
        );
        // SAFETY: checked just above: the word lies inside the header area
        // of the live mapping (at least `data` bytes, sealed against
        // shrinking) and is aligned; any bit pattern is valid for the
        // atomic integer types used here (a received file's contents
        // included), and all header access is atomic.
        unsafe { &*self.map.ptr().as_ptr().add(off).cast::<T>() }
    }

    #[cfg(not(loom))]
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        self.atomic(off)
    }

    #[cfg(not(loom))]
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        self.atomic(off)
    }

    #[cfg(not(loom))]
    fn i32_at(&self, off: usize) -> &AtomicI32 {
        self.atomic(off)
    }

    #[cfg(loom)]
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        self.map.word(&self.map.u32s, off)
    }

    #[cfg(loom)]
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        self.map.word(&self.map.u64s, off)
    }

    #[cfg(loom)]
    fn i32_at(&self, off: usize) -> &AtomicI32 {
        self.map.word(&self.map.i32s, off)
    }

    fn slot_word(&self, slot: u32, off: usize) -> usize {
        HEADER + SLOT_HEADER * slot as usize + off
    }

    /// The pid holding the producer role (0: never claimed; negative: the
    /// pid of the process that released it).
    pub(crate) fn producer(&self) -> &AtomicI32 {
        self.i32_at(OFF_PRODUCER)
    }

    /// The pid holding the consumer role (as for the producer).
    pub(crate) fn consumer(&self) -> &AtomicI32 {
        self.i32_at(OFF_CONSUMER)
    }

    /// Sequence number of the next slot to write.
    pub(crate) fn head(&self) -> &AtomicU64 {
        self.u64_at(OFF_HEAD)
    }

    /// Sequence number of the next slot to read.
    pub(crate) fn tail(&self) -> &AtomicU64 {
        self.u64_at(OFF_TAIL)
    }

    /// Rung on every commit; the consumer sleeps on it (ring counter and
    /// sleeper count in one word: see `ring.rs`).
    pub(crate) fn ready_bell(&self) -> &AtomicU32 {
        self.u32_at(OFF_READY_BELL)
    }

    /// Rung on every release; the producer sleeps on it.
    pub(crate) fn free_bell(&self) -> &AtomicU32 {
        self.u32_at(OFF_FREE_BELL)
    }

    /// Whether `slot` is in `state` now.
    pub(crate) fn is(&self, slot: u32, state: u32) -> bool {
        self.state(slot).load(Ordering::Acquire) == state
    }

    /// A slot's state word.
    pub(crate) fn state(&self, slot: u32) -> &AtomicU32 {
        self.u32_at(self.slot_word(slot, SLOT_STATE))
    }

    /// The pid that moved the slot into its current state.
    pub(crate) fn owner(&self, slot: u32) -> &AtomicI32 {
        self.i32_at(self.slot_word(slot, SLOT_OWNER))
    }

    fn len_word(&self, slot: u32) -> &AtomicU64 {
        self.u64_at(self.slot_word(slot, SLOT_LEN))
    }

    #[cfg(not(loom))]
    fn data_offset(&self, slot: u32) -> usize {
        self.data + slot_stride(self.slot_size).unwrap_or(0) * slot as usize
    }

    /// Moves `slot` from `FREE` to `WRITING` for `pid` and lends its bytes.
    pub(crate) fn try_write(self: &Arc<Self>, slot: u32, pid: i32) -> Option<SlotWrite> {
        self.state(slot)
            .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        self.owner(slot).store(pid, Ordering::Relaxed);
        Some(SlotWrite {
            ring: self.clone(),
            slot,
            committed: false,
            #[cfg(loom)]
            access: Some(self.map.data[slot as usize].get_mut()),
        })
    }

    /// Moves `slot` from `READY` to `READING` for `pid` and lends its
    /// bytes; `Err(len)` if the length the producer recorded does not fit
    /// the slot (the slot is then released unread).
    pub(crate) fn try_read(self: &Arc<Self>, slot: u32, pid: i32) -> Option<Result<SlotRead, u64>> {
        self.state(slot)
            .compare_exchange(READY, READING, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        self.owner(slot).store(pid, Ordering::Relaxed);
        let len = self.len_word(slot).load(Ordering::Relaxed);
        if len > self.slot_size as u64 {
            self.state(slot).store(FREE, Ordering::Release);
            return Some(Err(len));
        }
        Some(Ok(SlotRead {
            ring: self.clone(),
            slot,
            len: len as usize,
            frees: true,
            #[cfg(loom)]
            access: Some(self.map.data[slot as usize].get()),
        }))
    }

    /// Forces a slot held by a dead process back: `WRITING` → `FREE` (the
    /// partial frame is dropped), `READING` → `READY` (delivered again).
    /// Returns the state it was in.
    pub(crate) fn recover(&self, slot: u32) -> u32 {
        let state = self.state(slot);
        for (from, to) in [(WRITING, FREE), (READING, READY)] {
            if state
                .compare_exchange(from, to, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.owner(slot).store(0, Ordering::Relaxed);
                return from;
            }
        }
        state.load(Ordering::Relaxed)
    }
}

/// The mapping's length and the offset of the first slot's bytes (after
/// the headers, on a page boundary).
fn layout(slots: u32, slot_size: usize) -> io::Result<(usize, usize)> {
    let stride = slot_stride(slot_size).ok_or(io::ErrorKind::InvalidInput)?;
    let headers = HEADER + SLOT_HEADER * slots as usize;
    let data = headers.div_ceil(PAGE) * PAGE;
    let len = stride
        .checked_mul(slots as usize)
        .and_then(|d| d.checked_add(data))
        .ok_or(io::ErrorKind::InvalidInput)?;
    Ok((len, data))
}

/// Bytes per slot in memory: the slot size rounded up to 64 (cache line),
/// so every slot starts aligned for any plain type.
fn slot_stride(slot_size: usize) -> Option<usize> {
    slot_size.max(1).checked_next_multiple_of(64)
}

/// A slot lent to the producer: its whole `slot_size` bytes, writable.
#[derive(Debug)]
pub(crate) struct SlotWrite {
    ring: Arc<RingMemory>,
    slot: u32,
    committed: bool,
    /// Under the model checker: the tracked write access to the bytes.
    #[cfg(loom)]
    access: Option<loom::cell::MutPtr<Box<[u8]>>>,
}

impl SlotWrite {
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    /// Publishes the first `len` bytes (`len <= slot_size`, checked by the
    /// caller): `WRITING` → `READY`.
    pub(crate) fn commit(mut self, len: usize) {
        #[cfg(loom)]
        drop(self.access.take());
        let ring = &self.ring;
        ring.len_word(self.slot)
            .store(len as u64, Ordering::Relaxed);
        ring.state(self.slot).store(READY, Ordering::Release);
        self.committed = true;
    }
}

/// Dropped without `commit`: the slot goes back to `FREE`.
impl Drop for SlotWrite {
    fn drop(&mut self) {
        #[cfg(loom)]
        drop(self.access.take());
        if !self.committed {
            self.ring.state(self.slot).store(FREE, Ordering::Release);
        }
    }
}

#[cfg(not(loom))]
impl Deref for SlotWrite {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let off = self.ring.data_offset(self.slot);
        // SAFETY: the slot is `WRITING` and this guard is its only borrower
        // (module docs); `off + slot_size` lies inside the live mapping
        // (held by `self.ring`), and any byte pattern is a valid `u8`.
        unsafe {
            std::slice::from_raw_parts(self.ring.map.ptr().as_ptr().add(off), self.ring.slot_size)
        }
    }
}

#[cfg(not(loom))]
impl DerefMut for SlotWrite {
    fn deref_mut(&mut self) -> &mut [u8] {
        let off = self.ring.data_offset(self.slot);
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow of
        // the guard, and no other process touches a `WRITING` slot's bytes.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ring.map.ptr().as_ptr().add(off),
                self.ring.slot_size,
            )
        }
    }
}

/// A slot lent to the consumer: the committed bytes, read-only.
#[derive(Debug)]
pub(crate) struct SlotRead {
    ring: Arc<RingMemory>,
    slot: u32,
    len: usize,
    /// Whether dropping the guard frees the slot (see [`abandon`](SlotRead::abandon)).
    frees: bool,
    /// Under the model checker: the tracked read access to the bytes.
    #[cfg(loom)]
    access: Option<loom::cell::ConstPtr<Box<[u8]>>>,
}

impl SlotRead {
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    /// `READING` → `FREE`.
    pub(crate) fn release(self) {
        drop(self);
    }

    /// Lets go of the guard without freeing the slot: for a copy of the
    /// guard that a fork left in a process that never read the slot (the
    /// reader in the parent still does).
    pub(crate) fn abandon(mut self) {
        self.frees = false;
    }
}

impl Drop for SlotRead {
    fn drop(&mut self) {
        #[cfg(loom)]
        drop(self.access.take());
        if self.frees {
            self.ring.state(self.slot).store(FREE, Ordering::Release);
        }
    }
}

#[cfg(not(loom))]
impl Deref for SlotRead {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let off = self.ring.data_offset(self.slot);
        // SAFETY: the slot is `READING` and only this guard reads it; the
        // producer does not write a slot until it is `FREE` again (module
        // docs). `len <= slot_size` was checked in `try_read`, so the range
        // lies inside the live mapping held by `self.ring`.
        unsafe { std::slice::from_raw_parts(self.ring.map.ptr().as_ptr().add(off), self.len) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_model;
