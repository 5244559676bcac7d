//! Short property-test versions of the fuzz targets in `fuzz/`: the same
//! harnesses, fed by proptest instead of libFuzzer, so every run of the
//! suite exercises them.

use homa_proto::fuzzing::{cluster_program, endpoint_program, wire_roundtrip};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn wire_parser_roundtrips_and_never_panics(data in proptest::collection::vec(any::<u8>(), 0..160)) {
        wire_roundtrip(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn endpoint_survives_arbitrary_datagram_sequences(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        endpoint_program(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn endpoints_keep_their_promises_through_a_hostile_network(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        cluster_program(&data);
    }
}

/// Inputs that once made a fuzz target fail, replayed on every run.
#[test]
fn fuzz_regressions() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("cluster") {
            cluster_program(&data);
        } else if name.starts_with("endpoint") {
            endpoint_program(&data);
        } else {
            wire_roundtrip(&data);
        }
        n += 1;
    }
    assert!(n > 0);
}
