//! `tributary`: move data from the systems a business runs on into streams
//! and tables, with exact, durable progress tracking.
//!
//! The binary is thin: [`tributary_cli::App`] with the built-in connectors
//! parses arguments, builds connectors from their config files and hands
//! them to the runtime. Exit codes are part of the interface (docs/cli.md).

/// mimalloc instead of glibc malloc: records are many small JSON allocations
/// freed on another thread, where glibc's arenas cost a third of the CPU time
/// and fragment (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tributary_cli::App::new().run()
}
