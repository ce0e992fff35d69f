//! The CPython C API, where PyO3's safe API does not reach: one of the three
//! modules allowed `unsafe` (each block reads or writes a Python object
//! through `pyo3::ffi`).
//!
//! - [`export`]: `Exposure`, the read-only buffer export behind `expose()`
//!   (`__getbuffer__` fills a `Py_buffer`; the class is here whole because
//!   that method is an `unsafe fn` of its `#[pymethods]`).
//! - [`pybytes`]: zeroing a Python `bytes` object in place (environ scrub).
//! - [`pygc`]: keeping our own small objects off Python's cycle collector.

pub(crate) mod export;
pub(crate) mod pybytes;
pub(crate) mod pygc;
