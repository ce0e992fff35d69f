//! `redact()` and `RedactStream`: the Python face of `crate::redact`. The
//! first use turns redaction on for the process (`cell::enable_redaction`):
//! from then on every live cell is in the registry.

use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use zeroize::Zeroizing;

use crate::cell;
use crate::errors::{type_name, Error};
use crate::redact::{self as matcher, Stream};

/// `data` with every live cell's value, and its encoded forms, replaced by
/// `[REDACTED]`; the same type back (a `str` is matched in its UTF-8 form).
#[pyfunction]
#[pyo3(name = "redact")]
fn redact_py<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    cell::enable_redaction();
    if let Ok(bytes) = data.cast::<PyBytes>() {
        let raw = bytes.as_bytes();
        return Ok(match py.detach(|| matcher::redact(raw)) {
            None => data.clone(),
            Some(out) => PyBytes::new(py, &out).into_any(),
        });
    }
    if let Ok(array) = data.cast::<PyByteArray>() {
        // A copy (the bytearray may change under us), zeroed when dropped.
        let raw = Zeroizing::new(array.to_vec());
        let out = matcher::redact(&raw).map(Zeroizing::new);
        return Ok(PyByteArray::new(py, out.as_ref().unwrap_or(&raw)).into_any());
    }
    if let Ok(text) = data.cast::<PyString>() {
        if let Ok(utf8) = text.to_str() {
            return Ok(match py.detach(|| matcher::redact_str(utf8)) {
                None => data.clone(),
                Some(out) => PyString::new(py, &out).into_any(),
            });
        }
        // Lone surrogates: through their surrogatepass bytes and back.
        let raw = text.call_method1("encode", ("utf-8", "surrogatepass"))?;
        let masked = redact_py(py, &raw)?;
        return masked
            .call_method1("decode", ("utf-8", "surrogatepass"))
            .or_else(|_| masked.call_method1("decode", ("utf-8", "replace")));
    }
    Err(Error::Type(format!(
        "redact() takes str or bytes, not {}",
        type_name(data)
    ))
    .into())
}

/// Masks a byte stream as it arrives (a child's output): a secret split
/// across `feed` calls is masked whole; only a trailing partial match is
/// held back until more bytes decide it.
#[pyclass(frozen, module = "cypher_cell._native", name = "RedactStream")]
pub struct RedactStream {
    stream: Mutex<Stream>,
}

impl RedactStream {
    fn stream(&self) -> MutexGuard<'_, Stream> {
        self.stream.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl RedactStream {
    #[new]
    fn new() -> Self {
        cell::enable_redaction();
        RedactStream {
            stream: Mutex::new(Stream::default()),
        }
    }

    /// The masked bytes safe to emit now.
    fn feed<'py>(&self, py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
        let mut out = Vec::with_capacity(data.len());
        self.stream().feed(&matcher::registry(), data, &mut out);
        PyBytes::new(py, &out)
    }

    /// True while bytes are held back.
    fn pending(&self) -> bool {
        self.stream().pending()
    }

    /// After a pause: the held part as `[REDACTED]`; the rest of that
    /// secret, if it follows, is swallowed.
    fn flush<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut out = Vec::new();
        self.stream().flush(&mut out);
        PyBytes::new(py, &out)
    }

    /// At the end of the stream: as `flush`, then starts afresh.
    fn finish<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut out = Vec::new();
        self.stream().finish(&mut out);
        PyBytes::new(py, &out)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(redact_py, m)?)?;
    m.add_class::<RedactStream>()
}
