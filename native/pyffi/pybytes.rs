//! Zeroing a Python `bytes` object in place: the one way to wipe the copy of
//! an inherited environment variable that `os.environ` keeps.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::sys;

/// Overwrites the contents of `obj` with zeros, but only when nothing but
/// its container and the caller refer to it (`expected_refs` counts them):
/// a `bytes` is immutable, and any other holder — a function's constant, a
/// dict key, CPython's shared empty and one-byte objects, an immortal
/// object — must not see it change. Returns whether it zeroed.
pub fn zero_bytes_in_place(obj: &Bound<'_, PyBytes>, expected_refs: isize) -> bool {
    let len = obj.as_bytes().len();
    if len < 2 || !obj.is_exact_instance_of::<PyBytes>() {
        return false;
    }
    // SAFETY: reading the reference count of an object we hold a reference to.
    if unsafe { ffi::Py_REFCNT(obj.as_ptr()) } != expected_refs {
        return false;
    }
    // SAFETY: PyBytes_AsString returns the object's internal buffer of `len`
    // bytes (plus a NUL), valid while `obj` is alive (we hold a reference).
    // The C API hands out a mutable pointer; we write only within `len`.
    let ptr = unsafe { ffi::PyBytes_AsString(obj.as_ptr()) };
    match std::ptr::NonNull::new(ptr.cast::<u8>()) {
        Some(p) => {
            // SAFETY: `len` writable bytes at `p`, as above; no Rust slice of
            // them is alive (`as_bytes()` above was a temporary).
            unsafe { sys::zero(p, len) };
            true
        }
        None => false,
    }
}
