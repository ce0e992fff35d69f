//! The memory engine: the only module with `unsafe` code.
//!
//! - [`sys`]: the operating-system calls (Linux), each result checked.
//! - [`region`]: guarded mappings and the protection tiers.
//! - [`pool`]: the slot allocator with per-page live counts and canaries.
//! - [`secret`]: `SecretBuf`, one secret's bytes, zeroized on every exit.
//! - [`export`]: the read-only buffer export behind `expose()`.
//! - [`per_process`]: globals that a forked child re-creates.
//! - [`pybytes`]: zeroing a Python `bytes` object in place (environ scrub).
//! - [`pygc`]: keeping our own small objects off Python's cycle collector.
//! - [`tty`]: the terminal calls behind `Prompt` (echo off, read into locked memory).
//! - [`fault`]: the tests' way to make the Nth OS call of a kind fail (inert unless armed).
//!
//! Where the guarantees stop: the engine keeps bytes out of swap, dumps and
//! children and zeroes them when freed. It cannot zero copies the
//! application makes (`reveal()` returns a `bytes`), and while a view from
//! `expose()` is open Python code reads the bytes without the engine's lock.

pub mod export;
pub mod fault;
mod per_process;
mod pool;
pub mod pybytes;
pub mod pygc;
mod region;
mod secret;
pub mod sys;
pub mod tty;

pub use per_process::PerProcess;
pub use region::Tier;
pub use secret::{pool_stats, release_unused, reserve, AllocError, Requested, SecretBuf};
pub use sys::fork_generation;

/// Probes one page of `tier`; `Err` carries the kernel's answer.
pub fn probe(tier: Tier) -> Result<(), sys::SysError> {
    region::Region::new(tier, 1, true).map(drop)
}
