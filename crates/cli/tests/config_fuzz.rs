//! Config fuzzing: thousands of deterministic mutations of every TOML
//! example in README.md and docs/ go through what `check` validates before
//! it connects anywhere (the loader, the source's and the sink's own typing),
//! in process; a sample of those that pass then goes through the binary's
//! `run --once` where the source and sink are local. The outcome: no panic,
//! and every error names the file and a line (or "top level").
//!
//! Kafka sources and sinks are typed by loading only: building them creates
//! librdkafka clients, which is neither cheap nor validation.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tributary_testkit::cli::*;

const SEED: u64 = 20;
const MUTATIONS_PER_EXAMPLE: usize = 250;
const RUN_SAMPLE: usize = 10;

/// Every ```toml block of README.md and docs/**/*.md, with where it came from.
fn examples() -> Vec<(String, String)> {
    tributary_testkit::docs::toml_blocks()
        .into_iter()
        .map(|b| (b.at, complete(&b.text)))
        .collect()
}

/// Most examples show one section: the rest is filled in as a user would
/// (a name, a generator source, a stdout sink), so mutations reach it.
fn complete(block: &str) -> String {
    let Ok(table) = block.parse::<toml_edit::DocumentMut>() else {
        return block.to_string();
    };
    let mut head = String::new();
    if !table.contains_key("name") {
        head.push_str("name = \"fuzz\"\n");
    }
    let mut tail = String::new();
    if !table.contains_key("source") {
        tail.push_str("\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\ntotal = 3\n");
    }
    if !table.contains_key("sink") {
        tail.push_str("\n[sink]\ntype = \"stdout\"\n");
    }
    format!("{head}{block}{tail}")
}

/// Values that have broken parsers before: overflowing, negative, zero,
/// out-of-range durations and sizes, odd references.
const NASTY_VALUES: &[&str] = &[
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "-1",
    "0",
    "1e400",
    "nan",
    "\"18446744073709551615s\"",
    "\"300000000d\"",
    "\"P1M\"",
    "\"PT0S\"",
    "\"P99999999999999999999D\"",
    "\"0s\"",
    "\"18446744073709551615GiB\"",
    "\"${UNSET_VARIABLE_XYZ}\"",
    "\"${file:/nonexistent/secret}\"",
    "\"${BAD NAME}\"",
    "\"${\"",
    "\"\"",
    "[]",
    "{}",
    "true",
    "\"0 0 25 * * ?\"",
    "\"Mars/Olympus\"",
];

/// Numbers put in place of a number inside a value (inline tables, arrays).
const NASTY_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1e-300",
    "5e-324",
    "1e300",
    "9223372036854775807",
    "18446744073709551615",
    "0.5",
    "-0.0",
    "inf",
    "nan",
];

const NASTY_BYTES: &[&[u8]] = &[
    b"[", b"]", b"=", b"\"", b"{", b"}", b"$", b"\xFF", b"\xC3", b"\n", b",", b"'''", b".", b"#",
    b"[[", b"\\",
];

fn mutate(rng: &mut StdRng, text: &str) -> Vec<u8> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let rounds = rng.random_range(1..=3);
    let mut bytes: Option<Vec<u8>> = None;
    for _ in 0..rounds {
        let i = rng.random_range(0..lines.len());
        match rng.random_range(0..12) {
            // Replace a value with a nasty one.
            0..=2 => {
                if let Some((k, _)) = lines[i].split_once('=') {
                    let v = NASTY_VALUES[rng.random_range(0..NASTY_VALUES.len())];
                    lines[i] = format!("{k}= {v}");
                }
            }
            // A number inside the value, wherever it is.
            3 | 10 | 11 if lines[i].contains(|c: char| c.is_ascii_digit()) => {
                let l = &lines[i];
                let start = l.find(|c: char| c.is_ascii_digit()).unwrap_or(0);
                let len = l[start..]
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(l.len() - start);
                let n = NASTY_NUMBERS[rng.random_range(0..NASTY_NUMBERS.len())];
                lines[i] = format!("{}{n}{}", &l[..start], &l[start + len..]);
            }
            3 | 10 | 11 => {
                lines.remove(i);
                if lines.is_empty() {
                    lines.push(String::new());
                }
            }
            4 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            5 => {
                let j = rng.random_range(0..lines.len());
                lines.swap(i, j);
            }
            // A typo in a key.
            6 => {
                if let Some((k, v)) = lines[i].clone().split_once('=') {
                    let mut k: Vec<char> = k.chars().collect();
                    if k.len() > 2 {
                        let at = rng.random_range(0..k.len() - 1);
                        k.swap(at, at + 1);
                    }
                    lines[i] = format!("{}={v}", k.into_iter().collect::<String>());
                }
            }
            // Deep nesting.
            7 => {
                let depth = rng.random_range(10..400);
                let v = if rng.random_bool(0.5) {
                    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
                } else {
                    format!("{}1{}", "{a=".repeat(depth), "}".repeat(depth))
                };
                lines.insert(i, format!("deep = {v}"));
            }
            // A bare $VAR.
            8 => lines.insert(i, "dollar = \"$HOME\"".to_string()),
            // Raw bytes, possibly invalid UTF-8, anywhere.
            _ => {
                let mut b = bytes
                    .take()
                    .unwrap_or_else(|| lines.join("\n").into_bytes());
                let at = rng.random_range(0..=b.len());
                let ins = NASTY_BYTES[rng.random_range(0..NASTY_BYTES.len())];
                b.splice(at..at, ins.iter().copied());
                bytes = Some(b);
            }
        }
    }
    bytes.unwrap_or_else(|| {
        let mut t = lines.join("\n");
        t.push('\n');
        t.into_bytes()
    })
}

/// Every `${NAME}` an example uses resolves (the docs' examples expect the
/// user to export them); `UNSET_VARIABLE_XYZ` stays unset.
fn env(name: &str) -> Option<String> {
    (name != "UNSET_VARIABLE_XYZ").then(|| format!("value-of-{name}"))
}

enum Outcome {
    Valid(Box<tributary_config::ConnectorConfig>),
    Error(String),
}

/// What `check` validates before it connects.
fn validate(path: &Path) -> Outcome {
    let mut config = match tributary_config::load_file_with_env(path, &env) {
        Ok(c) => c,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    if let Err(e) = tributary_sources::builtin().apply_defaults(&mut config) {
        return Outcome::Error(e.to_string());
    }
    if config.source.kind != "kafka" {
        let ctx = tributary_sources::SourceContext::from_config(
            &config,
            Arc::new(tributary_core::SystemClock),
        );
        if let Err(e) = tributary_sources::builtin().build(&config.source, &ctx) {
            return Outcome::Error(e.to_string());
        }
    }
    if config.sink.kind != "kafka" {
        let ctx = tributary_sinks::SinkContext {
            connector: config.name.clone(),
            bad_records: config.bad_records.policy,
            state_url: None,
            kafka_state: None,
            flush_interval: config.runtime.flush_interval,
        };
        if let Err(e) = tributary_sinks::build(&config.sink, &ctx) {
            return Outcome::Error(e.to_string());
        }
    }
    Outcome::Valid(Box::new(config))
}

/// `FILE:LINE: ...` or `FILE: top level: ...`.
fn located(message: &str, file: &str) -> bool {
    let Some(rest) = message.strip_prefix(file) else {
        return false;
    };
    if rest.starts_with(": top level: ") {
        return true;
    }
    rest.strip_prefix(':')
        .and_then(|r| r.split_once(':'))
        .is_some_and(|(line, _)| !line.is_empty() && line.chars().all(|c| c.is_ascii_digit()))
}

#[test]
fn mutated_doc_examples_never_panic_and_every_error_is_located() {
    let examples = examples();
    assert!(
        examples.len() >= 20,
        "found only {} TOML examples",
        examples.len()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.toml");
    let file = path.display().to_string();
    let mut rng = StdRng::seed_from_u64(SEED);
    let started = std::time::Instant::now();
    let (mut total, mut valid, mut panics, mut unlocated) = (0, 0, Vec::new(), Vec::new());
    let mut runnable = Vec::new();
    let mut valid_examples = 0;
    for (name, text) in &examples {
        std::fs::write(&path, text).unwrap();
        if matches!(validate(&path), Outcome::Valid(_)) {
            valid_examples += 1;
        }
        for _ in 0..MUTATIONS_PER_EXAMPLE {
            let bytes = mutate(&mut rng, text);
            std::fs::write(&path, &bytes).unwrap();
            total += 1;
            match std::panic::catch_unwind(AssertUnwindSafe(|| validate(&path))) {
                Err(_) => panics.push(format!("{name}:\n{}", String::from_utf8_lossy(&bytes))),
                Ok(Outcome::Error(m)) if !located(&m, &file) => {
                    unlocated.push(format!("{name}: {m}"))
                }
                Ok(Outcome::Error(_)) => {}
                Ok(Outcome::Valid(c)) => {
                    valid += 1;
                    let local = matches!(c.source.kind.as_str(), "generator" | "file")
                        && matches!(c.sink.kind.as_str(), "stdout" | "file");
                    // A few per example, for variety.
                    let new = runnable.iter().filter(|(n, _)| n == name).count() < 4;
                    if local && new && runnable.len() < RUN_SAMPLE {
                        runnable.push((name.clone(), bytes));
                    }
                }
            }
        }
    }
    eprintln!(
        "{total} mutated configs from {} examples ({valid_examples} valid as written) in {:?}: {valid} valid, {} panics, {} errors without a location",
        examples.len(),
        started.elapsed(),
        panics.len(),
        unlocated.len()
    );
    assert!(
        panics.is_empty(),
        "{} panics, first:\n{}",
        panics.len(),
        panics[0]
    );
    assert!(
        unlocated.is_empty(),
        "{} errors without file:line, e.g.:\n{}",
        unlocated.len(),
        unlocated[..unlocated.len().min(10)].join("\n")
    );
    assert!(valid > 0 && total >= 2_000, "{valid} of {total}");
    // The examples themselves are h20c's docs check; here they only need to
    // be mostly valid so that mutations reach past the loader.
    assert!(
        valid_examples * 2 >= examples.len(),
        "{valid_examples} of {} examples valid",
        examples.len()
    );

    // The valid local ones through the binary: `run --once` may fail (a
    // missing input file), but never panics, and its config errors are located.
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let started = std::time::Instant::now();
    let ran = runnable.len();
    for (_, bytes) in runnable {
        std::fs::write(ws.path("fuzz.toml"), &bytes).unwrap();
        let mut cmd = ws.cmd(&["run", "--once", "fuzz.toml"]);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TRIBUTARY_")) {
            cmd.env_remove(k);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // An endless generator never ends by itself: stop it after a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            sigterm(&child);
        }
        let o = wait_output(child, Duration::from_secs(60));
        let err = stderr(&o);
        assert!(
            !err.contains("panicked") && o.status.code() != Some(101),
            "{}\n{err}",
            String::from_utf8_lossy(&bytes)
        );
        if o.status.code() == Some(2) {
            assert!(err.contains("fuzz.toml:"), "{err}");
        }
    }
    eprintln!(
        "{ran} valid local configs through `run --once` in {:?}",
        started.elapsed()
    );
}
