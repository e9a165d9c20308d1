//! The conformance kit: the promises the runtime relies on, checked
//! against your source in your own tests.
//!
//! | check | the promise | what breaks it |
//! |---|---|---|
//! | [`Kit::checkpoint_round_trip`] | a checkpoint survives the state store and the source accepts it back | a checkpoint that is not JSON, or one `open` cannot read |
//! | [`Kit::restart_continues_exactly`] | a restarted process continues exactly after the committed checkpoint | an inclusive cursor (repeats), a cursor past what was returned (skips) |
//! | [`Kit::resume_after_crash`] | a crash with uncommitted batches in flight loses nothing; only those are read again | acknowledging or deleting upstream before the commit |
//! | [`Kit::cancel_safe_poll`] | a poll dropped at any await loses nothing | moving a position before an await |
//! | [`Kit::bounded_memory`] | memory does not grow with the stream | keeping what was read |
//! | [`Kit::malformed_input`] | bad config, checkpoints and data are errors, never panics | `unwrap()` on outside input |
//! | [`Kit::no_side_effects`] | `check` and `discover` change nothing and read nothing away | consuming data or writing in `check` |
//!
//! A kit is built from the registry entry of your source type and a whole
//! connector file (`[source]`, `[sink]`); every trial builds a fresh source
//! from it, as a restarted process would. Point the config at a test
//! upstream with a fixed set of data; [`Kit::reset`] restores it before
//! each trial when reading changes it (a queue, a push feed).
//!
//! ```no_run
//! # async fn demo() {
//! use tributary_sdk::conformance::Kit;
//! // Your type: `tributary_sdk::pull_type("my_api", MyApi::from_section)`;
//! // here the built-in generator.
//! let generator = tributary_sdk::internals::sources::builtin().get("generator").cloned().unwrap();
//! let config = r#"
//! name = "t"
//! [source]
//! type = "generator"
//! [source.streams.users]
//! record_type = "user"
//! total = 50
//! batch_size = 10
//! [sink]
//! type = "stdout"
//! "#;
//! Kit::new(generator, config).stream("users").assert_all().await;
//! # }
//! ```
//!
//! A check whose promise cannot hold for a source (a live feed that
//! nobody replays cannot continue after a restart) is waived with
//! [`Kit::without`] and a reason, never skipped silently.
//!
//! [`Kit::bounded_memory`] measures the process's resident memory: run it
//! in a test binary of its own (or under `cargo nextest`, one process per
//! test) so other tests' allocations do not count.

mod checks;
mod memory;

use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tributary_config::ConnectorConfig;
use tributary_core::{Checkpoint, ConnectorError, Poll, Record, Source, StreamReader, StreamSpec};
use tributary_sources::{SourceContext, SourceType};

/// A check that failed, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conformance check `{check}` failed: {message}")]
pub struct Violation {
    /// The check's name (the method's).
    pub check: &'static str,
    pub message: String,
}

impl Violation {
    fn new(check: &'static str, message: impl Into<String>) -> Self {
        Violation {
            check,
            message: message.into(),
        }
    }
}

/// A check of [`Kit::run_all`], by name: what [`Kit::without`] waives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// [`Kit::checkpoint_round_trip`]
    CheckpointRoundTrip,
    /// [`Kit::restart_continues_exactly`]
    RestartContinuesExactly,
    /// [`Kit::resume_after_crash`]
    ResumeAfterCrash,
    /// [`Kit::cancel_safe_poll`]
    CancelSafePoll,
    /// [`Kit::malformed_input`]
    MalformedInput,
    /// [`Kit::no_side_effects`]
    NoSideEffects,
}

impl Check {
    /// Every check of [`Kit::run_all`], in the order it runs them.
    pub const ALL: [Check; 6] = [
        Check::CheckpointRoundTrip,
        Check::RestartContinuesExactly,
        Check::ResumeAfterCrash,
        Check::CancelSafePoll,
        Check::MalformedInput,
        Check::NoSideEffects,
    ];

    /// The check's method name, as violations name it.
    pub fn name(self) -> &'static str {
        match self {
            Check::CheckpointRoundTrip => "checkpoint_round_trip",
            Check::RestartContinuesExactly => "restart_continues_exactly",
            Check::ResumeAfterCrash => "resume_after_crash",
            Check::CancelSafePoll => "cancel_safe_poll",
            Check::MalformedInput => "malformed_input",
            Check::NoSideEffects => "no_side_effects",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

type Hook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;
type Observe = Arc<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;
type Identity = Arc<dyn Fn(&Record) -> String + Send + Sync>;

/// The conformance kit for one source type and config; see the [module docs](self).
#[derive(Clone)]
pub struct Kit {
    source_type: SourceType,
    path: PathBuf,
    text: String,
    stream: Option<String>,
    reset: Option<Hook>,
    observe: Option<Observe>,
    malformed: Vec<(String, Hook)>,
    identity: Identity,
    poll_timeout: Duration,
    memory_budget: u64,
    max_trials: usize,
    waived: Vec<(Check, String)>,
}

impl std::fmt::Debug for Kit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kit")
            .field("source_type", &self.source_type.name())
            .field("path", &self.path)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// One batch of a read: the records' identities and the checkpoint after them.
#[derive(Debug, Clone)]
struct Read {
    ids: Vec<String>,
    checkpoint: Checkpoint,
}

impl Kit {
    /// `config` is a whole connector file whose `[source]` has this type;
    /// relative paths in it resolve against the current directory.
    pub fn new(source_type: SourceType, config: impl Into<String>) -> Self {
        let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Kit::at(source_type, dir.join("conformance.toml"), config)
    }

    /// A kit over the connector file at `path` (read now).
    pub fn from_file(source_type: SourceType, path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(Kit::at(source_type, path.to_path_buf(), text))
    }

    fn at(source_type: SourceType, path: PathBuf, text: impl Into<String>) -> Self {
        Kit {
            source_type,
            path,
            text: text.into(),
            stream: None,
            reset: None,
            observe: None,
            malformed: Vec::new(),
            identity: Arc::new(default_identity),
            poll_timeout: Duration::from_secs(30),
            memory_budget: 16 << 20,
            max_trials: 8,
            waived: Vec::new(),
        }
    }

    /// The stream every check reads (default: the first `discover` lists).
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = Some(name.into());
        self
    }

    /// Restores the upstream's data before each trial (re-publishes a
    /// queue's messages, refills a table). Without it the data must stay
    /// as it is while the checks read it.
    pub fn reset<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.reset = Some(Arc::new(move || Box::pin(hook())));
        self
    }

    /// A snapshot of everything the source could change upstream (a
    /// server's log of mutating requests, a table's rows, a directory's
    /// listing); [`Kit::no_side_effects`] compares it before and after
    /// `check` and `discover`.
    pub fn observe<F, Fut>(mut self, snapshot: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = String> + Send + 'static,
    {
        self.observe = Some(Arc::new(move || Box::pin(snapshot())));
        self
    }

    /// Bad upstream data for [`Kit::malformed_input`]: `setup` makes the
    /// upstream serve it (and [`Kit::reset`] undoes it); reading the stream
    /// must then end in an error or bad records, not a panic or silence.
    pub fn malformed<F, Fut>(mut self, name: impl Into<String>, setup: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.malformed
            .push((name.into(), Arc::new(move || Box::pin(setup()))));
        self
    }

    /// What makes two records the same record (default: key, value,
    /// target and op). Override when records carry values that change
    /// between reads (a generated id, a receive time).
    pub fn identity<F>(mut self, id: F) -> Self
    where
        F: Fn(&Record) -> String + Send + Sync + 'static,
    {
        self.identity = Arc::new(id);
        self
    }

    /// The most resident memory [`Kit::bounded_memory`] lets a long read
    /// add (default 16 MiB); it reads at least twice as much data.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Longest wait for one poll (default 30 s).
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Leaves `check` out of [`Kit::run_all`] because its promise cannot
    /// hold for this source, saying why: a live feed that nobody replays
    /// has nothing a restart could continue from
    /// ([`Check::RestartContinuesExactly`], [`Check::ResumeAfterCrash`]).
    /// Not for a check the source merely fails: fix the source. The
    /// waiver is explicit: [`Kit::assert_all`] prints each one with its
    /// reason, [`Kit::waived`] lists them, and a waiver with an empty
    /// reason is itself a violation. Calling the check's method directly
    /// still runs it.
    pub fn without(mut self, check: Check, why: impl Into<String>) -> Self {
        self.waived.retain(|(c, _)| *c != check);
        self.waived.push((check, why.into()));
        self
    }

    /// The checks [`Kit::without`] left out, with the reasons given.
    pub fn waived(&self) -> &[(Check, String)] {
        &self.waived
    }

    fn waiver(&self, check: Check) -> Option<&str> {
        self.waived
            .iter()
            .find(|(c, _)| *c == check)
            .map(|(_, why)| why.as_str())
    }

    /// Every check not waived by [`Kit::without`]; all violations, not
    /// only the first.
    pub async fn run_all(&self) -> Result<(), Vec<Violation>> {
        let mut violations = Vec::new();
        for check in Check::ALL {
            if let Some(why) = self.waiver(check) {
                if why.trim().is_empty() {
                    violations.push(Violation::new(
                        check.name(),
                        "waived by `Kit::without` with an empty reason: say why the check cannot apply to this source",
                    ));
                }
                continue;
            }
            let result = match check {
                Check::CheckpointRoundTrip => self.checkpoint_round_trip().await,
                Check::RestartContinuesExactly => self.restart_continues_exactly().await,
                Check::ResumeAfterCrash => self.resume_after_crash().await,
                Check::CancelSafePoll => self.cancel_safe_poll().await,
                Check::MalformedInput => self.malformed_input().await,
                Check::NoSideEffects => self.no_side_effects().await,
            };
            if let Err(v) = result {
                violations.push(v);
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// [`Kit::run_all`], panicking with every violation (for `#[tokio::test]`),
    /// after printing each waived check and its reason to stderr.
    /// [`Kit::bounded_memory`] is not part of it: call it in a test binary
    /// of its own.
    pub async fn assert_all(&self) {
        for (check, why) in &self.waived {
            eprintln!(
                "conformance: `{check}` waived for source type `{}`: {why}",
                self.source_type.name()
            );
        }
        if let Err(violations) = self.run_all().await {
            let lines: Vec<String> = violations.iter().map(|v| format!("- {v}")).collect();
            panic!(
                "{} of the conformance checks failed for source type `{}`:\n{}",
                violations.len(),
                self.source_type.name(),
                lines.join("\n")
            );
        }
    }

    // ---- shared machinery -------------------------------------------------

    fn config(&self, text: &str) -> Result<ConnectorConfig, tributary_config::ConfigError> {
        let mut config = tributary_config::load_str(&self.path, text)?;
        self.source_type.apply_defaults(&mut config)?;
        Ok(config)
    }

    /// A fresh source, as a restarted process builds it.
    async fn source(&self, check: &'static str) -> Result<Box<dyn Source>, Violation> {
        let config = self
            .config(&self.text)
            .map_err(|e| Violation::new(check, format!("the kit's config does not load: {e}")))?;
        let ctx = SourceContext::from_config(&config, Arc::new(tributary_core::SystemClock));
        self.source_type
            .build(&config.source, &ctx)
            .map_err(|e| Violation::new(check, format!("the kit's config does not build: {e}")))
    }

    async fn reset_upstream(&self) {
        if let Some(reset) = &self.reset {
            reset().await;
        }
    }

    async fn spec(
        &self,
        check: &'static str,
        source: &dyn Source,
    ) -> Result<StreamSpec, Violation> {
        let streams = self
            .timed(check, "discover", source.discover())
            .await?
            .map_err(|e| Violation::new(check, format!("discover failed: {e}")))?;
        let found = match &self.stream {
            Some(name) => streams.iter().find(|s| &s.name == name),
            None => streams.first(),
        };
        found.cloned().ok_or_else(|| {
            Violation::new(
                check,
                format!(
                    "discover does not offer the stream {:?} (offered: {:?})",
                    self.stream,
                    streams.iter().map(|s| &s.name).collect::<Vec<_>>()
                ),
            )
        })
    }

    async fn open(
        &self,
        check: &'static str,
        source: &dyn Source,
        spec: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, Violation> {
        let shown = checkpoint
            .as_ref()
            .map_or("no checkpoint".to_string(), |c| c.as_json().to_string());
        self.timed(check, "open", source.open(spec, checkpoint))
            .await?
            .map_err(|e| Violation::new(check, format!("open from {shown} failed: {e}")))
    }

    async fn timed<T>(
        &self,
        check: &'static str,
        what: &str,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, Violation> {
        tokio::time::timeout(self.poll_timeout, fut)
            .await
            .map_err(|_| {
                Violation::new(
                    check,
                    format!("{what} did not answer within {:?}", self.poll_timeout),
                )
            })
    }

    /// One poll as the runtime sees it: a batch, or `None` at the end of
    /// the run (`End`, or `Idle`: nothing more right now).
    async fn poll(
        &self,
        check: &'static str,
        reader: &mut dyn StreamReader,
    ) -> Result<Option<Read>, Violation> {
        match self.timed(check, "poll", reader.poll()).await? {
            Ok(Poll::Batch(batch)) => Ok(Some(Read {
                ids: batch.records.iter().map(|r| (self.identity)(r)).collect(),
                checkpoint: batch.checkpoint,
            })),
            Ok(Poll::Idle | Poll::End) => Ok(None),
            Err(e) => Err(Violation::new(check, format!("poll failed: {e}"))),
        }
    }

    /// Polls to the end of the run, committing (telling the reader) after
    /// each batch when `commit` is set.
    async fn read_rest(
        &self,
        check: &'static str,
        reader: &mut dyn StreamReader,
        commit: bool,
    ) -> Result<Vec<Read>, Violation> {
        let mut out = Vec::new();
        while let Some(read) = self.poll(check, reader).await? {
            if commit {
                self.commit(check, reader, &read.checkpoint).await?;
            }
            out.push(read);
            if out.len() > 1_000_000 {
                return Err(Violation::new(
                    check,
                    "the stream never ends (over a million batches)",
                ));
            }
        }
        Ok(out)
    }

    async fn commit(
        &self,
        check: &'static str,
        reader: &mut dyn StreamReader,
        checkpoint: &Checkpoint,
    ) -> Result<(), Violation> {
        self.timed(check, "committed", reader.committed(checkpoint))
            .await?
            .map_err(|e| {
                Violation::new(
                    check,
                    format!("committed({}) failed: {e}", checkpoint.as_json()),
                )
            })
    }

    /// The whole stream, read once from a reset upstream by a fresh source:
    /// what every trial is compared with. At least two batches with
    /// records, or the checks would prove nothing.
    async fn reference(&self, check: &'static str) -> Result<Vec<Read>, Violation> {
        self.reset_upstream().await;
        let source = self.source(check).await?;
        let spec = self.spec(check, source.as_ref()).await?;
        let mut reader = self.open(check, source.as_ref(), &spec, None).await?;
        let reads = self.read_rest(check, reader.as_mut(), true).await?;
        let _ = reader.close().await;
        let _ = source.close().await;
        let with_records = reads.iter().filter(|r| !r.ids.is_empty()).count();
        if with_records < 2 {
            return Err(Violation::new(
                check,
                format!(
                    "the stream gave {with_records} batch(es) with records; the checks need at least 2 (more data, or a smaller batch size)"
                ),
            ));
        }
        Ok(reads)
    }

    /// Batch indexes to stop at: all of them when few, else spread evenly.
    fn sample(&self, batches: usize) -> Vec<usize> {
        if batches <= self.max_trials {
            return (0..batches).collect();
        }
        let step = batches as f64 / self.max_trials as f64;
        let mut picks: Vec<usize> = (0..self.max_trials)
            .map(|i| (i as f64 * step) as usize)
            .collect();
        picks.push(batches - 1);
        picks.dedup();
        picks
    }
}

/// Key, value, target and op: what the sink would write.
fn default_identity(r: &Record) -> String {
    format!(
        "{}|{}|{}|{:?}",
        r.key.as_ref().map(|k| k.to_string()).unwrap_or_default(),
        r.value.to_json_string(),
        r.target.as_deref().unwrap_or(""),
        r.op
    )
}

fn ids(reads: &[Read]) -> Vec<&str> {
    reads
        .iter()
        .flat_map(|r| r.ids.iter().map(String::as_str))
        .collect()
}

/// Where `got` first differs from `want`, in words.
fn first_difference(want: &[&str], got: &[&str]) -> Option<String> {
    first_difference_from(want, 0, got)
}

/// Where `got` first differs from `all[start..]`: what a reader should
/// give after the first `start` records of `all` were given.
fn first_difference_from(all: &[&str], start: usize, got: &[&str]) -> Option<String> {
    let want = &all[start.min(all.len())..];
    let n = want.iter().zip(got).take_while(|(a, b)| a == b).count();
    if n == want.len() && n == got.len() {
        return None;
    }
    let show =
        |s: Option<&&str>| s.map_or("the end of the stream".to_string(), |s| format!("`{s}`"));
    let given = &all[..(start + n).min(all.len())];
    let what = match got.get(n) {
        Some(g) if given.contains(g) => " (a record it had already given: a duplicate)",
        Some(g) if want.contains(g) => " (a later record: those in between were skipped)",
        None => " (records are missing)",
        Some(_) => "",
    };
    Some(format!(
        "record {} should be {} but was {}{what}",
        n + 1,
        show(want.get(n)),
        show(got.get(n))
    ))
}

/// Cancel a poll after `n` scheduler turns, or let it finish.
enum Cut {
    Yields(u32),
    After(Duration),
}

/// What a poll cut short came to.
enum CutPoll {
    Finished(Result<Poll, ConnectorError>),
    Dropped,
}

async fn poll_cut(reader: &mut dyn StreamReader, cut: &Cut) -> CutPoll {
    let delay = async {
        match cut {
            Cut::Yields(n) => {
                for _ in 0..*n {
                    tokio::task::yield_now().await;
                }
            }
            Cut::After(d) => tokio::time::sleep(*d).await,
        }
    };
    tokio::select! {
        biased;
        r = reader.poll() => CutPoll::Finished(r),
        _ = delay => CutPoll::Dropped,
    }
}
