//! Native halves of the `Environ` and `SecretsDir` providers: values go from
//! the process environment or a file straight into a cell, and the copies
//! the process still holds are overwritten.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use zeroize::Zeroize;

use crate::bindings::{CellOptions, CypherCell};
use crate::errors::{describe_io, Error};
use crate::memory::{pybytes, sys};

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
#[pyo3(signature = (name, *, volatile = false, ttl_sec = None, protection = "auto"))]
fn environ_cell(
    py: Python<'_>,
    name: &Bound<'_, PyBytes>,
    volatile: bool,
    ttl_sec: Option<&Bound<'_, PyAny>>,
    protection: &str,
) -> PyResult<Option<CypherCell>> {
    let options = CellOptions::parse(volatile, ttl_sec, protection)?;
    let Some(stored) = stored_environ(py, name)? else {
        return Ok(None);
    };
    let value = stored.as_bytes();
    options
        .create(py, value.len(), |dest| {
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

fn io_error(path: &str, what: &str, e: &std::io::Error) -> Error {
    Error::Provider(format!("{path}: cannot {what}: {}", describe_io(e)))
}

/// Reads a whole file straight into a new cell (no intermediate copy),
/// stripping one trailing newline. Refuses anything but a regular file and
/// files over `max_size` bytes.
#[pyfunction]
#[pyo3(signature = (path, *, max_size, strip_newline = true, volatile = false, ttl_sec = None, protection = "auto"))]
#[allow(clippy::too_many_arguments)]
fn read_file_cell(
    py: Python<'_>,
    path: &str,
    max_size: u64,
    strip_newline: bool,
    volatile: bool,
    ttl_sec: Option<&Bound<'_, PyAny>>,
    protection: &str,
) -> PyResult<CypherCell> {
    let options = CellOptions::parse(volatile, ttl_sec, protection)?;
    // O_NONBLOCK: opening a FIFO planted in place of a file must not hang.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| io_error(path, "open", &e))?;
    let meta = file.metadata().map_err(|e| io_error(path, "stat", &e))?;
    if !meta.is_file() {
        return Err(Error::Provider(format!("{path}: not a regular file")).into());
    }
    let size = meta.len();
    if size > max_size {
        return Err(Error::Provider(format!(
            "{path}: {size} bytes is over the {max_size}-byte limit for one secret"
        ))
        .into());
    }
    let mut len =
        usize::try_from(size).map_err(|_| Error::Provider(format!("{path}: too large")))?;
    if strip_newline && len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, size - 1)
            .map_err(|e| io_error(path, "read", &e))?;
        if last[0] == b'\n' {
            len -= 1;
        }
        last.zeroize();
    }
    let mut reader = &file;
    let cell = options.create(py, len, |dest| {
        reader
            .read_exact(dest)
            .map_err(|e| io_error(path, "read", &e))
    })?;
    // The file must not have grown past what we sized the cell for.
    let mut extra = [0u8; 2];
    let more = reader
        .read(&mut extra)
        .map_err(|e| io_error(path, "read", &e))?;
    let grew = more > 1 || (more == 1 && (extra[0] != b'\n' || len as u64 == size));
    extra.zeroize();
    if grew {
        cell.wipe_now();
        return Err(Error::Provider(format!("{path}: changed while being read")).into());
    }
    Ok(cell)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(environ_cell, m)?)?;
    m.add_function(wrap_pyfunction!(scrub_environ, m)?)?;
    m.add_function(wrap_pyfunction!(read_file_cell, m)?)?;
    Ok(())
}
