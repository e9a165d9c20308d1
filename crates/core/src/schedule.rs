//! When a stream runs: once, at a fixed interval, or on a Quartz cron
//! expression evaluated in an IANA time zone (seed 000's `0 0 2 * * ?` in
//! `America/New_York`). Parsing lives here, not in the runtime, so the config
//! crate can reject a bad expression or zone at load time.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Schedule {
    /// Run until caught up, then the stream is finished.
    Once,
    /// Start a run this long after the previous run started (or now, if it
    /// overran); the first run starts immediately.
    Interval(Duration),
    /// Start runs at the times the expression matches in `timezone`. A stream
    /// that never ran, or whose source reports unfinished work or a missed
    /// fire time, starts at once (see `Source::run_progress`).
    Cron(Box<CronSchedule>),
}

#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
    timezone: Tz,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("invalid cron expression `{expression}`: {reason}. Quartz format with seconds: `SEC MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK [YEAR]`, e.g. `0 0 2 * * ?`")]
    Cron { expression: String, reason: String },
    #[error("unknown time zone `{zone}`{suggestion}; use an IANA name such as `America/New_York` or `UTC`")]
    TimeZone { zone: String, suggestion: String },
}

impl CronSchedule {
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }
}

/// The fields of a Quartz expression, their names and numeric ranges.
const CRON_FIELDS: [(&str, u32, u32); 7] = [
    ("SEC (1st field)", 0, 59),
    ("MIN (2nd field)", 0, 59),
    ("HOUR (3rd field)", 0, 23),
    ("DAY-OF-MONTH (4th field)", 1, 31),
    ("MONTH (5th field)", 1, 12),
    ("DAY-OF-WEEK (6th field)", 1, 7),
    ("YEAR (7th field)", 1970, 2099),
];

/// Which field of a rejected expression is wrong, in the user's terms
/// (croner's own message does not say): the field count, or the first
/// number outside its field's range.
fn cron_field_problem(expression: &str) -> Option<String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if !(6..=7).contains(&fields.len()) {
        return Some(format!(
            "expected 6 or 7 fields (seconds first), found {}",
            fields.len()
        ));
    }
    for (field, (name, min, max)) in fields.iter().zip(CRON_FIELDS) {
        for part in field.split(',') {
            // The range before a step (`0/15`) or an nth weekday (`6#3`).
            let range = part.split(['/', '#']).next().unwrap_or(part);
            for bound in range.split('-') {
                let digits = bound.trim_end_matches(['L', 'W', 'l', 'w']);
                if let Ok(n) = digits.parse::<u32>() {
                    if n < min || n > max {
                        return Some(format!(
                            "{name} is `{field}`, but {n} is outside {min}-{max}"
                        ));
                    }
                }
            }
        }
    }
    None
}

impl Schedule {
    /// Parses a Quartz-style expression: seconds required, optional year,
    /// `?`, `L`, `W`, `#`, Quartz day-of-week numbering (1 = Sunday) and
    /// Quartz's `0/15` step syntax.
    pub fn cron(expression: &str, timezone: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_timezone(timezone)?;
        let parser = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Optional)
            .alternative_weekdays(true)
            .sloppy_ranges(true)
            .build();
        let cron = parser
            .parse(expression.trim())
            .map_err(|e| ScheduleError::Cron {
                expression: expression.to_string(),
                reason: cron_field_problem(expression)
                    .unwrap_or_else(|| e.to_string().trim_end_matches('.').to_string()),
            })?;
        Ok(Schedule::Cron(Box::new(CronSchedule {
            expression: expression.to_string(),
            cron,
            timezone: tz,
        })))
    }

    /// When the run after one that started at `started` and finished at
    /// `now` begins: never in the past. An overrunning interval starts the
    /// next run right away; a cron schedule skips fire times the run
    /// overran (they are not queued up).
    pub fn next_run(&self, started: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Once => None,
            Schedule::Interval(_) => self.next_after(started).map(|t| t.max(now)),
            Schedule::Cron(_) => self.next_after(now.max(started)),
        }
    }

    /// The first start strictly after `after`, or `None` when the schedule has
    /// no further runs (`Once`, or a cron expression whose years are over).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Once => None,
            // An interval past the end of time (an SDK caller's; config files
            // are capped at 366 days) has no next run rather than a panic.
            Schedule::Interval(every) => chrono::Duration::from_std(*every)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
            Schedule::Cron(c) => {
                let local = after.with_timezone(&c.timezone);
                c.cron
                    .find_next_occurrence(&local, false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
        }
    }
}

/// Parses an IANA zone name, suggesting the closest known name on a typo.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>().map_err(|_| {
        let lower = name.to_ascii_lowercase();
        let best = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name())
            .min_by_key(|candidate| strsim::levenshtein(&candidate.to_ascii_lowercase(), &lower));
        let suggestion = match best {
            Some(b) if strsim::levenshtein(&b.to_ascii_lowercase(), &lower) <= 3 => {
                format!(" (did you mean `{b}`?)")
            }
            _ => String::new(),
        };
        ScheduleError::TimeZone {
            zone: name.to_string(),
            suggestion,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, tz: &str, after: &str) -> String {
        Schedule::cron(expr, tz)
            .unwrap()
            .next_after(utc(after))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn seed_000_daily_2am_new_york() {
        // 02:00 EST = 07:00 UTC in winter.
        assert_eq!(
            next("0 0 2 * * ?", "America/New_York", "2026-01-10T12:00:00Z"),
            "2026-01-11T07:00:00+00:00"
        );
        // 02:00 EDT = 06:00 UTC in summer.
        assert_eq!(
            next("0 0 2 * * ?", "America/New_York", "2026-07-10T12:00:00Z"),
            "2026-07-11T06:00:00+00:00"
        );
    }

    #[test]
    fn question_mark_day_of_month_restricts_to_day_of_week() {
        // Quartz: `?` means "no specific value"; MON (Quartz: 2) only.
        // 2026-03-04 is a Wednesday; the next Monday is 2026-03-09.
        assert_eq!(
            next("0 30 9 ? * MON", "UTC", "2026-03-04T00:00:00Z"),
            "2026-03-09T09:30:00+00:00"
        );
        assert_eq!(
            next("0 30 9 ? * 2", "UTC", "2026-03-04T00:00:00Z"),
            "2026-03-09T09:30:00+00:00"
        );
    }

    #[test]
    fn last_weekday_and_nth_specifiers() {
        // Last day of February 2026.
        assert_eq!(
            next("0 0 0 L * ?", "UTC", "2026-02-10T00:00:00Z"),
            "2026-02-28T00:00:00+00:00"
        );
        // Weekday nearest the 15th of August 2026 (a Saturday) is Friday the 14th.
        assert_eq!(
            next("0 0 0 15W * ?", "UTC", "2026-08-01T00:00:00Z"),
            "2026-08-14T00:00:00+00:00"
        );
        // Second Friday (Quartz 6#2) of March 2026 is the 13th.
        assert_eq!(
            next("0 0 12 ? * 6#2", "UTC", "2026-03-01T00:00:00Z"),
            "2026-03-13T12:00:00+00:00"
        );
    }

    #[test]
    fn seven_fields_with_year() {
        assert_eq!(
            next("0 0 0 1 1 ? 2030", "UTC", "2026-03-01T00:00:00Z"),
            "2030-01-01T00:00:00+00:00"
        );
        assert!(Schedule::cron("0 0 0 1 1 ? 2020", "UTC")
            .unwrap()
            .next_after(utc("2026-03-01T00:00:00Z"))
            .is_none());
    }

    #[test]
    fn dst_spring_forward_gap_runs_once_just_after_the_gap() {
        // 2026-03-08: New York clocks jump from 02:00 EST to 03:00 EDT.
        // A 02:30 job has no 02:30 that day; it runs at the first instant after
        // the gap (03:00 EDT = 07:00 UTC), then normally at 02:30 EDT next day.
        let s = Schedule::cron("0 30 2 * * ?", "America/New_York").unwrap();
        let first = s.next_after(utc("2026-03-08T05:00:00Z")).unwrap();
        assert_eq!(first.to_rfc3339(), "2026-03-08T07:00:00+00:00");
        let second = s.next_after(first).unwrap();
        assert_eq!(second.to_rfc3339(), "2026-03-09T06:30:00+00:00");
    }

    #[test]
    fn dst_fall_back_overlap_runs_a_fixed_time_job_once() {
        // 2026-11-01: 01:30 happens twice in New York (EDT then EST).
        let s = Schedule::cron("0 30 1 * * ?", "America/New_York").unwrap();
        let first = s.next_after(utc("2026-11-01T04:00:00Z")).unwrap();
        assert_eq!(first.to_rfc3339(), "2026-11-01T05:30:00+00:00");
        let second = s.next_after(first).unwrap();
        assert_eq!(second.to_rfc3339(), "2026-11-02T06:30:00+00:00");
    }

    #[test]
    fn the_next_run_is_never_in_the_past_even_inside_a_repeated_hour() {
        // A run started at 01:00:05 EST (06:00:05 UTC) on New York's
        // fall-back day, every 7 s and on the hour.
        let started = utc("2024-11-03T06:00:05Z");
        let finished = utc("2024-11-03T06:00:20Z");
        let every = Schedule::Interval(Duration::from_secs(7));
        assert_eq!(every.next_run(started, finished), Some(finished));
        assert_eq!(
            every.next_run(started, utc("2024-11-03T06:00:06Z")),
            Some(utc("2024-11-03T06:00:12Z"))
        );
        let hourly = Schedule::cron("0 0 * * * ?", "America/New_York").unwrap();
        assert_eq!(
            hourly.next_run(started, finished),
            Some(utc("2024-11-03T07:00:00Z"))
        );
        assert_eq!(Schedule::Once.next_run(started, finished), None);
    }

    #[test]
    fn interval_is_relative_and_once_never_repeats() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            Schedule::Interval(Duration::from_secs(90)).next_after(t),
            Some(t + chrono::Duration::seconds(90))
        );
        assert_eq!(Schedule::Once.next_after(t), None);
    }

    #[test]
    fn bad_expressions_and_zones_are_explained() {
        let err = Schedule::cron("0 0 25 * * ?", "UTC").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("invalid cron expression `0 0 25 * * ?`: HOUR (3rd field) is `25`, but 25 is outside 0-23."));
        let err = Schedule::cron("0 0 2 * 13 ?", "UTC").unwrap_err();
        assert!(
            err.to_string().contains("MONTH (5th field) is `13`"),
            "{err}"
        );
        // Five fields: Quartz requires seconds.
        assert!(Schedule::cron("0 2 * * *", "UTC").is_err());
        let err = Schedule::cron("0 0 2 * * ?", "America/New_Yrok").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown time zone `America/New_Yrok` (did you mean `America/New_York`?); use an IANA name such as `America/New_York` or `UTC`"
        );
    }
}
