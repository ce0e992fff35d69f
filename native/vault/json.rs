//! A JSON reader for Vault/OpenBao replies that works over the reply's bytes
//! where they lie (in locked memory) and never copies a value.
//!
//! [`members`] checks one object and returns, for each member, its name (a
//! `String`: names are public) and where its value lies ([`Span`]). A
//! string value that holds escapes is decoded by [`decode_into`] straight
//! into the caller's buffer (a cell), after [`decoded_len`] told its size.
//! Any other value (number, boolean, null, array, object) is kept as its
//! JSON text, a range of the input.
//!
//! Limits: nesting deeper than [`MAX_DEPTH`] is an error (checked
//! iteratively, so a reply nested 100,000 deep costs no stack); errors say
//! what was wrong and at which byte, never what was there.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

/// How deep arrays and objects may nest in a reply (Vault's own replies are
/// a few levels deep; a KV value holding JSON a few more).
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub at: usize,
    pub what: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

type Result<T> = std::result::Result<T, JsonError>;

/// Where a member's value lies in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// A string's contents between its quotes; `escaped`: it holds at least
    /// one backslash escape and must go through [`decode_into`].
    Str { range: Range<usize>, escaped: bool },
    /// Any other value, as its JSON text.
    Raw { range: Range<usize>, kind: Kind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    Number,
    Bool(bool),
    Null,
}

impl Span {
    /// The length of the value as a cell holds it (decoded for strings).
    pub fn value_len(&self, input: &[u8]) -> usize {
        match self {
            Span::Str {
                range,
                escaped: true,
            } => decoded_len(&input[range.clone()]),
            Span::Str { range, .. } | Span::Raw { range, .. } => range.len(),
        }
    }

    /// Writes the value (decoded for strings) into `dest`, which must be
    /// `value_len` bytes long.
    pub fn write_value(&self, input: &[u8], dest: &mut [u8]) {
        match self {
            Span::Str {
                range,
                escaped: true,
            } => decode_into(&input[range.clone()], dest),
            Span::Str { range, .. } | Span::Raw { range, .. } => {
                dest.copy_from_slice(&input[range.clone()])
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub value: Span,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, what: &'static str) -> Result<T> {
        Err(JsonError { at: self.pos, what })
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<()> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// A string starting at its opening quote: the range of its contents
    /// and whether it holds escapes. Checks escapes, control characters and
    /// UTF-8.
    fn string(&mut self) -> Result<(Range<usize>, bool)> {
        if self.peek() != Some(b'"') {
            return self.err("expected a string");
        }
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return self.err("unterminated string"),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return self.err("a lone surrogate in a \\u escape");
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.err("a lone surrogate in a \\u escape");
                                }
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return self.err("a lone surrogate in a \\u escape");
                            }
                        }
                        _ => return self.err("an invalid escape in a string"),
                    }
                }
                Some(c) if c < 0x20 => return self.err("a control character in a string"),
                Some(c) if c < 0x80 => self.pos += 1,
                Some(c) => {
                    let n = match c {
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => return self.err("invalid UTF-8"),
                    };
                    let end = self.pos + n;
                    match self.b.get(self.pos..end).map(std::str::from_utf8) {
                        Some(Ok(_)) => self.pos = end,
                        _ => return self.err("invalid UTF-8"),
                    }
                }
            }
        }
        let range = start..self.pos;
        self.pos += 1;
        Ok((range, escaped))
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.b.get(self.pos..self.pos + 4);
        let value = digits.and_then(|d| {
            d.iter()
                .try_fold(0u32, |acc, &c| Some(acc * 16 + (c as char).to_digit(16)?))
        });
        match value {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => self.err("an invalid \\u escape"),
        }
    }

    fn number(&mut self) -> Result<()> {
        let digits = |r: &mut Self| {
            let s = r.pos;
            while r.peek().is_some_and(|c| c.is_ascii_digit()) {
                r.pos += 1;
            }
            r.pos > s
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return self.err("an invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return self.err("an invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !digits(self) {
                return self.err("an invalid number");
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.err("an invalid literal")
        }
    }

    /// One value of any kind at the current position (after whitespace).
    /// Containers are walked with an explicit stack of at most `MAX_DEPTH`
    /// levels (`depth` levels are already open around this value).
    fn value(&mut self, depth: usize) -> Result<Span> {
        self.skip_ws();
        let start = self.pos;
        let kind = match self.peek() {
            Some(b'"') => {
                let (range, escaped) = self.string()?;
                return Ok(Span::Str { range, escaped });
            }
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b't') => {
                self.literal(b"true")?;
                Kind::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Kind::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Kind::Null
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Kind::Number
            }
            None => return self.err("unexpected end of input"),
            Some(_) => return self.err("an unexpected character"),
        };
        if matches!(kind, Kind::Object | Kind::Array) {
            self.container(depth)?;
        }
        Ok(Span::Raw {
            range: start..self.pos,
            kind,
        })
    }

    /// Skips an object or array (at its opening bracket) and everything
    /// inside it, with a stack of its own instead of recursion: `depth`
    /// levels are open around it, and at most `MAX_DEPTH` in all.
    fn container(&mut self, depth: usize) -> Result<()> {
        // One entry per open container: true for an object.
        let mut open: Vec<bool> = Vec::new();
        loop {
            // At an opening bracket.
            let is_object = self.peek() == Some(b'{');
            if depth + open.len() >= MAX_DEPTH {
                return self.err("nested too deeply");
            }
            open.push(is_object);
            self.pos += 1;
            self.skip_ws();
            if self.peek() == Some(closing(is_object)) {
                self.pos += 1;
                open.pop();
            } else if self.element(is_object)? {
                continue;
            }
            // After a complete value: close containers until one goes on.
            loop {
                let Some(&is_object) = open.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if self.element(is_object)? {
                            break;
                        }
                    }
                    Some(c) if c == closing(is_object) => {
                        self.pos += 1;
                        open.pop();
                    }
                    None => return self.err("unexpected end of input"),
                    Some(_) if is_object => return self.err("expected ',' or '}'"),
                    Some(_) => return self.err("expected ',' or ']'"),
                }
            }
        }
    }

    /// One element of a container (for an object, its name and ':' first):
    /// a scalar is read whole (false); at a nested container's opening
    /// bracket it stops (true), for the caller's loop to open it.
    fn element(&mut self, in_object: bool) -> Result<bool> {
        self.skip_ws();
        if in_object {
            self.string()?;
            self.expect(b':', "expected ':'")?;
            self.skip_ws();
        }
        match self.peek() {
            Some(b'{' | b'[') => Ok(true),
            _ => self.value(0).map(|_| false),
        }
    }
}

fn closing(is_object: bool) -> u8 {
    if is_object {
        b'}'
    } else {
        b']'
    }
}

/// Decodes a JSON string's escapes; `raw` is the checked contents between
/// the quotes, so every escape in it is valid.
fn decode(raw: &[u8], mut out: impl FnMut(&[u8])) {
    let mut i = 0;
    while i < raw.len() {
        let run = raw[i..].iter().position(|&c| c == b'\\');
        let end = run.map_or(raw.len(), |n| i + n);
        out(&raw[i..end]);
        i = end;
        if i >= raw.len() {
            break;
        }
        let c = raw[i + 1];
        i += 2;
        let simple = match c {
            b'b' => Some(0x08),
            b'f' => Some(0x0C),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            other => Some(other),
        };
        if let Some(byte) = simple {
            out(&[byte]);
            continue;
        }
        let hex = |at: usize| {
            raw[at..at + 4].iter().fold(0u32, |acc, &d| {
                acc * 16 + (d as char).to_digit(16).unwrap_or(0)
            })
        };
        let mut code = hex(i);
        i += 4;
        if (0xD800..0xDC00).contains(&code) {
            let lo = hex(i + 2);
            i += 6;
            code = 0x10000 + ((code - 0xD800) << 10) + (lo - 0xDC00);
        }
        let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
        let mut utf8 = [0u8; 4];
        out(ch.encode_utf8(&mut utf8).as_bytes());
    }
}

/// The length of a checked string's contents once decoded.
pub fn decoded_len(raw: &[u8]) -> usize {
    let mut n = 0;
    decode(raw, |piece| n += piece.len());
    n
}

/// Decodes a checked string's contents into `dest` (`decoded_len` bytes).
pub fn decode_into(raw: &[u8], dest: &mut [u8]) {
    let mut at = 0;
    decode(raw, |piece| {
        dest[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    });
    debug_assert_eq!(at, dest.len());
}

/// The members of the object that `range` of `input` holds (the whole
/// input: `0..input.len()`), after checking that the range is exactly one
/// well-formed object (whitespace around it allowed). Duplicate names: the
/// last one wins, as in Go and Python.
pub fn members(input: &[u8], range: Range<usize>) -> Result<Vec<Member>> {
    let mut r = Reader {
        b: &input[..range.end],
        pos: range.start,
    };
    r.skip_ws();
    if r.peek() != Some(b'{') {
        return r.err("expected an object");
    }
    r.pos += 1;
    let mut out: Vec<Member> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    r.skip_ws();
    if r.peek() == Some(b'}') {
        r.pos += 1;
    } else {
        loop {
            r.skip_ws();
            let (name_range, escaped) = r.string()?;
            let raw = &r.b[name_range];
            let name = if escaped {
                let mut bytes = vec![0u8; decoded_len(raw)];
                decode_into(raw, &mut bytes);
                String::from_utf8(bytes).map_err(|_| JsonError {
                    at: r.pos,
                    what: "invalid UTF-8",
                })?
            } else {
                // Checked as UTF-8 by `string`.
                String::from_utf8_lossy(raw).into_owned()
            };
            r.expect(b':', "expected ':'")?;
            let value = r.value(1)?;
            // An index, not a scan of `out`: a reply of a million members
            // would otherwise cost 10^12 comparisons, past any timeout.
            match seen.get(&name) {
                Some(&i) => out[i].value = value,
                None => {
                    seen.insert(name.clone(), out.len());
                    out.push(Member { name, value });
                }
            }
            r.skip_ws();
            match r.peek() {
                Some(b',') => r.pos += 1,
                Some(b'}') => {
                    r.pos += 1;
                    break;
                }
                None => return r.err("unexpected end of input"),
                Some(_) => return r.err("expected ',' or '}'"),
            }
        }
    }
    r.skip_ws();
    if r.pos != range.end {
        return r.err("unexpected data after the object");
    }
    Ok(out)
}

/// The strings of an array of strings (Vault's `errors` and `warnings`),
/// decoded; anything else in it is skipped. Public text, not secrets.
pub fn strings(input: &[u8], span: &Span) -> Vec<String> {
    let Span::Raw {
        range,
        kind: Kind::Array,
    } = span
    else {
        return Vec::new();
    };
    let mut r = Reader {
        b: &input[..range.end - 1],
        pos: range.start + 1,
    };
    let mut out = Vec::new();
    loop {
        r.skip_ws();
        if r.peek().is_none() {
            break;
        }
        let Ok(v) = r.value(1) else { break };
        if let Span::Str { .. } = v {
            let mut bytes = vec![0u8; v.value_len(input)];
            v.write_value(input, &mut bytes);
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        r.skip_ws();
        if r.peek() == Some(b',') {
            r.pos += 1;
        }
    }
    out
}

/// A member by name.
pub fn find<'m>(members: &'m [Member], name: &str) -> Option<&'m Span> {
    members.iter().find(|m| m.name == name).map(|m| &m.value)
}

/// A member that is a non-negative integer (Vault's durations, in seconds).
pub fn integer(input: &[u8], span: Option<&Span>) -> Option<u64> {
    match span {
        Some(Span::Raw {
            range,
            kind: Kind::Number,
        }) => std::str::from_utf8(&input[range.clone()])
            .ok()?
            .parse()
            .ok(),
        _ => None,
    }
}

pub fn boolean(span: Option<&Span>) -> Option<bool> {
    match span {
        Some(Span::Raw {
            kind: Kind::Bool(b),
            ..
        }) => Some(*b),
        _ => None,
    }
}

/// A public string member (a lease id, a mount type), decoded.
pub fn text(input: &[u8], span: Option<&Span>) -> Option<String> {
    match span {
        Some(v @ Span::Str { .. }) => {
            let mut bytes = vec![0u8; v.value_len(input)];
            v.write_value(input, &mut bytes);
            String::from_utf8(bytes).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(input: &[u8], name: &str) -> Vec<u8> {
        let m = members(input, 0..input.len()).unwrap();
        let v = find(&m, name).unwrap();
        let mut out = vec![0u8; v.value_len(input)];
        v.write_value(input, &mut out);
        out
    }

    #[test]
    fn strings_numbers_and_nested_values() {
        let input = br#" {"a": "plain", "b": "t\u00e9\n\"x\"\ud83d\ude00", "n": -1.5e3,
            "t": true, "z": null, "arr": ["x", {"k": [1, 2]}], "o": {}} "#;
        assert_eq!(value_of(input, "a"), b"plain");
        assert_eq!(value_of(input, "b"), "t\u{e9}\n\"x\"\u{1F600}".as_bytes());
        assert_eq!(value_of(input, "n"), b"-1.5e3");
        assert_eq!(value_of(input, "t"), b"true");
        assert_eq!(value_of(input, "z"), b"null");
        assert_eq!(value_of(input, "arr"), br#"["x", {"k": [1, 2]}]"#);
        assert_eq!(value_of(input, "o"), b"{}");
    }

    #[test]
    fn escaped_names_and_duplicates() {
        let input = br#"{"a\u0062": 1, "x": 1, "x": 2}"#;
        let m = members(input, 0..input.len()).unwrap();
        assert_eq!(m[0].name, "ab");
        assert_eq!(value_of(input, "x"), b"2");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"a\"",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":01}",
            b"{\"a\":[1 2]}",
            b"{\"a\":1} x",
            b"{\"a\":tru}",
            b"{\"a\":[}",
        ] {
            assert!(members(bad, 0..bad.len()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut deep = b"{\"a\":".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        deep.extend(std::iter::repeat_n(b']', 100_000));
        deep.push(b'}');
        let e = members(&deep, 0..deep.len()).unwrap_err();
        assert_eq!(e.what, "nested too deeply");
        let mut ok = b"{\"a\":".to_vec();
        ok.extend(std::iter::repeat_n(b'[', MAX_DEPTH - 1));
        ok.extend(std::iter::repeat_n(b']', MAX_DEPTH - 1));
        ok.push(b'}');
        assert!(members(&ok, 0..ok.len()).is_ok());
    }

    #[test]
    fn nested_objects_and_error_strings() {
        let input = br#"{"data":{"data":{"k":"v"},"metadata":{"version":3}},"errors":["one","tw\"o"],"lease_duration":60,"renewable":false}"#;
        let top = members(input, 0..input.len()).unwrap();
        let Some(Span::Raw { range, .. }) = find(&top, "data") else {
            panic!()
        };
        let data = members(input, range.clone()).unwrap();
        assert!(find(&data, "data").is_some());
        assert_eq!(
            strings(input, find(&top, "errors").unwrap()),
            vec!["one", "tw\"o"]
        );
        assert_eq!(integer(input, find(&top, "lease_duration")), Some(60));
        assert_eq!(boolean(find(&top, "renewable")), Some(false));
    }
}
