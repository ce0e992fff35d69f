//! Fault injection for the tests: makes the Nth OS call of one kind fail with
//! a chosen errno, in the manner of SQLite's OOM tests. Every wrapper in
//! [`crate::sys`] and [`super::tty`], and the `.env` file read, asks
//! [`check`] first; `tests/test_faults.py` loops N over every call point of
//! cell creation, reading, wiping, `.env` loading, the prompt and fork
//! handling, and checks that each run ends with a clean error or a
//! documented fallback, a working next cell and nothing left locked.
//!
//! Compiled in, not a cargo feature, so that the tests exercise the very
//! build that ships (a feature would need a second build in CI, and the
//! build users run would be one the fault loops never saw). Why that is
//! safe to ship:
//! - Inert unless armed: [`check`] is one relaxed atomic load of a flag
//!   that is false; the call itself then runs as before. The calls it
//!   guards are system calls (microseconds), and a cell made from a spare
//!   slot makes none at all.
//! - It can only make calls fail, never succeed, skip or change what they
//!   do: the engine must already survive every such failure (the kernel can
//!   refuse any of these calls), and it is exactly that survival the tests
//!   check.
//! - It is armed only by `cypher_cell._native._fault_arm()`, a private
//!   function called from inside the process, which already owns every
//!   secret in its memory; nothing outside the process (environment, files,
//!   signals) can arm it.
//!
//! Not guarded: the fork hook (it runs in a just-forked child, where
//! nothing is to be decided) and the unmapping fallback of a failed
//! `munmap` (a fallback of a failure). A forked child inherits the armed
//! state and the counts, as it inherits everything else.

use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use super::{SysError, SysResult};

/// The kinds of OS call that can be made to fail, one per call site kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `mmap` of a guarded reservation (`sys::reserve`).
    Mmap,
    Mprotect,
    MemfdSecret,
    Ftruncate,
    /// The `mmap` of a `memfd_secret` descriptor over a reservation.
    MmapSecretmem,
    Munmap,
    MadviseDontdump,
    MadviseWipeonfork,
    MadviseDontfork,
    Mlock,
    Munlock,
    Getrlimit,
    Setrlimit,
    Getrandom,
    Prctl,
    TtyOpen,
    Tcgetattr,
    Tcsetattr,
    Tcflush,
    TtyWrite,
    TtyRead,
    /// `read(2)` of a `.env` file (`dotenv_py.rs`).
    FileRead,
    /// The calls that open a secrets directory's files (`sources.rs`).
    Openat2,
    Openat,
    Readlinkat,
}

impl Call {
    pub const ALL: [Call; 25] = [
        Call::Mmap,
        Call::Mprotect,
        Call::MemfdSecret,
        Call::Ftruncate,
        Call::MmapSecretmem,
        Call::Munmap,
        Call::MadviseDontdump,
        Call::MadviseWipeonfork,
        Call::MadviseDontfork,
        Call::Mlock,
        Call::Munlock,
        Call::Getrlimit,
        Call::Setrlimit,
        Call::Getrandom,
        Call::Prctl,
        Call::TtyOpen,
        Call::Tcgetattr,
        Call::Tcsetattr,
        Call::Tcflush,
        Call::TtyWrite,
        Call::TtyRead,
        Call::FileRead,
        Call::Openat2,
        Call::Openat,
        Call::Readlinkat,
    ];

    /// The kind's name for `_fault_arm()`.
    pub fn name(self) -> &'static str {
        match self {
            Call::Mmap => "mmap",
            Call::Mprotect => "mprotect",
            Call::MemfdSecret => "memfd_secret",
            Call::Ftruncate => "ftruncate",
            Call::MmapSecretmem => "mmap_secretmem",
            Call::Munmap => "munmap",
            Call::MadviseDontdump => "madvise_dontdump",
            Call::MadviseWipeonfork => "madvise_wipeonfork",
            Call::MadviseDontfork => "madvise_dontfork",
            Call::Mlock => "mlock",
            Call::Munlock => "munlock",
            Call::Getrlimit => "getrlimit",
            Call::Setrlimit => "setrlimit",
            Call::Getrandom => "getrandom",
            Call::Prctl => "prctl",
            Call::TtyOpen => "tty_open",
            Call::Tcgetattr => "tcgetattr",
            Call::Tcsetattr => "tcsetattr",
            Call::Tcflush => "tcflush",
            Call::TtyWrite => "tty_write",
            Call::TtyRead => "tty_read",
            Call::FileRead => "file_read",
            Call::Openat2 => "openat2",
            Call::Openat => "openat",
            Call::Readlinkat => "readlinkat",
        }
    }

    /// The call as `SysError::call` names it, real failure or injected.
    pub fn label(self) -> &'static str {
        match self {
            Call::Mmap => "mmap",
            Call::Mprotect => "mprotect",
            Call::MemfdSecret => "memfd_secret",
            Call::Ftruncate => "ftruncate",
            Call::MmapSecretmem => "mmap(memfd_secret)",
            Call::Munmap => "munmap",
            Call::MadviseDontdump => "madvise(MADV_DONTDUMP)",
            Call::MadviseWipeonfork => "madvise(MADV_WIPEONFORK)",
            Call::MadviseDontfork => "madvise(MADV_DONTFORK)",
            Call::Mlock => "mlock",
            Call::Munlock => "munlock",
            Call::Getrlimit => "getrlimit",
            Call::Setrlimit => "setrlimit",
            Call::Getrandom => "getrandom",
            Call::Prctl => "prctl(PR_GET_DUMPABLE)",
            Call::TtyOpen => "open",
            Call::Tcgetattr => "tcgetattr",
            Call::Tcsetattr => "tcsetattr",
            Call::Tcflush => "tcflush",
            Call::TtyWrite => "write",
            Call::TtyRead => "read",
            Call::FileRead => "read",
            Call::Openat2 => "openat2",
            Call::Openat => "openat",
            Call::Readlinkat => "readlinkat",
        }
    }

    pub fn from_name(name: &str) -> Option<Call> {
        Call::ALL.into_iter().find(|c| c.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// False unless armed: the only thing an unarmed [`check`] reads.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Calls of each kind since arming.
static COUNTS: [AtomicU64; Call::ALL.len()] = [const { AtomicU64::new(0) }; Call::ALL.len()];
/// What to fail: the kind's index, the first call to fail (1-based; 0 fails
/// nothing and only counts), the errno, and whether every later call of the
/// kind fails too.
static TARGET: AtomicUsize = AtomicUsize::new(0);
static NTH: AtomicU64 = AtomicU64::new(0);
static ERRNO: AtomicI32 = AtomicI32::new(0);
static PERSISTENT: AtomicBool = AtomicBool::new(false);

/// Counts calls of every kind from now on, and makes call `nth` of `call`
/// (and, if `persistent`, every later one) fail with `errno`. `nth == 0`
/// only counts.
pub fn arm(call: Call, nth: u64, errno: i32, persistent: bool) {
    ARMED.store(false, Ordering::SeqCst);
    for count in &COUNTS {
        count.store(0, Ordering::SeqCst);
    }
    TARGET.store(call.index(), Ordering::SeqCst);
    NTH.store(nth, Ordering::SeqCst);
    ERRNO.store(errno, Ordering::SeqCst);
    PERSISTENT.store(persistent, Ordering::SeqCst);
    ARMED.store(true, Ordering::Release);
}

/// Stops failing and counting; the counts stay readable.
pub fn disarm() {
    ARMED.store(false, Ordering::SeqCst);
}

/// Calls of `call` counted since the last [`arm`].
pub fn calls(call: Call) -> u64 {
    COUNTS[call.index()].load(Ordering::SeqCst)
}

/// `Err` with the armed errno if this call of `call` is to fail; the
/// wrapper then returns it instead of making the call.
#[inline]
pub fn check(call: Call) -> SysResult<()> {
    if !ARMED.load(Ordering::Relaxed) {
        return Ok(());
    }
    armed_check(call)
}

#[cold]
#[inline(never)]
fn armed_check(call: Call) -> SysResult<()> {
    fence(Ordering::Acquire); // pairs with the Release in `arm`
    let n = COUNTS[call.index()].fetch_add(1, Ordering::SeqCst) + 1;
    let nth = NTH.load(Ordering::SeqCst);
    let hit = nth != 0
        && TARGET.load(Ordering::SeqCst) == call.index()
        && (n == nth || (n > nth && PERSISTENT.load(Ordering::SeqCst)));
    if !hit {
        return Ok(());
    }
    Err(SysError {
        call: call.label(),
        errno: ERRNO.load(Ordering::SeqCst),
    })
}

/// [`check`] of [`Call::FileRead`], for the `.env` reader (`std::io`).
#[inline]
pub fn read_check() -> std::io::Result<()> {
    check(Call::FileRead).map_err(|e| std::io::Error::from_raw_os_error(e.errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, call) in Call::ALL.into_iter().enumerate() {
            assert_eq!(call.index(), i);
            assert_eq!(Call::from_name(call.name()), Some(call));
        }
        assert_eq!(Call::from_name("nonsense"), None);
    }

    // One test drives the global state, so tests running in parallel do
    // not race on it (no other Rust test calls `arm`).
    #[test]
    fn fails_the_nth_call_once_or_from_then_on_and_counts() {
        let c = Call::Prctl;
        arm(c, 0, libc::EPERM, false);
        assert!((0..3).all(|_| check(c).is_ok()));
        assert_eq!(calls(c), 3);
        arm(c, 2, libc::EPERM, false);
        let got: Vec<bool> = (0..4).map(|_| check(c).is_err()).collect();
        assert_eq!(got, [false, true, false, false]);
        arm(c, 2, libc::EAGAIN, true);
        let got: Vec<_> = (0..4).map(|_| check(c).err()).collect();
        let fail = Some(SysError {
            call: "prctl(PR_GET_DUMPABLE)",
            errno: libc::EAGAIN,
        });
        assert_eq!(got, [None, fail, fail, fail]);
        assert!(check(Call::FileRead).is_ok(), "another kind is not failed");
        assert!(calls(Call::FileRead) >= 1, "but counted");
        disarm();
        assert!(check(c).is_ok());
        assert_eq!(calls(c), 4, "disarmed calls are not counted");
    }
}
