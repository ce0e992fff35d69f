//! The HTTP(S) side of the Vault client: ureq over rustls (ring), with
//! keep-alive, every reply's body read straight into locked memory.
//!
//! A request is tried on each address in turn (the one that answered last
//! first), and rounds are repeated with backoff until the deadline: a node
//! that refuses, times out, is sealed, is a standby that cannot forward or
//! answers 5xx is skipped. What ureq keeps on the heap meanwhile (its
//! connection buffers, rustls's records, header values) is zeroed when
//! freed by the extension's allocator (`memory::ZeroingAlloc`); the agent,
//! and with it the pooled connections, drops with the `Client`.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::memory::{AllocError, SecretBuf, TierRequest};

/// The largest reply read: a longer one is refused before anything of its
/// body is allocated (by its `Content-Length`) or as soon as it passes this.
pub const MAX_BODY: usize = 16 << 20;
/// The first buffer for a body whose length is not announced (chunked).
const FIRST_CHUNK: usize = 16 << 10;
/// Backoff between rounds over every address.
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Where system roots are looked for when no CA file is given (Debian,
/// Fedora, Alpine/macOS-style), after `SSL_CERT_FILE`.
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

#[derive(Debug)]
pub enum HttpError {
    /// No address gave an answer in time; each address with its last failure.
    Unavailable(Vec<(String, String)>),
    /// The TLS handshake failed (certificate, protocol): not retried.
    Tls {
        address: String,
        why: String,
    },
    /// A reply over `MAX_BODY`, or malformed at the HTTP level.
    Reply {
        address: String,
        why: String,
    },
    /// Bad configuration (an address, a CA file).
    Config(String),
    Lock(AllocError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
}

pub struct Request<'a> {
    pub method: Method,
    /// After `/v1/`, such as `secret/data/app`.
    pub path: &'a str,
    pub token: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
}

pub struct Response {
    pub status: u16,
    /// The address that answered.
    pub address: String,
    /// The body in locked memory; `len` bytes of it are the reply.
    pub body: SecretBuf,
    pub len: usize,
}

#[derive(Clone)]
pub struct Config {
    pub addresses: Vec<String>,
    pub namespace: Option<String>,
    pub ca_file: Option<String>,
}

pub struct Client {
    addresses: Vec<String>,
    namespace: Option<String>,
    agent: Agent,
    /// The address that answered last: tried first next time.
    preferred: AtomicUsize,
}

fn install_ring() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if a provider is installed already: then that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Root certificates from a PEM file (a CA file given, or the system's).
fn roots_from(path: &str) -> Result<Vec<Certificate<'static>>, HttpError> {
    let pem = std::fs::read(path)
        .map_err(|e| HttpError::Config(format!("cannot read the CA file {path}: {e}")))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(HttpError::Config(format!(
            "the CA file {path} holds no PEM certificate"
        )));
    }
    Ok(certs)
}

fn system_roots() -> Result<Vec<Certificate<'static>>, HttpError> {
    let from_env = std::env::var("SSL_CERT_FILE").ok();
    let path = from_env
        .iter()
        .map(String::as_str)
        .chain(SYSTEM_ROOTS.iter().copied())
        .find(|p| std::path::Path::new(p).is_file())
        .ok_or_else(|| {
            HttpError::Config(
                "no system CA bundle found (SSL_CERT_FILE, /etc/ssl/certs/ca-certificates.crt); \
                 pass ca_file"
                    .into(),
            )
        })?;
    roots_from(path)
}

/// `http(s)://host[:port]` without a trailing slash; anything else refused.
fn normalize(address: &str) -> Result<String, HttpError> {
    let trimmed = address.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', '@', ' ']) => {
            Ok(trimmed.to_string())
        }
        _ => Err(HttpError::Config(format!(
            "{address:?} is not a Vault address such as https://vault.example:8200"
        ))),
    }
}

/// What to do after an answer with this status: true to try elsewhere.
/// 5xx (sealed: 503; a standby that cannot forward: 500/503), 429 (a
/// standby or a node over its rate limit), 472/473 (performance and DR
/// standbys), 307/308 (a standby redirecting to the active node: redirects
/// are not followed, the token is not sent anywhere but the addresses given).
fn try_elsewhere(status: u16) -> bool {
    status >= 500 || matches!(status, 307 | 308 | 429 | 472 | 473)
}

/// The rustls error inside an I/O error, if that is what it is.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        cur = err.source();
    }
    None
}

enum Failure {
    /// Try the next address.
    Transient(String),
    Fatal(HttpError),
}

fn classify(address: &str, e: ureq::Error) -> Failure {
    use ureq::Error as E;
    match e {
        E::Rustls(t) => Failure::Fatal(HttpError::Tls {
            address: address.into(),
            why: t.to_string(),
        }),
        E::Tls(why) => Failure::Fatal(HttpError::Tls {
            address: address.into(),
            why: why.into(),
        }),
        E::Io(io) => match io.get_ref().and_then(|inner| tls_cause(inner)) {
            Some(why) => Failure::Fatal(HttpError::Tls {
                address: address.into(),
                why,
            }),
            None => Failure::Transient(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "timed out".into(),
                _ => io.to_string(),
            }),
        },
        E::Timeout(t) => Failure::Transient(format!("timed out ({t})")),
        E::HostNotFound => Failure::Transient("host not found".into()),
        E::ConnectionFailed => Failure::Transient("connection failed".into()),
        E::BodyExceedsLimit(_) => Failure::Fatal(HttpError::Reply {
            address: address.into(),
            why: format!("the reply is over {MAX_BODY} bytes; refused"),
        }),
        // A reply that is not HTTP, or headers past ureq's limit: this
        // server is not answering as Vault does; another may.
        E::Protocol(_) | E::LargeResponseHeader(..) | E::BodyStalled => {
            Failure::Transient(format!("a malformed reply ({e})"))
        }
        // A request that cannot be made (a path no URI can hold): the same
        // everywhere, so not retried.
        other => Failure::Fatal(HttpError::Reply {
            address: address.into(),
            why: format!("the request could not be made ({other})"),
        }),
    }
}

impl Client {
    pub fn new(config: &Config) -> Result<Client, HttpError> {
        if config.addresses.is_empty() {
            return Err(HttpError::Config("no Vault address given".into()));
        }
        let addresses = config
            .addresses
            .iter()
            .map(|a| normalize(a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_idle_connections_per_host(16)
            .user_agent("cypher_cell");
        if addresses.iter().any(|a| a.starts_with("https://")) {
            install_ring();
            let roots = match &config.ca_file {
                Some(path) => roots_from(path)?,
                None => system_roots()?,
            };
            builder = builder.tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(roots)))
                    .build(),
            );
        }
        Ok(Client {
            addresses,
            namespace: config.namespace.clone(),
            agent: Agent::new_with_config(builder.build()),
            preferred: AtomicUsize::new(0),
        })
    }

    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// Sends `req` to the addresses until one answers with a status that is
    /// not `try_elsewhere`, or `deadline` passes.
    pub fn send(&self, req: &Request<'_>, deadline: Instant) -> Result<Response, HttpError> {
        let n = self.addresses.len();
        let mut last: Vec<Option<String>> = vec![None; n];
        let mut backoff = BACKOFF_START;
        loop {
            let first = self.preferred.load(Ordering::Relaxed) % n;
            for (k, i) in (first..n).chain(0..first).enumerate() {
                let address = &self.addresses[i];
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                if left.is_zero() {
                    break;
                }
                // Connecting may take only this address's share of the time
                // left, so that one whose connections hang (a host that is
                // down) leaves time for those after it; once connected, a
                // request has all the time left (a slow write is not cut off
                // and sent again elsewhere).
                let connect = left / (n - k) as u32;
                match self.attempt(address, req, left, connect) {
                    Ok(resp) if try_elsewhere(resp.status) => {
                        last[i] = Some(describe_status(&resp));
                    }
                    Ok(resp) => {
                        self.preferred.store(i, Ordering::Relaxed);
                        return Ok(resp);
                    }
                    Err(Failure::Transient(why)) => last[i] = Some(why),
                    Err(Failure::Fatal(e)) => return Err(e),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let tried = self
                    .addresses
                    .iter()
                    .zip(last)
                    .map(|(a, why)| (a.clone(), why.unwrap_or_else(|| "not tried".into())))
                    .collect();
                return Err(HttpError::Unavailable(tried));
            }
            std::thread::sleep(backoff.min(left));
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn attempt(
        &self,
        address: &str,
        req: &Request<'_>,
        left: Duration,
        connect: Duration,
    ) -> Result<Response, Failure> {
        let url = format!("{address}/v1/{}", encode_path(req.path));
        // ureq takes a proxy from the environment for every host; Go's
        // client (the CLI's) never proxies loopback, where a Vault Agent or
        // dev server listens over plain HTTP: through a proxy, the token and
        // the reply would pass it in clear text.
        let direct = is_loopback(address);
        let fail = |e| classify(address, e);
        let sent = match req.method {
            Method::Get => {
                let mut b = self.agent.get(&url);
                b = b.header("X-Vault-Request", "true");
                if let Some(t) = req.token {
                    b = b.header_raw("X-Vault-Token", t);
                }
                if let Some(ns) = &self.namespace {
                    b = b.header("X-Vault-Namespace", ns);
                }
                let mut c = b
                    .config()
                    .timeout_global(Some(left))
                    .timeout_connect(Some(connect));
                if direct {
                    c = c.proxy(None);
                }
                c.build().call()
            }
            Method::Put | Method::Post => {
                let mut b = if req.method == Method::Put {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                b = b.header("X-Vault-Request", "true");
                if let Some(t) = req.token {
                    b = b.header_raw("X-Vault-Token", t);
                }
                if let Some(ns) = &self.namespace {
                    b = b.header("X-Vault-Namespace", ns);
                }
                let mut c = b
                    .content_type("application/json")
                    .config()
                    .timeout_global(Some(left))
                    .timeout_connect(Some(connect));
                if direct {
                    c = c.proxy(None);
                }
                c.build().send(req.body.unwrap_or(b""))
            }
        };
        let mut resp = sent.map_err(fail)?;
        let status = resp.status().as_u16();
        if status == 400
            && address.starts_with("http://")
            && resp
                .headers()
                .get("content-type")
                .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"))
        {
            // Go's answer to plain HTTP on a TLS port (no JSON, no token echoed).
            let mut head = [0u8; 64];
            let n = resp.body_mut().as_reader().read(&mut head).unwrap_or(0);
            if head[..n].starts_with(b"Client sent an HTTP request to an HTTPS server") {
                return Err(Failure::Fatal(HttpError::Tls {
                    address: address.into(),
                    why: "the server speaks HTTPS: use an https:// address".into(),
                }));
            }
            return Err(Failure::Fatal(HttpError::Reply {
                address: address.into(),
                why: "HTTP 400 with a reply that is not JSON".into(),
            }));
        }
        let announced = resp.body().content_length();
        if announced.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(Failure::Fatal(HttpError::Reply {
                address: address.into(),
                why: format!(
                    "the reply announces {} bytes, over the {MAX_BODY}-byte limit; refused",
                    announced.unwrap_or(0)
                ),
            }));
        }
        let reader = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY as u64 + 1)
            .reader();
        let (body, len) = read_body(reader, announced, address)?;
        Ok(Response {
            status,
            address: address.into(),
            body,
            len,
        })
    }
}

/// Whether a normalized address's host is loopback (`localhost`,
/// 127.0.0.0/8, `[::1]`), as Go's proxy selection decides it.
fn is_loopback(address: &str) -> bool {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A path with every byte but unreserved ones and `/` percent-encoded, as
/// the `vault` CLI sends it (`secret/my app` is `secret/my%20app`).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A status that sends the request elsewhere, in words; Vault's own error
/// text when it gave one ("Vault is sealed").
fn describe_status(resp: &Response) -> String {
    let errors = resp.body.with_bytes(|b| {
        let b = &b[..resp.len];
        super::json::members(b, 0..b.len())
            .ok()
            .and_then(|m| super::json::find(&m, "errors").map(|e| super::json::strings(b, e)))
            .unwrap_or_default()
    });
    match errors.first() {
        Some(e) => format!("HTTP {}: {}", resp.status, shorten(e)),
        None => format!("HTTP {}", resp.status),
    }
}

/// A server's message cut to a length fit for an error.
pub fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Reads a body into locked memory: at its announced length at once, or
/// growing (a new buffer each time; the old one is zeroed as it drops).
fn read_body(
    mut reader: impl Read,
    announced: Option<u64>,
    address: &str,
) -> Result<(SecretBuf, usize), Failure> {
    let alloc = |n: usize| {
        SecretBuf::allocate(TierRequest::Transient, n)
            .map(|(b, _)| b)
            .map_err(|e| Failure::Fatal(HttpError::Lock(e)))
    };
    // One spare byte: filling it means the body is longer than announced.
    let mut capacity = announced.map_or(FIRST_CHUNK, |n| n as usize + 1);
    let mut buf = alloc(capacity)?;
    let mut len = 0;
    loop {
        if len == capacity {
            if capacity > MAX_BODY {
                return Err(Failure::Fatal(HttpError::Reply {
                    address: address.into(),
                    why: format!("the reply is over {MAX_BODY} bytes; refused"),
                }));
            }
            capacity = (capacity * 2).min(MAX_BODY + 1);
            let bigger = alloc(capacity)?;
            bigger.fill(|to| buf.with_bytes(|from| to[..len].copy_from_slice(&from[..len])));
            buf = bigger;
        }
        let n = buf.fill(|to| reader.read(&mut to[len..]));
        match n {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let why = match ureq_error_in(&e) {
                    Some(ureq::Error::BodyExceedsLimit(_)) => {
                        format!("the reply is over {MAX_BODY} bytes; refused")
                    }
                    _ => match e.kind() {
                        std::io::ErrorKind::TimedOut => {
                            return Err(Failure::Transient("timed out reading the reply".into()))
                        }
                        _ => format!("the reply was cut short ({e})"),
                    },
                };
                return Err(Failure::Fatal(HttpError::Reply {
                    address: address.into(),
                    why,
                }));
            }
        }
    }
    if announced.is_some_and(|n| len as u64 != n) {
        return Err(Failure::Fatal(HttpError::Reply {
            address: address.into(),
            why: "the reply was cut short (shorter than its Content-Length)".into(),
        }));
    }
    Ok((buf, len))
}

fn ureq_error_in(e: &std::io::Error) -> Option<&ureq::Error> {
    e.get_ref()?.downcast_ref::<ureq::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_normalized() {
        assert_eq!(
            normalize("http://127.0.0.1:8200/").unwrap(),
            "http://127.0.0.1:8200"
        );
        for bad in [
            "127.0.0.1:8200",
            "ftp://x",
            "https://",
            "https://a/b",
            "https://u:p@h",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts_are_told_apart() {
        for yes in [
            "http://127.0.0.1:8200",
            "http://127.3.2.1",
            "https://localhost:8200",
            "http://LOCALHOST",
            "http://[::1]:8200",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "http://10.0.0.1:8200",
            "https://vault.example",
            "http://[::2]:1",
            "http://localhost.example:8200",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(
            encode_path("secret/my app?x#é"),
            "secret/my%20app%3Fx%23%C3%A9"
        );
        assert_eq!(
            encode_path("sys/internal/ui/mounts/a-b_c.d~"),
            "sys/internal/ui/mounts/a-b_c.d~"
        );
    }

    #[test]
    fn a_refused_connection_is_unavailable_within_the_deadline() {
        // A port nobody listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(&Config {
            addresses: vec![format!("http://127.0.0.1:{port}")],
            namespace: None,
            ca_file: None,
        })
        .unwrap();
        let started = Instant::now();
        let req = Request {
            method: Method::Get,
            path: "sys/health",
            token: None,
            body: None,
        };
        let e = client
            .send(&req, started + Duration::from_millis(300))
            .err()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        match e {
            HttpError::Unavailable(tried) => assert_eq!(tried[0].1, "connection refused"),
            other => panic!("{other:?}"),
        }
    }
}
