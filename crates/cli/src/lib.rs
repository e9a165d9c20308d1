//! The `tributary` command line as a library: every command (`run`,
//! `check`, `discover`, `read`, `state`, `status`, `convert`), the admin
//! HTTP server, metrics and progress, driven by [`App`]. The `tributary`
//! binary is `App::new().run()`; a binary built with `tributary-sdk` is the
//! same call with its own source types registered, so both have one
//! registry and every command.

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
mod app;
mod build;
mod cli;
mod cluster;
mod commands;
mod convert;
mod exit;
mod logging;
mod progress;
mod tls_roots;
mod validate;

pub use app::App;
