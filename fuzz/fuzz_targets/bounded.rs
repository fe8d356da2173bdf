//! Shared by every target: a global allocator that counts live bytes and aborts the run when
//! one allocation or the live total passes its bound, so "bounded allocation" is checked on
//! every input, not only "no panic".

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Largest single allocation an input may cause.
pub const MAX_ONE: usize = 64 << 20;
/// Largest live total an input may cause (the fuzzer's own state included).
pub const MAX_LIVE: usize = 768 << 20;

pub struct Bounded;

static LIVE: AtomicUsize = AtomicUsize::new(0);

fn over(what: &str, n: usize) -> ! {
    eprintln!("allocation bound exceeded: {what} {n} bytes");
    std::process::abort()
}

unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() > MAX_ONE {
            over("one allocation of", l.size());
        }
        let live = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        if live > MAX_LIVE {
            over("live total", live);
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > MAX_ONE {
            over("one allocation of", new);
        }
        if new >= l.size() {
            let live = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + (new - l.size());
            if live > MAX_LIVE {
                over("live total", live);
            }
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Bounded = Bounded;
