//! The guest's memory allocator (wasm32 only, feature `allocator`, on by default): small blocks
//! come from per-size free lists, so the allocation a transform makes for each record (a new
//! value, a copied key) costs a pointer pop and push instead of a general allocator's search.
//! Larger blocks and unusual alignments go to the system allocator.
//!
//! Freed small blocks are kept for their size class and never handed back to the system
//! allocator: a guest's memory stays at its high-water mark per size, which suits per-record
//! work that allocates and frees the same few sizes over and over.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// Size classes 16, 32, ..., 2048 bytes.
const MIN_SHIFT: u32 = 4;
const CLASSES: usize = 8;
const MAX_SMALL: usize = 1 << (MIN_SHIFT as usize + CLASSES - 1);
/// Every small block is aligned to this (class sizes are multiples of it).
const SMALL_ALIGN: usize = 16;
/// Small blocks are carved from chunks of this size.
const CHUNK: usize = 64 << 10;

/// Size-class allocator for single-threaded wasm guests.
pub struct GuestAllocator {
    state: UnsafeCell<State>,
}

struct State {
    /// Head of each class's free list; a free block holds the pointer to the next.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    next: usize,
    end: usize,
}

// SAFETY: a wasm32-wasip1 guest has one thread; the state is never reached from two at once.
unsafe impl Sync for GuestAllocator {}

impl GuestAllocator {
    pub const fn new() -> GuestAllocator {
        GuestAllocator {
            state: UnsafeCell::new(State {
                free: [std::ptr::null_mut(); CLASSES],
                next: 0,
                end: 0,
            }),
        }
    }
}

impl Default for GuestAllocator {
    fn default() -> GuestAllocator {
        GuestAllocator::new()
    }
}

fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > SMALL_ALIGN || layout.size() > MAX_SMALL {
        return None;
    }
    let size = layout.size().max(1 << MIN_SHIFT).next_power_of_two();
    Some((size.trailing_zeros() - MIN_SHIFT) as usize)
}

// SAFETY: blocks handed out are of at least the layout's size and alignment, and never handed
// out twice until freed; small blocks only ever go back to the free list of their class.
unsafe impl GlobalAlloc for GuestAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: forwarded as given.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see `Sync`), and no reference outlives this call.
        let state = unsafe { &mut *self.state.get() };
        let head = state.free[class];
        if !head.is_null() {
            // SAFETY: a free block's first word is the next free block.
            state.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = 1usize << (class as u32 + MIN_SHIFT);
        if state.end - state.next < size {
            // SAFETY: a valid, non-zero layout.
            let chunk =
                unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, SMALL_ALIGN)) };
            if chunk.is_null() {
                return chunk;
            }
            // The rest of the old chunk is given up (at most one block's worth per chunk).
            state.next = chunk as usize;
            state.end = state.next + CHUNK;
        }
        let block = state.next as *mut u8;
        state.next += size;
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: allocated by `System` with this layout (see `alloc`).
            return unsafe { System.dealloc(ptr, layout) };
        };
        // SAFETY: single-threaded; the block is ours and at least a pointer in size.
        unsafe {
            let state = &mut *self.state.get();
            ptr.cast::<*mut u8>().write(state.free[class]);
            state.free[class] = ptr;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // SAFETY: both large: the system allocator's own block.
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            (Some(a), Some(b)) if a == b => ptr,
            _ => {
                // SAFETY: a fresh block of the new layout; the old one is valid for its size.
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
    }
}
