//! Value-based redaction: every live cell's secret, and the forms it takes
//! in text (base64, percent-encoding, JSON and `repr()` escaping, each line
//! of a multi-line value), found in one pass and replaced by `[REDACTED]`.
//! Plain Rust, no PyO3.
//!
//! - [`forms`]: the encoders, writing straight into locked memory.
//! - [`index`]: the registry (forms in locked memory, keyed truncated hashes
//!   on the heap) and the scan.
//! - [`stream`]: a byte stream masked as it arrives (`cypher-cell run`).
//!
//! Cells join the registry once redaction is first used (`enable`), so a
//! process that never redacts pays nothing; `cell.rs` registers each live
//! cell then, and each new one at creation, and a cell leaving `Live` (wiped,
//! burned, expired, dropped) drops its `Registration`, which zeroes its
//! forms and takes them out of the index.

pub mod forms;
mod index;
mod stream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::memory::{PerProcess, Tier};
use crate::sys::fork_generation;

pub use index::Registry;
pub use stream::{redact as redact_with, redact_str as redact_str_with, Stream};

pub const REDACTED: &[u8] = b"[REDACTED]";

static ENABLED: AtomicBool = AtomicBool::new(false);
static REGISTRY: PerProcess<RwLock<Registry>> =
    PerProcess::new(|| RwLock::new(Registry::default()));

/// Whether redaction has been used in this process (new cells register).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Turns redaction on (`cell::enable_redaction` then registers the cells
/// already live).
pub fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// The registry, for a scan. Writers (cells created or forgotten) wait for
/// running scans; scans never take a cell's lock, so this cannot deadlock.
pub fn registry() -> RwLockReadGuard<'static, Registry> {
    REGISTRY.get().read().unwrap_or_else(|e| e.into_inner())
}

fn registry_mut() -> RwLockWriteGuard<'static, Registry> {
    REGISTRY.get().write().unwrap_or_else(|e| e.into_inner())
}

/// A secret's place in the registry; dropping it forgets the secret.
#[derive(Debug)]
pub struct Registration {
    id: usize,
    generation: u64,
}

/// Registers `secret` (read from its cell, whose tier the forms share).
/// `None` when it is shorter than `MIN_LEN` or no memory could be had.
pub fn register(secret: &[u8], tier: Tier) -> Option<Registration> {
    let id = registry_mut().insert(secret, tier)?;
    Some(Registration {
        id,
        generation: fork_generation(),
    })
}

impl Drop for Registration {
    fn drop(&mut self) {
        // A forked child starts with an empty registry of its own.
        if self.generation == fork_generation() {
            registry_mut().remove(self.id);
        }
    }
}

/// `text` with every live secret's forms masked; `None` if none occurs.
pub fn redact(text: &[u8]) -> Option<Vec<u8>> {
    redact_with(&registry(), text)
}

/// As `redact`, for text.
pub fn redact_str(text: &str) -> Option<String> {
    redact_str_with(&registry(), text)
}
