//! `check` tells the truth: it runs every validation `run` would, reports
//! every config error at once, and its errors name the operation, the
//! target and the cause, with only the secret masked.

use std::process::Stdio;
use std::time::{Duration, Instant};
use tributary_testkit::cli::*;
use tributary_testkit::kafka::{unique, Kafka};
use tributary_testkit::postgres as pg;

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

const GEN: &str = "name = \"g\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\ntotal = 5\n";

#[test]
fn every_config_error_of_a_file_is_reported_at_once_in_line_order() {
    let ws = workspace();
    let cfg = ws.write(
        "typos.toml",
        "name = \"g\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\ntotl = 5\n[sink]\ntype = \"file\"\ndri = \"out\"\n[runtime]\nbatch_sise = 3\nflush_interval = \"ten\"\n[state]\nurl = \"kafka://127.0.0.1:1/t?sasl.usernme=x\"\n",
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 2);
    // Nothing is "ok" when anything is wrong.
    assert_eq!(stdout(&o), "");
    let p = cfg.display();
    let expected = [
        format!("error: {p}:6: source.streams.users.totl: unknown key `totl` (did you mean `total`?)"),
        format!("error: {p}:7: sink: missing key `dir`"),
        format!("error: {p}:9: sink.dri: unknown key `dri`"),
        format!("error: {p}:11: runtime.batch_sise: unknown key `batch_sise` (did you mean `batch_size`?)"),
        format!("error: {p}:12: runtime.flush_interval: invalid duration `ten`"),
    ];
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(line.starts_with(want.as_str()), "{line}\nwanted {want}");
    }
}

#[test]
fn an_override_of_an_unknown_stream_is_a_config_error_in_check_and_run() {
    let ws = workspace();
    let cfg = ws.write(
        "g.toml",
        &format!(
            "{GEN}[sink]\ntype = \"file\"\ndir = \"out\"\n\n[streams.userz]\ntarget = \"people\"\n"
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let expected = format!(
        "error: {cfg}:11: streams.userz: [streams.userz] names no stream of this source; it offers: users (did you mean `users`?)\n"
    );
    let o = ws.run(&["check", cfg]);
    assert_exit(&o, 2);
    assert_eq!(stderr(&o), expected);
    assert_eq!(stdout(&o), "");
    let o = ws.run(&["run", "--once", "--no-progress", cfg]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains(&format!(
            "connector `g`: {cfg}:11: streams.userz: [streams.userz] names no stream of this source; it offers: users (did you mean `users`?)"
        )),
        "{}",
        stderr(&o)
    );
    assert!(ws.output("out", "g.users").is_empty());
}

#[test]
fn check_prints_ok_last_after_every_part() {
    let ws = workspace();
    let cfg = ws.write("g.toml", &format!("{GEN}[sink]\ntype = \"stdout\"\n"));
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    let firsts: Vec<&str> = out.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        firsts,
        [
            "config   ok",
            "source   ok",
            "sink     ok",
            "state    ok",
            "ok"
        ],
        "{out}"
    );
    assert!(
        out.ends_with("ok: connector `g` is ready to run\n"),
        "{out}"
    );
}

/// A scratch schema and a login role with USAGE but no CREATE on it.
struct Restricted {
    schema: String,
    role: String,
    rt: tokio::runtime::Runtime,
}

impl Restricted {
    fn new() -> Restricted {
        let r = Restricted {
            schema: pg::unique_schema("t_chk"),
            role: pg::unique_schema("r_chk"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        r.exec(&format!(
            "CREATE SCHEMA \"{s}\"; CREATE ROLE \"{u}\" LOGIN; GRANT USAGE ON SCHEMA \"{s}\" TO \"{u}\"",
            s = r.schema,
            u = r.role
        ));
        r
    }

    fn exec(&self, sql: &str) {
        self.rt.block_on(async {
            let mut c = pg::connect().await;
            sqlx::raw_sql(sql)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
    }

    fn tables(&self) -> usize {
        self.rt.block_on(async {
            let mut c = pg::connect().await;
            pg::rows(
                &mut c,
                &format!(
                    "SELECT tablename FROM pg_tables WHERE schemaname = '{}'",
                    self.schema
                ),
            )
            .await
            .len()
        })
    }
}

impl Drop for Restricted {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.exec(&format!(
                "DROP SCHEMA IF EXISTS \"{s}\" CASCADE; DROP OWNED BY \"{u}\"; DROP ROLE IF EXISTS \"{u}\"",
                s = self.schema,
                u = self.role
            ))
        }));
    }
}

#[test]
fn a_postgres_sink_user_without_create_fails_check_naming_the_schema_and_check_leaves_nothing() {
    let db = Restricted::new();
    let ws = workspace();
    let url = format!("postgres://{}@127.0.0.1:5432/test", db.role);
    let cfg = ws.write(
        "pg.toml",
        &format!(
            "{GEN}[sink]\ntype = \"postgres\"\nurl = \"{url}\"\nschema = \"{}\"\n",
            db.schema
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let o = ws.run(&["check", cfg]);
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "postgres sink: cannot create tables in schema `{}`: permission denied for schema {}",
            db.schema, db.schema
        )),
        "{err}"
    );
    assert!(!stdout(&o).contains("sink     ok"), "{}", stdout(&o));

    db.exec(&format!(
        "GRANT CREATE ON SCHEMA \"{}\" TO \"{}\"",
        db.schema, db.role
    ));
    let o = ws.run(&["check", cfg]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("sink     ok: type `postgres`"));
    // The dry run was rolled back.
    assert_eq!(db.tables(), 0);

    // A table the user may not write is named too.
    db.exec(&format!(
        "CREATE TABLE \"{s}\".g_users (id bigint PRIMARY KEY); REVOKE ALL ON \"{s}\".g_users FROM \"{u}\"",
        s = db.schema,
        u = db.role
    ));
    let o = ws.run(&["check", cfg]);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("the user may not write table"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_refused_database_port_is_named_at_once_with_the_target_and_only_the_password_masked() {
    let ws = workspace();
    // The sink: the password is the common word `postgres`, which must
    // stay readable everywhere else in the message.
    let cfg = ws.write(
        "pg.toml",
        &format!("{GEN}[sink]\ntype = \"postgres\"\nurl = \"postgres://postgres:${{PGPASSWORD}}@127.0.0.1:1/nosuchdb\"\n"),
    );
    let started = Instant::now();
    let o = ws
        .cmd(&["check", cfg.to_str().unwrap()])
        .env("PGPASSWORD", "postgres")
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert_eq!(
        stderr(&o).lines().next().unwrap(),
        "error: sink: postgres sink: connecting to postgres://postgres:***@127.0.0.1:1/nosuchdb: connection refused: nothing listens on that host and port (error communicating with database: Connection refused (os error 111))"
    );

    // The sql source, its whole URL from the environment, no password:
    // the URL is shown whole, and the cause comes at once, not as "pool
    // timed out" after the 30 s connect timeout.
    let cfg = ws.write(
        "sql.toml",
        "name = \"s\"\n[source]\ntype = \"sql\"\nurl = \"${DATABASE_URL}\"\ntables = [\"t\"]\n[sink]\ntype = \"stdout\"\n",
    );
    let mut cmd = ws.cmd(&["check", cfg.to_str().unwrap()]);
    cmd.env("DATABASE_URL", "postgres://loader@127.0.0.1:1/shop")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = wait_output(cmd.spawn().unwrap(), Duration::from_secs(120));
    assert_exit(&o, 3);
    assert_eq!(
        stderr(&o),
        "error: source: cannot connect to the database (postgres://loader@127.0.0.1:1/shop): connection refused: nothing listens on that host and port (error communicating with database: Connection refused (os error 111))\n"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );

    // An unknown host is a DNS failure.
    let mut cmd = ws.cmd(&["check", cfg.to_str().unwrap()]);
    cmd.env(
        "DATABASE_URL",
        "postgres://loader@no-such-host.invalid:5432/shop",
    );
    let o = cmd.output().unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("(postgres://loader@no-such-host.invalid:5432/shop): the host name does not resolve (DNS)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn sasl_without_a_mechanism_is_a_config_error_naming_file_line_and_key() {
    let ws = workspace();
    let cfg = ws.write(
        "k.toml",
        &format!("{GEN}[sink]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\n[sink.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"pw-Secret-123\"\n"),
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        format!(
            "error: {}:11: sink.properties.\"security.protocol\": `security.protocol = SASL_SSL` needs `sasl.mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER); without it librdkafka tries Kerberos (GSSAPI)\n",
            cfg.display()
        )
    );
}

#[test]
fn unreachable_kafka_sink_and_state_store_are_one_line_each_in_bounded_time() {
    let ws = workspace();
    let cfg = ws.write(
        "k.toml",
        &format!("{GEN}[sink]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\n"),
    );
    let mut cmd = ws.cmd(&["check", cfg.to_str().unwrap()]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let o = wait_output(cmd.spawn().unwrap(), Duration::from_secs(120));
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: sink: kafka sink: cannot reach 127.0.0.1:1"),
        "{err}"
    );

    let cfg = ws.write(
        "s.toml",
        &format!(
            "{GEN}[sink]\ntype = \"stdout\"\n[state]\nurl = \"kafka://127.0.0.1:1/offsets\"\n"
        ),
    );
    let mut cmd = ws.cmd(&["check", cfg.to_str().unwrap()]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let o = wait_output(cmd.spawn().unwrap(), Duration::from_secs(120));
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: state store kafka://127.0.0.1:1/offsets: cannot reach the brokers at 127.0.0.1:1 within 10s"),
        "{err}"
    );
    assert!(!stdout(&o).contains("ready to run"), "{}", stdout(&o));
}

#[test]
fn a_reachable_kafka_state_store_is_contacted_and_its_topic_left_alone() {
    let broker = Kafka::shared();
    let topic = unique("chk_offsets");
    let ws = workspace();
    let cfg = ws.write(
        "s.toml",
        &format!(
            "{GEN}[sink]\ntype = \"stdout\"\n[state]\nurl = \"kafka://{}/{topic}\"\n",
            broker.brokers()
        ),
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains(&format!(
            "state    ok: kafka store, {} reachable; topic `{topic}` is created (compacted) by the first run",
            broker.brokers()
        )),
        "{}",
        stdout(&o)
    );
    assert!(!broker.topics().contains(&topic));
    broker.create_topic(&topic, 2);
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("the topic has 2 partitions; the state store needs exactly one"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_cron_out_of_range_names_the_field() {
    let ws = workspace();
    let cfg = ws.write(
        "c.toml",
        &GEN.replacen(
            "name = \"g\"\n",
            "name = \"g\"\nschedule = { cron = \"0 0 25 * * ?\" }\n",
            1,
        )
        .replace("total = 5\n", "total = 5\n[sink]\ntype = \"stdout\"\n"),
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).starts_with(&format!(
            "error: {}:2: schedule: invalid cron expression `0 0 25 * * ?`: HOUR (3rd field) is `25`, but 25 is outside 0-23.",
            cfg.display()
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_kafka_client_library_logs_each_cause_once_while_a_broker_is_down() {
    let ws = workspace();
    let cfg = ws.write(
        "k.toml",
        &format!("{GEN}[sink]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\n"),
    );
    let cmd = ws.cmd(&[
        "run",
        cfg.to_str().unwrap(),
        "--no-progress",
        "--admin-addr",
        "0",
    ]);
    let p = AdminProcess::spawn(cmd);
    // The sink's first metadata request gives up after 30 s; librdkafka
    // retried the broker hundreds of times meanwhile.
    wait_until(Duration::from_secs(90), "the sink's first retry", || {
        p.log().contains("sink error; retrying")
    });
    let log = p.log();
    let client: Vec<&str> = log.lines().filter(|l| l.contains("librdkafka:")).collect();
    assert!(!client.is_empty(), "{log}");
    let refused = client
        .iter()
        .filter(|l| l.contains("Connect to ipv4#127.0.0.1:1 failed: Connection refused"))
        .count();
    let all_down = client
        .iter()
        .filter(|l| l.contains("AllBrokersDown"))
        .count();
    // FAIL and its BrokerTransportFailure global error: one line each.
    assert_eq!(refused, 2, "{log}");
    assert_eq!(all_down, 1, "{log}");
}
