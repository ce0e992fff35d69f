//! The TTL reaper: one background thread that wipes each cell at its
//! deadline even if nothing ever touches the cell again. Deadlines are on the
//! monotonic clock (`Instant`), so wall-clock jumps neither hasten nor delay
//! them. The thread never touches Python.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use crate::cell::Cell;
use crate::memory::PerProcess;
use crate::sys;

struct Due {
    deadline: Instant,
    seq: u64,
    cell: Weak<Cell>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Due>>,
    seq: u64,
    started: bool,
    /// Heap size at which dead entries are swept out.
    sweep_at: usize,
}

#[derive(Default)]
struct Reaper {
    queue: Mutex<Queue>,
    wake: Condvar,
}

// Per process: a forked child has no reaper thread until it needs one.
static REAPER: PerProcess<Reaper> = PerProcess::new(Reaper::default);

fn queue(reaper: &Reaper) -> MutexGuard<'_, Queue> {
    reaper.queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asks the reaper to expire `cell` at `deadline`, starting the thread on
/// first use.
pub fn schedule(deadline: Instant, cell: Weak<Cell>) -> io::Result<()> {
    let reaper = REAPER.get();
    let mut q = queue(reaper);
    if !q.started {
        // The thread is born with every signal blocked (see SignalsBlocked).
        let _blocked =
            sys::SignalsBlocked::all().map_err(|e| io::Error::from_raw_os_error(e.errno))?;
        std::thread::Builder::new()
            .name("cypher-cell-reaper".into())
            .spawn(move || run(reaper))?;
        q.started = true;
    }
    if q.heap.len() >= q.sweep_at.max(1024) {
        // Cells wiped or dropped before their deadline leave dead entries.
        q.heap.retain(|Reverse(d)| d.cell.strong_count() > 0);
        q.sweep_at = 2 * q.heap.len();
    }
    q.seq += 1;
    let seq = q.seq;
    let earliest = q.heap.peek().is_none_or(|Reverse(d)| deadline < d.deadline);
    q.heap.push(Reverse(Due {
        deadline,
        seq,
        cell,
    }));
    if earliest {
        reaper.wake.notify_one();
    }
    Ok(())
}

fn run(reaper: &'static Reaper) {
    let mut q = queue(reaper);
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse(top)) = q.heap.peek() {
            if top.deadline > now {
                break;
            }
            if let Some(Reverse(d)) = q.heap.pop() {
                due.push(d.cell);
            }
        }
        if !due.is_empty() {
            // Wipe outside the queue lock: wiping takes the cell's own lock.
            drop(q);
            for cell in due.iter().filter_map(Weak::upgrade) {
                // A panic here must not end the thread: every later TTL would
                // then be enforced only lazily, at the next read.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    cell.expire_if_due(now)
                }));
            }
            drop(due);
            q = queue(reaper);
            continue;
        }
        q = match q.heap.peek() {
            Some(Reverse(next)) => {
                let wait = next.deadline.saturating_duration_since(now);
                reaper
                    .wake
                    .wait_timeout(q, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0)
            }
            None => reaper.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
        };
    }
}
