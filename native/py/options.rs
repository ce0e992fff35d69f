//! `CellOptions`: a cell's policy (`volatile`, `ttl_sec`, `protection`) as
//! every native constructor takes it, checked before anything is allocated.
//! Providers in Rust (the `.env` file, the terminal, the environment, a
//! secrets directory) parse it here too, so every cell gets the same checks.

use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

use crate::errors::{type_name, Error};
use crate::memory::{Tier, TierRequest};

fn requested(protection: &str) -> Result<TierRequest, Error> {
    match protection {
        "auto" => Ok(TierRequest::Auto),
        "secretmem" => Ok(TierRequest::Exactly(Tier::Secretmem)),
        "locked" => Ok(TierRequest::Exactly(Tier::Locked)),
        "unlocked" => Ok(TierRequest::Exactly(Tier::Unlocked)),
        other => Err(Error::Value(format!(
            "protection must be one of 'auto', 'secretmem', 'locked', 'unlocked'; got {other:?}"
        ))),
    }
}

/// The longest time to live, in seconds (about 31,700 years): beyond any
/// process's life and always representable as a deadline. Pass None for no
/// limit. `cypher_cell/policy.py` checks the same bound.
const MAX_TTL_SEC: f64 = 1e12;

/// A TTL as an error message shows it, in a few characters: an int in full
/// can run to thousands of digits. Ints below 10**15 as they are, the rest
/// as Python writes the float they round to (as `policy.py` does).
fn shown_ttl(ttl: &Bound<'_, PyAny>, seconds: Option<f64>) -> String {
    if ttl.is_instance_of::<PyInt>() {
        if let Ok(n) = ttl.extract::<i64>() {
            if n.unsigned_abs() < 1_000_000_000_000_000 {
                return n.to_string();
            }
        }
    }
    let Some(seconds) = seconds else {
        return "an int too large for a float".into();
    };
    PyFloat::new(ttl.py(), seconds)
        .repr()
        .map_or_else(|_| "?".into(), |r| r.to_string())
}

fn deadline(ttl_sec: Option<&Bound<'_, PyAny>>) -> Result<Option<(Instant, f64)>, Error> {
    let Some(ttl) = ttl_sec.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    if ttl.is_instance_of::<PyBool>()
        || !(ttl.is_instance_of::<PyInt>() || ttl.is_instance_of::<PyFloat>())
    {
        return Err(Error::Type(format!(
            "ttl_sec must be a number of seconds or None, not {}",
            type_name(ttl)
        )));
    }
    // An int too large for a float fails to convert (OverflowError).
    let seconds = ttl.extract::<f64>().ok();
    let at = seconds
        .filter(|&s| s > 0.0 && s <= MAX_TTL_SEC) // NaN fails both
        .and_then(|s| Instant::now().checked_add(Duration::from_secs_f64(s)));
    match (at, seconds) {
        (Some(at), Some(seconds)) => Ok(Some((at, seconds))),
        _ => Err(Error::Value(format!(
            "ttl_sec must be a finite number of seconds greater than 0 and at most 1e+12 \
             (None: no limit), got {}",
            shown_ttl(ttl, seconds)
        ))),
    }
}

/// A cell's policy, checked before anything is allocated; a cell is made
/// from it by `CypherCell::create`.
#[derive(Clone, Copy)]
pub(crate) struct CellOptions {
    /// The memory the cells are to get.
    pub(crate) requested: TierRequest,
    pub(crate) volatile: bool,
    /// When the cell expires, and its TTL in seconds as given.
    pub(crate) deadline: Option<(Instant, f64)>,
}

impl CellOptions {
    pub(crate) fn parse(
        volatile: bool,
        ttl_sec: Option<&Bound<'_, PyAny>>,
        protection: &str,
    ) -> PyResult<Self> {
        Ok(CellOptions {
            requested: requested(protection)?,
            volatile,
            deadline: deadline(ttl_sec)?,
        })
    }
}
