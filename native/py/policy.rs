//! `Policy`: how a cell behaves (time to live, burn after read, memory
//! tier). It is checked once, when it is made, and every native constructor
//! takes one: `CypherCell(policy=...)`, `DotenvFile.load`, `environ_cell`,
//! `read_file_cell_at`, `prompt_cell`. (`CypherCell(volatile=..., ttl_sec=...,
//! protection=...)` builds one from its keywords, with the same checks.)
//! Python sees it as `cypher_cell.Policy`: immutable, compared and hashed by
//! value, picklable.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use pyo3::basic::CompareOp;
use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyTuple, PyType};

use crate::errors::{type_name, Error};
use crate::memory::{Tier, TierRequest};

/// The protection names and the memory each asks for, in the order error
/// messages list them.
const PROTECTIONS: [(&str, TierRequest); 4] = [
    ("auto", TierRequest::Auto),
    ("secretmem", TierRequest::Exactly(Tier::Secretmem)),
    ("locked", TierRequest::Exactly(Tier::Locked)),
    ("unlocked", TierRequest::Exactly(Tier::Unlocked)),
];

/// The longest time to live, in seconds (about 31,700 years): beyond any
/// process's life and always representable as a deadline. None: no limit.
const MAX_TTL_SEC: f64 = 1e12;

/// A TTL as an error message shows it, in a few characters: an int in full
/// can run to thousands of digits (or refuse to print at all, past
/// `sys.get_int_max_str_digits()`). Ints below 10**15 as they are, the rest
/// as Python writes the float they round to.
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

/// The TTL in seconds, or None for no limit. `who` prefixes the messages
/// ("Policy." for `Policy(...)`, nothing for `CypherCell(...)`).
fn ttl_seconds(ttl: &Bound<'_, PyAny>, who: &str) -> Result<Option<f64>, Error> {
    if ttl.is_none() {
        return Ok(None);
    }
    if ttl.is_instance_of::<PyBool>()
        || !(ttl.is_instance_of::<PyInt>() || ttl.is_instance_of::<PyFloat>())
    {
        return Err(Error::Type(format!(
            "{who}ttl_sec must be a number of seconds or None, not {}",
            type_name(ttl)
        )));
    }
    // An int too large for a float fails to convert (OverflowError).
    let seconds = ttl.extract::<f64>().ok();
    match seconds.filter(|&s| s > 0.0 && s <= MAX_TTL_SEC) {
        // NaN fails both comparisons.
        Some(s) => Ok(Some(s)),
        None => Err(Error::Value(format!(
            "{who}ttl_sec must be a finite number of seconds greater than 0 and at most 1e+12 \
             (None: no limit), got {}",
            shown_ttl(ttl, seconds)
        ))),
    }
}

/// A cell's policy. `ttl_sec` keeps the object the caller gave (an int
/// stays an int in `repr` and the attribute); `ttl` is its value in seconds.
#[pyclass(module = "cypher_cell", name = "Policy", frozen, subclass)]
pub(crate) struct Policy {
    ttl_sec: Py<PyAny>,
    ttl: Option<f64>,
    volatile: bool,
    protection: &'static str,
    requested: TierRequest,
}

/// A policy as applied to cells made now: the deadline is taken when a
/// constructor starts, so every cell of one call shares it.
#[derive(Clone, Copy)]
pub(crate) struct Applied {
    pub(crate) requested: TierRequest,
    pub(crate) volatile: bool,
    /// When the cells expire, and the TTL in seconds as given.
    pub(crate) deadline: Option<(Instant, f64)>,
}

impl Policy {
    /// Checks the three fields; `who` prefixes error messages.
    pub(crate) fn check(
        py: Python<'_>,
        ttl_sec: Option<&Bound<'_, PyAny>>,
        volatile: bool,
        protection: &str,
        who: &str,
    ) -> PyResult<Self> {
        let ttl = match ttl_sec {
            Some(t) => ttl_seconds(t, who)?,
            None => None,
        };
        let Some(&(name, requested)) = PROTECTIONS.iter().find(|(p, _)| *p == protection) else {
            return Err(Error::Value(format!(
                "{who}protection must be one of 'auto', 'secretmem', 'locked', 'unlocked'; \
                 got {protection:?}"
            ))
            .into());
        };
        Ok(Policy {
            ttl_sec: match ttl_sec {
                Some(t) if ttl.is_some() => t.clone().unbind(),
                _ => py.None(),
            },
            ttl,
            volatile,
            protection: name,
            requested,
        })
    }

    /// The policy for cells made now.
    pub(crate) fn apply(&self) -> PyResult<Applied> {
        let deadline = match self.ttl {
            None => None,
            Some(s) => {
                let at = Instant::now()
                    .checked_add(Duration::from_secs_f64(s))
                    .ok_or_else(|| Error::Value("ttl_sec is too large for this clock".into()))?;
                Some((at, s))
            }
        };
        Ok(Applied {
            requested: self.requested,
            volatile: self.volatile,
            deadline,
        })
    }

    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [
                self.ttl_sec.bind(py).clone(),
                PyBool::new(py, self.volatile).to_owned().into_any(),
                self.protection.into_pyobject(py)?.into_any(),
            ],
        )
    }
}

/// The policy a native constructor was given, or the default one (every
/// field at its default: `Policy()`).
pub(crate) fn applied(policy: Option<&Policy>) -> PyResult<Applied> {
    match policy {
        Some(p) => p.apply(),
        None => Ok(Applied {
            requested: TierRequest::Auto,
            volatile: false,
            deadline: None,
        }),
    }
}

#[pymethods]
impl Policy {
    #[new]
    // volatile and protection are checked here rather than converted by
    // PyO3, so that their errors read like the others ("Policy.volatile
    // must be ..."); None stands for "not given".
    #[pyo3(
        signature = (ttl_sec = None, volatile = None, protection = None),
        text_signature = "(ttl_sec=None, volatile=False, protection='auto')"
    )]
    fn new(
        py: Python<'_>,
        ttl_sec: Option<&Bound<'_, PyAny>>,
        volatile: Option<&Bound<'_, PyAny>>,
        protection: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let volatile = match volatile {
            None => false,
            Some(v) => v.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
                Error::Type(format!(
                    "Policy.volatile must be True or False, not {}",
                    type_name(v)
                ))
            })?,
        };
        let protection = match protection {
            None => "auto",
            Some(p) => p.extract::<&str>().map_err(|_| {
                Error::Type(format!(
                    "Policy.protection must be a str, not {}",
                    type_name(p)
                ))
            })?,
        };
        Policy::check(py, ttl_sec, volatile, protection, "Policy.")
    }

    /// Seconds until the cell is wiped, as given (None: never).
    #[getter]
    fn ttl_sec(&self, py: Python<'_>) -> Py<PyAny> {
        self.ttl_sec.clone_ref(py)
    }

    /// Burned by its first read.
    #[getter]
    fn volatile(&self) -> bool {
        self.volatile
    }

    /// The memory tier asked for: auto, secretmem, locked or unlocked.
    #[getter]
    fn protection(&self) -> &'static str {
        self.protection
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str) {
        ("ttl_sec", "volatile", "protection")
    }

    /// A short description for tables: "volatile, ttl 60s", or "default".
    fn describe(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = Vec::new();
        if self.volatile {
            parts.push("volatile".to_owned());
        }
        if self.ttl.is_some() {
            let shown = self.ttl_sec.bind(py).call_method1("__format__", ("g",))?;
            parts.push(format!("ttl {shown}s"));
        }
        if self.protection != "auto" {
            parts.push(self.protection.to_owned());
        }
        Ok(if parts.is_empty() {
            "default".to_owned()
        } else {
            parts.join(", ")
        })
    }

    fn __setattr__(&self, name: &str, _value: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyAttributeError::new_err(format!(
            "Policy is immutable: cannot set {name:?}"
        )))
    }

    fn __delattr__(&self, name: &str) -> PyResult<()> {
        Err(PyAttributeError::new_err(format!(
            "Policy is immutable: cannot delete {name:?}"
        )))
    }

    /// Equal when of the same class with equal fields (a subclass is a
    /// different kind of policy).
    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let same = match other.cast::<Policy>() {
            Ok(o) if o.get_type().is(slf.get_type()) => {
                let (a, b) = (slf.get(), o.get());
                Some(a.ttl == b.ttl && a.volatile == b.volatile && a.protection == b.protection)
            }
            _ => None,
        };
        Ok(match (same, op) {
            (Some(eq), CompareOp::Eq) => PyBool::new(py, eq).to_owned().into_any().unbind(),
            (Some(eq), CompareOp::Ne) => PyBool::new(py, !eq).to_owned().into_any().unbind(),
            _ => py.NotImplemented(),
        })
    }

    fn __hash__(&self) -> u64 {
        // Policy(5) == Policy(5.0), so the TTL is hashed as the float it is.
        let mut h = DefaultHasher::new();
        self.ttl.map(f64::to_bits).hash(&mut h);
        self.volatile.hash(&mut h);
        self.protection.hash(&mut h);
        h.finish()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Policy(ttl_sec={}, volatile={}, protection='{}')",
            self.ttl_sec.bind(py).repr()?,
            if self.volatile { "True" } else { "False" },
            self.protection
        ))
    }

    /// pydantic's hook for a `Policy` in `Annotated[CypherCell, Policy(...)]`
    /// (pydantic's documented way for metadata to shape a schema): cells
    /// made from the field's input get this policy.
    fn __get_pydantic_core_schema__<'py>(
        slf: &Bound<'py, Self>,
        source: &Bound<'py, PyAny>,
        handler: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        super::pydantic_hook("_policy_schema", slf.as_any(), source, handler)
    }

    /// The JSON schema of such a field: a `CypherCell`'s (a write-only
    /// password string).
    fn __get_pydantic_json_schema__<'py>(
        slf: &Bound<'py, Self>,
        core_schema: &Bound<'py, PyAny>,
        handler: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        super::pydantic_hook("_json_schema", slf.as_any(), core_schema, handler)
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        Ok((slf.get_type(), slf.get().fields(slf.py())?))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Policy>()
}
