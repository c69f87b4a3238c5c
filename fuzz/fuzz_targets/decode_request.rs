//! Feeds arbitrary bytes to the broker's request decoding (header, version check, body) the way a
//! connection does after framing. Any panic or abort is a bug: hostile clients send exactly this.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: sluice::alloc::Allocator = sluice::alloc::Allocator;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::protocol::decode_only(bytes::Bytes::copy_from_slice(data));
});
