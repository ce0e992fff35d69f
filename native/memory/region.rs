//! `Region`: one guarded mapping. Layout, in pages:
//!
//! ```text
//! [ guard PROT_NONE ][ data: n pages, read/write ][ guard PROT_NONE ]
//! ```
//!
//! The data pages are excluded from core dumps, and hidden from forked
//! children (zero-filled for anonymous memory, unmapped for secretmem). The
//! flags actually applied are recorded, never assumed.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::sys::{self, SysError, SysResult};

/// How a secret's memory is protected, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// `memfd_secret(2)`: out of the kernel's direct map, locked, undumpable.
    Secretmem,
    /// Anonymous memory pinned with `mlock(2)`.
    Locked,
    /// Anonymous memory that may be swapped; still guarded and undumpable.
    Unlocked,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Secretmem, Tier::Locked, Tier::Unlocked];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Secretmem => "secretmem",
            Tier::Locked => "locked",
            Tier::Unlocked => "unlocked",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Tier::Secretmem => 0,
            Tier::Locked => 1,
            Tier::Unlocked => 2,
        }
    }
}

const SECRETMEM_UNKNOWN: u8 = 0;
const SECRETMEM_AVAILABLE: u8 = 1;
const SECRETMEM_MISSING: u8 = 2;
static SECRETMEM: AtomicU8 = AtomicU8::new(SECRETMEM_UNKNOWN);

/// False once `memfd_secret` has answered that this kernel does not have it.
pub fn secretmem_maybe_available() -> bool {
    SECRETMEM.load(Ordering::Relaxed) != SECRETMEM_MISSING
}

/// Locks `[addr, addr+len)`; on a limit-shaped failure raises the soft
/// RLIMIT_MEMLOCK to the hard limit and tries once more.
pub fn lock_with_retry(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    match sys::lock(addr, len) {
        Err(e) if e.is_lock_limit() && sys::raise_memlock_soft_limit().unwrap_or(false) => {
            sys::lock(addr, len)
        }
        other => other,
    }
}

/// A guarded mapping with `pages` data pages. Unmapped on drop; the owner
/// zeroes whatever it wrote before that (see `Arena` and `SecretBuf`).
#[derive(Debug)]
pub struct Region {
    base: NonNull<u8>,
    total_len: usize,
    data_len: usize,
    tier: Tier,
    /// The fork hook's record of a secretmem window.
    window: Option<usize>,
}

// SAFETY: a Region is an address range owned by exactly one owner; the
// pointers are not tied to the creating thread.
unsafe impl Send for Region {}

impl Region {
    /// Maps `pages` data pages for `tier`. For `Tier::Locked` the pages are
    /// locked only when `lock_now` is set (arenas lock page by page).
    pub fn new(tier: Tier, pages: usize, lock_now: bool) -> SysResult<Region> {
        let page = sys::page_size();
        let overflow = SysError {
            call: "mmap",
            errno: libc::ENOMEM,
        };
        let data_len = pages.checked_mul(page).ok_or(overflow)?;
        let total_len = data_len.checked_add(2 * page).ok_or(overflow)?;
        let base = sys::reserve(total_len)?;
        let mut region = Region {
            base,
            total_len,
            data_len,
            tier,
            window: None,
        };
        region.open(lock_now)?; // on error `region` is dropped and unmapped
        if tier == Tier::Secretmem {
            // A window the fork hook does not know would be a hole in a
            // child, where a stale view faults: refuse it instead.
            region.window = sys::register_window(region.data(), region.data_len);
            if region.window.is_none() {
                return Err(SysError {
                    call: "register_window",
                    errno: libc::ENOMEM,
                });
            }
        }
        Ok(region)
    }

    fn open(&self, lock_now: bool) -> SysResult<()> {
        let (data, len) = (self.data(), self.data_len);
        match self.tier {
            Tier::Secretmem => {
                // SAFETY: the data window lies inside our fresh reservation.
                let mut opened = unsafe { sys::open_secretmem(data, len) };
                if matches!(opened, Err(e) if e.call.starts_with("mmap") && e.is_lock_limit())
                    && sys::raise_memlock_soft_limit().unwrap_or(false)
                {
                    // SAFETY: as above; the failed attempt left the window PROT_NONE.
                    opened = unsafe { sys::open_secretmem(data, len) };
                }
                match opened {
                    Err(e) if e.call == "memfd_secret" && e.errno == libc::ENOSYS => {
                        SECRETMEM.store(SECRETMEM_MISSING, Ordering::Relaxed);
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                    Ok(()) => SECRETMEM.store(SECRETMEM_AVAILABLE, Ordering::Relaxed),
                }
                sys::dont_dump(data, len)?;
                sys::dont_fork(data, len)?;
            }
            Tier::Locked | Tier::Unlocked => {
                // SAFETY: the data window lies inside our fresh reservation.
                unsafe { sys::open_anonymous(data, len) }?;
                sys::dont_dump(data, len)?;
                sys::wipe_on_fork(data, len)?;
                if self.tier == Tier::Locked && lock_now {
                    lock_with_retry(data, len)?;
                }
            }
        }
        Ok(())
    }

    /// First byte of the first data page.
    pub fn data(&self) -> NonNull<u8> {
        // SAFETY: base + one page is inside the reservation (total_len >= 2 pages).
        unsafe { self.base.add(sys::page_size()) }
    }

    pub fn data_len(&self) -> usize {
        self.data_len
    }

    pub fn tier(&self) -> Tier {
        self.tier
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Some(slot) = self.window.take() {
            sys::unregister_window(slot);
        }
        // SAFETY: the owner holds no references into the region any more (it
        // is being dropped). If munmap fails, the range is replaced by an
        // unbacked PROT_NONE one: the pages, and their locks, go back to
        // the kernel (otherwise they would stay locked, charged to
        // RLIMIT_MEMLOCK, until the process ends); if that fails too, the
        // mapping is leaked as it is (zeroed by its owner).
        unsafe {
            if sys::release(self.base, self.total_len).is_err() {
                let _ = sys::abandon(self.base, self.total_len);
            }
        }
    }
}
