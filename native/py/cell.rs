//! `CypherCell`, the Python face of a `cell::Cell`: argument checking (before
//! any memory is allocated), comparison in constant time, masking, and the
//! refusals (pickle, copy, `repr`) that keep the secret in its cell.

use std::sync::Arc;

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyInt, PyMemoryView, PyString, PyType};

use super::policy::{Applied, Policy};
use crate::cell::{Cell, CreateError, Status};
use crate::errors::{type_name, warn_unlocked, Error, Unlocked};
use crate::memory;
use crate::pyffi::export::{ExposedCell, Exposure};

const REDACTED: &str = "[REDACTED]";

/// The bytes of a constructor argument, borrowed without copying.
enum CellInput<'py> {
    Text(Bound<'py, PyString>),
    Buffer(PyBuffer<u8>),
}

/// The UTF-8 bytes of a `str` secret. A `str` with a lone surrogate has none:
/// CPython's UnicodeEncodeError would carry the whole string in `.object`,
/// so it is replaced by an error that carries nothing.
fn utf8_of<'a>(text: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    text.to_str().map_err(|_| {
        Error::Value(
            "a str secret must be valid Unicode text (it holds a lone surrogate); pass bytes instead".into(),
        )
        .into()
    })
}

impl CellInput<'_> {
    fn len(&self) -> PyResult<usize> {
        match self {
            CellInput::Text(s) => Ok(utf8_of(s)?.len()),
            CellInput::Buffer(b) => Ok(b.item_count()),
        }
    }

    fn copy_into(&self, py: Python<'_>, dest: &mut [u8]) -> PyResult<()> {
        match self {
            CellInput::Text(s) => {
                dest.copy_from_slice(utf8_of(s)?.as_bytes());
                Ok(())
            }
            CellInput::Buffer(b) => b.copy_to_slice(py, dest),
        }
    }
}

fn cell_input<'py>(data: &Bound<'py, PyAny>) -> Result<CellInput<'py>, Error> {
    if let Ok(text) = data.cast::<PyString>() {
        return Ok(CellInput::Text(text.clone()));
    }
    if let Ok(buf) = PyBuffer::<u8>::get(data) {
        return Ok(CellInput::Buffer(buf));
    }
    // Any other buffer (array('I'), a C-contiguous numpy array, ...): view its
    // raw bytes. Objects that are not buffers at all fail here.
    let raw = PyMemoryView::from(data)
        .and_then(|mv| mv.call_method1("cast", ("B",)))
        .map_err(|_| {
            Error::Type(format!(
                "CypherCell() takes bytes, bytearray, memoryview, another buffer or str, not {}",
                type_name(data)
            ))
        })?;
    Ok(CellInput::Buffer(PyBuffer::<u8>::get(&raw)?))
}

/// Compares without branching on the bytes' values (lengths may differ
/// observably: that is not a secret here, as with `hmac.compare_digest`).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `reveal_masked`'s `suffix_len`: an int of 0 or more. Any int counts,
/// however large (it masks everything), and none is printed in full.
struct SuffixLen(usize);

impl<'a, 'py> FromPyObject<'a, 'py> for SuffixLen {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
            return Err(Error::Type(format!(
                "suffix_len must be an int, not {}",
                type_name(&obj)
            ))
            .into());
        }
        match obj.extract::<i64>() {
            Ok(n) => usize::try_from(n)
                .map(SuffixLen)
                .map_err(|_| Error::Value(format!("suffix_len must be 0 or more, got {n}")).into()),
            Err(_) if obj.gt(0)? => Ok(SuffixLen(usize::MAX)),
            Err(_) => Err(Error::Value(
                "suffix_len must be 0 or more, got a negative int beyond 64 bits".into(),
            )
            .into()),
        }
    }
}

/// A secret held in locked, zeroizing memory. Printing it shows `[REDACTED]`.
#[pyclass(frozen, weakref, module = "cypher_cell", name = "CypherCell")]
pub struct CypherCell {
    cell: Arc<Cell>,
    ttl_sec: Option<f64>,
}

// Final, and holds no Python object: bulk-made cells are untracked.
impl crate::pyffi::pygc::Acyclic for CypherCell {}

/// A cell as its `Exposure` sees it.
struct ExposableCell(Arc<Cell>);

impl ExposedCell for ExposableCell {
    fn open(&self) -> PyResult<Arc<memory::SecretBuf>> {
        Ok(self.0.open_exposure().map_err(Error::from)?)
    }
    fn close(&self) {
        self.0.close_exposure();
    }
}

impl CypherCell {
    /// Allocates `len` bytes and lets `fill` write the secret straight into
    /// the guarded memory; on error nothing is kept (the bytes are zeroed).
    /// Every cell, whichever provider makes it, is made here.
    pub(crate) fn create<E: Into<PyErr>>(
        py: Python<'_>,
        options: Applied,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> PyResult<CypherCell> {
        let created = Cell::create(
            len,
            options.requested,
            options.volatile,
            options.deadline.map(|d| d.0),
            fill,
        )
        .map_err(|e| match e {
            CreateError::Alloc(a) => Error::Lock(a),
            CreateError::Fill(p) => Error::Python(p.into()),
            CreateError::Reaper(io) => Error::Reaper(io),
        })?;
        if let Some(cause) = created.degraded {
            warn_unlocked(py, &cause, Unlocked::Cell)?;
        }
        Ok(CypherCell {
            cell: created.cell,
            ttl_sec: options.deadline.map(|d| d.1),
        })
    }

    /// The secret's length (not a read: a volatile cell is not burned).
    pub(crate) fn peek_len(&self) -> Result<usize, crate::cell::ReadRefused> {
        self.cell.peek(|b| b.len())
    }

    /// Copies the secret into `dest`, guarded memory of the caller's, as a
    /// peek: a volatile cell stays live (and so stays masked: `cypher-cell
    /// run` copies each value once, into its child's environment, and wipes
    /// them all when the child ends). False, nothing copied, when the length
    /// differs.
    pub(crate) fn peek_into(&self, dest: &mut [u8]) -> Result<bool, crate::cell::ReadRefused> {
        self.cell.peek(|b| {
            let same = b.len() == dest.len();
            if same {
                dest.copy_from_slice(b);
            }
            same
        })
    }

    /// Wipes from Rust (a provider that must discard a cell it made).
    pub(crate) fn wipe_now(&self) {
        self.cell.wipe();
    }

    /// The cell itself, for Rust code that reads it without the GIL (Vault's
    /// token) or moves its deadline (a renewed lease).
    pub(crate) fn inner(&self) -> &Arc<Cell> {
        &self.cell
    }

    fn compare(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
        if let Ok(other) = other.cast::<CypherCell>() {
            let other = &other.get().cell;
            if Arc::ptr_eq(&self.cell, other) {
                return Ok(Some(self.cell.peek(|_| true).map_err(Error::from)?));
            }
            // Lock the two cells in address order so `a == b` racing `b == a`
            // cannot deadlock.
            let (first, second) = if Arc::as_ptr(&self.cell) < Arc::as_ptr(other) {
                (&self.cell, other)
            } else {
                (other, &self.cell)
            };
            let eq = first
                .peek(|a| second.peek(|b| constant_time_eq(a, b)))
                .and_then(|r| r)
                .map_err(Error::from)?;
            return Ok(Some(eq));
        }
        if let Ok(bytes) = other.cast::<PyBytes>() {
            let eq = self
                .cell
                .peek(|a| constant_time_eq(a, bytes.as_bytes()))
                .map_err(Error::from)?;
            return Ok(Some(eq));
        }
        if let Ok(text) = other.cast::<PyString>() {
            let text = utf8_of(text)?;
            let eq = self
                .cell
                .peek(|a| constant_time_eq(a, text.as_bytes()))
                .map_err(Error::from)?;
            return Ok(Some(eq));
        }
        if other.is_instance_of::<PyByteArray>() || other.is_instance_of::<PyMemoryView>() {
            let buf = PyBuffer::<u8>::get(other)?;
            let mut theirs = zeroize::Zeroizing::new(vec![0u8; buf.item_count()]);
            buf.copy_to_slice(py, &mut theirs)?;
            let eq = self
                .cell
                .peek(|a| constant_time_eq(a, &theirs))
                .map_err(Error::from)?;
            return Ok(Some(eq));
        }
        Ok(None)
    }
}

#[pymethods]
impl CypherCell {
    #[new]
    #[pyo3(signature = (data, *, volatile = false, ttl_sec = None, wipe_source = false, protection = "auto", policy = None))]
    fn new(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        volatile: bool,
        ttl_sec: Option<&Bound<'_, PyAny>>,
        wipe_source: bool,
        protection: &str,
        policy: Option<PyRef<'_, Policy>>,
    ) -> PyResult<Self> {
        let options = match policy {
            None => Policy::check(py, ttl_sec, volatile, protection, "")?.apply()?,
            Some(_)
                if volatile || ttl_sec.is_some_and(|t| !t.is_none()) || protection != "auto" =>
            {
                return Err(Error::Type(
                    "give policy= or volatile/ttl_sec/protection, not both".into(),
                )
                .into())
            }
            Some(p) => p.apply()?,
        };
        let input = cell_input(data)?;
        if wipe_source {
            match &input {
                CellInput::Buffer(b) if !b.readonly() => {}
                _ => {
                    return Err(Error::Type(format!(
                        "wipe_source=True needs a writable buffer such as a bytearray; {} cannot be wiped",
                        type_name(data)
                    ))
                    .into())
                }
            }
        }
        let len = input.len()?;
        let cell = Self::create(py, options, len, |dest| input.copy_into(py, dest))?;
        if wipe_source {
            if let CellInput::Buffer(b) = &input {
                let zeros = vec![0u8; len];
                b.copy_from_slice(py, &zeros)?;
            }
        }
        Ok(cell)
    }

    /// The secret as `bytes`. A copy Python cannot wipe: prefer `expose()`.
    fn reveal<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(self
            .cell
            .read(|b| PyBytes::new(py, b))
            .map_err(Error::from)?)
    }

    /// `*` for every character but the last `suffix_len`; everything is
    /// masked when `suffix_len` is not shorter than the secret.
    #[pyo3(signature = (suffix_len = SuffixLen(4)), text_signature = "($self, suffix_len=4)")]
    fn reveal_masked(&self, suffix_len: SuffixLen) -> PyResult<String> {
        Ok(self
            .cell
            .peek(|b| mask(b, suffix_len.0))
            .map_err(Error::from)?)
    }

    /// A context manager yielding a read-only memoryview of the secret in
    /// place. Burns a volatile cell when the block ends.
    fn expose(&self) -> PyResult<Exposure> {
        // Refuse at once for a cell that can no longer be read; the volatile
        // burn and the claim on the bytes happen when the block is entered.
        self.cell.peek(|_| ()).map_err(Error::from)?;
        Ok(Exposure::new(Arc::new(ExposableCell(self.cell.clone()))))
    }

    /// Zeroes and frees the secret now. Safe to call more than once.
    fn wipe(&self) {
        self.cell.wipe();
    }

    #[getter]
    fn wiped(&self) -> bool {
        self.cell.status() != Status::Live
    }

    /// The tier achieved: "secretmem", "locked" or "unlocked".
    #[getter]
    fn protection(&self) -> &'static str {
        self.cell.tier().name()
    }

    #[getter]
    fn volatile(&self) -> bool {
        self.cell.is_volatile()
    }

    #[getter]
    fn ttl_sec(&self) -> Option<f64> {
        self.ttl_sec
    }

    /// Seconds until the cell expires (None: no deadline, or no longer
    /// live). A renewed Vault lease moves it.
    #[getter]
    fn expires_in(&self) -> Option<f64> {
        let at = self.cell.deadline()?;
        Some(
            at.saturating_duration_since(std::time::Instant::now())
                .as_secs_f64(),
        )
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.cell.wipe();
        false
    }

    fn __repr__(&self) -> &'static str {
        REDACTED
    }

    fn __str__(&self) -> &'static str {
        REDACTED
    }

    fn __format__(&self, py: Python<'_>, spec: &str) -> PyResult<String> {
        // Honour alignment and width, applied to the placeholder only.
        PyString::new(py, REDACTED)
            .call_method1("__format__", (spec,))?
            .extract()
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Ok(match self.compare(py, other)? {
            Some(eq) => PyBool::new(py, eq).to_owned().into_any().unbind(),
            None => py.NotImplemented(),
        })
    }

    fn __ne__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Ok(match self.compare(py, other)? {
            Some(eq) => PyBool::new(py, !eq).to_owned().into_any().unbind(),
            None => py.NotImplemented(),
        })
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(Error::Type(
            "CypherCell cannot be pickled: its secret never leaves locked memory".into(),
        )
        .into())
    }

    fn __copy__(&self) -> PyResult<()> {
        Err(
            Error::Type("CypherCell cannot be copied; create a new cell from the source".into())
                .into(),
        )
    }

    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> PyResult<()> {
        self.__copy__()
    }

    /// pydantic's hook for a field typed `CypherCell`.
    #[classmethod]
    fn __get_pydantic_core_schema__<'py>(
        cls: &Bound<'py, PyType>,
        source: &Bound<'py, PyAny>,
        handler: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        super::pydantic_hook("_core_schema", cls.as_any(), source, handler)
    }

    /// pydantic's JSON schema hook: a write-only password string.
    #[classmethod]
    fn __get_pydantic_json_schema__<'py>(
        cls: &Bound<'py, PyType>,
        core_schema: &Bound<'py, PyAny>,
        handler: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        super::pydantic_hook("_json_schema", cls.as_any(), core_schema, handler)
    }
}

impl Drop for CypherCell {
    fn drop(&mut self) {
        self.cell.wipe();
    }
}

fn mask(secret: &[u8], suffix_len: usize) -> String {
    match std::str::from_utf8(secret) {
        Ok(text) => {
            let chars = text.chars().count();
            let shown = if suffix_len < chars { suffix_len } else { 0 };
            let mut out = "*".repeat(chars - shown);
            out.extend(text.chars().skip(chars - shown));
            out
        }
        Err(_) => {
            let shown = if suffix_len < secret.len() {
                suffix_len
            } else {
                0
            };
            let mut out = "*".repeat(secret.len() - shown);
            for &b in &secret[secret.len() - shown..] {
                if b.is_ascii_graphic() {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            out
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CypherCell>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_as_documented() {
        assert_eq!(mask(b"SK-7721-9904-1234", 4), "*************1234");
        assert_eq!(mask(b"abc", 4), "***");
        assert_eq!(mask(b"abcd", 4), "****");
        assert_eq!(mask(b"abcde", 0), "*****");
        assert_eq!(mask("pässwörd".as_bytes(), 3), "*****örd");
        assert_eq!(mask(b"\xff\x00ab", 3), "*\\x00ab");
    }

    #[test]
    fn constant_time_eq_agrees_with_eq() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
