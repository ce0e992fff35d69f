//! `DotenvFile`, the native half of the `EnvFile` provider: the file is read
//! with `read(2)` straight into locked memory, parsed there by
//! [`crate::dotenv`], and its values leave only into cells. Key names, line
//! numbers and problems are public; messages never quote the file.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::ops::Range;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use zeroize::Zeroizing;

use super::cell::CypherCell;
use super::entry::Entry;
use super::policy::{applied, Applied, Policy};
use crate::dotenv::{self, KeyIndex, ValueBytes};
use crate::errors::{describe_io, type_name, warn_unlocked, Error, Unlocked};
use crate::memory::{self, AllocError, SecretBuf, TierRequest};
use crate::sys::fork_generation;

/// The first buffer for a file whose size is unknown in advance (a pipe).
const PIPE_CHUNK: usize = 64 << 10;
/// How often a wait for a FIFO's writer runs Python's signal handlers.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The file's bytes and the values built from them, all in locked memory.
struct Buffers {
    file: SecretBuf,
    /// Where the parsed text lies in `file` (after a BOM that the
    /// `utf-8-sig` codec drops; newlines normalized in place). A BOM left at
    /// its start is python-dotenv's to drop: `dotenv::parse` skips it.
    text: Range<usize>,
    /// Values that escapes or `${...}` changed.
    built: Option<SecretBuf>,
}

impl Buffers {
    fn copy(&self, at: &ValueBytes, dest: &mut [u8]) {
        match at {
            ValueBytes::Verbatim(r) => {
                let r = self.text.start + r.start..self.text.start + r.end;
                self.file.with_bytes(|b| dest.copy_from_slice(&b[r]));
            }
            ValueBytes::Composed(r) => match &self.built {
                Some(built) => built.with_bytes(|b| dest.copy_from_slice(&b[r.clone()])),
                None => debug_assert!(r.is_empty()),
            },
        }
    }
}

struct KeyInfo {
    /// Where the name lies in `DotenvFile::names`.
    name: Range<usize>,
    /// The line whose value wins (the last binding).
    line: usize,
    value: Option<ValueBytes>,
    /// A key the file means to define (`dotenv::Parsed::is_key`): the only
    /// kind that is loaded, and whose name is handed to Python by anything
    /// but `keys()`.
    is_key: bool,
}

/// A `.env` file read into locked memory. `outline()`, `line()`,
/// `has_value()`, `problems()`, `duplicates()` and
/// `undefined_references()` tell what it holds without any value or any
/// text that is not a key's name; `keys()` gives every name as
/// python-dotenv reads it, lines of unquoted values included (for
/// comparisons: never print them). `cell(key)` copies one value into a new
/// `CypherCell`. `close()` (also on drop) zeroes and frees the bytes; the
/// names and lines stay readable.
#[pyclass(frozen, module = "cypher_cell._native")]
pub struct DotenvFile {
    path: String,
    mode: u32,
    /// Every key's name (ranges in `KeyInfo`); zeroed when dropped.
    names: Zeroizing<String>,
    keys: Vec<KeyInfo>,
    index: KeyIndex,
    problems: Vec<(usize, String)>,
    nul_line: Option<usize>,
    /// Of keys (`KeyInfo::is_key`) only.
    duplicates: Vec<(Box<str>, Vec<usize>)>,
    /// Of keys only; the name is None where it is not shown.
    undefined: Vec<(Box<str>, usize, Option<String>)>,
    generation: u64,
    buffers: Mutex<Option<Buffers>>,
}

struct FileBytes {
    buf: SecretBuf,
    len: usize,
    mode: u32,
    degraded: Option<AllocError>,
    /// The memory for this file's working buffers (see `working_memory`).
    requested: TierRequest,
}

/// The memory for a file's working buffers (its bytes, and the values that
/// escapes or `${...}` changed). A regular file's: locked, not secretmem.
/// The kernel keeps that file's bytes in its page cache (and the disk holds
/// them), so hiding this copy from the kernel hides nothing, while
/// secretmem's cost, a TLB flush on every CPU for each page it takes out of
/// the kernel's direct map, was 40% of the parse. A pipe's or FIFO's
/// (`<(sops -d .env)`): the strongest tier, as for cells, since once read
/// this buffer is the only plaintext copy. Cells always get the strongest.
fn working_memory(meta: &std::fs::Metadata) -> TierRequest {
    if meta.is_file() {
        TierRequest::Transient
    } else {
        TierRequest::Auto
    }
}

fn allocate(len: usize, requested: TierRequest) -> Result<(SecretBuf, Option<AllocError>), Error> {
    SecretBuf::allocate(requested, len).map_err(Error::Lock)
}

fn open_error(path: &Path, shown: &str, e: &std::io::Error) -> Error {
    let dangling = || {
        path.symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
    };
    let why = match e.kind() {
        ErrorKind::NotFound if dangling() => "a symbolic link to a missing file".to_string(),
        _ => describe_io(e),
    };
    Error::Provider(format!("env-file {shown}: cannot open: {why}"))
}

fn too_large(shown: &str, size: Option<u64>, max: usize) -> Error {
    let size = size.map_or("the file".to_string(), |s| format!("{s} bytes"));
    Error::Provider(format!(
        "env-file {shown}: {size} is over max_size ({max} bytes)"
    ))
}

/// Runs Python's signal handlers (a Ctrl-C raises `KeyboardInterrupt`
/// here). Called without the GIL: it takes it for the call.
fn check_signals() -> Result<(), Error> {
    Python::attach(|py| py.check_signals()).map_err(Error::Python)
}

/// One `read(2)`. A signal interrupts a read that waits (a FIFO's writer
/// holding it open without writing): CPython's handlers are installed
/// without `SA_RESTART`, so the call returns `EINTR`; then Python's
/// handlers run, and an exception they raise ends the read.
fn read_some(mut file: &File, into: &mut [u8], shown: &str) -> Result<usize, Error> {
    loop {
        match crate::sys::fault::read_check().and_then(|()| file.read(into)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => check_signals()?,
            Err(e) => {
                return Err(Error::Provider(format!(
                    "env-file {shown}: cannot read: {e}"
                )))
            }
            Ok(n) => return Ok(n),
        }
    }
}

fn open_for_reading(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
}

/// Opens `path`. A FIFO's open blocks until a writer opens it, as for
/// python-dotenv (`<(sops -d .env)`), and std's `open` retries `EINTR`
/// itself, so no signal could end that wait: it is done on a thread of its
/// own while this one runs Python's signal handlers every `SIGNAL_POLL`. If
/// they raise, that thread is left waiting; it closes the FIFO and ends as
/// soon as a writer comes. Anything else is opened here at once.
fn open_file(path: &Path, shown: &str) -> Result<File, Error> {
    let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    if !fifo {
        return open_for_reading(path).map_err(|e| open_error(path, shown, &e));
    }
    let (sender, receiver) = mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("cypher_cell-fifo-open".into())
        .spawn(move || {
            // Nobody receives once the caller gave up: the file then drops.
            let _ = sender.send(open_for_reading(&owned));
        })
        .map_err(|e| Error::Provider(format!("env-file {shown}: cannot open: {e}")))?;
    loop {
        match receiver.recv_timeout(SIGNAL_POLL) {
            Ok(opened) => return opened.map_err(|e| open_error(path, shown, &e)),
            Err(RecvTimeoutError::Timeout) => check_signals()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Provider(format!(
                    "env-file {shown}: cannot open: the opening thread ended"
                )))
            }
        }
    }
}

/// Reads the whole file into locked memory, growing the buffer (a fresh
/// one each time; the old one is zeroed as it drops) only for files whose
/// size is not known in advance or that grow while being read.
fn read_file(path: &Path, shown: &str, max: usize) -> Result<FileBytes, Error> {
    // Blocking open: python-dotenv reads FIFOs too (`<(sops -d .env)`).
    let file = open_file(path, shown)?;
    let meta = file
        .metadata()
        .map_err(|e| Error::Provider(format!("env-file {shown}: cannot stat: {e}")))?;
    if meta.is_dir() {
        return Err(Error::Provider(format!(
            "env-file {shown}: is a directory, not a file"
        )));
    }
    let limit = max.saturating_add(1);
    let mut capacity = if meta.is_file() {
        if meta.len() > max as u64 {
            return Err(too_large(shown, Some(meta.len()), max));
        }
        // One spare byte: filling it means the file grew after the stat.
        meta.len() as usize + 1
    } else {
        PIPE_CHUNK.min(limit)
    };
    let requested = working_memory(&meta);
    let (mut buf, mut degraded) = allocate(capacity, requested)?;
    let mut len = 0;
    loop {
        if len == capacity {
            if capacity > max {
                return Err(too_large(shown, None, max));
            }
            capacity = capacity.saturating_mul(2).min(limit);
            let (bigger, d) = allocate(capacity, requested)?;
            degraded = degraded.or(d);
            bigger.fill(|to| buf.with_bytes(|from| to[..len].copy_from_slice(&from[..len])));
            buf = bigger;
        }
        let n = buf.fill(|to| read_some(&file, &mut to[len..], shown))?;
        if n == 0 {
            break;
        }
        len += n;
    }
    Ok(FileBytes {
        buf,
        len,
        mode: meta.mode(),
        degraded,
        requested,
    })
}

/// True for `utf-8-sig` (its codec drops a leading BOM, and python-dotenv
/// then drops a second one), false for `utf-8`; any other encoding is
/// refused by name. The one place the rule lives: `EnvFile` asks it
/// through `dotenv_encoding` when it is made.
fn strips_bom(py: Python<'_>, encoding: &str) -> PyResult<bool> {
    let name: Option<String> = py
        .import("codecs")?
        .call_method1("lookup", (encoding,))
        .and_then(|info| info.getattr("name")?.extract())
        .ok();
    match name.as_deref() {
        Some("utf-8") => Ok(false),
        Some("utf-8-sig") => Ok(true),
        _ => Err(Error::Value(format!(
            "encoding {encoding:?} is not supported: .env files are read as 'utf-8' or 'utf-8-sig'"
        ))
        .into()),
    }
}

/// An environment variable's value for `${NAME}`. Names that `os.environ`
/// cannot hold are absent (glibc's getenv would match `A=B` against an
/// entry `A=B=...`).
fn env_value(name: &str) -> Option<Zeroizing<Vec<u8>>> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    std::env::var_os(name).map(|v| Zeroizing::new(v.into_vec()))
}

fn syntax(shown: &str, line: usize, what: &str) -> Error {
    Error::DotenvSyntax {
        message: format!("env-file {shown}:{line}: {what}"),
        path: shown.to_string(),
        line,
    }
}

impl DotenvFile {
    fn parse(
        py: Python<'_>,
        read: FileBytes,
        shown: String,
        strip_bom: bool,
        interpolate: bool,
        max: usize,
    ) -> PyResult<Self> {
        let FileBytes {
            buf,
            len,
            mode,
            requested,
            ..
        } = read;
        let text = buf.fill(|bytes| {
            let len = dotenv::normalize_newlines(&mut bytes[..len]);
            let start = if strip_bom && bytes[..len].starts_with(dotenv::BOM) {
                dotenv::BOM.len()
            } else {
                0
            };
            start..len
        });
        let mut degraded = None;
        // The environment is read with the GIL held, so no Python thread
        // changes it (os.putenv) meanwhile.
        let parsed = buf.with_bytes(|bytes| {
            let text = dotenv::check_text(&bytes[text.clone()])
                .map_err(|e| syntax(&shown, e.line, "not valid UTF-8"))?;
            let nul_line = dotenv::first_nul_line(text.as_bytes());
            let parsed = dotenv::parse(text);
            let is_key: Vec<bool> = (0..parsed.keys.len())
                .map(|k| parsed.is_key(text, k))
                .collect();
            let mut env = env_value;
            let limit = dotenv::expansion_limit(text.len(), max);
            let res =
                dotenv::resolve(text, &parsed, interpolate, limit, &mut env).map_err(|t| {
                    let line = parsed.bindings[t.binding].line;
                    let what = format!(
                    "values would grow over {limit} bytes once ${{...}} references are expanded \
                     (the cap: 1024 times the file's size, at least max_size, at most 1 GiB \
                     unless max_size is more)"
                );
                    syntax(&shown, line, &what)
                })?;
            let built = if res.built_len > 0 {
                let (built, d) = allocate(res.built_len, requested)?;
                degraded = d;
                built.fill(|out| dotenv::build(text.as_bytes(), &res, out));
                Some(built)
            } else {
                None
            };
            // `res` (and the environment values it read) is dropped, zeroed,
            // when this closure returns.
            Ok::<_, Error>((parsed, is_key, nul_line, res.values, res.undefined, built))
        });
        let (parsed, is_key, nul_line, values, undefined, built) = parsed?;
        if let Some(cause) = &degraded {
            warn_unlocked(py, cause, Unlocked::EnvFile(&shown))?;
        }
        let bindings = &parsed.bindings;
        // Only keys' names are copied out of the zeroed names buffer.
        let duplicates = parsed
            .duplicates()
            .into_iter()
            .filter(|&(k, _)| is_key[k])
            .map(|(k, lines)| (parsed.name(k).into(), lines))
            .collect();
        let undefined = undefined
            .into_iter()
            .filter(|u| is_key[bindings[u.binding].key])
            .map(|u| {
                let b = &bindings[u.binding];
                (parsed.name(b.key).into(), b.line, u.name)
            })
            .collect();
        let problems = parsed
            .skipped
            .iter()
            .map(|s| (s.line, s.problem.message().into_owned()))
            .collect();
        // The names move, not copied.
        let keys = parsed
            .keys
            .into_iter()
            .zip(is_key)
            .map(|(k, is_key)| KeyInfo {
                name: k.name,
                line: bindings[k.last].line,
                value: values[k.last].clone(),
                is_key,
            })
            .collect();
        Ok(DotenvFile {
            path: shown,
            mode,
            keys,
            index: parsed.index,
            names: parsed.names,
            problems,
            nul_line,
            duplicates,
            undefined,
            generation: fork_generation(),
            buffers: Mutex::new(Some(Buffers {
                file: buf,
                text,
                built,
            })),
        })
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name, |k| self.name(&self.keys[k]))
    }

    fn name(&self, key: &KeyInfo) -> &str {
        &self.names[key.name.clone()]
    }

    /// The value `load` gives for a key: one it has, if it is a key.
    fn loadable_value<'a>(&'a self, key: &'a KeyInfo) -> Option<&'a ValueBytes> {
        key.value.as_ref().filter(|_| key.is_key)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Buffers>> {
        // Nothing panics while holding it; the data stays valid regardless.
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self, key: &str) -> PyResult<&KeyInfo> {
        match self.position(key) {
            Some(i) => Ok(&self.keys[i]),
            None => Err(PyKeyError::new_err(key.to_string())),
        }
    }

    fn value_of(&self, key: &str) -> PyResult<&ValueBytes> {
        let info = self.info(key)?;
        info.value.as_ref().ok_or_else(|| {
            // Not naming the key: a line without '=' is often a line of an
            // unquoted multi-line value (a PEM key), so its "name" is secret.
            Error::Value(format!(
                "env-file {}:{}: that statement has no '=' and so no value",
                self.path, info.line
            ))
            .into()
        })
    }

    fn check_readable(&self) -> PyResult<()> {
        if self.generation != fork_generation() {
            // A child of fork: the pages are zeroed or not mapped at all.
            return Err(Error::Provider(format!(
                "env-file {}: read before this process forked; children do not inherit secrets, \
                 read the file again",
                self.path
            ))
            .into());
        }
        if self.closed() {
            return Err(self.closed_error().into());
        }
        Ok(())
    }

    fn make_cell(&self, py: Python<'_>, at: &ValueBytes, options: Applied) -> PyResult<CypherCell> {
        CypherCell::create(py, options, at.len(), |dest| {
            let buffers = self.lock();
            let buffers = buffers.as_ref().ok_or_else(|| self.closed_error())?;
            buffers.copy(at, dest);
            Ok::<(), Error>(())
        })
    }

    fn closed_error(&self) -> Error {
        Error::Value(format!(
            "env-file {}: closed; its values have been wiped",
            self.path
        ))
    }
}

#[pymethods]
impl DotenvFile {
    // max_size: 64 MiB, written out so that the text signature shows it.
    #[new]
    #[pyo3(signature = (path, *, encoding = "utf-8", interpolate = true, max_size = 67_108_864))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        encoding: &str,
        interpolate: bool,
        max_size: i64,
    ) -> PyResult<Self> {
        let strip_bom = strips_bom(py, encoding)?;
        let max = usize::try_from(max_size).map_err(|_| {
            Error::Value(format!("max_size must be 0 or more bytes, got {max_size}"))
        })?;
        let shown = path.display().to_string();
        // The open may block (a FIFO waiting for its writer): let other
        // Python threads run meanwhile.
        let read = py.detach(|| read_file(&path, &shown, max))?;
        if let Some(cause) = &read.degraded {
            warn_unlocked(py, cause, Unlocked::EnvFile(&shown))?;
        }
        Self::parse(py, read, shown, strip_bom, interpolate, max)
    }

    /// The path as given.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// `st_mode` of the file that was read (fstat of the open descriptor).
    #[getter]
    fn mode(&self) -> u32 {
        self.mode
    }

    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_none()
    }

    /// Every key, once, in the order of first appearance (duplicates keep
    /// their first position and take their last value, as a Python dict),
    /// as python-dotenv reads them: a "key" may be a line of an unquoted
    /// multi-line value. For comparisons; never print these.
    fn keys(&self) -> Vec<&str> {
        self.keys.iter().map(|k| self.name(k)).collect()
    }

    /// `(name, line, has_value)` for every key in the order of `keys()`,
    /// the name None unless it is one that `load` gives (a value, a plain
    /// name, not a line of base64): the others are lines that may belong to
    /// an unquoted multi-line value, told by their line alone. No text of
    /// such a line becomes a Python object.
    fn outline(&self) -> Vec<(Option<&str>, usize, bool)> {
        self.keys
            .iter()
            .map(|k| (k.is_key.then(|| self.name(k)), k.line, k.value.is_some()))
            .collect()
    }

    /// The first line with a NUL byte, if any. python-dotenv reads NUL as a
    /// character (so does this parser); `EnvFile(strict=True)` refuses it.
    #[getter]
    fn nul_line(&self) -> Option<usize> {
        self.nul_line
    }

    /// The line of the binding whose value the key has (the last one).
    fn line(&self, key: &str) -> PyResult<usize> {
        Ok(self.info(key)?.line)
    }

    /// False for a key written without `=` (None in python-dotenv).
    fn has_value(&self, key: &str) -> PyResult<bool> {
        Ok(self.info(key)?.value.is_some())
    }

    /// A new cell holding the key's value.
    #[pyo3(signature = (key, *, policy = None))]
    fn cell(
        &self,
        py: Python<'_>,
        key: &str,
        policy: Option<PyRef<'_, Policy>>,
    ) -> PyResult<CypherCell> {
        let options = applied(policy.as_deref())?;
        let at = self.value_of(key)?;
        self.check_readable()?;
        self.make_cell(py, at, options)
    }

    /// What `load` can give: every key that has a value, a plain name
    /// (`is_plain_name`) and is not what a line of base64 parses as, in the
    /// order of `keys()`; and the lines of the keys that have a value but
    /// are not such keys (never loaded: such a "key" is more likely a line
    /// of an unquoted multi-line value).
    fn loadable<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyTuple>, Vec<usize>)> {
        let mut plain = Vec::with_capacity(self.keys.len());
        let mut odd = Vec::new();
        for k in self.keys.iter().filter(|k| k.value.is_some()) {
            match self.loadable_value(k) {
                Some(_) => plain.push(self.name(k)),
                None => odd.push(k.line),
            }
        }
        Ok((PyTuple::new(py, plain)?, odd))
    }

    /// `{key: Entry}` for those of `keys` that `loadable()` lists, in the
    /// order of `keys`, every cell with the same policy; the other keys are
    /// left out. Origins read `env-file PATH:LINE`. All or nothing: if one
    /// cell fails, those already made are wiped.
    #[pyo3(signature = (keys, *, policy = None))]
    fn load<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        policy: Option<PyRef<'py, Policy>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let options = applied(policy.as_deref())?;
        self.check_readable()?;
        let prefix: Arc<str> = format!("env-file {}:", self.path).into();
        // The keys first (iterating them may run Python code), then the
        // pool readied for their sizes at once, then the cells.
        let mut wanted: Vec<(Bound<'py, PyAny>, &KeyInfo, &ValueBytes)> = Vec::new();
        // Keys usually come in file order (as `loadable()` lists them): the
        // key after the last one found is compared before hashing.
        let mut next = 0;
        for key in keys.try_iter()? {
            let key = key?;
            let name = key
                .cast::<PyString>()
                .map_err(|_| Error::Type(format!("keys must be str, not {}", type_name(&key))))?;
            // A str that is not valid UTF-8 (a lone surrogate) is no key here.
            let Ok(name) = name.to_str() else { continue };
            let found = match self.keys.get(next) {
                Some(k) if self.name(k) == name => Some(next),
                _ => self.position(name),
            };
            let Some(i) = found else { continue };
            next = i + 1;
            let info = &self.keys[i];
            if let Some(at) = self.loadable_value(info) {
                wanted.push((key, info, at));
            }
        }
        memory::reserve(options.requested, wanted.iter().map(|(_, _, at)| at.len()));
        let mut made: Vec<(Bound<'py, PyAny>, Bound<'py, Entry>)> =
            Vec::with_capacity(wanted.len());
        let filled = (|| {
            for (key, info, at) in wanted {
                let cell = Bound::new(py, self.make_cell(py, at, options)?)?;
                made.push((key, Entry::at_line(cell, &prefix, info.line)?));
            }
            // The dict is filled in a pass of its own: with 100,000 keys its
            // tables stay in the CPU's caches instead of competing with the
            // cells' memory (measured: the load of 100,000 keys, 92 -> 76 ms).
            let out = PyDict::new(py);
            for (key, loaded) in &made {
                out.set_item(key, loaded)?;
            }
            Ok::<_, PyErr>(out)
        })();
        filled.inspect_err(|_| {
            for (_, loaded) in &made {
                loaded.get().wipe();
            }
            memory::release_unused();
        })
    }

    /// `(line, message)` for each statement that was skipped, as
    /// python-dotenv skips (and logs) it, and for each unquoted PEM block.
    /// Messages never quote the file.
    fn problems(&self) -> Vec<(usize, &str)> {
        self.problems
            .iter()
            .map(|(line, what)| (*line, what.as_str()))
            .collect()
    }

    /// `(key, lines)` for each key bound more than once (keys that `load`
    /// gives only; see `outline()`).
    fn duplicates(&self) -> Vec<(&str, Vec<usize>)> {
        self.duplicates
            .iter()
            .map(|(k, lines)| (&**k, lines.clone()))
            .collect()
    }

    /// `(key, line, name)` for each `${name}` without a default that
    /// neither the file (before it) nor the environment defines; it expands
    /// to nothing. Keys that `load` gives only. The name is None unless it
    /// is an identifier in a value made of references alone: in any other
    /// value a `${...}` may as well be part of a secret.
    fn undefined_references(&self) -> Vec<(&str, usize, Option<&str>)> {
        self.undefined
            .iter()
            .map(|(k, line, name)| (&**k, *line, name.as_deref()))
            .collect()
    }

    /// Zeroes and frees the file's bytes and values. Safe to call again.
    fn close(&self) {
        let buffers = self.lock().take();
        drop(buffers);
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!(
            "<DotenvFile {:?} {} keys, {state}>",
            self.path,
            self.keys.len()
        )
    }
}

/// Whether `name` looks like a key's name (see `dotenv::is_plain_name`).
#[pyfunction]
fn is_plain_name(name: &str) -> bool {
    dotenv::is_plain_name(name)
}

/// The codec name `DotenvFile` reads with for `encoding` (`"utf-8"` or
/// `"utf-8-sig"`, whatever alias was given); ValueError for any other, so
/// `EnvFile(encoding=...)` fails when it is made, not when first read.
#[pyfunction]
fn dotenv_encoding(py: Python<'_>, encoding: &str) -> PyResult<&'static str> {
    Ok(if strips_bom(py, encoding)? {
        "utf-8-sig"
    } else {
        "utf-8"
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DotenvFile>()?;
    m.add_function(wrap_pyfunction!(dotenv_encoding, m)?)?;
    m.add_function(wrap_pyfunction!(is_plain_name, m)?)
}
