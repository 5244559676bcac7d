//! Open-loop arrival processes: when a load generator starts its next
//! message, independent of whether earlier ones finished.
//!
//! [`Poisson`] draws exponential gaps (a Poisson process), the model of the
//! Homa paper and of the kernel benchmark's `--gbps` mode.
//! [`rate_for_load`] converts a target load (fraction of a link's bit rate)
//! into a message rate given the bytes each message puts on the link.

use crate::rng::Rng;
use crate::Error;

/// Messages per second that load a link of `link_bits_per_sec` to
/// `load` (0 < load) when each message costs `bytes_per_message` bytes on
/// the link on average. What counts as the cost (message bytes only, or
/// packet headers and framing too) is the caller's definition of load.
pub fn rate_for_load(load: f64, link_bits_per_sec: f64, bytes_per_message: f64) -> f64 {
    load * link_bits_per_sec / (8.0 * bytes_per_message)
}

/// A Poisson process: exponentially distributed gaps with a fixed mean.
#[derive(Debug, Clone)]
pub struct Poisson {
    mean_gap_secs: f64,
    rng: Rng,
}

impl Poisson {
    /// A process of `rate` events per second, its randomness from `rng`.
    pub fn new(rate: f64, rng: Rng) -> Result<Poisson, Error> {
        if !rate.is_finite() || rate <= 0.0 {
            return Err(Error::Invalid("arrival rate must be positive and finite"));
        }
        Ok(Poisson {
            mean_gap_secs: 1.0 / rate,
            rng,
        })
    }

    /// Events per second.
    pub fn rate(&self) -> f64 {
        1.0 / self.mean_gap_secs
    }

    /// Mean gap in seconds.
    pub fn mean_gap_secs(&self) -> f64 {
        self.mean_gap_secs
    }

    /// The next gap, in seconds.
    pub fn next_gap_secs(&mut self) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        -(1.0 - self.rng.next_f64()).ln() * self.mean_gap_secs
    }

    /// The next gap, in nanoseconds (rounded to the nearest).
    pub fn next_gap_nanos(&mut self) -> u64 {
        (self.next_gap_secs() * 1e9).round() as u64
    }

    /// The generator, for drawing other per-arrival choices (size,
    /// destination) from the same stream.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn rate_for_load__fills_the_link() {
        // 10 Gbit/s at 80% with 1250-byte messages: 800k messages/s.
        let r = rate_for_load(0.8, 10e9, 1250.0);
        assert!((r - 800_000.0).abs() < 1e-6);
    }

    #[test]
    fn poisson__mean_and_variance_of_gaps() {
        let mut p = Poisson::new(1000.0, Rng::new(42)).unwrap();
        let n = 200_000;
        let gaps: Vec<f64> = (0..n).map(|_| p.next_gap_secs()).collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
        // Exponential: mean 1 ms, standard deviation equal to the mean.
        assert!((mean - 1e-3).abs() < 1e-5, "{mean}");
        assert!((var.sqrt() - 1e-3).abs() < 2e-5, "{}", var.sqrt());
        assert!(Poisson::new(0.0, Rng::new(1)).is_err());
    }
}
