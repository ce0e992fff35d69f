//! `Exposure`: the object behind `with cell.expose() as view:`. It exports
//! the secret's bytes to Python through the buffer protocol — read-only, in
//! place, no copy — and holds the memory (an `Arc<SecretBuf>`) for as long as
//! any view of it exists, so a view can never point at freed or reused
//! memory.

use std::os::raw::{c_int, c_void};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyMemoryView;

use super::secret::SecretBuf;

/// What the exposure tells the cell it came from.
pub trait ExposureOwner: Send + Sync {
    /// The `with` block ended (volatile cells are burned now).
    fn exposure_closed(&self);
    /// No view of the bytes remains.
    fn unpin(&self);
}

#[pyclass(frozen, module = "cypher_cell._native", name = "Exposure")]
pub struct Exposure {
    buf: Arc<SecretBuf>,
    owner: Arc<dyn ExposureOwner>,
    view: Mutex<Option<Py<PyMemoryView>>>,
}

impl Exposure {
    /// `buf` must be the pinned bytes of `owner`, pinned once for this exposure.
    pub fn new(buf: Arc<SecretBuf>, owner: Arc<dyn ExposureOwner>) -> Self {
        Exposure {
            buf,
            owner,
            view: Mutex::new(None),
        }
    }
}

#[pymethods]
impl Exposure {
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyMemoryView>> {
        let mut slot = slf.get().view.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(PyRuntimeError::new_err("this exposure is already open"));
        }
        let view = PyMemoryView::from(slf.as_any())?;
        *slot = Some(view.clone().unbind());
        Ok(view)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(view) = view {
            // Fails with BufferError if someone exported the view again; the
            // memory is still held until that export goes, so ignore it.
            let _ = view.bind(py).call_method0("release");
        }
        self.owner.exposure_closed();
        false
    }

    /// # Safety
    /// Called by CPython with a valid, writable `Py_buffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no Py_buffer to fill"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("an exposed secret is read-only"));
        }
        let buf = &slf.get().buf;
        let len = ffi::Py_ssize_t::try_from(buf.len())
            .map_err(|_| PyBufferError::new_err("secret too large to export"))?;
        // SAFETY: CPython hands us a valid Py_buffer to fill. `buf` points at
        // `len` bytes that stay mapped while this object (which owns an Arc of
        // them) is alive; PyBuffer_FillInfo stores a new reference to it in
        // `view.obj`, so it outlives every view. readonly=1 makes the call
        // refuse PyBUF_WRITABLE requests.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                buf.as_ptr() as *mut c_void,
                len,
                1,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// # Safety
    /// Called by CPython with the `Py_buffer` filled above.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        // Nothing to free: the view borrowed our bytes; CPython drops `obj`.
    }
}

impl Drop for Exposure {
    fn drop(&mut self) {
        self.owner.unpin();
    }
}
