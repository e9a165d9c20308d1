//! `tributary convert` through the binary: seed 000's two example configs
//! (Connect JSON and .properties, verbatim in tests/fixtures/convert/), the
//! password never leaving the input, and bad input refused with exit 2.

use tributary_testkit::cli::*;

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

const SEED_JSON: &str = include_str!("fixtures/convert/chargeover-source.json");
const SEED_PROPERTIES: &str = include_str!("fixtures/convert/chargeover-source.properties");
const SEED_PASSWORD: &str = "your-password";

/// What both seed examples convert to, after the header line.
const SEED_TOML: &str = r#"name = "chargeover-source"
topic_prefix = "chargeover"
schedule = { cron = "0 0 2 * * ?", timezone = "UTC" }

[source]
type = "chargeover"
subdomain = "your-company"
username = "api-user"
password = "${CHARGEOVER_PASSWORD}"
timezone = "UTC"
batch_size = 500
entities = ["customer", "invoice", "payment", "subscription"]

[source.datetime_fields]
customer = "mod_datetime"
invoice = "mod_datetime"
payment = "mod_datetime"
subscription = "mod_datetime"

[source.id_fields]
customer = "customer_id"
invoice = "invoice_id"
payment = "payment_id"
subscription = "subscription_id"

[source.initial_datetime]
customer = "2024-01-01 00:00:00"
invoice = "2024-01-01 00:00:00"
payment = "2024-01-01 00:00:00"
subscription = "2024-01-01 00:00:00"

[source.query_params]
customer = "expand=customer_external&fields=id,name,email"
invoice = "expand=invoice_items,customer"

[sink]
type = "stdout"

[runtime]
poll_interval = "60s"
# max.retries = 3: a failing ChargeOver request is retried 3 time(s)
# with backoff; then the entity waits for its next scheduled run and resumes
# where it stopped, as Kafka Connect does (the other entities go on). This is
# not `max_retries`, which bounds sink and state store retries and then stops
# the connector.
request_retries = 3
"#;

const SEED_NOTES: &str = "note: dropped `tasks.max`: tributary runs one task per stream
note: the password was not copied; export CHARGEOVER_PASSWORD before running
note: a Kafka Connect config names no sink; wrote `[sink] type = \"stdout\"`: change it to where the records should go
";

fn header(file: &str) -> String {
    format!("# Converted from {file} by `tributary convert`.\n")
}

#[test]
fn seed_json_converts_to_the_expected_toml() {
    let ws = workspace();
    ws.write("chargeover-source.json", SEED_JSON);
    let o = ws.run(&["convert", "chargeover-source.json"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        format!("{}{SEED_TOML}", header("chargeover-source.json"))
    );
    assert_eq!(stderr(&o), SEED_NOTES);
}

#[test]
fn seed_properties_convert_to_the_same_toml() {
    let ws = workspace();
    ws.write("chargeover-source.properties", SEED_PROPERTIES);
    let o = ws.run(&["convert", "chargeover-source.properties"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        format!("{}{SEED_TOML}", header("chargeover-source.properties"))
    );
    assert_eq!(stderr(&o), SEED_NOTES);
}

#[test]
fn the_format_comes_from_the_content_not_the_extension() {
    let ws = workspace();
    ws.write("connector.conf", SEED_JSON);
    ws.write("connector.json", SEED_PROPERTIES);
    for file in ["connector.conf", "connector.json"] {
        let o = ws.run(&["convert", file]);
        assert_exit(&o, 0);
        assert_eq!(stdout(&o), format!("{}{SEED_TOML}", header(file)));
    }
}

#[test]
fn the_password_appears_nowhere() {
    let ws = workspace();
    ws.write("seed.json", SEED_JSON);
    ws.write("seed.properties", SEED_PROPERTIES);
    for input in ["seed.json", "seed.properties"] {
        let out = format!("{input}.toml");
        for args in [vec!["convert", input], vec!["convert", input, "-o", &out]] {
            let o = ws.run(&args);
            assert_exit(&o, 0);
            for text in [stdout(&o), stderr(&o)] {
                assert!(!text.contains(SEED_PASSWORD), "{text}");
            }
        }
        let written = std::fs::read_to_string(ws.path(&out)).unwrap();
        assert_eq!(written, format!("{}{SEED_TOML}", header(input)));
        assert!(!written.contains(SEED_PASSWORD));
    }
    // Not from a misspelt key, nor when pasted into a value an error quotes.
    ws.write("typo.properties", "chargeover.passwrd=your-password\n");
    let o = ws.run(&["convert", "typo.properties"]);
    assert_exit(&o, 2);
    assert!(!stdout(&o).contains(SEED_PASSWORD) && !stderr(&o).contains(SEED_PASSWORD));
    ws.write(
        "pasted.properties",
        "chargeover.password=your-password\ninitial.datetime=your-password\n",
    );
    let o = ws.run(&["convert", "pasted.properties"]);
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "error: pasted.properties:2: initial.datetime: malformed item `***`: expected `entity:YYYY-MM-DD HH:MM:SS`\n"
    );
}

#[test]
fn properties_escapes_and_continuations() {
    let ws = workspace();
    // CRLF line ends, `:` and space separators, continued lists, escapes.
    let text = "! a comment\r\n\
        name : billing\r\n\
        chargeover.subdomain   acme\\u002Dprod\r\n\
        chargeover.username = ops\\\\bot \\u00e9\r\n\
        chargeover.entities = customer,\\\r\n\
        \x20                     invoice , \\\r\n\
        \t payment\r\n\
        chargeover.entity.id.fields=customer\\:customer_id,\\\r\n\
        \x20   invoice:invoice_id\r\n\
        initial.datetime=customer:2024-01-01 00\\:00\\:00\r\n\
        chargeover.customer.query.params=expand\\=customer_external&q=\"a b\"\r\n\
        chargeover.payment.query.params:\r\n\
        poll.interval.ms=1500\r\n\
        # comment ending in a backslash \\\r\n\
        topic.prefix=co\r\n";
    ws.write("escapes.properties", text);
    let o = ws.run(&["convert", "escapes.properties"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        format!(
            "{}{}",
            header("escapes.properties"),
            r#"name = "billing"
topic_prefix = "co"

[source]
type = "chargeover"
subdomain = "acme-prod"
username = 'ops\bot é'
entities = ["customer", "invoice", "payment"]

[source.id_fields]
customer = "customer_id"
invoice = "invoice_id"

[source.initial_datetime]
customer = "2024-01-01 00:00:00"

[source.query_params]
customer = 'expand=customer_external&q="a b"'
payment = ""

[sink]
type = "stdout"

[runtime]
poll_interval = "1500ms"
"#
        )
    );
}

#[test]
fn unknown_properties_are_warned_about_and_skipped() {
    let ws = workspace();
    ws.write(
        "c.properties",
        "chargeover.subdomain=acme\nchargeover.timezon=UTC\nvalue.converter=org.apache.kafka.connect.json.JsonConverter\n",
    );
    let o = ws.run(&["convert", "c.properties"]);
    assert_exit(&o, 0);
    assert_eq!(
        stderr(&o),
        "warning: c.properties:2: ignoring unknown property `chargeover.timezon` (did you mean `chargeover.timezone`?)\n\
         warning: c.properties:3: ignoring unknown property `value.converter`\n\
         note: a Kafka Connect config names no sink; wrote `[sink] type = \"stdout\"`: change it to where the records should go\n"
    );
    assert!(!stdout(&o).contains("timezone"));
}

#[test]
fn another_connector_class_is_refused() {
    let ws = workspace();
    ws.write(
        "jdbc.json",
        r#"{"name": "pg", "config": {"connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "connection.url": "jdbc:postgresql://db/x"}}"#,
    );
    let o = ws.run(&["convert", "jdbc.json"]);
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "error: jdbc.json:1: connector.class: `io.confluent.connect.jdbc.JdbcSourceConnector` is not supported: only the ChargeOver source connector (`...ChargeOverSourceConnector`) can be converted\n"
    );
    assert_eq!(stdout(&o), "");
}

#[test]
fn a_malformed_initial_datetime_is_refused() {
    let ws = workspace();
    ws.write(
        "bad.properties",
        "chargeover.subdomain=acme\ninitial.datetime=customer:2024-01-01 00:00:00,invoice\n",
    );
    let o = ws.run(&["convert", "bad.properties"]);
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "error: bad.properties:2: initial.datetime: malformed item `invoice`: expected `entity:YYYY-MM-DD HH:MM:SS`\n"
    );
    assert_eq!(stdout(&o), "");
}

#[test]
fn bad_cron_and_timezone_name_the_property() {
    let ws = workspace();
    ws.write("cron.properties", "incremental.schedule.cron=0 2 * * *\n");
    let o = ws.run(&["convert", "cron.properties"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).starts_with(
            "error: cron.properties:1: incremental.schedule.cron: invalid cron expression `0 2 * * *`"
        ),
        "{}",
        stderr(&o)
    );
    ws.write("tz.json", "{\"chargeover.timezone\": \"Mars/Olympus\"}");
    let o = ws.run(&["convert", "tz.json"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o)
            .starts_with("error: tz.json:1: chargeover.timezone: unknown time zone `Mars/Olympus`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_existing_output_is_kept_unless_forced() {
    let ws = workspace();
    ws.write("seed.json", SEED_JSON);
    ws.write("out.toml", "keep me\n");
    let o = ws.run(&["convert", "seed.json", "-o", "out.toml"]);
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "error: out.toml: already exists; pass --force to overwrite it\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("out.toml")).unwrap(),
        "keep me\n"
    );

    let o = ws.run(&["convert", "seed.json", "--output", "out.toml", "--force"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), format!("{SEED_NOTES}wrote out.toml\n"));
    assert_eq!(
        std::fs::read_to_string(ws.path("out.toml")).unwrap(),
        format!("{}{SEED_TOML}", header("seed.json"))
    );
}

#[test]
fn a_missing_input_is_a_config_error() {
    let ws = workspace();
    let o = ws.run(&["convert", "nope.json"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).starts_with("error: nope.json: cannot read: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_misspelled_required_property_is_refused_with_exit_2() {
    let ws = workspace();
    let typo = SEED_PROPERTIES.replace("chargeover.username=", "chargeover.usrname=");
    assert_ne!(typo, SEED_PROPERTIES);
    ws.write("typo.properties", &typo);
    let line = typo
        .lines()
        .position(|l| l.starts_with("chargeover.usrname="))
        .unwrap()
        + 1;
    let o = ws.run(&["convert", "typo.properties"]);
    assert_exit(&o, 2);
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        format!("error: typo.properties:{line}: chargeover.usrname: unknown property; the required property `chargeover.username` is missing (did you mean `chargeover.username`?)\n")
    );
}
