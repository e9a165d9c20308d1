use super::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tributary_core::ErrorClass;

fn sh(script: &str) -> ChildCommand {
    ChildCommand::new(PathBuf::from("/bin/sh"), "test child", std::env::temp_dir())
        .args(["-c", script])
}

async fn lines(child: &mut Child) -> Result<Vec<String>, tributary_core::ConnectorError> {
    let mut out = Vec::new();
    loop {
        match child.next().await? {
            Output::Line(l) => out.push(l.text),
            Output::Bad(b) => out.push(format!("BAD {}: {}", b.location, b.error)),
            Output::Finished => return Ok(out),
        }
    }
}

#[tokio::test]
async fn lines_are_numbered_and_a_clean_exit_finishes() {
    let mut child = Child::spawn(&sh("printf 'a\\nb\\r\\nlast'")).unwrap();
    let first = child.next().await.unwrap();
    assert!(
        matches!(&first, Output::Line(StdoutLine { number: 1, text }) if text == "a"),
        "{first:?}"
    );
    assert_eq!(lines(&mut child).await.unwrap(), ["b", "last"]);
}

#[tokio::test]
async fn a_crash_is_retryable_and_quotes_the_last_stderr_lines() {
    let script =
        "echo '{\"ok\":1}'; for i in $(seq 1 30); do echo \"ERROR line $i\" >&2; done; exit 3";
    let mut child = Child::spawn(&sh(script)).unwrap();
    let err = lines(&mut child).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
    let msg = err.to_string();
    assert!(
        msg.starts_with("test child exited with status 3; its last stderr lines:"),
        "{msg}"
    );
    assert!(
        msg.contains("ERROR line 30") && msg.contains("ERROR line 23"),
        "{msg}"
    );
    assert!(
        !msg.contains("ERROR line 22"),
        "only the last 8 lines: {msg}"
    );
    assert_eq!(child.stderr_tail().len(), STDERR_TAIL_LINES);
}

#[tokio::test]
async fn a_silent_child_is_killed_after_the_silence_timeout() {
    let mut cmd = sh("echo start; echo 'about to hang' >&2; exec sleep 30");
    cmd.silence_timeout = Some(Duration::from_millis(300));
    let mut child = Child::spawn(&cmd).unwrap();
    assert!(matches!(child.next().await.unwrap(), Output::Line(_)));
    let started = std::time::Instant::now();
    let err = child.next().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(
        err.to_string(),
        "test child wrote nothing for 300ms (silence_timeout): killed it; its last stderr lines:\n  about to hang"
    );
    // Reaped: it is no longer running.
    assert!(child.wait().await.is_ok());
}

#[tokio::test]
async fn invalid_utf8_and_overlong_lines_are_bad_records_with_context() {
    let mut cmd = sh(
        "printf 'ok\\n\\377\\376\\n'; head -c 5000 /dev/zero | tr '\\0' x; printf '\\nafter\\n'",
    );
    cmd.max_line_bytes = 4096;
    let mut child = Child::spawn(&cmd).unwrap();
    assert!(matches!(child.next().await.unwrap(), Output::Line(_)));
    let Output::Bad(b) = child.next().await.unwrap() else {
        panic!("not UTF-8 is bad")
    };
    assert_eq!(b.location, "test child stdout line 2");
    assert!(b.error.starts_with("the line is not UTF-8"), "{}", b.error);
    let Output::Bad(b) = child.next().await.unwrap() else {
        panic!("overlong is bad")
    };
    assert_eq!(b.location, "test child stdout line 3");
    assert_eq!(
        b.error,
        "the line is longer than 4096 bytes (its first bytes are kept)"
    );
    assert_eq!(b.raw.len(), 1024);
    assert_eq!(lines(&mut child).await.unwrap(), ["after"]);
}

#[tokio::test]
async fn an_unread_child_blocks_on_its_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    let script = format!(
        "head -c 4000000 /dev/zero | tr '\\0' 'x'; echo; touch {}",
        done.display()
    );
    let mut child = Child::spawn(&sh(&script)).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!done.exists(), "the child ran ahead of its reader");
    assert_eq!(lines(&mut child).await.unwrap().len(), 1);
    assert!(done.exists());
}

#[tokio::test]
async fn dropping_a_child_kills_it() {
    let child = Child::spawn(&sh("exec sleep 30")).unwrap();
    let pid = child.pid().unwrap();
    drop(child);
    let gone = || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    };
    for _ in 0..50 {
        if gone() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("child {pid} still runs");
}

#[test]
fn programs_resolve_relative_to_the_config_or_on_path() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        resolve_program("sh", dir.path())
            .unwrap()
            .file_name()
            .unwrap(),
        "sh"
    );
    let err = resolve_program(".venv/bin/tap-nope", dir.path()).unwrap_err();
    assert!(
        err.contains(".venv/bin/tap-nope` is not an executable file"),
        "{err}"
    );
    let err = resolve_program("tap-nope-xyz", dir.path()).unwrap_err();
    assert_eq!(
        err,
        "`tap-nope-xyz` is not on PATH (give its path, e.g. \".venv/bin/tap-nope-xyz\")"
    );
}
