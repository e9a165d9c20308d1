//! Every error is asserted as the exact text a user sees, line included:
//! the message format is the contract with operators, not an implementation
//! detail.

use super::*;
use std::collections::HashMap;

const FILE: &str = "/etc/tributary/billing.toml";

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<ConnectorConfig, ConfigError> {
    load_str_with_env(Path::new(FILE), text, &no_env)
}

fn load_env(text: &str, vars: &[(&str, &str)]) -> Result<ConnectorConfig, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_str_with_env(Path::new(FILE), text, &move |name| vars.get(name).cloned())
}

fn err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn err_env(text: &str, vars: &[(&str, &str)]) -> String {
    match load_env(text, vars) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A minimal valid file with `extra` appended (after `[sink]`).
fn with(extra: &str) -> String {
    format!("name = \"billing\"\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n{extra}")
}

/// A connector's own config, typed through `SectionConfig::parse`, nested
/// the way real connectors are (maps of tables, arrays of tables).
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct FileSource {
    path: String,
    #[serde(default)]
    streams: BTreeMap<String, FileStream>,
    #[serde(default)]
    files: Vec<FileEntry>,
    #[serde(default)]
    brokers: Vec<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct FileStream {
    delimiter: Option<String>,
    #[serde(default)]
    columns: Vec<Column>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Column {
    name: String,
    #[serde(default)]
    nullable: bool,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    glob: String,
    #[serde(default)]
    follow: bool,
}

fn parse_source(text: &str) -> Result<FileSource, String> {
    let cfg = load(text).map_err(|e| format!("load failed: {e}"))?;
    cfg.source.parse::<FileSource>().map_err(|e| e.to_string())
}

// --- happy path --------------------------------------------------------------

#[test]
fn happy_path_every_field() {
    let text = r#"name = "billing"
topic_prefix = "chargeover"
schedule = { cron = "0 0 2 * * ?", timezone = "America/New_York" }

[source]
type = "file"
path = "data/*.csv"

[sink]
type = "kafka"
brokers = "localhost:9092"

[state]
dir = "var/state"

[runtime]
batch_size = 10
flush_interval = "5s"

[metadata]
enabled = false

[bad_records]
policy = "dead_letter"
dead_letter_path = "bad/billing.ndjson"

[streams.orders]
target = "orders-topic"
schedule = { interval = "30s" }

[streams.customers]
schedule = { cron = "0 */5 * * * ?" }
"#;
    let c = load(text).unwrap();
    let base = PathBuf::from("/etc/tributary");
    assert_eq!(c.name, "billing");
    assert_eq!(c.topic_prefix, "chargeover");
    match &c.schedule {
        Schedule::Cron(cron) => {
            assert_eq!(cron.expression(), "0 0 2 * * ?");
            assert_eq!(cron.timezone().name(), "America/New_York");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.source.kind, "file");
    assert_eq!(c.source.key, "source");
    assert!(
        !c.source.table.contains_key("type"),
        "type is taken out of the raw table"
    );
    assert_eq!(
        c.source.table.get("path").and_then(|v| v.as_str()),
        Some("data/*.csv")
    );
    assert_eq!(c.source.resolve_path(Path::new("x")), base.join("x"));
    assert_eq!(c.sink.kind, "kafka");
    assert_eq!(c.sink.key, "sink");
    assert_eq!(
        c.state,
        StateConfig::Embedded {
            dir: base.join("var/state")
        }
    );
    assert_eq!(
        c.runtime,
        RuntimeConfig {
            batch_size: 10,
            flush_interval: Duration::from_secs(5),
            ..RuntimeConfig::default()
        }
    );
    assert_eq!(
        c.metadata,
        MetadataConfig {
            enabled: false,
            ..MetadataConfig::default()
        }
    );
    assert_eq!(
        c.bad_records,
        BadRecordConfig {
            policy: BadRecordPolicy::DeadLetter,
            dead_letter_path: base.join("bad/billing.ndjson"),
        }
    );
    assert_eq!(c.base_dir, base);
    assert_eq!(c.document.path, PathBuf::from(FILE));
    assert_eq!(c.target_for("orders"), "orders-topic");
    assert_eq!(c.target_for("customers"), "chargeover.customers");
    assert_eq!(c.target_for("invoices"), "chargeover.invoices");
    assert!(
        matches!(c.schedule_for("orders"), Schedule::Interval(d) if *d == Duration::from_secs(30))
    );
    assert!(
        matches!(c.schedule_for("customers"), Schedule::Cron(x) if x.timezone().name() == "UTC")
    );
    assert!(
        matches!(c.schedule_for("invoices"), Schedule::Cron(x) if x.expression() == "0 0 2 * * ?")
    );
    assert_eq!(c.streams.len(), 2);
}

#[test]
fn defaults_when_optional_tables_are_absent() {
    let c = load(&with("")).unwrap();
    let base = PathBuf::from("/etc/tributary");
    assert_eq!(c.topic_prefix, "billing");
    assert!(matches!(c.schedule, Schedule::Once));
    assert_eq!(
        c.state,
        StateConfig::Embedded {
            dir: base.join(".tributary/state")
        }
    );
    assert_eq!(c.runtime, RuntimeConfig::default());
    assert_eq!(c.metadata, MetadataConfig::default());
    assert_eq!(
        c.bad_records,
        BadRecordConfig {
            policy: BadRecordPolicy::Fail,
            dead_letter_path: base.join(".tributary/dead_letter/billing.ndjson"),
        }
    );
    assert!(c.streams.is_empty());
    assert_eq!(c.target_for("orders"), "billing.orders");
    assert!(c.source.table.is_empty());
}

#[test]
fn base_dir_of_relative_path_is_under_current_dir() {
    let c = load_str_with_env(Path::new("no-such-dir/x.toml"), &with(""), &no_env).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let cwd = cwd.canonicalize().unwrap_or(cwd);
    assert_eq!(c.base_dir, cwd.join("no-such-dir"));
    let c = load_str_with_env(Path::new("x.toml"), &with(""), &no_env).unwrap();
    assert_eq!(c.base_dir, cwd);
}

#[test]
fn load_file_canonicalizes_base_dir_and_resolves_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.toml");
    std::fs::write(&path, with("[state]\ndir = \"st\"\n")).unwrap();
    let c = load_file(&path).unwrap();
    let base = dir.path().canonicalize().unwrap();
    assert_eq!(c.base_dir, base);
    assert_eq!(
        c.state,
        StateConfig::Embedded {
            dir: base.join("st")
        }
    );
}

#[test]
fn load_file_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let e = load_file(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: cannot read config file: No such file or directory (os error 2)",
            path.display()
        )
    );
}

// --- 1. ${ENV} ---------------------------------------------------------------

#[test]
fn env_substitution_everywhere() {
    let text = r#"name = "${T1_NAME}"
[source]
type = "file"
path = "${T1_DIR}/in.csv"
brokers = ["${T1_B1}", "static", "${T1_B2}:9092"]
options = { user = "${T1_USER}", literal = "$${T1_USER} costs $5 and $$ stays" }
[source.streams.orders]
delimiter = "${T1_DELIM}"
[sink]
type = "${T1_SINK}"
[streams.orders]
target = "${T1_TARGET}"
"#;
    let c = load_env(
        text,
        &[
            ("T1_NAME", "billing"),
            ("T1_DIR", "/data"),
            ("T1_B1", "k1"),
            ("T1_B2", "k2"),
            ("T1_USER", "alice-t1"),
            ("T1_DELIM", ";"),
            ("T1_SINK", "stdout"),
            ("T1_TARGET", "orders-t1"),
        ],
    )
    .unwrap();
    assert_eq!(c.name, "billing");
    assert_eq!(c.sink.kind, "stdout");
    assert_eq!(c.target_for("orders"), "orders-t1");
    let s: FileSource = c.source.parse().unwrap();
    assert_eq!(s.path, "/data/in.csv");
    assert_eq!(s.brokers, ["k1", "static", "k2:9092"]);
    assert_eq!(s.options["user"], "alice-t1");
    assert_eq!(s.options["literal"], "${T1_USER} costs $5 and $$ stays");
    assert_eq!(s.streams["orders"].delimiter.as_deref(), Some(";"));
    let keys: Vec<&str> = c
        .document
        .substitutions
        .iter()
        .map(|s| s.key.as_str())
        .collect();
    assert!(keys.contains(&"source.brokers[2]"), "{keys:?}");
    assert!(keys.contains(&"source.options.user"), "{keys:?}");
}

#[test]
fn env_missing_variable() {
    let text = "name = \"billing\"\n[source]\ntype = \"chargeover\"\nusername = \"bob\"\npassword = \"${CHARGEOVER_PASSWORD}\"\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        err(text),
        "/etc/tributary/billing.toml:5: source.password: environment variable CHARGEOVER_PASSWORD is not set"
    );
}

#[test]
fn env_missing_variable_in_array_and_inline_table() {
    let text = "name = \"billing\"\n[source]\ntype = \"file\"\nbrokers = [\n  \"a\",\n  \"${T2_B}\",\n]\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        err(text),
        "/etc/tributary/billing.toml:6: source.brokers[1]: environment variable T2_B is not set"
    );
    let text = with("[streams.orders]\nschedule = { cron = \"${T2_CRON}\" }\n");
    assert_eq!(
        err(&text),
        "/etc/tributary/billing.toml:7: streams.orders.schedule.cron: environment variable T2_CRON is not set"
    );
}

#[test]
fn env_malformed_references() {
    assert_eq!(
        err(&with("[metadata]\nstream_field = \"${T3_OPEN\"\n")),
        "/etc/tributary/billing.toml:7: metadata.stream_field: unterminated `${` (write `$${` for a literal `${`)"
    );
    assert_eq!(
        err(&with("[metadata]\nstream_field = \"${T3 X}\"\n")),
        "/etc/tributary/billing.toml:7: metadata.stream_field: invalid environment variable name `T3 X` in `${...}`: use letters, digits and `_`, `${NAME:-default}` or `${file:PATH}` (write `$${` for a literal `${`)"
    );
}

#[test]
fn env_value_cannot_break_toml_syntax() {
    let c = load_env(
        &with("[streams.orders]\ntarget = \"${T4_TARGET}\"\n"),
        &[("T4_TARGET", "x\"\n[runtime]\nbatch_size = 0")],
    )
    .unwrap();
    assert_eq!(c.target_for("orders"), "x\"\n[runtime]\nbatch_size = 0");
    assert_eq!(c.runtime, RuntimeConfig::default());
}

#[test]
fn env_values_are_never_echoed_and_are_registered() {
    // serde quotes the bad value; it came from the environment, so it is masked.
    assert_eq!(
        err_env(&with("[runtime]\nbatch_size = \"${T5_BATCH}\"\n"), &[("T5_BATCH", "s3cr3t-t5")]),
        "/etc/tributary/billing.toml:7: runtime.batch_size: invalid type: string \"***\", expected a whole number (0 or more)"
    );
    // Even a value too short for the global redactor, when it is the culprit.
    assert_eq!(
        err_env(&with("[runtime]\nbatch_size = \"${T5_T}\"\n"), &[("T5_T", "t")]),
        "/etc/tributary/billing.toml:7: runtime.batch_size: invalid type: string \"***\", expected a whole number (0 or more)"
    );
    assert_eq!(
        err_env(&with("[runtime]\nflush_interval = \"${T5_IV}\"\n"), &[("T5_IV", "zz")]),
        "/etc/tributary/billing.toml:7: runtime.flush_interval: invalid duration `***` (expected number at 0); use e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or \"PT5M\""
    );
    assert_eq!(
        err_env(
            &with("[streams.orders]\nschedule = { cron = \"${T5_CRON}\" }\n"),
            &[("T5_CRON", "hunter2-t5")]
        ),
        format!(
            "/etc/tributary/billing.toml:7: streams.orders.schedule: {}",
            tributary_core::Schedule::cron("***", "UTC").unwrap_err()
        )
    );
    assert_eq!(tributary_core::secret::redact("pw=s3cr3t-t5"), "pw=***");
}

#[test]
fn env_values_are_masked_in_section_errors_and_debug() {
    let text = "name = \"billing\"\n[source]\ntype = \"file\"\npath = 7\nbrokers = [\"${T6_PW}\"]\n[sink]\ntype = \"stdout\"\n";
    let c = load_env(text, &[("T6_PW", "pw-t6-secret")]).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("pw-t6-secret"), "{debug}");
    assert!(debug.contains("\"***\""), "{debug}");
    assert_eq!(
        c.source
            .error("brokers[0]", "cannot connect to `pw-t6-secret`")
            .to_string(),
        "/etc/tributary/billing.toml:5: source.brokers[0]: cannot connect to `***`"
    );
}

// --- 2. TOML syntax ----------------------------------------------------------

#[test]
fn toml_syntax_errors_carry_the_line() {
    assert_eq!(
        err("name = \"billing\"\n\n[source\ntype = \"file\"\n"),
        "/etc/tributary/billing.toml:3: source: unclosed table, expected `]`"
    );
    assert_eq!(
        err("name = \"billing\"\nx = = 1\n"),
        "/etc/tributary/billing.toml:2: x: extra `=`, expected nothing"
    );
    assert_eq!(
        err("name = \"a\"\nname = \"b\"\n"),
        "/etc/tributary/billing.toml:2: name: duplicate key"
    );
}

// --- 3. unknown keys ---------------------------------------------------------

#[test]
fn unknown_keys_in_envelope_tables() {
    assert_eq!(
        err("name = \"billing\"\n[soruce]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n"),
        "/etc/tributary/billing.toml:2: soruce: unknown key `soruce` (did you mean `source`?)"
    );
    assert_eq!(
        err(&with("[runtime]\nbatch_size = 5\nbatch_sise = 3\n")),
        "/etc/tributary/billing.toml:8: runtime.batch_sise: unknown key `batch_sise` (did you mean `batch_size`?)"
    );
    assert_eq!(
        err(&with("[metadata]\nenabld = true\n")),
        "/etc/tributary/billing.toml:7: metadata.enabld: unknown key `enabld` (did you mean `enabled`?)"
    );
    assert_eq!(
        err(&with("[bad_records]\npolcy = \"skip\"\n")),
        "/etc/tributary/billing.toml:7: bad_records.polcy: unknown key `polcy` (did you mean `policy`?)"
    );
    assert_eq!(
        err(&with("[streams.orders]\ntraget = \"x\"\n")),
        "/etc/tributary/billing.toml:7: streams.orders.traget: unknown key `traget` (did you mean `target`?)"
    );
    assert_eq!(
        err(&with("[state]\ndirr = \"x\"\n")),
        "/etc/tributary/billing.toml:7: state.dirr: unknown key `dirr` (did you mean `dir`?)"
    );
}

#[test]
fn unknown_keys_in_schedule_tables() {
    assert_eq!(
        err("name = \"billing\"\nschedule = { cron = \"0 0 2 * * ?\", timzone = \"UTC\" }\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n"),
        "/etc/tributary/billing.toml:2: schedule.timzone: unknown key `timzone` (did you mean `timezone`?)"
    );
    assert_eq!(
        err(&with("[streams.orders.schedule]\ncron = \"0 0 2 * * ?\"\n\nintervall = \"1s\"\n")),
        "/etc/tributary/billing.toml:9: streams.orders.schedule.intervall: unknown key `intervall` (did you mean `interval`?)"
    );
}

#[test]
fn unknown_key_without_a_close_match_has_no_suggestion() {
    assert_eq!(
        err(&with("[runtime]\nzebra = 1\n")),
        "/etc/tributary/billing.toml:7: runtime.zebra: unknown key `zebra`"
    );
    assert_eq!(
        err("name = \"billing\"\ncolour = \"red\"\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n"),
        "/etc/tributary/billing.toml:2: colour: unknown key `colour`"
    );
}

#[test]
fn unknown_keys_inside_source_sections() {
    // Header tables, nested header tables.
    let text = "name = \"billing\"\n[source]\ntype = \"file\"\npath = \"x\"\n\n[source.streams.orders]\ndelimitr = \";\"\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        parse_source(text).unwrap_err(),
        "/etc/tributary/billing.toml:7: source.streams.orders.delimitr: unknown key `delimitr` (did you mean `delimiter`?)"
    );
    // Arrays of tables.
    let text = "name = \"billing\"\n[source]\ntype = \"file\"\npath = \"x\"\n[[source.files]]\nglob = \"a\"\n[[source.files]]\nglob = \"b\"\nfolow = true\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        parse_source(text).unwrap_err(),
        "/etc/tributary/billing.toml:9: source.files[1].folow: unknown key `folow` (did you mean `follow`?)"
    );
    // Inline tables inside arrays inside inline tables, spread over lines.
    let text = "name = \"billing\"\n[source]\ntype = \"file\"\npath = \"x\"\nstreams = { orders = { columns = [\n  { name = \"id\" },\n  { name = \"x\", nulable = true },\n] } }\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        parse_source(text).unwrap_err(),
        "/etc/tributary/billing.toml:7: source.streams.orders.columns[1].nulable: unknown key `nulable` (did you mean `nullable`?)"
    );
    // Dotted keys, at the root and inside the section.
    let text = "name = \"billing\"\nsource.type = \"file\"\nsource.path = \"x\"\nsource.streams.orders.delimitr = \",\"\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        parse_source(text).unwrap_err(),
        "/etc/tributary/billing.toml:4: source.streams.orders.delimitr: unknown key `delimitr` (did you mean `delimiter`?)"
    );
    // A whole inline section.
    let text = "name = \"billing\"\nsink = { type = \"stdout\" }\nsource = { type = \"file\", path = \"x\", pth = \"y\" }\n";
    assert_eq!(
        parse_source(text).unwrap_err(),
        "/etc/tributary/billing.toml:3: source.pth: unknown key `pth` (did you mean `path`?)"
    );
}

// --- 4. wrong types, missing keys ----------------------------------------------

#[test]
fn wrong_types_at_the_value_line() {
    assert_eq!(
        err(&with("[runtime]\nbatch_size = \"ten\"\n")),
        "/etc/tributary/billing.toml:7: runtime.batch_size: invalid type: string \"ten\", expected a whole number (0 or more)"
    );
    assert_eq!(
        err(&with("[runtime]\nmax_retries = -1\n")),
        "/etc/tributary/billing.toml:7: runtime.max_retries: invalid value: integer `-1`, expected a whole number from 0 to 4294967295"
    );
    assert_eq!(
        err("name = 5\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n"),
        "/etc/tributary/billing.toml:1: name: invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        err("name = \"b\"\n[source]\ntype = [\"file\"]\n[sink]\ntype = \"stdout\"\n"),
        "/etc/tributary/billing.toml:3: source.type: invalid type: array, expected a string"
    );
    let text = "name = \"billing\"\n[source]\ntype = \"file\"\npath = \"x\"\nbrokers = [\"a\",\n  3]\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        parse_source(text).unwrap_err(),
        "/etc/tributary/billing.toml:6: source.brokers[1]: invalid type: integer `3`, expected a string"
    );
}

#[test]
fn unknown_enum_value_suggests_a_variant() {
    assert_eq!(
        err(&with("[bad_records]\npolicy = \"deadletter\"\n")),
        "/etc/tributary/billing.toml:7: bad_records.policy: unknown variant `deadletter`, expected one of `fail`, `skip`, `dead_letter` (did you mean `dead_letter`?)"
    );
}

#[test]
fn missing_keys_at_the_table_line() {
    assert_eq!(
        err("name = \"billing\"\n\n[source]\npath = \"x\"\n[sink]\ntype = \"stdout\"\n"),
        "/etc/tributary/billing.toml:3: source: missing key `type`"
    );
    assert_eq!(
        err("name = \"billing\"\n[source]\ntype = \"file\"\n"),
        "/etc/tributary/billing.toml: top level: missing key `sink`"
    );
    assert_eq!(
        err("[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n"),
        "/etc/tributary/billing.toml: top level: missing key `name`"
    );
    let text = "name = \"billing\"\n[source]\ntype = \"file\"\npath = \"x\"\n[source.streams.orders]\n[[source.streams.orders.columns]]\nnullable = true\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        parse_source(text).unwrap_err(),
        "/etc/tributary/billing.toml:6: source.streams.orders.columns[0]: missing key `name`"
    );
    let text = "name = \"billing\"\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        parse_source(text).unwrap_err(),
        "/etc/tributary/billing.toml:2: source: missing key `path`"
    );
}

// --- 5. schedules ------------------------------------------------------------

#[test]
fn invalid_cron_at_load_time() {
    let e = err("name = \"billing\"\nschedule = { cron = \"0 0 25 * * ?\" }\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n");
    let expected = format!(
        "/etc/tributary/billing.toml:2: schedule: {}",
        Schedule::cron("0 0 25 * * ?", "UTC").unwrap_err()
    );
    assert_eq!(e, expected);
    assert!(
        e.starts_with(
            "/etc/tributary/billing.toml:2: schedule: invalid cron expression `0 0 25 * * ?`: "
        ),
        "{e}"
    );
}

#[test]
fn unknown_time_zone_at_load_time() {
    assert_eq!(
        err(&with("[streams.orders]\nschedule = { cron = \"0 0 2 * * ?\", timezone = \"America/New_Yrok\" }\n")),
        "/etc/tributary/billing.toml:7: streams.orders.schedule: unknown time zone `America/New_Yrok` (did you mean `America/New_York`?); use an IANA name such as `America/New_York` or `UTC`"
    );
    // A multi-line schedule table points at the timezone line itself.
    assert_eq!(
        err(&with("[schedule]\ncron = \"0 0 2 * * ?\"\ntimezone = \"Mars/Olympus\"\n")),
        "/etc/tributary/billing.toml:8: schedule: unknown time zone `Mars/Olympus`; use an IANA name such as `America/New_York` or `UTC`"
    );
}

#[test]
fn schedule_forms() {
    assert_eq!(
        err(&with("[streams.orders]\nschedule = { interval = \"1s\", cron = \"0 0 2 * * ?\" }\n")),
        "/etc/tributary/billing.toml:7: streams.orders.schedule: set exactly one of `interval` or `cron`, not both"
    );
    assert_eq!(
        err(&with("[streams.orders]\nschedule = {}\n")),
        "/etc/tributary/billing.toml:7: streams.orders.schedule: set one of `interval` (e.g. \"30s\") or `cron`"
    );
    assert_eq!(
        err(&with("[schedule]\ninterval = \"1m\"\ntimezone = \"UTC\"\n")),
        "/etc/tributary/billing.toml:8: schedule: `timezone` applies only to `cron` schedules"
    );
    assert_eq!(
        err(&with("[schedule]\ninterval = \"0s\"\n")),
        "/etc/tributary/billing.toml:7: schedule: interval must be greater than zero"
    );
    assert_eq!(
        err(&with("[schedule]\ninterval = \"soon\"\n")),
        "/etc/tributary/billing.toml:7: schedule.interval: invalid duration `soon` (expected number at 0); use e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or \"PT5M\""
    );
    let c = load("name = \"b\"\nschedule = { interval = \"1h 30m\" }\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n").unwrap();
    assert!(matches!(c.schedule, Schedule::Interval(d) if d == Duration::from_secs(5400)));
}

// --- 6. locating section errors ------------------------------------------------

#[test]
fn section_error_is_located_by_key_path() {
    let text = r#"name = "billing"
source.type = "file"
source.path = "x"
source.streams.orders.delimiter = ","
[source.streams.customers]
delimiter = ";"
columns = [
  { name = "id" },
  { name = "email", nullable = true },
]
[sink]
type = "stdout"
opts = { a = { b = 1 } }
"#;
    let c = load(text).unwrap();
    let s = &c.source;
    let at = |k: &str| s.error(k, "bad").to_string();
    assert_eq!(
        at("path"),
        "/etc/tributary/billing.toml:3: source.path: bad"
    );
    assert_eq!(
        at("streams.orders.delimiter"),
        "/etc/tributary/billing.toml:4: source.streams.orders.delimiter: bad"
    );
    assert_eq!(
        at("streams.customers"),
        "/etc/tributary/billing.toml:5: source.streams.customers: bad"
    );
    assert_eq!(
        at("streams.customers.delimiter"),
        "/etc/tributary/billing.toml:6: source.streams.customers.delimiter: bad"
    );
    assert_eq!(
        at("streams.customers.columns[1].nullable"),
        "/etc/tributary/billing.toml:9: source.streams.customers.columns[1].nullable: bad"
    );
    // Unknown paths fall back to the nearest existing ancestor.
    assert_eq!(
        at("streams.customers.columns[7].x"),
        "/etc/tributary/billing.toml:7: source.streams.customers.columns[7].x: bad"
    );
    assert_eq!(
        at("nope.deeper"),
        "/etc/tributary/billing.toml:2: source.nope.deeper: bad"
    );
    assert_eq!(at(""), "/etc/tributary/billing.toml:2: source: bad");
    assert_eq!(
        c.sink.error("opts.a.b", "bad").to_string(),
        "/etc/tributary/billing.toml:13: sink.opts.a.b: bad"
    );
    assert_eq!(
        c.sink.error("[0]", "bad").to_string(),
        "/etc/tributary/billing.toml:11: sink[0]: bad"
    );
    // The document can locate envelope keys too.
    assert_eq!(c.document.line_of("sink.type"), Some(12));
    assert_eq!(c.document.line_of("nowhere"), None);
    assert_eq!(
        c.document.error("name", "taken").to_string(),
        "/etc/tributary/billing.toml:1: name: taken"
    );
}

#[test]
fn quoted_keys_round_trip() {
    let text = "name = \"billing\"\n[source]\ntype = \"file\"\npath = \"x\"\n[source.streams.\"orders.v2\"]\ndelimitr = \",\"\n[sink]\ntype = \"stdout\"\n";
    assert_eq!(
        parse_source(text).unwrap_err(),
        "/etc/tributary/billing.toml:6: source.streams.\"orders.v2\".delimitr: unknown key `delimitr` (did you mean `delimiter`?)"
    );
    let c = load(text).unwrap();
    assert_eq!(c.source.error("streams.\"orders.v2\"", "x").line, Some(5));
}

// --- state, name, runtime checks ------------------------------------------------

#[test]
fn state_forms() {
    let base = PathBuf::from("/etc/tributary");
    let state = |t: &str| load(&with(t)).map(|c| c.state).map_err(|e| e.to_string());
    assert_eq!(
        state("[state]\nurl = \"file:///var/lib/trib\"\n"),
        Ok(StateConfig::Embedded {
            dir: "/var/lib/trib".into()
        })
    );
    assert_eq!(
        state("[state]\nurl = \"file://rel/dir\"\n"),
        Ok(StateConfig::Embedded {
            dir: base.join("rel/dir")
        })
    );
    assert_eq!(
        state("[state]\ndir = \"/abs\"\n"),
        Ok(StateConfig::Embedded { dir: "/abs".into() })
    );
    assert_eq!(
        state("[state]\n"),
        Ok(StateConfig::Embedded {
            dir: base.join(".tributary/state")
        })
    );
    assert_eq!(
        state("[state]\nurl = \"kafka://localhost:9092/_offsets\"\n"),
        Ok(StateConfig::Url("kafka://localhost:9092/_offsets".into()))
    );
    assert_eq!(
        state("[state]\ndir = \"x\"\nurl = \"kafka://h\"\n"),
        Err("/etc/tributary/billing.toml:8: state.url: set either `dir` (embedded store) or `url`, not both".into())
    );
    assert_eq!(
        state("[state]\nurl = \"postgress://u:pw@h/db\"\n"),
        Err("/etc/tributary/billing.toml:7: state.url: unsupported state URL scheme `postgress`; use `file`, `kafka` or `postgres` (did you mean `postgres`?)".into())
    );
    assert_eq!(
        state("[state]\nurl = \"localhost:9092\"\n"),
        Err("/etc/tributary/billing.toml:7: state.url: expected a URL such as `kafka://host:9092/topic`, `postgres://host/db` or `file:///dir`".into())
    );
}

#[test]
fn connector_name_is_checked() {
    let e = err("name = \"../etc\"\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n");
    assert_eq!(
        e,
        "/etc/tributary/billing.toml:1: name: invalid connector name `../etc`: use letters, digits, `_`, `.` and `-` only (it names files and state keys)"
    );
    assert!(load("name = \"..\"\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n").is_err());
    assert!(load("name = \"\"\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n").is_err());
    assert!(
        load("name = \"a.b-c_1\"\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n").is_ok()
    );
}

#[test]
fn runtime_sizes_must_be_positive() {
    assert_eq!(
        err(&with("[runtime]\nchannel_capacity = 0\n")),
        "/etc/tributary/billing.toml:7: runtime.channel_capacity: 0 is out of range: use 1 to 10000"
    );
    assert_eq!(
        err(&with("[runtime]\nbackoff_initial = \"2m\"\n")),
        "/etc/tributary/billing.toml:7: runtime.backoff_initial: must not exceed `backoff_max`"
    );
}

// --- 8. Display ----------------------------------------------------------------

#[test]
fn display_leaves_out_unknown_parts() {
    let mut e = ConfigError {
        file: FILE.into(),
        line: Some(3),
        key: Some("a.b".into()),
        message: "msg".into(),
        suggestion: Some("c".into()),
    };
    assert_eq!(
        e.to_string(),
        "/etc/tributary/billing.toml:3: a.b: msg (did you mean `c`?)"
    );
    e.line = None;
    e.key = None;
    e.suggestion = None;
    assert_eq!(e.to_string(), "/etc/tributary/billing.toml: msg");
    e.key = Some(String::new());
    assert_eq!(e.to_string(), "/etc/tributary/billing.toml: top level: msg");
    e.line = Some(2);
    assert_eq!(e.to_string(), "/etc/tributary/billing.toml:2: msg");
}

// --- helpers and robustness ------------------------------------------------------

#[test]
fn did_you_mean_threshold() {
    let keys = ["delimiter", "columns", "batch_size", "type", "dir", "url"];
    assert_eq!(
        did_you_mean("delimitr", &keys).as_deref(),
        Some("delimiter")
    );
    assert_eq!(
        did_you_mean("Delimiter", &keys).as_deref(),
        Some("delimiter")
    );
    assert_eq!(did_you_mean("colums", &keys).as_deref(), Some("columns"));
    assert_eq!(did_you_mean("tpye", &keys).as_deref(), Some("type"));
    assert_eq!(did_you_mean("zebra", &keys), None);
    assert_eq!(did_you_mean("id", &keys), None);
    assert_eq!(did_you_mean("x", &[]), None);
}

#[test]
fn paths_parse_and_display_symmetrically() {
    let segs = vec![key("a"), key("b c"), Seg::Index(2), key("d.e"), key("f")];
    let shown = display_path(&segs);
    assert_eq!(shown, "a.\"b c\"[2].\"d.e\".f");
    assert_eq!(parse_path(&shown), segs);
    // Garbage never panics; it just yields a shorter path.
    for p in [
        "",
        ".",
        "[",
        "[x]",
        "a[",
        "\"",
        "\"\\",
        "a..b",
        "[99999999999999999999999]",
        "é.ü[1]",
    ] {
        let _ = parse_path(p);
        let _ = line_of("a = 1\n", &parse_path(p));
    }
}

#[test]
fn odd_inputs_never_panic() {
    for text in [
        "",
        "\u{0}",
        "name = \"é\"\n[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n",
        "source = 1\nsink = 2\nname = \"x\"",
        "name = \"x\"\nsource = {}\nsink = {}\n",
        "name = \"x\"\n[source]\ntype = \"\"\n[sink]\ntype = \"y\"\n",
        "name = \"x\"\n[[source]]\ntype = \"y\"\n[sink]\ntype = \"y\"\n",
        "name = \"x\"\nstreams = 3\n[source]\ntype = \"y\"\n[sink]\ntype = \"y\"\n",
        "name = \"$\"\n",
        "name = \"${\"\n",
        "name = \"$${\"\n",
        "name = \"${}\"\n",
        "name = \"x\"\n[source]\ntype = \"y\"\n[sink]\ntype = \"y\"\n[state]\nurl = \"file://\"\n",
        "name = \"x\"\n[source]\ntype = \"y\"\n[sink]\ntype = \"y\"\n[runtime]\nbatch_size = 1e400\n",
    ] {
        let _ = load(text);
    }
}

#[test]
fn blank_key_keeps_every_line_and_the_rest_parsing() {
    let text = "name = \"g\"\n[source]\ntype = \"x\"\nrecod = 1\nincremental = { column = \"id\", knd = \"id\" }\nother = { knd = 2, b = 3 }\na.b = 4\n";
    let out = crate::blank_key(text, "source.recod").unwrap();
    assert_eq!(out.lines().count(), text.lines().count());
    assert!(!out.contains("recod"));
    let out = crate::blank_key(&out, "source.incremental.knd").unwrap();
    let out = crate::blank_key(&out, "source.other.knd").unwrap();
    let out = crate::blank_key(&out, "source.a.b").unwrap();
    let parsed: toml::Table = toml::from_str(&out).unwrap();
    let source = parsed["source"].as_table().unwrap();
    assert_eq!(source["incremental"].as_table().unwrap().len(), 1);
    assert_eq!(source["other"].as_table().unwrap().len(), 1);
    assert!(source
        .get("a")
        .is_none_or(|a| a.as_table().unwrap().is_empty()));
    // Tables and missing keys cannot be blanked.
    assert_eq!(crate::blank_key(text, "source"), None);
    assert_eq!(crate::blank_key(text, "source.nosuch"), None);
}

#[test]
fn serde_type_names_become_toml_words() {
    assert_eq!(
        super::plain_words("invalid type: string \"x\", expected usize"),
        "invalid type: string \"x\", expected a whole number (0 or more)"
    );
    assert_eq!(
        super::plain_words("invalid type: integer `1`, expected a boolean"),
        "invalid type: integer `1`, expected `true` or `false`"
    );
    assert_eq!(
        super::plain_words("invalid type: string \"x\", expected struct StreamToml"),
        "invalid type: string \"x\", expected a table"
    );
    assert_eq!(
        super::plain_words("expected nothing else"),
        "expected nothing else"
    );
}

// --- 9. ranges: nothing overflows, nothing waits for years ---------------------------

#[test]
fn durations_that_would_overflow_or_wait_for_years_are_config_errors() {
    let cases = [
        (
            "schedule = { interval = \"18446744073709551615s\" }\n",
            "/etc/tributary/billing.toml:1: schedule.interval: duration `18446744073709551615s` is too long: at most 366 days (`366d`, `P366D`)",
        ),
        (
            "schedule = { interval = \"300000000d\" }\n",
            "/etc/tributary/billing.toml:1: schedule.interval: duration `300000000d` is too long: at most 366 days (`366d`, `P366D`)",
        ),
        (
            "schedule = { interval = \"P400D\" }\n",
            "/etc/tributary/billing.toml:1: schedule.interval: duration `P400D` is too long: at most 366 days (`366d`, `P366D`)",
        ),
    ];
    for (schedule, expected) in cases {
        let text = format!("{schedule}{}", with(""));
        assert_eq!(err(&text), expected);
    }
    assert_eq!(
        err(&with("[runtime]\nbackoff_initial = \"18446744073709551615s\"\nbackoff_max = \"18446744073709551615s\"\n")),
        "/etc/tributary/billing.toml:7: runtime.backoff_initial: duration `18446744073709551615s` is too long: at most 366 days (`366d`, `P366D`)"
    );
    assert_eq!(
        err(&with("[runtime]\nbackoff_initial = \"300d\"\nbackoff_max = \"300d\"\n")),
        "/etc/tributary/billing.toml:7: runtime.backoff_initial: too long for a retry wait: at most 1 day (`24h`, `P1D`)"
    );
    assert_eq!(
        err(&with("[runtime]\nmax_retry_after = \"2d\"\n")),
        "/etc/tributary/billing.toml:7: runtime.max_retry_after: too long for a retry wait: at most 1 day (`24h`, `P1D`)"
    );
    let c = load(&with(
        "[runtime]\nmax_retry_after = \"P1D\"\nbackoff_max = \"24h\"\n",
    ))
    .unwrap();
    assert_eq!(c.runtime.max_retry_after, Duration::from_secs(86_400));
    assert_eq!(
        RuntimeConfig::default().max_retry_after,
        Duration::from_secs(3600)
    );
}

#[test]
fn iso_8601_and_humantime_durations_are_accepted_everywhere() {
    let text = format!(
        "schedule = {{ interval = \"P1D\" }}\n{}",
        with("[runtime]\nflush_interval = \"PT5M\"\npoll_interval = \"7s\"\nmax_staleness = \"P2W\"\n[streams.a]\nschedule = { interval = \"PT30S\" }\n")
    );
    let c = load(&text).unwrap();
    assert!(matches!(c.schedule, Schedule::Interval(d) if d == Duration::from_secs(86_400)));
    assert_eq!(c.runtime.flush_interval, Duration::from_secs(300));
    assert_eq!(c.runtime.poll_interval, Duration::from_secs(7));
    assert_eq!(
        c.runtime.max_staleness,
        Some(Duration::from_secs(14 * 86_400))
    );
    assert!(matches!(c.schedule_for("a"), Schedule::Interval(d) if *d == Duration::from_secs(30)));
    assert_eq!(
        err(&format!(
            "schedule = {{ interval = \"PT0S\" }}\n{}",
            with("")
        )),
        "/etc/tributary/billing.toml:1: schedule: interval must be greater than zero"
    );
}

#[test]
fn counts_out_of_range_name_their_key() {
    assert_eq!(
        err(&with("[runtime]\nbatch_size = 18446744073709551615\n")),
        "/etc/tributary/billing.toml:7: runtime.batch_size: number too large: integers are at most 9223372036854775807"
    );
    assert_eq!(
        err(&with("[runtime]\nbatch_size = 9223372036854775807\n")),
        "/etc/tributary/billing.toml:7: runtime.batch_size: 9223372036854775807 is out of range: use 1 to 1000000"
    );
    assert_eq!(
        err(&with("[runtime]\nchannel_capacity = 18446744073709551\n")),
        "/etc/tributary/billing.toml:7: runtime.channel_capacity: 18446744073709551 is out of range: use 1 to 10000"
    );
    assert_eq!(
        err(&with("[runtime]\nmax_retries = -1\n")),
        "/etc/tributary/billing.toml:7: runtime.max_retries: invalid value: integer `-1`, expected a whole number from 0 to 4294967295"
    );
}

// --- 10. every error is located ---------------------------------------------------

#[test]
fn parse_failures_name_line_and_key() {
    assert_eq!(
        err("name = \"b\"\nname = \"c\"\n"),
        "/etc/tributary/billing.toml:2: name: duplicate key"
    );
    assert_eq!(
        err("name = \"b\"\n[source]\ntype = \"file\"\npath = \"a\"\npath = \"b\"\n"),
        "/etc/tributary/billing.toml:5: source.path: duplicate key"
    );
    let deep = format!(
        "name = \"b\"\n[source]\nx = {}1{}\n",
        "[".repeat(300),
        "]".repeat(300)
    );
    assert_eq!(
        err(&deep),
        "/etc/tributary/billing.toml:3: source.x: tables or arrays nested too deeply; flatten the structure"
    );
    let deep = format!(
        "name = \"b\"\nx = {}1{}\n",
        "{a=".repeat(300),
        "}".repeat(300)
    );
    assert_eq!(
        err(&deep),
        "/etc/tributary/billing.toml:2: x: tables or arrays nested too deeply; flatten the structure"
    );
    let dotted = format!("name = \"b\"\n{} = 1\n", vec!["a"; 300].join("."));
    let e = load(&dotted).unwrap_err();
    assert!(e.line.is_some() && e.key.is_some(), "{e}");
}

#[test]
fn invalid_utf8_names_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, b"name = \"b\"\n[source]\npath = \"caf\xE9\"\n").unwrap();
    let e = load_file_with_env(&path, &no_env).unwrap_err();
    assert_eq!(e.line, Some(3));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3: source.path: the file is not valid UTF-8 (byte 0xE9); save it as UTF-8",
            path.display()
        )
    );
}

#[test]
fn missing_top_level_keys_say_top_level() {
    assert_eq!(
        err("[source]\ntype = \"file\"\n[sink]\ntype = \"stdout\"\n"),
        "/etc/tributary/billing.toml: top level: missing key `name`"
    );
    assert_eq!(
        err(""),
        "/etc/tributary/billing.toml: top level: missing key `name`"
    );
}

// --- 11. reference syntax: defaults, files, bare `$VAR` --------------------------------

#[test]
fn env_defaults_apply_when_unset_or_empty() {
    let text = with("[state]\ndir = \"${STATE_DIR:-/var/lib/x}\"\n");
    let c = load(&text).unwrap();
    assert_eq!(
        c.state,
        StateConfig::Embedded {
            dir: "/var/lib/x".into()
        }
    );
    let c = load_env(&text, &[("STATE_DIR", "")]).unwrap();
    assert_eq!(
        c.state,
        StateConfig::Embedded {
            dir: "/var/lib/x".into()
        }
    );
    let c = load_env(&text, &[("STATE_DIR", "/srv/state")]).unwrap();
    assert_eq!(
        c.state,
        StateConfig::Embedded {
            dir: "/srv/state".into()
        }
    );
    // A default is in the file: it is not a secret.
    assert!(c
        .document
        .substitutions
        .iter()
        .all(|s| s.variable == "STATE_DIR"));
    let c = load(&with("[state]\ndir = \"${STATE_DIR:-}x\"\n")).unwrap();
    assert_eq!(
        c.state,
        StateConfig::Embedded {
            dir: "/etc/tributary/x".into()
        }
    );
}

#[test]
fn file_secrets_are_read_trimmed_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cr3t-from-file-91\n").unwrap();
    std::fs::write(dir.path().join("crlf"), "crlf-secret-value-72\r\n").unwrap();
    let path = dir.path().join("c.toml");
    let text = "name = \"b\"\n[source]\ntype = \"file\"\ntoken = \"${file:token}\"\nother = \"Bearer ${file:crlf}\"\nabs = \"${file:ABS}\"\n[sink]\ntype = \"stdout\"\n";
    let text = text.replace("ABS", &dir.path().join("token").display().to_string());
    let c = load_str_with_env(&path, &text, &no_env).unwrap();
    assert_eq!(
        c.source.table["token"].as_str(),
        Some("s3cr3t-from-file-91")
    );
    assert_eq!(
        c.source.table["other"].as_str(),
        Some("Bearer crlf-secret-value-72")
    );
    assert_eq!(c.source.table["abs"].as_str(), Some("s3cr3t-from-file-91"));
    assert_eq!(
        tributary_core::secret::redact("got s3cr3t-from-file-91 and crlf-secret-value-72"),
        "got *** and ***"
    );
    let debug = format!("{:?}", c.source);
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("crlf-secret"),
        "{debug}"
    );
    let text = "name = \"b\"\n[source]\ntype = \"file\"\ntoken = \"${file:missing}\"\n[sink]\ntype = \"stdout\"\n";
    let e = load_str_with_env(&path, text, &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{}:4: source.token: cannot read secret file {}: ",
            path.display(),
            dir.path().join("missing").display()
        )),
        "{e}"
    );
}

#[test]
fn bare_dollar_variables_warn_when_they_look_intended() {
    let c = load_env(
        &with("[state]\ndir = \"$STATE_DIR\"\n[metadata]\nstream_field = \"pa$Word\"\nload_mode_field = \"x$HOME\"\n"),
        &[("HOME", "/root")],
    )
    .unwrap();
    let warnings: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [
            "/etc/tributary/billing.toml:7: state.dir: `$STATE_DIR` is taken literally; write `${STATE_DIR}` to use the environment variable STATE_DIR",
            "/etc/tributary/billing.toml:10: metadata.load_mode_field: `$HOME` is taken literally; write `${HOME}` to use the environment variable HOME",
        ]
    );
    // Taken literally, as before.
    assert_eq!(c.metadata.stream_field, "pa$Word");
    assert!(load(&with("")).unwrap().warnings.is_empty());
}

#[test]
fn state_needs_resolve_only_the_state_keys() {
    let text = with("[state]\ndir = \"${STATE_DIR}\"\n").replace(
        "type = \"file\"\n",
        "type = \"file\"\ntoken = \"${API_TOKEN}\"\n",
    );
    let state_only = |vars: &[(&str, &str)]| {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_str_for(
            Path::new(FILE),
            &text,
            &move |n| vars.get(n).cloned(),
            Needs::State,
        )
    };
    let c = state_only(&[("STATE_DIR", "/srv/s")]).unwrap();
    assert_eq!(
        c.state,
        StateConfig::Embedded {
            dir: "/srv/s".into()
        }
    );
    assert_eq!(c.source.table["token"].as_str(), Some("${API_TOKEN}"));
    assert_eq!(
        state_only(&[]).unwrap_err().to_string(),
        "/etc/tributary/billing.toml:8: state.dir: environment variable STATE_DIR is not set"
    );
    assert_eq!(
        err_env(&text, &[("STATE_DIR", "/srv/s")]),
        "/etc/tributary/billing.toml:4: source.token: environment variable API_TOKEN is not set"
    );
}
