//! The `websocket` source end to end: the real binary against the WebSocket
//! simulator on 127.0.0.1 (testkit `sim::websocket`), which drops
//! connections, hangs without answering pings, sends fragmented and
//! malformed messages and records what each connection sent it.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::sim::websocket::{SimAuth, WsSim, WsSimConfig};

struct Env {
    ws: Workspace,
    sim: WsSim,
    _rt: tokio::runtime::Runtime,
}

fn setup(config: WsSimConfig) -> Env {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(WsSim::start(config));
    Env {
        ws: Workspace::new(env!("CARGO_BIN_EXE_tributary")),
        sim,
        _rt: rt,
    }
}

impl Env {
    /// Writes `ws.toml`: the `[source]` body after `type` and `url`, then
    /// `extra` (sink, runtime, bad_records tables); returns its path.
    fn config(&self, url: &str, source: &str, extra: &str) -> String {
        let text = format!(
            r#"
name = "ws"

[source]
type = "websocket"
url = "{url}"
reconnect = {{ min_backoff = "20ms", max_backoff = "100ms" }}
{source}

{extra}
"#
        );
        self.ws.write("ws.toml", &text);
        self.ws.path("ws.toml").to_string_lossy().into_owned()
    }

    /// Every `seq` in the output of `targets`, with how often it came.
    fn seqs(&self, targets: &[&str]) -> BTreeMap<i64, usize> {
        let mut all = Vec::new();
        for t in targets {
            all.extend(self.ws.output("out", t));
        }
        counts(&all, "seq")
    }

    fn lines(&self, targets: &[&str]) -> usize {
        targets
            .iter()
            .map(|t| self.ws.written_lines("out", t))
            .sum()
    }
}

const FILE_SINK: &str = r#"
[sink]
type = "file"
dir = "out"
"#;

fn exactly_once(seqs: impl IntoIterator<Item = i64>) -> BTreeMap<i64, usize> {
    seqs.into_iter().map(|s| (s, 1)).collect()
}

#[test]
fn drops_fragments_and_malformed_messages_reconnect_resubscribe_and_resume() {
    let env = setup(WsSimConfig {
        total: 200,
        require_subscription: true,
        drop_after: vec![50, 120],
        fragment: vec![10, 11, 130],
        malformed: vec![77, 150],
        ..WsSimConfig::default()
    });
    let cfg = env.config(
        &env.sim.url(),
        r#"
subscribe = [{ op = "subscribe", channels = ["trades", "quotes"], since = "{{ resume }}" }]
resume_field = "seq"
target = "ws.{{ channel }}""#,
        &format!(
            "{FILE_SINK}\n[bad_records]\npolicy = \"dead_letter\"\ndead_letter_path = \"dlq.ndjson\"\n[runtime]\nflush_interval = \"20ms\"\n"
        ),
    );
    let targets = ["ws.trades", "ws.quotes"];
    let child = env.ws.spawn(&["run", &cfg, "--no-progress"]);
    wait_until(Duration::from_secs(20), "198 records", || {
        env.lines(&targets) >= 198
    });
    sigterm(&child);
    let o = wait_output(child, Duration::from_secs(20));
    assert_exit(&o, 0);

    // Every good message exactly once, routed by its channel field.
    let good = (1..=200).filter(|s| *s != 77 && *s != 150);
    assert_eq!(env.seqs(&targets), exactly_once(good));
    for v in env.ws.output("out", "ws.trades") {
        assert_eq!(v["channel"], "trades");
        assert_eq!(v["seq"].as_i64().unwrap() % 2, 0);
    }

    // Three connections, each subscribing first, resuming after the last
    // message received.
    let conns = env.sim.connections();
    assert_eq!(conns.len(), 3, "{conns:?}");
    let subs: Vec<Value> = conns
        .iter()
        .map(|c| serde_json::from_str(&c.received[0]).unwrap())
        .collect();
    assert_eq!(
        subs,
        vec![
            json!({"op": "subscribe", "channels": ["trades", "quotes"], "since": null}),
            json!({"op": "subscribe", "channels": ["trades", "quotes"], "since": 50}),
            json!({"op": "subscribe", "channels": ["trades", "quotes"], "since": 120}),
        ]
    );

    // The malformed messages, dead-lettered with where they came from.
    let dlq: Vec<Value> = std::fs::read_to_string(env.ws.path("dlq.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let located: Vec<(&str, &str)> = dlq
        .iter()
        .map(|d| (d["location"].as_str().unwrap(), d["raw"].as_str().unwrap()))
        .collect();
    let url = env.sim.url();
    assert_eq!(
        located,
        vec![
            (
                format!("{url} message 77").as_str(),
                "{\"seq\": 77, \"broken"
            ),
            (
                format!("{url} message 150").as_str(),
                "{\"seq\": 150, \"broken"
            ),
        ]
    );

    // The checkpoint: every message counted, the last resume token kept.
    let o = env.ws.run(&["state", "get", &cfg, "--stream", "messages"]);
    assert_exit(&o, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!({"messages": 200, "resume": 200})
    );
}

#[test]
fn a_server_that_stops_answering_pings_is_declared_dead_and_reconnected() {
    let env = setup(WsSimConfig {
        total: 60,
        hang_after: Some(30),
        ..WsSimConfig::default()
    });
    let cfg = env.config(
        &env.sim.url(),
        r#"heartbeat = { interval = "100ms", timeout = "300ms" }"#,
        &format!("{FILE_SINK}\n[runtime]\nflush_interval = \"20ms\"\n"),
    );
    let child = env.ws.spawn(&["run", &cfg, "--no-progress"]);
    wait_until(Duration::from_secs(20), "60 records", || {
        env.lines(&["ws.messages"]) >= 60
    });
    sigterm(&child);
    let o = wait_output(child, Duration::from_secs(20));
    assert_exit(&o, 0);
    assert_eq!(env.seqs(&["ws.messages"]), exactly_once(1..=60));
    assert_eq!(env.sim.connections().len(), 2);
    assert!(
        stderr(&o).contains("within 300ms of a ping: connection declared dead"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn kill_9_then_restart_resumes_from_the_committed_token_and_loses_nothing() {
    let env = setup(WsSimConfig {
        total: 3000,
        require_subscription: true,
        ..WsSimConfig::default()
    });
    // The server replays from `since`, so resuming from the committed token
    // loses nothing; a large flush interval leaves delivered but
    // uncommitted records for the kill to hit.
    let cfg = env.config(
        &format!("{}?since={{{{ resume }}}}", env.sim.url()),
        r#"subscribe = ["hello"]
resume_field = "seq"
batch_size = 100"#,
        &format!("{FILE_SINK}\n[runtime]\nflush_records = 500\nflush_interval = \"1s\"\nbatch_size = 100\n"),
    );
    let mut child = env.ws.spawn(&["run", &cfg, "--no-progress"]);
    wait_until(Duration::from_secs(20), "a first commit", || {
        env.lines(&["ws.messages"]) >= 1200
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let child = env.ws.spawn(&["run", &cfg, "--no-progress"]);
    let seen = || env.seqs(&["ws.messages"]).len();
    wait_until(Duration::from_secs(20), "every seq", || seen() == 3000);
    sigterm(&child);
    let o = wait_output(child, Duration::from_secs(20));
    assert_exit(&o, 0);
    let seqs = env.seqs(&["ws.messages"]);
    assert_eq!(
        seqs.keys().copied().collect::<Vec<_>>(),
        (1..=3000).collect::<Vec<_>>()
    );
    // Duplicates: only what was written after the last commit before the kill.
    let duplicates: usize = seqs.values().map(|c| c - 1).sum();
    assert!(duplicates <= 500 + 100, "{duplicates} duplicates");
    // The second connection asked to resume where the commit stood.
    let conns = env.sim.connections();
    let since = conns[1].since.expect("the restart sent its resume token");
    assert!(since >= 500, "{since}");
    assert_eq!(conns[1].received, vec!["hello".to_string()]);
}

#[test]
fn credentials_reach_the_server_and_never_the_logs() {
    let token = "tok-ws-8d1f44c0";
    for (auth, sim_auth) in [
        (
            r#"auth = { type = "query", name = "token", token = "${WS_TOKEN}" }"#,
            SimAuth::Query {
                name: "token".into(),
                value: token.into(),
            },
        ),
        (
            r#"auth = { type = "header", name = "X-API-Key", token = "${WS_TOKEN}" }"#,
            SimAuth::Header {
                name: "x-api-key".into(),
                value: token.into(),
            },
        ),
        (
            r#"auth = { type = "bearer", token = "${WS_TOKEN}" }"#,
            SimAuth::Bearer(token.into()),
        ),
    ] {
        let env = setup(WsSimConfig {
            total: 5,
            auth: Some(sim_auth),
            ..WsSimConfig::default()
        });
        let cfg = env.config(&env.sim.url(), auth, FILE_SINK);
        let mut cmd = env.ws.cmd(&["run", &cfg, "--no-progress"]);
        cmd.env("WS_TOKEN", token)
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        wait_until(Duration::from_secs(20), "5 records", || {
            env.lines(&["ws.messages"]) >= 5
        });
        sigterm(&child);
        let o = wait_output(child, Duration::from_secs(20));
        assert_exit(&o, 0);
        assert_eq!(env.seqs(&["ws.messages"]), exactly_once(1..=5));
        assert!(!stderr(&o).contains(token), "{}", stderr(&o));

        // A wrong credential is refused at the handshake: a fatal error
        // naming the status, with the credential masked.
        let mut cmd = env.ws.cmd(&["run", &cfg, "--no-progress"]);
        cmd.env("WS_TOKEN", "wrong-token-1234");
        let o = cmd.output().unwrap();
        assert_exit(&o, 1);
        let err = stderr(&o);
        assert!(!err.contains("wrong-token-1234"), "{err}");
        let shown = if auth.contains("query") {
            format!("{}?token=***", env.sim.url())
        } else {
            env.sim.url()
        };
        assert!(
            err.contains(&format!(
                "the server refused the WebSocket handshake at {shown}: HTTP 401 Unauthorized"
            )),
            "{err}"
        );
    }
}

#[test]
fn policy_fail_stops_at_a_malformed_message_and_commits_nothing_of_its_batch() {
    let env = setup(WsSimConfig {
        total: 5,
        malformed: vec![3],
        ..WsSimConfig::default()
    });
    let cfg = env.config(
        &env.sim.url(),
        "",
        &format!("{FILE_SINK}\n[bad_records]\npolicy = \"fail\"\n"),
    );
    let o = env.ws.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "bad record at {} message 3: invalid JSON: EOF while parsing a string at line 1 column 18",
            env.sim.url()
        )),
        "{err}"
    );
    let o = env.ws.run(&["state", "list", &cfg, "--json"]);
    let listed: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        listed
            .iter()
            .all(|s| s["checkpoint"]["messages"].as_u64().unwrap_or(0) < 3),
        "{listed:?}"
    );
}

#[test]
fn an_unreachable_server_is_given_up_after_max_restarts() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = setup(WsSimConfig::default());
    let url = format!("ws://127.0.0.1:{port}/feed");
    let cfg = env.config(&url, "", &format!("{FILE_SINK}\n"));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "max_backoff = \"100ms\" }",
        "max_backoff = \"100ms\", max_restarts = 2 }",
    );
    std::fs::write(&cfg, text).unwrap();
    let o = env.ws.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "websocket: gave up after 2 reconnect attempts without a message (reconnect.max_restarts = 2); last error: connecting to {url}: IO error: Connection refused"
        )),
        "{err}"
    );
}
