//! The forms a secret takes in text: its raw bytes and the encodings a
//! program applies before printing it. Each encoder writes to an output
//! run twice: once to count (so the locked buffer is sized exactly) and
//! once to write straight into locked memory. No form is ever built on the
//! ordinary heap.

/// Secrets (and lines of a multi-line secret) shorter than this are not
/// masked by value: a 5-byte value matches too much ordinary text.
pub const MIN_LEN: usize = 6;

/// Where an encoder's bytes go: a counter, or a writer into locked memory.
pub type Out<'a> = &'a mut dyn FnMut(u8);

fn put(out: Out<'_>, bytes: &[u8]) {
    bytes.iter().for_each(|&b| out(b));
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// The base64 characters that depend on the secret's bits alone when it
/// follows `align` (0, 1 or 2) other bytes in the encoded stream: the one
/// character at each end that mixes in a neighbour's bits is left out (it
/// carries at most 4 bits of the secret), and so is any `=` padding.
fn base64_core(secret: &[u8], align: usize, alphabet: &[u8; 64], out: Out<'_>) {
    let start_bit = 8 * align;
    let end_bit = start_bit + 8 * secret.len();
    let bit = |i: usize| -> u8 {
        let rel = i - start_bit;
        (secret[rel / 8] >> (7 - rel % 8)) & 1
    };
    let first = start_bit.div_ceil(6);
    let last = end_bit / 6; // exclusive
    for c in first..last {
        let v = (0..6).fold(0u8, |acc, k| (acc << 1) | bit(6 * c + k));
        out(alphabet[v as usize]);
    }
}

/// URL percent-encoding: RFC 3986's unreserved bytes kept, the rest `%XX`.
/// `keep_slash` is `urllib.parse.quote`'s default; `plus` is `quote_plus`.
fn percent(secret: &[u8], keep_slash: bool, plus: bool, out: Out<'_>) {
    for &b in secret {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out(b),
            b'/' if keep_slash => out(b),
            b' ' if plus => out(b'+'),
            _ => put(
                out,
                &[
                    b'%',
                    HEX_UPPER[(b >> 4) as usize],
                    HEX_UPPER[(b & 15) as usize],
                ],
            ),
        }
    }
}

/// A JSON string's contents as Python's `json.dumps` writes them
/// (`ensure_ascii` escapes every non-ASCII character as `\uXXXX`, with
/// surrogate pairs). Only for valid UTF-8.
fn json(text: &str, ensure_ascii: bool, out: Out<'_>) {
    let u = |out: Out<'_>, v: u16| {
        put(out, b"\\u");
        for shift in [12, 8, 4, 0] {
            out(HEX_LOWER[((v >> shift) & 15) as usize]);
        }
    };
    for ch in text.chars() {
        match ch {
            '"' => put(out, b"\\\""),
            '\\' => put(out, b"\\\\"),
            '\n' => put(out, b"\\n"),
            '\r' => put(out, b"\\r"),
            '\t' => put(out, b"\\t"),
            '\u{8}' => put(out, b"\\b"),
            '\u{c}' => put(out, b"\\f"),
            c if (c as u32) < 0x20 => u(out, c as u16),
            c if c.is_ascii() || !ensure_ascii => {
                let mut buf = [0u8; 4];
                put(out, c.encode_utf8(&mut buf).as_bytes());
            }
            c => {
                let mut units = [0u16; 2];
                for &unit in c.encode_utf16(&mut units).iter() {
                    u(out, unit);
                }
            }
        }
    }
}

/// The quote `repr()` picks: `'` unless the value holds `'` and no `"`.
fn repr_quote(secret: &[u8]) -> u8 {
    if secret.contains(&b'\'') && !secret.contains(&b'"') {
        b'"'
    } else {
        b'\''
    }
}

/// The inside of `repr(bytes)`: exactly CPython's escaping.
fn repr_bytes(secret: &[u8], out: Out<'_>) {
    let quote = repr_quote(secret);
    for &b in secret {
        match b {
            b'\\' => put(out, b"\\\\"),
            b'\n' => put(out, b"\\n"),
            b'\r' => put(out, b"\\r"),
            b'\t' => put(out, b"\\t"),
            b if b == quote => put(out, &[b'\\', b]),
            0x20..=0x7e => out(b),
            b => put(
                out,
                &[
                    b'\\',
                    b'x',
                    HEX_LOWER[(b >> 4) as usize],
                    HEX_LOWER[(b & 15) as usize],
                ],
            ),
        }
    }
}

/// The inside of `repr(str)` for text whose non-ASCII characters are
/// printable (CPython keeps those as they are; a non-printable non-ASCII
/// character such as U+200B would be escaped, and is not handled).
fn repr_str(text: &str, out: Out<'_>) {
    let quote = repr_quote(text.as_bytes());
    for &b in text.as_bytes() {
        match b {
            b'\\' => put(out, b"\\\\"),
            b'\n' => put(out, b"\\n"),
            b'\r' => put(out, b"\\r"),
            b'\t' => put(out, b"\\t"),
            b if b == quote => put(out, &[b'\\', b]),
            0x00..=0x1f | 0x7f => put(
                out,
                &[
                    b'\\',
                    b'x',
                    HEX_LOWER[(b >> 4) as usize],
                    HEX_LOWER[(b & 15) as usize],
                ],
            ),
            b => out(b),
        }
    }
}

/// Every form of `secret`, in a fixed order, each passed to `emit` as an
/// encoder to run against an output. The caller drops duplicates (most
/// encodings of a plain token are the token itself) and forms shorter than
/// `MIN_LEN`.
pub fn each_form(secret: &[u8], mut emit: impl FnMut(&dyn Fn(Out<'_>))) {
    emit(&|out| put(out, secret));
    for alphabet in [STD, URL] {
        for align in 0..3 {
            emit(&|out| base64_core(secret, align, alphabet, out));
        }
    }
    for (keep_slash, plus) in [(false, false), (true, false), (false, true)] {
        emit(&|out| percent(secret, keep_slash, plus, out));
    }
    emit(&|out| repr_bytes(secret, out));
    if let Ok(text) = std::str::from_utf8(secret) {
        emit(&|out| json(text, true, out));
        emit(&|out| json(text, false, out));
        emit(&|out| repr_str(text, out));
    }
    if secret.contains(&b'\n') {
        for line in secret.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            emit(&|out| put(out, line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        each_form(secret, |enc| {
            let mut v = Vec::new();
            enc(&mut |b| v.push(b));
            out.push(v);
        });
        out
    }

    #[test]
    fn base64_cores_are_inside_the_full_encodings() {
        // base64 of b"hunter22" after 0, 1 and 2 other bytes: aHVudGVyMjI=,
        // eGh1bnRlcjIy (b"x"+), eHlodW50ZXIyMg== (b"xy"+), without the
        // characters that mix in a neighbour's bits or padding.
        let all = forms(b"hunter22");
        for core in [&b"aHVudGVyMj"[..], b"h1bnRlcjIy", b"odW50ZXIyM"] {
            assert!(all.contains(&core.to_vec()));
        }
        let url = forms(b"\xfb\xff\xfe\xfb\xff\xfe");
        assert!(url.contains(&b"-__--__-".to_vec()) && url.contains(&b"+//++//+".to_vec()));
    }

    #[test]
    fn escapes_match_python() {
        let all = forms(b"a\"b\\c\nd/e f\x01");
        assert!(all.contains(&br#"a\"b\\c\nd/e f\u0001"#.to_vec())); // json
        assert!(all.contains(&br#"a"b\\c\nd/e f\x01"#.to_vec())); // repr
        assert!(all.contains(&b"a%22b%5Cc%0Ad%2Fe%20f%01".to_vec())); // quote(safe='')
        assert!(all.contains(&b"a%22b%5Cc%0Ad/e%20f%01".to_vec())); // quote()
        assert!(all.contains(&b"a%22b%5Cc%0Ad%2Fe+f%01".to_vec())); // quote_plus
        let lines = forms(b"line-one\r\nline-two");
        assert!(lines.contains(&b"line-one".to_vec()) && lines.contains(&b"line-two".to_vec()));
        let uni = forms("pässwörd".as_bytes());
        assert!(uni.contains(&br"p\u00e4ssw\u00f6rd".to_vec()));
    }
}
