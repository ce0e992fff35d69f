//! A `.env` parser that gives the results of python-dotenv's
//! `dotenv_values()` (1.2.4), working over the file's bytes where they lie
//! (in locked memory), in linear time.
//!
//! Values never become `String`s: the parser returns byte ranges into the
//! text; [`resolve`] plans each final value as pieces (ranges of the text,
//! earlier values, environment variables) and [`build`] writes the values
//! that escapes or `${...}` change into a buffer the caller provides (a
//! locked one). Key names are public and are copied into `String`s.
//!
//! How python-dotenv reads a file, reproduced here:
//! - the file is opened in text mode, so CRLF and lone CR become LF before
//!   parsing ([`normalize_newlines`]);
//! - one leading BOM is dropped from the text ([`parse`] starts after it),
//!   whatever the encoding: with `utf-8-sig` the codec drops one first, so
//!   a second BOM goes too, while with `utf-8` a second one stays in the
//!   first key;
//! - whitespace means Python's `str.isspace()` ([`is_space`]), which is
//!   wider than ASCII and than Rust's `char::is_whitespace`;
//! - in a quoted value a backslash always takes the character after it
//!   (`\\` then a quote closes the value; `\'` never does), and a value
//!   runs over lines to its closing quote;
//! - after `=` and at least one blank, a `#` starts a comment and the value
//!   is empty (`A= #c`); right after `=` it is part of the value (`A=#c`);
//! - after a statement it cannot parse it skips to the end of the line
//!   where it stopped, which may be several lines after the statement began;
//! - interpolation (`${NAME}`, `${NAME:-default}`) applies to every value,
//!   single-quoted ones included, after escapes are decoded; a name is looked
//!   up in the values defined earlier in the file (a key without `=` counts,
//!   as an empty value), then in the environment, then the default.
//!
//! python-dotenv is quadratic (its interpolation copies every value read so
//! far, and the environment, for each value); here each byte is visited a
//! bounded number of times and a reference is one hash lookup.
//!
//! One deliberate difference: a value that opens PEM armour
//! (`KEY=-----BEGIN PRIVATE KEY-----`) without quotes is cut at the end of
//! its line by python-dotenv, which then reads the key's body lines as keys
//! of their own (`MIIEv...`, `...AB==`). Here the statement and the lines of
//! the armour are one skipped statement ([`Problem::UnquotedPem`]): no body
//! line becomes a key, and the key is not given its truncated value.

use std::borrow::Cow;
use std::hash::{BuildHasher, RandomState};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use std::ops::Range;

use zeroize::{Zeroize, Zeroizing};

/// The UTF-8 byte order mark: [`parse`] skips one at the start of the
/// text, and the `utf-8-sig` codec drops one before that.
pub const BOM: &[u8] = b"\xef\xbb\xbf";

/// Turns CRLF and lone CR into LF in place, as Python's universal-newline
/// text mode does, and returns the new length. The freed tail is zeroed.
pub fn normalize_newlines(buf: &mut [u8]) -> usize {
    let Some(first) = buf.iter().position(|&b| b == b'\r') else {
        return buf.len();
    };
    let (mut read, mut write) = (first, first);
    while read < buf.len() {
        let byte = buf[read];
        read += 1;
        if byte == b'\r' {
            buf[write] = b'\n';
            if buf.get(read) == Some(&b'\n') {
                read += 1;
            }
        } else {
            buf[write] = byte;
        }
        write += 1;
    }
    buf[write..].zeroize();
    write
}

/// The text is not UTF-8 (python-dotenv fails on the whole file too), first
/// at this line (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotUtf8 {
    pub line: usize,
}

/// Returns `bytes` as text if they are UTF-8. NUL bytes are text here, as
/// for python-dotenv (see [`first_nul_line`]).
pub fn check_text(bytes: &[u8]) -> Result<&str, NotUtf8> {
    std::str::from_utf8(bytes).map_err(|e| NotUtf8 {
        line: line_of(bytes, e.valid_up_to()),
    })
}

/// The first line with a NUL byte: python-dotenv reads it as a character
/// (in a comment, a key or a value alike), but it is more often the sign of
/// a binary file, and no environment variable can hold one.
pub fn first_nul_line(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .position(|&b| b == 0)
        .map(|at| line_of(bytes, at))
}

fn line_of(bytes: &[u8], at: usize) -> usize {
    1 + bytes[..at].iter().filter(|&&b| b == b'\n').count()
}

/// Python's `str.isspace()` (and so `\s` in its regular expressions).
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\x1c'..='\x1f'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// `[^\S\r\n]`: whitespace that does not end a line.
fn is_blank(c: char) -> bool {
    c != '\n' && c != '\r' && is_space(c)
}

/// How a value was written, which decides its escapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quote {
    Unquoted,
    Single,
    Double,
}

/// A value as written: `span` is inside the quotes, before escapes and
/// interpolation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawValue {
    pub span: Range<usize>,
    pub quote: Quote,
}

/// One `KEY=value` (or `KEY` alone: `value` is None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Index into [`Parsed::keys`].
    pub key: usize,
    pub line: usize,
    pub value: Option<RawValue>,
}

/// A key as `dotenv_values()` shows it: at its first position, with the
/// value of its last binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// Where the name lies in `Parsed::names`.
    pub name: Range<usize>,
    /// The binding that gives the value (the last one).
    pub last: usize,
    /// How many bindings the key has.
    pub count: usize,
}

/// Why a statement was skipped. The messages describe the syntax only and
/// never quote the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    NoKeyBeforeEquals,
    ExportWithoutKey,
    UnclosedQuotedKey,
    EmptyQuotedKey,
    UnclosedValue(Quote),
    TextAfterKey,
    TextAfterValue,
    /// A value (or a line) opening PEM armour whose lines follow unquoted,
    /// up to this line (see [`Parser::pem_block_end`]).
    UnquotedPem {
        last: usize,
    },
}

impl Problem {
    pub fn message(self) -> Cow<'static, str> {
        let fixed = match self {
            Problem::UnquotedPem { last } => {
                return format!(
                    "a PEM block (-----BEGIN ...) written without quotes, up to line {last}: \
                     skipped whole (none of its lines is a key, and its key does not get the \
                     first line alone as a value); put the value in double quotes"
                )
                .into()
            }
            Problem::NoKeyBeforeEquals => "no key before '='",
            Problem::ExportWithoutKey => "'export' is not followed by a key",
            Problem::UnclosedQuotedKey => "the single-quoted key has no closing quote",
            Problem::EmptyQuotedKey => "the single-quoted key is empty",
            Problem::UnclosedValue(Quote::Double) => "the double-quoted value has no closing quote",
            Problem::UnclosedValue(_) => "the single-quoted value has no closing quote",
            Problem::TextAfterKey => {
                "unexpected text after the key (expected '=', a comment or the end of the line)"
            }
            Problem::TextAfterValue => {
                "unexpected text after the closing quote (expected a comment or the end of the line)"
            }
        };
        fixed.into()
    }
}

/// A statement that was skipped, with the line it starts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub problem: Problem,
}

/// Key name to position. The table holds positions only (9 bytes a key,
/// so 100,000 keys stay in the CPU's caches), not names: each name is
/// stored once, in its key, and compared there. (A map keyed by shared
/// names also cost an atomic count per key, made and dropped.) SipHash with
/// a random key, as std's `HashMap`: the names come from a file.
#[derive(Debug, Default)]
pub struct KeyIndex {
    table: HashTable<usize>,
    hasher: RandomState,
}

impl KeyIndex {
    fn with_capacity(capacity: usize) -> Self {
        KeyIndex {
            table: HashTable::with_capacity(capacity),
            hasher: RandomState::new(),
        }
    }

    /// The position of `name`; `name_at` gives the name at a position.
    pub fn get<'n>(&self, name: &str, name_at: impl Fn(usize) -> &'n str) -> Option<usize> {
        let hash = self.hasher.hash_one(name);
        self.table.find(hash, |&at| name_at(at) == name).copied()
    }

    /// The position of `name` if it has one; else it gets `new`, and None.
    fn get_or_insert<'n>(
        &mut self,
        name: &str,
        new: usize,
        name_at: impl Fn(usize) -> &'n str,
    ) -> Option<usize> {
        let KeyIndex { table, hasher } = self;
        let hash = hasher.hash_one(name);
        // Growing rehashes the names already in (not `name`: `new` is not
        // in `name_at`'s range yet, and is not in the table either).
        let rehash = |&at: &usize| hasher.hash_one(name_at(at));
        match table.entry(hash, |&at| name_at(at) == name, rehash) {
            Entry::Occupied(found) => Some(*found.get()),
            Entry::Vacant(slot) => {
                slot.insert(new);
                None
            }
        }
    }
}

/// Every binding in file order (duplicates included), the keys they bind
/// (each once, in order of first appearance, like a Python dict) and every
/// skipped statement.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every key's name, one after another (one buffer, not an allocation
    /// per name), zeroed when dropped or outgrown: a "name" may be a line
    /// of an unquoted multi-line value, such as a PEM key.
    pub names: Zeroizing<String>,
    pub keys: Vec<Key>,
    /// Key name to position in `keys`.
    pub index: KeyIndex,
    pub bindings: Vec<Binding>,
    pub skipped: Vec<Skipped>,
}

impl Parsed {
    /// The name of the key at `position`.
    pub fn name(&self, position: usize) -> &str {
        &self.names[self.keys[position].name.clone()]
    }

    /// The position of a key in `keys`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name, |k| self.name(k))
    }

    /// Whether the key at `position` is one a file means to define, and so
    /// may be loaded and its name shown: it has a value (a line without
    /// `=` is as often a line of an unquoted multi-line value), a plain
    /// name ([`is_plain_name`]), and is not what the last line of base64
    /// parses as ([`could_be_base64_tail`]).
    pub fn is_key(&self, text: &str, position: usize) -> bool {
        let key = &self.keys[position];
        let name = self.name(position);
        match &self.bindings[key.last].value {
            Some(value) => is_plain_name(name) && !could_be_base64_tail(name, value, text),
            None => false,
        }
    }

    fn bind(&mut self, name: &str, line: usize, value: Option<RawValue>) {
        let binding = self.bindings.len();
        let (keys, names) = (&self.keys, &self.names);
        let key = match self
            .index
            .get_or_insert(name, keys.len(), |k| &names[keys[k].name.clone()])
        {
            Some(k) => {
                self.keys[k].last = binding;
                self.keys[k].count += 1;
                k
            }
            None => {
                let start = self.names.len();
                push_name(&mut self.names, name);
                self.keys.push(Key {
                    name: start..self.names.len(),
                    last: binding,
                    count: 1,
                });
                self.keys.len() - 1
            }
        };
        self.bindings.push(Binding { key, line, value });
    }

    /// Every line that binds each key bound more than once, in key order.
    pub fn duplicates(&self) -> Vec<(usize, Vec<usize>)> {
        let mut lines = vec![Vec::new(); self.keys.len()];
        for b in &self.bindings {
            if self.keys[b.key].count > 1 {
                lines[b.key].push(b.line);
            }
        }
        lines
            .into_iter()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .collect()
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// Newlines before `counted` have been counted into `line`.
    line: usize,
    counted: usize,
}

/// A parse step's result, or where it stopped and why.
type Step<T> = Result<T, (usize, Problem)>;

/// A statement's key span and value; None for a comment.
type Statement = Option<(Range<usize>, Option<RawValue>)>;

impl<'a> Parser<'a> {
    /// Line of `pos`; `pos` never decreases between calls.
    fn line_at(&mut self, pos: usize) -> usize {
        let newlines = self.bytes[self.counted..pos]
            .iter()
            .filter(|&&b| b == b'\n');
        self.line += newlines.count();
        self.counted = pos;
        self.line
    }

    fn skip(&self, pos: usize, keep: impl Fn(char) -> bool) -> usize {
        self.text[pos..]
            .char_indices()
            .find(|&(_, c)| !keep(c))
            .map_or(self.text.len(), |(i, _)| pos + i)
    }

    fn at(&self, pos: usize) -> Option<u8> {
        self.bytes.get(pos).copied()
    }

    fn line_end(&self, pos: usize) -> usize {
        self.bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.bytes.len(), |i| pos + i)
    }

    /// One statement starting at `pos` (a non-space character): the key
    /// span and value, or None for a comment, and where the next begins.
    fn statement(&self, pos: usize) -> Step<(Statement, usize)> {
        let mut p = pos;
        if self.bytes[p..].starts_with(b"export") {
            let after = self.skip(p + 6, is_blank);
            if after > p + 6 {
                p = after;
            }
        }
        let key = match self.at(p) {
            Some(b'#') => None,
            Some(b'\'') => {
                let close = self.bytes[p + 1..].iter().position(|&b| b == b'\'');
                match close {
                    None => return Err((p, Problem::UnclosedQuotedKey)),
                    Some(0) => return Err((p, Problem::EmptyQuotedKey)),
                    Some(len) => {
                        let span = p + 1..p + 1 + len;
                        p = span.end + 1;
                        Some(span)
                    }
                }
            }
            first => {
                let end = self.skip(p, |c| c != '=' && c != '#' && !is_space(c));
                if end == p {
                    let problem = if first == Some(b'=') {
                        Problem::NoKeyBeforeEquals
                    } else {
                        Problem::ExportWithoutKey
                    };
                    return Err((p, problem));
                }
                let span = p..end;
                p = end;
                Some(span)
            }
        };
        p = self.skip(p, is_blank);
        let mut value = None;
        if self.at(p) == Some(b'=') {
            let after_equals = p + 1;
            p = self.skip(after_equals, is_blank);
            if p > after_equals && self.at(p) == Some(b'#') {
                // `A= #c`: an empty value, then a comment.
                value = Some(RawValue {
                    span: p..p,
                    quote: Quote::Unquoted,
                });
            } else {
                let (v, next) = self.value(p)?;
                value = Some(v);
                p = next;
            }
        }
        let comment = self.skip(p, is_blank);
        if self.at(comment) == Some(b'#') {
            p = self.line_end(comment);
        }
        let end = self.skip(p, is_blank);
        match self.at(end) {
            None => p = end,
            Some(b'\n') => p = end + 1,
            Some(_) => {
                let quoted = matches!(&value, Some(v) if v.quote != Quote::Unquoted);
                let problem = if quoted {
                    Problem::TextAfterValue
                } else {
                    Problem::TextAfterKey
                };
                return Err((p, problem));
            }
        }
        Ok((key.map(|k| (k, value)), p))
    }

    fn value(&self, p: usize) -> Step<(RawValue, usize)> {
        match self.at(p) {
            Some(b'\'') => self.quoted(p, Quote::Single),
            Some(b'"') => self.quoted(p, Quote::Double),
            None | Some(b'\n') => Ok((
                RawValue {
                    span: p..p,
                    quote: Quote::Unquoted,
                },
                p,
            )),
            Some(_) => Ok(self.unquoted(p)),
        }
    }

    /// `'((?:\\.|[^'\\])*)'` (or with `"`), `.` matching newlines too: a
    /// backslash takes the character after it, so the value ends at the
    /// first quote not just after an escaping backslash. No backtracking
    /// can find another end: without that quote (or with a backslash as the
    /// text's last character) the value is unclosed.
    fn quoted(&self, p: usize, quote: Quote) -> Step<(RawValue, usize)> {
        let q = self.bytes[p];
        let start = p + 1;
        let mut i = start;
        let close = loop {
            match self.bytes.get(i) {
                None => return Err((p, Problem::UnclosedValue(quote))),
                // The escaped character's first byte; any further bytes of
                // it are neither a backslash nor a quote.
                Some(b'\\') if i + 1 < self.bytes.len() => i += 2,
                Some(b'\\') => return Err((p, Problem::UnclosedValue(quote))),
                Some(&b) if b == q => break i,
                Some(_) => i += 1,
            }
        };
        Ok((
            RawValue {
                span: start..close,
                quote,
            },
            close + 1,
        ))
    }

    /// The rest of the line, cut at the first whitespace run followed by
    /// `#`, then stripped of trailing whitespace.
    fn unquoted(&self, p: usize) -> (RawValue, usize) {
        let end = self.line_end(p);
        let part = &self.text[p..end];
        let mut cut = part.len();
        let mut blank_from = None;
        for (i, c) in part.char_indices() {
            if is_space(c) {
                blank_from.get_or_insert(i);
            } else if let (Some(from), '#') = (blank_from, c) {
                cut = from;
                break;
            } else {
                blank_from = None;
            }
        }
        let kept = part[..cut].trim_end_matches(is_space).len();
        let value = RawValue {
            span: p..p + kept,
            quote: Quote::Unquoted,
        };
        (value, end)
    }

    /// Where the lines of a PEM block end, from `pos`, the start of the line
    /// after the one that opened it; and the last of those lines (None if
    /// no line after the opening one belongs to it). The block takes the
    /// lines that can be inside armour ([`pem_body_line`]) up to and
    /// including an `-----END ...` line; after that, blank lines then
    /// another `-----BEGIN ...` line (a bundle of certificates) go on.
    /// It stops before the first line that cannot be part of it, so a
    /// truncated block (no `-----END`) does not swallow the keys after it.
    fn pem_block_end(&mut self, mut pos: usize) -> (usize, Option<usize>) {
        let (mut end, mut last) = (pos, None);
        let mut inside = true;
        while pos < self.bytes.len() {
            let line_end = self.line_end(pos);
            let next = (line_end + 1).min(self.bytes.len());
            let line = self.text[pos..line_end].trim_matches(is_space);
            let taken = if line.starts_with(PEM_BEGIN) {
                inside = true;
                true
            } else if inside && line.starts_with(PEM_END) {
                inside = false;
                true
            } else if line.is_empty() {
                // Looked past; part of the block only if more of it follows.
                pos = next;
                continue;
            } else {
                inside && pem_body_line(line)
            };
            if !taken {
                break;
            }
            last = Some(self.line_at(pos));
            end = next;
            pos = next;
        }
        (end, last)
    }
}

/// The first line of PEM armour (RFC 7468), and of its last.
const PEM_BEGIN: &str = "-----BEGIN ";
const PEM_END: &str = "-----END ";

/// Whether a value as written opens PEM armour that it does not close.
fn opens_pem(raw: &str) -> bool {
    raw.starts_with(PEM_BEGIN) && !raw.contains(PEM_END)
}

/// A line (trimmed) that can stand inside PEM armour: base64, with at most
/// two `=` of padding (OpenPGP's checksum line starts with one), or an
/// RFC 1421 header (`Proc-Type: 4,ENCRYPTED`). A `KEY=value` line cannot
/// be either unless its value is empty or `=`.
fn pem_body_line(line: &str) -> bool {
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let bytes = line.as_bytes();
    let core = bytes.strip_prefix(b"=").unwrap_or(bytes);
    let data = core.iter().take_while(|&&c| is_b64(c)).count();
    let padding = &core[data..];
    if data > 0 && padding.len() <= 2 && padding.iter().all(|&c| c == b'=') {
        return true;
    }
    match line.split_once(':') {
        Some((name, rest)) => {
            name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && (rest.is_empty() || rest.starts_with(is_blank))
        }
        None => false,
    }
}

/// Statements `parse` makes room for before it starts.
const PRESIZE_CAP: usize = 1 << 16;

/// Appends to the names buffer; an outgrown buffer is zeroed, not just
/// freed (`Zeroizing`), so no copy of the names so far is left behind.
fn push_name(names: &mut Zeroizing<String>, name: &str) {
    if names.capacity() - names.len() < name.len() {
        let wanted = (names.len() + name.len())
            .max(names.capacity() * 2)
            .max(256);
        let mut grown = String::with_capacity(wanted);
        grown.push_str(names);
        *names = Zeroizing::new(grown);
    }
    names.push_str(name);
}

/// Parses newline-normalized text (see [`normalize_newlines`]), after one
/// leading BOM if there is one (python-dotenv drops it).
pub fn parse(text: &str) -> Parsed {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        line: 1,
        counted: 0,
    };
    // About one statement per line: sized once, not grown step by step.
    // Capped: a file of blank lines must not reserve room for millions of
    // statements it does not have (past the cap, growth takes over).
    let lines = (text.bytes().filter(|&b| b == b'\n').count() + 1).min(PRESIZE_CAP);
    let mut parsed = Parsed {
        names: Zeroizing::new(String::new()),
        keys: Vec::with_capacity(lines),
        index: KeyIndex::with_capacity(lines),
        bindings: Vec::with_capacity(lines),
        skipped: Vec::new(),
    };
    let mut pos = if text.as_bytes().starts_with(BOM) {
        BOM.len()
    } else {
        0
    };
    loop {
        pos = parser.skip(pos, is_space);
        if pos >= text.len() {
            return parsed;
        }
        let line = parser.line_at(pos);
        if text[pos..].starts_with(PEM_BEGIN) {
            // Armour with no key before it: python-dotenv skips this line
            // (text after the "key") and reads the body lines as keys.
            let after = (parser.line_end(pos) + 1).min(text.len());
            let (end, last) = parser.pem_block_end(after);
            let last = last.unwrap_or(line);
            parsed.skipped.push(Skipped {
                line,
                problem: Problem::UnquotedPem { last },
            });
            pos = end;
            continue;
        }
        match parser.statement(pos) {
            Ok((Some((_, Some(value))), next)) if opens_pem(&text[value.span.clone()]) => {
                let (end, last) = parser.pem_block_end(next);
                let last = last.unwrap_or_else(|| parser.line_at(value.span.end));
                parsed.skipped.push(Skipped {
                    line,
                    problem: Problem::UnquotedPem { last },
                });
                pos = end;
            }
            Ok((binding, next)) => {
                if let Some((key, value)) = binding {
                    parsed.bind(&text[key], line, value);
                }
                pos = next;
            }
            Err((stopped, problem)) => {
                parsed.skipped.push(Skipped { line, problem });
                let end = parser.line_end(stopped);
                pos = (end + 1).min(text.len());
            }
        }
    }
}

/// The byte a `\x` escape stands for, from static memory (so no decoded
/// byte of a secret is made on the stack).
fn escape(quote: Quote, next: u8) -> Option<&'static [u8]> {
    let both: Option<&'static [u8]> = match next {
        b'\\' => Some(b"\\"),
        b'\'' => Some(b"'"),
        _ => None,
    };
    match quote {
        Quote::Unquoted => None,
        Quote::Single => both,
        Quote::Double => both.or(match next {
            b'"' => Some(b"\""),
            b'a' => Some(b"\x07"),
            b'b' => Some(b"\x08"),
            b'f' => Some(b"\x0c"),
            b'n' => Some(b"\n"),
            b'r' => Some(b"\r"),
            b't' => Some(b"\t"),
            b'v' => Some(b"\x0b"),
            _ => None,
        }),
    }
}

/// Hands `emit` the decoded form of `raw` in runs: slices of `raw` and the
/// static bytes escapes stand for.
fn decode(raw: &[u8], quote: Quote, mut emit: impl FnMut(&[u8])) {
    if quote != Quote::Unquoted {
        let (mut run, mut i) = (0, 0);
        while i < raw.len() {
            if raw[i] == b'\\' {
                if let Some(out) = raw.get(i + 1).and_then(|&n| escape(quote, n)) {
                    emit(&raw[run..i]);
                    emit(out);
                    i += 2;
                    run = i;
                    continue;
                }
            }
            i += 1;
        }
        emit(&raw[run..]);
    } else {
        emit(raw);
    }
}

fn decoded_len(raw: &[u8], quote: Quote) -> usize {
    let mut len = 0;
    decode(raw, quote, |run| len += run.len());
    len
}

/// One `${name}` or `${name:-default}`, offsets relative to the value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reference {
    whole: Range<usize>,
    name: Range<usize>,
    default: Option<Range<usize>>,
}

/// python-dotenv's `\$\{([^}:]*)(?::-([^}]*))?\}` with `finditer`.
///
/// The structural characters `$ { } : -` are never the second byte of an
/// escape, so matching the raw bytes finds what Python finds in the decoded
/// string. Linear: the first `}` or `:` after a `${` is remembered for the
/// next `${` before it.
fn references(raw: &[u8], mut found: impl FnMut(Reference)) {
    let find = |from: usize, what: &dyn Fn(u8) -> bool| {
        raw[from..].iter().position(|&b| what(b)).map(|i| from + i)
    };
    let (mut i, mut stop) = (0, None::<usize>);
    while let Some(dollar) = find(i, &|b| b == b'$') {
        if raw.get(dollar + 1) != Some(&b'{') {
            i = dollar + 1;
            continue;
        }
        let from = dollar + 2;
        let j = match stop {
            Some(s) if s >= from => s,
            _ => match find(from, &|b| b == b'}' || b == b':') {
                Some(s) => s,
                // No `}` or `:` after here: no later match either.
                None => return,
            },
        };
        stop = Some(j);
        if raw[j] == b'}' {
            found(Reference {
                whole: dollar..j + 1,
                name: from..j,
                default: None,
            });
            i = j + 1;
        } else if raw.get(j + 1) == Some(&b'-') {
            // No `}` after the `:-`, and none before it: nothing more.
            let Some(close) = find(j + 2, &|b| b == b'}') else {
                return;
            };
            found(Reference {
                whole: dollar..close + 1,
                name: from..j,
                default: Some(j + 2..close),
            });
            i = close + 1;
        } else {
            i = dollar + 1;
        }
    }
}

/// Where a resolved value's bytes are: in the text as written, or in the
/// buffer [`build`] fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    Text(Range<usize>),
    Built(Range<usize>),
}

impl Located {
    pub fn len(&self) -> usize {
        match self {
            Located::Text(r) | Located::Built(r) => r.len(),
        }
    }
}

enum Piece {
    /// Text to decode with the value's escapes.
    Literal(Range<usize>, Quote),
    /// An earlier value.
    Earlier(Located),
    /// An environment variable's value, by index in `Resolution::env`.
    Env(usize),
}

/// A `${NAME}` without a default that neither the file (before it) nor the
/// environment defines. `name` is None unless it is an identifier
/// (`[A-Za-z_][A-Za-z0-9_]*`) in a value made of references alone
/// (`${A}`, `${A}${B}`): in any other value a `${...}` may as well be a
/// piece of a secret (`Xk9${q7Zp2LmW}v!`), and is not repeated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undefined {
    pub binding: usize,
    pub name: Option<String>,
}

/// The interpolation went past the size limit, at this binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub binding: usize,
}

/// Every binding's final value, planned; [`build`] writes the built ones.
/// Not `Debug`: it holds environment values.
#[derive(Default)]
pub struct Resolution {
    /// Per binding: None for a key without `=`.
    pub values: Vec<Option<Located>>,
    pub built_len: usize,
    pub undefined: Vec<Undefined>,
    pieces: Vec<Piece>,
    /// (pieces, destination in the built buffer), in binding order.
    jobs: Vec<(Range<usize>, Range<usize>)>,
    /// Environment values read while planning, zeroed when dropped.
    env: Vec<Zeroizing<Vec<u8>>>,
}

impl Resolution {
    fn piece_len(&self, piece: &Piece, text: &[u8]) -> usize {
        match piece {
            Piece::Literal(r, quote) => decoded_len(&text[r.clone()], *quote),
            Piece::Earlier(at) => at.len(),
            Piece::Env(i) => self.env[*i].len(),
        }
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// What a key's name looks like: ASCII letters, digits, `_`, `.` and `-`,
/// not starting with a digit, `.` or `-`. A line of base64 key material
/// often does not (it has `+`, `/` or `=`, or starts with a digit); an
/// unquoted multi-line value's lines parse as keys, and names are shown.
pub fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| matches!(c, '_' | '.' | '-') || c.is_ascii_alphanumeric())
}

/// Whether `NAME=value` could be the last line of a base64 block (with no
/// PEM armour around it to tell): base64 ends in `=` padding, so such a line
/// parses as `NAME==` (the value `=`) or `NAME=` (an empty value), `NAME`
/// being base64 letters and digits. Two `=` are taken for padding whatever
/// the name; one, only under a name that mixes lower case, upper case and
/// digits as random base64 does and names seldom do. A quoted empty value
/// (`NAME=''`) is never taken for padding.
pub fn could_be_base64_tail(name: &str, value: &RawValue, text: &str) -> bool {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    if value.quote != Quote::Unquoted || name.is_empty() || !name.bytes().all(b64) {
        return false;
    }
    let has = |class: fn(&u8) -> bool| name.as_bytes().iter().any(class);
    match &text[value.span.clone()] {
        "=" => true,
        "" => has(u8::is_ascii_lowercase) && has(u8::is_ascii_uppercase) && has(u8::is_ascii_digit),
        _ => false,
    }
}

/// The most that `${...}` expansion may build, in bytes, for a text of
/// `text_len` bytes read with `max_size`: 1024 times the text (a value
/// referred to hundreds of times is ordinary), at least `max_size`, and no
/// more than 1 GiB unless `max_size` is larger. A bound against exponential
/// growth (`A1=${A0}${A0}`, `A2=${A1}${A1}`, ...), which python-dotenv does
/// not have.
pub fn expansion_limit(text_len: usize, max_size: usize) -> usize {
    const FACTOR: usize = 1024;
    const CEILING: usize = 1 << 30;
    text_len.saturating_mul(FACTOR).min(CEILING).max(max_size)
}

/// Plans the final values with python-dotenv's rules for `dotenv_values()`
/// (`override=True`). `env` looks a name up in the process environment.
/// The built values may total at most `limit` bytes.
pub fn resolve(
    text: &str,
    parsed: &Parsed,
    interpolate: bool,
    limit: usize,
    env: &mut dyn FnMut(&str) -> Option<Zeroizing<Vec<u8>>>,
) -> Result<Resolution, TooLarge> {
    let bytes = text.as_bytes();
    let mut res = Resolution {
        values: Vec::with_capacity(parsed.bindings.len()),
        ..Resolution::default()
    };
    // Per key: its binding seen last so far (what `${KEY}` refers to).
    let mut latest: Vec<Option<usize>> = vec![None; parsed.keys.len()];
    for (index, binding) in parsed.bindings.iter().enumerate() {
        let Some(raw) = &binding.value else {
            res.values.push(None);
            latest[binding.key] = Some(index);
            continue;
        };
        let first_piece = res.pieces.len();
        let span = raw.span.clone();
        let value = &bytes[span.clone()];
        let mut built = false;
        if interpolate && value.windows(2).any(|w| w == b"${") {
            let mut refs = Vec::new();
            references(value, |r| refs.push(r));
            let mut tiled = 0;
            for r in &refs {
                if r.whole.start == tiled {
                    tiled = r.whole.end;
                }
            }
            let only_references = tiled == value.len();
            let mut cursor = 0;
            for r in refs {
                built = true;
                let at = |r: &Range<usize>| span.start + r.start..span.start + r.end;
                if r.whole.start > cursor {
                    res.pieces
                        .push(Piece::Literal(at(&(cursor..r.whole.start)), raw.quote));
                }
                cursor = r.whole.end;
                let name_raw = &value[r.name.clone()];
                // A name with escapes is decoded into memory that is zeroed
                // afterwards (it may be part of a secret).
                let decoded;
                let name = if name_raw.contains(&b'\\') {
                    let mut owned = Zeroizing::new(Vec::with_capacity(name_raw.len()));
                    decode(name_raw, raw.quote, |run| owned.extend_from_slice(run));
                    decoded = owned;
                    std::str::from_utf8(&decoded).unwrap_or_default()
                } else {
                    std::str::from_utf8(name_raw).unwrap_or_default()
                };
                let earlier = parsed.position(name).and_then(|k| latest[k]);
                if let Some(earlier) = earlier {
                    if let Some(at) = &res.values[earlier] {
                        res.pieces.push(Piece::Earlier(at.clone()));
                    }
                } else if let Some(found) = env(name) {
                    res.pieces.push(Piece::Env(res.env.len()));
                    res.env.push(found);
                } else if let Some(default) = &r.default {
                    res.pieces.push(Piece::Literal(at(default), raw.quote));
                } else {
                    res.undefined.push(Undefined {
                        binding: index,
                        name: (only_references && is_identifier(name)).then(|| name.to_owned()),
                    });
                }
            }
            if built && cursor < value.len() {
                res.pieces
                    .push(Piece::Literal(span.start + cursor..span.end, raw.quote));
            }
        }
        if !built && decoded_len(value, raw.quote) != value.len() {
            built = true;
            res.pieces.push(Piece::Literal(span.clone(), raw.quote));
        }
        let located = if built {
            let pieces = first_piece..res.pieces.len();
            let len = res.pieces[pieces.clone()]
                .iter()
                .try_fold(0usize, |sum, p| sum.checked_add(res.piece_len(p, bytes)))
                .ok_or(TooLarge { binding: index })?;
            let dest = res.built_len..res.built_len + len;
            res.built_len = res
                .built_len
                .checked_add(len)
                .filter(|&total| total <= limit)
                .ok_or(TooLarge { binding: index })?;
            res.jobs.push((pieces, dest.clone()));
            Located::Built(dest)
        } else {
            Located::Text(span)
        };
        res.values.push(Some(located));
        latest[binding.key] = Some(index);
    }
    Ok(res)
}

/// Writes every built value into `out` (`res.built_len` bytes).
pub fn build(text: &[u8], res: &Resolution, out: &mut [u8]) {
    debug_assert_eq!(out.len(), res.built_len);
    for (pieces, dest) in &res.jobs {
        // Earlier values lie before `dest`: read them from `done`.
        let (done, rest) = out.split_at_mut(dest.start);
        let mut w = 0;
        let mut put = |run: &[u8]| {
            rest[w..w + run.len()].copy_from_slice(run);
            w += run.len();
        };
        for piece in &res.pieces[pieces.clone()] {
            match piece {
                Piece::Literal(r, quote) => decode(&text[r.clone()], *quote, &mut put),
                Piece::Earlier(Located::Text(r)) => put(&text[r.clone()]),
                Piece::Earlier(Located::Built(r)) => put(&done[r.clone()]),
                Piece::Env(i) => put(&res.env[*i]),
            }
        }
        debug_assert_eq!(w, dest.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (key, line, value) as dotenv_values() would give them, from an
    /// environment that holds only `EXT=ext`.
    fn values(src: &str) -> Vec<(String, usize, Option<Vec<u8>>)> {
        values_with(src, true)
    }

    fn values_with(src: &str, interpolate: bool) -> Vec<(String, usize, Option<Vec<u8>>)> {
        let mut buf = src.as_bytes().to_vec();
        let len = normalize_newlines(&mut buf);
        let text = check_text(&buf[..len]).unwrap();
        let parsed = parse(text);
        let mut env = |name: &str| (name == "EXT").then(|| Zeroizing::new(b"ext".to_vec()));
        let res = resolve(text, &parsed, interpolate, usize::MAX, &mut env).unwrap();
        let mut built = vec![0u8; res.built_len];
        build(text.as_bytes(), &res, &mut built);
        parsed
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let value = res.values[k.last].as_ref().map(|at| match at {
                    Located::Text(r) => text.as_bytes()[r.clone()].to_vec(),
                    Located::Built(r) => built[r.clone()].to_vec(),
                });
                (
                    parsed.name(i).to_string(),
                    parsed.bindings[k.last].line,
                    value,
                )
            })
            .collect()
    }

    fn one(src: &str) -> Option<Vec<u8>> {
        let all = values(src);
        assert_eq!(all.len(), 1, "{src:?}");
        all.into_iter().next().unwrap().2
    }

    fn problems(src: &str) -> Vec<(usize, Problem)> {
        let mut buf = src.as_bytes().to_vec();
        let len = normalize_newlines(&mut buf);
        parse(check_text(&buf[..len]).unwrap())
            .skipped
            .into_iter()
            .map(|s| (s.line, s.problem))
            .collect()
    }

    fn v(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn newlines_are_normalized_like_text_mode() {
        let mut buf = b"a\r\nb\rc\n\r\r\nd\r".to_vec();
        let len = normalize_newlines(&mut buf);
        assert_eq!(&buf[..len], b"a\nb\nc\n\n\nd\n");
        assert!(buf[len..].iter().all(|&b| b == 0));
        let mut plain = b"no carriage returns\n".to_vec();
        assert_eq!(normalize_newlines(&mut plain), plain.len());
    }

    #[test]
    fn input_checks_name_the_line() {
        assert_eq!(check_text(b"A=1\nB=\xff\n"), Err(NotUtf8 { line: 2 }));
        assert_eq!(check_text(b"\x00\n\xff"), Err(NotUtf8 { line: 2 }));
        assert_eq!(check_text(b"\xed\xa0\x80"), Err(NotUtf8 { line: 1 }));
        assert!(check_text("ключ=значение".as_bytes()).is_ok());
        // NUL is text, as for python-dotenv; its first line is told apart.
        assert!(check_text(b"A=1\n\nB=\x00").is_ok());
        assert_eq!(first_nul_line(b"A=1\n\nB=\x00\n\x00"), Some(3));
        assert_eq!(first_nul_line(b"A=1\n"), None);
        assert_eq!(
            values("# c\x00\nA=x\x00y\nB\x00=1"),
            vec![("A".into(), 2, v("x\0y")), ("B\0".into(), 3, v("1"))]
        );
    }

    #[test]
    fn python_whitespace() {
        for c in [
            '\t', '\n', '\x0b', '\x0c', '\r', '\x1c', '\x1f', ' ', '\u{85}', '\u{a0}', '\u{2007}',
            '\u{3000}',
        ] {
            assert!(is_space(c), "{c:?}");
        }
        for c in ['\u{180e}', '\u{200b}', '\u{feff}', 'a', '\x1b'] {
            assert!(!is_space(c), "{c:?}");
        }
    }

    #[test]
    fn plain_bindings_comments_and_export() {
        let got = values("# comment\nA=1\n  export B = two  \nexport\tC=3 # c\n\nD\n");
        assert_eq!(
            got,
            vec![
                ("A".into(), 2, v("1")),
                ("B".into(), 3, v("two")),
                ("C".into(), 4, v("3")),
                ("D".into(), 6, None),
            ]
        );
        assert_eq!(
            values("export=1\nexportX=2\nexport #c\nexport"),
            vec![("export".into(), 4, None), ("exportX".into(), 2, v("2"))]
        );
        assert_eq!(values("export")[0], ("export".into(), 1, None));
    }

    #[test]
    fn unquoted_values_and_inline_comments() {
        assert_eq!(one("A=x #c"), v("x"));
        assert_eq!(one("A=x#c"), v("x#c"));
        assert_eq!(one("A=#c"), v("#c"));
        assert_eq!(one("A= #c"), v(""));
        assert_eq!(one("A=\t# c 'x"), v(""));
        assert_eq!(one("A =\u{a0}#"), v(""));
        assert_eq!(one("A= x#c"), v("x#c"));
        assert_eq!(one("A= '#c'"), v("#c"));
        assert_eq!(values("A= #c\nB=2")[1], ("B".into(), 2, v("2")));
        assert_eq!(one("A=a b  c   "), v("a b  c"));
        assert_eq!(one("A=a \x0b# c"), v("a"));
        assert_eq!(one("A=b\u{a0}#c"), v("b"));
        assert_eq!(one("A=c\x1c"), v("c"));
        assert_eq!(one("A=\u{3000}x"), v("x"));
        assert_eq!(one("A="), v(""));
        assert_eq!(one("A=\n"), v(""));
        assert_eq!(one("A='a\\'b'"), v("a'b"));
        assert_eq!(one("A=it's"), v("it's"));
    }

    #[test]
    fn quoted_values_and_escapes() {
        assert_eq!(
            one(r#"A="\n\t\\\'\"\a\b\f\r\v\x41\u0041""#),
            Some(b"\n\t\\'\"\x07\x08\x0c\r\x0b\\x41\\u0041".to_vec())
        );
        assert_eq!(one(r"A='\n\\\''"), v("\\n\\'"));
        assert_eq!(one("A='  sp  '  # c"), v("  sp  "));
        assert_eq!(one("A=\"x\"#c"), v("x"));
        assert_eq!(one("A=\"a\r\nb\"\r\n"), v("a\nb"));
        assert_eq!(one("A=\"\\\\\\\\n\""), v("\\\\n"));
        assert_eq!(one("A=''"), v(""));
    }

    #[test]
    fn a_backslash_always_takes_the_next_character_in_quotes() {
        // An escaped quote never closes the value: no backtracking to it.
        assert_eq!(
            problems("A='abc\\'\nB=2"),
            vec![(1, Problem::UnclosedValue(Quote::Single))]
        );
        assert_eq!(values("A='abc\\'\nB=2"), vec![("B".into(), 2, v("2"))]);
        assert_eq!(
            problems("A=\"x\\\""),
            vec![(1, Problem::UnclosedValue(Quote::Double))]
        );
        // A backslash as the last character escapes nothing.
        assert_eq!(
            problems("A='x\\"),
            vec![(1, Problem::UnclosedValue(Quote::Single))]
        );
        // An escaped backslash, then the closing quote.
        assert_eq!(
            values("A='x\\\\'\nB='y'\nC=3"),
            vec![
                ("A".into(), 1, v("x\\")),
                ("B".into(), 2, v("y")),
                ("C".into(), 3, v("3"))
            ]
        );
        assert_eq!(one("A=\"x\\\\\" # c"), v("x\\"));
        assert_eq!(one("A='a\\'b\\'c\nd'"), v("a'b'c\nd"));
        // An escaped newline or other character stays as written.
        assert_eq!(one("A='a\\\nb\\q'"), v("a\\\nb\\q"));
        assert_eq!(one("A=\"\\\u{e9}\""), v("\\\u{e9}"));
        assert_eq!(one("A=\"\\\\\\\"\\\\\""), v("\\\"\\"));
    }

    #[test]
    fn keys_quoted_and_odd() {
        assert_eq!(
            values("'a b'=1\n'c\nd'=2"),
            vec![("a b".into(), 1, v("1")), ("c\nd".into(), 2, v("2"))]
        );
        assert_eq!(values("\"Q\"=1"), vec![("\"Q\"".into(), 1, v("1"))]);
        assert_eq!(values("\u{feff}A=1\nB=2")[0], ("A".into(), 1, v("1")));
        assert_eq!(values("\u{feff}# c\nA=1"), vec![("A".into(), 2, v("1"))]);
        assert_eq!(values("\u{feff}\u{feff}A=1")[0].0, "\u{feff}A");
        assert_eq!(values("A=\u{feff}")[0].2, v("\u{feff}"));
        assert_eq!(values("A.B-C/D=1")[0].0, "A.B-C/D");
    }

    #[test]
    fn skipped_statements_and_recovery() {
        let cases = [
            ("=x", Problem::NoKeyBeforeEquals),
            ("export =1", Problem::NoKeyBeforeEquals),
            ("export  \nA=1", Problem::ExportWithoutKey),
            ("A B", Problem::TextAfterKey),
            ("'k", Problem::UnclosedQuotedKey),
            ("''=1", Problem::EmptyQuotedKey),
            ("B='open", Problem::UnclosedValue(Quote::Single)),
            ("C=\"open", Problem::UnclosedValue(Quote::Double)),
            ("D=\"v\" junk", Problem::TextAfterValue),
        ];
        for (src, problem) in cases {
            assert_eq!(problems(src), vec![(1, problem)], "{src:?}");
        }
        // A quoted key or value runs on to the next quote, lines away, as
        // python-dotenv's regular expressions do; the skip then ends the
        // line where parsing stopped.
        assert_eq!(problems("'k\nB='v\nC=1"), vec![(1, Problem::TextAfterKey)]);
        assert_eq!(values("'k\nB='v\nC=1"), vec![("C".into(), 3, v("1"))]);
        // python-dotenv names the line where its statement began, blank lines
        // included; this parser names the first line with text on it.
        assert_eq!(problems("\n\n  A B\nC=1"), vec![(3, Problem::TextAfterKey)]);
        assert_eq!(values("\n\n  A B\nC=1"), vec![("C".into(), 4, v("1"))]);
    }

    #[test]
    fn duplicates_keep_the_first_position_and_the_last_value() {
        let got = values("A=1\nB=${A}\nA=2\nC=${A}\nA");
        assert_eq!(
            got,
            vec![
                ("A".into(), 5, None),
                ("B".into(), 2, v("1")),
                ("C".into(), 4, v("2"))
            ]
        );
        let mut buf = b"A=1\nB=2\nA=3\nA=4".to_vec();
        let len = normalize_newlines(&mut buf);
        let parsed = parse(std::str::from_utf8(&buf[..len]).unwrap());
        assert_eq!(parsed.keys.len(), 2);
        assert_eq!((parsed.keys[0].last, parsed.keys[0].count), (3, 3));
        assert_eq!(parsed.duplicates(), vec![(0, vec![1, 3, 4])]);
        assert_eq!(parsed.position("B"), Some(1));
        assert_eq!(parsed.position("C"), None);
    }

    #[test]
    fn many_names_grow_the_names_buffer_and_stay_findable() {
        let text: String = (0..5000)
            .map(|i| format!("NAME_{i}=v\nNAME_{}=again\n", i / 2))
            .collect();
        let parsed = parse(&text);
        assert_eq!(parsed.keys.len(), 5000);
        for i in [0, 1, 255, 4999] {
            let name = format!("NAME_{i}");
            assert_eq!(parsed.name(i), name);
            assert_eq!(parsed.position(&name), Some(i));
        }
        assert_eq!(parsed.position("NAME_5000"), None);
        assert_eq!(
            parsed.keys[0].count, 3,
            "NAME_0: once, then again for i = 0 and 1"
        );
    }

    #[test]
    fn interpolation_follows_python_dotenv() {
        assert_eq!(one("A=x${EXT}y"), v("xexty"));
        assert_eq!(one("A='x${EXT}y'"), v("xexty"));
        assert_eq!(values_with("A=${EXT}", false)[0].2, v("${EXT}"));
        let got =
            values("A\nB=${A:-def}\nC=${EXT:-d}\nD=${NOPE:-d}\nE=${NOPE}\nF=${:-e}\nG=${X:y}");
        let vals: Vec<_> = got.into_iter().map(|g| g.2).collect();
        assert_eq!(
            vals,
            vec![None, v(""), v("ext"), v("d"), v(""), v("e"), v("${X:y}")]
        );
        assert_eq!(one("E=${E:-e}${E}"), v("e"));
        assert_eq!(values("EXT=mine\nA=${EXT}")[1].2, v("mine"));
        assert_eq!(one("A=${B${C}}"), v("}"));
        assert_eq!(one("A=$${EXT}$"), v("$ext$"));
        assert_eq!(one("A=${A:-x:-y}}"), v("x:-y}"));
        assert_eq!(one("A=\"${EXT:-a\\tb}\\n\""), v("ext\n"));
        assert_eq!(one("A=\"${NOPE:-a\\tb}\""), v("a\tb"));
        assert_eq!(one("A=${:${EXT}"), v("${:ext"));
        assert_eq!(one("A=${NOPE:-"), v("${NOPE:-"));
    }

    #[test]
    fn undefined_references_are_listed_with_safe_names() {
        let mut buf = b"A=${NOPE}${EXT}${B:-d}\nB=${not a name}\nC\nD=${C}".to_vec();
        let len = normalize_newlines(&mut buf);
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        let parsed = parse(text);
        let mut env = |name: &str| (name == "EXT").then(|| Zeroizing::new(b"ext".to_vec()));
        let res = resolve(text, &parsed, true, usize::MAX, &mut env).unwrap();
        assert_eq!(
            res.undefined,
            vec![
                Undefined {
                    binding: 0,
                    name: Some("NOPE".into())
                },
                Undefined {
                    binding: 1,
                    name: None
                },
            ]
        );
    }

    #[test]
    fn values_left_as_written_point_into_the_text() {
        let text = "A=plain\nB='esc\\''\nC=${EXT}";
        let parsed = parse(text);
        let mut env = |_: &str| Some(Zeroizing::new(b"e".to_vec()));
        let res = resolve(text, &parsed, true, usize::MAX, &mut env).unwrap();
        assert_eq!(res.values[0], Some(Located::Text(2..7)));
        assert!(matches!(res.values[1], Some(Located::Built(_))));
        assert!(matches!(res.values[2], Some(Located::Built(_))));
        assert_eq!(res.built_len, 5);
    }

    #[test]
    fn interpolation_that_grows_past_the_limit_is_refused() {
        let mut src = String::from("A0=xxxxxxxx\n");
        for i in 1..40 {
            src.push_str(&format!("A{i}=${{A{p}}}${{A{p}}}\n", p = i - 1));
        }
        let parsed = parse(&src);
        let mut env = |_: &str| None;
        let err = resolve(&src, &parsed, true, 1 << 20, &mut env).err();
        assert_eq!(err, Some(TooLarge { binding: 17 }));
    }

    #[test]
    fn references_match_the_regex() {
        let find = |s: &str| {
            let mut out = Vec::new();
            references(s.as_bytes(), |r| out.push((r.whole, r.name, r.default)));
            out
        };
        assert_eq!(find("${A}"), vec![(0..4, 2..3, None)]);
        assert_eq!(
            find("x${A:-d}y${B}"),
            vec![(1..8, 3..4, Some(6..7)), (9..13, 11..12, None)]
        );
        assert_eq!(find("${A:b}${C}"), vec![(6..10, 8..9, None)]);
        assert_eq!(find("${${${:${A}"), vec![(7..11, 9..10, None)]);
        assert_eq!(find("${${${A}"), vec![(0..8, 2..7, None)]);
        assert_eq!(find("${A:-x"), vec![]);
        assert_eq!(find("${}"), vec![(0..3, 2..2, None)]);
    }

    #[test]
    fn parsing_is_linear() {
        // Shapes that make a naive scanner quadratic: many unclosed `${`,
        // one quote that never closes, many statements.
        let n = 200_000;
        let dollars = format!("A={}", "${".repeat(n));
        let refs = format!("A={}", "${x:".repeat(n));
        let open = format!("A='{}", "x\n".repeat(n));
        let escaped = format!("A='{}", "\\'\n".repeat(n));
        let many: String = (0..n).map(|i| format!("K{i}=v\n")).collect();
        for src in [dollars, refs, open, escaped, many] {
            let start = std::time::Instant::now();
            let parsed = parse(&src);
            let mut env = |_: &str| None;
            resolve(&src, &parsed, true, usize::MAX, &mut env).unwrap();
            assert!(start.elapsed() < std::time::Duration::from_secs(2));
        }
    }

    /// The keys of `src` that `Parsed::is_key` accepts, and its problems.
    fn keys_and_problems(src: &str) -> (Vec<String>, Vec<(usize, Problem)>) {
        let parsed = parse(src);
        let keys = (0..parsed.keys.len())
            .filter(|&k| parsed.is_key(src, k))
            .map(|k| parsed.name(k).to_string())
            .collect();
        let problems = parsed.skipped.iter().map(|s| (s.line, s.problem)).collect();
        (keys, problems)
    }

    const BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n\
                        q+Zx/3Yb0Lw8SfNu2Kp1Rt4VmEo9HcJ6iDgA5zXyWnTeQsMUlrPBaF\n\
                        RkcJ9xUxK8mBd7Qw3TzXa1vLmN0pQrStUvWxYz==\n";

    #[test]
    fn an_unquoted_pem_is_one_skipped_statement_up_to_its_end_line() {
        let src = format!(
            "A=1\nTLS_KEY=-----BEGIN PRIVATE KEY-----\n{BODY}-----END PRIVATE KEY-----\nB=2\n"
        );
        let parsed = parse(&src);
        // No line of it is a key, not even the one that opened it.
        let names: Vec<_> = (0..parsed.keys.len()).map(|k| parsed.name(k)).collect();
        assert_eq!(names, ["A", "B"]);
        assert_eq!(
            keys_and_problems(&src).1,
            vec![(2, Problem::UnquotedPem { last: 6 })]
        );
        assert_eq!(values(&src)[1], ("B".into(), 7, v("2")));
        assert!(!Problem::UnquotedPem { last: 6 }
            .message()
            .contains("PRIVATE"));
    }

    #[test]
    fn pem_blocks_in_every_shape() {
        let end = "-----END PRIVATE KEY-----";
        /// A file, the keys `is_key` accepts, the problems.
        type Case = (String, Vec<&'static str>, Vec<(usize, Problem)>);
        let cases: Vec<Case> = vec![
            // No -----END: the block stops at the first line that cannot
            // be in armour, and what follows is read again.
            (
                format!("K=-----BEGIN PRIVATE KEY-----\n{BODY}C=3\nD\n"),
                vec!["C"],
                vec![(1, Problem::UnquotedPem { last: 4 })],
            ),
            // A truncated value alone: the opening line only.
            (
                "K=-----BEGIN X-----\nC=3\n".into(),
                vec!["C"],
                vec![(1, Problem::UnquotedPem { last: 1 })],
            ),
            // Armour with no key: python-dotenv skips that line as a
            // statement and reads the body as keys.
            (
                format!("K=\n  -----BEGIN PRIVATE KEY-----\n{BODY}{end}\nC=3"),
                vec!["K", "C"],
                vec![(2, Problem::UnquotedPem { last: 6 })],
            ),
            // RFC 1421 headers and a blank line; export; a comment after.
            (
                format!(
                    "export K=-----BEGIN RSA PRIVATE KEY----- # c\nProc-Type: 4,ENCRYPTED\n\
                     DEK-Info: AES-256-CBC,B12707EF\n\n{BODY}-----END RSA PRIVATE KEY-----\nC=3\n"
                ),
                vec!["C"],
                vec![(1, Problem::UnquotedPem { last: 8 })],
            ),
            // A bundle: blank lines, then the next certificate goes on.
            (
                format!(
                    "CA=-----BEGIN CERTIFICATE-----\n{BODY}-----END CERTIFICATE-----\n\n\
                     -----BEGIN CERTIFICATE-----\n{BODY}-----END CERTIFICATE-----\n\nC=3\n"
                ),
                vec!["C"],
                vec![(1, Problem::UnquotedPem { last: 11 })],
            ),
            // OpenPGP: headers, a blank line, the body, a '=' checksum.
            (
                format!(
                    "G=-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: x 1\n\n{BODY}=Zx9a\n\
                     -----END PGP PRIVATE KEY BLOCK-----\nC=3\n"
                ),
                vec!["C"],
                vec![(1, Problem::UnquotedPem { last: 8 })],
            ),
            // Quoted and whole, or complete on one line: a value like any.
            (
                format!("K=\"-----BEGIN PRIVATE KEY-----\n{BODY}{end}\"\nC=3\n"),
                vec!["K", "C"],
                vec![],
            ),
            (
                format!("K=-----BEGIN X----- abc {end}\nC=3\n"),
                vec!["K", "C"],
                vec![],
            ),
            // Quoted but cut after the first line: still a broken value.
            (
                format!("K='-----BEGIN PRIVATE KEY-----'\n{BODY}{end}\nC=3\n"),
                vec!["C"],
                vec![(1, Problem::UnquotedPem { last: 5 })],
            ),
            // Not armour: no space after BEGIN, or not at the start.
            (
                "K=-----BEGIN-----\nC=3\nD=x-----BEGIN X-----\n".into(),
                vec!["K", "C", "D"],
                vec![],
            ),
        ];
        for (src, keys, problems) in cases {
            let (got_keys, got_problems) = keys_and_problems(&src);
            assert_eq!(got_keys, keys, "{src:?}");
            assert_eq!(got_problems, problems, "{src:?}");
        }
    }

    #[test]
    fn lines_that_can_be_inside_armour() {
        for line in [
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
            "q+Z/3Yb0",
            "AQAB",
            "Aw==",
            "Kx9=",
            "=Zx9a",
            "Proc-Type: 4,ENCRYPTED",
            "DEK-Info: AES-128-CBC,5A",
            "Comment:",
            "KEY=",
            "KEY==",
        ] {
            assert!(pem_body_line(line), "{line:?}");
        }
        for line in [
            "A=1",
            "DB_URL=postgres://x",
            "export A=1",
            "A===",
            "==",
            "=",
            "A_B",
            "a.b",
            "-----END X-----",
            "Key:value",
            "1x: y",
            "A B",
        ] {
            assert!(!pem_body_line(line), "{line:?}");
        }
    }

    #[test]
    fn a_last_line_of_base64_is_not_a_key() {
        let (keys, problems) = keys_and_problems(
            "A=1\nRkcJ9xUxK8mBd7Qw3TzXa1vLmN0pQrStUvWxYz==\nAw==\nZm9vYmFy1Q=\n\
             EMPTY=\nDEBUG=\nlogLevel=\nnode2=''\nx+y/z==\nBARE\nT=${A}\nV===\n",
        );
        // `V===` is V with the value "==": not padding.
        assert_eq!(keys, ["A", "EMPTY", "DEBUG", "logLevel", "node2", "T", "V"]);
        assert!(problems.is_empty(), "none of these is a statement error");
        // Blanks around the value change nothing; quotes do.
        let (keys, _) = keys_and_problems("W= = \nX='='\nY=\"\"\n");
        assert_eq!(keys, ["X", "Y"]);
    }

    #[test]
    fn expansion_is_capped_in_proportion_to_the_text() {
        assert_eq!(expansion_limit(100, 64 << 20), 64 << 20);
        assert_eq!(expansion_limit(108_000, 64 << 20), 108_000 * 1024);
        assert_eq!(expansion_limit(64 << 20, 64 << 20), 1 << 30);
        assert_eq!(expansion_limit(usize::MAX, 2 << 30), 2 << 30);
        // 700 references to a 100 KB value: 70 MB, under the cap.
        let mut src = format!("BIG={}\n", "v".repeat(100_000));
        for i in 0..700 {
            src.push_str(&format!("R{i}=${{BIG}}\n"));
        }
        let parsed = parse(&src);
        let mut env = |_: &str| None;
        let limit = expansion_limit(src.len(), 64 << 20);
        let res = resolve(&src, &parsed, true, limit, &mut env).ok().unwrap();
        assert_eq!(res.built_len, 70_000_000);
    }

    #[test]
    fn undefined_names_are_given_only_for_values_of_references_alone() {
        let text = "A=Xk9${q7Zp2LmW}v!\nB=${NOPE}\nC=${X}${Y:-d}${Z}\nD= ${W}\nE=${V}x";
        let parsed = parse(text);
        let mut env = |_: &str| None;
        let res = resolve(text, &parsed, true, usize::MAX, &mut env).unwrap();
        let names: Vec<_> = res
            .undefined
            .iter()
            .map(|u| (u.binding, u.name.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                (0, None),
                (1, Some("NOPE")),
                (2, Some("X")),
                (2, Some("Z")),
                (3, Some("W")),
                (4, None)
            ]
        );
    }
}
