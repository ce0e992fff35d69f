//! `Keeper`: the leases a store holds and the token it holds them with,
//! renewed before they run out by one thread for the whole process (no
//! Python), however many stores are open.
//!
//! A lease is renewed at two thirds of its duration, asking for its first
//! duration again; the cells made from it get the new end as their
//! deadline (a shorter policy TTL still wins). A lease none of whose cells
//! is live any more (wiped, or replaced by `refresh()`) is left to run out.
//! When a renewal fails, or the server grants less than a second (the
//! lease's max TTL), renewing stops and the cells expire at the lease's
//! end. A token obtained by login is renewed the same way
//! (`auth/token/renew-self`). `stop` ends the renewals, then revokes the
//! leases (if asked) and the login token.
//!
//! Each round (every job of one keeper that is due) uses a client of its
//! own, dropped at once: no pooled connection keeps a reply (a renewed
//! token) in its buffer.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::http::{Client, Config, HttpError, Method, Request};
use super::reply::{json_body, BodyValue, Reply};
use crate::cell::Cell;
use crate::memory::PerProcess;

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
    /// A renewal round of this keeper is under way (`stop` waits for it).
    busy: bool,
    renewals: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a round ends (`busy` goes false).
    idle: Condvar,
    config: Config,
    timeout: Duration,
}

/// The one renewal thread's list of keepers, and how it is woken.
#[derive(Default)]
struct Renewer {
    keepers: Mutex<Roster>,
    wake: Condvar,
}

#[derive(Default)]
struct Roster {
    keepers: Vec<Weak<Shared>>,
    /// Bumped by every change the thread must see (a lease added, a stop):
    /// a change made while it was scanning keeps it from sleeping.
    changes: u64,
    started: bool,
}

// Per process: a forked child starts its own thread when it needs one.
static RENEWER: PerProcess<Renewer> = PerProcess::new(Renewer::default);

fn roster(r: &Renewer) -> MutexGuard<'_, Roster> {
    r.keepers.lock().unwrap_or_else(|e| e.into_inner())
}

fn nudge() {
    let r = RENEWER.get();
    roster(r).changes += 1;
    r.wake.notify_all();
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

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Keeper {
    pub fn new(config: Config, timeout: Duration) -> Keeper {
        Keeper {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                idle: Condvar::new(),
                config,
                timeout,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
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
        nudge();
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
        nudge();
    }

    /// Hands this keeper to the renewal thread (started on first use).
    pub fn start(&self) -> std::io::Result<()> {
        if self.state().stop {
            return Ok(());
        }
        let r = RENEWER.get();
        let mut roster = roster(r);
        if !roster.started {
            // Born with every signal blocked, as the TTL reaper is (see
            // `sys::SignalsBlocked`): a process-directed SIGTERM must reach
            // Python or `cypher-cell run`'s forwarder, not end us here.
            let _blocked = crate::sys::SignalsBlocked::all()
                .map_err(|e| std::io::Error::from_raw_os_error(e.errno))?;
            std::thread::Builder::new()
                .name("cypher-cell-vault-leases".into())
                .spawn(move || run(r))?;
            roster.started = true;
        }
        roster.keepers.retain(|k| k.strong_count() > 0);
        roster.keepers.push(Arc::downgrade(&self.shared));
        roster.changes += 1;
        drop(roster);
        r.wake.notify_all();
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

    /// Stops renewing (waiting for a round under way); revokes every lease
    /// if `revoke_leases`, and the login token if there is one (then wipes
    /// it). Returns what failed.
    pub fn stop(&self, revoke_leases: bool) -> Vec<String> {
        let (token, login, leases) = {
            let mut s = self.state();
            s.stop = true;
            while s.busy {
                s = self.shared.idle.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            let leases: Vec<String> = if revoke_leases {
                s.leases.drain(..).map(|l| l.id).collect()
            } else {
                s.leases.clear();
                Vec::new()
            };
            (s.token.take(), s.login.take(), leases)
        };
        nudge();
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
        // No more renewals; revoking is `stop`'s, which the owner calls.
        self.state().stop = true;
        nudge();
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

/// The jobs of one keeper that are due (or will be within `SLACK`, so that
/// leases granted together are renewed in one round), or when the next is.
fn due_jobs(s: &State, now: Instant) -> (Vec<Job>, Option<Instant>) {
    const SLACK: Duration = Duration::from_millis(500);
    let mut jobs = Vec::new();
    let mut soonest: Option<Instant> = None;
    let mut consider = |at: Instant, job: Job| {
        if at <= now + SLACK {
            jobs.push(job);
        } else {
            soonest = Some(soonest.map_or(at, |s: Instant| s.min(at)));
        }
    };
    if let Some(t) = s.login.as_ref().filter(|t| t.renewable) {
        consider(t.renew_at, Job::Token(t.increment));
    }
    for l in s.leases.iter().filter(|l| l.renewable && l.live()) {
        consider(l.renew_at, Job::Lease(l.id.clone(), l.increment));
    }
    (jobs, soonest)
}

/// The renewal thread: each keeper's due jobs in a round of their own, then
/// sleep until the next is due or something changes.
fn run(r: &'static Renewer) {
    loop {
        let seen = roster(r).changes;
        let keepers: Vec<Arc<Shared>> = {
            let mut roster = roster(r);
            roster
                .keepers
                .retain(|k| k.upgrade().is_some_and(|k| !lock(&k).stop));
            roster.keepers.iter().filter_map(Weak::upgrade).collect()
        };
        let mut soonest: Option<Instant> = None;
        for keeper in &keepers {
            let next = round(keeper);
            soonest = match (soonest, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        drop(keepers);
        let roster = roster(r);
        if roster.changes != seen {
            continue;
        }
        // A poisoned lock only means a panic elsewhere: carry on.
        match soonest {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                drop(r.wake.wait_timeout(roster, wait));
            }
            None => drop(r.wake.wait(roster)),
        }
    }
}

/// Runs one keeper's due jobs; returns when its next job is due.
fn round(shared: &Shared) -> Option<Instant> {
    let (jobs, token) = {
        let mut s = lock(shared);
        if s.stop {
            return None;
        }
        let (jobs, soonest) = due_jobs(&s, Instant::now());
        if jobs.is_empty() {
            return soonest;
        }
        let token = s.token.clone()?;
        s.busy = true;
        (jobs, token)
    };
    let deadline = Instant::now() + shared.timeout;
    let client = Client::new(&shared.config).map_err(|e| describe(&e));
    let mut results = Vec::with_capacity(jobs.len());
    for job in &jobs {
        // The server counts a renewal's grant from when it handles the
        // request: counted here from just before it was sent, a cell's
        // deadline never runs past the lease's end on the server.
        let sent = Instant::now();
        let result = client
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|client| match job {
                Job::Lease(id, inc) => {
                    let inc = inc.to_string();
                    let body = [
                        ("lease_id", BodyValue::Text(id)),
                        ("increment", BodyValue::Text(&inc)),
                    ];
                    call(client, &token, "sys/leases/renew", &body, deadline)
                        .map(|r| (r.lease_duration, r.renewable))
                }
                Job::Token(inc) => {
                    let inc = format!("{inc}s");
                    let body = [("increment", BodyValue::Text(&inc))];
                    call(client, &token, "auth/token/renew-self", &body, deadline).map(|r| {
                        r.auth
                            .map_or((0, false), |a| (a.lease_duration, a.renewable))
                    })
                }
            });
        results.push((sent, result));
    }
    drop(client);
    let mut s = lock(shared);
    let now = Instant::now();
    for (job, (sent, result)) in jobs.into_iter().zip(&results) {
        match job {
            Job::Token(_) => {
                if let Some(t) = s.login.as_mut() {
                    renewed(
                        &mut t.renewable,
                        &mut t.renew_at,
                        &mut t.expires,
                        result,
                        *sent,
                        now,
                    );
                }
            }
            Job::Lease(id, _) => {
                if let Some(l) = s.leases.iter_mut().find(|l| l.id == id) {
                    if renewed(
                        &mut l.renewable,
                        &mut l.renew_at,
                        &mut l.expires,
                        result,
                        *sent,
                        now,
                    ) {
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
    s.busy = false;
    shared.idle.notify_all();
    let (_, soonest) = due_jobs(&s, now);
    soonest
}

/// Updates a lease after a renewal attempt sent at `sent`; true if its end
/// moved. A grant is counted from `sent`, not from when the answer was
/// read (`now`): the lease cannot end on the server before the cells.
fn renewed(
    renewable: &mut bool,
    renew_at: &mut Instant,
    expires: &mut Instant,
    result: &Result<(u64, bool), String>,
    sent: Instant,
    now: Instant,
) -> bool {
    match result {
        Ok((secs, still)) => {
            let granted = Duration::from_secs(*secs);
            *expires = sent + granted;
            *renew_at = renew_point(sent, granted);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_counts_from_when_the_renewal_was_sent() {
        let sent = Instant::now();
        let now = sent + Duration::from_secs(3); // a slow round
        let (mut renewable, mut renew_at, mut expires) = (true, sent, sent);
        assert!(renewed(
            &mut renewable,
            &mut renew_at,
            &mut expires,
            &Ok((60, true)),
            sent,
            now
        ));
        // Never past the server's end of the lease (sent + 60 s at the latest).
        assert_eq!(expires, sent + Duration::from_secs(60));
        assert!(renew_at < expires && renewable);
    }

    #[test]
    fn a_failed_renewal_keeps_the_end_and_retries_before_it() {
        let sent = Instant::now();
        let end = sent + Duration::from_secs(30);
        let (mut renewable, mut renew_at, mut expires) = (true, sent, end);
        let failed: Result<(u64, bool), String> = Err("down".into());
        assert!(!renewed(
            &mut renewable,
            &mut renew_at,
            &mut expires,
            &failed,
            sent,
            sent
        ));
        assert_eq!(expires, end);
        assert!(renew_at > sent && renew_at < end && renewable);
    }
}
