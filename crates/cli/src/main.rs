//! `tributary`: move data from the systems a business runs on into streams
//! and tables, with exact, durable progress tracking.
//!
//! The binary is thin: it parses arguments, builds connectors from their
//! config files and hands them to the runtime. Exit codes are part of the
//! interface (see `ExitCode` below and docs/cli.md).

/// `println!` that does not panic when stdout is a closed pipe
/// (`tributary discover x.toml | head`): the rest of the output is dropped,
/// as `cat` would, and the command ends with [`exit::Code::BrokenPipe`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                crate::exit::STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }};
}

/// `eprintln!` that does not panic when stderr is a closed pipe
/// (`tributary read x.toml 2>&1 | head -1`).
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod admin;
mod build;
mod cli;
mod commands;
mod convert;
mod exit;
mod logging;
mod progress;
mod tls_roots;
mod validate;

use clap::Parser;

/// mimalloc instead of glibc malloc: records are many small JSON allocations
/// freed on another thread, where glibc's arenas cost a third of the CPU time
/// and fragment (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Without transparent huge pages: every buffer that lands in a fresh
    // 2 MiB page costs the kernel a 2 MiB clear, and a pipeline that frees
    // each page's buffers as it goes touches fresh pages all run long; that
    // clearing was a tenth of the CPU time and a quarter of the peak memory
    // (bench/README.md). mimalloc is built not to ask for them (`no_thp`);
    // this covers kernels that hand them out unasked. Where the kernel
    // refuses, nothing is lost but that speed.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    // Before the runtime's threads exist: it sets environment variables.
    tls_roots::defer_loading();
    let cli = cli::Cli::parse();
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
    let code = runtime.block_on(commands::dispatch(cli));
    // Don't wait for blocking tasks (a stdin read, a slow fsync) at exit.
    runtime.shutdown_background();
    code.into()
}
