//! `Entry`: a filled cell and where its value came from, what a provider
//! hands to `load_secrets`. Native, so that a provider filling thousands of
//! cells (a `.env` file) makes them all in one call, and off the cycle
//! collector: an `Entry` holds a cell and a string, and neither can refer
//! back to it.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::cell::CypherCell;
use crate::pyffi::pygc::{self, Acyclic};

enum Origin {
    Text(Py<PyString>),
    /// A prefix and a line number, joined when asked for: a file of 100,000
    /// keys does not make 100,000 strings nobody reads.
    Line(Arc<str>, usize),
}

/// A filled cell and where its value came from (no value in it).
#[pyclass(frozen, module = "cypher_cell.providers", name = "Entry")]
pub struct Entry {
    cell: Py<CypherCell>,
    origin: Origin,
}

// Final, and holds a `CypherCell` (itself `Acyclic`) and an exact `str`
// (`new` copies a `str` subclass, whose `__dict__` could refer back here).
impl Acyclic for Entry {}

impl Entry {
    /// A new `Entry` whose origin reads `{prefix}{line}`, and its cell,
    /// both off the cycle collector.
    pub(crate) fn at_line<'py>(
        cell: Bound<'py, CypherCell>,
        prefix: &Arc<str>,
        line: usize,
    ) -> PyResult<Bound<'py, Entry>> {
        pygc::untrack(&cell);
        let loaded = Bound::new(
            cell.py(),
            Entry {
                cell: cell.unbind(),
                origin: Origin::Line(prefix.clone(), line),
            },
        )?;
        pygc::untrack(&loaded);
        Ok(loaded)
    }

    /// A new `Entry` with an origin of its own, off the cycle collector.
    pub(crate) fn with_origin<'py>(
        cell: Bound<'py, CypherCell>,
        origin: &str,
    ) -> PyResult<Bound<'py, Entry>> {
        pygc::untrack(&cell);
        let py = cell.py();
        let loaded = Bound::new(
            py,
            Entry {
                cell: cell.unbind(),
                origin: Origin::Text(PyString::new(py, origin).unbind()),
            },
        )?;
        pygc::untrack(&loaded);
        Ok(loaded)
    }

    pub(crate) fn wipe(&self) {
        self.cell.get().wipe_now();
    }
}

#[pymethods]
impl Entry {
    #[new]
    fn new(cell: Bound<'_, CypherCell>, origin: Bound<'_, PyString>) -> PyResult<Self> {
        // An exact str: a subclass's instance could refer back to us.
        let origin = if origin.is_exact_instance_of::<PyString>() {
            origin
        } else {
            origin.str()?
        };
        Ok(Entry {
            cell: cell.unbind(),
            origin: Origin::Text(origin.unbind()),
        })
    }

    /// The cell.
    #[getter]
    fn cell(&self, py: Python<'_>) -> Py<CypherCell> {
        self.cell.clone_ref(py)
    }

    /// Where the value came from, such as ``"env-file .env:3"``.
    #[getter]
    fn origin<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        match &self.origin {
            Origin::Text(text) => text.bind(py).clone(),
            Origin::Line(prefix, line) => PyString::new(py, &format!("{prefix}{line}")),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let origin = self.origin(py).repr()?;
        Ok(format!("Entry(cell=[REDACTED], origin={origin})"))
    }
}

/// Wipes the cell of every `Entry` in `entries` (a store closing), in one
/// call. An item that is not an `Entry` still has its `.cell` wiped if that
/// is a `CypherCell`, and then is reported as a TypeError once every cell
/// is wiped.
#[pyfunction]
fn wipe_entries(entries: &Bound<'_, PyAny>) -> PyResult<()> {
    let mut stray = None;
    for entry in entries.try_iter()? {
        let entry = entry?;
        match entry.cast::<Entry>() {
            Ok(loaded) => loaded.get().wipe(),
            Err(e) => {
                let cell = entry.getattr("cell").ok();
                if let Some(cell) = cell.as_ref().and_then(|c| c.cast::<CypherCell>().ok()) {
                    cell.get().wipe_now();
                }
                stray = stray.or_else(|| Some(PyErr::from(e)));
            }
        }
    }
    match stray {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The first item of `entries` that is not an `Entry`, or None: the check
/// `load_secrets` makes on what each provider returns, at C speed.
#[pyfunction]
fn stray_entry<'py>(entries: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    for entry in entries.try_iter()? {
        let entry = entry?;
        if !entry.is_exact_instance_of::<Entry>() {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Entry>()?;
    m.add_function(wrap_pyfunction!(wipe_entries, m)?)?;
    m.add_function(wrap_pyfunction!(stray_entry, m)?)
}
