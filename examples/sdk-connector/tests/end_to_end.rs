//! The example binary end to end: every command a `tributary` binary has,
//! the built-in sources next to this crate's, state across runs, retries,
//! config errors with file:line, secrets kept out of output, the admin
//! server's metrics and a graceful stop that acknowledges what it committed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_feed-connector");

fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir).env_remove("RUST_LOG");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir, args).output().expect("run feed-connector")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The `id`s the file sink wrote for `target`, in order.
fn written(dir: &Path, target: &str, field: &str) -> Vec<u64> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{target}-")))
    });
    files.sort();
    let mut ids = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push(v[field].as_u64().unwrap());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_runs_with_state_retries_and_every_command() {
    let server = common::start(common::Api {
        events: 250,
        fail_next: 2,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("feed.toml");
    std::fs::write(
        &cfg,
        common::config("json_feed", &server, "page_size = 100").replace(
            "[sink]",
            "[runtime]\nbackoff_initial = \"10ms\"\nbackoff_max = \"50ms\"\n\n[sink]",
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();

    // Two 503s first: retried, then the whole feed.
    let o = run(d, &["run", "--once", "--no-progress", cfg]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(
        written(d, "example.events", "id"),
        (1..=250).collect::<Vec<_>>()
    );
    let o = run(d, &["state", "get", cfg, "--stream", "events"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let state: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(state, serde_json::json!({"after": 250}));

    // Ten more: the next run reads only those.
    server.api().events = 260;
    let o = run(d, &["run", "--once", "--no-progress", cfg]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(
        written(d, "example.events", "id"),
        (1..=260).collect::<Vec<_>>()
    );

    let o = run(d, &["check", cfg]);
    assert_eq!(code(&o), 0, "{}{}", text(&o.stdout), text(&o.stderr));
    let o = run(d, &["discover", cfg]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let streams: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(streams["streams"][0]["name"], "events", "{streams}");
    assert_eq!(
        streams["streams"][0]["primary_key"],
        serde_json::json!(["id"])
    );
    let o = run(
        d,
        &[
            "read",
            cfg,
            "--stream",
            "events",
            "--limit",
            "3",
            "--from-start",
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let ids: Vec<u64> = text(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let o = run(d, &["state", "list", cfg]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("events"), "{}", text(&o.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_errors_name_the_line_and_types_include_the_built_ins() {
    let server = common::start(common::Api {
        events: 5,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("typo.toml"),
        common::config("json_feed", &server, "page_sise = 5"),
    )
    .unwrap();
    let o = run(d, &["check", "typo.toml"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("typo.toml:6: source.page_sise: unknown key `page_sise`"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("did you mean `page_size`?"),
        "{}",
        text(&o.stderr)
    );

    std::fs::write(d.join("kind.toml"), common::config("json_fed", &server, "")).unwrap();
    let o = run(d, &["check", "kind.toml"]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(err.contains("unknown source type `json_fed`; known types: airbyte, chargeover, file, fivetran, generator, http, json_feed, json_queue, kafka"), "{err}");

    // A built-in source in the same binary.
    std::fs::write(
        d.join("gen.toml"),
        "name = \"gen\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\ntotal = 7\n[sink]\ntype = \"file\"\ndir = \"out\"\n",
    )
    .unwrap();
    let o = run(d, &["run", "--once", "--no-progress", "gen.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(written(d, "gen.users", "id"), (1..=7).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_a_failed_check_that_never_shows_the_token() {
    let server = common::start(common::Api {
        events: 5,
        token: Some("good-token-7f3a".into()),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("auth.toml"),
        common::config("json_feed", &server, "token = \"${FEED_TOKEN}\""),
    )
    .unwrap();
    let o = cmd(d, &["check", "auth.toml"])
        .env("FEED_TOKEN", "wrong-token-91c2")
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", text(&o.stderr));
    let all = text(&o.stdout) + &text(&o.stderr);
    assert!(all.contains("HTTP 401: the token was refused"), "{all}");
    assert!(!all.contains("wrong-token-91c2"), "{all}");
    let o = cmd(d, &["run", "--once", "--no-progress", "auth.toml"])
        .env("FEED_TOKEN", "good-token-7f3a")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(written(d, "example.events", "id"), [1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_acknowledges_what_was_committed_and_serves_metrics() {
    let server = common::start(common::Api {
        messages: 30,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("drain.toml"),
        common::config("json_queue", &server, "stop_when_empty = true"),
    )
    .unwrap();
    let o = run(d, &["run", "--once", "--no-progress", "drain.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(
        written(d, "example.messages", "n"),
        (1..=30).collect::<Vec<_>>()
    );
    assert_eq!(server.api().deleted, (1..=30).collect());

    // A long-running consumer with the admin server: metrics while it
    // runs, then SIGTERM: a clean stop, everything written acknowledged.
    server.api().messages = 45;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        d.join("live.toml"),
        common::config("json_queue", &server, "wait_ms = 50"),
    )
    .unwrap();
    let mut child = cmd(
        d,
        &[
            "run",
            "--no-progress",
            "--admin-addr",
            &port.to_string(),
            "live.toml",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        assert!(Instant::now() < deadline, "no metrics within a minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
            continue;
        };
        let body = resp.text().await.unwrap_or_default();
        if server.api().deleted.len() == 45 && body.contains("tributary_records_committed") {
            break body;
        }
    };
    assert!(metrics.contains("stream=\"messages\""), "{metrics}");
    assert!(metrics.contains("tributary_http_responses"), "{metrics}");
    let o = run(d, &["status", "--admin-addr", &port.to_string()]);
    assert!(text(&o.stdout).contains("messages"), "{}", text(&o.stdout));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        written(d, "example.messages", "n"),
        (1..=45).collect::<Vec<_>>()
    );
    assert_eq!(server.api().deleted, (1..=45).collect());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guide_s_configs_pass_check() {
    // docs/sdk.md's ```toml sdk-connector blocks are configs for this
    // binary; `tributary`'s own docs test leaves them to us.
    let server = common::start(common::Api {
        events: 5,
        ..Default::default()
    })
    .await;
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sdk.md")).unwrap();
    let mut blocks = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() == "```toml sdk-connector" {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push(body.join("\n"));
        }
    }
    assert!(
        !blocks.is_empty(),
        "docs/sdk.md has no sdk-connector config"
    );
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let file = format!("guide{i}.toml");
        std::fs::write(
            dir.path().join(&file),
            block.replace("http://127.0.0.1:8080", &server.url),
        )
        .unwrap();
        let o = cmd(dir.path(), &["check", &file])
            .env("FEED_TOKEN", "docs-token")
            .output()
            .unwrap();
        assert_eq!(
            code(&o),
            0,
            "docs/sdk.md block {}:\n{block}\n{}{}",
            i + 1,
            text(&o.stdout),
            text(&o.stderr)
        );
    }
}
