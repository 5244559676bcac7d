//! A small deterministic random number generator (SplitMix64).
//!
//! Workload generation must be reproducible from a seed (the simulator's
//! results are byte-identical for a given seed), so this crate carries its
//! own generator instead of reading OS randomness. It is not cryptographic.
//!
//! `homa_proto::Rng` is the same algorithm today, but that one only picks
//! RPC id starts and hash seeds inside the protocol and may change for the
//! protocol's reasons; this stream decides every size, gap and destination
//! of the simulator's stored results and of the load generator, so it is
//! pinned here (see the reference-value test) rather than borrowed.

/// SplitMix64: 64 bits of state, good statistical quality, fully
/// determined by its seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for sub-stream `stream` of `seed`: different streams of
    /// one seed are independent for practical purposes (used to give every
    /// host its own arrival process).
    pub fn stream(seed: u64, stream: u64) -> Rng {
        let mut mix = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Rng(mix.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform float in `(0, 1]`.
    pub fn next_f64_open0(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the bias (< n / 2^64) is irrelevant here.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn new__same_seed_same_sequence() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let x: Vec<u64> = (0..10).map(|_| a.next_u64()).collect();
        let y: Vec<u64> = (0..10).map(|_| b.next_u64()).collect();
        let z: Vec<u64> = (0..10).map(|_| c.next_u64()).collect();
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    /// Stored simulator results depend on this exact stream.
    #[test]
    fn next_u64__splitmix64_reference_values() {
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
        assert_eq!(Rng::stream(7, 1).next_u64(), 0xB842_58F5_5889_B9B8);
    }

    #[test]
    fn stream__streams_differ() {
        assert_ne!(Rng::stream(1, 0).next_u64(), Rng::stream(1, 1).next_u64());
        assert_eq!(Rng::stream(1, 5), Rng::stream(1, 5));
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
