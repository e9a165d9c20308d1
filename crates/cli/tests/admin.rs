//! The admin server end to end: the real binary with `--admin-addr
//! 127.0.0.1:0`, against the ChargeOver simulator and the generator, read
//! over HTTP, through `tributary status`, and in a headless Chromium.

use chrono::{Duration as ChronoDuration, NaiveDateTime, Utc};
use serde_json::Value;
use std::time::Duration;
use tributary_testkit::browser::Browser;
use tributary_testkit::cli::*;
use tributary_testkit::sim::chargeover::ChargeOverSim;

const PASSWORD: &str = "s3cret-Pa55word-adm1n";
const TOKEN: &str = "admin-token-5b1d0e77c2";

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn wait_json(url: &str, token: Option<&str>, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let start = std::time::Instant::now();
    loop {
        let (status, body) = http_get(url, token);
        if status == 200 {
            last = serde_json::from_str(&body).unwrap_or(Value::Null);
            if cond(&last) {
                return last;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}; last {url}: {last:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_chargeover_run_reports_exact_metrics_and_status_behind_a_token_without_secrets() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(ChargeOverSim::start("api-user", PASSWORD));
    sim.generate(
        "customer",
        1_200,
        dt("2024-01-01 00:00:00"),
        ChronoDuration::hours(1),
    );
    // Three throttled responses: the first answers the request that reads
    // the server's clock (its `Date` is enough, so it is not retried), the
    // next two the first page.
    sim.fail_next(3, 429, Some(0));
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = ws.write(
        "billing.toml",
        &format!(
            r#"name = "billing"
[source]
type = "chargeover"
base_url = "{}"
username = "api-user"
password = "${{CHARGEOVER_PASSWORD}}"
entities = ["customer"]
[source.initial_datetime]
customer = "2024-01-01 00:00:00"
[sink]
type = "file"
dir = "out"
[runtime]
max_staleness = "1h"
backoff_initial = "10ms"
backoff_max = "100ms"
"#,
            sim.base_url()
        ),
    );
    let token_file = ws.write("admin.token", &format!("{TOKEN}\n"));
    let mut cmd = ws.cmd(&[
        "run",
        cfg.to_str().unwrap(),
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ]);
    cmd.env("CHARGEOVER_PASSWORD", PASSWORD)
        .env("TRIBUTARY_CLOCK_START", "2024-03-01T00:00:00Z");
    let proc = AdminProcess::spawn(cmd);
    let url = |path: &str| format!("{}{path}", proc.url);

    // The initial load ends and is committed; the stream waits for the next midnight.
    let view = wait_json(
        &url("/status"),
        Some(TOKEN),
        "the initial load to be committed",
        |v| {
            let s = &v["connectors"][0]["streams"][0];
            s["status"]["state"] == "scheduled" && s["records_committed"] == 1_200
        },
    );
    let c = &view["connectors"][0];
    assert_eq!(
        (&c["name"], &c["source"], &c["sink"], &c["phase"]),
        (
            &Value::from("billing"),
            &Value::from("chargeover"),
            &Value::from("file"),
            &Value::from("running")
        )
    );
    assert_eq!(c["max_staleness_seconds"], 3600);
    let requests = sim.requests();
    let ok = requests.iter().filter(|r| r.status == 200).count();
    assert_eq!(requests.iter().filter(|r| r.status == 429).count(), 3);
    assert_eq!(
        c["http_responses"],
        serde_json::json!({"200": ok, "429": 3})
    );
    let s = &c["streams"][0];
    assert_eq!(s["name"], "customer");
    assert_eq!(s["state"], "idle");
    assert_eq!(s["next_run"], "2024-03-02T00:00:00Z");
    assert_eq!(s["records_read"], 1_200);
    assert_eq!(s["records_committed"], 1_200);
    assert_eq!(s["retries"], 2);
    assert_eq!(
        s["retries_by_reason"],
        serde_json::json!({"source_error": 0, "throttled": 2, "sink_error": 0})
    );
    assert_eq!(s["bad_records"], 0);
    assert_eq!(s["position"], "incremental, caught up");
    assert!(
        s["cursor"]
            .as_str()
            .unwrap()
            .starts_with("2024-02-29T23:59:3"),
        "the run's start less the default 30 s lag: {s}"
    );
    assert!(s["last_success_at"].is_string(), "{s}");
    assert_eq!(s["stuck_reason"], Value::Null);
    // One connector alone, and an unknown one.
    let one = http_json(&url("/status/billing"), Some(TOKEN));
    assert_eq!(one["streams"][0]["records_committed"], 1_200);
    let (status, body) = http_get(&url("/status/nope"), Some(TOKEN));
    assert_eq!(status, 404);
    assert!(body.contains("Connector nope not found"), "{body}");

    // Prometheus: exact counters after this known run.
    let (status, text) = http_get(&url("/metrics"), Some(TOKEN));
    assert_eq!(status, 200, "{text}");
    let m = metric_samples(&text);
    let l = "{connector=\"billing\",stream=\"customer\"}";
    let bytes: usize = sim
        .records("customer")
        .iter()
        .map(|r| r.to_string().len())
        .sum();
    for (name, want) in [
        (format!("tributary_records_read_total{l}"), 1_200.0),
        (format!("tributary_records_written_total{l}"), 1_200.0),
        (format!("tributary_records_committed_total{l}"), 1_200.0),
        (format!("tributary_bytes_read_total{l}"), bytes as f64),
        (
            "tributary_retries_total{connector=\"billing\",stream=\"customer\",reason=\"throttled\"}".into(),
            2.0,
        ),
        (
            "tributary_retries_total{connector=\"billing\",stream=\"customer\",reason=\"source_error\"}".into(),
            0.0,
        ),
        (
            "tributary_bad_records_total{connector=\"billing\",stream=\"customer\",policy=\"skip\"}".into(),
            0.0,
        ),
        (
            "tributary_http_responses_total{connector=\"billing\",status=\"200\"}".into(),
            ok as f64,
        ),
        (
            "tributary_http_responses_total{connector=\"billing\",status=\"429\"}".into(),
            3.0,
        ),
        (
            "tributary_stream_state{connector=\"billing\",stream=\"customer\",state=\"idle\"}".into(),
            1.0,
        ),
        (format!("tributary_stream_stale{l}"), 0.0),
        (
            "tributary_max_staleness_seconds{connector=\"billing\"}".into(),
            3600.0,
        ),
    ] {
        assert_eq!(m.get(&name), Some(&want), "{name} in\n{text}");
    }
    // Every batch was timed once.
    assert_eq!(
        m[&format!("tributary_poll_duration_seconds_count{l}")],
        m[&format!("tributary_batches_total{l}")]
    );
    assert!(m[&format!("tributary_checkpoint_commits_total{l}")] >= 1.0);
    let lag = m[&format!("tributary_cursor_lag_seconds{l}")];
    assert!((0.0..600.0).contains(&lag), "cursor lag {lag}");
    assert!(m.contains_key(&format!("tributary_checkpoint_age_seconds{l}")));
    assert!(m.contains_key("tributary_sink_flush_duration_seconds_count{connector=\"billing\"}"));
    // No rate limit configured: no waits reported.
    assert!(!text.contains("tributary_rate_limit_waits_total"), "{text}");

    // The token guards the data, not the probes or the (data-free) page.
    for path in [
        "/metrics",
        "/status",
        "/status/billing",
        "/connectors",
        "/connectors/billing/config",
    ] {
        assert_eq!(http_get(&url(path), None).0, 401, "{path} without a token");
        assert_eq!(
            http_get(&url(path), Some("wrong-token")).0,
            401,
            "{path} with a wrong token"
        );
    }
    let health = http_json(&url("/health"), None);
    assert_eq!(health["status"], "ok");
    assert_eq!(http_json(&url("/ready"), None)["ready"], true);
    let (status, page) = http_get(&url("/"), None);
    assert_eq!(status, 200);
    assert!(page.contains("<title>tributary status</title>"));

    // `tributary status`: the same table in the terminal.
    let addr = proc.url.trim_start_matches("http://").to_string();
    let o = ws.run(&[
        "status",
        "--admin-addr",
        &addr,
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let table = stdout(&o);
    assert!(
        table.starts_with("connector `billing` (chargeover → file): running\n"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("billing/customer "))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["billing/customer", "idle", "1200"], "{row}");
    assert!(row.contains("2024-03-02T00:00:00Z"), "{row}");
    assert!(row.ends_with("incremental, caught up"), "{row}");
    let o = ws.run(&["status", "--admin-addr", &addr]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("requires the token"), "{}", stderr(&o));
    let o = ws.run(&["status", "--admin-addr", "127.0.0.1:1"]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("no tributary admin server answers at 127.0.0.1:1"),
        "{}",
        stderr(&o)
    );

    // Secrets appear nowhere: not in any response, not in the log.
    for path in [
        "/",
        "/health",
        "/ready",
        "/metrics",
        "/status",
        "/status/billing",
        "/connectors?expand=info&expand=status",
        "/connectors/billing",
        "/connectors/billing/config",
        "/connectors/billing/status",
    ] {
        let (_, body) = http_get(&url(path), Some(TOKEN));
        assert!(!body.contains(PASSWORD), "{path} shows the password");
        assert!(!body.contains(TOKEN), "{path} shows the admin token");
    }
    let log = proc.log();
    assert_eq!(proc.stop(), Some(0));
    assert!(!log.contains(PASSWORD) && !log.contains(TOKEN), "{log}");
}

/// A generator connector whose `orders` stream committed its five records a
/// day ago (by the runtime's clock) and has nothing new, while `users` keeps
/// flowing: `orders` is older than `max_staleness = "1h"`.
fn stale_orders(ws: &Workspace, extra_args: &[&str]) -> AdminProcess {
    let cfg = ws.write(
        "demo.toml",
        r#"name = "demo"
schedule = { interval = "1h" }
[source]
type = "generator"
[source.streams.users]
record_type = "user"
rate = 50
[source.streams.orders]
record_type = "order"
total = 5
[sink]
type = "file"
dir = "out"
[runtime]
max_staleness = "1h"
flush_interval = "200ms"
"#,
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let mut args = vec!["run", cfg.as_str(), "--admin-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra_args);
    let first = AdminProcess::spawn(ws.cmd(&args));
    wait_json(
        &format!("{}/status", first.url),
        Some(TOKEN),
        "orders to commit its five records",
        |v| {
            v["connectors"][0]["streams"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["name"] == "orders" && s["records_committed"] == 5)
            })
        },
    );
    assert_eq!(first.stop(), Some(0));
    // The next start is a day later on the runtime's clock.
    let tomorrow = (Utc::now() + ChronoDuration::days(1)).to_rfc3339();
    let mut cmd = ws.cmd(&args);
    cmd.env("TRIBUTARY_CLOCK_START", &tomorrow);
    AdminProcess::spawn(cmd)
}

fn stale_streams(health: &Value) -> Vec<String> {
    health["stale"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    format!(
                        "{}/{}",
                        s["connector"].as_str().unwrap(),
                        s["stream"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn health_turns_unhealthy_naming_a_stream_older_than_max_staleness() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let token_file = ws.write("admin.token", TOKEN);
    let proc = stale_orders(&ws, &["--admin-token-file", token_file.to_str().unwrap()]);
    // Until `users` commits in this run its restored checkpoint is a day
    // old too; then only `orders` is stale.
    let url = format!("{}/health", proc.url);
    let start = std::time::Instant::now();
    let (status, health) = loop {
        let (status, body) = http_get(&url, None);
        let health: Value = serde_json::from_str(&body).unwrap();
        if stale_streams(&health) == ["demo/orders"] {
            break (status, health);
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unhealthy");
    let orders = &health["stale"][0];
    assert_eq!(orders["max_staleness_seconds"], 3600);
    let age = orders["checkpoint_age_seconds"].as_u64().unwrap();
    assert!((86_400..86_400 + 600).contains(&age), "{health}");
    assert!(
        orders["reason"]
            .as_str()
            .unwrap()
            .starts_with("checkpoint has not advanced for 1d00h (max_staleness 1h00m)"),
        "{health}"
    );
    assert_eq!(health["stuck"], serde_json::json!([]));
    assert_eq!(health["failed"], serde_json::json!([]));

    // The status JSON, the metrics and the terminal table agree.
    let view = http_json(&format!("{}/status", proc.url), Some(TOKEN));
    let streams = view["connectors"][0]["streams"].as_array().unwrap();
    let orders = streams.iter().find(|s| s["name"] == "orders").unwrap();
    assert_eq!(orders["state"], "stale");
    assert_eq!(orders["status"]["state"], "scheduled");
    let users = streams.iter().find(|s| s["name"] == "users").unwrap();
    assert_eq!(users["state"], "running");
    let (_, text) = http_get(&format!("{}/metrics", proc.url), Some(TOKEN));
    let m = metric_samples(&text);
    assert_eq!(
        m["tributary_stream_stale{connector=\"demo\",stream=\"orders\"}"],
        1.0
    );
    assert_eq!(
        m["tributary_stream_state{connector=\"demo\",stream=\"orders\",state=\"stale\"}"],
        1.0
    );
    let o = ws.run(&[
        "status",
        "--admin-addr",
        proc.url.trim_start_matches("http://"),
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ]);
    // A stale stream needs a person: `status` says so in its exit code.
    assert_exit(&o, 5);
    assert!(
        stderr(&o).contains("1 stream(s) failed, stuck or stale: demo/orders (stale)"),
        "{}",
        stderr(&o)
    );
    let table = stdout(&o);
    let row = table
        .lines()
        .find(|l| l.starts_with("demo/orders "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains(" stale "), "{row}");
    assert!(
        row.contains("checkpoint has not advanced for 1d00h"),
        "{row}"
    );
    assert_eq!(proc.stop(), Some(0));
}

#[test]
fn the_status_page_in_chromium_shows_streams_refreshing_and_the_stale_one_first() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let token_file = ws.write("admin.token", TOKEN);
    let proc = stale_orders(&ws, &["--admin-token-file", token_file.to_str().unwrap()]);
    let browser = Browser::start();
    // The page needs the token for its data: without it, it asks for one.
    browser.goto(&format!("{}/", proc.url));
    browser.wait_for(Duration::from_secs(30), "the token form", |b| {
        b.eval("return !document.getElementById('login').hidden") == Value::Bool(true)
    });
    browser.goto(&format!("{}/#token={TOKEN}", proc.url));
    let row = |b: &Browser, stream: &str| {
        b.texts(&format!("tr[data-stream=\"demo/{stream}\"]"))
            .pop()
            .unwrap_or_default()
    };
    browser.wait_for(
        Duration::from_secs(60),
        "orders shown stale and users running",
        |b| {
            let orders = row(b, "orders");
            let users = row(b, "users");
            orders.contains("STALE")
                && orders.contains("checkpoint has not advanced for 1d00h")
                && users.contains("RUNNING")
        },
    );
    let orders = row(&browser, "orders");
    // Records, checkpoint age and the next run, as a person reads them.
    let cells: Vec<&str> = orders.split('\t').map(str::trim).collect();
    assert_eq!(cells[0], "orders", "{orders:?}");
    assert_eq!(cells[1], "STALE", "{orders:?}");
    assert!(cells[4].starts_with("1d00h"), "{orders:?}");
    assert!(cells[7].ends_with(" UTC"), "next run: {orders:?}");
    let header = browser.texts("#meta").pop().unwrap_or_default();
    assert!(
        header.contains("1 connector(s), 2 stream(s): 0 failed, 0 stuck, 1 stale, 0 retrying"),
        "{header}"
    );
    let connector = browser.texts("tr.connector").pop().unwrap_or_default();
    assert!(
        connector.contains("demo (generator → file) — running"),
        "{connector}"
    );

    // It refreshes itself: the users' committed count keeps growing.
    let count = |b: &Browser| -> u64 {
        row(b, "users")
            .split('\t')
            .nth(2)
            .unwrap_or("0")
            .trim()
            .replace(',', "")
            .parse()
            .unwrap_or(0)
    };
    let before = count(&browser);
    browser.wait_for(Duration::from_secs(30), "the users count to grow", |b| {
        count(b) > before
    });
    let page = browser.texts("body").join("\n");
    assert!(!page.contains(TOKEN), "the page shows the token");
    drop(browser);
    assert_eq!(proc.stop(), Some(0));
}
