//! The tests' handle on fault injection (`sys::fault`): arm the Nth OS call
//! of a kind to fail, read the counts, disarm. Private (`_fault_*`) and
//! inert unless a test arms it.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::sys::fault::{arm, calls, disarm, Call};

fn parse_kind(name: &str) -> PyResult<Call> {
    Call::from_name(name).ok_or_else(|| {
        let known: Vec<_> = Call::ALL.iter().map(|c| c.name()).collect();
        PyValueError::new_err(format!(
            "unknown fault kind {name:?}; known: {}",
            known.join(", ")
        ))
    })
}

/// Tests only. Counts OS calls of every kind from now on and makes call
/// `nth` (1-based) of `kind` fail with `errno`; with `persistent`, every
/// later call of that kind too. `nth=0` only counts.
#[pyfunction]
#[pyo3(signature = (kind, nth, errno, persistent = false))]
fn _fault_arm(kind: &str, nth: u64, errno: i32, persistent: bool) -> PyResult<()> {
    let call = parse_kind(kind)?;
    if errno <= 0 {
        return Err(PyValueError::new_err(format!(
            "errno must be a positive error number, got {errno}"
        )));
    }
    arm(call, nth, errno, persistent);
    Ok(())
}

/// Tests only. Stops failing and counting; the counts stay readable.
#[pyfunction]
fn _fault_disarm() {
    disarm();
}

/// Tests only. Calls of `kind` counted since the last `_fault_arm()`.
#[pyfunction]
fn _fault_calls(kind: &str) -> PyResult<u64> {
    Ok(calls(parse_kind(kind)?))
}

/// Tests only. The kinds `_fault_arm()` takes.
#[pyfunction]
fn _fault_kinds() -> Vec<&'static str> {
    Call::ALL.iter().map(|c| c.name()).collect()
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_fault_arm, m)?)?;
    m.add_function(wrap_pyfunction!(_fault_disarm, m)?)?;
    m.add_function(wrap_pyfunction!(_fault_calls, m)?)?;
    m.add_function(wrap_pyfunction!(_fault_kinds, m)?)
}
