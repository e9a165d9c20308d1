//! The stripe_reporting connector end to end: the real binary against the
//! Stripe Reporting simulator on 127.0.0.1. Seed 004's incident replayed:
//! slow report runs, failed runs, kill -9 at the two dangerous instants,
//! and the recovery commands. And the conformance suite of windowed
//! sources where it applies to report runs: Stripe's availability ahead
//! of or behind our clock, data made available late and, for a moment,
//! less of it; expiring files.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::conformance::{self, Background, Harness, Runs, Written};
use tributary_testkit::sim::StripeSim;

const KEY: &str = "sk_test_51Hx9secretKEY0000";
const UTC_STREAM: &str = "balance.summary.1.UTC";
const NY_STREAM: &str = "balance.summary.1.America_New_York";

struct Env {
    ws: Workspace,
    sim: StripeSim,
    /// Our clock minus the API's; `None`: the binary runs on the real clock.
    ours_minus_api: Option<ChronoDuration>,
    _rt: tokio::runtime::Runtime,
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Report types available 2024-01-01..2024-01-04; `n` transactions every
/// `minutes` from 2024-01-01.
fn setup(n: u64, minutes: i64) -> Env {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(StripeSim::start(KEY));
    for rt_id in ["balance.summary.1", "payouts.itemized.3"] {
        sim.set_report_type(rt_id, t("2024-01-01T00:00:00Z"), t("2024-01-04T00:00:00Z"));
    }
    sim.add_transactions(
        1,
        n,
        t("2024-01-01T00:00:00Z"),
        chrono::Duration::minutes(minutes),
    );
    Env {
        ws: Workspace::new(env!("CARGO_BIN_EXE_tributary")),
        sim,
        ours_minus_api: None,
        _rt: rt,
    }
}

impl Env {
    fn config(&self, source_extra: &str, runtime_extra: &str) -> String {
        self.config_with("", source_extra, runtime_extra)
    }

    /// `top`: keys of the connector (a schedule).
    fn config_with(&self, top: &str, source_extra: &str, runtime_extra: &str) -> String {
        let text = format!(
            r#"
name = "stripe"
topic_prefix = "stripe"
{top}

[source]
type = "stripe_reporting"
api_key = "${{STRIPE_API_KEY}}"
base_url = "{base}"
files_url = "{base}"
key_columns = {{ "balance.summary.1" = ["balance_transaction_id"] }}
poll_interval = "20ms"
poll_interval_max = "50ms"
failure_backoff = "20ms"
max_consecutive_failures = 3
{source_extra}

[sink]
type = "file"
dir = "out"

[runtime]
backoff_initial = "10ms"
backoff_max = "100ms"
{runtime_extra}
"#,
            base = self.sim.base_url()
        );
        let text = if runtime_extra.contains("flush_interval") {
            text
        } else {
            text + "flush_interval = \"50ms\"\n"
        };
        self.ws.write("stripe.toml", &text);
        self.ws.path("stripe.toml").to_string_lossy().into_owned()
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.ws.cmd(args);
        c.env("STRIPE_API_KEY", KEY);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd(args);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        wait_output(c.spawn().unwrap(), Duration::from_secs(120))
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut c = self.cmd(args);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    }

    fn state(&self, cfg: &str, stream: &str) -> Value {
        let o = self.run(&["state", "get", cfg, "--stream", stream]);
        assert_exit(&o, 0);
        serde_json::from_str(&stdout(&o)).unwrap()
    }

    /// Transaction ids written for a stream, with how often each came.
    fn delivered(&self, stream: &str) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for v in self.ws.output("out", &format!("stripe.{stream}")) {
            *m.entry(v["balance_transaction_id"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        m
    }

    /// Every transaction created in `[from, to)` was delivered to `stream`, once.
    fn assert_delivered_once(&self, stream: &str, from: &str, to: &str) {
        let got = self.delivered(stream);
        assert_eq!(
            got.keys().cloned().collect::<Vec<_>>(),
            self.expected(from, to)
        );
        assert!(got.values().all(|&c| c == 1), "duplicates in {stream}");
    }

    /// Ids of the transactions created in `[from, to)`.
    fn expected(&self, from: &str, to: &str) -> Vec<String> {
        let (a, b) = (t(from).timestamp(), t(to).timestamp());
        self.sim
            .transactions()
            .into_iter()
            .filter(|x| x.created >= a && x.created < b)
            .map(|x| x.id)
            .collect()
    }
}

fn once(env: &Env, cfg: &str) -> Output {
    let o = env.run(&["run", "--once", "--no-progress", cfg]);
    assert_exit(&o, 0);
    o
}

#[test]
fn a_run_slower_than_max_wait_is_waited_on_again_never_created_twice() {
    let env = setup(300, 15);
    let cfg = env.config(
        "report_types = [\"balance.summary.1\"]\ntimezones = [\"UTC\", \"America/New_York\"]\nmax_wait = \"300ms\"",
        "",
    );
    env.sim.hold_runs(true);
    // Round 1: both runs are created and still pending after max_wait: the
    // round ends, the run ids stay committed, nothing is delivered.
    let o = once(&env, &cfg);
    assert!(
        stderr(&o).contains("not finished within max_wait"),
        "{}",
        stderr(&o)
    );
    let runs = env.sim.runs();
    assert_eq!(runs.len(), 2);
    for stream in [UTC_STREAM, NY_STREAM] {
        let state = env.state(&cfg, stream);
        let id = state["in_progress_report_run_id"].as_str().unwrap();
        assert!(runs.iter().any(|r| r.id == id), "{state}");
        assert_eq!(state["interval_start"], "2024-01-01T00:00:00Z");
        assert_eq!(state["interval_end"], "2024-01-04T00:00:00Z");
        assert_eq!(state["round_id"], 0);
    }
    assert!(env.delivered(UTC_STREAM).is_empty());
    // Round 2, still slow: waits on the same runs again.
    once(&env, &cfg);
    assert_eq!(env.sim.runs().len(), 2, "no second run was created");

    // Round 3: the runs finish; every row of the interval arrives once.
    env.sim.hold_runs(false);
    once(&env, &cfg);
    assert_eq!(env.sim.runs().len(), 2, "still no new run");
    let expected = env.expected("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z");
    assert_eq!(expected.len(), 288);
    for stream in [UTC_STREAM, NY_STREAM] {
        let got = env.delivered(stream);
        assert_eq!(got.keys().cloned().collect::<Vec<_>>(), expected);
        assert!(got.values().all(|&c| c == 1));
        let state = env.state(&cfg, stream);
        assert_eq!(state["round_id"], 1);
        assert_eq!(state["interval_start"], "2024-01-04T00:00:00Z");
        assert_eq!(state.get("in_progress_report_run_id"), None, "{state}");
    }
    // The report run was asked for exactly as Stripe documents it.
    let create = env
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(create.path, "/v1/reporting/report_runs");
    assert_eq!(
        create.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(
        create
            .body
            .contains("parameters%5Binterval_start%5D=1704067200"),
        "{}",
        create.body
    );
    assert_eq!(
        create.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    // A New York row shows `created` in New York time.
    let ny = env.ws.output("out", &format!("stripe.{NY_STREAM}"));
    assert_eq!(ny[0]["created_utc"], "2024-01-01 00:00:00");
    assert_eq!(ny[0]["created"], "2023-12-31 19:00:00");
    assert_eq!(ny[0]["_interval_end"], "2024-01-04T00:00:00Z");

    // Stripe has more data: the next round reads only the new interval.
    env.sim.set_data_available_end(t("2024-01-05T00:00:00Z"));
    once(&env, &cfg);
    assert_eq!(env.sim.runs().len(), 4);
    let all = env.expected("2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z");
    let got = env.delivered(UTC_STREAM);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), all);
    assert!(got.values().all(|&c| c == 1));
    assert!(!stderr(&once(&env, &cfg)).contains(KEY));
}

#[test]
fn failed_runs_are_retried_then_marked_stuck_without_stopping_other_streams() {
    let env = setup(100, 30);
    let cfg = env.config(
        "report_types = [\"balance.summary.1\", \"payouts.itemized.3\"]\nmax_wait = \"5s\"",
        "",
    );
    // One failure: retried with a new run after the backoff, then delivered.
    env.sim.fail_next_runs(
        "payouts.itemized.3",
        1,
        "Internal error while generating the report",
    );
    // Three failures in a row: stuck.
    env.sim.fail_next_runs(
        "balance.summary.1",
        3,
        "Internal error while generating the report",
    );
    let o = once(&env, &cfg);
    assert!(stderr(&o).contains("stream is stuck"), "{}", stderr(&o));
    let runs = env.sim.runs();
    let of = |rt: &str| runs.iter().filter(|r| r.report_type == rt).count();
    assert_eq!((of("balance.summary.1"), of("payouts.itemized.3")), (3, 2));
    let stuck = env.state(&cfg, UTC_STREAM);
    assert_eq!(stuck["consecutive_failures"], 3);
    let reason = stuck["stuck_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("3 attempts in a row gave up; last: frr_")
            && reason
                .ends_with(": the report run failed: Internal error while generating the report"),
        "{reason}"
    );
    // The failed runs are abandoned for good: listed, and the next attempt
    // gets a new idempotency key.
    let abandoned: Vec<&str> = stuck["abandoned_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let bs: Vec<&str> = runs
        .iter()
        .filter(|r| r.report_type == "balance.summary.1")
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(abandoned, bs);
    assert_eq!(stuck["attempt"], 3);
    assert_eq!(
        stuck["interval_start"], "2024-01-01T00:00:00Z",
        "nothing advanced"
    );
    assert_eq!(stuck["round_id"], 0);
    // The other stream went on and delivered everything.
    let expected = env.expected("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z");
    let got: Vec<String> = env
        .ws
        .output("out", "stripe.payouts.itemized.3.UTC")
        .iter()
        .map(|v| v["balance_transaction_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected);

    // Visible to operators, from another process.
    let o = env.run(&["state", "list", &cfg]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    let line = out.lines().find(|l| l.starts_with(UTC_STREAM)).unwrap();
    assert!(line.contains(" stuck "), "{out}");
    assert!(out.contains("stuck: 3 attempts in a row gave up"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("payouts.itemized.3.UTC"))
        .unwrap();
    assert!(line.contains(" ok "), "{out}");
    let o = env.run(&["state", "stuck", &cfg]);
    assert_exit(&o, 5);
    assert!(
        stdout(&o).starts_with(&format!("{UTC_STREAM}\tstuck for ")),
        "{}",
        stdout(&o)
    );
    assert_eq!(stdout(&o).lines().count(), 1);

    // The next round tries once more; Stripe recovered: unstuck, delivered.
    once(&env, &cfg);
    let state = env.state(&cfg, UTC_STREAM);
    assert_eq!(state.get("stuck_reason"), None, "{state}");
    assert_eq!(state["consecutive_failures"], 0);
    assert_eq!(
        env.delivered(UTC_STREAM)
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        expected
    );
    assert_exit(&env.run(&["state", "stuck", &cfg]), 0);
}

#[test]
fn kill_9_between_creating_a_run_and_committing_its_id_adopts_the_run() {
    let env = setup(200, 20);
    let cfg = env.config(
        "report_types = [\"balance.summary.1\"]\nmax_wait = \"60s\"",
        // The run id is handed over at once but committed only at the next flush.
        "flush_interval = \"60s\"",
    );
    env.sim.hold_runs(true);
    let mut child = env.spawn(&["run", "--no-progress", &cfg]);
    wait_until(Duration::from_secs(30), "the report run", || {
        env.sim.runs().len() == 1
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let o = env.run(&["state", "get", &cfg]);
    assert_eq!(stdout(&o).trim(), "{}", "the run id was never committed");

    env.sim.hold_runs(false);
    let o = once(&env, &cfg);
    assert!(
        stderr(&o).contains("waiting on it instead of creating another"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        env.sim.runs().len(),
        1,
        "the orphaned run was found, not created again"
    );
    env.assert_delivered_once(UTC_STREAM, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z");
}

#[test]
fn kill_9_while_emitting_a_report_resumes_after_the_committed_rows() {
    // 20 000 rows, committed every 500.
    let env = setup(20_000, 1);
    env.sim.set_data_available_end(t("2024-01-15T00:00:00Z"));
    let cfg = env.config(
        "report_types = [\"balance.summary.1\"]\nmax_wait = \"60s\"",
        "flush_interval = \"60s\"\nflush_records = 500\nbatch_size = 100",
    );
    let mut child = env.spawn(&["run", "--no-progress", &cfg]);
    wait_until(Duration::from_secs(60), "part of the report", || {
        env.ws.written_lines("out", &format!("stripe.{UTC_STREAM}")) >= 3_000
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let state = env.state(&cfg, UTC_STREAM);
    let run = env.sim.runs()[0].id.clone();
    if state["round_id"] == 0 {
        // Killed mid-file: the checkpoint holds the run and the rows delivered.
        assert_eq!(state["in_progress_report_run_id"], run.as_str());
        assert!(state["rows_emitted"].as_u64().unwrap() >= 500, "{state}");
    }
    let o = once(&env, &cfg);
    assert_exit(&o, 0);
    assert_eq!(env.sim.runs().len(), 1, "the same run's file is read again");
    let got = env.delivered(UTC_STREAM);
    let expected = env.expected("2024-01-01T00:00:00Z", "2024-01-15T00:00:00Z");
    assert_eq!(expected.len(), 20_000);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), expected);
    let duplicates: usize = got.values().map(|c| c - 1).sum();
    // Only rows after the last commit come again: fewer than one flush plus
    // the batches in flight.
    assert!(duplicates <= 500 + 16 * 100, "{duplicates} duplicates");
}

#[test]
fn reset_to_a_position_with_a_dry_run_diff_then_back_up_and_roll_back() {
    let env = setup(100, 30);
    let cfg = env.config("report_types = [\"balance.summary.1\"]", "");
    once(&env, &cfg);
    let before = env.state(&cfg, UTC_STREAM);
    assert_eq!(before["interval_start"], "2024-01-04T00:00:00Z");

    // Back up (seed 004's missing step), then reset to an earlier day.
    let o = env.run(&["state", "export", &cfg]);
    assert_exit(&o, 0);
    env.ws.write("backup.json", &stdout(&o));
    let backup: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(backup["format"], "tributary-state");
    assert_eq!(backup["version"], 1);

    let o = env.run(&[
        "state",
        "reset",
        &cfg,
        "--stream",
        UTC_STREAM,
        "--to",
        "2024-01-03",
        "--dry-run",
    ]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        format!(
            "dry run: nothing is changed in connector `stripe`\nstream `{UTC_STREAM}`:\n  interval_end: \"2024-01-04T00:00:00Z\" -> \"2024-01-03T00:00:00Z\"\n  interval_start: \"2024-01-04T00:00:00Z\" -> \"2024-01-03T00:00:00Z\"\n"
        )
    );
    assert_eq!(
        env.state(&cfg, UTC_STREAM),
        before,
        "a dry run changes nothing"
    );
    let o = env.run(&[
        "state",
        "reset",
        &cfg,
        "--stream",
        UTC_STREAM,
        "--to",
        "2024-01-03",
    ]);
    assert_exit(&o, 0);
    assert_eq!(
        env.state(&cfg, UTC_STREAM)["interval_start"],
        "2024-01-03T00:00:00Z"
    );
    // The next round reads that day again.
    once(&env, &cfg);
    let again = env.expected("2024-01-03T00:00:00Z", "2024-01-04T00:00:00Z");
    let got = env.delivered(UTC_STREAM);
    assert!(again.iter().all(|id| got[id] == 2));
    assert_eq!(got.values().filter(|&&c| c == 2).count(), again.len());

    // --to-available-end asks Stripe.
    env.sim.set_data_available_end(t("2024-01-06T12:00:00Z"));
    let o = env.run(&[
        "state",
        "reset",
        &cfg,
        "--stream",
        UTC_STREAM,
        "--to-available-end",
    ]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("interval_start: \"2024-01-04T00:00:00Z\" -> \"2024-01-06T12:00:00Z\""),
        "{}",
        stdout(&o)
    );

    // Roll back to the backup: exactly what was exported.
    let o = env.run(&["state", "import", &cfg, "backup.json"]);
    assert_exit(&o, 0);
    let o = env.run(&["state", "export", &cfg]);
    let restored: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(restored["streams"], backup["streams"]);
}

#[test]
fn a_bad_key_is_a_clear_error_that_never_shows_the_key() {
    let env = setup(10, 60);
    let cfg = env.config("report_types = [\"balance.summary.1\"]", "");
    let mut c = env.ws.cmd(&["run", "--once", "--no-progress", &cfg]);
    c.env("STRIPE_API_KEY", "sk_test_wrong_key_123456");
    let o = wait_output(
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(60),
    );
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("sk_test_wrong_key_123456"), "{err}");
}

#[test]
fn config_errors_name_the_key_and_line() {
    let env = setup(1, 60);
    let cfg = env.config(
        "report_types = [\"balance.summary.1\"]\ncolumns = { \"balance.sumary.1\" = [\"net\"] }",
        "",
    );
    let o = env.run(&["check", &cfg]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("stripe.toml:"), "{err}");
    assert!(
        err.contains("`balance.sumary.1` is not in `report_types`"),
        "{err}"
    );
    assert!(err.contains("balance.summary.1"), "{err}");
}

#[test]
fn the_example_config_is_valid_and_names_its_streams() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let text = std::fs::read_to_string(repo_root().join("examples/stripe_reporting.toml")).unwrap();
    let cfg = ws.write("examples/stripe_reporting.toml", &text);
    let mut c = ws.cmd(&["discover", cfg.to_str().unwrap()]);
    c.env("STRIPE_API_KEY", KEY);
    let o = c.output().unwrap();
    assert_exit(&o, 0);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let names: Vec<&str> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "balance.summary.1.America_New_York",
            "balance.summary.1.UTC",
            "balance_change_from_activity.itemized.3.America_New_York",
            "balance_change_from_activity.itemized.3.UTC"
        ]
    );
}

/// The ids of the runs whose rows were delivered for `stream`.
fn runs_read(env: &Env, stream: &str) -> std::collections::BTreeSet<String> {
    env.ws
        .output("out", &format!("stripe.{stream}"))
        .iter()
        .map(|v| v["_report_run_id"].as_str().unwrap().to_string())
        .collect()
}

/// Issue 19 item 1: the file of a succeeded run answers 404. Before, the
/// stream re-adopted the same run by its parameters forever (1,044
/// requests in 25 s, `run --once` never ended). Now the run is abandoned,
/// each attempt is a new run with a new key, and after
/// `max_consecutive_failures` the stream is stuck and the run ends.
#[test]
fn an_expired_report_file_abandons_the_run_and_ends_stuck_instead_of_looping() {
    let env = setup(100, 30);
    let cfg = env.config("report_types = [\"balance.summary.1\"]", "");
    env.sim.expire_files(true);
    let mut c = env.cmd(&["run", "--once", "--no-progress", &cfg]);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let o = wait_output(c.spawn().unwrap(), Duration::from_secs(60));
    assert_exit(&o, 0);
    let runs = env.sim.runs();
    assert_eq!(runs.len(), 3, "one new run per attempt, then stuck");
    let keys: std::collections::BTreeSet<_> = runs
        .iter()
        .map(|r| r.idempotency_key.clone().unwrap())
        .collect();
    assert_eq!(keys.len(), 3, "every attempt has its own key: {keys:?}");
    let requests = env.sim.requests().len();
    assert!(requests < 40, "{requests} requests: no loop");
    let state = env.state(&cfg, UTC_STREAM);
    let reason = state["stuck_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("3 attempts in a row gave up; last: ")
            && reason.ends_with("the report file is gone (404, expired)"),
        "{reason}"
    );
    assert_eq!(state["abandoned_runs"].as_array().unwrap().len(), 3);
    assert_eq!(state["interval_start"], "2024-01-01T00:00:00Z");
    assert!(env.delivered(UTC_STREAM).is_empty());
    assert!(stderr(&o).contains("stream is stuck"), "{}", stderr(&o));

    // Files are served again: the next run creates a fourth run (none of
    // the abandoned ones is adopted, though their files are back) and
    // delivers the interval once.
    env.sim.expire_files(false);
    once(&env, &cfg);
    let runs = env.sim.runs();
    assert_eq!(runs.len(), 4);
    assert_eq!(
        runs_read(&env, UTC_STREAM).into_iter().collect::<Vec<_>>(),
        [runs[3].id.clone()]
    );
    let expected = env.expected("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z");
    assert_eq!(
        env.delivered(UTC_STREAM)
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        expected
    );
    let state = env.state(&cfg, UTC_STREAM);
    assert_eq!(state.get("stuck_reason"), None, "{state}");
    assert_eq!(state["round_id"], 1);
}

/// Issue 19 item 2: `state reset --to <start>` removed the hung run's id,
/// and the next round found the same hung run by its parameters. Now the
/// reset abandons it and the next round creates a run of its own.
#[test]
fn state_reset_gets_rid_of_a_hung_run_for_good() {
    let env = setup(100, 30);
    let cfg = env.config(
        "report_types = [\"balance.summary.1\"]\nmax_wait = \"300ms\"",
        "",
    );
    env.sim.hang_next_runs(1);
    once(&env, &cfg);
    once(&env, &cfg);
    let hung = env.sim.runs()[0].id.clone();
    assert_eq!(env.sim.runs().len(), 1);
    assert_eq!(
        env.state(&cfg, UTC_STREAM)["in_progress_report_run_id"],
        hung.as_str()
    );
    let o = env.run(&[
        "state",
        "reset",
        &cfg,
        "--stream",
        UTC_STREAM,
        "--to",
        "2024-01-01",
    ]);
    assert_exit(&o, 0);
    let state = env.state(&cfg, UTC_STREAM);
    assert_eq!(state.get("in_progress_report_run_id"), None);
    assert_eq!(state["abandoned_runs"][0]["id"], hung.as_str());

    once(&env, &cfg);
    let runs = env.sim.runs();
    assert_eq!(runs.len(), 2, "a new run, not the hung one");
    assert_ne!(runs[1].idempotency_key, runs[0].idempotency_key);
    assert_eq!(
        runs_read(&env, UTC_STREAM).into_iter().collect::<Vec<_>>(),
        [runs[1].id.clone()]
    );
    let expected = env.expected("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z");
    assert_eq!(
        env.delivered(UTC_STREAM)
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        expected
    );
}

/// Issue 19 item 3: the retry budget counted only batches with records,
/// so scattered 500s (never two in a row) across rounds of empty
/// intervals exhausted it, and that one stream stopped the connector.
/// Now committed run ids and empty intervals reset it, and a stream that
/// cannot succeed fails alone: the other one delivers everything, and
/// `run --once` exits 1 at the end naming the failed stream.
#[test]
fn scattered_500s_never_exhaust_the_budget_and_a_failing_stream_fails_alone() {
    let env = setup(0, 60);
    // Rows only in the last of twelve 6-hour intervals.
    env.sim.add_transactions(
        1,
        40,
        t("2024-01-03T18:00:00Z"),
        chrono::Duration::minutes(5),
    );
    let cfg = env.config(
        "report_types = [\"balance.summary.1\", \"payouts.itemized.3\"]\nmax_interval = \"6h\"",
        "max_retries = 4",
    );
    env.sim.break_report_type("payouts.itemized.3");
    env.sim.fail_every(5, 500);
    let o = env.run(&["run", "--once", "--no-progress", &cfg]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    let failed_500s = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.status == 500 && !r.body.contains("payouts") && !r.path.contains("payouts"))
        .count();
    assert!(
        failed_500s >= 8,
        "{failed_500s} scattered 500s on the healthy stream"
    );
    let expected = env.expected("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z");
    assert_eq!(expected.len(), 40);
    let got = env.delivered(UTC_STREAM);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), expected, "{err}");
    assert!(got.values().all(|&c| c == 1));
    assert_eq!(env.state(&cfg, UTC_STREAM)["round_id"], 12);
    assert!(
        err.contains(
            "stream `payouts.itemized.3.UTC`: gave up after 4 consecutive retryable errors"
        ),
        "{err}"
    );
    assert!(
        !err.contains("stream `balance.summary.1.UTC`: gave up"),
        "{err}"
    );
}

/// Issue 19 item 7: creates carried no `Idempotency-Key`, so a create
/// whose answer was lost (a 500 after Stripe made the run) left an orphan
/// or adopted a foreign run by its parameters; "report run created" was
/// logged for adopted runs.
#[test]
fn a_create_whose_answer_is_lost_gets_the_same_run_back_by_its_idempotency_key() {
    let env = setup(50, 60);
    let cfg = env.config("report_types = [\"balance.summary.1\"]", "");
    env.sim.lose_next_create_responses(1);
    let o = once(&env, &cfg);
    let runs = env.sim.runs();
    assert_eq!(runs.len(), 1, "no orphan run");
    let creates: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0].status, 500);
    let key = creates[0].header("idempotency-key").unwrap().to_string();
    assert_eq!(creates[1].header("idempotency-key"), Some(key.as_str()));
    assert_eq!(
        key,
        format!("tributary/stripe/{UTC_STREAM}/1704067200-1704326400/0")
    );
    let err = stderr(&o);
    assert!(err.contains("same idempotency key"), "{err}");
    assert!(!err.contains("report run created"), "{err}");
    env.assert_delivered_once(UTC_STREAM, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z");
}

/// Issue 19 item 7: a 302 from the files host to another host was
/// followed and its body ingested, though a `result.url` on that host is
/// refused. Now the redirect is not followed and the stream is stuck with
/// the reason.
#[test]
fn a_redirect_from_the_files_host_to_another_host_is_refused() {
    let env = setup(50, 60);
    let cfg = env.config("report_types = [\"balance.summary.1\"]", "");
    env.sim.redirect_files_off_host(true);
    once(&env, &cfg);
    assert!(env.delivered(UTC_STREAM).is_empty());
    assert!(
        !env.sim
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/presigned/")),
        "the redirect was followed"
    );
    let state = env.state(&cfg, UTC_STREAM);
    let reason = state["stuck_reason"].as_str().unwrap();
    assert!(
        reason.contains("redirected to a host that is neither files_url's nor base_url's"),
        "{reason}"
    );
}

// ------------------------------------------------- the conformance suite

impl Harness for Env {
    fn command(&self, args: &[&str]) -> std::process::Command {
        self.cmd(args)
    }

    fn our_clock(&self) -> Option<DateTime<Utc>> {
        self.ours_minus_api.map(|d| self.sim.clock().now() + d)
    }

    fn stream(&self) -> &str {
        UTC_STREAM
    }

    /// Everything before `interval_start` was delivered.
    fn position(&self, state: &Value) -> Option<DateTime<Utc>> {
        state["interval_start"]
            .as_str()
            .and_then(|t| conformance::position(t, chrono_tz::UTC))
    }

    fn written(&self) -> Vec<Written> {
        self.sim
            .transactions()
            .into_iter()
            .map(|x| Written {
                key: x.id,
                version: 1,
                at: DateTime::from_timestamp(x.created, 0).unwrap(),
            })
            .collect()
    }

    fn delivered(&self) -> Vec<(String, i64)> {
        self.delivered(UTC_STREAM)
            .into_keys()
            .map(|id| (id, 1))
            .collect()
    }

    fn output_lines(&self) -> Vec<String> {
        self.ws.output_lines("out", &format!("stripe.{UTC_STREAM}"))
    }
}

/// Stripe as it runs, until dropped: transactions created all the time
/// (by the API's clock, some stamped a second in the past),
/// `data_available_end` moved up to 2 s behind it every 200 ms and, every
/// 8th move, 30 s back (a replica answering late).
fn business(sim: &StripeSim) -> Background {
    let sim = sim.clone();
    Background::spawn(move |stop| {
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let now = sim.clock().now();
            let created = now - ChronoDuration::seconds(n.is_multiple_of(4).into());
            sim.add_transactions(n, 1, created, ChronoDuration::zero());
            if n.is_multiple_of(13) {
                let back = if n.is_multiple_of(8 * 13) { 30 } else { 2 };
                sim.set_data_available_end(now - ChronoDuration::seconds(back));
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    })
}

/// Stripe's clock `skew` off ours (`start` a few seconds back on it),
/// runs `--once` until the position is 6 s past where it started, report
/// files expired during every third run. Every created transaction below
/// the committed `interval_start` arrived; the position and the runs'
/// intervals never moved back; each interval whose file expired was
/// asked for again, not skipped.
fn stripe_runs_with_clock_off_by(skew: ChronoDuration) -> conformance::GapReport {
    let env = Env {
        ours_minus_api: Some(skew),
        ..setup(0, 1)
    };
    let begin = DateTime::from_timestamp(env.sim.clock().now().timestamp() - 3, 0).unwrap();
    env.sim
        .set_report_type("balance.summary.1", begin - ChronoDuration::days(1), begin);
    let cfg = env.config(
        &format!(
            "report_types = [\"balance.summary.1\"]\nstart = \"{}\"",
            begin.to_rfc3339()
        ),
        "",
    );
    let writes = business(&env.sim);
    let until = env.sim.clock().now() + ChronoDuration::seconds(6);
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut trail = Vec::new();
    for n in 0.. {
        assert!(std::time::Instant::now() < deadline, "timed out: {trail:?}");
        env.sim.expire_files(n % 3 == 2);
        trail.extend(conformance::run_once_at(&env, &cfg, None));
        env.sim.expire_files(false);
        if trail.last().is_some_and(|p| *p >= until) && n >= 3 {
            break;
        }
    }
    drop(writes);
    let report = conformance::report(&env, &trail);
    eprintln!("stripe_reporting, our clock off Stripe's by {skew}: {report}");
    let runs = env.sim.runs();
    for pair in runs.windows(2) {
        assert!(
            pair[1].interval_start >= pair[0].interval_start,
            "a run's interval moved back: {} then {}",
            pair[0].interval_start,
            pair[1].interval_start
        );
    }
    let read = runs_read(&env, UTC_STREAM);
    // Runs whose interval has rows but whose rows never came: their file expired.
    let txns = env.sim.transactions();
    let has_rows = |r: &&tributary_testkit::sim::stripe::SimRun| {
        txns.iter()
            .any(|x| x.created >= r.interval_start && x.created < r.interval_end)
    };
    let expired: Vec<_> = runs
        .iter()
        .filter(has_rows)
        .filter(|r| !read.contains(&r.id))
        .collect();
    assert!(
        !expired.is_empty(),
        "no file expired: the test proves nothing"
    );
    for r in expired {
        let again = runs
            .iter()
            .find(|o| o.interval_start == r.interval_start && read.contains(&o.id));
        let position = trail.last().unwrap().timestamp();
        assert!(
            again.is_some() || r.interval_start >= position,
            "the interval of expired run {} ({}..{}) was never read again",
            r.id,
            r.interval_start,
            r.interval_end
        );
    }
    report
}

#[test]
fn stripe_availability_ahead_or_behind_our_clock_late_or_moving_back_loses_nothing() {
    for skew in [
        ChronoDuration::minutes(-3),
        ChronoDuration::minutes(3),
        ChronoDuration::days(2),
    ] {
        let report = stripe_runs_with_clock_off_by(skew);
        assert!(report.is_clean(), "our clock off by {skew}: {report}");
        assert!(report.below > 100, "{report}");
    }
}

/// The same business under a long-running process with an `interval`
/// schedule, restarted halfway.
#[test]
fn stripe_long_running_and_restarted_loses_nothing() {
    let env = setup(0, 1);
    let begin = DateTime::from_timestamp(env.sim.clock().now().timestamp() - 3, 0).unwrap();
    env.sim
        .set_report_type("balance.summary.1", begin - ChronoDuration::days(1), begin);
    let cfg = env.config_with(
        &Runs::Interval.schedule(chrono_tz::UTC),
        &format!(
            "report_types = [\"balance.summary.1\"]\nstart = \"{}\"",
            begin.to_rfc3339()
        ),
        "",
    );
    let writes = business(&env.sim);
    let now = env.sim.clock().now();
    let trail = conformance::run_until(
        &env,
        &cfg,
        Runs::Interval,
        now + ChronoDuration::seconds(8),
        Some(now + ChronoDuration::seconds(3)),
    );
    drop(writes);
    let report = conformance::report(&env, &trail);
    eprintln!("stripe_reporting, interval runs restarted: {report}");
    assert!(report.is_clean(), "{report}");
    assert!(report.below > 100, "{report}");
}
