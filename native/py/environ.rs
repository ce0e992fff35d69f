//! `environ_cell`, `environ_is_set` and `scrub_environ`, the native half of
//! the `Environ` provider: a variable's value goes from `os.environ`'s own
//! `bytes` object straight into a cell, and the copies the process still
//! holds are overwritten. The one place that reaches into `os.environ`'s
//! storage (`_data`): the Python half only names variables.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::cell::CypherCell;
use super::policy::{applied, Policy};
use crate::errors::Error;
use crate::pyffi::pybytes;
use crate::sys;

/// `os.environ`'s own storage: encoded names to `bytes` values. A
/// replaced `os.environ` (a plain dict, say) has none, and its values
/// cannot be read without copying them: that is refused.
fn storage(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let environ = py.import("os")?.getattr("environ")?;
    let data = environ
        .getattr("_data")
        .ok()
        .filter(|_| environ.hasattr("encodekey").unwrap_or(false))
        .and_then(|d| d.cast_into::<PyDict>().ok());
    data.ok_or_else(|| {
        Error::Provider(
            "environ: os.environ has been replaced; cannot read values without copying".into(),
        )
        .into()
    })
}

/// The `bytes` object that `os.environ`'s storage holds for `name` (as its
/// `encodekey()` gives it), or None.
fn stored_environ<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyBytes>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    Ok(storage(py)?
        .get_item(name)?
        .and_then(|v| v.cast_into::<PyBytes>().ok()))
}

/// Whether `os.environ` holds a value for `name`, looked up without
/// decoding the value into a `str` (as `name in os.environ` would not, but
/// `os.environ.get` would).
#[pyfunction]
fn environ_is_set(py: Python<'_>, name: &Bound<'_, PyBytes>) -> PyResult<bool> {
    Ok(stored_environ(py, name)?.is_some())
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
    let options = applied(policy.as_deref())?;
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
/// initial block that `/proc/self/environ` shows, or a `setenv` copy),
/// then removes the variable: `unsetenv`, and the (zeroed) `bytes` dropped
/// from the storage (not `os.environ.pop()`, which decodes the value into a
/// `str` first). Returns what was zeroed.
#[pyfunction]
fn scrub_environ<'py>(py: Python<'py>, name: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyDict>> {
    let stored = stored_environ(py, name)?;
    // Referred to by the dict and by `stored` here, and nothing else.
    let zeroed_stored = stored
        .as_ref()
        .is_some_and(|v| pybytes::zero_bytes_in_place(v, 2));
    drop(stored);
    let zeroed_c = sys::zero_environ_value(name.as_bytes());
    py.import("os")?.call_method1("unsetenv", (name,))?;
    let storage = storage(py)?;
    if storage.contains(name)? {
        storage.del_item(name)?;
    }
    let out = PyDict::new(py);
    out.set_item("os_environ", zeroed_stored)?;
    out.set_item("c_environ", zeroed_c)?;
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(environ_cell, m)?)?;
    m.add_function(wrap_pyfunction!(environ_is_set, m)?)?;
    m.add_function(wrap_pyfunction!(scrub_environ, m)?)
}
