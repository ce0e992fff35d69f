//! A `.env` parser that gives the results of python-dotenv's
//! `dotenv_values()` (1.2.4), working over the file's bytes where they lie
//! (in locked memory), in linear time.
//!
//! Values never become `String`s: the parser returns byte ranges into the
//! text; [`resolve`](fn@resolve) plans each final value as pieces (ranges
//! of the text, earlier values, environment variables) and [`build`] writes
//! the values that escapes or `${...}` change into a buffer the caller
//! provides (a locked one). Key names are public and are copied into
//! `String`s.
//!
//! One file per stage, in the order a caller runs them, and two helpers:
//! - `text`: checks on the raw bytes ([`normalize_newlines`], the [`BOM`],
//!   [`check_text`] for UTF-8, [`first_nul_line`]) and Python's whitespace;
//! - `parse`: statements into bindings, keys and skipped statements
//!   ([`parse`](fn@parse), [`Parsed`]), the unquoted-PEM rule included;
//! - `resolve`: escapes and `${...}` references planned into final values
//!   ([`resolve`](fn@resolve), within [`expansion_limit`]), then written
//!   ([`build`]);
//! - `index`: the parser's hash index of key names ([`KeyIndex`]);
//! - `names`: which names look like keys ([`is_plain_name`]).
//!
//! How python-dotenv reads a file, reproduced here:
//! - the file is opened in text mode, so CRLF and lone CR become LF before
//!   parsing ([`normalize_newlines`]);
//! - one leading BOM is dropped from the text ([`parse`](fn@parse) starts
//!   after it), whatever the encoding: with `utf-8-sig` the codec drops one
//!   first, so a second BOM goes too, while with `utf-8` a second one stays
//!   in the first key;
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
//! the armour are one skipped statement
//! ([`Problem::UnquotedPem`](parse::Problem::UnquotedPem)): no body line
//! becomes a key, and the key is not given its truncated value.

mod index;
mod names;
mod parse;
mod resolve;
mod text;

// The paths the rest of the crate uses: `crate::dotenv::parse`, not
// `crate::dotenv::parse::parse`.
pub use index::KeyIndex;
pub use names::is_plain_name;
pub use parse::parse;
pub use resolve::{build, expansion_limit, resolve, ValueBytes};
pub use text::{check_text, first_nul_line, normalize_newlines, BOM};

// And those only the fuzz targets name, through `crate::fuzzing`, which is
// empty outside a `cargo fuzz` build: in any other build they go unused.
#[allow(unused_imports)]
pub use {
    parse::{Parsed, Quote},
    resolve::Resolution,
    text::is_space,
};

/// Helpers the stages' tests share: each runs the whole pipeline (or the
/// parser) the way `DotenvFile` does, over a `&str`.
#[cfg(test)]
mod test_support {
    use zeroize::Zeroizing;

    use super::parse::Problem;
    use super::*;

    /// (key, line, value) as dotenv_values() would give them, from an
    /// environment that holds only `EXT=ext`.
    pub(super) fn values(src: &str) -> Vec<(String, usize, Option<Vec<u8>>)> {
        values_with(src, true)
    }

    pub(super) fn values_with(
        src: &str,
        interpolate: bool,
    ) -> Vec<(String, usize, Option<Vec<u8>>)> {
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
                    ValueBytes::Verbatim(r) => text.as_bytes()[r.clone()].to_vec(),
                    ValueBytes::Composed(r) => built[r.clone()].to_vec(),
                });
                (
                    parsed.name(i).to_string(),
                    parsed.bindings[k.last].line,
                    value,
                )
            })
            .collect()
    }

    pub(super) fn one(src: &str) -> Option<Vec<u8>> {
        let all = values(src);
        assert_eq!(all.len(), 1, "{src:?}");
        all.into_iter().next().unwrap().2
    }

    pub(super) fn problems(src: &str) -> Vec<(usize, Problem)> {
        let mut buf = src.as_bytes().to_vec();
        let len = normalize_newlines(&mut buf);
        parse(check_text(&buf[..len]).unwrap())
            .skipped
            .into_iter()
            .map(|s| (s.line, s.problem))
            .collect()
    }

    pub(super) fn v(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    /// The keys of `src` that `Parsed::is_key` accepts, and its problems.
    pub(super) fn keys_and_problems(src: &str) -> (Vec<String>, Vec<(usize, Problem)>) {
        let parsed = parse(src);
        let keys = (0..parsed.keys.len())
            .filter(|&k| parsed.is_key(src, k))
            .map(|k| parsed.name(k).to_string())
            .collect();
        let problems = parsed.skipped.iter().map(|s| (s.line, s.problem)).collect();
        (keys, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
