//! Every exit code docs/cli.md documents, each produced through the binary
//! the way a user meets it, and `--log-format json` errors.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::sim::rest::{RestAuth, RestSim, RestSimConfig};

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

const GEN: &str = "name = \"g\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\ntotal = 50\n[sink]\ntype = \"file\"\ndir = \"out\"\n";

/// The codes of docs/cli.md's table, so that a code added there without a
/// case here fails this test.
fn documented_codes() -> Vec<i32> {
    let doc = std::fs::read_to_string(repo_root().join("docs/cli.md")).unwrap();
    let table = &doc[doc.find("## Exit codes").expect("exit code section")..];
    table
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn every_documented_exit_code_through_the_binary() {
    let mut seen = Vec::new();
    let ws = workspace();
    let cfg = ws.write("g.toml", GEN);
    let cfg = cfg.to_str().unwrap();

    // 0: success.
    let o = ws.run(&["run", "--once", "--no-progress", cfg]);
    assert_exit(&o, 0);
    seen.push(0);

    // 1: `state get` finds no checkpoint.
    let o = ws.run(&["state", "get", cfg, "--stream", "nosuch"]);
    assert_exit(&o, 1);
    seen.push(1);

    // 2: a bad config, and an unsupported `state reset --to`.
    let bad = ws.write("bad.toml", &GEN.replace("total = 50", "total = \"many\""));
    let o = ws.run(&["check", bad.to_str().unwrap()]);
    assert_exit(&o, 2);
    // (its message: tests/commands.rs)
    assert_exit(
        &ws.run(&["state", "reset", cfg, "--stream", "users", "--to-now"]),
        2,
    );
    seen.push(2);

    // 3: `read` against an API that answers 401.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(RestSim::start_with(RestSimConfig {
        items: 5,
        auth: RestAuth::Bearer {
            token: "right-token".into(),
        },
        ..RestSimConfig::default()
    }));
    let api = ws.write(
        "api.toml",
        &format!(
            "name = \"api\"\n[source]\ntype = \"http\"\nbase_url = \"{}\"\nauth = {{ type = \"bearer\", token = \"${{API_TOKEN}}\" }}\n[source.streams.items]\npath = \"/items/offset\"\nrecords = \"data\"\n[sink]\ntype = \"stdout\"\n",
            sim.base_url()
        ),
    );
    let o = ws
        .cmd(&["read", api.to_str().unwrap(), "--stream", "items"])
        .env("API_TOKEN", "wrong-token-xyz")
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("wrong-token-xyz"), "{}", stderr(&o));
    seen.push(3);

    // 4 and 130: a connector that runs, writing to a stdout nobody reads:
    // once the pipe is full, draining after the first interrupt waits.
    let big = ws.write(
        "big.toml",
        &GEN.replace("total = 50", "total = 10000000")
            .replace("type = \"file\"\ndir = \"out\"", "type = \"stdout\""),
    );
    let big = big.to_str().unwrap();
    let mut cmd = ws.cmd(&["run", big, "--no-progress", "--admin-addr", "0"]);
    cmd.env("TRIBUTARY_LOG", "info");
    let mut p = AdminProcess::spawn_with_stdout(cmd, Stdio::piped());
    let o = ws.run(&["state", "reset", big, "--all"]);
    assert_exit(&o, 4);
    seen.push(4);
    wait_until(Duration::from_secs(60), "records read", || {
        let (_, text) = http_get(&format!("{}/metrics", p.url), None);
        metric_samples(&text)
            .iter()
            .any(|(k, v)| k.starts_with("tributary_records_read") && *v > 0.0)
    });
    sigterm(&p.child);
    wait_until(Duration::from_secs(60), "draining", || {
        p.log().contains("shutting down")
    });
    sigterm(&p.child);
    let mut status = None;
    wait_until(Duration::from_secs(60), "forced stop", || {
        status = p.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{}", p.log());
    assert!(p.log().contains("forced stop"), "{}", p.log());
    seen.push(130);

    // 5: `state stuck` eight days later (the process clock moved).
    let stale = ws.write(
        "stale.toml",
        &GEN.replace("[sink]", "[runtime]\nmax_staleness = \"7d\"\n[sink]"),
    );
    let stale = stale.to_str().unwrap();
    assert_exit(&ws.run(&["run", "--once", "--no-progress", stale]), 0);
    let later = (chrono::Utc::now() + chrono::Duration::days(8)).to_rfc3339();
    let o = ws
        .cmd(&["state", "stuck", stale])
        .env("TRIBUTARY_CLOCK_START", &later)
        .output()
        .unwrap();
    assert_exit(&o, 5);
    seen.push(5);

    // 141: the reader of stdout went away (ten million records never fit
    // in a pipe's buffer).
    seen.push(read_into_closed_pipe(&ws, big));

    seen.sort_unstable();
    let mut documented = documented_codes();
    documented.sort_unstable();
    assert_eq!(seen, documented);
}

/// `tributary read ... | head -1`, with stderr on the same pipe (`2>&1`):
/// the first line arrives, then the pipe closes; the process must end
/// quietly (no "Broken pipe", no panic) with 141. Returns the code.
fn read_into_closed_pipe(ws: &Workspace, cfg: &str) -> i32 {
    let mut child = ws
        .cmd(&[
            "read",
            cfg,
            "--stream",
            "users",
            "--limit",
            "10000000",
            "--from-start",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let record: Value = serde_json::from_str(&first).unwrap();
    assert!(record.get("id").is_some(), "{first}");
    drop(out);
    let mut err = child.stderr.take().unwrap();
    let mut text = String::new();
    err.read_to_string(&mut text).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(text, "", "nothing on stderr");
    assert_eq!(status.code(), Some(141));
    141
}

#[test]
fn errors_are_json_lines_with_log_format_json() {
    let ws = workspace();
    let bad = ws.write(
        "bad.toml",
        &GEN.replace("total = 50", "totl = 50\nrecod_type = 1"),
    );
    let o = ws.run(&["--log-format", "json", "check", bad.to_str().unwrap()]);
    assert_exit(&o, 2);
    let lines: Vec<Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    let path = bad.display();
    assert_eq!(
        messages,
        [
            format!("{path}:6: source.streams.users.totl: unknown key `totl` (did you mean `total`?)"),
            format!("{path}:7: source.streams.users.recod_type: unknown key `recod_type` (did you mean `record_type`?)"),
        ]
    );
    assert!(lines
        .iter()
        .all(|l| l["level"] == "ERROR" && l["exit_code"] == 2));
}
