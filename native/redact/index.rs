//! The registry of live secrets' forms and the one-pass scan over text.
//!
//! What is kept, and where:
//! - each secret's forms, concatenated in one `SecretBuf` (the cell's own
//!   tier: secretmem where the cell has it), zeroed when it is forgotten;
//! - a key of 24 random bytes, in a `SecretBuf` of the strongest tier
//!   (copied onto the stack for one operation, zeroed after it);
//! - on the ordinary heap, for speed, only *keyed* hashes, truncated: for
//!   each gram indexed (below), at most 37 bits of its 64-bit keyed hash
//!   (the bitmap word, two bits in it, an 8-bit tag), and for a form's 1- to 3-byte
//!   prefixes a 32-bit tag. Without the key these are random-looking
//!   numbers. The hash (a multiply, a xor-shift, a multiply) is fast, not a
//!   cryptographic PRF: that the key cannot be recovered from them is an
//!   engineering judgement, not a proof. Every candidate they point to is
//!   confirmed byte for byte, in constant time, against the form in locked
//!   memory.
//!
//! The scan: when the shortest registered form is `m` bytes long, any
//! occurrence of any form holds a 4-byte gram that starts at a multiple of
//! the stride `s = m - 3` (at most `MAX_STRIDE`) within the form's first `s`
//! bytes. So each form's grams at offsets `0..s` go into the index, and the
//! text is probed at every `s`-th position only: one keyed hash and one
//! 64-bit word of the bitmap per probe, whatever the number of secrets (a
//! 6-byte secret makes `s` 3; typical tokens, whose shortest form is
//! longer, allow 8). The bitmap (a blocked Bloom filter, two bits per gram)
//! has 32 bits per gram up to 2^23 bits (1 MiB, cache-sized); a probe that
//! passes it walks its word's list of candidates, which is rare, so the
//! cost grows with the number of secrets only through the bitmap's size.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::forms::{each_form, MIN_LEN};
use crate::memory::{SecretBuf, Tier, TierRequest};
use crate::sys;

const GRAM: usize = 4;
const MAX_STRIDE: usize = 8;
const MIN_BITS: u32 = 10;
/// 1 MiB of bitmap at most: more would leave the CPU's cache.
const MAX_BITS: u32 = 23;
/// Up to this many forms, losing the shortest one re-indexes at once.
const CHEAP_REBUILD_FORMS: usize = 4096;
/// log2 of bitmap bits per indexed gram.
const SPARSITY: u32 = 5;

/// A form's bytes: offset and length in its entry's buffer.
#[derive(Clone, Copy)]
struct Form {
    off: usize,
    len: usize,
}

struct Entry {
    buf: SecretBuf,
    forms: Vec<Form>,
    /// The bitmap words this entry's candidates are in, and its prefix
    /// tags (to take them out again without reading the forms).
    words: Vec<u32>,
    prefix_tags: Vec<u32>,
}

/// One indexed gram: which form, where in it, and the rest of its hash's
/// place (its two bits within the word, a tag).
#[derive(Clone, Copy)]
struct Cand {
    entry: u32,
    form: u16,
    /// Offset of the gram within the form.
    at: u8,
    tag: u8,
    b1: u8,
    b2: u8,
}

/// A candidate in its word's list (nodes live in one slab: no allocation
/// per word).
#[derive(Clone, Copy)]
struct Node {
    cand: Cand,
    next: u32,
}

const NIL: u32 = u32::MAX;

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
    /// A keyed multiply-xorshift-multiply over the gram: its top bits pick
    /// the bitmap word, bits 32..44 the two bits, bits 24..32 the tag.
    fn mix(&self, gram: u32) -> u64 {
        let h = (u64::from(gram) ^ self.0[0]).wrapping_mul(self.0[1] | 1);
        (h ^ (h >> 31) ^ self.0[2]).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn tag(h: u64) -> u8 {
        (h >> 24) as u8
    }

    fn prefix_tag(&self, prefix: &[u8]) -> u32 {
        let mut g = [0u8; 4];
        g[..prefix.len()].copy_from_slice(prefix);
        g[3] = prefix.len() as u8;
        let h = self.mix(u32::from_le_bytes(g) ^ self.0[2] as u32);
        ((h >> 32) ^ (h.wrapping_mul(self.0[2] | 1) >> 32)) as u32
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

/// Where a hash lands: one 64-bit word of the bitmap and two bits in it (a
/// blocked Bloom filter with two bits per candidate: one cache line per
/// probe, and ~8 times fewer false hits than one bit). The word also names
/// the list of candidates to confirm.
#[derive(Clone, Copy)]
struct Place {
    word: u32,
    b1: u32,
    b2: u32,
}

impl Place {
    #[inline(always)]
    fn of(h: u64, bits: u32) -> Place {
        Place {
            word: (h >> (64 - (bits - 6))) as u32,
            b1: ((h >> 32) & 63) as u32,
            b2: ((h >> 38) & 63) as u32,
        }
    }

    #[inline(always)]
    fn mask(self) -> u64 {
        (1u64 << self.b1) | (1u64 << self.b2)
    }

    fn holds(self, c: &Cand) -> bool {
        u32::from(c.b1) == self.b1 && u32::from(c.b2) == self.b2
    }
}

/// The keyed hash of the gram at `q` and whether the bitmap says maybe.
#[inline(always)]
fn probe(key: &Key, bitmap: &[u64], bits: u32, text: &[u8], q: usize) -> (u64, bool) {
    let h = key.mix(gram_at(text, q));
    let at = Place::of(h, bits);
    (h, bitmap[at.word as usize] & at.mask() == at.mask())
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
    /// Per bitmap word, the first node of its candidates' list.
    heads: Vec<u32>,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    prefixes: Map<u32>,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Form lengths (a multiset): the longest decides how much a stream holds.
    lens: BTreeMap<usize, usize>,
    /// Probe spacing: the shortest form's length less 3, at most MAX_STRIDE.
    stride: usize,
    /// Forms registered; each has `stride` grams in the index.
    forms: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            key: None,
            bits: MIN_BITS,
            bitmap: vec![0; 1 << (MIN_BITS - 6)],
            heads: vec![NIL; 1 << (MIN_BITS - 6)],
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            prefixes: Map::default(),
            entries: Vec::new(),
            free: Vec::new(),
            lens: BTreeMap::new(),
            stride: MAX_STRIDE,
            forms: 0,
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
        self.forms == 0
    }

    fn too_dense(&self) -> bool {
        (self.forms * self.stride) << SPARSITY > 1usize << self.bits && self.bits < MAX_BITS
    }

    /// The longest form: a stream never holds back more than this less one.
    pub fn max_len(&self) -> usize {
        self.lens.keys().next_back().copied().unwrap_or(0)
    }

    /// Registers `secret`'s forms, written into memory of `tier` (locked
    /// memory if secretmem fails). `None` when the secret is too short to
    /// mask or no such memory could be had.
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
        // The cell's tier, else locked memory; never weaker than the cell's
        // own (a value that cannot be had is not masked rather than copied
        // into memory that could be swapped or read).
        let buf = [tier, Tier::Locked]
            .into_iter()
            .filter(|&t| t == tier || (tier == Tier::Secretmem && t == Tier::Locked))
            .find_map(|t| SecretBuf::allocate(TierRequest::Exactly(t), total).ok())?
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
            words: Vec::new(),
            prefix_tags: Vec::new(),
        };
        for f in &entry.forms {
            *self.lens.entry(f.len).or_default() += 1;
        }
        self.forms += entry.forms.len();
        if self.wanted_stride() != self.stride || self.too_dense() {
            self.entries[id] = Some(entry);
            self.rebuild(&key);
        } else {
            self.index(&key, id, &mut entry);
            self.entries[id] = Some(entry);
        }
        Some(id)
    }

    /// Forgets entry `id`: its candidates leave the index and its forms are
    /// zeroed (the buffer's drop).
    pub fn remove(&mut self, id: usize) {
        let Some(entry) = self.entries.get_mut(id).and_then(Option::take) else {
            return;
        };
        let mut words = entry.words.clone();
        words.sort_unstable();
        words.dedup();
        for word in words {
            // Unlink this entry's nodes; the word keeps the bits of the rest.
            let (mut at, mut prev, mut mask) = (self.heads[word as usize], NIL, 0u64);
            while at != NIL {
                let node = self.nodes[at as usize];
                if node.cand.entry as usize == id {
                    match prev {
                        NIL => self.heads[word as usize] = node.next,
                        p => self.nodes[p as usize].next = node.next,
                    }
                    self.free_nodes.push(at);
                } else {
                    mask |= (1u64 << node.cand.b1) | (1u64 << node.cand.b2);
                    prev = at;
                }
                at = node.next;
            }
            self.bitmap[word as usize] = mask;
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
        self.forms -= entry.forms.len();
        self.free.push(id);
        drop(entry);
        if self.forms == 0 {
            let key = self.key.take();
            *self = Registry {
                key,
                ..Registry::default()
            };
        } else if self.wanted_stride() != self.stride && self.forms <= CHEAP_REBUILD_FORMS {
            // A narrower stride than needed is still correct, only slower:
            // with many forms, widening waits for the next rebuild (growth),
            // so that a short value coming and going (a one-time code) does
            // not re-index everything twice each time.
            if let Some(key) = self.key() {
                self.rebuild(&key);
            }
        }
    }

    /// Puts `entry`'s grams and prefixes into the index.
    fn index(&mut self, key: &Key, id: usize, entry: &mut Entry) {
        let (words, prefix_tags) = (&mut entry.words, &mut entry.prefix_tags);
        words.clear();
        prefix_tags.clear();
        let forms = &entry.forms;
        entry.buf.with_bytes(|bytes| {
            for (i, f) in forms.iter().enumerate() {
                let form = &bytes[f.off..f.off + f.len];
                for at in 0..self.stride {
                    let h = key.mix(gram_at(form, at));
                    let place = Place::of(h, self.bits);
                    self.bitmap[place.word as usize] |= place.mask();
                    let node = Node {
                        cand: Cand {
                            entry: id as u32,
                            form: i as u16,
                            at: at as u8,
                            tag: Key::tag(h),
                            b1: place.b1 as u8,
                            b2: place.b2 as u8,
                        },
                        next: self.heads[place.word as usize],
                    };
                    let slot = match self.free_nodes.pop() {
                        Some(slot) => {
                            self.nodes[slot as usize] = node;
                            slot
                        }
                        None => {
                            self.nodes.push(node);
                            (self.nodes.len() - 1) as u32
                        }
                    };
                    self.heads[place.word as usize] = slot;
                    words.push(place.word);
                }
                for k in 1..GRAM {
                    let t = key.prefix_tag(&form[..k]);
                    *self.prefixes.entry(t).or_default() += 1;
                    prefix_tags.push(t);
                }
            }
        });
    }

    fn wanted_stride(&self) -> usize {
        let shortest = self.lens.keys().next().copied().unwrap_or(MIN_LEN);
        (shortest + 1 - GRAM).min(MAX_STRIDE)
    }

    /// A new stride or a bigger bitmap: every entry indexed afresh (from
    /// its locked forms).
    fn rebuild(&mut self, key: &Key) {
        self.stride = self.wanted_stride();
        while self.too_dense() {
            self.bits += 1;
        }
        self.bitmap = vec![0; 1 << (self.bits - 6)];
        self.heads = vec![NIL; 1 << (self.bits - 6)];
        self.nodes = Vec::new();
        self.free_nodes = Vec::new();
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
        let bits = self.bits;
        let bitmap = &self.bitmap[..];
        let probe = |q: usize| probe(&key, bitmap, bits, text, q);
        // Four probes a round, one branch for all four: nearly every round
        // has no candidate at all.
        let s = self.stride;
        let mut q = 0;
        while q + 3 * s + GRAM <= text.len() {
            let p = [probe(q), probe(q + s), probe(q + 2 * s), probe(q + 3 * s)];
            if p[0].1 | p[1].1 | p[2].1 | p[3].1 {
                for (i, &(h, hit)) in p.iter().enumerate() {
                    if hit {
                        self.candidates(h, q + i * s, text, &mut spans);
                    }
                }
            }
            q += 4 * s;
        }
        while q + GRAM <= text.len() {
            let (h, hit) = probe(q);
            if hit {
                self.candidates(h, q, text, &mut spans);
            }
            q += s;
        }
        merge(spans)
    }

    /// The bitmap said maybe: the word's candidates with the same bits and tag,
    /// each confirmed against its form.
    #[cold]
    #[inline(never)]
    fn candidates(&self, h: u64, q: usize, text: &[u8], spans: &mut Vec<Span>) {
        for c in self.listed(h) {
            spans.extend(self.confirm(&c, q, text, false));
        }
    }

    /// The candidates whose hash has `h`'s place and tag.
    fn listed(&self, h: u64) -> impl Iterator<Item = Cand> + '_ {
        let place = Place::of(h, self.bits);
        let tag = Key::tag(h);
        let mut at = self.heads[place.word as usize];
        std::iter::from_fn(move || {
            while at != NIL {
                let node = self.nodes[at as usize];
                at = node.next;
                if place.holds(&node.cand) && node.cand.tag == tag {
                    return Some(node.cand);
                }
            }
            None
        })
    }

    /// The first position from which the rest of `text` is a proper prefix
    /// of some form (a match that more bytes could complete).
    pub fn partial_start(&self, text: &[u8]) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let key = self.key()?;
        let bitmap = &self.bitmap[..];
        let n = text.len();
        let from = n.saturating_sub(self.max_len().saturating_sub(1));
        (from..n).find(|&p| {
            let rest = &text[p..];
            if rest.len() < GRAM {
                return self.prefixes.contains_key(&key.prefix_tag(rest));
            }
            let (h, hit) = probe(&key, bitmap, self.bits, text, p);
            hit && self
                .listed(h)
                .any(|c| c.at == 0 && self.confirm(&c, p, text, true).is_some())
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
        assert!(r.is_empty() && r.prefixes.is_empty() && r.heads.iter().all(|&h| h == NIL));
        assert!(r.bitmap.iter().all(|&w| w == 0));
    }

    /// Each bitmap word holds exactly its listed candidates' bits, and the
    /// lists hold exactly `stride` grams per form.
    fn consistent(r: &Registry) -> bool {
        let mut live = 0;
        let words_ok = r.heads.iter().zip(&r.bitmap).all(|(&head, &bits)| {
            let (mut at, mut mask) = (head, 0u64);
            while at != NIL {
                let node = r.nodes[at as usize];
                mask |= (1u64 << node.cand.b1) | (1u64 << node.cand.b2);
                live += 1;
                at = node.next;
            }
            mask == bits
        });
        words_ok && live == r.forms * r.stride && r.nodes.len() == live + r.free_nodes.len()
    }

    #[test]
    fn removing_one_secret_leaves_exactly_the_others() {
        let mut r = Registry::default();
        let ids: Vec<usize> = (0..50)
            .map(|i| {
                r.insert(format!("secret-number-{i:04}").as_bytes(), Tier::Unlocked)
                    .unwrap()
            })
            .collect();
        assert!(consistent(&r));
        for &id in ids.iter().step_by(2) {
            r.remove(id);
            assert!(consistent(&r));
        }
        for i in 0..50 {
            let text = format!("<secret-number-{i:04}>");
            let want = if i % 2 == 1 { vec![(1, 19)] } else { vec![] };
            assert_eq!(r.find(text.as_bytes()), want);
        }
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
    fn stride_follows_the_shortest_form() {
        let mut r = Registry::default();
        r.insert(b"a-rather-long-token-value", Tier::Unlocked)
            .unwrap();
        assert_eq!(r.stride, MAX_STRIDE);
        let short = r.insert(b"six666", Tier::Unlocked).unwrap();
        assert_eq!(r.stride, 3);
        for pad in 0..9 {
            let text = [&b"........."[..pad], b"a-rather-long-token-value six666"].concat();
            assert_eq!(r.find(&text), vec![(pad, pad + 25), (pad + 26, pad + 32)]);
        }
        r.remove(short);
        assert_eq!(r.stride, MAX_STRIDE, "few forms: widened at once");
        for pad in 0..9 {
            let text = [&b"........."[..pad], b"a-rather-long-token-value"].concat();
            assert_eq!(r.find(&text), vec![(pad, pad + 25)]);
        }
    }

    #[test]
    fn with_many_forms_a_short_value_leaving_keeps_the_narrow_stride() {
        let mut r = Registry::default();
        let long: Vec<Vec<u8>> = (0..1500)
            .map(|i| format!("long-token-{i:08}").into_bytes())
            .collect();
        for s in &long {
            r.insert(s, Tier::Unlocked).unwrap();
        }
        assert!(r.forms > CHEAP_REBUILD_FORMS);
        let otp = r.insert(b"123456", Tier::Unlocked).unwrap();
        assert_eq!(r.stride, 3);
        r.remove(otp);
        assert_eq!(r.stride, 3);
        for s in long.iter().step_by(53) {
            for pad in 0..4 {
                let text = [&b"...."[..pad], s].concat();
                assert_eq!(r.find(&text), vec![(pad, pad + s.len())]);
            }
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
