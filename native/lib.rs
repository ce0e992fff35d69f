//! cypher_cell's native core, built as the extension module
//! `cypher_cell._native`. The layers, from the bottom up (each uses only
//! the ones above it in this list):
//!
//! ```text
//! sys/             OS calls (Linux): memory, limits, fork hook, C environ, openat2   [unsafe]
//!   mod.rs         the calls, each result checked (SysError: call + errno)
//!   tty.rs         the terminal: open, echo off and back, write, read a line
//!   spawn.rs       posix_spawnp for `cypher-cell run` (stdio, pty session, signals); read/write
//!   fault.rs       fault injection for the tests: the Nth call of a kind fails
//! memory/          pages and the secrets in them                                     [unsafe]
//!   region.rs      guarded mappings; tiers secretmem / locked / unlocked
//!   pool.rs        slot allocator: per-page live counts, canaries
//!   secret.rs      SecretBuf: fill / read / zeroize, zeroed on drop; tier requests
//!   per_process.rs globals a forked child re-creates
//!   zeroing.rs     the global allocator: heap blocks zeroed as they are freed
//! redact/          value-based redaction: a secret's forms, the one-pass scan, streams
//!   forms.rs       base64 / percent / JSON / repr() encoders, written into locked memory
//!   index.rs       the registry: forms in locked memory, keyed truncated hashes; the scan
//!   stream.rs      a byte stream masked as it arrives, partial matches held back
//! cell.rs          the cell state machine: Live -> Wiped | Burned | Expired; registry
//! reaper.rs        one thread, a deadline heap on the monotonic clock
//! dotenv/          the .env parser (python-dotenv's rules) over locked bytes, a file a stage
//! vault/           the OpenBao/Vault client, over locked bytes
//!   http.rs        HTTP(S) over ureq + rustls, keep-alive, failover; bodies into SecretBuf
//!   json.rs        a JSON reader that finds values where they lie, never copying one
//!   reply.rs       a reply's public parts (status, lease, names) and its secret spans
//!   lease.rs       one renewal thread for the process; cells' deadlines follow leases
//! errors.rs        Error -> Python exception (classes looked up once); warn_unlocked()
//! pyffi/           the CPython C API where PyO3 does not reach                       [unsafe]
//!   export.rs      Exposure: the read-only buffer export behind expose()
//!   pybytes.rs     zeroing a Python bytes object in place (environ scrub)
//!   pygc.rs        keeping bulk-made objects off the cycle collector
//! py/              the PyO3 layer: one file per Python-facing type
//!   policy.rs      Policy: ttl_sec / volatile / protection, checked once
//!   cell.rs        CypherCell
//!   entry.rs       Entry (a cell and its origin), wipe_entries, stray_entry
//!   dotenv_file.rs DotenvFile (EnvFile's native half)
//!   environ.rs     environ_cell, environ_is_set, scrub_environ (Environ's native half)
//!   secrets_file.rs read_file_cell_at (SecretsDir's native half)
//!   prompt.rs      prompt_cell (Prompt's native half)
//!   vault.rs       VaultClient, VaultReply, VaultLeases (Vault's native half)
//!   run.rs         spawn_with_secrets, MaskedOutput (`cypher-cell run`'s child and its output)
//!   debug.rs       _wipe_all, _pool_stats, _probe
//!   faults.rs      _fault_arm and friends, for the tests
//!   redact.rs      redact(), RedactStream
//! lib.rs           this file: the module list and the #[pymodule]
//! ```
//!
//! `unsafe` is denied for the crate (`Cargo.toml [lints]`) and allowed on
//! exactly the three modules marked `#[allow(unsafe_code)]` below: `sys`
//! (FFI calls into libc), `memory` (raw pointers into guarded pages) and
//! `pyffi` (the CPython C API). Every block has a `// SAFETY:` comment and
//! every `unsafe fn` a `# Safety` section (both denied by lint otherwise).
//! `sys`, `memory`, `redact`, `cell`, `reaper`, `dotenv` and `vault` are
//! plain Rust, free of PyO3; `errors`, `pyffi` and `py` are the Python side.

use pyo3::prelude::*;

mod cell;
mod dotenv;
mod errors;
#[allow(unsafe_code)]
mod memory;
mod py;
#[allow(unsafe_code)]
mod pyffi;
mod reaper;
mod redact;
#[allow(unsafe_code)]
mod sys;
mod vault;

/// Every heap block of the extension (and of the crates it calls: HTTP and
/// TLS buffers) is zeroed when freed; see `memory::ZeroingAlloc`.
#[global_allocator]
static ALLOCATOR: memory::ZeroingAlloc = memory::ZeroingAlloc;

use crate::pyffi::export;

/// For the fuzz targets in `fuzz/` only: `cargo fuzz` compiles every crate
/// with `--cfg fuzzing`, so in any other build (the extension module, `cargo
/// test`, clippy) this module is empty and the `.env` parser stays private.
/// (A cfg the manifest does not declare: the lint is allowed here only.)
#[doc(hidden)]
#[allow(unexpected_cfgs)]
pub mod fuzzing {
    #[cfg(fuzzing)]
    pub use crate::dotenv::*;

    /// The Vault reply's JSON reader, for `fuzz_targets/vault_json.rs`.
    #[cfg(fuzzing)]
    pub mod vault_json {
        pub use crate::vault::json::*;
    }

    /// The value matcher, for `fuzz_targets/redact_stream.rs`.
    #[cfg(fuzzing)]
    pub mod redact {
        pub use crate::redact::{redact_with, Registry, Stream, REDACTED};
    }

    /// The slot allocator, for `fuzz_targets/slot_pool.rs`.
    #[cfg(fuzzing)]
    pub mod memory {
        pub use crate::memory::{
            pool_stats, release_unused, reserve, SecretBuf, Tier, TierRequest,
        };
    }
}

/// The extension module `cypher_cell._native`: the fork hooks, then each
/// PyO3 file's classes and functions.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    sys::install_fork_hook().map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
    export::install_fork_hook(m.py())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    py::policy::register(m)?;
    py::cell::register(m)?;
    m.add_class::<export::Exposure>()?;
    py::debug::register(m)?;
    py::entry::register(m)?;
    py::dotenv_file::register(m)?;
    py::environ::register(m)?;
    py::secrets_file::register(m)?;
    py::prompt::register(m)?;
    py::vault::register(m)?;
    py::run::register(m)?;
    py::redact::register(m)?;
    py::faults::register(m)
}
