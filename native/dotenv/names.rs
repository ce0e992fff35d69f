//! Which names look like keys a file means to define (and so may be shown),
//! and which name is a `${...}` reference's identifier.

use super::parse::{Quote, RawValue};

/// `[A-Za-z_][A-Za-z0-9_]*`: a name an undefined reference may be shown
/// by (see `resolve::Undefined`).
pub(super) fn is_identifier(name: &str) -> bool {
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
pub(super) fn could_be_base64_tail(name: &str, value: &RawValue, text: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::keys_and_problems;

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
}
