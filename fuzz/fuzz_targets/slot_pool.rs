// Invariant: any sequence of allocations (every tier and request kind,
// sizes across every slot class and past it into large regions), frees,
// wipes, batch reservations and releases of unused arenas keeps every live
// secret's bytes intact (each allocation gets its own byte pattern, checked
// before it is freed and at every check step), hands out zeroed buffers of
// the length and tier asked for, never trips a canary (the pool checks each
// slot's canary and a large region's when it is freed, and aborts on a
// mismatch: libFuzzer reports the abort), and keeps its accounts true:
// - pool_stats' live slots are the live secrets that fit a slot class;
// - the kernel's VmLck (/proc/self/status) is, at every check, the pool's
//   locked bytes plus what the process had locked before the first run
//   (nothing else in the fuzzer locks memory); secretmem counts as locked
//   for both, the kernel charging VmLck for a secretmem mapping as a whole,
//   and the pool counting all of a secretmem arena's pages. Not checked in
//   an AddressSanitizer build: ASan intercepts mlock(2) and returns success
//   without locking, so VmLck stays 0 there; `make fuzz` builds this target
//   without a sanitizer (`-s none`) so that the kernel's account is read;
// - every live secret's first and last byte lie in mappings whose VmFlags
//   (/proc/self/smaps, read at up to two check steps of an input, or at its
//   end if it has none) are those of its tier: `lo` (locked: a page is never
//   unlocked under a live secret, whatever its neighbours did) for the
//   secretmem and locked tiers (not under ASan, as above), `dd` (no core
//   dump) for all, `wf` (zeroed in a forked child) for the anonymous tiers;
// - once every secret is freed and unused arenas released, nothing is live
//   and at most one small spare arena per tier and class stays mapped.
// Memory is bounded: at most MAX_LIVE secrets of at most MAX_LARGE bytes,
// and reservations of at most 1,020 slots per step.
#![no_main]
// `cfg!(sanitize = "address")`: cargo-fuzz needs a nightly compiler anyway.
#![feature(cfg_sanitize)]

use std::sync::OnceLock;

use _native::fuzzing::memory::{pool_stats, release_unused, reserve, SecretBuf, Tier, TierRequest};
use libfuzzer_sys::fuzz_target;

const MAX_LIVE: usize = 512;
/// Past the largest slot class (1,024 bytes) secrets get their own region.
const LARGEST_CLASS: usize = 1024;
const MAX_LARGE: usize = 5 * 4096;
const PAGE: usize = 4096;
/// Tiers (3) x slot classes (12); the largest spare arena kept is 4 pages.
const SPARE_ARENAS: usize = 3 * 12;
const SPARE_PAGES: usize = 4;

struct Live {
    buf: SecretBuf,
    id: u64,
    zeroed: bool,
}

/// The byte at `i` of allocation `id`: differs between allocations, so a
/// slot handed out twice or a write past a neighbour's end is seen.
fn pattern(id: u64, i: usize) -> u8 {
    let h = (id ^ (i as u64 >> 3)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 56) as u8 ^ (i as u8)
}

fn intact(live: &Live) -> bool {
    live.buf.with_bytes(|b| {
        b.iter().enumerate().all(|(i, &x)| {
            if live.zeroed {
                x == 0
            } else {
                x == pattern(live.id, i)
            }
        })
    })
}

fn requested(b: u8) -> TierRequest {
    match b % 5 {
        0 => TierRequest::Exactly(Tier::Secretmem),
        1 => TierRequest::Exactly(Tier::Locked),
        2 => TierRequest::Exactly(Tier::Unlocked),
        3 => TierRequest::Auto,
        _ => TierRequest::Transient,
    }
}

/// Mostly slot sizes (0..=1024, every class boundary reachable), sometimes
/// a large region (up to 5 pages).
fn length(a: u8, b: u8) -> usize {
    let bits = u16::from_le_bytes([a, b]);
    let v = (bits >> 1) as usize;
    if bits & 1 == 0 {
        v % (LARGEST_CLASS + 1)
    } else {
        v % (MAX_LARGE + 1)
    }
}

fn vmlck_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmLck:"))
        .expect("VmLck in /proc/self/status");
    let kib: usize = line
        .trim_start_matches("VmLck:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmLck in kB");
    kib * 1024
}

/// Every mapping's range and VmFlags, from /proc/self/smaps, in address order.
fn mappings() -> Vec<(std::ops::Range<usize>, Vec<String>)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let hex = |h: &str| usize::from_str_radix(h, 16).ok();
    let mut found = Vec::new();
    let mut range = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let flags = flags.split_whitespace().map(str::to_owned).collect();
            found.push((range.take().expect("VmFlags after a header"), flags));
        } else if let Some((start, end)) = line.split_once(' ').and_then(|(r, _)| r.split_once('-'))
        {
            if let (Some(start), Some(end)) = (hex(start), hex(end)) {
                range = Some(start..end);
            }
        }
    }
    found
}

fn check_mappings(live: &[Live]) {
    let maps = mappings();
    let flags_at = |addr: usize| {
        let i = maps.partition_point(|(r, _)| r.end <= addr);
        match maps.get(i) {
            Some((r, flags)) if r.contains(&addr) => flags,
            _ => panic!("no mapping holds a live secret's byte"),
        }
    };
    for l in live.iter().filter(|l| !l.buf.is_empty()) {
        let (first, last) = l
            .buf
            .with_bytes(|b| (b.as_ptr() as usize, b.as_ptr() as usize + b.len() - 1));
        let mut wanted = vec!["dd"];
        match l.buf.tier() {
            Tier::Secretmem => wanted.push("lo"),
            Tier::Locked => wanted.extend(["lo", "wf"]),
            Tier::Unlocked => wanted.push("wf"),
        }
        if cfg!(sanitize = "address") {
            wanted.retain(|&f| f != "lo");
        }
        for addr in [first, last] {
            let flags = flags_at(addr);
            for flag in &wanted {
                assert!(
                    flags.iter().any(|f| f == flag),
                    "a live {} secret's page lacks VmFlags {flag}",
                    l.buf.tier().name()
                );
            }
        }
    }
}

/// What the process had locked before the pool locked anything.
static BASELINE: OnceLock<usize> = OnceLock::new();

fn check(live: &[Live]) {
    for l in live {
        assert!(intact(l), "a live secret's bytes changed");
    }
    let stats = pool_stats();
    let slotted = live.iter().filter(|l| l.buf.len() <= LARGEST_CLASS).count();
    assert_eq!(stats.live_slots, slotted, "pool_stats' live slots");
    if cfg!(sanitize = "address") {
        return;
    }
    let baseline = *BASELINE.get().unwrap();
    assert_eq!(
        vmlck_bytes(),
        baseline + stats.locked_bytes,
        "VmLck disagrees with the pool's locked bytes"
    );
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

fn allocate(live: &mut Vec<Live>, next_id: &mut u64, req: TierRequest, len: usize) {
    let Ok((buf, degraded)) = SecretBuf::allocate(req, len) else {
        // Only a protecting tier may be refused (the memory-lock limit, or
        // no secretmem in this kernel).
        assert!(
            !matches!(req, TierRequest::Exactly(Tier::Unlocked)),
            "unlocked memory refused"
        );
        return;
    };
    assert_eq!(buf.len(), len);
    match req {
        TierRequest::Exactly(tier) => assert_eq!(buf.tier(), tier),
        TierRequest::Auto | TierRequest::Transient => {
            assert_eq!(degraded.is_some(), buf.tier() == Tier::Unlocked);
            if req == TierRequest::Transient {
                assert_ne!(buf.tier(), Tier::Secretmem);
            }
        }
    }
    assert!(
        buf.with_bytes(|b| b.iter().all(|&x| x == 0)),
        "a new buffer is not zeroed"
    );
    let id = *next_id;
    *next_id += 1;
    buf.fill(|b| {
        b.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = pattern(id, i))
    });
    live.push(Live {
        buf,
        id,
        zeroed: false,
    });
}

fuzz_target!(|data: &[u8]| {
    BASELINE.get_or_init(|| vmlck_bytes() - pool_stats().locked_bytes);
    let mut input = Input(data);
    let mut live: Vec<Live> = Vec::new();
    let mut next_id = 1u64;
    let mut mapping_checks = 0;
    while let Some(op) = input.next() {
        let mut arg = || input.next().unwrap_or(0);
        match op % 9 {
            0..=2 if live.len() < MAX_LIVE => {
                let req = requested(arg());
                let len = length(arg(), arg());
                allocate(&mut live, &mut next_id, req, len);
            }
            0..=4 if !live.is_empty() => {
                let l = live.swap_remove(arg() as usize % live.len());
                assert!(intact(&l), "a secret's bytes changed before it was freed");
                drop(l);
            }
            5 if !live.is_empty() => {
                let i = arg() as usize % live.len();
                live[i].buf.zeroize();
                live[i].zeroed = true;
                assert!(intact(&live[i]));
            }
            6 => {
                let req = requested(arg());
                let (a, b) = (length(arg(), arg()), length(arg(), arg()));
                let (n, m) = (arg() as usize * 2, arg() as usize * 2);
                reserve(
                    req,
                    std::iter::repeat_n(a, n).chain(std::iter::repeat_n(b, m)),
                );
            }
            7 => release_unused(),
            8 => {
                check(&live);
                // Reading smaps costs about a millisecond: twice an input at most.
                if mapping_checks < 2 {
                    check_mappings(&live);
                    mapping_checks += 1;
                }
            }
            _ => check(&live),
        }
    }
    check(&live);
    if mapping_checks == 0 {
        check_mappings(&live);
    }
    for l in live.drain(..) {
        assert!(intact(&l));
    }
    release_unused();
    check(&live);
    let stats = pool_stats();
    assert_eq!(stats.live_slots, 0);
    assert!(
        stats.arenas <= SPARE_ARENAS,
        "more than one spare arena per class"
    );
    assert!(stats.mapped_bytes <= SPARE_ARENAS * SPARE_PAGES * PAGE);
});
