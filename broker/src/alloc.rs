//! The process allocator: the system allocator, except that single huge allocations are served by
//! lazily-backed anonymous mappings.
//!
//! Why: the `kafka-protocol` decoders call `Vec::with_capacity(n)` with an element count read off
//! the wire before reading any element. A hostile 30-byte frame claiming 2^31 elements asks for
//! hundreds of GiB; the system allocator refuses that and Rust aborts the whole process. Mapping
//! such a request with `MAP_NORESERVE` costs only address space: the decoder then runs out of
//! input after a few elements, returns an error, and the mapping is released untouched. Legitimate
//! allocations of this size do not occur in the broker.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large get their own `MAP_NORESERVE` mapping.
const HUGE: usize = 1 << 30;

/// See the module documentation.
pub struct Allocator;

#[allow(
    unsafe_code,
    reason = "a global allocator is unsafe by definition; see each SAFETY note"
)]
// SAFETY: every method upholds `GlobalAlloc`'s contract: small layouts go to `System` unchanged;
// huge ones come from `mmap`, whose result is page-aligned (enough for any alignment up to the
// page size; larger alignments fall back to `System`) and at least `size` bytes long, and are
// returned with `munmap` of the same size, decided by the same size test on the same layout.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            // Fresh anonymous pages are zero.
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout) {
            // SAFETY: `ptr` came from `map(layout.size())` (same size test on the same layout).
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(layout) && !is_huge(new_layout) {
            // SAFETY: both sides belong to `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing between the two kinds: move by hand.
        // SAFETY: `new_layout` is valid and non-zero (it is at least as large as a huge or small
        // existing allocation's replacement); the copy covers the smaller of the two sizes, both
        // of which are allocated.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= 4096
}

#[allow(unsafe_code, reason = "anonymous mmap for huge allocations")]
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping touches no existing memory; failure is reported as
    // MAP_FAILED and turned into null, which the allocator contract allows.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}
