//! cypher_cell's native core. `memory` is the only module allowed `unsafe`;
//! the rest is safe Rust over it, and `bindings` is the thin PyO3 layer.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod bindings;
pub mod cell;
mod dotenv;
mod dotenv_py;
mod errors;
mod loaded;
#[allow(unsafe_code)]
pub mod memory;
mod prompt;
pub mod reaper;
mod sources;

/// For the fuzz targets in `fuzz/` only: `cargo fuzz` compiles every crate
/// with `--cfg fuzzing`, so in any other build (the extension module, `cargo
/// test`, clippy) this module is empty and the `.env` parser stays private.
/// (A cfg the manifest does not declare: the lint is allowed here only.)
#[doc(hidden)]
#[allow(unexpected_cfgs)]
pub mod fuzzing {
    #[cfg(fuzzing)]
    pub use crate::dotenv::*;
}
