//! Trouble stays visible and stays its own (issue 19): long-running
//! connectors with a stream that keeps failing, read through every view
//! (`/health`, `/connectors`, `/metrics`, `tributary status`, the status
//! page in Chromium) while its siblings keep committing.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::{Duration, Instant};
use tributary_testkit::browser::Browser;
use tributary_testkit::cli::*;
use tributary_testkit::sim::rest::{RestSim, RestSimConfig};
use tributary_testkit::sim::StripeSim;

const KEY: &str = "sk_test_51Hx9trouble000000";
const BROKEN: &str = "broken.type.1.UTC";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn stream<'a>(view: &'a Value, connector: &str, name: &str) -> &'a Value {
    view["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == connector)
        .and_then(|c| {
            c["streams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
        })
        .unwrap_or_else(|| panic!("no stream {connector}/{name} in {view:#}"))
}

fn wait_view(proc: &AdminProcess, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = http_get(&format!("{}/status", proc.url), None);
        if status == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            if cond(&v) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}; last view: {v:#}\nlog:\n{}",
                proc.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Stripe connector with two healthy report types and one whose every
/// request answers 500, run every second; data becomes available an hour
/// at a time while the test runs.
fn stripe_connector(ws: &Workspace, sim: &StripeSim) -> String {
    let cfg = ws.write(
        "stripe.toml",
        &format!(
            r#"name = "stripe"
schedule = {{ interval = "1s" }}
[source]
type = "stripe_reporting"
api_key = "${{STRIPE_API_KEY}}"
base_url = "{base}"
files_url = "{base}"
report_types = ["balance.summary.1", "payouts.itemized.3", "broken.type.1"]
key_columns = {{ "balance.summary.1" = ["balance_transaction_id"], "payouts.itemized.3" = ["balance_transaction_id"] }}
poll_interval = "20ms"
poll_interval_max = "50ms"
[sink]
type = "file"
dir = "out"
[runtime]
max_retries = 3
backoff_initial = "10ms"
backoff_max = "50ms"
flush_interval = "50ms"
max_staleness = "1h"
"#,
            base = sim.base_url()
        ),
    );
    cfg.to_str().unwrap().to_string()
}

/// Issue 19 items 3 and 4: one stream that can never succeed, two that
/// can. The healthy ones keep committing; the failing one is `failed` in
/// every view in every sample over 60 s (about one sample a second, many
/// retry cycles of the failing stream), `/health` is 503 naming it
/// throughout and `tributary status` exits 5. Before, the
/// failing stream stopped the whole connector.
#[test]
fn a_permanently_failing_stream_stays_failed_everywhere_while_its_siblings_commit() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(StripeSim::start(KEY));
    for id in ["balance.summary.1", "payouts.itemized.3", "broken.type.1"] {
        sim.set_report_type(id, t("2024-01-01T00:00:00Z"), t("2024-01-01T06:00:00Z"));
    }
    sim.add_transactions(
        1,
        2_000,
        t("2024-01-01T00:00:00Z"),
        chrono::Duration::minutes(10),
    );
    sim.break_report_type("broken.type.1");
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = stripe_connector(&ws, &sim);
    let mut cmd = ws.cmd(&["run", &cfg, "--admin-addr", "127.0.0.1:0"]);
    cmd.env("STRIPE_API_KEY", KEY);
    let proc = AdminProcess::spawn(cmd);
    let addr = proc.url.trim_start_matches("http://").to_string();

    let committed = |v: &Value| -> u64 {
        ["balance.summary.1.UTC", "payouts.itemized.3.UTC"]
            .iter()
            .map(|s| {
                stream(v, "stripe", s)["records_committed"]
                    .as_u64()
                    .unwrap()
            })
            .sum()
    };
    let first = wait_view(&proc, "the broken stream to fail once", |v| {
        stream(v, "stripe", BROKEN)["state"] == "failed" && committed(v) > 0
    });
    let mut hour = 6;
    let mut last_committed = committed(&first);
    let mut increases = 0;
    let start = Instant::now();
    let mut samples_taken = 0;
    let broken_retries = |v: &Value| stream(v, "stripe", BROKEN)["retries"].as_u64().unwrap();
    let retries_before = broken_retries(&first);
    let mut retries_after = retries_before;
    // At least 60 s and at least 20 samples, however slow the machine.
    while start.elapsed() < Duration::from_secs(60) || samples_taken < 20 {
        // An hour more data becomes available.
        hour += 1;
        sim.set_data_available_end(t("2024-01-01T00:00:00Z") + chrono::Duration::hours(hour));

        let view = http_json(&format!("{}/status", proc.url), None);
        let broken = stream(&view, "stripe", BROKEN);
        assert_eq!(
            broken["state"], "failed",
            "sample {samples_taken}: {broken:#}"
        );
        let reason = broken["failed_reason"].as_str().unwrap();
        assert!(
            reason.contains(
                "stream `broken.type.1.UTC`: gave up after 3 consecutive retryable errors"
            ),
            "{reason}"
        );
        for healthy in ["balance.summary.1.UTC", "payouts.itemized.3.UTC"] {
            let s = stream(&view, "stripe", healthy);
            assert!(
                !["failed", "stuck", "stale"].contains(&s["state"].as_str().unwrap()),
                "{s:#}"
            );
        }
        assert_eq!(view["connectors"][0]["phase"], "running");
        retries_after = broken_retries(&view);
        let now = committed(&view);
        assert!(now >= last_committed);
        if now > last_committed {
            increases += 1;
        }
        last_committed = now;

        let (status, body) = http_get(&format!("{}/health", proc.url), None);
        assert_eq!(status, 503, "{body}");
        let health: Value = serde_json::from_str(&body).unwrap();
        let failed: Vec<&str> = health["failed"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["stream"].as_str())
            .collect();
        assert_eq!(failed, [BROKEN], "{health:#}");

        let (_, text) = http_get(&format!("{}/metrics", proc.url), None);
        let m = metric_samples(&text);
        let state = |s: &str, st: &str| {
            m[&format!(
                "tributary_stream_state{{connector=\"stripe\",stream=\"{s}\",state=\"{st}\"}}"
            )]
        };
        assert_eq!(state(BROKEN, "failed"), 1.0, "sample {samples_taken}");
        assert_eq!(state(BROKEN, "running") + state(BROKEN, "retrying"), 0.0);

        let o = ws.run(&["status", "--admin-addr", &addr]);
        assert_exit(&o, 5);
        let table = stdout(&o);
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("stripe/{BROKEN} ")))
            .unwrap_or_else(|| panic!("{table}"));
        assert_eq!(row.split_whitespace().nth(1), Some("failed"), "{row}");
        assert!(
            stderr(&o).contains(&format!("stripe/{BROKEN} (failed)")),
            "{}",
            stderr(&o)
        );
        samples_taken += 1;
        std::thread::sleep(Duration::from_millis(700));
    }
    // It was tried again at its scheduled runs (each gives up after 3 retries).
    assert!(
        retries_after >= retries_before + 3 * 5,
        "retries {retries_before} -> {retries_after}"
    );
    assert!(
        increases >= 5,
        "the healthy streams committed in only {increases} samples"
    );
    // Every row the healthy streams committed is there once, in order.
    let log = proc.log();
    assert!(
        log.contains("the other streams of the connector go on"),
        "{log}"
    );
    assert_eq!(proc.stop(), Some(0));
    for s in ["balance.summary.1.UTC", "payouts.itemized.3.UTC"] {
        let got: Vec<String> = ws
            .output("out", &format!("stripe.{s}"))
            .iter()
            .map(|v| v["balance_transaction_id"].as_str().unwrap().to_string())
            .collect();
        let mut sorted = got.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "no duplicates in {s}");
        assert!(got.len() as u64 >= 36, "{s}: {} rows", got.len());
    }
}

/// Issue 19 item 6: after failed runs the status cursor showed the failed
/// run's `interval_end` and a fresh `last_success_at`. Now the cursor is
/// the committed position and `last_success_at` stays unset.
#[test]
fn after_failed_runs_the_status_shows_the_committed_position_and_no_success() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(StripeSim::start(KEY));
    sim.set_report_type(
        "balance.summary.1",
        t("2024-01-01T00:00:00Z"),
        t("2024-01-04T00:00:00Z"),
    );
    sim.add_transactions(1, 50, t("2024-01-01T00:00:00Z"), chrono::Duration::hours(1));
    sim.fail_next_runs(
        "balance.summary.1",
        100,
        "Internal error while generating the report",
    );
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = ws.write(
        "stripe.toml",
        &format!(
            r#"name = "stripe"
[source]
type = "stripe_reporting"
api_key = "${{STRIPE_API_KEY}}"
base_url = "{base}"
files_url = "{base}"
report_types = ["balance.summary.1"]
poll_interval = "20ms"
failure_backoff = "20ms"
max_consecutive_failures = 2
[sink]
type = "file"
dir = "out"
[runtime]
flush_interval = "50ms"
"#,
            base = sim.base_url()
        ),
    );
    let mut cmd = ws.cmd(&["run", cfg.to_str().unwrap(), "--admin-addr", "127.0.0.1:0"]);
    cmd.env("STRIPE_API_KEY", KEY);
    let proc = AdminProcess::spawn(cmd);
    let view = wait_view(&proc, "the stream to be stuck", |v| {
        stream(v, "stripe", "balance.summary.1.UTC")["state"] == "stuck"
    });
    let s = stream(&view, "stripe", "balance.summary.1.UTC");
    assert_eq!(s["cursor"], "2024-01-01T00:00:00Z", "{s:#}");
    assert_eq!(s["last_success_at"], Value::Null, "{s:#}");
    assert!(
        s["stuck_reason"]
            .as_str()
            .unwrap()
            .starts_with("2 attempts in a row gave up"),
        "{s:#}"
    );
    let o = ws.run(&[
        "status",
        "--admin-addr",
        proc.url.trim_start_matches("http://"),
    ]);
    assert_exit(&o, 5);
    assert_eq!(proc.stop(), Some(0));
}

fn rest_sim(rt: &tokio::runtime::Runtime) -> RestSim {
    rt.block_on(RestSim::start_with(RestSimConfig {
        items: 50,
        ..RestSimConfig::default()
    }))
}

fn http_connector(ws: &Workspace, sim: &RestSim, runtime: &str) -> String {
    let cfg = ws.write(
        "api.toml",
        &format!(
            r#"name = "api"
schedule = {{ interval = "1s" }}
[source]
type = "http"
base_url = "{}"
[source.streams.items]
path = "/items/offset"
records = "data"
pagination = {{ type = "offset", page_size = 100 }}
[sink]
type = "file"
dir = "out"
[runtime]
backoff_initial = "100ms"
backoff_max = "200ms"
flush_interval = "50ms"
{runtime}
"#,
            sim.base_url()
        ),
    );
    cfg.to_str().unwrap().to_string()
}

/// Issue 19 items 4 and 5: an API answering 503 for a long time, with
/// `max_staleness = "3s"`. Before, every failed attempt rewrote the
/// checkpoint (its retry count), which counted as an advance: `/health`
/// stayed 200 and the stream showed a green RUNNING with an age near 0.
/// Now its age runs from its last real advance: it turns stale, and stays
/// stale in every view while it keeps retrying, until the API recovers.
#[test]
fn an_api_answering_503_turns_the_stream_stale_and_it_stays_stale_while_retrying() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rest_sim(&rt);
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = http_connector(&ws, &sim, "max_retries = 100000\nmax_staleness = \"3s\"");
    let proc = AdminProcess::spawn(ws.cmd(&["run", &cfg, "--admin-addr", "127.0.0.1:0"]));
    let addr = proc.url.trim_start_matches("http://").to_string();
    wait_view(&proc, "a first run", |v| {
        stream(v, "api", "items")["records_committed"].as_u64() >= Some(50)
    });
    sim.fail_next(1_000_000, 503, None);
    wait_view(&proc, "the stream to turn stale", |v| {
        stream(v, "api", "items")["state"] == "stale"
    });
    let start = Instant::now();
    let mut retries_seen = Vec::new();
    while start.elapsed() < Duration::from_secs(8) {
        let (status, body) = http_get(&format!("{}/health", proc.url), None);
        assert_eq!(status, 503, "{body}");
        let health: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["stale"][0]["stream"], "items", "{health:#}");
        assert!(
            health["stale"][0]["checkpoint_age_seconds"]
                .as_u64()
                .unwrap()
                >= 3
        );
        let view = http_json(&format!("{}/status", proc.url), None);
        let s = stream(&view, "api", "items");
        assert_eq!(s["state"], "stale", "{s:#}");
        assert!(s["last_error"].as_str().unwrap().contains("503"), "{s:#}");
        assert!(s["last_error_at"].is_string(), "{s:#}");
        retries_seen.push(s["retries"].as_u64().unwrap());
        let (_, text) = http_get(&format!("{}/metrics", proc.url), None);
        let m = metric_samples(&text);
        assert_eq!(
            m["tributary_stream_state{connector=\"api\",stream=\"items\",state=\"stale\"}"],
            1.0
        );
        assert_eq!(
            m["tributary_stream_stale{connector=\"api\",stream=\"items\"}"],
            1.0
        );
        assert_exit(&ws.run(&["status", "--admin-addr", &addr]), 5);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        retries_seen.last() > retries_seen.first(),
        "it kept retrying: {retries_seen:?}"
    );
    // The liveness probe stays 200 throughout: a restart would not help.
    assert_eq!(
        http_json(&format!("{}/live", proc.url), None)["status"],
        "alive"
    );
    // The API recovers: fresh again.
    sim.clear_faults();
    wait_view(&proc, "the stream to recover", |v| {
        let s = stream(v, "api", "items");
        s["state"] != "stale" && s["state"] != "retrying"
    });
    let start = Instant::now();
    while http_get(&format!("{}/health", proc.url), None).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "health stayed 503"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_exit(&ws.run(&["status", "--admin-addr", &addr]), 0);
    assert_eq!(proc.stop(), Some(0));
}

/// The status page with a failed stream (red, its error and when) and a
/// retrying one (amber, its last error and when), shown before the
/// healthy ones, with dead letters, version and uptime.
#[test]
fn the_status_page_in_chromium_shows_the_failed_and_retrying_streams_first() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stripe = rt.block_on(StripeSim::start(KEY));
    for id in ["balance.summary.1", "payouts.itemized.3", "broken.type.1"] {
        stripe.set_report_type(id, t("2024-01-01T00:00:00Z"), t("2024-01-02T00:00:00Z"));
    }
    stripe.add_transactions(
        1,
        100,
        t("2024-01-01T00:00:00Z"),
        chrono::Duration::minutes(10),
    );
    stripe.break_report_type("broken.type.1");
    let rest = rest_sim(&rt);
    rest.fail_next(1_000_000, 503, None);
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let a = stripe_connector(&ws, &stripe);
    let b = http_connector(&ws, &rest, "max_retries = 100000");
    let mut cmd = ws.cmd(&["run", &a, &b, "--admin-addr", "127.0.0.1:0"]);
    cmd.env("STRIPE_API_KEY", KEY);
    let proc = AdminProcess::spawn(cmd);
    let browser = Browser::start();
    browser.goto(&format!("{}/", proc.url));
    let rows = |b: &Browser| b.texts("#streams tbody tr");
    browser.wait_for(
        Duration::from_secs(60),
        "a failed and a retrying stream",
        |b| {
            let r = rows(b);
            r.iter().any(|l| l.contains(BROKEN) && l.contains("FAILED"))
                && r.iter()
                    .any(|l| l.starts_with("items") && l.contains("RETRYING"))
        },
    );
    let r = rows(&browser);
    // Trouble first within its connector: the failed stream comes right
    // after the stripe connector's header row.
    let stripe_head = r.iter().position(|l| l.starts_with("stripe (")).unwrap();
    assert!(r[stripe_head + 1].starts_with(BROKEN), "{r:#?}");
    let failed = &r[stripe_head + 1];
    assert!(
        failed.contains("failed: connector `stripe`, stream `broken.type.1.UTC`: gave up after 3 consecutive retryable errors"),
        "{failed}"
    );
    assert!(failed.contains(" UTC)"), "the error's time: {failed}");
    let retrying = r.iter().find(|l| l.starts_with("items")).unwrap();
    assert!(retrying.contains("retry #"), "{retrying}");
    assert!(retrying.contains("503"), "{retrying}");
    assert!(retrying.contains(" UTC)"), "the error's time: {retrying}");
    let color = |sel: &str| {
        browser.eval(&format!(
            "return getComputedStyle(document.querySelector('{sel}')).backgroundColor"
        ))
    };
    assert_eq!(
        color(&format!("tr[data-stream=\"stripe/{BROKEN}\"] .state")),
        "rgb(192, 38, 45)"
    );
    assert_eq!(
        color("tr[data-stream=\"api/items\"] .state"),
        "rgb(244, 185, 66)"
    );
    let header = browser.texts("#meta").pop().unwrap_or_default();
    assert!(
        header.starts_with(&format!("tributary {}, up ", env!("CARGO_PKG_VERSION"))),
        "{header}"
    );
    assert!(
        header.contains("1 failed, 0 stuck, 0 stale, 1 retrying"),
        "{header}"
    );
    let trouble = browser.texts("#trouble").pop().unwrap_or_default();
    assert!(
        trouble.contains(&format!("stripe/{BROKEN}: failed")),
        "{trouble}"
    );
    // Per-stream throughput, lag and dead letters have their columns.
    let heads = browser.texts("#streams thead th");
    for h in ["Throughput", "Cursor lag", "Dead letters"] {
        assert!(heads.iter().any(|x| x == h), "{heads:?}");
    }
    drop(browser);
    assert_eq!(proc.stop(), Some(0));
}
