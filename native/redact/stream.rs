//! Masking a byte stream (a child's output): a secret split across writes
//! is masked whole. Only a trailing partial match (the end of what arrived
//! is a proper prefix of some form) is held back, until more bytes decide
//! it; `flush` (after a pause) emits the held part as `[REDACTED]` and
//! swallows the rest of that secret if it follows.

use zeroize::Zeroizing;

use super::index::{Registry, Span};
use super::REDACTED;

#[derive(Default)]
pub struct Stream {
    /// Bytes not yet decided (a partial match), zeroed when dropped.
    held: Zeroizing<Vec<u8>>,
    /// How many leading bytes of `held` a flush has already shown as
    /// `[REDACTED]`: a match over them is swallowed, not shown again.
    shown: usize,
}

/// Writes `text[..upto]` with every span replaced by `[REDACTED]`; the first
/// `shown` bytes, and any span that starts among them, were already shown.
fn emit(text: &[u8], spans: &[Span], upto: usize, shown: usize, out: &mut Vec<u8>) {
    let mut pos = 0;
    for &(start, end) in spans.iter().take_while(|s| s.0 < upto) {
        if start > pos {
            out.extend_from_slice(&text[pos.max(shown).min(start)..start]);
        }
        if start >= shown {
            out.extend_from_slice(REDACTED);
        }
        pos = end;
    }
    if upto > pos {
        out.extend_from_slice(&text[pos.max(shown).min(upto)..upto]);
    }
}

/// `text` masked whole (the non-streaming `redact`); `None` when nothing
/// matched, so callers can hand back the input itself.
pub fn redact(reg: &Registry, text: &[u8]) -> Option<Vec<u8>> {
    let spans = reg.find(text);
    if spans.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(text.len());
    emit(text, &spans, text.len(), 0, &mut out);
    Some(out)
}

/// `text` masked whole, as text; `None` when nothing matched. A span that
/// cuts a character (a secret that is not whole characters) makes that
/// character U+FFFD.
pub fn redact_str(reg: &Registry, text: &str) -> Option<String> {
    let spans = reg.find(text.as_bytes());
    if spans.is_empty() {
        return None;
    }
    let whole_chars = spans
        .iter()
        .all(|&(s, e)| text.is_char_boundary(s) && text.is_char_boundary(e));
    if !whole_chars {
        let mut out = Vec::with_capacity(text.len());
        emit(text.as_bytes(), &spans, text.len(), 0, &mut out);
        return Some(String::from_utf8_lossy(&out).into_owned());
    }
    let marker = std::str::from_utf8(REDACTED).expect("ASCII");
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for &(start, end) in &spans {
        out.push_str(&text[pos..start]);
        out.push_str(marker);
        pos = end;
    }
    out.push_str(&text[pos..]);
    Some(out)
}

impl Stream {
    pub fn pending(&self) -> bool {
        self.held.len() > self.shown
    }

    /// Masks `data` after what is held; appends what is safe to emit now.
    pub fn feed(&mut self, reg: &Registry, data: &[u8], out: &mut Vec<u8>) {
        // Held bytes and the new ones in one buffer of the exact size (no
        // reallocation leaves an unzeroed copy behind), zeroed when dropped.
        let joined;
        let text = if self.held.is_empty() {
            data
        } else {
            let mut both = Zeroizing::new(Vec::with_capacity(self.held.len() + data.len()));
            both.extend_from_slice(&self.held);
            both.extend_from_slice(data);
            joined = both;
            &joined[..]
        };
        let spans = reg.find(text);
        let mut cut = reg.partial_start(text).unwrap_or(text.len());
        // A partial match inside a complete one may extend it: hold both.
        if let Some(&(start, _)) = spans.iter().find(|&&(s, e)| s < cut && cut < e) {
            cut = start;
        }
        emit(text, &spans, cut, self.shown, out);
        self.held = Zeroizing::new(text[cut..].to_vec());
        self.shown = self.shown.saturating_sub(cut);
    }

    /// After a pause: the held bytes are shown as `[REDACTED]` (once), and
    /// kept so that the rest of the secret, if it follows, is swallowed.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if self.pending() {
            if self.shown == 0 {
                out.extend_from_slice(REDACTED);
            }
            self.shown = self.held.len();
        }
    }

    /// At the end of the stream: as `flush`, then forgets everything.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush(out);
        self.held = Zeroizing::default();
        self.shown = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Tier;

    fn reg() -> Registry {
        let mut r = Registry::default();
        r.insert(b"correct-horse", Tier::Unlocked).unwrap();
        r
    }

    fn run(r: &Registry, pieces: &[&[u8]]) -> Vec<u8> {
        let mut s = Stream::default();
        let mut out = Vec::new();
        for p in pieces {
            s.feed(r, p, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn split_at_every_byte_equals_whole() {
        let r = reg();
        let text = b"a correct-horse b correct-horsecorrect-horse c correct-hors";
        let whole = run(&r, &[text]);
        assert_eq!(whole, b"a [REDACTED] b [REDACTED][REDACTED] c [REDACTED]");
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(
                    run(&r, &[&text[..i], &text[i..j], &text[j..]]),
                    whole,
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn flush_shows_redacted_and_swallows_the_rest() {
        let r = reg();
        let mut s = Stream::default();
        let mut out = Vec::new();
        s.feed(&r, b"pw=correct-", &mut out);
        assert_eq!(out, b"pw=");
        assert!(s.pending());
        s.flush(&mut out);
        assert!(!s.pending());
        s.feed(&r, b"horse ok", &mut out);
        assert_eq!(out, b"pw=[REDACTED] ok");
        // A look-alike is masked too (the safe error), and what follows is not swallowed.
        s.feed(&r, b" correct", &mut out);
        s.flush(&mut out);
        s.feed(&r, b"ly done", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"pw=[REDACTED] ok [REDACTED]ly done");
    }
}
