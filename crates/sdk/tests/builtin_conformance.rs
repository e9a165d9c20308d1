//! The built-in sources pass the same conformance kit a connector author
//! runs: each built from the `tributary` binary's own registry, against
//! the real thing (files on disk, PostgreSQL, the REST, ChargeOver, Stripe
//! and WebSocket simulators on 127.0.0.1, Apache Kafka, Mosquitto, the
//! Fivetran Connector SDK and singer-python from PyPI). A check that cannot
//! apply is waived with its reason (`Kit::without`), and the test shows the
//! waived check failing for that reason. The table is in docs/sdk.md.

use tributary_sdk::conformance::Kit;
use tributary_testkit::sim::rest::{RestSim, RestSimConfig};

fn builtin(name: &str) -> tributary_sdk::SourceType {
    tributary_sdk::internals::sources::builtin()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no built-in source type `{name}`"))
}

#[tokio::test]
async fn generator_passes() {
    let config = r#"name = "gen"
[source]
type = "generator"
seed = 7
[source.streams.users]
record_type = "user"
total = 45
batch_size = 10
[sink]
type = "stdout"
"#;
    Kit::new(builtin("generator"), config)
        .stream("users")
        .assert_all()
        .await;
}

#[tokio::test]
async fn file_passes_for_ndjson_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let mut ndjson = String::new();
    let mut csv = String::from("id,name\n");
    for i in 0..47 {
        ndjson.push_str(&format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n"));
        csv.push_str(&format!("{i},n{i}\n"));
    }
    // One malformed line: a bad record, not a panic.
    ndjson.push_str("{not json\n");
    std::fs::write(dir.path().join("a.ndjson"), &ndjson).unwrap();
    std::fs::write(dir.path().join("b.ndjson"), &ndjson).unwrap();
    std::fs::write(dir.path().join("c.csv"), &csv).unwrap();
    let config = format!(
        r#"name = "files"
[source]
type = "file"
[source.streams.events]
path = "{dir}/*.ndjson"
format = "ndjson"
primary_key = ["id"]
batch_size = 9
[source.streams.rows]
path = "{dir}/c.csv"
primary_key = ["id"]
batch_size = 9
[sink]
type = "stdout"
"#,
        dir = dir.path().display()
    );
    Kit::new(builtin("file"), config.clone())
        .stream("events")
        .assert_all()
        .await;
    Kit::new(builtin("file"), config)
        .stream("rows")
        .assert_all()
        .await;
}

#[tokio::test]
async fn http_with_an_id_cursor_passes_against_the_rest_simulator() {
    let sim = RestSim::start_with(RestSimConfig {
        items: 55,
        ..RestSimConfig::default()
    })
    .await;
    let config = format!(
        r#"name = "api"
[source]
type = "http"
base_url = "{}"
[source.streams.items]
path = "/items/keyset"
params = {{ after_id = "{{{{ last_id }}}}", limit = "10" }}
records = "data"
primary_key = ["id"]
incremental = {{ type = "id", cursor_field = "id" }}
[sink]
type = "stdout"
"#,
        sim.base_url()
    );
    Kit::new(builtin("http"), config)
        .stream("items")
        .assert_all()
        .await;
}

#[tokio::test]
async fn sql_with_an_id_cursor_passes_against_postgres() {
    use tributary_testkit::postgres;
    let schema = postgres::unique_schema("sdk_conf");
    let mut conn = postgres::connect().await;
    for sql in [
        format!("CREATE SCHEMA \"{schema}\""),
        format!("CREATE TABLE \"{schema}\".items (id bigint PRIMARY KEY, name text NOT NULL)"),
        format!(
            "INSERT INTO \"{schema}\".items SELECT i, 'item ' || i FROM generate_series(1, 57) i"
        ),
    ] {
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    let config = format!(
        r#"name = "db"
[source]
type = "sql"
url = "{url}"
fetch_size = 10
[source.streams.items]
table = "{schema}.items"
incremental = {{ column = "id", kind = "id" }}
[runtime]
batch_size = 10
[sink]
type = "stdout"
"#,
        url = postgres::url()
    );
    let result = Kit::new(builtin("sql"), config)
        .stream("items")
        .run_all()
        .await;
    postgres::drop_schema(&schema);
    if let Err(v) = result {
        panic!("{v:#?}");
    }
}

/// A record by key, target, op and value without the fields that change
/// from one read to the next (an ingestion time).
fn identity_without(fields: &'static [&'static str]) -> impl Fn(&tributary_sdk::Record) -> String {
    move |r| {
        let mut v: serde_json::Value = serde_json::from_str(&r.value.to_json_string()).unwrap();
        if let Some(m) = v.as_object_mut() {
            for f in fields {
                m.remove(*f);
            }
        }
        format!(
            "{}|{}|{}|{:?}",
            r.key.as_ref().map(|k| k.to_string()).unwrap_or_default(),
            v,
            r.target.as_deref().unwrap_or(""),
            r.op
        )
    }
}

#[tokio::test]
async fn chargeover_passes_against_the_chargeover_simulator() {
    use tributary_testkit::sim::chargeover::ChargeOverSim;
    let sim = ChargeOverSim::start("api-user", "s3cret-Pa55word").await;
    let from = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    sim.generate("customer", 47, from, chrono::Duration::hours(7));
    let config = format!(
        r#"name = "billing"
[source]
type = "chargeover"
base_url = "{}"
username = "api-user"
password = "s3cret-Pa55word"
entities = ["customer"]
batch_size = 10
initial_datetime = {{ customer = "2024-01-01 00:00:00" }}
[sink]
type = "stdout"
"#,
        sim.base_url()
    );
    let observed = sim.clone();
    Kit::new(builtin("chargeover"), config)
        .stream("customer")
        .identity(identity_without(&["_ingestion_timestamp"]))
        .observe(move || {
            let records = format!("{:?}", observed.records("customer"));
            async move { records }
        })
        .assert_all()
        .await;
}

#[tokio::test]
async fn stripe_reporting_passes_against_the_stripe_simulator() {
    use chrono::TimeZone;
    use tributary_testkit::sim::StripeSim;
    let sim = StripeSim::start("sk_test_51Hx9secretKEY0000").await;
    let day = |d| chrono::Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap();
    sim.set_report_type("balance.summary.1", day(1), day(4));
    sim.add_transactions(1, 53, day(1), chrono::Duration::minutes(70));
    let config = format!(
        r#"name = "stripe"
[source]
type = "stripe_reporting"
api_key = "sk_test_51Hx9secretKEY0000"
base_url = "{base}"
files_url = "{base}"
report_types = ["balance.summary.1"]
key_columns = {{ "balance.summary.1" = ["balance_transaction_id"] }}
poll_interval = "20ms"
poll_interval_max = "50ms"
failure_backoff = "20ms"
[runtime]
batch_size = 10
[sink]
type = "stdout"
"#,
        base = sim.base_url()
    );
    let observed = sim.clone();
    Kit::new(builtin("stripe_reporting"), config)
        .stream("balance.summary.1.UTC")
        .observe(move || {
            let runs = format!("{:?}", observed.runs());
            async move { runs }
        })
        .assert_all()
        .await;
}

#[tokio::test]
async fn kafka_passes_against_the_shared_broker() {
    use std::sync::Arc;
    use tributary_testkit::kafka::{self, Kafka};
    let broker = Arc::new(tokio::task::spawn_blocking(Kafka::shared).await.unwrap());
    let topic = kafka::unique("sdk-conf");
    let group = kafka::unique("sdk-conf-group");
    // One partition: the kit compares records in order, and the order of
    // two partitions' messages is not fixed from one read to the next.
    let values: Vec<(String, String)> = (0..43)
        .map(|i| {
            (
                i.to_string(),
                format!("{{\"id\": {i}, \"name\": \"n{i}\"}}"),
            )
        })
        .collect();
    {
        let (broker, topic) = (broker.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            broker.create_topic(&topic, 1);
            let mut messages: Vec<kafka::Outgoing<'_>> = values
                .iter()
                .map(|(k, v)| (Some(k.as_str()), Some(v.as_str()), &[][..]))
                .collect();
            // A value that is not JSON: a bad record, not a panic.
            messages.insert(20, (Some("bad"), Some("{not json"), &[][..]));
            broker.produce(&topic, &messages);
        })
        .await
        .unwrap();
    }
    let config = format!(
        r#"name = "copy"
[source]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
stop_at_end = true
[runtime]
batch_size = 10
[sink]
type = "stdout"
"#,
        brokers = broker.brokers()
    );
    // The kit commits as the runtime does, and a commit moves the
    // group's offsets, where a reader without a checkpoint starts: each
    // trial starts with no group, as a new connector does.
    let resets = broker.clone();
    Kit::new(builtin("kafka"), config)
        .stream(topic.as_str())
        .reset(move || {
            let (broker, group) = (resets.clone(), group.clone());
            async move {
                tokio::task::spawn_blocking(move || broker.delete_group(&group))
                    .await
                    .unwrap();
            }
        })
        .assert_all()
        .await;
}

#[tokio::test]
async fn mqtt_passes_against_mosquitto_with_a_persistent_session() {
    use tributary_testkit::mqtt::{self, Message};
    let prefix = mqtt::unique("sdk-conf");
    let client_id = format!("{prefix}-reader");
    let config = format!(
        r#"name = "iot"
[source]
type = "mqtt"
url = "mqtt://{host}:{port}"
client_id = "{client_id}"
batch_size = 10
[[source.topic_mappings]]
source_pattern = "{prefix}/#"
[sink]
type = "stdout"
"#,
        host = mqtt::HOST,
        port = mqtt::PORT
    );
    // The broker's session, not the checkpoint, is where an MQTT reader
    // resumes: each trial starts a fresh session holding the same 37
    // QoS 1 messages (one of them not JSON).
    let reset = move || {
        let (client_id, prefix) = (client_id.clone(), prefix.clone());
        async move {
            mqtt::fresh_session(&client_id, &format!("{prefix}/#")).await;
            let mut messages: Vec<Message> = (0..36)
                .map(|i| {
                    Message::new(
                        format!("{prefix}/sensor{}", i % 3),
                        format!("{{\"id\": {i}, \"celsius\": {}}}", 20 + i % 7),
                    )
                })
                .collect();
            messages.insert(17, Message::new(format!("{prefix}/sensor0"), "{not json"));
            mqtt::publish(&messages).await;
        }
    };
    Kit::new(builtin("mqtt"), config)
        .stream("messages")
        .reset(reset)
        .assert_all()
        .await;
}

#[tokio::test]
async fn websocket_with_a_resume_field_passes_against_the_websocket_simulator() {
    use std::sync::Arc;
    use tributary_testkit::sim::websocket::{WsSim, WsSimConfig};
    // A server that starts the feed on a subscription message, from the
    // resume point the message names (`"since": N`).
    let sim = Arc::new(
        WsSim::start(WsSimConfig {
            total: 46,
            require_subscription: true,
            malformed: vec![23],
            ..WsSimConfig::default()
        })
        .await,
    );
    let config = format!(
        r#"name = "ticks"
[source]
type = "websocket"
url = "{url}"
subscribe = [{{ op = "subscribe", since = "{{{{ resume }}}}" }}]
resume_field = "seq"
id_field = "id"
batch_size = 10
[sink]
type = "stdout"
"#,
        url = sim.url()
    );
    // A subscription without a resume point gets what no connection was
    // sent yet; the reset makes the server replay from the start, as for
    // a new client.
    let (rewind, observed) = (sim.clone(), sim.clone());
    Kit::new(builtin("websocket"), config)
        .stream("messages")
        .reset(move || {
            rewind.rewind();
            async {}
        })
        .observe(move || {
            // Messages the server sent, over all connections.
            let sent: u64 = observed.connections().iter().map(|c| c.sent).sum();
            async move { format!("{sent} messages sent") }
        })
        .assert_all()
        .await;
}

#[tokio::test]
async fn websocket_without_a_resume_point_passes_what_a_live_feed_can() {
    use std::sync::Arc;
    use tributary_sdk::conformance::Check;
    use tributary_testkit::sim::websocket::{WsSim, WsSimConfig};
    let sim = Arc::new(
        WsSim::start(WsSimConfig {
            total: 41,
            require_subscription: true,
            ..WsSimConfig::default()
        })
        .await,
    );
    // No `resume_field`: nothing tells the server where a restarted
    // reader was, so it gets the feed from now on.
    let config = format!(
        r#"name = "live"
[source]
type = "websocket"
url = "{url}"
subscribe = [{{ op = "subscribe", channels = ["trades", "quotes"] }}]
id_field = "id"
batch_size = 10
[sink]
type = "stdout"
"#,
        url = sim.url()
    );
    let rewind = sim.clone();
    let why = "a live feed without resume_field: the server does not replay, so a restarted reader starts at the live edge";
    let kit = Kit::new(builtin("websocket"), config)
        .stream("messages")
        .reset(move || {
            rewind.rewind();
            async {}
        })
        .without(Check::RestartContinuesExactly, why)
        .without(Check::ResumeAfterCrash, why);
    kit.assert_all().await;
    // The waivers are real: the checks fail when run.
    let m = kit
        .restart_continues_exactly()
        .await
        .unwrap_err()
        .to_string();
    assert!(m.contains("(records are missing)"), "{m}");
    let m = kit.resume_after_crash().await.unwrap_err().to_string();
    assert!(m.contains("it is lost"), "{m}");
}

/// The Fivetran Connector SDK from PyPI (scripts/setup's virtualenv),
/// running a connector that checkpoints every 5 rows.
fn fivetran_kit(dir: &std::path::Path, source_extra: &str) -> Kit {
    let python = tributary_testkit::cli::tool("fivetran/bin/python");
    std::fs::write(
        dir.join("connector.py"),
        r#"
from fivetran_connector_sdk import Connector, Operations as op

def update(configuration, state):
    start = state.get("next", 1)
    for i in range(start, 44):
        op.upsert("t", {"id": i, "name": "n%d" % i})
        if i % 5 == 0:
            yield op.checkpoint({"next": i + 1})
    yield op.checkpoint({"next": 44})

connector = Connector(update=update, schema=lambda c: [{"table": "t", "primary_key": ["id"]}])
"#,
    )
    .unwrap();
    let config = format!(
        r#"name = "ft"
[source]
type = "fivetran"
python = "{python}"
project = "{project}"
{source_extra}
[sink]
type = "stdout"
"#,
        python = python.display(),
        project = dir.display()
    );
    Kit::new(builtin("fivetran"), config)
        .stream("sync")
        .poll_timeout(std::time::Duration::from_secs(120))
}

#[tokio::test]
async fn fivetran_bridge_trusting_checkpoints_passes_with_a_connector_sdk_script() {
    let dir = tempfile::tempdir().unwrap();
    fivetran_kit(dir.path(), "trust_checkpoints = true")
        .assert_all()
        .await;
}

#[tokio::test]
async fn fivetran_bridge_by_default_re_reads_one_checkpoint_of_rows_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    // The default commits a checkpoint only once the connector has sent
    // the next one (a connector that checkpoints before its rows loses
    // nothing), so a batch's checkpoint is the one before its rows.
    let why = "by default a checkpoint is committed once the connector sent the next one: a restart re-reads the rows since the one before (duplicates, never a loss); trust_checkpoints = true passes";
    assert_re_reads_one_state(fivetran_kit(dir.path(), ""), why).await;
}

#[tokio::test]
async fn singer_bridge_re_reads_one_state_of_records_and_loses_none() {
    // A tap speaking the Singer protocol (discovery, catalog, --state,
    // SCHEMA/RECORD/STATE on stdout) with singer-python from PyPI (the
    // target-jsonl virtualenv scripts/setup makes), a STATE every 5 rows.
    let python = tributary_testkit::cli::tool("target-jsonl/bin/python");
    let dir = tempfile::tempdir().unwrap();
    let tap = dir.path().join("tap_numbers.py");
    std::fs::write(
        &tap,
        r#"
import argparse, json, singer

SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
p = argparse.ArgumentParser()
p.add_argument("--config"); p.add_argument("--catalog"); p.add_argument("--state")
p.add_argument("--discover", action="store_true")
a = p.parse_args()
if a.discover:
    print(json.dumps({"streams": [{"tap_stream_id": "numbers", "stream": "numbers", "schema": SCHEMA,
        "key_properties": ["id"], "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}]}]}))
else:
    state = json.load(open(a.state)) if a.state else {}
    start = state.get("bookmarks", {}).get("numbers", {}).get("next", 1)
    singer.write_schema("numbers", SCHEMA, ["id"])
    for i in range(start, 44):
        singer.write_record("numbers", {"id": i, "name": "n%d" % i})
        if i % 5 == 0:
            singer.write_state({"bookmarks": {"numbers": {"next": i + 1}}})
    singer.write_state({"bookmarks": {"numbers": {"next": 44}}})
"#,
    )
    .unwrap();
    let config = format!(
        r#"name = "sg"
[source]
type = "singer"
command = ["{python}", "{tap}"]
batch_size = 10
[sink]
type = "stdout"
"#,
        python = python.display(),
        tap = tap.display()
    );
    // A STATE is committed once the tap has sent the next one (or
    // exited 0): a tap that writes its STATE before the records it covers
    // loses nothing, and a restart re-reads the records since the STATE
    // before.
    let why = "a Singer STATE is committed once the tap has sent the next one: a restart re-reads the records since the one before (duplicates, never a loss)";
    assert_re_reads_one_state(Kit::new(builtin("singer"), config).stream("numbers"), why).await;
}

#[tokio::test]
async fn airbyte_bridge_re_reads_one_state_of_records_and_loses_none() {
    // The bridges' fixture connector as an Airbyte source (spec, check,
    // discover, read with --state), its every run reading to the end; it
    // sends each STATE before the records it covers.
    let script = tributary_testkit::cli::repo_root()
        .join("crates/cli/tests/fixtures/bridges/fake_connector.py");
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan");
    std::fs::write(&plan, "ok\n").unwrap();
    let config = format!(
        r#"name = "ab"
[source]
type = "airbyte"
command = ["python3", "{script}"]
config = {{ plan = "{plan}", total = 47, chunk = 10 }}
[runtime]
batch_size = 7
[sink]
type = "stdout"
"#,
        script = script.display(),
        plan = plan.display()
    );
    let why = "an Airbyte STATE is committed once the source has sent the next one: a restart re-reads the records since the one before (duplicates, never a loss)";
    assert_re_reads_one_state(Kit::new(builtin("airbyte"), config).stream("items"), why).await;
}

/// A bridge commits a STATE once the connector has sent the next one: the
/// restart, crash and cancel checks are waived for `why`, everything else
/// passes, and what the waived checks see is duplicates, never a loss.
async fn assert_re_reads_one_state(kit: Kit, why: &str) {
    use tributary_sdk::conformance::Check;
    let kit = kit
        .without(Check::RestartContinuesExactly, why)
        .without(Check::ResumeAfterCrash, why)
        .without(Check::CancelSafePoll, why);
    kit.assert_all().await;
    let m = kit
        .restart_continues_exactly()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        m.ends_with("(a record it had already given: a duplicate)"),
        "{m}"
    );
    let m = kit.resume_after_crash().await.unwrap_err().to_string();
    assert!(m.ends_with("which was committed before it"), "{m}");
    let m = kit.cancel_safe_poll().await.unwrap_err().to_string();
    assert!(
        m.ends_with("(a record it had already given: a duplicate)"),
        "{m}"
    );
}
