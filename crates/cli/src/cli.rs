use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Where `status` looks for a running process when `--admin-addr` is not given.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:8088";

/// Move data from APIs, files and databases into streams and tables, with
/// exact, durable progress tracking.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `tributary_runtime=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "TRIBUTARY_LOG", default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one or more connectors until they finish or are interrupted.
    Run(RunArgs),
    /// Validate a config and test connectivity to its source and sink.
    Check { config: PathBuf },
    /// List the streams a connector's source offers, with keys and schemas (JSON).
    Discover { config: PathBuf },
    /// Preview records of a stream on stdout; commits nothing.
    Read(ReadArgs),
    /// Inspect or change committed checkpoints.
    #[command(subcommand)]
    State(StateCommand),
    /// Convert a Kafka Connect ChargeOver source config (JSON or .properties) to a tributary config.
    Convert(ConvertArgs),
    /// Show every stream of a running `tributary run` (its admin server): state, age, throughput, next run.
    Status(StatusArgs),
    /// Join a cluster of workers that share connectors over Kafka (docs/distributed.md).
    Worker(crate::cluster::args::WorkerArgs),
    /// Deploy connector configs to a cluster of workers (or change them).
    Deploy(crate::cluster::args::DeployArgs),
    /// Remove connectors from a cluster of workers.
    Undeploy(crate::cluster::args::UndeployArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The admin server of the running process (`run --admin-addr`); `PORT` alone means 127.0.0.1:PORT.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: String,
    /// A file holding the admin server's bearer token (else `TRIBUTARY_ADMIN_TOKEN`).
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
    /// Print the status JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The whole cluster of the worker at `--admin-addr`: every connector,
    /// the worker running it, and the workers.
    #[arg(long)]
    pub cluster: bool,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Connect REST JSON (`{"name": ..., "config": {...}}` or the bare config map) or a Java .properties file; told apart by content.
    pub file: PathBuf,
    /// Write the TOML to OUT instead of stdout.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Overwrite OUT if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Connector config files (TOML), all run in this process.
    #[arg(required = true)]
    pub configs: Vec<PathBuf>,
    /// Never draw the live progress lines, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Run every stream once until it is caught up, then exit, whatever the
    /// schedules say (like an Airbyte sync or a dlt pipeline run; for cron
    /// jobs and CI).
    #[arg(long)]
    pub once: bool,
    /// Serve health, Prometheus metrics, connector status and the status page
    /// on this address (`PORT` alone means 127.0.0.1:PORT; port 0 picks a free
    /// one, logged). Off unless given.
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<String>,
    /// Require `Authorization: Bearer <token>` with the token in this file
    /// (else `TRIBUTARY_ADMIN_TOKEN`, if set) on every endpoint except
    /// `/health`, `/ready` and the page itself.
    #[arg(long, value_name = "PATH", requires = "admin_addr")]
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    pub config: PathBuf,
    /// The stream to read.
    #[arg(long)]
    pub stream: String,
    /// Stop after this many records.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Read from the beginning instead of from the committed checkpoint.
    #[arg(long)]
    pub from_start: bool,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Every stream's checkpoint, commit time, age and status (ok | running | stuck + reason).
    List {
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Count streams not advanced for this long as stuck (default: `runtime.max_staleness`).
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
    },
    /// Print committed checkpoints as JSON (one stream, or all).
    Get {
        config: PathBuf,
        #[arg(long)]
        stream: Option<String>,
    },
    /// Streams stuck in the past: marked stuck by their source, or not advanced
    /// for `--older-than` (default: `runtime.max_staleness`). Exit code 0: none; 5: some.
    Stuck {
        config: PathBuf,
        /// e.g. `7d`, `36h`.
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove checkpoints so streams start from the beginning, or move a stream to a
    /// position in time. Refused while the connector runs.
    Reset {
        config: PathBuf,
        /// The stream to reset.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        stream: Option<String>,
        /// Reset every stream of the connector (to its beginning).
        #[arg(long, conflicts_with_all = ["to_now", "to", "to_available_end"])]
        all: bool,
        /// Skip everything before now: the next run reads from the current time.
        #[arg(long, conflicts_with_all = ["to", "to_available_end"])]
        to_now: bool,
        /// Read from this time (RFC 3339, or YYYY-MM-DD for midnight UTC).
        #[arg(long, value_name = "DATETIME", conflicts_with = "to_available_end")]
        to: Option<String>,
        /// Skip to the newest data the source says is ready (Stripe's data_available_end).
        #[arg(long)]
        to_available_end: bool,
        /// Print the before/after diff; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a stream's checkpoint (JSON). Refused while the connector runs.
    Set {
        config: PathBuf,
        #[arg(long)]
        stream: String,
        /// The checkpoint, e.g. `{"interval_start": "2024-11-01T00:00:00Z", ...}`.
        #[arg(long, value_name = "JSON")]
        json: String,
        /// Print the before/after diff; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print every checkpoint, with its times, as a versioned JSON backup on stdout.
    Export { config: PathBuf },
    /// Replace every checkpoint with a backup from `state export`. Refused while the connector runs.
    Import {
        config: PathBuf,
        /// The file `state export` wrote.
        file: PathBuf,
        /// Print the before/after diff; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}
