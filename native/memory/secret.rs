//! `SecretBuf`: one secret's bytes in guarded memory, with the only ways in
//! and out — `fill`, `with_bytes`, `zeroize` — and zeroization on drop.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::per_process::PerProcess;
use super::pool::{class_for, corruption_abort, Pool, PoolStats, SlotRef, CANARY_LEN, CLASSES};
use super::region::{secretmem_maybe_available, Region, Tier};
use crate::sys::{self, SysError};

/// The memory tier a caller asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierRequest {
    /// The strongest tier this machine gives; unlocked only as a last resort.
    Auto,
    /// Exactly this tier, or an error.
    Exactly(Tier),
    /// Locked memory, unlocked only as a last resort; never secretmem. For
    /// short-lived working buffers of bytes the kernel holds in its own
    /// memory anyway (a file's page cache, a pipe's buffer): hiding the copy
    /// from the kernel hides nothing, and secretmem's cost, a TLB flush on
    /// every CPU for each page it removes from the kernel's direct map, is
    /// paid for nothing.
    Transient,
}

impl TierRequest {
    /// For `Auto` and `Transient`: the tiers to try, in order, before
    /// `Unlocked` as the last resort (secretmem left out once the kernel has
    /// said it lacks it). Nothing for `Exactly`.
    fn protecting_tiers(self) -> impl Iterator<Item = Tier> {
        let tiers: &[Tier] = match self {
            TierRequest::Auto => &[Tier::Secretmem, Tier::Locked],
            TierRequest::Transient => &[Tier::Locked],
            TierRequest::Exactly(_) => &[],
        };
        tiers
            .iter()
            .copied()
            .filter(|&t| t != Tier::Secretmem || secretmem_maybe_available())
    }
}

/// A tier could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError {
    pub tier: Tier,
    pub cause: SysError,
}

static POOL: PerProcess<Mutex<Pool>> = PerProcess::new(|| Mutex::new(Pool::default()));

/// Live large regions and their locked bytes, for stats.
static LARGE_LIVE: AtomicU64 = AtomicU64::new(0);
static LARGE_LOCKED: AtomicU64 = AtomicU64::new(0);

fn pool() -> MutexGuard<'static, Pool> {
    // A panic while holding the pool lock cannot leave a slot half-freed in a
    // way that matters more than refusing all further secrets would.
    POOL.get().lock().unwrap_or_else(|e| e.into_inner())
}

/// Readies the pool for secrets of these lengths, about to be allocated
/// one by one with `req` (a batch): their arenas are mapped now, sized for
/// the batch. Best effort: a failure (the memory-lock limit) is left for the
/// allocations themselves to meet, fall back from or report.
pub fn reserve(req: TierRequest, lens: impl IntoIterator<Item = usize>) {
    let tier = match req {
        TierRequest::Exactly(tier) => tier,
        _ => req.protecting_tiers().next().unwrap_or(Tier::Unlocked),
    };
    let mut counts = [0usize; CLASSES.len()];
    for class in lens.into_iter().filter_map(class_for) {
        counts[class] += 1;
    }
    let mut pool = pool();
    for (class, &count) in counts.iter().enumerate().filter(|(_, &n)| n > 0) {
        if pool.reserve(tier, class, count).is_err() {
            break;
        }
    }
}

/// Unmaps empty arenas beyond one spare per class (after a batch that
/// reserved more than it used).
pub fn release_unused() {
    pool().release_unused();
}

pub fn pool_stats() -> PoolStats {
    let mut stats = pool().stats();
    stats.arenas += LARGE_LIVE.load(Ordering::Relaxed) as usize;
    stats.locked_bytes += LARGE_LOCKED.load(Ordering::Relaxed) as usize;
    stats
}

#[derive(Debug)]
enum Home {
    Slot(SlotRef),
    Large(Region),
}

/// The bytes of one secret. `len` bytes at `ptr` belong to it; an 8-byte
/// canary follows them.
#[derive(Debug)]
pub struct SecretBuf {
    ptr: NonNull<u8>,
    len: usize,
    tier: Tier,
    generation: u64,
    /// Expected canary after the bytes of a large region (slots keep theirs
    /// in the pool's bookkeeping).
    canary: u64,
    home: ManuallyDrop<Home>,
    /// Serialises Rust-side reads and writes of the bytes.
    access: Mutex<()>,
}

// SAFETY: Rust code touches the bytes only under `access`; `home` is plain
// data. The one exception is the buffer export (`export.rs`): Python code
// reads an open exposure's bytes without the lock, while `wipe()` (run with
// the GIL held, so not concurrently with Python readers) may zero them; the
// reaper defers zeroing while an exposure is open.
unsafe impl Send for SecretBuf {}
// SAFETY: as above.
unsafe impl Sync for SecretBuf {}

impl SecretBuf {
    /// Allocates `len` zeroed bytes. `Ok((buf, degraded))`: `degraded` names
    /// the failure that made `Auto` or `Transient` settle for `Tier::Unlocked`.
    pub fn allocate(
        req: TierRequest,
        len: usize,
    ) -> Result<(SecretBuf, Option<AllocError>), AllocError> {
        match req {
            TierRequest::Exactly(tier) => Self::allocate_tier(tier, len).map(|b| (b, None)),
            TierRequest::Auto | TierRequest::Transient => {
                let mut last = None;
                for tier in req.protecting_tiers() {
                    match Self::allocate_tier(tier, len) {
                        Ok(buf) => return Ok((buf, None)),
                        Err(e) => last = Some(e),
                    }
                }
                let buf = Self::allocate_tier(Tier::Unlocked, len)?;
                Ok((buf, last))
            }
        }
    }

    fn allocate_tier(tier: Tier, len: usize) -> Result<SecretBuf, AllocError> {
        let fail = |cause| AllocError { tier, cause };
        let generation = sys::fork_generation();
        let mut canary = 0;
        let (ptr, home) = if class_for(len).is_some() {
            let slot = pool().alloc(tier, len).map_err(fail)?;
            (slot.ptr, Home::Slot(slot))
        } else {
            let page = sys::page_size();
            let too_big = SysError {
                call: "mmap",
                errno: libc::ENOMEM,
            };
            let bytes = len
                .checked_add(CANARY_LEN + page - 1)
                .ok_or(fail(too_big))?;
            let region = Region::new(tier, bytes / page, true).map_err(fail)?;
            canary = pool().canary();
            // SAFETY: the region holds len + CANARY_LEN bytes; nothing else
            // references it yet.
            unsafe { region.data().add(len).cast::<u64>().write_unaligned(canary) };
            LARGE_LIVE.fetch_add(1, Ordering::Relaxed);
            if tier != Tier::Unlocked {
                LARGE_LOCKED.fetch_add(region.data_len() as u64, Ordering::Relaxed);
            }
            (region.data(), Home::Large(region))
        };
        Ok(SecretBuf {
            ptr,
            len,
            tier,
            generation,
            canary,
            home: ManuallyDrop::new(home),
            access: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.access.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Writes the secret in place: `f` receives the buffer itself, so callers
    /// copy straight into guarded memory.
    pub fn fill<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let _guard = self.lock();
        // SAFETY: `len` bytes at `ptr` are ours and writable; the access lock
        // makes this the only reference for the closure's duration.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) };
        f(bytes)
    }

    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let _guard = self.lock();
        // SAFETY: `len` bytes at `ptr` are ours; the access lock excludes
        // writers for the closure's duration.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) };
        f(bytes)
    }

    /// Overwrites the secret with zeros now.
    pub fn zeroize(&self) {
        let _guard = self.lock();
        // SAFETY: as in `fill`; no Rust reference into the bytes exists while
        // the lock is held.
        unsafe { sys::zero(self.ptr, self.len) };
    }

    /// The address of the bytes, for the buffer export (`pyffi::export`)
    /// only: nothing else may reach the bytes without `fill`/`with_bytes`.
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        if self.generation != sys::fork_generation() {
            // A forked child: the pages are zero (WIPEONFORK) or absent
            // (DONTFORK), and the parent's bookkeeping and locks are not ours
            // to touch. Leave everything as it is.
            return;
        }
        // SAFETY: we are the last owner; nothing references the bytes.
        unsafe { sys::zero(self.ptr, self.len) };
        // SAFETY: `home` is taken exactly once, here.
        match unsafe { ManuallyDrop::take(&mut self.home) } {
            Home::Slot(slot) => pool().free(&slot),
            Home::Large(region) => {
                // SAFETY: the canary follows the data inside the region's window.
                let canary_at = unsafe { self.ptr.add(self.len) };
                // SAFETY: as above.
                if unsafe { canary_at.cast::<u64>().read_unaligned() } != self.canary {
                    corruption_abort();
                }
                // SAFETY: as above; the canary is wiped with the rest.
                unsafe { sys::zero(canary_at, CANARY_LEN) };
                LARGE_LIVE.fetch_sub(1, Ordering::Relaxed);
                if region.tier() != Tier::Unlocked {
                    LARGE_LOCKED.fetch_sub(region.data_len() as u64, Ordering::Relaxed);
                }
                drop(region);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_read_zeroize_round_trip_small_and_large() {
        for len in [0usize, 1, 32, 1024, 1025, 10_000, 70_000] {
            let (buf, _) = SecretBuf::allocate(TierRequest::Exactly(Tier::Unlocked), len).unwrap();
            buf.with_bytes(|b| assert!(b.iter().all(|&x| x == 0)));
            buf.fill(|b| {
                b.iter_mut()
                    .enumerate()
                    .for_each(|(i, x)| *x = (i % 251) as u8 + 1)
            });
            buf.with_bytes(|b| {
                assert_eq!(b.len(), len);
                assert!(b.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8 + 1));
            });
            buf.zeroize();
            buf.with_bytes(|b| assert!(b.iter().all(|&x| x == 0)));
        }
    }

    #[test]
    fn auto_picks_a_protecting_tier_when_one_is_available() {
        let (buf, degraded) = SecretBuf::allocate(TierRequest::Auto, 32).unwrap();
        if degraded.is_none() {
            assert_ne!(buf.tier(), Tier::Unlocked);
        } else {
            assert_eq!(buf.tier(), Tier::Unlocked);
        }
    }

    #[test]
    fn transient_is_never_secretmem() {
        for len in [32, 100_000] {
            let (buf, degraded) = SecretBuf::allocate(TierRequest::Transient, len).unwrap();
            let expected = if degraded.is_none() {
                Tier::Locked
            } else {
                Tier::Unlocked
            };
            assert_eq!(buf.tier(), expected);
        }
    }
}
