//! `/metrics` through the binary, read as Prometheus reads it: the format
//! follows the scraper's `Accept`, and both formats parse with the reference
//! parsers (Python's `prometheus_client`, `promtool check metrics`), which
//! `scripts/setup` installs under `$TRIBUTARY_TOOLS`.

use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tributary_testkit::cli::*;

const CFG: &str = include_str!("fixtures/demo.toml");

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Runs `program args` with `input` on stdin: (exit code, stdout, stderr).
fn pipe(program: &PathBuf, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The exposition as `prometheus_client`'s parser for `module` sees it:
/// `{family: {"type": T, "samples": [[name, labels, value], ...]}}`.
fn python_parse(module: &str, text: &str) -> Value {
    let script = format!(
        r#"
import json, sys
from prometheus_client.{module} import text_string_to_metric_families
out = {{}}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {{"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}}
print(json.dumps(out))
"#
    );
    let (code, stdout, stderr) = pipe(&tool("venv/bin/python"), &["-c", &script], text);
    assert_eq!(
        code, 0,
        "prometheus_client.{module} rejected:\n{stderr}\n{text}"
    );
    serde_json::from_str(&stdout).unwrap()
}

fn sample(families: &Value, family: &str, name: &str, labels: Value) -> Option<f64> {
    families[family]["samples"]
        .as_array()?
        .iter()
        .find(|s| s[0] == name && s[1] == labels)
        .and_then(|s| s[2].as_f64())
}

#[test]
fn metrics_follow_accept_and_parse_with_the_reference_parsers_in_both_formats() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = ws.write("demo.toml", CFG);
    let cmd = ws.cmd(&[
        "run",
        cfg.to_str().unwrap(),
        "--no-progress",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    let proc = AdminProcess::spawn(cmd);
    let url = format!("{}/metrics", proc.url);
    let committed = "tributary_records_committed_total{connector=\"demo\",stream=\"users\"}";
    wait_until(Duration::from_secs(90), "25 users committed", || {
        metric_samples(&http_get(&url, None).1).get(committed) == Some(&25.0)
    });

    let openmetrics = http_call("GET", &url, None, &[("accept", PROMETHEUS_ACCEPT)], None);
    assert_eq!(openmetrics.status, 200);
    assert_eq!(
        openmetrics.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(openmetrics.body.lines().last(), Some("# EOF"));
    assert!(openmetrics
        .body
        .contains("# TYPE tributary_records_committed counter\n"));

    for accept in [Some("text/plain;version=0.0.4"), Some("*/*"), None] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let text = http_call("GET", &url, None, &headers, None);
        assert_eq!(
            text.content_type, "text/plain; version=0.0.4; charset=utf-8",
            "Accept: {accept:?}"
        );
        assert!(!text.body.contains("# EOF"), "{}", text.body);
        assert!(text
            .body
            .contains("# TYPE tributary_records_committed_total counter\n"));
    }
    let text = http_call(
        "GET",
        &url,
        None,
        &[("accept", "text/plain;version=0.0.4")],
        None,
    )
    .body;

    let labels = serde_json::json!({"connector": "demo", "stream": "users"});
    // The classic parser names a counter's family without `_total`, the
    // OpenMetrics one too: both must see the same counter with its value.
    let classic = python_parse("parser", &text);
    let om = python_parse("openmetrics.parser", &openmetrics.body);
    for (what, families) in [("text 0.0.4", &classic), ("OpenMetrics", &om)] {
        assert_eq!(
            families["tributary_records_committed"]["type"], "counter",
            "{what}: {families:#}"
        );
        assert_eq!(
            sample(
                families,
                "tributary_records_committed",
                "tributary_records_committed_total",
                labels.clone()
            ),
            Some(25.0),
            "{what}"
        );
        assert_eq!(
            families["tributary_poll_duration_seconds"]["type"], "histogram",
            "{what}"
        );
        assert_eq!(families["process_cpu_seconds"]["type"], "counter", "{what}");
        let cpu = sample(
            families,
            "process_cpu_seconds",
            "process_cpu_seconds_total",
            serde_json::json!({}),
        );
        assert!(cpu.is_some_and(|c| c > 0.0), "{what}: cpu {cpu:?}");
        for gauge in [
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
        ] {
            let v = sample(families, gauge, gauge, serde_json::json!({}));
            assert!(v.is_some_and(|v| v >= 1.0), "{what}: {gauge} = {v:?}");
        }
        let start = sample(
            families,
            "process_start_time_seconds",
            "process_start_time_seconds",
            serde_json::json!({}),
        )
        .unwrap();
        let now = chrono::Utc::now().timestamp() as f64;
        assert!(
            (now - 600.0..=now + 5.0).contains(&start),
            "{what}: started at {start}, now {now}"
        );
        assert_eq!(
            sample(
                families,
                "tributary_build_info",
                "tributary_build_info",
                serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "arch": std::env::consts::ARCH,
                    "os": std::env::consts::OS,
                })
            ),
            Some(1.0),
            "{what}"
        );
    }

    // promtool reads the classic format and lints names and help texts.
    let (code, stdout, stderr) = pipe(&tool("bin/promtool"), &["check", "metrics"], &text);
    assert_eq!(code, 0, "promtool check metrics:\n{stdout}{stderr}\n{text}");
    proc.stop();
}
