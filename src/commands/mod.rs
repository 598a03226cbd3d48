//! One module per subcommand: orchestration only (load config, open the
//! store, call the domain modules, print). Errors get their exit class
//! here: configuration and usage problems are 2, the rest 3.

mod init;
mod sync;
mod verify;

use crate::cli::{Cli, Command};
use crate::config::{self, CONFIG_FILE, Config, ConfigError};
use crate::error::{Error, ExitStatus};
use std::path::PathBuf;

pub fn dispatch(cli: Cli) -> Result<ExitStatus, Error> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Sync(a) => sync::run(g, a, false),
        Command::Run(a) => sync::run(g, a, true),
        Command::Verify(a) => verify::run(g, a),
    }
}

/// The configuration path: `--config`, else `<repo>/cleartrail.yml`.
pub(crate) fn config_path(g: &crate::cli::GlobalArgs) -> PathBuf {
    g.config.clone().unwrap_or_else(|| g.repo.join(CONFIG_FILE))
}

pub(crate) fn load_config(g: &crate::cli::GlobalArgs) -> Result<Config, Error> {
    let path = config_path(g);
    config::load(&path).map_err(|e| match e {
        ConfigError::Read { .. } => Error::runtime(e),
        _ => Error::usage(e),
    })
}

/// A tokio runtime for commands that talk to sources.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::runtime(anyhow::Error::new(e).context("starting the async runtime")))
}
