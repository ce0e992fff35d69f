//! A Vault reply, parsed where it lies (locked memory): its public parts
//! (status, lease, field names, errors) as Rust values, its secret parts
//! (field values, a login's token) as spans copied only into cells.

use std::collections::HashMap;
use std::ops::Range;

use super::http::{shorten, Response};
use super::json::{self, Kind, Member, Span};
use crate::memory::{SecretBuf, TierRequest};

/// The longest lease taken as such (100 years): a longer one (which only a
/// rogue server sends) would overflow the clock's arithmetic (`Instant +
/// Duration` panics), so it counts as this long.
pub const MAX_LEASE_SECS: u64 = 100 * 365 * 24 * 3600;

/// A duration member in seconds, at most `MAX_LEASE_SECS`.
fn lease_secs(input: &[u8], span: Option<&Span>) -> u64 {
    json::integer(input, span).unwrap_or(0).min(MAX_LEASE_SECS)
}

/// A login's `auth` block.
pub struct Auth {
    pub token: Option<Span>,
    pub lease_duration: u64,
    pub renewable: bool,
}

pub struct Reply {
    pub status: u16,
    pub address: String,
    body: Option<SecretBuf>,
    len: usize,
    pub lease_id: Option<String>,
    pub lease_duration: u64,
    pub renewable: bool,
    pub auth: Option<Auth>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Whether the reply has data (KV v2: `data.data`) that is an object.
    pub has_data: bool,
    /// The members of `data` (KV v2: `data.data`).
    fields: Vec<Member>,
    /// Each field's index in `fields`: a lookup per key stays O(1) however
    /// many fields a reply has.
    index: HashMap<String, usize>,
}

fn object_range(span: Option<&Span>) -> Option<Range<usize>> {
    match span {
        Some(Span::Raw {
            range,
            kind: Kind::Object,
        }) => Some(range.clone()),
        _ => None,
    }
}

impl Reply {
    /// Parses a response; `nested`: the fields are `data.data` (KV v2).
    /// A 2xx body that is not a JSON object is an error (what was wrong
    /// and where, never what was there); an error status's body is read
    /// for its `errors` only, whatever it holds.
    pub fn parse(resp: Response, nested: bool) -> Result<Reply, String> {
        let Response {
            status,
            address,
            body,
            len,
        } = resp;
        let mut reply = Reply {
            status,
            address,
            body: None,
            len,
            lease_id: None,
            lease_duration: 0,
            renewable: false,
            auth: None,
            errors: Vec::new(),
            warnings: Vec::new(),
            has_data: false,
            fields: Vec::new(),
            index: HashMap::new(),
        };
        let ok = (200..300).contains(&status);
        body.with_bytes(|all| {
            let b = &all[..len];
            if b.iter().all(u8::is_ascii_whitespace) {
                return Ok(()); // 204, or an empty reply
            }
            let top = match json::members(b, 0..b.len()) {
                Ok(top) => top,
                Err(e) if ok => return Err(format!("the reply is not a JSON object ({e})")),
                Err(_) => return Ok(()),
            };
            if let Some(errors) = json::find(&top, "errors") {
                reply.errors = json::strings(b, errors)
                    .iter()
                    .map(|e| shorten(e))
                    .collect();
            }
            if let Some(warnings) = json::find(&top, "warnings") {
                reply.warnings = json::strings(b, warnings)
                    .iter()
                    .map(|e| shorten(e))
                    .collect();
            }
            reply.lease_id = json::text(b, json::find(&top, "lease_id")).filter(|s| !s.is_empty());
            reply.lease_duration = lease_secs(b, json::find(&top, "lease_duration"));
            reply.renewable = json::boolean(json::find(&top, "renewable")).unwrap_or(false);
            if let Some(range) = object_range(json::find(&top, "auth")) {
                let auth = json::members(b, range).map_err(|e| format!("its auth: {e}"))?;
                reply.auth = Some(Auth {
                    token: json::find(&auth, "client_token")
                        .filter(|s| matches!(s, Span::Str { .. }))
                        .cloned(),
                    lease_duration: lease_secs(b, json::find(&auth, "lease_duration")),
                    renewable: json::boolean(json::find(&auth, "renewable")).unwrap_or(false),
                });
            }
            let mut data = object_range(json::find(&top, "data"));
            if nested {
                data = match data {
                    Some(range) => {
                        let outer =
                            json::members(b, range).map_err(|e| format!("its data: {e}"))?;
                        object_range(json::find(&outer, "data"))
                    }
                    None => None,
                };
            }
            if let Some(range) = data {
                reply.fields = json::members(b, range).map_err(|e| format!("its data: {e}"))?;
                reply.has_data = true;
            }
            Ok(())
        })?;
        reply.index = reply
            .fields
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        reply.body = Some(body);
        Ok(reply)
    }

    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|m| m.name.as_str())
    }

    pub fn field(&self, name: &str) -> Option<&Span> {
        self.index.get(name).map(|&i| &self.fields[i].value)
    }

    /// A span's value length, and a function writing it: for cells. None
    /// once the reply is closed.
    pub fn value_len(&self, span: &Span) -> Option<usize> {
        let body = self.body.as_ref()?;
        Some(body.with_bytes(|b| span.value_len(&b[..self.len])))
    }

    pub fn write_value(&self, span: &Span, dest: &mut [u8]) -> bool {
        match &self.body {
            Some(body) => {
                body.with_bytes(|b| span.write_value(&b[..self.len], dest));
                true
            }
            None => false,
        }
    }

    /// A public string field of `data` (a mount's `type`), decoded.
    pub fn data_text(&self, name: &str) -> Option<String> {
        let body = self.body.as_ref()?;
        body.with_bytes(|b| json::text(&b[..self.len], self.field(name)))
    }

    /// A public string inside an object field of `data` (a mount's
    /// `options.version`).
    pub fn data_inner_text(&self, object: &str, name: &str) -> Option<String> {
        let body = self.body.as_ref()?;
        let range = object_range(self.field(object))?;
        body.with_bytes(|b| {
            let b = &b[..self.len];
            let inner = json::members(b, range).ok()?;
            json::text(b, json::find(&inner, name))
        })
    }

    pub fn is_closed(&self) -> bool {
        self.body.is_none()
    }

    /// Zeroes and frees the body; names and lease stay readable.
    pub fn close(&mut self) {
        self.body = None;
    }
}

/// A value for a request's JSON body: public text, or a secret's bytes.
pub enum BodyValue<'a> {
    Text(&'a str),
    Secret(&'a [u8]),
}

fn escaped(bytes: &[u8], out: &mut impl FnMut(&[u8])) {
    out(b"\"");
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match c {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0..=0x1F => None,
            _ => continue,
        };
        out(&bytes[start..i]);
        match esc {
            Some(e) => out(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(c >> 4) as usize],
                    HEX[(c & 15) as usize],
                ]);
            }
        }
        start = i + 1;
    }
    out(&bytes[start..]);
    out(b"\"");
}

fn write_object(members: &[(&str, BodyValue<'_>)], mut out: impl FnMut(&[u8])) {
    out(b"{");
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out(b",");
        }
        escaped(name.as_bytes(), &mut out);
        out(b":");
        match value {
            BodyValue::Text(t) => escaped(t.as_bytes(), &mut out),
            BodyValue::Secret(s) => escaped(s, &mut out),
        }
    }
    out(b"}");
}

/// A JSON object of string members, written into locked memory (a login's
/// body holds its secret_id or JWT).
pub fn json_body(
    members: &[(&str, BodyValue<'_>)],
) -> Result<SecretBuf, crate::memory::AllocError> {
    let mut len = 0;
    write_object(members, |p| len += p.len());
    let (buf, _) = SecretBuf::allocate(TierRequest::Transient, len)?;
    buf.fill(|dest| {
        let mut at = 0;
        write_object(members, |p| {
            dest[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        });
    });
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Tier;

    fn response(status: u16, body: &[u8]) -> Response {
        let (buf, _) =
            SecretBuf::allocate(TierRequest::Exactly(Tier::Unlocked), body.len()).unwrap();
        buf.fill(|d| d.copy_from_slice(body));
        Response {
            status,
            address: "http://x".into(),
            body: buf,
            len: body.len(),
        }
    }

    #[test]
    fn kv2_fields_lease_and_auth() {
        let body =
            br#"{"request_id":"r","lease_id":"db/creds/1","renewable":true,"lease_duration":30,
            "data":{"data":{"password":"p\"w","port":5432},"metadata":{"version":1}},
            "auth":{"client_token":"s.tok","lease_duration":60,"renewable":true},"warnings":null}"#;
        let r = Reply::parse(response(200, body), true).unwrap();
        assert_eq!(r.field_names().collect::<Vec<_>>(), ["password", "port"]);
        assert_eq!(r.lease_id.as_deref(), Some("db/creds/1"));
        assert_eq!((r.lease_duration, r.renewable), (30, true));
        let span = r.field("password").unwrap().clone();
        let mut v = vec![0u8; r.value_len(&span).unwrap()];
        assert!(r.write_value(&span, &mut v));
        assert_eq!(v, b"p\"w");
        let auth = r.auth.as_ref().unwrap();
        assert_eq!((auth.lease_duration, auth.renewable), (60, true));
    }

    #[test]
    fn a_lease_past_any_clock_is_capped() {
        let body = br#"{"lease_id":"x","lease_duration":18446744073709551615,
            "auth":{"client_token":"t","lease_duration":9223372036854775807},"data":{}}"#;
        let r = Reply::parse(response(200, body), false).unwrap();
        assert_eq!(r.lease_duration, MAX_LEASE_SECS);
        assert_eq!(r.auth.as_ref().unwrap().lease_duration, MAX_LEASE_SECS);
    }

    #[test]
    fn errors_of_an_error_status_and_bad_bodies() {
        let r = Reply::parse(response(403, br#"{"errors":["permission denied"]}"#), false).unwrap();
        assert_eq!(r.errors, ["permission denied"]);
        assert!(!r.has_data);
        assert!(Reply::parse(response(500, b"<html>"), false).is_ok());
        assert!(Reply::parse(response(200, b"<html>"), false).is_err());
        assert!(Reply::parse(response(204, b""), false).is_ok());
    }

    #[test]
    fn bodies_are_escaped_json() {
        let buf = json_body(&[
            ("role_id", BodyValue::Text("r\"1")),
            ("secret_id", BodyValue::Secret(b"a\\b\n")),
        ])
        .unwrap();
        buf.with_bytes(|b| assert_eq!(b, br#"{"role_id":"r\"1","secret_id":"a\\b\u000a"}"#));
    }
}
