//! Parsers and checks of command-line values shared by the subcommands:
//! durations with units, counts that must be positive, message sizes
//! within what Homa carries. Each rejects a bad value before anything
//! runs, with a message that says what is allowed.

use std::time::Duration;

use homa_workload::SizeSpec;

/// The longest message a Homa socket of this project accepts by default
/// (the protocol's `max_message_length`).
pub(crate) fn max_message_length() -> u32 {
    homa_proto::Config::default().max_message_length
}

/// A duration: a number with a unit (`10s`, `250ms`, `1.5ms`, `500us`,
/// `1m30s`) or a plain number of seconds (`2.5`): the simulator's syntax
/// (`homa_sim::config::parse_duration`), so that every command reads the
/// same.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    homa_sim::config::parse_duration(s).map_err(|e| match e {
        homa_sim::SimError::Config(m) => format!("{s:?}: {m}"),
        e => format!("{s:?}: {e}"),
    })
}

/// A duration that is not zero.
pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?}: must be longer than zero"));
    }
    Ok(d)
}

/// A count of at least one.
pub(crate) fn positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// A count of at least one.
pub(crate) fn positive_u64(s: &str) -> Result<u64, String> {
    positive_usize(s).map(|n| n as u64)
}

/// A port count of at least one.
pub(crate) fn positive_u16(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e} (1..=65535)")),
    }
}

/// A rate or factor that is finite and not negative.
pub(crate) fn non_negative_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!("{s:?}: must be a finite number >= 0")),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// A workload: `w1`..`w5`, `starve`, or a fixed size in bytes no larger
/// than a Homa message ([`max_message_length`]).
pub(crate) fn workload(s: &str) -> Result<SizeSpec, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let max = max_message_length();
        return match t.parse::<u64>() {
            Ok(0) => Err("a fixed size must be at least 1 byte".into()),
            Ok(n) if n <= u64::from(max) => Ok(SizeSpec::Fixed(n as u32)),
            _ => Err(format!(
                "{t} bytes is too large: the longest Homa message is {max} bytes"
            )),
        };
    }
    t.parse::<SizeSpec>().map_err(|e| e.to_string())
}

/// Checks that `count` consecutive ports from `base`'s fit below 65536
/// (`what` names the option pair for the message). Without it a range
/// wrapped: from 65535, the next "port" was 0 (an ephemeral one) and then
/// 1, 2, ...
pub(crate) fn port_range(base: std::net::SocketAddr, count: u16, what: &str) -> anyhow::Result<()> {
    let last = u32::from(base.port()) + u32::from(count.max(1)) - 1;
    if base.port() != 0 && last > u32::from(u16::MAX) {
        anyhow::bail!(
            "{what}: {count} ports from {} would run past 65535 (the last would be {last})",
            base.port()
        );
    }
    Ok(())
}

/// A share of a link in (0, 1].
pub(crate) fn link_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 1.0 => Ok(x),
        Ok(_) => Err(format!(
            "{s:?}: must be more than 0 and at most 1 (a share of the link)"
        )),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// A message length: 1 byte up to the longest Homa message.
pub(crate) fn message_length(s: &str) -> Result<u32, String> {
    let max = max_message_length();
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 && n <= u64::from(max) => Ok(n as u32),
        Ok(_) => Err(format!(
            "{s:?}: must be 1 to {max} bytes (the longest Homa message)"
        )),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// [`message_length`] as a `usize`.
pub(crate) fn message_length_usize(s: &str) -> Result<usize, String> {
    message_length(s).map(|n| n as usize)
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn duration__units_and_plain_seconds() {
        assert_eq!(duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(duration("0").unwrap(), Duration::ZERO);
        assert!(duration("-1").is_err());
        assert!(duration("10 parsecs").is_err());
        assert!(positive_duration("0s").is_err());
    }

    #[test]
    fn workload__sizes_checked_against_the_largest_message() {
        assert_eq!(workload("100").unwrap(), SizeSpec::Fixed(100));
        assert_eq!(workload("w4").unwrap().to_string(), "w4");
        let big = workload("4294967296").unwrap_err();
        assert!(big.contains("too large"), "{big}");
        let over = workload(&(max_message_length() as u64 + 1).to_string()).unwrap_err();
        assert!(over.contains("too large"), "{over}");
        assert!(workload("0").unwrap_err().contains("at least 1 byte"));
        assert!(workload("w9").is_err());
    }

    #[test]
    fn counts__zero_refused() {
        assert!(positive_usize("0").is_err());
        assert_eq!(positive_usize("3").unwrap(), 3);
        assert!(positive_u16("0").is_err());
        assert!(positive_u64("0").is_err());
        assert!(non_negative_f64("-1").is_err());
        assert!(non_negative_f64("nan").is_err());
    }
}
