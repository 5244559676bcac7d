//! The seeded generator: homa-proto's SplitMix64 ([`homa_proto::Rng`]),
//! re-exported so that one generator serves the protocol and the traffic.
//!
//! Workload generation must be reproducible from a seed (the simulator's
//! results are byte-identical for a given seed). The stream decides every
//! size, gap and destination of the simulator's stored results and of the
//! load generator; the reference-value tests here and in homa-proto pin it.

pub use homa_proto::Rng;

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    /// Stored simulator results depend on this exact stream.
    #[test]
    fn next_u64__splitmix64_reference_values() {
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
        assert_eq!(Rng::stream(7, 1).next_u64(), 0xB842_58F5_5889_B9B8);
        assert_ne!(Rng::stream(1, 0).next_u64(), Rng::stream(1, 1).next_u64());
    }

    #[test]
    fn next_f64__ranges() {
        let mut r = Rng::new(3);
        for _ in 0..10_000 {
            let a = r.next_f64();
            assert!((0.0..1.0).contains(&a));
            let b = r.next_f64_open0();
            assert!(b > 0.0 && b <= 1.0);
            assert!(r.below(10) < 10);
        }
        assert_eq!(r.below(0), 0);
    }
}
