//! Helpers for end-to-end tests through the built `tributary` binary: a
//! scratch directory with configs and data, running and signalling the
//! binary, reading what the file sink wrote.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// The `tributary` binary under test (`env!("CARGO_BIN_EXE_tributary")` in the cli crate's tests).
    pub bin: PathBuf,
}

impl Workspace {
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
            bin: bin.into(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn append(&self, rel: &str, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path(rel))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.sync_all().unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG");
        c
    }

    /// Runs to completion (with a generous timeout) and returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_for(args, Duration::from_secs(120))
    }

    /// [`Workspace::run`] for commands that start slow child processes
    /// (the bridges' Python connectors on a busy machine).
    pub fn run_for(&self, args: &[&str], timeout: Duration) -> Output {
        let mut c = self.cmd(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().expect("spawn tributary");
        wait_output(child, timeout)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut c = self.cmd(args);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c.spawn().expect("spawn tributary")
    }

    /// Complete lines written so far for `target` (safe to call while the
    /// binary is writing: a half-written last line is not counted).
    pub fn written_lines(&self, dir: &str, target: &str) -> usize {
        std::fs::read_dir(self.path(dir))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        e.file_name().to_str().is_some_and(|n| {
                            n.starts_with(&format!("{target}-")) && n.ends_with(".ndjson")
                        })
                    })
                    .map(|e| {
                        std::fs::read(e.path())
                            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
                            .unwrap_or(0)
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Every JSON line in the files of `dir` whose name starts with `{target}-`, in file order.
    pub fn output(&self, dir: &str, target: &str) -> Vec<Value> {
        self.output_lines(dir, target)
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
            })
            .collect()
    }

    /// The lines themselves, as [`Workspace::output`] reads them.
    pub fn output_lines(&self, dir: &str, target: &str) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.path(dir))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{target}-")) && n.ends_with(".ndjson"))
        });
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            out.extend(text.lines().map(str::to_string));
        }
        out
    }
}

/// Waits for `child`, reading its piped stdout and stderr meanwhile: a
/// child that writes more than a pipe holds (64 KiB of logs) would
/// otherwise block on the write and never finish.
pub fn wait_output(mut child: Child, timeout: Duration) -> Output {
    fn drain(
        pipe: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "tributary did not finish in {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Polls `cond` every 20 ms for up to `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Counts how often each integer value of `field` occurs.
pub fn counts(values: &[Value], field: &str) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for v in values {
        let id = match &v[field] {
            Value::Number(n) => n.as_i64().unwrap(),
            Value::String(s) => s.parse().unwrap(),
            other => panic!("{field} is {other}"),
        };
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code; stderr:\n{}\nstdout:\n{}",
        stderr(o),
        stdout(o)
    );
}

/// The repository root (for examples/ and bench/).
/// Where `scripts/setup` installs the tools tests run beside the binary
/// (reference parsers, the Python connectors of the bridges' tests):
/// `$TRIBUTARY_TOOLS`, by default `~/.cache/tributary/tools`.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("TRIBUTARY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tributary/tools")
        })
}

/// A file under [`tools_dir`], which must exist: a missing tool fails the
/// test, naming the script that installs it.
pub fn tool(rel: &str) -> PathBuf {
    let path = tools_dir().join(rel);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup, which installs the tests' tools",
        path.display()
    );
    path
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A `tributary run --admin-addr 127.0.0.1:0` in the background: its admin
/// server's address (read from the log line that announces it) and its log.
pub struct AdminProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl AdminProcess {
    /// Spawns `cmd` (which must include `--admin-addr ...`), drains its
    /// stderr on a thread (so the process never blocks on a full pipe) and
    /// waits for the admin server to listen.
    pub fn spawn(cmd: Command) -> AdminProcess {
        Self::spawn_with_stdout(cmd, Stdio::null())
    }

    /// [`AdminProcess::spawn`] with stdout sent to `stdout` (a pipe the
    /// test reads, or leaves unread to make the process block on it).
    pub fn spawn_with_stdout(mut cmd: Command, stdout: Stdio) -> AdminProcess {
        use std::io::BufRead;
        cmd.stdout(stdout).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tributary");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let start = Instant::now();
        let url = loop {
            let text = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(at) = text.find("admin server listening on http://") {
                let rest = &text[at + "admin server listening on ".len()..];
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                break rest[..end].to_string();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tributary exited ({status}) before its admin server listened; stderr:\n{text}"
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the admin server did not start within 60 s; stderr:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        AdminProcess { child, url, log }
    }

    /// `METHOD path` against the admin server with a bearer token and an
    /// optional JSON body: the status and the JSON answer (`null` when empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let body = body.map(|b| b.to_string());
        let (status, text) = http_request(method, &url, token, body.as_deref());
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
        };
        (status, value)
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// SIGTERM, then waits (up to a minute) for a clean exit; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        sigterm(&self.child);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!(
                    "tributary did not stop within 60 s; stderr:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AdminProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `name{labels}` → value, from a Prometheus text exposition.
pub fn metric_samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// `GET url` with an optional bearer token: the status code and body.
pub fn http_get(url: &str, token: Option<&str>) -> (u16, String) {
    http_request("GET", url, token, None)
}

/// Any method, an optional bearer token and JSON body: the status code and body.
pub fn http_request(
    method: &str,
    url: &str,
    token: Option<&str>,
    json_body: Option<&str>,
) -> (u16, String) {
    let r = http_call(method, url, token, &[], json_body);
    (r.status, r.body)
}

/// What [`http_call`] got back.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The `Content-Type` header, empty when there was none.
    pub content_type: String,
    pub body: String,
}

/// Any method with extra request headers (`Accept`, ...), an optional
/// bearer token and JSON body.
pub fn http_call(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> HttpResponse {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut req = reqwest::Client::new()
            .request(method.clone(), url)
            .timeout(Duration::from_secs(30));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = json_body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.text().await.unwrap_or_default();
        HttpResponse {
            status,
            content_type,
            body,
        }
    })
}

/// `GET url` expecting 200 and JSON.
pub fn http_json(url: &str, token: Option<&str>) -> Value {
    let (status, body) = http_get(url, token);
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}
