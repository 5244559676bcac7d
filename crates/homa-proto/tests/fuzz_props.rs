//! Short property-test versions of the fuzz targets in `fuzz/`: the same
//! harnesses, fed by proptest instead of libFuzzer, so every run of the
//! suite exercises them.

use homa_proto::fuzzing::{endpoint_program, wire_roundtrip};
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
