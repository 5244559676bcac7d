//! Simulated time and link arithmetic.
//!
//! Time is in picoseconds (`u64`, about 213 days), fine enough that
//! serialisation times are exact integers at the usual rates: 800 ps per
//! byte at 10 Gbit/s, 320 at 25, 200 at 40, 80 at 100. The protocol sees
//! nanoseconds ([`homa_proto::Instant`]), rounded down.

use core::time::Duration;

use homa_proto::Instant;

/// Simulated time in picoseconds.
pub type Ps = u64;

/// Picoseconds per nanosecond.
pub const PS_PER_NS: u64 = 1000;

/// Picoseconds per second.
pub const PS_PER_SEC: u64 = 1_000_000_000_000;

/// A duration in picoseconds (saturating).
pub fn ps(d: Duration) -> Ps {
    u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_mul(PS_PER_NS)
}

/// Time to serialise `bytes` on a link of `bps` bits per second, rounded
/// up to a whole picosecond.
pub fn ser_ps(bytes: u32, bps: u64) -> Ps {
    (u64::from(bytes) * 8 * PS_PER_SEC).div_ceil(bps)
}

/// The protocol's view of a simulated instant.
pub fn instant(t: Ps) -> Instant {
    Instant::from_nanos(t / PS_PER_NS)
}

/// A protocol instant in simulated time.
pub fn from_instant(i: Instant) -> Ps {
    i.as_nanos().saturating_mul(PS_PER_NS)
}

/// Picoseconds as microseconds, for reports.
pub fn us(t: Ps) -> f64 {
    t as f64 / 1e6
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn ser_ps__exact_at_common_rates() {
        assert_eq!(ser_ps(1542, 10_000_000_000), 1_233_600);
        assert_eq!(ser_ps(1542, 40_000_000_000), 308_400);
        assert_eq!(ser_ps(1, 3_000_000_000), 2667);
        assert_eq!(ps(Duration::from_nanos(250)), 250_000);
        assert_eq!(ps(Duration::MAX), u64::MAX);
        assert_eq!(instant(1_999), Instant::from_nanos(1));
        assert_eq!(from_instant(Instant::from_nanos(3)), 3_000);
    }
}
