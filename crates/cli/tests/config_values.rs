//! Config values through the binary: ranges checked when the file is read
//! (never a panic or a wait of years at run time), every error located,
//! `${X:-default}` / `${file:PATH}` references, the bare-`$VAR` warning,
//! `state` commands that resolve only the state store, and `Retry-After`
//! bounded by `runtime.max_retry_after`.

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tributary_testkit::cli::*;
use tributary_testkit::sim::rest::{RestAuth, RestSim, RestSimConfig};

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

fn run(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = ws.cmd(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    wait_output(cmd.spawn().unwrap(), Duration::from_secs(120))
}

/// A generator connector that needs no service, with `top` before the
/// tables and `extra` after them.
fn generator(top: &str, extra: &str) -> String {
    format!(
        "name = \"gen\"\n{top}\n[source]\ntype = \"generator\"\n[source.streams.ticks]\nrecord_type = \"user\"\ntotal = 5\n[sink]\ntype = \"file\"\ndir = \"out\"\n{extra}"
    )
}

fn assert_no_panic(o: &Output) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(o.status.code(), Some(101), "{err}");
}

#[test]
fn values_that_would_overflow_or_wait_for_years_are_config_errors_in_check_and_run() {
    let ws = workspace();
    let cases = [
        (
            generator("schedule = { interval = \"18446744073709551615s\" }", ""),
            ":2: schedule.interval: duration `18446744073709551615s` is too long: at most 366 days (`366d`, `P366D`)",
        ),
        (
            generator("schedule = { interval = \"300000000d\" }", ""),
            ":2: schedule.interval: duration `300000000d` is too long: at most 366 days (`366d`, `P366D`)",
        ),
        (
            generator("", "[runtime]\nbackoff_initial = \"18446744073709551615s\"\nbackoff_max = \"18446744073709551615s\"\n"),
            ":12: runtime.backoff_initial: duration `18446744073709551615s` is too long: at most 366 days (`366d`, `P366D`)",
        ),
        (
            generator("", "[runtime]\nbackoff_initial = \"30d\"\nbackoff_max = \"30d\"\n"),
            ":12: runtime.backoff_initial: too long for a retry wait: at most 1 day (`24h`, `P1D`)",
        ),
        (
            generator("", "[runtime]\nbatch_size = 18446744073709551615\n"),
            ":12: runtime.batch_size: number too large: integers are at most 9223372036854775807",
        ),
        (
            generator("", "[runtime]\nchannel_capacity = 9223372036854775807\n"),
            ":12: runtime.channel_capacity: 9223372036854775807 is out of range: use 1 to 10000",
        ),
        (
            generator("", "max_file_size = \"18446744073709551615GiB\"\n"),
            ":11: sink.max_file_size: size `18446744073709551615GiB` is too large: at most 1 TiB",
        ),
    ];
    for (text, expected) in cases {
        ws.write("c.toml", &text);
        for args in [["check", "c.toml"].as_slice(), &["run", "--once", "c.toml"]] {
            let o = run(&ws, args, &[]);
            assert_no_panic(&o);
            assert_exit(&o, 2);
            let err = stderr(&o);
            assert!(err.starts_with("error: c.toml:"), "{args:?}: {err}");
            assert!(err.contains(expected), "{args:?} {expected}: {err}");
        }
    }
}

#[test]
fn iso_8601_durations_work_where_humantime_ones_do() {
    let ws = workspace();
    ws.write(
        "c.toml",
        &generator(
            "schedule = { interval = \"P1D\" }",
            "[runtime]\nflush_interval = \"PT1S\"\npoll_interval = \"PT0.5S\"\n",
        ),
    );
    // `PT0.5S` is not a whole ISO 8601 duration we accept: a located error.
    let o = run(&ws, &["check", "c.toml"], &[]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o)
            .contains("c.toml:13: runtime.poll_interval: `PT0.5S` is not an ISO 8601 duration"),
        "{}",
        stderr(&o)
    );
    ws.write(
        "c.toml",
        &generator(
            "schedule = { interval = \"P1D\" }",
            "[runtime]\nflush_interval = \"PT1S\"\npoll_interval = \"7s\"\n",
        ),
    );
    let o = run(&ws, &["check", "c.toml"], &[]);
    assert_exit(&o, 0);
}

#[test]
fn parse_failures_invalid_utf8_and_missing_keys_are_located() {
    let ws = workspace();
    let deep = format!(
        "name = \"d\"\nx = {}1{}\n",
        "[".repeat(500),
        "]".repeat(500)
    );
    let cases: [(&[u8], &str); 4] = [
        (deep.as_bytes(), "error: c.toml:2: x: tables or arrays nested too deeply; flatten the structure\n"),
        (b"name = \"d\"\n[source]\ntype = \"gen\xFFerator\"\n", "error: c.toml:3: source.type: the file is not valid UTF-8 (byte 0xFF); save it as UTF-8\n"),
        (b"[source]\ntype = \"generator\"\n[sink]\ntype = \"stdout\"\n", "error: c.toml: top level: missing key `name`\n"),
        (b"name = \"a\"\nname = \"b\"\n", "error: c.toml:2: name: duplicate key\n"),
    ];
    for (bytes, expected) in cases {
        std::fs::write(ws.path("c.toml"), bytes).unwrap();
        let o = run(&ws, &["check", "c.toml"], &[]);
        assert_exit(&o, 2);
        assert_eq!(stderr(&o), expected);
    }
}

#[test]
fn state_commands_do_not_need_the_sources_secrets() {
    let ws = workspace();
    ws.write(
        "c.toml",
        "name = \"api\"\n[source]\ntype = \"http\"\nbase_url = \"http://127.0.0.1:9\"\nauth = { type = \"bearer\", token = \"${API_TOKEN}\" }\n[source.streams.items]\npath = \"/items\"\n[sink]\ntype = \"stdout\"\n[state]\ndir = \"${STATE_DIR:-st}\"\n",
    );
    let o = run(&ws, &["state", "list", "c.toml"], &[]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("no checkpoints committed yet"),
        "{}",
        stdout(&o)
    );
    let o = run(&ws, &["state", "export", "c.toml"], &[]);
    assert_exit(&o, 0);
    // Commands that reach the source still need it.
    let o = run(&ws, &["check", "c.toml"], &[]);
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "error: c.toml:5: source.auth.token: environment variable API_TOKEN is not set\n"
    );
    let o = run(
        &ws,
        &["state", "reset", "c.toml", "--stream", "items", "--to-now"],
        &[],
    );
    assert_exit(&o, 2);
}

#[test]
fn file_secrets_and_env_defaults_reach_the_api_and_never_the_output() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = "tok-from-a-file-7731";
    let sim = rt.block_on(RestSim::start_with(RestSimConfig {
        items: 30,
        auth: RestAuth::Bearer {
            token: token.into(),
        },
        ..RestSimConfig::default()
    }));
    let ws = workspace();
    // As Docker and Kubernetes write secrets: with a trailing newline.
    ws.write("secrets/api_token", &format!("{token}\n"));
    let cfg = format!(
        "name = \"api\"\n[source]\ntype = \"http\"\nbase_url = \"${{API_BASE:-{}}}\"\nauth = {{ type = \"bearer\", token = \"${{file:secrets/api_token}}\" }}\n[source.streams.items]\npath = \"/items/offset\"\nrecords = \"data\"\npagination = {{ type = \"offset\", page_size = 10 }}\n[sink]\ntype = \"file\"\ndir = \"out\"\n",
        sim.base_url()
    );
    ws.write("c.toml", &cfg);
    let o = run(
        &ws,
        &["run", "--once", "--log-level", "debug", "c.toml"],
        &[],
    );
    assert_exit(&o, 0);
    let ids: BTreeMap<i64, usize> = counts(&ws.output("out", "api.items"), "id");
    assert_eq!(ids, (1..=30).map(|i| (i, 1)).collect());
    assert!(!stderr(&o).contains(token) && !stdout(&o).contains(token));

    // A wrong file: the API refuses it and the message does not quote it.
    ws.write("secrets/api_token", "wrong-token-from-file-2291\n");
    let o = run(&ws, &["check", "c.toml"], &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        !stderr(&o).contains("wrong-token-from-file-2291"),
        "{}",
        stderr(&o)
    );
    // A missing file: located, with the path (not a secret).
    std::fs::remove_file(ws.path("secrets/api_token")).unwrap();
    let o = run(&ws, &["check", "c.toml"], &[]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).starts_with("error: c.toml:5: source.auth.token: cannot read secret file "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_bare_dollar_variable_is_warned_about_once() {
    let ws = workspace();
    ws.write(
        "c.toml",
        "name = \"gen\"\n[source]\ntype = \"generator\"\n[source.streams.ticks]\nrecord_type = \"user\"\ntotal = 1\n[sink]\ntype = \"file\"\ndir = \"$OUT_DIR\"\n",
    );
    let o = run(&ws, &["check", "c.toml"], &[("OUT_DIR", "elsewhere")]);
    assert_exit(&o, 0);
    let err = stderr(&o);
    let warning = "c.toml:9: sink.dir: `$OUT_DIR` is taken literally; write `${OUT_DIR}` to use the environment variable OUT_DIR";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
}

#[test]
fn retry_after_is_honoured_up_to_max_retry_after() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(RestSim::start_with(RestSimConfig {
        items: 20,
        ..RestSimConfig::default()
    }));
    let ws = workspace();
    let cfg = format!(
        "name = \"api\"\n[source]\ntype = \"http\"\nbase_url = \"{}\"\n[source.streams.items]\npath = \"/items/offset\"\nrecords = \"data\"\npagination = {{ type = \"offset\", page_size = 10 }}\n[sink]\ntype = \"file\"\ndir = \"out\"\n[runtime]\nmax_retry_after = \"1s\"\n",
        sim.base_url()
    );
    ws.write("c.toml", &cfg);
    // A server asking for 100,000 s (27 h): the connector waits 1 s, as
    // configured, and asks again.
    sim.fail_next(1, 429, Some(100_000));
    let started = Instant::now();
    let o = run(&ws, &["run", "--once", "c.toml"], &[]);
    assert_exit(&o, 0);
    let took = started.elapsed();
    let ids: BTreeMap<i64, usize> = counts(&ws.output("out", "api.items"), "id");
    assert_eq!(ids, (1..=20).map(|i| (i, 1)).collect());
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(stderr(&o).contains("wait=1s"), "{}", stderr(&o));
}
