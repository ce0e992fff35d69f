//! `read_file_cell_at`, the native half of the `SecretsDir` provider: a
//! secret's file, opened beneath its directory without following a symlink
//! out of it, is read straight into a cell.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use pyo3::prelude::*;
use zeroize::Zeroize;

use super::cell::CypherCell;
use super::policy::{applied, Policy};
use crate::errors::{describe_io, Error};
use crate::sys::{self, SysError};

fn io_error(path: &str, what: &str, e: &std::io::Error) -> Error {
    Error::Provider(format!("{path}: cannot {what}: {}", describe_io(e)))
}

/// How a secret's file is opened: read-only; `O_NONBLOCK` so that a FIFO
/// planted in the directory cannot hang the open, `O_NOCTTY` so that a
/// terminal cannot become ours.
const READ_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;

/// The most symlinks followed for one name, as the kernel's own limit.
const MAX_LINKS: usize = 40;

fn refused(errno: i32, call: &'static str) -> SysError {
    SysError { call, errno }
}

/// Opens `name` beneath the directory `dir`, following symlinks only while
/// they stay beneath it (Kubernetes volumes are `key -> ..data/key`,
/// `..data -> ..2024_...`). One open, decided by the kernel: nothing can be
/// swapped between a check and the open. `EXDEV`: the name leads outside.
fn open_beneath(dir: RawFd, name: &CStr) -> Result<OwnedFd, SysError> {
    for _ in 0..3 {
        match sys::openat2_beneath(dir, name, READ_FLAGS) {
            // A rename elsewhere in the tree during the lookup: try again.
            Err(e) if e.errno == libc::EAGAIN => {}
            // No openat2 (Linux < 5.6), or a seccomp filter refusing it.
            Err(e) if matches!(e.errno, libc::ENOSYS | libc::EPERM | libc::E2BIG) => {
                return open_beneath_by_steps(dir, name.to_bytes())
            }
            other => return other,
        }
    }
    Err(refused(libc::EAGAIN, "openat2"))
}

/// `open_beneath` without openat2: the name is walked one component at a
/// time from `dir`, each opened with `O_NOFOLLOW` relative to the directory
/// before it, symlinks read and expanded here. A component swapped for a
/// symlink after it was checked fails to open (`ELOOP`/`ENOTDIR`) instead
/// of being followed; `..` returns to a directory already held, never above
/// `dir`; an absolute target is refused.
fn open_beneath_by_steps(dir: RawFd, name: &[u8]) -> Result<OwnedFd, SysError> {
    let parts = |path: &[u8]| -> Vec<Vec<u8>> {
        path.split(|&b| b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
            .map(<[u8]>::to_vec)
            .collect()
    };
    let mut pending: VecDeque<Vec<u8>> = parts(name).into();
    let mut entered: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        let here = entered.last().map_or(dir, AsRawFd::as_raw_fd);
        if part == b".." {
            if entered.pop().is_none() {
                return Err(refused(libc::EXDEV, "open"));
            }
            continue;
        }
        let c_part = CString::new(part).map_err(|_| refused(libc::EINVAL, "open"))?;
        match sys::readlinkat(here, &c_part) {
            Ok(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(refused(libc::ELOOP, "open"));
                }
                if target.starts_with(b"/") {
                    return Err(refused(libc::EXDEV, "open"));
                }
                for p in parts(&target).into_iter().rev() {
                    pending.push_front(p);
                }
                continue;
            }
            Err(e) if e.errno == libc::EINVAL => {} // not a symlink
            Err(e) => return Err(e),
        }
        if pending.is_empty() {
            return sys::openat(here, &c_part, READ_FLAGS | libc::O_NOFOLLOW);
        }
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        entered.push(sys::openat(here, &c_part, flags)?);
    }
    // The name ends in a directory (`.`, `..`): not a file.
    Err(refused(libc::EISDIR, "open"))
}

/// The error for a secret's file that could not be opened, naming the place
/// (`label`: the directory and key), never anything read.
fn open_error(label: &str, e: SysError) -> Error {
    let what = match e.errno {
        libc::EXDEV => {
            "a symlink leading outside the directory (or by an absolute path); refused".into()
        }
        libc::ELOOP => {
            "too many levels of symbolic links (a symlink loop), or a symlink swapped in \
                        while it was being opened"
                .into()
        }
        // A directory (walked by steps), a socket or a device without a driver.
        libc::EISDIR | libc::ENXIO => "not a regular file".into(),
        _ => format!(
            "cannot open: {}",
            describe_io(&std::io::Error::from_raw_os_error(e.errno))
        ),
    };
    Error::Provider(format!("{label}: {what}"))
}

/// Reads the file `name` beneath the directory open as `dir_fd` straight
/// into a new cell (no intermediate copy), stripping one trailing newline.
/// The file is opened once (`open_beneath`) and every check is made on that
/// descriptor: a regular file of at most `max_size` bytes. None when there
/// is no such name; any other failure is a ProviderError naming `label`.
#[pyfunction]
#[pyo3(signature = (dir_fd, name, *, label, max_size, strip_newline = true, policy = None))]
fn read_file_cell_at(
    py: Python<'_>,
    dir_fd: RawFd,
    name: &[u8],
    label: &str,
    max_size: u64,
    strip_newline: bool,
    policy: Option<PyRef<'_, Policy>>,
) -> PyResult<Option<CypherCell>> {
    let options = applied(policy.as_deref())?;
    let c_name = CString::new(name)
        .map_err(|_| Error::Value("a file name must not contain NUL bytes".into()))?;
    let fd = match open_beneath(dir_fd, &c_name) {
        Ok(fd) => fd,
        // A symlink to nothing is there but unreadable; a name the directory
        // cannot hold (too long) or does not hold is simply absent.
        Err(e) if e.errno == libc::ENOENT && sys::readlinkat(dir_fd, &c_name).is_ok() => {
            return Err(Error::Provider(format!("{label}: a symlink to nothing")).into())
        }
        Err(e) if matches!(e.errno, libc::ENOENT | libc::ENAMETOOLONG) => return Ok(None),
        Err(e) => return Err(open_error(label, e).into()),
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| io_error(label, "stat", &e))?;
    if !meta.is_file() {
        return Err(Error::Provider(format!("{label}: not a regular file")).into());
    }
    let size = meta.len();
    if size > max_size {
        return Err(Error::Provider(format!(
            "{label}: {size} bytes is over the {max_size}-byte limit for one secret"
        ))
        .into());
    }
    let mut len =
        usize::try_from(size).map_err(|_| Error::Provider(format!("{label}: too large")))?;
    if strip_newline && len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, size - 1)
            .map_err(|e| io_error(label, "read", &e))?;
        if last[0] == b'\n' {
            len -= 1;
        }
        last.zeroize();
    }
    let mut reader = &file;
    let cell = CypherCell::create(py, options, len, |dest| {
        reader
            .read_exact(dest)
            .map_err(|e| io_error(label, "read", &e))
    })?;
    // The file must not have grown past what we sized the cell for.
    let mut extra = [0u8; 2];
    let more = reader
        .read(&mut extra)
        .map_err(|e| io_error(label, "read", &e))?;
    let grew = more > 1 || (more == 1 && (extra[0] != b'\n' || len as u64 == size));
    extra.zeroize();
    if grew {
        cell.wipe_now();
        return Err(Error::Provider(format!("{label}: changed while being read")).into());
    }
    Ok(Some(cell))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_file_cell_at, m)?)
}
