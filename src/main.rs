//! The `cleartrail` binary: parse the command line, set up logging, call the
//! library and turn its outcome into a process exit code. Nothing else lives
//! here, so that every behaviour is testable through `cleartrail::run`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cleartrail::cli::Cli::parse();
    cleartrail::logging::init(cli.global.verbose, cli.global.quiet);
    let code = cleartrail::run(cli);
    ExitCode::from(code.as_u8())
}
