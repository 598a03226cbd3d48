//! ClearTrail turns compliance evidence (SOC 2, ISO 27001) into Git history
//! that anyone can verify.
//!
//! The pipeline: connectors ([`connectors`]) collect source objects and
//! normalize them into [`artifact::Artifact`]s; the [`store`] writes them as
//! canonical JSON into a branch of the evidence repository, together with a
//! completeness record per collection; [`verify`] re-hashes everything
//! offline. Catalogs ([`controls`]), [`checks`] and the [`audit`] module
//! turn held evidence into control status, gaps, the evidence repository's
//! README and packets rendered from templates ([`packet`]). Commands
//! ([`commands`]) orchestrate; the domain logic lives in the modules below
//! them.

pub mod actions;
pub mod approvals;
pub mod artifact;
pub mod audit;
pub mod checks;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod connectors;
pub mod controls;
pub mod diag;
pub mod error;
pub mod evidence;
pub mod export;
pub mod logging;
pub mod memory;
pub mod packet;
pub mod period;
pub mod progress;
pub mod propose;
pub mod store;
pub mod sync;
pub mod verify;
pub mod yaml;

pub use error::ExitStatus;

/// Runs one parsed command line and returns the exit status.
///
/// Errors are printed here, once, as a chain (`{:#}`) with any hints; the
/// binary only maps the status to a process exit code.
pub fn run(cli: cli::Cli) -> ExitStatus {
    match commands::dispatch(cli) {
        Ok(status) => status,
        Err(err) => {
            error::report(&err);
            err.status()
        }
    }
}
