//! cypher_cell's native core. `memory` is the only module allowed `unsafe`;
//! the rest is safe Rust over it, and `py` is the thin PyO3 layer.

use pyo3::prelude::*;

mod cell;
mod dotenv;
mod errors;
#[allow(unsafe_code)]
mod memory;
mod py;
mod reaper;

use crate::memory::{export, sys};

/// For the fuzz targets in `fuzz/` only: `cargo fuzz` compiles every crate
/// with `--cfg fuzzing`, so in any other build (the extension module, `cargo
/// test`, clippy) this module is empty and the `.env` parser stays private.
/// (A cfg the manifest does not declare: the lint is allowed here only.)
#[doc(hidden)]
#[allow(unexpected_cfgs)]
pub mod fuzzing {
    #[cfg(fuzzing)]
    pub use crate::dotenv::*;

    /// The slot allocator, for `fuzz_targets/slot_pool.rs`.
    #[cfg(fuzzing)]
    pub mod memory {
        pub use crate::memory::{pool_stats, release_unused, reserve, Requested, SecretBuf, Tier};
    }
}

/// The extension module `cypher_cell._native`: the fork hooks, then each
/// PyO3 file's classes and functions.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    sys::install_fork_hook().map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
    export::install_fork_hook(m.py())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    py::cell::register(m)?;
    m.add_class::<export::Exposure>()?;
    py::debug::register(m)?;
    py::entry::register(m)?;
    py::dotenv_file::register(m)?;
    py::environ::register(m)?;
    py::secrets_file::register(m)?;
    py::prompt::register(m)?;
    py::faults::register(m)
}
