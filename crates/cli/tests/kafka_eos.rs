//! Exactly-once into Kafka (`[sink] exactly_once = true`) through the
//! binary, against Apache Kafka: kill -9 at random moments, a zombie
//! (SIGSTOP, a second instance, SIGCONT), a producer fenced by the broker,
//! a transaction that outlives its timeout, a broker restarted
//! mid-transaction, Kafka -> Kafka with the consumer offsets in the
//! transaction, file / generator / http sources, operators' writes
//! (`tributary state`, the offsets API) and the config errors. Outputs are read back with
//! `read_committed` (what exactly-once promises) and, to show that aborted
//! records really were written, with `read_uncommitted`.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tributary_testkit::cli::*;
use tributary_testkit::kafka::{key_counts, unique, Isolation, Kafka};
use tributary_testkit::sim::rest::{RestSim, RestSimConfig};

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

/// (missing, duplicated) ids of `1..=n` in `seen`; panics on ids outside.
fn lost_and_duplicated(seen: &BTreeMap<i64, usize>, n: i64) -> (usize, usize) {
    let outside: Vec<&i64> = seen.keys().filter(|i| **i < 1 || **i > n).collect();
    assert!(outside.is_empty(), "ids outside 1..={n}: {outside:?}");
    let missing = (1..=n).filter(|i| !seen.contains_key(i)).count();
    let duplicated = seen.values().map(|c| c - 1).sum();
    (missing, duplicated)
}

/// Asserts `seen` holds exactly `1..=n`, once each.
fn assert_exactly_once(seen: &BTreeMap<i64, usize>, n: i64, what: &str) {
    let (missing, duplicated) = lost_and_duplicated(seen, n);
    assert_eq!(
        (missing, duplicated),
        (0, 0),
        "{what}: (missing, duplicated) of 1..={n}"
    );
}

/// A pseudo-random sequence (xorshift), seeded from the clock and printed,
/// so a failing run can be told apart from the next.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        eprintln!("kill moments seed: {seed}");
        Rng(seed)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low + 1)
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig}");
}

/// `tributary run` in the background with its log in `log`, so a long run
/// never blocks on a full pipe.
fn spawn_logged(ws: &Workspace, args: &[&str], log: &str) -> Child {
    let file = File::create(ws.path(log)).unwrap();
    ws.cmd(args)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn tributary")
}

fn read_log(ws: &Workspace, log: &str) -> String {
    std::fs::read_to_string(ws.path(log)).unwrap_or_default()
}

/// Waits for `child` to exit and returns its exit code.
fn wait_code(child: &mut Child, timeout: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tributary did not finish in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The committed checkpoint of `stream`, as `tributary state get` prints it.
fn state_get(ws: &Workspace, cfg: &str, stream: &str) -> Value {
    let o = ws.run(&["state", "get", cfg, "--stream", stream]);
    assert_exit(&o, 0);
    serde_json::from_str(&stdout(&o)).unwrap_or(Value::Null)
}

/// The checkpoint messages of `connector`/`stream` in the state topic that
/// a `read_committed` consumer sees.
fn committed_checkpoints(
    broker: &Kafka,
    state_topic: &str,
    connector: &str,
    stream: &str,
) -> usize {
    let key = format!(r#"["{connector}","{stream}"]"#);
    broker
        .read_all_as(state_topic, Isolation::ReadCommitted)
        .iter()
        .filter(|m| m.key.as_deref() == Some(key.as_str()))
        .count()
}

/// Starts `tributary run CFG` (log in `log`) and waits until a commit of
/// stream `users` is visible to `read_committed`.
fn start_until_committed(
    ws: &Workspace,
    broker: &Kafka,
    cfg: &str,
    connector: &str,
    state_topic: &str,
    log: &str,
) -> Child {
    let child = spawn_logged(ws, &["run", cfg, "--no-progress"], log);
    wait_until(Duration::from_secs(60), "a first commit", || {
        committed_checkpoints(broker, state_topic, connector, "users") > 0
    });
    child
}

/// Asserts `topic` holds the keys `1..=n` once each for `read_committed`,
/// and returns how many records only `read_uncommitted` sees (aborted).
fn assert_topic_exactly_once(broker: &Kafka, topic: &str, n: i64, what: &str) -> usize {
    let committed = key_counts(&broker.read_all_as(topic, Isolation::ReadCommitted));
    assert_exactly_once(&committed, n, what);
    let everything = key_counts(&broker.read_all_as(topic, Isolation::ReadUncommitted));
    lost_and_duplicated(&everything, n).1
}

/// A generator connector writing `{name}.users` with exactly_once, `rate`
/// records/s, its state in `state_topic`; `extra` goes into `[sink]`.
fn eos_generator(
    broker: &Kafka,
    name: &str,
    total: Option<u64>,
    rate: u64,
    state_topic: &str,
    runtime: &str,
    extra: &str,
) -> String {
    let total = total.map(|t| format!("total = {t}")).unwrap_or_default();
    format!(
        r#"
name = "{name}"
[source]
type = "generator"
seed = 7
[source.streams.users]
record_type = "user"
rate = {rate}
{total}
[runtime]
batch_size = 100
max_retries = 30
backoff_max = "1s"
{runtime}
[state]
url = "kafka://{b}/{state_topic}"
[sink]
type = "kafka"
brokers = "{b}"
exactly_once = true
{extra}
"#,
        b = broker.brokers()
    )
}

#[test]
fn kill_9_at_random_moments_leaves_the_exact_source_set_read_committed() {
    let broker = Kafka::shared();
    let n = unique("eoskill");
    let state_topic = unique("offsets");
    let ws = workspace();
    let total = 40_000u64;
    let cfg = ws.write(
        "gen.toml",
        &eos_generator(
            &broker,
            &n,
            Some(total),
            5000,
            &state_topic,
            "flush_records = 2000\nflush_interval = \"300ms\"",
            "",
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let mut rng = Rng::new();
    let kills = 12;
    for i in 0..kills {
        let log = format!("run{i}.log");
        let mut child = spawn_logged(&ws, &["run", cfg, "--no-progress"], &log);
        std::thread::sleep(Duration::from_millis(rng.between(400, 2500)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);
    // The kills left transactions open, which the next instance aborted:
    // their records are in the log, visible to read_uncommitted only.
    let aborted = assert_topic_exactly_once(
        &broker,
        &format!("{n}.users"),
        total as i64,
        "read_committed after 12 kills",
    );
    assert!(
        aborted > 0,
        "the kills interrupted transactions whose records read_uncommitted shows"
    );
    eprintln!("kill -9: {kills} kills, 0 lost, 0 duplicated (read_committed); {aborted} aborted records in the log");
    assert_eq!(state_get(&ws, cfg, "users"), json!({"next": total}));
}

#[test]
fn a_zombie_is_fenced_by_the_second_instance_and_its_records_never_become_visible() {
    let broker = Kafka::shared();
    let n = unique("eoszombie");
    let state_topic = unique("offsets");
    let ws = workspace();
    // Long transactions: the zombie is stopped in the middle of one.
    let cfg = ws.write(
        "gen.toml",
        &eos_generator(
            &broker,
            &n,
            None,
            2000,
            &state_topic,
            "flush_records = 100000\nflush_interval = \"3s\"",
            "transaction_timeout = \"60s\"",
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let mut first = start_until_committed(&ws, &broker, cfg, &n, &state_topic, "first.log");
    std::thread::sleep(Duration::from_millis(1500));
    signal(&first, "-STOP");
    let topic = format!("{n}.users");
    let before = broker.read_all_as(&topic, Isolation::ReadUncommitted).len();
    let committed_before = broker.read_all_as(&topic, Isolation::ReadCommitted).len();
    assert!(
        before > committed_before,
        "the zombie was stopped inside a transaction holding records"
    );

    let mut second = spawn_logged(&ws, &["run", cfg, "--no-progress"], "second.log");
    let seen = committed_checkpoints(&broker, &state_topic, &n, "users");
    wait_until(
        Duration::from_secs(60),
        "the second instance commits",
        || committed_checkpoints(&broker, &state_topic, &n, "users") > seen + 1,
    );
    signal(&first, "-CONT");
    let code = wait_code(&mut first, Duration::from_secs(90));
    let log = read_log(&ws, "first.log");
    assert_eq!(code, Some(1), "the zombie stops with an error:\n{log}");
    assert!(
        log.contains("fenced by another instance of connector") && log.contains("pid"),
        "{log}"
    );
    // The second one goes on, then stops cleanly.
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&second);
    assert_eq!(wait_code(&mut second, Duration::from_secs(60)), Some(0));
    let next = state_get(&ws, cfg, "users")["next"].as_i64().unwrap();
    let aborted = assert_topic_exactly_once(&broker, &topic, next, "after the zombie");
    assert!(aborted > 0, "the zombie's records are in the log, aborted");
}

#[test]
fn a_transaction_that_outlives_its_timeout_is_aborted_and_read_again_once() {
    let broker = Kafka::shared();
    let n = unique("eostimeout");
    let state_topic = unique("offsets");
    let ws = workspace();
    let total = 30_000u64;
    let cfg = ws.write(
        "gen.toml",
        &eos_generator(
            &broker,
            &n,
            Some(total),
            2000,
            &state_topic,
            "flush_records = 100000\nflush_interval = \"2s\"",
            "transaction_timeout = \"5s\"\nmessage_timeout = \"5s\"",
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let mut child = start_until_committed(&ws, &broker, cfg, &n, &state_topic, "run.log");
    std::thread::sleep(Duration::from_millis(700));
    // Frozen past the timeout: the broker aborts the open transaction
    // (it looks for expired ones every 10 s).
    signal(&child, "-STOP");
    std::thread::sleep(Duration::from_secs(22));
    signal(&child, "-CONT");
    let code = wait_code(&mut child, Duration::from_secs(120));
    let log = read_log(&ws, "run.log");
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("transaction aborted; reading again from the last committed checkpoints")
            && log.contains("transaction_timeout"),
        "{log}"
    );
    let aborted = assert_topic_exactly_once(
        &broker,
        &format!("{n}.users"),
        total as i64,
        "after the expired transaction",
    );
    assert!(
        aborted > 0,
        "the expired transaction's records are in the log, aborted"
    );
}

#[test]
fn a_broker_restarted_mid_transaction_ends_with_no_loss_and_no_duplicate() {
    let mut broker = Kafka::start_own();
    let n = unique("eosoutage");
    let state_topic = unique("offsets");
    let ws = workspace();
    let total = 30_000u64;
    let cfg = ws.write(
        "gen.toml",
        &eos_generator(
            &broker,
            &n,
            Some(total),
            3000,
            &state_topic,
            "flush_records = 3000\nflush_interval = \"1s\"",
            "message_timeout = \"10s\"\ntransaction_timeout = \"30s\"",
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let mut child = start_until_committed(&ws, &broker, cfg, &n, &state_topic, "run.log");
    std::thread::sleep(Duration::from_millis(500));
    broker.stop();
    std::thread::sleep(Duration::from_secs(4));
    broker.restart();
    let code = wait_code(&mut child, Duration::from_secs(240));
    let log = read_log(&ws, "run.log");
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("sink error; retrying") || log.contains("transaction aborted"),
        "a log line says what happened:\n{log}"
    );
    assert_topic_exactly_once(
        &broker,
        &format!("{n}.users"),
        total as i64,
        "after the broker restart",
    );
}

#[test]
fn a_producer_fenced_by_the_broker_is_replaced_and_nothing_is_lost_or_doubled() {
    let broker = Kafka::shared();
    let n = unique("eosfenced");
    let state_topic = unique("offsets");
    let ws = workspace();
    let total = 30_000u64;
    let cfg = ws.write(
        "gen.toml",
        &eos_generator(
            &broker,
            &n,
            Some(total),
            3000,
            &state_topic,
            "flush_records = 2000\nflush_interval = \"500ms\"",
            "",
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let mut child = start_until_committed(&ws, &broker, cfg, &n, &state_topic, "run.log");
    // Another producer takes the connector's transactional id, three
    // times, at moments inside and between transactions: the broker fences
    // the connector's producer each time.
    let mut rng = Rng::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(rng.between(300, 1500)));
        broker.fence(&format!("tributary-{n}"));
    }
    let code = wait_code(&mut child, Duration::from_secs(180));
    let log = read_log(&ws, "run.log");
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("transaction aborted; reading again from the last committed checkpoints")
            && log.to_lowercase().contains("fenced"),
        "a log line says the producer was fenced and what follows:\n{log}"
    );
    assert_topic_exactly_once(
        &broker,
        &format!("{n}.users"),
        total as i64,
        "after the producer was fenced",
    );
    assert_eq!(state_get(&ws, cfg, "users"), json!({"next": total}));
}

#[test]
fn kafka_to_kafka_with_kill_9_copies_each_message_once_and_commits_the_group_in_the_transaction() {
    let broker = Kafka::shared();
    let n = unique("eosk2k");
    let input = unique("orders");
    let output = format!("{n}.copy");
    let group = unique("group");
    let state_topic = unique("offsets");
    broker.create_topic(&input, 3);
    let total = 30_000usize;
    let values: Vec<(String, String)> = (1..=total)
        .map(|i| (i.to_string(), format!("{{\"id\": {i}}}")))
        .collect();
    for chunk in values.chunks(5000) {
        let msgs: Vec<_> = chunk
            .iter()
            .map(|(k, v)| (Some(k.as_str()), Some(v.as_str()), &[][..]))
            .collect();
        broker.produce(&input, &msgs);
    }
    let ws = workspace();
    let config = |stop_at_end: bool| {
        format!(
            r#"
name = "{n}"
[source]
type = "kafka"
brokers = "{b}"
topics = ["{input}"]
group_id = "{group}"
stop_at_end = {stop_at_end}
[streams."{input}"]
target = "{output}"
[runtime]
batch_size = 200
flush_records = 1000
flush_interval = "200ms"
max_retries = 30
backoff_max = "1s"
[state]
url = "kafka://{b}/{state_topic}"
[sink]
type = "kafka"
brokers = "{b}"
exactly_once = true
partitions = 3
"#,
            b = broker.brokers()
        )
    };
    let running = ws.write("running.toml", &config(false));
    let running = running.to_str().unwrap();
    let mut rng = Rng::new();
    for i in 0..5 {
        let log = format!("run{i}.log");
        let mut child = spawn_logged(&ws, &["run", running, "--no-progress"], &log);
        std::thread::sleep(Duration::from_millis(rng.between(800, 3000)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let last = ws.write("last.toml", &config(true));
    let o = ws.run(&["run", last.to_str().unwrap(), "--no-progress"]);
    assert_exit(&o, 0);
    let copied = key_counts(&broker.read_all_as(&output, Isolation::ReadCommitted));
    assert_exactly_once(&copied, total as i64, "downstream, read_committed");
    // The group's offsets moved with the copies: exactly the input's ends.
    assert_eq!(broker.committed(&group, &input), broker.ends(&input));
    let state = state_get(&ws, running, &input);
    let ends: BTreeMap<String, i64> = broker
        .ends(&input)
        .into_iter()
        .map(|(p, o)| (p.to_string(), o))
        .collect();
    assert_eq!(state, json!({"partitions": ends}));
}

#[test]
fn file_and_http_sources_deliver_exactly_once_and_resume_without_duplicates() {
    let broker = Kafka::shared();
    let ws = workspace();
    // file -> kafka
    let n = unique("eosfile");
    let state_topic = unique("offsets");
    let lines: String = (1..=5000)
        .map(|i| format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n"))
        .collect();
    ws.write("data/events.ndjson", &lines);
    let cfg = ws.write(
        "file.toml",
        &format!(
            r#"
name = "{n}"
[source]
type = "file"
[source.streams.events]
path = "data/events.ndjson"
format = "ndjson"
primary_key = ["id"]
[runtime]
flush_records = 1000
[state]
url = "kafka://{b}/{state_topic}"
[sink]
type = "kafka"
brokers = "{b}"
exactly_once = true
"#,
            b = broker.brokers()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    assert_exit(&ws.run(&["run", "--once", "--no-progress", cfg]), 0);
    let topic = format!("{n}.events");
    assert_exactly_once(
        &key_counts(&broker.read_all_as(&topic, Isolation::ReadCommitted)),
        5000,
        "file",
    );
    // Appended lines: only they are sent, once.
    let more: String = (5001..=6000)
        .map(|i| format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n"))
        .collect();
    ws.append("data/events.ndjson", &more);
    assert_exit(&ws.run(&["run", "--once", "--no-progress", cfg]), 0);
    assert_exactly_once(
        &key_counts(&broker.read_all_as(&topic, Isolation::ReadCommitted)),
        6000,
        "file, after appending",
    );

    // http -> kafka, against the REST simulator.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(RestSim::start_with(RestSimConfig {
        items: 2345,
        ..RestSimConfig::default()
    }));
    let n = unique("eoshttp");
    let state_topic = unique("offsets");
    let cfg = ws.write(
        "http.toml",
        &format!(
            r#"
name = "{n}"
[source]
type = "http"
base_url = "{}"
[source.streams.items]
primary_key = ["id"]
path = "/items/offset"
records = "data"
pagination = {{ type = "offset", page_size = 100 }}
[runtime]
flush_records = 500
[state]
url = "kafka://{b}/{state_topic}"
[sink]
type = "kafka"
brokers = "{b}"
exactly_once = true
"#,
            sim.base_url(),
            b = broker.brokers()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    assert_exit(&ws.run(&["run", "--once", "--no-progress", cfg]), 0);
    let topic = format!("{n}.items");
    assert_exactly_once(
        &key_counts(&broker.read_all_as(&topic, Isolation::ReadCommitted)),
        2345,
        "http",
    );
}

#[test]
fn operators_writes_on_transactional_state_are_transactions_and_the_run_resumes_from_them() {
    let broker = Kafka::shared();
    let n = unique("eosops");
    let state_topic = unique("offsets");
    let ws = workspace();
    let cfg = ws.write(
        "gen.toml",
        &eos_generator(&broker, &n, Some(3000), 100_000, &state_topic, "", ""),
    );
    let cfg = cfg.to_str().unwrap();
    assert_exit(&ws.run(&["run", "--no-progress", cfg]), 0);
    let topic = format!("{n}.users");
    assert_exactly_once(&key_counts(&broker.read_all(&topic)), 3000, "first run");
    // Rewind by hand to 2500: one transactional write, visible to read_committed.
    let o = ws.run(&[
        "state",
        "set",
        cfg,
        "--stream",
        "users",
        "--json",
        r#"{"next": 2500}"#,
    ]);
    assert_exit(&o, 0);
    assert_eq!(state_get(&ws, cfg, "users"), json!({"next": 2500}));
    assert_eq!(
        last_write_is_one_committed_transaction(&broker, &state_topic, &n, "users"),
        Some(json!({"next": 2500}))
    );
    // The run resumes from it: 2501..=3000 a second time, nothing else.
    assert_exit(&ws.run(&["run", "--no-progress", cfg]), 0);
    let seen = key_counts(&broker.read_all(&topic));
    let twice: Vec<i64> = seen
        .iter()
        .filter(|(_, c)| **c == 2)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(twice, (2501..=3000).collect::<Vec<_>>());
    // Reset: a tombstone in a transaction; the stream has no checkpoint.
    assert_exit(&ws.run(&["state", "reset", cfg, "--stream", "users"]), 0);
    assert_eq!(
        last_write_is_one_committed_transaction(&broker, &state_topic, &n, "users"),
        None,
        "a tombstone"
    );
    assert_exit(&ws.run(&["state", "get", cfg, "--stream", "users"]), 1);
}

/// The latest message of `connector`/`stream` in the state topic for
/// `read_committed`, after asserting it was written in a transaction that
/// committed: the next offset is its transaction's commit marker, so the
/// topic ends one past it (a plain write would end right after it).
fn last_write_is_one_committed_transaction(
    broker: &Kafka,
    state_topic: &str,
    connector: &str,
    stream: &str,
) -> Option<Value> {
    let key = format!(r#"["{connector}","{stream}"]"#);
    let committed = broker.read_all_as(state_topic, Isolation::ReadCommitted);
    let latest = committed
        .iter()
        .rfind(|m| m.key.as_deref() == Some(key.as_str()))
        .expect("a checkpoint message");
    assert_eq!(
        Some(broker.ends(state_topic)[&0]),
        committed.last().map(|m| m.offset + 2),
        "a commit marker follows the last write: it was one transaction"
    );
    latest
        .value
        .as_ref()
        .map(|_| latest.json()["checkpoint"].clone())
}

#[test]
fn the_offsets_api_on_transactional_state_writes_transactions_and_the_resumed_run_starts_there() {
    const TOKEN: &str = "eos-offsets-token-5c2e";
    let broker = Kafka::shared();
    let n = unique("eosapi");
    let state_topic = unique("offsets");
    let ws = workspace();
    // users: 3000 records; readings: 5, then it waits for a nightly cron,
    // so the process keeps serving its admin API.
    let generator = eos_generator(&broker, &n, Some(3000), 100_000, &state_topic, "", "").replace(
        "[runtime]",
        "[source.streams.readings]\nrecord_type = \"sensor\"\ntotal = 5\n[runtime]",
    );
    let cfg = ws.write(
        "gen.toml",
        &format!(
            "{generator}\n[streams.readings]\nschedule = {{ cron = \"0 0 2 * * ?\", timezone = \"UTC\" }}\n"
        ),
    );
    let token = ws.write("token", TOKEN);
    let admin = AdminProcess::spawn(ws.cmd(&[
        "run",
        cfg.to_str().unwrap(),
        "--no-progress",
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        token.to_str().unwrap(),
    ]));
    let call = |method: &str, path: &str, body: Option<Value>| -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text) = http_request(
            method,
            &format!("{}/connectors/{n}{path}", admin.url),
            Some(TOKEN),
            body.as_deref(),
        );
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, value)
    };
    let offsets = || {
        let (status, body) = call("GET", "/offsets", None);
        assert_eq!(status, 200, "{body}");
        body
    };
    let at = |next: i64| {
        json!({"offsets": [
            {"partition": {"stream": "readings"}, "offset": {"next": 5}},
            {"partition": {"stream": "users"}, "offset": {"next": next}},
        ]})
    };
    let stop = || {
        assert_eq!(call("PUT", "/stop", None).0, 202);
        wait_until(Duration::from_secs(60), "the connector stopped", || {
            let (_, text) = http_request(
                "GET",
                &format!("{}/status/{n}", admin.url),
                Some(TOKEN),
                None,
            );
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)["phase"] == "stopped"
        });
    };
    wait_until(Duration::from_secs(60), "the first 3000 committed", || {
        offsets() == at(3000)
    });
    let topic = format!("{n}.users");
    assert_exactly_once(&key_counts(&broker.read_all(&topic)), 3000, "first run");

    // Stopped: rewind to 2500, one transaction visible to read_committed.
    stop();
    assert_eq!(
        call(
            "PATCH",
            "/offsets",
            Some(
                json!({"offsets": [{"partition": {"stream": "users"}, "offset": {"next": 2500}}]})
            )
        ),
        (
            200,
            json!({"message": "The offsets for this connector have been altered successfully"})
        )
    );
    assert_eq!(
        last_write_is_one_committed_transaction(&broker, &state_topic, &n, "users"),
        Some(json!({"next": 2500}))
    );
    assert_eq!(offsets(), at(2500));
    assert_eq!(
        state_get(&ws, cfg.to_str().unwrap(), "users"),
        json!({"next": 2500})
    );

    // Resumed: 2501..=3000 a second time (the operator asked), nothing else.
    assert_eq!(call("PUT", "/resume", None).0, 202);
    wait_until(Duration::from_secs(60), "caught up after resume", || {
        offsets() == at(3000)
    });
    let seen = key_counts(&broker.read_all(&topic));
    let expected: BTreeMap<i64, usize> = (1..=3000)
        .map(|i| (i, if i > 2500 { 2 } else { 1 }))
        .collect();
    assert_eq!(seen, expected);

    // DELETE while stopped: a tombstone, in one transaction; the resumed
    // run starts over from the first record.
    stop();
    assert_eq!(
        call("DELETE", "/offsets", None),
        (
            200,
            json!({"message": "The offsets for this connector have been reset successfully"})
        )
    );
    assert_eq!(
        last_write_is_one_committed_transaction(&broker, &state_topic, &n, "users"),
        None,
        "a tombstone"
    );
    assert_eq!(offsets(), json!({"offsets": []}));
    assert_eq!(call("PUT", "/resume", None).0, 202);
    wait_until(Duration::from_secs(60), "caught up after the reset", || {
        offsets() == at(3000)
    });
    let seen = key_counts(&broker.read_all(&topic));
    let expected: BTreeMap<i64, usize> = (1..=3000)
        .map(|i| (i, if i > 2500 { 3 } else { 2 }))
        .collect();
    assert_eq!(seen, expected);
    let log = admin.log();
    assert_eq!(admin.stop(), Some(0), "{log}");
}

#[test]
fn exactly_once_without_kafka_state_or_with_a_too_long_message_timeout_is_a_config_error() {
    let ws = workspace();
    let cfg = ws.write(
        "bad.toml",
        r#"name = "eosbad"
[source]
type = "generator"
[source.streams.users]
record_type = "user"
total = 10
[sink]
type = "kafka"
brokers = "127.0.0.1:1"
exactly_once = true
"#,
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml:10: sink.exactly_once")
            && err.contains("exactly_once")
            && err.contains("[state] url = \"kafka://"),
        "{err}"
    );
    let cfg = ws.write(
        "bad2.toml",
        r#"name = "eosbad"
[source]
type = "generator"
[source.streams.users]
record_type = "user"
total = 10
[state]
url = "kafka://127.0.0.1:1/offsets"
[sink]
type = "kafka"
brokers = "127.0.0.1:1"
exactly_once = true
transaction_timeout = "10s"
message_timeout = "30s"
"#,
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("bad2.toml:14: sink.message_timeout")
            && err.contains("transaction_timeout (10s)"),
        "{err}"
    );
}
