//! Where a time window may end, and how instants meet wall clocks.
//!
//! Every windowed source promises that everything modified before its
//! committed position was delivered. Two clocks break that promise when
//! trusted naively: the API stamps records with *its* clock, which can run
//! behind ours, and a write can become visible after its timestamp (a slow
//! commit). So a window ends at `min(our clock, the API's clock) - lag`
//! ([`window_end`]), the API's clock read from what it told us last
//! ([`ApiClock`]).
//!
//! Local wall-clock time is ambiguous twice a year: a fall-back hour
//! happens twice and a spring-forward hour never. Positions are therefore
//! instants (UTC) everywhere but at the request boundary of an API that
//! takes naive local datetimes; there, [`local_bounds`] widens a window so
//! that every wall-clock time it covers is asked for (a repeated hour is
//! re-read, never skipped), and [`local_to_utc`] reads a wall-clock time the
//! way that loses nothing.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use std::sync::Mutex;
use std::time::Duration;

/// The default `lag`: how far behind the earlier of the two clocks a window
/// ends. It covers ordinary skew between NTP-synchronised servers (well
/// under a second), the one-second resolution of `Date` headers and commit
/// latency of a busy API (seconds), with room to spare; an API known to
/// stamp and publish atomically can set `lag = "0s"`.
pub const DEFAULT_LAG: Duration = Duration::from_secs(30);

/// How long a reading of the API's clock is trusted before a source asks
/// again: clocks drift by well under a second in that time, and a source
/// that ran minutes ago re-reads it on its own requests anyway.
pub const API_CLOCK_MAX_AGE: Duration = Duration::from_secs(600);

/// The API's clock as its responses (the HTTP `Date` header) show it,
/// kept as an offset from ours so it stays usable between requests.
#[derive(Debug, Default)]
pub struct ApiClock {
    last: Mutex<Option<Reading>>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    /// The API's time minus ours, at the moment of the reading.
    offset: chrono::Duration,
    /// Our time when it was read.
    at: DateTime<Utc>,
}

impl ApiClock {
    /// Records that the API said `theirs` in a response received at `ours`.
    /// `Date` has one-second resolution and is written before the response
    /// travels, so `theirs` is never later than the API's true time: the
    /// offset errs on the side of an earlier window end.
    pub fn observe(&self, theirs: DateTime<Utc>, ours: DateTime<Utc>) {
        let reading = Reading {
            offset: theirs - ours,
            at: ours,
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(reading);
    }

    /// The API's time now (`ours` being our time now), from a reading at
    /// most [`API_CLOCK_MAX_AGE`] old; `None` when there is none.
    pub fn now(&self, ours: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let r = (*self.last.lock().unwrap_or_else(|e| e.into_inner()))?;
        let age = ours - r.at;
        let fresh = chrono::Duration::from_std(API_CLOCK_MAX_AGE).unwrap_or(chrono::Duration::MAX);
        // A reading "from the future" means our clock stepped back: stale too.
        (age >= chrono::Duration::zero() && age <= fresh).then(|| ours + r.offset)
    }
}

/// A window end and where it came from, for logs and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowEnd {
    /// `min(ours, api) - lag`.
    pub end: DateTime<Utc>,
    pub ours: DateTime<Utc>,
    /// The API's clock, when known.
    pub api: Option<DateTime<Utc>>,
    pub lag: Duration,
}

impl WindowEnd {
    /// How far the API's clock is ahead of ours (negative: behind).
    pub fn api_skew(&self) -> Option<chrono::Duration> {
        self.api.map(|a| a - self.ours)
    }
}

/// Where a window read now may end: records stamped before it by either
/// clock, and committed within `lag` of their stamp, are visible.
pub fn window_end(ours: DateTime<Utc>, api: Option<DateTime<Utc>>, lag: Duration) -> WindowEnd {
    let earliest = api.map_or(ours, |a| a.min(ours));
    let lag_d = chrono::Duration::from_std(lag).unwrap_or(chrono::Duration::MAX);
    WindowEnd {
        end: earliest
            .checked_sub_signed(lag_d)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        ours,
        api,
        lag,
    }
}

/// The instant a wall-clock time in `tz` stands for, chosen so that a
/// window starting there skips nothing: in a fall-back overlap the earlier
/// of the two; in a spring-forward gap (02:30 on a day clocks jump from
/// 02:00 to 03:00) the first instant after the gap (03:00), not the same
/// wall-clock distance past it (03:30).
pub fn local_to_utc(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => {
            // Read with the offsets on either side of the gap, the wall time
            // names an instant just after (earlier offset) and one just
            // before (later offset) the transition; find it between them.
            let probe = |hours: i64| {
                let t = naive.and_utc() + chrono::Duration::hours(hours);
                tz.offset_from_utc_datetime(&t.naive_utc()).fix()
            };
            let (before, after) = (probe(-30), probe(30));
            let lo = (naive - after).and_utc();
            let hi = (naive - before).and_utc();
            first_change(tz, lo.min(hi), lo.max(hi))
        }
    }
}

/// The first instant in `(lo, hi]` whose UTC offset differs from `lo`'s, to
/// the second; `None` when there is no change.
fn first_change(tz: Tz, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = |secs: i64| {
        DateTime::from_timestamp(secs, 0).map(|t| tz.offset_from_utc_datetime(&t.naive_utc()).fix())
    };
    // Whole seconds (transitions fall on them), so the search ends.
    let (mut lo, mut hi) = (lo.timestamp(), hi.timestamp());
    let start = offset(lo)?;
    if offset(hi)? == start {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset(mid)? == start {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

/// Instants in `[from, to)` where `tz`'s offset changes, found by sampling
/// every ten minutes (no zone changes twice in that time) and bisecting.
fn transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let step = chrono::Duration::minutes(10);
    let mut out = Vec::new();
    let mut at = chrono::SubsecRound::trunc_subsecs(from, 0);
    while at < to {
        let next = (at + step).min(to);
        if let Some(t) = first_change(tz, at, next) {
            if t < to {
                out.push(t);
            }
        }
        at = next;
    }
    out
}

/// How far around a window's ends a clock change can move its wall-clock
/// bounds: more than any DST shift, and than most historic zone changes.
const WIDEST_SHIFT_HOURS: i64 = 26;

/// The wall-clock range `[lower, upper)` in `tz` that holds every local
/// time of the instants in `[start, end)`. Outside clock changes it is just
/// the two ends' local times. When the window takes in a fall-back change,
/// the repeated wall-clock hour belongs to it twice, so the range widens to
/// cover both readings: an API filtering on naive local datetimes then
/// returns every record of the window (and some of the hour before it again:
/// duplicates, never loss).
pub fn local_bounds(
    tz: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (NaiveDateTime, NaiveDateTime) {
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
    let mut lower = local(start);
    let mut upper = local(end);
    if start >= end {
        return (lower, upper);
    }
    let reach = chrono::Duration::hours(WIDEST_SHIFT_HOURS);
    // Only a change soon after the start can take the wall clock below the
    // start's, and only one shortly before the end above the end's.
    for t in transitions(tz, start, end.min(start + reach)) {
        lower = lower.min(local(t));
    }
    // A window ending exactly at the change still holds its last second
    // before it: the change at `end` counts.
    let one = chrono::Duration::seconds(1);
    for t in transitions(tz, start.max(end - reach), end + one) {
        if t > start && t <= end {
            upper = upper.max(local(t - one) + one);
        }
    }
    (lower, upper)
}

/// The wall-clock interval `[start, end)` a fall-back change repeats in
/// `tz`, when the wall-clock time of `t` lies in it (in either pass). A
/// reader of a column of naive local times whose bound is there must read
/// that interval again once the clock has left it: a row written in the
/// second pass carries an earlier wall-clock time than one written late in
/// the first, so a position taken in between would pass it by.
pub fn repeated_interval(tz: Tz, t: DateTime<Utc>) -> Option<(NaiveDateTime, NaiveDateTime)> {
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
    let wall = local(t);
    let reach = chrono::Duration::hours(WIDEST_SHIFT_HOURS);
    let one = chrono::Duration::seconds(1);
    transitions(tz, t - reach, t + reach)
        .into_iter()
        .map(|change| (local(change), local(change - one) + one))
        .find(|(start, end)| start < end && *start <= wall && wall < *end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::London};

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn naive(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn a_window_ends_lag_before_the_earlier_clock() {
        let ours = utc("2024-05-01T12:00:00Z");
        let lag = Duration::from_secs(30);
        let behind = window_end(ours, Some(ours - chrono::Duration::seconds(5)), lag);
        assert_eq!(behind.end, utc("2024-05-01T11:59:25Z"));
        assert_eq!(behind.api_skew(), Some(chrono::Duration::seconds(-5)));
        let ahead = window_end(ours, Some(ours + chrono::Duration::minutes(3)), lag);
        assert_eq!(ahead.end, utc("2024-05-01T11:59:30Z"));
        assert_eq!(window_end(ours, None, Duration::ZERO).end, ours);
    }

    #[test]
    fn the_api_clock_is_an_offset_that_goes_stale() {
        let c = ApiClock::default();
        let t = utc("2024-05-01T12:00:00Z");
        assert_eq!(c.now(t), None);
        c.observe(t - chrono::Duration::seconds(7), t);
        let later = t + chrono::Duration::seconds(60);
        assert_eq!(c.now(later), Some(later - chrono::Duration::seconds(7)));
        assert_eq!(c.now(t + chrono::Duration::hours(1)), None);
        assert_eq!(c.now(t - chrono::Duration::seconds(1)), None);
    }

    #[test]
    fn a_time_in_a_spring_forward_gap_is_the_first_instant_after_it() {
        // New York 2024-03-10: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        assert_eq!(
            local_to_utc(New_York, naive("2024-03-10 02:30:00")),
            Some(utc("2024-03-10T07:00:00Z"))
        );
        assert_eq!(
            local_to_utc(New_York, naive("2024-03-10 02:00:00")),
            Some(utc("2024-03-10T07:00:00Z"))
        );
        // London 2024-03-31: 01:00 GMT jumps to 02:00 BST (01:00 UTC).
        assert_eq!(
            local_to_utc(London, naive("2024-03-31 01:59:59")),
            Some(utc("2024-03-31T01:00:00Z"))
        );
        // Around the gap, plain times are plain.
        assert_eq!(
            local_to_utc(New_York, naive("2024-03-10 03:00:00")),
            Some(utc("2024-03-10T07:00:00Z"))
        );
        assert_eq!(
            local_to_utc(New_York, naive("2024-03-10 01:59:59")),
            Some(utc("2024-03-10T06:59:59Z"))
        );
    }

    #[test]
    fn a_repeated_time_is_its_first_occurrence() {
        // New York 2024-11-03: 01:30 is 05:30 UTC (EDT) and 06:30 UTC (EST).
        assert_eq!(
            local_to_utc(New_York, naive("2024-11-03 01:30:00")),
            Some(utc("2024-11-03T05:30:00Z"))
        );
    }

    #[test]
    fn a_window_across_a_fall_back_asks_for_the_repeated_hour_again() {
        // 01:59:58 EDT to 01:00:05 EST: the wall clock goes backwards.
        let (lo, hi) = local_bounds(
            New_York,
            utc("2024-11-03T05:59:58Z"),
            utc("2024-11-03T06:00:05Z"),
        );
        assert_eq!(lo, naive("2024-11-03 01:00:00"));
        assert_eq!(hi, naive("2024-11-03 02:00:00"));
        // Ending exactly at the change: its last second was 01:59:59 EDT.
        let (lo, hi) = local_bounds(
            New_York,
            utc("2024-11-03T05:59:59Z"),
            utc("2024-11-03T06:00:00Z"),
        );
        assert_eq!(
            (lo, hi),
            (naive("2024-11-03 01:59:59"), naive("2024-11-03 02:00:00"))
        );
        // Starting exactly at it: all in the second 01:xx hour.
        let (lo, hi) = local_bounds(
            New_York,
            utc("2024-11-03T06:00:00Z"),
            utc("2024-11-03T06:00:03Z"),
        );
        assert_eq!(
            (lo, hi),
            (naive("2024-11-03 01:00:00"), naive("2024-11-03 01:00:03"))
        );
        // Inside the second 01:xx hour: plain.
        let (lo, hi) = local_bounds(
            New_York,
            utc("2024-11-03T06:00:05Z"),
            utc("2024-11-03T06:00:12Z"),
        );
        assert_eq!(
            (lo, hi),
            (naive("2024-11-03 01:00:05"), naive("2024-11-03 01:00:12"))
        );
        // A long window from before to after: its own ends already cover it.
        let (lo, hi) = local_bounds(
            London,
            utc("2024-10-26T12:00:00Z"),
            utc("2024-10-28T12:00:00Z"),
        );
        assert_eq!(
            (lo, hi),
            (naive("2024-10-26 13:00:00"), naive("2024-10-28 12:00:00"))
        );
        // Starting inside the first 01:xx hour, ending in the second.
        let (lo, hi) = local_bounds(
            London,
            utc("2024-10-27T00:30:00Z"),
            utc("2024-10-27T01:10:00Z"),
        );
        assert_eq!(
            (lo, hi),
            (naive("2024-10-27 01:00:00"), naive("2024-10-27 02:00:00"))
        );
    }

    #[test]
    fn a_window_across_a_spring_forward_is_plain() {
        let (lo, hi) = local_bounds(
            New_York,
            utc("2024-03-10T06:59:50Z"),
            utc("2024-03-10T07:00:10Z"),
        );
        assert_eq!(
            (lo, hi),
            (naive("2024-03-10 01:59:50"), naive("2024-03-10 03:00:10"))
        );
    }

    #[test]
    fn the_repeated_interval_is_found_in_both_passes_and_not_outside() {
        let ny = chrono_tz::America::New_York;
        let hour = Some((naive("2024-11-03 01:00:00"), naive("2024-11-03 02:00:00")));
        // 01:30 EDT (first pass), 01:30 EST (second pass).
        assert_eq!(repeated_interval(ny, utc("2024-11-03T05:30:00Z")), hour);
        assert_eq!(repeated_interval(ny, utc("2024-11-03T06:30:00Z")), hour);
        assert_eq!(repeated_interval(ny, utc("2024-11-03T06:59:59Z")), hour);
        assert_eq!(repeated_interval(ny, utc("2024-11-03T07:00:00Z")), None);
        assert_eq!(repeated_interval(ny, utc("2024-11-03T04:59:59Z")), None);
        // Spring forward repeats nothing.
        assert_eq!(repeated_interval(ny, utc("2024-03-10T07:30:00Z")), None);
        let london = chrono_tz::Europe::London;
        assert_eq!(
            repeated_interval(london, utc("2024-10-27T01:15:00Z")),
            Some((naive("2024-10-27 01:00:00"), naive("2024-10-27 02:00:00")))
        );
        assert_eq!(
            repeated_interval(chrono_tz::UTC, utc("2024-11-03T06:30:00Z")),
            None
        );
    }
}
