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

#[test]
fn a_terminal_shows_one_live_line_per_stream_and_plain_logs_otherwise() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = ws.write(
        "p.toml",
        "name = \"demo\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\nrate = 1000\n[source.streams.orders]\nrecord_type = \"order\"\nrate = 1000\n[sink]\ntype = \"file\"\ndir = \"out\"\n",
    );
    let session = format!("tributary-progress-{}", std::process::id());
    let command = format!("{} run {}; sleep 60", ws.bin.display(), cfg.display());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "20",
        &command,
    ]);
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
