//! The conformance suite of the API sources with datetime windows
//! (`chargeover`, `http`), end to end through the binary against simulators on 127.0.0.1 whose clocks run ahead, behind,
//! across DST changes, and whose writes become visible late. Every case
//! asserts the same promises (`tributary_testkit::conformance`): every
//! version below the committed position was delivered, and the committed
//! position never moved backwards. The driver and the cases every API with
//! the knobs runs are in the testkit (`conformance::run_until`,
//! `api_clock_off_by`, `late_visible`); here each source only says how it is
//! configured, written to and read back. `sql` and `stripe_reporting` run
//! the suite in their own files (`sql.rs`, `stripe.rs`), beside their
//! other tests.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, Utc};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::conformance::{self, Api, Background, Harness, Runs, Written};
use tributary_testkit::sim::chargeover::ChargeOverSim;
use tributary_testkit::sim::rest::{RestSim, RestSimConfig};
use tributary_testkit::sim::SimClock;

const USER: &str = "api-user";
const PASSWORD: &str = "s3cret-Pa55word";

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

/// Runs across the clock change at `change` (the API's clock and ours
/// starting 8 s before it) with records written all the time, a
/// long-running process restarted 2 s after it: the checkpoint never
/// moves back and nothing is skipped. `cfg` is the config to run.
fn across(h: &impl Api, tz: chrono_tz::Tz, change: DateTime<Utc>, runs: Runs, cfg: &str) {
    let writes = h.write_continuously();
    let trail = conformance::run_until(
        h,
        cfg,
        runs,
        change + ChronoDuration::seconds(8),
        Some(change + ChronoDuration::seconds(2)),
    );
    drop(writes);
    let report = conformance::report(h, &trail);
    eprintln!("{} at {change} with {runs:?}: {report}", tz.name());
    assert!(report.is_clean(), "{} {runs:?}: {report}", tz.name());
    assert!(
        h.written()
            .iter()
            .any(|w| w.at >= change && w.at < *trail.last().unwrap()),
        "no write after the change was checked"
    );
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

/// With 40 customers written an hour apart from 2024-01-01, the ones
/// continuous writes modify.
fn chargeover_with_customers(tz: chrono_tz::Tz) -> Co {
    let env = chargeover(tz);
    env.sim.generate(
        "customer",
        40,
        dt("2024-01-01 00:00:00"),
        ChronoDuration::hours(1),
    );
    env
}

impl Co {
    /// `source`: extra keys of `[source]`; `top`: of the connector.
    fn config_with(&self, source: &str, top: &str) -> String {
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

    fn state(&self, cfg: &str) -> Option<Value> {
        conformance::state(self, cfg)
    }
}

impl Harness for Co {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.ws.cmd(args);
        cmd.env("CHARGEOVER_PASSWORD", PASSWORD);
        cmd
    }

    fn our_clock(&self) -> Option<DateTime<Utc>> {
        self.ours_minus_api.map(|d| self.sim.clock().now() + d)
    }

    fn stream(&self) -> &str {
        "customer"
    }

    fn position(&self, state: &Value) -> Option<DateTime<Utc>> {
        state["last_processed_datetime"]
            .as_str()
            .and_then(|t| conformance::position(t, self.tz))
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

    fn output_lines(&self) -> Vec<String> {
        self.ws.output_lines("out", "chargeover.customer")
    }
}

impl Api for Co {
    fn config(&self, lag: &str, lookback: &str) -> String {
        self.config_with(&format!("lag = \"{lag}\"\nlookback = \"{lookback}\""), "")
    }

    fn clock(&self) -> &SimClock {
        self.sim.clock()
    }

    fn set_visibility_delay(&self, delay: Duration) {
        self.sim.set_visibility_delay(delay);
    }

    fn write_continuously(&self) -> Box<dyn std::any::Any> {
        let _rt = self.rt.enter();
        Box::new(
            self.sim
                .write_continuously("customer", Duration::from_millis(15), 2),
        )
    }
}

#[test]
fn chargeover_api_clock_behind_or_ahead_by_seconds_or_minutes_loses_nothing() {
    for skew in [
        ChronoDuration::seconds(-5),
        ChronoDuration::seconds(5),
        ChronoDuration::minutes(-3),
        ChronoDuration::minutes(3),
    ] {
        let env = chargeover_with_customers(chrono_tz::UTC);
        let report = conformance::api_clock_off_by(&env, skew);
        eprintln!("chargeover, API clock off by {skew}: {report}");
        assert!(report.is_clean(), "API clock off by {skew}: {report}");
        assert!(report.below > 100, "{report}");
    }
}

/// Late-visible writes on `env`'s API: read again with a lookback that
/// covers the delay, lost without one (the knob is what saves them).
fn late_visible_needs_the_lookback(with: &impl Api, without: &impl Api) {
    let report = conformance::late_visible(with, "5s");
    eprintln!("writes visible 3 s late, lookback 5s: {report}");
    assert!(report.is_clean(), "{report}");
    assert!(report.below > 100, "{report}");
    let report = conformance::late_visible(without, "0s");
    eprintln!("writes visible 3 s late, no lookback: {report}");
    assert!(!report.is_clean(), "{report}");
}

#[test]
fn chargeover_late_visible_writes_are_read_again_with_lookback() {
    late_visible_needs_the_lookback(
        &chargeover_with_customers(chrono_tz::UTC),
        &chargeover_with_customers(chrono_tz::UTC),
    );
}

/// ChargeOver (local naive datetimes in `tz`) across the change at `change`.
fn chargeover_across(tz: chrono_tz::Tz, change: &str, runs: Runs) {
    let env = Co {
        ours_minus_api: Some(ChronoDuration::zero()),
        ..chargeover_with_customers(tz)
    };
    let change = utc(change);
    env.sim
        .clock()
        .start_at(change - ChronoDuration::seconds(8));
    let cfg = env.config_with("lag = \"1s\"", &runs.schedule(tz));
    across(&env, tz, change, runs, &cfg);
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
    let cfg = env.config_with("", "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "customer = \"2024-01-01 00:00:00\"",
        "customer = \"2024-03-10 02:30:00\"",
    );
    env.ws.write("billing.toml", &text);
    let mut cmd = env.command(&["run", "--once", &cfg]);
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
    /// Our clock minus the API's; `None`: the binary runs on the real clock.
    ours_minus_api: Option<ChronoDuration>,
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
        ours_minus_api: None,
        _rt: rt,
    }
}

impl Http {
    /// `incremental` holds extra keys of the datetime cursor (`lag`,
    /// `lookback`, `format`, `timezone`); `top` of the connector.
    fn config_with(&self, incremental: &str, top: &str) -> String {
        let text = format!(
            r#"
name = "api"
{top}
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
}

impl Harness for Http {
    fn command(&self, args: &[&str]) -> Command {
        self.ws.cmd(args)
    }

    fn our_clock(&self) -> Option<DateTime<Utc>> {
        self.ours_minus_api.map(|d| self.sim.clock().now() + d)
    }

    fn stream(&self) -> &str {
        "items"
    }

    fn position(&self, state: &Value) -> Option<DateTime<Utc>> {
        state["last_processed_datetime"]
            .as_str()
            .and_then(|t| conformance::position(t, chrono_tz::UTC))
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

    fn output_lines(&self) -> Vec<String> {
        self.ws.output_lines("out", "api.items")
    }
}

impl Api for Http {
    fn config(&self, lag: &str, lookback: &str) -> String {
        self.config_with(&format!("lag = \"{lag}\", lookback = \"{lookback}\""), "")
    }

    fn clock(&self) -> &SimClock {
        self.sim.clock()
    }

    fn set_visibility_delay(&self, delay: Duration) {
        self.sim.set_visibility_delay(delay);
    }

    /// Items created or modified every 15 ms.
    fn write_continuously(&self) -> Box<dyn std::any::Any> {
        let sim = self.sim.clone();
        Box::new(Background::spawn(move |stop| {
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
        }))
    }
}

#[test]
fn http_api_clock_behind_or_ahead_loses_nothing() {
    for skew in [ChronoDuration::seconds(-5), ChronoDuration::minutes(3)] {
        let report = conformance::api_clock_off_by(&http(), skew);
        eprintln!("http, API clock off by {skew}: {report}");
        assert!(report.is_clean(), "{report}");
        assert!(report.below > 100, "{report}");
    }
}

#[test]
fn http_late_visible_writes_are_read_again_with_lookback() {
    late_visible_needs_the_lookback(&http(), &http());
}

/// `http` with windows written to the API as local naive datetimes in
/// `tz`, across the change at `change`.
fn http_across(tz: chrono_tz::Tz, change: &str, runs: Runs) {
    let env = Http {
        ours_minus_api: Some(ChronoDuration::zero()),
        ..http()
    };
    let change = utc(change);
    env.sim.clock().set_timezone(tz);
    env.sim
        .clock()
        .start_at(change - ChronoDuration::seconds(8));
    let cfg = env.config_with(
        &format!(
            "lag = \"1s\", format = \"%Y-%m-%d %H:%M:%S\", timezone = \"{}\"",
            tz.name()
        ),
        &runs.schedule(tz),
    );
    across(&env, tz, change, runs, &cfg);
}

#[test]
fn http_local_datetimes_across_fall_back_and_spring_forward() {
    http_across(
        chrono_tz::America::New_York,
        "2024-11-03T06:00:00Z",
        Runs::Once,
    );
    http_across(
        chrono_tz::Europe::London,
        "2024-10-27T01:00:00Z",
        Runs::Once,
    );
    http_across(
        chrono_tz::America::New_York,
        "2024-03-10T07:00:00Z",
        Runs::Once,
    );
    http_across(
        chrono_tz::Europe::London,
        "2024-03-31T01:00:00Z",
        Runs::Once,
    );
}

#[test]
fn http_new_york_fall_back_with_interval_and_cron_runs_restarted_inside_the_hour() {
    for runs in [Runs::Interval, Runs::Cron] {
        http_across(chrono_tz::America::New_York, "2024-11-03T06:00:00Z", runs);
    }
}

#[test]
fn http_london_fall_back_with_interval_and_cron_runs_restarted_inside_the_hour() {
    for runs in [Runs::Interval, Runs::Cron] {
        http_across(chrono_tz::Europe::London, "2024-10-27T01:00:00Z", runs);
    }
}

#[test]
fn http_spring_forward_with_interval_and_cron_runs() {
    http_across(
        chrono_tz::America::New_York,
        "2024-03-10T07:00:00Z",
        Runs::Cron,
    );
    http_across(
        chrono_tz::Europe::London,
        "2024-03-31T01:00:00Z",
        Runs::Interval,
    );
}
