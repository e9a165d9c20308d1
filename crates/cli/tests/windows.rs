//! The conformance suite of windowed sources, end to end through the
//! binary against simulators on 127.0.0.1 whose clocks run ahead, behind,
//! across DST changes, and whose writes become visible late. Every case
//! asserts the same promises (`tributary_testkit::conformance`): every
//! version below the committed position was delivered, and the committed
//! position never moved backwards.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, Utc};
use serde_json::Value;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::conformance::{self, Written};
use tributary_testkit::sim::chargeover::ChargeOverSim;
use tributary_testkit::sim::rest::{RestSim, RestSimConfig};

const USER: &str = "api-user";
const PASSWORD: &str = "s3cret-Pa55word";

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

/// How runs are started.
#[derive(Debug, Clone, Copy)]
enum Runs {
    /// `run --once`, one process after the other.
    Once,
    /// One long-running `run` with `schedule = { interval = "2s" }`,
    /// restarted once the position is inside the interesting hour.
    Interval,
    /// The same with a cron schedule firing every 2 seconds in the zone.
    Cron,
}

// ------------------------------------------------------------- ChargeOver

struct Co {
    ws: Workspace,
    sim: ChargeOverSim,
    tz: chrono_tz::Tz,
    /// Our clock minus the API's; `None`: the binary runs on the real clock.
    ours_minus_api: Option<ChronoDuration>,
    rt: tokio::runtime::Runtime,
}

fn chargeover(tz: chrono_tz::Tz) -> Co {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(ChargeOverSim::start(USER, PASSWORD));
    sim.clock().set_timezone(tz);
    Co {
        ws: Workspace::new(env!("CARGO_BIN_EXE_tributary")),
        sim,
        tz,
        ours_minus_api: None,
        rt,
    }
}

impl Co {
    fn config(&self, source: &str, top: &str) -> String {
        let text = format!(
            r#"
name = "billing"
topic_prefix = "chargeover"
{top}

[source]
type = "chargeover"
base_url = "{base}"
username = "{USER}"
password = "${{CHARGEOVER_PASSWORD}}"
entities = ["customer"]
timezone = "{tz}"
batch_size = 50
{source}

[source.initial_datetime]
customer = "2024-01-01 00:00:00"

[sink]
type = "file"
dir = "out"
format = "envelope"

[runtime]
backoff_initial = "10ms"
backoff_max = "100ms"
"#,
            base = self.sim.base_url(),
            tz = self.tz.name(),
        );
        self.ws.write("billing.toml", &text);
        self.ws.path("billing.toml").to_string_lossy().into_owned()
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.ws.cmd(args);
        cmd.env("CHARGEOVER_PASSWORD", PASSWORD);
        if let Some(d) = self.ours_minus_api {
            let ours = self.sim.clock().now() + d;
            cmd.env("TRIBUTARY_CLOCK_START", ours.to_rfc3339());
        }
        cmd
    }

    fn run_once(&self, cfg: &str) {
        let mut cmd = self.cmd(&["run", "--once", "--no-progress", cfg]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let o = wait_output(cmd.spawn().unwrap(), Duration::from_secs(120));
        assert_exit(&o, 0);
    }

    fn spawn(&self, cfg: &str) -> std::process::Child {
        let mut cmd = self.cmd(&["run", "--no-progress", cfg]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    }

    fn state(&self, cfg: &str) -> Option<Value> {
        let o = self
            .cmd(&["state", "get", cfg, "--stream", "customer"])
            .output()
            .unwrap();
        if !o.status.success() {
            return None;
        }
        serde_json::from_str(&stdout(&o)).ok()
    }

    fn position(&self, state: &Value) -> Option<DateTime<Utc>> {
        state["last_processed_datetime"]
            .as_str()
            .and_then(|t| conformance::position(t, self.tz))
    }

    fn delivered(&self) -> Vec<(String, i64)> {
        self.ws
            .output("out", "chargeover.customer")
            .iter()
            .map(|e| {
                let v = &e["value"];
                (
                    v["customer_id"].to_string(),
                    v["version"].as_i64().unwrap_or(1),
                )
            })
            .collect()
    }

    fn written(&self) -> Vec<Written> {
        self.sim
            .history("customer")
            .into_iter()
            .map(|v| Written {
                key: v.id.to_string(),
                version: v.version,
                at: v.at,
            })
            .collect()
    }

    /// Runs as `runs` says until the committed position reaches `until`
    /// (restarting a long-running process once it passed `restart_at`);
    /// returns every committed position seen, checking each checkpoint's
    /// schedule on the way.
    fn run_until(
        &self,
        cfg: &str,
        runs: Runs,
        until: DateTime<Utc>,
        restart_at: Option<DateTime<Utc>>,
    ) -> Vec<DateTime<Utc>> {
        let mut trail = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        let observe = |state: &Value, trail: &mut Vec<DateTime<Utc>>| -> bool {
            check_schedule(state);
            match self.position(state) {
                Some(p) => {
                    if trail.last() != Some(&p) {
                        trail.push(p);
                    }
                    p >= until
                }
                None => false,
            }
        };
        match runs {
            Runs::Once => loop {
                assert!(std::time::Instant::now() < deadline, "timed out: {trail:?}");
                self.run_once(cfg);
                let state = self.state(cfg).expect("a checkpoint after a run");
                if observe(&state, &mut trail) {
                    return trail;
                }
            },
            Runs::Interval | Runs::Cron => {
                let mut running = Running(Some(self.spawn(cfg)));
                let mut restart = restart_at;
                loop {
                    assert!(std::time::Instant::now() < deadline, "timed out: {trail:?}");
                    std::thread::sleep(Duration::from_millis(150));
                    let Some(state) = self.state(cfg) else {
                        continue;
                    };
                    let done = observe(&state, &mut trail);
                    if let (Some(r), Some(p)) = (restart, trail.last()) {
                        if *p >= r {
                            // Restarted inside the hour that matters.
                            running.stop();
                            running = Running(Some(self.spawn(cfg)));
                            restart = None;
                        }
                    }
                    if done {
                        running.stop();
                        return trail;
                    }
                }
            }
        }
    }
}

/// A long-running `tributary run`: stopped cleanly by [`Running::stop`],
/// killed if a failing assertion drops it.
struct Running(Option<std::process::Child>);

impl Running {
    fn stop(&mut self) {
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

/// A finished run's next scheduled run is never before the run's start
/// (seen in a New York fall-back hour: it pointed an hour into the past).
fn check_schedule(state: &Value) {
    let (Some(next), Some(started)) = (
        state["next_scheduled_run"].as_i64(),
        state["run_started_at"].as_str(),
    ) else {
        return;
    };
    let started = utc(started).timestamp_millis();
    assert!(
        next >= started,
        "next_scheduled_run {next} is before the run's start {started}: {state}"
    );
}

fn schedule_line(runs: Runs, tz: chrono_tz::Tz) -> String {
    match runs {
        Runs::Once => String::new(),
        Runs::Interval => "schedule = { interval = \"2s\" }".into(),
        Runs::Cron => format!(
            "schedule = {{ cron = \"0/2 * * * * ?\", timezone = \"{}\" }}",
            tz.name()
        ),
    }
}

/// The API's clock off ours by `skew`, records written all the time
/// during and between runs: nothing below the committed position is lost.
fn chargeover_with_api_clock_off_by(skew: ChronoDuration) -> conformance::GapReport {
    let env = chargeover(chrono_tz::UTC);
    env.sim.generate(
        "customer",
        40,
        dt("2024-01-01 00:00:00"),
        ChronoDuration::hours(1),
    );
    env.sim.clock().set_offset(skew);
    let writes = {
        let _rt = env.rt.enter();
        env.sim
            .write_continuously("customer", Duration::from_millis(15), 2)
    };
    // A small lag, so positions pass writes quickly; the API clock is what
    // keeps a window end behind a clock that runs late.
    let cfg = env.config("lag = \"1s\"", "");
    let until = Utc::now().min(env.sim.clock().now()) + ChronoDuration::seconds(6);
    let mut trail = env.run_until(&cfg, Runs::Once, until, None);
    writes.stop();
    if skew > ChronoDuration::zero() {
        // The API stamps writes ahead of our clock: they are read once our
        // clock gets there. One more run as if that much time had passed.
        let mut cmd = env.cmd(&["run", "--once", &cfg]);
        cmd.env(
            "TRIBUTARY_CLOCK_START",
            (env.sim.clock().now() + ChronoDuration::seconds(5)).to_rfc3339(),
        );
        assert_exit(&cmd.output().unwrap(), 0);
        trail.extend(env.state(&cfg).and_then(|s| env.position(&s)));
    }
    conformance::assert_monotonic(&trail);
    let committed = *trail.last().unwrap();
    let report = conformance::gaps(&env.written(), &env.delivered(), committed);
    eprintln!("API clock off by {skew}: {report}");
    conformance::assert_one_record_per_line(&env.ws.output_lines("out", "chargeover.customer"));
    report
}

#[test]
fn chargeover_api_clock_behind_or_ahead_by_seconds_or_minutes_loses_nothing() {
    for skew in [
        ChronoDuration::seconds(-5),
        ChronoDuration::seconds(5),
        ChronoDuration::minutes(-3),
        ChronoDuration::minutes(3),
    ] {
        let report = chargeover_with_api_clock_off_by(skew);
        assert!(report.is_clean(), "API clock off by {skew}: {report}");
        assert!(report.below > 100, "{report}");
    }
}

/// Writes visible only `delay` after their stamp, read with `lookback`.
fn chargeover_late_visible(lookback: &str) -> conformance::GapReport {
    let env = chargeover(chrono_tz::UTC);
    env.sim.generate(
        "customer",
        40,
        dt("2024-01-01 00:00:00"),
        ChronoDuration::hours(1),
    );
    env.sim.set_visibility_delay(Duration::from_secs(3));
    let writes = {
        let _rt = env.rt.enter();
        env.sim
            .write_continuously("customer", Duration::from_millis(15), 2)
    };
    let cfg = env.config(&format!("lag = \"1s\"\nlookback = \"{lookback}\""), "");
    let until = Utc::now() + ChronoDuration::seconds(6);
    let mut trail = env.run_until(&cfg, Runs::Once, until, None);
    writes.stop();
    // Once the last writes are visible, one more run: with a lookback it
    // reads again what became visible after the window it fell in.
    let last_write = env.written().last().unwrap().at;
    wait_until(
        Duration::from_secs(30),
        "the last writes to be visible",
        || env.sim.clock().now() > last_write + ChronoDuration::seconds(4),
    );
    env.run_once(&cfg);
    trail.extend(env.state(&cfg).and_then(|s| env.position(&s)));
    conformance::assert_monotonic(&trail);
    let report = conformance::gaps(&env.written(), &env.delivered(), *trail.last().unwrap());
    eprintln!("writes visible 3 s late, lookback {lookback}: {report}");
    report
}

#[test]
fn chargeover_late_visible_writes_are_read_again_with_lookback() {
    let with = chargeover_late_visible("5s");
    assert!(with.is_clean(), "{with}");
    assert!(with.below > 100, "{with}");
    // Without a lookback covering the delay, such writes do fall behind
    // finished windows: the knob is what saves them.
    let without = chargeover_late_visible("0s");
    assert!(!without.is_clean(), "{without}");
}

/// Runs across the clock change at `change` in `tz` with records written
/// all the time: the checkpoint never moves back and nothing is skipped.
fn chargeover_across(tz: chrono_tz::Tz, change: &str, runs: Runs) {
    let env = Co {
        ours_minus_api: Some(ChronoDuration::zero()),
        ..chargeover(tz)
    };
    let change = utc(change);
    env.sim.generate(
        "customer",
        40,
        dt("2024-01-01 00:00:00"),
        ChronoDuration::hours(1),
    );
    env.sim
        .clock()
        .start_at(change - ChronoDuration::seconds(8));
    let writes = {
        let _rt = env.rt.enter();
        env.sim
            .write_continuously("customer", Duration::from_millis(20), 2)
    };
    let cfg = env.config("lag = \"1s\"", &schedule_line(runs, tz));
    let trail = env.run_until(
        &cfg,
        runs,
        change + ChronoDuration::seconds(8),
        Some(change + ChronoDuration::seconds(2)),
    );
    writes.stop();
    conformance::assert_monotonic(&trail);
    let committed = *trail.last().unwrap();
    let written = env.written();
    let report = conformance::gaps(&written, &env.delivered(), committed);
    eprintln!("{} at {change} with {runs:?}: {report}", tz.name());
    assert!(report.is_clean(), "{} {runs:?}: {report}", tz.name());
    assert!(
        written.iter().any(|w| w.at >= change && w.at < committed),
        "no write after the change was checked"
    );
}

#[test]
fn chargeover_new_york_fall_back_with_once_interval_and_cron_runs() {
    for runs in [Runs::Once, Runs::Interval, Runs::Cron] {
        chargeover_across(chrono_tz::America::New_York, "2024-11-03T06:00:00Z", runs);
    }
}

#[test]
fn chargeover_london_fall_back_with_once_interval_and_cron_runs() {
    for runs in [Runs::Once, Runs::Interval, Runs::Cron] {
        chargeover_across(chrono_tz::Europe::London, "2024-10-27T01:00:00Z", runs);
    }
}

#[test]
fn chargeover_spring_forward_in_new_york_and_london() {
    chargeover_across(
        chrono_tz::America::New_York,
        "2024-03-10T07:00:00Z",
        Runs::Once,
    );
    chargeover_across(
        chrono_tz::Europe::London,
        "2024-03-31T01:00:00Z",
        Runs::Interval,
    );
}

#[test]
fn an_initial_datetime_inside_the_spring_forward_gap_starts_after_the_gap() {
    let env = chargeover(chrono_tz::America::New_York);
    // 02:00 EST jumps to 03:00 EDT on 2024-03-10; records every minute
    // from 01:30 EST to 03:59 EDT as ChargeOver writes them (local time).
    let mut at = dt("2024-03-10 01:30:00");
    let mut id = 1;
    while at < dt("2024-03-10 04:00:00") {
        if at.format("%H").to_string() != "02" {
            env.sim.insert(
                "customer",
                serde_json::json!({"customer_id": id, "mod_datetime": at.format("%Y-%m-%d %H:%M:%S").to_string()}),
            );
            id += 1;
        }
        at += ChronoDuration::minutes(1);
    }
    env.sim.set_now(dt("2024-03-10 08:00:00"));
    let cfg = env.config("", "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "customer = \"2024-01-01 00:00:00\"",
        "customer = \"2024-03-10 02:30:00\"",
    );
    env.ws.write("billing.toml", &text);
    let mut cmd = env.cmd(&["run", "--once", &cfg]);
    cmd.env("TRIBUTARY_CLOCK_START", "2024-03-10T12:00:00Z");
    let o = cmd.output().unwrap();
    assert_exit(&o, 0);
    let mut got: Vec<String> = env
        .ws
        .output("out", "chargeover.customer")
        .iter()
        .map(|e| e["value"]["mod_datetime"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    // 02:30 does not exist: the first instant after the gap is 03:00, so
    // 03:00 .. 03:59 arrive (60 records), 01:xx does not.
    assert_eq!(got.len(), 60, "{got:?}");
    assert_eq!(got[0], "2024-03-10 03:00:00");
    let lower_bounds: Vec<String> = env
        .sim
        .requests()
        .into_iter()
        .filter_map(|r| r.param("where").map(str::to_string))
        .filter(|w| w.contains(",mod_datetime:LT:2024-03-10 07\\:59\\:30"))
        .collect();
    assert_eq!(
        lower_bounds[..1],
        ["mod_datetime:GTE:2024-03-10 03\\:00\\:00,mod_datetime:LT:2024-03-10 07\\:59\\:30"],
        "the window's first page asks from 03:00"
    );
    let state = env.state(&cfg).unwrap();
    assert_eq!(state["lag_seconds"], 30);
    assert_eq!(
        state["batch_end_datetime"], "2024-03-10T11:59:30Z",
        "{state}"
    );
}

// ------------------------------------------------------------------ http

/// The generic `http` source with keyset windows on the REST simulator.
struct Http {
    ws: Workspace,
    sim: RestSim,
    /// Runs the simulator.
    _rt: tokio::runtime::Runtime,
}

fn http() -> Http {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(RestSim::start_with(RestSimConfig {
        items: 30,
        ..RestSimConfig::default()
    }));
    Http {
        ws: Workspace::new(env!("CARGO_BIN_EXE_tributary")),
        sim,
        _rt: rt,
    }
}

/// Items created or modified every 15 ms (stamped by the API's clock)
/// until dropped.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Http {
    /// `incremental` holds extra keys of the datetime cursor (`lag`,
    /// `lookback`, `format`, `timezone`).
    fn config(&self, incremental: &str) -> String {
        let text = format!(
            r#"
name = "api"
[source]
type = "http"
base_url = "{}"
[source.streams.items]
path = "/items/keyset"
params = {{ updated_since = "{{{{ keyset.value }}}}", after_id = "{{{{ keyset.id }}}}", updated_before = "{{{{ window.end }}}}" }}
records = "data"
primary_key = ["id"]
pagination = {{ type = "keyset", page_size = 20 }}
incremental = {{ type = "datetime", cursor_field = "updated_at", start = "2024-01-01T00:00:00Z", {incremental} }}
[sink]
type = "file"
dir = "out"
[runtime]
backoff_initial = "10ms"
backoff_max = "100ms"
"#,
            self.sim.base_url()
        );
        self.ws
            .write("api.toml", &text)
            .to_string_lossy()
            .into_owned()
    }

    fn write_continuously(&self) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (sim, stop) = (self.sim.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    if n % 2 == 0 {
                        sim.insert(serde_json::json!({ "name": format!("new {n}") }));
                    } else {
                        sim.modify(n % 30 + 1);
                    }
                    std::thread::sleep(Duration::from_millis(15));
                }
            })
        };
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    /// One `run --once`, on our clock started at `clock` if given; the
    /// committed position after it.
    fn run_once(&self, cfg: &str, clock: Option<DateTime<Utc>>) -> DateTime<Utc> {
        let mut cmd = self.ws.cmd(&["run", "--once", "--no-progress", cfg]);
        if let Some(t) = clock {
            cmd.env("TRIBUTARY_CLOCK_START", t.to_rfc3339());
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        assert_exit(
            &wait_output(cmd.spawn().unwrap(), Duration::from_secs(120)),
            0,
        );
        let o = self.ws.run(&["state", "get", cfg, "--stream", "items"]);
        assert_exit(&o, 0);
        let state: Value = serde_json::from_str(&stdout(&o)).unwrap();
        check_schedule(&state);
        conformance::position(
            state["last_processed_datetime"].as_str().unwrap(),
            chrono_tz::UTC,
        )
        .unwrap()
    }

    /// `run --once` until the committed position reaches `until`.
    fn run_until(&self, cfg: &str, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        let mut trail = Vec::new();
        loop {
            assert!(std::time::Instant::now() < deadline, "timed out: {trail:?}");
            let p = self.run_once(cfg, None);
            trail.push(p);
            if p >= until {
                return trail;
            }
        }
    }

    fn written(&self) -> Vec<Written> {
        self.sim
            .history()
            .into_iter()
            .map(|(id, version, at)| Written {
                key: id.to_string(),
                version: version as i64,
                at,
            })
            .collect()
    }

    fn delivered(&self) -> Vec<(String, i64)> {
        self.ws
            .output("out", "api.items")
            .iter()
            .map(|v| (v["id"].to_string(), v["version"].as_i64().unwrap()))
            .collect()
    }

    /// The suite's promises over everything written, at the last position.
    fn report(&self, trail: &[DateTime<Utc>]) -> conformance::GapReport {
        conformance::assert_monotonic(trail);
        conformance::assert_one_record_per_line(&self.ws.output_lines("out", "api.items"));
        conformance::gaps(&self.written(), &self.delivered(), *trail.last().unwrap())
    }
}

/// The API's clock off ours by `skew`, items modified all the time.
fn http_with_api_clock_off_by(skew: ChronoDuration) -> conformance::GapReport {
    let env = http();
    env.sim.clock().set_offset(skew);
    let cfg = env.config("lag = \"1s\"");
    let writes = env.write_continuously();
    let until = Utc::now().min(env.sim.clock().now()) + ChronoDuration::seconds(6);
    let mut trail = env.run_until(&cfg, until);
    writes.stop();
    if skew > ChronoDuration::zero() {
        // Writes stamped ahead of our clock are read once it gets there.
        let ahead = env.sim.clock().now() + ChronoDuration::seconds(5);
        trail.push(env.run_once(&cfg, Some(ahead)));
    }
    let report = env.report(&trail);
    eprintln!("http, API clock off by {skew}: {report}");
    report
}

#[test]
fn http_api_clock_behind_or_ahead_loses_nothing() {
    for skew in [ChronoDuration::seconds(-5), ChronoDuration::minutes(3)] {
        let report = http_with_api_clock_off_by(skew);
        assert!(report.is_clean(), "{report}");
        assert!(report.below > 100, "{report}");
    }
}

/// Writes visible only 3 s after their stamp, read with `lookback`.
fn http_late_visible(lookback: &str) -> conformance::GapReport {
    let env = http();
    env.sim.set_visibility_delay(Duration::from_secs(3));
    let cfg = env.config(&format!("lag = \"1s\", lookback = \"{lookback}\""));
    let writes = env.write_continuously();
    let until = Utc::now() + ChronoDuration::seconds(6);
    let mut trail = env.run_until(&cfg, until);
    writes.stop();
    // Once the last writes are visible, one more run: with a lookback it
    // reads again what became visible after the window it fell in.
    let last_write = env.written().last().unwrap().at;
    wait_until(
        Duration::from_secs(30),
        "the last writes to be visible",
        || env.sim.clock().now() > last_write + ChronoDuration::seconds(4),
    );
    trail.push(env.run_once(&cfg, None));
    let report = env.report(&trail);
    eprintln!("http, writes visible 3 s late, lookback {lookback}: {report}");
    report
}

#[test]
fn http_late_visible_writes_are_read_again_with_lookback() {
    let with = http_late_visible("5s");
    assert!(with.is_clean(), "{with}");
    assert!(with.below > 100, "{with}");
    // Without a lookback covering the delay, such writes do fall behind
    // finished windows: the knob is what saves them.
    let without = http_late_visible("0s");
    assert!(!without.is_clean(), "{without}");
}

/// Windows written to the API as local naive datetimes in `tz`, runs
/// across the clock change at `change` with items written all the time:
/// the checkpoint never moves back and nothing is skipped.
fn http_across(tz: chrono_tz::Tz, change: &str) {
    let env = http();
    let change = utc(change);
    env.sim.clock().set_timezone(tz);
    env.sim
        .clock()
        .start_at(change - ChronoDuration::seconds(8));
    let cfg = env.config(&format!(
        "lag = \"1s\", format = \"%Y-%m-%d %H:%M:%S\", timezone = \"{}\"",
        tz.name()
    ));
    let writes = env.write_continuously();
    let until = change + ChronoDuration::seconds(8);
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut trail = Vec::new();
    // Our clock agrees with the API's, both inside the change.
    while trail.last().is_none_or(|p| *p < until) {
        assert!(std::time::Instant::now() < deadline, "timed out: {trail:?}");
        trail.push(env.run_once(&cfg, Some(env.sim.clock().now())));
    }
    writes.stop();
    let report = env.report(&trail);
    eprintln!("http, {} at {change}: {report}", tz.name());
    assert!(report.is_clean(), "{}: {report}", tz.name());
    assert!(
        env.written()
            .iter()
            .any(|w| w.at >= change && w.at < *trail.last().unwrap()),
        "no write after the change was checked"
    );
}

#[test]
fn http_local_datetimes_across_fall_back_and_spring_forward() {
    http_across(chrono_tz::America::New_York, "2024-11-03T06:00:00Z");
    http_across(chrono_tz::Europe::London, "2024-10-27T01:00:00Z");
    http_across(chrono_tz::America::New_York, "2024-03-10T07:00:00Z");
    http_across(chrono_tz::Europe::London, "2024-03-31T01:00:00Z");
}
