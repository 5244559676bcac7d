//! Two or three endpoints exchanging RPCs through a lossy, duplicating,
//! reordering, delaying network whose hosts crash and restart, all decided
//! by the input: responses byte-exact, no request run twice (across
//! restarts too), every RPC ends within the stated bound once the network
//! behaves, memory bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    homa_proto::fuzzing::cluster_program(data);
});
