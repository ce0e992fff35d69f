// Invariant: for any bytes, the Vault reply reader (`native/vault/json.rs`)
// neither panics nor recurses (nesting past MAX_DEPTH is an error; the
// input can be far deeper than the stack would allow), and when it accepts
// an object:
// - the input is UTF-8 (JSON text is; a reply that is not is refused);
// - every member's value lies inside the input: a string's contents
//   between its quotes, any other value as JSON text that starts with the
//   character of its kind ({ [ " t f n - or a digit) and ends with } ] e l
//   or a digit;
// - a string's decoded length is what decode_into writes, and the decoded
//   bytes are UTF-8; without escapes they are the raw bytes themselves;
// - a value that is an object is itself accepted by `members` (what the
//   reply reader does with `data` and `auth`), its members meeting the same
//   checks; names are unique (a repeated name keeps its last value);
// - reading the same input twice gives the same members;
// - `strings`, `integer`, `boolean` and `text` give answers without
//   panicking on any member.
// Memory is bounded by the input (libFuzzer's -max_len, -rss_limit_mb).
#![no_main]

use _native::fuzzing::vault_json::{
    boolean, decode_into, decoded_len, integer, members, strings, text, Kind, Member, Span,
    MAX_DEPTH,
};
use libfuzzer_sys::fuzz_target;

fn check_member(input: &[u8], m: &Member, depth: usize) {
    match &m.value {
        Span::Str { range, escaped } => {
            assert!(range.start >= 1 && range.end < input.len());
            assert_eq!(input[range.start - 1], b'"');
            assert_eq!(input[range.end], b'"');
            let raw = &input[range.clone()];
            let mut out = vec![0u8; decoded_len(raw)];
            decode_into(raw, &mut out);
            assert!(std::str::from_utf8(&out).is_ok());
            if !escaped {
                assert_eq!(out, raw);
            }
            assert_eq!(m.value.value_len(input), out.len());
        }
        Span::Raw { range, kind } => {
            assert!(range.end <= input.len() && range.start < range.end);
            let (first, last) = (input[range.start], input[range.end - 1]);
            match kind {
                Kind::Object => {
                    assert_eq!((first, last), (b'{', b'}'));
                    if depth < MAX_DEPTH {
                        let inner = members(input, range.clone())
                            .expect("an object value is itself a valid object");
                        for m in &inner {
                            check_member(input, m, depth + 1);
                        }
                    }
                }
                Kind::Array => {
                    assert_eq!((first, last), (b'[', b']'));
                    let _ = strings(input, &m.value);
                }
                Kind::Bool(true) => assert_eq!(&input[range.clone()], b"true"),
                Kind::Bool(false) => assert_eq!(&input[range.clone()], b"false"),
                Kind::Null => assert_eq!(&input[range.clone()], b"null"),
                Kind::Number => {
                    assert!(first == b'-' || first.is_ascii_digit());
                    assert!(last.is_ascii_digit());
                }
            }
        }
    }
    let _ = (
        integer(input, Some(&m.value)),
        boolean(Some(&m.value)),
        text(input, Some(&m.value)),
    );
}

fuzz_target!(|input: &[u8]| {
    let Ok(top) = members(input, 0..input.len()) else {
        return;
    };
    assert!(
        std::str::from_utf8(input).is_ok(),
        "accepted bytes that are not UTF-8"
    );
    let again = members(input, 0..input.len()).expect("accepted once, accepted again");
    assert_eq!(top, again);
    let mut names: Vec<&str> = top.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), top.len(), "duplicate names are merged");
    for m in &top {
        check_member(input, m, 1);
    }
});
