//! Zeroing a Python `bytes` object in place: the one way to wipe the copy of
//! an inherited environment variable that `os.environ` keeps.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::sys;

/// Overwrites the contents of `obj` with zeros. Refuses (returns false) for
/// objects shorter than 2 bytes: CPython shares the empty and one-byte
/// `bytes` objects process-wide, so zeroing one would corrupt every user.
///
/// The caller must be about to drop its last use of the object (it is
/// immutable to every other Python code that may hold it, which will now see
/// zeros).
pub fn zero_bytes_in_place(obj: &Bound<'_, PyBytes>) -> bool {
    let len = obj.as_bytes().len();
    if len < 2 {
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
