//! The operating-system calls, and nothing else: one of the three modules
//! allowed `unsafe` (each call is an FFI call into libc). Plain Rust: no PyO3.
//!
//! - this file: the memory calls behind [`crate::memory`] (map, lock,
//!   advise, unmap, zero), resource limits, the fork hook, the C
//!   environment, and the `openat2`/`openat`/`readlinkat` calls behind the
//!   secrets directory.
//! - [`tty`]: the terminal calls behind `Prompt` (echo off, read into locked memory).
//! - [`spawn`]: `cypher-cell run`'s child, started with `posix_spawnp` (its environment read in place).
//! - [`fault`]: the tests' way to make the Nth OS call of a kind fail (inert unless armed).
//!
//! Linux is the one system implemented and tested. Every function returns the
//! kernel's verdict (`Err(SysError)` carries the call and errno); none of them
//! panics. A macOS port needs `mlock`/`MAP_NOCORE`/`minherit`; a Windows port
//! `VirtualAlloc`/`VirtualLock`: both would replace this module only.

#[cfg(not(target_os = "linux"))]
compile_error!("cypher_cell's memory engine is implemented for Linux only so far");

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use self::fault::Call;

pub mod fault;
pub mod spawn;
pub mod tty;

/// A failed system call: which one, and the errno it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysError {
    pub call: &'static str,
    pub errno: i32,
}

impl SysError {
    fn last(call: Call) -> Self {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        SysError {
            call: call.label(),
            errno,
        }
    }

    /// The limit-shaped failures: retrying after raising RLIMIT_MEMLOCK may help.
    pub fn is_lock_limit(&self) -> bool {
        matches!(self.errno, libc::ENOMEM | libc::EAGAIN | libc::EPERM)
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = io::Error::from_raw_os_error(self.errno);
        write!(f, "{} failed: {}", self.call, text)
    }
}

pub type SysResult<T> = Result<T, SysError>;

pub fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|s| s.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// Every asynchronous signal blocked in the calling thread until this is
/// dropped, when the thread's previous mask comes back. A thread started
/// meanwhile inherits the full mask from its first instruction: a helper
/// thread (the TTL reaper) must never be the one a process-directed
/// signal is delivered to (SIGTERM's default action there would end the
/// process instead of reaching Python's handler, or `cypher-cell run`'s
/// signal thread that forwards it to the child).
pub struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    pub fn all() -> SysResult<Self> {
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset/sigdelset initialise and edit the set we own;
        // pthread_sigmask reads `all` and writes the old mask into `old`.
        let rc = unsafe {
            libc::sigfillset(all.as_mut_ptr());
            // Faults are synchronous: blocking them is undefined behaviour
            // when one is raised by the thread itself.
            for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL] {
                libc::sigdelset(all.as_mut_ptr(), sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr())
        };
        if rc != 0 {
            return Err(SysError {
                call: "pthread_sigmask",
                errno: rc,
            });
        }
        // SAFETY: pthread_sigmask succeeded, so it wrote the old mask.
        Ok(SignalsBlocked(unsafe { old.assume_init() }))
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores a mask pthread_sigmask itself gave us.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

/// Reserves `len` bytes of address space with no access rights. The caller
/// opens a window inside it with [`open_anonymous`] or [`open_secretmem`];
/// what stays `PROT_NONE` is the guard pages.
pub fn reserve(len: usize) -> SysResult<NonNull<u8>> {
    fault::check(Call::Mmap)?;
    // SAFETY: an anonymous PROT_NONE mapping at a kernel-chosen address touches
    // no existing memory.
    let addr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(SysError::last(Call::Mmap));
    }
    NonNull::new(addr.cast()).ok_or(SysError {
        call: Call::Mmap.label(),
        errno: libc::ENOMEM,
    })
}

/// Makes `[addr, addr+len)` of a reservation readable and writable private
/// anonymous memory.
///
/// # Safety
/// The range must lie inside a reservation made by [`reserve`] that no
/// reference points into.
pub unsafe fn open_anonymous(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    fault::check(Call::Mprotect)?;
    // SAFETY: per the caller's contract the range is ours and unreferenced.
    let rc = unsafe {
        libc::mprotect(
            addr.as_ptr().cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    if rc != 0 {
        return Err(SysError::last(Call::Mprotect));
    }
    Ok(())
}

/// Replaces `[addr, addr+len)` of a reservation with a `memfd_secret(2)`
/// mapping: pages removed from the kernel's direct map, locked and excluded
/// from core dumps by the kernel itself.
///
/// # Safety
/// As for [`open_anonymous`].
pub unsafe fn open_secretmem(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    fault::check(Call::MemfdSecret)?;
    // SAFETY: memfd_secret takes only a flags word.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(SysError::last(Call::MemfdSecret));
    }
    let fd = fd as libc::c_int;
    let result = (|| {
        let size = libc::off_t::try_from(len).map_err(|_| SysError {
            call: Call::Ftruncate.label(),
            errno: libc::EFBIG,
        })?;
        fault::check(Call::Ftruncate)?;
        // SAFETY: fd is the descriptor just returned to us.
        if unsafe { libc::ftruncate(fd, size) } != 0 {
            return Err(SysError::last(Call::Ftruncate));
        }
        fault::check(Call::MmapSecretmem)?;
        // SAFETY: MAP_FIXED over our own reservation (caller's contract); the
        // kernel replaces only those pages.
        let mapped = unsafe {
            libc::mmap(
                addr.as_ptr().cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(SysError::last(Call::MmapSecretmem));
        }
        Ok(())
    })();
    // The mapping keeps the memory alive; the descriptor is no longer needed.
    // SAFETY: closing a descriptor we own.
    unsafe { libc::close(fd) };
    result
}

/// Unmaps a whole reservation.
///
/// # Safety
/// No reference into the range may outlive this call.
pub unsafe fn release(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    fault::check(Call::Munmap)?;
    // SAFETY: per the caller's contract.
    if unsafe { libc::munmap(addr.as_ptr().cast(), len) } != 0 {
        return Err(SysError::last(Call::Munmap));
    }
    Ok(())
}

/// For a reservation [`release`] could not unmap: maps inaccessible,
/// unbacked memory over it (`MAP_FIXED`), which returns its pages to the
/// kernel and ends their locks; only the address range stays taken. Not
/// subject to fault injection: it is the fallback of a failure.
///
/// # Safety
/// As for [`release`].
pub unsafe fn abandon(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    // SAFETY: per the caller's contract nothing refers to the range, which
    // is ours; MAP_FIXED replaces only it.
    let mapped = unsafe {
        libc::mmap(
            addr.as_ptr().cast(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        return Err(SysError::last(Call::Mmap));
    }
    Ok(())
}

fn madvise(addr: NonNull<u8>, len: usize, advice: libc::c_int, call: Call) -> SysResult<()> {
    fault::check(call)?;
    // SAFETY: madvise with these advice values changes dump/fork behaviour
    // only; it never invalidates memory in this process.
    if unsafe { libc::madvise(addr.as_ptr().cast(), len, advice) } != 0 {
        return Err(SysError::last(call));
    }
    Ok(())
}

/// Keeps the range out of core dumps.
pub fn dont_dump(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    madvise(addr, len, libc::MADV_DONTDUMP, Call::MadviseDontdump)
}

/// A forked child sees the range as zero-filled (private anonymous only).
pub fn wipe_on_fork(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    madvise(addr, len, libc::MADV_WIPEONFORK, Call::MadviseWipeonfork)
}

/// A forked child does not get the range mapped at all (works for the shared
/// secretmem mapping, where WIPEONFORK is refused).
pub fn dont_fork(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    madvise(addr, len, libc::MADV_DONTFORK, Call::MadviseDontfork)
}

pub fn lock(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    fault::check(Call::Mlock)?;
    // SAFETY: mlock only pins pages of a mapping we own.
    if unsafe { libc::mlock(addr.as_ptr().cast(), len) } != 0 {
        return Err(SysError::last(Call::Mlock));
    }
    Ok(())
}

pub fn unlock(addr: NonNull<u8>, len: usize) -> SysResult<()> {
    fault::check(Call::Munlock)?;
    // SAFETY: munlock only unpins pages of a mapping we own.
    if unsafe { libc::munlock(addr.as_ptr().cast(), len) } != 0 {
        return Err(SysError::last(Call::Munlock));
    }
    Ok(())
}

/// Overwrites `len` bytes at `addr` with zeros in a way the compiler may not
/// elide.
///
/// # Safety
/// The range must be mapped writable and not aliased by a live reference.
pub unsafe fn zero(addr: NonNull<u8>, len: usize) {
    use zeroize::Zeroize;
    // SAFETY: per the caller's contract the range is writable and unaliased.
    let bytes = unsafe { std::slice::from_raw_parts_mut(addr.as_ptr(), len) };
    bytes.zeroize();
}

/// `(soft, hard)`; `None` means unlimited.
pub type Limit = (Option<u64>, Option<u64>);

pub fn get_rlimit(resource: libc::__rlimit_resource_t) -> SysResult<Limit> {
    fault::check(Call::Getrlimit)?;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return Err(SysError::last(Call::Getrlimit));
    }
    let conv = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v);
    Ok((conv(lim.rlim_cur), conv(lim.rlim_max)))
}

pub fn memlock_limit() -> SysResult<Limit> {
    get_rlimit(libc::RLIMIT_MEMLOCK)
}

pub fn core_limit() -> SysResult<Limit> {
    get_rlimit(libc::RLIMIT_CORE)
}

/// Raises the soft RLIMIT_MEMLOCK to the hard limit. `Ok(true)` when the soft
/// limit changed.
pub fn raise_memlock_soft_limit() -> SysResult<bool> {
    fault::check(Call::Getrlimit)?;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(SysError::last(Call::Getrlimit));
    }
    if lim.rlim_cur == lim.rlim_max {
        return Ok(false);
    }
    lim.rlim_cur = lim.rlim_max;
    fault::check(Call::Setrlimit)?;
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        return Err(SysError::last(Call::Setrlimit));
    }
    Ok(true)
}

/// Fills `buf` from the kernel's CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> SysResult<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        let n = match fault::check(Call::Getrandom) {
            // SAFETY: getrandom writes at most rest.len() bytes into rest.
            Ok(()) => match unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) } {
                n if n < 0 => Err(SysError::last(Call::Getrandom)),
                n => Ok(n as usize),
            },
            Err(injected) => Err(injected),
        };
        match n {
            Err(e) if e.errno == libc::EINTR => continue,
            Err(e) => return Err(e),
            Ok(n) => filled += n,
        }
    }
    Ok(())
}

/// Whether the process may produce a core dump (`prctl(PR_GET_DUMPABLE)`).
pub fn dumpable() -> SysResult<bool> {
    fault::check(Call::Prctl)?;
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    let rc = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    if rc < 0 {
        return Err(SysError::last(Call::Prctl));
    }
    Ok(rc != 0)
}

/// Counts forks: a child sees a different generation from its parent, so
/// state captured before the fork can be recognised and left alone (its locks
/// may be held by threads that do not exist in the child).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Secretmem windows currently mapped, as (address, length) pairs. A forked
/// child does not inherit them (MADV_DONTFORK), which would leave holes
/// where a view made before the fork still points and where a new mapping
/// could land; the fork hook fills them with read-only zero pages instead,
/// so such a view reads zeros (as it does over wiped-on-fork anonymous
/// memory) rather than crashing the child. A fixed, lock-free table,
/// because the hook runs where no lock may be taken. Every window is in
/// it: one that does not fit is refused (`register_window`). It is sized
/// past what the kernel allows by default (each window is three mappings,
/// vm.max_map_count is 65,530); untouched slots cost no memory, and the
/// hook walks only up to the highest slot ever used.
const WINDOW_SLOTS: usize = 1 << 15;
static WINDOW_ADDR: [AtomicUsize; WINDOW_SLOTS] = [const { AtomicUsize::new(0) }; WINDOW_SLOTS];
static WINDOW_LEN: [AtomicUsize; WINDOW_SLOTS] = [const { AtomicUsize::new(0) }; WINDOW_SLOTS];
/// One past the highest slot ever used.
static WINDOW_HIGH: AtomicUsize = AtomicUsize::new(0);
/// No slot below this is free (a search starts here).
static WINDOW_FREE_FROM: AtomicUsize = AtomicUsize::new(0);

/// Records a secretmem window; `None` when the table is full, and then the
/// window must not be used (a child would have a hole there).
pub fn register_window(addr: NonNull<u8>, len: usize) -> Option<usize> {
    let addr = addr.as_ptr() as usize;
    let from = WINDOW_FREE_FROM.load(Ordering::SeqCst).min(WINDOW_SLOTS);
    for slot in from..WINDOW_SLOTS {
        let cell = &WINDOW_ADDR[slot];
        if cell.load(Ordering::Relaxed) == 0
            && cell
                .compare_exchange(0, addr, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            WINDOW_LEN[slot].store(len, Ordering::SeqCst);
            WINDOW_HIGH.fetch_max(slot + 1, Ordering::SeqCst);
            // A slot freed during the search may stay below this until a
            // later unregister lowers it: capacity lost for a while, never
            // a window left out.
            let _ = WINDOW_FREE_FROM.compare_exchange(
                from,
                slot + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            return Some(slot);
        }
    }
    None
}

/// Forgets a window: call before unmapping it.
pub fn unregister_window(slot: usize) {
    WINDOW_LEN[slot].store(0, Ordering::SeqCst);
    WINDOW_ADDR[slot].store(0, Ordering::SeqCst);
    WINDOW_FREE_FROM.fetch_min(slot, Ordering::SeqCst);
}

extern "C" fn after_fork_in_child() {
    // Runs in the child right after fork: atomics and raw syscalls only.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
    for slot in 0..WINDOW_HIGH.load(Ordering::SeqCst).min(WINDOW_SLOTS) {
        let addr = WINDOW_ADDR[slot].load(Ordering::SeqCst);
        let len = WINDOW_LEN[slot].load(Ordering::SeqCst);
        if addr != 0 && len != 0 {
            // SAFETY: the range was our secretmem window in the parent and is
            // unmapped here (MADV_DONTFORK); nothing in the child can refer
            // to it but stale views (memoryviews made before the fork that
            // could not be released, see export.rs), which now read zeros
            // instead of faulting or reading whatever a later mapping would
            // put there. Read-only, private and anonymous: the zero page,
            // no memory used, never writable.
            unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
        }
    }
}

pub fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::SeqCst)
}

/// Registers the fork hook once per process.
pub fn install_fork_hook() -> SysResult<()> {
    static INSTALLED: OnceLock<i32> = OnceLock::new();
    let rc = *INSTALLED.get_or_init(|| {
        // SAFETY: registers a handler that performs a single atomic add, which
        // is valid in a freshly forked child.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) }
    });
    if rc != 0 {
        return Err(SysError {
            call: "pthread_atfork",
            errno: rc,
        });
    }
    Ok(())
}

extern "C" {
    /// The C library's environment: what `getenv` reads and `/proc/self/environ`
    /// shows for variables inherited at exec (those strings live in the
    /// initial environment block on the stack).
    static mut environ: *mut *mut libc::c_char;
}

/// Overwrites with zeros, in place, the value of every `name=value` entry of
/// the C environment; returns how many entries were found. The entries stay
/// (as `name=`), so `unsetenv` can still find and remove them.
///
/// Not synchronised with `setenv` from other threads, like `getenv` itself:
/// call it where the environment is not being changed concurrently.
pub fn zero_environ_value(name: &[u8]) -> usize {
    if name.is_empty() || name.contains(&b'=') {
        return 0;
    }
    let mut found = 0;
    let writable = writable_ranges();
    // SAFETY: `environ` is the libc-maintained, NULL-terminated array of
    // NUL-terminated strings; we read the pointer once and walk it without
    // holding references across iterations.
    let mut entry = unsafe { std::ptr::addr_of!(environ).read() };
    if entry.is_null() {
        return 0;
    }
    loop {
        // SAFETY: `entry` points into the NULL-terminated array (see above).
        let s = unsafe { *entry };
        if s.is_null() {
            break;
        }
        // SAFETY: each entry is a NUL-terminated C string owned by libc (the
        // initial block or a setenv allocation), writable by this process.
        let bytes = unsafe { std::ffi::CStr::from_ptr(s) }.to_bytes();
        if bytes.len() > name.len() && bytes.starts_with(name) && bytes[name.len()] == b'=' {
            let value_len = bytes.len() - name.len() - 1;
            let value_at = s as usize + name.len() + 1;
            if !writable
                .iter()
                .any(|&(lo, hi)| lo <= value_at && value_at + value_len <= hi)
            {
                // A putenv() of a string in read-only memory (a C literal):
                // writing would crash. Leave it; unsetenv still removes it.
                found += 1;
                entry = unsafe_next(entry);
                continue;
            }
            // SAFETY: the value lies inside this C string; zeroing it keeps the
            // string NUL-terminated (shorter) and no Rust reference to it lives
            // past `bytes`, which is not used again.
            if let Some(value) = NonNull::new(unsafe { s.add(name.len() + 1) }.cast::<u8>()) {
                // SAFETY: as above: `value_len` writable bytes at `value`.
                unsafe { zero(value, value_len) };
            }
            found += 1;
        }
        entry = unsafe_next(entry);
    }
    found
}

fn unsafe_next(entry: *mut *mut libc::c_char) -> *mut *mut libc::c_char {
    // SAFETY: called only for an entry that is not the terminating NULL, so
    // the next slot of the array exists.
    unsafe { entry.add(1) }
}

/// The address ranges this process may write, from /proc/self/maps.
fn writable_ranges() -> Vec<(usize, usize)> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            if perms.as_bytes().get(1) != Some(&b'w') {
                return None;
            }
            let (lo, hi) = range.split_once('-')?;
            Some((
                usize::from_str_radix(lo, 16).ok()?,
                usize::from_str_radix(hi, 16).ok()?,
            ))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Opening a file beneath a directory (SecretsDir). The resolution rules
// live in `py/secrets_file.rs`; these are the bare system calls.
// ---------------------------------------------------------------------------

/// `struct open_how` of openat2(2), laid out as the kernel reads it (libc's
/// own is `non_exhaustive`, so it cannot be built outside that crate).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn owned_fd(rc: libc::c_long, call: Call) -> SysResult<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if rc < 0 {
        return Err(SysError::last(call));
    }
    let fd = std::os::fd::RawFd::try_from(rc).map_err(|_| SysError {
        call: call.label(),
        errno: libc::EBADF,
    })?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else
    // owns it; the OwnedFd closes it exactly once.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `openat2(dir, name, {flags, resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS})`:
/// the kernel resolves `name`, symlinks included, and fails with `EXDEV`
/// at any step that would leave `dir` (an absolute symlink, `..` above it).
/// `ENOSYS` (before Linux 5.6) or `EPERM` (a seccomp filter) mean the call
/// is not available.
pub fn openat2_beneath(
    dir: std::os::fd::RawFd,
    name: &std::ffi::CStr,
    flags: libc::c_int,
) -> SysResult<std::os::fd::OwnedFd> {
    fault::check(Call::Openat2)?;
    let how = OpenHow {
        flags: u64::from(flags.unsigned_abs()),
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `name` is NUL-terminated and `how` is a live open_how of the
    // size passed; the kernel reads both and writes nothing. A bad `dir`
    // only makes the call fail (EBADF).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            name.as_ptr(),
            std::ptr::addr_of!(how),
            std::mem::size_of::<OpenHow>(),
        )
    };
    owned_fd(rc, Call::Openat2)
}

/// `openat(dir, name, flags)`: `name` is resolved by the kernel's usual rules
/// (the caller passes `O_NOFOLLOW` and one component at a time).
pub fn openat(
    dir: std::os::fd::RawFd,
    name: &std::ffi::CStr,
    flags: libc::c_int,
) -> SysResult<std::os::fd::OwnedFd> {
    fault::check(Call::Openat)?;
    // SAFETY: `name` is NUL-terminated; no mode is read without O_CREAT.
    let rc = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    owned_fd(libc::c_long::from(rc), Call::Openat)
}

/// `readlinkat(dir, name)`: the symlink's target, or `EINVAL` when `name`
/// is not a symlink.
pub fn readlinkat(dir: std::os::fd::RawFd, name: &std::ffi::CStr) -> SysResult<Vec<u8>> {
    fault::check(Call::Readlinkat)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).map_err(|_| SysError::last(Call::Readlinkat))?;
    if n >= buf.len() {
        // Possibly cut short: a target this long cannot be a path anyway.
        return Err(SysError {
            call: Call::Readlinkat.label(),
            errno: libc::ENAMETOOLONG,
        });
    }
    buf.truncate(n);
    Ok(buf)
}
