//! Arbitrary bytes into the wire parser: never panics, and whatever parses
//! re-emits to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    homa_proto::fuzzing::wire_roundtrip(data);
});
