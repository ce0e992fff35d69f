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
