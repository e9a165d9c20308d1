//! The command line of `worker`, `deploy` and `undeploy`.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The cluster to join: workers of one cluster share its connectors
    /// (its topics are `_tributary_*_NAME`).
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    /// Kafka's bootstrap servers, `HOST:PORT[,HOST:PORT...]`.
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Serve the admin API (the whole cluster's connectors, `/workers`) on
    /// this address; its `HOST:PORT` is the worker's id. `PORT` alone means
    /// 127.0.0.1:PORT, port 0 a free one (logged).
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<String>,
    /// Require `Authorization: Bearer <token>` with the token in this file
    /// (else `TRIBUTARY_ADMIN_TOKEN`); every worker of a cluster needs the same.
    #[arg(long, value_name = "PATH", requires = "admin_addr")]
    pub admin_token_file: Option<PathBuf>,
    /// How long the group waits for a silent worker before its connectors
    /// move (Kafka's `session.timeout.ms`; the broker allows 6s to 5min by default).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// Relative paths in deployed configs resolve against this directory
    /// (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Connector config files (TOML), deployed as written: `${ENV}` and
    /// `${file:...}` are resolved by the workers.
    #[arg(required = true)]
    pub configs: Vec<PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct UndeployArgs {
    /// Connector names.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub target: Target,
}

/// Where a deploy goes: straight to the cluster's topics in Kafka.
#[derive(Debug, Args)]
pub struct Target {
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: String,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e} (e.g. 10s, 1m)"))
}
