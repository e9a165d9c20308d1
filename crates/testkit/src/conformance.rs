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
//!
//! The driver ([`Harness`], [`run_until`]) runs any of them through the
//! binary the same ways (`--once`, an `interval` or a cron schedule, a
//! long-running process restarted at a chosen position), and the cases
//! every source with the knobs runs ([`api_clock_off_by`],
//! [`late_visible`]) live here once, not per source.

use crate::cli::{assert_exit, sigterm, stdout, wait_output, wait_until};
use crate::sim::SimClock;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// How runs are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// `run --once`, one process after the other.
    Once,
    /// One long-running `run` with `schedule = { interval = "2s" }`.
    Interval,
    /// The same with a cron schedule firing every 2 seconds in the zone.
    Cron,
}

impl Runs {
    /// The connector's top-level `schedule` line for these runs (cron in `tz`).
    pub fn schedule(self, tz: chrono_tz::Tz) -> String {
        match self {
            Runs::Once => String::new(),
            Runs::Interval => "schedule = { interval = \"2s\" }".into(),
            Runs::Cron => format!(
                "schedule = {{ cron = \"0/2 * * * * ?\", timezone = \"{}\" }}",
                tz.name()
            ),
        }
    }
}

/// A windowed source under test, as the suite drives and observes it.
pub trait Harness {
    /// `tributary ARGS` with what the source needs in the environment
    /// (secrets); the driver adds our clock's start.
    fn command(&self, args: &[&str]) -> Command;
    /// Where our clock starts for a run; `None`: the real clock.
    fn our_clock(&self) -> Option<DateTime<Utc>> {
        None
    }
    /// The stream whose checkpoint is followed.
    fn stream(&self) -> &str;
    /// The committed position a checkpoint holds, as an instant.
    fn position(&self, state: &Value) -> Option<DateTime<Utc>>;
    /// Every version the API wrote, with its cursor on the API's clock.
    fn written(&self) -> Vec<Written>;
    /// `(key, version)` of every record the sink got.
    fn delivered(&self) -> Vec<(String, i64)>;
    /// The sink's output, line by line.
    fn output_lines(&self) -> Vec<String>;
}

fn command(h: &impl Harness, args: &[&str], clock: Option<DateTime<Utc>>) -> Command {
    let mut cmd = h.command(args);
    if let Some(t) = clock.or_else(|| h.our_clock()) {
        cmd.env("TRIBUTARY_CLOCK_START", t.to_rfc3339());
    }
    cmd
}

/// The stream's committed checkpoint, if there is one.
pub fn state(h: &impl Harness, cfg: &str) -> Option<Value> {
    let o = h
        .command(&["state", "get", cfg, "--stream", h.stream()])
        .output()
        .expect("tributary state get");
    if !o.status.success() {
        return None;
    }
    serde_json::from_str(&stdout(&o)).ok()
}

/// One `run --once` (our clock started at `clock`, else where the harness
/// says); the committed position after it.
pub fn run_once_at(
    h: &impl Harness,
    cfg: &str,
    clock: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let mut cmd = command(h, &["run", "--once", "--no-progress", cfg], clock);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    assert_exit(
        &wait_output(
            cmd.spawn().expect("tributary run"),
            Duration::from_secs(120),
        ),
        0,
    );
    let state = state(h, cfg)?;
    check_schedule(&state);
    h.position(&state)
}

/// A finished run's next scheduled run is never before the run's start
/// (seen in a New York fall-back hour: it pointed an hour into the past).
pub fn check_schedule(state: &Value) {
    let (Some(next), Some(started)) = (
        state["next_scheduled_run"].as_i64(),
        state["run_started_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
    ) else {
        return;
    };
    let started = started.timestamp_millis();
    assert!(
        next >= started,
        "next_scheduled_run {next} is before the run's start {started}: {state}"
    );
}

/// A long-running `tributary run`: stopped cleanly by [`Running::stop`],
/// killed if a failing assertion drops it.
pub struct Running(Option<Child>);

impl Running {
    pub fn spawn(h: &impl Harness, cfg: &str) -> Running {
        let mut cmd = command(h, &["run", "--no-progress", cfg], None);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        Running(Some(cmd.spawn().expect("tributary run")))
    }

    /// SIGTERM, then the process must end with 0.
    pub fn stop(&mut self) {
        if let Some(child) = self.0.take() {
            sigterm(&child);
            assert_exit(&wait_output(child, Duration::from_secs(60)), 0);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs as `runs` says until the committed position reaches `until`
/// (restarting a long-running process once it passed `restart_at`);
/// returns every committed position seen, checking each checkpoint's
/// schedule on the way.
pub fn run_until(
    h: &impl Harness,
    cfg: &str,
    runs: Runs,
    until: DateTime<Utc>,
    restart_at: Option<DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    let mut trail: Vec<DateTime<Utc>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut observe = |p: Option<DateTime<Utc>>| -> bool {
        match p {
            Some(p) => {
                if trail.last() != Some(&p) {
                    trail.push(p);
                }
                p >= until
            }
            None => false,
        }
    };
    if runs == Runs::Once {
        loop {
            assert!(Instant::now() < deadline, "timed out before {until}");
            if observe(run_once_at(h, cfg, None)) {
                return trail;
            }
        }
    }
    let mut running = Running::spawn(h, cfg);
    let mut restart = restart_at;
    loop {
        assert!(Instant::now() < deadline, "timed out before {until}");
        std::thread::sleep(Duration::from_millis(150));
        let Some(state) = state(h, cfg) else {
            continue;
        };
        check_schedule(&state);
        let p = h.position(&state);
        let done = observe(p);
        if let (Some(r), Some(p)) = (restart, p) {
            if p >= r {
                // Restarted inside the hour that matters.
                running.stop();
                running = Running::spawn(h, cfg);
                restart = None;
            }
        }
        if done {
            running.stop();
            return trail;
        }
    }
}

/// The suite's promises over everything written, at the trail's last
/// position: positions monotonic, one record per line; the gaps.
pub fn report(h: &impl Harness, trail: &[DateTime<Utc>]) -> GapReport {
    assert_monotonic(trail);
    assert_one_record_per_line(&h.output_lines());
    let committed = *trail.last().expect("at least one committed position");
    gaps(&h.written(), &h.delivered(), committed)
}

/// A thread of the test's (continuous writes beside the runs): `work`
/// loops until the flag it is given is set, which dropping this does,
/// waiting for the thread to end.
pub struct Background {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    pub fn spawn(work: impl FnOnce(&std::sync::atomic::AtomicBool) + Send + 'static) -> Background {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        Background {
            stop,
            thread: Some(std::thread::spawn(move || work(&flag))),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic in the writer shows as the test's own failure.
            if t.join().is_err() && !std::thread::panicking() {
                panic!("the background thread panicked");
            }
        }
    }
}

/// A simulated API with the knobs the shared cases turn.
pub trait Api: Harness {
    /// A config whose datetime cursor has this `lag` and `lookback`.
    fn config(&self, lag: &str, lookback: &str) -> String;
    /// The API's clock (its offset from ours, its zone).
    fn clock(&self) -> &SimClock;
    /// Writes are listed only `delay` after their stamp.
    fn set_visibility_delay(&self, delay: Duration);
    /// Records created and modified all the time (stamped by the API's
    /// clock) until the guard is dropped.
    fn write_continuously(&self) -> Box<dyn std::any::Any>;
}

/// The API's clock off ours by `skew`, records written all the time
/// during and between runs (a lag of 1 s, so positions pass writes
/// quickly: the API's clock is what keeps a window's end behind a clock
/// that runs late).
pub fn api_clock_off_by(h: &impl Api, skew: chrono::Duration) -> GapReport {
    h.clock().set_offset(skew);
    let cfg = h.config("1s", "0s");
    let writes = h.write_continuously();
    let until = Utc::now().min(h.clock().now()) + chrono::Duration::seconds(6);
    let mut trail = run_until(h, &cfg, Runs::Once, until, None);
    drop(writes);
    if skew > chrono::Duration::zero() {
        // The API stamps writes ahead of our clock: they are read once our
        // clock gets there. One more run as if that much time had passed.
        let ahead = h.clock().now() + chrono::Duration::seconds(5);
        trail.extend(run_once_at(h, &cfg, Some(ahead)));
    }
    report(h, &trail)
}

/// Writes visible only 3 s after their stamp, read with `lookback`: once
/// the last writes are visible, one more run, which with a lookback reads
/// again what became visible after the window it fell in.
pub fn late_visible(h: &impl Api, lookback: &str) -> GapReport {
    h.set_visibility_delay(Duration::from_secs(3));
    let cfg = h.config("1s", lookback);
    let writes = h.write_continuously();
    let until = Utc::now() + chrono::Duration::seconds(6);
    let mut trail = run_until(h, &cfg, Runs::Once, until, None);
    drop(writes);
    let last_write = h.written().last().expect("writes").at;
    wait_until(
        Duration::from_secs(30),
        "the last writes to be visible",
        || h.clock().now() > last_write + chrono::Duration::seconds(4),
    );
    trail.extend(run_once_at(h, &cfg, None));
    report(h, &trail)
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
