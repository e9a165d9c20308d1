//! The live progress lines, as a person sees them in a real terminal (tmux).

use std::process::Command;
use std::time::Duration;
use tributary_testkit::cli::*;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux (installed by scripts/setup)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A detached tmux session of `width` × `height` running `command`.
fn new_session(session: &str, width: u16, height: u16, command: &str) {
    let (w, h) = (width.to_string(), height.to_string());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        &w,
        "-y",
        &h,
        command,
    ]);
}

#[test]
fn a_terminal_shows_one_live_line_per_stream_and_plain_logs_otherwise() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = ws.write(
        "p.toml",
        "name = \"demo\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\nrate = 1000\n[source.streams.orders]\nrecord_type = \"order\"\nrate = 1000\n[sink]\ntype = \"file\"\ndir = \"out\"\n",
    );
    let session = format!("tributary-progress-{}", std::process::id());
    let command = format!("{} run {}; sleep 60", ws.bin.display(), cfg.display());
    new_session(&session, 160, 20, &command);
    let mut screen = String::new();
    let seen = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        screen = tmux(&["capture-pane", "-t", &session, "-p"]);
        let line = |stream: &str| {
            screen.lines().any(|l| {
                l.contains(&format!("demo/{stream} "))
                    && l.contains(" records (")
                    && l.contains(" committed), ")
                    && l.contains("/s, running")
            })
        };
        line("users") && line("orders")
    });
    tmux(&["send-keys", "-t", &session, "C-c"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&["kill-session", "-t", &session]);
    assert!(seen, "progress lines not shown; screen:\n{screen}");

    // Not a terminal: no spinner characters, just log lines.
    let cfg2 = ws.write(
        "q.toml",
        "name = \"q\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\ntotal = 10\n[sink]\ntype = \"file\"\ndir = \"out\"\n",
    );
    let o = ws.run(&["run", cfg2.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert!(
        stderr(&o)
            .lines()
            .all(|l| l.contains(" INFO ") || l.contains(" WARN ")),
        "{}",
        stderr(&o)
    );
}

/// A bounded stream shows percent and ETA, counts have thousands
/// separators, a stream backing off says `retrying`, and after the terminal
/// shrinks every line is still one line (none wraps into garbage).
#[test]
fn bounded_streams_show_percent_and_eta_retrying_shows_and_resizing_does_not_garble() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(tributary_testkit::sim::chargeover::ChargeOverSim::start(
        "api-user",
        "pw-progress-1",
    ));
    // The API answers 503 for the whole test: the stream keeps backing off.
    sim.fail_next(100_000, 503, None);
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let gen = ws.write(
        "g.toml",
        "name = \"demo\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\ntotal = 2000000\nrate = 20000\n[sink]\ntype = \"file\"\ndir = \"out\"\n",
    );
    let co = ws.write(
        "co.toml",
        &format!(
            "name = \"billing\"\n[source]\ntype = \"chargeover\"\nbase_url = \"{}\"\nusername = \"api-user\"\npassword = \"pw-progress-1\"\nentities = [\"customer\"]\n[source.initial_datetime]\ncustomer = \"2024-01-01 00:00:00\"\n[sink]\ntype = \"file\"\ndir = \"out\"\n[runtime]\nmax_retries = 100000\nbackoff_initial = \"1s\"\nbackoff_max = \"1s\"\n",
            sim.base_url()
        ),
    );
    let session = format!("tributary-progress-eta-{}", std::process::id());
    let command = format!(
        "{} --log-level off run {} {}; sleep 60",
        ws.bin.display(),
        gen.display(),
        co.display()
    );
    new_session(&session, 150, 12, &command);
    let thousands = |l: &str| {
        l.as_bytes()
            .windows(5)
            .any(|w| w[0].is_ascii_digit() && w[1] == b',' && w[2..].iter().all(u8::is_ascii_digit))
    };
    let mut screen = String::new();
    let seen = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        screen = tmux(&["capture-pane", "-t", &session, "-p"]);
        let users = screen.lines().any(|l| {
            l.contains("demo/users [")
                && l.contains("% ETA ")
                && l.contains(" records (")
                && thousands(l)
                && l.contains("/s, running")
        });
        let retrying = screen
            .lines()
            .any(|l| l.contains("billing/customer ") && l.contains(", retrying (attempt "));
        users && retrying
    });
    if !seen {
        tmux(&["kill-session", "-t", &session]);
        panic!("no percent/ETA/separators or no retrying line; screen:\n{screen}");
    }

    // Narrower than the lines: each is cut to the width, none wraps.
    tmux(&["resize-window", "-t", &session, "-x", "60", "-y", "12"]);
    let mut narrow = String::new();
    let clean = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        narrow = tmux(&["capture-pane", "-t", &session, "-p"]);
        let lines: Vec<&str> = narrow.lines().filter(|l| !l.trim().is_empty()).collect();
        let users = lines.iter().filter(|l| l.contains("demo/users")).count();
        let billing = lines
            .iter()
            .filter(|l| l.contains("billing/customer"))
            .count();
        users == 1 && billing == 1 && lines.len() == 2
    });
    tmux(&["send-keys", "-t", &session, "C-c"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&["kill-session", "-t", &session]);
    assert!(clean, "garbled after a resize to 60 columns:\n{narrow}");
}
