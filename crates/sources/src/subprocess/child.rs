//! One child process and its pipes: start, stdout line by line with a
//! silence timeout, stderr into our logs and a tail kept for errors, kill.

use super::logs::StderrLevel;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::{ChildStderr, ChildStdout};
use tokio::time::Instant;
use tributary_core::secret::redact;
use tributary_core::{BadRecord, ConnectorError};

/// Lines of a child's stderr kept for the error that reports its death.
pub const STDERR_TAIL_LINES: usize = 20;

/// Lines of that tail an error message quotes: enough for a Python
/// traceback's last frames and its exception, short enough to read.
const TAIL_IN_ERRORS: usize = 8;

/// Stdout lines longer than this are bad records rather than memory growth
/// (invariant 6); stderr lines are cut at it.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// The bytes of an overlong line its bad record keeps.
const KEPT_OF_OVERLONG: usize = 1024;

/// How to start a child: what the bridge's config says plus what the
/// bridge adds per run (`--config FILE`, `--state FILE`).
#[derive(Debug, Clone)]
pub struct ChildCommand {
    /// The program as resolved at config load ([`resolve_program`]).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Extra environment; the child inherits ours otherwise.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Names the child in logs and errors (`singer tap-postgres`).
    pub label: String,
    /// No stdout for this long: the child is hung; it is killed and the
    /// attempt fails (retryable). `None`: wait forever.
    pub silence_timeout: Option<Duration>,
    pub max_line_bytes: usize,
}

impl ChildCommand {
    pub fn new(program: PathBuf, label: impl Into<String>, cwd: PathBuf) -> Self {
        ChildCommand {
            program,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd,
            label: label.into(),
            silence_timeout: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// Finds `program` the way a shell would: a name with a `/` relative to the
/// config file's directory (`.venv/bin/tap-x`), a bare name on `PATH`. Done at
/// config load so a missing virtualenv is a config error naming the key,
/// not a retried spawn failure.
pub fn resolve_program(program: &str, base_dir: &Path) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err(
            "the command is empty: give the program first, e.g. [\".venv/bin/tap-postgres\"]"
                .into(),
        );
    }
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = base_dir.join(program);
        if executable(&path) {
            return Ok(path);
        }
        return Err(format!(
            "`{}` is not an executable file (install the connector into a virtualenv, e.g. `python3 -m venv .venv && .venv/bin/pip install ...`)",
            path.display()
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| {
            format!("`{program}` is not on PATH (give its path, e.g. \".venv/bin/{program}\")")
        })
}

/// One line the child wrote to stdout, numbered from 1.
#[derive(Debug, Clone, PartialEq)]
pub struct StdoutLine {
    pub number: u64,
    pub text: String,
}

/// What reading stdout gave.
#[derive(Debug)]
pub enum Output {
    Line(StdoutLine),
    /// A line that is no line: over `max_line_bytes`, or not UTF-8. The
    /// bridge hands it to the bad-record policy.
    Bad(BadRecord),
    /// The child closed stdout and exited with status 0.
    Finished,
}

/// A running child. Dropping it kills the child.
pub struct Child {
    label: String,
    child: tokio::process::Child,
    stdout: BufReader<ChildStdout>,
    /// The line being read: kept here, not in a future, so a dropped
    /// [`Child::next`] (a cancelled poll) loses nothing.
    partial: Vec<u8>,
    overlong: bool,
    lines: u64,
    max_line_bytes: usize,
    silence_timeout: Option<Duration>,
    last_output: Instant,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("label", &self.label)
            .field("pid", &self.child.id())
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

impl Child {
    /// Starts the child with stdin closed and stdout and stderr piped.
    ///
    /// Where util-linux's `setpriv` is installed, the child runs under
    /// `setpriv --pdeathsig KILL`, so a tributary killed with `kill -9`
    /// takes its child with it instead of leaving a tap writing into a
    /// closed pipe (the workspace forbids the `unsafe` a `pre_exec` needs).
    pub fn spawn(cmd: &ChildCommand) -> Result<Child, ConnectorError> {
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut command = if setpriv.exists() {
            let mut c = tokio::process::Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&cmd.program);
            c
        } else {
            tokio::process::Command::new(&cmd.program)
        };
        command
            .args(&cmd.args)
            .envs(&cmd.env)
            .current_dir(&cmd.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            ConnectorError::from_io(
                &format!("{}: starting `{}` failed", cmd.label, cmd.program.display()),
                &e,
            )
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ConnectorError::fatal(format!(
                "{}: the child's pipes were not created",
                cmd.label
            )));
        };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        let stderr_task = tokio::spawn(forward_stderr(
            stderr,
            cmd.label.clone(),
            tail.clone(),
            cmd.max_line_bytes,
        ));
        tracing::debug!(child = %cmd.label, pid = ?child.id(), "started");
        Ok(Child {
            label: cmd.label.clone(),
            child,
            stdout: BufReader::with_capacity(64 << 10, stdout),
            partial: Vec::new(),
            overlong: false,
            lines: 0,
            max_line_bytes: cmd.max_line_bytes,
            silence_timeout: cmd.silence_timeout,
            last_output: Instant::now(),
            tail,
            stderr_task: Some(stderr_task),
            exited: None,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The next stdout line. Cancel-safe: a partly read line stays in
    /// `self`. Reading only when asked is the backpressure: while the
    /// runtime's channel is full nobody asks, the pipe fills and the
    /// child blocks on its next write.
    ///
    /// Errors (all retryable, the runtime restarts the child with
    /// backoff): the child exited non-zero or by a signal (with its last
    /// stderr lines), or wrote nothing for `silence_timeout` (it is killed).
    pub async fn next(&mut self) -> Result<Output, ConnectorError> {
        loop {
            let read = match self.silence_timeout {
                Some(limit) => {
                    let deadline = self.last_output + limit;
                    let read = tokio::time::timeout_at(deadline, self.stdout.fill_buf())
                        .await
                        .map(|r| r.map(<[u8]>::len));
                    match read {
                        Ok(r) => r,
                        Err(_) => return Err(self.hung(limit).await),
                    }
                }
                None => self.stdout.fill_buf().await.map(<[u8]>::len),
            };
            let available = match read {
                Ok(n) => n,
                Err(e) => {
                    return Err(ConnectorError::retryable(format!(
                        "{}: reading its output failed: {e}",
                        self.label
                    )))
                }
            };
            if available == 0 {
                if !self.partial.is_empty() || self.overlong {
                    // A last line without its newline.
                    return Ok(self.take_line());
                }
                return self.finish().await;
            }
            self.last_output = Instant::now();
            let buf = self.stdout.buffer();
            let (chunk, used, complete) = match memchr::memchr(b'\n', buf) {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            if !self.overlong && self.partial.len() + chunk.len() > self.max_line_bytes {
                self.overlong = true;
                self.partial.truncate(KEPT_OF_OVERLONG);
            }
            if self.overlong {
                // Only a prefix is kept, for the bad record's context.
                let room = KEPT_OF_OVERLONG.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
            } else {
                self.partial.extend_from_slice(chunk);
            }
            self.stdout.consume(used);
            if complete {
                return Ok(self.take_line());
            }
        }
    }

    fn take_line(&mut self) -> Output {
        self.lines += 1;
        let number = self.lines;
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let location = format!("{} stdout line {number}", self.label);
        if std::mem::take(&mut self.overlong) {
            return Output::Bad(BadRecord {
                location,
                error: format!(
                    "the line is longer than {} bytes (its first bytes are kept)",
                    self.max_line_bytes
                ),
                raw: String::from_utf8_lossy(&bytes).into_owned().into(),
            });
        }
        match String::from_utf8(bytes) {
            Ok(text) => Output::Line(StdoutLine { number, text }),
            Err(e) => Output::Bad(BadRecord {
                location,
                error: format!("the line is not UTF-8: {}", e.utf8_error()),
                raw: String::from_utf8_lossy(e.as_bytes()).into_owned().into(),
            }),
        }
    }

    /// Stdout closed: the exit status decides.
    async fn finish(&mut self) -> Result<Output, ConnectorError> {
        let status = self.wait().await?;
        if status.success() {
            Ok(Output::Finished)
        } else {
            Err(self.died(status))
        }
    }

    /// Waits for the child to exit and for its stderr to be logged.
    pub async fn wait(&mut self) -> Result<ExitStatus, ConnectorError> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self.child.wait().await.map_err(|e| {
            ConnectorError::retryable(format!("{}: waiting for it failed: {e}", self.label))
        })?;
        self.exited = Some(status);
        if let Some(task) = self.stderr_task.take() {
            // A grandchild may hold stderr open; the tail is good enough then.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        tracing::debug!(child = %self.label, %status, "exited");
        Ok(status)
    }

    /// The error for a child that exited with `status` other than 0.
    pub fn died(&self, status: ExitStatus) -> ConnectorError {
        use std::os::unix::process::ExitStatusExt;
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => format!("ended ({status})"),
        };
        ConnectorError::retryable(format!("{} {how}{}", self.label, self.tail_for_errors()))
    }

    async fn hung(&mut self, limit: Duration) -> ConnectorError {
        self.kill().await;
        ConnectorError::retryable(format!(
            "{} wrote nothing for {} (silence_timeout): killed it{}",
            self.label,
            humantime::format_duration(limit),
            self.tail_for_errors()
        ))
    }

    /// `; its last stderr lines: ...`, or nothing when it wrote none.
    pub fn tail_for_errors(&self) -> String {
        let tail = self.stderr_tail();
        if tail.is_empty() {
            return String::new();
        }
        let start = tail.len().saturating_sub(TAIL_IN_ERRORS);
        format!("; its last stderr lines:\n  {}", tail[start..].join("\n  "))
    }

    /// The last [`STDERR_TAIL_LINES`] stderr lines, redacted.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Kills the child and reaps it (shutdown, a hung child).
    pub async fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if let Err(e) = self.child.kill().await {
            tracing::debug!(child = %self.label, error = %e, "kill failed (it had exited)");
        }
        let _ = self.wait().await;
    }
}

/// Runs `cmd` to its end (a connector's `--discover`, `spec`, `check`) and
/// returns its stdout lines; a bad line or a failed exit is an error.
pub async fn collect(cmd: &ChildCommand) -> Result<Vec<String>, ConnectorError> {
    let mut child = Child::spawn(cmd)?;
    let mut lines = Vec::new();
    loop {
        match child.next().await? {
            Output::Line(l) => lines.push(l.text),
            Output::Bad(b) => {
                return Err(ConnectorError::fatal(format!(
                    "{}: {}",
                    b.location, b.error
                )))
            }
            Output::Finished => return Ok(lines),
        }
    }
}

/// Every stderr line goes to our log at the level the line names (a child's
/// logger writes `INFO`, `WARNING`, ...), redacted, and into the tail.
async fn forward_stderr(
    stderr: ChildStderr,
    label: String,
    tail: Arc<Mutex<VecDeque<String>>>,
    max_line_bytes: usize,
) {
    let mut reader = BufReader::new(stderr);
    let mut level = StderrLevel::Info;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_capped_line(&mut reader, &mut buf, max_line_bytes).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let text = redact(text.trim_end());
        if text.is_empty() {
            continue;
        }
        level = StderrLevel::of(&text).unwrap_or(level);
        level.log(&label, &text);
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_TAIL_LINES {
                t.pop_front();
            }
            t.push_back(text);
        }
    }
}

/// Reads one line into `buf`, keeping at most `cap` bytes of it; the count
/// read (0 at end of input).
async fn read_capped_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, used, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        total += used;
        reader.consume(used);
        if done {
            return Ok(total);
        }
    }
}
