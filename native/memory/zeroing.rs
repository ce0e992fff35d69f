//! `ZeroingAlloc`, the extension's global allocator: the system allocator,
//! but every block is zeroed before it is freed. Secrets live in guarded
//! pages (`SecretBuf`), yet crates we call into keep copies on the ordinary
//! heap for a moment: the HTTP client's connection buffer holds a Vault
//! reply, rustls its decrypted records, header values the token. Freed
//! unzeroed, those bytes would stay in the heap until reused.
//!
//! `realloc` never hands a block back to the system allocator unzeroed: it
//! allocates anew, copies and zeroes the old block (the system's `realloc`
//! may move a block and free the old one as it is). Memory that Python's
//! own allocator manages is untouched.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;

pub struct ZeroingAlloc;

// SAFETY: every method forwards to `System` with the caller's layout;
// `dealloc` and `realloc` only add writes of zeros into the block being
// freed, which the caller owns and no longer uses.
unsafe impl GlobalAlloc for ZeroingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: `ptr` was allocated with `layout`, so `layout.size()`
            // bytes at it are ours to write until freed just below.
            unsafe { crate::sys::zero(block, layout.size()) };
        }
        // SAFETY: the caller's contract is `System.dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to
        // `layout.align()`, does not overflow isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (the caller's contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and distinct.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated with `layout` and is not used again.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_and_moved_blocks_are_zeroed() {
        let a = ZeroingAlloc;
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a fresh 64-byte block, written, grown, read and freed once.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 0xAB, 64);
            let q = a.realloc(p, layout, 4096);
            assert!(!q.is_null());
            assert!((0..64).all(|i| *q.add(i) == 0xAB), "contents kept");
            a.dealloc(q, Layout::from_size_align(4096, 8).unwrap());
        }
    }
}
