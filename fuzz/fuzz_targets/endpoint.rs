//! An endpoint fed an arbitrary program of datagrams (raw and structured),
//! time jumps, application actions and socket churn; memory, peers and
//! output must stay bounded and everything must be reclaimed at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    homa_proto::fuzzing::endpoint_program(data);
});
