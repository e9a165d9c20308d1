//! Every ```toml block of README.md and docs/ through `tributary check`, so
//! an example a user copies is one the binary takes.
//!
//! A block that shows one table (`[sink]`, `[state]`, `[runtime]`) is
//! completed with what it leaves out: `name = "docs"`, a generator
//! `[source]` and a stdout `[sink]`; nothing the block sets is changed but
//! hosts and secrets: `${VAR}`s get a value, and hosts are pointed at the
//! services the tests run (Kafka, PostgreSQL, MariaDB, Mosquitto). Blocks
//! that cannot be a config on their own are marked ```toml fragment in the
//! docs and skipped, counted.
//!
//! Config errors (exit 2) and panics fail the test for every block. A block
//! whose source or sink is a system this machine does not have (a SaaS API
//! at example.com or chargeover.com, Stripe, a WebSocket feed, a TLS-only
//! broker) may fail the connectivity step (exit 3) only.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::docs::{toml_blocks, DocBlock};

/// How many blocks may be marked fragments: few, on purpose.
const MAX_FRAGMENTS: usize = 2;

/// Whether the TOML text has a top-level key or table named `key`.
fn has(text: &str, key: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with(&format!("{key} ="))
            || l.starts_with(&format!("{key}="))
            || l.starts_with(&format!("[{key}]"))
            || l.starts_with(&format!("[{key}."))
            || l.starts_with(&format!("[[{key}."))
    })
}

/// The block as a whole config on this machine.
fn complete(text: &str, kafka: &str) -> String {
    let mut t = text.to_string();
    let hosts = [
        ("kafka-1:9092,kafka-2:9092", kafka),
        ("kafka-1:9092", kafka),
        ("host:9092", kafka),
        (
            "etl:${PGPASSWORD}@db:5432/shop",
            "postgres:${PGPASSWORD}@127.0.0.1:5432/docs_examples",
        ),
        (
            "etl:${PGPASSWORD}@db.internal:5432/shop",
            "postgres:${PGPASSWORD}@127.0.0.1:5432/docs_examples",
        ),
        (
            "loader@db.internal:5432/warehouse?sslmode=require",
            "postgres@127.0.0.1:5432/docs_examples",
        ),
        (
            "reader:${DB_PASSWORD}@127.0.0.1:3306/shop",
            "root:${DB_PASSWORD}@127.0.0.1:3306/docs_examples",
        ),
    ];
    for (from, to) in hosts {
        t = t.replace(from, to);
    }
    // The bridges' examples run the connectors scripts/setup installs.
    for (program, venv) in [
        ("tap-postgres", "tap-postgres"),
        ("tap-rest-api-msdk", "tap-rest-api-msdk"),
        ("source-faker", "source-faker"),
        ("source-declarative-manifest", "airbyte-cdk"),
    ] {
        let venv_bin = format!("\".venv/bin/{program}\"");
        if t.contains(&venv_bin) {
            let path = tool(&format!("{venv}/bin/{program}"));
            t = t.replace(&venv_bin, &format!("\"{}\"", path.display()));
        }
    }
    let mut head = String::new();
    if !has(&t, "name") {
        head.push_str("name = \"docs\"\n");
    }
    let mut tail = String::new();
    if !has(&t, "source") {
        tail.push_str("\n[source]\ntype = \"generator\"\n[source.streams.invoices]\nrecord_type = \"order\"\ntotal = 1\n");
    }
    if !has(&t, "sink") {
        tail.push_str("\n[sink]\ntype = \"stdout\"\n");
    }
    format!("{head}{t}{tail}")
}

/// Which blocks need a system this machine does not run.
fn external(text: &str) -> bool {
    [
        "example.com",
        "type = \"chargeover\"",
        "type = \"stripe_reporting\"",
        "SASL_SSL",
        "sslmode=require",
    ]
    .iter()
    .any(|s| text.contains(s))
}

fn check(dir: &Path, block: &DocBlock, kafka: &str) -> Result<(), String> {
    let config = complete(&block.text, kafka);
    let file = dir.join("connector.toml");
    std::fs::write(&file, &config).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/orders-1.csv"), "id,total\n1,9.5\n").unwrap();
    std::fs::write(dir.join("data/invoices.csv"), "id,total\n1,9.5\n").unwrap();
    if block.text.contains("ca_file = \"certs/ca.pem\"") {
        self_signed_ca(&dir.join("certs"));
    }
    if block.text.contains("manifest = \"manifest.yaml\"") {
        let fixture = repo_root().join("crates/cli/tests/fixtures/bridges/rest_sim_manifest.yaml");
        std::fs::copy(fixture, dir.join("manifest.yaml")).unwrap();
    }
    if block.text.contains("sqlite://data/app.db") {
        sqlite_db(&dir.join("data/app.db"));
    }
    if block.text.contains("type = \"fivetran\"") {
        fivetran_project(dir);
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.arg("check")
        .arg(&file)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "CLIENT_SECRET",
        "STRIPE_API_KEY",
        "MQTT_PASSWORD",
        "KAFKA_PASSWORD",
        "CHARGEOVER_PASSWORD",
        "API_TOKEN",
        "WS_TOKEN",
    ] {
        cmd.env(var, format!("docs-{var}"));
    }
    cmd.env("PGPASSWORD", "postgres").env("DB_PASSWORD", "");
    let o = wait_output(cmd.spawn().unwrap(), Duration::from_secs(180));
    let code = o.status.code().unwrap_or(-1);
    let allowed: &[i32] = if external(&block.text) { &[0, 3] } else { &[0] };
    if allowed.contains(&code) {
        Ok(())
    } else {
        Err(format!(
            "{}: `tributary check` exited {code}:\n{}{}\n--- as checked:\n{config}",
            block.at,
            stdout(&o),
            stderr(&o)
        ))
    }
}

/// What the `fivetran` examples name: `.venv/bin/python` with the SDK
/// (the one `scripts/setup` installs) and the example connector in
/// `connector/`, whose `schema()` `check` runs.
fn fivetran_project(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join(".venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let python = bin.join("python");
    let sdk = tool("fivetran/bin/python");
    std::fs::write(
        &python,
        format!("#!/bin/sh\nexec '{}' \"$@\"\n", sdk.display()),
    )
    .unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(dir.join("connector")).unwrap();
    for file in ["connector.py", "api.py"] {
        std::fs::copy(
            repo_root().join("examples/fivetran").join(file),
            dir.join("connector").join(file),
        )
        .unwrap();
    }
}

/// A CA certificate for the examples' `tls.ca_file`.
fn self_signed_ca(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let o = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=docs-example-ca", "-keyout"])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .output()
        .unwrap();
    assert_exit(&o, 0);
}

fn sqlite_db(path: &Path) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
            .execute(&mut c)
            .await
            .unwrap();
    });
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The tables the SQL examples read, in a database of their own on the
/// test servers, so no other test's tables are touched.
fn sql_tables() {
    use sqlx::Connection;
    block_on(async {
        let mut pg = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test")
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/services)");
        // Another run may have made it already.
        let _ = sqlx::query("CREATE DATABASE docs_examples")
            .execute(&mut pg)
            .await;
        let mut pg =
            sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/docs_examples")
                .await
                .unwrap();
        for ddl in [
            "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, updated_at TIMESTAMP NOT NULL, amount NUMERIC, status TEXT, deleted_at TIMESTAMP)",
            "CREATE TABLE IF NOT EXISTS order_items (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, sku TEXT, qty INT)",
        ] {
            sqlx::query(ddl).execute(&mut pg).await.unwrap();
        }
        let mut my = sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306/test")
            .await
            .expect("MariaDB on 127.0.0.1:3306 (scripts/services)");
        sqlx::query("CREATE DATABASE IF NOT EXISTS docs_examples")
            .execute(&mut my)
            .await
            .unwrap();
        for ddl in [
            "CREATE TABLE IF NOT EXISTS docs_examples.countries (id INT PRIMARY KEY, name TEXT)",
            "CREATE TABLE IF NOT EXISTS docs_examples.currencies (id INT PRIMARY KEY, code TEXT)",
            "CREATE TABLE IF NOT EXISTS docs_examples.events (id BIGINT PRIMARY KEY, payload JSON)",
        ] {
            sqlx::query(ddl).execute(&mut my).await.unwrap();
        }
    });
}

#[test]
fn every_toml_example_in_the_docs_passes_check() {
    sql_tables();
    let kafka = std::env::var("TRIBUTARY_KAFKA_BOOTSTRAP").expect(
        "TRIBUTARY_KAFKA_BOOTSTRAP: run `export TRIBUTARY_KAFKA_BOOTSTRAP=$(scripts/kafka shared)`",
    );
    let all = toml_blocks();
    assert!(all.len() >= 25, "only {} toml blocks found", all.len());
    let fragments: Vec<&str> = all
        .iter()
        .filter(|b| b.fragment)
        .map(|b| b.at.as_str())
        .collect();
    assert!(
        fragments.len() <= MAX_FRAGMENTS,
        "too many fragments: {fragments:?}"
    );
    let dirs: Vec<tempfile::TempDir> = all.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    // In parallel: the blocks aimed at unreachable systems wait for timeouts.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .iter()
            .zip(&dirs)
            .filter(|(b, _)| !b.fragment)
            .map(|(b, d)| {
                let kafka = kafka.as_str();
                s.spawn(move || check(d.path(), b, kafka))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} examples fail:\n\n{}",
        failures.len(),
        all.len() - fragments.len(),
        failures.join("\n\n")
    );
}
