//! The promises every windowed source keeps, checked the same way for each
//! (chargeover, http with datetime windows, sql, stripe_reporting): what a
//! test wrote on the simulated API is compared with what the sink received
//! and with the checkpoints committed along the way.
//!
//! - **No gaps**: every version whose cursor is below the committed
//!   position was delivered (or a later version of the same record was),
//!   unless the API replaced it before it could be read.
//! - **Monotonic checkpoints**: the committed position never moves back.
//! - **One record per line** in NDJSON output.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One version of a record as the API wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub key: String,
    pub version: i64,
    /// Its cursor, as an instant on the API's clock.
    pub at: DateTime<Utc>,
}

/// What the versions below a position came to: how many there were and
/// which of them never arrived.
#[derive(Debug, Clone)]
pub struct GapReport {
    pub committed: DateTime<Utc>,
    /// Versions written with a cursor below `committed`.
    pub below: usize,
    /// Those of them no delivered version covers.
    pub lost: Vec<Written>,
    /// Records below `committed` of which no version at all arrived.
    pub records_never_delivered: usize,
}

impl GapReport {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
    }
}

impl std::fmt::Display for GapReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} versions below the committed position {} were never delivered ({} records never at all)",
            self.lost.len(),
            self.below,
            self.committed.to_rfc3339(),
            self.records_never_delivered
        )?;
        if let Some(first) = self.lost.first() {
            write!(
                f,
                "; first: key {} version {} at {}",
                first.key,
                first.version,
                first.at.to_rfc3339()
            )?;
        }
        Ok(())
    }
}

/// Which written versions below `committed` were not delivered. A version
/// counts as delivered when the sink got it or a later version of the same
/// record. A version the API replaced by a later one is not owed: once
/// replaced, the API no longer has it to give (a record edited twice
/// before a run reads it shows only its last version), so only each
/// record's latest version is checked; tests write mostly new records to
/// keep that strict.
pub fn gaps(
    written: &[Written],
    delivered: &[(String, i64)],
    committed: DateTime<Utc>,
) -> GapReport {
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    for (key, version) in delivered {
        let v = newest.entry(key.as_str()).or_insert(*version);
        *v = (*v).max(*version);
    }
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for w in written {
        let v = latest.entry(w.key.as_str()).or_insert(w.version);
        *v = (*v).max(w.version);
    }
    let below: Vec<&Written> = written.iter().filter(|w| w.at < committed).collect();
    let lost: Vec<Written> = below
        .iter()
        .filter(|w| latest.get(w.key.as_str()) == Some(&w.version))
        .filter(|w| newest.get(w.key.as_str()).is_none_or(|v| *v < w.version))
        .map(|w| (*w).clone())
        .collect();
    let never = lost
        .iter()
        .map(|w| w.key.as_str())
        .filter(|k| !newest.contains_key(k))
        .collect::<BTreeSet<&str>>()
        .len();
    GapReport {
        committed,
        below: below.len(),
        lost,
        records_never_delivered: never,
    }
}

/// Panics unless every version below `committed` was delivered.
pub fn assert_no_gaps(written: &[Written], delivered: &[(String, i64)], committed: DateTime<Utc>) {
    let report = gaps(written, delivered, committed);
    assert!(report.is_clean(), "{report}");
    assert!(
        report.below > 0,
        "nothing was written below the committed position {committed}: the test proves nothing"
    );
}

/// Panics if a committed position is earlier than the one before it.
pub fn assert_monotonic(positions: &[DateTime<Utc>]) {
    for pair in positions.windows(2) {
        assert!(
            pair[1] >= pair[0],
            "the committed position moved backwards: {} -> {} (trail: {:?})",
            pair[0].to_rfc3339(),
            pair[1].to_rfc3339(),
            positions.iter().map(|p| p.to_rfc3339()).collect::<Vec<_>>()
        );
    }
}

/// Panics unless every line is one whole JSON value (no record spans lines).
pub fn assert_one_record_per_line(lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "line {} is not one JSON record: {line:?}",
            i + 1
        );
    }
}

/// A checkpoint's datetime as an instant: RFC 3339, or (checkpoints
/// written before positions were instants) a wall-clock time in `tz`, read
/// as its first occurrence.
pub fn position(text: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(key: &str, version: i64, at: &str) -> Written {
        Written {
            key: key.into(),
            version,
            at: at.parse().unwrap(),
        }
    }

    #[test]
    fn a_record_s_latest_version_below_the_position_is_owed() {
        let written = [
            w("1", 1, "2024-01-01T00:00:00Z"),
            w("1", 2, "2024-01-01T00:00:10Z"),
            w("2", 1, "2024-01-01T00:00:05Z"),
            w("3", 1, "2024-01-01T00:01:00Z"),
            w("4", 1, "2024-01-01T00:00:01Z"),
            w("4", 2, "2024-01-01T00:02:00Z"),
        ];
        let committed = "2024-01-01T00:00:30Z".parse().unwrap();
        // 2 never arrived; 1's version 1 was replaced (by version 2, which
        // arrived); 4's version 1 was replaced by one past the position.
        let r = gaps(&written, &[("1".into(), 2)], committed);
        assert_eq!(r.below, 4);
        assert_eq!(r.lost, [w("2", 1, "2024-01-01T00:00:05Z")]);
        assert_eq!(r.records_never_delivered, 1);
        let r = gaps(&written, &[("1".into(), 1), ("2".into(), 1)], committed);
        assert_eq!(r.lost, [w("1", 2, "2024-01-01T00:00:10Z")]);
        assert_eq!(r.records_never_delivered, 0);
    }

    #[test]
    #[should_panic(expected = "moved backwards")]
    fn a_position_moving_back_is_caught() {
        let a = "2024-11-03T05:59:58Z".parse().unwrap();
        let b = "2024-11-03T05:00:05Z".parse().unwrap();
        assert_monotonic(&[a, b]);
    }

    #[test]
    fn legacy_wall_clock_positions_read_as_their_first_occurrence() {
        let tz = chrono_tz::America::New_York;
        assert_eq!(
            position("2024-11-03 01:00:05", tz),
            Some("2024-11-03T05:00:05Z".parse().unwrap())
        );
        assert_eq!(
            position("2024-11-03T06:00:05Z", tz),
            Some("2024-11-03T06:00:05Z".parse().unwrap())
        );
    }
}
