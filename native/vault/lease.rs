//! `Keeper`: the leases a store holds and the token it holds them with,
//! renewed on a thread of their own (no Python) before they run out.
//!
//! A lease is renewed at two thirds of its duration, asking for its first
//! duration again; the cells made from it get the new end as their
//! deadline (a shorter policy TTL still wins). A lease none of whose cells
//! is live any more (wiped, or replaced by `refresh()`) is left to run out.
//! When a renewal fails, or the server grants less than a second (the
//! lease's max TTL), renewing stops and the cells expire at the lease's
//! end. A token obtained by login is renewed the same way
//! (`auth/token/renew-self`). `stop` ends the thread, then revokes the
//! leases (if asked) and the login token.
//!
//! Each round of requests uses a client of its own, dropped at once: no
//! pooled connection keeps a reply (a renewed token) in its buffer.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{Client, Config, HttpError, Method, Request};
use super::reply::{json_body, BodyValue, Reply};
use crate::cell::Cell;

/// A failed renewal is tried again after this long (or sooner, at a third
/// of the time left).
const RETRY: Duration = Duration::from_secs(5);
/// A lease granted less than this is not renewed again.
const MIN_GRANT: Duration = Duration::from_secs(1);

struct Lease {
    id: String,
    /// The duration first granted, asked for again at each renewal.
    increment: u64,
    renewable: bool,
    renew_at: Instant,
    expires: Instant,
    /// Each cell made from the lease, with the deadline its policy gives.
    cells: Vec<(Weak<Cell>, Option<Instant>)>,
}

impl Lease {
    fn live(&self) -> bool {
        self.cells
            .iter()
            .any(|(c, _)| c.upgrade().is_some_and(|c| c.deadline().is_some()))
    }
}

struct TokenLease {
    increment: u64,
    renewable: bool,
    renew_at: Instant,
    expires: Instant,
}

#[derive(Default)]
struct State {
    token: Option<Arc<Cell>>,
    /// Set for a token this keeper obtained (a login): renewed and revoked.
    login: Option<TokenLease>,
    leases: Vec<Lease>,
    stop: bool,
    thread: Option<JoinHandle<()>>,
    renewals: u64,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    config: Config,
    timeout: Duration,
}

pub struct Keeper {
    shared: Arc<Shared>,
}

fn renew_point(now: Instant, granted: Duration) -> Instant {
    now + granted * 2 / 3
}

enum Job {
    Lease(String, u64),
    Token(u64),
}

impl Keeper {
    pub fn new(config: Config, timeout: Duration) -> Keeper {
        Keeper {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                config,
                timeout,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token requests are made with; `login`: `(lease duration,
    /// renewable)` of a token this keeper obtained, to renew and revoke.
    pub fn set_token(&self, token: Arc<Cell>, login: Option<(u64, bool)>) {
        let now = Instant::now();
        let mut s = self.state();
        s.token = Some(token);
        s.login = login.map(|(secs, renewable)| {
            let granted = Duration::from_secs(secs);
            TokenLease {
                increment: secs,
                renewable: renewable && secs > 0,
                renew_at: renew_point(now, granted),
                expires: now + granted,
            }
        });
        drop(s);
        self.shared.wake.notify_all();
    }

    /// Registers a lease and the cells made from it.
    pub fn add(
        &self,
        id: String,
        duration: u64,
        renewable: bool,
        cells: Vec<(Weak<Cell>, Option<Instant>)>,
    ) {
        let now = Instant::now();
        let granted = Duration::from_secs(duration);
        let lease = Lease {
            id,
            increment: duration,
            renewable: renewable && duration > 0,
            renew_at: renew_point(now, granted),
            expires: now + granted,
            cells,
        };
        self.state().leases.push(lease);
        self.shared.wake.notify_all();
    }

    /// Starts the renewal thread (once).
    pub fn start(&self) -> std::io::Result<()> {
        let mut s = self.state();
        if s.thread.is_some() || s.stop {
            return Ok(());
        }
        let shared = self.shared.clone();
        s.thread = Some(
            std::thread::Builder::new()
                .name("cypher-cell-vault-leases".into())
                .spawn(move || run(&shared))?,
        );
        Ok(())
    }

    /// Renewals made so far (for tests and `repr`).
    pub fn renewals(&self) -> u64 {
        self.state().renewals
    }

    /// Lease ids held, and whether each is still being renewed.
    pub fn leases(&self) -> Vec<(String, bool)> {
        self.state()
            .leases
            .iter()
            .map(|l| (l.id.clone(), l.renewable && l.live()))
            .collect()
    }

    /// Stops renewing; revokes every lease if `revoke_leases`, and the
    /// login token if there is one (then wipes it). Returns what failed.
    pub fn stop(&self, revoke_leases: bool) -> Vec<String> {
        let thread = {
            let mut s = self.state();
            s.stop = true;
            s.thread.take()
        };
        self.shared.wake.notify_all();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let (token, login, leases) = {
            let mut s = self.state();
            let leases: Vec<String> = if revoke_leases {
                s.leases.drain(..).map(|l| l.id).collect()
            } else {
                s.leases.clear();
                Vec::new()
            };
            (s.token.take(), s.login.take(), leases)
        };
        let Some(token) = token else {
            return Vec::new();
        };
        let mut failed = Vec::new();
        if !leases.is_empty() || login.is_some() {
            let deadline = Instant::now() + self.shared.timeout;
            match Client::new(&self.shared.config) {
                Err(e) => failed.push(describe(&e)),
                Ok(client) => {
                    for id in &leases {
                        let body = [("lease_id", BodyValue::Text(id))];
                        if let Err(e) = call(&client, &token, "sys/leases/revoke", &body, deadline)
                        {
                            failed.push(format!("revoking lease {id}: {e}"));
                        }
                    }
                    if login.is_some() {
                        if let Err(e) =
                            call(&client, &token, "auth/token/revoke-self", &[], deadline)
                        {
                            failed.push(format!("revoking the login token: {e}"));
                        }
                    }
                }
            }
        }
        if login.is_some() {
            token.wipe();
        }
        failed
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // Only the thread: revoking is `stop`'s, which the owner calls.
        let thread = {
            let mut s = self.state();
            s.stop = true;
            s.thread.take()
        };
        self.shared.wake.notify_all();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// `address: why; ...` for each address tried.
pub fn each_address(tried: &[(String, String)]) -> String {
    let each: Vec<String> = tried.iter().map(|(a, why)| format!("{a}: {why}")).collect();
    each.join("; ")
}

pub fn describe(e: &HttpError) -> String {
    match e {
        HttpError::Unavailable(tried) => format!("no server answered ({})", each_address(tried)),
        HttpError::Tls { address, why } => format!("{address}: TLS failure: {why}"),
        HttpError::Reply { address, why } => format!("{address}: {why}"),
        HttpError::Config(why) => why.clone(),
        HttpError::Lock(e) => crate::errors::lock_message(e),
    }
}

/// One PUT with the token; the reply, or what went wrong in words.
fn call(
    client: &Client,
    token: &Cell,
    path: &str,
    body: &[(&str, BodyValue<'_>)],
    deadline: Instant,
) -> Result<Reply, String> {
    let body = json_body(body).map_err(|e| crate::errors::lock_message(&e))?;
    let token = super::token_copy(Some(token))
        .map_err(|e| match e {
            super::Failure::Failed(w) | super::Failure::Unavailable(w) => w,
        })?
        .ok_or("no token")?;
    let sent = token
        .with_bytes(|t| {
            body.with_bytes(|b| {
                client.send(
                    &Request {
                        method: Method::Put,
                        path,
                        token: Some(t),
                        body: Some(b),
                    },
                    deadline,
                )
            })
        })
        .map_err(|e| describe(&e))?;
    let reply = Reply::parse(sent, false)?;
    if (200..300).contains(&reply.status) {
        Ok(reply)
    } else {
        let why = reply.errors.first().cloned().unwrap_or_default();
        Err(format!("HTTP {} {why}", reply.status)
            .trim_end()
            .to_string())
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The next job due, or when one will be.
fn next_job(s: &State, now: Instant) -> (Option<Job>, Option<Instant>) {
    let mut soonest: Option<Instant> = None;
    if let Some(t) = &s.login {
        if t.renewable {
            if t.renew_at <= now {
                return (Some(Job::Token(t.increment)), None);
            }
            soonest = Some(t.renew_at);
        }
    }
    for l in s.leases.iter().filter(|l| l.renewable && l.live()) {
        if l.renew_at <= now {
            return (Some(Job::Lease(l.id.clone(), l.increment)), None);
        }
        soonest = Some(soonest.map_or(l.renew_at, |s| s.min(l.renew_at)));
    }
    (None, soonest)
}

fn run(shared: &Shared) {
    let mut s = lock(shared);
    loop {
        if s.stop {
            return;
        }
        let now = Instant::now();
        let (job, soonest) = next_job(&s, now);
        let Some(job) = job else {
            s = match soonest {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    shared
                        .wake
                        .wait_timeout(s, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0)
                }
                None => shared.wake.wait(s).unwrap_or_else(|e| e.into_inner()),
            };
            continue;
        };
        let Some(token) = s.token.clone() else {
            return;
        };
        drop(s);
        let deadline = Instant::now() + shared.timeout;
        let result = Client::new(&shared.config)
            .map_err(|e| describe(&e))
            .and_then(|client| match &job {
                Job::Lease(id, inc) => {
                    let inc = inc.to_string();
                    let body = [
                        ("lease_id", BodyValue::Text(id)),
                        ("increment", BodyValue::Text(&inc)),
                    ];
                    call(&client, &token, "sys/leases/renew", &body, deadline)
                        .map(|r| (r.lease_duration, r.renewable))
                }
                Job::Token(inc) => {
                    let inc = format!("{inc}s");
                    let body = [("increment", BodyValue::Text(&inc))];
                    call(&client, &token, "auth/token/renew-self", &body, deadline).map(|r| {
                        r.auth
                            .map_or((0, false), |a| (a.lease_duration, a.renewable))
                    })
                }
            });
        s = lock(shared);
        let now = Instant::now();
        match job {
            Job::Token(_) => {
                if let Some(t) = s.login.as_mut() {
                    renewed(
                        &mut t.renewable,
                        &mut t.renew_at,
                        &mut t.expires,
                        &result,
                        now,
                    );
                }
            }
            Job::Lease(id, _) => {
                if let Some(l) = s.leases.iter_mut().find(|l| l.id == id) {
                    let moved = renewed(
                        &mut l.renewable,
                        &mut l.renew_at,
                        &mut l.expires,
                        &result,
                        now,
                    );
                    if moved {
                        for (cell, cap) in &l.cells {
                            if let Some(cell) = cell.upgrade() {
                                let at = cap.map_or(l.expires, |c| c.min(l.expires));
                                // The reaper could not be told: the cell
                                // still expires at its next read after `at`.
                                let _ = cell.set_deadline(at);
                            }
                        }
                    }
                }
            }
        }
        if result.is_ok() {
            s.renewals += 1;
        }
    }
}

/// Updates a lease after a renewal attempt; true if its end moved.
fn renewed(
    renewable: &mut bool,
    renew_at: &mut Instant,
    expires: &mut Instant,
    result: &Result<(u64, bool), String>,
    now: Instant,
) -> bool {
    match result {
        Ok((secs, still)) => {
            let granted = Duration::from_secs(*secs);
            *expires = now + granted;
            *renew_at = renew_point(now, granted);
            *renewable = *still && granted >= MIN_GRANT;
            true
        }
        Err(_) => {
            let left = expires.saturating_duration_since(now);
            if left.is_zero() {
                *renewable = false;
            } else {
                *renew_at = now + RETRY.min(left / 3).max(Duration::from_millis(100));
            }
            false
        }
    }
}
