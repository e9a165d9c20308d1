//! Kafka end to end through the binary, against Apache Kafka (the test run's
//! shared broker, crates/testkit/src/kafka.rs; each test names its connector,
//! topics and groups uniquely, and the outage test runs a broker of its
//! own), read back with an rdkafka consumer: the sink (routing, keys, headers, topic creation, dead
//! letters), the Kafka state store (survives restarts, plain JSON, fencing),
//! crashes and a broker outage, and the Kafka source.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::kafka::{key_counts, unique, Kafka, Msg, Outgoing};

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

/// Asserts `seen` holds exactly `1..=n`, each `times` times, and says
/// which ids are off rather than printing every id.
fn assert_ids(seen: &BTreeMap<i64, usize>, n: i64, times: usize) {
    let missing: Vec<i64> = (1..=n).filter(|i| !seen.contains_key(i)).collect();
    let wrong: Vec<(&i64, &usize)> = seen
        .iter()
        .filter(|(i, c)| **c != times || **i < 1 || **i > n)
        .take(20)
        .collect();
    assert!(
        missing.is_empty() && wrong.is_empty(),
        "{} ids missing (first: {:?}); ids seen other than {times} times (first 20): {wrong:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

/// Asserts every id of `1..=n` is in `seen` (duplicates allowed).
fn assert_none_missing(seen: &BTreeMap<i64, usize>, n: i64) {
    let missing: Vec<i64> = (1..=n).filter(|i| !seen.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "nothing lost: {} ids missing (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let extra: Vec<&i64> = seen.keys().filter(|i| **i < 1 || **i > n).collect();
    assert!(extra.is_empty(), "ids outside 1..={n}: {extra:?}");
}

fn ndjson(lines: usize) -> String {
    (1..=lines)
        .map(|i| format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n"))
        .collect()
}

#[test]
fn file_to_kafka_delivers_every_record_with_its_key_and_headers_into_a_created_topic() {
    let broker = Kafka::shared();
    let n = unique("files");
    let topic = format!("{n}.events");
    let ws = workspace();
    ws.write("data/events.ndjson", &ndjson(2000));
    let cfg = ws.write(
        "files.toml",
        &format!(
            r#"
name = "{n}"
[source]
type = "file"
[source.streams.events]
path = "data/events.ndjson"
format = "ndjson"
primary_key = ["id"]
[sink]
type = "kafka"
brokers = "{}"
partitions = 3
compression = "lz4"
"#,
            broker.brokers()
        ),
    );
    let o = ws.run(&["run", "--once", "--no-progress", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);

    assert_eq!(broker.watermarks(&topic).len(), 3, "3 partitions");
    let msgs = broker.read_all(&topic);
    assert_ids(&key_counts(&msgs), 2000, 1);
    for m in &msgs {
        let v = m.json();
        let id = v["id"].as_i64().unwrap();
        assert_eq!(m.key.as_deref(), Some(id.to_string().as_str()));
        assert_eq!(v["name"], format!("n{id}"));
        assert_eq!(v["_stream"], "events");
        assert_eq!(v["_load_mode"], "INITIAL_LOAD");
        let names: Vec<&str> = m.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "tributary.connector",
                "tributary.stream",
                "tributary.load_mode",
                "tributary.ingested_at"
            ]
        );
        assert_eq!(m.header("tributary.connector"), Some(n.as_str()));
        assert_eq!(m.header("tributary.stream"), Some("events"));
        assert_eq!(m.header("tributary.load_mode"), Some("INITIAL_LOAD"));
        assert_eq!(
            m.header("tributary.ingested_at"),
            v["_ingested_at"].as_str(),
            "the header and the metadata field are the same instant"
        );
    }
    // Same key, same partition: a key's records stay in order.
    let mut partition_of = BTreeMap::new();
    for m in &msgs {
        assert_eq!(
            *partition_of.entry(m.key.clone()).or_insert(m.partition),
            m.partition
        );
    }

    // Resumes from the committed checkpoint: nothing new to send.
    let o = ws.run(&["run", "--once", "--no-progress", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(broker.read_all(&topic).len(), 2000);
}

#[test]
fn generator_to_kafka_with_state_in_kafka_survives_a_restart_and_reads_as_plain_json() {
    let broker = Kafka::shared();
    let n = unique("gen");
    let people = unique("people");
    let state_topic = unique("offsets");
    let ws = workspace();
    let cfg = ws.write(
        "gen.toml",
        &format!(
            r#"
name = "{n}"
[source]
type = "generator"
seed = 3
[source.streams.users]
record_type = "user"
total = 3000
[streams.users]
target = "{people}"
[state]
url = "kafka://{}/{state_topic}"
[sink]
type = "kafka"
brokers = "{}"
"#,
            broker.brokers(),
            broker.brokers()
        ),
    );
    let users_key = format!(r#"["{n}","users"]"#);
    let cfg = cfg.to_str().unwrap();
    let o = ws.run(&["run", "--once", "--no-progress", cfg]);
    assert_exit(&o, 0);
    let msgs = broker.read_all(&people);
    assert_ids(&key_counts(&msgs), 3000, 1);
    assert_eq!(msgs[0].header("tributary.stream"), Some("users"));

    // The state topic: compacted (as Kafka's topic tool describes it),
    // readable by any consumer as JSON.
    let described = broker.tool(
        "org.apache.kafka.tools.TopicCommand",
        &["--describe", "--topic", &state_topic],
    );
    assert!(
        described.contains("cleanup.policy=compact") && described.contains("PartitionCount: 1"),
        "{described}"
    );
    let state = broker.read_all(&state_topic);
    let checkpoints: Vec<Value> = state
        .iter()
        .filter(|m| m.key.as_deref() == Some(users_key.as_str()))
        .map(Msg::json)
        .collect();
    let last = checkpoints.last().expect("a checkpoint message");
    assert_eq!(last["stream"], "users");
    assert_eq!(last["checkpoint"], json!({"next": 3000}));
    assert!(last["committed_at"].is_string() && last["advanced_at"].is_string());
    let owners: Vec<Value> = state
        .iter()
        .filter(|m| m.key.as_deref() == Some(format!(r#"["{n}"]"#).as_str()))
        .map(Msg::json)
        .collect();
    assert_eq!(owners.len(), 1, "one claim per run");
    assert!(owners[0]["instance"].is_string() && owners[0]["pid"].is_number());

    // A restart resumes from the state in Kafka: nothing is produced again.
    let o = ws.run(&["run", "--once", "--no-progress", cfg]);
    assert_exit(&o, 0);
    assert_eq!(broker.read_all(&people).len(), 3000);
    let o = ws.run(&["state", "get", cfg, "--stream", "users"]);
    assert_exit(&o, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!({"next": 3000})
    );
    let o = ws.run(&["state", "list", cfg]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains(&format!(
            "state in kafka://{}/{state_topic}",
            broker.brokers()
        )),
        "{}",
        stdout(&o)
    );

    // A reset writes a tombstone; the next run starts over.
    let o = ws.run(&["state", "reset", cfg, "--stream", "users"]);
    assert_exit(&o, 0);
    let last = broker
        .read_all(&state_topic)
        .into_iter()
        .rfind(|m| m.key.as_deref() == Some(users_key.as_str()))
        .unwrap();
    assert_eq!(last.value, None, "a tombstone");
    let o = ws.run(&["run", "--once", "--no-progress", cfg]);
    assert_exit(&o, 0);
    assert_ids(&key_counts(&broker.read_all(&people)), 3000, 2);
}

/// A generator connector called `name` writing `{name}.users` at 10k
/// records/s, its state in the Kafka topic `state_topic` if one is given.
fn rated_generator(
    broker: &Kafka,
    name: &str,
    total: Option<u64>,
    state_topic: Option<&str>,
) -> String {
    let total = total.map(|t| format!("total = {t}")).unwrap_or_default();
    let state = state_topic
        .map(|t| format!("[state]\nurl = \"kafka://{}/{t}\"\n", broker.brokers()))
        .unwrap_or_default();
    format!(
        r#"
name = "{name}"
[source]
type = "generator"
seed = 7
[source.streams.users]
record_type = "user"
rate = 10000
{total}
[runtime]
batch_size = 100
flush_records = 1000
flush_interval = "50ms"
max_retries = 30
backoff_max = "1s"
{state}
[sink]
type = "kafka"
brokers = "{}"
message_timeout = "5s"
"#,
        broker.brokers()
    )
}

#[test]
fn kill_9_mid_run_then_restart_loses_nothing_and_duplicates_only_the_unacknowledged_tail() {
    let broker = Kafka::shared();
    let n = unique("gen");
    let state_topic = unique("offsets");
    let ws = workspace();
    let total = 24_000u64;
    let cfg = ws.write(
        "gen.toml",
        &rated_generator(&broker, &n, Some(total), Some(&state_topic)),
    );
    let cfg = cfg.to_str().unwrap();
    let kills = [700u64, 900, 1200];
    for after in kills {
        let mut child = ws.spawn(&["run", cfg, "--no-progress"]);
        std::thread::sleep(Duration::from_millis(after));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);
    let seen = key_counts(&broker.read_all(&format!("{n}.users")));
    assert_none_missing(&seen, total as i64);
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= kills.len() * (1000 + 100),
        "{duplicates} duplicates after {} kills",
        kills.len()
    );
    let o = ws.run(&["state", "get", cfg, "--stream", "users"]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!({"next": total})
    );
}

#[test]
fn broker_stopped_mid_run_and_restarted_the_connector_waits_resumes_and_loses_nothing() {
    // A broker of its own: this test kills it.
    let mut broker = Kafka::start_own();
    broker.create_topic("gen.users", 1);
    let ws = workspace();
    let total = 20_000u64;
    let cfg = ws.write(
        "gen.toml",
        &rated_generator(&broker, "gen", Some(total), None),
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let child = ws.spawn(&["run", &cfg, "--no-progress"]);
    wait_until(Duration::from_secs(60), "some records delivered", || {
        broker.ends("gen.users").get(&0).copied().unwrap_or(0) >= 3000
    });
    broker.stop();
    // Down for longer than message_timeout (5s): deliveries fail, the
    // runtime backs off and the sink sends them again, until it is back.
    std::thread::sleep(Duration::from_secs(7));
    broker.restart();
    let out = wait_output(child, Duration::from_secs(180));
    assert_exit(&out, 0);
    let seen = broker.read_all("gen.users");
    let seen = key_counts(&seen);
    assert_none_missing(&seen, total as i64);
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= 2 * (1000 + 100),
        "{duplicates} duplicates after one outage"
    );
    let err = stderr(&out);
    assert!(
        err.contains("not delivered") && err.contains("they are sent again"),
        "the outage is visible in the log:\n{err}"
    );
}

#[test]
fn a_record_the_broker_rejects_goes_to_the_dead_letter_topic_with_its_context() {
    let broker = Kafka::shared();
    let n = unique("files");
    let ws = workspace();
    let big = "x".repeat(20_000);
    ws.write(
        "data/events.ndjson",
        &format!("{{\"id\": 1}}\n{{\"id\": 2, \"blob\": \"{big}\"}}\n{{\"id\": 3}}\n"),
    );
    let config = |policy: &str| {
        format!(
            r#"
name = "{n}"
[source]
type = "file"
[source.streams.events]
path = "data/events.ndjson"
format = "ndjson"
primary_key = ["id"]
[bad_records]
policy = "{policy}"
[sink]
type = "kafka"
brokers = "{}"
[sink.properties]
"message.max.bytes" = 10000
"#,
            broker.brokers()
        )
    };
    // `fail`: the connector stops, naming the topic, and commits nothing.
    let cfg = ws.write("fail.toml", &config("fail"));
    let o = ws.run(&["run", "--once", "--no-progress", cfg.to_str().unwrap()]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "topic `{n}.events` rejected a record of stream `events`"
        )) && err.contains("bad-record policy is `fail`"),
        "{err}"
    );
    let o = ws.run(&["state", "get", cfg.to_str().unwrap()]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!({})
    );

    let cfg = ws.write("dlq.toml", &config("dead_letter"));
    let o = ws.run(&["run", "--once", "--no-progress", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    let ids: Vec<i64> = broker
        .read_all(&format!("{n}.events"))
        .iter()
        .map(|m| m.json()["id"].as_i64().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ids, [1, 3]);
    let dead = broker.read_all(&format!("{n}.dead_letter"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d.key.as_deref(), Some("2"));
    assert_eq!(d.header("tributary.stream"), Some("events"));
    assert_eq!(d.header("tributary.connector"), Some(n.as_str()));
    assert_eq!(
        d.header("tributary.dlq.target"),
        Some(format!("{n}.events").as_str())
    );
    let error = d.header("tributary.dlq.error").unwrap();
    assert!(error.contains("too large"), "{error}");
    assert!(d.header("tributary.dlq.at").is_some());
    // Cut to fit the dead-letter topic, and saying so.
    let original: usize = d
        .header("tributary.dlq.original_size")
        .unwrap()
        .parse()
        .unwrap();
    assert!(original > 20_000, "{original}");
    let value = d.value.as_deref().unwrap();
    assert!(
        value.len() < 10_000 && value.starts_with('{'),
        "{}",
        value.len()
    );
    assert!(stderr(&o).contains("dead-lettered a record the broker rejected"));
}

#[test]
fn a_missing_topic_with_creation_off_and_a_reserved_property_are_clear_errors() {
    let broker = Kafka::shared();
    let n = unique("c");
    let ws = workspace();
    ws.write("data/e.ndjson", &ndjson(3));
    let cfg = ws.write(
        "c.toml",
        &format!(
            r#"
name = "{n}"
[source]
type = "file"
[source.streams.e]
path = "data/e.ndjson"
format = "ndjson"
[sink]
type = "kafka"
brokers = "{}"
create_topics = false
"#,
            broker.brokers()
        ),
    );
    let o = ws.run(&["run", "--once", "--no-progress", cfg.to_str().unwrap()]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains(&format!(
            "topic `{n}.e` does not exist and [sink] create_topics = false"
        )),
        "{}",
        stderr(&o)
    );
    assert!(!broker.topics().contains(&format!("{n}.e")));

    let cfg = ws.write(
        "r.toml",
        "name = \"r\"\n[source]\ntype = \"file\"\n[source.streams.e]\npath = \"data/e.ndjson\"\n\n[sink]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\n[sink.properties]\nacks = \"1\"\n\"sasl.password\" = \"pw-secret-123\"\n",
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("r.toml:11"), "{err}");
    assert!(
        err.contains("`acks` cannot be set here: it is always `all`"),
        "{err}"
    );
    assert!(!err.contains("pw-secret-123"), "{err}");
}

#[test]
fn a_second_instance_of_a_connector_is_fenced_and_the_first_stops_with_a_clear_message() {
    let broker = Kafka::shared();
    let n = unique("gen");
    let state_topic = unique("offsets");
    let ws = workspace();
    let cfg = ws.write(
        "gen.toml",
        &rated_generator(&broker, &n, None, Some(&state_topic)),
    );
    let cfg = cfg.to_str().unwrap();
    let users_key = format!(r#"["{n}","users"]"#);
    let first = ws.spawn(&["run", cfg, "--no-progress"]);
    wait_until(
        Duration::from_secs(30),
        "the first instance commits",
        || {
            broker
                .read_all(&state_topic)
                .iter()
                .any(|m| m.key.as_deref() == Some(users_key.as_str()))
        },
    );
    let second = ws.spawn(&["run", cfg, "--no-progress"]);
    let out = wait_output(first, Duration::from_secs(60));
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("connector `{n}` was claimed by another instance"))
            && err.contains("this instance stops"),
        "{err}"
    );
    // The second goes on writing and committing; it stops cleanly.
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&second);
    let out = wait_output(second, Duration::from_secs(60));
    assert_exit(&out, 0);
    let seen = key_counts(&broker.read_all(&format!("{n}.users")));
    let o = ws.run(&["state", "get", cfg, "--stream", "users"]);
    let next = serde_json::from_str::<Value>(&stdout(&o)).unwrap()["next"]
        .as_i64()
        .unwrap();
    assert!(next > 0);
    assert!(
        (1..=next).all(|i| seen.contains_key(&i)),
        "every record before the committed checkpoint is in the topic"
    );
}

#[test]
fn kafka_source_to_file_commits_group_offsets_only_after_the_sink() {
    let broker = Kafka::shared();
    let orders = unique("orders");
    let group = unique("billing");
    broker.create_topic(&orders, 2);
    let produce = |from: usize, to: usize| {
        let values: Vec<String> = (from..=to)
            .map(|i| format!("{{\"order_id\": {i}, \"total\": {}}}", i * 10))
            .collect();
        let keys: Vec<String> = (from..=to).map(|i| i.to_string()).collect();
        let msgs: Vec<Outgoing<'_>> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| {
                (
                    Some(k.as_str()),
                    Some(v.as_str()),
                    &[("origin", "test")][..],
                )
            })
            .collect();
        broker.produce(&orders, &msgs);
    };
    produce(1, 100);
    broker.produce(&orders, &[(Some("bad"), Some("not json"), &[])]);
    let ws = workspace();
    let cfg = ws.write(
        "k.toml",
        &format!(
            r#"
name = "k"
[source]
type = "kafka"
brokers = "{}"
topics = ["{orders}"]
group_id = "{group}"
stop_at_end = true
[bad_records]
policy = "skip"
[sink]
type = "file"
dir = "out"
format = "envelope"
"#,
            broker.brokers()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let o = ws.run(&["run", "--once", "--no-progress", cfg]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("skipped bad record"), "{}", stderr(&o));
    let out = ws.output("out", &format!("k.{orders}"));
    assert_eq!(out.len(), 100);
    let ends = broker.ends(&orders);
    for line in &out {
        let id = line["value"]["order_id"].as_i64().unwrap();
        assert_eq!(line["key"], json!(id));
        assert_eq!(line["value"]["total"], json!(id * 10));
        let h: BTreeMap<String, String> = line["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
            .collect();
        assert_eq!(h["origin"], "test");
        assert_eq!(h["kafka.topic"], orders);
        assert_eq!(h["kafka.key"], id.to_string());
        let partition: i32 = h["kafka.partition"].parse().unwrap();
        let offset: i64 = h["kafka.offset"].parse().unwrap();
        assert!(offset < ends[&partition]);
        assert!(h["kafka.timestamp"].parse::<i64>().unwrap() > 1_600_000_000_000);
    }
    // The group's offsets are the checkpoint's: every partition's end, as
    // librdkafka and Kafka's own consumer-group tool both report them.
    let expected = ends.clone();
    assert_eq!(broker.committed(&group, &orders), expected);
    let described = broker.tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &["--describe", "--group", &group],
    );
    let from_tool: BTreeMap<i32, i64> = described
        .lines()
        .filter_map(|l| {
            // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[1] == orders).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .collect();
    assert_eq!(from_tool, expected, "{described}");
    let o = ws.run(&["state", "get", cfg, "--stream", &orders]);
    let cp: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let cp: BTreeMap<i32, i64> = cp["partitions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, o)| (p.parse().unwrap(), o.as_i64().unwrap()))
        .collect();
    assert_eq!(cp, expected);

    // Only new messages on the next run.
    produce(101, 110);
    let o = ws.run(&["run", "--once", "--no-progress", cfg]);
    assert_exit(&o, 0);
    let out = ws.output("out", &format!("k.{orders}"));
    let ids: Vec<i64> = out
        .iter()
        .map(|l| l["value"]["order_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 110);
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, (1..=110).collect::<Vec<_>>());
}

#[test]
fn state_set_export_import_and_reset_round_trip_on_the_kafka_backend() {
    let broker = Kafka::shared();
    let state_topic = unique("offsets");
    let ws = workspace();
    let cfg = ws.write(
        "gen.toml",
        &format!(
            r#"
name = "gen"
[source]
type = "generator"
seed = 3
[source.streams.users]
record_type = "user"
total = 500
[state]
url = "kafka://{}/{state_topic}"
[sink]
type = "file"
dir = "out"
"#,
            broker.brokers()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    assert_exit(&ws.run(&["run", "--once", "--no-progress", cfg]), 0);
    let get = |ws: &Workspace| {
        let o = ws.run(&["state", "get", cfg, "--stream", "users"]);
        assert_exit(&o, 0);
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()
    };
    assert_eq!(get(&ws), json!({"next": 500}));

    let o = ws.run(&["state", "export", cfg]);
    assert_exit(&o, 0);
    let backup: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(backup["connector"], "gen");
    assert_eq!(backup["streams"][0]["checkpoint"], json!({"next": 500}));
    ws.write("backup.json", &stdout(&o));

    let set = [
        "state",
        "set",
        cfg,
        "--stream",
        "users",
        "--json",
        r#"{"next": 100}"#,
    ];
    let mut dry = set.to_vec();
    dry.push("--dry-run");
    let o = ws.run(&dry);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("next: 500 -> 100"), "{}", stdout(&o));
    assert_eq!(get(&ws), json!({"next": 500}), "a dry run changes nothing");
    assert_exit(&ws.run(&set), 0);
    assert_eq!(get(&ws), json!({"next": 100}));

    // The rollback restores the backup exactly, times included.
    assert_exit(&ws.run(&["state", "import", cfg, "backup.json"]), 0);
    assert_eq!(get(&ws), json!({"next": 500}));
    let o = ws.run(&["state", "export", cfg]);
    let again: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(again["streams"], backup["streams"]);

    // A reset is a tombstone: the stream has no checkpoint, and a run starts over.
    assert_exit(&ws.run(&["state", "reset", cfg, "--stream", "users"]), 0);
    assert_exit(&ws.run(&["state", "get", cfg, "--stream", "users"]), 1);
    assert_exit(&ws.run(&["run", "--once", "--no-progress", cfg]), 0);
    assert_eq!(get(&ws), json!({"next": 500}));
    assert_eq!(ws.output("out", "gen.users").len(), 1000);
}

#[test]
fn kafka_messages_are_written_on_one_line_and_only_if_strict_parsers_accept_them() {
    let broker = Kafka::shared();
    let topic = unique("pretty");
    broker.create_topic(&topic, 1);
    broker.produce(
        &topic,
        &[
            (
                Some("1"),
                Some("{\n  \"id\": 1,\n  \"v\": \"x  y\"\n}\n"),
                &[],
            ),
            (Some("2"), Some("{\"id\": 2, \"v\": 1e999}"), &[]),
            (Some("3"), Some("{\"id\": 3, \"s\": \"\\ud800\"}"), &[]),
            (Some("4"), Some("{\"id\":4}"), &[]),
            (Some("5"), Some("not json"), &[]),
        ],
    );
    let ws = workspace();
    let cfg = ws.write(
        "k.toml",
        &format!(
            r#"
name = "k"
[source]
type = "kafka"
brokers = "{}"
topics = ["{topic}"]
group_id = "{}"
stop_at_end = true
[bad_records]
policy = "dead_letter"
dead_letter_path = "dlq.ndjson"
[sink]
type = "file"
dir = "out"
"#,
            broker.brokers(),
            unique("g")
        ),
    );
    let o = ws.run(&["run", "--once", "--no-progress", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    // Each line as the record's own text, before the added metadata fields.
    let own = |line: &String| format!("{}}}", line.split(",\"_stream\":").next().unwrap());
    assert_eq!(
        ws.output_lines("out", &format!("k.{topic}"))
            .iter()
            .map(own)
            .collect::<Vec<_>>(),
        [r#"{"id":1,"v":"x  y"}"#, r#"{"id":4}"#]
    );
    let dl: BTreeMap<String, (String, String)> = std::fs::read_to_string(ws.path("dlq.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            let d: Value = serde_json::from_str(l).unwrap();
            (
                d["location"].as_str().unwrap().to_string(),
                (
                    d["error"].as_str().unwrap().to_string(),
                    d["raw"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let at = |offset: u32| dl[&format!("{topic}/0@{offset}")].clone();
    assert_eq!(
        at(1),
        (
            "value: the record holds a number beyond the range of a double, which strict JSON parsers refuse".to_string(),
            r#"{"id": 2, "v": 1e999}"#.to_string()
        )
    );
    assert!(
        at(2).0.contains("a lone UTF-16 surrogate escape"),
        "{:?}",
        at(2)
    );
    assert!(at(4).0.starts_with("value is not JSON"), "{:?}", at(4));
    assert_eq!(dl.len(), 3);
}
