//! The `cleartrail` binary: parse the command line, set up logging, call the
//! library and turn its outcome into a process exit code. Nothing else lives
//! here, so that every behaviour is testable through `cleartrail::run`.

use clap::Parser;
use std::process::ExitCode;

// See `cleartrail::memory`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cleartrail::memory::tune_allocator();
    let cli = cleartrail::cli::Cli::parse();
    cleartrail::logging::init(cli.global.verbose, cli.global.quiet);
    let code = cleartrail::run(cli);
    ExitCode::from(code.as_u8())
}
