// Invariant: for any bytes, the `.env` pipeline (normalize_newlines,
// check_text, parse, resolve, build) neither panics nor grows past a bounded
// amount of memory (the expansion limit below; libFuzzer's -max_len and
// -rss_limit_mb, set by `make fuzz`), and:
// - normalizing newlines leaves no CR, never lengthens the text, zeroes the
//   freed tail and changes nothing when done twice;
// - check_text's answer is true to the bytes (Ok: the same bytes, as text;
//   refused: not UTF-8, or holding a NUL); text it refuses is parsed anyway
//   in its lossy form (parse takes any str);
// - every key is non-empty and appears as a key in the input: on the line
//   of each of its bindings, after blanks and an optional `export `, as
//   `NAME` followed by `=`, `#`, whitespace or the end, or as `'NAME'`;
// - a name is_plain_name accepts is an ASCII name ([A-Za-z_][A-Za-z0-9_.-]*),
//   the only kind that may be shown;
// - keys are unique, in the order of their first binding, each with its
//   last binding and count; binding lines strictly increase; every line
//   reported lies inside the text;
// - value spans lie inside the text on char boundaries: quoted ones between
//   their quotes, unquoted ones inside one line, without trailing whitespace;
// - without interpolation resolve cannot fail under a limit of the text's
//   length, and every value is the naive decoding of its escapes;
// - with interpolation it either stops at a binding that exists or plans at
//   most `LIMIT` bytes, and a value without `${` is the same as without;
// - build writes every byte of the planned buffer (two runs from different
//   fills agree) and the built values tile it in binding order, so each
//   resolved value's length is exactly what build wrote for it;
// - parsing and resolving again give identical results, and dropping one
//   leading BOM before parse (what the `utf-8-sig` codec does) changes no
//   name, line or problem.
#![no_main]

use _native::fuzzing::{
    build, check_text, is_plain_name, is_space, normalize_newlines, parse, resolve, Parsed, Quote,
    Resolution, ValueBytes, BOM,
};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

/// Bytes `${...}` expansion may plan in all (the caller's `max_size`).
const LIMIT: usize = 1 << 18;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let len = normalize_newlines(&mut buf);
    assert!(len <= data.len());
    assert!(!buf[..len].contains(&b'\r'), "a CR survived normalization");
    assert!(
        buf[len..].iter().all(|&b| b == 0),
        "the freed tail is not zeroed"
    );
    let mut again = buf[..len].to_vec();
    assert_eq!(normalize_newlines(&mut again), len);
    assert_eq!(again, buf[..len]);

    let bytes = &buf[..len];
    match check_text(bytes) {
        Ok(text) => {
            assert_eq!(text.as_bytes(), bytes);
            pipeline(text);
        }
        Err(_) => {
            // Only bytes that are not UTF-8 (or, by the rule this parser
            // had first, that hold a NUL) may be refused.
            assert!(std::str::from_utf8(bytes).is_err() || bytes.contains(&0));
            pipeline(&String::from_utf8_lossy(bytes));
        }
    }
});

fn pipeline(text: &str) {
    let parsed = parse(text);
    check_parsed(text, &parsed);

    let again = parse(text);
    assert_eq!(again.keys, parsed.keys);
    assert_eq!(again.bindings, parsed.bindings);
    assert_eq!(again.skipped, parsed.skipped);
    assert_eq!(*again.names, *parsed.names);

    if let Some(rest) = text.strip_prefix(std::str::from_utf8(BOM).unwrap()) {
        if !rest.as_bytes().starts_with(BOM) {
            let stripped = parse(rest);
            let names = |p: &Parsed| -> Vec<String> {
                (0..p.keys.len()).map(|k| p.name(k).to_owned()).collect()
            };
            let lines = |p: &Parsed| p.bindings.iter().map(|b| b.line).collect::<Vec<_>>();
            assert_eq!(names(&stripped), names(&parsed));
            assert_eq!(lines(&stripped), lines(&parsed));
            assert_eq!(stripped.skipped, parsed.skipped);
        }
    }

    // Without interpolation: never too large for the text's own length,
    // and each value is its escapes decoded.
    let (plain, plain_built) =
        resolved(text, &parsed, false, text.len()).expect("decoding escapes never grows a value");
    for (binding, value) in parsed.bindings.iter().zip(&plain.values) {
        let Some(raw) = &binding.value else { continue };
        let got = value_bytes(text, &plain_built, value.as_ref().unwrap());
        assert!(got == naive_decode(&text[raw.span.clone()], raw.quote));
    }

    // With interpolation, under a limit.
    if let Some((res, built)) = resolved(text, &parsed, true, LIMIT) {
        let (res2, built2) =
            resolved(text, &parsed, true, LIMIT).expect("resolve is deterministic");
        assert!(res.values == res2.values && *built == *built2);
        for (index, binding) in parsed.bindings.iter().enumerate() {
            let Some(raw) = &binding.value else { continue };
            if !text[raw.span.clone()].contains("${") {
                let with = value_bytes(text, &built, res.values[index].as_ref().unwrap());
                let without =
                    value_bytes(text, &plain_built, plain.values[index].as_ref().unwrap());
                assert!(with == without, "a value without references changed");
            }
        }
        for u in &res.undefined {
            assert!(u.binding < parsed.bindings.len());
        }
    }
}

/// Resolves and builds; None if the plan went over `limit` (which must then
/// name a binding that exists).
fn resolved(
    text: &str,
    parsed: &Parsed,
    interpolate: bool,
    limit: usize,
) -> Option<(Resolution, Zeroizing<Vec<u8>>)> {
    let mut env = |name: &str| -> Option<Zeroizing<Vec<u8>>> {
        match name {
            "EXT" => Some(Zeroizing::new(b"ext".to_vec())),
            "EMPTY" => Some(Zeroizing::new(Vec::new())),
            "BIG" => Some(Zeroizing::new(vec![b'b'; 4096])),
            _ => None,
        }
    };
    let res = match resolve(text, parsed, interpolate, limit, &mut env) {
        Ok(res) => res,
        Err(too_large) => {
            assert!(too_large.binding < parsed.bindings.len());
            return None;
        }
    };
    assert!(res.built_len <= limit);
    assert_eq!(res.values.len(), parsed.bindings.len());
    let mut zeros = Zeroizing::new(vec![0u8; res.built_len]);
    let mut ones = Zeroizing::new(vec![0xffu8; res.built_len]);
    build(text.as_bytes(), &res, &mut zeros);
    build(text.as_bytes(), &res, &mut ones);
    assert!(*zeros == *ones, "build left bytes of its buffer unwritten");

    // The built values tile the buffer in binding order; a value left in the
    // text is its span, unchanged.
    let mut end = 0;
    for (binding, value) in parsed.bindings.iter().zip(&res.values) {
        match (&binding.value, value) {
            (None, None) => {}
            (Some(raw), Some(ValueBytes::Verbatim(r))) => assert_eq!(*r, raw.span),
            (Some(_), Some(ValueBytes::Composed(r))) => {
                assert_eq!(r.start, end, "built values overlap or leave a gap");
                end = r.end;
            }
            _ => panic!("a value for a binding without '=', or none for one with"),
        }
    }
    assert_eq!(end, res.built_len);
    Some((res, zeros))
}

fn value_bytes<'a>(text: &'a str, built: &'a [u8], at: &ValueBytes) -> &'a [u8] {
    match at {
        ValueBytes::Verbatim(r) => &text.as_bytes()[r.clone()],
        ValueBytes::Composed(r) => &built[r.clone()],
    }
}

/// python-dotenv's escapes, restated: in single quotes `\\` and `\'`; in
/// double quotes those, `\"` and `\a \b \f \n \r \t \v`; nothing unquoted.
fn naive_decode(raw: &str, quote: Quote) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped = match (quote, c, chars.peek()) {
            (Quote::Unquoted, ..) | (_, _, None) => None,
            (_, '\\', Some(&n)) => match (quote, n) {
                (_, '\\') => Some('\\'),
                (_, '\'') => Some('\''),
                (Quote::Double, '"') => Some('"'),
                (Quote::Double, 'a') => Some('\x07'),
                (Quote::Double, 'b') => Some('\x08'),
                (Quote::Double, 'f') => Some('\x0c'),
                (Quote::Double, 'n') => Some('\n'),
                (Quote::Double, 'r') => Some('\r'),
                (Quote::Double, 't') => Some('\t'),
                (Quote::Double, 'v') => Some('\x0b'),
                _ => None,
            },
            _ => None,
        };
        let c = match escaped {
            Some(e) => {
                chars.next();
                e
            }
            None => c,
        };
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
    out
}

/// The rule for names that may be shown, restated (a superset is allowed
/// to narrow, never to widen).
fn naive_plain(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0] == b'_' || b[0].is_ascii_alphabetic())
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

fn check_parsed(text: &str, parsed: &Parsed) {
    let bytes = text.as_bytes();
    let mut starts = vec![0];
    starts.extend(
        bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    let lines = starts.len();

    // Keys: unique, in order of first binding, last binding and count right.
    let mut first = vec![None; parsed.keys.len()];
    let mut last = vec![None; parsed.keys.len()];
    let mut count = vec![0; parsed.keys.len()];
    let mut previous_line = 0;
    for (i, b) in parsed.bindings.iter().enumerate() {
        assert!(b.key < parsed.keys.len());
        assert!(
            b.line > previous_line,
            "two bindings on one line, or out of order"
        );
        assert!(b.line <= lines);
        previous_line = b.line;
        first[b.key].get_or_insert(i);
        last[b.key] = Some(i);
        count[b.key] += 1;
    }
    for (k, key) in parsed.keys.iter().enumerate() {
        let name = parsed.name(k);
        assert!(!name.is_empty());
        assert_eq!(
            parsed.position(name),
            Some(k),
            "a key is not found by its name"
        );
        assert_eq!(Some(key.last), last[k]);
        assert_eq!(key.count, count[k]);
        if k > 0 {
            assert!(
                first[k - 1] < first[k],
                "keys out of order of first binding"
            );
        }
        if is_plain_name(name) {
            assert!(
                naive_plain(name),
                "is_plain_name accepted a name it must not show"
            );
        }
    }
    for s in &parsed.skipped {
        assert!((1..=lines).contains(&s.line));
    }
    let duplicates = parsed.duplicates();
    assert_eq!(
        duplicates.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        (0..parsed.keys.len())
            .filter(|&k| count[k] > 1)
            .collect::<Vec<_>>()
    );

    for b in &parsed.bindings {
        let name = parsed.name(b.key);
        // Where the statement starts: its line's first non-space character
        // (line 1 after the BOM parse skips).
        let mut at = starts[b.line - 1];
        if b.line == 1 && bytes.starts_with(BOM) {
            at = BOM.len();
        }
        at += text[at..]
            .find(|c: char| !is_space(c))
            .expect("a binding on a blank line");
        assert!(at < starts.get(b.line).copied().unwrap_or(usize::MAX));
        if let Some(after) = text[at..].strip_prefix("export") {
            let blanks = after.len()
                - after
                    .trim_start_matches(|c: char| c != '\n' && is_space(c))
                    .len();
            if blanks > 0 {
                at += "export".len() + blanks;
            }
        }
        let rest = &text[at..];
        let appears = if let Some(quoted) = rest.strip_prefix('\'') {
            !name.contains('\'')
                && quoted.starts_with(name)
                && quoted[name.len()..].starts_with('\'')
        } else {
            rest.starts_with(name)
                && !name.contains(|c: char| c == '=' || c == '#' || is_space(c))
                && rest[name.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == '=' || c == '#' || is_space(c))
        };
        assert!(appears, "a key that is not written as a key on its line");

        let Some(raw) = &b.value else { continue };
        let span = raw.span.clone();
        assert!(span.start <= span.end && span.end <= text.len());
        assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
        assert!(span.start > at);
        match raw.quote {
            Quote::Single | Quote::Double => {
                let q = if raw.quote == Quote::Single {
                    b'\''
                } else {
                    b'"'
                };
                assert_eq!(bytes[span.start - 1], q);
                assert_eq!(bytes.get(span.end), Some(&q));
            }
            Quote::Unquoted => {
                let value = &text[span.clone()];
                assert!(!value.contains('\n'));
                assert!(!value.ends_with(is_space));
            }
        }
    }
}
