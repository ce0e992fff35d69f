//! One internal error type and its single conversion to Python exceptions.
//! Python owns the hierarchy (`cypher_cell/errors.py`); messages name what
//! failed and why, never a secret's bytes.

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::cell::Refused;
use crate::memory::{sys, AllocError};

#[derive(Debug)]
pub enum Error {
    Refused(Refused),
    Lock(AllocError),
    Type(String),
    Value(String),
    Reaper(std::io::Error),
    /// A source failed; becomes `cypher_cell.errors.ProviderError`.
    Provider(String),
    /// A `.env` file's content is at fault; becomes `DotenvSyntaxError`.
    DotenvSyntax {
        message: String,
        path: String,
        line: usize,
    },
    Python(PyErr),
}

impl From<Refused> for Error {
    fn from(r: Refused) -> Self {
        Error::Refused(r)
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error::Python(e)
    }
}

/// An I/O failure in words for messages: the common cases spelled out,
/// the rest as the OS says them. Never any file content.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

pub fn describe_limit() -> String {
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |b| format!("{b} bytes"));
    match sys::memlock_limit() {
        Ok((soft, hard)) => format!("RLIMIT_MEMLOCK soft {}, hard {}", show(soft), show(hard)),
        Err(e) => format!("RLIMIT_MEMLOCK unknown ({e})"),
    }
}

pub fn lock_message(e: &AllocError) -> String {
    format!(
        "could not get {} memory for a secret: {} ({})",
        e.tier.name(),
        e.cause,
        describe_limit()
    )
}

fn errors_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("cypher_cell.errors")?.getattr(name)
}

fn build(py: Python<'_>, err: Error) -> PyResult<PyErr> {
    let (class, message) = match err {
        Error::Python(e) => return Ok(e),
        Error::Type(m) => return Ok(PyTypeError::new_err(m)),
        Error::Value(m) => return Ok(PyValueError::new_err(m)),
        Error::Reaper(e) => {
            return Ok(PyRuntimeError::new_err(format!(
                "could not start the TTL reaper thread: {e}"
            )))
        }
        Error::Lock(e) => {
            let kwargs = PyDict::new(py);
            kwargs.set_item("tier", e.tier.name())?;
            kwargs.set_item("errno", e.cause.errno)?;
            let exc =
                errors_class(py, "MemoryLockError")?.call((lock_message(&e),), Some(&kwargs))?;
            return Ok(PyErr::from_value(exc));
        }
        Error::DotenvSyntax {
            message,
            path,
            line,
        } => {
            let kwargs = PyDict::new(py);
            kwargs.set_item("path", path)?;
            kwargs.set_item("line", line)?;
            let exc = errors_class(py, "DotenvSyntaxError")?.call((message,), Some(&kwargs))?;
            return Ok(PyErr::from_value(exc));
        }
        Error::Provider(m) => {
            return Ok(PyErr::from_value(
                errors_class(py, "ProviderError")?.call1((m,))?,
            ));
        }
        Error::Refused(Refused::Wiped) => ("CellWipedError", "the cell has been wiped"),
        Error::Refused(Refused::Burned) => (
            "CellWipedError",
            "the cell was volatile and has been burned by its one read",
        ),
        Error::Refused(Refused::Forked) => (
            "CellWipedError",
            "the cell was created before this process forked; children do not inherit secrets",
        ),
        Error::Refused(Refused::Expired) => (
            "CellExpiredError",
            "the cell's time to live has passed and it has been wiped",
        ),
    };
    Ok(PyErr::from_value(
        errors_class(py, class)?.call1((message,))?,
    ))
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        Python::attach(|py| build(py, err).unwrap_or_else(|e| e))
    }
}
