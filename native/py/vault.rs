//! `VaultClient`, `VaultReply` and `VaultLeases`: the native half of the
//! `Vault` provider (`cypher_cell/providers/vault.py`) over [`crate::vault`].
//! Tokens go in as cells and values come out as cells; Python sees a
//! reply's status, address, lease, errors and field names only.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use zeroize::Zeroizing;

use super::cell::CypherCell;
use super::entry::Entry;
use super::policy::{applied, Policy};
use crate::cell::Cell;
use crate::errors::{type_name, Error};
use crate::memory::{self, SecretBuf};
use crate::vault::http::{Client, Config, Method};
use crate::vault::lease::Keeper;
use crate::vault::reply::{json_body, BodyValue, Reply};
use crate::vault::{self, Failure, Job};

/// The API path of mount information (`GET sys/internal/ui/mounts/<path>`).
const MOUNTS: &str = "sys/internal/ui/mounts/";

fn method(name: &str) -> PyResult<Method> {
    match name {
        "GET" => Ok(Method::Get),
        "PUT" => Ok(Method::Put),
        "POST" => Ok(Method::Post),
        other => {
            Err(Error::Value(format!("method must be GET, PUT or POST, not {other:?}")).into())
        }
    }
}

fn seconds(timeout: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Error::Value(format!("{what} must be a number of seconds greater than 0")).into()
        })
}

/// A request's JSON body from `{name: str | CypherCell}`, in locked memory.
/// Cells' bytes pass through a heap copy that is zeroed at once.
fn body_of(body: &Bound<'_, PyDict>) -> PyResult<SecretBuf> {
    let mut names: Vec<String> = Vec::new();
    let mut values: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    let mut secret: Vec<bool> = Vec::new();
    for (name, value) in body.iter() {
        let name: String = name
            .extract()
            .map_err(|_| Error::Type("a request body's names must be str".into()))?;
        if let Ok(cell) = value.cast::<CypherCell>() {
            let bytes = cell
                .get()
                .inner()
                .peek(|b| Zeroizing::new(b.to_vec()))
                .map_err(Error::from)?;
            values.push(bytes);
            secret.push(true);
        } else if let Ok(text) = value.cast::<PyString>() {
            values.push(Zeroizing::new(text.to_str()?.as_bytes().to_vec()));
            secret.push(false);
        } else {
            return Err(Error::Type(format!(
                "a request body's value for {name:?} must be str or CypherCell, not {}",
                type_name(&value)
            ))
            .into());
        }
        names.push(name);
    }
    let members: Vec<(&str, BodyValue<'_>)> = names
        .iter()
        .zip(&values)
        .zip(&secret)
        .map(|((n, v), &s)| {
            let v = if s {
                BodyValue::Secret(v)
            } else {
                BodyValue::Text(std::str::from_utf8(v).unwrap_or_default())
            };
            (n.as_str(), v)
        })
        .collect();
    Ok(json_body(&members).map_err(Error::Lock)?)
}

fn failure_error(path: &str, f: Failure, timeout: Duration) -> PyErr {
    match f {
        Failure::Unavailable(tried) => Error::ProviderUnavailable(format!(
            "vault {path}: no server answered within {}s ({tried})",
            timeout.as_secs_f64()
        )),
        Failure::Failed(why) => Error::Provider(format!("vault {path}: {why}")),
    }
    .into()
}

/// A connection to one Vault/OpenBao cluster (its addresses, tried in
/// order), with keep-alive. No token is kept: each call takes one.
#[pyclass(frozen, module = "cypher_cell._native")]
pub struct VaultClient {
    client: Client,
    config: Config,
    timeout: Duration,
}

#[pymethods]
impl VaultClient {
    #[new]
    #[pyo3(signature = (addresses, *, namespace = None, ca_file = None, timeout = 10.0))]
    fn new(
        addresses: Vec<String>,
        namespace: Option<String>,
        ca_file: Option<String>,
        timeout: f64,
    ) -> PyResult<Self> {
        let timeout = seconds(timeout, "timeout")?;
        let config = Config {
            addresses,
            namespace,
            ca_file,
        };
        let client =
            Client::new(&config).map_err(|e| failure_error("client", Failure::from(e), timeout))?;
        Ok(VaultClient {
            client,
            config,
            timeout,
        })
    }

    /// The addresses, as they are tried (normalized).
    #[getter]
    fn addresses(&self) -> Vec<String> {
        self.client.addresses().to_vec()
    }

    #[getter]
    fn timeout(&self) -> f64 {
        self.timeout.as_secs_f64()
    }

    /// Sends each `(method, path, body, nested)` (up to four at once) with
    /// `token` and returns the replies in order, whatever their status.
    /// No address answering within `timeout` seconds (default: the
    /// client's) raises ProviderUnavailableError; TLS failures and
    /// malformed replies ProviderError, naming the request by its name in
    /// `names` (default: its path), as the reply's `path` does. Then the
    /// leases of the replies already read go to `leases` (to be revoked
    /// with the store's others), not lost with them.
    #[pyo3(signature = (requests, *, token = None, timeout = None, names = None, leases = None))]
    fn send_all(
        &self,
        py: Python<'_>,
        requests: Vec<(String, String, Option<Bound<'_, PyDict>>, bool)>,
        token: Option<&Bound<'_, CypherCell>>,
        timeout: Option<f64>,
        names: Option<Vec<String>>,
        leases: Option<&Bound<'_, VaultLeases>>,
    ) -> PyResult<Vec<VaultReply>> {
        let names = names.unwrap_or_else(|| requests.iter().map(|r| r.1.clone()).collect());
        if names.len() != requests.len() {
            return Err(Error::Value("names must name each request".into()).into());
        }
        let timeout = match timeout {
            Some(t) => seconds(t, "timeout")?,
            None => self.timeout,
        };
        let deadline = Instant::now() + timeout;
        let mut bodies: Vec<Option<SecretBuf>> = Vec::with_capacity(requests.len());
        let mut parts: Vec<(Method, &str, bool)> = Vec::with_capacity(requests.len());
        for (m, path, body, nested) in &requests {
            bodies.push(body.as_ref().map(body_of).transpose()?);
            parts.push((method(m)?, path.as_str(), *nested));
        }
        let jobs: Vec<Job<'_>> = parts
            .iter()
            .zip(&bodies)
            .map(|(&(method, path, nested), body)| Job {
                method,
                path,
                body: body.as_ref(),
                nested,
            })
            .collect();
        let token = token.map(|t| t.get().inner().clone());
        // The bodies (logins' secrets) drop, zeroed, when this returns.
        let sent = py.detach(|| vault::send_all(&self.client, token.as_deref(), &jobs, deadline));
        let replies = sent.map_err(|(i, f, read)| {
            if let Some(leases) = leases {
                for r in read {
                    if let Some(id) = r.lease_id.clone() {
                        let keeper = &leases.get().keeper;
                        keeper.add(id, r.lease_duration, r.renewable, Vec::new());
                    }
                }
            }
            failure_error(&names[i], f, self.timeout)
        })?;
        Ok(replies
            .into_iter()
            .zip(names)
            .zip(&requests)
            .map(|((reply, path), request)| VaultReply {
                path,
                mounts: request.1.starts_with(MOUNTS),
                reply: Mutex::new(reply),
                made: Mutex::new(Vec::new()),
            })
            .collect())
    }

    fn __repr__(&self) -> String {
        format!("<VaultClient {}>", self.client.addresses().join(", "))
    }
}

/// One reply: status, address, lease, errors and field names are public;
/// values become cells (`load`, `token_cell`). `close()` (also on drop)
/// zeroes the body.
#[pyclass(frozen, module = "cypher_cell._native")]
pub struct VaultReply {
    path: String,
    /// A reply of `sys/internal/ui/mounts/...`: the only kind whose data
    /// `mount_info` reads out (any other reply's data may be secret).
    mounts: bool,
    reply: Mutex<Reply>,
    /// Cells made from this reply, with the deadline their policy gave.
    made: Mutex<Vec<(Weak<Cell>, Option<Instant>)>>,
}

impl VaultReply {
    fn lock(&self) -> MutexGuard<'_, Reply> {
        self.reply.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn closed_error(&self) -> PyErr {
        Error::Value(format!(
            "vault {}: the reply is closed; its values have been wiped",
            self.path
        ))
        .into()
    }
}

#[pymethods]
impl VaultReply {
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    #[getter]
    fn status(&self) -> u16 {
        self.lock().status
    }

    #[getter]
    fn address(&self) -> String {
        self.lock().address.clone()
    }

    #[getter]
    fn lease_id(&self) -> Option<String> {
        self.lock().lease_id.clone()
    }

    #[getter]
    fn lease_duration(&self) -> u64 {
        self.lock().lease_duration
    }

    #[getter]
    fn renewable(&self) -> bool {
        self.lock().renewable
    }

    #[getter]
    fn errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.lock().warnings.clone()
    }

    /// Whether the reply has data (KV v2: `data.data`) as an object.
    #[getter]
    fn has_data(&self) -> bool {
        self.lock().has_data
    }

    /// `(lease_duration, renewable)` of a login's token, or None.
    #[getter]
    fn auth(&self) -> Option<(u64, bool)> {
        let r = self.lock();
        r.auth
            .as_ref()
            .filter(|a| a.token.is_some())
            .map(|a| (a.lease_duration, a.renewable))
    }

    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_closed()
    }

    /// The names of the data's fields, in the reply's order.
    fn fields(&self) -> Vec<String> {
        self.lock().field_names().map(str::to_owned).collect()
    }

    /// `(path, type, options.version)` of a `sys/internal/ui/mounts/...`
    /// reply: public text, each None if absent. Refused for any other
    /// reply, whose fields of those names may be secrets.
    fn mount_info(&self) -> PyResult<(Option<String>, Option<String>, Option<String>)> {
        if !self.mounts {
            return Err(Error::Value(format!(
                "vault {}: mount_info() reads only a reply of {MOUNTS}...",
                self.path
            ))
            .into());
        }
        let r = self.lock();
        Ok((
            r.data_text("path"),
            r.data_text("type"),
            r.data_inner_text("options", "version"),
        ))
    }

    /// `{key: Entry}` for each `(key, field)` whose field the reply has, in
    /// order; every cell with the same policy, its TTL the lease's when the
    /// lease is shorter. Origins read `ORIGIN:FIELD`. All or nothing.
    #[pyo3(signature = (pairs, *, origin, policy = None))]
    fn load<'py>(
        &self,
        py: Python<'py>,
        pairs: Vec<(Bound<'py, PyString>, String)>,
        origin: &str,
        policy: Option<PyRef<'py, Policy>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let policy = applied(policy.as_deref())?;
        let mut options = policy;
        let (lease, lens) = {
            let r = self.lock();
            if r.is_closed() {
                return Err(self.closed_error());
            }
            let lens: Vec<Option<usize>> = pairs
                .iter()
                .map(|(_, f)| r.field(f).and_then(|s| r.value_len(s)))
                .collect();
            (r.lease_duration, lens)
        };
        if lease > 0 {
            let secs = lease as f64;
            let end = Instant::now() + Duration::from_secs(lease);
            if policy.deadline.is_none_or(|(at, _)| end < at) {
                options.deadline = Some((end, secs));
            }
        }
        memory::reserve(options.requested, lens.iter().flatten().copied());
        let out = PyDict::new(py);
        let mut made: Vec<Bound<'py, Entry>> = Vec::new();
        let filled = (|| {
            for ((key, field), len) in pairs.iter().zip(&lens) {
                let Some(len) = *len else { continue };
                let cell = CypherCell::create(py, options, len, |dest| {
                    let r = self.lock();
                    match r.field(field) {
                        Some(span) if r.write_value(span, dest) => Ok(()),
                        _ => Err(self.closed_error()),
                    }
                })?;
                let weak = Arc::downgrade(cell.inner());
                let entry =
                    Entry::with_origin(Bound::new(py, cell)?, &format!("{origin}:{field}"))?;
                self.made
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((weak, policy.deadline.map(|d| d.0)));
                out.set_item(key, &entry)?;
                made.push(entry);
            }
            Ok::<_, PyErr>(out)
        })();
        filled.inspect_err(|_| {
            for entry in &made {
                entry.get().wipe();
            }
            memory::release_unused();
        })
    }

    /// A login's token (`auth.client_token`) in a new cell.
    fn token_cell(&self, py: Python<'_>) -> PyResult<CypherCell> {
        let len = {
            let r = self.lock();
            let span = r.auth.as_ref().and_then(|a| a.token.clone());
            span.and_then(|s| r.value_len(&s))
        };
        let Some(len) = len else {
            return Err(
                Error::Provider(format!("vault {}: the reply holds no token", self.path)).into(),
            );
        };
        CypherCell::create(py, applied(None)?, len, |dest| {
            let r = self.lock();
            match r.auth.as_ref().and_then(|a| a.token.as_ref()) {
                Some(span) if r.write_value(span, dest) => Ok(()),
                _ => Err(self.closed_error()),
            }
        })
    }

    /// Zeroes and frees the body. Safe to call again.
    fn close(&self) {
        self.lock().close();
    }

    fn __repr__(&self) -> String {
        let r = self.lock();
        format!(
            "<VaultReply {} HTTP {} from {}, {} fields{}>",
            self.path,
            r.status,
            r.address,
            r.field_names().count(),
            if r.is_closed() { ", closed" } else { "" }
        )
    }
}

/// The leases a store holds and the token it holds them with, renewed in
/// the background (a thread without the GIL) until `stop`.
#[pyclass(frozen, module = "cypher_cell._native")]
pub struct VaultLeases {
    keeper: Keeper,
}

#[pymethods]
impl VaultLeases {
    #[new]
    fn new(client: &Bound<'_, VaultClient>) -> Self {
        let c = client.get();
        VaultLeases {
            keeper: Keeper::new(c.config.clone(), c.timeout),
        }
    }

    /// The token to renew and revoke with; `login`: `(lease_duration,
    /// renewable)` of a token obtained by login (renewed, then revoked and
    /// wiped by `stop`), None for a token given (left alone).
    #[pyo3(signature = (token, login = None))]
    fn set_token(&self, token: &Bound<'_, CypherCell>, login: Option<(u64, bool)>) {
        self.keeper.set_token(token.get().inner().clone(), login);
    }

    /// Registers a reply's lease (if it has one) with the cells made from it.
    fn add(&self, reply: &Bound<'_, VaultReply>) {
        let reply = reply.get();
        let (id, duration, renewable) = {
            let r = reply.lock();
            (r.lease_id.clone(), r.lease_duration, r.renewable)
        };
        if let Some(id) = id {
            let cells = std::mem::take(&mut *reply.made.lock().unwrap_or_else(|e| e.into_inner()));
            self.keeper.add(id, duration, renewable, cells);
        }
    }

    /// Starts renewing (once).
    fn start(&self) -> PyResult<()> {
        self.keeper.start().map_err(|e| Error::Reaper(e).into())
    }

    /// Stops renewing; revokes every lease if `revoke`, and a login's
    /// token. Returns what could not be revoked (no secrets in it).
    fn stop(&self, py: Python<'_>, revoke: bool) -> Vec<String> {
        py.detach(|| self.keeper.stop(revoke))
    }

    /// Renewals that succeeded so far.
    #[getter]
    fn renewals(&self) -> u64 {
        self.keeper.renewals()
    }

    /// `(lease_id, being_renewed)` for each lease held.
    fn leases(&self) -> Vec<(String, bool)> {
        self.keeper.leases()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<VaultClient>()?;
    m.add_class::<VaultReply>()?;
    m.add_class::<VaultLeases>()
}
