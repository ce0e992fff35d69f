//! One internal error type and its single conversion to Python exceptions,
//! and the one "memory is unlocked" warning. Python owns the hierarchy
//! (`cypher_cell/errors.py`): its classes are looked up here, once each
//! (`class`), and nowhere else. Messages name what failed and why, never a
//! secret's bytes.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use crate::cell::ReadRefused;
use crate::memory::AllocError;
use crate::sys;

#[derive(Debug)]
pub enum Error {
    ReadRefused(ReadRefused),
    Lock(AllocError),
    Type(String),
    Value(String),
    Reaper(std::io::Error),
    /// A source failed; becomes `cypher_cell.errors.ProviderError`.
    Provider(String),
    /// A source that is not there (no terminal); becomes
    /// `ProviderUnavailableError`.
    ProviderUnavailable(String),
    /// A `.env` file's content is at fault; becomes `DotenvSyntaxError`.
    DotenvSyntax {
        message: String,
        path: String,
        line: usize,
    },
    Python(PyErr),
}

impl From<ReadRefused> for Error {
    fn from(r: ReadRefused) -> Self {
        Error::ReadRefused(r)
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
pub(crate) fn why(cause: &sys::SysError) -> Option<String> {
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
        ("memfd_secret", libc::EPERM) => {
            "memfd_secret is blocked (a seccomp filter, as in many containers?)".into()
        }
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

/// The classes of `cypher_cell/errors.py` that native code raises or warns
/// with.
#[derive(Clone, Copy)]
enum Class {
    MemoryLockError,
    MemoryLockWarning,
    DotenvSyntaxError,
    ProviderError,
    ProviderUnavailableError,
    CellWipedError,
    CellExpiredError,
}

impl Class {
    const COUNT: usize = 7;

    fn name(self) -> &'static str {
        match self {
            Class::MemoryLockError => "MemoryLockError",
            Class::MemoryLockWarning => "MemoryLockWarning",
            Class::DotenvSyntaxError => "DotenvSyntaxError",
            Class::ProviderError => "ProviderError",
            Class::ProviderUnavailableError => "ProviderUnavailableError",
            Class::CellWipedError => "CellWipedError",
            Class::CellExpiredError => "CellExpiredError",
        }
    }
}

/// Each class, imported the first time it is needed and kept. A failed
/// import is an error (not a panic) and is tried again next time.
static CLASSES: [PyOnceLock<Py<PyType>>; Class::COUNT] =
    [const { PyOnceLock::new() }; Class::COUNT];

fn class(py: Python<'_>, class: Class) -> PyResult<&Bound<'_, PyType>> {
    CLASSES[class as usize].import(py, "cypher_cell.errors", class.name())
}

/// What fell back to unlocked memory, for the warning's message.
pub enum Unlocked<'a> {
    /// A cell asked for `protection='auto'`.
    Cell,
    /// A `.env` file's working buffers (the file as `shown`).
    EnvFile(&'a str),
    /// The buffer a prompt's answer is read into.
    PromptAnswer,
    /// The environment block `cypher-cell run` builds for its child.
    RunEnvironment,
}

static UNLOCKED_WARNED: AtomicBool = AtomicBool::new(false);

/// Warns (`MemoryLockWarning`) that `what` got unlocked memory because of
/// `cause`. Once per process, whatever it was: the cause (the memory-lock
/// limit, a kernel without locking) is the process's and the first warning
/// says what to do; a program making 10,000 cells gets one warning, not
/// 10,000. A forked child inherits the flag, as it inherits the cause.
pub fn warn_unlocked(py: Python<'_>, cause: &AllocError, what: Unlocked<'_>) -> PyResult<()> {
    if UNLOCKED_WARNED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let fallback = match what {
        Unlocked::Cell => "protection='auto' falls back to unlocked memory, which may be written \
                           to swap. Pass protection='locked' to make this an error"
            .to_string(),
        Unlocked::EnvFile(shown) => {
            format!("env-file {shown} is read into unlocked memory, which may be written to swap")
        }
        Unlocked::PromptAnswer => "the answer to the prompt is read into unlocked memory, which \
                                   may be written to swap"
            .to_string(),
        Unlocked::RunEnvironment => "the child's environment block is built in unlocked memory, \
                                     which may be written to swap"
            .to_string(),
    };
    let message = format!(
        "{}; {fallback}. This warning is shown once per process.",
        lock_message(cause)
    );
    let message = std::ffi::CString::new(message).unwrap_or_default();
    PyErr::warn(py, class(py, Class::MemoryLockWarning)?, &message, 1)
}

fn build(py: Python<'_>, err: Error) -> PyResult<PyErr> {
    let (which, message) = match err {
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
                class(py, Class::MemoryLockError)?.call((lock_message(&e),), Some(&kwargs))?;
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
            let exc = class(py, Class::DotenvSyntaxError)?.call((message,), Some(&kwargs))?;
            return Ok(PyErr::from_value(exc));
        }
        Error::Provider(m) => (Class::ProviderError, m),
        Error::ProviderUnavailable(m) => (Class::ProviderUnavailableError, m),
        Error::ReadRefused(ReadRefused::Wiped) => {
            (Class::CellWipedError, "the cell has been wiped".into())
        }
        Error::ReadRefused(ReadRefused::Burned) => (
            Class::CellWipedError,
            "the cell was volatile and has been burned by its one read".into(),
        ),
        Error::ReadRefused(ReadRefused::Forked) => (
            Class::CellWipedError,
            "the cell was created before this process forked; children do not inherit secrets"
                .into(),
        ),
        Error::ReadRefused(ReadRefused::Expired) => (
            Class::CellExpiredError,
            "the cell's time to live has passed and it has been wiped".into(),
        ),
    };
    Ok(PyErr::from_value(
        class(py, which)?.call1((message,))?.into_any(),
    ))
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        Python::attach(|py| build(py, err).unwrap_or_else(|e| e))
    }
}
