//! Private module functions for the package and `cypher-cell doctor`: the
//! `atexit` wipe, the allocator's counts and what this machine gives.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::cell;
use crate::memory::{self, Tier};
use crate::sys;

/// Wipes every live cell; registered with `atexit` by the package.
#[pyfunction]
fn _wipe_all() -> usize {
    cell::wipe_all()
}

/// The allocator's own counts (the kernel's are in /proc/self).
#[pyfunction]
fn _pool_stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let s = memory::pool_stats();
    let d = PyDict::new(py);
    d.set_item("regions", s.arenas)?;
    d.set_item("live_slots", s.live_slots)?;
    d.set_item("locked_bytes", s.locked_bytes)?;
    d.set_item("mapped_bytes", s.mapped_bytes)?;
    d.set_item("live_cells", cell::live_count())?;
    Ok(d)
}

/// What this machine gives, for `cypher-cell doctor`.
#[pyfunction]
fn _probe(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for tier in Tier::ALL {
        let (ok, errno, call, why) = match memory::probe(tier) {
            Ok(()) => (true, None, None, None),
            Err(e) => (false, Some(e.errno), Some(e.call), crate::errors::why(&e)),
        };
        let t = PyDict::new(py);
        t.set_item("available", ok)?;
        t.set_item("errno", errno)?;
        t.set_item("call", call)?;
        // The engine's own reading of the failure (errors.rs), so the doctor
        // and MemoryLockError tell the same story.
        t.set_item("why", why)?;
        d.set_item(tier.name(), t)?;
    }
    let limit = |l: sys::SysResult<sys::Limit>| l.ok();
    d.set_item("memlock_limit", limit(sys::memlock_limit()))?;
    d.set_item("core_limit", limit(sys::core_limit()))?;
    d.set_item("dumpable", sys::dumpable().ok())?;
    d.set_item("page_size", sys::page_size())?;
    Ok(d)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_wipe_all, m)?)?;
    m.add_function(wrap_pyfunction!(_pool_stats, m)?)?;
    m.add_function(wrap_pyfunction!(_probe, m)?)
}
