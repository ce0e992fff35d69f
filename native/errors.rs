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

/// The name of `obj`'s type, for an error message (never its value).
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
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

/// `NAME soft S, hard H` for a resource limit, from the kernel.
fn describe_limit(name: &str, resource: libc::__rlimit_resource_t) -> String {
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |b| format!("{b} bytes"));
    match sys::get_rlimit(resource) {
        Ok((soft, hard)) => format!("{name} soft {}, hard {}", show(soft), show(hard)),
        Err(e) => format!("{name} unknown ({e})"),
    }
}

/// Why memory for a secret could not be had, told from the call that
/// failed: only `mlock` and the secretmem mapping are charged to the
/// memory-lock limit, and only they get its advice. `None`: the OS's word
/// is all there is to say.
fn why(cause: &sys::SysError) -> Option<String> {
    let text = match (cause.call, cause.errno) {
        ("mlock", _) | ("mmap(memfd_secret)", libc::EAGAIN) => format!(
            "the memory-lock limit is reached ({}): raise it (ulimit -l) \
             or run with CAP_IPC_LOCK",
            describe_limit("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK)
        ),
        // The address-space reservation (data pages and guard pages).
        ("mmap", libc::ENOMEM) => format!(
            "the process is out of address space ({}) or has reached the \
             system's limit on mappings (vm.max_map_count); not a memory-lock limit",
            describe_limit("RLIMIT_AS", libc::RLIMIT_AS)
        ),
        // Making reserved pages writable charges them as data.
        ("mprotect", libc::ENOMEM) => format!(
            "the kernel refused more writable memory ({}; {}; or the system's \
             limit on mappings, vm.max_map_count); not a memory-lock limit",
            describe_limit("RLIMIT_DATA", libc::RLIMIT_DATA),
            describe_limit("RLIMIT_AS", libc::RLIMIT_AS)
        ),
        ("mmap(memfd_secret)", libc::ENOMEM) => {
            "the kernel is out of memory for secretmem pages or has reached the system's \
             limit on mappings (vm.max_map_count); not a memory-lock limit"
                .into()
        }
        ("register_window", _) => "the fork hook's table of secretmem mappings is full".into(),
        ("memfd_secret", libc::ENOSYS) => "this kernel lacks memfd_secret (CONFIG_SECRETMEM, \
             Linux 5.14+) or has it switched off (boot option secretmem.enable)"
            .into(),
        _ => return None,
    };
    Some(text)
}

pub fn lock_message(e: &AllocError) -> String {
    let head = format!(
        "could not get {} memory for a secret: {}",
        e.tier.name(),
        e.cause
    );
    match why(&e.cause) {
        Some(why) => format!("{head}: {why}"),
        None => head,
    }
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
