//! Write a [tributary](https://crates.io/crates/tributary-sdk) source
//! connector in your own crate and get the whole runtime.
//!
//! | you handle | the runtime handles |
//! |---|---|
//! | connecting to the outside system ([`Source::check`]) | scheduling (interval, Quartz cron + timezone) |
//! | listing its streams, keys, schemas ([`Source::discover`]) | publishing to the sink (stdout, NDJSON files, Kafka, PostgreSQL) |
//! | reading a batch from a checkpoint ([`PullSource::poll`], [`StreamReader::poll`]) | committing checkpoints only after the sink acknowledged the records |
//! | turning data into [`Record`]s, bad input into [`BadRecord`]s | retries with backoff, the bad-record policy, dead letters |
//! | saying what an error means ([`Error`]: retry, stop, bad record, config) | state stores, `state` commands, resets, backups |
//! | acknowledging upstream after a commit ([`PushSource::ack`]) | metrics, the admin server, progress, graceful shutdown |
//!
//! Three steps:
//!
//! 1. A config struct with `serde` ([`SectionConfig::parse`] reports every
//!    mistake with the file, key and line; [`Secret`] keeps credentials
//!    out of logs, errors and `Debug`).
//! 2. A source: [`PullSource`] for "give me what comes after this
//!    checkpoint", [`PushSource`] for a feed that pushes messages and wants
//!    them acknowledged once durable, or the full [`Source`] /
//!    [`StreamReader`] pair the built-in connectors implement.
//! 3. A `main` that registers it; the binary then has every command of
//!    `tributary` (`run`, `check`, `discover`, `read`, `state …`, `status`,
//!    `--admin-addr` with health and Prometheus metrics, progress):
//!
//! ```no_run
//! use tributary_sdk::{async_trait, App, ConfigError, Error, PullSource, Pulled, Record,
//!     SectionConfig, SourceContext, StreamSpec};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { count: u64 }
//!
//! struct Counter { count: u64 }
//!
//! impl Counter {
//!     fn from_section(section: &SectionConfig, _: &SourceContext) -> Result<Self, ConfigError> {
//!         let config: Config = section.parse()?;
//!         Ok(Counter { count: config.count })
//!     }
//! }
//!
//! #[async_trait]
//! impl PullSource for Counter {
//!     type Checkpoint = u64;
//!     async fn check(&self) -> Result<(), Error> { Ok(()) }
//!     async fn discover(&self) -> Result<Vec<StreamSpec>, Error> {
//!         Ok(vec![StreamSpec::new("numbers")])
//!     }
//!     async fn poll(&self, _: &StreamSpec, next: Option<&u64>) -> Result<Pulled<u64>, Error> {
//!         let from = next.copied().unwrap_or(0);
//!         let to = (from + 100).min(self.count);
//!         let records = (from..to).map(|i| Record::new(serde_json::json!({ "i": i }))).collect();
//!         Ok(if to == self.count { Pulled::caught_up(records, to) } else { Pulled::more(records, to) })
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     App::new().pull_source("counter", Counter::from_section).run()
//! }
//! ```
//!
//! [`conformance`] checks, in your own tests, the promises the runtime
//! relies on: checkpoints round-trip, a restart loses nothing and repeats
//! nothing committed, `poll` is cancel-safe, memory stays bounded, bad
//! input is an error and not a panic, `check`/`discover` change nothing.
//! docs/sdk.md in the repository is the guide.

pub mod conformance;
mod pull;
mod push;

pub use pull::{Pull, PullSource, Pulled};
pub use push::{Push, PushClosed, PushSource, Pusher};

pub use tributary_config::{ConfigError, ConnectorConfig, SectionConfig};
/// What a source tells the runtime when something goes wrong, by what the
/// runtime should do: [`Error::Retryable`] (back off, reopen from the
/// committed checkpoint), [`Error::Fatal`] (stop the connector, a person
/// acts), [`Error::BadRecord`] (the bad-record policy), [`Error::Config`].
pub use tributary_core::ConnectorError as Error;
pub use tributary_core::{
    async_trait, BadRecord, Batch, Checkpoint, CheckpointSummary, ErrorClass, Health, LoadMode, Op,
    Payload, Poll, Progress, RawInput, Record, ResetPosition, RunProgress, Secret, Source,
    StreamReader, StreamSpec,
};
/// Typed events a source reports on [`SourceContext::metrics`] (HTTP
/// statuses, rate-limit waits); the runtime exports them.
pub use tributary_metrics::{ConnectorEvent, ConnectorStats};
pub use tributary_sources::{SourceContext, SourceType};

/// The crates behind the SDK, for what the re-exports above leave out.
pub mod internals {
    pub use tributary_config as config;
    pub use tributary_core as core;
    pub use tributary_sources as sources;
}

/// A complete binary: every command of `tributary` over the built-in
/// source types and yours.
///
/// One registration per type, here and nowhere else: `check`, `run`, the
/// admin server's plugin list and the "did you mean" of a mistyped `type`
/// all read the same registry. A name registered twice (yours or a
/// built-in's) stops the binary with exit code 2 before any command runs.
#[derive(Debug, Default)]
pub struct App {
    inner: tributary_cli::App,
}

impl App {
    /// The built-in source types (`file`, `generator`, `http`, `sql`, …).
    pub fn new() -> Self {
        App {
            inner: tributary_cli::App::new(),
        }
    }

    /// A full [`Source`]: `[source] type = "<name>"` builds it with `ctor`.
    pub fn source<S, F>(self, name: &str, ctor: F) -> Self
    where
        S: Source + 'static,
        F: Fn(&SectionConfig, &SourceContext) -> Result<S, ConfigError> + Send + Sync + 'static,
    {
        self.source_type(SourceType::new(name, ctor))
    }

    /// A [`PullSource`], adapted by [`Pull`].
    pub fn pull_source<P, F>(self, name: &str, ctor: F) -> Self
    where
        P: PullSource,
        F: Fn(&SectionConfig, &SourceContext) -> Result<P, ConfigError> + Send + Sync + 'static,
    {
        self.source_type(pull_type(name, ctor))
    }

    /// A [`PushSource`], adapted by [`Push`].
    pub fn push_source<P, F>(self, name: &str, ctor: F) -> Self
    where
        P: PushSource,
        F: Fn(&SectionConfig, &SourceContext) -> Result<P, ConfigError> + Send + Sync + 'static,
    {
        self.source_type(push_type(name, ctor))
    }

    /// A prepared type, e.g. with a defaults hook ([`SourceType::defaults`]).
    pub fn source_type(self, source: SourceType) -> Self {
        App {
            inner: self.inner.source_type(source),
        }
    }

    /// What `--version` prints, e.g. `env!("CARGO_PKG_VERSION")`.
    pub fn version(self, version: impl Into<String>) -> Self {
        App {
            inner: self.inner.version(version),
        }
    }

    /// Every `type` this binary accepts.
    pub fn source_types(&self) -> Vec<&str> {
        self.inner.source_types()
    }

    /// Parses the process's arguments and runs the command; the exit code
    /// is the one docs/cli.md documents for `tributary`.
    pub fn run(self) -> std::process::ExitCode {
        self.inner.run()
    }

    /// [`App::run`] with the given arguments (the first is the program name).
    pub fn run_from<I, T>(self, args: I) -> std::process::ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        self.inner.run_from(args)
    }
}

/// The registry entry of a [`PullSource`] (for [`App::source_type`] and
/// [`conformance::Kit`]).
pub fn pull_type<P, F>(name: &str, ctor: F) -> SourceType
where
    P: PullSource,
    F: Fn(&SectionConfig, &SourceContext) -> Result<P, ConfigError> + Send + Sync + 'static,
{
    SourceType::new(name, move |section: &SectionConfig, ctx: &SourceContext| {
        Ok(Pull::new(ctor(section, ctx)?))
    })
}

/// The registry entry of a [`PushSource`]; batches hold at most the
/// connector's `runtime.batch_size` messages.
pub fn push_type<P, F>(name: &str, ctor: F) -> SourceType
where
    P: PushSource,
    F: Fn(&SectionConfig, &SourceContext) -> Result<P, ConfigError> + Send + Sync + 'static,
{
    SourceType::new(name, move |section: &SectionConfig, ctx: &SourceContext| {
        Ok(Push::new(ctor(section, ctx)?, ctx.batch_size))
    })
}
