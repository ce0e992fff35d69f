//! The statement parser: text into bindings, keys (each once, with its last
//! binding) and skipped statements, all as ranges of the text; and the
//! unquoted-PEM rule (the module's one deliberate difference from
//! python-dotenv).

use std::borrow::Cow;
use std::ops::Range;

use zeroize::Zeroizing;

use super::index::KeyIndex;
use super::names::{could_be_base64_tail, is_plain_name};
use super::text::{is_blank, is_space, BOM};

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

/// Parses newline-normalized text (see
/// [`normalize_newlines`](super::normalize_newlines)), after one leading
/// BOM if there is one (python-dotenv drops it).
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
            Ok((Some((key, Some(value))), next)) if opens_pem(&text[value.span.clone()]) => {
                let (end, last) = parser.pem_block_end(next);
                if value.quote != Quote::Unquoted && last.is_none() {
                    // A quoted value that only starts like armour (`"-----BEGIN "`),
                    // with no line of armour after it: an ordinary value, as
                    // python-dotenv reads it. With armour lines after it, those
                    // lines would become keys: the statement is skipped whole.
                    parsed.bind(&text[key], line, Some(value));
                    pos = next;
                    continue;
                }
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{keys_and_problems, one, problems, v, values};
    use super::super::text::normalize_newlines;
    use super::*;

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
    fn a_quoted_value_that_only_starts_like_armour_is_a_value() {
        // Found by the differential fuzzer: python-dotenv loads Y.
        let p = parse("Y=\"-----BEGIN \"\nZ=1\n");
        assert!(p.skipped.is_empty());
        assert!(p.position("Y").is_some());
        assert!(p.position("Z").is_some());
        // Quoted on its first line, armour lines after it: skipped whole,
        // so no body line becomes a key.
        let p = parse("K=\"-----BEGIN X-----\"\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END X-----\nZ=1\n");
        assert_eq!(p.skipped.len(), 1);
        assert!(matches!(
            p.skipped[0].problem,
            Problem::UnquotedPem { last: 3 }
        ));
        assert!(p.position("K").is_none());
        assert!(p.position("Z").is_some());
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
}
