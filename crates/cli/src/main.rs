//! `tributary`: move data from the systems a business runs on into streams
//! and tables, with exact, durable progress tracking.
//!
//! The binary is thin: it parses arguments, builds connectors from their
//! config files and hands them to the runtime. Exit codes are part of the
//! interface (see `ExitCode` below and docs/cli.md).

mod build;
mod cli;
mod commands;
mod exit;
mod logging;
mod progress;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::Code::Failure.into();
        }
    };
    let code = runtime.block_on(commands::dispatch(cli));
    // Don't wait for blocking tasks (a stdin read, a slow fsync) at exit.
    runtime.shutdown_background();
    code.into()
}
