//! `spawn_with_secrets`, the native half of `cypher-cell run`: the child's
//! environment block is built in a `SecretBuf` (locked memory), the cells'
//! values copied into it there and nowhere else, the child started with
//! `posix_spawnp` (which reads the block in place, see `sys::spawn`), and the
//! block zeroed once the child has exec'd. `MaskedOutput` then carries each
//! of the child's outputs to ours: read into locked memory, masked by the
//! redaction matcher (`redact::Stream`, what `RedactStream` wraps), written
//! out, the read bytes zeroed. No value, and no unmasked output, becomes a
//! Python object.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::cell::CypherCell;
use crate::errors::{warn_unlocked, Error, Unlocked};
use crate::memory::{SecretBuf, TierRequest};
use crate::redact::{self as matcher, Stream};
use crate::sys::spawn::{self, spawn, Spawn, Stdio};
use crate::sys::SysError;

/// `stdio` entry meaning "the pty slave" (any other negative is refused).
const PTY: i32 = -1;

fn stdio_of(fd: Option<i32>) -> PyResult<Stdio> {
    match fd {
        None => Ok(Stdio::Inherit),
        Some(PTY) => Ok(Stdio::Pty),
        Some(fd) if fd >= 0 => Ok(Stdio::Fd(fd)),
        Some(fd) => Err(Error::Value(format!("stdio: {fd} is not a descriptor")).into()),
    }
}

fn c_string(what: &str, bytes: &[u8]) -> PyResult<CString> {
    CString::new(bytes).map_err(|_| Error::Value(format!("{what} contains a NUL byte")).into())
}

/// Starts `argv` with the environment `inherited` (`NAME=value` entries,
/// not secrets) plus each `(name, cell)` of `secrets` as `NAME=value`, and
/// returns the child's pid. `stdio` gives the child's descriptors 0, 1, 2:
/// None keeps ours, an fd is copied there, `PTY` (-1) is the pty slave at
/// path `pty`, opened in a new session as the controlling terminal.
/// `default_signals` are set back to their default action in the child.
/// Raises OSError (errno set) when the program cannot be started; ValueError
/// naming the key for a value that cannot be in an environment (a NUL byte).
#[pyfunction]
#[pyo3(signature = (argv, inherited, secrets, *, stdio, pty = None, default_signals = Vec::new()))]
fn spawn_with_secrets(
    py: Python<'_>,
    argv: Vec<Bound<'_, PyBytes>>,
    inherited: Vec<Bound<'_, PyBytes>>,
    secrets: Vec<(String, Bound<'_, CypherCell>)>,
    stdio: (Option<i32>, Option<i32>, Option<i32>),
    pty: Option<Bound<'_, PyBytes>>,
    default_signals: Vec<i32>,
) -> PyResult<i32> {
    if argv.is_empty() {
        return Err(Error::Value("argv is empty".into()).into());
    }
    let args = argv
        .iter()
        .map(|a| c_string("an argument", a.as_bytes()))
        .collect::<PyResult<Vec<_>>>()?;
    let pty = pty
        .map(|p| c_string("the pty path", p.as_bytes()))
        .transpose()?;
    let stdio = [stdio_of(stdio.0)?, stdio_of(stdio.1)?, stdio_of(stdio.2)?];
    for (name, _) in &secrets {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(
                Error::Value(format!("{name:?} cannot be an environment variable's name")).into(),
            );
        }
    }
    for entry in &inherited {
        if entry.as_bytes().contains(&0) || !entry.as_bytes().contains(&b'=') {
            return Err(Error::Value("an inherited entry is not NAME=value".into()).into());
        }
    }

    // The values' lengths, then one block: every entry NUL-terminated.
    let mut lens = Vec::with_capacity(secrets.len());
    for (name, cell) in &secrets {
        let len = cell.get().peek_len().map_err(|e| refused(name, e))?;
        lens.push(len);
    }
    let total = inherited
        .iter()
        .map(|e| e.as_bytes().len() + 1)
        .sum::<usize>()
        + secrets
            .iter()
            .zip(&lens)
            .map(|((n, _), len)| n.len() + 1 + len + 1)
            .sum::<usize>();
    let (block, degraded) =
        SecretBuf::allocate(TierRequest::Transient, total.max(1)).map_err(Error::Lock)?;
    if let Some(cause) = degraded {
        warn_unlocked(py, &cause, Unlocked::RunEnvironment)?;
    }
    // Entry offsets; the bytes written straight into the block.
    let mut offsets = Vec::with_capacity(inherited.len() + secrets.len());
    block.fill(|dest| -> PyResult<()> {
        let mut at = 0;
        let put = |dest: &mut [u8], bytes: &[u8], at: &mut usize| {
            dest[*at..*at + bytes.len()].copy_from_slice(bytes);
            *at += bytes.len();
        };
        for entry in &inherited {
            offsets.push(at);
            put(dest, entry.as_bytes(), &mut at);
            put(dest, b"\0", &mut at);
        }
        for ((name, cell), &len) in secrets.iter().zip(&lens) {
            offsets.push(at);
            put(dest, name.as_bytes(), &mut at);
            put(dest, b"=", &mut at);
            let value = &mut dest[at..at + len];
            let copied = cell.get().peek_into(value).map_err(|e| refused(name, e))?;
            if !copied {
                return Err(
                    Error::Value(format!("secret {name} changed while it was read")).into(),
                );
            }
            if value.contains(&0) {
                return Err(Error::Value(format!(
                    "secret {name} contains a NUL byte, which an environment variable cannot hold"
                ))
                .into());
            }
            at += len;
            put(dest, b"\0", &mut at);
        }
        Ok(())
    })?;

    let arg_refs: Vec<&CStr> = args.iter().map(|a| a.as_c_str()).collect();
    let started = block.with_bytes(|bytes| {
        // Each entry was written NUL-terminated above: views into the block.
        let entries = offsets
            .iter()
            .map(|&o| CStr::from_bytes_until_nul(&bytes[o..]))
            .collect::<Result<Vec<&CStr>, _>>()
            .map_err(|_| SysError {
                call: "posix_spawnp",
                errno: libc::EINVAL,
            })?;
        spawn(&Spawn {
            file: &args[0],
            argv: &arg_refs,
            envp: &entries,
            stdio,
            pty: pty.as_deref(),
            default_signals: &default_signals,
        })
    });
    // The child has exec'd (or failed to): this copy has done its work.
    block.zeroize();
    drop(block);
    started.map_err(|e| {
        pyo3::exceptions::PyOSError::new_err((
            e.errno,
            format!("{}: {}", e.call, errno_text(e.errno)),
        ))
    })
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

fn refused(name: &str, why: crate::cell::ReadRefused) -> PyErr {
    let state = match why {
        crate::cell::ReadRefused::Wiped => "wiped",
        crate::cell::ReadRefused::Expired => "expired",
        crate::cell::ReadRefused::Burned => "burned (a volatile cell already read)",
        crate::cell::ReadRefused::Forked => "from before a fork",
    };
    Error::Value(format!("secret {name} cannot be read: it is {state}")).into()
}

/// The bytes one `pump` reads at most: a pipe's default capacity.
const CHUNK: usize = 1 << 16;

fn os_error(e: SysError) -> PyErr {
    pyo3::exceptions::PyOSError::new_err((e.errno, format!("{}: {}", e.call, errno_text(e.errno))))
}

/// One output of the child, copied masked from `source` to `sink`. The
/// bytes read land in locked memory and are zeroed once masked; what is
/// written is masked. A sink that breaks (EPIPE: our reader left; EIO: our
/// terminal hung up; or any other write error, ENOSPC say) is noted
/// (`sink_open`, `sink_errno`) and the rest is dropped: the caller closes the
/// source, so the child meets a broken pipe, and still waits for it.
#[pyclass(frozen, module = "cypher_cell._native", name = "MaskedOutput")]
pub struct MaskedOutput {
    source: RawFd,
    sink: RawFd,
    inner: Mutex<Inner>,
}

struct Inner {
    stream: Stream,
    buf: SecretBuf,
    /// The errno of the write that broke the sink; None while it works.
    sink_error: Option<i32>,
}

impl MaskedOutput {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn emit(&mut self, sink: RawFd, out: &[u8]) -> Result<(), SysError> {
        if self.sink_error.is_some() || out.is_empty() {
            return Ok(());
        }
        if let Err(e) = spawn::write_all(sink, out) {
            self.sink_error = Some(e.errno);
        }
        Ok(())
    }
}

#[pymethods]
impl MaskedOutput {
    #[new]
    fn new(py: Python<'_>, source: RawFd, sink: RawFd) -> PyResult<Self> {
        crate::cell::enable_redaction();
        let (buf, degraded) =
            SecretBuf::allocate(TierRequest::Transient, CHUNK).map_err(Error::Lock)?;
        if let Some(cause) = degraded {
            warn_unlocked(py, &cause, Unlocked::RunEnvironment)?;
        }
        Ok(MaskedOutput {
            source,
            sink,
            inner: Mutex::new(Inner {
                stream: Stream::default(),
                buf,
                sink_error: None,
            }),
        })
    }

    /// One read of `source` (blocking unless it is non-blocking), masked
    /// and written to `sink`; the bytes read, 0 at the end. Raises OSError
    /// for a failed read (EIO: a pty whose every slave is closed) or write.
    fn pump(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| {
            let mut inner = self.inner();
            let inner = &mut *inner;
            let n = inner.buf.fill(|dest| spawn::read(self.source, dest))?;
            let mut out = Vec::with_capacity(n + 64);
            inner.buf.with_bytes(|read| {
                inner
                    .stream
                    .feed(&matcher::registry(), &read[..n], &mut out)
            });
            inner.buf.zeroize();
            inner.emit(self.sink, &out)?;
            Ok(n)
        })
        .map_err(os_error)
    }

    /// True while a trailing partial match is held back.
    fn pending(&self) -> bool {
        self.inner().stream.pending()
    }

    /// After a pause: the held part goes out as `[REDACTED]` (the rest of
    /// that secret, if it follows, is swallowed).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut inner = self.inner();
            let mut out = Vec::new();
            inner.stream.flush(&mut out);
            inner.emit(self.sink, &out)
        })
        .map_err(os_error)
    }

    /// At the end of `source`: as `flush`, then forgets what was held.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut inner = self.inner();
            let mut out = Vec::new();
            inner.stream.finish(&mut out);
            inner.emit(self.sink, &out)
        })
        .map_err(os_error)
    }

    /// False once a write to `sink` failed.
    #[getter]
    fn sink_open(&self) -> bool {
        self.inner().sink_error.is_none()
    }

    /// The errno of the write to `sink` that failed (EPIPE, EIO, ENOSPC...);
    /// None while it works.
    #[getter]
    fn sink_errno(&self) -> Option<i32> {
        self.inner().sink_error
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SPAWN_PTY", PTY)?;
    m.add_class::<MaskedOutput>()?;
    m.add_function(wrap_pyfunction!(spawn_with_secrets, m)?)
}
