//! The cell state machine: one secret, its read policy (burn after read,
//! time to live) and every path that wipes it. Plain Rust; the Python class
//! in `py::cell` is a thin shell over `Cell`.
//!
//! ```text
//!            reveal/expose (volatile)          wipe()/drop/exit/fork
//!   Live ─────────────────────────► Burned     Live ──────────────► Wiped
//!     └──── deadline (reaper or next read) ───► Expired
//! ```
//! Every state but `Live` holds zeros. An open `expose()` keeps the memory
//! mapped (never freed or reused) until it closes.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use crate::memory::{AllocError, PerProcess, SecretBuf, Tier, TierRequest};
use crate::reaper;
use crate::redact;
use crate::sys::fork_generation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Live,
    Wiped,
    Expired,
    Burned,
}

/// Why a read was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRefused {
    Wiped,
    Expired,
    Burned,
    /// The cell was created before this process forked.
    Forked,
}

#[derive(Debug)]
struct State {
    buf: Option<Arc<SecretBuf>>,
    status: Status,
    /// Open `with cell.expose()` blocks; the reaper waits for them.
    pins: u32,
    /// When the cell expires; a renewed lease moves it (`set_deadline`).
    deadline: Option<Instant>,
    /// The secret's place in the redaction registry while it is live.
    mask: Option<redact::Registration>,
}

impl State {
    /// Moves to `status` (if still live) and zeroes the bytes; frees them
    /// unless an exposure still points at them.
    fn end(&mut self, status: Status) {
        if self.status == Status::Live {
            self.status = status;
        }
        self.mask = None;
        if let Some(buf) = &self.buf {
            buf.zeroize();
        }
        if self.pins == 0 {
            self.buf = None;
        }
    }
}

#[derive(Debug)]
pub struct Cell {
    state: Mutex<State>,
    volatile: bool,
    generation: u64,
    tier: Tier,
    registry_id: usize,
}

/// What creating a cell produced besides the cell.
pub struct Created {
    pub cell: Arc<Cell>,
    /// `Auto` settled for unlocked memory because of this failure.
    pub degraded: Option<AllocError>,
}

#[derive(Debug)]
pub enum CreateError<E> {
    Alloc(AllocError),
    Fill(E),
    Reaper(std::io::Error),
}

impl Cell {
    /// Allocates `len` bytes, lets `fill` write the secret straight into them,
    /// and registers the cell for interpreter-exit wiping and TTL reaping.
    pub fn create<E>(
        len: usize,
        requested: TierRequest,
        volatile: bool,
        deadline: Option<Instant>,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Created, CreateError<E>> {
        let (buf, degraded) = SecretBuf::allocate(requested, len).map_err(CreateError::Alloc)?;
        // On error `buf` drops here, zeroing whatever `fill` wrote.
        buf.fill(fill).map_err(CreateError::Fill)?;
        let tier = buf.tier();
        let cell = Arc::new_cyclic(|weak| Cell {
            state: Mutex::new(State {
                buf: Some(Arc::new(buf)),
                status: Status::Live,
                pins: 0,
                deadline,
                mask: None,
            }),
            volatile,
            generation: fork_generation(),
            tier,
            registry_id: registry_insert(weak.clone()),
        });
        if let Some(deadline) = deadline {
            reaper::schedule(deadline, Arc::downgrade(&cell)).map_err(CreateError::Reaper)?;
        }
        if redact::enabled() {
            cell.mask();
        }
        Ok(Created { cell, degraded })
    }

    /// Joins the redaction registry (once, while live).
    fn mask(&self) {
        if !self.is_current() {
            return;
        }
        let mut state = self.state();
        if state.status == Status::Live && state.mask.is_none() {
            if let Some(buf) = &state.buf {
                state.mask = buf.with_bytes(|b| redact::register(b, self.tier));
            }
        }
    }

    fn is_current(&self) -> bool {
        self.generation == fork_generation()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Poisoning would need a panic while zeroing; the state stays valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the state after expiring it if its deadline has passed.
    fn readable(&self) -> Result<MutexGuard<'_, State>, ReadRefused> {
        if !self.is_current() {
            return Err(ReadRefused::Forked);
        }
        let mut state = self.state();
        if state.status == Status::Live && state.deadline.is_some_and(|d| Instant::now() >= d) {
            state.end(Status::Expired);
        }
        match state.status {
            Status::Live => Ok(state),
            Status::Wiped => Err(ReadRefused::Wiped),
            Status::Expired => Err(ReadRefused::Expired),
            Status::Burned => Err(ReadRefused::Burned),
        }
    }

    /// Runs `f` over the secret. A volatile cell is burned by this read: under
    /// any number of racing threads exactly one read succeeds.
    pub fn read<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, ReadRefused> {
        let mut state = self.readable()?;
        let buf = state.buf.clone().expect("a live cell holds its bytes");
        let out = buf.with_bytes(f);
        if self.volatile {
            state.end(Status::Burned);
        }
        Ok(out)
    }

    /// Runs `f` over the secret without counting as a read (comparisons and
    /// masked display do not burn a volatile cell).
    pub fn peek<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, ReadRefused> {
        let state = self.readable()?;
        let buf = state.buf.clone().expect("a live cell holds its bytes");
        Ok(buf.with_bytes(f))
    }

    /// Opens an exposure (a `with` block): until `close_exposure`, the
    /// reaper leaves the bytes alone. Counts as the read of a volatile cell,
    /// which is burned when the block closes.
    pub fn open_exposure(&self) -> Result<Arc<SecretBuf>, ReadRefused> {
        let mut state = self.readable()?;
        let buf = state.buf.clone().expect("a live cell holds its bytes");
        state.pins += 1;
        if self.volatile {
            // Later reads fail at once; the zeroing waits for the close.
            state.status = Status::Burned;
        }
        Ok(buf)
    }

    /// An exposure's `with` block ended: a burned, wiped or expired cell is
    /// zeroed now, even if views made from it linger (they see zeros; the
    /// memory stays mapped while they exist).
    pub fn close_exposure(&self) {
        if !self.is_current() {
            return;
        }
        let mut state = self.state();
        state.pins = state.pins.saturating_sub(1);
        if state.status == Status::Live && state.deadline.is_some_and(|d| Instant::now() >= d) {
            state.status = Status::Expired;
        }
        if state.status != Status::Live {
            let status = state.status;
            state.end(status);
        }
    }

    /// Zeroes and frees the secret now. Idempotent.
    pub fn wipe(&self) {
        if self.is_current() {
            self.state().end(Status::Wiped);
        }
    }

    /// Called by the reaper thread at the deadline. The bytes are zeroed now
    /// unless a `with cell.expose()` block is open: Python code may be
    /// reading them through a view without our lock, so they are zeroed when
    /// the block closes instead.
    pub fn expire_if_due(&self, now: Instant) {
        if !self.is_current() {
            return;
        }
        let mut state = self.state();
        // The deadline may have moved since this wake-up was scheduled.
        if state.status != Status::Live || state.deadline.is_none_or(|d| now < d) {
            return;
        }
        if state.pins == 0 {
            state.end(Status::Expired);
        } else {
            state.status = Status::Expired;
        }
    }

    pub fn status(&self) -> Status {
        if !self.is_current() {
            return Status::Wiped;
        }
        let mut state = self.state();
        if state.status == Status::Live && state.deadline.is_some_and(|d| Instant::now() >= d) {
            state.end(Status::Expired);
        }
        state.status
    }

    /// When the cell expires (None: never), while it is live.
    pub fn deadline(&self) -> Option<Instant> {
        let state = self.state();
        state.deadline.filter(|_| state.status == Status::Live)
    }

    /// Moves a live cell's deadline (a renewed lease: Vault's provider). The
    /// reaper is told of the new one; its wake-up for the old one finds the
    /// cell not yet due and leaves it.
    pub fn set_deadline(self: &Arc<Self>, at: Instant) -> std::io::Result<()> {
        {
            let mut state = self.state();
            if !self.is_current() || state.status != Status::Live {
                return Ok(());
            }
            state.deadline = Some(at);
        }
        reaper::schedule(at, Arc::downgrade(self))
    }

    pub fn tier(&self) -> Tier {
        self.tier
    }

    pub fn is_volatile(&self) -> bool {
        self.volatile
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        if self.is_current() {
            registry_remove(self.registry_id);
        }
        // `state.buf` (if any) drops next, zeroing and freeing the bytes.
    }
}

/// Every live cell of this process, so interpreter exit can wipe them all.
#[derive(Default)]
struct Registry {
    cells: Vec<Option<Weak<Cell>>>,
    free: Vec<usize>,
}

static REGISTRY: PerProcess<Mutex<Registry>> = PerProcess::new(|| Mutex::new(Registry::default()));

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.get().lock().unwrap_or_else(|e| e.into_inner())
}

fn registry_insert(cell: Weak<Cell>) -> usize {
    let mut reg = registry();
    match reg.free.pop() {
        Some(id) => {
            reg.cells[id] = Some(cell);
            id
        }
        None => {
            reg.cells.push(Some(cell));
            reg.cells.len() - 1
        }
    }
}

fn registry_remove(id: usize) {
    let mut reg = registry();
    if let Some(entry) = reg.cells.get_mut(id) {
        if entry.take().is_some() {
            reg.free.push(id);
        }
    }
}

/// Wipes every live cell of this process; returns how many were live.
pub fn wipe_all() -> usize {
    let cells: Vec<Weak<Cell>> = registry().cells.iter().flatten().cloned().collect();
    let mut wiped = 0;
    for cell in cells.iter().filter_map(Weak::upgrade) {
        if cell.status() == Status::Live {
            wiped += 1;
        }
        cell.wipe();
    }
    wiped
}

/// Turns redaction on: from now on every live cell, and each new one, is
/// in the redaction registry until it leaves `Live`.
/// Concurrent first callers wait until the cells already live are in.
pub fn enable_redaction() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The flag first: a cell created from now on registers itself; one
        // created before is in the list below (both is harmless: `mask`
        // registers once).
        redact::enable();
        let cells: Vec<Weak<Cell>> = registry().cells.iter().flatten().cloned().collect();
        cells
            .iter()
            .filter_map(Weak::upgrade)
            .for_each(|c| c.mask());
    });
}

pub fn live_count() -> usize {
    registry()
        .cells
        .iter()
        .flatten()
        .filter(|w| w.strong_count() > 0)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::time::Duration;

    const UNLOCKED: TierRequest = TierRequest::Exactly(Tier::Unlocked);

    fn cell(secret: &[u8], volatile: bool, ttl: Option<Duration>) -> Arc<Cell> {
        let deadline = ttl.map(|t| Instant::now() + t);
        Cell::create(secret.len(), UNLOCKED, volatile, deadline, |b| {
            b.copy_from_slice(secret);
            Ok::<(), Infallible>(())
        })
        .unwrap()
        .cell
    }

    #[test]
    fn read_then_wipe() {
        let c = cell(b"hunter2", false, None);
        assert_eq!(c.read(|b| b.to_vec()).unwrap(), b"hunter2");
        assert_eq!(c.read(|b| b.len()).unwrap(), 7);
        c.wipe();
        c.wipe();
        assert_eq!(c.read(|b| b.len()), Err(ReadRefused::Wiped));
        assert_eq!(c.status(), Status::Wiped);
    }

    #[test]
    fn volatile_burns_on_first_read_but_not_on_peek() {
        let c = cell(b"otp", true, None);
        assert_eq!(c.peek(|b| b.len()).unwrap(), 3);
        assert!(c.read(|_| ()).is_ok());
        assert_eq!(c.read(|_| ()), Err(ReadRefused::Burned));
    }

    #[test]
    fn volatile_race_has_exactly_one_winner() {
        for _ in 0..50 {
            let c = cell(b"race", true, None);
            let wins: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| c.read(|_| ()).is_ok() as usize))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(wins, 1);
        }
    }

    #[test]
    fn fill_error_is_returned_and_nothing_is_kept() {
        // The registry is global and other tests run in parallel, so this
        // checks the error path only; the Python tests check the live count.
        let r = Cell::create(8, UNLOCKED, false, None, |b| {
            b.fill(0xAA);
            Err("bad buffer")
        });
        assert!(matches!(r, Err(CreateError::Fill("bad buffer"))));
    }

    #[test]
    fn ttl_expires_on_read_after_deadline() {
        let c = cell(b"short", false, Some(Duration::from_millis(30)));
        assert!(c.read(|_| ()).is_ok());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.read(|_| ()), Err(ReadRefused::Expired));
    }

    #[test]
    fn reaper_zeroes_untouched_cell() {
        let c = cell(b"reap-me", false, Some(Duration::from_millis(20)));
        let buf = c.open_exposure().unwrap();
        c.close_exposure(); // keep a handle to observe the bytes without the cell's API
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            c.state().status,
            Status::Expired,
            "the reaper expired it without any read"
        );
        assert!(buf.with_bytes(|b| b.iter().all(|&x| x == 0)));
    }

    #[test]
    fn a_moved_deadline_is_kept_by_reads_and_the_reaper() {
        let c = cell(b"lease", false, Some(Duration::from_millis(30)));
        c.set_deadline(Instant::now() + Duration::from_millis(300))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(c.status(), Status::Live, "the old deadline passed");
        c.set_deadline(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(c.state().status, Status::Expired);
        assert!(c.deadline().is_none());
    }

    #[test]
    fn pinned_bytes_survive_wipe_as_zeros_until_unpinned() {
        let c = cell(b"pinned", false, None);
        let buf = c.open_exposure().unwrap();
        c.wipe();
        assert!(buf.with_bytes(|b| b.iter().all(|&x| x == 0)));
        assert!(
            c.state().buf.is_some(),
            "memory kept while the block is open"
        );
        c.close_exposure();
        assert!(c.state().buf.is_none());
    }
}
