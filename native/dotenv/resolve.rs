//! Values as `dotenv_values()` gives them: escapes decoded and `${...}`
//! references expanded, planned by [`resolve`] as pieces (ranges of the
//! text, earlier values, environment variables) under a size limit, then
//! written by [`build`] into a buffer the caller provides.

use std::ops::Range;

use zeroize::Zeroizing;

use super::names::is_identifier;
use super::parse::{Parsed, Quote};

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

/// Where a resolved value's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueBytes {
    /// A slice of the file's text, as written (no escape, no `${...}`).
    Verbatim(Range<usize>),
    /// A slice of the buffer [`build`] fills: the value once unescaped and
    /// interpolated.
    Composed(Range<usize>),
}

impl ValueBytes {
    pub fn len(&self) -> usize {
        match self {
            ValueBytes::Verbatim(r) | ValueBytes::Composed(r) => r.len(),
        }
    }
}

enum Piece {
    /// Text to decode with the value's escapes.
    Literal(Range<usize>, Quote),
    /// An earlier value.
    Earlier(ValueBytes),
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
    pub values: Vec<Option<ValueBytes>>,
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
            ValueBytes::Composed(dest)
        } else {
            ValueBytes::Verbatim(span)
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
                Piece::Earlier(ValueBytes::Verbatim(r)) => put(&text[r.clone()]),
                Piece::Earlier(ValueBytes::Composed(r)) => put(&done[r.clone()]),
                Piece::Env(i) => put(&res.env[*i]),
            }
        }
        debug_assert_eq!(w, dest.len());
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::test_support::{one, v, values, values_with};
    use super::super::text::normalize_newlines;
    use super::*;

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
        assert_eq!(res.values[0], Some(ValueBytes::Verbatim(2..7)));
        assert!(matches!(res.values[1], Some(ValueBytes::Composed(_))));
        assert!(matches!(res.values[2], Some(ValueBytes::Composed(_))));
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
