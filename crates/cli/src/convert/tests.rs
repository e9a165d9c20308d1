use super::*;
use std::path::PathBuf;
use std::time::Duration;

const SEED_JSON: &str = include_str!("../../tests/fixtures/convert/chargeover-source.json");
const SEED_PROPERTIES: &str =
    include_str!("../../tests/fixtures/convert/chargeover-source.properties");

fn run(name: &str, text: &str) -> Result<Converted, ConfigError> {
    convert(Path::new(name), text.as_bytes())
}

fn ok(name: &str, text: &str) -> Converted {
    run(name, text).unwrap_or_else(|e| panic!("{e}"))
}

/// The output without its header line, which names the input file.
fn body(c: &Converted) -> &str {
    c.toml.split_once('\n').unwrap().1
}

/// Loads the output as a connector file: the envelope must be valid.
fn load(c: &Converted) -> tributary_config::ConnectorConfig {
    let path = PathBuf::from("/nonexistent/converted.toml");
    tributary_config::load_str_with_env(&path, &c.toml, &|name| {
        (name == PASSWORD_ENV).then(|| "from-env".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.toml))
}

#[test]
fn seed_examples_load_as_connector_files() {
    for (name, text) in [
        ("seed.json", SEED_JSON),
        ("seed.properties", SEED_PROPERTIES),
    ] {
        let c = ok(name, text);
        let config = load(&c);
        assert_eq!(config.name, "chargeover-source");
        assert_eq!(config.topic_prefix, "chargeover");
        let Schedule::Cron(cron) = &config.schedule else {
            panic!("{:?}", config.schedule)
        };
        assert_eq!(cron.expression(), "0 0 2 * * ?");
        assert_eq!(cron.timezone().name(), "UTC");
        assert_eq!(config.source.kind, "chargeover");
        assert_eq!(config.source.table["password"].as_str(), Some("from-env"));
        assert_eq!(config.source.table["batch_size"].as_integer(), Some(500));
        assert_eq!(
            config.source.table["initial_datetime"]["subscription"].as_str(),
            Some("2024-01-01 00:00:00")
        );
        assert_eq!(config.sink.kind, "stdout");
        assert_eq!(config.runtime.poll_interval, Duration::from_secs(60));
        // Kafka Connect's per-request retries, not the connector-stopping budget.
        assert_eq!(config.runtime.request_retries, Some(3));
        assert_eq!(config.runtime.source_retries(), 3);
        assert_eq!(config.runtime.max_retries, 10);
    }
}

#[test]
fn json_and_properties_give_the_same_toml() {
    let j = ok("seed.json", SEED_JSON);
    let p = ok("seed.properties", SEED_PROPERTIES);
    assert_eq!(body(&j), body(&p));
    assert_eq!(j.notes, p.notes);
}

#[test]
fn the_bare_config_map_is_accepted() {
    let bare = r#"{ "name": "co", "chargeover.subdomain": "acme", "batch.size": 100 }"#;
    let c = ok("bare.json", bare);
    assert_eq!(
        body(&c),
        "name = \"co\"\n\n[source]\ntype = \"chargeover\"\nsubdomain = \"acme\"\nbatch_size = 100\n\n[sink]\ntype = \"stdout\"\n"
    );
    load(&c);
}

#[test]
fn content_not_extension_decides_the_format() {
    let c = ok(
        "connector.properties",
        "\u{feff}  {\"config\": {\"topic.prefix\": \"x\"}}",
    );
    assert!(c.toml.contains("topic_prefix = \"x\""), "{}", c.toml);
    let c = ok("connector.json", "topic.prefix = x\n");
    assert!(c.toml.contains("topic_prefix = \"x\""), "{}", c.toml);
}

#[test]
fn defaults_fill_the_schedule_and_the_name() {
    let c = ok("a.properties", "chargeover.timezone=America/New_York\n");
    assert_eq!(
        body(&c),
        "name = \"chargeover\"\nschedule = { cron = \"0 0 0 * * ?\", timezone = \"America/New_York\" }\n\n[source]\ntype = \"chargeover\"\ntimezone = \"America/New_York\"\n\n[sink]\ntype = \"stdout\"\n"
    );
    let c = ok("a.properties", "incremental.schedule.cron=0 0 */6 * * ?\n");
    assert!(c
        .toml
        .contains("schedule = { cron = \"0 0 */6 * * ?\", timezone = \"UTC\" }"));
    assert!(!c.toml.contains("\ntimezone"), "{}", c.toml);
}

#[test]
fn durations() {
    assert_eq!(millis_to_duration(60_000), "60s");
    assert_eq!(millis_to_duration(1_500), "1500ms");
    assert_eq!(millis_to_duration(1), "1ms");
    let c = ok("a.properties", "poll.interval.ms=1500\n");
    assert_eq!(load(&c).runtime.poll_interval, Duration::from_millis(1500));
}

#[test]
fn strings_are_escaped_and_never_expanded() {
    let c = ok(
        "a.properties",
        "chargeover.username=quote\\\"back\\\\slash ${HOME}\nchargeover.customer.query.params=a=\"1\"&b=${X}\n",
    );
    let config = load(&c);
    assert_eq!(
        config.source.table["username"].as_str(),
        Some("quote\"back\\slash ${HOME}")
    );
    assert_eq!(
        config.source.table["query_params"]["customer"].as_str(),
        Some("a=\"1\"&b=${X}")
    );
}

#[test]
fn invalid_names_are_made_valid() {
    let c = ok("a.properties", "name=ChargeOver Source/prod\n");
    assert!(c.toml.contains("name = \"ChargeOver-Source-prod\""));
    assert!(c.notes.iter().any(|n| n.contains("ChargeOver-Source-prod")));
    load(&c);
}

#[test]
fn query_params_follow_the_entity_order() {
    let c = ok(
        "a.properties",
        "chargeover.entities=payment,invoice\nchargeover.invoice.query.params=i\nchargeover.zeta.query.params=z\nchargeover.payment.query.params=p\n",
    );
    assert!(
        c.toml
            .contains("[source.query_params]\npayment = \"p\"\ninvoice = \"i\"\nzeta = \"z\"\n"),
        "{}",
        c.toml
    );
    assert!(c
        .notes
        .iter()
        .any(|n| n.contains("`zeta` is not in chargeover.entities")));
}

#[test]
fn unknown_keys_are_warned_about_with_suggestions() {
    let c = ok(
        "a.properties",
        "chargeover.timezon=UTC\nvalue.converter=org.apache.kafka.connect.json.JsonConverter\nchargeover.entities=customer\nchargeover.customer.query.param=a=1\n",
    );
    assert_eq!(
        c.notes[..3],
        [
            "warning: a.properties:1: ignoring unknown property `chargeover.timezon` (did you mean `chargeover.timezone`?)".to_string(),
            "warning: a.properties:2: ignoring unknown property `value.converter`".to_string(),
            "warning: a.properties:4: ignoring unknown property `chargeover.customer.query.param` (did you mean `chargeover.customer.query.params`?)".to_string(),
        ]
    );
    assert!(!c.toml.contains("timezone"));
}

#[test]
fn misspelled_required_properties_are_refused() {
    let e = run(
        "a.properties",
        "chargeover.subdomain=acme\nchargeover.usernme=api\nchargeover.password=pw\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "a.properties:2: chargeover.usernme: unknown property; the required property `chargeover.username` is missing (did you mean `chargeover.username`?)"
    );
    // With the property present too, the typo is only a leftover: a warning.
    let c = ok(
        "a.properties",
        "chargeover.subdomain=acme\nchargeover.username=api\nchargeover.usernme=api\n",
    );
    assert!(c.notes[0].contains("ignoring unknown property `chargeover.usernme`"));
}

#[test]
fn errors_name_the_property_and_line() {
    let e = |text: &str| run("a.properties", text).unwrap_err().to_string();
    assert_eq!(
        e("x=1\nbatch.size=lots\n"),
        "a.properties:2: batch.size: `lots` is not an integer"
    );
    assert_eq!(
        e("batch.size=0\n"),
        "a.properties:1: batch.size: `0` must be at least 1"
    );
    assert_eq!(
        e("max.retries=-1\n"),
        "a.properties:1: max.retries: `-1` must be between 0 and 4294967295"
    );
    assert_eq!(
        e("chargeover.entity.id.fields=customer:customer_id,invoice\n"),
        "a.properties:1: chargeover.entity.id.fields: malformed item `invoice`: expected `entity:field`"
    );
    assert_eq!(
        e("initial.datetime=customer:2024-01-01\n"),
        "a.properties:1: initial.datetime: malformed item `customer:2024-01-01`: expected `entity:YYYY-MM-DD HH:MM:SS`"
    );
    assert_eq!(
        e("chargeover.incremental.datetime.fields=customer:a, customer:b\n"),
        "a.properties:1: chargeover.incremental.datetime.fields: entity `customer` is mapped twice"
    );
    assert!(e("chargeover.timezone=Europe/Londn\n").starts_with(
        "a.properties:1: chargeover.timezone: unknown time zone `Europe/Londn` (did you mean `Europe/London`?)"
    ));
    assert!(e("\n\nincremental.schedule.cron=0 2 * * *\n").starts_with(
        "a.properties:3: incremental.schedule.cron: invalid cron expression `0 2 * * *`"
    ));
    assert_eq!(
        e("k=\\uZZZZ\n"),
        "a.properties:1: malformed \\uXXXX escape `\\uZZZZ`: expected four hex digits"
    );
    let json = |text: &str| run("a.json", text).unwrap_err().to_string();
    assert_eq!(
        json("{\n  \"config\": {\n    \"batch.size\": [1]\n  }\n}"),
        "a.json:3: batch.size: expected a string, found an array"
    );
    assert_eq!(
        json("{\n  \"name\": \"x\",\n}"),
        "a.json:3: invalid JSON (column 1): trailing comma"
    );
}

#[test]
fn only_the_chargeover_connector_is_converted() {
    let e = run(
        "a.properties",
        "connector.class=io.confluent.connect.jdbc.JdbcSourceConnector\nfoo=bar\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "a.properties:1: connector.class: `io.confluent.connect.jdbc.JdbcSourceConnector` is not supported: only the ChargeOver source connector (`...ChargeOverSourceConnector`) can be converted"
    );
}

#[test]
fn the_password_is_never_in_the_output() {
    let c = ok(
        "a.properties",
        "chargeover.password=s3cr3t-value\nchargeover.passwrd=s3cr3t-value\n",
    );
    assert!(c.toml.contains("password = \"${CHARGEOVER_PASSWORD}\""));
    assert!(!c.toml.contains("s3cr3t"));
    assert!(!c.notes.iter().any(|n| n.contains("s3cr3t")));
    assert_eq!(tributary_core::secret::redact("x s3cr3t-value"), "x ***");
}
