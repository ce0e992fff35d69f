// Invariant: for any set of secrets and any text, masking the text as a
// stream, fed in pieces cut anywhere and then finished, gives exactly the
// output of feeding it whole and finishing; and no output (streamed with
// pauses — `flush` — at any points, or not) shows an occurrence of any
// registered form (raw value, base64, percent/JSON/repr escaping, lines)
// that does not overlap a `[REDACTED]` marker: any form occurrence left is
// one made up by the marker's own bytes and the text around it. Non-stream
// `redact_with` gives the whole-stream output when the text does not end in
// a partial match.
//
// Input: byte 0 = secret count - 1 (mod 4); per secret a length byte
// (6 + b mod 27) and its bytes; a byte of flags (bit 0: pause at the cuts);
// a cut count (mod 8) and that many cut bytes; the rest is the text, in
// which 0xF0 k inserts secret k, 0xF1 k its base64 after k mod 3 bytes, and
// 0xF2 k secret k's first half (a partial match).
#![no_main]

use _native::fuzzing::memory::Tier;
use _native::fuzzing::redact::{redact_with, Registry, Stream, REDACTED};
use libfuzzer_sys::fuzz_target;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize]);
        }
    }
    out
}

struct Input<'a> {
    secrets: Vec<&'a [u8]>,
    pause: bool,
    cuts: Vec<usize>,
    text: Vec<u8>,
}

fn parse(data: &[u8]) -> Option<Input<'_>> {
    let (&count, mut rest) = data.split_first()?;
    let mut secrets = Vec::new();
    for _ in 0..=count % 4 {
        let (&len, r) = rest.split_first()?;
        let len = 6 + usize::from(len % 27);
        if r.len() < len {
            return None;
        }
        secrets.push(&r[..len]);
        rest = &r[len..];
    }
    let (&flags, r) = rest.split_first()?;
    let (&ncuts, r) = r.split_first()?;
    let ncuts = usize::from(ncuts % 8).min(r.len());
    let (cut_bytes, raw) = r.split_at(ncuts);
    let mut text = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let k = raw.get(i + 1).map(|&k| usize::from(k) % secrets.len());
        match (raw[i], k) {
            (0xF0, Some(k)) => text.extend_from_slice(secrets[k]),
            (0xF1, Some(k)) => {
                let pad = vec![b'u'; k % 3];
                let enc = base64(&[&pad[..], secrets[k]].concat());
                text.extend_from_slice(&enc);
            }
            (0xF2, Some(k)) => text.extend_from_slice(&secrets[k][..secrets[k].len() / 2]),
            (b, _) => {
                text.push(b);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let mut cuts: Vec<usize> = cut_bytes
        .iter()
        .map(|&c| usize::from(c) * (text.len() + 1) / 256)
        .collect();
    cuts.sort_unstable();
    Some(Input {
        secrets,
        pause: flags & 1 == 1,
        cuts,
        text,
    })
}

fn stream(reg: &Registry, text: &[u8], cuts: &[usize], pause: bool) -> Vec<u8> {
    let mut s = Stream::default();
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&text.len())) {
        s.feed(reg, &text[from..cut], &mut out);
        if pause {
            s.flush(&mut out);
        }
        from = cut;
    }
    s.finish(&mut out);
    out
}

/// Every form occurrence in `out` overlaps a `[REDACTED]` marker.
fn nothing_shown(reg: &Registry, out: &[u8]) -> bool {
    let markers: Vec<usize> = out
        .windows(REDACTED.len())
        .enumerate()
        .filter(|(_, w)| *w == REDACTED)
        .map(|(i, _)| i)
        .collect();
    reg.find(out)
        .iter()
        .all(|&(s, e)| markers.iter().any(|&m| m < e && s < m + REDACTED.len()))
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = parse(data) else { return };
    let mut reg = Registry::default();
    let ids: Vec<Option<usize>> = input
        .secrets
        .iter()
        .map(|s| reg.insert(s, Tier::Unlocked))
        .collect();
    let whole = stream(&reg, &input.text, &[], false);
    assert!(nothing_shown(&reg, &whole), "a form shown (whole)");
    let streamed = stream(&reg, &input.text, &input.cuts, input.pause);
    assert!(nothing_shown(&reg, &streamed), "a form shown (streamed)");
    if !input.pause {
        assert_eq!(streamed, whole, "streamed output differs from whole");
    }
    if reg.partial_start(&input.text).is_none() {
        let plain = redact_with(&reg, &input.text).unwrap_or_else(|| input.text.clone());
        assert_eq!(plain, whole, "redact() differs from the finished stream");
    }
    if let Some(id) = ids[0] {
        reg.remove(id);
        let mut fresh = Registry::default();
        for s in &input.secrets[1..] {
            fresh.insert(s, Tier::Unlocked);
        }
        assert_eq!(
            reg.find(&input.text),
            fresh.find(&input.text),
            "stale after removal"
        );
        assert_eq!(
            reg.partial_start(&input.text),
            fresh.partial_start(&input.text)
        );
    }
});
