//! The memory engine: guarded pages and the secrets in them. One of the
//! three modules allowed `unsafe` (it touches pages through raw pointers);
//! the OS calls it makes are in [`crate::sys`]. Plain Rust: no PyO3.
//!
//! - [`region`]: guarded mappings and the protection tiers.
//! - [`pool`]: the slot allocator with per-page live counts and canaries.
//! - [`secret`]: `SecretBuf`, one secret's bytes, zeroized on every exit.
//! - [`per_process`]: globals that a forked child re-creates.
//! - [`zeroing`]: the global allocator, which zeroes heap blocks as they
//!   are freed (copies that other crates make, such as HTTP buffers).
//!
//! Where the guarantees stop: the engine keeps bytes out of swap, dumps and
//! children and zeroes them when freed. It cannot zero copies the
//! application makes (`reveal()` returns a `bytes`), and while a view from
//! `expose()` is open Python code reads the bytes without the engine's lock.

mod per_process;
mod pool;
mod region;
mod secret;
mod zeroing;

pub use per_process::PerProcess;
pub use region::Tier;
pub use secret::{pool_stats, release_unused, reserve, AllocError, SecretBuf, TierRequest};
pub use zeroing::ZeroingAlloc;

/// Probes one page of `tier`; `Err` carries the kernel's answer.
pub fn probe(tier: Tier) -> Result<(), crate::sys::SysError> {
    region::Region::new(tier, 1, true).map(drop)
}
