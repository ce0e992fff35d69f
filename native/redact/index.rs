//! The registry of live secrets' forms and the one-pass scan over text.
//!
//! What is kept, and where:
//! - each secret's forms, concatenated in one `SecretBuf` (the cell's own
//!   tier: secretmem where the cell has it), zeroed when it is forgotten;
//! - a key of 24 random bytes, in a `SecretBuf` of the strongest tier;
//! - on the ordinary heap, for speed, only truncated *keyed* hashes: for
//!   each form, its 4-byte grams at offsets 0, 1 and 2 as a bucket number
//!   (B bits, B <= 25) plus an 8-bit tag, and for 1- to 3-byte prefixes a
//!   32-bit tag. Without the key these are random-looking numbers; with it
//!   they would tell at most B + 8 bits about each of a form's first 6
//!   bytes' grams. Every candidate they point to is confirmed byte for
//!   byte, in constant time, against the form in locked memory.
//!
//! The scan: any form occurrence is at least `MIN_LEN` (6) bytes long, so
//! it holds a 4-byte gram starting at a multiple of `STRIDE` (3) within its
//! first 3 bytes. The text is probed at every third position only: one
//! keyed hash and one bit test per probe, whatever the number of secrets;
//! the bitmap is sized so that at most ~1/64 of its bits are set, which
//! bounds the candidates confirmed (and so the cost of more secrets).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::forms::{each_form, MIN_LEN};
use crate::memory::{SecretBuf, Tier, TierRequest};
use crate::sys;

const GRAM: usize = 4;
const STRIDE: usize = MIN_LEN - GRAM + 1;
const MIN_BITS: u32 = 10;
const MAX_BITS: u32 = 25;
/// log2 of bitmap bits per candidate.
const SPARSITY: u32 = 6;

/// A form's bytes: offset and length in its entry's buffer.
#[derive(Clone, Copy)]
struct Form {
    off: usize,
    len: usize,
}

struct Entry {
    buf: SecretBuf,
    forms: Vec<Form>,
    /// The buckets this entry's candidates are in, and its prefix tags (to
    /// take them out again without reading the forms).
    buckets: Vec<u32>,
    prefix_tags: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Cand {
    entry: u32,
    form: u16,
    /// Offset of the gram within the form.
    at: u8,
    tag: u8,
}

/// The keys are already keyed hashes: use them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Map<V> = HashMap<u32, V, BuildHasherDefault<Identity>>;

/// The hash key, copied out of locked memory for the length of one
/// operation and zeroed after it.
struct Key([u64; 3]);

impl Key {
    #[inline(always)]
    fn mix(&self, gram: u32) -> u64 {
        let mut h = (u64::from(gram) ^ self.0[0]).wrapping_mul(self.0[1] | 1);
        h ^= h >> 29;
        h = (h ^ self.0[2]).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^ (h >> 32)
    }

    fn prefix_tag(&self, prefix: &[u8]) -> u32 {
        let mut g = [0u8; 4];
        g[..prefix.len()].copy_from_slice(prefix);
        g[3] = prefix.len() as u8;
        (self.mix(u32::from_le_bytes(g)).rotate_left(17) >> 32) as u32
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[inline(always)]
fn gram_at(text: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([text[i], text[i + 1], text[i + 2], text[i + 3]])
}

/// Compares without branching on the bytes' values.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

pub struct Registry {
    key: Option<SecretBuf>,
    bits: u32,
    bitmap: Vec<u64>,
    buckets: Map<Vec<Cand>>,
    prefixes: Map<u32>,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Form lengths (a multiset): the longest decides how much a stream holds.
    lens: BTreeMap<usize, usize>,
    cands: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            key: None,
            bits: MIN_BITS,
            bitmap: vec![0; 1 << (MIN_BITS - 6)],
            buckets: Map::default(),
            prefixes: Map::default(),
            entries: Vec::new(),
            free: Vec::new(),
            lens: BTreeMap::new(),
            cands: 0,
        }
    }
}

/// A match: `[start, end)` of the text.
pub type Span = (usize, usize);

impl Registry {
    fn key(&self) -> Option<Key> {
        self.key.as_ref().map(|k| {
            k.with_bytes(|b| {
                let w = |i: usize| {
                    u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("24 bytes"))
                };
                Key([w(0), w(1), w(2)])
            })
        })
    }

    fn ensure_key(&mut self) -> Option<Key> {
        if self.key.is_none() {
            let (buf, _) = SecretBuf::allocate(TierRequest::Auto, 24).ok()?;
            buf.fill(sys::fill_random).ok()?;
            self.key = Some(buf);
        }
        self.key()
    }

    pub fn is_empty(&self) -> bool {
        self.cands == 0
    }

    /// The longest form: a stream never holds back more than this less one.
    pub fn max_len(&self) -> usize {
        self.lens.keys().next_back().copied().unwrap_or(0)
    }

    /// Registers `secret`'s forms, written into locked memory of `tier` (or
    /// the strongest tier available if that fails). `None` when the secret
    /// is too short to mask or no memory could be had.
    pub fn insert(&mut self, secret: &[u8], tier: Tier) -> Option<usize> {
        if secret.len() < MIN_LEN {
            return None;
        }
        let key = self.ensure_key()?;
        let mut lens = Vec::new();
        each_form(secret, |enc| {
            let mut n = 0;
            enc(&mut |_| n += 1);
            lens.push(n);
        });
        let total = lens.iter().sum();
        let buf = SecretBuf::allocate(TierRequest::Exactly(tier), total)
            .or_else(|_| SecretBuf::allocate(TierRequest::Auto, total).map(|(b, _)| (b, None)))
            .ok()?
            .0;
        let mut forms = Vec::new();
        buf.fill(|out| {
            let mut pos = 0;
            each_form(secret, |enc| {
                let start = pos;
                enc(&mut |b| {
                    out[pos] = b;
                    pos += 1;
                });
                let form = &out[start..pos];
                let fresh = form.len() >= MIN_LEN
                    && !forms
                        .iter()
                        .any(|f: &Form| &out[f.off..f.off + f.len] == form);
                if fresh {
                    forms.push(Form {
                        off: start,
                        len: pos - start,
                    });
                }
            });
        });
        let id = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        let mut entry = Entry {
            buf,
            forms,
            buckets: Vec::new(),
            prefix_tags: Vec::new(),
        };
        for f in &entry.forms {
            *self.lens.entry(f.len).or_default() += 1;
        }
        self.cands += entry.forms.len() * STRIDE;
        self.index(&key, id, &mut entry);
        self.entries[id] = Some(entry);
        if self.cands << SPARSITY > 1usize << self.bits && self.bits < MAX_BITS {
            self.rebuild(&key);
        }
        Some(id)
    }

    /// Forgets entry `id`: its candidates leave the index and its forms are
    /// zeroed (the buffer's drop).
    pub fn remove(&mut self, id: usize) {
        let Some(entry) = self.entries.get_mut(id).and_then(Option::take) else {
            return;
        };
        for &b in &entry.buckets {
            if let Some(list) = self.buckets.get_mut(&b) {
                list.retain(|c| c.entry as usize != id);
                if list.is_empty() {
                    self.buckets.remove(&b);
                    self.bitmap[(b >> 6) as usize] &= !(1u64 << (b & 63));
                }
            }
        }
        for t in &entry.prefix_tags {
            if let Some(n) = self.prefixes.get_mut(t) {
                *n -= 1;
                if *n == 0 {
                    self.prefixes.remove(t);
                }
            }
        }
        for f in &entry.forms {
            if let Some(n) = self.lens.get_mut(&f.len) {
                *n -= 1;
                if *n == 0 {
                    self.lens.remove(&f.len);
                }
            }
        }
        self.cands -= entry.forms.len() * STRIDE;
        self.free.push(id);
        drop(entry);
        if self.cands == 0 && self.bits > MIN_BITS {
            let key = self.key.take();
            *self = Registry {
                key,
                ..Registry::default()
            };
        }
    }

    /// Puts `entry`'s grams and prefixes into the index.
    fn index(&mut self, key: &Key, id: usize, entry: &mut Entry) {
        let shift = 64 - self.bits;
        let (buckets, prefix_tags) = (&mut entry.buckets, &mut entry.prefix_tags);
        buckets.clear();
        prefix_tags.clear();
        let forms = &entry.forms;
        entry.buf.with_bytes(|bytes| {
            for (i, f) in forms.iter().enumerate() {
                let form = &bytes[f.off..f.off + f.len];
                for at in 0..STRIDE {
                    let h = key.mix(gram_at(form, at));
                    let b = (h >> shift) as u32;
                    self.bitmap[(b >> 6) as usize] |= 1u64 << (b & 63);
                    self.buckets.entry(b).or_default().push(Cand {
                        entry: id as u32,
                        form: i as u16,
                        at: at as u8,
                        tag: h as u8,
                    });
                    buckets.push(b);
                }
                for k in 1..GRAM {
                    let t = key.prefix_tag(&form[..k]);
                    *self.prefixes.entry(t).or_default() += 1;
                    prefix_tags.push(t);
                }
            }
        });
    }

    /// A bigger bitmap: every entry indexed afresh (from its locked forms).
    fn rebuild(&mut self, key: &Key) {
        while self.cands << SPARSITY > 1usize << self.bits && self.bits < MAX_BITS {
            self.bits += 1;
        }
        self.bitmap = vec![0; 1 << (self.bits - 6)];
        self.buckets = Map::default();
        self.prefixes = Map::default();
        for id in 0..self.entries.len() {
            if let Some(mut entry) = self.entries[id].take() {
                self.index(key, id, &mut entry);
                self.entries[id] = Some(entry);
            }
        }
    }

    /// Confirms candidate `c` at gram position `q` of `text`: the whole
    /// form when `prefix` is false, else `text[q - at..]` as a proper
    /// prefix of the form. Returns the span.
    fn confirm(&self, c: &Cand, q: usize, text: &[u8], prefix: bool) -> Option<Span> {
        let start = q.checked_sub(c.at as usize)?;
        let entry = self.entries.get(c.entry as usize)?.as_ref()?;
        let f = *entry.forms.get(c.form as usize)?;
        let end = start + f.len;
        let (want, have) = if prefix {
            if end <= text.len() {
                return None;
            }
            (f.off..f.off + (text.len() - start), &text[start..])
        } else {
            (f.off..f.off + f.len, text.get(start..end)?)
        };
        entry
            .buf
            .with_bytes(|bytes| ct_eq(&bytes[want], have))
            .then_some((start, end.min(text.len())))
    }

    /// Every occurrence of every form in `text`, merged where they overlap
    /// (adjacent ones stay apart), in order.
    pub fn find(&self, text: &[u8]) -> Vec<Span> {
        let mut spans = Vec::new();
        if self.is_empty() || text.len() < MIN_LEN {
            return spans;
        }
        let Some(key) = self.key() else { return spans };
        let shift = 64 - self.bits;
        let bitmap = &self.bitmap[..];
        let mut q = 0;
        while q + GRAM <= text.len() {
            let h = key.mix(gram_at(text, q));
            let b = (h >> shift) as u32;
            if bitmap[(b >> 6) as usize] & (1u64 << (b & 63)) != 0 {
                for c in self.buckets.get(&b).map(Vec::as_slice).unwrap_or(&[]) {
                    if c.tag == h as u8 {
                        spans.extend(self.confirm(c, q, text, false));
                    }
                }
            }
            q += STRIDE;
        }
        merge(spans)
    }

    /// The first position from which the rest of `text` is a proper prefix
    /// of some form (a match that more bytes could complete).
    pub fn partial_start(&self, text: &[u8]) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let key = self.key()?;
        let shift = 64 - self.bits;
        let n = text.len();
        let from = n.saturating_sub(self.max_len().saturating_sub(1));
        (from..n).find(|&p| {
            let rest = &text[p..];
            if rest.len() < GRAM {
                return self.prefixes.contains_key(&key.prefix_tag(rest));
            }
            let h = key.mix(gram_at(text, p));
            let b = (h >> shift) as u32;
            self.bitmap[(b >> 6) as usize] & (1u64 << (b & 63)) != 0
                && self.buckets.get(&b).is_some_and(|list| {
                    list.iter()
                        .filter(|c| c.at == 0 && c.tag == h as u8)
                        .any(|c| self.confirm(c, p, text, true).is_some())
                })
        })
    }
}

/// Sorts spans and merges overlapping ones.
fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_unstable();
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s < last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(secrets: &[&[u8]]) -> (Registry, Vec<usize>) {
        let mut r = Registry::default();
        let ids = secrets
            .iter()
            .map(|s| r.insert(s, Tier::Unlocked).unwrap())
            .collect();
        (r, ids)
    }

    #[test]
    fn finds_every_occurrence_at_every_offset_and_merges_overlaps() {
        let (r, _) = reg(&[b"abcdefgh", b"efghijkl"]);
        for pad in 0..7 {
            let text = [&b"xxxxxxx"[..pad], b"abcdefghijkl yy abcdefgh"].concat();
            assert_eq!(r.find(&text), vec![(pad, pad + 12), (pad + 16, pad + 24)]);
        }
        assert!(r.find(b"abcdefg").is_empty());
    }

    #[test]
    fn short_secrets_are_refused_and_removal_forgets() {
        let mut r = Registry::default();
        assert!(r.insert(b"12345", Tier::Unlocked).is_none());
        let id = r.insert(b"123456", Tier::Unlocked).unwrap();
        assert_eq!(r.find(b"a123456b"), vec![(1, 7)]);
        r.remove(id);
        assert!(r.find(b"a123456b").is_empty());
        assert!(r.is_empty() && r.buckets.is_empty() && r.prefixes.is_empty());
    }

    #[test]
    fn growth_rebuilds_and_still_finds_everything() {
        let secrets: Vec<Vec<u8>> = (0..3000)
            .map(|i| format!("tok-{i:06}-xyz").into_bytes())
            .collect();
        let mut r = Registry::default();
        for s in &secrets {
            r.insert(s, Tier::Unlocked).unwrap();
        }
        assert!(r.bits > MIN_BITS);
        for s in secrets.iter().step_by(97) {
            let text = [b"<".as_slice(), s, b">"].concat();
            assert_eq!(r.find(&text), vec![(1, 1 + s.len())]);
        }
    }

    #[test]
    fn partial_start_is_the_earliest_prefix() {
        let (r, _) = reg(&[b"secret-value"]);
        assert_eq!(r.partial_start(b"abc secret-va"), Some(4));
        assert_eq!(r.partial_start(b"abc s"), Some(4));
        assert_eq!(r.partial_start(b"abc secret-value"), None);
        assert_eq!(r.partial_start(b"abc x"), None);
    }
}
