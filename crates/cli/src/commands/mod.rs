mod check;
mod convert;
mod discover;
mod read;
mod run;
mod state;
mod status;

use crate::cli::{Cli, Command};
use crate::exit::Code;

/// Runs the command and reports its error, if any, as `error: ...` on stderr
/// with its cause chain, redacted.
pub async fn dispatch(cli: Cli) -> Code {
    let progress = match &cli.command {
        Command::Run(args) => run::progress_enabled(args),
        _ => false,
    };
    let multi = progress.then(indicatif::MultiProgress::new);
    crate::logging::init(cli.log_format, &cli.log_level, multi.clone());
    let result = match cli.command {
        Command::Run(args) => run::run(args, multi).await,
        Command::Check { config } => check::check(&config).await,
        Command::Discover { config } => discover::discover(&config).await,
        Command::Read(args) => read::read(args).await,
        Command::State(cmd) => state::state(cmd).await,
        Command::Convert(args) => convert::convert(args),
        Command::Status(args) => status::status(args).await,
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            let mut text = format!("error: {}", f.error);
            for cause in f.error.chain().skip(1) {
                text.push_str(&format!("\n  caused by: {cause}"));
            }
            eprintln!("{}", tributary_core::secret::redact(&text));
            f.code
        }
    }
}
