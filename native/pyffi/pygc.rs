//! Keeping our own small Python objects off the cyclic garbage collector's
//! lists, so that loading 100,000 secrets does not make every collection
//! meanwhile walk 100,000 cells.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::PyClass;

/// A `#[pyclass]` whose objects cannot be part of a reference cycle: the
/// class is final (not subclassable, so no instance `__dict__`) and holds no
/// Python object, or only objects of such classes and exact `str`s. Only
/// such objects may be untracked; implementing this is that promise.
pub trait Acyclic: PyClass {}

/// Takes `obj` off the collector's lists; reference counting alone frees it
/// (the collector would find no cycle through it anyway: our `tp_traverse`
/// visits nothing).
pub fn untrack<T: Acyclic>(obj: &Bound<'_, T>) {
    debug_assert!(
        obj.as_any().get_type().is(obj.py().get_type::<T>()),
        "an instance of the class itself, not of a subclass"
    );
    // SAFETY: `obj` is a live object (the Bound holds a reference, and the
    // GIL); every `#[pyclass]` type is a GC type, as PyObject_GC_UnTrack
    // requires; untracking an untracked object does nothing, so PyO3's
    // dealloc may untrack it again.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) }
}
