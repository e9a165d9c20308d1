//! [`App`]: a `tributary` binary with a given set of source types.

use crate::exit;
use clap::{CommandFactory, FromArgMatches};
use std::sync::OnceLock;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::Source;
use tributary_sources::{DuplicateType, SourceContext, SourceRegistry, SourceType};

/// The registry of the running process. One per process because a process
/// is one binary: set once by [`App::run`] and read by every command, the
/// admin server and `check`'s validation, instead of being passed through
/// each of them. Code that runs without `App::run` (unit tests of the
/// commands) sees the built-in types.
static REGISTRY: OnceLock<SourceRegistry> = OnceLock::new();

pub(crate) fn registry() -> &'static SourceRegistry {
    REGISTRY.get_or_init(tributary_sources::builtin)
}

/// A complete `tributary` binary: every command, the admin server, metrics
/// and progress, over the built-in source types and any added with
/// [`App::source`].
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     tributary_cli::App::new().run()
/// }
/// ```
#[derive(Debug)]
pub struct App {
    registry: SourceRegistry,
    version: Option<String>,
    errors: Vec<DuplicateType>,
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    /// The built-in source types (the `tributary` binary).
    pub fn new() -> Self {
        App {
            registry: tributary_sources::builtin(),
            version: None,
            errors: Vec::new(),
        }
    }

    /// Adds a source type: `[source] type = "<name>"` builds it with
    /// `ctor` (the source's `from_section`). A name already registered
    /// (by us or twice by you) stops the binary before any command runs.
    pub fn source<S, F>(self, name: &str, ctor: F) -> Self
    where
        S: Source + 'static,
        F: Fn(&SectionConfig, &SourceContext) -> Result<S, ConfigError> + Send + Sync + 'static,
    {
        self.source_type(SourceType::new(name, ctor))
    }

    /// Adds a prepared [`SourceType`] (one with a defaults hook, or an
    /// adapter that boxes its source itself).
    pub fn source_type(mut self, source: SourceType) -> Self {
        if let Err(e) = self.registry.register(source) {
            self.errors.push(e);
        }
        self
    }

    /// The version `--version` prints (default: this crate's).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Every `type` name this binary accepts.
    pub fn source_types(&self) -> Vec<&str> {
        self.registry.names()
    }

    /// Parses the process's arguments, runs the command and returns its
    /// exit code (docs/cli.md).
    pub fn run(self) -> std::process::ExitCode {
        self.run_from(std::env::args_os())
    }

    /// [`App::run`] with the given arguments (the first is the program name).
    pub fn run_from<I, T>(self, args: I) -> std::process::ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        // Without transparent huge pages: every buffer that lands in a fresh
        // 2 MiB page costs the kernel a 2 MiB clear, and a pipeline that frees
        // each page's buffers as it goes touches fresh pages all run long; that
        // clearing was a tenth of the CPU time and a quarter of the peak memory
        // (bench/README.md). mimalloc is built not to ask for them (`no_thp`);
        // this covers kernels that hand them out unasked. Where the kernel
        // refuses, nothing is lost but that speed.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let mut command = crate::cli::Cli::command();
        // Help and errors name the binary as it was called (`my-connector
        // run ...`), not `tributary`.
        // (clap keeps names as `&'static str`: one small leak per process.)
        if let Some(name) = args
            .first()
            .and_then(|a| std::path::Path::new(a).file_stem())
            .and_then(|s| s.to_str())
        {
            let name: &'static str = Box::leak(name.to_string().into_boxed_str());
            command = command.name(name).bin_name(name);
        }
        if let Some(v) = self.version {
            let v: &'static str = Box::leak(v.into_boxed_str());
            command = command.version(v);
        }
        let matches = command.get_matches_from(args);
        let cli = match crate::cli::Cli::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        };
        if let Some(e) = self.errors.first() {
            err!("error: {e}");
            return exit::Code::Config.into();
        }
        if REGISTRY.set(self.registry).is_err() {
            err!("error: App::run was called twice in one process; a process runs one binary");
            return exit::Code::Failure.into();
        }
        // Before the runtime's threads exist: it sets environment variables.
        crate::tls_roots::defer_loading();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                err!("error: cannot start the async runtime: {e}");
                return exit::Code::Failure.into();
            }
        };
        let code = runtime.block_on(crate::commands::dispatch(cli));
        // Don't wait for blocking tasks (a stdin read, a slow fsync) at exit.
        runtime.shutdown_background();
        code.into()
    }
}
