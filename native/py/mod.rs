//! The PyO3 layer: one file per Python-facing type or group of functions,
//! each with a `register` that `lib.rs`'s `#[pymodule]` calls. These files
//! check arguments, call the plain Rust below them (`cell`, `dotenv`,
//! `memory`, `redact`) and turn its results into Python objects; the
//! dependencies between them run one way: `policy` <- `cell` <- `entry` <- the
//! providers (`dotenv_file`, `environ`, `secrets_file`, `prompt`).

use pyo3::prelude::*;

pub(crate) mod cell;
pub(crate) mod debug;
pub(crate) mod dotenv_file;
pub(crate) mod entry;
pub(crate) mod environ;
pub(crate) mod faults;
pub(crate) mod policy;
pub(crate) mod prompt;
pub(crate) mod redact;
pub(crate) mod run;
pub(crate) mod secrets_file;
pub(crate) mod vault;

/// Calls `cypher_cell.pydantic.<name>(owner, a, b)`: how the pydantic hooks
/// of `CypherCell` and `Policy` delegate. The module (and so pydantic) is
/// imported only when pydantic asks: `import cypher_cell` never imports it.
pub(crate) fn pydantic_hook<'py>(
    name: &str,
    owner: &Bound<'py, PyAny>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    owner
        .py()
        .import("cypher_cell.pydantic")?
        .getattr(name)?
        .call1((owner, a, b))
}
