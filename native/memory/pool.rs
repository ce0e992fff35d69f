//! The slot allocator: small secrets packed into fixed-size slots of shared
//! guarded regions (Bitcoin Core's `LockedPool` is the model).
//!
//! - Bookkeeping (bitmaps, page counts, canaries) lives on the ordinary heap,
//!   outside the locked pages; the pages hold secret bytes and canaries only.
//! - Each slot is `class` data bytes followed by an 8-byte canary; slots never
//!   straddle a page. The canary is random per allocation and checked when the
//!   slot is freed: a mismatch means memory corruption and aborts.
//! - `Tier::Locked` arenas lock page by page. Allocation is lowest-address
//!   first, so the locked pages of an arena are a prefix; a page is locked
//!   when its first slot is handed out and the prefix shrinks only past pages
//!   whose live count is zero (keeping one empty page of slack so an
//!   alloc/free loop does not call mlock each time). A page is therefore never
//!   munlocked while a live secret is on it — mlock does not stack, so a naive
//!   per-secret munlock would unlock a neighbour.
//! - Secretmem arenas are locked by the kernel as a whole mapping.
//! - Arenas double in size (1 page up to 256 pages) so a process holding a few
//!   secrets locks a page or two, and 100,000 secrets need a dozen mappings.

use std::ptr::NonNull;

use super::region::{lock_with_retry, Region, Tier};
use crate::sys::{self, SysResult};

/// Data sizes of the slot classes; larger secrets get a region of their own.
pub const CLASSES: [usize; 12] = [16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024];
pub const CANARY_LEN: usize = 8;
pub const MAX_ARENA_PAGES: usize = 256;
/// Empty locked pages kept past the last live page of an arena.
const SLACK_PAGES: usize = 1;
/// The largest empty arena kept as a spare (a create/free loop needs one
/// page; secretmem charges the memory-lock limit for the whole mapping).
const SPARE_PAGES: usize = 4;

pub fn class_for(len: usize) -> Option<usize> {
    CLASSES.iter().position(|&c| len <= c)
}

/// A slot handed out by the pool.
#[derive(Debug)]
pub struct SlotRef {
    pub tier: Tier,
    pub class: usize,
    pub arena: u64,
    pub index: usize,
    pub ptr: NonNull<u8>,
}

// SAFETY: a SlotRef names memory owned by the pool; moving the name between
// threads is harmless, access is synchronised by its owner.
unsafe impl Send for SlotRef {}
// SAFETY: as above; a shared SlotRef gives no access by itself.
unsafe impl Sync for SlotRef {}

/// xorshift64* seeded from the kernel: canaries must be unpredictable to a
/// bug, not to a cryptanalyst, so a fast generator re-seeded per process is
/// enough.
struct CanaryRng(u64);

impl CanaryRng {
    fn seeded() -> Self {
        let mut seed = [0u8; 8];
        if sys::fill_random(&mut seed).is_err() {
            // Fall back to an address- and time-derived seed; canaries still
            // detect overwrites, only less unpredictably.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            seed = (t ^ (&seed as *const _ as u64)).to_le_bytes();
        }
        CanaryRng(u64::from_le_bytes(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Debug)]
struct Arena {
    id: u64,
    region: Region,
    slot_size: usize,
    slots_per_page: usize,
    pages: usize,
    /// One bit per slot, set = in use. Bits past the last slot are set.
    used: Vec<u64>,
    /// Lowest word that may have a clear bit.
    hint: usize,
    live: usize,
    page_live: Vec<u32>,
    /// Pages `[0, locked_pages)` are locked (all pages for secretmem).
    locked_pages: usize,
    canaries: Vec<u64>,
}

impl Arena {
    fn new(id: u64, tier: Tier, class: usize, pages: usize) -> SysResult<Arena> {
        let page = sys::page_size();
        let slot_size = CLASSES[class] + CANARY_LEN;
        let slots_per_page = page / slot_size;
        let region = Region::new(tier, pages, false)?;
        let n_slots = slots_per_page * pages;
        let words = n_slots.div_ceil(64);
        let mut used = vec![0u64; words];
        if n_slots % 64 != 0 {
            used[words - 1] = !0u64 << (n_slots % 64);
        }
        Ok(Arena {
            id,
            region,
            slot_size,
            slots_per_page,
            pages,
            used,
            hint: 0,
            live: 0,
            page_live: vec![0; pages],
            locked_pages: if tier == Tier::Secretmem { pages } else { 0 },
            canaries: vec![0; n_slots],
        })
    }

    fn capacity(&self) -> usize {
        self.slots_per_page * self.pages
    }

    fn page_ptr(&self, page: usize) -> NonNull<u8> {
        // SAFETY: page < self.pages, so the offset stays inside the data window.
        unsafe { self.region.data().add(page * sys::page_size()) }
    }

    fn slot_ptr(&self, index: usize) -> NonNull<u8> {
        let (page, within) = (index / self.slots_per_page, index % self.slots_per_page);
        // SAFETY: within * slot_size + slot_size <= page size, so the slot lies
        // inside its page.
        unsafe { self.page_ptr(page).add(within * self.slot_size) }
    }

    fn lowest_free(&self) -> Option<usize> {
        let start = self.hint.min(self.used.len());
        self.used[start..]
            .iter()
            .position(|w| *w != !0u64)
            .map(|i| (start + i) * 64 + (!self.used[start + i]).trailing_zeros() as usize)
    }

    fn alloc(
        &mut self,
        class: usize,
        rng: &mut CanaryRng,
    ) -> SysResult<Option<(usize, NonNull<u8>)>> {
        let Some(index) = self.lowest_free() else {
            return Ok(None);
        };
        let page = index / self.slots_per_page;
        if self.region.tier() == Tier::Locked && page >= self.locked_pages {
            let from = self.locked_pages;
            let len = (page + 1 - from) * sys::page_size();
            lock_with_retry(self.page_ptr(from), len)?;
            self.locked_pages = page + 1;
        }
        self.used[index / 64] |= 1 << (index % 64);
        self.hint = index / 64;
        self.live += 1;
        self.page_live[page] += 1;
        let canary = rng.next();
        self.canaries[index] = canary;
        let ptr = self.slot_ptr(index);
        // SAFETY: the canary field is the last 8 bytes of a slot inside this
        // arena's writable window; nothing else references a free slot.
        unsafe {
            ptr.add(CLASSES[class])
                .cast::<u64>()
                .write_unaligned(canary)
        };
        Ok(Some((index, ptr)))
    }

    /// Frees a slot; returns whether the arena is now empty.
    fn free(&mut self, class: usize, index: usize) -> bool {
        if self.used[index / 64] & (1 << (index % 64)) == 0 {
            corruption_abort(); // a double free: the slot is not in use
        }
        let ptr = self.slot_ptr(index);
        let data_len = CLASSES[class];
        // SAFETY: the slot is in use (its owner is handing it back), so its
        // canary field lies in our writable window.
        let found = unsafe { ptr.add(data_len).cast::<u64>().read_unaligned() };
        if found != self.canaries[index] {
            corruption_abort();
        }
        // SAFETY: the owner gave the slot back; no reference into it remains.
        unsafe { sys::zero(ptr, self.slot_size) };
        self.canaries[index] = 0;
        self.used[index / 64] &= !(1 << (index % 64));
        self.hint = self.hint.min(index / 64);
        self.live -= 1;
        let page = index / self.slots_per_page;
        self.page_live[page] -= 1;
        if self.page_live[page] == 0 && self.region.tier() == Tier::Locked {
            self.shrink_locked_prefix();
        }
        self.live == 0
    }

    /// Unlocks trailing pages that hold no live slot, past one page of slack.
    fn shrink_locked_prefix(&mut self) {
        let live_prefix = self.page_live[..self.locked_pages]
            .iter()
            .rposition(|&n| n > 0)
            .map_or(0, |p| p + 1);
        let keep = (live_prefix + SLACK_PAGES).min(self.locked_pages);
        if keep < self.locked_pages {
            let len = (self.locked_pages - keep) * sys::page_size();
            // A failed munlock leaves pages locked: the safe direction.
            if sys::unlock(self.page_ptr(keep), len).is_ok() {
                self.locked_pages = keep;
            }
        }
    }

    fn locked_bytes(&self) -> usize {
        self.locked_pages * sys::page_size()
    }
}

#[cold]
pub fn corruption_abort() -> ! {
    // The one place we stop the process: a canary no longer matches, so
    // something wrote past a secret's end. Continuing would trust corrupted
    // memory; unwinding across the FFI boundary could not be handled safely.
    // Not eprintln!: it panics if stderr is a closed pipe.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "cypher_cell: memory corruption detected (slot canary or bookkeeping mismatch); aborting"
    );
    std::process::abort();
}

#[derive(Debug, Default)]
struct SizeClass {
    arenas: Vec<Arena>,
}

impl SizeClass {
    /// Unmaps every empty arena but the smallest, and that one too if it
    /// is over `SPARE_PAGES` (a batch's arena).
    fn keep_one_spare(&mut self) {
        let spare = self
            .arenas
            .iter()
            .filter(|a| a.live == 0 && a.pages <= SPARE_PAGES)
            .min_by_key(|a| a.pages)
            .map(|a| a.id);
        self.arenas.retain(|a| a.live > 0 || Some(a.id) == spare);
    }
}

/// Counts for benchmarks and `doctor`; the kernel's own accounts are in
/// /proc/self/status and /proc/self/smaps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub arenas: usize,
    pub live_slots: usize,
    pub locked_bytes: usize,
    pub mapped_bytes: usize,
}

pub struct Pool {
    classes: [Vec<SizeClass>; 3],
    rng: CanaryRng,
    next_id: u64,
}

impl Default for Pool {
    fn default() -> Self {
        let per_tier = || (0..CLASSES.len()).map(|_| SizeClass::default()).collect();
        Pool {
            classes: [per_tier(), per_tier(), per_tier()],
            rng: CanaryRng::seeded(),
            next_id: 1,
        }
    }
}

impl Pool {
    /// A slot of at least `len` bytes (`len` <= the largest class).
    pub fn alloc(&mut self, tier: Tier, len: usize) -> SysResult<SlotRef> {
        let class = class_for(len).expect("caller routes large secrets elsewhere");
        let sizes = &mut self.classes[tier.index()][class];
        for arena in sizes.arenas.iter_mut().filter(|a| a.live < a.capacity()) {
            if let Some((index, ptr)) = arena.alloc(class, &mut self.rng)? {
                return Ok(SlotRef {
                    tier,
                    class,
                    arena: arena.id,
                    index,
                    ptr,
                });
            }
        }
        let pages = (1usize << sizes.arenas.len().min(8)).min(MAX_ARENA_PAGES);
        let id = self.next_id;
        self.next_id += 1;
        let mut arena = Arena::new(id, tier, class, pages)?;
        let Some((index, ptr)) = arena.alloc(class, &mut self.rng)? else {
            unreachable!("a new arena has free slots");
        };
        sizes.arenas.push(arena);
        Ok(SlotRef {
            tier,
            class,
            arena: id,
            index,
            ptr,
        })
    }

    /// A canary for a secret outside the slots (a large region's): from
    /// the generator the slots use, so a missing getrandom (ENOSYS under
    /// some seccomp filters) costs unpredictability, never the secret.
    pub fn canary(&mut self) -> u64 {
        self.rng.next() | 1
    }

    /// Makes room for `count` more slots of `class` at once, in as few
    /// arenas as the size cap allows, instead of the doubling steps `alloc`
    /// takes one by one: for a batch of secrets (a `.env` file's cells). No
    /// page is touched or locked here; secretmem charges the memory-lock
    /// limit for the whole mapping, as it will for the slots used.
    pub fn reserve(&mut self, tier: Tier, class: usize, count: usize) -> SysResult<()> {
        let sizes = &mut self.classes[tier.index()][class];
        let free: usize = sizes.arenas.iter().map(|a| a.capacity() - a.live).sum();
        let per_page = sys::page_size() / (CLASSES[class] + CANARY_LEN);
        let mut missing = count.saturating_sub(free);
        while missing > 0 {
            let pages = missing.div_ceil(per_page).min(MAX_ARENA_PAGES);
            let arena = Arena::new(self.next_id, tier, class, pages)?;
            self.next_id += 1;
            missing = missing.saturating_sub(arena.capacity());
            sizes.arenas.push(arena);
        }
        Ok(())
    }

    /// Unmaps the empty arenas of every class but one spare: what a batch
    /// reserved and did not use (it failed half-way) is not kept.
    pub fn release_unused(&mut self) {
        for sizes in self.classes.iter_mut().flatten() {
            sizes.keep_one_spare();
        }
    }

    /// Checks the canary, zeroes and frees the slot. An arena that empties is
    /// unmapped unless it is the smallest empty arena of its class and at
    /// most `SPARE_PAGES` long, kept as a spare so a create/free loop does
    /// not map and unmap each time (small: secretmem charges the memory-lock
    /// limit for the whole mapping, and a batch's arena may be 256 pages).
    pub fn free(&mut self, slot: &SlotRef) {
        let sizes = &mut self.classes[slot.tier.index()][slot.class];
        let Some(pos) = sizes.arenas.iter().position(|a| a.id == slot.arena) else {
            corruption_abort();
        };
        if sizes.arenas[pos].free(slot.class, slot.index) {
            sizes.keep_one_spare();
        }
    }

    pub fn stats(&self) -> PoolStats {
        let mut s = PoolStats::default();
        for arena in self.classes.iter().flatten().flat_map(|c| &c.arenas) {
            s.arenas += 1;
            s.live_slots += arena.live;
            s.locked_bytes += arena.locked_bytes();
            s.mapped_bytes += arena.region.data_len();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> usize {
        sys::page_size()
    }

    /// Lock-free tier for tests that must not depend on RLIMIT_MEMLOCK.
    const T: Tier = Tier::Unlocked;

    #[test]
    fn classes_fit_in_a_page_and_grow() {
        for w in CLASSES.windows(2) {
            assert!(w[0] < w[1]);
        }
        assert!(CLASSES[CLASSES.len() - 1] + CANARY_LEN <= page() / 2);
        assert_eq!(class_for(0), Some(0));
        assert_eq!(class_for(32), Some(1));
        assert_eq!(class_for(33), Some(2));
        assert_eq!(class_for(1025), None);
    }

    #[test]
    fn slots_are_packed_lowest_first_and_reused() {
        let mut pool = Pool::default();
        let a = pool.alloc(T, 32).unwrap();
        let b = pool.alloc(T, 32).unwrap();
        assert_eq!(a.arena, b.arena);
        assert_eq!((a.index, b.index), (0, 1));
        assert_eq!(
            b.ptr.as_ptr() as usize - a.ptr.as_ptr() as usize,
            32 + CANARY_LEN
        );
        pool.free(&a);
        let c = pool.alloc(T, 20).unwrap();
        assert_eq!(c.index, 0, "the lowest free slot is reused");
        assert_eq!(c.ptr, a.ptr);
        pool.free(&b);
        pool.free(&c);
        assert_eq!(pool.stats().live_slots, 0);
    }

    #[test]
    fn freed_slots_are_zeroed_and_canary_written() {
        let mut pool = Pool::default();
        let s = pool.alloc(T, 16).unwrap();
        // SAFETY: test-only; the slot is ours and 16 + 8 bytes long.
        let canary = unsafe { s.ptr.add(16).cast::<u64>().read_unaligned() };
        assert_ne!(canary, 0);
        // SAFETY: test-only; writing inside our own slot's data bytes.
        unsafe { std::ptr::write_bytes(s.ptr.as_ptr(), 0xAB, 16) };
        let ptr = s.ptr;
        pool.free(&s);
        // The arena is kept as the class's spare, so the memory is still mapped.
        // SAFETY: test-only; reading 24 bytes of a mapped, now free slot.
        let after = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), 24) }.to_vec();
        assert!(after.iter().all(|&b| b == 0));
    }

    #[test]
    fn canaries_differ_between_slots() {
        let mut pool = Pool::default();
        let slots: Vec<_> = (0..8).map(|_| pool.alloc(T, 8).unwrap()).collect();
        let mut seen: Vec<u64> = slots
            .iter()
            // SAFETY: test-only; each canary field is inside its live slot.
            .map(|s| unsafe { s.ptr.add(16).cast::<u64>().read_unaligned() })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 8);
        for s in &slots {
            pool.free(s);
        }
    }

    #[test]
    fn arenas_double_and_extra_empty_arenas_are_released() {
        let mut pool = Pool::default();
        let per_page = page() / (32 + CANARY_LEN);
        // Fill 1 + 2 + 4 pages: exactly three arenas.
        let n = per_page * 7;
        let slots: Vec<_> = (0..n).map(|_| pool.alloc(T, 32).unwrap()).collect();
        let st = pool.stats();
        assert_eq!(st.arenas, 3);
        assert_eq!(st.mapped_bytes, 7 * page());
        assert_eq!(st.live_slots, n);
        for s in &slots {
            pool.free(s);
        }
        let st = pool.stats();
        assert_eq!(st.live_slots, 0);
        assert_eq!(st.arenas, 1, "one empty arena stays as a spare");
        assert_eq!(st.mapped_bytes, page(), "the smallest");
    }

    #[test]
    fn a_reserved_batch_fits_in_right_sized_arenas() {
        let mut pool = Pool::default();
        let per_page = page() / (32 + CANARY_LEN);
        // 10 pages' worth: one arena of 10 pages, not 1 + 2 + 4 + 8.
        let n = per_page * 10;
        pool.reserve(T, 1, n).unwrap();
        assert_eq!(
            (pool.stats().arenas, pool.stats().mapped_bytes),
            (1, 10 * page())
        );
        let slots: Vec<_> = (0..n).map(|_| pool.alloc(T, 32).unwrap()).collect();
        assert_eq!((pool.stats().arenas, pool.stats().live_slots), (1, n));
        // Over the size cap: as few arenas as the cap allows.
        pool.reserve(T, 2, MAX_ARENA_PAGES * (page() / (48 + CANARY_LEN)) + 1)
            .unwrap();
        assert_eq!(pool.stats().arenas, 3);
        for s in &slots {
            pool.free(s);
        }
        assert_eq!(
            pool.stats().arenas,
            2,
            "an emptied 10-page arena is no spare"
        );
        // Reserved and never used: released but for one small spare a class
        // (of class 2's 256 + 1 pages, the 1-page arena).
        pool.reserve(T, 1, n * 3).unwrap();
        assert_eq!(pool.stats().arenas, 3);
        pool.release_unused();
        let st = pool.stats();
        assert_eq!((st.arenas, st.live_slots, st.mapped_bytes), (1, 0, page()));
    }

    #[test]
    fn large_secret_sizes_need_their_own_region() {
        assert!(class_for(4096).is_none());
    }

    #[test]
    fn locked_pages_follow_live_counts_with_slack() {
        // Needs mlock: skip only if this process may not lock even one page.
        let mut probe = Pool::default();
        let Ok(first) = probe.alloc(Tier::Locked, 64) else {
            eprintln!("mlock unavailable here; locked-tier accounting not exercised");
            return;
        };
        probe.free(&first);
        let mut pool = Pool::default();
        let per_page = page() / (64 + CANARY_LEN);
        // 1-page arena, then a 2-page arena: fill 3 pages.
        let slots: Vec<_> = (0..per_page * 3)
            .map(|_| pool.alloc(Tier::Locked, 64).unwrap())
            .collect();
        assert_eq!(pool.stats().locked_bytes, 3 * page());
        // Free every slot on the last page but one: that page stays locked.
        let (keep, rest) = slots.split_at(per_page * 3 - 1);
        for s in rest {
            pool.free(s);
        }
        assert_eq!(pool.stats().locked_bytes, 3 * page());
        // Free the second arena's second page entirely: within the slack.
        for s in &keep[per_page * 2..] {
            pool.free(s);
        }
        assert_eq!(pool.stats().locked_bytes, 3 * page());
        // Empty the second arena's first page too: the arena keeps one page of slack.
        for s in &keep[per_page..per_page * 2] {
            pool.free(s);
        }
        assert_eq!(pool.stats().locked_bytes, 2 * page());
        for s in &keep[..per_page] {
            pool.free(s);
        }
        assert_eq!(pool.stats().live_slots, 0);
    }

    #[test]
    fn a_page_with_a_live_neighbour_stays_locked() {
        let mut pool = Pool::default();
        let Ok(a) = pool.alloc(Tier::Locked, 16) else {
            eprintln!("mlock unavailable here; not exercised");
            return;
        };
        let b = pool.alloc(Tier::Locked, 16).unwrap();
        pool.free(&a);
        assert_eq!(
            pool.stats().locked_bytes,
            page(),
            "b's page must stay locked"
        );
        pool.free(&b);
    }
}
