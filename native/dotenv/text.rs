//! Checks on the raw bytes before parsing: newlines as Python's text mode
//! gives them, the BOM, UTF-8, NUL bytes, and what counts as whitespace.

use zeroize::Zeroize;

/// The UTF-8 byte order mark: [`parse`](fn@super::parse) skips one at the
/// start of the text, and the `utf-8-sig` codec drops one before that.
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

/// The line (1-based) of the byte at `at`.
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
pub(super) fn is_blank(c: char) -> bool {
    c != '\n' && c != '\r' && is_space(c)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{v, values};
    use super::*;

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
}
