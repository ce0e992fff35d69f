//! `PerProcess<T>`: a lazily created global that a forked child re-creates
//! instead of inheriting. The parent's value may be mid-update or locked by a
//! thread that does not exist in the child, so the child leaks it untouched
//! and starts afresh.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::sys::fork_generation;

struct Entry<T> {
    generation: u64,
    value: T,
}

pub struct PerProcess<T> {
    current: AtomicPtr<Entry<T>>,
    init: fn() -> T,
    // Sync/Send only when T is.
    _owns: PhantomData<Box<T>>,
}

impl<T> PerProcess<T> {
    pub const fn new(init: fn() -> T) -> Self {
        PerProcess {
            current: AtomicPtr::new(ptr::null_mut()),
            init,
            _owns: PhantomData,
        }
    }

    /// This process's value, created on first use after start or fork.
    pub fn get(&'static self) -> &'static T {
        let generation = fork_generation();
        loop {
            let seen = self.current.load(Ordering::Acquire);
            if !seen.is_null() {
                // SAFETY: published entries are never freed (see below), so a
                // non-null pointer stays valid for the life of the process.
                let entry = unsafe { &*seen };
                if entry.generation == generation {
                    return &entry.value;
                }
            }
            let fresh = Box::into_raw(Box::new(Entry {
                generation,
                value: (self.init)(),
            }));
            match self
                .current
                .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // The replaced entry (if any) belongs to the parent of a fork
                // and is deliberately leaked.
                // SAFETY: `fresh` is now published and never freed.
                Ok(_) => return unsafe { &(*fresh).value },
                Err(_) => {
                    // Another thread won; ours was never shared.
                    // SAFETY: `fresh` came from Box::into_raw above.
                    drop(unsafe { Box::from_raw(fresh) });
                }
            }
        }
    }
}
