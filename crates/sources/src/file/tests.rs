//! File source behaviour, end to end through the `Source` / `StreamReader`
//! traits, against real files in a temporary directory.

use super::*;
use crate::test_support::section;
use crate::SourceContext;
use serde_json::{json, Value};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use tributary_core::{
    BadRecord, Checkpoint, LoadMode, Poll, RawInput, Source, StreamReader, StreamSpec,
};

fn source(dir: &Path, streams: &str, batch_size: usize) -> FileSource {
    let text = format!("[source]\ntype = \"file\"\n{streams}");
    FileSource::from_section(
        &section(&text, dir),
        &SourceContext::new("test", batch_size),
    )
    .unwrap()
}

async fn open(src: &FileSource, name: &str, cp: Option<Checkpoint>) -> Box<dyn StreamReader> {
    src.open(&StreamSpec::new(name), cp).await.unwrap()
}

#[derive(Debug, Default)]
struct Run {
    records: Vec<Value>,
    keys: Vec<Option<Value>>,
    bad: Vec<BadRecord>,
    /// Per batch: records + bad records, checkpoint, load mode.
    batches: Vec<(usize, Checkpoint, LoadMode)>,
    /// How it stopped: "end" or "idle".
    last: &'static str,
}

impl Run {
    fn last_checkpoint(&self) -> Checkpoint {
        self.batches.last().unwrap().1.clone()
    }
}

/// Polls until `End` or `Idle`.
async fn drain(r: &mut Box<dyn StreamReader>) -> Run {
    let mut run = Run::default();
    for _ in 0..100_000 {
        match r.poll().await.unwrap() {
            Poll::Batch(b) => {
                run.batches.push((
                    b.records.len() + b.bad_records.len(),
                    b.checkpoint,
                    b.load_mode,
                ));
                for rec in b.records {
                    run.keys.push(rec.key);
                    run.records.push(rec.value.into_value());
                }
                run.bad.extend(b.bad_records);
            }
            Poll::Idle => {
                run.last = "idle";
                return run;
            }
            Poll::End => {
                run.last = "end";
                return run;
            }
        }
    }
    panic!("stream never caught up");
}

async fn read_all(dir: &Path, streams: &str, batch_size: usize) -> Run {
    let src = source(dir, streams, batch_size);
    let mut r = open(&src, "s", None).await;
    drain(&mut r).await
}

fn append(path: &Path, data: &[u8]) {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(data)
        .unwrap();
}

#[tokio::test]
async fn csv_with_header_builds_objects_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("users.csv"),
        "id,name,age\n1,Alice,30\n2,Bob,25\n",
    )
    .unwrap();
    let run = read_all(
        dir.path(),
        "[source.streams.s]\npath = \"users.csv\"\nprimary_key = [\"id\"]\n",
        100,
    )
    .await;
    assert_eq!(
        run.records,
        vec![
            json!({"id": "1", "name": "Alice", "age": "30"}),
            json!({"id": "2", "name": "Bob", "age": "25"})
        ]
    );
    assert_eq!(run.keys, vec![Some(json!("1")), Some(json!("2"))]);
    assert!(run.bad.is_empty());
    assert_eq!(run.last, "end");
    // One data batch, then the empty batch recording the initial load is done.
    assert_eq!(run.batches.len(), 2);
    assert_eq!(run.batches[0].2, LoadMode::Initial);
    assert_eq!(
        run.last_checkpoint().0,
        json!({"files": {"users.csv": {"offset": 32, "line": 3}}, "initial_done": true})
    );
}

/// CSV records are written as JSON text as they are read: exactly what a
/// map of the fields serializes to (sorted, of equal names the last).
#[tokio::test]
async fn csv_records_are_the_json_text_of_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("d.csv"),
        "b,a,b,\"q\"\"uote\"\n1,\"x \"\"y\"\" \t\\\",3,é\u{1}\n",
    )
    .unwrap();
    let src = source(
        dir.path(),
        "[source.streams.s]\npath = \"d.csv\"\nprimary_key = [\"b\"]\n",
        100,
    );
    let mut r = open(&src, "s", None).await;
    let Poll::Batch(b) = r.poll().await.unwrap() else {
        panic!("a batch")
    };
    let record = &b.records[0];
    assert!(matches!(record.value, tributary_core::Payload::Raw(_)));
    assert_eq!(
        record.value.to_json_string(),
        r#"{"a":"x \"y\" \t\\","b":"3","q\"uote":"é\u0001"}"#
    );
    assert_eq!(
        record.value.to_json_string(),
        record.value.to_value().to_string()
    );
    assert_eq!(record.key, Some(json!("3")));
}

#[tokio::test]
async fn csv_without_header_and_tsv() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.csv"), "1,Alice\n2,Bob,extra\n").unwrap();
    let run = read_all(
        dir.path(),
        "[source.streams.s]\npath = \"a.csv\"\nheader = false\n",
        100,
    )
    .await;
    assert_eq!(
        run.records,
        vec![
            json!({"field0": "1", "field1": "Alice"}),
            json!({"field0": "2", "field1": "Bob", "field2": "extra"})
        ]
    );

    fs::write(dir.path().join("t.tsv"), "id\tnote\n1\ta, b\n2\t\"x\ty\"\n").unwrap();
    let run = read_all(
        dir.path(),
        "[source.streams.s]\npath = \"t.tsv\"\ndelimiter = \"\\t\"\n",
        100,
    )
    .await;
    assert_eq!(
        run.records,
        vec![
            json!({"id": "1", "note": "a, b"}),
            json!({"id": "2", "note": "x\ty"})
        ]
    );
}

#[tokio::test]
async fn csv_quoted_fields_with_commas_quotes_and_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let data = "id,text\n1,\"a, b\"\n2,\"say \"\"hi\"\"\"\n3,\"multi\nline\nfield\"\n4,plain\n5,too,many\n\n\r\n6,'q'\n7\n";
    fs::write(dir.path().join("q.csv"), data).unwrap();
    let run = read_all(dir.path(), "[source.streams.s]\npath = \"q.csv\"\n", 100).await;
    assert_eq!(
        run.records,
        vec![
            json!({"id": "1", "text": "a, b"}),
            json!({"id": "2", "text": "say \"hi\""}),
            json!({"id": "3", "text": "multi\nline\nfield"}),
            json!({"id": "4", "text": "plain"}),
            json!({"id": "6", "text": "'q'"}),
        ]
    );
    // Record 3 spans lines 4-6, so the bad row is on line 8.
    assert_eq!(
        run.bad,
        vec![
            BadRecord {
                location: "q.csv:8".into(),
                error: "expected 2 fields (as in the header), found 3".into(),
                raw: "5,too,many".into(),
            },
            // After two blank lines (9, 10) and a good record (11).
            BadRecord {
                location: "q.csv:12".into(),
                error: "expected 2 fields (as in the header), found 1".into(),
                raw: "7".into(),
            },
        ]
    );
    let cp = run.last_checkpoint().0;
    assert_eq!(
        cp["files"]["q.csv"],
        json!({"offset": data.len(), "line": 12})
    );

    // A custom quote character.
    fs::write(dir.path().join("s.csv"), "a,b\n'x,y',z\n").unwrap();
    let run = read_all(
        dir.path(),
        "[source.streams.s]\npath = \"s.csv\"\nquote = \"'\"\n",
        100,
    )
    .await;
    assert_eq!(run.records, vec![json!({"a": "x,y", "b": "z"})]);
}

#[tokio::test]
async fn csv_crlf_bom_blank_lines_and_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = b"\xef\xbb\xbfid,name\r\n1,\"Al\"\r\n\r\n2,Bob\r\n".to_vec();
    data.extend_from_slice(b"3,B\xffd\r\n4,Dan");
    fs::write(dir.path().join("w.csv"), &data).unwrap();
    let run = read_all(dir.path(), "[source.streams.s]\npath = \"w.csv\"\n", 100).await;
    assert_eq!(
        run.records,
        vec![
            json!({"id": "1", "name": "Al"}),
            json!({"id": "2", "name": "Bob"}),
            // Not following: a last line without a newline is a record.
            json!({"id": "4", "name": "Dan"}),
        ]
    );
    assert_eq!(run.bad.len(), 1);
    assert_eq!(run.bad[0].location, "w.csv:5");
    assert!(
        run.bad[0]
            .error
            .starts_with("invalid UTF-8 in field `name`"),
        "{}",
        run.bad[0].error
    );
    assert_eq!(run.bad[0].raw, "3,B\u{fffd}d");
    assert_eq!(
        run.last_checkpoint().0["files"]["w.csv"],
        json!({"offset": data.len(), "line": 5})
    );
}

#[tokio::test]
async fn ndjson_records_and_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = "{\"id\":1,\"a\":{\"b\":[1,2]}}\n\n{\"id\":2\n[1,2]\n  \r\n{\"id\":3}\r\n\"str\"\n{\"id\":4}";
    fs::write(dir.path().join("e.ndjson"), data).unwrap();
    let run = read_all(
        dir.path(),
        "[source.streams.s]\npath = \"e.ndjson\"\nformat = \"ndjson\"\nprimary_key = [\"id\"]\n",
        100,
    )
    .await;
    assert_eq!(
        run.records,
        vec![
            json!({"id": 1, "a": {"b": [1, 2]}}),
            json!({"id": 3}),
            json!({"id": 4})
        ]
    );
    assert_eq!(
        run.keys,
        vec![Some(json!(1)), Some(json!(3)), Some(json!(4))]
    );
    let bad: Vec<(&str, &str, &str)> = run
        .bad
        .iter()
        .map(|b| (b.location.as_str(), b.error.as_str(), b.raw.text().unwrap()))
        .collect();
    assert_eq!(
        bad,
        vec![
            (
                "e.ndjson:3",
                "EOF while parsing an object at line 1 column 7",
                "{\"id\":2"
            ),
            (
                "e.ndjson:4",
                "expected a JSON object, found an array",
                "[1,2]"
            ),
            (
                "e.ndjson:7",
                "expected a JSON object, found a string",
                "\"str\""
            ),
        ]
    );
    assert_eq!(run.last, "end");
}

#[tokio::test]
async fn text_lines_and_overlong_lines() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("l.txt"),
        b"first\r\n\nthird line is long\nbad \xff\nlast",
    )
    .unwrap();
    let run = read_all(
        dir.path(),
        "[source.streams.s]\npath = \"l.txt\"\nformat = \"text\"\nmax_line_bytes = 16\n",
        100,
    )
    .await;
    assert_eq!(
        run.records,
        vec![
            json!({"line": "first"}),
            json!({"line": ""}),
            json!({"line": "last"})
        ]
    );
    assert_eq!(run.bad.len(), 2);
    assert_eq!(run.bad[0].location, "l.txt:3");
    assert_eq!(
        run.bad[0].error,
        "line longer than max_record_bytes (16 bytes): 18 bytes"
    );
    // Not held, but whole: where it lies in the file.
    let RawInput::File(span) = &run.bad[0].raw else {
        panic!("{:?}", run.bad[0].raw)
    };
    let mut text = vec![0; span.len as usize];
    std::os::unix::fs::FileExt::read_exact_at(&*span.file, &mut text, span.offset).unwrap();
    assert_eq!(text, b"third line is long");
    assert_eq!(run.bad[1].location, "l.txt:4");
    assert_eq!(run.bad[1].raw, "bad \u{fffd}");
    assert!(run.bad[1].error.starts_with("invalid UTF-8"));
}

#[tokio::test]
async fn glob_reads_files_in_name_order_and_skips_dotfiles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    for (name, id) in [
        ("o-2.csv", "2"),
        ("o-10.csv", "10"),
        ("o-1.csv", "1"),
        (".o-9.csv", "9"),
    ] {
        fs::write(data.join(name), format!("id\n{id}a\n{id}b\n")).unwrap();
    }
    fs::write(data.join("other.csv"), "id\nx\n").unwrap();
    fs::create_dir(data.join("o-dir.csv")).unwrap();
    let run = read_all(
        dir.path(),
        "[source.streams.s]\npath = \"data/o-*.csv\"\n",
        3,
    )
    .await;
    let ids: Vec<&str> = run
        .records
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1a", "1b", "10a", "10b", "2a", "2b"]);
    // Batches span files.
    let sizes: Vec<usize> = run.batches.iter().map(|b| b.0).collect();
    assert_eq!(sizes, [3, 3, 0]);
    assert_eq!(
        run.batches[0].1 .0["files"],
        json!({"data/o-1.csv": {"offset": 9, "line": 3}, "data/o-10.csv": {"offset": 7, "line": 2}})
    );
}

#[tokio::test]
async fn batch_size_is_respected_counting_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = String::new();
    for i in 0..10 {
        if i == 4 {
            data.push_str("not json\n");
        }
        data.push_str(&format!("{{\"i\":{i}}}\n"));
    }
    fs::write(dir.path().join("n.ndjson"), data).unwrap();
    let run = read_all(
        dir.path(),
        "[source.streams.s]\npath = \"n.ndjson\"\nformat = \"ndjson\"\nbatch_size = 3\n",
        1000,
    )
    .await;
    let sizes: Vec<usize> = run.batches.iter().map(|b| b.0).collect();
    assert_eq!(sizes, [3, 3, 3, 2, 0]);
    assert_eq!(run.records.len(), 10);
    assert_eq!(run.bad[0].location, "n.ndjson:5");
}

/// Reopening from every checkpoint of a full run yields exactly the rest
/// of the full run: no duplicates, no gaps, mid-file and across files.
async fn assert_resume_from_every_checkpoint(dir: &Path, streams: &str, batch_size: usize) {
    let full = read_all(dir, streams, batch_size).await;
    assert!(full.batches.len() > 3, "the test needs several batches");
    let mut consumed = 0;
    for (n, cp, _) in &full.batches {
        consumed += n;
        let src = source(dir, streams, batch_size);
        let mut r = open(&src, "s", Some(cp.clone())).await;
        let rest = drain(&mut r).await;
        let total_items = full.records.len() + full.bad.len();
        assert_eq!(
            rest.records.len() + rest.bad.len(),
            total_items - consumed,
            "resuming from {cp:?}"
        );
        assert_eq!(
            rest.records[..],
            full.records[full.records.len() - rest.records.len()..]
        );
        assert_eq!(rest.bad[..], full.bad[full.bad.len() - rest.bad.len()..]);
    }
}

#[tokio::test]
async fn resume_csv_mid_file_and_across_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("p-1.csv"),
        "id,t\n1,a\n2,\"b\nb\"\n3,c\n4,d,x\n5,e\n",
    )
    .unwrap();
    fs::write(dir.path().join("p-2.csv"), "id,t\n6,f\n7,\"g,g\"\n").unwrap();
    fs::write(dir.path().join("p-3.csv"), "id,t\n8,h\n9,i\n10,j\n").unwrap();
    assert_resume_from_every_checkpoint(dir.path(), "[source.streams.s]\npath = \"p-*.csv\"\n", 2)
        .await;
}

#[tokio::test]
async fn resume_ndjson_and_headerless_csv() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = String::new();
    for i in 0..7 {
        a.push_str(&format!("{{\"i\":{i}}}\n"));
    }
    a.push_str("oops\n");
    fs::write(dir.path().join("j-a.ndjson"), &a).unwrap();
    fs::write(dir.path().join("j-b.ndjson"), "{\"i\":100}\n{\"i\":101}").unwrap();
    assert_resume_from_every_checkpoint(
        dir.path(),
        "[source.streams.s]\npath = \"j-*.ndjson\"\nformat = \"ndjson\"\n",
        3,
    )
    .await;

    fs::write(dir.path().join("h.csv"), "1,a\n2,b\n3,c\n4,d\n5,e\n").unwrap();
    assert_resume_from_every_checkpoint(
        dir.path(),
        "[source.streams.s]\npath = \"h.csv\"\nheader = false\n",
        1,
    )
    .await;
}

#[tokio::test]
async fn follow_picks_up_appends_and_new_files_and_waits_for_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let a = logs.join("a.log");
    fs::write(&a, "one\ntwo\nthr").unwrap();
    let src = source(
        dir.path(),
        "[source.streams.s]\npath = \"logs/*.log\"\nformat = \"text\"\nfollow = true\n",
        100,
    );
    let mut r = open(&src, "s", None).await;
    let run = drain(&mut r).await;
    assert_eq!(
        run.records,
        vec![json!({"line": "one"}), json!({"line": "two"})]
    );
    assert_eq!(run.last, "idle");
    assert_eq!(
        run.batches.len(),
        2,
        "records, then the initial-done marker"
    );
    assert_eq!(run.batches[0].2, LoadMode::Initial);
    assert_eq!(
        run.last_checkpoint().0,
        json!({"files": {"logs/a.log": {"offset": 8, "line": 2}}, "initial_done": true})
    );

    // Still partial: nothing.
    assert!(matches!(r.poll().await.unwrap(), Poll::Idle));

    append(&a, b"ee\nfour\nfi");
    fs::write(logs.join("b.log"), "b1\n").unwrap();
    let run = drain(&mut r).await;
    assert_eq!(
        run.records,
        vec![
            json!({"line": "three"}),
            json!({"line": "four"}),
            json!({"line": "b1"})
        ]
    );
    assert_eq!(run.batches[0].2, LoadMode::Incremental);
    assert_eq!(run.last, "idle");

    // A restart from the last checkpoint continues with the partial line.
    let cp = run.last_checkpoint();
    append(&a, b"ve\n");
    let mut r = open(&src, "s", Some(cp)).await;
    let run = drain(&mut r).await;
    assert_eq!(run.records, vec![json!({"line": "five"})]);
    assert_eq!(run.batches[0].2, LoadMode::Incremental);
}

#[tokio::test]
async fn follow_keeps_reading_a_file_that_grows_while_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("g.ndjson");
    fs::write(&f, "{\"i\":0}\n{\"i\":1}\n").unwrap();
    let src = source(
        dir.path(),
        "[source.streams.s]\npath = \"g.ndjson\"\nformat = \"ndjson\"\nfollow = true\nbatch_size = 1\n",
        100,
    );
    let mut r = open(&src, "s", None).await;
    let Poll::Batch(b) = r.poll().await.unwrap() else {
        panic!()
    };
    assert_eq!(b.records[0].value, json!({"i": 0}));
    // Appended while the file is open: read on, without an Idle in between.
    append(&f, b"{\"i\":2}\n");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let Poll::Batch(b) = r.poll().await.unwrap() else {
            panic!("expected a batch")
        };
        seen.push(b.records[0].value.clone());
    }
    assert_eq!(seen, vec![json!({"i": 1}), json!({"i": 2})]);
}

#[tokio::test]
async fn follow_csv_waits_for_the_end_of_a_multiline_record() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.csv");
    fs::write(&f, "id,t\n1,a\n2,\"multi\n").unwrap();
    let src = source(
        dir.path(),
        "[source.streams.s]\npath = \"m.csv\"\nfollow = true\n",
        100,
    );
    let mut r = open(&src, "s", None).await;
    let run = drain(&mut r).await;
    assert_eq!(run.records, vec![json!({"id": "1", "t": "a"})]);
    assert_eq!(
        run.last_checkpoint().0["files"]["m.csv"],
        json!({"offset": 9, "line": 2})
    );

    append(&f, b"line\"\n3,c\n");
    let run = drain(&mut r).await;
    assert_eq!(
        run.records,
        vec![
            json!({"id": "2", "t": "multi\nline"}),
            json!({"id": "3", "t": "c"})
        ]
    );

    // A header still being written is not a header yet.
    let h = dir.path().join("h.csv");
    fs::write(&h, "id,na").unwrap();
    let src = source(
        dir.path(),
        "[source.streams.s]\npath = \"h.csv\"\nfollow = true\n",
        100,
    );
    let mut r = open(&src, "s", None).await;
    assert!(drain(&mut r).await.records.is_empty());
    append(&h, b"me\n1,x\n");
    assert_eq!(
        drain(&mut r).await.records,
        vec![json!({"id": "1", "name": "x"})]
    );
}

#[tokio::test]
async fn follow_csv_gives_up_an_unclosed_quote_instead_of_wedging() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("u.csv");
    fs::write(&f, "id,t\n1,\"never closed\n").unwrap();
    let src = source(
        dir.path(),
        "[source.streams.s]\npath = \"u.csv\"\nfollow = true\nmax_line_bytes = 20\n",
        100,
    );
    let mut r = open(&src, "s", None).await;
    let run = drain(&mut r).await;
    assert!(
        run.records.is_empty() && run.bad.is_empty(),
        "still waiting: {run:?}"
    );
    append(&f, b"2,x\n3,y\n4,z\n5,w\n");
    let run = drain(&mut r).await;
    // Past the cap, the line with the open quote is the bad record, and
    // the lines it would have swallowed are rows.
    assert_eq!(run.bad.len(), 1);
    assert_eq!(run.bad[0].location, "u.csv:2");
    assert!(
        run.bad[0]
            .error
            .starts_with("record longer than max_record_bytes (20 bytes)")
            && run.bad[0].error.contains("quoted field is still open"),
        "{}",
        run.bad[0].error
    );
    assert_eq!(run.bad[0].raw, "1,\"never closed");
    let ids: Vec<&Value> = run.records.iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, ["2", "3", "4", "5"]);
    // The stream goes on after it.
    append(&f, b"6,v\n");
    assert_eq!(
        drain(&mut r).await.records,
        vec![json!({"id": "6", "t": "v"})]
    );
}

#[tokio::test]
async fn truncated_file_restarts_from_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.csv");
    fs::write(&f, "id\n1\n2\n3\n").unwrap();
    let streams = "[source.streams.s]\npath = \"t.csv\"\n";
    let run = read_all(dir.path(), streams, 100).await;
    assert_eq!(run.records.len(), 3);
    let cp = run.last_checkpoint();

    fs::write(&f, "id\n9\n").unwrap();
    let src = source(dir.path(), streams, 100);
    let mut r = open(&src, "s", Some(cp)).await;
    let run = drain(&mut r).await;
    assert_eq!(run.records, vec![json!({"id": "9"})]);
    assert_eq!(run.batches[0].2, LoadMode::Incremental);
    assert_eq!(
        run.last_checkpoint().0["files"]["t.csv"],
        json!({"offset": 5, "line": 2})
    );
}

#[tokio::test]
async fn a_new_run_without_follow_reads_only_what_was_added() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.ndjson");
    fs::write(&f, "{\"a\":1}\n").unwrap();
    let streams = "[source.streams.s]\npath = \"x*.ndjson\"\nformat = \"ndjson\"\n";
    let run = read_all(dir.path(), streams, 100).await;
    let cp = run.last_checkpoint();
    append(&f, b"{\"a\":2}\n");
    fs::write(dir.path().join("x2.ndjson"), "{\"a\":3}\n").unwrap();
    let src = source(dir.path(), streams, 100);
    let mut r = open(&src, "s", Some(cp)).await;
    let run = drain(&mut r).await;
    assert_eq!(run.records, vec![json!({"a": 2}), json!({"a": 3})]);
    assert_eq!(run.last, "end");
    assert_eq!(run.batches.len(), 1, "initial_done was already recorded");
    assert_eq!(run.batches[0].2, LoadMode::Incremental);
    // Polling after End stays at End.
    assert!(matches!(r.poll().await.unwrap(), Poll::End));
}

#[tokio::test]
async fn missing_files_and_bad_checkpoints_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(
        dir.path(),
        "[source.streams.s]\npath = \"nope/*.csv\"\n",
        100,
    );
    let err = src.check().await.unwrap_err();
    assert_eq!(err.to_string(), format!(
        "configuration error: stream `s`: no file matches path `nope/*.csv` (looked for `{}/nope/*.csv`)",
        dir.path().display()
    ));
    let mut r = open(&src, "s", None).await;
    let err = r.poll().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration error: stream `s`: no file matches `nope/*.csv`"
    );

    let src = source(
        dir.path(),
        "[source.streams.s]\npath = \"nope/*.csv\"\nfollow = true\n",
        100,
    );
    let err = src.check().await.unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
    fs::create_dir(dir.path().join("nope")).unwrap();
    src.check().await.unwrap();
    // Following an empty directory is fine: Idle until files come.
    let mut r = open(&src, "s", None).await;
    assert_eq!(drain(&mut r).await.records.len(), 0);
    assert!(matches!(r.poll().await.unwrap(), Poll::Idle));

    let err = src
        .open(&StreamSpec::new("s"), Some(Checkpoint(json!({"files": 3}))))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("not a file-source checkpoint"),
        "{err}"
    );
    let err = src.open(&StreamSpec::new("zzz"), None).await.err().unwrap();
    assert!(err.to_string().contains("no stream `zzz`"), "{err}");
}

#[tokio::test]
async fn discover_reports_keys_and_csv_header_schema() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("u-2.csv"), "id,other\n").unwrap();
    fs::write(dir.path().join("u-1.csv"), "\u{feff}id,name\r\n1,a\r\n").unwrap();
    fs::write(dir.path().join("e.ndjson"), "{}\n").unwrap();
    let src = source(
        dir.path(),
        "[source.streams.users]\npath = \"u-*.csv\"\nprimary_key = [\"id\"]\n\
         [source.streams.events]\npath = \"e.ndjson\"\nformat = \"ndjson\"\n",
        100,
    );
    src.check().await.unwrap();
    let specs = src.discover().await.unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].name, "events");
    assert_eq!(specs[0].json_schema, None);
    assert_eq!(specs[1].name, "users");
    assert_eq!(specs[1].primary_key, vec!["id".to_string()]);
    assert_eq!(
        specs[1].json_schema,
        Some(
            json!({"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}})
        )
    );
}

#[tokio::test]
async fn poll_is_cancel_safe() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = String::new();
    for i in 0..50 {
        data.push_str(&format!("{{\"i\":{i}}}\n"));
    }
    fs::write(dir.path().join("c.ndjson"), data).unwrap();
    let src = source(
        dir.path(),
        "[source.streams.s]\npath = \"c.ndjson\"\nformat = \"ndjson\"\nbatch_size = 5\n",
        100,
    );
    let mut r = open(&src, "s", None).await;
    let mut seen = Vec::new();
    loop {
        // Drop a poll mid-flight every other time; nothing may be lost.
        {
            let cancelled = tokio::time::timeout(std::time::Duration::ZERO, r.poll()).await;
            if let Ok(Ok(Poll::Batch(b))) = cancelled {
                seen.extend(
                    b.records
                        .into_iter()
                        .map(|x| x.value.to_value()["i"].as_i64().unwrap()),
                );
                continue;
            }
        }
        match r.poll().await.unwrap() {
            Poll::Batch(b) => seen.extend(
                b.records
                    .into_iter()
                    .map(|x| x.value.to_value()["i"].as_i64().unwrap()),
            ),
            _ => break,
        }
    }
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn hostile_input_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut junk = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..20_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        junk.push(match (x >> 16) % 8 {
            0 => b'\n',
            1 => b'"',
            2 => b',',
            3 => b'\r',
            4 => 0xff,
            5 => b'{',
            _ => b'a' + ((x >> 8) % 26) as u8,
        });
    }
    fs::write(dir.path().join("j.bin"), &junk).unwrap();
    for (format, follow) in [
        ("csv", false),
        ("csv", true),
        ("ndjson", false),
        ("text", true),
    ] {
        let run = read_all(
            dir.path(),
            &format!(
                "[source.streams.s]\npath = \"j.bin\"\nformat = \"{format}\"\nfollow = {follow}\n"
            ),
            64,
        )
        .await;
        assert!(run.records.len() + run.bad.len() > 0, "{format}");
    }
}
