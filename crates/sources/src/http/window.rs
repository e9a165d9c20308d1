//! Incremental windows over a datetime cursor: how datetimes are written to
//! and read from an API, ISO 8601 / humantime durations for `step` and
//! `lookback`, and the slicing of `[start, end)` into steps.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use std::time::Duration;
use tributary_core::window;

/// How a datetime is written in requests and checkpoints and read from records.
#[derive(Debug, Clone)]
pub struct DatetimeFormat {
    /// `None`: RFC 3339 in UTC (`2024-11-01T14:30:00Z`). Else a strftime
    /// pattern without zone, read and written in `timezone`.
    pattern: Option<String>,
    timezone: Tz,
}

impl DatetimeFormat {
    pub fn rfc3339() -> Self {
        DatetimeFormat {
            pattern: None,
            timezone: Tz::UTC,
        }
    }

    /// `format = "rfc3339"` or a strftime pattern such as `%Y-%m-%d %H:%M:%S`.
    pub fn new(format: &str, timezone: Tz) -> Result<Self, String> {
        if format.eq_ignore_ascii_case("rfc3339") || format.eq_ignore_ascii_case("iso8601") {
            return Ok(DatetimeFormat {
                pattern: None,
                timezone,
            });
        }
        // Reject patterns chrono cannot render before the first request does.
        let probe = Utc
            .timestamp_opt(0, 0)
            .single()
            .map(|t| t.with_timezone(&timezone));
        let rendered = probe.map(|t| {
            use std::fmt::Write;
            let mut s = String::new();
            write!(s, "{}", t.format(format)).is_ok()
        });
        if rendered != Some(true) {
            return Err(format!("`{format}` is not a valid strftime pattern"));
        }
        Ok(DatetimeFormat {
            pattern: Some(format.to_string()),
            timezone,
        })
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    pub fn format(&self, t: DateTime<Utc>) -> String {
        match &self.pattern {
            None => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            Some(p) => t.with_timezone(&self.timezone).format(p).to_string(),
        }
    }

    /// Reads a datetime written in this format; RFC 3339 with an offset is
    /// accepted whatever the pattern, since APIs mix them.
    pub fn parse(&self, text: &str) -> Option<DateTime<Utc>> {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(t.with_timezone(&Utc));
        }
        let naive = match &self.pattern {
            Some(p) if self.writes_offset() => {
                return DateTime::parse_from_str(text, p)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
            Some(p) => NaiveDateTime::parse_from_str(text, p).ok()?,
            None => NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
                .ok()?,
        };
        local_to_utc(self.timezone, naive)
    }

    /// Drops what this format cannot write (sub-seconds for second-precision
    /// patterns), so a window end written to the API and the next window's
    /// start are the same instant. Done on the UTC reading: a round trip
    /// through the zone's wall clock would move an instant of a repeated
    /// fall-back hour to its first occurrence, an hour back.
    pub fn truncate(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        // RFC 3339 keeps milliseconds: few APIs accept nanoseconds.
        let t = chrono::SubsecRound::trunc_subsecs(t, 3);
        match &self.pattern {
            Some(p) if !self.writes_offset() => {
                let text = t.naive_utc().format(p).to_string();
                NaiveDateTime::parse_from_str(&text, p).map_or(t, |n| n.and_utc())
            }
            _ => t,
        }
    }

    /// Whether written datetimes carry their offset (or are epoch seconds),
    /// so the API can compare them as instants.
    fn writes_offset(&self) -> bool {
        self.pattern.as_deref().is_some_and(|p| {
            ["%z", "%:z", "%::z", "%#z", "%Z", "%s", "%+"]
                .iter()
                .any(|f| p.contains(f))
        })
    }

    /// The window `[start, end)` as the API is asked for it. Naive local
    /// patterns take the wall-clock range that holds every local time of
    /// the window, so one spanning a fall-back re-reads the repeated hour
    /// instead of asking for an empty or backwards range.
    pub fn request_bounds(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> (String, String) {
        match &self.pattern {
            Some(p) if !self.writes_offset() => {
                let (lo, hi) = window::local_bounds(self.timezone, start, end);
                (lo.format(p).to_string(), hi.format(p).to_string())
            }
            _ => (self.format(start), self.format(end)),
        }
    }
}

/// How positions are written in checkpoints whatever the API's format: an
/// instant in UTC, never a wall-clock time that could mean two instants.
pub fn instant_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub use tributary_core::window::local_to_utc;

/// The end of the slice starting at `start`: one `step` later, never past `end`.
pub fn slice_end(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: Option<Duration>,
) -> DateTime<Utc> {
    match step.and_then(|s| chrono::Duration::from_std(s).ok()) {
        Some(s) => start.checked_add_signed(s).map_or(end, |t| t.min(end)),
        None => end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn chargeover_style_format_in_a_zone_round_trips() {
        let f = DatetimeFormat::new("%Y-%m-%d %H:%M:%S", chrono_tz::America::New_York).unwrap();
        let t = utc("2024-11-01T18:30:00Z");
        assert_eq!(f.format(t), "2024-11-01 14:30:00");
        assert_eq!(f.parse("2024-11-01 14:30:00"), Some(t));
        assert_eq!(f.truncate(utc("2024-11-01T18:30:00.900Z")), t);
    }

    #[test]
    fn rfc3339_reads_offsets_and_writes_utc() {
        let f = DatetimeFormat::rfc3339();
        assert_eq!(
            f.format(utc("2024-01-01T00:00:00Z")),
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(
            f.parse("2024-01-01T02:00:00+02:00"),
            Some(utc("2024-01-01T00:00:00Z"))
        );
        assert_eq!(f.parse("nonsense"), None);
    }

    #[test]
    fn slices_stop_at_the_window_end() {
        let s = utc("2024-01-01T00:00:00Z");
        let e = utc("2024-01-02T12:00:00Z");
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(slice_end(s, e, day), utc("2024-01-02T00:00:00Z"));
        assert_eq!(slice_end(utc("2024-01-02T00:00:00Z"), e, day), e);
        assert_eq!(slice_end(s, e, None), e);
    }

    #[test]
    fn an_instant_of_a_repeated_hour_stays_itself() {
        let f = DatetimeFormat::new("%Y-%m-%d %H:%M:%S", chrono_tz::America::New_York).unwrap();
        // 01:00:05 EST, the second 01:00:05 of the day.
        let t = utc("2024-11-03T06:00:05.700Z");
        assert_eq!(f.truncate(t), utc("2024-11-03T06:00:05Z"));
        assert_eq!(
            f.request_bounds(utc("2024-11-03T05:59:58Z"), utc("2024-11-03T06:00:05Z")),
            (
                "2024-11-03 01:00:00".to_string(),
                "2024-11-03 02:00:00".to_string()
            )
        );
        let with_offset =
            DatetimeFormat::new("%Y-%m-%dT%H:%M:%S%z", chrono_tz::America::New_York).unwrap();
        assert_eq!(
            with_offset
                .request_bounds(utc("2024-11-03T05:59:58Z"), utc("2024-11-03T06:00:05Z"))
                .1,
            "2024-11-03T01:00:05-0500"
        );
    }

    #[test]
    fn dst_gap_moves_forward() {
        let tz = chrono_tz::America::New_York;
        let naive =
            NaiveDateTime::parse_from_str("2024-03-10 02:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        // The first instant after the gap (03:00 EDT), not 03:30.
        assert_eq!(local_to_utc(tz, naive), Some(utc("2024-03-10T07:00:00Z")));
        let f = DatetimeFormat::new("%Y-%m-%d %H:%M:%S", tz).unwrap();
        assert_eq!(
            f.parse("2024-03-10 02:30:00"),
            Some(utc("2024-03-10T07:00:00Z"))
        );
    }
}
