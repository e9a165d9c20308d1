//! Human units in config values: durations (`"30s"`, `"1h 30m"`, `"P1D"`)
//! and byte sizes (`"64MiB"`, `"100MB"`, or a plain integer of bytes).
//!
//! Every duration and size in a config file goes through this one parser,
//! so every key accepts the same spellings and the same range: a value that
//! would overflow a clock or wait for years is refused when the file is read,
//! with its key and line, rather than panicking or hanging at run time.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// The longest duration any key accepts: a year and a day. Longer values are
/// typos (`"300000000d"`) and would overflow date arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// The largest size any key accepts: 1 TiB.
pub const MAX_SIZE: u64 = 1 << 40;

/// Parses a duration: ISO 8601 (`P1D`, `PT5M`, `P1DT12H`, `P2W`; no years or
/// months, whose length varies) or humantime (`7s`, `500ms`, `1h 30m`), up to
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let d = if let Some(rest) = t.strip_prefix('P').or_else(|| t.strip_prefix('p')) {
        parse_iso8601(rest).ok_or_else(|| {
            format!("`{text}` is not an ISO 8601 duration such as `P1D` or `PT5M` (years and months are not allowed: their length varies)")
        })?
    } else {
        humantime::parse_duration(t).map_err(|e| {
            let why = match e {
                humantime::DurationError::NumberOverflow => "too long".to_string(),
                other => other.to_string(),
            };
            format!("invalid duration `{text}` ({why}); use e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or \"PT5M\"")
        })?
    };
    if d > MAX_DURATION {
        return Err(format!(
            "duration `{text}` is too long: at most 366 days (`366d`, `P366D`)"
        ));
    }
    Ok(d)
}

/// The part after `P`. `None` for anything that is not a whole, non-empty
/// ISO 8601 day-time duration. Saturating arithmetic: a huge value comes
/// out as a huge duration, which the range check then names as too long.
fn parse_iso8601(rest: &str) -> Option<Duration> {
    let mut secs: u64 = 0;
    let mut in_time = false;
    let mut number = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c {
            'T' | 't' if !in_time && number.is_empty() => in_time = true,
            '0'..='9' => number.push(c),
            _ => {
                if number.is_empty() {
                    return None;
                }
                // Only digits: a parse failure is an overflow.
                let n: u64 = number.parse().unwrap_or(u64::MAX);
                number.clear();
                let unit = match (in_time, c.to_ascii_uppercase()) {
                    (false, 'W') => 7 * 86_400,
                    (false, 'D') => 86_400,
                    (true, 'H') => 3_600,
                    (true, 'M') => 60,
                    (true, 'S') => 1,
                    _ => return None,
                };
                secs = secs.saturating_add(n.saturating_mul(unit));
                any = true;
            }
        }
    }
    // `PT0S` is a valid zero; keys that need a positive value say so.
    (number.is_empty() && any).then(|| Duration::from_secs(secs))
}

pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

/// A size in bytes, written as an integer or with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().map_err(|_| {
            format!("invalid size `{s}`; use e.g. \"64MiB\", \"100MB\" or a number of bytes")
        })?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            "tb" => 1_000_000_000_000,
            "tib" | "t" => 1 << 40,
            other => {
                return Err(format!(
                "unknown size unit `{other}` in `{s}`; use B, KB, KiB, MB, MiB, GB, GiB, TB or TiB"
            ))
            }
        };
        let bytes = n * mult as f64;
        if !bytes.is_finite() || bytes > MAX_SIZE as f64 {
            return Err(format!("size `{s}` is too large: at most 1 TiB"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a size: a number of bytes or a string such as \"64MiB\"",
            )
        })? {
            Raw::Int(n) if (0..=MAX_SIZE as i64).contains(&n) => Ok(ByteSize(n as u64)),
            Raw::Int(n) => Err(serde::de::Error::custom(format!(
                "size {n} is out of range: 0 to 1 TiB ({MAX_SIZE} bytes)"
            ))),
            Raw::Str(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64MiB").unwrap(), ByteSize(64 << 20));
        assert_eq!(ByteSize::parse("100MB").unwrap(), ByteSize(100_000_000));
        assert_eq!(ByteSize::parse("4096").unwrap(), ByteSize(4096));
        assert_eq!(ByteSize::parse("1TiB").unwrap(), ByteSize(1 << 40));
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("2TiB")
            .unwrap_err()
            .contains("at most 1 TiB"));
        assert!(ByteSize::parse("18446744073709551615GiB")
            .unwrap_err()
            .contains("too large"));
        assert!(ByteSize::parse(&"9".repeat(400)).is_err());
    }

    #[test]
    fn durations_iso_and_humantime_share_one_parser() {
        assert_eq!(parse_duration("P1D").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("PT5M").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("PT6H").unwrap(), Duration::from_secs(21_600));
        assert_eq!(
            parse_duration("P1DT12H30M").unwrap(),
            Duration::from_secs(86_400 + 12 * 3600 + 30 * 60)
        );
        assert_eq!(
            parse_duration("P2W").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(parse_duration("7s").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("PT0S").unwrap(), Duration::ZERO);
        assert!(parse_duration("P1M").unwrap_err().contains("months"));
        assert!(parse_duration("P").is_err());
        assert!(parse_duration("PT").is_err());
        assert!(parse_duration("P1H").is_err());
    }

    #[test]
    fn durations_that_would_wait_for_years_or_overflow_are_refused() {
        assert_eq!(parse_duration("366d").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("P366D").unwrap(), MAX_DURATION);
        for text in [
            "367d",
            "300000000d",
            "18446744073709551615s",
            "99999999999999999999999s",
            "P99999999999999999D",
            "P18446744073709551615W",
            "2y",
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(
                e.contains("too long") || e.contains("366 days"),
                "{text}: {e}"
            );
        }
    }
}
