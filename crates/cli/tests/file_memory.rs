//! Memory stays bounded whatever the file holds: one 100 MB CSV field and
//! one 100 MB NDJSON line. A test binary of its own, because the peak is
//! read with `getrusage(RUSAGE_CHILDREN)`, the largest of this process's
//! finished children: no other test may spawn any.

use nix::sys::resource::{getrusage, UsageWho};
use std::io::Write;
use std::process::Stdio;
use tributary_testkit::cli::*;

const CAP: usize = 1 << 20;

#[test]
fn a_100_mb_field_costs_bounded_memory_and_the_next_row_arrives() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    std::fs::create_dir_all(ws.path("data")).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut f = std::io::BufWriter::new(std::fs::File::create(ws.path("data/big.csv")).unwrap());
    f.write_all(b"id,v\n1,\"").unwrap();
    for _ in 0..100 {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b"\"\n2,after\n").unwrap();
    f.flush().unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(ws.path("data/big.ndjson")).unwrap());
    f.write_all(b"{\"id\": 1, \"v\": \"").unwrap();
    for _ in 0..100 {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b"\"}\n{\"id\": 2, \"v\": \"after\"}\n")
        .unwrap();
    f.flush().unwrap();
    let cfg = ws.write(
        "big.toml",
        r#"
name = "big"
[source]
type = "file"
[source.streams.c]
path = "data/big.csv"
[source.streams.n]
path = "data/big.ndjson"
format = "ndjson"
[sink]
type = "file"
dir = "out"
[bad_records]
policy = "dead_letter"
dead_letter_path = "dlq.ndjson"
"#,
    );
    let mut cmd = ws.cmd(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let o = wait_output(cmd.spawn().unwrap(), std::time::Duration::from_secs(300));
    assert_exit(&o, 0);
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    eprintln!("peak RSS {} MiB with a 100 MiB field", peak_kib / 1024);
    // The record cap is 1 MiB; the runtime and its buffers need a few tens
    // of MiB. Reading the 100 MB field whole took 517 MiB; its dead letter
    // is copied from the file in chunks.
    let bound_kib = 96 * 1024;
    assert!(
        peak_kib < bound_kib,
        "peak RSS {peak_kib} KiB, bound {bound_kib} KiB"
    );

    for target in ["big.c", "big.n"] {
        let rows = ws.output("out", target);
        assert_eq!(rows.len(), 1, "{target}");
        assert_eq!(rows[0]["v"], "after");
    }
    let dl: Vec<serde_json::Value> = std::fs::read_to_string(ws.path("dlq.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dl.len(), 2);
    for d in &dl {
        let (location, raw) = (d["location"].as_str().unwrap(), d["raw"].as_str().unwrap());
        // Whole: the 100 MiB line, copied from the file, never held.
        let (head, tail) = match location {
            "data/big.csv:2" => ("1,\"xxx", "xxx\""),
            "data/big.ndjson:1" => ("{\"id\": 1, \"v\": \"xxx", "xxx\"}"),
            other => panic!("dead letter at {other}"),
        };
        assert_eq!(
            raw.len(),
            head.len() - 3 + 100 * CAP + tail.len() - 3,
            "{location}"
        );
        assert!(raw.starts_with(head) && raw.ends_with(tail), "{location}");
        assert!(raw.bytes().filter(|&b| b == b'x').count() == 100 * CAP);
    }
}
