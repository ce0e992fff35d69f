//! Keeping our own small Python objects off the cyclic garbage collector's
//! lists, so that loading 100,000 secrets does not make every collection
//! meanwhile walk 100,000 cells.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::PyClass;

/// Takes `obj` off the collector's lists; reference counting alone frees it.
/// Only for objects that cannot be part of a reference cycle: a `#[pyclass]`
/// type that holds no Python object, or only objects of such types and
/// strings. The caller's type says so; the collector would find no cycle
/// through such an object anyway (our `tp_traverse` visits nothing).
pub fn untrack<T: PyClass>(obj: &Bound<'_, T>) {
    // SAFETY: `obj` is a live object (the Bound holds a reference, and the
    // GIL); every `#[pyclass]` type is a GC type, as PyObject_GC_UnTrack
    // requires; untracking an untracked object does nothing, so PyO3's
    // dealloc may untrack it again.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) }
}
