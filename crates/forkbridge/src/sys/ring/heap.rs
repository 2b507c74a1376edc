//! The ring's memory under the model checker (`checks/loom`): on the heap,
//! with loom's atomics and cells, so loom explores the very slot protocol
//! of `mod.rs`. There is no fd: a ring made here does not cross.

use super::*;

/// Under the model checker the ring lives on the heap: loom atomics for the
/// header and slot words, and a loom `UnsafeCell` per slot's bytes, so loom
/// checks that no write borrow of a slot ever overlaps a read borrow (in
/// any interleaving it explores), which is what the state machine is for.
#[derive(Debug)]
pub(super) struct Mapping {
    pub(super) u32s: Vec<(usize, AtomicU32)>,
    pub(super) u64s: Vec<(usize, AtomicU64)>,
    pub(super) i32s: Vec<(usize, AtomicI32)>,
    pub(super) data: Vec<loom::cell::UnsafeCell<Box<[u8]>>>,
}

// SAFETY: the words are loom atomics and the slots' bytes loom cells,
// accessed only under the slot protocol (the parent module's docs), which
// loom checks; handles may move and be shared between its threads.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(super) fn new(_len: usize, slots: u32, slot_size: usize) -> Mapping {
        let slot = |i: u32, off| HEADER + SLOT_HEADER * i as usize + off;
        let mut u32s: Vec<_> = [OFF_MAGIC, OFF_SLOTS, OFF_READY_BELL, OFF_FREE_BELL]
            .into_iter()
            .map(|off| (off, AtomicU32::new(0)))
            .collect();
        let mut u64s: Vec<_> = [OFF_SLOT_SIZE, OFF_HEAD, OFF_TAIL]
            .into_iter()
            .map(|off| (off, AtomicU64::new(0)))
            .collect();
        let mut i32s: Vec<_> = [OFF_PRODUCER, OFF_CONSUMER]
            .into_iter()
            .map(|off| (off, AtomicI32::new(0)))
            .collect();
        for i in 0..slots {
            u32s.push((slot(i, SLOT_STATE), AtomicU32::new(FREE)));
            i32s.push((slot(i, SLOT_OWNER), AtomicI32::new(0)));
            u64s.push((slot(i, SLOT_LEN), AtomicU64::new(0)));
        }
        let data = (0..slots)
            .map(|_| loom::cell::UnsafeCell::new(vec![0u8; slot_size].into_boxed_slice()))
            .collect();
        Mapping {
            u32s,
            u64s,
            i32s,
            data,
        }
    }

    pub(super) fn word<'a, T>(&self, words: &'a [(usize, T)], off: usize) -> &'a T {
        &words
            .iter()
            .find(|(o, _)| *o == off)
            .unwrap_or_else(|| panic!("BUG: ring word offset {off}"))
            .1
    }
}

impl Deref for SlotWrite {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let access = self
            .access
            .as_ref()
            .expect("BUG: slot accessed after commit");
        // SAFETY: the tracked access lives as long as this guard's borrow of
        // it; loom reports any overlap with another access of the slot.
        unsafe { &access.deref()[..self.ring.slot_size] }
    }
}

impl DerefMut for SlotWrite {
    fn deref_mut(&mut self) -> &mut [u8] {
        let size = self.ring.slot_size;
        let access = self
            .access
            .as_ref()
            .expect("BUG: slot accessed after commit");
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe { &mut access.deref()[..size] }
    }
}

impl Deref for SlotRead {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let access = self
            .access
            .as_ref()
            .expect("BUG: slot accessed after release");
        // SAFETY: the tracked access lives as long as this guard's borrow of
        // it; `len <= slot_size` was checked in `try_read`.
        unsafe { &access.deref()[..self.len] }
    }
}
