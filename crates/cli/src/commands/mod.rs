mod check;
mod convert;
mod deploy;
mod discover;
mod read;
pub(crate) mod run;
mod state;
pub(crate) mod status;
mod worker;

use crate::cli::{Cli, Command, LogFormat};
use crate::exit::Code;

/// Runs the command and reports its error, if any, as `error: ...` on stderr
/// with its cause chain, redacted.
pub async fn dispatch(cli: Cli) -> Code {
    let progress = match &cli.command {
        Command::Run(args) => run::progress_enabled(args),
        _ => false,
    };
    let multi = progress.then(indicatif::MultiProgress::new);
    // `check` reports an unreachable broker in its own one line; the
    // client library's retries would only repeat it.
    let quiet_kafka_client = matches!(cli.command, Command::Check { .. });
    crate::logging::init(
        cli.log_format,
        &cli.log_level,
        multi.clone(),
        quiet_kafka_client,
    );
    let result = match cli.command {
        Command::Run(args) => run::run(args, multi).await,
        Command::Check { config } => check::check(&config).await,
        Command::Discover { config } => discover::discover(&config).await,
        Command::Read(args) => read::read(args).await,
        Command::State(cmd) => state::state(cmd).await,
        Command::Convert(args) => convert::convert(args),
        Command::Status(args) => status::status(args).await,
        Command::Worker(args) => worker::worker(args).await,
        Command::Deploy(args) => deploy::deploy(args).await,
        Command::Undeploy(args) => deploy::undeploy(args).await,
    };
    match result {
        Ok(Code::Success)
            if crate::exit::STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) =>
        {
            Code::BrokenPipe
        }
        Ok(code) => code,
        Err(f) => {
            for error in std::iter::once(&f.error).chain(&f.more) {
                report(cli.log_format, error, f.code);
            }
            f.code
        }
    }
}

/// One error on stderr, redacted: `error: ...` with its cause chain, or,
/// with `--log-format json`, one JSON line as the logs are.
fn report(format: LogFormat, error: &anyhow::Error, code: Code) {
    use std::io::Write as _;
    let redact = tributary_core::secret::redact;
    let line = match format {
        LogFormat::Text => {
            let mut text = format!("error: {error}");
            for cause in error.chain().skip(1) {
                text.push_str(&format!("\n  caused by: {cause}"));
            }
            redact(&text)
        }
        LogFormat::Json => {
            let causes: Vec<String> = error
                .chain()
                .skip(1)
                .map(|c| redact(&c.to_string()))
                .collect();
            serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "ERROR",
                "message": redact(&error.to_string()),
                "causes": causes,
                "exit_code": code as u8,
            })
            .to_string()
        }
    };
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
