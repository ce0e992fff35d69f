//! `Exposure`: the object behind `with cell.expose() as view:`. It exports
//! the secret's bytes to Python through the buffer protocol — read-only, in
//! place, no copy — only inside the `with` block, and holds the memory (an
//! `Arc<SecretBuf>`) for as long as any view of it exists, so a view can
//! never point at freed or reused memory. An exposure that was made but not
//! entered, or whose block has ended, holds no claim on the secret: the
//! reaper and burn-after-read are not held up by it.
//!
//! Views die with the block. CPython builds every view of one export
//! (`view[:]`, `memoryview(view)`, `view.cast(...)`) over a shared "managed
//! buffer", and marks them all released only when each has been released;
//! it tells us nothing when a sub-view is made. So when the block ends and
//! the export is still held (we count `__getbuffer__`/`__releasebuffer__`),
//! the views are found through the garbage collector's public
//! `gc.get_objects` (a memoryview whose `obj` is this object) and
//! released, which needs no private struct layout. A
//! forked child does the same for every exposure open at the fork (an
//! `os.register_at_fork` hook), so what it can still reach raises
//! `ValueError`. The rule where that cannot work:
//! - a view that another object holds a buffer of when the block ends (a
//!   `pickle.PickleBuffer`, a NumPy array, a C extension mid-call) cannot
//!   be released; it reads the cell's bytes until the cell is wiped, then
//!   zeros, and the memory stays mapped until it is let go;
//! - a view the collector cannot see (one frozen by `gc.freeze()`) is
//!   missed in the same way;
//! - in a forked child such a view reads zeros: anonymous pages are
//!   wiped on fork and secretmem windows are replaced by zero pages
//!   (`sys::after_fork_in_child`), so it never reads the secret and never
//!   faults.

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyMemoryView, PyTuple, PyWeakrefReference};

use crate::memory::SecretBuf;
use crate::sys;

/// The cell an exposure reads from.
pub trait ExposedCell: Send + Sync {
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
    cell: Arc<dyn ExposedCell>,
    generation: u64,
    phase: Mutex<Phase>,
    /// Buffers handed out by `__getbuffer__` and not yet given back: one
    /// per managed buffer CPython built over this object, however many
    /// views share it.
    exports: AtomicUsize,
}

/// Buffers handed out by every exposure of this process and not yet given
/// back. Inherited by a forked child, where it says whether any view may
/// need releasing (an ordinary fork costs one load).
static EXPORTS: AtomicUsize = AtomicUsize::new(0);

/// Releases the views CPython built over exposures that can be released:
/// the memoryviews whose `obj` satisfies `ours`, searched for while `held()`
/// says some are left. The views made inside a block are nearly always in
/// the collector's youngest generation, a few hundred objects at most, so
/// that is searched first; the whole heap only if needed. A view with
/// exports of its own refuses (BufferError) and is left as it is.
fn release_views(
    py: Python<'_>,
    ours: impl Fn(&Bound<'_, PyAny>) -> bool,
    held: impl Fn() -> bool,
) -> PyResult<()> {
    let gc = py.import("gc")?;
    for generation in [Some(0), None] {
        if !held() {
            break;
        }
        for object in gc.call_method1("get_objects", (generation,))?.try_iter()? {
            let object = object?;
            let Ok(view) = object.cast::<PyMemoryView>() else {
                continue;
            };
            // `obj` raises ValueError for a view already released.
            if view.getattr("obj").is_ok_and(|exporter| ours(&exporter)) {
                let _ = view.call_method0("release");
            }
        }
    }
    Ok(())
}

/// Registers, once per process, the Python-level half of the fork handling
/// (`sys::install_fork_hook` is the native half, which has already run when
/// this does): in the child, every view of an exposure made before the fork
/// is released, so reading it raises `ValueError` instead of reading zeros.
pub fn install_fork_hook(py: Python<'_>) -> PyResult<()> {
    let hook = PyCFunction::new_closure(
        py,
        Some(c"_release_views_in_child"),
        None,
        |args, _kwargs| -> PyResult<()> {
            // Every exposure here was made by the parent.
            release_views(
                args.py(),
                |exporter| exporter.is_instance_of::<Exposure>(),
                || EXPORTS.load(Ordering::SeqCst) > 0,
            )
        },
    )?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("after_in_child", hook)?;
    py.import("os")?
        .call_method("register_at_fork", (), Some(&kwargs))?;
    Ok(())
}

impl Exposure {
    pub fn new(cell: Arc<dyn ExposedCell>) -> Self {
        Exposure {
            cell,
            generation: sys::fork_generation(),
            phase: Mutex::new(Phase::Fresh),
            exports: AtomicUsize::new(0),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The view `__enter__` returns, after the phase is `Open`.
    fn first_view<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        // No lock held here: making the view calls __getbuffer__ (and may
        // run the garbage collector).
        let view = PyMemoryView::from(slf.as_any())?;
        let weak = PyWeakrefReference::new(view.as_any())?.unbind();
        if let Phase::Open { view: slot, .. } = &mut *slf.get().phase() {
            *slot = Some(weak);
        }
        Ok(view)
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
                buf: this.cell.open()?,
                view: None,
            };
        }
        // On error a view made (and dropped) on the way is released by now:
        // the bytes go only after that.
        Self::first_view(&slf).inspect_err(|_| {
            *this.phase() = Phase::Closed { _kept: None };
            this.cell.close();
        })
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(slf: &Bound<'_, Self>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        let (py, this) = (slf.py(), slf.get());
        let view = {
            let mut phase = this.phase();
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
            return Ok(false);
        };
        if let Some(view) = view.and_then(|w| w.bind(py).upgrade()) {
            // Fails with BufferError if the view was exported again; then
            // it is one of the views left as they are (see the module).
            let _ = view.call_method0("release");
        }
        // Sub-views or second exports outlive the view: release them. A
        // failure (MemoryError) leaves them as a view exported again is
        // left, and must not replace the block's own exception.
        let _ = release_views(
            py,
            |exporter| exporter.is(slf),
            || this.exports.load(Ordering::SeqCst) > 0,
        );
        this.cell.close();
        Ok(false)
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
        this.exports.fetch_add(1, Ordering::SeqCst);
        EXPORTS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// # Safety
    /// Called by CPython with the `Py_buffer` filled above.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        // Nothing to free: the view borrowed our bytes; CPython drops `obj`.
        let given_back = |n: usize| n.checked_sub(1);
        if self
            .exports
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, given_back)
            .is_ok()
        {
            let _ = EXPORTS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, given_back);
        }
    }
}

impl Drop for Exposure {
    fn drop(&mut self) {
        // Entered but never exited (a manual __enter__): close it now.
        let phase = self.phase.get_mut().unwrap_or_else(|e| e.into_inner());
        if matches!(phase, Phase::Open { .. }) && self.generation == sys::fork_generation() {
            self.cell.close();
        }
    }
}
