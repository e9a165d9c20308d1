//! Hostile files through the binary: stray quotes, truncated records, huge
//! fields, NULs, BOMs and invalid UTF-8 in CSV and NDJSON. Every valid row
//! must arrive exactly once, every bad one whole (however long: a line over
//! the record cap is copied from the file) in the dead-letter file at its
//! own line, and memory must stay bounded.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tributary_testkit::cli::*;

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

const CAP: usize = 1 << 20;

fn config(extra: &str) -> String {
    format!(
        r#"
name = "fz"
[source]
type = "file"
[source.streams.c]
path = "csv/*.csv"
format = "csv"
{extra}
[source.streams.n]
path = "nd/*.ndjson"
format = "ndjson"
{extra}
[sink]
type = "file"
dir = "out"
[bad_records]
policy = "dead_letter"
dead_letter_path = "dlq.ndjson"
"#
    )
}

fn dead_letters(ws: &Workspace) -> Vec<Value> {
    match std::fs::read_to_string(ws.path("dlq.ndjson")) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `location -> (raw, error)` of the dead letters.
fn dead_letters_by_location(ws: &Workspace) -> BTreeMap<String, (String, String)> {
    let mut m = BTreeMap::new();
    for d in dead_letters(ws) {
        let loc = d["location"].as_str().unwrap().to_string();
        let entry = (
            d["raw"].as_str().unwrap().to_string(),
            d["error"].as_str().unwrap().to_string(),
        );
        assert!(
            m.insert(loc.clone(), entry).is_none(),
            "two dead letters at {loc}"
        );
    }
    m
}

#[test]
fn a_stray_quote_costs_its_own_line_and_the_rows_after_it_arrive() {
    let ws = workspace();
    ws.write("csv/a.csv", "id,v\nA,1\nC,\"abc\nB,2\nD,4\n");
    ws.write("nd/a.ndjson", "");
    let cfg = ws.write("fz.toml", &config(""));
    let o = ws.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_exit(&o, 0);
    let got: Vec<(String, String)> = ws
        .output("out", "fz.c")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["v"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [("A", "1"), ("B", "2"), ("D", "4")];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    let dl = dead_letters_by_location(&ws);
    assert_eq!(dl.len(), 1, "{dl:?}");
    let (raw, error) = &dl["csv/a.csv:3"];
    assert_eq!(raw, "C,\"abc");
    assert!(error.starts_with("unterminated quoted field"), "{error}");
}

/// splitmix64: reproducible inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn word(&mut self) -> String {
        const WORDS: [&str; 8] = [
            "apple", "pear", "kiwi", "zoë", "naïve", "plum", "fig", "日本",
        ];
        WORDS[self.below(WORDS.len() as u64) as usize].to_string()
    }
}

/// What the generated files must produce.
#[derive(Default)]
struct Expected {
    /// `(stream, id) -> v` of rows that must arrive exactly once.
    rows: BTreeMap<(String, String), String>,
    /// `location -> (raw, error prefix)` of rows that must be dead letters.
    bad: BTreeMap<String, (Vec<u8>, &'static str)>,
}

/// Bytes of a CSV file and what it must produce. `line` counts lines as
/// the source numbers them.
fn csv_file(rng: &mut Rng, file: usize, exp: &mut Expected) -> Vec<u8> {
    let key = format!("csv/f{file:03}.csv");
    let mut out = Vec::new();
    if rng.chance(25) {
        out.extend(b"\xef\xbb\xbf");
    }
    let crlf = rng.chance(20);
    let nl: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    out.extend(b"id,v");
    out.extend(nl);
    let mut line = 2u64;
    let rows = 5 + rng.below(40) as usize;
    let truncate_last = rng.chance(25);
    let mut stray_quotes = 0;
    for r in 0..rows {
        let id = format!("{}", file * 1000 + r);
        let location = format!("{key}:{line}");
        let last = r + 1 == rows;
        if last && truncate_last {
            // A last row cut anywhere, without its newline.
            let v = rng.word();
            let full = format!("{id},{v}");
            let cut = 1 + rng.below(full.len() as u64 - 1) as usize;
            let mut cut_at = cut;
            while !full.is_char_boundary(cut_at) {
                cut_at -= 1;
            }
            let text = &full.as_bytes()[..cut];
            out.extend(text);
            if cut <= id.len() {
                exp.bad
                    .insert(location, (text.to_vec(), "expected 2 fields"));
            } else if cut_at != cut {
                exp.bad.insert(location, (text.to_vec(), "invalid UTF-8"));
            } else {
                exp.rows.insert(
                    ("c".into(), id.clone()),
                    full[id.len() + 1..cut].to_string(),
                );
            }
            break;
        }
        let mutation = if rng.chance(30) { rng.below(9) } else { 99 };
        let row: Vec<u8> = match mutation {
            0 if stray_quotes < 3 => {
                stray_quotes += 1;
                let t = format!("{id},\"{} {}", rng.word(), rng.word());
                // Unterminated, or closed by a later field's opening quote.
                exp.bad
                    .insert(location, (t.clone().into_bytes(), "quoted field"));
                t.into_bytes()
            }
            1 => {
                let t = format!("{id},{},{}", rng.word(), rng.word());
                exp.bad
                    .insert(location, (t.clone().into_bytes(), "expected 2 fields"));
                t.into_bytes()
            }
            2 => {
                exp.bad
                    .insert(location, (id.clone().into_bytes(), "expected 2 fields"));
                id.into_bytes()
            }
            3 => {
                let mut t = format!("{id},ab").into_bytes();
                t.extend(b"\xff\xfecd");
                exp.bad.insert(location, (t.clone(), "invalid UTF-8"));
                t
            }
            4 => {
                exp.rows.insert(("c".into(), id.clone()), "a\0b".into());
                format!("{id},a\0b").into_bytes()
            }
            5 if rng.chance(30) => {
                let mut t = format!("{id},").into_bytes();
                t.resize(CAP + CAP / 2, b'x');
                exp.bad
                    .insert(location, (t.clone(), "record longer than max_record_bytes"));
                t
            }
            6 if rng.chance(30) => {
                let mut t = format!("{id},\"").into_bytes();
                t.resize(CAP + CAP / 2, b'y');
                t.push(b'"');
                exp.bad.insert(location, (t.clone(), "quoted field"));
                t
            }
            7 => {
                // A quote inside an unquoted field is a literal.
                let v = format!("ab\"{}", rng.word());
                exp.rows.insert(("c".into(), id.clone()), v.clone());
                format!("{id},{v}").into_bytes()
            }
            _ => {
                let (text, v) = match rng.below(5) {
                    0 => {
                        let v = format!("{}, {}", rng.word(), rng.word());
                        (format!("\"{v}\""), v)
                    }
                    1 => {
                        let (a, b) = (rng.word(), rng.word());
                        line += 1;
                        (format!("\"{a}\n{b}\""), format!("{a}\n{b}"))
                    }
                    2 => {
                        let w = rng.word();
                        (format!("\"say \"\"{w}\"\"\""), format!("say \"{w}\""))
                    }
                    _ => {
                        let w = rng.word();
                        (w.clone(), w)
                    }
                };
                exp.rows.insert(("c".into(), id.clone()), v);
                format!("{id},{text}").into_bytes()
            }
        };
        out.extend(&row);
        if !last || rng.chance(80) {
            out.extend(nl);
        }
        line += 1;
        if rng.chance(5) {
            out.extend(nl); // a blank line
            line += 1;
        }
    }
    out
}

fn ndjson_file(rng: &mut Rng, file: usize, exp: &mut Expected) -> Vec<u8> {
    let key = format!("nd/f{file:03}.ndjson");
    let mut out = Vec::new();
    if rng.chance(25) {
        out.extend(b"\xef\xbb\xbf");
    }
    let rows = 5 + rng.below(40) as usize;
    let mut line = 1u64;
    for r in 0..rows {
        let id = file * 1000 + r;
        let location = format!("{key}:{line}");
        let v = rng.word();
        let full = format!("{{\"id\": {id}, \"v\": \"{v}\"}}");
        let last = r + 1 == rows;
        let mutation = if rng.chance(30) { rng.below(8) } else { 99 };
        let row: Vec<u8> = match mutation {
            0 => {
                let t = full.as_bytes()[..full.len() - 1 - rng.below(5) as usize].to_vec();
                exp.bad.insert(location, (t.clone(), ""));
                t
            }
            1 => {
                let t = format!("{{\"id\": {id}, \"v\": \"a\0b\"}}").into_bytes();
                exp.bad.insert(location, (t.clone(), "control character"));
                t
            }
            2 => {
                let mut t = format!("{{\"id\": {id}, \"v\": \"ab").into_bytes();
                t.extend(b"\xff\"}");
                exp.bad.insert(location, (t.clone(), "invalid unicode"));
                t
            }
            3 if rng.chance(30) => {
                let mut t = format!("{{\"id\": {id}, \"v\": \"").into_bytes();
                t.resize(CAP + CAP / 2, b'z');
                t.extend(b"\"}");
                exp.bad
                    .insert(location, (t.clone(), "line longer than max_record_bytes"));
                t
            }
            4 => {
                exp.bad
                    .insert(location, (b"null".to_vec(), "expected a JSON object"));
                b"null".to_vec()
            }
            5 => {
                exp.rows.insert(("n".into(), id.to_string()), "a\0b".into());
                format!("{{\"id\": {id}, \"v\": \"a\\u0000b\"}}").into_bytes()
            }
            6 => {
                // Blank and whitespace-only lines are skipped.
                out.extend(b"  \n\n");
                line += 2;
                exp.rows.insert(("n".into(), id.to_string()), v);
                full.into_bytes()
            }
            _ => {
                exp.rows.insert(("n".into(), id.to_string()), v);
                full.into_bytes()
            }
        };
        out.extend(&row);
        if !last || rng.chance(70) {
            out.extend(if rng.chance(10) { &b"\r\n"[..] } else { b"\n" });
        }
        line += 1;
    }
    out
}

/// Runs the generated files and returns what went wrong, one line per row.
fn check(ws: &Workspace, exp: &Expected) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (stream, target) in [("c", "fz.c"), ("n", "fz.n")] {
        for r in ws.output("out", target) {
            let id = match &r["id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let v = r["v"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| r["v"].to_string());
            seen.entry((stream.to_string(), id)).or_default().push(v);
        }
    }
    for (key, v) in &exp.rows {
        match seen.remove(key) {
            Some(got) if got.len() == 1 && got[0] == *v => {}
            Some(got) => problems.push(format!("row {key:?}: want {v:?} once, got {got:?}")),
            None => problems.push(format!("row {key:?} lost")),
        }
    }
    for (key, got) in seen {
        problems.push(format!("unexpected row {key:?}: {got:?}"));
    }
    let mut dl = dead_letters_by_location(ws);
    for (location, (raw, error)) in &exp.bad {
        match dl.remove(location) {
            Some((got_raw, got_error)) => {
                let want = String::from_utf8_lossy(raw);
                if got_raw != want {
                    problems.push(format!(
                        "dead letter at {location}: raw of {} bytes, want {} bytes ({:?}...)",
                        got_raw.len(),
                        want.len(),
                        &got_raw.chars().take(40).collect::<String>()
                    ));
                }
                if !got_error.contains(error) {
                    problems.push(format!(
                        "dead letter at {location}: error {got_error:?}, want {error:?}"
                    ));
                }
            }
            None => problems.push(format!("no dead letter at {location}")),
        }
    }
    for (location, (raw, error)) in dl {
        problems.push(format!(
            "unexpected dead letter at {location}: {error}: {:?}",
            raw.chars().take(60).collect::<String>()
        ));
    }
    problems
}

#[test]
fn fuzzed_csv_and_ndjson_files_lose_nothing_and_dead_letters_are_whole() {
    let ws = workspace();
    let mut rng = Rng(0x5eed_2024);
    let mut exp = Expected::default();
    for file in 0..150 {
        std::fs::create_dir_all(ws.path("csv")).unwrap();
        std::fs::create_dir_all(ws.path("nd")).unwrap();
        std::fs::write(
            ws.path(&format!("csv/f{file:03}.csv")),
            csv_file(&mut rng, file, &mut exp),
        )
        .unwrap();
        std::fs::write(
            ws.path(&format!("nd/f{file:03}.ndjson")),
            ndjson_file(&mut rng, file, &mut exp),
        )
        .unwrap();
    }
    assert!(
        exp.rows.len() > 4000 && exp.bad.len() > 500,
        "{} rows, {} bad",
        exp.rows.len(),
        exp.bad.len()
    );
    let cfg = ws.write("fz.toml", &config(""));
    let o = ws.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_exit(&o, 0);
    let problems = check(&ws, &exp);
    let mut report = String::new();
    for p in problems.iter().take(30) {
        let _ = writeln!(report, "{}", p.chars().take(300).collect::<String>());
    }
    let count = |prefix: &str| problems.iter().filter(|p| p.starts_with(prefix)).count();
    let lost = problems.iter().filter(|p| p.ends_with(" lost")).count();
    assert!(
        problems.is_empty(),
        "{} problems ({lost} valid rows lost, {} wrong or repeated, {} unexpected rows, {} bad \
         rows without their dead letter, {} dead letters cut or mislabelled) among {} rows and \
         {} bad rows:\n{report}",
        problems.len(),
        count("row ") - lost,
        count("unexpected row"),
        count("no dead letter"),
        count("dead letter at"),
        exp.rows.len(),
        exp.bad.len()
    );
}

#[test]
fn a_bad_record_over_64_kib_is_kept_whole() {
    let ws = workspace();
    let mut big = String::from("7,");
    big.push_str(&"é".repeat(200_000)); // 400 KB, under the 1 MiB cap
    big.push_str(",extra");
    ws.write("csv/a.csv", &format!("id,v\n{big}\n8,ok\n"));
    let nd = format!("{{\"id\": 9, \"v\": \"{}\"", "q".repeat(300_000));
    ws.write(
        "nd/a.ndjson",
        &format!("{nd}\n{{\"id\": 10, \"v\": \"ok\"}}\n"),
    );
    let cfg = ws.write("fz.toml", &config(""));
    let o = ws.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_exit(&o, 0);
    let dl = dead_letters_by_location(&ws);
    assert_eq!(dl["csv/a.csv:2"].0, big);
    assert_eq!(dl["nd/a.ndjson:1"].0, nd);
    assert_eq!(ws.output("out", "fz.c").len(), 1);
    assert_eq!(ws.output("out", "fz.n").len(), 1);
}

#[test]
fn ndjson_records_are_written_on_one_line_and_only_if_strict_parsers_accept_them() {
    let ws = workspace();
    ws.write(
        "nd/s.ndjson",
        concat!(
            "{\"id\": 1, \"v\": 1e999}\n",
            "{\"id\": 2, \"s\": \"\\ud800\"}\n",
            "{\"id\": 3,\r \"v\": \"a  b\"}\n",
            "{\"id\":4,\"v\":\"compact\"}\n",
            "  {\"id\": 5, \"v\": 1.5e308, \"w\": \"\\ud83d\\ude00\"}\r\n",
        ),
    );
    ws.write("csv/s.csv", "id,v\n");
    let cfg = ws.write("fz.toml", &config(""));
    let o = ws.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_exit(&o, 0);
    // A `\r` between tokens is whitespace to JSON but a line break to
    // many readers: compacted away, as spacing is; strings keep theirs.
    // Each line as the record's own text, before the added metadata fields.
    let own = |line: &String| format!("{}}}", line.split(",\"_stream\":").next().unwrap());
    assert_eq!(
        ws.output_lines("out", "fz.n")
            .iter()
            .map(own)
            .collect::<Vec<_>>(),
        [
            r#"{"id":3,"v":"a  b"}"#,
            r#"{"id":4,"v":"compact"}"#,
            r#"{"id":5,"v":1.5e308,"w":"\ud83d\ude00"}"#,
        ]
    );
    let dl = dead_letters_by_location(&ws);
    assert_eq!(dl.len(), 2, "{dl:?}");
    for (location, raw, what) in [
        (
            "nd/s.ndjson:1",
            r#"{"id": 1, "v": 1e999}"#,
            "a number beyond the range of a double",
        ),
        (
            "nd/s.ndjson:2",
            r#"{"id": 2, "s": "\ud800"}"#,
            "a lone UTF-16 surrogate escape",
        ),
    ] {
        let (got_raw, error) = &dl[location];
        assert_eq!(got_raw, raw);
        assert_eq!(
            error,
            &format!("the record holds {what}, which strict JSON parsers refuse")
        );
    }
}
