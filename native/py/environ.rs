//! `environ_cell` and `scrub_environ`, the native half of the `Environ`
//! provider: a variable's value goes from `os.environ`'s own `bytes` object
//! straight into a cell, and the copies the process still holds are
//! overwritten.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::cell::CypherCell;
use super::policy::{applied, Policy};
use crate::pyffi::pybytes;
use crate::sys;

/// The `bytes` object that `os.environ`'s storage holds for `name` (as its
/// `encodekey()` gives it), or None.
fn stored_environ<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyBytes>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let storage = py
        .import("os")?
        .getattr("environ")?
        .getattr("_data")?
        .cast_into::<PyDict>()?;
    Ok(storage
        .get_item(name)?
        .and_then(|v| v.cast_into::<PyBytes>().ok()))
}

/// A cell holding the value of the environment variable `name`, copied from
/// `os.environ`'s own `bytes` object here, so that the value is never a
/// Python local: if the cell cannot be made, no frame of the error's
/// traceback holds it. None when the variable is not set.
#[pyfunction]
#[pyo3(signature = (name, *, policy = None))]
fn environ_cell(
    py: Python<'_>,
    name: &Bound<'_, PyBytes>,
    policy: Option<PyRef<'_, Policy>>,
) -> PyResult<Option<CypherCell>> {
    let options = applied(py, policy.as_deref())?;
    let Some(stored) = stored_environ(py, name)? else {
        return Ok(None);
    };
    let value = stored.as_bytes();
    CypherCell::create(py, options, value.len(), |dest| {
        dest.copy_from_slice(value);
        Ok::<(), PyErr>(())
    })
    .map(Some)
}

/// Overwrites what this process still holds of an environment variable's
/// value: the `bytes` object in `os.environ`'s storage (only if nothing else
/// refers to it) and every `NAME=value` string of the C environment (the
/// initial block that `/proc/self/environ` shows, or a `setenv` copy).
/// Returns what was zeroed. The caller then removes the variable.
#[pyfunction]
fn scrub_environ<'py>(py: Python<'py>, name: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyDict>> {
    let stored = stored_environ(py, name)?;
    // Referred to by the dict and by `stored` here, and nothing else.
    let zeroed_stored = stored
        .as_ref()
        .is_some_and(|v| pybytes::zero_bytes_in_place(v, 2));
    drop(stored);
    let zeroed_c = sys::zero_environ_value(name.as_bytes());
    let out = PyDict::new(py);
    out.set_item("os_environ", zeroed_stored)?;
    out.set_item("c_environ", zeroed_c)?;
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(environ_cell, m)?)?;
    m.add_function(wrap_pyfunction!(scrub_environ, m)?)
}
