//! The OpenBao/Vault client: plain Rust, no PyO3 (the Python face is
//! `py::vault`). Replies are read into locked memory and parsed there;
//! values leave only into cells.
//!
//! - `http`: requests over ureq/rustls with keep-alive, failover across
//!   addresses with backoff, bodies into `SecretBuf`s (bounded);
//! - `json`: a JSON reader over the body's bytes (spans, no copies);
//! - `reply`: a reply's lease, auth, errors and fields; request bodies;
//! - `lease`: the renewal thread and revocation.

pub mod http;
pub mod json;
pub mod lease;
pub mod reply;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use http::{Client, HttpError, Method, Request};
use reply::Reply;

use crate::cell::Cell;
use crate::memory::{SecretBuf, TierRequest};

/// How many requests `send_all` keeps in flight at once.
const WORKERS: usize = 8;

/// Why a request got no reply to parse, in words for an error.
#[derive(Debug)]
pub enum Failure {
    /// No address answered in time (a `ProviderUnavailableError`): each
    /// address and its last failure.
    Unavailable(String),
    /// Anything else: TLS, a malformed or oversized reply, configuration.
    Failed(String),
}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Unavailable(tried) => Failure::Unavailable(lease::each_address(&tried)),
            other => Failure::Failed(lease::describe(&other)),
        }
    }
}

/// One request of a batch: its body (JSON, in locked memory) if any, and
/// whether its fields are KV v2's `data.data`.
pub struct Job<'a> {
    pub method: Method,
    pub path: &'a str,
    pub body: Option<&'a SecretBuf>,
    pub nested: bool,
}

/// Sends one request and parses its reply.
fn send(
    client: &Client,
    token: Option<&[u8]>,
    job: &Job<'_>,
    deadline: Instant,
) -> Result<Reply, Failure> {
    let go = |body: Option<&[u8]>| {
        client.send(
            &Request {
                method: job.method,
                path: job.path,
                token,
                body,
            },
            deadline,
        )
    };
    let resp = match job.body {
        Some(b) => b.with_bytes(|b| go(Some(b))),
        None => go(None),
    }?;
    let address = resp.address.clone();
    Reply::parse(resp, job.nested).map_err(|why| Failure::Failed(format!("{address}: {why}")))
}

/// A copy of the token in locked memory, for one thread's requests: the
/// cell's own lock is then not held across network waits, nor shared by
/// the threads of a batch.
pub fn token_copy(token: Option<&Cell>) -> Result<Option<SecretBuf>, Failure> {
    let Some(cell) = token else { return Ok(None) };
    let wiped = || Failure::Failed("the token's cell is wiped or expired".into());
    let len = cell.peek(<[u8]>::len).map_err(|_| wiped())?;
    let (buf, _) = SecretBuf::allocate(TierRequest::Transient, len)
        .map_err(|e| Failure::Failed(crate::errors::lock_message(&e)))?;
    let same = cell
        .peek(|t| buf.fill(|d| (d.len() == t.len()).then(|| d.copy_from_slice(t))))
        .map_err(|_| wiped())?;
    same.ok_or_else(wiped)?;
    Ok(Some(buf))
}

/// Sends every job, up to `WORKERS` at once over the client's pooled
/// connections, and returns the replies in order; at the first failure the
/// jobs not yet sent are dropped and that failure (with its index) is
/// returned with the replies already read (for their leases; dropped,
/// their bodies are zeroed).
pub fn send_all(
    client: &Client,
    token: Option<&Cell>,
    jobs: &[Job<'_>],
    deadline: Instant,
) -> Result<Vec<Reply>, (usize, Failure, Vec<Reply>)> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<Reply, Failure>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let worker = || {
        let run = |tok: Option<&[u8]>| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= jobs.len() || failed.load(Ordering::Relaxed) {
                return;
            }
            let got = send(client, tok, &jobs[i], deadline);
            if got.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(got);
        };
        match token_copy(token) {
            Ok(Some(tok)) => tok.with_bytes(|t| run(Some(t))),
            Ok(None) => run(None),
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                let i = next
                    .fetch_add(1, Ordering::Relaxed)
                    .min(jobs.len().saturating_sub(1));
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(Err(e));
            }
        }
    };
    let workers = WORKERS.min(jobs.len());
    if workers <= 1 {
        worker();
    } else {
        std::thread::scope(|scope| {
            // The workers are born with every signal blocked (the caller's
            // mask comes back once they are started): a signal sent to the
            // process during a load goes to a thread that handles it.
            let blocked = crate::sys::SignalsBlocked::all();
            for _ in 0..workers {
                scope.spawn(worker);
            }
            drop(blocked);
        });
    }
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(jobs.len());
    let mut first_failure = None;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(Ok(reply)) => out.push(reply),
            Some(Err(e)) => {
                first_failure.get_or_insert((i, e));
            }
            None => {}
        }
    }
    match first_failure {
        Some((i, f)) => Err((i, f, out)),
        None if out.len() == jobs.len() => Ok(out),
        None => Err((0, Failure::Failed("a request was not sent".into()), out)),
    }
}
