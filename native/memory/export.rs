//! `Exposure`: the object behind `with cell.expose() as view:`. It exports
//! the secret's bytes to Python through the buffer protocol — read-only, in
//! place, no copy — only inside the `with` block, and holds the memory (an
//! `Arc<SecretBuf>`) for as long as any view of it exists, so a view can
//! never point at freed or reused memory. An exposure that was made but not
//! entered, or whose block has ended, holds no claim on the secret: the
//! reaper and burn-after-read are not held up by it.

use std::os::raw::{c_int, c_void};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyMemoryView, PyWeakrefReference};

use super::secret::SecretBuf;
use super::sys;

/// The cell an exposure reads from.
pub trait ExposureOwner: Send + Sync {
    /// The `with` block starts: the cell checks it may be read (a volatile
    /// cell is burned by this), counts an open exposure and hands over its
    /// bytes.
    fn open(&self) -> PyResult<Arc<SecretBuf>>;
    /// The `with` block ended (or the exposure was dropped while open): a
    /// burned, wiped or expired cell is zeroed now.
    fn close(&self);
}

enum Phase {
    /// Made by `expose()`; holds nothing yet.
    Fresh,
    /// Inside the `with` block. `view` is a weak reference, so the view and
    /// this object do not keep each other alive.
    Open {
        buf: Arc<SecretBuf>,
        view: Option<Py<PyWeakrefReference>>,
    },
    /// After the block. Views derived from the block's view may outlive it:
    /// the bytes stay mapped (the Arc) until this object goes, which CPython
    /// delays until the last of them is released.
    Closed { _kept: Option<Arc<SecretBuf>> },
}

#[pyclass(frozen, module = "cypher_cell._native", name = "Exposure")]
pub struct Exposure {
    owner: Arc<dyn ExposureOwner>,
    generation: u64,
    phase: Mutex<Phase>,
}

impl Exposure {
    pub fn new(owner: Arc<dyn ExposureOwner>) -> Self {
        Exposure {
            owner,
            generation: sys::fork_generation(),
            phase: Mutex::new(Phase::Fresh),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Exposure {
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyMemoryView>> {
        let this = slf.get();
        {
            let mut phase = this.phase();
            if !matches!(*phase, Phase::Fresh) {
                return Err(PyRuntimeError::new_err(
                    "an exposure opens once: call cell.expose() again for another block",
                ));
            }
            *phase = Phase::Open {
                buf: this.owner.open()?,
                view: None,
            };
        }
        // No lock held here: making the view calls __getbuffer__ (and may
        // run the garbage collector).
        let view = match PyMemoryView::from(slf.as_any()) {
            Ok(view) => view,
            Err(e) => {
                *this.phase() = Phase::Closed { _kept: None };
                this.owner.close();
                return Err(e);
            }
        };
        let weak = PyWeakrefReference::new(view.as_any())?.unbind();
        if let Phase::Open { view: slot, .. } = &mut *this.phase() {
            *slot = Some(weak);
        }
        Ok(view)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        let view = {
            let mut phase = self.phase();
            match std::mem::replace(&mut *phase, Phase::Closed { _kept: None }) {
                Phase::Open { buf, view } => {
                    *phase = Phase::Closed { _kept: Some(buf) };
                    Some(view)
                }
                other => {
                    *phase = other;
                    None
                }
            }
        };
        let Some(view) = view else {
            return false;
        };
        if let Some(view) = view.and_then(|w| w.bind(py).upgrade()) {
            // Fails with BufferError if the view was exported again; the
            // memory stays held until that export goes, so ignore it.
            let _ = view.call_method0("release");
        }
        self.owner.close();
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
        let this = slf.get();
        if this.generation != sys::fork_generation() {
            return Err(PyBufferError::new_err(
                "this exposure was made before the process forked; children do not inherit secrets",
            ));
        }
        let (ptr, len) = match &*this.phase() {
            Phase::Open { buf, .. } => (buf.as_ptr(), buf.len()),
            _ => {
                return Err(PyBufferError::new_err(
                    "the secret is readable only inside `with cell.expose() as view:`",
                ))
            }
        };
        let len = ffi::Py_ssize_t::try_from(len)
            .map_err(|_| PyBufferError::new_err("secret too large to export"))?;
        // SAFETY: CPython hands us a valid Py_buffer to fill. `ptr` points at
        // `len` bytes owned by the Arc<SecretBuf> in `phase`, which this
        // object keeps (Open, then Closed) until it is dropped; PyBuffer_FillInfo
        // stores a new reference to this object in `view.obj`, so it outlives
        // every view. readonly=1 makes the call refuse writable requests.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr as *mut c_void, len, 1, flags)
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
        // Entered but never exited (a manual __enter__): close it now.
        let phase = self.phase.get_mut().unwrap_or_else(|e| e.into_inner());
        if matches!(phase, Phase::Open { .. }) && self.generation == sys::fork_generation() {
            self.owner.close();
        }
    }
}
